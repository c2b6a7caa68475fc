/* bind_sigv4.c -- core.sigv4_sign(req), core.sha256_file(path [, offset,
 * length]) and core.sigv4_cache_stats() over lb_sigv4.
 *
 * Every string handed to the core stays on the Lua stack (or inside a table
 * that does) for the whole call, and the result lives in a userdata box
 * with __gc, so a Lua error while building the result table leaks nothing
 * (STYLE rule 13). */
#include "bind.h"

#include <math.h>
#include <string.h>

#include "lb_err.h"
#include "lb_sigv4.h"

#define RESULT_MT "luabatch.sigv4.result"
#define FN "sigv4_sign"
#define MAX_EXACT 9007199254740991.0  /* 2^53 - 1 */
#define NONNEG "non-negative integer"

/* Misuse raises "bad argument #1 to 'sigv4_sign' (field: what)" whatever
 * name the caller reached the function by (luaL_argerror would print '?'
 * under pcall). */
static const lb_l_opts REQ = { 1, 1, FN, 1, 0 };

static int field_error(lua_State *L, const char *field, const char *what) {
    return lb_l_opt_error(L, &REQ, field, what);
}

static int type_error(lua_State *L, const char *field, const char *want, int idx) {
    return lb_l_opt_typeerror(L, &REQ, field, want, idx);
}

/* req[field], left on the stack, or NULL (nothing pushed) if nil. */
static const char *get_str(lua_State *L, const char *field, size_t *len, int allow_nul) {
    return lb_l_opt_string(L, &REQ, field, allow_nul ? 0 : LB_L_NONUL, len);
}

static const char *need_str(lua_State *L, const char *field) {
    return lb_l_opt_string(L, &REQ, field, LB_L_REQUIRED | LB_L_NONUL, NULL);
}

/* Integer field in [lo, hi], or dflt when nil; `want` names the range. */
static double get_int(lua_State *L, const char *field, double dflt, double lo, double hi,
                      const char *want) {
    double d = dflt;
    lb_l_opt_integer(L, &REQ, field, lo, hi, want, &d);
    return d;
}

/* One header string from the table at idx (key k or raw index i). */
static const char *hdr_str(lua_State *L, int idx, const char *what) {
    const char *s;
    size_t n;
    if (lua_type(L, idx) != LUA_TSTRING) type_error(L, what, "string", idx);
    s = lua_tolstring(L, idx, &n);
    if (strlen(s) != n) field_error(L, what, "contains a NUL byte");
    return s;
}

/* req.headers -> array in a userdata left on the stack; returns the count.
 * Accepts a list of {name, value} pairs or a map {Name = "value"}. */
static size_t get_headers(lua_State *L, lb_sigv4_header **out) {
    size_t n = 0, i;
    int t;
    lb_sigv4_header *h;
    lua_getfield(L, 1, "headers");
    t = lua_gettop(L);
    *out = NULL;
    if (lua_isnil(L, t)) return 0;
    if (!lua_istable(L, t)) type_error(L, "headers", "table", t);
    n = (size_t)lb_rawlen(L, t);
    if (n > 0) {  /* list of pairs */
        h = lb_newuserdata(L, n * sizeof *h);
        for (i = 0; i < n; i++) {
            lua_rawgeti(L, t, (int)i + 1);
            if (!lua_istable(L, -1)) type_error(L, "headers[i]", "{name, value} table", -1);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            h[i].name = hdr_str(L, -2, "header name");
            h[i].value = hdr_str(L, -1, "header value");
            lua_pop(L, 3);  /* strings stay alive inside the pair table */
        }
    } else {      /* map */
        lua_pushnil(L);
        while (lua_next(L, t)) { n++; lua_pop(L, 1); }
        h = lb_newuserdata(L, (n ? n : 1) * sizeof *h);
        i = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            h[i].name = hdr_str(L, -2, "header name");
            h[i].value = hdr_str(L, -1, "header value");
            i++;
            lua_pop(L, 1);
        }
    }
    *out = h;
    return n;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* The per-state scratch block a signature is written into (a userdata kept
 * in the registry, reused: a signature allocates nothing in C), at least
 * `need` bytes, or NULL (need 0: the request lacks a field and will fail).
 * A block over SCRATCH_KEEP is used once and left to the collector. */
#define SCRATCH_MIN 16384
#define SCRATCH_KEEP 262144
static char scratch_key;

static void *scratch(lua_State *L, size_t need, size_t *cap) {
    void *p;
    if (!need) return NULL;
    lua_pushlightuserdata(L, &scratch_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_type(L, -1) == LUA_TUSERDATA && (size_t)lb_rawlen(L, -1) >= need) {
        *cap = (size_t)lb_rawlen(L, -1);
        return lua_touserdata(L, -1);  /* stays on the stack (and in the registry) */
    }
    lua_pop(L, 1);
    *cap = need < SCRATCH_MIN ? SCRATCH_MIN : need;
    p = lb_newuserdata(L, *cap);
    if (*cap <= SCRATCH_KEEP) {
        lua_pushlightuserdata(L, &scratch_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    return p;
}

/* core.sigv4_sign(req) -> res | nil, msg, code  (contract in the header
 * comment of lb_sigv4.h and the project brief).  res.canonical_request and
 * res.string_to_sign are there only with req.debug = true: nothing on the
 * request path reads them, and they are the longest strings. */
static int l_sigv4_sign(lua_State *L) {
    lb_sigv4_request req;
    lb_sigv4_result *res, local;
    char err[LB_ERR_LEN] = "";
    void *buf;
    size_t cap;
    const char *mode, *date, *service;
    size_t i;
    int rc, url_idx, debug;

    if (!lua_istable(L, 1)) return type_error(L, "req", "table", 1);
    luaL_checkstack(L, 40, "sigv4_sign");
    lb_sigv4_request_init(&req);
    req.method = get_str(L, "method", NULL, 0);
    if (!req.method) req.method = "GET";
    req.url = need_str(L, "url");
    url_idx = lua_gettop(L);  /* header mode hands this very string back */
    req.nheaders = get_headers(L, (lb_sigv4_header **)&req.headers);
    req.body = get_str(L, "body", &req.body_len, 1);
    req.body_file = get_str(L, "body_file", NULL, 0);
    req.body_offset = (uint64_t)get_int(L, "body_offset", 0, 0, MAX_EXACT, NONNEG);
    req.body_length = (int64_t)get_int(L, "body_length", -1, 0, MAX_EXACT, NONNEG);
    req.payload_hash = get_str(L, "payload_hash", NULL, 0);
    if (req.body && req.body_file) field_error(L, "body", "give body or body_file, not both");
    req.region = need_str(L, "region");
    service = req.service = need_str(L, "service");
    req.access_key = need_str(L, "access_key");
    req.secret_key = need_str(L, "secret_key");
    req.session_token = get_str(L, "session_token", NULL, 0);
    if (req.session_token && !*req.session_token) req.session_token = NULL;
    date = get_str(L, "date", NULL, 0);
    req.amz_date = date;
    lua_getfield(L, 1, "time");
    if (!lua_isnil(L, -1)) {
        double t;
        if (lua_type(L, -1) != LUA_TNUMBER) type_error(L, "time", "number", -1);
        t = floor((double)lua_tonumber(L, -1));
        if (!(t >= 0 && t <= 253402300799.0)) field_error(L, "time", "epoch seconds expected");
        if (date) field_error(L, "time", "give either time or date, not both");
        req.time = (int64_t)t;
    }
    lua_pop(L, 1);
    mode = get_str(L, "mode", NULL, 0);
    if (!mode || !strcmp(mode, "header")) req.query_mode = 0;
    else if (!strcmp(mode, "query")) req.query_mode = 1;
    else field_error(L, "mode", "\"header\" or \"query\" expected");
    req.expires = (long)get_int(L, "expires", 3600, 1, LB_SIGV4_MAX_EXPIRES,
                                "integer in 1..604800 (seconds)");
    req.s3 = lb_l_opt_bool(L, &REQ, "s3", strcmp(service, "s3") == 0);
    req.content_sha256_header = lb_l_opt_bool(L, &REQ, "content_sha256_header", req.s3);
    req.omit_session_token = lb_l_opt_bool(L, &REQ, "omit_session_token", 0);
    req.normalize_path = lb_l_opt_bool(L, &REQ, "normalize", 1);
    debug = lb_l_opt_bool(L, &REQ, "debug", 0);

    buf = scratch(L, lb_sigv4_sign_bound(&req), &cap);
    if (buf) {  /* the usual case: the result lives in the scratch block */
        res = &local;
        rc = lb_sigv4_sign_into(&req, res, buf, cap, err);
    } else {    /* a block of its own, boxed so that a Lua error cannot leak it */
        res = lb_newuserdata(L, sizeof *res);
        memset(res, 0, sizeof *res);
        luaL_getmetatable(L, RESULT_MT);
        lua_setmetatable(L, -2);
        rc = lb_sigv4_sign(&req, res, err);
    }
    if (rc == LB_EINVAL) {  /* the request itself is wrong: misuse */
        const char *m = strncmp(err, FN ": ", sizeof FN + 1) ? err : err + sizeof FN + 1;
        return luaL_error(L, "bad argument #1 to '" FN "' (%s)", m);  /* copied first */
    }
    if (rc != LB_OK) return lb_l_fail(L, rc, err);

    lua_createtable(L, 0, 10);
    lua_createtable(L, (int)res->nheaders, 0);
    for (i = 0; i < res->nheaders; i++) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, res->headers[i].name);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, res->headers[i].value);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "headers");
    if (req.query_mode) {
        set_str(L, "url", res->url);
    } else {  /* unchanged: the caller's own string, no copy */
        lua_pushvalue(L, url_idx);
        lua_setfield(L, -2, "url");
    }
    if (debug) {  /* the long intermediate strings only when asked */
        set_str(L, "canonical_request", res->canonical_request);
        set_str(L, "string_to_sign", res->string_to_sign);
    }
    set_str(L, "signature", res->signature);
    set_str(L, "authorization", res->authorization);
    set_str(L, "signed_headers", res->signed_headers);
    set_str(L, "credential_scope", res->credential_scope);
    set_str(L, "payload_hash", res->payload_hash);
    set_str(L, "amz_date", res->amz_date);
    lb_sigv4_result_free(res);  /* early; __gc would do it too */
    return 1;
}

static int l_result_gc(lua_State *L) {
    lb_sigv4_result *res = luaL_checkudata(L, 1, RESULT_MT);
    lb_sigv4_result_free(res);
    return 0;
}

/* core.sha256_file(path [, offset [, length]]) -> hex | nil, msg, code
 * Hashes incrementally, so the file may be larger than memory. */
static int l_sha256_file(lua_State *L) {
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    double off = (double)luaL_optnumber(L, 2, 0);
    double len = (double)luaL_optnumber(L, 3, -1);
    char hex[65], err[LB_ERR_LEN] = "";
    int rc;
    luaL_argcheck(L, strlen(path) == n, 1, "path contains a NUL byte");
    luaL_argcheck(L, off >= 0 && off == floor(off), 2, "non-negative integer expected");
    luaL_argcheck(L, len == floor(len) && (len >= 0 || lua_isnoneornil(L, 3)), 3,
                  "non-negative integer expected");
    rc = lb_sigv4_sha256_file(path, (uint64_t)off, (int64_t)len, hex, err);
    if (rc != LB_OK) return lb_l_fail(L, rc, err);
    lua_pushstring(L, hex);
    return 1;
}

/* core.sigv4_cache_stats() -> hits, misses (signing-key cache) */
static int l_cache_stats(lua_State *L) {
    unsigned long hits, misses;
    lb_sigv4_cache_stats(&hits, &misses);
    lua_pushinteger(L, (lua_Integer)hits);
    lua_pushinteger(L, (lua_Integer)misses);
    return 2;
}

static const luaL_Reg funcs[] = {
    {"sigv4_sign", l_sigv4_sign},
    {"sha256_file", l_sha256_file},
    {"sigv4_cache_stats", l_cache_stats},
    {NULL, NULL},
};

void lb_l_open_sigv4(lua_State *L) {
    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, l_result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lb_setfuncs(L, funcs, 0);
}
