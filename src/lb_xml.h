/* lb_xml.h -- XML (libexpat) into a small element tree.
 *
 * Meant for AWS responses (S3 listings and error bodies, STS): elements
 * with their local name (namespace prefix stripped; the namespace URI is
 * kept apart), attributes, the element's own character data concatenated
 * raw (not trimmed; entities and CDATA decoded), and children in order.
 * Comments and processing instructions are dropped.
 *
 * Safety: entity declarations in a DTD are refused (no billion laughs, no
 * external entities), nesting is capped (LB_XML_MAX_DEPTH).  All memory,
 * expat's included, goes through lb_alloc.
 *
 * Streaming: lb_xml_parser_new / _feed (any chunk sizes) / _finish /
 * _take / _free, so a response body can be parsed as it arrives.
 * Errors are "xml: line L col C: <message>" (1-based). */
#ifndef LB_XML_H
#define LB_XML_H

#include <stddef.h>

#define LB_XML_MAX_DEPTH 256

typedef struct lb_xml_attr {
    const char *name;        /* local name */
    const char *value;
} lb_xml_attr;

typedef struct lb_xml_elem lb_xml_elem;
struct lb_xml_elem {
    const char *name;        /* local name: "ListBucketResult" */
    const char *ns;          /* namespace URI or NULL */
    size_t nattrs;
    lb_xml_attr *attrs;      /* in document order */
    char *text;              /* direct character data, never NULL ("" if none) */
    size_t text_len;
    size_t n;                /* children */
    lb_xml_elem **kids;
    int line, col;           /* 1-based start of the start tag */
    /* private to lb_xml.c */
    lb_xml_elem *parent_;
    size_t kcap_, tcap_;
};

typedef struct lb_xml_parser lb_xml_parser;

/* A new streaming parser, or NULL when out of memory.  Free with
 * lb_xml_parser_free. */
lb_xml_parser *lb_xml_parser_new(void);

/* Feed the next len bytes (any split, even inside a tag).  Returns LB_OK,
 * LB_EPARSE (malformed XML, entity declaration, depth over the cap) or
 * LB_ENOMEM; after a failure every later call returns the same failure. */
int lb_xml_parser_feed(lb_xml_parser *p, const char *data, size_t len, char *err);

/* End of input: LB_OK when the document is complete, else as _feed (an
 * empty or truncated document is LB_EPARSE). */
int lb_xml_parser_finish(lb_xml_parser *p, char *err);

/* After a successful _finish: hand the root element over to the caller
 * (free with lb_xml_free).  NULL before that, or if already taken. */
lb_xml_elem *lb_xml_parser_take(lb_xml_parser *p);

/* Free the parser and any tree it still owns.  NULL is a no-op. */
void lb_xml_parser_free(lb_xml_parser *p);

/* One-shot parse of a whole document; *out receives the root (caller
 * frees with lb_xml_free) or NULL on failure.  LB_EPARSE / LB_ENOMEM. */
int lb_xml_parse(const char *data, size_t len, lb_xml_elem **out, char *err);

/* Free an element and its subtree (it must be a root or detached).  NULL
 * is a no-op. */
void lb_xml_free(lb_xml_elem *e);

/* First child of e with this local name, or NULL.  Borrowed. */
const lb_xml_elem *lb_xml_child(const lb_xml_elem *e, const char *name);

/* Text of the first child named `name`, or NULL if there is none.  Borrowed. */
const char *lb_xml_child_text(const lb_xml_elem *e, const char *name);

/* Value of attribute `name` of e, or NULL.  Borrowed. */
const char *lb_xml_attr_get(const lb_xml_elem *e, const char *name);

#endif
