-- luabatch.cli: the command line of the `luabatch` executable.
--
--   luabatch                       REPL on a terminal (else: run stdin as Lua)
--   luabatch script.lua [args…]    run a Lua script with `arg` set as lua(1) does
--   luabatch -e 'code'             run code
--   luabatch --version | --help
--   luabatch COMMAND [args…]       a subcommand (see COMMANDS)
--   -v / -vv before anything else raise the log level to info / debug.
--
-- Exit codes: 0 success, 1 failure, 2 bad usage or bad input.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local io_stderr = io.stderr

-- Subcommands: name -> module (loaded on use) and a one-line summary.
local COMMANDS = {
  { "sign", "luabatch.cli.sign", "sign a request with SigV4 and show every step" },
  { "s3", "luabatch.cli.s3", "copy, list, delete objects; make buckets; presign URLs" },
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
  return run_script(argv, i)
end


return _M
