local cjson = require "cjson"
local template = require "luabatch.workflow.template"
local params = require "luabatch.workflow.params"

local NULL = cjson.null

local function decls(raw)
  local out, i = {}, 0
  for _, pair in ipairs(raw) do
    i = i + 1
    out[pair[1]] = assert(params.parse_decl(pair[1], pair[2], i))
  end
  return out
end

-- 2024-03-01T12:00:00Z
local NOW = 1709294400

describe("luabatch.workflow.params #unit", function()
  it("coerces the c02 params and injects the absent optional default (decision 4)", function()
    local d = decls({ { "run-date", "date" }, { "limit", "int" },
      { "mode", { type = "choice", options = { "full", "delta" } } },
      { "tag", { type = "str", default = "nightly" } } })
    local v = assert(params.receive(d, { ["run-date"] = "2024-03-01", limit = "10", mode = "delta" }))
    assert.are.same({ ["run-date"] = "2024-03-01", limit = 10, mode = "delta", tag = "nightly" }, v)
    if math.type then assert.are.equal("integer", math.type(v.limit)) end
  end)

  it("passes undeclared keys through and fills optional params without default with null", function()
    local d = decls({ { "a", "str" }, { "m", "map" }, { "l", "array" } })
    local v = assert(params.receive(d, { extra = 5 }))
    assert.are.equal(5, v.extra)
    assert.are.equal(NULL, v.a)
    assert.are.same({}, v.m)
    assert.are.equal("[]", template.pystr(v.l))
  end)

  it("uses the default when the value is given as null", function()
    local d = decls({ { "n", { type = "int", default = 4 } } })
    assert.are.equal(4, params.receive(d, { n = NULL }).n)
  end)

  it("converts like the reference", function()
    local d = decls({ { "s", "str" }, { "b", "str" }, { "f", "float" }, { "p", { type = "float", precision = 2 } },
      { "dec", "decimal" }, { "items", "array" }, { "cfg", "map" }, { "i", "int" } })
    local v = assert(params.receive(d, { s = 12, b = true, f = "1.23456789", p = 3.14159, dec = "2.5",
      items = '["x", "y"]', cfg = '{"region": "eu-west-1"}', i = " -7 " }))
    assert.are.equal("12", v.s)
    assert.are.equal("True", v.b)
    assert.are.equal(1.234568, v.f)
    assert.are.equal(3.14, v.p)
    assert.are.equal(2.5, v.dec)
    assert.are.same({ "x", "y" }, v.items)
    assert.are.equal("['x', 'y']", template.pystr(v.items))
    assert.are.same({ region = "eu-west-1" }, v.cfg)
    assert.are.equal(-7, v.i)
  end)

  it("keeps a datetime's offset by converting to UTC (decision 4)", function()
    local d = decls({ { "t", "datetime" }, { "day", "date" } })
    local v = assert(params.receive(d, { t = "2024-01-02T03:04:05+07:00", day = "2024-01-02T23:00:00-05:00" }))
    assert.are.equal("2024-01-01T20:04:05Z", v.t)
    assert.are.equal("2024-01-02", v.day)
    assert.are.equal("2024-01-02T03:04:05Z", params.receive(d, { t = "2024-01-02 03:04:05" }).t)
    assert.are.equal("2024-01-02T00:00:00Z", params.receive(d, { t = "2024-01-02" }).t)
    assert.are.equal("2023-12-31T22:30:00.250000Z", params.receive(d, { t = "2024-01-01T01:00:00.25+02:30" }).t)
  end)

  it("defaults date and datetime to today and now in UTC", function()
    local d = decls({ { "t", "datetime" }, { "day", "date" } })
    local v = assert(params.receive(d, {}, { now = NOW }))
    assert.are.equal("2024-03-01T12:00:00Z", v.t)
    assert.are.equal("2024-03-01", v.day)
  end)

  it("handles choices", function()
    local d = decls({ { "mode", { type = "choice", options = { "full", "delta" } } },
      { "n", { type = "choice", options = { 1, 2 }, required = false } } })
    assert.are.equal("full", params.receive(d, { mode = NULL }).mode)
    assert.are.equal(1, params.receive(d, { mode = "full" }).n)
    assert.are.equal(2, params.receive(d, { mode = "full", n = "2" }).n)
    local v, err, name = params.receive(d, { mode = "other" })
    assert.is_nil(v)
    assert.are.equal("ParamError", name)
    assert.matches([[param 'mode': "other" does not match any value in choice options]], err, 1, true)
  end)

  it("reports missing required params with the reference's wording", function()
    local d = decls({ { "b", { type = "str", required = true } }, { "a", { type = "int", required = true } } })
    local v, err, name = params.receive(d, {})
    assert.is_nil(v)
    assert.are.equal("Required Param on this workflow setting does not set: 'b', 'a'.", err)
    assert.are.equal("WorkflowError", name)
  end)

  it("reports values that do not fit clearly", function()
    local d = decls({ { "n", "int" }, { "f", "float" }, { "day", "date" }, { "l", "array" }, { "m", "map" } })
    local function err_of(given) return select(2, params.receive(d, given)) end
    assert.are.equal([[param 'n': "abc" is not an int]], err_of({ n = "abc" }))
    assert.are.equal([[param 'n': 1.5 is not an int]], err_of({ n = 1.5 }))
    assert.are.equal([[param 'f': "x1" is not a float]], err_of({ f = "x1" }))
    assert.are.equal([[param 'day': "2024-02-30" is not a date (YYYY-MM-DD)]], err_of({ day = "2024-02-30" }))
    assert.are.equal([[param 'l': "a,b" is not an array (a JSON list)]], err_of({ l = "a,b" }))
    assert.are.equal([[param 'm': "[1]" is not a map (a JSON object)]], err_of({ m = "[1]" }))
  end)

  it("validates declarations", function()
    assert.matches("unknown type \"bogus\"", select(2, params.parse_decl("x", "bogus")), 1, true)
    assert.matches("non%-empty list of options", select(2, params.parse_decl("c", { type = "choice" })))
    assert.matches("required must be", select(2, params.parse_decl("x", { type = "str", required = "yes" })))
    assert.matches([[param 'n': "x" is not an int (the default)]], select(2, params.parse_decl("n",
      { type = "int", default = "x" })), 1, true)
    local d = assert(params.parse_decl("mode", { type = "choice", options = { "a" }, desc = "the mode" }))
    assert.are.equal(true, d.required)
    assert.are.equal("the mode", d.desc)
    assert.are.equal(false, assert(params.parse_decl("s", "str")).required)
  end)
end)
