/* fuzz_s3part.c -- libFuzzer target: the S3 part arithmetic and the pure
 * pieces of lb_s3_util.c.  Input: 8 bytes size, 8 bytes requested part
 * size (little endian, any int64), then text split at '\n' into
 * lb-sha256 metadata / lb-part-size metadata / key / error body.
 * Contract (lb_s3.h): for any int64 pair the part size is within
 * [LB_S3_MIN_PART, LB_S3_MAX_PART] and a clamped size needs at most
 * LB_S3_MAX_PARTS parts; a stored part size is 0 or obeys the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_err.h"
#include "lb_s3_int.h"

static int64_t i64(const uint8_t *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = v << 8 | p[i];
    return (int64_t)v;
}

static char *field(const uint8_t **p, const uint8_t *end) {   /* next '\n'-ended piece */
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = (size_t)((nl ? nl : end) - *p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n + (nl != NULL);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data + 16, *end = data + size;
    int64_t sz, req, ps, clamped, stored;
    char *sha, *lbps, *key, *body, *enc, code[64], msg[128];
    if (size < 16) return 0;
    sz = i64(data), req = i64(data + 8);
    ps = lb_s3_part_size(sz, req);
    clamped = sz < 0 ? 0 : sz > LB_S3_MAX_OBJECT ? LB_S3_MAX_OBJECT : sz;
    if (ps < LB_S3_MIN_PART || ps > LB_S3_MAX_PART) abort();
    if (s3_ceil_div(clamped, ps) > LB_S3_MAX_PARTS) abort();
    if (req >= LB_S3_MIN_PART && req <= LB_S3_MAX_PART && s3_ceil_div(clamped, req) <= LB_S3_MAX_PARTS
        && ps != req) abort();                               /* a usable request is kept */
    sha = field(&p, end), lbps = field(&p, end), key = field(&p, end), body = field(&p, end);
    stored = lb_s3_stored_part_size(sz, sha, lbps);
    if (stored && (stored < LB_S3_MIN_PART || stored > LB_S3_MAX_PART
                   || s3_ceil_div(clamped, stored) > LB_S3_MAX_PARTS)) abort();
    if (s3_parse_size(lbps) < -1) abort();
    if ((enc = lb_s3_encode_key(key)) && strlen(enc) > 3 * strlen(key)) abort();
    lb_free(enc);
    lb_free(lb_s3_object_url("http://127.0.0.1:1/", sha, key, data[0] & 1));
    lb_s3_parse_error(body, strlen(body), code, sizeof code, msg, sizeof msg);
    free(sha), free(lbps), free(key), free(body);
    return 0;
}
