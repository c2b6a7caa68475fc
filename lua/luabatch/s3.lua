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
--
-- Helpers: luabatch.s3.url (names, URLs, addressing), .wire (XML, object
-- headers), .listing (paging, delete batches), .presign, .transfer (the C
-- engine's options); the pure functions callers use are re-exported here.

local request = require "luabatch.request"
local log = require "luabatch.log"
local url = require "luabatch.s3.url"
local wire = require "luabatch.s3.wire"
local listing = require "luabatch.s3.listing"
local presign = require "luabatch.s3.presign"
local transfer = require "luabatch.s3.transfer"
local batch = require "luabatch.s3.batch"
local deletes = require "luabatch.s3.deletes"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local tostring = tostring
local setmetatable = setmetatable
local require = require
local str_gsub = string.gsub
local str_lower = string.lower
local floor = math.floor

local MAX_PRESIGN = presign.MAX_EXPIRES
local DEFAULT_REGION = "us-east-1"

local ADDRESSING = { auto = true, path = true, virtual = true }

local resource = url.resource
local unquote = wire.unquote


---------------------------------------------------------------------------
-- Pure helpers (exported for specs and the CLI; see luabatch.s3.url/wire)
---------------------------------------------------------------------------

_M.encode_key = url.encode_key
_M.url_decode = url.url_decode
_M.check_bucket_name = url.check_bucket_name
_M.parse_url = url.parse_url
_M.dns_compatible = url.dns_compatible
_M.bucket_base = url.bucket_base
_M.choose_addressing = url.choose_addressing
_M.dot_segment = url.dot_segment
_M.xml_escape = wire.xml_escape
_M.parse_list = wire.parse_list
_M.delete_body = wire.delete_body
_M.parse_delete_result = wire.parse_delete_result
_M.meta_from_headers = wire.meta_from_headers


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
  local ep, src, code = self._cfg:endpoint("s3", self:region())
  if not ep then return nil, src, code end
  self._endpoint, self._endpoint_source = ep, src
  return ep, src
end


--- How a bucket is addressed: "path" | "virtual" (nil, msg, code when the
-- endpoint cannot be resolved).
function _M:style(bucket)
  local _, src, code = self:endpoint()
  if not _ then return nil, src, code end
  return url.choose_addressing(self.addressing, src, bucket)
end


---------------------------------------------------------------------------
-- The request path
---------------------------------------------------------------------------

-- The base URL for a bucket (nil: the service itself, e.g. ListBuckets)
-- and whether it is path-style | nil, msg, code (no endpoint).
local function locate(self, bucket)
  local ep, src, code = self:endpoint()
  if not ep then return nil, src, code end
  if not bucket then return ep, true end
  return url.bucket_base(ep, bucket, url.choose_addressing(self.addressing, src, bucket))
end


-- The request client for a bucket (nil: the service) and whether its
-- paths are path-style.
local function target(self, bucket)
  local base, path_style, code = locate(self, bucket)
  if not base then return nil, path_style, code end
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
  return c, path_style
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


-- Send on a bucket (key = nil: bucket-level).  req fields as request:send.
-- The one place a bucket and a key become a request path: the bucket is
-- checked, the key percent-encoded.
local function send(self, bucket, key, req)
  local msg, code = url.target_error(req.operation, bucket, key)
  if msg then return nil, msg, code end
  local c, path_style
  c, path_style, code = target(self, bucket)
  if not c then
    return nil, (req.operation or "S3") .. " " .. resource(bucket, key) .. ": " .. tostring(path_style), code
  end
  req.path = url.request_path(bucket, key, path_style)
  req.resource = req.resource or resource(bucket, key)
  return c:send(req)
end


--- request(bucket, key, req) -> resp | nil, msg, code, resp: one request on
-- bucket[/key] through luabatch.request (for luabatch.s3.* helpers).
function _M:request(bucket, key, req)
  return send(self, bucket, key, req)
end


local function parse_xml(self, body, op, res)
  local root, msg = self:core().xml_parse(body or "")
  if not root then
    return nil, op .. " " .. res .. ": unparsable XML answer: " .. tostring(msg), "EPARSE"
  end
  return root
end


-- What a request signed outside luabatch.request (presign, the transfer
-- engine) needs: { endpoint, style = "path" | "virtual", creds } | nil,
-- msg, code (a bucket or key no URL carries, no endpoint, no credentials).
local function direct(self, op, bucket, key)
  local msg, code = url.target_error(op, bucket, key)
  if msg then return nil, msg, code end
  local ep, src, creds
  ep, src, code = self:endpoint()
  if not ep then return nil, op .. " " .. resource(bucket, key) .. ": " .. tostring(src), code end
  creds, msg, code = self._creds:get()
  if not creds then return nil, op .. " " .. resource(bucket, key) .. ": " .. tostring(msg), code end
  return { endpoint = ep, style = url.choose_addressing(self.addressing, src, bucket), creds = creds }
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
  local body = wire.create_bucket_body(opts.region or self:region())
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
  return wire.parse_buckets(root)
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
  local headers = wire.object_headers(opts)
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
-- opts.on_data = function(chunk) streams the body instead (body is then "");
-- opts.if_match = ETag (unquoted).  A failure also returns the answer, if any.
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
  if opts.if_match then headers[#headers + 1] = { "If-Match", '"' .. opts.if_match .. '"' } end
  local resp, msg, code, failed = send(self, bucket, key, { method = "GET", operation = "GetObject",
    headers = headers, on_data = opts.on_data, on_progress = opts.on_progress })
  if not resp then return nil, msg, code, failed end
  return resp.body or "", wire.meta_from_headers(resp.headers)
end


--- get_stream(bucket, key, write [, opts]) -> { bytes, etag, resumed } | nil, msg, code
-- The object into write(chunk), resumed with a Range after a reset, a
-- timeout or a 5xx (luabatch.s3.stream); a failed write stops it ("EWRITE").
function _M:get_stream(bucket, key, write, opts)
  check_bucket(bucket, "get_stream")
  check_key(key, "get_stream")
  return require("luabatch.s3.stream").get(self, bucket, key, write, opts)
end


--- head_object(bucket, key) -> { size, etag, content_type, metadata,
-- last_modified, ... } | nil, msg, code ("NoSuchKey" when absent).
function _M:head_object(bucket, key)
  check_bucket(bucket, "head_object")
  check_key(key, "head_object")
  local resp, msg, code = send(self, bucket, key, { method = "HEAD", operation = "HeadObject" })
  if code == "HTTP_403" then
    -- a bodiless 403 names no cause: a one-byte GET has a body (and its
    -- RequestTimeTooSkewed corrects the clock); then the HEAD once more
    local _, gmsg, gcode = self:get_object(bucket, key, { range = "bytes=0-0" })
    resp, msg, code = send(self, bucket, key, { method = "HEAD", operation = "HeadObject" })
    if code == "HTTP_403" and gcode then msg, code = gmsg, gcode end
  end
  if not resp then
    if code == "NotFound" then code = "NoSuchKey" end
    return nil, msg, code
  end
  return wire.meta_from_headers(resp.headers)
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
  local msg, code = url.bucket_error("CopyObject", sb, sk)   -- the source goes in a header
  if msg then return nil, msg, code end
  local headers = { { "x-amz-copy-source", "/" .. sb .. "/" .. url.encode_key(sk) } }
  if opts.metadata or opts.content_type then
    headers[#headers + 1] = { "x-amz-metadata-directive", "REPLACE" }
    wire.object_headers(opts, headers)
  end
  local res = resource(db, dk)
  local resp
  resp, msg, code = send(self, db, dk, { method = "PUT", operation = "CopyObject", headers = headers })
  if not resp then return nil, msg, code end
  -- CopyObject may answer 200 with an <Error> body.
  local root
  root, msg, code = parse_xml(self, resp.body, "CopyObject", res)
  if not root then return nil, msg, code end
  local out, ecode, emsg = wire.parse_copy_result(root)
  if not out then
    return nil, "CopyObject " .. res .. " from " .. resource(sb, sk) .. ": HTTP 200 "
      .. ecode .. ": " .. tostring(emsg), ecode
  end
  return out
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
  local res = resource(bucket, opts.prefix)
  local resp, msg, code = send(self, bucket, nil, { method = "GET", operation = "ListObjectsV2",
    query = listing.query(opts), resource = res })
  if not resp then return nil, msg, code end
  local root
  root, msg, code = parse_xml(self, resp.body, "ListObjectsV2", res)
  if not root then return nil, msg, code end
  return listing.page(root, res)
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
  return listing.iterate(function(popts) return self:list_page(bucket, popts) end, opts or {})
end


--- list_all(bucket [, opts]) -> entries | nil, msg, code (list() collected).
function _M:list_all(bucket, opts)
  return listing.collect(self:list(bucket, opts))
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
  local size = listing.batch_size(opts and opts.batch_size)
  return deletes.run(self, bucket, self:list(bucket, { prefix = prefix, page_size = size }), opts)
end


--- delete_keys(bucket, keys [, opts]) -> as delete_prefix, for a list of keys.
function _M:delete_keys(bucket, keys, opts)
  check_bucket(bucket, "delete_keys")
  if type(keys) ~= "table" then
    error("bad argument #2 to 'delete_keys' (table expected, got " .. type(keys) .. ")", 2)
  end
  return deletes.run(self, bucket, deletes.keys(keys), opts)
end


---------------------------------------------------------------------------
-- Presigned URLs
---------------------------------------------------------------------------

--- presign(method, bucket, key [, expires [, opts]]) -> url | nil, msg, code
-- A URL anyone can use for expires seconds (default 3600, at most 604800).
-- opts.headers: headers the user of the URL must send (signed), e.g.
-- { ["Content-Type"] = "text/plain" } for a PUT; opts.time = epoch seconds
-- of signing (default now, corrected by the clock skew measured so far).
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
  local at, msg, code = direct(self, "Presign " .. method, bucket, key)
  if not at then return nil, msg, code end
  local time = opts.time
  if not time then                     -- now, corrected by the skew measured so far
    local c = target(self, bucket)
    time = self:core().now() + (c and c:skew() or 0)
  end
  return presign.sign(self:core(), { method = method, endpoint = at.endpoint, style = at.style,
    bucket = bucket, key = key, region = self:region(), creds = at.creds, expires = expires,
    headers = opts.headers, time = time })
end


---------------------------------------------------------------------------
-- File transfers (C engine)
---------------------------------------------------------------------------

-- The engine core[name] and its options for bucket/key | nil, msg, code.
local function prepare_transfer(self, name, op, bucket, key, opts)
  local f, msg, code = transfer.engine(self:core(), name, op, resource(bucket, key))
  if not f then return nil, msg, code end
  local at
  at, msg, code = direct(self, op, bucket, key)
  if not at then return nil, msg, code end
  return f, transfer.options({
    endpoint = at.endpoint, path_style = at.style == "path", region = self:region(), creds = at.creds,
    ca_bundle = self._cfg.ca_bundle and self._cfg:ca_bundle() or nil,
    connect_timeout = self._timeouts.connect_timeout, read_timeout = self._timeouts.read_timeout,
  }, bucket, key, opts or {})
end


-- The engine signs with time() + offset: the request path's clock
-- (core.now) and the skew it measured, in whole seconds; the probe is a
-- one-byte GET, which measures the skew when the server refuses the clock;
-- refresh drops the cached credentials (ExpiredToken) and fetches new ones.
local function engine_hooks(self, bucket, key)
  local function offset()
    local c = target(self, bucket)
    local skew = c and c:skew() or 0
    return floor(self:core().now() + skew - os.time() + 0.5)
  end
  return { offset = offset, probe = function() self:get_object(bucket, key, { range = "bytes=0-0" }) end,
    refresh = function()
      if self._creds.invalidate then self._creds:invalidate() end
      return (self._creds:get())
    end }
end


--- upload_file(path, bucket, key [, opts]) -> res | nil, msg, code
-- Through core.s3_upload: single PUT up to opts.multipart_threshold (16 MiB),
-- multipart above; a file is read once, sent aws-chunked (every chunk
-- SHA-256-signed, checked by the server).  opts: content_type, metadata,
-- part_size, concurrency, max_attempts, multipart_threshold,
-- unsigned_payload, on_progress = function(done, total) (false cancels).
-- res = { bytes, etag (unquoted), parts, checksum (multipart: the lb-crc32c
-- tag), upload_id, concurrency, note (the tag could not be stored: logged
-- as a warning) }.
function _M:upload_file(path, bucket, key, opts)
  if type(path) ~= "string" and type(path) ~= "function" then
    error("bad argument #1 to 'upload_file' (path or reader function expected, got "
      .. type(path) .. ")", 2)
  end
  check_bucket(bucket, "upload_file", 2)
  check_key(key, "upload_file", 3)
  local f, t, code = prepare_transfer(self, "s3_upload", "PutObject", bucket, key, opts)
  if not f then return nil, t, code end
  if type(path) == "function" then t.reader = path else t.file = path end
  t.direction = "upload"
  local res, msg
  res, msg, code = transfer.run(f, t, engine_hooks(self, bucket, key))
  if res then res.etag = unquote(res.etag) end
  if res and res.note then log.warn("s3: PutObject %s: %s", resource(bucket, key), res.note) end
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
-- renamed at the end, verified against the lb-crc32c tag, older lb-sha256
-- metadata, the MD5 ETag or the length.  opts: part_size, concurrency, max_attempts, checksum (true),
-- on_progress.  res = { bytes, etag, verified = "crc32c"|"sha256"|"md5"|"length",
-- parts (ranges), concurrency, note }: note says why less was checked (an
-- lb-part-size no upload of ours writes, the tag unreadable; logged at debug).
function _M:download_file(bucket, key, path, opts)
  check_bucket(bucket, "download_file", 1)
  check_key(key, "download_file", 2)
  if type(path) ~= "string" or path == "" then
    error("bad argument #3 to 'download_file' (path expected, got " .. type(path) .. ")", 2)
  end
  local f, t, code = prepare_transfer(self, "s3_download", "GetObject", bucket, key, opts)
  if not f then return nil, t, code end
  t.file = path
  local res, msg
  res, msg, code = transfer.run(f, t, engine_hooks(self, bucket, key))
  if res then res.etag = unquote(res.etag) end
  if res and res.note then log.debug("s3: GetObject %s: %s", resource(bucket, key), res.note) end
  return res, msg, code
end


--- transfer_many(direction, bucket, items, opts) -> results | nil, msg, code
-- direction "upload" | "download"; items = { { file, key, size }, ... };
-- opts as upload_file / download_file plus workers (objects at once, 8) and
-- on_progress = function(bytes, finished, n).  See luabatch.s3.batch.
function _M:transfer_many(direction, bucket, items, opts)
  check_bucket(bucket, "transfer_many", 2)
  opts = opts or {}
  local op = direction == "download" and "GetObject" or "PutObject"
  local f, t, code = prepare_transfer(self, "s3_batch", op, bucket, items[1] and items[1].key or "-", opts)
  if not f then return nil, t, code end
  t.direction, t.workers = direction, opts.workers
  return batch.run(f, t, items, engine_hooks(self, bucket, items[1] and items[1].key or "-"))
end


return _M
