/* lb_intr.h -- process-wide interrupt flag.
 *
 * The executable's SIGINT handler calls lb_intr_raise(); long operations in
 * the core (curl transfers, waits) poll lb_intr_pending() and stop with
 * LB_ECANCELED.  The flag is cleared by whoever reports the cancellation
 * (the REPL, before it prints the next prompt) with lb_intr_clear(). */
#ifndef LB_INTR_H
#define LB_INTR_H

void lb_intr_raise(void);      /* async-signal-safe */
int lb_intr_pending(void);
void lb_intr_clear(void);

#endif
