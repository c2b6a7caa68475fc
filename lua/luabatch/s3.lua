-- luabatch.s3: the S3 API in Lua (buckets, objects, listings, presigned
-- URLs) on the generic request path, and file transfers through the C
-- engine (core.s3_upload / core.s3_download).
--
--   local s3 = require("luabatch.s3").new({ region = "eu-west-1" })
--   assert(s3:put_object("my-bucket", "dir/a b.txt", "hello", { content_type = "text/plain" }))
--   local body, meta = s3:get_object("my-bucket", "dir/a b.txt")
--   for e, msg, code in s3:list("my-bucket", { prefix = "dir/" }) do
--     if not e then error(msg) end
--     print(e.key, e.size)
--   end
--   local res = assert(s3:upload_file("big.bin", "my-bucket", "big.bin", { on_progress = f }))
--
-- Keys are raw strings (any UTF-8, reserved characters, "/" kept): the
-- module percent-encodes them, so no key can add a query or a fragment.
-- Bucket names must follow S3's rules (check_bucket_name) before they go
-- into any URL: a bad one is nil, msg, "EINVAL" and nothing is sent.
-- Addressing: "path" (http://host/bucket/key),
-- "virtual" (http://bucket.host/key) or "auto" (the default: virtual for
-- AWS endpoints and DNS-compatible bucket names without dots, path for a
-- custom endpoint or any other bucket name).  ETags are returned without
-- their quotes.  Every failure is nil, msg, code (S3 error code such as
-- "NoSuchKey", "NoSuchBucket", "AccessDenied", "SignatureDoesNotMatch",
-- "HTTP_<n>", or a transport code); messages name the operation and
-- s3://bucket/key and never contain a secret.

local request = require "luabatch.request"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local require = require
local str_format = string.format
local str_gsub = string.gsub
local str_match = string.match
local str_find = string.find
local str_byte = string.byte
local str_char = string.char
local str_lower = string.lower
local concat = table.concat
local sort = table.sort
local floor = math.floor
local math_tointeger = math.tointeger

local XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
local MAX_PRESIGN = 604800          -- 7 days, the SigV4 limit
local DELETE_BATCH = 1000           -- DeleteObjects limit
local DEFAULT_REGION = "us-east-1"

local ADDRESSING = { auto = true, path = true, virtual = true }


---------------------------------------------------------------------------
-- Pure helpers (exported for specs and the CLI)
---------------------------------------------------------------------------

local function to_int(v)
  local n = tonumber(v)
  if n == nil then return nil end
  if math_tointeger then return math_tointeger(n) or n end
  return n
end


--- Percent-encode a key for the URL path: every byte but the RFC 3986
-- unreserved characters and "/" is encoded ("a b+c/ü" -> "a%20b%2Bc/%C3%BC").
function _M.encode_key(key)
  return (str_gsub(key, "[^%w%-%._~/]", function(c)
    return str_format("%%%02X", str_byte(c))
  end))
end
local encode_key = _M.encode_key


--- Decode "%XX" sequences and, with plus = true, "+" as a space (S3's
-- encoding-type=url listings encode a space as "+" and "+" as "%2B").
function _M.url_decode(s, plus)
  if plus then s = str_gsub(s, "+", " ") end
  return (str_gsub(s, "%%(%x%x)", function(h) return str_char(tonumber(h, 16)) end))
end
local url_decode = _M.url_decode


local BUCKET_RULE = "S3 bucket names are 3-63 characters of a-z, 0-9, '.' and '-', "
  .. "starting and ending with a letter or digit"

--- check_bucket_name(bucket) -> true | nil, msg, "EINVAL": the name S3
-- accepts (3-63 of a-z 0-9 . -, a letter or digit at each end), so it goes
-- into a URL as it is: no "/", "?", "#", "%", space or control character.
-- msg names the bucket (control characters escaped) and the rule.
function _M.check_bucket_name(bucket)
  if #bucket >= 3 and #bucket <= 63 and str_find(bucket, "^[a-z0-9][a-z0-9.%-]*[a-z0-9]$") then
    return true
  end
  local shown = str_gsub(bucket, "[%z\1-\31\127]", function(c)
    return str_format("\\x%02X", str_byte(c))
  end)
  return nil, "invalid bucket name '" .. shown .. "': " .. BUCKET_RULE, "EINVAL"
end
local check_bucket_name = _M.check_bucket_name


--- Split "s3://bucket/key" -> bucket, key ("" when absent) | nil, msg,
-- "EINVAL" (not an s3:// URL, or a bucket check_bucket_name refuses).
function _M.parse_url(url)
  if type(url) ~= "string" then
    error("bad argument #1 to 'parse_url' (string expected, got " .. type(url) .. ")", 2)
  end
  local rest = str_match(url, "^[Ss]3://(.*)$")
  if not rest then return nil, "not an s3:// URL: " .. url, "EINVAL" end
  local bucket, key = str_match(rest, "^([^/]*)/?(.*)$")
  if bucket == "" then return nil, "no bucket in " .. url, "EINVAL" end
  local ok, msg = check_bucket_name(bucket)
  if not ok then return nil, url .. ": " .. msg, "EINVAL" end
  return bucket, key
end


--- A bucket name usable as a DNS label under an endpoint (virtual host):
-- 3-63 of [a-z0-9-], starting and ending with a letter or digit, no dots.
function _M.dns_compatible(bucket)
  return #bucket >= 3 and #bucket <= 63 and str_find(bucket, "^[a-z0-9][a-z0-9%-]*[a-z0-9]$") ~= nil
end


--- Split an endpoint URL -> scheme, host, port_suffix (":7480" or ""), path.
local function split_endpoint(url)
  local scheme, authority, path = str_match(url, "^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  local host, port = str_match(authority, "^(.-)(:%d+)$")
  if not host then host, port = authority, "" end
  return scheme, host, port, (str_gsub(path, "/+$", ""))
end


--- Base URL for requests on a bucket and whether it is path-style:
-- bucket_base(endpoint, bucket, style) -> base, path_style.
-- style "path": base = endpoint, paths "/bucket/key"; "virtual": base =
-- scheme://bucket.host[:port], paths "/key".
function _M.bucket_base(endpoint, bucket, style)
  if style ~= "virtual" then return endpoint, true end
  local scheme, host, port, path = split_endpoint(endpoint)
  if not scheme then return endpoint, true end
  return scheme .. "://" .. bucket .. "." .. host .. port .. path, false
end


--- Choose path-style or virtual for a bucket: style(addressing,
-- endpoint_source, bucket) -> "path" | "virtual".
function _M.choose_addressing(addressing, source, bucket)
  if addressing == "path" or addressing == "virtual" then return addressing end
  if source == "default" and _M.dns_compatible(bucket) then return "virtual" end
  return "path"
end


--- XML text escaping for request bodies.  Returns nil when s holds a
-- character XML 1.0 cannot carry (C0 controls other than tab/LF/CR).
local XML_ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
  ["'"] = "&apos;", ["\r"] = "&#13;", ["\n"] = "&#10;", ["\t"] = "&#9;" }
function _M.xml_escape(s)
  if str_find(s, "[%z\1-\8\11\12\14-\31]") then return nil end
  return (str_gsub(s, "[&<>\"'\r\n\t]", XML_ESC))
end
local xml_escape = _M.xml_escape


local function child(el, name)
  if type(el) ~= "table" then return nil end
  for i = 1, #el do
    if el[i].name == name then return el[i] end
  end
  return nil
end


local function child_text(el, name)
  local c = child(el, name)
  return c and c.text or nil
end


local function unquote(etag)
  if etag == nil then return nil end
  return (str_gsub(etag, '^"(.*)"$', "%1"))
end


--- Parse one ListObjectsV2 answer (element tree from core.xml_parse) ->
-- { entries = { {key, size, etag, last_modified, storage_class}, ... },
--   prefixes = { "dir/", ... }, truncated = bool, next_token = s|nil, key_count = n }.
-- Keys and prefixes are decoded when the answer says EncodingType=url.
function _M.parse_list(root)
  local enc = child_text(root, "EncodingType") == "url"
  local function dec(s)
    if s and enc then return url_decode(s, true) end
    return s
  end
  local page = { entries = {}, prefixes = {} }
  for i = 1, #root do
    local el = root[i]
    if el.name == "Contents" then
      page.entries[#page.entries + 1] = {
        key = dec(child_text(el, "Key")),
        size = to_int(child_text(el, "Size")) or 0,
        etag = unquote(child_text(el, "ETag")),
        last_modified = child_text(el, "LastModified"),
        storage_class = child_text(el, "StorageClass"),
      }
    elseif el.name == "CommonPrefixes" then
      page.prefixes[#page.prefixes + 1] = dec(child_text(el, "Prefix"))
    end
  end
  page.truncated = child_text(root, "IsTruncated") == "true"
  local tok = child_text(root, "NextContinuationToken")
  page.next_token = (tok and tok ~= "") and tok or nil
  page.key_count = to_int(child_text(root, "KeyCount"))
  return page
end


--- The DeleteObjects body for a list of keys (quiet mode) -> xml | nil, bad_key.
function _M.delete_body(keys)
  local parts = { '<?xml version="1.0" encoding="UTF-8"?>',
    '<Delete xmlns="' .. XMLNS .. '"><Quiet>true</Quiet>' }
  for _, k in ipairs(keys) do
    local e = xml_escape(k)
    if not e then return nil, k end
    parts[#parts + 1] = "<Object><Key>" .. e .. "</Key></Object>"
  end
  parts[#parts + 1] = "</Delete>"
  return concat(parts)
end


--- Parse a DeleteObjects answer -> deleted keys, errors { {key, code, message}, ... }.
function _M.parse_delete_result(root)
  local deleted, errors = {}, {}
  for i = 1, #root do
    local el = root[i]
    if el.name == "Deleted" then
      deleted[#deleted + 1] = child_text(el, "Key")
    elseif el.name == "Error" then
      errors[#errors + 1] = { key = child_text(el, "Key"), code = child_text(el, "Code"),
        message = child_text(el, "Message") }
    end
  end
  return deleted, errors
end


--- Object metadata from response headers (lower-case names) ->
-- { size, etag, content_type, metadata = { name = value }, last_modified,
--   version_id, storage_class, content_encoding, cache_control }.
function _M.meta_from_headers(h)
  local md = {}
  for k, v in pairs(h or {}) do
    local name = str_match(k, "^x%-amz%-meta%-(.+)$")
    if name then md[name] = v end
  end
  return {
    size = to_int(h["content-length"]),
    etag = unquote(h["etag"]),
    content_type = h["content-type"],
    content_encoding = h["content-encoding"],
    cache_control = h["cache-control"],
    last_modified = h["last-modified"],
    version_id = h["x-amz-version-id"],
    storage_class = h["x-amz-storage-class"],
    metadata = md,
  }
end


-- Headers for put/copy: Content-Type, x-amz-meta-*, extra headers.
local function object_headers(opts, list)
  list = list or {}
  if opts.content_type then list[#list + 1] = { "Content-Type", opts.content_type } end
  if opts.metadata then
    local names = {}
    for k in pairs(opts.metadata) do names[#names + 1] = k end
    sort(names)
    for _, k in ipairs(names) do
      list[#list + 1] = { "x-amz-meta-" .. str_lower(k), tostring(opts.metadata[k]) }
    end
  end
  if opts.cache_control then list[#list + 1] = { "Cache-Control", opts.cache_control } end
  if opts.content_encoding then list[#list + 1] = { "Content-Encoding", opts.content_encoding } end
  if opts.headers then
    for k, v in pairs(opts.headers) do
      if type(k) == "number" then list[#list + 1] = { v[1], v[2] }
      else list[#list + 1] = { k, tostring(v) } end
    end
  end
  return list
end


---------------------------------------------------------------------------
-- The client
---------------------------------------------------------------------------

--- s3.new([opts]) -> client
-- opts.config       luabatch.config object (default config.new({ region, endpoint }))
-- opts.credentials  provider with :get() (default luabatch.credentials.new)
-- opts.transport    transport with :request(opts) (default luabatch.transport.curl)
-- opts.region       region (default: config, else us-east-1)
-- opts.endpoint     base URL (default: config:endpoint("s3"))
-- opts.addressing   "auto" | "path" | "virtual" (default: the profile's
--                   s3.addressing_style, else "auto")
-- opts.retry, opts.core, opts.sleep, opts.timeout, opts.connect_timeout,
-- opts.read_timeout  passed to luabatch.request
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local addressing = opts.addressing
  if addressing ~= nil and not ADDRESSING[addressing] then
    error("bad argument #1 to 'new' (addressing must be auto, path or virtual, got "
      .. tostring(addressing) .. ")", 2)
  end
  local cfg = opts.config
  if not cfg then
    cfg = require("luabatch.config").new({ region = opts.region,
      endpoints = opts.endpoint and { s3 = opts.endpoint } or nil })
  end
  if not addressing then
    local s = cfg.service_setting and cfg:service_setting("s3", "addressing_style")
    addressing = (type(s) == "string" and ADDRESSING[str_lower(s)]) and str_lower(s) or "auto"
  end
  local creds = opts.credentials
  if not creds then
    creds = require("luabatch.credentials").default({ config = cfg, transport = opts.transport,
      core = opts.core, sleep = opts.sleep })
  end
  return setmetatable({
    _cfg = cfg,
    _creds = creds,
    _transport = opts.transport,
    _retry = opts.retry,
    _core = opts.core,
    _sleep = opts.sleep,
    _region = opts.region,
    _endpoint = opts.endpoint and (str_gsub(opts.endpoint, "/+$", "")) or nil,
    _endpoint_source = opts.endpoint and "explicit" or nil,
    _timeouts = { timeout = opts.timeout, connect_timeout = opts.connect_timeout,
      read_timeout = opts.read_timeout },
    addressing = addressing,
    _clients = {},
  }, mt)
end


function _M:core()
  if not self._core then self._core = require "luabatch.core" end
  return self._core
end


function _M:transport()
  if not self._transport then
    self._transport = require("luabatch.transport.default").transport()
  end
  return self._transport
end


--- The credentials provider the client signs with (an object with :get();
-- for callers that must know which secrets to keep out of what they upload).
function _M:credentials()
  return self._creds
end


--- The signing region: configured, else us-east-1.
function _M:region()
  if self._region then return self._region end
  local r = self._cfg:region()
  if not r then
    log.debug("s3: no region configured, using %s", DEFAULT_REGION)
    r = DEFAULT_REGION
  end
  self._region = r
  return r
end


--- The endpoint: url, source | nil, msg, code (source "default" = AWS).
function _M:endpoint()
  if self._endpoint then return self._endpoint, self._endpoint_source end
  local url, src, code = self._cfg:endpoint("s3", self:region())
  if not url then return nil, src, code end
  self._endpoint, self._endpoint_source = url, src
  return url, src
end


--- How a bucket is addressed: "path" | "virtual" (nil, msg, code when the
-- endpoint cannot be resolved).
function _M:style(bucket)
  local _, src, code = self:endpoint()
  if not _ then return nil, src, code end
  return _M.choose_addressing(self.addressing, src, bucket)
end


-- The request client and path prefix for a bucket (bucket = nil: the
-- service itself, e.g. ListBuckets).
local function target(self, bucket)
  local ep, src, code = self:endpoint()
  if not ep then return nil, src, code end
  local base, path_style = ep, true
  if bucket then
    base, path_style = _M.bucket_base(ep, bucket, _M.choose_addressing(self.addressing, src, bucket))
  end
  local c = self._clients[base]
  if not c then
    c = request.new({
      service = "s3", protocol = "rest-xml",
      config = self._cfg, credentials = self._creds, transport = self:transport(),
      retry = self._retry, region = self:region(), endpoint = base,
      core = self._core, sleep = self._sleep,
      timeout = self._timeouts.timeout, connect_timeout = self._timeouts.connect_timeout,
      read_timeout = self._timeouts.read_timeout,
    })
    -- one retry policy (adaptive rate state) for every bucket client
    if not self._retry then self._retry = c:retry_policy() end
    self._clients[base] = c
  end
  return c, (bucket and path_style) and ("/" .. bucket) or ""
end


local function resource(bucket, key)
  if key == nil then return "s3://" .. bucket end
  return "s3://" .. bucket .. "/" .. key
end


local function check_bucket(bucket, fname, n)
  if type(bucket) ~= "string" or bucket == "" then
    error("bad argument #" .. (n or 1) .. " to '" .. fname .. "' (bucket name expected, got "
      .. (type(bucket) == "string" and "an empty string" or type(bucket)) .. ")", 3)
  end
end


local function check_key(key, fname, n)
  if type(key) ~= "string" or key == "" then
    error("bad argument #" .. (n or 2) .. " to '" .. fname .. "' (key expected, got "
      .. (type(key) == "string" and "an empty string" or type(key)) .. ")", 3)
  end
end


--- True when a key has a "." or ".." path segment ("a/../b", "./x"):
-- HTTP clients (libcurl, curl) normalise those away from the URL path, so
-- such keys cannot be addressed in a URL (listing and DeleteObjects, which
-- carry keys in the query or body, handle them).
function _M.dot_segment(key)
  return str_find("/" .. key .. "/", "/%.%.?/") ~= nil
end


local function dot_error(op, res)
  return nil, op .. " " .. res .. ": a key with a '.' or '..' path segment cannot be sent in a URL "
    .. "(HTTP clients normalise it away)", "EINVAL"
end


-- "<op> s3://b/k: invalid bucket name ...", "EINVAL" | nil when the name is good.
local function bucket_error(op, bucket, key)
  local ok, msg, code = check_bucket_name(bucket)
  if ok then return nil end
  return op .. " " .. resource(bucket, key) .. ": " .. msg, code
end


-- Send on a bucket (key = nil: bucket-level).  req fields as request:send.
-- The one place a bucket and a key become a request path: the bucket is
-- checked, the key percent-encoded.
local function send(self, bucket, key, req)
  local bmsg, bcode = bucket_error(req.operation, bucket, key)
  if bmsg then return nil, bmsg, bcode end
  if key and _M.dot_segment(key) then return dot_error(req.operation, resource(bucket, key)) end
  local c, prefix, code = target(self, bucket)
  if not c then
    return nil, (req.operation or "S3") .. " " .. resource(bucket, key) .. ": " .. tostring(prefix), code
  end
  if key then
    req.path = prefix .. "/" .. encode_key(key)
  else
    req.path = prefix ~= "" and prefix or "/"
  end
  req.resource = req.resource or resource(bucket, key)
  return c:send(req)
end


local function parse_xml(self, body, op, res)
  local root, msg = self:core().xml_parse(body or "")
  if not root then
    return nil, op .. " " .. res .. ": unparsable XML answer: " .. tostring(msg), "EPARSE"
  end
  return root
end


---------------------------------------------------------------------------
-- Buckets
---------------------------------------------------------------------------

--- head_bucket(bucket) -> { region = x-amz-bucket-region | nil } | nil, msg, code
-- ("NoSuchBucket" when it does not exist, "AccessDenied"/"HTTP_403" when not yours).
function _M:head_bucket(bucket)
  check_bucket(bucket, "head_bucket")
  local resp, msg, code = send(self, bucket, nil, { method = "HEAD", operation = "HeadBucket" })
  if not resp then
    if code == "NotFound" then code = "NoSuchBucket" end
    return nil, msg, code
  end
  return { region = resp.headers["x-amz-bucket-region"] }
end


--- create_bucket(bucket [, { region = }]) -> true, existed | nil, msg, code.
-- Sends a LocationConstraint when the region is not us-east-1; a bucket
-- already owned by the caller is success (existed = true).
function _M:create_bucket(bucket, opts)
  check_bucket(bucket, "create_bucket")
  opts = opts or {}
  local region = opts.region or self:region()
  local body
  if region ~= "us-east-1" then
    body = '<CreateBucketConfiguration xmlns="' .. XMLNS .. '"><LocationConstraint>'
      .. xml_escape(region) .. "</LocationConstraint></CreateBucketConfiguration>"
  end
  local headers = {}
  if opts.acl then headers[#headers + 1] = { "x-amz-acl", opts.acl } end
  local resp, msg, code = send(self, bucket, nil, { method = "PUT", operation = "CreateBucket",
    body = body, headers = headers })
  if not resp then
    if code == "BucketAlreadyOwnedByYou" then return true, true end
    return nil, msg, code
  end
  return true, false
end


--- delete_bucket(bucket) -> true | nil, msg, code ("BucketNotEmpty", "NoSuchBucket").
function _M:delete_bucket(bucket)
  check_bucket(bucket, "delete_bucket")
  local resp, msg, code = send(self, bucket, nil, { method = "DELETE", operation = "DeleteBucket" })
  if not resp then return nil, msg, code end
  return true
end


--- list_buckets() -> { { name, creation_date }, ... } | nil, msg, code
function _M:list_buckets()
  local c, ep, code = target(self, nil)
  if not c then return nil, "ListBuckets: " .. tostring(ep), code end
  ep = self:endpoint()
  local resp, msg
  resp, msg, code = c:send({ method = "GET", path = "/", operation = "ListBuckets", resource = ep })
  if not resp then return nil, msg, code end
  local root
  root, msg, code = parse_xml(self, resp.body, "ListBuckets", ep)
  if not root then return nil, msg, code end
  local out = {}
  local bs = child(root, "Buckets")
  for i = 1, bs and #bs or 0 do
    local b = bs[i]
    if b.name == "Bucket" then
      out[#out + 1] = { name = child_text(b, "Name"), creation_date = child_text(b, "CreationDate") }
    end
  end
  return out
end


---------------------------------------------------------------------------
-- Objects
---------------------------------------------------------------------------

--- put_object(bucket, key, body [, opts]) -> { etag, version_id } | nil, msg, code
-- opts.content_type, opts.metadata = { name = value }, opts.cache_control,
-- opts.content_encoding, opts.headers (extra, map or list of pairs),
-- opts.content_md5 = true (send Content-MD5 as well as the signed SHA-256).
function _M:put_object(bucket, key, body, opts)
  check_bucket(bucket, "put_object")
  check_key(key, "put_object")
  if type(body) ~= "string" then
    error("bad argument #3 to 'put_object' (string expected, got " .. type(body) .. ")", 2)
  end
  opts = opts or {}
  local headers = object_headers(opts)
  if opts.content_md5 then
    local core = self:core()
    headers[#headers + 1] = { "Content-MD5", core.base64(core.md5(body, "raw")) }
  end
  local resp, msg, code = send(self, bucket, key, { method = "PUT", operation = "PutObject",
    body = body, headers = headers })
  if not resp then return nil, msg, code end
  return { etag = unquote(resp.headers["etag"]), version_id = resp.headers["x-amz-version-id"] }
end


--- get_object(bucket, key [, opts]) -> body, meta | nil, msg, code
-- meta as head_object.  opts.range = "bytes=0-99" (or { first, last });
-- opts.on_data = function(chunk) streams the body instead (body is then "").
function _M:get_object(bucket, key, opts)
  check_bucket(bucket, "get_object")
  check_key(key, "get_object")
  opts = opts or {}
  local headers = {}
  local range = opts.range
  if type(range) == "table" then
    range = "bytes=" .. tostring(range[1]) .. "-" .. (range[2] and tostring(range[2]) or "")
  end
  if range then headers[#headers + 1] = { "Range", range } end
  local resp, msg, code = send(self, bucket, key, { method = "GET", operation = "GetObject",
    headers = headers, on_data = opts.on_data, on_progress = opts.on_progress })
  if not resp then return nil, msg, code end
  return resp.body or "", _M.meta_from_headers(resp.headers)
end


--- head_object(bucket, key) -> { size, etag, content_type, metadata,
-- last_modified, ... } | nil, msg, code ("NoSuchKey" when absent).
function _M:head_object(bucket, key)
  check_bucket(bucket, "head_object")
  check_key(key, "head_object")
  local resp, msg, code = send(self, bucket, key, { method = "HEAD", operation = "HeadObject" })
  if not resp then
    if code == "NotFound" then code = "NoSuchKey" end
    return nil, msg, code
  end
  return _M.meta_from_headers(resp.headers)
end


--- delete_object(bucket, key) -> true | nil, msg, code (absent keys are success, as in S3).
function _M:delete_object(bucket, key)
  check_bucket(bucket, "delete_object")
  check_key(key, "delete_object")
  local resp, msg, code = send(self, bucket, key, { method = "DELETE", operation = "DeleteObject" })
  if not resp then return nil, msg, code end
  return true
end


--- copy_object(src_bucket, src_key, dst_bucket, dst_key [, opts]) ->
-- { etag, last_modified } | nil, msg, code.  Server-side copy (up to 5 GiB).
-- With opts.metadata or opts.content_type the metadata is replaced
-- (x-amz-metadata-directive REPLACE), else copied.
function _M:copy_object(sb, sk, db, dk, opts)
  check_bucket(sb, "copy_object", 1)
  check_key(sk, "copy_object", 2)
  check_bucket(db, "copy_object", 3)
  check_key(dk, "copy_object", 4)
  opts = opts or {}
  local bmsg, bcode = bucket_error("CopyObject", sb, sk)
  if bmsg then return nil, bmsg, bcode end
  local headers = { { "x-amz-copy-source", "/" .. sb .. "/" .. encode_key(sk) } }
  if opts.metadata or opts.content_type then
    headers[#headers + 1] = { "x-amz-metadata-directive", "REPLACE" }
    object_headers(opts, headers)
  end
  local res = resource(db, dk)
  local resp, msg, code = send(self, db, dk, { method = "PUT", operation = "CopyObject",
    headers = headers })
  if not resp then return nil, msg, code end
  -- CopyObject may answer 200 with an <Error> body.
  local root
  root, msg, code = parse_xml(self, resp.body, "CopyObject", res)
  if not root then return nil, msg, code end
  if root.name == "Error" then
    local ecode = child_text(root, "Code") or "InternalError"
    return nil, "CopyObject " .. res .. " from " .. resource(sb, sk) .. ": HTTP 200 "
      .. ecode .. ": " .. tostring(child_text(root, "Message")), ecode
  end
  return { etag = unquote(child_text(root, "ETag")), last_modified = child_text(root, "LastModified") }
end


---------------------------------------------------------------------------
-- Listings
---------------------------------------------------------------------------

--- list_page(bucket [, opts]) -> page | nil, msg, code: one ListObjectsV2
-- call.  opts.prefix, opts.delimiter, opts.start_after, opts.page_size
-- (max-keys, default 1000), opts.token (continuation token).
-- page as parse_list.
function _M:list_page(bucket, opts)
  check_bucket(bucket, "list_page")
  opts = opts or {}
  local query = {
    ["list-type"] = "2",
    ["encoding-type"] = "url",
    prefix = opts.prefix ~= "" and opts.prefix or nil,
    delimiter = opts.delimiter ~= "" and opts.delimiter or nil,
    ["start-after"] = (not opts.token and opts.start_after ~= "") and opts.start_after or nil,
    ["continuation-token"] = opts.token,
    ["max-keys"] = opts.page_size and tostring(floor(opts.page_size)) or nil,
  }
  local res = resource(bucket, opts.prefix)
  local resp, msg, code = send(self, bucket, nil, { method = "GET", operation = "ListObjectsV2",
    query = query, resource = res })
  if not resp then return nil, msg, code end
  local root
  root, msg, code = parse_xml(self, resp.body, "ListObjectsV2", res)
  if not root then return nil, msg, code end
  local page = _M.parse_list(root)
  if page.truncated and not page.next_token then
    return nil, "ListObjectsV2 " .. res .. ": truncated answer without NextContinuationToken", "EPARSE"
  end
  return page
end


--- list(bucket [, opts]) -> iterator over every page of ListObjectsV2.
-- Yields entries { key, size, etag, last_modified, storage_class } and, with
-- opts.delimiter, { prefix = "dir/" } entries (each page's objects first,
-- then its common prefixes).  On a failure it yields false, msg, code once
-- and then stops:
--   for e, msg, code in s3:list(b, { prefix = "p/" }) do
--     if not e then return nil, msg, code end
--     ...
--   end
-- opts as list_page (prefix, delimiter, start_after, page_size).
function _M:list(bucket, opts)
  check_bucket(bucket, "list")
  opts = opts or {}
  local popts = { prefix = opts.prefix, delimiter = opts.delimiter,
    start_after = opts.start_after, page_size = opts.page_size }
  local buf, i = {}, 0
  local done = false
  return function()
    while true do
      i = i + 1
      if buf[i] ~= nil then return buf[i] end
      if done then return nil end
      local page, msg, code = self:list_page(bucket, popts)
      if not page then
        done = true
        return false, msg, code
      end
      buf, i = page.entries, 0
      for _, p in ipairs(page.prefixes) do buf[#buf + 1] = { prefix = p } end
      if page.truncated then
        popts.token = page.next_token
      else
        done = true
      end
    end
  end
end


--- list_all(bucket [, opts]) -> entries | nil, msg, code (list() collected).
function _M:list_all(bucket, opts)
  local out = {}
  for e, msg, code in self:list(bucket, opts) do
    if not e then return nil, msg, code end
    out[#out + 1] = e
  end
  return out
end


-- One DeleteObjects call: deleted count, per-key errors | nil, msg, code.
local function delete_batch(self, bucket, keys)
  local body, bad = _M.delete_body(keys)
  if not body then
    -- a key XML cannot carry: delete the batch one by one
    local n, errs = 0, {}
    for _, k in ipairs(keys) do
      local ok, msg, code = self:delete_object(bucket, k)
      if ok then n = n + 1
      else errs[#errs + 1] = { key = k, code = code, message = msg } end
    end
    log.debug("s3: key %q cannot be sent in XML; deleted %d keys one by one", bad, #keys)
    return n, errs
  end
  local core = self:core()
  local resp, msg, code = send(self, bucket, nil, { method = "POST", operation = "DeleteObjects",
    query = { delete = true }, body = body,
    headers = { { "Content-Type", "application/xml" },
      { "Content-MD5", core.base64(core.md5(body, "raw")) } } })
  if not resp then return nil, msg, code end
  local root
  root, msg, code = parse_xml(self, resp.body, "DeleteObjects", resource(bucket))
  if not root then return nil, msg, code end
  local _, errs = _M.parse_delete_result(root)
  return #keys - #errs, errs
end


--- delete_prefix(bucket, prefix [, opts]) -> deleted, errors | nil, msg, code
-- Deletes every key under prefix ("" = the whole bucket) in DeleteObjects
-- batches of up to 1,000 keys (Content-MD5 sent).  errors = { { key, code,
-- message }, ... } for keys S3 refused; a failed listing or batch request
-- is nil, msg, code.  opts.batch_size (<= 1000), opts.on_batch =
-- function(deleted_so_far) after each batch.
function _M:delete_prefix(bucket, prefix, opts)
  check_bucket(bucket, "delete_prefix")
  if type(prefix) ~= "string" then
    error("bad argument #2 to 'delete_prefix' (string expected, got " .. type(prefix) .. ")", 2)
  end
  opts = opts or {}
  local size = opts.batch_size or DELETE_BATCH
  if size > DELETE_BATCH then size = DELETE_BATCH end
  local deleted, errors = 0, {}
  local keys = {}
  local function flush()
    if #keys == 0 then return true end
    local n, errs, code = delete_batch(self, bucket, keys)
    if not n then return nil, errs, code end
    deleted = deleted + n
    for _, e in ipairs(errs) do errors[#errors + 1] = e end
    keys = {}
    if opts.on_batch then opts.on_batch(deleted) end
    return true
  end
  for e, msg, code in self:list(bucket, { prefix = prefix, page_size = size }) do
    if not e then return nil, msg, code end
    keys[#keys + 1] = e.key
    if #keys >= size then
      local ok, m, c = flush()
      if not ok then return nil, m, c end
    end
  end
  local ok, m, c = flush()
  if not ok then return nil, m, c end
  return deleted, errors
end


---------------------------------------------------------------------------
-- Presigned URLs
---------------------------------------------------------------------------

--- presign(method, bucket, key [, expires [, opts]]) -> url | nil, msg, code
-- A URL anyone can use for expires seconds (default 3600, at most 604800).
-- opts.headers: headers the user of the URL must send (signed), e.g.
-- { ["Content-Type"] = "text/plain" } for a PUT; opts.time = epoch seconds
-- of signing (default now).
function _M:presign(method, bucket, key, expires, opts)
  if type(method) ~= "string" then
    error("bad argument #1 to 'presign' (method string expected, got " .. type(method) .. ")", 2)
  end
  check_bucket(bucket, "presign", 2)
  check_key(key, "presign", 3)
  expires = expires or 3600
  if type(expires) ~= "number" or expires < 1 or expires > MAX_PRESIGN or expires ~= floor(expires) then
    error("bad argument #4 to 'presign' (whole seconds in 1.." .. MAX_PRESIGN .. " expected, got "
      .. tostring(expires) .. ")", 2)
  end
  opts = opts or {}
  local op = "Presign " .. method
  local res = resource(bucket, key)
  local bmsg, bcode = bucket_error(op, bucket, key)
  if bmsg then return nil, bmsg, bcode end
  if _M.dot_segment(key) then return dot_error(op, res) end
  local ep, src, code = self:endpoint()
  if not ep then return nil, op .. " " .. res .. ": " .. tostring(src), code end
  local style = _M.choose_addressing(self.addressing, src, bucket)
  local base, path_style = _M.bucket_base(ep, bucket, style)
  local url = base .. (path_style and ("/" .. bucket) or "") .. "/" .. encode_key(key)
  local creds, msg
  creds, msg, code = self._creds:get()
  if not creds then return nil, op .. " " .. res .. ": " .. tostring(msg), code end
  local core = self:core()
  local headers = {}
  if opts.headers then
    for k, v in pairs(opts.headers) do headers[#headers + 1] = { k, tostring(v) } end
    sort(headers, function(a, b) return a[1] < b[1] end)
  end
  local signed
  signed, msg, code = core.sigv4_sign({
    method = method:upper(), url = url, headers = headers,
    payload_hash = "UNSIGNED-PAYLOAD",
    region = self:region(), service = "s3",
    access_key = creds.access_key, secret_key = creds.secret_key,
    session_token = creds.session_token,
    time = opts.time or core.now(), mode = "query", expires = expires,
  })
  if not signed then return nil, op .. " " .. res .. ": signing failed: " .. tostring(msg), code or "ESIGN" end
  return signed.url
end


---------------------------------------------------------------------------
-- File transfers (C engine)
---------------------------------------------------------------------------

local TRANSFER_OPTS = { "part_size", "concurrency", "max_attempts", "on_progress", "verify",
  "connect_timeout", "read_timeout", "content_type", "metadata", "multipart_threshold",
  "unsigned_payload", "checksum", "fsync" }

-- The common core.s3_upload / s3_download options for bucket/key.
local function transfer_opts(self, op, bucket, key, opts)
  local res = resource(bucket, key)
  local bmsg, bcode = bucket_error(op, bucket, key)
  if bmsg then return nil, bmsg, bcode end
  if _M.dot_segment(key) then return dot_error(op, res) end
  local ep, src, code = self:endpoint()
  if not ep then return nil, op .. " " .. res .. ": " .. tostring(src), code end
  local creds, msg
  creds, msg, code = self._creds:get()
  if not creds then return nil, op .. " " .. res .. ": " .. tostring(msg), code end
  local t = {
    endpoint = ep, bucket = bucket, key = key, region = self:region(),
    access_key = creds.access_key, secret_key = creds.secret_key,
    session_token = creds.session_token,
    path_style = _M.choose_addressing(self.addressing, src, bucket) == "path",
    ca_bundle = self._cfg.ca_bundle and self._cfg:ca_bundle() or nil,
    connect_timeout = self._timeouts.connect_timeout,
    read_timeout = self._timeouts.read_timeout,
  }
  for _, k in ipairs(TRANSFER_OPTS) do
    if opts[k] ~= nil then t[k] = opts[k] end
  end
  return t
end


local function engine(self, name, op, bucket, key)
  local f = self:core()[name]
  if type(f) ~= "function" then
    return nil, op .. " " .. resource(bucket, key) .. ": core." .. name
      .. " is not available in this build", "ENOTSUP"
  end
  return f
end


--- upload_file(path, bucket, key [, opts]) -> res | nil, msg, code
-- Through core.s3_upload: single PUT up to opts.multipart_threshold (16 MiB),
-- multipart above, parts SHA-256-signed.  opts: content_type, metadata,
-- part_size, concurrency, max_attempts, multipart_threshold,
-- unsigned_payload, on_progress = function(done, total) (false cancels).
-- res = { bytes, etag (unquoted), parts, sha256, upload_id }.
function _M:upload_file(path, bucket, key, opts)
  if type(path) ~= "string" and type(path) ~= "function" then
    error("bad argument #1 to 'upload_file' (path or reader function expected, got "
      .. type(path) .. ")", 2)
  end
  check_bucket(bucket, "upload_file", 2)
  check_key(key, "upload_file", 3)
  local f, msg, code = engine(self, "s3_upload", "PutObject", bucket, key)
  if not f then return nil, msg, code end
  local t
  t, msg, code = transfer_opts(self, "PutObject", bucket, key, opts or {})
  if not t then return nil, msg, code end
  if type(path) == "function" then t.reader = path else t.file = path end
  local res
  res, msg, code = f(t)
  if res then res.etag = unquote(res.etag) end
  return res, msg, code
end


--- upload_reader(reader, bucket, key [, opts]): upload_file from a stream
-- (reader() -> chunk | "" / nil at end; length unknown).
function _M:upload_reader(reader, bucket, key, opts)
  if type(reader) ~= "function" then
    error("bad argument #1 to 'upload_reader' (function expected, got " .. type(reader) .. ")", 2)
  end
  return self:upload_file(reader, bucket, key, opts)
end


--- download_file(bucket, key, path [, opts]) -> res | nil, msg, code
-- Through core.s3_download: ranged parallel GETs into a temporary file
-- renamed at the end, verified against lb-sha256 metadata, MD5 ETag or
-- length.  opts: part_size, concurrency, max_attempts, checksum (true),
-- on_progress.  res = { bytes, etag, verified = "sha256"|"md5"|"length",
-- parts (ranges), note }: note says why the object's lb-part-size was
-- ignored (a part size no upload of ours writes; also logged at debug).
function _M:download_file(bucket, key, path, opts)
  check_bucket(bucket, "download_file", 1)
  check_key(key, "download_file", 2)
  if type(path) ~= "string" or path == "" then
    error("bad argument #3 to 'download_file' (path expected, got " .. type(path) .. ")", 2)
  end
  local f, msg, code = engine(self, "s3_download", "GetObject", bucket, key)
  if not f then return nil, msg, code end
  local t
  t, msg, code = transfer_opts(self, "GetObject", bucket, key, opts or {})
  if not t then return nil, msg, code end
  t.file = path
  local res
  res, msg, code = f(t)
  if res then res.etag = unquote(res.etag) end
  if res and res.note then log.debug("s3: GetObject %s: %s", resource(bucket, key), res.note) end
  return res, msg, code
end


return _M
