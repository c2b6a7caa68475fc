/* lb_s3_get.c -- S3 downloads (lb_s3_download), on the engine of lb_s3.c.
 *
 * HeadObject gives the size, ETag and our metadata (GetObjectTagging the
 * lb-crc32c tag); the ranges follow lb-part-size when the object carries
 * lb-crc32c "<8 hex>-<n>" or the older lb-sha256 "<64 hex>-<n>" (so each
 * range's CRC-32C or SHA-256 is one part's and the composite can be
 * recomputed) and that part size is one our uploads make (lb_s3_stored_part_size:
 * metadata is anyone's to write), else part_size.  A Content-Length above
 * LB_S3_MAX_OBJECT is refused, so a plan never exceeds 10,000 ranges.
 * Every range is a GET with Range and If-Match (the object must not change
 * under us), written with pwrite at its offset into a temporary file next
 * to the destination and hashed as it arrives. */
#include "lb_s3_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_xml.h"

enum { V_LENGTH, V_SHA256_PARTS, V_SHA256, V_MD5, V_CRC32C_PARTS };

/* ---- phases -------------------------------------------------------------- */

static int head_build(s3x *x, s3_slot *s, s3_part *p) {
    (void)p;
    return s3_sign(x, s, "HEAD", NULL, NULL, 0, S3_EMPTY_SHA256);
}

static int head_ok(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    (void)p; (void)retry; (void)msg;
    lb_http_response_free(&x->keep);
    x->keep = s->res.resp;
    memset(&s->res.resp, 0, sizeof s->res.resp);
    return LB_OK;
}

const s3_phase s3_ph_head = { "HeadObject", head_build, head_ok, NULL, 0, 0 };

/* A HEAD error has no body: ask with a one-byte GET for the S3 code. */
static int probe_build(s3x *x, s3_slot *s, s3_part *p) {
    lb_sigv4_header h = { "Range", "bytes=0-0" };
    (void)p;
    return s3_sign(x, s, "GET", NULL, &h, 1, S3_EMPTY_SHA256);
}

static const s3_phase PH_PROBE = { "GetObject", probe_build, head_ok, NULL, 0, 0 };

static int tags_build(s3x *x, s3_slot *s, s3_part *p) {
    (void)p;
    return s3_sign(x, s, "GET", "tagging", NULL, 0, S3_EMPTY_SHA256);
}

static const s3_phase PH_TAGS = { "GetObjectTagging", tags_build, head_ok, NULL, 0, 0 };

static int on_data(void *ud, const char *p, size_t n) {
    s3_slot *s = ud;
    s3x *x = s->x;
    s3_part *part = &x->parts[s->part];
    size_t done = 0;
    if (s->now + (int64_t)n > part->len) {
        s->why = LB_ECONNECT;       /* the peer went astray: retried */
        snprintf(s->why_msg, sizeof s->why_msg, "more bytes than the range holds");
        return LB_EIO;
    }
    while (done < n) {
        ssize_t w = pwrite(x->fd, p + done, n - done, (off_t)(part->off + s->now + (int64_t)done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->why = LB_EIO;
            int e = w < 0 ? errno : ENOSPC;     /* a 0-byte pwrite: the disk is full */
            snprintf(s->why_msg, sizeof s->why_msg, "write %.160s: %s (errno %d)", x->o->file,
                     strerror(e), e);
            return LB_EIO;
        }
        done += (size_t)w;
    }
    if (x->crc_ranges) s->crc = lb_crc32c(s->crc, p, n);
    if (s->md && !EVP_DigestUpdate(s->md, p, n)) {
        s->why = LB_ENOMEM;
        snprintf(s->why_msg, sizeof s->why_msg, "out of memory");
        return LB_ENOMEM;
    }
    s->now += (int64_t)n;
    return LB_OK;
}

static int get_build(s3x *x, s3_slot *s, s3_part *p) {
    lb_sigv4_header h[2];
    char range[64];
    size_t n = 0;
    int rc;
    if (x->ranged) {
        snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)p->off,
                 (long long)(p->off + p->len - 1));
        h[n].name = "Range";
        h[n++].value = range;
    }
    if (x->if_match) {
        h[n].name = "If-Match";
        h[n++].value = x->if_match;
    }
    if ((rc = s3_sign(x, s, "GET", NULL, h, n, S3_EMPTY_SHA256)) != LB_OK) return rc;
    if (s->md && !EVP_DigestInit_ex(s->md, x->md_type, NULL))
        return s3_fail(x, LB_ENOMEM, "out of memory");
    s->crc = 0;
    s->req.sink_kind = LB_HTTP_SINK_WRITER;
    s->req.on_data = on_data;
    s->req.data_ud = s;
    s->req.recv_buffer_size = S3_RECV_BUFFER;
    return LB_OK;
}

static int get_ok(s3x *x, s3_slot *s, s3_part *p, int *retry, char *msg) {
    unsigned int len = 0;
    if (x->ranged && s->res.resp.status != 206) {
        snprintf(msg, LB_ERR_LEN, "HTTP %ld to a ranged GET (206 expected)", s->res.resp.status);
        return LB_EINTEGRITY;
    }
    if (s->now != p->len) {
        *retry = 1;
        snprintf(msg, LB_ERR_LEN, "range %lld+%lld: got %lld bytes", (long long)p->off,
                 (long long)p->len, (long long)s->now);
        return LB_ECONNECT;
    }
    if (s->md && !EVP_DigestFinal_ex(s->md, p->digest, &len)) {
        snprintf(msg, LB_ERR_LEN, "out of memory");
        return LB_ENOMEM;
    }
    p->crc = s->crc;
    return LB_OK;
}

static const s3_phase PH_GET = { "GetObject", get_build, get_ok, NULL, 1, 0 };

/* ---- verification ---------------------------------------------------------- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int is_hex(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (hexval((unsigned char)s[i]) < 0) return 0;
    return 1;
}

/* Digest of bytes [0, size) of the temporary file (a second pass, for a
 * whole-object digest over several ranges). */
static int hash_back(s3x *x, const EVP_MD *md, unsigned char *out) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char *buf = lb_malloc(1 << 20);
    int64_t pos = 0;
    unsigned int len = 0;
    int rc = LB_OK;
    if (!ctx || !buf || !EVP_DigestInit_ex(ctx, md, NULL)) {
        rc = s3_fail(x, LB_ENOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        ssize_t got = pread(x->fd, buf, 1 << 20, (off_t)pos);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            rc = s3_fail(x, LB_EIO, "read back %s: %s", x->o->file, strerror(errno));
            goto done;
        }
        if (got == 0) break;
        EVP_DigestUpdate(ctx, buf, (size_t)got);
        pos += got;
    }
    EVP_DigestFinal_ex(ctx, out, &len);
done:
    EVP_MD_CTX_free(ctx);
    lb_free(buf);
    return rc;
}

/* Compare what arrived with what the object says it is. */
static int verify(s3x *x, int how, const char *want, s3_part *parts, size_t n) {
    unsigned char d[32], *all;
    char got[80];
    size_t i;
    int rc;
    if (how == V_CRC32C_PARTS) {
        uint32_t *crcs = lb_malloc(n * sizeof *crcs);
        if (!crcs) return s3_fail(x, LB_ENOMEM, "out of memory");
        for (i = 0; i < n; i++) crcs[i] = parts[i].crc;
        lb_s3_crc_composite(crcs, n, got, sizeof got);
        lb_free(crcs);
    } else if (how == V_SHA256_PARTS) {
        if (!(all = lb_malloc(32 * n))) return s3_fail(x, LB_ENOMEM, "out of memory");
        for (i = 0; i < n; i++) memcpy(all + 32 * i, parts[i].digest, 32);
        rc = lb_s3_composite(all, n, got, sizeof got);
        lb_free(all);
        if (rc != LB_OK) return s3_fail(x, rc, "out of memory");
    } else {
        size_t dl = how == V_MD5 ? 16 : 32;
        if (n == 1) memcpy(d, parts[0].digest, dl);
        else if ((rc = hash_back(x, how == V_MD5 ? EVP_md5() : EVP_sha256(), d)) != LB_OK) return rc;
        s3_hex(d, dl, got);
    }
    if (strcasecmp(got, want) != 0)
        return s3_fail(x, LB_EINTEGRITY, "checksum mismatch: the object says %s %.80s, the bytes "
                       "received hash to %.80s", how == V_MD5 ? "MD5" : how == V_CRC32C_PARTS ? "lb-crc32c"
                       : "lb-sha256", want, got);
    return LB_OK;
}

/* ---- download ------------------------------------------------------------- */

static int temp_open(s3x *x, char **tmp) {
    unsigned char r[4];
    char hex[9];
    lb_buf b = { 0 };
    int tries;
    for (tries = 0; tries < 8; tries++) {
        if (RAND_bytes(r, sizeof r) != 1) {
            unsigned v = (unsigned)getpid() * 2654435761u + (unsigned)(s3_mono() * 1e9);
            memcpy(r, &v, sizeof r);
        }
        s3_hex(r, sizeof r, hex);
        lb_buf_reset(&b);
        if (lb_buf_printf(&b, "%s.lbpart-%s", x->o->file, hex) != LB_OK) {
            lb_buf_free(&b);
            return s3_fail(x, LB_ENOMEM, "out of memory");
        }
        x->fd = open(b.data, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (x->fd >= 0) {
            *tmp = lb_buf_detach(&b, NULL);
            if (!*tmp) {
                close(x->fd);
                x->fd = -1;
                unlink(b.data);
                lb_buf_free(&b);
                return s3_fail(x, LB_ENOMEM, "out of memory");
            }
            return LB_OK;
        }
        if (errno != EEXIST) break;
    }
    {
        int e = errno;
        int rc = s3_fail(x, LB_EIO, "create %.200s: %s (errno %d)", b.data, strerror(e), e);
        lb_buf_free(&b);
        return rc;
    }
}

/* Facts from the HEAD answer. */
typedef struct head_info {
    int64_t size;
    const char *etag, *lbsha, *lbps, *lbsum;    /* lbsum: the lb-crc32c tag */
    int tagged;                     /* x-amz-tagging-count > 0 */
    int sse;                        /* KMS or customer keys: ETag is no MD5 */
} head_info;

static int read_head(s3x *x, head_info *h) {
    const char *cl = lb_http_response_header(&x->keep, "Content-Length");
    const char *enc = lb_http_response_header(&x->keep, "x-amz-server-side-encryption");
    memset(h, 0, sizeof h[0]);
    if (!cl || !*cl) return s3_fail(x, LB_EPARSE, "answer without a Content-Length");
    if ((h->size = s3_parse_size(cl)) < 0) return s3_fail(x, LB_EPARSE, "bad Content-Length '%.40s'", cl);
    if (h->size > LB_S3_MAX_OBJECT)
        return s3_fail(x, LB_EPARSE, "Content-Length %lld is more than an S3 object can hold (%lld)",
                       (long long)h->size, (long long)LB_S3_MAX_OBJECT);
    h->etag = lb_http_response_header(&x->keep, "ETag");
    h->lbsha = lb_http_response_header(&x->keep, "x-amz-meta-lb-sha256");
    h->lbps = lb_http_response_header(&x->keep, "x-amz-meta-lb-part-size");
    h->tagged = s3_parse_size(lb_http_response_header(&x->keep, "x-amz-tagging-count")) > 0;
    h->sse = (enc && strcasecmp(enc, "AES256") != 0)
          || lb_http_response_header(&x->keep, "x-amz-server-side-encryption-customer-algorithm");
    return LB_OK;
}

/* The object's lb-crc32c tag into out (cap bytes), else "" with a note
 * (a refusal or a missing tag only means less to check).  x->keep, the
 * HEAD answer h points into, is kept aside meanwhile. */
static void read_tag(s3x *x, char *out, size_t cap) {
    lb_http_response head = x->keep;
    lb_xml_elem *doc = NULL;
    const lb_xml_elem *set;
    s3_outcome saved;
    s3_part one;
    size_t i;
    out[0] = '\0';
    memset(&x->keep, 0, sizeof x->keep);
    memset(&one, 0, sizeof one);
    s3_outcome_save(x, &saved);
    if (s3_run(x, &PH_TAGS, &one, 1, 1) != LB_OK) {
        snprintf(x->res->note, sizeof x->res->note, "lb-crc32c tag not read: %.120s",
                 x->err && x->err[0] ? x->err : x->res->code);
    } else if (lb_xml_parse(x->keep.body, x->keep.body_len, &doc, NULL) == LB_OK
               && (set = lb_xml_child(doc, "TagSet"))) {
        for (i = 0; i < set->n; i++) {
            const char *k = lb_xml_child_text(set->kids[i], "Key");
            if (k && !strcmp(k, "lb-crc32c")) s3_copy_text(out, cap, lb_xml_child_text(set->kids[i], "Value"));
        }
    }
    lb_xml_free(doc);
    s3_outcome_restore(x, &saved);
    lb_http_response_free(&x->keep);
    x->keep = head;
}

/* A parts digest "<hexlen hex>-<n>" (named name) with the object's
 * lb-part-size: how, with *rs the stored part size, when an upload of ours
 * could have made them; else V_LENGTH (and a note when they were there). */
static int parts_check(s3x *x, const head_info *h, const char *digest, const char *name, size_t hexlen,
                       int how, int64_t *rs, char *want, size_t cap) {
    const char *dash = strchr(digest, '-');
    int64_t ps;
    if (!dash || (size_t)(dash - digest) != hexlen || !h->lbps) return V_LENGTH;
    if ((ps = lb_s3_stored_part_size(h->size, digest, h->lbps)) > 0) {
        *rs = ps;
        snprintf(want, cap, "%s", digest);
        return how;
    }
    snprintf(x->res->note, sizeof x->res->note, "lb-part-size '%.24s' with %s parts '%.12s' ignored "
             "(not a part size of ours for %lld bytes); ranges of %lld bytes", h->lbps, name, dash + 1,
             (long long)h->size, (long long)*rs);
    return V_LENGTH;
}

/* Choose the check and the range size; *want gets the expected digest. */
static int plan(s3x *x, const head_info *h, int64_t *rs, char *want, size_t cap) {
    const lb_s3_opts *o = x->o;
    int how;
    *rs = lb_s3_part_size(h->size, o->part_size);
    want[0] = '\0';
    if (o->no_checksum) return V_LENGTH;
    if (h->lbsum && (how = parts_check(x, h, h->lbsum, "lb-crc32c", 8, V_CRC32C_PARTS, rs, want, cap)))
        return how;
    if (h->lbsha) {
        if (!strchr(h->lbsha, '-') && strlen(h->lbsha) == 64 && is_hex(h->lbsha, 64)) {
            snprintf(want, cap, "%s", h->lbsha);
            return V_SHA256;
        }
        if ((how = parts_check(x, h, h->lbsha, "lb-sha256", 64, V_SHA256_PARTS, rs, want, cap))) return how;
    }
    if (h->etag && !h->sse && h->size <= LB_S3_MD5_LIMIT && strlen(h->etag) == 34
        && h->etag[0] == '"' && h->etag[33] == '"' && is_hex(h->etag + 1, 32)) {
        snprintf(want, cap, "%.32s", h->etag + 1);
        return V_MD5;
    }
    return V_LENGTH;
}

static const char *const VERIFIED[] = { "length", "sha256", "sha256", "md5", "crc32c" };

static int download(s3x *x) {
    const lb_s3_opts *o = x->o;
    s3_part one, *parts = NULL;
    head_info h;
    int64_t rs;
    char want[80], tag[80], *tmp = NULL;
    size_t n, i;
    int how, rc;
    memset(&one, 0, sizeof one);
    rc = s3_run(x, &s3_ph_head, &one, 1, 1);
    if (rc == LB_ESERVICE && x->keep.status == 0 && strncmp(x->res->code, "HTTP_4", 6) == 0) {
        char code[LB_S3_CODE_LEN], keep[LB_ERR_LEN] = "";
        memcpy(code, x->res->code, sizeof code);
        if (x->err) snprintf(keep, sizeof keep, "%s", x->err);
        x->rc = 0;
        memset(&one, 0, sizeof one);
        if (s3_run(x, &PH_PROBE, &one, 1, 1) != LB_ESERVICE || strncmp(x->res->code, "HTTP_", 5) == 0) {
            memcpy(x->res->code, code, sizeof code);   /* no better story */
            if (x->err) snprintf(x->err, LB_ERR_LEN, "%s", keep);
        }
        x->rc = LB_ESERVICE;
        if (!strcmp(x->res->code, "HTTP_404")) snprintf(x->res->code, LB_S3_CODE_LEN, "NoSuchKey");
        return LB_ESERVICE;
    }
    if (rc != LB_OK) return rc;
    if ((rc = read_head(x, &h)) != LB_OK) return rc;
    if (!o->no_checksum && !h.lbsha && h.tagged && h.lbps) {
        read_tag(x, tag, sizeof tag);
        if (tag[0]) h.lbsum = tag;
    }
    how = plan(x, &h, &rs, want, sizeof want);
    n = h.size ? (size_t)s3_ceil_div(h.size, rs) : 1;     /* <= 10,000 (lb_s3.h) */
    x->ranged = n > 1;
    x->res->bytes = h.size;
    x->total = h.size;
    if (h.etag && !(x->res->etag = lb_strdup(h.etag))) return s3_fail(x, LB_ENOMEM, "out of memory");
    x->if_match = x->res->etag;
    if (!(parts = lb_calloc(n, sizeof *parts))) return s3_fail(x, LB_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        parts[i].off = (int64_t)i * rs;
        parts[i].len = i + 1 < n ? rs : h.size - parts[i].off;
    }
    x->crc_ranges = how == V_CRC32C_PARTS;
    if (how == V_SHA256_PARTS || (how == V_SHA256 && n == 1)) x->md_type = EVP_sha256();
    else if (how == V_MD5 && n == 1) x->md_type = EVP_md5();
    if ((rc = temp_open(x, &tmp)) != LB_OK) goto done;
    rc = s3_run(x, &PH_GET, parts, n, x->concurrency < (int)n ? x->concurrency : (int)n);
    x->ph = &PH_GET;
    if (rc == LB_OK && how != V_LENGTH) rc = verify(x, how, want, parts, n);
    if (rc == LB_OK) {
        off_t end = lseek(x->fd, 0, SEEK_END);
        if (end != (off_t)h.size)
            rc = s3_fail(x, LB_EINTEGRITY, "%lld bytes written, the object has %lld",
                         (long long)end, (long long)h.size);
    }
    if (rc == LB_OK && o->fsync && fsync(x->fd) != 0)
        rc = s3_fail(x, LB_EIO, "fsync %s: %s (errno %d)", tmp, strerror(errno), errno);
    if (rc == LB_OK) {
        int c = close(x->fd);      /* NFS and quotas report late write errors here */
        x->fd = -1;
        if (c != 0) rc = s3_fail(x, LB_EIO, "close %s: %s (errno %d)", tmp, strerror(errno), errno);
        else if (rename(tmp, o->file) != 0)
            rc = s3_fail(x, LB_EIO, "rename to %s: %s (errno %d)", o->file, strerror(errno), errno);
    }
    if (rc != LB_OK) unlink(tmp);
    else {
        x->res->parts = (int)n;
        x->res->verified = VERIFIED[how];
    }
done:
    lb_free(tmp);
    lb_free(parts);
    return rc;
}

int lb_s3_download(const lb_s3_opts *o, lb_s3_result *res, char *err) {
    s3x x;
    int rc;
    if (!o || !res) return lb_err_set(err, LB_EINVAL, "s3_download: no options");
    if ((rc = s3x_init(&x, o, res, err)) != LB_OK) {
        s3x_free(&x);
        return rc;
    }
    if (!o->file || !*o->file) {
        s3x_free(&x);
        return lb_err_set(err, LB_EINVAL, "s3_download: file is required");
    }
    rc = download(&x);
    if (rc == LB_OK && o->on_progress) o->on_progress(o->progress_ud, res->bytes, res->bytes);
    s3x_free(&x);
    if (rc == LB_OK) {
        res->code[0] = '\0';
    } else {
        char code[LB_S3_CODE_LEN];
        memcpy(code, res->code, sizeof code);
        lb_s3_result_free(res);
        if (rc == LB_ESERVICE) memcpy(res->code, code, sizeof code);
    }
    return rc;
}
