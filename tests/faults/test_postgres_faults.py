"""Fault tests: PostgreSQL stopped for 30 s, and PostgreSQL refusing writes for
a while, under steady traffic (see faultlib.py for what each test checks)."""
import asyncio
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from faultlib import Cluster, Load, catch_up, in_thread, needs_servers, psql, service, verdict  # noqa: E402
import nudge_test  # noqa: E402

DATABASE = nudge_test.DATABASE_URL.rsplit("/", 1)[1].split("?")[0]


def psql_rw(sql):
    """psql in a session that may write even while the database defaults to read-only."""
    env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=off")
    out = subprocess.run(["psql", nudge_test.DATABASE_URL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60, env=env)
    if out.returncode != 0:
        raise AssertionError(f"psql failed: {out.stderr}")


@needs_servers
class PostgresFaults(faultlib.FaultTest):
    def test_database_stopped_30s(self):
        started = time.monotonic()
        cluster = Cluster(self, 2)
        load = Load(cluster)

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            await in_thread(service, "postgres", "stop")
            self.addCleanup(service, "postgres", "start")
            down_at = time.monotonic()
            await asyncio.sleep(30)
            await in_thread(service, "postgres", "start")
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 20)
            await asyncio.sleep(2)
            await load.stop()
            faultlib.say(f"postgres stopped: {load.acked_between(down_at, heal_at)} messages acked during the "
                         f"{heal_at - down_at:.0f} s outage (the log holds them)")
            return caught

        caught = faultlib.run(scenario())
        # The log keeps taking messages: senders never notice the database is gone.
        verdict(self, "postgres stopped 30 s", cluster, load, caught, 20, started, allow_errors=False)
        cluster.stop_all()

    def test_database_refuses_writes_then_allows_them(self):
        """The database turns read-only (every session the sink opens refuses
        INSERT with SQLSTATE 25006) for 12 s; the sink's open sessions are
        terminated so that they pick the setting up."""
        started = time.monotonic()
        cluster = Cluster(self, 2)
        load = Load(cluster)

        def read_only(on):
            value = "on" if on else "off"
            psql_rw(f"ALTER DATABASE {DATABASE} SET default_transaction_read_only = {value}")
            psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 f"WHERE datname = '{DATABASE}' AND application_name = 'nudge' AND pid <> pg_backend_pid()")

        def rows_now():
            return len(cluster.rows())

        self.addCleanup(psql_rw, f"ALTER DATABASE {DATABASE} RESET default_transaction_read_only")

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            await in_thread(read_only, True)
            await asyncio.sleep(1)
            rows_at_start = await in_thread(rows_now)
            await asyncio.sleep(11)
            rows_at_end = await in_thread(rows_now)
            await in_thread(psql_rw, f"ALTER DATABASE {DATABASE} RESET default_transaction_read_only")
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 20)
            await asyncio.sleep(2)
            await load.stop()
            return caught, rows_at_end - rows_at_start

        caught, written_while_read_only = faultlib.run(scenario())
        faultlib.say(f"postgres read-only: {written_while_read_only} rows written while it refused writes")
        self.assertEqual(written_while_read_only, 0, "the fault really stopped the writes")
        verdict(self, "postgres refusing writes", cluster, load, caught, 20, started, allow_errors=False)
        sink_lines = [line for n in cluster.instances for line in n.log_lines if "read-only" in line]
        self.assertTrue(sink_lines, "the sink saw the read-only refusals")
        cluster.stop_all()

    def test_table_locked_beyond_the_statement_timeout(self):
        """Another session holds an EXCLUSIVE lock on the table for 10 s (reads
        go on, writes wait); with statement_timeout_ms=1000 every insert is
        cancelled by PostgreSQL (SQLSTATE 57014) and retried until the lock goes."""
        started = time.monotonic()
        cluster = Cluster(self, 2, overrides=["sink.postgres.statement_timeout_ms=1000"])
        load = Load(cluster)

        def rows_now():
            return len(cluster.rows())

        async def scenario():
            await load.start()
            await asyncio.sleep(3)
            locker = subprocess.Popen(
                ["psql", nudge_test.DATABASE_URL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                 f"BEGIN; LOCK TABLE {cluster.table} IN EXCLUSIVE MODE; SELECT pg_sleep(10); COMMIT;"],
                stdout=subprocess.DEVNULL)
            self.addCleanup(locker.kill)
            await asyncio.sleep(1)
            rows_at_start = await in_thread(rows_now)
            await asyncio.sleep(8)
            rows_at_end = await in_thread(rows_now)
            self.assertEqual(await in_thread(locker.wait), 0, "the lock was held, then released")
            heal_at = time.monotonic()
            caught = await catch_up(cluster, load, heal_at, 20)
            await asyncio.sleep(2)
            await load.stop()
            return caught, rows_at_end - rows_at_start

        caught, written_while_locked = faultlib.run(scenario())
        faultlib.say(f"postgres table locked: {written_while_locked} rows written while the lock was held")
        self.assertEqual(written_while_locked, 0, "the lock really held the writes back")
        verdict(self, "postgres table locked 10 s", cluster, load, caught, 20, started, allow_errors=False)
        self.assertTrue(any("statement timeout" in line for n in cluster.instances for line in n.log_lines),
                        "the sink's inserts ran into the statement timeout")
        cluster.stop_all()


if __name__ == "__main__":
    nudge_test.main()
