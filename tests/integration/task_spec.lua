-- `luabatch task BUNDLE_URL [--strategy ID]` through the built executable
-- against Ceph RGW: what a Batch container runs.  The bundle is made from a
-- real loaded workflow (bash + py + lua stages, a 2-strategy matrix, one
-- strategy failing); result.json must equal the strategy record the local
-- runner produces (timing aside), output.log must hold the stage output, the
-- exit codes are 0/1/2, the array index picks the strategy, credentials come
-- from the environment or an ECS-style container endpoint and never show up
-- in what is printed or uploaded, SIGTERM still uploads a CANCEL record, and
-- the bundle's files (registry modules, workflows) serve call/trigger stages.
local servers = require "tests.helpers.servers"
local bundle = require "luabatch.runner.aws_batch.bundle"
local load = require "luabatch.workflow.load"
local engine = require "luabatch.workflow.engine"
local runner = require "luabatch.runner.local"
local json = require "luabatch.json"
local core = require "luabatch.core"

local ROOT = os.getenv("PWD")
local INTERP = jit and "luajit" or "lua5.4"
-- The executable of this interpreter when the build has one, else Lua 5.4's.
local EXE = ROOT .. "/build/" .. INTERP .. "/bin/luabatch"
do
  local f = io.open(EXE, "rb")
  if f then f:close() else EXE = ROOT .. "/build/lua5.4/bin/luabatch" end
end
local PYTHON = "/usr/bin/python3"

local ECS_TOKEN = "ecs-auth-token-7f3a9c2e11d4"
local WITH_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWITHSECRET"

local YAML = [[
wf-task:
  type: Workflow
  params:
    name:
      type: str
      default: world
  jobs:
    first:
      stages:
        - name: first
          id: first
          run: |
            size = 41 + 1
    work:
      needs: [first]
      runs-on:
        type: aws_batch
        with:
          job_queue_arn: arn:aws:batch:us-east-1:123456789012:job-queue/q
          s3_bucket: unused
          aws_access_key_id: AKIAWITHKEYID0000001
          aws_secret_access_key: ]] .. WITH_SECRET .. [[

      strategy:
        max-parallel: 2
        matrix:
          n: [1, 2]
          f: [1.5]
      stages:
        - name: sh
          id: sh
          bash: |
            echo "hello ${{ params.name }} n=${{ matrix.n }} size=${{ jobs.first.stages.first.outputs.size }}"
            echo "to stderr" >&2
        - name: py
          id: py
          run: |
            x = ${{ matrix.n }} * 2
            y = ${{ matrix.f }}
            z = {}
            w = [1, 2.0]
            print("py says", x)
        - name: lua
          id: lua
          lua: |
            print("lua says", matrix.n)
            return { half = matrix.n + 0.5, twice = matrix.n * 2, empty = {} }
        - name: boom
          id: boom
          bash: |
            if [ "${{ matrix.n }}" = "2" ]; then echo "failing now" >&2; exit 3; fi
            echo "boom survived"
]]

-- A job that prints its environment (credentials must not leak) and one that
-- sleeps (SIGTERM).
local YAML2 = [[
wf-task2:
  type: Workflow
  jobs:
    envdump:
      stages:
        - name: env
          id: env
          bash: env | sort
        - name: pyenv
          id: pyenv
          run: |
            import os
            for k in sorted(os.environ): print(k + "=" + os.environ[k])
    sleepy:
      stages:
        - name: before
          id: before
          echo: before the sleep
        - name: nap
          id: nap
          bash: |
            echo napping
            sleep 30
            echo woke
        - name: after
          id: after
          echo: never
]]

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Drop every `info` (timing) field.
local function strip(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do
    if k ~= "info" then c[k] = strip(x) end
  end
  return setmetatable(c, getmetatable(v))
end

describe("luabatch task #integration", function()
  local ep, key, secret, s3, bucket, dir, model, model2, ctx

  -- Run the executable with a clean environment -> stdout, stderr, rc.
  local function task(args, env)
    local parts = { "env -i", "PATH=" .. sh_quote(os.getenv("PATH")), "HOME=" .. sh_quote(dir),
      "TMPDIR=" .. sh_quote(dir), "AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
      "AWS_ENDPOINT_URL_S3=" .. sh_quote(ep) }
    for k, v in pairs(env or { AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret }) do
      parts[#parts + 1] = k .. "=" .. sh_quote(v)
    end
    parts[#parts + 1] = EXE .. " task"
    for _, a in ipairs(args) do parts[#parts + 1] = sh_quote(a) end
    local errf = dir .. "/stderr"
    local p = io.popen(table.concat(parts, " ") .. " 2>" .. errf .. "; echo \"<rc=$?>\"")
    local out = p:read("a")
    p:close()
    local rc = tonumber(out:match("<rc=(%d+)>%s*$"))
    return (out:gsub("<rc=%d+>%s*$", "")), read(errf) or "", rc
  end

  local function url(k) return "s3://" .. bucket .. "/" .. k end

  local function upload(m, job_id, run_id, context)
    local t = bundle.build{ run_id = run_id, workflow = m.name, job_id = job_id,
      jobdef = m.jobs[job_id], context = context or { params = {}, jobs = {} },
      results = url("runs/" .. run_id .. "/" .. job_id .. "/") }
    local k = "runs/" .. run_id .. "/" .. job_id .. "/bundle.json"
    assert(s3:put_object(bucket, k, bundle.encode(t)))
    return url(k), t
  end

  local function get(k)
    return s3:get_object(bucket, k)
  end

  local function keys_under(prefix)
    local out = {}
    for e, msg in s3:list(bucket, { prefix = prefix }) do
      assert(e, msg)
      out[#out + 1] = e.key
    end
    table.sort(out)
    return out
  end

  local bundle_url, strategies

  setup(function()
    local why
    ep, key, secret = servers.rgw()
    if not ep then why = key end
    assert(ep, why)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. sh_quote(dir)))
    s3 = require("luabatch.s3").new({ endpoint = ep, region = "us-east-1", addressing = "path",
      credentials = require("luabatch.credentials").static({ access_key = key, secret_key = secret }) })
    bucket = "lb-task-" .. core.hex(core.random_bytes(4))
    assert(s3:create_bucket(bucket))
    write(dir .. "/wf.yml", YAML)
    write(dir .. "/wf2.yml", YAML2)
    model = assert(load.file(dir .. "/wf.yml", { getenv = function() return nil end }))
    model2 = assert(load.file(dir .. "/wf2.yml", { getenv = function() return nil end }))
    ctx = assert(engine.run(model, { job = "first" }))
    local t
    bundle_url, t = upload(model, "work", "r1", { params = ctx.params, jobs = ctx.jobs })
    strategies = t.strategies
    assert.are.equal(2, #strategies)
  end)

  teardown(function()
    if s3 and bucket then
      s3:delete_prefix(bucket, "")
      s3:delete_bucket(bucket)
    end
    if dir then os.execute("rm -rf " .. sh_quote(dir)) end
    servers.stop_all()
  end)

  -- The local runner's strategy records for the same job and context.
  local local_records
  local function local_record(sid)
    if not local_records then
      local _, jctx = runner.run_job(model, "work", { params = ctx.params, jobs = ctx.jobs,
        status = "WAIT" }, { getenv = os.getenv, log = function() end })
      local_records = jctx
    end
    return local_records[sid]
  end

  it("runs a strategy, uploads result.json equal to the local record and output.log, exit 0", function()
    local sid = strategies[1].id
    local out, err, rc = task({ bundle_url, "--strategy", sid })
    assert.are.equal(0, rc, err .. out)
    assert.is_truthy(out:find("hello world n=1 size=42", 1, true), out)
    assert.is_truthy(out:find("py says 2", 1, true), out)
    assert.is_truthy(out:find("lua says\t1", 1, true), out)
    assert.is_truthy(out:find("stage boom: SUCCESS", 1, true), out)
    local body = assert(get("runs/r1/work/" .. sid .. "/result.json"))
    local rec = assert(json.decode(body))
    assert.are.equal("SUCCESS", rec.status)
    assert.are.equal(json.encode(strip(local_record(sid))), json.encode(strip(rec)))
    if math.type then
      assert.are.equal("integer", math.type(rec.stages.lua.outputs.twice))
      assert.are.equal("float", math.type(rec.stages.py.outputs.y))
    end
    assert.are.equal("{}", json.encode(rec.stages.lua.outputs.empty))
    local log = assert(get("runs/r1/work/" .. sid .. "/output.log"))
    assert.is_truthy(log:find("hello world n=1 size=42", 1, true), log)
    assert.is_truthy(log:find("to stderr", 1, true), log)
    assert.is_truthy(log:find("boom survived", 1, true), log)
    assert.is_truthy(log:find("py says 2", 1, true), log)
    assert.is_true((bundle.secret_free(log, { secret, WITH_SECRET })))
    assert.is_true((bundle.secret_free(body, { secret, WITH_SECRET })))
    local bundle_text = assert(get("runs/r1/work/bundle.json"))
    assert.is_true((bundle.secret_free(bundle_text, { WITH_SECRET, "AKIAWITHKEYID0000001" })))
  end)

  it("exits 1 for a failing strategy and still uploads its record", function()
    local sid = strategies[2].id
    local out, err, rc = task({ bundle_url, "--strategy", sid })
    assert.are.equal(1, rc, err .. out)
    assert.is_truthy(out:find("failing now", 1, true), out)
    local rec = assert(json.decode(assert(get("runs/r1/work/" .. sid .. "/result.json"))))
    assert.are.equal("FAILED", rec.status)
    assert.is_truthy(rec.errors.message:find("'boom'", 1, true))
    assert.are.equal(json.encode(strip(local_record(sid))), json.encode(strip(rec)))
    assert.is_truthy(assert(get("runs/r1/work/" .. sid .. "/output.log")):find("failing now", 1, true))
  end)

  it("picks the strategy from AWS_BATCH_JOB_ARRAY_INDEX or the :N of AWS_BATCH_JOB_ID; no index with several strategies is exit 2", function()
    local _, bt = upload(model, "work", "r2", { params = ctx.params, jobs = ctx.jobs })
    local u = url("runs/r2/work/bundle.json")
    local base = { AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret }
    local env1 = { AWS_BATCH_JOB_ARRAY_INDEX = "1" }
    for k, v in pairs(base) do env1[k] = v end
    local out, err, rc = task({ u, "--strategy", "@array" }, env1)
    assert.are.equal(1, rc, err .. out)
    assert.are.same({ "runs/r2/work/" .. bt.strategies[2].id .. "/output.log",
                      "runs/r2/work/" .. bt.strategies[2].id .. "/result.json",
                      "runs/r2/work/bundle.json" }, keys_under("runs/r2/"))
    -- no AWS_BATCH_JOB_ARRAY_INDEX: the ":N" suffix of an array child's job id
    local envid = { AWS_BATCH_JOB_ID = "4c1e-77aa:0" }
    for k, v in pairs(base) do envid[k] = v end
    out, err, rc = task({ u }, envid)
    assert.are.equal(0, rc, err .. out)
    assert.is_truthy(get("runs/r2/work/" .. bt.strategies[1].id .. "/result.json"))
    envid.AWS_BATCH_JOB_ID = "4c1e-77aa:x1"
    out, err, rc = task({ u }, envid)
    assert.are.equal(2, rc, err .. out)
    assert.is_truthy(err:find("AWS_BATCH_JOB_ID=\"x1\" is not an index", 1, true), err)
    -- no index at all with two strategies: an error, nothing more uploaded
    local before = keys_under("runs/r2/")
    envid.AWS_BATCH_JOB_ID = "4c1e-77aa"
    out, err, rc = task({ u }, envid)
    assert.are.equal(2, rc, err .. out)
    assert.is_truthy(err:find("the bundle has 2 strategies and no array index", 1, true), err)
    assert.is_truthy(err:find(u, 1, true), err)
    out, err, rc = task({ u, "--strategy", "@array" }, base)
    assert.are.equal(2, rc, err .. out)
    assert.are.same(before, keys_under("runs/r2/"))
    local env9 = { AWS_BATCH_JOB_ARRAY_INDEX = "9" }
    for k, v in pairs(base) do env9[k] = v end
    out, err, rc = task({ u, "--strategy", "@array" }, env9)
    assert.are.equal(2, rc, err .. out)
    assert.is_truthy(err:find("out of range", 1, true), err)
  end)

  it("exits 2 naming the URL for a bad URL, a missing or bad bundle, an unknown strategy; no result", function()
    local out, err, rc = task({ "https://example.invalid/bundle.json" })
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("https://example.invalid/bundle.json", 1, true), err)
    out, err, rc = task({ "s3://" .. bucket .. "/runs/" })
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("prefix", 1, true), err)
    out, err, rc = task({ url("runs/none/work/bundle.json") })
    assert.are.equal(2, rc)
    assert.is_truthy(err:find(url("runs/none/work/bundle.json"), 1, true), err)
    assert.is_truthy(err:find("NoSuchKey", 1, true), err)
    -- not JSON, and JSON that is not a bundle
    assert(s3:put_object(bucket, "runs/r3/work/bundle.json", "{not json"))
    out, err, rc = task({ url("runs/r3/work/bundle.json") })
    assert.are.equal(2, rc)
    assert.is_truthy(err:find(url("runs/r3/work/bundle.json"), 1, true), err)
    local t = json.decode(assert(get("runs/r1/work/bundle.json")))
    t.results = url("runs/r3/work/")
    t.strategies[1].values = "oops"
    assert(s3:put_object(bucket, "runs/r3/work/bundle.json", json.encode(t)))
    out, err, rc = task({ url("runs/r3/work/bundle.json") })
    assert.are.equal(2, rc)
    assert.is_truthy(err:find(url("runs/r3/work/bundle.json") .. ": strategies[1].values:", 1, true), err)
    out, err, rc = task({ bundle_url, "--strategy", "0000000000" })
    assert.are.equal(2, rc, out)
    assert.is_truthy(err:find(strategies[1].id, 1, true), err)
    assert.are.same({ "runs/r3/work/bundle.json" }, keys_under("runs/r3/"))
    -- usage
    out, err, rc = task({})
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("usage: luabatch task", 1, true), err)
  end)

  describe("with credentials from an ECS-style container endpoint", function()
    local pid, server, port

    setup(function()
      -- The job role's credentials: here the RGW keys, served as the ECS agent does.
      write(dir .. "/ecs.py", ([[
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.headers.get("Authorization") != %q:
            body, status = b'{"code":"AccessDenied","message":"bad token"}', 401
        else:
            body, status = json.dumps({"AccessKeyId": %q, "SecretAccessKey": %q, "Token": "",
                "Expiration": "2099-01-01T00:00:00Z", "RoleArn": "arn:aws:iam::1:role/r"}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
]]):format(ECS_TOKEN, key, secret))
      server = assert(io.popen("echo $$; exec " .. PYTHON .. " " .. sh_quote(dir .. "/ecs.py"), "r"))
      pid = assert(tonumber(server:read("*l")))
      port = assert(tonumber(server:read("*l")), "ECS endpoint did not start")
    end)

    teardown(function()
      if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
      if server then server:close() end
    end)

    local function ecs_env(token)
      return { AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://127.0.0.1:" .. port .. "/v2/credentials/x",
               AWS_CONTAINER_AUTHORIZATION_TOKEN = token or ECS_TOKEN }
    end

    it("runs with the job role's credentials and never prints or uploads one", function()
      local u = upload(model2, "envdump", "r4")
      local out, err, rc = task({ u }, ecs_env())
      assert.are.equal(0, rc, err .. out)
      assert.is_truthy(out:find("AWS_CONTAINER_CREDENTIALS_FULL_URI=", 1, true), out)
      assert.is_truthy(out:find("AWS_CONTAINER_AUTHORIZATION_TOKEN=<redacted>", 1, true), out)
      local body = assert(get("runs/r4/envdump/EMPTY/result.json"))
      local log = assert(get("runs/r4/envdump/EMPTY/output.log"))
      assert.is_truthy(body:find("AWS_CONTAINER_AUTHORIZATION_TOKEN=<redacted>", 1, true), body)
      for _, text in ipairs({ out, err, body, log }) do
        local ok, where = bundle.secret_free(text, { ECS_TOKEN, secret })
        assert.is_true(ok, where)
      end
    end)

    it("exits 2 when the container endpoint refuses (no result)", function()
      local u = upload(model2, "envdump", "r5")
      local out, err, rc = task({ u }, ecs_env("wrong-token-value"))
      assert.are.equal(2, rc, out)
      assert.is_truthy(err:find(u, 1, true), err)
      assert.is_true((bundle.secret_free(err .. out, { "wrong-token-value", ECS_TOKEN })))
      assert.are.same({ "runs/r5/envdump/bundle.json" }, keys_under("runs/r5/"))
    end)
  end)

  it("runs call/trigger stages from the bundle's files, in a private dir removed at the end", function()
    local files = {
      registry = { ["lbt/mod.lua"] = "return { ['f@v1'] = function(a) return { got = a.x * 3, "
        .. "src = debug.getinfo(1, 'S').source } end }\n" },
      workflows = { ["wf-kid"] = "name: wf-kid\ntype: Workflow\njobs:\n  k:\n    stages:\n"
        .. "      - name: c\n        id: c\n        uses: lbt.mod/f@v1\n        with: { x: 5 }\n" } }
    local m = assert(load.string([[
wf-files:
  type: Workflow
  jobs:
    j:
      stages:
        - name: c
          id: c
          uses: lbt.mod/f@v1
          with: { x: 2 }
        - name: t
          id: t
          trigger: wf-kid
]], "f.yml", { getenv = function() return nil end }))
    local t = bundle.build{ run_id = "r7", workflow = m.name, job_id = "j", jobdef = m.jobs.j,
      results = url("runs/r7/j/"), files = files }
    assert(s3:put_object(bucket, "runs/r7/j/bundle.json", bundle.encode(t)))
    local tmp = dir .. "/tmp7"
    assert(os.execute("mkdir -p " .. sh_quote(tmp)))
    local env = { AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret, TMPDIR = tmp,
                  LUABATCH_REGISTRY = dir .. "/none" }
    local out, err, rc = task({ url("runs/r7/j/bundle.json") }, env)
    assert.are.equal(0, rc, err .. out)
    local rec = json.decode(assert(get("runs/r7/j/EMPTY/result.json")))
    assert.are.equal(6, rec.stages.c.outputs.got)
    assert.matches("^@" .. tmp:gsub("%p", "%%%0") .. "/luabatch%-files%-%x+/registry/lbt/mod%.lua$",
      rec.stages.c.outputs.src)
    assert.are.equal(15, rec.stages.t.outputs.jobs.k.stages.c.outputs.got)
    local p = io.popen("ls -A " .. sh_quote(tmp))
    local left = p:read("a")
    p:close()
    assert.are.equal("", left)
    -- without the files, the same job fails here (nothing else provides them)
    t.files = nil
    assert(s3:put_object(bucket, "runs/r8/j/bundle.json", (bundle.encode(t):gsub("runs/r7/", "runs/r8/"))))
    out, err, rc = task({ url("runs/r8/j/bundle.json") }, env)
    assert.are.equal(1, rc, err .. out)
    rec = json.decode(assert(get("runs/r8/j/EMPTY/result.json")))
    assert.matches("no registry module 'lbt.mod'", rec.stages.c.errors.message, 1, true)
    -- bad files: exit 2 naming the field
    local bad = json.decode(bundle.encode(bundle.build{ run_id = "r9", workflow = m.name, job_id = "j",
      jobdef = m.jobs.j, results = url("runs/r9/j/"), files = files }))
    bad.files.registry["../escape.lua"] = "return {}"
    assert(s3:put_object(bucket, "runs/r9/j/bundle.json", json.encode(bad)))
    out, err, rc = task({ url("runs/r9/j/bundle.json") }, env)
    assert.are.equal(2, rc, err .. out)
    assert.is_truthy(err:find("files: registry[\"../escape.lua\"]", 1, true), err)
  end)

  it("stops the stages on SIGTERM, uploads a CANCEL record and exits 1", function()
    local u = upload(model2, "sleepy", "r6")
    local cmd = table.concat({ "env -i", "PATH=" .. sh_quote(os.getenv("PATH")), "HOME=" .. sh_quote(dir),
      "TMPDIR=" .. sh_quote(dir), "AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
      "AWS_ENDPOINT_URL_S3=" .. sh_quote(ep), "AWS_ACCESS_KEY_ID=" .. sh_quote(key),
      "AWS_SECRET_ACCESS_KEY=" .. sh_quote(secret), EXE, "task", sh_quote(u) }, " ")
    local p = assert(io.popen("(" .. cmd .. " 2>&1 & echo \"pid=$!\"; wait $!; echo \"<rc=$?>\")"))
    local pid = tonumber(p:read("l"):match("pid=(%d+)"))
    local seen = {}
    local t0 = core.monotime()
    while true do
      local line = p:read("l")
      assert(line, "the task ended early: " .. table.concat(seen, "\n"))
      seen[#seen + 1] = line
      if line:find("stage nap: start", 1, true) then break end
    end
    core.sleep(0.5)   -- the stage's child process is running now
    os.execute("kill -TERM " .. pid)
    local rest = p:read("a")
    p:close()
    local elapsed = core.monotime() - t0
    assert.is_true(elapsed < 15, "took " .. elapsed .. " s")
    assert.are.equal("1", rest:match("<rc=(%d+)>"), rest)
    assert.is_nil(rest:find("woke", 1, true))
    local rec = json.decode(assert(get("runs/r6/sleepy/EMPTY/result.json")))
    assert.are.equal("CANCEL", rec.status)
    assert.are.equal("SUCCESS", rec.stages.before.status)
    assert.are.equal("CANCEL", rec.stages.nap.status)
    assert.is_nil(rec.stages.after)
    local log = assert(get("runs/r6/sleepy/EMPTY/output.log"))
    assert.is_truthy(log:find("stage nap: CANCEL", 1, true), log)
    assert.is_truthy(log:find("(interrupted)", 1, true), log)
  end)
end)
