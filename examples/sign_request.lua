-- examples/sign_request.lua: sign a request with SigV4 and show every step.
--
--   luabatch examples/sign_request.lua            (what `make run` does)
--   luabatch examples/sign_request.lua https://batch.eu-west-1.amazonaws.com/v1/describejobs
--
-- No AWS account is needed: it signs with the example credentials of the
-- AWS SigV4 test suite unless AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are
-- set, and it sends nothing.  `luabatch sign` is the same as a command.
local core = require "luabatch.core"

local url = arg and arg[1] or "https://examplebucket.s3.amazonaws.com/reports/2026/summary%20final.csv?versionId=3"
local host = url:match("^https?://([^/:?]+)")
local service = host:match("%.s3[.-]") and "s3" or host:match("^s3[.-]") and "s3" or host:match("^([^.]+)")
local region = host:match("%.([a-z][a-z]%-[a-z]+%-%d)%.") or os.getenv("AWS_REGION") or "us-east-1"

local req = {
  method = "GET",
  url = url,
  headers = { { "Range", "bytes=0-1023" } },
  region = region,
  service = service,
  access_key = os.getenv("AWS_ACCESS_KEY_ID") or "AKIDEXAMPLE",
  secret_key = os.getenv("AWS_SECRET_ACCESS_KEY") or "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  date = "20260101T120000Z",
  debug = true,  -- keep the canonical request and string to sign in the result
}

local signed = assert(core.sigv4_sign(req))
print("== canonical request")
print(signed.canonical_request)
print("\n== string to sign")
print(signed.string_to_sign)
print("\n== request as sent")
print(req.method .. " " .. signed.url)
for _, h in ipairs(signed.headers) do print(h[1] .. ": " .. h[2]) end

req.mode, req.expires, req.headers = "query", 900, nil
local presigned = assert(core.sigv4_sign(req))
print("\n== presigned URL (valid 15 minutes from " .. req.date .. ")")
print(presigned.url)
