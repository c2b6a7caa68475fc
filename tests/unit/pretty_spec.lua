-- Specs for luabatch.pretty and the REPL around it: credentials never
-- print in clear ("Hostile input", item 2).

local pretty = require "luabatch.pretty"
local repl = require "luabatch.repl"
local credentials = require "luabatch.credentials"
local log = require "luabatch.log"

-- Unique per spec file: log's registry of secrets is process-wide.
local SECRET = "prettySECRETwJalrXUtnFEMIK7MDENGbPxRfiCY"
local TOKEN = "prettyTOKENIQoJb3JpZ2luX2VjEXAMPLE0123456789"


-- Asserts `text` holds <redacted> and none of the strings in `secrets`.
local function no_secret(text, secrets)
  for _, s in ipairs(secrets) do assert.is_nil(text:find(s, 1, true), s .. " shown in " .. text) end
  assert.is_truthy(text:find("<redacted>", 1, true), text)
end


describe("luabatch.pretty redaction #unit", function()
  it("masks string values under keys that name a secret, and only those", function()
    local text = pretty.format({
      access_key = "AKIDEXAMPLE", secret_key = "sk-1-value", secret_access_key = "sk-2-value",
      aws_secret_access_key = "sk-3-value", AWS_SESSION_TOKEN = "tok-1-value", token = "tok-2-value",
      password = "pw-1-value", Authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x",
      ["X-Amz-Security-Token"] = "tok-3-value", signature = "abcdef012345",
      nested = { session_token = "tok-4-value", list = { { secret = "sk-4-value" } } },
      nextForwardToken = "f/123", signature_version = "s3v4", empty_secret = "",
    })
    no_secret(text, { "sk-1", "sk-2", "sk-3", "sk-4", "tok-1", "tok-2", "tok-3", "tok-4", "pw-1",
      "AWS4-HMAC", "abcdef" })
    assert.is_truthy(text:find('access_key = "AKIDEXAMPLE"', 1, true))
    assert.is_truthy(text:find("secret_key = <redacted>,", 1, true))
    assert.is_truthy(text:find('nextForwardToken = "f/123"', 1, true))
    assert.is_truthy(text:find('signature_version = "s3v4"', 1, true))
    assert.is_truthy(text:find('empty_secret = "",', 1, true))
  end)

  it("passes every other string through log.redact", function()
    log.add_secret(SECRET)
    assert.are.equal("<redacted>", pretty.format(SECRET))
    assert.are.equal('{\n  note = "key <redacted>!",\n}', pretty.format({ note = "key " .. SECRET .. "!" }))
    assert.are.equal('"x-amz-security-token: <redacted>"', pretty.format("x-amz-security-token: abc"))
    assert.are.equal('"plain"', pretty.format("plain"))
  end)

  it("shows a static provider, its credentials and a client holding it without the secrets", function()
    local c = credentials.static({ access_key = "AKIDEXAMPLE", secret_key = SECRET, session_token = TOKEN })
    local client = require("luabatch.s3").new({ credentials = c, region = "eu-west-1",
      transport = { request = function() error("no I/O expected") end } })
    for _, v in ipairs({ c, c:get(), client }) do
      local text = pretty.format(v)
      no_secret(text, { SECRET, TOKEN })
      assert.is_truthy(text:find("AKIDEXAMPLE", 1, true))
    end
  end)

  it("masks explicit credentials of a provider not resolved yet", function()
    local sk, tok = "unregistered-secret-key-1", "unregistered-token-1"
    local p = credentials.new({ access_key = "AKIDEXAMPLE", secret_key = sk, session_token = tok,
      env = {} })
    no_secret(pretty.format(p), { sk, tok })
  end)
end)


describe("luabatch.repl redaction #unit", function()
  -- Runs `inputs` through repl.run with a scripted line editor; the output.
  local function session(inputs)
    local i, out = 0, {}
    local le = {
      readline = function() i = i + 1; return inputs[i] end,
      add_history = function() end, read_history = function() end,
      write_history = function() return true end, ensure_dir = function() return true end,
      interrupt_mode = function() end,
    }
    local sink = { write = function(_, ...) for _, s in ipairs({ ... }) do out[#out + 1] = tostring(s) end end }
    repl.run(le, { out = sink, env = function() return nil end })
    return table.concat(out)
  end

  it("prints credentials, a client and errors holding a secret as <redacted>", function()
    _G.SK, _G.TOK = SECRET, TOKEN
    local text = session({
      'c = require("luabatch.credentials").static{access_key="AKIDEXAMPLE", secret_key=SK, session_token=TOK}',
      "c", "c:get()", "SK", "tostring(c)",
      'require("luabatch.s3").new{credentials = c, region = "us-east-1"}',
      "error('leaked ' .. SK)",
    })
    no_secret(text, { SECRET, TOKEN })
    assert.is_truthy(text:find("AKIDEXAMPLE", 1, true))
    assert.is_truthy(text:find("leaked <redacted>", 1, true))
    _G.SK, _G.TOK, _G.c = nil, nil, nil
  end)
end)
