-- Specs for luabatch.s3 and luabatch.cli.s3 with a fake transport (no network).

local s3mod = require "luabatch.s3"
local cli = require "luabatch.cli.s3"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local retry = require "luabatch.retry"
local real_core = require "luabatch.core"

local NOW = 1369353600            -- 2013-05-24T00:00:00Z (the AWS presign example)


-- A transport answering from a script of responses / functions(opts).
local function fake_transport(script)
  local t = { calls = {} }
  function t.request(self, opts)
    self.calls[#self.calls + 1] = opts
    local r = table.remove(script, 1)
    assert(r, "fake transport: unexpected request " .. tostring(opts.method) .. " " .. tostring(opts.url))
    if type(r) == "function" then r = r(opts) end
    if r.err then return nil, r.err, r.code end
    r.headers = r.headers or {}
    return r
  end
  return t
end


local function header(list, name)
  name = name:lower()
  for _, kv in ipairs(list or {}) do
    if kv[1]:lower() == name then return kv[2] end
  end
  return nil
end


local function query_of(url)
  local q = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=?([^&]*)") do
    q[s3mod.url_decode(k)] = s3mod.url_decode(v)
  end
  return q
end


local fake_core = setmetatable({
  now = function() return NOW end,
  monotime = function() return 0 end,
  sleep = function() return true end,
}, { __index = real_core })


local function client(t, o)
  o = o or {}
  local env = o.env or { AWS_REGION = o.region or "us-east-1" }
  return s3mod.new({
    config = config.new({ env = env }),
    credentials = credentials.static({ access_key = o.access_key or "AKIDEXAMPLE",
      secret_key = o.secret_key or "SECRETEXAMPLEKEY", session_token = o.token }),
    transport = t,
    retry = retry.new({ rand = function() return 0.5 end, max_attempts = 1 }),
    core = o.core or fake_core,
    endpoint = o.endpoint,
    addressing = o.addressing,
    region = o.region,
  })
end


local function list_xml(keys, opts)
  opts = opts or {}
  local parts = { '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' }
  if opts.encoded then parts[#parts + 1] = "<EncodingType>url</EncodingType>" end
  parts[#parts + 1] = "<IsTruncated>" .. (opts.next and "true" or "false") .. "</IsTruncated>"
  if opts.next then parts[#parts + 1] = "<NextContinuationToken>" .. opts.next .. "</NextContinuationToken>" end
  parts[#parts + 1] = "<KeyCount>" .. #keys .. "</KeyCount>"
  for i, k in ipairs(keys) do
    parts[#parts + 1] = ("<Contents><Key>%s</Key><LastModified>2024-05-01T12:00:0%dZ</LastModified>"
      .. "<ETag>&quot;etag%d&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>")
      :format(k, i % 10, i, i * 10)
  end
  for _, p in ipairs(opts.prefixes or {}) do
    parts[#parts + 1] = "<CommonPrefixes><Prefix>" .. p .. "</Prefix></CommonPrefixes>"
  end
  parts[#parts + 1] = "</ListBucketResult>"
  return table.concat(parts)
end


describe("luabatch.s3 #unit", function()

  describe("helpers", function()
    it("encodes keys for the path, keeping '/' and unreserved characters", function()
      assert.are.equal("a%20b%2Bc%25d~e%2Af/%C3%BC.txt", s3mod.encode_key("a b+c%d~e*f/ü.txt"))
      assert.are.equal("dir//x%3F%23%26%3D", s3mod.encode_key("dir//x?#&="))
    end)

    it("decodes S3 url-encoded listing values ('+' is a space, %2B a plus)", function()
      assert.are.equal("a b+c", s3mod.url_decode("a+b%2Bc", true))
      assert.are.equal("a+b", s3mod.url_decode("a+b", false))
    end)

    it("parses s3:// URLs", function()
      assert.are.same({ "bkt", "dir/a b" }, { s3mod.parse_url("s3://bkt/dir/a b") })
      assert.are.same({ "bkt", "" }, { s3mod.parse_url("s3://bkt") })
      assert.are.same({ "bkt", "" }, { s3mod.parse_url("s3://bkt/") })
      local b, msg, code = s3mod.parse_url("http://x/y")
      assert.is_nil(b)
      assert.are.equal("EINVAL", code)
      assert.is_truthy(msg:find("http://x/y", 1, true))
      assert.is_nil((s3mod.parse_url("s3:///key")))
    end)

    it("accepts S3 bucket names and refuses the rest, naming the bucket and the rule", function()
      for _, b in ipairs({ "abc", "my-bucket", "a.b-c", "0ab", ("a"):rep(63) }) do
        assert.is_true(s3mod.check_bucket_name(b), b)
      end
      for _, b in ipairs({ "", "ab", ("a"):rep(64), "Abc", "a_b", "-ab", "ab-", ".ab", "ab.",
          "aud?tagging=", "aud?policy=", "aud?acl=", "aud#x", "a/b", "a%3Fb", "a b", "a\tb",
          "a\r\nb", "a\0b", "café" }) do
        local ok, msg, code = s3mod.check_bucket_name(b)
        assert.is_nil(ok, b)
        assert.are.equal("EINVAL", code)
        assert.is_truthy(msg:find("3-63 characters of a-z, 0-9, '.' and '-'", 1, true), msg)
      end
      local _, msg = s3mod.check_bucket_name("a\r\nX-Evil: 1")
      assert.are.equal("invalid bucket name 'a\\x0D\\x0AX-Evil: 1': S3 bucket names are 3-63 characters "
        .. "of a-z, 0-9, '.' and '-', starting and ending with a letter or digit", msg)
    end)

    it("refuses an s3:// URL whose bucket carries a query, fragment or escape", function()
      for _, url in ipairs({ "s3://aud?tagging=/k", "s3://aud?policy=", "s3://aud#x/k", "s3://a%2Fb/k",
          "s3://a b/k", "s3://AUD/k" }) do
        local b, msg, code = s3mod.parse_url(url)
        assert.is_nil(b, url)
        assert.are.equal("EINVAL", code)
        assert.is_truthy(msg:find(url, 1, true), msg)
        assert.is_truthy(msg:find("invalid bucket name", 1, true), msg)
      end
      -- a key may hold anything
      assert.are.same({ "aud", "k?tagging=#x %41 ü" }, { s3mod.parse_url("s3://aud/k?tagging=#x %41 ü") })
    end)

    it("chooses path-style for custom endpoints and non-DNS bucket names", function()
      assert.are.equal("virtual", s3mod.choose_addressing("auto", "default", "my-bucket"))
      assert.are.equal("path", s3mod.choose_addressing("auto", "default", "my.bucket"))
      assert.are.equal("path", s3mod.choose_addressing("auto", "default", "My_Bucket"))
      assert.are.equal("path", s3mod.choose_addressing("auto", "env", "my-bucket"))
      assert.are.equal("virtual", s3mod.choose_addressing("virtual", "env", "my-bucket"))
      assert.are.equal("path", s3mod.choose_addressing("path", "default", "my-bucket"))
    end)

    it("builds virtual-host bases, keeping scheme and port", function()
      assert.are.same({ "http://b1.s3.localhost:7480", false },
        { s3mod.bucket_base("http://s3.localhost:7480", "b1", "virtual") })
      assert.are.same({ "https://s3.amazonaws.com", true },
        { s3mod.bucket_base("https://s3.amazonaws.com", "b1", "path") })
    end)

    it("refuses XML-unsafe characters and escapes the rest", function()
      assert.are.equal("a&amp;b&lt;c&gt;&quot;&apos;&#10;", s3mod.xml_escape("a&b<c>\"'\n"))
      assert.is_nil(s3mod.xml_escape("bell\7"))
    end)

    it("detects dot path segments", function()
      assert.is_true(s3mod.dot_segment("a/../b"))
      assert.is_true(s3mod.dot_segment("./x"))
      assert.is_true(s3mod.dot_segment(".."))
      assert.is_false(s3mod.dot_segment("a/.hidden/..x/b.."))
    end)
  end)

  describe("addressing and key encoding on the wire", function()
    it("uses path-style URLs on a custom endpoint", function()
      local t = fake_transport({ { status = 200, headers = { etag = '"abc"' } } })
      local s = client(t, { env = { AWS_REGION = "us-east-1", AWS_ENDPOINT_URL_S3 = "http://127.0.0.1:9000/" } })
      local res = assert(s:put_object("bkt", "a b+c%d~e*f/ü", "data",
        { content_type = "text/plain", metadata = { Owner = "me", run = "7" } }))
      assert.are.equal("abc", res.etag)
      local call = t.calls[1]
      assert.are.equal("PUT", call.method)
      assert.are.equal("http://127.0.0.1:9000/bkt/a%20b%2Bc%25d~e%2Af/%C3%BC", call.url)
      assert.are.equal("data", call.body)
      assert.are.equal("text/plain", header(call.headers, "Content-Type"))
      assert.are.equal("me", header(call.headers, "x-amz-meta-owner"))
      assert.are.equal("7", header(call.headers, "x-amz-meta-run"))
      assert.is_truthy(header(call.headers, "Authorization"):find("Credential=AKIDEXAMPLE/", 1, true))
      -- the signed payload hash is the body's SHA-256
      assert.are.equal(real_core.sha256("data"), header(call.headers, "X-Amz-Content-Sha256"))
    end)

    it("uses virtual-host URLs on AWS for DNS-compatible buckets, path-style for dotted ones", function()
      local t = fake_transport({ { status = 200, body = "x" }, { status = 200, body = "y" } })
      local s = client(t, { region = "eu-west-1" })
      assert.are.equal("x", (s:get_object("my-bucket", "k/1")))
      assert.are.equal("y", (s:get_object("my.bucket", "k/1")))
      assert.are.equal("https://my-bucket.s3.eu-west-1.amazonaws.com/k/1", t.calls[1].url)
      assert.are.equal("https://s3.eu-west-1.amazonaws.com/my.bucket/k/1", t.calls[2].url)
      assert.are.equal("my-bucket.s3.eu-west-1.amazonaws.com", header(t.calls[1].headers, "Host"))
    end)

    it("follows the profile's s3 addressing_style", function()
      local dir = os.tmpname()
      local f = assert(io.open(dir, "w"))
      f:write("[default]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n")
      f:close()
      local t = fake_transport({ { status = 200 } })
      local s = s3mod.new({
        config = config.new({ env = { AWS_CONFIG_FILE = dir, AWS_SHARED_CREDENTIALS_FILE = dir .. ".none" } }),
        credentials = credentials.static({ access_key = "AK", secret_key = "SK" }),
        transport = t, core = fake_core,
      })
      os.remove(dir)
      assert.are.equal("path", s.addressing)
      assert(s:delete_object("my-bucket", "k"))
      assert.are.equal("https://s3.eu-west-1.amazonaws.com/my-bucket/k", t.calls[1].url)
    end)

    it("refuses keys with dot segments before sending anything", function()
      local t = fake_transport({})
      local s = client(t)
      local r, msg, code = s:put_object("bkt", "a/../b", "x")
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
      assert.is_truthy(msg:find("PutObject s3://bkt/a/../b", 1, true))
      assert.are.equal(0, #t.calls)
    end)

    it("refuses invalid bucket names in every call, before sending anything", function()
      local t = fake_transport({})
      local engine = 0
      local core = setmetatable({
        s3_upload = function() engine = engine + 1 return { bytes = 0 } end,
        s3_download = function() engine = engine + 1 return { bytes = 0 } end,
      }, { __index = fake_core })
      local s = client(t, { core = core, endpoint = "http://127.0.0.1:9000" })
      for _, b in ipairs({ "aud?tagging=", "aud?policy=", "aud?acl=", "aud#f", "a/b", "a%20b", "a b",
          "ab", "Aud" }) do
        local calls = {
          { "PutObject", function() return s:put_object(b, "k", "<Tagging/>") end },
          { "GetObject", function() return s:get_object(b, "k") end },
          { "HeadObject", function() return s:head_object(b, "k") end },
          { "DeleteObject", function() return s:delete_object(b, "k") end },
          { "CopyObject", function() return s:copy_object(b, "k", "dst", "k") end },
          { "CopyObject", function() return s:copy_object("src", "k", b, "k") end },
          { "ListObjectsV2", function() return s:list_page(b) end },
          { "ListObjectsV2", function() return s:list_all(b, { prefix = "p/" }) end },
          { "ListObjectsV2", function() return s:delete_prefix(b, "p/") end },
          { "HeadBucket", function() return s:head_bucket(b) end },
          { "CreateBucket", function() return s:create_bucket(b) end },
          { "DeleteBucket", function() return s:delete_bucket(b) end },
          { "Presign GET", function() return s:presign("GET", b, "k") end },
          { "PutObject", function() return s:upload_file("/tmp/f", b, "k") end },
          { "GetObject", function() return s:download_file(b, "k", "/tmp/never") end },
        }
        for _, c in ipairs(calls) do
          local r, msg, code = c[2]()
          assert.is_nil(r, c[1] .. " " .. b)
          assert.are.equal("EINVAL", code, c[1] .. " " .. b .. ": " .. tostring(msg))
          assert.is_truthy(msg:find("^" .. c[1] .. " s3://"), msg)
          assert.is_truthy(msg:find("invalid bucket name '" .. b .. "'", 1, true), msg)
          assert.is_truthy(msg:find("3-63 characters", 1, true), msg)
        end
        local seen = {}
        for e, msg, code in s:list(b) do seen[#seen + 1] = { e, msg, code } end
        assert.are.equal(1, #seen)
        assert.is_false(seen[1][1])
        assert.are.equal("EINVAL", seen[1][3])
      end
      assert.are.equal(0, #t.calls)     -- nothing was sent
      assert.are.equal(0, engine)       -- nor handed to the transfer engine
    end)

    it("keeps every key in the path: '?', '#', '%', spaces and unicode cannot add a query", function()
      local keys = { ["k?tagging=x"] = "k%3Ftagging%3Dx", ["?acl"] = "%3Facl", ["#frag/x"] = "%23frag/x",
        ["50% off/%3F"] = "50%25%20off/%253F", ["a b/ü+é"] = "a%20b/%C3%BC%2B%C3%A9",
        ["x?policy&uploads="] = "x%3Fpolicy%26uploads%3D" }
      local script = {}
      for _ = 1, 24 do script[#script + 1] = { status = 200, headers = { etag = '"e"' }, body = "" } end
      local t = fake_transport(script)
      for _, addressing in ipairs({ "path", "virtual" }) do
        local s = client(t, { addressing = addressing, region = "eu-west-1" })
        for k, enc in pairs(keys) do
          assert(s:put_object("bkt", k, "x"))
          assert(s:get_object("bkt", k))
          local base = addressing == "path" and "https://s3.eu-west-1.amazonaws.com/bkt/"
            or "https://bkt.s3.eu-west-1.amazonaws.com/"
          local n = #t.calls
          assert.are.equal(base .. enc, t.calls[n - 1].url)
          assert.are.equal(base .. enc, t.calls[n].url)
          assert.is_nil(t.calls[n].url:find("[?#]"))
          local url = assert(s:presign("GET", "bkt", k))
          assert.are.equal(base .. enc, url:match("^[^?]*"))
        end
      end
    end)

    it("raises on misuse", function()
      local s = client(fake_transport({}))
      assert.has_error(function() s:get_object("", "k") end)
      assert.has_error(function() s:get_object("b", nil) end)
      assert.has_error(function() s:put_object("b", "k", 42) end)
      assert.has_error(function() s:presign("GET", "b", "k", 0) end)
      assert.has_error(function() s3mod.new({ addressing = "dns" }) end)
    end)
  end)

  describe("objects and buckets", function()
    it("head_object decodes size, etag, content type and metadata; 404 is NoSuchKey", function()
      local t = fake_transport({
        { status = 200, headers = { ["content-length"] = "1234", etag = '"e1"', ["content-type"] = "a/b",
          ["last-modified"] = "Wed, 01 May 2024 12:00:00 GMT", ["x-amz-meta-lb-sha256"] = "abc-2" } },
        { status = 404, body = "" },
      })
      local s = client(t)
      local m = assert(s:head_object("bkt", "k"))
      assert.are.equal(1234, m.size)
      assert.are.equal("e1", m.etag)
      assert.are.equal("a/b", m.content_type)
      assert.are.equal("abc-2", m.metadata["lb-sha256"])
      assert.are.equal("Wed, 01 May 2024 12:00:00 GMT", m.last_modified)
      local r, msg, code = s:head_object("bkt", "nope")
      assert.is_nil(r)
      assert.are.equal("NoSuchKey", code)
      assert.is_truthy(msg:find("HeadObject s3://bkt/nope", 1, true))
    end)

    it("get_object returns the S3 error code and message", function()
      local t = fake_transport({ { status = 404, body = "<Error><Code>NoSuchKey</Code>"
        .. "<Message>The specified key does not exist.</Message></Error>" } })
      local r, msg, code = client(t):get_object("bkt", "a b")
      assert.is_nil(r)
      assert.are.equal("NoSuchKey", code)
      assert.is_truthy(msg:find("GetObject s3://bkt/a b: HTTP 404 NoSuchKey: The specified key", 1, true))
    end)

    it("create_bucket sends a LocationConstraint outside us-east-1 only", function()
      local t = fake_transport({ { status = 200 }, { status = 200 },
        { status = 409, body = "<Error><Code>BucketAlreadyOwnedByYou</Code><Message>m</Message></Error>" },
        { status = 409, body = "<Error><Code>BucketAlreadyExists</Code><Message>taken</Message></Error>" } })
      local s = client(t, { region = "eu-west-1", endpoint = "http://127.0.0.1:9000" })
      assert.are.same({ true, false }, { s:create_bucket("bk1") })
      local doc = assert(real_core.xml_parse(t.calls[1].body))
      assert.are.equal("CreateBucketConfiguration", doc.name)
      assert.are.equal("LocationConstraint", doc[1].name)
      assert.are.equal("eu-west-1", doc[1].text)
      assert.are.equal("http://127.0.0.1:9000/bk1", t.calls[1].url)
      assert(s:create_bucket("bk2", { region = "us-east-1" }))
      assert.is_nil(t.calls[2].body)
      assert.are.same({ true, true }, { s:create_bucket("bk1") })
      local r, _, code = s:create_bucket("bk1")
      assert.is_nil(r)
      assert.are.equal("BucketAlreadyExists", code)
    end)

    it("copy_object sends an encoded copy source and detects a 200 with an Error body", function()
      local t = fake_transport({
        { status = 200, body = "<CopyObjectResult><LastModified>2024-05-01T00:00:00Z</LastModified>"
          .. "<ETag>&quot;c1&quot;</ETag></CopyObjectResult>" },
        { status = 200, body = "<Error><Code>InternalError</Code><Message>try again</Message></Error>" },
      })
      local s = client(t, { endpoint = "http://127.0.0.1:9000" })
      local r = assert(s:copy_object("src", "a b/ü+", "dst", "x y", { metadata = { k = "v" } }))
      assert.are.equal("c1", r.etag)
      assert.are.equal("/src/a%20b/%C3%BC%2B", header(t.calls[1].headers, "x-amz-copy-source"))
      assert.are.equal("REPLACE", header(t.calls[1].headers, "x-amz-metadata-directive"))
      assert.are.equal("v", header(t.calls[1].headers, "x-amz-meta-k"))
      assert.are.equal("http://127.0.0.1:9000/dst/x%20y", t.calls[1].url)
      local r2, msg, code = s:copy_object("src", "a", "dst", "b")
      assert.is_nil(r2)
      assert.are.equal("InternalError", code)
      assert.is_truthy(msg:find("CopyObject s3://dst/b from s3://src/a", 1, true))
      assert.is_nil(header(t.calls[2].headers, "x-amz-metadata-directive"))
    end)
  end)

  describe("listing", function()
    it("walks every page with the continuation token and decodes url-encoded keys", function()
      local t = fake_transport({
        { status = 200, body = list_xml({ "p/a+b", "p/c%2Bd" }, { encoded = true, next = "tok 1/+" }) },
        { status = 200, body = list_xml({ "p/%C3%BC" }, { encoded = true, next = "tok2" }) },
        { status = 200, body = list_xml({ "p/z" }, { encoded = true }) },
      })
      local s = client(t, { endpoint = "http://127.0.0.1:9000" })
      local keys, sizes = {}, {}
      for e, msg in s:list("bkt", { prefix = "p/", page_size = 2, start_after = "p/0" }) do
        assert(e, msg)
        keys[#keys + 1] = e.key
        sizes[#sizes + 1] = e.size
      end
      assert.are.same({ "p/a b", "p/c+d", "p/ü", "p/z" }, keys)
      assert.are.same({ 10, 20, 10, 10 }, sizes)
      assert.are.equal(3, #t.calls)
      local q1, q2, q3 = query_of(t.calls[1].url), query_of(t.calls[2].url), query_of(t.calls[3].url)
      assert.are.equal("2", q1["list-type"])
      assert.are.equal("p/", q1.prefix)
      assert.are.equal("2", q1["max-keys"])
      assert.are.equal("url", q1["encoding-type"])
      assert.are.equal("p/0", q1["start-after"])
      assert.is_nil(q1["continuation-token"])
      assert.are.equal("tok 1/+", q2["continuation-token"])
      assert.is_nil(q2["start-after"])
      assert.are.equal("tok2", q3["continuation-token"])
      assert.is_truthy(t.calls[1].url:find("^http://127.0.0.1:9000/bkt%?"))
    end)

    it("yields common prefixes with a delimiter", function()
      local t = fake_transport({ { status = 200, body = list_xml({ "top.txt" }, { prefixes = { "a/", "b/" } }) } })
      local all = assert(client(t):list_all("bkt", { delimiter = "/" }))
      assert.are.equal(3, #all)
      assert.are.equal("top.txt", all[1].key)
      assert.are.equal("etag1", all[1].etag)
      assert.are.same({ prefix = "a/" }, all[2])
      assert.are.same({ prefix = "b/" }, all[3])
      assert.are.equal("/", query_of(t.calls[1].url).delimiter)
    end)

    it("yields false, msg, code once when a page fails, then stops", function()
      local t = fake_transport({
        { status = 200, body = list_xml({ "a" }, { next = "t" }) },
        { status = 403, body = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>" },
      })
      local seen, errs = {}, {}
      for e, msg, code in client(t):list("bkt") do
        if e then seen[#seen + 1] = e.key else errs[#errs + 1] = { msg, code } end
      end
      assert.are.same({ "a" }, seen)
      assert.are.equal(1, #errs)
      assert.are.equal("AccessDenied", errs[1][2])
      assert.is_truthy(errs[1][1]:find("ListObjectsV2 s3://bkt", 1, true))
      local r, _, code = client(fake_transport({ { status = 404, body =
        "<Error><Code>NoSuchBucket</Code></Error>" } })):list_all("bkt")
      assert.is_nil(r)
      assert.are.equal("NoSuchBucket", code)
    end)

    it("rejects a truncated page without a token instead of looping", function()
      local body = list_xml({ "a" }):gsub("<IsTruncated>false", "<IsTruncated>true")
      local r, msg, code = client(fake_transport({ { status = 200, body = body } })):list_all("bkt")
      assert.is_nil(r)
      assert.are.equal("EPARSE", code)
      assert.is_truthy(msg:find("NextContinuationToken", 1, true))
    end)
  end)

  describe("delete_prefix", function()
    it("deletes 2,500 keys in batches of 1,000 with Content-MD5 and reports per-key errors", function()
      local function page(from, to, nxt)
        local ks = {}
        for i = from, to do ks[#ks + 1] = ("d/k%04d&<x>"):format(i):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;") end
        return { status = 200, body = list_xml(ks, { next = nxt }) }
      end
      local deleted_bodies = {}
      local function del(fail_key)
        return function(opts)
          deleted_bodies[#deleted_bodies + 1] = opts.body
          local body = "<DeleteResult>"
          if fail_key then
            body = body .. "<Error><Key>" .. fail_key .. "</Key><Code>AccessDenied</Code>"
              .. "<Message>Access Denied</Message></Error>"
          end
          return { status = 200, body = body .. "</DeleteResult>" }
        end
      end
      local t = fake_transport({
        page(1, 1000, "t1"), del(nil),
        page(1001, 2000, "t2"), del("d/k1500&amp;&lt;x&gt;"),
        page(2001, 2500), del(nil),
      })
      local batches = {}
      local n, errors = client(t, { endpoint = "http://127.0.0.1:9000" }):delete_prefix("bkt", "d/",
        { on_batch = function(k) batches[#batches + 1] = k end })
      assert.are.equal(2499, n)
      assert.are.equal(1, #errors)
      assert.are.same({ key = "d/k1500&<x>", code = "AccessDenied", message = "Access Denied" }, errors[1])
      assert.are.same({ 1000, 1999, 2499 }, batches)
      assert.are.equal(6, #t.calls)
      for i, call in ipairs({ t.calls[2], t.calls[4], t.calls[6] }) do
        assert.are.equal("POST", call.method)
        assert.are.equal("http://127.0.0.1:9000/bkt?delete", call.url:match("^[^&]*"))
        assert.are.equal(real_core.base64(real_core.md5(call.body, "raw")), header(call.headers, "Content-MD5"))
        local doc = assert(real_core.xml_parse(call.body))
        assert.are.equal("Delete", doc.name)
        local keys = {}
        for _, el in ipairs(doc) do
          if el.name == "Object" then keys[#keys + 1] = el[1].text end
        end
        assert.are.equal(i < 3 and 1000 or 500, #keys)
        assert.are.equal(("d/k%04d&<x>"):format((i - 1) * 1000 + 1), keys[1])
      end
      assert.are.equal("true", real_core.xml_parse(deleted_bodies[1])[1].text)   -- Quiet
    end)

    it("falls back to single deletes for keys XML cannot carry", function()
      local t = fake_transport({
        { status = 200, body = list_xml({ "ok", "bell%07" }, { encoded = true }) },
        { status = 204 }, { status = 204 },
      })
      local n, errors = client(t, { endpoint = "http://h:1" }):delete_prefix("bkt", "")
      assert.are.equal(2, n)
      assert.are.same({}, errors)
      assert.are.equal("DELETE", t.calls[2].method)
      assert.are.equal("http://h:1/bkt/bell%07", t.calls[3].url)
    end)

    it("fails with the batch request's error", function()
      local t = fake_transport({ { status = 200, body = list_xml({ "a" }) },
        { status = 400, body = "<Error><Code>InvalidDigest</Code><Message>bad md5</Message></Error>" } })
      local n, msg, code = client(t):delete_prefix("bkt", "")
      assert.is_nil(n)
      assert.are.equal("InvalidDigest", code)
      assert.is_truthy(msg:find("DeleteObjects s3://bkt", 1, true))
    end)
  end)

  describe("presign", function()
    it("matches the AWS documentation example (virtual host, 24 h)", function()
      local s = client(fake_transport({}), { endpoint = "https://s3.amazonaws.com", addressing = "virtual",
        access_key = "AKIAIOSFODNN7EXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" })
      local url = assert(s:presign("GET", "examplebucket", "test.txt", 86400))
      assert.are.equal("https://examplebucket.s3.amazonaws.com/test.txt", url:match("^[^?]*"))
      local q = query_of(url)
      assert.are.equal("AWS4-HMAC-SHA256", q["X-Amz-Algorithm"])
      assert.are.equal("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request", q["X-Amz-Credential"])
      assert.are.equal("20130524T000000Z", q["X-Amz-Date"])
      assert.are.equal("86400", q["X-Amz-Expires"])
      assert.are.equal("host", q["X-Amz-SignedHeaders"])
      assert.are.equal("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404", q["X-Amz-Signature"])
    end)

    it("presigns path-style with encoded keys and a session token, without sending", function()
      local t = fake_transport({})
      local s = client(t, { endpoint = "http://127.0.0.1:7480", token = "TOKEN/+=" })
      local url = assert(s:presign("put", "bkt", "a b/ü", 600))
      assert.is_truthy(url:find("^http://127.0.0.1:7480/bkt/a%%20b/%%C3%%BC%?"))
      local q = query_of(url)
      assert.are.equal("600", q["X-Amz-Expires"])
      assert.are.equal("TOKEN/+=", q["X-Amz-Security-Token"])
      assert.is_nil(url:find("SECRETEXAMPLEKEY", 1, true))
      assert.are.equal(0, #t.calls)
    end)
  end)

  describe("file transfers", function()
    it("fills core.s3_upload / s3_download with endpoint, addressing and credentials", function()
      local got = {}
      local core = setmetatable({
        s3_upload = function(o) got.up = o return { bytes = 3, etag = "e" } end,
        s3_download = function(o) got.down = o return { bytes = 3, verified = "sha256" } end,
      }, { __index = fake_core })
      local s = client(fake_transport({}), { core = core, endpoint = "http://127.0.0.1:7480",
        token = "TOK" })
      local progress = function() return true end
      assert(s:upload_file("/tmp/f", "bkt", "a b/ü", { content_type = "x/y", metadata = { a = "1" },
        part_size = 8388608, on_progress = progress, bogus = true }))
      -- signed at the request path's clock (core.now, here a fixed time) plus the measured skew
      assert.are.equal(math.floor(NOW - os.time() + 0.5), got.up.time_offset)
      got.up.time_offset = nil
      assert.are.same({
        endpoint = "http://127.0.0.1:7480", bucket = "bkt", key = "a b/ü", region = "us-east-1",
        access_key = "AKIDEXAMPLE", secret_key = "SECRETEXAMPLEKEY", session_token = "TOK",
        path_style = true, file = "/tmp/f", content_type = "x/y", metadata = { a = "1" },
        part_size = 8388608, on_progress = progress, direction = "upload",
      }, got.up)
      assert(s:download_file("bkt", "k", "/tmp/out", { concurrency = 4 }))
      assert.are.equal("/tmp/out", got.down.file)
      assert.are.equal(4, got.down.concurrency)
      assert.is_true(got.down.path_style)

      local v = client(fake_transport({}), { core = core, region = "eu-west-1" })
      assert(v:upload_file(function() return nil end, "my-bucket", "k"))
      assert.is_false(got.up.path_style)
      assert.are.equal("https://s3.eu-west-1.amazonaws.com", got.up.endpoint)
      assert.are.equal("function", type(got.up.reader))
    end)

    it("re-runs a file upload unsigned once when the server refuses aws-chunked bodies, never a download", function()
      local transfer = require "luabatch.s3.transfer"
      local clock = { offset = function() return 0 end, probe = function() end }
      local calls = {}
      local f = function(t)
        calls[#calls + 1] = t.unsigned_payload or false
        if not t.unsigned_payload then return nil, "PutObject s3://b/k: HTTP 501 NotImplemented", "NotImplemented" end
        return { bytes = 1 }
      end
      local t = { file = "/tmp/f", bucket = "b", key = "k", direction = "upload" }
      assert(transfer.run(f, t, clock))
      assert.are.same({ false, true }, calls)
      calls = {}
      local r, _, code = transfer.run(f, { file = "/tmp/f", bucket = "b", key = "k" }, clock)   -- a download
      assert.is_nil(r)
      assert.are.equal("NotImplemented", code)
      assert.are.same({ false }, calls)
      calls = {}
      r = transfer.run(f, { reader = function() end, bucket = "b", key = "k", direction = "upload" }, clock)
      assert.is_nil(r)                                                      -- a stream cannot go again
      assert.are.same({ false }, calls)
    end)

    it("re-runs the engine once with the server's clock or fresh credentials, and hints when skew stays", function()
      local transfer = require "luabatch.s3.transfer"
      local offset, probes, seen = 0, 0, {}
      local clock = { offset = function() return offset end,
        probe = function() probes = probes + 1; offset = -1200 end }
      local f = function(t)
        seen[#seen + 1] = t.time_offset
        if t.time_offset ~= -1200 then return nil, "PutObject s3://b/k: HTTP 403 RequestTimeTooSkewed", "RequestTimeTooSkewed" end
        return { bytes = 1 }
      end
      assert(transfer.run(f, { file = "/tmp/f" }, clock))
      assert.are.same({ 0, -1200 }, seen)
      assert.are.equal(1, probes)
      -- a stream cannot be re-sent: one attempt, and a hint naming the measured skew
      offset, seen = 0, {}
      local r, msg, code = transfer.run(f, { reader = function() end }, clock)
      assert.is_nil(r)
      assert.are.equal("RequestTimeTooSkewed", code)
      assert.are.same({ 0 }, seen)
      assert.is_truthy(msg:find("differs from the server's by -1200 s", 1, true), msg)
      -- ExpiredToken: once more with the credentials refresh() fetched
      local keys = {}
      local g = function(t)
        keys[#keys + 1] = t.access_key
        if t.access_key == "OLD" then return nil, "UploadPart: HTTP 400 ExpiredToken", "ExpiredToken" end
        return { bytes = 1 }
      end
      clock.refresh = function() return { access_key = "NEW", secret_key = "s" } end
      assert(transfer.run(g, { file = "/tmp/f", access_key = "OLD" }, clock))
      assert.are.same({ "OLD", "NEW" }, keys)
    end)

    it("reports a build without the transfer engine", function()
      local core = setmetatable({ s3_upload = false, s3_download = false }, { __index = fake_core })
      local r, msg, code = client(fake_transport({}), { core = core }):download_file("b", "k", "/tmp/x")
      assert.is_nil(r)
      assert.are.equal("ENOTSUP", code)
      assert.is_truthy(msg:find("GetObject s3://b/k", 1, true))
    end)
  end)
end)


describe("luabatch.cli.s3 #unit", function()
  local function run(args, t, o)
    local out, err = {}, {}
    o = o or {}
    local code = cli.run(args, {
      stdout = function(s) out[#out + 1] = s end,
      stderr = function(s) err[#err + 1] = s end,
      isatty = function() return o.tty or false end,
      client = client(t or fake_transport({}), o),
    })
    return code, table.concat(out), table.concat(err)
  end

  it("exits 2 on bad usage, 0 on --help", function()
    for _, args in ipairs({ {}, { "frob" }, { "cp", "a" }, { "cp", "a", "b" }, { "rm" },
        { "presign", "s3://bkt/k", "--expires", "0" }, { "ls", "--nope" }, { "mb", "s3://bkt/k" },
        { "rm", "s3://bkt" }, { "cp", "s3://bkt", "x" }, { "cp", "a", "s3://bkt/k", "--part-size", "6G" },
        { "cp", "a", "s3://bkt/k", "--part-size", "99999999999999999999G" } }) do
      local code, _, err = run(args)
      assert.are.equal(2, code, table.concat(args, " "))
      assert.is_truthy(err:find("luabatch s3", 1, true))
    end
    local code, out = run({ "--help" })
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage: luabatch s3", 1, true))
  end)

  it("abort-uploads: every page of ListMultipartUploads under the prefix, each upload aborted, a line each", function()
    local page1 = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>p/a</NextKeyMarker>"
      .. "<NextUploadIdMarker>u1</NextUploadIdMarker><Upload><Key>p/a</Key><UploadId>u1</UploadId>"
      .. "<Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload></ListMultipartUploadsResult>"
    local page2 = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>p/b c</Key>"
      .. "<UploadId>u2</UploadId><Initiated>2026-01-01T00:00:01.000Z</Initiated></Upload></ListMultipartUploadsResult>"
    local t = fake_transport({ { status = 200, body = page1 }, { status = 200, body = page2 },
      { status = 204, body = "" },
      { status = 404, body = "<Error><Code>NoSuchUpload</Code></Error>" } })   -- already gone: fine
    local code, out, err = run({ "abort-uploads", "s3://bkt/p/" }, t, { endpoint = "http://127.0.0.1:7480" })
    assert.are.equal(0, code, err)
    assert.are.equal("aborted s3://bkt/p/a (upload u1, initiated 2026-01-01T00:00:00.000Z)\n"
      .. "aborted s3://bkt/p/b c (upload u2, initiated 2026-01-01T00:00:01.000Z)\n", out)
    local q1, q2 = query_of(t.calls[1].url), query_of(t.calls[2].url)
    assert.are.equal("p/", q1.prefix)
    assert.is_nil(q1["key-marker"])
    assert.are.equal("p/a", q2["key-marker"])
    assert.are.equal("u1", q2["upload-id-marker"])
    assert.are.equal("DELETE", t.calls[3].method)
    assert.are.equal("u1", query_of(t.calls[3].url).uploadId)
    assert.is_truthy(t.calls[4].url:find("/bkt/p/b%20c?", 1, true), t.calls[4].url)
    -- --dry-run lists only; --older-than spares the young; a bad age is bad usage
    t = fake_transport({ { status = 200, body = page2 } })
    code, out = run({ "abort-uploads", "s3://bkt/p/", "--dry-run", "--older-than", "1d" }, t)
    assert.are.equal(0, code)
    assert.is_truthy(out:find("^would abort s3://bkt/p/b c"), out)
    assert.are.equal(1, #t.calls)
    code, _, err = run({ "abort-uploads", "s3://bkt/p/", "--older-than", "soon" })
    assert.are.equal(2, code)
    assert.is_truthy(err:find("--older-than wants Nd, Nh or Nm", 1, true) and err:find("'soon'", 1, true), err)
  end)

  it("exits 2 on a bucket name S3 would not accept, naming it and the rule, and sends nothing", function()
    local f = os.tmpname()
    local h = assert(io.open(f, "w"))
    h:write("<Tagging><TagSet><Tag><Key>owned</Key><Value>yes</Value></Tag></TagSet></Tagging>")
    h:close()
    local t = fake_transport({})
    for _, c in ipairs({       -- { bucket named in the error, args... }
        { "aud?tagging=", "cp", f, "s3://aud?tagging=/k" }, { "aud?policy=", "cp", f, "s3://aud?policy=/k" },
        { "aud?acl=", "cp", f, "s3://aud?acl=/" }, { "aud?tagging=", "cp", "s3://aud?tagging=/k", f },
        { "aud#x", "cp", "s3://aud#x/k", "s3://bkt/k" },
        { "aud?acl=", "cp", "-r", "s3://aud?acl=/p/", "s3://bkt/p/" },
        { "aud?tagging=", "ls", "s3://aud?tagging=" }, { "aud?tagging=", "rm", "s3://aud?tagging=/k" },
        { "aud?tagging=", "rm", "-r", "s3://aud?tagging=/" }, { "aud?acl=", "mb", "s3://aud?acl=" },
        { "aud?tagging=", "presign", "s3://aud?tagging=/k" }, { "Aud", "cp", f, "s3://Aud/k" } }) do
      local args = { (table.unpack or unpack)(c, 2) }
      local code, out, err = run(args, t)
      assert.are.equal(2, code, table.concat(args, " ") .. ": " .. err)
      assert.are.equal("", out)
      assert.is_truthy(err:find("invalid bucket name '" .. c[1] .. "'", 1, true), err)
      assert.is_truthy(err:find("3-63 characters", 1, true), err)
    end
    os.remove(f)
    assert.are.equal(0, #t.calls)
  end)

  it("lists objects and prefixes", function()
    local t = fake_transport({ { status = 200, body = list_xml({ "p/top.txt" }, { prefixes = { "p/d/" } }) } })
    local code, out = run({ "ls", "s3://bkt/p/" }, t)
    assert.are.equal(0, code)
    assert.are.equal("2024-05-01 12:00:01         10 p/top.txt\n"
      .. string.rep(" ", 19) .. "        PRE p/d/\n", out)
    assert.are.equal("/", query_of(t.calls[1].url).delimiter)
  end)

  it("exits 1 and names operation and target when S3 fails", function()
    local t = fake_transport({ { status = 404, body = "<Error><Code>NoSuchBucket</Code><Message>nope</Message></Error>" } })
    local code, out, err = run({ "ls", "-r", "s3://missing/x" }, t)
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.is_truthy(err:find("luabatch s3 ls: ListObjectsV2 s3://missing/x: HTTP 404 NoSuchBucket", 1, true))
    assert.is_nil(query_of(t.calls[1].url).delimiter)
  end)

  it("rm -r reports each refused key and exits 1", function()
    local t = fake_transport({ { status = 200, body = list_xml({ "d/a", "d/b" }) },
      { status = 200, body = "<DeleteResult><Error><Key>d/b</Key><Code>AccessDenied</Code>"
        .. "<Message>denied</Message></Error></DeleteResult>" } })
    local code, _, err = run({ "rm", "-r", "s3://bkt/d" }, t)
    assert.are.equal(1, code)
    assert.are.equal("d/", query_of(t.calls[1].url).prefix)
    assert.is_truthy(err:find("s3://bkt/d/b: AccessDenied: denied", 1, true))
  end)

  it("prints a presigned URL", function()
    local code, out = run({ "presign", "--expires", "60", "s3://bkt/a b" }, nil, { endpoint = "http://h:1" })
    assert.are.equal(0, code)
    assert.is_truthy(out:find("^http://h:1/bkt/a%%20b%?.*X%-Amz%-Expires=60"))
  end)

  it("formats the progress line with bytes, percentage, rate and ETA", function()
    local line = cli.progress_line("f -> s3://b/k", 50 * 1048576, 100 * 1048576, 5, 100)
    assert.are.equal("f -> s3://b/k [##########----------]  50% 50.0 MiB / 100.0 MiB 10.0 MiB/s ETA 0:05", line)
    local long = cli.progress_line(string.rep("x", 200), 1, 2, 1, 79)
    assert.is_true(#long <= 81)      -- "…" is 3 bytes, 1 column
    assert.is_truthy(long:find("^…x"))
    assert.are.equal("1:01:01", cli.human_duration(3661))
    assert.are.equal("--:--", cli.human_duration(nil))
    assert.are.equal("0 B", cli.human_bytes(0))
  end)
end)
