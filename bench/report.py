"""Regenerates docs/benchmarks.md (and docs/images/bench-*.png) from the results files in bench/results/
(`bench/run report`). Every figure and every sentence about a result on the page comes from those files:
the page holds nothing measured that they do not, and a target they do not measure reads "not measured"."""
import glob
import json
import statistics
import os
import re
import time

SCENARIOS = ["broadcast", "chat", "persist", "idle", "raw", "scale"]
# The sizes of a real run (issue 17); anything smaller is labelled a smoke-sized run.
FULL = {"broadcast": {"connections": 1000}, "chat": {"connections": 1000},
        "persist": {"backlog": 1_000_000}, "idle": {}, "raw": {"messages": 1_000_000},
        "scale": {"connections": 5000, "backlog": 300_000}}
MIN_ROUNDS = {"broadcast": 3, "chat": 3, "persist": 5, "idle": 3, "raw": 3, "scale": 3}
NAMES = {"nudge": "Nudge (native protocol)", "nudge-socketio": "Nudge (Socket.IO)",
         "nudge-presence": "Nudge (native protocol, presence on)",
         "peer": "Node peer (with rooms)", "peer-broadcast": "Node peer (original, no rooms)",
         "nudge-postgres": "Nudge → PostgreSQL", "nudge-mariadb": "Nudge → MariaDB", "benthos": "Benthos",
         "raw-copy": "raw COPY"}
NUDGES = ("nudge", "nudge-socketio")
DRAIN_NAMES = {"peer": "Node peer (one instance's kafkajs consumer, one INSERT per row)"}


# --- reading -------------------------------------------------------------------

def load_all(results_dir):
    out = {s: [] for s in SCENARIOS}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        try:
            r = json.load(open(path))
        except (OSError, ValueError):
            continue
        if r.get("scenario") in out and not r.get("smoke"):
            r["_path"] = path
            out[r["scenario"]].append(r)
    for runs in out.values():
        runs.sort(key=lambda r: r.get("started", ""))
    return out


def small(r):
    """Why a run is below the issue's sizes, or None."""
    o = r["options"]
    why = []
    # scale's idle part alone runs --idle-rounds (2) by design: memory per connection barely moves between rounds
    need = 2 if r["scenario"] == "scale" and (o.get("parts") or "") == "idle" else MIN_ROUNDS[r["scenario"]]
    if o.get("rounds", 0) < need:
        why.append(f"{o.get('rounds')} round(s), fewer than {need}")
    if o.get("only"):
        why.append(f"only {o['only']}")
    for k, v in FULL[r["scenario"]].items():
        if (o.get(k) or 0) < v:
            why.append(f"{k} {o.get(k)} < {v:,}")
    if r["scenario"] == "idle" and max(int(x) for x in o["sizes"].split(",")) < 10000:
        why.append("no size of 10,000")
    if r["scenario"] == "scale" and "idle" in (o.get("parts") or "") and \
            max(int(x) for x in o["sizes"].split(",")) < 4 * (o.get("max_per_process") or 19000):
        why.append("idle connections on fewer than four instances")
    return ", ".join(why) or None


# --- formatting ----------------------------------------------------------------

def num(v, digits=1):
    if v is None:
        return "no result"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def spread(h, key, digits=1, unit=""):
    """'median (min–max)' of a headline key, or 'no result'."""
    v = h.get(key)
    if v is None:
        return "no result"
    lo, hi = h.get(f"{key}_min"), h.get(f"{key}_max")
    n = h.get(f"{key}_rounds")
    out = f"{num(v, digits)}{unit}"
    if lo is not None and hi is not None and n and n > 1:
        out += f" ({num(lo, digits)}–{num(hi, digits)}, {n} rounds)"
    return out


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def fmt_ratio(x):
    return f"{x:.3g}×" if x is not None else "–"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def source(r):
    o = r["options"]
    s = (f"Run {r['started']}, {o['rounds']} round(s), {r['seconds']:.0f} s, load average at the end "
         f"{r['load_1min_at_end']:.2f}; `{os.path.relpath(r['_path'], ROOT_FOR_PATHS)}`.")
    if small(r):
        s += f" **Smaller than the issue's run** ({small(r)}): it shows the method works, not how fast anything is."
    return s


def generator_line(r):
    """What the load generator had: its calibrated ceiling, pinning, and the worst share of it a step used."""
    cal = r.get("calibration") or {}
    parts = []
    for protocol, c in sorted(cal.items()):
        parts.append(f"{protocol}: {num(c.get('frames_per_second'), 0)} frames read/s with {c.get('threads')} threads")
    steps = list(all_steps(r))
    shares = [s["generator"]["ceiling_share"] for s in steps if (s.get("generator") or {}).get("ceiling_share")]
    cpu = [s["generator"]["cpu_share"] for s in steps if (s.get("generator") or {}).get("cpu_share") is not None]
    lag = [s["generator"]["send_lag_p99_ms"] for s in steps if (s.get("generator") or {}).get("send_lag_p99_ms") is not None]
    invalid = [s for s in steps if s.get("valid") is False]
    out = f"Load generator: ceiling measured in this run ({'; '.join(parts) or 'none'}); {r.get('pinning', {}).get('note', 'pinning not recorded')}."
    if shares:
        out += f" Its busiest step read {100 * max(shares):.0f}% of its ceiling"
        out += f", used {100 * max(cpu):.0f}% of a core" if cpu else ""
        out += f", with a send lag p99 of at most {max(lag):.2f} ms" if lag else ""
        out += "."
    if invalid:
        out += (f" {len(invalid)} step(s) were over 70% of the ceiling (or had none) and are left out of every "
                "figure (`valid: false` in the results file).")
    return out


def all_steps(r):
    for row in r.get("rounds", []) + r.get("ingest", []) + r.get("edge", []):
        for v in row.values():
            if isinstance(v, dict) and "steps" in v:
                yield from (s for s in v["steps"] if isinstance(s, dict) and not s.get("failed"))
            elif isinstance(v, dict) and "generator" in v:
                yield v


# --- targets (issue 17) --------------------------------------------------------

def targets(runs):
    """[(target, measured, verdict)] for every target of issue 17; a target no results file measures reads
    'not measured'."""
    rows = []
    chat = runs["chat"][-1] if runs["chat"] else None
    for n in NUDGES:
        name = f"chat, fair: {NAMES[n]}'s highest rate at p99 ≤ 50 ms, zero loss"
        if not chat:
            rows.append([name, "≥ 10× the peer with rooms", "not measured", "not measured"])
            continue
        h = chat["headline"]
        a, b = (h.get(n) or {}).get("highest_rate"), (h.get("peer") or {}).get("highest_rate")
        if a is None or b is None:
            who = " and ".join(x for x, v in ((NAMES[n], a), ("the peer", b)) if v is None)
            rows.append([name, "≥ 10× the peer with rooms", f"{who} held no step: no result", "no verdict"])
            continue
        a_limit, b_limit = limit_reached(chat, n), limit_reached(chat, "peer")
        measured = (f"{'' if a_limit else '≥ '}{num(a, 0)} vs {'' if b_limit else '≥ '}{num(b, 0)} msg/s = "
                    f"{a / b:.2f}×")
        x = a / b
        # A side that held every step offered has a limit above it: the ratio is only a bound.
        if x >= 10 and b_limit:
            v = verdict(True)
        elif x < 10 and a_limit:
            v = verdict(False)
        else:
            v = "no verdict"
            who = " and ".join(x for x, found in ((NAMES[n], a_limit), ("the peer", b_limit)) if not found)
            measured += f" ({who} failed no step the generator could measure: a bound, not a limit)"
        rows.append([name, "≥ 10× the peer with rooms", measured, v])
    bc = {}
    for r in runs["broadcast"]:
        bc[r["options"]["connections"]] = r  # newest of each size wins (sorted oldest first)
    for size in (1000, 5000):
        name = f"broadcast, {size:,} subscribers: Nudge's deliveries per server CPU-second"
        bound = raw_bound(runs, size)
        h = (bc.get(size) or {}).get("headline", {})
        measured_any = False
        for n in NUDGES:
            a = (h.get(n) or {}).get("deliveries_per_target_cpu_s")
            if not (a and bound):
                continue
            measured_any = True
            rows.append([f"{name} ({NAMES[n]})", "≥ 90% of the raw epoll/writev bound",
                         f"{num(a, 0)} vs {num(bound, 0)} = {100 * a / bound:.0f}%", verdict(a / bound >= 0.9)])
        if not measured_any:
            rows.append([name, "≥ 90% of the raw epoll/writev bound",
                         "not measured" + ("" if bound else " (no raw epoll/writev bound at this size)"),
                         "not measured"])
    for size in (1000, 5000):
        name = f"broadcast, {size:,} subscribers: deliveries per server CPU-second, equal p99"
        r = bc.get(size)
        if not r:
            rows.append([name, "≥ 3× the original peer", "not measured", "not measured"])
            continue
        h = r["headline"]
        p = h.get("peer-broadcast") or {}
        for n in NUDGES:
            a, b = (h.get(n) or {}).get("deliveries_per_target_cpu_s"), p.get("deliveries_per_target_cpu_s")
            x = ratio(a, b)
            p99 = f"p99 {num((h.get(n) or {}).get('p99_ms'), 1)} vs {num(p.get('p99_ms'), 1)} ms"
            rows.append([f"{name} ({NAMES[n]})", "≥ 3× the original peer",
                         f"{num(a, 0)} vs {num(b, 0)} = {fmt_ratio(x)}; {p99}" if x else "no result",
                         verdict(x >= 3) if x else "no verdict"])
    for size in (1000, 5000):
        h = (bc.get(size) or {}).get("headline", {})
        calls = [(NAMES[t], (h.get(t) or {}).get("write_calls_per_delivery")) for t in NUDGES + ("peer-broadcast",)]
        calls = [(who, c) for who, c in calls if c is not None]
        rows.append([f"broadcast, {size:,} subscribers: write system calls per delivery", "reported",
                     "; ".join(f"{who} {c:.2f}" for who, c in calls) if calls else "not measured",
                     "reported" if calls else "not measured"])
    idle = runs["idle"][-1] if runs["idle"] else None
    pts = idle_points(idle) if idle else {}
    at = pts.get(10000, {})
    nb, pb = at.get("nudge"), at.get("peer")
    if nb and nb["bytes"] is not None:
        rows.append(["idle: Nudge's memory per connection at 10,000", "≤ 1 KiB",
                     f"{num(nb['bytes'], 0)} B ({num(nb['open'], 0)} open)", verdict(nb["bytes"] <= 1024)])
    else:
        rows.append(["idle: Nudge's memory per connection at 10,000", "≤ 1 KiB", "not measured", "not measured"])
    if nb and pb and nb["bytes"] is not None and pb["bytes"] and pb.get("gc"):
        rows.append(["idle: against the peer at 10,000, the peer measured after a GC", "≤ 1/5",
                     f"{num(nb['bytes'], 0)} vs {num(pb['bytes'], 0)} B = 1/{pb['bytes'] / nb['bytes']:.1f}"
                     + ("" if pb["all_open"] else f" (the peer opened {num(pb['open'], 0)} of 10,000)"),
                     verdict(nb["bytes"] / pb["bytes"] <= 0.2 and pb["all_open"])])
    else:
        rows.append(["idle: against the peer at 10,000, the peer measured after a GC", "≤ 1/5", "not measured",
                     "not measured"])
    rows.append(presence_cost_row(at))
    persist = runs["persist"][-1] if runs["persist"] else None
    d = (persist or {}).get("headline", {}).get("drain", {})
    nu, be, co = d.get("nudge-postgres") or {}, d.get("benthos") or {}, d.get("raw-copy") or {}
    x = ratio(nu.get("rows_per_s"), be.get("rows_per_s"))
    if x:
        apart = (nu.get("rows_per_s_min") or 0) > (be.get("rows_per_s_max") or float("inf"))
        rows.append(["persist: drain rows/s into PostgreSQL against Benthos", "≥ 2×, spreads not overlapping",
                     f"{spread(nu, 'rows_per_s', 0)} vs {spread(be, 'rows_per_s', 0)} = {x:.2f}×; spreads "
                     + ("apart" if apart else "overlap"), verdict(x >= 2 and apart)])
    else:
        rows.append(["persist: drain rows/s into PostgreSQL against Benthos", "≥ 2×, spreads not overlapping",
                     "not measured", "not measured"])
    x = ratio(nu.get("rows_per_s"), co.get("rows_per_s"))
    rows.append(["persist: drain rows/s against raw COPY into the same table", "≥ 75%",
                 f"{num(nu.get('rows_per_s'), 0)} vs {num(co.get('rows_per_s'), 0)} = {100 * x:.0f}%" if x
                 else "not measured", verdict(x >= 0.75) if x else "not measured"])
    return rows


def raw_bound(runs, connections):
    """Deliveries per writer CPU-second of the newest raw epoll/writev bound at this many connections."""
    for r in reversed(runs["raw"]):
        v = (r["headline"].get(f"epoll-writev/{connections}") or {}).get("deliveries_per_cpu_s")
        if v:
            return v
    return None


def limit_reached(run, target):
    """Whether every round found the target's limit (a step above its best failed)."""
    rows = [row[target] for row in run.get("rounds", []) if target in row]
    return bool(rows) and all(round_found_limit(r, run.get("options", {}).get("p99", 50.0)) for r in rows)


def round_found_limit(r, p99):
    """A step above the best that the target failed while the generator had room (a valid step). Read from the
    steps, so results written before invalid steps were told apart are read the same way."""
    steps = r.get("steps")
    if steps is None:
        return r.get("limit_reached", True)
    best = r.get("highest_rate") or 0
    return any(s["offered"] > best and s.get("valid", True)
               and (s.get("failed") or s.get("lost") or s.get("errors") or s.get("failed_connections")
                    or s["p99_ms"] > p99) for s in steps)


def verdict(ok):
    return "met" if ok else "**missed**"


def presence_cost_row(at):
    """What presence adds per idle connection at 10,000: Nudge with it on (as chat.toml ships) against Nudge with it
    off (as measured against the peer, which keeps none)."""
    name = "idle: what presence adds per connection at 10,000 (presence on − off)"
    on, off = at.get("nudge-presence"), at.get("nudge")
    if not on or not off or on["bytes"] is None or off["bytes"] is None:
        return [name, "reported", "not measured", "not measured"]
    return [name, "reported", f"{num(on['bytes'] - off['bytes'], 0)} B ({num(on['bytes'], 0)} vs {num(off['bytes'], 0)})",
            "reported"]


def idle_points(r):
    """{n: {target: {bytes, open, gc, all_open}}}: medians over rounds of bytes per open connection."""
    acc = {}
    for row in r["rounds"]:
        for target, v in row.items():
            for p in v["points"]:
                if p["n"]:
                    acc.setdefault(p["n"], {}).setdefault(target, []).append(p)
    out = {}
    for n, d in acc.items():
        for t, ps in d.items():
            vals = sorted(p["rss_per_connection"] for p in ps if p.get("rss_per_connection") is not None)
            heap = sorted(p["v8_heap_per_connection"] for p in ps if p.get("v8_heap_per_connection") is not None)
            out.setdefault(n, {})[t] = {
                "bytes": vals[len(vals) // 2] if vals else None, "min": vals[0] if vals else None,
                "max": vals[-1] if vals else None, "open": sorted(p["open"] for p in ps)[len(ps) // 2],
                "gc": all(p.get("gc_before_sampling") for p in ps), "all_open": all(p.get("all_open") for p in ps),
                "heap": heap[len(heap) // 2] if heap else None}
    return dict(sorted(out.items()))


# --- the summary ---------------------------------------------------------------

def summary(runs, target_rows):
    any_run = next((rs[-1] for rs in runs.values() if rs), None)
    m = any_run["machine"]
    out = ["## Summary", ""]
    compared = []
    if runs["chat"] or runs["broadcast"] or runs["idle"]:
        inst = sorted({r["options"].get("instances") or 2 for s in ("chat", "broadcast") for r in runs[s]} or {2})
        compared.append(f"Nudge (`pipelines/chat.toml`) driven over its own protocol and over Socket.IO, against "
                        f"the Node.js design it replaces (`bench/peers/socketio-node`: with rooms for chat and "
                        f"ingest, the unchanged original for broadcast), two instances each, on the same Redis, Kafka "
                        f"and PostgreSQL")
    if runs["persist"]:
        compared.append("Nudge's persistence worker against Benthos (Redpanda Connect's engine) and a raw `COPY`")
    out.append(f"**What was compared**: {'; '.join(compared) or 'nothing yet'}.")
    out.append("")
    out.append(f"**Machine**: {m['cores']} cores ({m['cpu_model']}), Linux {m['kernel']}; "
               f"{(any_run.get('pinning') or {}).get('note', 'pinning not recorded')}. Everything — servers, "
               "targets and load generator — ran on it.")
    out.append("")
    won, lost, open_ = [], [], []
    for name, goal, measured, v in target_rows:
        line = f"{name} ({goal}): {measured}"
        (won if v == "met" else lost if v == "**missed**" else open_).append(line)
    # head-to-head figures that are not targets, from the same files
    chat = runs["chat"][-1] if runs["chat"] else None
    if chat:
        h = chat["headline"]
        for n in NUDGES:
            a, b = (h.get(n) or {}).get("deliveries_per_target_cpu_s"), (h.get("peer") or {}).get("deliveries_per_target_cpu_s")
            if a and b:
                (won if a > b else lost).append(
                    f"chat: deliveries per server CPU-second at the highest rate held, {NAMES[n]} {num(a, 0)} vs the "
                    f"peer's {num(b, 0)} ({a / b:.2f}×)")
    persist = runs["persist"][-1] if runs["persist"] else None
    if persist:
        ih = persist["headline"].get("ingest", {})
        pe = (ih.get("peer") or {}).get("us_per_accepted")
        for n in NUDGES:
            a = (ih.get(n) or {}).get("us_per_accepted")
            if a and pe:
                (won if a < pe else lost).append(
                    f"ingest (no fanout): server CPU per accepted message, {NAMES[n]} {num(a, 0)} µs vs the peer's "
                    f"{num(pe, 0)} µs")
    why = []
    if chat:
        for t, v in (chat.get("rounds") or [{}])[0].items():
            best = v.get("highest_rate")
            at = next((st for st in v.get("steps", []) if st.get("offered") == best and not st.get("failed")), None)
            if at and at.get("cpu"):
                parts = ", ".join(f"{role} {num(c['cpu_ms_per_1000_messages'], 0)} µs"
                                  + (f" ({100 * c['system_share']:.0f}% in the kernel)"
                                     if isinstance(c.get("system_share"), (int, float)) else "")
                                  for role, c in at["cpu"].items() if c.get("cpu_ms_per_1000_messages"))
                why.append(f"chat, {NAMES.get(t, t)} at {best:g} msg/s (round 1): CPU per message — {parts}")
    bc = runs["broadcast"][-1] if runs["broadcast"] else None
    if bc:
        for t, v in (bc.get("rounds") or [{}])[0].items():
            for role, c in (v.get("cpu") or {}).items():
                if role in ("nudge", "node") and isinstance(c.get("system_share"), (int, float)):
                    why.append(f"broadcast, {NAMES.get(t, t)}, {bc['options']['connections']:,} subscribers "
                               f"(round 1): {100 * c['system_share']:.0f}% of {role}'s CPU was in the kernel "
                               "(writes, and on loopback the receiving side's TCP processing)")
    why += kernel_floors(chat, runs["broadcast"])
    out += ["**Won**:", ""] + [f"- {x}" for x in won or ["nothing measured yet"]] + [""]
    out += ["**Lost or missed**:", ""] + [f"- {x}" for x in lost or ["nothing"]] + [""]
    if open_:
        out += ["**Not measured or no verdict**:", ""] + [f"- {x}" for x in open_] + [""]
    if why:
        out += ["**Why** — where the CPU went, as measured:", ""] + [f"- {x}" for x in why] + [""]
    return out


def kernel_floors(chat, broadcasts):
    """What the kernel alone lets a ratio reach: the peer's whole CPU per delivery over Nudge's kernel CPU per
    delivery (total minus user-space, the targets' processes) is the most Nudge could win by with no user-space
    time at all. When that is under a goal, the goal is out of reach on this kernel, whatever Nudge does."""
    out = []

    def per_delivery(h):
        total, user = h.get("deliveries_per_target_cpu_s"), h.get("deliveries_per_target_user_cpu_s")
        if not (total and user):
            return None
        return 1e6 / total, 1e6 / total - 1e6 / user  # µs of CPU, of which in the kernel

    def bullet(what, h, peer, goal):
        for n in NUDGES:
            a, b = per_delivery(h.get(n) or {}), per_delivery(h.get(peer) or {})
            if a and b and a[1] > 0:
                out.append(f"{what}, {NAMES[n]}: {a[0]:.1f} µs of CPU per delivery, {a[1]:.1f} of them in the "
                           f"kernel; the peer {b[0]:.1f} µs. With no user-space time at all Nudge could be at most "
                           f"{b[0] / a[1]:.1f}× the peer (goal {goal})")
    if chat:
        bullet("chat at the highest rate held", chat_at_best(chat), "peer", "10×")
    seen = set()
    for r in reversed(broadcasts):
        size = r["options"]["connections"]
        if size not in seen:
            seen.add(size)
            bullet(f"broadcast, {size:,} subscribers", r["headline"], "peer-broadcast", "3×")
    return out


def chat_at_best(chat):
    """{target: the CPU per delivery at its best step}, the median over rounds, in the headline's keys."""
    out = {}
    for t in (chat.get("headline") or {}):
        totals, users = [], []
        for row in chat.get("rounds", []):
            v = row.get(t) or {}
            at = next((st for st in v.get("steps", []) if st.get("offered") == v.get("highest_rate")
                       and not st.get("failed")), None)
            if at and at.get("deliveries_per_target_cpu_s") and at.get("deliveries_per_target_user_cpu_s"):
                totals.append(at["deliveries_per_target_cpu_s"])
                users.append(at["deliveries_per_target_user_cpu_s"])
        if totals:
            out[t] = {"deliveries_per_target_cpu_s": statistics.median(totals),
                      "deliveries_per_target_user_cpu_s": statistics.median(users)}
    return out


# --- sections ------------------------------------------------------------------

def cpu_rows(r):
    """Per process, CPU-µs per message, at each target's last valid step of round 1."""
    rows = []
    for target, v in (r.get("rounds") or [{}])[0].items():
        steps = v["steps"] if isinstance(v, dict) and "steps" in v else [v]
        steps = [s for s in steps if isinstance(s, dict) and s.get("cpu") and s.get("valid", True)]
        if not steps:
            continue
        s = steps[-1]
        for role, c in s["cpu"].items():
            share = c.get("system_share")
            rows.append([NAMES.get(target, target), f"{s['offered']:g}/s", role, c.get("processes") or "–",
                         num(c["cpu_ms_per_1000_messages"], 1),
                         f"{100 * share:.0f}%" if isinstance(share, (int, float)) else "–", num(c["rss_mib"], 1)])
    return rows


def cpu_table(r):
    rows = cpu_rows(r)
    if not rows:
        return []
    return ["CPU over the measured window (round 1, last valid step), per process tree, re-read at the end of the "
            "window with the children's times:", "",
            table(["target", "offered", "process", "processes", "CPU-µs / message", "of which kernel", "RSS MiB"],
                  rows), ""]


def section_broadcast(runs):
    if not runs:
        return []
    latest = {}
    for r in runs:
        latest[(r["options"]["connections"], r["options"]["rate"])] = r
    out = ["## broadcast", ""]
    r = runs[-1]
    o = r["options"]
    out += [f"1 publisher, N subscribers in one room over two instances. The peer is the unchanged original (it "
            f"has no rooms; with one room the two do the same work). Latest run: {o['connections']:,} subscribers, "
            f"{o['rate']:g} messages/s for {o['duration']:g} s. " + source(r), "", generator_line(r), ""]
    rows = []
    for (conns, rate), run in sorted(latest.items()):
        for t, h in run["headline"].items():
            rows.append([f"{conns:,}", f"{rate:g}", NAMES.get(t, t), spread(h, "deliveries_per_s", 0),
                         spread(h, "p99_ms", 1), spread(h, "deliveries_per_target_cpu_s", 0),
                         spread(h, "deliveries_per_target_user_cpu_s", 0)])
    out += [table(["subscribers", "msg/s", "target", "deliveries/s", "p99 ms", "deliveries per server CPU-s",
                   "per server user-space CPU-s"], rows), "", *cpu_table(r)]
    return out


def section_chat(runs, images, plt):
    if not runs:
        return []
    r = runs[-1]
    o = r["options"]
    h = r["headline"]
    out = ["## chat", "",
           f"{o['connections']:,} connections in {o['rooms']:,} rooms over two instances, every connection sending; "
           f"rooms and instances assigned independently, so rooms span both instances. The offered rate starts at "
           f"{o['start_rate']:g}/s and grows ×{o['step']:g} per step ({o['duration']:g} s each) until p99 > "
           f"{o['stop_p99']:g} ms or a loss; a side that holds no step is stepped down (halving, up to "
           f"{o.get('max_down', 0)} times) until one holds, else it has no result. Headline: the highest rate held "
           f"with p99 ≤ {o['p99']:g} ms and zero loss. " + source(r), "", generator_line(r), ""]
    rows = []
    for t, v in h.items():
        rows.append([NAMES.get(t, t), ("" if limit_reached(r, t) else "≥ ") + spread(v, "highest_rate", 0),
                     spread(v, "deliveries_per_s", 0),
                     spread(v, "p99_ms", 1), spread(v, "deliveries_per_target_cpu_s", 0),
                     num(100 * v["cross_instance_share"], 0) + "%" if v.get("cross_instance_share") is not None
                     else "no result"])
    out += [table(["target", "highest rate held, msg/s", "deliveries/s there", "p99 ms there",
                   "deliveries per server CPU-s there", "deliveries across instances"], rows), ""]
    rows = []
    for t, v in (r["rounds"] or [{}])[0].items():
        for s in v.get("steps", []):
            if s.get("failed"):
                rows.append([NAMES.get(t, t), "–", "FAILED", "", "", "", "", ""])
                continue
            rows.append([NAMES.get(t, t), f"{s['offered']:g}", num(s["deliveries_per_s"], 0), num(s["p50_ms"], 2),
                         num(s["p99_ms"], 2), s["lost"], s["misrouted"],
                         "yes" if s.get("valid", True) else f"no: {s.get('invalid_reason')}"])
    out += ["Round 1, every step:", "",
            table(["target", "offered/s", "deliveries/s", "p50 ms", "p99 ms", "lost", "misrouted", "valid"], rows),
            "", *cpu_table(r)]
    if plt and plot_chat(r, os.path.join(images, "bench-chat-latency.png"), plt):
        out += ["![chat latency percentiles against offered rate](images/bench-chat-latency.png)", ""]
    return out


def section_persist(runs):
    if not runs:
        return []
    r = runs[-1]
    o = r["options"]
    out = ["## persist", ""]
    ih = r["headline"].get("ingest") or {}
    if ih:
        roles = sorted({k[len("us_per_accepted_"):] for v in ih.values() for k in v
                        if k.startswith("us_per_accepted_") and not re.search(r"_(min|max|rounds)$", k)
                        and k != "us_per_accepted_target"})
        out += [f"(a) Ingest alone: {o['connections']:,} clients each in a room of its own (nothing fans out), "
                f"{o.get('ingest_rate') or o['start_rate']:g} messages/s offered; server CPU per accepted message "
                "(Nudge: acknowledged, which it does once Kafka has the message, acks=all; the peer does not "
                "acknowledge, so per message sent — its producer uses acks=all too), per process. " + source(r), "",
                generator_line(r), "",
                table(["target", "all processes, µs", "the server alone, µs"] + [f"{x}, µs" for x in roles],
                      [[NAMES.get(t, t), spread(v, "us_per_accepted", 0), spread(v, "us_per_accepted_target", 0)]
                       # "–": the target has no such process (node for Nudge, nudge for the peer)
                       + [spread(v, f"us_per_accepted_{x}", 0) if v.get(f"us_per_accepted_{x}_rounds") else "–"
                          for x in roles] for t, v in ih.items()]), ""]
    d = r["headline"].get("drain") or {}
    if d:
        copy = (d.get("raw-copy") or {}).get("rows_per_s")
        out += [f"(b) Draining a backlog of {o['backlog']:,} messages from Kafka into PostgreSQL (the peer: "
                f"{o.get('peer_backlog') or min(o['backlog'], 100000):,}); rows/s, median (min–max) of rounds. "
                "Benthos writes into a table with the same `(room, id)` index as Nudge's sink.", "",
                table(["drain", "rows/s", "rows/s from the first row", "of raw COPY"],
                      [[DRAIN_NAMES.get(k, NAMES.get(k, k)), spread(v, "rows_per_s", 0),
                        spread(v, "rows_per_s_from_first_row", 0),
                        fmt_ratio(ratio(v.get("rows_per_s"), copy))] for k, v in d.items()]), ""]
        skipped = [row["benthos"]["skipped"] for row in r.get("drain", []) if (row.get("benthos") or {}).get("skipped")]
        if skipped:
            out += [f"Benthos did not run: {skipped[0]}", ""]
    return out


def presence_note(r):
    """Which targets kept presence, from the results (runs before the setting kept it, as chat.toml ships)."""
    used = (r.get("nudge_presence") or {}).get("by_target")
    if not used:
        return "Nudge ran its pipeline's own presence setting (the run predates `[pipeline] presence`). "
    on = [NAMES.get(t, t) for t, v in sorted(used.items()) if v == "on"]
    return ("Nudge runs with presence off, as the peer keeps none"
            + (f"; {', '.join(on)} keeps it, to show its cost" if on else "") + ". ")


def section_idle(runs, images, plt):
    if not runs:
        return []
    r = runs[-1]
    pts = idle_points(r)
    out = ["## idle", "",
           "Memory per idle connection: (anonymous RSS at N − at 0) / connections open, summed over the instances. "
           "The peer runs with `--expose-gc` and collects garbage before each sample; its V8 heap is reported too. "
           + presence_note(r) +
           f"Connections open at {r['options']['connect_rate']:g}/s for Nudge and "
           f"{r['options'].get('peer_connect_rate', r['options']['connect_rate']):g}/s for the peer. " + source(r), ""]
    rows = []
    for n, d in pts.items():
        for t, v in d.items():
            rows.append([f"{n:,}", NAMES.get(t, t), f"{num(v['open'], 0)}" + ("" if v["all_open"] else " (not all)"),
                         num(v["bytes"], 0) + (f" ({num(v['min'], 0)}–{num(v['max'], 0)})" if v["min"] != v["max"] else ""),
                         num(v["heap"], 0) if v["heap"] is not None else "–",
                         "yes" if v["gc"] else ("–" if t.startswith("nudge") else "no")])
    out += [table(["N", "target", "open", "B/connection (RSS)", "B/connection (V8 heap)", "GC before sampling"],
                  rows), ""]
    if plt and plot_idle(r, os.path.join(images, "bench-idle.png"), plt):
        out += ["![memory per idle connection](images/bench-idle.png)", ""]
    return out


def section_raw(runs):
    if not runs:
        return []
    r = runs[-1]
    o = r["options"]
    h = r["headline"]
    labels = {"redis-publish": "Redis PUBLISH", "kafka-produce": "Kafka ProducerPerformance (acks=all)",
              "nudge-log-produce": "Nudge's Kafka log produce", "postgres-copy": "PostgreSQL COPY rows"}
    bounds = [[f"{k.split('/')[1]} connections", spread(v, "writer_cpu_us_per_delivery", 2),
               spread(v, "deliveries_per_cpu_s", 0)] for k, v in h.items() if k.startswith("epoll-writev/")]
    out = ["## raw limits", "", f"{o['messages']:,} messages of {o['payload']} bytes each. " + source(r), "",
           table(["", "per second"], [[labels.get(k, k), spread(v, "per_s", 0)] for k, v in h.items()
                                      if not k.startswith("epoll-writev/")]), ""]
    if bounds:
        out += ["The broadcast bound (`bench/rawbound`): one `writev` of a 200-byte frame per connection per "
                "message over loopback, at the deliveries/s of the broadcast runs, no framework; the writer "
                "thread's CPU:", "",
                table(["", "µs of CPU per delivery", "deliveries per CPU-second"], bounds), ""]
    return out


def latest_with(runs, part):
    """The newest run that measured `part` of a scenario run in parts (`bench/run scale --parts`)."""
    return next((r for r in reversed(runs) if (r.get("headline") or {}).get(part)), None)


def section_scale(runs):
    """Issue 19's measured scaling: edge instances, persistence workers, idle connections to the machine's limit,
    each part from the newest run that measured it."""
    if not runs:
        return []
    out = ["## scale", ""]
    r = latest_with(runs, "edge")
    if r:
        o, h, m = r["options"], r["headline"], r["machine"]
        edge = h["edge"]
        out += [f"(a) **Edge instances** (`pipelines/{o['edge_pipeline']}`: clients, the Redis fanout, the Kafka "
                f"producer) {' → '.join(sorted(edge, key=int))} on the same Redis and Kafka: {o['connections']:,} "
                f"connections in {o['rooms']:,} rooms spread over them, every connection sending, the rate stepped "
                f"×{o['step']:g} ({o['duration']:g} s windows) as in chat; the highest rate held at p99 ≤ "
                f"{o['p99']:g} ms with nothing lost (\"≥\": the instances failed no step the generator could "
                f"measure, the limit lies higher). **This machine has {m['cores']} cores**: the load generator is "
                "pinned to one and every instance shares the other, so an added instance adds no CPU, only "
                "another process to split the work with. The figures are therefore **per CPU-second** of the "
                "instances (their process trees over the window): what one second of an instance's CPU carries. "
                + source(r), "", generator_line(r), "",
                table(["instances", "connections held", "highest rate held, msg/s", "deliveries/s there",
                       "p99 ms there", "instances' CPU, cores", "messages per instance CPU-s",
                       "deliveries per instance CPU-s", "deliveries per CPU-s of every server",
                       "Redis CPU-µs per message", "deliveries across instances"],
                      # "≥": some round's instances failed no step the generator could measure (a bound)
                      [[c, spread(v, "connections", 0),
                        ("" if v.get("highest_rate") is None or all(
                            round_found_limit(row[c], o["p99"]) for row in r.get("edge", []) if c in row)
                         else "≥ ") + spread(v, "highest_rate", 0), spread(v, "deliveries_per_s", 0), spread(v, "p99_ms", 1),
                        spread(v, "instance_cores", 2), spread(v, "messages_per_instance_cpu_s", 0),
                        spread(v, "deliveries_per_instance_cpu_s", 0),
                        spread(v, "deliveries_per_server_cpu_s", 0), spread(v, "redis_cpu_us_per_message", 1),
                        num(100 * v["cross_instance_share"], 0) + "%" if v.get("cross_instance_share") is not None
                        else "no result"] for c, v in sorted(edge.items(), key=lambda kv: int(kv[0]))]), ""]
        eq = h.get("edge_at_equal_rate")
        if eq:
            out += [f"**What an added instance costs, at equal work.** Each count's highest rate differs, and an "
                    f"instance's CPU per delivery falls as its rate rises (its timers and sweeps cost the same at any "
                    f"rate), so the per-CPU figures above do not compare the counts. Here every count carries the same "
                    f"offered rate, **{eq['rate']:,.0f} msg/s** ({eq['rate'] * 10:,.0f} deliveries/s), the highest "
                    "rate at which every count has at least two valid windows with nothing lost; medians over those "
                    "windows (a window counts whatever its p99: the CPU a delivery costs does not depend on a "
                    "latency spike). Efficiency: deliveries per instance CPU-second against one instance's.", "",
                    table(["instances", "windows", "deliveries per instance CPU-s", "instance CPU-µs per delivery",
                           "efficiency", "Redis CPU-µs per message", "p99 ms"],
                          [[c, str(v["steps"]), num(v["deliveries_per_instance_cpu_s"], 0),
                            num(v["instance_cpu_us_per_delivery"], 2),
                            f"{v['efficiency']:.2f}" if v.get("efficiency") is not None else "no result",
                            num(v["redis_cpu_us_per_message"], 1), num(v["p99_ms"], 1)]
                           for c, v in sorted(eq["counts"].items(), key=lambda kv: int(kv[0]))]), ""]
    r = latest_with(runs, "persist")
    if r:
        o, h = r["options"], r["headline"]
        persist = h["persist"]
        backlogs = sorted({v.get("backlog") for row in r.get("persist", []) for v in row.values()} - {None})
        out += [f"(b) **Persistence workers** (`pipelines/chat-persist.toml`) {' → '.join(sorted(persist, key=int))} "
                f"draining the same backlog: one topic of {num(backlogs[0], 0) if backlogs else '?'} messages "
                "(6 partitions, filled once per round through the edge), each count in a consumer group and table "
                "of its own, timed from the workers' start to the last row. Exactly once: the table holds as many "
                "rows as the topic holds messages, and as many distinct ids; rows a worker wrote again after a "
                "rebalance are skipped by the id key and counted (`rows_duplicate`). " + source(r), "",
                table(["workers", "rows/s", "rows/s from the first row", "of one worker", "worker CPU-µs per row",
                       "PostgreSQL CPU-µs per row", "exactly once (every round)", "rows written again, skipped"],
                      [[c, spread(v, "rows_per_s", 0), spread(v, "rows_per_s_from_first_row", 0),
                        fmt_ratio(ratio(v.get("rows_per_s"), (persist.get(min(persist, key=int)) or {}).get("rows_per_s"))),
                        spread(v, "worker_cpu_us_per_row", 1), spread(v, "postgres_cpu_us_per_row", 1),
                        "yes" if v.get("exactly_once") else "**no**", spread(v, "redelivered_skipped", 0)]
                       for c, v in sorted(persist.items(), key=lambda kv: int(kv[0]))]), ""]
    r = latest_with(runs, "idle")
    if r:
        o, h = r["options"], r["headline"]
        idle = h["idle"]
        pts = {n: p for row in r.get("idle", [])[:1] for n, p in row.items()}
        out += [f"(c) **Idle connections up to this machine's limit.** A process here may hold at most 20,000 file "
                f"descriptors (the hard limit), so each edge instance and each nudge-bench holds at most "
                f"{o['max_per_process']:,} connections, over as many instances and generator processes as that "
                "takes, from several source addresses (127.0.0.x: loopback has ~28,000 ephemeral ports per "
                "address). User memory: the instances' anonymous RSS at N less at 0, per connection open. The "
                "kernel's: the socket caches of `/proc/slabinfo` (`" + "`, `".join(SCALE_SLABS) + "`) and the TCP "
                "buffer pages of `/proc/net/sockstat`, at N less at 0; on loopback both ends of a connection are on "
                "this machine, so those are **both ends** — a server's own end is about half. " + source(r), "",
                table(["N", "instances", "nudge-bench processes", "source addresses", "open",
                       "Nudge, B/connection (user RSS)", "kernel socket slabs, B/connection (both ends)",
                       "kernel TCP buffers, B/connection", "all slab (meminfo), B/connection",
                       "nudge-bench, RSS / connection (whole process)"],
                      [[f"{int(n):,}", (pts.get(n) or {}).get("instances", "–"), (pts.get(n) or {}).get("generators", "–"),
                        (pts.get(n) or {}).get("source_addresses", "–"),
                        spread(v, "open", 0) + ("" if v.get("all_open") else " (not all)"),
                        spread(v, "rss_per_connection", 0), spread(v, "kernel_slab_per_connection", 0),
                        spread(v, "kernel_tcp_buffers_per_connection", 0),
                        spread(v, "kernel_slab_total_per_connection", 0), spread(v, "generator_rss_per_connection", 0)]
                       for n, v in sorted(idle.items(), key=lambda kv: int(kv[0]))]), ""]
    return out


SCALE_SLABS = ("TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", "eventpoll_pwq")


def plot_chat(r, path, plt):
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for (target, v), style in zip((r["rounds"] or [{}])[0].items(), ("-", "--", ":", "-.")):
        steps = [s for s in v.get("steps", []) if not s.get("failed")]
        if not steps:
            continue
        steps.sort(key=lambda s: s["offered"])
        ax.plot([s["offered"] for s in steps], [s["p99_ms"] for s in steps], style, marker="o", markersize=3,
                label=f"{NAMES.get(target, target)} p99")
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.axhline(r["options"]["p99"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("offered messages/s")
    ax.set_ylabel("publish → receive p99, ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_idle(r, path, plt):
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for target, v in r["rounds"][0].items():
        pts = [p for p in v["points"] if p["n"] and p["open"] and p.get("rss_per_connection") is not None]
        if pts:
            ax.plot([p["open"] for p in pts], [p["rss_per_connection"] / 1024 for p in pts], marker="o",
                    label=NAMES.get(target, target))
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel("idle connections open")
    ax.set_ylabel("KiB per connection (anonymous RSS)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


ROOT_FOR_PATHS = "."


def render(runs, images=None, plt=None):
    """The page, from the runs ({scenario: [results, oldest first]})."""
    have = [s for s in SCENARIOS if runs[s]]
    if not have:
        return None
    target_rows = targets(runs)
    m = runs[have[0]][-1]["machine"]
    out = ["# Benchmarks", "",
           "<!-- Generated by `bench/run report` from bench/results/*.json; do not edit by hand. -->", ""]
    small_runs = [s for s in have if small(runs[s][-1])]
    if small_runs:
        out += [f"> **Some figures come from runs smaller than the issue's** ({', '.join(small_runs)}): they show "
                "that the method runs, not how fast anything is. Re-run those scenarios with their defaults on a "
                "quiet machine, then `bench/run report`.", ""]
    out += summary(runs, target_rows)
    out += ["## Targets", "", "Issue 17's targets, each judged on the results files below; a target they do not "
            "measure reads \"not measured\".", "",
            table(["target", "goal", "measured", "verdict"], target_rows), ""]
    out += ["## Machine", "",
            table(["", ""], [["cores", m["cores"]], ["CPU", m["cpu_model"]], ["kernel", m["kernel"]],
                             ["nudge", m["nudge"]], ["node", m["node"]], ["redis", m["redis"]],
                             ["kafka", m["kafka"]], ["postgres", m["postgres"]], ["mariadb", m.get("mariadb")]]), ""]
    out += section_broadcast(runs["broadcast"])
    out += section_chat(runs["chat"], images, plt)
    out += section_persist(runs["persist"])
    out += section_idle(runs["idle"], images, plt)
    out += section_raw(runs["raw"])
    out += section_scale(runs["scale"])
    out += ["## Method notes", "",
            "- A step counts only if the load generator had room: its ceiling (every frame it reads, expected or "
            "not) is measured at the start of each run, and a step over 70% of it is marked invalid and left out.",
            "- CPU per process is per process tree (`nudge-bench --watch-pid`), read again at the end of each "
            "window so that processes forked during it (PostgreSQL backends) count, with the children's times.",
            "- Medians over rounds, with the spread (min–max) and the number of rounds that measured it.",
            f"- Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from "
            + ", ".join(f"`{os.path.relpath(runs[s][-1]['_path'], ROOT_FOR_PATHS)}`" for s in have) + ".", ""]
    return "\n".join(out)


def main(var, root, results_dir=None):
    global ROOT_FOR_PATHS
    ROOT_FOR_PATHS = root
    results_dir = results_dir or os.path.join(root, "bench", "results")
    runs = load_all(results_dir)
    if not any(runs.values()):
        print(f"report: no results files in {results_dir}: run a scenario first (bench/run <scenario>)")
        return 1
    images = os.path.join(root, "docs", "images")
    os.makedirs(images, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    page = render(runs, images, plt)
    path = os.path.join(root, "docs", "benchmarks.md")
    with open(path, "w") as f:
        f.write(page)
    print(f"report: wrote {path} from {results_dir}")
    return 0
