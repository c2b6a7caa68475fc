local log = require "luabatch.log"

describe("luabatch.log #unit", function()
  local lines, old_sink
  before_each(function()
    lines = {}
    old_sink = log.set_sink(function(l) lines[#lines + 1] = l end)
    log.set_level("debug")
  end)
  after_each(function()
    log.set_sink(old_sink)
    log.set_level("warn")
  end)

  it("masks the signature and credential of an Authorization header", function()
    log.debug("Authorization: AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, "
      .. "SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    assert.are.equal(1, #lines)
    assert.is_nil(lines[1]:find("5fa00fa3", 1, true))
    assert.is_truthy(lines[1]:find("<redacted>", 1, true))
  end)

  it("masks secrets in JSON, XML and query strings", function()
    log.info('{"AccessKeyId":"ASIA1","SecretAccessKey":"s3cr3t/value","Token":"tok+en=="}')
    log.info("<SecretAccessKey>xml-secret</SecretAccessKey><SessionToken>xml-token</SessionToken>")
    log.info("GET /?X-Amz-Security-Token=qs-token&X-Amz-Signature=abcdef0123 HTTP/1.1")
    local all = table.concat(lines, "\n")
    for _, secret in ipairs({ "s3cr3t/value", "tok+en==", "xml-secret", "xml-token", "qs-token", "abcdef0123" }) do
      assert.is_nil(all:find(secret, 1, true), secret)
    end
    assert.is_truthy(all:find("ASIA1", 1, true)) -- key ids are not secret
  end)

  it("masks registered secret values wherever they appear", function()
    log.add_secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    log.warn("oops: %s", "the key is wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, twice: "
      .. "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    assert.is_nil(lines[1]:find("wJalrXUtnFEMI", 1, true))
    local _, n = lines[1]:gsub("<redacted>", "")
    assert.are.equal(2, n)
  end)

  it("filters by level", function()
    log.set_level("warn")
    log.debug("hidden")
    log.info("hidden")
    log.warn("shown %d", 1)
    log.error("shown %d", 2)
    assert.are.same({ "luabatch warn: shown 1", "luabatch error: shown 2" }, lines)
    assert.is_true(log.enabled("error"))
    assert.is_false(log.enabled("debug"))
  end)

  it("rejects an unknown level", function()
    assert.has_error(function() log.set_level("loud") end,
      "bad argument #1 to 'set_level' (one of error, warn, info, debug expected, got loud)")
  end)
end)


describe("luabatch.log.secret_name #unit", function()
  it("names the keys whose values are secrets", function()
    for _, k in ipairs({ "secret_key", "secret_access_key", "aws_secret_access_key", "SecretAccessKey",
      "session_token", "aws_session_token", "AWS_SESSION_TOKEN", "SessionToken", "token", "Token",
      "password", "db_passwd", "authorization", "Authorization", "X-Amz-Security-Token",
      "aws_security_token", "signature", "X-Amz-Signature", "credential_process", "auth_token" }) do
      assert.is_true(log.secret_name(k), k)
    end
  end)

  it("leaves key ids, pagination tokens and non-strings alone", function()
    for _, k in ipairs({ "access_key", "aws_access_key_id", "AccessKeyId", "nextForwardToken",
      "next_token", "signature_version", "source", "expiration" }) do
      assert.is_false(log.secret_name(k), k)
    end
    assert.is_false(log.secret_name(1))
    assert.is_false(log.secret_name(nil))
  end)
end)
