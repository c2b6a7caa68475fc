-- tests/bench/batch.lua: N concurrent jobs (default 1,000) on the Batch
-- emulator (tests/servers/batch_emulator.py), watched by luabatch.poller,
-- against the seed's strategy (one DescribeJobs per job per interval).
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--     lua5.4 tests/bench/batch.lua [--jobs N] [--shape separate|array|both] [--md FILE]
--
-- Shapes: "separate" = N SubmitJobs (`sleep 5..24`, taken from the poller's
-- token bucket, as the provider shares it with DescribeJobs), each watched
-- as soon as it is submitted; "array" = one array job of N children
-- (`exec sleep 5..24` by AWS_BATCH_JOB_ARRAY_INDEX), watched two ways in the
-- same run by two pollers: the parent plus every child "<parent>:<i>" (each
-- child's end is seen), and the parent alone (its statusSummary counts; a
-- child's end is only known when the parent ends).
--
-- Measured per strategy: DescribeJobs calls per poll cycle (max, mean) vs
-- ceil(active/100), the busiest 10 s window, total calls, detection latency
-- (the time on_change reported SUCCEEDED/FAILED minus the real process exit,
-- the emulator's exitedAt: epoch seconds, the same clock as core.now), the
-- client CPU spent polling (os.clock around each poller step) and the
-- process's peak RSS (VmHWM).  The seed's calls and latencies are computed
-- from each job's real timeline (createdAt, RUNNABLE at createdAt + the
-- SUBMITTED and PENDING delays, startedAt, stoppedAt); its client cost is
-- measured by tests/bench/batch_seed_boto3.py, one boto3 DescribeJobs per
-- job over the same ids for one full cycle, and scaled to its call count.
-- Prints Markdown tables on stdout (and appends them to --md FILE).
package.path = "tests/?.lua;" .. package.path

local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local retry = require "luabatch.retry"
local batchmod = require "luabatch.batch"
local poller = require "luabatch.poller"
local cjson = require "cjson.safe"
local emulator = require "helpers.batch_emulator"
local PIV = require("luabatch.runner.aws_batch.policy").defaults.intervals

local N, SHAPE, MD = 1000, "both", nil
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--jobs" then N = assert(tonumber(arg[i + 1]), "--jobs N"); i = i + 1
    elseif a == "--shape" then SHAPE = arg[i + 1]; i = i + 1
    elseif a == "--md" then MD = arg[i + 1]; i = i + 1
    else error("usage: batch.lua [--jobs N] [--shape separate|array|both] [--md FILE]") end
    i = i + 1
  end
end

-- Emulator state delays (s): the fast phase is visible, RUNNABLE the longest.
local DELAYS = { SUBMITTED = 0.5, PENDING = 0.5, RUNNABLE = 2, STARTING = 1 }
local SUBMIT_RATE = tonumber(os.getenv("BENCH_BATCH_RATE") or "") or 20   -- poller default
local function duration(i) return 5 + (i * 7) % 20 end          -- 5..24 s, uniform
local ARRAY_CMD = "exec sleep $((5 + AWS_BATCH_JOB_ARRAY_INDEX * 7 % 20))"

local function log(fmt, ...) io.stderr:write(("[bench batch] " .. fmt .. "\n"):format(...)) end

local function vmhwm_mib()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return (tonumber(s:match("VmHWM:%s*(%d+)")) or 0) / 1024
end

local function pct(sorted, p)
  if #sorted == 0 then return 0 end
  local k = math.ceil(p / 100 * #sorted)
  if k < 1 then k = 1 end
  return sorted[k]
end

local function sorted_copy(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s
end

-- Busiest `win`-second window over a list of call times.
local function peak_window(times, win)
  local t = sorted_copy(times)
  local best, j = 0, 1
  for i = 1, #t do
    while t[i] - t[j] >= win do j = j + 1 end
    if i - j + 1 > best then best = i - j + 1 end
  end
  return best
end


---------------------------------------------------------------------------
-- Setup
---------------------------------------------------------------------------

local emu = assert(emulator.start({ delays = DELAYS, kill_grace = 0 }))
local ok_all, err_all = xpcall(function()

local cfg = config.new({ env = { AWS_REGION = emu.region },
  endpoints = { batch = emu.endpoint } })
local creds = credentials.static({ access_key = emu.access_key, secret_key = emu.secret_key })
local batch = batchmod.new({ config = cfg, credentials = creds, retry = retry.new({ max_attempts = 4 }) })

local def = assert(batch:register_job_definition({
  jobDefinitionName = "lb-bench-sleep", type = "container",
  parameters = { secs = "5" },
  containerProperties = { image = "debian:bookworm-slim", command = { "sleep", "Ref::secs" },
    resourceRequirements = { { type = "VCPU", value = "1" }, { type = "MEMORY", value = "128" } } },
}))

-- A poller with its own bookkeeping: cycles, call times, detections.
local function new_watch(label, intervals)
  local w = { label = label, cycles = {}, call_times = {}, detected = {}, cpu = 0, first = {} }
  w.p = assert(poller.new({
    batch = batch, rate = SUBMIT_RATE, intervals = intervals,
    on_change = function(s)
      if s.status == "SUCCEEDED" or s.status == "FAILED" or s.status == "MISSING" then
        w.detected[s.id] = { at = core.now(), status = s.status }
      end
    end,
    on_cycle = function(c)
      w.cycles[#w.cycles + 1] = { active = c.active, calls = c.calls, ids = c.ids }
      local t = core.now()
      for _ = 1, c.calls do w.call_times[#w.call_times + 1] = t end
    end,
  }))
  return w
end

-- One step of each poller that is due (CPU time accounted per poller).
local function pump(watches)
  local now = core.monotime()
  for _, w in ipairs(watches) do
    local at = w.p:core():next_wakeup()
    if at and at <= now then
      local c0 = os.clock()
      assert(w.p:step())
      w.cpu = w.cpu + os.clock() - c0
    end
  end
end

local function pending(watches)
  for _, w in ipairs(watches) do
    if w.p:core():pending() > 0 then return true end
  end
  return false
end

-- Step every poller when due until none has a job left to watch.
local function drain(watches)
  while pending(watches) do
    pump(watches)
    local next_at
    for _, w in ipairs(watches) do
      local at = w.p:core():next_wakeup()
      if at and (not next_at or at < next_at) then next_at = at end
    end
    if next_at then
      local d = next_at - core.monotime()
      if d > 0 then core.sleep(math.min(d, 5)) end
    end
  end
end

local function emu_jobs()
  local by = {}
  for _, j in ipairs(emu:jobs()) do by[j.jobId] = j end
  return by
end


---------------------------------------------------------------------------
-- The seed's strategy, replayed on a job's real timeline (DD:496-547):
-- DescribeJobs right after SubmitJob, then sleep 10 s while SUBMITTED /
-- PENDING / RUNNING (x1.5 per poll after 300 s elapsed, max 60 s), 5 s while
-- RUNNABLE / STARTING, until SUCCEEDED/FAILED.  -> calls, detection time.
---------------------------------------------------------------------------

local function seed_replay(tl, poll_times)
  local t, calls, interval = tl.created, 0, 10
  local runnable_at = tl.created + DELAYS.SUBMITTED + DELAYS.PENDING
  while true do
    calls = calls + 1
    poll_times[#poll_times + 1] = t
    if t >= tl.stopped then return calls, t end
    local sleep
    if t >= runnable_at and t < tl.started then
      sleep = 5
    else
      if t - tl.created > 300 then interval = math.min(interval * 1.5, 60) end
      sleep = interval
    end
    t = t + sleep
  end
end


---------------------------------------------------------------------------
-- Measure one strategy's results
---------------------------------------------------------------------------

local rows = {}

-- ids: jobs whose end is detected; detect(id) -> epoch s of detection.
local function add_row(name, w, ids, exited, detect, cpu)
  local lat, missing = {}, 0
  for _, id in ipairs(ids) do
    local d, x = detect(id), exited[id]
    if d and x then lat[#lat + 1] = d - x else missing = missing + 1 end
  end
  local s = sorted_copy(lat)
  local maxc, sumc, over, maxtarget, ids_n = 0, 0, 0, 0, 0
  for _, c in ipairs(w.cycles) do
    ids_n = ids_n + c.ids
    local target = math.ceil(c.active / 100)
    if c.calls > maxc then maxc = c.calls end
    if target > maxtarget then maxtarget = target end
    if c.calls > target then over = over + 1 end
    sumc = sumc + c.calls
  end
  rows[#rows + 1] = {
    name = name,
    per_cycle = ("%d / %.2f (ceil(active/100) <= %d; %d of %d cycles above)"):format(maxc,
      #w.cycles > 0 and sumc / #w.cycles or 0, maxtarget, over, #w.cycles),
    per_call = sumc > 0 and ids_n / sumc or 0,
    peak10 = peak_window(w.call_times, 10), total = sumc,
    p50 = pct(s, 50), p95 = pct(s, 95), max = s[#s] or 0, missing = missing,
    cpu = ("%.2f"):format(cpu), rss = ("%.1f"):format(vmhwm_mib()),
  }
end

-- The seed's row: calls from seed_replay, client cost from boto3.
local function seed_row(name, ids, timelines, exited, boto)
  local poll_times, total, lat = {}, 0, {}
  for _, id in ipairs(ids) do
    local tl = timelines[id]
    local calls, at = seed_replay(tl, poll_times)
    total = total + calls
    lat[#lat + 1] = at - exited[id]
  end
  -- per 10 s cycle: how many jobs were active (= calls in that cycle)
  local s = sorted_copy(lat)
  local per_call = boto.cycle_cpu / boto.calls
  local cpu = boto.startup_cpu + per_call * total
  local peak = peak_window(poll_times, 10)
  rows[#rows + 1] = {
    name = name,
    per_cycle = ("%d (one per active job per 10 s)"):format(peak), per_call = 1,
    peak10 = peak, total = total, p50 = pct(s, 50), p95 = pct(s, 95), max = s[#s] or 0,
    missing = 0,
    cpu = ("%.1f (measured %.2f s per %d calls, x%.1f)"):format(cpu, boto.cycle_cpu, boto.calls,
      total / boto.calls),
    rss = ("%.1f"):format(boto.rss_mib),
  }
  return boto
end

-- boto3: one DescribeJobs per id over `ids`, one full cycle.
local function boto3_cycle(ids)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(table.concat(ids, "\n"), "\n")
  f:close()
  local cmd = ("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s /usr/bin/python3 "
    .. "tests/bench/batch_seed_boto3.py %s %s %s"):format(emu.access_key, emu.secret_key,
    emu.endpoint, emu.region, path)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return assert(cjson.decode(out:match("{.*}") or "null"), "boto3 script: " .. out)
end

-- Timelines (created, started, stopped in epoch s) from DescribeJobs,
-- not counted against any strategy (the emulator's call counts are read
-- before).
local function timelines_of(ids)
  local out = {}
  local ans = assert(batch:describe_jobs_all(ids))
  for _, j in ipairs(ans.jobs) do
    out[j.jobId] = { created = j.createdAt / 1000, started = (j.startedAt or j.createdAt) / 1000,
                     stopped = (j.stoppedAt or 0) / 1000, status = j.status }
  end
  return out
end

local notes = {}

---------------------------------------------------------------------------
-- Shape 1: N separate SubmitJobs
---------------------------------------------------------------------------
if SHAPE == "separate" or SHAPE == "both" then
  log("separate: submitting %d jobs at <= %g/s (the poller's token bucket)", N, SUBMIT_RATE)
  emu:reset_calls()
  -- The provider's policy (luabatch.runner.aws_batch.policy): intervals,
  -- and a new job's first poll one fast interval after its SubmitJob.
  local w = new_watch("policy", PIV)
  -- The same jobs, watched in the same run by the bare poller defaults
  -- (RUNNING 10 s x1.5 to 60 s) polling a new job at the next cycle: what
  -- the policy's two choices buy.
  local wf = new_watch("defaults")
  -- And a third: the policy's intervals but RUNNING flat at 10 s.
  local flat = {}
  for k, v in pairs(PIV) do flat[k] = v end
  flat.growth = 1
  local wd = new_watch("flat", flat)
  local ids = {}
  local t0, c0 = core.monotime(), os.clock()
  local submit_cpu = 0
  for i = 1, N do
    local s0 = os.clock()
    assert(w.p:take(1))
    local r = assert(batch:submit_job({ jobName = "bench-" .. i, jobQueue = emu.queue,
      jobDefinition = def.jobDefinitionArn, parameters = { secs = tostring(duration(i)) } }))
    w.p:ok()
    w.p:watch(r.jobId, nil, PIV.fast)
    wf.p:watch(r.jobId)
    wd.p:watch(r.jobId, nil, PIV.fast)
    submit_cpu = submit_cpu + os.clock() - s0
    ids[i] = r.jobId
    pump({ w, wf, wd })
  end
  local t_sub = core.monotime() - t0
  log("separate: submitted in %.1f s; watching", t_sub)
  drain({ w, wf, wd })
  local wall = core.monotime() - t0
  local calls = emu:calls()
  local jobs = emu_jobs()
  local exited, ok_n = {}, 0
  for _, id in ipairs(ids) do
    exited[id] = jobs[id] and jobs[id].exitedAt
    if jobs[id] and jobs[id].status == "SUCCEEDED" then ok_n = ok_n + 1 end
  end
  log("separate: done in %.1f s, %d/%d SUCCEEDED, emulator saw %d DescribeJobs", wall, ok_n, N,
    (calls.counts or {}).DescribeJobs or 0)
  add_row(("luabatch (provider policy), %d separate jobs"):format(N), w, ids, exited,
    function(id) return w.detected[id] and w.detected[id].at end, w.cpu)
  add_row(("luabatch.poller bare defaults (first poll at once, RUNNING x1.5 to 60 s), %d separate jobs"):format(N),
    wf, ids, exited, function(id) return wf.detected[id] and wf.detected[id].at end, wf.cpu)
  add_row(("luabatch, policy with RUNNING flat 10 s, %d separate jobs"):format(N),
    wd, ids, exited, function(id) return wd.detected[id] and wd.detected[id].at end, wd.cpu)
  local tls = timelines_of(ids)
  local boto = boto3_cycle(ids)
  seed_row(("seed, %d separate jobs (computed calls; boto3 cost)"):format(N), ids, tls, exited, boto)
  notes[#notes + 1] = ("separate: %d SubmitJobs in %.1f s (submit CPU %.2f s), all ended after "
    .. "%.1f s, %d SUCCEEDED; emulator counted %d DescribeJobs (pollers: %d + %d + %d); boto3 one-cycle wall "
    .. "%.1f s for %d calls (startup %.2f CPU s, %.1f MiB before the cycle)"):format(N, t_sub,
    submit_cpu, wall, ok_n, (calls.counts or {}).DescribeJobs or 0, w.p:stats().calls, wf.p:stats().calls,
    wd.p:stats().calls, boto.cycle_wall, boto.calls, boto.startup_cpu, boto.startup_rss_mib)
  w.p:close()
  wf.p:close()
  wd.p:close()
end

---------------------------------------------------------------------------
-- Shape 2: one array job of N children
---------------------------------------------------------------------------
if SHAPE == "array" or SHAPE == "both" then
  log("array: one SubmitJob of size %d", N)
  emu:reset_calls()
  local wc, wp = new_watch("children", PIV), new_watch("parent", PIV)
  local t0 = core.monotime()
  assert(wc.p:take(1))
  local r = assert(batch:submit_job({ jobName = "bench-array", jobQueue = emu.queue,
    jobDefinition = def.jobDefinitionArn, arrayProperties = { size = N },
    containerOverrides = { command = { "sh", "-c", ARRAY_CMD } } }))
  local parent = r.jobId
  local kids = {}
  for i = 0, N - 1 do kids[i + 1] = parent .. ":" .. i end
  wc.p:watch(parent, nil, PIV.fast)
  for _, id in ipairs(kids) do wc.p:watch(id, nil, PIV.fast) end
  wp.p:watch(parent, nil, PIV.fast)
  drain({ wc, wp })
  local wall = core.monotime() - t0
  local calls = emu:calls()
  local jobs = emu_jobs()
  local exited, ok_n = {}, 0
  for _, id in ipairs(kids) do
    exited[id] = jobs[id] and jobs[id].exitedAt
    if jobs[id] and jobs[id].status == "SUCCEEDED" then ok_n = ok_n + 1 end
  end
  log("array: done in %.1f s, %d/%d children SUCCEEDED, emulator saw %d DescribeJobs", wall, ok_n, N,
    (calls.counts or {}).DescribeJobs or 0)
  add_row(("luabatch.poller, array of %d: parent + every child"):format(N), wc, kids, exited,
    function(id) return wc.detected[id] and wc.detected[id].at end, wc.cpu)
  add_row(("luabatch.poller, array of %d: parent only (statusSummary)"):format(N), wp, kids, exited,
    function() return wp.detected[parent] and wp.detected[parent].at end, wp.cpu)
  local tls = timelines_of(kids)
  local boto = boto3_cycle(kids)
  seed_row(("seed, array of %d (per child; computed calls; boto3 cost)"):format(N), kids, tls, exited, boto)
  notes[#notes + 1] = ("array: all %d children ended after %.1f s, %d SUCCEEDED; emulator counted "
    .. "%d DescribeJobs (both pollers: %d + %d)"):format(N, wall, ok_n,
    (calls.counts or {}).DescribeJobs or 0, wc.p:stats().calls, wp.p:stats().calls)
  wc.p:close()
  wp.p:close()
end

---------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------
local out = {}
out[#out + 1] = ("\n| Batch polling, %d concurrent jobs (emulator; job = sleep 5..24 s) | DescribeJobs calls/cycle "
  .. "max / mean | ids/call | busiest 10 s | total calls | detection p50 / p95 / max s | "
  .. "client CPU s | peak RSS MiB |"):format(N)
out[#out + 1] = "|---|---|---:|---:|---:|---|---|---:|"
for _, r in ipairs(rows) do
  out[#out + 1] = ("| %s | %s | %.1f | %d | %d | %.1f / %.1f / %.1f%s | %s | %s |"):format(r.name,
    r.per_cycle, r.per_call, r.peak10, r.total, r.p50, r.p95, r.max, r.missing > 0 and (" (%d unseen)"):format(r.missing) or "",
    r.cpu, r.rss)
end
out[#out + 1] = ""
for _, n in ipairs(notes) do out[#out + 1] = "- " .. n end
out[#out + 1] = ("- intervals: the provider policy's (2 s x1.25 to 10 s before RUNNING; 10 s x1.1 to 30 s "
  .. "while RUNNING; +-20%% jitter; first poll 2 s after SubmitJob) unless the row says otherwise; emulator delays SUBMITTED %g, PENDING %g, RUNNABLE %g, STARTING %g s; "
  .. "client CPU = os.clock() inside poller steps (%s); RSS = VmHWM of the whole bench process; "
  .. "seed RSS/CPU = one shared boto3 client in one thread (a lower bound: the seed builds clients "
  .. "per job)"):format(DELAYS.SUBMITTED, DELAYS.PENDING, DELAYS.RUNNABLE, DELAYS.STARTING,
  jit and jit.version or _VERSION)
local text = table.concat(out, "\n") .. "\n"
io.write(text)
if MD then
  local f = assert(io.open(MD, "a"))
  f:write(text)
  f:close()
end

end, debug.traceback)
emu.stop()
if not ok_all then
  io.stderr:write(tostring(err_all), "\n")
  os.exit(1)
end
