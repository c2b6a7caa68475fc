-- luabatch.runner.docker.engine: the Docker Engine API over its unix socket
-- (libcurl's CURLOPT_UNIX_SOCKET_PATH through luabatch.transport.curl).
--
--   local engine = require "luabatch.runner.docker.engine"
--   local d = assert(engine.new(getenv))            -- DOCKER_HOST, else /var/run/docker.sock
--   local id, msg = d:create(body [, name])          -- POST /containers/create
--   d:start(id); d:inspect(id) -> State table; d:kill(id, "TERM"); d:remove(id)
--   d:logs(id) -> { line, ... } (stdout and stderr, demultiplexed)
--
-- Every call returns its result or nil, message ("docker: <what>: <why>").
-- API version 1.41 (Docker 20.10, Debian 12's engine) and later.

local json = require "luabatch.json"

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local type = type
local tostring = tostring
local str_format = string.format
local str_byte = string.byte
local str_sub = string.sub

local API = "/v1.41"

--- socket_of(DOCKER_HOST value) -> path | nil, message
function _M.socket_of(host)
  if host == nil or host == "" then return "/var/run/docker.sock" end
  local path = host:match("^unix://(/.+)$") or host:match("^(/.+)$")
  if not path then
    return nil, str_format("DOCKER_HOST=%s: only a unix socket (unix:///path) is supported", host)
  end
  return path
end

--- new(getenv [, socket]) -> engine | nil, message
function _M.new(getenv, socket)
  local path, err = socket, nil
  if not path then path, err = _M.socket_of(getenv("DOCKER_HOST")) end
  if not path then return nil, err end
  local transport = require("luabatch.transport.curl").new({ max_connections = 4 })
  return setmetatable({ socket = path, t = transport }, mt)
end

-- The Engine's own message of an error answer.
local function message_of(resp)
  local ok, doc = pcall(json.decode, resp.body or "")
  if ok and type(doc) == "table" and doc.message then return tostring(doc.message) end
  return "HTTP " .. tostring(resp.status)
end

-- request(method, path, body) -> resp | nil, message
function _M:request(method, path, body, what)
  local resp, msg = self.t:request({ method = method, url = "http://docker" .. API .. path,
    unix_socket = self.socket, body = body and json.encode(body) or nil,
    headers = body and { { "Content-Type", "application/json" } } or nil, timeout = 60 })
  if not resp then
    return nil, str_format("docker: %s: %s (is the daemon up at %s?)", what, tostring(msg), self.socket)
  end
  return resp
end

local function expect(self, method, path, body, what, ok1, ok2)
  local resp, err = self:request(method, path, body, what)
  if not resp then return nil, err end
  if resp.status ~= ok1 and resp.status ~= ok2 then
    return nil, str_format("docker: %s: %s", what, message_of(resp)), resp.status
  end
  return resp
end

function _M:ping() return expect(self, "GET", "/_ping", nil, "ping", 200) end

--- create(body [, name]) -> container id | nil, message, status (404: no such image)
function _M:create(body, name)
  local q = name and ("?name=" .. name) or ""
  local resp, err, st = expect(self, "POST", "/containers/create" .. q, body, "create a container of "
    .. tostring(body.Image), 201)
  if not resp then return nil, err, st end
  return json.decode(resp.body).Id
end

function _M:start(id) return expect(self, "POST", "/containers/" .. id .. "/start", nil, "start", 204, 304) end

--- inspect(id) -> the container's State (Running, ExitCode, OOMKilled, ...) | nil, message
function _M:inspect(id)
  local resp, err = expect(self, "GET", "/containers/" .. id .. "/json", nil, "inspect", 200)
  if not resp then return nil, err end
  return json.decode(resp.body).State or {}
end

function _M:kill(id, sig)
  return expect(self, "POST", "/containers/" .. id .. "/kill?signal=SIG" .. sig, nil, "kill", 204, 409)
end

function _M:remove(id)
  return expect(self, "DELETE", "/containers/" .. id .. "?force=1", nil, "remove", 204, 404)
end

--- logs(id) -> { line, ... }: its stdout and stderr so far, in order
-- (the stream's 8-byte frame headers taken off; no TTY).
function _M:logs(id)
  local resp, err = expect(self, "GET", "/containers/" .. id .. "/logs?stdout=1&stderr=1", nil, "logs", 200)
  if not resp then return nil, err end
  local b, i, text = resp.body, 1, {}
  while i + 7 <= #b do
    local n = ((str_byte(b, i + 4) * 256 + str_byte(b, i + 5)) * 256 + str_byte(b, i + 6)) * 256
      + str_byte(b, i + 7)
    text[#text + 1] = str_sub(b, i + 8, i + 7 + n)
    i = i + 8 + n
  end
  local lines = {}
  for l in (table.concat(text)):gmatch("([^\n]*)\n?") do
    if l ~= "" then lines[#lines + 1] = l end
  end
  return lines
end

function _M:close() self.t:close() end

return _M
