#!/usr/bin/env bash
# tests/bench/s3.sh: `luabatch s3 cp` against `aws s3 cp` (Debian awscli),
# both against the same private Ceph RGW in the same run.
#
#   tests/bench/s3.sh                (called by tests/bench/run; `make bench`)
#
# Measures, with /usr/bin/time -v: upload and download of a 1 GiB random file
# (wall time -> MiB/s, client user+sys CPU -> CPU seconds per GiB, peak RSS),
# the peak RSS of `luabatch s3 cp` for a 4 GiB file each way, and the SHA-256
# floor from `openssl speed` (a transfer hashes every byte once).  Prints a
# Markdown table and appends it to build/bench/results.md.
#
# Environment: BENCH_S3_MIB (default 1024), BENCH_S3_BIG_MIB (default 4096;
# 0 skips the big-file run), BENCH_S3_FILES (default 200 small files for
# `cp -r` each way; 0 skips), BENCH_S3_RUNS (default 2; the best run of each
# kind is kept), LUABATCH (default build/lua5.4/bin/luabatch), AWS_CLI
# (default /usr/bin/aws, Debian's awscli), BENCH_TMP (default: mktemp -d).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench
mkdir -p "$OUT"
MIB=${BENCH_S3_MIB:-1024}
BIG_MIB=${BENCH_S3_BIG_MIB:-4096}
RUNS=${BENCH_S3_RUNS:-2}
LB=${LUABATCH:-$ROOT/build/lua5.4/bin/luabatch}
AWS=${AWS_CLI:-/usr/bin/aws}
TIME=/usr/bin/time

die() { echo "s3 bench: $*" >&2; exit 1; }
[ -x "$LB" ] || die "$LB not built (make)"
[ -x "$AWS" ] || die "$AWS missing (Debian package awscli; make deps)"
[ -x "$TIME" ] || die "$TIME missing (Debian package time; make deps)"
command -v radosgw >/dev/null || die "radosgw missing (make deps)"
command -v openssl >/dev/null || die "openssl missing (make deps)"

T=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/lb-s3bench.XXXXXX")
RGW_DIR=$T/rgw
cleanup() {
  tests/servers/rgw.sh stop "$RGW_DIR" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(free_port); MONPORT=$(free_port)
echo "== S3 transfers: starting a private Ceph RGW on port $PORT" >&2
# memstore keeps objects in RAM; deleted objects are only freed by RGW's
# garbage collection, so leave room for the 1 GiB objects plus the big one.
ep=$(MEMSTORE_BYTES=$(( (4 * MIB + BIG_MIB + 1024) * 1048576 )) \
     tests/servers/rgw.sh start "$RGW_DIR" "$PORT" "$MONPORT" 2>"$T/rgw-start.log") \
  || { cat "$T/rgw-start.log" >&2; die "Ceph RGW did not start"; }
EP=${ep#endpoint=}
RGWCONF=$RGW_DIR/ceph.conf

export AWS_ACCESS_KEY_ID=RGWTESTKEY AWS_SECRET_ACCESS_KEY=RGWTESTSECRET
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$EP AWS_PAGER=""
export AWS_CONFIG_FILE=$T/aws-config AWS_SHARED_CREDENTIALS_FILE=$T/aws-credentials
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE || true
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
: > "$AWS_CONFIG_FILE"; : > "$AWS_SHARED_CREDENTIALS_FILE"
BUCKET=lb-bench-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
aws_() { "$AWS" --endpoint-url "$EP" "$@"; }

aws_ s3 mb "s3://$BUCKET" >/dev/null || die "aws s3 mb failed"

# Preflight: the luabatch CLI must round-trip a small file before we time it.
head -c 100000 /dev/urandom > "$T/probe"
if ! "$LB" s3 cp -q "$T/probe" "s3://$BUCKET/probe" 2>"$T/probe.err" ||
   ! "$LB" s3 cp -q "s3://$BUCKET/probe" "$T/probe.back" 2>>"$T/probe.err" ||
   ! cmp -s "$T/probe" "$T/probe.back"; then
  cat "$T/probe.err" >&2
  die "'luabatch s3 cp' does not work yet (see the error above); nothing measured"
fi
aws_ s3 rm "s3://$BUCKET/probe" >/dev/null

# measure NAME CMD...: run CMD under time -v; appends "NAME wall cpu rss_kib" to $T/results
measure() {
  local name=$1; shift
  sync
  if ! "$TIME" -v -o "$T/$name.time" "$@" >"$T/$name.out" 2>&1; then
    cat "$T/$name.out" >&2
    die "$name failed: $*"
  fi
  awk -v n="$name" '
    /Elapsed \(wall clock\)/ { t = $NF; k = split(t, a, ":"); w = 0; for (i = 1; i <= k; i++) w = w * 60 + a[i] }
    /User time \(seconds\)/ { u = $NF }
    /System time \(seconds\)/ { s = $NF }
    /Maximum resident set size/ { r = $NF }
    END { printf "%s %.3f %.3f %d\n", n, w, u + s, r }' "$T/$name.time" >> "$T/results"
  tail -n 1 "$T/results" | awk '{ printf "   %-14s %7.2f s wall, %6.2f s CPU, %5.0f MiB peak RSS\n", $1, $2, $3, $4 / 1024 }' >&2
}

gc() { radosgw-admin -c "$RGWCONF" gc process --include-all >/dev/null 2>&1 || true; }

echo "== creating a $MIB MiB random file" >&2
SRC=$T/src.bin
head -c $((MIB * 1048576)) /dev/urandom > "$SRC"
SRC_SHA=$(sha256sum "$SRC" | cut -d' ' -f1)
check() {  # check FILE: the download must equal the source
  [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SRC_SHA" ] || die "$1: SHA-256 differs from the source"
  rm -f "$1"
}

: > "$T/results"
for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS: $MIB MiB up and down" >&2
  measure aws-up "$AWS" --endpoint-url "$EP" s3 cp --only-show-errors "$SRC" "s3://$BUCKET/aws.bin"
  measure lb-up "$LB" s3 cp -q "$SRC" "s3://$BUCKET/lb.bin"
  measure aws-down "$AWS" --endpoint-url "$EP" s3 cp --only-show-errors "s3://$BUCKET/aws.bin" "$T/aws.out"
  check "$T/aws.out"
  measure lb-down "$LB" s3 cp -q "s3://$BUCKET/lb.bin" "$T/lb.out"
  check "$T/lb.out"
  aws_ s3 rm "s3://$BUCKET/aws.bin" >/dev/null
  aws_ s3 rm "s3://$BUCKET/lb.bin" >/dev/null
  gc
done
rm -f "$SRC"

# Many small files: `cp -r` of BENCH_S3_FILES files (1 KiB..65 KiB) up and
# down, luabatch (32 in flight) against awscli (10), rounds interleaved.
NFILES=${BENCH_S3_FILES:-200}
if [ "$NFILES" -gt 0 ]; then
  echo "== $NFILES small files up and down (cp -r)" >&2
  mkdir -p "$T/small"
  for i in $(seq "$NFILES"); do head -c $(( (i * 7919 % 64) * 1024 + 1024 )) /dev/urandom > "$T/small/f$i.bin"; done
  for run in $(seq "$RUNS"); do
    measure aws-smallup "$AWS" --endpoint-url "$EP" s3 cp --only-show-errors --recursive "$T/small" "s3://$BUCKET/aws-small/"
    measure lb-smallup "$LB" s3 cp -q -r "$T/small" "s3://$BUCKET/lb-small/"
    rm -rf "$T/aws-back" "$T/lb-back"
    measure aws-smalldown "$AWS" --endpoint-url "$EP" s3 cp --only-show-errors --recursive "s3://$BUCKET/aws-small/" "$T/aws-back"
    measure lb-smalldown "$LB" s3 cp -q -r "s3://$BUCKET/lb-small/" "$T/lb-back"
    diff -r "$T/small" "$T/lb-back" >/dev/null || die "small files: the download differs from the source"
    aws_ s3 rm --recursive --only-show-errors "s3://$BUCKET/aws-small/" >/dev/null
    aws_ s3 rm --recursive --only-show-errors "s3://$BUCKET/lb-small/" >/dev/null
  done
  rm -rf "$T/small" "$T/aws-back" "$T/lb-back"
fi

SHA_K=$(openssl speed -seconds 2 -bytes 1048576 sha256 2>/dev/null | awk '$1 == "sha256" { sub(/k$/, "", $2); print $2 }')
[ -n "$SHA_K" ] || die "could not read 'openssl speed sha256'"

if [ "$BIG_MIB" -gt 0 ]; then
  echo "== peak RSS for a $BIG_MIB MiB file (sparse)" >&2
  truncate -s $((BIG_MIB * 1048576)) "$T/big.bin"
  measure lb-big-up "$LB" s3 cp -q "$T/big.bin" "s3://$BUCKET/big.bin"
  rm -f "$T/big.bin"
  measure lb-big-down "$LB" s3 cp -q "s3://$BUCKET/big.bin" "$T/big.out"
  [ "$(stat -c %s "$T/big.out")" = $((BIG_MIB * 1048576)) ] || die "big download: wrong size"
  rm -f "$T/big.out"
  aws_ s3 rm "s3://$BUCKET/big.bin" >/dev/null
fi
aws_ s3 rb "s3://$BUCKET" >/dev/null 2>&1 || true

# The table: best (shortest wall) run of each kind.
awk -v mib="$MIB" -v big="$BIG_MIB" -v nf="$NFILES" -v shak="$SHA_K" \
    -v awsv="$("$AWS" --version 2>&1 | cut -d' ' -f1)" '
  { if (!($1 in w) || $2 < w[$1]) { w[$1] = $2; c[$1] = $3; r[$1] = $4 } }
  END {
    gib = mib / 1024
    floor = 1073741824 / (shak * 1000)          # CPU s per GiB to SHA-256 every byte once
    printf "\n| S3 cp %d MiB, Ceph RGW on loopback | wall s | MiB/s | client CPU s/GiB | peak RSS MiB | throughput vs awscli | CPU vs awscli |\n", mib
    print "|---|---:|---:|---:|---:|---:|---:|"
    n = split("up down", dir, " ")
    for (i = 1; i <= n; i++) {
      d = dir[i]; a = "aws-" d; l = "lb-" d
      label = d == "up" ? "upload" : "download"
      printf "| %s %s | %.2f | %.0f | %.2f | %.0f | 1.0x | 1.00 |\n", awsv, label, w[a], mib / w[a], c[a] / gib, r[a] / 1024
      printf "| luabatch %s | %.2f | %.0f | %.2f | %.0f | %.1fx | %.2f |\n", label, w[l], mib / w[l], c[l] / gib, r[l] / 1024, w[a] / w[l], c[l] / c[a]
    }
    if ("lb-smallup" in w) {
      printf "\n| S3 cp -r of %d small files | wall s | client CPU s | peak RSS MiB | vs awscli |\n", nf
      print "|---|---:|---:|---:|---:|"
      n = split("smallup smalldown", dir, " ")
      for (i = 1; i <= n; i++) {
        d = dir[i]; a = "aws-" d; l = "lb-" d
        label = d == "smallup" ? "upload" : "download"
        printf "| %s %s | %.2f | %.2f | %.0f | 1.0x |\n", awsv, label, w[a], c[a], r[a] / 1024
        printf "| luabatch %s | %.2f | %.2f | %.0f | %.1fx |\n", label, w[l], c[l], r[l] / 1024, w[a] / w[l]
      }
    }
    if (big > 0)
      printf "\nPeak RSS of `luabatch s3 cp` for a %d MiB file: upload %.1f MiB, download %.1f MiB.\n", big, r["lb-big-up"] / 1024, r["lb-big-down"] / 1024
    printf "\nSHA-256 floor (`openssl speed sha256`, 1 MiB blocks): %.0f MiB/s = %.2f CPU s/GiB; luabatch uses %.1fx that uploading (%.2f s/GiB over the floor), %.1fx downloading (%.2f s/GiB over).\n", shak * 1000 / 1048576, floor, c["lb-up"] / gib / floor, c["lb-up"] / gib - floor, c["lb-down"] / gib / floor, c["lb-down"] / gib - floor
  }' "$T/results" | tee -a "$OUT/results.md"
