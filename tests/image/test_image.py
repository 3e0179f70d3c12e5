"""The OCI image, checked without a container engine (none runs on our
machines): scripts/build-image makes it from this build's .deb, umoci unpacks
it as a runtime would, and the checks run in its root filesystem through
chroot, as the image's own user:

- the image's config: entry point `nudge run /etc/nudge/pipeline.toml`, user
  10001, the ports, SIGTERM;
- `nudge --version`, `nudge plugins` (every plugin loads with the image's
  libraries), `nudge validate` on every shipped pipeline, the image's own and
  the Helm chart's;
- the image's own pipeline runs, answers /readyz, and drains on SIGTERM to
  exit 0, writing its SQLite file as the non-root user.

Needs root (chroot, and umoci unpacking files owned by other users), mmdebstrap
and umoci (scripts/install-deps), and Debian's mirror. NUDGE_BUILD_DIR is a
built build folder.
"""
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import nudge_test  # noqa: E402

SOURCE = os.path.abspath(nudge_test.SOURCE_DIR)
BUILD = os.environ.get("NUDGE_BUILD_DIR", os.path.join(SOURCE, "build"))
SHIPPED_PLUGINS = {"websocket", "http", "filter", "rate-limit", "memory", "redis", "nats", "kafka", "sqlite", "postgres", "mysql"}
USER = "10001:10001"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/var/lib/nudge", "LANG": "C.UTF-8"}


def run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def blob(layout, digest):
    algorithm, value = digest.split(":")
    with open(os.path.join(layout, "blobs", algorithm, value), "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == value, f"blob {digest} does not match its digest"
    return json.loads(data)


@unittest.skipUnless(os.geteuid() == 0, "needs root: chroot, and unpacking files of other owners")
@unittest.skipUnless(shutil.which("mmdebstrap") and shutil.which("umoci"), "needs mmdebstrap and umoci: scripts/install-deps")
class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="nudge-image-")
        cls.out = os.path.join(cls.work, "out")
        t0 = time.monotonic()
        built = run([os.path.join(SOURCE, "scripts", "build-image"), "--build", BUILD, "--out", cls.out])
        print("".join(line + "\n" for line in built.stderr.splitlines() if line.startswith("build-image:")), end="")
        print(f"scripts/build-image: {time.monotonic() - t0:.1f} s")
        cls.layout = os.path.join(cls.out, "oci")
        with open(os.path.join(cls.layout, "index.json")) as f:
            index = json.load(f)
        cls.tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
        cls.version = next(tag for tag in cls.tags if tag != "latest")
        t0 = time.monotonic()
        cls.bundle = os.path.join(cls.work, "bundle")
        run(["umoci", "unpack", "--image", f"{cls.layout}:{cls.version}", cls.bundle])
        cls.rootfs = os.path.join(cls.bundle, "rootfs")
        print(f"umoci unpack: {time.monotonic() - t0:.1f} s")
        # nudge finds its plugins beside /proc/self/exe; every container runtime mounts /proc.
        run(["mount", "-t", "proc", "proc", os.path.join(cls.rootfs, "proc")])

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "rootfs"):
            subprocess.run(["umount", os.path.join(cls.rootfs, "proc")])
        shutil.rmtree(cls.work, ignore_errors=True)

    def chroot(self, *args, check=True, **kwargs):
        """Runs a command in the image's root filesystem as the image's user."""
        out = subprocess.run(["chroot", f"--userspec={USER}", self.rootfs, *args], capture_output=True,
                             text=True, env=CLEAN_ENV, cwd="/", **kwargs)
        if check and out.returncode != 0:
            raise AssertionError(f"in the image: {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def test_the_image_config_runs_the_pipeline_as_a_user(self):
        self.assertEqual(set(self.tags), {self.version, "latest"})
        self.assertIn(self.version, run([os.path.join(BUILD, "bin", "nudge"), "--version"]).stdout,
                      "the image is tagged with the version of the build it packs")
        manifest = blob(self.layout, self.tags[self.version]["digest"])
        image = blob(self.layout, manifest["config"]["digest"])
        config = image["config"]
        self.assertEqual(config["Entrypoint"] + config["Cmd"], ["/usr/bin/nudge", "run", "/etc/nudge/pipeline.toml"])
        self.assertEqual(config["User"], USER, "a numeric user, so that runAsNonRoot can check it")
        self.assertEqual(set(config["ExposedPorts"]), {"8080/tcp", "9100/tcp"})
        self.assertEqual(config["StopSignal"], "SIGTERM")
        self.assertEqual(config["WorkingDir"], "/var/lib/nudge")
        self.assertEqual((image["os"], len(manifest["layers"])), ("linux", 1))
        # What a runtime makes of it (umoci's runtime-spec config.json).
        with open(os.path.join(self.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        self.assertEqual(process["args"], ["/usr/bin/nudge", "run", "/etc/nudge/pipeline.toml"])
        self.assertEqual((process["user"]["uid"], process["user"]["gid"]), (10001, 10001))
        # The oci-archive holds the same layout.
        self.assertTrue(os.path.exists(os.path.join(self.out, f"nudge-{self.version}.oci.tar")))

    def test_nudge_and_every_plugin_load_in_the_image(self):
        self.assertIn(self.version, self.chroot("nudge", "--version").stdout)
        listed = self.chroot("nudge", "plugins").stdout
        names = {line.split()[0] for line in listed.splitlines()[1:] if line and not line.startswith(" ")}
        self.assertEqual(names, SHIPPED_PLUGINS, listed)
        self.assertNotIn("error", listed.lower())

    def test_every_shipped_pipeline_validates_in_the_image(self):
        shipped = sorted(os.path.basename(p) for p in glob.glob(os.path.join(SOURCE, "pipelines", "*.toml")))
        installed = sorted(os.path.basename(p) for p in glob.glob(os.path.join(self.rootfs, "usr/share/nudge/pipelines/*.toml")))
        self.assertEqual(installed, shipped)
        for name in shipped:
            with self.subTest(pipeline=name):
                self.chroot("nudge", "validate", f"/usr/share/nudge/pipelines/{name}")
        self.chroot("nudge", "validate", "/etc/nudge/pipeline.toml")

    def test_the_charts_pipelines_validate_in_the_image(self):
        """The chart's pipelines name the chat page where the package puts it,
        and its preStop hook runs /bin/sleep: both must be in the image."""
        self.assertTrue(os.path.exists(os.path.join(self.rootfs, "usr/share/nudge/pipelines/web/index.html")))
        self.assertTrue(os.access(os.path.join(self.rootfs, "bin/sleep"), os.X_OK))
        inside = os.path.join(self.rootfs, "tmp", "chart")
        os.makedirs(inside, exist_ok=True)
        for path in glob.glob(os.path.join(SOURCE, "deploy", "helm", "nudge", "files", "*.toml")):
            shutil.copy(path, inside)
            with self.subTest(pipeline=os.path.basename(path)):
                self.chroot("nudge", "validate", f"/tmp/chart/{os.path.basename(path)}")

    def test_the_default_pipeline_serves_and_drains_on_sigterm(self):
        env = dict(CLEAN_ENV, NUDGE_LISTEN="127.0.0.1:0", NUDGE_ADMIN_LISTEN="127.0.0.1:0")
        proc = subprocess.Popen(["chroot", f"--userspec={USER}", self.rootfs, "nudge", "run", "/etc/nudge/pipeline.toml"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd="/")
        self.addCleanup(proc.kill)
        admin, log = None, []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            log.append(line)
            m = nudge_test.ADMIN_LINE.search(line)
            if m:
                admin = m.group(1)
            if "started as instance" in line:
                break
        self.assertIsNotNone(admin, "no admin endpoint in the log:\n" + "".join(log))
        ready = nudge_test.wait_until(lambda: nudge_test.admin_get(admin, "/readyz")[0] == 200, 10)
        self.assertTrue(ready, nudge_test.admin_get(admin, "/readyz"))
        self.assertTrue(os.path.exists(os.path.join(self.rootfs, "var/lib/nudge/chat-embedded.db")),
                        "the non-root user writes its data in /var/lib/nudge")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0, "".join(log) + proc.stderr.read())
        print(f"drained and exited 0 on SIGTERM in {time.monotonic() - t0:.2f} s")


if __name__ == "__main__":
    nudge_test.main()
