"""Start-up checks (issue 18, point 2): `check-config` refuses whatever `run`
would refuse at start, with the same message, naming the file, line and key
(or the environment variable).

StartupErrors: a table of misconfigurations (a config snippet and/or
environment variables, and a fragment of the expected message). For each,
`storepulse check-config -c F` and `storepulse run -c F` both exit non-zero
and print the same error line; `run` gets a Redis port nothing listens on and
a bootstrap address nothing listens on, so it must refuse before it touches
the network (quickly, with exit code 2, not after Redis retries). Secrets in
the config never appear in a message. A valid config passes both checks
(the control case).

KafkaLogs (point 6): librdkafka's own lines go through our logger. With
`log.format: json` every line of `run` on stderr is one JSON object with
time, level, component and msg, and librdkafka's connection errors (a
bootstrap address nothing listens on) appear with component "rdkafka" and
their facility; with `log.format: text` they appear as "rdkafka: ..." lines.

Version: `storepulse --version` and `storepulse version` print the version
of CMakeLists.txt, the git commit and the librdkafka, avro-c and hiredis
versions.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import harness as H

SECRET = "Sekr1t-Key-Pw-77aa"


def table(tmp):
    """(name, config extra, environment, message fragments)."""
    bad_avsc = os.path.join(tmp, "broken.avsc")
    with open(bad_avsc, "w") as f:
        f.write('{"type": "record", "name": "clickstream", "fields": [oops')
    bogus_pem = os.path.join(tmp, "bogus.pem")
    with open(bogus_pem, "w") as f:
        f.write("not a certificate\n")
    no_alert_schema = os.path.join(tmp, "schemas-no-alert")
    os.makedirs(no_alert_schema, exist_ok=True)
    for st in ("clickstream", "checkout", "shipment", "support"):
        shutil.copy(os.path.join(H.SCHEMA_DIR, f"{st}.avsc"), no_alert_schema)
    rule = {"name": "r1", "metric": "funnel.payments_failed", "window": "1m", "above": 1}
    return [
        ("timezone", {"windows": {"timezone": "Mars/Olympus"}}, {},
         [":17: key 'windows.timezone': unknown time zone 'Mars/Olympus'"]),
        ("timezone_directory", {"windows": {"timezone": "Europe"}}, {},
         ["key 'windows.timezone': unknown time zone 'Europe'"]),
        ("timezone_env", {}, {"STOREPULSE_WINDOWS_TIMEZONE": "Mars/Olympus"},
         ["environment STOREPULSE_WINDOWS_TIMEZONE: key 'windows.timezone': unknown time zone"]),
        ("schemas_dir", {"schemas": {"dir": "/nonexistent"}}, {},
         [":11: key 'schemas.dir': /nonexistent: No such file or directory"]),
        ("schemas_dir_env", {}, {"STOREPULSE_SCHEMAS_DIR": "/nonexistent"},
         ["environment STOREPULSE_SCHEMAS_DIR: key 'schemas.dir': /nonexistent"]),
        ("schema_id_missing_file",
         {"schemas": {"ids": {"1": {"stream": "clickstream", "file": "nope.avsc"}}}}, {},
         ["key 'schemas.ids.1': ", "nope.avsc: No such file or directory"]),
        ("schema_id_unparsable",
         {"schemas": {"ids": {"7": {"stream": "clickstream", "file": bad_avsc}}}}, {},
         ["key 'schemas.ids.7': ", "broken.avsc"]),
        ("alert_schema_missing",
         {"schemas": {"dir": no_alert_schema}, "alerting": {"format": "avro"},
          "alerts": [rule]}, {},
         ["key 'alerting.format': alert schema: ", "alert.avsc"]),
        ("rule_window", {"alerts": [dict(rule, window="7m")]}, {}, ["rule 'r1'", "7m"]),
        ("kafka_acks_idempotent", {"kafka": {"acks": 1}}, {},
         ["key 'kafka.acks': the producer's configuration: librdkafka: ", "enable.idempotence"]),
        ("kafka_unknown_property", {"kafka": {"no.such.property": 1}}, {},
         ["key 'kafka.no.such.property': librdkafka: "]),
        ("kafka_env_property", {}, {"STOREPULSE_KAFKA_NO_SUCH_PROPERTY": "1"},
         ["environment STOREPULSE_KAFKA_NO_SUCH_PROPERTY: key 'kafka.no.such.property'"]),
        ("ssl_ca_missing", {"kafka": {"ssl.ca.location": "/nonexistent/ca.pem"}}, {},
         ["key 'kafka.ssl.ca.location': cannot read '/nonexistent/ca.pem': No such file"]),
        ("ssl_key_missing_env", {}, {"STOREPULSE_KAFKA_SSL_KEY_LOCATION": "/nonexistent/k.pem"},
         ["environment STOREPULSE_KAFKA_SSL_KEY_LOCATION: key 'kafka.ssl.key.location': "
          "cannot read"]),
        ("keytab_missing", {"kafka": {"sasl.kerberos.keytab": "/nonexistent/sp.keytab"}}, {},
         ["key 'kafka.sasl.kerberos.keytab': cannot read"]),
        ("ssl_cert_invalid",
         {"kafka": {"security.protocol": "ssl", "ssl.certificate.location": bogus_pem,
                    "ssl.key.location": bogus_pem, "ssl.key.password": SECRET}}, {},
         ["key 'kafka.ssl.certificate.location': the consumer's configuration: librdkafka: "]),
        ("env_misspelled", {}, {"STOREPULSE_REDIS_PROT": "6380"},
         ["environment STOREPULSE_REDIS_PROT: no such option (did you mean "
          "STOREPULSE_REDIS_PORT?"]),
        ("env_file_only", {}, {"STOREPULSE_WINDOWS_SIZES": "[1m]"},
         ["environment STOREPULSE_WINDOWS_SIZES: key 'windows.sizes' can only be set in the "
          "config file"]),
    ]


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREPULSE_")}
    env.update(extra)
    return env


def run_cmd(argv, env, timeout=60):
    t0 = time.monotonic()
    p = H.sp_run(argv, cwd=H.SP_SRC, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 timeout=timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("storepulse: ")]


class StartupErrors(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-it-startup-")
        cls.redis_port = H.free_port()  # nothing listens there
        cls.bootstrap = f"127.0.0.1:{H.free_port()}"
        cls.cases = table(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("SP_KEEP_TMP"):
            shutil.rmtree(cls.tmp, True)

    def config(self, name, extra):
        # namespace(1) kafka(2-6) redis(7-9) schemas(10-11) windows(12-16, then
        # added keys): the table's line numbers follow write_config's order
        return H.write_config(os.path.join(self.tmp, f"{name}.yaml"), "startup", self.bootstrap,
                              self.redis_port, extra=extra)

    def test_layout(self):
        """The line numbers the table expects are where write_config puts the keys."""
        path = self.config("layout", {"windows": {"timezone": "UTC"}})
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[16].strip(), "timezone: \"UTC\"", lines)
        self.assertEqual(lines[10].strip(), f"dir: \"{H.SCHEMA_DIR}\"", lines)

    def test_table(self):
        for name, extra, env, fragments in self.cases:
            with self.subTest(case=name):
                path = self.config(name, extra)
                e = clean_env(env)
                crc, _, cerr, _ = run_cmd([H.SP_BIN, "check-config", "-c", path], e)
                rrc, _, rerr, rtime = run_cmd([H.SP_BIN, "run", "-c", path], e, timeout=60)
                cl, rl = error_lines(cerr), error_lines(rerr)
                self.assertNotEqual(crc, 0, f"check-config accepted it:\n{cerr}")
                self.assertNotEqual(rrc, 0, f"run accepted it:\n{rerr}")
                self.assertEqual(len(cl), 1, f"check-config's error:\n{cerr}")
                for frag in fragments:
                    self.assertIn(frag, cl[0])
                self.assertEqual(rl, cl, "run and check-config give different messages")
                self.assertEqual(rrc, 2, f"run did not refuse at start:\n{rerr}")
                self.assertLess(rtime, 5, "run took long to refuse: it tried the network")
                self.assertNotIn(SECRET, cerr + rerr)

    def test_valid_config_passes(self):
        path = self.config("valid", {"alerts": [
            {"name": "r1", "metric": "funnel.payments_failed", "window": "1m", "above": 1}]})
        rc, out, err, _ = run_cmd([H.SP_BIN, "check-config", "-c", path], clean_env({}))
        self.assertEqual(rc, 0, err)
        self.assertIn("# alerts: 1 rule", out)


class KafkaLogs(unittest.TestCase):
    """run against a real Redis and a bootstrap address nothing listens on:
    librdkafka logs its failed connections."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-it-kafkalogs-")
        cls.redis = H.Redis(cls.tmp).start()
        cls.out = {}
        try:
            for fmt in ("json", "text"):
                path = H.write_config(os.path.join(cls.tmp, f"{fmt}.yaml"), f"kl{fmt}",
                                      f"127.0.0.1:{H.free_port()}", cls.redis.port,
                                      extra={"log": {"format": fmt},
                                             "kafka": {"reconnect.backoff.ms": 100}})
                p = H.Pipeline(cls.tmp, path, name=f"pipeline-{fmt}").start()
                try:
                    H.wait_until(lambda: "rdkafka" in H.tail(p.log_path, 400), 30, 0.2,
                                 "a librdkafka line")
                finally:
                    p.terminate()
                with open(p.log_path, errors="replace") as f:
                    cls.out[fmt] = [ln for ln in f.read().splitlines()
                                    if ln and not ln.startswith("===== start")]
        finally:
            cls.redis.stop()

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("SP_KEEP_TMP"):
            shutil.rmtree(cls.tmp, True)

    def test_json_lines(self):
        lines = self.out["json"]
        self.assertTrue(lines)
        objs = []
        for ln in lines:
            o = json.loads(ln)  # every line is one JSON object
            for k in ("time", "level", "component", "msg"):
                self.assertIn(k, o, ln)
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(o["level"], ("error", "warn", "info", "debug"))
            objs.append(o)
        rd = [o for o in objs if o["component"] == "rdkafka"]
        self.assertTrue(rd, "no librdkafka line through our logger")
        self.assertTrue(all(o.get("facility") for o in rd), rd)
        self.assertTrue(any("Connection refused" in o["msg"] or "Connect to" in o["msg"]
                            for o in rd), rd)
        self.assertTrue(any(o["component"] == "run" for o in objs), objs)

    def test_text_lines(self):
        rd = [ln for ln in self.out["text"] if " rdkafka: " in ln]
        self.assertTrue(rd, "\n".join(self.out["text"]))
        self.assertTrue(all("facility=" in ln for ln in rd), rd)


class Version(unittest.TestCase):
    """`storepulse --version` and `storepulse version`: the version, the git
    commit and the library versions."""

    def test_version(self):
        outs = []
        for arg in ("--version", "version"):
            p = H.sp_run([H.SP_BIN, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            outs.append(p.stdout.decode())
        self.assertEqual(outs[0], outs[1])
        lines = outs[0].splitlines()
        m = re.fullmatch(r"storepulse (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)",
                         lines[0])
        self.assertTrue(m, lines[0])
        with open(os.path.join(H.SP_SRC, "CMakeLists.txt")) as f:
            want = re.search(r"project\(storepulse VERSION (\S+)", f.read()).group(1)
        self.assertEqual(m.group(1), want)
        if os.path.exists(os.path.join(H.SP_SRC, ".git")) and m.group(2) != "unknown":
            # a commit of this repository (the build may predate the last one)
            g = subprocess.run(["git", "-C", H.SP_SRC, "cat-file", "-t",
                                m.group(2).split("-")[0]], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
            self.assertEqual(g.stdout.decode().strip(), "commit")
        for lib, line in zip(("librdkafka", "avro-c", "hiredis"), lines[1:]):
            self.assertRegex(line, rf"^{lib} \d+\.\d+\.\d+")
        self.assertEqual(len(lines), 4, outs[0])


if __name__ == "__main__":
    H.main()
