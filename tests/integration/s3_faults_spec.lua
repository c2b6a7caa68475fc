-- S3 transfers (core.s3_upload / core.s3_download) through the fault-injecting
-- proxy (tests/servers/faultproxy.py) in front of Ceph RGW.
--
-- Every fault must end in either a correct object / file (SHA-256 equal to
-- the source's, checked independently of the transfer code) or a clear error
-- (nil, message naming the key, code), and afterwards:
--   * no multipart upload left open on the bucket (ListMultipartUploads),
--   * no file under the final name after a failed download (an existing file
--     there is left as it was), and no temporary file in its directory.
local core = require "luabatch.core"
local servers = require "helpers.servers"
local faultproxy = require "helpers.faultproxy"

local MiB = 1024 * 1024
local PART = 5 * MiB

local files = require "helpers.files"
local sh_quote, read_all, write_all, exists, ls, mkdtemp =
  files.sh_quote, files.read_all, files.write_all, files.exists, files.ls, files.mkdtemp
local sha256_file = files.sha256

describe("S3 transfers under injected faults #integration", function()
  local endpoint, key, secret, proxy
  local bucket = "lb-faults-" .. core.hex(core.random_bytes(4))
  local work                   -- scratch directory
  local big, big_sha           -- 22 MiB + 123 B source: 5 parts of 5 MiB
  local small, small_sha       -- 3 MiB source: one PUT / one GET

  local rgw                    -- the bucket, seen straight from RGW (helpers.rgw_bucket)
  local function direct(method, path, opts) return rgw:direct(method, path, opts) end
  local function open_uploads() return rgw:open_uploads() end

  -- SHA-256 of the object as RGW serves it (nil when there is none).
  local function object_sha(k)
    local path = work .. "/check.bin"
    os.remove(path)
    local r = assert(direct("GET", "/" .. bucket .. "/" .. k, { output_file = path }))
    local sum = r.status == 200 and sha256_file(path) or nil
    os.remove(path)
    return sum, r.status
  end

  local function transfer_opts(extra)
    local o = { endpoint = proxy.endpoint, bucket = bucket, region = "us-east-1", access_key = key,
      secret_key = secret, path_style = true, part_size = PART, concurrency = 4, max_attempts = 4,
      read_timeout = 3, connect_timeout = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  local function upload(k, file, extra)
    local o = transfer_opts(extra)
    o.key, o.file = k, file
    return core.s3_upload(o)
  end

  local function download(k, dest, extra)
    local o = transfer_opts(extra)
    o.key, o.file = k, dest
    return core.s3_download(o)
  end

  -- The end state every fault test checks.
  local function assert_no_open_uploads(k)
    for _, u in ipairs(open_uploads()) do
      assert.are_not.equal(k, u.Key, "multipart upload left open for " .. k .. " (UploadId " ..
        tostring(u.UploadId) .. ")")
    end
  end

  local function assert_clear_error(res, msg, code, k)
    assert.is_nil(res)
    assert.are.equal("string", type(msg))
    assert.are.equal("string", type(code))
    assert.is_truthy(msg:find(k, 1, true), "message does not name the key: " .. msg)
    assert.is_nil(msg:find(secret, 1, true))
  end

  -- Outcome of an upload under a fault that a retry can absorb: it must have
  -- succeeded and the object must be the source, byte for byte.
  local function assert_uploaded(res, msg, k, sha)
    assert.is_table(res, msg)
    assert.are.equal(sha, (object_sha(k)))
    assert_no_open_uploads(k)
  end

  local function assert_upload_failed(res, msg, code, k)
    assert_clear_error(res, msg, code, k)
    assert_no_open_uploads(k)
    local _, status = object_sha(k)
    assert.are.equal(404, status)
  end

  local function assert_downloaded(res, msg, dir, dest, sha)
    assert.is_table(res, msg)
    assert.are.equal(sha, sha256_file(dest))
    assert.are.same({ (dest:match("[^/]+$")) }, ls(dir))      -- no temporary file left over
  end

  local function assert_download_failed(res, msg, code, k, dir)
    assert_clear_error(res, msg, code, k)
    assert.are.same({}, ls(dir))                               -- neither the file nor a temp file
  end

  local function fresh_dir()
    local d = work .. "/d" .. core.hex(core.random_bytes(4))
    assert(os.execute("mkdir " .. sh_quote(d)))
    return d
  end

  lazy_setup(function()
    assert(core.s3_upload and core.s3_download,
      "luabatch.core has no s3_upload/s3_download (build the module with src/lb_s3.c)")
    endpoint, key, secret = servers.rgw()
    assert(endpoint, key)
    proxy = assert(faultproxy.start(endpoint))
    work = mkdtemp()
    big = work .. "/big.bin"
    small = work .. "/small.bin"
    assert(os.execute(("head -c %d /dev/urandom > %s"):format(4 * PART + 2 * MiB + 123, sh_quote(big))))
    assert(os.execute(("head -c %d /dev/urandom > %s"):format(3 * MiB, sh_quote(small))))
    big_sha, small_sha = sha256_file(big), sha256_file(small)
    rgw = require("helpers.rgw_bucket").create(endpoint, key, secret, bucket)
  end)

  lazy_teardown(function()
    if proxy then proxy:stop() end
    if rgw then rgw:purge() end
    if work then os.execute("rm -rf " .. sh_quote(work)) end
    servers.stop_all()
  end)

  before_each(function() proxy:clear() end)

  describe("upload", function()
    it("survives a connection reset in the middle of part 2", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" }, action = "reset_request_after",
        bytes = MiB })
      local res, msg = upload("up-reset", big)
      assert.are.equal(1, #proxy:faults("reset_request_after"))
      assert_uploaded(res, msg, "up-reset", big_sha)
      assert.are.equal(5, res.parts)
    end)

    it("survives 503 SlowDown twice on part 3", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=3" }, action = "status",
        status = 503, code = "SlowDown", times = 2 })
      local res, msg = upload("up-503", big)
      assert.are.equal(2, #proxy:faults("status"))
      assert_uploaded(res, msg, "up-503", big_sha)
    end)

    it("survives 500 InternalError on parts 1 and 5", function()
      proxy:add({
        { match = { method = "PUT", query_contains = "partNumber=1" }, action = "status", status = 500,
          code = "InternalError" },
        { match = { method = "PUT", query_contains = "partNumber=5" }, action = "status", status = 500,
          code = "InternalError" },
      })
      local res, msg = upload("up-500", big)
      assert.are.equal(2, #proxy:faults("status"))
      assert_uploaded(res, msg, "up-500", big_sha)
    end)

    it("survives a part whose response stalls past the read timeout", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=4" }, action = "stall",
        stall_seconds = 30 })
      local t0 = core.monotime()
      local res, msg = upload("up-stall", big, { read_timeout = 2 })
      assert.are.equal(1, #proxy:faults("stall"))
      assert.is_true(core.monotime() - t0 < 25, "the stalled part was not timed out")
      assert_uploaded(res, msg, "up-stall", big_sha)
    end)

    it("survives a reset in the middle of a single PUT", function()
      proxy:add({ match = { method = "PUT", path_contains = "/up-single" }, action = "reset_request_after",
        bytes = MiB })
      local res, msg = upload("up-single", small)
      assert.are.equal(1, #proxy:faults("reset_request_after"))
      assert_uploaded(res, msg, "up-single", small_sha)
    end)

    it("survives 503 on CreateMultipartUpload and 500 on CompleteMultipartUpload", function()
      proxy:add({
        { match = { method = "POST", query_contains = "uploads" }, action = "status", status = 503,
          code = "SlowDown" },
        { match = { method = "POST", query_contains = "uploadId=" }, action = "status", status = 500,
          code = "InternalError" },
      })
      local res, msg = upload("up-create-complete", big)
      assert.are.equal(2, #proxy:faults("status"))
      assert_uploaded(res, msg, "up-create-complete", big_sha)
    end)

    it("ends correctly when the CompleteMultipartUpload answer is lost (reset after RGW completed)", function()
      -- RGW has completed the upload; the client never sees the answer.  A
      -- retried Complete gets NoSuchUpload: either the transfer notices the
      -- object is there (success) or it reports a clear error -- and no upload
      -- may stay open.
      proxy:add({ match = { method = "POST", query_contains = "uploadId=" }, action = "reset_response_after",
        bytes = 0 })
      local res, msg, code = upload("up-lost-complete", big)
      assert.are.equal(1, #proxy:faults("reset_response_after"))
      if res then
        assert_uploaded(res, msg, "up-lost-complete", big_sha)
      else
        assert_clear_error(res, msg, code, "up-lost-complete")
        assert_no_open_uploads("up-lost-complete")
      end
    end)

    it("leaves no upload open when the CreateMultipartUpload answer is lost (RGW created one)", function()
      -- The first Create reached RGW, which opened an upload; its answer is
      -- lost, so a retried Create opens a second one.  Whatever the outcome,
      -- the first upload must not stay open (it holds no parts, but it is an
      -- orphan that ListMultipartUploads shows until a lifecycle rule ends it).
      proxy:add({ match = { method = "POST", query_contains = "uploads" }, action = "reset_response_after",
        bytes = 0 })
      local res, msg, code = upload("up-lost-create", big)
      assert.are.equal(1, #proxy:faults("reset_response_after"))
      if res then
        assert_uploaded(res, msg, "up-lost-create", big_sha)
      else
        assert_clear_error(res, msg, code, "up-lost-create")
        assert_no_open_uploads("up-lost-create")
      end
    end)

    it("retries the AbortMultipartUpload (503) after a part fails for good", function()
      proxy:add({
        { match = { method = "PUT", query_contains = "partNumber=2" }, action = "status", status = 403,
          code = "AccessDenied", times = 0 },
        { match = { method = "DELETE", query_contains = "uploadId=" }, action = "status", status = 503,
          code = "SlowDown", times = 2 },
      })
      local res, msg, code = upload("up-abort-503", big)
      assert_upload_failed(res, msg, code, "up-abort-503")
      assert.are.equal("AccessDenied", code)
      local aborts = 0
      for _, e in ipairs(proxy:stats().log) do
        if e.method == "DELETE" then aborts = aborts + 1 end
      end
      assert.are.equal(3, aborts)                     -- two SlowDown, then the one that worked
    end)

    it("fails clearly and aborts the upload when part 2 is reset on every attempt", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" }, action = "reset_request_after",
        bytes = 256 * 1024, times = 0 })
      local res, msg, code = upload("up-reset-always", big, { max_attempts = 3 })
      assert_upload_failed(res, msg, code, "up-reset-always")
      -- Retried, then gave up.  libcurl itself re-sends a request once when a
      -- reused connection dies before any answer, so one attempt may show
      -- up twice at the proxy.
      local n = #proxy:faults("reset_request_after")
      assert.is_true(n >= 3 and n <= 7, n .. " sends of part 2 for max_attempts = 3")
    end)

    it("fails clearly with the S3 code and aborts when SlowDown never ends", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=" }, action = "status", status = 503,
        code = "SlowDown", times = 0 })
      local res, msg, code = upload("up-503-always", big, { max_attempts = 3 })
      assert_upload_failed(res, msg, code, "up-503-always")
      assert.is_truthy(code == "SlowDown" or code == "HTTP_503", code)
      assert.is_truthy(msg:find("SlowDown", 1, true) or msg:find("503", 1, true), msg)
    end)

    it("fails at once on a 403 for a part (no retry) and aborts the upload", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" }, action = "status", status = 403,
        code = "AccessDenied", times = 0 })
      local res, msg, code = upload("up-403", big, { max_attempts = 5 })
      assert_upload_failed(res, msg, code, "up-403")
      assert.are.equal("AccessDenied", code)
      assert.are.equal(1, #proxy:faults("status"))                  -- not retried
    end)

    it("fails clearly when a part stalls on every attempt", function()
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=3" }, action = "stall",
        stall_seconds = 60, times = 0 })
      local t0 = core.monotime()
      local res, msg, code = upload("up-stall-always", big, { max_attempts = 2, read_timeout = 1 })
      assert.is_true(core.monotime() - t0 < 40)
      assert_upload_failed(res, msg, code, "up-stall-always")
      assert.are.equal("ETIMEDOUT", code)
    end)
  end)

  describe("download", function()
    lazy_setup(function()
      proxy:clear()     -- (before_each has not run yet for this block)
      -- The objects to read, uploaded without faults (through the proxy).
      assert(upload("dl-big", big))
      assert(upload("dl-small", small))
      assert.are.equal(big_sha, (object_sha("dl-big")))
    end)

    it("survives a connection reset in the middle of a ranged GET", function()
      proxy:add({ match = { method = "GET", path_contains = "/dl-big" }, action = "reset_response_after",
        bytes = MiB, skip = 1 })
      local dir = fresh_dir()
      local dest = dir .. "/out.bin"
      local res, msg = download("dl-big", dest)
      assert.are.equal(1, #proxy:faults("reset_response_after"))
      assert_downloaded(res, msg, dir, dest, big_sha)
      assert.are.equal("crc32c", res.verified)
    end)

    it("survives a reset in the middle of a single GET", function()
      proxy:add({ match = { method = "GET", path_contains = "/dl-small" }, action = "reset_response_after",
        bytes = MiB + 17 })
      local dir = fresh_dir()
      local dest = dir .. "/small.out"
      local res, msg = download("dl-small", dest)
      assert.are.equal(1, #proxy:faults("reset_response_after"))
      assert_downloaded(res, msg, dir, dest, small_sha)
    end)

    it("survives 503 SlowDown and 500 InternalError on ranged GETs", function()
      proxy:add({
        { match = { method = "GET", path_contains = "/dl-big" }, action = "status", status = 503,
          code = "SlowDown", times = 2 },
        { match = { method = "GET", path_contains = "/dl-big" }, action = "status", status = 500,
          code = "InternalError", skip = 1, times = 1 },
      })
      local dir = fresh_dir()
      local dest = dir .. "/out.bin"
      local res, msg = download("dl-big", dest)
      assert.are.equal(3, #proxy:faults("status"))
      assert_downloaded(res, msg, dir, dest, big_sha)
    end)

    it("survives a 503 on the HEAD", function()
      proxy:add({ match = { method = "HEAD", path_contains = "/dl-big" }, action = "status", status = 503,
        code = "SlowDown" })
      local dir = fresh_dir()
      local dest = dir .. "/out.bin"
      local res, msg = download("dl-big", dest)
      assert.are.equal(1, #proxy:faults("status"))
      assert_downloaded(res, msg, dir, dest, big_sha)
    end)

    it("survives a HEAD that stalls past the read timeout", function()
      proxy:add({ match = { method = "HEAD", path_contains = "/dl-small" }, action = "stall", stall_seconds = 30 })
      local dir = fresh_dir()
      local dest = dir .. "/small.out"
      local res, msg = download("dl-small", dest, { read_timeout = 1 })
      assert.are.equal(1, #proxy:faults("stall"))
      assert_downloaded(res, msg, dir, dest, small_sha)
    end)

    it("survives a range whose body stalls past the read timeout", function()
      proxy:add({ match = { method = "GET", path_contains = "/dl-big" }, action = "stall", bytes = 64 * 1024,
        stall_seconds = 30, skip = 2 })
      local dir = fresh_dir()
      local dest = dir .. "/out.bin"
      local t0 = core.monotime()
      local res, msg = download("dl-big", dest, { read_timeout = 2 })
      assert.are.equal(1, #proxy:faults("stall"))
      assert.is_true(core.monotime() - t0 < 25, "the stalled range was not timed out")
      assert_downloaded(res, msg, dir, dest, big_sha)
    end)

    it("fails clearly, leaving no file and no temp file, when every GET is reset", function()
      proxy:add({ match = { method = "GET", path_contains = "/dl-big" }, action = "reset_response_after",
        bytes = 512 * 1024, times = 0 })
      local dir = fresh_dir()
      local res, msg, code = download("dl-big", dir .. "/out.bin", { max_attempts = 2 })
      assert_download_failed(res, msg, code, "dl-big", dir)
      assert.is_true(#proxy:faults("reset_response_after") >= 2)
    end)

    it("fails with ETIMEDOUT and leaves an existing file under the final name untouched", function()
      proxy:add({ match = { method = "GET", path_contains = "/dl-big" }, action = "stall", bytes = 128 * 1024,
        stall_seconds = 60, times = 0 })
      local dir = fresh_dir()
      local dest = dir .. "/keep.bin"
      write_all(dest, "the previous content\n")
      local t0 = core.monotime()
      local res, msg, code = download("dl-big", dest, { max_attempts = 2, read_timeout = 1 })
      assert.is_true(core.monotime() - t0 < 40)
      assert_clear_error(res, msg, code, "dl-big")
      assert.are.equal("ETIMEDOUT", code)
      assert.are.equal("the previous content\n", read_all(dest))
      assert.are.same({ "keep.bin" }, ls(dir))
    end)

    it("fails at once on a 403 for a range (no retry), leaving nothing behind", function()
      proxy:add({ match = { method = "GET", path_contains = "/dl-big" }, action = "status", status = 403,
        code = "AccessDenied", skip = 1, times = 0 })
      local dir = fresh_dir()
      local res, msg, code = download("dl-big", dir .. "/out.bin", { max_attempts = 5, concurrency = 1 })
      assert_download_failed(res, msg, code, "dl-big", dir)
      assert.are.equal("AccessDenied", code)
      assert.are.equal(1, #proxy:faults("status"))  -- not retried
      assert.is_false(exists(dir .. "/out.bin"))
    end)
  end)

  describe("through luabatch.s3 and the CLI", function()
    it("a server refusing aws-chunked bodies (501 NotImplemented) gets unsigned payloads, with a warning", function()
      local s3 = require("luabatch.s3").new({
        config = require("luabatch.config").new({ env = {}, region = "us-east-1" }),
        credentials = require("luabatch.credentials").new({ access_key = key, secret_key = secret, env = {} }),
        endpoint = proxy.endpoint, region = "us-east-1" })
      proxy:add({ match = { method = "PUT", header = { "Content-Encoding", "aws-chunked" } }, action = "status",
        status = 501, code = "NotImplemented", times = 0 })
      local log = require "luabatch.log"
      local warned = {}
      local saved = log.warn
      log.warn = function(fmt, ...) warned[#warned + 1] = fmt:format(...) end
      local ok, e = pcall(function()
        local res = assert(s3:upload_file(big, bucket, "up-unchunked"))      -- multipart
        assert.are.equal(big_sha, (object_sha("up-unchunked")))
        assert.is_truthy(res.checksum)                      -- unsigned, still tagged: downloads check it
        local back = work .. "/up-unchunked.back"
        assert.are.equal("crc32c", assert(s3:download_file(bucket, "up-unchunked", back)).verified)
        os.remove(back)
        assert_no_open_uploads("up-unchunked")
        local items = { { file = small, key = "up-unchunked-many/1" }, { file = small, key = "up-unchunked-many/2" } }
        local rs = assert(s3:transfer_many("upload", bucket, items, {}))
        for i = 1, 2 do
          assert.is_not_false(rs[i].ok, rs[i].err)
          assert.are.equal(small_sha, (object_sha(items[i].key)))
        end
      end)
      log.warn = saved
      assert(ok, e)
      assert.is_true(#proxy:faults("status") >= 3)    -- the big one's first part, then each small PUT
      assert.are.equal(2, #warned)                    -- once per transfer, naming the object
      assert.is_truthy(warned[1]:find("up-unchunked", 1, true) and warned[1]:find("NotImplemented", 1, true))
    end)

    it("a stream upload (reader) survives a reset in the middle of part 2", function()
      local s3 = require("luabatch.s3").new({ endpoint = proxy.endpoint, region = "us-east-1",
        addressing = "path", credentials = require("luabatch.credentials").new({ access_key = key,
          secret_key = secret, env = {} }) })
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" }, action = "reset_request_after",
        bytes = 2 * MiB })
      local f = assert(io.open(big, "rb"))
      local reader = function() return f:read(MiB + 7) end
      local res, msg = s3:upload_reader(reader, bucket, "up-stream", { part_size = PART, concurrency = 3,
        max_attempts = 4, read_timeout = 3 })
      f:close()
      assert.are.equal(1, #proxy:faults("reset_request_after"))
      assert_uploaded(res, msg, "up-stream", big_sha)
    end)

    it("`luabatch s3 cp` exits 1 with a message naming the object and leaves no file when GETs keep failing", function()
      local exe = "build/lua5.4/bin/luabatch"
      if not exists(exe) then pending("no " .. exe) return end
      proxy:add({ match = { method = "GET", path_contains = "/dl-small" }, action = "reset_response_after",
        bytes = 1000, times = 0 })
      local dir = fresh_dir()
      local errf = work .. "/cli.err"
      local env = ("env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_CONFIG_FILE=/dev/null "
        .. "AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_ENDPOINT_URL=%s AWS_ACCESS_KEY_ID=%s "
        .. "AWS_SECRET_ACCESS_KEY=%s AWS_REGION=us-east-1 "):format(proxy.endpoint, key, secret)
      local ok, _, rc = os.execute(env .. exe .. " s3 cp -q s3://" .. bucket .. "/dl-small "
        .. sh_quote(dir .. "/small.out") .. " 2>" .. sh_quote(errf))
      if type(ok) == "number" then rc = ok / 256 end      -- LuaJIT: the raw wait status
      local err = read_all(errf) or ""
      assert.are.equal(1, rc, err)
      assert.is_truthy(err:find("dl-small", 1, true), err)
      assert.is_nil(err:find(secret, 1, true))
      assert.are.same({}, ls(dir))
    end)

    it("`luabatch s3 cp --unsigned-payload` sends the bodies unsigned, still tagged for downloads to check", function()
      local exe = "build/lua5.4/bin/luabatch"
      if not exists(exe) then pending("no " .. exe) return end
      -- one 500 for an unsigned UploadPart: it fires only if the parts go unsigned
      proxy:add({ match = { method = "PUT", query_contains = "partNumber=", header = { "x-amz-content-sha256",
        "UNSIGNED-PAYLOAD" } }, action = "status", status = 500, code = "InternalError" })
      local env = ("env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_CONFIG_FILE=/dev/null "
        .. "AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_ENDPOINT_URL=%s AWS_ACCESS_KEY_ID=%s "
        .. "AWS_SECRET_ACCESS_KEY=%s AWS_REGION=us-east-1 "):format(proxy.endpoint, key, secret)
      local function run(args)
        local ok, _, rc = os.execute(env .. exe .. " " .. args .. " 2>/dev/null")
        if type(ok) == "number" then rc = ok / 256 end
        return rc
      end
      assert.are.equal(0, run("s3 cp -q --unsigned-payload " .. sh_quote(big) .. " s3://" .. bucket .. "/up-unsigned"))
      assert.are.equal(1, #proxy:faults("status"))
      assert.are.equal(big_sha, (object_sha("up-unsigned")))
      local dir = fresh_dir()
      local res = assert(download("up-unsigned", dir .. "/back"))
      assert.are.equal("crc32c", res.verified)
      assert.are.equal(2, run("s3 ls --unsigned-payload s3://" .. bucket))   -- not a transfer: refused
    end)
  end)
end)
