-- luabatch.ngx.journal: the CLI's run journal (luabatch.journal's format:
-- <home>/runs/<id>/journal.jsonl), written and read from inside nginx
-- without blocking the event loop when a thread pool is configured.
--
--   local nj = require("luabatch.ngx.journal").new({ home = dir, pool = "luabatch" })
--   nj:append(run_id, { ev = "run", ... })   -- queued in this worker (no I/O)
--   nj:flush(run_id)                         -- one write (+ fsync) of what is queued
--   local h = nj:handle(run_id)              -- h:append(ev): a runner_opts.journal
--   local list = nj:list(50)                 -- journal.list(home, { limit = 50 }) | nil, msg
--                                            -- (a journal unchanged since the last list not read)
--   local events = nj:events(run_id)         -- every event | nil, msg, "ENOENT"
--   nj:cancel_requested(run_id)              -- `luabatch cancel ID`'s reason | nil
--
-- Why queue then flush: the events of a step go out in ONE append, written
-- by the worker that holds the run's lock before it lets go of it, so the
-- file keeps the order of the steps whichever worker made them.  With pool
-- (nginx.conf: `thread_pool NAME threads=N;` at main level) the file I/O
-- runs in nginx's thread pool (ngx.run_worker_thread: the request or timer
-- yields meanwhile); without it, or where the API is missing, the worker
-- does it itself: one write()+fsync() per step, one read per listing.
-- Events are redacted (journal's structural scrub) and get `at` (ngx.now).
-- io_append / io_read / io_list / io_cancel are the thread's entry points (plain
-- strings in and out; no ngx API used).

local journal = require "luabatch.journal"
local json = require "luabatch.json"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pcall = pcall
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local concat = table.concat
local floor = math.floor

local MOD = "luabatch.ngx.journal"
local HUGE = math.huge   -- io_read / io_list texts: this module's own, whole journals

local function ngx_() return rawget(_G, "ngx") end

---------------------------------------------------------------------------
-- The file side (a thread of nginx's pool, or the worker itself)
---------------------------------------------------------------------------

--- io_append(home, run_id, data) -> "ok" | nil, msg: data at the end of the
-- run's journal (created 0600 in 0700 directories when missing).
function _M.io_append(home, run_id, data)
  local j, msg = journal.open(run_id, { home = home, create = true })
  if not j then return nil, tostring(msg) end
  if j.need_nl then data = "\n" .. data end      -- a torn last line stays alone
  local ok, amsg = require("luabatch.core").append_file(j:path(), data, 384)
  if not ok then return nil, tostring(amsg) end
  return "ok"
end

--- io_read(home, run_id) -> JSON text of the run's events (journal's own
-- reader: lines bounded by MAX_LINE, a torn one skipped) | nil, msg, "ENOENT"
function _M.io_read(home, run_id)
  local j, msg, code = journal.open(run_id, { home = home })
  if not j then return nil, tostring(msg), code end
  return json.encode(json.list(j:events()))
end

--- io_cancel(home, run_id) -> the reason of a `luabatch cancel` (the
-- journal's cancel marker) | nil
function _M.io_cancel(home, run_id)
  local j = journal.open(run_id, { home = home })
  return j and j:cancel_requested() or nil
end

--- io_list(home, limit, known) -> JSON text of journal.list(home, { limit })
-- (limit > 0: the newest limit).  known: JSON text { [run_id] = { size,
-- mtime } } of the entries the caller holds; a journal still of that size
-- and mtime is not read, its entry is { run_id, unchanged = true }.
function _M.io_list(home, limit, known)
  local k = known and json.decode(known, "journal list") or {}
  local list = journal.list(home, { limit = limit, cached = function(e)
    local was = k[e.run_id]
    if type(was) == "table" and was[1] == e.size and was[2] == e.mtime then
      return { run_id = e.run_id, unchanged = true }
    end
  end })
  return json.encode(json.list(list))
end

---------------------------------------------------------------------------
-- The worker side
---------------------------------------------------------------------------

--- new(conf) -> writer.  conf: home (journal.home()), pool (a thread_pool
-- name, or nil), getenv (for the default home).
function _M.new(conf)
  conf = conf or {}
  return setmetatable({ home = conf.home or journal.home(conf.getenv), pool = conf.pool, queued = {} }, mt)
end

-- Call a file-side function: in the pool when there is one, else here.
function _M:call(fname, ...)
  local n = ngx_()
  if self.pool and n and type(n.run_worker_thread) == "function" then
    local ok, a, r1, r2, r3 = pcall(n.run_worker_thread, self.pool, MOD, fname, ...)
    if ok and a then return r1, r2, r3 end
    -- no pool by that name, a phase without the API: do it here
    if not self.warned then
      self.warned = true
      log.warn("luabatch.ngx.journal: thread pool '%s': %s (journal I/O in the worker)", tostring(self.pool),
        tostring(ok and r1 or a))
    end
  end
  return _M[fname](...)
end

--- append(run_id, ev): queue one event (redacted, `at` added) -> true | nil, msg
function _M:append(run_id, ev)
  if not journal.valid_run_id(run_id) then return nil, "bad run id " .. tostring(run_id) end
  local ok, e = pcall(journal._scrub, ev)
  if not ok then return nil, tostring(e) end
  if e.at == nil then
    local n = ngx_()
    local now = n and n.now and n.now() or require("luabatch.core").now()
    e.at = floor(now * 1000 + 0.5) / 1000
  end
  local eok, line = pcall(json.encode, e)
  if not eok then return nil, tostring(line) end
  local q = self.queued[run_id]
  if not q then q = {} self.queued[run_id] = q end
  q[#q + 1] = line
  return true
end

--- flush(run_id) -> true | nil, msg: write the queued events (one append).
function _M:flush(run_id)
  local q = self.queued[run_id]
  if not q or #q == 0 then return true end
  self.queued[run_id] = nil
  local data = concat(q, "\n") .. "\n"
  local ok, msg = self:call("io_append", self.home, run_id, data)
  if not ok then
    log.error("luabatch.ngx.journal: run %s: %d event(s) not journaled: %s", run_id, #q, tostring(msg))
    return nil, msg
  end
  return true
end

--- handle(run_id) -> { append = function(self, ev) } for runner_opts.journal
-- (the aws_batch runner's config, jobdef, submit, submitted, result events)
function _M:handle(run_id)
  local w = self
  return { run_id = run_id, append = function(_, ev) return w:append(run_id, ev) end }
end

--- cancel_requested(run_id) -> reason | nil: did `luabatch cancel ID` ask
-- the run to stop (its marker beside the journal)?
function _M:cancel_requested(run_id)
  return (self:call("io_cancel", self.home, run_id))
end

--- list(limit) -> journal.list(home)'s entries (newest first) | nil, msg.
-- A journal unchanged (size, mtime) since this writer's last listing is
-- not read again: its entry is the one kept (self.listed, the last
-- listing's entries by run id).
function _M:list(limit)
  local listed = self.listed or {}
  local known = {}
  for id, r in pairs(listed) do known[id] = { r.size, r.mtime } end
  local text, msg = self:call("io_list", self.home, limit, json.encode(known))
  if not text then return nil, msg end
  local list, derr = json.decode(text, "journal list", { max = HUGE })
  if type(list) ~= "table" then return nil, derr end
  local now = {}
  for i, r in ipairs(list) do
    if r.unchanged then list[i] = listed[r.run_id] end
    now[r.run_id] = list[i]
  end
  self.listed = now
  return list
end

--- events(run_id) -> events | nil, msg, code ("ENOENT": no such run)
function _M:events(run_id)
  local text, msg, code = self:call("io_read", self.home, run_id)
  if not text then return nil, msg, code end
  local events, derr = json.decode(text, "journal " .. run_id, { max = HUGE })
  if type(events) ~= "table" then return nil, derr, "EIO" end
  return events
end

return _M
