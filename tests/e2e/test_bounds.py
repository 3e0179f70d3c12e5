"""End to end: every resource a client can make the server hold has a bound
(docs/guarantees.md, "Bounds"). `nudge run pipelines/chat-embedded.toml` as its
own process; each test drives a hostile client from 127.0.0.1 at one bound,
and asserts the server's RSS and open file descriptors stay under a stated
budget while an honest client — from 127.0.0.2, another address to the
per-address limits — in the same room keeps getting its messages.

The figures each test measured are printed (`bounds: ...`)."""
import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import RawWebSocket  # noqa: E402

PIPELINE = os.path.join(nudge_test.PIPELINES, "chat-embedded.toml")
HONEST = "127.0.0.2"
MB = 1024 * 1024
# Under a sanitizer the allocator keeps freed memory (quarantine, shadow):
# RSS says nothing about the server's own bounds there, so it is printed, not
# asserted; descriptors and everything else still are.
SANITIZED = any(os.environ.get(v) for v in ("ASAN_OPTIONS", "TSAN_OPTIONS"))
# Settings that let a test's own client fill a room fast (they are not what is tested).
FAST_FILL = ("source.websocket.rate_limit_per_second=0", "source.websocket.sender_rate_limit_per_second=0",
             "source.websocket.connection_rate_per_address=0")


def start(test, *overrides, prefix=()):
    db = os.path.join(nudge_test.temp_dir(test), "chat.db")
    n = nudge_test.NudgeProcess(PIPELINE, "source.websocket.listen=127.0.0.1:0", f"sink.sqlite.path={db}",
                                "admin.listen=127.0.0.1:0", *overrides, address_limits=True, prefix=prefix)
    test.addCleanup(n.kill)
    n.wait_started()
    return n


class Honest:
    """A client from another address that sends a message every 100 ms in
    `room` on a thread of its own and counts what comes back."""

    def __init__(self, nudge, room, interval=0.1):
        self.nudge, self.room, self.interval = nudge, room, interval
        self.sent = self.acked = self.received = 0
        self.failure = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError(f"the honest client could not connect: {self.failure}")

    async def _run(self):
        try:
            c = await nudge_test.ChatClient(self.nudge.ws_url, "honest").connect(local_addr=(HONEST, 0))
            await c.join(self.room)
            self._ready.set()
            while not self._stop.is_set():
                self.sent += 1
                await c.say(self.room, f"still here {self.sent}", f"h{self.sent}")
                await asyncio.sleep(self.interval)
                self.acked = len(c.acks)
                self.received = sum(1 for m in c.messages if m.get("sender") == "honest")
            await c.wait_for(lambda: len(c.acks) >= self.sent, timeout=30, what="the last acks")
            await c.wait_for(lambda: sum(1 for m in c.messages if m.get("sender") == "honest") >= self.sent,
                             timeout=30, what="the last deliveries")
            self.acked = len(c.acks)
            self.received = sum(1 for m in c.messages if m.get("sender") == "honest")
            await c.close()
        except Exception as e:  # noqa: BLE001 — reported by stop()
            self.failure = e
            self._ready.set()

    def stop(self, test):
        """Stops (once it has sent a few, so it overlapped the attack) and
        asserts every message was acked and came back."""
        deadline = time.monotonic() + 10
        while self.sent < 6 and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(20)
        test.assertIsNone(self.failure, "the honest client failed")
        test.assertGreater(self.sent, 5)
        test.assertEqual(self.acked, self.sent, "every message of the honest client is acked")
        test.assertEqual(self.received, self.sent, "and delivered back to it")
        return self.sent


class Footprint:
    """The server's RSS and open descriptors before an attack, and the most
    seen while it runs (sampled every 50 ms on a thread)."""

    def __init__(self, nudge):
        self.pid = nudge.proc.pid
        self.rss0, self.fds0 = nudge_test.rss_bytes(self.pid), nudge_test.open_fds(self.pid)
        self.rss_peak, self.fds_peak = self.rss0, self.fds0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(0.05):
            try:
                self.rss_peak = max(self.rss_peak, nudge_test.rss_bytes(self.pid))
                self.fds_peak = max(self.fds_peak, nudge_test.open_fds(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self

    def assert_within(self, test, rss_budget, fds_budget, what):
        self.stop()
        grew = self.rss_peak - self.rss0
        print(f"bounds: {what}: RSS {self.rss0 / MB:.0f} -> peak {self.rss_peak / MB:.0f} MB (+{grew / MB:.1f}, "
              f"budget {rss_budget / MB:.0f}); descriptors {self.fds0} -> peak {self.fds_peak} "
              f"(+{self.fds_peak - self.fds0}, budget {fds_budget})")
        if not SANITIZED:
            test.assertLessEqual(grew, rss_budget, f"{what}: RSS grew past its budget")
        test.assertLessEqual(self.fds_peak - self.fds0, fds_budget, f"{what}: descriptors grew past their budget")


def fill_room(nudge, room, count, size):
    """Sends `count` messages of `size` bytes to `room`; returns their ids, oldest first."""
    async def run():
        c = await nudge_test.ChatClient(nudge.ws_url, "filler").connect()
        await c.join(room)
        # It reads its own messages back as it sends: a window of 4 MiB in flight.
        window = max(1, min(200, 4 * MB // size))
        for i in range(count):
            await c.say(room, f"{i}:" + "x" * max(0, size - 8), f"f{i}")
            if i % window == window - 1:
                await c.wait_for(lambda: len(c.acks) >= i + 1, timeout=60, what="acks while filling")
        await c.wait_for(lambda: len(c.acks) >= count, timeout=60, what="every ack")
        ids = [c.acks[f"f{i}"] for i in range(count)]
        await c.close()
        return ids
    return asyncio.run(run())


def metric(nudge, name):
    text = nudge_test.admin_get(nudge.admin_url, "/metrics")[1]
    m = re.search(r"^" + re.escape(name) + r"(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


# ------------------------------------------------------------------ tests

class PingFloodTest(unittest.TestCase):
    def test_pings_that_are_never_read_hold_one_pong(self):
        # Found from outside: 12 MB -> 4.4 GB in 10 s. The rate limit would end
        # this connection at once; here it is off, so the queue's bound is what holds.
        n = start(self, "source.websocket.rate_limit_per_second=0", "source.websocket.sender_rate_limit_per_second=0")
        honest = Honest(n, "general")
        footprint = Footprint(n)
        ws = RawWebSocket(n.address, rcvbuf=4096)
        pings = bytes([0x89, 0x80, 1, 2, 3, 4]) * 1000  # empty masked pings
        sent, pending, deadline = 0, b"", time.monotonic() + 5
        ws.sock.setblocking(False)
        while time.monotonic() < deadline:
            if not pending:
                pending, sent = pings, sent + 1000
            try:
                pending = pending[ws.sock.send(pending):]
            except BlockingIOError:
                time.sleep(0.001)
        footprint.assert_within(self, 16 * MB, 4, f"{sent} pings in 5 s, never read")
        honest.stop(self)
        ws.sock.close()


class SocketIoCatchUpWithoutPollingTest(unittest.TestCase):
    def test_a_session_that_asks_for_history_and_never_polls_holds_half_a_queue(self):
        # Found from outside: SIGSEGV within seconds (the catch-up state freed mid-page).
        n = start(self, *FAST_FILL, "fanout.memory.recent_messages=0")
        ids = fill_room(n, "busy", 1300, 200)
        honest = Honest(n, "busy")
        footprint = Footprint(n)
        base = n.base_url + "/socket.io/?EIO=4&transport=polling"
        sessions = []
        for _ in range(20):
            sid = json.loads(urllib.request.urlopen(base).read().decode()[1:])["sid"]
            body = ("40" + json.dumps({"room": "busy", "after": ids[0]})).encode()
            urllib.request.urlopen(urllib.request.Request(base + "&sid=" + sid, data=body, method="POST")).read()
            sessions.append(sid)
        time.sleep(3)
        self.assertIsNone(n.proc.poll(), "the server is alive")
        footprint.assert_within(self, 24 * MB, 8, "20 Socket.IO sessions catching up on 1300 messages, never polling")
        honest.stop(self)
        # One of them polls after all: it gets all 1299, in order.
        filled, got, deadline = set(ids), [], time.monotonic() + 20
        while len(got) < 1299 and time.monotonic() < deadline:
            body = urllib.request.urlopen(base + "&sid=" + sessions[0], timeout=30).read().decode()
            for packet in body.split("\x1e"):
                if packet.startswith('42["message"'):
                    got.append(json.loads(json.loads(packet[2:])[1])["id"])
        # The honest client's live messages follow history; the room's past comes first, whole.
        self.assertEqual([i for i in got if i in filled], ids[1:])


class UpgradesPerSessionTest(unittest.TestCase):
    def test_one_session_takes_one_websocket(self):
        # Found from outside: twelve upgrades with one sid, all kept.
        n = start(self)
        footprint = Footprint(n)
        base = n.base_url + "/socket.io/?EIO=4&transport=polling"
        sid = json.loads(urllib.request.urlopen(base).read().decode()[1:])["sid"]
        # All twelve kept open, as the attack did.
        upgrades = [RawWebSocket(n.address, path=f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
                    for _ in range(12)]
        statuses = [u.status for u in upgrades]
        self.assertEqual(statuses.count(101), 1)
        self.assertEqual(statuses.count(400), 11)
        time.sleep(0.3)
        footprint.assert_within(self, 8 * MB, 3, "12 upgrades of one Socket.IO session, all kept open")
        for u in upgrades:
            u.sock.close()


class ForwardedForLinesTest(unittest.TestCase):
    def test_a_clients_own_forwarded_for_line_does_not_name_it(self):
        # Found from outside: behind HAProxy, which appends an X-Forwarded-For
        # line of its own, the client's first line was read: one client
        # rotated it past max_connections_per_address and named its victim.
        n = start(self, "source.websocket.trusted_proxies=[\"127.0.0.1\"]",
                  "source.websocket.max_connections_per_address=10")

        def through_proxy(own_line, client):
            # Two lines, as the proxy forwards them: the client's, then its own.
            return RawWebSocket(n.address, headers={"X-Forwarded-For": own_line, "x-forwarded-for": client})

        held = [through_proxy(f"198.51.100.{i}", "203.0.113.9") for i in range(30)]
        statuses = [ws.status for ws in held]
        self.assertEqual(statuses.count(101), 10, "the per-address limit counts the proxy's line: " + str(statuses))
        self.assertEqual(statuses.count(503), 20)
        victim = through_proxy("203.0.113.9", "203.0.113.77")
        self.assertEqual(victim.status, 101, "a client naming another in its own line takes nothing of the other's")
        print(f"bounds: 30 upgrades, each with its own rotating X-Forwarded-For line and the proxy's: "
              f"{statuses.count(101)} accepted; the address they named got 101", file=sys.stderr)
        for ws in held + [victim]:
            ws.sock.close()


class JoinFloodTest(unittest.TestCase):
    def test_one_connection_joins_at_most_max_rooms_per_connection(self):
        # Found from outside: 3000 joins on one connection, all accepted.
        n = start(self, "source.websocket.rate_limit_per_second=0", "source.websocket.sender_rate_limit_per_second=0",
                  "source.websocket.max_send_queue=10000")
        honest = Honest(n, "general")
        footprint = Footprint(n)
        ws = RawWebSocket(n.address)
        for i in range(3000):
            ws.send_json({"type": "join", "room": f"flood-{i}"})
        refused = 0
        while refused < 2900:
            frame = ws.recv_json(lambda f: f.get("type") == "error")
            refused += frame.get("code") == "too_many_rooms"
        rooms = metric(n, "nudge_source_websocket_rooms")
        self.assertLessEqual(rooms, 101, "the attacker's 100 rooms and the honest client's")
        footprint.assert_within(self, 16 * MB, 2, "3000 joins on one connection")
        honest.stop(self)
        ws.sock.close()


class HalfOpenConnectionsTest(unittest.TestCase):
    def test_connections_count_against_their_address_from_accept(self):
        # Found from outside: ~20,000 sockets each sending half a request line
        # filled every descriptor; accept then spun at 100% CPU.
        n = start(self, "source.websocket.max_sockets_per_address=200",
                  "source.websocket.connection_rate_per_address=0")
        honest = Honest(n, "general")
        footprint = Footprint(n)
        socks = []
        for _ in range(2000):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect_ex(n.address)
                socks.append(s)
            except OSError:
                s.close()
        time.sleep(0.5)
        for s in socks:
            try:
                s.send(b"GET /ws HTTP/1.1\r\n")
            except OSError:
                pass
        time.sleep(1)
        refused = metric(n, "nudge_source_websocket_sockets_refused_total")
        self.assertGreaterEqual(refused, 1700)
        footprint.assert_within(self, 16 * MB, 210, "2000 half-open connections from one address")
        honest.stop(self)
        for s in socks:
            s.close()


class OutOfDescriptorsTest(unittest.TestCase):
    def test_running_out_of_descriptors_neither_spins_nor_stays_down(self):
        # The process may open 400 files; max_sockets is set past that, so accepts fail.
        n = start(self, "source.websocket.max_sockets=5000", "source.websocket.max_sockets_per_address=0",
                  "source.websocket.connection_rate_per_address=0", prefix=("prlimit", "--nofile=400"))
        socks = []
        for _ in range(700):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(n.address)
            socks.append(s)
        time.sleep(1)
        cpu0 = nudge_test.cpu_seconds(n.proc.pid)
        time.sleep(3)
        cpu = nudge_test.cpu_seconds(n.proc.pid) - cpu0
        for s in socks:
            s.close()
        time.sleep(0.5)
        failures = metric(n, "nudge_source_websocket_accept_failures_total")  # the admin endpoint needs a descriptor too
        print(f"bounds: 700 connections against 400 descriptors: {failures:.0f} accepts failed, "
              f"{cpu:.2f} s of CPU in 3 s while out of descriptors")
        self.assertGreater(failures, 0, "the limit was reached")
        self.assertLess(cpu, 0.6, "accepting pauses instead of spinning on EMFILE")
        honest = Honest(n, "general")  # the server takes clients again
        time.sleep(0.5)
        honest.stop(self)


class WindowGrowthTest(unittest.TestCase):
    def test_fresh_rooms_do_not_grow_the_recent_window_past_its_bytes(self):
        # Found from outside: 400 fresh rooms x 15 messages of 60 KB took RSS
        # from 35 MB to 414 MB, and it stayed.
        n = start(self, *FAST_FILL, "fanout.memory.recent_max_bytes=16777216")
        honest = Honest(n, "general")
        footprint = Footprint(n)

        async def run():
            c = await nudge_test.ChatClient(n.ws_url, "rooms").connect()
            text = "x" * (60 * 1024)
            sent = 0
            for r in range(0, 200, 50):
                rooms = [f"fresh-{r + k}" for k in range(50)]
                for room in rooms:
                    await c.join(room)
                for room in rooms:
                    for i in range(15):
                        sent += 1
                        await c.say(room, text, f"{room}-{i}")
                    await c.wait_for(lambda: len(c.acks) >= sent, timeout=60, what="acks")
                for room in rooms:
                    await c.send({"type": "leave", "room": room})
            await c.close()
            return sent
        sent = asyncio.run(run())
        time.sleep(1)
        footprint.assert_within(self, 80 * MB, 8, f"200 fresh rooms x 15 x 60 KB ({sent * 60 // 1024} MB) with a 16 MiB window")
        honest.stop(self)


class CatchUpOverWebSocketTest(unittest.TestCase):
    def test_clients_catching_up_without_reading_hold_the_history_budget(self):
        # Found from outside: 20 connections catching up on 3000 x 60 KB took
        # 486 MB -> 2.1 GB in 5 s; 1.0 GB stayed with none open.
        n = start(self, *FAST_FILL, "fanout.memory.recent_messages=0")
        ids = fill_room(n, "big", 1000, 60 * 1024)
        honest = Honest(n, "big")
        footprint = Footprint(n)
        clients = []
        for _ in range(20):
            ws = RawWebSocket(n.address, rcvbuf=4096)
            ws.send_json({"type": "join", "room": "big", "after": ids[0]})
            clients.append(ws)
        time.sleep(5)
        # history_buffer_bytes (64 MiB) + 20 queues at half of max_send_queue_bytes (2 MiB) + the sink's reads.
        footprint.assert_within(self, 160 * MB, 22, "20 clients catching up on 1000 x 60 KB, never reading")
        for ws in clients:
            ws.sock.close()
        time.sleep(1)
        after = nudge_test.rss_bytes(n.proc.pid)
        print(f"bounds: RSS with them gone: {after / MB:.0f} MB (before {footprint.rss0 / MB:.0f})")
        if not SANITIZED:
            self.assertLessEqual(after - footprint.rss0, 160 * MB)
        honest.stop(self)


class RateAcrossReconnectsTest(unittest.TestCase):
    def test_closing_and_reopening_earns_no_messages(self):
        # Found from outside: 6,940 connections and 104,100 accepted messages in 10 s from one address.
        n = start(self, "source.websocket.sender_rate_limit_per_second=10", "source.websocket.sender_rate_limit_burst=20")
        honest = Honest(n, "general", interval=0.25)

        async def run():
            accepted = connections = 0
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    c = await nudge_test.ChatClient(n.ws_url, "churn").connect()
                except Exception:  # noqa: BLE001 — refused at accept: the connection rate
                    await asyncio.sleep(0.01)
                    continue
                connections += 1
                await c.join("general")
                for i in range(15):
                    await c.say("general", "x", f"{connections}-{i}")
                await asyncio.sleep(0.05)
                accepted += len(c.acks)
                await c.close()
            return accepted, connections
        accepted, connections = asyncio.run(run())
        print(f"bounds: {connections} connections in 5 s from one address got {accepted} messages accepted "
              f"(sender rate 10/s, burst 20)")
        self.assertLessEqual(accepted, 20 + 10 * 6, "the burst and 5 s of the rate, whatever the reconnects")
        honest.stop(self)


if __name__ == "__main__":
    nudge_test.main()
