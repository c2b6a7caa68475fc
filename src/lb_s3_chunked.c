/* lb_s3_chunked.c -- an aws-chunked request body (SigV4 streaming,
 * x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD) from a file
 * range, each byte read once; or, with chunk 0, the range as it is
 * (UNSIGNED-PAYLOAD), its CRC-32C taken the same way.
 *
 * A chunk of data is read, hashed, signed after the previous chunk's
 * signature (the request's own for the first) and framed as
 *   <hex size>;chunk-signature=<64 hex>\r\n<data>\r\n
 * and the body ends with the zero-length chunk.  The server checks each
 * chunk against its signature, so what it stores is what was read; the
 * data's CRC-32C (for the lb-crc32c tag) comes out of the same pass,
 * while the chunk is in the cache. */
#include "lb_s3_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lb_alloc.h"

#define SIG_TAG ";chunk-signature="
#define HEAD_ROOM 100               /* the longest header: 16 hex digits + tag + 64 + CRLF */

static size_t hex_len(size_t n) {
    size_t k = 1;
    while (n >>= 4) k++;
    return k;
}

int64_t s3_chunked_framed(size_t n) {
    return (int64_t)(hex_len(n) + sizeof SIG_TAG - 1 + 64 + 2 + n + 2);
}

int64_t s3_chunked_length(int64_t n, size_t chunk) {
    int64_t full, rest;
    if (!chunk) return n;           /* plain */
    full = n / (int64_t)chunk;
    rest = n % (int64_t)chunk;
    return full * s3_chunked_framed(chunk) + (rest ? s3_chunked_framed((size_t)rest) : 0) + s3_chunked_framed(0);
}

int s3_chunked_start(s3_chunked *c, const lb_s3_opts *o, const char *region, const lb_sigv4_result *sig,
                     int fd, int64_t off, int64_t len, size_t chunk) {
    char date8[9];
    int n;
    if (chunk) {                    /* what the chunk signatures need; a plain body signs nothing */
        snprintf(date8, sizeof date8, "%.8s", sig->amz_date);
        if (lb_sigv4_hmac_state(o->secret_key, date8, region, "s3", &c->key) != LB_OK) return LB_EINVAL;
        n = snprintf(c->head, sizeof c->head, "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n", sig->amz_date,
                     sig->credential_scope);
        if (n < 0 || (size_t)n >= sizeof c->head) return LB_EINVAL;
        c->head_len = (size_t)n;
        snprintf(c->prev, sizeof c->prev, "%s", sig->signature);
    }
    c->fd = fd;
    c->pos = off;
    c->left = len;
    c->chunk = chunk;
    c->at = c->len = 0;
    c->ended = 0;
    c->err_no = 0;
    c->crc = 0;
    return LB_OK;
}

/* Read, hash, sign and frame the next chunk (want data bytes) at dst,
 * which has room for s3_chunked_framed(want): the data is read straight
 * to its place after the header, whose length is known before the
 * signature is. */
static int frame_chunk(s3_chunked *c, char *dst, size_t want) {
    size_t hl = (size_t)s3_chunked_framed(want) - want - 2, got = 0;
    char *data = dst + hl, sts[384], hex[65];
    unsigned char md[32];
    while (got < want) {
        ssize_t r = pread(c->fd, data + got, want - got, (off_t)(c->pos + (int64_t)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            c->err_no = r < 0 ? errno : 0;
            return LB_EIO;
        }
        got += (size_t)r;
    }
    lb_sv_sha256(data, want, md);
    c->crc = lb_crc32c(c->crc, data, want);
    s3_hex(md, 32, hex);
    if (c->head_len + 194 > sizeof sts) return LB_EINVAL;
    memcpy(sts, c->head, c->head_len);
    memcpy(sts + c->head_len, c->prev, 64);
    memcpy(sts + c->head_len + 64, "\n" S3_EMPTY_SHA256 "\n", 66);
    memcpy(sts + c->head_len + 130, hex, 64);
    lb_sigv4_hmac_run(&c->key, sts, c->head_len + 194, md);
    s3_hex(md, 32, c->prev);
    snprintf(hex, sizeof hex, "%zx", want);
    memcpy(dst, hex, hl - (sizeof SIG_TAG - 1) - 64 - 2);
    memcpy(dst + hl - (sizeof SIG_TAG - 1) - 64 - 2, SIG_TAG, sizeof SIG_TAG - 1);
    memcpy(dst + hl - 66, c->prev, 64);
    memcpy(dst + hl - 2, "\r\n", 2);
    memcpy(data + want, "\r\n", 2);
    c->pos += (int64_t)want;
    c->left -= (int64_t)want;
    if (!want) c->ended = 1;
    return LB_OK;
}

/* A plain body: the file bytes as they are, their CRC-32C taken. */
static long plain_read(s3_chunked *c, char *out, size_t cap) {
    size_t want = c->left < (int64_t)cap ? (size_t)c->left : cap;
    ssize_t r;
    if (!want) return 0;
    do r = pread(c->fd, out, want, (off_t)c->pos); while (r < 0 && errno == EINTR);
    if (r <= 0) {
        c->err_no = r < 0 ? errno : 0;
        return -LB_EIO;
    }
    c->crc = lb_crc32c(c->crc, out, (size_t)r);
    c->pos += r;
    if ((c->left -= r) == 0) c->ended = 1;
    return (long)r;
}

long s3_chunked_read(s3_chunked *c, char *out, size_t cap) {
    size_t n = 0, k, want;
    if (!c->chunk) return plain_read(c, out, cap);
    while (n < cap) {
        if (c->at == c->len) {
            if (c->ended) break;
            want = c->left < (int64_t)c->chunk ? (size_t)c->left : c->chunk;
            k = (size_t)s3_chunked_framed(want);
            if (cap - n >= k) {     /* straight into the caller's buffer */
                if (frame_chunk(c, out + n, want) != LB_OK) return -LB_EIO;
                n += k;
                continue;
            }
            if (!c->buf || c->cap < k) {    /* a short buffer: frame aside (kept) */
                lb_free(c->buf);
                c->cap = 0;
                if (!(c->buf = lb_malloc(c->chunk + HEAD_ROOM + 2))) {
                    c->err_no = ENOMEM;
                    return -LB_EIO;
                }
                c->cap = c->chunk + HEAD_ROOM + 2;
            }
            if (frame_chunk(c, c->buf, want) != LB_OK) return -LB_EIO;
            c->at = 0;
            c->len = k;
        }
        k = c->len - c->at < cap - n ? c->len - c->at : cap - n;
        memcpy(out + n, c->buf + c->at, k);
        n += k;
        c->at += k;
    }
    return (long)n;
}

uint32_t s3_chunked_crc(const s3_chunked *c) {
    return c->crc;
}

void s3_chunked_free(s3_chunked *c) {
    lb_free(c->buf);
    memset(c, 0, sizeof *c);
}
