-- luabatch.s3.presign: the presigned URL of one object (SigV4 in the query
-- string, signed by core.sigv4_sign).
--
--   local presign = require "luabatch.s3.presign"
--   local u, msg, code = presign.sign(core, {
--     method = "GET", endpoint = ep, style = "path", bucket = b, key = k,
--     region = "us-east-1", creds = creds, expires = 3600,
--     headers = { ["Content-Type"] = "text/plain" },   -- optional
--     time = 1369353600,                               -- optional, default core.now()
--   })
--
-- The URL is luabatch.s3.url's bucket_base(endpoint, bucket, style) and
-- request_path (the key percent-encoded), signed with UNSIGNED-PAYLOAD;
-- headers are signed too, so whoever uses the URL must send them.  Returns
-- url | nil, "Presign <method> s3://b/k: signing failed: <why>", code
-- ("ESIGN" when the signer gives none).  It checks nothing: the client
-- checks the method, bucket, key and expires (1..MAX_EXPIRES) first.

local url = require "luabatch.s3.url"

local _M = { _VERSION = "0.1.0" }

local pairs = pairs
local tostring = tostring
local sort = table.sort

_M.MAX_EXPIRES = 604800             -- 7 days, the SigV4 limit


--- sign(core, t) -> url | nil, msg, code (t as in the header).
function _M.sign(core, t)
  local base, path_style = url.bucket_base(t.endpoint, t.bucket, t.style)
  local headers = {}
  if t.headers then
    for k, v in pairs(t.headers) do headers[#headers + 1] = { k, tostring(v) } end
    sort(headers, function(a, b) return a[1] < b[1] end)
  end
  local creds = t.creds
  local signed, msg, code = core.sigv4_sign({
    method = t.method:upper(), url = base .. url.request_path(t.bucket, t.key, path_style),
    headers = headers, payload_hash = "UNSIGNED-PAYLOAD",
    region = t.region, service = "s3",
    access_key = creds.access_key, secret_key = creds.secret_key,
    session_token = creds.session_token,
    time = t.time or core.now(), mode = "query", expires = t.expires,
  })
  if not signed then
    return nil, "Presign " .. t.method .. " " .. url.resource(t.bucket, t.key) .. ": signing failed: "
      .. tostring(msg), code or "ESIGN"
  end
  return signed.url
end


return _M
