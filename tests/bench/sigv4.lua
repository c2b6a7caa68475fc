-- tests/bench/sigv4.lua N: signing rate of luabatch.core.sigv4_sign for the
-- same two requests tests/bench/sigv4_botocore.py signs (alternating S3 GET
-- and Batch POST with a session token).  Prints 'luabatch N signatures S s',
-- S the process CPU time (os.clock: a busy shared machine does not count).
local core = require "luabatch.core"
local n = tonumber(arg[1]) or 20000
local body = '{"jobs":["' .. ("a"):rep(36) .. '"]}'
local base = { access_key = "AKIDEXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  session_token = "session-token-example", region = "us-east-1" }
local s3 = setmetatable({ method = "GET", service = "s3",
  url = "https://bucket.s3.us-east-1.amazonaws.com/runs/r1/result.json",
  headers = { { "Range", "bytes=0-1023" } } }, { __index = base })
local batch = setmetatable({ method = "POST", service = "batch",
  url = "https://batch.us-east-1.amazonaws.com/v1/describejobs", body = body,
  headers = { { "Content-Type", "application/json" } } }, { __index = base })
local function plain(t) local r = {} for k, v in pairs(base) do r[k] = v end for k, v in pairs(t) do r[k] = v end return r end
s3, batch = plain(s3), plain(batch)
local t0 = os.clock()
for i = 1, n do
  assert(core.sigv4_sign(i % 2 == 1 and s3 or batch))
end
io.write(("luabatch %d signatures %.4f s\n"):format(n, os.clock() - t0))
