/* lb_s3_adapt.c -- requests in flight that follow the measured throughput
 * (a hill climb): start at LB_S3_DEFAULT_CONCURRENCY; after each window
 * of LB_S3_ADAPT_WINDOW seconds, a step up of LB_S3_ADAPT_STEP that raised
 * the rate by LB_S3_ADAPT_GAIN is kept and followed by another, one that
 * did not is taken back and the climb ends.  Pure: no clock, no I/O. */
#include "lb_s3.h"

#include <string.h>

void lb_s3_adapt_init(lb_s3_adapt *a, int max) {
    memset(a, 0, sizeof *a);
    a->max = max < 1 ? 1 : max;
    a->cur = LB_S3_DEFAULT_CONCURRENCY < a->max ? LB_S3_DEFAULT_CONCURRENCY : a->max;
    a->peak = a->cur;
    a->t0 = -1;
}

int lb_s3_adapt_step(lb_s3_adapt *a, double now, int64_t bytes) {
    double rate;
    if (a->t0 < 0 || bytes < a->b0) {   /* first call, or a new phase */
        a->t0 = now;
        a->b0 = bytes;
        return a->cur;
    }
    if (a->done || now - a->t0 < LB_S3_ADAPT_WINDOW) return a->cur;
    rate = (double)(bytes - a->b0) / (now - a->t0);
    a->t0 = now;
    a->b0 = bytes;
    if (a->stepped) {
        a->stepped = 0;
        if (rate < a->best * LB_S3_ADAPT_GAIN) {    /* the step did not pay */
            a->cur -= LB_S3_ADAPT_STEP;
            a->done = 1;
            return a->cur;
        }
    }
    if (rate > a->best) a->best = rate;
    if (a->cur >= a->max) {
        a->done = 1;
        return a->cur;
    }
    a->cur = a->cur + LB_S3_ADAPT_STEP < a->max ? a->cur + LB_S3_ADAPT_STEP : a->max;
    a->stepped = 1;
    if (a->cur > a->peak) a->peak = a->cur;
    return a->cur;
}
