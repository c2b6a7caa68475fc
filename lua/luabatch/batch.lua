-- luabatch.batch: the AWS Batch API (rest-json, 2016-08-10) on the generic
-- request path.
--
--   local batch = require("luabatch.batch").new({ region = "eu-west-1" })
--   local def = assert(batch:register_job_definition({
--     jobDefinitionName = "wf-abc", type = "container",
--     containerProperties = { image = "debian:bookworm-slim", command = { "sh", "-c", "echo hi" },
--       resourceRequirements = { { type = "VCPU", value = "1" }, { type = "MEMORY", value = "512" } } },
--   }))
--   local job = assert(batch:submit_job({ jobName = "j1", jobQueue = "q",
--     jobDefinition = def.jobDefinitionArn }))
--   local d = assert(batch:describe_jobs({ job.jobId }))
--   print(d.jobs[1].status)
--   for s, msg, code in batch:list_jobs({ jobQueue = "q", jobStatus = "RUNNING" }) do
--     if not s then error(msg) end
--     print(s.jobId, s.jobName, s.status)
--   end
--
-- Request tables use the API's own member names (camelCase, exactly as in
-- the botocore model); answers are the decoded JSON bodies.  Every failure
-- is nil, msg, code: the service's error code ("ClientException",
-- "ServerException", "TooManyRequestsException", ...), "HTTP_<n>" when the
-- answer names none, or a transport code ("ECONNECT", "ETIMEDOUT", ...).
-- Messages name the operation and its target, e.g.
-- "SubmitJob queue q: HTTP 400 ClientException: ... (hint: ...)", and never
-- contain a secret.  Throttling and 5xx answers are retried by the request
-- path (luabatch.retry) before a failure is returned.

local client = require "luabatch.aws.client"
local request = require "luabatch.request"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local pairs = pairs
local next = next
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local require = require
local str_match = string.match
local floor = math.floor

local uri_encode = request.uri_encode

--- Most job ids one DescribeJobs call accepts.
_M.MAX_DESCRIBE = 100

--- Batch's terminal job states (a job never leaves them).  The only
-- definition: everything else uses this table or FINAL.
_M.TERMINAL = { SUCCEEDED = true, FAILED = true }

--- The status luabatch.poller gives a job DescribeJobs stopped returning
-- (synthetic: never a Batch state).
_M.MISSING = "MISSING"

--- States after which a watcher stops: TERMINAL plus MISSING.  The pollers
-- and the runner stop on FINAL; the CLI uses TERMINAL, so it asks Batch
-- again about a job the journal recorded as MISSING.
_M.FINAL = { [_M.MISSING] = true }
for s in pairs(_M.TERMINAL) do _M.FINAL[s] = true end

--- Every job state, in order.
_M.STATUSES = { "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED" }

--- Default CloudWatch Logs group of Batch jobs (awslogs driver).
_M.DEFAULT_LOG_GROUP = "/aws/batch/job"


---------------------------------------------------------------------------
-- Construction
---------------------------------------------------------------------------

--- batch.new([opts]) -> client
-- opts.config       luabatch.config object (default config.new({ region, endpoints }))
-- opts.credentials  provider with :get() (default luabatch.credentials.new)
-- opts.transport    transport with :request(opts) (default luabatch.transport.curl)
-- opts.region       signing region (default: the configuration's)
-- opts.endpoint     base URL (default: config:endpoint("batch"))
-- opts.retry        luabatch.retry policy (default from the configuration)
-- opts.core, opts.sleep, opts.timeout, opts.connect_timeout, opts.read_timeout
--                   passed to luabatch.request
-- Nothing is resolved or probed until the first call.
function _M.new(opts)
  return setmetatable({ _opts = client.options(opts) }, mt)
end


--- The underlying luabatch.request client (created on first use).
function _M:client()
  local c = self._client
  if c then return c end
  c = client.for_service(self._opts, "batch", { protocol = "rest-json" })
  self._client = c
  return c
end


---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function argerror(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end


local function check_string(v, n, fname, what)
  if type(v) ~= "string" or v == "" then
    argerror(n, fname, what .. " expected, got "
      .. (type(v) == "string" and "an empty string" or type(v)))
  end
end


local function check_table(v, n, fname, what)
  if type(v) ~= "table" then
    argerror(n, fname, what .. " expected, got " .. type(v))
  end
end


local function check_list(v, n, fname, what, max)
  if type(v) ~= "table" then argerror(n, fname, "list of " .. what .. " expected, got " .. type(v)) end
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  if count ~= #v then argerror(n, fname, "list of " .. what .. " expected, got a map") end
  for i = 1, #v do
    if type(v[i]) ~= "string" or v[i] == "" then
      argerror(n, fname, what .. " " .. i .. " is " .. (type(v[i]) == "string" and "empty" or type(v[i])))
    end
  end
  if max and #v > max then
    argerror(n, fname, "at most " .. max .. " " .. what .. " per call, got " .. #v)
  end
end


-- Shallow copy of a request table (callers' tables are never modified).
local function copy(t)
  local out = {}
  if t then for k, v in pairs(t) do out[k] = v end end
  return out
end


-- A short name for a job definition / queue / job given as an ARN or name.
local function short(s)
  if type(s) ~= "string" then return tostring(s) end
  return str_match(s, "^arn:[^:]*:batch:[^:]*:[^:]*:[^/]*/(.+)$") or s
end
_M.short_name = short


-- POST a rest-json operation: answer (decoded JSON) | nil, msg, code.
local function post(self, op, uri, body, resource)
  local resp, msg, code = self:client():send({
    method = "POST", path = uri, json = body, operation = op, resource = resource,
  })
  if not resp then return nil, msg, code end
  return resp.json
end


local function describe_resource(what, list)
  if type(list) ~= "table" or #list == 0 then return what .. " (all)" end
  if #list == 1 then return what .. " " .. short(list[1]) end
  return what .. " (" .. #list .. ": " .. short(list[1]) .. ", ...)"
end


-- An iterator over the items (result_key) of every page of a paginated
-- operation: yields item, or false, msg, code once on failure.
local function paginate(fetch, body, result_key, label)
  local buf, i = {}, 0
  local done = false
  local pending          -- { msg, code } to yield once the buffer is drained
  local seen = {}
  return function()
    while true do
      i = i + 1
      if buf[i] ~= nil then return buf[i] end
      if pending then
        local p = pending
        pending = nil
        return false, p[1], p[2]
      end
      if done then return nil end
      local page, msg, code = fetch(body)
      if not page then
        done = true
        return false, msg, code
      end
      buf, i = page[result_key] or {}, 0
      if type(buf) ~= "table" then buf = {} end
      local tok = page.nextToken
      if type(tok) == "string" and tok ~= "" then
        if seen[tok] then
          -- a service answering the same token again would loop for ever
          done = true
          pending = { label .. ": the service returned nextToken " .. tok .. " twice; stopping the listing",
            "EPARSE" }
        end
        seen[tok] = true
        body.nextToken = tok
      else
        done = true
      end
    end
  end
end
_M._paginate = paginate


-- Collect every page of a paginated operation into one answer.
local function collect(fetch, body, result_key, label)
  local all = {}
  for item, msg, code in paginate(fetch, body, result_key, label) do
    if not item then return nil, msg, code end
    all[#all + 1] = item
  end
  return { [result_key] = all }
end


---------------------------------------------------------------------------
-- Job definitions
---------------------------------------------------------------------------

--- register_job_definition(def) -> { jobDefinitionName, jobDefinitionArn, revision } | nil, msg, code
-- def: the RegisterJobDefinition request (jobDefinitionName and type required).
function _M:register_job_definition(def)
  check_table(def, 1, "register_job_definition", "job definition table")
  check_string(def.jobDefinitionName, 1, "register_job_definition", "def.jobDefinitionName")
  check_string(def.type, 1, "register_job_definition", "def.type")
  return post(self, "RegisterJobDefinition", "/v1/registerjobdefinition", def,
    "job definition " .. def.jobDefinitionName)
end


local function fetch_defs(self)
  return function(body)
    local res = body.jobDefinitionName and ("job definition " .. body.jobDefinitionName)
      or describe_resource("job definitions", body.jobDefinitions)
    return post(self, "DescribeJobDefinitions", "/v1/describejobdefinitions", body, res)
  end
end


local function defs_body(filter, fname)
  if filter ~= nil and type(filter) ~= "table" then
    argerror(1, fname, "filter table expected, got " .. type(filter))
  end
  local body = copy(filter)
  -- conveniences: name / status / definitions in lower case
  if body.name then body.jobDefinitionName, body.name = body.name, nil end
  if body.definitions then body.jobDefinitions, body.definitions = body.definitions, nil end
  if body.jobDefinitions ~= nil then
    check_list(body.jobDefinitions, 1, fname, "job definitions", 100)
    if #body.jobDefinitions == 0 then body.jobDefinitions = nil end
  end
  return body
end


--- describe_job_definitions([filter]) -> answer | nil, msg, code: one
-- DescribeJobDefinitions call.  filter: { jobDefinitionName=, status="ACTIVE",
-- jobDefinitions={arn or name:revision, ...} (<= 100), maxResults=, nextToken= }
-- (name = and definitions = are accepted for the first and third).
-- answer: { jobDefinitions = {...}, nextToken = s|nil }.
function _M:describe_job_definitions(filter)
  return fetch_defs(self)(defs_body(filter, "describe_job_definitions"))
end


--- job_definitions([filter]) -> iterator over the job definitions of every
-- page; yields false, msg, code once on a failure.
function _M:job_definitions(filter)
  return paginate(fetch_defs(self), defs_body(filter, "job_definitions"), "jobDefinitions",
    "DescribeJobDefinitions")
end


--- deregister_job_definition(arn) -> {} | nil, msg, code
-- arn: the job definition ARN or "name:revision".
function _M:deregister_job_definition(arn)
  check_string(arn, 1, "deregister_job_definition", "job definition ARN or name:revision")
  return post(self, "DeregisterJobDefinition", "/v1/deregisterjobdefinition",
    { jobDefinition = arn }, "job definition " .. short(arn))
end


---------------------------------------------------------------------------
-- Jobs
---------------------------------------------------------------------------

--- submit_job(args) -> { jobId, jobName, jobArn } | nil, msg, code
-- args: the SubmitJob request (jobName, jobQueue, jobDefinition required;
-- parameters, containerOverrides, retryStrategy, timeout, tags, dependsOn,
-- arrayProperties, propagateTags, ... as in the API).
function _M:submit_job(args)
  check_table(args, 1, "submit_job", "SubmitJob request table")
  check_string(args.jobName, 1, "submit_job", "args.jobName")
  check_string(args.jobQueue, 1, "submit_job", "args.jobQueue")
  check_string(args.jobDefinition, 1, "submit_job", "args.jobDefinition")
  return post(self, "SubmitJob", "/v1/submitjob", args,
    "queue " .. short(args.jobQueue) .. " (job " .. args.jobName .. ")")
end


--- describe_jobs(ids) -> { jobs = {...} } | nil, msg, code
-- ids: list of 1..100 job ids (more raises: split them, or use
-- describe_jobs_all).  An empty list answers { jobs = {} } without a call.
function _M:describe_jobs(ids)
  check_list(ids, 1, "describe_jobs", "job ids", _M.MAX_DESCRIBE)
  if #ids == 0 then return { jobs = {} } end
  return post(self, "DescribeJobs", "/v1/describejobs", { jobs = ids },
    describe_resource("jobs", ids))
end


--- describe_jobs_all(ids) -> { jobs = {...} } | nil, msg, code: any number
-- of ids, in calls of at most 100 (the answers concatenated, in call order).
function _M:describe_jobs_all(ids)
  check_list(ids, 1, "describe_jobs_all", "job ids")
  local all = {}
  local n = #ids
  local first = 1
  while first <= n do
    local last = first + _M.MAX_DESCRIBE - 1
    if last > n then last = n end
    local chunk = {}
    for i = first, last do chunk[#chunk + 1] = ids[i] end
    local ans, msg, code = post(self, "DescribeJobs", "/v1/describejobs", { jobs = chunk },
      describe_resource("jobs", chunk))
    if not ans then return nil, msg, code end
    for _, j in ipairs(ans.jobs or {}) do all[#all + 1] = j end
    first = last + 1
  end
  return { jobs = all }
end


local function fetch_jobs(self)
  return function(body)
    local res
    if body.jobQueue then res = "queue " .. short(body.jobQueue)
    elseif body.arrayJobId then res = "array job " .. body.arrayJobId
    else res = "multi-node job " .. tostring(body.multiNodeJobId) end
    return post(self, "ListJobs", "/v1/listjobs", body, res)
  end
end


local function jobs_body(args, fname)
  check_table(args, 1, fname, "ListJobs request table")
  if args.jobQueue == nil and args.arrayJobId == nil and args.multiNodeJobId == nil then
    argerror(1, fname, "args.jobQueue, args.arrayJobId or args.multiNodeJobId expected")
  end
  return copy(args)
end


--- list_jobs_page(args) -> { jobSummaryList = {...}, nextToken = s|nil } | nil, msg, code:
-- one ListJobs call.  args: the ListJobs request (jobQueue | arrayJobId |
-- multiNodeJobId, jobStatus, filters = { { name = "JOB_NAME", values = {..} } },
-- maxResults, nextToken).
function _M:list_jobs_page(args)
  return fetch_jobs(self)(jobs_body(args, "list_jobs_page"))
end


--- list_jobs(args) -> iterator over the job summaries of every page
-- (following nextToken); yields false, msg, code once on a failure:
--   for s, msg, code in batch:list_jobs({ jobQueue = "q" }) do
--     if not s then return nil, msg, code end
--   end
-- Note: without jobStatus or filters, ListJobs answers RUNNING jobs only.
function _M:list_jobs(args)
  return paginate(fetch_jobs(self), jobs_body(args, "list_jobs"), "jobSummaryList", "ListJobs")
end


local function stop_job(self, op, uri, fname, id, reason)
  check_string(id, 1, fname, "job id")
  check_string(reason, 2, fname, "reason")
  return post(self, op, uri, { jobId = id, reason = reason }, "job " .. id)
end


--- terminate_job(id, reason) -> {} | nil, msg, code (stops the job even
-- when it is running; the reason becomes its statusReason).
function _M:terminate_job(id, reason)
  return stop_job(self, "TerminateJob", "/v1/terminatejob", "terminate_job", id, reason)
end


--- cancel_job(id, reason) -> {} | nil, msg, code (only jobs not yet
-- STARTING are cancelled; later ones are left alone by Batch).
function _M:cancel_job(id, reason)
  return stop_job(self, "CancelJob", "/v1/canceljob", "cancel_job", id, reason)
end


---------------------------------------------------------------------------
-- Queues and compute environments
---------------------------------------------------------------------------

local function describe_all(self, op, uri, fname, key, what, names)
  if names ~= nil then
    if type(names) == "string" then names = { names } end
    check_list(names, 1, fname, what .. " names or ARNs", 100)
  end
  local body = {}
  if names and #names > 0 then body[key] = names end
  local res = describe_resource(what, names)
  return collect(function(b) return post(self, op, uri, b, res) end, body, key, op .. " " .. res)
end


--- describe_job_queues([names]) -> { jobQueues = {...} } | nil, msg, code
-- names: a name or ARN, or a list of at most 100 (nil: every queue).  Every
-- page is read.
function _M:describe_job_queues(names)
  return describe_all(self, "DescribeJobQueues", "/v1/describejobqueues", "describe_job_queues",
    "jobQueues", "job queues", names)
end


--- describe_compute_environments([names]) -> { computeEnvironments = {...} } | nil, msg, code
-- as describe_job_queues.
function _M:describe_compute_environments(names)
  return describe_all(self, "DescribeComputeEnvironments", "/v1/describecomputeenvironments",
    "describe_compute_environments", "computeEnvironments", "compute environments", names)
end


---------------------------------------------------------------------------
-- Tags
---------------------------------------------------------------------------

local function tags_path(arn)
  return "/v1/tags/" .. uri_encode(arn)
end


--- tag_resource(arn, tags) -> {} | nil, msg, code; tags = { key = "value", ... }.
function _M:tag_resource(arn, tags)
  check_string(arn, 1, "tag_resource", "resource ARN")
  check_table(tags, 2, "tag_resource", "tags map")
  if next(tags) == nil then argerror(2, "tag_resource", "at least one tag expected") end
  for k, v in pairs(tags) do
    if type(k) ~= "string" or type(v) ~= "string" then
      argerror(2, "tag_resource", "tags must map strings to strings")
    end
  end
  return post(self, "TagResource", tags_path(arn), { tags = tags }, "resource " .. arn)
end


--- list_tags_for_resource(arn) -> { tags = { key = "value" } } | nil, msg, code
function _M:list_tags_for_resource(arn)
  check_string(arn, 1, "list_tags_for_resource", "resource ARN")
  local resp, msg, code = self:client():send({ method = "GET", path = tags_path(arn),
    operation = "ListTagsForResource", resource = "resource " .. arn })
  if not resp then return nil, msg, code end
  local ans = resp.json
  if type(ans.tags) ~= "table" then ans.tags = {} end
  return ans
end


--- untag_resource(arn, keys) -> {} | nil, msg, code; keys = { "k1", ... }.
function _M:untag_resource(arn, keys)
  check_string(arn, 1, "untag_resource", "resource ARN")
  check_list(keys, 2, "untag_resource", "tag keys", 50)
  if #keys == 0 then argerror(2, "untag_resource", "at least one tag key expected") end
  local query = {}
  for _, k in ipairs(keys) do query[#query + 1] = { "tagKeys", k } end
  local resp, msg, code = self:client():send({ method = "DELETE", path = tags_path(arn),
    query = query, operation = "UntagResource", resource = "resource " .. arn })
  if not resp then return nil, msg, code end
  return resp.json
end


---------------------------------------------------------------------------
-- Job descriptions
---------------------------------------------------------------------------

--- log_location(job [, attempt]) -> group, stream | nil: where a described
-- job's container writes its CloudWatch log (attempt: index into
-- job.attempts, default the current attempt = job.container).  nil when
-- the job has no log stream yet or does not use the awslogs driver.
function _M.log_location(job, attempt)
  check_table(job, 1, "log_location", "job description")
  local c
  if attempt then
    local a = type(job.attempts) == "table" and job.attempts[floor(attempt)] or nil
    c = a and a.container
  else
    c = job.container
  end
  if type(c) ~= "table" or type(c.logStreamName) ~= "string" or c.logStreamName == "" then
    return nil
  end
  local group = _M.DEFAULT_LOG_GROUP
  local lc = job.container and job.container.logConfiguration
  if type(lc) == "table" then
    if lc.logDriver and lc.logDriver ~= "awslogs" then return nil end
    local g = type(lc.options) == "table" and lc.options["awslogs-group"]
    if type(g) == "string" and g ~= "" then group = g end
  end
  return group, c.logStreamName
end


return _M
