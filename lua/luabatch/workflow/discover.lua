-- luabatch.workflow.discover: read workflow YAML files and find the
-- workflows defined in a --conf directory, as ddeutil-workflow finds them.
--
-- Contract:
--   read_yaml(path [, text, name]) -> doc, pos | nil, msg, code
--     (text given: parse it, `name` for messages; YAML null -> doc nil).
--   scan(dir) -> { {name, path, doc, pos, body}... } | nil, msg
--     every `type: Workflow` body in *.yml / *.yaml files below dir
--     (recursive, minus .confignore globs), newest file first; a file may
--     hold one workflow with `name:` or several keyed by name.
-- No validation here: luabatch.workflow.load builds and checks the model.

local _M = { _VERSION = "0.1.0" }

local core = require "luabatch.core"

local type, ipairs, tonumber = type, ipairs, tonumber
local str_find, str_gsub, str_sub, str_match = string.find, string.gsub, string.sub, string.match
local str_format = string.format
local tbl_sort = table.sort
local NULL = core.null


local function read_yaml(path, text, name)
  local doc, pos, code
  if text then
    doc, pos, code = core.yaml_load(text, name, { positions = true })
  else
    doc, pos, code = core.yaml_load_file(path, { positions = true })
  end
  if doc == nil then return nil, pos, code end
  if doc == NULL then doc = nil end
  return doc, pos
end


-- Conf directory ------------------------------------------------------------

local function shell_quote(s) return "'" .. str_gsub(s, "'", "'\\''") .. "'" end

local function glob_to_pattern(g)
  local out = str_gsub(g, "[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
  out = str_gsub(out, "%*", ".*")
  out = str_gsub(out, "%?", ".")
  return "^" .. out .. "$"
end

_M.MAX_IGNORE = 1024 * 1024   -- bytes of .confignore

-- .confignore's globs -> { pattern } | nil, msg (a FIFO or device there is
-- refused unopened: its open could block; a symlink is judged by its target)
local function read_ignore(dir)
  local path = dir .. "/.confignore"
  local st = core.stat(path, true)
  if not st then return {} end
  if st.type ~= "file" then return nil, path .. ": not a regular file" end
  local f = io.open(path, "r")
  if not f then return {} end
  local text = f:read(_M.MAX_IGNORE + 1) or ""
  f:close()
  if #text > _M.MAX_IGNORE then
    return nil, str_format("%s: larger than the limit of %d bytes", path, _M.MAX_IGNORE)
  end
  local pats = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = str_match(line, "^%s*(.-)%s*$")
    if line ~= "" and str_sub(line, 1, 1) ~= "#" then
      pats[#pats + 1] = glob_to_pattern((str_gsub(line, "/+$", "")))
    end
  end
  return pats
end

local function ignored(pats, rel)
  local base = str_match(rel, "([^/]+)$")
  for _, pat in ipairs(pats) do
    if str_find(rel, pat) or str_find(base, pat) then return true end
    local dir = str_match(rel, "^(.*)/")
    while dir do
      if str_find(dir, pat) then return true end
      dir = str_match(dir, "^(.*)/")
    end
  end
  return false
end

-- *.yml / *.yaml files below dir (recursive), newest first: { {path, mtime} }.
local function list_conf(dir)
  local root = str_gsub(dir, "/+$", "")
  if root == "" then root = "/" end
  local base = str_sub(root, 1, 1) == "-" and ("./" .. root) or root
  local st = core.stat(base, true)   -- not io.open: a FIFO's open blocks
  if not st then return nil, "conf dir '" .. dir .. "': cannot open it" end
  if st.type ~= "directory" then return nil, "conf dir '" .. dir .. "': not a directory" end
  local cmd = "find " .. shell_quote(base) .. " -type f \\( -name '*.yml' -o -name '*.yaml' \\) "
  local p = io.popen(cmd .. "-printf '%T@ %p\\0' 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  local files = {}
  if out ~= "" then
    for mt, path in out:gmatch("([%d%.]+) ([^%z]+)%z") do files[#files + 1] = { path = path, mtime = tonumber(mt) or 0 } end
  else   -- find without -printf
    p = io.popen(cmd .. "-print0 2>/dev/null")
    out = p and p:read("*a") or ""
    if p then p:close() end
    for path in out:gmatch("([^%z]+)%z") do files[#files + 1] = { path = path, mtime = 0 } end
  end
  local pats, ierr = read_ignore(base)
  if not pats then return nil, "conf dir '" .. dir .. "': " .. ierr end
  local keep = {}
  for _, e in ipairs(files) do
    local rel = str_sub(e.path, #base + 2)
    if not ignored(pats, rel) then keep[#keep + 1] = e end
  end
  tbl_sort(keep, function(a, b)
    if a.mtime ~= b.mtime then return a.mtime > b.mtime end
    return a.path < b.path
  end)
  return keep
end

-- Every workflow body defined in the conf dir: { {name, path, doc, pos, body} } (newest file first).
local function scan_conf(dir)
  local files, err = list_conf(dir)
  if not files then return nil, err end
  local out = {}
  for _, e in ipairs(files) do
    local doc, pos = read_yaml(e.path)
    if doc == nil and type(pos) == "string" then return nil, pos end
    if type(doc) == "table" then
      if doc.type == "Workflow" then
        if type(doc.name) == "string" then
          out[#out + 1] = { name = doc.name, path = e.path, doc = doc, pos = pos, body = doc }
        end
      else
        local order = pos[doc] and pos[doc].order or {}
        for _, k in ipairs(order) do
          local body = doc[k]
          if type(k) == "string" and type(body) == "table" and body.type == "Workflow" then
            out[#out + 1] = { name = k, path = e.path, doc = doc, pos = pos, body = body }
          end
        end
      end
    end
  end
  return out
end


_M.read_yaml = read_yaml
_M.scan = scan_conf

return _M
