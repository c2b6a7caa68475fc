-- Specs for luabatch.poller and core.poller: a fake Batch client walks
-- scripted job states against a fake clock (no sleeping, no network).
local poller = require "luabatch.poller"
local core = require "luabatch.core"
local log = require "luabatch.log"

local ceil = math.ceil

local ORDER = { SUBMITTED = 1, PENDING = 2, RUNNABLE = 3, STARTING = 4, RUNNING = 5,
                SUCCEEDED = 6, FAILED = 6 }


-- A fake clock: sleep advances it.
local function fake_clock()
  local c = { t = 0, slept = 0 }
  c.clock = function() return c.t end
  c.sleep = function(s)
    assert(s > 0, "sleep of " .. tostring(s))
    c.t = c.t + s
    c.slept = c.slept + s
    return true
  end
  return c
end


-- walks[id] = { {t, status [, exit [, reason]]}, ... } sorted by t.
local function state_at(walk, t)
  local cur
  for _, step in ipairs(walk) do
    if step[1] <= t then cur = step else break end
  end
  return cur
end


local function fake_batch(walks, clk, fail)
  local f = { calls = 0, ids = 0, max_ids = 0 }
  function f:describe_jobs(ids)
    assert(type(ids) == "table" and #ids >= 1 and #ids <= 100, "bad batch of " .. #ids)
    self.calls = self.calls + 1
    self.ids = self.ids + #ids
    if #ids > self.max_ids then self.max_ids = #ids end
    if fail then
      local msg, code = fail(self.calls, ids)
      if msg then return nil, msg, code end
    end
    local jobs = {}
    for _, id in ipairs(ids) do
      local walk = walks[id]
      local s = walk and state_at(walk, clk.t)
      if s then
        local job = { jobId = id, jobName = "n-" .. id, status = s[2], statusReason = s[4] }
        if ORDER[s[2]] >= ORDER.RUNNING then
          job.container = { logStreamName = "jd/default/" .. id, exitCode = s[3] }
        end
        jobs[#jobs + 1] = job
      end
    end
    return { jobs = jobs }
  end
  return f
end


-- A walk that starts at t0 with random phase lengths.
local function random_walk(t0, rnd, fail)
  local t = t0
  local w = { { t, "SUBMITTED" } }
  t = t + rnd(1, 10); w[#w + 1] = { t, "PENDING" }
  t = t + rnd(1, 10); w[#w + 1] = { t, "RUNNABLE" }
  t = t + rnd(1, 120); w[#w + 1] = { t, "STARTING" }
  t = t + rnd(5, 30); w[#w + 1] = { t, "RUNNING" }
  t = t + rnd(30, 900)
  if fail then w[#w + 1] = { t, "FAILED", 3, "Essential container in task exited" }
  else w[#w + 1] = { t, "SUCCEEDED", 0 } end
  return w
end


-- A tiny deterministic PRNG (LCG) so both Lua 5.4 and LuaJIT script the same walks.
local function lcg(seed)
  local s = seed
  return function(a, b)
    s = (s * 16807) % 2147483647          -- Park-Miller: exact in doubles too
    return a + s % (b - a + 1)
  end
end


describe("luabatch.poller #unit", function()
  describe("core.poller (binding)", function()
    it("validates options and arguments", function()
      local p, msg, code = core.poller({ run_growth = 0.5 })
      assert.is_nil(p)
      assert.are.equal("EINVAL", code)
      assert.matches("growth", msg)
      assert.has_error(function() core.poller({ rate = "fast" }) end)
      p = core.poller()
      assert.has_error(function() p:add("") end)
      assert.has_error(function() p:due(0, 101) end)
      assert.has_error(function() p:update("x", "RUNNING") end)   -- no `now`
      assert.is_true(p:add("a", { name = "first" }))
      assert.is_false(p:add("a"))
      local ok, m, c = p:update("zzz", "RUNNING", nil, nil, nil, 1)
      assert.is_nil(ok)
      assert.are.equal("EINVAL", c)
      assert.matches("zzz", m)
      p:close()
      p:close()
      assert.has_error(function() p:count() end, "attempt to use a closed poller")
    end)

    it("keeps state, meta and stats per job", function()
      local p = core.poller({ jitter = 0, seed = 3 })
      p:add("a", { name = "first" }, 0)
      p:add("b", nil, 5)
      assert.are.same({ "a" }, p:due(1))
      assert.is_true(p:update("a", "RUNNING", nil, nil, "s/1", 1))
      assert.is_false(p:update("a", "RUNNING", nil, nil, "s/1", 2))
      assert.is_true(p:update("a", "FAILED", "boom", 7, "s/1", 3))
      local s = p:get("a")
      assert.are.equal("FAILED", s.status)
      assert.are.equal("boom", s.reason)
      assert.are.equal(7, s.exit_code)
      assert.are.equal("s/1", s.log_stream)
      assert.are.equal("terminal", s.phase)
      assert.are.equal("first", s.meta.name)
      assert.are.equal(2, p:count())
      assert.are.equal(1, p:pending())
      assert.are.equal(5, p:next_wakeup())
      assert.is_true(p:remove("b"))
      assert.is_nil(p:next_wakeup())
      local st = p:stats()
      assert.are.equal(3, st.updates)
      assert.are.equal(2, st.changes)
      assert.are.equal(1, st.batches)
      -- cjson.null-like lightuserdata count as nil
      local has_cjson, cjson = pcall(require, "cjson")
      local null = has_cjson and cjson.null or nil
      p:add("c", nil, 0)
      assert.is_true(p:update("c", "RUNNING", null, null, null, 1))
      assert.is_nil(p:get("c").reason)
      assert.is_nil(p:get("c").exit_code)
    end)

    it("runs a token bucket that halves and recovers", function()
      local p = core.poller({ rate = 10, burst = 1, recover_window = 1, recover_count = 2 })
      for _ = 1, 10 do assert.are.equal(0, p:acquire(1, 0)) end
      assert.is_near(0.1, p:acquire(1, 0), 1e-9)
      assert.are.equal(5, p:throttled(1))
      assert.are.equal(5, p:throttled(1.5))     -- one halving per window
      assert.are.equal(2.5, p:throttled(2))
      p:ok(3); assert.are.equal(2.5, p:rate())
      assert.is_near(2.75, p:ok(3), 1e-12)
    end)
  end)

  describe("poller", function()
    local lines, old_sink = {}, nil
    before_each(function()
      lines = {}
      old_sink = log.set_sink(function(l) lines[#lines + 1] = l end)
    end)
    after_each(function() log.set_sink(old_sink) end)

    it("polls 1,000 jobs in lockstep with ceil(N_active/100) DescribeJobs per cycle", function()
      local clk = fake_clock()
      local walks, ids = {}, {}
      for i = 1, 1000 do
        local id = string.format("job-%04d", i)
        ids[i] = id
        walks[id] = { { 0, "SUBMITTED" }, { 3, "RUNNABLE" }, { 20, "STARTING" },
                      { 30, "RUNNING" }, { 200 + (i % 2) * 100, "SUCCEEDED", 0 } }
      end
      local fb = fake_batch(walks, clk)
      local cycles, changes = {}, 0
      local w = poller.new({ batch = fb, clock = clk.clock, sleep = clk.sleep, seed = 5,
        on_cycle = function(c) cycles[#cycles + 1] = c end,
        on_change = function() changes = changes + 1 end })
      for _, id in ipairs(ids) do w:watch(id) end
      local out = assert(w:wait(ids))
      assert.are.equal(1000, #out)
      for i, s in ipairs(out) do
        assert.are.equal(ids[i], s.id)
        assert.are.equal("SUCCEEDED", s.status)
        assert.are.equal(0, s.exit_code)
      end
      assert.is_true(#cycles > 5)
      for _, c in ipairs(cycles) do
        assert.are.equal(ceil(c.active / 100), c.calls,
          string.format("t=%.1f active=%d calls=%d ids=%d", c.at, c.active, c.calls, c.ids))
        assert.are.equal(c.active, c.ids)
      end
      assert.are.equal(5000, changes)
      assert.are.equal(100, fb.max_ids)
      local st = w:stats()
      assert.are.equal(#cycles, st.cycles)
      assert.are.equal(fb.calls, st.calls)
      assert.are.equal(0, st.errors)
    end)

    it("reports each change of 1,000 random walks once, in order, within the interval", function()
      local clk = fake_clock()
      local rnd = lcg(12345)
      local walks, ids = {}, {}
      for i = 1, 1000 do
        local id = "j" .. i
        ids[i] = id
        walks[id] = random_walk(rnd(0, 60), rnd, i % 10 == 0)
      end
      local fb = fake_batch(walks, clk)
      local seen, bad_cycles, worst, last_at = {}, 0, 0, -1
      local w = poller.new({ batch = fb, clock = clk.clock, sleep = clk.sleep, seed = 9,
        on_cycle = function(c)
          if c.calls ~= ceil(c.ids / 100) or c.calls > ceil(c.active / 100) then
            bad_cycles = bad_cycles + 1
          end
        end,
        on_change = function(s)
          local list = seen[s.id] or {}
          seen[s.id] = list
          local prev = list[#list]
          assert.are.equal(prev, s.previous)
          assert.is_true(prev == nil or ORDER[s.status] > ORDER[prev],
            s.id .. ": " .. tostring(prev) .. " -> " .. s.status)
          assert.is_true(s.at >= last_at)
          last_at = s.at
          list[#list + 1] = s.status
          if ORDER[s.status] == 6 then
            local walk = walks[s.id]
            local late = s.at - walk[#walk][1]
            if late > worst then worst = late end
            if s.status == "FAILED" then
              assert.are.equal(3, s.exit_code)
              assert.are.equal("Essential container in task exited", s.reason)
            end
            assert.are.equal("jd/default/" .. s.id, s.log_stream)
          end
        end })
      -- jobs are submitted over the first minute, as a provider would
      local order = {}
      for i = 1, 1000 do order[i] = i end
      table.sort(order, function(a, b) return walks[ids[a]][1][1] < walks[ids[b]][1][1] end)
      local k, watched_at = 1, {}
      while k <= 1000 do
        local t = walks[ids[order[k]]][1][1]
        if t > clk.t then
          local ok, msg = w:run_until(function() return clk.t >= t end)
          assert.is_true(ok, msg)
          if clk.t < t then clk.t = t end
        end
        while k <= 1000 and walks[ids[order[k]]][1][1] <= clk.t do
          watched_at[ids[order[k]]] = clk.t
          w:watch(ids[order[k]])
          k = k + 1
        end
      end
      local out = assert(w:wait(ids))
      for i, s in ipairs(out) do
        assert.are.equal(walks[ids[i]][#walks[ids[i]]][2], s.status)
        local list = seen[ids[i]]
        -- the first report is the state at the first poll (the run loop may
        -- have slept past the submission time)
        assert.is_true(ORDER[list[1]] >= ORDER[state_at(walks[ids[i]], watched_at[ids[i]])[2]])
        assert.are.equal(s.status, list[#list])
      end
      assert.are.equal(0, bad_cycles)
      assert.is_true(worst <= 60 * 1.2 + 0.5, "worst detection " .. worst)
      -- the seed's strategy: one DescribeJobs per job per 10 s of its life
      local seed_calls = 0
      for _, id in ipairs(ids) do
        local walk = walks[id]
        seed_calls = seed_calls + ceil((walk[#walk][1] - walk[1][1]) / 10)
      end
      assert.is_true(fb.calls * 20 < seed_calls,
        string.format("%d calls vs %d for one-per-job", fb.calls, seed_calls))
    end)

    it("sees every state when states last longer than the interval", function()
      local clk = fake_clock()
      local walks = { a = { { 0, "SUBMITTED" }, { 20, "PENDING" }, { 40, "RUNNABLE" },
                            { 60, "STARTING" }, { 80, "RUNNING" }, { 500, "SUCCEEDED", 0 } } }
      local got = {}
      local w = poller.new({ batch = fake_batch(walks, clk), clock = clk.clock, sleep = clk.sleep,
        on_change = function(s) got[#got + 1] = s.status end })
      w:watch("a")
      assert(w:wait({ "a" }))
      assert.are.same({ "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED" }, got)
    end)

    it("halves the rate on TooManyRequestsException and still sees everything", function()
      local clk = fake_clock()
      local walks, ids = {}, {}
      for i = 1, 300 do
        ids[i] = "t" .. i
        walks[ids[i]] = { { 0, "RUNNABLE" }, { 10, "RUNNING" }, { 100, "SUCCEEDED", 0 } }
      end
      local throttled_calls = {}
      local fb = fake_batch(walks, clk, function(n)
        if (n >= 4 and n <= 6) or n == 12 then
          throttled_calls[#throttled_calls + 1] = n
          return "DescribeJobs: HTTP 429 TooManyRequestsException", "TooManyRequestsException"
        end
      end)
      local rates, changes = {}, {}
      local w
      w = poller.new({ batch = fb, clock = clk.clock, sleep = clk.sleep, rate = 8,
        on_change = function(s)
          local k = s.id .. s.status
          assert.is_nil(changes[k], "reported twice: " .. k)
          changes[k] = true
        end,
        on_cycle = function() rates[#rates + 1] = w:core():rate() end })
      for _, id in ipairs(ids) do w:watch(id) end
      local out = assert(w:wait(ids))
      for _, s in ipairs(out) do assert.are.equal("SUCCEEDED", s.status) end
      local st = w:stats()
      assert.are.equal(4, st.throttled)
      -- calls 4-6 are one burst (within the 1 s window): one halving, 8 -> 4;
      -- call 12 halves again
      assert.are.equal(2, st.halvings)
      local lowest = math.huge
      for _, r in ipairs(rates) do if r < lowest then lowest = r end end
      assert.is_true(lowest < 4, "lowest rate " .. lowest)
      assert.are.equal(4, rates[1] == 8 and rates[2] or rates[1])
      assert.is_true(st.rate > lowest, "the rate recovers after successes")
      assert.is_true(clk.slept > 0)
      for _, id in ipairs(ids) do
        assert.is_true(changes[id .. "RUNNABLE"] and changes[id .. "RUNNING"] and changes[id .. "SUCCEEDED"])
      end
    end)

    it("paces SubmitJob/TerminateJob through the shared bucket", function()
      local clk = fake_clock()
      local w = poller.new({ batch = fake_batch({}, clk), clock = clk.clock, sleep = clk.sleep,
                             rate = 2, burst = 1 })
      for _ = 1, 6 do assert.is_true(w:take()) end   -- 2 at once, then 0.5 s each
      assert.is_near(2.0, clk.t, 1e-9)
      w:throttled()
      local t0 = clk.t
      assert.is_true(w:take())
      assert.is_near(1.0, clk.t - t0, 1e-9)           -- emptied bucket, 1 token/s
    end)

    it("stops on cancel and on interrupt", function()
      local clk = fake_clock()
      local walks = { a = { { 0, "RUNNABLE" }, { 1000, "SUCCEEDED", 0 } },
                      b = { { 0, "RUNNABLE" }, { 1000, "SUCCEEDED", 0 } } }
      local w
      w = poller.new({ batch = fake_batch(walks, clk), clock = clk.clock, sleep = clk.sleep,
        on_change = function(s) if s.id == "b" then w:cancel() end end })
      w:watch("a"); w:watch("b")
      local ok, msg, code = w:wait({ "a", "b" })
      assert.is_nil(ok)
      assert.are.equal("ECANCELED", code)
      assert.matches("cancel", msg)
      assert.is_true(w:canceled())

      local flag = false
      local w2 = poller.new({ batch = fake_batch(walks, clk), clock = clk.clock, sleep = clk.sleep,
        interrupted = function() return flag end,
        on_change = function() flag = true end })
      w2:watch("a")
      ok, msg, code = w2:run_until()
      assert.is_nil(ok)
      assert.are.equal("ECANCELED", code)
      assert.matches("interrupted", msg)
    end)

    it("gives up on ids DescribeJobs never returns", function()
      local clk = fake_clock()
      local walks = { a = { { 0, "RUNNING" }, { 30, "SUCCEEDED", 0 } } }
      local final = {}
      local w = poller.new({ batch = fake_batch(walks, clk), clock = clk.clock, sleep = clk.sleep,
        max_missing = 3, on_change = function(s) final[s.id] = s.status end })
      w:watch("a", { name = "real" })
      w:watch("ghost", { name = "lost" })
      local out = assert(w:wait({ "a", "ghost" }))
      assert.are.equal("SUCCEEDED", out[1].status)
      assert.are.equal("MISSING", out[2].status)
      assert.are.equal("lost", out[2].meta.name)
      assert.are.equal("MISSING", final.ghost)
      assert.are.equal(1, w:stats().missing)
      assert.matches("ghost not found", lines[1])
    end)

    it("returns the error after max_errors failed calls in a row", function()
      local clk = fake_clock()
      local fb = fake_batch({ a = { { 0, "RUNNING" } } }, clk, function()
        return "DescribeJobs: HTTP 500 ServerException", "ServerException"
      end)
      local w = poller.new({ batch = fb, clock = clk.clock, sleep = clk.sleep, max_errors = 4 })
      w:watch("a")
      local ok, msg, code = w:run_until()
      assert.is_nil(ok)
      assert.are.equal("ServerException", code)
      assert.matches("HTTP 500", msg)
      assert.are.equal(4, fb.calls)
      assert.are.equal(4, #lines)
      assert.matches("DescribeJobs of 1 jobs failed", lines[4])
    end)

    it("gives up after max_throttled seconds of throttling with no answer; an answer restarts the count", function()
      local clk = fake_clock()
      local fb = fake_batch({ a = { { 0, "RUNNING" } } }, clk, function(n)
        if n ~= 3 then return "DescribeJobs: HTTP 429 TooManyRequestsException", "TooManyRequestsException" end
      end)
      local w = poller.new({ batch = fb, clock = clk.clock, sleep = clk.sleep, max_throttled = 30 })
      w:watch("a")
      local ok, msg, code = w:run_until()
      assert.is_nil(ok)
      assert.are.equal("TooManyRequestsException", code)
      assert.matches("DescribeJobs throttled %(TooManyRequestsException%) for %d+ s without an answer", msg)
      assert.matches("policy.max_throttled = 30 s", msg)
      assert.is_true(clk.t >= 30 and clk.t < 120, "gave up at " .. clk.t)
      assert.is_true(fb.calls > 4)                 -- call 3 answered: the count started again after it
    end)

    it("rejects misuse", function()
      assert.has_error(function() poller.new() end)
      assert.has_error(function() poller.new({ batch = 1 }) end)
      assert.has_error(function() poller.new({ batch = {}, clock = 1 }) end)
      local w = poller.new({ batch = {} })
      assert.has_error(function() w:watch(42) end)
      assert.has_error(function() w:wait("a") end)
      assert.has_error(function() w:run_until(5) end)
      local bad, msg, code = poller.new({ batch = {}, intervals = { growth = 0.1 } })
      assert.is_nil(bad)
      assert.are.equal("EINVAL", code)
      assert.matches("growth", msg)
      w:close()
    end)
  end)

  it("watch(id, meta, delay): a burst of submits shares DescribeJobs calls", function()
    local clk = fake_clock()
    local walks, ids = {}, {}
    for i = 1, 250 do
      local id = string.format("burst-%03d", i)
      ids[i] = id
      walks[id] = { { 0, "SUBMITTED" }, { 1, "RUNNING" }, { 12, "SUCCEEDED", 0 } }
    end
    local fb = fake_batch(walks, clk)
    local w = poller.new({ batch = fb, clock = clk.clock, sleep = clk.sleep, seed = 3 })
    -- one submit every 0.01 s (the token bucket's pace), a step after each
    for i, id in ipairs(ids) do
      w:watch(id, nil, 2)
      assert(w:step())
      clk.t = clk.t + 0.01
    end
    -- 250 submits over 2.5 s: only the ids that came due (2 s after their
    -- submit, coalesced 0.5 s) were asked for -- not one call per submit
    assert.is_true(fb.calls <= 3, "calls during the burst " .. fb.calls)
    assert(w:wait(ids))
    -- 250 ids first due within 2.5 s of each other: a handful of calls, not 250
    assert.is_true(fb.calls <= 12, "calls " .. fb.calls)
    assert.is_true(fb.max_ids >= 100)
    assert.has_error(function() w:watch("x", nil, -1) end, "bad argument #3 to 'watch' (delay in seconds expected)")
  end)
end)
