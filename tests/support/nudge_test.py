"""Helpers for tests that run `nudge` as its own process and talk to it as clients do.

Only the standard library and Debian's python3-websockets are used, so the
tests run with /usr/bin/python3 on a fresh machine after scripts/install-deps.
"""
import asyncio
import json
import os
import re
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

URL_LINE = re.compile(r"serving the chat at (http://[^/\s]+)/|listening on (ws://[^/\s]+)/")


class NudgeProcess:
    """A `nudge run` child process; its log is kept for assertions and failures."""

    def __init__(self, pipeline, *overrides, env=None, name="nudge"):
        self.name = name
        args = [NUDGE, "run", pipeline]
        for o in overrides:
            args += ["--set", o]
        self.log_lines = []
        self._url_ready = threading.Event()
        self._started = threading.Event()
        self.base_url = None
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            m = URL_LINE.search(line)
            if m and not self.base_url:
                self.base_url = m.group(1) or m.group(2).replace("ws://", "http://")
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
        return self.base_url.replace("http://", "ws://") + "/ws"

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
        self.messages = []   # message frames, in arrival order
        self.acks = {}       # ref -> id
        self.errors = []     # error frames
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
                kind = frame.get("type")
                if kind == "message":
                    self.messages.append(frame)
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
