/* test_proc.c -- lb_proc: spawn, capture, wait on many, kill, interrupt. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lb_alloc.h"
#include "lb_err.h"
#include "lb_intr.h"
#include "lb_proc.h"
#include "lb_test.h"

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static lb_proc *start(char *const *argv, char *const *envp, const char *cwd, const char *in,
                      size_t in_len) {
    lb_proc_opts o;
    lb_proc *p = NULL;
    char err[LB_ERR_LEN];
    memset(&o, 0, sizeof o);
    o.argv = argv;
    o.envp = envp;
    o.cwd = cwd;
    o.stdin_data = in;
    o.stdin_len = in_len;
    if (lb_proc_spawn(&o, &p, err) != LB_OK) fprintf(stderr, "spawn: %s\n", err);
    return p;
}

static int run(lb_proc *p) {
    char err[LB_ERR_LEN];
    int rc;
    while ((rc = lb_proc_wait(&p, 1, -1, err)) == LB_OK && !lb_proc_done(p)) {}
    return rc;
}

static void test_capture(void) {
    char *argv[] = {"sh", "-c", "printf 'out'; printf 'err' >&2; exit 7", NULL};
    lb_proc *p = start(argv, NULL, NULL, NULL, 0);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(run(p) == LB_OK);
    CHECK(lb_proc_done(p));
    CHECK(lb_proc_exit_code(p) == 7);
    CHECK(lb_proc_term_signal(p) == 0);
    CHECK_STR("out", lb_proc_output(p, 1)->data);
    CHECK_STR("err", lb_proc_output(p, 2)->data);
    lb_proc_free(p);
}

/* Exact environment (nothing inherited), cwd, PATH lookup in that env. */
static void test_env_cwd(void) {
    char *argv[] = {"sh", "-c", "env | sort; pwd", NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", "Q=it's \"$x\"\nline2", NULL};
    lb_proc *p = start(argv, envp, "/", NULL, 0);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(run(p) == LB_OK);
    CHECK(lb_proc_exit_code(p) == 0);
    CHECK(strstr(lb_proc_output(p, 1)->data, "Q=it's \"$x\"\nline2\n") != NULL);
    CHECK(strstr(lb_proc_output(p, 1)->data, "HOME=") == NULL);
    CHECK(strstr(lb_proc_output(p, 1)->data, "\n/\n") != NULL);
    lb_proc_free(p);
    /* env_add merges over the base list */
    {
        char *argv2[] = {"sh", "-c", "echo \"$A-$B\"", NULL};
        char *base[] = {"PATH=/usr/bin:/bin", "A=old", "B=keep", NULL};
        char *add[] = {"A=new", NULL};
        lb_proc_opts o;
        char err[LB_ERR_LEN];
        memset(&o, 0, sizeof o);
        o.argv = argv2;
        o.envp = base;
        o.env_add = add;
        p = NULL;
        CHECK(lb_proc_spawn(&o, &p, err) == LB_OK);
        if (p) {
            CHECK(run(p) == LB_OK);
            CHECK_STR("new-keep\n", lb_proc_output(p, 1)->data);
            lb_proc_free(p);
        }
    }
}

/* 1 MiB through cat both ways: stdin and stdout must not deadlock. */
static void test_big_stdin(void) {
    size_t n = 1 << 20, i;
    char *in = malloc(n);
    char *argv[] = {"cat", NULL};
    lb_proc *p;
    for (i = 0; i < n; i++) in[i] = (char)('a' + i % 26);
    p = start(argv, NULL, NULL, in, n);
    CHECK(p != NULL);
    if (p) {
        CHECK(run(p) == LB_OK);
        CHECK(lb_proc_output(p, 1)->len == n);
        CHECK(memcmp(lb_proc_output(p, 1)->data, in, n) == 0);
        lb_proc_free(p);
    }
    /* a reader that goes away: no SIGPIPE for us, the rest is dropped */
    {
        char *argv2[] = {"true", NULL};
        p = start(argv2, NULL, NULL, in, n);
        CHECK(p != NULL);
        if (p) {
            CHECK(run(p) == LB_OK);
            CHECK(lb_proc_exit_code(p) == 0);
            lb_proc_free(p);
        }
    }
    free(in);
}

static void test_spawn_errors(void) {
    char err[LB_ERR_LEN];
    lb_proc_opts o;
    lb_proc *p = NULL;
    char *argv[] = {"no-such-program-lb", NULL};
    char *argv2[] = {"ls", NULL};
    char *argv3[] = {"true", NULL};
    long live = lb_alloc_live();
    int k, ok = 1;
    memset(&o, 0, sizeof o);
    o.argv = argv;
    CHECK(lb_proc_spawn(&o, &p, err) == LB_EIO);
    CHECK(p == NULL);
    CHECK(strstr(err, "no-such-program-lb") != NULL && strstr(err, "not found") != NULL);
    o.argv = argv2;
    o.cwd = "/no/such/dir";
    CHECK(lb_proc_spawn(&o, &p, err) == LB_EIO);
    CHECK(strstr(err, "/no/such/dir") != NULL);
    o.argv = NULL;
    CHECK(lb_proc_spawn(&o, &p, err) == LB_EINVAL);
    /* every allocation failure: LB_ENOMEM and no leak */
    o.argv = argv3;
    o.cwd = NULL;
    o.stdin_data = "x";
    o.stdin_len = 1;
    for (k = 0; k < 4; k++) {
        int rc;
        lb_alloc_fail_after(k);
        rc = lb_proc_spawn(&o, &p, err);
        lb_alloc_fail_after(-1);
        if (rc == LB_OK) { run(p); lb_proc_free(p); break; }
        ok &= rc == LB_ENOMEM;
    }
    CHECK(ok);
    CHECK(lb_alloc_live() == live);
}

/* Three children waited on together: none can end before the gate file
 * exists, so a timed wait times out whatever the machine's load, and all
 * three are alive at once (no wall-clock bound: valgrind on a busy machine
 * keeps none). */
static void test_many(void) {
    char gate[] = "/tmp/lb_test_proc_gate_XXXXXX";
    char script[128];
    char *argv[] = {"sh", "-c", script, NULL};
    lb_proc *ps[3];
    char err[LB_ERR_LEN];
    int i, fd, left = 3, rounds = 0;
    fd = mkstemp(gate);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    unlink(gate);
    snprintf(script, sizeof script, "while [ ! -e %s ]; do sleep 0.02; done", gate);
    for (i = 0; i < 3; i++) ps[i] = start(argv, NULL, NULL, NULL, 0);
    CHECK(ps[0] && ps[1] && ps[2]);
    if (!(ps[0] && ps[1] && ps[2])) return;
    CHECK(lb_proc_wait(ps, 3, 0.05, err) == LB_ETIMEDOUT);
    for (i = 0; i < 3; i++) CHECK(!lb_proc_done(ps[i]));
    fd = open(gate, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    while (left > 0 && rounds++ < 1000) {
        lb_proc *pending[3];
        int np = 0;
        for (i = 0; i < 3; i++) if (!lb_proc_done(ps[i])) pending[np++] = ps[i];
        CHECK(lb_proc_wait(pending, (size_t)np, -1, err) == LB_OK);
        for (left = 0, i = 0; i < 3; i++) left += !lb_proc_done(ps[i]);
    }
    CHECK(left == 0);
    unlink(gate);
    for (i = 0; i < 3; i++) {
        CHECK(lb_proc_exit_code(ps[i]) == 0);
        lb_proc_free(ps[i]);
    }
}

static void test_kill_and_interrupt(void) {
    char *argv[] = {"sleep", "60", NULL};
    char *stubborn[] = {"sh", "-c", "trap '' TERM; echo ready; sleep 60", NULL};
    char err[LB_ERR_LEN];
    lb_proc *p = start(argv, NULL, NULL, NULL, 0);
    double t0;
    CHECK(p != NULL);
    if (!p) return;
    /* SIGINT ends the wait, the child keeps running */
    lb_intr_raise();
    CHECK(lb_proc_wait(&p, 1, -1, err) == LB_ECANCELED);
    lb_intr_clear();
    CHECK(!lb_proc_done(p));
    CHECK(lb_proc_kill(p, 0, err) == LB_EINVAL);
    CHECK(lb_proc_kill(p, SIGTERM, err) == LB_OK);
    CHECK(run(p) == LB_OK);
    CHECK(lb_proc_term_signal(p) == SIGTERM);
    CHECK(lb_proc_exit_code(p) == -1);
    lb_proc_free(p);

    /* SIGTERM ignored: SIGKILL after the grace period */
    p = start(stubborn, NULL, NULL, NULL, 0);
    CHECK(p != NULL);
    if (!p) return;
    while (lb_proc_output(p, 1)->len == 0) lb_proc_wait(&p, 1, 0.05, err);
    t0 = mono();
    lb_proc_terminate(p, 0.3);
    CHECK(run(p) == LB_OK);
    CHECK(lb_proc_term_signal(p) == SIGKILL);
    CHECK(mono() - t0 >= 0.25); /* the grace period was given */
    lb_proc_free(p);

    /* freeing a running child kills and reaps it */
    p = start(argv, NULL, NULL, NULL, 0);
    CHECK(p != NULL);
    t0 = mono();
    lb_proc_free(p);
    CHECK(mono() - t0 < 30); /* killed, not waited for: the child sleeps 60 s */
}

static void test_sleep_only(void) {
    char err[LB_ERR_LEN];
    double t0 = mono();
    CHECK(lb_proc_wait(NULL, 0, 0.1, err) == LB_ETIMEDOUT);
    CHECK(mono() - t0 >= 0.09);
    CHECK(lb_proc_wait(NULL, 0, -1, err) == LB_EINVAL);
}

/* Only the last max_output bytes of each stream stay; the front is counted. */
static void test_output_tail(void) {
    /* 2.7 MB of numbered lines on stdout, 10 bytes on stderr, kept: 1 MiB */
    char *argv[] = {"sh", "-c", "seq 1 400000; printf 'stderr-end' >&2", NULL};
    lb_proc_opts o;
    lb_proc *p = NULL;
    char err[LB_ERR_LEN];
    const lb_buf *b;
    memset(&o, 0, sizeof o);
    o.argv = argv;
    o.max_output = 1 << 20;
    CHECK(lb_proc_spawn(&o, &p, err) == LB_OK);
    if (!p) return;
    CHECK(run(p) == LB_OK);
    b = lb_proc_output(p, 1);
    CHECK(b->len == 1 << 20);
    CHECK(lb_proc_dropped(p, 1) + b->len == 2688895);   /* wc -c of seq 1 400000 */
    CHECK(b->len >= 14 && memcmp(b->data + b->len - 14, "399999\n400000\n", 14) == 0);
    CHECK_STR("stderr-end", lb_proc_output(p, 2)->data);
    CHECK(lb_proc_dropped(p, 2) == 0);
    lb_proc_free(p);
    /* a budget smaller than one read */
    o.max_output = 5;
    CHECK(lb_proc_spawn(&o, &p, err) == LB_OK);
    if (!p) return;
    CHECK(run(p) == LB_OK);
    CHECK_STR("0000\n", lb_proc_output(p, 1)->data);
    CHECK(lb_proc_dropped(p, 1) == 2688890);
    lb_proc_free(p);
}

int main(void) {
    long live = lb_alloc_live();
    test_capture();
    test_output_tail();
    test_env_cwd();
    test_big_stdin();
    test_spawn_errors();
    test_many();
    test_kill_and_interrupt();
    test_sleep_only();
    CHECK(lb_alloc_live() == live);
    return lb_test_report("proc");
}
