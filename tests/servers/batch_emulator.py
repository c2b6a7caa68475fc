#!/usr/bin/python3
"""AWS Batch + CloudWatch Logs + ECS container credentials, emulated on loopback.

One threaded HTTP server (stdlib + botocore), routed by request:

  AWS Batch (rest-json)          POST /v1/<op>, /v1/tags/{resourceArn}
      RegisterJobDefinition, DescribeJobDefinitions, DeregisterJobDefinition,
      SubmitJob, DescribeJobs, ListJobs, TerminateJob, CancelJob,
      DescribeJobQueues, DescribeComputeEnvironments, TagResource,
      UntagResource, ListTagsForResource.
  CloudWatch Logs (json-1.1)     POST /  with X-Amz-Target: Logs_20140328.<Op>
      GetLogEvents, FilterLogEvents, DescribeLogStreams, DescribeLogGroups,
      CreateLogGroup, CreateLogStream, PutLogEvents.
  ECS container credentials      GET /v2/credentials/<id>
      (Authorization header = the job's AWS_CONTAINER_AUTHORIZATION_TOKEN)

Requests are checked against the botocore service model (required members,
types, enums, lengths) and every API request must carry a valid SigV4
signature, recomputed with botocore for the known secret of its access key.
Platform rules as real Batch applies them: a FARGATE job definition needs a
supported VCPU/MEMORY pair, an executionRoleArn and no GPU; an EC2 one no
Fargate-only fields; SubmitJob refuses a definition whose platform the
queue's compute environment cannot run ("Job Queue is attached to Compute
Environment that can not run Jobs with capability EC2").

Jobs run their container command as local processes (in a fresh directory,
a new session), with the job definition's and the overrides' environment,
`Ref::name` placeholders substituted from the parameters, AWS_BATCH_* and
AWS_CONTAINER_CREDENTIALS_FULL_URI/AWS_CONTAINER_AUTHORIZATION_TOKEN set
(AWS_* variables of the emulator's own environment are not passed on), and
walk SUBMITTED -> PENDING -> RUNNABLE -> STARTING -> RUNNING ->
SUCCEEDED/FAILED.  A job's MEMORY (resourceRequirements, else memory;
MiB) is its container's hard limit, as on EC2: when the resident memory of
its processes goes over it, they get SIGKILL and the attempt ends with
exitCode 137 and the container reason "OutOfMemoryError: Container killed
due to memory usage" (statusReason "Essential container in task exited").
A job that outlives its timeout.attemptDurationSeconds (times
timeout_scale) is killed the same way and ends with "Job attempt duration
exceeded timeout".  Output lines (stdout and stderr, merged) become log
events in /aws/batch/job (or the awslogs-group option), stream
<jobDefinitionName>/default/<taskId> (one per attempt).

Container mode (--docker [SOCKET], or LUABATCH_EMULATOR_DOCKER=SOCKET|1; no
SOCKET: DOCKER_HOST, else /var/run/docker.sock): each attempt is a container
of the job definition's image (tests/servers/batch_docker.py) instead of a
local process: its command with Ref:: substituted, only the job's environment
(nothing of the emulator's) plus the AWS_BATCH_* / credentials variables, its
user, the image's working directory, vCPU and MEMORY as Docker limits (no
swap), volumes/mountPoints as binds, the host's network (the credentials
endpoint and test servers on 127.0.0.1 answer); log events from its output;
exit code and OOM kill (OOMKilled -> the same reason) from Docker; an image
the daemon lacks fails the attempt with CannotPullContainerError.

Test controls (JSON, unsigned):
  POST   /__faults   {"operation": "DescribeJobs" | "*", "action": "throttle" |
                      "error" | "slow" | "drop" | "reset", "times": 1 (-1 = always),
                      "after": 0 (let that many matching calls pass first),
                      "delay": s (slow), "status": 500, "code": ..., "message": ...}
                     -> {"id": n}.  throttle = Batch 429 TooManyRequestsException /
                     Logs 400 ThrottlingException; error = 500 ServerException
                     (Logs ServiceUnavailableException); slow = answer after
                     `delay` s; drop = do the work, then close the connection
                     without answering; reset = close without doing the work.
  GET    /__faults   the rules with their remaining/fired counts
  DELETE /__faults   remove every rule
  GET    /__calls    {"counts": {op: n}, "faulted": {op: n}, "total": n,
                      "describe_ids": total ids asked in DescribeJobs}
  GET    /__calls/log  [{"t": epoch s, "op", "status", "ids": n}, ...]
  DELETE /__calls    reset counts and log
  POST   /__config   {"delays": {"SUBMITTED": s, ...} | s, "timeout_scale": f,
                      "kill_grace": s, "role_credentials": {"AccessKeyId",
                      "SecretAccessKey", "Token"} | null, "logs_page_limit": n}
  GET    /__config
  GET    /__jobs     [{jobId, status, pid, exitedAt (epoch s of the real
                      process exit), attempts}]  (internal view)
  GET    /__health   {"ok": true}

Usage: batch_emulator.py [--port 0] [--host 127.0.0.1] [--access-key LBTESTKEY]
  [--secret-key LBTESTSECRET] [--region us-east-1] [--delay 0.05]
  [--timeout-scale 1.0] [--queue NAME[:EC2|FARGATE]]... [--parent-pid PID] [--docker [SOCKET]]
Prints the port on the first stdout line, then serves until SIGTERM/SIGINT;
shutdown kills every job process.
"""

import argparse
import base64
import collections
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.loaders
import botocore.model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import batch_docker  # noqa: E402  (container mode)

STATES = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
TERMINAL = ("SUCCEEDED", "FAILED")
ESSENTIAL = "Essential container in task exited"
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
DEP_FAILED = "Dependent Job failed"
DEFAULT_LOG_GROUP = "/aws/batch/job"


def now_ms():
    return int(time.time() * 1000)


class ApiError(Exception):
    def __init__(self, status, code, message):
        Exception.__init__(self, message)
        self.status, self.code, self.message = status, code, message


def client_error(msg):
    return ApiError(400, "ClientException", msg)


def logs_error(code, msg):
    return ApiError(400, code, msg)


# ---------------------------------------------------------------------------
# The botocore model: request validation and response pruning
# ---------------------------------------------------------------------------

class Model:
    def __init__(self, service):
        loader = botocore.loaders.create_loader()
        self.sm = botocore.model.ServiceModel(loader.load_service_model(service, "service-2"), service)

    def op(self, name):
        return self.sm.operation_model(name)

    def validate(self, opname, params, relax=()):
        errs = []
        shape = self.op(opname).input_shape
        if shape is not None:
            _validate(shape, params, "", errs, relax)
        if errs:
            raise ApiError(400, "ClientException", "%d validation error%s detected: %s" % (
                len(errs), "" if len(errs) == 1 else "s", "; ".join(errs)))

    def prune(self, opname, value):
        shape = self.op(opname).output_shape
        return _prune(shape, value) if shape is not None else {}


def _join(path, name):
    return name if not path else path + "." + name


def _validate(shape, v, path, errs, relax):
    t = shape.type_name
    where = path or "request"
    if t == "structure":
        if not isinstance(v, dict):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be an object" % where)
            return
        for r in shape.required_members:
            if v.get(r) is None and _join(path, r) not in relax:
                errs.append("Value null at '%s' failed to satisfy constraint: Member must not be null"
                            % _join(path, r))
        for k, val in v.items():
            if k in shape.members and val is not None:
                _validate(shape.members[k], val, _join(path, k), errs, relax)
    elif t == "list":
        if not isinstance(v, list):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be a list" % where)
            return
        md = shape.metadata
        if "min" in md and len(v) < md["min"]:
            errs.append("Value at '%s' failed to satisfy constraint: Member must have length "
                        "greater than or equal to %d" % (where, md["min"]))
        if "max" in md and len(v) > md["max"]:
            errs.append("Value at '%s' failed to satisfy constraint: Member must have length "
                        "less than or equal to %d" % (where, md["max"]))
        for i, item in enumerate(v):
            _validate(shape.member, item, "%s.%d" % (where, i + 1), errs, relax)
    elif t == "map":
        if not isinstance(v, dict):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be a map" % where)
            return
        for k, item in v.items():
            _validate(shape.value, item, "%s.%s" % (where, k), errs, relax)
    elif t == "string":
        if not isinstance(v, str):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be a string" % where)
            return
        enum = shape.enum
        if enum:
            ok = v in enum or (shape.name == "RetryAction" and v.upper() in enum)
            if not ok:
                errs.append("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy "
                            "enum value set: [%s]" % (v, where, ", ".join(enum)))
        md = shape.metadata
        if "min" in md and len(v) < md["min"]:
            errs.append("Value at '%s' failed to satisfy constraint: Member must have length "
                        "greater than or equal to %d" % (where, md["min"]))
        if "max" in md and len(v) > md["max"]:
            errs.append("Value at '%s' failed to satisfy constraint: Member must have length "
                        "less than or equal to %d" % (where, md["max"]))
    elif t in ("integer", "long"):
        if isinstance(v, bool) or not isinstance(v, int):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be an integer" % where)
            return
        md = shape.metadata
        if "min" in md and v < md["min"]:
            errs.append("Value '%d' at '%s' failed to satisfy constraint: Member must have value "
                        "greater than or equal to %d" % (v, where, md["min"]))
        if "max" in md and v > md["max"]:
            errs.append("Value '%d' at '%s' failed to satisfy constraint: Member must have value "
                        "less than or equal to %d" % (v, where, md["max"]))
    elif t == "boolean":
        if not isinstance(v, bool):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be a boolean" % where)
    elif t in ("double", "float", "timestamp"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            errs.append("Value at '%s' failed to satisfy constraint: Member must be a number" % where)


def _prune(shape, v):
    t = shape.type_name
    if v is None:
        return None
    if t == "structure" and isinstance(v, dict):
        out = {}
        for k, val in v.items():
            if k in shape.members and val is not None:
                out[k] = _prune(shape.members[k], val)
        return out
    if t == "list" and isinstance(v, list):
        return [_prune(shape.member, x) for x in v]
    if t == "map" and isinstance(v, dict):
        return {k: _prune(shape.value, x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------------
# SigV4 verification (botocore recomputes the signature)
# ---------------------------------------------------------------------------

class _VerifyAuth(botocore.auth.SigV4Auth):
    """SigV4Auth that signs exactly the headers the client listed."""

    def __init__(self, creds, service, region, signed):
        botocore.auth.SigV4Auth.__init__(self, creds, service, region)
        self._signed = signed

    def headers_to_sign(self, request):
        hm = botocore.awsrequest.HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                hm[name] = value
        return hm


AUTH_RE = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)")


def verify_sigv4(method, raw_path, headers, body, service, keys, skew=900):
    """Raises ApiError(403/400 ...) unless the request is correctly signed.
    headers: list of (name, value) as received.  keys: {key: (secret, token)}"""
    hdict = collections.defaultdict(list)
    for k, v in headers:
        hdict[k.lower()].append(v)
    auth = (hdict.get("authorization") or [None])[0]
    bad = 403 if service == "batch" else 400
    if not auth:
        raise ApiError(bad, "MissingAuthenticationTokenException", "Missing Authentication Token")
    m = AUTH_RE.match(auth.strip())
    if not m:
        raise ApiError(bad, "IncompleteSignatureException",
                       "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.")
    cred, signed, sig = m.group(1), m.group(2).split(";"), m.group(3)
    parts = cred.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise ApiError(bad, "IncompleteSignatureException", "Credential should be scoped correctly.")
    akid, day, region, svc = parts[0], parts[1], parts[2], parts[3]
    if svc != service:
        raise ApiError(bad, "InvalidSignatureException",
                       "Credential should be scoped to correct service: '%s'." % service)
    entry = keys.get(akid)
    if entry is None:
        raise ApiError(bad, "UnrecognizedClientException", "The security token included in the request is invalid.")
    secret, token = entry
    if token is not None and (hdict.get("x-amz-security-token") or [None])[0] != token:
        raise ApiError(bad, "UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = (hdict.get("x-amz-date") or [None])[0]
    if not amz_date:
        raise ApiError(bad, "IncompleteSignatureException", "Authorization header requires existence of "
                       "either a 'X-Amz-Date' or a 'Date' header.")
    try:
        ts = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ApiError(bad, "IncompleteSignatureException", "X-Amz-Date is malformed")
    if abs(ts.timestamp() - time.time()) > skew:
        raise ApiError(bad, "InvalidSignatureException", "Signature expired: %s is now earlier than %s "
                       "(current time - 15 min.)" % (amz_date, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())))
    if day != amz_date[:8]:
        raise ApiError(bad, "InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD "
                       "from ISO-8601 version of date from HTTP: '%s' != '%s'" % (day, amz_date[:8]))
    if "host" not in signed:
        raise ApiError(bad, "InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    csha = (hdict.get("x-amz-content-sha256") or [None])[0]
    if csha and re.match(r"^[0-9a-f]{64}$", csha) and csha != hashlib.sha256(body).hexdigest():
        raise ApiError(bad, "InvalidSignatureException",
                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
    host = hdict.get("host", ["localhost"])[0]
    req = botocore.awsrequest.AWSRequest(method=method, url="http://%s%s" % (host, raw_path), data=body)
    req.headers = botocore.awsrequest.HTTPHeaders()
    for k, vals in hdict.items():
        if k in signed:
            for v in vals:
                req.headers[k] = v
    req.context["timestamp"] = amz_date
    signer = _VerifyAuth(botocore.credentials.Credentials(akid, secret, token), svc, region, signed)
    creq = signer.canonical_request(req)
    sts = signer.string_to_sign(req, creq)
    want = signer.signature(sts, req)
    if not hmac.compare_digest(want, sig):
        raise ApiError(bad, "InvalidSignatureException",
                       "The request signature we calculated does not match the signature you provided. "
                       "Check your AWS Secret Access Key and signing method. Consult the service "
                       "documentation for details.\n\nThe Canonical String for this request should have been\n"
                       "'%s'\n\nThe String-to-Sign should have been\n'%s'\n" % (creq, sts))
    return akid


# ---------------------------------------------------------------------------
# Faults and call accounting
# ---------------------------------------------------------------------------

class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1

    def add(self, spec):
        action = spec.get("action") or spec.get("fault")
        if action not in ("throttle", "error", "slow", "drop", "reset"):
            raise ValueError("action must be throttle, error, slow, drop or reset")
        rule = {
            "id": self.next_id, "operation": spec.get("operation", "*"), "action": action,
            "times": int(spec.get("times", 1)), "after": int(spec.get("after", 0)),
            "delay": float(spec.get("delay", 1.0)), "status": spec.get("status"),
            "code": spec.get("code"), "message": spec.get("message"), "fired": 0,
        }
        with self.lock:
            self.next_id += 1
            self.rules.append(rule)
        return rule["id"]

    def take(self, op):
        with self.lock:
            for r in self.rules:
                if r["operation"] not in ("*", op) or r["times"] == 0:
                    continue
                if r["after"] > 0:
                    r["after"] -= 1
                    continue
                if r["times"] > 0:
                    r["times"] -= 1
                r["fired"] += 1
                return dict(r)
        return None

    def clear(self):
        with self.lock:
            self.rules = []

    def list(self):
        with self.lock:
            return [dict(r) for r in self.rules]


class Calls:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.counts = collections.Counter()
        self.faulted = collections.Counter()
        self.log = collections.deque(maxlen=200000)
        self.describe_ids = 0

    def add(self, op, ids=0):
        with self.lock:
            self.counts[op] += 1
            self.describe_ids += ids
            entry = {"t": time.time(), "op": op, "status": None, "ids": ids}
            self.log.append(entry)
            return entry

    def fault(self, op):
        with self.lock:
            self.faulted[op] += 1

    def snapshot(self):
        with self.lock:
            return {"counts": dict(self.counts), "faulted": dict(self.faulted),
                    "total": sum(self.counts.values()), "describe_ids": self.describe_ids}


# ---------------------------------------------------------------------------
# CloudWatch Logs store
# ---------------------------------------------------------------------------

class LogStore:
    def __init__(self, emu):
        self.emu = emu
        self.lock = threading.Lock()
        self.groups = {}
        self.seq = 0

    def create_group(self, name, exist_ok=True):
        with self.lock:
            if name in self.groups:
                if exist_ok:
                    return
                raise logs_error("ResourceAlreadyExistsException", "The specified log group already exists")
            self.groups[name] = {"created": now_ms(), "streams": {}}

    def create_stream(self, group, name, exist_ok=True):
        with self.lock:
            g = self.groups.get(group)
            if g is None:
                if not exist_ok:
                    raise logs_error("ResourceNotFoundException", "The specified log group does not exist.")
                self.groups[group] = g = {"created": now_ms(), "streams": {}}
            if name in g["streams"]:
                if exist_ok:
                    return
                raise logs_error("ResourceAlreadyExistsException", "The specified log stream already exists")
            self.seq += 1
            g["streams"][name] = {"created": now_ms(), "events": [], "seq": self.seq, "bytes": 0}

    def put(self, group, stream, ts, message):
        with self.lock:
            s = self.groups[group]["streams"][stream]
            s["events"].append((ts, message, now_ms()))
            s["bytes"] += len(message.encode("utf-8", "replace"))

    def stream(self, group, name):
        g = self.groups.get(group)
        if g is None:
            raise logs_error("ResourceNotFoundException", "The specified log group does not exist.")
        s = g["streams"].get(name)
        if s is None:
            raise logs_error("ResourceNotFoundException", "The specified log stream does not exist.")
        return s


def group_from(p):
    g = p.get("logGroupName")
    ident = p.get("logGroupIdentifier")
    if g and ident:
        raise logs_error("InvalidParameterException",
                         "LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if ident:
        m = re.match(r"^arn:aws[a-z-]*:logs:[^:]*:[^:]*:log-group:(.+?)(:\*)?$", ident)
        g = m.group(1) if m else ident
    if not g:
        raise logs_error("InvalidParameterException", "Either logGroupName or logGroupIdentifier is required.")
    return g


def _tok(kind, n):
    return "%s/%056d/s" % (kind, n)


def _untok(t):
    m = re.match(r"^([fb])/(\d+)(/s)?$", t or "")
    if not m:
        raise logs_error("InvalidParameterException", "The specified nextToken is invalid.")
    return m.group(1), int(m.group(2))


def _enc_token(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


def _dec_token(t, err):
    try:
        return json.loads(base64.urlsafe_b64decode(t.encode()).decode())
    except Exception:
        raise err


def _pattern_match(pattern, msg):
    if not pattern or not pattern.strip():
        return True
    terms = re.findall(r'-?"[^"]*"|\S+', pattern)
    for t in terms:
        neg = t.startswith("-")
        if neg:
            t = t[1:]
        t = t.strip('"')
        if (t in msg) == neg:
            return False
    return True


# ---------------------------------------------------------------------------
# Fargate task sizes (the botocore model's ResourceRequirement documentation)
# ---------------------------------------------------------------------------

def _fargate_sizes():
    sizes = {0.25: [512, 1024, 2048], 0.5: list(range(1024, 4097, 1024)),
             1: list(range(2048, 8193, 1024)), 2: list(range(4096, 16385, 1024)),
             4: list(range(8192, 30721, 1024)), 8: [8192] + list(range(16384, 61441, 4096)),
             16: list(range(32768, 122881, 8192))}
    return {k: frozenset(v) for k, v in sizes.items()}


FARGATE_SIZES = _fargate_sizes()


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _fmt_vcpu(v):
    n = _num(v)
    return "%.2f" % n if n is not None else str(v)


def fargate_pair_ok(vcpu, memory):
    """True when VCPU/MEMORY (strings, as in resourceRequirements) form a Fargate size."""
    c, m = _num(vcpu), _num(memory)
    if c is None or m is None or m != int(m):
        return False
    return int(m) in FARGATE_SIZES.get(c, ())


# ---------------------------------------------------------------------------
# AWS Batch state
# ---------------------------------------------------------------------------

class Job:
    def __init__(self):
        self.status = "SUBMITTED"
        self.status_reason = None
        self.started = None
        self.stopped = None
        self.attempts = []
        self.children = []
        self.parent = None
        self.index = None
        self.size = None
        self.deps = []          # list of Job
        self.dep_spec = []      # as submitted
        self.event = threading.Event()
        self.proc = None
        self.deadline = None
        self.timed_out = False
        self.oom = False
        self.mem_limit = None   # bytes (the job's MEMORY), checked while it runs
        self.terminate_reason = None
        self.cancel_reason = None
        self.is_cancelled = False
        self.is_terminated = False
        self.remaining = 0
        self.exited_at = None
        self.runtime = {}       # exitCode, reason, taskArn, containerInstanceArn, logStreamName
        self.workdir = None
        self.nodes = None       # a multi-node parent: {"numNodes", "mainNode"}
        self.node_index = None  # a node of one
        self.secret_env = {}    # resolved container secrets (name -> value)

    @property
    def final(self):
        return self.status in TERMINAL


class Emulator:
    def __init__(self, args):
        self.args = args
        self.region = args.region
        self.account = args.account
        self.keys = {args.access_key: (args.secret_key, None)}
        self.delays = {s: float(args.delay) for s in STATES[:5]}
        for item in (args.delays or "").split(","):
            if "=" in item:
                k, v = item.split("=", 1)
                self.delays[k.strip().upper()] = float(v)
        self.timeout_scale = float(args.timeout_scale)
        self.kill_grace = float(args.kill_grace)
        self.role_credentials = None
        self.creds_ttl = 3600
        self.logs_page_limit = 10000
        self.batch_model = Model("batch")
        self.logs_model = Model("logs")
        self.faults = Faults()
        self.calls = Calls()
        self.logs = LogStore(self)
        self.logs.create_group(DEFAULT_LOG_GROUP)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.defs = {}          # name -> [def dict, ...] (revision = index + 1)
        self.jobs = {}          # id -> Job (children too)
        self.tags = {}          # arn -> {k: v}
        self.creds = {}         # cred id -> {"token", "job", "role"}
        self.queues = {}
        self.ces = {}
        self.secrets = {}       # ARN -> value: the Secrets Manager / SSM Parameter Store the jobs read
        self.port = None
        self.host = args.host
        self.stopping = False
        self.workroot = tempfile.mkdtemp(prefix="lb-batch-emu-")
        self.running = set()
        self.docker = None
        if args.docker is not None:
            self.docker = batch_docker.DockerAPI(batch_docker.socket_path(args.docker))
            if not self.docker.ping():
                raise SystemExit("batch_emulator: --docker: no Docker daemon answers on %s" % self.docker.path)
        for spec in args.queue or ["lb-queue:EC2", "lb-fargate-queue:FARGATE"]:
            name, _, platform = spec.partition(":")
            self._add_queue(name, (platform or "EC2").upper())
        threading.Thread(target=self._watchdog, daemon=True).start()

    # -- infrastructure --------------------------------------------------
    def arn(self, kind, name):
        return "arn:aws:batch:%s:%s:%s/%s" % (self.region, self.account, kind, name)

    def _add_queue(self, name, platform):
        ce_name = name + "-ce"
        ce_arn = self.arn("compute-environment", ce_name)
        cr = {"type": platform, "maxvCpus": 256, "subnets": ["subnet-0emulator"],
              "securityGroupIds": ["sg-0emulator"]}
        if platform in ("EC2", "SPOT"):
            cr.update({"minvCpus": 0, "desiredvCpus": 0, "instanceTypes": ["optimal"],
                       "instanceRole": "arn:aws:iam::%s:instance-profile/ecsInstanceRole" % self.account,
                       "allocationStrategy": "BEST_FIT_PROGRESSIVE"})
        self.ces[ce_name] = {
            "computeEnvironmentName": ce_name, "computeEnvironmentArn": ce_arn,
            "ecsClusterArn": "arn:aws:ecs:%s:%s:cluster/%s_Batch_%s" % (self.region, self.account, ce_name,
                                                                          uuid.uuid4().hex[:8]),
            "type": "MANAGED", "state": "ENABLED", "status": "VALID", "statusReason": "ComputeEnvironment Healthy",
            "computeResources": cr, "containerOrchestrationType": "ECS", "uuid": str(uuid.uuid4()),
            "serviceRole": "arn:aws:iam::%s:role/aws-service-role/batch.amazonaws.com/"
                           "AWSServiceRoleForBatch" % self.account,
        }
        self.tags[ce_arn] = {}
        qarn = self.arn("job-queue", name)
        self.queues[name] = {
            "jobQueueName": name, "jobQueueArn": qarn, "state": "ENABLED", "status": "VALID",
            "statusReason": "JobQueue Healthy", "priority": 1,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": ce_arn}],
            "platform": platform, "ceName": ce_name,
        }
        self.tags[qarn] = {}

    def queue(self, ref):
        if ref in self.queues:
            return self.queues[ref]
        for q in self.queues.values():
            if q["jobQueueArn"] == ref:
                return q
        return None

    def config_dict(self):
        return {"delays": self.delays, "timeout_scale": self.timeout_scale, "kill_grace": self.kill_grace,
                "role_credentials": None if self.role_credentials is None else
                {"AccessKeyId": self.role_credentials["AccessKeyId"]},
                "logs_page_limit": self.logs_page_limit, "region": self.region,
                "access_key": self.args.access_key, "queues": sorted(self.queues)}

    def configure(self, c):
        if "delays" in c:
            d = c["delays"]
            if isinstance(d, (int, float)):
                self.delays = {s: float(d) for s in STATES[:5]}
            else:
                for k, v in d.items():
                    self.delays[k.upper()] = float(v)
        if "timeout_scale" in c:
            self.timeout_scale = float(c["timeout_scale"])
        if "kill_grace" in c:
            self.kill_grace = float(c["kill_grace"])
        if "role_credentials" in c:
            rc = c["role_credentials"]
            self.role_credentials = None if not rc else {
                "AccessKeyId": rc["AccessKeyId"], "SecretAccessKey": rc["SecretAccessKey"],
                "Token": rc.get("Token")}
        if "logs_page_limit" in c:
            self.logs_page_limit = int(c["logs_page_limit"])
        if "creds_ttl" in c:
            self.creds_ttl = int(c["creds_ttl"])
        if "secrets" in c:
            self.secrets = dict(c["secrets"] or {})
        if "fair_share_queues" in c:      # these queues get a scheduling policy, the others none
            fair = set(c["fair_share_queues"] or [])
            for name, q in self.queues.items():
                if name in fair:
                    q["schedulingPolicyArn"] = self.arn("scheduling-policy", name + "-policy")
                else:
                    q.pop("schedulingPolicyArn", None)

    # -- job definitions ---------------------------------------------------
    def find_def(self, ref, active_only=True):
        """name | name:rev | ARN -> def dict (latest ACTIVE when no revision)."""
        m = re.match(r"^arn:aws[a-z-]*:batch:[^:]*:[^:]*:job-definition/(.+)$", ref)
        if m:
            ref = m.group(1)
        name, _, rev = ref.partition(":")
        revs = self.defs.get(name) or []
        if rev:
            if not rev.isdigit() or int(rev) < 1 or int(rev) > len(revs):
                return None
            d = revs[int(rev) - 1]
            return d if (d["status"] == "ACTIVE" or not active_only) else None
        for d in reversed(revs):
            if d["status"] == "ACTIVE":
                return d
        return None

    # -- rendering ---------------------------------------------------------
    def summary(self, j):
        if not j.children:
            return None
        counts = {s: 0 for s in STATES}
        for c in j.children:
            counts[c.status] += 1
        return counts

    @staticmethod
    def cprops(jd):
        """The container properties of a definition: a multinode one's node range's."""
        if jd.get("containerProperties") is not None:
            return jd["containerProperties"]
        ranges = (jd.get("nodeProperties") or {}).get("nodeRangeProperties") or [{}]
        return ranges[0].get("container") or {}

    def container_detail(self, j):
        cp = self.cprops(j.jobdef)
        c = {}
        for k in ("image", "vcpus", "memory", "jobRoleArn", "executionRoleArn", "volumes", "mountPoints",
                  "readonlyRootFilesystem", "ulimits", "privileged", "user", "instanceType", "linuxParameters",
                  "logConfiguration", "secrets", "networkConfiguration", "fargatePlatformConfiguration"):
            if k in cp:
                c[k] = cp[k]
        ov = j.overrides or {}
        for k in ("vcpus", "memory", "instanceType"):
            if k in ov:
                c[k] = ov[k]
        c["command"] = j.command
        c["environment"] = [{"name": k, "value": v} for k, v in j.user_env.items()]
        rr = {r["type"]: r for r in cp.get("resourceRequirements") or []}
        for r in ov.get("resourceRequirements") or []:
            rr[r["type"]] = r
        if rr:
            c["resourceRequirements"] = list(rr.values())
        c["networkInterfaces"] = []
        c.update(j.runtime)
        return c

    def job_detail(self, j):
        d = {
            "jobArn": j.arn, "jobName": j.name, "jobId": j.id, "jobQueue": j.queue["jobQueueArn"],
            "status": j.status, "createdAt": j.created, "jobDefinition": j.jobdef["jobDefinitionArn"],
            "attempts": [json.loads(json.dumps(a)) for a in j.attempts],
            "dependsOn": j.dep_spec, "parameters": j.params, "tags": dict(self.tags.get(j.arn, {})),
            "propagateTags": j.propagate, "platformCapabilities": j.jobdef.get("platformCapabilities") or ["EC2"],
        }
        if j.status_reason:
            d["statusReason"] = j.status_reason
        if j.started is not None:
            d["startedAt"] = j.started
        if j.stopped is not None:
            d["stoppedAt"] = j.stopped
        if j.retry:
            d["retryStrategy"] = j.retry
        if j.timeout:
            d["timeout"] = j.timeout
        if j.share is not None:
            d["shareIdentifier"] = j.share
        if j.priority is not None:
            d["schedulingPriority"] = j.priority
        if j.size:
            d["arrayProperties"] = {"statusSummary": self.summary(j), "size": j.size}
        elif j.index is not None:
            d["arrayProperties"] = {"index": j.index}
        if j.nodes:
            d["nodeProperties"] = dict(j.nodes)
        elif j.node_index is not None:
            d["nodeDetails"] = {"nodeIndex": j.node_index, "isMainNode": j.node_index == j.parent.nodes["mainNode"]}
        if not j.size:
            d["container"] = self.container_detail(j)
        if j.is_cancelled:
            d["isCancelled"] = True
        if j.is_terminated:
            d["isTerminated"] = True
        return d

    def job_summary(self, j):
        s = {"jobArn": j.arn, "jobId": j.id, "jobName": j.name, "createdAt": j.created, "status": j.status,
             "jobDefinition": j.jobdef["jobDefinitionArn"]}
        if j.status_reason:
            s["statusReason"] = j.status_reason
        if j.started is not None:
            s["startedAt"] = j.started
        if j.stopped is not None:
            s["stoppedAt"] = j.stopped
        if j.size:
            s["arrayProperties"] = {"size": j.size}
        elif j.index is not None:
            s["arrayProperties"] = {"index": j.index}
        if not j.size:
            c = {k: j.runtime[k] for k in ("exitCode", "reason") if k in j.runtime}
            s["container"] = c
        return s

    # -- job life ------------------------------------------------------------
    def _set(self, j, status, reason=None):
        """Move j to status unless it already ended; returns False if it had."""
        with self.lock:
            if j.final:
                return False
            j.status = status
            if reason is not None:
                j.status_reason = reason
            p = j.parent
            if p is not None and p.nodes is not None:
                return self._node_set(j, p, status)
            if p is not None and status == "RUNNABLE" and p.status == "SUBMITTED":
                p.status = "PENDING"
            if status in TERMINAL:
                j.stopped = now_ms()
                j.event.set()
                self.running.discard(j)
                if p is not None:
                    p.remaining -= 1
                    if p.remaining == 0:
                        ok = all(c.status == "SUCCEEDED" for c in p.children)
                        p.status = "SUCCEEDED" if ok else "FAILED"
                        if p.cancel_reason or p.terminate_reason:
                            p.status_reason = p.terminate_reason or p.cancel_reason
                        p.stopped = now_ms()
                        p.event.set()
                self.cond.notify_all()
            return True

    def _node_set(self, j, p, status):
        """A node moved (lock held): the parent is its main node's state; when
        the main node ends, the job ends and the other nodes are stopped."""
        if status in TERMINAL:
            j.stopped = now_ms()
            j.event.set()
            self.running.discard(j)
        if j.node_index == p.nodes["mainNode"] and not p.final:
            p.status, p.status_reason, p.runtime = status, j.status_reason, j.runtime
            if p.started is None and status == "RUNNING":
                p.started = j.started
            if status in TERMINAL:
                p.attempts = list(j.attempts)
                p.stopped = now_ms()
                p.event.set()
                for c in p.children:
                    if c is not j and not c.final:
                        c.terminate_reason = "Essential container in main node exited"
                        if c.proc is not None:
                            threading.Thread(target=self._kill, args=(c, signal.SIGTERM), daemon=True).start()
                        elif c.status != "RUNNING":
                            c.status, c.stopped = "SUCCEEDED", now_ms()
                            c.event.set()
        self.cond.notify_all()
        return True

    def _sleep(self, j, state):
        """Wait the state's delay; False if the job ended meanwhile."""
        j.event.wait(max(0.0, self.delays.get(state, 0.0)))
        return not j.final

    def _wait_deps(self, j):
        with self.cond:
            while True:
                if j.final or self.stopping:
                    return "gone"
                if any(d.status == "FAILED" for d in j.deps):
                    return "failed"
                if all(d.status == "SUCCEEDED" for d in j.deps):
                    return "ok"
                self.cond.wait(0.5)

    def run_job(self, j):
        try:
            self._run_job(j)
        except Exception:
            traceback.print_exc()
            self._set(j, "FAILED", "emulator internal error")

    def _run_job(self, j):
        if not self._sleep(j, "SUBMITTED"):
            return
        if j.size or j.nodes:
            # The parent is a pointer: PENDING once a child is RUNNABLE, final
            # when every child is (see _set); a multi-node job follows its
            # main node (_node_set).
            return
        if not self._set(j, "PENDING"):
            return
        if j.deps:
            r = self._wait_deps(j)
            if r == "failed":
                self._set(j, "FAILED", DEP_FAILED)
                return
            if r != "ok":
                return
        if not self._sleep(j, "PENDING"):
            return
        while True:
            if not self._set(j, "RUNNABLE"):
                return
            if not self._sleep(j, "RUNNABLE"):
                return
            with self.lock:
                if j.cancel_reason and not j.final:
                    j.is_cancelled = True
                    self._set(j, "FAILED", j.cancel_reason)
                    return
            if not self._set(j, "STARTING"):
                return
            if not self._sleep(j, "STARTING"):
                return
            outcome = self._attempt(j)
            if outcome is None:
                return
            att, kind = outcome
            with self.lock:
                j.attempts.append(att)
                if kind == "terminated":
                    j.is_terminated = True
                    self._set(j, "FAILED", j.terminate_reason)
                    return
                if kind == "timeout":
                    self._set(j, "FAILED", TIMEOUT_REASON)
                    return
                if kind == "ok":
                    self._set(j, "SUCCEEDED", ESSENTIAL)
                    return
                if not self._should_retry(j, att):
                    self._set(j, "FAILED", att["statusReason"])
                    return
                j.status_reason = None

    def _should_retry(self, j, att):
        rs = j.retry or {}
        if len(j.attempts) >= int(rs.get("attempts") or 1):
            return False
        c = att.get("container", {})
        vals = {"onStatusReason": att.get("statusReason") or "", "onReason": c.get("reason") or "",
                "onExitCode": "" if c.get("exitCode") is None else str(c.get("exitCode"))}
        for rule in rs.get("evaluateOnExit") or []:
            ok = True
            for key in ("onStatusReason", "onReason", "onExitCode"):
                pat = rule.get(key)
                if pat is None:
                    continue
                v = vals[key]
                if pat.endswith("*"):
                    ok = v.startswith(pat[:-1])
                else:
                    ok = v == pat
                if not ok:
                    break
            if ok:
                return rule["action"].upper() == "RETRY"
        return True

    def _env(self, j, attempt_no, cred_id, token):
        if self.docker is not None:
            env = {}        # a container sees the job's environment only
        elif self.args.clean_env:
            env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        else:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(j.user_env)
        env.update(j.secret_env)
        env.update({
            "AWS_BATCH_JOB_ID": j.id, "AWS_BATCH_JOB_ATTEMPT": str(attempt_no),
            "AWS_BATCH_JQ_NAME": j.queue["jobQueueName"], "AWS_BATCH_CE_NAME": j.queue["ceName"],
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
            "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE" if j.queue["platform"] == "FARGATE" else "AWS_ECS_EC2",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://%s:%d/v2/credentials/%s" % (self.host, self.port, cred_id),
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
        })
        if j.index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(j.index)
        if j.node_index is not None:
            nodes = j.parent.nodes
            env.update({"AWS_BATCH_JOB_NODE_INDEX": str(j.node_index),
                        "AWS_BATCH_JOB_NUM_NODES": str(nodes["numNodes"]),
                        "AWS_BATCH_JOB_MAIN_NODE_INDEX": str(nodes["mainNode"])})
            if j.node_index != nodes["mainNode"]:       # set on the other nodes only, as Batch does
                env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = "127.0.0.1"
        return env

    def _resolve_secrets(self, j):
        """The container's secrets from the store -> None, or the reason the
        task fails to start (an ARN the store does not have), as Batch says it."""
        env = {}
        for sec in self.cprops(j.jobdef).get("secrets") or []:
            arn = sec.get("valueFrom", "")
            if arn not in self.secrets:
                where = "ssm" if ":ssm:" in arn else "asm"
                what = ("ParameterNotFound: invalid parameters: %s" % arn if where == "ssm" else
                        "ResourceNotFoundException: Secrets Manager can't find the specified secret.")
                return ("ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
                        "retrieval failed: unable to retrieve secret from %s: %s" % (where, what))
            env[sec["name"]] = self.secrets[arn]
        j.secret_env = env
        return None

    def _attempt(self, j):
        """Run one attempt; returns (AttemptDetail, kind) or None when the job ended."""
        attempt_no = len(j.attempts) + 1
        task_id = uuid.uuid4().hex
        jd = j.jobdef
        lc = (self.cprops(jd).get("logConfiguration") or {})
        group = (lc.get("options") or {}).get("awslogs-group", DEFAULT_LOG_GROUP)
        prefix = (lc.get("options") or {}).get("awslogs-stream-prefix", jd["jobDefinitionName"])
        stream = "%s/default/%s" % (prefix, task_id)
        task_arn = "arn:aws:ecs:%s:%s:task/%s/%s" % (self.region, self.account, j.queue["ceName"], task_id)
        ci_arn = "arn:aws:ecs:%s:%s:container-instance/%s" % (self.region, self.account, uuid.uuid4().hex)
        cred_id = uuid.uuid4().hex
        token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        image = self.cprops(jd).get("image", "")
        self.logs.create_stream(group, stream)
        with self.lock:
            if j.final:
                return None
            self.creds[cred_id] = {"token": token, "job": j.id, "role": self.cprops(jd).get("jobRoleArn")}
            j.runtime = {"taskArn": task_arn, "containerInstanceArn": ci_arn, "logStreamName": stream}
            j.status = "RUNNING"
            j.started = now_ms()
            j.timed_out = False
            j.oom = False
            j.mem_limit = self._memory_limit(j)
        att = {"container": {"containerInstanceArn": ci_arn, "taskArn": task_arn, "logStreamName": stream,
                             "networkInterfaces": []}, "startedAt": j.started}
        fail_reason = None
        if image.startswith("invalid/"):
            fail_reason = ("CannotPullContainerError: pull image manifest has been retried 5 time(s): "
                           "failed to resolve ref %s: not found" % image)
        elif not j.command:
            fail_reason = "CannotStartContainerError: Error response from daemon: no command specified"
        else:
            fail_reason = self._resolve_secrets(j)
        proc = None
        if fail_reason is None and self.docker is not None:
            props = self.container_detail(j)
            body = batch_docker.container_spec(props, j.command, self._env(j, attempt_no, cred_id, token))
            try:
                proc = batch_docker.ContainerProc.start(self.docker, body, "lb-batch-%s" % task_id[:12])
            except (batch_docker.StartError, OSError) as e:
                fail_reason = str(e)
        elif fail_reason is None:
            j.workdir = j.workdir or tempfile.mkdtemp(prefix="job-", dir=self.workroot)
            try:
                proc = subprocess.Popen(j.command, env=self._env(j, attempt_no, cred_id, token), cwd=j.workdir,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as e:
                fail_reason = ("CannotStartContainerError: Error response from daemon: failed to create task "
                               "for container: exec: \"%s\": %s: unknown" % (j.command[0], e.strerror))
        if proc is None:
            with self.lock:
                att["container"]["reason"] = fail_reason
                att["stoppedAt"] = now_ms()
                att["statusReason"] = "Task failed to start"
                j.runtime["reason"] = fail_reason
            return att, "failed"
        with self.lock:
            j.proc = proc
            tmo = (j.timeout or {}).get("attemptDurationSeconds")
            j.deadline = time.time() + tmo * self.timeout_scale if tmo else None
            self.running.add(j)
            pending_kill = j.terminate_reason is not None
        if pending_kill:
            self._kill(j, signal.SIGTERM)
        partial = b""
        for line in iter(proc.stdout.readline, b""):
            if not line.endswith(b"\n"):
                partial = line
                break
            msg = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if msg:
                self.logs.put(group, stream, now_ms(), msg)
        if partial:
            self.logs.put(group, stream, now_ms(), partial.decode("utf-8", "replace"))
        rc = proc.wait()
        proc.stdout.close()
        with self.lock:
            j.exited_at = time.time()
            j.proc = None
            j.deadline = None
            self.running.discard(j)
            code = rc if rc >= 0 else 128 - rc
            att["container"]["exitCode"] = code
            att["stoppedAt"] = now_ms()
            att["statusReason"] = ESSENTIAL
            j.runtime["exitCode"] = code
            if j.terminate_reason is not None:
                return att, "terminated"
            if j.timed_out:
                att["statusReason"] = TIMEOUT_REASON
                return att, "timeout"
            if getattr(proc, "oom_killed", False):
                j.oom = True
            if j.oom:
                att["container"]["reason"] = OOM_REASON
                j.runtime["reason"] = OOM_REASON
            return att, ("ok" if code == 0 else "failed")

    def _kill(self, j, sig):
        p = j.proc
        if p is None:
            return
        if isinstance(p, batch_docker.ContainerProc):
            p.signal(sig)
            if sig == signal.SIGTERM and self.kill_grace >= 0:
                def later_c(proc=p):
                    time.sleep(self.kill_grace)
                    if proc.returncode is None:
                        proc.signal(signal.SIGKILL)
                threading.Thread(target=later_c, daemon=True).start()
            return
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if sig == signal.SIGTERM and self.kill_grace >= 0:
            def later(proc=p):
                time.sleep(self.kill_grace)
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            threading.Thread(target=later, daemon=True).start()

    def _memory_limit(self, j):
        """The job's MEMORY in bytes (overrides first), or None."""
        c = self.container_detail(j)
        mib = None
        for r in c.get("resourceRequirements") or []:
            if r.get("type") == "MEMORY":
                mib = _num(r.get("value"))
        if mib is None:
            mib = _num(c.get("memory"))
        return int(mib * 1024 * 1024) if mib else None

    @staticmethod
    def _rss_by_session():
        """{session id: resident bytes} of every process (one /proc pass)."""
        out = {}
        page = os.sysconf("SC_PAGE_SIZE")
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            rest = data[data.rfind(b")") + 2:].split()
            if len(rest) > 21:
                sid = int(rest[3])
                out[sid] = out.get(sid, 0) + int(rest[21]) * page
        return out

    def _watchdog(self):
        tick = 0
        while not self.stopping:
            time.sleep(0.02)
            tick += 1
            t = time.time()
            with self.lock:
                late = [j for j in self.running if j.deadline is not None and t >= j.deadline and not j.timed_out]
                for j in late:
                    j.timed_out = True
                # (Docker enforces a container's memory itself)
                limited = [j for j in self.running if j.mem_limit and j.proc is not None and not j.oom
                           and self.docker is None]
            for j in late:
                self._kill(j, signal.SIGKILL)
            if limited and tick % 5 == 0:
                # each job runs in its own session (start_new_session): its processes
                rss = self._rss_by_session()
                for j in limited:
                    p = j.proc
                    if p is not None and rss.get(p.pid, 0) > j.mem_limit:
                        with self.lock:
                            j.oom = True
                        self._kill(j, signal.SIGKILL)
            if self.args.parent_pid:
                try:
                    os.kill(self.args.parent_pid, 0)
                except ProcessLookupError:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

    def shutdown(self):
        self.stopping = True
        with self.lock:
            procs = [j.proc for j in self.jobs.values() if j.proc is not None]
            for j in self.jobs.values():
                j.event.set()
            self.cond.notify_all()
        for p in procs:
            if isinstance(p, batch_docker.ContainerProc):
                p.signal(signal.SIGKILL)
                p.remove()
                continue
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in procs:
            if isinstance(p, batch_docker.ContainerProc):
                continue
            try:
                p.wait(timeout=5)
            except Exception:
                pass
        shutil.rmtree(self.workroot, ignore_errors=True)

    # -- Batch operations ----------------------------------------------------
    def RegisterJobDefinition(self, p):
        name = p["jobDefinitionName"]
        if not re.match(r"^[A-Za-z0-9_-]{1,128}$", name):
            raise client_error("jobDefinitionName must be up to 128 letters (uppercase and lowercase), numbers, "
                               "hyphens, and underscores.")
        if p["type"] == "container" and not p.get("containerProperties") and not p.get("eksProperties"):
            raise client_error("Container properties should not be empty")
        if p["type"] == "multinode":
            np_ = p.get("nodeProperties") or {}
            n, main = np_.get("numNodes"), np_.get("mainNode")
            if not n or main is None or not (0 <= main < n) or not np_.get("nodeRangeProperties"):
                raise client_error("Node properties must have numNodes, a mainNode below it and nodeRangeProperties")
            if "FARGATE" in (p.get("platformCapabilities") or []):
                raise client_error("Multi-node parallel jobs are not supported on Fargate resources")
        cp = p.get("containerProperties") or (self.cprops(p) if p["type"] == "multinode" else None)
        if cp is not None and not cp.get("image"):
            raise client_error("Container properties should have an image")
        if cp is not None and cp.get("secrets") and not cp.get("executionRoleArn"):
            raise client_error("An executionRoleArn is required when secrets are specified")
        to = (p.get("timeout") or {}).get("attemptDurationSeconds")
        if to is not None and to < 60:
            raise client_error("timeout.attemptDurationSeconds must be at least 60 seconds")
        self._check_retry(p.get("retryStrategy"))
        self._check_platform(p)
        if len(json.dumps(p)) > 24 * 1024:
            raise client_error("Job definition size exceeds the limit of 24 KiB")
        with self.lock:
            revs = self.defs.setdefault(name, [])
            rev = len(revs) + 1
            arn = self.arn("job-definition", "%s:%d" % (name, rev))
            d = {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": rev, "status": "ACTIVE",
                 "type": p["type"], "containerOrchestrationType": "ECS"}
            for k in ("parameters", "retryStrategy", "containerProperties", "timeout", "nodeProperties",
                      "propagateTags", "platformCapabilities", "schedulingPriority", "eksProperties"):
                if k in p:
                    d[k] = p[k]
            d.setdefault("parameters", {})
            d.setdefault("platformCapabilities", ["EC2"])
            revs.append(d)
            self.tags[arn] = dict(p.get("tags") or {})
        return {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": rev}

    def _check_platform(self, p):
        """Real Batch's platform rules for a container job definition.

        FARGATE: resourceRequirements VCPU/MEMORY must be a supported Fargate
        pair ("Fargate resource requirements (0.50 vCPU, 1 MiB) not valid.",
        the text Batch gives), no GPU, no deprecated vcpus/memory fields, an
        executionRoleArn.  EC2: no networkConfiguration /
        fargatePlatformConfiguration ("Jobs that are running on EC2 resources
        must not specify this parameter")."""
        caps = p.get("platformCapabilities") or ["EC2"]
        cp = p.get("containerProperties")
        if cp is None:
            return
        if len(caps) != 1 or caps[0] not in ("EC2", "FARGATE"):
            raise client_error("platformCapabilities must be [EC2] or [FARGATE]")
        if caps[0] == "EC2":
            for k in ("networkConfiguration", "fargatePlatformConfiguration"):
                if k in cp:
                    raise client_error("%s is only supported for jobs running on Fargate resources" % k)
            return
        for k in ("vcpus", "memory", "instanceType"):
            if k in cp:
                raise client_error("containerProperties.%s is not supported for jobs running on Fargate "
                                   "resources; use resourceRequirements" % k)
        rr = {r.get("type"): r.get("value") for r in cp.get("resourceRequirements") or []}
        if "GPU" in rr:
            raise client_error("GPU resource requirements are not supported for jobs running on Fargate resources")
        if not cp.get("executionRoleArn"):
            raise client_error("An executionRoleArn is required for jobs running on Fargate resources")
        if not fargate_pair_ok(rr.get("VCPU"), rr.get("MEMORY")):
            raise client_error("Error executing request, Exception : Fargate resource requirements (%s vCPU, %s MiB) "
                               "not valid., RequestId: %s" % (_fmt_vcpu(rr.get("VCPU")), rr.get("MEMORY"),
                                                             uuid.uuid4()))
        pv = (cp.get("fargatePlatformConfiguration") or {}).get("platformVersion")
        if pv is not None and pv != "LATEST" and not re.match(r"^1\.[34]\.0$", pv):
            raise client_error("Fargate platform version %s is not supported (LATEST, 1.4.0 or 1.3.0)" % pv)

    def _check_retry(self, rs):
        if not rs:
            return
        for rule in rs.get("evaluateOnExit") or []:
            for key in ("onStatusReason", "onReason", "onExitCode"):
                pat = rule.get(key)
                if pat is None:
                    continue
                if "*" in pat[:-1]:
                    raise client_error("%s may only end with an asterisk (*)" % key)
                if key == "onExitCode" and not re.match(r"^[0-9]*\*?$", pat):
                    raise client_error("onExitCode may only contain digits, optionally followed by an asterisk")

    def _def_out(self, d):
        out = dict(d)
        out["tags"] = dict(self.tags.get(d["jobDefinitionArn"], {}))
        return out

    def DescribeJobDefinitions(self, p):
        maxr = p.get("maxResults") or 100
        with self.lock:
            alld = [d for revs in self.defs.values() for d in revs]
            if p.get("jobDefinitions"):
                if len(p["jobDefinitions"]) > 100:
                    raise client_error("jobDefinitions must contain at most 100 items")
                sel = []
                for ref in p["jobDefinitions"]:
                    if ":" in ref.split("/")[-1]:
                        d = self.find_def(ref, active_only=False)
                        if d is not None and d not in sel:
                            sel.append(d)
                    else:
                        sel.extend(d for d in self.defs.get(ref.split("/")[-1], []) if d not in sel)
                alld = sel
            if p.get("jobDefinitionName"):
                alld = [d for d in alld if d["jobDefinitionName"] == p["jobDefinitionName"]]
            if p.get("status"):
                alld = [d for d in alld if d["status"] == p["status"]]
            alld.sort(key=lambda d: (d["jobDefinitionName"], d["revision"]))
            start = 0
            if p.get("nextToken"):
                start = _dec_token(p["nextToken"], client_error("Invalid nextToken"))["o"]
            page = alld[start:start + maxr]
            out = {"jobDefinitions": [self._def_out(d) for d in page]}
            if start + maxr < len(alld):
                out["nextToken"] = _enc_token({"o": start + maxr})
        return out

    def DeregisterJobDefinition(self, p):
        with self.lock:
            d = self.find_def(p["jobDefinition"], active_only=False) if ":" in p["jobDefinition"].split("/")[-1] \
                else None
            if d is None:
                raise client_error("Job definition %s does not exist or has no revision" % p["jobDefinition"])
            d["status"] = "INACTIVE"
        return {}

    def SubmitJob(self, p, raw_len=0):
        if raw_len > 30 * 1024:
            raise client_error("The job submission payload exceeds the limit of 30 KiB")
        name = p["jobName"]
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$", name):
            raise client_error("Job name should be up to 128 letters (uppercase and lowercase), numbers, hyphens, "
                               "and underscores, and must start with an alphanumeric character")
        ov = p.get("containerOverrides") or {}
        if len(json.dumps(ov, separators=(",", ":"))) > 8192:
            raise client_error("Container Overrides length must be at most 8192")
        size = (p.get("arrayProperties") or {}).get("size")
        if size is not None and not (2 <= size <= 10000):
            raise client_error("Array size must be between 2 and 10000")
        to = p.get("timeout")
        if to and to.get("attemptDurationSeconds") is not None and to["attemptDurationSeconds"] < 60:
            raise client_error("timeout.attemptDurationSeconds must be at least 60 seconds")
        self._check_retry(p.get("retryStrategy"))
        deps = p.get("dependsOn") or []
        if len(deps) > 20:
            raise client_error("A job can depend on at most 20 jobs")
        with self.lock:
            q = self.queue(p["jobQueue"])
            if q is None:
                raise client_error("JobQueue %s not found." % p["jobQueue"])
            jd = self.find_def(p["jobDefinition"])
            if jd is None:
                raise client_error("Job definition %s does not exist or is not ACTIVE" % p["jobDefinition"])
            if q.get("schedulingPolicyArn") and not p.get("shareIdentifier"):
                raise client_error("Job queue %s has a scheduling policy: a shareIdentifier is required"
                                   % q["jobQueueName"])
            if p.get("shareIdentifier") and not q.get("schedulingPolicyArn"):
                raise client_error("shareIdentifier can only be used with a job queue that has a scheduling policy")
            multinode = jd.get("type") == "multinode"
            if multinode:
                if p.get("containerOverrides"):
                    raise client_error("containerOverrides is not supported for multi-node parallel jobs; "
                                       "use nodeOverrides")
                if size:
                    raise client_error("Array properties are not supported for multi-node parallel jobs")
                for npo in (p.get("nodeOverrides") or {}).get("nodePropertyOverrides") or []:
                    ov = npo.get("containerOverrides") or ov
            cap = (jd.get("platformCapabilities") or ["EC2"])[0]
            qplat = "FARGATE" if q["platform"] in ("FARGATE", "FARGATE_SPOT") else "EC2"
            if cap != qplat:
                raise client_error("Job Queue is attached to Compute Environment that can not run Jobs with "
                                   "capability %s" % cap)
            dep_jobs, seq, n2n = [], False, []
            for dspec in deps:
                jid, typ = dspec.get("jobId"), dspec.get("type")
                if typ == "SEQUENTIAL" and not jid:
                    if not size:
                        raise client_error("SEQUENTIAL dependency is only valid for array jobs")
                    seq = True
                    continue
                dj = self.jobs.get(jid or "")
                if dj is None:
                    raise client_error("Dependent job %s does not exist" % jid)
                if typ == "N_TO_N":
                    if not size or dj.size != size:
                        raise client_error("N_TO_N dependency requires array jobs of the same size")
                    n2n.append(dj)
                elif typ == "SEQUENTIAL":
                    raise client_error("SEQUENTIAL dependency must not name a job id")
                else:
                    dep_jobs.append(dj)
            params = dict(jd.get("parameters") or {})
            params.update(p.get("parameters") or {})
            cp = self.cprops(jd)
            command = list(ov.get("command") if ov.get("command") is not None else cp.get("command") or [])

            def sub(arg):
                return re.sub(r"Ref::([A-Za-z0-9_]+)",
                              lambda m: params.get(m.group(1), m.group(0)), arg)
            command = [sub(a) for a in command]
            user_env = collections.OrderedDict()
            for e in (cp.get("environment") or []) + (ov.get("environment") or []):
                if e.get("name"):
                    user_env[e["name"]] = e.get("value", "")
            bad = [k for k in user_env if k.startswith("AWS_BATCH")]
            if bad:
                raise client_error("Environment variable names starting with AWS_BATCH are reserved: %s" % bad[0])
            jid = str(uuid.uuid4())
            propagate = p.get("propagateTags", jd.get("propagateTags", False))
            tags = {}
            if propagate:
                tags.update(self.tags.get(jd["jobDefinitionArn"], {}))
            tags.update(p.get("tags") or {})

            def make(job_id, index=None):
                j = Job()
                j.id, j.name, j.queue, j.jobdef = job_id, name, q, jd
                j.arn = self.arn("job", job_id)
                j.params, j.overrides = params, ov
                j.retry = p.get("retryStrategy") or jd.get("retryStrategy")
                j.timeout = p.get("timeout") or jd.get("timeout")
                j.propagate = bool(propagate)
                j.share = p.get("shareIdentifier")
                j.priority = p.get("schedulingPriorityOverride", jd.get("schedulingPriority"))
                j.command, j.user_env = command, user_env
                j.created = now_ms()
                j.index = index
                self.jobs[job_id] = j
                self.tags[j.arn] = dict(tags)
                return j

            job = make(jid)
            job.dep_spec = [dict(d) for d in deps]
            if multinode:
                np_ = jd["nodeProperties"]
                job.nodes = {"numNodes": np_["numNodes"], "mainNode": np_["mainNode"]}
                job.deps = dep_jobs
                for i in range(np_["numNodes"]):
                    c = make("%s#%d" % (jid, i))
                    c.parent, c.node_index, c.deps = job, i, list(dep_jobs)
                    job.children.append(c)
            elif size:
                job.size = size
                job.remaining = size
                job.dep_spec = [dict(d) for d in deps]
                for i in range(size):
                    c = make("%s:%d" % (jid, i), i)
                    c.parent = job
                    c.deps = list(dep_jobs) + [d.children[i] for d in n2n]
                    c.dep_spec = ([{"jobId": d.id} for d in dep_jobs] +
                                  [{"jobId": "%s:%d" % (d.id, i), "type": "N_TO_N"} for d in n2n])
                    if seq and i > 0:
                        c.deps.append(job.children[i - 1])
                        c.dep_spec.append({"jobId": "%s:%d" % (jid, i - 1), "type": "SEQUENTIAL"})
                    job.children.append(c)
            else:
                job.deps = dep_jobs
            todo = [job] + job.children
        for j in todo:
            threading.Thread(target=self.run_job, args=(j,), daemon=True).start()
        return {"jobArn": job.arn, "jobName": name, "jobId": jid}

    def DescribeJobs(self, p):
        ids = p["jobs"]
        if len(ids) > 100:
            raise client_error("Cannot describe more than 100 jobs in one request")
        with self.lock:
            out = [self.job_detail(self.jobs[i]) for i in ids if i in self.jobs]
        return {"jobs": out}

    def ListJobs(self, p):
        filters = p.get("filters") or []
        if len(filters) > 1:
            raise client_error("Only one filter can be applied at a time")
        with self.lock:
            if p.get("arrayJobId"):
                parent = self.jobs.get(p["arrayJobId"])
                if parent is None or not parent.size:
                    raise client_error("Job %s is not an array job" % p["arrayJobId"])
                cand = list(parent.children)
            elif p.get("multiNodeJobId"):
                cand = []
            elif p.get("jobQueue"):
                q = self.queue(p["jobQueue"])
                cand = [j for j in self.jobs.values() if j.parent is None and q is not None and j.queue is q]
            else:
                raise client_error("Either jobQueue, arrayJobId or multiNodeJobId must be specified")
            maxr = p.get("maxResults") or 100
            if filters:
                maxr = min(maxr, 100)
                f = filters[0]
                name, values = f.get("name"), f.get("values") or []
                if not values:
                    raise client_error("Filter values must not be empty")
                v = values[0]

                def glob(s, pat, nocase=False):
                    if nocase:
                        s, pat = s.lower(), pat.lower()
                    return s.startswith(pat[:-1]) if pat.endswith("*") else s == pat
                if name == "JOB_NAME":
                    cand = [j for j in cand if glob(j.name, v, True)]
                elif name == "JOB_DEFINITION":
                    cand = [j for j in cand if glob(j.jobdef["jobDefinitionName"], v) or
                            glob("%s:%d" % (j.jobdef["jobDefinitionName"], j.jobdef["revision"]), v) or
                            glob(j.jobdef["jobDefinitionArn"], v)]
                elif name in ("AFTER_CREATED_AT", "BEFORE_CREATED_AT"):
                    try:
                        t = int(v)
                    except ValueError:
                        raise client_error("%s value must be a Unix timestamp in milliseconds" % name)
                    cand = [j for j in cand if (j.created > t if name == "AFTER_CREATED_AT" else j.created < t)]
                elif name == "SHARE_IDENTIFIER":
                    cand = [j for j in cand if j.share is not None and glob(j.share, v)]
                else:
                    raise client_error("Invalid filter name %s" % name)
            else:
                maxr = min(maxr, 1000)
                st = p.get("jobStatus") or "RUNNING"
                cand = [j for j in cand if j.status == st]
            cand.sort(key=lambda j: (-j.created, j.id))
            if p.get("nextToken"):
                last = _dec_token(p["nextToken"], client_error("Invalid nextToken"))
                key = (-last["c"], last["i"])
                cand = [j for j in cand if (-j.created, j.id) > key]
            page = cand[:maxr]
            out = {"jobSummaryList": [self.job_summary(j) for j in page]}
            if len(cand) > maxr:
                out["nextToken"] = _enc_token({"c": page[-1].created, "i": page[-1].id})
        return out

    def _job_or_fail(self, jid):
        j = self.jobs.get(jid)
        if j is None:
            raise client_error("Job %s not found" % jid)
        return j

    def CancelJob(self, p):
        with self.lock:
            j = self._job_or_fail(p["jobId"])
            targets = j.children if j.size else [j]
            if j.size and not j.final:
                j.cancel_reason = p["reason"]
            for t in targets:
                self._cancel(t, p["reason"])
        return {}

    def _cancel(self, t, reason):
        if t.status in ("SUBMITTED", "PENDING"):
            t.is_cancelled = True
            self._set(t, "FAILED", reason)
        elif t.status == "RUNNABLE":
            t.cancel_reason = reason       # leaves RUNNABLE as FAILED at the head of the queue
        # STARTING, RUNNING, terminal: the call succeeds and does nothing

    def TerminateJob(self, p):
        kill = []
        with self.lock:
            j = self._job_or_fail(p["jobId"])
            targets = j.children if j.size else [j]
            if j.size and not j.final:
                j.terminate_reason = p["reason"]
            for t in targets:
                if t.final:
                    continue
                if t.status in ("SUBMITTED", "PENDING", "RUNNABLE"):
                    t.is_cancelled = True
                    self._set(t, "FAILED", p["reason"])
                elif t.proc is not None:
                    t.terminate_reason = p["reason"]
                    kill.append(t)
                else:   # STARTING, or RUNNING before the process exists
                    t.terminate_reason = p["reason"]
                    if t.status == "STARTING":
                        t.is_terminated = True
                        self._set(t, "FAILED", p["reason"])
        for t in kill:
            self._kill(t, signal.SIGTERM)
        return {}

    def DescribeJobQueues(self, p):
        with self.lock:
            qs = list(self.queues.values())
            if p.get("jobQueues"):
                qs = [q for q in (self.queue(r) for r in p["jobQueues"]) if q is not None]
            out = []
            for q in qs:
                d = {k: v for k, v in q.items() if k not in ("platform", "ceName")}
                d["tags"] = dict(self.tags.get(q["jobQueueArn"], {}))
                out.append(d)
        return self._page(out, p, "jobQueues")

    def DescribeComputeEnvironments(self, p):
        with self.lock:
            ces = list(self.ces.values())
            if p.get("computeEnvironments"):
                want = set(p["computeEnvironments"])
                ces = [c for c in ces if c["computeEnvironmentName"] in want or c["computeEnvironmentArn"] in want]
            out = []
            for c in ces:
                d = dict(c)
                d["tags"] = dict(self.tags.get(c["computeEnvironmentArn"], {}))
                out.append(d)
        return self._page(out, p, "computeEnvironments")

    def _page(self, items, p, key):
        maxr = p.get("maxResults") or 100
        start = _dec_token(p["nextToken"], client_error("Invalid nextToken"))["o"] if p.get("nextToken") else 0
        out = {key: items[start:start + maxr]}
        if start + maxr < len(items):
            out["nextToken"] = _enc_token({"o": start + maxr})
        return out

    def _tag_target(self, arn):
        if arn not in self.tags:
            raise client_error("Resource %s not found" % arn)
        return self.tags[arn]

    def TagResource(self, p):
        with self.lock:
            self._tag_target(p["resourceArn"]).update(p["tags"])
        return {}

    def UntagResource(self, p):
        with self.lock:
            t = self._tag_target(p["resourceArn"])
            for k in p.get("tagKeys") or []:
                t.pop(k, None)
        return {}

    def ListTagsForResource(self, p):
        with self.lock:
            return {"tags": dict(self._tag_target(p["resourceArn"]))}

    # -- Logs operations -----------------------------------------------------
    def GetLogEvents(self, p):
        group = group_from(p)
        limit = min(p.get("limit") or 10000, self.logs_page_limit)
        with self.logs.lock:
            s = self.logs.stream(group, p["logStreamName"])
            evs = list(s["events"])
        st, et = p.get("startTime"), p.get("endTime")
        idx = [i for i, e in enumerate(evs) if (st is None or e[0] >= st) and (et is None or e[0] < et)]
        if p.get("nextToken"):
            direction, pos = _untok(p["nextToken"])
        elif p.get("startFromHead"):
            direction, pos = "f", 0
        else:
            direction, pos = "b", len(evs)
        if direction == "f":
            sel, size = [], 0
            for i in idx:
                if i < pos:
                    continue
                size += len(evs[i][1].encode()) + 26
                if len(sel) >= limit or (sel and size > 1048576):
                    break
                sel.append(i)
        else:
            sel = [i for i in idx if i < pos][-limit:]
        fwd = sel[-1] + 1 if sel else pos
        back = sel[0] if sel else pos
        return {"events": [{"timestamp": evs[i][0], "message": evs[i][1], "ingestionTime": evs[i][2]}
                           for i in sel],
                "nextForwardToken": _tok("f", fwd), "nextBackwardToken": _tok("b", back)}

    def FilterLogEvents(self, p):
        group = group_from(p)
        if p.get("logStreamNames") and p.get("logStreamNamePrefix"):
            raise logs_error("InvalidParameterException",
                             "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
        limit = p.get("limit") or 10000
        with self.logs.lock:
            g = self.logs.groups.get(group)
            if g is None:
                raise logs_error("ResourceNotFoundException", "The specified log group does not exist.")
            names = sorted(g["streams"])
            if p.get("logStreamNames"):
                names = [n for n in names if n in p["logStreamNames"]]
            if p.get("logStreamNamePrefix"):
                names = [n for n in names if n.startswith(p["logStreamNamePrefix"])]
            allev = []
            for n in names:
                s = g["streams"][n]
                for i, e in enumerate(s["events"]):
                    allev.append((e[0], s["seq"], i, n, e))
        st, et, pat = p.get("startTime"), p.get("endTime"), p.get("filterPattern")
        allev = [x for x in allev if (st is None or x[0] >= st) and (et is None or x[0] <= et)
                 and _pattern_match(pat, x[4][1])]
        allev.sort(key=lambda x: x[:3])
        start = 0
        if p.get("nextToken"):
            start = _dec_token(p["nextToken"], logs_error("InvalidParameterException",
                                                          "The specified nextToken is invalid."))["o"]
        page = allev[start:start + limit]
        out = {"events": [{"logStreamName": x[3], "timestamp": x[0], "message": x[4][1],
                           "ingestionTime": x[4][2], "eventId": "%020d%06d%010d" % (x[0], x[1], x[2])}
                          for x in page],
               "searchedLogStreams": [{"logStreamName": n, "searchedCompletely": True} for n in names]}
        if start + limit < len(allev):
            out["nextToken"] = _enc_token({"o": start + limit})
        return out

    def DescribeLogStreams(self, p):
        group = group_from(p)
        order = p.get("orderBy") or "LogStreamName"
        if order == "LastEventTime" and p.get("logStreamNamePrefix"):
            raise logs_error("InvalidParameterException",
                             "Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = p.get("limit") or 50
        with self.logs.lock:
            g = self.logs.groups.get(group)
            if g is None:
                raise logs_error("ResourceNotFoundException", "The specified log group does not exist.")
            out = []
            for n, s in g["streams"].items():
                if p.get("logStreamNamePrefix") and not n.startswith(p["logStreamNamePrefix"]):
                    continue
                d = {"logStreamName": n, "creationTime": s["created"], "storedBytes": s["bytes"],
                     "arn": "arn:aws:logs:%s:%s:log-group:%s:log-stream:%s" % (self.region, self.account, group, n),
                     "uploadSequenceToken": str(len(s["events"]) + 1)}
                if s["events"]:
                    d["firstEventTimestamp"] = s["events"][0][0]
                    d["lastEventTimestamp"] = s["events"][-1][0]
                    d["lastIngestionTime"] = s["events"][-1][2]
                out.append(d)
        if order == "LastEventTime":
            out.sort(key=lambda d: (d.get("lastEventTimestamp", 0), d["logStreamName"]))
        else:
            out.sort(key=lambda d: d["logStreamName"])
        if p.get("descending"):
            out.reverse()
        start = 0
        if p.get("nextToken"):
            start = _dec_token(p["nextToken"], logs_error("InvalidParameterException",
                                                          "The specified nextToken is invalid."))["o"]
        res = {"logStreams": out[start:start + limit]}
        if start + limit < len(out):
            res["nextToken"] = _enc_token({"o": start + limit})
        return res

    def DescribeLogGroups(self, p):
        with self.logs.lock:
            names = sorted(n for n in self.logs.groups if n.startswith(p.get("logGroupNamePrefix") or ""))
            gs = [{"logGroupName": n, "creationTime": self.logs.groups[n]["created"], "metricFilterCount": 0,
                   "arn": "arn:aws:logs:%s:%s:log-group:%s:*" % (self.region, self.account, n),
                   "storedBytes": sum(s["bytes"] for s in self.logs.groups[n]["streams"].values())}
                  for n in names]
        return {"logGroups": gs}

    def CreateLogGroup(self, p):
        self.logs.create_group(p["logGroupName"], exist_ok=False)
        return {}

    def CreateLogStream(self, p):
        self.logs.create_stream(p["logGroupName"], p["logStreamName"], exist_ok=False)
        return {}

    def PutLogEvents(self, p):
        with self.logs.lock:
            self.logs.stream(p["logGroupName"], p["logStreamName"])
        for e in p["logEvents"]:
            self.logs.put(p["logGroupName"], p["logStreamName"], e["timestamp"], e["message"])
        return {"nextSequenceToken": uuid.uuid4().hex}

    # -- credentials endpoint --------------------------------------------------
    def credentials(self, cred_id, auth):
        with self.lock:
            c = self.creds.get(cred_id)
            if c is None:
                return 404, {"code": "NotFound", "message": "no credentials for this id"}
            if auth != c["token"]:
                return 401, {"code": "AccessDenied", "message": "invalid authorization token"}
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.creds_ttl))
            if self.role_credentials:
                rc = self.role_credentials
                out = {"AccessKeyId": rc["AccessKeyId"], "SecretAccessKey": rc["SecretAccessKey"],
                       "Token": rc.get("Token") or "", "Expiration": exp}
            else:
                key = "ASIAEMU" + uuid.uuid4().hex[:13].upper()
                secret = base64.b64encode(os.urandom(30)).decode()
                token = base64.b64encode(os.urandom(48)).decode()
                self.keys[key] = (secret, token)
                out = {"AccessKeyId": key, "SecretAccessKey": secret, "Token": token, "Expiration": exp}
            out["RoleArn"] = c["role"] or "arn:aws:iam::%s:role/emulator-job-role" % self.account
            return 200, out


BATCH_OPS = ["RegisterJobDefinition", "DescribeJobDefinitions", "DeregisterJobDefinition", "SubmitJob",
             "DescribeJobs", "ListJobs", "TerminateJob", "CancelJob", "DescribeJobQueues",
             "DescribeComputeEnvironments", "TagResource", "UntagResource", "ListTagsForResource"]
LOGS_OPS = ["GetLogEvents", "FilterLogEvents", "DescribeLogStreams", "DescribeLogGroups", "CreateLogGroup",
            "CreateLogStream", "PutLogEvents"]


def build_routes(model):
    routes = []
    for name in model.sm.operation_names:
        http = model.op(name).http
        pat = re.sub(r"\{([^}+]+)\+\}", r"(?P<\1>.+)", http["requestUri"].split("?")[0])
        pat = re.sub(r"\{([^}]+)\}", r"(?P<\1>[^/]+)", pat)
        routes.append((http["method"], re.compile("^" + pat + "$"), name))
    return routes


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batch-emulator/0.1"
    emu = None
    routes = None

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, obj, ctype="application/json", extra=None):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        # Headers and body in one write: two small segments on a keep-alive
        # connection meet the client's delayed ACK (40 ms per request).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self):
        emu = self.emu
        try:
            body = self._read_body()
        except Exception:
            self.close_connection = True
            return
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        if path.startswith("/__"):
            return self._control(path, split.query, body)
        if path.startswith("/v2/credentials/") and self.command == "GET":
            f = emu.faults.take("Credentials")
            emu.calls.add("Credentials")
            if f and f["action"] == "slow":
                time.sleep(f["delay"])
            elif f and f["action"] in ("drop", "reset"):
                return self._drop()
            elif f:
                return self._send(int(f["status"] or 500), {"code": "ServerError", "message": "injected"})
            status, out = emu.credentials(path[len("/v2/credentials/"):], self.headers.get("Authorization"))
            return self._send(status, out)
        target = self.headers.get("X-Amz-Target")
        if target:
            return self._logs(target, body)
        if path.startswith("/v1/"):
            return self._batch(split, body)
        self._send(404, {"__type": "UnknownOperationException", "message": "no route for %s %s" % (
            self.command, path)})

    def _fault(self, op, svc):
        f = self.emu.faults.take(op)
        if f is None:
            return None
        self.emu.calls.fault(op)
        a = f["action"]
        if a == "slow":
            time.sleep(f["delay"])
            return None
        if a in ("drop", "reset"):
            return f
        if a == "throttle":
            if svc == "batch":
                raise ApiError(int(f["status"] or 429), f["code"] or "TooManyRequestsException",
                               f["message"] or "Too Many Requests.")
            raise ApiError(int(f["status"] or 400), f["code"] or "ThrottlingException",
                           f["message"] or "Rate exceeded")
        if svc == "batch":
            raise ApiError(int(f["status"] or 500), f["code"] or "ServerException",
                           f["message"] or "An internal error occurred (injected)")
        raise ApiError(int(f["status"] or 500), f["code"] or "ServiceUnavailableException",
                       f["message"] or "The service cannot complete the request (injected)")

    def _error(self, e, svc):
        if svc == "batch":
            body = {"__type": e.code, "message": e.message}
            self._send(e.status, body, "application/json", {"x-amzn-ErrorType": e.code})
        else:
            self._send(e.status, {"__type": e.code, "message": e.message}, "application/x-amz-json-1.1")

    def _batch(self, split, body):
        emu = self.emu
        op, params = None, {}
        for method, rx, name in self.routes:
            m = rx.match(split.path)
            if m and method == self.command:
                op, params = name, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
                break
        if op is None:
            return self._error(ApiError(404, "UnknownOperationException", "Unknown operation %s %s" % (
                self.command, split.path)), "batch")
        nids = 0
        if op == "DescribeJobs":
            try:
                nids = len(json.loads(body).get("jobs") or [])
            except Exception:
                pass
        entry = emu.calls.add(op, nids)
        try:
            verify_sigv4(self.command, self.path, self.headers.items(), body, "batch", emu.keys)
            if op not in BATCH_OPS:
                raise client_error("Operation %s is not supported by the emulator" % op)
            f = self._fault(op, "batch")
            if f and f["action"] == "reset":
                entry["status"] = "reset"
                return self._drop()
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(400, "SerializationException", "Malformed JSON request body")
            if not isinstance(payload, dict):
                raise ApiError(400, "SerializationException", "Request body must be a JSON object")
            payload.update(params)
            q = urllib.parse.parse_qs(split.query)
            if op == "UntagResource":
                payload["tagKeys"] = q.get("tagKeys", [])
            emu.batch_model.validate(op, payload)
            if op == "SubmitJob":
                out = emu.SubmitJob(payload, len(body))
            else:
                out = getattr(emu, op)(payload)
            if f and f["action"] == "drop":
                entry["status"] = "dropped"
                return self._drop()
            entry["status"] = 200
            self._send(200, emu.batch_model.prune(op, out))
        except ApiError as e:
            entry["status"] = e.status
            self._error(e, "batch")
        except Exception as e:
            traceback.print_exc()
            entry["status"] = 500
            self._error(ApiError(500, "ServerException", "internal error: %s" % e), "batch")

    def _logs(self, target, body):
        emu = self.emu
        prefix, _, op = target.partition(".")
        if prefix != "Logs_20140328" or op not in emu.logs_model.sm.operation_names:
            return self._error(ApiError(400, "UnknownOperationException", "Unknown target %s" % target), "logs")
        entry = emu.calls.add(op)
        try:
            verify_sigv4(self.command, self.path, self.headers.items(), body, "logs", emu.keys)
            if op not in LOGS_OPS:
                raise logs_error("UnknownOperationException", "Operation %s is not supported by the emulator" % op)
            f = self._fault(op, "logs")
            if f and f["action"] == "reset":
                entry["status"] = "reset"
                return self._drop()
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise logs_error("SerializationException", "Malformed JSON request body")
            relax = ("logGroupName",) if payload.get("logGroupIdentifier") else ()
            try:
                emu.logs_model.validate(op, payload, relax)
            except ApiError as e:
                raise logs_error("InvalidParameterException", e.message)
            out = getattr(emu, op)(payload)
            if f and f["action"] == "drop":
                entry["status"] = "dropped"
                return self._drop()
            entry["status"] = 200
            self._send(200, emu.logs_model.prune(op, out), "application/x-amz-json-1.1")
        except ApiError as e:
            entry["status"] = e.status
            self._error(e, "logs")
        except Exception as e:
            traceback.print_exc()
            entry["status"] = 500
            self._error(ApiError(500, "ServiceUnavailableException", "internal error: %s" % e), "logs")

    def _control(self, path, query, body):
        emu = self.emu
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            return self._send(400, {"error": "bad JSON"})
        m = self.command
        if path == "/__health":
            return self._send(200, {"ok": True})
        if path == "/__faults":
            if m == "POST":
                specs = req if isinstance(req, list) else [req]
                try:
                    ids = [emu.faults.add(s) for s in specs]
                except (ValueError, TypeError) as e:
                    return self._send(400, {"error": str(e)})
                return self._send(200, {"id": ids[0], "ids": ids})
            if m == "DELETE":
                emu.faults.clear()
                return self._send(200, {"ok": True})
            return self._send(200, {"rules": emu.faults.list()})
        if path == "/__calls":
            if m == "DELETE":
                with emu.calls.lock:
                    emu.calls.reset()
                return self._send(200, {"ok": True})
            return self._send(200, emu.calls.snapshot())
        if path == "/__calls/log":
            with emu.calls.lock:
                return self._send(200, list(emu.calls.log))
        if path == "/__config":
            if m == "POST":
                try:
                    emu.configure(req)
                except (ValueError, TypeError, KeyError) as e:
                    return self._send(400, {"error": str(e)})
            return self._send(200, emu.config_dict())
        if path == "/__jobs":
            with emu.lock:
                out = [{"jobId": j.id, "status": j.status, "pid": j.proc.pid if j.proc else None,
                        "exitedAt": j.exited_at, "attempts": len(j.attempts), "workdir": j.workdir}
                       for j in emu.jobs.values()]
            return self._send(200, out)
        self._send(404, {"error": "unknown control path"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser(description="AWS Batch + CloudWatch Logs emulator")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--access-key", default="LBTESTKEY")
    ap.add_argument("--secret-key", default="LBTESTSECRET")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account", default="123456789012")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds spent in each non-final state")
    ap.add_argument("--delays", default="", help="per state: SUBMITTED=0.1,RUNNABLE=1")
    ap.add_argument("--timeout-scale", type=float, default=1.0,
                    help="multiply attemptDurationSeconds (0.02 makes the 60 s minimum 1.2 s)")
    ap.add_argument("--kill-grace", type=float, default=2.0, help="SIGTERM -> SIGKILL delay on TerminateJob")
    ap.add_argument("--queue", action="append", help="NAME[:EC2|FARGATE] (repeatable)")
    ap.add_argument("--clean-env", action="store_true", help="jobs get only PATH from the emulator's environment")
    ap.add_argument("--role-credentials", default=None,
                    help="KEY:SECRET[:TOKEN] handed out by the credentials endpoint (default: fresh per call)")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    env_docker = os.environ.get("LUABATCH_EMULATOR_DOCKER") or None
    ap.add_argument("--docker", nargs="?", const="", default=None if env_docker is None else
                    ("" if env_docker == "1" else env_docker), metavar="SOCKET",
                    help="run jobs as containers of their image (Docker Engine API on SOCKET; "
                         "default DOCKER_HOST)")
    args = ap.parse_args()

    threading.stack_size(512 * 1024)
    emu = Emulator(args)
    if args.role_credentials:
        k, s, *t = args.role_credentials.split(":", 2)
        emu.configure({"role_credentials": {"AccessKeyId": k, "SecretAccessKey": s, "Token": t[0] if t else None}})
    Handler.emu = emu
    Handler.routes = build_routes(emu.batch_model)
    srv = Server((args.host, args.port), Handler)
    emu.port = srv.server_address[1]
    sys.stdout.write("%d\n" % emu.port)
    sys.stdout.flush()

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        emu.shutdown()
        srv.server_close()


if __name__ == "__main__":
    main()
