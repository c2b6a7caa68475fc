/* test_http.c -- the libcurl engine (lb_http) against tests/servers/httpd.py.
 *
 *   build/lua5.4/tests/test_http [path/to/httpd.py]     (cwd = repo root)
 *
 * Starts the Python server (plain, and a TLS one with a throw-away
 * self-signed certificate made by `openssl req`), runs every check, kills
 * the servers. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "lb_alloc.h"
#include "lb_http.h"
#include "lb_intr.h"
#include "lb_test.h"

static const char *script = "tests/servers/httpd.py";
static int port, tls_port;
static char tmpdir[256];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start the server with extra args; returns its port, *pid set. */
static int start_server(pid_t *pid, const char *cert, const char *key) {
    int fd[2];
    char line[64] = "";
    FILE *f;
    if (pipe(fd) != 0) return -1;
    *pid = fork();
    if (*pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (cert)
            execl("/usr/bin/python3", "python3", script, "--port", "0", "--tls-cert", cert,
                  "--tls-key", key, (char *)NULL);
        else
            execl("/usr/bin/python3", "python3", script, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    f = fdopen(fd[0], "r");
    if (!f || !fgets(line, sizeof line, f)) line[0] = '\0';
    if (f) fclose(f);
    return atoi(line) > 0 ? atoi(line) : -1;
}

static void stop_server(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static char *url(const char *path) {
    static char buf[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "http://127.0.0.1:%d%s", port, path);
    return buf[i];
}

static unsigned char pat(size_t i) { return (unsigned char)(i % 251); }

static void sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0, i;
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    for (i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

/* GET to memory, headers, HEAD. */
static void test_get(void) {
    lb_http_request rq = { 0 };
    lb_http_response rs;
    lb_http_kv hdrs[] = { { "X-Test", "one two" }, { "X-Blank", "" } };
    char err[LB_ERR_LEN] = "";
    size_t i, nrep = 0;
    int ok = 1;

    rq.url = url("/bytes/1000");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 200);
    CHECK(rs.body_len == 1000 && rs.bytes_in == 1000);
    for (i = 0; i < rs.body_len && ok; i++) ok = (unsigned char)rs.body[i] == pat(i);
    CHECK(ok);
    CHECK(rs.seconds > 0 && rs.seconds < 5);
    CHECK_STR("1000", lb_http_response_header(&rs, "content-length"));
    lb_http_response_free(&rs);

    rq.url = url("/echo/path?a=1");
    rq.headers = hdrs;
    rq.nheaders = 2;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 200);
    CHECK_STR("application/json", lb_http_response_header(&rs, "Content-Type"));
    CHECK_STR("", lb_http_response_header(&rs, "x-empty"));
    for (i = 0; i < rs.nheaders; i++)
        if (!strcmp(rs.headers[i].name, "X-Repeat")) nrep++;
    CHECK(nrep == 2);
    CHECK(rs.body && strstr(rs.body, "\"method\": \"GET\""));
    CHECK(rs.body && strstr(rs.body, "\"path\": \"/echo/path?a=1\""));
    CHECK(rs.body && strstr(rs.body, "[\"X-Test\", \"one two\"]"));
    CHECK(rs.body && strstr(rs.body, "[\"X-Blank\", \"\"]"));
    CHECK(rs.body && !strstr(rs.body, "Expect"));
    lb_http_response_free(&rs);

    memset(&rq, 0, sizeof rq);
    rq.method = "HEAD";
    rq.url = url("/bytes/10");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 200 && rs.body_len == 0);
    CHECK_STR("10", lb_http_response_header(&rs, "Content-Length"));
    lb_http_response_free(&rs);

    /* 404 is a response, not an error; DELETE is sent as such. */
    rq.method = "DELETE";
    rq.url = url("/status/404");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 404);
    CHECK(rs.body && !strcmp(rs.body, "status 404"));
    lb_http_response_free(&rs);
    rq.url = url("/echo");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.body && strstr(rs.body, "\"method\": \"DELETE\""));
    lb_http_response_free(&rs);

    /* Redirects are returned, not followed. */
    rq.method = NULL;
    rq.url = url("/redirect");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 302);
    lb_http_response_free(&rs);
}

typedef struct gen {
    size_t pos, total, chunk;
} gen;

static long gen_read(void *ud, char *buf, size_t cap) {
    gen *g = ud;
    size_t n = g->total - g->pos, i;
    if (n > cap) n = cap;
    if (n > g->chunk) n = g->chunk;
    for (i = 0; i < n; i++) buf[i] = (char)pat(g->pos + i);
    g->pos += n;
    return (long)n;
}

static long fail_read(void *ud, char *buf, size_t cap) {
    (void)ud; (void)buf; (void)cap;
    return -LB_ECALLBACK;
}

/* Bodies: memory, file range, reader (known length and chunked). */
static void test_upload(void) {
    lb_http_request rq = { 0 };
    lb_http_response rs;
    char err[LB_ERR_LEN], hex[65], path[300], want[128];
    static char big[300000];
    size_t i;
    FILE *f;
    gen g = { 0, 123457, 7000 };

    for (i = 0; i < sizeof big; i++) big[i] = (char)pat(i);

    rq.method = "POST";
    rq.url = url("/upload/mem");
    rq.body_kind = LB_HTTP_BODY_MEM;
    rq.body = big;
    rq.body_length = 100000;
    sha256_hex(big, 100000, hex);
    snprintf(want, sizeof want, "{\"sha256\": \"%s\", \"length\": 100000}", hex);
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 200);
    CHECK_STR(want, rs.body);
    lb_http_response_free(&rs);

    /* No Content-Type invented, no Expect, method kept. */
    rq.url = url("/echo");
    rq.body_length = 5;
    rq.body = "hello";
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.body && strstr(rs.body, "\"method\": \"POST\""));
    CHECK(rs.body && strstr(rs.body, "\"body\": \"hello\""));
    CHECK(rs.body && !strstr(rs.body, "Content-Type") && !strstr(rs.body, "Expect"));
    lb_http_response_free(&rs);

    /* POST without a body sends Content-Length: 0. */
    memset(&rq, 0, sizeof rq);
    rq.method = "POST";
    rq.url = url("/echo");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.body && strstr(rs.body, "[\"Content-Length\", \"0\"]"));
    lb_http_response_free(&rs);

    /* File range. */
    snprintf(path, sizeof path, "%s/body.bin", tmpdir);
    f = fopen(path, "wb");
    fwrite(big, 1, sizeof big, f);
    fclose(f);
    memset(&rq, 0, sizeof rq);
    rq.method = "PUT";
    rq.url = url("/upload/file");
    rq.body_kind = LB_HTTP_BODY_FILE;
    rq.body_file = path;
    rq.body_offset = 1000;
    rq.body_length = 200000;
    sha256_hex(big + 1000, 200000, hex);
    snprintf(want, sizeof want, "{\"sha256\": \"%s\", \"length\": 200000}", hex);
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK_STR(want, rs.body);
    lb_http_response_free(&rs);
    rq.body_length = -1;            /* to the end of the file */
    sha256_hex(big + 1000, sizeof big - 1000, hex);
    snprintf(want, sizeof want, "{\"sha256\": \"%s\", \"length\": %zu}", hex, sizeof big - 1000);
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK_STR(want, rs.body);
    lb_http_response_free(&rs);
    rq.body_file = "/nonexistent/file";
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_EIO);
    CHECK(strstr(err, "/nonexistent/file") != NULL);

    /* Reader, known length. */
    memset(&rq, 0, sizeof rq);
    rq.method = "PUT";
    rq.url = url("/upload/reader");
    rq.body_kind = LB_HTTP_BODY_READER;
    rq.body_reader = gen_read;
    rq.body_ud = &g;
    rq.body_length = (int64_t)g.total;
    sha256_hex(big, g.total, hex);
    snprintf(want, sizeof want, "{\"sha256\": \"%s\", \"length\": %zu}", hex, g.total);
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK_STR(want, rs.body);
    lb_http_response_free(&rs);
    /* Reader, unknown length: chunked. */
    g.pos = 0;
    rq.body_length = -1;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK_STR(want, rs.body);
    lb_http_response_free(&rs);
    /* Reader ending early, reader failing. */
    g.pos = 0;
    rq.body_length = (int64_t)g.total + 10;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ECALLBACK);
    CHECK(strstr(err, "short") != NULL);
    rq.body_reader = fail_read;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ECALLBACK);
}

typedef struct sink {
    size_t n;
    int ok;
    int stop_after;                 /* calls before asking to stop; 0 never */
    int calls;
} sink;

static int sink_write(void *ud, const char *p, size_t n) {
    sink *s = ud;
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] != pat(s->n + i)) s->ok = 0;
    s->n += n;
    if (s->stop_after && ++s->calls >= s->stop_after) return LB_ECANCELED;
    return LB_OK;
}

static int progress_calls;
static int count_progress(void *ud, int64_t dn, int64_t dt, int64_t un, int64_t ut) {
    (void)ud; (void)dn; (void)dt; (void)un; (void)ut;
    progress_calls++;
    return LB_OK;
}

/* Sinks: file at an offset (two ranges in parallel), writer, diversion. */
static void test_sinks(lb_http_client *c) {
    lb_http_request rq[2];
    lb_http_result res[2];
    lb_http_response rs;
    lb_http_kv r0[] = { { "Range", "bytes=0-99999" } }, r1[] = { { "Range", "bytes=100000-199999" } };
    char path[300], err[LB_ERR_LEN];
    static char got[200010];
    sink s = { 0, 1, 0, 0 };
    FILE *f;
    size_t n, i;
    int ok = 1;

    snprintf(path, sizeof path, "%s/out.bin", tmpdir);
    f = fopen(path, "wb");
    fwrite("ZZZZZZZZZZ", 1, 10, f);             /* stale bytes the ranges overwrite */
    fclose(f);
    memset(rq, 0, sizeof rq);
    for (i = 0; i < 2; i++) {
        rq[i].url = url("/bytes/200000");
        rq[i].sink_kind = LB_HTTP_SINK_FILE;
        rq[i].output_file = path;
        rq[i].output_offset = i ? 100000 : 0;
        rq[i].headers = i ? r1 : r0;
        rq[i].nheaders = 1;
    }
    CHECK(lb_http_perform_all(c, rq, 2, res) == LB_OK);
    CHECK(res[0].code == LB_OK && res[1].code == LB_OK);
    CHECK(res[0].resp.status == 206 && res[1].resp.status == 206);
    CHECK(res[0].resp.body == NULL && res[0].resp.bytes_in == 100000);
    lb_http_response_free(&res[0].resp);
    lb_http_response_free(&res[1].resp);
    f = fopen(path, "rb");
    n = fread(got, 1, sizeof got, f);
    fclose(f);
    CHECK(n == 200000);
    for (i = 0; i < n && ok; i++) ok = (unsigned char)got[i] == pat(i);
    CHECK(ok);

    /* A 404 with a file sink: body in memory, file untouched. */
    rq[0].url = url("/status/404");
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_OK);
    CHECK(rs.status == 404 && rs.body && !strcmp(rs.body, "status 404"));
    lb_http_response_free(&rs);
    {
        struct stat st;
        CHECK(stat(path, &st) == 0 && st.st_size == 200000);
    }
    /* Whole-file download with truncation. */
    rq[0].url = url("/bytes/10");
    rq[0].nheaders = 0;
    rq[0].output_truncate = 1;
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_OK);
    lb_http_response_free(&rs);
    {
        struct stat st;
        CHECK(stat(path, &st) == 0 && st.st_size == 10);
    }
    rq[0].output_file = "/nonexistent/dir/x";
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_EIO);

    /* Writer callback. */
    memset(rq, 0, sizeof rq);
    rq[0].url = url("/bytes/300000");
    rq[0].sink_kind = LB_HTTP_SINK_WRITER;
    rq[0].on_data = sink_write;
    rq[0].data_ud = &s;
    rq[0].on_progress = count_progress;
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_OK);
    CHECK(s.n == 300000 && s.ok);
    CHECK(rs.body == NULL && rs.bytes_in == 300000);
    CHECK(progress_calls > 0);
    lb_http_response_free(&rs);
    /* Writer asking to stop. */
    memset(&s, 0, sizeof s);
    s.ok = 1;
    s.stop_after = 1;
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_ECANCELED);
    CHECK(s.calls == 1);
    CHECK(strstr(err, "cancelled by the data callback") != NULL);
}

/* Reuse: one client keeps the connection, one-shot calls don't. */
static void test_reuse(lb_http_client *c) {
    lb_http_request rq = { 0 };
    lb_http_response a, b;
    char err[LB_ERR_LEN];
    rq.url = url("/conn-id");
    CHECK(lb_http_perform(c, &rq, &a, err) == LB_OK);
    CHECK(lb_http_perform(c, &rq, &b, err) == LB_OK);
    CHECK(a.body && b.body && !strcmp(a.body, b.body));
    lb_http_response_free(&a);
    lb_http_response_free(&b);
    CHECK(lb_http_perform(NULL, &rq, &a, err) == LB_OK);
    CHECK(lb_http_perform(NULL, &rq, &b, err) == LB_OK);
    CHECK(a.body && b.body && strcmp(a.body, b.body) != 0);
    lb_http_response_free(&a);
    lb_http_response_free(&b);
}

/* Concurrency: many slow requests overlap, bounded by max_concurrency. */
static void test_concurrency(void) {
    lb_http_client_opts o = { 20, 20 };
    lb_http_client *c;
    lb_http_request rq[20];
    lb_http_result res[20];
    double t0, dt;
    int i, ok = 1;
    CHECK(lb_http_client_open(&o, &c, NULL) == LB_OK);
    memset(rq, 0, sizeof rq);
    for (i = 0; i < 20; i++) rq[i].url = url("/slow?delay=0.5");
    t0 = now();
    CHECK(lb_http_perform_all(c, rq, 20, res) == LB_OK);
    dt = now() - t0;
    for (i = 0; i < 20; i++) {
        ok = ok && res[i].code == LB_OK && res[i].resp.status == 200;
        lb_http_response_free(&res[i].resp);
    }
    CHECK(ok);
    CHECK(dt < 8.0);                /* one at a time would take 10 s */
    lb_http_client_free(c);

    o.max_concurrency = 2;          /* 4 x 0.3 s, 2 at a time: >= 0.6 s */
    CHECK(lb_http_client_open(&o, &c, NULL) == LB_OK);
    for (i = 0; i < 4; i++) rq[i].url = url("/slow?delay=0.3");
    t0 = now();
    CHECK(lb_http_perform_all(c, rq, 4, res) == LB_OK);
    dt = now() - t0;
    CHECK(dt >= 0.59 && dt < 30.0); /* the bound only catches a hang */
    for (i = 0; i < 4; i++) lb_http_response_free(&res[i].resp);
    lb_http_client_free(c);
}

/* Failures and their codes; no secret in messages. */
static void test_errors(void) {
    lb_http_request rq = { 0 };
    lb_http_response rs;
    lb_http_kv auth[] = { { "Authorization", "AWS4-HMAC-SHA256 Credential=SECRETVALUE" } };
    char err[LB_ERR_LEN];
    double t0;

    rq.url = "http://127.0.0.1:9/x?X-Amz-Signature=SIGSECRET";
    rq.headers = auth;
    rq.nheaders = 1;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ECONNECT);
    CHECK(strncmp(err, "GET http://127.0.0.1:9/x?...: ", 30) == 0);
    CHECK(strstr(err, "Couldn't connect") || strstr(err, "onnect"));
    CHECK(!strstr(err, "SECRET"));
    rq.url = "http://user:pw@127.0.0.1:9/x";
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ECONNECT);
    CHECK(!strstr(err, "pw@") && strncmp(err, "GET http://127.0.0.1:9/x: ", 26) == 0);
    rq.headers = NULL;
    rq.nheaders = 0;

    rq.url = NULL;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_EINVAL);
    rq.url = url("/echo");
    rq.headers = (lb_http_kv[]){ { "X-Bad", "a\r\nInjected: 1" } };
    rq.nheaders = 1;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_EINVAL);
    rq.nheaders = 0;

    /* Read timeout: headers and a few bytes, then silence. */
    rq.url = url("/stall");
    rq.read_timeout = 0.5;
    t0 = now();
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ETIMEDOUT);
    CHECK(now() - t0 < 10.0);       /* the server stalls 60 s */
    CHECK(strstr(err, "read timeout") != NULL);
    /* ... and waiting for the first byte counts too. */
    rq.url = url("/slow?delay=3");
    t0 = now();
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ETIMEDOUT);
    CHECK(now() - t0 < 2.0);
    /* A steady trickle is not a read timeout... */
    rq.url = url("/drip?n=6&every=0.2");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.body_len == 6);
    lb_http_response_free(&rs);
    /* ... but the overall timeout bounds it. */
    rq.url = url("/drip?n=300&every=0.1");
    rq.timeout = 0.6;
    t0 = now();
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ETIMEDOUT);
    CHECK(now() - t0 < 10.0);       /* the whole drip: 30 s */
    rq.timeout = 0;
    rq.read_timeout = 0;

    rq.url = url("/reset");
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ECONNECT);

    /* The peer answers and hangs up mid-upload: the early response or a
     * connection error, never a crash (this process does not ignore SIGPIPE). */
    {
        static char big[8 << 20];
        int rc;
        rq.url = url("/reject");
        rq.method = "PUT";
        rq.body_kind = LB_HTTP_BODY_MEM;
        rq.body = big;
        rq.body_length = sizeof big;
        rc = lb_http_perform(NULL, &rq, &rs, err);
        CHECK(rc == LB_ECONNECT || (rc == LB_OK && rs.status == 413));
        if (rc == LB_OK) lb_http_response_free(&rs);
    }
}

static void *raise_later(void *arg) {
    volatile int *flag = arg;
    usleep(300000);
    if (flag) __atomic_store_n(flag, 1, __ATOMIC_RELAXED);
    else lb_intr_raise();
    return NULL;
}

/* Proxies come from the environment, as libcurl does by default. */
static void test_proxy(void) {
    lb_http_request rq = { 0 };
    lb_http_response rs;
    char err[LB_ERR_LEN], proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
    setenv("http_proxy", proxy, 1);
    rq.url = "http://proxied.invalid/echo";
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 200 && rs.body && strstr(rs.body, "\"path\": \"http://proxied.invalid/echo\""));
    lb_http_response_free(&rs);
    setenv("no_proxy", "proxied.invalid", 1);
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ECONNECT);   /* resolves it itself */
    unsetenv("no_proxy");
    unsetenv("http_proxy");
}

/* SIGINT flag and per-request cancel flag stop a transfer promptly. */
static void test_cancel(lb_http_client *c) {
    lb_http_request rq[3];
    lb_http_result res[3];
    lb_http_response rs;
    char err[LB_ERR_LEN];
    volatile int flag = 0;
    pthread_t t;
    double t0;
    int i;

    memset(rq, 0, sizeof rq);
    rq[0].url = url("/slow?delay=30");
    pthread_create(&t, NULL, raise_later, NULL);
    t0 = now();
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_ECANCELED);
    CHECK(now() - t0 < 10.0);       /* not the 30 s answer */
    CHECK(strstr(err, "interrupted") != NULL);
    pthread_join(t, NULL);
    /* Pending flag: a batch does not start. */
    for (i = 0; i < 3; i++) rq[i].url = url("/slow?delay=5");
    CHECK(lb_http_perform_all(c, rq, 3, res) == LB_ECANCELED);
    CHECK(res[0].code == LB_ECANCELED && res[2].code == LB_ECANCELED);
    lb_intr_clear();

    /* Stalled body (no progress callbacks due) with a cancel flag. */
    rq[0].url = url("/stall");
    rq[0].cancel = &flag;
    pthread_create(&t, NULL, raise_later, (void *)&flag);
    t0 = now();
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_ECANCELED);
    CHECK(now() - t0 < 10.0);       /* the server stalls 60 s */
    pthread_join(t, NULL);

    /* The client still works afterwards. */
    rq[0].url = url("/bytes/5");
    rq[0].cancel = NULL;
    CHECK(lb_http_perform(c, &rq[0], &rs, err) == LB_OK && rs.status == 200);
    lb_http_response_free(&rs);
}

/* TLS verification is on by default. */
static void test_tls(void) {
    lb_http_request rq = { 0 };
    lb_http_response rs;
    char err[LB_ERR_LEN], u[128], ca[300];
    int peer = 0, host = 0;

    lb_http_request_tls(&rq, &peer, &host);
    CHECK(peer == 1 && host == 1);
    if (tls_port <= 0) {
        fprintf(stderr, "test_http: no TLS server (openssl missing?); TLS handshake checks skipped\n");
        return;
    }
    snprintf(u, sizeof u, "https://127.0.0.1:%d/bytes/7", tls_port);
    snprintf(ca, sizeof ca, "%s/cert.pem", tmpdir);
    rq.url = u;
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ETLS);
    rq.ca_bundle = ca;              /* trust our self-signed certificate */
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    CHECK(rs.status == 200 && rs.body_len == 7);
    lb_http_response_free(&rs);
    rq.ca_bundle = NULL;
    rq.verify_off = 1;
    lb_http_request_tls(&rq, &peer, &host);
    CHECK(peer == 0 && host == 0);
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_OK);
    lb_http_response_free(&rs);
    rq.verify_off = 0;              /* a bundle that does not sign it */
    rq.ca_bundle = "/nonexistent/ca.pem";
    CHECK(lb_http_perform(NULL, &rq, &rs, err) == LB_ETLS);
}

/* Every allocation failure in client creation and in a request is
 * LB_ENOMEM and leaks nothing. */
static void test_alloc(void) {
    long live = lb_alloc_live(), live_c, k;
    lb_http_client *c = NULL;
    lb_http_request rq = { 0 };
    lb_http_response rs;
    lb_http_kv hdrs[] = { { "X-A", "1" }, { "X-B", "2" } };
    char err[LB_ERR_LEN];
    int rc = -1, bad = 0;

    for (k = 0; k < 100 && !c; k++) {
        lb_alloc_fail_after(k);
        rc = lb_http_client_open(NULL, &c, err);
        lb_alloc_fail_after(-1);
        if (rc != LB_OK && (strstr(err, "out of memory") == NULL || lb_alloc_live() != live)) bad++;
    }
    CHECK(c != NULL && k > 1);
    CHECK(bad == 0);
    live_c = lb_alloc_live();
    rc = -1;
    rq.url = url("/echo");
    rq.headers = hdrs;
    rq.nheaders = 2;
    for (k = 0; k < 200 && rc != LB_OK; k++) {
        lb_alloc_fail_after(k);
        rc = lb_http_perform(c, &rq, &rs, err);
        lb_alloc_fail_after(-1);
        if (rc != LB_OK && (rc != LB_ENOMEM || lb_alloc_live() != live_c)) {
            fprintf(stderr, "alloc k=%ld: rc=%d %s\n", k, rc, err);
            bad++;
        }
    }
    CHECK(rc == LB_OK && k > 3);
    CHECK(bad == 0);
    lb_http_response_free(&rs);
    lb_http_client_free(c);
    CHECK(lb_alloc_live() == live);
}

static int make_cert(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1", tmpdir, tmpdir);
    return system(cmd) == 0;
}

int main(int argc, char **argv) {
    pid_t pid = -1, tls_pid = -1;
    lb_http_client *c;
    char cert[300], key[300], cmd[400];

    if (argc > 1) script = argv[1];
    /* The servers are local: a proxy from the environment would be used
     * for them too (libcurl honours it, and test_proxy checks that). */
    unsetenv("http_proxy"); unsetenv("HTTP_PROXY"); unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY"); unsetenv("all_proxy"); unsetenv("ALL_PROXY");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lb_test_http.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    port = start_server(&pid, NULL, NULL);
    CHECK(port > 0);
    if (port <= 0) return lb_test_report("http");
    snprintf(cert, sizeof cert, "%s/cert.pem", tmpdir);
    snprintf(key, sizeof key, "%s/key.pem", tmpdir);
    if (make_cert()) tls_port = start_server(&tls_pid, cert, key);

    CHECK(lb_http_client_open(NULL, &c, NULL) == LB_OK);
    test_get();
    test_upload();
    test_sinks(c);
    test_reuse(c);
    test_concurrency();
    test_errors();
    test_proxy();
    test_cancel(c);
    test_tls();
    lb_http_client_free(c);
    test_alloc();

    stop_server(pid);
    stop_server(tls_pid);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    curl_global_cleanup();
    return lb_test_report("http");
}
