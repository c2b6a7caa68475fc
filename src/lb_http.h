/* lb_http.h -- the libcurl HTTP engine of the C core (no Lua).
 *
 * A client (lb_http_client) owns one curl multi handle: its connection
 * cache and DNS cache, so connections are kept alive and reused across the
 * requests made through it, and a small pool of easy handles.  Requests
 * run one at a time (lb_http_perform) or many at once (lb_http_perform_all,
 * bounded by the client's max_concurrency).  Both drive the multi handle
 * from the calling thread; a client must be used by one thread at a time.
 *
 * Bodies come from memory, a file range or a read callback; responses go
 * to memory, a file (written with pwrite at an offset, so several ranged
 * downloads can fill one file in parallel) or a write callback.  A response
 * whose status is not 2xx always goes to memory (resp.body), whatever sink
 * was asked for, so an error document can be read and a file is never
 * overwritten with one.  Redirects are not followed (a signed request
 * cannot be replayed elsewhere); a 3xx is returned as a response.
 *
 * An HTTP status (404, 503, ...) is a successful response, not an error.
 * Errors are transport failures, mapped from libcurl:
 *   LB_ECONNECT   couldn't resolve/connect, connection reset, send/recv
 *                 failure, empty or truncated reply
 *   LB_ETIMEDOUT  connect, read (no byte for read_timeout) or overall timeout
 *   LB_ETLS       TLS handshake or certificate verification failure
 *   LB_ECANCELED  SIGINT (lb_intr_pending()), the request's cancel flag, or
 *                 a callback that asked to stop (returned LB_ECANCELED)
 *   LB_ECALLBACK  a callback failed (returned another code)
 *   LB_EIO        a body or output file could not be read/written
 *   LB_ENOMEM     out of memory
 *   LB_EINVAL     bad request options (missing url, ...)
 *   LB_EHTTP      any other libcurl failure
 * Messages read "GET http://host:port/path: <what happened>"; the query
 * string and any userinfo are cut from the URL ("...?…") and request
 * headers never appear, so presigned URLs and Authorization stay secret.
 *
 * TLS peer and host verification are on unless verify_off is set.  Proxies
 * come from the environment (http_proxy, https_proxy, no_proxy), as
 * libcurl does by default.  `Expect: 100-continue` is never sent, nor a
 * Content-Type the caller did not give.
 *
 * Process-wide setup: the first lb_http_client_open loads libcurl with
 * dlopen and runs curl_global_init (lb_curl.h); without libcurl it fails
 * with LB_EHTTP naming the library. */
#ifndef LB_HTTP_H
#define LB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "lb_err.h"

typedef struct lb_http_client lb_http_client;

/* A request header (borrowed strings). */
typedef struct lb_http_kv {
    const char *name;
    const char *value;
} lb_http_kv;

/* A response header.  `name` is the start of one lb_malloc'd block that
 * also holds `value`: free name only (lb_http_response_free does). */
typedef struct lb_http_header {
    char *name;     /* as received ("Content-Type") */
    char *value;    /* trimmed */
} lb_http_header;

/* Body reader: fill buf with up to cap bytes; return the count (> 0), 0 at
 * the end of the body, or -code (e.g. -LB_ECALLBACK) to fail the request. */
typedef long (*lb_http_read_fn)(void *ud, char *buf, size_t cap);
/* Body writer: consume n bytes; return LB_OK, LB_ECANCELED to stop on
 * purpose, or another LB_E* code for a failure (-> LB_ECALLBACK). */
typedef int (*lb_http_write_fn)(void *ud, const char *p, size_t n);
/* Progress: byte counts so far (totals 0 when unknown); return LB_OK, or a
 * code to stop the request as for the writer. */
typedef int (*lb_http_progress_fn)(void *ud, int64_t dlnow, int64_t dltotal,
                                   int64_t ulnow, int64_t ultotal);

enum { LB_HTTP_BODY_NONE, LB_HTTP_BODY_MEM, LB_HTTP_BODY_FILE, LB_HTTP_BODY_READER };
enum { LB_HTTP_SINK_MEM, LB_HTTP_SINK_FILE, LB_HTTP_SINK_WRITER };

/* One request.  All pointers are borrowed: they must stay valid until the
 * perform call returns.  Zero-initialise, then set what you need. */
typedef struct lb_http_request {
    const char *method;             /* NULL = "GET" (or "PUT" with a body) */
    const char *url;                /* required */
    const lb_http_kv *headers;      /* nheaders pairs, sent in order */
    size_t nheaders;

    int body_kind;                  /* LB_HTTP_BODY_* */
    const char *body;               /* MEM: body_length bytes */
    const char *body_file;          /* FILE: path, from body_offset ... */
    int64_t body_offset;
    int64_t body_length;            /* MEM/FILE/READER: bytes; < 0 = to EOF
                                       (FILE) or unknown: chunked (READER) */
    lb_http_read_fn body_reader;    /* READER */
    void *body_ud;

    int sink_kind;                  /* LB_HTTP_SINK_* (MEM by default) */
    const char *output_file;        /* FILE: created if absent, written at */
    int64_t output_offset;          /*   output_offset + n with pwrite */
    int output_truncate;            /* FILE: truncate it first */
    lb_http_write_fn on_data;       /* WRITER */
    void *data_ud;

    lb_http_progress_fn on_progress; /* optional, any sink */
    void *progress_ud;

    double connect_timeout;         /* seconds; 0 = 10 s default */
    double timeout;                 /* overall seconds; 0 = none */
    double read_timeout;            /* seconds with no byte; 0 = 60, < 0 = none */
    int verify_off;                 /* 1 = skip TLS peer/host verification */
    const char *ca_bundle;          /* PEM file of trusted CAs, or NULL */
    volatile int *cancel;           /* optional: set non-zero (from any
                                       thread) to stop with LB_ECANCELED */
    long recv_buffer_size;          /* bytes per receive (CURLOPT_BUFFERSIZE);
                                       0 = libcurl's default (16 KiB) */
    long send_buffer_size;          /* bytes per body read (CURLOPT_UPLOAD_
                                       BUFFERSIZE); 0 = default (64 KiB) */
    const char *unix_socket;        /* connect to this unix socket instead
                                       of the URL's host (the Docker Engine
                                       API); no proxy then; NULL = TCP */
    size_t max_body;                /* bytes a body kept in memory may hold
                                       (memory sink or diverted non-2xx);
                                       0 = LB_HTTP_MAX_BODY; more fails the
                                       request with LB_EHTTP "response body
                                       larger than N bytes (limit)" */
} lb_http_request;

#define LB_HTTP_MAX_BODY ((size_t)64 << 20)   /* default cap of a body in memory */
#define LB_HTTP_MAX_HEADER_BYTES ((size_t)256 << 10) /* response headers, all lines */

/* A response; zero-initialised by the perform calls, owned by the caller,
 * released with lb_http_response_free. */
typedef struct lb_http_response {
    long status;                    /* final HTTP status */
    lb_http_header *headers;        /* nheaders, in order received */
    size_t nheaders;
    char *body;                     /* memory sink (or diverted non-2xx):
                                       body_len bytes + NUL; else NULL */
    size_t body_len;
    int64_t bytes_in;               /* body bytes received (any sink) */
    double seconds;                 /* elapsed wall time */
} lb_http_response;

/* Outcome of one request of lb_http_perform_all. */
typedef struct lb_http_result {
    int code;                       /* LB_OK or LB_E* */
    char err[LB_ERR_LEN];           /* message when code != LB_OK */
    lb_http_response resp;          /* filled when code == LB_OK */
} lb_http_result;

/* Client options (zero-initialise; 0 means default). */
typedef struct lb_http_client_opts {
    int max_connections;            /* kept-alive and total connections: 16 */
    int max_concurrency;            /* transfers in flight at once: 16 */
} lb_http_client_opts;

/* Create a client (opts may be NULL) into *out.  Returns LB_OK, or LB_ENOMEM
 * or LB_EHTTP (libcurl is missing or refuses) with *out NULL and err set
 * (may be NULL).  Free with lb_http_client_free. */
int lb_http_client_open(const lb_http_client_opts *opts, lb_http_client **out, char *err);

/* Close every connection and free the client; NULL is a no-op. */
void lb_http_client_free(lb_http_client *c);

/* Run one request through c (NULL: a temporary client, so no reuse).  On
 * LB_OK resp is filled and owned by the caller; on failure resp is left
 * empty and err (LB_ERR_LEN bytes, may be NULL) holds the message.
 * Returns LB_OK or a code listed at the top of this file. */
int lb_http_perform(lb_http_client *c, const lb_http_request *req,
                    lb_http_response *resp, char *err);

/* Run n requests concurrently (at most max_concurrency in flight) and fill
 * results[i] for reqs[i]; the caller owns results and frees each
 * results[i].resp.  Returns LB_OK when every request ran to an outcome
 * (each result has its own code), LB_ECANCELED if SIGINT stopped the batch
 * (unfinished requests get LB_ECANCELED), or LB_ENOMEM/LB_EINVAL when the
 * batch could not start (every result then carries that code). */
int lb_http_perform_all(lb_http_client *c, const lb_http_request *reqs, size_t n,
                        lb_http_result *results);

/* A pump feeds lb_http_perform_pump requests one at a time, as slots free
 * up, and hears of each outcome as soon as it is known: for transfers of
 * unbounded length (multipart uploads, ranged downloads) whose requests are
 * built, signed and retried while others run.  Callbacks run on the
 * calling thread, from the driving loop (never from inside libcurl). */
enum {
    LB_HTTP_PUMP_WAIT = -1,         /* next: nothing to start now, ask later */
    LB_HTTP_PUMP_END = -2           /* next: nothing more will come */
};
typedef struct lb_http_pump {
    /* Next request to start: return LB_OK with *req and *res set (both
     * stay valid, owned by the pump, until done() is called for them),
     * LB_HTTP_PUMP_WAIT, LB_HTTP_PUMP_END, or an LB_E* code to stop. */
    int (*next)(void *ud, const lb_http_request **req, lb_http_result **res);
    /* The outcome of req is in *res (the pump owns and frees res->resp).
     * Return LB_OK, or an LB_E* code to stop. */
    int (*done)(void *ud, const lb_http_request *req, lb_http_result *res);
    /* Optional: called on every turn of the loop (at least every 100 ms
     * while requests run, every 10 ms while waiting); LB_OK or a code to
     * stop. */
    int (*tick)(void *ud);
    void *ud;
} lb_http_pump;

/* Run requests from the pump until next() says LB_HTTP_PUMP_END and none
 * is in flight (at most the client's max_concurrency at once).  A request
 * that cannot start is reported through done() like any other outcome.
 * Stopping (a callback's code, or SIGINT: LB_ECANCELED) aborts every
 * request in flight; done() is still called for each (code LB_ECANCELED),
 * its return value then ignored.  Returns LB_OK, the stop code, or LB_EINVAL
 * (client busy, NULL next/done). */
int lb_http_perform_pump(lb_http_client *c, const lb_http_pump *p);

/* Free what resp owns and zero it; NULL is a no-op. */
void lb_http_response_free(lb_http_response *resp);

/* Value of the first response header called name (case-insensitive), or
 * NULL.  Borrowed from resp. */
const char *lb_http_response_header(const lb_http_response *resp, const char *name);

/* Test/inspection hook: the TLS verification settings a request would use:
 * *peer and *host receive 1 when verification is on.  LB_OK. */
int lb_http_request_tls(const lb_http_request *req, int *peer, int *host);

#endif
