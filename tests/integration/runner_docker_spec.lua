-- runs-on docker through the real `luabatch` executable: each strategy a
-- container of the task image (make image: luabatch:latest) running
-- `luabatch task` against Ceph RGW.  Needs a Docker daemon at DOCKER_HOST
-- with that image (tests/integration/container_e2e.sh provides both);
-- pending without one.
--   (1) examples/quickstart.yml gives the same context as --runs-on local
--   (2) a failing stage is the job's FAILED record from the container; an
--       image the daemon lacks and a bad with: field name what is wrong
--   (3) SIGINT: the container gets SIGTERM, the run ends CANCEL, no
--       container is left
local core = require "luabatch.core"
local cjson = require "cjson.safe"
local servers = require "helpers.servers"
local aws_peers = require "helpers.aws_peers"

local ROOT = os.getenv("PWD")
local SOCK = (os.getenv("DOCKER_HOST") or ""):match("^unix://(/.+)$")
local IMAGE = os.getenv("LUABATCH_TEST_IMAGE") or "luabatch:latest"

local function docker(method, path)
  local r = core.http_request({ method = method, url = "http://docker/v1.41" .. path, unix_socket = SOCK })
  return r and r.status, r and cjson.decode(r.body)
end

local function usable()
  if not SOCK then return false end
  local st = docker("GET", "/images/" .. IMAGE .. "/json")
  return st == 200
end

if rawget(_G, "jit") and not os.getenv("LUABATCH_TEST_EXE") or not usable() then
  describe("runs-on docker #integration", function()
    pending("needs DOCKER_HOST with " .. IMAGE .. " (tests/integration/container_e2e.sh; Lua 5.4 executable)")
  end)
  return
end

describe("runs-on docker #integration", function()
  local ep, key, secret, bucket, dir, env

  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end

  local function spawn(args)
    local argv = { aws_peers.exe() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return assert(core.proc_spawn({ argv = argv, env = env, cwd = dir, stdin = "" }))
  end

  local function run(args)
    local r = assert(aws_peers.wait(spawn(args), 120), "luabatch did not end within 120 s")
    return r.stdout or "", r.stderr or "", r.exit
  end

  local function strip(v)
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do if k ~= "info" then out[k] = strip(x) end end
    return out
  end

  local function our_containers()
    local _, list = docker("GET", "/containers/json?all=1")
    local n = 0
    for _, c in ipairs(list or {}) do
      if c.Labels and c.Labels["luabatch.job"] then n = n + 1 end
    end
    return n
  end

  setup(function()
    ep, key, secret = assert(servers.rgw())
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    bucket = "lb-docker-" .. core.hex(core.random_bytes(4))
    env = { PATH = os.getenv("PATH"), HOME = dir, LUABATCH_HOME = dir .. "/home", LANG = "C.UTF-8",
      TMPDIR = "/tmp", DOCKER_HOST = "unix://" .. SOCK, AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret,
      AWS_REGION = "us-east-1", AWS_ENDPOINT_URL_S3 = ep, AWS_EC2_METADATA_DISABLED = "true",
      AWS_CONFIG_FILE = "/dev/null", AWS_SHARED_CREDENTIALS_FILE = "/dev/null" }
    local _, err, code = run({ "s3", "mb", "s3://" .. bucket })
    assert(code == 0, err)
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
    servers.stop_all()
  end)

  it("(1) examples/quickstart.yml gives the same context as --runs-on local", function()
    local lout, lerr, lcode = run({ "run", ROOT .. "/examples/quickstart.yml", "--runs-on", "local", "--json" })
    assert.equal(0, lcode, lerr)
    local out, err, code = run({ "run", ROOT .. "/examples/quickstart.yml", "--runs-on", "docker",
      "--with", "s3_bucket=" .. bucket, "--with", "image=" .. IMAGE, "--json" })
    assert.equal(0, code, err)
    assert.truthy(err:find("running on docker", 1, true), err)
    assert.same(strip(cjson.decode(lout)), strip(cjson.decode(out)))
    assert.equal(0, our_containers())
  end)

  it("(2) a failing stage, a missing image and a bad with: field are the job's FAILED record", function()
    local f = write("fail.yml", ([[
type: Workflow
name: docker-fail
jobs:
  bad:
    runs-on: {type: docker, with: {s3_bucket: %s, cpus: 1, memory: 256}}
    stages:
      - {name: Say, id: say, bash: "echo inside-$(id -u)-$(pwd)"}
      - {name: Boom, bash: "echo going down >&2; exit 3"}
]]):format(bucket))
    local out, err, code = run({ "run", f, "--json" })
    assert.equal(1, code, err)
    local ctx = assert(cjson.decode(out), out)
    local job = ctx.jobs.bad
    assert.equal("FAILED", job.status)
    -- ran as the image's user (10001) in its /work
    assert.equal("inside-10001-/work", job.stages.say.outputs.stdout:gsub("%s+$", ""))
    assert.truthy(cjson.encode(job.errors):find("'Boom', failed", 1, true), cjson.encode(job.errors))
    out, err, code = run({ "run", f, "--json", "--with", "image=luabatch-none:missing" })
    assert.equal(1, code, err)
    assert.truthy(err:find("luabatch-none:missing", 1, true), err)
    assert.truthy(err:find("No such image", 1, true), err)
    f = write("badwith.yml", ([[
type: Workflow
name: docker-badwith
jobs:
  j:
    runs-on: {type: docker, with: {s3_bucket: %s, volumes: ["relative:/x"]}}
    stages:
      - {name: S, bash: "true"}
]]):format(bucket))
    out, err, code = run({ "run", f })
    assert.are_not.equal(0, code)
    assert.truthy(err:find("with.volumes[1]", 1, true), err)
    assert.equal(0, our_containers())
  end)

  it("(2b) a registry module holding this client's secret key is refused before the bundle is uploaded", function()
    local reg = dir .. "/registry"
    os.execute("mkdir -p " .. reg)
    local m = assert(io.open(reg .. "/leaky.lua", "w"))
    m:write("-- " .. secret .. "\nreturn { [\"go@x\"] = function() return { ok = true } end }\n")
    m:close()
    local f = write("leaky.yml", ([[
type: Workflow
name: docker-leaky
jobs:
  j:
    runs-on: {type: docker, with: {s3_bucket: %s}}
    stages:
      - {name: Call, uses: leaky/go@x}
]]):format(bucket))
    env.LUABATCH_REGISTRY = reg
    local out, err, code = run({ "run", f, "--json" })
    env.LUABATCH_REGISTRY = nil
    assert.equal(1, code, err)
    assert.truthy((out .. err):find("refusing to upload", 1, true), out .. err)
    assert.is_nil((out .. err):find(secret, 1, true))
    assert.equal(0, our_containers())
  end)

  it("(3) SIGINT stops the container: the run ends CANCEL, nothing is left", function()
    local f = write("long.yml", ([[
type: Workflow
name: docker-long
jobs:
  nap:
    runs-on: {type: docker, with: {s3_bucket: %s}}
    stages:
      - {name: Nap, bash: "echo napping; sleep 60"}
]]):format(bucket))
    local p = spawn({ "run", f, "--json" })
    local up = aws_peers.wait_until(function() return our_containers() > 0 or nil end, 30)
    assert.truthy(up, "no container within 30 s")
    core.sleep(1)
    assert(os.execute("kill -INT " .. p:pid()))
    local r = assert(aws_peers.wait(p, 30), "the client did not end within 30 s of SIGINT")
    assert.are_not.equal(0, r.exit)
    local ctx = assert(cjson.decode(r.stdout), r.stdout .. r.stderr)
    assert.equal("CANCEL", ctx.jobs.nap.status, r.stdout)
    assert.equal(0, our_containers())
  end)
end)
