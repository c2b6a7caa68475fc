#!/usr/bin/python3
"""Mock AWS credential endpoints for the luabatch credential-chain tests.

One threaded HTTP server playing three roles, routed by path:

  ECS container credentials   GET  /ecs/<anything>
      Checks the Authorization header when a token is configured (401 if
      wrong). Answers {AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn}.
  EC2 IMDSv2                  PUT  /latest/api/token  (needs the
      X-aws-ec2-metadata-token-ttl-seconds header, else 400)
                              GET  /latest/meta-data/iam/security-credentials/[<role>]
      GETs without a valid X-aws-ec2-metadata-token header get 401.
  STS (query protocol)        POST /  Action=AssumeRoleWithWebIdentity | AssumeRole
      XML answers in the real AWS shape; an ErrorResponse for a bad web
      identity token (InvalidIdentityToken) or an unsigned AssumeRole.

Test controls (JSON):
  POST /_control/config   {"expires_in": s, "slow": s, "fail_status": 500,
                           "fail_times": n (-1 = always), "ecs_token": str|null,
                           "web_token": str, "role": str, "access_key": str}
  POST /_control/reset    counters and config back to defaults
  GET  /_control/counts   {"ecs": n, "imds_token": n, "imds_role": n,
                           "imds_creds": n, "sts": n, "issued": n}
  GET  /_control/last     headers and form of the last credential request

Every issued credential set is new (ASIA<KIND><n>), so a refresh is visible.

Usage: metadata.py [--port 0] [--host 127.0.0.1]; prints the port on the first
stdout line, then serves until killed.
"""

import argparse
import json
import secrets
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"

DEFAULTS = {
    "expires_in": 3600,
    "slow": 0.0,
    "fail_status": 0,
    "fail_times": 0,
    "ecs_token": None,
    "web_token": "good-web-identity-token",
    "role": "luabatch-test-role",
    "access_key": None,
}

LOCK = threading.Lock()
STATE = {"config": dict(DEFAULTS), "counts": {}, "issued": 0, "imds_tokens": {}, "last": {}}


def reset():
    STATE["config"] = dict(DEFAULTS)
    STATE["counts"] = {"ecs": 0, "imds_token": 0, "imds_role": 0, "imds_creds": 0, "sts": 0}
    STATE["issued"] = 0
    STATE["imds_tokens"] = {}
    STATE["last"] = {}


reset()


def iso(t):
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue(kind):
    """A fresh credential set; returns dict with the raw values."""
    with LOCK:
        STATE["issued"] += 1
        n = STATE["issued"]
        cfg = STATE["config"]
        expires = time.time() + float(cfg["expires_in"])
    return {
        "AccessKeyId": "ASIA%s%04d" % (kind.upper(), n),
        "SecretAccessKey": "secret%04d%s" % (n, secrets.token_hex(12)),
        "Token": "token%04d%s" % (n, secrets.token_hex(16)),
        "Expiration": iso(expires),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "luabatch-metadata/0.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- plumbing --------------------------------------------------------
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype="application/json", extra=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _count(self, key):
        with LOCK:
            STATE["counts"][key] = STATE["counts"].get(key, 0) + 1

    def _faults(self):
        """Apply slow and failure modes; returns True when a failure was sent."""
        with LOCK:
            cfg = STATE["config"]
            slow = float(cfg["slow"])
            fail = 0
            if cfg["fail_status"] and cfg["fail_times"] != 0:
                fail = int(cfg["fail_status"])
                if cfg["fail_times"] > 0:
                    cfg["fail_times"] -= 1
        if slow:
            time.sleep(slow)
        if fail:
            self._send(fail, {"code": "InjectedFault", "message": "injected HTTP %d" % fail})
            return True
        return False

    def _remember(self, form=None):
        with LOCK:
            STATE["last"] = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "form": form or {},
            }

    # -- controls --------------------------------------------------------
    def _control(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_control/config" and self.command == "POST":
            upd = json.loads(self._body() or b"{}")
            with LOCK:
                for k, v in upd.items():
                    if k not in DEFAULTS:
                        return self._send(400, {"error": "unknown key " + k})
                    STATE["config"][k] = v
                cfg = dict(STATE["config"])
            return self._send(200, cfg)
        if path == "/_control/reset" and self.command == "POST":
            self._body()
            with LOCK:
                reset()
            return self._send(200, {"ok": True})
        if path == "/_control/counts":
            with LOCK:
                c = dict(STATE["counts"])
                c["issued"] = STATE["issued"]
            return self._send(200, c)
        if path == "/_control/last":
            with LOCK:
                return self._send(200, STATE["last"])
        return self._send(404, {"error": "no such control"})

    # -- ECS ---------------------------------------------------------------
    def _ecs(self):
        self._count("ecs")
        self._remember()
        with LOCK:
            want = STATE["config"]["ecs_token"]
        if want is not None and self.headers.get("Authorization") != want:
            return self._send(401, {"code": "AccessDenied", "message": "bad authorization token"})
        if self._faults():
            return
        c = issue("ecs")
        c["RoleArn"] = "arn:aws:iam::123456789012:role/" + STATE["config"]["role"]
        return self._send(200, c)

    # -- IMDSv2 --------------------------------------------------------------
    def _imds_token(self):
        self._count("imds_token")
        self._body()
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not ttl or not ttl.isdigit() or not (1 <= int(ttl) <= 21600):
            return self._send(400, "", "text/plain")
        if self._faults():
            return
        tok = secrets.token_urlsafe(24)
        with LOCK:
            STATE["imds_tokens"][tok] = time.time() + int(ttl)
        return self._send(200, tok, "text/plain",
                          {"X-aws-ec2-metadata-token-ttl-seconds": ttl})

    def _imds_valid(self):
        tok = self.headers.get("X-aws-ec2-metadata-token")
        with LOCK:
            exp = STATE["imds_tokens"].get(tok or "")
        return exp is not None and exp > time.time()

    def _imds_get(self, path):
        prefix = "/latest/meta-data/iam/security-credentials/"
        role = path[len(prefix):]
        self._count("imds_creds" if role else "imds_role")
        self._remember()
        if not self._imds_valid():
            return self._send(401, "", "text/plain")
        if self._faults():
            return
        with LOCK:
            want = STATE["config"]["role"]
        if not role:
            return self._send(200, want, "text/plain")
        if role != want:
            return self._send(404, "", "text/plain")
        c = issue("imds")
        doc = {"Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC"}
        doc.update(c)
        return self._send(200, doc, "text/plain")

    # -- STS -------------------------------------------------------------------
    def _sts_error(self, status, code, message, typ="Sender"):
        body = ('<ErrorResponse xmlns="%s">\n  <Error>\n    <Type>%s</Type>\n    <Code>%s</Code>\n'
                '    <Message>%s</Message>\n  </Error>\n  <RequestId>%s</RequestId>\n</ErrorResponse>\n'
                % (STS_NS, typ, code, escape(message), secrets.token_hex(8)))
        return self._send(status, body, "text/xml")

    def _sts(self):
        self._count("sts")
        raw = self._body().decode()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        self._remember({k: v for k, v in form.items() if k != "WebIdentityToken"})
        if self._faults():
            return
        action = form.get("Action")
        if form.get("Version") != "2011-06-15":
            return self._sts_error(400, "InvalidAction", "missing or bad Version")
        for need in ("RoleArn", "RoleSessionName"):
            if not form.get(need):
                return self._sts_error(400, "MissingParameter",
                                       "The request must contain the parameter " + need)
        if action == "AssumeRoleWithWebIdentity":
            with LOCK:
                good = STATE["config"]["web_token"]
            if form.get("WebIdentityToken") != good:
                return self._sts_error(400, "InvalidIdentityToken",
                                       "Couldn't retrieve verification key from your identity provider")
            subject = ("    <SubjectFromWebIdentityToken>system:serviceaccount:default:test"
                       "</SubjectFromWebIdentityToken>\n    <Audience>sts.amazonaws.com</Audience>\n"
                       "    <Provider>oidc.example.com</Provider>\n")
        elif action == "AssumeRole":
            auth = self.headers.get("Authorization") or ""
            with LOCK:
                want_ak = STATE["config"]["access_key"]
            if not auth.startswith("AWS4-HMAC-SHA256 Credential=") or not self.headers.get("X-Amz-Date"):
                return self._sts_error(403, "MissingAuthenticationToken",
                                       "Request is missing Authentication Token")
            if want_ak and ("Credential=%s/" % want_ak) not in auth:
                return self._sts_error(403, "InvalidClientTokenId",
                                       "The security token included in the request is invalid.")
            subject = ""
        else:
            return self._sts_error(400, "InvalidAction", "Could not find operation %s" % action)
        c = issue("sts")
        session = form["RoleSessionName"]
        role_name = form["RoleArn"].rsplit("/", 1)[-1]
        body = ('<{a}Response xmlns="{ns}">\n  <{a}Result>\n{subject}'
                '    <AssumedRoleUser>\n      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:{s}</AssumedRoleId>\n'
                '      <Arn>arn:aws:sts::123456789012:assumed-role/{r}/{s}</Arn>\n    </AssumedRoleUser>\n'
                '    <Credentials>\n      <AccessKeyId>{ak}</AccessKeyId>\n'
                '      <SecretAccessKey>{sk}</SecretAccessKey>\n      <SessionToken>{tk}</SessionToken>\n'
                '      <Expiration>{exp}</Expiration>\n    </Credentials>\n  </{a}Result>\n'
                '  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n'
                '</{a}Response>\n').format(
                    a=action, ns=STS_NS, subject=subject, s=escape(session), r=escape(role_name),
                    ak=c["AccessKeyId"], sk=c["SecretAccessKey"], tk=c["Token"],
                    exp=c["Expiration"], rid=secrets.token_hex(8))
        return self._send(200, body, "text/xml")

    # -- dispatch --------------------------------------------------------------
    def _dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_control/"):
            return self._control()
        if path.startswith("/ecs/") and self.command == "GET":
            return self._ecs()
        if path == "/latest/api/token":
            if self.command != "PUT":
                return self._send(405, "", "text/plain")
            return self._imds_token()
        if path.startswith("/latest/meta-data/iam/security-credentials/") and self.command == "GET":
            return self._imds_get(path)
        if path == "/" and self.command == "POST":
            return self._sts()
        self._body()
        return self._send(404, {"error": "not found: %s %s" % (self.command, path)})

    do_GET = _dispatch
    do_PUT = _dispatch
    do_POST = _dispatch
    do_HEAD = _dispatch


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that timed out on purpose (slow mode) closes its end.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = Server((args.host, args.port), Handler)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    sys.exit(main())
