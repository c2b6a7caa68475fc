#!/usr/bin/python3
"""faultproxy.py -- a fault-injecting HTTP/1.1 reverse proxy for the S3 tests.

Standard library only.  One thread per client connection, keep-alive on both
sides (each client connection has its own upstream connection), bodies are
streamed in 64 KiB pieces and never held whole.

    /usr/bin/python3 tests/servers/faultproxy.py --port 0 \
        --upstream http://127.0.0.1:7480 [--rules JSON]

prints the port it listens on as the first line of stdout, then serves until
killed.  Requests are forwarded as they came, Host header included (so a
SigV4 signature made for the proxy's host:port still verifies upstream: the
server checks the Host it receives).  Two changes only: an
"Expect: 100-continue" is answered by the proxy itself and not forwarded,
and nothing else is added.

Control endpoints (the "__" prefix cannot be an S3 bucket name):

  POST   /__fault   body: one rule or a list of rules (JSON); answers
                    {"ids": [...]}
  GET    /__fault   the rules with their remaining counts
  DELETE /__fault   removes all rules
  GET    /__stats   {"requests": n, "fired": n, "connections": n (client
                     connections accepted), "by_rule": {id: n},
                     "log": [{method, target, status, fault, conn, range}, ...]}
                    (conn: a number unique to the client connection; range:
                     the request's Range header, or null)
  DELETE /__stats   resets the counters and the log

A rule:
  {"match": {"method": "PUT", "path_contains": "/key",
             "query_contains": "partNumber=3",
             "header": ["Content-Encoding", "aws-chunked"]},   (all optional, all
                          must hold; header: the named request header contains the text)
   "action": "reset_request_after" | "reset_response_after" | "status" | "stall",
   "bytes": N,            reset_*: after N body bytes forwarded (default 0);
                          stall: after N response body bytes (absent: before
                          the response headers)
   "status": 503, "code": "SlowDown", "message": "...",   (action "status")
   "stall_seconds": S,    (action "stall", default 30; then the connection
                          is closed)
   "skip": K,             let the first K matching requests through untouched
   "times": K}            fire for the next K matching requests (default 1;
                          0 or negative: every time)

A response reset comes 0.2 s after the last byte forwarded, so that the
client has read exactly N bytes when the reset arrives.

The first rule whose match holds and that still has firings left decides.
"status" answers with an S3 XML error body without forwarding (the request
body is read and dropped first).  Resets use SO_LINGER 0 (a TCP RST).
"""
import argparse
import json
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

CHUNK = 65536
RESET_GRACE = 0.2    # seconds between the last response byte and the reset
LOCK = threading.Lock()
RULES = []           # list of dicts (with "id", "left", "skip_left", "fired")
NEXT_ID = [1]
NEXT_CONN = [0]
STATS = {"requests": 0, "fired": 0, "connections": 0, "by_rule": {}, "log": []}
LOG_MAX = 2000
UPSTREAM = ("127.0.0.1", 7480)

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class Reset(Exception):
    """Abort the client connection with a TCP reset."""


class Close(Exception):
    """Close the client connection quietly."""


def add_rules(spec):
    rules = spec if isinstance(spec, list) else [spec]
    ids = []
    with LOCK:
        for r in rules:
            if not isinstance(r, dict) or r.get("action") not in (
                    "reset_request_after", "reset_response_after", "status", "stall"):
                raise ValueError("bad rule: %r" % (r,))
            r = dict(r)
            r["id"] = NEXT_ID[0]
            NEXT_ID[0] += 1
            times = int(r.get("times", 1))
            r["left"] = times if times > 0 else None
            r["skip_left"] = int(r.get("skip", 0))
            r["fired"] = 0
            RULES.append(r)
            ids.append(r["id"])
    return ids


def pick_rule(method, path, query, headers=()):
    """The rule that fires for this request (counted), or None."""
    with LOCK:
        for r in RULES:
            m = r.get("match") or {}
            if m.get("method") and m["method"].upper() != method.upper():
                continue
            if m.get("path_contains") and m["path_contains"] not in path:
                continue
            if m.get("query_contains") and m["query_contains"] not in query:
                continue
            if m.get("header") and m["header"][1] not in (hget(headers, m["header"][0]) or ""):
                continue
            if r["left"] is not None and r["left"] <= 0:
                continue
            if r["skip_left"] > 0:
                r["skip_left"] -= 1
                return None
            if r["left"] is not None:
                r["left"] -= 1
            r["fired"] += 1
            STATS["fired"] += 1
            STATS["by_rule"][str(r["id"])] = r["fired"]
            return dict(r)
    return None


def log_request(method, target, status, fault):
    conn = getattr(threading.current_thread(), "conn_id", None)
    rng = getattr(threading.current_thread(), "req_range", None)
    with LOCK:
        STATS["requests"] += 1
        STATS["log"].append({"method": method, "target": target, "status": status, "fault": fault,
                             "conn": conn, "range": rng})
        if len(STATS["log"]) > LOG_MAX:
            del STATS["log"][: len(STATS["log"]) - LOG_MAX]


def read_head(rfile):
    """Read a request/status line and headers.  Returns (line, [(name, value)])
    or None at a clean EOF before anything arrived."""
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):      # tolerate stray CRLF between messages
        line = rfile.readline(65537)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise Close()
    headers = []
    while True:
        h = rfile.readline(65537)
        if not h:
            raise Close()
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name, value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def hget(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def head_bytes(line, headers):
    return (line + "\r\n" + "".join("%s: %s\r\n" % (k, v) for k, v in headers) + "\r\n").encode("latin-1")


def rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class Budget:
    """Counts body bytes; raises Reset once `limit` bytes went through."""

    def __init__(self, limit):
        self.limit = limit
        self.done = 0

    def room(self, n):
        if self.limit is None:
            return n
        return max(0, min(n, self.limit - self.done))

    def add(self, n):
        self.done += n


def relay_body(rfile, headers, out_write, budget=None, no_body=False, until_close=False,
               on_limit=None):
    """Copy one message body from rfile to out_write (Content-Length, chunked,
    or until EOF).  With a budget: call on_limit() (which raises) once
    budget.limit body bytes were copied."""
    if no_body:
        return

    def copy(data):
        if budget is not None and budget.limit is not None:
            n = budget.room(len(data))
            if n < len(data):
                if n:
                    out_write(data[:n])
                    budget.add(n)
                on_limit()
            budget.add(n)
        out_write(data)
        if budget is not None and budget.limit is not None and budget.done >= budget.limit:
            on_limit()

    if budget is not None and budget.limit == 0:
        on_limit()
    te = (hget(headers, "Transfer-Encoding") or "").lower()
    if "chunked" in te:
        while True:
            line = rfile.readline(65537)
            if not line:
                raise Close()
            out_write(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    t = rfile.readline(65537)
                    if not t:
                        raise Close()
                    out_write(t)
                    if t in (b"\r\n", b"\n"):
                        return
            left = size
            while left > 0:
                data = rfile.read(min(CHUNK, left))
                if not data:
                    raise Close()
                left -= len(data)
                copy(data)
            out_write(rfile.readline(65537))
    cl = hget(headers, "Content-Length")
    if cl is not None:
        left = int(cl)
        while left > 0:
            data = rfile.read1(min(CHUNK, left)) if hasattr(rfile, "read1") else rfile.read(min(CHUNK, left))
            if not data:
                raise Close()
            left -= len(data)
            copy(data)
        return
    if until_close:
        while True:
            data = rfile.read1(CHUNK)
            if not data:
                return
            copy(data)


def xml_error(status, code, message):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>faultproxy</RequestId></Error>' % (code, message)).encode()
    head = ("HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
            "x-amz-request-id: faultproxy\r\n\r\n" % (status, REASONS.get(status, "Error"), len(body)))
    return head.encode() + body


def json_reply(wfile_send, status, obj):
    body = json.dumps(obj).encode()
    wfile_send(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (status, REASONS.get(status, "OK"), len(body))).encode() + body)


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.sock = self.request
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=CHUNK)
        self.up = None
        self.up_rfile = None
        with LOCK:
            STATS["connections"] += 1
            NEXT_CONN[0] += 1
            threading.current_thread().conn_id = NEXT_CONN[0]

    def finish(self):
        self.close_upstream()
        try:
            self.rfile.close()
        except OSError:
            pass

    # -- upstream ---------------------------------------------------------
    def close_upstream(self, reset=False):
        if self.up is not None:
            if reset:
                rst(self.up)
            try:
                self.up_rfile.close()
                self.up.close()
            except OSError:
                pass
        self.up = None
        self.up_rfile = None

    def upstream(self):
        if self.up is not None:
            # A kept-alive upstream connection that became readable while idle
            # was closed by the server: start a new one.
            r, _, _ = select.select([self.up], [], [], 0)
            if r:
                self.close_upstream()
        if self.up is None:
            s = socket.create_connection(UPSTREAM, timeout=300)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.up = s
            self.up_rfile = s.makefile("rb", buffering=CHUNK)
        return self.up

    def send(self, data):
        self.sock.sendall(data)

    # -- main loop --------------------------------------------------------
    def handle(self):
        try:
            while True:
                h = read_head(self.rfile)
                if h is None:
                    return
                if not self.one(*h):
                    return
        except Reset:
            rst(self.sock)
            try:
                self.rfile.close()
                self.sock.close()       # RST now (no FIN from shutdown_request first)
            except OSError:
                pass
        except (Close, OSError, ValueError):
            pass

    def one(self, line, headers):
        parts = line.split(" ")
        if len(parts) != 3:
            raise Close()
        method, target, version = parts
        path, _, query = target.partition("?")
        if path.startswith("/__fault") or path.startswith("/__stats"):
            return self.control(method, path, headers)

        threading.current_thread().req_range = hget(headers, "Range")
        expect = (hget(headers, "Expect") or "").lower() == "100-continue"
        if expect:
            headers = [(k, v) for k, v in headers if k.lower() != "expect"]
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        rule = pick_rule(method, path, query, headers)
        action = rule["action"] if rule else None
        keep = version == "HTTP/1.1" and (hget(headers, "Connection") or "").lower() != "close"

        if action == "status":
            relay_body(self.rfile, headers, lambda d: None)     # drop the body
            status = int(rule.get("status", 503))
            code = rule.get("code") or ("SlowDown" if status == 503 else "InternalError")
            # Counted before the answer leaves: a client that reads /__stats
            # right after its response must already see this request.
            log_request(method, target, status, "status")
            self.send(xml_error(status, code, rule.get("message", "injected by faultproxy")))
            return keep

        # Forward the request.
        try:
            up = self.upstream()
            up.sendall(head_bytes(line, headers))
        except OSError:
            self.close_upstream()
            try:                                  # a stale kept-alive connection: once more
                up = self.upstream()
                up.sendall(head_bytes(line, headers))
            except OSError as e:
                relay_body(self.rfile, headers, lambda d: None)
                log_request(method, target, 502, None)
                self.send(xml_error(502, "BadGateway", "upstream: %s" % e))
                return keep

        def req_limit():
            self.close_upstream(reset=True)
            log_request(method, target, None, "reset_request_after")
            raise Reset()

        budget = Budget(int(rule.get("bytes", 0))) if action == "reset_request_after" else None
        has_body = hget(headers, "Content-Length") is not None or hget(headers, "Transfer-Encoding")
        if budget is not None and not has_body:
            req_limit()
        relay_body(self.rfile, headers, up.sendall, budget=budget, on_limit=req_limit)

        # Relay the response.
        h = read_head(self.up_rfile)
        if h is None:
            self.close_upstream()
            raise Close()
        sline, sheaders = h
        while sline.split(" ")[1:2] and sline.split(" ")[1].startswith("1"):   # interim 1xx
            self.send(head_bytes(sline, sheaders))
            sline, sheaders = read_head(self.up_rfile)
        status = int(sline.split(" ")[1])
        no_body = method == "HEAD" or status in (204, 304)
        up_close = (hget(sheaders, "Connection") or "").lower() == "close"
        until_close = (not no_body and hget(sheaders, "Content-Length") is None
                       and "chunked" not in (hget(sheaders, "Transfer-Encoding") or "").lower())

        stall_before = action == "stall" and rule.get("bytes") is None
        if stall_before:
            self.stall(rule, method, target, status)
        self.send(head_bytes(sline, sheaders))

        def resp_limit():
            if action == "stall":
                self.stall(rule, method, target, status)
            # Let the client read what was sent: a RST makes the kernel drop
            # data still unread in the client's receive buffer.
            time.sleep(RESET_GRACE)
            self.close_upstream(reset=True)
            log_request(method, target, status, "reset_response_after")
            raise Reset()

        budget = None
        if action == "reset_response_after" or (action == "stall" and not stall_before):
            budget = Budget(int(rule.get("bytes", 0)))
        if budget is not None and no_body:
            resp_limit()
        if budget is None:
            # Counted before the last byte reaches the client (see above).
            log_request(method, target, status, None)
        relay_body(self.up_rfile, sheaders, self.send, budget=budget, no_body=no_body,
                   until_close=until_close, on_limit=resp_limit)
        if budget is not None:
            log_request(method, target, status, None)
        if up_close or until_close:
            self.close_upstream()
            return False
        return keep

    def stall(self, rule, method, target, status):
        log_request(method, target, status, "stall")
        # Sleep in small steps; stop early once the client hung up.
        end = time.monotonic() + float(rule.get("stall_seconds", 30))
        while time.monotonic() < end:
            time.sleep(0.1)
            try:
                self.sock.setblocking(False)
                try:
                    d = self.sock.recv(1, socket.MSG_PEEK)
                    if d == b"":
                        break
                except BlockingIOError:
                    pass
                finally:
                    self.sock.setblocking(True)
            except OSError:
                break
        self.close_upstream(reset=True)
        raise Close()

    def control(self, method, path, headers):
        n = int(hget(headers, "Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        try:
            if path.startswith("/__fault"):
                if method == "POST":
                    json_reply(self.send, 200, {"ids": add_rules(json.loads(body or b"null"))})
                elif method == "DELETE":
                    with LOCK:
                        del RULES[:]
                    json_reply(self.send, 200, {"ok": True})
                else:
                    with LOCK:
                        json_reply(self.send, 200, {"rules": [dict(r) for r in RULES]})
            else:
                if method == "DELETE":
                    with LOCK:
                        STATS.update({"requests": 0, "fired": 0, "connections": 0, "by_rule": {}, "log": []})
                    json_reply(self.send, 200, {"ok": True})
                else:
                    with LOCK:
                        json_reply(self.send, 200, json.loads(json.dumps(STATS)))
        except (ValueError, TypeError) as e:
            json_reply(self.send, 400, {"error": str(e)})
        return True


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", default="http://127.0.0.1:7480")
    ap.add_argument("--rules", help="JSON rule or list of rules to start with")
    a = ap.parse_args()
    u = urlsplit(a.upstream)
    if u.scheme != "http" or not u.hostname:
        ap.error("--upstream must be http://host[:port]")
    global UPSTREAM
    UPSTREAM = (u.hostname, u.port or 80)
    if a.rules:
        add_rules(json.loads(a.rules))
    srv = Server(("127.0.0.1", a.port), Handler)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
