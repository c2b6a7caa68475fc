-- JSON read from files and objects is bounded: luabatch.json's max, the
-- journal's lines (read in pieces, a huge line skipped), the bundle (built,
-- downloaded and decoded).  result.json and the log tail: runner_aws_batch_spec.
local json = require "luabatch.json"
local journal = require "luabatch.journal"
local bundle = require "luabatch.runner.aws_batch.bundle"

-- Set module fields for the duration of fn, restored even when it fails.
local function with(mod, fields, fn)
  local saved = {}
  for k, v in pairs(fields) do saved[k] = mod[k]; mod[k] = v end
  local ok, err = pcall(fn)
  for k, v in pairs(saved) do mod[k] = v end
  assert(ok, err)
end

describe("json.decode max", function()
  it("refuses a text over max (default json.MAX, 64 MiB) unread, with ELIMIT", function()
    assert.equal(64 * 1024 * 1024, json.MAX)
    local v, msg, code = json.decode('{"a": "0123456789"}', "x.json", { max = 10 })
    assert.is_nil(v)
    assert.equal("x.json: 19 bytes exceeds the limit of 10 bytes for JSON", msg)
    assert.equal("ELIMIT", code)
    assert.equal("0123456789", json.decode('{"a": "0123456789"}', "x.json", { max = 19 }).a)
    with(json, { MAX = 5 }, function()
      assert.equal("ELIMIT", select(3, json.decode("[1, 2]")))
    end)
  end)
end)

describe("journal lines", function()
  local home
  before_each(function() home = os.tmpname(); os.remove(home) end)
  after_each(function() os.execute("rm -rf '" .. home .. "'") end)

  it("a line over MAX_LINE is skipped as it is read; the lines around it count", function()
    local id = "20260101-000000-abcdef01"
    local j = assert(journal.open(id, { home = home, create = true }))
    assert(j:append({ ev = "run", run_id = id, workflow = "w", at = 1 }))
    local f = assert(io.open(j.file, "ab"))          -- a valid event of 300 KB: several read pieces
    f:write('{"ev":"plan","pad":"', ("x"):rep(300000), '","at":2}\n')
    f:close()
    assert(j:append({ ev = "end", status = "SUCCESS", at = 3 }))
    with(journal, { MAX_LINE = 1000 }, function()
      local evs = j:events()
      assert.equal(2, #evs)
      assert.equal("run", evs[1].ev)
      assert.equal("end", evs[2].ev)
      local r = journal.list(home)[1]
      assert.equal("w", r.workflow)
      assert.equal("SUCCESS", r.ended_status)
    end)
    assert.equal(3, #j:events())                      -- under the default limit: read whole
  end)

  it("each_line: pieces joined across reads, the last line without a newline", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(("a"):rep(70000), "\n\nb")
    f:close()
    local got = {}
    assert.is_true(journal.each_line(path, function(line, ended, n)
      got[#got + 1] = { line and #line, ended, n }
    end))
    os.remove(path)
    assert.same({ { 70000, true, 70000 }, { 0, true, 0 }, { 1, false, 1 } }, got)
    assert.is_false(journal.each_line(path, error))
  end)
end)

describe("bundle size", function()
  local function build()
    return bundle.build({ run_id = "r", job_id = "j", jobdef = { stages = {} }, context = {},
      strategies = { { id = "EMPTY", values = {} } }, results = "s3://bkt/p/" })
  end

  it("build raises past MAX_BYTES (256 MiB); decode refuses a longer text unread", function()
    assert.equal(256 * 1024 * 1024, bundle.MAX_BYTES)
    local text = bundle.encode(build())
    with(bundle, { MAX_BYTES = #text - 1 }, function()
      local ok, err = pcall(build)
      assert.is_false(ok)
      assert.equal(("%d bytes of JSON, more than the limit of %d bytes for a bundle"):format(#text, #text - 1), err)
      local t, msg, code = bundle.decode(text, "s3://bkt/p/bundle.json")
      assert.is_nil(t)
      assert.equal(("s3://bkt/p/bundle.json: %d bytes exceeds the limit of %d bytes for a bundle")
        :format(#text, #text - 1), msg)
      assert.equal("EBUNDLE", code)
    end)
    assert.equal("r", bundle.decode(text).run_id)
  end)

  it("the task streams the bundle and stops a download past MAX_BYTES (exit 2)", function()
    local text = bundle.encode(build())
    local sent
    local s3 = {}
    function s3:get_stream(_, _, write)
      sent = 0
      for i = 1, #text, 16 do
        local ok, err = write(text:sub(i, i + 15))
        if not ok then return nil, "GetObject: write the bundle: " .. tostring(err), "EWRITE" end
        sent = sent + 1
      end
      return { bytes = #text }
    end
    local errs = {}
    local function run()
      return require("luabatch.task").run({ url = "s3://bkt/p/bundle.json", s3 = s3, getenv = function() end,
        stdout = function() end, stderr = function(s) errs[#errs + 1] = s end })
    end
    with(bundle, { MAX_BYTES = 100 }, function()
      assert.equal(2, run())
      assert.equal(6, sent)                           -- the 7th piece (past 100 bytes) refused
      assert.equal("luabatch task: s3://bkt/p/bundle.json: the bundle is larger than the limit of 100 bytes\n",
        errs[1])
    end)
  end)
end)
