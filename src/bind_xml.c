/* bind_xml.c -- core.xml_parse(str) -> element | nil, msg, "EPARSE".
 *
 * element = { name = "ListBucketResult" (local name), ns = "http://..." (only
 *             when namespaced), attrs = { [local name] = value },
 *             text = "direct character data, raw", [1..n] = child elements }
 * The parse itself is lb_xml.c; this file only builds the tables. */
#include "bind.h"

#include "lb_err.h"
#include "lb_xml.h"

#define TREE_MT "luabatch.xml.tree"

typedef struct {
    lb_xml_elem *root;       /* NULL once converted or collected */
} tree_box;

static int box_gc(lua_State *L) {
    tree_box *b = luaL_checkudata(L, 1, TREE_MT);
    lb_xml_free(b->root);
    b->root = NULL;
    return 0;
}

static void push_elem(lua_State *L, const lb_xml_elem *e) {
    size_t i;
    luaL_checkstack(L, 6, "xml: nesting too deep");
    lua_createtable(L, e->n > 0x7fffffff ? 0 : (int)e->n, 4);
    lua_pushstring(L, e->name);
    lua_setfield(L, -2, "name");
    if (e->ns) {
        lua_pushstring(L, e->ns);
        lua_setfield(L, -2, "ns");
    }
    lua_createtable(L, 0, (int)e->nattrs);
    for (i = 0; i < e->nattrs; i++) {
        lua_pushstring(L, e->attrs[i].value);
        lua_setfield(L, -2, e->attrs[i].name);
    }
    lua_setfield(L, -2, "attrs");
    lua_pushlstring(L, e->text, e->text_len);
    lua_setfield(L, -2, "text");
    for (i = 0; i < e->n; i++) {
        push_elem(L, e->kids[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* xml_parse(str) -> element | nil, msg, code */
static int x_parse(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char err[LB_ERR_LEN];
    int rc;
    tree_box *b = lb_newuserdata(L, sizeof *b);   /* owns the tree from birth */
    b->root = NULL;
    luaL_setmetatable(L, TREE_MT);
    if ((rc = lb_xml_parse(s, len, &b->root, err)) != LB_OK) return lb_l_fail(L, rc, err);
    push_elem(L, b->root);
    lb_xml_free(b->root);
    b->root = NULL;
    return 1;
}

void lb_l_open_xml(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"xml_parse", x_parse},
        {NULL, NULL},
    };
    static const luaL_Reg metameth[] = {
        {"__gc", box_gc},
        {"__close", box_gc},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, TREE_MT)) lb_setfuncs(L, metameth, 0);
    lua_pop(L, 1);
    lb_setfuncs(L, funcs, 0);
}
