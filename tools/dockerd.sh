#!/bin/sh
# tools/dockerd.sh start|stop|env STATE_DIR: a private Docker daemon of our own.
#
# start: unless DIR's daemon already runs, start dockerd with every piece of
#   state under DIR (data, exec root, pid file, socket, log) and wait until its
#   API answers; prints DOCKER_HOST=unix://DIR/docker.sock.  No bridge network
#   and no iptables (containers use --network host).
# stop: stop that daemon by its PID (never by name) and unmount the netns it
#   leaves behind.  env: print DOCKER_HOST for DIR (exit 1 if it is not up).
set -eu
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: tools/dockerd.sh start|stop|env STATE_DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
sock=$dir/docker.sock
pidf=$dir/exec/dockerd.pid

alive() { [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
answers() { curl -sf --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }

case "$cmd" in
  env)
    alive && answers || exit 1
    echo "DOCKER_HOST=unix://$sock" ;;
  start)
    if ! alive; then
      command -v dockerd >/dev/null || { echo "dockerd: not installed (tools/deps.sh image)" >&2; exit 1; }
      mountpoint -q "$dir/exec/netns/default" 2>/dev/null && umount "$dir/exec/netns/default"
      mkdir -p "$dir/data" "$dir/exec"
      rm -f "$sock"
      dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$pidf" \
        -H "unix://$sock" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --host-gateway-ip=127.0.0.1 >"$dir/dockerd.log" 2>&1 &
    fi
    i=0
    until answers; do
      i=$((i + 1))
      if [ $i -gt 300 ]; then echo "dockerd did not answer on $sock (see $dir/dockerd.log)" >&2; exit 1; fi
      sleep 0.1
    done
    echo "DOCKER_HOST=unix://$sock" ;;
  stop)
    if alive; then
      pid=$(cat "$pidf"); kill "$pid"
      i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    if mountpoint -q "$dir/exec/netns/default" 2>/dev/null; then umount "$dir/exec/netns/default" || true; fi ;;
  *) echo "usage: tools/dockerd.sh start|stop|env STATE_DIR" >&2; exit 2 ;;
esac
