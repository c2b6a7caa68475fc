-- luabatch.s3.batch: many objects up or down at once through core.s3_batch
-- (worker threads, each running whole transfers one after another on its
-- own kept-alive connections; every transfer keeps its guarantees: retries,
-- verification, temp + rename, abort).  Objects refused for an expired
-- token or a skewed clock run once more together, after a credential
-- refresh or a clock probe, and uploads refused as aws-chunked once more
-- unsigned (the single-object path does the same).
--
--   local results = batch.run(f, t, items, hooks)   -- from s3:transfer_many
--   items = { { file = path, key = key, size = bytes|nil }, ... }
--   results[i] = res (as upload_file / download_file, etag unquoted)
--              | { ok = false, err = msg, code = code }
-- or nil, msg, code when the batch could not start or was stopped (Ctrl-C,
-- on_progress returned false).

local SKEW_CODES = require("luabatch.retry").SKEW_CODES
local transfer = require "luabatch.s3.transfer"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local str_gsub = string.gsub

local EXPIRED = { ExpiredToken = true, ExpiredTokenException = true, TokenRefreshRequired = true }


local function unquote(etag)
  return etag and (str_gsub(etag, '^"(.*)"$', "%1")) or nil
end


--- run(f, t, items, hooks) -> results | nil, msg, code.  f = core.s3_batch,
-- t = its options (direction, workers, ...), hooks as luabatch.s3.transfer.run's.
function _M.run(f, t, items, hooks)
  if #items == 0 then return {} end
  t.key = items[1].key
  t.time_offset = hooks.offset()
  local results, msg, code = f(t, items)
  if not results then return nil, msg, code end
  local again, idx, expired, skewed, unchunk = {}, {}, false, false, false
  for i, r in ipairs(results) do
    if r.ok == false and (EXPIRED[r.code] or SKEW_CODES[r.code] or r.code == "HTTP_403") then
      again[#again + 1], idx[#idx + 1] = items[i], i
      expired = expired or EXPIRED[r.code] or false
      skewed = skewed or not EXPIRED[r.code]
    elseif r.ok == false and transfer.CHUNKED_REFUSED[r.code] and (unchunk or
        transfer.unchunked(t, r.code, items[i].key)) then
      again[#again + 1], idx[#idx + 1], unchunk = items[i], i, true
    end
  end
  if #again > 0 then
    local rerun = unchunk
    if expired then
      local c = hooks.refresh()
      if c then
        t.access_key, t.secret_key, t.session_token = c.access_key, c.secret_key, c.session_token
        rerun = true
      end
    end
    if skewed then
      hooks.probe()
      local off = hooks.offset()
      if off ~= t.time_offset then t.time_offset, rerun = off, true end
    end
    local second = rerun and f(t, again)
    if second then
      for j, i in ipairs(idx) do results[i] = second[j] end
    end
  end
  for _, r in ipairs(results) do
    if r.ok ~= false then r.etag = unquote(r.etag) end
  end
  return results
end


return _M
