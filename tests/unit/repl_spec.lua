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

  -- A session from scripted lines; returns everything written.
  local function session(inputs)
    local i, out = 0, {}
    local le = {
      readline = function() i = i + 1; return inputs[i] end,
      add_history = function() end, read_history = function() end,
      write_history = function() return true end, ensure_dir = function() return true end,
      interrupt_mode = function() end,
      set_completer = function(fn) out.completer = fn end,
    }
    local sink = { write = function(_, ...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end }
    repl.run(le, { out = sink, env = function() return nil end })
    return table.concat(out), out.completer
  end

  it("prints nil results, =EXPR values, and nothing for a statement", function()
    local text = session({ "nil", "=1, nil", "local quiet = 1" })
    assert.is_truthy(text:find("\nnil\n", 1, true))
    assert.is_truthy(text:find("\n1\tnil\n", 1, true))
    assert.are.equal(2, select(2, text:gsub("nil\n", "")))
  end)

  it("answers :help and refuses unknown :commands without running them as Lua", function()
    local text = session({ ":help", ":frob" })
    assert.is_truthy(text:find("Tab", 1, true))
    assert.is_truthy(text:find("=EXPR", 1, true))
    assert.is_truthy(text:find("unknown REPL command ':frob'", 1, true))
  end)

  it("makes luabatch a global and hands main.c its completer", function()
    local saved = rawget(_G, "luabatch")
    _G.luabatch = nil
    local text, completer = session({ "luabatch._VERSION" })
    assert.is_truthy(text:find('"0.1.0"', 1, true))
    assert.are.equal(require("luabatch"), rawget(_G, "luabatch"))
    assert.are.equal(repl.complete, completer)
    _G.luabatch = saved
  end)
end)

describe("luabatch.repl.complete #unit", function()
  it("completes globals and keywords", function()
    local c = repl.complete("pri")
    assert.are.same({ "print" }, c)
    local set = {}
    for _, w in ipairs(repl.complete("re")) do set[w] = true end
    assert.is_true(set["return"] and set["repeat"] and set["require"])
    assert.is_nil(set["print"])
  end)

  it("completes the fields of a table, through its dotted name", function()
    _G.cx = { alpha = 1, alpine = { deep = true }, beta = 2, ["not ident"] = 3 }
    assert.are.same({ "cx.alpha", "cx.alpine" }, repl.complete("cx.al"))
    assert.are.same({ "cx.alpine.deep" }, repl.complete("cx.alpine."))
    assert.are.same({}, repl.complete("cx.nothere."))
    assert.are.same({}, repl.complete("cx.beta."))   -- a number has no fields
    _G.cx = nil
  end)

  it("lists luabatch's submodules without loading them", function()
    local luabatch = require "luabatch"
    local saved = rawget(_G, "luabatch")
    _G.luabatch = luabatch
    local c = repl.complete("luabatch.")
    local set = {}
    for _, w in ipairs(c) do set[w] = true end
    assert.is_true(set["luabatch.s3"] and set["luabatch.credentials"] and set["luabatch._VERSION"])
    assert.are.same({ "luabatch.retry" }, repl.complete("luabatch.ret"))
    _G.luabatch = saved
  end)

  it("completes methods after ':' from the metatable's __index", function()
    _G.sx = "text"
    assert.are.same({ "sx:upper" }, repl.complete("sx:up"))
    _G.obj = setmetatable({ field = 1 }, { __index = { go = function() end, n = 3 } })
    assert.are.same({ "obj:go" }, repl.complete("obj:"))
    assert.are.same({ "obj.field", "obj.go", "obj.n" }, repl.complete("obj."))
    _G.sx, _G.obj = nil, nil
  end)

  it("offers nothing for what is not a name", function()
    assert.are.same({}, repl.complete("1."))
    assert.are.same({}, repl.complete("a..b"))
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

  it("lists lazily loaded submodules without loading them", function()
    local t = setmetatable({ _VERSION = "1" }, { __lazy = { s3 = "x.s3", log = "x.log" },
      __index = function() error("listing must not load") end })
    rawset(t, "log", { level = 1 })
    assert.are.equal('{\n  _VERSION = "1",\n  log = <module x.log>,\n  s3 = <module x.s3, not loaded>,\n}',
      pretty.format(t))
    assert.is_nil(rawget(t, "s3"))
  end)

  it("quotes strings with escapes and keeps keywords as bracketed keys", function()
    assert.are.equal('"a\\nb"', pretty.format("a\nb"))
    assert.are.equal('{\n  ["end"] = 1,\n}', pretty.format({ ["end"] = 1 }))
  end)
end)
