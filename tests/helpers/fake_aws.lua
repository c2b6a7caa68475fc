-- tests/helpers/fake_aws.lua: in-memory Batch, S3 and Logs clients for the
-- unit specs of the provider's submit/collect halves and of the nginx
-- driver (the ones that never poll; runner_aws_batch_spec has its own fake
-- with a job state machine).
--
--   local fake_aws = require "helpers.fake_aws"
--   local W = fake_aws.new()
--   local d = fake_aws.dict()  -- a shared dict stand-in
--   W.clients                 -- { batch, s3, logs }: what runner_opts.clients returns
--   W.calls[Op]               -- DescribeJobDefinitions, RegisterJobDefinition, SubmitJob,
--                             -- TerminateJob, DescribeJobs, PutObject: how many
--   W.submits                 -- SubmitJob requests, in order (job ids "job-1", "job-2", ...)
--   W.terminated              -- { {id =, reason =}, ... }
--   W.objects["bucket/key"]   -- S3 contents; delete_prefix removes the keys and
--   W.deleted                 -- lists each prefix it was asked to delete
--   W.streams[stream]         -- log lines GetLogEvents returns for a stream
-- No job definition exists until registered (every Describe is empty);
-- DescribeJobs knows no job; ListJobs finds nothing.
local _M = {}

--- dict() -> an in-memory stand-in for an nginx shared dict (get, set,
-- add, delete, lpush, rpop, get_keys): what luabatch.ngx.poller and
-- luabatch.ngx.drive keep their state in.
function _M.dict()
  local d = { data = {} }
  function d:get(k) local v = self.data[k]; if type(v) == "table" then return nil end return v end
  function d:set(k, v) self.data[k] = v; return true end
  function d:add(k, v) if self.data[k] ~= nil then return false, "exists" end self.data[k] = v; return true end
  function d:delete(k) self.data[k] = nil end
  function d:lpush(k, v)
    local l = self.data[k] or {}
    self.data[k] = l
    table.insert(l, 1, v)
    return #l
  end
  function d:rpop(k)
    local l = self.data[k]
    if type(l) ~= "table" or #l == 0 then return nil end
    return table.remove(l)
  end
  function d:get_keys()
    local out = {}
    for k in pairs(self.data) do out[#out + 1] = k end
    table.sort(out)
    return out
  end
  return d
end

function _M.new()
  local W = { submits = {}, objects = {}, calls = {}, terminated = {}, deleted = {}, streams = {}, seq = 0 }
  local function count(op) W.calls[op] = (W.calls[op] or 0) + 1 end

  local batch = {}
  function batch:job_definitions() count("DescribeJobDefinitions"); return function() return nil end end
  function batch:register_job_definition(def)
    count("RegisterJobDefinition")
    return { jobDefinitionName = def.jobDefinitionName, revision = 1,
             jobDefinitionArn = "arn:aws:batch:us-east-1:1:job-definition/" .. def.jobDefinitionName .. ":1" }
  end
  function batch:submit_job(req)
    count("SubmitJob")
    W.seq = W.seq + 1
    W.submits[#W.submits + 1] = req
    return { jobId = "job-" .. W.seq, jobName = req.jobName }
  end
  function batch:terminate_job(id, reason)
    count("TerminateJob")
    W.terminated[#W.terminated + 1] = { id = id, reason = reason }
    return {}
  end
  function batch:describe_jobs() count("DescribeJobs"); return { jobs = {} } end
  function batch:list_jobs() return function() return nil end end

  local s3 = {}
  function s3:put_object(b, k, body) count("PutObject"); W.objects[b .. "/" .. k] = body; return {} end
  function s3:get_object(b, k)
    local v = W.objects[b .. "/" .. k]
    if not v then return nil, "NoSuchKey " .. k, "NoSuchKey" end
    return v, {}
  end
  function s3:delete_object(b, k) W.objects[b .. "/" .. k] = nil; return true end
  function s3:delete_prefix(b, prefix)
    W.deleted[#W.deleted + 1] = prefix
    for k in pairs(W.objects) do
      if k:sub(1, #b + 1 + #prefix) == b .. "/" .. prefix then W.objects[k] = nil end
    end
    return 0, {}
  end
  function s3:endpoint() return "http://127.0.0.1:9", "explicit" end

  local logs = {}
  function logs:get_log_events(_, stream)
    local out = {}
    for _, m in ipairs(W.streams[stream] or {}) do out[#out + 1] = { message = m } end
    return { events = out }
  end

  W.clients = { batch = batch, s3 = s3, logs = logs }
  return W
end

return _M
