-- luabatch.transport.ngx against a fake `ngx` table: the subrequest
-- (ngx.location.capture with vars), the loopback (a fake cosocket), the
-- response mapping, errors, phases, and luabatch.aws.client.options' automatic
-- selection under ngx_lua.

local tngx = require "luabatch.transport.ngx"

-- A scripted cosocket: `script` is the raw answer of the loopback; sent
-- bytes are collected in sock.sent.
local function fake_socket(script, o)
  o = o or {}
  local sock = { sent = {}, closed = false, kept = nil, pos = 1, data = script or "" }
  function sock:settimeouts(c, s, r) self.timeouts = { c, s, r } end
  function sock:connect(path)
    self.path = path
    if o.connect_err then return nil, o.connect_err end
    return 1
  end
  function sock:send(t)
    self.sent[#self.sent + 1] = type(t) == "table" and table.concat(t) or t
    if o.send_err then return nil, o.send_err end
    return #self.sent[#self.sent]
  end
  function sock:receive(p)
    if o.receive_err then return nil, o.receive_err end
    local d = self.data
    if p == "*l" then
      local i = d:find("\n", self.pos, true)
      if not i then return nil, "closed" end
      local line = d:sub(self.pos, i - 1):gsub("\r$", "")
      self.pos = i + 1
      return line
    elseif p == "*a" then
      local rest = d:sub(self.pos)
      self.pos = #d + 1
      return rest
    else
      if self.pos + p - 1 > #d then return nil, "closed" end
      local chunk = d:sub(self.pos, self.pos + p - 1)
      self.pos = self.pos + p
      return chunk
    end
  end
  function sock:setkeepalive(ms, n) self.kept = { ms, n } return 1 end
  function sock:close() self.closed = true return 1 end
  return sock
end


local function fake_ngx(o)
  o = o or {}
  local ngx = {
    HTTP_GET = 2, HTTP_HEAD = 4, HTTP_POST = 8, HTTP_PUT = 16, HTTP_DELETE = 32,
    HTTP_PATCH = 16384, HTTP_OPTIONS = 512,
    phase = o.phase or "content",
    captures = {},
    sockets = {},
    clock = 1000,
  }
  ngx.location = {
    capture = function(uri, opts)
      ngx.captures[#ngx.captures + 1] = { uri = uri, opts = opts }
      return ngx.next_res or { status = 200, header = {}, body = "" }
    end,
  }
  ngx.socket = {
    tcp = function()
      local s = fake_socket(ngx.next_answer, ngx.sock_opts)
      ngx.sockets[#ngx.sockets + 1] = s
      return s
    end,
  }
  ngx.get_phase = function() return ngx.phase end
  ngx.now = function() return ngx.clock end
  ngx.update_time = function() end
  ngx.sleep = function(s) ngx.clock = ngx.clock + s end
  ngx.config = { prefix = function() return "/srv/ngx/" end }
  return ngx
end


describe("luabatch.transport.ngx #unit", function()
  local ngx, t

  before_each(function()
    ngx = fake_ngx()
    t = tngx.new({ ngx = ngx })
  end)

  describe("available()", function()
    it("needs an ngx_lua ngx table outside the init phase", function()
      assert.is_false((tngx.available(false)))
      assert.is_false((tngx.available({ location = {} })))
      assert.is_true(tngx.available(ngx))
      ngx.phase = "timer"
      assert.is_true(tngx.available(ngx))
      ngx.phase = "init"
      local ok, why = tngx.available(ngx)
      assert.is_false(ok)
      assert.matches("init", why)
    end)
  end)

  describe("the subrequest (request phases)", function()
    it("captures the proxy location with the target, the URI and each header as vars", function()
      ngx.next_res = { status = 200, header = { ["Content-Type"] = "application/json" }, body = "{}" }
      local resp = assert(t:request({
        method = "POST", url = "https://batch.us-east-1.amazonaws.com/v1/describejobs?a=b%20c",
        headers = { { "Host", "batch.us-east-1.amazonaws.com" }, { "Authorization", "AWS4 x" },
          { "X-Amz-Date", "20260101T000000Z" }, { "Content-Type", "application/json" },
          { "Content-Length", "9" }, { "Connection", "close" } },
        body = '{"jobs":[]}',
      }))
      assert.are.equal(1, #ngx.captures)
      local c = ngx.captures[1]
      assert.are.equal("/_luabatch/aws", c.uri)
      assert.are.equal(ngx.HTTP_POST, c.opts.method)
      assert.are.equal('{"jobs":[]}', c.opts.body)
      local v = c.opts.vars
      assert.are.equal("https://batch.us-east-1.amazonaws.com", v.luabatch_target)
      assert.are.equal("/v1/describejobs?a=b%20c", v.luabatch_uri)
      assert.are.equal("batch.us-east-1.amazonaws.com", v.lbh_host)
      assert.are.equal("AWS4 x", v.lbh_authorization)
      assert.are.equal("20260101T000000Z", v.lbh_x_amz_date)
      assert.are.equal("application/json", v.lbh_content_type)
      -- every other header variable is set empty (no stale value, no header)
      assert.are.equal("", v.lbh_range)
      assert.are.equal("", v.lbh_x_amz_security_token)
      -- nginx computes Content-Length and owns Connection
      for k in pairs(v) do assert.is_nil(k:find("length") or k:find("connection")) end
      assert.are.equal(200, resp.status)
      assert.are.equal("{}", resp.body)
      assert.are.equal(2, resp.bytes_in)
    end)

    it("adds Host from the URL (with its port) and uses a configured location", function()
      t = tngx.new({ ngx = ngx, location = "/my/aws" })
      assert(t:request({ url = "http://127.0.0.1:9000/bucket/key" }))
      local c = ngx.captures[1]
      assert.are.equal("/my/aws", c.uri)
      assert.are.equal(ngx.HTTP_GET, c.opts.method)
      assert.is_nil(c.opts.body)    -- a GET carries none (nor the parent's)
      assert.are.equal("127.0.0.1:9000", c.opts.vars.lbh_host)
      assert.are.equal("http://127.0.0.1:9000", c.opts.vars.luabatch_target)
      assert.are.equal("/bucket/key", c.opts.vars.luabatch_uri)
    end)

    it("gives PUT/POST without a body an empty one (the parent's body never leaks in)", function()
      assert(t:request({ method = "POST", url = "http://h/x" }))
      assert.are.equal("", ngx.captures[1].opts.body)
      assert(t:request({ method = "DELETE", url = "http://h/" }))
      assert.is_nil(ngx.captures[2].opts.body)
      assert.are.equal("/", ngx.captures[2].opts.vars.luabatch_uri)
    end)

    it("maps the answer: lowercase names, repeated headers joined and listed", function()
      ngx.next_res = { status = 206, body = "abc", header = {
        ["Content-Type"] = "text/plain", ["ETag"] = '"e1"', ["Date"] = "Mon, 01 Jan 2026 00:00:00 GMT",
        ["x-amz-meta-Tag"] = { "one", "two" },
      } }
      local resp = assert(t:request({ url = "http://h/k", headers = { Range = "bytes=0-2" } }))
      assert.are.equal("bytes=0-2", ngx.captures[1].opts.vars.lbh_range)
      assert.are.equal(206, resp.status)
      assert.are.equal("abc", resp.body)
      assert.are.equal("text/plain", resp.headers["content-type"])
      assert.are.equal('"e1"', resp.headers["etag"])
      assert.are.equal("Mon, 01 Jan 2026 00:00:00 GMT", resp.headers["date"])
      assert.are.equal("one, two", resp.headers["x-amz-meta-tag"])
      local seen = {}
      for _, kv in ipairs(resp.header_list) do
        if kv[1] == "x-amz-meta-Tag" then seen[#seen + 1] = kv[2] end
      end
      assert.are.same({ "one", "two" }, seen)
      assert.is_number(resp.seconds)
    end)

    it("passes an endpoint's own 4xx/5xx answer through as a response", function()
      ngx.next_res = { status = 503, header = { ["Content-Type"] = "application/xml" },
        body = "<Error><Code>SlowDown</Code></Error>" }
      local resp = assert(t:request({ url = "http://h/k" }))
      assert.are.equal(503, resp.status)
      assert.matches("SlowDown", resp.body)
    end)

    it("turns nginx's own failures (truncated, bodiless 5xx) into codes", function()
      local cases = { [502] = "ECONNECT", [503] = "ECONNECT", [504] = "ETIMEDOUT", [500] = "EIO" }
      for status, want in pairs(cases) do
        ngx.next_res = { status = status, header = { ["Content-Type"] = "text/plain" }, body = "",
          truncated = true }
        local resp, msg, code = t:request({ method = "GET",
          url = "https://s3.amazonaws.com/b/k?X-Amz-Signature=abcdef0123" })
        assert.is_nil(resp)
        assert.are.equal(want, code)
        assert.matches("^ngx transport: GET https://s3.amazonaws.com/b/k", msg)
        assert.matches("nginx", msg)
        assert.is_nil(msg:find("abcdef0123", 1, true))   -- presigned signature redacted
      end
      ngx.next_res = { status = 200, header = {}, body = "par", truncated = true }
      local resp, msg, code = t:request({ url = "http://h/k" })
      assert.is_nil(resp)
      assert.are.equal("EIO", code)
      assert.matches("cut short", msg)
    end)

    it("takes a HEAD answer (always flagged truncated by ngx_lua) as complete", function()
      ngx.next_res = { status = 200, body = "", truncated = true,
        header = { ["Content-Length"] = 1, ["x-amz-meta-color"] = "blue", Date = "d" } }
      local resp = assert(t:request({ method = "HEAD", url = "http://h/k" }))
      assert.are.equal(ngx.HTTP_HEAD, ngx.captures[1].opts.method)
      assert.are.equal("blue", resp.headers["x-amz-meta-color"])
      assert.are.equal("1", resp.headers["content-length"])
      -- an endpoint's 503 to a HEAD (it has a Date) is a response too
      ngx.next_res = { status = 503, body = "", truncated = true, header = { Date = "d" } }
      assert.are.equal(503, assert(t:request({ method = "HEAD", url = "http://h/k" })).status)
      ngx.next_res = { status = 502, body = "", truncated = true,
        header = { ["Content-Type"] = "text/plain" } }
      assert.are.equal("ECONNECT", select(3, t:request({ method = "HEAD", url = "http://h/k" })))
    end)
  end)

  describe("refused options", function()
    it("answers EINVAL naming the option (files and streams are not for this transport)", function()
      for _, name in ipairs({ "body_file", "body_reader", "output_file", "on_data" }) do
        local resp, msg, code = t:request({ url = "http://h/k", [name] = function() end })
        assert.is_nil(resp)
        assert.are.equal("EINVAL", code)
        assert.matches("opts%." .. name, msg)
      end
      assert.are.equal(0, #ngx.captures)
    end)

    it("refuses a header value with a line break and a non-string body", function()
      local _, msg, code = t:request({ url = "http://h/k", headers = { { "X-Amz-Target", "a\r\nB: c" } } })
      assert.are.equal("EINVAL", code)
      assert.matches("X%-Amz%-Target", msg)
      _, _, code = t:request({ url = "http://h/k", body = 42 })
      assert.are.equal("EINVAL", code)
      _, _, code = t:request({ url = "not a url" })
      assert.are.equal("EINVAL", code)
    end)

    it("raises on misuse", function()
      assert.has_error(function() t.request({}, { url = "x" }) end)
      assert.has_error(function() t:request("x") end)
      assert.has_error(function() tngx.new({ mode = "fast" }) end)
      assert.has_error(function() tngx.new({ location = "aws" }) end)
    end)
  end)

  describe("phases", function()
    it("answers ENOTSUP where nginx has neither subrequests nor cosockets", function()
      for _, phase in ipairs({ "init_worker", "log", "header_filter", "body_filter", "set" }) do
        ngx.phase = phase
        local resp, msg, code = t:request({ url = "http://h/k" })
        assert.is_nil(resp)
        assert.are.equal("ENOTSUP", code)
        assert.matches(phase, msg, 1, true)
      end
      assert.are.equal(0, #ngx.captures)
      assert.are.equal(0, #ngx.sockets)
    end)

    it("uses the loopback in a timer, and for headers the subrequest cannot carry", function()
      ngx.phase = "timer"
      ngx.next_answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
      assert.are.equal("ok", assert(t:request({ url = "http://h/k" })).body)
      assert.are.equal(0, #ngx.captures)
      assert.are.equal(1, #ngx.sockets)
      ngx.phase = "content"
      assert(t:request({ method = "PUT", url = "http://h/k", body = "x",
        headers = { { "x-amz-meta-color", "blue" } } }))
      assert.are.equal(0, #ngx.captures)
      assert.are.equal(2, #ngx.sockets)
      assert.matches("\r\nx%-amz%-meta%-color: blue\r\n", ngx.sockets[2].sent[1])
    end)

    it("mode = subrequest refuses such headers; mode = loopback never captures", function()
      local ts = tngx.new({ ngx = ngx, mode = "subrequest" })
      local _, msg, code = ts:request({ url = "http://h/k", headers = { { "x-amz-meta-a", "1" } } })
      assert.are.equal("EINVAL", code)
      assert.matches("x%-amz%-meta%-a", msg)
      local tl = tngx.new({ ngx = ngx, mode = "loopback" })
      ngx.next_answer = "HTTP/1.1 204 No Content\r\n\r\n"
      assert.are.equal(204, assert(tl:request({ url = "http://h/k" })).status)
      assert.are.equal(0, #ngx.captures)
    end)
  end)

  describe("the loopback (cosocket to the unix-socket server)", function()
    before_each(function() ngx.phase = "timer" end)

    it("sends a minimal HTTP/1.1 request with X-Luabatch-Target and a Content-Length body", function()
      ngx.next_answer = "HTTP/1.1 200 OK\r\nServer: AmazonS3\r\nETag: \"e\"\r\n"
        .. "Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
      local resp = assert(t:request({ method = "PUT", url = "http://127.0.0.1:9000/b/k%20x?uploads=1",
        headers = { { "Authorization", "AWS4 sig" }, { "Content-Length", "5" } }, body = "12345",
        timeout = 3, connect_timeout = 2 }))
      local s = ngx.sockets[1]
      assert.are.equal("unix:/srv/ngx/luabatch.sock", s.path)
      assert.are.same({ 2000, 3000, 3000 }, s.timeouts)
      assert.are.equal("PUT /b/k%20x?uploads=1 HTTP/1.1\r\n"
        .. "X-Luabatch-Target: http://127.0.0.1:9000\r\n"
        .. "Authorization: AWS4 sig\r\n"
        .. "Host: 127.0.0.1:9000\r\n"
        .. "Content-Length: 5\r\n\r\n12345", s.sent[1])
      assert.are.equal(200, resp.status)
      assert.are.equal("hello", resp.body)
      assert.are.equal("AmazonS3", resp.headers.server)
      assert.are.equal('"e"', resp.headers.etag)
      assert.is_nil(resp.headers.connection)        -- nginx's hop-by-hop header
      assert.are.same({ 60000, 16 }, s.kept)        -- back to the pool
    end)

    it("reads a body without Content-Length up to the close, and joins repeated headers", function()
      ngx.next_answer = "HTTP/1.1 200 OK\r\nX-Amz-Meta-A: 1\r\nx-amz-meta-a: 2\r\n\r\n<List/>"
      local resp = assert(tngx.new({ ngx = ngx, socket = "/run/lb.sock" }):request({ url = "http://h/" }))
      assert.are.equal("unix:/run/lb.sock", ngx.sockets[1].path)
      assert.are.equal("<List/>", resp.body)
      assert.are.equal("1, 2", resp.headers["x-amz-meta-a"])
      assert.are.equal(2, #resp.header_list)
      assert.is_true(ngx.sockets[1].closed)
      assert.is_nil(ngx.sockets[1].kept)
    end)

    it("reads no body for HEAD even with a Content-Length", function()
      ngx.next_answer = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"
      local resp = assert(t:request({ method = "HEAD", url = "http://h/k" }))
      assert.are.equal("", resp.body)
      assert.are.equal("1048576", resp.headers["content-length"])
    end)

    it("maps the loopback's 599 answers and socket errors to codes", function()
      ngx.next_answer = "HTTP/1.1 599 \r\nContent-Length: 8\r\n\r\nECONNECT"
      local resp, msg, code = t:request({ url = "http://h/k" })
      assert.is_nil(resp)
      assert.are.equal("ECONNECT", code)
      assert.matches("nginx proxy failed", msg)
      ngx.next_answer = "HTTP/1.1 599 \r\nContent-Length: 9\r\n\r\nETIMEDOUT"
      assert.are.equal("ETIMEDOUT", select(3, t:request({ url = "http://h/k" })))

      ngx.sock_opts = { connect_err = "no such file or directory" }
      resp, msg, code = t:request({ url = "http://h/k" })
      assert.are.equal("ECONNECT", code)
      assert.matches("unix:/srv/ngx/luabatch.sock", msg, 1, true)
      assert.matches("loopback.conf", msg, 1, true)
      ngx.sock_opts = { receive_err = "timeout" }
      assert.are.equal("ETIMEDOUT", select(3, t:request({ url = "http://h/k" })))
      ngx.sock_opts = { send_err = "broken pipe" }
      assert.are.equal("EIO", select(3, t:request({ url = "http://h/k" })))
      ngx.sock_opts = nil
      ngx.next_answer = "SSH-2.0\r\n"
      assert.are.equal("EHTTP", select(3, t:request({ url = "http://h/k" })))
      ngx.next_answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"
      assert.are.equal("EIO", select(3, t:request({ url = "http://h/k" })))
    end)
  end)
end)


describe("luabatch.aws.client.options under ngx_lua #unit", function()
  local request = require "luabatch.request"
  local saved

  before_each(function() saved = rawget(_G, "ngx") end)
  after_each(function() rawset(_G, "ngx", saved) end)

  it("keeps the curl default (nil) and the caller's sleep outside nginx", function()
    rawset(_G, "ngx", nil)
    local o = require("luabatch.aws.client").options({})
    assert.is_nil(o.transport)
    assert.is_nil(o.sleep)
  end)

  it("picks transport.ngx and ngx.sleep inside nginx; explicit ones win", function()
    local ngx = fake_ngx()
    rawset(_G, "ngx", ngx)
    local o = require("luabatch.aws.client").options({})
    assert.are.equal(getmetatable(tngx.new()), getmetatable(o.transport))
    assert.are.equal(tngx.sleep, o.sleep)
    assert.is_true(o.sleep(2))
    assert.are.equal(1002, ngx.clock)           -- ngx.sleep did the waiting
    local mine = { request = function() end }
    local my_sleep = function() end
    o = require("luabatch.aws.client").options({ transport = mine, sleep = my_sleep })
    assert.are.equal(mine, o.transport)
    assert.are.equal(my_sleep, o.sleep)
    ngx.phase = "init"
    assert.is_nil(require("luabatch.aws.client").options({}).transport)
  end)

  it("sends a whole batch call through the subrequest", function()
    local ngx = fake_ngx()
    rawset(_G, "ngx", ngx)
    ngx.next_res = { status = 200, header = { ["Content-Type"] = "application/json" },
      body = '{"jobs":[{"jobId":"j1","status":"RUNNING"}]}' }
    local batch = require("luabatch.batch").new({ region = "us-east-1",
      endpoint = "http://127.0.0.1:4566",
      credentials = require("luabatch.credentials").static({ access_key = "AKIDEXAMPLE",
        secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" }) })
    local out = assert(batch:describe_jobs({ "j1" }))
    assert.are.equal("j1", out.jobs[1].jobId)
    local v = ngx.captures[1].opts.vars
    assert.are.equal("http://127.0.0.1:4566", v.luabatch_target)
    assert.are.equal("/v1/describejobs", v.luabatch_uri)
    assert.matches("^AWS4%-HMAC%-SHA256 Credential=AKIDEXAMPLE/", v.lbh_authorization)
    assert.are.equal("127.0.0.1:4566", v.lbh_host)
    assert.truthy(v.lbh_x_amz_date ~= "")
  end)
end)
