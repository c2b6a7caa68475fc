/* fuzz_lua.c -- libFuzzer target for the Lua languages, through an
 * embedded Lua 5.4 state: FUZZ_LUA_TARGET ("template", "expr", "json",
 * "workflow") picks the function of tests/fuzz/driver.lua the input goes
 * to.  Every module under lua/ and luabatch.core (instrumented, built with
 * the harness) are preloaded from the binary (as in main.c), so the target
 * runs from any directory.  A raised Lua error is a finding
 * (printed with its traceback, then abort()).
 *
 * Coverage: libFuzzer cannot see inside the (uninstrumented) Lua VM, so a
 * line hook maps each (previous line, line) pair of Lua source to one of
 * the counters in the __libfuzzer_extra_counters section, which libFuzzer
 * reads as it reads its own edge counters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef FUZZ_LUA_TARGET
#error "define FUZZ_LUA_TARGET"
#endif

extern const struct lb_embedded { const char *name, *chunkname, *src; size_t len; } lb_embedded[];
extern const char fuzz_driver_src[];
extern const size_t fuzz_driver_len;
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);
int luaopen_luabatch_core(lua_State *L);

#define NCOV (1u << 16)
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_cov[NCOV];
static uintptr_t prev_loc;

static void line_hook(lua_State *L, lua_Debug *ar) {
    uintptr_t loc;
    lua_getinfo(L, "S", ar);
    loc = ((uintptr_t)ar->source >> 4) * 0x9E3779B1u ^ (uintptr_t)ar->currentline * 0x85EBCA6Bu;
    lua_cov[(loc ^ prev_loc) % NCOV]++;
    prev_loc = loc >> 1;
}

static int load_embedded(lua_State *L) {
    const struct lb_embedded *m = lua_touserdata(L, lua_upvalueindex(1));
    if (luaL_loadbuffer(L, m->src, m->len, m->chunkname) != LUA_OK) return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

static int traceback(lua_State *L) {
    luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
    return 1;
}

static lua_State *L;

static void fail(const char *what) {
    fprintf(stderr, "fuzz_lua %s: %s\n", what, lua_tostring(L, -1));
    abort();
}

/* One state for the whole run: the modules load once; the target
 * function sits at stack index 2 (traceback handler at 1). */
static void setup(void) {
    const struct lb_embedded *m;
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, luaopen_cjson_safe);
    lua_setfield(L, -2, "cjson.safe");
    lua_pushcfunction(L, luaopen_luabatch_core);
    lua_setfield(L, -2, "luabatch.core");
    for (m = lb_embedded; m->name; m++) {
        lua_pushlightuserdata(L, (void *)m);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, traceback);
    if (luaL_loadbuffer(L, fuzz_driver_src, fuzz_driver_len, "@tests/fuzz/driver.lua") != LUA_OK)
        fail("load driver");
    if (lua_pcall(L, 0, 1, 1) != LUA_OK) fail("run driver");
    lua_pushliteral(L, FUZZ_LUA_TARGET);
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) fail("driver(" FUZZ_LUA_TARGET ")");
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!L) setup();
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    lua_pushlstring(L, (const char *)data, size);
    prev_loc = 0;
    if (lua_pcall(L, 1, 0, 1) != LUA_OK) fail(FUZZ_LUA_TARGET);
    return 0;
}
