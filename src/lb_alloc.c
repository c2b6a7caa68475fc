/* lb_alloc.c -- malloc wrappers with fault injection and a live count. */
#include "lb_alloc.h"

#include <stdlib.h>
#include <string.h>

static long fail_countdown = -1;   /* <0: off; 0: fail next */
static long live_blocks;           /* test statistic only */

static int should_fail(void) {
    if (fail_countdown < 0) return 0;
    if (fail_countdown == 0) { fail_countdown = -1; return 1; }
    fail_countdown--;
    return 0;
}

void *lb_malloc(size_t n) {
    void *p;
    if (should_fail()) return NULL;
    p = malloc(n ? n : 1);
    if (p) __atomic_add_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
    return p;
}

void *lb_calloc(size_t count, size_t n) {
    void *p;
    if (should_fail()) return NULL;
    p = calloc(count ? count : 1, n ? n : 1);
    if (p) __atomic_add_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
    return p;
}

void *lb_realloc(void *p, size_t n) {
    void *q;
    if (!p) return lb_malloc(n);
    if (should_fail()) return NULL;
    q = realloc(p, n ? n : 1);
    return q;
}

char *lb_strndup(const char *s, size_t n) {
    char *d = lb_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *lb_strdup(const char *s) { return lb_strndup(s, strlen(s)); }

void lb_free(void *p) {
    if (!p) return;
    __atomic_sub_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
    free(p);
}

void lb_alloc_fail_after(long k) { fail_countdown = k; }
long lb_alloc_live(void) { return __atomic_load_n(&live_blocks, __ATOMIC_RELAXED); }
