#!/bin/sh
# Install the Debian packages luabatch builds and tests with; quiet and
# idempotent: nothing happens when they are all there.
#
# LuaJIT comes as OpenResty's fork (luajit2), the one nginx's lua module
# needs; it replaces Debian's plain luajit (same headers, same `luajit`).
set -e
# tools/deps.sh [run|image|test]: "run" installs what building and running need
# (make run); "image" adds Docker (Debian's engine and CLI) and debootstrap,
# what `make image` needs; "test" (the default) adds those and the test and
# benchmark stack: LuaJIT, busted, Ceph RGW, nginx, Chromium (the nginx
# dashboard spec renders its page headless), valgrind, clang, awscli,
# boto3 (~1.7 GB).
RUN_PKGS="build-essential pkg-config lua5.4 liblua5.4-dev libcurl4-openssl-dev libssl-dev
libyaml-dev libexpat1-dev lua-cjson lua-cjson-dev libedit-dev python3 ca-certificates"
TEST_PKGS="luajit2 libluajit2-5.1-dev lua-busted luarocks python3-botocore python3-boto3 awscli curl
valgrind libclang-rt-14-dev clang openssl ceph-mon ceph-osd radosgw time
nginx libnginx-mod-http-lua lua-resty-core lua-resty-lrucache wrk procps chromium git"
IMAGE_PKGS="docker.io debootstrap"
case "${1:-test}" in
  run) PKGS="$RUN_PKGS" ;;
  image) PKGS="$RUN_PKGS $IMAGE_PKGS" ;;
  test) PKGS="$RUN_PKGS $IMAGE_PKGS $TEST_PKGS" ;;
  *) echo "usage: tools/deps.sh [run|image|test]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# No service may start during the install (the nginx package would start a
# daemon on port 80): a policy-rc.d that exits 101 ("action forbidden"),
# ours only if none is there, removed again afterwards.
RCD=/usr/sbin/policy-rc.d
if [ ! -e $RCD ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $RCD >/dev/null
  $SUDO chmod 755 $RCD
  trap '$SUDO rm -f $RCD' EXIT
fi
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
