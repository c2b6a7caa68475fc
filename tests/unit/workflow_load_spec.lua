-- luabatch.workflow.load: workflow files -> validated model, or
-- "FILE:LINE:COL: what is wrong" for bad input.
require "luabatch.runner"   -- the runners' types and with: schemas, for the loader
local load = require "luabatch.workflow.load"

local DIR = "tests/fixtures/workflows/"
local CONF = DIR .. "conf"

local function env(t) return function(name) return t[name] end end
local NO_ENV = env({})

-- Expect a load failure at FILE:LINE:COL whose text contains `text` (plain).
local function fails_with(file, line, col, text, model, msg, code)
  assert.is_nil(model)
  assert.are.equal("EINVAL", code)
  local prefix = string.format("%s:%d:%d: ", file, line, col)
  assert.are.equal(prefix, msg:sub(1, #prefix), "message: " .. tostring(msg))
  assert.is_truthy(msg:find(text, #prefix + 1, true), "message: " .. tostring(msg))
end

local function bad_file(name, line, col, text, opts)
  local path = DIR .. name
  fails_with(path, line, col, text, load.file(path, opts or { getenv = NO_ENV }))
end

local function bad_string(yaml, line, col, text, opts)
  fails_with("t.yml", line, col, text, load.string(yaml, "t.yml", opts or { getenv = NO_ENV }))
end

local function good_string(yaml, opts)
  local m, err = load.string(yaml, "t.yml", opts or { getenv = NO_ENV })
  assert(m, err)
  return m
end


describe("luabatch.workflow.load #unit", function()
  describe("bad input: one fixture per class of error", function()
    it("malformed YAML", function()
      bad_file("bad_yaml.yml", 7, 1, "did not find expected ',' or ']'")
    end)

    it("an unknown stage key names the key and lists the allowed ones", function()
      bad_file("bad_stage_key.yml", 7, 9, "unknown key 'timeuot' in bash stage 'Build' (allowed: bash, desc, env")
    end)

    it("a stage that validates as nothing (the reference's silent Empty fallback, c19)", function()
      bad_file("bad_stage_nothing.yml", 7, 21,
        "bash stage 'Looks like bash': env value of 'PORT' must be a string, got int 8080 (quote it: PORT: \"8080\")")
    end)

    it("an unsupported runs-on type", function()
      bad_file("bad_runs_on.yml", 5, 13,
        "runs-on type 'gcp_batch' is not supported by this build (supported: local, aws_batch, docker)")
    end)

    it("a needs cycle names the cycle at the need that closes it", function()
      bad_file("bad_cycle.yml", 9, 13, "needs cycle: a -> b -> a")
    end)

    it("a missing required param names the declaration (check_params, at run time)", function()
      local m = assert(load.file(DIR .. "bad_param_required.yml"))
      fails_with(DIR .. "bad_param_required.yml", 5, 5, "param 'region' is required but was not given",
        load.check_params(m, { name = "Ann" }))
      local values = assert(load.check_params(m, { name = "Ann", region = "eu" }))
      assert.are.equal("eu", values.region)
    end)

    it("a wrong param type: in the declaration (load) and in the given value (check_params)", function()
      bad_file("bad_param_type.yml", 5, 11, "param 'when': unknown type \"integer\"")
      local m = assert(load.file(DIR .. "good_full.yml"))
      fails_with(DIR .. "good_full.yml", 8, 5, "param 'limit': \"abc\" is not an int",
        load.check_params(m, { name = "x", limit = "abc", mode = "full" }))
    end)

    it("an unset ${VAR} in runs-on.with names the variable", function()
      bad_file("bad_env_var.yml", 8, 20,
        "job 'remote': runs-on.with.s3_bucket: environment variable 'LUABATCH_TEST_UNSET_BUCKET' is not set")
    end)

    it("a template naming a missing path loads (the engine finds it when it renders)", function()
      local m = assert(load.file(DIR .. "bad_template_path.yml"))
      assert.are.equal("tag=${{ params.tag }}", m.jobs.a.stages[1].echo)
    end)

    it("an expression with a syntax error shows the expression as written and the column", function()
      bad_file("bad_expr.yml", 8, 13,
        "stage 'Only prod': if: expression ''${{ params.env }}' == 'prod' and': syntax error at column 34")
    end)
  end)

  describe("bad input: more cases", function()
    it("other runs-on types", function()
      bad_string("jobs:\n  a:\n    runs-on: self_hosted\n", 3, 14, "runs-on type 'self_hosted' is not supported")
      bad_string("jobs:\n  a:\n    runs-on: {type: k8s}\n", 3, 21, "unknown runs-on type 'k8s' (supported: local, aws_batch, docker)")
    end)

    it("aws_batch with: required fields and types", function()
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with: {s3_bucket: b}\n", 5, 13,
        "runs-on aws_batch needs with.job_queue_arn")
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with: {s3_bucket: b, job_queue_arn: q, platform: lambda}\n",
        5, 56, "'platform' must be EC2 or FARGATE, got \"lambda\"")
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with:\n        s3_bucket: b\n        job_queue_arn: q\n        memory: lots\n",
        8, 17, "'memory' must be a positive integer, got \"lots\"")
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with:\n        s3_bucket: b\n        job_queue_arn: q\n        secrets: {TOKEN: arn}\n",
        8, 18, "'secrets.TOKEN' must be the ARN of a Secrets Manager secret")
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with:\n        s3_bucket: b\n        job_queue_arn: q\n        volumez: []\n",
        8, 9, "runs-on.with key 'volumez' is not a field of aws_batch (fields: array, ")
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with:\n        s3_bucket: b\n        job_queue_arn: q\n        timeout: 5\n",
        8, 18, "AWS Batch minimum")
    end)

    it("unset ${VAR} in a local runs-on.with too", function()
      bad_string("jobs:\n  a:\n    runs-on:\n      type: local\n      with: {dir: \"${NOPE_DIR}/x\"}\n", 5, 19,
        "environment variable 'NOPE_DIR' is not set")
    end)

    it("needs naming a missing job, and a self-need", function()
      bad_string("jobs:\n  a:\n    needs: [b]\n", 3, 13, "job 'a' needs 'b', which is not a job of this workflow (jobs: a)")
      bad_string("jobs:\n  a:\n    needs: [a]\n", 3, 13, "needs cycle: a -> a")
    end)

    it("a stage with no name and no stage key validates as nothing", function()
      bad_string("jobs:\n  a:\n    stages:\n      - id: x\n        command: ls\n", 5, 9,
        "stage validates as no stage type: unknown key 'command' and no 'name'")
      bad_string("jobs:\n  a:\n    stages:\n      - id: x\n", 4, 9, "missing required key 'name'")
      bad_string("jobs:\n  a:\n    stages:\n      - echo hi\n", 4, 9, "a stage must be a mapping")
    end)

    it("an explicit type must agree with the keys", function()
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, type: bash, run: 'x = 1'}\n", 4, 25,
        "stage type 'bash' does not agree with its keys: key 'run' makes it a py stage")
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, type: bash}\n", 4, 9, "missing required key 'bash'")
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, type: shell}\n", 4, 25, "unknown stage type 'shell'")
    end)

    it("unsupported stage kinds say so", function()
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, image: ubuntu}\n", 4, 19, "docker stages")
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, run: 'pass', deps: [numpy]}\n", 4, 32, "virtual-py stages")
    end)

    it("two keys of different kinds: the second is an unknown key", function()
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, bash: ls, run: 'x = 1'}\n", 4, 29,
        "unknown key 'run' in bash stage 'x'")
    end)

    it("stage identities are unique in a list", function()
      bad_string("jobs:\n  a:\n    stages:\n      - {name: A, id: s}\n      - {name: B, id: s}\n", 5, 9,
        "duplicate stage identity 's' (first at line 4)")
    end)

    it("id and name take only matrix templates", function()
      bad_string("jobs:\n  a:\n    stages:\n      - {name: \"x ${{ params.p }}\"}\n", 4, 16,
        "only ${{ matrix.* }} templates are allowed here")
    end)

    it("matrix values must be scalars; strategy numbers in range", function()
      bad_string("jobs:\n  a:\n    strategy:\n      matrix: {x: [1, [2]]}\n", 4, 23, "matrix 'x' item 2 must be a scalar, got sequence")
      bad_string("jobs:\n  a:\n    strategy:\n      matrix: {x: 1}\n", 4, 19, "matrix 'x' must be a list of values")
      bad_string("jobs:\n  a:\n    strategy:\n      max-parallel: 12\n      matrix: {x: [1]}\n", 4, 21,
        "'max-parallel' must be between 1 and 9, got 12")
      bad_string("jobs:\n  a:\n    strategy:\n      max-parallel: many\n", 4, 21, "'max-parallel' must be an integer or a ${{ }} template")
      bad_string("jobs:\n  a:\n    strategy:\n      matrix: {x: [1]}\n      exclude: [{y: 1}]\n", 5, 18,
        "exclude key 'y' is not a matrix key")
      bad_string("jobs:\n  a:\n    strategy:\n      matrix: {x: [1]}\n      fail_fast: true\n", 5, 7,
        "unknown key 'fail_fast' in job 'a' strategy")
    end)

    it("retry is an int in 0..19", function()
      bad_string("jobs:\n  a:\n    retry: 20\n", 3, 12, "'retry' must be between 0 and 19, got 20")
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, bash: ls, retry: 1.5}\n", 4, 36, "'retry' must be an integer")
      bad_string("jobs:\n  a:\n    stages:\n      - {name: x, echo: hi, retry: 1}\n", 4, 29, "unknown key 'retry'")
    end)

    it("a job key spelled the Python way gets a hint", function()
      bad_string("jobs:\n  a:\n    runs_on: local\n", 3, 5, "unknown key 'runs_on' in job 'a' (did you mean 'runs-on'?)")
    end)

    it("nested stages are validated too", function()
      bad_string("jobs:\n  a:\n    stages:\n      - name: P\n        parallel:\n          left:\n            - {name: L, sleep: 4000}\n",
        7, 32, "'sleep' must be a number of seconds in 0..1800")
      bad_string("jobs:\n  a:\n    stages:\n      - name: C\n        case: x\n        match:\n          - else: []\n          - else: []\n",
        8, 13, "a second 'else' entry (the first is at line 7)")
      bad_string("jobs:\n  a:\n    stages:\n      - name: F\n        foreach: [a, a]\n", 5, 22, "duplicate foreach item \"a\"")
      bad_string("jobs:\n  a:\n    stages:\n      - name: U\n        until: \"${{ item }} >=\"\n", 5, 16, "stage 'U': until: expression")
    end)

    it("a Lua stage with a syntax error", function()
      bad_string("jobs:\n  a:\n    stages:\n      - name: L\n        lua: |\n          return {\n", 5, 14, "Lua syntax error")
    end)

    it("a trigger stage running its own workflow", function()
      bad_string("name: me\njobs:\n  a:\n    stages: [{name: T, trigger: me}]\n", 4, 33, "triggers its own workflow 'me'")
    end)

    it("a call stage's uses format", function()
      bad_string("jobs:\n  a:\n    stages: [{name: C, uses: nothing}]\n", 3, 30, "'uses' must look like path/function@tag")
    end)

    it("a file with no workflow, or several", function()
      bad_string("foo: 1\n", 1, 1, "no workflow here")
      bad_string("a: {type: Workflow, jobs: {}}\nb: {type: Workflow, jobs: {}}\n", 1, 1,
        "this file holds several workflows (a, b)")
      bad_string("type: Job\njobs: {}\n", 1, 7, "'type' must be Workflow, got \"Job\"")
    end)

    it("an unreadable file", function()
      local m, msg, code = load.file(DIR .. "does-not-exist.yml")
      assert.is_nil(m)
      assert.are.equal("EINVAL", code)
      assert.is_truthy(msg:find("does-not-exist.yml", 1, true))
    end)
  end)

  describe("valid files", function()
    it("loads the full example into the model", function()
      local m = assert(load.file(DIR .. "good_full.yml"))
      assert.are.equal("wf-full", m.name)
      assert.are.equal(DIR .. "good_full.yml", m.file)
      assert.are.equal("Everything load knows about.", m.desc)
      assert.are.same({ "build", "report", "last" }, m.job_order)
      assert.are.same({ "name", "limit", "mode" }, m.param_order)
      assert.are.same({ line = 8, col = 5 }, m.param_pos.limit)
      assert.are.same({}, m.warnings)

      local b = m.jobs.build
      assert.are.equal("build", b.id)
      assert.are.same({ type = "local", with = {} }, b.runs_on)
      assert.are.equal("all_success", b.trigger_rule)
      assert.are.same({}, b.needs)
      assert.are.equal(0, b.retry)
      assert.are.same({ file = DIR .. "good_full.yml", line = 14, col = 3 },
        { file = b.pos.file, line = b.pos.line, col = b.pos.col })
      local s = b.strategy
      assert.are.same({ "os", "py" }, s.matrix_keys)
      assert.are.same({ os = { "linux", "mac" }, py = { "3.10", "3.11" } }, s.matrix)
      assert.are.same({ { os = "mac", py = "3.10" } }, s.exclude)
      assert.are.same({ { py = "3.12", os = "win" } }, s.include)
      assert.are.same({ { "py", "os" } }, s.include_keys)
      assert.are.equal(2, s.max_parallel)
      assert.is_true(s.fail_fast)

      local s1, s2 = b.stages[1], b.stages[2]
      assert.are.equal("empty", s1.kind)
      assert.are.equal("build-${{ matrix.os }}", s1.id)
      assert.are.equal("Build ${{ matrix.os }}", s1.name)
      assert.are.equal("${{ matrix.os }} ${{ matrix.py }}", s1.echo)
      assert.are.equal(0, s1.retry)
      assert.are.same({ DIR .. "good_full.yml", 27, 9 }, { s1.pos.file, s1.pos.line, s1.pos.col })
      assert.are.equal("bash", s2.kind)
      assert.are.equal("sh", s2.id)
      assert.are.equal(2, s2.retry)
      assert.are.equal('echo "$GREETING"\n', s2.bash)
      assert.are.same({ GREETING = "hello ${{ params.name }}" }, s2.env)

      local r = m.jobs.report
      assert.are.same({ "build" }, r.needs)
      assert.are.equal("all_done", r.trigger_rule)
      assert.are.equal("'${{ params.mode }}' == 'full'", r["if"])
      assert.is_nil(r.strategy)
      assert.are.equal("py", r.stages[1].kind)
      assert.are.equal('msg = "hi " + who\n', r.stages[1].run)
      assert.are.same({ who = "${{ params.name }}" }, r.stages[1].vars)
      assert.are.equal("lua", r.stages[2].kind)
      assert.are.equal(false, r.stages[2]["if"])
      assert.are.equal("return { n = 1 }\n", r.stages[2].lua)
      assert.are.equal("bash", r.stages[3].kind)

      assert.are.same({ "report", "build" }, m.jobs.last.needs)
      assert.are.equal(1, m.jobs.last.retry)
      assert.are.same({}, m.jobs.last.stages)
    end)

    it("loads every nested kind with its fields", function()
      local m = assert(load.file(DIR .. "good_nested.yml"))
      assert.are.equal("good_nested", m.name)   -- no name: the file's stem
      local st = m.jobs.nest.stages
      local kinds = {}
      for i, s in ipairs(st) do kinds[i] = s.kind end
      assert.are.same({ "empty", "parallel", "foreach", "foreach", "case", "until", "call", "trigger" }, kinds)
      assert.are.equal(0.5, st[1].sleep)
      assert.are.same({ "left", "right" }, st[2].branch_order)
      assert.are.equal(3, st[2].max_workers)
      assert.are.equal("${{ branch }}", st[2].parallel.left[1].echo)
      assert.are.equal("raise", st[2].parallel.right[1].kind)
      assert.are.equal("right branch broke", st[2].parallel.right[1]["raise"])
      assert.are.equal("${{ params.tables }}", st[3].foreach)
      assert.are.equal(2, st[3].concurrent)
      assert.are.equal("one", st[3].stages[1].id)
      assert.are.same({ 1, 2, 3 }, st[4].foreach)
      assert.are.equal(1, st[4].concurrent)
      assert.is_false(st[4].use_index_as_key)
      assert.are.equal("${{ params.region }}", st[5].case)
      assert.are.equal("us", st[5].match[1].case)
      assert.is_false(st[5].match[1].is_else)
      assert.are.equal("us", st[5].match[1].stages[1].id)
      assert.is_true(st[5].match[2].is_else)
      assert.are.equal("other", st[5].match[2].stages[1].id)
      assert.is_false(st[5].skip_not_match)
      assert.are.equal(1, st[6].item)
      assert.are.equal("${{ item }} >= 4", st[6]["until"])
      assert.are.equal(5, st[6].max_loop)
      assert.are.equal("lua", st[6].stages[1].kind)
      assert.are.equal("tasks/say-hello@v1", st[7].uses)
      assert.are.same({ who = "${{ params.name }}" }, st[7]["with"])
      assert.are.equal("other-workflow", st[8].trigger)
      assert.are.same({ x = 1 }, st[8].params)
    end)

    it("accepts a seed-like file without type: Workflow and substitutes ${VAR} in runs-on.with", function()
      local m = assert(load.file(DIR .. "good_seed.yml", {
        getenv = env({ AWS_BATCH_JOB_QUEUE_ARN = "arn:aws:batch:eu-west-1:1:job-queue/q", AWS_S3_BUCKET = "bkt" }) }))
      assert.are.equal("aws-batch-example", m.name)
      local ro = m.jobs.process.runs_on
      assert.are.equal("aws_batch", ro.type)
      assert.are.same({
        job_queue_arn = "arn:aws:batch:eu-west-1:1:job-queue/q", s3_bucket = "bkt", region_name = "us-east-1",
        image = "public.ecr.aws/docker/library/python:3.12", vcpus = 0.5, memory = 2048, platform = "FARGATE",
        timeout = 600, retry_attempts = 2, environment = { STAGE = "prod", WORKERS = "4" }, tags = { team = "data" },
        keep_on_failure = false,
      }, ro.with)
      assert.are.equal(1, #m.warnings)
      assert.is_truthy(m.warnings[1]:find(DIR .. "good_seed.yml:22:9: job 'process': runs-on.with key "
        .. "'compute_environment_type' is ignored by aws_batch (the job queue's compute environments", 1, true))
      assert.are.equal("py", m.jobs.process.stages[1].kind)
    end)

    it("keeps every runs-on.with field the provider reads (Fargate, array, queue name, endpoints)", function()
      local m = assert(load.string(table.concat({
        "jobs:", "  a:", "    runs-on:", "      type: aws_batch", "      with:",
        "        job_queue: q", "        s3_bucket: b", "        platform: fargate",
        "        platform_version: '1.4.0'", "        assign_public_ip: false", "        array: true",
        "        profile: dev", "        endpoint_url: http://127.0.0.1:1",
        "        batch_endpoint: http://127.0.0.1:2", "        s3_endpoint: http://127.0.0.1:3",
        "        logs_endpoint: http://127.0.0.1:4",
        "    stages:", "      - name: s", "", }, "\n"), "t.yml", { getenv = NO_ENV }))
      assert.are.same({}, m.warnings)
      assert.are.same({
        job_queue = "q", s3_bucket = "b", platform = "FARGATE", platform_version = "1.4.0",
        assign_public_ip = false, array = true, profile = "dev", endpoint_url = "http://127.0.0.1:1",
        batch_endpoint = "http://127.0.0.1:2", s3_endpoint = "http://127.0.0.1:3",
        logs_endpoint = "http://127.0.0.1:4",
      }, m.jobs.a.runs_on.with)
      bad_string("jobs:\n  a:\n    runs-on:\n      type: aws_batch\n      with: {s3_bucket: b, job_queue: q, array: 4}\n",
        5, 49, "'array' must be true or false, got 4")
    end)

    it("takes one workflow by name from a file keyed by name", function()
      local m = assert(load.file(CONF .. "/many.yml", { name = "wf-two" }))
      assert.are.equal("wf-two", m.name)
      assert.are.same({ "b" }, m.job_order)
      assert.are.same({ "who" }, m.param_order)   -- from the merged defaults
      local none, msg = load.file(CONF .. "/many.yml", { name = "wf-three" })
      assert.is_nil(none)
      assert.is_truthy(msg:find("no workflow named 'wf-three'", 1, true))
    end)

    it("gives the strategy in source key order, so matrix ids match the reference (c03)", function()
      local m = good_string([[
jobs:
  build:
    strategy:
      max-parallel: 2
      matrix: {os: [linux, mac], py: ["3.10", "3.11"]}
      exclude: [{os: mac, py: "3.10"}]
      include: [{os: win, py: "3.11"}, {py: "3.12", os: bsd}]
]])
      local s = m.jobs.build.strategy
      assert.are.same({ "os", "py" }, s.matrix_order)
      assert.are.same({ "os", "py" }, s.key_order(s.include[1]))
      assert.are.same({ "py", "os" }, s.key_order(s.include[2]))
      local ok, matrix = pcall(require, "luabatch.workflow.matrix")
      if not ok then return end
      local combos = assert(matrix.expand(s, s.key_order))
      local ids = {}
      for i, c in ipairs(combos) do ids[i] = c.id end
      assert.are.same({ "4839621107", "5446499804", "4839117674", "7494745413" }, { ids[1], ids[2], ids[3], ids[4] })
      assert.are.same({ "py", "os" }, combos[5].keys)
    end)

    it("keeps stage if: true/false as booleans and a job if: bool", function()
      local m = good_string("jobs:\n  a:\n    if: true\n    stages:\n      - {name: x, if: true, echo: hi}\n")
      assert.is_true(m.jobs.a["if"])
      assert.is_true(m.jobs.a.stages[1]["if"])
    end)

    it("accepts a template max-parallel and numeric strings", function()
      local m = good_string("jobs:\n  a:\n    strategy:\n      max-parallel: \"${{ params.w }}\"\n      matrix: {x: [1, 2.5, true]}\n")
      assert.are.equal("${{ params.w }}", m.jobs.a.strategy.max_parallel)
      assert.are.same({ 1, 2.5, true }, m.jobs.a.strategy.matrix.x)
      m = good_string("jobs:\n  a:\n    strategy:\n      max-parallel: \"3\"\n")
      assert.are.equal(3, m.jobs.a.strategy.max_parallel)
    end)

    it("a job's id key is ignored with a warning when it differs", function()
      local m = good_string("jobs:\n  a:\n    id: b\n")
      assert.are.equal("a", m.jobs.a.id)
      assert.are.equal(1, #m.warnings)
      assert.is_truthy(m.warnings[1]:find("t.yml:3:9:", 1, true))
    end)

    it("a desc: null is no desc (the reference crashes)", function()
      local m = good_string("desc: ~\njobs:\n  a:\n    desc: ~\n")
      assert.is_nil(m.desc)
      assert.is_nil(m.jobs.a.desc)
    end)
  end)

  describe("conf dir", function()
    it("lists the workflows, skipping .confignore matches and non-workflows", function()
      assert.are.same({ "wf-one", "wf-single", "wf-two" }, assert(load.workflow_names(CONF)))
    end)

    it("finds a workflow keyed by name and one with name:", function()
      local m = assert(load.find(CONF, "wf-one"))
      assert.are.equal("wf-one", m.name)
      assert.are.equal(CONF .. "/many.yml", m.file)
      assert.are.equal("one ${{ params.who }}", m.jobs.a.stages[1].echo)
      local s = assert(load.find(CONF, "wf-single"))
      assert.are.equal(CONF .. "/sub/single.yaml", s.file)
      assert.are.equal("trigger", s.jobs.only.stages[1].kind)
    end)

    it("does not find ignored or missing workflows", function()
      local m, msg, code = load.find(CONF, "wf-hidden")
      assert.is_nil(m)
      assert.are.equal("EINVAL", code)
      assert.is_truthy(msg:find("workflow 'wf-hidden' was not found", 1, true))
    end)

    it("resolve: a file path or a name in --conf", function()
      assert.are.equal("wf-full", assert(load.resolve(DIR .. "good_full.yml")).name)
      assert.are.equal("wf-two", assert(load.resolve("wf-two", { conf = CONF })).name)
      local m, msg = load.resolve("wf-two")
      assert.is_nil(m)
      assert.is_truthy(msg:find("--conf", 1, true))
    end)
  end)
end)
