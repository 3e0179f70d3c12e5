"""`nudge tap` against running instances: watching the messages that flow
through a pipeline from its admin endpoint (GET /tap, with the admin token).

What must hold: a tap filtered by stage and room shows exactly the
messages of that room at those stages (chat.toml: accepted by the source,
written by the PostgreSQL sink); a tap without the token is refused (401)
and sees nothing; a tapper that never reads slows no one: every message is
still acknowledged and delivered while its missed counter grows, and its tap
detaches when it goes. TapChatTest needs Redis, Kafka and PostgreSQL;
TapEmbeddedTest needs no servers."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, admin_get, psql, wait_until  # noqa: E402

TOKEN = "e2e-tap-token-" + "5c1d7e" * 4
CHAT = os.path.join(nudge_test.PIPELINES, "chat.toml")
EMBEDDED = os.path.join(nudge_test.PIPELINES, "chat-embedded.toml")
SERVICES = ("redis", "kafka", "postgres")


class TapProcess:
    """`nudge tap ADMIN_URL ARGS...` as a child, its stdout lines and stderr kept as they come."""

    def __init__(self, admin_url, *args, token=TOKEN):
        env = {k: v for k, v in os.environ.items() if k != "NUDGE_ADMIN_TOKEN"}
        if token is not None:
            env["NUDGE_ADMIN_TOKEN"] = token
        self.proc = subprocess.Popen([nudge_test.NUDGE, "tap", admin_url, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.lines, self.err = [], []
        self._watching = threading.Event()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for r in self._readers:
            r.start()

    def _read(self, pipe, into):
        for line in pipe:
            into.append(line.rstrip("\n"))
            if "nudge tap: watching" in line:
                self._watching.set()
        self._watching.set()

    def wait_watching(self, timeout=10):
        if not self._watching.wait(timeout) or self.proc.poll() is not None:
            raise AssertionError("nudge tap did not attach:\n" + "\n".join(self.err))

    def wait(self, timeout):
        code = self.proc.wait(timeout)
        for r in self._readers:
            r.join(5)
        return code

    def events(self):
        return [json.loads(line) for line in self.lines]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def raw_tap(admin_url, query, rcvbuf=4096):
    """A GET /tap on a bare socket that is never read: the slowest tapper there is."""
    host, port = admin_url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /tap{query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    return sock


def metric(admin_url, name, **labels):
    return sum(v for (n, l), v in nudge_test.scrape_metrics(admin_url)
               if n == name and all(l.get(k) == want for k, want in labels.items()))


@unittest.skipUnless(all(nudge_test.service_running(s) for s in SERVICES),
                     "needs redis, kafka, postgres: scripts/services/<name> start")
class TapChatTest(unittest.TestCase):
    """chat.toml: websocket → kafka → redis, and the consumer group → postgres."""

    @classmethod
    def setUpClass(cls):
        suffix = nudge_test.unique_suffix()
        cls.table = f"e2e_tap_{suffix}"
        env = {"NUDGE_RECENT_PREFIX": f"e2e:tap:{suffix}:recent:", "NUDGE_TOPIC": f"e2e.tap.{suffix}",
               "NUDGE_GROUP": f"e2e-tap-{suffix}", "NUDGE_TABLE": cls.table}
        # A small queue, so a tapper that never reads runs out of it quickly; a
        # rate high enough that only the queue bounds it here.
        # Channels of its own on the shared Redis: no other test's room "r1" reaches this instance.
        cls.nudge = NudgeProcess(CHAT, "source.websocket.listen=127.0.0.1:0", "source.websocket.rate_limit_per_second=0",
                                 f"fanout.redis.channel_prefix=e2e:tap:{suffix}:room:", "admin.listen=127.0.0.1:0",
                                 f"admin.token={TOKEN}", "admin.tap_queue_bytes=65536",
                                 "admin.tap_events_per_second=100000", env=env, name="nudge-tap")
        try:
            cls.nudge.wait_started(60)
        except AssertionError:
            cls.nudge.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.nudge.kill()
        try:
            psql(f"DROP TABLE IF EXISTS {cls.table}")
        except AssertionError:
            pass

    def test_a_tap_on_source_and_sink_for_one_room_shows_exactly_that_rooms_messages_at_both(self):
        per_room = 8
        # Each r1 message: accepted by the source, written by the sink, and
        # delivered by the source to its sender (who joined r1).
        tap = TapProcess(self.nudge.admin_url, "--stage", "source,sink", "--room", "r1",
                         "--limit", str(3 * per_room))
        self.addCleanup(tap.kill)
        tap.wait_watching()

        async def talk():
            c = ChatClient(self.nudge.ws_url, "tapped")
            await c.connect()
            await c.join("r1")
            await c.join("r2")
            for k in range(per_room):
                await c.say("r1", f"r1 message {k}", f"r1-{k}")
                await c.say("r2", f"r2 message {k}", f"r2-{k}")
            await c.wait_for(lambda: len(c.acks) == 2 * per_room and len(c.messages) == 2 * per_room, 60,
                             "every ack and delivery")
            await c.close()
            return c.acks

        acks = asyncio.run(talk())
        code = tap.wait(90)
        self.assertEqual(code, 0, "\n".join(tap.err))
        events = tap.events()
        r1_ids = {acks[f"r1-{k}"] for k in range(per_room)}
        self.assertEqual({e["room"] for e in events}, {"r1"}, "a message of another room was shown")
        by_stage = {stage: [e for e in events if e["stage"] == stage] for stage in ("source", "sink")}
        self.assertEqual(len(events), 3 * per_room, tap.lines)
        points = {(e["stage"], e["point"]): set() for e in events}
        for e in events:
            points[(e["stage"], e["point"])].add(e["id"])
        self.assertEqual(points, {("source", "accepted"): r1_ids, ("source", "delivered"): r1_ids,
                                  ("sink", "written"): r1_ids})
        self.assertEqual({e["at"] for e in by_stage["sink"]}, {"sink.postgres"})
        self.assertEqual(sorted(e["text"] for e in by_stage["sink"]), sorted(f"r1 message {k}" for k in range(per_room)))
        self.assertTrue(all(e["sender"] == "tapped" and e["size"] == len(e["text"]) for e in events))
        self.assertIn(f"nudge tap: {3 * per_room} events, 0 missed", tap.err)
        # The tap detached at its limit.
        self.assertTrue(wait_until(lambda: metric(self.nudge.admin_url, "nudge_admin_taps") == 0, 10))

    def test_a_tapper_that_never_reads_slows_no_delivery_and_misses_events_instead(self):
        sock = raw_tap(self.nudge.admin_url, "?max_text=0")
        self.addCleanup(sock.close)
        self.assertTrue(wait_until(lambda: metric(self.nudge.admin_url, "nudge_admin_taps") == 1, 10))
        missed_before = metric(self.nudge.admin_url, "nudge_admin_tap_missed_total", reason="queue_full")
        count = 150
        text = "y" * 1000

        async def talk():
            sender, receiver = ChatClient(self.nudge.ws_url, "sender"), ChatClient(self.nudge.ws_url, "receiver")
            for c in (sender, receiver):
                await c.connect()
                await c.join("slow")
            # The join is in place once a message comes back through the fanout.
            await sender.say("slow", "warmup", "warmup")
            await receiver.wait_for(lambda: any(m["text"] == "warmup" for m in receiver.messages), 30, "warm-up")
            started = time.monotonic()
            for k in range(count):
                await sender.say("slow", f"{k} {text}", f"m-{k}")
            await sender.wait_for(lambda: len(sender.acks) == count + 1, 60, "every ack")
            await receiver.wait_for(lambda: len(receiver.messages) == count + 1, 60, "every message")
            elapsed = time.monotonic() - started
            for c in (sender, receiver):
                await c.close()
            return receiver.messages, elapsed

        received, elapsed = asyncio.run(talk())
        self.assertEqual([m["text"] for m in received[1:]], [f"{k} {text}" for k in range(count)])
        missed = metric(self.nudge.admin_url, "nudge_admin_tap_missed_total", reason="queue_full") - missed_before
        self.assertGreater(missed, 0, "the tapper read nothing, yet missed nothing")
        print(f"[ figures  ] {count} messages of 1 KB acked and delivered in {elapsed:.2f} s "
              f"past a tapper that never reads; {missed:.0f} events missed for it")
        # Going away detaches it.
        sock.close()
        self.assertTrue(wait_until(lambda: metric(self.nudge.admin_url, "nudge_admin_taps") == 0, 10),
                        "the tap of a closed connection stayed attached")


class TapEmbeddedTest(unittest.TestCase):
    """chat-embedded.toml (memory fanout, SQLite): the command's text output, and the token."""

    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.nudge = NudgeProcess(EMBEDDED, "source.websocket.listen=127.0.0.1:0", "admin.listen=127.0.0.1:0",
                                  f"admin.token={TOKEN}", env={"NUDGE_DATA_DIR": self.dir})
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started(30)

    def test_without_the_token_a_tap_is_refused_and_sees_nothing(self):
        for token, what in ((None, "needs the header 'Authorization: Bearer <token>'"),
                            ("not-the-admin-token-000000", "the token does not match")):
            tap = TapProcess(self.nudge.admin_url, token=token)
            self.addCleanup(tap.kill)
            self.assertEqual(tap.wait(20), 1)
            err = "\n".join(tap.err)
            self.assertIn("nudge tap: 401 Unauthorized", err)
            self.assertIn(what, err)
            self.assertEqual(tap.lines, [])
        status, body = admin_get(self.nudge.admin_url, "/tap")
        self.assertEqual(status, 401, body)
        self.assertEqual(metric(self.nudge.admin_url, "nudge_admin_refused_total", reason="unauthorized"), 3)
        self.assertEqual(metric(self.nudge.admin_url, "nudge_admin_taps"), 0)

    def test_the_text_format_shows_each_point_a_message_passes(self):
        tap = TapProcess(self.nudge.admin_url, "--format", "text", "--room", "lobby", "--limit", "5")
        self.addCleanup(tap.kill)
        tap.wait_watching()

        async def talk():
            c = ChatClient(self.nudge.ws_url, "ann")
            await c.connect()
            await c.join("lobby")
            await c.say("lobby", "hello tap", "r")
            await c.wait_for(lambda: "r" in c.acks and c.messages, 20, "ack and delivery")
            await c.close()

        asyncio.run(talk())
        self.assertEqual(tap.wait(30), 0, "\n".join(tap.err))
        points = [line.split()[1] for line in tap.lines]
        # Durable in SQLite, then published on the memory fanout, received and delivered.
        self.assertEqual(sorted(points), sorted(["source.accepted", "sink.written", "fanout.published",
                                                 "fanout.received", "source.delivered"]), tap.lines)
        self.assertTrue(all(" #lobby ann: hello tap" in line for line in tap.lines), tap.lines)


if __name__ == "__main__":
    nudge_test.main()
