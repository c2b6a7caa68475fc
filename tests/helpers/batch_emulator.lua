-- tests/helpers/batch_emulator.lua: start tests/servers/batch_emulator.py
-- (AWS Batch + CloudWatch Logs + ECS credentials on one loopback port) from a
-- spec and drive its control endpoints.
--
--   local be = require("helpers.batch_emulator")
--   local emu = assert(be.start({ delay = 0.05, timeout_scale = 0.02 }))
--   emu.endpoint, emu.port, emu.pid         -- "http://127.0.0.1:PORT"
--   emu.access_key, emu.secret_key, emu.region, emu.queue   -- LBTESTKEY, LBTESTSECRET, us-east-1, lb-queue
--   emu:fault({ operation = "DescribeJobs", action = "throttle", times = 3 })  -> rule id
--   emu:clear_faults()
--   emu:calls()          -- { counts = {Op = n}, faulted = {Op = n}, total = n, describe_ids = n }
--   emu:reset_calls()
--   emu:call_log()       -- { {t=, op=, status=, ids=}, ... }
--   emu:config({ delays = 0.2, role_credentials = { AccessKeyId=, SecretAccessKey= } })
--   emu:jobs()           -- { {jobId=, status=, pid=, exitedAt=, attempts=}, ... }
--   emu.stop()  (or emu:stop())   -- SIGTERM: the emulator kills every job process
--
-- start(opts): opts.access_key, secret_key, region, delay (s per state),
-- delays ({ RUNNABLE = 1, ... }), timeout_scale, kill_grace, queues
-- ({ "name[:EC2|FARGATE]", ... }), role_credentials ({ key=, secret=, token= }),
-- clean_env (bool), args (extra argv strings), env ({ NAME = value }: set in
-- the emulator's environment, which its job processes inherit (minus AWS_*),
-- e.g. PATH with the luabatch executable).  Returns the emulator table or
-- nil, message.  The emulator exits by itself when this Lua process dies.
local core = require "luabatch.core"
local cjson = require "cjson.safe"

local _M = {}
local mt = { __index = _M }

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function my_pid()
  local p = io.popen("echo $PPID")
  local pid = p:read("l")
  p:close()
  return tonumber(pid)
end

function _M.start(opts)
  opts = opts or {}
  local argv = { "/usr/bin/python3", "tests/servers/batch_emulator.py", "--port", "0" }
  local function add(...) for _, v in ipairs({ ... }) do argv[#argv + 1] = tostring(v) end end
  if opts.access_key then add("--access-key", opts.access_key) end
  if opts.secret_key then add("--secret-key", opts.secret_key) end
  if opts.region then add("--region", opts.region) end
  if opts.delay then add("--delay", opts.delay) end
  if opts.delays then
    local parts = {}
    for k, v in pairs(opts.delays) do parts[#parts + 1] = k .. "=" .. tostring(v) end
    add("--delays", table.concat(parts, ","))
  end
  if opts.timeout_scale then add("--timeout-scale", opts.timeout_scale) end
  if opts.kill_grace then add("--kill-grace", opts.kill_grace) end
  for _, q in ipairs(opts.queues or {}) do add("--queue", q) end
  if opts.role_credentials then
    local rc = opts.role_credentials
    add("--role-credentials", rc.key .. ":" .. rc.secret .. (rc.token and (":" .. rc.token) or ""))
  end
  if opts.clean_env then add("--clean-env") end
  local ppid = my_pid()
  if ppid then add("--parent-pid", ppid) end
  for _, a in ipairs(opts.args or {}) do add(a) end

  local base = os.tmpname()
  local portfile, errfile = base .. ".port", base .. ".err"
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = sh_quote(a) end
  if opts.env then
    local names = {}
    for k in pairs(opts.env) do names[#names + 1] = k end
    table.sort(names)
    for i = #names, 1, -1 do
      table.insert(quoted, 1, sh_quote(names[i] .. "=" .. tostring(opts.env[names[i]])))
    end
    table.insert(quoted, 1, "env")
  end
  local cmd = ("%s >%s 2>%s & echo $!"):format(table.concat(quoted, " "), sh_quote(portfile), sh_quote(errfile))
  local p = io.popen(cmd)
  local pid = tonumber(p:read("l"))
  p:close()
  os.remove(base)
  local port
  for _ = 1, 200 do
    local s = read_file(portfile)
    port = s and tonumber(s:match("^(%d+)\n"))
    if port then break end
    core.sleep(0.05)
  end
  if not port then
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    local err = read_file(errfile) or "?"
    os.remove(portfile)
    os.remove(errfile)
    return nil, "batch emulator did not start: " .. err
  end
  local self = setmetatable({
    pid = pid, port = port, endpoint = "http://127.0.0.1:" .. port,
    access_key = opts.access_key or "LBTESTKEY", secret_key = opts.secret_key or "LBTESTSECRET",
    region = opts.region or "us-east-1", queue = "lb-queue", fargate_queue = "lb-fargate-queue",
    files = { portfile, errfile }, errfile = errfile,
  }, mt)
  -- emu.stop() and emu:stop() both work.
  self.stop = function() return _M.stop(self) end
  return self
end

function _M:control(method, path, body)
  local resp, msg = core.http_request({ method = method, url = self.endpoint .. path,
    headers = { { "Content-Type", "application/json" } },
    body = body ~= nil and assert(cjson.encode(body)) or nil, timeout = 10 })
  assert(resp, msg)
  assert(resp.status == 200, "batch emulator " .. method .. " " .. path .. ": HTTP " .. resp.status .. " " .. resp.body)
  return assert(cjson.decode(resp.body))
end

function _M:fault(spec) return self:control("POST", "/__faults", spec).id end
function _M:clear_faults() return self:control("DELETE", "/__faults") end
function _M:faults() return self:control("GET", "/__faults").rules end
function _M:calls() return self:control("GET", "/__calls") end
function _M:reset_calls() return self:control("DELETE", "/__calls") end
function _M:call_log() return self:control("GET", "/__calls/log") end
function _M:config(c) return self:control("POST", "/__config", c or {}) end
function _M:jobs() return self:control("GET", "/__jobs") end

-- The emulator's stderr so far (tracebacks of internal errors end up there).
function _M:stderr() return read_file(self.errfile) or "" end

function _M.stop(self)
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    for _ = 1, 100 do
      local ok = os.execute("kill -0 " .. self.pid .. " 2>/dev/null")
      if ok ~= true and ok ~= 0 then break end
      core.sleep(0.05)
    end
    self.pid = nil
  end
  for _, f in ipairs(self.files) do os.remove(f) end
end

return _M
