-- tests/helpers/rgw_bucket.lua: a scratch bucket on Ceph RGW, checked with
-- requests signed here and sent straight to RGW (not through a proxy, not
-- through the code under test): the independent view of what RGW holds.
--
--   local b = require("helpers.rgw_bucket").create(endpoint, key, secret, "lb-x-1234")
--   b:direct("GET", "/" .. b.name .. "/k", { output_file = path })   -- resp | nil, msg
--   b:open_uploads([prefix])  -- { { Key =, UploadId =, ... }, ... } (ListMultipartUploads)
--   b:purge()                 -- abort its uploads, delete its objects and the bucket
local core = require "luabatch.core"

local _M = {}
local mt = { __index = _M }

function _M.create(endpoint, key, secret, name)
  local b = setmetatable({ endpoint = endpoint, key = key, secret = secret, name = name }, mt)
  local r = assert(b:direct("PUT", "/" .. name))
  assert(r.status == 200, "cannot create bucket " .. name .. ": HTTP " .. r.status .. " " .. r.body)
  return b
end

function _M:direct(method, path, opts)
  opts = opts or {}
  local signed = assert(core.sigv4_sign({ method = method, url = self.endpoint .. path, headers = {},
    body = opts.body or "", region = "us-east-1", service = "s3", access_key = self.key,
    secret_key = self.secret }))
  return core.http_request({ method = method, url = signed.url, headers = signed.headers, body = opts.body,
    output_file = opts.output_file, timeout = 300 })
end

-- The <tag> elements of a listing answer as { [child name] = text } tables.
local function elements(body, tag)
  local doc = assert(core.xml_parse(body))
  local out = {}
  for _, el in ipairs(doc) do
    if el.name == tag then
      local u = {}
      for _, f in ipairs(el) do u[f.name] = f.text end
      out[#out + 1] = u
    end
  end
  return out
end

function _M:open_uploads(prefix)
  local r = assert(self:direct("GET", "/" .. self.name .. "?uploads="))
  assert(r.status == 200, r.body)
  local out = {}
  for _, u in ipairs(elements(r.body, "Upload")) do
    if not prefix or u.Key:sub(1, #prefix) == prefix then out[#out + 1] = u end
  end
  return out
end

function _M:purge()
  for _, u in ipairs(self:open_uploads()) do
    self:direct("DELETE", "/" .. self.name .. "/" .. u.Key .. "?uploadId=" .. u.UploadId)
  end
  local r = self:direct("GET", "/" .. self.name .. "?list-type=2")
  for _, o in ipairs(r and r.status == 200 and elements(r.body, "Contents") or {}) do
    self:direct("DELETE", "/" .. self.name .. "/" .. o.Key)
  end
  self:direct("DELETE", "/" .. self.name)
end

return _M
