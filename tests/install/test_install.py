"""The SDK as a product, from outside the tree: `cmake --install` into a
temporary prefix, the examples (examples/jsonl-sink, examples/http-source)
built against it with find_package(Nudge), and a pipeline run with them;
then the Debian package made by CPack, unpacked, listing every plugin with
no flags. Needs the build folder (NUDGE_BUILD_DIR) built."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402

BUILD = os.environ.get("NUDGE_BUILD_DIR", os.path.join(nudge_test.SOURCE_DIR, "build"))
EXAMPLES = os.path.join(nudge_test.SOURCE_DIR, "examples")
SHIPPED = ["websocket", "http", "filter", "rate-limit", "memory", "redis", "nats", "kafka", "sqlite", "postgres", "mysql"]


def run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def listed_plugins(nudge):
    out = run([nudge, "plugins"])
    return {line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith(" ")}


def build_against(prefix, source, build):
    args = ["cmake", "-S", source, "-B", build, "-G", "Ninja", f"-DCMAKE_PREFIX_PATH={prefix}",
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo"]
    if shutil.which("ccache"):
        args.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
    run(args)
    run(["cmake", "--build", build, "-j2"])
    return os.path.join(build, "plugins")


def wait_for_url(proc, timeout=30):
    """The URL the http source logs it takes messages at, once the pipeline started."""
    url, log = None, []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        m = re.search(r"taking messages at (http://\S+/messages)", line)
        if m:
            url = m.group(1)
        if "started as instance" in line:
            break
    if url is None:
        raise AssertionError("no URL in the log:\n" + "".join(log))
    return url


def post(url, body):
    request = urllib.request.Request(url, data=body if isinstance(body, bytes) else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class InstalledSdkTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="nudge-install-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.prefix = os.path.join(self.work, "prefix")
        t0 = time.monotonic()
        run(["cmake", "--install", BUILD, "--prefix", self.prefix])
        print(f"installed into {self.prefix} in {time.monotonic() - t0:.1f} s")
        self.nudge = os.path.join(self.prefix, "bin", "nudge")

    def test_installed_nudge_finds_every_plugin_and_the_cmake_package(self):
        self.assertEqual(listed_plugins(self.nudge), set(SHIPPED))
        cmake_dir = os.path.join(self.prefix, "lib", "cmake", "Nudge")
        for f in ("NudgeConfig.cmake", "NudgeConfigVersion.cmake", "NudgeTargets.cmake", "NudgePlugin.cmake"):
            self.assertTrue(os.path.exists(os.path.join(cmake_dir, f)), f)
        self.assertTrue(os.path.exists(os.path.join(self.prefix, "include", "nudge", "sdk.hpp")))

    def test_examples_build_out_of_tree_and_carry_messages(self):
        t0 = time.monotonic()
        http_dir = build_against(self.prefix, os.path.join(EXAMPLES, "http-source"), os.path.join(self.work, "http"))
        jsonl_dir = build_against(self.prefix, os.path.join(EXAMPLES, "jsonl-sink"), os.path.join(self.work, "jsonl"))
        print(f"built both examples against the prefix in {time.monotonic() - t0:.1f} s")
        self.assertTrue(os.path.exists(os.path.join(http_dir, "nudge-source-http.so")))
        self.assertTrue(os.path.exists(os.path.join(jsonl_dir, "nudge-sink-jsonl.so")))

        path = os.path.join(self.work, "out", "messages.jsonl")
        # Small files: 20 messages rotate the file twice (keep = 3).
        env = dict(os.environ, NUDGE_HTTP_LISTEN="127.0.0.1:0", NUDGE_JSONL_PATH=path)
        proc = subprocess.Popen([self.nudge, "run", os.path.join(EXAMPLES, "pipelines", "http-to-jsonl.toml"),
                                 "--plugin-dir", http_dir, "--plugin-dir", jsonl_dir, "--set", "sink.jsonl.max_bytes=1024"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.addCleanup(proc.kill)
        url = wait_for_url(proc)

        ids = []
        for i in range(20):
            status, body = post(url, {"room": "general", "sender": "alice", "text": f"message {i} \"quoted\"\n"})
            self.assertEqual(status, 202, body)
            ids.append(body["id"])
        status, body = post(url, b"{not json")
        self.assertEqual(status, 400)
        self.assertIn("error", body)
        # Acked means written: the lines are in the files already, oldest file first.
        files = [f"{path}.{n}" for n in (3, 2, 1) if os.path.exists(f"{path}.{n}")] + [path]
        self.assertGreaterEqual(len(files), 3, "20 messages of about 120 bytes rotate 1 KiB files")
        lines = []
        for name in files:
            self.assertLessEqual(os.path.getsize(name), 1024)
            with open(name) as f:
                lines += [json.loads(line) for line in f]
        self.assertEqual([m["id"] for m in lines], ids)
        self.assertEqual(lines[3]["text"], 'message 3 "quoted"\n')
        self.assertEqual(lines[0]["sender"], "alice")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)


    def test_a_scaffolded_plugin_of_each_kind_builds_and_passes_its_test(self):
        for kind in ("source", "transform", "fanout", "log", "sink"):
            with self.subTest(kind=kind):
                folder = os.path.join(self.work, f"my_{kind}")
                out = run([self.nudge, "new", "plugin", f"my_{kind}", "--kind", kind, "--dir", folder])
                self.assertIn("CMakeLists.txt", out)
                t0 = time.monotonic()
                plugins = build_against(self.prefix, folder, os.path.join(folder, "build"))
                tests = run(["ctest", "--test-dir", os.path.join(folder, "build"), "--output-on-failure"])
                self.assertIn("100% tests passed", tests)
                print(f"scaffolded {kind}: built and tested in {time.monotonic() - t0:.1f} s")
                # The installed runtime loads it and reads its schema.
                described = run([self.nudge, "describe", f"{kind}.my_{kind}", "--plugin-dir", plugins])
                self.assertIn(f"[{kind}.my_{kind}]", described)
        self.run_pipelines_of_scaffolds()
        # Refusals say what is wrong, all at once.
        bad = subprocess.run([self.nudge, "new", "plugin", "Bad-Name", "--kind", "sinks", "--dir", self.work],
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("must start with a letter", bad.stderr)
        self.assertIn("--kind must be source, transform, fanout, log or sink, not 'sinks'", bad.stderr)
        self.assertIn("is not empty", bad.stderr)


    def run_pipelines_of_scaffolds(self):
        """The scaffolds carry messages: http example → my_transform → my_fanout
        → my_log → jsonl example, and my_source → memory → my_sink."""
        http_dir = build_against(self.prefix, os.path.join(EXAMPLES, "http-source"), os.path.join(self.work, "http"))
        jsonl_dir = build_against(self.prefix, os.path.join(EXAMPLES, "jsonl-sink"), os.path.join(self.work, "jsonl"))
        dirs = [http_dir, jsonl_dir] + [os.path.join(self.work, f"my_{k}", "build", "plugins")
                                         for k in ("source", "transform", "fanout", "log", "sink")]
        plugin_dirs = [arg for d in dirs for arg in ("--plugin-dir", d)]
        out = os.path.join(self.work, "scaffolds.jsonl")
        first = os.path.join(self.work, "scaffolds-1.toml")
        with open(first, "w") as f:
            f.write('[source.http]\nlisten = "127.0.0.1:0"\n[transform.my_transform]\nmin_length = 3\n'
                    '[fanout.my_fanout]\n[log.my_log]\n'
                    f'[sink.jsonl]\npath = "{out}"\n')
        proc = subprocess.Popen([self.nudge, "run", first] + plugin_dirs, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        url = wait_for_url(proc)
        ids = []
        for i in range(5):
            status, body = post(url, {"room": "general", "text": f"scaffold message {i}"})
            self.assertEqual(status, 202, body)
            ids.append(body["id"])
        status, body = post(url, {"room": "general", "text": "no"})
        self.assertEqual((status, body), (422, {"error": "messages need at least 3 characters"}),
                         "my_transform rejects texts under 3 characters, with its reason")
        deadline = time.monotonic() + 10
        lines = []
        while time.monotonic() < deadline and len(lines) < 5:
            with open(out) as f:
                lines = [json.loads(line) for line in f]
            time.sleep(0.05)
        self.assertEqual([m["id"] for m in lines], ids, "through the scaffolded transform, fanout and log")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

        second = os.path.join(self.work, "scaffolds-2.toml")
        with open(second, "w") as f:
            f.write('[source.my_source]\ninterval_ms = 20\n[fanout.memory]\n[sink.my_sink]\n')
        proc = subprocess.Popen([self.nudge, "run", second, "--log-level", "debug"] + plugin_dirs,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        written = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and written < 5:
            line = proc.stderr.readline()
            m = re.search(r"sink 'my_sink' wrote \d+ messages \((\d+) in all\)", line)
            if m:
                written = int(m.group(1))
        self.assertGreaterEqual(written, 5, "the scaffolded source's messages reached the scaffolded sink")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


class DebianPackageTest(unittest.TestCase):
    @unittest.skipUnless(shutil.which("dpkg-deb") and shutil.which("cpack"), "needs dpkg-deb and cpack")
    def test_the_package_installs_nudge_with_every_plugin(self):
        work = tempfile.mkdtemp(prefix="nudge-deb-")
        self.addCleanup(shutil.rmtree, work, True)
        t0 = time.monotonic()
        run(["cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", work], cwd=BUILD)
        debs = [f for f in os.listdir(work) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, os.listdir(work))
        deb = os.path.join(work, debs[0])
        print(f"built {debs[0]} ({os.path.getsize(deb) // 1024} KiB) in {time.monotonic() - t0:.1f} s")
        info = run(["dpkg-deb", "--field", deb, "Package", "Version", "Depends"])
        self.assertIn("Package: nudge", info)
        for library in ("libhiredis", "librdkafka", "libpqxx"):
            self.assertIn(library, info, "the package depends on the libraries its plugins link")
        root = os.path.join(work, "root")
        run(["dpkg-deb", "-x", deb, root])
        nudge = os.path.join(root, "usr", "bin", "nudge")
        self.assertEqual(listed_plugins(nudge), set(SHIPPED))
        self.assertTrue(os.path.exists(os.path.join(root, "usr", "include", "nudge", "sdk.hpp")))
        self.assertTrue(any("NudgeConfig.cmake" in files for _, _, files in os.walk(root)))


if __name__ == "__main__":
    nudge_test.main()
