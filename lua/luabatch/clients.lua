-- luabatch.clients: the Batch, S3 and Logs clients of one account, region
-- and set of endpoints, built in one place (the CLI's run commands, the
-- Batch runner and nginx all use it).
--
--   local clients = require "luabatch.clients"
--   local c = clients.set({ region = "eu-west-1", endpoints = { batch = url } })
--   c.batch:describe_jobs(ids); c.s3:get_object(b, k); c.logs:tail(g, s)
--
-- o = { region, profile, endpoint_url, endpoints = { batch, s3, logs },
--       env (getenv for the configuration), credentials (a provider, or a
--       function(config) -> provider | nil; default luabatch.credentials.default:
--       the chain, nginx's inside nginx),
--       transport, sleep } -- all optional.  The three share one
-- configuration and one credentials provider; nothing is resolved yet.

local _M = { _VERSION = "0.1.0" }

local type = type
local require = require

function _M.set(o)
  o = o or {}
  local cfg = require("luabatch.config").new({ region = o.region, profile = o.profile,
    endpoint_url = o.endpoint_url, endpoints = o.endpoints, env = o.env })
  local creds = o.credentials
  if type(creds) == "function" then creds = creds(cfg) end
  if creds == nil then
    creds = require("luabatch.credentials").default({ config = cfg, transport = o.transport, sleep = o.sleep })
  end
  local args = { config = cfg, credentials = creds, region = o.region, transport = o.transport, sleep = o.sleep }
  return {
    batch = require("luabatch.batch").new(args),
    s3 = require("luabatch.s3").new(args),
    logs = require("luabatch.logs").new(args),
  }
end

return _M
