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
 * retryable way waits out its backoff and runs again alone.
 *
 * A file is read once: each request's body is aws-chunked (lb_s3_chunked.c),
 * hashed and signed as it is sent, and the server checks every chunk.  A
 * multipart object then gets the lb-crc32c tag (PutObjectTagging): the
 * CRC-32C of its parts' CRC-32Cs, for downloads to check end to end. */
#define _GNU_SOURCE                 /* strptime, timegm */
#include "lb_s3_int.h"

#include <errno.h>
#include <fcntl.h>
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

/* ---- upload phases ---------------------------------------------------------- */

/* What object_headers adds beyond the caller's metadata. */
typedef struct obj_extra {
    const char *part_size;                 /* Create: lb-part-size */
    const char *decoded;                   /* aws-chunked: the data length */
} obj_extra;

/* Content-Type, user metadata, ours and the aws-chunked pair; the count
 * into h (room for nmetadata + 4). */
static size_t object_headers(s3x *x, lb_sigv4_header *h, const obj_extra *e) {
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
    if (e && e->part_size) {
        h[n].name = "x-amz-meta-lb-part-size";
        h[n++].value = e->part_size;
    }
    return n;
}

/* The headers of an aws-chunked body of len data bytes (room for 2);
 * dec holds the decoded length's digits. */
static size_t chunked_headers(lb_sigv4_header *h, int64_t len, char dec[24]) {
    snprintf(dec, 24, "%lld", (long long)len);
    h[0].name = "Content-Encoding";
    h[0].value = "aws-chunked";
    h[1].name = "x-amz-decoded-content-length";
    h[1].value = dec;
    return 2;
}

static int sign_object(s3x *x, s3_slot *s, const char *method, const char *query,
                       const obj_extra *e, const char *payload) {
    lb_sigv4_header *h = lb_malloc((x->o->nmetadata + 4) * sizeof *h);
    char dec[24];
    size_t n;
    int rc;
    if (!h) return s3_fail(x, LB_ENOMEM, "out of memory");
    n = object_headers(x, h, e);
    if (e && e->decoded) n += chunked_headers(h + n, s3_parse_size(e->decoded), dec);
    rc = s3_sign(x, s, method, query, h, n, payload);
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


static long chunked_body(void *ud, char *buf, size_t cap) {
    s3_slot *s = ud;
    long n = s3_chunked_read(&s->ck, buf, cap);
    if (n < 0 && !s->why) {
        s->why = LB_EIO;
        snprintf(s->why_msg, sizeof s->why_msg, "read %.200s: %s", s->x->o->file,
                 s->ck.err_no ? strerror(s->ck.err_no) : "file shrank while reading");
    }
    return n;
}

/* A file part's bytes are read by s3_chunked (once, CRC-32C taken)... */
static int file_part(const s3x *x, const s3_part *p) {
    return x->o->file && !p->buf && p->len > 0;
}

/* ... framed aws-chunked unless unsigned payloads are asked for. */
static int chunked(const s3x *x, const s3_part *p) {
    return file_part(x, p) && !x->o->unsigned_payload;
}

/* p's file bytes as a body read once: aws-chunked, signed after s's
 * signature, or as they are (unsigned payloads). */
static int set_file_body(s3x *x, s3_slot *s, const s3_part *p) {
    size_t chunk = chunked(x, p) ? (size_t)S3_CHUNK : 0;
    int rc = s3_chunked_start(&s->ck, x->o, x->region, &s->sig, x->fd, p->off, p->len, chunk);
    if (rc != LB_OK) return s3_fail(x, rc, "aws-chunked body: %s", lb_err_name(rc));
    s->req.body_kind = LB_HTTP_BODY_READER;
    s->req.body_reader = chunked_body;
    s->req.body_ud = s;
    s->req.body_length = s3_chunked_length(p->len, chunk);
    /* Two framed chunks: libcurl asks for a whole buffer, so each chunk is
     * read straight into it (lb_s3_chunked.c), none framed aside. */
    s->req.send_buffer_size = chunk ? (long)(2 * s3_chunked_framed(chunk)) : S3_SEND_BUFFER;
    return LB_OK;
}

/* The body of p: its stream buffer, its file range, or nothing. */
static int set_part_body(s3x *x, s3_slot *s, const s3_part *p) {
    if (file_part(x, p)) return set_file_body(x, s, p);
    set_body(s, p->buf ? p->buf : "", p->len);
    return LB_OK;
}

static void set_progress(s3_slot *s) {
    s->req.on_progress = s3_progress_cb;
    s->req.progress_ud = s;
}

/* The payload hash to sign p's request with. */
static const char *payload_of(const s3x *x, const s3_part *p, char hex[65]) {
    if (chunked(x, p)) return S3_STREAMING;
    if (x->o->unsigned_payload) return LB_SIGV4_UNSIGNED_PAYLOAD;
    if (!p->buf) return S3_EMPTY_SHA256;        /* an empty file */
    s3_hex(p->digest, 32, hex);
    return hex;
}

/* PutObject (whole file, or the stream's only buffer). */
static int put_build(s3x *x, s3_slot *s, s3_part *p) {
    obj_extra e = { NULL, NULL };
    char hex[65], dec[24];
    int rc;
    if (chunked(x, p)) {
        snprintf(dec, sizeof dec, "%lld", (long long)p->len);
        e.decoded = dec;
    }
    if ((rc = sign_object(x, s, "PUT", NULL, &e, payload_of(x, p, hex))) != LB_OK) return rc;
    if ((rc = set_part_body(x, s, p)) != LB_OK) return rc;
    set_progress(s);
    return LB_OK;
}

/* An UploadPart or PutObject answer: its ETag, and a file body's CRC. */
static int put_ok(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    if (s->req.body_reader == chunked_body) {
        if (!s->ck.ended) {         /* a 2xx before the whole body went */
            *retry = 1;
            snprintf(msg, LB_ERR_LEN, "answered before the whole body was sent");
            return LB_ECONNECT;
        }
        p->crc = s3_chunked_crc(&s->ck);
    }
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

/* lb-part-size: downloads align their ranges to the parts to check them. */
static int create_build(s3x *x, s3_slot *s, s3_part *p) {
    obj_extra e = { NULL, NULL };
    char ps[24];
    (void)p;
    snprintf(ps, sizeof ps, "%lld", (long long)x->part_size);
    e.part_size = ps;
    return sign_object(x, s, "POST", "uploads", &e, S3_EMPTY_SHA256);
}

static const s3_phase PH_CREATE = { "CreateMultipartUpload", create_build, keep_ok, NULL, 0, 0 };

static int part_build(s3x *x, s3_slot *s, s3_part *p) {
    char q[64], hex[65], dec[24];
    lb_sigv4_header h[2];
    lb_buf b = { 0 };
    int rc;
    snprintf(q, sizeof q, "partNumber=%zu&uploadId=", s->part + 1);
    if (lb_buf_puts(&b, q) != LB_OK || lb_buf_puts(&b, x->upload_id_enc) != LB_OK) {
        lb_buf_free(&b);
        return s3_fail(x, LB_ENOMEM, "out of memory");
    }
    rc = s3_sign(x, s, "PUT", b.data, h, chunked(x, p) ? chunked_headers(h, p->len, dec) : 0,
                 payload_of(x, p, hex));
    lb_buf_free(&b);
    if (rc != LB_OK) return rc;
    if ((rc = set_part_body(x, s, p)) != LB_OK) return rc;
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
    p->crc = lb_crc32c(0, buf, (size_t)len);
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
    s3_outcome saved;
    int pending = lb_intr_pending();
    s3_outcome_save(x, &saved);
    /* Clean up even after ^C: the interrupt is raised again afterwards. */
    if (pending) lb_intr_clear();
    memset(&one, 0, sizeof one);
    s3_run(x, &PH_ABORT, &one, 1, 1);
    if (pending) lb_intr_raise();
    s3_outcome_restore(x, &saved);
    return saved.rc;
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
 * carries the multipart ETag of our parts; then res->etag is set and x's
 * failure forgotten. */
static int completed_anyway(s3x *x, const s3_part *parts, size_t n) {
    s3_part one;
    char *want = NULL;
    const char *got;
    s3_outcome saved;
    int same = 0;
    s3_outcome_save(x, &saved);
    memset(&one, 0, sizeof one);
    if (s3_run(x, &s3_ph_head, &one, 1, 1) == LB_OK) {
        got = lb_http_response_header(&x->keep, "ETag");
        want = multipart_etag(parts, n);
        same = got && want && !strcmp(got, want) && (x->res->etag = lb_strdup(got)) != NULL;
        lb_free(want);
    }
    if (same) {
        x->rc = 0;
        x->res->code[0] = '\0';
        if (x->err) x->err[0] = '\0';
        return 1;
    }
    s3_outcome_restore(x, &saved);
    return 0;
}

/* PutObjectTagging: lb-crc32c = x->lbsum (the object is new: no tags to keep). */
static int tag_build(s3x *x, s3_slot *s, s3_part *p) {
    lb_sigv4_header h[2] = { { "Content-Type", "application/xml" }, { "Content-MD5", x->tag_md5 } };
    int rc;
    (void)p;
    rc = s3_sign(x, s, "PUT", "tagging", h, 2, x->body_hash);
    if (rc == LB_OK) set_body(s, x->body, (int64_t)x->body_len);
    return rc;
}

static const s3_phase PH_TAG = { "PutObjectTagging", tag_build, keep_ok, NULL, 0, 0 };

/* Tag the finished object with x->lbsum.  The object is complete either
 * way: a refusal (no s3:PutObjectTagging, say) is res->note, not a failure;
 * its downloads then check what they can without it. */
static void store_tag(s3x *x) {
    s3_part one;
    s3_outcome saved;
    unsigned char md5[16];
    unsigned int ml = 0;
    lb_free(x->body);
    x->body = lb_s3_tagging_xml("lb-crc32c", x->lbsum);
    s3_outcome_save(x, &saved);
    if (!x->body || lb_sigv4_sha256_hex(x->body, x->body_len = strlen(x->body), x->body_hash) != LB_OK
        || !EVP_Digest(x->body, x->body_len, md5, &ml, EVP_md5(), NULL)
        || EVP_EncodeBlock((unsigned char *)x->tag_md5, md5, 16) != 24) {
        s3_copy_text(x->res->note, sizeof x->res->note, "lb-crc32c tag not stored: out of memory");
    } else {
        memset(&one, 0, sizeof one);
        if (s3_run(x, &PH_TAG, &one, 1, 1) != LB_OK)
            snprintf(x->res->note, sizeof x->res->note, "lb-crc32c tag not stored: %.120s",
                     x->err && x->err[0] ? x->err : x->res->code);
    }
    s3_outcome_restore(x, &saved);
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
    s3_outcome saved;
    const char *mine = x->res->upload_id, *saved_enc = x->upload_id_enc;
    char saved_idenc[sizeof x->idenc];
    s3_part one;
    size_t i;
    s3_outcome_save(x, &saved);
    memcpy(saved_idenc, x->idenc, sizeof saved_idenc);
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
    s3_outcome_restore(x, &saved);
}

/* The object's lb-crc32c from its parts' CRCs (known for stream parts and
 * chunked file parts), tagged on it; res->checksum gets it too. */
static int digest_parts(s3x *x, const s3_part *parts, size_t n) {
    uint32_t *crcs;
    size_t i;
    if (!(crcs = lb_malloc(n * sizeof *crcs))) return s3_fail(x, LB_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) crcs[i] = parts[i].crc;
    lb_s3_crc_composite(crcs, n, x->lbsum, sizeof x->lbsum);
    lb_free(crcs);
    if (!(x->res->checksum = lb_strdup(x->lbsum))) return s3_fail(x, LB_ENOMEM, "out of memory");
    store_tag(x);
    return LB_OK;
}

static int multipart(s3x *x, s3_part **partsp, size_t *np, int stream) {
    time_t t0 = time(NULL);
    int attempts = 0, rc = multipart_run(x, partsp, np, stream, &attempts);
    if (attempts > 1) sweep_lost_creates(x, t0);
    return rc == LB_OK ? digest_parts(x, *partsp, *np) : rc;
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
    if (st.st_size <= threshold) {  /* one PUT; its ETag is the MD5 downloads check */
        memset(&one, 0, sizeof one);
        one.len = st.st_size;
        if ((rc = s3_run(x, &PH_PUT, &one, 1, 1)) == LB_OK) rc = finish_single(x, &one);
        lb_free(one.etag);
        return rc;
    }
    x->part_size = lb_s3_part_size(st.st_size, o->part_size);
    n = (size_t)s3_ceil_div(st.st_size, x->part_size);     /* <= 10,000 */
    if (!(parts = lb_calloc(n, sizeof *parts))) return s3_fail(x, LB_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        parts[i].off = (int64_t)i * x->part_size;
        parts[i].len = i + 1 < n ? x->part_size : st.st_size - parts[i].off;
    }
    rc = multipart(x, &parts, &n, 0);
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
    /* Part buffers are memory: a stream keeps to the starting concurrency. */
    if (x->adaptive) x->concurrency = LB_S3_DEFAULT_CONCURRENCY;
    x->adaptive = 0;
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
