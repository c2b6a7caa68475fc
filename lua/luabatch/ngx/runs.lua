-- luabatch.ngx.runs: workflow runs on AWS Batch as an HTTP API inside nginx.
--
--   POST /runs[?file=NAME][&job=ID][&param.K=V...]   body: workflow YAML (or ?file=)
--        -> 201 GET's answer without result, status "SUBMITTED" | final, results?
--   GET  /runs         -> 200 [ { run_id, workflow, started, ended, duration, status, jobs =
--                         { ok, failed, skipped, cancelled } } ] newest first (?limit=N, 50;
--                         as `luabatch runs --json`: read from the journals)
--   GET  /runs/ID      -> 200 { run_id, workflow, started, status, jobs = [ { job, key, label
--                         (matrix values), status, reason?, result?, failure?, ... } ],
--                         workflow_jobs = [ { job, state = "pending" | "submitted" | "retry"
--                         | "done", queued, strategies, attempt, status?, reason?, error? } ],
--                         result = <final context, as `luabatch run --json`> (when done) }
--                         (luabatch.ngx.view; a run not in the dict: from its journal)
--   DELETE /runs/ID    -> 202 the view (cancel: nothing more submitted, its running Batch
--                         jobs terminated, the run ends CANCEL); 404 unknown, 409 ended
--   GET  /runs/ID/logs -> 200 text/plain, streamed "[<key>] <line>\n", job after job
--   GET  /runs/ID/logs?key=KEY[&tail=N] -> 200 { key, log_stream, lines = [ { t, m } ] }
--   GET  /             -> the dashboard (luabatch.ngx.dashboard: HTML polling this API)
--   errors: { "error": "..." } with 400 (bad input), 404 (no such run), 405, 409,
--           502 (AWS said no / could not be reached)
--
--   -- nginx.conf (http level)
--   lua_shared_dict luabatch 10m;
--   init_by_lua_block { package.loaded.lbruns = require("luabatch.ngx.runs").new({
--     with = { job_queue_arn = "q", s3_bucket = "b", region_name = "eu-west-1" },
--     dir = "/srv/workflows" }) }                -- ?file=NAME is read from here
--   init_worker_by_lua_block { require("lbruns"):init_worker() }
--   location /runs { content_by_lua_block { require("lbruns"):handle() } }
--
-- conf: with (defaults under the YAML's with:), dir, dict ("luabatch"), policy
-- (aws_batch's; also paces the poller), poll_interval (1 s), credentials (a
-- provider with :get()), transport (luabatch.transport.ngx), clients =
-- function(with, region) -> { batch, s3, logs }, getenv (os.getenv; nginx passes
-- a variable only with `env NAME;`), ttl (86400 s), max_body (1 MiB), prefix (""),
-- home (the journal home: journal.home(getenv)), thread_pool (a `thread_pool`
-- name for the journal's file I/O: luabatch.ngx.journal).  Every run is
-- journaled as the CLI journals it (run, plan, job, state, result, cancel,
-- end events), so `luabatch runs` / `luabatch status ID` read it.
-- A run is the whole workflow as `luabatch run` runs it (same final context);
-- ?job=ID runs that job only.  How a run moves: docs/design.md.

local log = require "luabatch.log"
local ngx_poller = require "luabatch.ngx.poller"
local drive = require "luabatch.ngx.drive"
local view = require "luabatch.ngx.view"
require "luabatch.runner"     -- the runners, registered with the loader and the engine

local _M = { _VERSION = "0.1.0", CANCEL_MARKER_EVERY = 1 }   -- seconds: see cancel_marker
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local str_find = string.find
local str_sub = string.sub
local str_match = string.match
local str_format = string.format
local concat = table.concat

local cjson = require "cjson.safe"

local TERMINAL = ngx_poller.TERMINAL

local function json() return require "luabatch.json" end

local function ngx_() return rawget(_G, "ngx") end
local api_mod            -- luabatch.ngx.api, once the first request needs it
local function ngx_api()
  api_mod = api_mod or require "luabatch.ngx.api"
  return api_mod
end

--- new(conf) -> app (call it in init_by_lua*: it builds nothing that does
-- I/O; clients are made in each worker on first use).
function _M.new(conf)
  conf = conf or {}
  if type(conf) ~= "table" then error("bad argument #1 to 'new' (table expected)", 2) end
  if conf.with ~= nil and type(conf.with) ~= "table" then
    error("bad argument #1 to 'new' (field 'with': table expected)", 2)
  end
  if conf.clients ~= nil and type(conf.clients) ~= "function" then
    error("bad argument #1 to 'new' (field 'clients': function expected)", 2)
  end
  local dir = conf.dir
  if dir ~= nil then dir = (tostring(dir):gsub("/+$", "")) end
  return setmetatable({
    dict_name = conf.dict or "luabatch", with = conf.with or {}, dir = dir, policy = conf.policy,
    poll_interval = conf.poll_interval or 1, credentials = conf.credentials, transport = conf.transport,
    clients_fn = conf.clients, getenv = conf.getenv or os.getenv, ttl = conf.ttl or 86400,
    max_body = conf.max_body or 1048576, prefix = conf.prefix or "", conf = conf,
    _groups = {},
    journal = require("luabatch.ngx.journal").new({ home = conf.home, pool = conf.thread_pool,
      getenv = conf.getenv }),
  }, mt)
end

function _M:dict()
  local n = ngx_()
  local d = n and n.shared and n.shared[self.dict_name]
  if not d then
    error("luabatch.ngx.runs: lua_shared_dict '" .. tostring(self.dict_name) .. "' is not defined", 0)
  end
  return d
end

---------------------------------------------------------------------------
-- Clients (per worker, on first use)
---------------------------------------------------------------------------

local function client_key(with, region)
  return concat({ tostring(region), tostring(with.endpoint_url), tostring(with.batch_endpoint),
    tostring(with.s3_endpoint), tostring(with.logs_endpoint), tostring(with.profile) }, "|")
end

-- { batch, s3, logs } for with: + region: conf.clients, else the ngx
-- transport + the shared credentials.
function _M:clients(with, region)
  with = with or self.with
  region = region or with.region_name or with.region
  if self.clients_fn then return self.clients_fn(with, region) end
  local key = client_key(with, region)
  local g = self._groups[key]
  if g then return g end
  local getenv = self.getenv
  local transport = self.transport
  if transport == nil then
    transport = require("luabatch.transport.ngx").new()
    self.transport = transport
  end
  local n = ngx_()
  -- one provider for every group: the shared-dict one (one refresher for
  -- all workers) when the module is there, else the chain
  local me = self
  local function creds(cfg)
    if me.credentials == nil then
      local ok, mod = pcall(require, "luabatch.ngx.credentials")
      if ok and type(mod) == "table" and mod.new then
        local cok, c = pcall(mod.new, { dict = me.dict_name, config = cfg, transport = transport, getenv = getenv })
        if cok and c then me.credentials = c end
      end
    end
    return me.credentials
  end
  g = require("luabatch.clients").set({ region = region, profile = with.profile,
    endpoint_url = with.endpoint_url, env = getenv, credentials = creds, transport = transport,
    sleep = n and n.sleep or nil,
    endpoints = { batch = with.batch_endpoint, s3 = with.s3_endpoint, logs = with.logs_endpoint } })
  self._groups[key] = g
  return g
end

--- clients_of(config) -> the clients of a submitted job (aws_batch.submit's
-- config: its with: endpoints, config.client, over conf.with; its region)
function _M:clients_of(config)
  config = config or {}
  local with = {}
  for k, v in pairs(self.with) do with[k] = v end
  for k, v in pairs(config.client or {}) do with[k] = v end
  return self:clients(with, config.region)
end

function _M:runner_opts(run_id)
  local me = self
  local n = ngx_()
  return { clients = function(with, region) return me:clients(with, region) end, policy = self.policy,
           sleep = n and n.sleep or nil, clock = n and n.now or nil, run_id = run_id,
           journal = run_id and self.journal:handle(run_id) or nil }
end

---------------------------------------------------------------------------
-- The poller (one elected worker)
---------------------------------------------------------------------------

--- init_worker() -> true | nil, msg: start this worker's poller tick.
function _M:init_worker()
  local me = self
  local p = self.policy or {}
  local w, msg = ngx_poller.new({ dict = self.dict_name, interval = self.poll_interval, prefix = self.prefix,
    intervals = p.intervals, rate = p.rate, ttl = self.ttl,
    clients = function() return me:clients(me.with) end,
    on_terminal = function(_, meta)
      if type(meta) == "table" and type(meta.run_id) == "string" then me:kick(meta.run_id, true) end
    end,
    on_tick = function(_, fresh) me:tick_runs(fresh) end })
  if not w then return nil, msg end
  self.poller = w
  return w:start()
end

---------------------------------------------------------------------------
-- HTTP helpers
---------------------------------------------------------------------------

local function reply(status, body)
  local n = ngx_()
  n.status = status
  n.header["Content-Type"] = "application/json"
  n.header["Cache-Control"] = "no-store"
  -- error texts and records can quote a server's answer: redacted, as the CLI prints them
  n.say(log.redact(json().encode(body)))
  return n.exit(n.HTTP_OK)
end

local function fail(status, msg)
  return reply(status, { error = msg })
end

local function read_body(self)
  local n = ngx_()
  n.req.read_body()
  local body = n.req.get_body_data()
  if body == nil then
    local path = n.req.get_body_file()
    if path then
      local f = io.open(path, "rb")
      if f then
        body = f:read(self.max_body + 1)
        f:close()
      end
    end
  end
  if body and #body > self.max_body then
    return nil, str_format("the workflow is larger than %d bytes", self.max_body)
  end
  return body
end

-- ?file=NAME -> path | nil, msg (400): a plain name under conf.dir.
function _M:file_path(name)
  if not self.dir then
    return nil, "?file= is not enabled: no workflows directory is configured (runs.new{ dir = ... })"
  end
  if type(name) ~= "string" or name == "" then return nil, "?file= needs a file name" end
  if str_find(name, "..", 1, true) or str_find(name, "/", 1, true) or str_find(name, "\\", 1, true)
      or str_find(name, "%z") then
    return nil, str_format("?file=%s: path traversal refused: give a plain file name under the workflows "
      .. "directory (no '/', '\\' or '..')", name)
  end
  if not str_find(name, "^[%w_][%w%._-]*$") then
    return nil, str_format("?file=%s: a file name may only hold letters, digits, '.', '_' and '-'", name)
  end
  for _, cand in ipairs({ name, name .. ".yml", name .. ".yaml" }) do
    local path = self.dir .. "/" .. cand
    local f = io.open(path, "rb")
    if f then
      local ok = f:read(0) ~= nil or f:seek("end") == 0
      f:close()
      if ok then return path, nil, cand end
    end
  end
  return nil, str_format("?file=%s: no such workflow in the workflows directory", name), nil, 404
end

local function valid_id(id)
  return type(id) == "string" and #id <= 128 and str_find(id, "^[%w][%w._-]*$") ~= nil
end

local function key(self, k) return self.prefix .. k end

---------------------------------------------------------------------------
-- POST /runs
---------------------------------------------------------------------------

local function status_of_submit(code)
  if code == "EWITH" or code == "EJOB" then return 400 end
  return 502
end

--- post_runs(): the POST /runs handler.
function _M:post_runs()
  local n = ngx_()
  local args = n.req.get_uri_args(100)
  local source, name
  if args.file ~= nil then
    if type(args.file) ~= "string" then return fail(400, "?file= given more than once or without a value") end
    local path, perr, fname, st = self:file_path(args.file)
    if not path then return fail(st or 400, perr) end
    local f = io.open(path, "rb")
    source = f:read("*a")
    f:close()
    name = fname
  else
    local body, berr = read_body(self)
    if berr then return fail(400, berr) end
    if body == nil or body:match("^%s*$") then
      return fail(400, "no workflow: send the workflow YAML as the request body, or name a file with ?file=NAME")
    end
    source, name = body, "request.yml"
  end
  local load = require "luabatch.workflow.load"
  local model, lerr = load.string(source, name, { getenv = self.getenv })
  if not model then return fail(400, "workflow: " .. tostring(lerr)) end
  -- the job (?job=: that one only, its needs not run), else the workflow
  local job_id = args.job
  if job_id ~= nil and type(job_id) ~= "string" then return fail(400, "?job= needs one job id") end
  local order = model.job_order or {}
  if job_id ~= nil and not model.jobs[job_id] then
    return fail(400, str_format("?job=%s: no such job in the workflow (jobs: %s)", job_id, concat(order, ", ")))
  end
  -- params, checked by the engine itself (as `luabatch run` does)
  local given = {}
  for k, v in pairs(args) do
    if type(k) == "string" and str_sub(k, 1, 6) == "param." and #k > 6 then
      if type(v) == "table" then v = v[#v] end
      if v == true then v = "" end
      given[str_sub(k, 7)] = v
    end
  end
  local engine = require "luabatch.workflow.engine"
  local params, perr = engine.receive_params(model, given)
  if not params then return fail(400, tostring(perr)) end
  local run_id = require("luabatch.journal").new_run_id(n.time())
  local meta = drive.new_run(self, model, { run_id = run_id, params = params, job = job_id, source = source,
    name = name })
  self:journal_event(run_id, { ev = "run", run_id = run_id, workflow = model.name, params = params, job = job_id,
    runs_on = "aws_batch", with = self.with, server = "nginx", name = name, jobs = meta.order })
  -- the first step here, under the run's lock (a poller hook firing
  -- meanwhile marks the run dirty; we step again below)
  local d = self:dict()
  local lock = key(self, "drive:" .. run_id)
  d:add(lock, true, 120)
  local first_err, first_code
  local ok, serr = pcall(drive.step, self, meta, model, function(_, sok, msg, code)
    if not sok and not first_err then first_err, first_code = msg, code end
  end)
  if not ok or first_err then
    -- nothing of a refused run stays running
    self:terminate_run(meta, "luabatch: run refused at submission")
    self:journal_event(run_id, { ev = "end", status = "FAILED", refused = tostring(first_err or serr),
      jobs = { ok = 0, failed = 0, skipped = 0, cancelled = 0 } })
    self.journal:flush(run_id)
    d:delete(lock)
    if not ok then
      log.error("luabatch.ngx.runs: POST /runs: %s", tostring(serr))
      return fail(500, "internal error while submitting (see the error log)")
    end
    return fail(status_of_submit(first_code), tostring(first_err))
  end
  self:journal_end(meta)
  local sok, sset = self:save_run(meta)
  self.journal:flush(run_id)
  d:delete(lock)
  if not sok then
    self:terminate_run(meta, "luabatch: run not kept")
    return fail(500, "shared dict '" .. self.dict_name .. "' cannot keep the run: " .. tostring(sset)
      .. " (make lua_shared_dict larger)")
  end
  if d:get(key(self, "dirty:" .. run_id)) then
    self:drive(run_id)
    meta = self:load_run(run_id) or meta
  end
  local body = view.live(self, meta)
  local only = meta.job or (#order == 1 and order[1]) or nil
  local js = only and meta.jobs[only]
  if js and js.submitted then body.results = js.submitted.results end
  if not meta.done then body.status = (js and js.state == "done" and js.record.status == "SKIP") and "SKIP"
    or "SUBMITTED" end
  body.result = nil
  return reply(201, body)
end

--- save_run(meta) -> true | nil, msg (and the run's wake time indexed:
-- "wake:<id>" = meta.wake, epoch s; a change is queued on "wakeq" for the
-- elected poller's tick_runs)
function _M:save_run(meta)
  local d = self:dict()
  local wk = key(self, "wake:" .. meta.run_id)
  local changed = meta.wake ~= meta.wake_sent
  meta.wake_sent = meta.wake
  local ok, err = d:set(key(self, "run:" .. meta.run_id), json().encode(meta), self.ttl)
  if not ok then return nil, err end
  if meta.wake then
    d:set(wk, meta.wake, self.ttl)
    if changed then
      local len, lerr = d:lpush(key(self, "wakeq"), meta.run_id)
      if not len then log.warn("luabatch.ngx.runs: wake queue: %s (the next rescan finds it)", tostring(lerr)) end
    end
  elseif changed then
    d:delete(wk)
  end
  return true
end

--- journal_event(run_id, ev): queue one event for the run's journal (the
-- holder of the run's lock flushes it before letting go).
function _M:journal_event(run_id, ev)
  local ok, err = self.journal:append(run_id, ev)
  if not ok then log.warn("luabatch.ngx.runs: run %s: journal: %s", run_id, tostring(err)) end
end

-- The run's end event once it is done (its jobs counted by status, as the
-- CLI's; the final context kept for GET after a restart).
function _M:journal_end(meta)
  if not meta.done or meta.ended_at then return end
  meta.ended_at = drive.now(self)
  local final = meta.final or {}
  local counts = require("luabatch.journal").end_counts(type(final.jobs) == "table" and final.jobs or nil)
  self:journal_event(meta.run_id, { ev = "end", status = final.status or "ERROR", jobs = counts, context = final })
end

--- tick_runs(fresh): the elected poller's tick (its on_tick hook): drive
-- every run whose wake time ("wake:<id>": a client deadline passed, a
-- retry's backoff ended) has come, through kick() (a timer: the tick stays
-- short).  The leader keeps the wake times in memory, fed by "wakeq"; it
-- reads every "wake:" entry when it takes the lock (fresh) and every 30 s.
function _M:tick_runs(fresh)
  local d = self:dict()
  local now = drive.now(self)
  local wk = self._wake
  if fresh or not wk or now - (self._wake_scan or 0) >= 30 then
    wk = {}
    local pre = key(self, "wake:")
    for _, k in ipairs(d:get_keys(0)) do
      if str_sub(k, 1, #pre) == pre then wk[str_sub(k, #pre + 1)] = 0 end
    end
    self._wake, self._wake_scan = wk, now
  end
  local q = key(self, "wakeq")
  while true do
    local id = d:rpop(q)
    if id == nil then break end
    wk[id] = 0
  end
  for id, at in pairs(wk) do
    if now >= at then
      -- due (or unknown): the dict says when; past it, step the run
      local cur = tonumber(d:get(key(self, "wake:" .. id)))
      if cur == nil then
        wk[id] = nil
      elseif now >= cur then
        wk[id] = now + 1            -- again in 1 s unless the step moves it
        self:kick(id)
      else
        wk[id] = cur
      end
    end
  end
end

-- TerminateJob every Batch job of the run not known to be terminal.
function _M:terminate_run(meta, reason)
  local d = self:dict()
  for _, id in ipairs(meta.order or {}) do
    local js = meta.jobs[id]
    local sub = js and js.submitted
    if sub then
      local sc = sub.config or {}
      local ids = {}
      if sub.array then ids[1] = sub.array.batch_job_id end
      for _, j in ipairs(sub.jobs or {}) do
        if j.batch_job_id and not sub.array then ids[#ids + 1] = j.batch_job_id end
      end
      for _, bid in ipairs(ids) do
        local s = ngx_poller.get(d, bid, { prefix = self.prefix })
        if not (s and TERMINAL[s.status]) then
          local ok, c = pcall(self.clients_of, self, sc)
          local tok, msg = false, c
          if ok then tok, msg = c.batch:terminate_job(bid, reason) end
          if not tok then log.warn("luabatch.ngx.runs: TerminateJob %s: %s", bid, tostring(msg)) end
        end
      end
    end
  end
end

---------------------------------------------------------------------------
-- Driving a run (luabatch.ngx.drive), one worker at a time
---------------------------------------------------------------------------

-- One step of a stored run (the caller holds its lock).
function _M:step_run(run_id)
  local meta = self:load_run(run_id)
  if not meta or meta.done then return end
  local load = require "luabatch.workflow.load"
  local model, lerr = load.string(meta.source, meta.name, { getenv = self.getenv })
  if not model then error("run " .. run_id .. ": reloading the workflow: " .. tostring(lerr), 0) end
  -- DELETE /runs/ID (the dict), or `luabatch cancel ID` (the journal's marker)
  local cancel = not meta.cancel and (self:dict():get(key(self, "cancel:" .. run_id))
    or self:cancel_marker(run_id))
  if cancel then
    meta.cancel = cancel
    self:journal_event(run_id, { ev = "cancel", reason = cancel })
  end
  local ok, changed = pcall(drive.step, self, meta, model)
  if ok then self:journal_end(meta) end
  -- whatever happened before an error (jobs submitted...) is kept
  if not ok or changed or meta.wake ~= meta.wake_sent then
    local sok, serr = self:save_run(meta)
    if not sok then log.error("luabatch.ngx.runs: run %s: %s", run_id, tostring(serr)) end
  end
  self.journal:flush(run_id)
  if not ok then error(changed, 0) end
end

--- cancel_marker(run_id) -> the reason of a `luabatch cancel ID` on the
-- host (the journal's marker, read through the thread pool) | nil.  Read
-- at most once a CANCEL_MARKER_EVERY seconds per run (a GET drives the run,
-- and the dashboard GETs every 1.5 s), except in a step a job's end started
-- (kick(run_id, true)): `luabatch cancel` writes its marker before it
-- terminates the jobs, so a job it ended is seen as cancelled, not failed.
function _M:cancel_marker(run_id)
  local d = self:dict()
  local ended, stamp = key(self, "ended:" .. run_id), key(self, "cancelchk:" .. run_id)
  local now = drive.now(self)
  local last = tonumber(d:get(stamp))
  if not d:get(ended) and last and now >= last and now - last < _M.CANCEL_MARKER_EVERY then return nil end
  d:delete(ended)
  d:set(stamp, now, 60)
  return self.journal:cancel_requested(run_id)
end

--- drive(run_id) -> true | "busy" (another worker steps it now and will
-- see this call's mark) | nil, msg.  Any worker, any phase with cosockets.
function _M:drive(run_id)
  local d = self:dict()
  local dirty, lock = key(self, "dirty:" .. run_id), key(self, "drive:" .. run_id)
  d:set(dirty, true, 300)
  local rounds = 0
  while d:get(dirty) and rounds < 20 do
    if not d:add(lock, true, 120) then return "busy" end
    d:delete(dirty)
    local ok, err = pcall(self.step_run, self, run_id)
    d:delete(lock)
    if not ok then
      log.error("luabatch.ngx.runs: run %s: %s", run_id, tostring(err))
      return nil, tostring(err)
    end
    rounds = rounds + 1
  end
  return true
end

--- kick(run_id [, ended]): drive the run from a timer, at once (the
-- poller's hooks; ended: a job of the run ended, see cancel_marker).
function _M:kick(run_id, ended)
  local n = ngx_()
  local me = self
  if ended then self:dict():set(key(self, "ended:" .. run_id), true, 300) end
  self:dict():set(key(self, "dirty:" .. run_id), true, 300)
  local ok, err = n.timer.at(0, function(premature)
    if premature then return end
    me:drive(run_id)
  end)
  if not ok then log.error("luabatch.ngx.runs: run %s: timer: %s", run_id, tostring(err)) end
end

---------------------------------------------------------------------------
-- GET /runs/ID
---------------------------------------------------------------------------

function _M:load_run(id)
  if not valid_id(id) then return nil, 400, "run id '" .. tostring(id) .. "' is not valid" end
  local text = self:dict():get(key(self, "run:" .. id))
  if not text then return nil, 404, "no run '" .. id .. "' (unknown, or expired from the shared dict)" end
  local meta, derr = json().decode(text, "run:" .. id)
  if type(meta) ~= "table" then return nil, 500, "run:" .. id .. ": " .. tostring(derr) end
  return meta
end

-- The run's Batch jobs with their summaries (luabatch.ngx.view.states).
function _M:states(meta) return view.states(self, meta) end

-- The answer of GET /runs/ID (and POST's): luabatch.ngx.view.live.
function _M:view(meta) return view.live(self, meta) end

--- get_run(id): the GET /runs/ID handler (a run not in the dict: its journal).
function _M:get_run(id)
  local meta, st, msg = self:load_run(id)
  if not meta then
    if st ~= 404 then return fail(st, msg) end
    local events, jerr, code = self.journal:events(id)
    if not events then
      if code == "ENOENT" then return fail(404, "no run '" .. id .. "'") end
      return fail(500, "run " .. id .. ": journal: " .. tostring(jerr))
    end
    return reply(200, view.journaled(id, events))
  end
  if not meta.done then
    -- normally the poller's hook drives the run; a GET helps along (a lost
    -- timer, a collect to try again) and answers the newest state
    local ok, derr = self:drive(meta.run_id)
    if ok == nil then log.warn("luabatch.ngx.runs: GET /runs/%s: %s", id, tostring(derr)) end
    meta = self:load_run(id) or meta
  end
  return reply(200, view.live(self, meta))
end

---------------------------------------------------------------------------
-- GET /runs/ID/logs
---------------------------------------------------------------------------

--- get_logs(id): the GET /runs/ID/logs handler (streamed).
function _M:get_logs(id)
  local n = ngx_()
  local meta, st, msg = self:load_run(id)
  if not meta then return fail(st, msg) end
  local jobs = self:states(meta)
  n.status = 200
  n.header["Content-Type"] = "text/plain; charset=utf-8"
  n.header["Cache-Control"] = "no-store"
  for _, j in ipairs(jobs) do
    local sc = j.config or {}
    local c = self:clients_of(sc)
    local group = sc.log_group or "/aws/batch/job"
    local label = "[" .. tostring(j.key) .. "] "
    if not j.log_stream then
      n.print(label, "(no log yet: ", tostring(j.status), ")\n")
    else
      local lines = 0
      for ev, emsg in c.logs:events(group, j.log_stream) do
        if not ev then
          n.print(label, "(log ", group, " ", j.log_stream, ": ", log.redact(emsg), ")\n")
          break
        end
        n.print(label, log.redact(ev.message), "\n")
        lines = lines + 1
        if lines % 100 == 0 then n.flush(true) end
      end
    end
    n.flush(true)
  end
  return n.exit(n.HTTP_OK)
end

---------------------------------------------------------------------------
-- Routing
---------------------------------------------------------------------------

_M.reply, _M.fail = reply, fail

--- handle([uri]): route POST and GET /runs, GET and DELETE /runs/ID, GET
-- /runs/ID/logs, and GET / (the dashboard).  The location may sit under a
-- prefix: the part from "/runs" on is matched.
function _M:handle(uri)
  local n = ngx_()
  uri = uri or n.var.uri
  local rest = str_match(uri, "/runs(/?.*)$")
  local method = n.req.get_method()
  local api = ngx_api()
  if rest == nil then
    if str_sub(uri, -1) == "/" and (method == "GET" or method == "HEAD") then return api.dashboard(self) end
    return fail(404, "no such endpoint: " .. uri)
  end
  if rest == "" or rest == "/" then
    if method == "POST" then return self:post_runs() end
    if method == "GET" or method == "HEAD" then return api.list(self) end
    return fail(405, method .. " /runs: POST submits a run, GET lists them")
  end
  local id, tail = str_match(rest, "^/([^/]+)(/?[^/]*)$")
  if not id then return fail(404, "no such endpoint: " .. uri) end
  if (tail == "" or tail == "/") and method == "DELETE" then return api.cancel(self, id) end
  if method ~= "GET" and method ~= "HEAD" then
    return fail(405, method .. " " .. uri .. ": GET reads a run, DELETE cancels it")
  end
  if tail == "" or tail == "/" then return self:get_run(id) end
  if tail == "/logs" then
    if n.req.get_uri_args().key ~= nil then return api.tail(self, id) end
    return self:get_logs(id)
  end
  return fail(404, "no such endpoint: " .. uri)
end

return _M
