"""Fault tests on a three-broker Kafka cluster (scripts/services/kafka-cluster):
pipelines/chat-ha.toml (replication factor 3, min.insync.replicas 2) under
steady traffic while brokers are killed, frozen, restarted one by one, lost
two at a time, and while the controller quorum loses its leader.

Each test checks what faultlib.verdict checks (every acked message in its own
PostgreSQL table exactly once, every send answered, explicit error codes only)
and prints sent/acked/persisted/errors, how long acks paused after the fault
and the catch-up time after it ended. Only the cluster's own nodes are
touched; Redis and PostgreSQL are used, never stopped."""
import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from faultlib import Cluster, Load, catch_up, in_thread, say, verdict  # noqa: E402
import nudge_test  # noqa: E402

HA = os.path.join(nudge_test.PIPELINES, "chat-ha.toml")
KCLUSTER = os.path.join(nudge_test.SERVICES, "kafka-cluster")
BROKERS = os.environ.get("KAFKA_CLUSTER_BROKERS", "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094")
NODES = (1, 2, 3)


def kc(*args, timeout=120):
    out = subprocess.run([KCLUSTER, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"kafka-cluster {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout.strip()


def reachable(url):
    """Something accepts TCP connections at the URL's host:port (a server run
    from another checkout's scripts counts: only the cluster's status is ours)."""
    m = re.match(r"\w+://(?:[^@/]*@)?([^:/]+):(\d+)", url)
    try:
        socket.create_connection((m.group(1), int(m.group(2))), 2).close()
        return True
    except OSError:
        return False


def cluster_up():
    return (reachable(nudge_test.REDIS_URL) and reachable(nudge_test.DATABASE_URL)
            and nudge_test.service_running("kafka-cluster"))


def metadata(topic=None):
    """(brokers seen, {(topic, partition): (leader, replicas, isrs)}) from kcat -L."""
    args = ["kcat", "-b", BROKERS, "-L", "-m", "5"] + (["-t", topic] if topic else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
    brokers = {int(b) for b in re.findall(r"broker (\d+) at", out)}
    parts, current = {}, None
    for line in out.splitlines():
        m = re.match(r'\s*topic "([^"]+)"', line)
        if m:
            current = m.group(1)
        m = re.match(r"\s*partition (\d+), leader (-?\d+), replicas: ([\d,]*), isrs: ([\d,]*)", line)
        if m and current:
            split = lambda s: {int(x) for x in s.split(",") if x}  # noqa: E731
            parts[(current, int(m.group(1)))] = (int(m.group(2)), split(m.group(3)), split(m.group(4)))
    return brokers, parts


def wait_healthy(timeout=90):
    """Every node running and every partition (internal ones too) fully in sync."""
    for n in NODES:
        if subprocess.run([KCLUSTER, "pid", str(n)], capture_output=True).returncode != 0:
            kc("start-node", n)
    deadline = time.monotonic() + timeout
    while True:
        brokers, parts = metadata()
        if brokers == set(NODES) and all(l in NODES and r == i for l, r, i in parts.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster did not heal in {timeout} s: brokers {brokers}, "
                                 f"out of sync: {[(k, v) for k, v in parts.items() if v[1] != v[2]]}")
        time.sleep(0.5)


def busiest_partition(topic):
    """(partition, leader) of the partition holding the most records."""
    _, parts = metadata(topic)
    asked = [a for (t, p) in parts if t == topic for a in ("-t", f"{topic}:{p}:-1")]
    out = subprocess.run(["kcat", "-b", BROKERS, "-Q", *asked], capture_output=True, text=True, timeout=30).stdout
    ends = {int(p): int(o) for p, o in re.findall(r"\[(\d+)\] offset (\d+)", out)}
    assert ends, f"no end offsets for {topic}: {out}"
    partition = max(ends, key=ends.get)
    return partition, parts[(topic, partition)][0]


def ack_pause(load, since):
    """The longest stretch without any ack from `since` on (seconds)."""
    times = sorted(t for c in load.clients for t in c.ack_times.values() if t >= since - 1)
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


@unittest.skipUnless(cluster_up(), "needs redis, postgres and kafka-cluster: scripts/services/<name> start")
class KafkaClusterFaults(faultlib.FaultTest):
    def setUp(self):
        super().setUp()
        wait_healthy()
        # A frozen node must never outlive its test.
        self.addCleanup(lambda: [subprocess.run([KCLUSTER, "resume", str(n)], capture_output=True) for n in NODES])

    def start(self, overrides=()):
        cluster = Cluster(self, 2, overrides=overrides, env={"KAFKA_CLUSTER_BROKERS": BROKERS}, pipeline=HA)
        return cluster, Load(cluster)

    def report(self, name, load, fault_at, heal_at, caught):
        say(f"{name}: acks paused at most {ack_pause(load, fault_at):.1f} s from the fault on; "
            f"fault lasted {heal_at - fault_at:.1f} s; caught up "
            f"{'never' if caught is None else f'{caught:.1f} s'} after it ended")

    def test_busiest_leader_killed_then_restarted(self):
        started = time.monotonic()
        cluster, load = self.start()
        topic = cluster.env["NUDGE_TOPIC"]
        # The topic the log made holds the promise, and says so once.
        self.assertTrue(nudge_test.wait_until(lambda: any(
            f"topic '{topic}': replication factor 3, min.insync.replicas 2" in line
            for line in cluster.instances[0].log_lines), 15), "the topic's replication was checked")

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            partition, leader = await in_thread(busiest_partition, topic)
            fault_at = time.monotonic()
            await in_thread(kc, "kill", leader)
            await asyncio.sleep(5)
            await in_thread(kc, "start-node", leader)
            heal_at = time.monotonic()
            say(f"leader killed: partition {partition}'s leader, node {leader}, SIGKILLed; back after "
                f"{heal_at - fault_at:.1f} s")
            caught = await catch_up(cluster, load, heal_at, 30)
            await asyncio.sleep(2)
            await load.stop()
            self.report("leader killed", load, fault_at, heal_at, caught)
            return caught

        caught = faultlib.run(scenario())
        # delivery_timeout_ms (30 s) outlasts the election: nothing is refused.
        verdict(self, "leader killed", cluster, load, caught, 30, started, allow_errors=False)
        cluster.stop_all()

    def test_zombie_leader_frozen_15s(self):
        started = time.monotonic()
        cluster, load = self.start()
        topic = cluster.env["NUDGE_TOPIC"]

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            partition, leader = await in_thread(busiest_partition, topic)
            fault_at = time.monotonic()
            await in_thread(kc, "pause", leader)
            await asyncio.sleep(15)
            _, parts = await in_thread(metadata, topic)
            moved = parts[(topic, partition)][0]
            await in_thread(kc, "resume", leader)
            heal_at = time.monotonic()
            say(f"zombie leader: node {leader} (partition {partition}) frozen 15 s; "
                f"the partition's leader meanwhile: node {moved}")
            self.assertNotEqual(moved, leader, "a frozen leader is replaced")
            caught = await catch_up(cluster, load, heal_at, 40)
            await asyncio.sleep(2)
            await load.stop()
            self.report("zombie leader", load, fault_at, heal_at, caught)
            return caught, ack_pause(load, fault_at)

        caught, pause = faultlib.run(scenario())
        verdict(self, "zombie leader", cluster, load, caught, 40, started)
        # The other replicas take over well within the freeze: acks do not wait for SIGCONT.
        self.assertLess(pause, 15, "acks resumed while the old leader was still frozen")
        cluster.stop_all()

    def test_rolling_restart(self):
        started = time.monotonic()
        cluster, load = self.start()

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            fault_at = time.monotonic()
            for n in NODES:
                t0 = time.monotonic()
                await in_thread(kc, "restart", n)
                await in_thread(wait_healthy)  # in sync again before the next one goes
                say(f"rolling restart: node {n} restarted and back in sync in {time.monotonic() - t0:.1f} s")
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 30)
            await asyncio.sleep(2)
            await load.stop()
            self.report("rolling restart", load, fault_at, heal_at, caught)
            return caught

        caught = faultlib.run(scenario())
        verdict(self, "rolling restart", cluster, load, caught, 30, started, allow_errors=False)
        cluster.stop_all()

    def test_two_of_three_down(self):
        """Below min.insync.replicas nothing may be acked: with delivery_timeout_ms
        5000 senders get `unavailable` errors, then acks resume once one broker is back."""
        started = time.monotonic()
        cluster, load = self.start(overrides=["log.kafka.delivery_timeout_ms=5000"])

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            fault_at = time.monotonic()
            await in_thread(kc, "kill", 2)
            await in_thread(kc, "kill", 3)
            await asyncio.sleep(12)
            errors_down = len(load.errors())
            back_at = time.monotonic()
            await in_thread(kc, "start-node", 2)
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 30)
            resumed = min((t for c in load.clients for r, t in c.ack_times.items() if c.sent[r][1] >= heal_at),
                          default=None)
            await asyncio.sleep(3)
            acked_after = load.acked_between(heal_at, time.monotonic())
            await load.stop()
            # With one broker left no ack can arrive (min.insync.replicas 2); the
            # first seconds may still deliver acks for what was replicated before.
            late = sum(1 for c in load.clients for t in c.ack_times.values() if fault_at + 4 <= t < back_at)
            say(f"two down: {errors_down} errors while down; node 2 back after {back_at - fault_at:.1f} s "
                f"(answering {heal_at - back_at:.1f} s later); first new ack "
                f"{'never' if resumed is None else f'{resumed - heal_at:.1f} s'} after that; "
                f"{acked_after} acked after; {late} acks arrived from 4 s into the outage until node 2 was started")
            self.report("two down", load, fault_at, heal_at, caught)
            return caught, errors_down, acked_after, late

        caught, errors_down, acked_after, late = faultlib.run(scenario())
        counts = verdict(self, "two of three down", cluster, load, caught, 30, started)
        self.assertGreater(errors_down, 0, "senders were told (unavailable) while writes could not be confirmed")
        self.assertEqual(late, 0, "no ack while a single broker could confirm a message")
        self.assertGreater(acked_after, 0, "acks resume once one broker is back")
        self.assertEqual({e.get("code") for _, _, e in load.errors()}, {"unavailable"})
        self.assertGreater(counts["errors"], 0)
        cluster.stop_all()

    def test_controller_quorum_leader_killed(self):
        started = time.monotonic()
        cluster, load = self.start()

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            leader = int(await in_thread(kc, "leader"))
            fault_at = time.monotonic()
            await in_thread(kc, "kill", leader)
            new = None
            while new is None or new == leader:
                try:
                    new = int(await in_thread(kc, "leader"))
                except (AssertionError, ValueError):
                    new = None
                self.assertLess(time.monotonic() - fault_at, 30, "no new quorum leader within 30 s")
            elected = time.monotonic() - fault_at
            await asyncio.sleep(2)
            await in_thread(kc, "start-node", leader)
            heal_at = time.monotonic()
            say(f"quorum leader killed: node {leader}; node {new} leads the quorum {elected:.1f} s later "
                f"(as seen by the tool); node {leader} back after {heal_at - fault_at:.1f} s")
            caught = await catch_up(cluster, load, heal_at, 30)
            await asyncio.sleep(2)
            await load.stop()
            self.report("quorum leader killed", load, fault_at, heal_at, caught)
            return caught

        caught = faultlib.run(scenario())
        verdict(self, "quorum leader killed", cluster, load, caught, 30, started, allow_errors=False)
        cluster.stop_all()

    def test_weak_topic_is_named_in_a_warning(self):
        """A topic whose leader could ack alone (min.insync.replicas 1) is named once, with the fix."""
        suffix = nudge_test.unique_suffix()
        topic = f"fault.weak.{suffix}"
        env = {"KAFKA_CLUSTER_BROKERS": BROKERS, "NUDGE_TOPIC": topic, "NUDGE_GROUP": f"fault-weak-{suffix}",
               "NUDGE_TABLE": f"fault_weak_{suffix}", "NUDGE_RECENT_PREFIX": f"fault:{suffix}:recent:"}
        self.addCleanup(lambda: nudge_test.psql(f"DROP TABLE IF EXISTS fault_weak_{suffix}"))
        n = nudge_test.NudgeProcess(HA, "source.websocket.listen=127.0.0.1:0", "log.kafka.min_insync_replicas=1",
                                    "admin.listen=127.0.0.1:0", env=env)
        self.addCleanup(n.kill)
        n.wait_started(60)
        warned = nudge_test.wait_until(lambda: [l for l in n.log_lines if "cannot hold what an ack promises" in l], 15)
        self.assertTrue(warned, "\n".join(n.log_lines[-30:]))
        self.assertEqual(len(warned), 1, "said once")
        self.assertIn(f"topic '{topic}'", warned[0])
        self.assertIn("replication factor 3 and min.insync.replicas 1", warned[0])
        self.assertIn("min.insync.replicas=2", warned[0])
        self.assertIn(" WARN ", warned[0])
        # The figures stay on /metrics for alerting.
        figures = {name: value for (name, _), value in nudge_test.scrape_metrics(n.admin_url)
                   if name.startswith("nudge_log_kafka_topic_")}
        self.assertEqual(figures.get("nudge_log_kafka_topic_replication_factor"), 3, figures)
        self.assertEqual(figures.get("nudge_log_kafka_topic_min_insync_replicas"), 1, figures)
        say(f"weak topic: {warned[0].split('] ', 1)[-1][:160]}...")
        self.assertEqual(n.stop(30), 0)
        # A topic the operators manage (create_topic = false) is checked all the same.
        managed = nudge_test.NudgeProcess(HA, "source.websocket.listen=127.0.0.1:0", "log.kafka.create_topic=false",
                                          env=env)
        self.addCleanup(managed.kill)
        managed.wait_started(60)
        self.assertTrue(nudge_test.wait_until(lambda: any(
            f"topic '{topic}' cannot hold what an ack promises" in line and "min.insync.replicas is 1 where "
            "min_insync_replicas = 2 is configured" in line for line in managed.log_lines), 15),
            "\n".join(managed.log_lines[-30:]))
        self.assertEqual(managed.stop(30), 0)


if __name__ == "__main__":
    nudge_test.main()
