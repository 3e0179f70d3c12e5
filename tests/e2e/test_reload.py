"""Reloading a running pipeline: `nudge reload` and SIGHUP re-read the file.
What must hold: live changes (a transform's limit, the websocket source's
frame size limit, the sink's batch size) apply under live connections and
none of them drops; a change that needs a restart is refused naming the
key, and nothing changes; a file with errors is refused with file:line.
No servers: the memory fanout and SQLite."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, wait_until  # noqa: E402

CLIENTS = 20

PIPELINE = """[pipeline]
name = "reload"

[admin]
listen = "127.0.0.1:0"

[source.websocket]
listen = "{listen}"
max_message_bytes = {max_bytes}
rate_limit_per_second = 0

[transform.filter]
max_length = {max_length}

[fanout.memory]

[sink.sqlite]
path = "{db}"
batch_max_messages = {batch}
"""


def reload_cli(admin_url):
    out = subprocess.run([nudge_test.NUDGE, "reload", admin_url], capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.file = os.path.join(self.dir, "reload.toml")
        self.listen = f"127.0.0.1:{free_port()}"
        self.values = {"listen": self.listen, "max_bytes": 4096, "max_length": 100, "batch": 500,
                       "db": os.path.join(self.dir, "chat.db")}
        self.write()
        self.nudge = NudgeProcess(self.file, name="nudge")
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started(30)
        self.assertTrue(self.nudge.admin_url, self.nudge.log())

    def write(self, **changes):
        self.values.update(changes)
        with open(self.file, "w") as f:
            f.write(PIPELINE.format(**self.values))

    def test_live_limits_change_under_live_connections_and_restart_keys_are_refused(self):
        async def run():
            clients = []
            for i in range(CLIENTS):
                c = ChatClient(self.nudge.ws_url, f"u{i:02d}")
                await c.connect()
                await c.join("lobby")
                clients.append(c)
            first, last = clients[0], clients[-1]
            await first.say("lobby", "x" * 60, "before")
            await last.wait_for(lambda: any(m["text"] == "x" * 60 for m in last.messages), 10, "a 60-char message")
            self.assertIn("before", first.acks)

            # Live: the filter's max length, the source's frame limit, the sink's batch size.
            self.write(max_length=20, max_bytes=512, batch=50)
            code, out = await asyncio.to_thread(reload_cli, self.nudge.admin_url)
            self.assertEqual(code, 0, out)
            for change in ("transform.filter.max_length: 100 -> 20", "source.websocket.max_message_bytes: 4096 -> 512",
                           "sink.sqlite.batch_max_messages: 500 -> 50"):
                self.assertIn(change, out)

            # No connection dropped: everyone still receives, and the new limits apply.
            await first.say("lobby", "short one", "after-short")
            for c in clients:
                await c.wait_for(lambda c=c: any(m["text"] == "short one" for m in c.messages), 10, "after reload")
            await first.say("lobby", "y" * 60, "after-long")
            await first.wait_for(lambda: any(e.get("ref") == "after-long" for e in first.errors), 10, "the rejection")
            rejection = next(e for e in first.errors if e.get("ref") == "after-long")
            self.assertEqual(rejection["message"], "messages are limited to 20 characters")
            await asyncio.sleep(0.3)
            self.assertFalse(any(m["text"] == "y" * 60 for c in clients for m in c.messages),
                             "a message over the new max_length reached nobody")
            open_before = [c for c in clients if c.ws.open]
            self.assertEqual(len(open_before), CLIENTS, "the reload dropped no connection")
            # The new frame limit: a 1000-byte frame now closes its sender's connection with 1009, no one else's.
            await last.send({"type": "send", "room": "lobby", "text": "z" * 1000, "ref": "big"})
            await asyncio.wait_for(last.ws.wait_closed(), 10)
            self.assertEqual(last.ws.close_code, 1009)
            await asyncio.sleep(0.2)
            self.assertEqual(sum(1 for c in clients if c.ws.open), CLIENTS - 1)

            # Restart-only: the listener. Refused naming the key; nothing else applies with it.
            self.write(listen="127.0.0.1:1", max_length=30)
            code, out = await asyncio.to_thread(reload_cli, self.nudge.admin_url)
            self.assertEqual(code, 1, out)
            self.assertIn("source.websocket.listen changed", out)
            self.assertIn("restart", out)
            await first.say("lobby", "z" * 25, "still-20")
            await first.wait_for(lambda: any(e.get("ref") == "still-20" for e in first.errors), 10, "max_length kept")

            # SIGHUP does the same, and says so in the log.
            self.write(listen=self.listen, max_length=30)
            self.nudge.signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: any("transform.filter.max_length: 20 -> 30" in line
                                                   for line in self.nudge.log_lines), 10), self.nudge.log())
            await first.say("lobby", "z" * 25, "now-30")
            await first.wait_for(lambda: "now-30" in first.acks, 10, "a 25-char message under the new limit")

            # A broken file changes nothing and says where it is broken.
            with open(self.file, "a") as f:
                f.write("\n[sink.sqlite.oops\n")
            code, out = await asyncio.to_thread(reload_cli, self.nudge.admin_url)
            self.assertEqual(code, 1, out)
            self.assertIn("reload.toml:", out)
            self.assertEqual(sum(1 for c in clients if c.ws.open), CLIENTS - 1, "no reload dropped a connection")
            for c in clients:
                await c.close()

        asyncio.run(run())
        self.assertTrue(self.nudge.proc.poll() is None, "nudge kept running")
        self.assertEqual(self.nudge.stop(), 0, self.nudge.log())
        print(f"e2e reload: {CLIENTS} connections kept through 4 reloads; live max_length, max_message_bytes and "
              f"batch_max_messages applied; a listen change refused")


if __name__ == "__main__":
    nudge_test.main()
