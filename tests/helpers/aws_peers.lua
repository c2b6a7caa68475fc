-- tests/helpers/aws_peers.lua: the local "AWS" an end-to-end spec runs the
-- real `luabatch` executable against: Ceph RGW for S3 and the project's
-- Batch emulator (AWS Batch + CloudWatch Logs + the ECS credentials
-- endpoint), sharing one key pair and a session token.
--
--   local peers = require "helpers.aws_peers"
--   local p = assert(peers.start({ delay = 0.05 }))
--   local out, err, code = p:run({ "run", "wf.yml", "--runs-on", "aws_batch", "--json" })
--   local proc = p:spawn({ "run", ... })      -- core.proc_spawn handle (kill, poll, result)
--   p.emu                                     -- helpers.batch_emulator table
--   p.env                                     -- { NAME = value } every client run gets
--   p.bucket, p.home, p.exe, p.key, p.secret, p.token, p.s3_endpoint
--   p.s3, p.batch, p.logs                     -- luabatch clients on the peers (static keys)
--   p:keys([prefix]) -> { key, ... }          -- every object key in the bucket
--   p:stop()                                  -- the emulator, the temp dirs (RGW stays:
--                                                servers.stop_all() stops one we started)
--
-- peers.exe() -> path of the executable matching the interpreter running
-- this code (build/luajit/bin/luabatch under LuaJIT, else build/lua5.4/...),
-- absolute (from $PWD: specs run from the repository root); LUABATCH_TEST_EXE
-- names another one.
--
-- start(opts): opts.delay (s per Batch state, default 0.05), opts.delays,
-- opts.kill_grace (default 2), opts.bucket (default a fresh name),
-- opts.token (the session token; default a random one), opts.emulator
-- (extra options for batch_emulator.start).  Returns peers | nil, message.
--
-- Client runs get a clean environment (env -i style): PATH (the
-- executable's directory first), HOME and LUABATCH_HOME (temp dirs), the
-- keys + token, region, AWS_ENDPOINT_URL_BATCH/_LOGS (emulator),
-- AWS_ENDPOINT_URL_S3 (RGW), AWS_BATCH_JOB_QUEUE_ARN, AWS_S3_BUCKET, no
-- config files, IMDS disabled.  Batch jobs (processes the emulator starts)
-- find the same executable on PATH and get the job role's credentials
-- (= the same keys and token) from the emulator's ECS endpoint.
local core = require "luabatch.core"
local be = require "helpers.batch_emulator"
local servers = require "helpers.servers"

local _M = {}
local mt = { __index = _M }

local ROOT = os.getenv("PWD") or "."

function _M.exe()
  local exe = os.getenv("LUABATCH_TEST_EXE")
  if exe and exe ~= "" then
    if exe:sub(1, 1) ~= "/" then exe = ROOT .. "/" .. exe end
    return exe
  end
  local impl = os.getenv("LUABATCH_TEST_LUA")
  if not impl or impl == "" then impl = rawget(_G, "jit") and "luajit" or "lua5.4" end
  return ROOT .. "/build/" .. impl .. "/bin/luabatch"
end

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function tmpdir(tag)
  local d = os.tmpname()
  os.remove(d)
  d = d .. "-" .. tag
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function random_hex(n)
  return core.hex(core.random_bytes(n))
end

function _M.start(opts)
  opts = opts or {}
  local exe = _M.exe()
  if not file_exists(exe) then return nil, "no executable at " .. exe .. " (make / make LUA=luajit)" end
  local bindir = exe:match("^(.*)/[^/]+$")
  local s3_endpoint, key, secret = servers.rgw()
  if not s3_endpoint then return nil, key end
  local token = opts.token or ("LBTESTTOKEN" .. random_hex(16))
  local path = bindir .. ":" .. (os.getenv("PATH") or "/usr/bin:/bin")
  local eopts = { access_key = key, secret_key = secret, delay = opts.delay or 0.05,
    delays = opts.delays, kill_grace = opts.kill_grace or 2,
    role_credentials = { key = key, secret = secret, token = token },
    env = { PATH = path } }
  for k, v in pairs(opts.emulator or {}) do eopts[k] = v end
  local emu, msg = be.start(eopts)
  if not emu then return nil, msg end

  local self = setmetatable({ emu = emu, exe = exe, bindir = bindir, key = key, secret = secret,
    token = token, s3_endpoint = s3_endpoint, region = emu.region }, mt)
  self.dir = tmpdir("peers")
  self.home = self.dir .. "/luabatch-home"
  self.bucket = opts.bucket or ("lb-e2e-" .. random_hex(4))
  self.env = {
    PATH = path,
    HOME = self.dir,
    LUABATCH_HOME = self.home,
    TMPDIR = os.getenv("TMPDIR") or "/tmp",
    LANG = "C.UTF-8",
    AWS_ACCESS_KEY_ID = key,
    AWS_SECRET_ACCESS_KEY = secret,
    AWS_SESSION_TOKEN = token,
    AWS_DEFAULT_REGION = emu.region,
    AWS_REGION = emu.region,
    AWS_ENDPOINT_URL_S3 = s3_endpoint,
    AWS_ENDPOINT_URL_BATCH = emu.endpoint,
    AWS_ENDPOINT_URL_LOGS = emu.endpoint,
    AWS_CONFIG_FILE = "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE = "/dev/null",
    AWS_EC2_METADATA_DISABLED = "true",
    AWS_BATCH_JOB_QUEUE_ARN = emu.queue,
    AWS_S3_BUCKET = self.bucket,
  }
  if os.getenv("LUABATCH_DEV") then
    self.env.LUABATCH_DEV = os.getenv("LUABATCH_DEV")
    self.env.LUA_PATH = os.getenv("LUA_PATH")
  end

  local creds = require("luabatch.credentials").static({ access_key = key, secret_key = secret,
    session_token = token })
  local function client(mod, endpoint)
    return require(mod).new({ credentials = creds, endpoint = endpoint, region = emu.region,
      config = require("luabatch.config").new({ env = {}, region = emu.region,
        files = { config = "/dev/null", credentials = "/dev/null" } }) })
  end
  self.s3 = client("luabatch.s3", s3_endpoint)
  self.batch = client("luabatch.batch", emu.endpoint)
  self.logs = client("luabatch.logs", emu.endpoint)
  local ok, err, code = self.s3:create_bucket(self.bucket)
  if not ok and code ~= "BucketAlreadyOwnedByYou" then
    self:stop()
    return nil, "create bucket " .. self.bucket .. ": " .. tostring(err)
  end
  return self
end

-- The environment of a client run: self.env with `extra` over it (a value
-- false removes the variable).
function _M:env_with(extra)
  local e = {}
  for k, v in pairs(self.env) do e[k] = v end
  for k, v in pairs(extra or {}) do
    if v == false then e[k] = nil else e[k] = v end
  end
  return e
end

-- Start `luabatch ARGS...` (cwd = opts.cwd or the peers' dir) -> core proc.
function _M:spawn(args, extra_env, opts)
  local argv = { self.exe }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p, msg = core.proc_spawn({ argv = argv, env = self:env_with(extra_env),
    cwd = opts and opts.cwd or self.dir, stdin = "" })
  assert(p, msg)
  return p
end

-- Wait for a spawned process (timeout s, default 120) -> result
-- { exit=, signal=, stdout=, stderr= } | nil, "timeout" (the process is
-- killed then).
function _M.wait(p, timeout)
  local done = core.proc_wait({ p }, timeout or 120)
  if not done or #done == 0 then
    p:kill("KILL")
    core.proc_wait({ p }, 5)
    return nil, "timeout"
  end
  local r = p:result()
  p:close()
  return r
end

-- Run `luabatch ARGS...` to the end -> stdout, stderr, exit code (nil on a
-- timeout or a signal, with stderr saying which).
function _M:run(args, extra_env, opts)
  local p = self:spawn(args, extra_env, opts)
  local r, why = _M.wait(p, opts and opts.timeout or 120)
  if not r then return "", "luabatch " .. table.concat(args, " ") .. ": " .. why, nil end
  local err = r.stderr or ""
  if r.signal then err = err .. "\n(killed by signal " .. r.signal .. ")" end
  return r.stdout or "", err, r.exit
end

-- Every object key in the bucket (under prefix).
function _M:keys(prefix)
  local all = assert(self.s3:list_all(self.bucket, { prefix = prefix }))
  local keys = {}
  for _, e in ipairs(all) do
    if e.key then keys[#keys + 1] = e.key end
  end
  table.sort(keys)
  return keys
end

function _M:put(key, body)
  return assert(self.s3:put_object(self.bucket, key, body))
end

function _M:get(key)
  return self.s3:get_object(self.bucket, key)
end

function _M:url(key)
  return "s3://" .. self.bucket .. "/" .. key
end

-- Wait until pred() is true (polling every `step` s, up to `timeout` s).
function _M.wait_until(pred, timeout, step)
  local deadline = core.monotime() + (timeout or 30)
  while core.monotime() < deadline do
    local v = pred()
    if v then return v end
    core.sleep(step or 0.1)
  end
  return nil
end

function _M:stop()
  if self.emu then self.emu.stop() self.emu = nil end
  if self.dir then os.execute("rm -rf '" .. self.dir .. "'") self.dir = nil end
end

return _M
