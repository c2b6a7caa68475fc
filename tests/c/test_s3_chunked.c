/* test_s3_chunked.c -- the aws-chunked body encoder (lb_s3_chunked.c).
 *
 *   build/lua5.4/tests/test_s3_chunked          (offline)
 *
 * AWS's own example of a streaming upload (66,560 bytes of 'a' in 64 KiB
 * chunks, the SigV4 documentation's "Signature Calculation: Transfer
 * Payload in Multiple Chunks"): every chunk signature and the framing
 * byte for byte; the same body read through tiny buffers (the framed-aside
 * path) and through one large one (straight into the caller's buffer);
 * the length announced in advance; the data's CRC-32C; a file that
 * shrinks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "lb_alloc.h"
#include "lb_s3_int.h"
#include "lb_test.h"

#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG3 "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"

static lb_sigv4_result seed_sig(void) {
    lb_sigv4_result r;
    memset(&r, 0, sizeof r);
    r.amz_date = "20130524T000000Z";
    r.credential_scope = "20130524/us-east-1/s3/aws4_request";
    r.signature = SEED;
    return r;
}

static lb_s3_opts opts(void) {
    lb_s3_opts o;
    memset(&o, 0, sizeof o);
    o.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    return o;
}

/* The whole body read cap bytes at a time into *out (caller frees). */
static long read_all(int fd, int64_t len, size_t chunk, size_t cap, char **out, uint32_t *crc) {
    s3_chunked c;
    lb_sigv4_result sig = seed_sig();
    lb_s3_opts o = opts();
    size_t size = (size_t)s3_chunked_length(len, chunk) + 64, n = 0;
    long got;
    char *buf = malloc(size);
    memset(&c, 0, sizeof c);
    if (!buf || s3_chunked_start(&c, &o, "us-east-1", &sig, fd, 0, len, chunk) != LB_OK) {
        free(buf);
        return -1;
    }
    while ((got = s3_chunked_read(&c, buf + n, size - n < cap ? size - n : cap)) > 0) n += (size_t)got;
    if (got == 0 && crc) *crc = s3_chunked_crc(&c);
    s3_chunked_free(&c);
    *out = buf;
    return got < 0 ? got : (long)n;
}

static int temp_file(size_t n, char c, char *path) {
    char *data = malloc(n ? n : 1);
    int fd;
    strcpy(path, "/tmp/lb-test-chunked-XXXXXX");
    fd = mkstemp(path);
    memset(data, c, n);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        free(data);
        return -1;
    }
    free(data);
    return fd;
}

static void test_aws_example(void) {
    char path[64], *body = NULL, *body2 = NULL, want[256], *a = malloc(66560);
    uint32_t d1 = 1, d2 = 2;
    int fd = temp_file(66560, 'a', path);
    long n, n2;
    CHECK(fd >= 0);
    n = read_all(fd, 66560, 65536, 1 << 20, &body, &d1);
    memset(a, 'a', 66560);
    CHECK(d1 == lb_crc32c(0, a, 66560));       /* the data's CRC-32C, from the same pass */
    free(a);
    CHECK(n == s3_chunked_length(66560, 65536));
    CHECK(n == 66824);              /* the Content-Length of AWS's example */
    snprintf(want, sizeof want, "10000;chunk-signature=%s\r\n", SIG1);
    CHECK(n > 0 && strncmp(body, want, strlen(want)) == 0);
    CHECK(n > 0 && body[strlen(want)] == 'a' && memcmp(body + strlen(want) + 65536, "\r\n", 2) == 0);
    snprintf(want, sizeof want, "400;chunk-signature=%s\r\n", SIG2);
    CHECK(n > 0 && strncmp(body + 88 + 65536 + 2, want, strlen(want)) == 0);
    snprintf(want, sizeof want, "0;chunk-signature=%s\r\n\r\n", SIG3);
    CHECK(n > 0 && (size_t)n >= strlen(want) && memcmp(body + n - strlen(want), want, strlen(want)) == 0);
    /* through 7-byte buffers: the same bytes, the same digest */
    n2 = read_all(fd, 66560, 65536, 7, &body2, &d2);
    CHECK(n2 == n && memcmp(body, body2, (size_t)n) == 0 && d1 == d2);
    free(body);
    free(body2);
    close(fd);
    unlink(path);
}

/* Buffers of every size around a chunk's framing: identical output. */
static void test_buffer_sizes(void) {
    char path[64], *ref = NULL, *body = NULL;
    uint32_t d1 = 1, d2 = 2;
    size_t caps[] = { 1, 86, 8192 + 88, 8192 + 89, 8192 + 90, 20000, 3 * (8192 + 89) };
    int fd = temp_file(3 * 8192 + 5, 'z', path);
    size_t i;
    long n = read_all(fd, 3 * 8192 + 5, 8192, 1 << 20, &ref, &d1);
    CHECK(n == s3_chunked_length(3 * 8192 + 5, 8192));
    for (i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        long m = read_all(fd, 3 * 8192 + 5, 8192, caps[i], &body, &d2);
        CHECK(m == n && memcmp(ref, body, (size_t)n) == 0 && d1 == d2);
        free(body);
    }
    free(ref);
    /* an empty body is the final chunk alone */
    n = read_all(fd, 0, 8192, 100, &ref, NULL);
    CHECK(n == 86 && n == s3_chunked_length(0, 8192) && strncmp(ref, "0;chunk-signature=", 18) == 0);
    free(ref);
    /* a file shorter than announced fails, errno 0 ("shrank") */
    {
        s3_chunked c;
        lb_sigv4_result sig = seed_sig();
        lb_s3_opts o = opts();
        char buf[65536];
        memset(&c, 0, sizeof c);
        CHECK(s3_chunked_start(&c, &o, "us-east-1", &sig, fd, 0, 5 * 8192, 8192) == LB_OK);
        while ((n = s3_chunked_read(&c, buf, sizeof buf)) > 0) {}
        CHECK(n == -LB_EIO && c.err_no == 0);
        s3_chunked_free(&c);
    }
    close(fd);
    unlink(path);
}

int main(void) {
    test_aws_example();
    test_buffer_sizes();
    return lb_test_report("s3_chunked");
}
