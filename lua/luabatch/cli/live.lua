-- luabatch.cli.live: the view of a running workflow, fed by the engine's
-- progress events (luabatch.workflow.engine).
--
--   local v = live.new({ write = err_w, tty = true, width = 100, now = now,
--                        workflow = name, order = model.job_order })
--   v.progress(event, info)   -- every progress event of the run
--   v.line(text)              -- a stage or log line, shown above the table
--   v.tick()                  -- at least once a second: elapsed times move
--   v.name(job, sid)          -- a strategy's name ("fan[n=2]"), once known
--   v.close()                 -- the last table stays on screen
--
-- On a terminal: a table redrawn in place, one row per job -- its state,
-- its strategies counted by state (Batch's own for Batch jobs), elapsed
-- time, and a note: why it waits (a strategy RUNNABLE too long: the
-- runner's hint), what failed.  Stage lines scroll above it.  Off a
-- terminal: one timestamped line per state change of a job or strategy.
-- Strategies are named by their matrix values (`fan[n=2]`).

local label_of = require("luabatch.workflow.job").label
local tabular = require "luabatch.cli.tabular"
local fmt_secs = require("luabatch.pretty").secs
local first_error = require("luabatch.workflow.stage").first_error

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local os_date = os.date
local str_format = string.format
local tbl_concat = table.concat
local tbl_sort = table.sort

-- States in the order a strategy passes them (counts are shown so).
local ORDER = { "SUBMITTING", "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED",
                "SUCCESS", "SKIP", "FAILED", "CANCEL" }
local RANK = {}
for i, s in ipairs(ORDER) do RANK[s] = i end

local REDRAW_EVERY = 0.25    -- s: the least time between two redraws on events

--- counts(job) -> "2 RUNNING, 1 SUCCEEDED" (states in run order)
local function counts(j)
  local n = {}
  for _, s in pairs(j.strategies) do n[s.state] = (n[s.state] or 0) + 1 end
  local states = {}
  for st in pairs(n) do states[#states + 1] = st end
  tbl_sort(states, function(a, b) return (RANK[a] or 99) < (RANK[b] or 99) or
    ((RANK[a] or 99) == (RANK[b] or 99) and a < b) end)
  local parts = {}
  for i, st in ipairs(states) do parts[i] = n[st] .. " " .. st end
  return tbl_concat(parts, ", ")
end

-- The note of a job's row: a wait hint, else the first failure.
local function note(j)
  local hint, who
  for _, s in pairs(j.t1 == nil and j.strategies or {}) do    -- while the job runs
    if s.hint and s.state == "RUNNABLE" and (who == nil or s.label < who) then hint, who = s.hint, s.label end
  end
  if hint then return who .. ": " .. hint end
  if j.note then return j.note end
  return ""
end

function _M.new(o)
  local write, now = o.write, o.now
  local v = { jobs = {}, order = {}, t0 = now(), drawn = 0, last = 0 }
  for _, id in ipairs(o.order or {}) do
    v.order[#v.order + 1] = id
    v.jobs[id] = { state = "waiting", strategies = {} }
  end
  local function job_of(id)
    local j = v.jobs[id]
    if not j then
      j = { state = "waiting", strategies = {} }
      v.jobs[id] = j
      v.order[#v.order + 1] = id
    end
    return j
  end
  local function stamp() return os_date("!%H:%M:%S", math.floor(now())) end
  local function say(text)            -- off a terminal: a line per change
    if not o.tty then write(stamp() .. " " .. text .. "\n") end
  end

  -- the table: heading, one row per job
  local function render()
    local t = now()
    local rows = {}
    for _, id in ipairs(v.order) do
      local j = v.jobs[id]
      local el = j.t0 and fmt_secs((j.t1 or t) - j.t0) or "-"
      rows[#rows + 1] = { id, j.state, counts(j), el, note(j) }
    end
    local head = str_format("workflow %s  %s\n", tostring(o.workflow or "-"), fmt_secs(t - v.t0))
    return head .. tabular.render({ "JOB", "STATE", "STRATEGIES", "ELAPSED", "NOTE" }, rows,
      { width = o.width, shrink = { 5, 3, 1 }, ellipsis = o.ellipsis })
  end
  local function erase()
    if v.drawn > 0 then write(str_format("\27[%dA\27[J", v.drawn)) end
    v.drawn = 0
  end
  local function draw()
    if not o.tty then return end
    local text = render()
    erase()
    write(text)
    local n = 0
    for _ in text:gmatch("\n") do n = n + 1 end
    v.drawn, v.last, v.dirty = n, now(), false
  end
  local function changed()
    v.dirty = true
    if now() - v.last >= REDRAW_EVERY then draw() end
  end

  function v.line(text)
    if o.tty then
      erase()
      write(text)
      draw()
    else
      write(text)
    end
  end

  --- name(job, sid) -> the strategy's name by its matrix values, once a
  -- "strategy" event told them | nil
  function v.name(job, sid)
    local j, s = v.jobs[job], nil
    s = j and j.strategies[tostring(sid)]
    return s and s.values and s.label or nil
  end

  function v.tick()
    if o.tty and (v.dirty or now() - v.last >= 1) then draw() end
  end

  function v.close()
    if o.tty then draw() end
  end

  function v.progress(event, info)
    if event == "job-start" then
      local j = job_of(info.job)
      j.state, j.t0, j.runs_on = "running", now(), info.runs_on
      say(str_format("job %s: running%s", info.job, info.runs_on and info.runs_on ~= "local"
        and (" on " .. info.runs_on) or ""))
    elseif event == "job-retry" then
      local j = job_of(info.job)
      j.state, j.strategies = str_format("retry %d", info.attempt), {}
      say(str_format("job %s: FAILED, retry %d", info.job, info.attempt))
    elseif event == "job" then
      local j = job_of(info.job)
      j.state, j.t1 = info.status, now()
      j.t0 = j.t0 or j.t1
      if info.cached then j.state, j.note = info.status, "reused" end
      if info.reused then j.note = str_format("%d reused", info.reused) end
      local m = info.status == "FAILED" and first_error(info.errors)
      if m then j.note = (m:match("^[^\n]*") or m) end
      if not o.tty then
        local how = info.cached and "reused" or fmt_secs(info.seconds or 0)
        say(str_format("job %s: %s (%s)%s", info.job, info.status, how, m and (": " .. j.note) or ""))
      end
    elseif event == "strategy" then
      local j = job_of(info.job)
      local sid = tostring(info.strategy)
      local s = j.strategies[sid]
      if not s then
        s = {}
        j.strategies[sid] = s
      end
      if not s.label or (info.values and not s.values) then   -- named once its matrix values are known
        s.values, s.label = info.values, label_of(info.job, info.values)
      end
      local state = info.state
      if state == "started" then state = (j.runs_on == nil or j.runs_on == "local") and "RUNNING" or "SUBMITTING" end
      local was, hint = s.state, s.hint
      s.state, s.hint = state or s.state, info.hint
      if info.hint and info.hint ~= hint then
        say(s.label .. ": " .. info.hint)
      elseif s.state ~= was then
        local why = (s.state == "FAILED" or s.state == "CANCEL") and info.reason
        say(str_format("%s: %s%s", s.label, tostring(s.state), why and (" (" .. why .. ")") or ""))
      end
    else
      return
    end
    changed()
  end

  return v
end

return _M
