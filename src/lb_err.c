/* lb_err.c -- names and formatting of LB_E* codes. */
#include "lb_err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const names[LB_ECOUNT_] = {
    "OK", "ENOMEM", "EINVAL", "EIO", "ETIMEDOUT", "ECANCELED",
    "ECONNECT", "ETLS", "EHTTP", "EPARSE", "ECALLBACK",
    "EINTEGRITY", "ESERVICE",
};

const char *lb_err_name(int code) {
    if (code < 0 || code >= LB_ECOUNT_) return "EUNKNOWN";
    return names[code];
}

int lb_err_set(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, LB_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return code;
}
