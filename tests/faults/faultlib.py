"""What every fault test does: run the default pipeline (pipelines/chat.toml:
websocket → redis → kafka → postgres) on a few `nudge` instances, keep clients
sending at a steady rate while a fault happens, then check the promises:

  - every sent message got an answer, an ack or an error frame (a message whose
    connection died with its instance is counted apart, as "severed");
  - every acked message is in PostgreSQL exactly once (looked up by id), within
    a stated bound after the fault ended (the catch-up time);
  - every instance is still running, and stops cleanly at the end.

Each test prints one line of counts,
  sent=N acked=N errors=N persisted=N duplicates=0 lost=0
plus the catch-up time and how long the test took.

Servers come from the usual environment (REDIS_URL, KAFKA_BROKERS,
DATABASE_URL) and are stopped, frozen and restarted for real with
scripts/services/<name>: run these tests where nobody else uses the servers
(scripts/test runs them one at a time; by hand, inside `unshare -n` with your
own NUDGE_VAR_DIR).
"""
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import NudgeProcess, psql, service  # noqa: E402

CHAT = os.path.join(nudge_test.PIPELINES, "chat.toml")
SERVICES = ("redis", "kafka", "postgres")
# Twelve rooms, four per pair of clients: the rooms spread over the topic's
# partitions (a room lives in one), so every instance persists some of them.
ROOMS = [f"room{i}" for i in range(12)]
ROOMS_PER_CLIENT = 4
FAULTPROXY = os.environ.get("NUDGE_FAULTPROXY", "nudge-faultproxy")


def servers_up():
    return all(nudge_test.service_running(s) for s in SERVICES)


def needs_servers(cls):
    return unittest.skipUnless(servers_up(), f"needs {', '.join(SERVICES)}: scripts/services/<name> start")(cls)


def server_pid(name):
    """The pid of a service's server process (for SIGSTOP / SIGKILL)."""
    var = os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var"))
    pidfile = {"kafka": "services/kafka/kafka.pid", "redis": "services/redis/redis.pid",
               "postgres": "services/postgres/data/postmaster.pid"}[name]
    with open(os.path.join(var, pidfile)) as f:
        return int(f.readline().strip())


def say(text):
    """One line of the test's report, on stderr with unittest's own lines (so
    they interleave in order), each starting with [fault]."""
    sys.stderr.write(f"[fault] {text}\n")
    sys.stderr.flush()


class FaultTest(unittest.TestCase):
    def setUp(self):
        sys.stderr.write("\n")  # unittest's "test_x ... " has no newline yet


class Stopwatch:
    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self):
        return time.monotonic() - self.t0


# ---------------------------------------------------------------- the clients

class LoadClient:
    """One chat client sending `rate` messages a second to its room, recording
    every send's outcome by ref. When its connection dies (its instance was
    killed) the sends still unanswered are 'severed' (their outcome is unknown
    by the protocol), and it reconnects to whichever instance answers."""

    def __init__(self, load, name, rooms, home, urls):
        self.load = load
        self.name = name
        self.rooms = rooms
        self.home = home  # index of the instance it connects to first
        self.urls = urls  # callable: the instances' ws URLs, own first
        self.ws = None
        self.seq = 0
        self.sent = {}        # ref -> (text, monotonic time sent)
        self.acks = {}        # ref -> id
        self.ack_times = {}   # ref -> monotonic time the ack arrived
        self.errors = {}      # ref -> error frame
        self.severed = set()  # refs unanswered when their connection died
        self.received_at = []  # (message frame, monotonic time received)
        self.connects = 0
        self._reader = None

    async def connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            for url in self.urls():
                try:
                    ws = await asyncio.wait_for(
                        nudge_test.websockets.connect(url, max_size=None, ping_interval=None), 5)
                except (OSError, asyncio.TimeoutError, nudge_test.websockets.WebSocketException):
                    continue
                self.ws = ws
                self.connects += 1
                await ws.send(f'{{"type":"hello","name":"{self.name}"}}')
                for room in self.rooms:
                    await ws.send(f'{{"type":"join","room":"{room}"}}')
                self._reader = asyncio.ensure_future(self._read(ws))
                return
            attempt += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no instance accepted a connection within {timeout} s")
            await asyncio.sleep(min(1.0, 0.1 * attempt))

    async def _read(self, ws):
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ack":
                    self.acks[frame["ref"]] = frame["id"]
                    self.ack_times[frame["ref"]] = time.monotonic()
                elif kind == "error":
                    self.errors[frame.get("ref", "")] = frame
                elif kind == "message":
                    self.received_at.append((frame, time.monotonic()))
        except nudge_test.websockets.ConnectionClosed:
            pass
        finally:
            if self.ws is ws:
                self.ws = None
            for ref in self.sent:
                if ref not in self.acks and ref not in self.errors:
                    self.severed.add(ref)

    def unanswered(self):
        return [r for r in self.sent if r not in self.acks and r not in self.errors and r not in self.severed]

    async def send_one(self):
        if self.ws is None:
            await self.connect()
        self.seq += 1
        ref = f"{self.name}-{self.seq}"
        text = f"{self.load.tag} {self.name} {self.seq}"
        room = self.rooms[self.seq % len(self.rooms)]
        ws = self.ws
        try:
            await ws.send(f'{{"type":"send","room":"{room}","text":"{text}","ref":"{ref}"}}')
        except nudge_test.websockets.ConnectionClosed:
            self.severed.add(ref)
            self.sent[ref] = (text, time.monotonic())
            return
        self.sent[ref] = (text, time.monotonic())

    async def run(self, rate, stop):
        period = 1.0 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            await self.send_one()
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            else:
                next_at = time.monotonic()  # fell behind (a reconnect): don't burst

    async def close(self):
        if self.ws:
            await self.ws.close()
        if self._reader:
            await asyncio.wait([self._reader], timeout=5)


class Load:
    """Clients spread over the instances, each sending at a steady rate."""

    def __init__(self, cluster, clients_per_instance=3, rate=10):
        self.cluster = cluster
        self.tag = f"f{os.getpid()}"
        self.rate = rate
        self.clients = []
        self._stop = asyncio.Event()
        self._tasks = []
        count = len(cluster.instances)
        for i in range(count * clients_per_instance):
            # Clients i..i+count-1 share their rooms and start on different
            # instances, so the fanout is in play.
            home = i % count
            group = i // count
            rooms = [ROOMS[(group * ROOMS_PER_CLIENT + k) % len(ROOMS)] for k in range(ROOMS_PER_CLIENT)]
            self.clients.append(LoadClient(self, f"c{i:02d}", rooms, home,
                                           lambda home=home: cluster.urls(prefer=home)))
        self.started_at = None

    async def start(self):
        for c in self.clients:
            await c.connect()
        self.started_at = time.monotonic()
        self._tasks = [asyncio.ensure_future(c.run(self.rate, self._stop)) for c in self.clients]

    async def stop(self, answer_timeout=45):
        """Stops sending, then waits until every live send is answered."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        deadline = time.monotonic() + answer_timeout
        while any(c.unanswered() for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for c in self.clients:
            await c.close()

    # Totals over every client.
    def sent(self):
        return sum(len(c.sent) for c in self.clients)

    def acked(self):
        return {i: (c, r) for c in self.clients for r, i in c.acks.items()}

    def errors(self):
        return [(c, r, e) for c in self.clients for r, e in c.errors.items()]

    def severed(self):
        return sum(len(c.severed) for c in self.clients)

    def unanswered(self):
        return [(c.name, r) for c in self.clients for r in c.unanswered()]

    def acked_between(self, t0, t1):
        return sum(1 for c in self.clients for r in c.acks if t0 <= c.sent[r][1] < t1)

    def errored_texts(self):
        return {c.sent[r][0] for c, r, _ in self.errors() if r in c.sent}


# ---------------------------------------------------------------- the instances

class Cluster:
    """`nudge run chat.toml` (or `pipeline`) instances sharing a fresh topic, group and table."""

    def __init__(self, test, count=2, overrides=(), env=None, pipeline=CHAT):
        self.pipeline = pipeline
        suffix = nudge_test.unique_suffix()
        self.test = test
        self.table = f"fault_messages_{suffix}"
        self.env = {"NUDGE_RECENT_PREFIX": f"fault:{suffix}:recent:", "NUDGE_TOPIC": f"fault.chat.{suffix}", "NUDGE_GROUP": f"fault-persist-{suffix}",
                    "NUDGE_TABLE": self.table}
        self.env.update(env or {})
        self.overrides = list(overrides)
        self.instances = []
        self.retired = []  # instances killed on purpose
        test.addCleanup(self.cleanup)
        for i in range(count):
            self.start(name=f"nudge{i}")

    def start(self, name=None, overrides=(), env=None, index=None):
        full_env = dict(self.env)
        full_env.update(env or {})
        n = NudgeProcess(self.pipeline, "source.websocket.listen=127.0.0.1:0", *self.overrides, *overrides, env=full_env,
                         name=name or f"nudge{len(self.instances)}")
        if index is None:
            self.instances.append(n)
        else:
            self.instances[index] = n
        n.wait_started(60)
        return n

    def urls(self, prefer=0):
        live = [n for n in self.instances if n.proc.poll() is None and n.base_url]
        if not live:
            return []
        k = prefer % len(self.instances)
        own = self.instances[k]
        ordered = ([own] if own in live else []) + [n for n in live if n is not own]
        return [n.ws_url for n in ordered]

    def kill(self, index):
        n = self.instances[index]
        n.proc.send_signal(signal.SIGKILL)
        n.proc.wait(10)
        self.retired.append(n)
        return n

    def assert_running(self):
        for n in self.instances:
            self.test.assertIsNone(n.proc.poll(), f"{n.name} exited:\n" + "\n".join(n.log_lines[-60:]))

    def stop_all(self):
        """SIGTERM every instance; each must drain and exit 0."""
        for n in self.instances:
            code = n.stop(60)
            self.test.assertEqual(code, 0, f"{n.name} did not stop cleanly:\n" + "\n".join(n.log_lines[-60:]))

    def cleanup(self):
        for n in self.instances + self.retired:
            n.kill()
        if os.environ.get("NUDGE_FAULTS_SHOW_LOGS"):  # by hand: what the instances said
            sys.stderr.write(self.logs())
        # After the verdict read it; it sat unreachable after logs()'s return before.
        try:
            psql(f"DROP TABLE IF EXISTS {self.table}")
        except AssertionError:
            pass

    def logs(self, last=150):
        """Each instance's log: warnings, errors and partition changes, then its last lines."""
        out = []
        for n in self.retired + self.instances:
            notable = [line for line in n.log_lines if " INFO " not in line or "partitions" in line]
            out.append(f"---- {n.name} (exit {n.proc.poll()}): {len(notable)} notable lines\n" +
                       "\n".join(notable[-last:]))
            out.append(f"---- {n.name}: last lines\n" + "\n".join(n.log_lines[-30:]))
        return "\n".join(out) + "\n"

    # ---- the database

    def rows(self):
        """id -> number of rows with that id (the sink may not have made its table yet)."""
        try:
            return {r[0]: int(r[1]) for r in psql(f"SELECT id::text, count(*) FROM {self.table} GROUP BY id")}
        except AssertionError:
            return {}

    def duplicate_ids(self):
        try:
            return [r[0] for r in psql(f"SELECT id::text FROM {self.table} GROUP BY id HAVING count(*) > 1")]
        except AssertionError:
            return []

    def stored_texts(self, texts):
        """Which of `texts` (message bodies) have a row."""
        if not texts:
            return set()
        found = set()
        for r in psql(f"SELECT convert_from(payload, 'UTF8') FROM {self.table} "
                      f"WHERE sender IN ({','.join(repr(t.split(' ')[1]) for t in texts)})"):
            if r[0] in texts:
                found.add(r[0])
        return found

    def wait_persisted(self, ids, timeout):
        """Polls until every id has a row; returns (seconds waited, rows)."""
        sw = Stopwatch()
        while True:
            rows = self.rows()
            if all(i in rows for i in ids) or sw() > timeout:
                return sw(), rows
            time.sleep(0.25)

    def assigned_partitions(self, instance):
        """The partitions an instance holds now, from its log lines."""
        held = set()
        for line in instance.log_lines:
            m = re.search(r"(assigned|revoked|lost) partitions \[([\d, ]*)\]", line)
            if m:
                parts = {int(p) for p in m.group(2).split(",") if p.strip()}
                held = held | parts if m.group(1) == "assigned" else held - parts
        return held


# ---------------------------------------------------------------- the verdict

async def catch_up(cluster, load, heal_at, bound):
    """Seconds from heal_at until the backlog is gone: every message sent before
    the fault ended is answered, and each one acked has its row. Polls while
    the clients keep sending; gives up (returns None) at bound + 30 s."""
    while True:
        pending = [(c, r) for c in load.clients for r, (_, t) in list(c.sent.items())
                   if t < heal_at and r not in c.acks and r not in c.errors and r not in c.severed]
        if not pending:
            want = {c.acks[r] for c in load.clients for r, (_, t) in list(c.sent.items())
                    if t < heal_at and r in c.acks}
            rows = await asyncio.to_thread(cluster.rows)
            if all(i in rows for i in want):
                return time.monotonic() - heal_at
        if time.monotonic() - heal_at > bound + 30:
            return None
        await asyncio.sleep(0.25)


def verdict(test, name, cluster, load, caught_up, catch_up_bound, started, allow_errors=True,
            expect_severed=False):
    """Checks and prints what every fault test promises; returns the counts.

    caught_up: what catch_up() measured (None: never); it must be under catch_up_bound."""
    acked = load.acked()
    errors = load.errors()
    unanswered = load.unanswered()
    test.assertEqual(unanswered, [], f"{name}: sends with neither ack nor error (silence) on a live connection")
    _, rows = cluster.wait_persisted(set(acked), 30)
    lost = [i for i in acked if i not in rows]
    duplicates = cluster.duplicate_ids()
    persisted = sum(1 for i in acked if i in rows)
    errors_persisted = len(cluster.stored_texts(load.errored_texts())) if errors else 0
    codes = collections.Counter(e.get("code") for _, _, e in errors)
    counts = dict(sent=load.sent(), acked=len(acked), errors=len(errors), persisted=persisted,
                  duplicates=len(duplicates), lost=len(lost))
    line = " ".join(f"{k}={v}" for k, v in counts.items())
    extra = f" severed={load.severed()}" if load.severed() or expect_severed else ""
    extra += f" error_codes={dict(codes)}" if codes else ""
    extra += f" errored_but_stored={errors_persisted}" if errors else ""
    say(f"{name}: {line}{extra}")
    shown = f"{caught_up:.1f} s" if caught_up is not None else "never"
    say(f"{name}: caught up {shown} after the fault ended (bound {catch_up_bound} s); "
        f"test took {time.monotonic() - started:.1f} s")
    if lost or caught_up is None:
        say(f"{name}: FAILED; what the instances logged:\n" + cluster.logs())
    test.assertEqual(lost, [], f"{name}: {len(lost)} acked messages never reached PostgreSQL")
    test.assertEqual(duplicates, [], f"{name}: rows written twice")
    test.assertIsNotNone(caught_up, f"{name}: the backlog was never persisted")
    test.assertLess(caught_up, catch_up_bound, f"{name}: no catch-up within {catch_up_bound} s of the fault's end")
    test.assertGreater(len(acked), 0, f"{name}: nothing was acked at all")
    if not allow_errors:
        test.assertEqual(errors, [], f"{name}: senders got errors")
    for _, _, e in errors:
        test.assertIn(e.get("code"), ("unavailable", "timeout"), f"{name}: unexpected error frame {e}")
    if not expect_severed:
        test.assertEqual(load.severed(), 0, f"{name}: connections were dropped")
    cluster.assert_running()
    return counts


def run(coro):
    return asyncio.run(coro)


async def in_thread(fn, *args):
    return await asyncio.to_thread(fn, *args)


def sh(*args, check=True, timeout=120):
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out.stdout
