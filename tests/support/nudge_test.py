"""Helpers for tests that run `nudge` as its own process and talk to it as clients do.

Only the standard library and Debian's python3-websockets are used, so the
tests run with /usr/bin/python3 on a fresh machine after scripts/install-deps.
"""
import asyncio
import json
import os
import re
import urllib.error
import urllib.request
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import websockets

NUDGE = os.environ.get("NUDGE_BIN", "nudge")
SOURCE_DIR = os.environ.get("NUDGE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PIPELINES = os.path.join(SOURCE_DIR, "pipelines")

URL_LINE = re.compile(r"serving the chat at (https?://[^/\s]+)/|listening on (wss?://[^/\s]+)/")
ADMIN_LINE = re.compile(r"admin endpoint listening on (http://[^/\s\"]+)")


# Every client of these tests connects from 127.0.0.1, which the websocket
# source's per-address rates would count as one very busy client. Tests that
# are not about those limits lift them (tests of the limits set their own).
ONE_ADDRESS_LIFTS = ("source.websocket.connection_rate_per_address=0",
                     "source.websocket.sender_rate_limit_per_second=0",
                     "source.websocket.http_request_rate_per_address=0")


def has_websocket_source(pipeline):
    with open(pipeline, encoding="utf-8") as f:
        return "[source.websocket]" in f.read()


class NudgeProcess:
    """A `nudge run` child process; its log is kept for assertions and failures.

    `address_limits`: keep the per-address rate limits (ONE_ADDRESS_LIFTS).
    `prefix`: a command to run nudge under, e.g. ("prlimit", "--nofile=400")."""

    def __init__(self, pipeline, *overrides, env=None, name="nudge", address_limits=False, prefix=()):
        self.name = name
        args = [*prefix, NUDGE, "run", pipeline]
        if not address_limits and has_websocket_source(pipeline):
            overrides = ONE_ADDRESS_LIFTS + tuple(overrides)
        for o in overrides:
            args += ["--set", o]
        self.log_lines = []
        self._url_ready = threading.Event()
        self._started = threading.Event()
        self.base_url = None
        self.admin_url = None
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            admin = ADMIN_LINE.search(line)
            if admin and not self.admin_url:
                self.admin_url = admin.group(1)
            m = URL_LINE.search(line)
            if m and not self.base_url:
                self.base_url = m.group(1) or re.sub(r"^ws", "http", m.group(2))
                self._url_ready.set()
            if "pipeline '" in line and "' started" in line:
                self._started.set()
        self._url_ready.set()
        self._started.set()

    def wait_started(self, timeout=30):
        if not self._started.wait(timeout) or self.proc.poll() is not None:
            raise AssertionError(f"{self.name} did not start:\n" + self.log())
        return self

    @property
    def ws_url(self):
        return re.sub(r"^http", "ws", self.base_url) + "/ws"

    @property
    def address(self):
        """(host, port) of the listener."""
        host, port = self.base_url.split("://", 1)[1].rsplit(":", 1)
        return host.strip("[]"), int(port)

    def log(self):
        return "\n".join(self.log_lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM, then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


class ChatClient:
    """One WebSocket client of the chat protocol, recording what it receives."""

    def __init__(self, url, name):
        self.url = url
        self.name = name
        self.ws = None
        self.messages = []   # message frames delivered live, in arrival order
        self.history = []    # message frames sent from a room's history on joining
        self.acks = {}       # ref -> id
        self.errors = []     # error frames
        self.frames = []     # every frame, in arrival order (presence and ephemeral ones included)
        self._reader = None
        self._waiters = []

    async def connect(self, **kwargs):
        self.ws = await websockets.connect(self.url, max_size=None, ping_interval=None, **kwargs)
        self._reader = asyncio.ensure_future(self._read())
        await self.send({"type": "hello", "name": self.name})
        return self

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                kind = frame.get("type")
                if kind == "message":
                    (self.history if frame.get("history") else self.messages).append(frame)
                elif kind == "ack":
                    self.acks[frame["ref"]] = frame["id"]
                elif kind == "error":
                    self.errors.append(frame)
                for w in list(self._waiters):
                    w()
        except websockets.ConnectionClosed:
            pass

    async def send(self, frame):
        await self.ws.send(json.dumps(frame))

    async def join(self, room):
        await self.send({"type": "join", "room": room})

    async def say(self, room, text, ref):
        await self.send({"type": "send", "room": room, "text": text, "ref": ref})

    async def wait_for(self, predicate, timeout=20, what="condition"):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what}")
            event = asyncio.Event()
            self._waiters.append(event.set)
            try:
                await asyncio.wait_for(event.wait(), max(0.01, min(0.5, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiters.remove(event.set)

    async def close(self):
        if self.ws:
            await self.ws.close()
        if self._reader:
            await asyncio.wait([self._reader], timeout=5)


def temp_dir(test):
    d = tempfile.TemporaryDirectory(prefix="nudge-test-")
    test.addCleanup(d.cleanup)
    return d.name


def main():
    """Runs the calling module's tests and prints a closing 'N passed, N failed' line."""
    import sys
    import __main__
    suite = unittest.defaultTestLoader.loadTestsFromModule(__main__)
    only = [o for o in os.environ.get("NUDGE_E2E_ONLY", "").split(",") if o]
    if only:
        def flatten(s):
            for t in s:
                yield from (flatten(t) if isinstance(t, unittest.TestSuite) else [t])
        suite = unittest.TestSuite(t for t in flatten(suite) if any(o in t.id() for o in only))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)


# ---------------------------------------------------------------- real servers

REPO = os.path.abspath(SOURCE_DIR)
SERVICES = os.path.join(REPO, "scripts", "services")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://nudge:nudge@127.0.0.1:5432/nudge")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
KAFKA_BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")


def service(name, action, check=True):
    """scripts/services/<name> <action>; returns its stdout."""
    out = subprocess.run([os.path.join(SERVICES, name), action], capture_output=True, text=True, timeout=180)
    if check and out.returncode != 0:
        raise AssertionError(f"services/{name} {action} failed:\n{out.stderr}")
    return out.stdout.strip()


def service_running(name):
    return subprocess.run([os.path.join(SERVICES, name), "status"], capture_output=True).returncode == 0


def wait_until(probe, timeout):
    """probe()'s first truthy value within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def admin_get(admin_url, path, method="GET", timeout=5, headers=None):
    """(status, body) of a request to an instance's admin endpoint; `headers` may replace Host."""
    request = urllib.request.Request(admin_url + path, method=method, data=b"" if method == "POST" else None,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


_SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape_metrics(admin_url):
    """GET /metrics, parsed: [((name, {label: value}), value)]."""
    status, body = admin_get(admin_url, "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body}")
    out = []
    for line in body.splitlines():
        m = _SERIES.match(line)
        if not m or line.startswith("#"):
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2) or "")}
        out.append(((m.group(1), labels), float(m.group(3))))
    return out


def wait_ready_state(admin_url, ready, timeout):
    """Polls /readyz until it is (ready=True) 200 or (False) 503; returns the body, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = admin_get(admin_url, "/readyz", timeout=1)
            if (status == 200) == ready:
                return body
        except OSError:
            pass
        time.sleep(0.1)
    return None


def psql(sql):
    """Runs SQL against the test database; rows as lists of strings."""
    out = subprocess.run(["psql", DATABASE_URL, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"psql failed: {out.stderr}")
    return [line.split("\t") for line in out.stdout.splitlines() if line]


MYSQL_URL = os.environ.get("MYSQL_URL", "mysql://nudge:nudge@127.0.0.1:3306/nudge")


def mysql(sql):
    """Runs SQL against the test MySQL/MariaDB database; rows as lists of strings."""
    m = re.match(r"mysql://([^:]+):([^@]+)@([^:/]+):(\d+)/(\w+)", MYSQL_URL)
    user, password, host, port, db = m.groups()
    out = subprocess.run(["mariadb", "-h", host, "-P", port, "-u", user, f"-p{password}", db, "-N", "-B", "-e", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"mariadb failed: {out.stderr}")
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def unique_suffix():
    return f"{os.getpid()}_{int(time.time() * 1000) % 10_000_000}"


# ---------------------------------------------------------------- raw clients
# For clients no WebSocket library would be: one that never reads, never
# answers a ping, trickles its request, or sends bytes that are not UTF-8.

import base64  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402


class RawWebSocket:
    """A WebSocket client on a bare blocking socket (RFC 6455 framing by hand;
    client frames are masked). `status`, `headers` and `body` hold the answer
    to the upgrade; frames are exchanged only after a 101."""

    TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA

    def __init__(self, address, path="/ws", headers=None, rcvbuf=None, mss=None, ssl_context=None, timeout=5,
                 source=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:  # another loopback address (127.0.0.2, ...): another client as per-address limits see it
            self.sock.bind((source, 0))
        # Before connect, so the window and segment size are small from the start.
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        if ssl_context:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=address[0])
        self.buffer = b""
        lines = [f"GET {path} HTTP/1.1", f"Host: {address[0]}:{address[1]}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(),
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if ":" in h)}
        self.body = b""
        if self.status != 101:
            length = int(self.headers.get("content-length", "0"))
            while len(self.buffer) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
            self.body, self.buffer = self.buffer[:length], self.buffer[length:]

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before " + repr(marker))
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read_exactly(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send_frame(self, opcode, payload, fin=True):
        if isinstance(payload, str):
            payload = payload.encode()
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_json(self, frame):
        self.send_frame(self.TEXT, json.dumps(frame))

    def recv_frame(self):
        """(opcode, payload); raises EOFError when the server closed the
        connection, socket.timeout when nothing came in time."""
        b0, b1 = self._read_exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exactly(8))[0]
        return b0 & 0x0F, self._read_exactly(n)

    def recv_json(self, predicate=lambda f: True):
        """The next text frame that satisfies `predicate`, parsed."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == self.TEXT:
                frame = json.loads(payload)
                if predicate(frame):
                    return frame

    def read_until_closed(self, timeout):
        """Reads (never answering pings) until the server ends the connection.
        Returns (frames as (opcode, payload), close code or None, seconds
        waited); close code 'eof' is never returned: None means no close frame."""
        start = time.monotonic()
        frames, code = [], None
        self.sock.settimeout(timeout)
        try:
            while time.monotonic() - start < timeout:
                opcode, payload = self.recv_frame()
                frames.append((opcode, payload))
                if opcode == self.CLOSE and len(payload) >= 2:
                    code = struct.unpack("!H", payload[:2])[0]
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return frames, code, time.monotonic() - start
        except socket.timeout:
            raise AssertionError(f"the server did not close the connection within {timeout} s") from None
        raise AssertionError(f"the server did not close the connection within {timeout} s")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_http(address, request, ssl_context=None, timeout=5):
    """Sends `request` (bytes) and returns everything read until the server closes."""
    sock = socket.create_connection(address, timeout=timeout)
    if ssl_context:
        sock = ssl_context.wrap_socket(sock, server_hostname=address[0])
    try:
        sock.sendall(request)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        sock.close()


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret, claims, alg="HS256", header=None, signature=None):
    """A compact JWS. Signed with HMAC-SHA256 over `secret` unless `signature`
    (bytes) is given, e.g. b"" for an unsigned `alg: none` token."""
    header = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    if signature is None:
        key = secret.encode() if isinstance(secret, str) else secret
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def open_fds(pid):
    """How many file descriptors process `pid` holds (Linux)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid):
    """Process `pid`'s resident set size (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    """User and system CPU time process `pid` has used (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
