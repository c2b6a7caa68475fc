-- luabatch.runner.aws_batch: run one job of a workflow on AWS Batch.
--
--   local runner = require "luabatch.runner.aws_batch"
--   local record, jctx = runner.run_job(model, job_id, context, opts)
--   -- or in two halves, without waiting (servers: luabatch.ngx.runs):
--   local submitted = assert(runner.submit(model, job_id, context, opts))
--   ... poll submitted.jobs[i].batch_job_id elsewhere (luabatch.ngx.poller) ...
--   local record, jctx = runner.collect(submitted, summaries, { model = model })
--   -- pacing the strategies itself (luabatch.ngx.drive): submit's opts.strategies
--   -- = { sid, ... } and opts.attempt (job-level retry:), collect's
--   -- opts.keep_run_prefix and opts.retry, submitted.config.timeout /
--   -- .attempts for the client deadline (all below)
--   (see submit / collect below; run_job, submit and collect share the
--   same pieces: the with: check, the clients, Run:prepare/submit/collect)
--
-- Same seam as luabatch.runner.local (see there): opts.env is the engine's
-- stage environment for this job, with env.job_with = the job's effective
-- runs-on `with:` (rendered by the engine), env.run_id, env.runner_opts =
-- { journal, policy, follow, resume }, env.cancelled(), env.log(line).
--
-- What happens (luabatch.workflow.job.execute drives `if`, job retry,
-- max-parallel and fail-fast exactly as locally; this module runs each
-- strategy on Batch):
--   1. with: is checked first (job_queue_arn, s3_bucket, region, resources,
--      platform ...): a bad field gives a FAILED record naming the field and
--      the job; nothing is submitted.
--   2. On the first strategy: the job definition (name + content hash,
--      reused when an ACTIVE revision matches; see aws_batch/jobdef.lua) and
--      the bundle (credentials stripped) uploaded to
--      s3://<bucket>/<s3_prefix>/<run_id>/<job_id>/bundle.json.
--   3. One SubmitJob per strategy (or one array job with with.array), with
--      a poller token each; a lost answer is looked up by name (ListJobs
--      JOB_NAME) and adopted instead of submitted twice.
--   4. All jobs of the run are watched by one poller (aws_batch/session.lua).
--   5. On SUCCEEDED/FAILED: <job_id>/<sid>/result.json is the strategy record
--      (the same record as locally); without one, a FAILED record with the
--      real reason (aws_batch/reason.lua: status reasons, exit code, the last
--      log lines).
--   6. Cancellation (SIGINT/SIGTERM, env.cancelled()) terminates every
--      non-terminal job of the run; fail-fast terminates the siblings; a
--      client deadline (timeout * attempts + margin) terminates too.
--   7. Cleanup by policy: the job's objects and then the run's prefix
--      <s3_prefix>/<run_id>/ — never anything else.
-- Every step is journalled (runner_opts.journal): config, jobdef, upload,
-- submit (before SubmitJob), submitted, state, result, terminate, cleanup;
-- with runner_opts.resume a recorded result is reused, a recorded job id is
-- watched again, and a submit without answer is looked up by name.

local core = require "luabatch.core"
local log = require "luabatch.log"
local job = require "luabatch.workflow.job"
local stage = require "luabatch.workflow.stage"
local policy_mod = require "luabatch.runner.aws_batch.policy"
local jobdef_mod = require "luabatch.runner.aws_batch.jobdef"
local reason_mod = require "luabatch.runner.aws_batch.reason"
local session_mod = require "luabatch.runner.aws_batch.session"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local str_format = string.format
local str_gsub = string.gsub
local str_sub = string.sub
local str_find = string.find
local ceil = math.ceil
local floor = math.floor
local sort = table.sort

local object = stage.object

local CREDENTIAL_ENV = { AWS_ACCESS_KEY_ID = true, AWS_SECRET_ACCESS_KEY = true, AWS_SESSION_TOKEN = true,
                         AWS_SECURITY_TOKEN = true }
local SUBMIT_TRIES = 6

local function json() return require "luabatch.json" end

---------------------------------------------------------------------------
-- with: -> a checked configuration
---------------------------------------------------------------------------

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

-- check(with, job_id, policy, getenv) -> cfg | nil, message
local function check(with, job_id, p, getenv, run_id)
  local function bad(field, what)
    return nil, str_format("job '%s': runs-on aws_batch: with.%s %s; nothing was submitted",
      job_id, field, what)
  end
  local queue = str_field(with, "job_queue_arn") or str_field(with, "job_queue")
  if not queue then return bad("job_queue_arn", "is required (the Batch job queue name or ARN)") end
  local bucket = str_field(with, "s3_bucket")
  if not bucket then return bad("s3_bucket", "is required (the bucket the run's bundle and results go to)") end
  local region = region_of(with, getenv)
  if not region then
    return bad("region_name", "is required (or AWS_REGION / a profile region)")
  end
  local spec, serr = jobdef_mod.spec(with, p)
  if not spec then
    local field = serr:match("^with%.([%w_]+)") or "?"
    return bad(field, (serr:gsub("^with%.[%w_]+ ?", "")))
  end
  local timeout = with.timeout
  if timeout == nil then timeout = p.timeout end
  if timeout ~= nil then
    timeout = tonumber(timeout)
    if not timeout or timeout <= 0 then return bad("timeout", "must be a positive number of seconds") end
  end
  local attempts = tonumber(with.retry_attempts or 1)
  if not attempts or attempts < 1 or attempts > 10 or attempts ~= floor(attempts) then
    return bad("retry_attempts", "must be a whole number from 1 to 10")
  end
  local envlist = {}
  if with.environment ~= nil then
    if type(with.environment) ~= "table" then return bad("environment", "must be a map of names to values") end
    local names = {}
    for k, v in pairs(with.environment) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean") then
        return bad("environment", "must map names to strings")
      end
      if CREDENTIAL_ENV[k:upper()] then
        return bad("environment." .. k, "must not be set: credentials never go to the container "
          .. "(it gets the job role's through the ECS endpoint)")
      end
      if k:sub(1, 9) == "AWS_BATCH" then return bad("environment." .. k, "is reserved by AWS Batch") end
      names[#names + 1] = k
    end
    sort(names)
    for _, k in ipairs(names) do envlist[#envlist + 1] = { name = k, value = tostring(with.environment[k]) } end
  end
  local tags = {}
  if with.tags ~= nil then
    if type(with.tags) ~= "table" then return bad("tags", "must be a map of strings") end
    for k, v in pairs(with.tags) do
      if type(k) ~= "string" then return bad("tags", "must be a map of strings") end
      tags[k] = tostring(v)
    end
  end
  local prefix = str_field(with, "s3_prefix") or p.s3_prefix or ""
  prefix = str_gsub(str_gsub(prefix, "^/+", ""), "/+$", "")
  local run_prefix = prefix == "" and run_id or (prefix .. "/" .. run_id)
  local array = with.array
  if array == nil then array = p.array end
  local keep = with.keep_on_failure
  if keep == nil then keep = p.keep_on_failure end
  return {
    queue = queue, bucket = bucket, region = region, spec = spec, timeout = timeout,
    attempts = attempts, environment = envlist, tags = tags, prefix = prefix, run_prefix = run_prefix,
    array = array == true or array == "true", keep_on_failure = keep == true or keep == "true",
    log_group = str_field(with, "log_group") or p.log_group,
  }
end

---------------------------------------------------------------------------
-- Records
---------------------------------------------------------------------------

local function info_since(t0) return stage.info(t0, stage.now()) end

local function failed_record(combo, t0, err)
  return { status = "FAILED", matrix = combo.values, stages = object(), errors = err, info = info_since(t0) }
end

local function cancel_record(combo, t0, message)
  return { status = "CANCEL", matrix = combo.values, stages = object(),
           errors = { name = "JobCancelError", message = message }, info = info_since(t0) }
end

local function error_of(message)
  return { name = reason_mod.ERROR_NAME, message = message }
end

---------------------------------------------------------------------------
-- One run_job: the job's state on Batch
---------------------------------------------------------------------------

local Run = {}
Run.__index = Run

function Run:key(sid, attempt)
  return self.job_id .. "/" .. sid .. "/" .. tostring(attempt)
end

function Run:s3key(...)
  local parts = { self.cfg.run_prefix, self.job_id, ... }
  local out = {}
  for i, p in ipairs(parts) do out[i] = tostring(p) end
  return table.concat(out, "/")
end

-- The credentials provider the clients sign with (its secrets must not
-- reach the bundle) -> provider | nil (a client without the accessor).
local function credentials_of(c)
  local s3 = c.s3
  if type(s3) ~= "table" or type(s3.credentials) ~= "function" then return nil end
  local ok, p = pcall(s3.credentials, s3)
  if ok and type(p) == "table" then return p end
  return nil
end

-- The job definition and the bundle, once per run_job.
function Run:prepare()
  if self.prepared then return true end
  if self.prepare_error then return nil, self.prepare_error end
  local s, c, cfg = self.s, self.c, self.cfg
  local def, msg = jobdef_mod.ensure(c.batch, cfg.spec, s.jobdefs)
  if not def then
    self.prepare_error = str_format("job '%s': job definition %s: %s", self.job_id, cfg.spec.name, tostring(msg))
    return nil, self.prepare_error
  end
  if not s.jobdefs_journalled then s.jobdefs_journalled = {} end
  if not s.jobdefs_journalled[def.arn] then
    s.jobdefs_journalled[def.arn] = true
    s:append({ ev = "jobdef", name = def.name, arn = def.arn, revision = def.revision, hash = def.hash,
               registered = def.registered })
  end
  self.def = def
  local bundle = require "luabatch.runner.aws_batch.bundle"
  local combos = job.strategies(self.jobdef)
  local results = "s3://" .. cfg.bucket .. "/" .. self:s3key() .. "/"
  -- the registry modules / workflow files of call: and trigger: stages (bundle.collect_files)
  local files, notes = bundle.collect_files(self.jobdef, self.env, { max_bytes = s.policy.bundle_files_max,
    secrets = bundle.secrets_of(self.with, self.env.getenv, credentials_of(c)) })
  if not files then
    self.prepare_error = str_format("job '%s': bundle: %s", self.job_id, tostring(notes))
    return nil, self.prepare_error
  end
  for _, note in ipairs(notes or {}) do
    log.debug("aws_batch: job '%s': bundle: %s", self.job_id, tostring(note))
  end
  local ok, t = pcall(bundle.build, { run_id = s.run_id, workflow = self.model.name, job_id = self.job_id,
    jobdef = self.jobdef, context = self.wctx, strategies = combos, results = results, files = files })
  if not ok then
    self.prepare_error = str_format("job '%s': bundle: %s", self.job_id, tostring(t))
    return nil, self.prepare_error
  end
  local text = bundle.encode(t)
  -- belt and braces: no credential from with: may reach the bucket
  for _, f in ipairs({ "aws_secret_access_key", "aws_session_token", "aws_access_key_id" }) do
    local v = self.with[f]
    if type(v) == "string" and #v >= 8 and str_find(text, v, 1, true) then
      self.prepare_error = str_format("job '%s': refusing to upload the bundle: it contains with.%s",
        self.job_id, f)
      return nil, self.prepare_error
    end
  end
  local key = self:s3key("bundle.json")
  local put, perr = c.s3:put_object(cfg.bucket, key, text, { content_type = "application/json" })
  if not put then
    self.prepare_error = str_format("job '%s': upload s3://%s/%s: %s", self.job_id, cfg.bucket, key, tostring(perr))
    return nil, self.prepare_error
  end
  s:append({ ev = "upload", job_id = self.job_id, bucket = cfg.bucket, key = key })
  self.bundle_url = "s3://" .. cfg.bucket .. "/" .. key
  self.prepared = true
  return true
end

-- The container environment (never a credential).
function Run:container_env()
  local out = {
    { name = "LUABATCH_RUN_ID", value = self.s.run_id },
    { name = "AWS_REGION", value = self.cfg.region },
  }
  local ep, src
  if self.c.s3.endpoint then
    local ok, u, sr = pcall(self.c.s3.endpoint, self.c.s3)
    if ok then ep, src = u, sr end
  else
    ep = self.with.s3_endpoint or self.with.endpoint_url
    src = ep and "explicit" or "default"
  end
  if ep and src ~= "default" then out[#out + 1] = { name = "AWS_ENDPOINT_URL_S3", value = ep } end
  for _, e in ipairs(self.cfg.environment) do out[#out + 1] = e end
  return out
end

function Run:submit_request(name, sid, array_size)
  local cfg, p = self.cfg, self.s.policy
  local tags = { ["luabatch:run"] = self.s.run_id, ["luabatch:workflow"] = tostring(self.model.name or "?"),
                 ["luabatch:job"] = self.job_id }
  for k, v in pairs(cfg.tags) do tags[k] = v end
  local req = {
    jobName = name, jobQueue = cfg.queue, jobDefinition = self.def.arn,
    parameters = { bundle = self.bundle_url, strategy = sid },
    containerOverrides = { environment = self:container_env() },
    retryStrategy = p.retry_strategy(self.with, p),
    tags = tags, propagateTags = true,
  }
  if cfg.timeout then
    local t = ceil(cfg.timeout)
    if t < (p.min_timeout or 60) then t = p.min_timeout or 60 end
    req.timeout = { attemptDurationSeconds = t }
  end
  if array_size then req.arrayProperties = { size = array_size } end
  return req
end

-- One SubmitJob that is never sent twice: no retries in the request path,
-- and the body given as a reader, so libcurl cannot silently resend it on a
-- fresh connection when a kept-alive one died after taking the request (a
-- lost answer is looked up by name instead, see Run:submit).
-- Under nginx (session_mod.ngx()) the body is a plain string instead: the
-- ngx transport takes strings only, and nginx sends a POST once
-- (proxy_pass never passes a non-idempotent request to a next upstream by
-- default; the timer path writes it once on a cosocket).
local function submit_once(batch, req)
  if type(batch.client) == "function" then
    local client = batch:client()
    if type(client) == "table" and client.send then
      local body = require("cjson").encode(req)
      local o = { method = "POST", path = "/v1/submitjob",
        headers = { { "Content-Type", "application/json" } },
        payload_hash = core.sha256(body),
        operation = "SubmitJob", resource = "queue " .. tostring(req.jobQueue) .. " (job " .. req.jobName .. ")",
        retry = false }
      if session_mod.ngx() then
        o.body = body
      else
        local sent = false
        o.body_reader = function()
          if sent then return "" end
          sent = true
          return body
        end
        o.body_length = #body
      end
      local resp, msg, code = client:send(o)
      if not resp then return nil, msg, code end
      return resp.json
    end
  end
  return batch:submit_job(req)
end

-- ListJobs JOB_NAME on the queue -> job id | nil
function Run:find_by_name(name)
  local found
  for sj, msg in self.c.batch:list_jobs({ jobQueue = self.cfg.queue,
      filters = { { name = "JOB_NAME", values = { name } } } }) do
    if not sj then
      log.warn("aws_batch: ListJobs for %s: %s", name, tostring(msg))
      return nil
    end
    if sj.jobName == name and not found then found = sj.jobId end
  end
  return found
end

-- Submit (or adopt) the Batch job of a journal key -> job id | nil, msg
function Run:submit(key, name, sid, array_size)
  local s, c = self.s, self.c
  local js = s.state and s.state.jobs and s.state.jobs[key]
  if js and js.batch_job_id then
    log.info("aws_batch: %s: watching %s again (journal)", key, js.batch_job_id)
    return js.batch_job_id, "journal"
  end
  if js then
    local id = self:find_by_name(js.job_name or name)
    if id then
      s:append({ ev = "submitted", key = key, batch_job_id = id, job_name = js.job_name or name, adopted = true })
      return id, "adopted"
    end
  end
  local ok, perr = self:prepare()
  if not ok then return nil, perr end
  local req = self:submit_request(name, sid, array_size)
  s:append({ ev = "submit", key = key, job_id = self.job_id, strategy_id = sid, attempt = self.attempt_of[key],
             job_name = name, array_size = array_size })
  local last
  for try = 1, SUBMIT_TRIES do
    local tok, tmsg, tcode = c.poller:take()
    if not tok and tcode == "ECANCELED" then return nil, "cancelled before SubmitJob" end
    local ans, msg, code = submit_once(c.batch, req)
    if ans and ans.jobId then
      c.poller:ok()
      s:append({ ev = "submitted", key = key, batch_job_id = ans.jobId, job_name = name })
      return ans.jobId, "submitted"
    end
    last = msg
    if code and session_mod.THROTTLE[code] then
      c.poller:throttled()
    elseif code == "ClientException" or (type(code) == "string" and code:match("^HTTP_4")) or code == "ECANCELED" then
      return nil, tostring(msg)
    else
      -- ServerException / 5xx / the connection failed after sending: the
      -- job may exist; find it by its (unique) name before trying again
      local id = self:find_by_name(name)
      if id then
        log.warn("aws_batch: SubmitJob %s: %s; adopting job %s found by name", name, tostring(msg), id)
        s:append({ ev = "submitted", key = key, batch_job_id = id, job_name = name, adopted = true })
        return id, "adopted"
      end
      s:nap(math.min(8, 0.2 * 2 ^ try))
    end
  end
  return nil, "SubmitJob " .. name .. ": " .. tostring(last)
end

function Run:watch(id, key, label)
  self.touched = true
  self.watched[#self.watched + 1] = id
  return self.s:watch(self.c, id, { key = key, label = label, log_group = self.cfg.log_group })
end

-- The stop question a waiting strategy asks: "cancel" | "fail-fast" | nil
function Run:stopper(senv)
  local env, s = self.env, self.s
  return function()
    if s.cancelled then return "cancel" end
    if env.cancelled and env.cancelled() then return "cancel" end
    if core.interrupted() then return "cancel" end
    if senv and senv.cancelled and senv.cancelled() then return "fail-fast" end
    return nil
  end
end

function Run:cancel_reason()
  local p = self.s.policy
  if self.s.cancelled then return self.s.cancelled end
  if core.interrupted() then return p.terminate_reason .. " (interrupted)" end
  return p.terminate_reason
end

-- Read result.json or explain the failure -> strategy record.
function Run:collect(w, combo, t0, key)
  local s, c, cfg = self.s, self.c, self.cfg
  local rkey = self:s3key(combo.id, "result.json")
  local body, msg, code = c.s3:get_object(cfg.bucket, rkey)
  local note
  if body then
    local rec, derr = json().decode(body, "s3://" .. cfg.bucket .. "/" .. rkey)
    if type(rec) == "table" and type(rec.status) == "string" then
      return rec
    end
    note = "result.json is not a strategy record: " .. tostring(derr)
  elseif code ~= "NoSuchKey" and code ~= "NotFound" then
    note = str_format("cannot read s3://%s/%s: %s", cfg.bucket, rkey, tostring(msg))
  elseif w.status == "SUCCEEDED" then
    note = "the job succeeded but wrote no result.json"
  end
  local f = reason_mod.facts(w.job or { status = w.status, statusReason = w.reason, jobId = w.id })
  if w.status == "MISSING" then f.status = "MISSING"; f.kind = "missing" end
  if cfg.log_group and f.log_group == "/aws/batch/job" then f.log_group = cfg.log_group end
  local lines, lnote = reason_mod.log_tail(c.logs, f.log_group, f.log_stream, s.policy.log_lines)
  if lnote then note = (note and (note .. "; ") or "") .. lnote end
  return failed_record(combo, t0, reason_mod.error(f, lines, {
    job_name = w.name, batch_job_id = w.id, note = note, key = key }))
end

function Run:record_result(key, rec)
  self.s:append({ ev = "result", key = key, status = rec.status, record = rec })
end

-- Finish a waited strategy: terminate on stop, else collect.
function Run:finish(w, combo, t0, key, why)
  local s, p = self.s, self.s.policy
  if why == "cancel" then
    local reason = self:cancel_reason()
    s:terminate_all(reason)
    return cancel_record(combo, t0, str_format("Strategy execution was canceled: AWS Batch job %s (%s) "
      .. "terminated: %s", tostring(w.name), w.id, reason))
  elseif why == "fail-fast" then
    s:terminate(self.c, w, p.fail_fast_reason)
    return cancel_record(combo, t0, str_format("Strategy execution was canceled: AWS Batch job %s (%s) "
      .. "terminated: %s", tostring(w.name), w.id, p.fail_fast_reason))
  elseif why == "deadline" then
    -- an array child is already terminated through its parent: one call
    if not w.terminated then s:terminate(self.c, w, p.deadline_reason) end
    return failed_record(combo, t0, error_of(str_format("AWS Batch job %s (%s): %s (timeout %s s x %d "
      .. "attempts + %s s margin); terminated", tostring(w.name), w.id, p.deadline_reason,
      tostring(self.cfg.timeout), self.cfg.attempts, tostring(p.deadline_margin))))
  elseif why then
    -- we lost sight of it: do not leave it running unobserved
    s:terminate(self.c, w, "luabatch: client gave up watching: " .. str_sub(tostring(why), 1, 200))
    return failed_record(combo, t0, error_of(str_format("AWS Batch job %s (%s): %s; terminated",
      tostring(w.name), w.id, tostring(why))))
  end
  return self:collect(w, combo, t0, key)
end

function Run:deadline()
  if not self.cfg.timeout then return nil end
  return self.s:now() + self.cfg.timeout * self.cfg.attempts + (self.s.policy.deadline_margin or 600)
end

local function recorded(s, key)
  local r = s.state and s.state.results and s.state.results[key]
  if type(r) == "table" then
    if type(r.record) == "table" then return r.record end
    if type(r.status) == "string" then return r end
  end
  return nil
end

-- exec.strategy: one Batch job for one strategy.
function Run:strategy(combo, wctx, senv, group)
  local s, p = self.s, self.s.policy
  local t0 = stage.now()
  local attempt = tonumber(senv and senv.attempt) or 0
  local sid = combo.id
  local key = self:key(sid, attempt)
  local rec = recorded(s, key)
  if rec then return rec end
  local stop = self:stopper(senv)
  local why = stop()
  if why then
    return cancel_record(combo, t0, "Strategy execution was canceled from the event before start stage execution.")
  end
  local name = policy_mod.job_name(p, { run_id = s.run_id, job_id = self.job_id, strategy_id = sid,
    attempt = attempt, workflow = self.model.name })
  self.attempt_of[key] = attempt
  if attempt > 0 then
    -- a result.json left by an earlier attempt must not be read as this one's
    pcall(self.c.s3.delete_object, self.c.s3, self.cfg.bucket, self:s3key(sid, "result.json"))
  end
  local id, how = self:submit(key, name, sid, nil)
  if not id then
    rec = failed_record(combo, t0, error_of(str_format("job '%s' strategy %s: %s", self.job_id, sid, tostring(how))))
    self:record_result(key, rec)
    return rec
  end
  local w = self:watch(id, key, self.job_id .. "/" .. sid)
  w.name = name
  local ok, werr = s:wait(self.c, { w }, stop, self.env, self:deadline())
  rec = self:finish(w, combo, t0, key, not ok and werr or nil)
  if rec.status ~= "CANCEL" then self:record_result(key, rec) end
  return rec
end

-- exec.all with with.array: one array job for every strategy.
function Run:all(combos, wctx, aenv, group)
  local s, p = self.s, self.s.policy
  local attempt = tonumber(aenv and aenv.attempt) or 0
  local function senv_of()
    return setmetatable({ cancelled = function()
      return group.cancel or (aenv.cancelled and aenv.cancelled()) or false
    end }, { __index = aenv })
  end
  if #combos < 2 then
    -- an array needs 2..10000 children: a single strategy is a plain job
    local out = {}
    for i, combo in ipairs(combos) do out[i] = self:strategy(combo, wctx, senv_of(), group) end
    return out
  end
  local t0 = stage.now()
  local out, missing = {}, false
  for i, combo in ipairs(combos) do
    out[i] = recorded(s, self:key(combo.id, attempt))
    if not out[i] then missing = true end
  end
  if not missing then return out end
  local stop = self:stopper(senv_of())
  if stop() then
    for i, combo in ipairs(combos) do
      out[i] = out[i] or cancel_record(combo, t0,
        "Strategy execution was canceled from the event before start stage execution.")
    end
    return out
  end
  local akey = self:key("@array", attempt)
  local name = policy_mod.job_name(p, { run_id = s.run_id, job_id = self.job_id, strategy_id = "array",
    attempt = attempt, workflow = self.model.name })
  self.attempt_of[akey] = attempt
  if attempt > 0 then
    for _, combo in ipairs(combos) do
      pcall(self.c.s3.delete_object, self.c.s3, self.cfg.bucket, self:s3key(combo.id, "result.json"))
    end
  end
  local id, how = self:submit(akey, name, "@array", #combos)
  if not id then
    for i, combo in ipairs(combos) do
      out[i] = out[i] or failed_record(combo, t0, error_of(str_format("job '%s' array: %s", self.job_id,
        tostring(how))))
    end
    return out
  end
  local parent = self:watch(id, akey, self.job_id .. "/@array")
  parent.name = name
  local ws = {}
  for i, combo in ipairs(combos) do
    local cw = self:watch(id .. ":" .. (i - 1), self:key(combo.id, attempt), self.job_id .. "/" .. combo.id)
    cw.name = name .. "[" .. (i - 1) .. "]"
    ws[i] = cw
  end
  local fail_fast = group.fail_fast
  local function astop()
    local why = stop()
    if why then return why end
    if fail_fast then
      for _, cw in ipairs(ws) do
        if cw.status == "FAILED" and not cw.terminated then return "fail-fast" end
      end
    end
    return nil
  end
  local ok, werr = s:wait(self.c, ws, astop, self.env, self:deadline())
  local why = not ok and werr or nil
  if why == "cancel" then
    s:terminate_all(self:cancel_reason())
  elseif why == "fail-fast" or why == "deadline" then
    local tok = s:terminate(self.c, parent, why == "deadline" and p.deadline_reason or p.fail_fast_reason)
    -- Batch ends the children with their parent; if that call failed, the
    -- deadline path below terminates each child itself
    if tok or why == "fail-fast" then
      for _, cw in ipairs(ws) do if not cw.final then cw.terminated = cw.terminated or parent.terminated end end
    end
    if why == "fail-fast" then group.cancel = true end
  end
  for i, combo in ipairs(combos) do
    local cw = ws[i]
    local key = self:key(combo.id, attempt)
    if out[i] then
      -- recorded earlier (resume)
    elseif cw.final and not (why == "cancel" and cw.status ~= "SUCCEEDED" and cw.status ~= "FAILED") then
      out[i] = self:collect(cw, combo, t0, key)
      self:record_result(key, out[i])
    elseif why == "deadline" then
      out[i] = self:finish(cw, combo, t0, key, "deadline")
    else
      out[i] = cancel_record(combo, t0, str_format("Strategy execution was canceled: AWS Batch array job %s "
        .. "(%s) terminated: %s", name, id, tostring(parent.terminated or self:cancel_reason())))
    end
  end
  return out
end

-- Cleanup by policy: the job's objects, then (when no other job of the
-- run is active here, and not self.keep_run_prefix: collect's opts) the
-- run's prefix.  Never anything outside it.
function Run:cleanup(status)
  local s, cfg = self.s, self.cfg
  if not self.prepared and not self.touched then return end
  -- after Ctrl-C the flag fails every HTTP call: clear it for the cleanup
  -- and raise it again so the engine and the CLI still see it
  local was = core.interrupted()
  if was then core.clear_interrupt() end
  local ok, err = pcall(self._cleanup, self, status)
  if was then core.raise_interrupt() end
  if not ok then error(err, 0) end
end

function Run:_cleanup(status)
  local s, cfg = self.s, self.cfg
  if status == "CANCEL" or s.cancelled then
    -- terminated tasks may still be uploading their CANCEL records
    log.info("aws_batch: run cancelled: s3://%s/%s/ is kept (luabatch cleanup %s removes it)", cfg.bucket,
      cfg.run_prefix, s.run_id)
    s.kept = true
    return
  end
  if not policy_mod.should_cleanup(s.policy, status, cfg.keep_on_failure) then
    log.info("aws_batch: keeping s3://%s/%s/ (cleanup policy %s, status %s)", cfg.bucket, cfg.run_prefix,
      s.policy.cleanup, status)
    s.kept = true
    return
  end
  local run_id = s.run_id
  local function delete(prefix)
    -- the prefix must be inside this run's own prefix
    local tail = "/" .. run_id .. "/"
    local probe = "/" .. prefix
    local inside = str_sub(probe, 1, #("/" .. cfg.run_prefix .. "/")) == "/" .. cfg.run_prefix .. "/"
    if not inside or not str_find(probe, tail, 1, true) or str_sub(prefix, -1) ~= "/" then
      error("aws_batch: refusing to delete s3://" .. cfg.bucket .. "/" .. prefix .. " (outside the run prefix)", 0)
    end
    local n, errs = self.c.s3:delete_prefix(cfg.bucket, prefix)
    if not n then
      log.warn("aws_batch: cleanup s3://%s/%s: %s", cfg.bucket, prefix, tostring(errs))
      return
    end
    s:append({ ev = "cleanup", bucket = cfg.bucket, prefix = prefix, deleted = n })
  end
  delete(cfg.run_prefix .. "/" .. self.job_id .. "/")
  if s.active <= 1 and not s.kept and not self.keep_run_prefix then
    local run_prefix = cfg.run_prefix .. "/"
    assert(str_sub("/" .. run_prefix, -(#run_id + 2)) == "/" .. run_id .. "/")
    delete(run_prefix)
  end
end

---------------------------------------------------------------------------
-- The seam
---------------------------------------------------------------------------

local function failed_job(jobdef, t0, message)
  local jctx = { status = "FAILED", errors = { name = "JobError", message = message }, info = info_since(t0) }
  return job.record(jobdef, jctx), jctx
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

-- What run_job, submit and collect share: the job's env (the engine's, or
-- one made for a direct call), its checked with:, the session, the clients
-- and a Run.  -> run | nil, message (with: rejected), jobdef, t0
local function open_run(fname, model, job_id, context, opts)
  local jobdef, env, wctx = require("luabatch.runner.local").open(fname, model, job_id, context, opts, 2)
  local t0 = stage.now()
  local with = env.job_with
  if with == nil then with = (jobdef.runs_on and jobdef.runs_on.with) or {} end
  local s = session_mod.get(env)
  local cfg, cerr = check(with, job_id, s.policy, env.getenv, s.run_id)
  if not cfg then return nil, cerr, jobdef, t0 end
  local c = s:clients(with, cfg.region, env.getenv)
  local run = setmetatable({ s = s, c = c, cfg = cfg, with = with, model = model, job_id = job_id,
    jobdef = jobdef, env = env, wctx = wctx, watched = {}, attempt_of = {} }, Run)
  return run, nil, jobdef, t0
end

function Run:append_config()
  local cfg = self.cfg
  self.s:append({ ev = "config", job_id = self.job_id, queue = cfg.queue, bucket = cfg.bucket,
    prefix = cfg.run_prefix, region = cfg.region, endpoints = endpoints_of(self.with, cfg.region, self.env.getenv),
    log_group = cfg.log_group, platform = cfg.spec.platform })
end

function _M.run_job(model, job_id, context, opts)
  local run, cerr, jobdef, t0 = open_run("run_job", model, job_id, context, opts)
  if not run then return failed_job(jobdef, t0, cerr) end
  local s, c, cfg, env, wctx = run.s, run.c, run.cfg, run.env, run.wctx
  run:append_config()
  local exec = {
    strategy = function(_, combo, w, senv, group) return run:strategy(combo, w, senv, group) end,
  }
  if cfg.array then
    exec.all = function(_, combos, w, aenv, group) return run:all(combos, w, aenv, group) end
  end
  s.active = s.active + 1
  local ok, jctx = pcall(job.execute, jobdef, wctx, env, exec)
  if not ok then
    -- a bug or an unexpected failure: leave nothing running behind
    log.error("aws_batch: job '%s': %s", job_id, tostring(jctx))
    for _, id in ipairs(run.watched) do
      local w = c.watched[id]
      if w and not w.final and not w.terminated then
        s:terminate(c, w, "luabatch: client error: " .. str_sub(tostring(jctx), 1, 200))
      end
    end
    s.active = s.active - 1
    return failed_job(jobdef, t0, str_format("job '%s' on AWS Batch: %s", job_id, tostring(jctx)))
  end
  for _, id in ipairs(run.watched) do s:unwatch(c, id) end
  local cok, cerr2 = pcall(run.cleanup, run, jctx.status)
  if not cok then log.error("%s", tostring(cerr2)) end
  s.active = s.active - 1
  return job.record(jobdef, jctx), jctx
end

---------------------------------------------------------------------------
-- Submit now, collect later (no waiting: for servers such as nginx)
---------------------------------------------------------------------------

-- with: fields that choose the clients (never credentials): collect()
-- rebuilds the clients from them when the caller gives none.
local CLIENT_FIELDS = { "endpoint_url", "batch_endpoint", "s3_endpoint", "logs_endpoint", "profile" }

--- submit(model, job_id, context, opts) -> submitted | nil, msg, code
-- The first half of run_job without any waiting: with: checked, the job
-- definition ensured, the bundle uploaded, one SubmitJob per strategy (or
-- one array job with with.array) — and back.  opts as run_job's (opts.env
-- = the engine's job env: job_with, run_id, runner_opts; runner_opts.sleep
-- / clock default to ngx.sleep / ngx.now inside nginx; the token bucket and
-- the retry of a failed SubmitJob may sleep with them).
-- NOT done here, unlike run_job: max-parallel (every strategy is submitted
-- at once: Batch's queue and compute environment limit what runs), fail-fast
-- (collect() reports each strategy as it ended), job-level `retry:` (one
-- attempt per call: the caller submits again with opts.attempt; Batch-level
-- with.retry_attempts still applies), the client deadline, following logs.
-- The journal (runner_opts.journal) is optional, as in run_job.
-- opts.strategies = { "<strategy id>", ... }: submit only these (one plain
-- job each, in that order; with.array is not used then) for a caller that
-- paces the strategies itself (max-parallel, fail-fast: luabatch.ngx.drive).
-- The bundle still carries every strategy, so a later submit of the others
-- uploads the same bundle and reuses the job definition; the caller
-- appends the later submitted.jobs to the first table.  Every SubmitJob's
-- outcome is an entry of submitted.jobs (no "ESUBMIT"); an empty list
-- checks with:, `if` and the matrix and submits nothing.  An id the job's
-- matrix does not have raises.
-- opts.attempt = k (default 0): the job-level `retry:` attempt, as run_job's
-- exec gets it: keys "<job>/<sid>/<k>", job names with k, and for k > 0 the
-- result.json of each strategy submitted (every strategy with an array job)
-- is deleted first, so an earlier attempt's is never read as this one's.
-- submitted (plain data, JSON-safe: a server can keep it anywhere) =
--   { format = "luabatch-submitted/1", run_id, workflow, job_id,
--     skip = true (the job's `if` was false: nothing submitted) | nil,
--     jobs = { { key, strategy_id, batch_job_id, job_name } | { key,
--              strategy_id, job_name, error = msg } (its SubmitJob failed), ... },
--     array = { key, batch_job_id, job_name } (with.array) | nil,
--     results = "s3://bucket/<run prefix>/<job_id>/",
--     config = { queue, bucket, prefix (run prefix), region, log_group,
--                keep_on_failure, array (with.array / policy.array),
--                timeout (with.timeout / policy.timeout, s; nil: none),
--                attempts (with.retry_attempts), client = { endpoint
--                fields of with: } },
--     (the client deadline of run_job, Run:deadline(), is timeout * attempts
--     + policy.deadline_margin from each SubmitJob: a caller that waits
--     elsewhere enforces it itself with config.timeout / config.attempts)
--     context = { params, jobs } }
-- An array child is watched as "<array job id>:<index>".
-- Failure codes: "EWITH" (with: rejected, nothing submitted), "EJOB" (the
-- job's `if` or matrix is invalid), "ESUBMIT" (no job could be submitted:
-- job definition, bundle upload or SubmitJob; msg says which).
function _M.submit(model, job_id, context, opts)
  local only = opts and opts.strategies
  if only ~= nil and type(only) ~= "table" then
    error("bad argument #4 to 'submit' (opts.strategies: a list of strategy ids expected, got "
      .. type(only) .. ")", 2)
  end
  local attempt = opts and opts.attempt or 0
  if type(attempt) ~= "number" or attempt < 0 or attempt ~= floor(attempt) then
    error("bad argument #4 to 'submit' (opts.attempt: a whole number >= 0 expected)", 2)
  end
  local run, cerr = open_run("submit", model, job_id, context, opts)
  if not run then return nil, cerr, "EWITH" end
  local s, cfg, env, wctx = run.s, run.cfg, run.env, run.wctx
  run:append_config()
  local client = {}
  for _, f in ipairs(CLIENT_FIELDS) do
    if run.with[f] ~= nil then client[f] = tostring(run.with[f]) end
  end
  local submitted = {
    format = "luabatch-submitted/1", run_id = s.run_id, workflow = model.name, job_id = job_id,
    jobs = {}, results = "s3://" .. cfg.bucket .. "/" .. run:s3key() .. "/",
    config = { queue = cfg.queue, bucket = cfg.bucket, prefix = cfg.run_prefix, region = cfg.region,
               log_group = cfg.log_group, keep_on_failure = cfg.keep_on_failure, array = cfg.array,
               timeout = cfg.timeout, attempts = cfg.attempts, client = client },
    context = { params = wctx.params, jobs = wctx.jobs },
  }
  local go, gerr = stage.condition(run.jobdef["if"], wctx, env)
  if go == nil then return nil, str_format("job '%s': if: %s", job_id, tostring(gerr)), "EJOB" end
  if go == false then
    submitted.skip = true
    return submitted
  end
  local combos, serr = job.strategies(run.jobdef)
  if not combos then
    return nil, str_format("job '%s': strategy: %s", job_id, tostring(type(serr) == "table" and serr.message
      or serr)), "EJOB"
  end
  local p = s.policy
  local function name_of(sid)
    return policy_mod.job_name(p, { run_id = s.run_id, job_id = job_id, strategy_id = sid, attempt = attempt,
      workflow = model.name })
  end
  -- a result.json left by an earlier attempt must not be read as this one's
  local function forget(list)
    if attempt == 0 then return end
    for _, sid in ipairs(list) do
      pcall(run.c.s3.delete_object, run.c.s3, cfg.bucket, run:s3key(sid, "result.json"))
    end
  end
  local sids = {}
  for i, combo in ipairs(combos) do sids[i] = combo.id end
  if only ~= nil then
    -- a caller pacing the strategies itself (luabatch.ngx.drive): these only
    local known = {}
    for _, sid in ipairs(sids) do known[sid] = true end
    for i, sid in ipairs(only) do
      if not known[sid] then
        error("bad argument #4 to 'submit' (opts.strategies[" .. i .. "]: job '" .. job_id
          .. "' has no strategy '" .. tostring(sid) .. "')", 2)
      end
    end
    sids = only
  elseif cfg.array and #combos >= 2 then
    local akey, name = run:key("@array", attempt), name_of("array")
    run.attempt_of[akey] = attempt
    forget(sids)
    local id, how = run:submit(akey, name, "@array", #combos)
    if not id then return nil, tostring(how), "ESUBMIT" end
    submitted.array = { key = akey, batch_job_id = id, job_name = name }
    for i, combo in ipairs(combos) do
      submitted.jobs[i] = { key = run:key(combo.id, attempt), strategy_id = combo.id,
        batch_job_id = id .. ":" .. (i - 1), job_name = name .. "[" .. (i - 1) .. "]" }
    end
    return submitted
  end
  local ok_any, last
  forget(sids)
  for i, sid in ipairs(sids) do
    local key, name = run:key(sid, attempt), name_of(sid)
    run.attempt_of[key] = attempt
    local id, how = run:submit(key, name, sid, nil)
    if id then
      ok_any = true
      submitted.jobs[i] = { key = key, strategy_id = sid, batch_job_id = id, job_name = name }
    else
      last = tostring(how)
      submitted.jobs[i] = { key = key, strategy_id = sid, job_name = name,
        error = str_format("job '%s' strategy %s: %s", job_id, sid, last) }
    end
  end
  if not ok_any and only == nil then return nil, last or "nothing to submit", "ESUBMIT" end
  return submitted
end

-- A JobDetail-shaped table from a poller summary (what reason.facts reads).
local function detail_of(id, sm)
  if type(sm.job) == "table" then return sm.job end
  local d = { jobId = id, status = sm.status, statusReason = sm.reason }
  if sm.exit_code ~= nil or sm.log_stream ~= nil then
    d.container = { exitCode = sm.exit_code, logStreamName = sm.log_stream }
  end
  return d
end

--- collect(submitted, summaries [, opts]) -> record, jctx | nil, msg, code
-- The second half: once every job of `submitted` is terminal, the job
-- record run_job would have given (result.json of each strategy, or the
-- real reason of its failure: status reasons, exit code, last log lines),
-- then cleanup by policy (opts.cleanup = false keeps the run's objects).
-- summaries = { [batch_job_id] = { status, reason, exit_code, log_stream
-- [, job = JobDetail] } } (a poller's summaries; luabatch.ngx.poller keeps
-- them in a shared dict).  opts.model = the loaded workflow (required: the
-- job definition decides the record's shape), opts.getenv, opts.runner_opts
-- (clients / policy / sleep / clock, as for submit), opts.with (with: for
-- the clients; default submitted.config.client), opts.keep_run_prefix =
-- true: the cleanup removes the job's own <run prefix>/<job_id>/ only,
-- never the run's prefix (other jobs of the run are still running, or an
-- earlier job's objects were kept: the caller knows, this call does not),
-- opts.retry = true: the caller runs the job again when this record is
-- FAILED (job-level `retry:`): nothing is cleaned then (run_job cleans
-- once, after the last attempt; the next attempt's collect cleans).
-- Failure: nil, msg, "EAGAIN" while a job is not terminal (msg names it).
function _M.collect(submitted, summaries, opts)
  if type(submitted) ~= "table" or type(submitted.jobs) ~= "table" or type(submitted.config) ~= "table" then
    error("bad argument #1 to 'collect' (submitted table expected)", 2)
  end
  if type(summaries) ~= "table" then
    error("bad argument #2 to 'collect' (table of summaries by job id expected)", 2)
  end
  opts = opts or {}
  local model = opts.model
  if type(model) ~= "table" or type(model.jobs) ~= "table" or not model.jobs[submitted.job_id] then
    error("bad argument #3 to 'collect' (opts.model: the workflow holding job '" .. tostring(submitted.job_id)
      .. "' expected)", 2)
  end
  for _, j in ipairs(submitted.jobs) do
    local sm = j.batch_job_id and summaries[j.batch_job_id]
    if not j.error and not (type(sm) == "table" and session_mod.TERMINAL[sm.status]) then
      return nil, str_format("AWS Batch job %s (%s) is %s", tostring(j.job_name), tostring(j.batch_job_id),
        type(sm) == "table" and tostring(sm.status) or "not polled yet"), "EAGAIN"
    end
  end
  local sc = submitted.config
  local with = opts.with
  if with == nil then
    with = {}
    for k, v in pairs(sc.client or {}) do with[k] = v end
  end
  local base = require("luabatch.workflow.engine").make_env(model, {
    getenv = opts.getenv, run_id = submitted.run_id, runner_opts = opts.runner_opts or {} })
  -- cancelled() = true: job.execute below must not retry the job
  local env = setmetatable({ job_id = submitted.job_id, cancelled = function() return true end },
    { __index = base })
  local s = session_mod.get(env)
  local c = s:clients(with, sc.region, env.getenv)
  local cfg = { bucket = sc.bucket, run_prefix = sc.prefix, region = sc.region, log_group = sc.log_group,
                queue = sc.queue, keep_on_failure = sc.keep_on_failure == true, environment = {}, tags = {} }
  local jobdef = model.jobs[submitted.job_id]
  local ctx = submitted.context or {}
  local wctx = { params = ctx.params or {}, jobs = ctx.jobs or {}, status = "WAIT" }
  local run = setmetatable({ s = s, c = c, cfg = cfg, with = with, model = model, job_id = submitted.job_id,
    jobdef = jobdef, env = env, wctx = wctx, watched = {}, attempt_of = {}, touched = true,
    keep_run_prefix = opts.keep_run_prefix == true }, Run)
  local t0 = stage.now()
  local by_sid = {}
  for _, j in ipairs(submitted.jobs) do by_sid[j.strategy_id] = j end
  local exec = { all = function(_, combos)
    local out = {}
    for i, combo in ipairs(combos) do
      local j = by_sid[combo.id]
      if not j then
        out[i] = failed_record(combo, t0, error_of(str_format("job '%s' strategy %s was not submitted",
          submitted.job_id, combo.id)))
      elseif j.error then
        out[i] = failed_record(combo, t0, error_of(j.error))
      else
        local sm = summaries[j.batch_job_id]
        local w = { id = j.batch_job_id, status = sm.status, reason = sm.reason, name = j.job_name,
                    job = detail_of(j.batch_job_id, sm) }
        out[i] = run:collect(w, combo, t0, j.key)
        run:record_result(j.key, out[i])
      end
    end
    return out
  end }
  local jctx = job.execute(jobdef, wctx, env, exec)
  if opts.cleanup ~= false and not submitted.skip and not (opts.retry and jctx.status == "FAILED") then
    s.active = s.active + 1
    local cok, cerr = pcall(run.cleanup, run, jctx.status)
    if not cok then log.error("%s", tostring(cerr)) end
    s.active = s.active - 1
  end
  return job.record(jobdef, jctx), jctx
end

return _M
