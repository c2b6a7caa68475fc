/* lb_http_int.h -- internals of the HTTP engine shared by lb_http.c and
 * lb_http_headers.c (not a public API): the response headers a transfer
 * collects, one header line at a time as libcurl hands them over. */
#ifndef LB_HTTP_INT_H
#define LB_HTTP_INT_H

#include <stddef.h>

#include "lb_http.h"

/* The headers of the response being received (zero-initialise).  h[0..n)
 * are lb_http_header entries as a response holds them; bytes counts this
 * response's header lines, against LB_HTTP_MAX_HEADER_BYTES. */
typedef struct lb_http_hdrs {
    lb_http_header *h;
    size_t n, cap, bytes;
} lb_http_hdrs;

/* Take one raw header line (p[0..len), CRLF included).  A status line
 * ("HTTP/...") starts a new response: the headers so far (an interim 1xx
 * or a proxy's CONNECT reply) are dropped.  A line starting with a space or
 * tab continues the previous header; a line without a colon is ignored.
 * Returns LB_OK, or LB_EHTTP (the limit is passed) / LB_ENOMEM with err
 * (LB_ERR_LEN bytes) set; the headers taken so far stay valid. */
int lb_http_hdrs_line(lb_http_hdrs *hs, const char *p, size_t len, char *err);

/* Free h[0..n) and h (what lb_http_response_free and an unfinished
 * transfer do); NULL is a no-op. */
void lb_http_headers_free(lb_http_header *h, size_t n);

#endif
