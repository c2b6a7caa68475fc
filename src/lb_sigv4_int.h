/* lb_sigv4_int.h -- internals shared by the SigV4 signer's files (not a
 * public API): the arena a signature is built in, the canonicalisation
 * helpers (lb_sigv4_canon.c) and the precomputed HMAC state of a signing
 * key (lb_sigv4_key.c).
 *
 * Hashing on the signing path uses OpenSSL's SHA256_* functions (deprecated
 * in OpenSSL 3 but present): no provider dispatch, no allocation, and a
 * precomputed HMAC state is a plain struct copy.  docs/design.md, "SigV4 at
 * the limit", has the measurements behind that choice. */
#ifndef LB_SIGV4_INT_H
#define LB_SIGV4_INT_H

#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED
#endif
#include <openssl/sha.h>
#include <stddef.h>
#include <string.h>

#include "lb_err.h"
#include "lb_sigv4.h"

/* SHA-256 of p[0..n).  (OpenSSL 3's one-shot SHA256() goes through
 * EVP_Q_digest, fetching the algorithm on every call.) */
static inline void lb_sv_sha256(const void *p, size_t n, unsigned char md[32]) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, p, n);
    SHA256_Final(md, &c);
}

/* A fixed block, sized once per signature from an upper bound of what the
 * signature writes (sign_bound in lb_sigv4.c), so pointers into it stay
 * valid.  Every append checks the room left and fails with LB_ENOMEM rather
 * than write past cap (which would mean the bound is wrong).  data[len] is
 * kept '\0' after every append. */
typedef struct lb_arena {
    char *p;
    size_t len, cap;
} lb_arena;

/* The appends are inline: a signature makes a few hundred of them. */
static inline int lb_ar_room(const lb_arena *a, size_t n) {  /* n bytes + NUL fit */
    return n < a->cap - a->len ? LB_OK : LB_ENOMEM;
}

static inline int lb_ar_put(lb_arena *a, const void *s, size_t n) {
    if (lb_ar_room(a, n) != LB_OK) return LB_ENOMEM;
    memcpy(a->p + a->len, s, n);
    a->len += n;
    a->p[a->len] = '\0';
    return LB_OK;
}

static inline int lb_ar_puts(lb_arena *a, const char *s) { return lb_ar_put(a, s, strlen(s)); }

static inline int lb_ar_putc(lb_arena *a, char c) {
    if (lb_ar_room(a, 1) != LB_OK) return LB_ENOMEM;
    a->p[a->len++] = c;
    a->p[a->len] = '\0';
    return LB_OK;
}

/* Terminate the string that started at offset `start`; *out points to it. */
static inline int lb_ar_end(lb_arena *a, size_t start, const char **out) {
    if (lb_ar_room(a, 0) != LB_OK) return LB_ENOMEM;
    a->p[a->len++] = '\0';
    *out = a->p + start;
    return LB_OK;
}

int lb_ar_put_lower(lb_arena *a, const char *s, size_t n);  /* ASCII lowercased */
/* n bytes aligned for any array element, or NULL when they do not fit. */
void *lb_ar_take(lb_arena *a, size_t n);

/* Canonicalisation (lb_sigv4_canon.c); each appends to the arena. */
int lb_sv_encode(lb_arena *a, const char *s, size_t n, int keep_slash);
int lb_sv_host(lb_arena *a, const char *scheme, size_t scheme_len, const char *h, size_t n);
/* The canonical path as its own string (*out, inside the arena). */
int lb_sv_path(lb_arena *a, const char *path, size_t n, int s3, int normalize, const char **out);

typedef struct lb_sv_qpair {
    const char *k, *v;  /* NUL-terminated, encoded, inside the arena */
} lb_sv_qpair;

/* Split the query s[0..n) into *q (room for `max` pairs, from the arena),
 * each key and value decoded and re-encoded (norm) or copied as is. */
int lb_sv_qadd(lb_arena *a, lb_sv_qpair *q, size_t *nq, size_t max, const char *k, size_t kn,
               const char *v, size_t vn, int norm);
int lb_sv_qparse(lb_arena *a, lb_sv_qpair *q, size_t *nq, size_t max, const char *s, size_t n);
/* Sort the pairs (key, then value, bytewise) and append "k=v&k=v". */
int lb_sv_qjoin(lb_arena *a, lb_sv_qpair *q, size_t nq);

/* The precomputed HMAC-SHA256 state of one signing key: SHA-256 after the
 * key^ipad block (inner) and after the key^opad block (outer). */
typedef struct lb_sigv4_hmac {
    SHA256_CTX inner, outer;
} lb_sigv4_hmac;

/* The state for (secret, date8, region, service), from the signing-key
 * cache or derived and cached.  Returns LB_OK or LB_EINVAL (NULL). */
int lb_sigv4_hmac_state(const char *secret, const char *date8, const char *region,
                        const char *service, lb_sigv4_hmac *st);
/* HMAC of m[0..n) with a precomputed state (left unchanged). */
void lb_sigv4_hmac_run(const lb_sigv4_hmac *st, const void *m, size_t n, unsigned char out[32]);
/* The signature: HMAC of the string to sign m[0..n) under the signing key
 * of (secret, date8, region, service), as lb_sigv4_hmac_state and
 * lb_sigv4_hmac_run would give it, one SHA-256 block sooner when m's first
 * 64 bytes are the last call's for that key: the cache entry keeps the
 * inner state after them (the algorithm, X-Amz-Date and most of the
 * scope, shared by one second's signatures).  Returns LB_OK or LB_EINVAL
 * (NULL). */
int lb_sigv4_hmac_sts(const char *secret, const char *date8, const char *region,
                      const char *service, const char *m, size_t n, unsigned char out[32]);

#endif
