/* lb_proc.h -- child processes with captured output, waited on many at once.
 *
 * lb_proc_spawn starts a program (posix_spawn, no shell) in its own process
 * group with an exact environment, a working directory and stdin bytes;
 * stdout and stderr are captured through non-blocking pipes into lb_bufs,
 * each keeping only its last max_output bytes (the front is dropped and
 * counted: lb_proc_dropped), so a chatty child cannot exhaust memory.
 * lb_proc_wait makes progress on a whole set of children at once: one poll()
 * over every pipe (and, on Linux >= 5.3, every pidfd, so an exit wakes it),
 * reaping with waitpid(WNOHANG) for the child's own pid only (other
 * children of the process are never touched).  A child is "done" once it is
 * reaped AND both output pipes reached end of file.  SIGINT (lb_intr) ends a
 * wait with LB_ECANCELED; cancelling is lb_proc_terminate (SIGTERM to the
 * group now, SIGKILL after a grace period, enforced by later waits). */
#ifndef LB_PROC_H
#define LB_PROC_H

#include <stddef.h>

#include "lb_buf.h"

typedef struct lb_proc lb_proc;

typedef struct lb_proc_opts {
    char *const *argv;       /* NULL-terminated, argv[0] = program; without a '/'
                                it is searched in the PATH of envp (else of the
                                current environment) */
    char *const *envp;       /* NULL-terminated "K=V" list = the child's whole
                                environment; NULL = inherit ours */
    char *const *env_add;    /* NULL-terminated "K=V" list added to (replacing the
                                same names in) envp, or ours when envp is NULL */
    const char *cwd;         /* working directory; NULL = ours */
    const char *stdin_data;  /* bytes fed to stdin, then closed; NULL = /dev/null */
    size_t stdin_len;
    size_t max_output;       /* bytes of each stream kept (the last ones);
                                0 = LB_PROC_MAX_OUTPUT */
} lb_proc_opts;

#define LB_PROC_MAX_OUTPUT ((size_t)8 << 20)   /* default tail kept per stream */

/* Start a child.  On LB_OK *out owns the process (free with lb_proc_free).
 * The child gets default signal dispositions, an empty signal mask and a new
 * process group (so terminating it reaches its own children too).
 * Codes: LB_EINVAL (no argv[0]), LB_EIO (program not found, not
 * executable, bad cwd, pipe/spawn failure; errno text in err), LB_ENOMEM. */
int lb_proc_spawn(const lb_proc_opts *o, lb_proc **out, char *err);

/* Wait until at least one of procs[0..n) is done (LB_OK; also at once when
 * one already is), `timeout` seconds pass (LB_ETIMEDOUT; timeout < 0 = no
 * limit, 0 = just make progress) or lb_intr_pending() (LB_ECANCELED).  With
 * n == 0 it is an interruptible sleep (a negative timeout is then LB_EINVAL).
 * Every child in the set reads its pipes and is reaped meanwhile.  Other
 * codes: LB_ENOMEM (capturing output), LB_EIO (poll failed). */
int lb_proc_wait(lb_proc *const *procs, size_t n, double timeout, char *err);

/* Non-blocking progress on one child (read pipes, feed stdin, reap,
 * escalate a termination).  LB_OK, LB_ENOMEM or LB_EIO. */
int lb_proc_step(lb_proc *p, char *err);

int lb_proc_done(const lb_proc *p);      /* reaped and outputs at EOF */
int lb_proc_exited(const lb_proc *p);    /* reaped (outputs may still be open) */
int lb_proc_pid(const lb_proc *p);
/* After reaping: the exit code (0..255) or -1 when killed by a signal;
 * -1 before. */
int lb_proc_exit_code(const lb_proc *p);
/* After reaping: the signal that killed the child, else 0. */
int lb_proc_term_signal(const lb_proc *p);
/* The captured stdout (fd 1) or stderr (fd 2) so far; never NULL.  While
 * the child runs it holds up to twice max_output bytes (trimming is
 * amortised); once done, at most max_output: the stream's last bytes. */
const lb_buf *lb_proc_output(const lb_proc *p, int fd);
/* Bytes dropped from the front of stdout (fd 1) or stderr (fd 2): the
 * buffer holds stream bytes [dropped, dropped + len). */
size_t lb_proc_dropped(const lb_proc *p, int fd);

/* Send `sig` to the child's process group (a no-op once it is done).
 * LB_OK or LB_EINVAL (bad signal; err filled). */
int lb_proc_kill(lb_proc *p, int sig, char *err);
/* SIGTERM the group now; if it is still not done `grace` seconds later, the
 * next lb_proc_step/lb_proc_wait sends SIGKILL. */
void lb_proc_terminate(lb_proc *p, double grace);

/* Release a child: one still running is SIGKILLed (with its group) and
 * reaped (blocking) first.  NULL is a no-op. */
void lb_proc_free(lb_proc *p);

#endif
