-- luabatch.ngx.api: the run endpoints beyond submitting and reading one
-- (luabatch.ngx.runs routes here; each takes the runs app, whose reply and
-- fail answer).
--
--   api.list(app)          GET /runs[?limit=N]: the journals' runs, newest first
--   api.cancel(app, id)    DELETE /runs/ID[?reason=TEXT]: 202 | 404 | 409
--   api.tail(app, id)      GET /runs/ID/logs?key=KEY[&tail=N]: a strategy's last log lines
--   api.dashboard(app)     GET /: the HTML page (luabatch.ngx.dashboard)
--
-- list answers `luabatch runs --json`'s rows plus duration (seconds): it
-- reads the journal home (luabatch.ngx.journal: in the thread pool when
-- one is configured).  cancel does what `luabatch cancel` does: a run this
-- server drives gets the plan's cancel event (nothing more starts, its
-- running Batch jobs are terminated, it ends CANCEL once they have ended);
-- a run only journaled (its server restarted, or a CLI run whose client is
-- gone) has its unfinished Batch jobs terminated from the journal (the
-- aws_batch runner's ops.terminate_unfinished, as `luabatch cancel`) and
-- its end journaled CANCEL.  tail is one
-- GetLogEvents read backwards (limit N, default 50, at most 1000).

local log = require "luabatch.log"
local view = require "luabatch.ngx.view"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local require = require
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local floor = math.floor

local function ngx_() return rawget(_G, "ngx") end

local function count_arg(v, default, max)
  local n = tonumber(type(v) == "table" and v[#v] or v)
  if not n or n < 0 then return default end
  n = floor(n)
  if max and n > max then n = max end
  return n
end

--- list(app): GET /runs
function _M.list(app)
  local n = ngx_()
  local args = n.req.get_uri_args()
  local limit = count_arg(args.limit, 50)
  local list, err = app.journal:list(limit)
  if not list then return app.fail(500, "journal home: " .. tostring(err)) end
  local json = require "luabatch.json"
  local out = json.list({})
  for _, r in ipairs(list) do
    local t0, t1 = tonumber(r.started), tonumber(r.ended_at or r.last_at)
    out[#out + 1] = { run_id = r.run_id, workflow = r.workflow, started = r.started, ended = r.ended_at,
      status = r.ended_status or "RUNNING", jobs = r.jobs, cleaned = r.cleaned,
      duration = t0 and t1 and t1 >= t0 and floor((t1 - t0) * 1000 + 0.5) / 1000 or nil }
  end
  return app.reply(200, out)
end

local function default_reason(app)
  local p = require("luabatch.runner.aws_batch.policy").merge(type(app.policy) == "table" and app.policy or nil)
  return p.terminate_reason or "luabatch: cancelled by user"
end

-- A run only journaled: terminate its unfinished Batch jobs, journal the
-- cancel, the terminations and the end -> view
local function cancel_journaled(app, id, events, reason)
  local journal = require "luabatch.journal"
  local st = journal.fold(events)
  local ops = require("luabatch.runner").ops("aws_batch")
  app:journal_event(id, { ev = "cancel", reason = reason })
  ops.terminate_unfinished(st, ops.clients_for(st, { getenv = app.getenv }),
    { reason = reason, journal = app.journal:handle(id),
      on_error = function(msg) log.warn("luabatch.ngx.api: cancel %s: %s", id, msg) end })
  -- the jobs that ended, and every other one of the run CANCEL
  local recs = {}
  for jid, f in pairs(st.finished) do recs[jid] = f.record end
  local counts = journal.end_counts(recs)
  app:journal_event(id, { ev = "end", status = "CANCEL", jobs = counts })
  app.journal:flush(id)
  local again = app.journal:events(id)
  return view.journaled(id, again or events)
end

--- cancel(app, id): DELETE /runs/ID
function _M.cancel(app, id)
  local n = ngx_()
  local args = n.req.get_uri_args()
  local reason = type(args.reason) == "string" and args.reason ~= "" and args.reason or default_reason(app)
  local meta, st, msg = app:load_run(id)
  if not meta then
    if st ~= 404 then return app.fail(st, msg) end
    local events, jerr, code = app.journal:events(id)
    if not events then
      if code == "ENOENT" then return app.fail(404, "no run '" .. id .. "'") end
      return app.fail(500, "run " .. id .. ": journal: " .. tostring(jerr))
    end
    local ended = require("luabatch.journal").fold(events).ended
    if ended then
      return app.fail(409, str_format("run %s already ended (%s)", id, tostring(ended.status)))
    end
    return app.reply(202, cancel_journaled(app, id, events, reason))
  end
  if meta.done then
    return app.fail(409, str_format("run %s already ended (%s)", id, tostring(meta.final and meta.final.status)))
  end
  local d = app:dict()
  d:set(app.prefix .. "cancel:" .. id, reason, app.ttl)
  -- the step under the run's lock feeds the plan its cancel event (another
  -- worker stepping now sees the dirty mark and steps again)
  local ok, derr = app:drive(id)
  if ok == nil then log.warn("luabatch.ngx.api: DELETE /runs/%s: %s", id, tostring(derr)) end
  return app.reply(202, view.live(app, app:load_run(id) or meta))
end

--- tail(app, id): GET /runs/ID/logs?key=KEY[&tail=N]
function _M.tail(app, id)
  local n = ngx_()
  local args = n.req.get_uri_args()
  local key = args.key
  if type(key) ~= "string" or key == "" then return app.fail(400, "?key= names one strategy (its key)") end
  local limit = count_arg(args.tail, 50, 1000)
  if limit == 0 then limit = 50 end
  local meta, st, msg = app:load_run(id)
  if not meta then
    if st == 404 then msg = msg .. "; its logs: luabatch logs " .. id end
    return app.fail(st, msg)
  end
  local entry
  for _, j in ipairs(view.states(app, meta)) do
    if j.key == key then entry = j end
  end
  if not entry then return app.fail(404, str_format("run %s has no strategy '%s'", id, key)) end
  local body = { key = key, status = entry.status, log_stream = entry.log_stream, lines = require("luabatch.json").list({}) }
  if not entry.log_stream then return app.reply(200, body) end
  local sc = entry.config or {}
  local c = app:clients_of(sc)
  local group = sc.log_group or "/aws/batch/job"
  body.log_group = group
  local ans, lerr = c.logs:get_log_events(group, entry.log_stream, { start_from_head = false, limit = limit })
  if not ans then return app.fail(502, str_format("log %s %s: %s", group, entry.log_stream, log.redact(tostring(lerr)))) end
  for _, ev in ipairs(ans.events) do
    body.lines[#body.lines + 1] = { t = ev.timestamp, m = log.redact(tostring(ev.message)) }
  end
  return app.reply(200, body)
end

--- dashboard(app): GET / (a page of inline HTML, CSS and JS; no assets)
function _M.dashboard()
  local n = ngx_()
  n.status = 200
  n.header["Content-Type"] = "text/html; charset=utf-8"
  n.header["Cache-Control"] = "no-store"
  n.print(require("luabatch.ngx.dashboard").page())
  return n.exit(n.HTTP_OK)
end

return _M
