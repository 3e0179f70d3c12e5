"""End to end: `nudge top` watching a running `nudge run pipelines/chat-embedded.toml`
inside a detached tmux session (a real terminal), while WebSocket clients send a
few hundred messages per second; the screen is read with `tmux capture-pane`."""
import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402

ROOMS = ["general", "random", "dev"]
CLIENTS = 8
RATE_PER_CLIENT = 40   # messages per second, under the source's default limit of 50
LOAD_SECONDS = 4.5


def human(text):
    """A cell of the table: '312', '0.5', '12.3k', '1.20M' or '-'."""
    if text == "-":
        return None
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    if text[-1] in scale:
        return float(text[:-1]) * scale[text[-1]]
    return float(text)


def stage_rows(screen):
    """{stage: {"in/s": .., "out/s": .., ...}} from the table on the screen."""
    rows = {}
    columns = None
    for line in screen.splitlines():
        cells = line.split()
        if cells[:1] == ["STAGE"]:
            columns = [c.lower() for c in cells[1:]]
        elif columns and cells and re.match(r"^(source|transform|fanout|log|sink)\.", cells[0]):
            rows[cells[0]] = dict(zip(columns, (human(c) for c in cells[1:])))
    return rows


@unittest.skipUnless(shutil.which("tmux"), "tmux is not installed (scripts/install-deps installs it)")
class TopTest(unittest.TestCase):
    def setUp(self):
        self.dir = nudge_test.temp_dir(self)
        self.nudge = nudge_test.NudgeProcess(
            os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
            "source.websocket.listen=127.0.0.1:0", "admin.listen=127.0.0.1:0",
            env={"NUDGE_DATA_DIR": self.dir})
        self.addCleanup(self.nudge.kill)
        self.nudge.wait_started()
        self.assertIsNotNone(self.nudge.admin_url, "no 'admin endpoint listening on' line:\n" + self.nudge.log())
        # A tmux server of our own (-L) so nothing touches anyone else's sessions.
        self.tmux_name = "nudge-top-" + nudge_test.unique_suffix()
        self.addCleanup(self.kill_tmux)

    def tmux(self, *args, check=True):
        out = subprocess.run(["tmux", "-L", self.tmux_name, *args], capture_output=True, text=True, timeout=10)
        if check and out.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def kill_tmux(self):
        subprocess.run(["tmux", "-L", self.tmux_name, "kill-server"], capture_output=True, timeout=10)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", self.tmux_name)

    def wait_screen(self, predicate, what, timeout=15):
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}\nnudge's log:\n{self.nudge.log()}")

    def test_live_rates_connections_and_back_to_zero(self):
        command = f"{shlex.quote(nudge_test.NUDGE)} top {self.nudge.admin_url}"
        self.tmux("new-session", "-d", "-s", self.tmux_name, "-x", "160", "-y", "50", command)
        # The first frame has totals and '-' for rates; the next ones have rates.
        idle = self.wait_screen(lambda s: stage_rows(s).get("source.websocket", {}).get("in/s") == 0,
                                "a frame with rates")
        self.assertIn("pipeline chat-embedded", idle)
        self.assertRegex(idle, r"(?m)uptime \S+\s+ready$")
        self.assertEqual(list(stage_rows(idle)), ["source.websocket", "fanout.memory", "sink.sqlite"],
                         "one row per stage, in pipeline order")

        busy, sent = asyncio.run(self.load())
        print("under load:\n" + busy)
        rows = stage_rows(busy)
        for stage in ("source.websocket", "sink.sqlite"):
            self.assertGreater(rows[stage]["in/s"], 0, f"{stage} IN/s under load")
            self.assertGreater(rows[stage]["out/s"], 0, f"{stage} OUT/s under load")
        # The load is about CLIENTS * RATE_PER_CLIENT per second; a frame's
        # interval may straddle the start, so only a loose lower bound.
        self.assertGreater(rows["source.websocket"]["in/s"], CLIENTS * RATE_PER_CLIENT / 4)
        self.assertLess(rows["source.websocket"]["in/s"], CLIENTS * RATE_PER_CLIENT * 2)
        m = re.search(r"connections (\S+)\s+rooms (\S+)", busy)
        self.assertIsNotNone(m, busy)
        self.assertEqual(human(m.group(1)), CLIENTS, "the clients connected")
        self.assertEqual(human(m.group(2)), len(ROOMS), "the rooms they joined")
        self.assertRegex(busy, r"ingest→ack p50 \S+  p99 \S+", "latencies from the histogram buckets")

        # The clients are gone: rates fall back to 0 and the totals stay.
        after = self.wait_screen(
            lambda s: all(r.get("in/s") == 0 and r.get("out/s") == 0 for r in stage_rows(s).values())
            and re.search(r"connections 0\b", s) is not None, "rates back at 0 after the load")
        print("after the load:\n" + after)
        totals = stage_rows(after)
        self.assertGreaterEqual(totals["source.websocket"]["in"], sent * 0.99, "IN counts every message taken in")
        self.assertIn("ingest→ack -", after, "no observations in the last interval")
        print(f"e2e top: {sent} messages sent at ~{CLIENTS * RATE_PER_CLIENT}/s; "
              f"top showed source IN/s {rows['source.websocket']['in/s']:.0f}, "
              f"sink IN/s {rows['sink.sqlite']['in/s']:.0f}")

    async def load(self):
        """CLIENTS clients send RATE_PER_CLIENT messages/s each for LOAD_SECONDS;
        returns the screen read near the end of the load, while every client
        is still connected, and how many messages were sent."""
        clients = []
        for i in range(CLIENTS):
            c = await nudge_test.ChatClient(self.nudge.ws_url, f"user{i}").connect()
            await c.join(ROOMS[i % len(ROOMS)])
            clients.append(c)
        async def talk(c, room):
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < LOAD_SECONDS:
                await c.say(room, f"{c.name} #{n}", f"r{n}")
                n += 1
                await asyncio.sleep(max(0, start + n / RATE_PER_CLIENT - time.monotonic()))
            return n

        talking = asyncio.gather(*(talk(c, ROOMS[i % len(ROOMS)]) for i, c in enumerate(clients)))
        # After 3 s of load, the last full interval of `top` lies inside it.
        await asyncio.sleep(LOAD_SECONDS - 1.2)
        screen = await asyncio.get_running_loop().run_in_executor(None, self.screen)
        counts = await talking
        for c, n in zip(clients, counts):
            await c.wait_for(lambda c=c, n=n: len(c.acks) == n, what=f"{n} acks")
        self.assertEqual([e for c in clients for e in c.errors], [], "no error frames (rate limit, ...)")
        for c in clients:
            await c.close()
        return screen, sum(counts)


class TopOnceTest(unittest.TestCase):
    """`nudge top --once`: one frame for scripts; exit 1 when nothing answers."""

    def test_once_prints_one_frame(self):
        d = nudge_test.temp_dir(self)
        nudge = nudge_test.NudgeProcess(os.path.join(nudge_test.PIPELINES, "chat-embedded.toml"),
                                        "source.websocket.listen=127.0.0.1:0", "admin.listen=127.0.0.1:0",
                                        env={"NUDGE_DATA_DIR": d})
        self.addCleanup(nudge.kill)
        nudge.wait_started()
        out = subprocess.run([nudge_test.NUDGE, "top", nudge.admin_url, "--once", "--interval", "300"],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("\x1b", out.stdout, "no terminal codes when not on a terminal")
        rows = stage_rows(out.stdout)
        self.assertEqual(list(rows), ["source.websocket", "fanout.memory", "sink.sqlite"], out.stdout)
        self.assertEqual(rows["sink.sqlite"]["in/s"], 0, "--once has rates: two fetches one interval apart")
        self.assertEqual(nudge.stop(), 0)

    def test_once_unreachable_exits_1(self):
        import socket
        with socket.socket() as s:  # a port that was just free
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        out = subprocess.run([nudge_test.NUDGE, "top", url, "--once"], capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 1)
        self.assertIn(f"cannot reach {url}: connection refused", out.stderr)


if __name__ == "__main__":
    nudge_test.main()
