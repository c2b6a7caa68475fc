-- Integration: the real credential chain (curl transport) against
-- tests/servers/metadata.py acting as ECS agent, IMDSv2 and STS.

local credentials = require "luabatch.credentials"
local config = require "luabatch.config"
local log = require "luabatch.log"
local cjson = require "cjson"
local core = require "luabatch.core"

local PYTHON = "/usr/bin/python3"


local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " '" .. path .. "'") end
end


describe("luabatch.credentials #integration", function()
  local server, pid, port, base, transport, dir

  local function control(path, doc)
    local resp = assert(transport:request({
      method = doc and "POST" or "GET", url = base .. "/_control/" .. path,
      headers = { { "Content-Type", "application/json" } },
      body = doc and cjson.encode(doc) or nil, timeout = 5,
    }))
    assert.are.equal(200, resp.status, resp.body)
    return cjson.decode(resp.body)
  end

  setup(function()
    transport = require("luabatch.transport.curl").new()
    -- popen's shell prints its pid, then execs the server, which prints its port
    server = assert(io.popen("echo $$; exec " .. PYTHON .. " tests/servers/metadata.py --port 0", "r"))
    pid = assert(tonumber(server:read("*l")))
    port = assert(tonumber(server:read("*l")), "metadata server did not start")
    base = "http://127.0.0.1:" .. port
    control("counts")
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p '" .. dir .. "'")
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    if server then server:close() end
    if transport then transport:close() end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  before_each(function()
    control("reset", {})
  end)

  -- A provider over an isolated environment (no real files, IMDS pointed
  -- at the mock server).
  local function provider(env, o)
    o = o or {}
    env.AWS_EC2_METADATA_SERVICE_ENDPOINT = env.AWS_EC2_METADATA_SERVICE_ENDPOINT or base
    local cfg = config.new({ env = env, files = { config = dir .. "/config",
      credentials = dir .. "/credentials" } })
    o.config = cfg
    o.transport = transport
    return credentials.new(o)
  end

  describe("ECS container endpoint", function()
    it("sends the authorization token and reads the credentials", function()
      control("config", { ecs_token = "ecs-secret-token" })
      local c = assert(provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/v2/creds",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = "ecs-secret-token" }):get())
      assert.matches("^ASIAECS%d+$", c.access_key)
      assert.are.equal("ecs", c.source)
      assert.is_truthy(c.session_token)
      assert.is_true(c.expiration > os.time() + 3000)
      assert.are.equal("ecs-secret-token", control("last").headers.authorization)
    end)

    it("reads the token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", function()
      control("config", { ecs_token = "from-file" })
      write(dir .. "/ecs-token", "from-file\n")
      local c = assert(provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = "wrong",
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = dir .. "/ecs-token" }):get())
      assert.matches("^ASIAECS", c.access_key)
    end)

    it("fails with HTTP_401 on a wrong token, without trying IMDS", function()
      control("config", { ecs_token = "right" })
      local c, msg, code = provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = "wrong" }):get()
      assert.is_nil(c)
      assert.are.equal("HTTP_401", code)
      assert.matches("bad authorization token", msg)
      assert.is_nil(msg:find("wrong", 1, true))
      assert.are.equal(0, control("counts").imds_token)
    end)

    it("retries a 500 three times, then reports it", function()
      control("config", { fail_status = 500, fail_times = -1 })
      local c, msg, code = provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x" },
        { container_retry_delay = 0.01 }):get()
      assert.is_nil(c)
      assert.are.equal("HTTP_500", code)
      assert.matches("injected HTTP 500", msg)
      assert.are.equal(3, control("counts").ecs)
    end)

    it("recovers when the endpoint fails once", function()
      control("config", { fail_status = 500, fail_times = 1 })
      local c = assert(provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x" },
        { container_retry_delay = 0.01 }):get())
      assert.matches("^ASIAECS", c.access_key)
      assert.are.equal(2, control("counts").ecs)
    end)

    it("times out on a slow endpoint", function()
      control("config", { slow = 10 })
      local t0 = core.monotime()
      local c, msg, code = provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x" },
        { container_timeout = 0.3, container_attempts = 1 }):get()
      assert.is_nil(c)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches(base .. "/ecs/x", msg, 1, true)
      assert.is_true(core.monotime() - t0 < 5)   -- not the 10 s answer
    end)
  end)

  describe("EC2 IMDSv2", function()
    it("gets a session token, the role and its credentials", function()
      local c = assert(provider({}):get())
      assert.matches("^ASIAIMDS", c.access_key)
      assert.are.equal("imds", c.source)
      local n = control("counts")
      assert.are.equal(1, n.imds_token)
      assert.are.equal(1, n.imds_role)
      assert.are.equal(1, n.imds_creds)
    end)

    it("is skipped within its 1 s timeout when the endpoint is slow", function()
      control("config", { slow = 10 })
      local t0 = core.monotime()
      local c, msg, code = provider({}):get()
      assert.is_nil(c)
      assert.are.equal("NoCredentials", code)
      assert.matches("imds " .. base, msg, 1, true)
      assert.is_true(core.monotime() - t0 < 6)   -- 1 s timeout, not the 10 s answer
    end)

    it("is not asked when AWS_EC2_METADATA_DISABLED=true", function()
      local c, _, code = provider({ AWS_EC2_METADATA_DISABLED = "true" }):get()
      assert.is_nil(c)
      assert.are.equal("NoCredentials", code)
      assert.are.equal(0, control("counts").imds_token)
    end)
  end)

  describe("STS", function()
    it("exchanges a web identity token (env) for credentials", function()
      write(dir .. "/token", "good-web-identity-token\n")
      local c = assert(provider({ AWS_WEB_IDENTITY_TOKEN_FILE = dir .. "/token",
        AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/batch-job", AWS_ROLE_SESSION_NAME = "it-session",
        AWS_ENDPOINT_URL_STS = base, AWS_REGION = "eu-west-1" }):get())
      assert.matches("^ASIASTS", c.access_key)
      assert.are.equal("web_identity", c.source)
      assert.is_true(c.expiration > os.time() + 3000)
      local last = control("last")
      assert.are.equal("AssumeRoleWithWebIdentity", last.form.Action)
      assert.are.equal("it-session", last.form.RoleSessionName)
      assert.is_nil(last.headers.authorization)
    end)

    it("reports a rejected token with the STS code", function()
      write(dir .. "/token", "forged")
      local c, msg, code = provider({ AWS_WEB_IDENTITY_TOKEN_FILE = dir .. "/token",
        AWS_ROLE_ARN = "arn:aws:iam::1:role/r", AWS_ENDPOINT_URL_STS = base }):get()
      assert.is_nil(c)
      assert.are.equal("InvalidIdentityToken", code)
      assert.matches("HTTP 400 InvalidIdentityToken", msg)
      assert.is_nil(msg:find("forged", 1, true))
    end)

    it("assumes a role from a profile with source_profile, signing with the source keys", function()
      control("config", { access_key = "AKIDSOURCE" })
      write(dir .. "/credentials", "[base]\naws_access_key_id = AKIDSOURCE\n"
        .. "aws_secret_access_key = c2VjcmV0LXNvdXJjZS1rZXktMTIzNDU2Nzg5\n")
      write(dir .. "/config", "[profile app]\nregion = us-west-2\nrole_arn = arn:aws:iam::1:role/app\n"
        .. "source_profile = base\nendpoint_url = " .. base .. "\n")
      local c = assert(provider({ AWS_PROFILE = "app" }):get())
      assert.matches("^ASIASTS", c.access_key)
      assert.are.equal("assume_role", c.source)
      local last = control("last")
      assert.are.equal("AssumeRole", last.form.Action)
      assert.matches("Credential=AKIDSOURCE/%d+/us%-west%-2/sts/aws4_request", last.headers.authorization)
    end)
  end)

  describe("expiry and refresh", function()
    it("refreshes credentials before they expire", function()
      control("config", { expires_in = 20 })
      local skew = 0
      local p = provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x" },
        { advisory_window = 10, clock = function() return os.time() + skew end })
      local a = assert(p:get())
      assert.are.equal(a.access_key, assert(p:get()).access_key)      -- cached
      assert.are.equal(1, control("counts").ecs)
      skew = 12                                                       -- 8 s left < 10
      local b = assert(p:get())
      assert.are_not.equal(a.access_key, b.access_key)
      assert.are.equal(2, control("counts").ecs)
    end)

    it("keeps the old credentials with a warning when the refresh fails", function()
      control("config", { expires_in = 20 })
      local skew = 0
      local p = provider({ AWS_CONTAINER_CREDENTIALS_FULL_URI = base .. "/ecs/x" },
        { advisory_window = 10, container_attempts = 1, clock = function() return os.time() + skew end })
      local a = assert(p:get())
      control("config", { fail_status = 500, fail_times = -1 })
      skew = 12
      local lines = {}
      local old = log.set_sink(function(l) lines[#lines + 1] = l end)
      local b = p:get()
      log.set_sink(old)
      assert.are.equal(a.access_key, b.access_key)
      assert.are.equal(1, #lines)
      assert.matches("refresh from ecs failed", lines[1])
      assert.is_nil(lines[1]:find(a.secret_key, 1, true))
    end)
  end)

  describe("profile files", function()
    it("uses static keys, then credential_process", function()
      write(dir .. "/credentials", "[default]\naws_access_key_id = AKIDFILE\n"
        .. "aws_secret_access_key = c2VjcmV0LWZyb20tZmlsZS0xMjM0NTY3ODkw\n")
      local c = assert(provider({}):get())
      assert.are.equal("AKIDFILE", c.access_key)
      os.remove(dir .. "/credentials")
      write(dir .. "/proc.sh", "#!/bin/sh\nprintf '%s' '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", "
        .. "\"SecretAccessKey\": \"c2VjcmV0LWZyb20tcHJvY2Vzcy0xMjM0NTY3\"}'\n", "755")
      write(dir .. "/config", "[profile p]\ncredential_process = " .. dir .. "/proc.sh\n")
      c = assert(provider({ AWS_PROFILE = "p" }):get())
      assert.are.equal("AKIDPROC", c.access_key)
      assert.are.equal("process", c.source)
      assert.is_nil(c.expiration)
      assert.are.equal(0, control("counts").imds_token)
    end)
  end)
end)
