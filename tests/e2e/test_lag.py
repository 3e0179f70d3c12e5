"""End to end, with the real servers: the consumer lag of pipelines/chat.toml
across restarts, against Kafka's own view of the group (its consumer-group
tool, ConsumerGroupCommand, run from the broker's jars).

- An instance that wrote and committed everything is restarted with nothing
  new: /metrics (nudge_log_consumer_lag, nudge_log_kafka_partition_lag) and
  `nudge top` read 0, as Kafka does, from the start on (the lag used to read
  the topic's log-end offset, for ever), and its log has no backlog lines.
- A backlog is produced while no consumer runs (by chat-edge.toml): the
  restarted instance reads it, the lag only falls, to 0, and its progress
  lines give an ETA of the order of lag / rate.

Needs Redis, Kafka and PostgreSQL (scripts/services/<name> start); skips otherwise."""
import asyncio
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, psql  # noqa: E402

CHAT = os.path.join(nudge_test.PIPELINES, "chat.toml")
EDGE = os.path.join(nudge_test.PIPELINES, "chat-edge.toml")
ROOMS = [f"room{i}" for i in range(12)]  # over the topic's 6 partitions
KAFKA_LIBS = os.path.join(os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var")),
                          "services", "kafka", "libs")


def servers_up():
    return all(nudge_test.service_running(s) for s in ("redis", "kafka", "postgres"))


def kafka_view(group):
    """partition -> (committed offset or None, log-end offset, lag or None), as
    `kafka-consumer-groups --describe` prints them."""
    out = subprocess.run(["java", "-cp", os.path.join(KAFKA_LIBS, "*"),
                          "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                          nudge_test.KAFKA_BROKERS.split(",")[0], "--describe", "--group", group],
                         capture_output=True, text=True, timeout=60)
    view = {}
    for line in out.stdout.splitlines():
        f = line.split()
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        if len(f) >= 6 and f[0] == group and f[2].isdigit():
            number = lambda s: int(s) if s.isdigit() else None  # noqa: E731 ("-": none)
            view[int(f[2])] = (number(f[3]), int(f[4]), number(f[5]))
    if not view:
        raise AssertionError(f"ConsumerGroupCommand described no partition of {group}:\n{out.stdout}{out.stderr}")
    return view


def kafka_lag(view):
    """partition -> lag from kafka_view(); where the group committed nothing
    ("-"), the whole partition, as the group reads from the earliest."""
    return {p: end if lag is None else lag for p, (_, end, lag) in view.items()}


def lag_figures(instance):
    """(nudge_log_consumer_lag, {partition: nudge_log_kafka_partition_lag}, assigned partitions) from /metrics."""
    total, partitions, assigned = None, {}, 0
    for (name, labels), value in nudge_test.scrape_metrics(instance.admin_url):
        if name == "nudge_log_consumer_lag":
            total = int(value)
        elif name == "nudge_log_kafka_partition_lag":
            partitions[int(labels["partition"])] = int(value)
        elif name == "nudge_log_kafka_assigned_partitions":
            assigned = int(value)
    return total, partitions, assigned


@unittest.skipUnless(servers_up(), "needs redis, kafka and postgres: scripts/services/<name> start")
@unittest.skipUnless(os.path.isdir(KAFKA_LIBS), f"Kafka's tools are not at {KAFKA_LIBS} (scripts/services/kafka start)")
class LagTest(unittest.TestCase):
    def setUp(self):
        suffix = nudge_test.unique_suffix()
        self.table = f"e2e_lag_{suffix}"
        self.group = f"e2e-lag-{suffix}"
        self.env = {"NUDGE_RECENT_PREFIX": f"e2e:{suffix}:recent:", "NUDGE_TOPIC": f"e2e.lag.{suffix}",
                    "NUDGE_GROUP": self.group, "NUDGE_TABLE": self.table}
        self.instances = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for n in self.instances:
            n.kill()
        try:
            psql(f"DROP TABLE IF EXISTS {self.table}")
            psql(f"DROP FUNCTION IF EXISTS {self.table}_slow()")
        except AssertionError:
            pass

    def slow_down_inserts(self, ms_per_row):
        """Each row the sink inserts takes `ms_per_row` more (a trigger), so a drain lasts a while on any machine."""
        psql(f"CREATE FUNCTION {self.table}_slow() RETURNS trigger LANGUAGE plpgsql AS "
             f"$$ BEGIN PERFORM pg_sleep({ms_per_row / 1000}); RETURN NEW; END $$")
        psql(f"CREATE TRIGGER slow BEFORE INSERT ON {self.table} FOR EACH ROW EXECUTE FUNCTION {self.table}_slow()")

    def start(self, pipeline=CHAT, *overrides, name="chat"):
        n = NudgeProcess(pipeline, "source.websocket.listen=127.0.0.1:0", "admin.listen=127.0.0.1:0",
                         "source.websocket.rate_limit_per_second=0", *overrides, env=self.env, name=name)
        self.instances.append(n)
        n.wait_started(60)
        return n

    def stop(self, n):
        self.assertEqual(n.stop(), 0, n.log())

    def rows(self):
        try:
            return int(psql(f"SELECT count(*) FROM {self.table}")[0][0])
        except AssertionError:
            return 0  # not created yet

    def wait_assigned(self, n, timeout=60):
        self.assertTrue(nudge_test.wait_until(lambda: lag_figures(n)[2] == 6, timeout),
                        "the instance was not assigned the topic's 6 partitions:\n" + n.log())

    def send(self, n, per_room):
        """Sends per_room messages in each room through `n`; returns how many were acked."""
        async def run():
            clients = []
            for room in ROOMS:
                c = ChatClient(n.ws_url, f"u-{room}")
                await c.connect()
                await c.join(room)
                clients.append(c)
            for k in range(per_room):
                for c, room in zip(clients, ROOMS):
                    await c.say(room, f"m {k}", f"{room}-{k}")
            for c in clients:
                await c.wait_for(lambda c=c: len(c.acks) == per_room, 60, f"{per_room} acks")
            for c in clients:
                await c.close()
            return sum(len(c.acks) for c in clients)
        return asyncio.run(run())

    def sample(self, n, seconds, until=None):
        """/metrics every 0.1 s for `seconds` (or until `until(figures)`): the figures read."""
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(lag_figures(n))
            if until and until(samples[-1]):
                break
            time.sleep(0.1)
        return samples

    def caught_up_instance(self, messages_per_room):
        """An instance that wrote `messages_per_room` per room, committed them, and stopped."""
        a = self.start(name="first")
        self.wait_assigned(a)
        sent = self.send(a, messages_per_room)
        self.assertTrue(nudge_test.wait_until(lambda: self.rows() >= sent, 60), "the rows were not written")
        self.stop(a)  # commits what the sink confirmed
        # Kafka describes the partitions the group committed on: those that got messages.
        view = kafka_view(self.group)
        self.assertEqual(kafka_lag(view), {p: 0 for p in view},
                         f"Kafka sees a lag after a clean stop: {view}")
        return sent, view

    def test_a_caught_up_instance_restarted_with_nothing_new_reads_no_lag(self):
        sent, before = self.caught_up_instance(25)
        log_end = sum(end for _, end, _ in before.values())
        self.assertEqual(log_end, sent)

        b = self.start(name="restarted")
        started = time.monotonic()
        self.wait_assigned(b)
        assigned_after = time.monotonic() - started
        # The lag is measured once a second, right after the committed offsets are read.
        samples = self.sample(b, 4)
        kafka = kafka_view(self.group)
        total, partitions, _ = lag_figures(b)
        largest = max(s[0] for s in samples)
        largest_partition = max(max(s[1].values(), default=0) for s in samples)
        print(f"e2e lag: restarted caught up ({sent} messages in the topic), assigned {assigned_after:.1f} s after "
              f"the start; over {len(samples)} samples /metrics read nudge_log_consumer_lag at most {largest}, a "
              f"partition at most {largest_partition}; Kafka: {kafka}", flush=True)
        self.assertEqual(largest, 0, "nudge_log_consumer_lag read a backlog that does not exist")
        self.assertEqual(largest_partition, 0, "nudge_log_kafka_partition_lag read a backlog that does not exist")
        self.assertEqual(total, 0)
        self.assertEqual(sorted(partitions), list(range(6)), "a partition has no lag series")
        self.assertEqual({p: partitions[p] for p in kafka}, kafka_lag(kafka), "not Kafka's view")

        top = subprocess.run([nudge_test.NUDGE, "top", b.admin_url, "--once", "--interval", "300"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(top.returncode, 0, top.stderr)
        self.assertRegex(top.stdout, r"consumer lag 0\b", top.stdout)
        self.stop(b)
        backlog_lines = [line for line in b.log_lines if "backlog" in line]
        self.assertEqual(backlog_lines, [], "a backlog was reported for a caught-up consumer")

    def test_a_restart_behind_a_backlog_reads_it_and_drains_it_with_a_finite_eta(self):
        sent, _ = self.caught_up_instance(2)
        # While no consumer runs, an edge instance (no consumer side) appends a backlog.
        edge = self.start(EDGE, name="edge")
        backlog = self.send(edge, 100)
        self.stop(edge)
        kafka = kafka_view(self.group)
        self.assertEqual(sum(kafka_lag(kafka).values()), backlog, f"Kafka: {kafka}")

        # At most ~300 rows/s in batches of 20: the drain lasts 4 s or more; progress every second.
        self.slow_down_inserts(3)
        c = self.start(CHAT, "sink.postgres.batch_max_messages=20", "pipeline.backlog_threshold=200",
                       "pipeline.progress_interval_ms=1000", name="behind")
        samples = self.sample(c, 60, until=lambda f: f[2] == 6 and f[0] == 0 and self.rows() >= sent + backlog)
        self.assertTrue(nudge_test.wait_until(lambda: any("backlog drained" in line for line in c.log_lines), 10),
                        c.log())
        lags = [s[0] for s in samples if s[2] == 6]
        lags = [v for i, v in enumerate(lags) if i == 0 or v != lags[i - 1]]
        # The gauge reads 0 until the first measure, a second at most after the assignment.
        if len(lags) > 1 and lags[0] == 0:
            lags = lags[1:]
        progress = [line for line in c.log_lines if "backlog" in line]
        print(f"e2e lag: restarted behind a backlog of {backlog} (Kafka: {kafka}); nudge_log_consumer_lag read "
              f"{lags}; log:\n  " + "\n  ".join(progress), flush=True)
        self.assertEqual(lags[-1], 0)
        self.assertLessEqual(max(lags), backlog, "the lag read more than the backlog")
        self.assertGreater(max(lags), backlog // 2, "the lag never read the backlog")
        self.assertEqual(lags, sorted(lags, reverse=True), "the lag rose while nothing arrived")

        start = re.search(r"draining a backlog of (\d+) messages", progress[0])
        self.assertIsNotNone(start, progress)
        self.assertLessEqual(int(start.group(1)), backlog)
        lines = [re.search(r"draining backlog: (\d+) rows/s, lag (\d+), ETA ([\d.]+) (s|h)", line)
                 for line in progress[1:-1]]
        self.assertTrue(lines and all(lines), f"progress lines without a finite ETA: {progress}")
        for m in lines:
            rate, lag, eta = int(m.group(1)), int(m.group(2)), float(m.group(3)) * (3600 if m.group(4) == "h" else 1)
            self.assertGreater(rate, 0)
            self.assertTrue(0.2 <= eta / (lag / rate) <= 5, f"ETA {eta} s for a lag of {lag} at {rate} rows/s")
        drained = re.search(r"backlog drained: (\d+) messages written", progress[-1])
        self.assertIsNotNone(drained, progress[-1])
        # Its rows, not a lag that went elsewhere (the lag is measured up to 0.2 s before rows are counted).
        self.assertGreaterEqual(int(drained.group(1)), 0.8 * int(start.group(1)), progress[-1])
        self.stop(c)
        after = kafka_view(self.group)
        self.assertEqual(kafka_lag(after), {p: 0 for p in after}, f"Kafka: {after}")


if __name__ == "__main__":
    nudge_test.main()
