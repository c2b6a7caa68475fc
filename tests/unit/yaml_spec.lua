-- core.yaml_load / core.yaml_load_file: the YAML dialect as Lua sees it.
local core = require "luabatch.core"

local FIXTURE = "tests/fixtures/yaml/workflow.yml"


local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)   -- LuaJIT: numbers only
end


local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end


describe("luabatch.core yaml #unit", function()
  describe("scalars", function()
    it("keeps YAML 1.1 yes/no/on/off words as strings and resolves only true/false", function()
      local v = assert(core.yaml_load("a: on\nb: off\nc: yes\nd: no\ne: y\nf: True\ng: FALSE\nh: 'true'\n"))
      assert.are.same({ a = "on", b = "off", c = "yes", d = "no", e = "y", f = true, g = false, h = "true" }, v)
    end)

    it("turns integers into integers and floats into numbers", function()
      local v = assert(core.yaml_load("i: 42\nh: 0x1F\no: 0o17\nu: 1_000\nn: -3\nf: 1.5\ne: 1e3\nq: '42'\n"))
      assert.are.equal(42, v.i)
      assert.is_true(is_integer(v.i))
      assert.are.equal(31, v.h)
      assert.are.equal(15, v.o)
      assert.are.equal(1000, v.u)
      assert.are.equal(-3, v.n)
      assert.are.equal(1.5, v.f)
      assert.are.equal(1000, v.e)
      if math.type then assert.are.equal("float", math.type(v.e)) end
      assert.are.equal("42", v.q)
    end)

    it("reads .inf and .nan", function()
      local v = assert(core.yaml_load("[.inf, -.inf, .nan]"))
      assert.are.equal(math.huge, v[1])
      assert.are.equal(-math.huge, v[2])
      assert.is_true(v[3] ~= v[3])
    end)

    it("gives dates and timestamps as ISO strings and says which they are", function()
      local v, pos = core.yaml_load("d: 2024-01-02\nt: 2024-01-02 03:04:05 +7\nz: 2024-01-02T03:04:05Z\ns: '2024-01-02'\n",
                                    "t.yml", { positions = true })
      assert.are.same({ d = "2024-01-02", t = "2024-01-02T03:04:05+07:00", z = "2024-01-02T03:04:05Z", s = "2024-01-02" }, v)
      assert.are.equal("date", pos[v].values.d.kind)
      assert.are.equal("timestamp", pos[v].values.t.kind)
      assert.are.equal("timestamp", pos[v].values.z.kind)
      assert.are.equal("str", pos[v].values.s.kind)
    end)

    it("honours explicit tags and reports custom ones", function()
      local v, pos = core.yaml_load("a: !!str 42\nb: !!int '7'\nc: !Ref Bucket\nd: !!float 1\n", "t", { positions = true })
      assert.are.same({ a = "42", b = 7, c = "Bucket", d = 1 }, v)
      assert.are.equal("!Ref", pos[v].values.c.tag)
      assert.are.equal("tag:yaml.org,2002:str", pos[v].values.a.tag)
      assert.are.equal("tag:yaml.org,2002:float", pos[v].values.d.tag)
      assert.is_nil(v.missing)
    end)

    it("keeps block scalars verbatim", function()
      local v = assert(core.yaml_load("run: |\n  set -eu\n  echo \"${{ params.x }}\"\nfold: >\n  a\n  b\n"))
      assert.are.equal('set -eu\necho "${{ params.x }}"\n', v.run)
      assert.are.equal("a b\n", v.fold)
    end)
  end)

  describe("nulls", function()
    it("uses core.null so keys and array slots are not lost", function()
      local v = assert(core.yaml_load("a: ~\nb: null\nc:\nd: [1, ~, 3, NULL]\n"))
      assert.are.equal(core.null, v.a)
      assert.are.equal(core.null, v.b)
      assert.are.equal(core.null, v.c)
      assert.are.equal(4, #v.d)
      assert.are.equal(core.null, v.d[2])
      assert.are.equal(core.null, v.d[4])
      assert.are.equal("userdata", type(core.null))
    end)

    it("core.null is cjson.null, so JSON output writes null", function()
      local ok, cjson = pcall(require, "cjson")
      if not ok then return end
      assert.are.equal(cjson.null, core.null)
      local v = assert(core.yaml_load("a: ~\nb: [~]\n"))
      assert.are.equal('[null]', cjson.encode(v.b))
      assert.are.equal('{"a":null}', cjson.encode({ a = v.a }))
    end)

    it("accepts another null value through opts.null", function()
      local NULL = {}
      local v = assert(core.yaml_load("a: ~\nb: [~]\n", "t", { null = NULL }))
      assert.are.equal(NULL, v.a)
      assert.are.equal(NULL, v.b[1])
    end)

    it("returns core.null for an empty document", function()
      assert.are.equal(core.null, core.yaml_load(""))
      assert.are.equal(core.null, core.yaml_load("# nothing\n"))
    end)
  end)

  describe("keys", function()
    it("keeps YAML key types: integer keys are integers, on: is a string", function()
      local v = assert(core.yaml_load("1: one\n'2': two\non: push\ntrue: t\n"))
      assert.are.equal("one", v[1])
      assert.is_nil(v["1"])
      assert.are.equal("two", v["2"])
      assert.are.equal("push", v.on)
      assert.are.equal("t", v[true])
    end)

    it("rejects a null key, a duplicate key and a non-scalar key with the position", function()
      local v, msg, code = core.yaml_load("a: 1\n~: 2\n", "k.yml")
      assert.is_nil(v)
      assert.are.equal("k.yml:2:1: a null mapping key is not supported", msg)
      assert.are.equal("EPARSE", code)
      v, msg, code = core.yaml_load("a: 1\nb: 2\na: 3\n", "k.yml")
      assert.is_nil(v)
      assert.are.equal("k.yml:3:1: duplicate key 'a' (first at 1:1)", msg)
      assert.are.equal("EPARSE", code)
      v, msg = core.yaml_load("{1: a, 1.0: b}", "k.yml")
      assert.is_nil(v)
      if math.type then
        assert.are.equal("k.yml:1:8: duplicate key '1.0'", msg)
      end
      v, msg = core.yaml_load("? [x]\n: 1\n", "k.yml")
      assert.are.equal("k.yml:1:3: mapping key must be a scalar, not a sequence", msg)
    end)
  end)

  describe("anchors and merge keys", function()
    it("copies aliased tables so changing one leaves the other alone", function()
      local v = assert(core.yaml_load("a: &x {k: 1}\nb: *x\n"))
      assert.are.same(v.a, v.b)
      assert.are_not.equal(v.a, v.b)
      v.b.k = 2
      assert.are.equal(1, v.a.k)
    end)

    it("merges with explicit keys winning and earlier sources winning", function()
      local v = assert(core.yaml_load([[
base: &base {image: alpine, vcpus: 1, memory: 512}
big: &big {vcpus: 4, memory: 8192, gpus: 1}
job:
  <<: [*big, *base]
  memory: 1024
]]))
      assert.are.same({ image = "alpine", vcpus = 4, memory = 1024, gpus = 1 }, v.job)
    end)

    it("rejects an alias bomb", function()
      local lines = { "l0: &l0 [x, x, x, x, x, x, x, x, x, x]" }
      for i = 1, 9 do
        local refs = {}
        for j = 1, 10 do refs[j] = "*l" .. (i - 1) end
        lines[#lines + 1] = ("l%d: &l%d [%s]"):format(i, i, table.concat(refs, ", "))
      end
      local v, msg, code = core.yaml_load(table.concat(lines, "\n"), "bomb.yml")
      assert.is_nil(v)
      assert.matches("^bomb.yml:6:%d+: aliases expand to more than 1000000 extra nodes", msg)
      assert.are.equal("EPARSE", code)
    end)

    it("names an unknown alias", function()
      local v, msg = core.yaml_load("a: *missing\n", "x.yml")
      assert.is_nil(v)
      assert.are.equal("x.yml:1:4: unknown alias '*missing'", msg)
    end)
  end)

  describe("errors", function()
    it("names file, line and column of a syntax error", function()
      local v, msg, code = core.yaml_load("jobs:\n  a:\n    stages: [1, 2\n  b: {}\n", "wf.yml")
      assert.is_nil(v)
      assert.matches("^wf%.yml:4:%d+: ", msg)
      assert.are.equal("EPARSE", code)
      v, msg = core.yaml_load("a: b\n c: d\n", "wf.yml")
      assert.are.equal("wf.yml:2:3: mapping values are not allowed in this context", msg)
    end)

    it("uses 'yaml' as the default chunk name", function()
      local _, msg = core.yaml_load("a: [")
      assert.matches("^yaml:%d+:%d+: ", msg)
    end)

    it("refuses a second document", function()
      local v, msg = core.yaml_load("a: 1\n---\nb: 2\n", "two.yml")
      assert.is_nil(v)
      assert.are.equal("two.yml:2:1: a second document is not supported (one document per file)", msg)
    end)

    it("reports an unreadable file as EIO", function()
      local v, msg, code = core.yaml_load_file("tests/fixtures/yaml/does-not-exist.yml")
      assert.is_nil(v)
      assert.are.equal("open 'tests/fixtures/yaml/does-not-exist.yml': No such file or directory", msg)
      assert.are.equal("EIO", code)
    end)

    it("names the file path in errors from yaml_load_file", function()
      local path = tmpfile("a: 1\nb: [\n")
      finally(function() os.remove(path) end)
      local v, msg, code = core.yaml_load_file(path)
      assert.is_nil(v)
      assert.are.equal(path .. ":3:1: did not find expected node content (while parsing a flow node at 3:1)", msg)
      assert.are.equal("EPARSE", code)
    end)

    it("raises on misuse", function()
      assert.has_error(function() core.yaml_load() end)
      assert.has_error(function() core.yaml_load("a: 1", "n", 5) end)
      assert.has_error(function() core.yaml_load_file({}) end)
    end)
  end)

  describe("a realistic workflow file", function()
    local wf, pos

    setup(function()
      local doc
      doc, pos = assert(core.yaml_load_file(FIXTURE, { positions = true }))
      wf = doc["wf-etl"]
    end)

    it("reads params with their types", function()
      assert.are.equal("Workflow", wf.type)
      assert.are.equal("Extract, transform and load one day of data.\n", wf.desc)
      assert.are.equal("2024-01-02", wf.params["run-date"].default)
      assert.are.equal("2024-01-02T03:04:05+07:00", wf.params.asat.default)
      assert.are.equal(1000, wf.params.limit.default)
      assert.are.equal(0.5, wf.params.ratio.default)
      assert.are.same({ "full", "delta", "off" }, wf.params.mode.options)
      assert.are.equal("yes", wf.params.enabled)
      assert.are.equal(false, wf.params.debug)
      assert.are.equal(core.null, wf.params.note)
      assert.are.equal("*/15 * * * *", wf.on.schedule[1].cronjob)
    end)

    it("reads jobs, needs, merged defaults and the matrix", function()
      local ex, tr, ld = wf.jobs.extract, wf.jobs.transform, wf.jobs.load
      assert.are.same({ type = "local" }, ex["runs-on"])
      assert.are.same({ type = "local" }, tr["runs-on"])
      assert.are.equal(2, ex.strategy["max-parallel"])
      assert.are.equal(true, ex.strategy["fail-fast"])
      assert.are.same({ table = { "orders", "customers" }, part = { 1, 2 } }, ex.strategy.matrix)
      assert.are.same({ { table = "items", part = 3 } }, ex.strategy.include)
      assert.are.same({ "extract" }, tr.needs)
      assert.are.same({ "extract", "transform" }, ld.needs)
      assert.are.equal("${AWS_JOB_QUEUE}", ld["runs-on"].with.job_queue_arn)
      assert.are.equal("${AWS_S3_BUCKET}", ld["runs-on"].with.s3_bucket)
    end)

    it("keeps stage text and templates intact", function()
      local st = wf.jobs.extract.stages
      assert.are.equal(2, #st)
      assert.are.equal("run ${{ params.run-date }} from ${{ params.source }}", st[1].echo)
      assert.are.equal('set -eu\necho "table=${{ matrix.table }} part=${{ matrix.part }}"\n'
        .. 'aws s3 cp "${{ params.source }}/${{ matrix.table }}" - | wc -l\n', st[2].bash)
      assert.are.equal("${{ matrix.table }}", st[2].env.TABLE)
      assert.are.equal("${{ params.mode }} == 'full'", wf.jobs.transform.stages[1]["if"])
      assert.are.equal("return { loaded = true }\n", wf.jobs.load.stages[1].lua)
    end)

    it("gives positions of tables, keys, values and items", function()
      local jobs = pos[wf.jobs]
      assert.are.same({ "extract", "transform", "load" }, jobs.order)
      assert.are.same({ line = 40, col = 5 }, jobs.keys.extract)
      assert.are.same({ line = 74, col = 5 }, jobs.keys.load)
      assert.are.same({ line = 41, col = 7 }, { line = pos[wf.jobs.extract].line, col = pos[wf.jobs.extract].col })
      local stages = pos[wf.jobs.extract.stages]
      assert.are.same({ line = 55, col = 11, kind = "mapping" }, stages.items[1])
      assert.are.same({ line = 57, col = 11, kind = "mapping" }, stages.items[2])
      local s2 = pos[wf.jobs.extract.stages[2]]
      assert.are.equal(57, s2.line)
      assert.are.same({ line = 59, col = 11 }, s2.keys.bash)
      assert.are.same({ line = 59, col = 17, kind = "str" }, s2.values.bash)
      assert.are.same({ "name", "id", "bash", "env" }, s2.order)
      assert.are.same({ line = 36, col = 14, kind = "str" }, pos[wf.params].values.enabled)
      assert.are.same({ line = 20, col = 16, kind = "date" }, pos[wf.params["run-date"]].values.default)
      assert.are.same({ line = 35, col = 16, kind = "sequence" }, pos[wf.params.mode].values.options)
      assert.are.same({ line = 35, col = 30, kind = "str" }, pos[wf.params.mode.options].items[3])
      -- merged keys keep their source position and come where '<<' stood
      local strat = pos[wf.jobs.extract.strategy]
      assert.are.same({ "max-parallel", "fail-fast", "matrix", "include", "exclude" }, strat.order)
      assert.are.same({ line = 6, col = 5 }, strat.keys["max-parallel"])
      assert.are.same({ line = 45, col = 9 }, strat.keys.matrix)
      local ex = pos[wf.jobs.extract]
      assert.are.same({ "runs-on", "id", "strategy", "stages" }, ex.order)
    end)

    it("is a weak table", function()
      assert.are.equal("k", getmetatable(pos).__mode)
    end)

    it("survives a JSON round trip unchanged (nulls included)", function()
      local ok, cjson = pcall(require, "cjson")
      if not ok then return end
      local doc = assert(core.yaml_load_file(FIXTURE))
      local back = cjson.decode(cjson.encode(doc))
      assert.are.same(doc, back)
      assert.are.equal(core.null, back["wf-etl"].params.note)
    end)

    it("loads the same from a string and a file", function()
      local f = assert(io.open(FIXTURE, "rb"))
      local text = f:read("*a")
      f:close()
      local a = assert(core.yaml_load(text, FIXTURE))
      local b = assert(core.yaml_load_file(FIXTURE))
      assert.are.same(a, b)
    end)
  end)

  it("frees its documents when garbage is collected", function()
    for _ = 1, 200 do
      core.yaml_load("a: [1, 2, {b: c}]\n", "t", { positions = true })
      core.yaml_load("a: [1, 2\n")
    end
    collectgarbage()
    collectgarbage()
  end)
end)
