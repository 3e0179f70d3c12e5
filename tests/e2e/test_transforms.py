"""Transforms end to end: `nudge` with the filter and rate-limit transforms
in front of the memory fanout and SQLite, driven by WebSocket clients.
What must hold: a rejected message reaches nobody and is stored nowhere,
and its sender gets an error with the reason; a dropped one is acked but
reaches nobody and is stored nowhere; a masked one reaches everyone and the
store changed; transforms run in the order the file lists them."""
import asyncio
import os
import sqlite3
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, wait_until  # noqa: E402

FILTER = """[transform.filter]
blocked_senders = ["mallory"]
max_length = 40
blocked_words = ["spam"]
blocked_words_action = "{words_action}"
"""
RATE_LIMIT = """[transform.rate-limit]
burst = 2
messages_per_second = 0.001
"""


def pipeline(folder, *transforms):
    path = os.path.join(folder, "transforms.toml")
    with open(path, "w") as f:
        f.write('[pipeline]\nname = "transforms"\n\n[source.websocket]\nlisten = "127.0.0.1:0"\n\n')
        for t in transforms:
            f.write(t + "\n")
        f.write(f'[fanout.memory]\n\n[sink.sqlite]\npath = "{folder}/chat.db"\n')
    return path


class TransformsTest(unittest.TestCase):
    def setUp(self):
        self.dir = nudge_test.temp_dir(self)

    def start(self, *transforms):
        n = NudgeProcess(pipeline(self.dir, *transforms), name="nudge")
        self.addCleanup(n.kill)
        n.wait_started(30)
        return n

    def stored(self):
        try:
            with sqlite3.connect(os.path.join(self.dir, "chat.db")) as db:
                rows = db.execute("SELECT id, sender, payload FROM messages").fetchall()
        except sqlite3.OperationalError:
            return {}  # not created yet
        return {row[0]: (row[1], bytes(row[2]).decode()) for row in rows}

    async def clients(self, n, *names):
        out = []
        for name in names:
            c = await ChatClient(n.ws_url, name).connect()
            await c.join("r")
            out.append(c)
        return out

    def test_reject_drop_and_mask(self):
        n = self.start(FILTER.format(words_action="reject"))

        async def run():
            alice, mallory, bob = await self.clients(n, "alice", "mallory", "bob")
            await alice.say("r", "buy SPAM today", "1")
            await alice.say("r", "x" * 41, "2")
            await mallory.say("r", "hello from mallory", "3")
            await alice.say("r", "hello everyone", "4")
            await alice.wait_for(lambda: len(alice.errors) == 2 and "4" in alice.acks, what="two errors and an ack")
            await mallory.wait_for(lambda: "3" in mallory.acks, what="mallory's ack (a drop is acked)")
            await bob.wait_for(lambda: len(bob.messages) >= 1, what="the good message")
            await asyncio.sleep(0.3)
            for c in (alice, mallory, bob):
                await c.close()
            return alice, mallory, bob

        alice, mallory, bob = asyncio.run(run())
        errors = {e["ref"]: e for e in alice.errors}
        self.assertEqual(errors["1"]["code"], "rejected")
        self.assertEqual(errors["1"]["message"], "the word 'spam' is not allowed")
        self.assertEqual(errors["2"]["message"], "messages are limited to 40 characters")
        self.assertEqual([m["text"] for m in bob.messages], ["hello everyone"], "nothing refused reached anyone")
        rows = wait_until(lambda: self.stored() if len(self.stored()) == 1 else None, 10)
        self.assertEqual(list(rows.values()), [("alice", "hello everyone")], "nothing refused was stored")
        self.assertNotIn(mallory.acks["3"], rows, "mallory's message was acked but dropped")

    def test_mask_changes_what_everyone_receives_and_what_is_stored(self):
        n = self.start(FILTER.format(words_action="mask"))

        async def run():
            alice, bob = await self.clients(n, "alice", "bob")
            await alice.say("r", "no spam here, Spam!", "1")
            await bob.wait_for(lambda: bob.messages, what="the masked message")
            await alice.wait_for(lambda: "1" in alice.acks, what="the ack")
            for c in (alice, bob):
                await c.close()
            return alice, bob

        alice, bob = asyncio.run(run())
        self.assertEqual(bob.messages[0]["text"], "no **** here, ****!")
        self.assertEqual(bob.messages[0]["id"], alice.acks["1"], "the same id as the sender's ack")
        rows = wait_until(lambda: self.stored() or None, 10)
        self.assertEqual(rows[alice.acks["1"]], ("alice", "no **** here, ****!"))

    def run_order(self, *transforms):
        """alice sends 2 messages with a blocked word, then 2 good ones; returns her errors by ref."""
        n = self.start(*transforms)

        async def run():
            (alice,) = await self.clients(n, "alice")
            for ref, text in (("1", "spam"), ("2", "spam"), ("3", "good one"), ("4", "good two")):
                await alice.say("r", text, ref)
            await alice.wait_for(lambda: len(alice.errors) + len(alice.acks) == 4, what="four answers")
            await alice.close()
            return alice

        alice = asyncio.run(run())
        n.kill()
        return {e["ref"]: e["message"] for e in alice.errors}, set(alice.acks)

    def test_transforms_run_in_the_order_the_file_lists_them(self):
        words = FILTER.format(words_action="reject")
        # Filter first: the refused messages never reach the rate limit, so the good ones pass.
        errors, acked = self.run_order(words, RATE_LIMIT)
        self.assertEqual(set(errors), {"1", "2"})
        self.assertEqual(acked, {"3", "4"})
        os.remove(os.path.join(self.dir, "chat.db"))
        # Rate limit first: the two refused messages spent the burst of 2, so the good ones are limited.
        errors, acked = self.run_order(RATE_LIMIT, words)
        self.assertEqual(errors["1"], "the word 'spam' is not allowed")
        self.assertTrue(errors["3"].startswith("too many messages: at most 2 at once"), errors["3"])
        self.assertEqual(set(errors), {"1", "2", "3", "4"})
        self.assertEqual(acked, set())


if __name__ == "__main__":
    nudge_test.main()
