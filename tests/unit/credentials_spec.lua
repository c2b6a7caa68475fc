-- Specs for luabatch.credentials: every provider with fake transports and
-- temp files; cache and refresh with an injected clock.

local credentials = require "luabatch.credentials"
local config = require "luabatch.config"
local log = require "luabatch.log"
local real_core = require "luabatch.core"

local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN0123456789abcdef"
local T0 = 1763978400                     -- 2025-11-24T10:00:00Z

local cjson = require "cjson"


local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end


local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " '" .. path .. "'") end
end


local function header(list, name)
  name = name:lower()
  for _, kv in ipairs(list or {}) do
    if kv[1]:lower() == name then return kv[2] end
  end
  return nil
end


-- A transport routing on "METHOD url" to handler(opts) -> resp | nil, msg, code.
local function router(routes)
  local t = { calls = {} }
  function t.request(self, opts)
    self.calls[#self.calls + 1] = opts
    local key = opts.method .. " " .. opts.url
    local h = routes[key]
    if not h then return nil, "connect to " .. opts.url .. " failed", "ECONNECT" end
    local r, msg, code = h(opts)
    if r then r.headers = r.headers or {} end
    return r, msg, code
  end
  return t
end


local function json(status, doc)
  return function() return { status = status, body = cjson.encode(doc) } end
end


local function sts_creds_xml(action, ak, sk, token, exp)
  return ("<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><%sResult>"
    .. "<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
    .. "<SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>"
    .. "</%sResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></%sResponse>")
    :format(action, action, ak, sk, token, exp, action, action)
end


local function form_decode(body)
  local out = {}
  for k, v in body:gmatch("([^&=]+)=([^&]*)") do
    out[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return out
end


describe("luabatch.credentials #unit", function()
  local dir, cfg_path, creds_path, now, core, sleeps

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    cfg_path = dir .. "/config"
    creds_path = dir .. "/credentials"
    now = T0
    sleeps = {}
    core = setmetatable({
      now = function() return now end,
      monotime = function() return now end,
      sleep = function(s) sleeps[#sleeps + 1] = s; return true end,
    }, { __index = real_core })
  end)

  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function new(env, o)
    o = o or {}
    env = env or {}
    local cfg = config.new({ env = env, files = { config = cfg_path, credentials = creds_path } })
    o.config = cfg
    o.transport = o.transport or router({})
    o.clock = function() return now end
    o.sleep = function(s) sleeps[#sleeps + 1] = s; return true end
    o.core = core
    return credentials.new(o)
  end

  describe("chain", function()
    it("probes nothing in new()", function()
      local t = router({})
      new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/x" }, { transport = t })
      assert.are.equal(0, #t.calls)
    end)

    it("prefers explicit keys over the environment", function()
      local c = assert(new({ AWS_ACCESS_KEY_ID = "AKIDENV", AWS_SECRET_ACCESS_KEY = SECRET },
        { access_key = "AKIDEXPL", secret_key = SECRET }):get())
      assert.are.equal("AKIDEXPL", c.access_key)
      assert.are.equal("explicit", c.source)
    end)

    it("reads the environment", function()
      local c = assert(new({ AWS_ACCESS_KEY_ID = "AKIDENV", AWS_SECRET_ACCESS_KEY = SECRET,
        AWS_SESSION_TOKEN = TOKEN }):get())
      assert.are.same({ access_key = "AKIDENV", secret_key = SECRET, session_token = TOKEN,
        source = "env" }, c)
    end)

    it("rejects half-set environment keys", function()
      local c, msg, code = new({ AWS_ACCESS_KEY_ID = "AKIDENV" }):get()
      assert.is_nil(c)
      assert.are.equal("PartialCredentials", code)
      assert.matches("AWS_SECRET_ACCESS_KEY", msg)
    end)

    it("says what it tried when nothing is found", function()
      local t = router({})
      local c, msg, code = new({}, { transport = t }):get()
      assert.is_nil(c)
      assert.are.equal("NoCredentials", code)
      for _, what in ipairs({ "explicit", "env %(AWS_ACCESS_KEY_ID not set%)", "profile",
        "web_identity %(AWS_WEB_IDENTITY_TOKEN_FILE not set%)", "ecs", "imds http://169%.254%.169%.254" }) do
        assert.matches(what, msg)
      end
      assert.matches(cfg_path, msg, 1, true)
      -- IMDS was probed once (1 attempt, 1 s timeout by default)
      assert.are.equal(1, #t.calls)
      assert.are.equal("PUT", t.calls[1].method)
      assert.are.equal(1, t.calls[1].timeout)
    end)

    it("accepts custom provider functions and a restricted chain", function()
      local c = assert(new({ AWS_ACCESS_KEY_ID = "AKIDENV", AWS_SECRET_ACCESS_KEY = SECRET }, {
        providers = { function() return false, "nothing here" end,
          function() return { access_key = "AKIDFN", secret_key = SECRET } end, "env" } }):get())
      assert.are.equal("AKIDFN", c.access_key)
      assert.are.equal("custom#2", c.source)
      assert.has_error(function() credentials.new({ providers = { "bogus" } }) end)
      assert.has_error(function() credentials.new({ access_key = "A" }) end)
    end)

    it("registers the secrets with the log redactor", function()
      local sk = "SECRETFORREDACTION" .. tostring(os.time())
      assert(new({ AWS_ACCESS_KEY_ID = "AKID", AWS_SECRET_ACCESS_KEY = sk }):get())
      assert.are.equal("x <redacted> y", log.redact("x " .. sk .. " y"))
    end)

    it("resolve() is new():get()", function()
      local c = assert(credentials.resolve({ env = { AWS_ACCESS_KEY_ID = "AKIDR",
        AWS_SECRET_ACCESS_KEY = SECRET } }))
      assert.are.equal("AKIDR", c.access_key)
    end)
  end)

  describe("profile files", function()
    it("reads static keys from the credentials file, then the config file", function()
      write(creds_path, "[default]\naws_access_key_id = AKIDCREDS\naws_secret_access_key = " .. SECRET .. "\n")
      write(cfg_path, "[profile dev]\naws_access_key_id = AKIDCFG\naws_secret_access_key = "
        .. SECRET .. "\naws_session_token = " .. TOKEN .. "\n")
      local c = assert(new({}):get())
      assert.are.equal("AKIDCREDS", c.access_key)
      assert.are.equal("profile", c.source)
      c = assert(new({ AWS_PROFILE = "dev" }):get())
      assert.are.equal("AKIDCFG", c.access_key)
      assert.are.equal(TOKEN, c.session_token)
    end)

    it("fails when an explicitly chosen profile does not exist", function()
      local c, msg, code = new({ AWS_PROFILE = "nope" }):get()
      assert.is_nil(c)
      assert.are.equal("ProfileNotFound", code)
      assert.matches("profile 'nope' not found", msg)
    end)

    it("reports a profile with half the keys", function()
      write(creds_path, "[default]\naws_access_key_id = AKID\n")
      local _, msg, code = new({}):get()
      assert.are.equal("PartialCredentials", code)
      assert.matches("aws_secret_access_key missing", msg)
    end)

    it("runs credential_process and parses Version 1 JSON", function()
      local script = dir .. "/proc.sh"
      write(script, "#!/bin/sh\ncat <<EOF\n" .. cjson.encode({ Version = 1, AccessKeyId = "AKIDPROC",
        SecretAccessKey = SECRET, SessionToken = TOKEN, Expiration = iso(T0 + 3600) }) .. "\nEOF\n", "755")
      write(cfg_path, "[default]\ncredential_process = " .. script .. " --flag # comment\n")
      local c = assert(new({}):get())
      assert.are.equal("AKIDPROC", c.access_key)
      assert.are.equal(TOKEN, c.session_token)
      assert.are.equal(T0 + 3600, c.expiration)
      assert.are.equal("process", c.source)
    end)

    it("reports a failing credential_process without leaking its output", function()
      local script = dir .. "/fail.sh"
      write(script, "#!/bin/sh\necho '{\"SecretAccessKey\":\"" .. SECRET .. "\"}'\nexit 3\n", "755")
      write(cfg_path, "[default]\ncredential_process = " .. script .. "\n")
      local c, msg, code = new({}):get()
      assert.is_nil(c)
      assert.are.equal("CredentialProcessError", code)
      assert.matches("exited with status 3", msg)
      assert.is_nil(msg:find(SECRET, 1, true))
    end)

    it("rejects a credential_process answer of another version", function()
      local script = dir .. "/v2.sh"
      write(script, "#!/bin/sh\necho '{\"Version\":2,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}'\n", "755")
      write(cfg_path, "[default]\ncredential_process = " .. script .. "\n")
      local _, msg, code = new({}):get()
      assert.are.equal("CredentialProcessError", code)
      assert.matches("unsupported Version 2", msg)
    end)

    it("assumes role_arn + web_identity_token_file from the profile", function()
      local tokfile = dir .. "/token"
      write(tokfile, "eyJhbGciOiJSUzI1NiJ9.payload.sig\n")
      write(cfg_path, "[default]\nregion = eu-west-1\nrole_arn = arn:aws:iam::123456789012:role/web\n"
        .. "web_identity_token_file = " .. tokfile .. "\nrole_session_name = sess1\n")
      local seen
      local t = router({ ["POST https://sts.eu-west-1.amazonaws.com/"] = function(o)
        seen = o
        return { status = 200, body = sts_creds_xml("AssumeRoleWithWebIdentity", "ASIAWEB", SECRET,
          TOKEN, iso(T0 + 3600)) }
      end })
      local c = assert(new({}, { transport = t }):get())
      assert.are.equal("ASIAWEB", c.access_key)
      assert.are.equal(T0 + 3600, c.expiration)
      assert.are.equal("web_identity", c.source)
      local form = form_decode(seen.body)
      assert.are.equal("AssumeRoleWithWebIdentity", form.Action)
      assert.are.equal("2011-06-15", form.Version)
      assert.are.equal("arn:aws:iam::123456789012:role/web", form.RoleArn)
      assert.are.equal("sess1", form.RoleSessionName)
      assert.are.equal("eyJhbGciOiJSUzI1NiJ9.payload.sig", form.WebIdentityToken)
      assert.is_nil(header(seen.headers, "Authorization"))
    end)

    it("assumes role_arn + source_profile with AssumeRole signed by the source keys", function()
      write(creds_path, "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = " .. SECRET .. "\n")
      write(cfg_path, "[profile app]\nregion = us-west-2\nrole_arn = arn:aws:iam::1:role/app\n"
        .. "source_profile = base\nexternal_id = ext-1\n")
      local seen
      local t = router({ ["POST https://sts.us-west-2.amazonaws.com/"] = function(o)
        seen = o
        return { status = 200, body = sts_creds_xml("AssumeRole", "ASIAROLE", SECRET, TOKEN, iso(T0 + 900)) }
      end })
      local c = assert(new({ AWS_PROFILE = "app" }, { transport = t }):get())
      assert.are.equal("ASIAROLE", c.access_key)
      assert.are.equal("assume_role", c.source)
      local form = form_decode(seen.body)
      assert.are.equal("AssumeRole", form.Action)
      assert.are.equal("ext-1", form.ExternalId)
      assert.matches("Credential=AKIDBASE/%d+/us%-west%-2/sts/aws4_request",
        header(seen.headers, "Authorization"))
    end)

    it("detects source_profile loops and unsupported MFA", function()
      write(cfg_path, "[profile a]\nrole_arn = arn:r:a\nsource_profile = b\n"
        .. "[profile b]\nrole_arn = arn:r:b\nsource_profile = a\n"
        .. "[profile m]\nrole_arn = arn:r:m\nsource_profile = a\nmfa_serial = arn:mfa\n")
      local _, msg, code = new({ AWS_PROFILE = "a" }):get()
      assert.are.equal("InvalidConfig", code)
      assert.matches("loop", msg)
      _, _, code = new({ AWS_PROFILE = "m" }):get()
      assert.are.equal("NotSupported", code)
    end)
  end)

  describe("web identity from the environment", function()
    it("calls STS AssumeRoleWithWebIdentity unsigned", function()
      local tokfile = dir .. "/tok"
      write(tokfile, "TOKEN-ABC")
      local seen
      local t = router({ ["POST http://sts.local:1/"] = function(o)
        seen = o
        return { status = 200, body = sts_creds_xml("AssumeRoleWithWebIdentity", "ASIAENV", SECRET,
          TOKEN, iso(T0 + 3600)) }
      end })
      local c = assert(new({ AWS_WEB_IDENTITY_TOKEN_FILE = tokfile, AWS_ROLE_ARN = "arn:aws:iam::1:role/x",
        AWS_ROLE_SESSION_NAME = "s", AWS_ENDPOINT_URL_STS = "http://sts.local:1" }, { transport = t }):get())
      assert.are.equal("ASIAENV", c.access_key)
      local form = form_decode(seen.body)
      assert.are.equal("TOKEN-ABC", form.WebIdentityToken)
      assert.are.equal("s", form.RoleSessionName)
    end)

    it("turns an STS ErrorResponse into an error naming the role", function()
      local tokfile = dir .. "/tok"
      write(tokfile, "bad")
      local t = router({ ["POST https://sts.amazonaws.com/"] = function()
        return { status = 400, body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
          .. "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
          .. "<Message>Couldn't retrieve verification key</Message></Error>"
          .. "<RequestId>r</RequestId></ErrorResponse>" }
      end })
      local c, msg, code = new({ AWS_WEB_IDENTITY_TOKEN_FILE = tokfile, AWS_ROLE_ARN = "arn:aws:iam::1:role/x" },
        { transport = t }):get()
      assert.is_nil(c)
      assert.are.equal("InvalidIdentityToken", code)
      assert.matches("^web identity: AssumeRoleWithWebIdentity arn:aws:iam::1:role/x: HTTP 400 "
        .. "InvalidIdentityToken: Couldn't retrieve verification key", msg)
    end)

    it("reports a missing token file and a missing role", function()
      local _, msg, code = new({ AWS_WEB_IDENTITY_TOKEN_FILE = dir .. "/none", AWS_ROLE_ARN = "arn:x" }):get()
      assert.are.equal("ENOENT", code)
      assert.matches(dir .. "/none", msg, 1, true)
      _, _, code = new({ AWS_WEB_IDENTITY_TOKEN_FILE = dir .. "/none" }):get()
      assert.are.equal("InvalidConfig", code)
    end)
  end)

  describe("ECS container credentials", function()
    local body = { AccessKeyId = "ASIAECS", SecretAccessKey = SECRET, Token = TOKEN,
      Expiration = iso(T0 + 7200), RoleArn = "arn:aws:iam::1:role/task" }

    it("uses the relative URI on the ECS agent address", function()
      local t = router({ ["GET http://169.254.170.2/v2/credentials/abc"] = json(200, body) })
      local c = assert(new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/v2/credentials/abc" },
        { transport = t }):get())
      assert.are.same({ access_key = "ASIAECS", secret_key = SECRET, session_token = TOKEN,
        expiration = T0 + 7200, source = "ecs" }, c)
      assert.is_nil(header(t.calls[1].headers, "Authorization"))
    end)

    it("sends the authorization token, the token file winning", function()
      local tf = dir .. "/ecs-token"
      write(tf, "file-token\n")
      local t = router({ ["GET http://127.0.0.1:8080/creds"] = json(200, body) })
      assert(new({ AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://127.0.0.1:8080/creds",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = "env-token" }, { transport = t }):get())
      assert.are.equal("env-token", header(t.calls[1].headers, "Authorization"))
      assert(new({ AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://127.0.0.1:8080/creds",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = "env-token",
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = tf }, { transport = t }):get())
      assert.are.equal("file-token", header(t.calls[2].headers, "Authorization"))
    end)

    it("allows plain http only to loopback and the agents", function()
      for _, ok_url in ipairs({ "http://localhost:1/c", "http://127.1.2.3/c", "http://[::1]:5/c",
        "http://169.254.170.23/v1/credentials", "https://creds.example.com/c" }) do
        local t = router({ ["GET " .. ok_url] = json(200, body) })
        assert(new({ AWS_CONTAINER_CREDENTIALS_FULL_URI = ok_url }, { transport = t }):get(), ok_url)
      end
      local t = router({})
      local c, msg, code = new({ AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://10.0.0.5/creds" },
        { transport = t }):get()
      assert.is_nil(c)
      assert.are.equal("InvalidConfig", code)
      assert.matches("10%.0%.0%.5 is not allowed", msg)
      assert.are.equal(0, #t.calls)
    end)

    it("retries a 500 three times, then stops the chain with the error", function()
      local t = router({ ["GET http://169.254.170.2/c"] = json(500, { code = "Internal", message = "boom" }) })
      local c, msg, code = new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/c" }, { transport = t }):get()
      assert.is_nil(c)
      assert.are.equal("HTTP_500", code)
      assert.are.equal("ecs: container credentials endpoint http://169.254.170.2/c: HTTP 500: boom", msg)
      assert.are.equal(3, #t.calls)                 -- IMDS never asked
      assert.are.equal(2, #sleeps)
    end)

    it("does not retry a 4xx", function()
      local t = router({ ["GET http://169.254.170.2/c"] = json(403, { message = "denied" }) })
      local _, _, code = new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/c" }, { transport = t }):get()
      assert.are.equal("HTTP_403", code)
      assert.are.equal(1, #t.calls)
    end)

    it("passes a timeout failure through with its code", function()
      local t = router({ ["GET http://169.254.170.2/c"] = function() return nil, "timed out", "ETIMEDOUT" end })
      local _, msg, code = new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/c" },
        { transport = t, container_attempts = 1 }):get()
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("http://169%.254%.170%.2/c: timed out", msg)
      assert.are.equal(2, t.calls[1].timeout)
    end)
  end)

  describe("EC2 IMDSv2", function()
    local base = "http://169.254.169.254"

    local function imds_routes(b, role_doc)
      return {
        ["PUT " .. b .. "/latest/api/token"] = function(o)
          assert.are.equal("21600", header(o.headers, "X-aws-ec2-metadata-token-ttl-seconds"))
          return { status = 200, body = "IMDSTOKEN" }
        end,
        ["GET " .. b .. "/latest/meta-data/iam/security-credentials/"] = function(o)
          if header(o.headers, "X-aws-ec2-metadata-token") ~= "IMDSTOKEN" then return { status = 401, body = "" } end
          return { status = 200, body = "my-role\n" }
        end,
        ["GET " .. b .. "/latest/meta-data/iam/security-credentials/my-role"] = function(o)
          if header(o.headers, "X-aws-ec2-metadata-token") ~= "IMDSTOKEN" then return { status = 401, body = "" } end
          return { status = 200, body = cjson.encode(role_doc) }
        end,
      }
    end

    local doc = { Code = "Success", Type = "AWS-HMAC", AccessKeyId = "ASIAIMDS", SecretAccessKey = SECRET,
      Token = TOKEN, Expiration = iso(T0 + 21600), LastUpdated = iso(T0) }

    it("gets a token, the role name and the role's credentials", function()
      local t = router(imds_routes(base, doc))
      local c = assert(new({}, { transport = t }):get())
      assert.are.equal("ASIAIMDS", c.access_key)
      assert.are.equal("imds", c.source)
      assert.are.equal(T0 + 21600, c.expiration)
      assert.are.equal(3, #t.calls)
    end)

    it("honours AWS_EC2_METADATA_SERVICE_ENDPOINT and the timeout settings", function()
      local t = router(imds_routes("http://127.0.0.1:7777", doc))
      assert(new({ AWS_EC2_METADATA_SERVICE_ENDPOINT = "http://127.0.0.1:7777/",
        AWS_METADATA_SERVICE_TIMEOUT = "3" }, { transport = t }):get())
      assert.are.equal(3, t.calls[1].timeout)
    end)

    it("is skipped when AWS_EC2_METADATA_DISABLED=true", function()
      local t = router(imds_routes(base, doc))
      local c, msg, code = new({ AWS_EC2_METADATA_DISABLED = "TRUE" }, { transport = t }):get()
      assert.is_nil(c)
      assert.are.equal("NoCredentials", code)
      assert.matches("AWS_EC2_METADATA_DISABLED", msg)
      assert.are.equal(0, #t.calls)
    end)

    it("falls back to IMDSv1 when the token PUT is refused, unless v1 is disabled", function()
      local routes = imds_routes(base, doc)
      routes["PUT " .. base .. "/latest/api/token"] = function() return { status = 403, body = "" } end
      local plain = routes["GET " .. base .. "/latest/meta-data/iam/security-credentials/"]
      routes["GET " .. base .. "/latest/meta-data/iam/security-credentials/"] = function()
        return { status = 200, body = "my-role" }
      end
      routes["GET " .. base .. "/latest/meta-data/iam/security-credentials/my-role"] = json(200, doc)
      assert.is_function(plain)
      assert(new({}, { transport = router(routes) }):get())
      local c, msg = new({ AWS_EC2_METADATA_V1_DISABLED = "true" }, { transport = router(routes) }):get()
      assert.is_nil(c)
      assert.matches("IMDSv1 is disabled", msg)
    end)

    it("retries up to AWS_METADATA_SERVICE_NUM_ATTEMPTS", function()
      local t = router({})
      new({ AWS_METADATA_SERVICE_NUM_ATTEMPTS = "3" }, { transport = t }):get()
      assert.are.equal(3, #t.calls)
    end)
  end)

  describe("cache and refresh", function()
    local function ecs_server(lifetime)
      local n = 0
      local healthy = true
      local t = router({ ["GET http://169.254.170.2/c"] = function()
        if not healthy then return { status = 500, body = "{}" } end
        n = n + 1
        return { status = 200, body = cjson.encode({ AccessKeyId = "ASIA" .. n, SecretAccessKey = SECRET,
          Token = TOKEN, Expiration = iso(now + lifetime) }) }
      end })
      return t, function(v) healthy = v end
    end

    it("serves cached credentials until the advisory window", function()
      local t = ecs_server(3600)
      local p = new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/c" }, { transport = t })
      assert.are.equal("ASIA1", p:get().access_key)
      now = now + 3600 - 901
      assert.are.equal("ASIA1", p:get().access_key)
      assert.are.equal(1, #t.calls)
      now = now + 2                                    -- 899 s left: refresh
      assert.are.equal("ASIA2", p:get().access_key)
      assert.are.equal(2, #t.calls)
    end)

    it("keeps valid credentials with a warning when a refresh fails, then backs off", function()
      local t, healthy = ecs_server(3600)
      local p = new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/c" },
        { transport = t, container_attempts = 1 })
      assert(p:get())
      healthy(false)
      now = now + 3000
      local lines = {}
      local old = log.set_sink(function(l) lines[#lines + 1] = l end)
      local c = p:get()
      log.set_sink(old)
      assert.are.equal("ASIA1", c.access_key)
      assert.are.equal(1, #lines)
      assert.matches("refresh from ecs failed", lines[1])
      assert.matches("expire in 600 s", lines[1])
      local calls = #t.calls
      now = now + 10                                    -- within the 30 s backoff
      assert.are.equal("ASIA1", p:get().access_key)
      assert.are.equal(calls, #t.calls)
      healthy(true)
      now = now + 30
      assert.are.equal("ASIA2", p:get().access_key)
    end)

    it("fails once the credentials have expired and cannot be refreshed", function()
      local t, healthy = ecs_server(1000)
      local p = new({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "/c" },
        { transport = t, container_attempts = 1 })
      assert(p:get())
      healthy(false)
      now = now + 1001
      local c, msg, code = p:get()
      assert.is_nil(c)
      assert.are.equal("HTTP_500", code)
      assert.matches("expired and refresh failed", msg)
    end)

    it("re-runs the chain when the source provider is gone, and invalidate() forgets", function()
      local env = { AWS_ACCESS_KEY_ID = "AKID1", AWS_SECRET_ACCESS_KEY = SECRET }
      local p = new(env)
      assert.are.equal("AKID1", p:get().access_key)
      env.AWS_ACCESS_KEY_ID = "AKID2"
      assert.are.equal("AKID1", p:get().access_key)    -- static: cached forever
      p:invalidate()
      assert.are.equal("AKID2", p:get().access_key)
    end)
  end)
end)


describe("luabatch.credentials printed #unit", function()
  local SK = "printedSECRETwJalrXUtnFEMIK7MDENGbPxRfiCY"

  it("tostring of a static provider and its credentials shows the key id, not the secrets", function()
    local p = credentials.static({ access_key = "AKIDEXAMPLE", secret_key = SK, session_token = TOKEN })
    for _, v in ipairs({ p, p:get() }) do
      local s = tostring(v)
      assert.is_nil(s:find(SK, 1, true))
      assert.is_nil(s:find(TOKEN, 1, true))
      assert.is_truthy(s:find("AKIDEXAMPLE", 1, true))
      assert.is_truthy(s:find("secret key <redacted>, session token <redacted>", 1, true))
    end
    assert.are.equal("credentials (explicit): access key AKIDEXAMPLE, secret key <redacted>, "
      .. "session token <redacted>", tostring(p:get()))
  end)

  it("tostring of a chain names its providers, then the credentials once resolved", function()
    local p = credentials.new({ env = { AWS_ACCESS_KEY_ID = "AKIDENV", AWS_SECRET_ACCESS_KEY = SK },
      providers = { "env", function() return false, "never" end } })
    assert.are.equal("credentials provider chain env,custom#2: not resolved", tostring(p))
    assert(p:get())
    assert.are.equal("credentials provider chain env,custom#2: credentials (env): access key "
      .. "AKIDENV, secret key <redacted>", tostring(p))
  end)

  it("a custom provider's plain table gets the safe tostring; its own metatable is kept", function()
    local own = { __index = { extra = 1 } }
    local plain = credentials.new({ env = {}, providers = { function()
      return { access_key = "AKIDC", secret_key = SK } end } }):get()
    assert.are.equal("credentials (custom#1): access key AKIDC, secret key <redacted>", tostring(plain))
    local kept = credentials.new({ env = {}, providers = { function()
      return setmetatable({ access_key = "AKIDC", secret_key = SK }, own) end } }):get()
    assert.are.equal(own, getmetatable(kept))
  end)

  it("the credentials still read, copy and JSON-encode as plain fields", function()
    local c = credentials.static({ access_key = "AKIDEXAMPLE", secret_key = SK }):get()
    assert.are.equal(SK, c.secret_key)
    assert.are.same({ access_key = "AKIDEXAMPLE", secret_key = SK, source = "explicit" }, c)
    assert.are.same({ access_key = "AKIDEXAMPLE", secret_key = SK, source = "explicit" },
      cjson.decode(cjson.encode(c)))
    local json = require "luabatch.json"
    assert.are.equal('{"access_key":"AKIDEXAMPLE","secret_key":"' .. SK .. '","source":"explicit"}',
      json.encode(c))
  end)
end)
