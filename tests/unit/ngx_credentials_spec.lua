-- luabatch.ngx.credentials against a fake ngx (shared dict with TTLs, a
-- clock, ngx.sleep): one fetch shared by "workers" (provider objects over
-- the same dict), a refresh by the lock holder only, back-off after a failed
-- refresh, waiting for another worker's fetch, init()'s environment snapshot.

local nc = require "luabatch.ngx.credentials"
local cjson = require "cjson"

local function fake_dict(ngx)
  local d = { data = {}, exp = {} }
  local function live(k)
    local e = d.exp[k]
    if e and e <= ngx.clock then d.data[k], d.exp[k] = nil, nil end
    return d.data[k]
  end
  function d:get(k) return live(k) end
  function d:set(k, v, ttl)
    self.data[k] = v
    self.exp[k] = (ttl and ttl > 0) and (ngx.clock + ttl) or nil
    return true
  end
  function d:add(k, v, ttl)
    if live(k) ~= nil then return false, "exists" end
    return self:set(k, v, ttl)
  end
  function d:delete(k) self.data[k], self.exp[k] = nil, nil end
  function d:ttl(k) return self.exp[k] and (self.exp[k] - ngx.clock) or 0 end
  return d
end

local function fake_ngx()
  local ngx = { clock = 1000000, sleeps = 0, timers = {} }
  ngx.now = function() return ngx.clock end
  ngx.update_time = function() end
  ngx.sleep = function(s)
    ngx.sleeps = ngx.sleeps + 1
    ngx.clock = ngx.clock + s
    if ngx.on_sleep then ngx.on_sleep() end
  end
  ngx.get_phase = function() return "content" end
  ngx.location, ngx.socket = {}, {}
  ngx.timer = {
    at = function(d, f) ngx.timers[#ngx.timers + 1] = { "at", d, f } return true end,
    every = function(d, f) ngx.timers[#ngx.timers + 1] = { "every", d, f } return true end,
  }
  ngx.shared = { luabatch = fake_dict(ngx) }
  return ngx
end


describe("luabatch.ngx.credentials #unit", function()
  local ngx, calls, answer

  -- a chain of one provider function counting its calls
  local function provider(o)
    o = o or {}
    o.ngx = ngx
    o.env = o.env or {}
    o.providers = { function()
      calls = calls + 1
      if type(answer) == "function" then return answer() end
      return answer
    end }
    return nc.new(o)
  end

  local n = 0
  local function creds(ttl)
    n = n + 1
    return { access_key = "ASIAKEY" .. n, secret_key = "secret-" .. n .. "-abcdefgh",
      session_token = "token-" .. n .. "-abcdefgh", expiration = ttl and (ngx.clock + ttl) or nil }
  end

  before_each(function()
    ngx = fake_ngx()
    calls = 0
    answer = nil
  end)

  it("refuses a missing lua_shared_dict and a missing ngx", function()
    assert.has_error(function() nc.new({ ngx = ngx, dict = "nope" }) end,
      "bad argument #1 to 'new' (lua_shared_dict 'nope' is not declared in nginx.conf)")
    assert.has_error(function() nc.new({}) end)
  end)

  it("fetches once and serves every worker from the shared dict", function()
    answer = creds(3600)
    local w1, w2 = provider(), provider()
    local c1 = assert(w1:get())
    assert.are.equal(answer.access_key, c1.access_key)
    assert.are.equal(answer.session_token, c1.session_token)
    local c2 = assert(w2:get())
    assert.are.equal(c1.access_key, c2.access_key)
    assert.are.equal(answer.expiration, c2.expiration)
    assert.are.equal(1, calls)
    -- stored with a TTL up to the expiration, lock released
    local d = ngx.shared.luabatch
    assert.are.equal(3600, d:ttl("cred:default"))
    assert.is_nil(d:get("cred:default:lock"))
    assert.are.equal(c1.access_key, cjson.decode(d:get("cred:default")).access_key)
  end)

  it("refreshes near expiry in the worker holding the lock; the others keep the old ones", function()
    answer = creds(3600)
    local w1, w2 = provider(), provider()
    local old = assert(w1:get())
    ngx.clock = ngx.clock + 3600 - 200                  -- 200 s left < 300 s window
    ngx.shared.luabatch:add("cred:default:lock", "refresh", 30)   -- another worker refreshes
    answer = creds(3600)
    assert.are.equal(old.access_key, assert(w2:get()).access_key)
    assert.are.equal(1, calls)
    ngx.shared.luabatch:delete("cred:default:lock")
    local fresh = assert(w2:get())                      -- w2 takes the lock and refreshes
    assert.are.equal(answer.access_key, fresh.access_key)
    assert.are.equal(2, calls)
    assert.are.equal(answer.access_key, assert(w1:get()).access_key)   -- w1 sees it
    assert.are.equal(2, calls)
  end)

  it("keeps serving after a failed refresh and backs off before retrying", function()
    answer = creds(3600)
    local w1, w2 = provider({ failed_refresh_backoff = 30 }), provider()
    local old = assert(w1:get())
    ngx.clock = ngx.clock + 3500
    answer = function() return nil, "ecs: endpoint down", "ECONNECT" end
    local lines = {}
    local log = require "luabatch.log"
    local prev = log.set_sink(function(l) lines[#lines + 1] = l end)
    local ok, got = pcall(w1.get, w1)
    log.set_sink(prev)
    assert.is_true(ok, got)
    assert.are.equal(old.access_key, got.access_key)
    assert.are.equal(2, calls)
    assert.are.equal(1, #lines)
    assert.matches("refresh from custom#1 failed: ecs: endpoint down; keeping", lines[1])
    assert.is_nil(lines[1]:find(old.secret_key, 1, true))
    assert.are.equal(old.access_key, assert(w2:get()).access_key)   -- within the back-off
    assert.are.equal(2, calls)
    ngx.clock = ngx.clock + 31
    answer = creds(3600)
    assert.are.equal(answer.access_key, assert(w2:get()).access_key)
    assert.are.equal(3, calls)
  end)

  it("a worker without credentials waits for the one fetching them", function()
    local w2 = provider()
    ngx.shared.luabatch:add("cred:default:lock", "fetch", 30)   -- w1 is fetching
    local theirs = creds(3600)
    local sleeps = 0
    ngx.on_sleep = function()
      sleeps = sleeps + 1
      if sleeps == 3 then
        ngx.shared.luabatch:set("cred:default", cjson.encode(theirs), 3600)
        ngx.shared.luabatch:delete("cred:default:lock")
      end
    end
    local c = assert(w2:get())
    assert.are.equal(theirs.access_key, c.access_key)
    assert.are.equal(0, calls)
    assert.are.equal(3, sleeps)
  end)

  it("reports a failed first fetch to the waiting workers without fetching again", function()
    answer = function() return nil, "no AWS credentials found; tried: env", "NoCredentials" end
    local w1, w2 = provider(), provider()
    local c, msg, code = w1:get()
    assert.is_nil(c)
    assert.are.equal("NoCredentials", code)
    c, msg, code = w2:get()
    assert.is_nil(c)
    assert.are.equal("NoCredentials", code)
    assert.matches("no AWS credentials", msg)
    assert.are.equal(1, calls)
    ngx.clock = ngx.clock + 3                            -- error_ttl passed
    answer = creds(3600)
    assert(w2:get())
    assert.are.equal(2, calls)
  end)

  it("gives up waiting after `wait` seconds", function()
    ngx.shared.luabatch:add("cred:default:lock", "fetch", 1000)
    local c, _, code = provider({ wait = 1 }):get()
    assert.is_nil(c)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal(0, calls)
  end)

  it("fetches again after invalidate() (ExpiredToken)", function()
    answer = creds(3600)
    local w = provider()
    assert(w:get())
    w:invalidate()
    answer = creds(3600)
    assert.are.equal(answer.access_key, assert(w:get()).access_key)
    assert.are.equal(2, calls)
  end)

  it("init() snapshots the environment and stores env credentials for the workers", function()
    local c = assert(nc.init({ ngx = ngx, env = { AWS_ACCESS_KEY_ID = "AKIAENV",
      AWS_SECRET_ACCESS_KEY = "env-secret-abcdefgh", AWS_REGION = "eu-west-1",
      AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://127.0.0.1:1/creds" } }))
    assert.are.equal("env", c.source)
    -- a worker (no env option: reads the snapshot) gets them without a fetch
    local w = nc.new({ ngx = ngx })
    local got = assert(w:get())
    assert.are.equal("AKIAENV", got.access_key)
    assert.are.equal("env", got.source)
    assert.is_nil(got.expiration)
    assert.are.equal(0, ngx.shared.luabatch:ttl("cred:default"))
    assert.are.equal("http://127.0.0.1:1/creds", w:_getenv()("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
    assert.are.equal("eu-west-1", w:_getenv()("AWS_REGION"))
    -- nothing in the environment: nothing stored
    local ngx2 = fake_ngx()
    assert.is_false(nc.init({ ngx = ngx2, env = {} }))
    assert.is_nil(ngx2.shared.luabatch:get("cred:default"))
  end)

  it("init_worker() starts a fetch at once and a refresh timer", function()
    answer = creds(3600)
    local o = { ngx = ngx, env = {}, interval = 15, providers = { function()
      calls = calls + 1
      return answer
    end } }
    local p = nc.init_worker(o)
    assert.are.equal("at", ngx.timers[1][1])
    assert.are.same({ "every", 15 }, { ngx.timers[2][1], ngx.timers[2][2] })
    ngx.timers[1][3](false)
    assert.are.equal(1, calls)
    assert.are.equal(answer.access_key, assert(p:get()).access_key)
    ngx.timers[2][3](true)       -- premature (exiting): nothing
    assert.are.equal(1, calls)
  end)
end)
