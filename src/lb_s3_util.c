/* lb_s3_util.c -- the pure pieces of the S3 transfers: part sizing, key
 * and URL encoding, the CompleteMultipartUpload document, composite
 * digests, error documents (lb_s3.h "pieces", lb_s3_int.h helpers). */
#include "lb_s3_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lb_alloc.h"
#include "lb_crc32c.h"
#include "lb_buf.h"
#include "lb_xml.h"

double s3_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void s3_hex(const unsigned char *p, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int64_t s3_ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }

int64_t s3_parse_size(const char *s) {
    int64_t v = 0;
    size_t i;
    if (!s) return -1;
    for (i = 0; s[i]; i++) {
        int d = s[i] - '0';
        if (d < 0 || d > 9) return -1;
        v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;     /* saturates */
    }
    return i ? v : -1;
}

/* Every step stays below 2^63: size <= LB_S3_MAX_OBJECT (~2^45.6) and
 * ps <= LB_S3_MAX_PART once clamped; ceilings divide, never add. */
int64_t lb_s3_part_size(int64_t size, int64_t requested) {
    int64_t ps = requested, mib = 1 << 20;
    if (size < 0) size = 0;
    if (size > LB_S3_MAX_OBJECT) size = LB_S3_MAX_OBJECT;
    if (ps <= 0) {
        ps = s3_ceil_div(s3_ceil_div(size, LB_S3_MAX_PARTS), mib) * mib;
        if (ps < LB_S3_DEFAULT_PART) ps = LB_S3_DEFAULT_PART;
    }
    if (ps < LB_S3_MIN_PART) ps = LB_S3_MIN_PART;
    if (ps > LB_S3_MAX_PART) ps = LB_S3_MAX_PART;
    if (s3_ceil_div(size, ps) > LB_S3_MAX_PARTS)    /* <= 5 GiB, a whole MiB */
        ps = s3_ceil_div(s3_ceil_div(size, LB_S3_MAX_PARTS), mib) * mib;
    return ps;
}

int64_t lb_s3_stored_part_size(int64_t size, const char *lbsha, const char *lbps) {
    const char *dash = lbsha ? strchr(lbsha, '-') : NULL;
    int64_t n, ps = s3_parse_size(lbps);
    size_t i;
    if (!dash || (dash - lbsha != 64 && dash - lbsha != 8) || size < 0 || size > LB_S3_MAX_OBJECT)
        return 0;
    for (i = 0; i < (size_t)(dash - lbsha); i++)
        if (!strchr("0123456789abcdefABCDEF", lbsha[i])) return 0;
    n = s3_parse_size(dash + 1);
    if (n < 1 || n > LB_S3_MAX_PARTS || ps < LB_S3_MIN_PART || ps > LB_S3_MAX_PART) return 0;
    return s3_ceil_div(size, ps) == n ? ps : 0;
}

int lb_s3_bucket_ok(const char *bucket) {
    size_t n = bucket ? strlen(bucket) : 0, i;
    if (n < 3 || n > 63) return 0;
    for (i = 0; i < n; i++) {
        char c = bucket[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && ((c != '.' && c != '-') || i == 0 || i == n - 1)) return 0;
    }
    return 1;
}

static int unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
        || c == '-' || c == '_' || c == '.' || c == '~';
}

static char *encode(const char *s, int keep_slash) {
    static const char hx[] = "0123456789ABCDEF";
    size_t n = strlen(s), i, j = 0;
    char *out = lb_malloc(3 * n + 1);
    if (!out) return NULL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hx[c >> 4];
            out[j++] = hx[c & 15];
        }
    }
    out[j] = '\0';
    return out;
}

char *lb_s3_encode_key(const char *key) { return encode(key, 1); }

/* encode(s, 0) into out (3 * strlen + 1 bytes fit), no allocation. */
void s3_encode_into(const char *s, char *out, size_t cap) {
    static const char hx[] = "0123456789ABCDEF";
    size_t j = 0;
    for (; *s && j + 4 <= cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (unreserved(c)) {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hx[c >> 4];
            out[j++] = hx[c & 15];
        }
    }
    out[j] = '\0';
}

char *lb_s3_object_url(const char *endpoint, const char *bucket, const char *key, int virtual_host) {
    const char *host = strstr(endpoint, "://");
    size_t elen = strlen(endpoint);
    char *ek, *out;
    lb_buf b = { 0 };
    int rc;
    if (!host || host == endpoint || !lb_s3_bucket_ok(bucket)) return NULL;
    host += 3;
    while (elen && endpoint[elen - 1] == '/') elen--;
    if (!(ek = lb_s3_encode_key(key))) return NULL;
    if (virtual_host)
        rc = lb_buf_printf(&b, "%.*s%s.%.*s/%s", (int)(host - endpoint), endpoint, bucket,
                           (int)(elen - (size_t)(host - endpoint)), host, ek);
    else
        rc = lb_buf_printf(&b, "%.*s/%s/%s", (int)elen, endpoint, bucket, ek);
    lb_free(ek);
    if (rc != LB_OK) { lb_buf_free(&b); return NULL; }
    out = lb_buf_detach(&b, NULL);
    return out;
}

/* Text with &, <, > escaped (ETags hold quotes, which element text may). */
static int xml_text(lb_buf *b, const char *s) {
    int rc = LB_OK;
    for (; *s && rc == LB_OK; s++) {
        if (*s == '&') rc = lb_buf_puts(b, "&amp;");
        else if (*s == '<') rc = lb_buf_puts(b, "&lt;");
        else if (*s == '>') rc = lb_buf_puts(b, "&gt;");
        else rc = lb_buf_putc(b, *s);
    }
    return rc;
}

char *lb_s3_complete_xml(const char *const *etags, size_t n) {
    lb_buf b = { 0 };
    size_t i;
    int rc = lb_buf_puts(&b, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (i = 0; i < n && rc == LB_OK; i++) {
        rc = lb_buf_printf(&b, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        if (rc == LB_OK) rc = xml_text(&b, etags[i] ? etags[i] : "");
        if (rc == LB_OK) rc = lb_buf_puts(&b, "</ETag></Part>");
    }
    if (rc == LB_OK) rc = lb_buf_puts(&b, "</CompleteMultipartUpload>");
    if (rc != LB_OK) { lb_buf_free(&b); return NULL; }
    return lb_buf_detach(&b, NULL);
}

void lb_s3_crc_composite(const uint32_t *crcs, size_t n, char *out, size_t cap) {
    uint32_t c = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char be[4] = { (unsigned char)(crcs[i] >> 24), (unsigned char)(crcs[i] >> 16),
                                (unsigned char)(crcs[i] >> 8), (unsigned char)crcs[i] };
        c = lb_crc32c(c, be, 4);
    }
    snprintf(out, cap, "%08x-%zu", (unsigned)c, n);
}

char *lb_s3_tagging_xml(const char *key, const char *value) {
    lb_buf b = { 0 };
    int rc = lb_buf_puts(&b, "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet><Tag><Key>");
    if (rc == LB_OK) rc = xml_text(&b, key);
    if (rc == LB_OK) rc = lb_buf_puts(&b, "</Key><Value>");
    if (rc == LB_OK) rc = xml_text(&b, value);
    if (rc == LB_OK) rc = lb_buf_puts(&b, "</Value></Tag></TagSet></Tagging>");
    if (rc != LB_OK) { lb_buf_free(&b); return NULL; }
    return lb_buf_detach(&b, NULL);
}

int lb_s3_composite(const unsigned char *digests, size_t n, char *out, size_t cap) {
    unsigned char md[32];
    unsigned int len = 0;
    char hex[65];
    if (!EVP_Digest(n ? (const void *)digests : "", n * 32, md, &len, EVP_sha256(), NULL))
        return LB_ENOMEM;
    s3_hex(md, 32, hex);
    snprintf(out, cap, "%s-%zu", hex, n);
    return LB_OK;
}

void s3_copy_text(char *dst, size_t cap, const char *src) {
    if (!cap) return;
    snprintf(dst, cap, "%s", src ? src : "");
}

int lb_s3_parse_error(const char *body, size_t len, char *code, size_t code_cap,
                      char *msg, size_t msg_cap) {
    lb_xml_elem *root = NULL;
    int rc;
    s3_copy_text(code, code_cap, "");
    s3_copy_text(msg, msg_cap, "");
    if (!body || !len) return LB_EPARSE;
    if ((rc = lb_xml_parse(body, len, &root, NULL)) != LB_OK) return rc;
    if (strcmp(root->name, "Error") != 0) {
        lb_xml_free(root);
        return LB_EPARSE;
    }
    s3_copy_text(code, code_cap, lb_xml_child_text(root, "Code"));
    s3_copy_text(msg, msg_cap, lb_xml_child_text(root, "Message"));
    lb_xml_free(root);
    return LB_OK;
}

void lb_s3_result_free(lb_s3_result *res) {
    if (!res) return;
    lb_free(res->etag);
    lb_free(res->checksum);
    lb_free(res->upload_id);
    memset(res, 0, sizeof *res);
}

