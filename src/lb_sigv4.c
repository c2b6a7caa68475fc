/* lb_sigv4.c -- AWS Signature Version 4 signer: canonical request, string to
 * sign, signature (see lb_sigv4.h).  Hashing and the signing-key cache are
 * lb_sigv4_key.c. */
#include "lb_sigv4.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_err.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

static const char HEX_UPPER[] = "0123456789ABCDEF";

/* ------------------------------------------------------------- encoding */

static int is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static int is_ws(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Append s[0..n) percent-encoding everything but the unreserved set (and
 * '/' when keep_slash). */
static int encode(lb_buf *b, const char *s, size_t n, int keep_slash) {
    size_t i;
    if (lb_buf_reserve(b, n * 3) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            b->data[b->len++] = (char)c;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = HEX_UPPER[c >> 4];
            b->data[b->len++] = HEX_UPPER[c & 15];
        }
    }
    b->data[b->len] = '\0';
    return LB_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Append the decode-then-encode normal form of s[0..n): "%xx" with two hex
 * digits is decoded, anything else (a stray '%', '+') is taken literally,
 * then each byte is encoded with the unreserved set. */
static int normal_encode(lb_buf *b, const char *s, size_t n) {
    size_t i;
    if (lb_buf_reserve(b, n * 3) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int hi, lo;
        if (c == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (is_unreserved(c)) {
            b->data[b->len++] = (char)c;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = HEX_UPPER[c >> 4];
            b->data[b->len++] = HEX_UPPER[c & 15];
        }
    }
    b->data[b->len] = '\0';
    return LB_OK;
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
    const char *p = strstr(url, "://"), *a, *e;
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

/* Host header value: lowercase, default port (80/http, 443/https) dropped. */
static int host_value(const url_parts *u, lb_buf *b) {
    size_t n = u->host_len, i;
    const char *h = u->host;
    const char *colon = NULL;
    for (i = n; i > 0; i--) {  /* port colon: last ':' after any ']' */
        if (h[i - 1] == ']') break;
        if (h[i - 1] == ':') { colon = h + i - 1; break; }
    }
    if (colon) {
        size_t plen = n - (size_t)(colon + 1 - h);
        int http = u->scheme_len == 4 && strncasecmp(u->scheme, "http", 4) == 0;
        int https = u->scheme_len == 5 && strncasecmp(u->scheme, "https", 5) == 0;
        if (plen == 0 || (http && plen == 2 && memcmp(colon + 1, "80", 2) == 0) ||
            (https && plen == 3 && memcmp(colon + 1, "443", 3) == 0))
            n = (size_t)(colon - h);
    }
    if (lb_buf_reserve(b, n) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++) {
        char c = h[i];
        b->data[b->len++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    b->data[b->len] = '\0';
    return LB_OK;
}

/* Canonical path.  S3: verbatim.  Others: botocore's remove_dot_segments
 * (when normalize), then encode again keeping '/'. */
static int canonical_path(const char *path, size_t n, int s3, int normalize, lb_buf *b) {
    lb_buf tmp = {0};
    int rc;
    if (n == 0) return lb_buf_putc(b, '/');
    if (s3) return lb_buf_append(b, path, n);
    if (normalize) {
        /* tmp holds the output segments; offsets of segment starts live in
         * a small stack so ".." can pop. */
        size_t i = 0, *starts = lb_malloc((n / 2 + 2) * sizeof *starts), nseg = 0;
        if (!starts) return LB_ENOMEM;
        if (path[0] == '/' && (rc = lb_buf_putc(&tmp, '/')) != LB_OK) goto nseg_fail;
        while (i <= n) {
            size_t j = i;
            while (j < n && path[j] != '/') j++;
            if (j > i && !(j - i == 1 && path[i] == '.')) {
                if (j - i == 2 && path[i] == '.' && path[i + 1] == '.') {
                    if (nseg) { tmp.len = starts[--nseg]; tmp.data[tmp.len] = '\0'; }
                } else {
                    starts[nseg++] = tmp.len;
                    if ((nseg > 1 && (rc = lb_buf_putc(&tmp, '/')) != LB_OK) ||
                        (rc = lb_buf_append(&tmp, path + i, j - i)) != LB_OK)
                        goto nseg_fail;
                }
            }
            i = j + 1;
        }
        if (nseg && path[n - 1] == '/' && (rc = lb_buf_putc(&tmp, '/')) != LB_OK)
            goto nseg_fail;
        lb_free(starts);
        if (tmp.len == 0) rc = lb_buf_putc(b, '/');   /* relative path emptied */
        else rc = encode(b, tmp.data, tmp.len, 1);
        lb_buf_free(&tmp);
        return rc;
    nseg_fail:
        lb_free(starts);
        lb_buf_free(&tmp);
        return rc;
    }
    return encode(b, path, n, 1);
}

/* ---------------------------------------------------------------- query */

typedef struct qpair {
    size_t k, v;         /* offsets of NUL-terminated key and value in the pool */
    const char *ks, *vs; /* the same as pointers, set once the pool is final */
} qpair;

typedef struct qlist {
    lb_buf pool;  /* "key\0value\0..." */
    qpair *v;
    size_t n, cap;
} qlist;

static void qlist_free(qlist *q) {
    lb_buf_free(&q->pool);
    lb_free(q->v);
    memset(q, 0, sizeof *q);
}

/* Add an already encoded (key, value) pair; lengths given. */
static int qlist_add(qlist *q, const char *k, size_t kn, const char *v, size_t vn, int norm) {
    qpair p;
    int rc;
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        qpair *nv = lb_realloc(q->v, cap * sizeof *nv);
        if (!nv) return LB_ENOMEM;
        q->v = nv;
        q->cap = cap;
    }
    p.k = q->pool.len;
    rc = norm ? normal_encode(&q->pool, k, kn) : lb_buf_append(&q->pool, k, kn);
    if (rc != LB_OK || (rc = lb_buf_putc(&q->pool, '\0')) != LB_OK) return rc;
    p.v = q->pool.len;
    rc = norm ? normal_encode(&q->pool, v, vn) : lb_buf_append(&q->pool, v, vn);
    if (rc != LB_OK || (rc = lb_buf_putc(&q->pool, '\0')) != LB_OK) return rc;
    q->v[q->n++] = p;
    return LB_OK;
}

static int qlist_parse(qlist *q, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i, eq;
        int rc;
        while (j < n && s[j] != '&') j++;
        if (j > i) {
            eq = i;
            while (eq < j && s[eq] != '=') eq++;
            rc = qlist_add(q, s + i, eq - i, s + (eq < j ? eq + 1 : j), eq < j ? j - eq - 1 : 0, 1);
            if (rc != LB_OK) return rc;
        }
        i = j + 1;
    }
    return LB_OK;
}

static int qpair_cmp(const void *a, const void *b) {
    const qpair *x = a, *y = b;
    int c = strcmp(x->ks, y->ks);
    return c ? c : strcmp(x->vs, y->vs);
}

static int qlist_join(qlist *q, lb_buf *b) {
    size_t i;
    int rc = LB_OK;
    for (i = 0; i < q->n; i++) {
        q->v[i].ks = q->pool.data + q->v[i].k;
        q->v[i].vs = q->pool.data + q->v[i].v;
    }
    if (q->n > 1) qsort(q->v, q->n, sizeof *q->v, qpair_cmp);
    for (i = 0; i < q->n && rc == LB_OK; i++) {
        if (i && (rc = lb_buf_putc(b, '&')) != LB_OK) break;
        if ((rc = lb_buf_puts(b, q->v[i].ks)) != LB_OK || (rc = lb_buf_putc(b, '=')) != LB_OK)
            break;
        rc = lb_buf_puts(b, q->v[i].vs);
    }
    return rc;
}

/* --------------------------------------------------------------- headers */

typedef struct shdr {
    char *name;    /* lowercase */
    char *value;   /* canonical value */
    size_t order;  /* input position, for a stable sort */
} shdr;

static int shdr_cmp(const void *a, const void *b) {
    const shdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int never_signed(const char *n) {
    return !strcmp(n, "user-agent") || !strcmp(n, "expect") || !strcmp(n, "x-amzn-trace-id") ||
           !strcmp(n, "connection") || !strcmp(n, "transfer-encoding") ||
           !strcmp(n, "upgrade") || !strncmp(n, "sec-websocket-", 14);
}

static char *lower_dup(const char *s) {
    char *d = lb_strdup(s), *p;
    if (!d) return NULL;
    for (p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
    return d;
}

/* Trim and collapse whitespace runs to one space. */
static char *canon_value(const char *s) {
    size_t n = strlen(s), o = 0, i;
    char *d = lb_malloc(n + 1);
    int pending = 0;
    if (!d) return NULL;
    for (i = 0; i < n; i++) {
        if (is_ws((unsigned char)s[i])) { pending = o > 0; continue; }
        if (pending) { d[o++] = ' '; pending = 0; }
        d[o++] = s[i];
    }
    d[o] = '\0';
    return d;
}

static int valid_name(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    if (!*p) return 0;
    for (; *p; p++)
        if (*p <= 32 || *p >= 127 || *p == ':') return 0;
    return 1;
}

/* Values may hold CR/LF only as obsolete line folding (followed by SP/HT). */
static int valid_value(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (; *p; p++) {
        if (*p == '\r' && p[1] == '\n') p++;
        if (*p == '\r' || *p == '\n') {
            if (p[1] != ' ' && p[1] != '\t') return 0;
        } else if ((*p < 32 && *p != '\t') || *p == 127) {
            return 0;
        }
    }
    return 1;
}

/* A field that lands in the credential scope or a header. */
static int valid_word(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    if (!s || !*p) return 0;
    for (; *p; p++)
        if (*p <= 32 || *p == 127 || *p == '/') return 0;
    return 1;
}

/* ------------------------------------------------------------------ sign */

typedef struct work {
    shdr *sh;            /* headers to sign */
    size_t nsh;
    lb_sigv4_header *out;  /* headers to send (owned strings) */
    size_t nout;
    qlist q;
    lb_buf b;            /* scratch */
} work;

static int add_signed(work *w, const char *lname, const char *value) {
    shdr *s = &w->sh[w->nsh];
    s->name = lb_strdup(lname);
    s->value = s->name ? canon_value(value) : NULL;
    s->order = w->nsh;
    if (!s->name || !s->value) {
        lb_free(s->name);
        return LB_ENOMEM;
    }
    w->nsh++;
    return LB_OK;
}

static int add_out(work *w, const char *name, const char *value) {
    lb_sigv4_header *h = &w->out[w->nout];
    char *n = lb_strdup(name), *v = NULL;
    if (n) v = strpbrk(value, "\r\n") ? canon_value(value) : lb_strdup(value);
    if (!n || !v) {
        lb_free(n);
        return LB_ENOMEM;
    }
    h->name = n;
    h->value = v;
    w->nout++;
    return LB_OK;
}

static void work_free(work *w) {
    size_t i;
    for (i = 0; i < w->nsh; i++) {
        lb_free(w->sh[i].name);
        lb_free(w->sh[i].value);
    }
    lb_free(w->sh);
    for (i = 0; w->out && i < w->nout; i++) {
        lb_free((void *)w->out[i].name);
        lb_free((void *)w->out[i].value);
    }
    lb_free(w->out);
    qlist_free(&w->q);
    lb_buf_free(&w->b);
}

static char *detach(lb_buf *b) { return lb_buf_detach(b, NULL); }

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

#define TRY(x) do { if ((rc = (x)) != LB_OK) goto fail; } while (0)
#define TRYP(p, x) do { if (!((p) = (x))) { rc = LB_ENOMEM; goto fail; } } while (0)

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

int lb_sigv4_sign(const lb_sigv4_request *r, lb_sigv4_result *res, char *err) {
    work w;
    url_parts u;
    char amz_date[17], date8[9], hash[65], sig[65];
    unsigned char key[32], mac[32];
    unsigned int maclen = 0;
    const char *payload;
    int rc, have_host = 0, token_signed, add_sha;
    size_t i;
    lb_buf t = {0};

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
    } else {
        time_t now = r->time < 0 ? time(NULL) : (time_t)r->time;
        struct tm tm;
        if (!gmtime_r(&now, &tm) || strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm) != 16)
            return lb_err_set(err, LB_EINVAL, "sigv4_sign: time: out of range");
    }
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';

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
    } else {
        if (lb_sigv4_sha256_hex(r->body, r->body_len, hash) != LB_OK)
            return lb_err_set(err, LB_ENOMEM, "sigv4_sign: out of memory");
        payload = hash;
    }
    token_signed = r->session_token && !r->omit_session_token;
    add_sha = !r->query_mode && r->content_sha256_header;

    /* Headers: at most input + host, x-amz-date, token, sha256, authorization */
    TRYP(w.sh, lb_calloc(r->nheaders + 5, sizeof *w.sh));
    TRYP(w.out, lb_calloc(r->nheaders + 6, sizeof *w.out));
    for (i = 0; i < r->nheaders; i++) {
        const lb_sigv4_header *h = &r->headers[i];
        char *ln;
        int drop;
        TRYP(ln, lower_dup(h->name));
        drop = !strcmp(ln, "authorization") || !strcmp(ln, "x-amz-date") ||
               (r->session_token && !strcmp(ln, "x-amz-security-token")) ||
               (add_sha && !strcmp(ln, "x-amz-content-sha256"));
        if (!strcmp(ln, "host")) have_host = 1;
        rc = LB_OK;
        if (!drop && !never_signed(ln)) rc = add_signed(&w, ln, h->value);
        if (!drop && rc == LB_OK) rc = add_out(&w, h->name, h->value);
        lb_free(ln);
        if (rc != LB_OK) goto fail;
    }
    if (!have_host) {
        TRY(host_value(&u, &t));
        TRY(add_signed(&w, "host", t.data));
        TRY(add_out(&w, "Host", t.data));
        lb_buf_reset(&t);
    }
    if (!r->query_mode) {
        TRY(add_signed(&w, "x-amz-date", amz_date));
        TRY(add_out(&w, "X-Amz-Date", amz_date));
        if (r->session_token) {
            if (token_signed) TRY(add_signed(&w, "x-amz-security-token", r->session_token));
            TRY(add_out(&w, "X-Amz-Security-Token", r->session_token));
        }
        if (add_sha) {
            TRY(add_signed(&w, "x-amz-content-sha256", payload));
            TRY(add_out(&w, "X-Amz-Content-Sha256", payload));
        }
    }
    qsort(w.sh, w.nsh, sizeof *w.sh, shdr_cmp);

    /* Signed headers and credential scope */
    for (i = 0; i < w.nsh; i++) {
        if (i && !strcmp(w.sh[i].name, w.sh[i - 1].name)) continue;
        if (t.len) TRY(lb_buf_putc(&t, ';'));
        TRY(lb_buf_puts(&t, w.sh[i].name));
    }
    TRYP(res->signed_headers, detach(&t));
    TRY(lb_buf_printf(&t, "%s/%s/%s/aws4_request", date8, r->region, r->service));
    TRYP(res->credential_scope, detach(&t));
    TRYP(res->amz_date, lb_strdup(amz_date));
    TRYP(res->payload_hash, lb_strdup(payload));

    /* Query: the URL's pairs, plus the X-Amz-* auth params in query mode */
    TRY(qlist_parse(&w.q, u.query, u.query_len));
    lb_buf_reset(&w.b);
    if (r->query_mode) {
        /* w.b = the auth params as they appear in the final URL */
        TRY(lb_buf_puts(&w.b, "X-Amz-Algorithm=" ALGORITHM "&X-Amz-Credential="));
        TRY(lb_buf_printf(&t, "%s/%s", r->access_key, res->credential_scope));
        TRY(encode(&w.b, t.data, t.len, 0));
        lb_buf_reset(&t);
        TRY(lb_buf_printf(&w.b, "&X-Amz-Date=%s&X-Amz-Expires=%ld&X-Amz-SignedHeaders=",
                          amz_date, r->expires));
        TRY(encode(&w.b, res->signed_headers, strlen(res->signed_headers), 0));
        if (r->session_token) {
            TRY(lb_buf_puts(&w.b, "&X-Amz-Security-Token="));
            TRY(encode(&w.b, r->session_token, strlen(r->session_token), 0));
        }
        /* the same pairs, already encoded, into the canonical query */
        {
            const char *p = w.b.data, *end = w.b.data + w.b.len;
            while (p < end) {
                const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
                if (!amp) amp = end;
                eq = memchr(p, '=', (size_t)(amp - p));
                if (token_signed || strncmp(p, "X-Amz-Security-Token=", 21) != 0)
                    TRY(qlist_add(&w.q, p, (size_t)(eq - p), eq + 1, (size_t)(amp - eq - 1), 0));
                p = amp + 1;
            }
        }
    }

    /* Canonical request */
    TRY(lb_buf_printf(&t, "%s\n", r->method));
    TRY(canonical_path(u.path, u.path_len, r->s3, r->normalize_path, &t));
    TRY(lb_buf_putc(&t, '\n'));
    TRY(qlist_join(&w.q, &t));
    TRY(lb_buf_putc(&t, '\n'));
    for (i = 0; i < w.nsh; i++) {
        int first = !i || strcmp(w.sh[i].name, w.sh[i - 1].name);
        int last = i + 1 == w.nsh || strcmp(w.sh[i].name, w.sh[i + 1].name);
        if (first) TRY(lb_buf_printf(&t, "%s:", w.sh[i].name));
        else TRY(lb_buf_putc(&t, ','));
        TRY(lb_buf_puts(&t, w.sh[i].value));
        if (last) TRY(lb_buf_putc(&t, '\n'));
    }
    TRY(lb_buf_printf(&t, "\n%s\n%s", res->signed_headers, payload));
    TRYP(res->canonical_request, detach(&t));

    /* String to sign and signature */
    if (lb_sigv4_sha256_hex(res->canonical_request, strlen(res->canonical_request), hash) != LB_OK) {
        rc = LB_ENOMEM;
        goto fail;
    }
    TRY(lb_buf_printf(&t, ALGORITHM "\n%s\n%s\n%s", amz_date, res->credential_scope, hash));
    TRYP(res->string_to_sign, detach(&t));
    TRY(lb_sigv4_signing_key(r->secret_key, date8, r->region, r->service, key));
    if (!HMAC(EVP_sha256(), key, 32, (const unsigned char *)res->string_to_sign,
              strlen(res->string_to_sign), mac, &maclen)) {
        OPENSSL_cleanse(key, sizeof key);
        rc = LB_ENOMEM;
        goto fail;
    }
    OPENSSL_cleanse(key, sizeof key);
    lb_sigv4_hex(mac, 32, sig);
    TRYP(res->signature, lb_strdup(sig));

    /* Authorization header or presigned URL */
    if (!r->query_mode) {
        TRY(lb_buf_printf(&t, ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                          r->access_key, res->credential_scope, res->signed_headers, sig));
        TRYP(res->authorization, detach(&t));
        TRY(add_out(&w, "Authorization", res->authorization));
        TRYP(res->url, lb_strdup(r->url));
    } else {
        TRY(lb_buf_append(&t, r->url, u.base_len));
        if (u.query_len) TRY(lb_buf_putc(&t, '&'));
        else if (!u.has_qmark) TRY(lb_buf_putc(&t, '?'));
        TRY(lb_buf_append(&t, w.b.data, w.b.len));
        TRY(lb_buf_printf(&t, "&X-Amz-Signature=%s", sig));
        TRYP(res->url, detach(&t));
    }
    res->headers = w.out;
    res->nheaders = w.nout;
    w.out = NULL;
    w.nout = 0;
    work_free(&w);
    lb_buf_free(&t);
    return LB_OK;

fail:
    work_free(&w);
    lb_buf_free(&t);
    lb_sigv4_result_free(res);
    if (rc == LB_ENOMEM) return lb_err_set(err, LB_ENOMEM, "sigv4_sign: out of memory");
    return rc;
}

void lb_sigv4_result_free(lb_sigv4_result *res) {
    size_t i;
    if (!res) return;
    lb_free(res->canonical_request);
    lb_free(res->string_to_sign);
    lb_free(res->signature);
    lb_free(res->authorization);
    lb_free(res->signed_headers);
    lb_free(res->credential_scope);
    lb_free(res->payload_hash);
    lb_free(res->amz_date);
    lb_free(res->url);
    for (i = 0; res->headers && i < res->nheaders; i++) {
        lb_free((void *)res->headers[i].name);
        lb_free((void *)res->headers[i].value);
    }
    lb_free(res->headers);
    memset(res, 0, sizeof *res);
}
