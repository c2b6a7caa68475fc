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
--
-- Like lua(1) and the better REPLs: every result prints, nil included
-- (`nil` prints "nil"; a statement prints nothing); `=expr` is `return
-- expr`; `:help` lists what the prompt offers; `luabatch` is a global (the
-- library, submodules loaded on first use); Tab completes globals, fields
-- and methods (`luabatch.s3.` Tab Tab lists the module's fields) through
-- _M.complete, which main.c's libedit hook calls.

local log = require "luabatch.log"
local pretty = require "luabatch.pretty"

local _M = { _VERSION = "0.1.0" }

local getmetatable = getmetatable
local ipairs = ipairs
local load = load
local os_getenv = os.getenv
local pairs = pairs
local pcall = pcall
local select = select
local type = type
local str_find = string.find
local str_sub = string.sub
local tbl_concat = table.concat
local tbl_sort = table.sort
local unpack = table.unpack or unpack

local HELP = [[
luabatch REPL: Lua with the luabatch library.
  luabatch            the library, a global: luabatch.s3, luabatch.batch, ...
                      load on first use (printing `luabatch` lists them)
  EXPR  or  =EXPR     print the value(s) of EXPR, nil included
  STATEMENTS          run them (`local` names last for one entry); an
                      unfinished chunk continues on the ">>" prompt
  Tab                 complete a global, field or method: luabatch.s3.<Tab>
  :help               this text
  Ctrl-C              drop the input, or stop the running code
  Ctrl-D              leave (history: $XDG_STATE_HOME/luabatch/history)
]]

local KEYWORDS = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
  "true", "until", "while",
}


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


--- Compile the text of one entry: an expression (printed) or statements;
-- "=EXPR" is an expression only.
-- Returns fn, nil | nil, err, is_incomplete
function _M.compile(text)
  local fn, err
  if str_sub(text, 1, 1) == "=" then
    fn, err = load("return " .. str_sub(text, 2) .. ";", "=stdin", "t")
    if fn then return fn end
    return nil, err, incomplete(err)
  end
  fn = load("return " .. text .. ";", "=stdin", "t")
  if fn then return fn end
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


-- Add to `set` the string keys of v usable after "." (identifiers),
-- following metatables' __index tables (methods) and __lazy (luabatch's
-- submodules, not loaded by this).
local function collect(v, set, depth)
  if type(v) == "table" then
    for k in pairs(v) do
      if type(k) == "string" and str_find(k, "^[%a_][%w_]*$") then set[k] = true end
    end
  end
  local mt = depth < 4 and getmetatable(v)
  if type(mt) ~= "table" then return end
  local lazy = rawget(mt, "__lazy")
  if type(lazy) == "table" then
    for k in pairs(lazy) do set[k] = true end
  end
  local index = rawget(mt, "__index")
  if type(index) == "table" then collect(index, set, depth + 1) end
end


-- The value of a dotted name ("luabatch.s3") from the globals, or nil.
local function resolve(path)
  local v = _G
  for part in (path .. "."):gmatch("([^.]*)%.") do
    if not str_find(part, "^[%a_][%w_]*$") then return nil end
    local ok, x = pcall(function() return v[part] end)
    if not ok or x == nil then return nil end
    v = x
  end
  return v
end


--- complete(word) -> sorted array of completions of `word`, each the whole
-- word: globals and keywords ("pri" -> "print"), fields after "."
-- ("luabatch.s" -> "luabatch.s3"), methods after ":" ("s:up" -> "s:upper").
function _M.complete(word)
  local head, sep, tail = word:match("^(.-)([.:])([%w_]*)$")
  local set, prefix = {}, ""
  if head then
    local v = resolve(head)
    if v == nil then return {} end
    collect(v, set, 0)
    prefix = head .. sep
    if sep == ":" then          -- methods only
      for k in pairs(set) do
        local ok, f = pcall(function() return v[k] end)
        if not ok or type(f) ~= "function" then set[k] = nil end
      end
    end
  elseif str_find(word, "^[%w_]*$") then
    tail = word
    collect(_G, set, 0)
    for _, k in ipairs(KEYWORDS) do set[k] = true end
  else
    return {}
  end
  local res = {}
  for k in pairs(set) do
    if str_sub(k, 1, #tail) == tail then res[#res + 1] = prefix .. k end
  end
  tbl_sort(res)
  return res
end


-- Results with their count (nil values kept: `nil` prints "nil").
local function pack(...)
  return { n = select("#", ...), ... }
end


local function evaluate(le, fn, out)
  le.interrupt_mode("error")
  local res = pack(xpcall(fn, debug.traceback))
  if not res[1] then
    out:write(log.redact(res[2]), "\n")
    return
  end
  local n = res.n - 1
  if n > 0 then out:write(_M.render(n, unpack(res, 2, n + 1)), "\n") end
end


-- A ":command" line: true when handled.
local function command(line, out)
  local name = line:match("^:(%a+)%s*$")
  if not name and not str_find(line, "^:%a") then return false end
  if name == "help" or name == "h" then
    out:write(HELP)
  else
    out:write("unknown REPL command '", line, "' (:help lists them)\n")
  end
  return true
end


--- Run the REPL until end of input.  `le` is the luabatch.lineedit module.
function _M.run(le, opts)
  opts = opts or {}
  local env = opts.env or os_getenv
  local out = opts.out or io.stdout
  local dir, hist = history_path(env)
  if hist and le.ensure_dir(dir) then le.read_history(hist) end
  local luabatch = require "luabatch"
  if rawget(_G, "luabatch") == nil then _G.luabatch = luabatch end
  if le.set_completer then le.set_completer(_M.complete) end
  out:write("luabatch ", luabatch._VERSION, " (", _VERSION,
    (jit and (", " .. jit.version) or ""), ")  :help for help, Tab completes, Ctrl-D exits\n")
  local buffer
  while true do
    local line = le.readline(buffer and ">> " or "> ")
    if line == nil then break end
    if line == false then
      buffer = nil
    elseif not buffer and command(line, out) then
      le.add_history(line)
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
