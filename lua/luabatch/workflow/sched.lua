-- luabatch.workflow.sched: a cooperative scheduler of coroutine tasks that
-- wait on child processes and timers together (core.proc_wait).
--
--   local s = sched.new()
--   local t = s:spawn(fn, ...)          -- also sched.spawn(fn, ...) inside a task
--   s:run()                             -- until every task is done
--       -> true | nil, "interrupted", "ECANCELED" (SIGINT); raises the error
--          of a failed task nobody joined
--   inside a task (outside one they block the whole thread instead):
--   sched.sleep(sec)                    -> true | nil, msg, "ECANCELED"
--   sched.exec(argv, {env = {K = V}, clear_env = bool, cwd = dir, stdin = s,
--                     on_output = function(fd, chunk), timeout = sec})
--       -> {exit = n | nil, signal = n | nil, stdout = s, stderr = s,
--           stdout_dropped = n, stderr_dropped = n, timed_out = sec | nil}
--          (each stream keeps its last 8 MiB; *_dropped: bytes lost from
--          its front, when any; timed_out: the child's process group got
--          SIGTERM after `timeout` seconds, SIGKILL KILL_GRACE later)
--        | nil, msg, code ("EIO" spawn failure, "ECANCELED" cancelled)
--       env is added over the inherited environment (replaces it with
--       clear_env); on_output gets output while the child runs (fd 1, 2;
--       within OUTPUT_SLICE s), runs in the loop and must not yield
--   sched.join(task)                    -> fn's returns; re-raises its error
--   sched.limiter(n) -> lim; lim:acquire(); lim:release()
--   sched.all(fns, limit)               -> { {ok = true, n = k, ...} | {ok = false, err = e}, ... }
--   sched.signal() -> sig; sig:notify(); sig:wait([sec]) -> true (notified)
--                   | false (timed out): one waiting task; a notify between
--                   waits is kept (not counted); after SIGINT only notify ends a wait
--   sched.current() -> task | nil ; sched.cancelled() -> bool
--   task:cancel()   the task and the tasks it spawned: a running child gets
--                   SIGTERM (SIGKILL after `grace`), waits return nil,
--                   "cancelled", "ECANCELED"
-- Lua 5.4 and LuaJIT 2.1.  Why and the limits: docs/design.md.
local core = require "luabatch.core"

local _M = { _VERSION = "0.1.0" }

local unpack = table.unpack or unpack
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local co_create, co_resume, co_yield, co_running, co_status =
    coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status

local KILL_GRACE = 2        -- seconds between SIGTERM and SIGKILL on cancel
local OUTPUT_SLICE = 0.2    -- longest wait while a child's output is watched
local BLOCK = {}            -- what a task yields to the loop (nothing else)

-- Hand what a watched child wrote since the last call to its on_output.
-- w = { fn, stdout offset, stderr offset }.
local function deliver_output(p, w)
  for fd = 1, 2 do
    local chunk, total = p:output(fd, w[fd + 1])
    if chunk ~= "" then
      w[fd + 1] = total
      w[1](fd, chunk)
    end
  end
end

-- coroutine -> task, weak: finished coroutines go away with their tasks
local task_of = setmetatable({}, { __mode = "k" })

local Sched = {}
Sched.__index = Sched
local Task = {}
Task.__index = Task
local Limiter = {}
Limiter.__index = Limiter

--- The task running now, or nil (main thread or a foreign coroutine).
function _M.current()
  local co = co_running()
  return co and task_of[co] or nil
end

function _M.cancelled()
  local t = _M.current()
  return t ~= nil and t.cancelled
end

function _M.new()
  return setmetatable({
    ready = {}, rhead = 1, rtail = 0,   -- FIFO of tasks to resume
    procs = {},                         -- proc userdata -> waiting task
    nprocs = 0,
    watched = {},                       -- proc -> { fn, [1] = stdout offset, [2] = stderr offset }
    timers = {},                        -- task -> deadline (monotonic)
    limits = {},                        -- proc -> { at, secs, fired }: exec's timeout
    alive = 0,                          -- tasks not finished
    failed = {},                        -- failed tasks, in order
    seq = 0,
    running = false,
  }, Sched)
end

local function push_ready(s, t, ...)
  t.resume_args = pack(...)
  t.state = "ready"
  s.rtail = s.rtail + 1
  s.ready[s.rtail] = t
end

-- Block the current task until something calls push_ready for it;
-- returns what that call passed.
local function block(t, what)
  t.state = "blocked"
  t.waiting = what
  return co_yield(BLOCK)
end

function Sched:spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local parent = _M.current()
  self.seq = self.seq + 1
  local t = setmetatable({
    sched = self, id = self.seq, co = co_create(fn), joiners = {},
    parent = parent, children = {}, cancelled = parent ~= nil and parent.cancelled or false,
  }, Task)
  if parent then parent.children[#parent.children + 1] = t end
  task_of[t.co] = t
  self.alive = self.alive + 1
  push_ready(self, t, ...)
  return t
end

--- Inside a task: spawn on the same scheduler.
function _M.spawn(fn, ...)
  local t = _M.current()
  if not t then error("bad argument #1 to 'spawn' (sched.spawn must be called inside a task; use sched.new():spawn)", 2) end
  return t.sched:spawn(fn, ...)
end

local function finish(s, t, ok, r)
  s.alive = s.alive - 1
  task_of[t.co] = nil
  if ok then
    t.state, t.results = "done", r
  else
    t.state, t.err = "failed", r
    t.traceback = type(r) == "string" and debug.traceback(t.co, r) or nil
    s.failed[#s.failed + 1] = t
  end
  for _, j in ipairs(t.joiners) do push_ready(s, j) end
  t.joiners = {}
end

local function step(s, t)
  local args = t.resume_args or { n = 0 }
  t.resume_args, t.waiting, t.state = nil, nil, "running"
  local r = pack(co_resume(t.co, unpack(args, 1, args.n)))
  if not r[1] then
    finish(s, t, false, r[2])
  elseif co_status(t.co) == "dead" then
    finish(s, t, true, { n = r.n - 1, unpack(r, 2, r.n) })
  elseif r[2] ~= BLOCK then
    -- a bare coroutine.yield() inside a task: nobody could resume it
    finish(s, t, false, "task yielded outside the scheduler (coroutine.yield inside a task)")
  end
end

local function interrupt(s)
  s.interrupted = true
  for p, t in pairs(s.procs) do
    t.cancelled = true
    p:kill("TERM")   -- exec's close() SIGKILLs whatever did not stop yet
  end
  for p, t in pairs(s.procs) do
    s.procs[p] = nil
    push_ready(s, t, nil, "interrupted", "ECANCELED")
  end
  s.nprocs = 0
  for t in pairs(s.timers) do
    s.timers[t] = nil
    push_ready(s, t, nil, "interrupted", "ECANCELED")
  end
end

--- Run until every task has finished.
function Sched:run()
  if self.running then error("bad argument #1 to 'run' (scheduler already running)", 2) end
  if _M.current() then error("bad argument #1 to 'run' (cannot run a scheduler inside a task; use sched.spawn)", 2) end
  self.running = true
  local ok, err = pcall(function()
    while true do
      while self.rhead <= self.rtail do
        local t = self.ready[self.rhead]
        self.ready[self.rhead] = nil
        self.rhead = self.rhead + 1
        step(self, t)
      end
      if self.alive == 0 then break end
      local list, n = {}, 0
      for p in pairs(self.procs) do n = n + 1; list[n] = p end
      local first
      for _, at in pairs(self.timers) do
        if not first or at < first then first = at end
      end
      for _, l in pairs(self.limits) do
        if not first or l.at < first then first = l.at end
      end
      if n == 0 and not first then
        error(("sched: deadlock: %d task(s) wait on each other or on a limiter, nothing else to wait for")
          :format(self.alive), 0)
      end
      local timeout = first and math.max(0, first - core.monotime()) or nil
      if next(self.watched) and (timeout == nil or timeout > OUTPUT_SLICE) then timeout = OUTPUT_SLICE end
      local done, msg, code = core.proc_wait(list, timeout)
      for p, w in pairs(self.watched) do deliver_output(p, w) end
      if not done then
        if code == "ECANCELED" then
          interrupt(self)   -- tasks unwind; later waits fail at once
        else
          for p, t in pairs(self.procs) do
            self.procs[p] = nil
            push_ready(self, t, nil, msg, code)
          end
          self.nprocs = 0
        end
      else
        for _, p in ipairs(done) do
          local t = self.procs[p]
          if t then
            self.procs[p] = nil
            self.nprocs = self.nprocs - 1
            if t.cancelled then
              push_ready(self, t, nil, "cancelled", "ECANCELED")
            else
              local r, l = p:result(), self.limits[p]
              if l and l.fired and type(r) == "table" then r.timed_out = l.secs end
              push_ready(self, t, r)
            end
            self.limits[p] = nil
          end
        end
        local now = core.monotime()
        for p, l in pairs(self.limits) do
          if self.procs[p] and now >= l.at then
            p:kill(l.fired and "KILL" or "TERM")     -- the child's process group
            l.fired, l.at = true, now + KILL_GRACE
          end
        end
        for t, at in pairs(self.timers) do
          if at <= now then
            self.timers[t] = nil
            push_ready(self, t, true)
          end
        end
      end
    end
  end)
  self.running = false
  if not ok then error(err, 0) end
  if self.interrupted then return nil, "interrupted", "ECANCELED" end
  for _, t in ipairs(self.failed) do
    if not t.joined then
      t.joined = true
      error(t.err, 0)
    end
  end
  return true
end

--- Cancel the task and every task it spawned (cooperative).
function Task:cancel(grace)
  local s = self.sched
  if self.state == "done" or self.state == "failed" then return end
  self.cancelled = true
  for p, t in pairs(s.procs) do
    if t == self then p:terminate(grace or KILL_GRACE) end
  end
  if s.timers[self] then
    s.timers[self] = nil
    push_ready(s, self, nil, "cancelled", "ECANCELED")
  end
  for _, c in ipairs(self.children) do c:cancel(grace) end
end

function Task:status()
  return self.state
end

function _M.sleep(sec)
  if type(sec) ~= "number" or sec < 0 then
    error("bad argument #1 to 'sleep' (non-negative number expected)", 2)
  end
  local t = _M.current()
  if not t then return core.sleep(sec) end
  if t.cancelled then return nil, "sleep: cancelled", "ECANCELED" end
  if t.sched.interrupted then return nil, "sleep: interrupted", "ECANCELED" end
  t.sched.timers[t] = core.monotime() + sec
  return block(t, "sleep")
end

local function exec_blocking(p, w, timeout)
  local at, fired = timeout and core.monotime() + timeout, false
  while true do
    local wait = w and OUTPUT_SLICE or nil
    if at then wait = math.max(0, math.min(wait or math.huge, at - core.monotime())) end
    local done, msg, code = core.proc_wait({ p }, wait)
    if w then deliver_output(p, w) end
    if not done then
      p:close()
      return nil, msg, code
    end
    if done[1] then
      local r = p:result()
      p:close()
      if fired and type(r) == "table" then r.timed_out = timeout end
      return r
    end
    if at and core.monotime() >= at then
      p:kill(fired and "KILL" or "TERM")
      fired, at = true, core.monotime() + KILL_GRACE
    end
  end
end

function _M.exec(argv, opts)
  if type(argv) ~= "table" or type(argv[1]) ~= "string" then
    error("bad argument #1 to 'exec' (argv list expected)", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #2 to 'exec' (table expected)", 2) end
  local t = _M.current()
  if t and t.cancelled then return nil, "exec '" .. argv[1] .. "': cancelled", "ECANCELED" end
  if t and t.sched.interrupted then return nil, "exec '" .. argv[1] .. "': interrupted", "ECANCELED" end
  local spec = { argv = argv, cwd = opts.cwd, stdin = opts.stdin }
  if opts.clear_env then spec.env = opts.env or {} else spec.env_add = opts.env end
  if opts.on_output ~= nil and type(opts.on_output) ~= "function" then
    error("bad argument #2 to 'exec' (on_output must be a function)", 2)
  end
  local p, msg, code = core.proc_spawn(spec)
  if not p then return nil, msg, code end
  local w = opts.on_output and { opts.on_output, 0, 0 } or nil
  local timeout = tonumber(opts.timeout)
  if timeout and timeout <= 0 then timeout = nil end
  if not t then return exec_blocking(p, w, timeout) end
  local s = t.sched
  s.procs[p] = t
  s.nprocs = s.nprocs + 1
  if w then s.watched[p] = w end
  if timeout then s.limits[p] = { at = core.monotime() + timeout, secs = timeout } end
  local r
  r, msg, code = block(t, "exec")
  s.limits[p] = nil
  if w then
    s.watched[p] = nil
    deliver_output(p, w)
  end
  p:close()   -- kills and reaps a child still running (cancel, interrupt)
  return r, msg, code
end

function _M.join(task)
  if getmetatable(task) ~= Task then error("bad argument #1 to 'join' (task expected)", 2) end
  while task.state ~= "done" and task.state ~= "failed" do
    local t = _M.current()
    if not t or t.sched ~= task.sched then
      error("bad argument #1 to 'join' (join an unfinished task only from a task of its scheduler)", 2)
    end
    if t == task then error("bad argument #1 to 'join' (a task cannot join itself)", 2) end
    task.joiners[#task.joiners + 1] = t
    block(t, "join")
  end
  task.joined = true
  if task.state == "failed" then error(task.err, 0) end
  return unpack(task.results, 1, task.results.n)
end

local Signal = {}
Signal.__index = Signal

function _M.signal()
  return setmetatable({ pending = false, waiter = nil }, Signal)
end

function Signal:notify()
  self.pending = true
  local t = self.waiter
  -- blocked here still (a timer or SIGINT may have made it ready already)
  if t and t.state == "blocked" and t.waiting == "signal" then
    self.waiter = nil
    t.sched.timers[t] = nil
    push_ready(t.sched, t, true)
  end
end

function Signal:wait(sec)
  if self.pending then
    self.pending = false
    return true
  end
  local t = _M.current()
  if not t then error("signal: wait outside a task (would block forever)", 2) end
  if self.waiter then error("signal: a task waits already", 2) end
  self.waiter = t
  if sec and not t.sched.interrupted then t.sched.timers[t] = core.monotime() + sec end
  block(t, "signal")
  self.waiter = nil
  local got = self.pending
  self.pending = false
  return got
end

function _M.limiter(n)
  if type(n) ~= "number" or n < 1 then
    error("bad argument #1 to 'limiter' (positive number expected)", 2)
  end
  return setmetatable({ n = n, used = 0, waiters = {}, whead = 1, wtail = 0 }, Limiter)
end

function Limiter:acquire()
  if self.used < self.n then
    self.used = self.used + 1
    return true
  end
  local t = _M.current()
  if not t then error("limiter: no free slot and not inside a task (would block forever)", 2) end
  self.wtail = self.wtail + 1
  self.waiters[self.wtail] = t
  block(t, "limiter")   -- release hands its slot over
  return true
end

function Limiter:release()
  if self.whead <= self.wtail then
    local t = self.waiters[self.whead]
    self.waiters[self.whead] = nil
    self.whead = self.whead + 1
    push_ready(t.sched, t)
  elseif self.used > 0 then
    self.used = self.used - 1
  else
    error("limiter: release without acquire", 2)
  end
end

--- Run fns concurrently, at most `limit` at a time (default: all at once).
-- Each result: {ok = true, n = k, ...returns} or {ok = false, err = e}.
-- Inside a task the fns become tasks of the same scheduler; outside, a
-- scheduler of their own runs them (then nil, msg, "ECANCELED" on SIGINT).
function _M.all(fns, limit)
  if type(fns) ~= "table" then error("bad argument #1 to 'all' (list of functions expected)", 2) end
  local lim = limit and _M.limiter(limit) or nil
  local results, tasks = {}, {}
  local function body(s)
    for i, fn in ipairs(fns) do
      tasks[i] = s:spawn(function()
        if lim then lim:acquire() end
        local r = pack(pcall(fn))
        if lim then lim:release() end
        if r[1] then
          results[i] = { ok = true, n = r.n - 1, unpack(r, 2, r.n) }
        else
          results[i] = { ok = false, err = r[2] }
        end
      end)
    end
  end
  local cur = _M.current()
  if cur then
    body(cur.sched)
    for i = 1, #tasks do _M.join(tasks[i]) end
    return results
  end
  local s = _M.new()
  body(s)
  local ok, msg, code = s:run()
  if not ok then return nil, msg, code end
  return results
end

return _M
