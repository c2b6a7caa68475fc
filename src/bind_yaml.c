/* bind_yaml.c -- core.yaml_load / core.yaml_load_file and core.null.
 *
 * The C core (lb_yaml.c) parses and resolves; this file only turns the
 * node tree into Lua values:
 *   mapping -> table (keys: strings, or integers/numbers/booleans when the
 *              key is one in YAML: `1:` is the integer key 1, `on:` the
 *              string "on"; a null or NaN key is an error)
 *   sequence -> array 1..n (a null item is opts.null, so length is kept)
 *   null -> opts.null (default core.null, a lightuserdata NULL equal to
 *           cjson.null, so JSON encoding writes null); bool -> boolean;
 *   int -> integer (a number on LuaJIT: exact up to 2^53); float -> number;
 *   str, date, timestamp -> string (dates in ISO form).
 * An alias becomes a separate copy of the anchored value (a later change
 * to one table does not show in the other); the core caps the expanded
 * size, so this cannot blow up.
 *
 * With opts.positions = true a second value maps every table produced
 * (weak keys) to { line=, col=, tag=?,
 *   mapping:  keys   = { [k] = {line=, col=} },          -- the key's position
 *             values = { [k] = {line=, col=, kind=, tag=?} },
 *             order  = { k1, k2, ... }                     -- source order
 *   sequence: items  = { [i] = {line=, col=, kind=, tag=?} } }
 * where kind is the YAML type ("str", "int", "date", "timestamp", ...). */
#include "bind.h"

#include <math.h>
#include <stdio.h>

#include "lb_err.h"
#include "lb_yaml.h"

#define DOC_MT "luabatch.yaml.doc"

typedef struct {
    lb_yaml_doc *doc;        /* NULL once converted or collected */
} doc_box;

typedef struct {
    const char *name;        /* for conversion errors */
    int null_idx;            /* stack slot of the null value */
    int pos_idx;             /* stack slot of the positions table, or 0 */
    char err[LB_ERR_LEN];
} conv;

static int box_gc(lua_State *L) {
    doc_box *b = luaL_checkudata(L, 1, DOC_MT);
    lb_yaml_free(b->doc);
    b->doc = NULL;
    return 0;
}

/* An empty box on the stack: it owns the document from birth, so an error
 * raised while converting cannot leak it (STYLE rule 13). */
static doc_box *new_box(lua_State *L) {
    doc_box *b = lb_newuserdata(L, sizeof *b);
    b->doc = NULL;
    luaL_setmetatable(L, DOC_MT);
    return b;
}

/* Push {line=, col=} (+ kind, tag) describing node n. */
static void push_where(lua_State *L, const lb_yaml_node *n, int with_kind) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, n->line);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, n->col);
    lua_setfield(L, -2, "col");
    if (with_kind) {
        lua_pushstring(L, lb_yaml_type_name(n->type));
        lua_setfield(L, -2, "kind");
    }
    if (n->tag) {
        lua_pushstring(L, n->tag);
        lua_setfield(L, -2, "tag");
    }
}

static int push_node(lua_State *L, conv *c, const lb_yaml_node *n);

static int key_error(conv *c, const lb_yaml_node *k, const char *what) {
    snprintf(c->err, sizeof c->err, "%s:%d:%d: %s", c->name, k->line, k->col, what);
    return LB_EPARSE;
}

static int push_map(lua_State *L, conv *c, const lb_yaml_node *n) {
    size_t i;
    int t, rec = 0, keys = 0, vals = 0, order = 0, rc;
    lua_createtable(L, 0, n->n > 0x7fffffff ? 0 : (int)n->n);
    t = lua_gettop(L);
    if (c->pos_idx) {
        push_where(L, n, 0);
        rec = lua_gettop(L);
        lua_createtable(L, 0, (int)n->n);
        keys = lua_gettop(L);
        lua_createtable(L, 0, (int)n->n);
        vals = lua_gettop(L);
        lua_createtable(L, (int)n->n, 0);
        order = lua_gettop(L);
    }
    for (i = 0; i < n->n; i++) {
        const lb_yaml_node *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
        if (k->type == LB_YAML_NULL) return key_error(c, k, "a null mapping key is not supported");
        if (k->type == LB_YAML_FLOAT && isnan(k->v.f)) return key_error(c, k, "a NaN mapping key is not supported");
        if ((rc = push_node(L, c, k)) != LB_OK) return rc;
        lua_pushvalue(L, -1);
        lua_rawget(L, t);
        if (!lua_isnil(L, -1)) {   /* e.g. 1 and 1.0: distinct in YAML, one key in Lua */
            char msg[128];
            snprintf(msg, sizeof msg, "duplicate key '%s'", lua_tostring(L, -2) ? lua_tostring(L, -2) : "?");
            return key_error(c, k, msg);
        }
        lua_pop(L, 1);
        if (c->pos_idx) {
            lua_pushvalue(L, -1);
            push_where(L, k, 0);
            lua_rawset(L, keys);
            lua_pushvalue(L, -1);
            push_where(L, v, 1);
            lua_rawset(L, vals);
            lua_pushvalue(L, -1);
            lua_rawseti(L, order, (int)i + 1);
        }
        if ((rc = push_node(L, c, v)) != LB_OK) return rc;
        lua_rawset(L, t);
    }
    if (c->pos_idx) {
        lua_setfield(L, rec, "order");
        lua_setfield(L, rec, "values");
        lua_setfield(L, rec, "keys");
        lua_pushvalue(L, t);
        lua_insert(L, rec);        /* [t, t, rec] */
        lua_rawset(L, c->pos_idx);
    }
    return LB_OK;
}

static int push_seq(lua_State *L, conv *c, const lb_yaml_node *n) {
    size_t i;
    int t, items = 0, rc;
    lua_createtable(L, n->n > 0x7fffffff ? 0 : (int)n->n, 0);
    t = lua_gettop(L);
    if (c->pos_idx) {
        lua_pushvalue(L, t);
        push_where(L, n, 0);
        lua_createtable(L, (int)n->n, 0);
        items = lua_gettop(L);
    }
    for (i = 0; i < n->n; i++) {
        if ((rc = push_node(L, c, n->kids[i])) != LB_OK) return rc;
        lua_rawseti(L, t, (int)i + 1);
        if (c->pos_idx) {
            push_where(L, n->kids[i], 1);
            lua_rawseti(L, items, (int)i + 1);
        }
    }
    if (c->pos_idx) {
        lua_setfield(L, -2, "items");
        lua_rawset(L, c->pos_idx);
    }
    return LB_OK;
}

/* Push the Lua value of n (one slot), or return LB_EPARSE with c->err. */
static int push_node(lua_State *L, conv *c, const lb_yaml_node *n) {
    luaL_checkstack(L, 12, "yaml: nesting too deep");
    switch (n->type) {
    case LB_YAML_NULL: lua_pushvalue(L, c->null_idx); return LB_OK;
    case LB_YAML_BOOL: lua_pushboolean(L, n->v.b); return LB_OK;
    case LB_YAML_INT: lua_pushinteger(L, (lua_Integer)n->v.i); return LB_OK;
    case LB_YAML_FLOAT: lua_pushnumber(L, (lua_Number)n->v.f); return LB_OK;
    case LB_YAML_SEQ: return push_seq(L, c, n);
    case LB_YAML_MAP: return push_map(L, c, n);
    default: lua_pushlstring(L, n->str, n->len); return LB_OK;
    }
}

/* Shared tail of both loaders: options at index oi, box at the top. */
static int convert(lua_State *L, doc_box *b, const char *name, int oi) {
    conv c;
    int base = lua_gettop(L), rc, positions = 0;
    c.name = name;
    c.pos_idx = 0;
    if (oi) {
        lua_getfield(L, oi, "positions");
        positions = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, oi, "null");
    } else {
        lua_pushnil(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
    }
    c.null_idx = lua_gettop(L);
    if (positions) {
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        c.pos_idx = lua_gettop(L);
    }
    rc = push_node(L, &c, lb_yaml_root(b->doc));
    lb_yaml_free(b->doc);
    b->doc = NULL;
    if (rc != LB_OK) {
        lua_settop(L, base);
        return lb_l_fail(L, rc, c.err);
    }
    if (positions) {
        lua_pushvalue(L, c.pos_idx);
        return 2;
    }
    return 1;
}

static int check_opts(lua_State *L, int i) {
    if (lua_isnoneornil(L, i)) return 0;
    luaL_checktype(L, i, LUA_TTABLE);
    return i;
}

/* yaml_load(str [, name [, opts]]) -> value [, positions] | nil, msg, code */
static int y_load(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "yaml");
    int oi = check_opts(L, 3), rc;
    char err[LB_ERR_LEN];
    doc_box *b = new_box(L);
    if ((rc = lb_yaml_load(s, len, name, NULL, &b->doc, err)) != LB_OK) return lb_l_fail(L, rc, err);
    return convert(L, b, name, oi);
}

/* yaml_load_file(path [, opts]) -> value [, positions] | nil, msg, code */
static int y_load_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int oi = check_opts(L, 2), rc;
    char err[LB_ERR_LEN];
    doc_box *b = new_box(L);
    if ((rc = lb_yaml_load_file(path, NULL, &b->doc, err)) != LB_OK) return lb_l_fail(L, rc, err);
    return convert(L, b, path, oi);
}

void lb_l_open_yaml(lua_State *L) {
    static const luaL_Reg funcs[] = {
        {"yaml_load", y_load},
        {"yaml_load_file", y_load_file},
        {NULL, NULL},
    };
    static const luaL_Reg metameth[] = {
        {"__gc", box_gc},
        {"__close", box_gc},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, DOC_MT)) lb_setfuncs(L, metameth, 0);
    lua_pop(L, 1);
    lb_setfuncs(L, funcs, 0);
    lua_pushlightuserdata(L, NULL);   /* core.null == cjson.null */
    lua_setfield(L, -2, "null");
}
