-- luabatch.runner.aws_batch.waiting: why a Batch job sits RUNNABLE.
--
--   local waiting = require "luabatch.runner.aws_batch.waiting"
--   local text = waiting.hint(batch, job, secs)
--     -> "RUNNABLE for 2m05s: queue q ENABLED/VALID; q-ce ENABLED/VALID EC2, 0 of 256 vCPUs"
--
-- A job stays RUNNABLE while no compute environment of its queue can place
-- it: the queue or an environment disabled or INVALID, the environments at
-- their maxvCpus, or the job asking for more vCPUs or memory than any of
-- them can give.  The hint names what Batch says (DescribeJobQueues,
-- DescribeComputeEnvironments: two calls, made only once a job has waited
-- past the policy's runnable_hint), and the likely cause when it sees one.

local fmt_secs = require("luabatch.pretty").secs

local _M = { _VERSION = "0.1.0" }

local type = type
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local str_format = string.format
local tbl_concat = table.concat

local function state_of(x)
  return str_format("%s/%s", tostring(x.state or "?"), tostring(x.status or "?"))
end

-- The vCPUs a job asks for (resourceRequirements, else the legacy field).
local function vcpus_of(job)
  local c = type(job) == "table" and (job.container or {}) or {}
  for _, r in ipairs(c.resourceRequirements or {}) do
    if r.type == "VCPU" then return tonumber(r.value) end
  end
  return tonumber(c.vcpus)
end

-- The queue and its compute environments as Batch describes them (two
-- calls) -> { q, ces, msg }
local function describe(batch, qname)
  local ans, msg = batch:describe_job_queues({ qname })
  local q = ans and ans.jobQueues and ans.jobQueues[1]
  local ces = {}
  if q then
    local arns = {}
    for _, o in ipairs(q.computeEnvironmentOrder or {}) do arns[#arns + 1] = o.computeEnvironment end
    local cans = #arns > 0 and batch:describe_compute_environments(arns) or nil
    ces = cans and cans.computeEnvironments or {}
  end
  return { q = q, ces = ces, msg = msg }
end

--- hint(batch, job, secs [, seen]) -> text.  job: its DescribeJobs entry
-- (jobQueue, container); batch: a luabatch.batch client; seen: a table
-- kept for one look over the waiting jobs (a queue is described once).
function _M.hint(batch, job, secs, seen)
  local head = "RUNNABLE for " .. fmt_secs(secs or 0)
  local qname = type(job) == "table" and job.jobQueue
  if not qname then return head end
  seen = seen or {}
  seen[qname] = seen[qname] or describe(batch, qname)
  local d = seen[qname]
  local q, msg = d.q, d.msg
  if not q then return str_format("%s: queue %s: %s", head, tostring(qname), tostring(msg or "not found")) end
  local parts = { str_format("queue %s %s", tostring(q.jobQueueName or qname), state_of(q)) }
  local cause
  if q.state ~= "ENABLED" then cause = "the queue is " .. tostring(q.state) end
  local want, room = vcpus_of(job), 0
  local usable = 0
  for _, ce in ipairs(d.ces) do
    local cr = type(ce.computeResources) == "table" and ce.computeResources or {}
    local max = tonumber(cr.maxvCpus)
    local text = str_format("%s %s %s", tostring(ce.computeEnvironmentName), state_of(ce), tostring(cr.type or ce.type or ""))
    if max then
      local desired = tonumber(cr.desiredvCpus)
      text = text .. str_format(", %s of %d vCPUs", desired and str_format("%d", desired) or "?", max)
      if max > room then room = max end
    end
    parts[#parts + 1] = text
    if ce.state == "ENABLED" and ce.status == "VALID" then usable = usable + 1 end
  end
  if not cause and usable == 0 then
    cause = "no compute environment of the queue is ENABLED and VALID"
  elseif not cause and want and room > 0 and want > room then
    cause = str_format("the job asks for %s vCPUs, the largest environment allows %d", tostring(want), room)
  end
  local text = head .. ": " .. tbl_concat(parts, "; ")
  if cause then text = text .. " -- " .. cause end
  return text
end

return _M
