-- luabatch.runner.aws_batch.kinds: the structured `with:` kinds of
-- runs-on aws_batch (secrets, storage, nodes), checked and normalised as
-- luabatch.runner.schema does the scalar ones: fn(v) -> normalised | nil,
-- what it must be [, the bad key (a path such as "2.host")].
--
--   secrets            { NAME = "arn:aws:secretsmanager:..." | "arn:aws:ssm:...:parameter/..." }
--   volumes            { { name, host = "/path" } | { name, efs = { file_system_id,
--                        root_directory?, transit_encryption?, access_point_id?, iam? } }, ... }
--   mount_points       { { volume, path, read_only? }, ... }
--   tmpfs              { { path, size (MiB), options? = { "rw", ... } }, ... }
--   ephemeral_storage  GiB, 21..200 (Fargate)
--   nodes              { count (2..1000), main? (0..count-1, default 0) }

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor

local function whole(v)
  v = tonumber(v)
  if v and v == floor(v) then return v end
  return nil
end

local function bool(v, default)
  if v == nil then return default end
  if v == true or v == "true" then return true end
  if v == false or v == "false" then return false end
  return nil
end

local function list(v)
  if type(v) ~= "table" then return nil end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n ~= #v then return nil end
  return v
end

local function text(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- a map's keys, all of them among allowed -> the first other key, or nil
local function stray(m, allowed)
  for k in pairs(m) do
    if not allowed[k] then return tostring(k) end
  end
  return nil
end

local SECRET_ARN = { "^arn:aws[%w-]*:secretsmanager:[%w-]+:%d+:secret:.+$",
                     "^arn:aws[%w-]*:ssm:[%w-]+:%d+:parameter/.+$" }

_M.secrets = function(v)
  local expect = "a mapping of environment names to Secrets Manager or SSM parameter ARNs"
  if type(v) ~= "table" or v[1] ~= nil then return nil, expect end
  local out = {}
  for k, arn in pairs(v) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then return nil, "a mapping of environment names (letters, digits, _)", tostring(k) end
    local ok = false
    for _, pat in ipairs(SECRET_ARN) do
      if type(arn) == "string" and arn:match(pat) then ok = true end
    end
    if not ok then
      return nil, "the ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) or "
        .. "an SSM parameter (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)", k
    end
    out[k] = arn
  end
  return out
end

local VOLUME_KEYS = { name = true, host = true, efs = true }
local EFS_KEYS = { file_system_id = true, root_directory = true, transit_encryption = true,
                   access_point_id = true, iam = true }

_M.volumes = function(v)
  local expect = "a list of volumes, each { name, host: PATH } or { name, efs: { file_system_id, ... } }"
  if not list(v) then return nil, expect end
  local out, seen = {}, {}
  for i, x in ipairs(v) do
    if type(x) ~= "table" then return nil, expect, tostring(i) end
    local bad = stray(x, VOLUME_KEYS)
    if bad then return nil, "one of name, host, efs", i .. "." .. bad end
    local name = text(x.name)
    if not name or not name:match("^[%w_-]+$") then return nil, "a name (letters, digits, - and _)", i .. ".name" end
    if seen[name] then return nil, "a name used once", i .. ".name" end
    seen[name] = true
    if (x.host ~= nil) == (x.efs ~= nil) then return nil, "either host or efs", tostring(i) end
    if x.host ~= nil then
      local h = text(x.host)
      if not h or h:sub(1, 1) ~= "/" then return nil, "an absolute path", i .. ".host" end
      out[i] = { name = name, host = h }
    else
      local e = x.efs
      if type(e) ~= "table" then return nil, "a mapping { file_system_id, ... }", i .. ".efs" end
      local bk = stray(e, EFS_KEYS)
      if bk then return nil, "one of file_system_id, root_directory, transit_encryption, access_point_id, iam",
        i .. ".efs." .. bk end
      local fs = text(e.file_system_id)
      if not fs or not fs:match("^fs%-%x+$") then return nil, "an EFS file system id (fs-...)", i .. ".efs.file_system_id" end
      local te, iam = bool(e.transit_encryption, false), bool(e.iam, false)
      if te == nil then return nil, "true or false", i .. ".efs.transit_encryption" end
      if iam == nil then return nil, "true or false", i .. ".efs.iam" end
      local ap = e.access_point_id
      if ap ~= nil and not (text(ap) and ap:match("^fsap%-%x+$")) then
        return nil, "an EFS access point id (fsap-...)", i .. ".efs.access_point_id"
      end
      if (ap ~= nil or iam) and not te then
        return nil, "true when access_point_id or iam is set (Batch requires transit encryption then)",
          i .. ".efs.transit_encryption"
      end
      local root = e.root_directory
      if root ~= nil and not (text(root) and root:sub(1, 1) == "/") then
        return nil, "an absolute path", i .. ".efs.root_directory"
      end
      out[i] = { name = name, efs = { file_system_id = fs, root_directory = root, transit_encryption = te,
                                      access_point_id = ap, iam = iam } }
    end
  end
  return out
end

local MOUNT_KEYS = { volume = true, path = true, read_only = true }

_M.mount_points = function(v)
  local expect = "a list of mounts, each { volume, path, read_only? }"
  if not list(v) then return nil, expect end
  local out = {}
  for i, x in ipairs(v) do
    if type(x) ~= "table" then return nil, expect, tostring(i) end
    local bad = stray(x, MOUNT_KEYS)
    if bad then return nil, "one of volume, path, read_only", i .. "." .. bad end
    if not text(x.volume) then return nil, "a volume's name", i .. ".volume" end
    local p = text(x.path)
    if not p or p:sub(1, 1) ~= "/" then return nil, "an absolute path in the container", i .. ".path" end
    local ro = bool(x.read_only, false)
    if ro == nil then return nil, "true or false", i .. ".read_only" end
    out[i] = { volume = x.volume, path = p, read_only = ro }
  end
  return out
end

local TMPFS_KEYS = { path = true, size = true, options = true }

_M.tmpfs = function(v)
  local expect = "a list of tmpfs mounts, each { path, size (MiB), options? }"
  if not list(v) then return nil, expect end
  local out = {}
  for i, x in ipairs(v) do
    if type(x) ~= "table" then return nil, expect, tostring(i) end
    local bad = stray(x, TMPFS_KEYS)
    if bad then return nil, "one of path, size, options", i .. "." .. bad end
    local p = text(x.path)
    if not p or p:sub(1, 1) ~= "/" then return nil, "an absolute path in the container", i .. ".path" end
    local size = whole(x.size)
    if not size or size < 1 then return nil, "a positive whole number of MiB", i .. ".size" end
    local opts
    if x.options ~= nil then
      opts = list(x.options)
      if not opts then return nil, "a list of mount options (rw, noexec, ...)", i .. ".options" end
      for j, o in ipairs(opts) do
        if not text(o) then return nil, "a mount option", i .. ".options." .. j end
      end
    end
    out[i] = { path = p, size = size, options = opts }
  end
  return out
end

_M.ephemeral_storage = function(v)
  local n = whole(v)
  if not n or n < 21 or n > 200 then return nil, "a whole number of GiB in 21..200 (Fargate's range)" end
  return n
end

_M.nodes = function(v)
  local expect = "a mapping { count (2..1000), main (0..count-1) }"
  if type(v) ~= "table" then return nil, expect end
  local bad = stray(v, { count = true, main = true })
  if bad then return nil, "one of count, main", bad end
  local count = whole(v.count)
  if not count or count < 2 or count > 1000 then return nil, "a whole number in 2..1000", "count" end
  local main = v.main == nil and 0 or whole(v.main)
  if not main or main < 0 or main >= count then return nil, "a node index in 0.." .. (count - 1), "main" end
  return { count = count, main = main }
end

_M.priority = function(v)
  local n = whole(v)
  if not n or n < 0 or n > 9999 then return nil, "a whole number in 0..9999" end
  return n
end

return _M
