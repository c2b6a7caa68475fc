-- Integration: luabatch inside a real nginx (Debian's nginx +
-- libnginx-mod-http-lua) against Ceph RGW and the Batch emulator, through
-- luabatch.transport.ngx: S3 put/get/head/list and Batch calls from a content
-- handler (subrequests; the loopback for x-amz-meta-*) and from a timer (the
-- unix-socket loopback); credentials from the environment shared by two
-- workers and container credentials refreshed once across them; and the
-- non-blocking proof: one worker, 50 concurrent requests each waiting on a
-- 1 s slow emulator answer finish in about 1 s, while the blocking curl
-- transport serialises them (1 s each).
--
-- The nginx side runs OpenResty's LuaJIT whatever interpreter runs busted;
-- under Lua 5.4 the spec is left pending to save time (it runs in
-- integration-luajit).

local servers = require "helpers.servers"
local be = require "helpers.batch_emulator"
local nginx = require "helpers.nginx"
local core = require "luabatch.core"
local cjson = require "cjson.safe"

local PYTHON = "/usr/bin/python3"
local ROOT = io.popen("pwd"):read("*l")

-- The Lua handlers nginx runs (written to a temporary module directory).
local HANDLERS = [==[
local cjson = require "cjson.safe"
local tngx = require "luabatch.transport.ngx"
local nc = require "luabatch.ngx.credentials"

local _M = {}

local S3, EMU, BUCKET = os.getenv("LBT_S3"), os.getenv("LBT_EMU"), os.getenv("LBT_BUCKET")

-- S3 through the ngx transport (given explicitly: s3.new does not choose
-- one), Batch with the automatic choice of luabatch.aws.client.options.
function _M.work(tag)
  local out = { phase = ngx.get_phase(), pid = ngx.worker.pid() }
  local creds = nc.new()
  local s3 = require("luabatch.s3").new({ endpoint = S3, region = "us-east-1",
    addressing = "path", credentials = creds, transport = tngx.new(), sleep = tngx.sleep })
  local prefix = "ngx/" .. tag .. "/"
  local key = prefix .. "a b+\195\188.txt"
  local body = tag .. ":" .. string.rep("0123456789", 3000)
  local put, msg = s3:put_object(BUCKET, key, body, { content_type = "text/plain" })
  if not put then out.err = "put: " .. tostring(msg) return out end
  out.put_etag = put.etag
  -- x-amz-meta-* cannot pass the subrequest location: the loopback carries it
  put, msg = s3:put_object(BUCKET, prefix .. "meta.txt", "m", { metadata = { color = "blue" } })
  if not put then out.err = "put meta: " .. tostring(msg) return out end
  local got, meta = s3:get_object(BUCKET, key)
  if not got then out.err = "get: " .. tostring(meta) return out end
  out.get_same = (got == body)
  out.get_type = meta.content_type
  local part = s3:get_object(BUCKET, key, { range = { 0, 9 } })
  out.range = part
  local head = s3:head_object(BUCKET, prefix .. "meta.txt")
  out.meta_color = head and head.metadata.color
  local entries
  entries, msg = s3:list_all(BUCKET, { prefix = prefix })
  if not entries then out.err = "list: " .. tostring(msg) return out end
  out.keys = {}
  for _, e in ipairs(entries) do out.keys[#out.keys + 1] = e.key end
  table.sort(out.keys)
  local _, mmsg, mcode = s3:get_object(BUCKET, prefix .. "missing")
  out.missing_code = mcode
  local b = require("luabatch.batch").new({ endpoint = EMU, region = "us-east-1",
    credentials = creds })
  local q
  q, msg = b:describe_job_queues({ "lb-queue" })
  if not q then out.err = "describe_job_queues: " .. tostring(msg) return out end
  out.queue = q.jobQueues[1] and q.jobQueues[1].jobQueueName
  local j
  j, msg = b:describe_jobs({ "no-such-job" })
  if not j then out.err = "describe_jobs: " .. tostring(msg) return out end
  out.jobs = #j.jobs
  out.creds_source = creds:get().source
  return out
end

function _M.content()
  ngx.say(cjson.encode(_M.work(ngx.var.arg_tag)))
end

function _M.timer()
  local tag = ngx.var.arg_tag
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local ok2, res = pcall(_M.work, tag)
    ngx.shared.luabatch:set("result:" .. tag, cjson.encode(ok2 and res or { err = tostring(res) }))
  end)
  ngx.say(ok and "scheduled" or tostring(err))
end

function _M.result()
  ngx.say(ngx.shared.luabatch:get("result:" .. ngx.var.arg_tag) or "")
end

-- One Batch call the emulator answers slowly; "blocking" uses libcurl.
function _M.slow()
  local o = { endpoint = EMU, region = "us-east-1", credentials = nc.new() }
  if ngx.var.arg_blocking then
    o.transport = require("luabatch.transport.curl").new()
    o.sleep = require("luabatch.core").sleep
  end
  local q, msg = require("luabatch.batch").new(o):describe_job_queues({ "lb-queue" })
  if not q then ngx.status = 500 ngx.say(msg) return end
  ngx.say(q.jobQueues[1].jobQueueName)
end

-- The credentials a worker sees (name=ecs: the container provider).
function _M.creds()
  local name = ngx.var.arg_name
  local p = name == "ecs" and nc.new({ name = "ecs", providers = { "ecs" } }) or nc.new()
  local c, msg, code = p:get()
  if not c then ngx.status = 500 ngx.say(cjson.encode({ err = msg, code = code })) return end
  local out = { key = c.access_key, source = c.source, pid = ngx.worker.pid() }
  if not name then
    local s3 = require("luabatch.s3").new({ endpoint = S3, region = "us-east-1",
      addressing = "path", credentials = p, transport = tngx.new() })
    local e, lmsg = s3:list_all(BUCKET)
    out.listed = e and #e or lmsg
  end
  ngx.say(cjson.encode(out))
end

-- One raw transport request: url, method, mode, location, socket from the
-- query; the answer (or the error) as JSON.
function _M.raw()
  local a = ngx.req.get_uri_args()
  local t = tngx.new({ mode = a.mode, location = a.location,
    socket = a.socket and (ngx.config.prefix() .. a.socket) or nil })
  local resp, msg, code = t:request({ method = a.method or "POST", url = a.url,
    headers = { { "Content-Type", "text/plain" }, { "X-Amz-Date", "20260101T000000Z" },
      { "Connection", "close" } }, body = "hello" })
  if not resp then ngx.say(cjson.encode({ err = msg, code = code })) return end
  ngx.say(cjson.encode({ status = resp.status, headers = resp.headers,
    header_list = resp.header_list, body = resp.body }))
end

return _M
]==]


local function locations()
  local L = {}
  L[#L + 1] = "include @ROOT@/lua/luabatch/ngx/locations.conf;"
  for _, name in ipairs({ "content", "timer", "result", "slow", "creds", "raw" }) do
    L[#L + 1] = ("location = /%s { content_by_lua_block { require('lbt_ngx_handlers').%s() } }")
      :format(name, name)
  end
  return table.concat(L, "\n")
end

local LOOPBACK = [[
  server {
    listen unix:@PREFIX@/luabatch.sock;
    access_log @PREFIX@/loopback.log;
    include @ROOT@/lua/luabatch/ngx/loopback.conf;
  }
]]

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function get(url)
  return sh("curl -s --max-time 30 '" .. url .. "'")
end

local function get_json(url)
  local body = get(url)
  local doc = cjson.decode(body)
  assert(type(doc) == "table", "not JSON from " .. url .. ": " .. body)
  return doc
end

-- n concurrent requests (curl --parallel, new connections); returns the
-- status codes, the bodies and the elapsed seconds.
local function parallel(url, n, dir)
  local args = {}
  for i = 1, n do
    args[#args + 1] = ("-o %s/out.%d '%s'"):format(dir, i, url)
  end
  local t0 = core.monotime()
  local codes = sh("curl -s --max-time 120 --parallel --parallel-immediate --parallel-max " .. n
    .. " -w '%{http_code}\\n' " .. table.concat(args, " ") .. " 2>/dev/null")
  local dt = core.monotime() - t0
  local list, bodies = {}, {}
  for c in codes:gmatch("%d+") do list[#list + 1] = tonumber(c) end
  for i = 1, n do
    local f = io.open(("%s/out.%d"):format(dir, i), "rb")
    bodies[i] = f and f:read("*a") or ""
    if f then f:close() end
  end
  return list, bodies, dt
end

local function count_lines(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end


describe("luabatch.transport.ngx in nginx #integration", function()
  local endpoint, key, secret, emu, ng, dir
  local bucket = "lb-ngx-" .. tostring(os.time()) .. "-" .. math.random(1000, 9999)
  local skip

  setup(function()
    if not jit then
      skip = "nginx specs run in integration-luajit"
      return
    end
    local ok, why = nginx.available()
    if not ok then skip = why return end
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p '" .. dir .. "'")
    local f = assert(io.open(dir .. "/lbt_ngx_handlers.lua", "wb"))
    f:write(HANDLERS)
    f:close()
    local msg
    endpoint, key, secret = servers.rgw()
    assert(endpoint, key)
    -- the emulator accepts the RGW keys, so one credential set serves both
    emu = assert(be.start({ access_key = key, secret_key = secret }))
    local s3 = require("luabatch.s3").new({ endpoint = endpoint, region = "us-east-1",
      addressing = "path", credentials = require("luabatch.credentials").static({
        access_key = key, secret_key = secret }) })
    assert(s3:create_bucket(bucket))
    ng, msg = nginx.start({
      workers = 1,
      lua_path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. dir .. "/?.lua;"
        .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;",
      env = { AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret, AWS_REGION = "us-east-1",
        LBT_S3 = endpoint, LBT_EMU = emu.endpoint, LBT_BUCKET = bucket },
      http_extra = "init_by_lua_block { assert(require('luabatch.ngx.credentials').init()) }\n"
        .. LOOPBACK,
      server_extra = locations(),
    })
    assert(ng, msg)
  end)

  teardown(function()
    if ng then ng.stop() end
    if endpoint and not skip then
      local s3 = require("luabatch.s3").new({ endpoint = endpoint, region = "us-east-1",
        addressing = "path", credentials = require("luabatch.credentials").static({
          access_key = key, secret_key = secret }) })
      s3:delete_prefix(bucket, "")
      s3:delete_bucket(bucket)
    end
    if emu then emu.stop() end
    servers.stop_all()
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  local function check_work(r, tag, phase)
    assert.is_nil(r.err, r.err)
    assert.are.equal(phase, r.phase)
    assert.is_true(r.get_same)
    assert.are.equal("text/plain", r.get_type)
    assert.are.equal((tag .. ":0123456789"):sub(1, 10), r.range)   -- bytes 0-9
    assert.are.equal("blue", r.meta_color)
    assert.are.same({ "ngx/" .. tag .. "/a b+\195\188.txt", "ngx/" .. tag .. "/meta.txt" }, r.keys)
    assert.are.equal("NoSuchKey", r.missing_code)
    assert.are.equal("lb-queue", r.queue)
    assert.are.equal(0, r.jobs)
    assert.are.equal("env", r.creds_source)
  end

  it("runs S3 put/get/head/list and Batch calls from a content handler", function()
    if skip then return pending(skip) end
    local before = count_lines(ng.prefix .. "/loopback.log")
    local r = get_json(ng.url .. "/content?tag=c1")
    check_work(r, "c1", "content")
    -- only the x-amz-meta PUT took the loopback; the rest were subrequests
    assert.are.equal(1, count_lines(ng.prefix .. "/loopback.log") - before)
  end)

  it("runs the same from a timer, through the unix-socket loopback", function()
    if skip then return pending(skip) end
    local before = count_lines(ng.prefix .. "/loopback.log")
    assert.are.equal("scheduled\n", get(ng.url .. "/timer?tag=t1"))
    local r
    for _ = 1, 200 do
      local body = get(ng.url .. "/result?tag=t1")
      if body:find("{", 1, true) then r = assert(cjson.decode(body)) break end
      core.sleep(0.05)
    end
    assert(r, "the timer did not finish")
    check_work(r, "t1", "timer")
    -- every call of the timer went through the loopback (9 requests)
    assert.is_true(count_lines(ng.prefix .. "/loopback.log") - before >= 9)
  end)

  it("does not block the worker: 50 requests waiting 1 s each take about 1 s", function()
    if skip then return pending(skip) end
    emu:fault({ operation = "DescribeJobQueues", action = "slow", delay = 1, times = -1 })
    local codes, bodies, dt = parallel(ng.url .. "/slow", 50, dir)
    local blocking_codes, _, blocking_dt = parallel(ng.url .. "/slow?blocking=1", 4, dir)
    emu:clear_faults()
    io.stderr:write(("\n[ngx] 50 concurrent 1 s requests: %.2f s (ngx transport); "
      .. "4 with the blocking curl transport: %.2f s\n"):format(dt, blocking_dt))
    assert.are.equal(50, #codes)
    for i = 1, 50 do
      assert.are.equal(200, codes[i], bodies[i])
      assert.are.equal("lb-queue\n", bodies[i])
    end
    assert.are.equal(50, emu:calls().faulted.DescribeJobQueues - 4)
    assert.is_true(dt >= 1, "the slow fault was not in effect: " .. dt .. " s")
    assert.is_true(dt < 25, "50 slow requests took " .. dt .. " s: the worker blocked (one at a time: 50 s)")
    -- the same with the blocking transport: one at a time (50 would take 50 s)
    for i = 1, 4 do assert.are.equal(200, blocking_codes[i]) end
    assert.is_true(blocking_dt >= 3.5, "blocking requests overlapped: " .. blocking_dt .. " s")
  end)

  describe("the wire and TLS (tests/servers/httpd.py)", function()
    local ng3, pids, pipes, plain, tls = nil, {}, {}, nil, nil

    local function httpd(args)
      local p = assert(io.popen("echo $$; exec " .. PYTHON .. " tests/servers/httpd.py "
        .. "--port 0 " .. (args or "") .. " 2>/dev/null", "r"))
      pipes[#pipes + 1] = p
      pids[#pids + 1] = assert(tonumber(p:read("*l")))
      return assert(tonumber(p:read("*l")), "httpd.py did not start")
    end

    setup(function()
      if skip then return end
      -- a certificate for "localhost", trusted only through our own CA file
      assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        .. "-addext subjectAltName=DNS:localhost -keyout " .. dir .. "/key.pem -out " .. dir
        .. "/cert.pem >/dev/null 2>&1"))
      plain = httpd()
      tls = httpd("--tls-cert " .. dir .. "/cert.pem --tls-key " .. dir .. "/key.pem")
      -- the same snippets with our CA instead of the system bundle (as a user
      -- with a private CA would copy them), under other names
      local function ca_copy(src, dst)
        assert(os.execute(("sed -e 's#/etc/ssl/certs/ca-certificates.crt#%s/cert.pem#' "
          .. "-e 's#/_luabatch/aws#/_luabatch/aws_ca#' -e 's#/_luabatch/vars#/_luabatch/vars_ca#' "
          .. "-e 's#@luabatch_aws_#@luabatch_ca_#g' %s > %s"):format(dir, src, dir .. "/" .. dst)))
      end
      ca_copy(ROOT .. "/lua/luabatch/ngx/locations.conf", "locations_ca.conf")
      ca_copy(ROOT .. "/lua/luabatch/ngx/loopback.conf", "loopback_ca.conf")
      local msg
      ng3, msg = nginx.start({
        workers = 1,
        lua_path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. dir .. "/?.lua;"
          .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;",
        -- "https://localhost" (no port) matches this upstream: keepalive, and
        -- the certificate is checked against the name localhost
        http_extra = LOOPBACK .. "upstream localhost { server 127.0.0.1:" .. tls .. "; keepalive 4; }\n"
          .. "server { listen unix:@PREFIX@/ca.sock; include " .. dir .. "/loopback_ca.conf; }\n",
        server_extra = locations() .. "\ninclude " .. dir .. "/locations_ca.conf;\n",
      })
      assert(ng3, msg)
    end)

    teardown(function()
      if ng3 then ng3.stop() end
      for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
      for _, p in ipairs(pipes) do p:close() end
    end)

    local function raw(query)
      local body = sh("curl -s --max-time 30 -H 'X-Parent-Secret: 1' -H 'Cookie: a=b' '"
        .. ng3.url .. "/raw?" .. query .. "'")
      return assert(cjson.decode(body), body)
    end

    local function esc(s)
      return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end))
    end

    for _, mode in ipairs({ "auto", "loopback" }) do
      it("sends exactly the request's headers, method and body (" .. mode .. ")", function()
        if skip then return pending(skip) end
        local url = "http://127.0.0.1:" .. plain .. "/echo/a%20b?x=1%2F2&y"
        local r = raw("mode=" .. mode .. "&url=" .. esc(url))
        assert.are.equal(200, r.status, r.err)
        local echo = assert(cjson.decode(r.body))
        assert.are.equal("POST", echo.method)
        assert.are.equal("/echo/a%20b?x=1%2F2&y", echo.path)
        assert.are.equal("hello", echo.body)
        local h = {}
        for _, kv in ipairs(echo.headers) do h[kv[1]:lower()] = kv[2] end
        assert.are.equal("127.0.0.1:" .. plain, h.host)
        assert.are.equal("text/plain", h["content-type"])
        assert.are.equal("20260101T000000Z", h["x-amz-date"])
        assert.are.equal("5", h["content-length"])
        -- nothing of the client's request to nginx, nor luabatch's plumbing
        assert.is_nil(h["x-parent-secret"])
        assert.is_nil(h.cookie)
        assert.is_nil(h["x-luabatch-target"])
        assert.are_not.equal("close", h.connection)
        -- repeated answer headers: joined in headers, both in header_list
        assert.are.equal("a, b", r.headers["x-repeat"])
        local n = 0
        for _, kv in ipairs(r.header_list) do if kv[1]:lower() == "x-repeat" then n = n + 1 end end
        assert.are.equal(2, n)
      end)

      -- (nginx keeps TLS sessions and keepalive connections per upstream
      -- peer, whatever location made them: the default-bundle checks use a
      -- target of their own, not the "localhost" upstream of the CA copy)
      it("verifies TLS against the system bundle by default (" .. mode .. ")", function()
        if skip then return pending(skip) end
        local r = raw("mode=" .. mode .. "&url=" .. esc("https://127.0.0.1:" .. tls .. "/echo"))
        assert.are.equal("ECONNECT", r.code, r.body)
        assert.matches("nginx proxy failed", r.err)
        assert.matches("SSL certificate verify error", ng3.error_log())
      end)

      it("accepts the server with a trusted CA, and checks its name (" .. mode .. ")", function()
        if skip then return pending(skip) end
        local q = "mode=" .. mode .. "&location=/_luabatch/aws_ca&socket=ca.sock&url="
        local r = raw(q .. esc("https://localhost/echo"))
        assert.are.equal(200, r.status, r.err)
        local echo = assert(cjson.decode(r.body))
        assert.are.equal("hello", echo.body)
        r = raw(q .. esc("https://127.0.0.1:" .. tls .. "/echo"))
        assert.are.equal("ECONNECT", r.code, r.body)
        assert.matches('certificate does not match "127.0.0.1"', ng3.error_log(), 1, true)
      end)
    end
  end)

  describe("credentials in two workers", function()
    local ng2, meta_pid, meta_pipe, meta_port, meta_base, port2

    local function control(path, doc)
      local cmd = "curl -s --max-time 10 " .. (doc and ("-H 'Content-Type: application/json' -d '"
        .. cjson.encode(doc) .. "' ") or "") .. meta_base .. "/_control/" .. path
      return assert(cjson.decode(sh(cmd)))
    end

    setup(function()
      if skip then return end
      local pf = assert(io.popen("echo $$; exec " .. PYTHON
        .. " tests/servers/metadata.py --port 0 2>/dev/null", "r"))
      meta_pipe = pf
      meta_pid = assert(tonumber(pf:read("*l")))
      meta_port = assert(tonumber(pf:read("*l")), "metadata server did not start")
      meta_base = "http://127.0.0.1:" .. meta_port
      -- the credentials are inside the 300 s refresh window 3 s after issue;
      -- each fetch takes 0.3 s, so concurrent requests overlap it
      control("config", { expires_in = 303, slow = 0.3 })
      port2 = servers.free_port()
      local msg
      ng2, msg = nginx.start({
        workers = 2,
        lua_path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. dir .. "/?.lua;"
          .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;",
        env = { AWS_ACCESS_KEY_ID = key, AWS_SECRET_ACCESS_KEY = secret, AWS_REGION = "us-east-1",
          AWS_CONTAINER_CREDENTIALS_FULL_URI = meta_base .. "/ecs/creds",
          LBT_S3 = endpoint, LBT_EMU = emu.endpoint, LBT_BUCKET = bucket },
        -- reuseport: the kernel spreads the connections over both workers
        http_extra = "init_by_lua_block { assert(require('luabatch.ngx.credentials').init()) }\n"
          .. LOOPBACK .. "server { listen 127.0.0.1:" .. port2 .. " reuseport;\n"
          .. locations() .. "\n}\n",
      })
      assert(ng2, msg)
    end)

    teardown(function()
      if ng2 then ng2.stop() end
      if meta_pid then os.execute("kill " .. meta_pid .. " 2>/dev/null") end
      if meta_pipe then meta_pipe:close() end
    end)

    local function burst(url, n)
      local codes, bodies = parallel(url, n, dir)
      local keys, pids = {}, {}
      for i = 1, n do
        assert.are.equal(200, codes[i], bodies[i])
        local d = assert(cjson.decode(bodies[i]), bodies[i])
        keys[d.key] = (keys[d.key] or 0) + 1
        pids[d.pid] = true
        if d.listed then assert.is_number(d.listed, tostring(d.listed)) end
      end
      local np = 0
      for _ in pairs(pids) do np = np + 1 end
      return keys, np
    end

    it("serves the environment credentials of init() in both workers", function()
      if skip then return pending(skip) end
      local keys, workers = burst("http://127.0.0.1:" .. port2 .. "/creds", 40)
      assert.are.same({ [key] = 40 }, keys)
      assert.are.equal(2, workers)
    end)

    it("fetches container credentials once and refreshes them once across workers", function()
      if skip then return pending(skip) end
      local url = "http://127.0.0.1:" .. port2 .. "/creds?name=ecs"
      local t0 = core.monotime()
      local keys, workers = burst(url, 40)
      assert.are.equal(2, workers)
      local first
      for k, n in pairs(keys) do first = k assert.are.equal(40, n) end
      assert.matches("^ASIAECS", first)
      assert.are.equal(1, control("counts").ecs)
      -- into the refresh window (< 300 s left): one worker refreshes, the
      -- others keep answering with the current credentials meanwhile
      core.sleep(math.max(0, 3.6 - (core.monotime() - t0)))
      keys, workers = burst(url, 40)
      assert.are.equal(2, workers)
      assert.are.equal(2, control("counts").ecs)
      local second
      for k in pairs(keys) do if k ~= first then second = k end end
      assert.truthy(second, "no request saw the refreshed credentials")
      assert.are.equal(second, get_json(url).key)
      assert.are.equal(2, control("counts").ecs)
    end)
  end)
end)
