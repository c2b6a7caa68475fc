/* bind_http.c -- placeholder until the http binding lands. */
#include "bind.h"

void lb_l_open_http(lua_State *L) { (void)L; }
