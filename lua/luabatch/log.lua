-- luabatch.log: levelled logging to stderr with secret redaction.
--
-- Level from LUABATCH_LOG (error|warn|info|debug; default warn) or set_level().
-- Every line passes through redact(), which masks Authorization headers,
-- security tokens, signatures and secret access keys, so a debug trace can be
-- pasted into an issue.  Secrets never reach stderr through this module.

local _M = { _VERSION = "0.1.0" }

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4 }

local io_stderr = io.stderr
local rawget = rawget
local type = type
local os_getenv = os.getenv
local str_format = string.format
local str_gsub = string.gsub

local current = LEVELS[(os_getenv("LUABATCH_LOG") or ""):lower()] or LEVELS.warn
local sink = function(line, name)
  -- Inside nginx: its error log at the matching level (stderr there is the
  -- master's, interleaved and unlevelled).
  local ngx = rawget(_G, "ngx")
  if ngx and type(ngx.log) == "function" and ngx.ERR then
    local lv = name == "error" and ngx.ERR or name == "warn" and ngx.WARN
      or name == "info" and ngx.INFO or ngx.DEBUG
    ngx.log(lv, line)
    return
  end
  io_stderr:write(line, "\n")
end

-- Secret shapes we mask wherever they appear.  Order matters: the longest
-- forms first.
local PATTERNS = {
  { "(Signature=)%x+", "%1<redacted>" },
  { "([Aa]uthorization[\"']?%s*[:=]%s*[\"']?)[^\r\n\"']+", "%1<redacted>" },
  { "([Xx]%-[Aa]mz%-[Ss]ecurity%-[Tt]oken[\"']?%s*[:=]%s*[\"']?)[^\r\n\"'&]+", "%1<redacted>" },
  { "([Ss]ecret[_%-]?[Aa]ccess[_%-]?[Kk]ey[\"']?%s*[:=]%s*[\"']?)[^\r\n\"',}%s]+", "%1<redacted>" },
  { "([Ss]ession[_%-]?[Tt]oken[\"']?%s*[:=]%s*[\"']?)[^\r\n\"',}%s]+", "%1<redacted>" },
  { "(\"Token\"%s*:%s*\")[^\"]+", "%1<redacted>" },
  { "(\"SecretAccessKey\"%s*:%s*\")[^\"]+", "%1<redacted>" },
  { "(<SecretAccessKey>)[^<]+", "%1<redacted>" },
  { "(<SessionToken>)[^<]+", "%1<redacted>" },
}

-- Known secret values registered at run time (credentials in use); masked
-- literally wherever they appear.
local known = {}

--- Mask secrets in `s` (any value; non-strings are tostring'ed).
function _M.redact(s)
  s = tostring(s)
  for i = 1, #PATTERNS do
    s = str_gsub(s, PATTERNS[i][1], PATTERNS[i][2])
  end
  for secret in pairs(known) do
    local at = 1
    while true do
      local i, j = s:find(secret, at, true)
      if not i then break end
      s = s:sub(1, i - 1) .. "<redacted>" .. s:sub(j + 1)
      at = i + 10
    end
  end
  return s
end

-- Key names whose string values are secrets whatever they look like:
-- these whole names, or a name holding one of SECRET_PARTS (lowered, '-'
-- read as '_').  Not every "token": a CloudWatch forward token is not a
-- secret, nor is signature_version.
local SECRET_NAMES = { token = true, signature = true, x_amz_signature = true }
local SECRET_PARTS = { "secret", "password", "passwd", "authorization", "session_token",
  "sessiontoken", "security_token", "securitytoken", "auth_token", "credential" }

--- Does the key `k` name a secret (secret_access_key, session_token,
-- token, password, authorization, ...)?  The one rule for structural
-- redaction (journal, pretty).  Access key ids are not secrets.
function _M.secret_name(k)
  if type(k) ~= "string" then return false end
  local l = str_gsub(k:lower(), "%-", "_")
  if SECRET_NAMES[l] then return true end
  for i = 1, #SECRET_PARTS do
    if l:find(SECRET_PARTS[i], 1, true) then return true end
  end
  return false
end

--- Register a secret value (secret key, session token) so it is masked
-- literally in every later log line.  Short values are ignored.
function _M.add_secret(value)
  if type(value) == "string" and #value >= 8 then known[value] = true end
end

function _M.set_level(name)
  local n = LEVELS[name]
  if not n then
    error("bad argument #1 to 'set_level' (one of error, warn, info, debug expected, got "
      .. tostring(name) .. ")", 2)
  end
  current = n
end

function _M.level() 
  for k, v in pairs(LEVELS) do if v == current then return k end end
end

function _M.enabled(name) return LEVELS[name] <= current end

--- Replace where lines go (tests capture them); returns the previous sink.
function _M.set_sink(fn)
  local old = sink
  sink = fn
  return old
end

local function emit(name, fmt, ...)
  if LEVELS[name] > current then return end
  local msg = select("#", ...) > 0 and str_format(fmt, ...) or tostring(fmt)
  sink(_M.redact("luabatch " .. name .. ": " .. msg), name)
end

function _M.error(fmt, ...) emit("error", fmt, ...) end
function _M.warn(fmt, ...) emit("warn", fmt, ...) end
function _M.info(fmt, ...) emit("info", fmt, ...) end
function _M.debug(fmt, ...) emit("debug", fmt, ...) end


return _M
