-- luabatch.workflow.expr: the small, safe expression language of stage and
-- job `if:` conditions (README, "The format in short").  The source is
-- tokenized and parsed to an AST once, then evaluated against a context
-- table; nothing is ever handed to load().
--
-- expr.compile(src) -> fn | nil, msg          fn(ctx) -> value | nil, msg
-- expr.eval(src, ctx) -> value | nil, msg
-- expr.check(src) -> true | nil, msg          (syntax only)
-- expr.truthy(value) -> bool                  (Python truthiness)
-- expr.equal(a, b) -> bool                    (Python ==)
--
-- Language (Python syntax and semantics):
--   literals   'str' "str" (adjacent ones concatenate), 12, -3, 1.5, 1e3,
--              True False None (also true false null), [a, b, ...]
--   operators  or, and (both return an operand), not, == != < <= > >=
--              (chainable: 1 < x < 3), in, not in, is, is not, unary - +,
--              parentheses
--   names      looked up in the context (params, matrix, stages, item, ...);
--              `.key` and `["key"]` read maps, `[0]` / `[-1]` index lists
--              and strings (0-based, as Python)
-- Anything else (calls, arithmetic, attributes of non-maps) is an error.
-- None is cjson.null.  Messages: "expression 'x +': syntax error at column 3:
-- expected a value, found the end"; "expression 'y == 1': name 'y' is not
-- defined".

local cjson = require "cjson"
local template = require "luabatch.workflow.template"

local _M = { _VERSION = "0.1.0" }

local NULL = cjson.null
local str_format = string.format
local str_sub = string.sub
local str_find = string.find
local is_list = template.is_list
local pytype = template.pytype
local pyrepr = template.pyrepr

-- tokenizer -----------------------------------------------------------------

local KEYWORDS = { ["and"] = true, ["or"] = true, ["not"] = true, ["in"] = true, ["is"] = true }
local CONSTS = { True = true, False = false, None = NULL, ["true"] = true, ["false"] = false, null = NULL }
local ESCAPES = { n = "\n", t = "\t", r = "\r", ["\\"] = "\\", ["'"] = "'", ['"'] = '"', ["0"] = "\0",
  a = "\a", b = "\b", f = "\f", v = "\v", ["\n"] = "" }

local function syntax_error(src, col, what)
  error({ msg = str_format("expression '%s': syntax error at column %d: %s", src, col, what) }, 0)
end

local function tokenize(src)
  local toks = {}
  local pos, n = 1, #src
  while true do
    pos = str_find(src, "%S", pos)
    if not pos then break end
    local c = str_sub(src, pos, pos)
    local two = str_sub(src, pos, pos + 1)
    if c == "'" or c == '"' then
      local buf, j, closed = {}, pos + 1, false
      while j <= n do
        local ch = str_sub(src, j, j)
        if ch == "\\" then
          local nx = str_sub(src, j + 1, j + 1)
          if ESCAPES[nx] then
            buf[#buf + 1] = ESCAPES[nx]; j = j + 2
          elseif nx == "x" and src:match("^%x%x", j + 2) then
            buf[#buf + 1] = string.char(tonumber(str_sub(src, j + 2, j + 3), 16)); j = j + 4
          else
            buf[#buf + 1] = "\\" .. nx; j = j + 2
          end
        elseif ch == c then
          closed = true; break
        else
          buf[#buf + 1] = ch; j = j + 1
        end
      end
      if not closed then syntax_error(src, pos, "unterminated string") end
      toks[#toks + 1] = { t = "str", v = table.concat(buf), col = pos }
      pos = j + 1
    elseif c:match("%d") or (c == "." and src:match("^%.%d", pos)) then
      local num = src:match("^%d[%d_]*%.?[%d_]*", pos) or src:match("^%.[%d_]+", pos)
      local e = src:match("^[eE][-+]?%d+", pos + #num)
      local text = num .. (e or "")
      local after = str_sub(src, pos + #text, pos + #text)
      if after:match("[%w_]") then syntax_error(src, pos, "bad number '" .. text .. after .. "'") end
      local clean = text:gsub("_", "")
      local v = tonumber(clean)
      if v == nil or text:find("__", 1, true) or text:find("_$") then
        syntax_error(src, pos, "bad number '" .. text .. "'")
      end
      if not clean:find("[.eE]") then
        if clean:match("^0%d") then syntax_error(src, pos, "leading zeros in '" .. text .. "'") end
        v = math.tointeger and (math.tointeger(v) or v) or v
      elseif math.type and math.type(v) == "integer" then
        v = v + 0.0
      end
      toks[#toks + 1] = { t = "num", v = v, col = pos }
      pos = pos + #text
    elseif c:match("[%a_]") then
      local w = src:match("^[%a_][%w_]*", pos)
      if KEYWORDS[w] then
        toks[#toks + 1] = { t = w, col = pos }
      elseif CONSTS[w] ~= nil then
        toks[#toks + 1] = { t = "const", v = CONSTS[w], col = pos }
      else
        toks[#toks + 1] = { t = "name", v = w, col = pos }
      end
      pos = pos + #w
    elseif two == "==" or two == "!=" or two == "<=" or two == ">=" then
      toks[#toks + 1] = { t = two, col = pos }
      pos = pos + 2
    elseif c:match("[%*/%%]") then
      syntax_error(src, pos, "arithmetic is not supported")
    elseif c:match("[<>%(%)%[%],%.%-%+]") then
      toks[#toks + 1] = { t = c, col = pos }
      pos = pos + 1
    else
      syntax_error(src, pos, "unexpected character '" .. c .. "'")
    end
  end
  toks[#toks + 1] = { t = "eof", col = n + 1 }
  return toks
end

-- parser (recursive descent) -------------------------------------------------

local function describe(tok)
  if tok.t == "eof" then return "the end" end
  if tok.t == "str" then return "string " .. pyrepr(tok.v) end
  if tok.t == "num" then return "number " .. pyrepr(tok.v) end
  if tok.t == "name" then return "name '" .. tok.v .. "'" end
  if tok.t == "const" then return pyrepr(tok.v) end
  return "'" .. tok.t .. "'"
end

local function parse(src)
  local toks = tokenize(src)
  local i = 1
  local function peek() return toks[i] end
  local function take() i = i + 1; return toks[i - 1] end
  local function expect(t, what)
    local tok = toks[i]
    if tok.t ~= t then syntax_error(src, tok.col, "expected " .. what .. ", found " .. describe(tok)) end
    i = i + 1
    return tok
  end

  local parse_or

  local function parse_primary()
    local tok = take()
    if tok.t == "num" or tok.t == "const" then return { op = "lit", v = tok.v } end
    if tok.t == "str" then
      local v = tok.v
      while peek().t == "str" do v = v .. take().v end
      return { op = "lit", v = v }
    end
    if tok.t == "name" then return { op = "name", v = tok.v, col = tok.col } end
    if tok.t == "(" then
      local e = parse_or()
      expect(")", "')'")
      return e
    end
    if tok.t == "[" then
      local items = {}
      if peek().t ~= "]" then
        while true do
          items[#items + 1] = parse_or()
          if peek().t == "," then
            take()
            if peek().t == "]" then break end
          else
            break
          end
        end
      end
      expect("]", "']'")
      return { op = "list", items = items }
    end
    syntax_error(src, tok.col, "expected a value, found " .. describe(tok))
  end

  local function parse_postfix()
    local e = parse_primary()
    while true do
      local tok = peek()
      if tok.t == "." then
        take()
        local name = expect("name", "a key name after '.'")
        e = { op = "index", obj = e, key = { op = "lit", v = name.v }, dot = true, col = name.col }
      elseif tok.t == "[" then
        take()
        local k = parse_or()
        expect("]", "']'")
        e = { op = "index", obj = e, key = k, col = tok.col }
      elseif tok.t == "(" then
        syntax_error(src, tok.col, "calls are not supported")
      else
        return e
      end
    end
  end

  local function parse_unary()
    local tok = peek()
    if tok.t == "-" or tok.t == "+" then
      take()
      return { op = "neg", sign = tok.t, e = parse_unary(), col = tok.col }
    end
    return parse_postfix()
  end

  local COMP = { ["=="] = true, ["!="] = true, ["<"] = true, ["<="] = true, [">"] = true, [">="] = true,
    ["in"] = true, ["is"] = true }

  local function parse_comparison()
    local first = parse_unary()
    local ops, operands = {}, { first }
    while true do
      local tok = peek()
      local op
      if tok.t == "not" and toks[i + 1].t == "in" then
        take(); take(); op = "not in"
      elseif COMP[tok.t] then
        take()
        op = tok.t
        if op == "is" and peek().t == "not" then take(); op = "is not" end
      else
        break
      end
      ops[#ops + 1] = op
      operands[#operands + 1] = parse_unary()
    end
    if #ops == 0 then return first end
    return { op = "cmp", ops = ops, operands = operands }
  end

  local function parse_not()
    if peek().t == "not" then
      take()
      return { op = "not", e = parse_not() }
    end
    return parse_comparison()
  end

  local function parse_and()
    local e = parse_not()
    while peek().t == "and" do
      take()
      e = { op = "and", a = e, b = parse_not() }
    end
    return e
  end

  parse_or = function()
    local e = parse_and()
    while peek().t == "or" do
      take()
      e = { op = "or", a = e, b = parse_and() }
    end
    return e
  end

  local ast = parse_or()
  local tok = peek()
  if tok.t == "+" or tok.t == "-" then syntax_error(src, tok.col, "arithmetic is not supported") end
  if tok.t ~= "eof" then syntax_error(src, tok.col, "unexpected " .. describe(tok)) end
  return ast
end

-- semantics -----------------------------------------------------------------

local function is_null(v) return v == nil or v == NULL end

local function truthy(v)
  if is_null(v) or v == false or v == 0 or v == "" then return false end
  if type(v) == "table" then return next(v) ~= nil end
  return true
end
_M.truthy = truthy

local function as_number(v)
  if type(v) == "number" then return v end
  if type(v) == "boolean" then return v and 1 or 0 end
  return nil
end

local equal
equal = function(a, b)
  if is_null(a) or is_null(b) then return is_null(a) and is_null(b) end
  local ta, tb = type(a), type(b)
  if (ta == "number" or ta == "boolean") and (tb == "number" or tb == "boolean") then
    return as_number(a) == as_number(b)
  end
  if ta ~= tb then return false end
  if ta ~= "table" then return a == b end
  local la, lb = is_list(a), is_list(b)
  if la ~= lb then
    -- an empty map and an empty list are both {} here: equal
    return next(a) == nil and next(b) == nil
  end
  if la then
    if #a ~= #b then return false end
    for k = 1, #a do if not equal(a[k], b[k]) then return false end end
    return true
  end
  for k, v in pairs(a) do if b[k] == nil or not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
_M.equal = equal

local function fail(msg) error({ msg = msg }, 0) end

local less
less = function(a, b, opname)
  local na, nb = as_number(a), as_number(b)
  if na and nb then return na < nb end
  local ta, tb = type(a), type(b)
  if ta == "string" and tb == "string" then return a < b end
  if ta == "table" and tb == "table" and is_list(a) and is_list(b) then
    for k = 1, math.min(#a, #b) do
      if not equal(a[k], b[k]) then return less(a[k], b[k], opname) end
    end
    return #a < #b
  end
  fail(str_format("'%s' not supported between instances of '%s' and '%s'", opname, pytype(a), pytype(b)))
end

local function contains(container, x)
  local t = type(container)
  if t == "string" then
    if type(x) ~= "string" then
      fail(str_format("'in <string>' requires string as left operand, not %s", pytype(x)))
    end
    return str_find(container, x, 1, true) ~= nil
  end
  if t == "table" then
    if is_list(container) then
      for k = 1, #container do if equal(container[k], x) then return true end end
      return false
    end
    if x == nil or x == NULL then return false end
    if container[x] ~= nil then return true end
    if type(x) == "boolean" then return container[x and 1 or 0] ~= nil end
    return false
  end
  fail(str_format("argument of type '%s' is not iterable", pytype(container)))
end

local function compare(op, a, b)
  if op == "==" then return equal(a, b) end
  if op == "!=" then return not equal(a, b) end
  if op == "<" then return less(a, b, "<") end
  if op == ">" then return less(b, a, ">") end
  if op == "<=" then return not less(b, a, "<=") end
  if op == ">=" then return not less(a, b, ">=") end
  if op == "in" then return contains(b, a) end
  if op == "not in" then return not contains(b, a) end
  local same
  if is_null(a) or is_null(b) then same = is_null(a) and is_null(b)
  elseif type(a) == "table" or type(b) == "table" then same = rawequal(a, b)
  else same = type(a) == type(b) and a == b end
  if op == "is" then return same end
  return not same -- "is not"
end

local function index(obj, key, node)
  local t = type(obj)
  if t == "table" then
    if is_list(obj) and type(key) == "number" or (next(obj) == nil and type(key) == "number") then
      local n = #obj
      local k = as_number(key)
      if k ~= math.floor(k) then fail("list indices must be integers, not float") end
      local j = k < 0 and n + k + 1 or k + 1
      if j < 1 or j > n then fail(str_format("list index %s out of range", pyrepr(key))) end
      return obj[j]
    end
    if is_list(obj) then
      fail(str_format("list indices must be integers, not %s", pytype(key)))
    end
    local v = obj[key]
    if v == nil then
      if node.dot then fail(str_format("the map has no key '%s'", tostring(key))) end
      fail(str_format("key %s not found", pyrepr(key)))
    end
    return v
  end
  if t == "string" and type(key) == "number" then
    local chars = {}
    for ch in obj:gmatch("[%z\1-\127\194-\244][\128-\191]*") do chars[#chars + 1] = ch end
    local n = #chars
    local j = key < 0 and n + key + 1 or key + 1
    if j < 1 or j > n or key ~= math.floor(key) then fail(str_format("string index %s out of range", pyrepr(key))) end
    return chars[j]
  end
  if node.dot then
    fail(str_format("'%s' object has no attribute '%s'", pytype(obj), tostring(key)))
  end
  fail(str_format("'%s' object is not subscriptable", pytype(obj)))
end

local function eval(node, ctx)
  local op = node.op
  if op == "lit" then return node.v end
  if op == "name" then
    local v = ctx[node.v]
    if v == nil then fail(str_format("name '%s' is not defined", node.v)) end
    return v
  end
  if op == "index" then
    return index(eval(node.obj, ctx), eval(node.key, ctx), node)
  end
  if op == "list" then
    local out = {}
    for k, item in ipairs(node.items) do out[k] = eval(item, ctx) end
    return template.list(out)
  end
  if op == "and" then
    local a = eval(node.a, ctx)
    if not truthy(a) then return a end
    return eval(node.b, ctx)
  end
  if op == "or" then
    local a = eval(node.a, ctx)
    if truthy(a) then return a end
    return eval(node.b, ctx)
  end
  if op == "not" then return not truthy(eval(node.e, ctx)) end
  if op == "neg" then
    local v = eval(node.e, ctx)
    local n = as_number(v)
    if not n then fail(str_format("bad operand type for unary %s: '%s'", node.sign, pytype(v))) end
    if node.sign == "-" then return -n end
    return n
  end
  if op == "cmp" then
    local left = eval(node.operands[1], ctx)
    for k, o in ipairs(node.ops) do
      local right = eval(node.operands[k + 1], ctx)
      if not compare(o, left, right) then return false end
      left = right
    end
    return true
  end
  fail("unknown node " .. tostring(op))
end

-- API -----------------------------------------------------------------------

local function catch(src, ok, res)
  if ok then return res end
  if type(res) == "table" and res.msg then
    if res.msg:sub(1, 12) == "expression '" then return nil, res.msg end
    return nil, str_format("expression '%s': %s", src, res.msg)
  end
  return nil, str_format("expression '%s': %s", src, tostring(res))
end

function _M.compile(src)
  if type(src) ~= "string" then
    error("bad argument #1 to 'compile' (string expected, got " .. type(src) .. ")", 2)
  end
  local ast, err = catch(src, pcall(parse, src))
  if not ast then return nil, err end
  return function(ctx)
    local v, e = catch(src, pcall(eval, ast, ctx or {}))
    if e then return nil, e end
    if v == nil then v = NULL end
    return v
  end
end

function _M.check(src)
  local fn, err = _M.compile(src)
  if not fn then return nil, err end
  return true
end

function _M.eval(src, ctx)
  local fn, err = _M.compile(src)
  if not fn then return nil, err end
  return fn(ctx)
end

return _M
