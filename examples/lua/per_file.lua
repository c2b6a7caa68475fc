-- examples/lua/per_file.lua: run a workflow once per input file found in S3
-- and collect the results -- an orchestration script on the Lua API.
--
--   luabatch examples/lua/per_file.lua s3://BUCKET/PREFIX/ [RUNS_ON]
--
-- For every object under the prefix, examples/lua/count.yml runs with the
-- object's URL as its `input` param (locally by default; RUNS_ON aws_batch
-- sends its jobs to Batch: the with: fields come from the environment).
-- Each run is journaled (`luabatch runs` lists them); the script prints one
-- line per file and a JSON summary, and exits 1 when any run failed.
local luabatch = require "luabatch"
local json = require "luabatch.json"

local url, runs_on = arg[1], arg[2]
local bucket, prefix = tostring(url):match("^s3://([^/]+)/?(.*)$")
if not bucket then
  io.stderr:write("usage: luabatch examples/lua/per_file.lua s3://BUCKET/PREFIX/ [RUNS_ON]\n")
  os.exit(2)
end

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local wf = assert(luabatch.workflow.load(here .. "/count.yml"))
local s3 = luabatch.s3.new()

local files = assert(s3:list_all(bucket, { prefix = prefix }))
local results, failed = {}, 0
for _, e in ipairs(files) do
  if e.key then
    local input = "s3://" .. bucket .. "/" .. e.key
    local ctx, info = wf:run({ params = { input = input }, runs_on = runs_on })
    if not ctx then error(info) end
    local out = ctx.jobs.count.stages.count.outputs
    results[#results + 1] = { input = input, run_id = info.run_id, status = ctx.status, lines = out and out.lines }
    if ctx.status ~= "SUCCESS" then failed = failed + 1 end
    print(string.format("%-40s %-8s %s lines  (run %s)", input, ctx.status, tostring(out and out.lines), info.run_id))
  end
end
print(json.encode({ files = #results, failed = failed, results = results }))
os.exit(failed == 0 and 0 or 1)
