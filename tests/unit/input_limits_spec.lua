-- Every workflow input is bounded: `luabatch run` refuses a device, a FIFO,
-- an oversized file, too many nodes and an alias "billion laughs" counted in
-- bytes, each with exit 2 and a message naming the file, before memory goes
-- (peak RSS of the child measured with /usr/bin/time, bound generous).

local ROOT = os.getenv("ROOT") or os.getenv("PWD") or "."
local EXE = ROOT .. "/build/lua5.4/bin/luabatch"   -- the executable embeds Lua 5.4
local RSS_BOUND_KB = 300 * 1024

-- Run argv words (already shell-quoted) with a hard timeout; return rc,
-- stderr, peak RSS in KB.
local function run(args, env)
  local errf, timef, outf = os.tmpname(), os.tmpname(), os.tmpname()
  local p = io.popen(("%s timeout -s KILL 60 /usr/bin/time -o %s -f %%M %s %s >%s 2>%s; echo $?")
    :format(env or "", timef, EXE, args, outf, errf))
  local rc = tonumber(p:read("a"):match("(%d+)%s*$"))
  p:close()
  local f = io.open(errf); local err = f:read("a"); f:close()
  f = io.open(outf); local out = f:read("a"); f:close()
  f = io.open(timef); local t = f:read("a"); f:close()
  os.remove(errf); os.remove(timef); os.remove(outf)
  return rc, err, tonumber(t:match("(%d+)%s*$")), out
end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok == true or ok == 0, cmd)
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A 1 KiB string anchored once, then `levels` lists of `fan` aliases of the
-- level below: few nodes, fan^levels KiB of text once expanded.
local function laughs(levels, fan)
  local out = { "a0: &a0 \"" .. ("x"):rep(1024) .. "\"" }
  for i = 1, levels do
    local refs = {}
    for j = 1, fan do refs[j] = "*a" .. (i - 1) end
    out[#out + 1] = ("a%d: &a%d [%s]"):format(i, i, table.concat(refs, ", "))
  end
  return table.concat(out, "\n") .. "\n"
end

describe("workflow input limits", function()
  local tmp
  before_each(function() tmp = os.tmpname() end)
  after_each(function() os.remove(tmp) end)

  it("refuses a device without reading it", function()
    local rc, err, rss = run("run /dev/urandom")
    assert.are.equal(2, rc)
    assert.matches("luabatch run: /dev/urandom: not a regular file %(a device", err)
    assert.is_true(rss < RSS_BOUND_KB, "peak RSS " .. rss .. " KB")
  end)

  it("refuses a FIFO without waiting for a writer", function()
    os.remove(tmp)
    local ok = os.execute("mkfifo " .. tmp)
    assert.is_true(ok == true or ok == 0)
    local rc, err = run("run " .. tmp)
    assert.are.equal(2, rc)
    assert.matches(tmp:gsub("%p", "%%%0") .. ": not a regular file %(a FIFO", err)
  end)

  it("refuses a symlink to a FIFO without waiting for a writer (the link's target is checked)", function()
    os.remove(tmp)
    sh("mkfifo " .. tmp)
    local link = tmp .. ".yml"
    sh("ln -s " .. tmp .. " " .. link)
    local rc, err = run("run " .. link)
    os.remove(link)
    assert.are.equal(2, rc)
    assert.matches(link:gsub("%p", "%%%0") .. ": not a regular file %(a FIFO", err)
  end)

  it("refuses a --conf or a .confignore that is a FIFO, or a link to one, without blocking", function()
    os.remove(tmp)
    sh("mkfifo " .. tmp)
    local dir, link = tmp .. ".d", tmp .. ".lnk"
    sh(("mkdir %s && ln -s %s %s && ln -s %s %s/.confignore"):format(dir, tmp, link, tmp, dir))
    local rc, err = run("run wf --conf " .. link)
    assert.are.equal(2, rc)
    assert.matches("conf dir '" .. link:gsub("%p", "%%%0") .. "': not a directory", err)
    rc, err = run("run wf --conf " .. dir)
    os.execute("rm -rf " .. dir .. " " .. link)
    assert.are.equal(2, rc)
    assert.matches(dir:gsub("%p", "%%%0") .. "/%.confignore: not a regular file", err)
  end)

  it("refuses a file over 16 MiB", function()
    write(tmp, "a: 1\n" .. ("#" .. ("x"):rep(1023) .. "\n"):rep(16 * 1024))
    local rc, err, rss = run("run " .. tmp)
    assert.are.equal(2, rc)
    assert.matches(": 16793605 bytes exceeds the limit of 16777216 bytes for YAML", err, 1, true)
    assert.is_true(rss < RSS_BOUND_KB, "peak RSS " .. rss .. " KB")
  end)

  it("refuses more than a million nodes as written", function()
    write(tmp, "x: [" .. ("0,"):rep(1000001) .. "0]\n")
    local rc, err, rss = run("run " .. tmp)
    assert.are.equal(2, rc)
    assert.matches("node count exceeds the limit of 1000000 nodes", err, 1, true)
    assert.is_true(rss < RSS_BOUND_KB, "peak RSS " .. rss .. " KB")
  end)

  it("counts the bytes aliases expand to, not only their nodes", function()
    for _, case in ipairs({ { 6, 10 }, { 4, 64 } }) do   -- 4.5 KB and 66 KB of YAML
      write(tmp, laughs(case[1], case[2]))
      local rc, err, rss = run("run " .. tmp)
      assert.are.equal(2, rc)
      assert.matches(tmp:gsub("%p", "%%%0") .. ":%d+:%d+: text added by aliases exceeds the limit of 67108864 bytes", err)
      assert.is_true(rss < RSS_BOUND_KB, "peak RSS " .. rss .. " KB")
    end
  end)

  it("loads a file with aliases under the limits", function()
    write(tmp, laughs(3, 10) .. "type: Workflow\njobs: {j: {stages: [{name: s, echo: hi}]}}\n")
    local rc, err = run("run " .. tmp .. " --job nosuch")   -- loaded, then nothing run
    assert.are.equal(2, rc)
    assert.matches(": no job 'nosuch' %(jobs: j%)", err)
  end)
end)

describe("template expansion", function()
  it("a template rendering past 64 MiB fails its stage, named with the template", function()
    local wf = os.tmpname()
    write(wf, ("type: Workflow\nparams:\n  big: {type: str, default: \"%s\"}\njobs:\n  j:\n    stages:\n"
      .. "      - name: grow\n        echo: \"%s\"\n"):format(("y"):rep(1024 * 1024), ("${{ params.big }}"):rep(65)))
    local home = os.tmpname()
    os.remove(home)
    local rc, err, rss, out = run("run " .. wf, "LUABATCH_HOME=" .. home)
    os.remove(wf)
    os.execute("rm -rf " .. home)
    assert.are.equal(1, rc)
    local text = out .. err
    assert.matches("FAILED job j, stage 'grow'", text, 1, true)
    assert.matches("template '${{ params.big }}${{ params.big }}", text, 1, true)
    assert.matches("...' renders to more than 67108864 bytes", text, 1, true)
    assert.is_true(rss < RSS_BOUND_KB, "peak RSS " .. rss .. " KB")
  end)
end)

describe("captured stage output", function()
  it("keeps the last 8 MiB of a stream, with a note of what was dropped", function()
    local home, wf = os.tmpname(), os.tmpname()
    os.remove(home)
    write(wf, [[
type: Workflow
jobs:
  j:
    stages:
      - name: big
        id: big
        bash: |
          head -c 20000000 /dev/zero | tr '\0' 'x'; echo; echo last-line
          echo err-line >&2
]])
    local rc, err, rss, out = run("run " .. wf .. " --json", "LUABATCH_HOME=" .. home)
    os.remove(wf)
    os.execute("rm -rf " .. home)
    assert.are.equal(0, rc, err)
    local ctx = require("cjson").decode(out)
    local o = ctx.jobs.j.stages.big.outputs
    assert.are.equal("[luabatch: 11611403 bytes of stdout dropped, the last 8388608 kept]\n",
      o.stdout:sub(1, 68))
    assert.are.equal(68 + 8388608 - 1, #o.stdout)   -- the final newline stripped
    assert.are.equal("xx\nlast-line", o.stdout:sub(-12))
    assert.are.equal("err-line", o.stderr)
    assert.is_true(rss < RSS_BOUND_KB, "peak RSS " .. rss .. " KB")
  end)
end)
