-- luabatch.s3 against Ceph RGW: special keys, paged listings, delete_prefix,
-- presigned URLs used by curl, wrong secrets, LocationConstraint,
-- virtual-host addressing (<bucket>.s3.localhost resolves to 127.0.0.1 in
-- libcurl and curl), and file transfers when the build has the C engine.
local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local s3mod = require "luabatch.s3"
local servers = require "helpers.servers"

local SPECIAL_KEYS = {
  "with space.txt",
  "plus+sign",
  "percent%25%literal",
  "tilde~and*star",
  "dir/sub dir/ünïcödé 日本語 ✓",
  "reserved !$&'()=,;:@[]?#",
  "xml <&> \"quotes\"",
  "trailing space ",
  "double//slash",
  "emoji 🚀",
}

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run a shell command; its stdout and whether it exited 0.
local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end


describe("luabatch.s3 against Ceph RGW #integration", function()
  local endpoint, key, secret
  local bucket = "lb-s3-" .. core.hex(core.random_bytes(4))
  local vbucket = "lb-s3v-" .. core.hex(core.random_bytes(4))
  local tmp = os.tmpname()

  local function client(o)
    o = o or {}
    return s3mod.new({
      config = config.new({ env = {}, region = o.region or "us-east-1" }),
      credentials = credentials.new({ access_key = key, secret_key = o.secret or secret, env = {} }),
      endpoint = o.endpoint or endpoint,
      region = o.region or "us-east-1",
      addressing = o.addressing,
      transport = o.transport,
    })
  end

  -- A transport that counts the requests it forwards.
  local function counting_transport()
    local real = require("luabatch.transport.curl").new()
    local t = { n = 0, urls = {} }
    function t.request(_, opts)
      t.n = t.n + 1
      t.urls[#t.urls + 1] = opts.url
      return real:request(opts)
    end
    return t
  end

  lazy_setup(function()
    local reason
    endpoint, key, secret = servers.rgw()
    reason = key
    assert(endpoint, reason)
    assert(client():create_bucket(bucket))
  end)

  lazy_teardown(function()
    if endpoint then
      local s = client()
      for _, b in ipairs({ bucket, vbucket }) do
        s:delete_prefix(b, "")
        s:delete_bucket(b)
      end
    end
    os.remove(tmp)
    servers.stop_all()
  end)

  it("round-trips keys with spaces, +, %, ~, *, unicode and reserved characters", function()
    local s = client()
    for i, k in ipairs(SPECIAL_KEYS) do
      local body = "body " .. i .. " of " .. k
      local put = assert(s:put_object(bucket, "special/" .. k, body, { content_type = "text/x-lb-" .. i,
        metadata = { Index = tostring(i), ["lb-note"] = "v " .. i } }))
      assert.are.equal(core.md5(body), put.etag)
      local got, meta = s:get_object(bucket, "special/" .. k)
      assert.are.equal(body, got, k)
      assert.are.equal("text/x-lb-" .. i, meta.content_type)
      local head = assert(s:head_object(bucket, "special/" .. k))
      assert.are.equal(#body, head.size)
      assert.are.equal(tostring(i), head.metadata.index)
      assert.are.equal("v " .. i, head.metadata["lb-note"])
    end
    local listed = {}
    for e, msg in s:list(bucket, { prefix = "special/" }) do
      assert(e, msg)
      listed[#listed + 1] = e.key:sub(#"special/" + 1)
    end
    local want = {}
    for _, k in ipairs(SPECIAL_KEYS) do want[#want + 1] = k end
    table.sort(want)
    table.sort(listed)
    assert.are.same(want, listed)
    -- ranged GET and a missing key
    local part = assert(s:get_object(bucket, "special/plus+sign", { range = { 5, 6 } }))
    assert.are.equal("2 ", part)
    local r, msg, code = s:get_object(bucket, "special/absent key")
    assert.is_nil(r)
    assert.are.equal("NoSuchKey", code)
    assert.is_truthy(msg:find("GetObject s3://" .. bucket .. "/special/absent key: HTTP 404", 1, true))
    local h, _, hcode = s:head_object(bucket, "special/absent key")
    assert.is_nil(h)
    assert.are.equal("NoSuchKey", hcode)
  end)

  -- The bucket's own tagging, ACL grants and policy (what an injected
  -- "?tagging=" / "?acl=" / "?policy=" would have changed).
  local function bucket_state()
    local c = require("luabatch.request").new({ service = "s3", protocol = "rest-xml", region = "us-east-1",
      endpoint = endpoint, config = config.new({ env = {}, region = "us-east-1" }),
      credentials = credentials.new({ access_key = key, secret_key = secret, env = {} }) })
    local out = {}
    for _, sub in ipairs({ "tagging", "acl", "policy" }) do
      local resp, _, code = c:send({ method = "GET", path = "/" .. bucket, query = { [sub] = "" },
        operation = "Get " .. sub })
      out[sub] = resp and resp.body or code
    end
    return out
  end

  it("keeps query-like keys in the path: put, head, get, list and delete them", function()
    local before = bucket_state()
    local keys = { "q/k?tagging=", "q/?acl", "q/x?policy&uploads=", "q/#frag", "q/50% off %3F %2F/%",
      "q/sp ace/ü 日本 ?versionId=1#x", "q/?" }
    for _, addressing in ipairs({ "path", "virtual" }) do
      local vep = endpoint:gsub("//127%.0%.0%.1:", "//s3.localhost:")
      local t = counting_transport()
      local s = addressing == "path" and client({ transport = t })
        or client({ endpoint = vep, addressing = "virtual", transport = t })
      if addressing == "virtual" and vep == endpoint then break end
      for i, k in ipairs(keys) do
        local body = addressing .. " " .. i .. " " .. k
        assert(s:put_object(bucket, k, body, { metadata = { n = tostring(i) } }))
        local head = assert(s:head_object(bucket, k))
        assert.are.equal(#body, head.size)
        assert.are.equal(tostring(i), head.metadata.n)
        assert.are.equal(body, (s:get_object(bucket, k)))
      end
      for _, u in ipairs(t.urls) do assert.is_nil(u:find("[?#]"), u) end   -- no query, no fragment
      local listed = {}
      for e, msg in s:list(bucket, { prefix = "q/" }) do
        assert(e, msg)
        listed[#listed + 1] = e.key
      end
      local want = { (table.unpack or unpack)(keys) }
      table.sort(want)
      table.sort(listed)
      assert.are.same(want, listed)
      for _, k in ipairs(keys) do assert(s:delete_object(bucket, k)) end
      assert.are.same({}, assert(s:list_all(bucket, { prefix = "q/" })))
    end
    assert.are.same(before, bucket_state())
  end)

  it("refuses a bucket name carrying a query before sending anything", function()
    local before = bucket_state()
    local t = counting_transport()
    local s = client({ transport = t })
    local tagging = '<Tagging><TagSet><Tag><Key>owned</Key><Value>yes</Value></Tag></TagSet></Tagging>'
    for _, sub in ipairs({ "?tagging=", "?acl=", "?policy=" }) do
      local r, msg, code = s:put_object(bucket .. sub, "k", tagging)
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
      assert.is_truthy(msg:find("invalid bucket name '" .. bucket .. sub .. "'", 1, true), msg)
      r, _, code = s:upload_file(tmp, bucket .. sub, "k")
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
    end
    assert.are.equal(0, t.n)
    assert.are.same(before, bucket_state())
  end)

  it("copies objects server-side, keeping or replacing metadata", function()
    local s = client()
    assert(s:put_object(bucket, "copy/src ü", "copy me", { content_type = "text/plain", metadata = { a = "1" } }))
    local c1 = assert(s:copy_object(bucket, "copy/src ü", bucket, "copy/dst 1+"))
    assert.are.equal(core.md5("copy me"), c1.etag)
    local m1 = assert(s:head_object(bucket, "copy/dst 1+"))
    assert.are.equal("1", m1.metadata.a)
    assert.are.equal("text/plain", m1.content_type)
    assert(s:copy_object(bucket, "copy/src ü", bucket, "copy/dst 2", { metadata = { b = "2" },
      content_type = "application/x-new" }))
    local m2 = assert(s:head_object(bucket, "copy/dst 2"))
    assert.is_nil(m2.metadata.a)
    assert.are.equal("2", m2.metadata.b)
    assert.are.equal("application/x-new", m2.content_type)
    assert.are.equal("copy me", (s:get_object(bucket, "copy/dst 2")))
    local r, _, code = s:copy_object(bucket, "copy/none", bucket, "copy/x")
    assert.is_nil(r)
    assert.are.equal("NoSuchKey", code)
  end)

  it("lists 2,500 keys in pages of 1,000, with delimiter and start-after, then delete_prefix removes them", function()
    local s = client()
    local n = 2500
    for i = 1, n do
      assert(s:put_object(bucket, ("many/%s/k%05d"):format(i <= 1200 and "a" or "b", i), ""))
    end
    assert(s:put_object(bucket, "many/top", "t"))
    local t = counting_transport()
    local cs = client({ transport = t })
    local count, last = 0, ""
    for e, msg in cs:list(bucket, { prefix = "many/" }) do
      assert(e, msg)
      assert.is_true(e.key > last)      -- ascending, no repeats
      last = e.key
      count = count + 1
    end
    assert.are.equal(n + 1, count)
    assert.are.equal(3, t.n)            -- 1000 + 1000 + 501
    assert.is_truthy(t.urls[2]:find("continuation-token=", 1, true))

    local entries = assert(s:list_all(bucket, { prefix = "many/", delimiter = "/" }))
    assert.are.same({ "many/top", "many/a/", "many/b/" },
      { entries[1].key, entries[2].prefix, entries[3].prefix })
    assert.are.equal(3, #entries)

    local after = assert(s:list_all(bucket, { prefix = "many/b/", start_after = "many/b/k02495" }))
    assert.are.same({ "many/b/k02496", "many/b/k02497", "many/b/k02498", "many/b/k02499", "many/b/k02500" },
      (function() local o = {} for _, e in ipairs(after) do o[#o + 1] = e.key end return o end)())

    local t2 = counting_transport()
    local batches = {}
    local deleted, errors = client({ transport = t2 }):delete_prefix(bucket, "many/",
      { on_batch = function(d) batches[#batches + 1] = d end })
    assert.are.same({}, errors)
    assert.are.equal(n + 1, deleted)
    assert.are.same({ 1000, 2000, 2501 }, batches)
    assert.are.same({}, assert(s:list_all(bucket, { prefix = "many/" })))
  end)

  it("delete_prefix handles reserved-character keys in the XML body", function()
    local s = client()
    for _, k in ipairs(SPECIAL_KEYS) do assert(s:put_object(bucket, "delx/" .. k, "x")) end
    local deleted, errors = s:delete_prefix(bucket, "delx/")
    assert.are.same({}, errors)
    assert.are.equal(#SPECIAL_KEYS, deleted)
    assert.are.same({}, assert(s:list_all(bucket, { prefix = "delx/" })))
  end)

  it("makes presigned GET and PUT URLs that curl can use", function()
    local s = client()
    local k = "presign/ü file+1.txt"
    local put_url = assert(s:presign("PUT", bucket, k, 300))
    local f = assert(io.open(tmp, "wb"))
    f:write("uploaded by curl\n")
    f:close()
    local out, ok = sh("curl -sS --max-time 60 --noproxy '*' -o /dev/null -w '%{http_code}' -T " .. sh_quote(tmp) .. " "
      .. sh_quote(put_url))
    assert.is_truthy(ok)
    assert.are.equal("200", out)
    assert.are.equal("uploaded by curl\n", (s:get_object(bucket, k)))

    local get_url = assert(s:presign("GET", bucket, k, 300))
    out = sh("curl -sS --max-time 60 --noproxy '*' " .. sh_quote(get_url))
    assert.are.equal("uploaded by curl\n", out)
    -- a tampered signature is refused
    local bad = get_url:gsub("X%-Amz%-Signature=(%x)", function(c) return "X-Amz-Signature=" .. (c == "0" and "1" or "0") end)
    out = sh("curl -sS --max-time 60 --noproxy '*' " .. sh_quote(bad))
    assert.is_truthy(out:find("SignatureDoesNotMatch", 1, true))
    -- an expired URL is refused
    local old = assert(s:presign("GET", bucket, k, 1, { time = core.now() - 3600 }))
    out = sh("curl -sS --max-time 60 --noproxy '*' -w ' %{http_code}' " .. sh_quote(old))
    assert.is_truthy(out:find("403$"))
  end)

  it("rejects a wrong secret key with SignatureDoesNotMatch, never showing it", function()
    local wrong = "WRONG-secret-Value-0123456789abcdef"
    local s = client({ secret = wrong })
    local r, msg, code = s:get_object(bucket, "special/plus+sign")
    assert.is_nil(r)
    assert.are.equal("SignatureDoesNotMatch", code)
    assert.is_truthy(msg:find("GetObject s3://" .. bucket .. "/special/plus+sign: HTTP 403 SignatureDoesNotMatch", 1, true))
    assert.is_nil(msg:find(wrong, 1, true))
    local p, pmsg, pcode = s:put_object(bucket, "x", "y")
    assert.is_nil(p)
    assert.are.equal("SignatureDoesNotMatch", pcode)
    assert.is_nil(pmsg:find(wrong, 1, true))
    local l, _, lcode = s:list_all(bucket)
    assert.is_nil(l)
    assert.are.equal("SignatureDoesNotMatch", lcode)
  end)

  it("sends LocationConstraint outside us-east-1 (RGW refuses an unknown one)", function()
    local b = "lb-s3loc-" .. core.hex(core.random_bytes(4))
    local r, msg, code = client({ region = "eu-west-1" }):create_bucket(b)
    assert.is_nil(r)
    assert.are.equal("InvalidLocationConstraint", code)
    assert.is_truthy(msg:find("CreateBucket s3://" .. b, 1, true))
    -- RGW's zonegroup is "default": that constraint is accepted
    assert.are.same({ true, false }, { client():create_bucket(b, { region = "default" }) })
    assert(client():head_bucket(b))
    assert(client():delete_bucket(b))
    local h, _, hcode = client():head_bucket(b)
    assert.is_nil(h)
    assert.are.equal("NoSuchBucket", hcode)
  end)

  it("refuses to delete a non-empty bucket", function()
    local s = client()
    assert(s:put_object(bucket, "keep", "k"))
    local r, _, code = s:delete_bucket(bucket)
    assert.is_nil(r)
    assert.are.equal("BucketNotEmpty", code)
    assert(s:delete_object(bucket, "keep"))
    assert(s:delete_object(bucket, "keep"))      -- absent: still success
  end)

  it("addresses buckets as virtual hosts under s3.localhost", function()
    local vep = endpoint:gsub("//127%.0%.0%.1:", "//s3.localhost:")
    if vep == endpoint then
      pending("endpoint " .. endpoint .. " is not on 127.0.0.1; virtual hosts not testable")
      return
    end
    local t = counting_transport()
    local v = client({ endpoint = vep, addressing = "virtual", transport = t })
    assert(v:create_bucket(vbucket))
    assert(v:put_object(vbucket, "v dir/ü+1", "virtual", { content_type = "text/plain" }))
    assert.are.equal("virtual", (v:get_object(vbucket, "v dir/ü+1")))
    local keys = assert(v:list_all(vbucket))
    assert.are.equal("v dir/ü+1", keys[1].key)
    local vbase = vep:gsub("//", "//" .. vbucket .. ".", 1)
    assert.are.equal(vbase .. "/", t.urls[1])                       -- CreateBucket
    assert.are.equal(vbase .. "/v%20dir/%C3%BC%2B1", t.urls[2])     -- PutObject
    -- the object is the same through path-style
    assert.are.equal("virtual", (client():get_object(vbucket, "v dir/ü+1")))
    local url = assert(v:presign("GET", vbucket, "v dir/ü+1", 60))
    local want = vbase .. "/v%20dir/%C3%BC%2B1?"
    assert.are.equal(want, url:sub(1, #want))
    assert.are.equal("virtual", (sh("curl -sS --max-time 60 --noproxy '*' " .. sh_quote(url))))
    assert.are.same({ 1, {} }, { v:delete_prefix(vbucket, "") })
    assert(v:delete_bucket(vbucket))
  end)

  it("uploads and downloads files through the C engine", function()
    if type(core.s3_upload) ~= "function" then
      pending("core.s3_upload is not in this build yet")
      return
    end
    local s = client()
    local data = string.rep(core.random_bytes(200), 500) .. string.rep("z", 1000)
    local f = assert(io.open(tmp, "wb"))
    f:write(data)
    f:close()
    local calls = 0
    local up = assert(s:upload_file(tmp, bucket, "files/a b+ü.bin", { content_type = "application/x-lb",
      metadata = { origin = "spec" }, on_progress = function() calls = calls + 1 return true end }))
    assert.are.equal(#data, up.bytes)
    local head = assert(s:head_object(bucket, "files/a b+ü.bin"))
    assert.are.equal(#data, head.size)
    assert.are.equal("application/x-lb", head.content_type)
    assert.are.equal("spec", head.metadata.origin)
    local dst = tmp .. ".out"
    local down = assert(s:download_file(bucket, "files/a b+ü.bin", dst))
    assert.are.equal(#data, down.bytes)
    assert.are.equal("md5", down.verified)        -- one PUT: its ETag is the MD5
    local g = assert(io.open(dst, "rb"))
    local back = g:read("a")
    g:close()
    os.remove(dst)
    assert.are.equal(core.sha256(data), core.sha256(back))
    local r, _, code = s:download_file(bucket, "files/absent", dst)
    assert.is_nil(r)
    assert.is_truthy(code == "NoSuchKey" or code == "NotFound" or code == "HTTP_404", tostring(code))
    assert.is_nil(io.open(dst, "rb"))
    assert(s:delete_object(bucket, "files/a b+ü.bin"))
  end)
end)
