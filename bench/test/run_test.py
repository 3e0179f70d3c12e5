#!/usr/bin/python3
"""Unit tests of bench/run's and bench/report.py's logic that needs no server: stepping down, medians over valid
rounds, and targets that no results file measured."""
import importlib.machinery
import importlib.util
import os
import sys
import types
import unittest

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


run = load("bench_run", os.path.join(ROOT, "bench/run"))
report = load("bench_report", os.path.join(ROOT, "bench/report.py"))


def step(rate, p99, valid=True, lost=0, errors=0):
    return {"offered": rate, "p99_ms": p99, "lost": lost, "errors": errors, "failed_connections": 0, "open": 10,
            "valid": valid, "error_codes": {"too_many_rooms": errors} if errors else {},
            "deliveries_per_s": rate, "p50_ms": p99 / 2, "cross_instance_share": 0.5, "generator": {}}


class StepRates(unittest.TestCase):
    def drive(self, holds_up_to, valid=lambda rate: True, refused=lambda rate: 0):
        """step_rates against a fake target that holds p99 ≤ 50 ms up to `holds_up_to` msg/s."""
        args = types.SimpleNamespace(start_rate=800, step=1.5, max_steps=5, max_down=4, p99=50, stop_p99=100,
                                     connections=10, payload=64, duration=1, warmup=0, threads=2, connect_rate=100,
                                     source_addresses=1)
        offered = []
        saved = (run.bench_once, run.summary, run.log)
        run.bench_once = lambda args, target, label, svc, **o: None if label.endswith("prewarm") else o["rate"]
        run.summary = lambda rate: step(rate, 10 if rate <= holds_up_to else 500, valid(rate), errors=refused(rate))
        run.log = lambda *a: offered.append(a)
        try:
            steps = run.step_rates(args, None, "t", None, 1, 10)
        finally:
            run.bench_once, run.summary, run.log = saved
        return [s["offered"] for s in steps], run.highest_held(steps, 50)

    def test_steps_up_while_it_holds(self):
        rates, best = self.drive(2000)
        self.assertEqual(rates, [800, 1200, 1800, 2700])
        self.assertEqual(best, 1800)

    def test_steps_down_by_halving_when_the_first_step_does_not_hold(self):
        rates, best = self.drive(150)
        self.assertEqual(rates, [800, 400, 200, 100])
        self.assertEqual(best, 100)

    def test_no_result_when_nothing_holds_never_the_start_rate(self):
        rates, best = self.drive(1)
        self.assertEqual(rates, [800, 400, 200, 100, 50])
        self.assertIsNone(best)

    def test_a_step_with_the_generator_near_its_ceiling_does_not_hold(self):
        rates, best = self.drive(10_000, valid=lambda rate: rate < 1000)
        self.assertEqual(best, 800)
        self.assertEqual(rates[:2], [800, 1200])

    def test_a_step_the_server_refused_part_of_does_not_hold(self):
        # A full run once "held" 500/s with 84% of sends refused (too_many_rooms): refusals are not throughput.
        rates, best = self.drive(10_000, refused=lambda rate: 3000 if rate >= 1000 else 0)
        self.assertEqual(best, 800)
        self.assertEqual(rates, [800, 1200])
        self.assertIn("REFUSED 3000 (too_many_rooms 3000)", run.fmt_run(step(1200, 10, errors=3000)))


class Medians(unittest.TestCase):
    def test_invalid_rounds_are_left_out_and_the_spread_is_kept(self):
        rounds = [{"a": {"x": 1.0}}, {"a": {"x": 3.0}}, {"a": {"x": 100.0, "valid": False}}, {"a": {"x": 2.0}}]
        h = run.medians(rounds, ["x"])["a"]
        self.assertEqual((h["x"], h["x_min"], h["x_max"], h["x_rounds"]), (2.0, 1.0, 3.0, 3))

    def test_nothing_measured_is_none_not_zero(self):
        h = run.medians([{"a": {"x": None}}], ["x"])["a"]
        self.assertIsNone(h["x"])


class Report(unittest.TestCase):
    def test_every_target_reads_not_measured_without_results(self):
        rows = report.targets({s: [] for s in report.SCENARIOS})
        self.assertTrue(rows)
        for name, goal, measured, verdict in rows:
            self.assertEqual(verdict, "not measured", name)

    def test_chat_without_a_peer_result_gives_no_verdict(self):
        chat = {"headline": {"nudge": {"highest_rate": 5000.0}, "nudge-socketio": {"highest_rate": 3000.0},
                             "peer": {"highest_rate": None}}, "options": {"start_rate": 500}}
        rows = report.targets(dict({s: [] for s in report.SCENARIOS}, chat=[chat]))
        chat_rows = [r for r in rows if r[0].startswith("chat")]
        self.assertEqual([r[3] for r in chat_rows], ["no verdict", "no verdict"])
        self.assertTrue(all("no result" in r[2] for r in chat_rows))

    def test_a_ratio_against_a_side_that_never_reached_its_limit_is_no_verdict(self):
        def chat(peer_limit):
            rounds = [{"nudge": {"limit_reached": True}, "nudge-socketio": {"limit_reached": True},
                       "peer": {"limit_reached": peer_limit}}]
            return {"headline": {"nudge": {"highest_rate": 5000.0}, "nudge-socketio": {"highest_rate": 300.0},
                                 "peer": {"highest_rate": 100.0}}, "rounds": rounds, "options": {}}
        verdicts = lambda run: [r[3] for r in report.targets(dict({s: [] for s in report.SCENARIOS}, chat=[run]))
                                if r[0].startswith("chat")]
        self.assertEqual(verdicts(chat(True)), ["met", "**missed**"])
        # The peer held every step: its limit is higher, so 50× is an upper bound (no verdict), and 3× an upper
        # bound under the goal (missed whatever the peer's limit).
        self.assertEqual(verdicts(chat(False)), ["no verdict", "**missed**"])

    def test_steps_over_the_generators_ceiling_do_not_make_a_limit(self):
        # The first full run: Nudge held 3,797/s; the only step above it was invalid (the generator read 82% of
        # its ceiling). Nudge's limit was not found, so its figure is a lower bound and the ratio no verdict.
        nudge = {"highest_rate": 3796.88, "steps": [step(2531.25, 19), step(3796.88, 34),
                                                    step(5695.31, 59, valid=False)]}
        peer = {"highest_rate": 1125.0, "steps": [step(1125, 42), step(1687.5, 95), step(2531.25, 432)]}
        self.assertFalse(run.limit_found(nudge["steps"], 3796.88, 50))
        self.assertTrue(run.limit_found(peer["steps"], 1125, 50))
        run_ = {"headline": {"nudge": {"highest_rate": 3796.88}, "nudge-socketio": {"highest_rate": 3796.88},
                             "peer": {"highest_rate": 1125.0}},
                "rounds": [{"nudge": nudge, "nudge-socketio": nudge, "peer": peer}], "options": {"p99": 50.0}}
        rows = [r for r in report.targets(dict({s: [] for s in report.SCENARIOS}, chat=[run_]))
                if r[0].startswith("chat")]
        self.assertEqual([r[3] for r in rows], ["no verdict", "no verdict"])
        self.assertTrue(rows[0][2].startswith("≥ 3,797 vs 1,125 msg/s = 3.38× (Nudge"), rows[0][2])


def edge_step(rate, p99, nudge_cpu_s=2.0, redis_cpu_s=0.5):
    s = step(rate, p99)
    s.update(sent_per_s=rate, deliveries_per_target_cpu_s=rate * 10 / nudge_cpu_s,
             deliveries_per_cpu_s=rate * 10 / (nudge_cpu_s + redis_cpu_s), open=5000,
             cpu={"nudge": {"cpu_seconds": nudge_cpu_s}, "redis-server": {"us_per_accepted": 7.0}})
    return s


class Scale(unittest.TestCase):
    def test_connections_spread_so_no_process_passes_the_descriptor_limit(self):
        self.assertEqual(run.spread_plan(19000, 19000), (1, 1, 4))
        self.assertEqual(run.spread_plan(19001, 19000), (2, 2, 4))
        # 190,000: ten instances and generators, and enough addresses for loopback's ephemeral ports
        self.assertEqual(run.spread_plan(190000, 19000), (10, 10, 11))
        self.assertEqual(run.spread_plan(0, 19000), (1, 0, 1))

    def test_the_kernels_share_is_the_socket_caches_and_buffers_per_connection(self):
        slab0 = {"TCP": 1000, "filp": 0, "kmalloc-64": 5}
        slab1 = {"TCP": 1000 + 2 * 2368 * 10, "filp": 2 * 192 * 10, "kmalloc-64": 10**9}
        k = run.kernel_share({"TCP_mem": 1}, {"TCP_mem": 11}, slab0, slab1, 10)
        self.assertEqual(k["slab"], 2 * 2368 + 2 * 192)  # both ends; caches outside the socket's are left out
        self.assertEqual(k["tcp_buffers"], run.PAGE)
        self.assertIsNone(run.kernel_share({}, {}, slab0, slab1, 0)["slab"])

    def test_efficiency_is_each_counts_figure_against_the_first(self):
        h = {"1": {"x": 100.0}, "2": {"x": 90.0}, "3": {"x": 60.0}}
        self.assertEqual(run.efficiency(h, "x"), {"1": 1.0, "2": 0.9, "3": 0.6})
        self.assertEqual(run.efficiency({"1": {"x": None}, "2": {"x": 5.0}}, "x"), {"1": None, "2": None})

    def test_edge_counts_are_compared_at_the_highest_rate_every_count_carried(self):
        def step(offered, per_cpu, valid=True, lost=0, p99=10.0):
            return {"offered": offered, "valid": valid, "lost": lost, "p99_ms": p99,
                    "deliveries_per_target_cpu_s": per_cpu, "cpu": {"redis-server": {"us_per_accepted": 30.0}}}
        rounds = [{"1": {"steps": [step(1000, 50000), step(2000, 100000), step(3000, 120000)]},
                   "2": {"steps": [step(1000, 40000), step(2000, 80000, p99=90.0), step(3000, 0, valid=False)]}},
                  {"1": {"steps": [step(1000, 50000), step(2000, 100000), step(3000, 120000)]},
                   "2": {"steps": [step(1000, 40000), step(2000, 60000, lost=3), step(2000, 70000)]}}]
        eq = run.edge_at_equal_rate(rounds)
        # 3000 was carried by count 1 only; at 2000 count 2 has two zero-loss windows (one failed p99: still counted)
        self.assertEqual(eq["rate"], 2000)
        self.assertEqual(eq["counts"]["2"]["deliveries_per_instance_cpu_s"], 75000)
        self.assertEqual(eq["counts"]["2"]["efficiency"], 0.75)
        self.assertEqual(eq["counts"]["1"]["instance_cpu_us_per_delivery"], 10.0)
        self.assertIsNone(run.edge_at_equal_rate([{"1": {"steps": [step(1000, 1)]}, "2": {"steps": []}}]))

    def test_edge_counts_report_per_cpu_figures_at_the_highest_rate_held(self):
        args = types.SimpleNamespace(counts="1,2", start_rate=1000, step=1.5, p99=50, duration=5, rooms=10,
                                     senders=None, connections=5000, stamp="t", edge_pipeline="chat-edge.toml")
        starts = []

        class FakeNudge:
            def __init__(self, args, tag, pipeline, instances):
                self.instances = instances

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        def fake_steps(args, t, label, svc, rooms, senders):
            starts.append((t.instances, args.start_rate))
            limit = 2000 if t.instances == 1 else 1500
            rates = [args.start_rate * args.step ** i for i in range(4)]
            return [edge_step(r, 10 if r <= limit else 500, nudge_cpu_s=5.0 * t.instances / 2) for r in rates]

        saved = (run.Nudge, run.step_rates, run.log)
        run.Nudge, run.step_rates, run.log = FakeNudge, fake_steps, lambda *a: None
        try:
            best = {}
            first = run.scale_edge(args, None, 0, best)
            run.scale_edge(args, None, 1, best)
        finally:
            run.Nudge, run.step_rates, run.log = saved
        one, two = first["1"], first["2"]
        self.assertEqual((one["highest_rate"], two["highest_rate"]), (1500, 1500))
        self.assertTrue(one["limit_reached"])
        self.assertEqual(one["instance_cores"], 0.5)  # 2.5 CPU-s over a 5 s window
        self.assertEqual(one["messages_per_instance_cpu_s"], 3000)
        self.assertEqual(two["deliveries_per_instance_cpu_s"], 1500 * 10 / 5.0)
        self.assertEqual(one["redis_cpu_us_per_message"], 7.0)
        # The next round starts two steps below the first round's best (never below --start-rate).
        self.assertEqual(starts, [(1, 1000), (2, 1000), (1, 1000), (2, 1000)])
        args.start_rate = 300
        run.Nudge, run.step_rates, run.log = FakeNudge, fake_steps, lambda *a: None
        try:
            run.scale_edge(args, None, 2, best)
        finally:
            run.Nudge, run.step_rates, run.log = saved
        self.assertAlmostEqual(starts[-2][1], 1500 / 1.5 ** 2)

    def test_smoke_fails_a_persist_count_that_is_not_exactly_once(self):
        args = types.SimpleNamespace(scenario="scale", parts="persist")
        headline = {"edge": {}, "idle": {}, "persist": {"1": {"rows_per_s": 10.0, "exactly_once": True},
                                                        "2": {"rows_per_s": 10.0, "exactly_once": False}}}
        saved = sys.stderr
        sys.stderr = open(os.devnull, "w")
        try:
            self.assertEqual(run.smoke_check(args, headline), 1)
            headline["persist"]["2"]["exactly_once"] = True
            self.assertEqual(run.smoke_check(args, headline), 0)
        finally:
            sys.stderr.close()
            sys.stderr = saved

    def test_the_report_shows_every_count_and_says_the_figures_are_per_cpu_second(self):
        edge = run.medians([{"1": {"highest_rate": 3000.0, "deliveries_per_instance_cpu_s": 30000.0},
                             "2": {"highest_rate": 2500.0, "deliveries_per_instance_cpu_s": 24000.0}}],
                           ["highest_rate", "deliveries_per_instance_cpu_s"])
        for c, e in run.efficiency(edge, "deliveries_per_instance_cpu_s").items():
            edge[c]["efficiency_deliveries_per_instance_cpu_s"] = e
        persist = {"1": {"rows_per_s": 20000.0, "exactly_once": True},
                   "2": {"rows_per_s": 30000.0, "exactly_once": False}}
        doc = {"scenario": "scale", "started": "2026-12-06T12:00:00Z", "seconds": 60, "load_1min_at_end": 1.0,
               "_path": "bench/results/scale-x.json", "machine": {"cores": 2}, "calibration": {},
               "options": {"rounds": 1, "connections": 5000, "rooms": 500, "step": 1.5, "duration": 5, "p99": 50,
                           "edge_pipeline": "chat-edge.toml", "backlog": 300000, "sizes": "19000",
                           "max_per_process": 19000, "parts": "edge,persist,idle"},
               "edge": [], "persist": [{"1": {"backlog": 300000}}], "idle": [{"19000": {"instances": 1}}],
               "headline": {"edge": edge, "persist": persist, "edge_at_equal_rate": run.edge_at_equal_rate(
                   [{c: {"steps": [{"offered": 2000.0, "valid": True, "lost": 0, "p99_ms": 9.0, "cpu": {},
                                    "deliveries_per_target_cpu_s": x}] * 2} for c, x in (("1", 30000.0), ("2", 24000.0))}]),
                            "idle": {"19000": {"open": 19000, "rss_per_connection": 3000.0, "all_open": True}}}}
        page = "\n".join(report.section_scale([doc]))
        self.assertIn("per CPU-second", page)
        self.assertIn("| 2 | no result | 2,500 |", page)
        self.assertIn("| 2 | 2 | 24,000 | 41.67 | 0.80 |", page)  # 24,000 / 30,000 at the same 2,000 msg/s
        self.assertIn("**2,000 msg/s**", page)
        self.assertIn("**no**", page)  # the count that was not exactly once
        self.assertIn("1.5×", page)  # two workers against one
        self.assertIn("| 19,000 | 1 |", page)
        self.assertIn("Smaller than the issue's run", page)


class WriteCalls(unittest.TestCase):
    def test_perf_stat_counts_are_read_by_call(self):
        text = ("1234,,syscalls:sys_enter_sendmsg,10000000,100.00,,\n"
                "0,,syscalls:sys_enter_writev,10000000,100.00,,\n"
                "<not counted>,,syscalls:sys_enter_write,0,0.00,,\n")
        self.assertEqual(run.parse_perf_stat(text), {"sendmsg": 1234, "writev": 0})


class BroadcastTargets(unittest.TestCase):
    def rows(self, raw_runs):
        bc = {"options": {"connections": 1000}, "headline": {
            "nudge": {"deliveries_per_target_cpu_s": 180000.0, "write_calls_per_delivery": 0.65},
            "nudge-socketio": {"deliveries_per_target_cpu_s": 150000.0},
            "peer-broadcast": {"deliveries_per_target_cpu_s": 60000.0, "write_calls_per_delivery": 1.0}}}
        runs = dict({s: [] for s in report.SCENARIOS}, broadcast=[bc], raw=raw_runs)
        return {r[0]: r for r in report.targets(runs) if r[0].startswith("broadcast, 1,000")}

    def test_each_size_is_held_against_the_bound_measured_at_that_size(self):
        raw = {"headline": {"epoll-writev/1000": {"deliveries_per_cpu_s": 190000.0},
                            "epoll-writev/5000": {"deliveries_per_cpu_s": 100000.0}}}
        rows = self.rows([raw])
        native = rows["broadcast, 1,000 subscribers: Nudge's deliveries per server CPU-second (Nudge (native protocol))"]
        self.assertEqual((native[2], native[3]), ("180,000 vs 190,000 = 95%", "met"))
        sio = rows["broadcast, 1,000 subscribers: Nudge's deliveries per server CPU-second (Nudge (Socket.IO))"]
        self.assertEqual(sio[3], "**missed**")
        calls = rows["broadcast, 1,000 subscribers: write system calls per delivery"]
        self.assertIn("Nudge (native protocol) 0.65", calls[2])

    def test_no_bound_at_that_size_is_not_measured(self):
        rows = self.rows([{"headline": {"epoll-writev/5000": {"deliveries_per_cpu_s": 1.0}}}])
        self.assertEqual(rows["broadcast, 1,000 subscribers: Nudge's deliveries per server CPU-second"][3],
                         "not measured")

    def test_the_kernel_floor_bounds_the_ratio(self):
        # 6.25 µs per delivery, 5.25 in the kernel; the peer 12.5 µs: at most 12.5 / 5.25 = 2.4× with no user time.
        bc = {"options": {"connections": 5000}, "headline": {
            "nudge": {"deliveries_per_target_cpu_s": 160000.0, "deliveries_per_target_user_cpu_s": 1000000.0},
            "peer-broadcast": {"deliveries_per_target_cpu_s": 80000.0, "deliveries_per_target_user_cpu_s": 160000.0}}}
        floors = report.kernel_floors(None, [bc])
        self.assertEqual(len(floors), 1)
        self.assertIn("6.2 µs of CPU per delivery, 5.2 of them in the kernel; the peer 12.5 µs", floors[0])
        self.assertIn("at most 2.4× the peer (goal 3×)", floors[0])


class Presence(unittest.TestCase):
    """Nudge runs with presence off against the peer (which keeps none); idle measures it on too."""

    def args(self, scenario):
        return types.SimpleNamespace(scenario=scenario, only=None, nudge_port=9100, build="/b", out="/tmp")

    def commands(self, target):
        cmds = []
        saved = (run.spawn, run.wait_port, run.stop_process)
        run.spawn = lambda cmd, env, log: cmds.append(cmd)
        run.wait_port = lambda *a, **k: None
        run.stop_process = lambda proc: None
        try:
            with target:
                pass
        finally:
            run.spawn, run.wait_port, run.stop_process = saved
        return cmds

    def test_every_nudge_compared_with_the_peer_runs_with_presence_off(self):
        for scenario in ("broadcast", "chat", "persist", "idle"):
            for which in run.targets_for(self.args(scenario)):
                if which in run.PEERS or which in run.PRESENCE_ON_TARGETS:
                    continue
                target = run.make_target(self.args(scenario), which, "t")
                for cmd in self.commands(target):
                    self.assertIn("pipeline.presence=false", cmd, f"{scenario} {which}")
                    self.assertEqual(cmd[cmd.index("pipeline.presence=false") - 1], "--set")

    def test_idle_also_measures_nudge_with_presence_on(self):
        self.assertIn("nudge-presence", run.targets_for(self.args("idle")))
        args = self.args("idle")
        args.only = "nudge"
        self.assertEqual(run.targets_for(args), ["nudge", "nudge-presence"])
        target = run.make_target(self.args("idle"), "nudge-presence", "t")
        self.assertEqual(target.name, "nudge-presence")
        self.assertEqual(target.protocol, "nudge")
        for cmd in self.commands(target):
            self.assertIn("pipeline.presence=true", cmd)
        self.assertEqual(run.PRESENCE_USED["nudge-presence"], "on")

    def test_scenarios_without_the_peer_keep_the_pipelines_setting(self):
        target = run.Nudge(self.args("scale"), "t", instances=1)
        self.assertFalse(any("pipeline.presence" in a for cmd in self.commands(target) for a in cmd))

    def test_the_report_gives_what_presence_adds_per_connection(self):
        def point(n, rss):
            return {"n": n, "open": n, "rss_per_connection": rss, "all_open": True}
        idle = {"options": {"connect_rate": 3000, "sizes": "0,10000"},
                "nudge_presence": {"compared_with_peer": "off", "by_target": {"nudge": "off", "nudge-presence": "on"}},
                "rounds": [{"nudge": {"points": [point(10000, 1150.0)]},
                            "nudge-presence": {"points": [point(10000, 1300.0)]}}]}
        rows = {r[0]: r for r in report.targets(dict({s: [] for s in report.SCENARIOS}, idle=[idle]))}
        row = rows["idle: what presence adds per connection at 10,000 (presence on − off)"]
        self.assertIn("150 B", row[2])
        self.assertIn("Nudge (native protocol, presence on) keeps it", report.presence_note(idle))
        self.assertIn("predates", report.presence_note({}))


if __name__ == "__main__":
    unittest.main()
