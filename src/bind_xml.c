/* bind_xml.c -- placeholder until the xml binding lands. */
#include "bind.h"

void lb_l_open_xml(lua_State *L) { (void)L; }
