/* bind_http.c -- Lua binding of the HTTP engine (lb_http.h).
 *
 *   core.http_request(opts)          -> resp | nil, msg, code
 *   core.http_client([copts])        -> client | nil, msg, code
 *     copts = { max_connections = 16, max_concurrency = 16 }
 *   client:request(opts)             -> resp | nil, msg, code
 *   client:request_all({opts, ...})  -> { entry, ... }  (same order)
 *       entry = resp on success, or { ok = false, err = msg, code = code }
 *   client:close()                   idempotent; other methods then raise
 *
 * opts = { url = (required), method = "GET" (default; "PUT" with a body),
 *   headers = { {"Name","value"}, ... } or { Name = "value" },
 *   body = string | body_file = path [, body_offset = 0, body_length = to EOF]
 *        | body_reader = function() -> string, or nil/"" at the end
 *          (needs body_length),
 *   output_file = path [, output_offset] (no output_offset: the file is
 *        truncated first; with one it is written in place at that offset,
 *        so ranged downloads can share a file) | on_data = function(chunk)
 *        (return false to stop: ECANCELED),
 *   on_progress = function(dlnow, dltotal, ulnow, ultotal) (false stops),
 *   connect_timeout = 10, timeout = none, read_timeout = 60 (seconds),
 *   verify = true, ca_bundle = path (default: $AWS_CA_BUNDLE; false = none),
 *   unix_socket = path (connect there, not to the URL's host: Docker),
 *   max_body = 64 MiB (a body kept in memory: more fails with EHTTP) }
 * resp = { status, headers = { [lowercase name] = value (repeats joined by
 *   ", ") }, header_list = { {"Name","value"}, ... }, body = string (memory
 *   sink; with output_file/on_data only for a non-2xx status, whose body
 *   never goes to the file or callback), bytes_in, seconds }
 * A 4xx/5xx status is a resp, not a failure.  Failure codes: ECONNECT,
 * ETIMEDOUT, ECANCELED, ETLS, EHTTP, EIO (and EINVAL, ENOMEM, ECALLBACK).
 *
 * Lua callbacks run inside libcurl, so they never raise through it: each
 * runs under lua_pcall (through a trampoline pushed before curl starts, on
 * the calling thread), the first error is parked in a stack slot, every
 * transfer of the call is stopped, and the error is raised again once curl
 * has returned.  All per-call C state lives in a userdata with __gc
 * ("luabatch.http.call"), so nothing leaks if anything raises. */
#include "bind.h"

#include <stdlib.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_err.h"
#include "lb_http.h"

#define CLIENT_MT "luabatch.http.client"
#define CALL_MT "luabatch.http.call"

typedef struct lb_l_client {
    lb_http_client *c;              /* NULL once closed */
    int busy;                       /* a request is running on it */
} lb_l_client;

enum { K_READ, K_DATA, K_PROGRESS };

struct call;

/* Callback state of one request. */
typedef struct cbs {
    struct call *call;
    int reader, data, progress;     /* keys in the anchor table, 0 = none */
    int kind;                       /* which callback the trampoline runs */
    char *out;                      /* K_READ: curl's buffer ... */
    size_t out_cap;
    long got;                       /* ... and the bytes put there */
    const char *chunk;              /* K_DATA */
    size_t chunk_len;
    double prog[4];                 /* K_PROGRESS */
    int stop;                       /* the callback returned false */
    lb_buf pending;                 /* reader output beyond curl's buffer */
    size_t pending_off;
} cbs;

/* One binding call (request or request_all), a userdata. */
typedef struct call {
    lua_State *L;                   /* the calling thread */
    size_t n;
    lb_http_request *reqs;          /* n of each, inside this userdata */
    lb_http_result *results;
    lb_http_kv **hdrs;              /* header arrays (in anchored userdata) */
    cbs *cb;
    int anchor, tramp, errslot;     /* stack slots of the call */
    int nanchor;                    /* entries in the anchor table */
    int failed;                     /* a Lua callback raised */
    volatile int cancel;            /* stops every request of the call */
} call;

/* ---- the call box ------------------------------------------------------ */

static void call_release(call *k) {
    size_t i;
    if (!k->reqs) return;
    for (i = 0; i < k->n; i++) {
        lb_http_response_free(&k->results[i].resp);
        lb_buf_free(&k->cb[i].pending);
    }
    k->n = 0;
}

static int call_gc(lua_State *L) {
    call_release(luaL_checkudata(L, 1, CALL_MT));
    return 0;
}

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

/* Push a call box for n requests; zeroed, with its __gc. */
static call *call_push(lua_State *L, size_t n) {
    size_t off_req = ALIGN16(sizeof(call));
    size_t off_res = off_req + ALIGN16(n * sizeof(lb_http_request));
    size_t off_cb = off_res + ALIGN16(n * sizeof(lb_http_result));
    size_t total = off_cb + n * sizeof(cbs);
    char *mem;
    call *k;
    if (n > ((size_t)-1 >> 1) / (sizeof(lb_http_request) + sizeof(lb_http_result) + sizeof(cbs)))
        luaL_error(L, "too many requests");
    mem = lb_newuserdata(L, total);
    memset(mem, 0, total);
    k = (call *)mem;
    k->n = n;
    k->reqs = (lb_http_request *)(mem + off_req);
    k->results = (lb_http_result *)(mem + off_res);
    k->cb = (cbs *)(mem + off_cb);
    luaL_getmetatable(L, CALL_MT);
    lua_setmetatable(L, -2);
    return k;
}

/* Keep the value on the top alive for the call; pops it. */
static void anchor(lua_State *L, call *k) {
    lua_rawseti(L, k->anchor, ++k->nanchor);
}

/* ---- reading opts ------------------------------------------------------ */

typedef struct parse {
    call *k;
    lb_l_opts o;                    /* the opts table and how misuse reads */
} parse;

/* String field or NULL when nil; anchored. */
static const char *opt_string(lua_State *L, parse *p, const char *field, int required,
                              size_t *len) {
    const char *s = lb_l_opt_string(L, &p->o, field, required ? LB_L_REQUIRED : 0, len);
    if (s) anchor(L, p->k);
    return s;
}

/* Non-negative integer field; returns 1 and sets *out when present. */
static int opt_size(lua_State *L, parse *p, const char *field, double *out) {
    return lb_l_opt_integer(L, &p->o, field, 0, LB_L_INT_MAX, "non-negative integer", out);
}

/* Function field: its anchor key, or 0 when nil. */
static int opt_function(lua_State *L, parse *p, const char *field) {
    if (!lb_l_opt_function(L, &p->o, field)) return 0;
    anchor(L, p->k);
    return p->k->nanchor;
}

/* A header name or value at the top (left there): string or number. */
static const char *header_str(lua_State *L, parse *p) {
    const char *s;
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        lb_l_opt_typeerror(L, &p->o, "headers", "string pairs", -1);
    lua_pushvalue(L, -1);           /* convert a copy, never a table key */
    s = lua_tostring(L, -1);
    anchor(L, p->k);                /* pops the copy; the original stays */
    return s;
}

static void opt_headers(lua_State *L, parse *p, lb_http_request *r) {
    size_t n = 0, i = 0;
    lb_http_kv *kv;
    int h;
    lua_getfield(L, p->o.t, "headers");
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return; }
    if (!lua_istable(L, -1)) lb_l_opt_typeerror(L, &p->o, "headers", "table", -1);
    h = lua_gettop(L);
    lua_rawgeti(L, h, 1);
    if (!lua_isnil(L, -1)) {        /* list of pairs */
        lua_pop(L, 1);
        n = lb_rawlen(L, h);
    } else {                        /* map */
        lua_pop(L, 1);
        lua_pushnil(L);
        while (lua_next(L, h)) { n++; lua_pop(L, 1); }
    }
    kv = lb_newuserdata(L, n ? n * sizeof *kv : 1);
    anchor(L, p->k);
    lua_rawgeti(L, h, 1);
    if (!lua_isnil(L, -1)) {
        lua_pop(L, 1);
        for (i = 0; i < n; i++) {
            lua_rawgeti(L, h, (int)i + 1);
            if (!lua_istable(L, -1))
                lb_l_opt_typeerror(L, &p->o, "headers", "list of {name, value} pairs", -1);
            lua_rawgeti(L, -1, 1);
            kv[i].name = header_str(L, p);
            lua_pop(L, 1);
            lua_rawgeti(L, -1, 2);
            kv[i].value = header_str(L, p);
            lua_pop(L, 2);
        }
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
        while (lua_next(L, h) && i < n) {
            kv[i].value = header_str(L, p);
            lua_pop(L, 1);
            kv[i].name = header_str(L, p);
            i++;
        }
        n = i;
    }
    lua_pop(L, 1);                  /* the headers table */
    r->headers = kv;
    r->nheaders = n;
}

static long c_read(void *ud, char *buf, size_t cap);
static int c_data(void *ud, const char *p, size_t n);
static int c_progress(void *ud, int64_t dn, int64_t dt, int64_t un, int64_t ut);

/* Fill k->reqs[i] from the opts table at index t.  Raises on misuse. */
static void parse_request(lua_State *L, call *k, size_t i, int t, int argn, int entry) {
    parse p = { k, { t, argn, NULL, 0, entry } };
    lb_http_request *r = &k->reqs[i];
    cbs *b = &k->cb[i];
    const char *ca;
    size_t blen;
    double d;
    int nbody = 0;

    b->call = k;
    r->url = opt_string(L, &p, "url", 1, NULL);
    r->method = opt_string(L, &p, "method", 0, NULL);
    opt_headers(L, &p, r);

    if ((r->body = opt_string(L, &p, "body", 0, &blen))) {
        r->body_length = (int64_t)blen;
        r->body_kind = LB_HTTP_BODY_MEM;
        nbody++;
    }
    if ((r->body_file = opt_string(L, &p, "body_file", 0, NULL))) {
        r->body_kind = LB_HTTP_BODY_FILE;
        r->body_length = -1;
        if (opt_size(L, &p, "body_offset", &d)) r->body_offset = (int64_t)d;
        if (opt_size(L, &p, "body_length", &d)) r->body_length = (int64_t)d;
        nbody++;
    }
    if ((b->reader = opt_function(L, &p, "body_reader"))) {
        r->body_kind = LB_HTTP_BODY_READER;
        r->body_reader = c_read;
        r->body_ud = b;
        if (!opt_size(L, &p, "body_length", &d))
            lb_l_opt_error(L, &p.o, "body_length", "integer (with body_reader) expected, got nil");
        r->body_length = (int64_t)d;
        nbody++;
    }
    if (nbody > 1) lb_l_opt_error(L, &p.o, NULL, "only one of body, body_file, body_reader may be given");

    if ((r->output_file = opt_string(L, &p, "output_file", 0, NULL))) {
        r->sink_kind = LB_HTTP_SINK_FILE;
        if (opt_size(L, &p, "output_offset", &d)) r->output_offset = (int64_t)d;
        else r->output_truncate = 1;
    }
    if ((b->data = opt_function(L, &p, "on_data"))) {
        if (r->output_file) lb_l_opt_error(L, &p.o, NULL, "output_file and on_data exclude each other");
        r->sink_kind = LB_HTTP_SINK_WRITER;
        r->on_data = c_data;
        r->data_ud = b;
    }
    if ((b->progress = opt_function(L, &p, "on_progress"))) {
        r->on_progress = c_progress;
        r->progress_ud = b;
    }

    if (lb_l_opt_number(L, &p.o, "connect_timeout", &d)) r->connect_timeout = d;
    if (lb_l_opt_number(L, &p.o, "timeout", &d)) r->timeout = d;
    if (lb_l_opt_number(L, &p.o, "read_timeout", &d)) r->read_timeout = d > 0 ? d : -1;
    if (lb_l_opt_number(L, &p.o, "max_body", &d)) {
        if (!(d >= 1 && d <= 9.2e18)) lb_l_opt_error(L, &p.o, "max_body", "a byte count >= 1 expected");
        r->max_body = (size_t)d;
    }
    r->verify_off = !lb_l_opt_bool(L, &p.o, "verify", 1);
    lua_getfield(L, t, "ca_bundle");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        lua_pop(L, 1);              /* false: the system's CAs only */
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        ca = getenv("AWS_CA_BUNDLE");
        if (ca && *ca) {
            lua_pushstring(L, ca);
            r->ca_bundle = lua_tostring(L, -1);
            anchor(L, k);
        }
    } else {
        lua_pop(L, 1);
        r->ca_bundle = opt_string(L, &p, "ca_bundle", 0, NULL);
    }
    r->unix_socket = opt_string(L, &p, "unix_socket", 0, NULL);
    r->cancel = &k->cancel;
}

/* ---- callbacks ---------------------------------------------------------- */

/* Runs protected: call the user's function for b->kind. */
static int trampoline(lua_State *L) {
    cbs *b = lua_touserdata(L, 1);
    size_t len;
    const char *s;
    switch (b->kind) {
    case K_READ:
        lua_rawgeti(L, lua_upvalueindex(1), b->reader);
        lua_call(L, 0, 1);
        if (lua_isnil(L, -1)) { b->got = 0; return 0; }
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "body_reader must return a string or nil, got %s",
                              luaL_typename(L, -1));
        s = lua_tolstring(L, -1, &len);
        b->got = (long)(len < b->out_cap ? len : b->out_cap);
        memcpy(b->out, s, (size_t)b->got);
        if ((size_t)b->got < len
            && lb_buf_append(&b->pending, s + b->got, len - (size_t)b->got) != LB_OK)
            return luaL_error(L, "not enough memory");
        return 0;
    case K_DATA:
        lua_rawgeti(L, lua_upvalueindex(1), b->data);
        lua_pushlstring(L, b->chunk, b->chunk_len);
        lua_call(L, 1, 1);
        break;
    default:
        lua_rawgeti(L, lua_upvalueindex(1), b->progress);
        lua_pushnumber(L, b->prog[0]);
        lua_pushnumber(L, b->prog[1]);
        lua_pushnumber(L, b->prog[2]);
        lua_pushnumber(L, b->prog[3]);
        lua_call(L, 4, 1);
        break;
    }
    b->stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    return 0;
}

/* Run the trampoline for b; never raises.  LB_OK, LB_ECANCELED (the
 * callback returned false) or LB_ECALLBACK (it raised: error parked). */
static int invoke(cbs *b, int kind) {
    call *k = b->call;
    lua_State *L = k->L;
    if (k->failed) return LB_ECALLBACK;
    b->kind = kind;
    b->stop = 0;
    lua_pushvalue(L, k->tramp);     /* slots reserved before curl ran */
    lua_pushlightuserdata(L, b);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_replace(L, k->errslot);
        k->failed = 1;
        k->cancel = 1;              /* stop the other transfers too */
        return LB_ECALLBACK;
    }
    return b->stop ? LB_ECANCELED : LB_OK;
}

static long c_read(void *ud, char *buf, size_t cap) {
    cbs *b = ud;
    int rc;
    if (b->pending_off < b->pending.len) {
        size_t n = b->pending.len - b->pending_off;
        if (n > cap) n = cap;
        memcpy(buf, b->pending.data + b->pending_off, n);
        b->pending_off += n;
        if (b->pending_off == b->pending.len) { lb_buf_reset(&b->pending); b->pending_off = 0; }
        return (long)n;
    }
    b->out = buf;
    b->out_cap = cap;
    b->got = 0;
    rc = invoke(b, K_READ);
    return rc == LB_OK ? b->got : -rc;
}

static int c_data(void *ud, const char *p, size_t n) {
    cbs *b = ud;
    b->chunk = p;
    b->chunk_len = n;
    return invoke(b, K_DATA);
}

static int c_progress(void *ud, int64_t dn, int64_t dt, int64_t un, int64_t ut) {
    cbs *b = ud;
    b->prog[0] = (double)dn;
    b->prog[1] = (double)dt;
    b->prog[2] = (double)un;
    b->prog[3] = (double)ut;
    return invoke(b, K_PROGRESS);
}

/* ---- results ------------------------------------------------------------ */

static void push_resp(lua_State *L, const lb_http_response *r) {
    size_t i, j;
    int hm, hl;
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)r->status);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    hm = lua_gettop(L);
    lua_createtable(L, (int)r->nheaders, 0);
    hl = lua_gettop(L);
    for (i = 0; i < r->nheaders; i++) {
        const char *name = r->headers[i].name, *val = r->headers[i].value;
        luaL_Buffer lb;
        lua_createtable(L, 2, 0);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, val);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, hl, (int)i + 1);
        luaL_buffinit(L, &lb);
        for (j = 0; name[j]; j++)
            luaL_addchar(&lb, (char)(name[j] >= 'A' && name[j] <= 'Z' ? name[j] + 32 : name[j]));
        luaL_pushresult(&lb);
        lua_pushvalue(L, -1);
        lua_rawget(L, hm);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushstring(L, val);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushstring(L, val);
            lua_concat(L, 3);
        }
        lua_rawset(L, hm);
    }
    lua_setfield(L, -3, "header_list");
    lua_setfield(L, -2, "headers");
    if (r->body) {
        lua_pushlstring(L, r->body, r->body_len);
        lua_setfield(L, -2, "body");
    }
    lua_pushinteger(L, (lua_Integer)r->bytes_in);
    lua_setfield(L, -2, "bytes_in");
    lua_pushnumber(L, r->seconds);
    lua_setfield(L, -2, "seconds");
}

/* ---- the perform path shared by all entry points ----------------------- */

/* Run the request(s) at stack index idx (one opts table, or a list when
 * all) on cl; push the results.  argn numbers idx in error messages. */
static int perform(lua_State *L, lb_l_client *cl, int idx, int all, int argn) {
    size_t n = 1, i;
    call *k;
    int top;
    luaL_checktype(L, idx, LUA_TTABLE);
    if (all) n = lb_rawlen(L, idx);
    lua_pushnil(L);                 /* errslot */
    lua_newtable(L);                /* anchor */
    k = call_push(L, n);
    k->L = L;
    k->errslot = lua_gettop(L) - 2;
    k->anchor = lua_gettop(L) - 1;
    for (i = 0; i < n; i++) {
        if (all) {
            lua_rawgeti(L, idx, (int)i + 1);
            if (!lua_istable(L, -1)) {
                lb_l_opts eo = { 0, argn, NULL, 0, (int)i + 1 };
                lb_l_opt_typeerror(L, &eo, NULL, "table", -1);
            }
            parse_request(L, k, i, lua_gettop(L), argn, (int)i + 1);
            lua_pop(L, 1);
        } else {
            parse_request(L, k, i, idx, argn, 0);
        }
    }
    lua_pushvalue(L, k->anchor);
    lua_pushcclosure(L, trampoline, 1);
    k->tramp = lua_gettop(L);
    luaL_checkstack(L, 8, "http request");
    top = lua_gettop(L);

    cl->busy++;
    lb_http_perform_all(cl->c, k->reqs, n, k->results);
    cl->busy--;
    lua_settop(L, top);
    if (k->failed) {
        lua_pushvalue(L, k->errslot);
        return lua_error(L);
    }
    if (!all) {
        if (k->results[0].code != LB_OK) return lb_l_fail(L, k->results[0].code, k->results[0].err);
        push_resp(L, &k->results[0].resp);
        call_release(k);
        return 1;
    }
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lb_http_result *res = &k->results[i];
        if (res->code == LB_OK) {
            push_resp(L, &res->resp);
        } else {
            lua_createtable(L, 0, 3);
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "ok");
            lua_pushstring(L, res->err);
            lua_setfield(L, -2, "err");
            lua_pushstring(L, lb_err_name(res->code));
            lua_setfield(L, -2, "code");
        }
        lua_rawseti(L, -2, (int)i + 1);
        lb_http_response_free(&res->resp);
    }
    call_release(k);
    return 1;
}

/* ---- client ------------------------------------------------------------- */

static lb_l_client *check_client(lua_State *L) {
    lb_l_client *cl = luaL_checkudata(L, 1, CLIENT_MT);
    if (!cl->c) luaL_error(L, "attempt to use a closed http client");
    return cl;
}

/* Client option: an integer in 1..100000, or nil. */
static int copt_int(lua_State *L, int t, const char *field, int *out) {
    lb_l_opts o = { t, t, NULL, 0, 0 };
    double d;
    if (!lb_l_opt_integer(L, &o, field, 1, 100000, "positive integer", &d)) return 0;
    *out = (int)d;
    return 1;
}

/* Push a new client; on failure push nil, msg, code and return 3, else 1. */
static int new_client(lua_State *L, int copts) {
    lb_http_client_opts o = { 0, 0 };
    char err[LB_ERR_LEN];
    lb_l_client *cl;
    int rc;
    if (copts && !lua_isnoneornil(L, copts)) {
        luaL_checktype(L, copts, LUA_TTABLE);
        copt_int(L, copts, "max_connections", &o.max_connections);
        copt_int(L, copts, "max_concurrency", &o.max_concurrency);
    }
    cl = lb_newuserdata(L, sizeof *cl);   /* closed until the core succeeds */
    cl->c = NULL;
    cl->busy = 0;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    if ((rc = lb_http_client_open(&o, &cl->c, err)) != LB_OK) {
        lua_pop(L, 1);
        return lb_l_fail(L, rc, err);
    }
    return 1;
}

static int h_client(lua_State *L) { return new_client(L, 1); }

static int h_request(lua_State *L) {
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if ((rc = new_client(L, 0)) != 1) return rc;
    rc = perform(L, lua_touserdata(L, 2), 1, 0, 1);
    /* The temporary client goes with its userdata: close it now rather
     * than at the next collection. */
    {
        lb_l_client *cl = lua_touserdata(L, 2);
        lb_http_client_free(cl->c);
        cl->c = NULL;
    }
    return rc;
}

static int c_request(lua_State *L) {
    lb_l_client *cl = check_client(L);
    return perform(L, cl, 2, 0, 2);
}

static int c_request_all(lua_State *L) {
    lb_l_client *cl = check_client(L);
    return perform(L, cl, 2, 1, 2);
}

static int c_close(lua_State *L) {
    lb_l_client *cl = luaL_checkudata(L, 1, CLIENT_MT);
    if (cl->busy) return luaL_error(L, "cannot close an http client while it runs a request");
    lb_http_client_free(cl->c);
    cl->c = NULL;
    return 0;
}

static int c_tostring(lua_State *L) {
    lb_l_client *cl = luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushfstring(L, "luabatch.http.client (%s)", cl->c ? "open" : "closed");
    return 1;
}

static const luaL_Reg funcs[] = {
    { "http_request", h_request },
    { "http_client", h_client },
    { NULL, NULL },
};

static const luaL_Reg methods[] = {
    { "request", c_request },
    { "request_all", c_request_all },
    { "close", c_close },
    { NULL, NULL },
};

static const luaL_Reg metamethods[] = {
    { "__gc", c_close },
    { "__close", c_close },
    { "__tostring", c_tostring },
    { NULL, NULL },
};

void lb_l_open_http(lua_State *L) {
    luaL_newmetatable(L, CLIENT_MT);
    lb_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    lb_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, CALL_MT);
    lua_pushcfunction(L, call_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lb_setfuncs(L, funcs, 0);
}
