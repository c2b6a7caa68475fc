-- tests/bench/ngx_objects_lua.lua [N]: the Lua side of examples/nginx's
-- objects.access() alone -- validation, credentials, signing, header
-- mapping -- with ngx stubbed by plain tables (no nginx: what ngx.var and
-- get_headers cost inside nginx is not in it).  Prints 'objects.access N
-- calls S s' (S: process CPU time).  Run from the repository root:
--   LUA_CPATH='build/luajit/?.so;;' luajit tests/bench/ngx_objects_lua.lua 200000
package.path = "examples/nginx/lua/?.lua;lua/?.lua;lua/?/init.lua;" .. package.path
local var = { request_uri = "/objects/obj-1024" }
ngx = {  -- luacheck: ignore (the global the module expects)
  req = { get_method = function() return "GET" end,
          get_headers = function() return { host = "127.0.0.1", range = "bytes=0-99" } end },
  var = var, time = os.time, header = {}, log = print, ERR = 1,
}
local getenv = os.getenv
os.getenv = function(k)  -- luacheck: ignore
  if k == "AWS_ENDPOINT_URL_S3" then return "http://127.0.0.1:8000" end
  return getenv(k)
end
local objects = require "objects"
local creds = { get = function() return { access_key = "AKIDEXAMPLE", secret_key = "SECRET" } end }
local opts = { bucket = "bucket", credentials = creds }
local n = tonumber(arg[1]) or 200000
objects.access(opts)
assert(var.lbobj_authorization:find("^AWS4%-HMAC%-SHA256 "), "not signed")
local t0 = os.clock()
for _ = 1, n do objects.access(opts) end
io.write(("objects.access %d calls %.4f s\n"):format(n, os.clock() - t0))
