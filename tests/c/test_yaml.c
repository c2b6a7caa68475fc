/* test_yaml.c -- the YAML loader core, driven from C alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_err.h"
#include "lb_test.h"
#include "lb_yaml.h"

/* Compact dump: ~ T F i42 f1.5 "s" d"2024-01-02" t"..." [a,b] {k:v} */
static void dump(lb_buf *b, const lb_yaml_node *n) {
    size_t i;
    switch (n->type) {
    case LB_YAML_NULL: lb_buf_puts(b, "~"); break;
    case LB_YAML_BOOL: lb_buf_puts(b, n->v.b ? "T" : "F"); break;
    case LB_YAML_INT: lb_buf_printf(b, "i%lld", n->v.i); break;
    case LB_YAML_FLOAT: lb_buf_printf(b, "f%g", n->v.f); break;
    case LB_YAML_STR: lb_buf_printf(b, "\"%s\"", n->str); break;
    case LB_YAML_DATE: lb_buf_printf(b, "d\"%s\"", n->str); break;
    case LB_YAML_TIMESTAMP: lb_buf_printf(b, "t\"%s\"", n->str); break;
    case LB_YAML_SEQ:
        lb_buf_putc(b, '[');
        for (i = 0; i < n->n; i++) {
            if (i) lb_buf_putc(b, ',');
            dump(b, n->kids[i]);
        }
        lb_buf_putc(b, ']');
        break;
    case LB_YAML_MAP:
        lb_buf_putc(b, '{');
        for (i = 0; i < n->n; i++) {
            if (i) lb_buf_putc(b, ',');
            dump(b, n->kids[2 * i]);
            lb_buf_putc(b, ':');
            dump(b, n->kids[2 * i + 1]);
        }
        lb_buf_putc(b, '}');
        break;
    }
}

static char out[4096];
static char err[LB_ERR_LEN];

/* Load src and return its dump, or "ERR <code>: <msg>". */
static const char *load(const char *src) {
    lb_yaml_doc *doc = NULL;
    lb_buf b = {0};
    int rc = lb_yaml_load(src, strlen(src), "t.yml", NULL, &doc, err);
    if (rc != LB_OK) {
        snprintf(out, sizeof out, "ERR %s: %s", lb_err_name(rc), err);
        return out;
    }
    dump(&b, lb_yaml_root(doc));
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    lb_buf_free(&b);
    lb_yaml_free(doc);
    return out;
}

/* Load "v: <text>" and return the dump of the value. */
static const char *scalar(const char *text) {
    char src[256];
    const char *r;
    snprintf(src, sizeof src, "v: %s\n", text);
    r = load(src);
    if (strncmp(r, "{\"v\":", 5) == 0) {
        memmove(out, out + 5, strlen(out + 5) + 1);
        out[strlen(out) - 1] = '\0';
    }
    return out;
}

static void test_scalars(void) {
    static const struct { const char *in, *want; } cases[] = {
        {"true", "T"}, {"True", "T"}, {"TRUE", "T"}, {"false", "F"}, {"False", "F"}, {"FALSE", "F"},
        {"yes", "\"yes\""}, {"no", "\"no\""}, {"on", "\"on\""}, {"off", "\"off\""}, {"Off", "\"Off\""},
        {"y", "\"y\""}, {"n", "\"n\""}, {"tRUE", "\"tRUE\""},
        {"null", "~"}, {"Null", "~"}, {"NULL", "~"}, {"~", "~"}, {"", "~"}, {"nULL", "\"nULL\""},
        {"0", "i0"}, {"42", "i42"}, {"-17", "i-17"}, {"+5", "i5"}, {"007", "i7"}, {"1_000", "i1000"},
        {"0x1F", "i31"}, {"0xff", "i255"}, {"-0x10", "i-16"}, {"0o17", "i15"}, {"0b101", "i5"},
        {"0o8", "\"0o8\""}, {"0x", "\"0x\""}, {"0xg", "\"0xg\""},
        {"9223372036854775807", "i9223372036854775807"},
        {"-9223372036854775808", "i-9223372036854775808"},
        {"9223372036854775808", "f9.22337e+18"},
        {"1.5", "f1.5"}, {"-0.25", "f-0.25"}, {".5", "f0.5"}, {"1.", "f1"}, {"1e3", "f1000"},
        {"1.5E-2", "f0.015"}, {"+2.5e+1", "f25"}, {"1_000.5", "f1000.5"},
        {".inf", "finf"}, {"-.inf", "f-inf"}, {"+.INF", "finf"}, {".Inf", "finf"},
        {"1e", "\"1e\""}, {"1.2.3", "\"1.2.3\""}, {"e3", "\"e3\""}, {".", "\".\""}, {"+", "\"+\""},
        {"1:30", "\"1:30\""}, {"12abc", "\"12abc\""}, {"0.1.2", "\"0.1.2\""},
        {"2024-01-02", "d\"2024-01-02\""}, {"2024-02-29", "d\"2024-02-29\""},
        {"2024-1-2", "\"2024-1-2\""}, {"20240102", "i20240102"},
        {"2024-01-02T03:04:05Z", "t\"2024-01-02T03:04:05Z\""},
        {"2024-01-02t03:04:05", "t\"2024-01-02T03:04:05\""},
        {"2024-01-02 03:04:05", "t\"2024-01-02T03:04:05\""},
        {"2024-1-2 3:04:05.25 +7", "t\"2024-01-02T03:04:05.25+07:00\""},
        {"2024-01-02T03:04:05-05:30", "t\"2024-01-02T03:04:05-05:30\""},
        {"2024-01-02T03:04:05.123456+00:00", "t\"2024-01-02T03:04:05.123456+00:00\""},
        {"2024-01-02T03:04", "\"2024-01-02T03:04\""},
        {"hello world", "\"hello world\""}, {"${{ params.x }}", "\"${{ params.x }}\""},
        {"s3://b/k", "\"s3://b/k\""},
        {"'true'", "\"true\""}, {"\"42\"", "\"42\""}, {"'null'", "\"null\""}, {"''", "\"\""},
        {"\"2024-01-02\"", "\"2024-01-02\""}, {"'1.5'", "\"1.5\""},
        {"!!str 42", "\"42\""}, {"!!str true", "\"true\""}, {"!!int \"42\"", "i42"},
        {"!!int 0x10", "i16"}, {"!!float 1", "f1"}, {"!!float '2.5'", "f2.5"},
        {"!!bool \"true\"", "T"}, {"!!null ''", "~"}, {"!!timestamp 2024-01-02", "d\"2024-01-02\""},
        {"! 42", "\"42\""}, {"!Ref Bucket", "\"Bucket\""}, {"!custom 42", "\"42\""},
        {"!!binary aGk=", "\"aGk=\""},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = scalar(cases[i].in);
        if (strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "scalar case %zu: input [%s]\n", i, cases[i].in);
        CHECK_STR(cases[i].want, got);
    }
    /* .nan: NaN does not print portably; check the type and value */
    {
        lb_yaml_doc *doc;
        CHECK(lb_yaml_load(".nan", 4, "t", NULL, &doc, err) == LB_OK);
        CHECK(lb_yaml_root(doc)->type == LB_YAML_FLOAT && isnan(lb_yaml_root(doc)->v.f));
        lb_yaml_free(doc);
    }
}

static void test_tags_and_styles(void) {
    lb_yaml_doc *doc;
    const lb_yaml_node *r, *v;
    const char *src = "a: plain\nb: 'single'\nc: \"double\"\nd: |\n  lit\n  eral\ne: >\n  fol\n  ded\n"
                      "f: !Ref Bucket\ng: !!int 7\nh: !!binary aGk=\n";
    CHECK(lb_yaml_load(src, strlen(src), "t", NULL, &doc, err) == LB_OK);
    r = lb_yaml_root(doc);
    CHECK((v = lb_yaml_get(r, "a")) && v->style == LB_YAML_PLAIN && !v->tag);
    CHECK((v = lb_yaml_get(r, "b")) && v->style == LB_YAML_SINGLE);
    CHECK((v = lb_yaml_get(r, "c")) && v->style == LB_YAML_DOUBLE);
    CHECK((v = lb_yaml_get(r, "d")) && v->style == LB_YAML_LITERAL);
    CHECK_STR("lit\neral\n", v ? v->str : NULL);
    CHECK((v = lb_yaml_get(r, "e")) && v->style == LB_YAML_FOLDED);
    CHECK_STR("fol ded\n", v ? v->str : NULL);
    CHECK((v = lb_yaml_get(r, "f")) && v->type == LB_YAML_STR);
    CHECK_STR("!Ref", v ? v->tag : NULL);
    CHECK((v = lb_yaml_get(r, "g")) && v->type == LB_YAML_INT && v->v.i == 7);
    CHECK_STR("tag:yaml.org,2002:int", v ? v->tag : NULL);
    CHECK((v = lb_yaml_get(r, "h")) && v->type == LB_YAML_STR);
    CHECK_STR("tag:yaml.org,2002:binary", v ? v->tag : NULL);
    CHECK(lb_yaml_get(r, "zz") == NULL);
    lb_yaml_free(doc);
    /* bad tag values, with position */
    CHECK_STR("ERR EPARSE: t.yml:2:4: 'abc' is not a valid !!int", load("a: 1\nb: !!int abc\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: 'yes' is not a valid !!bool", load("a: !!bool yes\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: '1.5x' is not a valid !!float", load("a: !!float 1.5x\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: tag !!map on a scalar", load("a: !!map x\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: tag !!seq on a mapping", load("a: !!seq {b: 1}\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: tag !!int on a sequence", load("a: !!int [1]\n"));
    CHECK_STR("{\"a\":[i1]}", load("a: !!seq [1]\n"));
    CHECK_STR("{\"a\":{\"b\":i1}}", load("a: !!map {b: 1}\n"));
}

static void test_structure(void) {
    CHECK_STR("~", load(""));
    CHECK_STR("~", load("# only a comment\n"));
    CHECK_STR("~", load("---\n...\n"));
    CHECK_STR("\"scalar\"", load("scalar"));
    CHECK_STR("[i1,\"a\",~,[T]]", load("- 1\n- a\n- \n- [true]\n"));
    CHECK_STR("{\"b\":i1,\"a\":i2,\"c\":{\"x\":[]}}", load("b: 1\na: 2\nc: {x: []}\n"));
    CHECK_STR("{i1:\"one\",T:\"yes\",\"on\":\"x\",d\"2024-01-01\":i3,f1.5:~}",
              load("1: one\ntrue: yes\non: x\n2024-01-01: 3\n1.5: null\n"));
    CHECK_STR("{\"on\":{\"push\":~}}", load("on:\n  push:\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:1: a second document is not supported (one document per file)",
              load("a: 1\n---\nb: 2\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:1: a second document is not supported (one document per file)",
              load("--- 1\n--- 2\n"));
}

static void test_positions(void) {
    lb_yaml_doc *doc;
    const lb_yaml_node *r, *jobs, *a, *st;
    const char *src = "name: x\njobs:\n  a:\n    stages:\n      - echo: hi\n      -   bash: |\n"
                      "            ls\n";
    CHECK(lb_yaml_load(src, strlen(src), "t", NULL, &doc, err) == LB_OK);
    if (!doc) return;
    r = lb_yaml_root(doc);
    CHECK(r->line == 1 && r->col == 1);
    CHECK(r->kids[0]->line == 1 && r->kids[0]->col == 1);   /* key "name" */
    CHECK(r->kids[1]->line == 1 && r->kids[1]->col == 7);   /* value "x" */
    jobs = lb_yaml_get(r, "jobs");
    CHECK(jobs && jobs->line == 3 && jobs->col == 3);
    CHECK(jobs->kids[0]->line == 3 && jobs->kids[0]->col == 3);
    a = lb_yaml_get(jobs, "a");
    st = lb_yaml_get(a, "stages");
    CHECK(st && st->type == LB_YAML_SEQ && st->n == 2 && st->line == 5 && st->col == 7);
    CHECK(st->kids[0]->line == 5 && st->kids[0]->col == 9);
    CHECK(st->kids[1]->line == 6 && st->kids[1]->col == 11);
    CHECK(st->kids[1]->kids[1]->line == 6 && st->kids[1]->kids[1]->col == 17);
    CHECK_STR("ls\n", st->kids[1]->kids[1]->str);
    lb_yaml_free(doc);
}

static void test_anchors_and_merge(void) {
    lb_yaml_doc *doc;
    const lb_yaml_node *r;
    const char *src = "a: &x {k: 1}\nb: *x\n";
    CHECK(lb_yaml_load(src, strlen(src), "t", NULL, &doc, err) == LB_OK);
    r = lb_yaml_root(doc);
    CHECK(lb_yaml_get(r, "a") == lb_yaml_get(r, "b"));   /* the alias shares the node */
    lb_yaml_free(doc);
    CHECK_STR("{\"a\":\"v\",\"b\":\"v\",\"c\":[\"v\",i2]}", load("a: &s v\nb: *s\nc: [*s, 2]\n"));
    CHECK_STR("{\"a\":i1,\"b\":i2}", load("a: &n 1\nb: &n 2\n"));   /* redefinition */
    CHECK_STR("{\"a\":i1,\"b\":i1,\"c\":i2}", load("a: &n 1\nb: *n\nc: &n 2\n"));
    /* merge: explicit keys win, wherever they are written */
    CHECK_STR("{\"d\":{\"x\":i1,\"y\":i2},\"e\":{\"y\":i9,\"x\":i1,\"z\":i3}}",
              load("d: &d {x: 1, y: 2}\ne:\n  y: 9\n  <<: *d\n  z: 3\n"));
    CHECK_STR("{\"d\":{\"x\":i1,\"y\":i2},\"e\":{\"x\":i1,\"y\":i9}}",
              load("d: &d {x: 1, y: 2}\ne:\n  <<: *d\n  y: 9\n"));
    /* list of merges: earlier wins over later */
    CHECK_STR("{\"p\":{\"a\":i1,\"b\":i1},\"q\":{\"b\":i2,\"c\":i2},\"r\":{\"a\":i1,\"b\":i1,\"c\":i2,\"own\":T}}",
              load("p: &p {a: 1, b: 1}\nq: &q {b: 2, c: 2}\nr:\n  <<: [*p, *q]\n  own: true\n"));
    CHECK_STR("{\"p\":{\"a\":i1,\"b\":i1},\"q\":{\"b\":i2,\"c\":i2},\"r\":{\"b\":i2,\"c\":i2,\"a\":i1}}",
              load("p: &p {a: 1, b: 1}\nq: &q {b: 2, c: 2}\nr:\n  <<: [*q, *p]\n"));
    /* nested merge: a merged mapping that itself merged */
    CHECK_STR("{\"a\":{\"x\":i1},\"b\":{\"x\":i1,\"y\":i2},\"c\":{\"x\":i1,\"y\":i2,\"z\":i3}}",
              load("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n"));
    /* inline mapping as merge source; quoted << is an ordinary key */
    CHECK_STR("{\"m\":{\"k\":i1,\"j\":i2}}", load("m:\n  <<: {k: 1}\n  j: 2\n"));
    CHECK_STR("{\"m\":{\"<<\":i1}}", load("m: {\"<<\": 1}\n"));
    /* errors */
    CHECK_STR("ERR EPARSE: t.yml:2:4: unknown alias '*nope'", load("a: 1\nb: *nope\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:11: recursive alias '*r' (refers to a node that contains it)",
              load("a: &r [1, *r]\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:7: merge key '<<' expects a mapping or a sequence of mappings, got int",
              load("m:\n  <<: 5\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:12: merge key '<<' expects a mapping or a sequence of mappings, got str",
              load("m:\n  <<: [{}, x]\n"));
}

static void test_errors(void) {
    CHECK_STR("ERR EPARSE: t.yml:3:1: duplicate key 'a' (first at 1:1)", load("a: 1\nb: 2\na: 3\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:2: duplicate key '0x1' (first at 1:2)", load("{1: a,\n 0x1: b}\n"));
    CHECK_STR("{i1:\"a\",\"1\":\"b\"}", load("{1: a, '1': b}\n"));   /* int and str differ */
    CHECK_STR("ERR EPARSE: t.yml:2:5: duplicate key 'k' (first at 1:4)",
              load("- {k: 1,\n    k: 2}\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:3: mapping key must be a scalar, not a sequence", load("? [a]\n: 1\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:2: mapping key must be a scalar, not a mapping", load("{{a: 1}: 2}\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:3: mapping values are not allowed in this context",
              load("a: b\n c: d\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:1: did not find expected key (while parsing a block mapping at 1:1)",
              load("a: 1\n- c\n"));
    CHECK_STR("ERR EPARSE: t.yml:2:1: found a tab character that violates indentation"
              " (while scanning a plain scalar at 1:4)", load("a: 1\n\tb: 2\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: invalid date or time '2024-02-30'", load("a: 2024-02-30\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: invalid date or time '2023-02-29'", load("a: 2023-02-29\n"));
    CHECK_STR("ERR EPARSE: t.yml:1:4: invalid date or time '2024-01-02T25:00:00'",
              load("a: 2024-01-02T25:00:00\n"));
    CHECK_STR("\"2024-02-30\"", load("'2024-02-30'"));
    CHECK(strstr(load("a: \"\xff\"\n"), "ERR EPARSE: t.yml:1:5: invalid ") == out);
    CHECK(strstr(load("a: [1, 2\n"), "ERR EPARSE: t.yml:2:1: did not find expected ',' or ']'") == out);
}

static void test_limits(void) {
    /* billion laughs: nine levels of ten aliases each */
    lb_buf b = {0};
    int i, j;
    lb_yaml_doc *doc = NULL;
    lb_yaml_limits lim = {1000, 8, 0, 0, 0};
    lb_buf_puts(&b, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (i = 1; i < 10; i++) {
        lb_buf_printf(&b, "l%d: &l%d [", i, i);
        for (j = 0; j < 10; j++) lb_buf_printf(&b, "%s*l%d", j ? ", " : "", i - 1);
        lb_buf_puts(&b, "]\n");
    }
    CHECK(lb_yaml_load(b.data, b.len, "bomb.yml", NULL, &doc, err) == LB_EPARSE);
    CHECK(doc == NULL);
    CHECK(strstr(err, "bomb.yml:6:") == err);
    CHECK(strstr(err, "aliases expand to more than 1000000 extra nodes") != NULL);
    lb_buf_free(&b);
    /* the same through merge keys */
    lb_buf_puts(&b, "m0: &m0 {a: 1}\n");
    for (i = 1; i < 3000; i++) lb_buf_printf(&b, "m%d: &m%d {<<: *m%d, k%d: 1}\n", i, i, i - 1, i);
    CHECK(lb_yaml_load(b.data, b.len, "merge.yml", NULL, &doc, err) == LB_EPARSE);
    CHECK(strstr(err, "aliases expand to more than") != NULL);
    lb_buf_free(&b);
    /* small explicit limits */
    /* each alias of a adds 5 nodes: 15 extra pass a budget of 10 (found when the root closes) */
    CHECK(lb_yaml_load("a: &a [1, 2, 3, 4]\nb: [*a, *a, *a]\n", 34, "t", &(lb_yaml_limits){10, 0, 0, 0, 0}, &doc, err)
          == LB_EPARSE);
    CHECK_STR("t:3:1: aliases expand to more than 10 extra nodes", err);
    CHECK(lb_yaml_load("a: &a [1, 2, 3, 4]\nb: [*a, *a, *a]\n", 34, "t", &(lb_yaml_limits){15, 0, 0, 0, 0}, &doc, err)
          == LB_OK);
    lb_yaml_free(doc);
    {   /* a big document without aliases is not capped */
        lb_buf big = {0};
        lb_buf_puts(&big, "[");
        for (i = 0; i < 3000; i++) lb_buf_puts(&big, "1, ");
        lb_buf_puts(&big, "1]");
        CHECK(lb_yaml_load(big.data, big.len, "t", &(lb_yaml_limits){10, 0, 0, 0, 0}, &doc, err) == LB_OK);
        lb_yaml_free(doc);
        lb_buf_free(&big);
    }
    CHECK(lb_yaml_load("[[[[1]]]]", 9, "t", &lim, &doc, err) == LB_OK);
    lb_yaml_free(doc);
    lim.max_depth = 3;
    CHECK(lb_yaml_load("[[[[1]]]]", 9, "t", &lim, &doc, err) == LB_EPARSE);
    CHECK_STR("t:1:4: nesting deeper than 3 levels", err);
    lim.max_depth = 4;   /* 3 containers deep, then an alias adds height */
    CHECK(lb_yaml_load("a: &a [[1]]\nb: [[*a]]\n", 22, "t", &lim, &doc, err) == LB_EPARSE);
    CHECK(strstr(err, "nesting deeper than 4 levels after alias expansion") != NULL);
    /* very deep input is refused before anything recursive sees it */
    lb_buf_free(&b);
    for (i = 0; i < 100000; i++) lb_buf_putc(&b, '[');
    CHECK(lb_yaml_load(b.data, b.len, "deep", NULL, &doc, err) == LB_EPARSE);
    CHECK_STR("deep:1:513: nesting deeper than 512 levels", err);
    lb_buf_free(&b);
    /* a large flat mapping is fine and its duplicate is found */
    lb_buf_puts(&b, "{");
    for (i = 0; i < 50000; i++) lb_buf_printf(&b, "k%d: %d, ", i, i);
    lb_buf_puts(&b, "k123: 0}");
    CHECK(lb_yaml_load(b.data, b.len, "big", NULL, &doc, err) == LB_EPARSE);
    CHECK(strstr(err, "duplicate key 'k123' (first at 1:") != NULL);
    lb_buf_free(&b);
}

/* What the input may hold: bytes, nodes as written, text added by aliases;
 * a file must be a regular file. */
static void test_input_limits(void) {
    lb_buf b = {0};
    lb_yaml_doc *doc = NULL;
    int i, j, fd;
    char path[] = "/tmp/lb_test_yaml_XXXXXX";
    FILE *f;
    /* a 1 KiB string aliased ten times per level: few nodes, many bytes */
    lb_buf_puts(&b, "a0: &a0 \"");
    for (i = 0; i < 1024; i++) lb_buf_putc(&b, 'x');
    lb_buf_puts(&b, "\"\n");
    for (i = 1; i < 7; i++) {
        lb_buf_printf(&b, "a%d: &a%d [", i, i);
        for (j = 0; j < 10; j++) lb_buf_printf(&b, "%s*a%d", j ? ", " : "", i - 1);
        lb_buf_puts(&b, "]\n");
    }
    CHECK(lb_yaml_load(b.data, b.len, "laughs.yml", NULL, &doc, err) == LB_EPARSE && !doc);
    CHECK(strstr(err, "laughs.yml:6:") == err);
    CHECK(strstr(err, "text added by aliases exceeds the limit of 67108864 bytes") != NULL);
    CHECK(lb_yaml_load(b.data, b.len, "t", &(lb_yaml_limits){0, 0, 2000, 0, 0}, &doc, err) == LB_EPARSE);
    CHECK_STR("t:2:20: text added by aliases exceeds the limit of 2000 bytes", err);
    lb_buf_free(&b);
    /* nodes as written */
    CHECK(lb_yaml_load("[1, 2, 3]", 9, "t", &(lb_yaml_limits){0, 0, 0, 0, 4}, &doc, err) == LB_OK);
    lb_yaml_free(doc);
    CHECK(lb_yaml_load("[1, 2, 3, 4]", 12, "t", &(lb_yaml_limits){0, 0, 0, 0, 4}, &doc, err) == LB_EPARSE);
    CHECK_STR("t:1:11: node count exceeds the limit of 4 nodes", err);
    /* input bytes, in memory and in a file */
    CHECK(lb_yaml_load("[1, 2, 3]", 9, "t", &(lb_yaml_limits){0, 0, 0, 8, 0}, &doc, err) == LB_EINVAL);
    CHECK_STR("t: 9 bytes exceeds the limit of 8 bytes for YAML", err);
    CHECK((fd = mkstemp(path)) >= 0 && (f = fdopen(fd, "w")) != NULL);
    fputs("[1, 2, 3]", f);
    fclose(f);
    CHECK(lb_yaml_load_file(path, &(lb_yaml_limits){0, 0, 0, 8, 0}, &doc, err) == LB_EINVAL && !doc);
    CHECK(strstr(err, ": 9 bytes exceeds the limit of 8 bytes for YAML") != NULL);
    CHECK(lb_yaml_load_file(path, &(lb_yaml_limits){0, 0, 0, 9, 0}, &doc, err) == LB_OK);
    lb_yaml_free(doc);
    unlink(path);
    /* a device is refused before a byte is read (and a FIFO without blocking) */
    CHECK(lb_yaml_load_file("/dev/zero", NULL, &doc, err) == LB_EINVAL && !doc);
    CHECK_STR("/dev/zero: not a regular file (a device cannot be read as YAML)", err);
    strcpy(path, "/tmp/lb_test_yaml_XXXXXX");
    CHECK((fd = mkstemp(path)) >= 0 && close(fd) == 0 && unlink(path) == 0 && mkfifo(path, 0600) == 0);
    CHECK(lb_yaml_load_file(path, NULL, &doc, err) == LB_EINVAL && !doc);
    CHECK(strstr(err, ": not a regular file (a FIFO cannot be read as YAML)") != NULL);
    unlink(path);
}

static void test_files(void) {
    lb_yaml_doc *doc = NULL;
    const lb_yaml_node *wf, *jobs, *ex, *tr, *p;
    CHECK(lb_yaml_load_file("tests/fixtures/yaml/no-such.yml", NULL, &doc, err) == LB_EIO);
    CHECK(doc == NULL);
    CHECK_STR("open 'tests/fixtures/yaml/no-such.yml': No such file or directory", err);
    CHECK(lb_yaml_load_file("tests/fixtures/yaml", NULL, &doc, err) == LB_EINVAL);   /* a directory */
    CHECK_STR("tests/fixtures/yaml: not a regular file (a directory cannot be read as YAML)", err);
    CHECK(lb_yaml_load_file("tests/fixtures/yaml/workflow.yml", NULL, &doc, err) == LB_OK);
    if (!doc) { fprintf(stderr, "%s\n", err); return; }
    wf = lb_yaml_get(lb_yaml_root(doc), "wf-etl");
    CHECK(wf && wf->type == LB_YAML_MAP);
    jobs = lb_yaml_get(wf, "jobs");
    ex = lb_yaml_get(jobs, "extract");
    CHECK(ex && lb_yaml_get(lb_yaml_get(ex, "runs-on"), "type") != NULL);
    CHECK_STR("local", lb_yaml_get(lb_yaml_get(ex, "runs-on"), "type")->str);
    p = lb_yaml_get(lb_yaml_get(ex, "strategy"), "max-parallel");
    CHECK(p && p->type == LB_YAML_INT && p->v.i == 2);
    CHECK(lb_yaml_get(lb_yaml_get(ex, "strategy"), "matrix") != NULL);
    tr = lb_yaml_get(jobs, "transform");
    CHECK(tr && lb_yaml_get(tr, "strategy") == lb_yaml_get(lb_yaml_get(lb_yaml_root(doc), "x-defaults"), "strategy"));
    CHECK(tr->kids[0]->type == LB_YAML_STR && strcmp(tr->kids[0]->str, "runs-on") == 0);   /* merged first */
    p = lb_yaml_get(lb_yaml_get(lb_yaml_get(wf, "params"), "limit"), "default");
    CHECK(p && p->type == LB_YAML_INT && p->v.i == 1000);
    p = lb_yaml_get(lb_yaml_get(lb_yaml_get(wf, "params"), "asat"), "default");
    CHECK(p && p->type == LB_YAML_TIMESTAMP);
    CHECK_STR("2024-01-02T03:04:05+07:00", p->str);
    p = lb_yaml_get(lb_yaml_get(wf, "params"), "enabled");
    CHECK(p && p->type == LB_YAML_STR);
    p = lb_yaml_get(wf, "on");
    CHECK(p && p->type == LB_YAML_MAP && p->line == 14 && p->col == 5);
    lb_yaml_free(doc);
}

/* Every allocation k fails in turn: LB_ENOMEM each time, nothing leaks. */
static void test_alloc_failures(void) {
    static const char *const srcs[] = {
        "a: &d {x: 1, y: [1, 2.5, true, ~, 2024-01-02T03:04:05Z]}\nb: {<<: *d, z: 3}\nc: [*d, *d]\n",
        "m:\n  <<: [{a: 1}, {b: 2}]\n  c: 3\nd: 2024-01-02 03:04:05.5 +1\ne: !!int 5\n",
        "{a: 1, a: 2}\n",
    };
    size_t s;
    for (s = 0; s < sizeof srcs / sizeof srcs[0]; s++) {
        long base = lb_alloc_live(), k;
        int rc = LB_ENOMEM, want;
        lb_yaml_doc *doc = NULL;
        want = lb_yaml_load(srcs[s], strlen(srcs[s]), "t", NULL, &doc, err);
        lb_yaml_free(doc);
        for (k = 0; k < 10000; k++) {
            lb_alloc_fail_after(k);
            rc = lb_yaml_load(srcs[s], strlen(srcs[s]), "t", NULL, &doc, err);
            lb_alloc_fail_after(-1);
            if (rc == LB_OK || rc == want) break;
            CHECK(rc == LB_ENOMEM && doc == NULL);
            CHECK(strstr(err, "t: out of memory") == err);
            CHECK(lb_alloc_live() == base);
        }
        CHECK(rc == want);
        CHECK(k > 3);
        lb_yaml_free(doc);
        CHECK(lb_alloc_live() == base);
    }
    {   /* the file path too */
        long base = lb_alloc_live(), k;
        int rc = LB_ENOMEM;
        lb_yaml_doc *doc = NULL;
        for (k = 0; k < 100000 && rc != LB_OK; k++) {
            lb_alloc_fail_after(k);
            rc = lb_yaml_load_file("tests/fixtures/yaml/workflow.yml", NULL, &doc, err);
            lb_alloc_fail_after(-1);
            if (rc != LB_OK) CHECK(rc == LB_ENOMEM && lb_alloc_live() == base);
        }
        CHECK(rc == LB_OK && k > 50);
        lb_yaml_free(doc);
        CHECK(lb_alloc_live() == base);
    }
}

int main(void) {
    lb_yaml_free(NULL);
    test_scalars();
    test_tags_and_styles();
    test_structure();
    test_positions();
    test_anchors_and_merge();
    test_errors();
    test_limits();
    test_input_limits();
    test_files();
    test_alloc_failures();
    CHECK(lb_alloc_live() == 0);
    CHECK_STR("mapping", lb_yaml_type_name(LB_YAML_MAP));
    return lb_test_report("yaml");
}
