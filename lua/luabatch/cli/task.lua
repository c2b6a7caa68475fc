-- luabatch.cli.task: `luabatch task BUNDLE_URL [--strategy ID]`
--
--   local code = require("luabatch.cli.task").run({ "s3://b/k/bundle.json", "--strategy", "@array" }, env)
--
-- The command an AWS Batch job definition of luabatch.runner.aws_batch runs:
-- ["luabatch", "task", "Ref::bundle", "--strategy", "Ref::strategy"].  See
-- luabatch.task for what it does.  Exit codes: 0 the strategy succeeded (or
-- skipped), 1 it failed or was cancelled, 2 bad usage, URL or bundle.
--
-- env (optional, the seam for tests): stdout, stderr (function(s) or anything
-- with :write), getenv, s3 (a luabatch.s3 client).

local args = require "luabatch.cli.args"

local _M = { _VERSION = "0.1.0" }

local type = type
local str_format = string.format

_M.usage = [==[
usage: luabatch task BUNDLE_URL [--strategy ID]

Run one strategy of a job bundle written by the aws_batch runner (what an
AWS Batch container runs), upload its result.json and output.log next to
the bundle's results prefix, and exit with its status.

options:
  -s, --strategy ID  the strategy id to run; "@array" (or no option) takes
                     the index in AWS_BATCH_JOB_ARRAY_INDEX, else the ":N"
                     suffix of AWS_BATCH_JOB_ID (an array child's id); with
                     neither, a bundle of several strategies is an error
  -h, --help         this text

Credentials come from the default chain (in Batch: the job role through
the ECS container endpoint); AWS_ENDPOINT_URL_S3 sets another S3 endpoint.
Exit codes: 0 success (or skipped), 1 failed or cancelled, 2 bad usage,
URL or bundle.
]==]

local function parse_args(argv)
  local o, pos = args.parse(argv, { ["--strategy"] = { "value", alias = "-s" } })
  if not o then return nil, pos end
  if pos[2] then return nil, str_format("unexpected argument '%s' (one bundle URL)", pos[2]) end
  o.url = pos[1]
  if not o.help and not o.url then return nil, "a BUNDLE_URL is required" end
  return o
end

function _M.run(argv, env)
  env = env or {}
  local writer = require("luabatch.cli.out").writer
  local out_w = writer(env.stdout or io.stdout, true)
  local err_w = writer(env.stderr or io.stderr, true)
  local o, perr = parse_args(argv or {})
  if not o then
    err_w("luabatch task: " .. perr .. "\n" .. _M.usage)
    return 2
  end
  if o.help then
    out_w(_M.usage)
    return 0
  end
  return require("luabatch.task").run({
    url = o.url, strategy = o.strategy, getenv = env.getenv,
    stdout = out_w, stderr = err_w, s3 = env.s3,
  })
end

return _M
