"""Shared pieces of the StorePulse end-to-end tests.

Every test script is run by ctest as `/usr/bin/python3 tests/integration/test_X.py`
with SP_BIN (the storepulse binary) and SP_SRC (the repo root) in the
environment. The harness starts real processes: redis-server, the
`storepulse broker` mock cluster and `storepulse run`, each with its own free
port and temporary directory, and always cleans them up (also on failure).

Set SP_KEEP_TMP=1 to keep the temporary directories (logs, configs) after a run.
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

import avro.io
import avro.schema
import redis as redis_py
from confluent_kafka import Consumer, Producer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
SP_SRC = os.path.abspath(os.environ.get("SP_SRC") or os.path.join(HERE, "..", ".."))
SCHEMA_DIR = os.path.join(SP_SRC, "schemas")


def _default_bin():
    for cand in ("build/storepulse", "build/bin/storepulse", "storepulse"):
        p = os.path.join(SP_SRC, cand)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return os.path.join(SP_SRC, "build", "storepulse")


SP_BIN = os.environ.get("SP_BIN") or _default_bin()

TOPIC_CLICKSTREAM = "store.clickstream"
TOPIC_CHECKOUT = "store.checkout"
TOPIC_SHIPMENTS = "store.shipments"
TOPIC_SUPPORT = "store.support"
TOPIC_DEADLETTER = "storepulse.deadletter"
TOPIC_ALERTS = "storepulse.alerts"
INPUT_TOPICS = [TOPIC_CLICKSTREAM, TOPIC_CHECKOUT, TOPIC_SHIPMENTS, TOPIC_SUPPORT]

SCHEMA_IDS = {1: "clickstream", 2: "checkout", 3: "shipment", 4: "support"}
STREAM_SCHEMA_ID = {v: k for k, v in SCHEMA_IDS.items()}

SIZE_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}

# ---------------------------------------------------------------------------
# small utilities


def now_ms():
    return int(time.time() * 1000)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.2, desc="condition"):
    """Poll predicate() until it returns a truthy value; return that value.
    Raises AssertionError naming desc (and the last exception) on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
            last_exc = None
        except Exception as e:  # keep polling: the thing may not be up yet
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {desc}{extra}")
        time.sleep(interval)


def tail(path, n=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


def floor_to(ms, size_ms):
    return ms - ms % size_ms


# ---------------------------------------------------------------------------
# processes


class _Proc:
    """A child process with its output in a log file. Remembers the log tail
    when stopped so a failing test can print it after the temp dir is gone."""

    name = "proc"

    def __init__(self, tmpdir, name):
        self.tmpdir = tmpdir
        self.name = name
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        self.proc = None
        self.final_tail = None
        self.history = []  # (what, rc)

    def _spawn(self, argv, env=None):
        logf = open(self.log_path, "ab")
        logf.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(argv)}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=SP_SRC, env=env,
                                     start_new_session=True)
        logf.close()
        return self.proc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.history.append(("kill9", self.proc.returncode if self.proc else None))

    def terminate(self, timeout=20):
        """SIGTERM and wait; returns the exit code (kills on timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
                self.history.append(("terminate-timeout", "killed"))
                return "timeout"
        rc = self.proc.returncode
        self.history.append(("terminate", rc))
        return rc

    def stop(self):
        try:
            self.terminate(timeout=15)
        finally:
            self.final_tail = tail(self.log_path)

    def log_tail(self, n=60):
        if os.path.exists(self.log_path):
            return tail(self.log_path, n)
        return self.final_tail or "<no log>"


class Redis(_Proc):
    def __init__(self, tmpdir, appendonly=False, name="redis"):
        d = os.path.join(tmpdir, name)
        os.makedirs(d, exist_ok=True)
        super().__init__(d, name)
        self.port = free_port()
        self.appendonly = appendonly
        self.client = None

    def start(self):
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--dir", self.tmpdir, "--logfile", os.path.join(self.tmpdir, "redis.log")]
        self._spawn(argv)
        self.client = redis_py.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                                     socket_timeout=10)
        wait_until(lambda: self.client.ping(), 15, 0.05, f"redis-server on port {self.port}")
        return self

    def restart(self):
        self.terminate()
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Broker(_Proc):
    def __init__(self, tmpdir, partitions=None, cfg=None, name="broker", topic_partitions=None):
        """topic_partitions: {topic: n}, topics with partition counts of their own."""
        super().__init__(tmpdir, name)
        self.partitions = partitions
        self.topic_partitions = dict(topic_partitions or {})
        self.cfg = cfg
        self.bootstrap_file = os.path.join(tmpdir, f"{name}.bootstrap")
        self.bootstrap = None

    def start(self, timeout=30):
        if os.path.exists(self.bootstrap_file):
            os.unlink(self.bootstrap_file)
        argv = [SP_BIN, "broker", "--bootstrap-file", self.bootstrap_file]
        if self.partitions:
            argv += ["--partitions", str(self.partitions)]
        for topic, n in sorted(self.topic_partitions.items()):
            argv += ["--partitions", f"{topic}={n}"]
        if self.cfg:
            argv += ["-c", self.cfg]
        self._spawn(argv)

        def ready():
            if not self.alive():
                raise AssertionError(f"broker exited rc={self.returncode()}:\n{self.log_tail()}")
            if not os.path.exists(self.bootstrap_file):
                return None
            with open(self.bootstrap_file) as f:
                s = f.read().strip()
            return s or None

        self.bootstrap = wait_until(ready, timeout, 0.05, "broker bootstrap file")
        # wait for the topics to be visible through metadata
        need = set(INPUT_TOPICS + [TOPIC_DEADLETTER])

        def topics_ready():
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "sp-meta"})
            try:
                md = c.list_topics(timeout=5)
                have = {t for t, tm in md.topics.items() if tm.error is None and tm.partitions}
                counts = {t: len(md.topics[t].partitions) for t in self.topic_partitions
                          if t in have}
                return need <= have and counts == self.topic_partitions
            finally:
                c.close()

        wait_until(topics_ready, timeout, 0.2, "broker topics")
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Pipeline(_Proc):
    def __init__(self, tmpdir, cfg_path, name="pipeline"):
        super().__init__(tmpdir, name)
        self.cfg_path = cfg_path
        self.starts = 0

    def start(self):
        self._spawn([SP_BIN, "run", "-c", self.cfg_path])
        self.starts += 1
        time.sleep(0.2)
        if not self.alive():
            raise AssertionError(f"{self.name} exited at start rc={self.returncode()}:\n"
                                 f"{self.log_tail()}")
        return self

    def assert_alive(self):
        if not self.alive():
            raise AssertionError(f"{self.name} died rc={self.returncode()}:\n{self.log_tail()}")

    def terminate_ok(self, timeout=20):
        rc = self.terminate(timeout)
        if rc != 0:
            raise AssertionError(f"{self.name}: SIGTERM exit code {rc} (expected 0):\n"
                                 f"{self.log_tail()}")


# ---------------------------------------------------------------------------
# config and generator


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(obj, indent=0):
    pad = "  " * indent
    out = []
    for k, v in obj.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out.extend(_yaml_lines(v, indent + 1))
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            out.append(f"{pad}{k}: {json.dumps(v)}")  # YAML flow style (JSON)
        elif isinstance(v, list):
            out.append(f"{pad}{k}: [{', '.join(_yaml_scalar(x) for x in v)}]")
        else:
            out.append(f"{pad}{k}: {_yaml_scalar(v)}")
    return out


def write_config(path, ns, bootstrap, redis_port, group_id=None, sizes=("1m", "5m", "1h"),
                 idle_timeout="2s", allowed_lateness="60s", max_out_of_orderness="5s",
                 log_level="info", extra=None):
    cfg = {
        "namespace": ns,
        "kafka": {
            "bootstrap.servers": bootstrap,
            "group.id": group_id or f"sp-{ns}",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        },
        "redis": {"host": "127.0.0.1", "port": redis_port},
        "schemas": {"dir": SCHEMA_DIR},
        "windows": {
            "sizes": list(sizes),
            "idle_timeout": idle_timeout,
            "allowed_lateness": allowed_lateness,
            "max_out_of_orderness": max_out_of_orderness,
        },
        "log": {"level": log_level},
    }
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    with open(path, "w") as f:
        f.write("\n".join(_yaml_lines(cfg)) + "\n")
    return path


def gen(cfg, bootstrap_file, count, seed, start_time, rate=None, duplicates=None, fmt=None,
        extra_args=(), timeout=300, log_path=None):
    argv = [SP_BIN, "gen", "-c", cfg, "--bootstrap-file", bootstrap_file, "--count", str(count),
            "--seed", str(seed), "--start-time", str(start_time), "--speedup", "0"]
    if rate is not None:
        argv += ["--rate", str(rate)]
    if duplicates is not None:
        argv += ["--duplicates", str(duplicates)]
    if fmt:
        argv += ["--format", fmt]
    argv += list(extra_args)
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=SP_SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"===== {' '.join(argv)}\n{out}\n")
    if p.returncode != 0:
        raise AssertionError(f"gen failed rc={p.returncode}: {' '.join(argv)}\n{out[-4000:]}")
    print(f"gen: {count} events in {time.monotonic() - t0:.1f}s", flush=True)
    return out


# ---------------------------------------------------------------------------
# Avro / Confluent framing


def _strip_logical(x):
    if isinstance(x, dict):
        return {k: _strip_logical(v) for k, v in x.items() if k != "logicalType"}
    if isinstance(x, list):
        return [_strip_logical(v) for v in x]
    return x


_schema_cache = {}


def schema_json(stream):
    with open(os.path.join(SCHEMA_DIR, f"{stream}.avsc")) as f:
        return _strip_logical(json.load(f))


def parse_schema(js):
    return avro.schema.parse(json.dumps(js))


def schema_for(stream):
    """Parsed schema (logical types stripped: timestamps stay integers)."""
    if stream not in _schema_cache:
        _schema_cache[stream] = parse_schema(schema_json(stream))
    return _schema_cache[stream]


def avro_body(schema, record):
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def frame(schema_id, body):
    return b"\x00" + int(schema_id).to_bytes(4, "big") + body


def encode(stream, record, schema_id=None):
    """Confluent-framed Avro bytes of record for a stream."""
    sid = STREAM_SCHEMA_ID[stream] if schema_id is None else schema_id
    return frame(sid, avro_body(schema_for(stream), record))


CLICK_DEFAULTS = {"customer_id": None, "product_id": None}
CHECKOUT_DEFAULTS = {"order_id": None, "session_id": None, "customer_id": None,
                     "failure_reason": None, "item_count": 1, "payment_method": "card",
                     "amount_cents": 0, "currency": "USD"}
SUPPORT_DEFAULTS = {"customer_id": None, "order_id": None, "is_bot": False, "csat": None,
                    "nps": None, "ces": None}


def click(event_id, t, typ, session_id, channel, device, country, **kw):
    r = dict(CLICK_DEFAULTS)
    r.update(event_id=event_id, event_time=t, type=typ, session_id=session_id,
             channel=channel, device=device, country=country)
    r.update(kw)
    return r


def checkout(event_id, t, typ, session_id, channel, device, country, **kw):
    r = dict(CHECKOUT_DEFAULTS)
    r.update(event_id=event_id, event_time=t, type=typ, session_id=session_id,
             channel=channel, device=device, country=country)
    r.update(kw)
    return r


class Sender:
    """A confluent_kafka Producer that records where each message landed."""

    def __init__(self, bootstrap):
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3,
                           "enable.idempotence": True})
        self.delivered = []  # (tag, topic, partition, offset, key, value)
        self.errors = []

    def send(self, topic, value, key=None, tag=None, partition=None):
        def cb(err, msg, tag=tag, key=key, value=value):
            if err is not None:
                self.errors.append((tag, err))
            else:
                self.delivered.append((tag, msg.topic(), msg.partition(), msg.offset(), key, value))
        kw = {}
        if partition is not None:
            kw["partition"] = partition
        self.p.produce(topic, value=value, key=key, on_delivery=cb, **kw)
        self.p.poll(0)

    def flush(self, timeout=30):
        left = self.p.flush(timeout)
        if left or self.errors:
            raise AssertionError(f"produce failed: {left} undelivered, errors {self.errors[:5]}")

    def where(self, tag):
        for d in self.delivered:
            if d[0] == tag:
                return d
        raise KeyError(tag)


# ---------------------------------------------------------------------------
# Kafka and Redis observations


def high_watermarks(bootstrap, topics=INPUT_TOPICS):
    """{(topic, partition): high watermark} over every partition of topics."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sp-wm-probe",
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=10)
        out = {}
        for t in topics:
            tm = md.topics.get(t)
            if tm is None or tm.error is not None:
                continue
            for p in tm.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                out[(t, p)] = hi
        return out
    finally:
        c.close()


def offsets_of(r, ns):
    raw = r.hgetall(f"sp:{{{ns}}}:offsets")
    out = {}
    for k, v in raw.items():
        t, _, p = k.rpartition("/")
        out[(t, int(p))] = int(v)
    return out


def caught_up(r, ns, highs):
    offs = offsets_of(r, ns)
    for tp, hi in highs.items():
        if hi > 0 and offs.get(tp, 0) != hi:
            return False
    return True


def wait_caught_up(r, ns, bootstrap, timeout=120, pipeline=None, topics=INPUT_TOPICS):
    """Wait until the offsets hash in Redis equals the high watermark of every
    non-empty partition of the input topics. Returns the high watermarks."""
    highs = high_watermarks(bootstrap, topics)
    total = sum(highs.values())

    def pred():
        if pipeline is not None:
            pipeline.assert_alive()
        return caught_up(r, ns, highs)

    try:
        wait_until(pred, timeout, 0.25, f"pipeline caught up ({total} messages)")
    except AssertionError as e:
        offs = offsets_of(r, ns)
        behind = {f"{t}/{p}": (offs.get((t, p), 0), hi) for (t, p), hi in highs.items()
                  if hi > 0 and offs.get((t, p), 0) != hi}
        raise AssertionError(f"{e}; consumed {sum(offs.values())}/{total}; behind (have, want): "
                             f"{dict(list(behind.items())[:10])}") from None
    return highs


def final_pointer(r, ns, size, family="funnel"):
    v = r.get(f"sp:{{{ns}}}:final:{family}:{size}")
    return None if v is None else int(v)


def wait_all_closed(r, ns, last_event_ms, sizes=("1m", "5m", "1h"), timeout=90, pipeline=None,
                    family="funnel"):
    """Wait until, for every size, the final pointer is at or past the window of
    last_event_ms (so every window holding an event is closed)."""
    def pred():
        if pipeline is not None:
            pipeline.assert_alive()
        for s in sizes:
            fp = final_pointer(r, ns, s, family)
            if fp is None or fp < floor_to(last_event_ms, SIZE_MS[s]):
                return False
        return True

    try:
        wait_until(pred, timeout, 0.25, "all windows closed")
    except AssertionError as e:
        state = {s: final_pointer(r, ns, s, family) for s in sizes}
        wm = r.hget(f"sp:{{{ns}}}:gauges", "watermark_ms")
        raise AssertionError(f"{e}; final pointers {state}, want >= "
                             f"{ {s: floor_to(last_event_ms, SIZE_MS[s]) for s in sizes} }, "
                             f"watermark_ms={wm}, now={now_ms()}") from None


def funnel_windows(r, ns, family="funnel"):
    """{(size, start_ms): {field: value}} of every window hash in Redis."""
    out = {}
    prefix = f"sp:{{{ns}}}:{family}:"
    for key in r.scan_iter(match=prefix + "*", count=1000):
        rest = key[len(prefix):]
        size, _, start = rest.partition(":")
        try:
            out[(size, int(start))] = r.hgetall(key)
        except ValueError:
            continue
    return out


def health(r, ns):
    return r.hgetall(f"sp:{{{ns}}}:health")


def consume_all(bootstrap, topic, timeout=30, min_count=0):
    """Every message of topic, from the beginning, up to the high watermarks
    seen when called (polls up to timeout for at least min_count)."""
    deadline = time.monotonic() + timeout
    while True:
        highs = {tp: hi for tp, hi in high_watermarks(bootstrap, [topic]).items()}
        if sum(highs.values()) >= min_count or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    msgs = []
    todo = {tp: hi for tp, hi in highs.items() if hi > 0}
    if not todo:
        return msgs
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sp-read-{os.getpid()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(t, p, 0) for (t, p) in todo])
        pos = {tp: 0 for tp in todo}
        while any(pos[tp] < todo[tp] for tp in todo):
            if time.monotonic() > deadline + 30:
                raise AssertionError(f"consume {topic}: stuck at {pos} of {todo}")
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                continue
            tp = (m.topic(), m.partition())
            pos[tp] = m.offset() + 1
            msgs.append(m)
    finally:
        c.close()
    return msgs


# ---------------------------------------------------------------------------
# test case base and runner


class SPTestCase(unittest.TestCase):
    """Base class: a temp dir and an ExitStack per class (setUpClass scenarios)
    or per test; on failure, prints the log tails of the processes it ran."""

    _procs = []

    @classmethod
    def make_env(cls):
        cls._stack = contextlib.ExitStack()
        cls.tmp = tempfile.mkdtemp(prefix=f"sp-it-{cls.__name__}-")
        if not os.environ.get("SP_KEEP_TMP"):
            cls._stack.callback(shutil.rmtree, cls.tmp, True)
        else:
            print(f"keeping {cls.tmp}", flush=True)
        cls._procs = []

    @classmethod
    def track(cls, proc):
        cls._procs.append(proc)
        cls._stack.callback(proc.stop)
        return proc

    @classmethod
    def close_env(cls):
        stack = getattr(cls, "_stack", None)
        if stack is not None:
            stack.close()
            cls._stack = None

    @classmethod
    def setUpClass(cls):
        if not (os.path.isfile(SP_BIN) and os.access(SP_BIN, os.X_OK)):
            raise AssertionError(f"storepulse binary not found: SP_BIN={SP_BIN}")
        cls.make_env()
        try:
            cls.scenario()
        except BaseException:
            cls.dump_logs()
            cls.close_env()
            raise

    @classmethod
    def scenario(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.close_env()

    _dumped = False

    @classmethod
    def dump_logs(cls, n=40):
        if cls._dumped:
            return
        cls._dumped = True
        for p in cls._procs:
            print(f"----- {p.name} log tail ({p.log_path}) -----", file=sys.stderr)
            lines = [ln for ln in p.log_tail(400).splitlines()
                     if not re.search(r" (info|debug)\s+(revoked|assigned) ", ln)]
            print("\n".join(lines[-n:]), file=sys.stderr)
            if p.history:
                print(f"----- {p.name} history: {p.history}", file=sys.stderr)

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        r = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            self.dump_logs()
        return r


def main():
    import __main__
    suite = unittest.defaultTestLoader.loadTestsFromModule(__main__)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    # a setUpClass error is one entry in result.errors while its tests never ran
    bad_tests = {id(t) for t, _ in result.failures + result.errors
                 if isinstance(t, unittest.TestCase)}
    class_errors = sum(1 for t, _ in result.errors if not isinstance(t, unittest.TestCase))
    failed = len(bad_tests) + class_errors + len(result.unexpectedSuccesses)
    passed = result.testsRun - len(bad_tests) - len(result.skipped) - len(result.unexpectedSuccesses)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed or (result.testsRun == 0 and not class_errors) else 0)


def fmt_ratio(num, den):
    """A ratio as the pipeline stores it ("%.6g"), or None for a zero denominator."""
    if den == 0:
        return None
    return "%.6g" % (num / den)


def round_half_away(num, den):
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


# ---------------------------------------------------------------------------
# builders and readers for the shipment and support streams, gauges, cohorts

SHIPMENT_DEFAULTS = {"customer_id": None, "order_placed_time": None}


def shipment(event_id, t, typ, shipment_id, order_id, carrier, country, promised, **kw):
    r = dict(SHIPMENT_DEFAULTS)
    r.update(event_id=event_id, event_time=t, type=typ, shipment_id=shipment_id,
             order_id=order_id, carrier=carrier, country=country,
             promised_delivery_time=promised)
    r.update(kw)
    return r


def support(event_id, t, typ, ticket_id, channel, **kw):
    r = dict(SUPPORT_DEFAULTS)
    r.update(event_id=event_id, event_time=t, type=typ, ticket_id=ticket_id, channel=channel)
    r.update(kw)
    return r


def gauges(r, ns):
    return r.hgetall(f"sp:{{{ns}}}:gauges")


def cohort_hashes(r, ns):
    """{"YYYY-MM": {field: value}} of every cohort hash in Redis."""
    out = {}
    prefix = f"sp:{{{ns}}}:cohort:"
    for key in r.scan_iter(match=prefix + "*", count=1000):
        out[key[len(prefix):]] = r.hgetall(key)
    return out


def final_pointers(r, ns, families, sizes):
    """{family: {size: start of sp:{NS}:final:<family>:<size>}} (None if unset)."""
    return {f: {s: final_pointer(r, ns, s, f) for s in sizes} for f in families}


def wait_final_pointers(r, ns, want, timeout=90, pipeline=None):
    """Wait until every final pointer is at or past the wanted window start:
    want = {(family, size): start_ms} (starts computed by the caller, so day
    windows of any windows.timezone work). Returns the pointers seen."""
    def pred():
        if pipeline is not None:
            pipeline.assert_alive()
        for (fam, size), start in want.items():
            fp = final_pointer(r, ns, size, fam)
            if fp is None or fp < start:
                return False
        return True

    try:
        wait_until(pred, timeout, 0.25, "final pointers of every family and size")
    except AssertionError as e:
        state = {f"{fam}:{size}": (final_pointer(r, ns, size, fam), start)
                 for (fam, size), start in want.items()}
        wm = r.hget(f"sp:{{{ns}}}:gauges", "watermark_ms")
        raise AssertionError(f"{e}; (final pointer, wanted) {state}, watermark_ms={wm}, "
                             f"now={now_ms()}") from None
    return {k: final_pointer(r, ns, k[1], k[0]) for k in want}
