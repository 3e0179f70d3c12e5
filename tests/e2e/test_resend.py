"""End to end: a client that resends a message under the same `ref` — after a
lost ack, a reconnect or an error — makes one message, not two: one row, one
delivery to the room, and the ack carries the first message's id
(docs/guarantees.md, "Resending is safe").

EmbeddedResendTest runs the embedded pipeline (no servers). ResendAfterError
uses the default pipeline's real Kafka and PostgreSQL: the broker is frozen
so the send fails with a timeout, and the resend after the broker is back
must still end as one row under the first id; it skips without the servers."""
import asyncio
import os
import signal
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess  # noqa: E402


class EmbeddedResendTest(unittest.TestCase):
    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.db = os.path.join(self.dir, "chat.db")
        self.nudge = NudgeProcess(os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
                                  "source.websocket.listen=127.0.0.1:0", f"sink.sqlite.path={self.db}")
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started()

    def rows(self, text):
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT id, sender FROM messages WHERE CAST(payload AS TEXT) = ?", (text,)).fetchall()

    def test_resend_on_the_same_and_on_a_new_connection_makes_one_message(self):
        async def run():
            alice, bob = ChatClient(self.nudge.ws_url, "alice"), ChatClient(self.nudge.ws_url, "bob")
            for c in (alice, bob):
                await c.connect()
                await c.join("general")
            await alice.say("general", "only once", "m-1")
            await alice.wait_for(lambda: "m-1" in alice.acks, what="first ack")
            first = alice.acks.pop("m-1")

            # The ack was "lost": resend on the same connection.
            await alice.say("general", "only once", "m-1")
            await alice.wait_for(lambda: "m-1" in alice.acks, what="ack of the resend")
            same_connection = alice.acks.pop("m-1")

            # The connection dropped: reconnect with the same name and resend.
            await alice.close()
            again = ChatClient(self.nudge.ws_url, "alice")
            await again.connect()
            await again.join("general")
            await again.say("general", "only once", "m-1")
            await again.wait_for(lambda: "m-1" in again.acks, what="ack after reconnecting")
            new_connection = again.acks["m-1"]

            # A marker sent after the resends arrives after anything they could have delivered.
            await again.say("general", "marker", "m-2")
            await bob.wait_for(lambda: any(m["text"] == "marker" for m in bob.messages), what="marker")
            delivered = [m for m in bob.messages if m["text"] == "only once"]
            for c in (again, bob):
                await c.close()
            return first, same_connection, new_connection, delivered

        first, same_connection, new_connection, delivered = asyncio.run(run())
        self.assertEqual(same_connection, first, "a resend is acked with the first message's id")
        self.assertEqual(new_connection, first, "a resend after reconnecting is acked with the first id")
        self.assertEqual([m["id"] for m in delivered], [first], "the room sees the message once")
        self.assertEqual(self.nudge.stop(), 0)
        self.assertEqual(self.rows("only once"), [(first, "alice")], "one row, under the first id")
        print(f"e2e resend: 3 sends of ref m-1 → 1 row, 1 delivery, every ack id {first}")

    def test_a_ref_reused_for_other_text_is_refused_and_refs_are_per_sender(self):
        async def run():
            alice, mallory = ChatClient(self.nudge.ws_url, "alice"), ChatClient(self.nudge.ws_url, "mallory")
            for c in (alice, mallory):
                await c.connect()
                await c.join("general")
            await alice.say("general", "hello", "r-1")
            await alice.wait_for(lambda: "r-1" in alice.acks, what="ack")
            # Same sender, same ref, different text: a client bug, not a resend.
            await alice.say("general", "something else", "r-1")
            await alice.wait_for(lambda: alice.errors, what="conflict error")
            # Another sender using the same ref makes its own message.
            await mallory.say("general", "hello", "r-1")
            await mallory.wait_for(lambda: "r-1" in mallory.acks, what="mallory's ack")
            for c in (alice, mallory):
                await c.close()
            return alice, mallory

        alice, mallory = asyncio.run(run())
        self.assertEqual(alice.errors[0]["code"], "ref_conflict")
        self.assertEqual(alice.errors[0]["ref"], "r-1")
        self.assertNotEqual(mallory.acks["r-1"], alice.acks["r-1"])
        self.assertEqual(self.nudge.stop(), 0)
        self.assertEqual(len(self.rows("hello")), 2)
        self.assertEqual(self.rows("something else"), [])

    def test_anonymous_clients_are_deduplicated_per_connection_only(self):
        async def run():
            one, two = ChatClient(self.nudge.ws_url, None), ChatClient(self.nudge.ws_url, None)
            for c in (one, two):
                c.ws = await nudge_test.websockets.connect(c.url, max_size=None, ping_interval=None)
                c._reader = asyncio.ensure_future(c._read())
                await c.join("general")
            for c in (one, two):
                await c.say("general", "anon", "a-1")
            for c in (one, two):
                await c.wait_for(lambda c=c: "a-1" in c.acks, what="ack")
            # A resend on the same connection is still recognised.
            await one.say("general", "anon", "a-1")
            await one.say("general", "marker", "a-2")
            await one.wait_for(lambda: "a-2" in one.acks, what="marker ack")
            for c in (one, two):
                await c.close()
            return one, two

        one, two = asyncio.run(run())
        self.assertNotEqual(one.acks["a-1"], two.acks["a-1"], "two anonymous clients do not share refs")
        self.assertEqual(self.nudge.stop(), 0)
        self.assertEqual(len(self.rows("anon")), 2)


SERVERS = ("kafka", "postgres", "redis")


@unittest.skipUnless(all(nudge_test.service_running(s) for s in SERVERS),
                     "needs kafka, postgres, redis: scripts/services/<name> start")
class ResendAfterErrorTest(unittest.TestCase):
    def setUp(self):
        suffix = nudge_test.unique_suffix()
        self.table = f"e2e_resend_{suffix}"
        env = {"NUDGE_RECENT_PREFIX": f"e2e.resend:{suffix}:recent:", "NUDGE_TOPIC": f"e2e.resend.{suffix}", "NUDGE_GROUP": f"e2e-resend-{suffix}", "NUDGE_TABLE": self.table}
        self.nudge = NudgeProcess(os.path.join(nudge_test.PIPELINES, "chat.toml"), "source.websocket.listen=127.0.0.1:0",
                                  "log.kafka.delivery_timeout_ms=2000", env=env)
        self.addCleanup(self.cleanup)
        self.nudge.wait_started(60)

    def cleanup(self):
        self.nudge.kill()
        kafka = self.kafka_pid()
        if kafka:
            os.kill(kafka, signal.SIGCONT)
        try:
            nudge_test.psql(f"DROP TABLE IF EXISTS {self.table}")
        except AssertionError:
            pass

    @staticmethod
    def kafka_pid():
        var = os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var"))
        try:
            with open(os.path.join(var, "services", "kafka", "kafka.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def test_resend_after_a_timeout_is_stored_once_under_the_first_id(self):
        async def run():
            alice = ChatClient(self.nudge.ws_url, "alice")
            await alice.connect()
            await alice.join("general")
            await alice.say("general", "warm", "w")
            await alice.wait_for(lambda: "w" in alice.acks, 60, "warm-up ack")
            os.kill(self.kafka_pid(), signal.SIGSTOP)
            try:
                await alice.say("general", "through the outage", "m-1")
                await alice.wait_for(lambda: alice.errors, 30, "the timeout error")
            finally:
                os.kill(self.kafka_pid(), signal.SIGCONT)
            error = alice.errors[0]
            t0 = time.monotonic()
            while "m-1" not in alice.acks:
                await alice.say("general", "through the outage", "m-1")
                await alice.wait_for(lambda: "m-1" in alice.acks or len(alice.errors) > 1, 30, "ack of the resend")
                if "m-1" not in alice.acks:
                    alice.errors = alice.errors[:1]
                    await asyncio.sleep(1)
                if time.monotonic() - t0 > 60:
                    raise AssertionError("the resend was never acked")
            await alice.close()
            return error, alice.acks["m-1"]

        error, acked = asyncio.run(run())
        self.assertEqual(error["ref"], "m-1")
        self.assertIn(error["code"], ("timeout", "unavailable"))
        deadline = time.monotonic() + 60
        while True:
            rows = nudge_test.psql(f"SELECT id FROM {self.table} WHERE convert_from(payload, 'UTF8') = "
                                   "'through the outage'")
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(rows, [[acked]], "one row, under the id the resend was acked with")
        print(f"e2e resend after a {error['code']} error: one row, id {acked}")


if __name__ == "__main__":
    nudge_test.main()
