-- luabatch.ngx.poller: AWS Batch job states for nginx workers, polled by
-- ONE elected worker, kept in a lua_shared_dict.
--
--   -- nginx.conf (http): lua_shared_dict luabatch 10m;
--   -- init_worker_by_lua_block:
--   local poller = require "luabatch.ngx.poller"
--   local w = assert(poller.new({ dict = "luabatch", batch = batch_client }))
--   assert(w:start())                        -- ngx.timer.every(interval, tick)
--   -- any handler, any worker:
--   poller.watch(dict, batch_job_id, { run_id = "...", key = "job/sid/0" })
--   local s = poller.get(dict, batch_job_id)  -- { status, reason, exit_code, log_stream, at } | nil
--   local all = poller.summaries(dict, { id, ... })   -- { [id] = summary }
--
-- new(opts): dict (shared dict or its name; required); batch (client with
-- :describe_jobs(ids)) or clients = function() -> { batch } (built in the
-- timer); interval (tick, 1 s); lock_ttl (max(5, 3 x interval)); ttl (86400 s:
-- how long "job:<id>" lives); rescan (30 s); prefix ("": before every key);
-- intervals / rate (luabatch.poller's; default those of opts.policy, the
-- aws_batch policy); ngx, pid (fakes for specs); on_terminal =
-- function(id, meta, summary) and on_tick = function(w, fresh): called by the
-- polling worker inside its tick (keep them short: schedule work with
-- ngx.timer.at); fresh = first tick since it took the lock.
-- new() -> nil, msg when the dict is missing.  Dict keys: "watch:<id>",
-- "watchq", "job:<id>", "poller:lock".  Why one worker, the lock and the
-- keys: docs/design.md.

local batch = require "luabatch.batch"
local log = require "luabatch.log"
local poller_mod = require "luabatch.poller"
local policy_mod = require "luabatch.runner.aws_batch.policy"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local tostring = tostring
local setmetatable = setmetatable
local str_sub = string.sub
local max = math.max

local cjson = require "cjson.safe"

local TERMINAL = batch.FINAL          -- SUCCEEDED, FAILED or MISSING
_M.TERMINAL = TERMINAL                 -- ngx.drive and ngx.runs read it here

local function ngx_of(opts)
  local n = opts and opts.ngx or rawget(_G, "ngx")
  if type(n) ~= "table" then return nil end
  return n
end

local function shdict(d, n)
  if type(d) == "string" then
    local shared = n and n.shared
    local x = shared and shared[d]
    if not x then return nil, "lua_shared_dict '" .. d .. "' is not defined (nginx.conf: lua_shared_dict "
      .. d .. " 10m;)" end
    return x
  end
  if type(d) == "table" or type(d) == "userdata" then return d end
  return nil, "shared dict expected"
end

local function now_of(n)
  if n and n.now then return n.now() end
  return os.time()
end

---------------------------------------------------------------------------
-- What any worker does
---------------------------------------------------------------------------

--- watch(dict, id [, meta [, opts]]) -> true | nil, msg
-- Queue a Batch job for the polling worker (callable from any worker and
-- phase).  meta (JSON-safe) is kept with the entry; opts.prefix, opts.ttl.
function _M.watch(dict, id, meta, opts)
  if type(id) ~= "string" or id == "" then
    error("bad argument #2 to 'watch' (job id expected, got " .. type(id) .. ")", 2)
  end
  local d, derr = shdict(dict, ngx_of(opts))
  if not d then error("bad argument #1 to 'watch' (" .. derr .. ")", 2) end
  local pre = opts and opts.prefix or ""
  local ttl = opts and opts.ttl or 86400
  local text = cjson.encode({ at = now_of(ngx_of(opts)), meta = meta or {} })
  local ok, err = d:set(pre .. "watch:" .. id, text, ttl)
  if not ok then return nil, "shared dict: cannot record watch:" .. id .. ": " .. tostring(err) end
  -- a first summary, so readers see the job before the first poll
  d:add(pre .. "job:" .. id, cjson.encode({ id = id, status = "SUBMITTED", at = now_of(ngx_of(opts)) }), ttl)
  local len, lerr = d:lpush(pre .. "watchq", id)
  if not len then
    -- the leader's periodic rescan still finds the "watch:" entry
    log.warn("ngx.poller: queue of new jobs: %s (picked up by the next rescan)", tostring(lerr))
  end
  return true
end

--- get(dict, id [, opts]) -> summary | nil
function _M.get(dict, id, opts)
  local d = assert(shdict(dict, ngx_of(opts)))
  local pre = opts and opts.prefix or ""
  local v = d:get(pre .. "job:" .. id)
  if not v then return nil end
  local t = cjson.decode(v)
  if type(t) ~= "table" then return nil end
  return t
end

--- summaries(dict, ids [, opts]) -> { [id] = summary } (ids without one left out)
function _M.summaries(dict, ids, opts)
  local out = {}
  for _, id in ipairs(ids) do out[id] = _M.get(dict, id, opts) end
  return out
end

---------------------------------------------------------------------------
-- The per-worker ticker
---------------------------------------------------------------------------

--- new(opts) -> w | nil, msg (see the header)
function _M.new(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'new' (table expected)", 2) end
  local n = ngx_of(opts)
  local d, derr = shdict(opts.dict, n)
  if not d then return nil, "ngx.poller: " .. derr end
  if opts.batch == nil and type(opts.clients) ~= "function" then
    error("bad argument #1 to 'new' (field 'batch' (client) or 'clients' (function) expected)", 2)
  end
  local interval = opts.interval or 1
  if type(interval) ~= "number" or interval <= 0 then
    error("bad argument #1 to 'new' (field 'interval': positive number of seconds expected)", 2)
  end
  local pid = opts.pid
  if pid == nil and n and n.worker and n.worker.pid then pid = n.worker.pid() end
  local p = policy_mod.merge(opts.policy)
  local intervals = p.intervals
  if type(opts.intervals) == "table" then
    intervals = {}
    for k, v in pairs(p.intervals) do intervals[k] = v end
    for k, v in pairs(opts.intervals) do intervals[k] = v end
  end
  return setmetatable({
    ngx = n, dict = d, pre = opts.prefix or "", batch = opts.batch, clients = opts.clients,
    interval = interval, lock_ttl = opts.lock_ttl or max(5, 3 * interval), ttl = opts.ttl or 86400,
    rescan = opts.rescan or 30, pid = tostring(pid or "0"), intervals = intervals,
    rate = opts.rate or p.rate, leader = false, busy = false, poller = nil, last_scan = 0,
    on_terminal = type(opts.on_terminal) == "function" and opts.on_terminal or nil,
    on_tick = type(opts.on_tick) == "function" and opts.on_tick or nil,
    stats = { ticks = 0, leader_ticks = 0, takeovers = 0, calls = 0 },
  }, mt)
end

--- start() -> true | nil, msg: ngx.timer.every(interval, tick) (call it in
-- init_worker_by_lua*; every worker does, one of them polls).
function _M:start()
  local n = self.ngx
  if not (n and n.timer and n.timer.every) then return nil, "ngx.poller: ngx.timer.every is not available" end
  local me = self
  local ok, err = n.timer.every(self.interval, function(premature)
    if premature then return end
    local tok, terr = pcall(me.tick, me)
    if not tok then log.error("ngx.poller: tick: %s", tostring(terr)) end
  end)
  if not ok then return nil, "ngx.poller: cannot start the timer: " .. tostring(err) end
  return true
end

-- The lock: true when this worker polls (taken or renewed now).
function _M:elect()
  local d, key = self.dict, self.pre .. "poller:lock"
  local ok, err = d:add(key, self.pid, self.lock_ttl)
  if ok then return true, "taken" end
  if err ~= "exists" then
    log.warn("ngx.poller: lock: %s", tostring(err))
    return false
  end
  if d:get(key) ~= self.pid then return false end
  -- Renew without overwriting: expire() only moves the TTL, so if the lock
  -- lapsed and another worker took it in between, we extend *its* lock and
  -- the second read tells us we lost it (no two pollers).  set() is the
  -- fallback for dicts without expire (old lua-resty-core, specs).
  if d.expire then
    local eok = d:expire(key, self.lock_ttl)
    if not eok or d:get(key) ~= self.pid then return false end
  else
    d:set(key, self.pid, self.lock_ttl)
  end
  return true, "renewed"
end

-- Write a summary to the dict; a terminal job leaves the watch list.
function _M:_changed(s)
  local id = s.id
  local rec = { id = id, status = s.status, reason = s.reason, exit_code = s.exit_code,
                log_stream = s.log_stream, at = now_of(self.ngx) }
  local ok, err = self.dict:set(self.pre .. "job:" .. id, cjson.encode(rec), self.ttl)
  if not ok then log.warn("ngx.poller: cannot record job:%s: %s", id, tostring(err)) end
  if TERMINAL[s.status] then
    local meta
    if self.on_terminal then
      local w = cjson.decode(self.dict:get(self.pre .. "watch:" .. id) or "null")
      meta = type(w) == "table" and w.meta or nil
    end
    self.dict:delete(self.pre .. "watch:" .. id)
    self.watching[id] = nil
    if s.status ~= batch.MISSING then pcall(self.poller.unwatch, self.poller, id) end
    if self.on_terminal then
      local hok, herr = pcall(self.on_terminal, id, meta, rec)
      if not hok then log.error("ngx.poller: on_terminal %s: %s", id, tostring(herr)) end
    end
  end
end

function _M:_new_poller()
  local batch = self.batch
  if batch == nil then
    local made = self.clients()
    batch = made and made.batch
    if batch == nil then return nil, "clients() gave no batch client" end
    self.batch = batch
  end
  local n = self.ngx
  local me = self
  local p, msg = poller_mod.new({
    batch = batch, intervals = self.intervals, rate = self.rate,
    clock = n and n.now or nil, sleep = n and n.sleep or nil,
    interrupted = function() return false end,
    on_change = function(s) me:_changed(s) end,
  })
  if not p then return nil, msg end
  self.poller = p
  self.watching = {}
  return p
end

function _M:_add(id, first)
  if self.watching[id] then return end
  local w = self.dict:get(self.pre .. "watch:" .. id)
  if not w then return end            -- already terminal, or expired
  local cur = _M.get(self.dict, id, { prefix = self.pre, ngx = self.ngx })
  if cur and TERMINAL[cur.status] then
    self.dict:delete(self.pre .. "watch:" .. id)
    return
  end
  local e = cjson.decode(w)
  self.watching[id] = true
  -- a job just submitted: first poll one fast interval later (a burst of
  -- submits shares DescribeJobs calls); a job taken over: at once
  self.poller:watch(id, type(e) == "table" and e.meta or nil, first and 0 or (self.intervals.fast or 0))
end

-- Every "watch:" entry (takeover and periodic rescan).
function _M:_scan()
  local pre = "watch:"
  local plen = #self.pre + #pre
  local keys = self.dict:get_keys(0)
  for _, k in ipairs(keys) do
    if str_sub(k, 1, plen) == self.pre .. pre then self:_add(str_sub(k, plen + 1), true) end
  end
  self.last_scan = now_of(self.ngx)
end

--- tick() -> "leader" | "follower" | "busy": one timer run (specs call it).
function _M:tick()
  self.stats.ticks = self.stats.ticks + 1
  if self.busy then return "busy" end
  local leader, how = self:elect()
  if not leader then
    if self.leader then
      log.info("ngx.poller: worker %s no longer polls (another worker holds the lock)", self.pid)
      self.leader, self.poller, self.watching = false, nil, nil
    end
    return "follower"
  end
  self.busy = true
  local ok, err = pcall(self._lead, self, how)
  self.busy = false
  if not ok then
    log.error("ngx.poller: %s", tostring(err))
    return "leader"
  end
  return "leader"
end

function _M:_lead(how)
  local fresh = false
  if not self.leader or not self.poller then
    local p, msg = self:_new_poller()
    if not p then
      log.error("ngx.poller: %s", tostring(msg))
      return
    end
    self.leader, fresh = true, true
    self.stats.takeovers = self.stats.takeovers + 1
    log.info("ngx.poller: worker %s polls now (lock %s)", self.pid, tostring(how))
  end
  self.stats.leader_ticks = self.stats.leader_ticks + 1
  local d, q = self.dict, self.pre .. "watchq"
  while true do
    local id = d:rpop(q)
    if id == nil then break end
    if not fresh then self:_add(id, false) end
  end
  if fresh or now_of(self.ngx) - self.last_scan >= self.rescan then self:_scan() end
  local calls, msg = self.poller:step()
  if calls then
    self.stats.calls = self.stats.calls + calls
  else
    log.warn("ngx.poller: %s", tostring(msg))
  end
  if self.on_tick then
    local hok, herr = pcall(self.on_tick, self, fresh)
    if not hok then log.error("ngx.poller: on_tick: %s", tostring(herr)) end
  end
end

--- is_leader() -> bool (as of the last tick)
function _M:is_leader() return self.leader end

return _M
