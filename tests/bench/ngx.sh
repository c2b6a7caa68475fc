#!/usr/bin/env bash
# tests/bench/ngx.sh: the cost of signing in nginx.  wrk against
# examples/nginx's GET /objects/KEY (Lua signs with core.sigv4_sign, nginx
# proxies and streams) and against nginx proxying the same objects unsigned
# (anonymous GET of public-read objects) to the same private Ceph RGW, in
# the same nginx, same worker count, same proxy settings.
#
#   tests/bench/ngx.sh               (called by tests/bench/run; `make bench`)
#
# Prints a Markdown table (requests/s, and the nginx workers' CPU time per
# request from /proc/<pid>/stat) and appends it to build/bench/results.md.
# Environment: BENCH_NGX_SECONDS (wrk duration per row, default 10),
# BENCH_NGX_CONNS (default 32), BENCH_NGX_WORKERS (nginx workers, default 1),
# BENCH_TMP (default: mktemp -d).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench
mkdir -p "$OUT"
SECS=${BENCH_NGX_SECONDS:-10}
CONNS=${BENCH_NGX_CONNS:-32}
WORKERS=${BENCH_NGX_WORKERS:-1}
NGINX=/usr/sbin/nginx

die() { echo "ngx bench: $*" >&2; exit 1; }
[ -x "$NGINX" ] || die "nginx missing (make deps)"
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || die "libnginx-mod-http-lua missing (make deps)"
command -v wrk >/dev/null || die "wrk missing (make deps)"
command -v radosgw >/dev/null || die "radosgw missing (make deps)"
[ -f build/luajit/luabatch/core.so ] || die "build/luajit/luabatch/core.so missing (make LUA=luajit)"

T=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/lb-ngxbench.XXXXXX")
RGW_DIR=$T/rgw
cleanup() {
  [ -f "$T/ngx/nginx.pid" ] && examples/nginx/run.sh stop "$T/ngx" >/dev/null 2>&1 || true
  tests/servers/rgw.sh stop "$RGW_DIR" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(free_port); MONPORT=$(free_port)
echo "== nginx: starting a private Ceph RGW on port $PORT" >&2
ep=$(tests/servers/rgw.sh start "$RGW_DIR" "$PORT" "$MONPORT" 2>"$T/rgw-start.log") \
  || { cat "$T/rgw-start.log" >&2; die "Ceph RGW did not start"; }
EP=${ep#endpoint=}

export AWS_ACCESS_KEY_ID=RGWTESTKEY AWS_SECRET_ACCESS_KEY=RGWTESTSECRET
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$EP AWS_PAGER=""
export AWS_CONFIG_FILE=$T/aws-config AWS_SHARED_CREDENTIALS_FILE=$T/aws-credentials
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE || true
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
BUCKET=lb-ngxbench
aws s3api create-bucket --bucket $BUCKET >/dev/null
SIZES="1024 65536"
for n in $SIZES; do
  head -c "$n" /dev/urandom > "$T/obj-$n"
  # public-read: the unsigned proxy fetches the same object anonymously
  aws s3api put-object --bucket $BUCKET --key "obj-$n" --body "$T/obj-$n" --acl public-read >/dev/null
  code=$(curl -s -o /dev/null -w '%{http_code}' "$EP/$BUCKET/obj-$n")
  [ "$code" = 200 ] || die "anonymous GET of public-read obj-$n answered $code"
done

# The signed side is the example's objects.conf as is; the unsigned side a
# plain proxy_pass to the same RGW with the same proxy settings.
NPORT=$(free_port)
mkdir -p "$T/ngx"
USERLINE=""; [ "$(id -u)" = 0 ] && USERLINE="user root root;"
cat > "$T/ngx/nginx.conf" <<CONF
$USERLINE
worker_processes $WORKERS;
daemon on;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
lock_file $T/ngx/nginx.lock;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
env AWS_ACCESS_KEY_ID;
env AWS_SECRET_ACCESS_KEY;
env AWS_REGION;
env AWS_ENDPOINT_URL_S3;
env LUABATCH_BUCKET;
events { worker_connections 1024; }
http {
    access_log off;
    variables_hash_max_size 2048;
    client_body_temp_path $T/ngx/client_body;
    proxy_temp_path $T/ngx/proxy;
    fastcgi_temp_path $T/ngx/fastcgi;
    uwsgi_temp_path $T/ngx/uwsgi;
    scgi_temp_path $T/ngx/scgi;
    lua_package_path "$ROOT/examples/nginx/lua/?.lua;$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$ROOT/build/luajit/?.so;;";
    lua_shared_dict luabatch 10m;
    server {
        listen 127.0.0.1:$NPORT;
        include $ROOT/examples/nginx/objects.conf;
        location /plain/ {
            proxy_pass $EP/$BUCKET/;
            proxy_http_version 1.1;
            proxy_pass_request_headers off;
            proxy_pass_request_body off;
            proxy_set_header Connection "";
            proxy_buffering on;
            proxy_buffers 8 64k;
            proxy_max_temp_file_size 0;
        }
    }
}
CONF
AWS_ENDPOINT_URL_S3=$EP LUABATCH_BUCKET=$BUCKET \
  "$NGINX" -p "$T/ngx/" -c "$T/ngx/nginx.conf" -e "$T/ngx/error.log" || die "nginx did not start"
U=http://127.0.0.1:$NPORT
for _ in $(seq 50); do curl -s -o /dev/null "$U/plain/obj-1024" && break; sleep 0.1; done
for n in $SIZES; do
  for p in objects plain; do
    curl -s "$U/$p/obj-$n" | cmp -s - "$T/obj-$n" || die "$p/obj-$n differs from the uploaded object"
  done
done
MASTER=$(cat "$T/ngx/nginx.pid")

# CPU ticks (utime + stime) of all workers of our master.
worker_ticks() {
  local t=0 p
  for p in $(pgrep -P "$MASTER"); do
    t=$(( t + $(awk '{ print $14 + $15 }' "/proc/$p/stat") ))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)

row() {  # row LABEL PATH -> "label|req/s|cpu_us_per_req"
  local label=$1 path=$2 t0 t1 out rps reqs
  wrk -t1 -c"$CONNS" -d2s "$U$path" >/dev/null 2>&1   # warm up
  t0=$(worker_ticks)
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "$U$path")
  t1=$(worker_ticks)
  echo "$out" | grep -Eq 'Non-2xx|Socket errors' && { echo "$out" >&2; die "errors on $path"; }
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
  awk -v l="$label" -v r="$rps" -v n="$reqs" -v d="$(( t1 - t0 ))" -v hz="$HZ" \
    'BEGIN { printf "%s|%.0f|%.1f\n", l, r, d / hz * 1e6 / n }'
}

echo "== nginx: wrk ${SECS}s, $CONNS connections, $WORKERS worker(s) per row" >&2
rows=""
for n in $SIZES; do
  kib=$(( n / 1024 ))
  rows="$rows$(row "$kib KiB, unsigned proxy (public-read)" "/plain/obj-$n")"$'\n'
  rows="$rows$(row "$kib KiB, signed /objects/KEY (luabatch)" "/objects/obj-$n")"$'\n'
done
{
  echo
  echo "| nginx -> Ceph RGW, GET ($WORKERS worker, wrk -c$CONNS, ${SECS} s) | requests/s | nginx CPU µs/request | vs unsigned |"
  echo "|---|---:|---:|---:|"
  echo -n "$rows" | awk -F'|' '
    /unsigned/ { base = $2 }
    { printf "| %s | %s | %s | %.2fx |\n", $1, $2, $3, $2 / base }'
} | tee -a "$OUT/results.md"
