-- S3 transfers of the C core (core.s3_upload / core.s3_download) against
-- Ceph RGW: round trips of 0 B .. 1 GiB with identical SHA-256, streams,
-- cancellation with cleanup, integrity failures, S3 errors.
local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local request = require "luabatch.request"
local servers = require "helpers.servers"

local MiB = 1024 * 1024

describe("core S3 transfers against Ceph RGW #integration", function()
  local endpoint, key, secret, dir
  local bucket = "lb-xfer-" .. core.hex(core.random_bytes(4))

  local function client()
    return request.new({
      service = "s3", protocol = "rest-xml", region = "us-east-1",
      config = config.new({ env = {}, endpoint_url = endpoint, region = "us-east-1" }),
      credentials = credentials.new({ access_key = key, secret_key = secret, env = {} }),
    })
  end

  local function enc(k)
    return (k:gsub("[^%w%-%._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
  end

  local function opts(t)
    local o = { endpoint = endpoint, bucket = bucket, access_key = key, secret_key = secret,
      region = "us-east-1" }
    for k, v in pairs(t) do o[k] = v end
    return o
  end

  local function sh(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    return out
  end

  local function sha256_file(path)
    return sh("sha256sum '" .. path .. "'"):match("^(%x+)")
  end

  local function make_file(name, size)
    local path = dir .. "/" .. name
    assert(os.execute(("head -c %d /dev/urandom > '%s'"):format(size, path)))
    return path
  end

  local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
  end

  local function temp_files()
    return sh("ls -a '" .. dir .. "' | grep -c lbpart || true"):match("%d+")
  end

  local function delete(k)
    client():send({ method = "DELETE", path = "/" .. bucket .. "/" .. enc(k), operation = "DeleteObject" })
  end

  local function open_uploads()
    local resp = assert(client():send({ method = "GET", path = "/" .. bucket, query = { uploads = "" },
      operation = "ListMultipartUploads" }))
    local n = 0
    for _ in resp.body:gmatch("<Upload>") do n = n + 1 end
    return n
  end

  local function head(k)
    return assert(client():send({ method = "HEAD", path = "/" .. bucket .. "/" .. enc(k), operation = "HeadObject" }))
  end

  -- The object's lb-crc32c tag, or nil.
  local function lb_tag(k)
    local r = assert(client():send({ method = "GET", path = "/" .. bucket .. "/" .. enc(k),
      query = { tagging = "" }, operation = "GetObjectTagging" }))
    return r.body:match("<Key>lb%-crc32c</Key><Value>(.-)</Value>")
  end

  -- Bytes this process has read (read/pread, files and sockets alike).
  local function bytes_read()
    local f = assert(io.open("/proc/self/io", "r"))
    local n = tonumber(f:read("a"):match("rchar: (%d+)"))
    f:close()
    return n
  end

  lazy_setup(function()
    local reason
    endpoint, key, secret = servers.rgw()
    reason = key
    assert(endpoint, reason)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    assert(client():send({ method = "PUT", path = "/" .. bucket, operation = "CreateBucket" }))
  end)

  lazy_teardown(function()
    if endpoint then
      local c = client()
      local resp = c:send({ method = "GET", path = "/" .. bucket, query = { uploads = "" },
        operation = "ListMultipartUploads" })
      if resp then
        for k, id in resp.body:gmatch("<Key>(.-)</Key><UploadId>(.-)</UploadId>") do
          c:send({ method = "DELETE", path = "/" .. bucket .. "/" .. enc(k), query = { uploadId = id },
            operation = "AbortMultipartUpload" })
        end
      end
      resp = c:send({ method = "GET", path = "/" .. bucket, query = { ["list-type"] = "2" },
        operation = "ListObjectsV2" })
      if resp then
        for k in resp.body:gmatch("<Key>(.-)</Key>") do delete(k) end
      end
      c:send({ method = "DELETE", path = "/" .. bucket, operation = "DeleteBucket" })
    end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
    servers.stop_all()
  end)

  local function round_trip(size, extra, want_parts)
    local src = make_file("src", size)
    local k = ("round trip/%d é+%%.bin"):format(size)
    local ticks, last = 0, -1
    local read0 = bytes_read()
    local up = assert(core.s3_upload(opts({ key = k, file = src, concurrency = 8,
      on_progress = function(done, total)
        assert.is_true(done >= last)
        assert.are.equal(size, total)
        last, ticks = done, ticks + 1
      end, multipart_threshold = extra and extra.multipart_threshold, part_size = extra and extra.part_size })))
    assert.are.equal(size, up.bytes)
    assert.are.equal(size, last)          -- the final call reports everything
    -- Each byte of the file is read once (answers add a few KiB per request).
    assert.is_true(bytes_read() - read0 <= size + 4096 * (up.parts + 2), "file read more than once")
    if want_parts then assert.are.equal(want_parts, up.parts) end
    local h = head(k)
    assert.are.equal(up.etag, h.headers["etag"])
    assert.is_nil(h.headers["x-amz-meta-lb-sha256"])
    local multipart = up.parts > 1
    assert.are.equal(multipart and up.checksum or nil, lb_tag(k))
    assert.are.equal(multipart and ("%d"):format(extra and extra.part_size or 8 * MiB) or nil,
      h.headers["x-amz-meta-lb-part-size"])
    local dst = dir .. "/dst"
    local down = assert(core.s3_download(opts({ key = k, file = dst, part_size = extra and extra.part_size })))
    assert.are.equal(size, down.bytes)
    assert.are.equal(multipart and "crc32c" or "md5", down.verified)
    assert.are.equal(sha256_file(src), sha256_file(dst))
    assert.are.equal("0", temp_files())
    delete(k)
    os.remove(src)
    os.remove(dst)
    return up, down
  end

  it("round-trips 0 B and 1 B objects", function()
    local up = round_trip(0, nil, 1)
    assert.is_nil(up.checksum)           -- one PUT: its ETag (an MD5) is the check
    round_trip(1, nil, 1)
  end)

  it("round-trips 5 MiB - 1, 5 MiB and 5 MiB + 1 around the multipart threshold", function()
    local o = { multipart_threshold = 5 * MiB, part_size = 5 * MiB }
    local up = round_trip(5 * MiB - 1, o, 1)
    assert.is_nil(up.upload_id)
    round_trip(5 * MiB, o, 1)
    up = round_trip(5 * MiB + 1, o, 2)
    assert.is_string(up.upload_id)
    assert.is_truthy(up.checksum:match("^%x%x%x%x%x%x%x%x%-2$"))
    round_trip(5 * MiB + 1, nil, 1)        -- default threshold: one PUT
  end)

  it("round-trips a 64 MiB object in 8 MiB parts", function()
    local up, down = round_trip(64 * MiB, nil, 8)
    assert.are.equal(8, down.parts)
    assert.is_truthy(up.etag:match('%-8"$'))
  end)

  it("round-trips a 1 GiB object with identical SHA-256", function()
    local t0 = core.monotime()
    round_trip(1024 * MiB, nil, 128)
    print(("\n1 GiB round trip (incl. file creation and hashing): %.1f s"):format(core.monotime() - t0))
    assert.are.equal(0, open_uploads())
  end)

  it("follows the rate with the parts in flight unless told how many", function()
    local src = make_file("adapt", 40 * MiB)
    local up = assert(core.s3_upload(opts({ key = "adapt", file = src, part_size = 5 * MiB })))
    assert.is_true(up.concurrency >= 8 and up.concurrency <= 32, tostring(up.concurrency))
    assert.are.equal(0, up.concurrency % 4)
    up = assert(core.s3_upload(opts({ key = "adapt", file = src, part_size = 5 * MiB, concurrency = 3 })))
    assert.are.equal(3, up.concurrency)
    local down = assert(core.s3_download(opts({ key = "adapt", file = dir .. "/adapt.out", concurrency = 2 })))
    assert.are.equal(2, down.concurrency)
    delete("adapt")
    os.remove(src)
    os.remove(dir .. "/adapt.out")
  end)

  it("keeps content type and metadata", function()
    local src = make_file("meta", 1000)
    assert(core.s3_upload(opts({ key = "meta", file = src, content_type = "text/x-test",
      metadata = { owner = "luabatch", ["run-id"] = "42" } })))
    local h = head("meta")
    assert.are.equal("text/x-test", h.headers["content-type"])
    assert.are.equal("luabatch", h.headers["x-amz-meta-owner"])
    assert.are.equal("42", h.headers["x-amz-meta-run-id"])
    delete("meta")
  end)

  it("uploads streams: one PUT when short, multipart when long", function()
    local src = make_file("stream", 12 * MiB + 7)
    local f = assert(io.open(src, "rb"))
    local calls = 0
    local up = assert(core.s3_upload(opts({ key = "stream/long", part_size = 5 * MiB,
      reader = function()
        calls = calls + 1
        return f:read(100000)             -- nil at the end
      end })))
    f:close()
    assert.are.equal(3, up.parts)
    assert.are.equal(12 * MiB + 7, up.bytes)
    assert.are.equal(up.checksum, lb_tag("stream/long"))   -- tagged once all parts are in
    assert.is_true(calls > 100)
    local dst = dir .. "/stream.out"
    local down = assert(core.s3_download(opts({ key = "stream/long", file = dst })))
    assert.are.equal("crc32c", down.verified)
    assert.are.equal(sha256_file(src), sha256_file(dst))

    local chunks = { "hello ", "", "world" }   -- "" ends the stream
    local i = 0
    up = assert(core.s3_upload(opts({ key = "stream/short", reader = function()
      i = i + 1
      return chunks[i]
    end })))
    assert.are.equal(1, up.parts)
    assert.are.equal(6, up.bytes)
    down = assert(core.s3_download(opts({ key = "stream/short", file = dst })))
    assert.are.equal("md5", down.verified)   -- plain PUT: the ETag is the MD5
    local got = assert(io.open(dst, "rb")):read("a")
    assert.are.equal("hello ", got)
    delete("stream/long")
    delete("stream/short")
  end)

  it("passes a reader's error through after cleaning up", function()
    local n = 0
    assert.has_error(function()
      core.s3_upload(opts({ key = "stream/bad", part_size = 5 * MiB, reader = function()
        n = n + 1
        if n > 80 then error("reader exploded") end
        return string.rep("x", 100000)
      end }))
    end, "reader exploded")
    assert.are.equal(0, open_uploads())
  end)

  it("cancels an upload from on_progress and leaves no multipart upload open", function()
    local src = make_file("cancel", 40 * MiB)
    local res, msg, code = core.s3_upload(opts({ key = "cancel", file = src, part_size = 5 * MiB,
      concurrency = 2, on_progress = function(done) return done == 0 and nil or false end }))
    assert.is_nil(res)
    assert.are.equal("ECANCELED", code)
    assert.is_truthy(msg:find("s3://" .. bucket .. "/cancel", 1, true))
    assert.are.equal(0, open_uploads())
    local _, _, hcode = client():send({ method = "HEAD", path = "/" .. bucket .. "/cancel", operation = "HeadObject" })
    assert.are.equal("NotFound", hcode)
  end)

  it("stops on SIGINT (the interrupt flag), aborts the upload and keeps the flag raised", function()
    local src = make_file("intr", 40 * MiB)
    local res, msg, code = core.s3_upload(opts({ key = "intr", file = src, part_size = 5 * MiB,
      concurrency = 2, on_progress = function() core.raise_interrupt() end }))
    local still = core.interrupted()
    core.clear_interrupt()
    assert.is_nil(res)
    assert.are.equal("ECANCELED", code)
    assert.is_truthy(msg:find("interrupted", 1, true))
    assert.is_true(still)
    assert.are.equal(0, open_uploads())
  end)

  it("moves many objects at once (core.s3_batch): each verified, one failure alone, progress to the end", function()
    local items, total = {}, 0
    for i = 1, 40 do
      local size = (i == 40) and (6 * MiB) or (i * 997 % 70000)
      items[i] = { file = make_file("many" .. i, size), key = "many/é " .. i, size = size }
      total = total + size
    end
    local last, calls = -1, 0
    local res = assert(core.s3_batch(opts({ direction = "upload", key = "-", workers = 8, part_size = 5 * MiB,
      multipart_threshold = 5 * MiB, on_progress = function(bytes, finished, n)
        assert.are.equal(40, n)
        assert.is_true(bytes >= last and finished <= n)
        last, calls = bytes, calls + 1
        return true
      end }), items))
    assert.are.equal(40, #res)
    assert.are.equal(total, last)                     -- the last call counts every byte
    assert.are.equal(2, res[40].parts)                -- multipart inside a batch
    for i, r in ipairs(res) do
      assert.are.equal(items[i].size, r.bytes)
      assert.are.equal(r.checksum, lb_tag(items[i].key))   -- multipart only; nil for one PUT
    end
    local down = {}
    for i, it in ipairs(items) do down[i] = { file = dir .. "/back" .. i, key = it.key } end
    down[41] = { file = dir .. "/missing", key = "many/missing" }
    res = assert(core.s3_batch(opts({ direction = "download", key = "-", workers = 6 }), down))
    for i = 1, 40 do
      assert.are.equal(i == 40 and "crc32c" or "md5", res[i].verified, res[i].err)
      assert.are.equal(sha256_file(items[i].file), sha256_file(down[i].file))
    end
    assert.are.same({ false, "NoSuchKey" }, { res[41].ok, res[41].code })
    assert.is_truthy(res[41].err:find("s3://" .. bucket .. "/many/missing", 1, true))
    assert.is_false(exists(dir .. "/missing"))
    assert.are.equal("0", temp_files())
    -- stopped by its progress callback: nothing half-done is left
    local big = {}
    for i = 1, 4 do big[i] = { file = make_file("stop" .. i, 12 * MiB), key = "stop/" .. i } end
    local r, _, code = core.s3_batch(opts({ direction = "upload", key = "-", workers = 2, concurrency = 1,
      multipart_threshold = 5 * MiB, on_progress = function() return false end }), big)
    assert.is_nil(r)
    assert.are.equal("ECANCELED", code)
    assert.are.equal(0, open_uploads())
    for i, it in ipairs(items) do delete(it.key); os.remove(it.file); os.remove(down[i].file) end
    for i = 1, 4 do delete("stop/" .. i); os.remove(big[i].file) end
  end)

  it("cancels a download from on_progress and leaves no file", function()
    local src = make_file("cancel-dl", 40 * MiB)
    assert(core.s3_upload(opts({ key = "cancel-dl", file = src })))
    local dst = dir .. "/cancel-dl.out"
    local res, _, code = core.s3_download(opts({ key = "cancel-dl", file = dst, concurrency = 2,
      on_progress = function() return false end }))
    assert.is_nil(res)
    assert.are.equal("ECANCELED", code)
    assert.is_false(exists(dst))
    assert.are.equal("0", temp_files())
    delete("cancel-dl")
  end)

  it("detects an object whose bytes no longer match its lb-crc32c tag (or older lb-sha256) and keeps no file", function()
    local src = make_file("corrupt", 12 * MiB)
    local up = assert(core.s3_upload(opts({ key = "corrupt", file = src, multipart_threshold = 5 * MiB,
      part_size = 5 * MiB })))
    -- same size, other bytes, our tag and part size carried over by a plain PUT
    local other = assert(io.open(make_file("other", 12 * MiB), "rb")):read("a")
    assert(client():send({ method = "PUT", path = "/" .. bucket .. "/corrupt", body = other,
      headers = { ["x-amz-tagging"] = "lb-crc32c=" .. up.checksum, ["x-amz-meta-lb-part-size"] = tostring(5 * MiB) },
      operation = "PutObject" }))
    local dst = dir .. "/corrupt.out"
    local res, msg, code = core.s3_download(opts({ key = "corrupt", file = dst }))
    assert.is_nil(res)
    assert.are.equal("EINTEGRITY", code)
    assert.is_truthy(msg:find("checksum mismatch", 1, true) and msg:find(up.checksum, 1, true), msg)
    assert.is_false(exists(dst))
    assert.are.equal("0", temp_files())

    -- the form older uploads wrote: lb-sha256 metadata over the parts' SHA-256s
    local parts = {}
    for i = 0, 2 do parts[#parts + 1] = core.sha256(other:sub(i * 5 * MiB + 1, (i + 1) * 5 * MiB)) end
    local bin = table.concat(parts):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    local good = core.sha256(bin) .. "-3"
    assert(client():send({ method = "PUT", path = "/" .. bucket .. "/corrupt", body = other,
      headers = { ["x-amz-meta-lb-sha256"] = good, ["x-amz-meta-lb-part-size"] = tostring(5 * MiB) },
      operation = "PutObject" }))
    res = assert(core.s3_download(opts({ key = "corrupt", file = dst })))
    assert.are.equal("sha256", res.verified)                      -- still understood
    os.remove(dst)
    assert(client():send({ method = "PUT", path = "/" .. bucket .. "/corrupt", body = other,
      headers = { ["x-amz-meta-lb-sha256"] = ("0"):rep(64) .. "-3", ["x-amz-meta-lb-part-size"] = tostring(5 * MiB) },
      operation = "PutObject" }))
    res, msg, code = core.s3_download(opts({ key = "corrupt", file = dst }))
    assert.are.equal("EINTEGRITY", code, msg)
    assert.is_false(exists(dst))

    -- single-PUT form: a whole-object digest
    assert(client():send({ method = "PUT", path = "/" .. bucket .. "/corrupt", body = "abc",
      headers = { ["x-amz-meta-lb-sha256"] = core.sha256("abd") }, operation = "PutObject" }))
    res, msg, code = core.s3_download(opts({ key = "corrupt", file = dst }))
    assert.are.equal("EINTEGRITY", code)
    assert.is_false(exists(dst))
    -- without checking, the length alone passes
    res = assert(core.s3_download(opts({ key = "corrupt", file = dst, checksum = false })))
    assert.are.equal("length", res.verified)
    delete("corrupt")
  end)

  it("ignores an implausible lb-part-size in the object's metadata and plans its own ranges", function()
    -- Anyone who can write metadata could ask for one range per byte (20 Mi
    -- GETs here).  The proxy answers every GET after the 8th with 403, so the
    -- old planner fails fast instead of running for hours.
    local proxy = assert(require("helpers.faultproxy").start(endpoint))
    local ok, e = pcall(function()
      local size = 20 * MiB
      local src = make_file("meta-ps", size)
      local body = assert(io.open(src, "rb")):read("a")
      local fake = ("ab"):rep(32)
      for _, m in ipairs({ { "1", size }, { tostring(MiB), 20 }, { "-5242880", 1 }, { "5242880x", 4 },
          { "99999999999999999999", 1 }, { "5242880", 99999999999 } }) do
        assert(client():send({ method = "PUT", path = "/" .. bucket .. "/meta-ps", body = body, headers = {
          ["x-amz-meta-lb-part-size"] = m[1], ["x-amz-meta-lb-sha256"] = fake .. "-" .. m[2] },
          operation = "PutObject" }))
        proxy:clear()
        proxy:add({ match = { method = "GET" }, action = "status", status = 403, code = "AccessDenied",
          skip = 8, times = 0 })
        local dst = dir .. "/meta-ps.out"
        local res, msg = core.s3_download(opts({ endpoint = proxy.endpoint, key = "meta-ps", file = dst }))
        assert(res, m[1] .. ": " .. tostring(msg))
        assert.are.equal(3, res.parts)                      -- the client's own 8 MiB ranges
        assert.are.equal("md5", res.verified)               -- a plain PUT: the ETag is its MD5
        assert.is_truthy(res.note and res.note:find("lb-part-size", 1, true), tostring(res.note))
        local gets = 0
        for _, entry in ipairs(proxy:stats().log) do
          if entry.method == "GET" then gets = gets + 1 end
        end
        assert.are.equal(3, gets)
        assert.are.equal(sha256_file(src), sha256_file(dst))
        os.remove(dst)
      end
      -- a part size of ours is still followed (and so checked part by part)
      local up = assert(core.s3_upload(opts({ key = "meta-ok", file = src, part_size = 5 * MiB })))
      local res = assert(core.s3_download(opts({ key = "meta-ok", file = dir .. "/meta-ok.out" })))
      assert.are.equal(4, up.parts)
      assert.are.equal(4, res.parts)
      assert.are.equal("crc32c", res.verified)
      assert.is_nil(res.note)
      os.remove(dir .. "/meta-ok.out")
      delete("meta-ok")
      delete("meta-ps")
      os.remove(src)
    end)
    proxy:stop()
    assert(ok, e)
  end)

  it("verifies the MD5 ETag of objects without our metadata", function()
    assert(client():send({ method = "PUT", path = "/" .. bucket .. "/plain", body = ("p"):rep(10000),
      operation = "PutObject" }))
    local dst = dir .. "/plain.out"
    local res = assert(core.s3_download(opts({ key = "plain", file = dst })))
    assert.are.equal("md5", res.verified)
    assert.are.equal(10000, res.bytes)
    delete("plain")
  end)

  it("reports S3 errors with their codes and never the secret", function()
    local dst = dir .. "/missing.out"
    local res, msg, code = core.s3_download(opts({ key = "missing", file = dst }))
    assert.is_nil(res)
    assert.are.equal("NoSuchKey", code)
    assert.is_truthy(msg:find("s3://" .. bucket .. "/missing", 1, true))
    assert.is_false(exists(dst))
    res, msg, code = core.s3_download(opts({ bucket = bucket .. "-nope", key = "k", file = dst }))
    assert.are.equal("NoSuchBucket", code)
    local src = make_file("small", 10)
    local wrong = "WRONG-secret-value-0123456789"
    res, msg, code = core.s3_upload(opts({ key = "k", file = src, secret_key = wrong }))
    assert.is_nil(res)
    assert.are.equal("SignatureDoesNotMatch", code)
    assert.is_truthy(msg:find("^PutObject s3://"))
    assert.is_truthy(msg:find("HTTP 403 SignatureDoesNotMatch", 1, true))
    assert.is_nil(msg:find(wrong, 1, true))
    res, msg, code = core.s3_download(opts({ key = "k", file = dst, secret_key = wrong }))
    assert.are.equal("SignatureDoesNotMatch", code)
    assert.is_nil(msg:find(wrong, 1, true))
  end)

  it("rejects misuse with argument errors", function()
    assert.has_error(function() core.s3_upload(opts({ key = "k" })) end)
    assert.has_error(function() core.s3_upload(opts({ key = "k", file = "x", reader = function() end })) end)
    assert.has_error(function() core.s3_download(opts({ key = "k", file = "x", concurrency = 0 })) end)
    assert.has_error(function() core.s3_download(opts({ key = "k" })) end)
  end)
end)
