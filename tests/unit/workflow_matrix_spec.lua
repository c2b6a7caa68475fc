local matrix = require "luabatch.workflow.matrix"

local function ids(combos)
  local out = {}
  for i, c in ipairs(combos) do out[i] = c.id end
  return out
end

describe("luabatch.workflow.matrix #unit", function()
  describe("ids (§4.4)", function()
    it("matches the reference's hash_str of the Python repr", function()
      assert.are.equal("5446499804", matrix.id({ os = "linux", py = "3.11" }, { "os", "py" }))
      assert.are.equal("3941390096", matrix.id({ x = 1 }))
      assert.are.equal("7604506846", matrix.id({ n = 2 }))
      assert.are.equal("2150810470", matrix.id({ sleep = "1" }))
      assert.are.equal("1396677874", matrix.id({ n = 1 }))
      assert.are.equal("3472248012", matrix.id({ n = 3 }))
      assert.are.equal("EMPTY", matrix.id({}))
    end)

    it("keeps leading zeros and formats any scalar like Python (decision 15)", function()
      -- value from Python: str(int(sha256(repr(d).encode()).hexdigest(), 16))[-10:]
      assert.are.equal("{'a': True, 'b': 1.5, 'c': \"it's\"}",
        matrix.repr({ a = true, b = 1.5, c = "it's" }, { "a", "b", "c" }))
      assert.are.equal("0281634550", matrix.id({ a = true, b = 1.5, c = "it's" }, { "a", "b", "c" }))
    end)

    it("depends on the key order", function()
      assert.are_not.equal(matrix.id({ os = "linux", py = "3.11" }, { "py", "os" }),
        matrix.id({ os = "linux", py = "3.11" }, { "os", "py" }))
    end)
  end)

  describe("expand (§4.2)", function()
    it("expands c03: product, exclude, include, in the reference's order", function()
      local r = assert(matrix.expand({
        matrix = { os = { "linux", "mac" }, py = { "3.10", "3.11" } }, matrix_order = { "os", "py" },
        exclude = { { os = "mac", py = "3.10" } }, include = { { os = "win", py = "3.11" } } }))
      assert.are.same({ "4839621107", "5446499804", "4839117674", "7494745413" }, ids(r))
      assert.are.same({ os = "win", py = "3.11" }, r[4].values)
      assert.are.same({ "os", "py" }, r[1].keys)
    end)

    it("uses the order function for key order", function()
      local m = { os = { "linux" }, py = { "3.11" } }
      local r = assert(matrix.expand({ matrix = m }, function(t) if t == m then return { "py", "os" } end end))
      assert.are.same({ "py", "os" }, r[1].keys)
      assert.are.equal(matrix.id({ os = "linux", py = "3.11" }, { "py", "os" }), r[1].id)
    end)

    it("varies the last key fastest", function()
      local r = assert(matrix.expand({ matrix = { a = { 1, 2 }, b = { "x", "y" } }, matrix_order = { "a", "b" } }))
      local seq = {}
      for i, c in ipairs(r) do seq[i] = c.values.a .. c.values.b end
      assert.are.same({ "1x", "1y", "2x", "2y" }, seq)
    end)

    it("gives one EMPTY strategy without a matrix or when everything is excluded", function()
      assert.are.same({ { keys = {}, values = {}, id = "EMPTY" } }, matrix.expand({}))
      assert.are.same({ { keys = {}, values = {}, id = "EMPTY" } }, matrix.expand({ include = { { a = 1 } } }))
      assert.are.same({ { keys = {}, values = {}, id = "EMPTY" } },
        matrix.expand({ matrix = { a = { 1 } }, exclude = { { a = 1 } } }))
    end)

    it("skips a covered include and appends a partial one verbatim", function()
      local r = assert(matrix.expand({ matrix = { a = { 1, 2 }, b = { "x", "y" } }, matrix_order = { "a", "b" },
        include = { { a = 1, b = "x" }, { a = 3 } } }))
      assert.are.equal(5, #r)
      assert.are.same({ a = 3 }, r[5].values)
      assert.are.equal(matrix.id({ a = 3 }), r[5].id)
    end)

    it("compares type-sensitively in exclude", function()
      local r = assert(matrix.expand({ matrix = { n = { 1, 2 } }, exclude = { { n = "1" } } }))
      assert.are.equal(2, #r)
    end)

    it("accepts floats and booleans (decision 15)", function()
      local r = assert(matrix.expand({ matrix = { f = { 0.1 }, b = { true } }, matrix_order = { "f", "b" } }))
      assert.are.equal(matrix.hash_str("{'f': 0.1, 'b': True}"), r[1].id)
    end)

    it("rejects what the reference crashes on, with a message", function()
      assert.matches("not a matrix key", select(2, matrix.expand({ matrix = { a = { 1 } }, exclude = { { z = 1 } } })))
      assert.are.equal("Include should have the keys that equal to all final matrix.",
        select(2, matrix.expand({ matrix = { a = { 1 } }, include = { { z = 1 } } })))
      assert.are.equal("Include should have the keys that equal to all final matrix.",
        select(2, matrix.expand({ matrix = { a = { 1 } }, exclude = { { a = 1 } }, include = { { a = 2 } } })))
      assert.matches("must be a list", select(2, matrix.expand({ matrix = { a = "x" } })))
      assert.matches("holds a map", select(2, matrix.expand({ matrix = { a = { { k = 1 } } } })))
    end)
  end)
end)
