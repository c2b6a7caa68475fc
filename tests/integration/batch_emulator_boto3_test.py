#!/usr/bin/python3
"""Drive tests/servers/batch_emulator.py with boto3, as a real AWS client would.

boto3 parses every answer with the botocore model, so each passing call
proves the emulator speaks the AWS Batch (rest-json) and CloudWatch Logs
(json-1.1) protocols, and signs nothing boto3 would not.  Checks job life
(states, exit codes, reasons, attempts), retryStrategy/evaluateOnExit,
timeouts, dependsOn, array jobs, TerminateJob/CancelJob, logs pagination,
ListJobs pagination and filters, faults, SigV4 rejection, the ECS
credentials endpoint and the EC2/FARGATE platform rules.

usage: batch_emulator_boto3_test.py   (from the repository root or anywhere)
Prints 'TEST batch-emulator-boto3: N passed, M failed'; exits 1 on failure.
"""
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "..", "servers", "batch_emulator.py")
KEY, SECRET, REGION = "LBTESTKEY", "LBTESTSECRET", "us-east-1"
QUEUE = "lb-queue"

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)
    return cond


def start_emulator(*extra, env=None):
    p = subprocess.Popen(["/usr/bin/python3", EMULATOR, "--port", "0", "--timeout-scale", "0.02",
                          "--kill-grace", "0.5"] + list(extra),
                         stdout=subprocess.PIPE, env=env)
    port = int(p.stdout.readline())
    return p, port


def control(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def clients(port, key=KEY, secret=SECRET, token=None, retries=1):
    cfg = botocore.config.Config(retries={"total_max_attempts": retries, "mode": "standard"},
                                 connect_timeout=5, read_timeout=30)
    kw = dict(endpoint_url="http://127.0.0.1:%d" % port, region_name=REGION, aws_access_key_id=key,
              aws_secret_access_key=secret, aws_session_token=token, config=cfg)
    return boto3.client("batch", **kw), boto3.client("logs", **kw)


def wait_job(batch, jid, states=("SUCCEEDED", "FAILED"), timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        jobs = batch.describe_jobs(jobs=[jid])["jobs"]
        if jobs and jobs[0]["status"] in states:
            return jobs[0]
        time.sleep(0.03)
    raise AssertionError("job %s did not reach %s" % (jid, states))


def log_lines(logs, stream):
    ev = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)
    return [e["message"] for e in ev["events"]]


def err_code(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, None


def register(batch, name, command, **kw):
    cp = {"image": "debian:bookworm-slim", "command": command,
          "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}]}
    cp.update(kw.pop("container", {}))
    return batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties=cp, **kw)


def submit(batch, name, jobdef, **kw):
    return batch.submit_job(jobName=name, jobQueue=QUEUE, jobDefinition=jobdef, **kw)["jobId"]


def test_definitions(batch):
    r1 = register(batch, "lb-defs", ["true"])
    r2 = register(batch, "lb-defs", ["true"], tags={"team": "lb"})
    check(r1["revision"] == 1 and r2["revision"] == 2, "revisions count up per name")
    check(r2["jobDefinitionArn"].endswith(":job-definition/lb-defs:2"), "job definition ARN")
    act = batch.describe_job_definitions(jobDefinitionName="lb-defs", status="ACTIVE")["jobDefinitions"]
    check(len(act) == 2, "two ACTIVE revisions")
    batch.deregister_job_definition(jobDefinition="lb-defs:1")
    act = batch.describe_job_definitions(jobDefinitionName="lb-defs", status="ACTIVE")["jobDefinitions"]
    check([d["revision"] for d in act] == [2], "deregistered revision is no longer ACTIVE")
    one = batch.describe_job_definitions(jobDefinitions=["lb-defs:1"])["jobDefinitions"]
    check(len(one) == 1 and one[0]["status"] == "INACTIVE", "name:rev lookup shows INACTIVE")
    check(act[0]["containerProperties"]["image"] == "debian:bookworm-slim" and act[0]["type"] == "container",
          "definition round-trips containerProperties")
    tags = batch.list_tags_for_resource(resourceArn=r2["jobDefinitionArn"])["tags"]
    check(tags == {"team": "lb"}, "definition tags listed")
    batch.tag_resource(resourceArn=r2["jobDefinitionArn"], tags={"run": "r1"})
    batch.untag_resource(resourceArn=r2["jobDefinitionArn"], tagKeys=["team"])
    check(batch.list_tags_for_resource(resourceArn=r2["jobDefinitionArn"])["tags"] == {"run": "r1"},
          "TagResource / UntagResource")
    # paginator over many revisions
    for _ in range(3):
        register(batch, "lb-defs", ["true"])
    pages = list(batch.get_paginator("describe_job_definitions").paginate(
        jobDefinitionName="lb-defs", PaginationConfig={"PageSize": 2}))
    revs = [d["revision"] for p in pages for d in p["jobDefinitions"]]
    check(len(pages) == 3 and revs == [1, 2, 3, 4, 5], "DescribeJobDefinitions pagination: %r" % revs)
    code, status = err_code(lambda: register(batch, "bad name!", ["true"]))
    check(code == "ClientException" and status == 400, "invalid definition name -> ClientException 400")
    code, _ = err_code(lambda: batch.deregister_job_definition(jobDefinition="nope:1"))
    check(code == "ClientException", "deregister unknown -> ClientException")


def test_infra(batch):
    qs = batch.describe_job_queues()["jobQueues"]
    check(QUEUE in [q["jobQueueName"] for q in qs], "DescribeJobQueues lists lb-queue")
    q = batch.describe_job_queues(jobQueues=[QUEUE])["jobQueues"][0]
    ce = batch.describe_compute_environments(
        computeEnvironments=[q["computeEnvironmentOrder"][0]["computeEnvironment"]])["computeEnvironments"]
    check(len(ce) == 1 and ce[0]["computeResources"]["type"] == "EC2", "queue -> compute environment (EC2)")
    far = batch.describe_job_queues(jobQueues=["lb-fargate-queue"])["jobQueues"][0]
    ce = batch.describe_compute_environments(
        computeEnvironments=[far["computeEnvironmentOrder"][0]["computeEnvironment"]])["computeEnvironments"]
    check(ce[0]["computeResources"]["type"] == "FARGATE", "fargate queue -> FARGATE compute environment")


def test_platform(batch):
    role = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"

    def far(name, vcpu="1", memory="2048", **extra):
        cp = {"image": "debian:bookworm-slim", "command": ["sh", "-c", "echo $AWS_EXECUTION_ENV"],
              "resourceRequirements": [{"type": "VCPU", "value": vcpu}, {"type": "MEMORY", "value": memory}],
              "executionRoleArn": role, "networkConfiguration": {"assignPublicIp": "ENABLED"},
              "fargatePlatformConfiguration": {"platformVersion": "1.4.0"}}
        cp.update(extra)
        cp = {k: v for k, v in cp.items() if v is not None}
        return batch.register_job_definition(jobDefinitionName=name, type="container",
                                             platformCapabilities=["FARGATE"], containerProperties=cp)

    def msg_of(fn):
        try:
            fn()
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"], e.response["Error"]["Message"]
        return None, None

    r = far("lb-far")
    d = batch.describe_job_definitions(jobDefinitions=[r["jobDefinitionArn"]])["jobDefinitions"][0]
    check(d["platformCapabilities"] == ["FARGATE"] and
          d["containerProperties"]["fargatePlatformConfiguration"] == {"platformVersion": "1.4.0"},
          "FARGATE definition round-trips platformCapabilities and platformVersion")
    for vcpu, mem in (("0.25", "512"), ("0.5", "4096"), ("4", "30720"), ("16", "122880")):
        code, msg = msg_of(lambda: far("lb-far-ok", vcpu, mem))
        check(code is None, "Fargate size %s vCPU / %s MiB accepted (%s)" % (vcpu, mem, msg))
    for vcpu, mem in (("0.5", "1"), ("1", "1024"), ("2", "2048"), ("3", "8192"), ("16", "16384")):
        code, msg = msg_of(lambda: far("lb-far-bad", vcpu, mem))
        check(code == "ClientException" and "Fargate resource requirements" in (msg or "") and "not valid" in msg,
              "Fargate size %s vCPU / %s MiB refused (%s: %s)" % (vcpu, mem, code, msg))
    code, msg = msg_of(lambda: far("lb-far-norole", executionRoleArn=None))
    check(code == "ClientException" and "executionRoleArn" in (msg or ""), "FARGATE without executionRoleArn refused")
    code, msg = msg_of(lambda: far("lb-far-gpu", resourceRequirements=[
        {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}, {"type": "GPU", "value": "1"}]))
    check(code == "ClientException" and "GPU" in (msg or ""), "FARGATE with a GPU refused")
    code, msg = msg_of(lambda: far("lb-far-vcpus", vcpus=1))
    check(code == "ClientException" and "vcpus" in (msg or ""), "FARGATE with the deprecated vcpus field refused")
    code, msg = msg_of(lambda: far("lb-far-pv", fargatePlatformConfiguration={"platformVersion": "9.9.9"}))
    check(code == "ClientException" and "9.9.9" in (msg or ""), "unknown Fargate platform version refused")
    code, msg = msg_of(lambda: register(batch, "lb-ec2-net", ["true"],
                                        container={"networkConfiguration": {"assignPublicIp": "ENABLED"}}))
    check(code == "ClientException" and "networkConfiguration" in (msg or ""),
          "EC2 definition with networkConfiguration refused")
    # queue platform vs definition platform
    code, msg = msg_of(lambda: batch.submit_job(jobName="far-on-ec2", jobQueue=QUEUE, jobDefinition="lb-far"))
    check(code == "ClientException" and msg == "Job Queue is attached to Compute Environment that can not run "
          "Jobs with capability FARGATE", "FARGATE job on an EC2 queue refused (%s)" % msg)
    register(batch, "lb-ec2-plain", ["true"])
    code, msg = msg_of(lambda: batch.submit_job(jobName="ec2-on-far", jobQueue="lb-fargate-queue",
                                                jobDefinition="lb-ec2-plain"))
    check(code == "ClientException" and msg is not None and msg.endswith("capability EC2"),
          "EC2 job on a FARGATE queue refused (%s)" % msg)
    jid = batch.submit_job(jobName="far-ok", jobQueue="lb-fargate-queue", jobDefinition="lb-far")["jobId"]
    j = wait_job(batch, jid)
    check(j["status"] == "SUCCEEDED" and j["platformCapabilities"] == ["FARGATE"],
          "FARGATE job runs on the Fargate queue (%s)" % j["status"])
    check(j["container"].get("fargatePlatformConfiguration") == {"platformVersion": "1.4.0"} and
          j["container"].get("executionRoleArn") == role, "job detail shows the Fargate container settings")


def test_hello(batch, logs, port):
    register(batch, "lb-hello", ["sh", "-c", "echo hello; exit 0"])
    jid = submit(batch, "hello-1", "lb-hello")
    j = wait_job(batch, jid)
    check(j["status"] == "SUCCEEDED", "hello job SUCCEEDED (got %s)" % j["status"])
    check(j["statusReason"] == "Essential container in task exited", "success statusReason")
    check(j["container"]["exitCode"] == 0 and len(j["attempts"]) == 1, "exit code 0, one attempt")
    check(j["createdAt"] <= j["startedAt"] <= j["stoppedAt"], "createdAt <= startedAt <= stoppedAt (ms)")
    check(j["createdAt"] > 1.6e12, "timestamps are ms epoch")
    check(j["jobDefinition"].endswith("lb-hello:1") and j["jobQueue"].endswith("job-queue/lb-queue"),
          "jobDefinition / jobQueue are ARNs")
    stream = j["container"]["logStreamName"]
    check(stream.startswith("lb-hello/default/") and stream == j["attempts"][0]["container"]["logStreamName"],
          "log stream <def>/default/<task>")
    check(log_lines(logs, stream) == ["hello"], "stdout line became a log event")
    # by name (latest ACTIVE), by ARN
    jid2 = submit(batch, "hello-2", j["jobDefinition"])
    check(wait_job(batch, jid2)["status"] == "SUCCEEDED", "submit by job definition ARN")
    check(batch.describe_jobs(jobs=["no-such-job"])["jobs"] == [], "unknown ids are omitted")
    code, status = err_code(lambda: batch.describe_jobs(jobs=["x%d" % i for i in range(101)]))
    check(code == "ClientException" and status == 400, "DescribeJobs > 100 ids rejected")
    code, _ = err_code(lambda: batch.submit_job(jobName="x", jobQueue="nope", jobDefinition="lb-hello"))
    check(code == "ClientException", "unknown queue -> ClientException")
    code, _ = err_code(lambda: batch.submit_job(jobName="x", jobQueue=QUEUE, jobDefinition="missing-def"))
    check(code == "ClientException", "unknown definition -> ClientException")
    code, _ = err_code(lambda: batch.list_jobs(jobQueue=QUEUE, jobStatus="BOGUS"))
    check(code == "ClientException", "enum validated against the model")
    code, _ = err_code(lambda: batch.submit_job(jobName="x", jobQueue=QUEUE, jobDefinition="lb-hello",
                                                timeout={"attemptDurationSeconds": 5}))
    check(code == "ClientException", "timeout below 60 s rejected")
    return jid


def test_states(batch, port):
    control(port, "POST", "/__config", {"delays": 0.25})
    try:
        register(batch, "lb-states", ["sh", "-c", "sleep 0.3"])
        jid = submit(batch, "states", "lb-states")
        seen = []
        end = time.time() + 15
        while time.time() < end:
            st = batch.describe_jobs(jobs=[jid])["jobs"][0]["status"]
            if not seen or seen[-1] != st:
                seen.append(st)
            if st in ("SUCCEEDED", "FAILED"):
                break
            time.sleep(0.02)
        check(seen == ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"],
              "state walk: %r" % seen)
    finally:
        control(port, "POST", "/__config", {"delays": 0.05})


def test_env_params(batch, logs):
    register(batch, "lb-env", ["sh", "-c", "echo Ref::greeting Ref::who $FOO $BAR $AWS_BATCH_JOB_ATTEMPT "
                               "$AWS_BATCH_JQ_NAME $AWS_BATCH_JOB_ID; env | grep -c '^AWS_SECRET' || true"],
             parameters={"greeting": "default", "who": "world"},
             container={"environment": [{"name": "FOO", "value": "def"}, {"name": "BAR", "value": "bar"}]})
    jid = submit(batch, "env", "lb-env", parameters={"greeting": "hi"},
                 containerOverrides={"environment": [{"name": "FOO", "value": "over"}]})
    j = wait_job(batch, jid)
    lines = log_lines(logs, j["container"]["logStreamName"])
    check(lines[:1] == ["hi world over bar 1 lb-queue %s" % jid], "Ref:: + env + AWS_BATCH_*: %r" % lines)
    check(lines[1:] == ["0"], "the emulator's AWS_* secrets are not passed to jobs")
    env = {e["name"]: e["value"] for e in j["container"]["environment"]}
    check(env.get("FOO") == "over" and "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in env,
          "container.environment shows user env only")
    check(j["container"]["command"][2].startswith("echo hi world"), "container.command is substituted")
    check(j["parameters"] == {"greeting": "hi", "who": "world"}, "parameters merged (submit wins)")
    # command override
    jid = submit(batch, "env-cmd", "lb-env", containerOverrides={"command": ["sh", "-c", "echo Ref::who"]})
    j = wait_job(batch, jid)
    check(log_lines(logs, j["container"]["logStreamName"]) == ["world"], "containerOverrides.command")


def test_failure(batch, logs):
    register(batch, "lb-fail", ["sh", "-c", "echo boom >&2; exit 3"])
    jid = submit(batch, "fail", "lb-fail")
    j = wait_job(batch, jid)
    check(j["status"] == "FAILED" and j["container"]["exitCode"] == 3, "failing job: FAILED, exit 3")
    check(j["statusReason"] == "Essential container in task exited", "failure statusReason")
    a = j["attempts"]
    check(len(a) == 1 and a[0]["container"]["exitCode"] == 3 and
          a[0]["statusReason"] == "Essential container in task exited", "AttemptDetail exit code + reason")
    check(log_lines(logs, j["container"]["logStreamName"]) == ["boom"], "stderr line became a log event")
    register(batch, "lb-noexec", ["/nonexistent/binary"])
    j = wait_job(batch, submit(batch, "noexec", "lb-noexec"))
    check(j["status"] == "FAILED" and j["container"].get("reason", "").startswith("CannotStartContainerError"),
          "missing executable -> CannotStartContainerError reason")
    register(batch, "lb-nopull", ["true"], container={"image": "invalid/image:latest"})
    j = wait_job(batch, submit(batch, "nopull", "lb-nopull"))
    check(j["container"].get("reason", "").startswith("CannotPullContainerError") and
          "exitCode" not in j["container"], "invalid/ image -> CannotPullContainerError, no exit code")


def test_retry(batch):
    register(batch, "lb-retry", ["sh", "-c", 'test "$AWS_BATCH_JOB_ATTEMPT" -ge 2'],
             retryStrategy={"attempts": 3, "evaluateOnExit": [
                 {"onExitCode": "1", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}]})
    j = wait_job(batch, submit(batch, "retry", "lb-retry"))
    check(j["status"] == "SUCCEEDED" and len(j["attempts"]) == 2, "RETRY on exit 1, succeeds on attempt 2")
    check(j["attempts"][0]["container"]["exitCode"] == 1 and
          j["attempts"][0]["container"]["logStreamName"] != j["attempts"][1]["container"]["logStreamName"],
          "one log stream per attempt")
    register(batch, "lb-exit", ["sh", "-c", "exit 2"],
             retryStrategy={"attempts": 3, "evaluateOnExit": [
                 {"onExitCode": "1", "action": "RETRY"}, {"onExitCode": "*", "action": "exit"}]})
    j = wait_job(batch, submit(batch, "exit", "lb-exit"))
    check(j["status"] == "FAILED" and len(j["attempts"]) == 1, "EXIT rule stops retrying")
    # no rule matches -> retried (AWS semantics), up to attempts
    j = wait_job(batch, submit(batch, "nomatch", "lb-exit",
                               retryStrategy={"attempts": 2, "evaluateOnExit": [
                                   {"onStatusReason": "Host EC2*", "action": "RETRY"},
                                   {"onExitCode": "9", "action": "EXIT"}]}))
    check(j["status"] == "FAILED" and len(j["attempts"]) == 2, "no matching rule -> retried (SubmitJob override)")
    code, _ = err_code(lambda: submit(batch, "badglob", "lb-exit",
                                      retryStrategy={"attempts": 2, "evaluateOnExit": [
                                          {"onExitCode": "a*", "action": "RETRY"}]}))
    check(code == "ClientException", "invalid onExitCode glob rejected")


def test_timeout(batch):
    register(batch, "lb-sleep", ["sh", "-c", "echo start; sleep 30"])
    t0 = time.monotonic()
    jid = submit(batch, "timeout", "lb-sleep", timeout={"attemptDurationSeconds": 60},
                 retryStrategy={"attempts": 3})
    j = wait_job(batch, jid)
    check(j["status"] == "FAILED" and j["statusReason"] == "Job attempt duration exceeded timeout",
          "timeout -> FAILED with the timeout reason (%s)" % j.get("statusReason"))
    check(len(j["attempts"]) == 1 and j["container"]["exitCode"] == 137, "timed-out attempt killed (137), not retried")
    check(time.monotonic() - t0 < 20, "timeout honoured with --timeout-scale (the job sleeps 30 s)")


def test_depends(batch):
    register(batch, "lb-short", ["sh", "-c", "sleep 0.4"])
    a = submit(batch, "dep-a", "lb-short")
    b = submit(batch, "dep-b", "lb-short", dependsOn=[{"jobId": a}])
    jb = wait_job(batch, b)
    ja = wait_job(batch, a)
    check(jb["status"] == "SUCCEEDED" and jb["startedAt"] >= ja["stoppedAt"], "dependent starts after its dependency")
    check(jb["dependsOn"] == [{"jobId": a}], "dependsOn echoed")
    f = submit(batch, "dep-f", "lb-fail")
    c = submit(batch, "dep-c", "lb-short", dependsOn=[{"jobId": f}])
    jc = wait_job(batch, c)
    check(jc["status"] == "FAILED" and jc["statusReason"] == "Dependent Job failed" and not jc["attempts"],
          "failed dependency -> FAILED 'Dependent Job failed'")
    code, _ = err_code(lambda: submit(batch, "dep-x", "lb-short", dependsOn=[{"jobId": "missing"}]))
    check(code == "ClientException", "unknown dependency rejected")


def test_array(batch, logs):
    register(batch, "lb-array", ["sh", "-c", "echo index=$AWS_BATCH_JOB_ARRAY_INDEX; sleep 0.2"])
    pid = submit(batch, "array", "lb-array", arrayProperties={"size": 3})
    p = wait_job(batch, pid)
    check(p["status"] == "SUCCEEDED", "array parent SUCCEEDED")
    check(p["arrayProperties"]["size"] == 3 and p["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3,
          "parent statusSummary counts children: %r" % p["arrayProperties"])
    kids = batch.describe_jobs(jobs=["%s:%d" % (pid, i) for i in range(3)])["jobs"]
    check(len(kids) == 3 and [k["arrayProperties"]["index"] for k in kids] == [0, 1, 2], "children <id>:<i>")
    check(all(log_lines(logs, k["container"]["logStreamName"]) == ["index=%d" % k["arrayProperties"]["index"]]
              for k in kids), "AWS_BATCH_JOB_ARRAY_INDEX per child")
    listed = batch.list_jobs(arrayJobId=pid, jobStatus="SUCCEEDED")["jobSummaryList"]
    check(sorted(x["jobId"] for x in listed) == sorted(k["jobId"] for k in kids), "ListJobs arrayJobId")
    top = [x["jobId"] for x in batch.list_jobs(jobQueue=QUEUE, jobStatus="SUCCEEDED", maxResults=1000)["jobSummaryList"]]
    check(pid in top and not any(":" in x for x in top), "queue listing shows the parent, not children")
    # N_TO_N and SEQUENTIAL
    n2n = submit(batch, "array-n2n", "lb-array", arrayProperties={"size": 3},
                 dependsOn=[{"jobId": pid, "type": "N_TO_N"}])
    seq = submit(batch, "array-seq", "lb-array", arrayProperties={"size": 3}, dependsOn=[{"type": "SEQUENTIAL"}])
    check(wait_job(batch, n2n)["status"] == "SUCCEEDED", "N_TO_N array completes")
    check(wait_job(batch, seq)["status"] == "SUCCEEDED", "SEQUENTIAL array completes")
    sk = batch.describe_jobs(jobs=["%s:%d" % (seq, i) for i in range(3)])["jobs"]
    check(sk[1]["startedAt"] >= sk[0]["stoppedAt"] and sk[2]["startedAt"] >= sk[1]["stoppedAt"],
          "SEQUENTIAL children run one after the other")
    # a failing child fails the parent
    register(batch, "lb-array-fail", ["sh", "-c", 'test "$AWS_BATCH_JOB_ARRAY_INDEX" != 1'])
    pf = wait_job(batch, submit(batch, "array-fail", "lb-array-fail", arrayProperties={"size": 3}))
    check(pf["status"] == "FAILED" and pf["arrayProperties"]["statusSummary"]["FAILED"] == 1,
          "one failed child -> parent FAILED")


def test_terminate_cancel(batch, port):
    jid = submit(batch, "term", "lb-sleep")
    wait_job(batch, jid, states=("RUNNING",))
    time.sleep(0.2)
    pids = [x["pid"] for x in control(port, "GET", "/__jobs") if x["jobId"] == jid]
    batch.terminate_job(jobId=jid, reason="stopped by test")
    j = wait_job(batch, jid, timeout=10)
    check(j["status"] == "FAILED" and j["statusReason"] == "stopped by test", "TerminateJob -> FAILED with reason")
    check(j["container"]["exitCode"] == 143, "terminated process exit code 143 (got %r)" % j["container"].get("exitCode"))
    gone = False
    if pids and pids[0]:
        try:
            os.kill(pids[0], 0)
        except ProcessLookupError:
            gone = True
    check(gone, "terminated job's process is gone")
    # cancel a pending job (waiting on a long job)
    blocker = submit(batch, "blocker", "lb-sleep")
    pend = submit(batch, "pending", "lb-short", dependsOn=[{"jobId": blocker}])
    wait_job(batch, pend, states=("PENDING",))
    batch.cancel_job(jobId=pend, reason="not needed")
    j = wait_job(batch, pend, timeout=5)
    check(j["status"] == "FAILED" and j["statusReason"] == "not needed", "CancelJob on PENDING -> FAILED")
    # cancel a running job: no-op; TerminateJob stops it
    wait_job(batch, blocker, states=("RUNNING",))
    batch.cancel_job(jobId=blocker, reason="too late")
    time.sleep(0.3)
    check(batch.describe_jobs(jobs=[blocker])["jobs"][0]["status"] == "RUNNING", "CancelJob on RUNNING is a no-op")
    batch.terminate_job(jobId=blocker, reason="cleanup")
    check(wait_job(batch, blocker)["statusReason"] == "cleanup", "then TerminateJob stops it")
    # TerminateJob on an array parent stops every child
    arr = submit(batch, "arr-term", "lb-sleep", arrayProperties={"size": 3})
    wait_job(batch, "%s:0" % arr, states=("RUNNING",))
    batch.terminate_job(jobId=arr, reason="array stopped")
    p = wait_job(batch, arr, timeout=10)
    kids = batch.describe_jobs(jobs=["%s:%d" % (arr, i) for i in range(3)])["jobs"]
    check(p["status"] == "FAILED" and p["statusReason"] == "array stopped" and
          p["arrayProperties"]["statusSummary"]["FAILED"] == 3 and
          all(k["statusReason"] == "array stopped" for k in kids), "TerminateJob on an array parent")
    code, _ = err_code(lambda: batch.terminate_job(jobId="missing", reason="x"))
    check(code == "ClientException", "TerminateJob unknown id -> ClientException")


def test_logs(batch, logs):
    register(batch, "lb-lines", ["sh", "-c", "i=1; while [ $i -le 25 ]; do echo line $i; i=$((i+1)); done"])
    j = wait_job(batch, submit(batch, "lines", "lb-lines"))
    stream = j["container"]["logStreamName"]
    got, token, pages = [], None, 0
    while pages < 20:
        kw = dict(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True, limit=10)
        if token:
            kw["nextToken"] = token
        r = logs.get_log_events(**kw)
        pages += 1
        got += [e["message"] for e in r["events"]]
        if r["nextForwardToken"] == token:
            break
        token = r["nextForwardToken"]
    check(got == ["line %d" % i for i in range(1, 26)], "GetLogEvents pages in order")
    check(pages == 4, "end = same forward token returned (pages=%d)" % pages)
    tail = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, limit=5)
    check([e["message"] for e in tail["events"]] == ["line %d" % i for i in range(21, 26)],
          "startFromHead=false gives the tail")
    code, _ = err_code(lambda: logs.get_log_events(logGroupName="/aws/batch/job", logStreamName="nope"))
    check(code == "ResourceNotFoundException", "unknown stream -> ResourceNotFoundException")
    fe = logs.filter_log_events(logGroupName="/aws/batch/job", logStreamNamePrefix="lb-lines/",
                                filterPattern='"line 2"', limit=3)
    msgs = [e["message"] for e in fe["events"]]
    check(msgs == ["line 2", "line 20", "line 21"] and "nextToken" in fe, "FilterLogEvents pattern + limit")
    allm, tok = [], None
    while True:
        kw = dict(logGroupName="/aws/batch/job", logStreamNamePrefix="lb-lines/", filterPattern='"line 2"', limit=3)
        if tok:
            kw["nextToken"] = tok
        r = logs.filter_log_events(**kw)
        allm += [e["message"] for e in r["events"]]
        tok = r.get("nextToken")
        if not tok:
            break
    check(len(allm) == 7, "FilterLogEvents nextToken absent at the end (%d events)" % len(allm))
    ds = logs.describe_log_streams(logGroupName="/aws/batch/job", logStreamNamePrefix="lb-lines/")["logStreams"]
    check([s["logStreamName"] for s in ds] == [stream] and ds[0]["lastEventTimestamp"] >= ds[0]["firstEventTimestamp"],
          "DescribeLogStreams by prefix")
    logs.create_log_group(logGroupName="/lb/test")
    logs.create_log_stream(logGroupName="/lb/test", logStreamName="s1")
    logs.put_log_events(logGroupName="/lb/test", logStreamName="s1",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "m1"}])
    r = logs.get_log_events(logGroupName="/lb/test", logStreamName="s1", startFromHead=True)
    check([e["message"] for e in r["events"]] == ["m1"], "CreateLogGroup/Stream + PutLogEvents")
    code, _ = err_code(lambda: logs.create_log_group(logGroupName="/lb/test"))
    check(code == "ResourceAlreadyExistsException", "CreateLogGroup twice")


def test_list_jobs(batch):
    register(batch, "lb-quick", ["true"])
    t0 = int(time.time() * 1000) - 1
    ids = [submit(batch, "lb-page-%d" % i, "lb-quick") for i in range(5)]
    submit(batch, "other-name", "lb-quick")
    for i in ids:
        wait_job(batch, i)
    seen = []
    for page in batch.get_paginator("list_jobs").paginate(jobQueue=QUEUE, jobStatus="SUCCEEDED",
                                                           PaginationConfig={"PageSize": 2}):
        seen += [x["jobId"] for x in page["jobSummaryList"]]
    check(len(seen) == len(set(seen)) and set(ids) <= set(seen), "ListJobs by status, paginated, no duplicates")
    pages = list(batch.get_paginator("list_jobs").paginate(
        jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["LB-PAGE-*"]}], PaginationConfig={"PageSize": 2}))
    names = [x["jobName"] for p in pages for x in p["jobSummaryList"]]
    check(len(pages) == 3 and sorted(names) == ["lb-page-%d" % i for i in range(5)],
          "JOB_NAME filter (prefix, case-insensitive) with nextToken: %r" % names)
    r = batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "AFTER_CREATED_AT", "values": [str(t0)]}])
    check(len(r["jobSummaryList"]) == 6, "AFTER_CREATED_AT filter (all statuses)")
    s = r["jobSummaryList"][0]
    check(s["container"]["exitCode"] == 0 and "createdAt" in s and "stoppedAt" in s, "JobSummary fields")
    r = batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["lb-page-3"]}])
    check([x["jobId"] for x in r["jobSummaryList"]] == [ids[3]], "JOB_NAME exact")
    check(batch.list_jobs(jobQueue=QUEUE)["jobSummaryList"] == [], "no jobStatus -> RUNNING jobs only (none now)")


def test_faults(batch, port):
    control(port, "DELETE", "/__calls")
    jid = submit(batch, "f-1", "lb-quick")
    control(port, "POST", "/__faults", {"operation": "DescribeJobs", "action": "throttle", "times": 1})
    code, status = err_code(lambda: batch.describe_jobs(jobs=[jid]))
    check(code == "TooManyRequestsException" and status == 429, "throttle -> 429 TooManyRequestsException")
    check(batch.describe_jobs(jobs=[jid])["jobs"][0]["jobId"] == jid, "next call passes")
    b3, _ = clients(port, retries=3)
    control(port, "POST", "/__faults", {"operation": "DescribeJobs", "action": "throttle", "times": 2})
    check(len(b3.describe_jobs(jobs=[jid])["jobs"]) == 1, "boto3 standard retry rides out 2 throttles")
    control(port, "POST", "/__faults", {"operation": "DescribeJobs", "action": "error", "times": 1})
    code, status = err_code(lambda: batch.describe_jobs(jobs=[jid]))
    check(code == "ServerException" and status == 500, "error -> 500 ServerException")
    control(port, "POST", "/__faults", {"operation": "DescribeJobQueues", "action": "slow", "delay": 0.6})
    t = time.time()
    batch.describe_job_queues()
    check(time.time() - t >= 0.6, "slow fault delays the answer")
    control(port, "POST", "/__faults", {"operation": "SubmitJob", "action": "drop"})
    dropped = False
    try:
        submit(batch, "lost-answer", "lb-quick")
    except (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ReadTimeoutError):
        dropped = True
    check(dropped, "dropped SubmitJob answer -> connection closed")
    found = batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["lost-answer"]}])
    check(len(found["jobSummaryList"]) == 1, "the dropped SubmitJob still created the job")
    control(port, "POST", "/__faults", {"operation": "GetLogEvents", "action": "throttle"})
    _, logs = clients(port)
    code, status = err_code(lambda: logs.get_log_events(logGroupName="/aws/batch/job", logStreamName="x"))
    check(code == "ThrottlingException" and status == 400, "Logs throttle -> ThrottlingException")
    calls = control(port, "GET", "/__calls")
    # DescribeJobs: throttled + ok, 2 throttled + ok (boto3 retries), 500 -> 6 calls, 4 faulted
    check(calls["counts"].get("DescribeJobs") == 6 and calls["faulted"].get("DescribeJobs") == 4,
          "call counts per operation: %r" % calls)
    check(calls["describe_ids"] == 6, "DescribeJobs ids counted")
    log = control(port, "GET", "/__calls/log")
    check([e["status"] for e in log if e["op"] == "DescribeJobs"] == [429, 200, 429, 429, 200, 500],
          "call log records each answer's status")
    rules = control(port, "GET", "/__faults")["rules"]
    check(all(r["times"] == 0 for r in rules), "fault rules consumed")
    control(port, "DELETE", "/__faults")


def test_auth(port):
    bad, _ = clients(port, secret="WRONG")
    code, status = err_code(lambda: bad.describe_job_queues())
    check(code == "InvalidSignatureException" and status == 403, "wrong secret -> 403 InvalidSignatureException")
    unk, logs = clients(port, key="AKIDUNKNOWN")
    code, _ = err_code(lambda: unk.describe_job_queues())
    check(code == "UnrecognizedClientException", "unknown key -> UnrecognizedClientException")
    _, badlogs = clients(port, secret="WRONG")
    code, _ = err_code(lambda: badlogs.describe_log_groups())
    check(code == "InvalidSignatureException", "Logs: wrong secret rejected")
    req = urllib.request.Request("http://127.0.0.1:%d/v1/describejobqueues" % port, data=b"{}", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    check(status == 403, "unsigned request -> 403")


def test_credentials(batch, logs, port):
    script = ("import json,os,urllib.request as u;"
              "r=u.Request(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
              "headers={'Authorization':os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN']});"
              "d=json.load(u.urlopen(r));print(json.dumps(d));"
              "print(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'])")
    register(batch, "lb-creds", ["/usr/bin/python3", "-c", script],
             container={"jobRoleArn": "arn:aws:iam::123456789012:role/lb-job"})
    j = wait_job(batch, submit(batch, "creds", "lb-creds"))
    lines = log_lines(logs, j["container"]["logStreamName"])
    check(j["status"] == "SUCCEEDED" and len(lines) == 2, "job fetched its credentials: %r" % lines)
    if len(lines) != 2:
        return
    c = json.loads(lines[0])
    check(set(c) >= {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"} and
          c["RoleArn"] == "arn:aws:iam::123456789012:role/lb-job", "ECS credential document")
    b2, _ = clients(port, key=c["AccessKeyId"], secret=c["SecretAccessKey"], token=c["Token"])
    check(len(b2.describe_job_queues()["jobQueues"]) >= 1, "issued credentials sign emulator requests")
    try:
        urllib.request.urlopen(lines[1], timeout=5)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    check(status == 401, "credentials endpoint without the token -> 401")
    # fixed role credentials
    control(port, "POST", "/__config", {"role_credentials": {"AccessKeyId": "RGWTESTKEY",
                                                             "SecretAccessKey": "RGWTESTSECRET"}})
    j = wait_job(batch, submit(batch, "creds2", "lb-creds"))
    c = json.loads(log_lines(logs, j["container"]["logStreamName"])[0])
    check(c["AccessKeyId"] == "RGWTESTKEY" and c["SecretAccessKey"] == "RGWTESTSECRET",
          "configured role credentials handed out")
    control(port, "POST", "/__config", {"role_credentials": None})


def test_shutdown():
    p, port = start_emulator()
    batch, _ = clients(port)
    register(batch, "lb-sleep", ["sh", "-c", "sleep 30"])
    jid = submit(batch, "s", "lb-sleep")
    wait_job(batch, jid, states=("RUNNING",))
    time.sleep(0.2)
    pid = [x["pid"] for x in control(port, "GET", "/__jobs") if x["jobId"] == jid][0]
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    check(rc == 0, "emulator exits 0 on SIGTERM (rc=%r)" % rc)
    time.sleep(0.2)
    alive = True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        alive = False
    check(not alive, "shutdown killed the running job process")


def main():
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY="must-not-leak", AWS_ACCESS_KEY_ID="AKIALEAK",
               no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    proc, port = start_emulator(env=env)
    try:
        batch, logs = clients(port)
        for name, fn, args in [
            ("definitions", test_definitions, (batch,)),
            ("infra", test_infra, (batch,)),
            ("platform", test_platform, (batch,)),
            ("hello", test_hello, (batch, logs, port)),
            ("states", test_states, (batch, port)),
            ("env_params", test_env_params, (batch, logs)),
            ("failure", test_failure, (batch, logs)),
            ("retry", test_retry, (batch,)),
            ("timeout", test_timeout, (batch,)),
            ("depends", test_depends, (batch,)),
            ("array", test_array, (batch, logs)),
            ("terminate_cancel", test_terminate_cancel, (batch, port)),
            ("logs", test_logs, (batch, logs)),
            ("list_jobs", test_list_jobs, (batch,)),
            ("faults", test_faults, (batch, port)),
            ("auth", test_auth, (port,)),
            ("credentials", test_credentials, (batch, logs, port)),
        ]:
            try:
                fn(*args)
            except Exception:
                check(False, "%s raised:\n%s" % (name, traceback.format_exc()))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        test_shutdown()
    except Exception:
        check(False, "shutdown raised:\n%s" % traceback.format_exc())
    print("TEST batch-emulator-boto3: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
