-- tests/helpers/files.lua: the shell and file helpers of the transfer specs.
--
--   local files = require "helpers.files"
--   files.sh_quote(s)       -- s as one shell word
--   files.sh(cmd)           -- cmd's stdout
--   files.run(cmd)          -- cmd's exit code (Lua 5.4 and LuaJIT alike)
--   files.read_all(path)    -- the bytes, or nil
--   files.write_all(path, s)
--   files.exists(path)
--   files.sha256(path)      -- hex, or nil (no file)
--   files.ls(dir)           -- names in dir (no "." / ".."), sorted
--   files.mkdtemp()         -- a new directory
local _M = {}

function _M.sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function _M.sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

function _M.run(cmd)
  local ok, _, rc = os.execute(cmd)
  if type(ok) == "number" then return math.floor(ok / 256) end     -- LuaJIT: the raw wait status
  return rc
end

function _M.read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function _M.write_all(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

function _M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function _M.sha256(path)
  return _M.sh("sha256sum " .. _M.sh_quote(path) .. " 2>/dev/null"):match("^(%x+)")
end

function _M.ls(dir)
  local out = {}
  for name in _M.sh("ls -A " .. _M.sh_quote(dir) .. " 2>/dev/null"):gmatch("[^\n]+") do out[#out + 1] = name end
  table.sort(out)
  return out
end

function _M.mkdtemp()
  return (_M.sh("mktemp -d"):gsub("%s+$", ""))
end

return _M
