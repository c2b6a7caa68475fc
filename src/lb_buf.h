/* lb_buf.h -- growable byte buffer (always NUL-terminated when non-empty).
 *
 * A zeroed lb_buf is a valid empty buffer.  The buffer owns `data`;
 * lb_buf_free releases it and leaves an empty buffer.  Append functions
 * return LB_OK or LB_ENOMEM and leave the buffer unchanged on failure. */
#ifndef LB_BUF_H
#define LB_BUF_H

#include <stddef.h>

typedef struct lb_buf {
    char *data;    /* NULL or len+1 bytes, data[len] == '\0' */
    size_t len;    /* bytes used */
    size_t cap;    /* bytes allocated */
} lb_buf;

int lb_buf_reserve(lb_buf *b, size_t extra);
int lb_buf_append(lb_buf *b, const void *p, size_t n);
int lb_buf_puts(lb_buf *b, const char *s);
int lb_buf_putc(lb_buf *b, char c);
int lb_buf_printf(lb_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void lb_buf_reset(lb_buf *b);   /* len = 0, keeps memory */
void lb_buf_free(lb_buf *b);
/* Hand the data over to the caller (who frees it with lb_free); the buffer
 * becomes empty.  Returns an empty allocated string for an empty buffer, or
 * NULL on allocation failure. */
char *lb_buf_detach(lb_buf *b, size_t *len);

#endif
