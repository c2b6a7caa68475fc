#!/usr/bin/python3
"""httpd.py -- a small HTTP/1.1 test server for the luabatch HTTP engine.

Standard library only.  Keep-alive HTTP/1.1, one thread per connection.

    /usr/bin/python3 tests/servers/httpd.py --port 0 [--tls-cert C --tls-key K]

prints the port it listens on as the first line of stdout, then serves until
killed.  Endpoints (any method unless said otherwise):

  /echo...            JSON {method, path, headers: [[name, value]...], body (text,
                      latin-1), body_len, body_sha256}; answers with two
                      "X-Repeat" headers ("a", "b") and "X-Empty:" empty
  /bytes/N            N deterministic bytes (byte i = i % 251); honours
                      "Range: bytes=a-b" (206 + Content-Range)
  /status/CODE        that status, body "status CODE"
  /slow?delay=S       waits S seconds (float), then 200 "slow"
  /stall?after=N      headers (Content-Length 1000000) + N bytes (default 10),
                      then sends nothing for 60 s
  /drip?n=N&every=S   N bytes, one every S seconds (default 10 bytes, 0.2 s)
  /reset              headers + a few bytes, then a TCP reset (SO_LINGER 0)
  /conn-id            an id unique to this TCP connection
  /drop               reads the body, then hangs up without an answer
  /drops              how many bodies /drop took (text)
  /upload[/NAME]      PUT/POST: stores the body under NAME, answers JSON
                      {sha256, length}; GET: returns the stored body
  /redirect           302 to /echo
  /reject             413 at once, without reading the request body, then
                      closes the connection
  /huge?n=N&status=S  status S (default 200), Content-Length N, N zero bytes
                      streamed in 1 MiB writes (stops when the client hangs up)
  /fat-headers?n=N    200 with N headers of 1000 bytes each, body "ok"
A request body may come with Content-Length or chunked encoding.
"""
import argparse
import hashlib
import itertools
import os
import json
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CONN_IDS = itertools.count(1)
UPLOADS = {}
LOCK = threading.Lock()


def pattern(start, end):
    """Bytes start..end-1 of the deterministic stream (byte i = i % 251)."""
    return bytes(i % 251 for i in range(start, end))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "luabatch-httpd/1"

    def setup(self):
        super().setup()
        with LOCK:
            self.conn_id = next(CONN_IDS)

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- helpers ---------------------------------------------------------
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, code, body=b"", ctype="application/octet-stream", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- dispatch ---------------------------------------------------------
    def handle_any(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        path = url.path
        if path == "/reject":          # answer before reading the body, hang up
            self.close_connection = True
            return self.send(413, b"too large", "text/plain", [("Connection", "close")])
        body = self.read_body()
        if path.startswith("/echo"):
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            return self.send(200, json.dumps(doc).encode(), "application/json",
                             [("X-Repeat", "a"), ("X-Repeat", "b"), ("X-Empty", "")])
        if path.startswith("/bytes/"):
            n = int(path[len("/bytes/"):])
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[len("bytes="):].partition("-")
                a = int(a)
                b = min(int(b) if b else n - 1, n - 1)
                return self.send(206, pattern(a, b + 1), extra=[
                    ("Content-Range", "bytes %d-%d/%d" % (a, b, n))])
            return self.send(200, pattern(0, n))
        if path == "/huge":
            n, code = int(q.get("n", ["0"])[0]), int(q.get("status", ["200"])[0])
            self.close_connection = True
            self.send_response(code)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = bytes(1 << 20)
            try:
                while n > 0:
                    self.wfile.write(chunk[:min(n, len(chunk))])
                    n -= len(chunk)
            except OSError:
                pass
            return None
        if path == "/fat-headers":
            n = int(q.get("n", ["1"])[0])
            return self.send(200, b"ok", "text/plain",
                             [("X-Fat-%d" % i, "v" * 1000) for i in range(n)])
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            return self.send(code, ("status %d" % code).encode(), "text/plain")
        if path == "/slow":
            time.sleep(float(q.get("delay", ["1"])[0]))
            return self.send(200, b"slow", "text/plain")
        if path == "/stall":
            after = int(q.get("after", ["10"])[0])
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(pattern(0, after))
            self.wfile.flush()
            time.sleep(60)
            self.close_connection = True
            return None
        if path == "/drip":
            n = int(q.get("n", ["10"])[0])
            every = float(q.get("every", ["0.2"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for i in range(n):
                self.wfile.write(pattern(i, i + 1))
                self.wfile.flush()
                time.sleep(every)
            return None
        if path == "/reset":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(pattern(0, 100))
            self.wfile.flush()
            time.sleep(0.05)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            os.close(self.connection.detach())   # linger 0: RST, no FIN
            self.close_connection = True
            return None
        if path == "/drop":            # take the body, hang up without an answer
            with LOCK:
                UPLOADS["drops"] = str(int(UPLOADS.get("drops", b"0")) + 1).encode()
            self.close_connection = True
            return None
        if path == "/drops":           # how many bodies /drop took
            with LOCK:
                return self.send(200, UPLOADS.get("drops", b"0"), "text/plain")
        if path == "/conn-id":
            return self.send(200, str(self.conn_id).encode(), "text/plain")
        if path.startswith("/upload"):
            name = path[len("/upload"):].lstrip("/") or "default"
            if self.command in ("PUT", "POST"):
                with LOCK:
                    UPLOADS[name] = body
                doc = {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
                return self.send(200, json.dumps(doc).encode(), "application/json")
            with LOCK:
                data = UPLOADS.get(name)
            if data is None:
                return self.send(404, b"no such upload", "text/plain")
            return self.send(200, data)
        if path == "/redirect":
            return self.send(302, b"", extra=[("Location", "/echo")])
        return self.send(404, b"not found", "text/plain")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hanging up (timeouts and cancellations under test) are
        # expected; anything else is printed.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    srv = Server((args.host, args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    sys.stdout.write("%d\n" % srv.server_address[1])
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
