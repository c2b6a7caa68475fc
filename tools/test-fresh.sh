#!/bin/sh
# tools/test-fresh.sh: the README's set-up (`make run`, then `make test`) on
# a clean clone of HEAD inside a minimal Debian 12 container, so a package
# the suite needs but tools/deps.sh does not install shows up here first.
#
# Needs root (or sudo), Debian's docker.io and debootstrap (installed when
# missing) and Debian's package archive (the container's apt-get uses this
# machine's apt sources).  No registry: the base image is a debootstrap
# minbase of bookworm, imported once and kept (image luabatch-fresh:bookworm).
# A private dockerd runs for the duration unless DOCKER_HOST already answers.
#   LB_FRESH_DIR   daemon state and image cache (default /tmp/luabatch-fresh)
# The container's whole output goes to build/test-fresh.log; the last line
# printed is make test's closing "N passed, M failed" (exit status: its).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
S=${LB_FRESH_DIR:-/tmp/luabatch-fresh}
LOG=$ROOT/build/test-fresh.log
IMAGE=luabatch-fresh:bookworm
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
mkdir -p "$S" "$ROOT/build"

need() {  # need PKG...: apt-get install what is missing
  miss=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || miss="$miss $p"
  done
  [ -z "$miss" ] && return 0
  echo "test-fresh: installing$miss" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $miss >/dev/null
}
need docker.io debootstrap git ca-certificates
DOCKER=/usr/bin/docker

# --- a private daemon (docs/design.md, "A fresh machine") -----------------
STARTED=""
if [ -z "${DOCKER_HOST:-}" ] || ! $DOCKER info >/dev/null 2>&1; then
  mkdir -p "$S/data" "$S/exec"
  if [ -e "$S/exec/netns/default" ]; then $SUDO umount "$S/exec/netns/default" 2>/dev/null || true; fi
  $SUDO dockerd --data-root "$S/data" --exec-root "$S/exec" --pidfile "$S/exec/dockerd.pid" \
    -H "unix://$S/docker.sock" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --host-gateway-ip=127.0.0.1 >"$S/dockerd.log" 2>&1 &
  STARTED=1
  export DOCKER_HOST="unix://$S/docker.sock"
  i=0
  until $DOCKER info >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 60 ] || { echo "test-fresh: dockerd did not start ($S/dockerd.log)" >&2; exit 1; }
    sleep 1
  done
fi
WORK=$(mktemp -d)
cleanup() {
  rm -rf "$WORK"
  if [ -n "$STARTED" ] && [ -f "$S/exec/dockerd.pid" ]; then
    $SUDO kill "$(cat "$S/exec/dockerd.pid")" 2>/dev/null || true
    sleep 2
    $SUDO umount "$S/exec/netns/default" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# --- the base image: debootstrap minbase, no registry ---------------------
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if ! $DOCKER image inspect $IMAGE >/dev/null 2>&1; then
  echo "test-fresh: debootstrap --variant=minbase bookworm (once)" >&2
  $SUDO debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$S/debootstrap.log" 2>&1
  $SUDO tar -C "$WORK/rootfs" -c . | $DOCKER import -c 'CMD ["/bin/bash"]' - $IMAGE >/dev/null
  $SUDO rm -rf "$WORK/rootfs"
fi

# --- the clone and this machine's apt sources ------------------------------
git clone -q --no-hardlinks "$ROOT" "$WORK/src"
mkdir -p "$WORK/apt/sources.list.d" "$WORK/apt/apt.conf.d"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && cp "$f" "$WORK/apt/${f#/etc/apt/}"
done
# Settings the archive needs (a snapshot mirror's dates, a proxy), as here.
apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
  >"$WORK/apt/apt.conf.d/90host" || true

# --- make run, then make test ----------------------------------------------
# A minimal Debian has no make: the README's step 0 installs it.
cat >"$WORK/fresh.sh" <<'EOF'
set -e
cp -r /in/apt/. /etc/apt/
cp -a /in/src /luabatch && cd /luabatch
apt-get update -qq >/dev/null
command -v make >/dev/null || apt-get install -y -qq --no-install-recommends make >/dev/null
echo "== make run"
make run
echo "== make test"
make test
EOF
echo "test-fresh: make run && make test in a fresh bookworm container (log: build/test-fresh.log)" >&2
set +e
$DOCKER run --rm --network host --shm-size 1g -v "$WORK:/in:ro" $IMAGE bash /in/fresh.sh >"$LOG" 2>&1
rc=$?
set -e
tail -n 15 "$LOG"
[ $rc -eq 0 ] || echo "test-fresh: container exited $rc" >&2
exit $rc
