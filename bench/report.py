"""Regenerates docs/benchmarks.md and docs/images/bench-*.png from the latest
var/bench/<scenario>-*/results.json of each scenario (`bench/run report`)."""
import glob
import json
import os
import time

SCENARIOS = ["broadcast", "chat", "persist", "idle", "raw"]
# What a real run uses (issue 6); anything smaller is a smoke run.
FULL = {"broadcast": {"connections": 10000}, "chat": {"connections": 5000, "rooms": 500},
        "persist": {"backlog": 1_000_000}, "idle": {}, "raw": {"messages": 1_000_000}}


def latest(var, scenario):
    """The newest full run of the scenario, else its newest run of any size."""
    paths = sorted(glob.glob(os.path.join(var, "bench", f"{scenario}-*", "results.json")))
    runs = [(json.load(open(p)), p) for p in paths]
    full = [(r, p) for r, p in runs if not is_smoke(r)]
    return (full or runs or [(None, None)])[-1]


def all_results(var, scenario):
    """Every run of the scenario with all its rounds and both sides (any size)."""
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(var, "bench", f"{scenario}-*", "results.json")))]
    return [r for r in runs if r["options"].get("rounds", 0) >= 3 and not r["options"].get("only")] or runs


def median(values):
    values = sorted(v for v in values if isinstance(v, (int, float)))
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def per_open(p, key_at_n, key_before):
    """Bytes per connection actually open (runs before the fix divided by N even when fewer opened)."""
    return (p[key_at_n] - p[key_before]) / p["open"] if p["n"] and p["open"] else None


def idle_by_n(r):
    """{n: {target: (median bytes per open connection over rounds, median connections open)}}."""
    out = {}
    for row in r["rounds"]:
        for target, v in row.items():
            for p in v["points"]:
                if p["n"]:
                    out.setdefault(p["n"], {}).setdefault(target, []).append(p)
    return {n: {t: (median([per_open(p, "rss_at_n", "rss_before") for p in v]), median([p["open"] for p in v]))
                for t, v in d.items()} for n, d in sorted(out.items())}


def verdict(ok):
    return "met" if ok else "**missed**"


def accepted_cores(r):
    """Cores each server process used at the highest rate persist (a) held, round 1."""
    for row in (r.get("accepted") or [])[:1]:
        target = row.get("nudge", {})
        held = [st for st in target.get("steps", []) if st.get("offered") == target.get("highest_rate")]
        if not held:
            return ""
        st = held[0]
        parts = [f"{role} {c['cpu_ms_per_1000_messages'] * st['offered'] / 1e6:.2f}"
                 for role, c in st.get("cpu", {}).items()
                 if isinstance(c.get("cpu_ms_per_1000_messages"), (int, float)) and c["cpu_ms_per_1000_messages"] > 0]
        return (f" At {st['offered']:,.0f} messages/s the servers used, in cores: " + ", ".join(parts)
                + "; the load generator's 1,000 clients the rest.")
    return ""


def targets_section(have):
    """Issue 6's targets against this run's figures."""
    rows = []
    if "chat" in have:
        h = have["chat"]["headline"]
        n, p = h.get("nudge", {}).get("highest_rate"), h.get("peer", {}).get("highest_rate")
        if n and p:
            rows.append(["chat: highest rate at p99 ≤ 50 ms, zero loss", "≥ 10× the Node peer",
                         f"{num(n, 0)} vs {num(p, 0)} msg/s = {n / p:.1f}×", verdict(n / p >= 10)])
        elif n:
            first = have["chat"]["options"]["start_rate"]
            rows.append(["chat: highest rate at p99 ≤ 50 ms, zero loss", "≥ 10× the Node peer",
                         f"{num(n, 0)} msg/s vs none: the peer held no step (the first was {first:g}/s)",
                         verdict(n / first >= 10)])
    if "broadcast" in have:
        h = have["broadcast"]["headline"]
        n = h.get("nudge", {}).get("deliveries_per_target_cpu_s")
        p = h.get("peer", {}).get("deliveries_per_target_cpu_s")
        na, pa = h.get("nudge", {}).get("deliveries_per_cpu_s"), h.get("peer", {}).get("deliveries_per_cpu_s")
        if n and p:
            rows.append(["broadcast: deliveries per CPU-second of the server processes", "≥ 20× the Node peer",
                         f"{num(n, 0)} vs {num(p, 0)} = {n / p:.1f}× (all processes, Redis and Kafka included: "
                         f"{ratio(na, pa)})", verdict(n / p >= 20)])
    if "idle" in have:
        for n, d in idle_by_n(have["idle"]).items():
            nb, n_open = d.get("nudge", (None, 0))
            pb, p_open = d.get("peer", (None, 0))
            if nb is None:
                continue
            rows.append([f"idle: user-space memory per connection at {n:,}", "≤ 4 KiB",
                         f"{num(nb, 0)} B ({n_open:,.0f} open)", verdict(nb <= 4096)])
            if pb:
                held = f" (the peer held {p_open:,.0f} of {n:,})" if p_open < n else ""
                rows.append([f"idle: the same against the Node peer at {n:,}", "≤ 1/5",
                             f"{num(nb, 0)} vs {num(pb, 0)} B = 1/{pb / nb:.1f}{held}", verdict(nb / pb <= 0.2)])
    if "persist" in have:
        d = have["persist"]["headline"]["drain"]
        nudge = (d.get("nudge-postgres") or {}).get("rows_per_s")
        benthos = (d.get("benthos") or {}).get("rows_per_s")
        copy = (d.get("raw-copy") or {}).get("rows_per_s")
        if nudge and benthos:
            rows.append(["persist: drain rows/s into PostgreSQL against Benthos (Redpanda Connect's engine)",
                         "≥ 2×", f"{num(nudge, 0)} vs {num(benthos, 0)} = {nudge / benthos:.2f}×",
                         verdict(nudge / benthos >= 2)])
        if nudge and copy:
            rows.append(["persist: drain rows/s against raw COPY", "≥ 50%",
                         f"{num(nudge, 0)} vs {num(copy, 0)} = {100 * nudge / copy:.0f}%", verdict(nudge / copy >= 0.5)])
        accepted = have["persist"]["headline"]["accepted"].get("nudge", {}).get("highest_rate")
        produce = have.get("raw", {}).get("headline", {}).get("kafka-produce", {}).get("per_s") if "raw" in have else None
        if accepted and produce:
            rows.append(["persist: accepted rate (acks=all, every message persisted) against raw Kafka produce",
                         "≥ 60%", f"{num(accepted, 0)} vs {num(produce, 0)} msg/s = {100 * accepted / produce:.0f}%",
                         verdict(accepted / produce >= 0.6)])
    if not rows:
        return []
    notes = []
    if "broadcast" in have:
        h = have["broadcast"]["headline"]
        n, p = h.get("nudge", {}), h.get("peer", {})
        share = None
        for row in have["broadcast"]["rounds"][:1]:
            share = (row.get("nudge", {}).get("cpu", {}).get("nudge") or {}).get("system_share")
        if n.get("deliveries_per_target_cpu_s") and p.get("deliveries_per_target_cpu_s") and share:
            n_us = 1e6 / n["deliveries_per_target_cpu_s"]
            p_us = 1e6 / p["deliveries_per_target_cpu_s"]
            notes.append(
                f"- **broadcast**: a delivery costs Nudge {n_us:.1f} µs of CPU, {100 * share:.0f}% of it in the kernel "
                f"({share * n_us:.1f} µs: the `writev` and, on loopback, the receiving side's TCP processing, which "
                f"runs in the sender's context); the peer {p_us:.1f} µs. Both pay the kernel per delivery, so even a "
                f"server with no user-space cost at all would be at most {p_us / (share * n_us):.1f}× the peer here. "
                "In user space alone Nudge's delivery is "
                f"{ratio(n.get('deliveries_per_target_user_cpu_s'), p.get('deliveries_per_target_user_cpu_s'))} "
                "cheaper (a frame encoded once and shared, written with one system call and no asynchronous "
                "operation while the socket takes it).")
    if "persist" in have and "raw" in have:
        rh = have["raw"]["headline"]
        own = rh.get("nudge-log-produce", {}).get("per_s")
        produce = rh.get("kafka-produce", {}).get("per_s")
        if own and produce:
            notes.append(
                f"- **accepted rate**: Nudge's own produce path (the `generator` source in front of the Kafka log, "
                f"`raw`) took {num(own, 0)} messages/s, {100 * own / produce:.0f}% of Kafka's ProducerPerformance on "
                "the same broker with the same settings. End to end, 1,000 WebSocket clients, the load generator, two "
                "Nudge instances, Redis, Kafka and PostgreSQL share the machine's two cores: the accepted rate is "
                "bounded by that CPU, not by the log." + accepted_cores(have["persist"]))
    return ["## Targets", "", "Issue 6's targets, judged on the figures below (medians of the rounds):", "",
            table(["", "target", "measured", ""], rows), "", *(["What bounds the missed ones:", "", *notes, ""]
                                                            if notes else [])]


def is_smoke(r):
    o = r["options"]
    if o.get("rounds", 0) < 3 or o.get("only"):
        return True
    if r["scenario"] == "idle" and max(int(x) for x in o["sizes"].split(",")) < 50000:
        return True
    return any((o.get(k) or 0) < v for k, v in FULL[r["scenario"]].items())


def num(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def ratio(a, b):
    return f"{a / b:.3g}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "–"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def headline_table(h, keys, labels):
    rows = []
    for k, label in zip(keys, labels):
        n, p = h.get("nudge", {}).get(k), h.get("peer", {}).get(k)
        rows.append([label, num(n, 2), num(p, 2), ratio(n, p)])
    return table(["", "Nudge", "Node peer", "Nudge / peer"], rows)


def cpu_table(r):
    """CPU-ms per 1000 messages and RSS per process, median round's first run of each target."""
    rows = []
    for row in r["rounds"][:1]:
        for target, s in row.items():
            runs = s["steps"] if isinstance(s, dict) and "steps" in s else [s]
            runs = [x for x in runs if isinstance(x, dict) and "cpu" in x]
            if not runs:
                continue
            last = runs[-1]
            for role, c in last["cpu"].items():
                share = c.get("system_share")
                rows.append([target, f"{last['offered']:g}/s", role, num(c["cpu_ms_per_1000_messages"], 1),
                             f"{100 * share:.0f}%" if isinstance(share, (int, float)) else "–", num(c["rss_mib"], 1)])
    if not rows:
        return ""
    return ("CPU over the measured window (round 1, last step run), from `/proc/<pid>/stat` of every process "
            "of the role (children included):\n\n"
            + table(["target", "offered", "process", "CPU-ms / 1000 messages", "of which kernel", "RSS MiB"], rows))


def drain_cpu_table(r):
    """CPU per 1000 rows of each process during the first drain round."""
    rows = []
    for kind, res in (r.get("drain") or [{}])[0].items():
        for role, c in (res.get("processes") or {}).items():
            rows.append([kind, role, num(c.get("cpu_ms_per_1000_messages"), 1)])
    if not rows:
        return ""
    return ("CPU per 1000 rows during the first drain round (every process of the role, children included):\n\n"
            + table(["drain", "process", "CPU-ms / 1000 rows"], rows))


def plot_chat(r, path, plt):
    fig, ax = plt.subplots(figsize=(7, 4))
    for target, style in (("nudge", "-"), ("peer", "--")):
        for i, row in enumerate(r["rounds"]):
            steps = [s for s in row.get(target, {}).get("steps", []) if not s.get("failed")]
            if not steps:
                continue
            x = [s["offered"] for s in steps]
            for key, color in (("p50_ms", "tab:blue"), ("p99_ms", "tab:orange"), ("p999_ms", "tab:red")):
                ax.plot(x, [s[key] for s in steps], style, color=color, marker="o", markersize=3,
                        label=f"{target} {key[:-3]}" if i == 0 else None, alpha=1 if i == 0 else 0.4)
    ax.axhline(r["options"]["p99"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("offered messages/s")
    ax.set_ylabel("publish → receive latency, ms")
    ax.set_yscale("log")
    ax.set_title(f"chat: {r['options']['connections']} connections, {r['options']['rooms']} rooms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_broadcast(results, path, plt):
    pts = {}
    rates = [r["options"]["rate"] for r in results]
    common = max(set(rates), key=rates.count) if rates else None
    for r in results:
        if r["options"]["rate"] != common:
            continue
        for target, v in r["headline"].items():
            if v.get("deliveries_per_s"):
                pts.setdefault(target, {})[r["options"]["connections"]] = v["deliveries_per_s"]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for target, d in pts.items():
        xs = sorted(d)
        ax.plot(xs, [d[x] for x in xs], marker="o", label=target)
    ax.set_xlabel("subscribers (connections)")
    ax.set_ylabel("deliveries/s (median of rounds)")
    ax.set_title(f"broadcast: throughput against connections ({common:g} messages/s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_idle(r, path, plt):
    fig, ax = plt.subplots(figsize=(7, 4))
    for target, v in r["rounds"][0].items():
        pts = [p for p in v["points"] if p["n"] and p["open"]]
        ax.plot([p["open"] for p in pts], [per_open(p, "rss_at_n", "rss_before") / 1024 for p in pts], marker="o",
                label=f"{target} user space")
        ax.plot([p["open"] for p in pts], [(per_open(p, "tcp_mem_bytes_at_n", "tcp_mem_bytes_before") or 0) / 1024
                                           for p in pts], marker="x",
                linestyle=":", label=f"{target} kernel (sockstat TCP mem)")
    ax.set_xscale("log")
    ax.set_xlabel("idle connections open")
    ax.set_ylabel("KiB per connection")
    ax.set_title("idle: memory per connection")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(var, root):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = os.path.join(root, "docs", "images")
    os.makedirs(images, exist_ok=True)
    found = {s: latest(var, s) for s in SCENARIOS}
    have = {s: r for s, (r, _) in found.items() if r}
    # `bench/run persist --parts drain` re-measures the drain alone: take (a) from the latest full run that has it.
    if "persist" in have and not have["persist"].get("accepted"):
        for r in reversed(all_results(var, "persist")):
            if r.get("accepted") and not is_smoke(r):
                have["persist"] = dict(have["persist"], accepted=r["accepted"],
                                       headline=dict(have["persist"]["headline"], accepted=r["headline"]["accepted"]),
                                       accepted_from=r["started"], accepted_options=r["options"])
                break
    if not have:
        print(f"report: no results under {var}/bench: run a scenario first")
        return 1
    smoke = [s for s, r in have.items() if is_smoke(r)]
    m = next(iter(have.values()))["machine"]
    out = ["# Benchmarks", "",
           "<!-- Generated by `bench/run report` from var/bench/*/results.json; do not edit by hand. -->", ""]
    if smoke:
        out += ["> **These figures are from smoke runs on a shared machine** (tiny sizes, one round, other "
                "builds running on the same two cores): they show that each scenario runs, not how fast "
                f"anything is. Smoke results: {', '.join(smoke)}. Re-run the scenarios with their defaults on an "
                "idle machine, then `bench/run report`.", ""]
    out += ["Nudge (`pipelines/chat.toml`, two instances) against the design it replaces (the Node.js peer in "
            "`bench/peers/socketio-node/`, two instances), both on the same Redis, Kafka and PostgreSQL, driven by "
            "`nudge-bench` (bench/README.md). Each scenario runs the two interleaved (A B A B) for several rounds, "
            "each round with fresh servers-side state (topic, group, table) and a fresh load generator; the tables "
            "give medians over rounds. Nudge runs with its defaults, `deliver = \"durable\"` among them: a message "
            "reaches the other clients only once Kafka has it (acks=all, linger 5 ms), a latency floor of about "
            "6 ms that the peer, which emits before it produces, does not pay. Everything (servers, targets and the "
            "load generator) shares one machine, so the heaviest runs measure that machine's CPU as much as "
            "anything; runs above ~60% of the load generator's calibrated ceiling are flagged `near_ceiling` in "
            "their JSON.", "",
            *targets_section(have),
            "## Machine", "",
            table(["", ""], [["cores", m["cores"]], ["CPU", m["cpu_model"]], ["kernel", m["kernel"]],
                             ["nudge", m["nudge"]], ["node", m["node"]], ["redis", m["redis"]],
                             ["kafka", m["kafka"]], ["postgres", m["postgres"]], ["mariadb", m.get("mariadb")]]),
            ""]

    def source(s):
        r, path = found[s]
        o = r["options"]
        return (f"Run {r['started']}, {o['rounds']} round(s), {r['seconds']:.0f} s, load average at the end "
                f"{r['load_1min_at_end']:.2f}; `{os.path.relpath(path, var)}`.")

    if "broadcast" in have:
        r = have["broadcast"]
        o = r["options"]
        out += ["## broadcast", "",
                f"1 publisher, {o['connections']} subscribers in one room, over two instances, "
                f"{o['rate']:g} messages/s for {o['duration']:g} s. " + source("broadcast"), "",
                headline_table(r["headline"], ["deliveries_per_s", "p50_ms", "p99_ms", "p999_ms",
                                               "deliveries_per_cpu_s", "deliveries_per_target_cpu_s",
                                               "deliveries_per_target_user_cpu_s"],
                               ["deliveries/s", "p50 ms", "p99 ms", "p99.9 ms",
                                "deliveries per CPU-second (all processes)",
                                "deliveries per CPU-second (nudge / node only)",
                                "deliveries per user-space CPU-second (nudge / node only)"]), "", cpu_table(r), ""]
        rows = []
        latest_by_shape = {}
        for run in all_results(var, "broadcast"):  # oldest first: the newest of each shape wins
            latest_by_shape[(run["options"]["connections"], run["options"]["rate"])] = run
        for _, run in sorted(latest_by_shape.items()):
            ro, h = run["options"], run["headline"]
            n, p = h.get("nudge", {}), h.get("peer", {})
            rows.append([f"{ro['connections']:,}", f"{ro['rate']:g}", num(n.get("deliveries_per_s")),
                         f"{num(n.get('p50_ms'), 1)} / {num(n.get('p99_ms'), 1)}",
                         f"{num(p.get('p50_ms'), 1)} / {num(p.get('p99_ms'), 1)}",
                         f"{num(n.get('deliveries_per_target_cpu_s'))} / {num(p.get('deliveries_per_target_cpu_s'))}",
                         ratio(n.get("deliveries_per_target_cpu_s"), p.get("deliveries_per_target_cpu_s")),
                         ratio(n.get("deliveries_per_target_user_cpu_s"), p.get("deliveries_per_target_user_cpu_s"))])
        out += ["Every broadcast run (medians of 3 rounds each):", "",
                table(["subscribers", "msg/s", "deliveries/s", "Nudge p50 / p99 ms", "peer p50 / p99 ms",
                       "deliveries per CPU-s, Nudge / peer", "ratio", "ratio, user-space CPU only"], rows), "",
                "A delivery is one WebSocket frame written to one subscriber's socket: one `writev` each when the "
                "messages are 50 ms apart, as here, so most of its cost is the kernel's (the send, and on loopback "
                "the receiving side's TCP processing too, run in the sender's context). The last column leaves the "
                "kernel out: it compares the servers' own code.", ""]
        if plot_broadcast(all_results(var, "broadcast"), os.path.join(images, "bench-broadcast.png"), plt):
            out += ["![broadcast throughput against connections](images/bench-broadcast.png)", ""]
    if "chat" in have:
        r = have["chat"]
        o = r["options"]
        out += ["## chat", "",
                f"{o['connections']} connections in {o['rooms']} rooms over two instances; the offered rate starts "
                f"at {o['start_rate']:g}/s and grows ×{o['step']:g} per step ({o['duration']:g} s each) until p99 > "
                f"{o['stop_p99']:g} ms or a message is lost. Headline: the highest rate held with p99 ≤ {o['p99']:g} ms "
                "and zero loss. The peer has no rooms and sends every message to every client (counted as "
                "`misrouted`, not as loss). " + source("chat"), "",
                headline_table(r["headline"], ["highest_rate"], ["highest rate held, messages/s"]), ""]
        rows = []
        for target in ("nudge", "peer"):
            for s in r["rounds"][0].get(target, {}).get("steps", []):
                if s.get("failed"):
                    continue
                rows.append([target, f"{s['offered']:g}", num(s["deliveries_per_s"]), num(s["p50_ms"], 2),
                             num(s["p99_ms"], 2), num(s["p999_ms"], 2), s["lost"], s["misrouted"]])
        out += ["Round 1, every step:", "",
                table(["target", "offered/s", "deliveries/s", "p50 ms", "p99 ms", "p99.9 ms", "lost", "misrouted"],
                      rows), "", cpu_table(r), ""]
        plot_chat(r, os.path.join(images, "bench-chat-latency.png"), plt)
        out += ["![chat latency percentiles against offered rate](images/bench-chat-latency.png)", ""]
    if "persist" in have:
        r = have["persist"]
        o = r["options"]
        acc = r["headline"]["accepted"]
        ao = r.get("accepted_options") or o
        out += ["## persist", "",
                f"(a) The highest offered rate at which every acked message is in PostgreSQL ({ao['connections']} "
                f"connections, {ao['rooms']} rooms, stepping ×{ao['step']:g} from {ao['start_rate']:g}/s, held while "
                f"p99 ≤ {ao['stop_p99']:g} ms with nothing lost; the peer stores each "
                "message once per instance, which is divided out). " + source("persist")
                + (f" Part (a) is from the run of {r['accepted_from']}." if r.get("accepted_from") else ""), "",
                headline_table(acc, ["highest_rate"], ["highest rate fully persisted, messages/s"]), "",
                f"(b) Draining a backlog of {o['backlog']:,} messages from Kafka (the peer: "
                f"{o.get('peer_backlog') or min(o['backlog'], 100000):,}, as it inserts one row at a time); rows/s, "
                "median of rounds:", ""]
        d = r["headline"]["drain"]
        copy = (d.get("raw-copy") or {}).get("rows_per_s")
        rows = [[k, num(v.get("rows_per_s")), num(v.get("rows_per_s_from_first_row")), ratio(v.get("rows_per_s"), copy)]
                for k, v in d.items()]
        rows.append(["Redpanda Connect", "not built: refused by the module proxy (see notes)", "–", "–"])
        out += [table(["drain", "rows/s from start", "rows/s from the first row", "of raw COPY"], rows), "",
                "`nudge-*`: `nudge run pipelines/chat-persist.toml` (or `chat-persist-mysql.toml`) draining a topic "
                "filled through `chat-edge.toml`; `benthos`: the Benthos v4 engine with `kafka_franz` and "
                "`sql_insert` rebuilt after Redpanda Connect's (`bench/peers/benthos`), draining as many rows as JSON "
                "from a topic with as many partitions; `peer`: one instance of the Node peer, whose kafkajs consumer "
                "inserts one row per message, draining a topic filled with `kcat -P`; `raw-copy`: `psql \\copy` of as "
                "many rows shaped like the sink's. \"From start\" includes the worker's start-up and group join.", "",
                drain_cpu_table(r), ""]
    if "idle" in have:
        r = have["idle"]
        out += ["## idle", "",
                "Memory per idle connection: (RSS at N − RSS at 0) / N, anonymous RSS (`RssAnon` in "
                "`/proc/<pid>/status`: heap and stacks, not the shared libraries' pages, which the kernel drops and "
                "reloads on a busy machine), summed over the instances (each process "
                "holds at most 18,000 connections: the open-files limit is 20,000), and the kernel's TCP memory from "
                "`/proc/net/sockstat` (both ends of every connection are on this machine, so it counts the load "
                "generator's sockets too; it counts socket buffer pages only, which idle sockets do not hold, not "
                "the kernel's socket structures). " + source("idle"), "",
                table(["N", "Nudge B/connection", "Node peer B/connection", "Nudge / peer"],
                      [[f"{n:,}", f"{num(d.get('nudge', (None, 0))[0], 0)} ({d.get('nudge', (None, 0))[1]:,.0f} open)",
                        f"{num(d.get('peer', (None, 0))[0], 0)} ({d.get('peer', (None, 0))[1]:,.0f} open)",
                        ratio(d.get('nudge', (None, 0))[0], d.get('peer', (None, 0))[0])]
                       for n, d in idle_by_n(r).items()]), "",
                "Medians over rounds, per connection actually open (the peer times out some connections at 50,000 "
                "when they open at nudge-bench's pace); round 1 in full:", ""]
        rows = []
        for target, v in r["rounds"][0].items():
            for p in v["points"]:
                rows.append([target, f"{p['n']:,}", f"{p['open']:,}", num(p["rss_before"] / 2**20),
                             num(p["rss_at_n"] / 2**20), num(per_open(p, "rss_at_n", "rss_before"), 0),
                             num(per_open(p, "tcp_mem_bytes_at_n", "tcp_mem_bytes_before"), 0)])
        out += [table(["target", "N", "open", "anon RSS at 0 MiB", "anon RSS at N MiB", "B/connection", "kernel B/connection"],
                      rows), ""]
        plot_idle(r, os.path.join(images, "bench-idle.png"), plt)
        out += ["![memory per idle connection](images/bench-idle.png)", ""]
    if "raw" in have:
        r = have["raw"]
        o = r["options"]
        h = r["headline"]
        out += ["## raw limits", "",
                f"{o['messages']:,} messages of {o['payload']} bytes each: `redis-benchmark` PUBLISH (50 clients), "
                "Kafka's ProducerPerformance from the broker's jars (acks=all, idempotence, linger 5 ms), and a "
                "`psql \\copy` of rows shaped like the Postgres sink's. " + source("raw"), "",
                table(["", "per second"], [["Redis PUBLISH", num(h.get("redis-publish", {}).get("per_s"))],
                                           ["Kafka produce", num(h.get("kafka-produce", {}).get("per_s"))],
                                           ["Nudge's Kafka log produce (generator source → log.kafka)",
                                            num(h.get("nudge-log-produce", {}).get("per_s"))],
                                           ["Postgres COPY rows", num(h.get("postgres-copy", {}).get("per_s"))]]), ""]
    out += ["## Notes", "",
            "- CPU per process is read from `/proc/<pid>/stat` (utime + stime) of each process and its children "
            "(all PostgreSQL backends, Kafka's JVM) over nudge-bench's measured window; the run's JSON also holds "
            "the same over the whole run.",
            "- Redpanda Connect itself could not be built: this machine's Go module proxy refuses "
            "`github.com/redpanda-data/connect/v4` (403; its licence is not open source). The drain is compared "
            "with its engine instead, Benthos v4.60.0 (`github.com/redpanda-data/benthos/v4`, MIT), with the "
            "`kafka_franz` input and `sql_insert` output rebuilt after Redpanda Connect's, with the same client "
            "libraries (franz-go, lib/pq, squirrel) and config fields, tuned for throughput "
            "(`bench/peers/benthos/README.md`).",
            "- Results above ~60% of the load generator's calibrated ceiling are flagged `near_ceiling` in the JSON.",
            f"- Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    path = os.path.join(root, "docs", "benchmarks.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"report: wrote {path}")
    return 0
