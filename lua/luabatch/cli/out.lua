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
-- their stderr is redacted like everyone's.

local log = require "luabatch.log"

local _M = { _VERSION = "0.1.0" }

local type = type
local redact = log.redact

function _M.writer(w, redacted)
  local put
  if type(w) == "function" then
    put = w
  else
    put = function(s)
      w:write(s)
      if w.flush then w:flush() end
    end
  end
  if not redacted then return put end
  return function(s) put(redact(s)) end
end

return _M
