-- examples/nginx GET /objects/KEY against Ceph RGW: a signed, streaming S3
-- download proxy (examples/nginx/lua/objects.lua + objects.conf) in a
-- private nginx.  Small objects with awkward keys, Range, HEAD, the error
-- mapping (404/403/405/400), and a 1 GiB object that arrives intact while
-- the worker's resident memory stays flat.
--
-- nginx runs the same way under both test interpreters (only busted
-- differs), so under Lua 5.4 this spec is pending: it runs in
-- integration-luajit.
local core = require "luabatch.core"
local s3mod = require "luabatch.s3"
local servers = require "helpers.servers"
local nginx = require "helpers.nginx"

local BIG = 1024 * 1024 * 1024
local RSS_GROWTH_MAX = 64 * 1024   -- KiB

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- curl: status, body (and headers with -i when head = true)
local function fetch(url, args)
  local out = sh("curl -s --max-time 30 -w '\\n%{http_code}' " .. (args or "") .. " " .. q(url))
  local body, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), body
end

local function vmrss(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local SMALL = {
  ["hello.txt"] = "hello from RGW\n",
  ["dir/with space.txt"] = "spaces",
  ["dir/sub dir/ünïcödé 日本語 ✓"] = "utf-8 key",
  ["plus+sign"] = "plus",
  ["percent%25%literal"] = "percent",
  ["double//slash"] = "two slashes",
  ["emoji 🚀"] = "rocket",
}

local skip = (_VERSION == "Lua 5.4") and "nginx specs run in integration-luajit"

describe("examples/nginx GET /objects/KEY against Ceph RGW #integration", function()
  local endpoint, key, secret, s3, ng, why
  local bucket = "lb-ngxobj-" .. core.hex(core.random_bytes(4))
  local tmp = os.tmpname()

  local function example_opts(env_over)
    local env = {
      AWS_ENDPOINT_URL_S3 = endpoint, AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret,
      AWS_REGION = "us-east-1", LUABATCH_BUCKET = bucket,
    }
    for k, v in pairs(env_over or {}) do env[k] = v end
    return {
      workers = 1, env = env,
      lua_path = "@ROOT@/examples/nginx/lua/?.lua;@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;"
        .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;",
      server_extra = "include @ROOT@/examples/nginx/objects.conf;",
    }
  end

  setup(function()
    if skip then return end
    local ok
    ok, why = nginx.available()
    if not ok then return end
    endpoint, key = servers.rgw()
    if not endpoint then why = key return end
    key, secret = "RGWTESTKEY", "RGWTESTSECRET"
    s3 = s3mod.new({ endpoint = endpoint, region = "us-east-1", addressing = "path",
      credentials = require("luabatch.credentials").static({ access_key = key, secret_key = secret }) })
    assert(s3:create_bucket(bucket))
    for k, body in pairs(SMALL) do assert(s3:put_object(bucket, k, body)) end
    local err
    ng, err = nginx.start(example_opts())
    assert(ng, err)
  end)

  teardown(function()
    if ng then ng.stop() end
    if s3 then s3:delete_prefix(bucket, "") s3:delete_bucket(bucket) end
    os.remove(tmp)
    servers.stop_all()
  end)

  local function ready()
    if skip then pending(skip) return false end
    if not ng then pending(why or "nginx or RGW not available") return false end
    return true
  end

  local function url(k) return ng.url .. "/objects/" .. s3mod.encode_key(k) end

  it("serves small objects with awkward keys byte for byte", function()
    if not ready() then return end
    for k, body in pairs(SMALL) do
      local status, got = fetch(url(k))
      assert.equal(200, status, k)
      assert.equal(body, got, k)
    end
  end)

  it("passes Range through (206 + Content-Range) and answers HEAD", function()
    if not ready() then return end
    local status, got = fetch(url("hello.txt"), "-i -H 'Range: bytes=6-9'")
    assert.equal(206, status)
    assert.matches("[Cc]ontent%-[Rr]ange: bytes 6%-9/15", got)
    assert.equal("from", got:match("\r\n\r\n(.*)$"))
    status, got = fetch(url("hello.txt"), "-I")
    assert.equal(200, status)
    assert.matches("[Cc]ontent%-[Ll]ength: 15", got)
  end)

  it("maps a missing key to 404 NoSuchKey, naming s3://bucket/key", function()
    if not ready() then return end
    local status, got = fetch(url("no/such key"))
    assert.equal(404, status)
    local j = require("cjson").decode(got)
    assert.equal("NoSuchKey", j.error)
    assert.equal("no such object: s3://" .. bucket .. "/no/such key", j.message)
  end)

  it("rejects other methods (405) and dot segments (400) before calling S3", function()
    if not ready() then return end
    local status, got = fetch(url("hello.txt"), "-X PUT --data x")
    assert.equal(405, status)
    assert.matches("MethodNotAllowed", got)
    status, got = fetch(ng.url .. "/objects/a/%2E%2E/hello.txt")
    assert.equal(400, status)
    assert.matches("InvalidKey", got)
  end)

  it("maps a wrong secret to 403 AccessDenied without leaking it", function()
    if not ready() then return end
    local bad = assert(nginx.start(example_opts({ AWS_SECRET_ACCESS_KEY = "wrong-secret-xyz" })))
    finally(function() bad.stop() end)
    local status, got = fetch(bad.url .. "/objects/hello.txt")
    assert.equal(403, status)
    assert.matches("AccessDenied", got)
    assert.is_nil(got:find("wrong%-secret"))
    assert.is_nil(bad.error_log():find("wrong%-secret"))
  end)

  it("streams a 1 GiB object intact while the worker's RSS stays flat", function()
    if not ready() then return end
    local src = tmp .. ".big"
    finally(function() os.remove(src) os.remove(tmp .. ".sha") os.remove(tmp .. ".done") end)
    assert(os.execute("head -c " .. BIG .. " /dev/urandom > " .. q(src)))
    local want = sh("sha256sum " .. q(src)):match("^(%x+)")
    assert(s3:upload_file(src, bucket, "big/one gib.bin", { part_size = 64 * 1024 * 1024 }))
    os.remove(src)

    local worker = assert(ng.worker_pids()[1])
    -- warm the worker (first request loads the Lua modules)
    assert.equal(200, (fetch(url("hello.txt"))))
    local rss0 = assert(vmrss(worker))
    os.execute(("(curl -s --max-time 300 %s | sha256sum > %s; touch %s) >/dev/null 2>&1 &")
      :format(q(url("big/one gib.bin")), q(tmp .. ".sha"), q(tmp .. ".done")))
    local peak, samples = rss0, 0
    local deadline = core.monotime() + 300
    while not io.open(tmp .. ".done") and core.monotime() < deadline do
      local r = vmrss(worker)
      if r then
        samples = samples + 1
        if r > peak then peak = r end
      end
      core.sleep(0.05)
    end
    local got = (io.open(tmp .. ".sha") and io.open(tmp .. ".sha"):read("*a") or ""):match("^(%x+)")
    assert.equal(want, got)
    assert.is_true(samples >= 3, "too few RSS samples: " .. samples)
    assert.is_true(peak - rss0 < RSS_GROWTH_MAX,
      ("worker RSS grew %d KiB (from %d KiB) during a 1 GiB download"):format(peak - rss0, rss0))
    if os.getenv("LUABATCH_TEST_VERBOSE") then
      io.stderr:write(("\nRSS %d KiB -> peak %d KiB over %d samples\n"):format(rss0, peak, samples))
    end
    s3:delete_object(bucket, "big/one gib.bin")
  end)
end)
