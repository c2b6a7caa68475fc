-- luabatch.transport.default: what a client uses when it is given no
-- transport, sleep or credentials -- the one place that knows whether we run
-- inside nginx.
--
--   local default = require "luabatch.transport.default"
--   default.in_nginx()          -> true | false      (ngx_lua, past the init phase)
--   default.transport()         -> a new transport: luabatch.transport.ngx inside
--                                  nginx (libcurl would block the worker), else
--                                  luabatch.transport.curl
--   default.sleep(s)            -> ngx.sleep inside nginx (yields), else core.sleep
--   default.credentials(opts)   -> inside nginx with a `luabatch` shared dict:
--                                  luabatch.ngx.credentials (cached across workers,
--                                  one refresher); else luabatch.credentials.new(opts)
--
-- The C core still signs everywhere (core.sigv4_sign never blocks).

local _M = { _VERSION = "0.1.0" }

local type = type
local rawget = rawget
local require = require

function _M.in_nginx()
  local ngx = rawget(_G, "ngx")
  if ngx == nil then return false end
  return require("luabatch.transport.ngx").available(ngx) and true or false
end

function _M.transport()
  if _M.in_nginx() then return require("luabatch.transport.ngx").new() end
  return require("luabatch.transport.curl").new()
end

function _M.sleep(s)
  if _M.in_nginx() then
    rawget(_G, "ngx").sleep(s)
    return true
  end
  return require("luabatch.core").sleep(s)
end

function _M.credentials(opts)
  if _M.in_nginx() then
    local shared = rawget(_G, "ngx").shared
    if type(shared) == "table" and shared.luabatch then
      return require("luabatch.ngx.credentials").new({ config = opts and opts.config,
        transport = opts and opts.transport })
    end
  end
  return require("luabatch.credentials").new(opts)
end

return _M
