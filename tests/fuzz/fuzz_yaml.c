/* fuzz_yaml.c -- libFuzzer target: lb_yaml_load on any bytes.
 * Contract checked: LB_OK gives a document whose every node is
 * well-formed (walked, aliases included, within the limits); a failure
 * gives no document and a non-empty message; nothing leaks (ASan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb_err.h"
#include "lb_yaml.h"

static size_t walk(const lb_yaml_node *n, int depth) {
    size_t i, count = 1;
    if (depth > LB_YAML_MAX_DEPTH + 1) abort();              /* the depth cap held */
    if (n->type < LB_YAML_NULL || n->type > LB_YAML_MAP) abort();
    if (n->type == LB_YAML_SEQ || n->type == LB_YAML_MAP) {
        size_t k = n->type == LB_YAML_MAP ? 2 * n->n : n->n;
        for (i = 0; i < k; i++) count += walk(n->kids[i], depth + 1);
    } else if (n->type >= LB_YAML_STR && n->str && strlen(n->str) > n->len) {
        abort();                                             /* len covers the text */
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_yaml_limits lim = { .max_nodes = 20000, .max_depth = 64 };   /* the walk stays cheap */
    lb_yaml_doc *doc = (lb_yaml_doc *)1;
    char err[LB_ERR_LEN] = "";
    int rc = lb_yaml_load((const char *)data, size, "fuzz", &lim, &doc, err);
    if (rc == LB_OK) {
        if (!doc) abort();
        walk(lb_yaml_root(doc), 0);
        lb_yaml_get(lb_yaml_root(doc), "jobs");
        lb_yaml_free(doc);
    } else if (doc || !err[0]) {
        abort();
    }
    return 0;
}
