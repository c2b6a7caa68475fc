-- example: the wiring of examples/nginx (nginx.conf.in calls these).
--
--   init_by_lua_block        { require("example").init() }         -- master
--   init_worker_by_lua_block { require("example").init_worker() }  -- each worker
--   location = /runs ...     { require("example").runs():handle() }
--
-- init() runs in the master, where the whole environment is still visible
-- (nginx clears the workers' environment but for `env NAME;` lines): it
-- snapshots the AWS_* variables and environment credentials into the
-- shared dict (luabatch.ngx.credentials.init) and builds the /runs app
-- (luabatch.ngx.runs.new: pure configuration, no I/O), which the workers
-- inherit when nginx forks them.
--
-- init_worker() runs before any request, where neither cosockets nor
-- subrequests exist, so it only starts timers:
--   * the credentials refresh timer: cached credentials are refreshed
--     before they expire, one worker at a time (a shared-dict lock);
--   * the Batch poller tick: every worker ticks, the one holding the
--     shared-dict lock polls (one DescribeJobs per 100 jobs for all
--     workers) and writes job states to the dict, so GET /runs/ID answers
--     from memory.
--
-- Settings (environment of run.sh; each needs an `env` line in nginx.conf):
--   LUABATCH_QUEUE, LUABATCH_BUCKET           the runs' job_queue_arn and s3_bucket
--   AWS_ENDPOINT_URL_S3 / _BATCH / _CLOUDWATCH_LOGS, AWS_REGION   as everywhere
--   LUABATCH_EXAMPLES                         directory of ?file=NAME workflows
--   LUABATCH_POLICY                           optional: a Lua file returning an
--                                             aws_batch policy table (poll pacing)
--   LUABATCH_HOME                             the runs' journal home (default
--                                             $HOME/.luabatch, as the CLI's)
local _M = { _VERSION = "0.1.0" }

local os_getenv = os.getenv

local function env(name)
  local v = os_getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

local app   -- the luabatch.ngx.runs app, built in init(), inherited by the workers

function _M.init()
  local creds = require "luabatch.ngx.credentials"
  local ok, msg = creds.init()
  if ok == nil then ngx.log(ngx.ERR, "example: credentials: ", tostring(msg)) end
  local policy
  if env("LUABATCH_POLICY") then policy = dofile(env("LUABATCH_POLICY")) end
  app = require("luabatch.ngx.runs").new({
    dir = env("LUABATCH_EXAMPLES"),
    policy = policy,
    home = env("LUABATCH_HOME"),        -- nil: journal.home() ($HOME/.luabatch)
    thread_pool = "luabatch",           -- nginx.conf.in's thread_pool
    with = {
      job_queue_arn = env("LUABATCH_QUEUE"),
      s3_bucket = env("LUABATCH_BUCKET"),
      region_name = env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
      s3_endpoint = env("AWS_ENDPOINT_URL_S3"),
      batch_endpoint = env("AWS_ENDPOINT_URL_BATCH"),
      logs_endpoint = env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS") or env("AWS_ENDPOINT_URL_LOGS"),
    },
  })
end

function _M.runs()
  if not app then _M.init() end
  return app
end

function _M.init_worker()
  require("luabatch.ngx.credentials").init_worker()
  local ok, msg = _M.runs():init_worker()
  if not ok then ngx.log(ngx.ERR, "example: Batch poller: ", tostring(msg)) end
end

return _M
