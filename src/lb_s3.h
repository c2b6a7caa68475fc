/* lb_s3.h -- S3 object transfers (upload, download) of the C core (no Lua).
 *
 * Built on lb_http (one client per transfer: pooled, kept-alive
 * connections, several requests in flight) and lb_sigv4 (every request is
 * signed here, just before it starts).  Memory does not grow with the
 * object: file parts are sent as file ranges, ranges are received with
 * pwrite; only stream uploads hold part buffers (concurrency x part_size).
 *
 * Upload (lb_s3_upload) reads each byte of a file once: a request's body
 * is aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, chunks of 256 KiB),
 * each chunk hashed and signed as it is sent and checked by the server.
 *   - file up to multipart_threshold (default 16 MiB): one PutObject; its
 *     ETag, the MD5 of the body, is what downloads check;
 *   - larger file: CreateMultipartUpload with x-amz-meta-lb-part-size,
 *     UploadPart requests, CompleteMultipartUpload, then PutObjectTagging
 *     lb-crc32c = "<8 hex: CRC-32C of the parts' big-endian CRC-32Cs>-<n>"
 *     (lb_s3_crc_composite; the CRCs taken as the chunks are read).  A
 *     refused tag is res->note, not a failure.
 *     Any failure after the create sends AbortMultipartUpload (retried),
 *     so no parts are left behind;
 *   - unsigned_payload: file bodies as they are, signed UNSIGNED-PAYLOAD:
 *     no SHA-256 and nothing for the server to check (TLS guards the way),
 *     still read once and tagged lb-crc32c;
 *   - stream (reader): part buffers filled from the reader, each hashed
 *     (SHA-256 for the signature, CRC-32C for the tag) as filled; a stream
 *     that ends within its first part is one PutObject.
 * Download (lb_s3_download): HeadObject (and GetObjectTagging when the
 * object has tags but no lb-sha256 metadata), then ranged GETs (aligned to
 * lb-part-size when the object has our digest and that part size is one
 * we could have written, else part_size; never more than 10,000) written
 * at their offsets into "<dest>.lbpart-<random>" and checked as they
 * arrive, If-Match on the ETag; verified against the lb-crc32c tag
 * ("crc32c"), the lb-sha256 metadata older uploads wrote ("sha256"), a
 * plain-MD5 ETag for objects up to 64 MiB ("md5"), else the length
 * ("length"); then renamed over dest.  Any failure unlinks the temporary
 * file.
 *
 * Retries: a request failing with ECONNECT/ETIMEDOUT, HTTP 5xx, 429 or the
 * S3 codes SlowDown/InternalError/RequestTimeout is retried alone with
 * exponential backoff and jitter, up to max_attempts in all.
 *
 * Errors: LB_ESERVICE (S3 said no: res->code holds "NoSuchKey",
 * "SignatureDoesNotMatch", ... or "HTTP_<status>" when the body had no
 * code), LB_ECONNECT, LB_ETIMEDOUT, LB_ETLS, LB_ECANCELED (SIGINT, cancel
 * flag, progress callback), LB_ECALLBACK (a callback failed), LB_EINTEGRITY
 * (checksum or length mismatch), LB_EIO (local file), LB_EINVAL (bad
 * options), LB_ENOMEM.  Messages read
 * "PutObject s3://bucket/key: HTTP 403 SignatureDoesNotMatch: <message>"
 * and never carry a secret or a signature. */
#ifndef LB_S3_H
#define LB_S3_H

#include <stddef.h>
#include <stdint.h>

#include "lb_err.h"

#define LB_S3_MIN_PART (5LL << 20)          /* S3 minimum part (but the last) */
#define LB_S3_MAX_PART (5LL << 30)          /* S3 maximum part */
#define LB_S3_MAX_PARTS 10000
/* The largest object multipart can make (10,000 x 5 GiB, ~48.8 TiB; S3
 * itself stops at 5 TiB): a bigger size from a file or a server is refused,
 * and every size below it plans at most 10,000 parts without overflow. */
#define LB_S3_MAX_OBJECT ((int64_t)LB_S3_MAX_PARTS * LB_S3_MAX_PART)
#define LB_S3_DEFAULT_PART (8LL << 20)
#define LB_S3_DEFAULT_THRESHOLD (16LL << 20)
#define LB_S3_DEFAULT_CONCURRENCY 8       /* requests in flight at the start */
#define LB_S3_ADAPT_MAX 32                 /* ... at most, when not given */
#define LB_S3_ADAPT_STEP 4
#define LB_S3_ADAPT_WINDOW 0.5             /* seconds of transfer per judgement */
#define LB_S3_ADAPT_GAIN 1.10              /* a step up must raise the rate 10% */
#define LB_S3_DEFAULT_ATTEMPTS 5
#define LB_S3_MD5_LIMIT (64LL << 20)        /* plain-ETag MD5 check up to this */
#define LB_S3_CODE_LEN 64

struct lb_http_client;

/* Progress: bytes done so far of total (-1 unknown: streams); LB_OK to go
 * on, LB_ECANCELED to stop, another code for a failure (LB_ECALLBACK). */
typedef int (*lb_s3_progress_fn)(void *ud, int64_t done, int64_t total);
/* Stream reader: put up to cap bytes into buf; return the count (> 0), 0 at
 * the end, or -code (-LB_ECALLBACK, -LB_ECANCELED, -LB_EIO) to fail. */
typedef long (*lb_s3_read_fn)(void *ud, char *buf, size_t cap);

/* A metadata pair (name without the "x-amz-meta-" prefix). */
typedef struct lb_s3_meta {
    const char *name;
    const char *value;
} lb_s3_meta;

/* Options of one transfer.  Zero-initialise (0 / NULL = default), then set.
 * Every pointer is borrowed for the duration of the call. */
typedef struct lb_s3_opts {
    const char *endpoint;           /* "http://127.0.0.1:7480" (scheme+host[:port]) */
    const char *bucket;             /* checked: lb_s3_bucket_ok, else LB_EINVAL */
    const char *key;                /* raw UTF-8; encoded here ('/' kept) */
    const char *region;             /* NULL: "us-east-1" */
    const char *access_key, *secret_key, *session_token;
    int virtual_host;               /* 1: scheme://bucket.host/key; 0: path style */
    int64_t part_size;              /* 0: chosen from the size (see lb_s3_part_size) */
    int concurrency;                /* requests in flight; 0: adaptive (lb_s3_adapt),
                                     * 8 at first, up to LB_S3_ADAPT_MAX */
    int max_attempts;               /* 0: 5 per request */
    lb_s3_progress_fn on_progress;  /* at most every ~100 ms, and once at the end */
    void *progress_ud;
    int verify_off;                 /* 1: skip TLS verification */
    const char *ca_bundle;
    double connect_timeout, read_timeout;   /* seconds; 0 = lb_http defaults */
    volatile int *cancel;           /* optional: set non-zero to stop */
    int64_t time_offset;            /* seconds added to time() when signing (clock skew) */
    struct lb_http_client *http;    /* borrowed client to run on (its connections are
                                     * kept for the next transfer: lb_s3_batch); NULL:
                                     * a client of its own, freed at the end */
    const char *file;               /* upload source / download destination */
    /* upload only */
    lb_s3_read_fn reader;           /* stream source (when file is NULL) */
    void *reader_ud;
    const char *content_type;
    const lb_s3_meta *metadata;
    size_t nmetadata;
    int64_t multipart_threshold;    /* 0: 16 MiB */
    int unsigned_payload;           /* UNSIGNED-PAYLOAD instead of the part hashes */
    /* download only */
    int no_checksum;                /* 1: check the length only */
    int fsync;                      /* 1: fsync the file before the rename */
} lb_s3_opts;

/* Outcome of a transfer; zeroed by the calls; free with lb_s3_result_free. */
typedef struct lb_s3_result {
    int64_t bytes;                  /* object size */
    char *etag;                     /* as S3 sent it (with its quotes) */
    int parts;                      /* upload: parts (1 = single PUT); download: ranges */
    char *checksum;                 /* upload: the lb-crc32c tag's value (multipart), else NULL */
    char *upload_id;                /* multipart upload id, else NULL */
    const char *verified;           /* download: "sha256", "md5" or "length" (static) */
    int concurrency;                /* the most requests in flight it allowed */
    char code[LB_S3_CODE_LEN];      /* LB_ESERVICE: S3 code or "HTTP_<n>"; else "" */
    char note[160];                 /* upload: the tag was not stored; download:
                                     * why less was checked (lb-part-size or
                                     * lb-chunk-size ignored, tag unreadable) */
} lb_s3_result;

/* Upload opts->file (or the opts->reader stream) to s3://bucket/key.
 * Returns LB_OK and fills *res, or a code listed at the top with err
 * (LB_ERR_LEN bytes, may be NULL) set; *res then holds only res->code.
 * Thread: the caller's; callbacks run on it.  Not re-entrant per opts. */
int lb_s3_upload(const lb_s3_opts *opts, lb_s3_result *res, char *err);

/* Download s3://bucket/key to opts->file (replaced atomically).  Returns
 * as lb_s3_upload; on any failure no file is created or changed under
 * opts->file and the temporary file is gone. */
int lb_s3_download(const lb_s3_opts *opts, lb_s3_result *res, char *err);

/* One object of a batch: set file and key (borrowed); the rest is output. */
typedef struct lb_s3_job {
    const char *file, *key;
    int64_t size;                   /* in: expected bytes (progress total), -1 unknown */
    int rc;                         /* out: LB_OK or a code (err, res.code) */
    char err[LB_ERR_LEN];
    lb_s3_result res;               /* free with lb_s3_result_free */
    int64_t done;                   /* bytes moved so far (read with __atomic) */
} lb_s3_job;

/* Batch progress on the caller's thread, at most every ~100 ms and once at
 * the end: bytes moved, objects finished (failed ones too) of n; LB_OK to go
 * on, another code to stop (the transfers running are cancelled, the ones
 * not started get LB_ECANCELED). */
typedef int (*lb_s3_batch_progress_fn)(void *ud, int64_t bytes, size_t finished, size_t n);

/* Upload (download = 0) or download n objects, each as lb_s3_upload /
 * lb_s3_download with base's options and the job's file and key, up to
 * `workers` (1..64) at once: each worker thread runs its objects one after
 * another on one client, so its connections are kept alive from one
 * object to the next.  base->reader and base->on_progress must be NULL.
 * Every job gets its own outcome; returns LB_OK when all ran (each job
 * says how), LB_ECANCELED when stopped (progress, base->cancel, SIGINT),
 * LB_EINVAL/LB_ENOMEM when it could not start (jobs untouched). */
int lb_s3_batch(const lb_s3_opts *base, int download, lb_s3_job *jobs, size_t n, int workers,
                lb_s3_batch_progress_fn progress, void *ud, char *err);

/* Free what res owns and zero it (NULL is a no-op). */
void lb_s3_result_free(lb_s3_result *res);

/* ---- pieces, exposed for tests ---------------------------------------- */

/* Adaptive concurrency (lb_s3_adapt.c): a hill climb on the rate.  Feed
 * the bytes moved so far while requests wait for a slot; the answer is how
 * many may be in flight.  A drop in bytes starts a new measurement. */
typedef struct lb_s3_adapt {
    int cur, max, peak;
    int stepped;                    /* the window just judged followed a step up */
    int done;                       /* the climb is over: cur stays */
    double t0, best;                /* window start (-1: none yet); best bytes/s */
    int64_t b0;                     /* bytes at the window start */
} lb_s3_adapt;
void lb_s3_adapt_init(lb_s3_adapt *a, int max);
int lb_s3_adapt_step(lb_s3_adapt *a, double now, int64_t bytes);

/* Part size for an object of `size` bytes: `requested` when > 0 (clamped
 * to [5 MiB, 5 GiB] and raised until the parts fit in 10,000), else
 * max(8 MiB, ceil(size / 10000) rounded up to 1 MiB).  Defined for every
 * int64 input (no overflow): a size above LB_S3_MAX_OBJECT counts as
 * LB_S3_MAX_OBJECT (callers refuse such sizes), a negative one as 0.  For
 * 0 <= size <= LB_S3_MAX_OBJECT, ceil(size / result) <= 10,000. */
int64_t lb_s3_part_size(int64_t size, int64_t requested);

/* The part size an object's own metadata states (lb-part-size, with a
 * digest "<hex>-<n>" as our multipart uploads write them: lb-crc32c, 8 hex
 * digits, or the older lb-sha256, 64) when an upload of ours could have
 * made it: 5 MiB..5 GiB, n <= 10,000 and n =
 * ceil(size / part size).  Else 0 (absent, malformed or implausible: plan
 * ranges of your own; metadata is anyone's to write, never obeyed blindly). */
int64_t lb_s3_stored_part_size(int64_t size, const char *lbsha, const char *lbps);

/* 1 when bucket is a name S3 accepts -- 3-63 characters of a-z, 0-9, '.'
 * and '-', a letter or digit first and last -- so it can go into a URL
 * as it is (no '/', '?', '#', '%', space or control character); else 0. */
int lb_s3_bucket_ok(const char *bucket);

/* Percent-encode a key for a URL path: every byte outside A-Z a-z 0-9
 * - _ . ~ and '/' becomes %XX.  Returns a new string (lb_free) or NULL
 * when out of memory. */
char *lb_s3_encode_key(const char *key);

/* The object URL: path style "endpoint/bucket/key" or virtual host
 * "scheme://bucket.host[:port]/key" (encoded key).  Returns a new string or
 * NULL (out of memory, an endpoint without "scheme://", or a bucket that
 * lb_s3_bucket_ok refuses). */
char *lb_s3_object_url(const char *endpoint, const char *bucket, const char *key, int virtual_host);

/* The CompleteMultipartUpload document for n parts (numbered 1..n) with
 * their ETags.  Returns a new string or NULL when out of memory. */
char *lb_s3_complete_xml(const char *const *etags, size_t n);

/* "<8 hex: CRC-32C of the n big-endian CRCs>-<n>" into out (at least
 * 8 + 1 + 5 + 1 bytes): the lb-crc32c value of an object of n parts. */
void lb_s3_crc_composite(const uint32_t *crcs, size_t n, char *out, size_t cap);

/* The PutObjectTagging document of one tag.  A new string or NULL (out of
 * memory). */
char *lb_s3_tagging_xml(const char *key, const char *value);

/* "<hex sha256 of the n concatenated 32-byte digests>-<n>" into out (at
 * least 64 + 1 + 5 + 1 bytes).  LB_OK or LB_ENOMEM. */
int lb_s3_composite(const unsigned char *digests, size_t n, char *out, size_t cap);

/* Parse an S3 error document: code and message (either may come back
 * ""), bounded copies.  LB_OK when body is an <Error> document, else
 * LB_EPARSE (or LB_ENOMEM). */
int lb_s3_parse_error(const char *body, size_t len, char *code, size_t code_cap,
                      char *msg, size_t msg_cap);

#endif
