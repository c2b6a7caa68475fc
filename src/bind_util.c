/* bind_util.c -- small utilities the Lua layer needs from C:
 * SHA-256 / HMAC-SHA256 / hex, a monotonic and a wall clock, an
 * interruptible sleep and the interrupt flag.
 * (Durable appends, directories, stat, getcwd: bind_fs.c -- core.append_file,
 * core.mkdir, core.listdir, core.stat, core.getcwd.) */
#include "bind.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lb_err.h"
#include "lb_intr.h"

static const char HEX[] = "0123456789abcdef";

static void push_hex(lua_State *L, const unsigned char *p, size_t n) {
    luaL_Buffer b;
    size_t i;
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        luaL_addchar(&b, HEX[p[i] >> 4]);
        luaL_addchar(&b, HEX[p[i] & 15]);
    }
    luaL_pushresult(&b);
}

/* sha256(s [, "hex"|"raw"]) -> digest (hex by default) */
static int u_sha256(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *fmt = luaL_optstring(L, 2, "hex");
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL))
        return luaL_error(L, "sha256: OpenSSL digest failed");
    if (strcmp(fmt, "raw") == 0) lua_pushlstring(L, (const char *)md, mdlen);
    else push_hex(L, md, mdlen);
    return 1;
}

/* md5(s [, "hex"|"raw"]) -> digest (hex by default); for Content-MD5 and
 * S3 ETags, never for security. */
static int u_md5(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *fmt = luaL_optstring(L, 2, "hex");
    unsigned char md[16];
    unsigned int mdlen = 0;
    if (!EVP_Digest(s, n, md, &mdlen, EVP_md5(), NULL))
        return luaL_error(L, "md5: OpenSSL digest failed");
    if (strcmp(fmt, "raw") == 0) lua_pushlstring(L, (const char *)md, mdlen);
    else push_hex(L, md, mdlen);
    return 1;
}

/* base64(s) -> standard base64 with padding, one line */
static int u_base64(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    size_t outlen = 4 * ((n + 2) / 3);
    /* scratch space owned by Lua, so an error cannot leak it */
    char *out = lb_newuserdata(L, outlen + 1);
    int k;
    luaL_argcheck(L, n <= 0x3fffffff, 1, "string too long");
    k = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    lua_pushlstring(L, out, (size_t)k);
    return 1;
}

/* hmac_sha256(key, msg [, "hex"|"raw"]) -> mac (raw by default) */
static int u_hmac_sha256(lua_State *L) {
    size_t kn, mn;
    const char *k = luaL_checklstring(L, 1, &kn);
    const char *m = luaL_checklstring(L, 2, &mn);
    const char *fmt = luaL_optstring(L, 3, "raw");
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha256(), k, (int)kn, (const unsigned char *)m, mn, md, &mdlen))
        return luaL_error(L, "hmac_sha256: OpenSSL HMAC failed");
    if (strcmp(fmt, "hex") == 0) push_hex(L, md, mdlen);
    else lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

/* hex(s) -> lowercase hex of the bytes of s */
static int u_hex(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    push_hex(L, (const unsigned char *)s, n);
    return 1;
}

/* random_bytes(n) -> n cryptographically random bytes */
static int u_random_bytes(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char buf[256];
    luaL_argcheck(L, n >= 0 && n <= (lua_Integer)sizeof buf, 1, "0..256 expected");
    if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "random_bytes: OpenSSL RAND failed");
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* now() -> wall-clock seconds since the epoch, with fractions */
static int u_now(lua_State *L) {
    lua_pushnumber(L, clock_seconds(CLOCK_REALTIME));
    return 1;
}

/* monotime() -> monotonic seconds (for durations and deadlines) */
static int u_monotime(lua_State *L) {
    lua_pushnumber(L, clock_seconds(CLOCK_MONOTONIC));
    return 1;
}

/* sleep(seconds) -> true | nil, "interrupted", "ECANCELED"
 * Sleeps in slices so SIGINT (lb_intr) ends it promptly. */
static int u_sleep(lua_State *L) {
    double left = luaL_checknumber(L, 1);
    while (left > 0) {
        double step = left < 0.05 ? left : 0.05;
        struct timespec ts;
        if (lb_intr_pending()) return lb_l_fail(L, LB_ECANCELED, "sleep: interrupted");
        ts.tv_sec = (time_t)step;
        ts.tv_nsec = (long)((step - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            if (lb_intr_pending()) return lb_l_fail(L, LB_ECANCELED, "sleep: interrupted");
        }
        left -= step;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int u_interrupted(lua_State *L) {
    lua_pushboolean(L, lb_intr_pending());
    return 1;
}

static int u_clear_interrupt(lua_State *L) {
    (void)L;
    lb_intr_clear();
    return 0;
}

/* raise_interrupt(): what SIGINT does; lets tests exercise cancellation. */
static int u_raise_interrupt(lua_State *L) {
    (void)L;
    lb_intr_raise();
    return 0;
}

static const luaL_Reg util_funcs[] = {
    {"sha256", u_sha256},
    {"hmac_sha256", u_hmac_sha256},
    {"hex", u_hex},
    {"md5", u_md5},
    {"base64", u_base64},
    {"random_bytes", u_random_bytes},
    {"now", u_now},
    {"monotime", u_monotime},
    {"sleep", u_sleep},
    {"interrupted", u_interrupted},
    {"clear_interrupt", u_clear_interrupt},
    {"raise_interrupt", u_raise_interrupt},
    {NULL, NULL},
};

void lb_l_open_util(lua_State *L) { lb_setfuncs(L, util_funcs, 0); }
