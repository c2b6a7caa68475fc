/* lb_http.c -- libcurl engine behind lb_http.h.
 *
 * Every request, single or batched, runs on the client's multi handle, so
 * connections (and DNS answers) are cached by the multi handle and reused.
 * The driving loop (run) polls at most POLL_MS at a time, so SIGINT, a
 * cancel flag or a read timeout stops a transfer within about that long
 * even when the peer sends nothing. */
#include "lb_http.h"
#include "lb_http_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define CURL_DISABLE_TYPECHECK  /* the curl_* calls go through lb_curl (lb_curl.h) */
#include <curl/curl.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_curl.h"
#include "lb_intr.h"

#define POLL_MS 100                 /* longest wait between checks */
#define DEFAULT_CONNECTIONS 16
#define DEFAULT_CONCURRENCY 16
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_READ_TIMEOUT 60.0
#define WHAT_LEN 192                /* "GET http://host/path" in messages */

struct lb_http_client {
    CURLM *multi;                   /* connection + DNS cache live here */
    CURL **idle;                    /* pool of reset easy handles */
    int nidle;
    int max_concurrency;
    int busy;                       /* a perform is running (no re-entry) */
};

/* State of one transfer in flight; lb_alloc'd when it starts, freed when
 * it finishes. */
typedef struct xfer {
    const lb_http_request *req;
    lb_http_result *res;            /* outcome goes here */
    CURL *easy;
    struct curl_slist *hdrs;        /* curl-allocated request headers */
    char what[WHAT_LEN];            /* method + URL without query */
    char curl_err[CURL_ERROR_SIZE];
    /* body source */
    int in_fd;
    int64_t in_base, in_pos, in_left;   /* in_left < 0: unknown length */
    int uploading;                  /* CURLOPT_UPLOAD set */
    /* sink */
    int sink_decided, divert;       /* divert: non-2xx or memory sink */
    int out_fd;
    int64_t out_pos;
    lb_buf body;
    lb_http_hdrs hdr;               /* response headers so far */
    int64_t bytes_in;
    /* progress and failures */
    int abort_code;                 /* set by a callback or the loop */
    char abort_msg[LB_ERR_LEN];
    double t_start, t_last;         /* monotonic seconds */
    double read_timeout;            /* <= 0: none */
    int connected;                  /* connection established or reused */
    curl_off_t last_dl, last_ul;
} xfer;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int set_abort(xfer *x, int code, const char *msg) {
    if (!x->abort_code) {           /* first reason wins */
        x->abort_code = code;
        snprintf(x->abort_msg, sizeof x->abort_msg, "%s", msg);
    }
    return code;
}

/* "METHOD scheme://host[:port]/path" without userinfo, query or fragment,
 * so neither a presigned signature nor a password reaches a message. */
static void describe(char *out, size_t cap, const char *method, const char *url) {
    const char *p = strstr(url, "://"), *host = url, *end;
    const char *at, *slash;
    size_t schemelen = 0;
    int cut;
    if (p) { schemelen = (size_t)(p - url) + 3; host = p + 3; }
    slash = host + strcspn(host, "/?#");
    at = memchr(host, '@', (size_t)(slash - host));
    if (at) host = at + 1;
    end = host + strcspn(host, "?#");
    cut = *end != '\0';
    snprintf(out, cap, "%s %.*s%.*s%s", method, (int)schemelen, url,
             (int)(end - host), host, cut ? "?..." : "");
}

static int map_curl(CURLcode cc) {
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_PROXY: case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE: case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: case CURLE_SEND_FAIL_REWIND: case CURLE_WEIRD_SERVER_REPLY:
        return LB_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return LB_ETIMEDOUT;
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED: case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT: case CURLE_USE_SSL_FAILED:
        return LB_ETLS;
    case CURLE_ABORTED_BY_CALLBACK:
        return LB_ECANCELED;
    case CURLE_READ_ERROR: case CURLE_WRITE_ERROR: case CURLE_FILE_COULDNT_READ_FILE:
        return LB_EIO;
    case CURLE_OUT_OF_MEMORY:
        return LB_ENOMEM;
    default:
        return LB_EHTTP;
    }
}

/* ---- response headers ------------------------------------------------- */

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    char msg[LB_ERR_LEN];
    int rc;
    x->t_last = mono();
    if ((rc = lb_http_hdrs_line(&x->hdr, p, n, msg)) != LB_OK) {
        set_abort(x, rc, msg);
        return 0;
    }
    return n;
}

/* ---- response body ---------------------------------------------------- */

static int open_output(xfer *x) {
    const lb_http_request *r = x->req;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (r->output_truncate ? O_TRUNC : 0);
    char msg[LB_ERR_LEN];
    x->out_fd = open(r->output_file, flags, 0666);
    if (x->out_fd < 0) {
        snprintf(msg, sizeof msg, "open %s: %s", r->output_file, strerror(errno));
        return set_abort(x, LB_EIO, msg);
    }
    x->out_pos = r->output_offset;
    return LB_OK;
}

/* Decide where the body goes once the status is known. */
static int decide_sink(xfer *x) {
    long status = 0;
    x->sink_decided = 1;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    x->divert = x->req->sink_kind == LB_HTTP_SINK_MEM || status < 200 || status > 299;
    if (!x->divert && x->req->sink_kind == LB_HTTP_SINK_FILE) return open_output(x);
    return LB_OK;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb, done = 0;
    int rc;
    x->t_last = mono();
    if (!x->sink_decided && decide_sink(x) != LB_OK) return 0;
    x->bytes_in += (int64_t)n;
    if (x->divert) {
        size_t cap = x->req->max_body ? x->req->max_body : LB_HTTP_MAX_BODY;
        if (n > cap || x->body.len > cap - n) {   /* kept in memory: bounded */
            char msg[LB_ERR_LEN];
            snprintf(msg, sizeof msg, "response body larger than %zu bytes (limit)", cap);
            set_abort(x, LB_EHTTP, msg);
            return 0;
        }
        if (lb_buf_append(&x->body, p, n) != LB_OK) {
            set_abort(x, LB_ENOMEM, "out of memory buffering the response body");
            return 0;
        }
    } else if (x->req->sink_kind == LB_HTTP_SINK_FILE) {
        while (done < n) {
            ssize_t w = pwrite(x->out_fd, p + done, n - done, (off_t)x->out_pos);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                char msg[LB_ERR_LEN];
                snprintf(msg, sizeof msg, "write %s: %s", x->req->output_file,
                         w < 0 ? strerror(errno) : "short write");
                set_abort(x, LB_EIO, msg);
                return 0;
            }
            done += (size_t)w;
            x->out_pos += w;
        }
    } else {
        rc = x->req->on_data(x->req->data_ud, p, n);
        if (rc != LB_OK) {
            if (rc == LB_ECANCELED) set_abort(x, LB_ECANCELED, "cancelled by the data callback");
            else set_abort(x, LB_ECALLBACK, "the data callback failed");
            return 0;
        }
    }
    return n;
}

/* ---- request body ----------------------------------------------------- */

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    const lb_http_request *r = x->req;
    size_t cap = size * nmemb;
    char msg[LB_ERR_LEN];
    x->t_last = mono();
    if (x->in_left >= 0 && (int64_t)cap > x->in_left) cap = (size_t)x->in_left;
    if (cap == 0) return 0;
    if (r->body_kind == LB_HTTP_BODY_MEM) {
        memcpy(buf, r->body + x->in_pos, cap);
    } else if (r->body_kind == LB_HTTP_BODY_FILE) {
        ssize_t got;
        do got = pread(x->in_fd, buf, cap, (off_t)x->in_pos); while (got < 0 && errno == EINTR);
        if (got < 0 || (got == 0 && x->in_left > 0)) {
            snprintf(msg, sizeof msg, "read %s: %s", r->body_file,
                     got < 0 ? strerror(errno) : "file shorter than the body length");
            set_abort(x, LB_EIO, msg);
            return CURL_READFUNC_ABORT;
        }
        cap = (size_t)got;
    } else {
        long got = r->body_reader(r->body_ud, buf, cap);
        if (got < 0) {
            if (-got == LB_ECANCELED) set_abort(x, LB_ECANCELED, "cancelled by the body reader");
            else set_abort(x, LB_ECALLBACK, "the body reader failed");
            return CURL_READFUNC_ABORT;
        }
        if (got == 0 && x->in_left > 0) {
            snprintf(msg, sizeof msg, "body reader ended %lld bytes short of the body length",
                     (long long)x->in_left);
            set_abort(x, LB_ECALLBACK, msg);
            return CURL_READFUNC_ABORT;
        }
        if ((size_t)got > cap) got = (long)cap;
        cap = (size_t)got;
    }
    x->in_pos += (int64_t)cap;
    if (x->in_left >= 0) x->in_left -= (int64_t)cap;
    return cap;
}

/* curl rewinds the body when it resends a request on a fresh connection
 * (a kept-alive one had died).  Memory and file bodies can; readers can't. */
static int on_seek(void *ud, curl_off_t off, int origin) {
    xfer *x = ud;
    const lb_http_request *r = x->req;
    if (origin != SEEK_SET || r->body_kind == LB_HTTP_BODY_READER || off < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    if (r->body_length >= 0 && off > r->body_length) return CURL_SEEKFUNC_FAIL;
    x->in_pos = x->in_base + off;
    if (r->body_length >= 0) x->in_left = r->body_length - off;
    return CURL_SEEKFUNC_OK;
}

/* ---- progress, cancellation ------------------------------------------- */

static int on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
    xfer *x = ud;
    const lb_http_request *r = x->req;
    if (dlnow != x->last_dl || ulnow != x->last_ul) {
        x->t_last = mono();
        x->last_dl = dlnow;
        x->last_ul = ulnow;
    }
    if (lb_intr_pending()) { set_abort(x, LB_ECANCELED, "interrupted"); return 1; }
    if (r->cancel && __atomic_load_n(r->cancel, __ATOMIC_RELAXED)) {
        set_abort(x, LB_ECANCELED, "cancelled");
        return 1;
    }
    if (r->on_progress) {
        int rc = r->on_progress(r->progress_ud, dlnow, dltotal, ulnow, ultotal);
        if (rc != LB_OK) {
            if (rc == LB_ECANCELED) set_abort(x, LB_ECANCELED, "cancelled by the progress callback");
            else set_abort(x, LB_ECALLBACK, "the progress callback failed");
            return 1;
        }
    }
    return 0;
}

static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port) {
    xfer *x = ud;
    (void)ip; (void)local_ip; (void)port; (void)local_port;
    x->connected = 1;               /* the read timeout counts from here */
    x->t_last = mono();
    return CURL_PREREQFUNC_OK;
}

/* ---- setting up a transfer -------------------------------------------- */

int lb_http_request_tls(const lb_http_request *req, int *peer, int *host) {
    *peer = req->verify_off ? 0 : 1;
    *host = req->verify_off ? 0 : 1;
    return LB_OK;
}

static int has_header(const lb_http_request *r, const char *name) {
    size_t i;
    for (i = 0; i < r->nheaders; i++)
        if (r->headers[i].name && strcasecmp(r->headers[i].name, name) == 0) return 1;
    return 0;
}

static int append_slist(xfer *x, const char *line) {
    struct curl_slist *l = curl_slist_append(x->hdrs, line);
    if (!l) return LB_ENOMEM;
    x->hdrs = l;
    return LB_OK;
}

static int build_headers(xfer *x, char *err) {
    const lb_http_request *r = x->req;
    lb_buf b = { 0 };
    size_t i;
    int rc = LB_OK;
    for (i = 0; i < r->nheaders && rc == LB_OK; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;
        if (!n || !*n || !v || n[strcspn(n, ":\r\n \t")] || v[strcspn(v, "\r\n")]) {
            rc = lb_err_set(err, LB_EINVAL, "%s: bad request header #%zu%s%s", x->what, i + 1,
                            n ? " " : "", n ? n : "");
            break;
        }
        lb_buf_reset(&b);
        /* "Name;" is curl's way to send a header with an empty value. */
        if (lb_buf_printf(&b, *v ? "%s: %s" : "%s;", n, v) != LB_OK
            || append_slist(x, b.data) != LB_OK)
            rc = lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    }
    lb_buf_free(&b);
    /* Never wait for 100-continue; never let curl invent a Content-Type. */
    if (rc == LB_OK && !has_header(r, "Expect") && append_slist(x, "Expect:") != LB_OK)
        rc = lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    if (rc == LB_OK && !has_header(r, "Content-Type") && append_slist(x, "Content-Type:") != LB_OK)
        rc = lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    return rc;
}

static int setup_body(xfer *x, const char *method, char *err) {
    const lb_http_request *r = x->req;
    CURL *e = x->easy;
    int kind = r->body_kind;
    int64_t len = r->body_length;
    if (kind == LB_HTTP_BODY_NONE
        && (!strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH"))) {
        kind = LB_HTTP_BODY_MEM;    /* send "Content-Length: 0" */
        len = 0;
    }
    if (kind == LB_HTTP_BODY_NONE) {
        if (!strcmp(method, "HEAD")) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        return LB_OK;
    }
    if (kind == LB_HTTP_BODY_MEM) {
        if (len < 0 || (len > 0 && !r->body))
            return lb_err_set(err, LB_EINVAL, "%s: memory body needs body and body_length", x->what);
        x->in_base = x->in_pos = 0;
        x->in_left = len;
    } else if (kind == LB_HTTP_BODY_FILE) {
        if (!r->body_file || r->body_offset < 0)
            return lb_err_set(err, LB_EINVAL, "%s: file body needs body_file", x->what);
        x->in_fd = open(r->body_file, O_RDONLY | O_CLOEXEC);
        if (x->in_fd < 0)
            return lb_err_set(err, LB_EIO, "%s: open %s: %s", x->what, r->body_file, strerror(errno));
        if (len < 0) {              /* to the end of the file */
            off_t end = lseek(x->in_fd, 0, SEEK_END);
            if (end < 0 || end < r->body_offset)
                return lb_err_set(err, LB_EIO, "%s: %s: offset beyond the end of the file",
                                  x->what, r->body_file);
            len = (int64_t)end - r->body_offset;
        }
        x->in_base = x->in_pos = r->body_offset;
        x->in_left = len;
    } else if (kind == LB_HTTP_BODY_READER) {
        if (!r->body_reader)
            return lb_err_set(err, LB_EINVAL, "%s: reader body needs body_reader", x->what);
        x->in_base = x->in_pos = 0;
        x->in_left = len < 0 ? -1 : len;
    } else {
        return lb_err_set(err, LB_EINVAL, "%s: unknown body kind %d", x->what, kind);
    }
    x->uploading = 1;
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, x);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
    if (x->in_left >= 0) curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->in_left);
    return LB_OK;
}

static long ms(double s) { return (long)ceil(s * 1000.0); }

/* Configure x->easy for x->req.  LB_OK or LB_EINVAL/LB_EIO/LB_ENOMEM. */
static int setup(xfer *x, char *err) {
    const lb_http_request *r = x->req;
    CURL *e = x->easy;
    const char *method = r->method ? r->method : (r->body_kind ? "PUT" : "GET");
    double ct = r->connect_timeout > 0 ? r->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
    int rc, peer, host;

    x->read_timeout = r->read_timeout == 0 ? DEFAULT_READ_TIMEOUT : r->read_timeout;
    if (r->sink_kind == LB_HTTP_SINK_FILE && (!r->output_file || r->output_offset < 0))
        return lb_err_set(err, LB_EINVAL, "%s: file sink needs output_file", x->what);
    if (r->sink_kind == LB_HTTP_SINK_WRITER && !r->on_data)
        return lb_err_set(err, LB_EINVAL, "%s: writer sink needs on_data", x->what);
    if (!*method || method[strcspn(method, " \r\n\t")])
        return lb_err_set(err, LB_EINVAL, "%s: bad method", x->what);

    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err);
    if (curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK)
        return lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* CURLOPT_NOSIGNAL stays 0: resolving is threaded (no SIGALRM), and
     * libcurl then ignores SIGPIPE around its own writes, so a peer that
     * hangs up mid-upload cannot kill a host that did not ignore SIGPIPE. */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms(ct));
    if (r->timeout > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms(r->timeout));
    if (x->read_timeout > 0) {      /* backstop; run() checks more precisely */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)ceil(x->read_timeout));
    }
    lb_http_request_tls(r, &peer, &host);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, (long)peer);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, host ? 2L : 0L);
    if (r->ca_bundle && *r->ca_bundle
        && curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_bundle) != CURLE_OK)
        return lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    /* No CURLOPT_PROXY: libcurl then honours http_proxy/https_proxy/no_proxy,
     * but never for a unix socket.  A pooled handle comes back reset
     * (put_easy), so neither option carries over to the next request. */
    if (r->unix_socket
        && (curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, r->unix_socket) != CURLE_OK
            || curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK))
        return lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    if (r->recv_buffer_size > 0) curl_easy_setopt(e, CURLOPT_BUFFERSIZE, r->recv_buffer_size);
    if (r->send_buffer_size > 0)
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, r->send_buffer_size);
    if ((rc = setup_body(x, method, err)) != LB_OK) return rc;
    /* An upload is a PUT to curl, anything else a GET or HEAD: name the
     * method when it differs. */
    if ((x->uploading ? strcmp(method, "PUT") != 0
                      : strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        && curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK)
        return lb_err_set(err, LB_ENOMEM, "%s: out of memory", x->what);
    if ((rc = build_headers(x, err)) != LB_OK) return rc;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    return LB_OK;
}

/* ---- the client -------------------------------------------------------- */

int lb_http_client_open(const lb_http_client_opts *opts, lb_http_client **out, char *err) {
    lb_http_client *c;
    int maxconn = opts && opts->max_connections > 0 ? opts->max_connections : DEFAULT_CONNECTIONS;
    int conc = opts && opts->max_concurrency > 0 ? opts->max_concurrency : DEFAULT_CONCURRENCY;
    char lerr[LB_ERR_LEN];
    *out = NULL;
    if (lb_curl_load(lerr) != LB_OK)    /* the first client loads libcurl */
        return lb_err_set(err, LB_EHTTP, "http client: %s", lerr);
    c = lb_calloc(1, sizeof *c);
    if (!c) goto nomem;
    c->max_concurrency = conc;
    c->idle = lb_calloc((size_t)conc, sizeof *c->idle);
    if (!c->idle) goto nomem;
    c->multi = curl_multi_init();
    if (!c->multi) {
        lb_http_client_free(c);
        return lb_err_set(err, LB_EHTTP, "http client: curl_multi_init failed");
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)maxconn);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)maxconn);
    *out = c;
    return LB_OK;
nomem:
    lb_http_client_free(c);
    return lb_err_set(err, LB_ENOMEM, "http client: out of memory");
}

void lb_http_client_free(lb_http_client *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->nidle; i++) curl_easy_cleanup(c->idle[i]);
    if (c->multi) curl_multi_cleanup(c->multi);   /* closes cached connections */
    lb_free(c->idle);
    lb_free(c);
}

void lb_http_response_free(lb_http_response *resp) {
    if (!resp) return;
    lb_http_headers_free(resp->headers, resp->nheaders);
    lb_free(resp->body);
    memset(resp, 0, sizeof *resp);
}

static CURL *get_easy(lb_http_client *c) {
    if (c->nidle) return c->idle[--c->nidle];
    return curl_easy_init();
}

static void put_easy(lb_http_client *c, CURL *e) {
    if (!e) return;
    curl_easy_reset(e);
    if (c->nidle < c->max_concurrency) c->idle[c->nidle++] = e;
    else curl_easy_cleanup(e);
}

static void release(lb_http_client *c, xfer *x, int in_multi) {
    if (in_multi) curl_multi_remove_handle(c->multi, x->easy);
    put_easy(c, x->easy);
    curl_slist_free_all(x->hdrs);
    if (x->in_fd >= 0) close(x->in_fd);
    if (x->out_fd >= 0) close(x->out_fd);
    lb_http_headers_free(x->hdr.h, x->hdr.n);
    lb_buf_free(&x->body);
    lb_free(x);
}

/* Start request i: on LB_OK *out is in the multi; otherwise results[i] holds
 * the failure. */
static int start(lb_http_client *c, const lb_http_request *req, lb_http_result *res, xfer **out) {
    xfer *x;
    int rc;
    memset(res, 0, sizeof *res);
    *out = NULL;
    if (!req->url || !*req->url) {
        res->code = lb_err_set(res->err, LB_EINVAL, "%s: url required",
                               req->method ? req->method : "GET");
        return res->code;
    }
    x = lb_calloc(1, sizeof *x);
    if (!x) return res->code = lb_err_set(res->err, LB_ENOMEM, "http request: out of memory");
    x->req = req;
    x->res = res;
    x->in_fd = x->out_fd = -1;
    x->t_start = x->t_last = mono();
    describe(x->what, sizeof x->what,
             req->method ? req->method : (req->body_kind ? "PUT" : "GET"), req->url);
    x->easy = get_easy(c);
    if (!x->easy) {
        rc = lb_err_set(res->err, LB_ENOMEM, "%s: out of memory", x->what);
    } else if ((rc = setup(x, res->err)) == LB_OK) {
        CURLMcode mc = curl_multi_add_handle(c->multi, x->easy);
        if (mc != CURLM_OK)
            rc = lb_err_set(res->err, mc == CURLM_OUT_OF_MEMORY ? LB_ENOMEM : LB_EHTTP,
                            "%s: %s", x->what, curl_multi_strerror(mc));
    }
    if (rc != LB_OK) {
        release(c, x, 0);
        return res->code = rc;
    }
    *out = x;
    return LB_OK;
}

/* Record the outcome of x and release it. */
static void finish(lb_http_client *c, xfer *x, CURLcode cc) {
    lb_http_result *res = x->res;
    /* An empty 2xx body still creates (truncates) the output file. */
    if (cc == CURLE_OK && !x->abort_code && !x->sink_decided) decide_sink(x);
    if (cc == CURLE_OK && !x->abort_code) {
        lb_http_response *r = &res->resp;
        size_t blen = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
        if (x->body.data || x->divert) {
            r->body = lb_buf_detach(&x->body, &blen);
            if (!r->body) {
                res->code = lb_err_set(res->err, LB_ENOMEM, "%s: out of memory", x->what);
                release(c, x, 1);
                return;
            }
            r->body_len = blen;
        }
        r->headers = x->hdr.h;
        r->nheaders = x->hdr.n;
        memset(&x->hdr, 0, sizeof x->hdr);
        r->bytes_in = x->bytes_in;
        r->seconds = mono() - x->t_start;
        res->code = LB_OK;
    } else if (x->abort_code) {
        res->code = lb_err_set(res->err, x->abort_code, "%s: %s", x->what, x->abort_msg);
    } else if (cc == CURLE_SEND_FAIL_REWIND && x->req->body_kind == LB_HTTP_BODY_READER) {
        /* curl wanted to resend on a new connection; on_seek said no */
        res->code = lb_err_set(res->err, LB_ECONNECT, "%s: the connection closed before the answer "
                               "(a streamed request body is never sent twice)", x->what);
    } else {
        res->code = lb_err_set(res->err, map_curl(cc), "%s: %s", x->what,
                               x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc));
    }
    release(c, x, 1);
}

/* Stop x now (it is in the multi) with code/msg. */
static void abort_now(lb_http_client *c, xfer *x, int code, const char *msg) {
    set_abort(x, code, msg);
    finish(c, x, CURLE_ABORTED_BY_CALLBACK);
}

/* Abort every transfer in flight with code/msg, telling the pump. */
static void abort_all(lb_http_client *c, const lb_http_pump *p, xfer **act, int *nact,
                      int code, const char *msg) {
    int j;
    for (j = 0; j < *nact; j++) {
        xfer *x = act[j];
        const lb_http_request *req = x->req;
        lb_http_result *res = x->res;
        abort_now(c, x, code, msg);
        p->done(p->ud, req, res);
    }
    *nact = 0;
}

/* Drive the pump's requests through the multi handle; see
 * lb_http_perform_pump. */
static int pump_run(lb_http_client *c, const lb_http_pump *p) {
    int nact = 0, j, rc = LB_OK, ended = 0;
    xfer **act = lb_calloc((size_t)c->max_concurrency, sizeof *act);
    if (!act) return LB_ENOMEM;
    for (;;) {
        int running, waiting = 0;
        CURLMsg *m;
        double now;
        if (lb_intr_pending()) {
            abort_all(c, p, act, &nact, LB_ECANCELED, "interrupted");
            rc = LB_ECANCELED;
            break;
        }
        if (p->tick && (rc = p->tick(p->ud)) != LB_OK) {
            abort_all(c, p, act, &nact, LB_ECANCELED, "stopped");
            break;
        }
        while (!ended && nact < c->max_concurrency) {
            const lb_http_request *req = NULL;
            lb_http_result *res = NULL;
            xfer *x;
            int r = p->next(p->ud, &req, &res);
            if (r == LB_HTTP_PUMP_WAIT) { waiting = 1; break; }
            if (r == LB_HTTP_PUMP_END) { ended = 1; break; }
            if (r != LB_OK) { rc = r; break; }
            if (start(c, req, res, &x) == LB_OK) {
                act[nact++] = x;
            } else if ((r = p->done(p->ud, req, res)) != LB_OK) {
                rc = r;
                break;
            }
        }
        if (rc != LB_OK) {
            abort_all(c, p, act, &nact, LB_ECANCELED, "stopped");
            break;
        }
        if (!nact) {
            if (ended) break;
            if (waiting) curl_multi_poll(c->multi, NULL, 0, 10, NULL);
            continue;
        }
        curl_multi_perform(c->multi, &running);
        while ((m = curl_multi_info_read(c->multi, &running))) {
            xfer *x = NULL;
            const lb_http_request *req;
            lb_http_result *res;
            if (m->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            for (j = 0; j < nact; j++)
                if (act[j] == x) { act[j] = act[--nact]; break; }
            req = x->req;
            res = x->res;
            finish(c, x, m->data.result);
            if (rc == LB_OK) rc = p->done(p->ud, req, res);
            else p->done(p->ud, req, res);
        }
        if (rc != LB_OK) {
            abort_all(c, p, act, &nact, LB_ECANCELED, "stopped");
            break;
        }
        now = mono();
        for (j = 0; j < nact; j++) {
            xfer *x = act[j];
            const lb_http_request *r = x->req;
            lb_http_result *res = x->res;
            char msg[LB_ERR_LEN];
            int d;
            if (r->cancel && __atomic_load_n(r->cancel, __ATOMIC_RELAXED)) {
                abort_now(c, x, LB_ECANCELED, "cancelled");
            } else if (x->read_timeout > 0 && x->connected && now - x->t_last > x->read_timeout) {
                snprintf(msg, sizeof msg, "no data for %.1f s (read timeout)", x->read_timeout);
                abort_now(c, x, LB_ETIMEDOUT, msg);
            } else {
                continue;
            }
            act[j--] = act[--nact];
            d = p->done(p->ud, r, res);
            if (rc == LB_OK) rc = d;
        }
        if (rc != LB_OK) {
            abort_all(c, p, act, &nact, LB_ECANCELED, "stopped");
            break;
        }
        if (nact) curl_multi_poll(c->multi, NULL, 0, POLL_MS, NULL);
    }
    lb_free(act);
    return rc;
}

/* The pump behind lb_http_perform_all: an array, in order. */
typedef struct array_pump {
    const lb_http_request *reqs;
    lb_http_result *results;
    size_t n, next;
} array_pump;

static int array_next(void *ud, const lb_http_request **req, lb_http_result **res) {
    array_pump *a = ud;
    if (a->next >= a->n) return LB_HTTP_PUMP_END;
    *req = &a->reqs[a->next];
    *res = &a->results[a->next];
    a->next++;
    return LB_OK;
}

static int array_done(void *ud, const lb_http_request *req, lb_http_result *res) {
    (void)ud; (void)req; (void)res;
    return LB_OK;
}

/* Drive reqs[0..n) through the multi handle; see lb_http_perform_all. */
static int run(lb_http_client *c, const lb_http_request *reqs, size_t n, lb_http_result *results) {
    array_pump a = { reqs, results, n, 0 };
    lb_http_pump p = { array_next, array_done, NULL, &a };
    size_t i;
    int rc = pump_run(c, &p);
    if (rc == LB_ENOMEM && a.next == 0) {
        for (i = 0; i < n; i++) {
            memset(&results[i], 0, sizeof results[i]);
            results[i].code = lb_err_set(results[i].err, LB_ENOMEM, "http request: out of memory");
        }
        return LB_ENOMEM;
    }
    for (i = a.next; i < n; i++) {  /* never started: interrupted */
        char what[WHAT_LEN];
        describe(what, sizeof what, reqs[i].method ? reqs[i].method : "GET",
                 reqs[i].url ? reqs[i].url : "");
        memset(&results[i], 0, sizeof results[i]);
        results[i].code = lb_err_set(results[i].err, LB_ECANCELED, "%s: interrupted", what);
    }
    return rc;
}

int lb_http_perform_pump(lb_http_client *c, const lb_http_pump *p) {
    int rc;
    if (!c || !p || !p->next || !p->done || c->busy) return LB_EINVAL;
    c->busy = 1;
    rc = pump_run(c, p);
    c->busy = 0;
    return rc;
}

int lb_http_perform_all(lb_http_client *c, const lb_http_request *reqs, size_t n,
                        lb_http_result *results) {
    int rc;
    if (c->busy) {
        size_t i;
        for (i = 0; i < n; i++) {
            memset(&results[i], 0, sizeof results[i]);
            results[i].code = lb_err_set(results[i].err, LB_EINVAL,
                                         "http client is busy (called from its own callback)");
        }
        return LB_EINVAL;
    }
    c->busy = 1;
    rc = run(c, reqs, n, results);
    c->busy = 0;
    return rc;
}

int lb_http_perform(lb_http_client *c, const lb_http_request *req,
                    lb_http_response *resp, char *err) {
    lb_http_client *own = NULL;
    lb_http_result res;
    int rc;
    memset(resp, 0, sizeof *resp);
    if (!c) {
        if ((rc = lb_http_client_open(NULL, &own, err)) != LB_OK) return rc;
        c = own;
    }
    lb_http_perform_all(c, req, 1, &res);
    lb_http_client_free(own);
    if (res.code != LB_OK) return lb_err_set(err, res.code, "%s", res.err);
    *resp = res.resp;
    return LB_OK;
}
