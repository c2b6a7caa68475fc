/* bind.h -- the Lua bindings of the core, one opener per concern.
 *
 * Each lb_l_open_<concern>(L) adds its functions (and creates its
 * metatables) to the module table on the top of the stack, leaving the
 * stack as it found it.  luaopen_luabatch_core (bind_core.c) calls them all.
 * Bindings translate and hold no policy (DESIGN rule 1). */
#ifndef LB_BIND_H
#define LB_BIND_H

#include "lb_compat.h"

void lb_l_open_util(lua_State *L);    /* bind_util.c: hashes, hex, clock, interrupt */
void lb_l_open_sigv4(lua_State *L);   /* bind_sigv4.c */
void lb_l_open_http(lua_State *L);    /* bind_http.c */
void lb_l_open_yaml(lua_State *L);    /* bind_yaml.c */
void lb_l_open_xml(lua_State *L);     /* bind_xml.c */
void lb_l_open_s3(lua_State *L);      /* bind_s3.c: S3 transfers */
void lb_l_open_proc(lua_State *L);    /* bind_proc.c: child processes */
void lb_l_open_poll(lua_State *L);    /* bind_poll.c: Batch job poller mechanics */
void lb_l_open_fs(lua_State *L);      /* bind_fs.c: durable appends, directories, stat, getcwd */

/* Push `nil, "<msg>", "<LB code name>"` for a core failure; returns 3. */
int lb_l_fail(lua_State *L, int code, const char *msg);

#endif
