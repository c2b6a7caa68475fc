/* lb_buf.c -- growable byte buffer. */
#include "lb_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_err.h"

int lb_buf_reserve(lb_buf *b, size_t extra) {
    size_t need = b->len + extra + 1, cap;
    char *p;
    if (need <= b->cap) return LB_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    p = lb_realloc(b->data, cap);
    if (!p) return LB_ENOMEM;
    b->data = p;
    b->cap = cap;
    return LB_OK;
}

int lb_buf_append(lb_buf *b, const void *p, size_t n) {
    if (lb_buf_reserve(b, n) != LB_OK) return LB_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return LB_OK;
}

int lb_buf_puts(lb_buf *b, const char *s) { return lb_buf_append(b, s, strlen(s)); }
int lb_buf_putc(lb_buf *b, char c) { return lb_buf_append(b, &c, 1); }

int lb_buf_printf(lb_buf *b, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return LB_EINVAL;
    if (lb_buf_reserve(b, (size_t)n) != LB_OK) return LB_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return LB_OK;
}

void lb_buf_reset(lb_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void lb_buf_free(lb_buf *b) {
    lb_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *lb_buf_detach(lb_buf *b, size_t *len) {
    char *p;
    if (!b->data && lb_buf_reserve(b, 0) != LB_OK) return NULL;
    p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
