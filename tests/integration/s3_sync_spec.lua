-- `luabatch s3 sync` through the executable against Ceph RGW: both
-- directions, a second sync sends nothing (counted at a fault proxy in
-- the way), changed files go again, --exclude/--include in order,
-- --delete both ways, --dryrun changes nothing, downloads take
-- LastModified as mtime, bad input is exit 2, a failed file exit 1.
local core = require "luabatch.core"
local aws_time = require "luabatch.aws.time"
local servers = require "helpers.servers"
local files = require "helpers.files"

local ROOT = os.getenv("PWD")
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"
local q = files.sh_quote
local read_file, write_file = files.read_all, files.write_all


describe("luabatch s3 sync against Ceph RGW #integration", function()
  local endpoint, key, secret, run, proxy
  local bucket = "lb-sync-" .. core.hex(core.random_bytes(4))
  local home = os.tmpname()
  local B = "s3://" .. bucket

  local function api() return require("helpers.s3_cli").client(endpoint, key, secret) end

  -- key -> body under prefix.
  local function objects(prefix)
    local out = {}
    for _, e in ipairs(assert(api():list_all(bucket, { prefix = prefix }))) do
      out[e.key:sub(#prefix + 1)] = assert(api():get_object(bucket, e.key))
    end
    return out
  end

  -- rel -> contents of the regular files under dir.
  local function tree(dir)
    local out = {}
    local p = io.popen("cd " .. q(dir) .. " && find . -type f -print0")
    for f in p:read("a"):gmatch("%./([^%z]+)%z") do out[f] = read_file(dir .. "/" .. f) end
    p:close()
    return out
  end

  local function make_tree(dir, t)
    for rel, data in pairs(t) do
      assert(os.execute("mkdir -p " .. q((dir .. "/" .. rel):match("^(.*)/"))))
      write_file(dir .. "/" .. rel, data)
    end
  end

  -- Run through the fault proxy; returns out, err, rc and the requests it saw.
  local function run_counted(args)
    proxy:clear()
    args[#args + 1] = "--endpoint-url=" .. proxy.endpoint
    local out, err, rc = run(args)
    local seen = {}
    for _, r in ipairs(proxy:stats().log) do seen[#seen + 1] = r.method .. " " .. r.target end
    return out, err, rc, seen
  end

  -- The requests that were not a listing.
  local function transfers(seen)
    local out = {}
    for _, r in ipairs(seen) do
      if not r:find("list-type=2", 1, true) then out[#out + 1] = r end
    end
    return out
  end

  lazy_setup(function()
    endpoint, key, secret = servers.rgw()
    assert(endpoint, key)
    os.remove(home)
    assert(os.execute("mkdir -p " .. q(home)))
    run = require("helpers.s3_cli").runner(EXE, endpoint, key, secret, home)
    assert(api():create_bucket(bucket))
    proxy = assert(require("helpers.faultproxy").start(endpoint))
  end)

  lazy_teardown(function()
    if proxy then proxy:stop() end
    if endpoint then
      local s = api()
      s:delete_prefix(bucket, "")
      s:delete_bucket(bucket)
    end
    os.execute("rm -rf " .. q(home))
    servers.stop_all()
  end)

  local want = {
    ["a.txt"] = "alpha\n", ["sub dir/b ü+.txt"] = "bee\n", ["empty"] = "",
    ["d/e/big.bin"] = string.rep("x", 70000), ["d/log.log"] = "log\n",
  }

  it("syncs a directory up, then a second sync sends nothing", function()
    local src = home .. "/up"
    make_tree(src, want)
    local out, err, rc = run({ "sync", src, B .. "/up" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same(want, objects("up/"))
    local _, err2, rc2, seen = run_counted({ "sync", src .. "/", B .. "/up/" })
    assert.are.equal(0, rc2, err2)
    assert.is_true(#seen > 0)                                -- the listing went through the proxy
    assert.are.same({}, transfers(seen))
    out, err, rc = run({ "sync", "--dryrun", src, B .. "/up" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
  end)

  it("sends a file again when its size changes or it is newer", function()
    local src = home .. "/up"
    write_file(src .. "/a.txt", "alpha, longer\n")
    assert(os.execute("touch -d @" .. (os.time() + 3600) .. " " .. q(src .. "/d/log.log")))
    assert(api():put_object(bucket, "up/empty", ""))       -- newer in S3: stays
    local out, err, rc, seen = run_counted({ "sync", src, B .. "/up" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    table.sort(seen)
    local puts = transfers(seen)
    table.sort(puts)
    assert.are.same({ "PUT /" .. bucket .. "/up/a.txt", "PUT /" .. bucket .. "/up/d/log.log" }, puts)
    assert.are.equal("alpha, longer\n", (api():get_object(bucket, "up/a.txt")))
  end)

  it("applies --exclude/--include in order, the last match deciding (sync and cp -r)", function()
    local src = home .. "/up"
    local out, err, rc = run({ "sync", "--exclude", "*", "--include", "*.txt", src, B .. "/f1" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({ ["a.txt"] = "alpha, longer\n", ["sub dir/b ü+.txt"] = "bee\n" }, objects("f1/"))
    out, err, rc = run({ "sync", "--include", "*.txt", "--exclude", "*", src, B .. "/f2" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({}, objects("f2/"))
    out, err, rc = run({ "sync", "--exclude", "d/*", "--include", "d/e/*", "--exclude=*.txt", src, B .. "/f3" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({ ["empty"] = "", ["d/e/big.bin"] = want["d/e/big.bin"] }, objects("f3/"))
    out, err, rc = run({ "cp", "-r", "--exclude", "*.bin", "--exclude", "sub dir/*", B .. "/up/", home .. "/cpx" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({ ["a.txt"] = "alpha, longer\n", ["empty"] = "", ["d/log.log"] = "log\n" }, tree(home .. "/cpx"))
    out, err, rc = run({ "cp", "-r", "--exclude", "*", "--include", "d/*", home .. "/cpx", B .. "/cpx" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({ ["d/log.log"] = "log\n" }, objects("cpx/"))
  end)

  it("prints what --dryrun would do, both ways, and changes nothing", function()
    local src = home .. "/dry"
    make_tree(src, { ["n.txt"] = "new" })
    assert(api():put_object(bucket, "dry/old.txt", "old"))
    local out, err, rc = run({ "sync", "--dryrun", "--delete", src, B .. "/dry" })
    assert.are.same({ "(dryrun) upload: " .. src .. "/n.txt -> " .. B .. "/dry/n.txt\n"
      .. "(dryrun) delete: " .. B .. "/dry/old.txt\n", "", 0 }, { out, err, rc })
    assert.are.same({ ["old.txt"] = "old" }, objects("dry/"))
    out, err, rc = run({ "sync", "--dry-run", "--delete", B .. "/dry", src })
    assert.are.same({ "(dryrun) download: " .. B .. "/dry/old.txt -> " .. src .. "/old.txt\n"
      .. "(dryrun) delete: " .. src .. "/n.txt\n", "", 0 }, { out, err, rc })
    assert.are.same({ ["n.txt"] = "new" }, tree(src))
  end)

  it("syncs down, giving each file its object's LastModified, so a second sync sends nothing", function()
    local dst = home .. "/down"
    local out, err, rc = run({ "sync", B .. "/up", dst })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    local want_now = objects("up/")
    assert.are.same(want_now, tree(dst))
    for _, e in ipairs(assert(api():list_all(bucket, { prefix = "up/" }))) do
      local st = assert(core.stat(dst .. "/" .. e.key:sub(4)))
      assert.are.equal(aws_time.parse_iso8601(e.last_modified), st.mtime, e.key)
    end
    local _, err2, rc2, seen = run_counted({ "sync", B .. "/up/", dst .. "/" })
    assert.are.equal(0, rc2, err2)
    assert.is_true(#seen > 0)
    assert.are.same({}, transfers(seen))
    -- an object of another size comes down again
    assert(api():put_object(bucket, "up/a.txt", "changed in S3, longer\n"))
    _, err2, rc2, seen = run_counted({ "sync", B .. "/up", dst })
    assert.are.equal(0, rc2, err2)
    local gets = {}
    for _, r in ipairs(transfers(seen)) do                    -- HEAD and GET of a.txt alone
      assert.are.equal(" /" .. bucket .. "/up/a.txt", r:match("^%u+( .*)$"))
      gets[#gets + 1] = r:match("^GET ") and r or nil
    end
    assert.are.equal(1, #gets)
    assert.are.equal("changed in S3, longer\n", read_file(dst .. "/a.txt"))
  end)

  it("deletes what the source lacks with --delete, sparing excluded files, both ways", function()
    local src = home .. "/del"
    make_tree(src, { ["keep.txt"] = "k", ["gone.txt"] = "g" })
    assert.are.equal(0, select(3, run({ "sync", src, B .. "/del" })))
    os.remove(src .. "/gone.txt")
    assert(api():put_object(bucket, "del/extra", "e"))
    assert(api():put_object(bucket, "del/tmp/x.tmp", "t"))
    local out, err, rc = run({ "sync", "--delete", "--exclude", "tmp/*", src, B .. "/del" })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({ ["keep.txt"] = "k", ["tmp/x.tmp"] = "t" }, objects("del/"))
    -- down: a local extra goes, an excluded one stays
    local dst = home .. "/del-down"
    make_tree(dst, { ["stray"] = "s", ["local.tmp"] = "l" })
    out, err, rc = run({ "sync", "--delete", "--exclude", "*.tmp", B .. "/del", dst })
    assert.are.same({ "", "", 0 }, { out, err, rc })
    assert.are.same({ ["keep.txt"] = "k", ["local.tmp"] = "l" }, tree(dst))
  end)

  it("reports a file that fails on one line, exit 1, and syncs the rest", function()
    local dst = home .. "/fail"
    assert(os.execute("mkdir -p " .. q(dst .. "/a.txt")))  -- a directory where a file must go
    local out, err, rc = run({ "sync", B .. "/up", dst })
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    local lines = {}
    for l in err:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(1, #lines, err)
    assert.is_truthy(lines[1]:find("^luabatch s3 sync: .*up/a%.txt"), err)
    assert.are.equal("bee\n", read_file(dst .. "/sub dir/b ü+.txt"))
  end)

  it("exits 2 on bad input, naming what, and sends nothing", function()
    local dir = home .. "/up"
    local cases = {
      { { "sync", "--bogus", dir, B .. "/x" }, "unknown option --bogus" },
      { { "sync", dir, B .. "/x", "--exclude" }, "--exclude needs a value" },
      { { "sync", dir, B .. "/x", "--include" }, "--include needs a value" },
      { { "sync", dir, home .. "/elsewhere" }, "both are local: " .. dir },
      { { "sync", home .. "/no-such-dir", B .. "/x" }, home .. "/no-such-dir is not a directory" },
      { { "sync", dir .. "/a.txt", B .. "/x" }, dir .. "/a.txt is not a directory" },
      { { "sync", B .. "/up", dir .. "/a.txt" }, dir .. "/a.txt is not a directory" },
      { { "sync", B .. "/up", B .. "/x" }, "s3:// to s3:// is not supported" },
      { { "sync", dir }, "sync wants SRC and DST" },
      { { "cp", dir .. "/a.txt", B .. "/x", "--exclude", "*" }, "apply to cp -r and sync only" },
      { { "cp", "-r", dir, B .. "/x", "--delete" }, "--delete applies to sync only" },
      { { "cp", "-r", dir, B .. "/x", "--dryrun" }, "--dry-run applies to sync and abort-uploads only" },
    }
    for _, c in ipairs(cases) do
      local out, err, rc = run(c[1])
      assert.are.equal(2, rc, table.concat(c[1], " ") .. ": " .. err)
      assert.are.equal("", out)
      assert.is_truthy(err:find(c[2], 1, true), err)
    end
    assert.are.same({}, objects("x/"))
    local out, _, rc = run({ "sync", "--help" })
    assert.are.equal(0, rc)
    assert.is_truthy(out:find("usage: luabatch s3 sync SRC DST", 1, true))
  end)
end)
