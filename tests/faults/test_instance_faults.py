"""Fault test: a runtime instance dies at the worst moment — the fail point
after_sink_commit SIGKILLs it once PostgreSQL committed a batch and before
the log stored that batch's position — while clients keep sending. The
consumer group rebalances: the surviving instance takes the dead one's
partitions and reads the uncommitted batch again (no second row); the dead
instance is restarted and takes a share back. (faultlib.py: what every fault
test checks.)

Kafka drops a member that vanished without leaving the group only when its
session times out ([log.kafka] session_timeout_ms, set here to its default,
10 s), so the partitions of a killed instance wait that long: the catch-up
bound is that plus 30 s."""
import asyncio
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from faultlib import Cluster, Load, catch_up, needs_servers, psql, verdict  # noqa: E402
import nudge_test  # noqa: E402

SESSION_TIMEOUT_S = 10
KAFKA_LIBS = os.path.join(os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var")),
                          "services", "kafka", "libs")


def committed_offsets(group):
    """partition -> offset the group committed, from Kafka's own tool; None if
    the tool cannot run here."""
    if not os.path.isdir(KAFKA_LIBS):
        return None
    out = faultlib.sh("java", "-cp", os.path.join(KAFKA_LIBS, "*"),
                      "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                      nudge_test.KAFKA_BROKERS.split(",")[0], "--describe", "--group", group, check=False)
    offsets = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == group and f[2].isdigit():
            offsets[int(f[2])] = int(f[3]) if f[3].isdigit() else 0
    return offsets


@needs_servers
class InstanceFaults(faultlib.FaultTest):
    def wait_for(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.2)

    def test_killed_between_sink_commit_and_offset_store_then_rebalanced_and_restarted(self):
        started = time.monotonic()
        cluster = Cluster(self, 1, overrides=[f"log.kafka.session_timeout_ms={SESSION_TIMEOUT_S * 1000}"])
        a = cluster.instances[0]
        b = cluster.start(name="nudge1", env={"NUDGE_FAILPOINTS": "after_sink_commit:kill@40"})
        self.wait_for("both instances to own partitions",
                      lambda: cluster.assigned_partitions(a) and cluster.assigned_partitions(b), 60)
        load = Load(cluster)

        async def scenario():
            await load.start()
            while b.proc.poll() is None and time.monotonic() - load.started_at < 60:
                await asyncio.sleep(0.05)
            killed_at = time.monotonic()
            self.assertIsNotNone(b.proc.poll(), "the fail point killed the instance")
            cluster.retired.append(b)
            held = cluster.assigned_partitions(b)
            faultlib.say(f"fail point: nudge1 killed {killed_at - load.started_at:.1f} s into the load, "
                         f"holding partitions {sorted(held)}")
            committed = await asyncio.to_thread(committed_offsets, cluster.env["NUDGE_GROUP"])
            stored = await asyncio.to_thread(
                psql, f"SELECT log_partition, max(log_offset) + 1 FROM {cluster.table} GROUP BY log_partition")
            stored = {int(p): int(o) for p, o in stored}
            # The window the fail point opens: rows in PostgreSQL past the committed position.
            ahead = {p: (committed.get(p, 0), stored[p]) for p in held
                     if committed is not None and p in stored and stored[p] > committed.get(p, 0)}
            faultlib.say(f"fail point: committed offsets {committed}, rows up to {stored}; "
                         f"partitions with rows past the commit (to be read again): {ahead}")

            # The survivor takes the dead member's partitions once its session expired.
            deadline = killed_at + SESSION_TIMEOUT_S + 30
            while not held <= cluster.assigned_partitions(a) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            took_over = time.monotonic() - killed_at
            taken = cluster.assigned_partitions(a)
            # The instance comes back and the group rebalances again.
            restarted = await asyncio.to_thread(cluster.start, "nudge1", (), {}, 1)
            back_at = time.monotonic()
            while not cluster.assigned_partitions(restarted) and time.monotonic() < back_at + 30:
                await asyncio.sleep(0.2)
            rejoined = time.monotonic() - back_at
            caught = await catch_up(cluster, load, killed_at, SESSION_TIMEOUT_S + 30)
            await asyncio.sleep(2)
            await load.stop()
            return held, ahead, took_over, taken, restarted, rejoined, caught, committed

        held, ahead, took_over, taken, restarted, rejoined, caught, committed = faultlib.run(scenario())
        self.assertIn("fail point 'after_sink_commit' reached", b.log(), "the kill came from the fail point")
        self.assertTrue(held, "the killed instance owned partitions")
        if committed is not None:
            self.assertTrue(ahead, "the killed instance left rows in PostgreSQL past its committed offsets")
        faultlib.say(f"rebalance: nudge0 took partitions {sorted(held)} {took_over:.1f} s after the kill "
                     f"(now holds {sorted(taken)}); the restarted nudge1 got "
                     f"{sorted(cluster.assigned_partitions(restarted))} {rejoined:.1f} s after it started")
        self.assertTrue(held <= taken, "the surviving instance took the dead one's partitions:\n" +
                        "\n".join(line for line in cluster.instances[0].log_lines if "partitions" in line))
        self.assertTrue(any(re.search(r"assigned partitions \[", line) for line in restarted.log_lines),
                        "the restarted instance was assigned partitions")
        verdict(self, "kill after sink commit + rebalance", cluster, load, caught, SESSION_TIMEOUT_S + 30,
                started, allow_errors=False, expect_severed=True)
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
