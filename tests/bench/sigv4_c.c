/* tests/bench/sigv4_c.c N: signing rate of the C core alone (lb_sigv4_sign)
 * for the requests tests/bench/sigv4.lua and sigv4_botocore.py sign (S3 GET
 * with a Range header, Batch POST with a JSON body and a session token,
 * alternating).  Prints 'c N signatures S s' with S the process CPU time. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lb_sigv4.h"

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000, i;
    static const char body[] = "{\"jobs\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}";
    lb_sigv4_header hs3[] = {{"Range", "bytes=0-1023"}};
    lb_sigv4_header hbatch[] = {{"Content-Type", "application/json"}};
    lb_sigv4_request s3, batch;
    lb_sigv4_result res;
    double t0;
    lb_sigv4_request_init(&s3);
    s3.method = "GET";
    s3.url = "https://bucket.s3.us-east-1.amazonaws.com/runs/r1/result.json";
    s3.headers = hs3;
    s3.nheaders = 1;
    s3.region = "us-east-1";
    s3.service = "s3";
    s3.access_key = "AKIDEXAMPLE";
    s3.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    s3.session_token = "session-token-example";
    s3.s3 = s3.content_sha256_header = 1;
    batch = s3;
    batch.method = "POST";
    batch.url = "https://batch.us-east-1.amazonaws.com/v1/describejobs";
    batch.headers = hbatch;
    batch.service = "batch";
    batch.body = body;
    batch.body_len = sizeof body - 1;
    batch.s3 = batch.content_sha256_header = 0;
    s3.time = batch.time = (int64_t)time(NULL);
    t0 = cpu();
    for (i = 0; i < n; i++) {
        if (lb_sigv4_sign(i % 2 ? &batch : &s3, &res, NULL) != 0) return 1;
        lb_sigv4_result_free(&res);
    }
    printf("c %ld signatures %.4f s\n", n, cpu() - t0);
    return 0;
}
