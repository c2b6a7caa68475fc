/* bind_s3.c -- Lua binding of the S3 transfers (lb_s3.h).
 *
 *   core.s3_upload(opts)   -> res | nil, msg, code
 *   core.s3_download(opts) -> res | nil, msg, code
 *
 * common opts: endpoint = "http://127.0.0.1:7480", bucket =, key = (raw
 *   UTF-8), region = "us-east-1", access_key =, secret_key =,
 *   session_token =, path_style = true (false: virtual host), part_size =,
 *   concurrency (default adaptive: 8..32), max_attempts = 5, on_progress = function(done, total)
 *   (total nil when unknown; return false to cancel), verify = true,
 *   ca_bundle = path (default $AWS_CA_BUNDLE; false = none),
 *   connect_timeout =, read_timeout = (seconds), time_offset = seconds added
 *   to this machine's clock when signing (the measured clock skew)
 * upload: file = path | reader = function() -> chunk, or "" / nil at the
 *   end; content_type =, metadata = { name = value }, multipart_threshold =,
 *   unsigned_payload = false
 *   res = { bytes, etag, parts, checksum (multipart: the lb-crc32c tag),
 *           upload_id (multipart), concurrency, note (the tag not stored) }
 * download: file = destination, checksum = true, fsync = false
 *   res = { bytes, etag, verified = "crc32c"|"sha256"|"md5"|"length",
 *           parts (ranges), concurrency, note (why less was checked) }
 * core.s3_batch(opts, items) -> { entry, ... } (items' order) | nil, msg, code
 *   many objects at once (lb_s3_batch): opts as above plus direction =
 *   "upload" | "download", workers = 1..64 (objects in flight), key = any
 *   (each item's replaces it), on_progress = function(bytes, finished, n)
 *   (false stops); items = { { file =, key =, size = }, ... }; entry = res,
 *   or { ok = false, err = msg, code = code }.  nil, msg, code only when the
 *   batch could not start or was stopped (then no entry is returned).
 * Failure codes: the S3 code ("NoSuchKey", "SignatureDoesNotMatch", ...) or
 * "HTTP_<status>", else ECONNECT, ETIMEDOUT, ETLS, ECANCELED, EINTEGRITY,
 * EIO, EINVAL, ENOMEM, EPARSE.
 *
 * The callbacks run under lua_pcall through a trampoline pushed before the
 * transfer starts (so nothing raises through the C core); an error they
 * raise cancels the transfer (with its cleanup) and is raised again once
 * the core has returned. */
#include "bind.h"

#include <stdlib.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_err.h"
#include "lb_s3.h"

enum { K_PROGRESS, K_READ, K_BATCH };

typedef struct l_call {
    lua_State *L;
    int progress, reader;           /* stack slots of the functions, 0 = none */
    int tramp, errslot;
    int failed;
    int kind;
    int64_t done, total;            /* K_PROGRESS; K_BATCH: bytes, finished ... */
    size_t nobj;                    /* ... of nobj */
    int stop;
    char *out;                      /* K_READ: destination ... */
    size_t cap;
    long got;                       /* ... and bytes put there */
    lb_buf pending;                 /* reader output beyond cap */
    size_t pending_off;
} l_call;

/* Runs protected: (l_call, function). */
static int trampoline(lua_State *L) {
    l_call *k = lua_touserdata(L, 1);
    size_t len;
    const char *s;
    if (k->kind == K_BATCH) {
        lua_pushvalue(L, 2);
        lua_pushnumber(L, (lua_Number)k->done);
        lua_pushnumber(L, (lua_Number)k->total);
        lua_pushnumber(L, (lua_Number)k->nobj);
        lua_call(L, 3, 1);
        k->stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
        return 0;
    }
    if (k->kind == K_PROGRESS) {
        lua_pushvalue(L, 2);
        lua_pushnumber(L, (lua_Number)k->done);
        if (k->total >= 0) lua_pushnumber(L, (lua_Number)k->total);
        else lua_pushnil(L);
        lua_call(L, 2, 1);
        k->stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
        return 0;
    }
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) { k->got = 0; return 0; }
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "reader must return a string or nil, got %s", luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    k->got = (long)(len < k->cap ? len : k->cap);
    memcpy(k->out, s, (size_t)k->got);
    if ((size_t)k->got < len && lb_buf_append(&k->pending, s + k->got, len - (size_t)k->got) != LB_OK)
        return luaL_error(L, "not enough memory");
    return 0;
}

/* Run the trampoline: LB_OK, LB_ECANCELED or LB_ECALLBACK (error parked). */
static int invoke(l_call *k, int kind) {
    lua_State *L = k->L;
    if (k->failed) return LB_ECALLBACK;
    k->kind = kind;
    k->stop = 0;
    lua_pushvalue(L, k->tramp);
    lua_pushlightuserdata(L, k);
    lua_pushvalue(L, kind == K_READ ? k->reader : k->progress);   /* slots of the caller */
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        lua_replace(L, k->errslot);
        k->failed = 1;
        return LB_ECALLBACK;
    }
    return k->stop ? LB_ECANCELED : LB_OK;
}

static int c_progress(void *ud, int64_t done, int64_t total) {
    l_call *k = ud;
    k->done = done;
    k->total = total;
    return invoke(k, K_PROGRESS);
}

static int c_batch_progress(void *ud, int64_t bytes, size_t finished, size_t n) {
    l_call *k = ud;
    k->done = bytes;
    k->total = (int64_t)finished;
    k->nobj = n;
    return invoke(k, K_BATCH);
}

static long c_read(void *ud, char *buf, size_t cap) {
    l_call *k = ud;
    int rc;
    if (k->pending_off < k->pending.len) {
        size_t n = k->pending.len - k->pending_off;
        if (n > cap) n = cap;
        memcpy(buf, k->pending.data + k->pending_off, n);
        k->pending_off += n;
        if (k->pending_off == k->pending.len) { lb_buf_reset(&k->pending); k->pending_off = 0; }
        return (long)n;
    }
    k->out = buf;
    k->cap = cap;
    k->got = 0;
    rc = invoke(k, K_READ);
    return rc == LB_OK ? k->got : -rc;
}

/* ---- options ------------------------------------------------------------ */

static int field_error(lua_State *L, const char *field, const char *expected) {
    return luaL_argerror(L, 1, lua_pushfstring(L, "field '%s': %s expected, got %s", field,
                                               expected, luaL_typename(L, -1)));
}

/* String field (left on the stack to stay alive), or NULL when nil. */
static const char *opt_string(lua_State *L, const char *field, int required) {
    lua_getfield(L, 1, field);
    if (lua_isnil(L, -1) && !required) return NULL;
    if (lua_type(L, -1) != LUA_TSTRING) field_error(L, field, "string");
    return lua_tostring(L, -1);
}

static int opt_number(lua_State *L, const char *field, double *out, int integer) {
    lua_getfield(L, 1, field);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
    if (lua_type(L, -1) != LUA_TNUMBER) field_error(L, field, integer ? "integer" : "number");
    *out = lua_tonumber(L, -1);
    /* range first: casting a double at or above 2^63 (or NaN) is undefined */
    if (integer && !(*out >= 0 && *out < 0x1p63 && *out == (double)(int64_t)*out))
        field_error(L, field, "non-negative integer below 2^63");
    lua_pop(L, 1);
    return 1;
}

/* Boolean field: def when nil. */
static int opt_bool(lua_State *L, const char *field, int def) {
    int v = def;
    lua_getfield(L, 1, field);
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) field_error(L, field, "boolean");
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* Function field: its stack slot (left there), or 0. */
static int opt_function(lua_State *L, const char *field) {
    lua_getfield(L, 1, field);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
    if (lua_type(L, -1) != LUA_TFUNCTION) field_error(L, field, "function");
    return lua_gettop(L);
}

static void read_common(lua_State *L, lb_s3_opts *o, l_call *k) {
    double d;
    const char *ca;
    luaL_checkstack(L, 40, "s3 options");
    o->endpoint = opt_string(L, "endpoint", 1);
    o->bucket = opt_string(L, "bucket", 1);
    o->key = opt_string(L, "key", 1);
    o->region = opt_string(L, "region", 0);
    o->access_key = opt_string(L, "access_key", 1);
    o->secret_key = opt_string(L, "secret_key", 1);
    o->session_token = opt_string(L, "session_token", 0);
    o->virtual_host = !opt_bool(L, "path_style", 1);
    if (opt_number(L, "part_size", &d, 1)) o->part_size = (int64_t)d;
    if (opt_number(L, "concurrency", &d, 1)) {
        if (d < 1 || d > 64) luaL_argerror(L, 1, "field 'concurrency': 1..64 expected");
        o->concurrency = (int)d;
    }
    if (opt_number(L, "max_attempts", &d, 1)) {
        if (d < 1 || d > 100) luaL_argerror(L, 1, "field 'max_attempts': 1..100 expected");
        o->max_attempts = (int)d;
    }
    if (opt_number(L, "connect_timeout", &d, 0)) o->connect_timeout = d;
    if (opt_number(L, "read_timeout", &d, 0)) o->read_timeout = d > 0 ? d : -1;
    if (opt_number(L, "time_offset", &d, 0)) {
        if (!(d >= -31622400.0 && d <= 31622400.0))        /* NaN too: a year at most */
            luaL_argerror(L, 1, "field 'time_offset': seconds within a year expected");
        o->time_offset = (int64_t)d;
    }
    o->verify_off = !opt_bool(L, "verify", 1);
    lua_getfield(L, 1, "ca_bundle");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        lua_pop(L, 1);
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        ca = getenv("AWS_CA_BUNDLE");
        if (ca && *ca) o->ca_bundle = ca;
    } else {
        lua_pop(L, 1);
        o->ca_bundle = opt_string(L, "ca_bundle", 0);
    }
    if ((k->progress = opt_function(L, "on_progress"))) {
        o->on_progress = c_progress;
        o->progress_ud = k;
    }
}

/* Push the trampoline and the error slot; set up k. */
static void prepare(lua_State *L, l_call *k) {
    k->L = L;
    lua_pushnil(L);
    k->errslot = lua_gettop(L);
    lua_pushcfunction(L, trampoline);
    k->tramp = lua_gettop(L);
    luaL_checkstack(L, 8, "s3 transfer");
}

static void push_result(lua_State *L, const lb_s3_result *res);

/* The code of a failed transfer: S3's own error code (NoSuchKey, ...) for
 * LB_ESERVICE when the server sent one, else the core's code name. */
static const char *fail_code(int rc, const lb_s3_result *res) {
    return rc == LB_ESERVICE && res->code[0] ? res->code : lb_err_name(rc);
}

/* After the core returned: raise a parked error, or push the outcome. */
static int outcome(lua_State *L, l_call *k, int rc, lb_s3_result *res, const char *err) {
    lb_buf_free(&k->pending);
    if (k->failed) {
        lb_s3_result_free(res);
        lua_pushvalue(L, k->errslot);
        return lua_error(L);
    }
    if (rc != LB_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        lua_pushstring(L, fail_code(rc, res));
        lb_s3_result_free(res);
        return 3;
    }
    push_result(L, res);
    lb_s3_result_free(res);
    return 1;
}

/* The result table of a transfer that succeeded. */
static void push_result(lua_State *L, const lb_s3_result *res) {
    lua_createtable(L, 0, 7);
    lua_pushnumber(L, (lua_Number)res->bytes);
    lua_setfield(L, -2, "bytes");
    if (res->etag) {
        lua_pushstring(L, res->etag);
        lua_setfield(L, -2, "etag");
    }
    lua_pushinteger(L, res->parts);
    lua_setfield(L, -2, "parts");
    if (res->checksum) {
        lua_pushstring(L, res->checksum);
        lua_setfield(L, -2, "checksum");
    }
    if (res->upload_id) {
        lua_pushstring(L, res->upload_id);
        lua_setfield(L, -2, "upload_id");
    }
    if (res->concurrency) {
        lua_pushinteger(L, res->concurrency);
        lua_setfield(L, -2, "concurrency");
    }
    if (res->verified) {
        lua_pushstring(L, res->verified);
        lua_setfield(L, -2, "verified");
    }
    if (res->note[0]) {
        lua_pushstring(L, res->note);
        lua_setfield(L, -2, "note");
    }
}

static void read_upload(lua_State *L, lb_s3_opts *o);

static int l_upload(lua_State *L) {
    lb_s3_opts o;
    lb_s3_result res;
    l_call k;
    char err[LB_ERR_LEN];
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&o, 0, sizeof o);
    memset(&k, 0, sizeof k);
    read_common(L, &o, &k);
    o.file = opt_string(L, "file", 0);
    if ((k.reader = opt_function(L, "reader"))) {
        o.reader = c_read;
        o.reader_ud = &k;
    }
    if (!o.file == !o.reader) luaL_argerror(L, 1, "exactly one of 'file' and 'reader' expected");
    read_upload(L, &o);
    prepare(L, &k);
    rc = lb_s3_upload(&o, &res, err);
    return outcome(L, &k, rc, &res, err);
}

/* The upload options of the table at 1 (metadata stays on the stack). */
static void read_upload(lua_State *L, lb_s3_opts *o) {
    lb_s3_meta *meta = NULL;
    double d;
    o->content_type = opt_string(L, "content_type", 0);
    if (opt_number(L, "multipart_threshold", &d, 1)) o->multipart_threshold = (int64_t)d;
    o->unsigned_payload = opt_bool(L, "unsigned_payload", 0);
    lua_getfield(L, 1, "metadata");
    if (!lua_isnil(L, -1)) {
        int t = lua_gettop(L);
        size_t n = 0, i = 0;
        if (!lua_istable(L, t)) field_error(L, "metadata", "table");
        lua_pushnil(L);
        while (lua_next(L, t)) { n++; lua_pop(L, 1); }
        meta = lb_newuserdata(L, (n ? n : 1) * sizeof *meta);   /* stays on the stack */
        lua_pushnil(L);
        while (lua_next(L, t) && i < n) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 1, "field 'metadata': string names and values expected");
            meta[i].value = lua_tostring(L, -1);    /* alive: the table holds it */
            lua_pop(L, 1);
            meta[i].name = lua_tostring(L, -1);
            i++;
        }
        o->metadata = meta;
        o->nmetadata = i;
    }
}

static int l_download(lua_State *L) {
    lb_s3_opts o;
    lb_s3_result res;
    l_call k;
    char err[LB_ERR_LEN];
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&o, 0, sizeof o);
    memset(&k, 0, sizeof k);
    read_common(L, &o, &k);
    o.file = opt_string(L, "file", 1);
    o.no_checksum = !opt_bool(L, "checksum", 1);
    o.fsync = opt_bool(L, "fsync", 0);
    prepare(L, &k);
    rc = lb_s3_download(&o, &res, err);
    return outcome(L, &k, rc, &res, err);
}

static int l_batch(lua_State *L) {
    lb_s3_opts o;
    l_call k;
    lb_s3_job *jobs;
    const char *dir;
    char err[LB_ERR_LEN];
    double d;
    size_t n, i;
    int download, rc, workers = 8;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    memset(&o, 0, sizeof o);
    memset(&k, 0, sizeof k);
    read_common(L, &o, &k);
    o.on_progress = NULL;           /* the batch's own: (bytes, finished, n) */
    o.progress_ud = NULL;
    dir = opt_string(L, "direction", 1);
    download = strcmp(dir, "download") == 0;
    if (!download && strcmp(dir, "upload") != 0) field_error(L, "direction", "'upload' or 'download'");
    if (opt_number(L, "workers", &d, 1)) {
        if (d < 1 || d > 64) luaL_argerror(L, 1, "field 'workers': 1..64 expected");
        workers = (int)d;
    }
    if (download) {
        o.no_checksum = !opt_bool(L, "checksum", 1);
        o.fsync = opt_bool(L, "fsync", 0);
    } else {
        read_upload(L, &o);
    }
    n = (size_t)lb_rawlen(L, 2);
    jobs = lb_newuserdata(L, (n ? n : 1) * sizeof *jobs);   /* stays on the stack */
    memset(jobs, 0, (n ? n : 1) * sizeof *jobs);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        if (!lua_istable(L, -1)) luaL_argerror(L, 2, "tables { file =, key = } expected");
        lua_getfield(L, -1, "file");
        lua_getfield(L, -2, "key");
        lua_getfield(L, -3, "size");
        if (lua_type(L, -3) != LUA_TSTRING || lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, 2, "fields 'file' and 'key' (strings) expected");
        jobs[i].file = lua_tostring(L, -3);     /* alive: the item holds them */
        jobs[i].key = lua_tostring(L, -2);
        jobs[i].size = lua_isnumber(L, -1) ? (int64_t)lua_tonumber(L, -1) : -1;
        lua_pop(L, 4);
    }
    prepare(L, &k);
    rc = lb_s3_batch(&o, download, jobs, n, workers, k.progress ? c_batch_progress : NULL, &k, err);
    if (k.failed || rc != LB_OK) {
        for (i = 0; i < n; i++) lb_s3_result_free(&jobs[i].res);
        return outcome(L, &k, rc == LB_OK ? LB_ECALLBACK : rc, &jobs[0].res, err);
    }
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        if (jobs[i].rc == LB_OK) {
            push_result(L, &jobs[i].res);
        } else {
            lua_createtable(L, 0, 3);
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "ok");
            lua_pushstring(L, jobs[i].err);
            lua_setfield(L, -2, "err");
            lua_pushstring(L, fail_code(jobs[i].rc, &jobs[i].res));
            lua_setfield(L, -2, "code");
        }
        lb_s3_result_free(&jobs[i].res);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static const luaL_Reg funcs[] = {
    { "s3_batch", l_batch },
    { "s3_upload", l_upload },
    { "s3_download", l_download },
    { NULL, NULL },
};

void lb_l_open_s3(lua_State *L) {
    lb_setfuncs(L, funcs, 0);
}
