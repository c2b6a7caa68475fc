-- luabatch.repl: the interactive prompt of `luabatch` on a terminal.
--
-- As lua.c does: a line is first tried as `return <line>` (so expressions
-- print their values), then as a statement; while the only error is an
-- unfinished chunk (`<eof>`), more lines are read with the `>>` prompt.
-- Ctrl-C at the prompt drops the current input; during evaluation it
-- stops the code ("interrupted!") and returns to the prompt.  History is
-- kept in $XDG_STATE_HOME/luabatch/history (~/.local/state/...).
-- Values print through luabatch.pretty and errors through log.redact, so
-- credentials show as <redacted>.

local log = require "luabatch.log"
local pretty = require "luabatch.pretty"

local _M = { _VERSION = "0.1.0" }

local load = load
local os_getenv = os.getenv
local select = select
local tbl_concat = table.concat
local unpack = table.unpack or unpack


local function history_path(env)
  local base = env("XDG_STATE_HOME")
  if not base or base == "" then
    local home = env("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.local/state"
  end
  return base .. "/luabatch", base .. "/luabatch/history"
end


-- Is `err` the complaint of an unfinished chunk?  Lua 5.4 ends it with
-- `near <eof>`, LuaJIT with `near '<eof>'`.
local function incomplete(err)
  return type(err) == "string" and err:find("near '?<eof>'?$") ~= nil
end


--- Compile the text of one entry: an expression (printed) or statements.
-- Returns fn, nil | nil, err, is_incomplete
function _M.compile(text)
  local fn = load("return " .. text .. ";", "=stdin", "t")
  if fn then return fn end
  local err
  fn, err = load(text, "=stdin", "t")
  if fn then return fn end
  return nil, err, incomplete(err)
end


--- Render the results of one evaluation (n values) as one string.
function _M.render(n, ...)
  local parts = {}
  for i = 1, n do parts[i] = pretty.format((select(i, ...))) end
  return tbl_concat(parts, "\t")
end


local function evaluate(le, fn, out)
  le.interrupt_mode("error")
  local res = { xpcall(fn, debug.traceback) }
  if not res[1] then
    out:write(log.redact(res[2]), "\n")
    return
  end
  local n = #res - 1
  if n > 0 then out:write(_M.render(n, unpack(res, 2, n + 1)), "\n") end
end


--- Run the REPL until end of input.  `le` is the luabatch.lineedit module.
function _M.run(le, opts)
  opts = opts or {}
  local env = opts.env or os_getenv
  local out = opts.out or io.stdout
  local dir, hist = history_path(env)
  if hist and le.ensure_dir(dir) then le.read_history(hist) end
  out:write("luabatch ", require("luabatch")._VERSION, " (", _VERSION,
    (jit and (", " .. jit.version) or ""), ")  Ctrl-D exits, Ctrl-C cancels\n")
  local buffer
  while true do
    local line = le.readline(buffer and ">> " or "> ")
    if line == nil then break end
    if line == false then
      buffer = nil
    else
      buffer = buffer and (buffer .. "\n" .. line) or line
      local fn, err, more = _M.compile(buffer)
      if fn then
        le.add_history(buffer)
        buffer = nil
        evaluate(le, fn, out)
      elseif not more then
        le.add_history(buffer)
        buffer = nil
        out:write(log.redact(err), "\n")
      end
    end
  end
  out:write("\n")
  if hist then le.write_history(hist) end
  return 0
end


return _M
