-- luabatch.s3.sync: what `luabatch s3 sync` sends and deletes, decided
-- from the two listings, pure (no I/O).
--
--   local sync = require "luabatch.s3.sync"
--   local files = sync.s3_files(listing_entries, "p/")   -- { { rel, key, size, mtime }, ... }
--   local plan = sync.plan(src_files, dst_files, { filter = f, delete = true })
--   plan.transfer = { { rel, size, mtime, reason = "new"|"size"|"newer", ... }, ... }
--   plan.delete   = { dst_file, ... }
--
-- Files are { rel = path relative to the root ("a/b.txt"), size = bytes,
-- mtime = epoch seconds (nil when unknown) } plus anything the caller
-- keeps (key, ...); both lists of plan come back sorted by rel.  As awscli
-- does: a source file is sent when the destination lacks it, when the
-- sizes differ, or when the source is newer (whole seconds: S3 keeps
-- LastModified to the second); with delete, destination files the source
-- lacks go.  The filter (luabatch.s3.filter; nil takes all) applies to both
-- sides: an excluded source file is not sent, an excluded destination
-- file is never deleted.

local aws_time = require "luabatch.aws.time"

local _M = { _VERSION = "0.1.0" }

local pairs = pairs
local ipairs = ipairs
local str_sub = string.sub
local floor = math.floor
local tbl_sort = table.sort


--- s3_files(entries, prefix) -> files: ListObjectsV2 entries under prefix
-- (a "" or "/"-ending prefix) as files with rel = key less prefix and key
-- kept; "directory" keys (ending in "/") and common prefixes are left out.
function _M.s3_files(entries, prefix)
  local out = {}
  for _, e in ipairs(entries) do
    local key = e.key
    if key and str_sub(key, -1) ~= "/" and str_sub(key, 1, #prefix) == prefix then
      out[#out + 1] = { rel = str_sub(key, #prefix + 1), key = key, size = e.size,
        mtime = aws_time.parse_iso8601(e.last_modified) }
    end
  end
  return out
end


--- why(src, dst) -> "new" | "size" | "newer" | nil: why src goes over dst
-- (nil: it need not).
function _M.why(src, dst)
  if not dst then return "new" end
  if src.size ~= dst.size then return "size" end
  if src.mtime and dst.mtime and floor(src.mtime) > floor(dst.mtime) then return "newer" end
  return nil
end
local why = _M.why


local function by_rel(a, b) return a.rel < b.rel end


--- plan(src_files, dst_files [, opts]) -> { transfer = files, delete = files }.
-- opts.filter (an object with :includes(rel)), opts.delete (bool).
function _M.plan(src, dst, opts)
  opts = opts or {}
  local f = opts.filter
  local function taken(file) return not f or f:includes(file.rel) end
  local there, wanted = {}, {}
  for _, d in ipairs(dst) do there[d.rel] = d end
  local transfer, delete = {}, {}
  for _, s in ipairs(src) do
    if taken(s) then
      wanted[s.rel] = true
      local reason = why(s, there[s.rel])
      if reason then
        local t = {}
        for k, v in pairs(s) do t[k] = v end
        t.reason = reason
        transfer[#transfer + 1] = t
      end
    end
  end
  if opts.delete then
    for _, d in ipairs(dst) do
      if not wanted[d.rel] and taken(d) then delete[#delete + 1] = d end
    end
  end
  tbl_sort(transfer, by_rel)
  tbl_sort(delete, by_rel)
  return { transfer = transfer, delete = delete }
end


return _M
