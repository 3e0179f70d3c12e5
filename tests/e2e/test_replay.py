"""End to end, with the real servers: `nudge replay` rebuilds a sink table
from the Kafka log, exactly once by id, without disturbing the live group.

20,000 messages go through chat-edge.toml into a topic of this test's own,
in two parts a moment apart; a chat-persist.toml worker writes them to table
A. Then:
- a replay into a fresh table B writes exactly A's ids; a second replay into
  B writes none (all duplicates) and still exits 0;
- the live group's committed offsets are the same before and after;
- --from <the time between the parts> replays exactly the second part;
- pipelines/chat-persist-mysql.toml moves the history into MariaDB: the same ids
  (skipped when MariaDB is down);
- a replay interrupted by SIGINT commits what it wrote, and the same --group
  resumes it without reading it all again;
- after records are deleted from the log's start (as retention does), a
  replay from before them fails saying where the log now starts, and one
  from the earliest notes it and replays what is left.

Needs Redis, Kafka and PostgreSQL (scripts/services/<name> start); skips otherwise."""
import asyncio
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import ChatClient, NudgeProcess, psql  # noqa: E402

EDGE = os.path.join(nudge_test.PIPELINES, "chat-edge.toml")
PERSIST = os.path.join(nudge_test.PIPELINES, "chat-persist.toml")
PERSIST_MYSQL = os.path.join(nudge_test.PIPELINES, "chat-persist-mysql.toml")
KAFKA_LIBS = os.path.join(os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var")),
                          "services", "kafka", "libs")
FIRST, SECOND = 12_000, 8_000
CLIENTS = 20
SUMMARY = re.compile(r"replay (done|interrupted): (\d+) messages read from \S+ into \S+, (\d+) rows written, "
                     r"(\d+) duplicates skipped \(already stored\), in ([\d.]+) s \((\d+) rows/s\); (\d+)/(\d+) records "
                     r"of the range, group '([^']+)'")


def servers_up():
    return all(nudge_test.service_running(s) for s in ("redis", "kafka", "postgres"))


def kafka_tool(main, *args):
    out = subprocess.run(["java", "-cp", os.path.join(KAFKA_LIBS, "*"), main, "--bootstrap-server",
                          nudge_test.KAFKA_BROKERS.split(",")[0], *args], capture_output=True, text=True, timeout=90)
    if out.returncode != 0:
        raise AssertionError(f"{main} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def committed_offsets(group):
    """partition -> committed offset ('-' when none) of `group`, as Kafka's consumer-group tool prints them."""
    out = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--describe", "--group", group)
    return {int(f[2]): f[3] for f in (line.split() for line in out.splitlines())
            if len(f) >= 6 and f[0] == group and f[2].isdigit()}


def end_offsets(topic):
    out = kafka_tool("org.apache.kafka.tools.GetOffsetShell", "--topic", topic, "--time", "-1")
    return {int(p): int(o) for p, o in (line.rsplit(":", 2)[1:] for line in out.split())}


def ids(table):
    return {row[0] for row in psql(f"SELECT id FROM {table}")}


def send(url, count, tag):
    """`count` messages over CLIENTS connections, all sent before any ack is awaited; returns the acked ids."""
    async def run():
        clients = []
        for i in range(CLIENTS):
            c = ChatClient(url, f"{tag}{i}")
            await c.connect()
            await c.join(f"room{i}")
            clients.append(c)
        each = count // CLIENTS
        for c_index, c in enumerate(clients):
            for k in range(each):
                await c.say(f"room{c_index}", f"{tag} {k}", f"{tag}-{k}")
        for c in clients:
            await c.wait_for(lambda c=c: len(c.acks) == each, 120, f"{each} acks")
        for c in clients:
            await c.close()
        return {i for c in clients for i in c.acks.values()}
    return asyncio.run(run())


@unittest.skipUnless(servers_up(), "needs redis, kafka and postgres: scripts/services/<name> start")
@unittest.skipUnless(os.path.isdir(KAFKA_LIBS), f"Kafka's tools are not at {KAFKA_LIBS} (scripts/services/kafka start)")
class ReplayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        suffix = nudge_test.unique_suffix()
        cls.suffix = suffix
        cls.topic = f"e2e.replay.{suffix}"
        cls.group = f"e2e-replay-{suffix}"
        cls.table = f"e2e_replay_{suffix}"
        cls.env = {"NUDGE_RECENT_PREFIX": f"e2e:{suffix}:recent:", "NUDGE_TOPIC": cls.topic,
                   "NUDGE_GROUP": cls.group, "NUDGE_TABLE": cls.table}
        cls.tables = [cls.table]
        edge = NudgeProcess(EDGE, "source.websocket.listen=127.0.0.1:0", "source.websocket.rate_limit_per_second=0",
                            env=cls.env, name="edge")
        worker = NudgeProcess(PERSIST, env=cls.env, name="worker")
        try:
            edge.wait_started(60)
            worker.wait_started(60)
            cls.first = send(edge.ws_url, FIRST, "a")
            time.sleep(1.5)
            cls.between = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            time.sleep(1.5)
            cls.second = send(edge.ws_url, SECOND, "b")
            written = nudge_test.wait_until(lambda: cls.count(cls.table) == FIRST + SECOND, 120)
            assert written, f"the worker wrote {cls.count(cls.table)} rows, not {FIRST + SECOND}:\n" + worker.log()
        finally:
            assert worker.stop() == 0, worker.log()  # commits what it wrote
            assert edge.stop() == 0, edge.log()
        cls.live_offsets = committed_offsets(cls.group)

    @classmethod
    def tearDownClass(cls):
        for t in cls.tables:
            try:
                psql(f"DROP TABLE IF EXISTS {t}")
                psql(f"DROP FUNCTION IF EXISTS {t}_slow()")
            except AssertionError:
                pass

    @classmethod
    def count(cls, table):
        try:
            return int(psql(f"SELECT count(*) FROM {table}")[0][0])
        except AssertionError:
            return 0  # not created yet

    def new_table(self, name):
        table = f"{self.table}_{name}"
        type(self).tables.append(table)
        return table

    def replay(self, *args, pipeline=PERSIST, env=None, expect=0):
        """Runs `nudge replay` to the end; (stdout, stderr, summary match)."""
        full_env = dict(os.environ, **{**self.env, **(env or {})})
        out = subprocess.run([nudge_test.NUDGE, "replay", pipeline, *args], capture_output=True, text=True,
                             env=full_env, timeout=300)
        self.assertEqual(out.returncode, expect, out.stdout + out.stderr)
        return out.stdout, out.stderr, SUMMARY.search(out.stdout)

    def test_a_replay_rebuilds_a_table_with_the_same_ids_and_a_second_writes_none(self):
        b = self.new_table("b")
        out, err, summary = self.replay("--set", f"sink.postgres.table={b}")
        self.assertTrue(summary, out)
        self.assertEqual(summary.group(1), "done")
        self.assertEqual(int(summary.group(2)), FIRST + SECOND)
        self.assertEqual(int(summary.group(3)), FIRST + SECOND)
        self.assertEqual(int(summary.group(4)), 0)
        self.assertTrue(summary.group(9).startswith(self.group + "-replay-"), summary.group(9))
        print(f"e2e replay: {FIRST + SECOND} rows into PostgreSQL in {summary.group(5)} s "
              f"({summary.group(6)} rows/s)", flush=True)
        self.assertEqual(ids(b), ids(self.table))
        self.assertEqual(ids(b), self.first | self.second)

        # Into the same table again: every row is there already.
        out, _, summary = self.replay("--set", f"sink.postgres.table={b}", "--quiet", "--group", f"{self.group}-again")
        self.assertEqual((summary.group(2), summary.group(3), summary.group(4)), (str(FIRST + SECOND), "0",
                                                                                  str(FIRST + SECOND)), out)
        self.assertEqual(self.count(b), FIRST + SECOND)
        # The replay groups committed the whole range; the live group is where the worker left it.
        self.assertEqual(committed_offsets(f"{self.group}-again"),
                         {p: str(o) for p, o in end_offsets(self.topic).items() if o > 0})
        self.assertEqual(committed_offsets(self.group), self.live_offsets)

    def test_a_replay_from_a_time_writes_only_what_came_after_it(self):
        c = self.new_table("c")
        out, _, summary = self.replay("--set", f"sink.postgres.table={c}", "--from", self.between, "--quiet")
        self.assertEqual(int(summary.group(2)), SECOND, out)
        self.assertEqual(ids(c), self.second)

    def test_a_replay_refuses_the_live_group(self):
        _, err, _ = self.replay("--group", self.group, expect=1)
        self.assertIn(f"must not read in the pipeline's own consumer group '{self.group}'", err)

    @unittest.skipUnless(nudge_test.service_running("mariadb"), "needs mariadb: scripts/services/mariadb start")
    def test_a_replay_moves_the_history_to_mysql(self):
        m = f"{self.table}_mysql"
        self.addCleanup(lambda: nudge_test.mysql(f"DROP TABLE IF EXISTS {m}"))
        out, _, summary = self.replay("--set", f"sink.mysql.table={m}", "--quiet", pipeline=PERSIST_MYSQL)
        self.assertEqual(int(summary.group(3)), FIRST + SECOND, out)
        self.assertEqual({row[0] for row in nudge_test.mysql(f"SELECT id FROM {m}")}, ids(self.table))
        print(f"e2e replay: {FIRST + SECOND} rows into MariaDB in {summary.group(5)} s "
              f"({summary.group(6)} rows/s)", flush=True)

    def test_an_interrupted_replay_commits_what_it_wrote_and_the_same_group_resumes(self):
        d = self.new_table("d")
        group = f"{self.group}-resume"
        psql(f"CREATE TABLE {d} (LIKE {self.table} INCLUDING ALL)")
        # Each row takes a little longer, so the replay is still running when interrupted.
        psql(f"CREATE FUNCTION {d}_slow() RETURNS trigger LANGUAGE plpgsql AS "
             f"$$ BEGIN PERFORM pg_sleep(0.0005); RETURN NEW; END $$")
        psql(f"CREATE TRIGGER slow BEFORE INSERT ON {d} FOR EACH ROW EXECUTE FUNCTION {d}_slow()")
        proc = subprocess.Popen([nudge_test.NUDGE, "replay", PERSIST, "--set", f"sink.postgres.table={d}", "--group",
                                 group], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **self.env))
        started = time.monotonic()
        self.assertTrue(nudge_test.wait_until(lambda: self.count(d) >= 2000, 60), "the replay wrote nothing")
        # The progress line with a rate comes once a second, the first (nothing done yet) without one: let two
        # pass. At 0.5 ms a row the replay is then still far from its 20,000.
        time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130, out + err)
        summary = SUMMARY.search(out)
        self.assertEqual(summary.group(1), "interrupted", out)
        self.assertIn(f"--group {group}", out)
        self.assertRegex(err, r"replay: \d+/20000 records \(\d+\.\d%\), 6 partitions \(\d done\), \d+ rows/s, ETA ",
                         "no progress line")
        written = self.count(d)
        self.assertLess(written, FIRST + SECOND, "interrupted too late to test a resume")
        done = int(summary.group(7))
        self.assertGreater(done, 0)
        committed = sum(int(o) for o in committed_offsets(group).values() if o.isdigit())
        self.assertEqual(committed, done, "the offsets of what was written were not committed")

        psql(f"DROP TRIGGER slow ON {d}")
        out, err, summary = self.replay("--set", f"sink.postgres.table={d}", "--group", group, "--quiet")
        self.assertIn("continue from the offsets this group committed", err)
        self.assertEqual(int(summary.group(2)), FIRST + SECOND - done, out)
        self.assertEqual(ids(d), ids(self.table))

    def test_a_log_that_no_longer_reaches_back_to_the_time_asked_for_is_an_error(self):
        topic = f"{self.topic}.trimmed"
        env = {"NUDGE_TOPIC": topic, "NUDGE_RECENT_PREFIX": f"e2e:{self.suffix}:trimmed:"}
        before = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        edge = NudgeProcess(EDGE, "source.websocket.listen=127.0.0.1:0", "source.websocket.rate_limit_per_second=0",
                            env=dict(self.env, **env), name="edge")
        try:
            edge.wait_started(60)
            sent = send(edge.ws_url, 400, "t")
        finally:
            self.assertEqual(edge.stop(), 0, edge.log())
        # As retention would: the log of partition 0 now starts further on.
        ends = end_offsets(topic)
        partition = max(ends, key=ends.get)
        cut = ends[partition] // 2
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"version": 1, "partitions": [{"topic": topic, "partition": partition, "offset": cut}]}, f)
        self.addCleanup(os.unlink, f.name)
        kafka_tool("org.apache.kafka.tools.DeleteRecordsCommand", "--offset-json-file", f.name)

        e = self.new_table("e")
        _, err, _ = self.replay("--set", f"sink.postgres.table={e}", "--from", before, env=env, expect=1)
        self.assertIn("no longer reaches back to", err)
        self.assertIn(f"partition {partition} starts at offset {cut} (retention deleted the {cut} records before it)",
                      err)
        self.assertEqual(self.count(e), 0, "a failed plan wrote rows")

        out, err, summary = self.replay("--set", f"sink.postgres.table={e}", "--quiet", env=env)
        self.assertIn(f"{cut} records of partitions [{partition}] were deleted by retention", err)
        self.assertEqual(int(summary.group(2)), len(sent) - cut, out)
        self.assertEqual(self.count(e), len(sent) - cut)


if __name__ == "__main__":
    nudge_test.main()
