/* test_poll.c -- lb_poll: job table, batches, phase intervals, jitter,
 * coalescing, token bucket, cancellation, 10,000 jobs, allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_err.h"
#include "lb_poll.h"
#include "lb_test.h"

static lb_poll_state S(const char *status) {
    lb_poll_state st;
    memset(&st, 0, sizeof st);
    st.status = status;
    return st;
}

static lb_poll *mk(lb_poll_opts *o) {
    int code = -1;
    lb_poll *p = lb_poll_new(o, &code, NULL);
    CHECK(p != NULL && code == LB_OK);
    return p;
}

static double next_due(lb_poll *p, const char *id) {
    lb_poll_info in;
    if (!lb_poll_get(p, id, &in)) return NAN;
    return in.next_due;
}

static void test_options(void) {
    char err[LB_ERR_LEN] = "";
    int code = 0;
    lb_poll_opts o;
    lb_poll *p;
    memset(&o, 0, sizeof o);
    o.run_growth = 0.5;
    CHECK(lb_poll_new(&o, &code, err) == NULL && code == LB_EINVAL);
    CHECK(strstr(err, "growth") != NULL);
    memset(&o, 0, sizeof o);
    o.rate = 1;
    o.min_rate = 2;
    CHECK(lb_poll_new(&o, &code, err) == NULL && code == LB_EINVAL);
    memset(&o, 0, sizeof o);
    o.fast_interval = -1;
    CHECK(lb_poll_new(&o, &code, err) == NULL && code == LB_EINVAL);
    memset(&o, 0, sizeof o);
    o.jitter = 1.5;
    CHECK(lb_poll_new(&o, &code, err) == NULL && code == LB_EINVAL);
    p = lb_poll_new(NULL, &code, err);
    CHECK(p != NULL && code == LB_OK);
    CHECK(lb_poll_rate(p) == 20.0);
    lb_poll_free(p);
    lb_poll_free(NULL);
}

static void test_table(void) {
    lb_poll *p = mk(NULL);
    lb_poll_info in;
    int added = -1;
    char id[32];
    int i, ok = 1;
    CHECK(lb_poll_add(p, "a", 0, &added) == LB_OK && added == 1);
    CHECK(lb_poll_add(p, "a", 5, &added) == LB_OK && added == 0);
    CHECK(next_due(p, "a") == 0);                 /* the duplicate changed nothing */
    CHECK(lb_poll_add(p, "", 0, &added) == LB_EINVAL);
    CHECK(lb_poll_add(p, NULL, 0, NULL) == LB_EINVAL);
    CHECK(lb_poll_count(p) == 1 && lb_poll_pending(p) == 1);
    CHECK(lb_poll_get(p, "a", &in) == 1);
    CHECK_STR("a", in.id);
    CHECK(in.status == NULL && in.phase == LB_POLL_NEW && in.polls == 0);
    CHECK(lb_poll_get(p, "b", &in) == 0);
    CHECK(lb_poll_remove(p, "b") == 0);
    CHECK(lb_poll_remove(p, "a") == 1);
    CHECK(lb_poll_remove(p, "a") == 0);
    CHECK(lb_poll_count(p) == 0 && lb_poll_pending(p) == 0);
    /* many ids, half removed: the others stay findable (backward shift) */
    for (i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "job-%d", i);
        ok &= lb_poll_add(p, id, i, NULL) == LB_OK;
    }
    for (i = 0; i < 5000; i += 2) {
        snprintf(id, sizeof id, "job-%d", i);
        ok &= lb_poll_remove(p, id) == 1;
    }
    for (i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "job-%d", i);
        ok &= lb_poll_get(p, id, &in) == (i % 2);
        if (i % 2) ok &= in.next_due == i;
    }
    CHECK(ok);
    CHECK(lb_poll_count(p) == 2500 && lb_poll_pending(p) == 2500);
    lb_poll_free(p);
}

/* At most max ids per batch, the due ones only, oldest-due first. */
static void test_batches(void) {
    lb_poll_opts o;
    lb_poll *p;
    const char *ids[100];
    char id[32];
    int i, ok = 1;
    size_t n;
    double at;
    memset(&o, 0, sizeof o);
    o.coalesce = -1;
    p = mk(&o);
    CHECK(lb_poll_next_wakeup(p, &at) == 0);
    CHECK(lb_poll_next_batch(p, 0, ids, 100) == 0);
    for (i = 0; i < 250; i++) {                   /* due times 249, 248, ... 0 */
        snprintf(id, sizeof id, "j%03d", i);
        lb_poll_add(p, id, 249 - i, NULL);
    }
    CHECK(lb_poll_next_wakeup(p, &at) == 1 && at == 0);
    n = lb_poll_next_batch(p, 1000, ids, 100);
    CHECK(n == 100);
    CHECK_STR("j249", ids[0]);                    /* due 0: the oldest due first */
    CHECK_STR("j150", ids[99]);
    n = lb_poll_next_batch(p, 1000, ids, 100);
    CHECK(n == 100);
    CHECK_STR("j149", ids[0]);
    n = lb_poll_next_batch(p, 1000, ids, 100);
    CHECK(n == 50);
    CHECK_STR("j000", ids[49]);
    CHECK(lb_poll_next_batch(p, 1000, ids, 100) == 0);   /* all rescheduled */
    lb_poll_free(p);

    /* only what is due; terminal jobs never again */
    p = mk(&o);
    for (i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "k%d", i);
        lb_poll_add(p, id, i, NULL);
    }
    n = lb_poll_next_batch(p, 4.5, ids, 100);
    CHECK(n == 5);
    CHECK_STR("k0", ids[0]);
    CHECK_STR("k4", ids[4]);
    {
        lb_poll_state st = S("SUCCEEDED");
        st.has_exit = 1;
        CHECK(lb_poll_update(p, 4.5, "k0", &st, NULL) == LB_OK);
        st.status = "FAILED";
        CHECK(lb_poll_update(p, 4.5, "k1", &st, NULL) == LB_OK);
    }
    CHECK(lb_poll_pending(p) == 8 && lb_poll_count(p) == 10);
    for (i = 0; i < 50; i++) {
        size_t k;
        n = lb_poll_next_batch(p, 100 + i * 100, ids, 3);
        ok &= n <= 3;
        for (k = 0; k < n; k++) ok &= strcmp(ids[k], "k0") != 0 && strcmp(ids[k], "k1") != 0;
    }
    CHECK(ok);
    CHECK(lb_poll_next_batch(p, 0, ids, 0) == 0);
    lb_poll_free(p);
}

/* The due order survives removals in the middle of the heap. */
static void test_heap_order(void) {
    lb_poll_opts o;
    lb_poll *p;
    const char *ids[100];
    char id[32];
    int i, ok = 1, total = 0;
    double last = -1;
    memset(&o, 0, sizeof o);
    o.coalesce = -1;
    p = mk(&o);
    srand(7);
    for (i = 0; i < 2000; i++) {
        snprintf(id, sizeof id, "h%d", i);
        lb_poll_add(p, id, (double)(rand() % 100000), NULL);
    }
    for (i = 0; i < 2000; i += 3) {
        snprintf(id, sizeof id, "h%d", i);
        lb_poll_remove(p, id);
    }
    /* drain one at a time at increasing times: every id comes in due order */
    for (;;) {
        double at;
        size_t n;
        lb_poll_info in;
        if (!lb_poll_next_wakeup(p, &at) || at >= 100000) break;
        n = lb_poll_next_batch(p, at, ids, 1);
        if (n != 1) { ok = 0; break; }
        ok &= at >= last;
        last = at;
        lb_poll_get(p, ids[0], &in);
        ok &= strtol(ids[0] + 1, NULL, 10) % 3 != 0;
        lb_poll_remove(p, ids[0]);
        total++;
    }
    CHECK(ok);
    CHECK(total == 2000 - 667);
    lb_poll_free(p);
}

static double fixed_u;
static double fixed_rand(void *ud) { (void)ud; return fixed_u; }

/* Phase intervals: fast before RUNNING (growing to fast_max), run_interval
 * on entering RUNNING, x1.5 up to the cap, none when terminal. */
static void test_intervals(void) {
    lb_poll_opts o;
    lb_poll *p;
    lb_poll_state st;
    lb_poll_info in;
    double want[] = {10, 15, 22.5, 33.75, 50.625, 60, 60};
    int i, ch;
    memset(&o, 0, sizeof o);
    o.rand = fixed_rand;            /* 0.5 -> factor exactly 1 */
    fixed_u = 0.5;
    p = mk(&o);
    lb_poll_add(p, "j", 0, NULL);
    st = S("SUBMITTED");
    CHECK(lb_poll_update(p, 100, "j", &st, &ch) == LB_OK && ch == 1);
    CHECK(next_due(p, "j") == 102);
    CHECK(lb_poll_update(p, 102, "j", &st, &ch) == LB_OK && ch == 0);
    CHECK(next_due(p, "j") == 102 + 2.5);          /* unchanged: x1.25 */
    for (i = 0; i < 20; i++) lb_poll_update(p, 200, "j", &st, NULL);
    CHECK(next_due(p, "j") == 210);                /* capped at fast_max */
    st = S("RUNNABLE");
    lb_poll_update(p, 300, "j", &st, &ch);
    CHECK(ch == 1 && next_due(p, "j") == 302);     /* a new status: fast again */
    st = S("RUNNING");
    for (i = 0; i < 7; i++) {
        lb_poll_update(p, 1000, "j", &st, &ch);
        CHECK(ch == (i == 0));
        lb_poll_get(p, "j", &in);
        CHECK(in.phase == LB_POLL_RUNNING);
        CHECK(fabs(in.next_due - (1000 + want[i])) < 1e-9);
    }
    st = S("SUCCEEDED");
    lb_poll_update(p, 2000, "j", &st, &ch);
    CHECK(ch == 1);
    CHECK(lb_poll_pending(p) == 0 && lb_poll_get(p, "j", &in) && in.phase == LB_POLL_TERMINAL);
    CHECK(lb_poll_next_wakeup(p, &in.next_due) == 0);
    CHECK(lb_poll_reschedule(p, "j", 0) == 0);
    /* extreme injected draws give exactly the +-20 % bounds */
    lb_poll_add(p, "k", 0, NULL);
    fixed_u = 0.0;
    st = S("RUNNING");
    lb_poll_update(p, 0, "k", &st, NULL);
    CHECK(fabs(next_due(p, "k") - 8.0) < 1e-9);
    fixed_u = 0.999999;
    st = S("STARTING");
    lb_poll_update(p, 0, "k", &st, NULL);
    CHECK(fabs(next_due(p, "k") - 2.4) < 1e-5 && next_due(p, "k") < 2.4);
    lb_poll_free(p);
}

/* A per-job cap: every phase's interval stays <= cap; a later due time
 * is pulled in at once; cap 0 lets the interval grow again. */
static void test_cap(void) {
    lb_poll_opts o;
    lb_poll *p;
    lb_poll_state st;
    lb_poll_info in;
    int i;
    memset(&o, 0, sizeof o);
    o.rand = fixed_rand;
    fixed_u = 0.5;
    p = mk(&o);
    lb_poll_add(p, "j", 0, NULL);
    lb_poll_add(p, "k", 0, NULL);
    st = S("RUNNING");
    lb_poll_update(p, 100, "j", &st, NULL);
    lb_poll_update(p, 100, "k", &st, NULL);
    CHECK(next_due(p, "j") == 110);
    CHECK(lb_poll_cap(p, "j", 2, 101) == 1);      /* due 110 > 101 + 2: pulled in */
    CHECK(lb_poll_get(p, "j", &in) && in.interval == 2 && in.cap == 2 && in.next_due == 103);
    CHECK(next_due(p, "k") == 110);               /* the others keep theirs */
    for (i = 0; i < 5; i++) lb_poll_update(p, 200, "j", &st, NULL);
    CHECK(next_due(p, "j") == 202);               /* growth stops at the cap */
    st = S("RUNNABLE");
    lb_poll_update(p, 300, "j", &st, NULL);
    CHECK(next_due(p, "j") == 302);               /* fast (2) is within the cap */
    CHECK(lb_poll_cap(p, "j", 5, 300) == 1 && next_due(p, "j") == 302);   /* shorter: kept */
    CHECK(lb_poll_cap(p, "j", 0, 300) == 1);      /* removed: grows from here */
    st = S("RUNNING");
    lb_poll_update(p, 400, "j", &st, NULL);
    lb_poll_update(p, 400, "j", &st, NULL);
    CHECK(next_due(p, "j") == 415);
    CHECK(lb_poll_cap(p, "nope", 1, 0) == 0 && lb_poll_cap(p, "j", -1, 0) == 0);
    st = S("SUCCEEDED");
    lb_poll_update(p, 500, "j", &st, NULL);
    CHECK(lb_poll_cap(p, "j", 1, 500) == 1 && lb_poll_pending(p) == 1);   /* terminal: not due again */
    lb_poll_free(p);
}

/* The built-in PRNG: bounds, spread, and reproducible from the seed. */
static void test_jitter(void) {
    lb_poll_opts o;
    lb_poll *a, *b;
    lb_poll_state run = S("RUNNING");
    char id[32];
    int i, same = 1, inside = 1;
    double lo = 1e9, hi = -1, sum = 0;
    memset(&o, 0, sizeof o);
    o.seed = 42;
    a = mk(&o);
    b = mk(&o);
    for (i = 0; i < 1000; i++) {
        double d;
        snprintf(id, sizeof id, "j%d", i);
        lb_poll_add(a, id, 0, NULL);
        lb_poll_add(b, id, 0, NULL);
        lb_poll_update(a, 0, id, &run, NULL);
        lb_poll_update(b, 0, id, &run, NULL);
        d = next_due(a, id);
        same &= d == next_due(b, id);
        inside &= d >= 8.0 && d < 12.0;
        if (d < lo) lo = d;
        if (d > hi) hi = d;
        sum += d;
    }
    CHECK(same);
    CHECK(inside);
    CHECK(lo < 8.2 && hi > 11.8);                  /* it really spreads */
    CHECK(fabs(sum / 1000 - 10.0) < 0.2);          /* centred on the interval */
    lb_poll_free(a);
    lb_poll_free(b);
    o.seed = 43;
    a = mk(&o);
    lb_poll_add(a, "j0", 0, NULL);
    lb_poll_update(a, 0, "j0", &run, NULL);
    o.seed = 42;
    b = mk(&o);
    lb_poll_add(b, "j0", 0, NULL);
    lb_poll_update(b, 0, "j0", &run, NULL);
    CHECK(next_due(a, "j0") != next_due(b, "j0"));
    lb_poll_free(a);
    lb_poll_free(b);
}

/* A batch with room is filled with jobs due within coalesce x interval. */
static void test_coalesce(void) {
    lb_poll_opts o;
    lb_poll *p;
    const char *ids[100];
    char id[32];
    lb_poll_stats s;
    int i;
    memset(&o, 0, sizeof o);
    o.jitter = -1;
    p = mk(&o);                                    /* coalesce 0.5, fast 2 s */
    for (i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "a%d", i);
        lb_poll_add(p, id, 10, NULL);
    }
    for (i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "b%d", i);
        lb_poll_add(p, id, 10.9, NULL);            /* within 0.5 x 2 s */
    }
    for (i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "c%d", i);
        lb_poll_add(p, id, 11.5, NULL);            /* too far */
    }
    CHECK(lb_poll_next_batch(p, 9.99, ids, 100) == 0);   /* nothing due: no early poll */
    CHECK(lb_poll_next_batch(p, 10, ids, 100) == 100);
    CHECK_STR("a0", ids[0]);
    CHECK_STR("b69", ids[99]);
    /* the batch was full: the cycle goes on with the early ones */
    CHECK(lb_poll_next_batch(p, 10, ids, 100) == 30);
    CHECK_STR("b70", ids[0]);
    CHECK(lb_poll_next_batch(p, 10, ids, 100) == 0);     /* c* too far; cycle over */
    lb_poll_get_stats(p, &s);
    CHECK(s.early == 100 && s.ids_polled == 130 && s.batches == 2);
    CHECK(lb_poll_next_batch(p, 10.9, ids, 100) == 0);   /* near, but nothing due */
    CHECK(lb_poll_next_batch(p, 11.5, ids, 100) == 100); /* c* due, a* b* (12) early */
    CHECK_STR("c0", ids[0]);
    CHECK_STR("c4", ids[4]);
    CHECK(next_due(p, "c0") == 13.5);
    lb_poll_free(p);
}

/* changed = 1 exactly when something visible moved. */
static void test_changes(void) {
    lb_poll *p = mk(NULL);
    lb_poll_state st = S("RUNNING");
    lb_poll_info in;
    int ch;
    lb_poll_add(p, "j", 0, NULL);
    CHECK(lb_poll_update(p, 1, "nope", &st, &ch) == LB_EINVAL && ch == 0);
    st.status = "";
    CHECK(lb_poll_update(p, 1, "j", &st, &ch) == LB_EINVAL);
    CHECK(lb_poll_update(p, 1, "j", NULL, &ch) == LB_EINVAL);
    st.status = "RUNNING";
    CHECK(lb_poll_update(p, 1, "j", &st, &ch) == LB_OK && ch == 1);
    CHECK(lb_poll_update(p, 2, "j", &st, &ch) == LB_OK && ch == 0);
    st.log_stream = "jd/default/abc";
    CHECK(lb_poll_update(p, 3, "j", &st, &ch) == LB_OK && ch == 1);
    CHECK(lb_poll_update(p, 4, "j", &st, &ch) == LB_OK && ch == 0);
    st.reason = "";                                 /* "" is no reason */
    CHECK(lb_poll_update(p, 4, "j", &st, &ch) == LB_OK && ch == 0);
    st.status = "FAILED";
    st.reason = "Essential container in task exited";
    st.has_exit = 1;
    st.exit_code = 3;
    CHECK(lb_poll_update(p, 5, "j", &st, &ch) == LB_OK && ch == 1);
    CHECK(lb_poll_get(p, "j", &in));
    CHECK_STR("FAILED", in.status);
    CHECK_STR("Essential container in task exited", in.reason);
    CHECK_STR("jd/default/abc", in.log_stream);
    CHECK(in.has_exit && in.exit_code == 3 && in.changes == 3 && in.changed_at == 5);
    CHECK(lb_poll_update(p, 6, "j", &st, &ch) == LB_OK && ch == 0);
    st.exit_code = 4;
    CHECK(lb_poll_update(p, 7, "j", &st, &ch) == LB_OK && ch == 1);
    st.has_exit = 0;
    CHECK(lb_poll_update(p, 8, "j", &st, &ch) == LB_OK && ch == 1);
    st.log_stream = NULL;
    CHECK(lb_poll_update(p, 9, "j", &st, &ch) == LB_OK && ch == 1);
    CHECK(lb_poll_get(p, "j", &in) && in.log_stream == NULL && !in.has_exit);
    /* a job seen terminal and then (oddly) running again is polled again */
    st = S("RUNNING");
    CHECK(lb_poll_pending(p) == 0);
    CHECK(lb_poll_update(p, 10, "j", &st, &ch) == LB_OK && ch == 1);
    CHECK(lb_poll_pending(p) == 1);
    CHECK(lb_poll_reschedule(p, "j", 3) == 1 && next_due(p, "j") == 3);
    lb_poll_free(p);
}

static void test_bucket(void) {
    lb_poll_opts o;
    lb_poll *p;
    lb_poll_stats s;
    int i, got = 0;
    double t, w;
    memset(&o, 0, sizeof o);
    o.rate = 10;
    p = mk(&o);
    for (i = 0; i < 10; i++) CHECK(lb_poll_acquire(p, 0, 1) == 0);   /* a full bucket */
    w = lb_poll_acquire(p, 0, 1);
    CHECK(fabs(w - 0.1) < 1e-9);
    CHECK(lb_poll_acquire(p, 0.1, 1) == 0);
    CHECK(lb_poll_acquire(p, 0.1, 0) == 0);
    /* a steady caller gets the rate: 10/s over 100 s (+ the first bucket) */
    for (t = 1.1; t < 101.1; t += 0.01)
        if (lb_poll_acquire(p, t, 1) == 0) got++;
    CHECK(got >= 999 && got <= 1011);
    /* a cost bigger than the bucket is granted when full, then waited off */
    CHECK(lb_poll_acquire(p, 200, 25) == 0);
    w = lb_poll_acquire(p, 200, 1);
    CHECK(fabs(w - 1.6) < 1e-9);                   /* -15 tokens -> 16 / 10 */

    /* throttling halves, at most once per window, down to the floor */
    CHECK(lb_poll_throttled(p, 300) == 5);
    CHECK(lb_poll_acquire(p, 300, 1) > 0);         /* the bucket was emptied */
    CHECK(lb_poll_throttled(p, 300.5) == 5);       /* same burst */
    CHECK(lb_poll_throttled(p, 301) == 2.5);
    for (t = 302; t < 320; t += 1) lb_poll_throttled(p, t);
    CHECK(lb_poll_rate(p) == 0.5);
    /* a steady caller now gets ~0.5/s */
    got = 0;
    for (t = 320; t < 420; t += 0.01)
        if (lb_poll_acquire(p, t, 1) == 0) got++;
    CHECK(got >= 49 && got <= 52);
    /* recovery: x1.1 per window of >= 5 successes and >= 2 s */
    for (i = 0; i < 4; i++) lb_poll_ok(p, 500 + i);
    CHECK(lb_poll_rate(p) == 0.5);                 /* 4 successes: not yet */
    CHECK(fabs(lb_poll_ok(p, 504) - 0.55) < 1e-12);
    for (i = 0; i < 10; i++) lb_poll_ok(p, 504.5);  /* same window: no step */
    CHECK(fabs(lb_poll_rate(p) - 0.55) < 1e-12);
    for (t = 510; t < 2000; t += 0.5) lb_poll_ok(p, t);
    CHECK(lb_poll_rate(p) == 10);                  /* capped at the configured rate */
    lb_poll_get_stats(p, &s);
    CHECK(s.halvings == 5 && s.throttles == 21 && s.recoveries > 30 && s.rate == 10);
    /* a throttle resets the success count */
    lb_poll_throttled(p, 3000);
    for (i = 0; i < 4; i++) lb_poll_ok(p, 3000.2);
    lb_poll_throttled(p, 3000.5);                  /* same window, no halving */
    lb_poll_ok(p, 3011);
    CHECK(lb_poll_rate(p) == 5);
    lb_poll_free(p);
}

static void test_cancel(void) {
    lb_poll *p = mk(NULL);
    const char *ids[4];
    double at;
    lb_poll_add(p, "x", 0, NULL);
    CHECK(!lb_poll_canceled(p));
    lb_poll_cancel(p);
    CHECK(lb_poll_canceled(p));
    CHECK(lb_poll_next_batch(p, 10, ids, 4) == 0);
    CHECK(lb_poll_next_wakeup(p, &at) == 0);
    lb_poll_free(p);
}

/* 10,000 jobs walking SUBMITTED..SUCCEEDED/FAILED at scripted times, driven
 * like the Lua loop: every batch <= 100 non-terminal ids, every change seen
 * once, detection within the capped interval, ~ceil(active/100) calls per
 * cycle. */
#define NJOBS 10000
static const char *WALK[] = {"SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"};

static void test_10000(void) {
    lb_poll_opts o;
    lb_poll *p;
    static double at[NJOBS][5];
    static int seen[NJOBS];
    static double detect_late[NJOBS];
    const char *ids[100];
    char id[32];
    double now = 0, worst = 0;
    long calls = 0, cycles = 0, changes = 0, max_calls = 0, bad_batch = 0, missed = 0;
    int i, k, done = 0;
    memset(&o, 0, sizeof o);
    o.seed = 1;
    p = mk(&o);
    srand(11);
    for (i = 0; i < NJOBS; i++) {
        at[i][0] = 0;
        at[i][1] = 1 + rand() % 20;
        at[i][2] = at[i][1] + 5 + rand() % 100;
        at[i][3] = at[i][2] + 5 + rand() % 20;
        at[i][4] = at[i][3] + 30 + rand() % 600;
        seen[i] = -1;
        snprintf(id, sizeof id, "job-%05d", i);
        lb_poll_add(p, id, 0, NULL);
    }
    while (done < NJOBS && now < 5000) {
        long c = 0;
        size_t active = lb_poll_pending(p);
        size_t n;
        while ((n = lb_poll_next_batch(p, now, ids, 100)) > 0) {
            c++;
            if (n > 100) bad_batch++;
            for (k = 0; k < (int)n; k++) {
                int j = (int)strtol(ids[k] + 4, NULL, 10), s = 0, ch;
                lb_poll_state st;
                while (s < 4 && at[j][s + 1] <= now) s++;
                if (seen[j] >= 3 && s < 3) missed++;
                if (seen[j] == 4) bad_batch++;    /* a terminal job was asked */
                st = S(WALK[s]);
                if (s == 4) { st.has_exit = 1; st.exit_code = 0; }
                lb_poll_update(p, now, ids[k], &st, &ch);
                if (ch) {
                    changes++;
                    if (s == 4) {
                        done++;
                        detect_late[j] = now - at[j][4];
                        if (detect_late[j] > worst) worst = detect_late[j];
                    }
                    seen[j] = s;
                } else if (seen[j] != s) {
                    missed++;
                }
            }
        }
        if (c) {
            cycles++;
            calls += c;
            /* a cycle never costs more than one call per 100 active jobs */
            if (c > (long)((active + 99) / 100)) bad_batch++;
            if (c > max_calls) max_calls = c;
        }
        if (!lb_poll_next_wakeup(p, &now)) break;
    }
    CHECK(done == NJOBS);
    CHECK(bad_batch == 0);
    CHECK(missed == 0);
    CHECK(lb_poll_pending(p) == 0);
    CHECK(max_calls <= 100);
    CHECK(worst <= 60 * 1.2 + 1e-9);               /* bounded by the capped interval */
    printf("  10000 jobs: %ld cycles, %ld DescribeJobs calls, %ld changes, worst detection %.1f s\n",
           cycles, calls, changes, worst);
    lb_poll_free(p);
}

/* Every allocation failure returns LB_ENOMEM, keeps the state, leaks nothing. */
static int scenario(void) {
    lb_poll *p;
    int code, i, rc = LB_OK;
    char id[32];
    lb_poll_state st = S("RUNNING");
    lb_poll_info in;
    p = lb_poll_new(NULL, &code, NULL);
    if (!p) return code;
    for (i = 0; i < 40 && rc == LB_OK; i++) {
        int added = 0;
        snprintf(id, sizeof id, "j%d", i);
        rc = lb_poll_add(p, id, i, &added);
        if (rc != LB_OK) {
            if (added || lb_poll_get(p, id, &in) || lb_poll_count(p) != (size_t)i) rc = -1;
        }
    }
    for (i = 0; i < 40 && rc == LB_OK; i++) {
        int ch = 7;
        snprintf(id, sizeof id, "j%d", i);
        st.log_stream = "stream";
        st.reason = i % 2 ? "why" : NULL;
        rc = lb_poll_update(p, 1, id, &st, &ch);
        if (rc != LB_OK) {
            /* the job keeps its old (empty) state */
            if (ch != 0 || !lb_poll_get(p, id, &in) || in.status || in.log_stream) rc = -1;
        }
    }
    if (rc == LB_OK) {
        for (i = 0; i < 40; i += 2) {
            snprintf(id, sizeof id, "j%d", i);
            lb_poll_remove(p, id);
        }
        if (lb_poll_count(p) != 20) rc = -1;
    }
    lb_poll_free(p);
    return rc;
}

static void test_alloc_failures(void) {
    long live = lb_alloc_live();
    int k, rc = LB_ENOMEM, bad = 0, fails = 0;
    for (k = 0; k < 10000 && rc != LB_OK; k++) {
        lb_alloc_fail_after(k);
        rc = scenario();
        if (rc == LB_ENOMEM) fails++;
        else if (rc != LB_OK) bad++;
        if (lb_alloc_live() != live) bad++;
    }
    lb_alloc_fail_after(-1);
    CHECK(rc == LB_OK);
    CHECK(bad == 0);
    CHECK(fails > 40);
}

int main(void) {
    test_options();
    test_table();
    test_batches();
    test_heap_order();
    test_intervals();
    test_cap();
    test_jitter();
    test_coalesce();
    test_changes();
    test_bucket();
    test_cancel();
    test_10000();
    test_alloc_failures();
    return lb_test_report("poll");
}
