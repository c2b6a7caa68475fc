#!/usr/bin/python3
"""Drive the luabatch REPL through a pseudo-terminal, as a user would.

usage: repl_test.py PATH/TO/luabatch
Checks: expressions print (tables pretty-printed), multi-line input
continues with '>>', Ctrl-C at the prompt drops the pending input, Ctrl-C
during evaluation stops the code and returns to the prompt, Ctrl-D leaves
with status 0, history is written to $XDG_STATE_HOME/luabatch/history,
credentials print as <redacted>, never their secret; `luabatch` is a global
listing its submodules unloaded, Tab completes a field and Tab Tab lists a
module's fields, a nil result prints "nil", `=expr` prints, `:help` answers.
Prints 'TEST repl: N passed, M failed'."""
import os
import pty
import select
import sys
import tempfile
import time

exe = os.path.abspath(sys.argv[1])
state = tempfile.mkdtemp(prefix="lb-repl-")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


pid, fd = pty.fork()
if pid == 0:
    env = dict(os.environ, XDG_STATE_HOME=state, TERM="dumb")
    os.execve(exe, [exe], env)

buf = b""
seen = b""  # everything read from the terminal


def read_until(token, timeout=5.0):
    """Read from the pty until `token` appears after the current mark."""
    global buf, seen
    end = time.time() + timeout
    while token not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            seen += chunk
    found = token in buf
    if found:
        buf = buf[buf.index(token) + len(token):]
    return found


def send(s):
    os.write(fd, s)


check(read_until(b"> "), "first prompt")
send(b"1 + 1\r")
check(read_until(b"2"), "expression value printed")
check(read_until(b"> "), "prompt after expression")
send(b"{ a = 1, 'x' }\r")
check(read_until(b'"x",') and read_until(b"a = 1"), "table pretty-printed")
check(read_until(b"> "), "prompt after table")
send(b"for i = 1, 2 do\r")
check(read_until(b">> "), "continuation prompt for an unfinished chunk")
send(b"io.write('v', i, ' ') end\r")
check(read_until(b"v1 v2"), "multi-line chunk ran")
check(read_until(b"> "), "prompt after multi-line chunk")
send(b"local unfinished = {\r")
check(read_until(b">> "), "continuation before Ctrl-C")
send(b"\x03")
time.sleep(0.3)
send(b"'after ctrl-c'\r")
check(read_until(b"after ctrl-c") and read_until(b"> "), "Ctrl-C at the prompt dropped the input")
send(b"while true do end\r")
time.sleep(0.5)
send(b"\x03")
check(read_until(b"interrupted!"), "Ctrl-C stops a running evaluation")
check(read_until(b"> "), "prompt after interrupt")
# Credentials print as <redacted>.  The secret is typed in two halves (the
# terminal echoes input), so it can only show up whole if the REPL prints it.
SECRET = b"replSECRETwJalrXUtnFEMIK7MDENG"
send(b"c = require('luabatch.credentials').static{access_key='AKIDEXAMPLE', secret_key='"
     + SECRET[:12] + b"' .. '" + SECRET[12:] + b"'}\r")
check(read_until(b"> "), "prompt after static credentials")
send(b"{ c, c:get(), c:get().secret_key, tostring(c) }\r")
check(read_until(b"AKIDEXAMPLE") and read_until(b"<redacted>") and read_until(b"> "),
      "credentials printed with <redacted>")
check(SECRET not in seen, "secret never printed")
send(b"luabatch\r")
check(read_until(b"s3 = <module luabatch.s3, not loaded>") and read_until(b"> "),
      "luabatch is a global listing its submodules")
send(b"luabatch.pre\t")
check(read_until(b"luabatch.pretty"), "Tab completes a field")
send(b".fo\t\r")
check(read_until(b"luabatch.pretty.format") and read_until(b"function: ") and read_until(b"> "),
      "Tab completes a nested field, the line runs")
send(b"luabatch.log.\t\t")
mark = len(seen)
ok = read_until(b"luabatch.log.warn")      # the last field, listed in columns
check(ok and b"luabatch.log.redact" in seen[mark:] and b"luabatch.log.set_level" in seen[mark:],
      "Tab Tab lists a module's fields")
send(b"\x15")                     # Ctrl-U: drop the line
time.sleep(0.3)
send(b"nil\r")
check(read_until(b"nil\r\nnil") and read_until(b"> "), "a nil result prints nil")
send(b"=40 + 2\r")
check(read_until(b"42") and read_until(b"> "), "=expr prints")
send(b":help\r")
check(read_until(b"complete a global") and read_until(b"> "), ":help answers")
send(b"'still alive'\r")
check(read_until(b"still alive"), "REPL usable after interrupt")
# libedit flushes input typed before it switches the terminal to raw mode,
# so wait for the prompt before typing, as a person would.
check(read_until(b"> "), "prompt before Ctrl-D")
send(b"\x04")
status = None
for _ in range(100):
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        break
    time.sleep(0.05)
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
      "Ctrl-D exits with status 0")
hist = os.path.join(state, "luabatch", "history")
check(os.path.exists(hist) and b"still" in open(hist, "rb").read(), "history written")
import shutil
shutil.rmtree(state, ignore_errors=True)
print("TEST repl: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
