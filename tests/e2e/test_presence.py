"""End to end, with the real servers: presence and ephemeral messages across
three instances of a chat pipeline (chat.toml: redis fanout; or the one named
by NUDGE_PRESENCE_PIPELINE, e.g. chat-nats-postgres.toml). What must hold:
every member of a room hears each join and leave on any instance, the
presence list names the room's members on every instance, an instance killed
with SIGKILL has its members leave everyone's list within the fanout's
presence TTL, and an ephemeral send reaches the room on other instances but
never PostgreSQL nor a later joiner's history.

A second class runs the embedded pipeline (memory fanout, no servers): the
answers of a pipeline with `[pipeline] ephemeral = false`.
Skips what needs servers when they are down."""
import asyncio
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, psql  # noqa: E402

PIPELINE = os.path.join(nudge_test.PIPELINES, os.environ.get("NUDGE_PRESENCE_PIPELINE", "chat.toml"))
EMBEDDED = os.path.join(nudge_test.PIPELINES, "chat-embedded.toml")
with open(PIPELINE) as f:
    FANOUT = "nats" if "[fanout.nats]" in f.read() else "redis"
SERVICES = (FANOUT, "kafka", "postgres")
# Short, so a killed instance's members leave within seconds; the fanout's
# schema allows 300 ms and up.
PRESENCE_TTL_MS = 2000
CLIENT_ID = re.compile(r"^[0-9a-f]{16}$")


class Client(ChatClient):
    """A chat client that can pick out received frames by type and fields."""

    def of(self, kind, **fields):
        return [f for f in self.frames if f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())]

    async def presence(self, room, ref):
        await self.send({"type": "presence", "room": room, "ref": ref})
        await self.wait_for(lambda: self.of("presence", ref=ref) or self.of("error", ref=ref), 15, f"presence {ref}")
        replies = self.of("presence", ref=ref)
        if not replies:
            raise AssertionError(f"{self.name}: presence {ref} refused: {self.of('error', ref=ref)}")
        return replies[0]


def users(reply):
    return sorted(m["user"] for m in reply["members"])


@unittest.skipUnless(all(nudge_test.service_running(s) for s in SERVICES),
                     f"needs {', '.join(SERVICES)}: scripts/services/<name> start")
class PresenceClusterTest(unittest.TestCase):
    def setUp(self):
        s = nudge_test.unique_suffix()
        self.suffix = s
        self.table = f"e2e_presence_{s}"
        self.env = {"NUDGE_RECENT_PREFIX": f"e2e:{s}:recent:", "NUDGE_TOPIC": f"e2e.presence.{s}",
                    "NUDGE_GROUP": f"e2e-presence-{s}", "NUDGE_TABLE": self.table}
        if FANOUT == "redis":
            self.fanout = [f"fanout.redis.presence_ttl_ms={PRESENCE_TTL_MS}",
                           f"fanout.redis.presence_key_prefix=e2e:{s}:presence:",
                           f"fanout.redis.channel_prefix=e2e:{s}:room:"]
        else:
            self.fanout = [f"fanout.nats.presence_ttl_ms={PRESENCE_TTL_MS}", f"fanout.nats.subject_prefix=e2e.{s}.room."]
        self.instances = []
        self.clients = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for n in self.instances:
            n.kill()
        try:
            psql(f"DROP TABLE IF EXISTS {self.table}")
        except AssertionError:
            pass

    def start_three(self):
        for i in range(3):
            self.instances.append(NudgeProcess(PIPELINE, "source.websocket.listen=127.0.0.1:0", "admin.listen=127.0.0.1:0",
                                               *self.fanout, env=self.env, name=f"nudge{i}"))
        for n in self.instances:
            n.wait_started(60)
        return self.instances

    async def client(self, instance, name, room):
        c = Client(instance.ws_url, name)
        await c.connect()
        await c.join(room)
        self.clients.append(c)
        return c

    def test_three_instances_presence_kill_and_ephemeral(self):
        t_start = time.monotonic()
        a, b, c = self.start_three()
        room = f"presence_{self.suffix}"

        async def run():
            alice = await self.client(a, "alice", room)
            bob = await self.client(b, "bob", room)
            carol = await self.client(c, "carol", room)
            everyone = [alice, bob, carol]

            # Every member hears the joins from its own on, its own included, whichever instance they came through.
            for k, x in enumerate(everyone):
                later = {y.name for y in everyone[k:]}
                await x.wait_for(lambda x=x, later=later: {f["user"] for f in x.of("presence_join")} >= later,
                                 30, f"the joins of {sorted(later)}")
            ids = {f["user"]: f["client"] for f in alice.of("presence_join")}
            for user, cid in ids.items():
                self.assertRegex(cid, CLIENT_ID, f"{user}'s client id is opaque")
                self.assertNotIn(socket.gethostname(), cid)
            self.assertEqual(len(set(ids.values())), 3, "one id per connection across instances")
            for x in everyone:
                for f in x.of("presence_join"):
                    self.assertEqual(f["client"], ids[f["user"]], "every instance names a connection alike")

            # The list, from each instance. An instance that just began watching the room learns of the others'
            # members in a round trip (nats: their snapshots answer its announcement): asked again until then.
            for k, x in enumerate(everyone):
                asked = time.monotonic()
                for attempt in range(40):
                    reply = await x.presence(room, f"p-{k}-{attempt}")
                    if users(reply) == ["alice", "bob", "carol"]:
                        break
                    await asyncio.sleep(0.1)
                if attempt:
                    print(f"\n{FANOUT}: {x.name}'s instance listed all three after {time.monotonic() - asked:.2f} s "
                          f"({attempt + 1} requests)", flush=True)
                self.assertEqual(users(reply), ["alice", "bob", "carol"], reply)
                self.assertEqual(reply["total"], 3)
                self.assertEqual(reply["room"], room)

            # An ephemeral send reaches the other instances, as `ephemeral`, and is acked.
            await alice.send({"type": "send", "room": room, "text": "typing", "ref": "e-1", "ephemeral": True})
            await alice.wait_for(lambda: "e-1" in alice.acks or alice.errors, 15, "the ephemeral ack")
            self.assertEqual(alice.errors, [])
            eid = alice.acks["e-1"]
            for x in everyone:
                await x.wait_for(lambda x=x: x.of("ephemeral", id=eid), 15, "the ephemeral message")
                f = x.of("ephemeral", id=eid)[0]
                self.assertEqual((f["text"], f["sender"], f["room"]), ("typing", "alice", room))
                self.assertNotIn(eid, [m["id"] for m in x.messages], "never as a message")
            # A real message after it: once it is stored, the ephemeral one would be too if it ever were.
            await alice.say(room, "real", "m-1")
            await alice.wait_for(lambda: "m-1" in alice.acks, 30, "the message's ack")
            mid = alice.acks["m-1"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if psql(f"SELECT 1 FROM {self.table} WHERE id = '{mid}'"):
                        break
                except AssertionError:
                    pass
                await asyncio.sleep(0.3)
            self.assertEqual(psql(f"SELECT count(*) FROM {self.table} WHERE id = '{mid}'"), [["1"]])
            self.assertEqual(psql(f"SELECT count(*) FROM {self.table} WHERE id = '{eid}'"), [["0"]],
                             "the ephemeral message is never stored")
            dave = await self.client(b, "dave", room)
            await dave.wait_for(lambda: dave.of("joined"), 30, "dave's join")
            self.assertIn(mid, [m["id"] for m in dave.history], "history works")
            self.assertNotIn(eid, [m["id"] for m in dave.history + dave.messages], "nor in a later joiner's history")

            # A leave reaches the other instances.
            await bob.send({"type": "leave", "room": room})
            for x in (alice, carol):
                await x.wait_for(lambda x=x: x.of("presence_leave", user="bob"), 15, "bob's leave")

            # SIGKILL: carol's instance says nothing; the fanout's TTL makes her leave.
            killed = time.monotonic()
            c.proc.kill()
            for x in (alice, dave):
                await x.wait_for(lambda x=x: x.of("presence_leave", user="carol"), 3 * PRESENCE_TTL_MS / 1000 + 10,
                                 "carol's leave after the kill")
            leave_s = time.monotonic() - killed
            print(f"\n{FANOUT}: carol's presence_leave reached alice {leave_s:.2f} s after SIGKILL of her instance "
                  f"(presence_ttl_ms {PRESENCE_TTL_MS})", flush=True)
            self.assertLess(leave_s, PRESENCE_TTL_MS / 1000 * 7 / 6 + 1.5, "within the TTL and a sixth, plus slack")
            self.assertEqual(carol.of("presence_leave", user="carol"), [])
            reply = await alice.presence(room, "p-after")
            self.assertEqual(users(reply), ["alice", "dave"], reply)
            for x in (alice, dave):
                self.assertEqual(x.errors, [], x.name)
            for x in (alice, bob, dave):
                await x.close()

        asyncio.run(asyncio.wait_for(run(), 120))
        print(f"{FANOUT}: the scenario took {time.monotonic() - t_start:.1f} s", flush=True)


class EmbeddedEphemeralTest(unittest.TestCase):
    """The embedded pipeline (memory fanout): no servers."""

    def test_a_pipeline_without_ephemeral_refuses_it_and_keeps_presence(self):
        d = nudge_test.temp_dir(self)
        n = NudgeProcess(EMBEDDED, "source.websocket.listen=127.0.0.1:0", "pipeline.ephemeral=false",
                         env={"NUDGE_DATA_DIR": d})
        self.addCleanup(n.kill)
        n.wait_started(30)

        async def run():
            x = Client(n.ws_url, "alice")
            await x.connect()
            await x.join("general")
            await x.wait_for(lambda: x.of("presence_join", user="alice"), 10, "its own join")
            await x.send({"type": "send", "room": "general", "text": "typing", "ref": "e-1", "ephemeral": True})
            await x.wait_for(lambda: x.of("error", ref="e-1"), 10, "the refusal")
            self.assertEqual(x.of("error", ref="e-1")[0]["code"], "rejected")
            self.assertEqual(x.of("ephemeral"), [])
            await x.send({"type": "send", "room": "general", "text": "hi", "ref": "m-1"})
            await x.wait_for(lambda: "m-1" in x.acks, 10, "an ordinary send still goes")
            reply = await x.presence("general", "p-1")
            self.assertEqual(users(reply), ["alice"])
            await x.close()

        asyncio.run(asyncio.wait_for(run(), 60))


if __name__ == "__main__":
    nudge_test.main()
