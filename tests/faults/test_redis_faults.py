"""Fault test: Redis, the fanout, killed with SIGKILL and restarted under steady
traffic. Deliveries between instances resume; persistence never notices
(see faultlib.py for what every fault test checks)."""
import asyncio
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from faultlib import Cluster, Load, catch_up, in_thread, needs_servers, service, verdict  # noqa: E402
import nudge_test  # noqa: E402


def cross_instance_delivery_after(load, t0):
    """The first time after t0 at which a client received a message sent after
    t0 by a client connected to the other instance; None if none yet."""
    home = {c.name: c.home for c in load.clients}
    sent_at = {text: t for c in load.clients for text, t in c.sent.values()}
    first = None
    for c in load.clients:
        for frame, received_at in c.received_at:
            sender = frame["sender"]
            t = sent_at.get(frame["text"])
            if t is not None and t >= t0 and home.get(sender) != c.home:
                first = received_at if first is None else min(first, received_at)
    return first


@needs_servers
class RedisFaults(faultlib.FaultTest):
    def test_redis_killed_and_restarted(self):
        started = time.monotonic()
        cluster = Cluster(self, 2)
        load = Load(cluster)
        self.addCleanup(lambda: service("redis", "start", check=False))

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            self.assertIsNotNone(cross_instance_delivery_after(load, load.started_at),
                                 "messages cross instances before the fault")
            os.kill(faultlib.server_pid("redis"), signal.SIGKILL)
            down_at = time.monotonic()
            await asyncio.sleep(5)
            await in_thread(service, "redis", "start")
            heal_at = time.monotonic()
            deadline = heal_at + 20
            while cross_instance_delivery_after(load, heal_at) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            first = cross_instance_delivery_after(load, heal_at)
            caught = await catch_up(cluster, load, heal_at, 10)
            await asyncio.sleep(2)
            await load.stop()
            acked_down = load.acked_between(down_at, heal_at)
            return caught, (first - heal_at) if first else None, acked_down

        caught, resumed, acked_down = faultlib.run(scenario())
        shown = f"{resumed:.2f} s" if resumed is not None else "never"
        faultlib.say(f"redis kill -9: cross-instance delivery resumed {shown} after the restart; "
                     f"{acked_down} messages acked while Redis was down")
        self.assertIsNotNone(resumed, "the fanout delivers between instances again after Redis is back")
        self.assertLess(resumed, 5.0, "the fanout resumes within 5 s of Redis coming back")
        self.assertGreater(acked_down, 0, "acks go on without the fanout")
        verdict(self, "redis kill -9", cluster, load, caught, 10, started, allow_errors=False)
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
