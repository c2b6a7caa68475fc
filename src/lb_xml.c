/* lb_xml.c -- libexpat streaming parser building an lb_xml_elem tree. */
#include "lb_xml.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <expat.h>

#include "lb_alloc.h"
#include "lb_err.h"

#define NS_SEP '|'   /* expat reports "uri|local"; '|' cannot be in a name */

struct lb_xml_parser {
    XML_Parser xp;
    lb_xml_elem *root;       /* owned until taken */
    lb_xml_elem *cur;        /* innermost open element */
    int depth;
    int rc;                  /* sticky failure (LB_OK while fine) */
    int finished;
    char msg[LB_ERR_LEN];    /* message of rc */
};

/* expat allocates through lb_alloc too, so fault injection covers it. */
static void *mm_malloc(size_t n) { return lb_malloc(n); }
static void *mm_realloc(void *p, size_t n) { return lb_realloc(p, n); }
static void mm_free(void *p) { lb_free(p); }
static const XML_Memory_Handling_Suite MM = {mm_malloc, mm_realloc, mm_free};

static const char *local_name(const char *name, size_t *ns_len) {
    const char *sep = strrchr(name, NS_SEP);
    *ns_len = sep ? (size_t)(sep - name) : 0;
    return sep ? sep + 1 : name;
}

/* Stop the parse from inside a handler, remembering why. */
static void abort_with(lb_xml_parser *p, int code, const char *what) {
    if (p->rc != LB_OK) return;
    p->rc = code;
    if (code == LB_ENOMEM)
        snprintf(p->msg, sizeof p->msg, "xml: out of memory");
    else
        snprintf(p->msg, sizeof p->msg, "xml: line %lu col %lu: %s",
                 (unsigned long)XML_GetCurrentLineNumber(p->xp),
                 (unsigned long)XML_GetCurrentColumnNumber(p->xp) + 1, what);
    XML_StopParser(p->xp, XML_FALSE);
}

/* One block: the element, its attribute array and every string. */
static lb_xml_elem *new_elem(const char *name, const char **atts) {
    size_t nl, nsl, na = 0, size, i;
    const char *ln = local_name(name, &nsl);
    lb_xml_elem *e;
    char *p;
    nl = strlen(ln);
    size = sizeof *e + (nsl ? nsl + 1 : 0) + nl + 1 + 1;   /* + "" text */
    for (i = 0; atts[i]; i += 2) {
        size_t l;
        size += strlen(local_name(atts[i], &l)) + 1 + strlen(atts[i + 1]) + 1 + sizeof(lb_xml_attr);
        na++;
    }
    if (!(e = lb_malloc(size))) return NULL;
    memset(e, 0, sizeof *e);
    e->attrs = na ? (lb_xml_attr *)(e + 1) : NULL;
    p = (char *)(e + 1) + na * sizeof(lb_xml_attr);
    memcpy(p, ln, nl + 1);
    e->name = p;
    p += nl + 1;
    if (nsl) {
        memcpy(p, name, nsl);
        p[nsl] = '\0';
        e->ns = p;
        p += nsl + 1;
    }
    for (i = 0; i < na; i++) {
        size_t l, al;
        const char *an = local_name(atts[2 * i], &l);
        al = strlen(an) + 1;
        memcpy(p, an, al);
        e->attrs[i].name = p;
        p += al;
        al = strlen(atts[2 * i + 1]) + 1;
        memcpy(p, atts[2 * i + 1], al);
        e->attrs[i].value = p;
        p += al;
    }
    e->nattrs = na;
    *p = '\0';
    e->text = p;   /* empty until character data arrives (tcap_ 0: not owned) */
    return e;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts) {
    lb_xml_parser *p = ud;
    lb_xml_elem *e, *parent = p->cur;
    if (p->depth >= LB_XML_MAX_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "nesting deeper than %d elements", LB_XML_MAX_DEPTH);
        abort_with(p, LB_EPARSE, what);
        return;
    }
    if (!(e = new_elem(name, atts))) { abort_with(p, LB_ENOMEM, NULL); return; }
    e->line = (int)XML_GetCurrentLineNumber(p->xp);
    e->col = (int)XML_GetCurrentColumnNumber(p->xp) + 1;
    if (!parent) {
        p->root = e;
    } else {
        if (parent->n == parent->kcap_) {
            size_t cap = parent->kcap_ ? parent->kcap_ * 2 : 4;
            lb_xml_elem **k = lb_realloc(parent->kids, cap * sizeof *k);
            if (!k) { lb_xml_free(e); abort_with(p, LB_ENOMEM, NULL); return; }
            parent->kids = k;
            parent->kcap_ = cap;
        }
        parent->kids[parent->n++] = e;
        e->parent_ = parent;
    }
    p->cur = e;
    p->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name) {
    lb_xml_parser *p = ud;
    (void)name;
    if (p->cur) p->cur = p->cur->parent_;
    p->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len) {
    lb_xml_parser *p = ud;
    lb_xml_elem *e = p->cur;
    size_t need;
    if (!e || len <= 0) return;   /* whitespace outside the root */
    need = e->text_len + (size_t)len + 1;
    if (need > e->tcap_) {
        size_t cap = e->tcap_ ? e->tcap_ : 32;
        char *t;
        while (cap < need) cap *= 2;
        t = e->tcap_ ? lb_realloc(e->text, cap) : lb_malloc(cap);
        if (!t) { abort_with(p, LB_ENOMEM, NULL); return; }
        e->text = t;
        e->tcap_ = cap;
    }
    memcpy(e->text + e->text_len, s, (size_t)len);
    e->text_len += (size_t)len;
    e->text[e->text_len] = '\0';
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *system_id, const XML_Char *public_id,
                                   const XML_Char *notation) {
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base;
    (void)system_id, (void)public_id, (void)notation;
    abort_with(ud, LB_EPARSE, "entity declarations are not allowed");
}

lb_xml_parser *lb_xml_parser_new(void) {
    lb_xml_parser *p = lb_calloc(1, sizeof *p);
    XML_Char sep[2] = {NS_SEP, '\0'};
    if (!p) return NULL;
    if (!(p->xp = XML_ParserCreate_MM(NULL, &MM, sep))) {
        lb_free(p);
        return NULL;
    }
    XML_SetUserData(p->xp, p);
    XML_SetElementHandler(p->xp, on_start, on_end);
    XML_SetCharacterDataHandler(p->xp, on_text);
    XML_SetEntityDeclHandler(p->xp, on_entity_decl);
    return p;
}

/* Run expat on one piece; translate its failure (once). */
static int run(lb_xml_parser *p, const char *data, size_t len, int final, char *err) {
    if (p->rc == LB_OK && !p->finished) {
        do {
            int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
            int last = final && (size_t)n == len;
            if (XML_Parse(p->xp, data, n, last) == XML_STATUS_ERROR) {
                enum XML_Error code = XML_GetErrorCode(p->xp);
                if (p->rc == LB_OK) {   /* not one of our aborts */
                    if (code == XML_ERROR_NO_MEMORY) {
                        p->rc = LB_ENOMEM;
                        snprintf(p->msg, sizeof p->msg, "xml: out of memory");
                    } else {
                        p->rc = LB_EPARSE;
                        snprintf(p->msg, sizeof p->msg, "xml: line %lu col %lu: %s",
                                 (unsigned long)XML_GetCurrentLineNumber(p->xp),
                                 (unsigned long)XML_GetCurrentColumnNumber(p->xp) + 1,
                                 XML_ErrorString(code));
                    }
                }
                break;
            }
            data += n;
            len -= (size_t)n;
        } while (len);
        if (final && p->rc == LB_OK) p->finished = 1;
    }
    if (p->rc != LB_OK) return lb_err_set(err, p->rc, "%s", p->msg);
    return LB_OK;
}

int lb_xml_parser_feed(lb_xml_parser *p, const char *data, size_t len, char *err) {
    if (p->finished) return lb_err_set(err, LB_EINVAL, "xml: feed after finish");
    return run(p, data, len, 0, err);
}

int lb_xml_parser_finish(lb_xml_parser *p, char *err) {
    if (p->finished) return LB_OK;
    return run(p, "", 0, 1, err);
}

lb_xml_elem *lb_xml_parser_take(lb_xml_parser *p) {
    lb_xml_elem *r;
    if (!p->finished || p->rc != LB_OK) return NULL;
    r = p->root;
    p->root = NULL;
    return r;
}

void lb_xml_parser_free(lb_xml_parser *p) {
    if (!p) return;
    if (p->xp) XML_ParserFree(p->xp);
    lb_xml_free(p->root);
    lb_free(p);
}

int lb_xml_parse(const char *data, size_t len, lb_xml_elem **out, char *err) {
    lb_xml_parser *p = lb_xml_parser_new();
    int rc;
    *out = NULL;
    if (!p) return lb_err_set(err, LB_ENOMEM, "xml: out of memory");
    if ((rc = run(p, data, len, 1, err)) == LB_OK) *out = lb_xml_parser_take(p);
    lb_xml_parser_free(p);
    return rc;
}

void lb_xml_free(lb_xml_elem *e) {
    size_t i;
    if (!e) return;
    for (i = 0; i < e->n; i++) lb_xml_free(e->kids[i]);   /* depth <= LB_XML_MAX_DEPTH */
    lb_free(e->kids);
    if (e->tcap_) lb_free(e->text);
    lb_free(e);
}

const lb_xml_elem *lb_xml_child(const lb_xml_elem *e, const char *name) {
    size_t i;
    if (!e) return NULL;
    for (i = 0; i < e->n; i++)
        if (strcmp(e->kids[i]->name, name) == 0) return e->kids[i];
    return NULL;
}

const char *lb_xml_child_text(const lb_xml_elem *e, const char *name) {
    const lb_xml_elem *c = lb_xml_child(e, name);
    return c ? c->text : NULL;
}

const char *lb_xml_attr_get(const lb_xml_elem *e, const char *name) {
    size_t i;
    if (!e) return NULL;
    for (i = 0; i < e->nattrs; i++)
        if (strcmp(e->attrs[i].name, name) == 0) return e->attrs[i].value;
    return NULL;
}
