-- luabatch.s3.filter (awscli's --exclude/--include: fnmatch globs, the last
-- matching filter decides) and luabatch.s3.sync (what a sync sends and
-- deletes), both pure; run under Lua 5.4 and LuaJIT.
local filter = require "luabatch.s3.filter"
local sync = require "luabatch.s3.sync"

local function rels(files)
  local out = {}
  for _, f in ipairs(files) do out[#out + 1] = f.rel end
  return out
end


describe("luabatch.s3.filter #unit", function()
  it("matches globs as fnmatch does: * crosses /, ? is one byte, sets and ranges", function()
    local yes = {
      { "*", "" }, { "*", "a/b/c" }, { "*.txt", "a/b.txt" }, { "a/*", "a/b/c" }, { "a?c", "abc" },
      { "[abc]x", "bx" }, { "[a-c]x", "cx" }, { "[!a-c]x", "dx" }, { "[]]", "]" }, { "[!]]", "a" },
      { "[", "[" }, { "a[b", "a[b" }, { "*b*b*", "abxbx" }, { "**", "x" }, { "d?r/*.log", "dir/x.log" },
      { "[-x]", "-" }, { "[x-]", "-" }, { "sub dir/b ü+.txt", "sub dir/b ü+.txt" }, { "%.*", "%.a" },
    }
    for _, c in ipairs(yes) do assert.is_true(filter.glob(c[1], c[2]), c[1] .. " ~ " .. c[2]) end
    local no = {
      { "*.txt", "a.txt.gz" }, { "a?c", "ac" }, { "a?c", "abbc" }, { "[abc]x", "dx" },
      { "[!a-c]x", "bx" }, { "[a-c]x", "x" }, { "abc", "ABC" }, { "a", "" }, { "", "a" },
      { "a/*", "b/a/c" }, { "*a", "ab" }, { "[]", "]" }, { ".*", "ab" },
    }
    for _, c in ipairs(no) do assert.is_false(filter.glob(c[1], c[2]), c[1] .. " !~ " .. c[2]) end
  end)

  it("includes everything with no filters", function()
    assert.is_true(filter.new():includes("a/b"))
    assert.is_true(filter.new({}):includes(""))
  end)

  it("applies filters in order, the last match deciding", function()
    local f = filter.new({ { "exclude", "*" }, { "include", "*.txt" } })
    assert.is_true(f:includes("a/b.txt"))
    assert.is_false(f:includes("a/b.log"))
    -- the other order: the exclude of everything comes last and wins
    f = filter.new({ { "include", "*.txt" }, { "exclude", "*" } })
    assert.is_false(f:includes("a/b.txt"))
    f = filter.new({ { "exclude", "logs/*" }, { "include", "logs/keep*" }, { "exclude", "*.tmp" } })
    assert.are.same({ true, false, true, false },
      { f:includes("logs/keep.txt"), f:includes("logs/x.txt"), f:includes("data/x"), f:includes("logs/keep.tmp") })
  end)

  it("raises on a malformed rule", function()
    assert.has_error(function() filter.new({ { "drop", "*" } }) end)
    assert.has_error(function() filter.new({ { "exclude" } }) end)
    assert.has_error(function() filter.new("x") end)
  end)
end)


describe("luabatch.s3.sync #unit", function()
  local T = 1700000000

  it("sends what is missing, of another size, or newer by a whole second", function()
    local src = {
      { rel = "same", size = 3, mtime = T }, { rel = "new", size = 1, mtime = T },
      { rel = "resized", size = 4, mtime = T - 100 }, { rel = "newer", size = 3, mtime = T + 5 },
      { rel = "older", size = 3, mtime = T - 5 }, { rel = "subsecond", size = 3, mtime = T + 0.9 },
      { rel = "undated", size = 3 },
    }
    local dst = {
      { rel = "same", size = 3, mtime = T }, { rel = "resized", size = 3, mtime = T },
      { rel = "newer", size = 3, mtime = T }, { rel = "older", size = 3, mtime = T },
      { rel = "subsecond", size = 3, mtime = T }, { rel = "undated", size = 3, mtime = T },
      { rel = "extra", size = 9, mtime = T },
    }
    local p = sync.plan(src, dst)
    assert.are.same({ "new", "newer", "resized" }, rels(p.transfer))
    local reasons = {}
    for _, t in ipairs(p.transfer) do reasons[t.rel] = t.reason end
    assert.are.same({ new = "new", newer = "newer", resized = "size" }, reasons)
    assert.are.same({}, p.delete)                          -- no delete asked for
    assert.are.same({ "extra" }, rels(sync.plan(src, dst, { delete = true }).delete))
  end)

  it("plans nothing for an unchanged tree", function()
    local files = { { rel = "a", size = 1, mtime = T }, { rel = "b/c", size = 0, mtime = T } }
    assert.are.same({ transfer = {}, delete = {} }, sync.plan(files, files, { delete = true }))
  end)

  it("keeps the caller's fields and leaves its tables alone", function()
    local src = { { rel = "a", size = 1, mtime = T, key = "p/a" } }
    local p = sync.plan(src, {})
    assert.are.same({ { rel = "a", size = 1, mtime = T, key = "p/a", reason = "new" } }, p.transfer)
    assert.is_nil(src[1].reason)
  end)

  it("filters both sides: excluded files are neither sent nor deleted", function()
    local f = filter.new({ { "exclude", "*.tmp" }, { "include", "keep/*.tmp" } })
    local src = { { rel = "a.tmp", size = 1 }, { rel = "keep/b.tmp", size = 1 }, { rel = "c", size = 1 } }
    local dst = { { rel = "old.tmp", size = 1 }, { rel = "keep/old.tmp", size = 1 }, { rel = "old", size = 1 },
      { rel = "a.tmp", size = 5 } }
    local p = sync.plan(src, dst, { filter = f, delete = true })
    assert.are.same({ "c", "keep/b.tmp" }, rels(p.transfer))
    assert.are.same({ "keep/old.tmp", "old" }, rels(p.delete))
  end)

  it("reads a listing: rel under the prefix, LastModified as epoch seconds, no directory keys", function()
    local files = sync.s3_files({
      { key = "p/a b.txt", size = 5, last_modified = "2023-11-14T22:13:20.000Z" },
      { key = "p/sub/", size = 0, last_modified = "2023-11-14T22:13:20.000Z" },
      { prefix = "p/x/" },
      { key = "p/sub/c", size = 1 },
    }, "p/")
    assert.are.same({ { rel = "a b.txt", key = "p/a b.txt", size = 5, mtime = T },
      { rel = "sub/c", key = "p/sub/c", size = 1 } }, files)
  end)
end)


describe("luabatch s3 sync --help #unit", function()
  -- The options of a usage text's option lines ("  -q, --quiet  ...").
  local function options(usage)
    local set = {}
    for line in usage:gmatch("[^\n]+") do
      local column = line:match("^  (%-.-)%s%s")
      if column then for name in column:gmatch("%-%-?%a[%w%-]*") do set[#set + 1] = name end end
    end
    return set
  end

  it("is printed for `s3 sync --help` and lists only options of s3's parser (as s3 --help lists them)", function()
    local s3cli = require "luabatch.cli.s3"
    local printed = {}
    local code = s3cli.run({ "sync", "--help" }, { stdout = function(s) printed[#printed + 1] = s return true end,
      isatty = function() return false end })
    assert.are.equal(0, code)
    local usage = require("luabatch.cli.s3_sync").usage
    assert.are.equal(usage, table.concat(printed))
    local all = {}
    for _, o in ipairs(options(s3cli.usage)) do all[o] = true end
    local listed = options(usage)
    assert.is_true(#listed >= 8)
    for _, o in ipairs(listed) do assert.is_true(all[o], o .. " is not in s3 --help") end
  end)
end)
