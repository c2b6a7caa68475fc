-- luabatch.cli.s3_uploads: `luabatch s3 abort-uploads s3://B[/PREFIX]
-- [--local DIR] [--older-than AGE] [--dry-run]` -- what an interrupted
-- transfer can leave behind, listed and removed:
--   * incomplete multipart uploads under PREFIX (a client SIGKILLed
--     mid-upload), aborted: "aborted s3://B/KEY (upload ID, initiated T)";
--   * with --local DIR, download temporaries under DIR (<dest>.lbpart-<hex>,
--     a client SIGKILLed mid-download), removed: "removed PATH".
-- --older-than AGE (Nd, Nh, Nm) spares younger ones (a transfer still
-- running elsewhere); --dry-run prints "would abort"/"would remove" only.
--
--   local ok, code = require("luabatch.cli.s3_uploads").run(ctx, fail)
--
-- ctx as luabatch.cli.s3 builds it (s3, opts, out); fail(ctx, msg) reports
-- one failure.  Returns true, or nil[, 2] (2: bad usage).

local s3mod = require "luabatch.s3"
local uploads = require "luabatch.s3.uploads"
local aws_time = require "luabatch.aws.time"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local tostring = tostring
local str_format = string.format

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Download temporaries under dir -> list of paths (sorted) | nil, msg.
local function temporaries(dir)
  local core = require "luabatch.core"
  local st = core.stat(dir)
  if not st or st.type ~= "directory" then return nil, "--local " .. dir .. ": not a directory" end
  local base = dir:sub(1, 1) == "-" and ("./" .. dir) or dir
  local p = io.popen("find " .. shell_quote(base) .. " -type f -name '*.lbpart-*' -print0 2>/dev/null")
  if not p then return nil, "--local " .. dir .. ": cannot list it" end
  local text = p:read("a")
  p:close()
  local out = {}
  for f in text:gmatch("([^%z]+)%z") do
    if f:match("%.lbpart%-%x+$") then out[#out + 1] = f end
  end
  table.sort(out)
  return out
end

local function old_enough(epoch, min_age, now)
  return not min_age or (epoch and now - epoch >= min_age)
end

local function abort_uploads(ctx, fail, bucket, prefix, min_age, now)
  local list, msg = uploads.list(ctx.s3, bucket, prefix)
  if not list then return fail(ctx, msg) end
  local dry = ctx.opts.dry_run
  for _, u in ipairs(list) do
    if old_enough(aws_time.parse_iso8601(u.initiated), min_age, now) then
      local line = str_format("s3://%s/%s (upload %s, initiated %s)\n", bucket, tostring(u.key),
        tostring(u.upload_id), tostring(u.initiated))
      if dry then
        ctx.out("would abort " .. line)
      else
        local ok, amsg = uploads.abort(ctx.s3, bucket, u.key, u.upload_id)
        if ok then ctx.out("aborted " .. line) else fail(ctx, amsg) end
      end
    end
  end
  return true
end

local function remove_temporaries(ctx, fail, dir, min_age, now)
  local files, msg = temporaries(dir)
  if not files then return fail(ctx, msg), 2 end
  local core = require "luabatch.core"
  for _, f in ipairs(files) do
    local st = core.stat(f)
    if st and old_enough(st.mtime, min_age, now) then
      if ctx.opts.dry_run then
        ctx.out("would remove " .. f .. "\n")
      else
        local ok, rmsg = os.remove(f)
        if ok then ctx.out("removed " .. f .. "\n") else fail(ctx, "remove " .. f .. ": " .. tostring(rmsg)) end
      end
    end
  end
  return true
end

function _M.run(ctx, fail)
  local bucket, prefix = s3mod.parse_url(ctx.opts.pos[1])
  if not bucket then return fail(ctx, prefix), 2 end
  local min_age
  if ctx.opts.older_than then
    min_age = require("luabatch.cli.cleanup").parse_age(ctx.opts.older_than)
    if not min_age then
      return fail(ctx, "--older-than wants Nd, Nh or Nm (at most 36500d), got '" .. ctx.opts.older_than .. "'"), 2
    end
  end
  local now = os.time()
  if ctx.opts.local_dir then
    local ok, code = remove_temporaries(ctx, fail, ctx.opts.local_dir, min_age, now)
    if not ok then return nil, code end
  end
  return abort_uploads(ctx, fail, bucket, prefix, min_age, now)
end

return _M
