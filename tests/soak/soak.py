#!/usr/bin/python3
"""Soak: the default pipeline (websocket → redis → kafka → postgres) on two
instances, N clients sending at a steady rate for M minutes, with faults
injected on a schedule. Not part of `make test`: run it with `make soak`
(or tests/soak/run) when changing anything on the message path.

What must hold at the end, and is printed:
  lost        acked messages that are not in PostgreSQL            must be 0
  duplicated  messages stored more than once (same text, 2+ rows)  must be 0
  memory      RSS of the instance that is never restarted, sampled every 5 s;
              its growth per minute after the warm-up is printed and plotted
              (a leak shows as a rising line). Memory rightly grows during
              the first resend_window_ms (5 min) while the resend cache fills
              (about 200 bytes per message sent); the warm-up covers that.

Clients resend a message under the same `ref` when they get an error frame
(the server's resend cache answers with the first id — docs/guarantees.md);
messages in flight on a connection that drops are not resent (the resend
cache does not survive an instance restart), they are counted as `unacked`.

Writes summary.json, rss.csv, events.log and rss.png (with python3-matplotlib)
into --out (default var/soak/<timestamp>/)."""
import argparse
import asyncio
import collections
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402
from nudge_test import NudgeProcess, psql, service  # noqa: E402

import websockets  # noqa: E402

VAR_DIR = os.environ.get("NUDGE_VAR_DIR", os.path.join(nudge_test.REPO, "var"))
CHAT = os.path.join(nudge_test.PIPELINES, "chat.toml")


def log(*parts):
    line = f"{time.strftime('%H:%M:%S')} " + " ".join(str(p) for p in parts)
    print(line, flush=True)
    if EVENTS:
        EVENTS.write(line + "\n")
        EVENTS.flush()


EVENTS = None


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pid_from(path):
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


class Instance:
    """One `nudge run chat.toml` on a fixed port, so clients reconnect to the
    same address after it is restarted."""

    def __init__(self, name, port, env):
        self.name, self.port, self.env = name, port, env
        self.proc = None
        self.restarts = 0

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self):
        self.proc = NudgeProcess(CHAT, f"source.websocket.listen=127.0.0.1:{self.port}", env=self.env, name=self.name)
        self.proc.wait_started(90)

    def alive(self):
        return self.proc is not None and self.proc.proc.poll() is None

    def pid(self):
        return self.proc.proc.pid if self.alive() else None


class Client:
    def __init__(self, name, instance, room, rate, stats):
        self.name, self.instance, self.room, self.rate, self.stats = name, instance, room, rate, stats
        self.seq = 0
        self.pending = {}      # ref -> text, on the current connection
        self.acked = {}        # text -> id
        self.received = 0

    async def run(self, until):
        period = 1.0 / self.rate
        while time.monotonic() < until:
            try:
                async with websockets.connect(self.instance.url, max_size=None, ping_interval=None,
                                              open_timeout=5) as ws:
                    await ws.send(json.dumps({"type": "hello", "name": self.name}))
                    await ws.send(json.dumps({"type": "join", "room": self.room}))
                    reader = asyncio.ensure_future(self.read(ws))
                    # Open loop: the schedule does not wait for acks.
                    next_send = time.monotonic() + random.random() * period
                    try:
                        while time.monotonic() < until and not reader.done():
                            await asyncio.sleep(max(0, next_send - time.monotonic()))
                            next_send += period
                            self.seq += 1
                            ref = f"{self.name}-{self.seq}"
                            text = f"soak {self.name} {self.seq}"
                            self.pending[ref] = text
                            self.stats["sent"] += 1
                            await ws.send(json.dumps({"type": "send", "room": self.room, "text": text, "ref": ref}))
                        if not reader.done():
                            # Let the last acks arrive before closing.
                            deadline = time.monotonic() + 30
                            while self.pending and time.monotonic() < deadline and not reader.done():
                                await asyncio.sleep(0.1)
                    finally:
                        reader.cancel()
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
                pass
            # The connection ended: what it did not ack is not resent (see the module doc).
            self.stats["unacked"] += len(self.pending)
            self.pending.clear()
            if time.monotonic() < until:
                self.stats["reconnects"] += 1
                await asyncio.sleep(0.5 + random.random())

    async def read(self, ws):
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "ack":
                text = self.pending.pop(frame["ref"], None)
                if text is not None:
                    self.acked[text] = frame["id"]
                    self.stats["acked"] += 1
            elif kind == "error":
                self.stats["errors"] += 1
                ref = frame.get("ref")
                if ref in self.pending:
                    # Same ref, same text: the server must not make a second message of it.
                    self.stats["resent"] += 1
                    asyncio.get_running_loop().call_later(
                        1.0, lambda r=ref, t=self.pending[ref]: asyncio.ensure_future(self.resend(ws, r, t)))
            elif kind == "message":
                self.received += 1

    async def resend(self, ws, ref, text):
        if ref not in self.pending:
            return
        try:
            await ws.send(json.dumps({"type": "send", "room": self.room, "text": text, "ref": ref}))
        except websockets.WebSocketException:
            pass


def kill_service(name, pidfile, sig):
    pid = pid_from(os.path.join(VAR_DIR, "services", name, pidfile))
    if pid:
        os.kill(pid, sig)
    return pid


def postgres_pid():
    return pid_from(os.path.join(VAR_DIR, "services", "postgres", "data", "postmaster.pid"))


async def fault_schedule(instances, every, until):
    """Cycles through the faults, one every `every` seconds."""
    victim = instances[1]  # instances[0] is never restarted: its RSS is the leak check

    async def kafka_restart():
        await asyncio.to_thread(service, "kafka", "stop")
        await asyncio.sleep(5)
        await asyncio.to_thread(service, "kafka", "start")

    async def kafka_freeze():
        pid = kill_service("kafka", "kafka.pid", signal.SIGSTOP)
        await asyncio.sleep(10)
        if pid:
            os.kill(pid, signal.SIGCONT)

    async def redis_kill():
        kill_service("redis", "redis.pid", signal.SIGKILL)
        await asyncio.sleep(2)
        await asyncio.to_thread(service, "redis", "start")

    async def postgres_outage():
        await asyncio.to_thread(service, "postgres", "stop")
        await asyncio.sleep(20)
        await asyncio.to_thread(service, "postgres", "start")

    async def instance_kill():
        victim.proc.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.proc.proc.wait)
        await asyncio.sleep(3)
        victim.restarts += 1
        await asyncio.to_thread(victim.start)

    faults = [("kafka restarted", kafka_restart), ("redis SIGKILLed and restarted", redis_kill),
              ("postgres stopped for 20 s", postgres_outage), (f"{victim.name} SIGKILLed and restarted", instance_kill),
              ("kafka frozen (SIGSTOP) for 10 s", kafka_freeze)]
    k = 0
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        name, fault = faults[k % len(faults)]
        k += 1
        log("fault:", name)
        t0 = time.monotonic()
        await fault()
        log(f"fault over after {time.monotonic() - t0:.1f} s:", name)


async def sample_rss(instances, start, until, rows):
    while time.monotonic() < until:
        now = time.monotonic() - start
        rows.append([round(now, 1)] + [rss_kib(i.pid()) if i.alive() else "" for i in instances])
        await asyncio.sleep(5)


async def progress(stats, start, until):
    while time.monotonic() < until:
        await asyncio.sleep(30)
        log(f"t={time.monotonic() - start:.0f}s", " ".join(f"{k}={v}" for k, v in sorted(stats.items())))


def slope_kib_per_min(points):
    """Least-squares slope of (seconds, KiB) points, in KiB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if den == 0 else 60 * sum((p[0] - mx) * (p[1] - my) for p in points) / den


def plot(out, rss_rows, names):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("python3-matplotlib is not installed: no rss.png (apt-get install python3-matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    for col, name in enumerate(names, start=1):
        xs = [r[0] / 60 for r in rss_rows if r[col] != ""]
        ys = [r[col] / 1024 for r in rss_rows if r[col] != ""]
        ax.plot(xs, ys, label=name)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("nudge RSS during the soak (faults every cycle)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "rss.png"), dpi=100)


def main():
    global EVENTS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--rooms", type=int, default=6)
    ap.add_argument("--rate", type=float, default=5, help="messages per second per client")
    ap.add_argument("--fault-every", type=float, default=60, help="seconds between faults")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before RSS counts for the leak check (default: 360, the resend window of 5 min "
                         "while its cache fills, plus a minute; half the run when that is shorter)")
    ap.add_argument("--out", default=os.path.join(VAR_DIR, "soak", time.strftime("%Y%m%d-%H%M%S")))
    args = ap.parse_args()
    if args.warmup is None:
        args.warmup = min(360.0, args.minutes * 30)
    os.makedirs(args.out, exist_ok=True)
    EVENTS = open(os.path.join(args.out, "events.log"), "w")

    for s in ("redis", "postgres", "kafka"):
        if not nudge_test.service_running(s):
            log("starting", s)
            service(s, "start")

    suffix = nudge_test.unique_suffix()
    table = f"soak_messages_{suffix}"
    env = {"NUDGE_RECENT_PREFIX": f"soak:{suffix}:recent:", "NUDGE_TOPIC": f"soak.chat.{suffix}", "NUDGE_GROUP": f"soak-persist-{suffix}", "NUDGE_TABLE": table}
    instances = [Instance("nudge-a", 18181, env), Instance("nudge-b", 18182, env)]
    for i in instances:
        i.start()
    log(f"soak: {args.clients} clients in {args.rooms} rooms at {args.rate}/s each "
        f"({args.clients * args.rate:.0f} msg/s) on 2 instances for {args.minutes} min, a fault every "
        f"{args.fault_every:.0f} s; table {table}")

    stats = collections.Counter()
    clients = [Client(f"c{k:03d}", instances[k % 2], f"room{k % args.rooms}", args.rate, stats)
               for k in range(args.clients)]
    rss_rows = []

    async def run():
        start = time.monotonic()
        until = start + args.minutes * 60
        await asyncio.gather(*(c.run(until) for c in clients), fault_schedule(instances, args.fault_every, until),
                             sample_rss(instances, start, until, rss_rows), progress(stats, start, until))
        return start

    start = asyncio.run(run())

    acked = {}
    for c in clients:
        acked.update(c.acked)
    log(f"sending over: {stats['sent']} sent, {stats['acked']} acked; waiting for PostgreSQL to catch up")
    t0 = time.monotonic()
    while True:
        rows = psql(f"SELECT convert_from(payload, 'UTF8'), id FROM {table}")
        stored = collections.defaultdict(list)
        for text, mid in rows:
            stored[text].append(mid)
        lost = [t for t in acked if t not in stored]
        if not lost or time.monotonic() - t0 > 180:
            break
        time.sleep(1)
    catch_up = time.monotonic() - t0
    duplicated = {t: ids for t, ids in stored.items() if len(ids) > 1}
    wrong_id = [t for t, mid in acked.items() if t in stored and mid not in stored[t]]

    names = [i.name for i in instances]
    with open(os.path.join(args.out, "rss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds"] + [f"{n}_rss_kib" for n in names])
        w.writerows(rss_rows)
    steady = [(r[0], r[1]) for r in rss_rows if r[0] >= args.warmup and r[1] != ""]
    growth = slope_kib_per_min(steady)
    plot(args.out, rss_rows, names)

    for i in instances:
        i.proc.stop()
    alive_at_end = all(i.proc.proc.returncode == 0 for i in instances)
    summary = {
        "minutes": args.minutes, "clients": args.clients, "offered_msg_per_s": args.clients * args.rate,
        "sent": stats["sent"], "acked": len(acked), "errors": stats["errors"], "resent": stats["resent"],
        "unacked_on_disconnect": stats["unacked"], "reconnects": stats["reconnects"],
        "persisted_rows": len(rows), "lost": len(lost), "duplicated": len(duplicated), "ack_id_mismatch": len(wrong_id),
        "catch_up_s": round(catch_up, 1), "deliveries": sum(c.received for c in clients),
        "rss_kib_first": steady[0][1] if steady else None, "rss_kib_last": steady[-1][1] if steady else None,
        "rss_growth_kib_per_min": round(growth, 1), "restarts_of_nudge_b": instances[1].restarts,
        "clean_exit": alive_at_end,
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("summary:", json.dumps(summary))
    print(f"soak: sent={summary['sent']} acked={summary['acked']} persisted={summary['persisted_rows']} "
          f"duplicated={summary['duplicated']} lost={summary['lost']} rss {summary['rss_kib_first']} → "
          f"{summary['rss_kib_last']} KiB ({summary['rss_growth_kib_per_min']} KiB/min); output in {args.out}")
    ok = not lost and not duplicated and not wrong_id and alive_at_end
    if not ok:
        print("soak FAILED", file=sys.stderr)
    try:
        psql(f"DROP TABLE IF EXISTS {table}")
    except AssertionError:
        pass
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
