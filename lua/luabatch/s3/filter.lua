-- luabatch.s3.filter: the --exclude / --include filters of `luabatch s3
-- sync` and `s3 cp -r`, with awscli's semantics, pure Lua.
--
--   local filter = require "luabatch.s3.filter"
--   local f = filter.new({ { "exclude", "*" }, { "include", "*.txt" } })
--   f:includes("a/b.txt")   --> true
--   filter.glob("*.t?t", "a/b.txt")  --> true
--
-- Every path is included until a filter says otherwise; the filters apply
-- in the order given and the last one that matches decides.  A pattern is
-- a glob matched against the whole path relative to the source (or the
-- destination) root, as Python's fnmatch does it: "*" matches any run of
-- characters, "/" included; "?" one character; "[abc]", "[a-z]" and
-- "[!abc]" one character of (or not of) a set; a "[" without its "]" is
-- itself.  Matching is on bytes and case-sensitive.

local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

local type = type
local error = error
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local str_byte = string.byte
local str_find = string.find

local STAR, QUESTION, LBRACKET = 42, 63, 91
local BANG, RBRACKET, DASH = 33, 93, 45


-- The set starting at p[i] ("["): matched (bool), index after its "]" |
-- nil when the set has no closing "]" (the "[" is then a plain character).
local function match_set(p, i, c)
  local j = i + 1
  local negate = str_byte(p, j) == BANG
  if negate then j = j + 1 end
  local close = str_find(p, "]", j + 1, true)   -- a "]" right after "[" or "[!" is a member
  if not close then return nil end
  local hit = false
  while j < close do
    local lo = str_byte(p, j)
    if str_byte(p, j + 1) == DASH and j + 2 < close then
      if c >= lo and c <= str_byte(p, j + 2) then hit = true end
      j = j + 3
    else
      if c == lo then hit = true end
      j = j + 1
    end
  end
  return hit ~= negate, close + 1
end


--- glob(pattern, path) -> bool: pattern matches the whole of path.
function _M.glob(p, s)
  local pi, si, np, ns = 1, 1, #p, #s
  local star_p, star_s                 -- where to resume after the last "*"
  while si <= ns do
    local pc, c = str_byte(p, pi), str_byte(s, si)
    if pc == STAR then
      star_p, star_s = pi, si
      pi = pi + 1
    else
      local ok, nexti = false, pi + 1
      if pc == QUESTION then
        ok = true
      elseif pc == LBRACKET then
        local hit, after = match_set(p, pi, c)
        if hit == nil then ok = (c == LBRACKET) else ok, nexti = hit, after end
      elseif pc then
        ok = (c == pc)
      end
      if ok then
        pi, si = nexti, si + 1
      elseif star_p then                 -- let the last "*" take one more character
        star_s = star_s + 1
        pi, si = star_p + 1, star_s
      else
        return false
      end
    end
  end
  while str_byte(p, pi) == STAR do pi = pi + 1 end
  return pi > np
end
local glob = _M.glob


--- new(rules) -> filter; rules = { { "exclude"|"include", PATTERN }, ... }
-- in the order given (nil or {} includes everything).  Raises on a bad rule.
function _M.new(rules)
  rules = rules or {}
  if type(rules) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(rules) .. ")", 2)
  end
  for i, r in ipairs(rules) do
    if type(r) ~= "table" or (r[1] ~= "exclude" and r[1] ~= "include") or type(r[2]) ~= "string" then
      error("bad argument #1 to 'new' (rule " .. i .. ": { \"exclude\"|\"include\", pattern } expected, got "
        .. tostring(r and r[1]) .. ")", 2)
    end
  end
  return setmetatable({ _rules = rules }, mt)
end


--- f:includes(path) -> bool: whether path (relative to its root) is taken.
function _M:includes(path)
  local take = true
  for _, r in ipairs(self._rules) do
    if glob(r[2], path) then take = (r[1] == "include") end
  end
  return take
end


return _M
