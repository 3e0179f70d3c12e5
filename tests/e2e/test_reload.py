"""Reloading a running pipeline: `nudge reload` and SIGHUP re-read the file.
What must hold: live changes (a transform's limit, the websocket source's
frame size limit, the sink's batch size) apply under live connections and
none of them drops; a change that needs a restart is refused naming the
key, and nothing changes; a file with errors is refused with file:line.
Only the admin token reloads over HTTP: a browser's request (a web page
POSTing cross-site, or through DNS rebinding) is refused whatever it
carries, and an instance without a token refuses every POST /reload but
SIGHUP. No servers: the memory fanout and SQLite."""
import asyncio
import contextlib
import os
import signal
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, admin_get, wait_until  # noqa: E402

CLIENTS = 20
TOKEN = "e2e-admin-token-" + "7f3a9c" * 4

PIPELINE = """[pipeline]
name = "reload"

[admin]
listen = "127.0.0.1:{admin_port}"
max_connections = 4
{admin_auth}

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


def reload_cli(target, *args, token=None):
    """`nudge reload TARGET ARGS...`, with $NUDGE_ADMIN_TOKEN set to `token` (unset when None)."""
    env = {k: v for k, v in os.environ.items() if k != "NUDGE_ADMIN_TOKEN"}
    if token is not None:
        env["NUDGE_ADMIN_TOKEN"] = token
    out = subprocess.run([nudge_test.NUDGE, "reload", target, *args], capture_output=True, text=True, timeout=30,
                         env=env)
    return out.returncode, out.stdout + out.stderr


def refused_counts(admin_url):
    return {labels["reason"]: value for (name, labels), value in nudge_test.scrape_metrics(admin_url)
            if name == "nudge_admin_refused_total"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.file = os.path.join(self.dir, "reload.toml")
        self.listen = f"127.0.0.1:{free_port()}"
        token_file = os.path.join(self.dir, "admin.token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.values = {"listen": self.listen, "max_bytes": 4096, "max_length": 100, "batch": 500,
                       "db": os.path.join(self.dir, "chat.db"), "admin_port": free_port(),
                       "admin_auth": f'token_file = "{token_file}"'}
        self.write()
        self.nudge = NudgeProcess(self.file, name="nudge")
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started(30)
        self.assertTrue(self.nudge.admin_url, self.nudge.log())

    def reloads_logged(self, nudge=None):
        return sum(1 for line in (nudge or self.nudge).log_lines if re.search(r"reloading .* \(POST /reload\)", line))

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
            code, out = await asyncio.to_thread(reload_cli, self.nudge.admin_url, token=TOKEN)
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
            code, out = await asyncio.to_thread(reload_cli, self.nudge.admin_url, "--token", TOKEN)
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
            code, out = await asyncio.to_thread(reload_cli, self.nudge.admin_url, token=TOKEN)
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

    def test_a_web_page_cannot_reload_and_only_the_token_can(self):
        url = self.nudge.admin_url
        self.write(max_length=20)  # a live change waiting to be applied
        bearer = {"Authorization": "Bearer " + TOKEN}
        # A page on another site POSTs cross-site: a "simple" request, no preflight. Refused, token or not.
        for headers in ({"Origin": "https://evil.example"},
                        {"Origin": "https://evil.example", **bearer},
                        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", **bearer}):
            status, body = admin_get(url, "/reload", "POST", headers=headers)
            self.assertEqual(status, 403, headers)
            self.assertIn("does not answer browsers", body)
        # DNS rebinding: the page's own name now resolves to 127.0.0.1.
        status, body = admin_get(url, "/reload", "POST", headers={"Host": "evil.example", **bearer})
        self.assertEqual(status, 403)
        self.assertIn("Host 'evil.example'", body)
        self.assertEqual(admin_get(url, "/metrics", headers={"Host": "evil.example:9100"})[0], 403)
        # A program without the token, or with a wrong one.
        status, body = admin_get(url, "/reload", "POST")
        self.assertEqual(status, 401)
        self.assertIn("Authorization: Bearer", body)
        self.assertEqual(admin_get(url, "/reload", "POST", headers={"Authorization": "Bearer " + "x" * 40})[0], 401)
        code, out = reload_cli(url)
        self.assertEqual(code, 1, out)
        self.assertIn("nudge reload sent no token", out)
        self.assertEqual(self.reloads_logged(), 0, "nothing refused reached the pipeline file")
        self.assertEqual(refused_counts(url), {"browser": 3.0, "host": 2.0, "unauthorized": 3.0,
                                               "reload_disabled": 0.0, "max_connections": 0.0,
                                               "tap_disabled": 0.0, "max_taps": 0.0})

        # The token: from --token, from the pipeline file (its [admin] listen and token_file).
        code, out = reload_cli(url, "--token", TOKEN)
        self.assertEqual(code, 0, out)
        self.assertIn("transform.filter.max_length: 100 -> 20", out)
        self.write(max_length=30)
        code, out = reload_cli(self.file)
        self.assertEqual(code, 0, out)
        self.assertIn("transform.filter.max_length: 20 -> 30", out)
        self.assertEqual(self.reloads_logged(), 2)
        # A new token needs a restart, and the refusal does not show it.
        self.write(admin_auth='token = "another-admin-token-0123456789"')
        code, out = reload_cli(url, token=TOKEN)
        self.assertEqual(code, 1, out)
        self.assertIn("admin.token changed (value hidden); it takes effect only after a restart", out)
        self.assertNotIn("another-admin-token", out)
        self.assertFalse(any("another-admin-token" in line for line in self.nudge.log_lines))
        print("e2e reload: browser (Origin, Sec-Fetch-*), foreign Host, missing and wrong tokens refused without "
              "reloading; --token, $NUDGE_ADMIN_TOKEN and the pipeline file's token_file reload")

    def test_idle_holders_of_every_admin_connection_cannot_fail_healthz(self):
        # The attack: max_connections (4) sockets that send nothing, each reopened as soon as it is closed.
        # Before, every /healthz failed (closed at accept); now each takes an idle holder's place.
        with self._idle_holders(4) as reopened:
            answers, slowest = [], 0.0
            for _ in range(20):
                began = time.monotonic()
                answers.append(self._healthz())
                slowest = max(slowest, time.monotonic() - began)
                time.sleep(0.02)
        self.assertEqual(answers, [200] * 20, self.nudge.log())
        self.assertEqual(refused_counts(self.nudge.admin_url)["max_connections"], 0.0)
        evicted = self._metric("nudge_admin_connections_evicted_total")
        self.assertGreaterEqual(evicted, 20)
        print(f"e2e reload: 20 of 20 /healthz answered 200 (slowest {slowest * 1000:.0f} ms) against 4 idle holders "
              f"reopened {reopened[0]} times; {evicted:.0f} idle connections evicted, 0 refused")

    def test_a_request_in_progress_is_not_the_admin_connection_that_gives_way(self):
        host, port = self.nudge.admin_url.split("://", 1)[1].rsplit(":", 1)
        slow = socket.create_connection((host, int(port)), timeout=5)
        self.addCleanup(slow.close)
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.05)
        # The slow request is the oldest connection; three idle holders fill the rest.
        with self._idle_holders(3):
            answers = [self._healthz() for _ in range(10)]
            self.assertFalse(self._closed(slow), "the request in progress was cut for a newcomer")
        self.assertEqual(answers, [200] * 10, self.nudge.log())
        slow.setblocking(True)
        slow.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertTrue(slow.recv(100).startswith(b"HTTP/1.1 200"), "the slow request, finished, is answered")

    @contextlib.contextmanager
    def _idle_holders(self, count):
        """`count` admin connections that send nothing, each reopened as soon as the server closes it;
        yields [times reopened]."""
        host, port = self.nudge.admin_url.split("://", 1)[1].rsplit(":", 1)
        address = (host, int(port))
        stop = threading.Event()
        reopened = [0]
        held = [self._open_idle(address) for _ in range(count)]

        def hold():
            while not stop.is_set():
                for i, s in enumerate(held):
                    if self._closed(s):
                        s.close()
                        held[i] = self._open_idle(address)
                        reopened[0] += 1
                time.sleep(0.002)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            time.sleep(0.2)  # all accepted
            yield reopened
        finally:
            stop.set()
            holder.join()
            for s in held:
                s.close()

    def _healthz(self):
        try:
            return admin_get(self.nudge.admin_url, "/healthz", timeout=2)[0]
        except OSError as e:
            return repr(e)

    @staticmethod
    def _open_idle(address):
        s = socket.create_connection(address, timeout=5)
        s.setblocking(False)
        return s

    @staticmethod
    def _closed(s):
        s.setblocking(False)
        try:
            return s.recv(100) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _metric(self, name):
        return sum(value for (n, _), value in nudge_test.scrape_metrics(self.nudge.admin_url) if n == name)

    def test_without_a_token_reload_is_refused_with_the_hint_and_sighup_still_works(self):
        self.nudge.stop()
        self.values.update(admin_auth="", admin_port=free_port(), listen=f"127.0.0.1:{free_port()}")
        self.write()
        bare = NudgeProcess(self.file, name="nudge-no-token")
        self.addCleanup(bare.kill)
        bare.wait_started(30)
        self.assertTrue(any("POST /reload and GET /tap off: no admin token" in line for line in bare.log_lines), bare.log())
        self.write(max_length=20)
        status, body = admin_get(bare.admin_url, "/reload", "POST", headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(status, 403)
        for hint in ("no admin token is configured", "[admin] token", "token_file", "SIGHUP"):
            self.assertIn(hint, body)
        code, out = reload_cli(bare.admin_url, "--token", TOKEN)
        self.assertEqual(code, 1, out)
        self.assertIn("POST /reload is turned off", out)
        self.assertEqual(self.reloads_logged(bare), 0)
        self.assertEqual(admin_get(bare.admin_url, "/healthz")[0], 200, "reading needs no token")
        bare.signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: any("transform.filter.max_length: 100 -> 20" in line
                                               for line in bare.log_lines), 10), bare.log())
        self.assertEqual(bare.stop(), 0, bare.log())
        print("e2e reload: with no admin token POST /reload is refused (403 with the hint), SIGHUP still reloads")


if __name__ == "__main__":
    nudge_test.main()
