"""The files in deploy/ against what the runtime provides:

- deploy/grafana/nudge-dashboard.json parses, has the `$instance` variable,
  every query is filtered by it, and every metric name it queries is
  documented in docs/operations.md (that a running cluster exports each one
  is checked by tests/e2e/test_chat_cluster.py);
- deploy/systemd/nudge-nginx.conf passes `nginx -t` (skipped without nginx);
- deploy/systemd/nudge@.service carries the settings the docs promise, gives a
  stop more time than any shipped pipeline's drain, and passes
  `systemd-analyze verify` (skipped without it).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest

SOURCE_DIR = os.environ.get("NUDGE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(SOURCE_DIR, "deploy")
DASHBOARD = os.path.join(DEPLOY, "grafana", "nudge-dashboard.json")
NGINX_SITE = os.path.join(DEPLOY, "systemd", "nudge-nginx.conf")
UNIT = os.path.join(DEPLOY, "systemd", "nudge@.service")
NGINX = "/usr/sbin/nginx"

OPERATIONS_DOC = os.path.join(SOURCE_DIR, "docs", "operations.md")
METRIC = re.compile(r"\b(nudge_[a-z0-9_]+)\b")


def documented(name, doc):
    """Named in docs/operations.md, itself or as a histogram's _bucket/_sum/_count series."""
    if re.search(r"\b" + name + r"\b", doc):
        return True
    return any(name.endswith(suffix) and re.search(r"\b" + name[: -len(suffix)] + r"\b", doc)
               for suffix in ("_bucket", "_sum", "_count"))


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dashboard = json.load(f)
        cls.exprs = [t["expr"] for p in all_panels(cls.dashboard["panels"]) for t in p.get("targets", [])]

    def test_has_instance_variable(self):
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertIn("instance", variables)
        self.assertTrue(variables["instance"]["multi"] and variables["instance"]["includeAll"])
        self.assertIn("nudge_build_info", variables["instance"]["definition"])

    def test_every_query_is_filtered_by_instance(self):
        self.assertGreater(len(self.exprs), 10)
        for e in self.exprs:
            self.assertIn('instance=~"$instance"', e, e)

    def test_every_metric_is_documented(self):
        with open(OPERATIONS_DOC) as f:
            doc = f.read()
        names = {m for e in self.exprs for m in METRIC.findall(e)}
        unknown = sorted(n for n in names if not documented(n, doc))
        self.assertEqual(unknown, [], "the dashboard queries metrics docs/operations.md does not list")

    def test_covers_what_operators_need(self):
        text = "\n".join(self.exprs)
        for needed in ["rate(nudge_stage_messages_in_total", "rate(nudge_stage_messages_out_total",
                       "rate(nudge_stage_errors_total", "rate(nudge_stage_retries_total", "nudge_stage_queue_depth",
                       "nudge_log_kafka_partition_lag", "nudge_source_websocket_connections_open",
                       "nudge_source_websocket_rooms", "nudge_stage_ready",
                       "histogram_quantile(0.99, sum by (le) (rate(nudge_ingest_to_ack_seconds_bucket",
                       "histogram_quantile(0.99, sum by (le) (rate(nudge_ingest_to_persisted_seconds_bucket"]:
            self.assertIn(needed, text)

    def test_panel_ids_are_unique(self):
        ids = [p["id"] for p in all_panels(self.dashboard["panels"])]
        self.assertEqual(len(ids), len(set(ids)))


class NginxSiteTest(unittest.TestCase):
    @unittest.skipUnless(os.access(NGINX, os.X_OK), f"needs nginx at {NGINX} (scripts/install-deps)")
    def test_site_passes_nginx_t(self):
        with tempfile.TemporaryDirectory(prefix="nudge-nginx-") as d:
            temp = "; ".join(f"{k}_temp_path {d}/{k}" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(f"error_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{}}\n"
                        f"http {{\n  access_log off;\n  {temp};\n  include {os.path.abspath(NGINX_SITE)};\n}}\n")
            out = subprocess.run([NGINX, "-t", "-p", d + "/", "-c", "nginx.conf", "-g", "daemon off;"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)


class SystemdUnitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.settings = {}
        with open(UNIT) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", "[")) and "=" in line:
                    k, v = line.split("=", 1)
                    cls.settings.setdefault(k, []).append(v)

    def one(self, key):
        self.assertIn(key, self.settings)
        return self.settings[key][-1]

    def test_promised_settings(self):
        self.assertEqual(self.one("ExecStart"), "/usr/bin/nudge run /etc/nudge/%i.toml")
        self.assertEqual(self.one("Restart"), "on-failure")
        self.assertEqual(self.one("User"), "nudge")
        self.assertEqual(self.one("KillSignal"), "SIGTERM")
        self.assertIn("-HUP $MAINPID", self.one("ExecReload"))
        for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
            self.assertEqual(self.one(hardening), "yes", hardening)
        self.assertEqual(self.one("ProtectSystem"), "strict")

    def test_stop_timeout_exceeds_every_pipeline_grace(self):
        stop = self.one("TimeoutStopSec")
        m = re.fullmatch(r"(\d+)s?", stop)
        self.assertTrue(m, stop)
        pipelines = os.path.join(SOURCE_DIR, "pipelines")
        for name in sorted(os.listdir(pipelines)):
            if name.endswith(".toml"):
                with open(os.path.join(pipelines, name), "rb") as f:
                    grace = tomllib.load(f).get("pipeline", {}).get("shutdown_grace_ms", 10000)
                self.assertGreater(int(m.group(1)) * 1000, grace + 5000, name)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "needs systemd-analyze")
    def test_systemd_analyze_verify(self):
        with tempfile.TemporaryDirectory(prefix="nudge-unit-") as d:
            shutil.copy(UNIT, os.path.join(d, "nudge@.service"))
            os.symlink("nudge@.service", os.path.join(d, "nudge@chat.service"))
            out = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(d, "nudge@chat.service")],
                                 capture_output=True, text=True, timeout=60)
            # Not installed here: the executable's absence is the only complaint allowed.
            problems = [l for l in (out.stdout + out.stderr).splitlines()
                        if l.strip() and "/usr/bin/nudge is not executable" not in l]
            self.assertEqual(problems, [])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)
