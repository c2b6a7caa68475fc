/* bind_fs.c -- the few file-system calls the journal and the CLI need that
 * Lua's io library lacks: durable appends, private modes, directories, the
 * working directory.
 *
 *   core.append_file(path, data [, mode [, nosync]]) -> true | nil, msg, code
 *       O_APPEND|O_CREAT (mode default 0600, applied on creation), one
 *       write loop, fsync, close: when it returns true the bytes are on disk
 *       (nosync: in the kernel's cache, which outlives the process, not a
 *       power loss).
 *   core.mkdir(path [, mode]) -> true | nil, msg, code   ("EEXIST" if there)
 *   core.getcwd() -> path | nil, msg, code
 *   core.listdir(dir) -> { name, ... } (no "." / "..", unsorted) | nil, msg, code
 *   core.stat(path [, follow]) -> { type = "file"|"directory"|"link"|"other",
 *                        mode = n, size = n, mtime = epoch s } | nil, msg, code
 *       (lstat: a symlink is reported as "link"; follow = true: stat, the
 *       link's target is described, a dangling link is ENOENT)
 *   core.utime(path, mtime) -> true | nil, msg, code
 *       sets path's modification time to mtime (epoch s, fractions kept)
 *       and its access time to now (a sync's download takes the object's
 *       LastModified, so the next sync finds it unchanged)
 * Codes: "EEXIST", "ENOENT", "EACCES", "EIO". */
#include "bind.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fs_fail(lua_State *L, const char *op, const char *path, int e) {
    const char *code = e == EEXIST ? "EEXIST" : e == ENOENT ? "ENOENT"
                     : (e == EACCES || e == EPERM) ? "EACCES" : "EIO";
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s (errno %d)", op, path, strerror(e), e);
    lua_pushstring(L, code);
    return 3;
}

static int fs_append_file(lua_State *L) {
    size_t n, off = 0;
    const char *path = luaL_checkstring(L, 1);
    const char *data = luaL_checklstring(L, 2, &n);
    mode_t mode = (mode_t)luaL_optinteger(L, 3, 0600);
    int sync = !lua_toboolean(L, 4);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0) return fs_fail(L, "append", path, errno);
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            int e = errno;
            if (e == EINTR) continue;
            close(fd);
            return fs_fail(L, "append", path, e);
        }
        off += (size_t)w;
    }
    if (sync && fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return fs_fail(L, "fsync", path, e);
    }
    if (close(fd) != 0) return fs_fail(L, "close", path, errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int fs_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0700);
    if (mkdir(path, mode) != 0) return fs_fail(L, "mkdir", path, errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int fs_getcwd(lua_State *L) {
    char buf[4096];
    if (!getcwd(buf, sizeof buf)) return fs_fail(L, "getcwd", ".", errno);
    lua_pushstring(L, buf);
    return 1;
}

static int fs_listdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    struct dirent *e;
    lua_Integer i = 0;
    if (!d) return fs_fail(L, "listdir", path, errno);
    lua_newtable(L);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(d);
    return 1;
}

static int fs_stat(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int follow = lua_toboolean(L, 2);
    struct stat st;
    const char *type;
    if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) return fs_fail(L, "stat", path, errno);
    type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory"
         : S_ISLNK(st.st_mode) ? "link" : "other";
    lua_createtable(L, 0, 4);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushnumber(L, (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
    return 1;
}

static int fs_utime(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Number t = luaL_checknumber(L, 2);
    struct timespec ts[2];
    time_t sec = (time_t)t;
    if ((lua_Number)sec > t) sec--;                      /* floor, for times before 1970 */
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_NOW;                           /* access time: now */
    ts[1].tv_sec = sec;
    ts[1].tv_nsec = (long)((t - (lua_Number)sec) * 1e9 + 0.5);     /* nearest ns */
    if (ts[1].tv_nsec > 999999999L) ts[1].tv_nsec = 999999999L;
    if (utimensat(AT_FDCWD, path, ts, 0) != 0) return fs_fail(L, "utime", path, errno);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg fs_funcs[] = {
    {"listdir", fs_listdir},
    {"stat", fs_stat},
    {"utime", fs_utime},
    {"getcwd", fs_getcwd},
    {"append_file", fs_append_file},
    {"mkdir", fs_mkdir},
    {NULL, NULL},
};

void lb_l_open_fs(lua_State *L) { lb_setfuncs(L, fs_funcs, 0); }
