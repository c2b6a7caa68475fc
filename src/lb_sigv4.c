/* lb_sigv4.c -- AWS Signature Version 4 signer: canonical request, string to
 * sign, signature (see lb_sigv4.h).  Canonicalisation of the URL pieces is
 * lb_sigv4_canon.c; hashing and the signing-key cache are lb_sigv4_key.c.
 *
 * One signature is one allocation: sign_bound() computes an upper bound of
 * every byte the signature writes (scratch and result), one block of that
 * size is allocated, and every string, array and result field lives in it
 * (lb_sigv4_result.mem_).  No printf, no per-piece allocation; the SHA-256
 * and HMAC run on precomputed states (lb_sigv4_int.h). */
#include "lb_sigv4_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "lb_alloc.h"
#include "lb_err.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int is_ws(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* ----------------------------------------------------------------- URL */

typedef struct url_parts {
    const char *scheme; size_t scheme_len;
    const char *host; size_t host_len;    /* authority without userinfo */
    const char *path; size_t path_len;
    const char *query; size_t query_len;  /* after '?', before '#' */
    int has_qmark;
    size_t base_len;                      /* URL length without the fragment */
} url_parts;

static int parse_url(const char *url, url_parts *u) {
    const char *p = strncmp(url, "https://", 8) ? strstr(url, "://") : url + 5, *a, *e;
    memset(u, 0, sizeof *u);
    if (!p || p == url) return 0;
    u->scheme = url;
    u->scheme_len = (size_t)(p - url);
    a = p + 3;
    e = a + strcspn(a, "/?#");
    u->host = a;
    u->host_len = (size_t)(e - a);
    {   /* drop userinfo */
        const char *at = memchr(a, '@', u->host_len);
        if (at) { u->host_len -= (size_t)(at + 1 - a); u->host = at + 1; }
    }
    if (u->host_len == 0) return 0;
    u->path = e;
    u->path_len = strcspn(e, "?#");
    e += u->path_len;
    if (*e == '?') {
        u->has_qmark = 1;
        u->query = e + 1;
        u->query_len = strcspn(e + 1, "#");
        e = u->query + u->query_len;
    }
    u->base_len = (size_t)(e - url);
    return 1;
}

/* --------------------------------------------------------------- headers */

typedef struct shdr {
    const char *name;   /* lowercase */
    size_t nlen;        /* strlen(name) */
    const char *value;  /* canonical value */
    size_t vlen;        /* strlen(value) */
} shdr;

#define LIT(s) s, sizeof s - 1  /* a string literal and its length */

static int same_name(const shdr *x, const shdr *y) {
    return x->nlen == y->nlen && !memcmp(x->name, y->name, x->nlen);
}

/* What an input header (lowercase name s[0..n)) is to the signer. */
enum { H_SIGN,     /* signed and sent */
       H_NEVER,    /* sent, never signed: user-agent, expect, x-amzn-trace-id, connection,
                      transfer-encoding, upgrade, sec-websocket-* */
       H_HOST,     /* signed and sent; no Host is added */
       H_OURS,     /* authorization, x-amz-date: dropped, the signer writes its own */
       H_TOKEN,    /* x-amz-security-token: dropped when a session token is given */
       H_SHA };    /* x-amz-content-sha256: dropped when the signer adds its own */

#define IS(lit) (n == sizeof lit - 1 && !memcmp(s, lit, sizeof lit - 1))

static int header_kind(const char *s, size_t n) {
    if (n >= 14 && !memcmp(s, "sec-websocket-", 14)) return H_NEVER;
    switch (n) {  /* one memcmp at most, against the names of that length */
    case 4: return IS("host") ? H_HOST : H_SIGN;
    case 6: return IS("expect") ? H_NEVER : H_SIGN;
    case 7: return IS("upgrade") ? H_NEVER : H_SIGN;
    case 10: return IS("x-amz-date") ? H_OURS
                    : IS("user-agent") || IS("connection") ? H_NEVER : H_SIGN;
    case 13: return IS("authorization") ? H_OURS : H_SIGN;
    case 15: return IS("x-amzn-trace-id") ? H_NEVER : H_SIGN;
    case 17: return IS("transfer-encoding") ? H_NEVER : H_SIGN;
    case 20: return IS("x-amz-security-token") ? H_TOKEN
                    : IS("x-amz-content-sha256") ? H_SHA : H_SIGN;
    default: return H_SIGN;
    }
}

#undef IS

/* Byte classes for the scans below; NUL is in every class, so a scan
 * stops at the end of the string without a test of its own. */
enum { C_WORD = 1,   /* not in a word: NUL, controls, space, '/', DEL */
       C_NAME = 2,   /* not in a header name: NUL, controls, space, ':', DEL, 8-bit */
       C_VALUE = 4,  /* needs a look in a header value: NUL, controls but HT, DEL */
       C_SPACE = 8 }; /* needs a look in canon_len: NUL, controls, space */
#define C_CTL (C_WORD | C_NAME | C_VALUE | C_SPACE)
static const unsigned char BYTE_CLASS[256] = {
    [0 ... 8] = C_CTL, ['\t'] = C_WORD | C_NAME | C_SPACE, [10 ... 31] = C_CTL,
    [' '] = C_WORD | C_NAME | C_SPACE, ['/'] = C_WORD, [':'] = C_NAME,
    [127] = C_WORD | C_NAME | C_VALUE, [128 ... 255] = C_NAME};
#undef C_CTL

/* strlen(s) when s is its own canonical form (no whitespace but single
 * spaces between words), else SIZE_MAX. */
static size_t canon_len(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (;; p++) {
        while (!(BYTE_CLASS[*p] & C_SPACE)) p++;
        if (!*p) return (size_t)(p - (const unsigned char *)s);
        if (*p != ' ' || p == (const unsigned char *)s || p[1] <= ' ') return SIZE_MAX;
    }
}

/* Append s trimmed, runs of whitespace collapsed to one space; *same
 * tells whether that is s itself (the usual case, then simply copied). */
static int put_canon(lb_arena *a, const char *s, int *same) {
    size_t n = canon_len(s), i, o = 0;
    int pending = 0;
    if ((*same = n != SIZE_MAX)) return lb_ar_put(a, s, n);
    n = strlen(s);
    if (lb_ar_room(a, n) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++) {
        if (is_ws((unsigned char)s[i])) { pending = o > 0; continue; }
        if (pending) { a->p[a->len++] = ' '; pending = 0; }
        a->p[a->len++] = s[i];
        o++;
    }
    a->p[a->len] = '\0';
    return LB_OK;
}



/* Whether s is non-empty and holds no byte of class c. */
static int all_but(const char *s, int c) {
    const unsigned char *p = (const unsigned char *)s;
    while (!(BYTE_CLASS[*p] & c)) p++;
    return !*p && p != (const unsigned char *)s;
}

static int valid_name(const char *s) { return all_but(s, C_NAME); }

/* Values may hold CR/LF only as obsolete line folding (followed by SP/HT). */
static int valid_value(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (;; p++) {
        while (!(BYTE_CLASS[*p] & C_VALUE)) p++;  /* the usual bytes */
        if (!*p) return 1;
        if (*p == '\r' && p[1] == '\n') p++;
        if ((*p != '\r' && *p != '\n') || (p[1] != ' ' && p[1] != '\t')) return 0;
    }
}

/* A field that lands in the credential scope or a header. */
static int valid_word(const char *s) { return s && all_but(s, C_WORD); }

/* ------------------------------------------------------------------ sign */

typedef struct work {
    lb_arena a;
    shdr *sh;               /* headers to sign */
    size_t nsh;
    lb_sigv4_header *out;   /* headers to send */
    size_t nout;
    size_t shl, scl, pl;    /* strlen of the result's signed_headers, credential_scope,
                               payload_hash */
} work;

/* The length of the string lb_ar_end just ended, which started at `at`. */
static size_t ended_len(const lb_arena *a, size_t at) { return a->len - 1 - at; }

/* A signed header: value canonicalised into the arena, name as given (a
 * lowercase string that lives as long as the arena).  *sent is the
 * canonical value when it is also the value to send (see add_out), else
 * NULL. */
static int add_signed(work *w, const char *lname, size_t nlen, const char *value,
                      const char **sent) {
    size_t at = w->a.len;
    int rc, same;
    w->sh[w->nsh].name = lname;
    w->sh[w->nsh].nlen = nlen;
    if ((rc = put_canon(&w->a, value, &same)) != LB_OK ||
        (rc = lb_ar_end(&w->a, at, &w->sh[w->nsh].value)) != LB_OK)
        return rc;
    w->sh[w->nsh].vlen = ended_len(&w->a, at);
    *sent = same || strpbrk(value, "\r\n") ? w->sh[w->nsh].value : NULL;
    w->nsh++;
    return LB_OK;
}

/* A header to send: the value is `sent` when given (a string in the arena
 * already), else value copied, canonicalised when it holds a folded line.
 * The name, nlen bytes, is copied when copy_name, else used in place (a
 * literal). */
static int add_out(work *w, const char *name, size_t nlen, int copy_name, const char *value,
                   const char *sent) {
    lb_sigv4_header *h = &w->out[w->nout];
    size_t at = w->a.len;
    int rc, same;
    if (copy_name) {
        if ((rc = lb_ar_put(&w->a, name, nlen)) != LB_OK || (rc = lb_ar_end(&w->a, at, &name)) != LB_OK)
            return rc;
        at = w->a.len;
    }
    h->name = name;
    if (sent) {
        h->value = sent;
    } else {
        rc = strpbrk(value, "\r\n") ? put_canon(&w->a, value, &same) : lb_ar_puts(&w->a, value);
        if (rc != LB_OK || (rc = lb_ar_end(&w->a, at, &h->value)) != LB_OK) return rc;
    }
    w->nout++;
    return LB_OK;
}

/* A header signed and sent, name given both ways (literals). */
static int add_both(work *w, const char *lname, const char *name, size_t nlen, const char *value) {
    const char *sent;
    int rc = add_signed(w, lname, nlen, value, &sent);
    return rc != LB_OK ? rc : add_out(w, name, nlen, 0, value, sent);
}

/* add_both for a value v (vlen bytes) that is in the arena and canonical
 * already: the one string is signed and sent. */
static int add_both_canon(work *w, const char *lname, const char *name, size_t nlen,
                          const char *v, size_t vlen) {
    w->sh[w->nsh].name = lname;
    w->sh[w->nsh].nlen = nlen;
    w->sh[w->nsh].vlen = vlen;
    w->sh[w->nsh++].value = v;
    return add_out(w, name, nlen, 0, v, v);
}

static int name_cmp(const shdr *x, const shdr *y) {  /* strcmp, inline: names are short */
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen, i;
    for (i = 0; i < n; i++)
        if (x->name[i] != y->name[i]) return (unsigned char)x->name[i] - (unsigned char)y->name[i];
    return (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

/* Stable insertion sort by name: repeated names keep their input order. */
static void sort_signed(shdr *h, size_t n) {
    size_t i, j;
    for (i = 1; i < n; i++) {
        shdr x = h[i];
        for (j = i; j > 0 && name_cmp(&h[j - 1], &x) > 0; j--) h[j] = h[j - 1];
        h[j] = x;
    }
}

void lb_sigv4_request_init(lb_sigv4_request *req) {
    memset(req, 0, sizeof *req);
    req->body_length = -1;
    req->time = -1;
    req->expires = 3600;
    req->normalize_path = 1;
}

static int valid_amz_date(const char *d) {
    int i;
    if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z') return 0;
    for (i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9')) return 0;
    return 1;
}

static const char *const QUERY_RESERVED[] = {
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature", NULL};


static int check_request(const lb_sigv4_request *r, char *err) {
    size_t i;
    if (!r->method || !valid_word(r->method))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: method: missing or not a token");
    if (!r->url) return lb_err_set(err, LB_EINVAL, "sigv4_sign: url: missing");
    if (!valid_word(r->region))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: region: missing, empty or holding '/' or whitespace");
    if (!valid_word(r->service))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: service: missing, empty or holding '/' or whitespace");
    if (!r->access_key || !valid_word(r->access_key))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: access_key: missing, empty or malformed");
    if (!r->secret_key || !*r->secret_key)
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: secret_key: missing or empty");
    if (r->session_token && !valid_value(r->session_token))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: session_token: control characters");
    if (r->payload_hash && !valid_word(r->payload_hash))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: payload_hash: empty or holding whitespace");
    if (r->amz_date && !valid_amz_date(r->amz_date))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: date: '%s' is not YYYYMMDDTHHMMSSZ",
                          r->amz_date);
    if (r->query_mode && (r->expires < 1 || r->expires > LB_SIGV4_MAX_EXPIRES))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: expires: %ld not in 1..%d", r->expires,
                          LB_SIGV4_MAX_EXPIRES);
    if (r->nheaders && !r->headers)
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: headers: missing");
    if (!r->payload_hash && !r->body_file && r->body_len && !r->body)
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: body: missing");
    for (i = 0; i < r->nheaders; i++) {
        const lb_sigv4_header *h = &r->headers[i];
        if (!h->name || !valid_name(h->name))
            return lb_err_set(err, LB_EINVAL, "sigv4_sign: headers: header %zu has a bad name", i + 1);
        if (!h->value || !valid_value(h->value))
            return lb_err_set(err, LB_EINVAL, "sigv4_sign: headers: %s has a bad value (CR/LF or control character)", h->name);
    }
    return LB_OK;
}

/* An upper bound of the bytes one signature writes into its arena.  Each
 * input byte is copied, encoded (x3) and re-copied a bounded number of
 * times (the URL and the query-mode parameters most: host, path, query
 * pool, canonical query, canonical request, final URL); 32 per byte covers
 * every path with room to spare, plus the arrays and a fixed allowance for
 * the literals (64 for a computed payload hash).  0 when the input is
 * absurdly large. */
static size_t sign_bound(const lb_sigv4_request *r) {
    size_t n = strlen(r->url) + strlen(r->access_key) + strlen(r->region) +
               strlen(r->service) + strlen(r->method) + 64, i;
    if (r->payload_hash) n += strlen(r->payload_hash);
    if (r->session_token) n += strlen(r->session_token);
    for (i = 0; i < r->nheaders; i++)
        n += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 8;
    if (n > ((size_t)1 << 40)) return 0;
    return 4096 + 32 * n + (r->nheaders + 8) * (sizeof(shdr) + sizeof(lb_sigv4_header) + 32) +
           (strlen(r->url) / 2 + 16) * sizeof(lb_sv_qpair) + 64;
}

/* Append a decimal. */
static int put_long(lb_arena *a, long v) {
    char d[24];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    do { d[sizeof d - 1 - n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) d[sizeof d - 1 - n++] = '-';
    return lb_ar_put(a, d + sizeof d - n, (size_t)n);
}

/* Headers to sign and to send, from the input plus the added ones;
 * amz_date and payload are the result's strings (in the arena), which
 * X-Amz-Date and X-Amz-Content-Sha256 sign and send as they are. */
static int build_headers(work *w, const lb_sigv4_request *r, const url_parts *u,
                         const char *amz_date, const char *payload, int add_sha) {
    size_t i, at;
    int rc, have_host = 0;
    const char *s, *sent;
    for (i = 0; i < r->nheaders; i++) {
        const lb_sigv4_header *h = &r->headers[i];
        size_t n = strlen(h->name);
        int kind;
        at = w->a.len;
        if ((rc = lb_ar_put_lower(&w->a, h->name, n)) != LB_OK ||
            (rc = lb_ar_end(&w->a, at, &s)) != LB_OK)
            return rc;
        kind = header_kind(s, n);
        if (kind == H_HOST) have_host = 1;
        if (kind == H_OURS || (kind == H_TOKEN && r->session_token) || (kind == H_SHA && add_sha))
            continue;
        sent = NULL;
        if (kind != H_NEVER && (rc = add_signed(w, s, n, h->value, &sent)) != LB_OK) return rc;
        if ((rc = add_out(w, h->name, n, 1, h->value, sent)) != LB_OK) return rc;
    }
    if (!have_host) {
        at = w->a.len;
        if ((rc = lb_sv_host(&w->a, u->scheme, u->scheme_len, u->host, u->host_len)) != LB_OK ||
            (rc = lb_ar_end(&w->a, at, &s)) != LB_OK)
            return rc;
        rc = canon_len(s) != SIZE_MAX ? add_both_canon(w, "host", "Host", 4, s, ended_len(&w->a, at))
                                      : add_both(w, "host", "Host", 4, s);
        if (rc != LB_OK) return rc;
    }
    if (!r->query_mode) {  /* the date and the payload hash hold no whitespace (checked) */
        if ((rc = add_both_canon(w, "x-amz-date", "X-Amz-Date", 10, amz_date, 16)) != LB_OK)
            return rc;
        if (r->session_token) {
            rc = r->omit_session_token
                     ? add_out(w, LIT("X-Amz-Security-Token"), 0, r->session_token, NULL)
                     : add_both(w, "x-amz-security-token", "X-Amz-Security-Token", 20,
                                r->session_token);
            if (rc != LB_OK) return rc;
        }
        if (add_sha &&
            (rc = add_both_canon(w, "x-amz-content-sha256", "X-Amz-Content-Sha256", 20, payload,
                                 w->pl)) != LB_OK)
            return rc;
    }
    sort_signed(w->sh, w->nsh);
    return LB_OK;
}

/* Query mode: append the X-Amz-* parameters as they appear in the final
 * URL to the arena (*params), and add them to the canonical query. */
static int query_params(work *w, const lb_sigv4_request *r, const char *amz_date,
                        const lb_sigv4_result *res, int token_signed, lb_sv_qpair *q,
                        size_t *nq, size_t maxq, const char **params) {
    lb_arena *a = &w->a;
    size_t at = a->len;
    const char *p, *end;
    int rc;
    if ((rc = lb_ar_puts(a, "X-Amz-Algorithm=" ALGORITHM "&X-Amz-Credential=")) != LB_OK ||
        (rc = lb_sv_encode(a, r->access_key, strlen(r->access_key), 0)) != LB_OK ||
        (rc = lb_ar_puts(a, "%2F")) != LB_OK ||
        (rc = lb_sv_encode(a, res->credential_scope, w->scl, 0)) != LB_OK ||
        (rc = lb_ar_puts(a, "&X-Amz-Date=")) != LB_OK || (rc = lb_ar_puts(a, amz_date)) != LB_OK ||
        (rc = lb_ar_puts(a, "&X-Amz-Expires=")) != LB_OK || (rc = put_long(a, r->expires)) != LB_OK ||
        (rc = lb_ar_puts(a, "&X-Amz-SignedHeaders=")) != LB_OK ||
        (rc = lb_sv_encode(a, res->signed_headers, w->shl, 0)) != LB_OK)
        return rc;
    if (r->session_token &&
        ((rc = lb_ar_puts(a, "&X-Amz-Security-Token=")) != LB_OK ||
         (rc = lb_sv_encode(a, r->session_token, strlen(r->session_token), 0)) != LB_OK))
        return rc;
    if ((rc = lb_ar_end(a, at, params)) != LB_OK) return rc;
    /* the same pairs, already encoded, into the canonical query */
    for (p = *params, end = p + strlen(p); p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
        if (!amp) amp = end;
        eq = memchr(p, '=', (size_t)(amp - p));
        if ((token_signed || strncmp(p, "X-Amz-Security-Token=", 21) != 0) &&
            (rc = lb_sv_qadd(a, q, nq, maxq, p, (size_t)(eq - p), eq + 1,
                             (size_t)(amp - eq - 1), 0)) != LB_OK)
            return rc;
        p = amp + 1;
    }
    return LB_OK;
}

/* The canonical request into the arena. */
static int canonical_request(work *w, const lb_sigv4_request *r, const url_parts *u,
                             lb_sv_qpair *q, size_t nq, const lb_sigv4_result *res,
                             const char **out) {
    lb_arena *a = &w->a;
    const char *path;
    size_t at, i, path_len;
    int rc;
    if ((rc = lb_sv_path(a, u->path, u->path_len, r->s3, r->normalize_path, &path)) != LB_OK)
        return rc;
    path_len = ended_len(a, (size_t)(path - a->p));
    at = a->len;
    if ((rc = lb_ar_puts(a, r->method)) != LB_OK || (rc = lb_ar_putc(a, '\n')) != LB_OK ||
        (rc = lb_ar_put(a, path, path_len)) != LB_OK || (rc = lb_ar_putc(a, '\n')) != LB_OK ||
        (rc = lb_sv_qjoin(a, q, nq)) != LB_OK || (rc = lb_ar_putc(a, '\n')) != LB_OK)
        return rc;
    for (i = 0; i < w->nsh; i++) {
        int first = !i || !same_name(&w->sh[i], &w->sh[i - 1]);
        int last = i + 1 == w->nsh || !same_name(&w->sh[i], &w->sh[i + 1]);
        if (first) {
            if ((rc = lb_ar_put(a, w->sh[i].name, w->sh[i].nlen)) != LB_OK ||
                (rc = lb_ar_putc(a, ':')) != LB_OK)
                return rc;
        } else if ((rc = lb_ar_putc(a, ',')) != LB_OK) {
            return rc;
        }
        if ((rc = lb_ar_put(a, w->sh[i].value, w->sh[i].vlen)) != LB_OK) return rc;
        if (last && (rc = lb_ar_putc(a, '\n')) != LB_OK) return rc;
    }
    if ((rc = lb_ar_putc(a, '\n')) != LB_OK ||
        (rc = lb_ar_put(a, res->signed_headers, w->shl)) != LB_OK ||
        (rc = lb_ar_putc(a, '\n')) != LB_OK || (rc = lb_ar_put(a, res->payload_hash, w->pl)) != LB_OK)
        return rc;
    return lb_ar_end(a, at, out);
}

/* Everything after the payload hash and the arena: fills *res. */
static int sign_in(work *w, const lb_sigv4_request *r, const url_parts *u, const char *amz_date,
                   const char *payload, lb_sigv4_result *res) {
    lb_arena *a = &w->a;
    int rc, token_signed = r->session_token && !r->omit_session_token;
    int add_sha = !r->query_mode && r->content_sha256_header;
    size_t i, at, nq = 0, maxq = u->query_len / 2 + 16;
    const char *params = NULL, *s;
    lb_sv_qpair *q;
    unsigned char md[32];
    char hash[65], sig[65], date8[9];

    if (!(w->sh = lb_ar_take(a, (r->nheaders + 5) * sizeof *w->sh)) ||
        !(w->out = lb_ar_take(a, (r->nheaders + 6) * sizeof *w->out)) ||
        !(q = lb_ar_take(a, maxq * sizeof *q)))
        return LB_ENOMEM;
    /* The result's date and payload hash, also the values of the X-Amz-Date
     * and X-Amz-Content-Sha256 headers (the same strings) */
    at = a->len;
    if ((rc = lb_ar_put(a, amz_date, 16)) != LB_OK || (rc = lb_ar_end(a, at, &s)) != LB_OK) return rc;
    res->amz_date = (char *)s;
    w->pl = strlen(payload);
    at = a->len;
    if ((rc = lb_ar_put(a, payload, w->pl)) != LB_OK || (rc = lb_ar_end(a, at, &s)) != LB_OK) return rc;
    res->payload_hash = (char *)s;
    if ((rc = build_headers(w, r, u, res->amz_date, res->payload_hash, add_sha)) != LB_OK) return rc;

    /* Signed headers, credential scope */
    at = a->len;
    for (i = 0; i < w->nsh; i++) {
        if (i && same_name(&w->sh[i], &w->sh[i - 1])) continue;
        if ((i && (rc = lb_ar_putc(a, ';')) != LB_OK) ||
            (rc = lb_ar_put(a, w->sh[i].name, w->sh[i].nlen)) != LB_OK)
            return rc;
    }
    if ((rc = lb_ar_end(a, at, &s)) != LB_OK) return rc;
    res->signed_headers = (char *)s;
    w->shl = ended_len(a, at);
    at = a->len;
    if ((rc = lb_ar_put(a, amz_date, 8)) != LB_OK || (rc = lb_ar_putc(a, '/')) != LB_OK ||
        (rc = lb_ar_puts(a, r->region)) != LB_OK || (rc = lb_ar_putc(a, '/')) != LB_OK ||
        (rc = lb_ar_puts(a, r->service)) != LB_OK || (rc = lb_ar_puts(a, "/aws4_request")) != LB_OK ||
        (rc = lb_ar_end(a, at, &s)) != LB_OK)
        return rc;
    res->credential_scope = (char *)s;
    w->scl = ended_len(a, at);

    /* Query: the URL's pairs, plus the X-Amz-* auth params in query mode */
    if ((rc = lb_sv_qparse(a, q, &nq, maxq, u->query, u->query_len)) != LB_OK) return rc;
    if (r->query_mode &&
        (rc = query_params(w, r, amz_date, res, token_signed, q, &nq, maxq, &params)) != LB_OK)
        return rc;

    /* Canonical request, string to sign, signature */
    if ((rc = canonical_request(w, r, u, q, nq, res, &s)) != LB_OK) return rc;
    res->canonical_request = (char *)s;
    lb_sv_sha256(s, ended_len(a, (size_t)(s - a->p)), md);
    lb_sigv4_hex(md, 32, hash);
    at = a->len;
    if ((rc = lb_ar_puts(a, ALGORITHM "\n")) != LB_OK || (rc = lb_ar_put(a, amz_date, 16)) != LB_OK ||
        (rc = lb_ar_putc(a, '\n')) != LB_OK ||
        (rc = lb_ar_put(a, res->credential_scope, w->scl)) != LB_OK ||
        (rc = lb_ar_putc(a, '\n')) != LB_OK || (rc = lb_ar_put(a, hash, 64)) != LB_OK ||
        (rc = lb_ar_end(a, at, &s)) != LB_OK)
        return rc;
    res->string_to_sign = (char *)s;
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    if ((rc = lb_sigv4_hmac_sts(r->secret_key, date8, r->region, r->service, s,
                                ended_len(a, at), md)) != LB_OK)
        return rc;
    lb_sigv4_hex(md, 32, sig);
    at = a->len;
    if ((rc = lb_ar_put(a, sig, 64)) != LB_OK || (rc = lb_ar_end(a, at, &s)) != LB_OK) return rc;
    res->signature = (char *)s;

    /* Authorization header or presigned URL */
    at = a->len;
    if (!r->query_mode) {
        if ((rc = lb_ar_puts(a, ALGORITHM " Credential=")) != LB_OK ||
            (rc = lb_ar_puts(a, r->access_key)) != LB_OK || (rc = lb_ar_putc(a, '/')) != LB_OK ||
            (rc = lb_ar_put(a, res->credential_scope, w->scl)) != LB_OK ||
            (rc = lb_ar_puts(a, ", SignedHeaders=")) != LB_OK ||
            (rc = lb_ar_put(a, res->signed_headers, w->shl)) != LB_OK ||
            (rc = lb_ar_puts(a, ", Signature=")) != LB_OK || (rc = lb_ar_put(a, sig, 64)) != LB_OK ||
            (rc = lb_ar_end(a, at, &s)) != LB_OK)
            return rc;
        res->authorization = (char *)s;
        w->out[w->nout].name = "Authorization";
        w->out[w->nout++].value = s;
        at = a->len;
        if ((rc = lb_ar_puts(a, r->url)) != LB_OK) return rc;
    } else {
        if ((rc = lb_ar_put(a, r->url, u->base_len)) != LB_OK ||
            (u->query_len && (rc = lb_ar_putc(a, '&')) != LB_OK) ||
            (!u->query_len && !u->has_qmark && (rc = lb_ar_putc(a, '?')) != LB_OK) ||
            (rc = lb_ar_puts(a, params)) != LB_OK || (rc = lb_ar_puts(a, "&X-Amz-Signature=")) != LB_OK ||
            (rc = lb_ar_put(a, sig, 64)) != LB_OK)
            return rc;
    }
    if ((rc = lb_ar_end(a, at, &s)) != LB_OK) return rc;
    res->url = (char *)s;
    res->headers = w->out;
    res->nheaders = w->nout;
    return LB_OK;
}

/* Epoch seconds (0 .. 9999-12-31T23:59:59Z) as "YYYYMMDDTHHMMSSZ": the
 * civil-from-days algorithm, no time zone lookup, no strftime. */
static int amz_format(int64_t t, char out[17]) {
    int64_t days = t / 86400, z, era, doe, yoe, y, doy, mp, d, m, secs = t % 86400;
    int64_t f[6];
    int i, w[6] = {4, 2, 2, 2, 2, 2}, o = 0;
    if (t < 0 || t > INT64_C(253402300799)) return 0;
    z = days + 719468;
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = yoe + era * 400 + (m <= 2);
    f[0] = y, f[1] = m, f[2] = d, f[3] = secs / 3600, f[4] = secs / 60 % 60, f[5] = secs % 60;
    for (i = 0; i < 6; i++) {
        int k;
        if (i == 3) out[o++] = 'T';
        for (k = w[i] - 1; k >= 0; k--, f[i] /= 10) out[o + k] = (char)('0' + f[i] % 10);
        o += w[i];
    }
    out[o++] = 'Z';
    out[o] = '\0';
    return 1;
}

/* amz_format with the last second formatted by this thread kept: requests
 * signed in a burst share it. */
static int amz_date_of(int64_t t, char out[17]) {
    static _Thread_local int64_t last_t = -1;
    static _Thread_local char last[17];
    if (t != last_t) {
        if (!amz_format(t, last)) return 0;
        last_t = t;
    }
    memcpy(out, last, 17);
    return 1;
}

/* Sign into buf[0..cap) when buf, else into one block of our own. */
static int sign(const lb_sigv4_request *r, lb_sigv4_result *res, void *buf, size_t cap,
                char *err) {
    work w;
    url_parts u;
    char amz_date[17], hash[65];
    const char *payload;
    size_t i;
    int rc;

    memset(res, 0, sizeof *res);
    memset(&w, 0, sizeof w);
    if (!r) return lb_err_set(err, LB_EINVAL, "sigv4_sign: no request");
    if ((rc = check_request(r, err)) != LB_OK) return rc;
    if (!parse_url(r->url, &u))
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: url: not scheme://host[/path]");
    if (r->query_mode && u.query_len) {
        for (i = 0; QUERY_RESERVED[i]; i++) {
            size_t kn = strlen(QUERY_RESERVED[i]);
            const char *p = u.query, *end = u.query + u.query_len;
            while (p < end) {
                if ((size_t)(end - p) >= kn && !memcmp(p, QUERY_RESERVED[i], kn) &&
                    (p + kn == end || p[kn] == '=' || p[kn] == '&'))
                    return lb_err_set(err, LB_EINVAL, "sigv4_sign: url: already has %s (query mode)",
                                      QUERY_RESERVED[i]);
                p = memchr(p, '&', (size_t)(end - p));
                if (!p) break;
                p++;
            }
        }
    }

    /* Date */
    if (r->amz_date) {
        memcpy(amz_date, r->amz_date, 17);
    } else if (!amz_date_of(r->time < 0 ? (int64_t)time(NULL) : r->time, amz_date)) {
        return lb_err_set(err, LB_EINVAL, "sigv4_sign: time: out of range");
    }

    /* Payload hash */
    if (r->payload_hash) {
        payload = r->payload_hash;
    } else if (r->query_mode && r->s3) {
        payload = LB_SIGV4_UNSIGNED_PAYLOAD;
    } else if (r->body_file) {
        if ((rc = lb_sigv4_sha256_file(r->body_file, r->body_offset, r->body_length, hash,
                                       err)) != LB_OK)
            return rc;
        payload = hash;
    } else if (r->body_len == 0) {
        payload = EMPTY_SHA256;
    } else {
        lb_sigv4_sha256_hex(r->body, r->body_len, hash);
        payload = hash;
    }

    /* The one allocation (unless the caller gave the block); on success it
     * becomes the result's */
    if (buf) {
        w.a.p = buf;
    } else {
        if (!(cap = sign_bound(r)))
            return lb_err_set(err, LB_EINVAL, "sigv4_sign: request too large");
        if (!(w.a.p = lb_malloc(cap))) return lb_err_set(err, LB_ENOMEM, "sigv4_sign: out of memory");
    }
    w.a.cap = cap;
    w.a.p[0] = '\0';
    if ((rc = sign_in(&w, r, &u, amz_date, payload, res)) != LB_OK) {
        if (!buf) lb_free(w.a.p);
        memset(res, 0, sizeof *res);
        /* the bound is an over-estimate: running out of it is a bug, reported as such */
        return lb_err_set(err, LB_ENOMEM, "sigv4_sign: out of memory (arena of %zu bytes)", cap);
    }
    res->mem_ = buf ? NULL : w.a.p;
    return LB_OK;
}

int lb_sigv4_sign(const lb_sigv4_request *r, lb_sigv4_result *res, char *err) {
    return sign(r, res, NULL, 0, err);
}

size_t lb_sigv4_sign_bound(const lb_sigv4_request *r) {
    if (!r || !r->url || !r->access_key || !r->region || !r->service || !r->method) return 0;
    if (r->nheaders && !r->headers) return 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (!r->headers[i].name || !r->headers[i].value) return 0;
    return sign_bound(r);
}

/* The bound is not computed again here (the caller sized buf with it): a
 * buf that proves too small shows as the arena running out, and the
 * signature is made again in a block of its own. */
int lb_sigv4_sign_into(const lb_sigv4_request *r, lb_sigv4_result *res, void *buf, size_t cap,
                       char *err) {
    int rc;
    if (!buf || cap == 0) return sign(r, res, NULL, 0, err);
    rc = sign(r, res, buf, cap, err);
    return rc == LB_ENOMEM ? sign(r, res, NULL, 0, err) : rc;
}



void lb_sigv4_result_free(lb_sigv4_result *res) {
    if (!res) return;
    lb_free(res->mem_);
    memset(res, 0, sizeof *res);
}
