-- luabatch.cli.failures: what failed in a run, for a person to act on.
--
--   local failures = require "luabatch.cli.failures"
--   local caught = failures.catcher()          -- progress(event, info): stage failures as they happen
--   local text = failures.report(ctx, model, { caught = caught, run_id = id, limit = 10, tail = 10 })
--
-- One entry per failed strategy (or job), named by its matrix values
-- (`fan[n=2]`), in the workflow's job order: the failed stage, its exit
-- code (or signal), the last lines of its stderr and stdout, and the
-- error's first line.  The first failure is shown in full; the next ones
-- take a line each, up to `limit`; past that a count says where the rest
-- is ("47 more failures: luabatch status RUN").  A strategy without a
-- failed stage in its record (a stage without id, a Batch job that never
-- ran its stages) shows its own error, whole: a Batch failure already
-- holds its exit code, reason and last log lines.
--
-- The cause is named when it is a signal, an out-of-memory kill or a
-- timeout: a stage's return_code -N ("killed by signal 9 (SIGKILL, often
-- out of memory)"), an exit code 128+N ("exit code 137, killed (SIGKILL,
-- often out of memory)"), and for a Batch job (record.info.aws_batch, set
-- by the Batch runner) its container or status reason ("OutOfMemoryError:
-- Container killed due to memory usage", "Job attempt duration exceeded
-- timeout").  The first failure also says where its whole output is: for
-- a Batch job `luabatch logs RUN --job KEY` and the CloudWatch stream, for
-- a local stage the --json context (and the journal of a journaled run).

local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local next = next
local str_format = string.format
local str_match = string.match
local tbl_concat = table.concat
local tbl_sort = table.sort

local first_error = stage.first_error

--- label(job_id, record) -> "job" | "job[k=v,k2=v2]": luabatch.workflow.job.label
-- of the record's matrix values
function _M.label(job_id, rec)
  return job.label(job_id, type(rec) == "table" and rec.matrix or nil)
end

-- The last n lines of a text (nil when empty).
local function tail(s, n)
  if type(s) ~= "string" or s == "" then return nil end
  local lines = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  if #lines == 0 then return nil end
  local first = #lines > n and #lines - n + 1 or 1
  local out = {}
  for i = first, #lines do out[#out + 1] = lines[i] end
  return out, #lines - #out
end

--- catcher() -> progress function(event, info) keeping the stage failures
-- that reach no record (stages without an id): caught[label] = list
function _M.catcher()
  local caught = { by = {} }
  caught.progress = function(event, info)
    if event ~= "stage" or info.status ~= "FAILED" then return end
    local where = tostring(info.job or "?") .. "\0" .. tostring(info.strategy or "EMPTY")
    local list = caught.by[where] or {}
    caught.by[where] = list
    list[#list + 1] = { key = info.key or info.name or "?", errors = info.errors, outputs = info.outputs }
  end
  return caught
end

-- The failed stages of a strategy record: { { key, errors, outputs } }
local function failed_stages(rec)
  local out = {}
  if type(rec.stages) ~= "table" then return out end
  local keys = {}
  for k, r in pairs(rec.stages) do
    if type(r) == "table" and r.status == "FAILED" then keys[#keys + 1] = tostring(k) end
  end
  tbl_sort(keys)
  for _, k in ipairs(keys) do
    local r = rec.stages[k]
    out[#out + 1] = { key = k, errors = r.errors, outputs = r.outputs }
  end
  return out
end

-- One failure: { label, stage?, code?, stderr?, stdout?, error }
local function entries_of(ctx, model, caught)
  local list = {}
  local function add(job_id, sid, rec)
    local label = _M.label(job_id, rec)
    local stages = failed_stages(rec)
    if #stages == 0 and caught then stages = caught.by[tostring(job_id) .. "\0" .. tostring(sid)] or {} end
    local info = type(rec.info) == "table" and rec.info or {}
    local b = type(info.aws_batch) == "table" and info.aws_batch or nil
    local where = { job = job_id, strategy = sid ~= "EMPTY" and sid or nil }
    if #stages == 0 then
      list[#list + 1] = { label = label, error = first_error(rec.errors) or "FAILED", batch = b, where = where }
      return
    end
    for _, st in ipairs(stages) do
      local o = type(st.outputs) == "table" and st.outputs or {}
      list[#list + 1] = { label = label, stage = st.key, code = o.return_code, batch = b, where = where,
        stderr = o.stderr, stdout = o.stdout, error = first_error(st.errors) or "FAILED" }
    end
  end
  for _, id in ipairs(model.job_order or {}) do
    local rec = ctx.jobs and ctx.jobs[id]
    if type(rec) == "table" and rec.status == "FAILED" then
      if type(rec.strategies) == "table" and next(rec.strategies) then
        -- in matrix order (the job's strategies), else by label
        local sids, seen = {}, {}
        local jobdef = model.jobs and model.jobs[id]
        for _, combo in ipairs(jobdef and job.strategies(jobdef) or {}) do
          local r = rec.strategies[combo.id]
          if type(r) == "table" and r.status == "FAILED" then sids[#sids + 1] = combo.id; seen[combo.id] = true end
        end
        local rest = {}
        for sid, r in pairs(rec.strategies) do
          if not seen[sid] and type(r) == "table" and r.status == "FAILED" then rest[#rest + 1] = tostring(sid) end
        end
        -- numbers compared as numbers: n=2 before n=10
        local function natural(sid)
          return (_M.label(id, rec.strategies[sid]):gsub("%d+", function(d) return string.rep("0", 20 - #d) .. d end))
        end
        tbl_sort(rest, function(a, b) return natural(a) < natural(b) end)
        for _, sid in ipairs(rest) do sids[#sids + 1] = sid end
        for _, sid in ipairs(sids) do add(id, sid, rec.strategies[sid]) end
      elseif rec.stages or rec.errors then
        add(id, "EMPTY", rec)
      end
    end
  end
  return list
end

-- Signal names (Linux numbering, the signals a job is killed with).
local SIGNALS = { [1] = "SIGHUP", [2] = "SIGINT", [3] = "SIGQUIT", [4] = "SIGILL", [6] = "SIGABRT",
  [7] = "SIGBUS", [8] = "SIGFPE", [9] = "SIGKILL", [11] = "SIGSEGV", [13] = "SIGPIPE", [14] = "SIGALRM",
  [15] = "SIGTERM", [24] = "SIGXCPU", [25] = "SIGXFSZ" }

local function signal_name(n)
  local name = SIGNALS[n] or ("signal " .. n)
  if n == 9 then name = name .. ", often out of memory" end
  return name
end

--- exit_text(code) -> "exit code 3" | "killed by signal 9 (SIGKILL, often
-- out of memory)" (code -N: a stage killed by signal N) | "exit code 137,
-- killed (SIGKILL, often out of memory)" (128+N: what a shell or a
-- container reports for a child killed by signal N) | nil (not a number)
function _M.exit_text(code)
  if type(code) ~= "number" then return nil end
  if code < 0 then return str_format("killed by signal %d (%s)", -code, signal_name(-code)) end
  if code > 128 and code <= 128 + 64 then
    return str_format("exit code %d, killed (%s)", code, signal_name(code - 128))
  end
  return str_format("exit code %d", code)
end

--- batch_cause(b) -> text | nil: the reason Batch gave when it is the
-- cause (out of memory, a timeout), else the exit code's meaning.
-- b: record.info.aws_batch { kind, exit_code, status_reason, container_reason, ... }
function _M.batch_cause(b)
  if type(b) ~= "table" then return nil end
  if b.kind == "oom" then
    return b.container_reason or b.status_reason or "out of memory"
  elseif b.kind == "timeout" then
    local r = b.status_reason or b.attempt_reason or ""
    return str_match(r, "exceeded timeout") and r or "Job attempt duration exceeded timeout"
  end
  return _M.exit_text(b.exit_code)
end

local function headline(e)
  local what = e.stage and str_format("stage '%s'", e.stage) or "FAILED"
  local why = _M.exit_text(e.code)
  if not e.stage and e.batch then
    what = "AWS Batch job " .. tostring(e.batch.job_id or "?")
    why = _M.batch_cause(e.batch)
  end
  return str_format("job %s, %s%s", e.label, what, why and (": " .. why) or "")
end

--- log_hint(e, run_id) -> where the whole output of failure e is
function _M.log_hint(e, run_id)
  local b = e.batch
  if b then
    local stream = b.log_stream and str_format("CloudWatch %s %s", tostring(b.log_group or "/aws/batch/job"),
      b.log_stream) or nil
    if run_id and b.key then
      return str_format("full log: luabatch logs %s --job %s%s", run_id, b.key,
        stream and (" (" .. stream .. ")") or "")
    end
    return stream and ("full log: " .. stream) or nil
  end
  if not e.stage then return nil end
  local w = e.where or {}
  local path = str_format("jobs.%s.%sstages.%s.outputs", tostring(w.job),
    w.strategy and ("strategies." .. w.strategy .. ".") or "", e.stage)
  return str_format("full output: stdout and stderr are in the --json context (%s)%s", path,
    run_id and (" and in the journal of run " .. run_id) or "")
end

--- report(ctx, model [, opts]) -> text ("" when nothing failed).
-- opts: caught (a catcher), run_id, limit (one-liners, default 10),
-- tail (lines of stderr/stdout, default 10).
function _M.report(ctx, model, opts)
  opts = opts or {}
  local limit, n = opts.limit or 10, opts.tail or 10
  local list = entries_of(ctx, model, opts.caught)
  if #list == 0 then return "" end
  local out = {}
  local e = list[1]
  out[#out + 1] = "FAILED " .. headline(e)
  for _, which in ipairs({ "stderr", "stdout" }) do
    local lines, more = tail(e[which], n)
    if lines then
      out[#out + 1] = str_format("  %s%s:", which, more > 0 and str_format(" (last %d lines)", #lines) or "")
      for _, l in ipairs(lines) do out[#out + 1] = "    " .. l end
    end
  end
  local msg = tostring(e.error)
  if e.stage then msg = str_match(msg, "^[^\n]*") end
  out[#out + 1] = "  error: " .. msg:gsub("\n", "\n    ")
  local hint = _M.log_hint(e, opts.run_id)
  if hint then out[#out + 1] = "  " .. hint end
  for i = 2, math.min(#list, limit + 1) do
    local x = list[i]
    local last = tail(x.stderr, 1) or tail(x.stdout, 1)
    local why = last and last[1] or str_match(tostring(x.error), "^[^\n]*")
    out[#out + 1] = "FAILED " .. headline(x) .. ": " .. why
  end
  local rest = #list - (limit + 1)
  if rest > 0 then
    out[#out + 1] = str_format("%d more failures: %s", rest,
      opts.run_id and ("luabatch status " .. opts.run_id) or "--json shows every one")
  end
  return tbl_concat(out, "\n") .. "\n"
end

return _M
