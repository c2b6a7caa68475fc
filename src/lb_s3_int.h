/* lb_s3_int.h -- internals shared by lb_s3.c (request engine, upload),
 * lb_s3_get.c (download) and lb_s3_batch.c.  Not part of the core's API. */
#ifndef LB_S3_INT_H
#define LB_S3_INT_H

#include "lb_sigv4_int.h"            /* first: SHA256_*, lb_sigv4_hmac (chunk signatures) */

#include <openssl/evp.h>

#include "lb_crc32c.h"
#include "lb_http.h"
#include "lb_s3.h"
#include "lb_sigv4.h"

#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_SEND_BUFFER (512L * 1024)    /* bytes per body read (file parts) */
#define S3_RECV_BUFFER (512L * 1024)    /* bytes per receive (ranged GETs) */
#define S3_MAX_CONCURRENCY 64           /* cap on o->concurrency */
#define S3_CHUNK (256L * 1024)          /* data bytes per aws-chunked chunk */
#define S3_STREAMING "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

enum { P_NEW, P_WAIT, P_RUN, P_DONE };

/* One part (upload) or range (download), or the one request of a phase. */
typedef struct s3_part {
    int64_t off, len;
    double not_before;              /* P_WAIT: retry after this (monotonic s) */
    int attempts;
    int state;                      /* P_* */
    unsigned char digest[32];       /* SHA-256 (or MD5 in the first 16) */
    uint32_t crc;                   /* CRC-32C of the part (the lb-crc32c tag) */
    char *etag;                     /* upload: UploadPart's ETag */
    char *buf;                      /* stream upload: the part's bytes */
} s3_part;

/* An aws-chunked body being sent (lb_s3_chunked.c). */
typedef struct s3_chunked {
    int fd;
    int64_t pos, left;              /* file range not read yet */
    size_t chunk;                   /* data bytes per chunk */
    lb_sigv4_hmac key;              /* the signing key's HMAC state */
    char head[160];                 /* "AWS4-HMAC-SHA256-PAYLOAD\n<date>\n<scope>\n" */
    size_t head_len;
    char prev[65];                  /* the previous signature */
    char *buf;                      /* a framed chunk when the caller's buffer is short
                                     * (owned, made on first need, kept across requests) */
    size_t cap, at, len;            /* buf's size; bytes handed out; bytes held */
    int ended;                      /* the zero-length chunk is framed */
    int err_no;                     /* errno of a failed read */
    uint32_t crc;                   /* CRC-32C of the data so far */
} s3_chunked;

/* Bytes on the wire for one chunk of n data bytes (n = 0: the last). */
int64_t s3_chunked_framed(size_t n);
/* Bytes on the wire for n data bytes in chunks of `chunk` (0: plain, n). */
int64_t s3_chunked_length(int64_t n, size_t chunk);
/* Start a body of file bytes [off, off + len) signed after sig (the
 * request's signature), or plain when chunk is 0.  LB_OK or LB_EINVAL. */
int s3_chunked_start(s3_chunked *c, const lb_s3_opts *o, const char *region, const lb_sigv4_result *sig,
                     int fd, int64_t off, int64_t len, size_t chunk);
/* The next bytes of the body (an lb_http reader): count, 0 at the end, or
 * -LB_EIO (c->err_no: errno, 0 = the file shrank). */
long s3_chunked_read(s3_chunked *c, char *out, size_t cap);
/* After the end: the CRC-32C of the data. */
uint32_t s3_chunked_crc(const s3_chunked *c);
void s3_chunked_free(s3_chunked *c);

struct s3x;

/* One request in flight: everything it borrows lives here. */
typedef struct s3_slot {
    lb_http_request req;
    lb_http_result res;
    lb_sigv4_result sig;
    lb_http_kv *kv;
    char *url;
    struct s3x *x;
    size_t part;                    /* index into x->parts */
    int busy;
    int64_t now;                    /* bytes moved by this attempt */
    int why;                        /* the sink's own failure (LB_EIO, ...) */
    char why_msg[LB_ERR_LEN];
    EVP_MD_CTX *md;                 /* download: digest of this range */
    s3_chunked ck;                  /* upload: the aws-chunked body */
    uint32_t crc;                   /* download: CRC-32C of this range so far */
} s3_slot;

/* Hooks of a phase (one kind of request). */
typedef struct s3_phase {
    const char *op;                 /* "UploadPart" */
    /* Fill s->req for p (sign it); LB_OK or a code (message in x->err). */
    int (*build)(struct s3x *x, s3_slot *s, s3_part *p);
    /* A 2xx answer arrived: take what is needed; LB_OK, or a code with
     * *retry / msg set. */
    int (*ok)(struct s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg);
    /* Streams: add a part (LB_OK), LB_HTTP_PUMP_WAIT, _END or a code. */
    int (*more)(struct s3x *x);
    int progress;                   /* count bytes for the progress callback */
    int ok404;                      /* a 404 is success (AbortMultipartUpload) */
} s3_phase;

/* One transfer. */
typedef struct s3x {
    const lb_s3_opts *o;
    lb_s3_result *res;
    char *err;
    int rc;                         /* first failure */
    lb_http_client *http;
    char *url;                      /* object URL, no query */
    char *target;                   /* "s3://bucket/key" */
    const char *region;
    int concurrency, max_attempts;  /* concurrency: slots (the most in flight) */
    int adaptive;                   /* opts gave no concurrency: adapt follows the rate */
    lb_s3_adapt adapt;
    char **meta_hdr;                /* "x-amz-meta-<name>" per opts metadata */
    /* the running phase */
    const s3_phase *ph;
    s3_part *parts;
    size_t nparts, next_new, ndone, nwait;
    s3_slot *slots;
    int nslots;
    /* progress */
    int64_t total, done_bytes, reported;
    double last_prog;
    /* the answer of a one-request phase (HEAD, Create, Complete) */
    lb_http_response keep;
    /* upload */
    char lbsum[32];                 /* the lb-crc32c tag's value, "" if none */
    char tag_md5[32];               /* PutObjectTagging: base64 Content-MD5 */
    int64_t part_size;
    const char *upload_id_enc;      /* percent-encoded, in idenc */
    char idenc[768];
    char *body;                     /* MEM body: Complete XML, stream part */
    size_t body_len;
    char body_hash[65];
    unsigned rnd;                   /* jitter state */
    /* stream upload */
    char **pool;                    /* free part buffers */
    int npool, nbufs;               /* free ones; allocated in all */
    int stream_end;
    size_t cap_parts;
    /* download */
    int fd;
    const char *if_match;
    const EVP_MD *md_type;          /* per-range digest, or NULL */
    int crc_ranges;                 /* 1: each range's CRC-32C (lb-crc32c) */
    int ranged;
} s3x;

/* HeadObject (lb_s3_get.c): the answer lands in x->keep. */
extern const s3_phase s3_ph_head;

double s3_mono(void);
/* Set up x (URL, target, client, metadata names) for opts; LB_OK or code. */
int s3x_init(s3x *x, const lb_s3_opts *o, lb_s3_result *res, char *err);
void s3x_free(s3x *x);
/* A side request (Abort, a HEAD after a lost answer, tagging) leaves the
 * transfer's outcome -- first failure, message, S3 code -- as it was:
 * saved (and cleared) by s3_outcome_save, put back by s3_outcome_restore. */
typedef struct s3_outcome {
    int rc;
    char err[LB_ERR_LEN], code[LB_S3_CODE_LEN];
} s3_outcome;
void s3_outcome_save(s3x *x, s3_outcome *o);
void s3_outcome_restore(s3x *x, const s3_outcome *o);
/* Requests in flight for o: o->concurrency or the default, at most
 * S3_MAX_CONCURRENCY. */
int s3_concurrency(const lb_s3_opts *o);
/* The HTTP client of a transfer (or of a batch worker running several):
 * s3_concurrency(o) in flight, two spare connections.  LB_OK, or the code
 * of lb_http_client_open with *out NULL and err set. */
int s3_http_client(const lb_s3_opts *o, lb_http_client **out, char *err);
/* Run one phase over parts[0..n) with nslots requests at most in flight. */
/* 1 if an S3 error code is worth retrying (SlowDown, InternalError, ...). */
int s3_retryable_code(const char *code);
int s3_run(s3x *x, const s3_phase *ph, s3_part *parts, size_t n, int nslots);
/* Sign and fill s->req: method, query (NULL or "a=b&c"), extra headers,
 * payload hash. */
int s3_sign(s3x *x, s3_slot *s, const char *method, const char *query,
            const lb_sigv4_header *h, size_t nh, const char *payload);
/* "<op> s3://b/k[ (part n)]: <fmt>" into x->err, once; returns code. */
int s3_fail(s3x *x, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
int s3_progress_cb(void *ud, int64_t dn, int64_t dt, int64_t un, int64_t ut);
void s3_hex(const unsigned char *p, size_t n, char *out);
/* Percent-encode s (everything but A-Z a-z 0-9 - _ . ~) into out, no
 * allocation; stops before overflowing cap. */
void s3_encode_into(const char *s, char *out, size_t cap);
/* ceil(a / b) for a >= 0, b > 0, without the overflow of a + b - 1. */
int64_t s3_ceil_div(int64_t a, int64_t b);
/* A size as a server sends it: decimal digits and nothing else (no sign,
 * no space) -> its value, INT64_MAX when larger; anything else -> -1. */
int64_t s3_parse_size(const char *s);
/* Bounded copy of src (NULL = "") into dst. */
void s3_copy_text(char *dst, size_t cap, const char *src);

#endif
