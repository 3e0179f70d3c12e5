"""Fault tests through a TCP proxy of our own (nudge-faultproxy, in
tests/support/faultproxy) between the runtime and Kafka, and between the
runtime and PostgreSQL: added latency, a stall (connections accepted,
nothing forwarded) and resets (RST on every connection), each for a few
seconds under steady traffic. (faultlib.py: what every fault test checks.)

Kafka clients connect to the addresses the broker advertises, so the proxy
listens on the port the broker's second listener, PROXIED, advertises
(127.0.0.1:19094, forwarded to the listener on 9094; scripts/services/kafka):
a client bootstrapping at the proxy stays behind it."""
import asyncio
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from faultlib import Cluster, Load, catch_up, needs_servers, verdict  # noqa: E402
import nudge_test  # noqa: E402

KAFKA_PROXIED = os.environ.get("NUDGE_KAFKA_PROXIED", "127.0.0.1:9094")
KAFKA_PROXIED_ADVERTISED = os.environ.get("NUDGE_KAFKA_PROXIED_ADVERTISED", "127.0.0.1:19094")
POSTGRES = nudge_test.DATABASE_URL.split("@", 1)[1].split("/", 1)[0]


class FaultProxy:
    """nudge-faultproxy as a child process, driven over its stdin."""

    def __init__(self, test, listen, target):
        self.proc = subprocess.Popen([faultlib.FAULTPROXY, listen, target], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        test.addCleanup(self.close)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise AssertionError(f"nudge-faultproxy {listen} {target} did not start: {line!r}")
        self.address = line.split()[-1]

    def __call__(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer.startswith("ok"):
            raise AssertionError(f"nudge-faultproxy: {command!r} -> {answer!r}")
        return answer

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def proxied_listener_present():
    out = subprocess.run(["kcat", "-b", KAFKA_PROXIED, "-L", "-m", "3"], capture_output=True, text=True)
    return f"at {KAFKA_PROXIED_ADVERTISED}" in out.stdout


def ack_latencies(load, t0, t1):
    """Seconds from send to ack for messages sent in [t0, t1)."""
    return sorted(c.ack_times[r] - c.sent[r][1] for c in load.clients for r in c.acks
                  if r in c.ack_times and t0 <= c.sent[r][1] < t1)


@needs_servers
class ProxyFaults(faultlib.FaultTest):
    def test_latency_stalls_and_resets_between_the_runtime_and_kafka_and_postgres(self):
        if not proxied_listener_present():
            self.skipTest(f"the Kafka broker has no PROXIED listener at {KAFKA_PROXIED} advertised as "
                          f"{KAFKA_PROXIED_ADVERTISED}: restart it with this checkout's scripts/services/kafka")
        started = time.monotonic()
        kafka = FaultProxy(self, KAFKA_PROXIED_ADVERTISED, KAFKA_PROXIED)
        postgres = FaultProxy(self, "127.0.0.1:0", POSTGRES)
        db_url = nudge_test.DATABASE_URL.replace(POSTGRES, postgres.address)
        cluster = Cluster(self, 2, env={"KAFKA_BROKERS": kafka.address, "DATABASE_URL": db_url})
        load = Load(cluster)
        phases = []

        async def phase(name, proxy, command, seconds):
            t0 = time.monotonic()
            proxy(command)
            # Rows counted from a moment on, so a statement already past the proxy is not counted.
            await asyncio.sleep(min(0.5, seconds))
            rows0 = len(await asyncio.to_thread(cluster.rows))
            await asyncio.sleep(max(0.0, seconds - 0.5))
            rows1 = len(await asyncio.to_thread(cluster.rows))
            proxy("pass")
            t1 = time.monotonic()
            phases.append((name, t0, t1, rows1 - rows0))
            await asyncio.sleep(2)

        async def scenario():
            await load.start()
            await asyncio.sleep(2)
            await phase("kafka latency 300 ms", kafka, "latency 300", 5)
            await phase("kafka stall", kafka, "stall", 8)
            await phase("kafka reset", kafka, "reset", 0)
            await phase("postgres latency 300 ms", postgres, "latency 300", 5)
            await phase("postgres stall", postgres, "stall", 8)
            await phase("postgres reset", postgres, "reset", 0)
            heal_at = phases[-1][2]
            caught = await catch_up(cluster, load, heal_at, 30)
            await asyncio.sleep(1)
            await load.stop()
            return caught

        caught = faultlib.run(scenario())
        for name, t0, t1, rows in phases:
            lat = ack_latencies(load, t0, t1)
            median = f"{1000 * lat[len(lat) // 2]:.0f}" if lat else "-"
            worst = f"{1000 * lat[-1]:.0f}" if lat else "-"
            faultlib.say(f"{name}: {t1 - t0:.1f} s, {len(lat)} sent then acked, ack latency median {median} ms "
                         f"max {worst} ms; {rows} rows written meanwhile")
        faultlib.say(f"proxies: kafka {kafka('stats')}; postgres {postgres('stats')}")
        by_name = {p[0]: p for p in phases}

        # The faults really were in the path.
        lat = ack_latencies(load, *by_name["kafka latency 300 ms"][1:3])
        self.assertTrue(lat and lat[len(lat) // 2] >= 0.3, "acks were slowed down by the Kafka proxy")
        lat = ack_latencies(load, *by_name["kafka stall"][1:3])
        stall = by_name["kafka stall"]
        self.assertTrue(lat and min(lat) > 0 and all(
            c.ack_times[r] >= stall[2] - 0.5 for c in load.clients for r in c.acks
            if r in c.ack_times and stall[1] + 0.5 <= c.sent[r][1] < stall[2]),
            "no ack came through the stalled Kafka proxy")
        self.assertEqual(by_name["postgres stall"][3], 0, "no row was written through the stalled PostgreSQL proxy")
        self.assertIn("resets=", kafka("stats"))
        verdict(self, "kafka/postgres through the fault proxy", cluster, load, caught, 30, started,
                allow_errors=False)
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
