local core = require "luabatch.core"

describe("luabatch.core utilities #unit", function()
  it("hashes with SHA-256, MD5 and HMAC-SHA256 (RFC 4231 case 2)", function()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
    assert.are.equal(32, #core.sha256("abc", "raw"))
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72", core.md5("abc"))
    assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      core.hmac_sha256("Jefe", "what do ya want for nothing?", "hex"))
  end)

  it("encodes base64 with padding (RFC 4648 vectors)", function()
    local want = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
      foobar = "Zm9vYmFy" }
    for input, out in pairs(want) do assert.are.equal(out, core.base64(input)) end
    assert.are.equal("1B2M2Y8AsgTpgAmY7PhCfg==", core.base64(core.md5("", "raw")))
  end)

  it("hex-encodes bytes and makes random bytes", function()
    assert.are.equal("00ff41", core.hex("\0\255A"))
    local a, b = core.random_bytes(16), core.random_bytes(16)
    assert.are.equal(16, #a)
    assert.are_not.equal(a, b)
    assert.has_error(function() core.random_bytes(1000) end)
  end)

  it("sleeps, and an interrupt ends the sleep with ECANCELED", function()
    local t0 = core.monotime()
    assert.is_true(core.sleep(0.05))
    assert.is_true(core.monotime() - t0 >= 0.05)
    core.raise_interrupt()
    local ok, msg, code = core.sleep(5)
    core.clear_interrupt()
    assert.is_nil(ok)
    assert.are.equal("ECANCELED", code)
    assert.is_truthy(msg:find("interrupted", 1, true))
    assert.is_false(core.interrupted())
    assert.is_true(math.abs(core.now() - os.time()) < 2)
  end)
end)
