-- luabatch.json: exact round trips of workflow contexts (ints vs floats,
-- [] vs {}), sorted keys, and errors that name the input and byte.
local json = require "luabatch.json"
local cjson = require "cjson"

describe("luabatch.json #unit", function()
  it("encodes with sorted keys, ints as ints and integral floats as floats (5.4)", function()
    local s = json.encode({ b = 1, a = { 3, "x" }, c = 2.5 })
    assert.equal('{"a":[3,"x"],"b":1,"c":2.5}', s)
    if math.type then
      assert.equal("[3,3.0]", json.encode({ 3, 3.0 }))
    end
  end)

  it("round-trips a context exactly: numbers, empty list vs empty object, null, escapes", function()
    local ctx = {
      status = "SUCCESS",
      jobs = { count = { strategies = setmetatable({}, json.object_mt),
                         stages = { s1 = { outputs = { n = 3, mean = 2.0, ratio = 0.1,
                                                       big = 9007199254740993 } } } } },
      list = setmetatable({}, json.list_mt),
      none = cjson.null,
      text = "tab\there \"quoted\" \\ new\nline \1 é 😀",
    }
    local s = json.encode(ctx)
    local back = assert(json.decode(s, "ctx.json"))
    assert.equal(s, json.encode(back))
    local out = back.jobs.count.stages.s1.outputs
    assert.equal(3, out.n)
    if math.type then
      assert.equal("integer", math.type(out.n))
      assert.equal("float", math.type(out.mean))
      assert.equal(9007199254740993, out.big)
    end
    assert.equal(cjson.null, back.none)
    assert.equal(ctx.text, back.text)
    assert.equal("array", json.jsontype(back.list))
    assert.equal("object", json.jsontype(back.jobs.count.strategies))
  end)

  it("decodes \\u escapes including surrogate pairs", function()
    assert.equal("é😀", json.decode('"\\u00e9\\ud83d\\ude00"'))
  end)

  it("pretty-prints with an indent", function()
    assert.equal('{\n  "a": [\n    1\n  ]\n}', json.encode({ a = { 1 } }, { indent = "  " }))
  end)

  for _, case in ipairs({
    { "[1,2", "',' or ']' expected" }, { '{"a" 1}', "':' expected" }, { "tru", "unexpected character" },
    { '"abc', "unterminated string" }, { "[1] x", "trailing characters" }, { "", "unexpected end" },
    { '{"a":01x}', "" }, { '"\\q"', "bad escape" },
  }) do
    it("rejects " .. case[1] .. " naming the input and byte", function()
      local v, msg, code = json.decode(case[1], "result.json")
      assert.is_nil(v)
      assert.equal("EPARSE", code)
      assert.matches("^result%.json: byte %d+: ", msg)
      assert.truthy(msg:find(case[2], 1, true))
    end)
  end

  it("refuses cycles and non-strings with clear errors", function()
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end, "json.encode: a cycle in the value")
    assert.has_error(function() json.decode(42) end)
  end)
end)
