-- luabatch.ngx.poller with a fake `ngx` (virtual clock, timers), a fake
-- lua_shared_dict (TTLs, lists) and a fake Batch client: election of one
-- polling worker, takeover when it dies, DescribeJobs batches of <= 100
-- ids, summaries written to the dict.
local cjson = require "cjson"
local ngx_poller = require "luabatch.ngx.poller"

-- A lua_shared_dict: add/set/get/delete with TTLs on the fake clock, lists.
local function fake_dict(clock)
  local d = { data = {}, exp = {} }
  local function live(k)
    local e = d.exp[k]
    if e and e <= clock() then d.data[k], d.exp[k] = nil, nil end
    return d.data[k]
  end
  function d:get(k) local v = live(k); if type(v) == "table" then return nil end return v end
  function d:set(k, v, ttl)
    self.data[k] = v
    self.exp[k] = (ttl and ttl > 0) and clock() + ttl or nil
    return true
  end
  function d:add(k, v, ttl)
    if live(k) ~= nil then return false, "exists" end
    return self:set(k, v, ttl)
  end
  function d:delete(k) self.data[k], self.exp[k] = nil, nil end
  function d:expire(k, ttl)                  -- moves the TTL only (resty.core's shdict:expire)
    if live(k) == nil then return nil, "not found" end
    self.exp[k] = (ttl and ttl > 0) and clock() + ttl or nil
    return true
  end
  function d:lpush(k, v)
    local l = live(k)
    if l == nil then l = {}; self.data[k] = l end
    table.insert(l, 1, v)
    return #l
  end
  function d:rpop(k)
    local l = live(k)
    if type(l) ~= "table" or #l == 0 then return nil end
    return table.remove(l)
  end
  function d:get_keys(max)
    local out = {}
    for k in pairs(self.data) do
      if live(k) ~= nil then out[#out + 1] = k end
    end
    table.sort(out)
    return out
  end
  return d
end

-- The ngx of one worker (all workers share the clock and the dict).
local function fake_ngx(world, pid)
  local n = { shared = { luabatch = world.dict }, timers = {} }
  n.now = function() return world.t end
  n.sleep = function(s) world.t = world.t + s; return true end
  n.worker = { pid = function() return pid end }
  n.timer = { every = function(iv, fn) n.timers[#n.timers + 1] = { iv = iv, fn = fn }; return true end }
  return n
end

-- Batch: each job advances one state per DescribeJobs that names it.
local STEPS = { "RUNNABLE", "RUNNING", "SUCCEEDED" }
local function fake_batch(world, name)
  local b = { calls = {}, name = name }
  function b:describe_jobs(ids)
    assert(#ids <= 100, "DescribeJobs with " .. #ids .. " ids")
    self.calls[#self.calls + 1] = #ids
    world.calls[#world.calls + 1] = { by = name, n = #ids }
    local out = {}
    for _, id in ipairs(ids) do
      local j = world.jobs[id]
      if j then
        j.step = math.min(j.step + 1, #STEPS)
        local st = j.fail and j.step == #STEPS and "FAILED" or STEPS[j.step]
        local d = { jobId = id, status = st }
        if j.step >= 2 then d.container = { logStreamName = "lb/default/" .. id, exitCode = j.step == 3
          and (j.fail and 3 or 0) or nil } end
        if st == "FAILED" then d.statusReason = "Essential container in task exited" end
        out[#out + 1] = d
      end
    end
    return { jobs = out }
  end
  return b
end

local function new_world()
  local W = { t = 1000, jobs = {}, calls = {} }
  W.dict = fake_dict(function() return W.t end)
  return W
end

local FAST = { fast = 0.5, fast_growth = 1, fast_max = 0.5, running = 0.5, growth = 1, max = 0.5, jitter = 0, coalesce = 0 }

local function worker(W, pid)
  local n = fake_ngx(W, pid)
  local b = fake_batch(W, "w" .. pid)
  local w = assert(ngx_poller.new({ dict = "luabatch", batch = b, ngx = n, interval = 1, lock_ttl = 3,
    intervals = FAST, rate = 1000 }))
  return w, b, n
end

local function add_jobs(W, n, from, opts)
  local ids = {}
  for i = from or 1, (from or 1) + n - 1 do
    local id = "job-" .. i
    W.jobs[id] = { step = 0, fail = opts and opts.fail }
    ids[#ids + 1] = id
  end
  return ids
end

describe("luabatch.ngx.poller #unit", function()
  it("elects one worker: only it polls; the others queue jobs through the dict", function()
    local W = new_world()
    local w1, b1, n1 = worker(W, 101)
    local w2, b2, n2 = worker(W, 102)
    local ids = add_jobs(W, 3)
    -- jobs watched from worker 2 (a request handler there)
    for _, id in ipairs(ids) do assert(ngx_poller.watch("luabatch", id, { run_id = "r1" }, { ngx = n2 })) end
    -- a first summary is visible at once
    assert.equal("SUBMITTED", ngx_poller.get(W.dict, "job-1").status)
    assert.equal("leader", w1:tick())
    assert.equal("follower", w2:tick())
    assert.is_true(w1:is_leader())
    assert.is_false(w2:is_leader())
    for _ = 1, 4 do W.t = W.t + 1; w1:tick(); w2:tick() end
    assert.is_true(#b1.calls >= 3)
    assert.equal(0, #b2.calls)
    local all = ngx_poller.summaries(W.dict, ids)
    for _, id in ipairs(ids) do
      assert.equal("SUCCEEDED", all[id].status)
      assert.equal(0, all[id].exit_code)
      assert.equal("lb/default/" .. id, all[id].log_stream)
      assert.is_number(all[id].at)
      -- terminal: no longer watched
      assert.is_nil(W.dict:get("watch:" .. id))
    end
  end)

  it("writes every state change and the failure facts", function()
    local W = new_world()
    local w1 = worker(W, 1)
    local seen = {}
    local id = add_jobs(W, 1, 1, { fail = true })[1]
    ngx_poller.watch(W.dict, id, nil, { ngx = {} })
    for _ = 1, 5 do
      W.t = W.t + 1
      w1:tick()
      local s = ngx_poller.get(W.dict, id)
      if seen[#seen] ~= s.status then seen[#seen + 1] = s.status end
    end
    assert.same({ "RUNNABLE", "RUNNING", "FAILED" }, seen)
    local s = cjson.decode(W.dict:get("job:" .. id))
    assert.equal(3, s.exit_code)
    assert.equal("Essential container in task exited", s.reason)
  end)

  it("batches DescribeJobs: 250 jobs -> calls of at most 100 ids", function()
    local W = new_world()
    local w1, b1 = worker(W, 1)
    local ids = add_jobs(W, 250)
    for _, id in ipairs(ids) do ngx_poller.watch(W.dict, id, nil, { ngx = {} }) end
    W.t = W.t + 1
    w1:tick()
    assert.same({ 100, 100, 50 }, b1.calls)
    for _ = 1, 3 do W.t = W.t + 1; w1:tick() end
    for _, n in ipairs(b1.calls) do assert.is_true(n <= 100) end
    -- three polls to SUCCEEDED, then nothing is left to poll
    assert.equal(3 * 3, #b1.calls)
    for _, id in ipairs(ids) do assert.equal("SUCCEEDED", ngx_poller.get(W.dict, id).status) end
  end)

  it("a dead worker loses the lock; another takes over and finishes its jobs", function()
    local W = new_world()
    local w1, b1 = worker(W, 1)
    local w2, b2 = worker(W, 2)
    local ids = add_jobs(W, 5)
    for _, id in ipairs(ids) do ngx_poller.watch(W.dict, id, nil, { ngx = {} }) end
    assert.equal("leader", w1:tick())        -- first poll at once: RUNNABLE
    assert.equal("follower", w2:tick())
    assert.equal("RUNNABLE", ngx_poller.get(W.dict, "job-1").status)
    local before = #b1.calls
    -- worker 1 dies: it never ticks again; the lock outlives it lock_ttl s
    W.t = W.t + 1
    assert.equal("follower", w2:tick())
    W.t = W.t + 3
    assert.equal("leader", w2:tick())        -- took over, polled every watched job at once
    assert.equal(1, w2.stats.takeovers)
    assert.equal(5, b2.calls[1])
    for _ = 1, 3 do W.t = W.t + 1; w2:tick() end
    assert.equal(before, #b1.calls)
    for _, id in ipairs(ids) do assert.equal("SUCCEEDED", ngx_poller.get(W.dict, id).status) end
    -- a job added after the takeover reaches the new leader through the queue
    local late = add_jobs(W, 1, 99)[1]
    ngx_poller.watch(W.dict, late, nil, { ngx = {} })
    for _ = 1, 4 do W.t = W.t + 1; w2:tick() end
    assert.equal("SUCCEEDED", ngx_poller.get(W.dict, late).status)
    -- worker 1 comes back (it was only slow): it stays a follower
    assert.equal("follower", w1:tick())
  end)

  it("a leader that finds another worker's pid in the lock steps down", function()
    local W = new_world()
    local w1 = worker(W, 1)
    local w2 = worker(W, 2)
    assert.equal("leader", w1:tick())
    W.dict:set("poller:lock", "2", 3)        -- e.g. w2 won after an expiry race
    assert.equal("follower", w1:tick())
    assert.is_false(w1:is_leader())
    assert.equal("leader", w2:tick())
  end)

  it("renewing never steals a lock that lapsed and was taken in between", function()
    local W = new_world()
    local w1 = worker(W, 1)
    assert.equal("leader", w1:tick())
    -- between w1's read of its own pid and its renewal, the lock lapses and
    -- worker 2 takes it: make get() return w1's pid once, as if read just before
    local real_get = W.dict.get
    local once = true
    W.dict.get = function(d, k)
      if once and k == "poller:lock" then
        once = false
        d.data[k], d.exp[k] = "2", W.t + 30       -- worker 2's fresh lock
        return "1"
      end
      return real_get(d, k)
    end
    local ok = w1:elect()
    assert.is_false(ok)
    assert.equal("2", real_get(W.dict, "poller:lock"))
  end)

  it("start() runs tick from ngx.timer.every; a premature run does nothing", function()
    local W = new_world()
    local w1, b1, n1 = worker(W, 7)
    assert(w1:start())
    assert.equal(1, #n1.timers)
    assert.equal(1, n1.timers[1].iv)
    local id = add_jobs(W, 1)[1]
    ngx_poller.watch(W.dict, id, nil, { ngx = {} })
    n1.timers[1].fn(true)
    assert.equal(0, w1.stats.ticks)
    for _ = 1, 4 do W.t = W.t + 1; n1.timers[1].fn(false) end
    assert.equal("SUCCEEDED", ngx_poller.get(W.dict, id).status)
    assert.equal("7", W.dict:get("poller:lock"))
  end)

  it("rejects misuse", function()
    local W = new_world()
    assert.has_error(function() ngx_poller.new({ dict = W.dict }) end)
    assert.has_error(function() ngx_poller.watch(W.dict, "") end)
    local w, msg = ngx_poller.new({ dict = "nope", batch = {}, ngx = { shared = {} } })
    assert.is_nil(w)
    assert.matches("lua_shared_dict 'nope'", msg)
  end)
end)
