-- objects: GET/HEAD /objects/KEY -- a signed, streaming S3 download proxy.
--
-- Lua only signs: it computes the SigV4 headers for the S3 GetObject
-- request (core.sigv4_sign, payload UNSIGNED-PAYLOAD: a GET has no body)
-- and puts the target and the signed header values into nginx variables;
-- the location's proxy_pass then sends the request and streams the answer
-- to the client with nginx's own buffers.  Not one byte of the object
-- passes through Lua, so a 1 GiB object costs a worker no more memory than
-- a 1 KiB one, and the worker is never blocked.
--
-- The location (examples/nginx/objects.conf) declares the variables with
-- `set` and calls objects.access() from access_by_lua; see that file.
--
-- Configuration (read once per worker; nginx needs an `env NAME;` line for
-- each, see nginx.conf.in):
--   LUABATCH_BUCKET                 the bucket KEY is looked up in
--   AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION, profile files
--                                   as everywhere in luabatch (luabatch.config)
--   credentials                     luabatch.ngx.credentials (shared-dict
--                                   cache, refreshed before expiry) when that
--                                   module is installed, else the AWS_* env vars
--
-- objects.access([opts]) -- access phase of the /objects/ location
--   opts.bucket, opts.prefix (the URI prefix, default "/objects/"),
--   opts.config (a luabatch.config), opts.credentials (anything with :get())
-- objects.error_page()   -- content of the error_page location: a JSON body
--   {"error": code, "message": text, "status": n} for 4xx/5xx answers of S3
--   or nginx (404 -> NoSuchKey, 403 -> AccessDenied, 502/504 -> S3Unreachable).

local core = require "luabatch.core"
local s3 = require "luabatch.s3"
local config_mod = require "luabatch.config"
local cjson = require "cjson.safe"

local _M = { _VERSION = "0.1.0" }

local ngx = ngx
local type = type
local pcall = pcall
local tostring = tostring
local str_sub = string.sub
local str_find = string.find
local str_match = string.match
local str_gsub = string.gsub
local str_lower = string.lower
local os_getenv = os.getenv

-- Request headers forwarded to S3 (each one signed): Range for partial
-- downloads, the conditionals for caches.  Looked up by their lowercase
-- names: a raw hit in ngx.req.get_headers()'s table (a mixed-case name
-- goes through its __index, which lowercases on every lookup).
local PASS = { "Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since" }
local PASS_LOWER = {}
for i, name in ipairs(PASS) do PASS_LOWER[i] = str_lower(name) end
-- Every header the signer hands back (the forwarded ones under the names
-- given above, the added ones as core.sigv4_sign spells them) -> the
-- variable that carries it to proxy_set_header (an empty value sends nothing).
local OUT_VAR = {
  ["Range"] = "lbobj_range", ["If-Match"] = "lbobj_if_match",
  ["If-None-Match"] = "lbobj_if_none_match", ["If-Modified-Since"] = "lbobj_if_modified_since",
  ["If-Unmodified-Since"] = "lbobj_if_unmodified_since",
  ["Host"] = "lbobj_host", ["Authorization"] = "lbobj_authorization",
  ["X-Amz-Date"] = "lbobj_amz_date", ["X-Amz-Content-Sha256"] = "lbobj_content_sha256",
  ["X-Amz-Security-Token"] = "lbobj_security_token",
}
-- Characters S3 keys need no encoding for (s3.encode_key keeps them).
local KEY_UNSAFE = "[^%w%-%._~/]"

-- Per-worker state: the resolved settings (env and profile files are read
-- once per worker, at the first request) and the credentials provider.
local state

local function env_credentials()
  return {
    get = function()
      local ak, sk = os_getenv("AWS_ACCESS_KEY_ID"), os_getenv("AWS_SECRET_ACCESS_KEY")
      if not ak or ak == "" or not sk or sk == "" then
        return nil, "no credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set "
          .. "(and luabatch.ngx.credentials is not installed)", "ENOCREDS"
      end
      local tok = os_getenv("AWS_SESSION_TOKEN")
      return { access_key = ak, secret_key = sk, session_token = tok ~= "" and tok or nil }
    end,
  }
end

local function credentials_provider(cfg)
  local ok, mod = pcall(require, "luabatch.ngx.credentials")
  if ok and type(mod) == "table" and mod.new then
    local p = mod.new({ config = cfg })
    if p then return p end
  end
  return env_credentials()
end

local function settings(opts)
  if state then return state end
  local cfg = opts.config or config_mod.new()
  local bucket = opts.bucket or os_getenv("LUABATCH_BUCKET")
  if not bucket or bucket == "" then
    return nil, "objects: no bucket (set LUABATCH_BUCKET and `env LUABATCH_BUCKET;`)"
  end
  local region = cfg:region() or "us-east-1"
  local endpoint, src = cfg:endpoint("s3", region)
  if not endpoint then return nil, "objects: no S3 endpoint: " .. tostring(src) end
  endpoint = str_gsub(endpoint, "/+$", "")
  local style = s3.choose_addressing(nil, src, bucket)
  local base, path_style = s3.bucket_base(endpoint, bucket, style)
  local target, base_path = str_match(base, "^(%a[%w+.-]*://[^/?#]+)(.*)$")
  if not target then return nil, "objects: bad S3 endpoint " .. endpoint end
  state = {
    bucket = bucket, region = region, target = target,
    -- TLS server name: the host without port (or IPv6 brackets)
    sni = str_match(target, "://%[(.-)%]") or str_match(target, "://([^:/]+)"),
    path = base_path .. (path_style and ("/" .. bucket) or ""),
    creds = opts.credentials or credentials_provider(cfg),
    prefix = opts.prefix or "/objects/",
    req = { headers = {}, payload_hash = "UNSIGNED-PAYLOAD", region = region, service = "s3" },
  }
  return state
end

-- Percent-decoding of the raw request path: the key is taken from
-- $request_uri, not $uri, because nginx's normalised $uri merges "//" and
-- resolves "." segments, which are legal in S3 keys.
local function url_decode(s)
  return (str_gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function fail(status, code, msg)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode({ error = code, message = msg, status = status }))
  return ngx.exit(status)
end

--- Access phase of the /objects/ location: validate, sign, set variables.
function _M.access(opts)
  opts = opts or {}
  local st, msg = settings(opts)
  if not st then
    ngx.log(ngx.ERR, msg)
    return fail(500, "ConfigError", msg)
  end
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    ngx.header["Allow"] = "GET, HEAD"
    return fail(405, "MethodNotAllowed", method .. " is not allowed on " .. st.prefix .. "KEY")
  end
  local raw = str_match(ngx.var.request_uri, "^[^?#]*")
  if str_sub(raw, 1, #st.prefix) ~= st.prefix then
    return fail(404, "NotFound", "not under " .. st.prefix)
  end
  local key = str_sub(raw, #st.prefix + 1)
  if str_find(key, "%", 1, true) then key = url_decode(key) end
  if key == "" then return fail(400, "InvalidKey", "no key after " .. st.prefix) end
  if s3.dot_segment(key) then
    return fail(400, "InvalidKey", "a key with a '.' or '..' path segment cannot be addressed in a URL")
  end
  local c, cmsg = st.creds:get()
  if not c then
    ngx.log(ngx.ERR, "objects: credentials: ", tostring(cmsg))
    return fail(500, "CredentialsError", "no AWS credentials (see the nginx error log)")
  end

  -- One request table per worker, refilled: the signer reads it during
  -- the call only (nothing yields in between).
  local uri = st.path .. "/" .. (str_find(key, KEY_UNSAFE) and s3.encode_key(key) or key)
  local req, headers = st.req, st.req.headers
  for i = #headers, 1, -1 do headers[i] = nil end
  local h = ngx.req.get_headers()
  for i = 1, #PASS do
    local v = h[PASS_LOWER[i]]
    if type(v) == "table" then v = table.concat(v, ", ") end
    if v and v ~= "" then headers[#headers + 1] = { PASS[i], v } end
  end
  req.method, req.url, req.time = method, st.target .. uri, ngx.time()
  req.access_key, req.secret_key, req.session_token = c.access_key, c.secret_key, c.session_token
  local res, smsg = core.sigv4_sign(req)
  if not res then
    ngx.log(ngx.ERR, "objects: signing s3://", st.bucket, "/", key, ": ", tostring(smsg))
    return fail(500, "SigningError", "could not sign the request")
  end

  local var = ngx.var
  var.lbobj_target = st.target
  var.lbobj_uri = uri
  var.lbobj_key = key
  var.lbobj_bucket = st.bucket
  var.lbobj_sni = st.sni
  for _, pair in ipairs(res.headers) do
    local n = OUT_VAR[pair[1]]
    if n then var[n] = pair[2] end
  end
end

local ERRORS = {
  [400] = { "BadRequest", "S3 rejected the request for" },
  [403] = { "AccessDenied", "access denied (credentials, clock or bucket policy) to" },
  [404] = { "NoSuchKey", "no such object:" },
  [500] = { "S3InternalError", "S3 failed on" },
  [502] = { "S3Unreachable", "the S3 endpoint did not answer for" },
  [503] = { "SlowDown", "S3 is throttling or unavailable for" },
  [504] = { "S3Timeout", "the S3 endpoint timed out for" },
}

--- Content of the error_page location: a clear JSON error for the status
-- S3 (proxy_intercept_errors) or nginx produced.
function _M.error_page()
  local status = ngx.status
  if not status or status < 400 then status = 502 end
  local e = ERRORS[status] or { "HTTP_" .. status, "S3 answered " .. status .. " for" }
  local key, bucket = ngx.var.lbobj_key or "", ngx.var.lbobj_bucket or ""
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  -- (a HEAD request gets the status and headers; nginx drops the body)
  ngx.say(cjson.encode({ error = e[1], status = status,
    message = e[2] .. " s3://" .. bucket .. "/" .. key, key = key }))
end

return _M
