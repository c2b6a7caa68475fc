/* lb_sigv4_canon.c -- the signer's arena and canonicalisation of the URL
 * pieces: percent-encoding, the Host value, the canonical path and the
 * canonical query (rules in lb_sigv4.h; internals in lb_sigv4_int.h). */
#include "lb_sigv4_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lb_err.h"

static const char HEX_UPPER[] = "0123456789ABCDEF";

/* ---------------------------------------------------------------- arena */

int lb_ar_put_lower(lb_arena *a, const char *s, size_t n) {
    char *d = a->p + a->len;
    size_t i;
    if (lb_ar_room(a, n) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++)  /* branch-free, so the compiler can vectorise it */
        d[i] = (char)(s[i] | ((unsigned char)(s[i] - 'A') < 26) << 5);
    a->len += n;
    a->p[a->len] = '\0';
    return LB_OK;
}

void *lb_ar_take(lb_arena *a, size_t n) {
    size_t at = (a->len + 15) & ~(size_t)15;
    if (at > a->cap || n >= a->cap - at) return NULL;
    a->len = at + n;
    return a->p + at;
}

/* ------------------------------------------------------------- encoding */

static int is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static void put_enc(lb_arena *a, unsigned char c, int keep_slash) {
    if (is_unreserved(c) || (keep_slash && c == '/')) {
        a->p[a->len++] = (char)c;
    } else {
        a->p[a->len++] = '%';
        a->p[a->len++] = HEX_UPPER[c >> 4];
        a->p[a->len++] = HEX_UPPER[c & 15];
    }
}

/* Append s[0..n) percent-encoding everything but the unreserved set (and
 * '/' when keep_slash). */
int lb_sv_encode(lb_arena *a, const char *s, size_t n, int keep_slash) {
    size_t i;
    if (lb_ar_room(a, n * 3) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++) put_enc(a, (unsigned char)s[i], keep_slash);
    a->p[a->len] = '\0';
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
static int normal_encode(lb_arena *a, const char *s, size_t n) {
    size_t i;
    if (lb_ar_room(a, n * 3) != LB_OK) return LB_ENOMEM;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int hi, lo;
        if (c == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        put_enc(a, c, 0);
    }
    a->p[a->len] = '\0';
    return LB_OK;
}

/* ----------------------------------------------------------------- host */

/* Host header value: lowercase, default port (80/http, 443/https) dropped. */
int lb_sv_host(lb_arena *a, const char *scheme, size_t scheme_len, const char *h, size_t n) {
    size_t i;
    const char *colon = NULL;
    for (i = n; i > 0; i--) {  /* port colon: last ':' after any ']' */
        if (h[i - 1] == ']') break;
        if (h[i - 1] == ':') { colon = h + i - 1; break; }
    }
    if (colon) {
        size_t plen = n - (size_t)(colon + 1 - h);
        int http = scheme_len == 4 && strncasecmp(scheme, "http", 4) == 0;
        int https = scheme_len == 5 && strncasecmp(scheme, "https", 5) == 0;
        if (plen == 0 || (http && plen == 2 && memcmp(colon + 1, "80", 2) == 0) ||
            (https && plen == 3 && memcmp(colon + 1, "443", 3) == 0))
            n = (size_t)(colon - h);
    }
    return lb_ar_put_lower(a, h, n);
}

/* ----------------------------------------------------------------- path */

/* Canonical path.  S3: verbatim.  Others: botocore's remove_dot_segments
 * (when normalize), then encode again keeping '/'.  The normalised path is
 * built at the arena's end (segment starts kept so ".." can pop), then
 * encoded after it and moved down over it. */
/* Whether the path is its own canonical form either way, normalised or
 * not (the usual case: copied as is): absolute, only unreserved bytes and
 * '/', no empty (but a trailing), "." or ".." segment. */
static int path_is_canonical(const char *p, size_t n) {
    size_t i, seg = 1;  /* where the current segment starts */
    if (p[0] != '/') return 0;
    for (i = 1; i <= n; i++) {
        if (i == n || p[i] == '/') {
            size_t len = i - seg;
            if ((len == 0 && i != n) || (len == 1 && p[seg] == '.') ||
                (len == 2 && p[seg] == '.' && p[seg + 1] == '.'))
                return 0;
            seg = i + 1;
        } else if (!is_unreserved((unsigned char)p[i])) {
            return 0;
        }
    }
    return 1;
}

static int path_body(lb_arena *a, const char *path, size_t n, int s3, int normalize,
                     size_t *base) {
    size_t i = 0, nseg = 0, *starts, tlen, elen;
    *base = a->len;
    if (n == 0) return lb_ar_putc(a, '/');
    if (s3 || path_is_canonical(path, n)) return lb_ar_put(a, path, n);
    if (!normalize) return lb_sv_encode(a, path, n, 1);
    if (!(starts = lb_ar_take(a, (n / 2 + 2) * sizeof *starts))) return LB_ENOMEM;
    *base = a->len;
    if (lb_ar_room(a, n + 1) != LB_OK) return LB_ENOMEM;  /* the output never outgrows the input */
    if (path[0] == '/') a->p[a->len++] = '/';
    while (i <= n) {
        size_t j = i;
        while (j < n && path[j] != '/') j++;
        if (j > i && !(j - i == 1 && path[i] == '.')) {
            if (j - i == 2 && path[i] == '.' && path[i + 1] == '.') {
                if (nseg) a->len = starts[--nseg];
            } else {
                starts[nseg++] = a->len;
                if (nseg > 1) a->p[a->len++] = '/';
                memcpy(a->p + a->len, path + i, j - i);
                a->len += j - i;
            }
        }
        i = j + 1;
    }
    if (nseg && path[n - 1] == '/') a->p[a->len++] = '/';
    tlen = a->len - *base;
    if (tlen == 0) return lb_ar_putc(a, '/');  /* relative path emptied */
    if (lb_sv_encode(a, a->p + *base, tlen, 1) != LB_OK) return LB_ENOMEM;
    elen = a->len - *base - tlen;
    memmove(a->p + *base, a->p + *base + tlen, elen);
    a->len = *base + elen;
    a->p[a->len] = '\0';
    return LB_OK;
}

int lb_sv_path(lb_arena *a, const char *path, size_t n, int s3, int normalize, const char **out) {
    size_t base;
    int rc = path_body(a, path, n, s3, normalize, &base);
    return rc != LB_OK ? rc : lb_ar_end(a, base, out);
}

/* ---------------------------------------------------------------- query */

int lb_sv_qadd(lb_arena *a, lb_sv_qpair *q, size_t *nq, size_t max, const char *k, size_t kn,
               const char *v, size_t vn, int norm) {
    size_t at = a->len;
    int rc;
    if (*nq == max) return LB_ENOMEM;
    rc = norm ? normal_encode(a, k, kn) : lb_ar_put(a, k, kn);
    if (rc != LB_OK || (rc = lb_ar_end(a, at, &q[*nq].k)) != LB_OK) return rc;
    at = a->len;
    rc = norm ? normal_encode(a, v, vn) : lb_ar_put(a, v, vn);
    if (rc != LB_OK || (rc = lb_ar_end(a, at, &q[*nq].v)) != LB_OK) return rc;
    (*nq)++;
    return LB_OK;
}

int lb_sv_qparse(lb_arena *a, lb_sv_qpair *q, size_t *nq, size_t max, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i, eq;
        int rc;
        while (j < n && s[j] != '&') j++;
        if (j > i) {
            eq = i;
            while (eq < j && s[eq] != '=') eq++;
            rc = lb_sv_qadd(a, q, nq, max, s + i, eq - i, s + (eq < j ? eq + 1 : j),
                            eq < j ? j - eq - 1 : 0, 1);
            if (rc != LB_OK) return rc;
        }
        i = j + 1;
    }
    return LB_OK;
}

static int qpair_cmp(const void *a, const void *b) {
    const lb_sv_qpair *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

int lb_sv_qjoin(lb_arena *a, lb_sv_qpair *q, size_t nq) {
    size_t i, j;
    int rc = LB_OK;
    if (nq > 16) {
        qsort(q, nq, sizeof *q, qpair_cmp);
    } else {  /* insertion sort: the usual handful of pairs */
        for (i = 1; i < nq; i++) {
            lb_sv_qpair p = q[i];
            for (j = i; j > 0 && qpair_cmp(&q[j - 1], &p) > 0; j--) q[j] = q[j - 1];
            q[j] = p;
        }
    }
    for (i = 0; i < nq && rc == LB_OK; i++) {
        if (i && (rc = lb_ar_putc(a, '&')) != LB_OK) break;
        if ((rc = lb_ar_puts(a, q[i].k)) != LB_OK || (rc = lb_ar_putc(a, '=')) != LB_OK) break;
        rc = lb_ar_puts(a, q[i].v);
    }
    return rc;
}
