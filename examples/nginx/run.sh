#!/bin/sh
# examples/nginx/run.sh: start the luabatch nginx example on loopback.
#
#   run.sh start PORT S3_ENDPOINT BATCH_ENDPOINT LOGS_ENDPOINT [BUCKET] [QUEUE]
#       writes a prefix dir (LUABATCH_NGINX_PREFIX, default a new temp dir),
#       fills nginx.conf.in into it, starts nginx -p PREFIX and waits until
#       the port answers; prints "prefix=DIR", "pid=MASTER_PID", "url=URL".
#       Credentials and region come from this environment (AWS_ACCESS_KEY_ID,
#       AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_PROFILE, ...);
#       BUCKET/QUEUE default to LUABATCH_BUCKET/LUABATCH_QUEUE.
#       NGINX_WORKERS (default 2), NGINX (the binary, default nginx).
#   run.sh stop PREFIX
#       stops that nginx (its master, by the pid file) and waits for it.
#
# Needs: nginx + libnginx-mod-http-lua + lua-resty-core (make deps) and the
# C module built for LuaJIT (make LUA=luajit).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NGINX=${NGINX:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx

usage() {
  echo "usage: run.sh start PORT S3_ENDPOINT BATCH_ENDPOINT LOGS_ENDPOINT [BUCKET] [QUEUE]" >&2
  echo "       run.sh stop PREFIX" >&2
  exit 2
}

stop() {
  pidf="$1/nginx.pid"
  [ -f "$pidf" ] || { echo "run.sh: no $pidf" >&2; exit 1; }
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  echo "stopped=$pid"
}

[ $# -ge 1 ] || usage
case "$1" in
  stop) [ $# -eq 2 ] || usage; stop "$2"; exit 0 ;;
  start) [ $# -ge 5 ] || usage ;;
  *) usage ;;
esac
PORT=$2
export AWS_ENDPOINT_URL_S3="$3" AWS_ENDPOINT_URL_BATCH="$4" AWS_ENDPOINT_URL_CLOUDWATCH_LOGS="$5"
export LUABATCH_BUCKET="${6:-${LUABATCH_BUCKET:-}}" LUABATCH_QUEUE="${7:-${LUABATCH_QUEUE:-}}"
export LUABATCH_EXAMPLES="${LUABATCH_EXAMPLES:-$ROOT/examples}"
[ -f "$ROOT/build/luajit/luabatch/core.so" ] ||
  { echo "run.sh: build/luajit/luabatch/core.so is missing (make LUA=luajit)" >&2; exit 1; }

PREFIX=${LUABATCH_NGINX_PREFIX:-$(mktemp -d "${TMPDIR:-/tmp}/luabatch-nginx.XXXXXX")}
mkdir -p "$PREFIX"
# The first nameserver of resolv.conf (AWS host names in variable proxy_pass
# targets are resolved by nginx at run time).
RESOLVER=$(awk '$1 == "nameserver" { print ($2 ~ /:/ ? "[" $2 "]" : $2); exit }' /etc/resolv.conf 2>/dev/null)
# As root, keep the workers as root (the default "nobody" cannot write the
# private temp dirs); otherwise no user directive.
USERLINE=""
[ "$(id -u)" = 0 ] && USERLINE="user root root;"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@ROOT@|$ROOT|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@WORKERS@|${NGINX_WORKERS:-2}|g" -e "s|@RESOLVER@|${RESOLVER:-127.0.0.1}|g" \
    -e "s|@USER@|$USERLINE|g" "$HERE/nginx.conf.in" > "$PREFIX/nginx.conf"

"$NGINX" -p "$PREFIX/" -c "$PREFIX/nginx.conf" -e "$PREFIX/error.log" ||
  { echo "run.sh: nginx did not start; see $PREFIX/error.log" >&2; tail -n 20 "$PREFIX/error.log" >&2; exit 1; }
i=0
until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; do
  i=$((i + 1))
  if [ $i -ge 100 ]; then
    echo "run.sh: port $PORT does not answer; see $PREFIX/error.log" >&2
    [ -f "$PREFIX/nginx.pid" ] && stop "$PREFIX" >/dev/null
    exit 1
  fi
  sleep 0.1
done
echo "prefix=$PREFIX"
echo "pid=$(cat "$PREFIX/nginx.pid")"
echo "url=http://127.0.0.1:$PORT"
