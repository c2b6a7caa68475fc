#!/usr/bin/env bash
# examples/aws-batch/demo.sh (what `make demo` runs): the seed's AWS Batch
# example, end to end, on this machine -- no AWS account, no network.
#
#   examples/aws-batch/demo.sh            (KEEP=1 keeps the work directory:
#                                          the journal and the server logs)
#
# Two local servers stand in for AWS:
#   - Ceph RGW (tests/servers/rgw.sh) is S3: the input data, the run's bundle
#     and every job's result.json live there;
#   - the project's Batch emulator (tests/servers/batch_emulator.py) is AWS
#     Batch + CloudWatch Logs + the ECS credentials endpoint: it runs each
#     Batch job's container command (`luabatch task ...`) as a local process.
# Both are stopped when the script ends, however it ends (Ctrl-C included).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/build/lua5.4/bin            # the executable is built on Lua 5.4
LB=$BIN/luabatch
PY=/usr/bin/python3

if [ -t 1 ]; then B=$'\033[1m'; D=$'\033[2m'; N=$'\033[0m'; else B= D= N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
say() { printf '    %s\n' "$*"; }
show() { printf '%s    $ %s%s\n' "$D" "$*" "$N"; "$@"; }
die() { printf '\ndemo: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/luabatch-demo.XXXXXX")
EMU_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  step "Stopping the local servers"
  if [ -n "$EMU_PID" ]; then
    kill "$EMU_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$EMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$EMU_PID" 2>/dev/null || true
    say "Batch emulator stopped (it killed any job process still running)"
  fi
  if [ -f "$WORK/rgw/ceph.conf" ]; then
    tests/servers/rgw.sh stop "$WORK/rgw" >/dev/null 2>&1 || true
    say "Ceph RGW stopped"
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    say "kept $WORK (KEEP=1): journal under $WORK/home, server logs under $WORK/*.log"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT
trap 'exit 143' TERM

free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cat <<EOF
${B}luabatch demo: a three-job workflow on "AWS Batch", all on this machine${N}
The workflow is examples/aws-batch/aws-batch-example.yml (the seed's example):
  data-processing      aggregates a CSV from S3, writes a summary and a report back
  ml-training          fits a small linear model on another CSV
  parallel-processing  a matrix of three datasets, two at a time
Each job becomes an AWS Batch job whose container runs \`luabatch task\`.
EOF

# ---------------------------------------------------------------------------
step "1. Build luabatch (make: a no-op when it is up to date)"
show make -s
[ -x "$LB" ] || die "no executable at $LB after make"
say "$("$LB" --version 2>/dev/null | head -1)"

# ---------------------------------------------------------------------------
step "2. Start Ceph RGW: a real S3 server on loopback (about 15 s)"
command -v radosgw >/dev/null || die "radosgw is not installed: run 'make deps' (Debian packages ceph-mon ceph-osd radosgw)"
S3_PORT=$(free_port); MON_PORT=$(free_port)
if ! out=$(tests/servers/rgw.sh start "$WORK/rgw" "$S3_PORT" "$MON_PORT" 2>"$WORK/rgw-start.log"); then
  cat "$WORK/rgw-start.log" >&2
  die "Ceph RGW did not start (log above)"
fi
S3_ENDPOINT=${out#endpoint=}
say "S3 at $S3_ENDPOINT (user 'tester', keys RGWTESTKEY / RGWTESTSECRET)"

# ---------------------------------------------------------------------------
step "3. Start the AWS Batch emulator (Batch + CloudWatch Logs + container credentials)"
say "Batch jobs become local processes; their PATH starts with $BIN so the"
say "job command 'luabatch task ...' is this build.  The job role's credentials"
say "(served to the job by the emulator's ECS endpoint) are the RGW keys."
PATH="$BIN:$PATH" $PY tests/servers/batch_emulator.py --port 0 \
  --access-key RGWTESTKEY --secret-key RGWTESTSECRET \
  --role-credentials RGWTESTKEY:RGWTESTSECRET --delay 0.2 --parent-pid $$ \
  >"$WORK/emulator.port" 2>"$WORK/emulator.log" &
EMU_PID=$!
EMU_PORT=
for _ in $(seq 100); do
  EMU_PORT=$(head -1 "$WORK/emulator.port" 2>/dev/null || true)
  [ -n "$EMU_PORT" ] && break
  kill -0 "$EMU_PID" 2>/dev/null || { cat "$WORK/emulator.log" >&2; die "the Batch emulator exited"; }
  sleep 0.1
done
[ -n "$EMU_PORT" ] || die "the Batch emulator did not start"
BATCH_ENDPOINT=http://127.0.0.1:$EMU_PORT
say "Batch and Logs at $BATCH_ENDPOINT; job queue lb-queue (EC2)"

# ---------------------------------------------------------------------------
step "4. Point luabatch at them: the usual AWS environment variables"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_STS AWS_ROLE_ARN \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
  AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_AUTHORIZATION_TOKEN 2>/dev/null || true
export AWS_ACCESS_KEY_ID=RGWTESTKEY AWS_SECRET_ACCESS_KEY=RGWTESTSECRET
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=$S3_ENDPOINT
export AWS_ENDPOINT_URL_BATCH=$BATCH_ENDPOINT AWS_ENDPOINT_URL_LOGS=$BATCH_ENDPOINT
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export LUABATCH_HOME=$WORK/home        # the run journal (status, logs, attach read it)
BUCKET=luabatch-demo-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
# The workflow's runs-on.with reads these three (see the YAML):
export AWS_BATCH_JOB_QUEUE_ARN=arn:aws:batch:us-east-1:123456789012:job-queue/lb-queue
export AWS_S3_BUCKET=$BUCKET
export PATH="$BIN:$PATH"
for v in AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_BATCH AWS_ENDPOINT_URL_LOGS AWS_BATCH_JOB_QUEUE_ARN \
         AWS_S3_BUCKET LUABATCH_HOME; do
  say "$v=${!v}"
done
say "(on real AWS you set only the queue, the bucket and your usual credentials)"

# ---------------------------------------------------------------------------
step "5. Create the bucket and upload the input data"
show luabatch s3 mb "s3://$BUCKET"
show luabatch s3 cp tests/fixtures/aws-batch/input.csv "s3://$BUCKET/in/input.csv"
show luabatch s3 cp tests/fixtures/aws-batch/train.csv "s3://$BUCKET/in/train.csv"
show luabatch s3 ls "s3://$BUCKET/in/"

# ---------------------------------------------------------------------------
RUN_ID=$(date -u +%Y%m%d-%H%M%S)-demo$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
step "6. Run the workflow on AWS Batch (run id $RUN_ID)"
say "luabatch registers one job definition (reused by content hash next time),"
say "uploads a bundle per job under s3://$BUCKET/luabatch/runs/$RUN_ID/, submits the"
say "jobs, watches them with one poller (DescribeJobs, up to 100 ids a call),"
say "reads each job's result.json and deletes the run's prefix."
set +e
show luabatch run examples/aws-batch/aws-batch-example.yml --runs-on aws_batch --run-id "$RUN_ID" \
  --param "data_source=s3://$BUCKET/in/input.csv" \
  --param "train_source=s3://$BUCKET/in/train.csv" \
  --param "output_path=s3://$BUCKET/out"
RC=$?
set -e
if [ $RC = 0 ]; then say "run succeeded"; else say "run ended with exit code $RC"; fi

# ---------------------------------------------------------------------------
step "7. What happened: the journal (kept under \$LUABATCH_HOME, survives the client)"
show luabatch status "$RUN_ID" || say "(luabatch status failed)"

step "8. The jobs' output, as CloudWatch Logs kept it"
show luabatch logs "$RUN_ID" || say "(luabatch logs failed)"

# ---------------------------------------------------------------------------
step "9. The workflow's outputs in S3"
show luabatch s3 ls -r "s3://$BUCKET/out/" || true
show luabatch s3 cp -q "s3://$BUCKET/out/processing_report.txt" - 2>/dev/null || say "(no report)"
say "The run's own files (bundles, result.json) were deleted once read (empty listing):"
show luabatch s3 ls -r "s3://$BUCKET/luabatch/runs/$RUN_ID/" || true

step "Done"
if [ $RC = 0 ]; then
  say "Try: the same run locally with '--runs-on local' gives the same results;"
  say "'luabatch run ... --follow' streams the jobs' logs while they run."
fi
exit $RC
