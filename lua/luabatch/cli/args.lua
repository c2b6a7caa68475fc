-- luabatch.cli.args: the option parser of the luabatch commands.
--
--   local args = require "luabatch.cli.args"
--   local o, pos = args.parse(argv, {
--     ["--json"]   = "flag",                             -- o.json = true
--     ["--home"]   = "value",                            -- o.home = "DIR"
--     ["--follow"] = { "flag", alias = "-f" },           -- -f too
--     ["--header"] = { "list", alias = "-H", key = "headers", check = pair },
--     ["--param"]  = { "map", alias = "-p", key = "params" },   -- K=V, repeatable
--   })
--   if not o then usage_error(pos) end                   -- pos is the message then
--
-- Kinds: "flag" (true), "value" (a string; the last one wins), "list"
-- (repeatable; the values in order), "map" (repeatable KEY=VALUE; o[key][K]
-- = V).  An option is stored under spec.key, else its name without the
-- leading dashes and with "-" as "_" ("--dry-run" -> o.dry_run).  spec.check
-- = function(word, name) -> value | nil, msg validates or converts the word
-- (a map's whole "K=V" word, before the split); spec.pattern (map) splits
-- it (default "^([^=]+)=(.*)$").  A list or map is absent until given.
--
-- Words: "--name=value" for long options; a value option takes the next
-- word whatever it looks like; "--" ends the options; "-" and words not
-- starting with "-" are positionals (kept in order); -h/--help set o.help
-- unless the spec names them.  popts.keep_unknown = true keeps unknown
-- options among the positionals (a command that passes them on).
--
-- Failure: nil, msg -- "unknown option --x", "--x needs a value", "--x
-- takes no value", "--x 'v': expected KEY=VALUE" or check's msg.  Options
-- are named as typed.  A bad spec raises.

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local str_sub = string.sub
local str_gsub = string.gsub
local str_match = string.match


local KINDS = { flag = true, value = true, list = true, map = true }
local DEFAULT_PATTERN = "^([^=]+)=(.*)$"


-- spec -> { [name or alias] = entry }; raises on a bad spec.
local function compile(spec)
  if type(spec) ~= "table" then
    error("bad argument #2 to 'parse' (table expected, got " .. type(spec) .. ")", 3)
  end
  local by_name = {}
  local function add(name, e)
    if type(name) ~= "string" or str_sub(name, 1, 1) ~= "-" or name == "-" or name == "--" then
      error("bad argument #2 to 'parse' (bad option name '" .. tostring(name) .. "')", 4)
    end
    if by_name[name] then
      error("bad argument #2 to 'parse' (option " .. name .. " given twice)", 4)
    end
    by_name[name] = e
  end
  for name, s in pairs(spec) do
    if type(s) == "string" then s = { s } end
    local kind = type(s) == "table" and (s.kind or s[1]) or nil
    if not KINDS[kind] then
      error("bad argument #2 to 'parse' (" .. tostring(name) .. ": unknown kind '" .. tostring(kind) .. "')", 3)
    end
    local e = {
      kind = kind,
      key = s.key or str_gsub(str_gsub(tostring(name), "^%-+", ""), "%-", "_"),
      check = s.check,
      pattern = s.pattern or DEFAULT_PATTERN,
    }
    add(name, e)
    local alias = s.alias
    if type(alias) == "string" then
      add(alias, e)
    elseif type(alias) == "table" then
      for _, a in ipairs(alias) do add(a, e) end
    end
  end
  return by_name
end


-- Store word (the value of option `name`) into o; nil, msg on a bad word.
local function store(o, e, name, word)
  local v = word
  if e.check then
    local msg
    v, msg = e.check(word, name)
    if v == nil then return nil, msg or ("bad " .. name .. " '" .. tostring(word) .. "'") end
  end
  if e.kind == "value" then
    o[e.key] = v
  elseif e.kind == "list" then
    local l = o[e.key] or {}
    l[#l + 1] = v
    o[e.key] = l
  else -- map
    local k, mv = str_match(tostring(v), e.pattern)
    if not k then return nil, name .. " '" .. tostring(word) .. "': expected KEY=VALUE" end
    local m = o[e.key] or {}
    m[k] = mv
    o[e.key] = m
  end
  return true
end


--- parse(argv, spec [, popts]) -> opts, positionals | nil, msg
function _M.parse(argv, spec, popts)
  if type(argv) ~= "table" then
    error("bad argument #1 to 'parse' (table expected, got " .. type(argv) .. ")", 2)
  end
  local by_name = compile(spec)
  local keep_unknown = popts and popts.keep_unknown
  local o, pos = {}, {}
  local i, n = 1, #argv
  local only_pos = false
  while i <= n do
    local a = argv[i]
    if only_pos or str_sub(a, 1, 1) ~= "-" or a == "-" then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    else
      local name, inline = str_match(a, "^(%-%-[^=]+)=(.*)$")
      name = name or a
      local e = by_name[name]
      if not e then
        if name == "-h" or name == "--help" then
          o.help = true
        elseif keep_unknown then
          pos[#pos + 1] = a
        else
          return nil, "unknown option " .. name      -- never echo a value
        end
      elseif e.kind == "flag" then
        if inline then return nil, name .. " takes no value" end
        o[e.key] = true
      else
        local word = inline
        if not word then
          i = i + 1
          word = argv[i]
          if word == nil then return nil, name .. " needs a value" end
        end
        local ok, msg = store(o, e, name, word)
        if not ok then return nil, msg end
      end
    end
    i = i + 1
  end
  return o, pos
end


return _M
