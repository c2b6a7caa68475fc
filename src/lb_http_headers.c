/* lb_http_headers.c -- response headers of the HTTP engine (lb_http_int.h):
 * parsing the lines libcurl reports into lb_http_header entries, and the
 * lookup and freeing of a response's headers (lb_http.h).  Each entry is
 * one lb_malloc'd block, value after name's NUL. */
#include "lb_http_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "lb_alloc.h"

void lb_http_headers_free(lb_http_header *h, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) lb_free(h[i].name);
    lb_free(h);
}

static void clear(lb_http_hdrs *hs) {
    size_t i;
    for (i = 0; i < hs->n; i++) lb_free(hs->h[i].name);
    hs->n = 0;
    hs->bytes = 0;
}

static size_t trim(const char **p, size_t n) {
    while (n && isspace((unsigned char)**p)) { (*p)++; n--; }
    while (n && isspace((unsigned char)(*p)[n - 1])) n--;
    return n;
}

/* One header line: name and value in one block, value after name's NUL. */
static int add(lb_http_hdrs *hs, const char *name, size_t nn, const char *val, size_t vn) {
    char *blk;
    if (hs->n == hs->cap) {
        size_t cap = hs->cap ? 2 * hs->cap : 16;
        lb_http_header *h = lb_realloc(hs->h, cap * sizeof *h);
        if (!h) return LB_ENOMEM;
        hs->h = h;
        hs->cap = cap;
    }
    blk = lb_malloc(nn + vn + 2);
    if (!blk) return LB_ENOMEM;
    memcpy(blk, name, nn);
    blk[nn] = '\0';
    memcpy(blk + nn + 1, val, vn);
    blk[nn + 1 + vn] = '\0';
    hs->h[hs->n].name = blk;
    hs->h[hs->n].value = blk + nn + 1;
    hs->n++;
    return LB_OK;
}

/* Continuation of the previous header (obsolete line folding). */
static int fold(lb_http_hdrs *hs, const char *val, size_t vn) {
    lb_http_header *last = &hs->h[hs->n - 1];
    size_t nn = strlen(last->name), ov = strlen(last->value);
    char *blk = lb_realloc(last->name, nn + 1 + ov + 1 + vn + 1);
    if (!blk) return LB_ENOMEM;
    blk[nn + 1 + ov] = ' ';
    memcpy(blk + nn + 1 + ov + 1, val, vn);
    blk[nn + 1 + ov + 1 + vn] = '\0';
    last->name = blk;
    last->value = blk + nn + 1;
    return LB_OK;
}

int lb_http_hdrs_line(lb_http_hdrs *hs, const char *p, size_t len, char *err) {
    size_t n = len, nn, vn;
    const char *colon, *name = p, *val;
    int rc;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new response begins */
        clear(hs);
        return LB_OK;
    }
    if ((hs->bytes += n) > LB_HTTP_MAX_HEADER_BYTES)
        return lb_err_set(err, LB_EHTTP, "response headers larger than %zu bytes (limit)",
                          (size_t)LB_HTTP_MAX_HEADER_BYTES);
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) len--;
    if (!len) return LB_OK;
    if ((p[0] == ' ' || p[0] == '\t') && hs->n) {
        val = p;
        vn = trim(&val, len);
        rc = fold(hs, val, vn);
    } else {
        colon = memchr(p, ':', len);
        if (!colon) return LB_OK;                   /* not a header: ignore */
        nn = trim(&name, (size_t)(colon - p));
        val = colon + 1;
        vn = trim(&val, len - (size_t)(colon + 1 - p));
        rc = add(hs, name, nn, val, vn);
    }
    if (rc != LB_OK) return lb_err_set(err, LB_ENOMEM, "out of memory reading response headers");
    return LB_OK;
}

const char *lb_http_response_header(const lb_http_response *resp, const char *name) {
    size_t i;
    for (i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0) return resp->headers[i].value;
    return NULL;
}
