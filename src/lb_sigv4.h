/* lb_sigv4.h -- AWS Signature Version 4 (AWS4-HMAC-SHA256) signer.
 *
 * Signs one HTTP request either with an Authorization header ("header"
 * mode) or as a presigned URL ("query" mode), and hands back every
 * intermediate product (canonical request, string to sign, signature) so
 * callers and tests can compare each stage.
 *
 * Canonicalisation rules:
 *   - path, S3 (req.s3 = 1): used verbatim as it appears on the wire (no
 *     normalisation, no second encoding); an empty path becomes "/".
 *   - path, other services: `.`/`..` segments removed and `//` collapsed
 *     (when req.normalize_path), then every byte outside the SigV4
 *     unreserved set (A-Z a-z 0-9 - _ . ~) and '/' is percent-encoded again,
 *     so an already encoded "%20" signs as "%2520" (botocore / aws-c-auth).
 *   - query: split on '&' and the first '='; each key and value is
 *     percent-decoded and re-encoded with the unreserved set, then the pairs
 *     are sorted by key, then value (bytewise).  Empty pieces are skipped.
 *   - headers: names lowercased; values trimmed, runs of whitespace
 *     (space, tab, folded CR/LF) collapsed to one space; repeated names
 *     joined with ',' in their original order (stable sort).  user-agent,
 *     expect, x-amzn-trace-id, connection, transfer-encoding, upgrade and
 *     sec-websocket-* are never signed.
 *
 * Signing keys are derived once per (secret, date, region, service) and kept
 * in a small process-wide cache (mutex protected, LRU, LB_SIGV4_CACHE_SIZE
 * entries).  Cache entries are looked up by the SHA-256 of the secret and
 * the rest of the tuple, so the secret is never stored in clear; a tuple
 * whose date, region and service take over 62 bytes is not cached.
 */
#ifndef LB_SIGV4_H
#define LB_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#define LB_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define LB_SIGV4_CACHE_SIZE 32       /* signing keys kept per process */
#define LB_SIGV4_MAX_EXPIRES 604800  /* 7 days: the longest a presigned URL may live */

/* One header (name, value).  In a request the strings belong to the caller;
 * in a result they belong to the result. */
typedef struct lb_sigv4_header {
    const char *name;
    const char *value;
} lb_sigv4_header;

/* What to sign.  Initialise with lb_sigv4_request_init, then fill in.
 * All strings are borrowed for the duration of the call only. */
typedef struct lb_sigv4_request {
    const char *method;              /* "GET", "PUT", ... (required) */
    const char *url;                 /* scheme://host[:port]/path?query, path and
                                        query already percent-encoded (required) */
    const lb_sigv4_header *headers;  /* input headers, order kept */
    size_t nheaders;
    /* Payload: the first of these that is set is used. */
    const char *payload_hash;        /* hex SHA-256, UNSIGNED-PAYLOAD, STREAMING-... */
    const char *body_file;           /* hash bytes [body_offset, +body_length) of this file */
    uint64_t body_offset;
    int64_t body_length;             /* -1: up to end of file */
    const void *body;                /* in-memory body (may be NULL when body_len 0) */
    size_t body_len;
    const char *region;              /* "us-east-1" (required) */
    const char *service;             /* "s3", "batch" (required) */
    const char *access_key;          /* required */
    const char *secret_key;          /* required; never copied, logged or cached in clear */
    const char *session_token;       /* NULL: none */
    const char *amz_date;            /* "20150830T123600Z"; NULL: use `time` */
    int64_t time;                    /* epoch seconds when amz_date is NULL; <0: now */
    int query_mode;                  /* 0: Authorization header; 1: presigned URL */
    long expires;                    /* query mode: X-Amz-Expires, 1..LB_SIGV4_MAX_EXPIRES */
    int s3;                          /* S3 rules: verbatim path; query mode defaults
                                        to UNSIGNED-PAYLOAD when no payload_hash */
    int normalize_path;              /* non-S3 only: remove dot segments, collapse // */
    int content_sha256_header;       /* header mode: add (and sign) X-Amz-Content-Sha256 */
    int omit_session_token;          /* token added after signing, not signed */
} lb_sigv4_request;

/* Everything produced by a signature.  All strings are NUL-terminated and
 * owned by the result (they share one allocation: never free a field on its
 * own); release with lb_sigv4_result_free. */
typedef struct lb_sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char *signature;                 /* 64 lowercase hex digits */
    char *authorization;             /* header mode: the Authorization value; else NULL */
    char *signed_headers;            /* "host;x-amz-date" */
    char *credential_scope;          /* "20150830/us-east-1/service/aws4_request" */
    char *payload_hash;              /* what the canonical request carries */
    char *amz_date;                  /* "20150830T123600Z" */
    char *url;                       /* final URL (query mode: with X-Amz-* params) */
    lb_sigv4_header *headers;        /* headers to send: input (minus replaced ones)
                                        + Host if absent + X-Amz-Date,
                                        X-Amz-Security-Token, X-Amz-Content-Sha256,
                                        Authorization as applicable; the values of
                                        X-Amz-Date, X-Amz-Content-Sha256 and
                                        Authorization are the very strings amz_date,
                                        payload_hash and authorization point to */
    size_t nheaders;
    void *mem_;                      /* the one block every field above lives in */
} lb_sigv4_result;

/* Fill *req with defaults: everything NULL/0 except body_length = -1,
 * time = -1 (now), expires = 3600, normalize_path = 1. */
void lb_sigv4_request_init(lb_sigv4_request *req);

/* Sign *req.  On success returns LB_OK and fills *res (which the caller
 * frees with lb_sigv4_result_free).  On failure *res is left zeroed (nothing
 * to free) and `err` (LB_ERR_LEN bytes, may be NULL) names the problem,
 * never a secret.  Returns LB_EINVAL (missing field, malformed URL, date,
 * header or expires), LB_EIO (body_file unreadable or shorter than the
 * range), LB_ENOMEM. */
int lb_sigv4_sign(const lb_sigv4_request *req, lb_sigv4_result *res, char *err);

/* The size of block lb_sigv4_sign_into needs for *req (an upper bound);
 * 0 when a required string is missing. */
size_t lb_sigv4_sign_bound(const lb_sigv4_request *req);

/* lb_sigv4_sign writing every result string into the caller's buf[0..cap)
 * (cap >= lb_sigv4_sign_bound(req)) instead of a block of its own, so it
 * allocates nothing: the result lives as long as buf and needs no free
 * (lb_sigv4_result_free is still fine).  A missing or smaller buf falls back
 * to lb_sigv4_sign. */
int lb_sigv4_sign_into(const lb_sigv4_request *req, lb_sigv4_result *res, void *buf, size_t cap,
                       char *err);

/* Free what lb_sigv4_sign put in *res and zero it.  NULL and a zeroed
 * result are fine; calling it twice is fine. */
void lb_sigv4_result_free(lb_sigv4_result *res);

/* The 32-byte SigV4 signing key for (secret, date "YYYYMMDD", region,
 * service), from the cache or derived and cached.  Thread safe.
 * Returns LB_OK, LB_EINVAL (NULL argument), LB_ENOMEM (OpenSSL failure). */
int lb_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                         const char *service, unsigned char key[32]);

/* Cache statistics since start (or the last clear); either pointer may be NULL. */
void lb_sigv4_cache_stats(unsigned long *hits, unsigned long *misses);

/* Drop every cached signing key (wiping them) and reset the statistics. */
void lb_sigv4_cache_clear(void);

/* Incremental SHA-256 (for payload hashes of files and streams). */
typedef struct lb_sigv4_hash lb_sigv4_hash;

/* Allocate and start a hash into *h.  Returns LB_OK or LB_ENOMEM. */
int lb_sigv4_hash_new(lb_sigv4_hash **h);
/* Add n bytes.  Returns LB_OK or LB_ENOMEM (OpenSSL failure). */
int lb_sigv4_hash_update(lb_sigv4_hash *h, const void *p, size_t n);
/* Finish into hex (65 bytes incl. NUL); the hash must then be freed (or it
 * can be reused: it restarts empty).  Returns LB_OK or LB_ENOMEM. */
int lb_sigv4_hash_final(lb_sigv4_hash *h, char hex[65]);
/* Free a hash; NULL is a no-op. */
void lb_sigv4_hash_free(lb_sigv4_hash *h);

/* Hex SHA-256 of n bytes in memory.  Returns LB_OK or LB_ENOMEM. */
int lb_sigv4_sha256_hex(const void *p, size_t n, char hex[65]);

/* Lowercase hex of n bytes into out (2n chars and a NUL). */
void lb_sigv4_hex(const unsigned char *p, size_t n, char *out);

/* Hex SHA-256 of bytes [offset, offset+length) of the file at path,
 * read in chunks (length -1: to end of file).  Returns LB_OK, LB_EINVAL
 * (NULL path), LB_EIO (open/read failure, or the file ends before the
 * range does; the message names the path) or LB_ENOMEM. */
int lb_sigv4_sha256_file(const char *path, uint64_t offset, int64_t length,
                         char hex[65], char *err);

#endif
