-- luabatch.cli.sign: `luabatch sign METHOD URL [options]` -- sign a request
-- with SigV4 and print every step (canonical request, string to sign,
-- signature, then the Authorization header or the presigned URL).
--
--   local sign = require "luabatch.cli.sign"
--   local code = sign.run({ "GET", "https://batch.us-east-1.amazonaws.com/v1/describejobs" }, env)
--
-- env (all optional) is the seam for tests:
--   stdout, stderr  a function(s) or anything with :write(s) (default io.stdout / io.stderr)
--   getenv          function(name) (default os.getenv)
--   credentials     function() -> { access_key, secret_key, session_token } | nil, msg
--                   (default: luabatch.credentials.resolve() if that module loads,
--                   else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN)
--
-- The secret key and the session token are never printed: any occurrence
-- (plain or percent-encoded) is shown as <redacted>.  The signature is shown,
-- since checking it is the point of the command.
--
-- Exit codes: 0 signed, 1 failure (no credentials, unreadable body file),
-- 2 bad usage.

local args = require "luabatch.cli.args"
local core = require "luabatch.core"

local _M = { _VERSION = "0.1.0" }

local type = type
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local require = require
local tonumber = tonumber
local tostring = tostring
local concat = table.concat
local str_format = string.format
local str_byte = string.byte
local floor = math.floor

local MAX_EXPIRES = 604800

_M.usage = [[
usage: luabatch sign METHOD URL [options]

Sign a request with AWS Signature Version 4 and print the canonical request,
the string to sign and the signature, then the Authorization header (and the
headers to send) or, with --presign, the presigned URL.  URL is the full URL
as sent on the wire (path and query already percent-encoded).

options:
  -H, --header 'Name: value'  add a request header (repeatable)
  --body TEXT                 request body
  --body-file FILE            request body read from FILE (hashed incrementally)
  --service NAME              signing service (default: from the host, e.g.
                              batch.us-east-1.amazonaws.com -> batch; s3 hosts -> s3)
  --region NAME               signing region (default: from the host, else
                              AWS_REGION, AWS_DEFAULT_REGION, us-east-1)
  --date YYYYMMDDTHHMMSSZ     signing time (default: now)
  --presign SECONDS           presigned URL valid for SECONDS (1..604800)
  --unsigned-payload          sign UNSIGNED-PAYLOAD instead of the body hash
  -h, --help                  this text

Credentials come from the luabatch credential chain (environment, profile,
container or instance role).  The secret key and session token are never
printed.
]]



-- Replace every plain occurrence of needle in s.
local function replace_plain(s, needle, rep)
  if not needle or needle == "" then return s end
  local out, i = {}, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = rep
    i = b + 1
  end
  out[#out + 1] = s:sub(i)
  return concat(out)
end


local function uri_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return str_format("%%%02X", str_byte(c)) end))
end


local function host_of(url)
  local authority = url:match("^[%w+.-]+://([^/?#]*)")
  if not authority then return nil end
  authority = authority:gsub("^.*@", "")
  return (authority:gsub(":%d*$", "")):lower()
end


--- Signing service implied by a host name: "s3" for S3 hosts
-- (bucket.s3.region.amazonaws.com, s3.amazonaws.com, s3-region...), else the
-- first label (batch.us-east-1.amazonaws.com -> "batch").
function _M.service_from_host(host)
  if host:find("^s3[%.%-]") or host:find("%.s3[%.%-]") then return "s3" end
  return host:match("^([^.]+)")
end


--- Region named in a host (us-east-1, eu-west-2, us-gov-west-1, cn-north-1), or nil.
function _M.region_from_host(host)
  for label in host:gmatch("[^.]+") do
    if label:find("^%l%l%-[%l%-]-%l%-%d+$") then return label end
    local r = label:match("^s3%-(%l%l%-[%l%-]-%l%-%d+)$")  -- legacy s3-us-west-2
    if r then return r end
  end
  return nil
end


local function env_credentials(getenv)
  local ak, sk = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
  if not ak or ak == "" or not sk or sk == "" then
    return nil, "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
  end
  local tok = getenv("AWS_SESSION_TOKEN")
  return { access_key = ak, secret_key = sk, session_token = tok ~= "" and tok or nil }
end


local function get_credentials(env, getenv)
  if env.credentials then return env.credentials() end
  local ok, creds_mod = pcall(require, "luabatch.credentials")
  if ok and type(creds_mod) == "table" and type(creds_mod.resolve) == "function" then
    return creds_mod.resolve()
  end
  return env_credentials(getenv)
end


-- --header 'Name: value' -> { name, value }
local function header_pair(v)
  local hn, hv = v:match("^%s*([^:%s]+)%s*:%s*(.-)%s*$")
  if not hn then return nil, "bad header '" .. v .. "' (expected 'Name: value')" end
  return { hn, hv }
end


local function expires(v)
  local n = tonumber(v)
  if not n or n ~= floor(n) or n < 1 or n > MAX_EXPIRES then
    return nil, "--presign wants whole seconds in 1.." .. MAX_EXPIRES .. ", got '" .. v .. "'"
  end
  return floor(n)
end


local SPEC = {
  ["--header"] = { "list", alias = "-H", key = "headers", check = header_pair },
  ["--body"] = "value",
  ["--body-file"] = "value",
  ["--service"] = "value",
  ["--region"] = "value",
  ["--date"] = "value",
  ["--presign"] = { "value", check = expires },
  ["--unsigned-payload"] = { "flag", key = "unsigned" },
}


-- Parse argv; returns opts or nil, message.
local function parse(argv)
  local o, pos = args.parse(argv, SPEC)
  if not o then return nil, pos end
  o.headers = o.headers or {}
  if o.help then return o end
  if #pos ~= 2 then return nil, "expected METHOD and URL" end
  o.method, o.url = pos[1]:upper(), pos[2]
  if not o.method:find("^[%u%d_-]+$") then return nil, "bad method '" .. pos[1] .. "'" end
  if o.body and o.body_file then return nil, "give --body or --body-file, not both" end
  if o.date and not o.date:find("^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ$") then
    return nil, "--date wants YYYYMMDDTHHMMSSZ, got '" .. o.date .. "'"
  end
  o.host = host_of(o.url)
  if not o.host or o.host == "" then return nil, "URL must be scheme://host/path, got '" .. o.url .. "'" end
  return o
end


--- Run the command; argv = the words after `sign`.  Returns the exit code.
function _M.run(argv, env)
  env = env or {}
  local writer = require("luabatch.cli.out").writer
  local out = writer(env.stdout or io.stdout)          -- data: never rewritten
  local err = writer(env.stderr or io.stderr, true)
  local getenv = env.getenv or os.getenv

  local o, msg = parse(argv or {})
  if not o then
    err("luabatch sign: " .. msg .. "\n" .. _M.usage)
    return 2
  end
  if o.help then
    out(_M.usage)
    return 0
  end

  local creds, cmsg = get_credentials(env, getenv)
  if not creds then
    err("luabatch sign: " .. tostring(cmsg) .. "\n")
    return 1
  end
  local service = o.service or _M.service_from_host(o.host)
  local region = o.region or _M.region_from_host(o.host) or getenv("AWS_REGION")
    or getenv("AWS_DEFAULT_REGION") or "us-east-1"
  if region == "" then region = "us-east-1" end

  local req = {
    method = o.method, url = o.url, headers = o.headers, service = service, region = region,
    access_key = creds.access_key, secret_key = creds.secret_key,
    session_token = creds.session_token, date = o.date,
    mode = o.presign and "query" or "header", expires = o.presign,
    body = o.body, body_file = o.body_file,
    payload_hash = o.unsigned and "UNSIGNED-PAYLOAD" or nil,
    debug = true,  -- the canonical request and string to sign are printed
  }
  local ok, res, serr = pcall(core.sigv4_sign, req)
  if not ok then   -- a bad header or URL: the user's input
    err("luabatch sign: " .. tostring(res):gsub("^bad argument #1 to 'sigv4_sign' ", "") .. "\n")
    return 2
  end
  if not res then
    err("luabatch sign: " .. tostring(serr) .. "\n")
    return 1
  end

  local secrets = { creds.secret_key, creds.session_token }
  local function redact(s)
    for _, sec in pairs(secrets) do
      s = replace_plain(s, sec, "<redacted>")
      s = replace_plain(s, uri_encode(sec), "<redacted>")
    end
    return s
  end
  local lines = {
    str_format("service %s, region %s, date %s, %s", service, region, res.amz_date,
      o.presign and ("presigned for " .. o.presign .. " s") or "Authorization header"),
    "---- canonical request",
    res.canonical_request,
    "---- string to sign",
    res.string_to_sign,
    "----",
    "Signature: " .. res.signature,
  }
  if o.presign then
    lines[#lines + 1] = "URL: " .. res.url
  else
    lines[#lines + 1] = "Authorization: " .. res.authorization
    lines[#lines + 1] = "---- headers to send"
    for _, h in ipairs(res.headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  end
  out(redact(concat(lines, "\n")) .. "\n")
  if creds.session_token and o.presign then
    err("luabatch sign: note: the session token in the URL is shown as <redacted>\n")
  end
  return 0
end


return _M
