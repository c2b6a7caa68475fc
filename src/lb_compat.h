/* lb_compat.h -- the only file that tests LUA_VERSION_NUM.
 * Targets: Lua 5.4 and LuaJIT 2.1 (which speaks the 5.1 API). */
#ifndef LB_COMPAT_H
#define LB_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 504
#define lb_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 0)
#define lb_setfuncs(L, l, nup) luaL_setfuncs((L), (l), (nup))
#define lb_rawlen(L, i) lua_rawlen((L), (i))
#define lb_newlib(L, l) luaL_newlib((L), (l))
#else /* LuaJIT 2.1 / Lua 5.1 API */
#define lb_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define lb_rawlen(L, i) lua_objlen((L), (i))
#define LUA_OK 0
/* luaL_setfuncs for 5.1: register l into the table at the top, with nup
 * upvalues found just below it. */
static inline void lb_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    for (; l->name; l++) {
        int i;
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define lb_newlib(L, l) (lua_newtable(L), lb_setfuncs((L), (l), 0))
/* LuaJIT 2.1 has it; PUC Lua 5.1 (what Debian's luarocks targets) not. */
#define luaL_setmetatable(L, tn) (luaL_getmetatable((L), (tn)), lua_setmetatable((L), -2))
#endif

#endif
