-- tests/helpers/faultproxy.lua: start tests/servers/faultproxy.py in front of
-- an upstream (Ceph RGW) and drive its control endpoint from a spec.
--
--   local fp = require("helpers.faultproxy")
--   local proxy = assert(fp.start(upstream_endpoint))
--   proxy.endpoint                         -- "http://127.0.0.1:PORT"
--   proxy:add({ match = { method = "PUT", query_contains = "partNumber=2" },
--               action = "status", status = 503, code = "SlowDown", times = 2 })
--   proxy:clear()                          -- remove every rule and reset the stats
--   proxy:stats()                          -- { requests, fired, connections, by_rule, log }
--   proxy:stop()
local core = require "luabatch.core"
local cjson = require "cjson.safe"

local _M = {}
local mt = { __index = _M }

local files = require "helpers.files"
local sh_quote, read_file = files.sh_quote, files.read_all

function _M.start(upstream)
  local base = os.tmpname()
  local portfile, errfile = base .. ".port", base .. ".err"
  local cmd = ("/usr/bin/python3 tests/servers/faultproxy.py --port 0 --upstream %s >%s 2>%s & echo $!")
    :format(sh_quote(upstream), sh_quote(portfile), sh_quote(errfile))
  local p = io.popen(cmd)
  local pid = tonumber(p:read("l"))
  p:close()
  os.remove(base)
  local port
  for _ = 1, 100 do
    local s = read_file(portfile)
    port = s and tonumber(s:match("^(%d+)\n"))
    if port then break end
    core.sleep(0.05)
  end
  if not port then
    os.execute("kill " .. tostring(pid) .. " 2>/dev/null")
    return nil, "faultproxy did not start: " .. (read_file(errfile) or "?")
  end
  return setmetatable({ pid = pid, port = port, endpoint = "http://127.0.0.1:" .. port,
    files = { portfile, errfile } }, mt)
end

function _M:control(method, path, body)
  local resp, msg = core.http_request({ method = method, url = self.endpoint .. path,
    headers = { { "Content-Type", "application/json" } }, body = body and assert(cjson.encode(body)) or nil,
    timeout = 10 })
  assert(resp, msg)
  assert(resp.status == 200, "faultproxy " .. method .. " " .. path .. ": HTTP " .. resp.status .. " " .. resp.body)
  return assert(cjson.decode(resp.body))
end

function _M:add(rule) return self:control("POST", "/__fault", rule).ids end

function _M:clear()
  self:control("DELETE", "/__fault")
  self:control("DELETE", "/__stats")
end

function _M:stats() return self:control("GET", "/__stats") end

-- Requests of the log whose fault field equals `fault` (or any fault when nil).
function _M:faults(fault)
  local out = {}
  for _, e in ipairs(self:stats().log) do
    if e.fault ~= cjson.null and e.fault ~= nil and (fault == nil or e.fault == fault) then
      out[#out + 1] = e
    end
  end
  return out
end

function _M:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
  for _, f in ipairs(self.files) do os.remove(f) end
end

return _M
