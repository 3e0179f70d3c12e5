"""End to end, with the real servers: a chat pipeline (by default chat.toml:
websocket → redis → kafka → postgres) on several `nudge` instances. What must
hold throughout: every client receives every message of its rooms exactly
once, and every acknowledged message is in the database exactly once.

The same scenario runs on the other pipelines (NATS, MySQL) by setting
NUDGE_CHAT_PIPELINE and NUDGE_PERSIST_PIPELINE: only the pipeline file changes.
Needs the servers the pipeline names (scripts/test starts them); skips otherwise."""
import asyncio
import collections
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, psql  # noqa: E402

CHAT = os.path.join(nudge_test.PIPELINES, os.environ.get("NUDGE_CHAT_PIPELINE", "chat.toml"))
PERSIST = os.path.join(nudge_test.PIPELINES, os.environ.get("NUDGE_PERSIST_PIPELINE", "chat-persist.toml"))
ROOMS = [f"room{i}" for i in range(5)]

with open(CHAT) as f:
    _chat = f.read()
FANOUT_SERVICE = "nats" if "[fanout.nats]" in _chat else "redis"
SINK_SERVICE = "mariadb" if "[sink.mysql]" in _chat else "postgres"
SERVICES = (FANOUT_SERVICE, "kafka", SINK_SERVICE)


def servers_up():
    return all(nudge_test.service_running(s) for s in SERVICES)


def sql(query):
    return nudge_test.mysql(query) if SINK_SERVICE == "mariadb" else psql(query)


@unittest.skipUnless(servers_up(), f"needs {', '.join(SERVICES)}: scripts/services/<name> start")
class ChatClusterTest(unittest.TestCase):
    def setUp(self):
        suffix = nudge_test.unique_suffix()
        self.table = f"e2e_messages_{suffix}"
        # A fresh topic, group and table per test keeps tests independent.
        self.env = {"NUDGE_RECENT_PREFIX": f"e2e:{suffix}:recent:", "NUDGE_TOPIC": f"e2e.chat.{suffix}", "NUDGE_GROUP": f"e2e-persist-{suffix}",
                    "NUDGE_TABLE": self.table}
        self.instances = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for n in self.instances:
            n.kill()
        try:
            sql(f"DROP TABLE IF EXISTS {self.table}")
        except AssertionError:
            pass

    def start(self, pipeline=CHAT, name=None, wait=True):
        n = NudgeProcess(pipeline, "source.websocket.listen=127.0.0.1:0" if pipeline == CHAT else "pipeline.name=persist",
                         "admin.listen=127.0.0.1:0", env=self.env, name=name or f"nudge{len(self.instances)}")
        self.instances.append(n)
        if wait:
            n.wait_started(60)
        return n

    def rows(self):
        try:
            return sql(f"SELECT id, room, sender FROM {self.table}")
        except AssertionError:
            return []  # the sink may not have created its table yet

    def wait_rows(self, ids, timeout=90):
        """Waits until every id is in the table; returns the rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            have = {r[0] for r in rows}
            if ids <= have or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)

    def assert_exactly_once(self, acked_ids, rows):
        counts = collections.Counter(r[0] for r in rows)
        missing = [i for i in acked_ids if counts[i] == 0]
        self.assertEqual(missing, [], f"{len(missing)} acked messages missing from PostgreSQL")
        dupes = [i for i, n in counts.items() if n > 1]
        self.assertEqual(dupes, [], "rows written twice")

    async def connect_clients(self, instances, count):
        clients = []
        for i in range(count):
            n = instances[i % len(instances)]
            c = ChatClient(n.ws_url, f"u{i:03d}")
            c.room = ROOMS[i % len(ROOMS)]
            await c.connect()
            await c.join(c.room)
            clients.append(c)
        await self.warm_up(clients)
        return clients

    async def warm_up(self, clients):
        """Once each client's own warm-up message came back through the fanout,
        its join is in place on its instance and the fanout subscription exists."""
        for c in clients:
            await c.say(c.room, f"warmup {c.name}", f"warmup-{c.name}")
        for c in clients:
            await c.wait_for(lambda c=c: any(m["text"] == f"warmup {c.name}" for m in c.messages), 60, "warm-up")

    @staticmethod
    def chat_messages(c):
        return [m for m in c.messages if not m["text"].startswith("warmup ")]

    async def send_round(self, clients, tag, per_client, pace=0.0, tolerate_disconnect=False):
        async def talk(c):
            for k in range(per_client):
                try:
                    await c.say(c.room, f"{tag} {c.name} {k}", f"{tag}-{k}")
                except nudge_test.websockets.ConnectionClosed:
                    if tolerate_disconnect:
                        return
                    raise
                if pace:
                    await asyncio.sleep(pace)
        await asyncio.gather(*(talk(c) for c in clients))

    def check_delivery(self, clients, tags):
        """Every client got each message of its room exactly once, in each sender's order."""
        by_room = collections.defaultdict(set)
        for c in clients:
            for ref, msg_id in c.acks.items():
                if ref.split("-")[0] in tags:
                    by_room[c.room].add(msg_id)
        for c in clients:
            got = [m for m in self.chat_messages(c) if m["text"].split(" ")[0] in tags]
            ids = [m["id"] for m in got]
            self.assertEqual(len(ids), len(set(ids)), f"{c.name} received a duplicate")
            self.assertEqual(set(ids), by_room[c.room], f"{c.name} did not receive exactly its room's acked messages")
            last = {}
            for m in got:
                _, sender, k = m["text"].split(" ")
                key = (m["text"].split(" ")[0], sender)
                self.assertGreater(int(k), last.get(key, -1), f"{sender}'s messages out of order at {c.name}")
                last[key] = int(k)

    async def wait_acks(self, clients, tag, per_client, timeout=60):
        for c in clients:
            await c.wait_for(lambda c=c: sum(1 for r in c.acks if r.startswith(tag + "-")) == per_client, timeout,
                             f"{per_client} acks for {tag}")

    async def wait_delivered(self, clients, tag, timeout=60):
        expected = collections.Counter()
        for c in clients:
            expected[c.room] += sum(1 for r in c.acks if r.startswith(tag + "-"))
        for c in clients:
            await c.wait_for(lambda c=c: sum(1 for m in c.messages if m["text"].startswith(tag + " ")) >= expected[c.room],
                             timeout, f"delivery of {tag}")

    def acked_ids(self, clients):
        return {i for c in clients for r, i in c.acks.items() if not r.startswith("warmup")}

    @staticmethod
    def assigned_partitions(instance):
        """The partitions an instance holds now, from its latest assignment log line."""
        held = set()
        for line in instance.log_lines:
            m = re.search(r"(assigned|revoked) partitions \[([\d, ]*)\]", line)
            if m:
                parts = {int(p) for p in m.group(2).split(",") if p.strip()}
                held = held | parts if m.group(1) == "assigned" else held - parts
        return held

    @staticmethod
    def metric_sum(instances, name, **labels):
        """The sum of a metric's series over instances (those whose labels include `labels`)."""
        total = 0
        for n in instances:
            for series, value in nudge_test.scrape_metrics(n.admin_url):
                if series[0] == name and all(series[1].get(k) == v for k, v in labels.items()):
                    total += value
        return total

    def wait_lag_zero(self, consumers, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            lags = [self.metric_sum([n], "nudge_log_consumer_lag") for n in consumers]
            if all(lag == 0 for lag in lags) or time.monotonic() > deadline:
                return lags
            time.sleep(0.5)

    # ------------------------------------------------------------------ tests

    def test_two_instances_fifty_clients_five_rooms_then_a_persist_worker_joins(self):
        a, b = self.start(), self.start()

        async def run():
            clients = await self.connect_clients([a, b], 50)
            t0 = time.monotonic()
            await self.send_round(clients, "r1", 20)
            await self.wait_acks(clients, "r1", 20)
            acked_s = time.monotonic() - t0
            await self.wait_delivered(clients, "r1")

            # A persistence worker joins the consumer group mid-run; the group
            # rebalances while clients keep sending.
            worker = self.start(PERSIST, "persist")
            sending = asyncio.ensure_future(self.send_round(clients, "r2", 20, pace=0.05))
            deadline = time.monotonic() + 45
            while not self.assigned_partitions(worker) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await sending
            await self.send_round(clients, "r3", 5)
            for tag, n in (("r2", 20), ("r3", 5)):
                await self.wait_acks(clients, tag, n)
                await self.wait_delivered(clients, tag)
            await asyncio.sleep(0.5)
            self.check_delivery(clients, {"r1", "r2", "r3"})
            for c in clients:
                self.assertEqual(c.errors, [], c.name)
            for c in clients:
                await c.close()
            return clients, acked_s, worker

        clients, acked_s, worker = asyncio.run(run())
        acked = self.acked_ids(clients)
        t0 = time.monotonic()
        rows = self.wait_rows(acked)
        self.assert_exactly_once(acked, rows)
        mine = self.assigned_partitions(worker)
        self.assertTrue(mine, "the persist worker took a share of the partitions:\n" + worker.log())
        theirs = set().union(*(self.assigned_partitions(n) for n in self.instances if n is not worker))
        self.assertFalse(mine & theirs, "a partition is persisted by one instance at a time")
        print(f"e2e cluster: {len(acked)} messages from 50 clients on 2 instances, round 1 acked at "
              f"{1000 / acked_s:.0f} msg/s; {len(rows)} rows exactly once; worker took partitions {sorted(mine)}, "
              f"the edge instances kept {sorted(theirs)}")

        # What /metrics says matches what was sent: every message taken in,
        # logged, acked, fanned out and inserted once; the backlog is gone.
        sent = len(acked) + len(clients)  # the warm-up messages too
        edges = [n for n in self.instances if n is not worker]
        lags = self.wait_lag_zero(self.instances)
        self.assertEqual(lags, [0, 0, 0], "consumer lag back to 0 on every instance")
        source, log = "source.websocket", "log.kafka"
        sink_stage = "sink.mysql" if SINK_SERVICE == "mariadb" else "sink.postgres"
        fanout_stage = f"fanout.{FANOUT_SERVICE}"
        self.assertEqual(self.metric_sum(edges, "nudge_stage_messages_in_total", stage=source), sent)
        self.assertEqual(self.metric_sum(edges, "nudge_pipeline_messages_acked_total"), sent)
        self.assertEqual(self.metric_sum(edges, "nudge_ingest_to_ack_seconds_count"), sent)
        self.assertEqual(self.metric_sum(edges, "nudge_stage_messages_in_total", stage=log), sent)
        self.assertEqual(self.metric_sum(edges, "nudge_stage_errors_total", stage=log), 0)
        self.assertEqual(self.metric_sum(edges, "nudge_stage_messages_out_total", stage=fanout_stage), sent)
        inserted = self.metric_sum(self.instances, f"nudge_{sink_stage.replace('.', '_')}_rows_inserted_total")
        self.assertEqual(inserted, sent, "rows inserted over all instances = messages sent")
        written = self.metric_sum(self.instances, "nudge_stage_messages_out_total", stage=sink_stage)
        self.assertGreaterEqual(written, sent, "every message written by some instance's sink (a rebalance may hand "
                                "a batch to a second instance, whose write inserts nothing)")
        self.assertEqual(self.metric_sum(self.instances, "nudge_ingest_to_persisted_seconds_count"), written)
        # Every client got its room's messages: deliveries counted by the sources match.
        delivered = self.metric_sum(edges, "nudge_source_websocket_messages_delivered_total")
        expected_deliveries = sum(len(c.messages) for c in clients)
        self.assertEqual(delivered, expected_deliveries)
        for n in self.instances:
            status, body = nudge_test.admin_get(n.admin_url, "/readyz")
            self.assertEqual((status, body), (200, "ready\n"), n.name)
        # The Grafana dashboard queries only series a running cluster exports.
        exported = {series[0] for n in self.instances for series, _ in nudge_test.scrape_metrics(n.admin_url)}
        with open(os.path.join(nudge_test.SOURCE_DIR, "deploy", "grafana", "nudge-dashboard.json")) as f:
            queried = set(re.findall(r"\b(nudge_[a-z0-9_]+)\b", f.read()))
        if SINK_SERVICE != "postgres":
            queried = {q.replace("_sink_postgres_", "_sink_mysql_") for q in queried}
        self.assertEqual(sorted(queried - exported), [], "the dashboard queries series no instance exports")
        print(f"e2e metrics: {sent} sent = source in = log in = acked = fanout out = rows inserted ({inserted}); "
              f"sink wrote {written}; {delivered} deliveries; lag {lags}")
        for n in self.instances:
            self.assertEqual(n.stop(), 0, n.log())

    def test_database_down_for_20s_keeps_acking_and_catches_up(self):
        a, b = self.start(), self.start()

        async def run():
            clients = await self.connect_clients([a, b], 10)
            # An idle pipeline notices too: /readyz names the sink within 5 s of the database stopping.
            nudge_test.service(SINK_SERVICE, "stop")
            stopped_at = time.monotonic()
            sink_stage = "sink.mysql" if SINK_SERVICE == "mariadb" else "sink.postgres"
            not_ready = await asyncio.to_thread(nudge_test.wait_ready_state, a.admin_url, False, 5)
            self.assertIsNotNone(not_ready, "/readyz still ready 5 s after the database stopped")
            self.assertIn(sink_stage + ": ", not_ready, "/readyz names the sink")
            noticed_s = time.monotonic() - stopped_at
            try:
                t0 = time.monotonic()
                k = 0
                while time.monotonic() - t0 < 20:
                    await self.send_round(clients, f"p{k}", 1)
                    k += 1
                    await asyncio.sleep(0.5)
                for j in range(k):
                    await self.wait_acks(clients, f"p{j}", 1, timeout=30)
            finally:
                nudge_test.service(SINK_SERVICE, "start")
            back_at = time.monotonic()
            ready_again = await asyncio.to_thread(nudge_test.wait_ready_state, a.admin_url, True, 5)
            self.assertIsNotNone(ready_again, "/readyz not ready again 5 s after the database returned:\n" +
                                 nudge_test.admin_get(a.admin_url, "/readyz")[1])
            print(f"e2e readiness: not ready {noticed_s:.1f} s after {SINK_SERVICE} stopped, ready "
                  f"{time.monotonic() - back_at:.1f} s after it returned")
            for c in clients:
                self.assertEqual(c.errors, [], "senders keep getting acks while the database is down")
                await c.close()
            return clients, k

        clients, rounds = asyncio.run(run())
        acked = self.acked_ids(clients)
        self.assertEqual(len(acked), 10 * rounds)
        t0 = time.monotonic()
        rows = self.wait_rows(acked, timeout=60)
        self.assert_exactly_once(acked, rows)
        print(f"e2e {SINK_SERVICE} outage: {len(acked)} messages acked during 20 s without the database; "
              f"all persisted {time.monotonic() - t0:.1f} s after it came back")

    def test_instance_killed_mid_stream_and_restarted(self):
        a, b = self.start(), self.start()

        async def run():
            clients = await self.connect_clients([a, b], 10)
            deadline = time.monotonic() + 30
            while not (self.assigned_partitions(a) and self.assigned_partitions(b)) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            sending = asyncio.ensure_future(self.send_round(clients, "k", 100, pace=0.005, tolerate_disconnect=True))
            await asyncio.sleep(0.5)
            b.proc.send_signal(signal.SIGKILL)
            await sending
            await asyncio.sleep(1)
            for c in clients:
                await c.close()
            return clients

        clients = asyncio.run(run())
        b.kill()
        killed_at = time.monotonic()
        held = self.assigned_partitions(b)
        self.assertTrue(held, "the killed instance owned partitions:\n" + b.log())
        # The group drops the dead member when its session times out ([log.kafka]
        # session_timeout_ms, 10 s by default); then the survivor takes its partitions.
        while not held <= self.assigned_partitions(a) and time.monotonic() < killed_at + 60:
            time.sleep(0.2)
        took_over = time.monotonic() - killed_at
        self.assertTrue(held <= self.assigned_partitions(a), "the surviving instance took the dead one's partitions:\n"
                        + "\n".join(line for line in a.log_lines if "partitions" in line))
        restarted = self.start()  # it rejoins the group and takes a share back
        deadline = time.monotonic() + 30
        while not self.assigned_partitions(restarted) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertTrue(self.assigned_partitions(restarted), "the restarted instance was assigned partitions:\n" +
                        restarted.log())
        acked = self.acked_ids(clients)
        self.assertGreater(len(acked), 0)
        rows = self.wait_rows(acked)
        self.assert_exactly_once(acked, rows)
        print(f"e2e kill -9: the survivor took partitions {sorted(held)} {took_over:.1f} s after the kill; the "
              f"restarted instance holds {sorted(self.assigned_partitions(restarted))}; {len(acked)} acked messages, "
              f"all in the database exactly once")

    def test_fanout_server_restart_recovers_within_5s(self):
        a, b = self.start(), self.start()

        async def run():
            clients = await self.connect_clients([a, b], 6)
            nudge_test.service(FANOUT_SERVICE, "stop")
            await self.send_round(clients, "down", 2)  # persisted, though not fanned out
            await self.wait_acks(clients, "down", 2)
            nudge_test.service(FANOUT_SERVICE, "start")
            t0 = time.monotonic()
            # Deliveries resume: a message sent on one instance reaches a client of the other.
            sender, receiver = clients[0], next(c for c in clients if c.room == clients[0].room and c is not clients[0]
                                                and c.url != clients[0].url)
            k = 0
            while True:
                await sender.say(sender.room, f"up{k} {sender.name} {k}", f"up{k}-0")
                try:
                    await receiver.wait_for(lambda: any(m["text"].startswith(f"up{k} ") for m in receiver.messages),
                                            0.5, "redelivery")
                    break
                except AssertionError:
                    k += 1
                    if time.monotonic() - t0 > 15:
                        raise
            recovered = time.monotonic() - t0
            for c in clients:
                await c.close()
            return clients, recovered

        clients, recovered = asyncio.run(run())
        self.assertLess(recovered, 5.0, f"the fanout delivers again within 5 s of {FANOUT_SERVICE} coming back")
        acked = self.acked_ids(clients)
        rows = self.wait_rows(acked)
        self.assert_exactly_once(acked, rows)
        print(f"e2e {FANOUT_SERVICE} restart: cross-instance delivery back {recovered:.2f} s after the restart; "
              f"{len(acked)} acked messages persisted exactly once")


if __name__ == "__main__":
    nudge_test.main()
