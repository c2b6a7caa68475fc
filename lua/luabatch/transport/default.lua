-- luabatch.transport.default: what a client uses when it is given no
-- transport or sleep -- the one place that knows whether we run inside
-- nginx.
--
--   local default = require "luabatch.transport.default"
--   default.in_nginx()          -> true | false      (ngx_lua, past the init phase)
--   default.transport()         -> a new transport: luabatch.transport.ngx inside
--                                  nginx (libcurl would block the worker), else
--                                  luabatch.transport.curl
--   default.sleep(s)            -> ngx.sleep inside nginx (yields), else core.sleep
-- (The default credentials are luabatch.credentials.default's.)
--
-- The C core still signs everywhere (core.sigv4_sign never blocks).

local _M = { _VERSION = "0.1.0" }

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

return _M
