/* lb_s3_batch.c -- many objects at once (lb_s3_batch, lb_s3.h): worker
 * threads, each with one lb_http client (kept-alive connections) that runs
 * whole transfers (lb_s3_upload / lb_s3_download) one after another, taking
 * the next job from a shared counter; the caller's thread only reports
 * progress and waits.  A transfer keeps every guarantee of its own
 * (retries, temp + rename, abort on failure): the batch adds none. */
#define _GNU_SOURCE
#include "lb_s3.h"
#include "lb_s3_int.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "lb_alloc.h"
#include "lb_http.h"
#include "lb_intr.h"

#define MAX_WORKERS 64
#define TICK_NS 100000000L          /* progress every 100 ms */

typedef struct batch {
    const lb_s3_opts *base;
    int download;
    lb_s3_job *jobs;
    size_t n, next, finished;       /* next, finished: __atomic */
    int running;                    /* workers alive (under mu) */
    volatile int cancel;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} batch;

/* What a worker's transfer reports to. */
typedef struct wjob {
    batch *b;
    lb_s3_job *j;
} wjob;

/* A transfer's progress callback: its bytes so far, for the caller's sum;
 * a stopped batch cancels it here rather than through opts.cancel, so it
 * still cleans up (AbortMultipartUpload runs; a CreateMultipartUpload in
 * flight gets its answer instead of leaving an upload nobody knows of). */
static int job_progress(void *ud, int64_t done, int64_t total) {
    wjob *w = ud;
    (void)total;
    __atomic_store_n(&w->j->done, done, __ATOMIC_RELAXED);
    return __atomic_load_n(&w->b->cancel, __ATOMIC_RELAXED) ? LB_ECANCELED : LB_OK;
}

static void *worker(void *arg) {
    batch *b = arg;
    lb_http_client *http;
    char err[LB_ERR_LEN];
    int hrc;
    wjob w;
    size_t i;
    w.b = b;
    hrc = s3_http_client(b->base, &http, err);
    while ((i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED)) < b->n) {
        lb_s3_job *j = &b->jobs[i];
        lb_s3_opts o = *b->base;
        o.file = j->file;
        o.key = j->key;
        o.http = http;
        w.j = j;
        o.on_progress = job_progress;
        o.progress_ud = &w;
        o.cancel = NULL;
        if (!http) {
            j->rc = lb_err_set(j->err, hrc, "%s", err);
        } else if (__atomic_load_n(&b->cancel, __ATOMIC_RELAXED) || lb_intr_pending()) {
            j->rc = lb_err_set(j->err, LB_ECANCELED, "%s s3://%s/%s: cancelled",
                               b->download ? "GetObject" : "PutObject", o.bucket, j->key);
        } else {
            j->rc = b->download ? lb_s3_download(&o, &j->res, j->err) : lb_s3_upload(&o, &j->res, j->err);
            if (j->rc == LB_OK) __atomic_store_n(&j->done, j->res.bytes, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&b->finished, 1, __ATOMIC_RELAXED);
    }
    lb_http_client_free(http);
    pthread_mutex_lock(&b->mu);
    b->running--;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static int64_t bytes_done(const batch *b) {
    int64_t s = 0;
    size_t i;
    for (i = 0; i < b->n; i++) s += __atomic_load_n(&b->jobs[i].done, __ATOMIC_RELAXED);
    return s;
}

int lb_s3_batch(const lb_s3_opts *base, int download, lb_s3_job *jobs, size_t n, int workers,
                lb_s3_batch_progress_fn progress, void *ud, char *err) {
    batch b;
    pthread_t *t;
    pthread_condattr_t ca;
    int started = 0, stopped = 0, rc = LB_OK, k;
    size_t i;
    if (err) err[0] = '\0';
    if (!base || (!jobs && n) || workers < 1 || workers > MAX_WORKERS || base->reader || base->on_progress)
        return lb_err_set(err, LB_EINVAL, "s3 batch: 1..64 workers, no reader or progress callback");
    for (i = 0; i < n; i++) {
        jobs[i].rc = LB_OK;
        jobs[i].err[0] = '\0';
        jobs[i].done = 0;
        memset(&jobs[i].res, 0, sizeof jobs[i].res);
    }
    if (n == 0) return LB_OK;
    if ((size_t)workers > n) workers = (int)n;
    if (!(t = lb_calloc((size_t)workers, sizeof *t))) return lb_err_set(err, LB_ENOMEM, "s3 batch: out of memory");
    memset(&b, 0, sizeof b);
    b.base = base;
    b.download = download;
    b.jobs = jobs;
    b.n = n;
    pthread_mutex_init(&b.mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&b.mu);
    for (k = 0; k < workers; k++) {
        if (pthread_create(&t[k], NULL, worker, &b) != 0) break;
        started++;
        b.running++;
    }
    pthread_mutex_unlock(&b.mu);
    if (started == 0) {                 /* no thread at all: this one works */
        b.running = 1;
        worker(&b);
    }
    pthread_mutex_lock(&b.mu);
    while (b.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += TICK_NS;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&b.cv, &b.mu, &ts);
        if (b.running == 0) break;
        pthread_mutex_unlock(&b.mu);
        if (!stopped && ((base->cancel && __atomic_load_n(base->cancel, __ATOMIC_RELAXED))
                         || lb_intr_pending())) {
            __atomic_store_n(&b.cancel, 1, __ATOMIC_RELAXED);
            stopped = 1;
            rc = LB_ECANCELED;
        }
        if (!stopped && progress) {
            int prc = progress(ud, bytes_done(&b), __atomic_load_n(&b.finished, __ATOMIC_RELAXED), n);
            if (prc != LB_OK) {
                __atomic_store_n(&b.cancel, 1, __ATOMIC_RELAXED);
                stopped = 1;
                rc = prc;
            }
        }
        pthread_mutex_lock(&b.mu);
    }
    pthread_mutex_unlock(&b.mu);
    for (k = 0; k < started; k++) pthread_join(t[k], NULL);
    lb_free(t);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    if (!stopped && progress) {
        int prc = progress(ud, bytes_done(&b), b.finished, n);
        if (prc != LB_OK) rc = prc;
    }
    if (rc == LB_OK && lb_intr_pending()) rc = LB_ECANCELED;
    if (rc != LB_OK) lb_err_set(err, rc, "s3 batch: %s", rc == LB_ECANCELED ? "cancelled" : "stopped by the progress callback");
    return rc;
}
