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
# The server's own reach, in the same rounds: curl's SigV4 signer moving the
# same bytes with no client logic of its own -- one PUT of the file, N PUTs of
# N slices at once (separate objects: S3 has no ranged PUT), one GET of the
# object luabatch uploaded into a file (and into /dev/null, shown, not
# counted), N ranged GETs at once into N part files (the cheapest honest
# split: no copy through a pipe; the parts are checked, concatenated, against
# the source afterwards).  N curl processes run under one xargs, whose CPU
# and peak RSS (the largest curl) time -v reports.  The reach of a direction is
# the best of its single and parallel rows; luabatch's throughput is reported
# as a fraction of it.
#
# Environment: BENCH_S3_MIB (default 1024), BENCH_S3_BIG_MIB (default 4096;
# 0 skips the big-file run), BENCH_S3_FILES (default 200 small files for
# `cp -r` each way; 0 skips), BENCH_S3_RUNS (default 2 interleaved rounds;
# the order of the clients alternates each round; the best run of each kind
# is kept, every figure alike), BENCH_S3_CURL_PAR (default "4 8": the
# parallel curl rows), LUABATCH (default build/lua5.4/bin/luabatch), AWS_CLI
# (default /usr/bin/aws, Debian's awscli), CURL (default curl, 7.75 or later
# for --aws-sigv4), BENCH_TMP (default: mktemp -d).
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
CURL=${CURL:-curl}
CURL_PAR=${BENCH_S3_CURL_PAR:-4 8}
TIME=/usr/bin/time

die() { echo "s3 bench: $*" >&2; exit 1; }
[ -x "$LB" ] || die "$LB not built (make)"
[ -x "$AWS" ] || die "$AWS missing (Debian package awscli; make deps)"
[ -x "$TIME" ] || die "$TIME missing (Debian package time; make deps)"
command -v radosgw >/dev/null || die "radosgw missing (make deps)"
command -v openssl >/dev/null || die "openssl missing (make deps)"
command -v "$CURL" >/dev/null || die "$CURL missing (make deps)"
for n in $CURL_PAR; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_S3_CURL_PAR: '$n' is not a count"; done

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
# garbage collection.  A round keeps awscli's, luabatch's (two) and curl's single
# and parallel objects; twice that room, as writes slow down sharply (a 1 GiB
# PUT from 3 s to 12 s) when the OSD nears its full ratio.  The cap costs
# nothing unless used.
ep=$(MEMSTORE_BYTES=$(( (2 * (4 + $(wc -w <<<"$CURL_PAR")) * MIB + BIG_MIB + 1024) * 1048576 )) \
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

# curl's own SigV4 signer.  curl 7.88 neither sends x-amz-content-sha256 nor
# hashes an uploaded file, and RGW refuses its signature without that header
# (SignatureDoesNotMatch): send UNSIGNED-PAYLOAD, which curl then signs as
# the payload hash, as luabatch and awscli may do over plain HTTP.  (Do not
# drop curl's "Expect: 100-continue" with -H 'Expect:': curl 7.88 then signs
# a header it does not send.)  -f: an HTTP error fails the row.
CURL_S3=("$CURL" -sSf --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
         -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
URL=$EP/$BUCKET
if ! "${CURL_S3[@]}" -T "$T/probe" -o /dev/null "$URL/curl-probe" 2>"$T/probe.err" ||
   ! "${CURL_S3[@]}" -o "$T/probe.curl" "$URL/curl-probe" 2>>"$T/probe.err" ||
   ! cmp -s "$T/probe" "$T/probe.curl" ||
   ! "${CURL_S3[@]}" -X DELETE "$URL/curl-probe" 2>>"$T/probe.err"; then
  cat "$T/probe.err" >&2
  die "curl --aws-sigv4 does not round-trip a file through RGW; the server's reach cannot be measured"
fi

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
check() {  # check FILE...: the download (its parts in order) must equal the source
  [ "$(cat "$@" | sha256sum | cut -d' ' -f1)" = "$SRC_SHA" ] || die "$1: SHA-256 differs from the source"
  rm -f "$@"
}

# The curl rows' work lists, one xargs argument a line: N slices of the
# source for N PUTs ("-T SLICE URL"), N byte ranges for N GETs ("-r A-B -o
# PART").  The slices are cut once, before any timing.
SIZE=$((MIB * 1048576))
for n in $CURL_PAR; do
  mkdir -p "$T/slices-$n" "$T/parts-$n"
  split -b $(( (SIZE + n - 1) / n )) -d -a 4 "$SRC" "$T/slices-$n/s."
  for f in "$T/slices-$n"/s.*; do printf '%s\n' -T "$f" "$URL/curl-$n/${f##*/}"; done > "$T/put-$n"
  for i in $(seq 0 $((n - 1))); do
    a=$(( i * ((SIZE + n - 1) / n) )); b=$(( a + (SIZE + n - 1) / n - 1 ))
    [ "$b" -lt "$SIZE" ] || b=$((SIZE - 1))
    [ "$a" -gt "$b" ] || printf '%s\n' -r "$a-$b" -o "$(printf '%s/p.%04d' "$T/parts-$n" "$i")"
  done > "$T/get-$n"
done

# One round's measures.  Everyone downloads the object luabatch uploaded
# (curl's GETs thereby check it independently).
up() {
  case $1 in
    aws) measure aws-up "$AWS" --endpoint-url "$EP" s3 cp --only-show-errors "$SRC" "s3://$BUCKET/aws.bin" ;;
    lb) measure lb-up "$LB" s3 cp -q "$SRC" "s3://$BUCKET/lb.bin"
        # unsigned: no SHA-256 on either side (the engine against curl's reach)
        measure lb-upu "$LB" s3 cp -q --unsigned-payload "$SRC" "s3://$BUCKET/lbu.bin" ;;
    curl)
      measure curl-up-1 "${CURL_S3[@]}" -T "$SRC" -o /dev/null "$URL/curl.bin"
      for n in $CURL_PAR; do   # N curl processes at once, one argument a line
        measure "curl-up-$n" xargs -a "$T/put-$n" -d '\n' -P "$n" -n 3 "${CURL_S3[@]}" -o /dev/null
      done ;;
  esac
}
down() {
  case $1 in
    aws) measure aws-down "$AWS" --endpoint-url "$EP" s3 cp --only-show-errors "s3://$BUCKET/aws.bin" "$T/aws.out"
         check "$T/aws.out" ;;
    lb) measure lb-down "$LB" s3 cp -q "s3://$BUCKET/lb.bin" "$T/lb.out"
        check "$T/lb.out" ;;
    curl)
      measure curl-down-1 "${CURL_S3[@]}" -o "$T/curl.out" "$URL/lb.bin"
      check "$T/curl.out"
      measure curl-down-null "${CURL_S3[@]}" -o /dev/null "$URL/lb.bin"
      for n in $CURL_PAR; do
        measure "curl-down-$n" xargs -a "$T/get-$n" -d '\n' -P "$n" -n 4 "${CURL_S3[@]}" "$URL/lb.bin"
        check "$T/parts-$n"/p.*
      done ;;
  esac
}
delete_round() {  # frees the round's objects (memstore keeps them in RAM)
  local k f
  for k in aws.bin lb.bin lbu.bin curl.bin; do "${CURL_S3[@]}" -X DELETE "$URL/$k" || true; done
  for n in $CURL_PAR; do
    for f in "$T/slices-$n"/s.*; do "${CURL_S3[@]}" -X DELETE "$URL/curl-$n/${f##*/}" || true; done
  done
  gc
}

: > "$T/results"
order="aws lb curl"
for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS: $MIB MiB up and down ($order)" >&2
  for who in $order; do up "$who"; done
  for who in $order; do down "$who"; done
  delete_round
  order=$(tr ' ' '\n' <<<"$order" | tac | paste -sd ' ')
done
rm -rf "$SRC" "$T"/slices-* "$T"/parts-*

# Many small files: `cp -r` and `sync` of BENCH_S3_FILES files (1 KiB..65 KiB)
# up and down, luabatch (32 in flight) against awscli (10), rounds
# interleaved; sync also once more with nothing to send.
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
    # sync: to a fresh prefix, again with nothing to send, down to a fresh directory
    rm -rf "$T/aws-sync" "$T/lb-sync"
    measure aws-syncup "$AWS" --endpoint-url "$EP" s3 sync --only-show-errors "$T/small" "s3://$BUCKET/aws-sync/"
    measure lb-syncup "$LB" s3 sync -q "$T/small" "s3://$BUCKET/lb-sync/"
    measure aws-syncnoop "$AWS" --endpoint-url "$EP" s3 sync --only-show-errors "$T/small" "s3://$BUCKET/aws-sync/"
    measure lb-syncnoop "$LB" s3 sync -q "$T/small" "s3://$BUCKET/lb-sync/"
    measure aws-syncdown "$AWS" --endpoint-url "$EP" s3 sync --only-show-errors "s3://$BUCKET/aws-sync/" "$T/aws-sync"
    measure lb-syncdown "$LB" s3 sync -q "s3://$BUCKET/lb-sync/" "$T/lb-sync"
    diff -r "$T/small" "$T/lb-sync" >/dev/null || die "small files: the sync down differs from the source"
    for p in aws-small lb-small aws-sync lb-sync; do
      aws_ s3 rm --recursive --only-show-errors "s3://$BUCKET/$p/" >/dev/null
    done
  done
  rm -rf "$T/small" "$T/aws-back" "$T/lb-back" "$T/aws-sync" "$T/lb-sync"
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

# The tables: the best (shortest wall) run of each kind, for every client
# alike; the curl table adds the range of MiB/s over the rounds.
awk -v mib="$MIB" -v big="$BIG_MIB" -v nf="$NFILES" -v shak="$SHA_K" -v par="$CURL_PAR" -v runs="$RUNS" \
    -v awsv="$("$AWS" --version 2>&1 | cut -d' ' -f1)" -v curlv="$("$CURL" --version | sed -n '1s/^\([^ ]* [^ ]*\).*/\1/p')" '
  { if (!($1 in w) || $2 < w[$1]) { w[$1] = $2; c[$1] = $3; r[$1] = $4 }
    if (!($1 in hi) || $2 > hi[$1]) hi[$1] = $2 }
  function rate(k) { return mib / w[k] }
  function pct(k, d) { return reach[d] > 0 ? sprintf("%.0f%%", 100 * rate(k) / reach[d]) : "n/a" }
  END {
    gib = mib / 1024
    floor = 1073741824 / (shak * 1000)          # CPU s per GiB to SHA-256 every byte once
    # The server reach of a direction: its best curl row (single or parallel;
    # the GET into /dev/null writes no file and is not counted).
    np = split("1 " par, ns, " ")
    for (j = 1; j <= np; j++) {
      if (("curl-up-" ns[j]) in w && rate("curl-up-" ns[j]) > reach["up"]) { reach["up"] = rate("curl-up-" ns[j]); best["up"] = "curl-up-" ns[j] }
      if (("curl-down-" ns[j]) in w && rate("curl-down-" ns[j]) > reach["down"]) { reach["down"] = rate("curl-down-" ns[j]); best["down"] = "curl-down-" ns[j] }
    }
    printf "\n| S3 cp %d MiB, Ceph RGW on loopback | wall s | MiB/s | client CPU s/GiB | peak RSS MiB | throughput vs awscli | CPU vs awscli | vs server reach |\n", mib
    print "|---|---:|---:|---:|---:|---:|---:|---:|"
    n = split("up down", dir, " ")
    for (i = 1; i <= n; i++) {
      d = dir[i]; a = "aws-" d; l = "lb-" d
      label = d == "up" ? "upload" : "download"
      printf "| %s %s | %.2f | %.0f | %.2f | %.0f | 1.0x | 1.00 | %s |\n", awsv, label, w[a], rate(a), c[a] / gib, r[a] / 1024, pct(a, d)
      printf "| luabatch %s | %.2f | %.0f | %.2f | %.0f | %.1fx | %.2f | %s |\n", label, w[l], rate(l), c[l] / gib, r[l] / 1024, w[a] / w[l], c[l] / c[a], pct(l, d)
      if (d == "up" && ("lb-upu" in w))
        printf "| luabatch upload --unsigned-payload (no SHA-256 either side, as curl) | %.2f | %.0f | %.2f | %.0f | %.1fx | %.2f | %s |\n", w["lb-upu"], rate("lb-upu"), c["lb-upu"] / gib, r["lb-upu"] / 1024, w[a] / w["lb-upu"], c["lb-upu"] / c[a], pct("lb-upu", d)
    }
    printf "\n| server reach: %s --aws-sigv4, same RGW, same rounds | wall s | MiB/s | MiB/s over %d rounds | client CPU s/GiB | peak RSS MiB (largest curl) |\n", curlv, runs
    print "|---|---:|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) {
      d = dir[i]
      for (j = 1; j <= np; j++) {
        k = "curl-" d "-" ns[j]
        if (!(k in w)) continue
        if (d == "up")
          label = ns[j] == 1 ? "upload: 1 PUT of the file" : sprintf("upload: %d PUTs at once of %d slices (separate objects; S3 has no ranged PUT)", ns[j], ns[j])
        else
          label = ns[j] == 1 ? "download: 1 GET into a file" : sprintf("download: %d ranged GETs at once into %d part files", ns[j], ns[j])
        if (k == best[d]) label = label " = **reach**"
        printf "| %s | %.2f | %.0f | %.0f–%.0f | %.2f | %.0f |\n", label, w[k], rate(k), mib / hi[k], rate(k), c[k] / gib, r[k] / 1024
        if (d == "down" && ns[j] == 1 && ("curl-down-null" in w))
          printf "| download: 1 GET into /dev/null (no file written; not counted) | %.2f | %.0f | %.0f–%.0f | %.2f | %.0f |\n", w["curl-down-null"], rate("curl-down-null"), mib / hi["curl-down-null"], rate("curl-down-null"), c["curl-down-null"] / gib, r["curl-down-null"] / 1024
      }
    }
    printf "\nGoals: luabatch throughput >= 95%% of the server reach: upload %s (%.0f MiB/s, %.0f–%.0f over the rounds, of %.0f), download %s (%.0f MiB/s, %.0f–%.0f, of %.0f); client CPU <= 1/4 of awscli: upload %.2f, download %.2f; peak RSS <= 64 MiB: upload %.0f, download %.0f MiB.\n", \
      pct("lb-up", "up"), rate("lb-up"), mib / hi["lb-up"], rate("lb-up"), reach["up"], pct("lb-down", "down"), rate("lb-down"), mib / hi["lb-down"], rate("lb-down"), reach["down"], \
      c["lb-up"] / c["aws-up"], c["lb-down"] / c["aws-down"], r["lb-up"] / 1024, r["lb-down"] / 1024
    if ("lb-smallup" in w) {
      printf "\n| S3 cp -r and sync of %d small files | wall s | client CPU s | peak RSS MiB | vs awscli |\n", nf
      print "|---|---:|---:|---:|---:|"
      n = split("smallup smalldown syncup syncnoop syncdown", dir, " ")
      split("cp -r upload|cp -r download|sync up (fresh prefix)|sync up again (nothing to send)|sync down (fresh directory)", labels, "|")
      for (i = 1; i <= n; i++) {
        d = dir[i]; a = "aws-" d; l = "lb-" d
        if (!(l in w)) continue
        label = labels[i]
        printf "| %s %s | %.2f | %.2f | %.0f | 1.0x |\n", awsv, label, w[a], c[a], r[a] / 1024
        printf "| luabatch %s | %.2f | %.2f | %.0f | %.1fx |\n", label, w[l], c[l], r[l] / 1024, w[a] / w[l]
      }
    }
    if (big > 0)
      printf "\nPeak RSS of `luabatch s3 cp` for a %d MiB file: upload %.1f MiB, download %.1f MiB.\n", big, r["lb-big-up"] / 1024, r["lb-big-down"] / 1024
    printf "\nSHA-256 floor (`openssl speed sha256`, 1 MiB blocks): %.0f MiB/s = %.2f CPU s/GiB; luabatch uses %.1fx that uploading (%.2f s/GiB over the floor), %.1fx downloading (%.2f s/GiB over).\n", shak * 1000 / 1048576, floor, c["lb-up"] / gib / floor, c["lb-up"] / gib - floor, c["lb-down"] / gib / floor, c["lb-down"] / gib - floor
  }' "$T/results" | tee -a "$OUT/results.md"
