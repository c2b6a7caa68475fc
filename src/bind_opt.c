/* bind_opt.c -- reading the fields of an options table, shared by the
 * bindings (contracts in bind.h).  Misuse raises; nothing here allocates
 * outside the Lua stack. */
#include "bind.h"

#include <limits.h>
#include <math.h>
#include <string.h>

int lb_l_opt_error(lua_State *L, const lb_l_opts *o, const char *field, const char *msg) {
    int n = 0;
    luaL_checkstack(L, 4, "options");
    if (o->entry) {
        lua_pushfstring(L, field ? "entry %d, " : "entry %d: ", o->entry);
        n++;
    }
    if (field) {
        lua_pushfstring(L, o->bare ? "%s: " : "field '%s': ", field);
        n++;
    }
    lua_pushstring(L, msg);
    lua_concat(L, n + 1);
    msg = lua_tostring(L, -1);
    if (o->fn) return luaL_error(L, "bad argument #%d to '%s' (%s)", o->argn, o->fn, msg);
    return luaL_argerror(L, o->argn, msg);
}

int lb_l_opt_typeerror(lua_State *L, const lb_l_opts *o, const char *field, const char *want,
                       int idx) {
    const char *got = luaL_typename(L, idx);    /* a static string */
    return lb_l_opt_error(L, o, field, lua_pushfstring(L, "%s expected, got %s", want, got));
}

const char *lb_l_opt_string(lua_State *L, const lb_l_opts *o, const char *field, int flags,
                            size_t *len) {
    const char *s;
    size_t n;
    lua_getfield(L, o->t, field);
    if (lua_isnil(L, -1) && !(flags & LB_L_REQUIRED)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING) lb_l_opt_typeerror(L, o, field, "string", -1);
    s = lua_tolstring(L, -1, &n);
    if ((flags & LB_L_NONUL) && strlen(s) != n) lb_l_opt_error(L, o, field, "contains a NUL byte");
    if (len) *len = n;
    return s;
}

int lb_l_opt_number(lua_State *L, const lb_l_opts *o, const char *field, double *out) {
    lua_getfield(L, o->t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER) lb_l_opt_typeerror(L, o, field, "number", -1);
    *out = (double)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return 1;
}

int lb_l_opt_integer(lua_State *L, const lb_l_opts *o, const char *field, double lo, double hi,
                     const char *want, double *out) {
    double d;
    lua_getfield(L, o->t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER) lb_l_opt_typeerror(L, o, field, want, -1);
    d = (double)lua_tonumber(L, -1);
    if (!(d >= lo && d <= hi && d == floor(d))) {        /* NaN fails too */
        if (d == floor(d) && fabs(d) <= INT_MAX)          /* "got -1", never "got -1.0" */
            lua_pushfstring(L, "%s expected, got %d", want, (int)d);
        else
            lua_pushfstring(L, "%s expected, got %f", want, (lua_Number)d);
        lb_l_opt_error(L, o, field, lua_tostring(L, -1));
    }
    *out = d;
    lua_pop(L, 1);
    return 1;
}

int lb_l_opt_bool(lua_State *L, const lb_l_opts *o, const char *field, int def) {
    int v = def;
    lua_getfield(L, o->t, field);
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) lb_l_opt_typeerror(L, o, field, "boolean", -1);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

int lb_l_opt_function(lua_State *L, const lb_l_opts *o, const char *field) {
    lua_getfield(L, o->t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TFUNCTION) lb_l_opt_typeerror(L, o, field, "function", -1);
    return 1;
}
