-- Specs for the HTTP binding (core.http_*) and luabatch.transport.curl,
-- against the local test server tests/servers/httpd.py.

local core = require "luabatch.core"
local curl = require "luabatch.transport.curl"
local log = require "luabatch.log"

local function pattern(a, b)        -- bytes a..b-1 of the server's stream
  local t = {}
  for i = a, b - 1 do t[#t + 1] = string.char(i % 251) end
  return table.concat(t)
end


describe("luabatch.transport.curl #unit", function()
  local server, pid, base

  setup(function()
    -- `exec` keeps the shell's pid for python, so $$ is the server's pid.
    server = assert(io.popen("echo $$; exec /usr/bin/python3 tests/servers/httpd.py --port 0"))
    pid = assert(tonumber(server:read("*l")))
    local port = assert(tonumber(server:read("*l")), "httpd.py did not start")
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid) end
    if server then server:close() end
  end)

  local function url(path) return base .. path end

  describe("core.http_request", function()
    it("GETs into memory with headers parsed", function()
      local resp = assert(core.http_request({ url = url("/bytes/1000") }))
      assert.are.equal(200, resp.status)
      assert.are.equal(pattern(0, 1000), resp.body)
      assert.are.equal(1000, resp.bytes_in)
      assert.are.equal("1000", resp.headers["content-length"])
      assert.is_number(resp.seconds)
      local found
      for _, h in ipairs(resp.header_list) do
        if h[1] == "Content-Length" then found = h[2] end
      end
      assert.are.equal("1000", found)
    end)

    it("sends headers given as pairs or as a map, and joins repeated response headers", function()
      local resp = assert(core.http_request({
        url = url("/echo"), method = "POST", body = "hi",
        headers = { { "X-One", "1" }, { "X-Two", "two words" } },
      }))
      assert.are.equal("a, b", resp.headers["x-repeat"])
      assert.are.equal("", resp.headers["x-empty"])
      assert.truthy(resp.body:find('["X-One", "1"]', 1, true))
      assert.truthy(resp.body:find('["X-Two", "two words"]', 1, true))
      assert.truthy(resp.body:find('"body": "hi"', 1, true))
      assert.falsy(resp.body:find("Expect", 1, true))
      resp = assert(core.http_request({ url = url("/echo"), headers = { ["X-Map"] = "m", ["X-N"] = 5 } }))
      assert.truthy(resp.body:find('["X-Map", "m"]', 1, true))
      assert.truthy(resp.body:find('["X-N", "5"]', 1, true))
    end)

    it("returns a 4xx as a response, not a failure", function()
      local resp, err = core.http_request({ url = url("/status/404") })
      assert.is_nil(err)
      assert.are.equal(404, resp.status)
      assert.are.equal("status 404", resp.body)
    end)

    it("returns nil, msg, code for transport failures, without the query", function()
      local resp, msg, code = core.http_request({
        url = "http://127.0.0.1:9/x?X-Amz-Security-Token=TOPSECRET",
        headers = { Authorization = "AWS4-HMAC-SHA256 Signature=SIGSECRET" },
      })
      assert.is_nil(resp)
      assert.are.equal("ECONNECT", code)
      assert.are.equal("GET http://127.0.0.1:9/x?...: ", msg:sub(1, 30))
      assert.falsy(msg:find("SECRET", 1, true))
    end)

    it("times out a stalled response (read_timeout)", function()
      local t0 = core.monotime()
      local resp, msg, code = core.http_request({ url = url("/stall"), read_timeout = 0.5 })
      assert.is_nil(resp)
      assert.are.equal("ETIMEDOUT", code)
      assert.truthy(msg:find("read timeout", 1, true))
      assert.is_true(core.monotime() - t0 < 10)   -- the server stalls 60 s
    end)

    it("reports a connection reset", function()
      local _, _, code = core.http_request({ url = url("/reset") })
      assert.are.equal("ECONNECT", code)
    end)

    it("raises on misuse", function()
      assert.has_error(function() core.http_request({}) end,
        "bad argument #1 to 'http_request' (field 'url': string expected, got nil)")
      assert.has_error(function() core.http_request("x") end)
      assert.has_error(function() core.http_request({ url = url("/"), timeout = "soon" }) end,
        "bad argument #1 to 'http_request' (field 'timeout': number expected, got string)")
      assert.has_error(function()
        core.http_request({ url = url("/upload"), body_reader = function() end })
      end)
      assert.has_error(function()
        core.http_request({ url = url("/upload"), body = "x", body_file = "/etc/hostname" })
      end)
    end)

    it("connects through unix_socket instead of the URL's host; a pooled handle forgets it", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(core.mkdir(dir, 448))
      local sock = dir .. "/api.sock"
      local py = "import sys, socketserver, http.server\n"
        .. "class H(http.server.BaseHTTPRequestHandler):\n"
        .. "    def do_GET(self):\n"
        .. "        b = ('unix ' + self.path + ' ' + self.headers.get('Host', '')).encode()\n"
        .. "        self.send_response(200); self.send_header('Content-Length', str(len(b)))\n"
        .. "        self.end_headers(); self.wfile.write(b)\n"
        .. "    def log_message(self, *a): pass\n"
        .. "    def address_string(self): return 'unix'\n"
        .. "s = socketserver.UnixStreamServer(sys.argv[1], H); print('ready', flush=True); s.serve_forever()\n"
      local f = assert(io.open(dir .. "/srv.py", "w"))
      f:write(py)
      f:close()
      local srv = assert(io.popen("echo $$; exec /usr/bin/python3 " .. dir .. "/srv.py " .. sock))
      local spid = assert(tonumber(srv:read("*l")))
      assert.are.equal("ready", srv:read("*l"))
      local t = curl.new()
      local ok, err = pcall(function()
        local resp = assert(t:request({ url = "http://docker/v1.41/containers/json?all=1", unix_socket = sock }))
        assert.are.equal(200, resp.status)
        assert.are.equal("unix /v1.41/containers/json?all=1 docker", resp.body)
        -- the same pool, TCP again: the socket path is not left on the handle
        resp = assert(t:request({ url = url("/bytes/10") }))
        assert.are.equal(pattern(0, 10), resp.body)
        local r2, msg, code = t:request({ url = "http://docker/_ping", unix_socket = dir .. "/none.sock" })
        assert.is_nil(r2)
        assert.are.equal("ECONNECT", code, msg)
      end)
      t:close()
      os.execute("kill " .. spid)
      srv:close()
      os.execute("rm -rf " .. dir)
      assert(ok, err)
    end)

    it("writes a download into a file at an offset", function()
      local path = os.tmpname()
      finally(function() os.remove(path) end)
      local f = assert(io.open(path, "wb")); f:write(("Z"):rep(300)); f:close()
      local resp = assert(core.http_request({
        url = url("/bytes/200"), headers = { { "Range", "bytes=100-199" } },
        output_file = path, output_offset = 100,
      }))
      assert.are.equal(206, resp.status)
      assert.is_nil(resp.body)
      assert.are.equal(100, resp.bytes_in)
      f = assert(io.open(path, "rb")); local got = f:read("*a"); f:close()
      assert.are.equal(("Z"):rep(100) .. pattern(100, 200) .. ("Z"):rep(100), got)
      -- no offset: whole file, truncated
      assert(core.http_request({ url = url("/bytes/10"), output_file = path }))
      f = assert(io.open(path, "rb")); got = f:read("*a"); f:close()
      assert.are.equal(pattern(0, 10), got)
    end)

    it("uploads a file range", function()
      local path = os.tmpname()
      finally(function() os.remove(path) end)
      local data = pattern(0, 5000)
      local f = assert(io.open(path, "wb")); f:write(data); f:close()
      local resp = assert(core.http_request({
        url = url("/upload/f"), method = "PUT", body_file = path, body_offset = 1000, body_length = 2000,
      }))
      assert.are.equal(200, resp.status)
      assert.truthy(resp.body:find(core.sha256(data:sub(1001, 3000)), 1, true))
    end)

    it("caps a body kept in memory, not a streamed one", function()
      local resp, msg, code = core.http_request({ url = url("/bytes/1001"), max_body = 1000 })
      assert.is_nil(resp)
      assert.matches("response body larger than 1000 bytes %(limit%)", msg)
      assert.are.equal("EHTTP", code)
      assert(core.http_request({ url = url("/bytes/1000"), max_body = 1000 }))
      -- the default: 64 MiB; 80 MiB stream through a callback untouched
      resp, msg = core.http_request({ url = url("/huge?n=83886080") })
      assert.is_nil(resp)
      assert.matches("response body larger than 67108864 bytes %(limit%)", msg)
      local n = 0
      resp = assert(core.http_request({ url = url("/huge?n=83886080"), on_data = function(c) n = n + #c end }))
      assert.are.equal(83886080, n)
      -- an error status's body is kept for its message: capped even when streaming
      resp, msg = core.http_request({ url = url("/huge?status=500&n=83886080"), on_data = function() end })
      assert.is_nil(resp)
      assert.matches("response body larger than 67108864 bytes", msg)
      local ok, err = pcall(core.http_request, { url = url("/"), max_body = 0 })
      assert.is_false(ok)
      assert.matches("max_body", err)
    end)

    it("caps the response headers at 256 KiB", function()
      assert(core.http_request({ url = url("/fat-headers?n=200") }))
      local resp, msg, code = core.http_request({ url = url("/fat-headers?n=290") })
      assert.is_nil(resp)
      assert.matches("response headers larger than 262144 bytes %(limit%)", msg)
      assert.are.equal("EHTTP", code)
    end)
  end)

  describe("callbacks", function()
    it("streams a request body from body_reader, chunks larger than curl's buffer", function()
      local chunks, i = {}, 0
      for n = 1, 5 do chunks[n] = pattern(n, n + 70000) end
      local all = table.concat(chunks)
      local resp = assert(core.http_request({
        url = url("/upload/r"), method = "PUT", body_length = #all,
        body_reader = function() i = i + 1; return chunks[i] end,
      }))
      assert.are.equal(200, resp.status)
      assert.are.equal(string.format('{"sha256": "%s", "length": %d}', core.sha256(all), #all), resp.body)
    end)

    it("delivers the body to on_data and stops when it returns false", function()
      local parts = {}
      local resp = assert(core.http_request({
        url = url("/bytes/300000"), on_data = function(chunk) parts[#parts + 1] = chunk end,
      }))
      assert.is_nil(resp.body)
      assert.are.equal(pattern(0, 300000), table.concat(parts))
      local calls = 0
      local r2, msg, code = core.http_request({
        url = url("/bytes/300000"), on_data = function() calls = calls + 1; return false end,
      })
      assert.is_nil(r2)
      assert.are.equal("ECANCELED", code)
      assert.is_string(msg)
      assert.are.equal(1, calls)
    end)

    it("sends a non-2xx body to memory, not to on_data", function()
      local called = false
      local resp = assert(core.http_request({
        url = url("/status/503"), on_data = function() called = true end,
      }))
      assert.are.equal(503, resp.status)
      assert.are.equal("status 503", resp.body)
      assert.is_false(called)
    end)

    it("propagates a Lua error raised inside on_data", function()
      local client = core.http_client()
      finally(function() client:close() end)
      local ok, err = pcall(client.request, client, {
        url = url("/bytes/100000"), on_data = function() error("boom in on_data") end,
      })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("boom in on_data", 1, true))
      local t = {}
      ok, err = pcall(client.request, client, {
        url = url("/upload/x"), method = "PUT", body_length = 10, body_reader = function() error(t) end,
      })
      assert.is_false(ok)
      assert.are.equal(t, err)          -- the error value itself, not a copy
      -- the client still works
      assert.are.equal(200, assert(client:request({ url = url("/bytes/5") })).status)
    end)

    it("calls on_progress and stops when it returns false", function()
      local seen = 0
      assert(core.http_request({
        url = url("/bytes/100000"),
        on_progress = function(dlnow, dltotal) seen = math.max(seen, dlnow); assert(dltotal >= 0) end,
      }))
      assert.are.equal(100000, seen)
      local _, _, code = core.http_request({ url = url("/slow?delay=2"), on_progress = function() return false end })
      assert.are.equal("ECANCELED", code)
    end)

    it("stops with ECANCELED when the interrupt flag is raised", function()
      finally(function() core.clear_interrupt() end)
      local t0 = core.monotime()
      local _, msg, code = core.http_request({
        url = url("/drip?n=300&every=0.1"), on_data = function() core.raise_interrupt() end,
      })
      assert.are.equal("ECANCELED", code)
      assert.truthy(msg:find("interrupted", 1, true))
      assert.is_true(core.monotime() - t0 < 10)   -- the whole drip: 30 s
    end)

    it("survives a full GC and changes to opts inside callbacks", function()
      local chunks = { ("x"):rep(100000), ("y"):rep(1000) }
      local i = 0
      local opts
      opts = {
        url = url("/echo") .. "?" .. ("q"):rep(10), method = "POST", body_length = 101000,
        headers = { { "X-" .. "Dyn", ("v"):rep(3) } },
        body_reader = function()
          opts.url, opts.headers, opts.method = nil, nil, nil
          collectgarbage("collect")
          i = i + 1
          return chunks[i]
        end,
        on_data = function() collectgarbage("collect") end,
        on_progress = function() opts.on_data = nil; collectgarbage("collect") end,
      }
      local resp = assert(core.http_request(opts))
      assert.are.equal(200, resp.status)
      -- the body went to on_data, so nothing in memory; the echo was received
      assert.is_nil(resp.body)
      assert.is_true(resp.bytes_in > 101000)
    end)

    it("turns a yield inside a callback into an error, not a crash", function()
      local co = coroutine.create(function()
        return core.http_request({ url = url("/bytes/10"), on_data = function() coroutine.yield(1) end })
      end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("yield", 1, true))
    end)

    it("runs callbacks on the calling coroutine", function()
      local co = coroutine.create(function()
        local n = 0
        local resp = assert(core.http_request({ url = url("/bytes/1000"), on_data = function(c) n = n + #c end }))
        return resp.status, n
      end)
      local ok, status, n = coroutine.resume(co)
      assert.is_true(ok)
      assert.are.equal(200, status)
      assert.are.equal(1000, n)
    end)
  end)

  describe("client", function()
    it("reuses its connection; one-shot requests do not", function()
      local client = core.http_client({ max_connections = 4 })
      finally(function() client:close() end)
      local a = assert(client:request({ url = url("/conn-id") })).body
      local b = assert(client:request({ url = url("/conn-id") })).body
      assert.are.equal(a, b)
      local c = assert(core.http_request({ url = url("/conn-id") })).body
      local d = assert(core.http_request({ url = url("/conn-id") })).body
      assert.are_not.equal(c, d)
    end)

    it("never sends a streamed body twice when a kept-alive connection dies before the answer", function()
      -- libcurl resends a request whose reused connection closed before any
      -- answer; a memory body can be rewound (sent again), a reader cannot:
      -- that request fails with ECONNECT and says why (SubmitJob relies on it)
      local client = core.http_client()
      finally(function() client:close() end)
      local function drops() return tonumber(assert(core.http_request({ url = url("/drops") })).body) end
      local n0 = drops()
      assert(client:request({ url = url("/conn-id") }))          -- a kept-alive connection
      local sent = false
      local resp, msg, code = client:request({ method = "POST", url = url("/drop"), body_length = 5,
        body_reader = function() if sent then return nil end sent = true return "hello" end })
      assert.is_nil(resp)
      assert.are.equal("ECONNECT", code)
      assert.truthy(msg:find("closed before the answer", 1, true), msg)
      assert.truthy(msg:find("never sent twice", 1, true), msg)
      assert.are.equal(n0 + 1, drops())
      assert(client:request({ url = url("/conn-id") }))
      local _, _, mcode = client:request({ method = "POST", url = url("/drop"), body = "hello" })
      assert.are.equal("ECONNECT", mcode)
      assert.are.equal(n0 + 3, drops())                           -- the memory body went twice
    end)

    it("runs request_all concurrently, failures as { ok = false, err, code }", function()
      local client = core.http_client({ max_concurrency = 10 })
      finally(function() client:close() end)
      local list = {}
      for i = 1, 10 do list[i] = { url = url("/slow?delay=0.5") } end
      list[11] = { url = "http://127.0.0.1:9/nothing" }
      list[12] = { url = url("/status/500") }
      local t0 = core.monotime()
      local res = client:request_all(list)
      local dt = core.monotime() - t0
      assert.are.equal(12, #res)
      for i = 1, 10 do assert.are.equal("slow", res[i].body) end
      assert.is_false(res[11].ok)
      assert.are.equal("ECONNECT", res[11].code)
      assert.truthy(res[11].err:find("127.0.0.1:9", 1, true))
      assert.are.equal(500, res[12].status)
      assert.is_true(dt < 4.5, "took " .. dt .. " s (one at a time: 5 s)")
      assert.are.same({}, client:request_all({}))
    end)

    it("raises on misuse with the method's argument number", function()
      local client = core.http_client()
      finally(function() client:close() end)
      assert.has_error(function() client:request({}) end,
        "bad argument #1 to 'request' (field 'url': string expected, got nil)")
      assert.has_error(function() client:request_all({ { url = url("/") }, 5 }) end,
        "bad argument #1 to 'request_all' (entry 2: table expected, got number)")
      assert.has_error(function() core.http_client({ max_concurrency = 0 }) end)
    end)

    it("closes idempotently and raises when used after close", function()
      local client = core.http_client()
      client:close()
      client:close()
      assert.has_error(function() client:request({ url = url("/") }) end,
        "attempt to use a closed http client")
      assert.has_error(function() client:request_all({}) end, "attempt to use a closed http client")
    end)

    it("cannot be closed from its own callback", function()
      local client = core.http_client()
      finally(function() client:close() end)
      assert.has_error(function()
        client:request({ url = url("/bytes/10"), on_data = function() client:close() end })
      end)
      assert.are.equal(200, assert(client:request({ url = url("/bytes/5") })).status)
    end)
  end)

  describe("transport", function()
    it("requests through a pooled client and closes", function()
      local t = assert(curl.new({ max_connections = 2 }))
      local a = assert(t:request({ url = url("/conn-id") }))
      local b = assert(t:request({ url = url("/conn-id") }))
      assert.are.equal(a.body, b.body)
      local res = t:request_all({ { url = url("/bytes/3") }, { url = "http://127.0.0.1:9/" } })
      assert.are.equal(pattern(0, 3), res[1].body)
      assert.are.equal("ECONNECT", res[2].code)
      local r, msg, code = t:request({ url = "http://127.0.0.1:9/" })
      assert.is_nil(r)
      assert.is_string(msg)
      assert.are.equal("ECONNECT", code)
      t:close()
      t:close()
      assert.has_error(function() t:request({ url = url("/") }) end, "attempt to use a closed transport")
    end)

    it("logs request and response lines at debug, without secrets", function()
      local lines = {}
      local old_level = log.level()
      local old_sink = log.set_sink(function(l) lines[#lines + 1] = l end)
      log.set_level("debug")
      finally(function() log.set_sink(old_sink); log.set_level(old_level) end)
      local t = assert(curl.new())
      finally(function() t:close() end)
      assert(t:request({
        url = url("/echo?X-Amz-Security-Token=TOKENVALUE&X-Amz-Signature=abcdef0123"),
        headers = { { "Authorization", "AWS4-HMAC-SHA256 Credential=AKID, Signature=deadbeef" },
                    { "X-Amz-Security-Token", "TOKENVALUE" } },
      }))
      local text = table.concat(lines, "\n")
      assert.truthy(text:find("GET " .. base .. "/echo", 1, true))
      assert.truthy(text:find("Authorization", 1, true))
      assert.truthy(text:find(": 200 (", 1, true))
      assert.falsy(text:find("TOKENVALUE", 1, true))
      assert.falsy(text:find("deadbeef", 1, true))
      assert.falsy(text:find("abcdef0123", 1, true))
    end)

    it("raises on misuse", function()
      assert.has_error(function() curl.new(5) end, "bad argument #1 to 'new' (table expected, got number)")
      local t = assert(curl.new())
      finally(function() t:close() end)
      assert.has_error(function() t:request() end, "bad argument #1 to 'request' (table expected, got nil)")
    end)
  end)
end)
