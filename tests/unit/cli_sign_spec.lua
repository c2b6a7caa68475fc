-- Specs for `luabatch sign` (luabatch.cli.sign), checked against published
-- SigV4 vectors: the AWS test suite's get-vanilla and the S3 examples of the
-- AWS documentation.

local sign = require "luabatch.cli.sign"

local SUITE_CREDS = { access_key = "AKIDEXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" }
local DOC_CREDS = { access_key = "AKIAIOSFODNN7EXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" }


-- Run the command with captured output and an empty environment.
local function run(args, creds, vars)
  local out, err = {}, {}
  local code = sign.run(args, {
    stdout = function(s) out[#out + 1] = s end,
    stderr = { write = function(_, s) err[#err + 1] = s end },
    getenv = function(name) return vars and vars[name] end,
    credentials = creds ~= false and function()
      if not creds then return nil, "no credentials found" end
      return creds
    end or nil,
  })
  return code, table.concat(out), table.concat(err)
end


describe("luabatch.cli.sign #unit", function()
  it("reproduces the get-vanilla vector of the SigV4 test suite", function()
    local code, out, err = run({ "GET", "https://example.amazonaws.com/", "--service", "service",
                                 "--date", "20150830T123600Z" }, SUITE_CREDS)
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.truthy(out:find([[
---- canonical request
GET
/

host:example.amazonaws.com
x-amz-date:20150830T123600Z

host;x-amz-date
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
---- string to sign
AWS4-HMAC-SHA256
20150830T123600Z
20150830/us-east-1/service/aws4_request
bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63
]], 1, true))
    assert.truthy(out:find("\nSignature: 5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n", 1, true))
    assert.truthy(out:find("\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/"
      .. "service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa3", 1, true))
    assert.is_nil(out:find(SUITE_CREDS.secret_key, 1, true))
  end)

  it("signs the S3 GET-with-Range example, service and region from the host", function()
    local code, out = run({ "GET", "https://examplebucket.s3.amazonaws.com/test.txt", "-H", "Range: bytes=0-9",
                            "--date", "20130524T000000Z" }, DOC_CREDS)
    assert.are.equal(0, code)
    assert.truthy(out:find("service s3, region us-east-1", 1, true))
    assert.truthy(out:find("\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n", 1, true))
    assert.truthy(out:find("\nSignature: f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41\n", 1, true))
  end)

  it("prints the presigned URL of the S3 documentation example", function()
    local code, out = run({ "GET", "https://examplebucket.s3.amazonaws.com/test.txt", "--presign", "86400",
                            "--date=20130524T000000Z" }, DOC_CREDS)
    assert.are.equal(0, code)
    assert.truthy(out:find("\nURL: https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
      .. "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
      .. "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
      .. "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404\n", 1, true))
    assert.is_nil(out:find("\nAuthorization:", 1, true))
  end)

  it("derives service and region from AWS host names", function()
    assert.are.equal("batch", sign.service_from_host("batch.us-east-1.amazonaws.com"))
    assert.are.equal("s3", sign.service_from_host("my.bucket.s3.eu-west-2.amazonaws.com"))
    assert.are.equal("s3", sign.service_from_host("s3.amazonaws.com"))
    assert.are.equal("s3", sign.service_from_host("s3-us-west-2.amazonaws.com"))
    assert.are.equal("us-east-1", sign.region_from_host("batch.us-east-1.amazonaws.com"))
    assert.are.equal("us-gov-west-1", sign.region_from_host("sts.us-gov-west-1.amazonaws.com"))
    assert.are.equal("us-west-2", sign.region_from_host("s3-us-west-2.amazonaws.com"))
    assert.is_nil(sign.region_from_host("s3.amazonaws.com"))
  end)

  it("takes the region from AWS_REGION when the host names none", function()
    local code, out = run({ "POST", "https://example.com/x", "--service", "execute-api",
                            "--date", "20150830T123600Z" }, SUITE_CREDS, { AWS_REGION = "eu-central-1" })
    assert.are.equal(0, code)
    assert.truthy(out:find("\n20150830/eu-central-1/execute-api/aws4_request\n", 1, true))
  end)

  it("never prints the session token or the secret key", function()
    local creds = { access_key = "AKIDEXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    session_token = "FwoGZXIvYXdzE/secret+token==" }
    for _, extra in ipairs({ {}, { "--presign", "60" } }) do
      local args = { "GET", "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      local code, out, err = run(args, creds)
      assert.are.equal(0, code)
      for _, text in ipairs({ out, err }) do
        assert.is_nil(text:find(creds.session_token, 1, true))
        assert.is_nil(text:find("FwoGZXIvYXdzE%2Fsecret%2Btoken%3D%3D", 1, true))
        assert.is_nil(text:find(creds.secret_key, 1, true))
      end
      assert.truthy(out:find("<redacted>", 1, true))
    end
  end)

  it("hashes --body and --body-file the same way", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local f = assert(io.open(path, "wb"))
    f:write("Param1=value1")
    f:close()
    local _, a = run({ "POST", "https://example.amazonaws.com/", "--service", "service", "--date",
                       "20150830T123600Z", "--body", "Param1=value1" }, SUITE_CREDS)
    local _, b = run({ "POST", "https://example.amazonaws.com/", "--service", "service", "--date",
                       "20150830T123600Z", "--body-file", path }, SUITE_CREDS)
    assert.truthy(a:find("\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n", 1, true))
    assert.are.equal(a, b)
    local _, c = run({ "PUT", "https://b.s3.amazonaws.com/k", "--unsigned-payload", "--body-file", path },
                     SUITE_CREDS)
    assert.truthy(c:find("\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n", 1, true))
  end)

  it("fails with code 1 on an unreadable body file or missing credentials", function()
    local code, _, err = run({ "PUT", "https://b.s3.amazonaws.com/k", "--body-file", "/nonexistent/f" },
                             SUITE_CREDS)
    assert.are.equal(1, code)
    assert.truthy(err:find("/nonexistent/f", 1, true))
    code, _, err = run({ "GET", "https://b.s3.amazonaws.com/k" }, nil)
    assert.are.equal(1, code)
    assert.truthy(err:find("no credentials", 1, true))
  end)

  it("falls back to AWS_* variables when no credential source is given", function()
    local saved = package.loaded["luabatch.credentials"]
    package.loaded["luabatch.credentials"] = {}   -- a module without resolve()
    finally(function() package.loaded["luabatch.credentials"] = saved end)
    local code, out = run({ "GET", "https://example.amazonaws.com/", "--service", "service",
                            "--date", "20150830T123600Z" }, false,
                          { AWS_ACCESS_KEY_ID = SUITE_CREDS.access_key,
                            AWS_SECRET_ACCESS_KEY = SUITE_CREDS.secret_key })
    assert.are.equal(0, code)
    assert.truthy(out:find("Signature: 5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", 1, true))
  end)

  it("rejects bad usage with code 2 and a message on stderr", function()
    local cases = {
      {},
      { "GET" },
      { "GET", "https://h/", "--bogus" },
      { "GET", "https://h/", "--presign", "0" },
      { "GET", "https://h/", "--presign", "604801" },
      { "GET", "https://h/", "--header", "no colon" },
      { "GET", "https://h/", "--date", "2015-08-30" },
      { "GET", "https://h/", "--body", "a", "--body-file", "f" },
      { "GET", "not-a-url" },
      { "GET", "https://h/", "--region" },
    }
    for _, args in ipairs(cases) do
      local code, out, err = run(args, SUITE_CREDS)
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.truthy(err:find("^luabatch sign: "))
    end
  end)

  it("prints usage for --help", function()
    local code, out = run({ "--help" }, SUITE_CREDS)
    assert.are.equal(0, code)
    assert.truthy(out:find("usage: luabatch sign METHOD URL", 1, true))
  end)
end)
