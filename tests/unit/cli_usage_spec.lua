-- Every command's --help lists exactly the options its parser takes: the
-- option lines of each usage text (two spaces, then "-") are read and
-- compared with the spec handed to luabatch.cli.args.parse, so the two
-- cannot drift; the man page (man/luabatch.1) names each and the bash
-- completion (completions/luabatch.bash) offers exactly them.  Also: a
-- mistyped command gets a suggestion.

local args = require "luabatch.cli.args"
local cli = require "luabatch.cli"

-- Options an existing usage text is known to leave out (run.lua's text is
-- owned elsewhere); listed ones may be missing, nothing else may.
local KNOWN_MISSING = {}

-- The option names in a usage text's option lines ("  -f, --follow  ...").
local function documented(usage)
  local set = {}
  for line in usage:gmatch("[^\n]+") do
    local column = line:match("^  (%-.-)%s%s") or line:match("^  (%-%S+)$")
    if column then
      for name in column:gmatch("%-%-?%a[%w%-]*") do set[name] = true end
    end
  end
  return set
end

-- The spec `name`'s run() hands to args.parse on --help, and its usage.
local function parser_spec(name)
  local mod = require("luabatch.cli." .. name)
  local real, seen = args.parse, nil
  args.parse = function(argv, spec, popts)
    seen = seen or spec
    return real(argv, spec, popts)
  end
  local text = {}
  local sink = function(s) text[#text + 1] = s return true end
  local ok, err = pcall(mod.run, { "--help" }, { stdout = sink, stderr = sink,
    getenv = function() return nil end, isatty = function() return false end })
  args.parse = real
  assert(ok, err)
  local options = { ["-h"] = true, ["--help"] = true }
  for opt, s in pairs(assert(seen, name .. " never called args.parse")) do
    options[opt] = true
    local alias = type(s) == "table" and s.alias
    if type(alias) == "string" then options[alias] = true end
    if type(alias) == "table" then for _, a in ipairs(alias) do options[a] = true end end
  end
  return options, mod.usage, table.concat(text)
end

local function sorted(set)
  local l = {}
  for k in pairs(set) do l[#l + 1] = k end
  table.sort(l)
  return l
end

describe("luabatch command usage texts #unit", function()
  for _, name in ipairs(cli.commands()) do
    it(name .. " --help lists every option of its parser, and no other", function()
      local options, usage, printed = parser_spec(name)
      assert.are.equal(usage, printed)
      local listed = documented(usage)
      if name == "attach" then           -- passes the rest on to `luabatch run`
        for opt in pairs(parser_spec("run")) do
          if listed[opt] then options[opt] = true end
        end
      end
      local missing, unknown = {}, {}
      for opt in pairs(options) do
        if not listed[opt] and not (KNOWN_MISSING[name] or {})[opt] then missing[opt] = true end
      end
      for opt in pairs(listed) do
        if not options[opt] then unknown[opt] = true end
      end
      assert.are.same({}, sorted(missing), name .. ": options not in --help")
      assert.are.same({}, sorted(unknown), name .. ": --help lists options the parser refuses")
    end)
  end

  it("reads option lines, aliases included, and nothing else", function()
    local set = documented("usage: x [--no]\n\noptions:\n  -f, --follow  go\n"
      .. "  --header 'N: v'   a (also -H)\n                 -r: not an option line\n  cp SRC DST  no\n")
    assert.are.same({ "--follow", "--header", "-f" }, sorted(set))
  end)
end)

-- The options each command takes, as its --help lists them (run: its
-- parser's, aliases its text leaves out included).
local function options_of(name)
  local options, usage = parser_spec(name)
  local set = documented(usage)
  if name ~= "attach" then for opt in pairs(options) do set[opt] = true end end
  return set
end

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  return text
end

-- The man page's text of `name`'s section(s): from its first .SS to the
-- next .SS of another command (or .SH), escapes undone.
local function man_section(man, name)
  local lines, inside = {}, false
  for line in man:gmatch("[^\n]*") do
    local ss = line:match('^%.SS "?([%w%-]+)')
    if ss then inside = (ss == name)
    elseif line:find("^%.SH") then inside = false end
    if inside then lines[#lines + 1] = line end
  end
  local text = table.concat(lines, "\n"):gsub("\\f[BIRP]", ""):gsub("\\%-", "-")
  return text
end

describe("the man page and the bash completion #unit", function()
  local man = read("man/luabatch.1")
  local bash = read("completions/luabatch.bash")

  for _, name in ipairs(cli.commands()) do
    it("man/luabatch.1 has a section for " .. name .. " naming each of its options", function()
      local text = man_section(man, name)
      assert.is_true(#text > 0, "no .SS section for " .. name)
      local missing = {}
      for opt in pairs(options_of(name)) do
        if opt ~= "-h" and opt ~= "--help"
          and not (" " .. text .. " "):find("[^%w%-]" .. opt:gsub("%-", "%%-") .. "[^%w%-]") then
          missing[opt] = true
        end
      end
      assert.are.same({}, sorted(missing))
    end)

    it("the bash completion offers " .. name .. " and each of its options", function()
      assert.is_truthy(bash:match('_luabatch_commands="([^"]*)"'):find("%f[%w]" .. name .. "%f[^%w]"))
      local words = bash:match("\n%s+" .. name .. '%)%s+echo "([^"]*)"')
      assert.is_truthy(words, "no options line for " .. name)
      local offered = {}
      for w in words:gmatch("%S+") do offered[w] = true end
      local missing = {}
      for opt in pairs(options_of(name)) do
        if not offered[opt] then missing[opt] = true end
      end
      assert.are.same({}, sorted(missing))
      assert.is_true(offered["-h"] and offered["--help"])
    end)
  end
end)

describe("luabatch.cli.suggest #unit", function()
  local names = cli.commands()

  it("suggests the command a typo was meant to be", function()
    assert.are.equal("status", cli.suggest("stauts", names))   -- transposed letters
    assert.are.equal("cleanup", cli.suggest("clenup", names))  -- one letter missing
    assert.are.equal("s3", cli.suggest("s4", names))
    assert.are.equal("status", cli.suggest("stat", names))     -- the only one starting so
  end)

  it("suggests nothing for a word far from every command", function()
    assert.is_nil(cli.suggest("xyzzy", names))
    assert.is_nil(cli.suggest("deploy", names))
  end)
end)
