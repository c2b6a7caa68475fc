-- Specs for luabatch.cli.args, the option parser of the luabatch commands.

local args = require "luabatch.cli.args"


describe("luabatch.cli.args #unit", function()
  local parse = args.parse

  it("reads flags, values, --name=value and positionals in order", function()
    local o, pos = parse({ "r1", "--home=/h", "--json", "--reason", "a b", "r2", "--", "-x", "--json" },
      { ["--home"] = "value", ["--json"] = "flag", ["--reason"] = "value" })
    assert.same({ home = "/h", json = true, reason = "a b" }, o)
    assert.same({ "r1", "r2", "-x", "--json" }, pos)
  end)

  it("keeps '-' as a positional and lets a value start with a dash", function()
    local o, pos = parse({ "-", "--home", "-x", "--home=" }, { ["--home"] = "value" })
    assert.same({ home = "" }, o)                 -- the last one wins
    assert.same({ "-" }, pos)
  end)

  it("stores under the name without dashes, '-' as '_', or spec.key", function()
    local o = parse({ "--dry-run", "--older-than", "7d", "--unsigned-payload" }, {
      ["--dry-run"] = "flag", ["--older-than"] = "value",
      ["--unsigned-payload"] = { "flag", key = "unsigned" } })
    assert.same({ dry_run = true, older_than = "7d", unsigned = true }, o)
  end)

  it("accepts short aliases, one or several", function()
    local spec = { ["--follow"] = { "flag", alias = "-f" },
                   ["--strategy"] = { kind = "value", alias = { "-s", "-S" } } }
    assert.same({ follow = true, strategy = "@array" }, (parse({ "-f", "-s", "@array" }, spec)))
    assert.same({ strategy = "3" }, (parse({ "-S", "3" }, spec)))
    assert.same({ strategy = "4" }, (parse({ "--strategy=4" }, spec)))
  end)

  it("collects a repeatable option into a list, absent until given", function()
    local spec = { ["--header"] = { "list", alias = "-H", key = "headers" } }
    assert.same({ headers = { "A: 1", "B: 2", "C: 3" } },
      (parse({ "--header", "A: 1", "-H", "B: 2", "--header=C: 3" }, spec)))
    assert.same({}, (parse({}, spec)))
  end)

  it("collects repeatable KEY=VALUE options into a map", function()
    local spec = { ["--param"] = { "map", alias = "-p", key = "params" },
                   ["--with"] = { "map", pattern = "^([%w_]+)=(.*)$" } }
    local o = parse({ "--param", "a=1", "-p", "b=x=y", "--param=c=", "--with", "s3_bucket=b" }, spec)
    assert.same({ params = { a = "1", b = "x=y", c = "" }, with = { s3_bucket = "b" } }, o)
    local bad, msg = parse({ "--param", "novalue" }, spec)
    assert.is_nil(bad)
    assert.equal("--param 'novalue': expected KEY=VALUE", msg)
    bad, msg = parse({ "--with", "a-b=1" }, spec)
    assert.is_nil(bad)
    assert.equal("--with 'a-b=1': expected KEY=VALUE", msg)
    bad, msg = parse({ "-p", "=1" }, spec)
    assert.is_nil(bad)
    assert.equal("-p '=1': expected KEY=VALUE", msg)
  end)

  it("validates and converts with check(word, name)", function()
    local function seconds(v, name)
      local n = tonumber(v)
      if not n or n < 1 then return nil, name .. " wants seconds, got '" .. v .. "'" end
      return n
    end
    local spec = {
      ["--expires"] = { "value", check = seconds },
      ["--header"] = { "list", check = function(v)
        local k, val = v:match("^(%S+):%s*(.*)$")
        if not k then return nil, "bad header '" .. v .. "'" end
        return { k, val }
      end },
      ["--metadata"] = { "map", check = function(v)
        if not v:find("=", 1, true) then return nil, "--metadata wants NAME=VALUE, got '" .. v .. "'" end
        return v
      end },
      ["--quiet"] = { "value", check = function() return nil end },
    }
    local o = parse({ "--expires", "60", "--header", "X: 1", "--metadata", "k=v" }, spec)
    assert.same({ expires = 60, headers = nil, header = { { "X", "1" } }, metadata = { k = "v" } }, o)
    local bad, msg = parse({ "--expires=0" }, spec)
    assert.is_nil(bad)
    assert.equal("--expires wants seconds, got '0'", msg)
    bad, msg = parse({ "--header", "nocolon" }, spec)
    assert.is_nil(bad)
    assert.equal("bad header 'nocolon'", msg)
    bad, msg = parse({ "--metadata", "k" }, spec)
    assert.is_nil(bad)
    assert.equal("--metadata wants NAME=VALUE, got 'k'", msg)
    bad, msg = parse({ "--quiet", "x" }, spec)                  -- check gave no message
    assert.is_nil(bad)
    assert.equal("bad --quiet 'x'", msg)
  end)

  it("sets help for -h and --help unless the spec names them", function()
    local o, pos = parse({ "-h", "x" }, {})
    assert.same({ help = true }, o)
    assert.same({ "x" }, pos)
    assert.same({ help = true }, (parse({ "--help" }, {})))
    assert.same({ h = "v" }, (parse({ "-h", "v" }, { ["-h"] = "value" })))
  end)

  it("fails on an unknown option, naming it without its value", function()
    local bad, msg = parse({ "--nope" }, {})
    assert.is_nil(bad)
    assert.equal("unknown option --nope", msg)
    bad, msg = parse({ "--secret=hunter2" }, {})
    assert.is_nil(bad)
    assert.equal("unknown option --secret", msg)
    bad, msg = parse({ "-x" }, { ["--x"] = "flag" })
    assert.is_nil(bad)
    assert.equal("unknown option -x", msg)
  end)

  it("fails on a missing value and on a value given to a flag", function()
    local bad, msg = parse({ "--home" }, { ["--home"] = "value" })
    assert.is_nil(bad)
    assert.equal("--home needs a value", msg)
    bad, msg = parse({ "-H" }, { ["--header"] = { "list", alias = "-H" } })
    assert.is_nil(bad)
    assert.equal("-H needs a value", msg)
    bad, msg = parse({ "--json=yes" }, { ["--json"] = "flag" })
    assert.is_nil(bad)
    assert.equal("--json takes no value", msg)
  end)

  it("keeps unknown options among the positionals when asked", function()
    local o, pos = parse({ "--follow", "r1", "--home", "/h", "--policy=p.lua", "-f", "x" },
      { ["--home"] = "value" }, { keep_unknown = true })
    assert.same({ home = "/h" }, o)
    assert.same({ "--follow", "r1", "--policy=p.lua", "-f", "x" }, pos)
  end)

  it("raises on misuse: no argv table, a bad spec", function()
    assert.has_error(function() parse(nil, {}) end,
      "bad argument #1 to 'parse' (table expected, got nil)")
    assert.has_error(function() parse({}, "x") end,
      "bad argument #2 to 'parse' (table expected, got string)")
    assert.has_error(function() parse({}, { ["--x"] = "flags" }) end,
      "bad argument #2 to 'parse' (--x: unknown kind 'flags')")
    assert.has_error(function() parse({}, { ["x"] = "flag" }) end,
      "bad argument #2 to 'parse' (bad option name 'x')")
    assert.has_error(function() parse({}, { ["--a"] = { "flag", alias = "-x" }, ["--b"] = { "flag", alias = "-x" } }) end,
      "bad argument #2 to 'parse' (option -x given twice)")
  end)
end)
