/* fuzz_sigv4.c -- libFuzzer target: SigV4 canonicalisation (URL path,
 * query, headers) through lb_sigv4_sign.  Input: a flags byte, then lines
 * method / url / header lines "name:value" ... / an empty line / body.
 * Contract: LB_OK gives a 64-hex signature, a canonical request that
 * starts with the method, and the same result when signed again; any
 * failure is LB_EINVAL with a message; nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb_err.h"
#include "lb_sigv4.h"

#define MAXH 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_sigv4_request req;
    lb_sigv4_result res, again;
    lb_sigv4_header h[MAXH];
    char *buf, *line, *next, *lines[2 + MAXH];
    char err[LB_ERR_LEN] = "";
    size_t nl = 0, i;
    int rc, flags;
    if (size < 1) return 0;
    flags = data[0];
    buf = malloc(size);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';                     /* NUL-terminated strings only */
    lb_sigv4_request_init(&req);
    for (line = buf; line && nl < 2 + MAXH; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (nl >= 2 && !*line) break;         /* blank line: the body follows */
        lines[nl++] = line;
    }
    if (nl < 2) { free(buf); return 0; }
    req.method = lines[0];
    req.url = lines[1];
    for (i = 2; i < nl; i++) {
        char *colon = strchr(lines[i], ':');
        h[i - 2].name = lines[i];
        h[i - 2].value = colon ? (*colon = '\0', colon + 1) : "";
    }
    req.headers = h;
    req.nheaders = nl - 2;
    if (next) { req.body = next; req.body_len = strlen(next); }
    req.region = "us-east-1";
    req.service = flags & 1 ? "s3" : "service";
    req.s3 = flags & 1;
    req.query_mode = (flags >> 1) & 1;
    req.normalize_path = (flags >> 2) & 1;
    req.content_sha256_header = (flags >> 3) & 1;
    req.session_token = flags & 16 ? "AQoDYXdzEJr" : NULL;
    req.omit_session_token = (flags >> 5) & 1;
    req.expires = flags & 64 ? 604801 : 3600;  /* one over the cap: EINVAL */
    req.access_key = "AKIDEXAMPLE";
    req.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    req.amz_date = "20150830T123600Z";
    rc = lb_sigv4_sign(&req, &res, err);
    if (rc == LB_OK) {
        if (!res.signature || strlen(res.signature) != 64 || !res.canonical_request
            || strncmp(res.canonical_request, req.method, strlen(req.method)) != 0) abort();
        if (lb_sigv4_sign(&req, &again, err) != LB_OK
            || strcmp(res.signature, again.signature) != 0) abort();
        lb_sigv4_result_free(&again);
        lb_sigv4_result_free(&res);
    } else if (rc != LB_EINVAL || !err[0] || res.signature) {
        abort();
    }
    free(buf);
    return 0;
}
