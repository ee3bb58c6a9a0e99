"""Secrets (SPEC section 6, deploy/redis-acl.md): Redis ACL user and password
and Kafka SASL/SSL properties come from the environment or the config file,
and never appear in a log line or in `check-config` output.

Redis runs with a password on the default user (the admin) and the
least-privilege user created by the exact `ACL SETUSER` line of
deploy/redis-acl.md. The pipeline gets that user and its password from
STOREPULSE_REDIS_USER / STOREPULSE_REDIS_PASSWORD (the config file holds
another redis.password, which the environment overrides), and Kafka secrets
both from the environment (sasl.password, ssl.key.password) and from the file
(ssl.keystore.password). The broker is the plaintext mock cluster, so
librdkafka accepts and ignores them.

Secrets: generated traffic is counted end to end as that user, and
import-orders works as that user too; the user can do nothing else (other
commands, other keys); the whole output of the pipeline (at log level debug,
with librdkafka's configuration dump), import-orders and check-config holds
no secret value; check-config shows
`<redacted>` for each secret and the user name in clear.
WrongPassword: a wrong password stops `run` and `import-orders` with an error
that names the user and Redis's reason, and not the password.
"""

import os
import re
import shlex
import subprocess

import redis as redis_py

import harness as H

NS = "store"  # the namespace of the ACL line in deploy/redis-acl.md
ADMIN_PW = "admin-Pw-0c1d"
REDIS_USER = "storepulse"
REDIS_PW = "R3dis-S3cret-7f2a"
FILE_REDIS_PW = "file-redis-Pw-9b1e"  # in the file, overridden by the environment
SASL_PW = "kafka-Sasl-Pw-44e0"
SSL_KEY_PW = "ssl-Key-Pw-5d3c"
KEYSTORE_PW = "keystore-Pw-a7c9"  # in the file only
WRONG_PW = "wrong-Pw-1e6b"
SECRETS = [ADMIN_PW, REDIS_PW, FILE_REDIS_PW, SASL_PW, SSL_KEY_PW, KEYSTORE_PW, WRONG_PW]

ACL_DOC = os.path.join(H.SP_SRC, "deploy", "redis-acl.md")


def acl_line():
    """The documented ACL SETUSER line, split into arguments."""
    with open(ACL_DOC) as f:
        lines = [ln.strip() for ln in f if ln.startswith("ACL SETUSER storepulse ")]
    assert len(lines) == 1, f"expected one 'ACL SETUSER storepulse' line in {ACL_DOC}"
    args = shlex.split(lines[0])
    assert ">CHANGE-ME" in args, lines[0]
    return [f">{REDIS_PW}" if a == ">CHANGE-ME" else a for a in args]


class AuthRedis(H.Redis):
    """redis-server whose default user needs ADMIN_PW."""

    def start(self):
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--requirepass", ADMIN_PW,
                "--dir", self.tmpdir, "--logfile", os.path.join(self.tmpdir, "redis.log")]
        self._spawn(argv)
        self.client = redis_py.Redis(host="127.0.0.1", port=self.port, password=ADMIN_PW,
                                     decode_responses=True, socket_timeout=10)
        H.wait_until(lambda: self.client.ping(), 15, 0.05, f"redis-server on port {self.port}")
        return self


def secret_env(password=REDIS_PW):
    env = dict(os.environ)
    env.update({
        "STOREPULSE_REDIS_USER": REDIS_USER,
        "STOREPULSE_REDIS_PASSWORD": password,
        "STOREPULSE_KAFKA_SASL_USERNAME": "sp-kafka",
        "STOREPULSE_KAFKA_SASL_PASSWORD": SASL_PW,
        "STOREPULSE_KAFKA_SSL_KEY_PASSWORD": SSL_KEY_PW,
    })
    return env


class EnvPipeline(H.Pipeline):
    def __init__(self, tmpdir, cfg_path, env, name="pipeline"):
        super().__init__(tmpdir, cfg_path, name)
        self.env = env

    def start(self):
        self._spawn([H.SP_BIN, "run", "-c", self.cfg_path], env=self.env)
        self.starts += 1
        return self


def run_cmd(argv, env, timeout=60):
    p = H.sp_run(argv, cwd=H.SP_SRC, env=env, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def leaked(text):
    return [s for s in SECRETS if s in text]


def write_secret_config(tmp, bootstrap, port):
    return H.write_config(f"{tmp}/sp-secrets.yaml", NS, bootstrap, port, log_level="debug",
                          extra={"redis": {"password": FILE_REDIS_PW},
                                 # debug conf: librdkafka dumps its whole configuration
                                 "kafka": {"security.protocol": "plaintext",
                                           "debug": "conf,security,generic",
                                           "ssl.keystore.password": KEYSTORE_PW}})


class Secrets(H.SPTestCase):

    @classmethod
    def scenario(cls):
        cls.redis = cls.track(AuthRedis(cls.tmp)).start()
        admin = cls.redis.client
        admin.execute_command(*acl_line())
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        plain = H.write_config(f"{cls.tmp}/gen.yaml", NS, cls.broker.bootstrap, cls.redis.port)
        start = H.floor_to(H.now_ms() - 2 * 3_600_000, 3_600_000)
        H.gen(plain, cls.broker.bootstrap_file, 3000, 11, start)

        cls.cfg = write_secret_config(cls.tmp, cls.broker.bootstrap, cls.redis.port)
        cls.pipe = cls.track(EnvPipeline(cls.tmp, cls.cfg, secret_env()))
        cls.pipe.start()
        H.wait_caught_up(admin, NS, cls.broker.bootstrap, timeout=120, pipeline=cls.pipe)
        cls.windows = H.funnel_windows(admin, NS)
        cls.clients = admin.client_list()
        cls.health = admin.hgetall(f"sp:{{{NS}}}:health")

        csv = os.path.join(cls.tmp, "orders.csv")
        with open(csv, "w") as f:
            f.write("customer_id,order_time\nimp-1,2025-03-01T10:00:00Z\n")
        cls.imp = run_cmd([H.SP_BIN, "import-orders", "-c", cls.cfg, csv], secret_env())
        cls.cohort = admin.hgetall(f"sp:{{{NS}}}:cohort:2025-03")
        cls.check = run_cmd([H.SP_BIN, "check-config", "-c", cls.cfg], secret_env())

        cls.pipe.terminate_ok()
        # every command denied to a user, before the tests below try some on purpose
        cls.acl_log = admin.execute_command("ACL", "LOG")
        with open(cls.pipe.log_path, "rb") as f:
            cls.pipe_log = f.read().decode("utf-8", "replace")

    def test_counted_end_to_end_as_the_acl_user(self):
        sessions = sum(int(w.get("sessions", 0)) for (size, _), w in self.windows.items()
                       if size == "1h")
        self.assertGreater(sessions, 0, f"no sessions counted: {len(self.windows)} windows")
        users = [c.get("user") for c in self.clients]
        self.assertIn(REDIS_USER, users, f"the pipeline is not logged in as {REDIS_USER}")
        # written outside the commit (MULTI/EXEC + HSET): the user may do that too
        self.assertEqual(self.health.get("ready"), "1", self.health)
        # the documented user covers every command the pipeline, import-orders and
        # check-config sent: Redis denied none of them
        self.assertEqual(self.acl_log, [], "commands denied to the documented ACL user")

    def test_import_orders_as_the_acl_user(self):
        rc, out, err = self.imp
        self.assertEqual(rc, 0, f"import-orders rc={rc}\n{out}\n{err}")
        self.assertEqual(self.cohort.get("customers"), "1", self.cohort)

    def test_acl_user_can_do_nothing_else(self):
        r = redis_py.Redis(host="127.0.0.1", port=self.redis.port, username=REDIS_USER,
                           password=REDIS_PW, decode_responses=True, socket_timeout=10)
        self.assertTrue(r.hgetall(f"sp:{{{NS}}}:offsets"))  # its own keys: yes
        for cmd in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "requirepass"),
                    ("GET", "other:key"), ("SET", "sp:{other}:x", "1"),
                    ("PUBLISH", "sp:{other}:updates", "x"), ("ACL", "WHOAMI"),
                    ("HGETALL", f"sp:{{{NS}}}x")):
            with self.assertRaises(redis_py.exceptions.NoPermissionError, msg=str(cmd)):
                r.execute_command(*cmd)

    def test_no_secret_in_pipeline_output(self):
        self.assertIn("storepulse running", self.pipe_log)
        # librdkafka's configuration dump (kafka.debug: conf) shows the
        # properties, the secret ones as [redacted]
        # librdkafka's configuration dump, through our logger (component rdkafka)
        self.assertRegex(self.pipe_log,
                         r"rdkafka: .*sasl\.password = \[redacted\] facility=CONF")
        self.assertEqual(leaked(self.pipe_log), [])

    def test_no_secret_in_import_output(self):
        rc, out, err = self.imp
        self.assertEqual(leaked(out + err), [])

    def test_check_config_redacts(self):
        rc, out, err = self.check
        self.assertEqual(rc, 0, err)
        self.assertEqual(leaked(out + err), [])
        self.assertIn('  password: "<redacted>"\n', out)
        self.assertIn(f'  user: "{REDIS_USER}"\n', out)
        for prop in ("sasl.password", "ssl.key.password", "ssl.keystore.password"):
            self.assertIn(f'  "{prop}": "<redacted>"\n', out)
        self.assertIn('  "sasl.username": "sp-kafka"\n', out)


class WrongPassword(H.SPTestCase):

    @classmethod
    def scenario(cls):
        cls.redis = cls.track(AuthRedis(cls.tmp)).start()
        cls.redis.client.execute_command(*acl_line())
        # no broker needed: the start stops at Redis, before Kafka
        cls.cfg = write_secret_config(cls.tmp, "127.0.0.1:1", cls.redis.port)
        env = secret_env(WRONG_PW)
        cls.run_res = run_cmd([H.SP_BIN, "run", "-c", cls.cfg], env, timeout=60)
        csv = os.path.join(cls.tmp, "orders.csv")
        with open(csv, "w") as f:
            f.write("customer_id,order_time\nimp-1,2025-03-01T10:00:00Z\n")
        cls.imp = run_cmd([H.SP_BIN, "import-orders", "-c", cls.cfg, csv], env)

    def check(self, res, what):
        rc, out, err = res
        self.assertNotEqual(rc, 0, f"{what} succeeded with a wrong password")
        self.assertRegex(err, re.compile(
            r"AUTH as user 'storepulse' failed: WRONGPASS invalid username-password pair"),
            f"{what}: unclear error:\n{err[-2000:]}")
        self.assertEqual(leaked(out + err), [], f"{what} printed a secret")

    def test_run(self):
        self.check(self.run_res, "run")

    def test_import_orders(self):
        self.check(self.imp, "import-orders")


if __name__ == "__main__":
    H.main()
