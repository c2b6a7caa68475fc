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
--   luabatch.workflow     load and run workflows, as `luabatch run` (luabatch.api.workflow)
--   luabatch.runs         the journaled runs: list, get, cancel, resume (luabatch.api.runs)
--   luabatch.batch        AWS Batch: submit, describe, terminate jobs
--   luabatch.logs         CloudWatch Logs: a job's log events
--   luabatch.pretty       values printed for people (the REPL's printer)

local _M = { _VERSION = "0.1.0" }

local SUBMODULES = {
  core = "luabatch.core", config = "luabatch.config", credentials = "luabatch.credentials",
  retry = "luabatch.retry", request = "luabatch.request", log = "luabatch.log",
  pretty = "luabatch.pretty", s3 = "luabatch.s3",
  batch = "luabatch.batch", logs = "luabatch.logs",
  workflow = "luabatch.api.workflow", runs = "luabatch.api.runs",
}

-- __lazy lets luabatch.pretty and the REPL's completion list the submodules
-- without loading them: printing `luabatch` shows `s3 = <module luabatch.s3,
-- not loaded>`.  Listing never loads: loading is a side effect (the modules
-- pull in the C core, credentials, HTTP) and a printed module would bury
-- the list under its functions; `luabatch.s3` (or Tab after it) loads one.
setmetatable(_M, {
  __lazy = SUBMODULES,
  __index = function(t, k)
    local name = SUBMODULES[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})


return _M
