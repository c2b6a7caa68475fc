-- `luabatch s3 cp|ls|rm|mb|presign` through the executable against Ceph RGW:
-- output, exit codes (0 ok, 1 failure, 2 usage), errors on stderr naming the
-- operation and target, quiet off a terminal, a progress bar on one.
local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local servers = require "helpers.servers"

local ROOT = os.getenv("PWD")
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end


describe("luabatch s3 CLI against Ceph RGW #integration", function()
  local endpoint, key, secret
  local bucket = "lb-cli-" .. core.hex(core.random_bytes(4))
  local home = os.tmpname()
  local engine               -- the executable has core.s3_upload

  local run                  -- helpers.s3_cli's runner, once RGW is up

  local function api() return require("helpers.s3_cli").client(endpoint, key, secret) end

  lazy_setup(function()
    local reason
    endpoint, key, secret = servers.rgw()
    reason = key
    assert(endpoint, reason)
    run = require("helpers.s3_cli").runner(EXE, endpoint, key, secret, home)
    os.remove(home)
    assert(os.execute("mkdir -p " .. q(home)))
    local p = io.popen(EXE .. " -e 'print(type(require(\"luabatch.core\").s3_upload))'")
    engine = p:read("a"):match("function") ~= nil
    p:close()
  end)

  lazy_teardown(function()
    if endpoint then
      local s = api()
      s:delete_prefix(bucket, "")
      s:delete_bucket(bucket)
    end
    os.execute("rm -rf " .. q(home))
    servers.stop_all()
  end)

  it("makes a bucket, quietly, and again without complaint", function()
    local out, err, rc = run({ "mb", "s3://" .. bucket })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert(api():head_bucket(bucket))
    out, err, rc = run({ "mb", "s3://" .. bucket })
    assert.are.equal(0, rc, err)
  end)

  it("exits 2 on bad usage with the usage text on stderr", function()
    for _, args in ipairs({ {}, { "cp", "only-one" }, { "nope" }, { "ls", "--bogus" },
        { "presign", "s3://b/k", "--expires", "9999999" }, { "rm", "s3://" .. bucket } }) do
      local out, err, rc = run(args)
      assert.are.equal(2, rc, table.concat(args, " ") .. ": " .. err)
      assert.are.equal("", out)
      assert.is_truthy(err:find("luabatch s3", 1, true))
    end
    local out, _, rc = run({ "--help" })
    assert.are.equal(0, rc)
    assert.is_truthy(out:find("cp SRC DST", 1, true))
  end)

  it("exits 2 on a directory without -r, saying so", function()
    local dir = home .. "/a dir"
    assert(os.execute("mkdir -p " .. q(dir)))
    write_file(dir .. "/f.txt", "f\n")
    for _, dst in ipairs({ "s3://" .. bucket .. "/p", "s3://" .. bucket .. "/p/" }) do
      local out, err, rc = run({ "cp", dir, dst })
      assert.are.same({ "", "luabatch s3 cp: " .. dir .. " is a directory (use -r)\n", 2 }, { out, err, rc })
    end
    local n = 0
    for e in api():list(bucket, { prefix = "p" }) do n = n + (e and 1 or 0) end
    assert.are.equal(0, n)                                  -- nothing was sent
  end)

  it("exits 2 on a bucket name carrying a query and sends nothing (the bucket keeps no tags)", function()
    local proxy = assert(require("helpers.faultproxy").start(endpoint))
    local tag = home .. "/tag.xml"
    write_file(tag, "<Tagging><TagSet><Tag><Key>owned</Key><Value>yes</Value></Tag></TagSet></Tagging>")
    local ok, e = pcall(function()
      for _, args in ipairs({ { "cp", tag, "s3://" .. bucket .. "?tagging=/k" },
          { "cp", tag, "s3://" .. bucket .. "?policy=/k" }, { "cp", tag, "s3://" .. bucket .. "?acl=/k" },
          { "cp", "s3://" .. bucket .. "?tagging=/k", home .. "/x" },
          { "rm", "s3://" .. bucket .. "?tagging=/k" },
          { "ls", "s3://" .. bucket .. "?acl=" }, { "mb", "s3://" .. bucket .. "?tagging=" } }) do
        args[#args + 1] = "--endpoint-url=" .. proxy.endpoint
        local out, err, rc = run(args)
        assert.are.equal(2, rc, table.concat(args, " ") .. ": " .. err)
        assert.are.equal("", out)
        assert.is_truthy(err:find("invalid bucket name '" .. bucket .. "?", 1, true), err)
        assert.is_truthy(err:find("3-63 characters", 1, true), err)
      end
      assert.are.equal(0, proxy:stats().requests)
      local _, err, rc = run({ "ls", "s3://" .. bucket, "--endpoint-url=" .. proxy.endpoint })
      assert.are.equal(0, rc, err)
      assert.is_true(proxy:stats().requests > 0)           -- the proxy was in the way
    end)
    proxy:stop()
    assert(ok, e)
    local c = require("luabatch.request").new({ service = "s3", protocol = "rest-xml", region = "us-east-1",
      endpoint = endpoint, config = config.new({ env = {}, region = "us-east-1" }),
      credentials = credentials.new({ access_key = key, secret_key = secret, env = {} }) })
    local _, _, code = c:send({ method = "GET", path = "/" .. bucket, query = { tagging = "" },
      operation = "GetBucketTagging" })
    assert.are.equal("NoSuchTagSet", code)
  end)

  it("lists objects and prefixes, recursively with -r", function()
    local s = api()
    assert(s:put_object(bucket, "ls/a b+ü.txt", "12345"))
    assert(s:put_object(bucket, "ls/sub/x", "1"))
    local out, err, rc = run({ "ls", "s3://" .. bucket .. "/ls/" })
    assert.are.equal(0, rc, err)
    assert.are.equal("", err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(2, #lines)
    assert.is_truthy(lines[1]:find("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d +5 ls/a b%+ü%.txt$"), lines[1])
    assert.is_truthy(lines[2]:find("^ +PRE ls/sub/$"), lines[2])
    out, _, rc = run({ "ls", "-r", "s3://" .. bucket .. "/ls/" })
    assert.are.equal(0, rc)
    assert.is_truthy(out:find(" 1 ls/sub/x\n", 1, true))
    out, _, rc = run({ "ls" })
    assert.are.equal(0, rc)
    assert.is_truthy(out:find("  " .. bucket .. "\n", 1, true))
  end)

  it("fails with exit 1 and an error naming operation and target", function()
    local missing = "lb-cli-missing-" .. core.hex(core.random_bytes(4))
    local out, err, rc = run({ "ls", "s3://" .. missing .. "/p" })
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.is_truthy(err:find("luabatch s3 ls: ListObjectsV2 s3://" .. missing .. "/p: HTTP 404 NoSuchBucket", 1, true), err)
    out, err, rc = run({ "cp", "s3://" .. bucket .. "/no such key", "-" })
    assert.are.equal(1, rc)
    assert.is_truthy(err:find("GetObject s3://" .. bucket .. "/no such key: HTTP 404 NoSuchKey", 1, true), err)
    out, err, rc = run({ "cp", home .. "/does-not-exist", "s3://" .. bucket .. "/x" })
    assert.are.equal(1, rc)
    assert.is_truthy(err:find("does-not-exist", 1, true), err)
  end)

  it("rejects a wrong secret with SignatureDoesNotMatch and never prints it", function()
    local wrong = "Wrong-Secret-For-The-CLI-0123456789"
    local out, err, rc = run({ "ls", "s3://" .. bucket }, { "AWS_SECRET_ACCESS_KEY=" .. wrong })
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.is_truthy(err:find("SignatureDoesNotMatch", 1, true), err)
    assert.is_nil(err:find(wrong, 1, true))
  end)

  it("copies S3 to S3 and S3 to stdout", function()
    local s = api()
    assert(s:put_object(bucket, "cp/src ü", "payload\0bytes"))
    local out, err, rc = run({ "cp", "s3://" .. bucket .. "/cp/src ü", "s3://" .. bucket .. "/cp/dst/" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.equal("payload\0bytes", (s:get_object(bucket, "cp/dst/src ü")))
    out, err, rc = run({ "cp", "s3://" .. bucket .. "/cp/dst/src ü", "-" })
    assert.are.equal(0, rc, err)
    assert.are.equal("payload\0bytes", out)
    out, err, rc = run({ "cp", "-r", "s3://" .. bucket .. "/cp/", "s3://" .. bucket .. "/cp2" })
    assert.are.equal(0, rc, err)
    local keys = {}
    for _, e in ipairs(assert(s:list_all(bucket, { prefix = "cp2/" }))) do keys[#keys + 1] = e.key end
    assert.are.same({ "cp2/dst/src ü", "cp2/src ü" }, keys)
  end)

  it("removes one object, then a prefix with -r", function()
    local s = api()
    for i = 1, 5 do assert(s:put_object(bucket, "rm/d/k" .. i .. " +", "x")) end
    assert(s:put_object(bucket, "rm/dx", "not under rm/d/"))
    local out, err, rc = run({ "rm", "s3://" .. bucket .. "/rm/d/k1 +" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.equal(4, #assert(s:list_all(bucket, { prefix = "rm/d/" })))
    out, err, rc = run({ "rm", "-r", "s3://" .. bucket .. "/rm/d" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({}, assert(s:list_all(bucket, { prefix = "rm/d/" })))
    assert(s:head_object(bucket, "rm/dx"))       -- "rm/d" means the directory rm/d/
  end)

  it("presigns a URL curl can fetch", function()
    assert(api():put_object(bucket, "ps/a b", "presigned body"))
    local out, err, rc = run({ "presign", "--expires", "120", "s3://" .. bucket .. "/ps/a b" })
    assert.are.equal(0, rc, err)
    local url = out:match("^(%S+)\n$")
    assert.is_truthy(url and url:find("X-Amz-Expires=120", 1, true), out)
    local p = io.popen("curl -sS --max-time 60 --noproxy '*' " .. q(url))
    assert.are.equal("presigned body", p:read("a"))
    p:close()
  end)

  it("uploads and downloads files and directories, quietly off a terminal", function()
    if not engine then
      pending("core.s3_upload is not in this build yet")
      return
    end
    local src = home .. "/src"
    assert(os.execute("mkdir -p " .. q(src .. "/sub dir")))
    local files = { ["a.bin"] = string.rep(core.random_bytes(256), 280), ["sub dir/b ü+.txt"] = "bee\n", ["empty"] = "" }
    for name, data in pairs(files) do write_file(src .. "/" .. name, data) end

    local out, err, rc = run({ "cp", src .. "/a.bin", "s3://" .. bucket .. "/up/" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.equal(files["a.bin"], (api():get_object(bucket, "up/a.bin")))
    out, err, rc = run({ "cp", "s3://" .. bucket .. "/up/a.bin", home .. "/down.bin" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.equal(core.sha256(files["a.bin"]), core.sha256(read_file(home .. "/down.bin")))

    out, err, rc = run({ "cp", "-r", src, "s3://" .. bucket .. "/tree" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    out, err, rc = run({ "cp", "-r", "s3://" .. bucket .. "/tree/", home .. "/back" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    for name, data in pairs(files) do
      assert.are.equal(data, read_file(home .. "/back/" .. name), name)
    end

    write_file(home .. "/stdin.txt", "from stdin\n")
    out, err, rc = run({ "cp", "-", "s3://" .. bucket .. "/up/stdin.txt" }, nil, home .. "/stdin.txt")
    assert.are.equal(0, rc, err)
    assert.are.equal("from stdin\n", (api():get_object(bucket, "up/stdin.txt")))
  end)

  it("copies a tree of many small files at once both ways, with an N of M line on a terminal", function()
    if not engine then
      pending("core.s3_upload is not in this build yet")
      return
    end
    assert.are.equal(0, select(3, run({ "mb", "s3://" .. bucket })))   -- also when run alone
    local src = home .. "/many"
    local want = {}
    for i = 1, 60 do
      local rel = ("d%d/sub %d/f%d.bin"):format(i % 3, i % 5, i)
      assert(os.execute("mkdir -p " .. q(src .. "/" .. rel:match("^(.*)/"))))
      want[rel] = string.rep(core.random_bytes(131), i)
      write_file(src .. "/" .. rel, want[rel])
    end
    local out, err, rc = run({ "cp", "-r", "--concurrency", "8", src, "s3://" .. bucket .. "/many" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    local n = 0
    for e in api():list(bucket, { prefix = "many/" }) do
      n = n + 1
      assert.are.equal(want[e.key:sub(6)], (api():get_object(bucket, e.key)), e.key)
    end
    assert.are.equal(60, n)
    out, err, rc = run({ "cp", "-r", "s3://" .. bucket .. "/many/", home .. "/many-back" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    for rel, data in pairs(want) do assert.are.equal(data, read_file(home .. "/many-back/" .. rel), rel) end
    -- on a terminal: one overall line, then a summary
    local py = home .. "/run_many_on_pty.py"
    write_file(py, "import os, pty, subprocess, sys\nm, s = pty.openpty()\n"
      .. "p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=s)\n"
      .. "os.close(s)\nbuf = b''\nwhile True:\n    try:\n        d = os.read(m, 4096)\n    except OSError:\n"
      .. "        break\n    if not d:\n        break\n    buf += d\n"
      .. "sys.stdout.write('RC=%d\\n' % p.wait() + buf.decode('utf-8', 'replace'))\n")
    local env = "env -i PATH=/usr/bin:/bin HOME=" .. q(home) .. " NO_PROXY=127.0.0.1,localhost,.localhost"
      .. " AWS_ENDPOINT_URL_S3=" .. q(endpoint) .. " AWS_ACCESS_KEY_ID=" .. q(key)
      .. " AWS_SECRET_ACCESS_KEY=" .. q(secret) .. " AWS_REGION=us-east-1 "
    local p = io.popen("timeout 300 " .. env .. "/usr/bin/python3 " .. q(py) .. " " .. EXE .. " s3 cp -r "
      .. q(src) .. " s3://" .. bucket .. "/many2")
    local res = p:read("a")
    p:close()
    assert.is_truthy(res:find("RC=0\n", 1, true), res)
    assert.is_truthy(res:find("60 of 60 files, ", 1, true), res)
    assert.is_truthy(res:find("upload: 60 of 60 files (", 1, true), res)
    assert(api():delete_prefix(bucket, "many"))
  end)

  it("draws a progress bar with bytes, rate and ETA on a terminal", function()
    if not engine then
      pending("core.s3_upload is not in this build yet")
      return
    end
    local src = home .. "/big.bin"
    assert(os.execute("head -c 33554432 /dev/zero > " .. q(src)))
    -- stderr on a pseudo-terminal, stdout a pipe
    local script = [[
import os, pty, subprocess, sys
m, s = pty.openpty()
env = dict(os.environ)
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=s, env=env)
os.close(s)
buf = b""
while True:
    try:
        d = os.read(m, 4096)
    except OSError:
        break
    if not d:
        break
    buf += d
out = p.stdout.read()
rc = p.wait()
sys.stdout.write("RC=%d\nOUT=%r\n" % (rc, out))
sys.stdout.write(buf.decode("utf-8", "replace"))
]]
    local py = home .. "/run_on_pty.py"
    write_file(py, script)
    local env = "env -i PATH=/usr/bin:/bin HOME=" .. q(home) .. " NO_PROXY=127.0.0.1,localhost,.localhost"
      .. " AWS_ENDPOINT_URL_S3=" .. q(endpoint) .. " AWS_ACCESS_KEY_ID=" .. q(key)
      .. " AWS_SECRET_ACCESS_KEY=" .. q(secret) .. " AWS_REGION=us-east-1 "
    local p = io.popen("timeout 300 " .. env .. "/usr/bin/python3 " .. q(py) .. " " .. EXE .. " s3 cp " .. q(src)
      .. " s3://" .. bucket .. "/progress/big.bin")
    local res = p:read("a")
    p:close()
    assert.is_truthy(res:find("RC=0\n", 1, true), res)
    assert.is_truthy(res:find("OUT=b''", 1, true), res)
    assert.is_truthy(res:find("upload: " .. src .. " -> s3://" .. bucket .. "/progress/big.bin (32.0 MiB", 1, true), res)
    assert.is_truthy(res:find("MiB/s", 1, true), res)
    assert(api():delete_object(bucket, "progress/big.bin"))
    local _, err, rc = run({ "cp", "-q", src, "s3://" .. bucket .. "/progress/q.bin" })
    assert.are.same({ "", 0 }, { err, rc })
    assert(api():delete_object(bucket, "progress/q.bin"))
  end)
end)
