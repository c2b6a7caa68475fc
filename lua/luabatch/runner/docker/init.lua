-- luabatch.runner.docker: a job's strategies as local containers of an image
-- (`runs-on: docker`), through the same bundle + `luabatch task` path as
-- AWS Batch: the container runs `luabatch task <bundle URL> --strategy <id>`
-- and uploads result.json, which is the strategy record.
--
--   local h = runner.open_job(model, job_id, wctx, { env = jenv })  -- the engine's seam
--   local rec = h:run_strategy(combo, wctx, senv)
--   h:close(status)
--   local record, jctx = runner.run_job(model, job_id, context, opts)
--
-- with: (docker/schema.lua): image (default luabatch:latest), s3_bucket
-- (required), s3_prefix (default luabatch/runs), volumes ("SRC:DST[:ro]"),
-- environment, cpus, memory (MiB), docker_host, and the S3 client's fields.
-- The container: the host's network (so S3 on 127.0.0.1 answers), the image's
-- user and working directory, the host's S3 credentials and endpoint in its
-- environment (a local run: the daemon is the user's own).  A cancel sends
-- SIGTERM (the task uploads its CANCEL record), SIGKILL 10 s later.  A
-- container that wrote no result is a FAILED record naming its exit code,
-- an OOM kill and its last output lines.  Docker is reached through its
-- Engine API on the unix socket (docker/engine.lua), never the CLI.

local log = require "luabatch.log"
local registry = require "luabatch.runner"   -- registered with the loader and the engine
local schema_mod = require "luabatch.runner.schema"
local stage = require "luabatch.workflow.stage"
local job = require "luabatch.workflow.job"
local sched = require "luabatch.workflow.sched"
local engine_mod = require "luabatch.runner.docker.engine"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local str_format = string.format
local floor = math.floor

local POLL = 0.2          -- seconds between two looks at a running container
local KILL_GRACE = 10     -- SIGTERM -> SIGKILL
local LOG_LINES = 10      -- output lines in a failure's message

local function core() return require "luabatch.core" end

local function failed(combo, t0, message, status)
  return { status = status or "FAILED", matrix = combo.values, stages = stage.object(),
           errors = { name = status == "CANCEL" and "JobCancelError" or "JobError", message = message },
           info = stage.info(t0, stage.now()) }
end

-- A job's FAILED record before any container ran (with: rejected, ...).
local function failed_job(jobdef, t0, message)
  local jctx = { status = "FAILED", errors = { name = "JobError", message = message },
                 info = stage.info(t0, stage.now()) }
  return job.record(jobdef, jctx), jctx
end

--- check(with, job_id) -> cfg | nil, message naming the field
function _M.check(with, job_id)
  local out, field, msg = schema_mod.check(require("luabatch.runner.docker.schema"), with or {})
  if not out then
    return nil, str_format("job '%s': runs-on docker: with.%s %s", tostring(job_id), field, msg)
  end
  for i, v in ipairs(out.volumes or {}) do
    if not v:match("^/[^:]*:/[^:]*$") and not v:match("^/[^:]*:/[^:]*:ro$") and not v:match("^/[^:]*:/[^:]*:rw$") then
      return nil, str_format("job '%s': runs-on docker: with.volumes[%d] must be /HOST/PATH:/CONTAINER/PATH"
        .. "[:ro] (got %q)", tostring(job_id), i, v)
    end
  end
  out.image = out.image or "luabatch:latest"
  out.s3_prefix = (out.s3_prefix or "luabatch/runs"):gsub("^/+", ""):gsub("/+$", "")
  return out
end

-- The S3 client of with: (its endpoint and credentials, else the config's).
local function s3_client(with, getenv)
  local creds
  if with.aws_access_key_id and with.aws_secret_access_key then
    creds = require("luabatch.credentials").static({ access_key = with.aws_access_key_id,
      secret_key = with.aws_secret_access_key, session_token = with.aws_session_token })
  end
  local made = require("luabatch.clients").set({ region = with.region, profile = with.profile,
    endpoint_url = with.endpoint_url, env = getenv, credentials = creds,
    endpoints = { s3 = with.s3_endpoint } })
  return made.s3
end

local Job = {}
Job.__index = Job

-- Upload the bundle once -> true | nil, message
function Job:prepare()
  if self.url then return true end
  if self.prepare_error then return nil, self.prepare_error end
  local bundle = require "luabatch.runner.aws_batch.bundle"
  local cfg = self.cfg
  local prefix = str_format("%s/%s/%s", cfg.s3_prefix, tostring(self.env.run_id or "run"), self.job_id)
  -- no credential of this client goes into the bucket (as for aws_batch)
  local pok, provider = pcall(function() return self.s3:credentials() end)
  local secrets = bundle.secrets_of(cfg, self.env.getenv, pok and provider or nil)
  local files, notes = bundle.collect_files(self.jobdef, self.env, { secrets = secrets })
  local ok, t = false, notes
  if files then
    ok, t = pcall(bundle.build, { run_id = tostring(self.env.run_id or "run"), workflow = self.model.name,
      job_id = self.job_id, jobdef = self.jobdef, context = self.wctx, strategies = job.strategies(self.jobdef),
      results = "s3://" .. cfg.s3_bucket .. "/" .. prefix .. "/", files = files })
  end
  if not ok then
    self.prepare_error = str_format("job '%s': bundle: %s", self.job_id, tostring(t))
    return nil, self.prepare_error
  end
  local checked = { cfg.aws_access_key_id }
  for _, v in ipairs(secrets) do checked[#checked + 1] = v end
  local text, where = bundle.upload_text(t, checked)
  if not text then
    self.prepare_error = str_format("job '%s': refusing to upload the bundle: it contains a credential of this "
      .. "client (%s)", self.job_id, where == "$" and "in its text" or tostring(where))
    return nil, self.prepare_error
  end
  local put, perr = self.s3:put_object(cfg.s3_bucket, prefix .. "/bundle.json", text,
    { content_type = "application/json" })
  if not put then
    self.prepare_error = str_format("job '%s': upload s3://%s/%s/bundle.json: %s", self.job_id, cfg.s3_bucket,
      prefix, tostring(perr))
    return nil, self.prepare_error
  end
  self.prefix = prefix
  self.url = "s3://" .. cfg.s3_bucket .. "/" .. prefix .. "/bundle.json"
  return true
end

-- The container's environment: S3 endpoint and credentials, with.environment.
function Job:container_env()
  local out = { "LUABATCH_RUN_ID=" .. tostring(self.env.run_id or ""), "AWS_EC2_METADATA_DISABLED=true" }
  local ok, region = pcall(self.s3.region, self.s3)
  if ok and region then out[#out + 1] = "AWS_REGION=" .. region end
  local okep, ep, src = pcall(self.s3.endpoint, self.s3)
  if okep and ep and src ~= "default" then out[#out + 1] = "AWS_ENDPOINT_URL_S3=" .. ep end
  local p = self.s3:credentials()
  local c = p and p:get()
  if c then
    out[#out + 1] = "AWS_ACCESS_KEY_ID=" .. c.access_key
    out[#out + 1] = "AWS_SECRET_ACCESS_KEY=" .. c.secret_key
    if c.session_token then out[#out + 1] = "AWS_SESSION_TOKEN=" .. c.session_token end
  end
  for k, v in pairs(self.cfg.environment or {}) do out[#out + 1] = k .. "=" .. v end
  table.sort(out)
  return out
end

function Job:body(sid)
  local cfg = self.cfg
  local host = { NetworkMode = "host" }
  if cfg.volumes and cfg.volumes[1] then host.Binds = cfg.volumes end
  if cfg.cpus then host.NanoCpus = floor(cfg.cpus * 1e9) end
  if cfg.memory then host.Memory = cfg.memory * 1048576; host.MemorySwap = host.Memory end
  return { Image = cfg.image, Cmd = { "luabatch", "task", self.url, "--strategy", sid },
           Env = self:container_env(), HostConfig = host,
           Labels = { ["luabatch.run"] = tostring(self.env.run_id or ""), ["luabatch.job"] = self.job_id } }
end

-- Why to stop a running container now, or nil.
function Job:stop_reason(senv)
  if self.env.cancelled and self.env.cancelled() then return "cancel" end
  if core().interrupted() then return "cancel" end
  local why = senv and senv.cancelled and senv.cancelled()
  return why and tostring(why) or nil
end

-- SIGINT stops every HTTP request (lb_intr): a stop in progress clears the
-- flag and raises it again once the container is gone (self.interrupted).
function Job:calm()
  if core().interrupted() then
    core().clear_interrupt()
    self.interrupted = true
  end
end

-- Wait for the container, stopping it on a cancel -> State, stopped_why
function Job:wait(id, senv)
  local d, why, killed_at = self.d, nil, nil
  while true do
    local now = core().monotime()
    if not why then
      why = self:stop_reason(senv)
      if why then
        self:calm()
        d:kill(id, "TERM")
        killed_at = now
      end
    elseif now - killed_at > KILL_GRACE then
      d:kill(id, "KILL")
      killed_at = now + 3600
    end
    if why then self:calm() end
    local st, err = d:inspect(id)
    if st and not st.Running then return st, why end
    -- a SIGINT during the call: the next round stops the container
    if not st and not (why == nil and core().interrupted()) then return nil, err end
    if why or core().interrupted() then core().sleep(POLL) else sched.sleep(POLL) end
  end
end

-- One strategy: a container of the image -> strategy record
function Job:strategy(combo, senv)
  local t0, sid = stage.now(), combo.id
  if self:stop_reason(senv) then
    return failed(combo, t0, "Strategy execution was canceled before its container started.", "CANCEL")
  end
  local ok, perr = self:prepare()
  if not ok then return failed(combo, t0, perr) end
  local d = self.d
  local where = str_format("job '%s' strategy %s: docker image %s", self.job_id, sid, self.cfg.image)
  local id, cerr = d:create(self:body(sid))
  if not id then return failed(combo, t0, where .. ": " .. tostring(cerr)) end
  local started, serr = d:start(id)
  if not started then
    d:remove(id)
    return failed(combo, t0, where .. ": " .. tostring(serr))
  end
  local st, why = self:wait(id, senv)
  if why then self:calm() end
  local lines = d:logs(id) or {}
  d:remove(id)
  local rkey = str_format("%s/%s/result.json", self.prefix, sid)
  local body = st and self.s3:get_object(self.cfg.s3_bucket, rkey)
  if self.interrupted then core().raise_interrupt() end
  if not st then return failed(combo, t0, where .. ": " .. tostring(why)) end
  if body then
    local rec = require("luabatch.json").decode(body, "s3://" .. self.cfg.s3_bucket .. "/" .. rkey)
    if type(rec) == "table" and type(rec.status) == "string" then return rec end
  end
  local tail = {}
  for i = math.max(1, #lines - LOG_LINES + 1), #lines do tail[#tail + 1] = "  " .. lines[i] end
  local msg = str_format("%s: the container exited with code %s%s and wrote no result", where,
    tostring(st.ExitCode), st.OOMKilled and " (out of memory: killed at with.memory)" or "")
  if #tail > 0 then msg = msg .. "; its last output:\n" .. table.concat(tail, "\n") end
  return failed(combo, t0, msg, why and "CANCEL" or "FAILED")
end

--- open_job(model, job_id, wctx, opts) -> handle | nil, record (with: rejected)
function _M.open_job(model, job_id, wctx, opts)
  local jobdef, env, w = require("luabatch.runner.local").open("open_job", model, job_id, wctx, opts)
  local t0 = stage.now()
  local with = env.job_with
  if with == nil then with = (jobdef.runs_on and jobdef.runs_on.with) or {} end
  local cfg, cerr = _M.check(with, job_id)
  if not cfg then return nil, (failed_job(jobdef, t0, cerr)) end
  local getenv = env.getenv or os.getenv
  local d, derr = engine_mod.new(getenv, cfg.docker_host and engine_mod.socket_of(cfg.docker_host) or nil)
  if not d then return nil, (failed_job(jobdef, t0, str_format("job '%s': runs-on docker: %s", job_id, derr))) end
  local self = setmetatable({ model = model, job_id = job_id, jobdef = jobdef, env = env, wctx = w, cfg = cfg,
    d = d, s3 = s3_client(cfg, getenv) }, Job)
  local h = { max_parallel = registry.max_parallel("docker") }
  function h.run_strategy(_, combo, _, senv) return self:strategy(combo, senv) end
  function h.close()
    local ok, err = pcall(d.close, d)
    if not ok then log.debug("docker: %s", tostring(err)) end
  end
  return h
end

--- run_job(model, job_id, context, opts) -> record, jctx (one job in containers).
function _M.run_job(model, job_id, context, opts)
  local o = { runner = _M, runs_on = "docker" }
  for k, v in pairs(opts or {}) do if o[k] == nil then o[k] = v end end
  return require("luabatch.workflow.engine").run_job(model, job_id, context, o)
end

return _M
