/* bind_yaml.c -- placeholder until the yaml binding lands. */
#include "bind.h"

void lb_l_open_yaml(lua_State *L) { (void)L; }
