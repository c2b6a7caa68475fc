-- tests/helpers/s3_cli.lua: run `luabatch s3 ...` (the executable) against
-- an S3 endpoint with a clean environment.
--
--   local run = require("helpers.s3_cli").runner(exe, endpoint, key, secret, home)
--   local out, err, rc = run({ "cp", "f", "s3://b/k" } [, { "VAR=v" } [, stdin_path]])
--   local s3 = require("helpers.s3_cli").client(endpoint, key, secret)   -- a luabatch.s3 client
--
-- Runs in home (also $HOME), stdin /dev/null unless stdin_path is given,
-- with at most 300 s; returns stdout, stderr and the exit code.
local files = require "helpers.files"

local _M = {}

local q = files.sh_quote

function _M.client(endpoint, key, secret)
  local config = require "luabatch.config"
  return require("luabatch.s3").new({ config = config.new({ env = {}, region = "us-east-1" }),
    credentials = require("luabatch.credentials").new({ access_key = key, secret_key = secret, env = {} }),
    endpoint = endpoint, region = "us-east-1" })
end

function _M.runner(exe, endpoint, key, secret, home)
  return function(args, extra_env, stdin)
    local env = {
      "PATH=/usr/bin:/bin", "HOME=" .. home, "NO_PROXY=127.0.0.1,localhost,.localhost",
      "AWS_ENDPOINT_URL_S3=" .. endpoint, "AWS_ACCESS_KEY_ID=" .. key,
      "AWS_SECRET_ACCESS_KEY=" .. secret, "AWS_REGION=us-east-1",
    }
    for _, e in ipairs(extra_env or {}) do env[#env + 1] = e end
    local qenv = {}
    for _, e in ipairs(env) do qenv[#qenv + 1] = q(e) end
    local qargs = {}
    for _, a in ipairs(args) do qargs[#qargs + 1] = q(a) end
    local errf, outf = os.tmpname(), os.tmpname()
    local cmd = "cd " .. q(home) .. " && timeout 300 env -i " .. table.concat(qenv, " ") .. " " .. exe .. " s3 "
      .. table.concat(qargs, " ") .. " >" .. outf .. " 2>" .. errf
      .. (stdin and (" <" .. q(stdin)) or " </dev/null") .. "; echo $?"
    local p = io.popen(cmd)
    local rc = tonumber(p:read("a"):match("(%d+)%s*$"))
    p:close()
    local out, err = files.read_all(outf), files.read_all(errf)
    os.remove(outf)
    os.remove(errf)
    return out, err, rc
  end
end

return _M
