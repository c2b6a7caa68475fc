-- call: and trigger: stages inside aws_batch jobs: the bundle carries the
-- registry modules and workflow files they need (bundle.collect_files), the
-- task writes them to a private directory and finds them there.  In-process
-- runner against Ceph RGW + the Batch emulator, whose jobs are real
-- `luabatch task` processes started in an empty working directory with
-- LUABATCH_REGISTRY pointing nowhere: what they call and trigger can only
-- come from the bundle.
--   * a job with a call (nested in parallel) and a trigger (whose workflow
--     calls another module) gives the same context as the local run
--   * the modules are loaded from the private directory (0700) under the
--     task's TMPDIR, which is gone afterwards
--   * a templated call target is not bundled: remotely it fails, naming it
--   * a module holding the run's secret key is refused before anything is
--     submitted, naming the file, not the secret
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local provider = require "helpers.provider"
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"

local FAST, strip, new_run_id = provider.FAST, provider.strip, provider.new_run_id

local NO_ENV = function() return nil end

local MAIN = [[
wf-files:
  type: Workflow
  params:
    who:
      type: str
      default: batch
    mod:
      type: str
      default: tools.greet
  jobs:
    prep:
      stages:
        - name: prep
          id: prep
          lua: |
            return { base = 40 }
    work:
      needs: [prep]
      strategy:
        matrix:
          n: [1, 2]
      stages:
        - name: hello
          id: hello
          uses: tools.greet/hello@v1
          with:
            name: "${{ params.who }}"
            n: "${{ matrix.n }}"
        - name: fan
          id: fan
          parallel:
            one:
              - name: inner
                id: inner
                uses: tools.pkg/twice@latest
                with:
                  v: "${{ jobs.prep.stages.prep.outputs.base }}"
        - name: child
          id: child
          trigger: wf-child
          params:
            n: "${{ matrix.n }}"
    probe:
      stages:
        - name: where
          id: where
          uses: tools.greet/where@v1
        - name: dir
          id: dir
          lua: |
            local p = io.popen('ls -ld "$TMPDIR"/luabatch-files-* 2>/dev/null')
            local out = p:read("a")
            p:close()
            return { listing = out }
    templated:
      stages:
        - name: dyn
          id: dyn
          uses: "${{ params.mod }}/hello@v1"
          with:
            name: x
            n: 1
]]

local CHILD = [[
name: wf-child
type: Workflow
params:
  n:
    type: int
    default: 0
jobs:
  c:
    stages:
      - name: sq
        id: sq
        uses: other/square@v2
        with:
          x: "${{ params.n }}"
]]

local GREET = [[
return {
  hello = { tag = "v1", args = { name = "str", n = "any" },
            fn = function(a) return { msg = "hello " .. a.name .. " #" .. tostring(a.n) } end },
  ["where@v1"] = function() return { source = debug.getinfo(1, "S").source } end,
}
]]
local PKG = [[
return { twice = function(a) return { v = tonumber(a.v) * 2 } end }
]]
local OTHER = [[
return { square = { tag = "v2", fn = function(a) local x = tonumber(a.x) return { sq = x * x } end } }
]]

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, text)
  assert(os.execute("mkdir -p " .. sh_quote(path:match("^(.*)/[^/]+$"))))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("call/trigger files in aws_batch bundles #integration", function()
  local peers, emu, s3, bucket, secret
  local root, reg, conf, tmpd, m

  setup(function()
    root = os.tmpname()
    os.remove(root)
    reg, conf, tmpd = root .. "/registry", root .. "/conf", root .. "/task-tmp"
    write(reg .. "/tools/greet.lua", GREET)
    write(reg .. "/tools/pkg/init.lua", PKG)
    write(reg .. "/other.lua", OTHER)
    write(conf .. "/main.yml", MAIN)
    write(conf .. "/child.yml", CHILD)
    assert(os.execute("mkdir -p " .. sh_quote(tmpd)))
    peers = provider.start({ bucket_prefix = "lb-files-",
      task_env = { LUABATCH_REGISTRY = root .. "/no-such-registry" } })
    emu, s3, bucket, secret = peers.emu, peers.s3, peers.bucket, peers.secret
    m = assert(load.file(conf .. "/main.yml", { getenv = NO_ENV }))
  end)

  teardown(function()
    if s3 and bucket then
      s3:delete_prefix(bucket, "")
      s3:delete_bucket(bucket)
    end
    if peers then peers:stop() end
    if root then os.execute("rm -rf " .. sh_quote(root)) end
  end)

  local function with(extra)
    local w = peers:with({ environment = { TMPDIR = tmpd } })
    for k, v in pairs(extra or {}) do w[k] = v end
    return w
  end

  local function run(job, runs_on, extra)
    return assert(engine.run(m, { job = job, runs_on = runs_on, with = runs_on == "aws_batch" and with(extra) or nil,
      run_id = new_run_id(), runner_opts = { policy = FAST }, getenv = NO_ENV, log = function() end,
      registry = reg, conf = conf }))
  end

  local function leftovers()
    local p = io.popen("ls -A " .. sh_quote(tmpd) .. " 2>/dev/null")
    local out = p:read("a")
    p:close()
    local names = {}
    for n in out:gmatch("[^\n]+") do
      if n:find("^luabatch%-files%-") then names[#names + 1] = n end
    end
    return names
  end

  it("runs call and trigger stages from the bundle: the same context as the local run", function()
    -- the whole workflow minus the probe jobs, locally and on Batch
    local local_ctx = run(nil, "local")
    local batch_ctx = run(nil, "aws_batch")
    assert.equal("SUCCESS", local_ctx.jobs.work.status)
    local s1 = local_ctx.jobs.work.strategies
    local rec
    for _, r in pairs(s1) do if r.matrix.n == 2 then rec = r end end
    assert.equal("hello batch #2", rec.stages.hello.outputs.msg)
    assert.equal(80, rec.stages.fan.outputs.parallel.one.stages.inner.outputs.v)
    assert.equal(4, rec.stages.child.outputs.jobs.c.stages.sq.outputs.sq)
    assert.same(strip(local_ctx.jobs.work), strip(batch_ctx.jobs.work))
    assert.same(strip(local_ctx.jobs.prep), strip(batch_ctx.jobs.prep))
    -- locally the templated call finds the host registry; remotely it is not bundled
    assert.equal("SUCCESS", local_ctx.jobs.templated.status)
    assert.equal("FAILED", batch_ctx.jobs.templated.status)
    local msg = batch_ctx.jobs.templated.stages.dyn.errors.message
    assert.matches("no registry module 'tools.greet'", msg, 1, true)
    assert.is_nil(msg:find(reg, 1, true), msg)       -- the host registry was not searched there
    -- the probe: the module came from the private directory, removed at the end
    local probe = batch_ctx.jobs.probe
    assert.equal("SUCCESS", probe.status)
    local src = probe.stages.where.outputs.source
    assert.matches("^@" .. tmpd:gsub("%p", "%%%0") .. "/luabatch%-files%-%x+/registry/tools/greet%.lua$", src)
    assert.matches("^drwx%-%-%-%-%-%- ", probe.stages.dir.outputs.listing)
    assert.same({}, leftovers())
    assert.matches("/registry/tools/greet%.lua$", local_ctx.jobs.probe.stages.where.outputs.source)
    assert.is_nil(local_ctx.jobs.probe.stages.where.outputs.source:find("luabatch-files-", 1, true))
  end)

  it("refuses to upload a module holding the secret key, naming the file and not the key", function()
    local before = #emu:jobs()
    write(reg .. "/other.lua", OTHER .. "-- " .. secret .. "\n")
    local ok, ctx = pcall(run, "work", "aws_batch")
    write(reg .. "/other.lua", OTHER)
    assert(ok, ctx)
    assert.equal("FAILED", ctx.status)
    local _, rec = next(ctx.jobs.work.strategies)
    local msg = rec.errors.message
    assert.matches("registry file 'other.lua'", msg, 1, true)
    assert.matches("refusing to upload", msg, 1, true)
    assert.is_nil(require("luabatch.json").encode(ctx):find(secret, 1, true))
    assert.equal(before, #emu:jobs())                   -- nothing was submitted
  end)
end)
