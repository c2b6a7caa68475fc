/* lb_s3.c -- S3 uploads (single PUT, multipart from a file or a stream).
 * The request engine (signing, retries, progress over an lb_http pump) is
 * lb_s3_run.c, downloads lb_s3_get.c, the pure pieces (encoding, documents,
 * digests) lb_s3_util.c.
 *
 * A transfer runs as a sequence of phases (lb_s3_int.h): each phase is one
 * kind of request over a set of parts (CreateMultipartUpload over one part,
 * UploadPart over all of them, ...).  s3_run feeds the phase's parts to an
 * lb_http pump through at most nslots slots; a slot holds everything its
 * request borrows (URL, signature, headers).  A part that fails in a
 * retryable way waits out its backoff and runs again alone. */
#define _GNU_SOURCE                 /* strptime, timegm */
#include "lb_s3_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_intr.h"
#include "lb_xml.h"

#define HASH_CHUNK (1 << 20)        /* read size of the hashing pass */

/* ---- hashing pass (two threads) ------------------------------------------ */

typedef struct hashpass {
    const lb_s3_opts *o;
    int fd;
    s3_part *parts;
    size_t n, next;                 /* next: atomic */
    int rc;                         /* first failure (atomic) */
    int err_no;
    size_t bad_part;
} hashpass;

static void hash_fail(hashpass *h, int rc, int err_no, size_t part) {
    int zero = 0;
    if (__atomic_compare_exchange_n(&h->rc, &zero, rc, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        h->err_no = err_no;
        h->bad_part = part;
    }
}

/* Hash parts until none is left; buf is HASH_CHUNK bytes. */
static void hash_parts(hashpass *h, unsigned char *buf) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t i;
    if (!ctx) { hash_fail(h, LB_ENOMEM, 0, 0); return; }
    while (!__atomic_load_n(&h->rc, __ATOMIC_RELAXED)
           && (i = __atomic_fetch_add(&h->next, 1, __ATOMIC_RELAXED)) < h->n) {
        s3_part *p = &h->parts[i];
        int64_t pos = p->off, left = p->len;
        unsigned int len = 0;
        if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) { hash_fail(h, LB_ENOMEM, 0, i); break; }
        while (left > 0) {
            size_t want = left < HASH_CHUNK ? (size_t)left : HASH_CHUNK;
            ssize_t got = pread(h->fd, buf, want, (off_t)pos);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) { hash_fail(h, LB_EIO, got < 0 ? errno : 0, i); break; }
            EVP_DigestUpdate(ctx, buf, (size_t)got);
            pos += got;
            left -= got;
            if (lb_intr_pending() || (h->o->cancel && __atomic_load_n(h->o->cancel, __ATOMIC_RELAXED))) {
                hash_fail(h, LB_ECANCELED, 0, i);
                break;
            }
        }
        if (left > 0) break;
        if (!EVP_DigestFinal_ex(ctx, p->digest, &len)) { hash_fail(h, LB_ENOMEM, 0, i); break; }
    }
    EVP_MD_CTX_free(ctx);
}

typedef struct worker { hashpass *h; unsigned char *buf; } worker;

static void *hash_thread(void *ud) {
    worker *w = ud;
    hash_parts(w->h, w->buf);
    return NULL;
}

/* SHA-256 of every part of the file, two threads when there are several. */
static int hash_file(s3x *x, s3_part *parts, size_t n) {
    hashpass h;
    worker w;
    pthread_t t;
    unsigned char *b1 = lb_malloc(HASH_CHUNK), *b2 = n > 1 ? lb_malloc(HASH_CHUNK) : NULL;
    int threaded = 0;
    memset(&h, 0, sizeof h);
    if (!b1 || (n > 1 && !b2)) {
        lb_free(b1);
        lb_free(b2);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    h.o = x->o;
    h.fd = x->fd;
    h.parts = parts;
    h.n = n;
    w.h = &h;
    w.buf = b2;
    if (b2 && pthread_create(&t, NULL, hash_thread, &w) == 0) threaded = 1;
    hash_parts(&h, b1);
    if (threaded) pthread_join(t, NULL);
    lb_free(b1);
    lb_free(b2);
    if (h.rc == LB_EIO)
        return s3_fail(x, LB_EIO, "read %s: %s", x->o->file,
                       h.err_no ? strerror(h.err_no) : "file shrank while reading");
    if (h.rc == LB_ECANCELED)
        return s3_fail(x, LB_ECANCELED, lb_intr_pending() ? "interrupted" : "cancelled");
    if (h.rc) return s3_fail(x, h.rc, "hashing: out of memory");
    return LB_OK;
}

/* ---- upload phases ---------------------------------------------------------- */

/* Content-Type, user metadata and ours; *n entries into h (room for
 * nmetadata + 4). */
static size_t object_headers(s3x *x, lb_sigv4_header *h, const char *part_size) {
    const lb_s3_opts *o = x->o;
    size_t n = 0, i;
    if (o->content_type && *o->content_type) {
        h[n].name = "Content-Type";
        h[n++].value = o->content_type;
    }
    for (i = 0; i < o->nmetadata; i++) {
        h[n].name = x->meta_hdr[i];
        h[n++].value = o->metadata[i].value;
    }
    if (x->lbsha[0]) {
        h[n].name = "x-amz-meta-lb-sha256";
        h[n++].value = x->lbsha;
    }
    if (part_size) {
        h[n].name = "x-amz-meta-lb-part-size";
        h[n++].value = part_size;
    }
    return n;
}

static int sign_object(s3x *x, s3_slot *s, const char *method, const char *query,
                       const char *part_size, const char *payload) {
    lb_sigv4_header *h = lb_malloc((x->o->nmetadata + 4) * sizeof *h);
    int rc;
    if (!h) return s3_fail(x, LB_ENOMEM, "out of memory");
    rc = s3_sign(x, s, method, query, h, object_headers(x, h, part_size), payload);
    lb_free(h);
    return rc;
}

static int take_etag(s3x *x, s3_slot *s, char **dst, int *retry, char *msg) {
    const char *e = lb_http_response_header(&s->res.resp, "ETag");
    (void)x;
    if (!e || !*e) {
        *retry = 1;
        snprintf(msg, LB_ERR_LEN, "answer without an ETag");
        return LB_ECONNECT;
    }
    lb_free(*dst);
    if (!(*dst = lb_strdup(e))) {
        snprintf(msg, LB_ERR_LEN, "out of memory");
        return LB_ENOMEM;
    }
    return LB_OK;
}

static void set_body(s3_slot *s, const char *p, int64_t len) {
    s->req.body_kind = LB_HTTP_BODY_MEM;
    s->req.body = p;
    s->req.body_length = len;
}

static void set_file_body(s3x *x, s3_slot *s, const s3_part *p) {
    s->req.body_kind = LB_HTTP_BODY_FILE;
    s->req.body_file = x->o->file;
    s->req.body_offset = p->off;
    s->req.body_length = p->len;
    s->req.send_buffer_size = S3_SEND_BUFFER;
}

static void set_progress(s3_slot *s) {
    s->req.on_progress = s3_progress_cb;
    s->req.progress_ud = s;
}

/* PutObject (whole file, or the stream's only buffer). */
static int put_build(s3x *x, s3_slot *s, s3_part *p) {
    int rc = sign_object(x, s, "PUT", NULL, NULL, x->payload);
    if (rc != LB_OK) return rc;
    if (p->buf || !x->o->file) set_body(s, p->buf ? p->buf : "", p->len);
    else set_file_body(x, s, p);
    set_progress(s);
    return LB_OK;
}

static int put_ok(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    return take_etag(x, s, &p->etag, retry, msg);
}

static const s3_phase PH_PUT = { "PutObject", put_build, put_ok, NULL, 1, 0 };

static int keep_ok(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    (void)p; (void)retry; (void)msg;
    lb_http_response_free(&x->keep);
    x->keep = s->res.resp;
    memset(&s->res.resp, 0, sizeof s->res.resp);
    return LB_OK;
}

static int create_build(s3x *x, s3_slot *s, s3_part *p) {
    char ps[24];
    (void)p;
    snprintf(ps, sizeof ps, "%lld", (long long)x->part_size);
    return sign_object(x, s, "POST", "uploads", x->lbsha[0] ? ps : NULL, S3_EMPTY_SHA256);
}

static const s3_phase PH_CREATE = { "CreateMultipartUpload", create_build, keep_ok, NULL, 0, 0 };

static int part_build(s3x *x, s3_slot *s, s3_part *p) {
    char q[64], hex[65];
    lb_buf b = { 0 };
    int rc;
    snprintf(q, sizeof q, "partNumber=%zu&uploadId=", s->part + 1);
    if (lb_buf_puts(&b, q) != LB_OK || lb_buf_puts(&b, x->upload_id_enc) != LB_OK) {
        lb_buf_free(&b);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    s3_hex(p->digest, 32, hex);
    rc = s3_sign(x, s, "PUT", b.data, NULL, 0, x->o->unsigned_payload ? LB_SIGV4_UNSIGNED_PAYLOAD : hex);
    lb_buf_free(&b);
    if (rc != LB_OK) return rc;
    if (p->buf) set_body(s, p->buf, p->len);
    else set_file_body(x, s, p);
    set_progress(s);
    return LB_OK;
}

static const s3_phase PH_PART = { "UploadPart", part_build, put_ok, NULL, 1, 0 };

static int upload_query(s3x *x, lb_buf *b) {
    return lb_buf_printf(b, "uploadId=%s", x->upload_id_enc);
}

static int complete_build(s3x *x, s3_slot *s, s3_part *p) {
    lb_sigv4_header h = { "Content-Type", "application/xml" };
    lb_buf b = { 0 };
    int rc;
    (void)p;
    if (upload_query(x, &b) != LB_OK) {
        lb_buf_free(&b);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    rc = s3_sign(x, s, "POST", b.data, &h, 1, x->body_hash);
    lb_buf_free(&b);
    if (rc == LB_OK) set_body(s, x->body, (int64_t)x->body_len);
    return rc;
}

/* A 200 to CompleteMultipartUpload may still carry an <Error>. */
static int complete_ok(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    char code[LB_S3_CODE_LEN], smsg[160];
    const lb_http_response *r = &s->res.resp;
    if (lb_s3_parse_error(r->body, r->body_len, code, sizeof code, smsg, sizeof smsg) == LB_OK) {
        if (!code[0]) snprintf(code, sizeof code, "HTTP_%ld", r->status);
        snprintf(x->res->code, sizeof x->res->code, "%s", code);
        snprintf(msg, LB_ERR_LEN, "HTTP %ld %s: %s", r->status, code, smsg);
        *retry = s3_retryable_code(code);
        return LB_ESERVICE;
    }
    return keep_ok(x, s, p, retry, msg);
}

static const s3_phase PH_COMPLETE = { "CompleteMultipartUpload", complete_build, complete_ok,
                                      NULL, 0, 0 };

static int abort_build(s3x *x, s3_slot *s, s3_part *p) {
    lb_buf b = { 0 };
    int rc;
    (void)p;
    if (upload_query(x, &b) != LB_OK) {
        lb_buf_free(&b);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    rc = s3_sign(x, s, "DELETE", b.data, NULL, 0, S3_EMPTY_SHA256);
    lb_buf_free(&b);
    return rc;
}

static const s3_phase PH_ABORT = { "AbortMultipartUpload", abort_build, keep_ok, NULL, 0, 1 };

/* ---- streams ------------------------------------------------------------------ */

/* Fill buf (cap bytes) from the reader: bytes read, or -code. */
static int64_t fill(s3x *x, char *buf, int64_t cap, int *eof) {
    int64_t len = 0;
    *eof = 0;
    while (len < cap) {
        long got = x->o->reader(x->o->reader_ud, buf + len, (size_t)(cap - len));
        if (got < 0) {
            int code = (int)-got;
            if (code == LB_ECANCELED) s3_fail(x, code, "cancelled by the reader");
            else if (code == LB_EIO) s3_fail(x, code, "reading the stream failed");
            else s3_fail(x, LB_ECALLBACK, "the stream reader failed");
            return -x->rc;
        }
        if (got == 0) { *eof = 1; break; }
        len += got;
    }
    return len;
}

/* Next stream part: a free buffer filled and hashed. */
static int stream_more(s3x *x) {
    s3_part *p;
    char *buf;
    int64_t len;
    int eof;
    unsigned int dl = 0;
    if (!x->npool && x->nbufs >= x->concurrency) return LB_HTTP_PUMP_WAIT;
    if (x->nparts == x->cap_parts) {
        size_t cap = x->cap_parts ? 2 * x->cap_parts : 16;
        s3_part *np;
        if (x->nparts >= LB_S3_MAX_PARTS)
            return s3_fail(x, LB_EINVAL, "stream longer than %d parts of %lld bytes (raise part_size)",
                           LB_S3_MAX_PARTS, (long long)x->part_size);
        if (cap > LB_S3_MAX_PARTS) cap = LB_S3_MAX_PARTS;
        np = lb_realloc(x->parts, cap * sizeof *np);
        if (!np) return s3_fail(x, LB_ENOMEM, "out of memory");
        x->parts = np;
        x->cap_parts = cap;
    }
    if (x->npool) {
        buf = x->pool[--x->npool];
    } else {
        if (!(buf = lb_malloc((size_t)x->part_size))) return s3_fail(x, LB_ENOMEM, "out of memory");
        x->nbufs++;
    }
    len = fill(x, buf, x->part_size, &eof);
    if (len < 0 || (len == 0 && x->nparts > 0)) {
        x->pool[x->npool++] = buf;
        x->stream_end = 1;
        return len < 0 ? x->rc : LB_HTTP_PUMP_END;
    }
    if (eof) x->stream_end = 1;
    p = &x->parts[x->nparts];
    memset(p, 0, sizeof *p);
    p->off = x->nparts ? x->parts[x->nparts - 1].off + x->parts[x->nparts - 1].len : 0;
    p->len = len;
    p->buf = buf;
    if (!EVP_Digest(len ? buf : "", (size_t)len, p->digest, &dl, EVP_sha256(), NULL)) {
        x->pool[x->npool++] = buf;
        p->buf = NULL;
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    x->nparts++;
    return LB_OK;
}

static const s3_phase PH_STREAM_PART = { "UploadPart", part_build, put_ok, stream_more, 1, 0 };

/* ---- upload ------------------------------------------------------------------ */

static int abort_upload(s3x *x) {
    s3_part one;
    int saved = x->rc, pending = lb_intr_pending();
    char keep[LB_ERR_LEN] = "", code[LB_S3_CODE_LEN];
    memcpy(code, x->res->code, sizeof code);
    if (x->err) snprintf(keep, sizeof keep, "%s", x->err);
    /* Clean up even after ^C: the interrupt is raised again afterwards. */
    if (pending) lb_intr_clear();
    x->rc = 0;
    memset(&one, 0, sizeof one);
    s3_run(x, &PH_ABORT, &one, 1, 1);
    if (pending) lb_intr_raise();
    if (x->err) snprintf(x->err, LB_ERR_LEN, "%s", keep);
    memcpy(x->res->code, code, sizeof code);
    x->rc = saved;
    return saved;
}

static void free_parts(s3_part *parts, size_t n) {
    size_t i;
    if (!parts) return;
    for (i = 0; i < n; i++) {
        lb_free(parts[i].etag);
        lb_free(parts[i].buf);
    }
    lb_free(parts);
}

/* <UploadId> text by a plain scan: no allocation, for when parsing ran out
 * of memory and the upload must still be aborted. */
static void scan_upload_id(const char *body, char *out, size_t cap) {
    const char *a = body ? strstr(body, "<UploadId>") : NULL, *b;
    out[0] = '\0';
    if (!a) return;
    a += 10;
    b = strstr(a, "</UploadId>");
    if (b && (size_t)(b - a) < cap && !memchr(a, '&', (size_t)(b - a)))
        snprintf(out, cap, "%.*s", (int)(b - a), a);
}

/* The S3 multipart ETag from the parts' plain-MD5 ETags:
 * "<md5 of the concatenated binary MD5s>-<n>" in quotes; NULL when a part's
 * ETag is not a plain MD5 (or out of memory). */
static char *multipart_etag(const s3_part *parts, size_t n) {
    unsigned char *all = lb_malloc(16 * n), md[16];
    unsigned int len = 0;
    char hex[33], out[48];
    size_t i, j;
    if (!all) return NULL;
    for (i = 0; i < n; i++) {
        const char *e = parts[i].etag;
        if (!e || strlen(e) != 34 || e[0] != '"' || e[33] != '"') break;
        for (j = 0; j < 16; j++) {
            unsigned v;
            if (sscanf(e + 1 + 2 * j, "%2x", &v) != 1) break;
            all[16 * i + j] = (unsigned char)v;
        }
        if (j < 16) break;
    }
    if (i < n || !EVP_Digest(all, 16 * n, md, &len, EVP_md5(), NULL)) {
        lb_free(all);
        return NULL;
    }
    lb_free(all);
    s3_hex(md, 16, hex);
    snprintf(out, sizeof out, "\"%s-%zu\"", hex, n);
    return lb_strdup(out);
}

/* A retried Complete answered NoSuchUpload: the first attempt may have
 * completed the upload and lost its answer.  It did if the object now
 * carries our lb-sha256 (files) or the multipart ETag of our parts
 * (streams); then res->etag is set and x's failure forgotten. */
static int completed_anyway(s3x *x, const s3_part *parts, size_t n) {
    s3_part one;
    char keep[LB_ERR_LEN] = "", code[LB_S3_CODE_LEN], *want = NULL;
    const char *got;
    int saved = x->rc, same = 0;
    if (x->err) snprintf(keep, sizeof keep, "%s", x->err);
    memcpy(code, x->res->code, sizeof code);
    memset(&one, 0, sizeof one);
    x->rc = 0;
    if (s3_run(x, &s3_ph_head, &one, 1, 1) == LB_OK) {
        if (x->lbsha[0]) {
            got = lb_http_response_header(&x->keep, "x-amz-meta-lb-sha256");
            same = got && !strcmp(got, x->lbsha);
        } else {
            got = lb_http_response_header(&x->keep, "ETag");
            want = multipart_etag(parts, n);
            same = got && want && !strcmp(got, want);
            lb_free(want);
        }
        got = lb_http_response_header(&x->keep, "ETag");
        if (same && got && !(x->res->etag = lb_strdup(got))) same = 0;
    }
    if (same) {
        x->rc = 0;
        x->res->code[0] = '\0';
        if (x->err) x->err[0] = '\0';
        return 1;
    }
    x->rc = saved;
    memcpy(x->res->code, code, sizeof code);
    if (x->err) snprintf(x->err, LB_ERR_LEN, "%s", keep);
    return 0;
}

/* Multipart, once x->parts[0..n) are known (file) or start (stream). */
static int multipart_run(s3x *x, s3_part **partsp, size_t *np, int stream, int *create_attempts) {
    lb_s3_result *res = x->res;
    lb_xml_elem *doc = NULL;
    const char *id, **etags = NULL;
    s3_part one;
    size_t i;
    int rc;
    char pserr[LB_ERR_LEN], idbuf[256] = "";
    memset(&one, 0, sizeof one);
    rc = s3_run(x, &PH_CREATE, &one, 1, 1);
    *create_attempts = one.attempts;
    if (rc != LB_OK) return rc;
    x->ph = &PH_CREATE;
    rc = lb_xml_parse(x->keep.body, x->keep.body_len, &doc, pserr);
    if (rc == LB_OK) s3_copy_text(idbuf, sizeof idbuf, lb_xml_child_text(doc, "UploadId"));
    else if (rc == LB_ENOMEM) scan_upload_id(x->keep.body, idbuf, sizeof idbuf);
    lb_xml_free(doc);
    if (!idbuf[0] || strlen(idbuf) >= sizeof idbuf - 1)
        return s3_fail(x, rc == LB_ENOMEM ? LB_ENOMEM : LB_EPARSE, "answer without an UploadId");
    s3_encode_into(idbuf, x->idenc, sizeof x->idenc);
    x->upload_id_enc = x->idenc;
    if (rc != LB_OK) {              /* out of memory, but the upload exists */
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
        goto abort;
    }
    if (!(res->upload_id = lb_strdup(idbuf))) {
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
        goto abort;
    }
    if (stream) {
        rc = s3_run(x, &PH_STREAM_PART, *partsp, *np, x->concurrency);
        *partsp = x->parts;         /* grown by stream_more */
        *np = x->nparts;
    } else {
        rc = s3_run(x, &PH_PART, *partsp, *np, x->concurrency);
    }
    if (rc != LB_OK) goto abort;
    if (!(etags = lb_malloc(*np * sizeof *etags))) {
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
        goto abort;
    }
    for (i = 0; i < *np; i++) etags[i] = (*partsp)[i].etag;
    x->body = lb_s3_complete_xml(etags, *np);
    lb_free(etags);
    if (!x->body) {
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
        goto abort;
    }
    x->body_len = strlen(x->body);
    if (lb_sigv4_sha256_hex(x->body, x->body_len, x->body_hash) != LB_OK) {
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
        goto abort;
    }
    if ((rc = s3_run(x, &PH_COMPLETE, &one, 1, 1)) != LB_OK) {
        if (rc == LB_ESERVICE && one.attempts > 1 && !strcmp(res->code, "NoSuchUpload")
            && completed_anyway(x, *partsp, *np)) {
            res->parts = (int)*np;
            return LB_OK;
        }
        goto abort;
    }
    x->ph = &PH_COMPLETE;
    doc = NULL;
    if (lb_xml_parse(x->keep.body, x->keep.body_len, &doc, pserr) == LB_OK
        && (id = lb_xml_child_text(doc, "ETag")) && *id)
        res->etag = lb_strdup(id);
    else                            /* Ceph RGW leaves <ETag> empty */
        res->etag = multipart_etag(*partsp, *np);
    lb_xml_free(doc);
    res->parts = (int)*np;
    return LB_OK;
abort:
    return abort_upload(x);
}

/* ListMultipartUploads of the bucket for prefix = key (a bucket URL). */
static int list_build(s3x *x, s3_slot *s, s3_part *p) {
    char *ek = lb_s3_encode_key(x->o->key), *object_url = x->url, *bucket_url;
    lb_buf q = { 0 };
    int rc;
    (void)p;
    bucket_url = lb_s3_object_url(x->o->endpoint, x->o->bucket, "", x->o->virtual_host);
    if (!ek || !bucket_url || lb_buf_printf(&q, "uploads&prefix=%s", ek) != LB_OK) {
        lb_free(ek);
        lb_free(bucket_url);
        lb_buf_free(&q);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    lb_free(ek);
    x->url = bucket_url;            /* s3_sign builds on x->url */
    rc = s3_sign(x, s, "GET", q.data, NULL, 0, S3_EMPTY_SHA256);
    x->url = object_url;
    lb_free(bucket_url);
    lb_buf_free(&q);
    return rc;
}

static const s3_phase PH_LIST = { "ListMultipartUploads", list_build, keep_ok, NULL, 0, 0 };

/* A Create that had to be retried may have opened uploads whose answers
 * were lost.  Abort the uploads of this very key initiated since t0 (less a
 * minute for clock skew), except ours.  Best effort: x's outcome is kept. */
static void sweep_lost_creates(s3x *x, time_t t0) {
    lb_xml_elem *doc = NULL;
    char keep[LB_ERR_LEN] = "", code[LB_S3_CODE_LEN];
    const char *mine = x->res->upload_id, *saved_enc = x->upload_id_enc;
    char saved_idenc[sizeof x->idenc];
    s3_part one;
    size_t i;
    int saved = x->rc;
    if (x->err) snprintf(keep, sizeof keep, "%s", x->err);
    memcpy(code, x->res->code, sizeof code);
    memcpy(saved_idenc, x->idenc, sizeof saved_idenc);
    x->rc = 0;
    memset(&one, 0, sizeof one);
    if (s3_run(x, &PH_LIST, &one, 1, 1) == LB_OK
        && lb_xml_parse(x->keep.body, x->keep.body_len, &doc, NULL) == LB_OK) {
        for (i = 0; i < doc->n; i++) {
            const lb_xml_elem *u = doc->kids[i];
            const char *k = lb_xml_child_text(u, "Key"), *id = lb_xml_child_text(u, "UploadId");
            const char *when = lb_xml_child_text(u, "Initiated");
            struct tm tm;
            if (strcmp(u->name, "Upload") || !k || !id || !when || strcmp(k, x->o->key)
                || (mine && !strcmp(id, mine)))
                continue;
            memset(&tm, 0, sizeof tm);
            if (!strptime(when, "%Y-%m-%dT%H:%M:%S", &tm) || timegm(&tm) < t0 - 60) continue;
            s3_encode_into(id, x->idenc, sizeof x->idenc);
            x->upload_id_enc = x->idenc;
            x->rc = 0;
            memset(&one, 0, sizeof one);
            s3_run(x, &PH_ABORT, &one, 1, 1);
        }
    }
    lb_xml_free(doc);
    memcpy(x->idenc, saved_idenc, sizeof saved_idenc);
    x->upload_id_enc = saved_enc;
    x->rc = saved;
    memcpy(x->res->code, code, sizeof code);
    if (x->err) snprintf(x->err, LB_ERR_LEN, "%s", keep);
}

static int multipart(s3x *x, s3_part **partsp, size_t *np, int stream) {
    time_t t0 = time(NULL);
    int attempts = 0, rc = multipart_run(x, partsp, np, stream, &attempts);
    if (attempts > 1) sweep_lost_creates(x, t0);
    return rc;
}

static int finish_single(s3x *x, s3_part *one) {
    x->res->etag = one->etag;
    one->etag = NULL;
    x->res->parts = 1;
    return LB_OK;
}

static int upload_file(s3x *x) {
    const lb_s3_opts *o = x->o;
    int64_t threshold = o->multipart_threshold > 0 ? o->multipart_threshold : LB_S3_DEFAULT_THRESHOLD;
    s3_part *parts = NULL, one;
    struct stat st;
    char hex[65];
    size_t n = 0, i;
    int rc;
    x->ph = &PH_PUT;
    x->fd = open(o->file, O_RDONLY | O_CLOEXEC);
    if (x->fd < 0 || fstat(x->fd, &st) != 0)
        return s3_fail(x, LB_EIO, "open %s: %s", o->file, strerror(errno));
    if (!S_ISREG(st.st_mode)) return s3_fail(x, LB_EIO, "%s: not a regular file", o->file);
    if (st.st_size > LB_S3_MAX_OBJECT)
        return s3_fail(x, LB_EINVAL, "%s: %lld bytes, more than an S3 object can hold (%lld)", o->file,
                       (long long)st.st_size, (long long)LB_S3_MAX_OBJECT);
    x->total = st.st_size;
    x->res->bytes = st.st_size;
    if (st.st_size <= threshold) {
        memset(&one, 0, sizeof one);
        one.len = st.st_size;
        if ((rc = hash_file(x, &one, 1)) != LB_OK) return rc;
        s3_hex(one.digest, 32, hex);
        snprintf(x->lbsha, sizeof x->lbsha, "%s", hex);
        x->payload = o->unsigned_payload ? LB_SIGV4_UNSIGNED_PAYLOAD : hex;
        if ((rc = s3_run(x, &PH_PUT, &one, 1, 1)) == LB_OK) rc = finish_single(x, &one);
        lb_free(one.etag);
        if (rc == LB_OK && !(x->res->sha256 = lb_strdup(x->lbsha)))
            rc = s3_fail(x, LB_ENOMEM, "out of memory");
        return rc;
    }
    x->part_size = lb_s3_part_size(st.st_size, o->part_size);
    n = (size_t)s3_ceil_div(st.st_size, x->part_size);     /* <= 10,000 */
    if (!(parts = lb_calloc(n, sizeof *parts))) return s3_fail(x, LB_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        parts[i].off = (int64_t)i * x->part_size;
        parts[i].len = i + 1 < n ? x->part_size : st.st_size - parts[i].off;
    }
    rc = hash_file(x, parts, n);
    if (rc == LB_OK) {
        unsigned char *d = lb_malloc(n * 32);
        if (!d) rc = s3_fail(x, LB_ENOMEM, "out of memory");
        for (i = 0; d && i < n; i++) memcpy(d + 32 * i, parts[i].digest, 32);
        if (d && lb_s3_composite(d, n, x->lbsha, sizeof x->lbsha) != LB_OK)
            rc = s3_fail(x, LB_ENOMEM, "out of memory");
        lb_free(d);
    }
    if (rc == LB_OK) rc = multipart(x, &parts, &n, 0);
    if (rc == LB_OK && !(x->res->sha256 = lb_strdup(x->lbsha)))
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
    free_parts(parts, n);
    return rc;
}

static int upload_stream(s3x *x) {
    const lb_s3_opts *o = x->o;
    s3_part *sp;
    size_t sn;
    int rc;
    x->ph = &PH_PUT;
    x->total = -1;
    x->part_size = o->part_size > 0 ? lb_s3_part_size(0, o->part_size) : LB_S3_DEFAULT_PART;
    x->pool = lb_calloc((size_t)x->concurrency, sizeof *x->pool);
    if (!x->pool) return s3_fail(x, LB_ENOMEM, "out of memory");
    x->parts = NULL;
    x->nparts = x->cap_parts = 0;
    rc = stream_more(x);            /* the first part decides */
    sp = x->parts;
    sn = x->nparts;
    if (rc != LB_OK) goto done;
    if (x->stream_end) {            /* it all fits in one PUT */
        char hex[65];
        s3_hex(sp[0].digest, 32, hex);
        x->payload = o->unsigned_payload ? LB_SIGV4_UNSIGNED_PAYLOAD : hex;
        x->res->bytes = sp[0].len;
        if ((rc = s3_run(x, &PH_PUT, sp, 1, 1)) == LB_OK) rc = finish_single(x, sp);
        goto done;
    }
    rc = multipart(x, &sp, &sn, 1);
    if (rc == LB_OK) {
        size_t i;
        for (i = 0; i < sn; i++) x->res->bytes += sp[i].len;
    }
done:
    free_parts(sp, sn);
    x->parts = NULL;
    return rc;
}

int lb_s3_upload(const lb_s3_opts *o, lb_s3_result *res, char *err) {
    s3x x;
    int rc;
    if (!o || !res) return lb_err_set(err, LB_EINVAL, "s3_upload: no options");
    if ((rc = s3x_init(&x, o, res, err)) != LB_OK) {
        s3x_free(&x);
        return rc;
    }
    if (!o->file == !o->reader) {
        s3x_free(&x);
        return lb_err_set(err, LB_EINVAL, "s3_upload: exactly one of file and reader is needed");
    }
    rc = o->file ? upload_file(&x) : upload_stream(&x);
    if (rc == LB_OK && o->on_progress)   /* the last word: everything done */
        o->on_progress(o->progress_ud, res->bytes, res->bytes);
    if (rc == LB_OK) res->code[0] = '\0';
    s3x_free(&x);
    if (rc != LB_OK) {
        char code[LB_S3_CODE_LEN];
        memcpy(code, res->code, sizeof code);
        lb_s3_result_free(res);
        if (rc == LB_ESERVICE) memcpy(res->code, code, sizeof code);
    }
    return rc;
}
