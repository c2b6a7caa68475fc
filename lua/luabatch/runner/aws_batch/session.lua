-- luabatch.runner.aws_batch.session: what the jobs of one run share.
--
--   local session = require "luabatch.runner.aws_batch.session"
--   local s = session.get(env)                 -- one per run (keyed by env.runner_opts)
--   local c = s:clients(with, region)          -- batch/s3/logs clients + one poller
--   s:append(event)                            -- journal (no-op without one)
--   s:watch(c, id, meta) -> w                  -- w.status, w.job, w.final ...
--   s:wait(c, { w, ... }, stop) -> true | nil, why ("stop" | msg)
--   s:call(c, fn)                              -- a Batch call paced by the poller's tokens
--   s:terminate_all(reason)                    -- TerminateJob every non-terminal job of the run
--   session.submit_once(batch, req) -> answer  -- one SubmitJob, never resent by the transport
--
-- Credentials given in with: are used by the clients only.  One
-- luabatch.poller per set of clients watches every Batch job of the run.
-- wait() sleeps with sched.sleep inside a scheduler task, else core.sleep;
-- inside nginx (session.ngx()) with ngx.sleep, its clock ngx.now.
-- Test seams: runner_opts.clients = function(with, region) -> { batch, s3,
-- logs } (fakes), runner_opts.clock / runner_opts.sleep.  How the wait and
-- submit_once work: docs/design.md.

local core = require "luabatch.core"
local log = require "luabatch.log"
local poller_mod = require "luabatch.poller"
local policy_mod = require "luabatch.runner.aws_batch.policy"
local reason_mod = require "luabatch.runner.aws_batch.reason"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local require = require
local setmetatable = setmetatable
local min = math.min
local max = math.max

local sessions = setmetatable({}, { __mode = "k" })

local TERMINAL = require("luabatch.batch").FINAL      -- SUCCEEDED, FAILED, MISSING
_M.TERMINAL = TERMINAL

local THROTTLE = require("luabatch.retry").THROTTLED
_M.THROTTLE = THROTTLE

--- ngx() -> the `ngx` table when running inside nginx (ngx_lua) outside
-- the init phase, else nil.  There, blocking calls are forbidden: the
-- session sleeps with ngx.sleep and reads the clock with ngx.now.
function _M.ngx()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.sleep) ~= "function" or type(ngx.get_phase) ~= "function" then
    return nil
  end
  local ok, phase = pcall(ngx.get_phase)
  if not ok or phase == "init" then return nil end
  return ngx
end

--- submit_once(batch, req) -> SubmitJob answer | nil, msg, code
-- One SubmitJob that is never sent twice: no retries in the request path,
-- the body as a reader (a plain string under nginx, session.ngx()); a lost
-- answer is looked up by name instead (aws_batch/run.lua, Run:submit).
function _M.submit_once(batch, req)
  if type(batch.client) == "function" then
    local client = batch:client()
    if type(client) == "table" and client.send then
      local body = require("cjson").encode(req)
      local o = { method = "POST", path = "/v1/submitjob",
        headers = { { "Content-Type", "application/json" } },
        payload_hash = core.sha256(body),
        operation = "SubmitJob", resource = "queue " .. tostring(req.jobQueue) .. " (job " .. req.jobName .. ")",
        retry = false }
      if _M.ngx() then
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

--- get(env) -> the run's session (created on first use).
function _M.get(env)
  local ro = env.runner_opts
  if type(ro) ~= "table" then ro = {} end
  local key = ro
  local s = sessions[key]
  if s then return s end
  local user = ro.policy
  if user ~= nil and type(user) ~= "table" then user = nil end
  local journal = ro.journal
  local state
  if ro.resume and journal and journal.state then
    local ok, st = pcall(journal.state, journal)
    if ok and type(st) == "table" then state = st end
  end
  local ngx = _M.ngx()
  s = setmetatable({
    run_id = env.run_id or ro.run_id or require("luabatch.journal").new_run_id(),
    policy = policy_mod.merge(user),
    journal = journal,
    follow = ro.follow and true or false,
    progress = env.progress,   -- the run's view: Batch states and wait hints
    on_state = env.on_state,   -- the plan's: a strategy waiting for capacity / running
    resume = ro.resume and true or false,
    state = state,
    opts = ro,
    groups = {},           -- client key -> clients
    jobdefs = {},          -- jobdef cache (name@hash -> def)
    cancelled = nil,       -- reason once the run was cancelled
    active = 0,            -- run_job calls in progress
    clock = ro.clock or (ngx and ngx.now) or core.monotime,
    sleep_fn = ro.sleep or (ngx and ngx.sleep) or nil,
  }, mt)
  sessions[key] = s
  return s
end


---------------------------------------------------------------------------
-- Journal
---------------------------------------------------------------------------

function _M:append(ev)
  local j = self.journal
  if not j then return true end
  local ok, res, msg = pcall(j.append, j, ev)
  if not ok or not res then
    msg = tostring(ok and msg or res)
    log.warn("journal: cannot record %s: %s", tostring(ev.ev), msg)
    return nil, msg
  end
  return true
end


---------------------------------------------------------------------------
-- Clients
---------------------------------------------------------------------------

local function client_key(with, region)
  return table.concat({ tostring(region), tostring(with.endpoint_url), tostring(with.batch_endpoint),
    tostring(with.s3_endpoint), tostring(with.logs_endpoint), tostring(with.aws_access_key_id),
    tostring(with.profile) }, "|")
end

local function build_clients(with, region, getenv)
  local creds
  if with.aws_access_key_id and with.aws_secret_access_key then
    creds = require("luabatch.credentials").static({
      access_key = tostring(with.aws_access_key_id), secret_key = tostring(with.aws_secret_access_key),
      session_token = with.aws_session_token and tostring(with.aws_session_token) or nil,
    })
  end
  return require("luabatch.clients").set({ region = region, profile = with.profile,
    endpoint_url = with.endpoint_url, env = getenv, credentials = creds,
    endpoints = { batch = with.batch_endpoint, s3 = with.s3_endpoint, logs = with.logs_endpoint } })
end

--- clients(with, region [, getenv]) -> c = { batch, s3, logs, poller, watched }
function _M:clients(with, region, getenv)
  local key = client_key(with, region)
  local c = self.groups[key]
  if c then return c end
  if with.aws_secret_access_key then log.add_secret(tostring(with.aws_secret_access_key)) end
  if with.aws_session_token then log.add_secret(tostring(with.aws_session_token)) end
  local made
  if type(self.opts.clients) == "function" then
    made = self.opts.clients(with, region)
  else
    made = build_clients(with, region, getenv)
  end
  c = { batch = made.batch, s3 = made.s3, logs = made.logs, watched = {}, region = region }
  local p = self.policy
  local sess = self
  local poller, msg = poller_mod.new({
    batch = c.batch,
    intervals = p.intervals,
    rate = p.rate,
    max_throttled = p.max_throttled,
    clock = self.clock,
    sleep = self.sleep_fn,
    on_change = function(s) sess:_changed(c, s) end,
  })
  if not poller then error("aws_batch: cannot create the poller: " .. tostring(msg), 0) end
  c.poller = poller
  self.groups[key] = c
  return c
end


---------------------------------------------------------------------------
-- Watching
---------------------------------------------------------------------------

-- on_change of the poller: keep the watch record and journal the change.
function _M:_changed(c, s)
  local w = c.watched[s.id]
  if not w then return end
  local exit = reason_mod.int(s.exit_code)
  w.status, w.reason, w.exit_code = s.status, s.reason, exit
  w.log_stream = s.log_stream or w.log_stream
  if s.job then w.job = s.job end
  if TERMINAL[s.status] then
    w.final = true
    if w.result and s.status == "SUCCEEDED" then   -- its result.json: read with the others (prefetch)
      c.fresh = c.fresh or {}
      c.fresh[#c.fresh + 1] = w
    end
    if w.sig then w.sig:notify() end   -- its waiting task (doze) goes on now
  end
  self:append({ ev = "state", key = w.key, batch_job_id = s.id, status = s.status, reason = s.reason,
                exit_code = exit, log_stream = s.log_stream })
  w.runnable_since = s.status == "RUNNABLE" and (w.runnable_since or self:now()) or nil
  self:_tell(w, { state = s.status, reason = s.reason })
  local seen = (s.status == "RUNNING" and "running") or (s.status == "RUNNABLE" and "waiting") or nil
  local job_id, sid, attempt = self:_key(w)
  if seen and self.on_state and job_id then pcall(self.on_state, job_id, sid, attempt, seen) end
  if w.on_change then w.on_change(w, s) end
end

--- watch(c, id, meta) -> w (the same record when already watched).
-- meta: { key, label ("job/sid" for followed log lines), log_group }.
-- The first poll comes one fast interval later: a burst of submits then
-- shares DescribeJobs calls (100 ids each) instead of one call per submit.
function _M:watch(c, id, meta)
  local w = c.watched[id]
  if w then return w end
  w = { id = id, final = false }
  for k, v in pairs(meta or {}) do w[k] = v end
  c.watched[id] = w
  c.poller:watch(id, meta and meta.key, self.policy.intervals.fast or 0)
  return w
end

--- cap(c, id, secs): poll id at most secs apart (0: the policy's intervals)
function _M:cap(c, id, secs)
  if c.watched[id] then c.poller:cap(id, secs) end
end

function _M:unwatch(c, id)
  if c.watched[id] then
    c.watched[id] = nil
    pcall(c.poller.unwatch, c.poller, id)
  end
end

function _M:now() return self.clock() end

-- Sleep d seconds, cooperatively inside a scheduler task.
function _M:nap(d)
  if d <= 0 then return true end
  if self.sleep_fn then return self.sleep_fn(d) end
  local sched = require "luabatch.workflow.sched"
  if sched.current and sched.current() then
    local ok = sched.sleep(d)
    if ok then return true end
    -- the scheduler was interrupted: its timers fail at once; block instead
    -- so a caller that cleared the interrupt does not spin
  end
  return core.sleep(d)
end

-- A watch's journal key job/sid/attempt -> job, sid, attempt | nil.
function _M:_key(w)
  if type(w.key) ~= "string" then return nil end
  local job_id, sid, attempt = w.key:match("^(.*)/([^/]*)/(%d+)$")
  return job_id, sid, tonumber(attempt)
end

-- The run's view hears a watched job's Batch state: progress "strategy"
-- { job, strategy, attempt, state, reason?, hint? }.
function _M:_tell(w, info)
  if not self.progress then return end
  local job_id, sid, attempt = self:_key(w)
  if not job_id then return end
  info.job, info.strategy, info.attempt = job_id, sid, attempt
  pcall(self.progress, "strategy", info)
end

-- A job RUNNABLE past policy.runnable_hint seconds: say why it may wait
-- (the queue's and its compute environments' state), again each such span.
function _M:_waiting(c)
  local after = tonumber(self.policy.runnable_hint)
  if not self.progress or not after or after <= 0 then return end
  local now = self:now()
  -- every waiting strategy's loop passes here: look over the jobs once a second
  if now < (c.waiting_at or 0) then return end
  c.waiting_at = now + 1
  local waiting, seen = require "luabatch.runner.aws_batch.waiting", {}
  for _, w in pairs(c.watched) do
    local since = w.status == "RUNNABLE" and w.runnable_since
    if since and now - since >= after and now >= (w.hint_next or 0) then
      w.hint_next = now + after
      local ok, text = pcall(waiting.hint, c.batch, w.job, now - since, seen)
      self:_tell(w, { state = "RUNNABLE", hint = ok and text or ("RUNNABLE for a while (" .. tostring(text) .. ")") })
    end
  end
end

-- Read the result objects (w.result = { bucket, key }) of the jobs a poll
-- cycle saw succeed all at once -- presigned GETs through the transport's
-- request_all -- into w.prefetched: the tasks waiting on them then collect
-- without a request each, one after the other (the client's HTTP is
-- synchronous: K ends would cost K round trips before the first freed slot
-- is refilled).  Anything not read here (an error, a transport without
-- request_all, a single end) is read by Run:collect as before.
function _M:prefetch(c)
  local fresh = c.fresh
  if not fresh then return end
  c.fresh = nil
  local s3 = c.s3
  local t = #fresh >= 2 and type(s3) == "table" and s3.presign and s3.transport and s3:transport()
  if not (t and t.request_all) then return end
  local list, ws = {}, {}
  for _, w in ipairs(fresh) do
    local ok, url = false, nil
    if w.prefetched == nil then ok, url = pcall(s3.presign, s3, "GET", w.result.bucket, w.result.key, 300) end
    if ok and type(url) == "string" then
      list[#list + 1] = { method = "GET", url = url, timeout = 60 }
      ws[#ws + 1] = w
    end
  end
  if #list < 2 then return end
  local ok, res = pcall(t.request_all, t, list)
  if not ok or type(res) ~= "table" then return end
  for i, r in ipairs(res) do
    if type(r) == "table" and r.ok ~= false and r.status == 200 and type(r.body) == "string" then
      ws[i].prefetched = r.body
    end
  end
end

-- Sleep up to d seconds waiting on ws: inside a scheduler task the sleep
-- ends as soon as one of ws becomes final (another task's poller step saw
-- it), so a strategy's end is acted on at once -- a freed slot under
-- max-parallel is not left idle for a wait slice.
function _M:doze(ws, d)
  if d <= 0 then return true end
  if not self.sleep_fn and not core.interrupted() then
    local sched = require "luabatch.workflow.sched"
    if sched.current and sched.current() then
      local sig = sched.signal()
      for _, w in ipairs(ws) do w.sig = sig end
      sig:wait(d)
      for _, w in ipairs(ws) do w.sig = nil end
      return true
    end
  end
  return self:nap(d)
end

-- Follow: tail the log of each running watched job at the poll cadence.
function _M:_follow(c, env)
  if not self.follow or not c.logs then return end
  local now = self:now()
  local every = self.policy.follow_interval or max(2, (self.policy.intervals.fast or 2))
  for _, w in pairs(c.watched) do
    if w.log_stream and (w.status == "RUNNING" or (w.final and not w.drained)) then
      if not w.tail or w.tail.stream ~= w.log_stream then
        local ok, t = pcall(c.logs.tail, c.logs, w.log_group or "/aws/batch/job", w.log_stream)
        w.tail = ok and t or nil
        w.next_tail = 0
      end
      if w.tail and (w.final or now >= (w.next_tail or 0)) then
        w.next_tail = now + every
        -- a job that ended is read to its end (a poll stops at the logs
        -- module's caps; until a poll brings nothing, 100 at most); a running
        -- one once per interval
        for _ = 1, w.final and 100 or 1 do
          local evs = w.tail:poll()
          for _, ev in ipairs(evs or {}) do
            local line = "[" .. tostring(w.label or w.key) .. "] " .. tostring(ev.message)
            if env and env.log then env.log(line) else log.info("%s", line) end
          end
          if not evs or #evs == 0 then break end
        end
        if w.final then w.drained = true end
      end
    end
  end
end

--- wait(c, list of w, stop [, env]) -> true | nil, why
-- Cycles the shared poller until every w is final.  stop() -> reason
-- string | nil is asked before every cycle (the client deadline is the
-- plan's: it stops a strategy through stop()).
function _M:wait(c, ws, stop, env)
  local slice = self.policy.wait_slice or 1
  local fails = 0
  while true do
    local all = true
    for _, w in ipairs(ws) do if not w.final then all = false break end end
    if all then
      self:_follow(c, env)
      return true
    end
    self:_waiting(c)
    local why = stop and stop()
    if why then return nil, why end
    local calls, msg, code = c.poller:step()
    self:prefetch(c)
    if not calls and code ~= "ECANCELED" then
      fails = fails + 1
      log.warn("aws_batch: polling failed: %s", tostring(msg))
      if fails >= 3 then return nil, "polling failed: " .. tostring(msg) end
    elseif calls then
      fails = 0
    end
    self:_follow(c, env)
    all = true
    for _, w in ipairs(ws) do if not w.final then all = false break end end
    if not all then
      why = stop and stop()
      if why then return nil, why end
      local at = c.poller:core():next_wakeup()
      local d = slice
      if at then d = min(slice, max(0.02, at - self:now())) end
      self:doze(ws, d)
    end
  end
end


---------------------------------------------------------------------------
-- Paced Batch calls
---------------------------------------------------------------------------

--- call(c, fn) -> fn's returns; a poller token is taken first and the
-- outcome reported (throttled / ok) so SubmitJob, TerminateJob and
-- DescribeJobs share one rate.
function _M:call(c, fn)
  local ok, msg, code = c.poller:take()
  if not ok and code == "ECANCELED" and core.interrupted() then
    -- cancelled while waiting for a token: the call still has to happen
    -- (TerminateJob after Ctrl-C); the caller cleared the flag or not
    return nil, msg, code
  end
  local r1, r2, r3 = fn()
  if r1 == nil and r3 and THROTTLE[r3] then c.poller:throttled() else c.poller:ok() end
  return r1, r2, r3
end


--- terminate_all(reason) -> n: TerminateJob for every watched job of the
-- run that is not final (the interrupt flag is cleared first and raised
-- again afterwards, so the engine still sees the cancellation).
function _M:terminate_all(reason)
  local was = core.interrupted()
  if was then core.clear_interrupt() end
  self.cancelled = self.cancelled or reason
  local n = 0
  for _, c in pairs(self.groups) do
    for id, w in pairs(c.watched) do
      if not w.final and not w.terminated then
        n = n + 1
        self:terminate(c, w, reason)
      end
    end
  end
  if was then core.raise_interrupt() end
  return n
end

--- terminate(c, w, reason) -> true | nil, msg
function _M:terminate(c, w, reason)
  w.terminated = reason
  self:append({ ev = "terminate", key = w.key, batch_job_id = w.id, reason = reason })
  c.poller:take()
  local ok, msg, code = c.batch:terminate_job(w.id, reason)
  if not ok then
    if code and THROTTLE[code] then c.poller:throttled() end
    log.warn("aws_batch: TerminateJob %s: %s", w.id, tostring(msg))
    return nil, msg
  end
  c.poller:ok()
  return true
end

return _M
