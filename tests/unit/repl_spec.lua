local repl = require "luabatch.repl"
local pretty = require "luabatch.pretty"

describe("luabatch.repl #unit", function()
  it("compiles an expression so that its value is returned", function()
    local fn = assert(repl.compile("1 + 2"))
    assert.are.equal(3, fn())
  end)

  it("compiles statements", function()
    local fn = assert(repl.compile("local x = 2; return x * 5"))
    assert.are.equal(10, fn())
  end)

  it("reports an unfinished chunk as incomplete", function()
    local fn, err, more = repl.compile("for i = 1, 3 do")
    assert.is_nil(fn)
    assert.is_true(more)
    assert.is_truthy(err:find("<eof>", 1, true))
  end)

  it("reports a real syntax error as complete", function()
    local fn, err, more = repl.compile("x = = 1")
    assert.is_nil(fn)
    assert.is_false(more)
    assert.is_truthy(err:find("unexpected symbol", 1, true))
  end)

  it("renders several results separated by tabs", function()
    assert.are.equal('1\t"a"\tnil', repl.render(3, 1, "a", nil))
  end)

  it("runs a session from a scripted line editor", function()
    local inputs = { "t = {}", "t.x = 40 + 2", "t", "for i = 1, 2 do", "t[i] = i end", "#t", nil }
    local i, out = 0, {}
    local le = {
      readline = function() i = i + 1; return inputs[i] end,
      add_history = function() end, read_history = function() end,
      write_history = function() return true end, ensure_dir = function() return true end,
      interrupt_mode = function() end,
    }
    local sink = { write = function(_, ...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end }
    repl.run(le, { out = sink, env = function() return nil end })
    local text = table.concat(out)
    assert.is_truthy(text:find("x = 42", 1, true))
    assert.is_truthy(text:find("\n2\n", 1, true))
    _G.t = nil
  end)
end)

describe("luabatch.pretty #unit", function()
  it("prints nested tables with sorted keys, arrays first", function()
    assert.are.equal('{\n  1,\n  "two",\n  b = true,\n  ["with space"] = 3,\n  z = {\n    k = "v",\n  },\n}',
      pretty.format({ 1, "two", z = { k = "v" }, b = true, ["with space"] = 3 }))
  end)

  it("marks cycles and limits depth", function()
    local t = {}
    t.self = t
    assert.are.equal("{\n  self = <cycle>,\n}", pretty.format(t))
    assert.are.equal("{\n  a = {...},\n}", pretty.format({ a = { b = 1 } }, { depth = 1 }))
  end)

  it("quotes strings with escapes and keeps keywords as bracketed keys", function()
    assert.are.equal('"a\\nb"', pretty.format("a\nb"))
    assert.are.equal('{\n  ["end"] = 1,\n}', pretty.format({ ["end"] = 1 }))
  end)
end)
