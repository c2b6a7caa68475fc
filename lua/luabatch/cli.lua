-- luabatch.cli: the command line of the `luabatch` executable.
--
--   luabatch                       REPL on a terminal (else: run stdin as Lua)
--   luabatch script.lua [args…]    run a Lua script with `arg` set as lua(1) does
--   luabatch -e 'code'             run code
--   luabatch --version | --help
--   luabatch COMMAND [args…]       a subcommand (see COMMANDS)
--   -v / -vv before anything else raise the log level to info / debug.
--
-- A first word that is neither a command nor a script (a path that exists,
-- or ends in .lua, or "-") is an unknown command: "luabatch: unknown
-- command 'stauts' (did you mean 'status'?)", exit 2 -- never "cannot open".
--
-- Exit codes: 0 success, 1 failure, 2 bad usage or bad input.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local io_stderr = io.stderr

-- Subcommands: name -> module (loaded on use) and a one-line summary.
local COMMANDS = {
  { "sign", "luabatch.cli.sign", "sign a request with SigV4 and show every step" },
  { "s3", "luabatch.cli.s3", "copy, list, delete objects; make buckets; presign URLs; abort uploads" },
  { "run", "luabatch.cli.run", "run a workflow (YAML) here or on AWS Batch" },
  { "runs", "luabatch.cli.runs", "list the journaled runs, newest first" },
  { "status", "luabatch.cli.status", "show the jobs of a run and their states" },
  { "logs", "luabatch.cli.logs", "print (or follow with -f) the log lines of a run's Batch jobs" },
  { "cancel", "luabatch.cli.cancel", "terminate the Batch jobs of a run" },
  { "attach", "luabatch.cli.attach", "resume watching and collecting a run after its client died" },
  { "cleanup", "luabatch.cli.cleanup", "delete a run's S3 prefix and journal (or all older than N days)" },
  { "task", "luabatch.cli.task", "run one job's stages inside a Batch container (the job command)" },
}

local USAGE = [==[
usage: luabatch [-v|-vv] [script.lua [args...] | -e CODE | COMMAND [args...]]
       luabatch --version

With no arguments on a terminal, luabatch starts an interactive Lua prompt
with the luabatch modules loaded (require "luabatch").

Commands:
]==]


local function usage()
  local lines = { USAGE }
  for _, c in ipairs(COMMANDS) do
    lines[#lines + 1] = ("  %-10s %s\n"):format(c[1], c[3])
  end
  lines[#lines + 1] = "\nEnvironment: LUABATCH_LOG=error|warn|info|debug, the usual AWS_* variables.\n"
  return table.concat(lines)
end


local function find_command(name)
  for _, c in ipairs(COMMANDS) do
    if c[1] == name then return c[2] end
  end
end


-- Edit distance with adjacent transpositions (optimal string alignment):
-- "stauts" -> "status" is 1.
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end


--- suggest(word, names) -> the name `word` was most likely meant to be, or
-- nil: the closest by edit distance (at most 1 for names of up to 4
-- letters, else 2), else the only name that starts with `word`.
function _M.suggest(word, names)
  local best, best_d
  local starts = {}
  for _, name in ipairs(names) do
    local d = distance(word:lower(), name)
    if d <= (#name <= 4 and 1 or 2) and (not best_d or d < best_d) then best, best_d = name, d end
    if #word >= 2 and name:sub(1, #word) == word then starts[#starts + 1] = name end
  end
  if best then return best end
  if #starts == 1 then return starts[1] end
end


--- The command names, in --help order.
function _M.commands()
  local names = {}
  for i, c in ipairs(COMMANDS) do names[i] = c[1] end
  return names
end


-- Is `a` meant as a script?  "-" (stdin), a path ending in .lua, or a file.
local function is_script(a)
  if a == "-" or a:find("%.lua$") then return true end
  local f = io.open(a, "r")
  if f then f:close() return true end
  return false
end


-- Run a chunk with a traceback on error; its integer return is the exit code.
local function run_chunk(fn, ...)
  local ok, res = xpcall(fn, debug.traceback, ...)
  if not ok then
    io_stderr:write("luabatch: ", log.redact(tostring(res)), "\n")
    return 1
  end
  if math.type and math.type(res) == "integer" then return res end
  if type(res) == "number" then return math.floor(res) end
  return 0
end


local function run_script(argv, first)
  local script = argv[first]
  local args = {}
  _G.arg = { [0] = script }
  for i = first + 1, #argv do
    args[#args + 1] = argv[i]
    _G.arg[#_G.arg + 1] = argv[i]
  end
  _G.arg[-1] = argv[0]
  local fn, err = loadfile(script ~= "-" and script or nil)
  if not fn then
    io_stderr:write("luabatch: ", err, "\n")
    return 2
  end
  return run_chunk(fn, (table.unpack or unpack)(args))
end


--- Entry point called by main.c with argv (argv[0] = program name).
function _M.main(argv)
  local i = 1
  while argv[i] == "-v" or argv[i] == "-vv" do
    log.set_level(argv[i] == "-v" and "info" or "debug")
    i = i + 1
  end
  local a = argv[i]
  local le_ok, le = pcall(require, "luabatch.lineedit")
  if a == nil then
    if le_ok and le.isatty(0) then return require("luabatch.repl").run(le) end
    return run_script(argv, i, "-")
  end
  if a == "--version" or a == "-V" then
    io.stdout:write("luabatch ", require("luabatch")._VERSION, " (", _VERSION,
      (jit and (", " .. jit.version) or ""), ")\n")
    return 0
  end
  if a == "--help" or a == "-h" or a == "help" then
    io.stdout:write(usage())
    return 0
  end
  if a == "-e" then
    local code = argv[i + 1]
    if not code then
      io_stderr:write("luabatch: -e needs an argument\n")
      return 2
    end
    local fn, err = load(code, "=(command line)")
    if not fn then
      io_stderr:write("luabatch: ", err, "\n")
      return 2
    end
    return run_chunk(fn)
  end
  local mod = find_command(a)
  if mod then
    local args = {}
    for j = i + 1, #argv do args[#args + 1] = argv[j] end
    if le_ok then le.interrupt_mode("flag") end
    return run_chunk(function() return require(mod).run(args) end)
  end
  if a:sub(1, 1) == "-" and a ~= "-" then
    io_stderr:write("luabatch: unknown option ", a, "\n", usage())
    return 2
  end
  if not is_script(a) then
    local guess = _M.suggest(a, _M.commands())
    io_stderr:write("luabatch: unknown command '", a, "'",
      guess and (" (did you mean '" .. guess .. "'?)") or "",
      "\nrun 'luabatch --help' for the commands; a script must exist or end in .lua\n")
    return 2
  end
  return run_script(argv, i)
end


return _M
