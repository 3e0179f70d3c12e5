"""Fault test: Kafka's port blackholed for 20 s — every packet to and from
127.0.0.1:9092 silently dropped by iptables, so connections neither fail nor
progress — under steady traffic. (faultlib.py: what every fault test checks.)

The kernel has no sch_netem, so this uses netfilter, which needs a network of
its own: the test re-runs itself inside `unshare -n` (a new network
namespace with only a loopback), with its own NUDGE_VAR_DIR, and starts its
own Redis, PostgreSQL and Kafka there. Nothing outside the namespace is
touched, so it runs the same next to the shared servers. Needs root, unshare
and iptables (scripts/install-deps); skips without them."""
import asyncio
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
import nudge_test  # noqa: E402

INSIDE = os.environ.get("NUDGE_FAULTS_NETNS") == "1"
VAR = os.environ.get("NUDGE_FAULTS_NETNS_VAR", "/tmp/nudge-faults-netns-var")
KAFKA_PORT = 9092
BLACKHOLE_S = 20
RULES = [["OUTPUT", "-p", "tcp", "--dport", str(KAFKA_PORT), "-j", "DROP"],
         ["OUTPUT", "-p", "tcp", "--sport", str(KAFKA_PORT), "-j", "DROP"]]


def why_not_runnable():
    if os.geteuid() != 0:
        return "needs root (unshare -n and iptables)"
    for tool in ("unshare", "iptables", "ip"):
        if not shutil.which(tool):
            return f"needs '{tool}' (scripts/install-deps installs iptables)"
    return None


def seed_kafka_jars():
    """The broker's jars come from Maven, which the namespace cannot reach:
    hard-link (or copy) those of the usual var dir when ours has none."""
    ours = os.path.join(VAR, "services", "kafka", "libs")
    if os.path.exists(os.path.join(ours, ".complete")):
        return
    outer = os.path.join(os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var")),
                         "services", "kafka", "libs")
    if not os.path.exists(os.path.join(outer, ".complete")):
        return  # maven resolves them from ~/.m2 if it can
    os.makedirs(os.path.dirname(ours), exist_ok=True)
    shutil.rmtree(ours, ignore_errors=True)
    if subprocess.run(["cp", "-al", outer, ours], capture_output=True).returncode != 0:
        shutil.rmtree(ours, ignore_errors=True)
        shutil.copytree(outer, ours)


@unittest.skipIf(INSIDE, "runs the namespace's side below")
class Blackhole(faultlib.FaultTest):
    def test_kafka_port_blackholed_20s_in_a_network_namespace(self):
        reason = why_not_runnable()
        if reason:
            self.skipTest(reason)
        seed_kafka_jars()
        env = dict(os.environ, NUDGE_FAULTS_NETNS="1", NUDGE_VAR_DIR=VAR, REDIS_URL="redis://127.0.0.1:6379",
                   DATABASE_URL="postgresql://nudge:nudge@127.0.0.1:5432/nudge", KAFKA_BROKERS="127.0.0.1:9092")
        t0 = time.monotonic()
        code = subprocess.run(["unshare", "-n", "--", sys.executable, os.path.abspath(__file__)], env=env,
                              timeout=600).returncode
        faultlib.say(f"blackhole: the namespace's run took {time.monotonic() - t0:.1f} s")
        self.assertEqual(code, 0, "the test inside the network namespace failed (its output is above)")


@unittest.skipUnless(INSIDE, "runs inside `unshare -n` only")
class BlackholeInside(faultlib.FaultTest):
    @classmethod
    def setUpClass(cls):
        faultlib.sh("ip", "link", "set", "lo", "up")
        cls.iptables_error = None
        probe = subprocess.run(["iptables", "-S", "OUTPUT"], capture_output=True, text=True)
        if probe.returncode != 0:
            cls.iptables_error = probe.stderr.strip()
            return
        cls.started = []
        t0 = time.monotonic()
        try:
            for name in faultlib.SERVICES:
                faultlib.service(name, "start")
                cls.started.append(name)
        except Exception:
            cls.tearDownClass()
            raise
        faultlib.say(f"blackhole: servers up in the namespace in {time.monotonic() - t0:.1f} s")

    @classmethod
    def tearDownClass(cls):
        # Servers in the namespace would keep it (and their ports) alive.
        for name in reversed(getattr(cls, "started", [])):
            faultlib.service(name, "stop", check=False)

    def drop(self, on):
        for rule in RULES:
            faultlib.sh("iptables", "-I" if on else "-D", *rule)

    def test_kafka_port_blackholed(self):
        if self.iptables_error:
            self.skipTest(f"iptables does not work in this network namespace: {self.iptables_error}")
        started = time.monotonic()
        cluster = faultlib.Cluster(self, 2)
        load = faultlib.Load(cluster)
        self.addCleanup(lambda: subprocess.run(["iptables", "-F", "OUTPUT"], capture_output=True))

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            await faultlib.in_thread(self.drop, True)
            down_at = time.monotonic()
            acks_before = len(load.acked())
            await asyncio.sleep(BLACKHOLE_S)
            acks_during = len(load.acked()) - acks_before
            await faultlib.in_thread(self.drop, False)
            heal_at = time.monotonic()
            caught = await faultlib.catch_up(cluster, load, heal_at, 45)
            await asyncio.sleep(2)
            await load.stop()
            return caught, acks_during, load.acked_between(down_at, heal_at)

        caught, acks_during, acked_later = faultlib.run(scenario())
        faultlib.say(f"blackhole: {acks_during} acks arrived during the {BLACKHOLE_S} s blackhole; "
                     f"{acked_later} messages sent during it were acked after it")
        self.assertLess(acks_during, 20, "the blackhole really cut the runtime off from Kafka")
        faultlib.verdict(self, f"kafka blackholed {BLACKHOLE_S} s", cluster, load, caught, 45, started)
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
