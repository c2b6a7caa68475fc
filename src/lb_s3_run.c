/* lb_s3_run.c -- the request engine shared by uploads (lb_s3.c) and
 * downloads (lb_s3_get.c): the transfer state (s3x), signing a slot's
 * request, judging an answer (done, retry alone after a backoff, or fail),
 * and s3_run, which feeds a phase's parts to an lb_http pump through at
 * most nslots slots and reports progress. */
#define _GNU_SOURCE
#include "lb_s3_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_intr.h"
#include "lb_xml.h"

#define PROGRESS_EVERY 0.1          /* seconds between progress calls */
#define BACKOFF_BASE 0.1            /* first retry after ~0.1 s ... */
#define BACKOFF_CAP 5.0             /* ... doubling up to 5 s */

/* ---- the transfer ------------------------------------------------------- */

int s3_fail(s3x *x, int code, const char *fmt, ...) {
    char what[LB_ERR_LEN];
    const char *op = x->ph ? x->ph->op : "S3", *t = x->target ? x->target : "";
    size_t tl = strlen(t), room;
    int keep;
    va_list ap;
    if (x->rc) return code;         /* the first failure is the story */
    x->rc = code;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* A long key must not push the reason (with the S3 error code) out of
     * the LB_ERR_LEN message: the target gives way, its middle cut to "...". */
    room = LB_ERR_LEN - 1 - strlen(op) - 3;
    room = room > strlen(what) + 40 ? room - strlen(what) : 40;
    if (tl <= room) {
        lb_err_set(x->err, code, "%s %s: %s", op, t, what);
    } else {
        keep = (int)(room - 3) / 2;
        lb_err_set(x->err, code, "%s %.*s...%s: %s", op, keep, t, t + tl - ((room - 3) - (size_t)keep), what);
    }
    return code;
}

void s3_outcome_save(s3x *x, s3_outcome *o) {
    o->rc = x->rc;
    s3_copy_text(o->err, sizeof o->err, x->err);
    memcpy(o->code, x->res->code, sizeof o->code);
    x->rc = 0;
}

void s3_outcome_restore(s3x *x, const s3_outcome *o) {
    x->rc = o->rc;
    if (x->err) snprintf(x->err, LB_ERR_LEN, "%s", o->err);
    memcpy(x->res->code, o->code, sizeof o->code);
}

int s3_concurrency(const lb_s3_opts *o) {
    int n = o->concurrency > 0 ? o->concurrency : LB_S3_ADAPT_MAX;
    return n > S3_MAX_CONCURRENCY ? S3_MAX_CONCURRENCY : n;
}

int s3_http_client(const lb_s3_opts *o, lb_http_client **out, char *err) {
    lb_http_client_opts co = { 0, 0 };
    co.max_concurrency = s3_concurrency(o);
    co.max_connections = co.max_concurrency + 2;
    return lb_http_client_open(&co, out, err);
}

int s3x_init(s3x *x, const lb_s3_opts *o, lb_s3_result *res, char *err) {
    lb_buf t = { 0 };
    size_t i;
    memset(x, 0, sizeof *x);
    memset(res, 0, sizeof *res);
    x->o = o;
    x->res = res;
    x->err = err;
    x->fd = -1;
    if (err) err[0] = '\0';
    if (!o->endpoint || !o->bucket || !*o->bucket || !o->key || !*o->key || !o->access_key
        || !o->secret_key)
        return lb_err_set(err, LB_EINVAL, "s3: endpoint, bucket, key and credentials are required");
    if (!lb_s3_bucket_ok(o->bucket))       /* before it goes into any URL */
        return lb_err_set(err, LB_EINVAL, "s3: invalid bucket name '%.80s': S3 bucket names are 3-63 "
                          "characters of a-z, 0-9, '.' and '-', starting and ending with a letter "
                          "or digit", o->bucket);
    x->region = o->region && *o->region ? o->region : "us-east-1";
    x->concurrency = s3_concurrency(o);
    x->adaptive = o->concurrency <= 0;
    lb_s3_adapt_init(&x->adapt, x->concurrency);
    x->max_attempts = o->max_attempts > 0 ? o->max_attempts : LB_S3_DEFAULT_ATTEMPTS;
    x->rnd = (unsigned)getpid() ^ (unsigned)(s3_mono() * 1e6);
    if (lb_buf_printf(&t, "s3://%s/%s", o->bucket, o->key) != LB_OK) goto nomem;
    x->target = lb_buf_detach(&t, NULL);
    if (!x->target) goto nomem;
    x->url = lb_s3_object_url(o->endpoint, o->bucket, o->key, o->virtual_host);
    if (!x->url) {
        if (!strstr(o->endpoint, "://"))
            return lb_err_set(err, LB_EINVAL, "s3: endpoint '%s' lacks a scheme://", o->endpoint);
        goto nomem;
    }
    if (o->nmetadata) {
        x->meta_hdr = lb_calloc(o->nmetadata, sizeof *x->meta_hdr);
        if (!x->meta_hdr) goto nomem;
        for (i = 0; i < o->nmetadata; i++) {
            if (!o->metadata[i].name || !o->metadata[i].value)
                return lb_err_set(err, LB_EINVAL, "s3: metadata entry %zu incomplete", i + 1);
            if (lb_buf_printf(&t, "x-amz-meta-%s", o->metadata[i].name) != LB_OK) goto nomem;
            if (!(x->meta_hdr[i] = lb_buf_detach(&t, NULL))) goto nomem;
        }
    }
    if (o->http) {                  /* borrowed: lb_s3_batch's worker */
        x->http = o->http;
        return LB_OK;
    }
    return s3_http_client(o, &x->http, err);
nomem:
    lb_buf_free(&t);
    return lb_err_set(err, LB_ENOMEM, "s3: out of memory");
}

void s3x_free(s3x *x) {
    size_t i;
    if (!x->o || x->http != x->o->http) lb_http_client_free(x->http);
    lb_free(x->url);
    lb_free(x->target);
    if (x->meta_hdr)
        for (i = 0; i < x->o->nmetadata; i++) lb_free(x->meta_hdr[i]);
    lb_free(x->meta_hdr);
    lb_http_response_free(&x->keep);
    lb_free(x->body);
    for (i = 0; i < (size_t)x->npool; i++) lb_free(x->pool[i]);
    lb_free(x->pool);
    if (x->fd >= 0) close(x->fd);
}

static void slot_clear(s3_slot *s) {
    lb_sigv4_result_free(&s->sig);
    lb_free(s->kv);
    lb_free(s->url);
    lb_http_response_free(&s->res.resp);
    s->kv = NULL;
    s->url = NULL;
    memset(&s->req, 0, sizeof s->req);
    memset(&s->res, 0, sizeof s->res);
    s->now = 0;
    s->why = 0;
    s->why_msg[0] = '\0';
}

int s3_progress_cb(void *ud, int64_t dn, int64_t dt, int64_t un, int64_t ut) {
    s3_slot *s = ud;
    (void)dn; (void)dt; (void)ut;
    if (s->x->ph && s->x->ph->progress) s->now = un;
    return LB_OK;
}

int s3_sign(s3x *x, s3_slot *s, const char *method, const char *query,
            const lb_sigv4_header *h, size_t nh, const char *payload) {
    const lb_s3_opts *o = x->o;
    lb_sigv4_request sr;
    lb_buf u = { 0 };
    char serr[LB_ERR_LEN];
    size_t i;
    int rc;
    if (lb_buf_printf(&u, "%s%s%s", x->url, query ? "?" : "", query ? query : "") != LB_OK
        || !(s->url = lb_buf_detach(&u, NULL))) {
        lb_buf_free(&u);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    lb_sigv4_request_init(&sr);
    sr.method = method;
    sr.url = s->url;
    sr.headers = h;
    sr.nheaders = nh;
    sr.payload_hash = payload;
    sr.region = x->region;
    sr.service = "s3";
    sr.access_key = o->access_key;
    sr.secret_key = o->secret_key;
    sr.session_token = o->session_token && *o->session_token ? o->session_token : NULL;
    sr.s3 = 1;
    sr.content_sha256_header = 1;
    if (o->time_offset) sr.time = (int64_t)time(NULL) + o->time_offset;
    if ((rc = lb_sigv4_sign(&sr, &s->sig, serr)) != LB_OK) return s3_fail(x, rc, "%s", serr);
    s->kv = lb_malloc(s->sig.nheaders * sizeof *s->kv);
    if (!s->kv) return s3_fail(x, LB_ENOMEM, "out of memory");
    for (i = 0; i < s->sig.nheaders; i++) {
        s->kv[i].name = s->sig.headers[i].name;
        s->kv[i].value = s->sig.headers[i].value;
    }
    s->req.method = method;
    s->req.url = s->url;
    s->req.headers = s->kv;
    s->req.nheaders = s->sig.nheaders;
    s->req.connect_timeout = o->connect_timeout;
    s->req.read_timeout = o->read_timeout;
    s->req.verify_off = o->verify_off;
    s->req.ca_bundle = o->ca_bundle;
    s->req.cancel = o->cancel;
    return LB_OK;
}

/* ---- the pump ------------------------------------------------------------ */

int s3_retryable_code(const char *code) {
    return !strcmp(code, "SlowDown") || !strcmp(code, "InternalError")
        || !strcmp(code, "RequestTimeout") || !strcmp(code, "ServiceUnavailable");
}

/* The outcome of a finished request: LB_OK, or a code with *retry and msg. */
static int judge(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    lb_http_result *r = &s->res;
    char code[LB_S3_CODE_LEN], smsg[160];
    const char *e;
    long st;
    *retry = 0;
    if (s->why) {                   /* the sink failed on its own */
        snprintf(msg, LB_ERR_LEN, "%s", s->why_msg);
        return s->why;
    }
    if (r->code != LB_OK) {
        e = strstr(r->err, ": ");   /* drop lb_http's "METHOD url" */
        snprintf(msg, LB_ERR_LEN, "%s", e ? e + 2 : r->err);
        *retry = r->code == LB_ECONNECT || r->code == LB_ETIMEDOUT;
        return r->code;
    }
    st = r->resp.status;
    if (st >= 200 && st <= 299) return x->ph->ok(x, s, p, retry, msg);
    if (st == 404 && x->ph->ok404) return LB_OK;
    if (lb_s3_parse_error(r->resp.body, r->resp.body_len, code, sizeof code, smsg, sizeof smsg)
            != LB_OK || !code[0])
        snprintf(code, sizeof code, "HTTP_%ld", st);
    snprintf(x->res->code, sizeof x->res->code, "%s", code);
    if (smsg[0]) snprintf(msg, LB_ERR_LEN, "HTTP %ld %s: %s", st, code, smsg);
    else snprintf(msg, LB_ERR_LEN, "HTTP %ld %s", st, code);
    *retry = st >= 500 || st == 429 || s3_retryable_code(code);
    return LB_ESERVICE;
}

static double backoff(s3x *x, int attempts) {
    double d = BACKOFF_BASE;
    int i;
    for (i = 1; i < attempts && d < BACKOFF_CAP; i++) d *= 2;
    if (d > BACKOFF_CAP) d = BACKOFF_CAP;
    x->rnd = x->rnd * 1103515245u + 12345u;
    return d * (0.5 + 0.5 * (double)((x->rnd >> 8) & 0xffff) / 65535.0);
}

static s3_slot *slot_of(const lb_http_request *req) {
    return (s3_slot *)(void *)((char *)req - offsetof(s3_slot, req));
}

static int p_next(void *ud, const lb_http_request **req, lb_http_result **res) {
    s3x *x = ud;
    s3_slot *s = NULL;
    s3_part *p = NULL;
    double now = 0;
    size_t i, idx = 0;
    int j, rc;
    int busy = 0;
    for (j = 0; j < x->nslots; j++) {
        if (x->slots[j].busy) busy++;
        else if (!s) s = &x->slots[j];
    }
    if (!s || (x->adaptive && x->ph->progress && busy >= x->adapt.cur)) return LB_HTTP_PUMP_WAIT;
    if (x->nwait) {                 /* a retry whose time has come */
        now = s3_mono();
        for (i = 0; i < x->nparts; i++)
            if (x->parts[i].state == P_WAIT && x->parts[i].not_before <= now) {
                p = &x->parts[i];
                idx = i;
                x->nwait--;
                break;
            }
    }
    if (!p && x->next_new >= x->nparts && x->ph->more && !x->stream_end) {
        rc = x->ph->more(x);
        if (rc == LB_HTTP_PUMP_WAIT) return rc;
        if (rc != LB_OK && rc != LB_HTTP_PUMP_END) return rc;
    }
    if (!p && x->next_new < x->nparts) {
        idx = x->next_new++;
        p = &x->parts[idx];
    }
    if (!p)
        return x->ndone == x->nparts && (!x->ph->more || x->stream_end) ? LB_HTTP_PUMP_END
                                                                         : LB_HTTP_PUMP_WAIT;
    p->attempts++;
    p->state = P_RUN;
    s->busy = 1;
    s->part = idx;
    slot_clear(s);
    if ((rc = x->ph->build(x, s, p)) != LB_OK) {
        s->busy = 0;
        slot_clear(s);
        return rc;
    }
    *req = &s->req;
    *res = &s->res;
    return LB_OK;
}

static int p_done(void *ud, const lb_http_request *req, lb_http_result *res) {
    s3x *x = ud;
    s3_slot *s = slot_of(req);
    s3_part *p = &x->parts[s->part];
    char msg[LB_ERR_LEN];
    int retry = 0, rc;
    (void)res;
    msg[0] = '\0';
    rc = judge(x, s, p, &retry, msg);
    if (rc == LB_OK) {
        p->state = P_DONE;
        x->ndone++;
        if (x->ph->progress) x->done_bytes += p->len;
        if (p->buf) {               /* stream part: its buffer is free again */
            x->pool[x->npool++] = p->buf;
            p->buf = NULL;
        }
    } else if (retry && !x->rc && p->attempts < x->max_attempts && !lb_intr_pending()) {
        p->state = P_WAIT;
        p->not_before = s3_mono() + backoff(x, p->attempts);
        x->nwait++;
        rc = LB_OK;
    } else {
        p->state = P_WAIT;
        if (x->nparts > 1 && !x->rc)
            s3_fail(x, rc, "part %zu: %s%s", s->part + 1, msg,
                    p->attempts > 1 ? " (after retries)" : "");
        else
            s3_fail(x, rc, "%s%s", msg, p->attempts > 1 ? " (after retries)" : "");
    }
    s->busy = 0;
    slot_clear(s);
    return rc;
}

static void report(s3x *x, int64_t done) {
    if (done < x->reported) done = x->reported;    /* never backwards */
    x->reported = done;
    x->last_prog = s3_mono();
}

static int p_tick(void *ud) {
    s3x *x = ud;
    const lb_s3_opts *o = x->o;
    int64_t done;
    int j, rc;
    if (o->cancel && __atomic_load_n(o->cancel, __ATOMIC_RELAXED))
        return s3_fail(x, LB_ECANCELED, "cancelled");
    if (!x->ph->progress) return LB_OK;
    done = x->done_bytes;
    for (j = 0; j < x->nslots; j++)
        if (x->slots[j].busy) done += x->slots[j].now;
    /* Judge the rate only while parts queue for a slot (not in the tail). */
    if (x->adaptive && x->next_new < x->nparts) lb_s3_adapt_step(&x->adapt, s3_mono(), done);
    if (!o->on_progress || s3_mono() - x->last_prog < PROGRESS_EVERY) return LB_OK;
    if (x->total >= 0 && done > x->total) done = x->total;
    report(x, done);
    rc = o->on_progress(o->progress_ud, x->reported, x->total);
    if (rc == LB_ECANCELED) return s3_fail(x, rc, "cancelled by the progress callback");
    if (rc != LB_OK) return s3_fail(x, LB_ECALLBACK, "the progress callback failed");
    return LB_OK;
}

int s3_run(s3x *x, const s3_phase *ph, s3_part *parts, size_t n, int nslots) {
    lb_http_pump pump = { p_next, p_done, p_tick, x };
    int j, rc;
    x->ph = ph;
    x->parts = parts;
    x->nparts = n;
    x->next_new = x->ndone = x->nwait = 0;
    x->nslots = nslots;
    lb_http_response_free(&x->keep);
    x->slots = lb_calloc((size_t)nslots, sizeof *x->slots);
    if (!x->slots) return s3_fail(x, LB_ENOMEM, "out of memory");
    for (j = 0; j < nslots; j++) x->slots[j].x = x;
    rc = LB_OK;
    if (x->md_type)
        for (j = 0; j < nslots && rc == LB_OK; j++)
            if (!(x->slots[j].md = EVP_MD_CTX_new())) rc = s3_fail(x, LB_ENOMEM, "out of memory");
    if (rc == LB_OK) rc = lb_http_perform_pump(x->http, &pump);
    if (ph->progress) {             /* the most requests this transfer let fly */
        int used = x->adaptive && x->adapt.peak < nslots ? x->adapt.peak : nslots;
        if (used > x->res->concurrency) x->res->concurrency = used;
    }
    if (rc == LB_ECANCELED) s3_fail(x, rc, lb_intr_pending() ? "interrupted" : "cancelled");
    else if (rc != LB_OK) s3_fail(x, rc, "%s", lb_err_name(rc));
    for (j = 0; j < nslots; j++) {
        slot_clear(&x->slots[j]);
        EVP_MD_CTX_free(x->slots[j].md);
        s3_chunked_free(&x->slots[j].ck);
    }
    lb_free(x->slots);
    x->slots = NULL;
    return x->rc ? x->rc : rc;
}
