-- tests/helpers/nginx.lua: start a private nginx (Debian's nginx +
-- libnginx-mod-http-lua + lua-resty-core) for integration specs.
--
-- local nginx = require "helpers.nginx"   (tests/run puts tests/?.lua on LUA_PATH; cwd = repo root)
-- nginx.start(opts) -> ng | nil, msg
--   opts (all optional):
--     workers      = 1                      worker_processes
--     main_extra   = "env X; ..."           main-level directives (alias: conf_extra)
--     http_extra   = "..."                  directives at http level (upstreams, servers, init_*_by_lua)
--     server_extra = "location ... {}"      directives inside the test server {}
--     env          = { K = "V" }            environment of the nginx process; each K also gets an
--                                           `env K;` directive so workers see it (nginx clears the rest)
--     lua_path     = "..."                  lua_package_path (default: <root>/lua/?.lua;<root>/lua/?/init.lua;
--                                           /usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;)
--     lua_cpath    = "..."                  lua_package_cpath (default: <root>/build/luajit/?.so;;)
--     shared_dict  = "luabatch 10m"         lua_shared_dict (a string, a list of strings, or false)
--     log_level    = "info"                 error_log level
--     access_log   = false                  true: <prefix>/access.log
--     keep         = false                  keep the prefix dir after stop() (also LUABATCH_KEEP_NGINX=1)
--     root         = repo root              default: the current directory
--     timeout      = 10                     seconds to wait for the port to answer
--   In main_extra/http_extra/server_extra/lua_path/lua_cpath the strings @PREFIX@ (the prefix dir, no trailing
--   slash), @ROOT@ (the repo root) and @PORT@ (the listen port) are replaced.
-- ng = { port, url = "http://127.0.0.1:PORT", prefix, pid (master), conf (path),
--        stop() (TERM to this master only, waits for it; idempotent),
--        error_log() -> text, worker_pids() -> { pid, ... },
--        reload() -> true | nil, msg (HUP to the master: new workers, same shared dicts; waits
--        until none of the old workers is left and the port answers) }
-- nginx.available() -> true | nil, reason   (nginx + the lua module installed?)
-- nginx.runs_opts(p, o) -> start() opts of a server of luabatch.ngx.runs (package.loaded.lbruns,
--   routed at /runs and /) against the aws_peers p (its emulator's queue and endpoint, the bucket,
--   RGW, the credentials), poll_interval 0.2 s; o.fields = Lua text of more runs.new{} fields
--   ("dir = '...', policy = ..."), o.workers (2), o.main_extra, o.access_log
local _M = {}

local MODULE_DIRS = { "/usr/lib/nginx/modules", "/usr/share/nginx/modules" }
local MODULES = { "ndk_http_module.so", "ngx_http_lua_module.so" }

local function sh_ok(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end  -- Lua 5.1 / LuaJIT
  return a == true and (c == nil or c == 0)
end

local function read_cmd(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function free_port()
  local out = read_cmd("/usr/bin/python3 -c 'import socket;s=socket.socket();"
    .. "s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])'")
  return tonumber(out:match("%d+"))
end

local function alive(pid)
  return pid and sh_ok("kill -0 " .. pid .. " 2>/dev/null")
end

local function module_path(name)
  for _, d in ipairs(MODULE_DIRS) do
    if read_file(d .. "/" .. name) then return d .. "/" .. name end
  end
  -- Debian's modules-enabled files name the module relative to the build
  -- prefix (modules/x.so); resolve that against /usr/share/nginx.
  local out = read_cmd("cat /etc/nginx/modules-enabled/*.conf 2>/dev/null")
  for p in out:gmatch("load_module%s+([^;%s]+);") do
    if p:sub(-#name) == name then
      if p:sub(1, 1) ~= "/" then p = "/usr/share/nginx/" .. p end
      if read_file(p) then return p end
    end
  end
  return nil
end

function _M.available()
  if not sh_ok("command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx") then
    return nil, "nginx is not installed (make deps installs nginx libnginx-mod-http-lua lua-resty-core)"
  end
  for _, m in ipairs(MODULES) do
    if not module_path(m) then return nil, "nginx module " .. m .. " is not installed" end
  end
  return true
end

local function nginx_bin()
  if sh_ok("test -x /usr/sbin/nginx") then return "/usr/sbin/nginx" end
  return "nginx"
end

local function subst(s, vars)
  return (tostring(s or ""):gsub("@(%u+)@", function(k) return vars[k] end))
end

local function build_conf(o, v)
  local L = {}
  local function add(s) L[#L + 1] = s end
  local is_root = read_cmd("id -u"):match("^0%s*$") ~= nil
  -- As root the workers would switch to "nobody", which cannot write the
  -- temp dirs of a private prefix: keep them as the caller's user.
  if is_root then add("user root root;") end
  add(("worker_processes %d;"):format(o.workers or 1))
  add("daemon on;")
  add("master_process on;")
  add(("pid %s/nginx.pid;"):format(v.PREFIX))
  add(("error_log %s/error.log %s;"):format(v.PREFIX, o.log_level or "info"))
  add(("lock_file %s/nginx.lock;"):format(v.PREFIX))
  for _, m in ipairs(MODULES) do add(("load_module %s;"):format(v.modules[m])) end
  local keys = {}
  for k in pairs(o.env or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do add(("env %s;"):format(k)) end
  if o.main_extra then add(subst(o.main_extra, v)) end
  if o.conf_extra then add(subst(o.conf_extra, v)) end
  add("events { worker_connections 1024; }")
  add("http {")
  add("  variables_hash_max_size 2048;")
  add(o.access_log and ("  access_log %s/access.log;"):format(v.PREFIX) or "  access_log off;")
  for _, t in ipairs({ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" }) do
    add(("  %s_temp_path %s/%s;"):format(t, v.PREFIX, t))
  end
  add(("  lua_package_path %q;"):format(o.lua_path and subst(o.lua_path, v) or
    (v.ROOT .. "/lua/?.lua;" .. v.ROOT .. "/lua/?/init.lua;"
      .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;")))
  add(("  lua_package_cpath %q;"):format(o.lua_cpath and subst(o.lua_cpath, v) or (v.ROOT .. "/build/luajit/?.so;;")))
  local dicts = o.shared_dict
  if dicts == nil then dicts = "luabatch 10m" end
  if type(dicts) == "string" then dicts = { dicts } end
  for _, d in ipairs(dicts or {}) do add(("  lua_shared_dict %s;"):format(d)) end
  if o.http_extra then add(subst(o.http_extra, v)) end
  add("  server {")
  add(("    listen 127.0.0.1:%d;"):format(v.port))
  add("    server_name localhost;")
  add("    location = /_ngx_helper_ping { return 204; }")
  if o.server_extra then add(subst(o.server_extra, v)) end
  add("  }")
  add("}")
  return table.concat(L, "\n") .. "\n"
end

local function worker_pids(master)
  local out = read_cmd("pgrep -P " .. master .. " 2>/dev/null")
  local pids = {}
  for p in out:gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
  return pids
end

function _M.runs_opts(p, o)
  o = o or {}
  local function str(v) return ("%q"):format(v) end
  local emu = p.emu
  local conf = table.concat({
    "package.loaded.lbruns = require('luabatch.ngx.runs').new({ poll_interval = 0.2,",
    o.fields and (o.fields .. ",") or "",
    "  with = { job_queue_arn = " .. str(emu.queue) .. ", s3_bucket = " .. str(p.bucket) .. ",",
    "    region_name = " .. str(emu.region) .. ", batch_endpoint = " .. str(emu.endpoint) .. ",",
    "    logs_endpoint = " .. str(emu.endpoint) .. ", s3_endpoint = " .. str(p.s3_endpoint) .. " },",
    "})",
  }, "\n")
  local env = {}
  for _, k in ipairs({ "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                       "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED" }) do
    env[k] = p.env[k]
  end
  return {
    workers = o.workers or 2,
    access_log = o.access_log,
    env = env,
    main_extra = o.main_extra,
    http_extra = table.concat({
      "init_by_lua_block {", conf, "}",
      "init_worker_by_lua_block { assert(require('lbruns'):init_worker()) }",
      "server { listen unix:@PREFIX@/luabatch.sock; include @ROOT@/lua/luabatch/ngx/loopback.conf; }",
    }, "\n"),
    server_extra = table.concat({
      "include @ROOT@/lua/luabatch/ngx/locations.conf;",
      "client_body_buffer_size 1m;",
      "location /runs { content_by_lua_block { require('lbruns'):handle() } }",
      "location = / { content_by_lua_block { require('lbruns'):handle() } }",
    }, "\n"),
  }
end

function _M.start(opts)
  local o = opts or {}
  local ok, why = _M.available()
  if not ok then return nil, why end
  local v = { modules = {} }
  for _, m in ipairs(MODULES) do v.modules[m] = module_path(m) end
  v.ROOT = o.root or read_cmd("pwd"):gsub("%s+$", "")
  local prefix = os.tmpname()
  os.remove(prefix)
  v.PREFIX = prefix
  if not sh_ok("mkdir -p " .. q(prefix) .. " " .. q(prefix .. "/logs")) then
    return nil, "nginx: cannot create " .. prefix
  end
  v.port = o.port or free_port()
  v.PORT = tostring(v.port)
  local conf = prefix .. "/nginx.conf"
  write_file(conf, build_conf(o, v))

  local envs = {}
  local keys = {}
  for k in pairs(o.env or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do envs[#envs + 1] = k .. "=" .. q(o.env[k]) end
  local cmd = ("cd %s && env %s %s -p %s -c %s -e %s >%s 2>&1"):format(q(prefix),
    table.concat(envs, " "), nginx_bin(), q(prefix .. "/"), q(conf),
    q(prefix .. "/error.log"), q(prefix .. "/start.out"))
  local ng = { port = v.port, url = "http://127.0.0.1:" .. v.port, prefix = prefix, conf = conf }
  function ng.error_log()
    if ng.last_error_log then return ng.last_error_log end
    return (read_file(prefix .. "/error.log") or "") .. (read_file(prefix .. "/start.out") or "")
  end
  local function fail(msg)
    local log = ng.error_log()
    if ng.pid then ng.stop() end
    if not (o.keep or os.getenv("LUABATCH_KEEP_NGINX") == "1") then
      os.execute("rm -rf " .. q(prefix))
    end
    return nil, msg .. "\n" .. log
  end
  if not sh_ok(cmd) then return fail("nginx: failed to start (" .. conf .. ")") end

  local deadline = os.time() + (o.timeout or 10)
  repeat
    ng.pid = tonumber((read_file(prefix .. "/nginx.pid") or ""):match("%d+"))
    if ng.pid then break end
    sh_ok("sleep 0.05")
  until os.time() > deadline
  if not ng.pid then return fail("nginx: no pid file") end

  local stopped = false
  function ng.stop()
    if stopped then return true end
    stopped = true
    local pid = ng.pid
    if alive(pid) then
      sh_ok("kill -TERM " .. pid .. " 2>/dev/null")
      local waited = 0
      while alive(pid) and waited < 100 do
        sh_ok("sleep 0.05")
        waited = waited + 1
      end
      if alive(pid) then sh_ok("kill -KILL " .. pid .. " 2>/dev/null") end
    end
    ng.last_error_log = ng.error_log()
    if not (o.keep or os.getenv("LUABATCH_KEEP_NGINX") == "1") then
      os.execute("rm -rf " .. q(prefix))
    end
    return true
  end
  function ng.worker_pids() return worker_pids(ng.pid) end
  function ng.reload()
    local old = {}
    for _, w in ipairs(ng.worker_pids()) do old[w] = true end
    if not sh_ok("kill -HUP " .. ng.pid .. " 2>/dev/null") then return nil, "nginx: HUP failed" end
    local until_t = os.time() + (o.timeout or 10) + 10
    repeat
      local fresh, stale = 0, 0
      for _, w in ipairs(ng.worker_pids()) do
        if old[w] then stale = stale + 1 else fresh = fresh + 1 end
      end
      if stale == 0 and fresh >= (o.workers or 1) and sh_ok(("curl -s -o /dev/null --max-time 1 %s/_ngx_helper_ping")
          :format(ng.url)) then
        return true
      end
      sh_ok("sleep 0.05")
    until os.time() > until_t
    return nil, "nginx: the reload did not finish\n" .. ng.error_log()
  end

  -- wait until the port answers (and the workers are up)
  local ping = ("curl -s -o /dev/null --max-time 1 %s/_ngx_helper_ping"):format(ng.url)
  repeat
    if sh_ok(ping) and #ng.worker_pids() >= (o.workers or 1) then return ng end
    if not alive(ng.pid) then return fail("nginx: master exited") end
    sh_ok("sleep 0.05")
  until os.time() > deadline
  return fail("nginx: port " .. ng.port .. " did not answer")
end

return _M
