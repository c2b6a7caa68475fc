/* bind_proc.c -- child processes for Lua (lb_proc.h).
 *
 *   core.proc_spawn{argv = {...}, env = {K = "v"} | {"K=v", ...} | nil (inherit),
 *                   env_add = {K = "v"} (merged over env or the inherited one),
 *                   cwd = dir, stdin = bytes,
 *                   max_output = 8 MiB (the last bytes of each stream kept)}
 *                   -> proc | nil, msg, code
 *   core.proc_wait({proc, ...}, timeout) -> {done procs...} (empty on timeout)
 *                                         | nil, msg, "ECANCELED" (SIGINT)
 *   proc:poll() -> result | false      non-blocking progress
 *   proc:result() -> result | nil      once done
 *   proc:kill([sig = 15 | "TERM"|"KILL"|"INT"|"HUP"|"QUIT"|"USR1"|"USR2"]) -> true
 *   proc:terminate([grace = 5]) -> true   SIGTERM now, SIGKILL after grace s
 *   proc:output(fd [, from = 0]) -> bytes, total, dropped   what fd 1 (stdout)
 *                                    or 2 (stderr) captured from stream byte
 *                                    `from` on, so far (live output of a running
 *                                    child); bytes dropped before that are skipped
 *   proc:pid(), proc:done(), proc:close()
 *   result = {exit = n | nil, signal = n | nil, stdout = s, stderr = s, pid = n,
 *             stdout_dropped = n, stderr_dropped = n (only when bytes were dropped)} */
#include "bind.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lb_err.h"
#include "lb_proc.h"

#define PROC_MT "luabatch.proc"

typedef struct {
    lb_proc *p;
} proc_box;

static proc_box *check_box(lua_State *L, int idx) {
    proc_box *b = luaL_checkudata(L, idx, PROC_MT);
    if (!b->p) luaL_error(L, "attempt to use a closed process");
    return b;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect t's strings into a NULL-terminated char* array living in a
 * userdata pushed on the stack (the strings are anchored in a table pushed
 * just below it).  Lists are taken in order, maps as "K=V" sorted by key. */
static char **push_strv(lua_State *L, int t, const char *what, int is_env) {
    size_t n = 0, i, k;
    char **v;
    int anchor;
    lua_newtable(L);
    anchor = lua_gettop(L);
    if (is_env && lb_rawlen(L, t) == 0) {
        /* map form: "K=V", sorted below for a deterministic environment */
        lua_pushnil(L);
        while (lua_next(L, t)) {
            if (lua_type(L, -2) != LUA_TSTRING ||
                !(lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER))
                luaL_error(L, "bad argument #1 to 'proc_spawn' (%s: keys and values must be strings)", what);
            lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
            lua_rawseti(L, anchor, (int)++n);
            lua_pop(L, 1);
        }
    } else {
        n = lb_rawlen(L, t);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, t, (int)i);
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "bad argument #1 to 'proc_spawn' (%s[%d] must be a string)", what, (int)i);
            lua_tostring(L, -1);
            lua_rawseti(L, anchor, (int)i);
        }
    }
    v = lb_newuserdata(L, (n + 1) * sizeof *v);
    for (k = 0; k < n; k++) {
        lua_rawgeti(L, anchor, (int)(k + 1));
        v[k] = (char *)lua_tostring(L, -1);   /* anchored in the table */
        if (strlen(v[k]) != lb_rawlen(L, -1))
            luaL_error(L, "bad argument #1 to 'proc_spawn' (%s: embedded NUL)", what);
        lua_pop(L, 1);
    }
    v[n] = NULL;
    if (is_env) qsort(v, n, sizeof *v, cmp_str);
    return v;
}

static int p_spawn(lua_State *L) {
    const lb_l_opts opts = { 1, 1, NULL, 0, 0 };
    lb_proc_opts o;
    proc_box *b;
    char err[LB_ERR_LEN];
    int rc;
    memset(&o, 0, sizeof o);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "argv");
    luaL_argcheck(L, lua_istable(L, -1) && lb_rawlen(L, -1) > 0, 1, "argv must be a non-empty list");
    o.argv = push_strv(L, lua_gettop(L), "argv", 0);
    lua_getfield(L, 1, "env");
    if (!lua_isnil(L, -1)) {
        luaL_argcheck(L, lua_istable(L, -1), 1, "env must be a table");
        o.envp = push_strv(L, lua_gettop(L), "env", 1);
    }
    lua_getfield(L, 1, "env_add");
    if (!lua_isnil(L, -1)) {
        luaL_argcheck(L, lua_istable(L, -1), 1, "env_add must be a table");
        o.env_add = push_strv(L, lua_gettop(L), "env_add", 1);
    }
    o.cwd = lb_l_opt_string(L, &opts, "cwd", 0, NULL);           /* kept on the stack */
    o.stdin_data = lb_l_opt_string(L, &opts, "stdin", 0, &o.stdin_len);
    lua_getfield(L, 1, "max_output");
    if (!lua_isnil(L, -1)) {
        luaL_argcheck(L, lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 1, 1,
                      "max_output must be a byte count >= 1");
        o.max_output = (size_t)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    b = lb_newuserdata(L, sizeof *b);   /* closed until the spawn succeeds */
    b->p = NULL;
    luaL_setmetatable(L, PROC_MT);
    rc = lb_proc_spawn(&o, &b->p, err);
    if (rc != LB_OK) return lb_l_fail(L, rc, err);
    return 1;
}

static void push_result(lua_State *L, lb_proc *p) {
    const lb_buf *o = lb_proc_output(p, 1), *e = lb_proc_output(p, 2);
    int sig = lb_proc_term_signal(p);
    lua_createtable(L, 0, 5);
    if (sig) {
        lua_pushinteger(L, sig);
        lua_setfield(L, -2, "signal");
    } else {
        lua_pushinteger(L, lb_proc_exit_code(p));
        lua_setfield(L, -2, "exit");
    }
    lua_pushlstring(L, o->data ? o->data : "", o->len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, e->data ? e->data : "", e->len);
    lua_setfield(L, -2, "stderr");
    if (lb_proc_dropped(p, 1)) {
        lua_pushinteger(L, (lua_Integer)lb_proc_dropped(p, 1));
        lua_setfield(L, -2, "stdout_dropped");
    }
    if (lb_proc_dropped(p, 2)) {
        lua_pushinteger(L, (lua_Integer)lb_proc_dropped(p, 2));
        lua_setfield(L, -2, "stderr_dropped");
    }
    lua_pushinteger(L, lb_proc_pid(p));
    lua_setfield(L, -2, "pid");
}

static int p_poll(lua_State *L) {
    proc_box *b = check_box(L, 1);
    char err[LB_ERR_LEN];
    int rc = lb_proc_step(b->p, err);
    if (rc != LB_OK) return lb_l_fail(L, rc, err);
    if (!lb_proc_done(b->p)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    push_result(L, b->p);
    return 1;
}

static int p_result(lua_State *L) {
    proc_box *b = check_box(L, 1);
    if (!lb_proc_done(b->p)) {
        lua_pushnil(L);
        return 1;
    }
    push_result(L, b->p);
    return 1;
}

static int sig_number(lua_State *L, int idx) {
    static const struct { const char *name; int sig; } names[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
        {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {NULL, 0}};
    int i;
    if (lua_isnoneornil(L, idx)) return SIGTERM;
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)luaL_checkinteger(L, idx);
    {
        const char *s = luaL_checkstring(L, idx);
        if (strncmp(s, "SIG", 3) == 0) s += 3;
        for (i = 0; names[i].name; i++)
            if (strcmp(s, names[i].name) == 0) return names[i].sig;
    }
    return luaL_argerror(L, idx, "unknown signal name");
}

static int p_kill(lua_State *L) {
    proc_box *b = check_box(L, 1);
    char err[LB_ERR_LEN];
    int rc = lb_proc_kill(b->p, sig_number(L, 2), err);
    if (rc != LB_OK) return luaL_argerror(L, 2, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int p_terminate(lua_State *L) {
    proc_box *b = check_box(L, 1);
    lb_proc_terminate(b->p, luaL_optnumber(L, 2, 5.0));
    lua_pushboolean(L, 1);
    return 1;
}

static int p_output(lua_State *L) {
    proc_box *b = check_box(L, 1);
    lua_Integer fd = luaL_checkinteger(L, 2);
    lua_Integer from = luaL_optinteger(L, 3, 0);
    const lb_buf *o;
    size_t drop, at;
    luaL_argcheck(L, fd == 1 || fd == 2, 2, "1 (stdout) or 2 (stderr) expected");
    luaL_argcheck(L, from >= 0, 3, "offset must be >= 0");
    o = lb_proc_output(b->p, (int)fd);
    drop = lb_proc_dropped(b->p, (int)fd);   /* offsets count from the stream's start */
    at = (size_t)from > drop ? (size_t)from - drop : 0;
    if (at < o->len) lua_pushlstring(L, o->data + at, o->len - at);
    else lua_pushliteral(L, "");
    lua_pushinteger(L, (lua_Integer)(drop + o->len));
    lua_pushinteger(L, (lua_Integer)drop);
    return 3;
}

static int p_pid(lua_State *L) {
    lua_pushinteger(L, lb_proc_pid(check_box(L, 1)->p));
    return 1;
}

static int p_done(lua_State *L) {
    lua_pushboolean(L, lb_proc_done(check_box(L, 1)->p));
    return 1;
}

static int p_close(lua_State *L) {
    proc_box *b = luaL_checkudata(L, 1, PROC_MT);
    lb_proc *p = b->p;
    b->p = NULL;
    lb_proc_free(p);
    return 0;
}

static int p_tostring(lua_State *L) {
    proc_box *b = luaL_checkudata(L, 1, PROC_MT);
    if (b->p) lua_pushfstring(L, "proc (pid %d)", lb_proc_pid(b->p));
    else lua_pushliteral(L, "proc (closed)");
    return 1;
}

/* proc_wait(procs, timeout) */
static int p_wait(lua_State *L) {
    size_t n, i, k = 0;
    lb_proc **set;
    double timeout;
    char err[LB_ERR_LEN];
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    timeout = lua_isnoneornil(L, 2) ? -1.0 : luaL_checknumber(L, 2);
    n = lb_rawlen(L, 1);
    set = lb_newuserdata(L, (n ? n : 1) * sizeof *set);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)(i + 1));
        set[i] = check_box(L, -1)->p;
        lua_pop(L, 1);
    }
    if (n == 0 && timeout < 0) return luaL_argerror(L, 1, "nothing to wait for without a timeout");
    rc = lb_proc_wait(set, n, timeout, err);
    if (rc == LB_ECANCELED || (rc != LB_OK && rc != LB_ETIMEDOUT)) return lb_l_fail(L, rc, err);
    lua_newtable(L);
    for (i = 0; i < n; i++) {
        if (!lb_proc_done(set[i])) continue;
        lua_rawgeti(L, 1, (int)(i + 1));
        lua_rawseti(L, -2, (int)++k);
    }
    return 1;
}

static const luaL_Reg proc_funcs[] = {
    {"proc_spawn", p_spawn},
    {"proc_wait", p_wait},
    {NULL, NULL},
};

static const luaL_Reg proc_methods[] = {
    {"poll", p_poll},     {"result", p_result}, {"kill", p_kill},   {"terminate", p_terminate},
    {"pid", p_pid},       {"done", p_done},     {"close", p_close}, {"output", p_output},
    {NULL, NULL},
};

void lb_l_open_proc(lua_State *L) {
    if (luaL_newmetatable(L, PROC_MT)) {
        lua_newtable(L);
        lb_setfuncs(L, proc_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, p_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, p_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, p_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lb_setfuncs(L, proc_funcs, 0);
}
