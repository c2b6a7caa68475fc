describe("luabatch (entry point) #unit", function()
  it("loads submodules on first use only", function()
    package.loaded["luabatch"] = nil
    package.loaded["luabatch.credentials"] = nil
    local luabatch = require "luabatch"
    assert.is_nil(rawget(luabatch, "credentials"))
    assert.is_nil(package.loaded["luabatch.credentials"])
    local creds = luabatch.credentials
    assert.are.equal(require("luabatch.credentials"), creds)
    assert.are.equal(creds, rawget(luabatch, "credentials"))
    assert.is_string(luabatch._VERSION)
    assert.is_nil(luabatch.no_such_module)
  end)

  it("probes nothing at require time", function()
    -- With an unreachable metadata endpoint, requiring every module must
    -- neither block nor fail: nothing talks to the network until asked.
    -- (wall clock: a probe would wait on the network, which CPU time misses;
    -- the bound is far above a busy machine's require time)
    local t0 = require("luabatch.core").monotime()
    for _, m in ipairs({ "config", "credentials", "retry", "request", "log", "pretty" }) do
      package.loaded["luabatch." .. m] = nil
      assert.is_table(require("luabatch." .. m))
    end
    assert.is_true(require("luabatch.core").monotime() - t0 < 5)
  end)
end)
