-- luabatch.cli.cleanup: `luabatch cleanup RUN_ID | --older-than AGE [--purge] [--dry-run] [--force] [--home DIR]`
--
--   local code = require("luabatch.cli.cleanup").run({ "--older-than", "7d" }, env)
--
-- Deletes what a run left behind: its Batch jobs still queued or running
-- (TerminateJob, journaled as "terminate" events; job definitions are
-- shared by content between runs and stay) and its S3 prefix (the bucket
-- and prefix recorded in the journal's "config" events; everything under
-- "<prefix>/" and nothing else).  The journal stays, with a "cleanup" event
-- { scope = "run", deleted, terminated, prefixes }, so `luabatch runs` and
-- `status` still show the run, marked cleaned; --purge removes the journal
-- directory too.  A prefix that is not the run's own (it must end with
-- "/<run_id>") is refused and the run is kept.  --older-than AGE (Nd, Nh or
-- Nm) picks every run whose journal was last written longer ago than AGE
-- (an ended run, or one nobody touched since) and not cleaned yet (with
-- --purge: cleaned ones too).  A single RUN_ID that has not ended is
-- refused without --force (it may still be running: `luabatch cancel` it
-- first).  --dry-run prints what would be done and does nothing.
--
-- Exit codes: 0 cleaned (or nothing to clean), 1 something could not be
-- deleted or was refused, 2 bad usage or unknown run.
--
-- env: as luabatch.cli.store, plus now = function() -> epoch seconds.

local args = require "luabatch.cli.args"
local journal = require "luabatch.journal"
local store = require "luabatch.cli.store"
local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local str_format = string.format
local str_match = string.match
local os_time = os.time

_M.usage = [==[
usage: luabatch cleanup RUN_ID [--purge] [--dry-run] [--force] [--home DIR]
       luabatch cleanup --older-than AGE [--purge] [--dry-run] [--home DIR]

Delete what a run left behind: its S3 prefix (<s3_prefix>/<run_id>/, as
recorded in its journal; nothing outside it) and its Batch jobs still
queued or running (terminated).  The journal is kept and records the
cleanup: `luabatch runs` and `luabatch status` still show the run, marked
cleaned.

options:
  --purge           remove the run's journal too (the run is forgotten)
  --older-than AGE  every run not cleaned yet (with --purge: every run)
                    whose journal was last written more than AGE ago:
                    Nd (days), Nh (hours) or Nm (minutes)
  --dry-run         print what would be done, do nothing
  --force           clean RUN_ID even though its run has not ended
  --home DIR        the journal home (default LUABATCH_HOME, else ~/.luabatch)
  -h, --help        this text

Exit codes: 0 cleaned, 1 something failed or was refused, 2 bad usage or
unknown run.
]==]

local UNITS = { d = 86400, h = 3600, m = 60 }
_M.MAX_AGE = 36500 * 86400     -- 36500d: an age past a century is a typo

--- parse_age("7d") -> seconds | nil (not Nd/Nh/Nm, or over MAX_AGE)
function _M.parse_age(s)
  local n, u = str_match(s or "", "^(%d+)([dhm])$")
  if not n then return nil end
  n = tonumber(n) * UNITS[u]
  if n > _M.MAX_AGE then return nil end
  return n
end

-- Terminate the run's Batch jobs that are still queued or running -> n | nil
local function terminate_leftovers(j, st, ops, clients_for, o, out, err)
  local n, failed = ops.terminate_unfinished(st, clients_for, {
    reason = "luabatch: cleanup of run " .. j.run_id, journal = j, dry_run = o.dry_run, strict = true,
    on_job = function(key, id, was, dry)
      out(str_format(dry and "would terminate %s (%s, %s)\n" or "terminated %s (%s, was %s)\n", key, id, was))
    end,
    on_error = function(msg) err("luabatch cleanup: " .. msg .. "\n") end })
  if not n then err("luabatch cleanup: run " .. j.run_id .. ": " .. failed .. "\n") end
  if not n or failed > 0 then return nil end
  return n
end

-- Clean one run; returns true when everything went.
local function clean_run(run_id, home, o, env, out, err)
  local j, st = store.open_run("cleanup", run_id, home, err)
  if not j then return false end
  local ops = store.ops(st)
  local pre = ops.prefixes(st)
  for _, p in ipairs(pre) do
    local trimmed = p.prefix:gsub("/+$", "")
    if not ops.own_prefix(trimmed, run_id) then
      err(str_format("luabatch cleanup: run %s: refusing to delete s3://%s/%s/: not the run's own "
        .. "prefix (it must end with /%s); nothing deleted for this run\n", run_id, p.bucket, p.prefix, run_id))
      return false
    end
    p.prefix = trimmed
  end
  local clients_for = ops.clients_for(st, env)
  local ok = true
  local terminated = terminate_leftovers(j, st, ops, clients_for, o, out, err)
  if not terminated then ok = false end
  local deleted, where_list = 0, {}
  for _, p in ipairs(pre) do
    local c = clients_for(p.job_id)
    local where = str_format("s3://%s/%s/", p.bucket, p.prefix)
    if o.dry_run then
      local n = 0
      for e, msg in c.s3:list(p.bucket, { prefix = p.prefix .. "/" }) do
        if not e then
          err("luabatch cleanup: " .. log.redact(msg) .. "\n")
          ok = false
          break
        end
        n = n + 1
      end
      out(str_format("would delete %d objects under %s\n", n, where))
    else
      local n, errs, code = c.s3:delete_prefix(p.bucket, p.prefix .. "/")
      if not n then
        err(str_format("luabatch cleanup: %s: %s\n", where, log.redact(errs or code)))
        ok = false
      else
        out(str_format("deleted %d objects under %s\n", n, where))
        deleted = deleted + n
        where_list[#where_list + 1] = where
        if #errs > 0 then
          err(str_format("luabatch cleanup: %s: %d objects not deleted (first: %s %s)\n", where, #errs,
            tostring(errs[1].key), tostring(errs[1].code)))
          ok = false
        end
      end
    end
  end
  if not ok then
    err(str_format("luabatch cleanup: run %s: journal kept (S3 not cleaned)\n", run_id))
    return false
  end
  local dir = j.dir
  if o.dry_run then
    out(str_format(o.purge and "would remove journal %s\n" or "would keep journal %s (marked cleaned)\n", dir))
    return true
  end
  if not o.purge then
    local aok, amsg = j:append({ ev = "cleanup", scope = "run", deleted = deleted, terminated = terminated,
      prefixes = where_list })
    if not aok then
      err(str_format("luabatch cleanup: run %s: cleaned, but the journal could not record it: %s\n", run_id,
        tostring(amsg)))
      return false
    end
    out(str_format("kept journal %s (marked cleaned; --purge removes it)\n", dir))
    return true
  end
  local rok, rmsg = j:remove()
  if not rok then
    err(str_format("luabatch cleanup: cannot remove %s: %s\n", dir, tostring(rmsg)))
    return false
  end
  out(str_format("removed journal %s\n", dir))
  return true
end

function _M.run(argv, env)
  env = env or {}
  local out, err = store.io(env)
  local o, pos = args.parse(argv, { ["--older-than"] = "value", ["--dry-run"] = "flag",
    ["--force"] = "flag", ["--purge"] = "flag", ["--home"] = "value" })
  if not o then
    err("luabatch cleanup: " .. pos .. "\n" .. _M.usage)
    return 2
  end
  if o.help then out(_M.usage) return 0 end
  if (#pos == 1) == (o.older_than ~= nil) or #pos > 1 then
    err("luabatch cleanup: give either one RUN_ID or --older-than AGE\n" .. _M.usage)
    return 2
  end
  local home = store.home(o, env)

  if #pos == 1 then
    local run_id = pos[1]
    local j, st = store.open_run("cleanup", run_id, home, err)
    if not j then return st end
    if not st.ended and not o.force then
      err(str_format("luabatch cleanup: run %s has not ended (it may still be running): "
        .. "`luabatch cancel %s` first, or use --force\n", run_id, run_id))
      return 1
    end
    return clean_run(run_id, home, o, env, out, err) and 0 or 1
  end

  local age = _M.parse_age(o.older_than)
  if not age then
    err("luabatch cleanup: --older-than: Nd, Nh or Nm (at most 36500d) expected, got '" .. tostring(o.older_than) .. "'\n")
    return 2
  end
  local now = env.now and env.now() or os_time()
  local cutoff = now - age
  local rc, n = 0, 0
  for _, r in ipairs(journal.list(home)) do
    if r.mtime < cutoff and (o.purge or not r.cleaned) then
      n = n + 1
      if not clean_run(r.run_id, home, o, env, out, err) then rc = 1 end
    end
  end
  if n == 0 then out(str_format("no run older than %s in %s\n", o.older_than, home)) end
  return rc
end

return _M
