-- luabatch.cli.tabular: a text table that fits the terminal.
--
--   local tabular = require "luabatch.cli.tabular"
--   local width = tabular.width(env)                -- nil: not a terminal, no limit
--   out(tabular.render({ "JOB", "STATUS", "REASON" }, rows,
--     { width = width, shrink = { 3, 1 }, ellipsis = tabular.ellipsis(env) }))
--
-- Columns are as wide as their widest cell (widths count characters, not
-- bytes: UTF-8 text lines up), two spaces apart, trailing blanks trimmed.
-- When the table is wider than opts.width, the columns listed in
-- opts.shrink (the others keep their width) give up characters, in that
-- order (the first down to its header's width, at least 4, before the
-- next is touched); a cut cell ends with the ellipsis.  Nothing wraps.  Cells are strings (tabular.cell makes one
-- of any value: nil is "-", newlines and tabs become spaces).
--
-- env (the seam for tests): getenv, isatty = function(fd) -> bool,
-- term_width = function(fd) -> columns | nil (default: luabatch.lineedit's,
-- in the executable).

local _M = { _VERSION = "0.1.0" }

local type = type
local pcall = pcall
local ipairs = ipairs
local require = require
local tonumber = tonumber
local tostring = tostring
local str_format = string.format
local str_gsub = string.gsub
local str_rep = string.rep
local str_find = string.find
local str_gmatch = string.gmatch
local tbl_concat = table.concat
local floor = math.floor

local MIN_WIDTH = 4


--- cell(v) -> text of a value for a table cell ("-" for nil)
function _M.cell(v)
  if v == nil then return "-" end
  if type(v) == "number" and v == floor(v) then return str_format("%d", v) end
  return (str_gsub(tostring(v), "[\r\n\t]", " "))
end


--- len(s) -> characters in s (UTF-8 continuation bytes not counted)
function _M.len(s)
  local _, n = str_gsub(s, "[^\128-\191]", "")
  return n
end
local len = _M.len


--- cut(s, w, ellipsis) -> s when it fits in w characters, else its first
-- characters and the ellipsis, w characters in all
function _M.cut(s, w, ellipsis)
  if len(s) <= w then return s end
  local e = ellipsis or "..."
  local keep = w - len(e)
  if keep <= 0 then
    -- not even the ellipsis fits: the first w characters
    keep, e = w, ""
  end
  local parts, n = {}, 0
  for ch in str_gmatch(s, "[^\128-\191][\128-\191]*") do
    if n >= keep then break end
    n = n + 1
    parts[n] = ch
  end
  return tbl_concat(parts) .. e
end


local function lineedit()
  local ok, le = pcall(require, "luabatch.lineedit")
  return ok and type(le) == "table" and le or nil
end


--- width(env [, fd]) -> the columns a table on fd (default 1, stdout) may
-- use, or nil (no limit) when fd is not a terminal.  COLUMNS (a whole
-- number) wins over the terminal's own size; a terminal of unknown size is
-- 80 wide.
function _M.width(env, fd)
  env, fd = env or {}, fd or 1
  local isatty = env.isatty
  local le = (not isatty or not env.term_width) and lineedit() or nil
  if not isatty then isatty = le and le.isatty or function() return false end end
  if not isatty(fd) then return nil end
  local getenv = env.getenv or os.getenv
  local cols = tonumber(getenv("COLUMNS") or "")
  if cols and cols > 0 and cols == floor(cols) then return cols end
  local tw = env.term_width or (le and le.term_width)
  cols = tw and tw(fd)
  if type(cols) == "number" and cols > 0 then return cols end
  return 80
end


--- ellipsis(env) -> "…" when the locale is UTF-8 (LC_ALL, LC_CTYPE, LANG),
-- else "..."
function _M.ellipsis(env)
  local getenv = env and env.getenv or os.getenv
  for _, name in ipairs({ "LC_ALL", "LC_CTYPE", "LANG" }) do
    local v = getenv(name)
    if v and v ~= "" then
      if str_find(v:lower(), "utf%-?8") then return "\226\128\166" end
      return "..."
    end
  end
  return "..."
end


--- render(headers, rows [, opts]) -> text (one line per row, "\n" ended)
-- opts.width (nil: no limit), opts.shrink (column indexes that may be cut),
-- opts.ellipsis (default "...").
function _M.render(headers, rows, opts)
  opts = opts or {}
  local n = #headers
  local widths, mins = {}, {}
  for i, h in ipairs(headers) do widths[i] = len(h) end
  for _, r in ipairs(rows) do
    for i = 1, n do
      local w = len(r[i] or "")
      if w > widths[i] then widths[i] = w end
    end
  end
  if opts.width then
    local total = 2 * (n - 1)
    for i = 1, n do total = total + widths[i] end
    for _, i in ipairs(opts.shrink or {}) do
      mins[i] = len(headers[i]) > MIN_WIDTH and len(headers[i]) or MIN_WIDTH
    end
    -- in the order given: a column gives up all it can before the next
    for _, i in ipairs(opts.shrink or {}) do
      if total <= opts.width then break end
      local give = widths[i] - mins[i]
      if give > total - opts.width then give = total - opts.width end
      if give > 0 then
        widths[i] = widths[i] - give
        total = total - give
      end
    end
  end
  local ellipsis = opts.ellipsis or "..."
  local lines = {}
  local function line(r)
    local parts = {}
    for i = 1, n do
      local c = _M.cut(r[i] or "", widths[i], ellipsis)
      if i < n then c = c .. str_rep(" ", widths[i] - len(c)) end
      parts[i] = c
    end
    lines[#lines + 1] = (str_gsub(tbl_concat(parts, "  "), "%s+$", ""))
  end
  line(headers)
  for _, r in ipairs(rows) do line(r) end
  return tbl_concat(lines, "\n") .. "\n"
end


return _M
