/* lb_sigv4_key.c -- the SHA-256 hashing and the signing-key cache of the
 * SigV4 signer (see lb_sigv4.h): payload hashes (memory, incremental, file
 * ranges) and the derived keys, one HMAC chain per (secret, date, region,
 * service), kept in a small LRU cache shared by every thread. */
#include "lb_sigv4_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "lb_alloc.h"
#include "lb_err.h"

#define FILE_CHUNK (256 * 1024)  /* read size for file hashing */

/* The two hex digits of every byte value, "000102...ff". */
#define HEX_ROW(h) h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" \
                   h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
static const char HEX_PAIRS[] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3")
    HEX_ROW("4") HEX_ROW("5") HEX_ROW("6") HEX_ROW("7") HEX_ROW("8") HEX_ROW("9")
    HEX_ROW("a") HEX_ROW("b") HEX_ROW("c") HEX_ROW("d") HEX_ROW("e") HEX_ROW("f");

void lb_sigv4_hex(const unsigned char *p, size_t n, char *out) {
    size_t i;
    for (i = 0; i < n; i++) memcpy(out + 2 * i, HEX_PAIRS + 2 * p[i], 2);
    out[2 * n] = '\0';
}

/* ---------------------------------------------------------------- hashing */

struct lb_sigv4_hash {
    EVP_MD_CTX *ctx;
};

int lb_sigv4_hash_new(lb_sigv4_hash **out) {
    lb_sigv4_hash *h;
    *out = NULL;
    h = lb_malloc(sizeof *h);
    if (!h) return LB_ENOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL)) {
        lb_sigv4_hash_free(h);
        return LB_ENOMEM;
    }
    *out = h;
    return LB_OK;
}

int lb_sigv4_hash_update(lb_sigv4_hash *h, const void *p, size_t n) {
    if (n == 0) return LB_OK;
    return EVP_DigestUpdate(h->ctx, p, n) ? LB_OK : LB_ENOMEM;
}

int lb_sigv4_hash_final(lb_sigv4_hash *h, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_DigestFinal_ex(h->ctx, md, &len)) return LB_ENOMEM;
    lb_sigv4_hex(md, len, hex);
    return EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) ? LB_OK : LB_ENOMEM;
}

void lb_sigv4_hash_free(lb_sigv4_hash *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    lb_free(h);
}

int lb_sigv4_sha256_hex(const void *p, size_t n, char hex[65]) {
    unsigned char md[32];
    lb_sv_sha256(n ? p : (const void *)"", n, md);
    lb_sigv4_hex(md, 32, hex);
    return LB_OK;
}

int lb_sigv4_sha256_file(const char *path, uint64_t offset, int64_t length,
                         char hex[65], char *err) {
    lb_sigv4_hash *h = NULL;
    unsigned char *buf = NULL;
    uint64_t pos = offset, left = length < 0 ? UINT64_MAX : (uint64_t)length;
    int fd = -1, rc;
    if (!path) return lb_err_set(err, LB_EINVAL, "sha256_file: no path");
    if ((rc = lb_sigv4_hash_new(&h)) != LB_OK) goto nomem;
    buf = lb_malloc(FILE_CHUNK);
    if (!buf) goto nomem;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = lb_err_set(err, LB_EIO, "sha256_file %s: %s", path, strerror(errno));
        goto done;
    }
    while (left > 0) {
        size_t want = left < FILE_CHUNK ? (size_t)left : FILE_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)pos);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            rc = lb_err_set(err, LB_EIO, "sha256_file %s: %s", path, strerror(errno));
            goto done;
        }
        if (got == 0) {
            if (length < 0) break;  /* reading to EOF: done */
            rc = lb_err_set(err, LB_EIO, "sha256_file %s: file ends at byte %llu, before the "
                            "requested range", path, (unsigned long long)pos);
            goto done;
        }
        if ((rc = lb_sigv4_hash_update(h, buf, (size_t)got)) != LB_OK) goto nomem;
        pos += (uint64_t)got;
        left -= (uint64_t)got;
    }
    if ((rc = lb_sigv4_hash_final(h, hex)) != LB_OK) goto nomem;
    rc = LB_OK;
    goto done;
nomem:
    rc = lb_err_set(err, LB_ENOMEM, "sha256_file %s: out of memory", path);
done:
    if (fd >= 0) close(fd);
    lb_free(buf);
    lb_sigv4_hash_free(h);
    return rc;
}

/* ------------------------------------------------------ signing-key cache */

/* An entry is found by the SHA-256 of the secret (one compression block
 * for any secret up to 55 bytes) and the rest of the tuple in clear: date,
 * region and service are no secrets. */
#define REST_MAX 64

typedef struct cache_entry {
    unsigned char id[32];   /* SHA-256 of the secret */
    char rest[REST_MAX];    /* date8 region '\0' service '\0' (see cache_rest) */
    size_t rest_len;
    unsigned char key[32];  /* the derived signing key */
    lb_sigv4_hmac st;       /* its precomputed HMAC state */
    unsigned long used;     /* LRU stamp; 0 = empty slot */
    int has_after;          /* first and after are set (lb_sigv4_hmac_sts) */
    char first[64];         /* the first block of the last string to sign */
    SHA256_CTX after;       /* st.inner after that block */
} cache_entry;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_entry cache[LB_SIGV4_CACHE_SIZE];
static unsigned long cache_tick, cache_hits, cache_misses;

/* HMAC-SHA256 state for key k[0..kn) (RFC 2104: a key longer than the
 * 64-byte block is hashed first). */
static void hmac_init(lb_sigv4_hmac *st, const void *k, size_t kn) {
    unsigned char blk[64], kh[32];
    size_t i;
    if (kn > 64) {
        lb_sv_sha256(k, kn, kh);
        k = kh;
        kn = 32;
    }
    memset(blk, 0, sizeof blk);
    memcpy(blk, k, kn);
    for (i = 0; i < 64; i++) blk[i] ^= 0x36;
    SHA256_Init(&st->inner);
    SHA256_Update(&st->inner, blk, 64);
    for (i = 0; i < 64; i++) blk[i] ^= 0x36 ^ 0x5c;
    SHA256_Init(&st->outer);
    SHA256_Update(&st->outer, blk, 64);
    OPENSSL_cleanse(blk, sizeof blk);
    OPENSSL_cleanse(kh, sizeof kh);
}

/* The HMAC from c, the inner state once the message is in, and the outer
 * state; c is wiped. */
static void hmac_end(SHA256_CTX *c, const SHA256_CTX *outer, unsigned char out[32]) {
    unsigned char ih[32];
    SHA256_Final(ih, c);
    *c = *outer;
    SHA256_Update(c, ih, 32);
    SHA256_Final(out, c);
    OPENSSL_cleanse(c, sizeof *c);
}

void lb_sigv4_hmac_run(const lb_sigv4_hmac *st, const void *m, size_t n, unsigned char out[32]) {
    SHA256_CTX c = st->inner;
    SHA256_Update(&c, m, n);
    hmac_end(&c, &st->outer, out);
}

static void hmac(const void *k, size_t kn, const char *m, unsigned char out[32]) {
    lb_sigv4_hmac st;
    hmac_init(&st, k, kn);
    lb_sigv4_hmac_run(&st, m, strlen(m), out);
    OPENSSL_cleanse(&st, sizeof st);
}

/* The tuple without the secret, as date8 region NUL service NUL into
 * rest[REST_MAX] (a string holds no NUL, so no two tuples look alike);
 * its length, or 0 when it does not fit (such a key is not cached). */
static size_t cache_rest(const char *date8, const char *region, const char *service,
                         char rest[REST_MAX]) {
    size_t d = strlen(date8), r = strlen(region) + 1, s = strlen(service) + 1;
    if (d + r + s > REST_MAX) return 0;
    memcpy(rest, date8, d);
    memcpy(rest + d, region, r);
    memcpy(rest + d + r, service, s);
    return d + r + s;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service),
 * "aws4_request"); the first key is hashed in pieces when it is long, so
 * no secret length allocates. */
static void derive_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32]) {
    unsigned char a[32], b[32], k0[68];
    size_t sn = strlen(secret);
    if (sn + 4 <= sizeof k0) {
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, secret, sn);
        hmac(k0, sn + 4, date8, a);
    } else {
        SHA256_CTX c;
        SHA256_Init(&c);
        SHA256_Update(&c, "AWS4", 4);
        SHA256_Update(&c, secret, sn);
        SHA256_Final(k0, &c);
        OPENSSL_cleanse(&c, sizeof c);
        hmac(k0, 32, date8, a);
    }
    hmac(a, 32, region, b);
    hmac(b, 32, service, a);
    hmac(a, 32, "aws4_request", key);
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
}

/* The tuple's entry: the index, or -1.  Under cache_mu. */
static int find(const unsigned char id[32], const char *rest, size_t rest_len) {
    int i;
    for (i = 0; i < LB_SIGV4_CACHE_SIZE && rest_len; i++) {
        const cache_entry *e = &cache[i];
        if (e->used && e->rest_len == rest_len && !memcmp(e->rest, rest, rest_len) &&
            !memcmp(e->id, id, 32))
            return i;
    }
    return -1;
}

/* The cache entry for the tuple, filled on a miss; copies out what the
 * caller wants (key and/or state). */
static int lookup(const char *secret, const char *date8, const char *region,
                  const char *service, unsigned char key[32], lb_sigv4_hmac *st) {
    unsigned char id[32], k[32];
    char rest[REST_MAX];
    size_t rest_len;
    lb_sigv4_hmac s;
    int i, slot = 0;
    if (!secret || !date8 || !region || !service) return LB_EINVAL;
    rest_len = cache_rest(date8, region, service, rest);
    lb_sv_sha256(secret, strlen(secret), id);
    pthread_mutex_lock(&cache_mu);
    if ((i = find(id, rest, rest_len)) >= 0) {
        if (key) memcpy(key, cache[i].key, 32);
        if (st) *st = cache[i].st;
        cache[i].used = ++cache_tick;
        cache_hits++;
        pthread_mutex_unlock(&cache_mu);
        return LB_OK;
    }
    cache_misses++;
    pthread_mutex_unlock(&cache_mu);
    derive_key(secret, date8, region, service, k);
    hmac_init(&s, k, 32);
    if (rest_len) {
        pthread_mutex_lock(&cache_mu);
        if ((slot = find(id, rest, rest_len)) < 0) {  /* empty slot, else least recently used */
            for (i = slot = 0; i < LB_SIGV4_CACHE_SIZE; i++) {
                if (cache[i].used == 0) { slot = i; break; }
                if (cache[i].used < cache[slot].used) slot = i;
            }
        }
        memcpy(cache[slot].id, id, 32);
        memcpy(cache[slot].rest, rest, rest_len);
        cache[slot].rest_len = rest_len;
        memcpy(cache[slot].key, k, 32);
        cache[slot].st = s;
        cache[slot].used = ++cache_tick;
        cache[slot].has_after = 0;
        pthread_mutex_unlock(&cache_mu);
    }
    if (key) memcpy(key, k, 32);
    if (st) *st = s;
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(&s, sizeof s);
    return LB_OK;
}

int lb_sigv4_hmac_sts(const char *secret, const char *date8, const char *region,
                      const char *service, const char *m, size_t n, unsigned char out[32]) {
    unsigned char id[32];
    char rest[REST_MAX];
    size_t rest_len;
    lb_sigv4_hmac st;
    SHA256_CTX c;
    int i, rc, memo = 0;
    if (!secret || !date8 || !region || !service) return LB_EINVAL;
    rest_len = n >= 64 ? cache_rest(date8, region, service, rest) : 0;
    if (rest_len) {  /* the state after m's first block, when that block was the last one's */
        lb_sv_sha256(secret, strlen(secret), id);
        pthread_mutex_lock(&cache_mu);
        if ((i = find(id, rest, rest_len)) >= 0 && cache[i].has_after &&
            !memcmp(cache[i].first, m, 64)) {
            c = cache[i].after;
            st.outer = cache[i].st.outer;
            cache[i].used = ++cache_tick;
            cache_hits++;
            memo = 1;
        }
        pthread_mutex_unlock(&cache_mu);
    }
    if (!memo) {
        if ((rc = lookup(secret, date8, region, service, NULL, &st)) != LB_OK) return rc;
        c = st.inner;
        if (rest_len) {  /* keep the state after the first block for the next one */
            SHA256_Update(&c, m, 64);
            pthread_mutex_lock(&cache_mu);
            if ((i = find(id, rest, rest_len)) >= 0) {
                memcpy(cache[i].first, m, 64);
                cache[i].after = c;
                cache[i].has_after = 1;
            }
            pthread_mutex_unlock(&cache_mu);
        }
    }
    if (rest_len) SHA256_Update(&c, m + 64, n - 64);
    else SHA256_Update(&c, m, n);
    hmac_end(&c, &st.outer, out);
    OPENSSL_cleanse(&st, sizeof st);
    return LB_OK;
}

int lb_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                         const char *service, unsigned char key[32]) {
    return lookup(secret, date8, region, service, key, NULL);
}

int lb_sigv4_hmac_state(const char *secret, const char *date8, const char *region,
                        const char *service, lb_sigv4_hmac *st) {
    return lookup(secret, date8, region, service, NULL, st);
}

void lb_sigv4_cache_stats(unsigned long *hits, unsigned long *misses) {
    pthread_mutex_lock(&cache_mu);
    if (hits) *hits = cache_hits;
    if (misses) *misses = cache_misses;
    pthread_mutex_unlock(&cache_mu);
}

void lb_sigv4_cache_clear(void) {
    pthread_mutex_lock(&cache_mu);
    OPENSSL_cleanse(cache, sizeof cache);
    cache_tick = cache_hits = cache_misses = 0;
    pthread_mutex_unlock(&cache_mu);
}
