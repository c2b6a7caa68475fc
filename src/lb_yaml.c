/* lb_yaml.c -- YAML loader: libyaml events -> lb_yaml_node tree.
 *
 * One pass over the event stream with an explicit stack of open
 * containers (no recursion, so deep input cannot overflow the C stack).
 * Scalars are resolved as they arrive (the grammar: lb_yaml_scalar.c); mappings are finished (merge keys,
 * duplicate keys, size) when they close.  Every node is on the document's
 * allocation list, so any error path frees everything with lb_yaml_free. */
#include "lb_yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "lb_alloc.h"
#include "lb_err.h"
#include "lb_yaml_scalar.h"

#define TAG_PREFIX "tag:yaml.org,2002:"

struct lb_yaml_doc {
    lb_yaml_node *root;
    lb_yaml_node *nodes;     /* allocation list (next_) */
};

/* ---- a small open-addressing hash: (class, bytes) -> value ------------ */

typedef struct hent {
    const void *k;           /* NULL: empty slot */
    size_t klen;
    int cls;
    void *val;
} hent;

typedef struct htab {
    hent *e;
    size_t cap, n;           /* cap is 0 or a power of two */
} htab;

static size_t hash_bytes(int cls, const void *k, size_t n) {
    const unsigned char *p = k;
    size_t h = 1469598103934665603ULL ^ (size_t)cls;   /* FNV-1a */
    while (n--) h = (h ^ *p++) * 1099511628211ULL;
    return h;
}

/* Slot holding (cls, k, klen), or the empty slot where it would go. */
static hent *ht_slot(const htab *t, int cls, const void *k, size_t klen) {
    size_t i = hash_bytes(cls, k, klen) & (t->cap - 1);
    for (;;) {
        hent *e = &t->e[i];
        if (!e->k || (e->cls == cls && e->klen == klen && memcmp(e->k, k, klen) == 0)) return e;
        i = (i + 1) & (t->cap - 1);
    }
}

static int ht_grow(htab *t) {
    size_t cap = t->cap ? t->cap * 2 : 16, i;
    hent *old = t->e, *ne = lb_calloc(cap, sizeof *ne);
    if (!ne) return LB_ENOMEM;
    t->e = ne;
    i = t->cap;
    t->cap = cap;
    while (i--)
        if (old[i].k) *ht_slot(t, old[i].cls, old[i].k, old[i].klen) = old[i];
    lb_free(old);
    return LB_OK;
}

/* Find an entry; NULL when absent. */
static hent *ht_get(const htab *t, int cls, const void *k, size_t klen) {
    hent *e;
    if (!t->cap) return NULL;
    e = ht_slot(t, cls, k, klen);
    return e->k ? e : NULL;
}

/* Insert (or find) an entry; *e receives it (e->k NULL before: new). */
static int ht_put(htab *t, int cls, const void *k, size_t klen, hent **e) {
    if ((t->n + 1) * 2 > t->cap && ht_grow(t) != LB_OK) return LB_ENOMEM;
    *e = ht_slot(t, cls, k, klen);
    if (!(*e)->k) {
        (*e)->k = k ? k : "";   /* zero-length keys still mark the slot used */
        (*e)->klen = klen;
        (*e)->cls = cls;
        (*e)->val = NULL;
        t->n++;
    }
    return LB_OK;
}

/* ---- builder --------------------------------------------------------- */

typedef struct frame {
    lb_yaml_node *node;
    size_t cap;              /* kids allocated */
    size_t nk;               /* kids used (map: keys and values) */
} frame;

typedef struct builder {
    const char *name;
    const char *data;
    size_t len;
    lb_yaml_doc *doc;
    frame *stack;
    size_t depth, stack_cap;
    htab anchors;            /* name (owned, lb_strdup) -> node */
    size_t max_nodes, max_written;
    size_t nreal;            /* nodes parsed so far (aliases not counted) */
    size_t max_bytes;
    size_t breal;            /* scalar bytes parsed so far (aliases not counted) */
    int max_depth;
    char *err;
} builder;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail_at(builder *b, int line, int col, const char *fmt, ...) {
    char msg[LB_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_err_set(b->err, LB_EPARSE, "%s:%d:%d: %s", b->name, line, col, msg);
}

static int oom(builder *b) {
    return lb_err_set(b->err, LB_ENOMEM, "%s: out of memory", b->name);
}

/* "!!int" for the core schema, the tag itself otherwise. */
static const char *short_tag(const char *tag, char *buf, size_t n) {
    if (tag && strncmp(tag, TAG_PREFIX, sizeof TAG_PREFIX - 1) == 0) {
        snprintf(buf, n, "!!%s", tag + sizeof TAG_PREFIX - 1);
        return buf;
    }
    return tag ? tag : "";
}

/* Quote a scalar for a message, shortened to fit. */
static const char *clip(const char *s, size_t len, char *buf, size_t n) {
    size_t i, j = 0;
    for (i = 0; i < len && j + 4 < n; i++) buf[j++] = (s[i] == '\n' || s[i] == '\0') ? ' ' : s[i];
    if (i < len) { buf[j - 1] = '.'; buf[j - 2] = '.'; buf[j - 3] = '.'; }
    buf[j] = '\0';
    return buf;
}

/* Allocate a node with room for a copy of tag and text; on the doc list. */
static lb_yaml_node *new_node(builder *b, int type, const char *tag, const char *text,
                              size_t len, const yaml_mark_t *mark) {
    size_t tl = tag ? strlen(tag) + 1 : 0;
    lb_yaml_node *n = lb_malloc(sizeof *n + tl + (text ? len + 1 : 0));
    char *p;
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    p = (char *)(n + 1);
    n->type = type;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    n->weight_ = 1;
    n->bytes_ = text ? len : 0;
    n->height_ = 1;
    if (tag) { memcpy(p, tag, tl); n->tag = p; p += tl; }
    if (text) {
        if (len) memcpy(p, text, len);
        p[len] = '\0';
        n->str = p;
        n->len = len;
    }
    n->next_ = b->doc->nodes;
    b->doc->nodes = n;
    b->nreal++;
    b->breal += n->bytes_;
    return n;
}

/* ---- scalar resolution ------------------------------------------------ */

/* Which core-schema type a tag forces: LB_YAML_* or -1 (none: keep as
 * string / container), -2 for "!" (string), -3 for !!seq, -4 for !!map. */
static int tag_type(const char *tag) {
    static const struct { const char *name; int type; } core[] = {
        {"str", LB_YAML_STR}, {"int", LB_YAML_INT}, {"float", LB_YAML_FLOAT},
        {"bool", LB_YAML_BOOL}, {"null", LB_YAML_NULL}, {"timestamp", LB_YAML_TIMESTAMP},
        {"seq", -3}, {"map", -4},
    };
    size_t i;
    if (!tag) return -1;
    if (strcmp(tag, "!") == 0) return -2;
    if (strncmp(tag, TAG_PREFIX, sizeof TAG_PREFIX - 1) != 0) return -1;
    for (i = 0; i < sizeof core / sizeof core[0]; i++)
        if (strcmp(tag + sizeof TAG_PREFIX - 1, core[i].name) == 0) return core[i].type;
    return -1;
}

/* Build a scalar node from a SCALAR event. */
static int new_scalar(builder *b, const yaml_event_t *ev, lb_yaml_node **out) {
    const char *s = (const char *)ev->data.scalar.value, *tag = (const char *)ev->data.scalar.tag;
    size_t len = ev->data.scalar.length;
    int style, want = tag_type(tag), type = LB_YAML_STR, tt = 0;
    long long iv = 0;
    double fv = 0;
    char *iso = NULL, t1[64], t2[64];
    lb_yaml_node *n;
    switch (ev->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE: style = LB_YAML_SINGLE; break;
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: style = LB_YAML_DOUBLE; break;
    case YAML_LITERAL_SCALAR_STYLE: style = LB_YAML_LITERAL; break;
    case YAML_FOLDED_SCALAR_STYLE: style = LB_YAML_FOLDED; break;
    default: style = LB_YAML_PLAIN; break;
    }
    if (want == -3 || want == -4)
        return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                       "tag %s on a scalar", short_tag(tag, t1, sizeof t1));
    if ((want == -1 && !tag && style == LB_YAML_PLAIN) || want >= 0) {
        int implicit = want < 0, r, word = lb_yaml_scalar_word(s, len);
        if ((implicit || want == LB_YAML_NULL) && (len == 0 || word == LB_YAML_WORD_NULL))
            type = LB_YAML_NULL;
        else if ((implicit || want == LB_YAML_BOOL) && word == LB_YAML_WORD_TRUE)
            type = LB_YAML_BOOL, iv = 1;
        else if ((implicit || want == LB_YAML_BOOL) && word == LB_YAML_WORD_FALSE)
            type = LB_YAML_BOOL, iv = 0;
        else if ((implicit || want == LB_YAML_INT || want == LB_YAML_FLOAT) &&
                 (r = lb_yaml_parse_int(s, len, &iv, &fv)) != 0)
            type = (r == 1 && want != LB_YAML_FLOAT) ? LB_YAML_INT : LB_YAML_FLOAT,
            fv = r == 1 ? (double)iv : fv;
        else if ((implicit || want == LB_YAML_FLOAT) && lb_yaml_parse_float(s, len, &fv))
            type = LB_YAML_FLOAT;
        else if ((implicit || want == LB_YAML_TIMESTAMP) && (tt = lb_yaml_parse_time(s, len, &iso)) != 0) {
            if (tt < 0)
                return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                               "invalid date or time '%s'", clip(s, len, t1, sizeof t1));
            if (!iso) return oom(b);
            type = tt;
        }
        if (want == LB_YAML_TIMESTAMP && type == LB_YAML_DATE) want = LB_YAML_DATE;
        if (!implicit && want != LB_YAML_STR && type != want) {
            lb_free(iso);
            return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                           "'%s' is not a valid %s", clip(s, len, t1, sizeof t1),
                           short_tag(tag, t2, sizeof t2));
        }
        if (want == LB_YAML_STR) type = LB_YAML_STR;
    }
    n = iso ? new_node(b, type, tag, iso, strlen(iso), &ev->start_mark)
            : new_node(b, type, tag, s, len, &ev->start_mark);
    lb_free(iso);
    if (!n) return oom(b);
    n->style = style;
    if (type == LB_YAML_BOOL) n->v.b = (int)iv;
    else if (type == LB_YAML_INT) n->v.i = iv;
    else if (type == LB_YAML_FLOAT) n->v.f = fv;
    *out = n;
    return LB_OK;
}

/* ---- containers -------------------------------------------------------- */

static int limit_check(builder *b, lb_yaml_node *n, const yaml_mark_t *m) {
    /* Only what aliases add is capped: a big plain document is not a bomb,
     * and the expanded size stays below input size + max_nodes. */
    if (n->weight_ > b->max_nodes + b->nreal)
        return fail_at(b, (int)m->line + 1, (int)m->column + 1,
                       "aliases expand to more than %zu extra nodes", b->max_nodes);
    if (n->bytes_ > b->max_bytes + b->breal)
        return fail_at(b, (int)m->line + 1, (int)m->column + 1,
                       "text added by aliases exceeds the limit of %zu bytes", b->max_bytes);
    if (n->height_ > b->max_depth)
        return fail_at(b, (int)m->line + 1, (int)m->column + 1,
                       "nesting deeper than %d levels after alias expansion", b->max_depth);
    return LB_OK;
}

/* Attach a finished node to the open container (or make it the root). */
static int add_node(builder *b, lb_yaml_node *n, const yaml_mark_t *m) {
    frame *f;
    lb_yaml_node *p;
    if (!b->depth) { b->doc->root = n; return LB_OK; }
    f = &b->stack[b->depth - 1];
    p = f->node;
    if (p->type == LB_YAML_MAP && f->nk % 2 == 0 && (n->type == LB_YAML_SEQ || n->type == LB_YAML_MAP))
        return fail_at(b, n->line, n->col, "mapping key must be a scalar, not a %s",
                       n->type == LB_YAML_SEQ ? "sequence" : "mapping");
    if (f->nk == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        lb_yaml_node **k = lb_realloc(p->kids, cap * sizeof *k);
        if (!k) return oom(b);
        p->kids = k;
        f->cap = cap;
    }
    p->kids[f->nk++] = n;
    p->n = p->type == LB_YAML_MAP ? f->nk / 2 : f->nk;
    if (p->type == LB_YAML_SEQ) {   /* mappings are measured when they close */
        p->weight_ += n->weight_;
        p->bytes_ += n->bytes_;
        if (n->height_ + 1 > p->height_) p->height_ = n->height_ + 1;
        return limit_check(b, p, m);
    }
    return LB_OK;
}

static int register_anchor(builder *b, const char *anchor, lb_yaml_node *n) {
    hent *e;
    char *k;
    if (!anchor) return LB_OK;
    if ((e = ht_get(&b->anchors, 0, anchor, strlen(anchor))) != NULL) {
        e->val = n;   /* a redefined anchor refers to the latest node */
        return LB_OK;
    }
    if (!(k = lb_strdup(anchor))) return oom(b);
    if (ht_put(&b->anchors, 0, k, strlen(k), &e) != LB_OK) { lb_free(k); return oom(b); }
    e->val = n;
    return LB_OK;
}

static int open_container(builder *b, const yaml_event_t *ev) {
    int map = ev->type == YAML_MAPPING_START_EVENT;
    const char *tag = (const char *)(map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
    const char *anchor = (const char *)(map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
    int want = tag_type(tag), rc;
    char t[64];
    lb_yaml_node *n;
    if ((want >= 0 || want == -2) || (want == -3 && map) || (want == -4 && !map))
        return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                       "tag %s on a %s", short_tag(tag, t, sizeof t), map ? "mapping" : "sequence");
    if (b->depth >= (size_t)b->max_depth)
        return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                       "nesting deeper than %d levels", b->max_depth);
    if (b->depth == b->stack_cap) {
        size_t cap = b->stack_cap ? b->stack_cap * 2 : 16;
        frame *s = lb_realloc(b->stack, cap * sizeof *s);
        if (!s) return oom(b);
        b->stack = s;
        b->stack_cap = cap;
    }
    if (!(n = new_node(b, map ? LB_YAML_MAP : LB_YAML_SEQ, tag, NULL, 0, &ev->start_mark)))
        return oom(b);
    n->open_ = 1;
    if ((rc = register_anchor(b, anchor, n)) != LB_OK) return rc;
    b->stack[b->depth].node = n;
    b->stack[b->depth].cap = 0;
    b->stack[b->depth].nk = 0;
    b->depth++;
    return LB_OK;
}

static int is_merge_key(const lb_yaml_node *k) {
    return k->type == LB_YAML_STR && k->style == LB_YAML_PLAIN && k->len == 2 &&
           memcmp(k->str, "<<", 2) == 0 &&
           (!k->tag || strcmp(k->tag, TAG_PREFIX "merge") == 0);
}

/* The class and bytes that identify a key for duplicate detection. */
static const void *key_id(const lb_yaml_node *k, int *cls, size_t *len) {
    switch (k->type) {
    case LB_YAML_NULL: *cls = 'n'; *len = 0; return "";
    case LB_YAML_BOOL: *cls = 'b'; *len = sizeof k->v.b; return &k->v.b;
    case LB_YAML_INT: *cls = 'i'; *len = sizeof k->v.i; return &k->v.i;
    case LB_YAML_FLOAT: *cls = 'f'; *len = sizeof k->v.f; return &k->v.f;
    default: *cls = 's'; *len = k->len; return k->str;   /* str, date, timestamp */
    }
}

static const char *key_text(const lb_yaml_node *k, char *buf, size_t n) {
    if (k->type == LB_YAML_NULL) return "null";
    return clip(k->str, k->len, buf, n);
}

/* Insert key into seen; *dup receives the earlier key node if present. */
static int seen_put(htab *seen, lb_yaml_node *key, lb_yaml_node **dup) {
    int cls;
    size_t len;
    const void *id = key_id(key, &cls, &len);
    hent *e;
    if (ht_put(seen, cls, id, len, &e) != LB_OK) return LB_ENOMEM;
    *dup = e->val;
    if (!e->val) e->val = key;
    return LB_OK;
}

static int push_pair(lb_yaml_node ***out, size_t *n, size_t *cap, lb_yaml_node *k, lb_yaml_node *v) {
    if (*n + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        lb_yaml_node **o = lb_realloc(*out, nc * sizeof *o);
        if (!o) return LB_ENOMEM;
        *out = o;
        *cap = nc;
    }
    (*out)[(*n)++] = k;
    (*out)[(*n)++] = v;
    return LB_OK;
}

/* Close a mapping: resolve merge keys, reject duplicates, measure it. */
static int finish_map(builder *b, lb_yaml_node *m, const yaml_mark_t *mark) {
    htab seen = {0};
    lb_yaml_node **out = NULL, *dup;
    size_t i, j, k, nout = 0, cap = 0, nmerge = 0;
    int rc = LB_OK;
    char t1[64];
    for (i = 0; i < m->n; i++) {   /* explicit keys first: they win */
        lb_yaml_node *key = m->kids[2 * i];
        if (is_merge_key(key)) { nmerge++; continue; }
        if (seen_put(&seen, key, &dup) != LB_OK) { rc = oom(b); goto done; }
        if (dup) {
            rc = fail_at(b, key->line, key->col, "duplicate key '%s' (first at %d:%d)",
                         key_text(key, t1, sizeof t1), dup->line, dup->col);
            goto done;
        }
    }
    if (nmerge) {
        for (i = 0; i < m->n; i++) {
            lb_yaml_node *key = m->kids[2 * i], *val = m->kids[2 * i + 1];
            lb_yaml_node *const *src = &val;
            size_t nsrc = 1;
            if (!is_merge_key(key)) {
                if (push_pair(&out, &nout, &cap, key, val) != LB_OK) { rc = oom(b); goto done; }
                continue;
            }
            if (val->type == LB_YAML_SEQ) { src = val->kids; nsrc = val->n; }
            for (j = 0; j < nsrc; j++) {
                const lb_yaml_node *s = src[j];
                if (s->type != LB_YAML_MAP) {
                    rc = fail_at(b, s->line, s->col,
                                 "merge key '<<' expects a mapping or a sequence of mappings, got %s",
                                 lb_yaml_type_name(s->type));
                    goto done;
                }
                for (k = 0; k < s->n; k++) {
                    if (seen_put(&seen, s->kids[2 * k], &dup) != LB_OK) { rc = oom(b); goto done; }
                    if (dup) continue;   /* an explicit or earlier merged key wins */
                    if (push_pair(&out, &nout, &cap, s->kids[2 * k], s->kids[2 * k + 1]) != LB_OK) {
                        rc = oom(b);
                        goto done;
                    }
                }
            }
        }
        lb_free(m->kids);
        m->kids = out;
        m->n = nout / 2;
        out = NULL;
    }
    for (i = 0; i < 2 * m->n; i++) {
        m->weight_ += m->kids[i]->weight_;
        m->bytes_ += m->kids[i]->bytes_;
        if (m->kids[i]->height_ + 1 > m->height_) m->height_ = m->kids[i]->height_ + 1;
        if ((rc = limit_check(b, m, mark)) != LB_OK) goto done;
    }
done:
    lb_free(out);
    lb_free(seen.e);
    return rc;
}

/* ---- event loop -------------------------------------------------------- */

static int parser_error(builder *b, yaml_parser_t *p) {
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    char ctx[128] = "";
    if (p->error == YAML_MEMORY_ERROR) return oom(b);
    if (p->error == YAML_READER_ERROR) {   /* only a byte offset is known */
        size_t i, off = p->problem_offset < b->len ? p->problem_offset : b->len;
        line = 1, col = 1;
        for (i = 0; i < off; i++) {
            if (b->data[i] == '\n') line++, col = 1;
            else col++;
        }
    }
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s at %d:%d)", p->context, (int)p->context_mark.line + 1,
                 (int)p->context_mark.column + 1);
    return lb_err_set(b->err, LB_EPARSE, "%s:%d:%d: %s%s", b->name, line, col,
                      p->problem ? p->problem : "syntax error", ctx);
}

static int on_event(builder *b, const yaml_event_t *ev, int *ndocs, int *done) {
    lb_yaml_node *n = NULL;
    hent *e;
    int rc;
    char t[64];
    if ((ev->type == YAML_SCALAR_EVENT || ev->type == YAML_SEQUENCE_START_EVENT ||
         ev->type == YAML_MAPPING_START_EVENT) && b->nreal >= b->max_written)
        return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                       "node count exceeds the limit of %zu nodes", b->max_written);
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*ndocs > 1)
            return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                           "a second document is not supported (one document per file)");
        return LB_OK;
    case YAML_SCALAR_EVENT:
        if ((rc = new_scalar(b, ev, &n)) != LB_OK) return rc;
        if ((rc = register_anchor(b, (const char *)ev->data.scalar.anchor, n)) != LB_OK) return rc;
        return add_node(b, n, &ev->start_mark);
    case YAML_ALIAS_EVENT: {
        const char *a = (const char *)ev->data.alias.anchor;
        e = ht_get(&b->anchors, 0, a, strlen(a));
        if (!e)
            return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                           "unknown alias '*%s'", clip(a, strlen(a), t, sizeof t));
        n = e->val;
        if (n->open_)
            return fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                           "recursive alias '*%s' (refers to a node that contains it)",
                           clip(a, strlen(a), t, sizeof t));
        return add_node(b, n, &ev->start_mark);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        return open_container(b, ev);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        n = b->stack[--b->depth].node;
        n->open_ = 0;
        if (n->type == LB_YAML_MAP && (rc = finish_map(b, n, &ev->start_mark)) != LB_OK) return rc;
        return add_node(b, n, &ev->start_mark);
    case YAML_STREAM_END_EVENT:
        *done = 1;
        return LB_OK;
    default:
        return LB_OK;
    }
}

static size_t max_input(const lb_yaml_limits *lim) {
    return lim && lim->max_input ? lim->max_input : (size_t)LB_YAML_MAX_INPUT;
}

int lb_yaml_load(const char *data, size_t len, const char *name, const lb_yaml_limits *lim,
                 lb_yaml_doc **out, char *err) {
    builder b;
    yaml_parser_t parser;
    yaml_event_t ev;
    int rc = LB_OK, ndocs = 0, done = 0;
    size_t i;
    *out = NULL;
    memset(&b, 0, sizeof b);
    b.name = name ? name : "yaml";
    b.data = data;
    b.len = len;
    b.err = err;
    b.max_nodes = lim && lim->max_nodes ? lim->max_nodes : LB_YAML_MAX_NODES;
    b.max_depth = lim && lim->max_depth > 0 ? lim->max_depth : LB_YAML_MAX_DEPTH;
    b.max_bytes = lim && lim->max_bytes ? lim->max_bytes : LB_YAML_MAX_BYTES;
    b.max_written = lim && lim->max_written ? lim->max_written : LB_YAML_MAX_NODES;
    if (len > max_input(lim))
        return lb_err_set(err, LB_EINVAL, "%s: %zu bytes exceeds the limit of %zu bytes for YAML",
                          b.name, len, max_input(lim));
    if (!(b.doc = lb_calloc(1, sizeof *b.doc))) return oom(&b);
    if (!yaml_parser_initialize(&parser)) { lb_free(b.doc); return oom(&b); }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) { rc = parser_error(&b, &parser); break; }
        rc = on_event(&b, &ev, &ndocs, &done);
        yaml_event_delete(&ev);
        if (rc != LB_OK) break;
    }
    yaml_parser_delete(&parser);
    if (rc == LB_OK && !b.doc->root) {   /* empty stream: a null document */
        yaml_mark_t m = {0, 0, 0};
        if (!(b.doc->root = new_node(&b, LB_YAML_NULL, NULL, "", 0, &m))) rc = oom(&b);
    }
    for (i = 0; i < b.anchors.cap; i++) lb_free((void *)b.anchors.e[i].k);
    lb_free(b.anchors.e);
    lb_free(b.stack);
    if (rc != LB_OK) { lb_yaml_free(b.doc); return rc; }
    *out = b.doc;
    return LB_OK;
}

/* Read a regular file of at most `cap` bytes into *data (NUL-terminated). */
static int read_regular(const char *path, size_t cap, char **data, size_t *len, char *err) {
    struct stat st;
    size_t have = 0, room = 0;
    char *p;
    int fd, rc = LB_OK;
    *data = NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
        return lb_err_set(err, LB_EIO, "open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = lb_err_set(err, LB_EIO, "stat '%s': %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = lb_err_set(err, LB_EINVAL, "%s: not a regular file (a %s cannot be read as YAML)", path,
                        S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "FIFO"
                        : S_ISSOCK(st.st_mode) ? "socket" : "device");
    } else if ((unsigned long long)st.st_size > cap) {
        rc = lb_err_set(err, LB_EINVAL, "%s: %lld bytes exceeds the limit of %zu bytes for YAML",
                        path, (long long)st.st_size, cap);
    } else if (!(*data = lb_malloc((room = (size_t)st.st_size + 1) + 1))) {
        rc = lb_err_set(err, LB_ENOMEM, "%s: out of memory", path);
    }
    while (rc == LB_OK) {   /* read one byte past the size seen: a growing file is caught */
        ssize_t r = read(fd, *data + have, room - have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = lb_err_set(err, LB_EIO, "read '%s': %s", path, strerror(errno));
        else if (r == 0) break;
        else if ((have += (size_t)r) > cap) {
            rc = lb_err_set(err, LB_EINVAL, "%s: more than %zu bytes exceeds the limit for YAML", path, cap);
        } else if (have == room) {   /* grew since fstat: read on, up to the cap */
            room = room * 2 < cap + 1 ? room * 2 : cap + 1;
            if (room == have) room++;
            if (!(p = lb_realloc(*data, room + 1))) rc = lb_err_set(err, LB_ENOMEM, "%s: out of memory", path);
            else *data = p;
        }
    }
    close(fd);
    if (rc != LB_OK) { lb_free(*data); *data = NULL; return rc; }
    (*data)[have] = '\0';
    *len = have;
    return LB_OK;
}

int lb_yaml_load_file(const char *path, const lb_yaml_limits *lim, lb_yaml_doc **out, char *err) {
    char *data;
    size_t len = 0;
    int rc;
    *out = NULL;
    if ((rc = read_regular(path, max_input(lim), &data, &len, err)) != LB_OK) return rc;
    rc = lb_yaml_load(data, len, path, lim, out, err);
    lb_free(data);
    return rc;
}

const lb_yaml_node *lb_yaml_root(const lb_yaml_doc *doc) { return doc->root; }

const lb_yaml_node *lb_yaml_get(const lb_yaml_node *map, const char *key) {
    size_t i, kl = strlen(key);
    if (!map || map->type != LB_YAML_MAP) return NULL;
    for (i = 0; i < map->n; i++) {
        const lb_yaml_node *k = map->kids[2 * i];
        if ((k->type == LB_YAML_STR || k->type == LB_YAML_DATE || k->type == LB_YAML_TIMESTAMP) &&
            k->len == kl && memcmp(k->str, key, kl) == 0)
            return map->kids[2 * i + 1];
    }
    return NULL;
}

void lb_yaml_free(lb_yaml_doc *doc) {
    lb_yaml_node *n, *next;
    if (!doc) return;
    for (n = doc->nodes; n; n = next) {
        next = n->next_;
        lb_free(n->kids);
        lb_free(n);
    }
    lb_free(doc);
}

const char *lb_yaml_type_name(int type) {
    static const char *const names[] = {"null", "bool", "int", "float", "str",
                                        "date", "timestamp", "sequence", "mapping"};
    return type >= 0 && type <= LB_YAML_MAP ? names[type] : "?";
}
