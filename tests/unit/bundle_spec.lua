-- luabatch.runner.aws_batch.bundle: what the provider uploads and the task
-- runner reads.  Credentials never go in; the JSON trip keeps integers vs
-- floats and empty objects vs arrays; bad bundles are named field by field.
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local bundle = require "luabatch.runner.aws_batch.bundle"
local load = require "luabatch.workflow.load"
local json = require "luabatch.json"
local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"

local NO_ENV = function() return nil end

local YAML = [[
wf-bundle:
  type: Workflow
  params:
    name:
      type: str
      default: x
  jobs:
    first:
      stages:
        - name: e
          echo: hi
    other:
      stages:
        - name: e
          echo: hi
    count:
      needs: [first]
      runs-on:
        type: aws_batch
        with:
          job_queue_arn: arn:aws:batch:us-east-1:123456789012:job-queue/q
          s3_bucket: bkt
          aws_access_key_id: AKIAEXAMPLEKEYID0001
          aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY
          aws_session_token: FQoGZXIvYXdzSESSIONTOKENVALUE
      strategy:
        max-parallel: 2
        matrix:
          n: [1, 2]
          f: [1.5, 2.0]
      stages:
        - name: b
          id: b
          bash: echo ${{ matrix.n }}
          env:
            K: v
]]

local SECRETS = { "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY", "FQoGZXIvYXdzSESSIONTOKENVALUE",
                  "AKIAEXAMPLEKEYID0001" }

local function model()
  return assert(load.string(YAML, "t.yml", { getenv = NO_ENV }))
end

local function build(m, extra)
  local o = { run_id = "20261124-101500-a1b2c3d4", workflow = m.name, job_id = "count",
    jobdef = m.jobs.count,
    context = { params = { name = "x", n = 3, f = 3.0, e = stage.object(), l = stage.array() },
                jobs = { first = { status = "SUCCESS", stages = stage.object() },
                         other = { status = "FAILED" } } },
    results = "s3://bkt/luabatch/runs/R/count" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return bundle.build(o)
end

describe("luabatch.runner.aws_batch.bundle #unit", function()
  describe("build", function()
    it("drops runs_on.with (credentials and all) and strategy.key_order, keeps runs_on.type", function()
      local m = model()
      assert.is_function(m.jobs.count.strategy.key_order)
      assert.are.equal("AKIAEXAMPLEKEYID0001", m.jobs.count.runs_on.with.aws_access_key_id)
      local t, dropped = build(m)
      assert.are.equal("aws_batch", t.job.runs_on.type)
      assert.is_nil(t.job.runs_on.with)
      assert.is_nil(t.job.strategy.key_order)
      assert.are.same({ "job.runs_on.with", "job.strategy.key_order" }, dropped)
      -- the model itself is untouched
      assert.is_function(m.jobs.count.strategy.key_order)
      assert.is_table(m.jobs.count.runs_on.with)
      assert.is_true((bundle.secret_free(t, SECRETS)))
      assert.is_true((bundle.secret_free(bundle.encode(t), SECRETS)))
    end)

    it("drops anything JSON cannot hold and reports where", function()
      local m = model()
      local jd = m.jobs.count
      jd.stages[1].hook = function() end
      jd.stages[1].co = coroutine.create(function() end)
      jd.extra = { [true] = 1, ok = 2 }
      local t, dropped = build(m)
      assert.is_nil(t.job.stages[1].hook)
      assert.is_nil(t.job.stages[1].co)
      assert.are.same({ ok = 2 }, t.job.extra)
      table.sort(dropped)
      assert.are.same({ "job.extra.true", "job.runs_on.with", "job.stages[1].co", "job.stages[1].hook",
        "job.strategy.key_order" }, dropped)
      assert.has_no.errors(function() bundle.encode(t) end)
    end)

    it("keeps only the records of the jobs the job needs", function()
      local t = build(model())
      assert.are.same({ "first" }, (function()
        local ks = {}
        for k in pairs(t.context.jobs) do ks[#ks + 1] = k end
        return ks
      end)())
      assert.are.equal("x", t.context.params.name)
    end)

    it("computes the strategies like job.strategies and ends results with /", function()
      local m = model()
      local t = build(m)
      local want = assert(job.strategies(m.jobs.count))
      assert.are.equal(4, #t.strategies)
      for i, c in ipairs(want) do
        assert.are.equal(c.id, t.strategies[i].id)
        assert.are.same(c.values, t.strategies[i].values)
      end
      assert.are.equal("s3://bkt/luabatch/runs/R/count/", t.results)
      assert.are.equal(bundle.FORMAT, t.format)
      assert.are.equal("luabatch-bundle/1", t.format)
    end)

    it("raises on misuse", function()
      local m = model()
      assert.has_error(function() bundle.build() end)
      assert.has_error(function() build(m, { run_id = 3 }) end)
      assert.has_error(function() build(m, { results = "http://x/y" }) end)
      assert.has_error(function() build(m, { jobdef = "nope" }) end)
      assert.has_error(function() build(m, { strategies = {} }) end)
    end)
  end)

  describe("encode/decode", function()
    it("round-trips equal: integers vs floats, empty objects vs arrays", function()
      local m = model()
      local t = build(m)
      local s = bundle.encode(t)
      local t2 = assert(bundle.decode(s, "s3://bkt/x/bundle.json"))
      assert.are.equal(s, bundle.encode(t2))
      assert.are.same(t.strategies, t2.strategies)
      local p = t2.context.params
      assert.are.equal(3, p.n)
      assert.are.equal(3.0, p.f)
      if math.type then
        assert.are.equal("integer", math.type(p.n))
        assert.are.equal("float", math.type(p.f))
        assert.are.equal("integer", math.type(t2.strategies[1].values.n))
        assert.are.equal("float", math.type(t2.strategies[1].values.f))
      end
      assert.are.equal("{}", json.encode(p.e))
      assert.are.equal("[]", json.encode(p.l))
      assert.are.equal("{}", json.encode(t2.context.jobs.first.stages))
      assert.are.equal("v", t2.job.stages[1].env.K)
      assert.is_true(s:find('"f":2.0', 1, true) ~= nil or math.type == nil)
    end)

    local function base()
      return json.decode(bundle.encode((build(model()))))
    end

    local function fails(mut, field, ...)
      local t = base()
      mut(t)
      local r, msg, code = bundle.decode(json.encode(t), "s3://bkt/r/count/bundle.json")
      assert.is_nil(r)
      assert.are.equal("EBUNDLE", code)
      assert.is_truthy(msg:find("s3://bkt/r/count/bundle.json: " .. field .. ":", 1, true), msg)
      for _, part in ipairs({ ... }) do
        assert.is_truthy(msg:find(part, 1, true), msg)
      end
    end

    it("names the field that is wrong", function()
      fails(function(t) t.format = "luabatch-bundle/2" end, "format", "luabatch-bundle/1", "luabatch-bundle/2")
      fails(function(t) t.format = nil end, "format")
      fails(function(t) t.job_id = nil end, "job_id")
      fails(function(t) t.run_id = 7 end, "run_id")
      fails(function(t) t.job = "x" end, "job")
      fails(function(t) t.job.stages = { a = 1 } end, "job.stages", "list")
      fails(function(t) t.job.stages = nil end, "job.stages")
      fails(function(t) t.job.stages[1] = "x" end, "job.stages[1]")
      fails(function(t) t.strategies = json.decode("[]") end, "strategies", "empty")
      fails(function(t) t.strategies = { a = 1 } end, "strategies")
      fails(function(t) t.strategies[2].id = nil end, "strategies[2].id")
      fails(function(t) t.strategies[2].id = t.strategies[1].id end, "strategies[2].id", "duplicate")
      fails(function(t) t.strategies[1].values = "x" end, "strategies[1].values")
      fails(function(t) t.results = "https://bkt/r/" end, "results", "s3://")
      fails(function(t) t.results = nil end, "results")
      fails(function(t) t.context.params = "x" end, "context.params")
      fails(function(t) t.context = 1 end, "context")
    end)

    it("reports bad JSON and non-objects with the name", function()
      local r, msg, code = bundle.decode("{nope", "s3://b/k")
      assert.is_nil(r)
      assert.are.equal("EBUNDLE", code)
      assert.is_truthy(msg:find("s3://b/k", 1, true), msg)
      r, msg, code = bundle.decode("[1,2]", "s3://b/k")
      assert.is_nil(r)
      assert.are.equal("EBUNDLE", code)
      assert.is_truthy(msg:find("s3://b/k: not a bundle", 1, true), msg)
      r, msg = bundle.decode("{}")
      assert.is_nil(r)
      assert.is_truthy(msg:find("^bundle: format:"), msg)
    end)
  end)

  describe("strategy", function()
    it("selects by id or 0-based index and says what exists otherwise", function()
      local t = assert(bundle.decode(bundle.encode((build(model())))))
      assert.are.equal(t.strategies[1], bundle.strategy(t, 0))
      assert.are.equal(t.strategies[4], bundle.strategy(t, 3))
      assert.are.equal(t.strategies[3], bundle.strategy(t, t.strategies[3].id))
      local c, msg = bundle.strategy(t, 4)
      assert.is_nil(c)
      assert.is_truthy(msg:find("0..3", 1, true), msg)
      c, msg = bundle.strategy(t, "0000000000")
      assert.is_nil(c)
      assert.is_truthy(msg:find(t.strategies[1].id, 1, true), msg)
      assert.has_error(function() bundle.strategy(t, {}) end)
    end)
  end)

  it("upload_text: the JSON to upload, or nil and where a credential of this client is", function()
    local key = "AKIAEXAMPLEEXAMPLE12"
    local t = { format = "x", files = { ["registry/m.lua"] = "-- " .. key } }
    assert.is_string(bundle.upload_text({ format = "x" }, { key }))
    local text, where = bundle.upload_text(t, { key })
    assert.is_nil(text)
    assert.is_string(where)
  end)

  describe("secret_free", function()
    it("finds a secret in a value or a key, anywhere, and gives its path", function()
      assert.is_true(bundle.secret_free({ a = { "x", { b = "y" } } }, { "secret" }))
      local ok, path = bundle.secret_free({ a = { "x", { b = "my-secret-here" } } }, { "secret" })
      assert.is_false(ok)
      assert.are.equal("$.a[2].b", path)
      ok, path = bundle.secret_free({ a = { secret = 1 } }, { "secret" })
      assert.is_false(ok)
      assert.are.equal("$.a.secret", path)
      assert.is_false((bundle.secret_free("text with secret", { "secret" })))
      assert.is_true(bundle.secret_free({ a = "x" }, { "" }))
    end)
  end)
end)

-- The files of call: and trigger: stages (bundle.collect_files / files).
describe("luabatch.runner.aws_batch.bundle files #unit", function()
  local engine = require "luabatch.workflow.engine"
  local call = require "luabatch.workflow.stages.call"
  local root, reg, conf

  local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
  local function write(path, text)
    assert(os.execute("mkdir -p " .. sh_quote(path:match("^(.*)/[^/]+$"))))
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
  end

  local MAIN = [[
wf-main:
  type: Workflow
  params:
    mod:
      type: str
      default: mods.greet
  jobs:
    j:
      stages:
        - name: top
          uses: mods.greet/hello@v1
        - name: par
          parallel:
            a:
              - name: deep
                uses: pkg/f@latest
            b:
              - name: dyn
                uses: "${{ params.mod }}/hello@v1"
        - name: each
          foreach: [1, 2]
          stages:
            - name: trig
              trigger: wf-child
        - name: pick
          case: 1
          match:
            - case: 2
              stages:
                - name: dyntrig
                  trigger: "wf-${{ params.mod }}"
            - else:
                - name: missing
                  uses: nowhere/f@latest
                - name: gone
                  trigger: wf-absent
]]
  local CHILD = [[
name: wf-child
type: Workflow
jobs:
  c:
    stages:
      - name: again
        uses: mods.greet/hello@v1
      - name: down
        until: "${{ loop >= 1 }}"
        stages:
          - name: gc
            trigger: wf-grand
]]
  -- two workflows keyed in one file; the grandchild triggers back up (a cycle: no loop here)
  local GRAND = [[
wf-grand:
  type: Workflow
  jobs:
    g:
      stages:
        - name: up
          trigger: wf-child
        - name: other-mod
          uses: tools.x/run@latest
wf-unused:
  type: Workflow
  jobs:
    u:
      stages:
        - name: e
          echo: never bundled for itself
]]

  setup(function()
    root = os.tmpname()
    os.remove(root)
    reg = root .. "/registry"
    conf = root .. "/conf"
    write(reg .. "/mods/greet.lua", "return { ['hello@v1'] = function(a) return { m = 'hi' } end }\n")
    write(reg .. "/pkg/init.lua", "return { f = function() return { pkg = true } end }\n")
    write(reg .. "/tools/x.lua", "return { run = function() return {} end }\n")
    write(conf .. "/main.yml", MAIN)
    write(conf .. "/sub/child.yml", CHILD)
    write(conf .. "/grand.yaml", GRAND)
  end)

  teardown(function()
    if root then os.execute("rm -rf " .. sh_quote(root)) end
  end)

  local function main_env(extra)
    local m = assert(load.file(conf .. "/main.yml", { getenv = NO_ENV }))
    local o = { registry = reg, conf = conf, getenv = NO_ENV }
    for k, v in pairs(extra or {}) do o[k] = v end
    return m, engine.make_env(m, o)
  end

  local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
  end

  local function sorted_keys(t)
    local out = {}
    for k in pairs(t or {}) do out[#out + 1] = k end
    table.sort(out)
    return out
  end

  it("collects the registry modules and workflows of call/trigger stages, nested and recursive", function()
    local m, env = main_env()
    local files, notes = bundle.collect_files(m.jobs.j, env)
    assert.is_table(files, notes)
    assert.are.same({ "mods/greet.lua", "pkg/init.lua", "tools/x.lua" }, sorted_keys(files.registry))
    assert.are.equal(read(reg .. "/mods/greet.lua"), files.registry["mods/greet.lua"])
    assert.are.equal(read(reg .. "/pkg/init.lua"), files.registry["pkg/init.lua"])
    assert.are.same({ "wf-child", "wf-grand" }, sorted_keys(files.workflows))
    assert.are.equal(CHILD, files.workflows["wf-child"])
    assert.are.equal(GRAND, files.workflows["wf-grand"])
    -- templated targets and targets the host lacks are left to the image, and said so
    local text = table.concat(notes, "\n")
    assert.is_truthy(text:find("'${{ params.mod }}/hello@v1' is templated", 1, true), text)
    assert.is_truthy(text:find("'wf-${{ params.mod }}' is templated", 1, true), text)
    assert.is_truthy(text:find("call 'nowhere/f@latest'", 1, true), text)
    assert.is_truthy(text:find("trigger 'wf-absent'", 1, true), text)
    assert.are.equal(4, #notes, text)
  end)

  it("keys a module as call.resolve finds it (first registry dir wins)", function()
    local other = root .. "/reg2"
    write(other .. "/mods/greet.lua", "return { ['hello@v1'] = function() return { m = 'first' } end }\n")
    local m, env = main_env({ registry = other .. ":" .. reg })
    local file, rel = call.resolve(env.registry_path, "mods.greet")
    assert.are.equal(other .. "/mods/greet.lua", file)
    assert.are.equal("mods/greet.lua", rel)
    local files = assert(bundle.collect_files(m.jobs.j, env))
    assert.are.equal(read(other .. "/mods/greet.lua"), files.registry["mods/greet.lua"])
    local nf, msg = call.resolve(env.registry_path, "no.such")
    assert.is_nil(nf)
    assert.is_truthy(msg:find(other .. "/no/such.lua", 1, true), msg)
    assert.are.same({ "mods.greet", "hello", "v1" }, { call.parse_uses("mods.greet/hello@v1") })
    assert.are.same({ "pkg", "f", "latest" }, { call.parse_uses("pkg/f") })
  end)

  it("gives empty files for a job without call/trigger stages", function()
    local m = model()
    local env = engine.make_env(m, { registry = reg, conf = conf, getenv = NO_ENV })
    local files, notes = bundle.collect_files(m.jobs.count, env)
    assert.are.same({}, files)
    assert.are.same({}, notes)
    local t = build(m, { files = files })
    assert.is_nil(t.files)
    assert.is_nil(bundle.encode(t):find('"files"', 1, true))
  end)

  it("refuses files over the size cap, naming the file", function()
    local m, env = main_env()
    local files, msg = bundle.collect_files(m.jobs.j, env, { max_bytes = 100 })
    assert.is_nil(files)
    assert.is_truthy(msg:find("over the limit of 100", 1, true), msg)
    assert.is_truthy(msg:find("file '", 1, true), msg)
    assert.is_truthy(msg:find(root, 1, true), msg)   -- the local path of the file
    assert.is_table((bundle.collect_files(m.jobs.j, env, { max_bytes = 100000 })))
  end)

  it("refuses a file holding a credential, naming the file and not the secret", function()
    local secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYINAFILE01"
    write(reg .. "/tools/x.lua", "-- key " .. secret .. "\nreturn { run = function() return {} end }\n")
    local m, env = main_env()
    local files, msg = bundle.collect_files(m.jobs.j, env,
      { secrets = bundle.secrets_of({ aws_secret_access_key = secret }, NO_ENV) })
    write(reg .. "/tools/x.lua", "return { run = function() return {} end }\n")
    assert.is_nil(files)
    assert.is_truthy(msg:find("registry file 'tools/x.lua'", 1, true), msg)
    assert.is_nil(msg:find(secret, 1, true), msg)
    -- the same from the environment
    local envsec = "FQoGZXIvYXdzENVSESSIONTOKEN00001"
    write(conf .. "/sub/child.yml", CHILD .. "# " .. envsec .. "\n")
    local getenv = function(n) if n == "AWS_SESSION_TOKEN" then return envsec end end
    files, msg = bundle.collect_files(m.jobs.j, env, { secrets = bundle.secrets_of({}, getenv) })
    write(conf .. "/sub/child.yml", CHILD)
    assert.is_nil(files)
    assert.is_truthy(msg:find("workflow file 'wf-child'", 1, true), msg)
    assert.is_nil(msg:find(envsec, 1, true), msg)
    -- and from a credential provider
    local got = bundle.secrets_of(nil, nil, { get = function() return { secret_key = "provider-secret-1" } end })
    assert.are.same({ "provider-secret-1" }, got)
  end)

  it("round-trips files through build/encode/decode", function()
    local m, env = main_env()
    local files = assert(bundle.collect_files(m.jobs.j, env))
    local t = build(model(), { files = files })
    local t2 = assert(bundle.decode(bundle.encode(t), "b.json"))
    assert.are.same(files.registry, t2.files.registry)
    assert.are.same(files.workflows, t2.files.workflows)
    -- a bundle without files still decodes (luabatch-bundle/1)
    local plain = assert(bundle.decode(bundle.encode(build(model())), "p.json"))
    assert.is_nil(plain.files)
  end)

  it("names what is wrong with files in decode and build", function()
    local base = json.decode(bundle.encode(build(model())))
    local function try(files)
      base.files = files
      local t, msg, code = bundle.decode(json.encode(base), "b.json")
      assert.is_nil(t)
      assert.are.equal("EBUNDLE", code)
      return msg
    end
    assert.is_truthy(try("x"):find("b.json: files:", 1, true))
    assert.is_truthy(try({ other = {} }):find('unknown field "other"', 1, true))
    assert.is_truthy(try({ registry = { ["../x.lua"] = "s" } }):find("'..'", 1, true))
    assert.is_truthy(try({ registry = { ["/abs/x.lua"] = "s" } }):find("relative", 1, true))
    assert.is_truthy(try({ registry = { ["x.txt"] = "s" } }):find("end in .lua", 1, true))
    assert.is_truthy(try({ registry = { ["a b.lua"] = "s" } }):find("letters", 1, true))
    assert.is_truthy(try({ registry = { ["x.lua"] = 3 } }):find('registry["x.lua"]: the source must be a string', 1, true))
    assert.is_truthy(try({ workflows = { w = {} } }):find('workflows["w"]', 1, true))
    assert.has_error(function() build(model(), { files = { registry = { ["../x.lua"] = "s" } } }) end)
    assert.has_error(function() bundle.collect_files(nil, {}) end)
    assert.has_error(function() bundle.collect_files({}, nil) end)
  end)
end)
