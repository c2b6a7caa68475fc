/* bind_core.c -- luaopen_luabatch_core: the C module `luabatch.core`.
 * The only exported symbol of the shared object. */
#include "bind.h"

__attribute__((visibility("default"))) int luaopen_luabatch_core(lua_State *L) {
    /* libcurl is loaded (and initialised) by the first HTTP client, not
     * here: see lb_curl.h. */
    lua_newtable(L);
    lb_l_open_util(L);
    lb_l_open_sigv4(L);
    lb_l_open_http(L);
    lb_l_open_yaml(L);
    lb_l_open_xml(L);
    lb_l_open_s3(L);
    lb_l_open_proc(L);
    lb_l_open_poll(L);
    lb_l_open_fs(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
