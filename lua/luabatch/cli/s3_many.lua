-- luabatch.cli.s3_many: the small objects of `luabatch s3 cp -r`, many at
-- once (s3:transfer_many: --concurrency objects in flight over kept-alive
-- connections), with one `N of M files, bytes, rate` line on a terminal;
-- also `s3 sync`'s transfers.
--
--   local ok = require("luabatch.cli.s3_many").run(ctx, "upload", bucket,
--     { { file = "d/a.txt", key = "p/a.txt", size = 12 }, ... }, human_bytes)
--   ok = many.run_all(ctx, "upload", bucket, items, human_bytes, one)   -- big ones through one(item)
--
-- ctx is luabatch.cli.s3's (s3, opts, err, tty, quiet, failed, command).
-- Each object that fails is one error line on stderr (ctx.failed counts
-- it); the rest go on.  Returns false when the batch itself stopped
-- (Ctrl-C: the message is printed), else true.

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local tostring = tostring
local str_format = string.format

_M.BIG = 16 * 1024 * 1024     -- larger objects go one at a time (their parts in parallel)
_M.BATCH = 1000               -- objects per batch (a listing page)
-- Small objects in flight by default: each costs a round trip or two and
-- little bandwidth, so latency (not the link) bounds them.
_M.WORKERS = 32


local function say_fail(ctx, msg)
  ctx.err("luabatch s3 " .. ctx.command .. ": " .. tostring(msg) .. "\n")
  ctx.failed = ctx.failed + 1
end


--- run_all(ctx, direction, bucket, items, human_bytes, one) -> true | false
-- (stopped): items larger than BIG (or of unknown size) one at a time
-- through one(item) -> true | nil (it reports its own failure), the rest
-- BATCH at a time through run.  Each item gets ok = true | false.
function _M.run_all(ctx, direction, bucket, items, human_bytes, one)
  local core = require "luabatch.core"
  local small = {}
  for _, it in ipairs(items) do
    if (it.size or _M.BIG + 1) > _M.BIG then
      if core.interrupted and core.interrupted() then
        say_fail(ctx, "interrupted")
        return false
      end
      it.ok = one(it) and true or false
    else
      small[#small + 1] = it
    end
  end
  for i = 1, #small, _M.BATCH do
    local part = {}
    for j = i, math.min(#small, i + _M.BATCH - 1) do part[#part + 1] = small[j] end
    if not _M.run(ctx, direction, bucket, part, human_bytes) then return false end
    for _, it in ipairs(part) do it.ok = it.result ~= nil and it.result.ok ~= false end
  end
  return true
end


--- run(ctx, direction, bucket, items, human_bytes) -> true | false (stopped).
function _M.run(ctx, direction, bucket, items, human_bytes)
  if #items == 0 then return true end
  local core = require "luabatch.core"
  local show = ctx.tty and not ctx.quiet
  local total = 0
  for _, it in ipairs(items) do total = total + (it.size or 0) end
  local t0, last, moved = core.monotime(), -1, 0
  local function progress(bytes, finished, n)
    moved = bytes
    local now = core.monotime()
    if show and (now - last >= 0.1 or finished >= n) then
      last = now
      local dt = now - t0
      ctx.err(str_format("\r%d of %d files, %s of %s, %s/s\27[K", finished, n, human_bytes(bytes),
        human_bytes(total), human_bytes(dt > 0 and bytes / dt or 0)))
    end
    return true
  end
  local o = ctx.opts
  local results, msg = ctx.s3:transfer_many(direction, bucket, items, {
    workers = o.concurrency or _M.WORKERS, content_type = o.content_type, metadata = o.metadata,
    part_size = o.part_size, unsigned_payload = o.unsigned_payload, on_progress = progress })
  if show then ctx.err("\r\27[K") end
  if not results then
    say_fail(ctx, msg)
    return false
  end
  local ok = 0
  for i, r in ipairs(results) do
    if r.ok == false then say_fail(ctx, r.err) else ok = ok + 1 end
    items[i].result = r
  end
  if show then
    local dt = core.monotime() - t0
    ctx.err(str_format("%s: %d of %d files (%s, %s/s)\n", direction, ok, #items, human_bytes(moved),
      human_bytes(dt > 0 and moved / dt or 0)))
  end
  return true
end


return _M
