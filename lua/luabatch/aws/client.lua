-- luabatch.aws.client: the shared construction of the service clients
-- (luabatch.batch, luabatch.logs): options kept until the first call, then
-- a luabatch.request client with the defaults a user expects.
--
--   local client = require "luabatch.aws.client"
--   local o = client.options(opts)                          -- at new()
--   local c = client.for_service(o, "batch", { protocol = "rest-json" })
--
-- Defaults: credentials = luabatch.credentials.default (the provider chain;
-- inside nginx the shared-dict one), transport and sleep = nginx's inside
-- nginx (luabatch.transport.default), the configuration's region and endpoint.

local request = require "luabatch.request"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local require = require
local error = error
local str_gsub = string.gsub


--- Options of a service client (luabatch.batch, luabatch.logs, ...) kept
-- until its first call; misuse is reported at the caller of that client's
-- new().  Fields: config, credentials, transport, retry, region, endpoint
-- (trailing "/" dropped), core, sleep, timeout, connect_timeout, read_timeout.
-- Inside nginx (ngx_lua, past the init phase) transport and sleep default to
-- luabatch.transport.ngx and ngx.sleep: libcurl and core.sleep would block
-- the worker.
function _M.options(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 3)
  end
  local transport, sleep_fn = opts.transport, opts.sleep
  if transport == nil or sleep_fn == nil then
    local default = require "luabatch.transport.default"
    if default.in_nginx() then
      transport = transport or default.transport()
      sleep_fn = sleep_fn or require("luabatch.transport.ngx").sleep
    end
  end
  return {
    config = opts.config, credentials = opts.credentials, transport = transport,
    retry = opts.retry, region = opts.region,
    endpoint = opts.endpoint and (str_gsub(opts.endpoint, "/+$", "")) or nil,
    core = opts.core, sleep = sleep_fn, timeout = opts.timeout,
    connect_timeout = opts.connect_timeout, read_timeout = opts.read_timeout,
  }
end


--- The request client of `service` from kept client_options `o`; a config
-- is made from o.region / o.endpoint when none was given.  `extra` adds
-- request.new fields (protocol, json_version).
function _M.for_service(o, service, extra)
  local cfg = o.config
  if not cfg then
    cfg = require("luabatch.config").new({ region = o.region,
      endpoints = o.endpoint and { [service] = o.endpoint } or nil })
  end
  local args = {
    service = service, config = cfg, credentials = o.credentials, transport = o.transport,
    retry = o.retry, region = o.region, endpoint = o.endpoint, core = o.core, sleep = o.sleep,
    timeout = o.timeout, connect_timeout = o.connect_timeout, read_timeout = o.read_timeout,
  }
  for k, v in pairs(extra) do args[k] = v end
  if args.credentials == nil then
    args.credentials = require("luabatch.credentials").default({ config = cfg, transport = o.transport,
      core = o.core, sleep = o.sleep })
  end
  return request.new(args)
end


return _M
