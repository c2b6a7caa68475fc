/* test_sigv4.c -- the SigV4 signer against the AWS signing test suite and
 * a few properties (allocation failure, key cache, file hashing, S3 path
 * rules, UNSIGNED-PAYLOAD).
 *
 * usage: test_sigv4 [TESTDATA_DIR]   (default $SIGV4_TESTDATA, else tests/fixtures/sigv4,
 * one directory per case with request.txt, context.json and the header-* /
 * query-* expected canonical request, string to sign and signature). */
#include "lb_sigv4_int.h"  /* first: it lets SHA256_* in unwarned (lb_sigv4_hmac_sts) */

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lb_alloc.h"
#include "lb_err.h"
#include "lb_sigv4.h"
#include "lb_test.h"

#define MAXH 32

/* ------------------------------------------------------------ file helpers */

static char *slurp(const char *dir, const char *name) {
    char path[1024];
    FILE *f;
    long n;
    char *s;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = '\0';
    fclose(f);
    return s;
}

static void chomp(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
}

/* ------------------------------------------------------ context.json bits */

/* Value of "key": a string (copied into out) or a literal (true/false/number). */
static int json_get(const char *js, const char *key, char *out, size_t outn) {
    char pat[128];
    const char *p;
    size_t o = 0;
    snprintf(pat, sizeof pat, "\"%s\"", key);
    p = strstr(js, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ':') p++;
    if (*p == '"') {
        for (p++; *p && *p != '"' && o + 1 < outn; p++) {
            if (*p == '\\' && p[1]) p++;
            out[o++] = *p;
        }
    } else {
        while (*p && *p != ',' && *p != '}' && *p != '\n' && o + 1 < outn) out[o++] = *p++;
    }
    out[o] = '\0';
    return 1;
}

static int json_true(const char *js, const char *key) {
    char v[16];
    return json_get(js, key, v, sizeof v) && strcmp(v, "true") == 0;
}

/* ------------------------------------------------------ request.txt parser */

typedef struct http_req {
    char method[16];
    char url[1024];
    lb_sigv4_header h[MAXH];
    char *names[MAXH], *values[MAXH];
    size_t nh;
    const char *body;
    size_t body_len;
} http_req;

static void http_req_free(http_req *r) {
    size_t i;
    for (i = 0; i < r->nh; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
}

/* "METHOD /path?query HTTP/1.1\nName:value\n  continuation\n\nbody".
 * The path may hold spaces (get-space-*), so it runs to the last " HTTP/".
 * Continuation lines are kept, newline included, as the value's folding. */
static int parse_request(char *text, http_req *r) {
    char *line = text, *nl, *sp, *http;
    const char *host = "";
    memset(r, 0, sizeof *r);
    nl = strchr(line, '\n');
    if (!nl) return 0;
    *nl = '\0';
    sp = strchr(line, ' ');
    http = strstr(line, " HTTP/");
    if (!sp || !http || http < sp) return 0;
    snprintf(r->method, sizeof r->method, "%.*s", (int)(sp - line), line);
    {
        char path[900];
        snprintf(path, sizeof path, "%.*s", (int)(http - sp - 1), sp + 1);
        line = nl + 1;
        while (*line && *line != '\n') {
            char *colon;
            nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            if ((*line == ' ' || *line == '\t') && r->nh) {  /* continuation */
                size_t a = strlen(r->values[r->nh - 1]), b = strlen(line);
                r->values[r->nh - 1] = realloc(r->values[r->nh - 1], a + b + 2);
                r->values[r->nh - 1][a] = '\n';
                memcpy(r->values[r->nh - 1] + a + 1, line, b + 1);
            } else if ((colon = strchr(line, ':')) && r->nh < MAXH) {
                r->names[r->nh] = strndup(line, (size_t)(colon - line));
                r->values[r->nh] = strdup(colon + 1);
                r->nh++;
            }
            if (!nl) { line += strlen(line); break; }
            line = nl + 1;
        }
        if (*line == '\n') line++;
        r->body = line;
        r->body_len = strlen(line);
        for (size_t i = 0; i < r->nh; i++) {
            r->h[i].name = r->names[i];
            r->h[i].value = r->values[i];
            if (strcasecmp(r->names[i], "host") == 0) host = r->values[i];
        }
        snprintf(r->url, sizeof r->url, "https://%s%s", host, path);
    }
    return 1;
}

/* ------------------------------------------------------------ suite cases */

static void iso_to_amz(const char *iso, char out[17]) {
    /* 2015-08-30T12:36:00Z -> 20150830T123600Z */
    size_t o = 0;
    for (; *iso && o < 16; iso++)
        if (*iso != '-' && *iso != ':') out[o++] = *iso;
    out[o] = '\0';
}

static int stage_ok(const char *cs, const char *mode, const char *stage, const char *want,
                    const char *got) {
    ++lb_checks;
    if (want && got && strcmp(want, got) == 0) return 1;
    ++lb_failures;
    fprintf(stderr, "FAIL %s [%s] %s\n--- want\n%s\n--- got\n%s\n", cs, mode, stage,
            want ? want : "(missing file)", got ? got : "(null)");
    return 0;
}

static int run_case(const char *root, const char *cs) {
    char dir[1024], ak[128], sk[128], tok[1024], region[64], service[64], ts[64], date[17],
        exp[32], fname[128];
    char *ctx, *reqtxt;
    http_req hr;
    int ok = 1, mode;
    snprintf(dir, sizeof dir, "%s/%s", root, cs);
    ctx = slurp(dir, "context.json");
    reqtxt = slurp(dir, "request.txt");
    if (!ctx || !reqtxt || !parse_request(reqtxt, &hr)) {
        fprintf(stderr, "FAIL %s: cannot read request.txt/context.json\n", cs);
        ++lb_checks, ++lb_failures;
        free(ctx);
        free(reqtxt);
        return 0;
    }
    json_get(ctx, "access_key_id", ak, sizeof ak);
    json_get(ctx, "secret_access_key", sk, sizeof sk);
    json_get(ctx, "region", region, sizeof region);
    json_get(ctx, "service", service, sizeof service);
    json_get(ctx, "timestamp", ts, sizeof ts);
    if (!json_get(ctx, "expiration_in_seconds", exp, sizeof exp)) strcpy(exp, "3600");
    iso_to_amz(ts, date);
    for (mode = 0; mode < 2; mode++) {
        const char *m = mode ? "query" : "header";
        lb_sigv4_request req;
        lb_sigv4_result res;
        char err[LB_ERR_LEN] = "";
        char *want;
        int rc;
        lb_sigv4_request_init(&req);
        req.method = hr.method;
        req.url = hr.url;
        req.headers = hr.h;
        req.nheaders = hr.nh;
        req.body = hr.body;
        req.body_len = hr.body_len;
        req.region = region;
        req.service = service;
        req.access_key = ak;
        req.secret_key = sk;
        req.session_token = json_get(ctx, "token", tok, sizeof tok) ? tok : NULL;
        req.amz_date = date;
        req.query_mode = mode;
        req.expires = atol(exp);
        req.normalize_path = json_true(ctx, "normalize");
        req.content_sha256_header = json_true(ctx, "sign_body");
        req.omit_session_token = json_true(ctx, "omit_session_token");
        rc = lb_sigv4_sign(&req, &res, err);
        ++lb_checks;
        if (rc != LB_OK) {
            ++lb_failures;
            fprintf(stderr, "FAIL %s [%s] sign: %s (%s)\n", cs, m, lb_err_name(rc), err);
            ok = 0;
            continue;
        }
        snprintf(fname, sizeof fname, "%s-canonical-request.txt", m);
        want = slurp(dir, fname);
        if (want) chomp(want);
        ok &= stage_ok(cs, m, "canonical request", want, res.canonical_request);
        free(want);
        snprintf(fname, sizeof fname, "%s-string-to-sign.txt", m);
        want = slurp(dir, fname);
        if (want) chomp(want);
        ok &= stage_ok(cs, m, "string to sign", want, res.string_to_sign);
        free(want);
        snprintf(fname, sizeof fname, "%s-signature.txt", m);
        want = slurp(dir, fname);
        if (want) chomp(want);
        ok &= stage_ok(cs, m, "signature", want, res.signature);
        free(want);
        if (mode) {  /* the URL carries the signature last */
            char tail[100];
            size_t ul = strlen(res.url);
            snprintf(tail, sizeof tail, "&X-Amz-Signature=%s", res.signature);
            CHECK(ul > strlen(tail) && strcmp(res.url + ul - strlen(tail), tail) == 0);
            CHECK(res.authorization == NULL);
        } else {
            CHECK(res.authorization && strstr(res.authorization, res.signature));
        }
        lb_sigv4_result_free(&res);
    }
    http_req_free(&hr);
    free(ctx);
    free(reqtxt);
    return ok;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_suite(const char *root) {
    DIR *d = opendir(root);
    struct dirent *e;
    char *names[128];
    int n = 0, i, passed = 0;
    if (!d) {
        fprintf(stderr, "cannot open test data dir %s\n", root);
        ++lb_checks, ++lb_failures;
        return;
    }
    while ((e = readdir(d)) && n < 128) {
        char p[1024];
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s/request.txt", root, e->d_name);
        if (access(p, R_OK) == 0) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (i = 0; i < n; i++) {
        passed += run_case(root, names[i]);
        free(names[i]);
    }
    printf("suite: %d/%d cases pass in both modes\n", passed, n);
    CHECK(n == 38);
}

/* ------------------------------------------------------- property tests */

#define AK "AKIDEXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static void base_req(lb_sigv4_request *r, const char *url) {
    lb_sigv4_request_init(r);
    r->method = "GET";
    r->url = url;
    r->region = "us-east-1";
    r->service = "service";
    r->access_key = AK;
    r->secret_key = SK;
    r->amz_date = "20150830T123600Z";
}

/* Line i (0-based) of the canonical request, copied into out. */
static const char *cr_line(const char *cr, int i, char *out, size_t n) {
    const char *p = cr, *e;
    while (i-- > 0 && (p = strchr(p, '\n'))) p++;
    if (!p) return "";
    e = strchr(p, '\n');
    snprintf(out, n, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
    return out;
}

static void test_aws_doc_vectors(void) {
    /* S3 GET Object with Range (AWS docs, sig-v4-header-based-auth). */
    lb_sigv4_header h[] = {{"Range", "bytes=0-9"}};
    lb_sigv4_request r;
    lb_sigv4_result res;
    char line[256];
    base_req(&r, "https://examplebucket.s3.amazonaws.com/test.txt");
    r.access_key = "AKIAIOSFODNN7EXAMPLE";
    r.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    r.amz_date = "20130524T000000Z";
    r.service = "s3";
    r.s3 = 1;
    r.content_sha256_header = 1;
    r.headers = h;
    r.nheaders = 1;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", res.signature);
    CHECK_STR("host;range;x-amz-content-sha256;x-amz-date", res.signed_headers);
    lb_sigv4_result_free(&res);
    /* S3 presigned GET, 86400 s: UNSIGNED-PAYLOAD by default in query mode. */
    r.headers = NULL;
    r.nheaders = 0;
    r.query_mode = 1;
    r.expires = 86400;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404", res.signature);
    CHECK_STR("UNSIGNED-PAYLOAD", cr_line(res.canonical_request, 6, line, sizeof line));
    CHECK_STR("https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
              "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
              "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
              "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
              res.url);
    lb_sigv4_result_free(&res);
}

static void test_path_rules(void) {
    const char *url = "https://h.example.com/a%20b/./c//d/../e%2Fx?b=2&a=%7e&a=1&c";
    lb_sigv4_request r;
    lb_sigv4_result res;
    char line[256];
    base_req(&r, url);
    r.s3 = 1;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("/a%20b/./c//d/../e%2Fx", cr_line(res.canonical_request, 1, line, sizeof line));
    CHECK_STR("a=1&a=~&b=2&c=", cr_line(res.canonical_request, 2, line, sizeof line));
    lb_sigv4_result_free(&res);
    r.s3 = 0;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("/a%2520b/c/e%252Fx", cr_line(res.canonical_request, 1, line, sizeof line));
    lb_sigv4_result_free(&res);
    r.normalize_path = 0;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("/a%2520b/./c//d/../e%252Fx", cr_line(res.canonical_request, 1, line, sizeof line));
    lb_sigv4_result_free(&res);
    /* host from the URL: lowercase, default port dropped, other port kept */
    base_req(&r, "https://User@H.Example.COM:443");
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("/", cr_line(res.canonical_request, 1, line, sizeof line));
    CHECK_STR("host:h.example.com", cr_line(res.canonical_request, 3, line, sizeof line));
    lb_sigv4_result_free(&res);
    base_req(&r, "http://h:8080/");
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("host:h:8080", cr_line(res.canonical_request, 3, line, sizeof line));
    lb_sigv4_result_free(&res);
}

static void test_headers(void) {
    lb_sigv4_header h[] = {{"X-b", " two\t\t words "}, {"x-A", "1"}, {"X-B", "first  "},
                           {"User-Agent", "test/1"}, {"Authorization", "old"},
                           {"X-Amz-Security-Token", "stale"}};
    lb_sigv4_request r;
    lb_sigv4_result res;
    char line[256];
    size_t i;
    int auth = 0, tok = 0, ua = 0;
    base_req(&r, "https://h/");
    r.headers = h;
    r.nheaders = 6;
    r.session_token = "TOKEN";
    r.payload_hash = LB_SIGV4_UNSIGNED_PAYLOAD;
    r.content_sha256_header = 1;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("x-a:1", cr_line(res.canonical_request, 4, line, sizeof line));
    CHECK_STR("x-amz-content-sha256:UNSIGNED-PAYLOAD",
              cr_line(res.canonical_request, 5, line, sizeof line));
    CHECK_STR("x-b:two words,first", cr_line(res.canonical_request, 8, line, sizeof line));
    CHECK_STR("host;x-a;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-b",
              res.signed_headers);
    CHECK_STR("UNSIGNED-PAYLOAD", res.payload_hash);
    for (i = 0; i < res.nheaders; i++) {
        if (!strcmp(res.headers[i].name, "Authorization")) {
            auth++;
            CHECK_STR(res.authorization, res.headers[i].value);
        }
        if (!strcasecmp(res.headers[i].name, "X-Amz-Security-Token")) {
            tok++;
            CHECK_STR("TOKEN", res.headers[i].value);
        }
        if (!strcmp(res.headers[i].name, "User-Agent")) ua++;
    }
    CHECK(auth == 1 && tok == 1 && ua == 1);
    lb_sigv4_result_free(&res);
    /* omit_session_token: sent but not signed */
    r.omit_session_token = 1;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR("host;x-a;x-amz-content-sha256;x-amz-date;x-b", res.signed_headers);
    for (i = 0, tok = 0; i < res.nheaders; i++)
        if (!strcasecmp(res.headers[i].name, "X-Amz-Security-Token")) tok++;
    CHECK(tok == 1);
    lb_sigv4_result_free(&res);
    /* query mode with token: signed param before X-Amz-Signature */
    r.omit_session_token = 0;
    r.query_mode = 1;
    r.nheaders = 0;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK(strstr(res.url, "&X-Amz-Security-Token=TOKEN&X-Amz-Signature=") != NULL);
    CHECK(strstr(res.canonical_request, "X-Amz-Security-Token=TOKEN") != NULL);
    lb_sigv4_result_free(&res);
}

static void test_errors(void) {
    lb_sigv4_header bad[] = {{"X-Evil", "a\r\nInjected: 1"}};
    lb_sigv4_header badname[] = {{"Bad Name", "v"}};
    lb_sigv4_request r;
    lb_sigv4_result res;
    char err[LB_ERR_LEN];
    base_req(&r, "not a url");
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    CHECK(res.signature == NULL);
    base_req(&r, "https://h/");
    r.secret_key = NULL;
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    base_req(&r, "https://h/");
    r.headers = bad;
    r.nheaders = 1;
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    r.headers = badname;
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    base_req(&r, "https://h/");
    r.amz_date = "2015-08-30";
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    base_req(&r, "https://h/");
    r.query_mode = 1;
    r.expires = 0;
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    base_req(&r, "https://h/?X-Amz-Signature=abc");
    r.query_mode = 1;
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EINVAL);
    base_req(&r, "https://h/");
    r.body_file = "/nonexistent/dir/file";
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_EIO);
    CHECK(strstr(err, "/nonexistent/dir/file") != NULL);
    CHECK(strstr(err, SK) == NULL);
    /* time given as epoch seconds: 2015-08-30T12:36:00Z */
    base_req(&r, "https://h/");
    r.amz_date = NULL;
    r.time = 1440938160;
    CHECK(lb_sigv4_sign(&r, &res, err) == LB_OK);
    CHECK_STR("20150830T123600Z", res.amz_date);
    CHECK_STR("20150830/us-east-1/service/aws4_request", res.credential_scope);
    lb_sigv4_result_free(&res);
    lb_sigv4_result_free(&res);  /* twice is fine */
}

static void test_cache(void) {
    lb_sigv4_request r;
    lb_sigv4_result res;
    unsigned long hits, misses;
    char sig1[65], regions[LB_SIGV4_CACHE_SIZE + 1][16];
    int i;
    lb_sigv4_cache_clear();
    base_req(&r, "https://h/");
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    strcpy(sig1, res.signature);
    lb_sigv4_result_free(&res);
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR(sig1, res.signature);
    lb_sigv4_result_free(&res);
    lb_sigv4_cache_stats(&hits, &misses);
    CHECK(hits == 1 && misses == 1);
    /* another secret with the same date/region/service is a different key */
    r.secret_key = "other-secret";
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK(strcmp(sig1, res.signature) != 0);
    lb_sigv4_result_free(&res);
    lb_sigv4_cache_stats(&hits, &misses);
    CHECK(hits == 1 && misses == 2);
    /* bounded: after CACHE_SIZE other tuples, the first one was evicted */
    r.secret_key = SK;
    for (i = 0; i <= LB_SIGV4_CACHE_SIZE; i++) {
        snprintf(regions[i], sizeof regions[i], "region-%d", i);
        r.region = regions[i];
        CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
        lb_sigv4_result_free(&res);
    }
    r.region = "us-east-1";
    lb_sigv4_cache_stats(&hits, &misses);
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR(sig1, res.signature);
    lb_sigv4_result_free(&res);
    {
        unsigned long h2, m2;
        lb_sigv4_cache_stats(&h2, &m2);
        CHECK(m2 == misses + 1 && h2 == hits);
    }
    /* the signing key equals a fresh derivation (cache on or off) */
    {
        unsigned char k1[32], k2[32];
        CHECK(lb_sigv4_signing_key(SK, "20150830", "us-east-1", "iam", k1) == LB_OK);
        lb_sigv4_cache_clear();
        CHECK(lb_sigv4_signing_key(SK, "20150830", "us-east-1", "iam", k2) == LB_OK);
        CHECK(memcmp(k1, k2, 32) == 0);
    }
}

/* HMAC-SHA256 chain with OpenSSL's own HMAC(), for keys of every length. */
static void ref_key(const char *secret, const char *d, const char *r, const char *s,
                    unsigned char out[32]) {
    unsigned char a[32], b[32], *k0 = malloc(strlen(secret) + 5);
    unsigned int n;
    sprintf((char *)k0, "AWS4%s", secret);
    HMAC(EVP_sha256(), k0, (int)strlen((char *)k0), (const unsigned char *)d, strlen(d), a, &n);
    HMAC(EVP_sha256(), a, 32, (const unsigned char *)r, strlen(r), b, &n);
    HMAC(EVP_sha256(), b, 32, (const unsigned char *)s, strlen(s), a, &n);
    HMAC(EVP_sha256(), a, 32, (const unsigned char *)"aws4_request", 12, out, &n);
    free(k0);
}

/* The signer's own HMAC (precomputed pad states) equals OpenSSL's for
 * secrets shorter than, equal to and longer than the 64-byte block. */
static void test_key_lengths(void) {
    size_t lens[] = {1, 40, 59, 60, 61, 64, 65, 100, 599};
    char secret[600];
    unsigned char want[32], got[32];
    size_t i;
    for (i = 0; i < sizeof lens / sizeof *lens; i++) {
        memset(secret, 'k' + (int)i, lens[i]);
        secret[lens[i]] = '\0';
        lb_sigv4_cache_clear();
        ref_key(secret, "20150830", "us-east-1", "iam", want);
        CHECK(lb_sigv4_signing_key(secret, "20150830", "us-east-1", "iam", got) == LB_OK);
        CHECK(memcmp(want, got, 32) == 0);
    }
}

/* lb_sigv4_hmac_sts equals OpenSSL's HMAC under the signing key, whether
 * the state after the first block is derived, reused from the last call
 * (same first block) or derived again (another first block), and for a
 * tuple too long to be cached. */
static void test_hmac_sts(void) {
    static const char *const services[] = {"iam", "a-service-name-long-enough-to-stay-out-of-the-cache"};
    size_t lens[] = {0, 1, 63, 64, 65, 133, 200}, i, j, k;
    unsigned char key[32], want[32], got[32];
    unsigned int n;
    char m[200];
    for (k = 0; k < 2; k++) {
        lb_sigv4_cache_clear();
        CHECK(lb_sigv4_signing_key(SK, "20150830", "us-east-1", services[k], key) == LB_OK);
        for (i = 0; i < sizeof lens / sizeof *lens; i++) {
            memset(m, 'm', sizeof m);
            for (j = 0; j < 4; j++) {  /* fresh, the same again, first block changed, tail changed */
                if (j == 2) m[0] = (char)('a' + i);
                if (j == 3 && lens[i] > 64) m[lens[i] - 1] = 'z';
                HMAC(EVP_sha256(), key, 32, (const unsigned char *)m, lens[i], want, &n);
                CHECK(lb_sigv4_hmac_sts(SK, "20150830", "us-east-1", services[k], m, lens[i], got) == LB_OK);
                CHECK(memcmp(want, got, 32) == 0);
            }
        }
    }
    CHECK(lb_sigv4_hmac_sts(NULL, "20150830", "us-east-1", "iam", m, 1, got) == LB_EINVAL);
}

/* X-Amz-Date from epoch seconds matches gmtime + strftime (leap days,
 * century rules, the ends of the range). */
static void test_time_format(void) {
    const int64_t ts[] = {0, 951782400, 951868799, 1440938160, 4107542400, 4107628799,
                          253402300799};
    lb_sigv4_request r;
    lb_sigv4_result res;
    char want[17];
    size_t i;
    for (i = 0; i < sizeof ts / sizeof *ts; i++) {
        time_t t = (time_t)ts[i];
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%Y%m%dT%H%M%SZ", &tm);
        base_req(&r, "https://h/");
        r.amz_date = NULL;
        r.time = ts[i];
        CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
        CHECK_STR(want, res.amz_date);
        lb_sigv4_result_free(&res);
    }
    base_req(&r, "https://h/");
    r.amz_date = NULL;
    r.time = INT64_C(253402300800);
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_EINVAL);
}

static void *thread_sign(void *arg) {
    char *out = arg;
    lb_sigv4_request r;
    lb_sigv4_result res;
    int i;
    for (i = 0; i < 200; i++) {
        base_req(&r, "https://h/x?y=z");
        r.region = (i % 3) ? "eu-west-1" : "us-east-1";
        if (lb_sigv4_sign(&r, &res, NULL) != LB_OK) return NULL;
        if (i == 0) strcpy(out, res.signature);
        else if (i % 3 == 0 && strcmp(out, res.signature) != 0) out[0] = '!';
        lb_sigv4_result_free(&res);
    }
    return NULL;
}

static void test_threads(void) {
    pthread_t t[4];
    char sig[4][65];
    int i;
    for (i = 0; i < 4; i++) pthread_create(&t[i], NULL, thread_sign, sig[i]);
    for (i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (i = 1; i < 4; i++) CHECK_STR(sig[0], sig[i]);
    CHECK(sig[0][0] != '!');
}

static void test_file_hash(void) {
    char path[] = "/tmp/lb_sigv4_testXXXXXX", h1[65], h2[65], err[LB_ERR_LEN];
    size_t n = 1024 * 1024 + 7, i;
    unsigned char *data = malloc(n);
    lb_sigv4_hash *h;
    int fd = mkstemp(path);
    uint32_t x = 12345;
    lb_sigv4_request r;
    lb_sigv4_result res;
    char sig_mem[65];
    for (i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    CHECK(fd >= 0 && write(fd, data, n) == (ssize_t)n);
    close(fd);
    CHECK(lb_sigv4_sha256_file(path, 0, -1, h1, err) == LB_OK);
    CHECK(lb_sigv4_sha256_hex(data, n, h2) == LB_OK);
    CHECK_STR(h2, h1);
    CHECK(lb_sigv4_sha256_file(path, 1000, 300001, h1, err) == LB_OK);
    CHECK(lb_sigv4_sha256_hex(data + 1000, 300001, h2) == LB_OK);
    CHECK_STR(h2, h1);
    CHECK(lb_sigv4_sha256_file(path, n, 0, h1, err) == LB_OK);
    CHECK_STR("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", h1);
    CHECK(lb_sigv4_sha256_file(path, 10, (int64_t)n, h1, err) == LB_EIO);  /* past EOF */
    /* init/update/final in odd chunk sizes */
    CHECK(lb_sigv4_hash_new(&h) == LB_OK);
    for (i = 0; i < n; i += 4099) lb_sigv4_hash_update(h, data + i, n - i < 4099 ? n - i : 4099);
    CHECK(lb_sigv4_hash_final(h, h1) == LB_OK);
    CHECK(lb_sigv4_sha256_hex(data, n, h2) == LB_OK);
    CHECK_STR(h2, h1);
    CHECK(lb_sigv4_hash_final(h, h1) == LB_OK);  /* restarted empty */
    CHECK_STR("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", h1);
    lb_sigv4_hash_free(h);
    /* body_file range signs like the same bytes in memory */
    base_req(&r, "https://h/");
    r.method = "PUT";
    r.body = data + 5;
    r.body_len = 70000;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    strcpy(sig_mem, res.signature);
    lb_sigv4_result_free(&res);
    r.body = NULL;
    r.body_len = 0;
    r.body_file = path;
    r.body_offset = 5;
    r.body_length = 70000;
    CHECK(lb_sigv4_sign(&r, &res, NULL) == LB_OK);
    CHECK_STR(sig_mem, res.signature);
    lb_sigv4_result_free(&res);
    /* allocation failure in file hashing */
    {
        long k, live = lb_alloc_live();
        int rc = -1;
        for (k = 0; k < 20 && rc != LB_OK; k++) {
            lb_alloc_fail_after(k);
            rc = lb_sigv4_sha256_file(path, 0, -1, h1, err);
            lb_alloc_fail_after(-1);
            CHECK(rc == LB_OK || rc == LB_ENOMEM);
            CHECK(lb_alloc_live() == live);
        }
        CHECK(rc == LB_OK && k > 1);
    }
    unlink(path);
    free(data);
}

/* Fail allocation k = 0, 1, 2, ... until signing succeeds: every failure
 * is LB_ENOMEM and leaves no block behind. */
static void alloc_loop(lb_sigv4_request *r, const char *what) {
    long k, live = lb_alloc_live();
    int rc = -1, bad = 0;
    char want[65] = "";
    lb_sigv4_result res;
    if (lb_sigv4_sign(r, &res, NULL) == LB_OK) strcpy(want, res.signature);
    lb_sigv4_result_free(&res);
    for (k = 0; k < 10000 && rc != LB_OK; k++) {
        lb_sigv4_cache_clear();  /* so the key derivation runs each time */
        lb_alloc_fail_after(k);
        rc = lb_sigv4_sign(r, &res, NULL);
        lb_alloc_fail_after(-1);
        if (rc == LB_OK) {
            CHECK_STR(want, res.signature);
            lb_sigv4_result_free(&res);
        } else if (rc != LB_ENOMEM || res.canonical_request || res.headers) {
            bad++;
        }
        if (lb_alloc_live() != live) bad++;
    }
    CHECK(rc == LB_OK);
    CHECK(bad == 0);
    /* one signature is one allocation (the result's block): failing the
     * first fails the call, the second is never asked for */
    CHECK(k - 1 == 1);
    printf("alloc-failure %s: %ld allocation points\n", what, k - 1);
}

/* Into a caller's block: the same signature, and no allocation at all. */
static void test_sign_into(void) {
    lb_sigv4_header h[] = {{"X-B", "2"}, {"Content-Type", "t"}};
    lb_sigv4_request r;
    lb_sigv4_result a, b;
    size_t need;
    char *buf;
    base_req(&r, "https://h.example.com/p%20q/../r/?z=1&a=%E1%88%B4&a=&k");
    r.headers = h;
    r.nheaders = 2;
    r.session_token = "tok/en+=";
    CHECK(lb_sigv4_sign(&r, &a, NULL) == LB_OK);
    need = lb_sigv4_sign_bound(&r);
    CHECK(need > 0);
    buf = malloc(need);
    lb_alloc_fail_after(0);  /* any allocation would fail the call */
    CHECK(lb_sigv4_sign_into(&r, &b, buf, need, NULL) == LB_OK);
    lb_alloc_fail_after(-1);
    CHECK_STR(a.signature, b.signature);
    CHECK_STR(a.canonical_request, b.canonical_request);
    CHECK(b.mem_ == NULL && b.url >= buf && b.url < buf + need);
    lb_sigv4_result_free(&b);
    lb_sigv4_result_free(&a);
    free(buf);
}

static void test_alloc_failure(void) {
    lb_sigv4_header h[] = {{"X-B", "2"}, {"x-a", " a  b "}, {"X-B", "1"}, {"Content-Type", "t"}};
    char longsecret[600];
    lb_sigv4_request r;
    base_req(&r, "https://h.example.com/p%20q/../r/?z=1&a=%E1%88%B4&a=&k");
    r.headers = h;
    r.nheaders = 4;
    r.session_token = "tok/en+=";
    r.body = "hello";
    r.body_len = 5;
    r.content_sha256_header = 1;
    alloc_loop(&r, "header");
    r.query_mode = 1;
    alloc_loop(&r, "query");
    memset(longsecret, 'k', sizeof longsecret - 1);
    longsecret[sizeof longsecret - 1] = '\0';
    r.secret_key = longsecret;  /* long secret: the key derivation allocates */
    alloc_loop(&r, "long secret");
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : getenv("SIGV4_TESTDATA") ? getenv("SIGV4_TESTDATA") : "tests/fixtures/sigv4";
    test_suite(root);
    test_aws_doc_vectors();
    test_path_rules();
    test_headers();
    test_errors();
    test_cache();
    test_key_lengths();
    test_time_format();
    test_threads();
    test_file_hash();
    test_sign_into();
    test_hmac_sts();
    test_alloc_failure();
    return lb_test_report("sigv4");
}
