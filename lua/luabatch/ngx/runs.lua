-- luabatch.ngx.runs: workflow runs on AWS Batch as an HTTP API inside nginx.
--
--   POST /runs[?file=NAME][&job=ID][&param.K=V...]   body: workflow YAML (or ?file=)
--        -> 201 { run_id, job, status = "SUBMITTED", jobs = [ { key, strategy_id,
--                 job_id (Batch), job_name } ], results }
--   GET  /runs/ID       -> 200 { run_id, job, status, jobs = [ { key, strategy_id, job_id,
--                 job_name, status, reason?, exit_code?, log_stream? } ],
--                 result = <final context, as `luabatch run --json` prints> (when done) }
--   GET  /runs/ID/logs  -> 200 text/plain, streamed: "[<key>] <line>\n" for every
--                 CloudWatch event of each job, job after job
--   errors: { "error": "..." } with 400 (bad input: the message says what),
--           404 (no such run), 405, 502 (AWS said no / could not be reached)
--
--   -- nginx.conf (http level)
--   lua_shared_dict luabatch 10m;
--   init_by_lua_block {
--     package.loaded.lbruns = require("luabatch.ngx.runs").new({
--       with = { job_queue_arn = "q", s3_bucket = "b", region_name = "eu-west-1" },
--       dir = "/srv/workflows",           -- ?file=NAME is read from here (optional)
--     })
--   }
--   init_worker_by_lua_block { require("lbruns"):init_worker() }
--   server { ... location /runs { content_by_lua_block { require("lbruns"):handle() } } }
--
-- conf (runs.new): dict ("luabatch": lua_shared_dict name), with (runs-on
-- with: defaults, UNDER the YAML's with:: job_queue_arn, s3_bucket,
-- region_name, batch_endpoint / s3_endpoint / logs_endpoint ...), dir,
-- policy (the aws_batch policy table; its intervals pace the poller too),
-- poll_interval (1 s: the poller's tick), credentials (a provider with
-- :get(); default luabatch.ngx.credentials when present, else the default
-- chain), transport (default luabatch.transport.ngx), clients = function(with,
-- region) -> { batch, s3, logs } (replaces both), getenv (os.getenv; nginx
-- passes a variable to workers only with `env NAME;`), ttl (86400 s: how
-- long the dict keeps a run), max_body (1 MiB), prefix ("": dict key prefix).
--
-- How a run goes (nothing blocks a worker: HTTP through nginx, sleeps are
-- ngx.sleep):
--   POST  the workflow is loaded and its params checked by the engine itself
--         (engine.run with the job's runner replaced by
--         luabatch.runner.aws_batch.submit: with: rendered and merged exactly
--         as for `luabatch run --runs-on aws_batch`), the strategies are
--         submitted (job definition ensured, bundle uploaded, one SubmitJob
--         per strategy or one array job), their ids queued for the poller
--         (luabatch.ngx.poller: one elected worker polls every job of every
--         worker) and the run kept in the dict: "run:<id>" = JSON { run_id, job,
--         source (the YAML), name, params, submitted, created }.
--   GET   answers from the dict ("job:<batch id>" summaries).  Once every
--         job is terminal, ONE request (a dict:add lock "collect:<id>") reads
--         the results (aws_batch.collect: result.json of each strategy, the
--         real reason of a failure), cleans up by policy and caches the final
--         context as "final:<id>"; later GETs answer it from memory.
-- One job per run: ?job=ID, or the workflow's only job (a workflow of
-- several jobs with needs: is refused with 400 naming them).
-- max-parallel is not enforced (every strategy is submitted at once; the
-- queue's compute environment limits what runs), nor fail-fast or the
-- job-level retry: (see aws_batch.submit).

local log = require "luabatch.log"
local stage = require "luabatch.workflow.stage"
local ngx_poller = require "luabatch.ngx.poller"

local _M = { _VERSION = "0.1.0" }
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
local sort = table.sort

local cjson = require "cjson.safe"

local TERMINAL = ngx_poller.TERMINAL

local function json() return require "luabatch.json" end

local function ngx_() return rawget(_G, "ngx") end

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
  local cfg = require("luabatch.config").new({
    region = region, profile = with.profile, endpoint_url = with.endpoint_url,
    endpoints = { batch = with.batch_endpoint, s3 = with.s3_endpoint, logs = with.logs_endpoint },
    env = getenv,
  })
  local transport = self.transport
  if transport == nil then
    local ok, mod = pcall(require, "luabatch.transport.ngx")
    if ok and type(mod) == "table" and mod.new then transport = mod.new() end
    self.transport = transport
  end
  local creds = self.credentials
  if creds == nil then
    local ok, mod = pcall(require, "luabatch.ngx.credentials")
    if ok and type(mod) == "table" and mod.new then
      local cok, c = pcall(mod.new, { dict = self.dict_name, config = cfg, transport = transport, getenv = getenv })
      if cok and c then creds = c end
    end
    if creds == nil then
      creds = require("luabatch.credentials").new({ config = cfg, transport = transport,
        sleep = ngx_() and ngx_().sleep or nil })
    end
    self.credentials = creds
  end
  local n = ngx_()
  local o = { config = cfg, credentials = creds, region = region, transport = transport,
              sleep = n and n.sleep or nil }
  g = {
    batch = require("luabatch.batch").new(o),
    s3 = require("luabatch.s3").new(o),
    logs = require("luabatch.logs").new(o),
  }
  self._groups[key] = g
  return g
end

function _M:runner_opts(run_id)
  local me = self
  local n = ngx_()
  return { clients = function(with, region) return me:clients(with, region) end, policy = self.policy,
           sleep = n and n.sleep or nil, clock = n and n.now or nil, run_id = run_id }
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
    clients = function() return me:clients(me.with) end })
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
  n.say(json().encode(body))
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
  -- the job
  local job_id = args.job
  if job_id ~= nil and type(job_id) ~= "string" then return fail(400, "?job= needs one job id") end
  local order = model.job_order or {}
  if job_id == nil then
    if #order ~= 1 then
      return fail(400, str_format("the workflow has %d jobs (%s): name the one to run with ?job=ID", #order,
        concat(order, ", ")))
    end
    job_id = order[1]
  elseif not model.jobs[job_id] then
    return fail(400, str_format("?job=%s: no such job in the workflow (jobs: %s)", job_id, concat(order, ", ")))
  end
  -- params
  local params = {}
  for k, v in pairs(args) do
    if type(k) == "string" and str_sub(k, 1, 6) == "param." and #k > 6 then
      if type(v) == "table" then v = v[#v] end
      if v == true then v = "" end
      params[str_sub(k, 7)] = v
    end
  end
  -- submit through the engine: params checked and with: rendered exactly
  -- as for `luabatch run --runs-on aws_batch`; only the runner differs
  local aws_batch = require "luabatch.runner.aws_batch"
  local run_id = require("luabatch.journal").new_run_id(n.time())
  local submitted, serr, scode
  local runner = { run_job = function(m, id, wctx, o)
    submitted, serr, scode = aws_batch.submit(m, id, wctx, o)
    return { status = submitted and "SUCCESS" or "FAILED" }
  end }
  local ok, ctx, eerr, ecode = pcall(require("luabatch.workflow.engine").run, model, {
    job = job_id, params = params, run_id = run_id, runs_on = "aws_batch", with = self.with,
    runners = { aws_batch = runner }, runner_opts = self:runner_opts(run_id), getenv = self.getenv,
    log = function(line) log.info("%s", line) end,
  })
  if not ok then
    log.error("luabatch.ngx.runs: POST /runs: %s", tostring(ctx))
    return fail(500, "internal error while submitting (see the error log)")
  end
  if not ctx then return fail(400, tostring(eerr)) end
  if not submitted and not serr then
    -- the engine did not reach the runner: its record says why
    local rec = ctx.jobs and ctx.jobs[job_id]
    local msg = rec and rec.errors and rec.errors.message or (ctx.errors and ctx.errors.message) or "not submitted"
    return fail(400, tostring(msg))
  end
  if not submitted then return fail(status_of_submit(scode), tostring(serr)) end
  local d = self:dict()
  local jobs = {}
  for _, j in ipairs(submitted.jobs) do
    if j.batch_job_id then
      local wok, werr = ngx_poller.watch(d, j.batch_job_id, { run_id = run_id, key = j.key },
        { prefix = self.prefix, ttl = self.ttl })
      if not wok then log.error("luabatch.ngx.runs: %s", tostring(werr)) end
    end
    jobs[#jobs + 1] = { key = j.key, strategy_id = j.strategy_id, job_id = j.batch_job_id, job_name = j.job_name,
                        error = j.error }
  end
  local meta = { run_id = run_id, job = job_id, source = source, name = name, params = ctx.params,
                 submitted = submitted, created = n.now() }
  local sok, sset = d:set(key(self, "run:" .. run_id), json().encode(meta), self.ttl)
  if not sok then
    return fail(500, "shared dict '" .. self.dict_name .. "' cannot keep the run: " .. tostring(sset)
      .. " (make lua_shared_dict larger)")
  end
  return reply(201, { run_id = run_id, job = job_id, status = submitted.skip and "SKIP" or "SUBMITTED",
    jobs = stage.array(jobs), results = submitted.results })
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

-- The run's jobs with their summaries; all = every one terminal.
function _M:states(meta)
  local d = self:dict()
  local out, sums, all = {}, {}, true
  for _, j in ipairs(meta.submitted.jobs) do
    local e = { key = j.key, strategy_id = j.strategy_id, job_id = j.batch_job_id, job_name = j.job_name }
    if j.error then
      e.status, e.reason = "FAILED", j.error
    else
      local s = ngx_poller.get(d, j.batch_job_id, { prefix = self.prefix })
      if s then
        sums[j.batch_job_id] = s
        e.status, e.reason, e.exit_code, e.log_stream = s.status, s.reason, s.exit_code, s.log_stream
      else
        e.status = "SUBMITTED"
      end
      if not TERMINAL[e.status] then all = false end
    end
    out[#out + 1] = e
  end
  return out, sums, all
end

-- The workflow context `luabatch run --json` prints, for one job.
local function workflow_ctx(meta, rec, t0)
  local id = meta.job
  local status = stage.validate_statuses({ rec.status })
  local ctx = { status = status, params = meta.params or stage.object(), jobs = stage.object() }
  ctx.jobs[id] = rec
  if status == "FAILED" then
    ctx.errors = { name = "WorkflowError", message = str_format("Job execution, '%s', was failed.", id) }
  elseif status == "CANCEL" then
    ctx.errors = { name = "WorkflowCancelError", message = str_format("Job execution, '%s', was canceled.", id) }
  end
  ctx.info = stage.info(t0, stage.now())
  return ctx
end

-- Collect once (lock "collect:<id>") -> final | nil, status, msg
function _M:finish(meta, sums)
  local d = self:dict()
  local lock = key(self, "collect:" .. meta.run_id)
  local got = d:add(lock, true, 120)
  if not got then return nil end           -- another request collects now
  local ok, final, ferr = pcall(function()
    local load = require "luabatch.workflow.load"
    local model, lerr = load.string(meta.source, meta.name, { getenv = self.getenv })
    if not model then return nil, "reloading the workflow: " .. tostring(lerr) end
    local rec, jerr = require("luabatch.runner.aws_batch").collect(meta.submitted, sums, {
      model = model, getenv = self.getenv, runner_opts = self:runner_opts(meta.run_id) })
    if not rec then return nil, jerr end
    return workflow_ctx(meta, rec, meta.created or stage.now())
  end)
  if not ok or not final then
    d:delete(lock)
    return nil, 502, "collecting the results: " .. tostring(ok and ferr or final)
  end
  d:set(key(self, "final:" .. meta.run_id), json().encode(final), self.ttl)
  return final
end

--- get_run(id): the GET /runs/ID handler.
function _M:get_run(id)
  local meta, st, msg = self:load_run(id)
  if not meta then return fail(st, msg) end
  local jobs, sums, all = self:states(meta)
  local body = { run_id = meta.run_id, job = meta.job, jobs = stage.array(jobs) }
  local d = self:dict()
  local cached = d:get(key(self, "final:" .. meta.run_id))
  local final
  if cached then
    final = json().decode(cached, "final:" .. meta.run_id)
  elseif all or meta.submitted.skip then
    local f, fst, fmsg = self:finish(meta, sums)
    if f == nil and fst then return fail(fst, fmsg) end
    final = f
    if f == nil then body.status = "COLLECTING" end
  end
  if final then
    body.status, body.result = final.status, final
  elseif not body.status then
    local running = false
    for _, j in ipairs(jobs) do
      if j.status == "RUNNING" or TERMINAL[j.status] then running = true end
    end
    body.status = running and "RUNNING" or "SUBMITTED"
  end
  return reply(200, body)
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
  local sc = meta.submitted.config or {}
  local with = {}
  for k, v in pairs(self.with) do with[k] = v end
  for k, v in pairs(sc.client or {}) do with[k] = v end
  local c = self:clients(with, sc.region)
  local group = sc.log_group or "/aws/batch/job"
  n.status = 200
  n.header["Content-Type"] = "text/plain; charset=utf-8"
  n.header["Cache-Control"] = "no-store"
  for _, j in ipairs(jobs) do
    local label = "[" .. tostring(j.key) .. "] "
    if not j.log_stream then
      n.print(label, "(no log yet: ", tostring(j.status), ")\n")
    else
      local lines = 0
      for ev, emsg in c.logs:events(group, j.log_stream) do
        if not ev then
          n.print(label, "(log ", group, " ", j.log_stream, ": ", tostring(emsg), ")\n")
          break
        end
        n.print(label, tostring(ev.message), "\n")
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

--- handle([uri]): route POST /runs, GET /runs/ID, GET /runs/ID/logs (the
-- location may sit under a prefix: the part from "/runs" on is matched).
function _M:handle(uri)
  local n = ngx_()
  uri = uri or n.var.uri
  local rest = str_match(uri, "/runs(/?.*)$")
  local method = n.req.get_method()
  if rest == nil then return fail(404, "no such endpoint: " .. uri) end
  if rest == "" or rest == "/" then
    if method ~= "POST" then return fail(405, "POST /runs submits a run; GET /runs/ID reads one") end
    return self:post_runs()
  end
  local id, tail = str_match(rest, "^/([^/]+)(/?[^/]*)$")
  if not id then return fail(404, "no such endpoint: " .. uri) end
  if method ~= "GET" and method ~= "HEAD" then return fail(405, method .. " " .. uri .. ": only GET") end
  if tail == "" or tail == "/" then return self:get_run(id) end
  if tail == "/logs" then return self:get_logs(id) end
  return fail(404, "no such endpoint: " .. uri)
end

return _M
