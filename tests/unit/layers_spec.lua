-- The module layers of lua/luabatch: every `require` read from the sources
-- (comments left out), each module placed in a layer, and the rule checked:
-- a module requires only its own layer and the ones below, and no cycle.
--   util      core (C), log, json, aws.time, pretty
--   aws       config, retry, transport.*, request, credentials, aws.* (client),
--             clients, s3, batch, logs, poller
--   workflow  workflow.*, journal    (the runners reach it through
--                                     load/engine.use_runners, never a require)
--   runner    runner, runner.*, task, api.* (the Lua API: workflows, runs)
--   ngx       ngx.*
--   cli       cli, cli.*, repl, luabatch (the public entry)
-- A new module must be placed here; a file over 700 lines fails too.
local LAYERS = { "util", "aws", "workflow", "runner", "ngx", "cli" }
local PLACE = {
  ["luabatch.core"] = "util", ["luabatch.log"] = "util", ["luabatch.json"] = "util",
  ["luabatch.aws.time"] = "util", ["luabatch.pretty"] = "util",
  ["luabatch.config"] = "aws", ["luabatch.retry"] = "aws", ["luabatch.transport"] = "aws",
  ["luabatch.request"] = "aws", ["luabatch.credentials"] = "aws", ["luabatch.aws.client"] = "aws",
  ["luabatch.s3"] = "aws", ["luabatch.batch"] = "aws", ["luabatch.logs"] = "aws", ["luabatch.clients"] = "aws",
  ["luabatch.poller"] = "aws", ["luabatch.journal"] = "workflow",
  ["luabatch.workflow"] = "workflow",
  ["luabatch.runner"] = "runner", ["luabatch.task"] = "runner", ["luabatch.api"] = "runner",
  ["luabatch.ngx"] = "ngx",
  ["luabatch.cli"] = "cli", ["luabatch.repl"] = "cli", ["luabatch"] = "cli",
}
local TOO_BIG = {}   -- files over MAX_LINES that are known and to be split (none today)
local MAX_LINES = 700

local RANK = {}
for i, l in ipairs(LAYERS) do RANK[l] = i end

-- The layer of a module: its own entry, else its longest placed prefix
-- (the bare "luabatch", the public entry, is no prefix of the others).
local function layer_of(mod)
  if PLACE[mod] then return PLACE[mod] end
  local m = mod:match("^(.*)%.[^.]+$")
  while m and m ~= "luabatch" do
    if PLACE[m] then return PLACE[m] end
    m = m:match("^(.*)%.[^.]+$")
  end
  return nil
end

local function sources()
  local out = {}
  local p = assert(io.popen("find lua -name '*.lua' | sort"))
  for path in p:lines() do
    local mod = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    out[#out + 1] = { path = path, mod = mod }
  end
  p:close()
  return out
end

local function requires(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  local lines = select(2, text:gsub("\n", "\n"))
  text = text:gsub("%-%-%[(=*)%[.-%]%1%]", ""):gsub("%-%-[^\n]*", "")
  local deps = {}
  for q, name in text:gmatch("require%s*%(?%s*([\"'])([%w_.]+)%1") do
    if name:match("^luabatch") then deps[name] = true end
  end
  return deps, lines
end

-- Upward requires and unplaced modules of files -> sorted list of texts
local function violations(files)
  local bad = {}
  for _, s in ipairs(files) do
    local mine = layer_of(s.mod)
    if not mine then bad[#bad + 1] = s.mod .. ": no layer (place it in layers_spec.lua)" end
    for dep in pairs(s.deps) do
      local theirs = layer_of(dep)
      if mine and theirs and RANK[theirs] > RANK[mine] then
        bad[#bad + 1] = ("%s (%s) requires %s (%s): upward"):format(s.mod, mine, dep, theirs)
      end
    end
  end
  table.sort(bad)
  return bad
end

-- A cycle of graph (module -> set of modules) as "a -> b -> a", or nil
local function find_cycle(graph, order)
  local state, cycle = {}, nil
  local function visit(m, stack)
    if cycle then return end
    state[m] = "open"
    stack[#stack + 1] = m
    local deps = {}
    for dep in pairs(graph[m] or {}) do deps[#deps + 1] = dep end
    table.sort(deps)
    for _, dep in ipairs(deps) do
      if state[dep] == "open" then
        local from
        for i, x in ipairs(stack) do if x == dep then from = i end end
        cycle = table.concat(stack, " -> ", from) .. " -> " .. dep
        return
      elseif state[dep] == nil and graph[dep] then
        visit(dep, stack)
      end
      if cycle then return end
    end
    stack[#stack] = nil
    state[m] = "done"
  end
  for _, m in ipairs(order) do
    if state[m] == nil then visit(m, {}) end
  end
  return cycle
end

describe("module layers #unit", function()
  local graph, order, files = {}, {}, sources()
  for _, s in ipairs(files) do
    s.deps, s.lines = requires(s.path)
    graph[s.mod] = s.deps
    order[#order + 1] = s.mod
  end

  it("every module has a layer, and requires only its own and lower ones", function()
    assert.is_true(#files > 50)
    assert.same({}, violations(files))
  end)

  it("no require cycle", function()
    assert.is_nil(find_cycle(graph, order))
  end)

  it("catches what it guards: an upward require, an unplaced module and a cycle in made-up graphs", function()
    assert.same({ "luabatch.json (util) requires luabatch.workflow.template (workflow): upward",
                  "luabatch.zzz: no layer (place it in layers_spec.lua)" },
      violations({ { mod = "luabatch.json", deps = { ["luabatch.workflow.template"] = true, ["luabatch.log"] = true } },
                   { mod = "luabatch.zzz", deps = {} } }))
    assert.equal("luabatch.a -> luabatch.b -> luabatch.a",
      find_cycle({ ["luabatch.a"] = { ["luabatch.b"] = true }, ["luabatch.b"] = { ["luabatch.a"] = true } },
        { "luabatch.a", "luabatch.b" }))
    assert.is_nil(find_cycle({ ["luabatch.a"] = { ["luabatch.b"] = true }, ["luabatch.b"] = {} },
      { "luabatch.a", "luabatch.b" }))
  end)

  it("no Lua file over " .. MAX_LINES .. " lines (but the ones listed to split)", function()
    local big = {}
    for _, s in ipairs(files) do
      if s.lines > MAX_LINES and not TOO_BIG[s.path] then big[#big + 1] = s.path .. ": " .. s.lines end
    end
    assert.same({}, big)
  end)
end)
