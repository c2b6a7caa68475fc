/* bind.h -- the Lua bindings of the core, one opener per concern.
 *
 * Each lb_l_open_<concern>(L) adds its functions (and creates its
 * metatables) to the module table on the top of the stack, leaving the
 * stack as it found it.  luaopen_luabatch_core (bind_core.c) calls them all.
 * Bindings translate and hold no policy (DESIGN rule 1). */
#ifndef LB_BIND_H
#define LB_BIND_H

#include <stddef.h>

#include "lb_compat.h"
#include "lb_err.h"

void lb_l_open_util(lua_State *L);    /* bind_util.c: hashes, hex, clock, interrupt */
void lb_l_open_sigv4(lua_State *L);   /* bind_sigv4.c */
void lb_l_open_http(lua_State *L);    /* bind_http.c */
void lb_l_open_yaml(lua_State *L);    /* bind_yaml.c */
void lb_l_open_xml(lua_State *L);     /* bind_xml.c */
void lb_l_open_s3(lua_State *L);      /* bind_s3.c: S3 transfers */
void lb_l_open_proc(lua_State *L);    /* bind_proc.c: child processes */
void lb_l_open_poll(lua_State *L);    /* bind_poll.c: Batch job poller mechanics */
void lb_l_open_fs(lua_State *L);      /* bind_fs.c: durable appends, directories, stat, getcwd */

/* ---- failures: the one pusher of `nil, msg, code` ----------------------- */

/* Push `nil, msg, code` (the expected-failure convention); returns 3. */
static inline int lb_pushfail(lua_State *L, const char *msg, const char *code) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushstring(L, code);
    return 3;
}

/* The same for a core failure: code is an LB_E*, pushed by name. */
static inline int lb_l_fail(lua_State *L, int code, const char *msg) {
    return lb_pushfail(L, msg, lb_err_name(code));
}

/* ---- reading an options table (bind_opt.c) -------------------------------
 * Each reader takes the field of the table o->t.  Misuse raises
 * "bad argument #<argn> to '<fn>' (<entry n, ><field 'f'|f>: <what>)":
 * with fn NULL, luaL_argerror names the function as the caller reached it;
 * with fn set, the name is fn (stable under pcall).  Values read are
 * popped, except strings and functions, which stay on the stack (the
 * caller anchors or keeps them; that keeps a string alive). */
typedef struct lb_l_opts {
    int t;                  /* absolute stack index of the table */
    int argn;               /* its argument number, for messages */
    const char *fn;         /* function named in messages, or NULL */
    int bare;               /* 1: "f: ..."; 0: "field 'f': ..." */
    int entry;              /* > 0: "entry n" first (one of a list of tables) */
} lb_l_opts;

#define LB_L_REQUIRED 1     /* lb_l_opt_string: nil is an error */
#define LB_L_NONUL 2        /* lb_l_opt_string: refuse an embedded NUL */
#define LB_L_INT_MAX 9223372036854774784.0  /* largest double below 2^63 */

/* Raise the misuse of field (NULL: of the table itself): msg as given. */
int lb_l_opt_error(lua_State *L, const lb_l_opts *o, const char *field, const char *msg);
/* Raise "<want> expected, got <type of the value at idx>". */
int lb_l_opt_typeerror(lua_State *L, const lb_l_opts *o, const char *field, const char *want,
                       int idx);
/* String field, left on the stack (*len set if len), or NULL with nothing
 * pushed when nil.  flags: LB_L_REQUIRED, LB_L_NONUL. */
const char *lb_l_opt_string(lua_State *L, const lb_l_opts *o, const char *field, int flags,
                            size_t *len);
/* Number field: 1 and *out when present, 0 (*out untouched) when nil. */
int lb_l_opt_number(lua_State *L, const lb_l_opts *o, const char *field, double *out);
/* Integer field in [lo, hi], as lb_l_opt_number; anything else raises
 * "<want> expected, got <type or value>" (want: "non-negative integer"). */
int lb_l_opt_integer(lua_State *L, const lb_l_opts *o, const char *field, double lo, double hi,
                     const char *want, double *out);
/* Boolean field, def when nil. */
int lb_l_opt_bool(lua_State *L, const lb_l_opts *o, const char *field, int def);
/* Function field: 1 with it left on the stack, or 0 with nothing pushed. */
int lb_l_opt_function(lua_State *L, const lb_l_opts *o, const char *field);

#endif
