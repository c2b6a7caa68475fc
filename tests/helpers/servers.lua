-- tests/helpers/servers.lua: start the real peers integration specs need.
--
-- servers.rgw() -> endpoint, key, secret | nil, reason
--   Uses LUABATCH_TEST_S3_ENDPOINT when tests/run already started Ceph RGW;
--   otherwise starts one (tests/servers/rgw.sh, ~15 s) and stops it at exit
--   of the interpreter via servers.stop_all() (call it in teardown).
-- servers.free_port() -> a TCP port nothing listens on now.
local _M = {}

local started = {}

function _M.free_port()
  local p = io.popen("/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));"
    .. "print(s.getsockname()[1])'")
  local port = tonumber(p:read("l"))
  p:close()
  return port
end

function _M.rgw()
  local ep = os.getenv("LUABATCH_TEST_S3_ENDPOINT")
  if ep and ep ~= "" then return ep, "RGWTESTKEY", "RGWTESTSECRET" end
  if os.execute("command -v radosgw >/dev/null 2>&1") ~= true and
     os.execute("command -v radosgw >/dev/null 2>&1") ~= 0 then
    return nil, "radosgw is not installed (make deps installs ceph-mon ceph-osd radosgw)"
  end
  local dir = os.tmpname()
  os.remove(dir)
  local port, mon = _M.free_port(), _M.free_port()
  local p = io.popen(("tests/servers/rgw.sh start %s %d %d 2>%s.err"):format(dir, port, mon, dir))
  local out = p:read("a")
  p:close()
  ep = out:match("endpoint=(%S+)")
  if not ep then return nil, "Ceph RGW did not start (see " .. dir .. ".err)" end
  started[#started + 1] = dir
  return ep, "RGWTESTKEY", "RGWTESTSECRET"
end

function _M.stop_all()
  for _, dir in ipairs(started) do
    os.execute(("tests/servers/rgw.sh stop %s >/dev/null 2>&1; rm -rf %s %s.err"):format(dir, dir, dir))
  end
  started = {}
end

return _M
