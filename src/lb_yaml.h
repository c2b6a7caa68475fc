/* lb_yaml.h -- YAML loader (libyaml event API) into a C node tree.
 *
 * The dialect (spec/workflow.md item 3), resolved here so bindings only
 * translate.  For a plain (unquoted, untagged) scalar:
 *   null       ""  ~  null Null NULL
 *   bool       true True TRUE false False FALSE   (yes/no/on/off/y/n stay strings)
 *   int        [-+]?[0-9][0-9_]*  (decimal even with leading zeros), [-+]?0x[0-9a-fA-F_]+,
 *              [-+]?0o[0-7_]+, [-+]?0b[01_]+; '_' separators are dropped (YAML 1.1
 *              compatibility); a value outside int64 becomes a float
 *   float      [-+]?(digits[.digits]|.digits)([eE][-+]?digits)? with a '.' or an
 *              exponent; [-+]?.inf .Inf .INF, .nan .NaN .NAN
 *   date       YYYY-MM-DD                         -> LB_YAML_DATE, str = "YYYY-MM-DD"
 *   timestamp  YYYY-M-D(T|t|spaces)H:MM:SS[.frac][spaces][Z|+-H[H][:MM]]
 *              -> LB_YAML_TIMESTAMP, str = canonical ISO form
 *              "YYYY-MM-DDTHH:MM:SS[.frac][Z|+-HH:MM]" (an impossible date is an error)
 *   otherwise  string.
 * Quoted and block (| >) scalars are strings.  Explicit tags !!str !!int
 * !!float !!bool !!null !!timestamp force a type (error if the text does
 * not fit); !!binary and other tags (!Ref, !custom) keep the text as a
 * string and are reported in `tag`; the non-specific tag "!" forces string.
 *
 * Anchors/aliases: an alias shares the anchored node (the tree is a DAG; a
 * consumer that copies must expect the same node more than once).  What
 * aliases add to the expanded size (every alias counted as a full copy) is
 * capped in nodes (max_nodes: expanded nodes <= parsed nodes + max_nodes)
 * and in scalar bytes (max_bytes: expanded text <= parsed text +
 * max_bytes), as is the expanded nesting depth (max_depth), so a consumer
 * that copies does work and allocation bounded by the input size plus
 * those caps.  The input itself is capped too: max_input bytes, and at
 * most max_written nodes as written.
 * Merge keys `<<` (plain, untagged or !!merge) take a mapping or a sequence
 * of mappings: explicit keys win over merged ones and earlier merged
 * mappings win over later ones (YAML 1.1).  Merged pairs are placed where
 * the `<<` key stood, first source first.
 * Duplicate keys (same resolved type and value) are an error; so are
 * non-scalar keys.  Only one document per stream; an empty stream gives a
 * null root.
 *
 * Errors are "NAME:LINE:COL: message" (1-based) in the caller's err buffer
 * (LB_ERR_LEN bytes). */
#ifndef LB_YAML_H
#define LB_YAML_H

#include <stddef.h>

enum {
    LB_YAML_NULL,
    LB_YAML_BOOL,
    LB_YAML_INT,
    LB_YAML_FLOAT,
    LB_YAML_STR,
    LB_YAML_DATE,        /* str holds "YYYY-MM-DD" */
    LB_YAML_TIMESTAMP,   /* str holds the canonical ISO timestamp */
    LB_YAML_SEQ,
    LB_YAML_MAP
};

enum {                   /* scalar style as written */
    LB_YAML_PLAIN,
    LB_YAML_SINGLE,      /* 'x' */
    LB_YAML_DOUBLE,      /* "x" */
    LB_YAML_LITERAL,     /* | */
    LB_YAML_FOLDED       /* > */
};

#define LB_YAML_MAX_NODES 1000000   /* default cap on nodes added by alias expansion */
#define LB_YAML_MAX_DEPTH 512       /* default cap on the expanded depth */
#define LB_YAML_MAX_BYTES (64u << 20)  /* default cap on scalar bytes added by aliases */
#define LB_YAML_MAX_INPUT (16u << 20)  /* default cap on the input (a file's size) */

typedef struct lb_yaml_node lb_yaml_node;
struct lb_yaml_node {
    int type;                /* LB_YAML_* */
    int style;               /* LB_YAML_PLAIN.. (containers: PLAIN) */
    int line, col;           /* 1-based start of the node (an alias's target: its own) */
    const char *tag;         /* full tag ("tag:yaml.org,2002:int", "!Ref") or NULL */
    const char *str;         /* scalars: text (NUL-terminated, may hold NULs: use len) */
    size_t len;
    union {
        int b;               /* LB_YAML_BOOL */
        long long i;         /* LB_YAML_INT */
        double f;            /* LB_YAML_FLOAT */
    } v;
    size_t n;                /* SEQ: items; MAP: pairs */
    lb_yaml_node **kids;     /* SEQ: kids[0..n-1]; MAP: key kids[2i], value kids[2i+1] */
    /* private to lb_yaml.c */
    size_t weight_;          /* expanded node count of this subtree */
    size_t bytes_;           /* expanded scalar bytes of this subtree */
    int height_;             /* expanded depth of this subtree */
    int open_;               /* container still being built */
    lb_yaml_node *next_;     /* allocation list of the document */
};

typedef struct lb_yaml_doc lb_yaml_doc;   /* owns every node */

typedef struct lb_yaml_limits {
    size_t max_nodes;        /* extra nodes aliases may add; 0: LB_YAML_MAX_NODES */
    int max_depth;           /* 0: LB_YAML_MAX_DEPTH */
    size_t max_bytes;        /* extra scalar bytes aliases may add; 0: LB_YAML_MAX_BYTES */
    size_t max_input;        /* input bytes; 0: LB_YAML_MAX_INPUT */
    size_t max_written;      /* nodes as written; 0: LB_YAML_MAX_NODES */
} lb_yaml_limits;

/* Parse len bytes of YAML.  `name` (file or chunk name, NULL = "yaml")
 * prefixes error messages; `lim` may be NULL.  On LB_OK *out receives a
 * document the caller frees with lb_yaml_free.  Returns LB_EPARSE (syntax,
 * unknown/recursive alias, bad merge, duplicate or non-scalar key, bad tag
 * value, second document, a limit exceeded) or LB_ENOMEM; *out is then
 * NULL, err is filled and nothing is leaked.  `data` is not kept. */
int lb_yaml_load(const char *data, size_t len, const char *name,
                 const lb_yaml_limits *lim, lb_yaml_doc **out, char *err);

/* Read the file at `path` and lb_yaml_load it with name = path.  An
 * unreadable file is LB_EIO ("open 'path': <strerror>"); anything but a
 * regular file (a device, FIFO, socket, directory: opened without blocking,
 * never read) and a file over max_input bytes are LB_EINVAL
 * ("path: not a regular file ...", "path: N bytes exceeds ..."). */
int lb_yaml_load_file(const char *path, const lb_yaml_limits *lim,
                      lb_yaml_doc **out, char *err);

/* The root node (never NULL; a null node for an empty stream).  Owned by
 * doc, valid until lb_yaml_free. */
const lb_yaml_node *lb_yaml_root(const lb_yaml_doc *doc);

/* Value of the first pair of `map` whose key is a string (LB_YAML_STR,
 * DATE or TIMESTAMP) equal to key; NULL if map is not a mapping or the key
 * is absent.  Owned by the document. */
const lb_yaml_node *lb_yaml_get(const lb_yaml_node *map, const char *key);

/* Free the document and all its nodes.  NULL is a no-op. */
void lb_yaml_free(lb_yaml_doc *doc);

/* Short name of a node type ("null", "bool", "int", "float", "str",
 * "date", "timestamp", "seq", "map"). */
const char *lb_yaml_type_name(int type);

#endif
