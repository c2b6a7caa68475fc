local cjson = require "cjson"
local template = require "luabatch.workflow.template"
local expr = require "luabatch.workflow.expr"

local NULL = cjson.null
local list = template.list

local function ctx()
  return {
    params = { env = "dev", n = 3, tags = list({ "a", "b" }), cfg = { region = "eu" }, none = NULL },
    matrix = { os = "linux", py = "3.11" },
    item = 4,
  }
end

local function ev(src) return expr.eval(src, ctx()) end

describe("luabatch.workflow.expr #unit", function()
  it("compares like Python (c05, c11)", function()
    assert.are.equal(false, ev("'dev' == 'prod'"))
    assert.are.equal(true, ev("4 >= 4"))
    assert.are.equal(true, ev("1 != '1'"))
    assert.are.equal(true, ev("True == 1"))
    assert.are.equal(true, ev("1 == 1.0"))
    assert.are.equal(false, ev("1 == 2"))
    assert.are.equal(true, ev("'abc' < 'abd'"))
    assert.are.equal(true, ev("[1, 2] < [1, 3]"))
    assert.are.equal(true, ev("1 < 2 < 3"))
    assert.are.equal(false, ev("3 < 2 < 4"))
    assert.are.equal(true, ev("None == None and None is None and 1 is not None"))
    assert.are.equal(true, ev("-1 < 0"))
  end)

  it("reads names from the context with .key, ['key'] and list indexes", function()
    assert.are.equal(true, ev("params.env == 'dev'"))
    assert.are.equal(true, ev("matrix['os'] == \"linux\""))
    assert.are.equal("b", ev("params.tags[1]"))
    assert.are.equal("b", ev("params.tags[-1]"))
    assert.are.equal("eu", ev("params['cfg'].region"))
    assert.are.equal(true, ev("item >= 4"))
    assert.are.equal(NULL, ev("params.none"))
  end)

  it("has in / not in on strings, lists and maps", function()
    assert.are.equal(true, ev("'a' in params.tags"))
    assert.are.equal(true, ev("'c' not in params.tags"))
    assert.are.equal(true, ev("'ev' in params.env"))
    assert.are.equal(true, ev("'region' in params.cfg"))
    assert.are.equal(true, ev("matrix.os in ['linux', 'mac']"))
  end)

  it("returns operands from and/or and a boolean from not", function()
    assert.are.equal("dev", ev("params.n and params.env"))
    assert.are.equal(0, ev("0 and params.env"))
    assert.are.equal("x", ev("'' or 'x'"))
    assert.are.equal(true, ev("not ''"))
    assert.are.equal(false, ev("not params.tags"))
    assert.are.equal(true, ev("not (1 == 2) and (True or False)"))
  end)

  it("knows the literals", function()
    assert.are.equal(true, ev("true"))
    assert.are.equal(false, ev("False"))
    assert.are.equal(NULL, ev("null"))
    assert.are.equal("ab", ev("'a' 'b'"))
    assert.are.equal("it's\n", ev([["it's\n"]]))
    assert.are.equal(1000, ev("1_000"))
    assert.are.equal(150.0, ev("1.5e2"))
  end)

  it("reports syntax errors with the column", function()
    local fn, err = expr.compile("x +")
    assert.is_nil(fn)
    assert.are.equal("expression 'x +': syntax error at column 3: arithmetic is not supported", err)
    assert.are.equal("expression '(1 == 1': syntax error at column 8: expected ')', found the end",
      select(2, expr.compile("(1 == 1")))
    assert.matches("column 1: unexpected character '@'", select(2, expr.compile("@x")))
    assert.matches("calls are not supported", select(2, expr.compile("len(params)")))
    assert.matches("unterminated string", select(2, expr.compile("'abc")))
    assert.matches("unexpected name 'b'", select(2, expr.compile("a b")))
    assert.matches("arithmetic", select(2, expr.compile("1 * 2")))
    assert.is_nil((expr.check("__import__('os')")))
    assert.is_true(expr.check("params.x == 1"))
  end)

  it("reports evaluation errors naming the expression", function()
    assert.are.equal("expression 'nope == 1': name 'nope' is not defined", select(2, ev("nope == 1")))
    assert.are.equal("expression '1 < 'a'': '<' not supported between instances of 'int' and 'str'",
      select(2, ev("1 < 'a'")))
    assert.matches("has no key 'zone'", select(2, ev("params.cfg.zone")))
    assert.matches("out of range", select(2, ev("params.tags[5]")))
    assert.matches("not iterable", select(2, ev("1 in 2")))
  end)

  it("compiles once and evaluates against many contexts", function()
    local fn = assert(expr.compile("item > 2"))
    assert.are.equal(true, fn({ item = 3 }))
    assert.are.equal(false, fn({ item = 1 }))
    assert.is_nil((fn({})))
  end)

  it("gives Python truthiness", function()
    assert.is_false(expr.truthy(NULL))
    assert.is_false(expr.truthy(0))
    assert.is_false(expr.truthy({}))
    assert.is_true(expr.truthy("0"))
    assert.is_true(expr.truthy({ 1 }))
  end)
end)
