/* lb_proc.c -- child processes behind lb_proc.h. */
#define _GNU_SOURCE   /* pipe2, posix_spawn_file_actions_addchdir_np */
#include "lb_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lb_alloc.h"
#include "lb_err.h"
#include "lb_intr.h"

extern char **environ;

#define LB_PROC_SLICE 0.25      /* longest poll: notice a SIGINT taken elsewhere */
#define LB_PROC_NOPIDFD 0.02    /* poll slice when exits cannot wake us */
#define LB_PROC_READ 65536

struct lb_proc {
    pid_t pid;
    int pidfd;                  /* -1: none (kernel < 5.3 or already reaped) */
    int fd_in, fd_out, fd_err;  /* our ends; -1 once closed */
    char *in;                   /* copy of the stdin bytes */
    size_t in_len, in_off;
    lb_buf out, err;
    size_t max_output;          /* tail kept per stream */
    size_t drop_out, drop_err;  /* bytes dropped from each stream's front */
    int reaped, status;         /* raw waitpid status once reaped */
    double kill_at;             /* SIGKILL deadline (monotonic), 0 = none */
};

static int no_pidfd;   /* set once pidfd_open proved unsupported */

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Find `name` in the PATH of envp (or ours); returns an lb_malloc'd path or
 * NULL with errno set (ENOENT / EACCES / ENOMEM). */
static char *find_program(const char *name, char *const *envp) {
    const char *path = NULL, *p;
    int saw_eacces = 0;
    size_t nlen = strlen(name);
    if (envp) {
        char *const *e;
        for (e = envp; *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    } else {
        path = getenv("PATH");
    }
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    for (p = path;; ) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        char *full = lb_malloc(dlen + nlen + 3);
        struct stat st;
        if (!full) { errno = ENOMEM; return NULL; }
        if (dlen == 0) { full[0] = '.'; dlen = 1; }
        else memcpy(full, p, dlen);
        full[dlen] = '/';
        memcpy(full + dlen + 1, name, nlen + 1);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(full, X_OK) == 0) return full;
            saw_eacces = 1;
        }
        lb_free(full);
        if (!end) break;
        p = end + 1;
    }
    errno = saw_eacces ? EACCES : ENOENT;
    return NULL;
}

static size_t key_len(const char *kv) {
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* base (or environ) with `add` merged over it: an lb_malloc'd array of
 * borrowed pointers, or NULL on ENOMEM. */
static char **merge_env(char *const *base, char *const *add) {
    size_t nb = 0, na = 0, i, j, k = 0;
    char **v;
    if (!base) base = environ;
    while (base && base[nb]) nb++;
    while (add[na]) na++;
    v = lb_malloc((nb + na + 1) * sizeof *v);
    if (!v) return NULL;
    for (i = 0; i < nb; i++) {
        size_t kl = key_len(base[i]);
        int replaced = 0;
        for (j = 0; j < na && !replaced; j++)
            replaced = key_len(add[j]) == kl && strncmp(add[j], base[i], kl) == 0;
        if (!replaced) v[k++] = base[i];
    }
    for (j = 0; j < na; j++) v[k++] = add[j];
    v[k] = NULL;
    return v;
}

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int lb_proc_spawn(const lb_proc_opts *o, lb_proc **out, char *err) {
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all, none;
    char *prog = NULL, **merged = NULL;
    char *const *envp;
    lb_proc *p;
    int rc, code = LB_EIO;
    const char *what = "pipe";

    *out = NULL;
    if (!o || !o->argv || !o->argv[0] || !o->argv[0][0])
        return lb_err_set(err, LB_EINVAL, "spawn: empty argv");
    p = lb_calloc(1, sizeof *p);
    if (!p) return lb_err_set(err, LB_ENOMEM, "spawn '%s': out of memory", o->argv[0]);
    p->pid = -1;
    p->pidfd = p->fd_in = p->fd_out = p->fd_err = -1;
    p->max_output = o->max_output ? o->max_output : LB_PROC_MAX_OUTPUT;
    if (o->stdin_data && o->stdin_len) {
        p->in = lb_malloc(o->stdin_len);
        if (!p->in) { lb_free(p); return lb_err_set(err, LB_ENOMEM, "spawn '%s': out of memory", o->argv[0]); }
        memcpy(p->in, o->stdin_data, o->stdin_len);
        p->in_len = o->stdin_len;
    }
    envp = o->envp;
    if (o->env_add) {
        merged = merge_env(o->envp, o->env_add);
        if (!merged) goto nomem;
        envp = merged;
    }
    if (strchr(o->argv[0], '/')) {
        prog = lb_strdup(o->argv[0]);
        if (!prog) goto nomem;
    } else {
        prog = find_program(o->argv[0], envp);
        if (!prog) {
            if (errno == ENOMEM) goto nomem;
            lb_err_set(err, LB_EIO, "spawn '%s': %s", o->argv[0],
                       errno == EACCES ? "permission denied" : "command not found in PATH");
            goto fail_early;
        }
    }
    if (o->cwd) {   /* checked here too: not every posix_spawn reports a failed chdir */
        struct stat st;
        const char *why = NULL;
        if (stat(o->cwd, &st) != 0) why = strerror(errno);
        else if (!S_ISDIR(st.st_mode)) why = "not a directory";
        if (why) {
            lb_err_set(err, LB_EIO, "spawn '%s': cwd '%s': %s", o->argv[0], o->cwd, why);
            goto fail_early;
        }
    }
    if ((o->stdin_data && pipe2(pin, O_CLOEXEC) != 0) || pipe2(pout, O_CLOEXEC) != 0 ||
        pipe2(perr, O_CLOEXEC) != 0)
        goto fail_errno;

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) { errno = rc; goto fail_errno; }
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        errno = rc;
        goto fail_errno;
    }
    sigfillset(&all);
    sigemptyset(&none);
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETPGROUP);
    if (!rc) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (!rc) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc) rc = o->stdin_data ? posix_spawn_file_actions_adddup2(&fa, pin[0], 0)
                                : posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    if (!rc && o->cwd) rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    what = "spawn";
    if (!rc) rc = posix_spawn(&p->pid, prog, &fa, &attr, o->argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        p->pid = -1;
        if (rc == ENOMEM) goto nomem;
        if (o->cwd && (rc == ENOENT || rc == ENOTDIR || rc == EACCES) && access(o->cwd, X_OK) != 0)
            lb_err_set(err, LB_EIO, "spawn '%s': cwd '%s': %s", o->argv[0], o->cwd, strerror(rc));
        else
            lb_err_set(err, LB_EIO, "spawn '%s': %s", o->argv[0], strerror(rc));
        goto fail_early;
    }
    lb_free(prog);
    lb_free(merged);
    close_fd(&pin[0]);
    close_fd(&pout[1]);
    close_fd(&perr[1]);
    p->fd_in = pin[1];
    p->fd_out = pout[0];
    p->fd_err = perr[0];
    set_nonblock(p->fd_out);
    set_nonblock(p->fd_err);
    if (p->fd_in >= 0) {
        set_nonblock(p->fd_in);
        if (p->in_len == 0) close_fd(&p->fd_in);
    }
#ifdef SYS_pidfd_open
    if (!no_pidfd) {   /* Linux >= 5.3: poll() wakes when the child exits */
        p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
        if (p->pidfd >= 0) fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
        else {
            if (errno == ENOSYS) no_pidfd = 1;   /* old kernel: poll in short slices */
            p->pidfd = -1;
        }
    }
#endif
    *out = p;
    return LB_OK;

fail_errno:
    lb_err_set(err, LB_EIO, "spawn '%s': %s: %s", o->argv[0], what, strerror(errno));
    goto fail_early;
nomem:
    code = lb_err_set(err, LB_ENOMEM, "spawn '%s': out of memory", o->argv[0]);
fail_early:
    close_fd(&pin[0]); close_fd(&pin[1]);
    close_fd(&pout[0]); close_fd(&pout[1]);
    close_fd(&perr[0]); close_fd(&perr[1]);
    lb_free(prog);
    lb_free(merged);
    lb_free(p->in);
    lb_free(p);
    return code;
}

/* Keep the last `keep` bytes of b, counting what goes in *dropped. */
static void keep_tail(lb_buf *b, size_t keep, size_t *dropped) {
    size_t cut;
    if (b->len <= keep) return;
    cut = b->len - keep;
    memmove(b->data, b->data + cut, keep);
    b->len = keep;
    b->data[keep] = '\0';
    *dropped += cut;
}

/* Read everything available on *fd into b, which keeps at most twice `keep`
 * bytes (then its last `keep`); EOF closes it and trims b to `keep`. */
static int drain(int *fd, lb_buf *b, size_t keep, size_t *dropped, char *err) {
    char chunk[LB_PROC_READ];
    while (*fd >= 0) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            if (b->len + (size_t)n > 2 * keep) keep_tail(b, keep > (size_t)n ? keep - (size_t)n : 0, dropped);
            if ((size_t)n > 2 * keep) {   /* a chunk bigger than the whole budget */
                *dropped += (size_t)n - keep;
                if (lb_buf_append(b, chunk + (size_t)n - keep, keep) != LB_OK)
                    return lb_err_set(err, LB_ENOMEM, "capture child output: out of memory");
                continue;
            }
            if (lb_buf_append(b, chunk, (size_t)n) != LB_OK)
                return lb_err_set(err, LB_ENOMEM, "capture child output: out of memory");
        } else if (n == 0) {
            close_fd(fd);
            keep_tail(b, keep, dropped);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            close_fd(fd);   /* EIO etc.: treat as end of output */
            keep_tail(b, keep, dropped);
        }
    }
    return LB_OK;
}

/* Feed stdin without letting a closed pipe raise SIGPIPE in this process. */
static void feed(lb_proc *p) {
    sigset_t pipe_set, old, pending;
    int was_pending;
    if (p->fd_in < 0) return;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    while (p->in_off < p->in_len) {
        ssize_t n = write(p->fd_in, p->in + p->in_off, p->in_len - p->in_off);
        if (n > 0) { p->in_off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EPIPE && !was_pending) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        p->in_off = p->in_len;   /* reader gone: drop the rest */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->in_off >= p->in_len) close_fd(&p->fd_in);
}

static void reap(lb_proc *p) {
    int st;
    pid_t r;
    if (p->reaped) return;
    do r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        p->reaped = 1;
        p->status = st;
        close_fd(&p->pidfd);
    } else if (r < 0 && errno == ECHILD) {
        /* reaped behind our back (SIGCHLD set to SIG_IGN by the host):
         * the status is lost; report exit code 255 */
        p->reaped = 1;
        p->status = 255 << 8;
        close_fd(&p->pidfd);
    }
}

int lb_proc_step(lb_proc *p, char *err) {
    int rc;
    feed(p);
    if ((rc = drain(&p->fd_out, &p->out, p->max_output, &p->drop_out, err)) != LB_OK) return rc;
    if ((rc = drain(&p->fd_err, &p->err, p->max_output, &p->drop_err, err)) != LB_OK) return rc;
    reap(p);
    if (p->reaped && p->fd_in >= 0) close_fd(&p->fd_in);
    if (p->kill_at > 0 && !lb_proc_done(p) && now_mono() >= p->kill_at) {
        kill(-p->pid, SIGKILL);
        if (!p->reaped) kill(p->pid, SIGKILL);
        p->kill_at = 0;
    }
    return LB_OK;
}

int lb_proc_wait(lb_proc *const *procs, size_t n, double timeout, char *err) {
    struct pollfd stackfds[32], *fds = stackfds;
    double deadline = timeout >= 0 ? now_mono() + timeout : -1;
    size_t i, cap = n * 4;
    int rc = LB_OK;

    if (n == 0 && timeout < 0) return lb_err_set(err, LB_EINVAL, "wait: nothing to wait for");
    if (cap > sizeof stackfds / sizeof stackfds[0]) {
        fds = lb_malloc(cap * sizeof *fds);
        if (!fds) return lb_err_set(err, LB_ENOMEM, "wait: out of memory");
    }
    for (;;) {
        double now, slice = LB_PROC_SLICE;
        nfds_t nf = 0;
        int done = 0, ms;
        for (i = 0; i < n; i++) {
            if ((rc = lb_proc_step(procs[i], err)) != LB_OK) goto out;
            if (lb_proc_done(procs[i])) done = 1;
        }
        if (done) { rc = LB_OK; goto out; }
        if (lb_intr_pending()) { rc = lb_err_set(err, LB_ECANCELED, "wait: interrupted"); goto out; }
        now = now_mono();
        if (deadline >= 0 && now >= deadline) {
            rc = lb_err_set(err, LB_ETIMEDOUT, "wait: timed out");
            goto out;
        }
        if (deadline >= 0 && deadline - now < slice) slice = deadline - now;
        for (i = 0; i < n; i++) {
            lb_proc *p = procs[i];
            if (p->fd_out >= 0) { fds[nf].fd = p->fd_out; fds[nf++].events = POLLIN; }
            if (p->fd_err >= 0) { fds[nf].fd = p->fd_err; fds[nf++].events = POLLIN; }
            if (p->fd_in >= 0) { fds[nf].fd = p->fd_in; fds[nf++].events = POLLOUT; }
            if (!p->reaped) {
                if (p->pidfd >= 0) { fds[nf].fd = p->pidfd; fds[nf++].events = POLLIN; }
                else if (slice > LB_PROC_NOPIDFD) slice = LB_PROC_NOPIDFD;
            }
            if (p->kill_at > 0 && p->kill_at - now < slice) slice = p->kill_at - now;
        }
        ms = (int)(slice * 1000.0 + 0.999);
        if (ms < 0) ms = 0;
        if (poll(fds, nf, ms) < 0 && errno != EINTR) {
            rc = lb_err_set(err, LB_EIO, "wait: poll: %s", strerror(errno));
            goto out;
        }
        if (timeout == 0) {   /* one round of progress only */
            for (i = 0; i < n; i++) {
                if ((rc = lb_proc_step(procs[i], err)) != LB_OK) goto out;
                if (lb_proc_done(procs[i])) { rc = LB_OK; goto out; }
            }
            rc = lb_err_set(err, LB_ETIMEDOUT, "wait: timed out");
            goto out;
        }
    }
out:
    if (fds != stackfds) lb_free(fds);
    return rc;
}

int lb_proc_done(const lb_proc *p) { return p->reaped && p->fd_out < 0 && p->fd_err < 0; }
int lb_proc_exited(const lb_proc *p) { return p->reaped; }
int lb_proc_pid(const lb_proc *p) { return (int)p->pid; }

int lb_proc_exit_code(const lb_proc *p) {
    return p->reaped && WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

int lb_proc_term_signal(const lb_proc *p) {
    return p->reaped && WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
}

const lb_buf *lb_proc_output(const lb_proc *p, int fd) { return fd == 2 ? &p->err : &p->out; }
size_t lb_proc_dropped(const lb_proc *p, int fd) { return fd == 2 ? p->drop_err : p->drop_out; }

int lb_proc_kill(lb_proc *p, int sig, char *err) {
    if (sig <= 0 || sig >= NSIG) return lb_err_set(err, LB_EINVAL, "kill: bad signal %d", sig);
    if (lb_proc_done(p)) return LB_OK;
    /* the group first (grandchildren holding our pipes), then the child in
     * case it left the group */
    kill(-p->pid, sig);
    if (!p->reaped) kill(p->pid, sig);
    return LB_OK;
}

void lb_proc_terminate(lb_proc *p, double grace) {
    if (lb_proc_done(p)) return;
    lb_proc_kill(p, SIGTERM, NULL);
    if (grace < 0) grace = 0;
    if (p->kill_at == 0 || now_mono() + grace < p->kill_at) p->kill_at = now_mono() + grace;
    if (p->kill_at == 0) p->kill_at = 1e-9;
}

void lb_proc_free(lb_proc *p) {
    if (!p) return;
    if (!p->reaped && p->pid > 0) {
        int st;
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {}
    } else if (p->fd_out >= 0 || p->fd_err >= 0) {
        kill(-p->pid, SIGKILL);   /* grandchildren still holding our pipes */
    }
    close_fd(&p->fd_in);
    close_fd(&p->fd_out);
    close_fd(&p->fd_err);
    close_fd(&p->pidfd);
    lb_buf_free(&p->out);
    lb_buf_free(&p->err);
    lb_free(p->in);
    lb_free(p);
}
