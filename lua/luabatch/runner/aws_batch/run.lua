-- luabatch.runner.aws_batch.run: one job's state on AWS Batch (the Run of
-- one run_job / submit / collect call) and the records it gives.
--
--   local run_mod = require "luabatch.runner.aws_batch.run"
--   local run = run_mod.new({ s = session, c = clients, cfg = cfg, with = with,
--     model = model, job_id = job_id, jobdef = jobdef, env = env, wctx = wctx
--     [, touched = true, keep_run_prefix = true] })
--   run:append_config()                       -- the journal's config event
--   run:prepare() -> true | nil, msg          -- job definition + bundle, once
--   run:submit(key, name, sid [, array_size]) -> batch job id, how | nil, msg
--   run:strategy(combo, wctx, senv) -> record  -- one strategy (open_job's handle)
--   run:all(combos, wctx, aenv, group) -> { record, ... } -- with.array
--   run:collect(w, combo, t0, key) -> record  -- result.json or the failure reason
--   run:cleanup(status)                       -- by policy, inside the run prefix only
--   run_mod.failed_record(combo, t0, err) / run_mod.error_of(message)
--   run_mod.failed_job(jobdef, t0, message) -> job record, jctx
--
-- new(): s = the run's session (aws_batch/session.lua), c = s:clients(...),
-- cfg = the checked with: (aws_batch/check.lua), with = the raw with:, env =
-- the engine's job env; touched = objects exist though this Run prepared
-- nothing (collect); keep_run_prefix = cleanup never removes the run prefix.
-- Keys: "<job>/<sid>/<attempt>" (array job "<job>/@array/<k>", children
-- watched as "<array job id>:<index>"); objects under
-- s3://<bucket>/<run prefix>/<job>/ (run:s3key(sid, name)).
-- Records: CANCEL on a stop (cancel, fail-fast), FAILED naming
-- policy.deadline_reason past the client deadline (the plan's stop), else result.json or FAILED
-- with the real reason (aws_batch/reason.lua).  cleanup() raises for a
-- prefix outside the run's.  How each step works: docs/design.md.

local core = require "luabatch.core"
local log = require "luabatch.log"
local job = require "luabatch.workflow.job"
local stage = require "luabatch.workflow.stage"
local policy_mod = require "luabatch.runner.aws_batch.policy"
local jobdef_mod = require "luabatch.runner.aws_batch.jobdef"
local reason_mod = require "luabatch.runner.aws_batch.reason"
local session_mod = require "luabatch.runner.aws_batch.session"
local check_mod = require "luabatch.runner.aws_batch.check"

local _M = { _VERSION = "0.1.0", RESULT_MAX = 64 * 1024 * 1024 }   -- bytes of a result.json

local type = type
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local error = error
local assert = assert
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local str_format = string.format
local str_sub = string.sub
local str_find = string.find
local concat = table.concat
local ceil = math.ceil
local min = math.min

local object = stage.object

local SUBMIT_TRIES = 6

local function json() return require "luabatch.json" end

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

--- terminated_record(combo, t0, job_name, batch_id, reason) -> the CANCEL
-- record of a strategy whose Batch job was terminated (fail-fast, a cancel)
function _M.terminated_record(combo, t0, name, id, reason)
  return cancel_record(combo, t0, str_format("Strategy execution was canceled: AWS Batch job %s (%s) "
    .. "terminated: %s", tostring(name), tostring(id), tostring(reason)))
end

--- deadline_record(combo, t0, policy, job_name, batch_id, timeout, attempts)
-- -> the FAILED record of a strategy ended by the client deadline
function _M.deadline_record(combo, t0, p, name, id, timeout, attempts)
  return failed_record(combo, t0, error_of(str_format("AWS Batch job %s (%s): %s (timeout %s s x %d "
    .. "attempts + %s s margin); terminated", tostring(name), tostring(id), p.deadline_reason,
    tostring(timeout), tonumber(attempts) or 1, tostring(p.deadline_margin))))
end

-- A job that never reached Batch (with: rejected) -> job record, jctx
local function failed_job(jobdef, t0, message)
  local jctx = { status = "FAILED", errors = { name = "JobError", message = message }, info = info_since(t0) }
  return job.record(jobdef, jctx), jctx
end

---------------------------------------------------------------------------
-- One job's state on Batch
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
  return concat(out, "/")
end

-- Where strategy sid's container leaves its record: a watch's result, so
-- the poll cycle that sees it succeed reads it with the others (prefetch).
function Run:result_of(sid)
  return { bucket = self.cfg.bucket, key = self:s3key(sid, "result.json") }
end

-- The journal's config event (what the run talks to).
function Run:append_config()
  local cfg = self.cfg
  self.s:append({ ev = "config", runner = "aws_batch", job_id = self.job_id, queue = cfg.queue, bucket = cfg.bucket,
    prefix = cfg.run_prefix, region = cfg.region,
    endpoints = check_mod.endpoints(self.with, cfg.region, self.env.getenv),
    log_group = cfg.log_group, platform = cfg.spec.platform })
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
  local bundle = require "luabatch.runner.aws_batch.bundle"
  local secrets = bundle.secrets_of(self.with, self.env.getenv, credentials_of(c))
  -- names are checked at load (check.lua); a value such as
  -- "${AWS_SESSION_TOKEN}" is caught here, before the job definition holds it
  for _, e in ipairs(cfg.environment or {}) do
    if not bundle.secret_free(e.value, secrets) then
      self.prepare_error = str_format("job '%s': runs-on aws_batch: with.environment.%s holds a credential of "
        .. "this client; credentials never go to the container (it gets the job role's through the ECS "
        .. "endpoint); nothing was submitted", self.job_id, e.name)
      return nil, self.prepare_error
    end
  end
  local qok, qerr = self:check_queue()
  if not qok then
    self.prepare_error = qerr
    return nil, qerr
  end
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
  local combos = job.strategies(self.jobdef)
  local results = "s3://" .. cfg.bucket .. "/" .. self:s3key() .. "/"
  -- the registry modules / workflow files of call: and trigger: stages (bundle.collect_files)
  local files, notes = bundle.collect_files(self.jobdef, self.env, { max_bytes = s.policy.bundle_files_max,
    secrets = secrets })
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
  -- belt and braces: no credential of this client may reach the bucket
  local checked = { self.with.aws_access_key_id }
  for _, v in ipairs(secrets) do checked[#checked + 1] = v end
  local text, where = bundle.upload_text(t, checked)
  if not text then
    self.prepare_error = str_format("job '%s': refusing to upload the bundle: it contains a credential of "
      .. "this client (%s)", self.job_id, where == "$" and "in its text" or tostring(where))
    return nil, self.prepare_error
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
  if cfg.nodes then       -- a multi-node job: the overrides go to every node
    req.nodeOverrides = { nodePropertyOverrides = { { targetNodes = "0:", containerOverrides = req.containerOverrides } } }
    req.containerOverrides = nil
  end
  req.shareIdentifier = cfg.share_identifier
  req.schedulingPriorityOverride = cfg.scheduling_priority
  return req
end

-- A fair-share queue (one with a scheduling policy) wants a share
-- identifier, and only such a queue takes one: known before the job's first
-- SubmitJob (DescribeJobQueues, once per queue and session) -> true | nil,
-- msg.  A queue that cannot be described is left to SubmitJob.
function Run:check_queue()
  local s, c, cfg = self.s, self.c, self.cfg
  s.queues = s.queues or {}
  local q = s.queues[cfg.queue]
  if q == nil then
    local ok, ans = pcall(c.batch.describe_job_queues, c.batch, { cfg.queue })
    q = ok and type(ans) == "table" and type(ans.jobQueues) == "table" and ans.jobQueues[1] or false
    s.queues[cfg.queue] = q
  end
  if not q then return true end
  local fair = q.schedulingPolicyArn ~= nil and q.schedulingPolicyArn ~= ""
  if fair and not cfg.share_identifier then
    return nil, str_format("job '%s': runs-on aws_batch: with.share_identifier is required: queue %s is a fair-share "
      .. "queue (scheduling policy %s); nothing was submitted", self.job_id, tostring(q.jobQueueName or cfg.queue),
      tostring(q.schedulingPolicyArn))
  elseif not fair and cfg.share_identifier then
    return nil, str_format("job '%s': runs-on aws_batch: with.share_identifier is only for fair-share queues: queue "
      .. "%s has no scheduling policy; nothing was submitted", self.job_id, tostring(q.jobQueueName or cfg.queue))
  end
  return true
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
function Run:submit(key, name, sid, array_size, matrix)
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
  -- the record that keeps a resumed client from submitting it twice: no
  -- record, no SubmitJob
  local jok, jerr = s:append({ ev = "submit", key = key, job_id = self.job_id, strategy_id = sid,
    attempt = self.attempt_of[key], job_name = name, array_size = array_size, matrix = matrix })
  if not jok then
    return nil, str_format("journal: %s; %s was not submitted (without its record a resumed client could "
      .. "submit it twice)", tostring(jerr), name)
  end
  local last
  for try = 1, SUBMIT_TRIES do
    local tok, tmsg, tcode = c.poller:take()
    if not tok and tcode == "ECANCELED" then return nil, "cancelled before SubmitJob" end
    local ans, msg, code = session_mod.submit_once(c.batch, req)
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
      s:nap(min(8, 0.2 * 2 ^ try))
    end
  end
  return nil, "SubmitJob " .. name .. ": " .. tostring(last)
end

-- Pacing: while strategies of the job's attempt wait for a slot
-- (max-parallel), each live one's Batch job is polled at most
-- policy.slot_poll apart -- its end is what the next one waits on.  Once
-- the attempt's last strategy has started, nothing waits: the caps go and
-- the policy's intervals apply again.
function Run:started(attempt)
  if not self.total then
    local combos = job.strategies(self.jobdef)
    self.total = combos and #combos or 1
  end
  local n = (self.begun[attempt] or 0) + 1
  self.begun[attempt] = n
  if n >= self.total and #self.capped > 0 then
    for _, id in ipairs(self.capped) do self.s:cap(self.c, id, 0) end
    self.capped = {}
  end
end

function Run:pace(id, attempt)
  local every = self.s.policy.slot_poll
  if type(every) == "number" and every > 0 and (self.begun[attempt] or 0) < (self.total or 1) then
    self.s:cap(self.c, id, every)
    self.capped[#self.capped + 1] = id
  end
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
    local why = senv and senv.cancelled and senv.cancelled()
    if why == "deadline" then return "deadline" end
    if why then return "fail-fast" end
    return nil
  end
end

function Run:cancel_reason()
  local p = self.s.policy
  if self.s.cancelled then return self.s.cancelled end
  local asked = self.env.cancelled and self.env.cancelled()
  if type(asked) == "string" then return asked end
  if core.interrupted() then return p.terminate_reason .. " (interrupted)" end
  return p.terminate_reason
end

-- The Batch side of a strategy record, kept in its info (beside the
-- timings, which comparisons leave out): the job, its journal key, its log
-- stream and what Batch said -- failure reports name the cause and the log.
local function batch_info(rec, w, key, f)
  if type(rec.info) ~= "table" then rec.info = {} end
  rec.info.aws_batch = reason_mod.info(f, w.id, key)
  return rec
end

-- Read result.json or explain the failure -> strategy record.
function Run:collect(w, combo, t0, key)
  local s, c, cfg = self.s, self.c, self.cfg
  local rkey = self:s3key(combo.id, "result.json")
  local body, msg, code = w.prefetched, nil, nil     -- read with its poll cycle's others (session.prefetch)
  w.prefetched = nil
  if body == nil then body, msg, code = c.s3:get_object(cfg.bucket, rkey) end
  local note
  local f = reason_mod.facts(w.job or { status = w.status, statusReason = w.reason, jobId = w.id })
  if w.status == "MISSING" then f.status = "MISSING"; f.kind = "missing" end
  if cfg.log_group and f.log_group == "/aws/batch/job" then f.log_group = cfg.log_group end
  if body then
    local rec, derr = json().decode(body, "s3://" .. cfg.bucket .. "/" .. rkey, { max = _M.RESULT_MAX })
    if type(rec) == "table" and type(rec.status) == "string" then
      return batch_info(rec, w, key, f)
    end
    note = "result.json is not a strategy record: " .. tostring(derr)
  elseif code ~= "NoSuchKey" and code ~= "NotFound" then
    note = str_format("cannot read s3://%s/%s: %s", cfg.bucket, rkey, tostring(msg))
  elseif w.status == "SUCCEEDED" then
    note = "the job succeeded but wrote no result.json"
  end
  local lines, lnote = reason_mod.log_tail(c.logs, f.log_group, f.log_stream, s.policy.log_lines)
  if lnote then note = (note and (note .. "; ") or "") .. lnote end
  return batch_info(failed_record(combo, t0, reason_mod.error(f, lines, {
    job_name = w.name, batch_job_id = w.id, note = note, key = key })), w, key, f)
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
    return _M.terminated_record(combo, t0, w.name, w.id, reason)
  elseif why == "fail-fast" then
    s:terminate(self.c, w, p.fail_fast_reason)
    return _M.terminated_record(combo, t0, w.name, w.id, p.fail_fast_reason)
  elseif why == "deadline" then
    -- an array child is already terminated through its parent: one call
    if not w.terminated then s:terminate(self.c, w, p.deadline_reason) end
    return _M.deadline_record(combo, t0, p, w.name, w.id, self.cfg.timeout, self.cfg.attempts)
  elseif why then
    -- we lost sight of it: do not leave it running unobserved
    s:terminate(self.c, w, "luabatch: client gave up watching: " .. str_sub(tostring(why), 1, 200))
    return failed_record(combo, t0, error_of(str_format("AWS Batch job %s (%s): %s; terminated",
      tostring(w.name), w.id, tostring(why))))
  end
  return self:collect(w, combo, t0, key)
end

local function recorded(s, key)
  local r = s.state and s.state.results and s.state.results[key]
  if type(r) == "table" then
    if type(r.record) == "table" then return r.record end
    if type(r.status) == "string" then return r end
  end
  return nil
end

-- "cancel" when the run was cancelled while its job ended unsuccessfully:
-- `luabatch cancel` in another process terminates the jobs before this
-- client reads its request, so their FAILED is the cancel's doing.
local function cancelled_after(w, stop)
  if w.status ~= "SUCCEEDED" and stop() == "cancel" then return "cancel" end
  return nil
end

-- exec.strategy: one Batch job for one strategy.
function Run:strategy(combo, wctx, senv, group)
  local s, p = self.s, self.s.policy
  local t0 = stage.now()
  local attempt = tonumber(senv and senv.attempt) or 0
  local sid = combo.id
  local key = self:key(sid, attempt)
  self:started(attempt)
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
  local id, how = self:submit(key, name, sid, nil, combo.values)
  if not id then
    rec = failed_record(combo, t0, error_of(str_format("job '%s' strategy %s: %s", self.job_id, sid, tostring(how))))
    self:record_result(key, rec)
    return rec
  end
  local w = self:watch(id, key, self.job_id .. "/" .. sid)
  w.name = name
  w.result = self:result_of(sid)
  self:pace(id, attempt)
  local ok, werr = s:wait(self.c, { w }, stop, self.env)
  rec = self:finish(w, combo, t0, key, not ok and werr or cancelled_after(w, stop))
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
    cw.result = self:result_of(combo.id)
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
  local ok, werr = s:wait(self.c, ws, astop, self.env)
  local why = not ok and werr or cancelled_after(parent, stop)
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
    elseif cw.final and not (why == "cancel" and cw.status ~= "SUCCEEDED") then
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

function _M.new(fields)
  fields.watched = fields.watched or {}
  fields.attempt_of = fields.attempt_of or {}
  fields.begun, fields.capped = {}, {}    -- pacing: strategies started per attempt, ids capped
  return setmetatable(fields, Run)
end

_M.failed_record = failed_record
_M.error_of = error_of
_M.failed_job = failed_job

return _M
