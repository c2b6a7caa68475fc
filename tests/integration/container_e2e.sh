#!/bin/sh
# tests/integration/container_e2e.sh: the container half of the suite (a
# tests/run step).  A Docker daemon (DOCKER_HOST when it answers, else our
# own under build/docker: tools/dockerd.sh, stopped again by its PID), the
# task image built as `make image` builds it (tools/image.sh; the debootstrap
# base and Docker's layer cache make a rebuild quick), then, under Lua 5.4:
#   - the #container cases of aws_batch_e2e_spec.lua with the Batch emulator
#     in container mode (each Batch job a container of luabatch:latest);
#   - runner_docker_spec.lua (runs-on docker).
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
started=""
if ! curl -sf --max-time 3 --unix-socket "$(echo "${DOCKER_HOST:-/nonexistent}" | sed "s,^unix://,,")" http://d/_ping >/dev/null 2>&1; then
  eval "export $(tools/dockerd.sh start "$ROOT/build/docker")"
  started=1
fi
cleanup() { [ -z "$started" ] || tools/dockerd.sh stop "$ROOT/build/docker"; }
trap cleanup EXIT
tools/image.sh luabatch:latest
export LUABATCH_EMULATOR_DOCKER=1
run_busted() {
  LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/tests/?.lua;;" LUA_CPATH="$ROOT/build/lua5.4/?.so;;" \
    LUABATCH_TEST_LUA=lua5.4 lua5.4 /usr/bin/busted --output=utfTerminal "$@"
}
rc=0
run_busted --tags=container tests/integration/aws_batch_e2e_spec.lua || rc=1
run_busted tests/integration/runner_docker_spec.lua || rc=1
exit $rc
