"""End to end: `nudge run pipelines/chat-embedded.toml` as its own process, real
WebSocket clients in several rooms, then SIGTERM and a look into the SQLite file."""
import asyncio
import collections
import os
import signal
import sqlite3
import sys
import unittest

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402

ROOMS = ["general", "random", "dev"]
CLIENTS = 21
MESSAGES_PER_CLIENT = 20


class EmbeddedChatTest(unittest.TestCase):
    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.db = os.path.join(self.dir, "chat.db")
        self.nudge = nudge_test.NudgeProcess(
            os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
            "source.websocket.listen=127.0.0.1:0", f"sink.sqlite.path={self.db}")
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started()

    def test_rooms_exactly_once_in_order_acked_and_persisted(self):
        clients = asyncio.run(self.exchange())
        status = self.nudge.stop()
        self.assertEqual(status, 0, "nudge must exit 0 after SIGTERM\n" + self.nudge.log())
        self.assertIn("exited cleanly", self.nudge.log())

        acked = {}
        for c in clients:
            for ref, msg_id in c.acks.items():
                acked[msg_id] = (c.name, ref)
        self.assertEqual(len(acked), CLIENTS * (MESSAGES_PER_CLIENT + 1), "one distinct id per acked message")

        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT id, room, sender, payload FROM messages").fetchall()
        by_id = collections.Counter(r[0] for r in rows)
        missing = [i for i in acked if by_id[i] == 0]
        self.assertEqual(missing, [], "every acked message is in SQLite")
        self.assertTrue(all(n == 1 for n in by_id.values()), "each row exactly once")
        stored = {r[0]: r for r in rows}
        for msg_id, (name, ref) in acked.items():
            self.assertEqual(stored[msg_id][2], name)
        print(f"e2e embedded: {CLIENTS} clients, {len(acked)} messages acked, {len(rows)} rows in SQLite")

    async def exchange(self):
        clients = []
        for i in range(CLIENTS):
            c = nudge_test.ChatClient(self.nudge.ws_url, f"user{i:02d}")
            await c.connect()
            c.room = ROOMS[i % len(ROOMS)]
            clients.append(c)
        # A client's frames are handled in order, so once its own warm-up message
        # comes back its join is in place; then everyone is ready.
        for c in clients:
            await c.join(c.room)
            await c.say(c.room, f"warmup {c.name}", "warmup")
        for c in clients:
            await c.wait_for(lambda c=c: "warmup" in c.acks and any(
                m["text"] == f"warmup {c.name}" for m in c.messages), what="warm-up")

        async def talk(c):
            for n in range(MESSAGES_PER_CLIENT):
                await c.say(c.room, f"{c.name} #{n}", f"r{n}")
        await asyncio.gather(*(talk(c) for c in clients))

        members = collections.defaultdict(list)
        for c in clients:
            members[c.room].append(c.name)
        for c in clients:
            expected = len(members[c.room]) * MESSAGES_PER_CLIENT
            await c.wait_for(lambda c=c, e=expected: len(self.main_phase(c)) >= e and len(c.acks) == MESSAGES_PER_CLIENT + 1,
                             what=f"{expected} messages and all acks")
        await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive now

        for c in clients:
            got = self.main_phase(c)
            self.assertEqual(len(got), len(members[c.room]) * MESSAGES_PER_CLIENT, f"{c.name} got each message once")
            self.assertEqual(len({m["id"] for m in got}), len(got), f"{c.name}: no duplicates")
            self.assertTrue(all(m["room"] == c.room for m in got), f"{c.name}: only its room")
            per_sender = collections.defaultdict(list)
            for m in got:
                per_sender[m["sender"]].append(int(m["text"].split("#")[1]))
            self.assertEqual(sorted(per_sender), sorted(members[c.room]))
            for sender, seqs in per_sender.items():
                self.assertEqual(seqs, list(range(MESSAGES_PER_CLIENT)), f"{sender}'s order as sent")
            self.assertEqual(c.errors, [])
            own = {m["id"] for m in got if m["sender"] == c.name}
            self.assertEqual(own, {c.acks[f"r{n}"] for n in range(MESSAGES_PER_CLIENT)}, "acks carry the ids delivered")
        for c in clients:
            await c.close()
        return clients

    @staticmethod
    def main_phase(c):
        return [m for m in c.messages if not m["text"].startswith("warmup ")]


class ProtocolErrorsTest(unittest.TestCase):
    """Bad input gets a clear error frame; the connection and everyone else carry on."""

    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.nudge = nudge_test.NudgeProcess(
            os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
            "source.websocket.listen=127.0.0.1:0", f"sink.sqlite.path={self.dir}/chat.db",
            "source.websocket.max_message_bytes=1024")
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started()

    def test_bad_frames(self):
        async def run():
            c = await nudge_test.ChatClient(self.nudge.ws_url, "mallory").connect()
            await c.ws.send("{not json")
            await c.send({"type": "dance"})
            await c.send({"type": "send", "room": "general", "text": "x", "ref": "a"})
            await c.send({"type": "join"})
            await c.send({"type": "join", "room": "bad room!"})
            await c.wait_for(lambda: len(c.errors) == 5, what="5 errors")
            codes = [e["code"] for e in c.errors]
            self.assertEqual(codes, ["bad_json", "unknown_type", "not_joined", "bad_request", "bad_request"])
            self.assertEqual(c.errors[2].get("ref"), "a")
            # The connection is still good.
            await c.join("general")
            await c.say("general", "still here", "b")
            await c.wait_for(lambda: "b" in c.acks, what="ack after errors")
            # Over the size limit: closed with 1009.
            await c.ws.send("x" * 2000)
            await asyncio.wait_for(c.ws.wait_closed(), 5)
            self.assertEqual(c.ws.close_code, 1009)
        asyncio.run(run())
        self.assertEqual(self.nudge.stop(), 0)


class AbuseLimitsTest(unittest.TestCase):
    """A client flooding frames is rate limited then closed with 1008; a further
    connection from a busy address gets HTTP 503; everyone else carries on."""

    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.nudge = nudge_test.NudgeProcess(
            os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
            "source.websocket.listen=127.0.0.1:0", f"sink.sqlite.path={self.dir}/chat.db",
            "source.websocket.rate_limit_per_second=5", "source.websocket.rate_limit_burst=5",
            "source.websocket.rate_limit_strikes=10", "source.websocket.max_connections_per_address=3")
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started()

    def test_flooding_client_is_rate_limited_then_closed(self):
        async def run():
            alice = await nudge_test.ChatClient(self.nudge.ws_url, "alice").connect()
            await alice.join("general")
            flood = await nudge_test.ChatClient(self.nudge.ws_url, "mallory").connect()
            try:
                for _ in range(50):
                    await flood.join("general")
            except websockets.ConnectionClosed:
                pass  # closed while still blasting: that is the point
            await asyncio.wait_for(flood.ws.wait_closed(), 5)
            await asyncio.wait_for(flood._reader, 5)
            self.assertEqual(flood.ws.close_code, 1008)
            codes = [e["code"] for e in flood.errors]
            self.assertEqual(codes, ["rate_limited"] * 10, "one error per refused frame, closed at the 10th")
            # Everyone else carries on.
            await alice.say("general", "still flowing", "a")
            await alice.wait_for(lambda: "a" in alice.acks, what="ack after the flood")
            await alice.wait_for(lambda: any(m["text"] == "still flowing" for m in alice.messages), what="delivery")
            await alice.close()
        asyncio.run(run())
        self.assertEqual(self.nudge.stop(), 0)

    def test_connections_per_address_are_capped(self):
        async def run():
            clients = []
            for name in ("alice", "bob", "carol"):
                c = await nudge_test.ChatClient(self.nudge.ws_url, name).connect()
                await c.join("general")
                clients.append(c)
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as refused:
                await websockets.connect(self.nudge.ws_url, ping_interval=None)
            self.assertEqual(refused.exception.status_code, 503)
            # The three open connections still work.
            await clients[0].say("general", "hello all", "h")
            await clients[0].wait_for(lambda: "h" in clients[0].acks, what="ack while at the cap")
            for c in clients:
                await c.wait_for(lambda c=c: any(m["text"] == "hello all" for m in c.messages), what="delivery")
            # A closed connection frees its place.
            await clients.pop().close()
            dave = None
            for _ in range(50):
                try:
                    dave = await nudge_test.ChatClient(self.nudge.ws_url, "dave").connect()
                    break
                except websockets.exceptions.InvalidStatusCode:
                    await asyncio.sleep(0.05)
            self.assertIsNotNone(dave, "a place frees up when a connection closes")
            await dave.join("general")
            await dave.say("general", "made it", "d")
            await dave.wait_for(lambda: "d" in dave.acks, what="ack for the new connection")
            for c in clients + [dave]:
                await c.close()
        asyncio.run(run())
        self.assertEqual(self.nudge.stop(), 0)


class LocalhostTest(unittest.TestCase):
    """`listen = "localhost:..."` (the shipped pipelines' default) answers on
    both loopbacks: a client that resolves localhost to ::1 first and does
    not fall back (older Node, several CLI tools) must not be refused."""

    def test_localhost_answers_on_127_0_0_1_and_on_ipv6_loopback(self):
        db = os.path.join(nudge_test.temp_dir(self), "chat.db")
        n = nudge_test.NudgeProcess(os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
                                    "source.websocket.listen=localhost:0", f"sink.sqlite.path={db}")
        self.addCleanup(n.kill)
        n.wait_started()
        self.assertTrue(n.base_url.startswith("http://localhost:"), n.base_url)
        port = n.address[1]
        import urllib.request
        for host in ("127.0.0.1", "[::1]"):
            page = urllib.request.urlopen(f"http://{host}:{port}/", timeout=5).read()
            self.assertIn(b"<html", page.lower(), f"the page over {host}")

        async def chat():
            a = await nudge_test.ChatClient(f"ws://127.0.0.1:{port}/ws", "v4").connect()
            b = await nudge_test.ChatClient(f"ws://[::1]:{port}/ws", "v6").connect()
            for c in (a, b):
                await c.join("both")
            await a.say("both", "over 127.0.0.1", "a1")
            await b.say("both", "over ::1", "b1")
            for c in (a, b):
                await c.wait_for(lambda c=c: len(c.messages) >= 2, what="both messages")
                self.assertEqual(sorted(m["text"] for m in c.messages), ["over 127.0.0.1", "over ::1"])
                await c.close()
        asyncio.run(chat())
        self.assertEqual(n.stop(), 0)


if __name__ == "__main__":
    nudge_test.main()
