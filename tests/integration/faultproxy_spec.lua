-- The fault-injecting proxy (tests/servers/faultproxy.py) in front of Ceph
-- RGW: signed requests pass through unchanged, and every fault it offers
-- really happens (seen from the client and in the proxy's stats).
local core = require "luabatch.core"
local servers = require "helpers.servers"
local faultproxy = require "helpers.faultproxy"

describe("faultproxy in front of Ceph RGW #integration", function()
  local endpoint, key, secret, proxy
  local bucket = "lb-fp-" .. core.hex(core.random_bytes(4))
  local body = string.rep(core.random_bytes(256), 4096)  -- 1 MiB object

  -- One signed request through `base` (the proxy by default).
  local function s3(method, path, opts)
    opts = opts or {}
    local base = opts.base or proxy.endpoint
    local signed = assert(core.sigv4_sign({ method = method, url = base .. path, headers = {},
      body = opts.body or "", region = "us-east-1", service = "s3", access_key = key, secret_key = secret }))
    return core.http_request({ method = method, url = signed.url, headers = signed.headers, body = opts.body,
      read_timeout = opts.read_timeout, on_data = opts.on_data, timeout = opts.timeout or 60 })
  end

  lazy_setup(function()
    endpoint, key, secret = servers.rgw()
    assert(endpoint, key)
    proxy = assert(faultproxy.start(endpoint))
    local r = assert(s3("PUT", "/" .. bucket, { base = endpoint }))
    assert.are.equal(200, r.status)
    r = assert(s3("PUT", "/" .. bucket .. "/obj", { base = endpoint, body = body }))
    assert.are.equal(200, r.status)
  end)

  lazy_teardown(function()
    if proxy then proxy:stop() end
    if endpoint and key then
      for _, k in ipairs({ "obj", "put-ok", "put-reset", "put-503" }) do
        s3("DELETE", "/" .. bucket .. "/" .. k, { base = endpoint })
      end
      s3("DELETE", "/" .. bucket, { base = endpoint })
    end
    servers.stop_all()
  end)

  before_each(function() proxy:clear() end)

  it("forwards signed requests verbatim (SigV4 over the proxy's Host verifies) on kept-alive connections", function()
    local client = core.http_client()
    local function req(method, path, b)
      local signed = assert(core.sigv4_sign({ method = method, url = proxy.endpoint .. path, headers = {},
        body = b or "", region = "us-east-1", service = "s3", access_key = key, secret_key = secret }))
      return assert(client:request({ method = method, url = signed.url, headers = signed.headers, body = b }))
    end
    local put = req("PUT", "/" .. bucket .. "/put-ok", body)
    assert.are.equal(200, put.status)
    local get = req("GET", "/" .. bucket .. "/put-ok")
    assert.are.equal(200, get.status)
    assert.are.equal(core.sha256(body), core.sha256(get.body))
    local head = req("HEAD", "/" .. bucket .. "/put-ok")
    assert.are.equal(200, head.status)
    assert.are.equal(tostring(#body), head.headers["content-length"])
    client:close()
    local st = proxy:stats()
    assert.are.equal(3, st.requests)
    assert.are.equal(0, st.fired)
    assert.are.equal(3, #st.log)
    assert.are.equal(st.log[1].conn, st.log[2].conn)   -- one kept-alive connection for all three
    assert.are.equal(st.log[1].conn, st.log[3].conn)
  end)

  it("answers 503 SlowDown for the first K matching requests, then forwards", function()
    proxy:add({ match = { method = "GET", path_contains = "/obj" }, action = "status", status = 503,
      code = "SlowDown", times = 2 })
    for _ = 1, 2 do
      local r = assert(s3("GET", "/" .. bucket .. "/obj"))
      assert.are.equal(503, r.status)
      local doc = assert(core.xml_parse(r.body))
      assert.are.equal("Error", doc.name)
      assert.are.equal("SlowDown", doc[1].text)
    end
    local r = assert(s3("GET", "/" .. bucket .. "/obj"))
    assert.are.equal(200, r.status)
    assert.are.equal(#body, #r.body)
    assert.are.equal(2, proxy:stats().fired)
  end)

  it("answers 500 InternalError, drops the request body, and keeps the object untouched", function()
    proxy:add({ match = { method = "PUT", path_contains = "/put-503" }, action = "status", status = 500,
      code = "InternalError" })
    local r = assert(s3("PUT", "/" .. bucket .. "/put-503", { body = body }))
    assert.are.equal(500, r.status)
    assert.is_truthy(r.body:find("<Code>InternalError</Code>", 1, true))
    local miss = assert(s3("HEAD", "/" .. bucket .. "/put-503"))
    assert.are.equal(404, miss.status)                  -- never reached RGW
  end)

  it("matches on the query string and skips the first matches when told", function()
    proxy:add({ match = { method = "GET", query_contains = "x-probe=1" }, action = "status", status = 503,
      skip = 1, times = 1 })
    assert.are.equal(200, assert(s3("GET", "/" .. bucket .. "/obj")).status)          -- no match
    assert.are.equal(200, assert(s3("GET", "/" .. bucket .. "/obj?x-probe=1")).status) -- skipped
    assert.are.equal(503, assert(s3("GET", "/" .. bucket .. "/obj?x-probe=1")).status) -- fired
    assert.are.equal(200, assert(s3("GET", "/" .. bucket .. "/obj?x-probe=1")).status) -- used up
  end)

  it("resets the connection after N bytes of the request body; nothing is stored", function()
    proxy:add({ match = { method = "PUT", path_contains = "/put-reset" }, action = "reset_request_after",
      bytes = 100000 })
    local r, msg, code = s3("PUT", "/" .. bucket .. "/put-reset", { body = body })
    assert.is_nil(r)
    assert.is_truthy(code == "ECONNECT" or code == "EIO" or code == "EHTTP", tostring(code) .. " " .. msg)
    assert.are.equal(1, #proxy:faults("reset_request_after"))
    local miss = assert(s3("HEAD", "/" .. bucket .. "/put-reset", { base = endpoint }))
    assert.are.equal(404, miss.status)
  end)

  it("resets the connection after N bytes of the response body", function()
    proxy:add({ match = { method = "GET", path_contains = "/obj" }, action = "reset_response_after",
      bytes = 300000 })
    local got = 0
    local r, msg, code = s3("GET", "/" .. bucket .. "/obj", { on_data = function(c) got = got + #c end })
    assert.is_nil(r)
    assert.is_truthy(code == "ECONNECT" or code == "EIO" or code == "EHTTP", tostring(code) .. " " .. msg)
    assert.are.equal(300000, got)                       -- exactly N body bytes arrived
    assert.are.equal(1, #proxy:faults("reset_response_after"))
  end)

  it("stalls before the response headers past the client's read timeout", function()
    proxy:add({ match = { method = "GET" }, action = "stall", stall_seconds = 20 })
    local t0 = core.monotime()
    local r, _, code = s3("GET", "/" .. bucket .. "/obj", { read_timeout = 1 })
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_true(core.monotime() - t0 < 8)
    assert.are.equal(1, #proxy:faults("stall"))
  end)

  it("stalls after N response body bytes", function()
    proxy:add({ match = { method = "GET" }, action = "stall", bytes = 65536, stall_seconds = 20 })
    local got = 0
    local r, _, code = s3("GET", "/" .. bucket .. "/obj", { read_timeout = 1,
      on_data = function(c) got = got + #c end })
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal(65536, got)
    -- the proxy is still fine afterwards
    assert.are.equal(200, assert(s3("GET", "/" .. bucket .. "/obj")).status)
  end)
end)
