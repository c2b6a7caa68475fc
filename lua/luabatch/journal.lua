-- luabatch.journal: what a run did, on disk, so another process can pick it up.
--
--   local journal = require "luabatch.journal"
--   local id = journal.new_run_id()                 -- "20261124-101500-a1b2c3d4"
--   local j = assert(journal.open(id, { create = true }))
--   assert(j:append({ ev = "submit", key = "count/EMPTY/0", job_id = "count", ... }))
--   local st = j:state()                            -- the events folded
--   j:request_cancel(reason); j:cancel_requested() -> reason | nil
--   for _, r in ipairs(journal.list(home, { limit = 50 })) do print(r.run_id, r.ended_status, r.cleaned) end
--
-- Layout: <home>/runs/<run_id>/journal.jsonl, one JSON object per line,
-- append-only (home = LUABATCH_HOME, else $HOME/.luabatch); directories 0700,
-- the file 0600; a cancel request is the marker file <run_dir>/cancel.
-- append() returns once the line is fsync'd; events() skips a torn last line.
-- Files are read in 64 KiB pieces; a line over MAX_LINE (64 MiB: a result
-- record can be as big as result.json) is logged and skipped, never held
-- whole (each_line).
-- Every event gets `at` (epoch s) and is redacted: no credential is kept.
-- Events (`ev`): run, config, jobdef, upload, submit (before SubmitJob),
-- submitted (after), state, result, terminate, job, cancel, cleanup, plan (an
-- event of the run's plan, which a resume replays), end;
-- key = "<job_id>/<strategy_id>/<attempt>".
-- Failures: nil, msg, code with code "EINVAL" (bad run id), "ENOENT"
-- (unknown run), "EIO" (cannot create/write).  Why: docs/design.md.

local json = require "luabatch.json"
local log = require "luabatch.log"
local core = require "luabatch.core"

local _M = { _VERSION = "0.1.0", MAX_LINE = 64 * 1024 * 1024 }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local io_open = io.open
local os_date = os.date
local os_time = os.time
local os_remove = os.remove
local os_getenv = os.getenv
local str_find = string.find
local str_match = string.match
local str_sub = string.sub
local tbl_concat = table.concat
local tbl_sort = table.sort
local floor = math.floor

local DIR_MODE = 448   -- 0700
local FILE_MODE = 384  -- 0600
local FILE = "journal.jsonl"
local CANCEL_FILE = "cancel"

---------------------------------------------------------------------------
-- Small filesystem layer over the core (src/bind_fs.c)
---------------------------------------------------------------------------

local fs = {}

function fs.isdir(path)
  local st = core.stat(path)
  return st ~= nil and st.type == "directory"
end

-- mkdir -p with mode 0700 for what it creates
function fs.mkdir_p(dir)
  if fs.isdir(dir) then return true end
  local parent = str_match(dir, "^(.+)/[^/]+/*$")
  if parent and not fs.isdir(parent) then
    local ok, msg, code = fs.mkdir_p(parent)
    if not ok then return nil, msg, code end
  end
  local ok, msg, code = core.mkdir(dir, DIR_MODE)
  if ok or code == "EEXIST" then return true end
  return nil, msg, code or "EIO"
end

function fs.listdir(dir)
  return core.listdir(dir) or {}
end

-- One write() of `data` at the end of `path` (created 0600), then fsync.
function fs.append(path, data, nosync)
  local ok, msg, code = core.append_file(path, data, FILE_MODE, nosync)
  if ok then return true end
  return nil, msg, code or "EIO"
end

-- Remove a directory tree (files and subdirectories; no symlink following
-- beyond what remove() does on the entries themselves).
function fs.rmtree(dir)
  for _, name in ipairs(fs.listdir(dir)) do
    local p = dir .. "/" .. name
    if fs.isdir(p) then
      local ok, msg, code = fs.rmtree(p)
      if not ok then return nil, msg, code end
    else
      local ok, msg = os_remove(p)
      if not ok then return nil, msg, "EIO" end
    end
  end
  local ok, msg = os_remove(dir)
  if not ok then return nil, msg, "EIO" end
  return true
end

---------------------------------------------------------------------------
-- Run ids and paths
---------------------------------------------------------------------------

--- The journal home: LUABATCH_HOME, else $HOME/.luabatch (else ./.luabatch).
function _M.home(getenv)
  getenv = getenv or os_getenv
  local h = getenv("LUABATCH_HOME")
  if h and h ~= "" then return h end
  local home = getenv("HOME")
  if home and home ~= "" then return home .. "/.luabatch" end
  return ".luabatch"
end

--- A new run id: "YYYYMMDD-HHMMSS-<8 hex>" (UTC; [0-9a-z-] only).
function _M.new_run_id(epoch)
  if epoch ~= nil and type(epoch) ~= "number" then
    error("bad argument #1 to 'new_run_id' (number expected, got " .. type(epoch) .. ")", 2)
  end
  epoch = floor(epoch or os_time())
  return os_date("!%Y%m%d-%H%M%S", epoch) .. "-" .. core.hex(core.random_bytes(4))
end

--- Is `id` usable as a run id (a directory name, an S3 key part)?
function _M.valid_run_id(id)
  return type(id) == "string" and #id <= 128 and str_find(id, "^[%w][%w._-]*$") ~= nil
end

local function run_dir(home, run_id) return home .. "/runs/" .. run_id end

---------------------------------------------------------------------------
-- Redaction (structural: keeps the JSON valid)
---------------------------------------------------------------------------

-- Keys whose string values are secrets whatever they look like: log's rule.
local secret_key = log.secret_name

local function scrub(v, seen)
  local t = type(v)
  if t == "string" then return log.redact(v) end
  if t ~= "table" then return v end
  if seen[v] then error("journal: a cycle in the event", 0) end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do
    local nk = type(k) == "string" and log.redact(k) or k
    if secret_key(k) and type(x) == "string" and x ~= "" then
      out[nk] = "<redacted>"
    else
      out[nk] = scrub(x, seen)
    end
  end
  seen[v] = nil
  local m = getmetatable(v)
  if m then setmetatable(out, m) end
  return out
end

_M._scrub = function(v) return scrub(v, {}) end

---------------------------------------------------------------------------
-- Opening
---------------------------------------------------------------------------

--- Open the journal of `run_id`.  opts: home (default journal.home()),
-- create (make it when missing; reopening an existing one is fine),
-- nosync (appends are not fsync'd: they outlive the process, not a power
-- loss -- for a run with nothing remote to re-attach to).
function _M.open(run_id, opts)
  if type(run_id) ~= "string" then
    error("bad argument #1 to 'open' (string expected, got " .. type(run_id) .. ")", 2)
  end
  opts = opts or {}
  local home = opts.home or _M.home(opts.getenv)
  if not _M.valid_run_id(run_id) then
    return nil, "bad run id '" .. run_id .. "' (letters, digits, '.', '_', '-')", "EINVAL"
  end
  local dir = run_dir(home, run_id)
  local path = dir .. "/" .. FILE
  local f = io_open(path, "rb")
  local need_nl = false
  if f then
    local size = f:seek("end")
    if size and size > 0 then
      f:seek("set", size - 1)
      need_nl = f:read(1) ~= "\n"
    end
    f:close()
  elseif opts.create then
    local ok, msg, code = fs.mkdir_p(home)
    if ok then ok, msg, code = fs.mkdir_p(home .. "/runs") end
    if ok then ok, msg, code = fs.mkdir_p(dir) end
    if not ok then return nil, "journal " .. run_id .. ": " .. tostring(msg), code end
    ok, msg, code = fs.append(path, "")
    if not ok then return nil, msg, code end
  else
    return nil, "no run '" .. run_id .. "' in " .. home, "ENOENT"
  end
  return setmetatable({ run_id = run_id, home = home, dir = dir, file = path,
                        need_nl = need_nl, nosync = opts.nosync and true or nil }, mt)
end

function _M:path() return self.file end

function _M:close() self.closed = true end

--- Append one event (a table with a string `ev`); written and fsync'd
-- before returning.  Adds `at` (epoch seconds) unless given.
function _M:append(event)
  if type(event) ~= "table" or type(event.ev) ~= "string" then
    error("bad argument #1 to 'append' (event table with a string 'ev' expected)", 2)
  end
  if self.closed then return nil, "journal " .. self.run_id .. ": closed", "EINVAL" end
  local ok, e = pcall(scrub, event, {})
  if not ok then return nil, tostring(e), "EINVAL" end
  if e.at == nil then e.at = floor(core.now() * 1000 + 0.5) / 1000 end
  local ok2, line = pcall(json.encode, e)
  if not ok2 then return nil, "journal " .. self.run_id .. ": " .. tostring(line), "EINVAL" end
  if self.need_nl then line = "\n" .. line end
  local wok, msg, code = fs.append(self.file, line .. "\n", self.nosync)
  if not wok then return nil, msg, code end
  self.need_nl = false
  return true
end

--- Ask the run to stop: a "cancel" event, then the marker its live client
-- polls -> true | nil, msg, code.  The marker is written whole (temp file,
-- fsync, rename): a reader never sees half a reason.
function _M:request_cancel(reason)
  reason = tostring(reason or "cancelled")
  local ok, msg, code = self:append({ ev = "cancel", reason = reason })
  if not ok then return nil, msg, code end
  local marker = self.dir .. "/" .. CANCEL_FILE
  local tmp = marker .. ".tmp"
  os_remove(tmp)
  ok, msg, code = fs.append(tmp, log.redact(reason))
  if ok then
    local rok, rmsg = os.rename(tmp, marker)
    if not rok then ok, msg, code = nil, rmsg, "EIO" end
  end
  if not ok then
    os_remove(tmp)
    return nil, "journal " .. self.run_id .. ": cancel marker: " .. tostring(msg), code or "EIO"
  end
  return true
end

--- The reason of a pending cancel request, or nil (no marker).
function _M:cancel_requested()
  local f = io_open(self.dir .. "/" .. CANCEL_FILE, "rb")
  if not f then return nil end
  local reason = f:read(4096)
  f:close()
  if reason == nil or reason == "" then reason = "cancelled" end
  return reason
end

local CHUNK = 65536

--- each_line(path, fn) -> true | false (cannot open): fn(line, ended, bytes)
-- for each line, read in CHUNK pieces; a line over MAX_LINE is dropped as it
-- is read (line nil, bytes its length); ended false for a last line
-- without "\n".
function _M.each_line(path, fn)
  local f = io_open(path, "rb")
  if not f then return false end
  local parts, have, over = {}, 0, false
  local function flush(ended)
    fn(not over and tbl_concat(parts) or nil, ended, have)
    parts, have, over = {}, 0, false
  end
  while true do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    local pos = 1
    while true do
      local nl = str_find(chunk, "\n", pos, true)
      local piece = str_sub(chunk, pos, (nl or #chunk + 1) - 1)
      have = have + #piece
      if over or have > _M.MAX_LINE then
        over, parts = true, {}
      elseif piece ~= "" then
        parts[#parts + 1] = piece
      end
      if not nl then break end
      flush(true)
      pos = nl + 1
    end
  end
  f:close()
  if have > 0 then flush(false) end
  return true
end

local function read_events(path)
  local events = {}
  local ok = _M.each_line(path, function(line, ended, bytes)
    if line == nil then
      log.warn("journal %s: skipping a line of %d bytes (more than the limit of %d bytes)",
        path, bytes, _M.MAX_LINE)
    elseif str_find(line, "%S") then
      local v, msg = json.decode(line, path, { max = _M.MAX_LINE })
      if type(v) == "table" and type(v.ev) == "string" then
        events[#events + 1] = v
      elseif ended then
        -- a torn line followed by later events: skip it, say so
        log.info("journal %s: skipping an unreadable line: %s", path, tostring(msg))
      end
    end
  end)
  return ok and events or nil
end

--- Every event in order (a torn last line is left out).
function _M:events()
  return read_events(self.file) or {}
end

local function parse_key(key)
  local job_id, sid, attempt = str_match(key, "^(.*)/([^/]*)/(%d+)$")
  if not job_id then return key, nil, nil end
  return job_id, sid, tonumber(attempt)
end

--- The events folded: { run, jobs = { [key] = js }, order = { key... },
-- defs = { [name] = jobdef ev }, results = { [key] = record },
-- ended, configs = { [job_id] = config ev }, uploads = { ev... },
-- local_jobs = { [job_id] = record of a job that ran here ("job" events) },
-- finished = { [job_id] = { key, record } of every ended job ("job" events
-- with a key: what a later `run --resume` may reuse) },
-- cleanups = { ev... }, cancel = the last "cancel" event, events = n }.
-- js = { key, job_id, strategy_id, attempt, job_name, batch_job_id?,
--        status?, reason?, exit_code?, log_stream?, terminated?, array_size?,
--        result_status? }
function _M:state()
  return _M.fold(self:events())
end

function _M.fold(events)
  local st = { jobs = {}, order = {}, defs = {}, results = {}, configs = {},
               uploads = {}, cleanups = {}, local_jobs = {}, finished = {}, events = #events }
  local function js_of(key)
    local js = st.jobs[key]
    if not js then
      local job_id, sid, attempt = parse_key(key)
      js = { key = key, job_id = job_id, strategy_id = sid, attempt = attempt }
      st.jobs[key] = js
      st.order[#st.order + 1] = key
    end
    return js
  end
  for _, e in ipairs(events) do
    local ev = e.ev
    if ev == "run" then
      st.run = e
    elseif ev == "config" then
      if e.job_id ~= nil then st.configs[e.job_id] = e end
    elseif ev == "jobdef" then
      st.defs[e.name or (#st.defs + 1)] = e
    elseif ev == "upload" then
      st.uploads[#st.uploads + 1] = e
    elseif ev == "cleanup" then
      st.cleanups[#st.cleanups + 1] = e
    elseif ev == "end" then
      st.ended = e
    elseif ev == "cancel" then
      st.cancel = e
    elseif ev == "job" then
      if e.job_id ~= nil then
        if e.runs_on == nil or e.runs_on == "local" then st.local_jobs[e.job_id] = e.record end
        if e.key ~= nil then st.finished[e.job_id] = { key = e.key, record = e.record } end
      end
    elseif type(e.key) == "string" then
      local js = js_of(e.key)
      if ev == "submit" then
        if e.job_id ~= nil then js.job_id = e.job_id end
        if e.strategy_id ~= nil then js.strategy_id = e.strategy_id end
        if e.attempt ~= nil then js.attempt = e.attempt end
        js.job_name = e.job_name
        js.array_size = e.array_size
      elseif ev == "submitted" then
        js.batch_job_id = e.batch_job_id
        if e.job_name ~= nil then js.job_name = e.job_name end
      elseif ev == "state" then
        if e.batch_job_id ~= nil then js.batch_job_id = e.batch_job_id end
        if e.status ~= nil then js.status = e.status end
        js.reason = e.reason
        js.exit_code = e.exit_code
        if e.log_stream ~= nil then js.log_stream = e.log_stream end
      elseif ev == "result" then
        st.results[e.key] = e.record
        js.result_status = e.status
      elseif ev == "terminate" then
        js.terminated = true
        js.terminate_reason = e.reason
        if e.batch_job_id ~= nil and js.batch_job_id == nil then js.batch_job_id = e.batch_job_id end
      end
    end
  end
  return st
end

---------------------------------------------------------------------------
-- Listing and removal
---------------------------------------------------------------------------

-- The value after the first `"name":` of a line that matches pat (anchored
-- there): plain finds, not a pattern tried at every byte of a long line.
local function field(line, name, pat)
  local key = '"' .. name .. '":'
  local p = str_find(line, key, 1, true)
  while p do
    local v = str_match(line, pat, p + #key)
    if v then return v end
    p = str_find(line, key, p + #key, true)
  end
end

local LISTED = { run = true, ["end"] = true, cleanup = true }

-- What a listing shows of a journal file, in one pass: the last `at`, the
-- run event, the end event and the `at` of the last run-wide "cleanup"
-- event (`luabatch cleanup` deleted the run's files) -> true, at, run,
-- ended, cleaned | false (cannot open).  Only those lines are decoded.
local function summary_of(path)
  local at, run, ended, cleaned
  local ok = _M.each_line(path, function(line)
    if not line then return end
    at = tonumber(field(line, "at", "^%s*([%d.]+)")) or at
    local ev = field(line, "ev", '^%s*"(%a+)"')
    if not LISTED[ev] or (ev == "run" and run) then return end
    local v = json.decode(line, path)
    if type(v) ~= "table" then return end
    if ev == "run" then
      run = v
    elseif ev == "end" then
      ended = v
    elseif v.scope == "run" then
      cleaned = tonumber(v.at) or cleaned
    end
  end)
  return ok, at, run, ended, cleaned
end

--- end_counts(records) -> { ok, failed, skipped, cancelled }: a run's jobs
-- counted by status (the "end" event's `jobs`, what `luabatch runs` shows);
-- records: job id -> record.
function _M.end_counts(records)
  local counts = { ok = 0, failed = 0, skipped = 0, cancelled = 0 }
  local NAMES = { SUCCESS = "ok", FAILED = "failed", SKIP = "skipped", CANCEL = "cancelled" }
  for _, rec in pairs(records or {}) do
    local n = NAMES[type(rec) == "table" and rec.status or ""]
    if n then counts[n] = counts[n] + 1 end
  end
  return counts
end

--- list([home [, opts]]) -> every run under `home`, newest first (by the
-- journal's mtime): { { run_id, path, mtime, size, last_at, workflow?,
-- file?, started?, ended_status?, ended_at?, jobs? (the end event's counts:
-- ok, failed, skipped, cancelled), cleaned? (when `luabatch cleanup`
-- deleted the run's files) }, ... }.  Each journal is read once, and only
-- those listed: opts.limit (> 0) lists the newest N; opts.cached(e) -> an
-- entry to list instead of reading e.path (e = { run_id, path, mtime, size },
-- from a stat), e.g. one kept from an earlier listing of the same size and
-- mtime, or nil.
function _M.list(home, opts)
  home = home or _M.home()
  opts = opts or {}
  local found = {}
  for _, name in ipairs(fs.listdir(home .. "/runs")) do
    if _M.valid_run_id(name) then
      local path = run_dir(home, name) .. "/" .. FILE
      local st = core.stat(path, true)
      if st and st.type == "file" then
        found[#found + 1] = { run_id = name, path = path, mtime = st.mtime or 0, size = st.size }
      end
    end
  end
  tbl_sort(found, function(a, b)
    if a.mtime ~= b.mtime then return a.mtime > b.mtime end
    return a.run_id > b.run_id
  end)
  local limit = opts.limit and opts.limit > 0 and opts.limit or #found
  local out = {}
  for _, e in ipairs(found) do
    if #out >= limit then break end
    local r = opts.cached and opts.cached(e)
    if not r then
      local ok, at, run, ended, cleaned = summary_of(e.path)
      if ok then
        r = { run_id = e.run_id, path = e.path, mtime = e.mtime, size = e.size, last_at = at,
              workflow = run and run.workflow, file = run and run.file, started = run and run.at,
              ended_status = ended and (ended.status or "UNKNOWN"), ended_at = ended and ended.at,
              jobs = ended and ended.jobs, cleaned = cleaned }
      end
    end
    out[#out + 1] = r
  end
  return out
end

--- Remove the run's journal directory.
function _M:remove()
  self.closed = true
  os_remove(self.file)  -- known by name: works without a directory listing
  return fs.rmtree(self.dir)
end

return _M
