"""Batch jobs as Docker containers, for tests/servers/batch_emulator.py --docker.

A small Docker Engine API client (HTTP on the daemon's unix socket, stdlib
only) and ContainerProc, which runs one job attempt as a container and looks
enough like subprocess.Popen for the emulator's attempt loop:

    proc = ContainerProc.start(api, spec)   # create + start; raises StartError
    proc.stdout.readline()                  # the container's stdout+stderr lines
    proc.wait() -> exit code                # then proc.oom_killed (Docker's OOMKilled)
    proc.poll() -> None | exit code
    proc.signal(sig)                        # docker kill -s SIG
    proc.pid                                # the container's init on the host

spec (see container_spec) = the job definition's image, user, vCPU and memory
(NanoCpus, Memory = MemorySwap: no swap, as on Batch), volumes/mountPoints as
binds, the command (Ref:: already substituted) and the environment; the
network is the host's, so the ECS credentials endpoint and the test servers
on 127.0.0.1 are reachable.  The container is removed once waited for.
"""

import http.client
import json
import os
import socket
import threading
import urllib.parse

API = "/v1.41"


class StartError(Exception):
    """The container could not be created or started (message like Batch's reason)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=None):
        super().__init__("docker", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def socket_path(spec):
    """unix:///x/docker.sock | /x/docker.sock | "" (DOCKER_HOST, else the default) -> path."""
    spec = spec or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if spec.startswith("unix://"):
        spec = spec[len("unix://"):]
    if not spec.startswith("/"):
        raise ValueError("--docker: a unix socket path or unix:// URL expected, got %r" % spec)
    return spec


class DockerAPI:
    def __init__(self, path):
        self.path = path

    def call(self, method, path, body=None, query=None, timeout=30, stream=False):
        """-> (status, decoded JSON or text) | (status, response) when stream."""
        url = API + path + ("?" + urllib.parse.urlencode(query) if query else "")
        conn = _UnixConnection(self.path, timeout=timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, url, body=data, headers=headers)
        resp = conn.getresponse()
        if stream:
            return resp.status, resp
        raw = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")

    def ping(self):
        try:
            return self.call("GET", "/_ping", timeout=3)[0] == 200
        except OSError:
            return False


def _message(out):
    if isinstance(out, dict):
        return out.get("message") or json.dumps(out)
    return str(out)


def container_spec(props, command, env, nproc=None):
    """The Engine API create body of a job attempt.  props = the job's
    containerProperties (overrides applied); command = argv; env = {name: value}."""
    vcpus, mib = props.get("vcpus"), props.get("memory")
    for r in props.get("resourceRequirements") or []:
        if r.get("type") == "VCPU":
            vcpus = float(r.get("value"))
        elif r.get("type") == "MEMORY":
            mib = float(r.get("value"))
    host = {"NetworkMode": "host", "Binds": []}
    if vcpus:
        # a machine with fewer cores than asked gives all it has
        host["NanoCpus"] = int(min(float(vcpus), float(nproc or os.cpu_count() or 1)) * 1e9)
    if mib:
        host["Memory"] = host["MemorySwap"] = int(float(mib) * 1024 * 1024)
    vols = {v.get("name"): (v.get("host") or {}).get("sourcePath") for v in props.get("volumes") or []}
    for m in props.get("mountPoints") or []:
        src = vols.get(m.get("sourceVolume"))
        if src and m.get("containerPath"):
            host["Binds"].append("%s:%s%s" % (src, m["containerPath"], ":ro" if m.get("readOnly") else ""))
    body = {"Image": props.get("image", ""), "Cmd": list(command),
            "Env": ["%s=%s" % (k, v) for k, v in env.items()], "HostConfig": host,
            "AttachStdout": True, "AttachStderr": True, "Tty": False}
    if props.get("user"):
        body["User"] = props["user"]
    return body


class ContainerProc:
    def __init__(self, api, cid):
        self.api, self.id = api, cid
        self.returncode = None
        self.oom_killed = False
        self.pid = None
        r, w = os.pipe()
        self.stdout = os.fdopen(r, "rb")
        self._w = w
        self._pump = None

    @classmethod
    def start(cls, api, body, name=None):
        st, out = api.call("POST", "/containers/create", body, {"name": name} if name else None)
        if st == 404:
            raise StartError("CannotPullContainerError: Error response from daemon: %s" % _message(out))
        if st != 201:
            raise StartError("CannotCreateContainerError: Error response from daemon: %s" % _message(out))
        p = cls(api, out["Id"])
        st, out = api.call("POST", "/containers/%s/start" % p.id)
        if st not in (204, 304):
            p.remove()
            p.stdout.close()
            os.close(p._w)
            raise StartError("CannotStartContainerError: Error response from daemon: %s" % _message(out))
        st, info = api.call("GET", "/containers/%s/json" % p.id)
        if st == 200:
            p.pid = (info.get("State") or {}).get("Pid") or None
        p._pump = threading.Thread(target=p._copy_logs, daemon=True)
        p._pump.start()
        return p

    def _copy_logs(self):
        """Demultiplex the followed log stream (8-byte frame headers) into the pipe."""
        try:
            st, resp = self.api.call("GET", "/containers/%s/logs" % self.id,
                                     query={"follow": 1, "stdout": 1, "stderr": 1}, timeout=None, stream=True)
            if st == 200:
                while True:
                    head = resp.read(8)
                    if len(head) < 8:
                        break
                    n = int.from_bytes(head[4:8], "big")
                    data = resp.read(n)
                    if data:
                        os.write(self._w, data)
        except OSError:
            pass
        finally:
            os.close(self._w)

    def wait(self):
        if self.returncode is None:
            st, out = self.api.call("POST", "/containers/%s/wait" % self.id, timeout=None)
            code = out.get("StatusCode", 1) if st == 200 and isinstance(out, dict) else 1
            st, info = self.api.call("GET", "/containers/%s/json" % self.id)
            if st == 200:
                self.oom_killed = bool((info.get("State") or {}).get("OOMKilled"))
            if self._pump is not None:
                self._pump.join(10)
            self.remove()
            self.returncode = code
        return self.returncode

    def poll(self):
        if self.returncode is not None:
            return self.returncode
        st, info = self.api.call("GET", "/containers/%s/json" % self.id)
        if st == 200 and (info.get("State") or {}).get("Running"):
            return None
        return (info.get("State") or {}).get("ExitCode", 1) if st == 200 else 1

    def signal(self, sig):
        try:
            self.api.call("POST", "/containers/%s/kill" % self.id, query={"signal": int(sig)})
        except OSError:
            pass

    def remove(self):
        try:
            self.api.call("DELETE", "/containers/%s" % self.id, query={"force": 1})
        except OSError:
            pass
