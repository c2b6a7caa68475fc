-- Specs for the SigV4 binding: core.sigv4_sign, core.sha256_file,
-- core.sigv4_cache_stats (the C core has its own vector tests in
-- tests/c/test_sigv4.c; this checks the Lua contract).

local core = require "luabatch.core"

local function base(extra)
  local r = {
    url = "https://example.amazonaws.com/", service = "service", region = "us-east-1",
    access_key = "AKIDEXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    date = "20150830T123600Z",
  }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function header(res, name)
  local found
  for _, h in ipairs(res.headers) do
    if h[1]:lower() == name:lower() then found = h[2] end
  end
  return found
end


describe("luabatch.core.sigv4_sign #unit", function()
  it("signs get-vanilla and returns every stage (debug = true)", function()
    local res = assert(core.sigv4_sign(base({ debug = true })))
    assert.are.equal("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", res.signature)
    assert.are.equal("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
      .. "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      res.canonical_request)
    assert.are.equal("host;x-amz-date", res.signed_headers)
    assert.are.equal("20150830/us-east-1/service/aws4_request", res.credential_scope)
    assert.are.equal("20150830T123600Z", res.amz_date)
    assert.are.equal("https://example.amazonaws.com/", res.url)
    assert.are.equal(res.authorization, header(res, "Authorization"))
    assert.are.equal("example.amazonaws.com", header(res, "Host"))
  end)

  it("leaves the canonical request and string to sign out unless debug is set", function()
    local res = assert(core.sigv4_sign(base()))
    assert.is_nil(res.canonical_request)
    assert.is_nil(res.string_to_sign)
    assert.are.equal("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", res.signature)
    local dbg = assert(core.sigv4_sign(base({ debug = true })))
    assert.are.equal(res.signature, dbg.signature)
    assert.truthy(dbg.string_to_sign:find("^AWS4%-HMAC%-SHA256\n20150830T123600Z\n"))
  end)

  it("accepts time as epoch seconds and headers as a map or a list", function()
    local req = base({ headers = { ["My-Header1"] = "value1" } })
    req.date, req.time = nil, 1440938160
    local a = assert(core.sigv4_sign(req))
    local b = assert(core.sigv4_sign(base({ headers = { { "my-header1", "  value1 " } } })))
    assert.are.equal(a.signature, b.signature)
    assert.are.equal("host;my-header1;x-amz-date", a.signed_headers)
  end)

  it("uses S3 rules for service s3: verbatim path and X-Amz-Content-Sha256", function()
    local res = assert(core.sigv4_sign(base({ service = "s3", url = "https://b.s3.amazonaws.com/a%20b//c",
                                             debug = true })))
    assert.truthy(res.canonical_request:find("^GET\n/a%%20b//c\n"))
    assert.are.equal(res.payload_hash, header(res, "X-Amz-Content-Sha256"))
    local generic = assert(core.sigv4_sign(base({ url = "https://h/a%20b//c", debug = true })))
    assert.truthy(generic.canonical_request:find("^GET\n/a%%2520b/c\n"))
    assert.is_nil(header(generic, "X-Amz-Content-Sha256"))
  end)

  it("presigns with a session token, which S3 signs as UNSIGNED-PAYLOAD", function()
    local res = assert(core.sigv4_sign(base({ service = "s3", mode = "query", expires = 60,
                                             session_token = "tok/en" })))
    assert.are.equal("UNSIGNED-PAYLOAD", res.payload_hash)
    assert.is_nil(res.authorization)
    assert.truthy(res.url:find("&X-Amz-Expires=60&", 1, true))
    local tail = "&X-Amz-Security-Token=tok%2Fen&X-Amz-Signature=" .. res.signature
    assert.are.equal(tail, res.url:sub(-#tail))
  end)

  it("hashes body, body_file ranges and sha256_file alike", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local data = ("0123456789"):rep(10000)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    assert.are.equal(core.sha256(data), core.sha256_file(path))
    assert.are.equal(core.sha256(data:sub(11, 5010)), core.sha256_file(path, 10, 5000))
    local a = assert(core.sigv4_sign(base({ method = "PUT", body = data:sub(101, 300) })))
    local b = assert(core.sigv4_sign(base({ method = "PUT", body_file = path, body_offset = 100,
                                           body_length = 200 })))
    assert.are.equal(a.signature, b.signature)
    assert.are.equal(core.sha256(data:sub(101, 300)), b.payload_hash)
  end)

  it("returns nil, msg, code for an unreadable body file", function()
    local res, msg, code = core.sigv4_sign(base({ body_file = "/nonexistent/body" }))
    assert.is_nil(res)
    assert.truthy(msg:find("/nonexistent/body", 1, true))
    assert.are.equal("EIO", code)
    res, msg, code = core.sha256_file("/nonexistent/body")
    assert.is_nil(res)
    assert.are.equal("EIO", code)
    res, msg, code = core.sha256_file(os.tmpname(), 0, 10)  -- empty file, range past the end
    assert.is_nil(res)
    assert.are.equal("EIO", code)
  end)

  it("raises 'bad argument #1' naming the field on misuse", function()
    local cases = {
      { base({ url = 42 }), "url: string expected, got number" },
      { base({ secret_key = false }), "secret_key: string expected, got boolean" },
      { base({ mode = "cookie" }), "mode:" },
      { base({ expires = 0, mode = "query" }), "expires:" },
      { base({ headers = { { "Bad Name", "v" } } }), "headers:" },
      { base({ headers = { { "X", "a\r\nInjected: 1" } } }), "headers:" },
      { base({ url = "no-scheme" }), "url:" },
      { base({ date = "2015-08-30" }), "date:" },
      { base({ s3 = "yes" }), "s3: boolean expected" },
      { base({ body = "x", body_file = "/f" }), "body:" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(core.sigv4_sign, c[1])
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1 to 'sigv4_sign' (" .. c[2], 1, true), err)
      assert.is_nil(err:find("wJalrXUtnFEMI", 1, true))
    end
    assert.has_error(function() core.sigv4_sign("GET") end)
  end)

  it("caches signing keys", function()
    local h0, m0 = core.sigv4_cache_stats()
    assert(core.sigv4_sign(base({ region = "eu-north-1" })))
    assert(core.sigv4_sign(base({ region = "eu-north-1" })))
    local h1, m1 = core.sigv4_cache_stats()
    assert.are.equal(h0 + 1, h1)
    assert.are.equal(m0 + 1, m1)
  end)
end)
