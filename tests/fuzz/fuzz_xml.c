/* fuzz_xml.c -- libFuzzer target: lb_xml_parse, and the streaming parser
 * fed the same bytes in chunks (sizes from the first byte).  Contract:
 * both give the same outcome; a tree is well-formed (text_len, children);
 * a failure fills err; nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb_err.h"
#include "lb_xml.h"

static void walk(const lb_xml_elem *e, int depth) {
    size_t i;
    if (depth > LB_XML_MAX_DEPTH + 1 || !e->name || !e->text) abort();
    if (strlen(e->text) > e->text_len) abort();
    for (i = 0; i < e->nattrs; i++)
        if (!e->attrs[i].name || !e->attrs[i].value) abort();
    for (i = 0; i < e->n; i++) walk(e->kids[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[LB_ERR_LEN] = "", err2[LB_ERR_LEN] = "";
    lb_xml_elem *root = NULL, *root2 = NULL;
    lb_xml_parser *p;
    size_t chunk, off;
    int rc, rc2 = LB_OK;
    if (size < 1) return 0;
    chunk = (size_t)data[0] % 17 + 1;
    data++, size--;
    rc = lb_xml_parse((const char *)data, size, &root, err);
    if (rc == LB_OK) {
        walk(root, 0);
        lb_xml_child_text(root, "Code");
        lb_xml_attr_get(root, "xmlns");
    } else if (root || !err[0]) {
        abort();
    }
    if (!(p = lb_xml_parser_new())) abort();
    for (off = 0; off < size && rc2 == LB_OK; off += chunk)
        rc2 = lb_xml_parser_feed(p, (const char *)data + off, size - off < chunk ? size - off : chunk, err2);
    if (rc2 == LB_OK) rc2 = lb_xml_parser_finish(p, err2);
    if (rc2 == LB_OK) root2 = lb_xml_parser_take(p);
    lb_xml_parser_free(p);
    if (rc != rc2) abort();                                  /* chunking changes nothing */
    lb_xml_free(root);
    lb_xml_free(root2);
    return 0;
}
