#!/bin/sh
# tools/image.sh [TAG]: build the task image (examples/container/Dockerfile,
# as written) and tag it TAG (default luabatch:latest); `make image` runs it.
#
# Docker: DOCKER_HOST (or the default socket) when it answers; otherwise a
# private daemon under build/docker (tools/dockerd.sh), stopped again at the
# end unless LUABATCH_KEEP_DOCKERD=1.  The base, debian:bookworm-slim, is used
# when the daemon has it, pulled when a registry answers, and otherwise made
# here: a debootstrap minbase root of bookworm from the machine's own apt
# mirror, cached as build/image/bookworm-minbase.tar, imported under that name.
# The context is the repository minus what Dockerfile.dockerignore names (the
# legacy builder, which needs no registry, does not read that file).
# Last line: "image TAG: N MB, `luabatch --version` in a container: S s".
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
TAG=${1:-luabatch:latest}
BASE=debian:bookworm-slim
CACHE=$ROOT/build/image
mkdir -p "$CACHE"

started=""
if ! docker version >/dev/null 2>&1; then
  eval "export $(tools/dockerd.sh start "$ROOT/build/docker")"
  [ "${LUABATCH_KEEP_DOCKERD:-0}" = 1 ] || started=1
fi
cleanup() { [ -z "$started" ] || tools/dockerd.sh stop "$ROOT/build/docker"; }
trap cleanup EXIT

# debootstrap_base: the minbase root as a tar (once), imported as $BASE.
debootstrap_base() {
  tarball=$CACHE/bookworm-minbase.tar
  if [ ! -s "$tarball" ]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || { echo "image: no Debian mirror in the apt sources" >&2; exit 1; }
    command -v debootstrap >/dev/null || { echo "image: debootstrap not installed (tools/deps.sh image)" >&2; exit 1; }
    rootfs=$CACHE/rootfs.tmp
    rm -rf "$rootfs"
    echo "image: debootstrap --variant=minbase bookworm (once; cached in build/image)" >&2
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  docker import -c 'CMD ["/bin/bash"]' "$tarball" "$BASE" >/dev/null
}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if [ "${LUABATCH_IMAGE_PULL:-1}" = 1 ] && timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; then
    echo "image: pulled $BASE" >&2
  else
    debootstrap_base
  fi
fi

# The build context: the working tree without the ignored paths.
excludes=""
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  excludes="$excludes --exclude=./$line"
done < examples/container/Dockerfile.dockerignore
# shellcheck disable=SC2086
tar -C "$ROOT" -c $excludes . |
  DOCKER_BUILDKIT=0 docker build -q --network host -f examples/container/Dockerfile -t "$TAG" - >/dev/null

size=$(docker image inspect -f '{{.Size}}' "$TAG")
t0=$(date +%s.%N)
docker run --rm --network host "$TAG" luabatch --version >/dev/null
t1=$(date +%s.%N)
awk -v t="$TAG" -v s="$size" -v a="$t0" -v b="$t1" \
  'BEGIN { printf "image %s: %.0f MB, `luabatch --version` in a container: %.2f s\n", t, s / 1e6, b - a }'
