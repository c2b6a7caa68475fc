-- luabatch.workflow.sched: cooperative tasks over real child processes.
local sched = require "luabatch.workflow.sched"
local core = require "luabatch.core"

describe("luabatch.workflow.sched #unit", function()
  after_each(function() core.clear_interrupt() end)

  it("runs 8 `sleep 1` children 4 at a time in about 2 s", function()
    local s = sched.new()
    local lim = sched.limiter(4)
    local running, peak, results = 0, 0, {}
    for i = 1, 8 do
      s:spawn(function()
        lim:acquire()
        running = running + 1
        if running > peak then peak = running end
        local r = sched.exec({ "sleep", "1" })
        running = running - 1
        lim:release()
        results[i] = r
      end)
    end
    local t0 = core.monotime()
    assert.is_true(s:run())
    local took = core.monotime() - t0
    assert.is_true(took > 1.5 and took < 7, "took " .. took .. " s (one at a time: 8 s)")
    assert.are.equal(4, peak)
    for i = 1, 8 do assert.are.equal(0, results[i].exit) end
  end)

  it("interleaves sleeps and runs Lua between waits", function()
    local s, order = sched.new(), {}
    s:spawn(function() sched.sleep(0.3); order[#order + 1] = "slow" end)
    s:spawn(function() sched.sleep(0.1); order[#order + 1] = "fast" end)
    s:spawn(function() order[#order + 1] = "now" end)
    local t0 = core.monotime()
    s:run()
    local took = core.monotime() - t0
    assert.are.same({ "now", "fast", "slow" }, order)
    assert.is_true(took >= 0.28 and took < 10, "took " .. took)   -- the order shows the interleaving
  end)

  it("captures exit code, stdout, stderr, env, cwd and stdin", function()
    local s, r = sched.new(), nil
    s:spawn(function()
      r = sched.exec({ "sh", "-c", 'printf "%s|" "$V" "$(pwd)"; cat; echo oops >&2; exit 4' },
        { env = { V = "it's \"$HOME\"\nnext" }, cwd = "/", stdin = "in-data" })
    end)
    s:run()
    assert.are.equal(4, r.exit)
    assert.is_nil(r.signal)
    assert.are.equal("it's \"$HOME\"\nnext|/|in-data", r.stdout)
    assert.are.equal("oops\n", r.stderr)
  end)

  it("inherits the environment unless clear_env is set", function()
    local r = sched.exec({ "sh", "-c", 'echo "[$HOME][$X]"' }, { env = { X = "1" } })
    assert.are.equal("[" .. os.getenv("HOME") .. "][1]\n", r.stdout)
    r = sched.exec({ "/bin/sh", "-c", 'echo "[$HOME][$X]"' }, { env = { X = "1" }, clear_env = true })
    assert.are.equal("[][1]\n", r.stdout)
  end)

  it("reports a child killed by a signal", function()
    local s, r = sched.new(), nil
    s:spawn(function() r = sched.exec({ "sh", "-c", "kill -9 $$" }) end)
    s:run()
    assert.is_nil(r.exit)
    assert.are.equal(9, r.signal)
  end)

  it("fails a spawn of a missing program with EIO", function()
    local s, res = sched.new(), nil
    s:spawn(function() res = { sched.exec({ "no-such-program-lb" }) } end)
    s:run()
    assert.is_nil(res[1])
    assert.matches("no%-such%-program%-lb", res[2])
    assert.are.equal("EIO", res[3])
  end)

  it("joins: values come back, errors propagate with their value", function()
    local s, got, caught = sched.new(), nil, nil
    local a = s:spawn(function(x) sched.sleep(0.05); return x * 2, "two" end, 21)
    local b = s:spawn(function() sched.sleep(0.02); error({ name = "StageError", message = "boom" }) end)
    s:spawn(function()
      got = { sched.join(a) }
      local ok, err = pcall(sched.join, b)   -- yields inside pcall
      caught = { ok, err }
    end)
    assert.is_true(s:run())
    assert.are.same({ 42, "two" }, got)
    assert.is_false(caught[1])
    assert.are.same({ name = "StageError", message = "boom" }, caught[2])
  end)

  it("raises from run() the error of a task nobody joined", function()
    local s = sched.new()
    s:spawn(function() sched.sleep(0.01); error("lost task failed", 0) end)
    assert.has_error(function() s:run() end, "lost task failed")
  end)

  it("yields across pcall inside a task", function()
    local s, out = sched.new(), nil
    s:spawn(function()
      local ok, r = pcall(function() return sched.exec({ "echo", "inside" }).stdout end)
      out = { ok, r }
    end)
    s:run()
    assert.are.same({ true, "inside\n" }, out)
  end)

  it("cancels a task: its child is terminated, its wait returns ECANCELED", function()
    local s, res, sres = sched.new(), nil, nil
    local victim = s:spawn(function()
      local child = sched.spawn(function() sres = { sched.sleep(30) } end)
      res = { sched.exec({ "sleep", "30" }) }
      sched.join(child)
    end)
    s:spawn(function() sched.sleep(0.1); victim:cancel() end)
    local t0 = core.monotime()
    s:run()
    assert.is_true(core.monotime() - t0 < 10)   -- not the 30 s sleeps
    assert.is_nil(res[1])
    assert.are.equal("ECANCELED", res[3])
    assert.are.same({ nil, "cancelled", "ECANCELED" }, sres)
    assert.is_true(victim.cancelled)
  end)

  it("Ctrl-C (core.raise_interrupt) ends children and the run", function()
    local s, res, pid = sched.new(), nil, nil
    s:spawn(function()
      res = { sched.exec({ "sh", "-c", "echo $$; exec sleep 10" }) }
    end)
    s:spawn(function()
      sched.sleep(0.2)
      core.raise_interrupt()
      local ok = sched.sleep(30)  -- unwinding: no further waits
      pid = ok
    end)
    local t0 = core.monotime()
    local ok, msg, code = s:run()
    assert.is_true(core.monotime() - t0 < 10)   -- not the 30 s sleep
    assert.is_nil(ok)
    assert.are.equal("interrupted", msg)
    assert.are.equal("ECANCELED", code)
    assert.is_nil(res[1])
    assert.are.equal("ECANCELED", res[3])
    assert.is_nil(pid)
  end)

  it("sched.all bounds concurrency and collects results and errors", function()
    local fns, running, peak = {}, 0, 0
    for i = 1, 6 do
      fns[i] = function()
        running = running + 1
        if running > peak then peak = running end
        sched.sleep(0.1)
        running = running - 1
        if i == 3 then error("three", 0) end
        return i
      end
    end
    local t0 = core.monotime()
    local res = sched.all(fns, 2)
    local took = core.monotime() - t0
    assert.are.equal(2, peak)
    assert.is_true(took >= 0.28 and took < 10, "took " .. took)   -- peak shows the limit
    assert.are.same({ ok = true, n = 1, 1 }, res[1])
    assert.are.same({ ok = false, err = "three" }, res[3])
    assert.are.equal(6, res[6][1])
  end)

  it("nests sched.all inside a task (tasks of the same scheduler)", function()
    local s, res = sched.new(), nil
    s:spawn(function()
      res = sched.all({
        function() return sched.exec({ "sh", "-c", "sleep 2; echo a" }).stdout end,
        function() return sched.exec({ "sh", "-c", "sleep 2; echo b" }).stdout end,
      })
    end)
    local t0 = core.monotime()
    s:run()
    local took = core.monotime() - t0
    assert.is_true(took < 3.5, "took " .. took)   -- one after the other: 4 s
    assert.are.equal("a\n", res[1][1])
    assert.are.equal("b\n", res[2][1])
  end)

  it("works outside a task (blocking)", function()
    local r = sched.exec({ "sh", "-c", "exit 2" })
    assert.are.equal(2, r.exit)
    local t0 = core.monotime()
    assert.is_true(sched.sleep(0.05))
    assert.is_true(core.monotime() - t0 >= 0.045)
    assert.is_nil(sched.current())
  end)

  it("detects a deadlock instead of hanging", function()
    local s, lim = sched.new(), sched.limiter(1)
    lim:acquire()
    s:spawn(function() lim:acquire() end)
    assert.has_error(function() s:run() end)
  end)

  it("rejects misuse", function()
    assert.has_error(function() sched.exec("sh") end)
    assert.has_error(function() sched.spawn(function() end) end)
    assert.has_error(function() sched.limiter(0) end)
    assert.has_error(function() sched.new():spawn("x") end)
  end)

  it("on_output sees a child's output while it runs, in order, all of it", function()
    local s = sched.new()
    local got, t_first, t_end = {}, nil, nil
    local t0 = core.monotime()
    s:spawn(function()
      local r = assert(sched.exec({ "sh", "-c", "echo one; echo err >&2; sleep 0.8; printf 'two\\nthree'" },
        { on_output = function(fd, chunk)
            if not t_first then t_first = core.monotime() - t0 end
            got[#got + 1] = fd .. ":" .. chunk
          end }))
      t_end = core.monotime() - t0
      assert.equal("one\ntwo\nthree", r.stdout)
    end)
    assert(s:run())
    assert.is_true(t_first < 0.6, "first chunk after " .. t_first .. " s (the child ran " .. t_end .. " s)")
    local out, err = {}, {}
    for _, g in ipairs(got) do
      local fd, chunk = g:match("^(%d):(.*)$")
      if fd == "1" then out[#out + 1] = chunk else err[#err + 1] = chunk end
    end
    assert.equal("one\ntwo\nthree", table.concat(out))
    assert.equal("err\n", table.concat(err))
  end)

  it("on_output works outside a task too, and must be a function", function()
    local chunks = {}
    local r = assert(sched.exec({ "sh", "-c", "echo a; echo b" }, { on_output = function(fd, c) chunks[#chunks + 1] = c end }))
    assert.equal("a\nb\n", table.concat(chunks))
    assert.equal("a\nb\n", r.stdout)
    assert.has_error(function() sched.exec({ "true" }, { on_output = 1 }) end,
      "bad argument #2 to 'exec' (on_output must be a function)")
  end)
end)
