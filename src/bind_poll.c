/* bind_poll.c -- Lua binding of the job poller mechanics (lb_poll.h).
 *
 *   core.poller([opts]) -> poller | nil, msg, "EINVAL"
 *     opts = { fast_interval = 2, fast_growth = 1.25, fast_max = 10,
 *              run_interval = 10, run_growth = 1.5, max_interval = 60,
 *              jitter = 0.2 (0 = none), coalesce = 0.5 (0 = none),
 *              rate = 20, burst = 1, min_rate = 0.5, throttle_window = 1,
 *              recover_factor = 1.1, recover_window = 2, recover_count = 5,
 *              seed = integer }
 *   poller:add(id [, meta [, due = 0]]) -> true (added) | false (known)
 *   poller:remove(id)                   -> true | false
 *   poller:due(now [, max = 100])       -> { id, ... } (ready to DescribeJobs)
 *   poller:update(id, status, reason, exit, stream, now) -> changed (boolean)
 *       | nil, msg, "EINVAL" (unknown id); reason/stream: string or nil
 *       (cjson.null counts as nil), exit: integer or nil
 *   poller:reschedule(id, at)           -> true | false (unknown / terminal)
 *   poller:cap(id, secs, now)           -> true | false (unknown): the job's
 *       longest interval (0 = none; lb_poll_cap)
 *   poller:get(id) -> summary | nil
 *       summary = { id, status, reason, exit_code, log_stream, meta, phase =
 *       "new"|"pending"|"running"|"terminal", next_due, interval, cap?, changed_at,
 *       polls, changes }
 *   poller:acquire(cost, now)  -> 0 | seconds to wait (token bucket)
 *   poller:throttled(now) -> rate;  poller:ok(now) -> rate;  poller:rate()
 *   poller:next_wakeup()       -> time | nil (no pending job / cancelled)
 *   poller:count(), poller:pending()
 *   poller:stats() -> { jobs, pending, batches, ids_polled, early, updates,
 *       changes, acquires, waits, throttles, halvings, recoveries, rate, tokens }
 *   poller:cancel(), poller:canceled() -> boolean
 *   poller:close()   idempotent (also __gc / __close); other methods then raise
 *
 * Times are plain numbers chosen by the caller (core.monotime() or a fake
 * clock): the binding reads no clock, like the core. */
#include "bind.h"

#include <string.h>

#include "lb_err.h"
#include "lb_poll.h"

#define POLLER_MT "luabatch.poller"

typedef struct {
    lb_poll *p;             /* NULL once closed */
    int meta;               /* registry ref of the id -> meta table */
} poller_box;

static poller_box *check_box(lua_State *L) {
    poller_box *b = luaL_checkudata(L, 1, POLLER_MT);
    if (!b->p) luaL_error(L, "attempt to use a closed poller");
    return b;
}

/* opts[name] (a number), 0 when nil (the core's default). */
static double opt_field(lua_State *L, int t, const char *name, double zero_means) {
    lb_l_opts o = { t, 1, "poller", 0, 0 };
    double v = 0;
    if (lb_l_opt_number(L, &o, name, &v) && v == 0)
        v = zero_means;                 /* jitter/coalesce 0 = off (core: < 0) */
    return v;
}

/* core.poller([opts]) */
static int l_poller(lua_State *L) {
    lb_poll_opts o;
    poller_box *b;
    char err[LB_ERR_LEN];
    int code;
    memset(&o, 0, sizeof o);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        o.fast_interval = opt_field(L, 1, "fast_interval", 0);
        o.fast_growth = opt_field(L, 1, "fast_growth", 0);
        o.fast_max = opt_field(L, 1, "fast_max", 0);
        o.run_interval = opt_field(L, 1, "run_interval", 0);
        o.run_growth = opt_field(L, 1, "run_growth", 0);
        o.max_interval = opt_field(L, 1, "max_interval", 0);
        o.jitter = opt_field(L, 1, "jitter", -1);
        o.coalesce = opt_field(L, 1, "coalesce", -1);
        o.rate = opt_field(L, 1, "rate", 0);
        o.burst = opt_field(L, 1, "burst", 0);
        o.min_rate = opt_field(L, 1, "min_rate", 0);
        o.throttle_window = opt_field(L, 1, "throttle_window", 0);
        o.recover_factor = opt_field(L, 1, "recover_factor", 0);
        o.recover_window = opt_field(L, 1, "recover_window", 0);
        o.recover_count = (long)opt_field(L, 1, "recover_count", 0);
        o.seed = (uint64_t)(int64_t)opt_field(L, 1, "seed", 0);
    }
    b = lb_newuserdata(L, sizeof *b);       /* empty first: safe if anything raises */
    b->p = NULL;
    b->meta = LUA_NOREF;
    luaL_getmetatable(L, POLLER_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    b->meta = luaL_ref(L, LUA_REGISTRYINDEX);
    b->p = lb_poll_new(&o, &code, err);
    if (!b->p) return lb_l_fail(L, code, err);
    return 1;
}

static int m_close(lua_State *L) {
    poller_box *b = luaL_checkudata(L, 1, POLLER_MT);
    lb_poll_free(b->p);
    b->p = NULL;
    if (b->meta != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, b->meta);
        b->meta = LUA_NOREF;
    }
    return 0;
}

static void push_meta_table(lua_State *L, poller_box *b) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->meta);
}

static int m_add(lua_State *L) {
    poller_box *b = check_box(L);
    const char *id = luaL_checkstring(L, 2);
    double due = luaL_optnumber(L, 4, 0);
    int added = 0, rc;
    luaL_argcheck(L, *id != '\0', 2, "empty job id");
    rc = lb_poll_add(b->p, id, due, &added);
    if (rc != LB_OK) return luaL_error(L, "poller:add %s: %s", id, lb_err_name(rc));
    if (added && !lua_isnoneornil(L, 3)) {
        push_meta_table(L, b);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    lua_pushboolean(L, added);
    return 1;
}

static int m_remove(lua_State *L) {
    poller_box *b = check_box(L);
    const char *id = luaL_checkstring(L, 2);
    int had = lb_poll_remove(b->p, id);
    push_meta_table(L, b);
    lua_pushvalue(L, 2);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushboolean(L, had);
    return 1;
}

static int m_due(lua_State *L) {
    poller_box *b = check_box(L);
    double now = luaL_checknumber(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, 100);
    const char *ids[100];
    size_t n, i;
    luaL_argcheck(L, max >= 1 && max <= 100, 3, "max must be 1..100");
    n = lb_poll_next_batch(b->p, now, ids, (size_t)max);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, ids[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/* A string argument, or NULL for nil/none/cjson.null. */
static const char *opt_str(lua_State *L, int i) {
    int t = lua_type(L, i);
    if (t == LUA_TNONE || t == LUA_TNIL || t == LUA_TLIGHTUSERDATA) return NULL;
    return luaL_checkstring(L, i);
}

static int m_update(lua_State *L) {
    poller_box *b = check_box(L);
    const char *id = luaL_checkstring(L, 2);
    lb_poll_state st;
    double now;
    int changed = 0, rc, t;
    memset(&st, 0, sizeof st);
    st.status = luaL_checkstring(L, 3);
    st.reason = opt_str(L, 4);
    t = lua_type(L, 5);
    if (!(t == LUA_TNONE || t == LUA_TNIL || t == LUA_TLIGHTUSERDATA)) {
        st.has_exit = 1;
        st.exit_code = (int)luaL_checknumber(L, 5);
    }
    st.log_stream = opt_str(L, 6);
    now = luaL_checknumber(L, 7);
    rc = lb_poll_update(b->p, now, id, &st, &changed);
    if (rc == LB_EINVAL) {
        lua_pushfstring(L, "poller:update %s: %s", id, *st.status ? "unknown job" : "empty status");
        return lb_l_fail(L, rc, lua_tostring(L, -1));
    }
    if (rc != LB_OK) return luaL_error(L, "poller:update %s: %s", id, lb_err_name(rc));
    lua_pushboolean(L, changed);
    return 1;
}

static int m_reschedule(lua_State *L) {
    poller_box *b = check_box(L);
    lua_pushboolean(L, lb_poll_reschedule(b->p, luaL_checkstring(L, 2), luaL_checknumber(L, 3)));
    return 1;
}

static int m_cap(lua_State *L) {
    poller_box *b = check_box(L);
    double cap = luaL_checknumber(L, 3);
    luaL_argcheck(L, cap >= 0, 3, "seconds >= 0 expected");
    lua_pushboolean(L, lb_poll_cap(b->p, luaL_checkstring(L, 2), cap, luaL_checknumber(L, 4)));
    return 1;
}

static const char *const PHASES[] = {"new", "pending", "running", "terminal"};

static int m_get(lua_State *L) {
    poller_box *b = check_box(L);
    const char *id = luaL_checkstring(L, 2);
    lb_poll_info in;
    if (!lb_poll_get(b->p, id, &in)) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 12);
    lua_pushstring(L, in.id);
    lua_setfield(L, -2, "id");
    if (in.status) { lua_pushstring(L, in.status); lua_setfield(L, -2, "status"); }
    if (in.reason) { lua_pushstring(L, in.reason); lua_setfield(L, -2, "reason"); }
    if (in.has_exit) { lua_pushinteger(L, in.exit_code); lua_setfield(L, -2, "exit_code"); }
    if (in.log_stream) { lua_pushstring(L, in.log_stream); lua_setfield(L, -2, "log_stream"); }
    lua_pushstring(L, PHASES[in.phase]);
    lua_setfield(L, -2, "phase");
    if (in.phase != LB_POLL_TERMINAL) { lua_pushnumber(L, in.next_due); lua_setfield(L, -2, "next_due"); }
    lua_pushnumber(L, in.interval);
    lua_setfield(L, -2, "interval");
    if (in.cap > 0) { lua_pushnumber(L, in.cap); lua_setfield(L, -2, "cap"); }
    lua_pushnumber(L, in.changed_at);
    lua_setfield(L, -2, "changed_at");
    lua_pushinteger(L, in.polls);
    lua_setfield(L, -2, "polls");
    lua_pushinteger(L, in.changes);
    lua_setfield(L, -2, "changes");
    push_meta_table(L, b);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    lua_setfield(L, -3, "meta");
    lua_pop(L, 1);
    return 1;
}

static int m_acquire(lua_State *L) {
    poller_box *b = check_box(L);
    double cost = luaL_optnumber(L, 2, 1);
    lua_pushnumber(L, lb_poll_acquire(b->p, luaL_checknumber(L, 3), cost));
    return 1;
}

static int m_throttled(lua_State *L) {
    poller_box *b = check_box(L);
    lua_pushnumber(L, lb_poll_throttled(b->p, luaL_checknumber(L, 2)));
    return 1;
}

static int m_ok(lua_State *L) {
    poller_box *b = check_box(L);
    lua_pushnumber(L, lb_poll_ok(b->p, luaL_checknumber(L, 2)));
    return 1;
}

static int m_rate(lua_State *L) {
    lua_pushnumber(L, lb_poll_rate(check_box(L)->p));
    return 1;
}

static int m_next_wakeup(lua_State *L) {
    double at;
    if (lb_poll_next_wakeup(check_box(L)->p, &at)) lua_pushnumber(L, at);
    else lua_pushnil(L);
    return 1;
}

static int m_count(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lb_poll_count(check_box(L)->p));
    return 1;
}

static int m_pending(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lb_poll_pending(check_box(L)->p));
    return 1;
}

#define SET_INT(name, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, name))

static int m_stats(lua_State *L) {
    lb_poll_stats s;
    lb_poll_get_stats(check_box(L)->p, &s);
    lua_createtable(L, 0, 14);
    SET_INT("jobs", s.jobs);
    SET_INT("pending", s.pending);
    SET_INT("batches", s.batches);
    SET_INT("ids_polled", s.ids_polled);
    SET_INT("early", s.early);
    SET_INT("updates", s.updates);
    SET_INT("changes", s.changes);
    SET_INT("acquires", s.acquires);
    SET_INT("waits", s.waits);
    SET_INT("throttles", s.throttles);
    SET_INT("halvings", s.halvings);
    SET_INT("recoveries", s.recoveries);
    lua_pushnumber(L, s.rate);
    lua_setfield(L, -2, "rate");
    lua_pushnumber(L, s.tokens);
    lua_setfield(L, -2, "tokens");
    return 1;
}

static int m_cancel(lua_State *L) {
    lb_poll_cancel(check_box(L)->p);
    return 0;
}

static int m_canceled(lua_State *L) {
    lua_pushboolean(L, lb_poll_canceled(check_box(L)->p));
    return 1;
}

static int m_tostring(lua_State *L) {
    poller_box *b = luaL_checkudata(L, 1, POLLER_MT);
    if (!b->p) lua_pushliteral(L, "luabatch.poller (closed)");
    else lua_pushfstring(L, "luabatch.poller (%d jobs, %d pending)", (int)lb_poll_count(b->p),
                         (int)lb_poll_pending(b->p));
    return 1;
}

static const luaL_Reg methods[] = {
    {"add", m_add},
    {"remove", m_remove},
    {"due", m_due},
    {"update", m_update},
    {"reschedule", m_reschedule},
    {"cap", m_cap},
    {"get", m_get},
    {"acquire", m_acquire},
    {"throttled", m_throttled},
    {"ok", m_ok},
    {"rate", m_rate},
    {"next_wakeup", m_next_wakeup},
    {"count", m_count},
    {"pending", m_pending},
    {"stats", m_stats},
    {"cancel", m_cancel},
    {"canceled", m_canceled},
    {"close", m_close},
    {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__gc", m_close},
    {"__close", m_close},
    {"__tostring", m_tostring},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"poller", l_poller},
    {NULL, NULL},
};

void lb_l_open_poll(lua_State *L) {
    luaL_newmetatable(L, POLLER_MT);
    lb_setfuncs(L, metamethods, 0);
    lb_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lb_setfuncs(L, functions, 0);
}
