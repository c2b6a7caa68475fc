-- luabatch.cli.s3: `luabatch s3 cp|sync|ls|rm|mb|presign|abort-uploads` -- S3 from the shell.
--
--   local code = require("luabatch.cli.s3").run({ "cp", "data.bin", "s3://bucket/dir/" }, env)
--
-- env (all optional) is the seam for tests:
--   stdout, stderr  a function(s) or anything with :write(s) (default io.stdout / io.stderr)
--   isatty          function(fd) -> bool (default: luabatch.lineedit.isatty if
--                   that module exists, else never a terminal)
--   client          an luabatch.s3 client (default: s3.new from the options and
--                   the usual AWS_* environment)
--   stdin           file handle for "cp - s3://…" (default io.stdin)
--
-- A progress bar (bytes, rate, ETA) is drawn on stderr when stderr is a
-- terminal, with a one-line summary per transfer; otherwise the command is
-- quiet except for errors.  Errors go to stderr and name the operation and
-- target.  Exit codes: 0 success, 1 failure (any object that failed), 2 bad usage.

local s3mod = require "luabatch.s3"
local filter = require "luabatch.s3.filter"
local many = require "luabatch.cli.s3_many"

local _M = { _VERSION = "0.1.0" }

local type = type
local ipairs = ipairs
local pcall = pcall
local require = require
local tonumber = tonumber
local tostring = tostring
local str_format = string.format
local str_match = string.match
local str_sub = string.sub
local str_gsub = string.gsub
local str_rep = string.rep
local floor = math.floor

local MAX_EXPIRES = 604800
local MAX_PART = 5 * 1024 * 1024 * 1024     -- S3's largest part (smaller than 5 MiB is raised)

_M.usage = [==[
usage: luabatch s3 COMMAND [options] ARGS

commands:
  cp SRC DST             copy FILE -> s3://B/KEY, s3://B/KEY -> FILE, or
                         s3://B/KEY -> s3://B/KEY (server-side).  A DST ending
                         in "/" (or an existing directory) gets the source's
                         base name.  SRC "-" reads stdin, DST "-" writes stdout.
                         -r: copy a directory or a prefix (DIR/ <-> s3://B/P/)
  sync SRC DST           make DST (s3://B/P/ or DIR/) like SRC (DIR/ or
                         s3://B/P/): send the files it lacks, or that differ
                         in size, or that are newer at SRC
  ls [s3://B[/PREFIX]]   list buckets, or the objects and PRE "directories"
                         under PREFIX; -r lists every key under PREFIX
  rm s3://B/KEY          delete an object; -r deletes every key under the
                         prefix KEY/ (in batches of 1,000)
  mb s3://B              create a bucket (in --region)
  presign s3://B/KEY     print a presigned URL
  abort-uploads s3://B[/PREFIX]
                         abort the incomplete multipart uploads under PREFIX
                         (an upload killed midway leaves one); --local DIR
                         also removes download temporaries (*.lbpart-*)

options:
  -r, --recursive        directories and prefixes (cp, ls, rm)
  --exclude PATTERN      cp -r, sync: leave out the paths (relative to SRC)
                         matching the glob (* ? [...]; repeatable)
  --include PATTERN      cp -r, sync: take them after all; the last
                         --exclude/--include that matches a path decides
  --delete               sync: delete DST files SRC lacks (not excluded ones)
  -q, --quiet            no progress bar and no summary lines
  --content-type TYPE    Content-Type of uploaded objects
  --metadata NAME=VALUE  user metadata of uploaded objects (repeatable)
  --unsigned-payload     upload file bodies as they are (UNSIGNED-PAYLOAD):
                         no SHA-256, nothing checked on the way but TLS;
                         still read once and tagged lb-crc32c
  --part-size N          multipart part size in bytes (suffix K, M, G)
  --concurrency N        parts in flight at once (default: 8, raised by 4
                         while the rate grows 10%, up to 32); with -r and
                         sync also the files of up to 16 MiB in flight
                         (default 32)
  --expires N            presign: seconds the URL is valid (1..604800, default 3600)
  --method M             presign: GET (default) or PUT
  --local DIR            abort-uploads: also remove DIR's *.lbpart-* files
  --older-than AGE       abort-uploads: only those older than AGE (Nd, Nh, Nm)
  --dry-run, --dryrun    sync, abort-uploads: print what would be done,
                         change nothing
  --region NAME          region (default: AWS_REGION, profile, us-east-1)
  --endpoint-url URL     S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS)
  --addressing STYLE     auto (default), path or virtual
  -h, --help             this text

Credentials come from the luabatch credential chain (environment, profile,
container or instance role).  Exit codes: 0 success, 1 failure, 2 bad usage.
]==]



---------------------------------------------------------------------------
-- Formatting
---------------------------------------------------------------------------

local UNITS = { "B", "KiB", "MiB", "GiB", "TiB" }

--- "1.5 MiB" for a byte count.
function _M.human_bytes(n)
  local u = 1
  while n >= 1024 and u < #UNITS do
    n = n / 1024
    u = u + 1
  end
  if u == 1 then return str_format("%d B", floor(n)) end
  return str_format("%.1f %s", n, UNITS[u])
end
local human_bytes = _M.human_bytes


--- "1:05" / "1:02:03" for seconds; "--:--" when unknown.
function _M.human_duration(s)
  if not s or s ~= s or s < 0 or s == math.huge then return "--:--" end
  s = floor(s + 0.5)
  local h, m = floor(s / 3600), floor(s % 3600 / 60)
  if h > 0 then return str_format("%d:%02d:%02d", h, m, s % 60) end
  return str_format("%d:%02d", m, s % 60)
end


--- The progress line: progress_line(label, done, total, elapsed, width) -> string.
function _M.progress_line(label, done, total, elapsed, width)
  width = width or 80
  local rate = elapsed > 0 and done / elapsed or 0
  local eta = (rate > 0 and total and total > 0) and (total - done) / rate or nil
  local pct = (total and total > 0) and done / total or nil
  local stats = str_format(" %s / %s %s/s ETA %s", human_bytes(done),
    total and human_bytes(total) or "?", human_bytes(rate), _M.human_duration(eta))
  local bar = ""
  if pct then
    local bw = 20
    local fill = floor(pct * bw + 0.5)
    if fill > bw then fill = bw end
    bar = str_format(" [%s%s] %3d%%", str_rep("#", fill), str_rep("-", bw - fill), floor(pct * 100))
  end
  local room = width - #bar - #stats - 1
  if room < 8 then room = 8 end
  if #label > room then label = "…" .. str_sub(label, #label - room + 2) end
  return label .. bar .. stats
end


-- "2024-05-01T12:00:00.000Z" -> "2024-05-01 12:00:00"
local function short_time(t)
  if not t then return str_rep(" ", 19) end
  local d, h = str_match(t, "^(%d+%-%d+%-%d+)T(%d+:%d+:%d+)")
  if d then return d .. " " .. h end
  return t
end


---------------------------------------------------------------------------
-- Arguments
---------------------------------------------------------------------------

local function parse_size(v)
  local n, suf = str_match(v, "^(%d+)([KkMmGg]?)[iI]?[bB]?$")
  n = tonumber(n)
  if not n then return nil end
  local mult = ({ [""] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024 })[suf:lower()]
  return n * mult
end


local COMMAND_NAMES = { cp = true, sync = true, ls = true, rm = true, mb = true, presign = true,
  ["abort-uploads"] = true }
local function check_part_size(v)
  local n = parse_size(v)
  if not n or n < 1 or n > MAX_PART then return nil, "--part-size wants 1..5G (S3's largest part), got '" .. v .. "'" end
  return n
end

-- 1..64: the S3 core's own bound (bind_s3.c), checked here for exit 2.
local function check_concurrency(v)
  local n = tonumber(v)
  if not n or n ~= floor(n) or n < 1 or n > 64 then return nil, "--concurrency wants 1..64, got '" .. v .. "'" end
  return n
end

local function check_expires(v)
  local n = tonumber(v)
  if not n or n ~= floor(n) or n < 1 or n > MAX_EXPIRES then
    return nil, "--expires wants whole seconds in 1.." .. MAX_EXPIRES .. ", got '" .. v .. "'"
  end
  return floor(n)
end

local function check_method(v)
  local m = v:upper()
  if m ~= "GET" and m ~= "PUT" and m ~= "HEAD" and m ~= "DELETE" then
    return nil, "--method wants GET, PUT, HEAD or DELETE, got '" .. v .. "'"
  end
  return m
end

local function check_addressing(v)
  if v ~= "auto" and v ~= "path" and v ~= "virtual" then
    return nil, "--addressing wants auto, path or virtual, got '" .. v .. "'"
  end
  return v
end

local function check_metadata(v)
  if not str_match(v, "^([^=]+)=(.*)$") then return nil, "--metadata wants NAME=VALUE, got '" .. v .. "'" end
  return v
end

-- An --exclude/--include word -> { "exclude"|"include", PATTERN }: both in
-- one list (o.filters), in the order given.
local function filter_rule(v, name)
  return { str_sub(name, 3), v }
end

local SPEC = {
  ["--recursive"] = { "flag", alias = "-r" }, ["--quiet"] = { "flag", alias = "-q" },
  ["--content-type"] = "value", ["--region"] = "value", ["--endpoint-url"] = { "value", key = "endpoint" },
  ["--part-size"] = { "value", check = check_part_size }, ["--concurrency"] = { "value", check = check_concurrency },
  ["--expires"] = { "value", check = check_expires }, ["--method"] = { "value", check = check_method },
  ["--addressing"] = { "value", check = check_addressing }, ["--metadata"] = { "map", check = check_metadata },
  ["--local"] = { "value", key = "local_dir" }, ["--older-than"] = "value",
  ["--dry-run"] = { "flag", alias = "--dryrun" }, ["--delete"] = "flag", ["--unsigned-payload"] = "flag",
  ["--exclude"] = { "list", key = "filters", check = filter_rule },
  ["--include"] = { "list", key = "filters", check = filter_rule },
}

-- Parse argv -> opts | nil, msg.
function _M.parse(argv)
  local o, pos = require("luabatch.cli.args").parse(argv, SPEC)
  if not o then return nil, pos end
  o.pos = pos
  if o.help then return o end
  o.command = table.remove(o.pos, 1)
  if not o.command then return nil, "expected a command (cp, sync, ls, rm, mb, presign, abort-uploads)" end
  if not COMMAND_NAMES[o.command] then return nil, "unknown command '" .. o.command .. "'" end
  local npos = #o.pos
  local c = o.command
  if (c == "cp" or c == "sync") and npos ~= 2 then return nil, c .. " wants SRC and DST" end
  if o.filters and c ~= "sync" and not (c == "cp" and o.recursive) then
    return nil, "--exclude and --include apply to cp -r and sync only"
  end
  if o.delete and c ~= "sync" then return nil, "--delete applies to sync only" end
  if o.unsigned_payload and c ~= "cp" and c ~= "sync" then return nil, "--unsigned-payload applies to cp and sync only" end
  if o.dry_run and c ~= "sync" and c ~= "abort-uploads" then   -- never copy or delete when asked not to
    return nil, "--dry-run applies to sync and abort-uploads only"
  end
  if c == "ls" and npos > 1 then return nil, "ls wants at most one s3:// URL" end
  if (c == "rm" or c == "mb" or c == "presign" or c == "abort-uploads") and npos ~= 1 then
    return nil, c .. " wants one s3:// URL"
  end
  return o
end


---------------------------------------------------------------------------
-- Local files
---------------------------------------------------------------------------

local function shell_quote(s)
  return "'" .. str_gsub(s, "'", "'\\''") .. "'"
end


local function os_ok(a, _, c)
  return a == true or a == 0 or (a == nil and c == 0)
end


local function is_dir(path)
  return os_ok(os.execute("test -d " .. shell_quote(path)))
end


local function mkdir_p(dir)
  if dir == "" or dir == "." then return true end
  local ok, core = pcall(require, "luabatch.core")
  if ok and core.stat then                     -- no shell per directory
    local st = core.stat(dir, true)
    if st and st.type == "directory" then return true end
  end
  if os_ok(os.execute("mkdir -p " .. shell_quote(dir))) then return true end
  return nil, "cannot create directory " .. dir
end


local function basename(p)
  return str_match(p, "([^/]*)/*$") or p
end


local function dirname(p)
  return str_match(p, "^(.*)/[^/]*$") or "."
end


-- Regular files under dir -> { { rel = path relative to dir, size, mtime }, ... }
-- sorted by rel (size and mtime nil when stat fails) | nil, msg.
local function local_files(dir)
  local base = str_sub(dir, 1, 1) == "-" and ("./" .. dir) or dir
  local p = io.popen("find " .. shell_quote(base) .. " -type f -print0 2>/dev/null")
  if not p then return nil, "cannot list " .. dir end
  local out = p:read("a")
  p:close()
  local files = {}
  local root = str_gsub(base, "/+$", "") .. "/"
  local core = require "luabatch.core"
  for f in out:gmatch("([^%z]+)%z") do
    if str_sub(f, 1, #root) == root then
      local st = core.stat(f, true)
      files[#files + 1] = { rel = str_sub(f, #root + 1), size = st and st.size, mtime = st and st.mtime }
    end
  end
  table.sort(files, function(a, b) return a.rel < b.rel end)
  return files
end


-- A relative path taken from a key that stays under its directory.
local function safe_relpath(rel)
  if rel == "" or str_sub(rel, 1, 1) == "/" then return nil end
  for seg in rel:gmatch("[^/]+") do
    if seg == ".." then return nil end
  end
  if str_sub(rel, -1) == "/" then return nil end    -- a "directory marker" key
  return rel
end


---------------------------------------------------------------------------
-- Progress
---------------------------------------------------------------------------

local function new_progress(ctx, label)
  if not ctx.tty or ctx.quiet then return nil end
  local core = require "luabatch.core"
  local t0 = core.monotime()
  local last = -1
  local p = {}
  function p.update(done, total)
    local now = core.monotime()
    if now - last >= 0.1 or (total and done >= total) then
      last = now
      ctx.err("\r" .. _M.progress_line(label, done, total, now - t0, 79) .. "\27[K")
    end
    return true
  end
  function p.finish(summary, bytes)
    local dt = core.monotime() - t0
    local rate = dt > 0 and bytes and (bytes / dt) or nil
    ctx.err("\r\27[K" .. summary .. (bytes and (" (" .. human_bytes(bytes)
      .. (rate and (", " .. human_bytes(rate) .. "/s") or "") .. ")") or "") .. "\n")
  end
  function p.clear() ctx.err("\r\27[K") end
  return p
end


---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

local function fail(ctx, msg)
  ctx.err("luabatch s3 " .. ctx.command .. ": " .. tostring(msg) .. "\n")
  ctx.failed = ctx.failed + 1
  return nil
end


local function transfer_opts(ctx, progress)
  local o = ctx.opts
  return {
    content_type = o.content_type, metadata = o.metadata, part_size = o.part_size,
    concurrency = o.concurrency, on_progress = progress and progress.update or nil,
    unsigned_payload = o.unsigned_payload,
  }
end


local function upload(ctx, src, bucket, key)
  local s3 = ctx.s3
  local label = src .. " -> s3://" .. bucket .. "/" .. key
  local res, msg
  if src == "-" then
    local stdin = ctx.stdin
    local prog = new_progress(ctx, label)
    res, msg = s3:upload_reader(function() return stdin:read(1048576) end, bucket, key,
      transfer_opts(ctx, prog))
    if not res then if prog then prog.clear() end return fail(ctx, msg) end
    if prog then prog.finish("upload: " .. label, res.bytes) end
    return true
  end
  local f, ferr = io.open(src, "rb")
  if not f then return fail(ctx, "upload " .. label .. ": cannot read " .. tostring(ferr)) end
  f:close()
  local prog = new_progress(ctx, label)
  res, msg = s3:upload_file(src, bucket, key, transfer_opts(ctx, prog))
  if not res then if prog then prog.clear() end return fail(ctx, msg) end
  if prog then prog.finish("upload: " .. label, res.bytes) end
  return true
end


local function download(ctx, bucket, key, dst)
  local s3 = ctx.s3
  local label = "s3://" .. bucket .. "/" .. key .. " -> " .. dst
  if dst == "-" then
    local out = ctx.stdout
    local _, msg = s3:get_stream(bucket, key, function(chunk) return out:write(chunk) end,
      { sink_name = "stdout" })
    if not _ then return fail(ctx, msg) end
    local ok, ferr, errno = out:flush()
    if not ok then
      return fail(ctx, "GetObject s3://" .. bucket .. "/" .. key .. ": write stdout: " .. tostring(ferr)
        .. " (errno " .. tostring(errno) .. ")")
    end
    return true
  end
  local ok, merr = mkdir_p(dirname(dst))
  if not ok then return fail(ctx, "download " .. label .. ": " .. merr) end
  local prog = new_progress(ctx, label)
  local res, msg = s3:download_file(bucket, key, dst, transfer_opts(ctx, prog))
  if not res then if prog then prog.clear() end return fail(ctx, msg) end
  if prog then prog.finish("download: " .. label, res.bytes) end
  return true
end


-- path's directory made (once: dirs caches each) -> true | nil, reported.
local function parent_ready(ctx, dirs, bucket, key, path)
  local d = dirname(path)
  local ok, merr = dirs[d] or mkdir_p(d)
  dirs[d] = ok
  if not ok then return fail(ctx, "download s3://" .. bucket .. "/" .. key .. " -> " .. path .. ": " .. merr) end
  return true
end


local function unsafe_key(ctx, bucket, key)
  return fail(ctx, "download s3://" .. bucket .. "/" .. key .. ": key is not a safe relative path; skipped")
end


local function s3copy(ctx, sb, sk, db, dk)
  local res, msg = ctx.s3:copy_object(sb, sk, db, dk, { content_type = ctx.opts.content_type,
    metadata = ctx.opts.metadata })
  if not res then return fail(ctx, msg) end
  if ctx.tty and not ctx.opts.quiet then
    ctx.err("copy: s3://" .. sb .. "/" .. sk .. " -> s3://" .. db .. "/" .. dk .. "\n")
  end
  return true
end


local function interrupted()
  local ok, core = pcall(require, "luabatch.core")
  return ok and core.interrupted and core.interrupted()
end


-- A prefix for recursive operations: "" or ending in "/".
local function dir_prefix(p)
  if p == "" or str_sub(p, -1) == "/" then return p end
  return p .. "/"
end


local function cmd_cp(ctx)
  local src, dst = ctx.opts.pos[1], ctx.opts.pos[2]
  local sb, sk = s3mod.parse_url(src)
  local db, dk = s3mod.parse_url(dst)
  for _, u in ipairs({ { sb, sk, src }, { db, dk, dst } }) do   -- an s3:// URL with a bad bucket
    if not u[1] and str_match(u[3], "^[Ss]3://") then return fail(ctx, u[2]), 2 end
  end
  if not sb and not db then
    return fail(ctx, "one of SRC and DST must be an s3:// URL"), 2
  end
  if ctx.opts.recursive then
    if src == "-" or dst == "-" then return fail(ctx, "-r cannot use stdin or stdout"), 2 end
    local flt = filter.new(ctx.opts.filters)
    if sb and db then
      local sp, dp = dir_prefix(sk), dir_prefix(dk)
      for e, msg in ctx.s3:list(sb, { prefix = sp }) do
        if not e then return fail(ctx, msg) end
        if interrupted() then return fail(ctx, "interrupted") end
        local rel = str_sub(e.key, #sp + 1)
        if flt:includes(rel) then s3copy(ctx, sb, e.key, db, dp .. rel) end
      end
    elseif sb then
      local sp, root, small = dir_prefix(sk), str_gsub(dst, "/+$", ""), {}
      local dirs = {}
      for e, msg in ctx.s3:list(sb, { prefix = sp }) do
        if not e then return fail(ctx, msg) end
        if interrupted() then return fail(ctx, "interrupted") end
        local rel = str_sub(e.key, #sp + 1)
        local path = safe_relpath(rel) and (root .. "/" .. rel)
        if str_sub(e.key, -1) == "/" or not flt:includes(rel) then
          -- a "directory marker" or an excluded key: not copied
        elseif not path then
          unsafe_key(ctx, sb, e.key)
        elseif (e.size or many.BIG + 1) > many.BIG then
          download(ctx, sb, e.key, path)
        elseif parent_ready(ctx, dirs, sb, e.key, path) then
          small[#small + 1] = { file = path, key = e.key, size = e.size }
          if #small >= many.BATCH then
            if not many.run(ctx, "download", sb, small, human_bytes) then return nil end
            small = {}
          end
        end
      end
      return many.run(ctx, "download", sb, small, human_bytes)
    else
      if not is_dir(src) then return fail(ctx, "cp -r: " .. src .. " is not a directory") end
      local files, werr = local_files(src)
      if not files then return fail(ctx, werr) end
      local dp, root, items = dir_prefix(dk), str_gsub(src, "/+$", ""), {}
      for _, f in ipairs(files) do
        if flt:includes(f.rel) then
          items[#items + 1] = { file = root .. "/" .. f.rel, key = dp .. f.rel, size = f.size }
        end
      end
      if not many.run_all(ctx, "upload", db, items, human_bytes,
          function(it) return upload(ctx, it.file, db, it.key) end) then   -- an unreadable one fails there, named
        return nil
      end
    end
    return true
  end
  if sb and sk == "" then return fail(ctx, "cp: no key in " .. src), 2 end
  if sb and db then
    if dk == "" or str_sub(dk, -1) == "/" then dk = dk .. basename(sk) end
    return s3copy(ctx, sb, sk, db, dk)
  elseif db then
    if src ~= "-" and is_dir(src) then
      return fail(ctx, src .. " is a directory (use -r)"), 2
    end
    if dk == "" or str_sub(dk, -1) == "/" then
      if src == "-" then return fail(ctx, "cp: a key is needed when uploading stdin"), 2 end
      dk = dk .. basename(src)
    end
    return upload(ctx, src, db, dk)
  else
    if dst ~= "-" and (str_sub(dst, -1) == "/" or is_dir(dst)) then
      dst = str_gsub(dst, "/+$", "") .. "/" .. basename(sk)
    end
    return download(ctx, sb, sk, dst)
  end
end


local function cmd_ls(ctx)
  local out = ctx.out
  local url = ctx.opts.pos[1]
  if not url then
    local buckets, msg = ctx.s3:list_buckets()
    if not buckets then return fail(ctx, msg) end
    for _, b in ipairs(buckets) do out(short_time(b.creation_date) .. "  " .. b.name .. "\n") end
    return true
  end
  local b, prefix = s3mod.parse_url(url)
  if not b then return fail(ctx, prefix), 2 end
  local opts = { prefix = prefix }
  if not ctx.opts.recursive then opts.delimiter = "/" end
  for e, msg in ctx.s3:list(b, opts) do
    if not e then return fail(ctx, msg) end
    if e.prefix then
      out(str_format("%s %10s %s\n", str_rep(" ", 19), "PRE", e.prefix))
    else
      out(str_format("%s %10s %s\n", short_time(e.last_modified), tostring(e.size), e.key))
    end
  end
  return true
end


local function cmd_rm(ctx)
  local b, key = s3mod.parse_url(ctx.opts.pos[1])
  if not b then return fail(ctx, key), 2 end
  if ctx.opts.recursive then
    local p = dir_prefix(key)
    local n, errs = ctx.s3:delete_prefix(b, p)
    if not n then return fail(ctx, errs) end
    for _, e in ipairs(errs) do
      fail(ctx, "DeleteObjects s3://" .. b .. "/" .. tostring(e.key) .. ": " .. tostring(e.code)
        .. ": " .. tostring(e.message))
    end
    if ctx.tty and not ctx.opts.quiet then
      ctx.err(str_format("deleted %d objects under s3://%s/%s\n", n, b, p))
    end
    return true
  end
  if key == "" then return fail(ctx, "rm: no key in " .. ctx.opts.pos[1] .. " (use -r for a prefix)"), 2 end
  local ok, msg = ctx.s3:delete_object(b, key)
  if not ok then return fail(ctx, msg) end
  return true
end


local function cmd_mb(ctx)
  local b, key = s3mod.parse_url(ctx.opts.pos[1])
  if not b then return fail(ctx, key), 2 end
  if key ~= "" then return fail(ctx, "mb wants s3://BUCKET without a key"), 2 end
  local ok, msg = ctx.s3:create_bucket(b, { region = ctx.opts.region })
  if not ok then return fail(ctx, msg) end
  return true
end


local function cmd_presign(ctx)
  local b, key = s3mod.parse_url(ctx.opts.pos[1])
  if not b then return fail(ctx, key), 2 end
  if key == "" then return fail(ctx, "presign wants s3://BUCKET/KEY"), 2 end
  local url, msg = ctx.s3:presign(ctx.opts.method or "GET", b, key, ctx.opts.expires or 3600)
  if not url then return fail(ctx, msg) end
  ctx.out(url .. "\n")
  return true
end


local function cmd_abort_uploads(ctx)
  return require("luabatch.cli.s3_uploads").run(ctx, fail)
end


local function cmd_sync(ctx)
  return require("luabatch.cli.s3_sync").run(ctx, {
    fail = fail, upload = upload, download = download, local_files = local_files, is_dir = is_dir,
    parent_ready = parent_ready, unsafe_key = unsafe_key, safe_relpath = safe_relpath,
    dir_prefix = dir_prefix, interrupted = interrupted, human_bytes = human_bytes,
  })
end


local COMMANDS = { cp = cmd_cp, sync = cmd_sync, ls = cmd_ls, rm = cmd_rm, mb = cmd_mb, presign = cmd_presign,
  ["abort-uploads"] = cmd_abort_uploads }


local function default_isatty(fd)
  local ok, le = pcall(require, "luabatch.lineedit")
  return ok and type(le) == "table" and le.isatty and le.isatty(fd) or false
end


--- Run the command; args = the words after `s3`.  Returns the exit code.
function _M.run(args, env)
  env = env or {}
  local writer = require("luabatch.cli.out").writer
  local out = writer(env.stdout or io.stdout)          -- data: never rewritten
  local err = writer(env.stderr or io.stderr, true)
  local o, msg = _M.parse(args or {})
  if not o then
    err("luabatch s3: " .. msg .. "\n" .. _M.usage)
    return 2
  end
  if o.help then
    out(o.pos[1] == "sync" and require("luabatch.cli.s3_sync").usage or _M.usage)
    return 0
  end
  local s3 = env.client
  if not s3 then
    local cfg = require("luabatch.config").new({ region = o.region,
      endpoints = o.endpoint and { s3 = o.endpoint } or nil })
    s3 = s3mod.new({ config = cfg, region = o.region, addressing = o.addressing })
  end
  local isatty = env.isatty or default_isatty
  local ctx = {
    opts = o, command = o.command, s3 = s3, out = out, err = err, failed = 0,
    tty = isatty(2) and true or false, quiet = o.quiet,
    stdout = env.stdout and { write = function(_, s) out(s) return true end, flush = function() return true end }
      or io.stdout,
    stdin = env.stdin or io.stdin,
  }
  local ok, code = COMMANDS[o.command](ctx)
  if code then return code end
  if not ok or ctx.failed > 0 then return 1 end
  return 0
end


return _M
