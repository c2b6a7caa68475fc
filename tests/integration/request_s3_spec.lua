-- The generic request path (sign, send, retry, error decoding) against a
-- real SigV4-verifying peer: Ceph RGW speaking S3 (rest-xml).
local core = require "luabatch.core"
local config = require "luabatch.config"
local credentials = require "luabatch.credentials"
local request = require "luabatch.request"
local servers = require "helpers.servers"

describe("luabatch.request against Ceph RGW #integration", function()
  local endpoint, key, secret
  local bucket = "lb-req-" .. core.hex(core.random_bytes(4))

  local function client(secret_key, extra)
    local opts = {
      service = "s3", protocol = "rest-xml", region = "us-east-1",
      config = config.new({ env = {}, endpoint_url = endpoint, region = "us-east-1" }),
      credentials = credentials.new({ access_key = key, secret_key = secret_key or secret, env = {} }),
    }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return request.new(opts)
  end

  lazy_setup(function()
    local reason
    endpoint, key, secret = servers.rgw()
    reason = key
    assert(endpoint, reason)
  end)

  lazy_teardown(function()
    if endpoint then
      local c = client()
      c:send({ method = "DELETE", path = "/" .. bucket .. "/dir/a%20b%2Bc.txt", operation = "DeleteObject" })
      c:send({ method = "DELETE", path = "/" .. bucket, operation = "DeleteBucket" })
    end
    servers.stop_all()
  end)

  it("creates a bucket, puts, gets and lists an object with a reserved-character key", function()
    local c = client()
    assert(c:send({ method = "PUT", path = "/" .. bucket, operation = "CreateBucket" }))
    local body = "hello, rgw\n" .. string.rep("x", 1000)
    local put = assert(c:send({ method = "PUT", path = "/" .. bucket .. "/dir/a%20b%2Bc.txt", body = body,
      headers = { ["Content-Type"] = "text/plain" }, operation = "PutObject" }))
    assert.are.equal(200, put.status)
    local got = assert(c:send({ method = "GET", path = "/" .. bucket .. "/dir/a%20b%2Bc.txt", operation = "GetObject" }))
    assert.are.equal(body, got.body)
    assert.are.equal("text/plain", got.headers["content-type"])
    local list = assert(c:send({ method = "GET", path = "/" .. bucket,
      query = { ["list-type"] = "2", prefix = "dir/" }, operation = "ListObjectsV2" }))
    local doc = assert(core.xml_parse(list.body))
    local keys = {}
    for _, el in ipairs(doc) do
      if el.name == "Contents" then
        for _, f in ipairs(el) do if f.name == "Key" then keys[#keys + 1] = f.text end end
      end
    end
    assert.are.same({ "dir/a b+c.txt" }, keys)
  end)

  it("turns an S3 XML error into nil, message, code", function()
    local c = client()
    local resp, msg, code = c:send({ method = "GET", path = "/" .. bucket .. "/missing", operation = "GetObject" })
    assert.is_nil(resp)
    assert.are.equal("NoSuchKey", code)
    assert.is_truthy(msg:find("GetObject", 1, true))
    assert.is_truthy(msg:find("HTTP 404", 1, true))
  end)

  it("reports an empty-bodied HEAD 404 by status", function()
    local resp, _, code = client():send({ method = "HEAD", path = "/" .. bucket .. "/missing", operation = "HeadObject" })
    assert.is_nil(resp)
    assert.are.equal("NotFound", code)
  end)

  it("rejects a wrong secret with SignatureDoesNotMatch and never shows the secret", function()
    local wrong = "WRONG-secret-value-1234567890"
    local resp, msg, code = client(wrong):send({ method = "GET", path = "/" .. bucket .. "/x", operation = "GetObject" })
    assert.is_nil(resp)
    assert.are.equal("SignatureDoesNotMatch", code)
    assert.is_truthy(msg:find("HTTP 403", 1, true))
    assert.is_nil(msg:find(wrong, 1, true))
  end)

  it("corrects a skewed clock from the server's Date and succeeds", function()
    -- Pretend the local clock is 20 minutes fast: RGW answers
    -- RequestTimeTooSkewed; the path measures the offset and re-signs once.
    local fake_core = setmetatable({ now = function() return core.now() + 1200 end }, { __index = core })
    local c = client(nil, { core = fake_core })
    local resp = assert(c:send({ method = "GET", path = "/" .. bucket, query = { ["list-type"] = "2" },
      operation = "ListObjectsV2" }))
    assert.are.equal(200, resp.status)
    assert.is_true(math.abs(c:skew() + 1200) < 30)
  end)
end)
