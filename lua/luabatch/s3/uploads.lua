-- luabatch.s3.uploads: the incomplete multipart uploads under a prefix --
-- listed (ListMultipartUploads, every page) and aborted one by one
-- (AbortMultipartUpload).  A client killed mid-upload (SIGKILL, power
-- loss) leaves one behind; its parts are stored, billed and invisible.
--
--   local uploads = require "luabatch.s3.uploads"
--   local list, msg, code = uploads.list(s3, "bucket", "prefix/")
--   -- list = { { key =, upload_id =, initiated = "2026-12-06T05:00:00.000Z" }, ... }
--   local ok, msg, code = uploads.abort(s3, "bucket", list[1].key, list[1].upload_id)

local wire = require "luabatch.s3.wire"
local url = require "luabatch.s3.url"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local tostring = tostring

local MAX_PAGES = 100000           -- a server that never stops paging is an error

-- One page's uploads appended to out -> next key marker, next upload-id marker (nil at the end).
local function read_page(root, out)
  for _, el in ipairs(root) do
    if el.name == "Upload" then
      out[#out + 1] = { key = wire.child_text(el, "Key"), upload_id = wire.child_text(el, "UploadId"),
        initiated = wire.child_text(el, "Initiated") }
    end
  end
  if wire.child_text(root, "IsTruncated") ~= "true" then return nil end
  return wire.child_text(root, "NextKeyMarker"), wire.child_text(root, "NextUploadIdMarker")
end

--- list(s3, bucket, prefix) -> { {key, upload_id, initiated}, ... } | nil, msg, code
function _M.list(s3, bucket, prefix)
  local out, key_marker, id_marker = {}, nil, nil
  local res = url.resource(bucket, prefix ~= "" and prefix or nil)
  for _ = 1, MAX_PAGES do
    local resp, msg, code = s3:request(bucket, nil, { method = "GET", operation = "ListMultipartUploads",
      resource = res, query = { uploads = "", prefix = prefix ~= "" and prefix or nil,
        ["key-marker"] = key_marker, ["upload-id-marker"] = id_marker } })
    if not resp then return nil, msg, code end
    local root, perr = s3:core().xml_parse(resp.body or "")
    if not root then
      return nil, "ListMultipartUploads " .. res .. ": unparsable XML answer: " .. tostring(perr), "EPARSE"
    end
    local nk, ni = read_page(root, out)
    if not nk then return out end
    if nk == key_marker and ni == id_marker then
      return nil, "ListMultipartUploads " .. res .. ": the server repeated its markers", "EPARSE"
    end
    key_marker, id_marker = nk, ni
  end
  return nil, "ListMultipartUploads " .. res .. ": more than " .. MAX_PAGES .. " pages", "EPARSE"
end

--- abort(s3, bucket, key, upload_id) -> true | nil, msg, code (an upload
-- already gone, NoSuchUpload, is success: someone finished the job).
function _M.abort(s3, bucket, key, upload_id)
  local resp, msg, code = s3:request(bucket, key, { method = "DELETE", operation = "AbortMultipartUpload",
    query = { uploadId = upload_id } })
  if resp or code == "NoSuchUpload" then return true end
  return nil, msg, code
end

return _M
