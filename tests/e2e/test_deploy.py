"""End to end: `nudge deploy up|status|down` with three instances of
pipelines/chat.toml behind nginx, on the real servers (Redis, Kafka,
PostgreSQL; scripts/test starts them).

What must hold: clients connecting to nginx's one public port are spread over
the instances and reach each other across them; `status` shows every instance
ready; an instance killed with SIGKILL is restarted by the supervisor (new pid,
restarts = 1, ready again within 15 s) and clients connecting afterwards still
reach the others; `down` leaves no process behind and frees every port.
Skips when nginx (Debian's nginx-light) is not installed or a server is down."""
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient  # noqa: E402

NGINX = "/usr/sbin/nginx"
CHAT = os.path.abspath(os.path.join(nudge_test.PIPELINES, "chat.toml"))
SERVICES = ("redis", "kafka", "postgres")
ROOM = "lobby"


def nginx_installed():
    return os.access(NGINX, os.X_OK)


def servers_up():
    return all(nudge_test.service_running(s) for s in SERVICES)


def free_ports(n):
    """n distinct ports free right now (held open together while picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def alive(pid):
    """Running (a zombie left to an init that does not reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def http_get(url, timeout=3):
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def write_deployment(folder, name, public, instances, shared, ready_timeout=60):
    lines = ["[deployment]", f'name = "{name}"', f'listen = "127.0.0.1:{public}"', 'state_dir = "state"',
             f"ready_timeout_s = {ready_timeout}", "", "[shared]"]
    lines += [f'{k} = "{v}"' for k, v in shared.items()]
    for inst, listen, admin in instances:
        lines += ["", "[[instance]]", f'name = "{inst}"', f'pipeline = "{CHAT}"', f'listen = "127.0.0.1:{listen}"',
                  f'admin = "127.0.0.1:{admin}"']
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class DeployFixture(unittest.TestCase):
    """A deployment file in a temp folder, and a cleanup that stops whatever it started."""

    def make(self, shared, count=3, ready_timeout=60):
        self.folder = nudge_test.temp_dir(self)
        ports = free_ports(1 + 2 * count)
        self.public = ports[0]
        self.instances = [(f"chat-{i + 1}", ports[1 + 2 * i], ports[2 + 2 * i]) for i in range(count)]
        self.file = write_deployment(self.folder, "e2e", self.public, self.instances, shared, ready_timeout)
        self.state_dir = os.path.join(self.folder, "state")
        self.addCleanup(self.cleanup)

    def deploy(self, command, timeout=120):
        return subprocess.run([nudge_test.NUDGE, "deploy", command, self.file], capture_output=True, text=True,
                              timeout=timeout)

    def state(self):
        with open(os.path.join(self.state_dir, "state.toml"), "rb") as f:
            return {c["name"]: c for c in tomllib.load(f)["child"]}

    def supervisor_pid(self):
        try:
            with open(os.path.join(self.state_dir, "supervisor.pid")) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def known_pids(self):
        pids = {self.supervisor_pid()}
        try:
            pids |= {c["pid"] for c in self.state().values()}
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            pass
        return {p for p in pids if p}

    def cleanup(self):
        # The supervisor first (it stops its children); then anything left, by pid.
        pids = self.known_pids()
        if any(alive(p) for p in pids):
            try:
                self.deploy("down", timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for p in self.known_pids() | pids:
            if alive(p) and ("nudge" in cmdline(p) or "nginx" in cmdline(p)):
                os.kill(p, signal.SIGKILL)

    def logs(self):
        out = []
        for name in ["supervisor", "nginx"] + [i[0] for i in self.instances]:
            path = os.path.join(self.state_dir, f"{name}.log")
            if os.path.exists(path):
                with open(path) as f:
                    out.append(f"--- {name}.log\n" + "".join(f.readlines()[-30:]))
        return "\n".join(out)


@unittest.skipUnless(nginx_installed(), f"needs nginx at {NGINX}: apt-get install nginx-light (scripts/install-deps)")
class DeployChecksTest(DeployFixture):
    """What `up` refuses before starting anything; needs no server."""

    def test_unreachable_shared_server_is_named(self):
        dead = free_ports(1)[0]
        self.make({"REDIS_URL": f"redis://127.0.0.1:{dead}", "NUDGE_TOPIC": "not.an.address"}, count=1)
        out = self.deploy("up", timeout=30)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn(f"shared server REDIS_URL (127.0.0.1:{dead}) is not reachable", out.stderr)
        self.assertNotIn("NUDGE_TOPIC", out.stderr)
        self.assertEqual(self.supervisor_pid(), 0, "nothing may start")

    def test_invalid_file_reports_line_and_key(self):
        self.make({}, count=2)
        with open(self.file) as f:
            text = f.read()
        # A port used twice and an unknown key, both reported.
        text = text.replace(f'listen = "127.0.0.1:{self.instances[1][1]}"',
                            f'listen = "127.0.0.1:{self.instances[0][1]}"\ncolour = "red"')
        with open(self.file, "w") as f:
            f.write(text)
        out = self.deploy("up", timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr, rf"e2e\.toml:\d+:\d+: instance\.chat-2\.listen: port {self.instances[0][1]} "
                                     r"is already used by instance\.chat-1\.listen")
        self.assertRegex(out.stderr, r"e2e\.toml:\d+:\d+: instance\.chat-2: unknown key 'colour'")
        self.assertIn("2 errors in", out.stderr)

    def test_pipeline_errors_stop_up_before_anything_starts(self):
        self.make({}, count=2)
        with open(self.file) as f:
            text = f.read()
        # A wrong type for a key: an error only `nudge validate` finds.
        broken = os.path.join(self.folder, "broken.toml")
        with open(CHAT) as f, open(broken, "w") as out:
            out.write(f.read().replace("max_in_flight = 10000", "max_in_flight = \"many\""))
        text = text.replace(f'pipeline = "{CHAT}"', f'pipeline = "{broken}"', 1)
        with open(self.file, "w") as f:
            f.write(text)
        out = self.deploy("up", timeout=60)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn(f"instance 'chat-1': {broken} does not validate", out.stderr)
        self.assertIn("pipeline.max_in_flight: expected integer", out.stderr)
        self.assertNotIn("instance 'chat-2'", out.stderr)
        self.assertEqual(self.supervisor_pid(), 0, "nothing may start")

    def test_a_crashing_instance_is_restarted_with_backoff_and_named_by_up(self):
        self.make({}, count=1, ready_timeout=5)
        with open(self.file, "a") as f:
            # Makes `nudge run` exit 1 at once (a test-only setting it refuses to parse).
            f.write('env = { NUDGE_FAILPOINTS = "not-a-fail-point" }\n')
        t0 = time.monotonic()
        out = self.deploy("up", timeout=60)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertIn("not ready after 5 s", out.stderr)
        self.assertIn("chat-1: /readyz at", out.stderr)
        self.assertIn("NUDGE_FAILPOINTS: 'not-a-fail-point'", out.stderr)  # the tail of its log
        self.assertIn("`nudge deploy down", out.stderr)
        status = self.deploy("status", timeout=30)
        self.assertEqual(status.returncode, 1, status.stdout)
        with open(os.path.join(self.state_dir, "supervisor.log")) as f:
            log = f.read()
        delays = [float(d) for d in re.findall(r"instance 'chat-1' pid \d+ exited with status 1 after [\d.]+ s; "
                                               r"restarting it in ([\d.]+) s", log)]
        self.assertGreaterEqual(len(delays), 3, log)
        self.assertEqual(delays[:3], [0.5, 1.0, 2.0], log)
        self.assertGreaterEqual(self.state()["chat-1"]["restarts"], 2)
        out = self.deploy("down", timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual([p for p in self.known_pids() if alive(p)], [])

    def test_status_and_down_when_not_up(self):
        self.make({}, count=1)
        out = self.deploy("status", timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("down (no supervisor running)", out.stdout)
        out = self.deploy("down", timeout=30)
        self.assertEqual(out.returncode, 0)
        self.assertIn("is not up", out.stdout)


@unittest.skipUnless(nginx_installed(), f"needs nginx at {NGINX}: apt-get install nginx-light (scripts/install-deps)")
@unittest.skipUnless(servers_up(), f"needs {', '.join(SERVICES)}: scripts/services/<name> start")
class DeployClusterTest(DeployFixture):
    def setUp(self):
        suffix = nudge_test.unique_suffix()
        self.table = f"e2e_deploy_{suffix}"
        self.make({"REDIS_URL": nudge_test.REDIS_URL, "KAFKA_BROKERS": nudge_test.KAFKA_BROKERS,
                   "DATABASE_URL": nudge_test.DATABASE_URL,
                   # A fresh topic, group, history and table per run.
                   "NUDGE_RECENT_PREFIX": f"e2e:{suffix}:recent:", "NUDGE_TOPIC": f"e2e.deploy.{suffix}",
                   "NUDGE_GROUP": f"e2e-deploy-{suffix}", "NUDGE_TABLE": self.table})
        self.addCleanup(self.drop_table)

    def drop_table(self):
        try:
            nudge_test.psql(f"DROP TABLE IF EXISTS {self.table}")
        except AssertionError:
            pass

    # ------------------------------------------------------------ helpers

    def connections(self):
        """Open WebSocket connections per instance, from each one's /metrics."""
        out = {}
        for name, _, admin in self.instances:
            status, body = http_get(f"http://127.0.0.1:{admin}/metrics")
            m = re.search(r"^nudge_source_websocket_connections_open\{[^}]*\} (\S+)$", body, re.M)
            if status != 200 or not m:
                self.fail(f"{name}: no nudge_source_websocket_connections_open in /metrics "
                          f"(HTTP {status}); the admin endpoint's metrics are not landed yet?\n{body[:500]}")
            out[name] = int(float(m.group(1)))
        return out

    async def wait_connections(self, predicate, what, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            counts = self.connections()
            if predicate(counts):
                return counts
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}; connections per instance: {counts}")
            await asyncio.sleep(0.1)

    async def connect_through_nginx(self, names):
        """Connects clients one at a time through nginx; returns {client: instance it landed on}."""
        url = f"ws://127.0.0.1:{self.public}/ws"
        placed = {}
        for name in names:
            before = self.connections()
            c = ChatClient(url, name)
            await c.connect()
            await c.join(ROOM)
            after = await self.wait_connections(lambda n: sum(n.values()) == sum(before.values()) + 1,
                                                f"{name}'s connection to show in /metrics")
            grown = [i for i in after if after[i] > before[i]]
            self.assertEqual(len(grown), 1, f"{before} -> {after}")
            c.instance = grown[0]
            placed[c] = grown[0]
        return placed

    async def say_and_expect(self, sender, receivers, tag, timeout=30):
        """`sender` says something; every receiver gets it (the join may still be settling: say again)."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            text = f"{tag} {attempt}"
            await sender.say(ROOM, text, f"{tag}-{attempt}")
            try:
                for r in receivers:
                    await r.wait_for(lambda r=r: any(m["text"] == text for m in r.messages),
                                     min(5, max(0.1, deadline - time.monotonic())), f"'{text}' from {sender.name}")
                return
            except AssertionError:
                attempt += 1
                if time.monotonic() > deadline:
                    raise

    def status_rows(self):
        out = self.deploy("status", timeout=30)
        rows = {}
        for line in out.stdout.splitlines():
            m = re.match(r"^(chat-\d+|nginx)\s+(\d+|-)\s+(\w+)\s+(\d+|-)\s+(\S+)\s+(.+?)\s+127\.0\.0\.1:\d+", line)
            if m:
                rows[m.group(1)] = {"pid": m.group(2), "state": m.group(3), "restarts": m.group(4),
                                    "readyz": m.group(6).strip()}
        return out, rows

    # ------------------------------------------------------------ the scenario

    def test_up_spread_restart_down(self):
        t0 = time.monotonic()
        out = self.deploy("up")
        up_seconds = time.monotonic() - t0
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr + self.logs())
        for name, _, _ in self.instances:
            self.assertRegex(out.stdout, rf"{name} ready after")
        self.assertIn(f"http://127.0.0.1:{self.public}/", out.stdout)
        print(f"\ndeploy up: {up_seconds:.1f} s", flush=True)

        # Already up: says so, exit 0.
        again = self.deploy("up")
        self.assertEqual(again.returncode, 0)
        self.assertIn("already up", again.stdout)

        status, rows = self.status_rows()
        self.assertEqual(status.returncode, 0, status.stdout + status.stderr)
        self.assertEqual([n for n, r in rows.items() if n != "nginx" and r["readyz"] == "ready"],
                         ["chat-1", "chat-2", "chat-3"], status.stdout)
        self.assertEqual(rows["nginx"]["state"], "running", status.stdout)

        # The chat page comes through nginx too.
        code, body = http_get(f"http://127.0.0.1:{self.public}/")
        self.assertEqual(code, 200)

        asyncio.run(self.clients_and_restart())

        # down: nothing left, every port free.
        pids = self.known_pids()
        self.assertEqual(len(pids), 5, pids)  # supervisor, 3 instances, nginx
        t0 = time.monotonic()
        out = self.deploy("down")
        down_seconds = time.monotonic() - t0
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        print(f"deploy down: {down_seconds:.1f} s", flush=True)
        for name, _, _ in self.instances:
            self.assertRegex(out.stdout, rf"{name} stopped after")
        self.assertRegex(out.stdout, r"nginx stopped after")
        self.assertEqual([p for p in pids if alive(p)], [], "processes left after down")
        nginx_workers = [p for p in os.listdir("/proc") if p.isdigit() and self.state_dir in cmdline(int(p))]
        self.assertEqual(nginx_workers, [], "nginx processes left after down")
        ports = [self.public] + [p for _, listen, admin in self.instances for p in (listen, admin)]
        self.assertEqual([p for p in ports if not port_free(p)], [], "ports still held after down")
        status = self.deploy("status", timeout=30)
        self.assertEqual(status.returncode, 1)

    async def clients_and_restart(self):
        clients = {}
        try:
            # Six clients through the one public port: least_conn spreads them.
            placed = await self.connect_through_nginx([f"u{i}" for i in range(6)])
            clients.update(placed)
            counts = self.connections()
            print(f"connections per instance: {counts}", flush=True)
            self.assertEqual(sum(counts.values()), 6)
            self.assertTrue(all(n >= 1 for n in counts.values()), f"not spread over every instance: {counts}")

            # A message said on one instance reaches clients on every other one.
            sender = next(c for c, i in placed.items() if i == "chat-1")
            receivers = [c for c in placed if c is not sender]
            self.assertGreaterEqual(len({placed[c] for c in receivers}), 3)
            await self.say_and_expect(sender, receivers, "hello")

            # kill -9 one instance: the supervisor restarts it.
            victim = "chat-2"
            old = self.state()[victim]
            self.assertEqual(old["restarts"], 0)
            t0 = time.monotonic()
            os.kill(old["pid"], signal.SIGKILL)
            admin = dict((n, a) for n, _, a in self.instances)[victim]
            restarted_at = ready_at = None
            while time.monotonic() - t0 < 15:
                now = self.state()[victim]
                if restarted_at is None and now["pid"] not in (0, old["pid"]) and now["state"] == "running":
                    restarted_at = time.monotonic() - t0
                if restarted_at is not None and http_get(f"http://127.0.0.1:{admin}/readyz", 1)[0] == 200:
                    ready_at = time.monotonic() - t0
                    break
                await asyncio.sleep(0.1)
            self.assertIsNotNone(ready_at, f"{victim} not restarted and ready within 15 s\n" + self.logs())
            now = self.state()[victim]
            self.assertNotEqual(now["pid"], old["pid"])
            self.assertEqual(now["restarts"], 1)
            self.assertIn("killed by signal 9", now["last_exit"])
            print(f"restart after kill -9: new pid after {restarted_at:.1f} s, ready after {ready_at:.1f} s",
                  flush=True)
            with open(os.path.join(self.state_dir, "supervisor.log")) as f:
                self.assertIn(f"instance '{victim}' pid {old['pid']} was killed by signal 9", f.read())
            _, rows = self.status_rows()
            self.assertEqual(rows[victim]["restarts"], "1")
            self.assertEqual(rows[victim]["pid"], str(now["pid"]))

            # The clients of the killed instance lost their connection; new
            # ones land on it (fewest connections) and reach the others.
            await self.wait_connections(lambda n: n[victim] == 0, f"{victim} to show no connection")
            for c in [c for c, i in placed.items() if i == victim]:
                await c.close()
                del clients[c]
            fresh = await self.connect_through_nginx([f"v{i}" for i in range(2)])
            clients.update(fresh)
            self.assertIn(victim, fresh.values(), f"no new client landed on the restarted {victim}: {fresh}")
            newcomer = next(c for c, i in fresh.items() if i == victim)
            others = [c for c, i in clients.items() if i != victim]
            self.assertGreaterEqual(len({clients[c] for c in others}), 2)
            await self.say_and_expect(newcomer, others, "after-restart")
            survivor = next(c for c in others)
            await self.say_and_expect(survivor, [newcomer], "to-newcomer")
        finally:
            for c in clients:
                try:
                    await asyncio.wait_for(c.close(), 5)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort
                    pass


if __name__ == "__main__":
    nudge_test.main()
