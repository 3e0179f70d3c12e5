"""Persistence through a Redis Cluster master failover: pipelines/chat.toml with
the redis fanout in cluster mode (`cluster = true`, sharded Pub/Sub) on
scripts/services/redis-cluster (3 masters, 3 replicas), two instances and
clients sending in twelve rooms, while the master owning most of those rooms
is SIGKILLed and its replica takes over.

The fanout holds that master's publishes until the replica is promoted and
delivery comes back (nudge_redis_fanout_cluster_test measures that part); the
Kafka log and the PostgreSQL sink are another path, which the failover must
not touch: every send is answered, none with an error, and every acked message
is stored exactly once (faultlib.verdict). Prints sent/acked/persisted/errors,
how long acks paused and when the killed master's rooms delivered again.

Only the cluster's own nodes are touched (the killed one is relaunched and
rejoins as a replica); Kafka and PostgreSQL are used, never stopped. It kills
a master: run it against a cluster nobody else is using."""
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from faultlib import ROOMS, Cluster, Load, catch_up, in_thread, say, verdict  # noqa: E402
import nudge_test  # noqa: E402

CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "redis://127.0.0.1:7001")
HOST, PORT = re.match(r"redis://(?:[^@/]*@)?([^:/]+):(\d+)", CLUSTER_URL).groups()


def cli(*args, port=PORT, timeout=10):
    out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *map(str, args)], capture_output=True,
                         text=True, timeout=timeout)
    return out.stdout.strip() if out.returncode == 0 else ""


def cluster_ok():
    return "cluster_state:ok" in cli("cluster", "info")


def masters():
    """{port: (first slot, last slot) ranges} of the masters that serve slots, from CLUSTER NODES."""
    out = {}
    for line in cli("cluster", "nodes").splitlines():
        f = line.split()
        if len(f) > 8 and "master" in f[2] and "fail" not in f[2]:
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            out[port] = [tuple(int(x) for x in s.split("-")) if "-" in s else (int(s), int(s))
                         for s in f[8:] if not s.startswith("[")]
    return out


def owner(slot, by_master):
    return next((port for port, ranges in by_master.items() if any(a <= slot <= b for a, b in ranges)), None)


def servers_up():
    return (cluster_ok() and nudge_test.service_running("kafka") and nudge_test.service_running("postgres"))


@unittest.skipUnless(servers_up(), "needs redis-cluster, kafka and postgres: scripts/services/<name> start")
class RedisClusterFaults(faultlib.FaultTest):
    def setUp(self):
        super().setUp()
        self.assertTrue(nudge_test.wait_until(cluster_ok, 30), "the Redis Cluster is not ok")
        # The killed node comes back (scripts/services/redis-cluster start relaunches dead nodes) and rejoins.
        self.addCleanup(lambda: nudge_test.service("redis-cluster", "start", check=False))

    def test_master_killed_under_traffic_leaves_persistence_whole(self):
        started = time.monotonic()
        prefix = f"fault:{nudge_test.unique_suffix()}:room:"
        cluster = Cluster(self, 2, overrides=["fanout.redis.cluster=true", f"fanout.redis.channel_prefix={prefix}",
                                              "fanout.redis.reconnect_initial_ms=50",
                                              "fanout.redis.reconnect_max_ms=250"],
                          env={"REDIS_URL": CLUSTER_URL})
        load = Load(cluster)
        by_master = masters()
        room_owner = {room: owner(int(cli("cluster", "keyslot", room)), by_master) for room in ROOMS}
        victim = max(by_master, key=lambda p: sum(1 for o in room_owner.values() if o == p))
        victim_rooms = {room for room, o in room_owner.items() if o == victim}
        self.assertEqual(len(set(room_owner.values())), 3, f"the rooms span every shard: {room_owner}")
        pid = int(re.search(r"process_id:(\d+)", cli("info", "server", port=victim)).group(1))

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            # Sharded Pub/Sub is in play: the victim's rooms are subscribed on the victim itself.
            subs = await asyncio.to_thread(cli, "pubsub", "shardnumsub",
                                           *(prefix + "{" + r + "}" for r in victim_rooms), port=victim)
            counts = [int(x) for x in subs.splitlines()[1::2]]
            self.assertTrue(counts and all(c >= 1 for c in counts),
                            f"no shard subscription on master {victim}: {subs!r}")
            fault_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            promoted = await in_thread(nudge_test.wait_until,
                                       lambda: cluster_ok() and victim not in masters() and len(masters()) == 3, 20)
            heal_at = time.monotonic()
            say(f"master failover: master {victim} (pid {pid}, {len(victim_rooms)} of {len(ROOMS)} rooms) SIGKILLed; "
                f"its replica promoted {'after ' + format(heal_at - fault_at, '.1f') + ' s' if promoted else 'never'}")
            self.assertTrue(promoted, "no replica took over the killed master's slots within 20 s")
            caught = await catch_up(cluster, load, heal_at, 30)
            await asyncio.sleep(3)
            await load.stop()
            return fault_at, heal_at, caught

        fault_at, heal_at, caught = faultlib.run(scenario())
        sent_at = {text: t for c in load.clients for text, t in c.sent.values()}
        back = [t for c in load.clients for frame, t in c.received_at
                if frame.get("room") in victim_rooms and sent_at.get(frame.get("text"), 0) > fault_at]
        acks = sorted(t for c in load.clients for t in c.ack_times.values() if t >= fault_at - 1)
        pause = max((b - a for a, b in zip(acks, acks[1:])), default=0.0)
        say(f"master failover: acks paused at most {pause:.2f} s; the killed master's rooms delivered again "
            + (f"{min(back) - fault_at:.1f} s after the kill" if back else "never"))
        # The fanout and the log are separate paths: no error, no silence, every ack stored once.
        verdict(self, "redis master failover", cluster, load, caught, 30, started, allow_errors=False)
        self.assertTrue(back, "the killed master's rooms never delivered again")
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
