-- luabatch.cli.s3_sync: `luabatch s3 sync SRC DST [--exclude P] [--include
-- P] [--delete] [--dryrun]` -- DIR -> s3://B/P/ or s3://B/P/ -> DIR, as
-- awscli's sync: the two sides are listed, luabatch.s3.sync decides, and
-- the files go through the cp -r machinery (luabatch.cli.s3_many: many
-- small files at once over one pool, big ones one at a time with their
-- parts in parallel).  A download takes the object's LastModified as its
-- mtime, so the next sync finds it unchanged.
--
--   local ok, code = require("luabatch.cli.s3_sync").run(ctx, h)
--
-- ctx as luabatch.cli.s3 builds it (s3, opts, out, err, tty, quiet); h =
-- its helpers (fail, upload, download, local_files, is_dir, parent_ready,
-- unsafe_key, safe_relpath, dir_prefix, interrupted, human_bytes).
-- --dryrun prints "(dryrun) upload: SRC -> DST" / "(dryrun) delete: DST"
-- on stdout and changes nothing; otherwise deletions are "delete: DST"
-- lines on a terminal.  Returns true, or nil[, 2] (2: bad usage).

local s3mod = require "luabatch.s3"
local filter = require "luabatch.s3.filter"
local plan_sync = require "luabatch.s3.sync"
local many = require "luabatch.cli.s3_many"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local tostring = tostring
local str_gsub = string.gsub
local str_match = string.match

_M.usage = [==[
usage: luabatch s3 sync SRC DST [options]

Makes DST like SRC: DIR -> s3://B/PREFIX/ or s3://B/PREFIX/ -> DIR.  A file
is sent when DST lacks it, when the sizes differ, or when SRC's copy is
newer (mtime against LastModified); a download takes LastModified as its
mtime, so a second sync of an unchanged tree sends nothing.

options:
  --exclude PATTERN      leave out the paths (relative to SRC) matching the
                         glob (* ? [...]; * crosses "/"; repeatable)
  --include PATTERN      take them after all; all paths are taken at first,
                         and the last --exclude/--include that matches decides
  --delete               delete DST files SRC lacks (excluded ones stay)
  --dry-run, --dryrun    print what would be done, change nothing
  -q, --quiet            no progress line and no summary lines
  --concurrency N        files of up to 16 MiB in flight (default 32), and
                         the parts in flight of a bigger one (adaptive)
  -h, --help             this text

The other options of `luabatch s3 --help` (--part-size, --content-type,
--metadata, --unsigned-payload, --region, --endpoint-url, ...) apply as
for cp.
]==]


-- "s3://b/k" for messages.
local function url(bucket, key) return "s3://" .. bucket .. "/" .. key end


-- The S3 side's files under prefix -> files | nil after reporting.
local function s3_side(ctx, h, bucket, prefix)
  local entries, msg = ctx.s3:list_all(bucket, { prefix = prefix })
  if not entries then return h.fail(ctx, msg) end
  return plan_sync.s3_files(entries, prefix)
end


-- The local side -> files | nil after reporting (a missing dir is empty
-- when it is DST).
local function local_side(ctx, h, dir, is_dst)
  if not h.is_dir(dir) then
    if is_dst then return {} end
    return nil
  end
  local files, werr = h.local_files(dir)
  if not files then return h.fail(ctx, werr) end
  return files
end


-- What the plan would do, on stdout.
local function dry_run(ctx, plan, src_name, dst_name, direction)
  for _, t in ipairs(plan.transfer) do
    ctx.out("(dryrun) " .. direction .. ": " .. src_name(t) .. " -> " .. dst_name(t) .. "\n")
  end
  for _, d in ipairs(plan.delete) do ctx.out("(dryrun) delete: " .. dst_name(d) .. "\n") end
  return true
end


local function say_deleted(ctx, name)
  if ctx.tty and not ctx.quiet then ctx.err("delete: " .. name .. "\n") end
end


local function upload_sync(ctx, h, dir, bucket, prefix)
  local src = local_side(ctx, h, dir, false)
  if not src then return h.fail(ctx, "sync: " .. dir .. " is not a directory"), 2 end
  local dst = s3_side(ctx, h, bucket, prefix)
  if not dst then return nil end
  local o = ctx.opts
  local plan = plan_sync.plan(src, dst, { filter = filter.new(o.filters), delete = o.delete })
  local function local_name(f) return dir .. "/" .. f.rel end
  local function s3_name(f) return url(bucket, prefix .. f.rel) end
  if o.dry_run then return dry_run(ctx, plan, local_name, s3_name, "upload") end
  local items = {}
  for _, t in ipairs(plan.transfer) do
    items[#items + 1] = { file = local_name(t), key = prefix .. t.rel, size = t.size }
  end
  if not many.run_all(ctx, "upload", bucket, items, h.human_bytes,
      function(it) return h.upload(ctx, it.file, bucket, it.key) end) then
    return nil
  end
  if #plan.delete == 0 then return true end
  local keys = {}
  for _, d in ipairs(plan.delete) do keys[#keys + 1] = d.key end
  local n, errs = ctx.s3:delete_keys(bucket, keys)
  if not n then return h.fail(ctx, errs) end
  local refused = {}
  for _, e in ipairs(errs) do
    refused[e.key] = true
    h.fail(ctx, "DeleteObjects " .. url(bucket, tostring(e.key)) .. ": " .. tostring(e.code) .. ": "
      .. tostring(e.message))
  end
  for _, k in ipairs(keys) do
    if not refused[k] then say_deleted(ctx, url(bucket, k)) end
  end
  return true
end


local function download_sync(ctx, h, bucket, prefix, dir)
  local src = s3_side(ctx, h, bucket, prefix)
  if not src then return nil end
  local dst = local_side(ctx, h, dir, true)
  if not dst then return nil end
  local o = ctx.opts
  local plan = plan_sync.plan(src, dst, { filter = filter.new(o.filters), delete = o.delete })
  local function local_name(f) return dir .. "/" .. f.rel end
  local function s3_name(f) return url(bucket, f.key) end
  if o.dry_run then return dry_run(ctx, plan, s3_name, local_name, "download") end
  local items, dirs = {}, {}
  for _, t in ipairs(plan.transfer) do
    local path = local_name(t)
    if not h.safe_relpath(t.rel) then
      h.unsafe_key(ctx, bucket, t.key)
    elseif h.parent_ready(ctx, dirs, bucket, t.key, path) then
      items[#items + 1] = { file = path, key = t.key, size = t.size, mtime = t.mtime }
    end
  end
  if not many.run_all(ctx, "download", bucket, items, h.human_bytes,
      function(it) return h.download(ctx, bucket, it.key, it.file) end) then
    return nil
  end
  local core = require "luabatch.core"
  for _, it in ipairs(items) do
    if it.ok and it.mtime then
      local ok, msg = core.utime(it.file, it.mtime)
      if not ok then h.fail(ctx, "download " .. url(bucket, it.key) .. ": " .. msg) end
    end
  end
  for _, d in ipairs(plan.delete) do
    if h.interrupted() then return h.fail(ctx, "interrupted") end
    local path = local_name(d)
    local ok, msg = os.remove(path)
    if ok then say_deleted(ctx, path) else h.fail(ctx, "delete " .. path .. ": " .. tostring(msg)) end
  end
  return true
end


--- run(ctx, h) -> true | nil[, 2]
function _M.run(ctx, h)
  local src, dst = ctx.opts.pos[1], ctx.opts.pos[2]
  local sb, sk = s3mod.parse_url(src)
  local db, dk = s3mod.parse_url(dst)
  for _, u in ipairs({ { sb, sk, src }, { db, dk, dst } }) do   -- an s3:// URL with a bad bucket
    if not u[1] and str_match(u[3], "^[Ss]3://") then return h.fail(ctx, u[2]), 2 end
  end
  if src == "-" or dst == "-" then return h.fail(ctx, "sync cannot use stdin or stdout"), 2 end
  if not sb and not db then
    return h.fail(ctx, "one of SRC and DST must be an s3:// URL (both are local: " .. src .. ", " .. dst .. ")"), 2
  end
  if sb and db then
    return h.fail(ctx, "s3:// to s3:// is not supported yet (use cp -r for a server-side copy)"), 2
  end
  if db then
    return upload_sync(ctx, h, (str_gsub(src, "/+$", "")), db, h.dir_prefix(dk))
  end
  local root = str_gsub(dst, "/+$", "")
  local st = require("luabatch.core").stat(root, true)
  if st and st.type ~= "directory" then return h.fail(ctx, "sync: " .. dst .. " is not a directory"), 2 end
  return download_sync(ctx, h, sb, h.dir_prefix(sk), root)
end


return _M
