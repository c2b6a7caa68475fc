/* lb_alloc.h -- the one allocator of the C core.
 *
 * All core memory goes through these, so tests can fail the k-th
 * allocation (lb_alloc_fail_after) and prove every path returns LB_ENOMEM
 * and leaks nothing (STYLE rule 26).  lb_free(NULL) is a no-op. */
#ifndef LB_ALLOC_H
#define LB_ALLOC_H

#include <stddef.h>

void *lb_malloc(size_t n);
void *lb_calloc(size_t count, size_t n);
void *lb_realloc(void *p, size_t n);
char *lb_strdup(const char *s);
char *lb_strndup(const char *s, size_t n);
void lb_free(void *p);

/* Test hook: make the allocation after the next `k` succeed fail
 * (k = 0 fails the very next one); k < 0 turns injection off.  Not thread
 * safe; meant for single-threaded unit tests only. */
void lb_alloc_fail_after(long k);
/* Number of live blocks allocated through this module (for leak checks). */
long lb_alloc_live(void);

#endif
