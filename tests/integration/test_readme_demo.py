"""The README works word for word (issue 18, point 8): `bash scripts/demo.sh`
starts the demo and leaves it running; every command of the README's
"Reading the counters" and kcat sections, run as written in a shell that
sourced the demo's env file, succeeds and prints what it promises; `status`
and `stop` do what they say.

The demo runs with SP_BIN (the binary under test, no build) and its own
SP_DEMO_DIR, so a demo a developer has running is left alone."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

SRC = os.environ.get("SP_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BIN = os.environ.get("SP_BIN", os.path.join(SRC, "build", "storepulse"))

# README sections whose sh blocks must run as written against the demo
SECTIONS = ("## Reading the counters", "### The other families",
            "## Talking to the embedded broker with kcat")


def readme_commands():
    """(section, command) for every command of the sh blocks of SECTIONS;
    continuation lines joined."""
    text = open(os.path.join(SRC, "README.md")).read()
    out = []
    for sec in SECTIONS:
        i = text.index(sec)
        j = text.find("\n## ", i + len(sec))
        j = j if j >= 0 else len(text)
        if sec.startswith("### "):
            k = text.find("\n### ", i + len(sec))
            j = min(j, k) if k >= 0 else j
        body = text[i:j]
        for block in re.findall(r"```sh\n(.*?)```", body, re.S):
            cmd = ""
            for line in block.splitlines():
                if not line.strip():
                    continue
                cmd += line.rstrip()
                if cmd.endswith("\\"):
                    cmd = cmd[:-1] + " "
                    continue
                out.append((sec, cmd))
                cmd = ""
    return out


class ReadmeDemo(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-readme-")
        cls.demo = os.path.join(cls.tmp, "demo")
        cls.env = dict(os.environ, SP_DEMO_DIR=cls.demo, SP_BIN=BIN, SKIP_INSTALL="1")
        p = subprocess.run(["bash", os.path.join(SRC, "scripts", "demo.sh")], cwd=SRC,
                           env=cls.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=400, text=True)
        cls.demo_rc, cls.demo_out = p.returncode, p.stdout
        cls.pids = []
        if os.path.exists(os.path.join(cls.demo, "pids")):
            cls.pids = [int(x) for x in open(os.path.join(cls.demo, "pids")).read().split()]

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["bash", os.path.join(SRC, "scripts", "demo.sh"), "stop"], cwd=SRC,
                       env=cls.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        for p in cls.pids:  # whatever stop left
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_sh(self, script, timeout=60):
        full = f"source {self.demo}/env\n{script}\n"
        return subprocess.run(["bash", "-c", full], cwd=self.tmp, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, text=True)

    def test_1_demo_ran_and_stays_up(self):
        self.assertEqual(self.demo_rc, 0, self.demo_out[-3000:])
        self.assertIn("FIRING critical payment_failure_spike", self.demo_out)
        self.assertIn("RESOLVED critical payment_failure_spike", self.demo_out)
        self.assertIn("mostly device=mobile", self.demo_out)  # the incident it injected
        self.assertIn(f"source {self.demo}/env", self.demo_out)
        self.assertIn("bash scripts/demo.sh stop", self.demo_out)
        self.assertEqual(len(self.pids), 4)  # redis, broker, pipeline, traffic
        for p in self.pids:
            os.kill(p, 0)  # still running after the script returned
        st = subprocess.run(["bash", os.path.join(SRC, "scripts", "demo.sh"), "status"],
                            cwd=SRC, env=self.env, stdout=subprocess.PIPE, text=True)
        self.assertEqual(st.returncode, 0)
        self.assertEqual(st.stdout.count("running"), 4, st.stdout)

    def test_2_readme_commands_run_as_written(self):
        self.assertEqual(self.demo_rc, 0)
        cmds = readme_commands()
        self.assertGreaterEqual(len(cmds), 14)
        # one shell for all, so that an assignment (W=...) serves the lines after it
        script = []
        for i, (_, c) in enumerate(cmds):
            if " SUBSCRIBE " in c:  # blocks until Ctrl-C: three seconds of it
                c = "timeout 3 " + c
            script.append(f"{c}\necho \"@@{i} rc=$?\"")
        p = self.run_sh("\n".join(script), timeout=120)
        parts = re.split(r"@@(\d+) rc=(\d+)\n", p.stdout)
        got = {}
        for k in range(1, len(parts) - 1, 3):
            got[int(parts[k])] = (int(parts[k + 1]), parts[k - 1])
        for i, (sec, c) in enumerate(cmds):
            with self.subTest(cmd=c):
                self.assertIn(i, got, p.stdout[-2000:])
                rc, out = got[i]
                if c.startswith("timeout 3 ") or " SUBSCRIBE " in c:
                    self.assertEqual(rc, 124)
                    self.assertIn("watermark_ms", out)  # a commit's message arrived
                    continue
                self.assertEqual(rc, 0, out)
                self.assertNotIn("ERR", out)
                self.assertNotIn("command not found", out)
                if c.startswith("W=") or " -P " in c:
                    continue  # an assignment; a produce prints nothing
                self.assertTrue(out.strip(), f"no output from {c!r}")  # a key that is there

    def test_3_storepulse_on_the_path(self):
        p = self.run_sh("command -v storepulse && storepulse --help")
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("usage: storepulse", p.stdout)

    def test_4_broker_help_names_the_key(self):
        p = subprocess.run([BIN, "broker", "--help"], stdout=subprocess.PIPE, text=True)
        self.assertIn("embedded.partitions", p.stdout)
        self.assertNotIn("pipeline.partitions", p.stdout)

    def test_9_stop(self):
        p = subprocess.run(["bash", os.path.join(SRC, "scripts", "demo.sh"), "stop"], cwd=SRC,
                           env=self.env, stdout=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(p.returncode, 0)
        deadline = time.time() + 10
        alive = self.pids
        while alive and time.time() < deadline:
            alive = [x for x in alive if os.path.exists(f"/proc/{x}")
                     and "zombie" not in open(f"/proc/{x}/status").read()]
            time.sleep(0.1)
        self.assertEqual(alive, [])
        self.assertFalse(os.path.exists(self.demo))


if __name__ == "__main__":
    unittest.main(verbosity=2)
