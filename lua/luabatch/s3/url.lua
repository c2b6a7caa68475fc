-- luabatch.s3.url: S3 names and URLs -- bucket-name rules, s3:// URLs, key
-- encoding, path-style or virtual-host addressing, request paths (pure).
--
--   local url = require "luabatch.s3.url"
--   local bucket, key = url.parse_url("s3://my-bucket/dir/a b.txt")
--   local msg, code = url.target_error("GetObject", bucket, key)  -- nil: sendable
--   local style = url.choose_addressing("auto", endpoint_source, bucket)
--   local base, path_style = url.bucket_base("https://s3.eu-west-1.amazonaws.com", bucket, style)
--   local u = base .. url.request_path(bucket, key, path_style)   -- ".../dir/a%20b.txt"
--
-- encode_key percent-encodes every byte of a key but the RFC 3986
-- unreserved characters and "/", so no key can add a query or a fragment.
-- check_bucket_name and parse_url return nil, msg, "EINVAL" for a name or
-- URL S3 would refuse; bucket_error and target_error give "<op> s3://b/k:
-- <why>", "EINVAL" for a bucket (and a key) that cannot go into a URL, nil
-- when they can.
-- Nothing here raises but parse_url on a non-string.

local _M = { _VERSION = "0.1.0" }

local type = type
local tonumber = tonumber
local str_format = string.format
local str_gsub = string.gsub
local str_match = string.match
local str_find = string.find
local str_byte = string.byte
local str_char = string.char


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


--- "s3://bucket" or "s3://bucket/key": how messages name what they touch.
function _M.resource(bucket, key)
  if key == nil then return "s3://" .. bucket end
  return "s3://" .. bucket .. "/" .. key
end
local resource = _M.resource


--- True when a key has a "." or ".." path segment ("a/../b", "./x"):
-- HTTP clients (libcurl, curl) normalise those away from the URL path, so
-- such keys cannot be addressed in a URL (listing and DeleteObjects, which
-- carry keys in the query or body, handle them).
function _M.dot_segment(key)
  return str_find("/" .. key .. "/", "/%.%.?/") ~= nil
end
local dot_segment = _M.dot_segment


--- bucket_error(op, bucket [, key]) -> nil (a good bucket name) |
-- "<op> s3://b/k: invalid bucket name ...", "EINVAL".
function _M.bucket_error(op, bucket, key)
  local ok, msg, code = check_bucket_name(bucket)
  if ok then return nil end
  return op .. " " .. resource(bucket, key) .. ": " .. msg, code
end
local bucket_error = _M.bucket_error


--- target_error(op, bucket [, key]) -> nil (the bucket and the key can go
-- into a URL path) | "<op> s3://b/k: <why>", "EINVAL" (bucket_error's, or
-- a key with a dot segment).
function _M.target_error(op, bucket, key)
  local msg, code = bucket_error(op, bucket, key)
  if msg then return msg, code end
  if key and dot_segment(key) then
    return op .. " " .. resource(bucket, key) .. ": a key with a '.' or '..' path segment cannot "
      .. "be sent in a URL (HTTP clients normalise it away)", "EINVAL"
  end
  return nil
end


--- A bucket name usable as a DNS label under an endpoint (virtual host):
-- 3-63 of [a-z0-9-], starting and ending with a letter or digit, no dots.
function _M.dns_compatible(bucket)
  return #bucket >= 3 and #bucket <= 63 and str_find(bucket, "^[a-z0-9][a-z0-9%-]*[a-z0-9]$") ~= nil
end
local dns_compatible = _M.dns_compatible


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
  if source == "default" and dns_compatible(bucket) then return "virtual" end
  return "path"
end


--- request_path(bucket, key, path_style) -> the URL path under the base
-- bucket_base gave: "/bucket/key" or "/key" (key percent-encoded), "/bucket"
-- or "/" without a key, "/" without a bucket (the service itself).
function _M.request_path(bucket, key, path_style)
  local prefix = (bucket and path_style) and ("/" .. bucket) or ""
  if key then return prefix .. "/" .. encode_key(key) end
  return prefix ~= "" and prefix or "/"
end


return _M
