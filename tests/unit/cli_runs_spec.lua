-- luabatch runs (and luabatch status without a RUN_ID): the journaled runs,
-- newest first, from the journals alone.
local journal = require "luabatch.journal"
local runs_cli = require "luabatch.cli.runs"
local status_cli = require "luabatch.cli.status"
local json = require "luabatch.json"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function cli(mod, args)
  local o, e = {}, {}
  local code = mod.run(args, { stdout = function(s) o[#o + 1] = s end, stderr = function(s) e[#e + 1] = s end })
  return code, table.concat(o), table.concat(e)
end

describe("luabatch runs #unit", function()
  local home
  before_each(function()
    home = tmpdir()
    local a = assert(journal.open("20261201-100000-aaaaaaaa", { home = home, create = true }))
    assert(a:append({ ev = "run", run_id = "20261201-100000-aaaaaaaa", workflow = "etl", at = 1000 }))
    assert(a:append({ ev = "end", status = "FAILED", jobs = { ok = 2, failed = 1, skipped = 0, cancelled = 0 },
      at = 1125 }))
    local b = assert(journal.open("20261202-100000-bbbbbbbb", { home = home, create = true }))
    assert(b:append({ ev = "run", run_id = "20261202-100000-bbbbbbbb", workflow = "train", at = 2000 }))
    -- the newer one by mtime: still running
    os.execute("touch -d '2 days ago' '" .. home .. "/runs/20261201-100000-aaaaaaaa/journal.jsonl'")
  end)
  after_each(function() os.execute("rm -rf '" .. home .. "'") end)

  it("lists the runs newest first: workflow, start, duration, status, jobs ok/failed", function()
    local code, out = cli(runs_cli, { "--home", home })
    assert.equal(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(3, #lines)
    assert.matches("^RUN%s+WORKFLOW%s+STARTED%s+DURATION%s+STATUS%s+JOBS OK/FAILED%s+CLEANED$", lines[1])
    assert.matches("^20261202%-100000%-bbbbbbbb%s+train%s+1970%-01%-01T00:33:20Z%s+%S+%s+RUNNING%s+%-$", lines[2])
    assert.matches("^20261201%-100000%-aaaaaaaa%s+etl%s+1970%-01%-01T00:16:40Z%s+2m05s%s+FAILED%s+2/1$", lines[3])
  end)

  it("--json gives the same, --limit the newest N; status without a RUN_ID lists them too", function()
    local code, out = cli(runs_cli, { "--home", home, "--json", "--limit", "1" })
    assert.equal(0, code)
    local list = json.decode(out)
    assert.equal(1, #list)
    assert.equal("20261202-100000-bbbbbbbb", list[1].run_id)
    assert.equal("RUNNING", list[1].status)
    code, out = cli(status_cli, { "--home", home, "--json" })
    assert.equal(0, code)
    list = json.decode(out)
    assert.equal(2, #list)
    assert.same({ ok = 2, failed = 1, skipped = 0, cancelled = 0 }, list[2].jobs)
    assert.equal(1125, list[2].ended)
  end)

  it("a run whose files `luabatch cleanup` deleted is marked cleaned (table and --json)", function()
    local a = assert(journal.open("20261201-100000-aaaaaaaa", { home = home }))
    -- a runner's own cleanup of a job's files (no scope) does not count
    assert(a:append({ ev = "cleanup", bucket = "b", prefix = "p/x/", deleted = 2, at = 1130 }))
    local _, out = cli(runs_cli, { "--home", home })
    assert.matches("\n20261201%-100000%-aaaaaaaa%s+etl%s+%S+%s+2m05s%s+FAILED%s+2/1\n", out)
    assert(a:append({ ev = "cleanup", scope = "run", deleted = 3, terminated = 0, at = 1200 }))
    local code
    code, out = cli(runs_cli, { "--home", home })
    assert.equal(0, code)
    assert.matches("\n20261201%-100000%-aaaaaaaa%s+etl%s+%S+%s+2m05s%s+FAILED%s+2/1%s+1970%-01%-01T00:20:00Z\n", out)
    local list = json.decode(select(2, cli(runs_cli, { "--home", home, "--json" })))
    local by = {}
    for _, r in ipairs(list) do by[r.run_id] = r end
    assert.equal(1200, by["20261201-100000-aaaaaaaa"].cleaned)
    assert.is_nil(by["20261202-100000-bbbbbbbb"].cleaned)
  end)

  it("bad usage is exit 2; an empty home says so", function()
    local code, _, err = cli(runs_cli, { "--limit", "x", "--home", home })
    assert.equal(2, code)
    assert.matches("--limit wants a whole number", err, 1, true)
    local empty = tmpdir()
    local out
    code, out = cli(runs_cli, { "--home", empty })
    assert.equal(0, code)
    assert.matches("no runs under", out, 1, true)
  end)
end)
