/* main.c -- the `luabatch` executable.
 *
 * Modelled on lua.c: main() only creates the state and runs pmain()
 * protected; the real work is Lua (luabatch.cli).  What C adds:
 *   - every module under lua/ preloaded from the binary (embed.c), plus
 *     lua-cjson and the core, so it runs from any directory with no LUA_PATH;
 *   - SIGINT handling: the handler sets the core's interrupt flag (curl
 *     transfers and sleeps poll it) and, in "error" mode (scripts, REPL
 *     evaluation), a hook that raises "interrupted!" at the next Lua
 *     instruction -- the handler never touches the state otherwise;
 *   - line editing for the REPL (libedit, BSD licence), exposed to Lua as the
 *     preloaded module `luabatch.lineedit`, with Tab completion asking a
 *     Lua function (luabatch.repl.complete) for its candidates. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lb_intr.h"

int luaopen_luabatch_core(lua_State *L);
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

extern const struct lb_embedded {
    const char *name, *chunkname, *src;
    size_t len;
} lb_embedded[];

static lua_State *globalL;
static volatile sig_atomic_t raise_in_lua = 1;  /* "error" mode: hook raises */

/* Hook set by the signal handler: clear itself, raise in Lua. */
static void lstop(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
    (void)sig;
    if (lb_intr_pending() || raise_in_lua) {
        /* A second Ctrl-C, or code that did not ask to poll the flag:
         * stop the Lua code at its next instruction. */
        lua_sethook(globalL, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
    lb_intr_raise();
}

static void set_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART: a blocked read() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    /* SIGTERM (a scheduler, `kill`, systemd) means the same as Ctrl-C: stop
     * what runs, terminate remote jobs, report; a second one stops Lua. */
    sigaction(SIGTERM, &sa, NULL);
}

/* --- luabatch.lineedit: the REPL's terminal I/O ------------------------- */

/* Tab completion: readline calls complete_word() with the word before the
 * cursor; it asks the Lua completer (set_completer(fn), kept in the registry
 * under COMPLETER_KEY) for its candidates -- fn(word) -> { "full.word", ... }
 * -- and hands them to readline through rl_completion_matches().  Lua runs
 * inside le_readline's call (readline_L), protected: an error means no
 * candidates.  No filename completion, and no space after a match (a field
 * is usually followed by "." or "("). */
static const char COMPLETER_KEY[] = "luabatch.lineedit.completer";
static lua_State *readline_L;        /* the state inside readline(), or NULL */
static char **candidates;            /* the completer's answer, NULL-ended */
static size_t next_candidate;

static void free_candidates(void) {
    size_t i;
    for (i = 0; candidates && candidates[i]; i++) free(candidates[i]);
    free(candidates);
    candidates = NULL;
}

/* Ask the Lua completer for the candidates of `word` into `candidates`. */
static void fetch_candidates(lua_State *L, const char *word) {
    int top = lua_gettop(L);
    size_t n, i, k = 0;
    free_candidates();
    lua_getfield(L, LUA_REGISTRYINDEX, COMPLETER_KEY);
    lua_pushstring(L, word);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) goto done;
    n = (size_t)lua_rawlen(L, -1);
    candidates = calloc(n + 1, sizeof *candidates);
    if (!candidates) goto done;
    for (i = 1; i <= n; i++) {
        const char *c;
        lua_rawgeti(L, -1, (lua_Integer)i);
        c = lua_tostring(L, -1);
        if (c && (candidates[k] = strdup(c)) != NULL) k++;
        lua_pop(L, 1);
    }
done:
    lua_settop(L, top);
}

/* rl_compentry_func_t: the next candidate (malloc'ed) or NULL. */
static char *next_match(const char *word, int state) {
    (void)word;
    if (state == 0) next_candidate = 0;
    if (!candidates || !candidates[next_candidate]) return NULL;
    return strdup(candidates[next_candidate++]);
}

static char **complete_word(const char *word, int start, int end) {
    char **matches = NULL;
    (void)start; (void)end;
    rl_attempted_completion_over = 1;      /* never fall back to file names */
    rl_completion_append_character = '\0';
    if (!readline_L) return NULL;
    lua_getfield(readline_L, LUA_REGISTRYINDEX, COMPLETER_KEY);
    if (lua_isfunction(readline_L, -1)) {
        lua_pop(readline_L, 1);
        fetch_candidates(readline_L, word);
        if (candidates && candidates[0]) matches = rl_completion_matches(word, next_match);
        free_candidates();
    } else {
        lua_pop(readline_L, 1);
    }
    return matches;
}

/* set_completer(fn | nil): fn(word) -> array of candidates for word. */
static int le_set_completer(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, COMPLETER_KEY);
    static char breaks[] = " \t\n\"\\'`@$><=;|&{(,[]+-*/%^~#";
    rl_completer_word_break_characters = breaks;  /* "." and ":" stay in a word */
    rl_attempted_completion_function = complete_word;
    return 0;
}

/* readline(prompt) -> line | nil (end of input) | false (Ctrl-C) */
static int le_readline(lua_State *L) {
    const char *prompt = luaL_optstring(L, 1, "> ");
    char *line;
    sig_atomic_t mode = raise_in_lua;
    lb_intr_clear();
    raise_in_lua = 0;   /* Ctrl-C here ends readline() with EINTR, no hook */
    readline_L = L;
    line = readline(prompt);
    readline_L = NULL;
    raise_in_lua = mode;
    if (!line) {
        if (lb_intr_pending()) {
            lb_intr_clear();
            fputc('\n', stdout);
            lua_pushboolean(L, 0);
        } else {
            lua_pushnil(L);
        }
        return 1;
    }
    lua_pushstring(L, line);
    free(line);
    return 1;
}

static int le_add_history(lua_State *L) {
    add_history(luaL_checkstring(L, 1));
    return 0;
}

static int le_read_history(lua_State *L) {
    read_history(luaL_checkstring(L, 1));
    return 0;
}

/* write_history(path) -> true | nil, msg */
static int le_write_history(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (write_history(path) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot write history %s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ensure_dir(path) -> true | nil, msg : mkdir -p (mode 0700) */
static int le_ensure_dir(lua_State *L) {
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    char buf[4096];
    size_t i;
    if (n == 0 || n >= sizeof buf) return luaL_argerror(L, 1, "path empty or too long");
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                lua_pushnil(L);
                lua_pushfstring(L, "cannot create %s: %s", buf, strerror(errno));
                return 2;
            }
            buf[i] = c;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int le_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 0)));
    return 1;
}

/* term_width([fd]) -> columns of the terminal on fd (default 1), or nil
 * when fd is not a terminal or its size is unknown. */
static int le_term_width(lua_State *L) {
    struct winsize ws;
    int fd = (int)luaL_optinteger(L, 1, 1);
    if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        lua_pushinteger(L, (lua_Integer)ws.ws_col);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* interrupt_mode("error" | "flag"): what SIGINT does to running Lua code.
 * "error" raises "interrupted!" (scripts, REPL); "flag" only sets the
 * flag that long operations poll (commands that clean up after Ctrl-C,
 * e.g. terminating remote jobs); a second Ctrl-C raises anyway. */
static int le_interrupt_mode(lua_State *L) {
    static const char *const modes[] = {"error", "flag", NULL};
    raise_in_lua = luaL_checkoption(L, 1, NULL, modes) == 0;
    return 0;
}

static const luaL_Reg lineedit_funcs[] = {
    {"readline", le_readline},
    {"add_history", le_add_history},
    {"read_history", le_read_history},
    {"write_history", le_write_history},
    {"isatty", le_isatty},
    {"term_width", le_term_width},
    {"ensure_dir", le_ensure_dir},
    {"interrupt_mode", le_interrupt_mode},
    {"set_completer", le_set_completer},
    {NULL, NULL},
};

static int luaopen_lineedit(lua_State *L) {
    luaL_newlib(L, lineedit_funcs);
    return 1;
}

/* --- start-up ----------------------------------------------------------- */

static int load_embedded(lua_State *L) {
    const struct lb_embedded *m = lua_touserdata(L, lua_upvalueindex(1));
    if (luaL_loadbuffer(L, m->src, m->len, m->chunkname) != LUA_OK) return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

static void preload(lua_State *L) {
    const struct lb_embedded *m;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_luabatch_core);
    lua_setfield(L, -2, "luabatch.core");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, luaopen_cjson_safe);
    lua_setfield(L, -2, "cjson.safe");
    lua_pushcfunction(L, luaopen_lineedit);
    lua_setfield(L, -2, "luabatch.lineedit");
    /* LUABATCH_DEV=1 leaves lua/ modules to package.path (edit-run loops). */
    if (!getenv("LUABATCH_DEV")) {
        for (m = lb_embedded; m->name; m++) {
            lua_pushlightuserdata(L, (void *)m);
            lua_pushcclosure(L, load_embedded, 1);
            lua_setfield(L, -2, m->name);
        }
    }
    lua_pop(L, 1);
}

static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* pmain: argv -> luabatch.cli.main(argv) -> exit code */
static int pmain(lua_State *L) {
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    int i;
    luaL_openlibs(L);
    preload(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luabatch.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_call(L, 1, 1);
    return 1;
}

int main(int argc, char **argv) {
    lua_State *L = luaL_newstate();
    int status, code;
    if (!L) {
        fprintf(stderr, "luabatch: cannot create Lua state: not enough memory\n");
        return 1;
    }
    globalL = L;
    set_sigint();
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 1);
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "luabatch: %s\n", msg ? msg : "(error without message)");
        code = 1;
    } else {
        code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    lua_close(L);
    /* What Lua left in stdout's buffer: a failed flush (a full disk, a
     * closed pipe) is a failed command, never a silent truncation. */
    errno = 0;
    if ((fflush(stdout) != 0 || ferror(stdout)) && code == 0) {
        int e = errno ? errno : EIO;
        fprintf(stderr, "luabatch: write stdout: %s (errno %d)\n", strerror(e), e);
        code = 1;
    }
    return code;
}
