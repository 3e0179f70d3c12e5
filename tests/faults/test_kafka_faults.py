"""Fault tests: the Kafka broker restarted and frozen under steady traffic, and
a message the log cannot confirm in time (see faultlib.py for what each
test checks and prints)."""
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


@needs_servers
class KafkaFaults(faultlib.FaultTest):
    def freeze_kafka(self, seconds):
        """SIGSTOP the broker for `seconds`, then SIGCONT (always)."""
        pid = faultlib.server_pid("kafka")
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(pid, signal.SIGCONT))
        return pid

    def test_broker_restarted_mid_stream(self):
        started = time.monotonic()
        cluster = Cluster(self, 2)
        load = Load(cluster)

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            down_at = time.monotonic()
            await in_thread(service, "kafka", "stop")
            stopped = time.monotonic() - down_at
            await asyncio.sleep(3)
            await in_thread(service, "kafka", "start")
            heal_at = time.monotonic()
            faultlib.say(f"kafka restart: broker stopped in {stopped:.1f} s, back after {heal_at - down_at:.1f} s")
            caught = await catch_up(cluster, load, heal_at, 40)
            await asyncio.sleep(2)
            await load.stop()
            during = load.acked_between(down_at, heal_at)
            faultlib.say(f"kafka restart: {during} messages sent while the broker was away were acked later")
            return caught

        caught = faultlib.run(scenario())
        verdict(self, "kafka restart", cluster, load, caught, 40, started)
        cluster.stop_all()

    def test_broker_frozen_15s(self):
        started = time.monotonic()
        cluster = Cluster(self, 2)
        load = Load(cluster)

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            frozen_at = time.monotonic()
            pid = self.freeze_kafka(15)
            acks_before = len(load.acked())
            await asyncio.sleep(15)
            acks_frozen = len(load.acked()) - acks_before
            os.kill(pid, signal.SIGCONT)
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 40)
            await asyncio.sleep(2)
            await load.stop()
            faultlib.say(f"kafka frozen: {acks_frozen} acks arrived during the 15 s freeze; "
                         f"{load.acked_between(frozen_at, heal_at)} messages sent during it were acked after SIGCONT")
            return caught

        caught = faultlib.run(scenario())
        # The default delivery_timeout_ms (30 s) outlasts the freeze: everything is acked. The
        # freeze outlasts the consumers' session (session_timeout_ms, 10 s): the group forms again.
        verdict(self, "kafka frozen 15 s", cluster, load, caught, 40, started, allow_errors=False)
        cluster.stop_all()

    def test_append_not_confirmed_in_time_gets_an_error(self):
        """With delivery_timeout_ms=2000 and the broker frozen for 8 s, messages
        the log cannot confirm get an error frame; no ack ever goes out for a
        message that is not in the log (every acked id ends up in PostgreSQL)."""
        started = time.monotonic()
        cluster = Cluster(self, 2, overrides=["log.kafka.delivery_timeout_ms=2000"])
        load = Load(cluster)

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            pid = self.freeze_kafka(8)
            await asyncio.sleep(8)
            os.kill(pid, signal.SIGCONT)
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 30)
            # After the freeze, appends are confirmed again.
            resumed = time.monotonic()
            await asyncio.sleep(4)
            await load.stop()
            return caught, load.acked_between(resumed, resumed + 4)

        caught, acked_after = faultlib.run(scenario())
        counts = verdict(self, "kafka frozen, delivery_timeout_ms=2000", cluster, load, caught, 30, started)
        self.assertGreater(counts["errors"], 0, "messages the log could not confirm in 2 s got error frames")
        self.assertGreater(acked_after, 0, "appends succeed again once the broker answers")
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
