-- The rows of the README's fault matrix that s3_faults_spec.lua does not
-- cover: streamed GETs resumed with a Range, write failures (/dev/full, a
-- full or read-only filesystem), a 20-minute clock skew and expired
-- credentials for the transfer engine, and what a SIGKILLed client leaves
-- (an open multipart upload, a .lbpart file) removed by `s3 abort-uploads`.
-- Ceph RGW behind tests/servers/faultproxy.py.  Each case checks the data
-- (SHA-256 against the source), that nothing is left behind, and the error.
local core = require "luabatch.core"
local servers = require "helpers.servers"
local faultproxy = require "helpers.faultproxy"

local MiB = 1024 * 1024
local EXE = "build/lua5.4/bin/luabatch"      -- embeds Lua 5.4: its cases run there only

local files = require "helpers.files"
local sh_quote, sh, run, read_all, ls = files.sh_quote, files.sh, files.run, files.read_all, files.ls
local sha256_file = files.sha256

local function exe_ok()
  return not rawget(_G, "jit") and io.open(EXE, "rb") ~= nil
end

describe("fault matrix: streams, write failures, skew, killed clients #integration", function()
  local endpoint, key, secret, proxy, work
  local bucket = "lb-matrix-" .. core.hex(core.random_bytes(4))
  local src, src_sha                      -- 3 MiB + 5 B, stored as "obj"

  local rgw                               -- the bucket, seen straight from RGW
  local function open_uploads(prefix) return rgw:open_uploads(prefix) end

  local function client(extra)
    local o = { endpoint = proxy.endpoint, region = "us-east-1", addressing = "path", read_timeout = 5,
      credentials = require("luabatch.credentials").new({ access_key = key, secret_key = secret, env = {} }) }
    for k, v in pairs(extra or {}) do o[k] = v end
    return require("luabatch.s3").new(o)
  end

  local function env_cmd(ep)
    return ("env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_CONFIG_FILE=/dev/null "
      .. "AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_ENDPOINT_URL=%s AWS_ACCESS_KEY_ID=%s "
      .. "AWS_SECRET_ACCESS_KEY=%s AWS_REGION=us-east-1 "):format(ep, key, secret)
  end

  local function fresh_dir()
    local d = work .. "/d" .. core.hex(core.random_bytes(4))
    assert(os.execute("mkdir " .. sh_quote(d)))
    return d
  end

  -- GETs of `k` in the proxy's log, in order: { range = header | nil, fault = name | nil }
  local function gets(k)
    local out = {}
    for _, e in ipairs(proxy:stats().log) do
      if e.method == "GET" and e.target:find("/" .. k, 1, true) then
        out[#out + 1] = { range = e.range ~= require("cjson").null and e.range or nil,
          fault = e.fault ~= require("cjson").null and e.fault or nil }
      end
    end
    return out
  end

  lazy_setup(function()
    endpoint, key, secret = servers.rgw()
    assert(endpoint, key)
    proxy = assert(faultproxy.start(endpoint))
    work = files.mkdtemp()
    src = work .. "/src.bin"
    assert(os.execute(("head -c %d /dev/urandom > %s"):format(3 * MiB + 5, sh_quote(src))))
    src_sha = sha256_file(src)
    rgw = require("helpers.rgw_bucket").create(endpoint, key, secret, bucket)
    assert.are.equal(200, rgw:direct("PUT", "/" .. bucket .. "/obj", { body = read_all(src) }).status)
  end)

  lazy_teardown(function()
    if proxy then proxy:stop() end
    if rgw then rgw:purge() end
    if work then os.execute("rm -rf " .. sh_quote(work)) end
    servers.stop_all()
  end)

  before_each(function() proxy:clear() end)

  describe("streamed GET (s3 cp s3://B/K -)", function()
    it("resumes from the last byte written after a reset, a 503, a 500 and a stall: every byte once", function()
      local m = { method = "GET", path_contains = "/obj" }
      proxy:add({ match = m, action = "reset_response_after", bytes = MiB })
      proxy:add({ match = m, action = "status", status = 503, code = "SlowDown" })
      proxy:add({ match = m, action = "status", status = 500, code = "InternalError" })
      proxy:add({ match = m, action = "stall", bytes = 512 * 1024, stall_seconds = 10 })
      local out = work .. "/stream.bin"
      local f = assert(io.open(out, "wb"))
      local res, msg = client():get_stream(bucket, "obj", function(c) return f:write(c) end,
        { backoff = function() return 0.05 end })
      f:close()
      assert.is_table(res, msg)
      assert.are.equal(src_sha, sha256_file(out))
      assert.are.equal(3 * MiB + 5, res.bytes)
      local g = gets("obj")
      assert.are.equal(5, #g)
      assert.is_nil(g[1].range)
      local first = tonumber(g[2].range:match("^bytes=(%d+)%-$"))
      assert.is_true(first > 0 and first <= MiB, g[2].range)
      assert.are.equal(g[2].range, g[3].range)                  -- nothing came with the 503
      assert.are.equal(g[2].range, g[4].range)
      assert.is_true(tonumber(g[5].range:match("^bytes=(%d+)%-$")) > first)
      assert.are.equal(4, res.resumed)
    end)

    it("gives up after max_attempts failures in a row, saying how far it got", function()
      proxy:add({ match = { method = "GET", path_contains = "/obj" }, action = "status", status = 503,
        code = "SlowDown", times = 0 })
      local n = 0
      local res, msg, code = client():get_stream(bucket, "obj", function(c) n = n + #c return true end,
        { max_attempts = 3, backoff = function() return 0.05 end })
      assert.is_nil(res)
      assert.are.equal("SlowDown", code)
      assert.is_truthy(msg:find("s3://" .. bucket .. "/obj", 1, true), msg)
      assert.are.equal(3, #gets("obj"))
      assert.are.equal(0, n)
    end)

    it("stops at the first failed write, naming the sink and the errno", function()
      local res, msg, code = client():get_stream(bucket, "obj",
        function() return nil, "No space left on device", 28 end, { sink_name = "stdout" })
      assert.is_nil(res)
      assert.are.equal("EWRITE", code)
      assert.is_truthy(msg:find("write stdout: No space left on device (errno 28)", 1, true), msg)
      assert.are.equal(1, #gets("obj"))
    end)

    it("`s3 cp s3://B/K - > /dev/full` exits 1 with the reason; a reset mid-stream still gives every byte", function()
      if not exe_ok() then pending("runs through " .. EXE .. " (Lua 5.4)") return end
      local errf = work .. "/full.err"
      local rc = run(env_cmd(proxy.endpoint) .. EXE .. " s3 cp s3://" .. bucket .. "/obj - >/dev/full 2>"
        .. sh_quote(errf))
      local err = read_all(errf) or ""
      assert.are.equal(1, rc, err)
      assert.is_truthy(err:find("write stdout", 1, true), err)
      assert.is_truthy(err:find("errno 28", 1, true), err)
      assert.is_truthy(err:find("/obj", 1, true), err)
      proxy:add({ match = { method = "GET", path_contains = "/obj" }, action = "reset_response_after", bytes = MiB })
      local out = work .. "/cli-stream.bin"
      rc = run(env_cmd(proxy.endpoint) .. EXE .. " s3 cp s3://" .. bucket .. "/obj - >" .. sh_quote(out) .. " 2>"
        .. sh_quote(errf))
      assert.are.equal(0, rc, read_all(errf))
      assert.are.equal(src_sha, sha256_file(out))
    end)
  end)

  it("`luabatch run wf.yml --json > /dev/full` exits 1 naming stdout and the errno", function()
    if not exe_ok() then pending("runs through " .. EXE .. " (Lua 5.4)") return end
    local errf = work .. "/run.err"
    local rc = run(EXE .. " run examples/quickstart.yml --json >/dev/full 2>" .. sh_quote(errf))
    local err = read_all(errf) or ""
    assert.are.equal(1, rc, err)
    assert.is_truthy(err:find("write stdout: No space left on device (errno 28)", 1, true), err)
  end)

  it("a download (or a bash stage's script) into a full or read-only filesystem fails naming the path; nothing left", function()
    local mnt = work .. "/small-fs"
    assert(os.execute("mkdir " .. sh_quote(mnt)))
    if run("mount -t tmpfs -o size=1m tmpfs " .. sh_quote(mnt) .. " 2>/dev/null") ~= 0 then
      pending("cannot mount a tmpfs here (not root?)")
      return
    end
    finally(function() os.execute("umount " .. sh_quote(mnt)) end)
    local dest = mnt .. "/out.bin"
    local res, msg, code = client():download_file(bucket, "obj", dest)
    assert.is_nil(res)
    assert.is_truthy(msg:find(mnt, 1, true) or msg:find("obj", 1, true), msg)
    assert.is_truthy(msg:find("No space left on device", 1, true) or msg:find("ENOSPC", 1, true), msg)
    assert.is_string(code)
    assert.are.same({}, ls(mnt))
    assert.are.equal(0, run("mount -o remount,ro " .. sh_quote(mnt)))
    res, msg = client():download_file(bucket, "obj", dest)
    assert.is_nil(res)
    assert.is_truthy(msg:find(mnt, 1, true), msg)
    assert.is_truthy(msg:find("Read-only file system", 1, true), msg)
    assert.are.same({}, ls(mnt))
    if not exe_ok() then return end
    -- a bash stage whose script cannot be written whole fails; it never runs half a script
    assert.are.equal(0, run("mount -o remount,rw " .. sh_quote(mnt)))
    run("head -c 2M /dev/zero > " .. sh_quote(mnt .. "/fill") .. " 2>/dev/null")
    local wf = work .. "/script.yml"
    files.write_all(wf, "type: Workflow\nname: script\njobs:\n  j:\n    stages:\n"
      .. "      - {name: Script, id: s, bash: \"echo hello\"}\n")
    local out = sh("TMPDIR=" .. sh_quote(mnt) .. " " .. EXE .. " run " .. sh_quote(wf) .. " --json 2>&1")
    assert.is_truthy(out:find("cannot write the script " .. mnt .. "/luabatch-", 1, true), out)
    assert.is_truthy(out:find("No space left on device (errno 28)", 1, true), out)
    assert.are.same({ "fill" }, ls(mnt))
  end)

  it("a 20-minute clock skew is corrected for file uploads, downloads, streams and presigned URLs", function()
    -- this machine's clock 20 minutes fast, as the request path and the engine see it
    local fast = setmetatable({ now = function() return core.now() + 1200 end }, { __index = core })
    local res, msg = client({ core = fast }):upload_file(src, bucket, "skewed.bin", { part_size = 5 * MiB })
    assert.is_table(res, msg)
    local dest = work .. "/skewed.out"
    res, msg = client({ core = fast }):download_file(bucket, "skewed.bin", dest)   -- a HEAD first: 403, no code
    assert.is_table(res, msg)
    assert.are.equal(src_sha, sha256_file(dest))
    local n = 0
    res, msg = client({ core = fast }):get_stream(bucket, "skewed.bin", function(c) n = n + #c return true end)
    assert.is_table(res, msg)
    assert.are.equal(3 * MiB + 5, n)
    -- a presigned URL (60 s) signed by a clock 20 minutes slow would have expired before it was
    -- made; from a client that has measured the skew it is valid
    local slow = setmetatable({ now = function() return core.now() - 1200 end }, { __index = core })
    local p = client({ core = slow })
    assert(p:head_object(bucket, "skewed.bin"))
    local r = assert(core.http_request({ url = assert(p:presign("GET", bucket, "skewed.bin", 60)), timeout = 30 }))
    assert.are.equal(200, r.status, r.body)
    local refused = 0                    -- RGW refused the skewed signatures, once per client
    for _, e in ipairs(proxy:stats().log) do if e.status == 403 then refused = refused + 1 end end
    assert.is_true(refused >= 3, "no RequestTimeTooSkewed seen: is the skew simulated?")
    assert.are.same({}, open_uploads("skewed"))
  end)

  it("expired credentials mid-transfer: the part and the GET answered ExpiredToken are sent again", function()
    proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" }, action = "status", status = 400,
      code = "ExpiredToken", message = "The provided token has expired." })
    proxy:add({ match = { method = "GET", path_contains = "/obj" }, action = "status", status = 400,
      code = "ExpiredToken", message = "The provided token has expired." })
    local s = client()
    local six = work .. "/six.bin"               -- two parts
    assert(os.execute(("head -c %d /dev/urandom > %s"):format(6 * MiB, sh_quote(six))))
    local res, msg = s:upload_file(six, bucket, "expired.bin", { part_size = 5 * MiB, multipart_threshold = MiB })
    assert.is_table(res, msg)
    assert.are.same({}, open_uploads("expired"))
    local body
    body, msg = s:get_object(bucket, "obj")
    assert.is_string(body, msg)
    assert.are.equal(3 * MiB + 5, #body)
    assert.are.equal(2, #proxy:faults("status"))
  end)

  it("a client SIGKILLed mid-upload and mid-download: abort-uploads removes the upload and the .lbpart file", function()
    if not exe_ok() then pending("runs through " .. EXE .. " (Lua 5.4)") return end
    local big = work .. "/big.bin"
    assert(os.execute(("head -c %d /dev/urandom > %s"):format(20 * MiB, sh_quote(big))))   -- multipart
    proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" }, action = "stall", stall_seconds = 60,
      times = 0 })
    proxy:add({ match = { method = "GET", path_contains = "/obj" }, action = "stall", bytes = MiB,
      stall_seconds = 60, times = 0 })
    local dir = fresh_dir()
    local function start(args)
      return tonumber(sh(env_cmd(proxy.endpoint) .. EXE .. " s3 cp -q --part-size 5M " .. args
        .. " >/dev/null 2>&1 & echo $!"))
    end
    local up = start(sh_quote(big) .. " s3://" .. bucket .. "/killed/big.bin")
    local down = start("s3://" .. bucket .. "/obj " .. sh_quote(dir .. "/obj.bin"))
    local function until_true(pred)
      for _ = 1, 200 do
        if pred() then return true end
        core.sleep(0.1)
      end
      return false
    end
    assert.is_true(until_true(function() return #open_uploads("killed/") == 1 end))
    assert.is_true(until_true(function() return (ls(dir)[1] or ""):find("^obj%.bin%.lbpart%-") ~= nil end))
    os.execute("kill -9 " .. up .. " " .. down)
    core.sleep(0.3)
    assert.are.equal(1, #open_uploads("killed/"))
    local left = ls(dir)
    assert.are.equal(1, #left)

    local outf, errf = work .. "/abort.out", work .. "/abort.err"
    local cmd = env_cmd(endpoint) .. EXE .. " s3 abort-uploads s3://" .. bucket .. "/killed/ --local "
      .. sh_quote(dir)
    assert.are.equal(0, run(cmd .. " --dry-run >" .. sh_quote(outf) .. " 2>" .. sh_quote(errf)), read_all(errf))
    local out = read_all(outf)
    assert.is_truthy(out:find("would abort s3://" .. bucket .. "/killed/big.bin (upload ", 1, true), out)
    assert.is_truthy(out:find("would remove " .. dir .. "/" .. left[1], 1, true), out)
    assert.are.equal(1, #open_uploads("killed/"))
    assert.are.same(left, ls(dir))
    assert.are.equal(0, run(cmd .. " >" .. sh_quote(outf) .. " 2>" .. sh_quote(errf)), read_all(errf))
    out = read_all(outf)
    assert.is_truthy(out:find("aborted s3://" .. bucket .. "/killed/big.bin (upload ", 1, true), out)
    assert.is_truthy(out:find("removed " .. dir .. "/" .. left[1], 1, true), out)
    assert.are.same({}, open_uploads("killed/"))
    assert.are.same({}, ls(dir))
    -- a second pass finds nothing; a bad age is bad usage
    assert.are.equal(0, run(cmd .. " >" .. sh_quote(outf) .. " 2>&1"))
    assert.are.equal("", read_all(outf))
    assert.are.equal(2, run(cmd .. " --older-than soon >/dev/null 2>" .. sh_quote(errf)))
    assert.is_truthy(read_all(errf):find("--older-than", 1, true))
  end)
end)
