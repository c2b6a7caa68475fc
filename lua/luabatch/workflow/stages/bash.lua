-- luabatch.workflow.stages.bash: `bash:` stages as in ddeutil-workflow, with
-- the fixes of item 6 in README "Differences from ddeutil-workflow".
--
-- The script is stripped of surrounding newlines, dedented, then rendered
-- (templates + ${VAR}, env.render(..., {env = true})); each `env` entry is
-- rendered the same way and EXPORTED, its value single-quoted so quotes, `$`
-- and newlines arrive intact.  The file
--     #!/bin/sh
--     <blank>
--     export K='v';        (one per env entry, sorted by name)
--     <blank>
--     <script>
-- is written to a temporary file and run as `sh <file>` through the
-- scheduler (other tasks run meanwhile), inheriting the environment.
-- Outputs: { return_code = n, stdout = s, stderr = s }, each text stripped of
-- surrounding newlines, empty -> null; past 8 MiB only the last 8 MiB kept,
-- after a line "[luabatch: N bytes of stdout dropped, the last 8388608
-- kept]" (bash.dropped_note); kept on a failure too (return_code
-- -N when killed by signal N).  Exit code > 0 -> FAILED
--   { name = "StageError", message = "Subprocess: <stderr>\n\t```bash\n\t<script>\n\t```" }
-- (script lines joined by "\n\t"); killed by a signal -> FAILED too
-- (ddeutil-workflow counts it as SUCCESS), "Subprocess: killed by signal N...".
-- Cancelled (fail-fast, Ctrl-C) -> CANCEL.
--
-- Helpers for other kinds: bash.dedent(s), bash.shell_quote(s), bash.strip_nl(s),
-- bash.dropped_note(r, "stdout"|"stderr") -> "" | the note line.

local stage = require "luabatch.workflow.stage"

local _M = { _VERSION = "0.1.0" }

local type = type
local pairs = pairs
local tostring = tostring
local str_format = string.format
local str_gsub = string.gsub
local str_match = string.match
local str_find = string.find
local str_sub = string.sub
local tbl_concat = table.concat
local tbl_sort = table.sort
local io_open = io.open
local os_remove = os.remove

local NULL = stage.null

--- Python's textwrap.dedent: remove the whitespace prefix common to every
-- non-blank line; whitespace-only lines become empty.
function _M.dedent(s)
  local lines, prefix = {}, nil
  for line in (s .. "\n"):gmatch("(.-)\n") do
    if str_find(line, "^[ \t]*$") then
      lines[#lines + 1] = ""
    else
      lines[#lines + 1] = line
      local ws = str_match(line, "^[ \t]*")
      if prefix == nil then
        prefix = ws
      else
        local n = 0
        while n < #prefix and n < #ws and str_sub(prefix, n + 1, n + 1) == str_sub(ws, n + 1, n + 1) do
          n = n + 1
        end
        prefix = str_sub(prefix, 1, n)
      end
    end
  end
  if prefix and #prefix > 0 then
    for i, line in ipairs(lines) do
      if line ~= "" then lines[i] = str_sub(line, #prefix + 1) end
    end
  end
  return tbl_concat(lines, "\n")
end

--- Strip leading and trailing newlines.
function _M.strip_nl(s)
  return (str_gsub(str_gsub(s, "^\n+", ""), "\n+$", ""))
end

--- The line that says a stream lost its front (sched.exec keeps the last
-- 8 MiB of each), or "" when nothing was dropped.
function _M.dropped_note(r, which)
  local n = r[which .. "_dropped"]
  if not n then return "" end
  return str_format("[luabatch: %d bytes of %s dropped, the last %d kept]\n", n, which, #r[which])
end

--- Single-quote a string for sh: every byte but ' is literal inside '...'.
function _M.shell_quote(s)
  return "'" .. str_gsub(s, "'", "'\\''") .. "'"
end

-- An env value rendered to a non-string (a whole template): Python's str().
local function as_text(v)
  if type(v) == "string" then return v end
  if v == nil or v == NULL then return "None" end
  if type(v) == "boolean" then return v and "True" or "False" end
  local ok, template = pcall(require, "luabatch.workflow.template")
  if ok and template.pystr then return template.pystr(v) end
  return tostring(v)
end

local function tmp_path(env)
  local dir = env.tmpdir or os.getenv("TMPDIR") or "/tmp"
  local ok, core = pcall(require, "luabatch.core")
  local tag
  if ok and core.random_bytes then
    tag = core.hex and core.hex(core.random_bytes(8)) or str_gsub(core.random_bytes(8), ".",
      function(c) return str_format("%02x", c:byte()) end)
  else
    tag = str_format("%d%06d", os.time(), math.random(0, 999999))
  end
  return dir .. "/luabatch-" .. tag .. ".sh"
end

-- env.output_line(line, fd) (optional) sees the script's output line by
-- line while it runs (luabatch task streams it to CloudWatch; luabatch run
-- shows it on a terminal) -> on_output for sched.exec, and a flush for the
-- unterminated last lines.
local function line_splitter(output_line)
  if type(output_line) ~= "function" then return nil, nil end
  local pending = { "", "" }
  local function on_output(fd, chunk)
    local text = pending[fd] .. chunk
    local last = 1
    for line, nxt in text:gmatch("([^\n]*)\n()") do
      output_line(line, fd)
      last = nxt
    end
    pending[fd] = text:sub(last)
  end
  local function flush()
    for fd = 1, 2 do
      if pending[fd] ~= "" then output_line(pending[fd], fd) end
      pending[fd] = ""
    end
  end
  return on_output, flush
end

local function cancelled(what)
  return nil, { name = "StageCancelError", message = "Execution was canceled: " .. what, status = "CANCEL" }
end

function _M.execute(st, rctx, env)
  local sched = env.sched or require "luabatch.workflow.sched"
  if type(st.bash) ~= "string" then
    return nil, { name = "StageError", message = "bash stage: 'bash' must be a string" }
  end
  local script = _M.dedent(_M.strip_nl(st.bash))
  local err
  script, err = stage.render_or_error(env, script, rctx)
  if script == nil then return nil, err end
  script = as_text(script)

  local names, values = {}, {}
  for k, v in pairs(st.env or {}) do
    if type(k) ~= "string" or not str_find(k, "^[%a_][%w_]*$") then
      return nil, { name = "StageError", message = str_format("bash stage: env name '%s' is not a valid variable name", tostring(k)) }
    end
    local rv, rerr = stage.render_or_error(env, v, rctx)
    if rv == nil then return nil, rerr end
    names[#names + 1] = k
    values[k] = as_text(rv)
  end
  tbl_sort(names)
  local parts = { "#!/bin/sh\n\n" }
  for _, k in ipairs(names) do
    parts[#parts + 1] = str_format("export %s=%s;\n", k, _M.shell_quote(values[k]))
  end
  parts[#parts + 1] = "\n"
  parts[#parts + 1] = script
  parts[#parts + 1] = "\n"

  if env.cancelled and env.cancelled() then return cancelled("bash stage not started") end
  local path = tmp_path(env)
  local f, ferr = io_open(path, "wb")
  if not f then
    return nil, { name = "StageError", message = "bash stage: cannot write the script: " .. tostring(ferr) }
  end
  local wok, werr, wno = f:write(tbl_concat(parts))
  local cok, cerr, cno = f:close()              -- a full disk shows here: never run half a script
  if not wok or not cok then
    os_remove(path)
    return nil, { name = "StageError", message = "bash stage: cannot write the script " .. path .. ": "
      .. tostring(werr or cerr) .. " (errno " .. tostring(wno or cno) .. ")" }
  end
  local on_output, flush = line_splitter(env.output_line)
  local r, msg, code = sched.exec({ "sh", path }, { cwd = env.cwd, on_output = on_output, timeout = st.timeout })
  if flush then flush() end
  os_remove(path)
  if not r then
    if code == "ECANCELED" then return cancelled(msg or "interrupted") end
    return nil, { name = "StageError", message = "Subprocess: " .. tostring(msg) }
  end
  local body = "```bash\n\t" .. str_gsub(script, "\n", "\n\t") .. "\n\t```"
  local stderr = _M.dropped_note(r, "stderr") .. str_gsub(r.stderr, "\n+$", "")
  local out = _M.dropped_note(r, "stdout") .. _M.strip_nl(r.stdout)
  local errs = _M.dropped_note(r, "stderr") .. _M.strip_nl(r.stderr)
  -- the outputs, kept on a failure too (as ddeutil-workflow keeps them);
  -- killed by signal N: return_code -N, as Python's subprocess says
  local outputs = stage.object({
    return_code = r.signal and -r.signal or r.exit,
    stdout = out ~= "" and out or NULL,
    stderr = errs ~= "" and errs or NULL,
  })
  if r.timed_out then
    return nil, { name = "StageTimeoutError", message = str_format("bash stage timed out after %s s (killed by signal %d)%s",
      tostring(r.timed_out), r.signal or 0, stderr ~= "" and (": " .. stderr) or "") }, outputs
  end
  if r.signal then
    return nil, { name = "StageError",
      message = str_format("Subprocess: killed by signal %d%s\n\t%s", r.signal,
        stderr ~= "" and (": " .. stderr) or "", body) }, outputs
  end
  if r.exit > 0 then
    return nil, { name = "StageError", message = "Subprocess: " .. stderr .. "\n\t" .. body }, outputs
  end
  return outputs
end

return _M
