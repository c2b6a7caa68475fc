-- luabatch: the public entry point (`require "luabatch"`).
--
-- Submodules load on first use, so `require "luabatch"` costs nothing and
-- probes nothing (no credentials, no network):
--   luabatch.core         the C core (signing, HTTP, YAML, XML)
--   luabatch.config       region, profile, endpoints
--   luabatch.credentials  the credential provider chain
--   luabatch.retry        retry policies
--   luabatch.request      the signed, retried AWS request path
--   luabatch.log          levelled, redacted logging
--   luabatch.s3           S3: objects, listings, streaming transfers, presigned URLs

local _M = { _VERSION = "0.1.0" }

local SUBMODULES = {
  core = "luabatch.core", config = "luabatch.config", credentials = "luabatch.credentials",
  retry = "luabatch.retry", request = "luabatch.request", log = "luabatch.log",
  pretty = "luabatch.pretty", s3 = "luabatch.s3",
  batch = "luabatch.batch", logs = "luabatch.logs",
}

setmetatable(_M, {
  __index = function(t, k)
    local name = SUBMODULES[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})


return _M
