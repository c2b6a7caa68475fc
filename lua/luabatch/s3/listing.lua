-- luabatch.s3.listing: the paging of ListObjectsV2 and the batching of
-- DeleteObjects, apart from the I/O (the client hands in the functions that
-- fetch a page and delete a batch).
--
--   local listing = require "luabatch.s3.listing"
--   local query = listing.query({ prefix = "p/", page_size = 100 })   -- ListObjectsV2's
--   local page, msg, code = listing.page(root, "s3://b/p/")           -- the parsed answer
--   for e, msg, code in listing.iterate(fetch_page, { prefix = "p/" }) do ... end
--   local entries, msg, code = listing.collect(iter)
--   local size = listing.batch_size(opts.batch_size)                  -- <= 1000
--   local deleted, errors = listing.delete_all(iter, size, { batch = send_body, one = delete_key },
--     on_batch)
--
-- fetch_page(popts) -> page | nil, msg, code, where popts is the caller's
-- prefix, delimiter, start_after, page_size plus token (the continuation
-- token of the page before).  iterate yields each page's entries, then its
-- common prefixes as { prefix = "dir/" }; a failure is yielded once as
-- false, msg, code and ends the iteration.  delete_all sends each batch as
-- a DeleteObjects body, send_body(xml) -> per-key errors { { key, code,
-- message }, ... } | nil, msg, code; a batch holding a key XML cannot carry
-- goes key by key, delete_key(key) -> true | nil, msg, code.  It returns
-- the deleted count and every per-key error, or the first nil, msg, code
-- of the listing or of a request.

local log = require "luabatch.log"
local wire = require "luabatch.s3.wire"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local tostring = tostring
local floor = math.floor

local DELETE_BATCH = 1000           -- DeleteObjects limit


--- The ListObjectsV2 query for opts (prefix, delimiter, start_after,
-- page_size = max-keys, token = continuation token; start_after is left
-- out once there is a token).  Keys come back url-encoded (decoded by
-- wire.parse_list).
function _M.query(opts)
  return {
    ["list-type"] = "2",
    ["encoding-type"] = "url",
    prefix = opts.prefix ~= "" and opts.prefix or nil,
    delimiter = opts.delimiter ~= "" and opts.delimiter or nil,
    ["start-after"] = (not opts.token and opts.start_after ~= "") and opts.start_after or nil,
    ["continuation-token"] = opts.token,
    ["max-keys"] = opts.page_size and tostring(floor(opts.page_size)) or nil,
  }
end


--- page(root, res) -> page (as wire.parse_list) | nil, msg, "EPARSE" for a
-- truncated answer without a continuation token (res names the listing).
function _M.page(root, res)
  local page = wire.parse_list(root)
  if page.truncated and not page.next_token then
    return nil, "ListObjectsV2 " .. res .. ": truncated answer without NextContinuationToken", "EPARSE"
  end
  return page
end


--- iterate(fetch_page, opts) -> iterator over every page fetch_page gives,
-- following the continuation tokens.
function _M.iterate(fetch_page, opts)
  local popts = { prefix = opts.prefix, delimiter = opts.delimiter,
    start_after = opts.start_after, page_size = opts.page_size }
  local buf, i = {}, 0
  local done = false
  return function()
    while true do
      i = i + 1
      if buf[i] ~= nil then return buf[i] end
      if done then return nil end
      local page, msg, code = fetch_page(popts)
      if not page then
        done = true
        return false, msg, code
      end
      buf, i = page.entries, 0
      for _, p in ipairs(page.prefixes) do buf[#buf + 1] = { prefix = p } end
      if page.truncated then
        popts.token = page.next_token
      else
        done = true
      end
    end
  end
end


--- The DeleteObjects batch size for a requested one (default and at most 1000).
function _M.batch_size(n)
  if not n or n > DELETE_BATCH then return DELETE_BATCH end
  return n
end


--- collect(iter) -> entries | nil, msg, code: what iterate's iterator
-- yields, up to its failure.
function _M.collect(iter)
  local out = {}
  for e, msg, code in iter do
    if not e then return nil, msg, code end
    out[#out + 1] = e
  end
  return out
end


-- One batch of keys: deleted count, per-key errors | nil, msg, code.
-- A key XML cannot carry sends the batch key by key instead.
local function delete_batch(keys, ops)
  local body, bad = wire.delete_body(keys)
  if not body then
    local n, errs = 0, {}
    for _, k in ipairs(keys) do
      local ok, msg, code = ops.one(k)
      if ok then n = n + 1
      else errs[#errs + 1] = { key = k, code = code, message = msg } end
    end
    log.debug("s3: key %q cannot be sent in XML; deleted %d keys one by one", bad, #keys)
    return n, errs
  end
  local errs, msg, code = ops.batch(body)
  if not errs then return nil, msg, code end
  return #keys - #errs, errs
end


--- delete_all(iter, size, ops [, on_batch]) -> deleted, errors | nil, msg,
-- code: the keys of iter's entries deleted size at a time;
-- on_batch(deleted_so_far) after each batch.
function _M.delete_all(iter, size, ops, on_batch)
  local deleted, errors = 0, {}
  local keys = {}
  local function flush()
    if #keys == 0 then return true end
    local n, errs, code = delete_batch(keys, ops)
    if not n then return nil, errs, code end
    deleted = deleted + n
    for _, e in ipairs(errs) do errors[#errors + 1] = e end
    keys = {}
    if on_batch then on_batch(deleted) end
    return true
  end
  for e, msg, code in iter do
    if not e then return nil, msg, code end
    keys[#keys + 1] = e.key
    if #keys >= size then
      local ok, m, c = flush()
      if not ok then return nil, m, c end
    end
  end
  local ok, m, c = flush()
  if not ok then return nil, m, c end
  return deleted, errors
end


return _M
