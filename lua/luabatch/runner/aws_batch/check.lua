-- luabatch.runner.aws_batch.check: a job's runs-on `with:` -> the checked
-- configuration the provider works from (nothing is sent anywhere here).
--
--   local check = require "luabatch.runner.aws_batch.check"
--   local cfg, msg = check.check(with, job_id, policy, getenv, run_id)
--   local urls = check.endpoints(with, region, getenv)  -- { batch, s3, logs }
--   local fields = check.client_fields(with)            -- what chooses the clients
--
-- cfg = { queue (with.job_queue_arn / job_queue), bucket (with.s3_bucket),
--         region (with.region_name / region, else AWS_REGION or the profile's),
--         spec (aws_batch/jobdef.lua's spec: name, hash, platform, request),
--         timeout (s, with.timeout / policy.timeout; nil: none),
--         attempts (with.retry_attempts, 1..10), environment = { { name, value },
--         ... } (sorted by name), tags = { k = v }, prefix (with.s3_prefix /
--         policy.s3_prefix, no leading or trailing /), run_prefix (prefix ..
--         "/" .. run_id, or run_id), array (bool), keep_on_failure (bool),
--         log_group, share_identifier?, scheduling_priority? (SubmitJob's
--         fair-share fields), nodes? ({ count, main }: a multi-node job) }
-- A rejected field gives nil and "job '<job>': runs-on aws_batch: with.<field>
-- <what is wrong>; nothing was submitted".  with.environment refuses
-- AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
-- AWS_SECURITY_TOKEN (the job gets its role's credentials) and AWS_BATCH*.
-- endpoints(): the URLs the clients use (what the journal's config event
-- records; a field config cannot resolve is left out).  client_fields(): the
-- with: fields that choose the clients (endpoint_url, batch_endpoint,
-- s3_endpoint, logs_endpoint, profile; never credentials) as strings.

local jobdef_mod = require "luabatch.runner.aws_batch.jobdef"
local schema = require "luabatch.runner.schema"
local fields = require "luabatch.runner.aws_batch.schema"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local str_gsub = string.gsub
local sort = table.sort

local CREDENTIAL_ENV = { AWS_ACCESS_KEY_ID = true, AWS_SECRET_ACCESS_KEY = true, AWS_SESSION_TOKEN = true,
                         AWS_SECURITY_TOKEN = true }

local function str_field(with, name)
  local v = with[name]
  if v == nil or v == "" then return nil end
  if type(v) ~= "string" and type(v) ~= "number" then return nil, "must be a string" end
  return tostring(v)
end

local function region_of(with, getenv)
  local r = str_field(with, "region_name") or str_field(with, "region")
  if r then return r end
  local cfg = require("luabatch.config").new({ profile = with.profile, env = getenv })
  local ok, reg = pcall(cfg.region, cfg)
  if ok and type(reg) == "string" and reg ~= "" then return reg end
  return nil
end

local REQUIRED_WHY = {
  job_queue_arn = "is required (the Batch job queue name or ARN)",
  s3_bucket = "is required (the bucket the run's bundle and results go to)",
}

-- check(with, job_id, policy, getenv, run_id) -> cfg | nil, message
local function check(with, job_id, p, getenv, run_id)
  local function bad(field, what)
    return nil, str_format("job '%s': runs-on aws_batch: with.%s %s; nothing was submitted",
      job_id, field, what)
  end
  -- the fields' kinds and the required ones: the loader's rules (schema)
  local w, field, msg = schema.check(fields, with)
  if not w then return bad(field, msg == "is required" and REQUIRED_WHY[field] or msg) end
  local queue = w.job_queue_arn or w.job_queue
  local bucket = w.s3_bucket
  local region = region_of(w, getenv)
  if not region then
    return bad("region_name", "is required (or AWS_REGION / a profile region)")
  end
  local spec, serr = jobdef_mod.spec(w, p)
  if not spec then
    local f = serr:match("^with%.([%w_]+)") or "?"
    return bad(f, (serr:gsub("^with%.[%w_]+ ?", "")))
  end
  local timeout = w.timeout
  if timeout == nil and p.timeout ~= nil then
    timeout = tonumber(p.timeout)
    if not timeout or timeout <= 0 then return nil, "policy.timeout must be a positive number of seconds" end
  end
  local envlist, names = {}, {}
  for k in pairs(w.environment or {}) do
    if CREDENTIAL_ENV[k:upper()] then
      return bad("environment." .. k, "must not be set: credentials never go to the container "
        .. "(it gets the job role's through the ECS endpoint)")
    end
    if k:sub(1, 9) == "AWS_BATCH" then return bad("environment." .. k, "is reserved by AWS Batch") end
    names[#names + 1] = k
  end
  sort(names)
  for _, k in ipairs(names) do envlist[#envlist + 1] = { name = k, value = w.environment[k] } end
  for k in pairs(w.secrets or {}) do
    if CREDENTIAL_ENV[k:upper()] or k:sub(1, 9) == "AWS_BATCH" then
      return bad("secrets." .. k, "must not be set: the name is reserved (credentials, AWS Batch)")
    end
  end
  local prefix = w.s3_prefix or p.s3_prefix or ""
  prefix = str_gsub(str_gsub(prefix, "^/+", ""), "/+$", "")
  local run_prefix = prefix == "" and run_id or (prefix .. "/" .. run_id)
  local array = w.array
  if array == nil then array = p.array end
  local keep = w.keep_on_failure
  if keep == nil then keep = p.keep_on_failure end
  return {
    queue = queue, bucket = bucket, region = region, spec = spec, timeout = timeout,
    attempts = w.retry_attempts or 1, environment = envlist, tags = w.tags or {}, prefix = prefix,
    run_prefix = run_prefix, array = array == true or array == "true",
    keep_on_failure = keep == true or keep == "true", log_group = w.log_group or p.log_group,
    share_identifier = w.share_identifier, scheduling_priority = w.scheduling_priority, nodes = spec.nodes,
  }
end

local function endpoints_of(with, region, getenv)
  local ok, cfg = pcall(require("luabatch.config").new, {
    region = region, profile = with.profile, endpoint_url = with.endpoint_url,
    endpoints = { batch = with.batch_endpoint, s3 = with.s3_endpoint, logs = with.logs_endpoint }, env = getenv })
  local out = {}
  if not ok then return out end
  for _, svc in ipairs({ "batch", "s3", "logs" }) do
    local okk, url = pcall(cfg.endpoint, cfg, svc, region)
    if okk and type(url) == "string" then out[svc] = url end
  end
  return out
end

-- with: fields that choose the clients (never credentials): collect()
-- rebuilds the clients from them when the caller gives none.
local CLIENT_FIELDS = { "endpoint_url", "batch_endpoint", "s3_endpoint", "logs_endpoint", "profile" }

local function client_fields(with)
  local out = {}
  for _, f in ipairs(CLIENT_FIELDS) do
    if with[f] ~= nil then out[f] = tostring(with[f]) end
  end
  return out
end

_M.check = check
_M.endpoints = endpoints_of
_M.client_fields = client_fields

return _M
