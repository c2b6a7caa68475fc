-- Specs for luabatch.config (environment injected, temp profile files).

local config = require "luabatch.config"


local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end


describe("luabatch.config #unit", function()
  local dir, cfg_path, creds_path

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    cfg_path = dir .. "/config"
    creds_path = dir .. "/credentials"
  end)

  after_each(function()
    os.remove(cfg_path)
    os.remove(creds_path)
    os.remove(dir)
  end)

  local function new(env, opts)
    opts = opts or {}
    opts.env = env or {}
    opts.files = opts.files or { config = cfg_path, credentials = creds_path }
    return config.new(opts)
  end

  describe("region", function()
    it("prefers explicit > AWS_REGION > AWS_DEFAULT_REGION > profile", function()
      write(cfg_path, "[default]\nregion = eu-north-1\n")
      local env = { AWS_REGION = "us-west-2", AWS_DEFAULT_REGION = "eu-west-1" }
      assert.are.equal("ap-south-1", (new(env, { region = "ap-south-1" }):region()))
      assert.are.equal("us-west-2", (new(env):region()))
      env.AWS_REGION = nil
      assert.are.equal("eu-west-1", (new(env):region()))
      env.AWS_DEFAULT_REGION = ""          -- empty counts as unset
      local r, src = new(env):region()
      assert.are.equal("eu-north-1", r)
      assert.are.equal("profile default", src)
    end)

    it("reads the region of the selected profile", function()
      write(cfg_path, "[default]\nregion = eu-north-1\n[profile dev]\nregion = us-east-2\n")
      assert.are.equal("us-east-2", (new({ AWS_PROFILE = "dev" }):region()))
      assert.are.equal("us-east-2", (new({ AWS_DEFAULT_PROFILE = "dev" }):region()))
      assert.are.equal("us-east-2", (new({}, { profile = "dev" }):region()))
    end)

    it("fails with a clear message and a stable code", function()
      local r, msg, code = new({}):region()
      assert.is_nil(r)
      assert.are.equal("NoRegion", code)
      assert.matches("AWS_REGION", msg)
      assert.matches(cfg_path, msg, 1, true)
    end)
  end)

  describe("profile files", function()
    it("parses profiles, comments and nested sub-sections", function()
      write(cfg_path, table.concat({
        "# a comment",
        "; another",
        "[default]",
        "region = eu-west-1 # inline comment",
        "output=json",
        "s3 =",
        "  addressing_style = path",
        "  max_concurrent_requests = 20",
        "",
        "[profile dev]",
        "Region = us-east-2",
        "role_arn = arn:aws:iam::123456789012:role/dev#x",
        "[not-a-profile]",
        "region = xx",
      }, "\n"))
      local c = new({})
      local p, found = c:profile()
      assert.is_true(found)
      assert.are.equal("eu-west-1", p.region)
      assert.are.equal("json", p.output)
      assert.are.same({ addressing_style = "path", max_concurrent_requests = "20" }, p.s3)
      assert.are.equal("path", c:service_setting("s3", "addressing_style"))
      local dev = c:profile("dev")
      assert.are.equal("us-east-2", dev.region)                       -- keys lower-cased
      assert.are.equal("arn:aws:iam::123456789012:role/dev#x", dev.role_arn) -- '#' without space kept
      local _, found_np = c:profile("not-a-profile")
      assert.is_false(found_np)
      assert.are.same({ "default", "dev" }, c:profile_names())
    end)

    it("lets the credentials file override the config file", function()
      write(cfg_path, "[profile dev]\naws_access_key_id = FROMCONFIG\nregion = us-east-2\n")
      write(creds_path, "[dev]\naws_access_key_id = FROMCREDS\naws_secret_access_key = s\n")
      local p, found, files = new({ AWS_PROFILE = "dev" }):profile()
      assert.is_true(found)
      assert.are.equal("FROMCREDS", p.aws_access_key_id)
      assert.are.equal("us-east-2", p.region)
      assert.are.same({ cfg_path, creds_path }, files)
    end)

    it("uses AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE, with ~ expanded", function()
      write(cfg_path, "[default]\nregion = sa-east-1\n")
      local c = config.new({ env = {
        HOME = dir, AWS_CONFIG_FILE = "~/config", AWS_SHARED_CREDENTIALS_FILE = "~/nope",
      } })
      assert.are.equal("sa-east-1", (c:region()))
      local a, b = c:file_paths()
      assert.are.equal(cfg_path, a)
      assert.are.equal(dir .. "/nope", b)
    end)

    it("defaults to ~/.aws/config", function()
      local c = config.new({ env = { HOME = "/home/u" } })
      local a, b = c:file_paths()
      assert.are.equal("/home/u/.aws/config", a)
      assert.are.equal("/home/u/.aws/credentials", b)
    end)

    it("treats missing files as empty and skips malformed lines", function()
      write(cfg_path, "junk before sections\n[default]\nno equals sign\nregion = ca-central-1\n[]\nx = y\n")
      local log = require "luabatch.log"
      local lines = {}
      local old = log.set_sink(function(l) lines[#lines + 1] = l end)
      local ok, r = pcall(function() return (new({}):region()) end)
      log.set_sink(old)
      assert.is_true(ok)
      assert.are.equal("ca-central-1", r)
      assert.are.equal(4, #lines)          -- junk, no "=", "[]", and "x = y" after it
      assert.matches("config:1:", lines[1], 1, true)
      local _, found = config.new({ env = {}, files = { config = dir .. "/x", credentials = dir .. "/y" } }):profile()
      assert.is_false(found)
    end)

    it("is read lazily and cached until reload()", function()
      local c = new({})
      write(cfg_path, "[default]\nregion = r1\n")
      assert.are.equal("r1", (c:region()))
      write(cfg_path, "[default]\nregion = r2\n")
      assert.are.equal("r1", (c:region()))
      c:reload()
      assert.are.equal("r2", (c:region()))
    end)
  end)

  describe("endpoints", function()
    it("builds default AWS endpoints, with partitions", function()
      assert.are.equal("https://s3.eu-west-1.amazonaws.com", config.endpoint_for("s3", "eu-west-1"))
      assert.are.equal("https://batch.us-east-1.amazonaws.com", config.endpoint_for("batch", "us-east-1"))
      assert.are.equal("https://logs.cn-north-1.amazonaws.com.cn", config.endpoint_for("logs", "cn-north-1"))
      assert.are.equal("https://sts.us-gov-west-1.amazonaws.com", config.endpoint_for("sts", "us-gov-west-1"))
      assert.are.equal("https://sts.amazonaws.com", config.endpoint_for("sts", nil))
      assert.are.equal("https://batch-fips.us-east-1.amazonaws.com",
        config.endpoint_for("batch", "us-east-1", { fips = true }))
      assert.has_error(function() config.endpoint_for("s3", nil) end)
    end)

    it("follows the override precedence", function()
      write(cfg_path, table.concat({
        "[default]", "region = eu-west-1", "endpoint_url = http://profile-global:1",
        "services = local",
        "[services local]", "s3 =", "  endpoint_url = http://profile-s3:2",
        "cloudwatch_logs =", "  endpoint_url = http://profile-logs:3",
      }, "\n"))
      local env = {
        AWS_ENDPOINT_URL_S3 = "http://env-s3:4/",
        AWS_ENDPOINT_URL = "http://env-global:5",
      }
      local u, src = new(env, { endpoints = { s3 = "http://explicit:6" } }):endpoint("s3")
      assert.are.equal("http://explicit:6", u)
      assert.are.equal("explicit", src)
      u, src = new(env):endpoint("s3")
      assert.are.equal("http://env-s3:4", u)               -- trailing slash removed
      assert.are.equal("env", src)
      assert.are.equal("http://env-global:5", (new(env):endpoint("batch")))
      env.AWS_ENDPOINT_URL = nil
      env.AWS_ENDPOINT_URL_S3 = nil
      u, src = new(env):endpoint("s3")
      assert.are.equal("http://profile-s3:2", u)
      assert.are.equal("profile", src)
      assert.are.equal("http://profile-logs:3", (new(env):endpoint("logs")))
      assert.are.equal("http://profile-global:1", (new(env):endpoint("batch")))
    end)

    it("accepts the service-id and the short env names for logs", function()
      assert.are.equal("http://a:1", (new({ AWS_ENDPOINT_URL_CLOUDWATCH_LOGS = "http://a:1", AWS_REGION = "x" }):endpoint("logs")))
      assert.are.equal("http://b:1", (new({ AWS_ENDPOINT_URL_LOGS = "http://b:1", AWS_REGION = "x" }):endpoint("logs")))
      assert.are.equal("http://c:1", (new({ AWS_ENDPOINT_URL_STS = "http://c:1" }):endpoint("sts")))
      assert.are.equal("http://d:1", (new({ AWS_ENDPOINT_URL_BATCH = "http://d:1" }):endpoint("batch")))
    end)

    it("ignores configured endpoints when asked", function()
      write(cfg_path, "[default]\nendpoint_url = http://profile:1\n")
      local env = { AWS_ENDPOINT_URL = "http://env:1", AWS_REGION = "eu-west-3",
        AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "true" }
      local u, src = new(env):endpoint("batch")
      assert.are.equal("https://batch.eu-west-3.amazonaws.com", u)
      assert.are.equal("default", src)
      -- explicit options still win
      assert.are.equal("http://x:1", (new(env, { endpoint_url = "http://x:1" }):endpoint("batch")))
    end)

    it("uses the region argument, falls back to global STS, fails without a region", function()
      assert.are.equal("https://logs.ap-east-1.amazonaws.com", (new({}):endpoint("logs", "ap-east-1")))
      assert.are.equal("https://sts.amazonaws.com", (new({}):endpoint("sts")))
      local u, msg, code = new({}):endpoint("batch")
      assert.is_nil(u)
      assert.are.equal("NoRegion", code)
      assert.matches("endpoint for batch", msg)
    end)
  end)

  describe("retry settings and CA bundle", function()
    it("defaults to standard mode with 3 attempts", function()
      assert.are.same({ mode = "standard", max_attempts = 3 }, new({}):retry_settings())
    end)

    it("takes env over profile, explicit over env", function()
      write(cfg_path, "[default]\nretry_mode = adaptive\nmax_attempts = 7\n")
      assert.are.same({ mode = "adaptive", max_attempts = 7 }, new({}):retry_settings())
      local env = { AWS_RETRY_MODE = "Standard", AWS_MAX_ATTEMPTS = "5" }
      assert.are.same({ mode = "standard", max_attempts = 5 }, new(env):retry_settings())
      assert.are.same({ mode = "legacy", max_attempts = 2 },
        new(env, { retry_mode = "legacy", max_attempts = 2 }):retry_settings())
    end)

    it("rejects invalid values with InvalidConfig", function()
      local s, msg, code = new({ AWS_MAX_ATTEMPTS = "lots" }):retry_settings()
      assert.is_nil(s)
      assert.are.equal("InvalidConfig", code)
      assert.matches("AWS_MAX_ATTEMPTS", msg)
      s, msg, code = new({ AWS_RETRY_MODE = "eager" }):retry_settings()
      assert.is_nil(s)
      assert.are.equal("InvalidConfig", code)
      assert.matches("eager", msg)
    end)

    it("resolves the CA bundle", function()
      write(cfg_path, "[default]\nca_bundle = ~/ca.pem\n")
      assert.are.equal("/h/ca.pem", new({ HOME = "/h" }):ca_bundle())
      assert.are.equal("/env.pem", new({ AWS_CA_BUNDLE = "/env.pem" }):ca_bundle())
      assert.are.equal("/x.pem", new({ AWS_CA_BUNDLE = "/env.pem" }, { ca_bundle = "/x.pem" }):ca_bundle())
      os.remove(cfg_path)
      assert.is_nil(new({}):ca_bundle())
    end)
  end)

  it("reads os.getenv by default and raises on misuse", function()
    local c = config.new()
    assert.are.equal(os.getenv("HOME"), c:env("HOME"))
    assert.has_error(function() config.new("x") end)
    assert.has_error(function() config.new({ env = 42 }) end)
    assert.has_error(function() new({}):endpoint(nil) end)
  end)
end)
