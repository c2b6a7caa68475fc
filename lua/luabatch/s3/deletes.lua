-- luabatch.s3.deletes: DeleteObjects requests for luabatch.s3's
-- delete_prefix and delete_keys, batched by luabatch.s3.listing.
--
--   local deletes = require "luabatch.s3.deletes"
--   local n, errors = deletes.run(s3, "bucket", s3:list("bucket", { prefix = "p/" }), opts)
--   n, errors = deletes.run(s3, "bucket", deletes.keys({ "p/a", "p/b" }), opts)
--
-- run(s3, bucket, iter, opts) -> deleted, errors | nil, msg, code: the keys
-- of iter's entries (as s3:list yields them) deleted in DeleteObjects
-- batches of opts.batch_size (at most and by default 1,000), Content-MD5
-- sent; errors = { { key, code, message }, ... } for keys S3 refused; a
-- failed listing or batch request is nil, msg, code.  opts.on_batch =
-- function(deleted_so_far) after each batch.

local listing = require "luabatch.s3.listing"
local wire = require "luabatch.s3.wire"
local url = require "luabatch.s3.url"

local _M = { _VERSION = "0.1.0" }

local tostring = tostring


-- One DeleteObjects request: per-key errors { { key, code, message }, ... } | nil, msg, code.
local function delete_objects(s3, bucket, body)
  local core = s3:core()
  local resp, msg, code = s3:request(bucket, nil, { method = "POST", operation = "DeleteObjects",
    query = { delete = true }, body = body,
    headers = { { "Content-Type", "application/xml" },
      { "Content-MD5", core.base64(core.md5(body, "raw")) } } })
  if not resp then return nil, msg, code end
  local root, perr = core.xml_parse(resp.body or "")
  if not root then
    return nil, "DeleteObjects " .. url.resource(bucket) .. ": unparsable XML answer: " .. tostring(perr), "EPARSE"
  end
  local _, errs = wire.parse_delete_result(root)
  return errs
end


--- keys(list) -> an iterator of { key = k } over a list of keys.
function _M.keys(list)
  local i = 0
  return function()
    i = i + 1
    return list[i] and { key = list[i] } or nil
  end
end


--- run(s3, bucket, iter [, opts]) -> deleted, errors | nil, msg, code (above).
function _M.run(s3, bucket, iter, opts)
  opts = opts or {}
  return listing.delete_all(iter, listing.batch_size(opts.batch_size), {
    batch = function(body) return delete_objects(s3, bucket, body) end,
    one = function(key) return s3:delete_object(bucket, key) end,
  }, opts.on_batch)
end


return _M
