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

/* The fields of a request and of a result, as upvalues of sigv4_sign:
 * interned once, so reading req[k] is a table lookup with no string
 * made (lua_getfield(L, i, "name") goes through Lua's API string cache,
 * a strcmp, every time). */
enum { K_METHOD = 1, K_URL, K_HEADERS, K_BODY, K_BODY_FILE, K_BODY_OFFSET, K_BODY_LENGTH,
       K_PAYLOAD_HASH, K_REGION, K_SERVICE, K_ACCESS_KEY, K_SECRET_KEY, K_SESSION_TOKEN, K_DATE,
       K_TIME, K_MODE, K_EXPIRES, K_S3, K_CONTENT_SHA256_HEADER, K_OMIT_SESSION_TOKEN,
       K_NORMALIZE, K_DEBUG, K_CANONICAL_REQUEST, K_STRING_TO_SIGN, K_SIGNATURE,
       K_AUTHORIZATION, K_SIGNED_HEADERS, K_CREDENTIAL_SCOPE, K_AMZ_DATE, K_COUNT_ };
static const char *const KEYS[K_COUNT_] = {
    NULL, "method", "url", "headers", "body", "body_file", "body_offset", "body_length",
    "payload_hash", "region", "service", "access_key", "secret_key", "session_token", "date",
    "time", "mode", "expires", "s3", "content_sha256_header", "omit_session_token", "normalize",
    "debug", "canonical_request", "string_to_sign", "signature", "authorization",
    "signed_headers", "credential_scope", "amz_date"};

/* Push req[KEYS[k]] (metamethods honoured) and return its type. */
static int peek(lua_State *L, int k) {
    lua_pushvalue(L, lua_upvalueindex(k));
    lua_gettable(L, 1);
    return lua_type(L, -1);
}

/* req[k], left on the stack, or NULL (nothing pushed) if nil.  Anything
 * but a plain string goes to lb_l_opt_string for its error. */
static const char *get_str(lua_State *L, int k, size_t *len, int flags) {
    int t = peek(L, k);
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (!(flags & LB_L_NONUL) || strlen(s) == n) {
            if (len) *len = n;
            return s;
        }
    } else if (t == LUA_TNIL && !(flags & LB_L_REQUIRED)) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_pop(L, 1);
    return lb_l_opt_string(L, &REQ, KEYS[k], flags, len);  /* raises */
}

static const char *need_str(lua_State *L, int k) {
    return get_str(L, k, NULL, LB_L_REQUIRED | LB_L_NONUL);
}

/* Whether req[k] is nil (the usual case of the optional fields). */
static int absent(lua_State *L, int k) {
    int t = peek(L, k);
    lua_pop(L, 1);
    return t == LUA_TNIL;
}

/* Integer field in [lo, hi], or dflt when nil; `want` names the range. */
static double get_int(lua_State *L, int k, double dflt, double lo, double hi, const char *want) {
    double d = dflt;
    if (!absent(L, k)) lb_l_opt_integer(L, &REQ, KEYS[k], lo, hi, want, &d);
    return d;
}

static int get_bool(lua_State *L, int k, int dflt) {
    return absent(L, k) ? dflt : lb_l_opt_bool(L, &REQ, KEYS[k], dflt);
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

/* req.headers -> array, returns the count: into local[LOCAL_HEADERS] when
 * it fits (the usual case: no userdata made), else a userdata left on the
 * stack.  The strings stay alive in req.headers, which stays on the stack.
 * Accepts a list of {name, value} pairs or a map {Name = "value"}. */
#define LOCAL_HEADERS 8
static size_t get_headers(lua_State *L, lb_sigv4_header *local, lb_sigv4_header **out) {
    size_t n = 0, i;
    int t;
    lb_sigv4_header *h;
    peek(L, K_HEADERS);
    t = lua_gettop(L);
    *out = NULL;
    if (lua_isnil(L, t)) return 0;
    if (!lua_istable(L, t)) type_error(L, "headers", "table", t);
    n = (size_t)lb_rawlen(L, t);
    if (n > 0) {  /* list of pairs */
        h = n <= LOCAL_HEADERS ? local : lb_newuserdata(L, n * sizeof *h);
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
        h = n <= LOCAL_HEADERS ? local : lb_newuserdata(L, n * sizeof *h);
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

/* The result fields that may also be header values, as shared[] holds them. */
static const int SHARED_KEYS[3] = {K_AMZ_DATE, K_PAYLOAD_HASH, K_AUTHORIZATION};

/* res[KEYS[k]] = v (the result table on top); nothing for NULL. */
static void set_str(lua_State *L, int k, const char *v) {
    if (!v) return;
    lua_pushvalue(L, lua_upvalueindex(k));
    lua_pushstring(L, v);
    lua_rawset(L, -3);
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
    lb_sigv4_header hdrs[LOCAL_HEADERS];
    lb_sigv4_result *res, local;
    char err[LB_ERR_LEN] = "";
    void *buf;
    size_t cap;
    const char *mode, *date, *service, *shared[3];
    size_t i, j;
    int rc, url_idx, debug, base;

    if (!lua_istable(L, 1)) return type_error(L, "req", "table", 1);
    luaL_checkstack(L, 40, "sigv4_sign");
    lb_sigv4_request_init(&req);
    req.method = get_str(L, K_METHOD, NULL, LB_L_NONUL);
    if (!req.method) req.method = "GET";
    req.url = need_str(L, K_URL);
    url_idx = lua_gettop(L);  /* header mode hands this very string back */
    req.nheaders = get_headers(L, hdrs, (lb_sigv4_header **)&req.headers);
    req.body = get_str(L, K_BODY, &req.body_len, 0);
    req.body_file = get_str(L, K_BODY_FILE, NULL, LB_L_NONUL);
    req.body_offset = (uint64_t)get_int(L, K_BODY_OFFSET, 0, 0, MAX_EXACT, NONNEG);
    req.body_length = (int64_t)get_int(L, K_BODY_LENGTH, -1, 0, MAX_EXACT, NONNEG);
    req.payload_hash = get_str(L, K_PAYLOAD_HASH, NULL, LB_L_NONUL);
    if (req.body && req.body_file) field_error(L, "body", "give body or body_file, not both");
    req.region = need_str(L, K_REGION);
    service = req.service = need_str(L, K_SERVICE);
    req.access_key = need_str(L, K_ACCESS_KEY);
    req.secret_key = need_str(L, K_SECRET_KEY);
    req.session_token = get_str(L, K_SESSION_TOKEN, NULL, LB_L_NONUL);
    if (req.session_token && !*req.session_token) req.session_token = NULL;
    date = get_str(L, K_DATE, NULL, LB_L_NONUL);
    req.amz_date = date;
    if (peek(L, K_TIME) != LUA_TNIL) {
        double t;
        if (lua_type(L, -1) != LUA_TNUMBER) type_error(L, "time", "number", -1);
        t = floor((double)lua_tonumber(L, -1));
        if (!(t >= 0 && t <= 253402300799.0)) field_error(L, "time", "epoch seconds expected");
        if (date) field_error(L, "time", "give either time or date, not both");
        req.time = (int64_t)t;
    }
    lua_pop(L, 1);
    mode = get_str(L, K_MODE, NULL, LB_L_NONUL);
    if (!mode || !strcmp(mode, "header")) req.query_mode = 0;
    else if (!strcmp(mode, "query")) req.query_mode = 1;
    else field_error(L, "mode", "\"header\" or \"query\" expected");
    req.expires = (long)get_int(L, K_EXPIRES, 3600, 1, LB_SIGV4_MAX_EXPIRES,
                                "integer in 1..604800 (seconds)");
    req.s3 = get_bool(L, K_S3, strcmp(service, "s3") == 0);
    req.content_sha256_header = get_bool(L, K_CONTENT_SHA256_HEADER, req.s3);
    req.omit_session_token = get_bool(L, K_OMIT_SESSION_TOKEN, 0);
    req.normalize_path = get_bool(L, K_NORMALIZE, 1);
    debug = get_bool(L, K_DEBUG, 0);

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

    /* The fields a header value may be (lb_sigv4.h), pushed once */
    shared[0] = res->amz_date, shared[1] = res->payload_hash, shared[2] = res->authorization;
    base = lua_gettop(L);
    for (j = 0; j < 3; j++) {
        if (shared[j]) lua_pushstring(L, shared[j]);
        else lua_pushnil(L);
    }
    lua_createtable(L, 0, 10);
    lua_createtable(L, (int)res->nheaders, 0);
    for (i = 0; i < res->nheaders; i++) {
        const char *v = res->headers[i].value;
        lua_createtable(L, 2, 0);
        lua_pushstring(L, res->headers[i].name);
        lua_rawseti(L, -2, 1);
        for (j = 0; j < 3 && v != shared[j]; j++) {}
        if (j < 3) lua_pushvalue(L, base + 1 + j);
        else lua_pushstring(L, v);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_pushvalue(L, lua_upvalueindex(K_HEADERS));
    lua_insert(L, -2);
    lua_rawset(L, -3);
    if (req.query_mode) {
        set_str(L, K_URL, res->url);
    } else {  /* unchanged: the caller's own string, no copy */
        lua_pushvalue(L, lua_upvalueindex(K_URL));
        lua_pushvalue(L, url_idx);
        lua_rawset(L, -3);
    }
    if (debug) {  /* the long intermediate strings only when asked */
        set_str(L, K_CANONICAL_REQUEST, res->canonical_request);
        set_str(L, K_STRING_TO_SIGN, res->string_to_sign);
    }
    set_str(L, K_SIGNATURE, res->signature);
    set_str(L, K_SIGNED_HEADERS, res->signed_headers);
    set_str(L, K_CREDENTIAL_SCOPE, res->credential_scope);
    for (j = 0; j < 3; j++) {
        if (!shared[j]) continue;
        lua_pushvalue(L, lua_upvalueindex(SHARED_KEYS[j]));
        lua_pushvalue(L, base + 1 + j);
        lua_rawset(L, -3);
    }
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
    {"sha256_file", l_sha256_file},
    {"sigv4_cache_stats", l_cache_stats},
    {NULL, NULL},
};

void lb_l_open_sigv4(lua_State *L) {
    int i;
    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, l_result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lb_setfuncs(L, funcs, 0);
    luaL_checkstack(L, K_COUNT_, "sigv4_sign upvalues");
    for (i = 1; i < K_COUNT_; i++) lua_pushstring(L, KEYS[i]);
    lua_pushcclosure(L, l_sigv4_sign, K_COUNT_ - 1);
    lua_setfield(L, -2, "sigv4_sign");
}
