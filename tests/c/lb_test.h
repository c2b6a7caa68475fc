/* lb_test.h -- the two-macro C test harness (in the spirit of testhelp.h).
 *
 *   CHECK(cond)            count one check; print file:line and the text on failure
 *   CHECK_STR(want, got)   compare two C strings, printing both on mismatch
 *   return lb_test_report("name");   prints "TEST name: N passed, M failed"
 *                                    and returns 0 iff nothing failed.
 * tests/run adds up the "TEST" lines of every binary. */
#ifndef LB_TEST_H
#define LB_TEST_H

#include <stdio.h>
#include <string.h>

static int lb_checks, lb_failures;

#define CHECK(c)                                                              \
    (++lb_checks, (c) ? (void)0                                               \
                      : (void)(fprintf(stderr, "%s:%d: CHECK failed: %s\n",  \
                                       __FILE__, __LINE__, #c),               \
                               ++lb_failures))

#define CHECK_STR(want, got)                                                  \
    do {                                                                      \
        const char *w_ = (want), *g_ = (got);                                 \
        ++lb_checks;                                                          \
        if (!w_ || !g_ || strcmp(w_, g_) != 0) {                              \
            fprintf(stderr, "%s:%d: strings differ\n--- want\n%s\n--- got\n%s\n", \
                    __FILE__, __LINE__, w_ ? w_ : "(null)", g_ ? g_ : "(null)"); \
            ++lb_failures;                                                    \
        }                                                                     \
    } while (0)

static inline int lb_test_report(const char *name) {
    printf("TEST %s: %d passed, %d failed\n", name, lb_checks - lb_failures, lb_failures);
    return lb_failures ? 1 : 0;
}

#endif
