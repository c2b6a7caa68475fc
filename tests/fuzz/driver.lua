-- tests/fuzz/driver.lua: the Lua side of fuzz_lua.c (embedded in it at
-- build time).  driver(target) -> fn(input): runs one fuzz input through
-- the template language, the `if:` expression language, luabatch.json or
-- the workflow loader.
-- Their contract: bad input gives nil, msg -- never a raised error, and
-- never a message that is a raw Lua error: the harness aborts on either,
-- which is a finding.
local json = require "luabatch.json"
local template = require "luabatch.workflow.template"
local expr = require "luabatch.workflow.expr"
local load = require "luabatch.workflow.load"

local NULL = json.null

local function ctx()   -- every kind of value a context holds, odd ones too
  return {
    params = {
      name = "ab", n = 3, neg = -7, f = 0.5, nan = 0 / 0, inf = math.huge, ninf = -math.huge,
      big = math.maxinteger, t = true, none = NULL, d = "2024-03-01", dt = "2024-03-01T04:05:06Z",
      list = template.list({ 1, "x", NULL, 2.5 }), empty = template.list({}),
      map = json.object({ a = 1, ["b c"] = "d", n = json.object({}) }), s = "a,b;c",
      pairs = template.list({ template.list({ "k", 1 }), template.list({ NULL, 2 }) }),
      nanpairs = template.list({ template.list({ 0 / 0, 1 }) }),
      listpairs = template.list({ template.list({ template.list({ 1 }), 2 }) }),
    },
    matrix = { os = "linux", n = 2 },
    stages = { s1 = { outputs = { x = "1", l = template.list({ "a" }) } } },
    jobs = { j = { stages = {} } },
    item = 1,
  }
end

local function getenv(n)
  if n == "HOME" then return "/h" elseif n == "EMPTY" then return "" end
end

-- A raw Lua error carries its chunk's location ("lua/luabatch/x.lua:N:");
-- the input itself, which messages quote, is taken out first.
local function clean(what, input, v, msg)
  if v == nil then
    if type(msg) ~= "string" then error(what .. ": nil without a message", 0) end
    local rest, i = {}, 1
    while true do
      local a, b = msg:find(input, i, true)
      if not a or #input == 0 then rest[#rest + 1] = msg:sub(i); break end
      rest[#rest + 1] = msg:sub(i, a - 1)
      i = b + 1
    end
    if table.concat(rest):find("luabatch/[%w_/]+%.lua:%d+:") then
      error(what .. ": raw Lua error: " .. msg, 0)
    end
  end
  return v
end

local run = {}

function run.template(s)
  clean("render", s, template.render(s, ctx(), { getenv = getenv }))
  clean("render env", s, template.render(s, ctx(), { env = true, expand_env = false }))
  clean("render list", s, template.render(template.list({ s, { k = s } }), ctx(), { getenv = getenv }))
  clean("env", s, template.env(s, getenv))
  clean("check", s, template.check(s))
  template.has(s)
  template.paths(s)
end

function run.expr(s)
  clean("check", s, expr.check(s))
  clean("eval", s, expr.eval(s, ctx()))
end

-- YAML text through luabatch.core's YAML binding into the workflow
-- model; a refusal names the place: "fuzz.yml:LINE:COL: ...".
function run.workflow(s)
  local model, msg = load.string(s, "fuzz.yml", { getenv = getenv })
  clean("load", s, model, msg)
  if model == nil and not msg:find("^fuzz%.yml:%d+:%d+: ") then
    error("load: a message without its place: " .. msg, 0)
  end
end

function run.json(s)
  local v = clean("decode", s, json.decode(s, "fuzz"))
  if v == nil then return end
  local e1 = json.encode(v)
  local v2, msg = json.decode(e1, "re-encoded")
  if v2 == nil then error("encode gave JSON decode refuses: " .. tostring(msg) .. " in " .. e1, 0) end
  if json.encode(v2) ~= e1 then error("encode(decode(encode(v))) differs: " .. e1, 0) end
end

return function(target)
  return assert(run[target], "unknown fuzz target")
end
