local journal = require "luabatch.journal"
local json = require "luabatch.json"
local log = require "luabatch.log"
local lfs = require "lfs"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function rm_rf(d)
  if d and d:match("^/tmp/") then os.execute("rm -rf '" .. d .. "'") end
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("luabatch.journal #unit", function()
  local home
  before_each(function() home = tmpdir() end)
  after_each(function() rm_rf(home) end)

  describe("new_run_id", function()
    it("is YYYYMMDD-HHMMSS-<8 hex> in UTC from the given epoch", function()
      local id = journal.new_run_id(1795170900) -- 2026-11-20T10:35:00Z
      assert.matches("^20261120%-103500%-%x%x%x%x%x%x%x%x$", id)
      assert.matches("^[0-9a-z-]+$", id)
    end)

    it("is unique across many calls in the same second", function()
      local seen = {}
      for _ = 1, 2000 do
        local id = journal.new_run_id(1795170900)
        assert.is_nil(seen[id])
        seen[id] = true
      end
    end)

    it("defaults to now", function()
      local id = journal.new_run_id()
      assert.equal(os.date("!%Y%m%d", os.time()), id:sub(1, 8))
    end)
  end)

  describe("home", function()
    it("is LUABATCH_HOME, else $HOME/.luabatch", function()
      assert.equal("/x/lb", journal.home(function(k) return ({ LUABATCH_HOME = "/x/lb", HOME = "/h" })[k] end))
      assert.equal("/h/.luabatch", journal.home(function(k) return ({ HOME = "/h" })[k] end))
      assert.equal("/h/.luabatch", journal.home(function(k) return ({ LUABATCH_HOME = "", HOME = "/h" })[k] end))
    end)
  end)

  describe("open", function()
    it("says ENOENT for an unknown run and names the home", function()
      local j, msg, code = journal.open("20260101-000000-deadbeef", { home = home })
      assert.is_nil(j)
      assert.equal("ENOENT", code)
      assert.equal("no run '20260101-000000-deadbeef' in " .. home, msg)
    end)

    it("refuses run ids that could escape the home", function()
      for _, bad in ipairs({ "../x", "a/b", "", ".hidden", "a b" }) do
        local j, _, code = journal.open(bad, { home = home, create = true })
        assert.is_nil(j)
        assert.equal("EINVAL", code)
      end
      assert.is_nil(lfs.attributes(home .. "/runs/../x"))
    end)

    it("creates the directories 0700 and the file 0600", function()
      local id = journal.new_run_id()
      local j = assert(journal.open(id, { home = home, create = true }))
      assert(j:append({ ev = "run", run_id = id }))
      assert.equal(home .. "/runs/" .. id .. "/journal.jsonl", j:path())
      assert.equal("rwx------", lfs.attributes(home, "permissions"))
      assert.equal("rwx------", lfs.attributes(home .. "/runs", "permissions"))
      assert.equal("rwx------", lfs.attributes(home .. "/runs/" .. id, "permissions"))
      assert.equal("rw-------", lfs.attributes(j:path(), "permissions"))
    end)

    it("reopens an existing run (with or without create)", function()
      local id = journal.new_run_id()
      local j = assert(journal.open(id, { home = home, create = true }))
      assert(j:append({ ev = "run", run_id = id }))
      j:close()
      local j2 = assert(journal.open(id, { home = home }))
      assert(j2:append({ ev = "end", status = "SUCCESS" }))
      local j3 = assert(journal.open(id, { home = home, create = true }))
      assert.equal(2, #j3:events())
    end)

    it("raises on a non-string run id", function()
      assert.has_error(function() journal.open(42, { home = home }) end,
        "bad argument #1 to 'open' (string expected, got number)")
    end)
  end)

  describe("append and events", function()
    local j
    before_each(function() j = assert(journal.open("r1", { home = home, create = true })) end)

    it("writes one JSON line per event with `at`, read back in order", function()
      local t0 = os.time()
      assert(j:append({ ev = "run", run_id = "r1", params = { n = "3" } }))
      assert(j:append({ ev = "submit", key = "a/EMPTY/0", job_id = "a", strategy_id = "EMPTY", attempt = 0 }))
      local text = read(j:path())
      local lines = {}
      for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal(2, #lines)
      assert.equal("\n", text:sub(-1))
      local first = assert(json.decode(lines[1]))
      assert.equal("run", first.ev)
      assert.is_number(first.at)
      assert.is_true(first.at >= t0 - 5 and first.at <= os.time() + 5, "at " .. tostring(first.at) .. " vs " .. t0)
      local evs = j:events()
      assert.equal(2, #evs)
      assert.equal("submit", evs[2].ev)
      assert.equal(0, evs[2].attempt)
      assert.equal("3", evs[1].params.n)
    end)

    it("does not modify the caller's event", function()
      local e = { ev = "state", key = "a/EMPTY/0", status = "RUNNING" }
      assert(j:append(e))
      assert.is_nil(e.at)
    end)

    it("raises on an event without `ev`", function()
      assert.has_error(function() j:append({ key = "x" }) end)
      assert.has_error(function() j:append("x") end)
    end)

    it("skips a torn last line and starts the next append on a fresh line", function()
      assert(j:append({ ev = "submit", key = "a/EMPTY/0" }))
      local f = assert(io.open(j:path(), "ab"))
      f:write('{"ev":"submitted","key":"a/EM')   -- the crash mid-write
      f:close()
      local evs = j:events()
      assert.equal(1, #evs)
      -- a new process opens the journal and goes on
      local j2 = assert(journal.open("r1", { home = home }))
      assert(j2:append({ ev = "state", key = "a/EMPTY/0", status = "RUNNING" }))
      evs = j2:events()
      assert.equal(2, #evs)
      assert.equal("state", evs[2].ev)
      assert.equal("RUNNING", j2:state().jobs["a/EMPTY/0"].status)
    end)

    it("never writes a credential: strings pass through log.redact, secret keys are masked", function()
      local secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
      local token = "FQoGZXIvYXdzEJr//////////wEaDEXAMPLETOKEN"
      log.add_secret(secret)
      assert(j:append({ ev = "run", run_id = "r1",
        with = { aws_secret_access_key = "other-secret-value-1", aws_session_token = token,
                 aws_access_key_id = "AKIDEXAMPLE", region_name = "eu-west-1" },
        note = "key was " .. secret,
        headers = "Authorization: AWS4-HMAC-SHA256 Credential=AKID/x, Signature=abcdef0123456789" }))
      local text = read(j:path())
      assert.is_nil(text:find(secret, 1, true))
      assert.is_nil(text:find(token, 1, true))
      assert.is_nil(text:find("other-secret-value-1", 1, true))
      assert.is_nil(text:find("abcdef0123456789", 1, true))
      assert.truthy(text:find("<redacted>", 1, true))
      local ev = j:events()[1]
      assert.equal("<redacted>", ev.with.aws_session_token)
      assert.equal("eu-west-1", ev.with.region_name)
      assert.equal("AKIDEXAMPLE", ev.with.aws_access_key_id)
      assert.equal("key was <redacted>", ev.note)
    end)

    it("keeps values under ordinary keys, log forward tokens included", function()
      assert(j:append({ ev = "state", key = "a/EMPTY/0", next_token = "f/3725489/s", token_count = 3 }))
      local ev = j:events()[1]
      assert.equal("f/3725489/s", ev.next_token)
      assert.equal(3, ev.token_count)
    end)

    it("keeps integers and floats apart and empty objects as objects", function()
      local stage = require "luabatch.workflow.stage"
      assert(j:append({ ev = "result", key = "a/EMPTY/0", status = "SUCCESS",
        record = { status = "SUCCESS", outputs = stage.object({}), n = 3, x = 2.5, list = { 1, 2 } } }))
      local r = j:state().results["a/EMPTY/0"]
      assert.equal(3, r.n)
      assert.equal(2.5, r.x)
      if math.type then assert.equal("integer", math.type(r.n)) end
      assert.equal('{"list":[1,2],"n":3,"outputs":{},"status":"SUCCESS","x":2.5}', json.encode(r))
    end)
  end)

  describe("state", function()
    it("folds submit/submitted/state/result/terminate/config/jobdef/end", function()
      local j = assert(journal.open("r2", { home = home, create = true }))
      local evs = {
        { ev = "run", run_id = "r2", workflow = "wf", file = "/abs/wf.yml" },
        { ev = "config", job_id = "a", queue = "q", bucket = "b", prefix = "luabatch/runs/r2",
          region = "us-east-1", endpoints = { batch = "http://127.0.0.1:1" } },
        { ev = "jobdef", name = "lb-wf-a", arn = "arn:x", revision = 1, hash = "h", registered = true },
        { ev = "submit", key = "a/s1/0", job_id = "a", strategy_id = "s1", attempt = 0, job_name = "n1" },
        { ev = "submit", key = "a/s2/0", job_id = "a", strategy_id = "s2", attempt = 0, job_name = "n2" },
        { ev = "submitted", key = "a/s1/0", batch_job_id = "id1", job_name = "n1" },
        { ev = "state", key = "a/s1/0", batch_job_id = "id1", status = "RUNNING", log_stream = "ls1" },
        { ev = "state", key = "a/s1/0", batch_job_id = "id1", status = "FAILED", reason = "Essential container exited",
          exit_code = 3 },
        { ev = "submitted", key = "a/s2/0", batch_job_id = "id2", job_name = "n2" },
        { ev = "terminate", key = "a/s2/0", batch_job_id = "id2", reason = "cancel" },
        { ev = "submit", key = "arr/@array/1", job_id = "arr", strategy_id = "@array", attempt = 1,
          job_name = "n3", array_size = 3 },
        { ev = "result", key = "a/s1/0", status = "FAILED", record = { status = "FAILED" } },
        { ev = "end", status = "FAILED" },
      }
      for _, e in ipairs(evs) do assert(j:append(e)) end
      local st = j:state()
      assert.equal("wf", st.run.workflow)
      assert.equal("FAILED", st.ended.status)
      assert.equal("q", st.configs.a.queue)
      assert.equal("arn:x", st.defs["lb-wf-a"].arn)
      assert.same({ "a/s1/0", "a/s2/0", "arr/@array/1" }, st.order)
      local a1 = st.jobs["a/s1/0"]
      assert.equal("id1", a1.batch_job_id)
      assert.equal("FAILED", a1.status)
      assert.equal(3, a1.exit_code)
      assert.equal("ls1", a1.log_stream)
      assert.equal("Essential container exited", a1.reason)
      assert.equal("n1", a1.job_name)
      assert.equal("s1", a1.strategy_id)
      assert.equal("FAILED", st.results["a/s1/0"].status)
      local a2 = st.jobs["a/s2/0"]
      assert.is_true(a2.terminated)
      assert.is_nil(a2.status)
      local arr = st.jobs["arr/@array/1"]
      assert.equal(3, arr.array_size)
      assert.equal(1, arr.attempt)
      assert.equal("@array", arr.strategy_id)
      assert.is_nil(arr.batch_job_id)
    end)

    it("has no `ended` while the run goes on", function()
      local j = assert(journal.open("r3", { home = home, create = true }))
      assert(j:append({ ev = "run", run_id = "r3" }))
      assert.is_nil(j:state().ended)
    end)
  end)

  describe("list", function()
    it("lists runs newest first with their end status", function()
      local now = os.time()
      for i, id in ipairs({ "20260101-000000-aaaaaaaa", "20260102-000000-bbbbbbbb", "20260103-000000-cccccccc" }) do
        local j = assert(journal.open(id, { home = home, create = true }))
        assert(j:append({ ev = "run", run_id = id }))
        if i ~= 2 then assert(j:append({ ev = "end", status = i == 1 and "SUCCESS" or "FAILED" })) end
        -- journal ages: the second run is the newest, the first the oldest
        local age = ({ 3000, 10, 200 })[i]
        assert(lfs.touch(j:path(), now - age, now - age))
      end
      local runs = journal.list(home)
      assert.equal(3, #runs)
      assert.same({ "20260102-000000-bbbbbbbb", "20260103-000000-cccccccc", "20260101-000000-aaaaaaaa" },
        { runs[1].run_id, runs[2].run_id, runs[3].run_id })
      assert.is_nil(runs[1].ended_status)
      assert.equal("FAILED", runs[2].ended_status)
      assert.equal("SUCCESS", runs[3].ended_status)
      assert.equal(now - 10, runs[1].mtime)
      assert.equal(home .. "/runs/20260102-000000-bbbbbbbb/journal.jsonl", runs[1].path)
    end)

    it("reads each listed journal once (run, end and cleanup from one pass), and only the newest limit", function()
      local now = os.time()
      for i = 1, 4 do
        local id = string.format("20260101-00000%d-aaaaaaaa", i)
        local j = assert(journal.open(id, { home = home, create = true }))
        assert(j:append({ ev = "run", run_id = id, workflow = "w" .. i, at = 100 }))
        assert(j:append({ ev = "end", status = "SUCCESS", at = 150 }))
        if i == 4 then assert(j:append({ ev = "cleanup", scope = "run", deleted = 1, at = 200 })) end
        assert(lfs.touch(j:path(), now - 100 + i, now - 100 + i))
      end
      local each_line, reads = journal.each_line, {}
      finally(function() journal.each_line = each_line end)
      journal.each_line = function(path, fn) reads[#reads + 1] = path return each_line(path, fn) end
      local runs = journal.list(home)
      assert.equal(4, #reads)
      assert.equal(200, runs[1].cleaned)
      assert.equal(200, runs[1].last_at)
      assert.is_nil(runs[2].cleaned)
      assert.equal("w4", runs[1].workflow)
      reads = {}
      runs = journal.list(home, { limit = 2 })
      assert.same({ "20260101-000004-aaaaaaaa", "20260101-000003-aaaaaaaa" }, { runs[1].run_id, runs[2].run_id })
      assert.same({ runs[1].path, runs[2].path }, reads)
      -- an entry the caller holds is listed as it is, unread
      reads = {}
      runs = journal.list(home, { limit = 2, cached = function(e)
        if e.run_id == "20260101-000004-aaaaaaaa" then return { run_id = e.run_id, kept = true } end
      end })
      assert.is_true(runs[1].kept)
      assert.same({ runs[2].path }, reads)
    end)

    it("is empty for a home without runs", function()
      assert.same({}, journal.list(home))
    end)
  end)

  it("a cancel request is a journal event and a marker a second handle on the run reads", function()
    local live = assert(journal.open("r8", { home = home, create = true }))
    assert(live:append({ ev = "run", run_id = "r8" }))
    assert.is_nil(live:cancel_requested())
    local other = assert(journal.open("r8", { home = home }))
    assert(other:request_cancel("stop: budget spent"))
    assert.equal("stop: budget spent", live:cancel_requested())
    assert.equal("stop: budget spent", live:state().cancel.reason)
    assert.equal("rw-------", lfs.attributes(home .. "/runs/r8/cancel", "permissions"))
    assert.is_nil(lfs.attributes(home .. "/runs/r8/cancel.tmp"))
  end)

  it("a cancel reason holding a secret is stored redacted", function()
    log.add_secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEYcancel")
    local j = assert(journal.open("r7", { home = home, create = true }))
    assert(j:request_cancel("why wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEYcancel"))
    assert.is_nil(j:cancel_requested():find("EXAMPLEKEYcancel", 1, true))
    assert.is_nil(read(j:path()):find("EXAMPLEKEYcancel", 1, true))
  end)

  it("a cancel request whose marker cannot be written fails, naming it, and leaves no temp file", function()
    local j = assert(journal.open("r6", { home = home, create = true }))
    assert(lfs.mkdir(home .. "/runs/r6/cancel"))
    assert(io.open(home .. "/runs/r6/cancel/x", "w")):close()
    local ok, msg, code = j:request_cancel("x")
    assert.is_nil(ok)
    assert.truthy(msg:find("cancel marker", 1, true), msg)
    assert.equal("EIO", code)
    assert.is_nil(lfs.attributes(home .. "/runs/r6/cancel.tmp"))
  end)

  it("nosync: appends land the same, without an fsync each (a local run's journal)", function()
    local j = assert(journal.open("r10", { home = home, create = true, nosync = true }))
    assert.is_true(j.nosync)
    assert(j:append({ ev = "run", run_id = "r10" }))
    assert(j:append({ ev = "end", status = "SUCCESS" }))
    local evs = assert(journal.open("r10", { home = home })):events()
    assert.same({ "run", "end" }, { evs[1].ev, evs[2].ev })
    assert.is_nil(assert(journal.open("r10", { home = home })).nosync)   -- fsync'd unless asked
  end)

  it("remove deletes the run's directory", function()
    local j = assert(journal.open("r9", { home = home, create = true }))
    assert(j:append({ ev = "run", run_id = "r9" }))
    assert(j:remove())
    assert.is_nil(lfs.attributes(home .. "/runs/r9"))
    assert.is_nil(journal.open("r9", { home = home }))
  end)
end)

describe("luabatch.cli.cleanup and cli.status helpers #unit", function()
  local cleanup = require "luabatch.cli.cleanup"
  local status = require "luabatch.cli.status"

  it("parses ages in days, hours and minutes only", function()
    assert.equal(7 * 86400, cleanup.parse_age("7d"))
    assert.equal(3 * 3600, cleanup.parse_age("3h"))
    assert.equal(90 * 60, cleanup.parse_age("90m"))
    for _, bad in ipairs({ "7", "d", "7s", "-1d", "1.5d", "", "7dd" }) do
      assert.is_nil(cleanup.parse_age(bad), bad)
    end
  end)

  it("accepts only the run's own prefix", function()
    local id = "20261124-101500-a1b2c3d4"
    assert.is_true(require("luabatch.runner.aws_batch.ops").own_prefix("luabatch/runs/" .. id, id))
    assert.is_true(require("luabatch.runner.aws_batch.ops").own_prefix(id, id))
    assert.is_false(require("luabatch.runner.aws_batch.ops").own_prefix("luabatch/runs", id))
    assert.is_false(require("luabatch.runner.aws_batch.ops").own_prefix("luabatch/runs/x" .. id, id))
    assert.is_false(require("luabatch.runner.aws_batch.ops").own_prefix("", id))
    assert.is_false(require("luabatch.runner.aws_batch.ops").own_prefix("/" .. id .. "/more", id))
  end)

  it("status without a refreshable config shows the journal's states", function()
    local home = os.tmpname()
    os.remove(home)
    local j = assert(journal.open("r5", { home = home, create = true }))
    assert(j:append({ ev = "run", run_id = "r5", workflow = "w" }))
    assert(j:append({ ev = "submit", key = "a/EMPTY/0", job_id = "a", strategy_id = "EMPTY", attempt = 0,
      job_name = "lb-a" }))
    assert(j:append({ ev = "submit", key = "b/EMPTY/0", job_id = "b", strategy_id = "EMPTY", attempt = 0,
      job_name = "lb-b" }))
    assert(j:append({ ev = "submitted", key = "b/EMPTY/0", batch_job_id = "id-b" }))
    assert(j:append({ ev = "state", key = "b/EMPTY/0", batch_job_id = "id-b", status = "FAILED",
      exit_code = 2, reason = "boom" }))
    local out = {}
    local code = status.run({ "r5", "--home", home }, { stdout = function(s) out[#out + 1] = s end,
      stderr = function() end })
    os.execute("rm -rf '" .. home .. "'")
    assert.equal(0, code)
    local text = table.concat(out)
    assert.matches("\na%s+%-%s+NOT SUBMITTED", text)
    assert.matches("\nb%s+id%-b%s+FAILED%s+2%s+%S+%s+%S+%s+boom", text)
  end)
end)
