-- tests/helpers/provider.lua: what the in-process specs of the aws_batch
-- provider share — Ceph RGW + the Batch emulator whose jobs are real
-- `luabatch task` processes of the built executable, clients for both, a
-- private bucket, and the runs-on `with:` that points the provider at them.
--
--   local provider = require "helpers.provider"
--   local env = provider.start({ bucket_prefix = "lb-x-", task_env = { TMPDIR = d } })
--   env.emu, env.s3, env.batch, env.bucket, env.s3_endpoint, env.key, env.secret
--   env:with({ array = true })      -- a fresh with: table (extra fields on top)
--   env:stop()                      -- the emulator, then every server the spec started
--   provider.FAST                   -- a policy polling every 0.2..1 s (specs stay fast)
--   provider.new_run_id(), provider.strip(v) (v without the timing `info` keys)
--
-- start raises when a server does not come up (busted reports it at setup).
-- The task processes find the executable on PATH; with LUABATCH_DEV set they
-- load lua/ from the tree, like the spec itself.
local core = require "luabatch.core"
local servers = require "helpers.servers"
local be = require "helpers.batch_emulator"
local s3mod = require "luabatch.s3"
local batchmod = require "luabatch.batch"
local credentials = require "luabatch.credentials"
local config = require "luabatch.config"

local _M = {}
local mt = { __index = _M }

local ROOT = os.getenv("PWD") or "."
local INTERP = rawget(_G, "jit") and "luajit" or "lua5.4"

-- The executable of this interpreter's build, else the Lua 5.4 one (the
-- only executable there is: it embeds Lua 5.4).
local function executable()
  local exe = ROOT .. "/build/" .. INTERP .. "/bin/luabatch"
  local f = io.open(exe, "rb")
  if f then f:close() else exe = ROOT .. "/build/lua5.4/bin/luabatch" end
  return exe
end

_M.EXE = executable()
_M.BINDIR = _M.EXE:match("^(.*)/[^/]+$")
_M.FAST = {
  intervals = { fast = 0.2, fast_growth = 1.2, fast_max = 0.5, running = 0.3, growth = 1.2, max = 1,
                jitter = 0.1, coalesce = 0.05 },
  wait_slice = 0.2,
}

function _M.new_run_id()
  return os.date("!%Y%m%d-%H%M%S") .. "-" .. core.hex(core.random_bytes(4))
end

function _M.strip(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if k ~= "info" then out[k] = _M.strip(x) end
  end
  return out
end

--- start{ bucket_prefix = "lb-provider-", task_env = { NAME = value } } -> env
function _M.start(opts)
  opts = opts or {}
  local s3_endpoint, key, secret = servers.rgw()
  assert(s3_endpoint, key)
  local env = { PATH = _M.BINDIR .. ":" .. (os.getenv("PATH") or "/usr/bin:/bin") }
  for k, v in pairs(opts.task_env or {}) do env[k] = v end
  if os.getenv("LUABATCH_DEV") then
    env.LUABATCH_DEV = os.getenv("LUABATCH_DEV")
    env.LUA_PATH = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"
  end
  local emu, err = be.start({ access_key = key, secret_key = secret, delay = 0.05, kill_grace = 1,
    role_credentials = { key = key, secret = secret }, env = env })
  assert(emu, err)
  local creds = credentials.static({ access_key = key, secret_key = secret })
  local cfg = config.new({ env = {}, region = emu.region, files = { config = "/dev/null", credentials = "/dev/null" } })
  local self = setmetatable({
    emu = emu, s3_endpoint = s3_endpoint, key = key, secret = secret,
    s3 = s3mod.new({ credentials = creds, endpoint = s3_endpoint, region = emu.region, config = cfg }),
    batch = batchmod.new({ credentials = creds, endpoint = emu.endpoint, region = emu.region, config = cfg }),
    bucket = (opts.bucket_prefix or "lb-provider-") .. core.hex(core.random_bytes(4)),
  }, mt)
  assert(self.s3:create_bucket(self.bucket))
  return self
end

--- The runs-on with: for the local peers (credentials for the client
-- only), extra fields on top.
function _M:with(extra)
  local emu = self.emu
  local w = { job_queue_arn = emu.queue, s3_bucket = self.bucket, region_name = emu.region,
    batch_endpoint = emu.endpoint, logs_endpoint = emu.endpoint, s3_endpoint = self.s3_endpoint,
    aws_access_key_id = self.key, aws_secret_access_key = self.secret }
  for k, v in pairs(extra or {}) do w[k] = v end
  return w
end

function _M:stop()
  if self.emu then self.emu.stop() end
  servers.stop_all()
end

return _M
