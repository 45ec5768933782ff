"""Remote stores for the `rcache-remote-*` modes (and the peers', peer_remote.py): a Redis or an S3
server for the run.

`--remote redis` starts Debian's `redis-server` (no persistence), `--remote s3` starts moto's S3
server (`python3 -m moto.server`, from PyPI: `pip install 'moto[server]'`) and creates a bucket
with a plain HTTP PUT (path style; moto takes any credentials). Each server:
- runs on a free port of 127.0.0.1 (or, with a shaped `--link`, in the link's network namespace
  on its address there: link.py), for this harness run only, and is stopped at its end (also on
  Ctrl-C, an exception, and, through PR_SET_PDEATHSIG, when the harness itself is killed);
- gives the variables that point rcache at it (`env`);
- can be emptied (`empty`: FLUSHALL on Redis, every object under the prefix deleted on S3) and
  sized (`usage`: keys or objects, and bytes).

It is not started with the harness's marker variable: its CPU is not the build's. `cpu` reads it
from /proc, so the harness can report it apart.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import http.client
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import measure

BACKENDS = ("redis", "s3")
BUCKET = "rcache-bench"
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class RemoteError(Exception):
    """A server that cannot be found, started, or talked to."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """In the server's child process: get SIGTERM when the harness dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Server:
    """A server process of our own, on a free port of the link's server address."""

    backend = ""

    def __init__(self, log_dir: Path, env: dict[str, str], link):
        """Remember where its files go, the environment to start it with, and the link (a
        link.Link) whose address it listens on, on whose side it runs (`link.wrap`)."""
        self.log_dir, self.base_env, self.link = log_dir, env, link
        self.host = link.host
        self.port = free_port()  # any port is free in a namespace of the run's own
        self.proc: subprocess.Popen | None = None
        self.log = log_dir / f"{self.backend}-server.log"

    def _spawn(self, cmd: list[str]) -> None:
        """Start the server, then wait (up to 30 s) until it answers."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.link.wrap(cmd), env=self.base_env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RemoteError(f"{cmd[0]} exited {self.proc.returncode} at start; see {self.log}")
            try:
                if self.ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RemoteError(f"{self.backend} server did not answer on port {self.port} "
                                  f"within 30 s; see {self.log}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether the server answers (raises OSError while it does not listen yet)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu(self) -> tuple[float, float]:
        """(user, sys) seconds the server has used so far (0 when it is gone)."""
        if self.proc is None:
            return 0.0, 0.0
        return measure._proc_cpu(self.proc.pid) or (0.0, 0.0)

    def version(self) -> str | None:
        """The server's version, for the JSON record."""
        return None

    def env(self) -> dict[str, str]:
        """The variables that point rcache at this server."""
        raise NotImplementedError

    def empty(self) -> None:
        """Delete everything rcache stored there."""
        raise NotImplementedError

    def usage(self) -> dict:
        """How much is stored: {"objects": n, "bytes": n}."""
        raise NotImplementedError


class Redis(Server):
    """`redis-server` without persistence; spoken to in RESP over a socket (no client needed)."""

    backend = "redis"

    def start(self) -> None:
        """Start redis-server on our port, in memory only."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RemoteError("redis-server not found: install it with `apt-get install redis-server`")
        self.binary = binary
        # Protected mode refuses every client but loopback's when there is no password; behind a
        # link the client is the namespace's only peer, our side of the veth pair.
        protected = "yes" if self.host == "127.0.0.1" else "no"
        self._spawn([binary, "--bind", self.host, "--port", str(self.port), "--save", "",
                     "--appendonly", "no", "--dir", str(self.log_dir), "--daemonize", "no",
                     "--protected-mode", protected])

    def command(self, *args: str) -> bytes | int | None:
        """Send one command and return its reply (simple or bulk string, or integer)."""
        wire = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args)
        with socket.create_connection((self.host, self.port), timeout=60) as sock:
            sock.sendall(wire)
            reader = sock.makefile("rb")
            line = reader.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                return rest
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else reader.read(n + 2)[:n]
            raise RemoteError(f"redis {args[0]}: {line.decode(errors='replace')}")

    def ready(self) -> bool:
        """PING answers PONG."""
        return self.command("PING") == b"PONG"

    def version(self) -> str | None:
        """redis_version from INFO server."""
        info = self.command("INFO", "server") or b""
        for line in info.decode(errors="replace").splitlines():
            if line.startswith("redis_version:"):
                return "redis " + line.split(":", 1)[1].strip()
        return None

    def env(self) -> dict[str, str]:
        """RCACHE_REMOTE=redis://HOST:PORT/0."""
        return {"RCACHE_REMOTE": f"redis://{self.host}:{self.port}/0"}

    def empty(self) -> None:
        """FLUSHALL."""
        self.command("FLUSHALL")

    def usage(self) -> dict:
        """Keys (DBSIZE) and the server's used memory (bytes, INFO memory)."""
        keys = self.command("DBSIZE")
        info = (self.command("INFO", "memory") or b"").decode(errors="replace")
        used = next((int(line.split(":", 1)[1]) for line in info.splitlines()
                     if line.startswith("used_memory:")), None)
        return {"objects": keys, "bytes": used}


class S3(Server):
    """moto's S3 server, a bucket of our own, and rcache's data under one prefix in it."""

    backend = "s3"

    def __init__(self, log_dir: Path, env: dict[str, str], link, prefix: str):
        """The prefix (no slashes around it) rcache writes under, e.g. the run's time stamp."""
        super().__init__(log_dir, env, link)
        self.prefix = prefix.strip("/")

    def start(self) -> None:
        """Start moto's server with this Python, then create the bucket."""
        probe = subprocess.run([sys.executable, "-c", "import moto.server"], capture_output=True,
                               text=True, env=self.base_env)
        if probe.returncode != 0:
            why = (probe.stderr.strip().splitlines() or ["failed"])[-1]
            raise RemoteError(f"moto's S3 server cannot start ({sys.executable} -c 'import "
                              f"moto.server': {why}): install it with `pip install 'moto[server]'`")
        self._spawn([sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)])
        status, body = self.request("PUT", f"/{BUCKET}")
        if status != 200:
            raise RemoteError(f"creating bucket {BUCKET}: HTTP {status} {body[:300]!r}")

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One unsigned HTTP request to the server (moto checks no signature)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def ready(self) -> bool:
        """Any HTTP answer means it listens."""
        self.request("GET", "/")
        return True

    def version(self) -> str | None:
        """moto's version."""
        proc = subprocess.run([sys.executable, "-c", "import moto; print(moto.__version__)"],
                              capture_output=True, text=True)
        return f"moto {proc.stdout.strip()}" if proc.returncode == 0 else None

    def env(self) -> dict[str, str]:
        """s3://bucket/prefix at our endpoint, path style, dummy credentials, no profile."""
        return {"RCACHE_REMOTE": f"s3://{BUCKET}/{self.prefix}",
                "RCACHE_S3_ENDPOINT": f"http://{self.host}:{self.port}",
                "RCACHE_S3_REGION": "us-east-1", "RCACHE_S3_PATH_STYLE": "1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def objects(self) -> list[tuple[str, int]]:
        """(key, size) of every object under the prefix (ListObjectsV2, paged)."""
        found, token = [], None
        while True:
            query = {"list-type": "2", "prefix": self.prefix + "/", "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", f"/{BUCKET}?{urllib.parse.urlencode(query)}")
            if status != 200:
                raise RemoteError(f"listing {BUCKET}: HTTP {status} {body[:300]!r}")
            root = ET.fromstring(body)
            for item in root.iter(f"{S3_NS}Contents"):
                found.append((item.findtext(f"{S3_NS}Key"), int(item.findtext(f"{S3_NS}Size") or 0)))
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if root.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
                return found

    def empty(self) -> None:
        """Delete every object under the prefix (DeleteObjects, 1000 a request), then check."""
        keys = [key for key, _ in self.objects()]
        for i in range(0, len(keys), 1000):
            body = ("<Delete><Quiet>true</Quiet>" + "".join(
                f"<Object><Key>{_xml_escape(k)}</Key></Object>" for k in keys[i:i + 1000])
                + "</Delete>").encode()
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            status, reply = self.request("POST", f"/{BUCKET}?delete", body,
                                         {"Content-MD5": md5, "Content-Type": "application/xml"})
            if status != 200:
                raise RemoteError(f"deleting objects: HTTP {status} {reply[:300]!r}")
        left = len(self.objects())
        if left:
            raise RemoteError(f"s3://{BUCKET}/{self.prefix} still has {left} objects after emptying")

    def usage(self) -> dict:
        """Objects under the prefix and their total size."""
        objects = self.objects()
        return {"objects": len(objects), "bytes": sum(size for _, size in objects)}


def _xml_escape(text: str) -> str:
    """Escape a key for an XML body."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def start(backend: str, log_dir: Path, env: dict[str, str], prefix: str, link) -> Server:
    """Start the server of a backend on the link's server side (a link.Link, already open);
    raises RemoteError with how to install what is missing."""
    server: Server = Redis(log_dir, env, link) if backend == "redis" else \
        S3(log_dir, env, link, prefix)
    server.start()
    return server
