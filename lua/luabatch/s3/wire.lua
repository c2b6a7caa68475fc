-- luabatch.s3.wire: what S3 operations send and answer besides the URL --
-- the XML bodies (built, and read from core.xml_parse's element tree) and
-- the object headers (pure; no I/O).
--
--   local wire = require "luabatch.s3.wire"
--   local page = wire.parse_list(root)          -- one ListObjectsV2 answer
--   local body, bad_key = wire.delete_body({ "a", "b" })
--   local deleted, errors = wire.parse_delete_result(root)
--   local meta = wire.meta_from_headers(resp.headers)
--   local headers = wire.object_headers({ content_type = "text/plain", metadata = { k = "v" } })
--
-- An element is { name = "Key", text = "...", [1..n] = children } (as
-- core.xml_parse gives).  ETags are returned without their quotes
-- (unquote), sizes as integers.  xml_escape and delete_body return nil for
-- text XML 1.0 cannot carry; parse_copy_result returns nil, code, message
-- for the <Error> a CopyObject may answer with HTTP 200.

local url = require "luabatch.s3.url"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local str_gsub = string.gsub
local str_match = string.match
local str_find = string.find
local str_lower = string.lower
local concat = table.concat
local sort = table.sort
local math_tointeger = math.tointeger

local XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


local function to_int(v)
  local n = tonumber(v)
  if n == nil then return nil end
  if math_tointeger then return math_tointeger(n) or n end
  return n
end


--- An ETag without its quotes ('"abc"' -> "abc"; nil stays nil).
function _M.unquote(etag)
  if etag == nil then return nil end
  return (str_gsub(etag, '^"(.*)"$', "%1"))
end
local unquote = _M.unquote


--- XML text escaping for request bodies.  Returns nil when s holds a
-- character XML 1.0 cannot carry (C0 controls other than tab/LF/CR).
local XML_ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
  ["'"] = "&apos;", ["\r"] = "&#13;", ["\n"] = "&#10;", ["\t"] = "&#9;" }
function _M.xml_escape(s)
  if str_find(s, "[%z\1-\8\11\12\14-\31]") then return nil end
  return (str_gsub(s, "[&<>\"'\r\n\t]", XML_ESC))
end
local xml_escape = _M.xml_escape


--- The first child element of el named name, or nil.
function _M.child(el, name)
  if type(el) ~= "table" then return nil end
  for i = 1, #el do
    if el[i].name == name then return el[i] end
  end
  return nil
end
local child = _M.child


--- The text of el's first child named name, or nil.
function _M.child_text(el, name)
  local c = child(el, name)
  return c and c.text or nil
end
local child_text = _M.child_text


---------------------------------------------------------------------------
-- Request bodies
---------------------------------------------------------------------------

--- The CreateBucket body for a region (nil for us-east-1, which takes none).
function _M.create_bucket_body(region)
  if region == "us-east-1" then return nil end
  return '<CreateBucketConfiguration xmlns="' .. XMLNS .. '"><LocationConstraint>'
    .. xml_escape(region) .. "</LocationConstraint></CreateBucketConfiguration>"
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


--- Headers for put/copy -> list of { name, value } (appended to list when
-- given): Content-Type, x-amz-meta-* (sorted, names lower-cased),
-- Cache-Control, Content-Encoding, then opts.headers (a map or a list of pairs).
function _M.object_headers(opts, list)
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
-- Answers
---------------------------------------------------------------------------

--- Parse one ListObjectsV2 answer (element tree from core.xml_parse) ->
-- { entries = { {key, size, etag, last_modified, storage_class}, ... },
--   prefixes = { "dir/", ... }, truncated = bool, next_token = s|nil, key_count = n }.
-- Keys and prefixes are decoded when the answer says EncodingType=url.
function _M.parse_list(root)
  local enc = child_text(root, "EncodingType") == "url"
  local function dec(s)
    if s and enc then return url.url_decode(s, true) end
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


--- Parse a ListBuckets answer -> { { name, creation_date }, ... }.
function _M.parse_buckets(root)
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


--- Parse a CopyObject answer -> { etag, last_modified } | nil, code, message
-- when it is an <Error> (code "InternalError" when the answer names none).
function _M.parse_copy_result(root)
  if root.name == "Error" then
    return nil, child_text(root, "Code") or "InternalError", child_text(root, "Message")
  end
  return { etag = unquote(child_text(root, "ETag")), last_modified = child_text(root, "LastModified") }
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


return _M
