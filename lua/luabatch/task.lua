-- luabatch.task: run one strategy of a job bundle, inside a Batch container.
--
--   local task = require "luabatch.task"
--   local code = task.run({ url = "s3://bucket/luabatch/runs/R/count/bundle.json",
--                           strategy = "1234567890" })      -- or "@array" / nil
--
-- What it does (the remote half of luabatch.runner.aws_batch):
--   1. downloads the bundle (luabatch.s3; credentials from the default chain:
--      in a Batch container the ECS endpoint, AWS_CONTAINER_CREDENTIALS_FULL_URI
--      + AWS_CONTAINER_AUTHORIZATION_TOKEN; the S3 endpoint from the config,
--      e.g. AWS_ENDPOINT_URL_S3) and checks it (luabatch.runner.aws_batch.bundle);
--   2. picks the strategy: an id, or "@array"/nil -> the index in
--      AWS_BATCH_JOB_ARRAY_INDEX, else the ":N" suffix of AWS_BATCH_JOB_ID
--      -> strategies[index + 1]; no index at all is strategy 0 of a one-
--      strategy bundle, and an error (exit 2) when it has several;
--   3. runs it with job.run_strategy on an engine environment (stage kinds
--      as on the host), printing each stage's progress and output lines on
--      stdout as they happen (they become CloudWatch log events).  The
--      bundle's files (registry modules and workflow sources of call: and
--      trigger: stages, see bundle.collect_files) are written to a private
--      directory (0700) under opts.tmpdir / TMPDIR / /tmp: its registry/ goes
--      ahead of LUABATCH_REGISTRY (default ./registry), its conf/ (one
--      file per distinct bundled source) is the conf directory triggers
--      search when the bundle has workflows (then only it: a templated
--      trigger finds only bundled workflows), else "."; removed at the end;
--   4. uploads <results><sid>/result.json (the strategy record, luabatch.json)
--      and <results><sid>/output.log (everything it printed); on a node of a
--      multi-node job other than the main one (AWS_BATCH_JOB_NODE_INDEX !=
--      AWS_BATCH_JOB_MAIN_NODE_INDEX) only <results><sid>/node-N.log: the
--      job's result is its main node's.  The stages see the node's index,
--      count and the main node's address in the AWS_BATCH_JOB_* variables.
-- Returns the exit code: 0 when the record's status is SUCCESS or SKIP, 1 for
-- FAILED / CANCEL or when the result cannot be uploaded, 2 for a bad URL, a
-- bundle that cannot be read or is not valid, or an unknown strategy (nothing
-- is uploaded then; stderr names the URL and what is wrong).
-- SIGTERM/SIGINT (the executable runs subcommands in "flag" mode) cancel the
-- running stages; the CANCEL record is still uploaded (core.clear_interrupt()
-- first) and the exit code is 1.
-- Every printed line and every string of the uploaded record passes through
-- log.redact, with the container's credentials registered as secrets.
--
-- opts (the seam for specs): url, strategy, getenv (default os.getenv),
-- stdout / stderr (function(s) or anything with :write; default io.stdout /
-- io.stderr, flushed per line), s3 (a luabatch.s3 client; default
-- s3.new{ config = config.new{ env = getenv } }), registry, tmpdir.

local log = require "luabatch.log"
local bundle = require "luabatch.runner.aws_batch.bundle"
local stage = require "luabatch.workflow.stage"
require "luabatch.runner"     -- the runners, registered with the loader and the engine

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local str_format = string.format
local str_sub = string.sub
local tbl_concat = table.concat
local floor = math.floor

local core_ok, core = pcall(require, "luabatch.core")

local function interrupted()
  return core_ok and core.interrupted and core.interrupted() or false
end

--- s3://bucket/key -> bucket, key | nil, msg: luabatch.s3.parse_url, and
-- the URL must name an object (a key, not a prefix).
function _M.parse_url(url)
  if type(url) ~= "string" then return nil, "not a string" end
  local bucket, key = require("luabatch.s3").parse_url(url)
  if not bucket or key == "" then return nil, "expected s3://BUCKET/KEY" end
  if str_sub(key, -1) == "/" then return nil, "names a prefix, not an object (ends in '/')" end
  return bucket, key
end

local function writer(w, default)
  w = w or default
  if type(w) == "function" then return w end
  return function(s)
    w:write(s)
    if w.flush then w:flush() end
  end
end

local fmt_secs = require("luabatch.pretty").secs
local first_error = stage.first_error

-- Every string (keys too) of v through log.redact; the JSON markers stay.
local function redact_all(v)
  if type(v) == "string" then return log.redact(v) end
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do
    c[type(k) == "string" and log.redact(k) or k] = redact_all(x)
  end
  local mt = getmetatable(v)
  if mt then setmetatable(c, mt) end
  return c
end
_M.redact_all = redact_all

local function register_secrets(getenv)
  for _, name in pairs({ "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_SECRET_ACCESS_KEY",
                         "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN" }) do
    local v = getenv(name)
    if v and v ~= "" then log.add_secret(v) end
  end
  local tf = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
  if tf and tf ~= "" then
    local f = io.open(tf, "rb")
    if f then
      local tok = f:read("a") or ""
      f:close()
      tok = tok:gsub("%s+$", "")
      log.add_secret(tok)
    end
  end
end

-- The array index of this child -> index | nil (none given) | nil, msg:
-- AWS_BATCH_JOB_ARRAY_INDEX, else the ":N" suffix of AWS_BATCH_JOB_ID
-- (an array child's id is "<array job id>:<index>").
local function array_index(getenv)
  local raw = getenv("AWS_BATCH_JOB_ARRAY_INDEX")
  local what = "AWS_BATCH_JOB_ARRAY_INDEX"
  if raw == nil or raw == "" then
    local id = getenv("AWS_BATCH_JOB_ID")
    raw = id and id:match(":([^:]*)$")
    if raw == nil then return nil end
    what = "the index suffix of AWS_BATCH_JOB_ID"
  end
  local idx = tonumber(raw)
  if idx == nil or idx < 0 or idx ~= floor(idx) or not raw:match("^%d+$") then
    return nil, str_format("%s=%q is not an index", what, raw)
  end
  return idx
end

-- The combo to run -> combo | nil, msg.  "@array" (or none) without any
-- index is strategy 0 only when the bundle has just one: with several,
-- running one of them silently would lose the others.
local function pick(t, sel, getenv)
  if sel == nil or sel == "" or sel == "@array" then
    local idx, ierr = array_index(getenv)
    if ierr then return nil, ierr end
    if idx == nil then
      if #t.strategies > 1 then
        return nil, str_format("the bundle has %d strategies and no array index was given "
          .. "(AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ID without a ':N' suffix): "
          .. "pass --strategy ID or run it as an array child", #t.strategies)
      end
      idx = 0
    end
    return bundle.strategy(t, idx)
  end
  return bundle.strategy(t, tostring(sel))
end

-- Remove a directory tree (no symlink is followed: lstat).
local function rmtree(dir)
  local names = core.listdir(dir) or {}
  for _, n in ipairs(names) do
    local p = dir .. "/" .. n
    local st = core.stat(p)
    if st and st.type == "directory" then rmtree(p) else os.remove(p) end
  end
  os.remove(dir)
end

local function mkdirs(root, rel)
  local p = root
  for part in rel:gmatch("([^/]+)/") do
    p = p .. "/" .. part
    local ok, msg, code = core.mkdir(p, 448)   -- 0700
    if not ok and code ~= "EEXIST" then return nil, msg end
  end
  return true
end

-- Write the bundle's files into a new private directory -> dir | nil, msg.
local function write_files(files, tmpdir)
  local dir = str_format("%s/luabatch-files-%s", tmpdir, core.hex(core.random_bytes(8)))
  local ok, msg = core.mkdir(dir, 448)
  if not ok then return nil, str_format("cannot create %s: %s", dir, tostring(msg)) end
  local function put(rel, text)
    local okd, derr = mkdirs(dir, rel)
    if not okd then return nil, str_format("%s/%s: %s", dir, rel, tostring(derr)) end
    local okw, werr = core.append_file(dir .. "/" .. rel, text, 384)   -- 0600, a new file
    if not okw then return nil, str_format("%s/%s: %s", dir, rel, tostring(werr)) end
    return true
  end
  local names = {}
  for k in pairs(files.registry or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local okp, perr = put("registry/" .. k, files.registry[k])
    if not okp then rmtree(dir) return nil, perr end
  end
  -- one file per distinct source (several workflows of one file share it)
  names = {}
  for k in pairs(files.workflows or {}) do names[#names + 1] = k end
  table.sort(names)
  local written, n = {}, 0
  for _, k in ipairs(names) do
    local text = files.workflows[k]
    if not written[text] then
      written[text] = true
      n = n + 1
      local okp, perr = put(str_format("conf/w%03d.yml", n), text)
      if not okp then rmtree(dir) return nil, perr end
    end
  end
  return dir
end

local function combo_text(combo)
  if combo.id == "EMPTY" then return "" end
  local ok, json = pcall(require, "luabatch.json")
  if ok then return " " .. json.encode(combo.values) end
  return ""
end

--- Run a task (see the header) -> exit code.
function _M.run(opts)
  opts = opts or {}
  local getenv = opts.getenv or os.getenv
  local raw_out = writer(opts.stdout, io.stdout)
  local err_w = writer(opts.stderr, io.stderr)
  local url = opts.url
  local printed = {}

  register_secrets(getenv)

  local function say(line)
    line = log.redact(line)
    printed[#printed + 1] = line
    raw_out(line .. "\n")
  end
  local function fail(code, fmt, ...)
    err_w("luabatch task: " .. log.redact(str_format(fmt, ...)) .. "\n")
    return code
  end

  -- 1. the bundle
  local bucket, key = _M.parse_url(url)
  if not bucket then
    return fail(2, "bad bundle URL '%s': %s", tostring(url), key)
  end
  local s3 = opts.s3
  if s3 == nil then
    local config = require("luabatch.config").new({ env = getenv })
    s3 = require("luabatch.s3").new({ config = config })
  end
  -- streamed (and resumed), so the cap is bundle.MAX_BYTES, not the HTTP
  -- cap of a body in memory; a larger object stops the download there
  local parts, size = {}, 0
  local got, gmsg, gcode = s3:get_stream(bucket, key, function(chunk)
    size = size + #chunk
    if size > bundle.MAX_BYTES then return nil, "over the limit" end
    parts[#parts + 1] = chunk
    return true
  end, { sink_name = "the bundle" })
  if size > bundle.MAX_BYTES then
    return fail(2, "%s: the bundle is larger than the limit of %d bytes", url, bundle.MAX_BYTES)
  end
  if got == nil then
    return fail(2, "%s: cannot read the bundle: %s (%s)", url, tostring(gmsg), tostring(gcode))
  end
  local t, derr = bundle.decode(table.concat(parts), url)
  if not t then
    return fail(2, "bad bundle: %s", tostring(derr))
  end
  local combo, serr = pick(t, opts.strategy, getenv)
  if not combo then
    return fail(2, "%s: %s", url, tostring(serr))
  end
  local rbucket, rprefix = require("luabatch.s3").parse_url(t.results)   -- checked by bundle.decode
  local sid = combo.id

  -- 2. the environment
  local engine = require "luabatch.workflow.engine"
  local sched = require "luabatch.workflow.sched"
  local job = require "luabatch.workflow.job"
  local jobdef = t.job
  jobdef.id = jobdef.id or t.job_id
  local model = { name = t.workflow, jobs = { [t.job_id] = jobdef }, job_order = { t.job_id },
                  params = {} }
  local where = t.job_id .. (sid ~= "EMPTY" and ("[" .. sid .. "]") or "")
  local function logline(line)
    for l in (tostring(line) .. "\n"):gmatch("(.-)\n") do say("  | " .. l) end
  end
  local registry, conf = opts.registry, opts.conf or "."
  local files_dir
  if t.files and (t.files.registry or t.files.workflows) then
    local ferr
    files_dir, ferr = write_files(t.files, opts.tmpdir or getenv("TMPDIR") or "/tmp")
    if not files_dir then
      return fail(2, "%s: cannot write the bundled files: %s", url, tostring(ferr))
    end
    registry = files_dir .. "/registry:" .. (registry or getenv("LUABATCH_REGISTRY") or "./registry")
    if t.files.workflows then conf = files_dir .. "/conf" end
  end
  local env = engine.make_env(model, {
    getenv = getenv,
    registry = registry,
    tmpdir = opts.tmpdir,
    conf = conf,
    log = logline,
    output_line = logline,     -- bash output as it is written (CloudWatch, live)
    progress = function(event, info)
      if event == "stage-start" then
        say(str_format("%s: stage %s: start", where, tostring(info.key or info.name or "?")))
      elseif event == "stage" then
        local line = str_format("%s: stage %s: %s (%s)", where, tostring(info.key or info.name or "?"),
          tostring(info.status), fmt_secs(info.seconds or 0))
        local m = (info.status == "FAILED" or info.status == "CANCEL") and first_error(info.errors)
        if m then line = line .. ": " .. (m:match("^[^\n]*") or m) end
        say(line)
      end
    end,
  })
  env.job_id = t.job_id
  env.run_id = t.run_id

  say(str_format("luabatch task: run %s, workflow %s, job %s, strategy %s%s", t.run_id,
    tostring(t.workflow), t.job_id, sid, combo_text(combo)))

  -- 3. run
  local wctx = { params = t.context.params, jobs = t.context.jobs, status = "WAIT" }
  local group = { cancel = false, fail_fast = false }
  local t0 = stage.now()
  local rec, rerr
  local s = sched.new()
  s:spawn(function()
    local ok, r = pcall(job.run_strategy, jobdef, combo, wctx, env, group)
    if ok then rec = r else rerr = r end
  end)
  local ok, serr2 = pcall(s.run, s)
  if not ok and rerr == nil then rerr = serr2 end
  local was_interrupted = interrupted()
  if rec == nil then
    rec = { status = was_interrupted and "CANCEL" or "FAILED", matrix = combo.values,
            stages = stage.object() }
    if was_interrupted then
      rec.errors = { name = "JobCancelError", message = "Strategy execution was canceled: interrupted" }
    else
      rec.errors = { name = "JobError", message = "task: " .. tostring(rerr or "the strategy ended without a record") }
    end
    rec.info = stage.info(t0, stage.now())
  end
  if was_interrupted and core_ok and core.clear_interrupt then core.clear_interrupt() end
  if files_dir then rmtree(files_dir) end
  local line = str_format("%s: %s (%s)", where, tostring(rec.status), fmt_secs(stage.now() - t0))
  local m = first_error(rec.errors)
  if m and rec.status ~= "SUCCESS" then line = line .. ": " .. (m:match("^[^\n]*") or m) end
  if was_interrupted then line = line .. " (interrupted)" end
  say(line)

  -- 4. upload: a multi-node job's result is its main node's; the other
  -- nodes keep their output beside it (node-N.log)
  local json = require "luabatch.json"
  local rkey = rprefix .. sid .. "/result.json"
  local lkey = rprefix .. sid .. "/output.log"
  local code = (rec.status == "SUCCESS" or rec.status == "SKIP") and 0 or 1
  local node, main = getenv("AWS_BATCH_JOB_NODE_INDEX"), getenv("AWS_BATCH_JOB_MAIN_NODE_INDEX")
  if node and main and node ~= main then
    local nkey = rprefix .. sid .. "/node-" .. node .. ".log"
    local okn, nmsg, ncode = s3:put_object(rbucket, nkey, tbl_concat(printed, "\n") .. "\n",
      { content_type = "text/plain; charset=utf-8" })
    if not okn then
      return fail(1, "s3://%s/%s: cannot upload the node's output: %s (%s)", rbucket, nkey, tostring(nmsg), tostring(ncode))
    end
    return code
  end
  local text = json.encode(redact_all(rec))
  local okp, pmsg, pcode = s3:put_object(rbucket, rkey, text, { content_type = "application/json" })
  if not okp then
    return fail(1, "s3://%s/%s: cannot upload the result: %s (%s)", rbucket, rkey, tostring(pmsg),
      tostring(pcode))
  end
  say(str_format("result: s3://%s/%s", rbucket, rkey))
  local logtext = tbl_concat(printed, "\n") .. "\n"
  local okl, lmsg, lcode = s3:put_object(rbucket, lkey, logtext, { content_type = "text/plain; charset=utf-8" })
  if not okl then
    err_w(log.redact(str_format("luabatch task: s3://%s/%s: cannot upload the output: %s (%s)\n",
      rbucket, lkey, tostring(lmsg), tostring(lcode))))
  end
  return code
end

return _M
