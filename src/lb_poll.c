/* lb_poll.c -- job table, phase-aware schedule and token bucket (lb_poll.h).
 *
 * Jobs are individually allocated records found through an open-addressing
 * hash table (linear probing, backward-shift deletion, load <= 1/2).  The
 * non-terminal ones sit in a binary min-heap on (next_due, add order), each
 * record knowing its heap slot so a reschedule is one sift.  A scratch array
 * as large as the table is kept by lb_poll_add, so lb_poll_next_batch never
 * allocates. */
#include "lb_poll.h"

#include <math.h>
#include <string.h>

#include "lb_alloc.h"

#define NOT_IN_HEAP ((size_t)-1)

typedef struct job {
    uint64_t hash;
    uint64_t seq;           /* add order: ties on due go oldest first */
    size_t hpos;            /* slot in the heap, or NOT_IN_HEAP */
    char *status, *reason, *log_stream;
    int has_exit, exit_code;
    int phase;
    double due, interval, changed_at;
    double cap;             /* longest interval for this job, 0 = none */
    long polls, changes;
    char id[];
} job;

struct lb_poll {
    lb_poll_opts o;
    int in_cycle;           /* the last batch was full: its cycle goes on */
    job **slots;            /* hash table, cap a power of two (or 0) */
    size_t cap, njobs;
    job **heap;             /* non-terminal jobs */
    size_t heap_n, heap_cap;
    job **scratch;          /* >= njobs entries, for next_batch */
    size_t scratch_cap;
    uint64_t seq, rng;
    int canceled;
    /* token bucket */
    double rate, tokens, last_refill, last_halving, last_change;
    int refilled;           /* last_refill is set */
    long ok_count;
    lb_poll_stats st;
};

/* ---- helpers ----------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;    /* FNV-1a */
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211ULL; }
    return h;
}

static double next_rand(lb_poll *p) {
    uint64_t z;
    if (p->o.rand) {
        double u = p->o.rand(p->o.rand_ud);
        return (u >= 0 && u < 1) ? u : 0.5;    /* a bad injected value: no jitter */
    }
    z = (p->rng += 0x9E3779B97F4A7C15ULL);     /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double jittered(lb_poll *p, double interval) {
    if (p->o.jitter <= 0) return interval;
    return interval * (1.0 + p->o.jitter * (2.0 * next_rand(p) - 1.0));
}

int lb_poll_is_terminal(const char *status) {
    return status && (strcmp(status, "SUCCEEDED") == 0 || strcmp(status, "FAILED") == 0);
}

static int phase_of(const char *status) {
    if (!status) return LB_POLL_NEW;
    if (lb_poll_is_terminal(status)) return LB_POLL_TERMINAL;
    if (strcmp(status, "RUNNING") == 0) return LB_POLL_RUNNING;
    return LB_POLL_PENDING;     /* SUBMITTED..STARTING, or a status unknown today */
}

static int str_eq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* ---- the heap ---------------------------------------------------------- */

static int before(const job *a, const job *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(lb_poll *p, size_t i, job *j) {
    p->heap[i] = j;
    j->hpos = i;
}

static void sift_up(lb_poll *p, size_t i) {
    job *j = p->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(j, p->heap[parent])) break;
        heap_set(p, i, p->heap[parent]);
        i = parent;
    }
    heap_set(p, i, j);
}

static void sift_down(lb_poll *p, size_t i) {
    job *j = p->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= p->heap_n) break;
        if (c + 1 < p->heap_n && before(p->heap[c + 1], p->heap[c])) c++;
        if (!before(p->heap[c], j)) break;
        heap_set(p, i, p->heap[c]);
        i = c;
    }
    heap_set(p, i, j);
}

/* heap_cap >= njobs is kept by lb_poll_add, so this cannot fail. */
static void heap_push(lb_poll *p, job *j) {
    p->heap[p->heap_n] = j;
    j->hpos = p->heap_n++;
    sift_up(p, j->hpos);
}

static void heap_remove(lb_poll *p, job *j) {
    size_t i = j->hpos;
    job *last;
    if (i == NOT_IN_HEAP) return;
    j->hpos = NOT_IN_HEAP;
    last = p->heap[--p->heap_n];
    if (i == p->heap_n) return;
    heap_set(p, i, last);
    sift_up(p, i);
    sift_down(p, last->hpos);
}

static void heap_fix(lb_poll *p, job *j) {
    sift_up(p, j->hpos);
    sift_down(p, j->hpos);
}

/* ---- the hash table ---------------------------------------------------- */

static size_t find_slot(const lb_poll *p, const char *id, uint64_t h) {
    size_t mask = p->cap - 1, i = (size_t)h & mask;
    while (p->slots[i]) {
        if (p->slots[i]->hash == h && strcmp(p->slots[i]->id, id) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;   /* the empty slot where it would go */
}

static job *find(const lb_poll *p, const char *id) {
    size_t i;
    if (!p->cap || !id) return NULL;
    i = find_slot(p, id, hash_str(id));
    return p->slots[i];
}

static int rehash(lb_poll *p, size_t ncap) {
    job **ns = lb_calloc(ncap, sizeof *ns);
    size_t i;
    if (!ns) return LB_ENOMEM;
    for (i = 0; i < p->cap; i++) {
        job *j = p->slots[i];
        size_t k;
        if (!j) continue;
        k = (size_t)j->hash & (ncap - 1);
        while (ns[k]) k = (k + 1) & (ncap - 1);
        ns[k] = j;
    }
    lb_free(p->slots);
    p->slots = ns;
    p->cap = ncap;
    return LB_OK;
}

/* Backward-shift deletion: no tombstones, probes stay short. */
static void slot_delete(lb_poll *p, size_t i) {
    size_t mask = p->cap - 1, j = i;
    p->slots[i] = NULL;
    for (;;) {
        size_t home;
        j = (j + 1) & mask;
        if (!p->slots[j]) return;
        home = (size_t)p->slots[j]->hash & mask;
        /* move slots[j] into the hole unless its home lies in (i, j] */
        if ((i <= j) ? (i < home && home <= j) : (i < home || home <= j)) continue;
        p->slots[i] = p->slots[j];
        p->slots[j] = NULL;
        i = j;
    }
}

/* Make room for one more job in every array; nothing changes on failure. */
static int reserve(lb_poll *p) {
    size_t need = p->njobs + 1;
    if (need > p->heap_cap) {
        size_t ncap = p->heap_cap ? p->heap_cap * 2 : 16;
        job **nh = lb_realloc(p->heap, ncap * sizeof *nh);
        if (!nh) return LB_ENOMEM;
        p->heap = nh;
        p->heap_cap = ncap;
    }
    if (need > p->scratch_cap) {
        size_t ncap = p->scratch_cap ? p->scratch_cap * 2 : 16;
        job **ns = lb_realloc(p->scratch, ncap * sizeof *ns);
        if (!ns) return LB_ENOMEM;
        p->scratch = ns;
        p->scratch_cap = ncap;
    }
    if (need * 2 > p->cap) return rehash(p, p->cap ? p->cap * 2 : 32);
    return LB_OK;
}

/* ---- life cycle -------------------------------------------------------- */

#define DEFAULT(f, v) do { if (o->f == 0) o->f = (v); } while (0)

static int check_opts(lb_poll_opts *o, char *err) {
    DEFAULT(fast_interval, 2.0);
    DEFAULT(fast_growth, 1.25);
    DEFAULT(fast_max, 10.0);
    DEFAULT(run_interval, 10.0);
    DEFAULT(run_growth, 1.5);
    DEFAULT(max_interval, 60.0);
    DEFAULT(jitter, 0.2);
    DEFAULT(coalesce, 0.5);
    DEFAULT(rate, 20.0);
    DEFAULT(burst, 1.0);
    DEFAULT(min_rate, 0.5);
    DEFAULT(throttle_window, 1.0);
    DEFAULT(recover_factor, 1.1);
    DEFAULT(recover_window, 2.0);
    DEFAULT(recover_count, 5);
    if (!(o->fast_interval > 0 && o->run_interval > 0 && isfinite(o->fast_max) &&
          isfinite(o->max_interval)))
        return lb_err_set(err, LB_EINVAL, "poller: intervals must be positive and finite");
    if (!(o->fast_max >= o->fast_interval && o->max_interval >= o->run_interval))
        return lb_err_set(err, LB_EINVAL, "poller: a cap is below its first interval");
    if (!(o->fast_growth >= 1 && o->run_growth >= 1 && o->recover_factor >= 1))
        return lb_err_set(err, LB_EINVAL, "poller: growth factors must be >= 1");
    if (!(o->jitter < 1))
        return lb_err_set(err, LB_EINVAL, "poller: jitter must be below 1");
    if (!(o->rate > 0 && isfinite(o->rate) && o->min_rate > 0 && o->min_rate <= o->rate &&
          o->burst > 0 && o->throttle_window > 0 && o->recover_window > 0 && o->recover_count > 0))
        return lb_err_set(err, LB_EINVAL, "poller: bad token bucket settings (rate %g, min_rate %g)",
                          o->rate, o->min_rate);
    return LB_OK;
}

static double capacity(const lb_poll *p) {
    double c = p->rate * p->o.burst;
    return c < 1 ? 1 : c;
}

lb_poll *lb_poll_new(const lb_poll_opts *opts, int *code, char *err) {
    lb_poll *p;
    lb_poll_opts o;
    int rc;
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    rc = check_opts(&o, err);
    if (rc != LB_OK) {
        if (code) *code = rc;
        return NULL;
    }
    p = lb_calloc(1, sizeof *p);
    if (!p) {
        if (code) *code = lb_err_set(err, LB_ENOMEM, "poller: out of memory");
        return NULL;
    }
    p->o = o;
    p->rng = o.seed ? o.seed : 0x5DEECE66DULL;
    p->rate = o.rate;
    p->tokens = capacity(p);
    p->last_halving = -INFINITY;
    p->last_change = -INFINITY;
    if (code) *code = LB_OK;
    return p;
}

static void job_free(job *j) {
    lb_free(j->status);
    lb_free(j->reason);
    lb_free(j->log_stream);
    lb_free(j);
}

void lb_poll_free(lb_poll *p) {
    size_t i;
    if (!p) return;
    for (i = 0; i < p->cap; i++)
        if (p->slots[i]) job_free(p->slots[i]);
    lb_free(p->slots);
    lb_free(p->heap);
    lb_free(p->scratch);
    lb_free(p);
}

/* ---- the job table ----------------------------------------------------- */

int lb_poll_add(lb_poll *p, const char *id, double due, int *added) {
    size_t len, i;
    uint64_t h;
    job *j;
    if (added) *added = 0;
    if (!id || !*id) return LB_EINVAL;
    if (find(p, id)) return LB_OK;
    if (reserve(p) != LB_OK) return LB_ENOMEM;
    len = strlen(id);
    j = lb_calloc(1, sizeof *j + len + 1);
    if (!j) return LB_ENOMEM;
    memcpy(j->id, id, len + 1);
    h = hash_str(id);
    j->hash = h;
    j->seq = p->seq++;
    j->phase = LB_POLL_NEW;
    j->due = due;
    j->interval = p->o.fast_interval;
    j->changed_at = due;
    i = find_slot(p, id, h);
    p->slots[i] = j;
    p->njobs++;
    heap_push(p, j);
    if (added) *added = 1;
    return LB_OK;
}

int lb_poll_remove(lb_poll *p, const char *id) {
    size_t i;
    job *j;
    if (!p->cap || !id) return 0;
    i = find_slot(p, id, hash_str(id));
    j = p->slots[i];
    if (!j) return 0;
    heap_remove(p, j);
    slot_delete(p, i);
    p->njobs--;
    job_free(j);
    return 1;
}

size_t lb_poll_next_batch(lb_poll *p, double now, const char **ids, size_t max) {
    size_t n = 0, aside = 0, ndue = 0, i;
    double reach = 0;       /* no job further than this can be pulled in */
    if (p->canceled || max == 0) return 0;
    if (p->o.coalesce > 0) {
        double m = p->o.max_interval > p->o.fast_max ? p->o.max_interval : p->o.fast_max;
        reach = p->o.coalesce * m * (1 + (p->o.jitter > 0 ? p->o.jitter : 0));
    }
    /* scratch[0..n) = chosen, scratch[cap - aside..cap) = looked at, not due */
    while (p->heap_n > 0 && n < max) {
        job *j = p->heap[0];
        if (j->due <= now) {
            ndue++;
        } else if ((ndue == 0 && !p->in_cycle) || j->due > now + reach) {
            break;
        }
        heap_remove(p, j);
        if (j->due <= now || j->due - now <= p->o.coalesce * j->interval) {
            if (j->due > now) p->st.early++;
            p->scratch[n++] = j;
        } else {
            p->scratch[p->scratch_cap - ++aside] = j;
        }
    }
    for (i = 0; i < aside; i++) heap_push(p, p->scratch[p->scratch_cap - 1 - i]);
    for (i = 0; i < n; i++) {
        job *j = p->scratch[i];
        j->due = now + jittered(p, j->interval);
        j->polls++;
        heap_push(p, j);
        ids[i] = j->id;
    }
    p->in_cycle = n == max;     /* a full batch: the next call may go on filling */
    if (n) {
        p->st.batches++;
        p->st.ids_polled += (long)n;
    }
    return n;
}

/* Compare the known string cur with the reported s; if they differ and s
 * is not NULL, *fresh receives a copy of s (else NULL).  LB_ENOMEM on
 * failure. */
static int prepare(const char *cur, const char *s, char **fresh, int *differs) {
    *fresh = NULL;
    *differs = !str_eq(cur, s);
    if (!*differs || !s) return LB_OK;
    *fresh = lb_strdup(s);
    return *fresh ? LB_OK : LB_ENOMEM;
}

int lb_poll_update(lb_poll *p, double now, const char *id, const lb_poll_state *st,
                   int *changed) {
    job *j = find(p, id);
    char *ns = NULL, *nr = NULL, *nl = NULL;
    int ds, dr, dl, dx, phase;
    const char *reason, *stream;
    if (changed) *changed = 0;
    if (!j || !st || !st->status || !*st->status) return LB_EINVAL;
    reason = (st->reason && *st->reason) ? st->reason : NULL;   /* "" = none */
    stream = (st->log_stream && *st->log_stream) ? st->log_stream : NULL;
    if (prepare(j->status, st->status, &ns, &ds) != LB_OK ||
        prepare(j->reason, reason, &nr, &dr) != LB_OK ||
        prepare(j->log_stream, stream, &nl, &dl) != LB_OK) {
        lb_free(ns);
        lb_free(nr);
        lb_free(nl);
        return LB_ENOMEM;
    }
    dx = (st->has_exit != 0) != (j->has_exit != 0) || (st->has_exit && st->exit_code != j->exit_code);
    if (ds) { lb_free(j->status); j->status = ns; }
    if (dr) { lb_free(j->reason); j->reason = nr; }
    if (dl) { lb_free(j->log_stream); j->log_stream = nl; }
    j->has_exit = st->has_exit != 0;
    j->exit_code = st->has_exit ? st->exit_code : 0;
    p->st.updates++;
    if (ds || dr || dl || dx) {
        p->st.changes++;
        j->changes++;
        j->changed_at = now;
        if (changed) *changed = 1;
    }
    phase = phase_of(j->status);
    if (ds) {                   /* a new status starts its phase afresh */
        j->interval = phase == LB_POLL_RUNNING ? p->o.run_interval : p->o.fast_interval;
    } else if (phase == LB_POLL_RUNNING) {
        j->interval *= p->o.run_growth;
        if (j->interval > p->o.max_interval) j->interval = p->o.max_interval;
    } else if (phase == LB_POLL_PENDING) {
        j->interval *= p->o.fast_growth;
        if (j->interval > p->o.fast_max) j->interval = p->o.fast_max;
    }
    if (j->cap > 0 && j->interval > j->cap) j->interval = j->cap;
    j->phase = phase;
    if (phase == LB_POLL_TERMINAL) {
        heap_remove(p, j);
        return LB_OK;
    }
    j->due = now + jittered(p, j->interval);
    if (j->hpos == NOT_IN_HEAP) heap_push(p, j);   /* back from terminal (never seen) */
    else heap_fix(p, j);
    return LB_OK;
}

int lb_poll_reschedule(lb_poll *p, const char *id, double due) {
    job *j = find(p, id);
    if (!j || j->hpos == NOT_IN_HEAP) return 0;
    j->due = due;
    heap_fix(p, j);
    return 1;
}

int lb_poll_cap(lb_poll *p, const char *id, double cap, double now) {
    job *j = find(p, id);
    if (!j || cap < 0) return 0;
    j->cap = cap;
    if (cap == 0 || j->interval <= cap) return 1;
    j->interval = cap;
    if (j->hpos != NOT_IN_HEAP && j->due > now + cap) {
        j->due = now + jittered(p, cap);
        heap_fix(p, j);
    }
    return 1;
}

int lb_poll_get(const lb_poll *p, const char *id, lb_poll_info *out) {
    const job *j = find(p, id);
    if (!j) return 0;
    out->id = j->id;
    out->status = j->status;
    out->reason = j->reason;
    out->has_exit = j->has_exit;
    out->exit_code = j->exit_code;
    out->log_stream = j->log_stream;
    out->phase = j->phase;
    out->next_due = j->due;
    out->interval = j->interval;
    out->cap = j->cap;
    out->changed_at = j->changed_at;
    out->polls = j->polls;
    out->changes = j->changes;
    return 1;
}

int lb_poll_next_wakeup(const lb_poll *p, double *at) {
    if (p->canceled || p->heap_n == 0) return 0;
    *at = p->heap[0]->due;
    return 1;
}

/* ---- the token bucket -------------------------------------------------- */

static void refill(lb_poll *p, double now) {
    double cap = capacity(p);
    if (!p->refilled) {
        p->refilled = 1;
        p->last_refill = now;
        return;
    }
    if (now > p->last_refill) {
        if (p->tokens < cap) {
            p->tokens += (now - p->last_refill) * p->rate;
            if (p->tokens > cap) p->tokens = cap;
        }
        p->last_refill = now;
    }
}

double lb_poll_acquire(lb_poll *p, double now, double cost) {
    double need;
    p->st.acquires++;
    if (!(cost > 0)) return 0;
    refill(p, now);
    need = cost < capacity(p) ? cost : capacity(p);
    if (p->tokens >= need - 1e-9) {    /* rounding must not leave a 1e-16 s wait */
        p->tokens -= cost;
        return 0;
    }
    p->st.waits++;
    return (need - p->tokens) / p->rate;
}

double lb_poll_throttled(lb_poll *p, double now) {
    refill(p, now);
    p->st.throttles++;
    p->ok_count = 0;
    if (p->tokens > 0) p->tokens = 0;
    if (now - p->last_halving >= p->o.throttle_window) {
        double old = p->rate;
        p->rate /= 2;
        if (p->rate < p->o.min_rate) p->rate = p->o.min_rate;
        p->last_halving = now;
        p->last_change = now;
        if (p->rate < old) p->st.halvings++;
    }
    return p->rate;
}

double lb_poll_ok(lb_poll *p, double now) {
    p->ok_count++;
    if (p->rate < p->o.rate && p->ok_count >= p->o.recover_count &&
        now - p->last_change >= p->o.recover_window) {
        refill(p, now);         /* tokens so far accrue at the old rate */
        p->rate *= p->o.recover_factor;
        if (p->rate > p->o.rate) p->rate = p->o.rate;
        p->last_change = now;
        p->ok_count = 0;
        p->st.recoveries++;
    }
    return p->rate;
}

double lb_poll_rate(const lb_poll *p) { return p->rate; }

void lb_poll_cancel(lb_poll *p) { p->canceled = 1; }

int lb_poll_canceled(const lb_poll *p) { return p->canceled; }

size_t lb_poll_count(const lb_poll *p) { return p->njobs; }

size_t lb_poll_pending(const lb_poll *p) { return p->heap_n; }

void lb_poll_get_stats(const lb_poll *p, lb_poll_stats *out) {
    *out = p->st;
    out->jobs = p->njobs;
    out->pending = p->heap_n;
    out->rate = p->rate;
    out->tokens = p->tokens;
}
