#!/usr/bin/env bash
# tests/bench/startup.sh: start-up time of the luabatch executable against
# boto3 (import boto3 + one client: what a Python tool pays before its first
# request) and the bare lua5.4 interpreter (the floor), in the same run.
# Each command runs R times (BENCH_STARTUP_RUNS, default 40; boto3 R/4);
# the median wall time is reported (a busy machine's outliers drop out).
# Prints a Markdown table and appends it to build/bench/results.md.
set -eu
cd "$(dirname "$0")/../.."
OUT=build/bench
mkdir -p $OUT
R=${BENCH_STARTUP_RUNS:-40}
EXE=build/lua5.4/bin/luabatch
WF=$(mktemp -d)/local.yml
trap 'rm -rf "$(dirname "$WF")"' EXIT
cat > "$WF" <<'YML'
name: startup
jobs:
  one:
    stages:
      - name: s
        echo: "hello"
YML
"$EXE" run "$WF" >/dev/null 2>&1 || WF=examples/quickstart.yml

median_ms() {  # median_ms RUNS CMD... -> milliseconds
  local runs=$1 i t0 t1; shift
  for i in $(seq "$runs"); do
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 ))
  done | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f\n", (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2000 }'
}

boto=$(median_ms $(( R / 4 > 3 ? R / 4 : 3 )) /usr/bin/python3 -c \
  'import boto3; boto3.client("s3", region_name="us-east-1")')
lua=$(median_ms "$R" lua5.4 -e '')
e=$(median_ms "$R" "$EXE" -e '')
v=$(median_ms "$R" "$EXE" --version)
w=$(median_ms "$R" "$EXE" run "$WF")
{
  echo
  echo "| start-up (median of $R runs) | ms | vs boto3 import + client |"
  echo "|---|---:|---:|"
  for row in "python3: import boto3 + boto3.client(\"s3\")|$boto" "lua5.4 -e '' (the floor)|$lua" \
             "luabatch -e ''|$e" "luabatch --version|$v" "luabatch run (one local echo stage)|$w"; do
    awk -v n="${row%|*}" -v s="${row#*|}" -v b="$boto" \
      'BEGIN { printf "| %s | %.2f | %.0fx |\n", n, s, b / s }'
  done
} | tee -a $OUT/results.md
