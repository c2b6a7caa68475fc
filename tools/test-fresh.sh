#!/bin/sh
# tools/test-fresh.sh: the README's set-up (`make run`, then `make test`) on
# a clean clone of HEAD inside a minimal Debian 12 container, so a package
# the suite needs but tools/deps.sh does not install shows up here first.
#
# Needs root, Debian's docker.io and debootstrap (tools/deps.sh image) and Debian's package archive (the container's apt-get uses this
# machine's apt sources).  No registry: the base image is a debootstrap
# minbase of bookworm, imported once and kept (image luabatch-fresh:bookworm).
# A private dockerd (tools/dockerd.sh) runs for the duration unless
# DOCKER_HOST already answers.
#   LB_FRESH_DIR   that daemon's state, the image with it (default build/fresh-docker)
# The container's whole output goes to build/test-fresh.log, its test logs
# to build/test-fresh-logs/; the last line
# printed is make test's closing "N passed, M failed" (exit status: its).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
S=${LB_FRESH_DIR:-$ROOT/build/fresh-docker}
LOG=$ROOT/build/test-fresh.log
IMAGE=luabatch-fresh:bookworm
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
mkdir -p "$S" "$ROOT/build"

tools/deps.sh image                     # docker.io, debootstrap
command -v git >/dev/null || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null
DOCKER=/usr/bin/docker

# A private daemon (tools/dockerd.sh) unless DOCKER_HOST already answers.
STARTED=""
if ! $DOCKER version >/dev/null 2>&1; then
  eval "export $(tools/dockerd.sh start "$S")"
  STARTED=1
fi
WORK=$(mktemp -d)
cleanup() {
  # (the inner daemon leaves files only root may remove)
  rm -rf "$WORK" 2>/dev/null || $SUDO rm -rf "$WORK"
  [ -z "$STARTED" ] || tools/dockerd.sh stop "$S"
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
rm -f /etc/apt/sources.list                 # debootstrap's; this machine's instead
cp -r /in/apt/. /etc/apt/
# the cgroup tree writable: every hierarchy (cgroup v1 has one per
# controller), bind-remounted rw, else mounted again without "ro"
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
  mount -o remount,bind,rw "$m" 2>/dev/null && continue
  o=$(awk -v m="$m" '$2 == m {print $4}' /proc/mounts | sed 's/^ro,//')
  t=$(awk -v m="$m" '$2 == m {print $3}' /proc/mounts)
  umount "$m" && mount -t "$t" -o "$o" "$t" "$m" || echo "test-fresh: $m stays read-only" >&2
done
cp -a /in/src/. /luabatch/ && cd /luabatch
apt-get update -qq >/dev/null
command -v make >/dev/null || apt-get install -y -qq --no-install-recommends make >/dev/null
echo "== make run"
make run
echo "== make test"
rc=0; make test || rc=$?
cp -r build/test-logs/. /out/ 2>/dev/null || true
exit $rc
EOF
echo "test-fresh: make run && make test in a fresh bookworm container (log: build/test-fresh.log)" >&2
set +e
# The suite's container steps run their own dockerd inside: every
# capability this machine has (--privileged asks for all, and a sandboxed
# machine may lack one: "unable to apply caps"), no seccomp/AppArmor
# filter, the cgroup tree writable (fresh.sh remounts it), and build/ on
# this machine's disk (overlay2 cannot stack on the container's overlay).
CAPS="CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ"
bnd=$((0x$(awk '/^CapBnd/{print $2}' /proc/self/status)))
capflags="--cap-add ALL" i=0
for c in $CAPS; do                      # bit i of the bounding set is capability i
  [ $(( (bnd >> i) & 1 )) = 1 ] || capflags="$capflags --cap-drop $c"
  i=$((i + 1))
done
mkdir -m 777 "$WORK/out" "$WORK/build"
# shellcheck disable=SC2086
$DOCKER run --rm $capflags --security-opt seccomp=unconfined \
  --security-opt apparmor=unconfined --network host --shm-size 1g -v "$WORK:/in:ro" -v "$WORK/out:/out" \
  -v "$WORK/build:/luabatch/build" $IMAGE bash /in/fresh.sh >"$LOG" 2>&1
rc=$?
rm -rf "$ROOT/build/test-fresh-logs" && cp -r "$WORK/out" "$ROOT/build/test-fresh-logs"
set -e
tail -n 15 "$LOG"
[ $rc -eq 0 ] || echo "test-fresh: container exited $rc" >&2
exit $rc
