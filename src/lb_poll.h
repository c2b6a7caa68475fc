/* lb_poll.h -- the mechanics of watching many AWS Batch jobs (no I/O, no Lua).
 *
 * One lb_poll holds a table of jobs (id -> last seen status, statusReason,
 * exit code, log stream, phase and next-due time) and a token bucket.  It
 * never reads a clock and never talks to the network: every function takes
 * `now` (seconds, any monotonic origin) and the caller (the Lua policy loop,
 * lua/luabatch/poller.lua) does the DescribeJobs calls and the sleeping.
 * Everything is therefore deterministic and testable from C.
 *
 * The cycle:
 *   n = lb_poll_next_batch(p, now, ids, 100);   ids due now, at most max
 *   ... DescribeJobs(ids) ...
 *   lb_poll_update(p, now, id, &state, &changed) for each job returned;
 *   changed = 1 exactly when status, reason, exit code or log stream moved,
 *   so the caller reports each state change once.
 *   lb_poll_next_wakeup(p, &at) tells when the next job falls due.
 *
 * Scheduling by phase (the intervals of lb_poll_opts):
 *   before RUNNING  fast_interval after a status change, then x fast_growth
 *                   per unchanged poll up to fast_max (a job parked in
 *                   RUNNABLE for an hour is not polled every 2 s forever);
 *   RUNNING         run_interval on entering RUNNING, then x run_growth per
 *                   poll up to max_interval;
 *   SUCCEEDED/FAILED terminal: never returned by next_batch again.
 * Every interval is jittered by a uniform factor in [1 - jitter, 1 + jitter)
 * drawn from the poller's own PRNG (seeded, or an injected function).
 * next_batch returns the due jobs oldest-due first; when fewer than `max`
 * are due, it fills the rest of the batch with jobs due within
 * `coalesce` x their interval (a DescribeJobs call costs the same for 1 or
 * 100 ids), so jobs settle into shared cycles and a cycle costs
 * ceil(active / 100) calls.  A cycle is the run of next_batch calls that
 * starts with a batch holding a due job and goes on while batches come
 * back full: within it, early jobs fill later batches too.  A job handed out is provisionally rescheduled
 * one interval later, so an id the service silently omits is asked again.
 *
 * The token bucket is meant to be shared by every Batch call of a run
 * (DescribeJobs, SubmitJob, TerminateJob): lb_poll_acquire takes tokens or
 * says how long to wait; lb_poll_throttled (a 429 / TooManyRequests) halves
 * the rate (at most once per throttle_window, never below min_rate);
 * lb_poll_ok recovers it x recover_factor per success window (at least
 * recover_count successes and recover_window seconds since the last rate
 * change) up to the configured rate -- AIMD as in Nextflow's
 * ThrottlingExecutor.
 *
 * Not thread safe: one poller is used by one thread at a time. */
#ifndef LB_POLL_H
#define LB_POLL_H

#include <stddef.h>
#include <stdint.h>

#include "lb_err.h"

typedef struct lb_poll lb_poll;

/* Returns a uniform double in [0, 1). */
typedef double (*lb_poll_rand_fn)(void *ud);

/* Options; zero fields take the defaults shown. */
typedef struct lb_poll_opts {
    double fast_interval;   /* 2 s: first interval before RUNNING */
    double fast_growth;     /* 1.25: per unchanged poll before RUNNING */
    double fast_max;        /* 10 s: cap before RUNNING */
    double run_interval;    /* 10 s: on entering RUNNING */
    double run_growth;      /* 1.5: per poll while RUNNING */
    double max_interval;    /* 60 s: cap while RUNNING */
    double jitter;          /* 0.2 = +-20 %; negative = none */
    double coalesce;        /* 0.5: pull jobs due within 0.5 x interval
                               into a batch that has room; negative = none */
    double rate;            /* 20 tokens/s: the configured (max) rate */
    double burst;           /* 1 s: bucket capacity = max(1, rate x burst) */
    double min_rate;        /* 0.5 tokens/s: floor when halving */
    double throttle_window; /* 1 s: halve at most once per window */
    double recover_factor;  /* 1.1 */
    double recover_window;  /* 2 s: min time between two rate changes */
    long recover_count;     /* 5: successes needed per recovery step */
    uint64_t seed;          /* PRNG seed (0 = a fixed default) */
    lb_poll_rand_fn rand;   /* optional: replaces the PRNG */
    void *rand_ud;
} lb_poll_opts;

/* Phase of a job (derived from its status). */
enum { LB_POLL_NEW, LB_POLL_PENDING, LB_POLL_RUNNING, LB_POLL_TERMINAL };

/* A status report, as read from DescribeJobs (borrowed strings). */
typedef struct lb_poll_state {
    const char *status;     /* "RUNNABLE", "RUNNING", "SUCCEEDED", ... (required) */
    const char *reason;     /* statusReason, or NULL */
    int has_exit;           /* exit_code is meaningful */
    int exit_code;
    const char *log_stream; /* container.logStreamName, or NULL */
} lb_poll_state;

/* What the poller knows of one job (strings owned by the poller: valid
 * until the next lb_poll_update/lb_poll_remove of that job or lb_poll_free). */
typedef struct lb_poll_info {
    const char *id;
    const char *status;     /* NULL until the first update */
    const char *reason;     /* NULL if none */
    int has_exit;
    int exit_code;
    const char *log_stream; /* NULL if none */
    int phase;              /* LB_POLL_* */
    double next_due;        /* meaningless once terminal */
    double interval;        /* current (unjittered) interval */
    double cap;             /* its longest interval (lb_poll_cap), 0 = none */
    double changed_at;      /* `now` of the last change (or of the add) */
    long polls;             /* times handed out by next_batch */
    long changes;           /* updates that changed something */
} lb_poll_info;

typedef struct lb_poll_stats {
    size_t jobs;            /* in the table */
    size_t pending;         /* not terminal */
    long batches;           /* non-empty next_batch results */
    long ids_polled;        /* ids handed out */
    long early;             /* of which pulled in early (coalesced) */
    long updates, changes;
    long acquires, waits;   /* acquire calls; of which told to wait */
    long throttles, halvings, recoveries;
    double rate;            /* current token rate */
    double tokens;          /* tokens at the last refill */
} lb_poll_stats;

/* Create a poller; opts may be NULL (all defaults).  Invalid options
 * (negative intervals, growth < 1, rate <= 0, min_rate > rate, ...) give
 * LB_EINVAL with a message in err.  Returns NULL and sets *code (if not
 * NULL) to LB_EINVAL or LB_ENOMEM.  Free with lb_poll_free. */
lb_poll *lb_poll_new(const lb_poll_opts *opts, int *code, char *err);

/* Free the poller and every job.  NULL is a no-op. */
void lb_poll_free(lb_poll *p);

/* Watch job `id` (copied), first due at `due` (pass `now` to poll it at
 * once).  Adding an id already present changes nothing and sets *added = 0
 * (added may be NULL).  LB_EINVAL: empty id; LB_ENOMEM (nothing changed). */
int lb_poll_add(lb_poll *p, const char *id, double due, int *added);

/* Forget job `id`.  Returns 1 if it was there, 0 if not. */
int lb_poll_remove(lb_poll *p, const char *id);

/* Fill ids[0..n) with up to `max` non-terminal jobs to ask about now, the
 * due ones oldest-due first, then (if room is left and at least one is due
 * or the previous batch was full) jobs due within coalesce x their interval.  Each is provisionally
 * rescheduled one jittered interval after `now`.  The strings are owned by
 * the poller (valid until that job is removed).  Returns n; 0 when nothing
 * is due or the poller is cancelled.  Never allocates, never fails. */
size_t lb_poll_next_batch(lb_poll *p, double now, const char **ids, size_t max);

/* Record what DescribeJobs said about `id` at `now` and schedule its next
 * poll by phase (terminal: none).  *changed (may be NULL) = 1 if status,
 * reason, exit code or log stream differ from what was known (the first
 * report always counts), else 0.  LB_EINVAL: unknown id or no status;
 * LB_ENOMEM: the job keeps its previous state. */
int lb_poll_update(lb_poll *p, double now, const char *id, const lb_poll_state *st,
                   int *changed);

/* Set the next due time of a non-terminal job (e.g. `now` to ask again at
 * once after a throttled call).  Returns 1 if done, 0 if unknown/terminal. */
int lb_poll_reschedule(lb_poll *p, const char *id, double due);

/* Cap job `id`'s interval at `cap` seconds in every phase (0 removes the
 * cap: its interval grows from where it is).  A job whose interval is
 * longer is shortened now and, when due later than now + cap, made due one
 * jittered cap after `now`.  Used while a freed slot waits on the job's end
 * (a strategy queued behind max-parallel).  Returns 1 if done, 0 if the id
 * is unknown or cap < 0. */
int lb_poll_cap(lb_poll *p, const char *id, double cap, double now);

/* Look up a job: 1 and *out filled, or 0 if unknown. */
int lb_poll_get(const lb_poll *p, const char *id, lb_poll_info *out);

/* 1 and *at = the earliest next-due time of a non-terminal job, or 0 if
 * there is none (or the poller is cancelled). */
int lb_poll_next_wakeup(const lb_poll *p, double *at);

/* Token bucket: take `cost` tokens at `now`.  Returns 0 when taken, else
 * the seconds to wait before asking again (nothing taken).  A cost larger
 * than the bucket is granted once the bucket is full (the balance goes
 * negative, so later callers wait it off).  cost <= 0 always returns 0. */
double lb_poll_acquire(lb_poll *p, double now, double cost);

/* A call was throttled: halve the rate (at most once per throttle_window,
 * floor min_rate) and empty the bucket.  Returns the new rate. */
double lb_poll_throttled(lb_poll *p, double now);

/* A call succeeded: count it, and raise the rate x recover_factor (up to
 * the configured rate) once a success window is complete.  Returns the rate. */
double lb_poll_ok(lb_poll *p, double now);

/* Current token rate (tokens/s). */
double lb_poll_rate(const lb_poll *p);

/* Cancellation: once set, next_batch returns 0 and next_wakeup 0. */
void lb_poll_cancel(lb_poll *p);
int lb_poll_canceled(const lb_poll *p);

/* Counters and gauges. */
void lb_poll_get_stats(const lb_poll *p, lb_poll_stats *out);

/* Number of jobs / of non-terminal jobs. */
size_t lb_poll_count(const lb_poll *p);
size_t lb_poll_pending(const lb_poll *p);

/* 1 if `status` is SUCCEEDED or FAILED. */
int lb_poll_is_terminal(const char *status);

#endif
