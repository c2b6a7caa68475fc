/* lb_intr.c -- the interrupt flag behind lb_intr.h. */
#include "lb_intr.h"

#include <signal.h>

static volatile sig_atomic_t interrupted;

void lb_intr_raise(void) { interrupted = 1; }
int lb_intr_pending(void) { return interrupted != 0; }
void lb_intr_clear(void) { interrupted = 0; }
