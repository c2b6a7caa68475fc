local cjson = require "cjson"
local template = require "luabatch.workflow.template"

local NULL = cjson.null

local list = template.list

local ENV = { DEPLOY_ENV = "prod", EMPTY = "", HOME = "/home/u" }
local function getenv(name) return ENV[name] end

local function ctx()
  return {
    params = { name = "Ann", items = list({ "x", "y" }), n = 7, cfg = { region = "eu-west-1" }, flag = true,
      nothing = NULL, ratio = 0.5, when = "2024-01-02T03:04:05Z", day = "2024-03-01" },
    stages = { s1 = { outputs = { x = 1 } } },
    jobs = { first = { stages = { produce = { outputs = { value = 41 } } } } },
  }
end

local function render(v, opts)
  opts = opts or {}
  opts.getenv = opts.getenv or getenv
  return template.render(v, ctx(), opts)
end

describe("luabatch.workflow.template #unit", function()
  describe("whole templates keep their native type (§6.3 step 4, c08)", function()
    it("returns lists, numbers, booleans and maps as they are", function()
      assert.are.same({ "x", "y" }, (render("${{ params.items }}")))
      assert.are.equal(7, render("${{ params.n }}"))
      assert.are.equal(true, render("${{params.flag}}"))
      assert.are.same({ region = "eu-west-1" }, (render("  ${{ params.cfg }}  ")))
      assert.are.equal(41, render("${{ jobs.first.stages.produce.outputs.value }}"))
    end)

    it("gives null for a missing optional segment and for a null value", function()
      assert.are.equal(NULL, render("${{ params.nope? }}"))
      assert.are.equal(NULL, render("${{ params.nothing }}"))
      assert.are.equal(NULL, render("${{ stages.sx?.outputs }}"))
      assert.are.equal(NULL, render("${{ params.cfg.zone? }}"))
    end)
  end)

  describe("embedded values use Python str()", function()
    it("formats lists, maps, numbers, None and booleans like Python", function()
      assert.are.equal("items=['x', 'y']", render("items=${{ params.items }}"))
      assert.are.equal("n=7", render("n=${{ params.n }}"))
      assert.are.equal("cfg={'region': 'eu-west-1'}", render("cfg={{ '${{ params.cfg }}' }}"):gsub("{{ '", ""):gsub("' }}", ""))
      assert.are.equal("flag=True none=None r=0.5", render("flag=${{ params.flag }} none=${{ params.nothing }} r=${{ params.ratio }}"))
      assert.are.equal("Hello Ann and Ann", render("Hello ${{ params.name }} and ${{params.name}}"))
    end)

    it("turns a result of exactly None into null", function()
      assert.are.equal(NULL, render("${{ params.nothing }}  "))
      assert.are.equal(NULL, render("None"))
    end)

    it("strips surrounding whitespace of every rendered string", function()
      assert.are.equal("hi", render("  hi \n"))
      assert.are.equal("a b", render("\ta b  "))
    end)

    it("leaves a template whose path breaks the reference's syntax literally", function()
      assert.are.equal("${{ stages.s1.outputs?.x }}", render("${{ stages.s1.outputs?.x }}"))
      assert.are.equal("v=${{ params.n | ab }}", render("v=${{ params.n | ab }}"))
    end)

    it("renders maps and lists element-wise and keeps keys", function()
      local out = render({ a = "${{ params.n }}", b = list({ " x ", "${{ params.name }}" }), c = 5, ["${{ k }}"] = "v" })
      assert.are.same({ a = 7, b = { "x", "Ann" }, c = 5, ["${{ k }}"] = "v" }, out)
      assert.are.equal(template.list_mt, getmetatable(out.b))
    end)
  end)

  describe("errors", function()
    it("names the path that does not resolve (c02 wording)", function()
      local v, err, code = render("tag=${{ params.tag }}")
      assert.is_nil(v)
      assert.are.equal("Parameters does not get dot with caller: 'params.tag'.", err)
      assert.are.equal("UtilError", code)
      assert.are.equal("Parameters does not get dot with caller: 'params.name.x'.",
        select(2, render("${{ params.name.x }}")))
    end)

    it("reports an unknown filter and a filter that does not fit", function()
      assert.are.equal("The post-filter: 'nope' does not support yet.", select(2, render("${{ params.n | nope }}")))
      assert.are.equal("The post-filter: 'upper' does not fit with 7 (type: int).",
        select(2, render("${{ params.n | upper }}")))
      assert.are.equal("The post-filter: 'getitem' does not fit with ['x', 'y'] (type: list).",
        select(2, render("${{ params.items | getitem('a') }}")))
    end)
  end)

  describe("filters (all available, decision 13)", function()
    it("applies built-in filters left to right", function()
      assert.are.equal("EU-WEST-1", render("${{ params.cfg.region | upper }}"))
      assert.are.equal("ann", render("${{ params.name | upper | lower }}"))
      assert.are.equal("Hello World", render("${{ params.x | title }}", nil) == nil and
        template.render("${{ s | title }}", { s = "hello world" }))
      assert.are.equal("7", render("${{ params.n | str }}"))
      assert.are.equal("'7'", render("${{ params.n | rstr }}"))
      assert.are.equal(12, template.render("${{ s | int }}", { s = " 12 " }))
      assert.are.equal(3, template.render("${{ s | int }}", { s = 3.9 }))
      assert.are.equal(5, template.render("${{ s | abs }}", { s = -5 }))
      assert.are.same({ "region" }, (render("${{ params.cfg | keys }}")))
      assert.are.same({ "eu-west-1" }, (render("${{ params.cfg | values }}")))
      assert.are.same({ "a", "b" }, (template.render("${{ s | list }}", { s = "ab" })))
    end)

    it("has fmt, coalesce, getitem and getindex", function()
      assert.are.equal("20240102", render("${{ params.when | fmt('%Y%m%d') }}"))
      assert.are.equal("2024-01-02 03:04:05", render("${{ params.when | fmt }}"))
      assert.are.equal("01/03/2024", render("${{ params.day | fmt(fmt='%d/%m/%Y') }}"))
      assert.are.equal("dflt", render("${{ params.nothing | coalesce('dflt') }}"))
      assert.are.equal("Ann", render("${{ params.name | coalesce('dflt') }}"))
      assert.are.equal("eu-west-1", render("${{ params.cfg | getitem('region') }}"))
      assert.are.equal("d", render("${{ params.cfg | getitem('zone', 'd') }}"))
      assert.are.equal("x", render("${{ params.items | getindex(0) }}"))
      assert.are.equal("y", render("${{ params.items | getindex(-1) }}"))
      local v, err = render("${{ params.items | getindex(5) }}")
      assert.is_nil(v)
      assert.matches("out of range", err)
    end)

    -- found probing the template fuzz contract: nil without a message
    it("getindex refuses an index that is not a whole number, cleanly", function()
      for _, src in ipairs({ "${{ params.items | getindex(0.5) }}", "${{ params.items | getindex(index=-1.5) }}" }) do
        local v, err, code = render(src)
        assert.is_nil(v)
        assert.matches("^The post%-filter: 'getindex' does not fit with %['x', 'y'%] %(type: list%)%.$", err)
        assert.are.equal("UtilError", code)
      end
      assert.are.equal("y", render("${{ params.items | getindex(1.0) }}"))
    end)

    -- found by tests/fuzz (template): a NaN key raised "table index is NaN"
    it("dict refuses keys a map cannot hold (NaN) or Python cannot hash (list), cleanly", function()
      local d = template.render("${{ s | dict }}", { s = list({ list({ "k", 1 }) }) })
      assert.are.same({ k = 1 }, d)
      for _, pair in ipairs({ list({ 0 / 0, 1 }), list({ list({ 1 }), 2 }), list({ { a = 1 }, 2 }) }) do
        local v, err, code = template.render("${{ s | dict }}", { s = list({ pair }) })
        assert.is_nil(v)
        assert.matches("^The post%-filter: 'dict' does not fit with", err)
        assert.are.equal("UtilError", code)
      end
    end)
  end)

  describe("environment substitution (§1, decision 2)", function()
    it("substitutes ${VAR}, ${ VAR }, ${VAR:default} and $$", function()
      assert.are.equal("prod", template.env("${DEPLOY_ENV}", getenv))
      assert.are.equal("prod", template.env("${ DEPLOY_ENV }", getenv))
      assert.are.equal("fallback", template.env("${NOT_SET_VAR:fallback}", getenv))
      assert.are.equal("-a", template.env("${NOT_SET_VAR:-a}", getenv))
      assert.are.equal("cost: $5", template.env("cost: $$5", getenv))
      assert.are.equal("$1 $NAME", template.env("$1 $NAME", getenv))
      assert.are.equal("s3://prod/x", template.env("s3://${DEPLOY_ENV}/x", getenv))
      assert.are.equal("fb", template.env("${EMPTY:fb}", getenv))
      assert.are.equal("", template.env("${EMPTY}", getenv))
    end)

    it("fails naming an unset variable without a default", function()
      local v, err = template.env("x=${NOT_SET_VAR}", getenv)
      assert.is_nil(v)
      assert.matches("'NOT_SET_VAR' is not set", err, 1, true)
      assert.is_nil((template.env("${}", getenv)))
    end)

    it("runs on rendered strings (c16) but not on whole templates", function()
      assert.are.equal("prod", render("${DEPLOY_ENV}"))
      assert.are.equal("cost: $5", render("cost: $$5"))
      assert.are.equal("prod-Ann", render("${DEPLOY_ENV}-${{ params.name }}"))
      local v, err = render("${NOT_SET_VAR}")
      assert.is_nil(v)
      assert.matches("NOT_SET_VAR", err)
      assert.are.equal("$$", template.render("${{ s }}", { s = "$$" }, { getenv = getenv }))
    end)

    it("runs once: opts.env (R+E fields) adds exact null, not a second pass (fix)", function()
      assert.are.equal("$$", template.render("$$$$", {}, { getenv = getenv, env = true }))
      assert.are.equal("$$", template.render("$$$$", {}, { getenv = getenv }))
      assert.are.equal("${DEPLOY_ENV}", template.render("$${DEPLOY_ENV}", {}, { getenv = getenv, env = true }))
      assert.are.equal(NULL, template.render("null", {}, { getenv = getenv, env = true }))
      assert.are.equal("null", template.render("null", {}, { getenv = getenv }))
    end)

    it("never runs on data: a value naming a secret variable stays its text", function()
      local function secret_env(n)
        if n == "AWS_SECRET_ACCESS_KEY" then return "wJalrXUtnFEMI-the-real-secret" end
        return getenv(n)
      end
      local ctx = { stages = { a = { outputs = { stdout = "${AWS_SECRET_ACCESS_KEY}" } } },
                    params = { p = "x ${AWS_SECRET_ACCESS_KEY:d} $$" } }
      for _, env in ipairs({ true, false }) do
        local o = { getenv = secret_env, env = env }
        assert.are.equal("got ${AWS_SECRET_ACCESS_KEY} in prod",
          template.render("got ${{ stages.a.outputs.stdout }} in ${DEPLOY_ENV}", ctx, o))
        assert.are.equal("${AWS_SECRET_ACCESS_KEY}", template.render("${{ stages.a.outputs.stdout }}", ctx, o))
        assert.are.equal("[x ${AWS_SECRET_ACCESS_KEY:d} $$]", template.render("[${{ params.p }}]", ctx, o))
        assert.are.same({ "x ${AWS_SECRET_ACCESS_KEY:d} $$" },
          template.render({ "${{ params.p }}" }, ctx, o))
      end
      -- the workflow's own text still gets the variable
      assert.are.equal("wJalrXUtnFEMI-the-real-secret",
        template.render("${AWS_SECRET_ACCESS_KEY}", ctx, { getenv = secret_env }))
    end)
  end)

  describe("check (load-time syntax)", function()
    it("accepts good templates and rejects unknown filters or bad arguments", function()
      assert.is_true(template.check("a ${{ params.x | upper | getitem('k', 1) }} ${HOME}"))
      assert.matches("'nope' does not support yet", select(2, template.check("${{ params.x | nope }}")))
      assert.matches("bad arguments", select(2, template.check("${{ params.x | getitem('k) }}")))
      assert.is_nil((template.check("${}")))
      assert.are.same({ "params.a", "matrix.b" }, template.paths("${{ params.a }}/${{ matrix.b | str }}"))
    end)
  end)

  describe("pystr / pyrepr", function()
    it("matches Python's str() and repr()", function()
      assert.are.equal("None", template.pystr(NULL))
      assert.are.equal("True", template.pystr(true))
      assert.are.equal("['a', 'b']", template.pystr(list({ "a", "b" })))
      assert.are.equal("{'k': 1}", template.pystr({ k = 1 }))
      assert.are.equal("[]", template.pystr(template.list({})))
      assert.are.equal("{}", template.pystr({}))
      assert.are.equal([["it's"]], template.pyrepr("it's"))
      assert.are.equal([['a"b\'c']], template.pyrepr("a\"b'c"))
      assert.are.equal([['a\nb\\\x01']], template.pyrepr("a\nb\\\1"))
      assert.are.equal("{'b': 2, 'a': 1}", template.pystr({ a = 1, b = 2 }, function() return { "b", "a" } end))
    end)

    it("prints floats like Python's repr", function()
      local cases = { { 0.1, "0.1" }, { 1e16, "1e+16" }, { 1.5e-5, "1.5e-05" }, { 0.0001, "0.0001" },
        { 123456789.123, "123456789.123" }, { -2.5, "-2.5" }, { 1 / 0, "inf" }, { 2 ^ 0.5, "1.4142135623730951" } }
      for _, c in ipairs(cases) do assert.are.equal(c[2], template.float_repr(c[1])) end
      if math.type then assert.are.equal("1.0", template.pystr(1.0)) end
    end)
  end)
end)

describe("template expanded size", function()
  local function with_max(n, fn)
    local saved = template.MAX_BYTES
    template.MAX_BYTES = n
    local ok, err = pcall(fn)
    template.MAX_BYTES = saved
    assert(ok, err)
  end

  it("a string rendering past MAX_BYTES (64 MiB) is an error naming the template", function()
    assert.equal(64 * 1024 * 1024, template.MAX_BYTES)
    local c = { params = { s = ("x"):rep(10) } }
    with_max(25, function()
      assert.equal(("x"):rep(20) .. " ab", template.render("${{ params.s }}${{ params.s }} ab", c))
      local v, msg, code = template.render("${{ params.s }}${{ params.s }}${{ params.s }}", c)
      assert.is_nil(v)
      assert.equal("template '${{ params.s }}${{ params.s }}${{ params.s }}' renders to more than 25 bytes", msg)
      assert.equal("UtilError", code)
      v, msg = template.render("${{ params.s }}${{ params.s }} and some literal text", c)   -- literal growth
      assert.is_nil(v)
      assert.matches("renders to more than 25 bytes", msg, 1, true)
    end)
    local filter = require "luabatch.workflow.template_filter"
    assert.equal(1024 * 1024, filter.MAX_LIST_CHARS)
    filter.MAX_LIST_CHARS = 9                        -- `| list`: an item per character
    local v, msg = template.render("${{ params.s | list }}", c)
    filter.MAX_LIST_CHARS = 1024 * 1024
    assert.is_nil(v)
    assert.equal("The post-filter: 'list' of a string of 10 bytes: more than the limit of 9", msg)
    v, msg = template.render("${{ params.s | abs }}", { params = { s = ("z"):rep(1000) } })
    assert.is_nil(v)                                 -- the value shown in the error is cut
    assert.equal("The post-filter: 'abs' does not fit with '" .. ("z"):rep(199) .. "... (type: str).", msg)
    with_max(5, function()                           -- one template, a native string over the limit
      local v, msg = template.render({ list = { "${{ params.s }}" } }, c)
      assert.is_nil(v)
      assert.equal("template '${{ params.s }}' renders to more than 5 bytes", msg)
    end)
  end)
end)
