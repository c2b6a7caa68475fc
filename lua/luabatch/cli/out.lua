-- luabatch.cli.out: where a command's text goes.
--
--   local out = require "luabatch.cli.out"
--   local err_w = out.writer(env.stderr or io.stderr, true)   -- function(s)
--
-- writer(w [, redact]) -> function(s): w is a function(s) or anything with
-- :write(s) (flushed after each write when it has :flush).  With redact,
-- every text passes through log.redact first: error reports, progress and
-- stage lines can quote a server's answer (a SignatureDoesNotMatch echoes
-- the canonical request, security token included).  Commands whose stdout
-- is data (`s3 cp ... -`, presigned URLs, signatures) write it unredacted;
-- their stderr is redacted like everyone's.  Every write and flush is
-- checked: a full disk or a closed pipe is an error, never silence.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local tostring = tostring
local setmetatable = setmetatable
local redact = log.redact

-- A failed write or flush (nil, msg[, errno], as file handles fail) raises
-- a write error (see write_error): the command stops and luabatch exits 1
-- with "write <name>: <reason> (errno N)", name = "stdout"/"stderr" for the
-- standard files, else w's name field.
local function checked(name, ok, msg, errno)
  if ok == nil and msg ~= nil then error(_M.write_error(name, msg, errno), 0) end
end

--- write_error(name, msg, errno) -> an error value whose tostring is
-- "write <name>: <msg> (errno N)" (no traceback is added to a table).
function _M.write_error(name, msg, errno)
  local text = "write " .. tostring(name) .. ": " .. tostring(msg or "failed")
    .. (errno and (" (errno " .. tostring(errno) .. ")") or "")
  return setmetatable({ message = text, errno = errno, path = name },
    { __tostring = function(e) return e.message end })
end

local function name_of(w)
  if w == io.stdout then return "stdout" end
  if w == io.stderr then return "stderr" end
  return type(w) == "table" and w.name or "output"
end

function _M.writer(w, redacted)
  local put
  if type(w) == "function" then
    put = w
  else
    local name = name_of(w)
    put = function(s)
      checked(name, w:write(s))
      if w.flush then checked(name, w:flush()) end
    end
  end
  if not redacted then return put end
  return function(s) put(redact(s)) end
end

return _M
