-- tests/bench/batch_matrix.lua: a wide matrix on AWS Batch end to end --
-- `luabatch run` (the executable) of one job of N strategies at
-- max-parallel M against the Batch emulator (tests/servers/batch_emulator.py)
-- and Ceph RGW (tests/helpers/aws_peers.lua), as a user runs it.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;tests/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--     lua5.4 tests/bench/batch_matrix.lua [--strategies N] [--max-parallel M] [--md FILE]
--
-- Each strategy is a Batch job running `luabatch task` (a bash stage that
-- sleeps 20..40 s by its matrix value).  Measured: wall time of the run,
-- the SubmitJob / DescribeJobs calls the emulator served, the client's CPU
-- (user + sys) and max RSS (/usr/bin/time), the most Batch jobs live at
-- once (from each job's createdAt and stoppedAt: never above M, M once
-- the first M are in), and the slot-refill latency: the k-th job to end
-- (the emulator's stoppedAt, when DescribeJobs first can say SUCCEEDED)
-- frees the slot the (M + k)-th SubmitJob (its createdAt) takes, so
-- latency k = createdAt(M + k) - stoppedAt(k) over the first N - M ends
-- (both on the emulator's clock).  Reference: the ideal wall time, every
-- slot refilled at once with the emulator's fixed state delays.
package.path = "tests/?.lua;" .. package.path

local core = require "luabatch.core"
local cjson = require "cjson.safe"
local peers = require "helpers.aws_peers"

local N, MP, MD, LO, HI = 1000, 500, nil, 20, 40
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--strategies" then N = assert(tonumber(arg[i + 1]), "--strategies N"); i = i + 1
    elseif a == "--max-parallel" then MP = assert(tonumber(arg[i + 1]), "--max-parallel M"); i = i + 1
    elseif a == "--md" then MD = arg[i + 1]; i = i + 1
    elseif a == "--sleep" then
      LO, HI = (arg[i + 1] or ""):match("^(%d+):(%d+)$")
      LO, HI = assert(tonumber(LO), "--sleep LO:HI"), tonumber(HI)
      i = i + 1
    else error("usage: batch_matrix.lua [--strategies N] [--max-parallel M] [--sleep LO:HI] [--md FILE]") end
    i = i + 1
  end
end

-- Emulator state delays (s), as tests/bench/batch.lua's.
local DELAYS = { SUBMITTED = 0.5, PENDING = 0.5, RUNNABLE = 2, STARTING = 1 }
local function secs_of(n) return LO + (n * 7) % (HI - LO + 1) end     -- LO..HI s

local function log(fmt, ...) io.stderr:write(("[bench matrix] " .. fmt .. "\n"):format(...)) end

local function pct(sorted, p)
  if #sorted == 0 then return 0 end
  local k = math.ceil(p / 100 * #sorted)
  if k < 1 then k = 1 end
  return sorted[k]
end

local read = require("helpers.files").read_all

local p = assert(peers.start({ delays = DELAYS, kill_grace = 0 }))
local ok_all, err_all = xpcall(function()

local ns = {}
for i = 1, N do ns[i] = i end
local wf = p.dir .. "/matrix.yml"
require("helpers.files").write_all(wf, ([[
type: Workflow
name: bench-matrix
jobs:
  fan:
    runs-on: {type: aws_batch, with: {job_queue_arn: "${AWS_BATCH_JOB_QUEUE_ARN}", s3_bucket: "${AWS_S3_BUCKET}"}}
    strategy:
      max-parallel: %d
      matrix: {n: [%s]}
    stages:
      - {name: work, bash: "sleep $((%d + ${{ matrix.n }} * 7 %% %d))"}
]]):format(MP, table.concat(ns, ", "), LO, HI - LO + 1))

p.emu:reset_calls()
local tfile = p.dir .. "/time.txt"
log("luabatch run: %d strategies at max-parallel %d (each sleeps %d..%d s)", N, MP, LO, HI)
local t0 = core.monotime()
local proc = assert(core.proc_spawn({
  argv = { "/usr/bin/time", "-f", "%e %U %S %M", "-o", tfile, p.exe, "run", wf, "--json" },
  env = p:env_with({}), cwd = p.dir, stdin = "" }))
local r = assert(peers.wait(proc, 3600))
local wall = core.monotime() - t0
local calls = p.emu:calls()
local ctx = cjson.decode(r.stdout or "") or {}
if r.exit ~= 0 then log("exit %s: %s", tostring(r.exit), (r.stderr or ""):sub(-2000)) end
if os.getenv("BENCH_MATRIX_STDERR") then         -- the run's stderr, kept for a closer look
  local f = assert(io.open(os.getenv("BENCH_MATRIX_STDERR"), "w"))
  f:write(r.stderr or "")
  f:close()
end
local tw, tu, ts, tm = (read(tfile) or ""):match("([%d.]+) ([%d.]+) ([%d.]+) (%d+)%s*$")
local cpu, rss = (tonumber(tu) or 0) + (tonumber(ts) or 0), (tonumber(tm) or 0) / 1024

-- Every Batch job of the run: created / stopped (ms, the emulator's clock).
local ids = {}
for _, j in ipairs(p.emu:jobs()) do ids[#ids + 1] = j.jobId end
local jobs = assert(p.batch:describe_jobs_all(ids)).jobs
local created, stopped, ok_n = {}, {}, 0
local events = {}
for _, j in ipairs(jobs) do
  created[#created + 1] = j.createdAt / 1000
  if j.stoppedAt then stopped[#stopped + 1] = j.stoppedAt / 1000 end
  if j.status == "SUCCEEDED" then ok_n = ok_n + 1 end
  events[#events + 1] = { j.createdAt, 1 }
  events[#events + 1] = { j.stoppedAt or math.huge, -1 }
end
table.sort(created)
table.sort(stopped)
table.sort(events, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
local live, peak = 0, 0
for _, e in ipairs(events) do
  live = live + e[2]
  if live > peak then peak = live end
end
local lat = {}
for k = 1, #created - MP do
  if stopped[k] then lat[#lat + 1] = created[MP + k] - stopped[k] end
end
table.sort(lat)

-- The refill latency in parts, from the run's journal (events carry `at`,
-- epoch s): end -> the poller saw it (per job), seen -> the successor's
-- `submit` event (k-th seen, (M + k)-th submit), that event -> SubmitJob
-- answered (createdAt; token wait + the call).
local by_id = {}
for _, j in ipairs(jobs) do by_id[j.jobId] = j end
local seen, submits, call, collect = {}, {}, {}, {}
do
  local jp = io.popen("ls '" .. p.home .. "'/runs/*/journal* 2>/dev/null")
  local path = jp:read("l")
  jp:close()
  local sub_at, seen_key = {}, {}
  for line in io.lines(path or "/dev/null") do
    local e = cjson.decode(line)
    if type(e) == "table" then
      if e.ev == "state" and e.status == "SUCCEEDED" and e.key then seen_key[e.key] = e.at end
      if e.ev == "result" and seen_key[e.key] then collect[#collect + 1] = e.at - seen_key[e.key] end
      if e.ev == "state" and e.status == "SUCCEEDED" and by_id[e.batch_job_id]
          and by_id[e.batch_job_id].stoppedAt / 1000 <= (stopped[#created - MP] or 0) then
        -- only the ends that free a slot for a successor
        seen[#seen + 1] = e.at - by_id[e.batch_job_id].stoppedAt / 1000
      elseif e.ev == "submit" then
        submits[#submits + 1] = e.at
        sub_at[e.key] = e.at
      elseif e.ev == "submitted" and sub_at[e.key] and by_id[e.batch_job_id] then
        call[#call + 1] = by_id[e.batch_job_id].createdAt / 1000 - sub_at[e.key]
      end
    end
  end
end
table.sort(seen)
table.sort(submits)
local seen_at = {}
for _, j in ipairs(jobs) do
  if j.stoppedAt then seen_at[#seen_at + 1] = j.stoppedAt / 1000 end
end
-- seen times (absolute) = stoppedAt + lag, per job, then sorted
do
  local abs = {}
  local jp = io.popen("ls '" .. p.home .. "'/runs/*/journal* 2>/dev/null")
  local path = jp:read("l")
  jp:close()
  for line in io.lines(path or "/dev/null") do
    local e = cjson.decode(line)
    if type(e) == "table" and e.ev == "state" and e.status == "SUCCEEDED" then abs[#abs + 1] = e.at end
  end
  table.sort(abs)
  seen_at = abs
end
local to_submit = {}
for k = 1, #submits - MP do
  if seen_at[k] then to_submit[#to_submit + 1] = submits[MP + k] - seen_at[k] end
end
table.sort(to_submit)
table.sort(call)
table.sort(collect)
local first_submit = created[1] or 0
local span = (stopped[#stopped] or first_submit) - first_submit   -- Batch's part of the wall time
local ramp = (created[math.min(MP, #created)] or first_submit) - first_submit
-- ideal: every slot refilled at once, the submits of the first M at the
-- token rate (20/s), each job its state delays + sleep
local lifetimes = {}
for i = 1, N do lifetimes[i] = DELAYS.SUBMITTED + DELAYS.PENDING + DELAYS.RUNNABLE + DELAYS.STARTING + secs_of(i) end

local cnt = calls.counts or {}
local rows = {
  ("| %d strategies, max-parallel %d (emulator + RGW) | wall s | SubmitJob | DescribeJobs (ids/call) | "
    .. "peak live jobs | slot refill p50 / p90 / max s | client CPU s | max RSS MiB |"):format(N, MP),
  "|---|---:|---:|---:|---:|---|---:|---:|",
  ("| luabatch run (%s) | %.1f | %d | %d (%.1f) | %d | %.2f / %.2f / %.2f | %.2f | %.1f |"):format(
    (ctx.status or "?") .. ", " .. ok_n .. " SUCCEEDED", wall, cnt.SubmitJob or 0, cnt.DescribeJobs or 0,
    (cnt.DescribeJobs or 0) > 0 and (calls.describe_ids or 0) / cnt.DescribeJobs or 0, peak,
    pct(lat, 50), pct(lat, 90), lat[#lat] or 0, cpu, rss),
  "",
  ("- the refill latency in parts (p50 / p90 s): job end -> seen by the poller %.2f / %.2f; seen -> the "
    .. "successor's submit %.2f / %.2f (of which seen -> its record read from S3 %.2f / %.2f); submit -> SubmitJob answered (token wait + call) %.2f / %.2f"):format(
    pct(seen, 50), pct(seen, 90), pct(to_submit, 50), pct(to_submit, 90), pct(collect, 50), pct(collect, 90),
    pct(call, 50), pct(call, 90)),
  ("- first %d SubmitJobs over %.1f s (the token bucket's 20/s); first SubmitJob to last job end %.1f s; "
    .. "every job: %.1f s of emulator state delays + sleep %d..%d s; %d refills measured; other calls: %s"):format(
    math.min(MP, N), ramp, span,
    DELAYS.SUBMITTED + DELAYS.PENDING + DELAYS.RUNNABLE + DELAYS.STARTING, LO, HI, #lat, (function()
      local o = {}
      for op, n in pairs(cnt) do if op ~= "SubmitJob" and op ~= "DescribeJobs" then o[#o + 1] = ("%s %d"):format(op, n) end end
      table.sort(o)
      return table.concat(o, ", ")
    end)()),
}
local text = "\n" .. table.concat(rows, "\n") .. "\n"
io.write(text)
if MD then
  local f = assert(io.open(MD, "a"))
  f:write(text)
  f:close()
end
if r.exit ~= 0 then error("luabatch run exited " .. tostring(r.exit)) end

end, debug.traceback)
p:stop()
if not ok_all then
  io.stderr:write(tostring(err_all), "\n")
  os.exit(1)
end
