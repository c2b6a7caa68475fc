/* bind_sigv4.c -- placeholder until the sigv4 binding lands. */
#include "bind.h"

void lb_l_open_sigv4(lua_State *L) { (void)L; }
