/* lb_sigv4_key.c -- the SHA-256 hashing and the signing-key cache of the
 * SigV4 signer (see lb_sigv4.h): payload hashes (memory, incremental, file
 * ranges) and the derived keys, one HMAC chain per (secret, date, region,
 * service), kept in a small LRU cache shared by every thread. */
#include "lb_sigv4.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lb_alloc.h"
#include "lb_err.h"

#define FILE_CHUNK (256 * 1024)  /* read size for file hashing */

static const char HEX_LOWER[] = "0123456789abcdef";

void lb_sigv4_hex(const unsigned char *p, size_t n, char *out) {
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = HEX_LOWER[p[i] >> 4];
        out[2 * i + 1] = HEX_LOWER[p[i] & 15];
    }
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
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(n ? p : "", n, md, &len, EVP_sha256(), NULL)) return LB_ENOMEM;
    lb_sigv4_hex(md, len, hex);
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

typedef struct cache_entry {
    unsigned char id[32];   /* SHA-256 of (secret, date, region, service) */
    unsigned char key[32];  /* the derived signing key */
    unsigned long used;     /* LRU stamp; 0 = empty slot */
} cache_entry;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_entry cache[LB_SIGV4_CACHE_SIZE];
static unsigned long cache_tick, cache_hits, cache_misses;

static int hmac(const void *k, size_t kn, const char *m, unsigned char out[32]) {
    unsigned int len = 0;
    return HMAC(EVP_sha256(), k, (int)kn, (const unsigned char *)m, strlen(m), out, &len) &&
           len == 32;
}

/* Hash of the cache tuple: each part length-prefixed so that no two
 * different tuples give the same byte string. */
static int cache_id(const char *secret, const char *date8, const char *region,
                    const char *service, unsigned char id[32]) {
    const char *parts[4] = {secret, date8, region, service};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int i, ok;
    if (!ctx) return 0;
    ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (i = 0; ok && i < 4; i++) {
        uint64_t n = strlen(parts[i]);
        ok = EVP_DigestUpdate(ctx, &n, sizeof n) && EVP_DigestUpdate(ctx, parts[i], n);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, id, &len);
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int derive_key(const char *secret, const char *date8, const char *region,
                      const char *service, unsigned char key[32]) {
    unsigned char a[32], b[32], small[256];
    size_t sn = strlen(secret), kn = sn + 4;
    unsigned char *k = kn <= sizeof small ? small : lb_malloc(kn);
    int ok;
    if (!k) return LB_ENOMEM;
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, sn);
    ok = hmac(k, kn, date8, a) && hmac(a, 32, region, b) && hmac(b, 32, service, a) &&
         hmac(a, 32, "aws4_request", key);
    OPENSSL_cleanse(k, kn);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    if (k != small) lb_free(k);
    return ok ? LB_OK : LB_ENOMEM;
}

int lb_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                         const char *service, unsigned char key[32]) {
    unsigned char id[32];
    int i, slot = 0, rc;
    if (!secret || !date8 || !region || !service) return LB_EINVAL;
    if (!cache_id(secret, date8, region, service, id)) return LB_ENOMEM;
    pthread_mutex_lock(&cache_mu);
    for (i = 0; i < LB_SIGV4_CACHE_SIZE; i++) {
        if (cache[i].used && memcmp(cache[i].id, id, 32) == 0) {
            memcpy(key, cache[i].key, 32);
            cache[i].used = ++cache_tick;
            cache_hits++;
            pthread_mutex_unlock(&cache_mu);
            return LB_OK;
        }
    }
    cache_misses++;
    pthread_mutex_unlock(&cache_mu);
    if ((rc = derive_key(secret, date8, region, service, key)) != LB_OK) return rc;
    pthread_mutex_lock(&cache_mu);
    for (i = 0; i < LB_SIGV4_CACHE_SIZE; i++) {  /* empty slot, else least recently used */
        if (cache[i].used == 0 || memcmp(cache[i].id, id, 32) == 0) { slot = i; break; }
        if (cache[i].used < cache[slot].used) slot = i;
    }
    memcpy(cache[slot].id, id, 32);
    memcpy(cache[slot].key, key, 32);
    cache[slot].used = ++cache_tick;
    pthread_mutex_unlock(&cache_mu);
    return LB_OK;
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
