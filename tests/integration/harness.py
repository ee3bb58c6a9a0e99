"""Shared pieces of the StorePulse end-to-end tests.

Every test script is run by ctest as `/usr/bin/python3 tests/integration/test_X.py`
with SP_BIN (the storepulse binary) and SP_SRC (the repo root) in the
environment. The harness starts real processes: redis-server, the
`storepulse broker` mock cluster and `storepulse run`, each with its own free
port and temporary directory, and always cleans them up (also on failure).

Set SP_KEEP_TMP=1 to keep the temporary directories (logs, configs) after a run.

Set SP_VALGRIND=1 to run every `storepulse` process the harness starts (run,
broker, gen, alerts, import-orders, check-config) under valgrind memcheck,
each with its log in <tmpdir>/valgrind/valgrind-<name>-<pid>.log and the
suppressions of tests/valgrind.supp; at the end of each test class the class
fails if a log reports an error or a definite or indirect leak (the log is
printed). Every harness timeout is multiplied by SP_TIMEOUT_SCALE (default 1,
and 5 under valgrind). See docs/RELIABILITY.md, "Valgrind".
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

# valgrind (SP_VALGRIND=1) and the timeout multiplier; unset: no change at all
VALGRIND = os.environ.get("SP_VALGRIND", "") not in ("", "0")
TIMEOUT_SCALE = float(os.environ.get("SP_TIMEOUT_SCALE") or (5 if VALGRIND else 1))
VALGRIND_SUPP = os.path.join(SP_SRC, "tests", "valgrind.supp")

SIZE_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}

# ---------------------------------------------------------------------------
# small utilities


def now_ms():
    return int(time.time() * 1000)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scaled(timeout):
    """A timeout of the harness, times SP_TIMEOUT_SCALE (None stays None)."""
    return None if timeout is None else timeout * TIMEOUT_SCALE


def wait_until(predicate, timeout, interval=0.2, desc="condition"):
    """Poll predicate() until it returns a truthy value; return that value.
    Raises AssertionError naming desc (and the last exception) on timeout.
    timeout is scaled by SP_TIMEOUT_SCALE."""
    timeout = scaled(timeout)
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
# valgrind (SP_VALGRIND=1)

_vg_dir = None  # where the current test class's valgrind logs go


def valgrind_dir():
    """The valgrind log directory of the current test class (SPTestCase.make_env
    sets it; a process-wide one otherwise)."""
    global _vg_dir
    if _vg_dir is None:
        _vg_dir = tempfile.mkdtemp(prefix="sp-it-valgrind-")
    os.makedirs(_vg_dir, exist_ok=True)
    return _vg_dir


def sp_argv(argv, name=None):
    """argv of a process to start: under SP_VALGRIND=1 a storepulse command
    runs under valgrind memcheck, its log named for name (default: the
    subcommand) and the pid. Anything else is returned unchanged."""
    argv = list(argv)
    if not VALGRIND or not argv or argv[0] != SP_BIN:
        return argv
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name or (argv[1] if len(argv) > 1 else "sp"))
    vg = ["valgrind", "--error-exitcode=99", "--leak-check=full",
          "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
          "--track-fds=no", "--num-callers=30",
          f"--log-file={os.path.join(valgrind_dir(), f'valgrind-{name}-%p.log')}"]
    if os.path.exists(VALGRIND_SUPP):
        vg.append(f"--suppressions={VALGRIND_SUPP}")
    return vg + argv


def sp_run(argv, timeout=None, name=None, **kw):
    """subprocess.run of a storepulse command (under valgrind if enabled;
    timeout scaled by SP_TIMEOUT_SCALE)."""
    return subprocess.run(sp_argv(argv, name), timeout=scaled(timeout), **kw)


_VG_ERRORS = re.compile(r"ERROR SUMMARY: ([0-9,]+) errors")
_VG_LOST = re.compile(r"(definitely|indirectly) lost: ([0-9,]+) bytes in ([0-9,]+) blocks")
_VG_ERROR_KINDS = ("Invalid read", "Invalid write", "Invalid free", "Mismatched free",
                   "Conditional jump or move depends", "Use of uninitialised value",
                   "Syscall param", "Source and destination overlap", "Argument 'size'")


def valgrind_problems(d):
    """[(log path, reason)] for each valgrind log under d reporting an error
    or a definite/indirect leak. A log with no summary (the process was
    SIGKILLed) is judged by the errors it reported before it died."""
    out = []
    if not d or not os.path.isdir(d):
        return out
    for fn in sorted(os.listdir(d)):
        if not (fn.startswith("valgrind-") and fn.endswith(".log")):
            continue
        path = os.path.join(d, fn)
        with open(path, errors="replace") as f:
            text = f.read()
        reasons = []
        m = _VG_ERRORS.search(text)
        if m:
            n = int(m.group(1).replace(",", ""))
            if n:
                reasons.append(f"{n} errors")
        else:
            kinds = sorted({k for k in _VG_ERROR_KINDS if f"== {k}" in text})
            if kinds:
                reasons.append("no summary (killed), reported " + ", ".join(kinds))
        for kind, nbytes, blocks in _VG_LOST.findall(text):
            if int(nbytes.replace(",", "")):
                reasons.append(f"{kind} lost {nbytes} bytes in {blocks} blocks")
        if reasons:
            out.append((path, "; ".join(reasons)))
    return out


def valgrind_report(problems, max_chars=20000):
    """The failure text: each bad log, whole (up to max_chars)."""
    parts = []
    for path, why in problems:
        with open(path, errors="replace") as f:
            text = f.read()
        if len(text) > max_chars:
            text = text[:max_chars] + f"\n... ({len(text) - max_chars} more characters)"
        parts.append(f"===== {os.path.basename(path)}: {why}\n{text}")
    return "\n".join(parts)


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
        argv = sp_argv(argv, self.name)
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
        """SIGTERM and wait; returns the exit code (kills on timeout).
        timeout is scaled by SP_TIMEOUT_SCALE."""
        timeout = scaled(timeout)
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
    def __init__(self, tmpdir, partitions=None, cfg=None, name="broker", topic_partitions=None,
                 absent=()):
        """topic_partitions: {topic: n}, topics with partition counts of their own.
        absent: topics missing until created (`--no-topic`, control create-topic)."""
        super().__init__(tmpdir, name)
        self.partitions = partitions
        self.topic_partitions = dict(topic_partitions or {})
        self.absent = list(absent)
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
        for topic in self.absent:
            argv += ["--no-topic", topic]
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
        need = set(INPUT_TOPICS + [TOPIC_DEADLETTER]) - set(self.absent)

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
    p = sp_run(argv, cwd=SP_SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
    timeout = scaled(timeout)
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
        global _vg_dir
        cls._stack = contextlib.ExitStack()
        cls.tmp = tempfile.mkdtemp(prefix=f"sp-it-{cls.__name__}-")
        if os.environ.get("SP_KEEP_TMP"):
            print(f"keeping {cls.tmp}", flush=True)
        cls._procs = []
        cls.vg_dir = _vg_dir = os.path.join(cls.tmp, "valgrind") if VALGRIND else None

    @classmethod
    def track(cls, proc):
        cls._procs.append(proc)
        cls._stack.callback(proc.stop)
        return proc

    @classmethod
    def close_env(cls, check=True):
        """Stop every process, judge the valgrind logs (SP_VALGRIND=1), remove
        the temp dir. With check, a valgrind error or leak fails the class
        (raises); without (setUpClass already failed), it is only printed."""
        global _vg_dir
        stack = getattr(cls, "_stack", None)
        if stack is None:
            return
        cls._stack = None
        report = ""
        try:
            stack.close()
        finally:
            if VALGRIND:
                report = valgrind_report(valgrind_problems(cls.vg_dir))
                _vg_dir = None
                if report and not check:
                    print(report, file=sys.stderr, flush=True)
            if not os.environ.get("SP_KEEP_TMP"):
                shutil.rmtree(cls.tmp, True)
        if report and check:
            raise AssertionError(f"{cls.__name__}: valgrind reported errors or leaks:\n{report}")

    @classmethod
    def setUpClass(cls):
        if not (os.path.isfile(SP_BIN) and os.access(SP_BIN, os.X_OK)):
            raise AssertionError(f"storepulse binary not found: SP_BIN={SP_BIN}")
        cls.make_env()
        try:
            cls.scenario()
        except BaseException:
            cls.dump_logs()
            cls.close_env(check=False)
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
                     if not re.search(r" (info|debug)\s+(\w+: )?(revoked|assigned) ", ln)]
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
    if VALGRIND and _vg_dir:  # storepulse started outside a test class's environment
        problems = valgrind_problems(_vg_dir)
        if problems:
            print(valgrind_report(problems), file=sys.stderr, flush=True)
            failed += 1
        if not os.environ.get("SP_KEEP_TMP"):
            shutil.rmtree(_vg_dir, True)
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


def kafka_committed(bootstrap, group, tps):
    """{(topic, partition): offset} the consumer group committed in Kafka."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(t, p) for (t, p) in tps], timeout=10)
        return {(x.topic, x.partition): x.offset for x in got}
    finally:
        c.close()


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


# ---------------------------------------------------------------------------
# fault matrix (tests/integration/test_fault_*.py, ctest label "faults")
#
# Every case runs the same generated traffic of all four streams through an
# undisturbed reference pipeline (its own Redis and consumer group) and
# through pipelines that suffer the case's faults (another Redis, another
# group), then compares the two Redis instances key by key. The random
# choices of a case (kill points, fault timing, traffic) come from one seed:
# SP_FAULT_SEED in the environment, else the case's default. See
# docs/RELIABILITY.md, "Fault matrix".

import random  # noqa: E402

FAULT_SIZES = ("1m", "5m", "1h")
FAMILIES = ("funnel", "abandonment", "delivery", "retention", "support")
# counters in health that must equal the undisturbed run's
HEALTH_EXACT = ("consumed|", "decoded", "duplicates", "deadletter|", "late_events")
# gauges that depend on more than the data and the watermark
GAUGES_NONDETERMINISTIC = ("lag", "in_flight_entities", "open_windows")

# Kafka ApiKeys and error codes the fault cases inject
API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA = 0, 1, 2, 3
API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR = 8, 9, 10
API_JOIN_GROUP, API_HEARTBEAT, API_SYNC_GROUP = 11, 12, 14
ERR_NOT_LEADER, ERR_REQUEST_TIMED_OUT, ERR_NOT_COORDINATOR = 6, 7, 16
ERR_COORDINATOR_LOAD_IN_PROGRESS, ERR_REBALANCE_IN_PROGRESS = 14, 27
ERR_TRANSPORT = -195  # RD_KAFKA_RESP_ERR__TRANSPORT: the mock broker disconnects


def fault_seed(default):
    """The seed of a fault case: SP_FAULT_SEED if set, else default."""
    v = os.environ.get("SP_FAULT_SEED", "").strip()
    seed = int(v) if v else int(default)
    print(f"fault seed {seed} (SP_FAULT_SEED={v or 'unset'})", flush=True)
    return seed


def pause(proc):
    """SIGSTOP a process (Redis unreachable, an instance frozen)."""
    proc.signal(signal.SIGSTOP)


def resume(proc):
    proc.signal(signal.SIGCONT)


class ControlledBroker(Broker):
    """`storepulse broker --control FIFO`: faults injected while it runs."""

    def __init__(self, tmpdir, partitions=None, cfg=None, name="broker", absent=()):
        super().__init__(tmpdir, partitions=partitions, cfg=cfg, name=name, absent=absent)
        self.control_path = os.path.join(tmpdir, f"{name}.control")
        self.commands = 0

    def start(self, timeout=30):
        # Broker.start builds argv itself: wrap _spawn to add --control
        spawn = self._spawn

        def with_control(argv, env=None):
            return spawn(list(argv) + ["--control", self.control_path], env)

        self._spawn = with_control
        try:
            return super().start(timeout)
        finally:
            del self._spawn

    def control(self, line, timeout=10):
        """Send one command (down ID, up ID, rtt ID MS, errors APIKEY COUNT
        ERRCODE, clear APIKEY, create-topic NAME [PARTITIONS]) and wait for the
        broker to acknowledge it."""
        with open(self.control_path, "w") as f:
            f.write(line.strip() + "\n")
        self.commands += 1
        want = f"broker: control #{self.commands}: "

        def acked():
            with open(self.log_path, errors="replace") as f:
                for ln in f:
                    if want in ln:
                        if ": ok" not in ln:
                            raise AssertionError(f"broker refused {line!r}: {ln.strip()}")
                        return True
            return False

        wait_until(acked, timeout, 0.05, f"broker acknowledging {line!r}")


def fault_config(path, ns, bootstrap, redis_port, group_id, batch_max=500, extra=None):
    """A config for the fault cases: windows 1m/5m/1h, abandonment after 30m,
    and partitions never idle (idle_timeout 1h), so the watermark moves on
    event time only and both runs end at the same watermark."""
    ext = {"pipeline": {"batch_max": batch_max},
           "metrics": {"abandonment": {"abandon_after": "30m"}}}
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(ext.get(k), dict):
            ext[k].update(v)
        else:
            ext[k] = v
    return write_config(path, ns, bootstrap, redis_port, group_id=group_id, sizes=FAULT_SIZES,
                        idle_timeout="1h", extra=ext)


def produce_sentinels(bootstrap, t_end, topics=INPUT_TOPICS, prefix="fm-sentinel"):
    """One valid event at t_end in EVERY partition of the input topics, after
    the generated traffic: with idle_timeout long, the watermark of every run
    ends at exactly t_end - max_out_of_orderness, whatever its history, and
    every window before t_end - 1h - lateness is final. Calls that move the
    watermark again need a prefix of their own (event ids are deduplicated)."""
    highs = high_watermarks(bootstrap, topics)
    s = Sender(bootstrap)
    promised = t_end + 3 * 86_400_000
    for (topic, p) in sorted(highs):
        tag = f"{prefix}-{topic.rsplit('.', 1)[-1]}-{p}"
        if topic == TOPIC_CLICKSTREAM:
            v = encode("clickstream", click(tag, t_end, "PAGE_VIEW", f"{tag}-s", "web", "desktop",
                                            "US"))
        elif topic == TOPIC_CHECKOUT:
            v = encode("checkout", checkout(tag, t_end, "CHECKOUT_STARTED", f"{tag}-s", "web",
                                            "desktop", "US", amount_cents=1000))
        elif topic == TOPIC_SHIPMENTS:
            v = encode("shipment", shipment(tag, t_end, "LABEL_CREATED", f"{tag}-sh", f"{tag}-o",
                                            "DHL", "US", promised))
        elif topic == TOPIC_SUPPORT:
            v = encode("support", support(tag, t_end, "TICKET_OPENED", f"{tag}-t", "email"))
        else:
            continue
        s.send(topic, v, key=tag.encode(), tag=tag, partition=p)
    s.flush()
    return len(highs)


def fault_snapshot(r, ns):
    """Everything of a run that must equal the undisturbed run's:
    {"windows": {(family, size, start): hash}, "cohorts": {month: hash},
     "pointers": {key: value} (final/latest pointers, watermark),
     "offsets": {...}, "wm": {partition: max event time},
     "health": {exact counters}, "gauges": {deterministic gauges},
     "health_all": the whole health hash (not compared)}."""
    pre = f"sp:{{{ns}}}:"
    snap = {"windows": {}, "cohorts": {}, "pointers": {}, "other": {}}
    for key in r.scan_iter(match=pre + "*", count=1000):
        rest = key[len(pre):]
        head, _, tail_ = rest.partition(":")
        if head in FAMILIES:
            size, _, start = tail_.partition(":")
            if start.isdigit():
                snap["windows"][(head, size, int(start))] = r.hgetall(key)
                continue
        if head == "cohort":
            snap["cohorts"][tail_] = r.hgetall(key)
        elif head in ("final", "latest", "watermark"):
            snap["pointers"][rest] = r.get(key)
        elif head in ("offsets", "wm", "health", "gauges", "state", "updates", "alerts"):
            continue
        else:  # anything else: compared by type and content
            t = r.type(key)
            if t == "hash":
                snap["other"][rest] = r.hgetall(key)
            elif t == "string":
                snap["other"][rest] = r.get(key)
            else:
                snap["other"][rest] = f"<{t}>"
    snap["offsets"] = offsets_of(r, ns)
    snap["wm"] = r.hgetall(pre + "wm")
    h = health(r, ns)
    snap["health_all"] = h
    snap["health"] = {k: v for k, v in h.items() if k.startswith(HEALTH_EXACT)}
    snap["gauges"] = {k: v for k, v in gauges(r, ns).items()
                      if not k.startswith(GAUGES_NONDETERMINISTIC)}
    return snap


def diff_snapshots(a, b, limit=None):
    """Human-readable differences between two fault_snapshot()s (a: the
    undisturbed run, b: the disturbed one); [] when equal field by field.
    Every field is compared as bytes: the same traffic must give the same
    strings however it fell into batches (sums are integers, a per-dimension
    counter at 0 is absent -- docs/METRICS.md), so there is no tolerance and
    an absent field differs from "0"."""
    out = []

    def same(va, vb):
        return va == vb

    def cmp_maps(what, ma, mb):
        for k in sorted(set(ma) | set(mb), key=str):
            va, vb = ma.get(k), mb.get(k)
            if va == vb:
                continue
            if isinstance(va, dict) or isinstance(vb, dict):
                va, vb = va or {}, vb or {}
                for f in sorted(set(va) | set(vb)):
                    if not same(va.get(f), vb.get(f)):
                        out.append(f"{what} {k}: {f}: undisturbed={va.get(f)!r} "
                                   f"disturbed={vb.get(f)!r}")
            else:
                out.append(f"{what} {k}: undisturbed={va!r} disturbed={vb!r}")

    # health and offsets first: they say what kind of difference it is
    # (events lost, late, doubled) before the windows say where
    for part in ("health", "offsets", "wm", "pointers", "windows", "cohorts", "other", "gauges"):
        cmp_maps(part, a[part], b[part])
    limit = limit or int(os.environ.get("SP_FAULT_DIFF_LIMIT", "40"))
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def wait_settled(r, ns, highs, watermark, timeout=120, pipelines=(), quiet=2.0):
    """Wait until Redis holds every message of highs (offsets) and the
    watermark gauge is watermark, then until the namespace stops changing
    for `quiet` seconds (timers fired over several batches)."""
    def alive():
        if pipelines and not any(p.alive() for p in pipelines):
            raise AssertionError("no pipeline alive:\n" +
                                 "\n".join(p.log_tail(20) for p in pipelines))

    def pred():
        alive()
        if not caught_up(r, ns, highs):
            return False
        w = r.hget(f"sp:{{{ns}}}:gauges", "watermark_ms")
        return w is not None and int(w) >= watermark

    try:
        wait_until(pred, timeout, 0.25, f"settled at watermark {watermark}")
    except AssertionError as e:
        offs = offsets_of(r, ns)
        raise AssertionError(f"{e}; committed {sum(offs.values())}/{sum(highs.values())}, "
                             f"watermark_ms="
                             f"{r.hget(f'sp:{{{ns}}}:gauges', 'watermark_ms')}") from None
    last = None
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:  # no commit for `quiet` seconds
        alive()
        # (every commit writes gauges; the lease's renewal writes nothing else)
        cur = (sorted(r.hgetall(f"sp:{{{ns}}}:gauges").items()),
               sorted(r.hgetall(f"sp:{{{ns}}}:health").items()), r.dbsize())
        if cur == last:
            return
        last = cur
        time.sleep(quiet)
    raise AssertionError("namespace kept changing")


class FaultCase(SPTestCase):
    highs = None

    """One fault-matrix case. scenario() generates the traffic (seeded,
    all four streams, warm start) and sentinels, runs the undisturbed
    reference pipeline R, calls cls.disturb() -- which runs the disturbed
    pipeline(s) on cls.redis (self.cfg) against the same broker and leaves
    at least one running -- waits for both to settle at the final
    watermark, stops them with SIGTERM and snapshots both Redis instances.

    Subclasses set DEFAULT_SEED and implement disturb(); tests compare with
    test_equal_to_undisturbed_run (inherited) and their own checks."""

    NS = "fault"
    DEFAULT_SEED = 1
    COUNT = 12000
    RATE = 3            # events per second of event time: ~70 min of traffic
    BATCH_MAX = 500     # small batches: many commits for faults to hit
    PHASES = 1          # traffic produced in this many parts (disturb() calls
                        # produce_next() to feed traffic during a fault)
    APPENDONLY = False  # the disturbed run's Redis
    PARTITIONS = None   # broker default (8)
    EXTRA = None        # config of the disturbed run(s)
    REF_AFTER = False   # start the reference only after disturb() (faults of
                        # the shared broker must not touch it)

    @classmethod
    def scenario(cls):
        t0 = time.monotonic()
        cls.seed = fault_seed(cls.DEFAULT_SEED)
        cls.rng = random.Random(cls.seed)
        now = now_ms()
        cls.start_time = floor_to(now - 6 * 3_600_000, 60_000)
        cls.broker = cls.track(ControlledBroker(cls.tmp, partitions=cls.PARTITIONS)).start()
        cls.ref_redis = cls.track(Redis(cls.tmp, name="redis-ref")).start()
        cls.redis = cls.track(Redis(cls.tmp, appendonly=cls.APPENDONLY, name="redis")).start()
        bs = cls.broker.bootstrap
        cls.ref_cfg = fault_config(f"{cls.tmp}/ref.yaml", cls.NS, bs, cls.ref_redis.port,
                                   "sp-fault-ref", cls.BATCH_MAX)
        cls.cfg = fault_config(f"{cls.tmp}/sp.yaml", cls.NS, bs, cls.redis.port, "sp-fault",
                               cls.BATCH_MAX, cls.EXTRA)
        cls.phases_done = 0
        cls.phase_span_ms = int(cls.COUNT / cls.PHASES / cls.RATE * 1000)
        last = cls.start_time + cls.PHASES * cls.phase_span_ms
        # after the last window of every size is final, still in the past
        cls.t_end = floor_to(last, 3_600_000) + 2 * 3_600_000 + 600_000
        if cls.t_end > now - 60_000:
            raise AssertionError("traffic too long for its time span")
        cls.watermark = cls.t_end - 5_000
        cls.produce_next()
        if cls.PHASES == 1:
            cls.finish_traffic()
        print(f"setup {time.monotonic() - t0:.1f}s", flush=True)

        cls.ref = cls.track(Pipeline(cls.tmp, cls.ref_cfg, name="pipeline-ref"))
        if not cls.REF_AFTER:
            cls.ref.start()
        t1 = time.monotonic()
        cls.disturb()
        cls.finish_traffic()
        cls.disturb_s = time.monotonic() - t1
        if cls.REF_AFTER:
            cls.ref.start()
        wait_settled(cls.ref_redis.client, cls.NS, cls.highs, cls.watermark, 120, [cls.ref])
        wait_settled(cls.redis.client, cls.NS, cls.highs, cls.watermark, 120,
                     cls.live_pipelines())
        cls.settled_s = time.monotonic() - t1
        cls.ref_rc = cls.ref.terminate(20)
        cls.final_rcs = {p.name: p.terminate(20) for p in cls.live_pipelines()}
        cls.snap_ref = fault_snapshot(cls.ref_redis.client, cls.NS)
        cls.snap = fault_snapshot(cls.redis.client, cls.NS)
        print(f"seed {cls.seed}: disturbed phase {cls.disturb_s:.1f}s, settled after "
              f"{cls.settled_s:.1f}s, total {time.monotonic() - t0:.1f}s; health "
              f"{ {k: v for k, v in cls.snap['health_all'].items() if not k.startswith(HEALTH_EXACT)} }",
              flush=True)

    @classmethod
    def produce_next(cls):
        """Produce the next phase of the traffic (COUNT / PHASES events of
        all four streams, warm start, seeded), if any is left."""
        i = cls.phases_done
        if i >= cls.PHASES:
            return False
        # --duration: a phase ends before the next one starts. With the
        # count alone a phase ran up to ~100 s of event time into the next
        # one, whose first events then came after later ones on the same
        # partitions -- late or not depending on how far the other
        # partitions had got, so two correct runs could differ.
        gen(cls.ref_cfg, cls.broker.bootstrap_file, cls.COUNT // cls.PHASES,
            cls.seed * 1000 + i, cls.start_time + i * cls.phase_span_ms, rate=cls.RATE,
            extra_args=("--warm-start", "--duration", f"{cls.phase_span_ms}ms"),
            log_path=f"{cls.tmp}/gen.log")
        cls.phases_done += 1
        return True

    @classmethod
    def finish_traffic(cls):
        """The remaining phases, then the sentinels; sets cls.highs/total."""
        if getattr(cls, "highs", None) is not None:
            return
        while cls.produce_next():
            pass
        produce_sentinels(cls.broker.bootstrap, cls.t_end)
        cls.highs = high_watermarks(cls.broker.bootstrap)
        cls.total = sum(cls.highs.values())
        print(f"traffic: {cls.total} messages in {cls.PHASES} phase(s), sentinels at "
              f"{cls.t_end}", flush=True)

    @classmethod
    def produced(cls):
        return sum(high_watermarks(cls.broker.bootstrap).values())

    @classmethod
    def disturb(cls):
        raise NotImplementedError

    @classmethod
    def live_pipelines(cls):
        return [p for p in cls._procs if isinstance(p, Pipeline) and p is not cls.ref
                and p.alive()]

    @classmethod
    def new_pipeline(cls, name="pipeline", cfg=None):
        return cls.track(Pipeline(cls.tmp, cfg or cls.cfg, name=name))

    @classmethod
    def committed(cls, r=None):
        """Messages committed in the disturbed Redis. Waits (up to 15 s)
        while Redis answers BUSY or drops the connection: after a SIGCONT
        a script frozen mid-way counts as running past its time limit."""
        deadline = time.monotonic() + 15
        while True:
            try:
                return sum(offsets_of(r or cls.redis.client, cls.NS).values())
            except (redis_py.exceptions.BusyLoadingError, redis_py.exceptions.ResponseError,
                    redis_py.exceptions.ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @classmethod
    def wait_committed(cls, at_least, timeout=60, pipelines=()):
        """Wait until the disturbed Redis holds at least this many messages."""
        def pred():
            for p in pipelines:
                p.assert_alive()
            return cls.committed() >= at_least
        wait_until(pred, timeout, 0.02, f"{at_least} messages committed")

    def test_equal_to_undisturbed_run(self):
        diffs = diff_snapshots(self.snap_ref, self.snap)
        self.assertEqual(diffs, [], f"seed {self.seed}: the disturbed run differs from the "
                                    f"undisturbed one:\n" + "\n".join(diffs))

    def test_nonvacuous(self):
        fams = {f for (f, _, _) in self.snap_ref["windows"]}
        self.assertEqual(fams, set(FAMILIES), "every family has windows")
        n = sum(int(v) for k, v in self.snap_ref["health"].items() if k.startswith("consumed|"))
        self.assertEqual(n, self.total)
        self.assertTrue(self.snap_ref["cohorts"], "cohorts")

    def test_reference_exit_0(self):
        self.assertEqual(self.ref_rc, 0)

    def test_no_offset_gaps_no_late_events(self):
        # the generator writes no transactions: every offset holds a message,
        # so a gap means a range of messages was skipped; and its traffic is
        # in event-time order (phases included), so a late event would make
        # the comparison depend on timing
        for name, snap in (("reference", self.snap_ref), ("disturbed", self.snap)):
            self.assertNotIn("offset_gaps", snap["health_all"], name)
            self.assertNotIn("late_events", snap["health_all"], name)


# ---------------------------------------------------------------------------
# alerts (tests/integration/test_alerts_*.py)


def kcat_alerts(bootstrap, topic=TOPIC_ALERTS):
    """[(key, value)] of every message on the alert topic, read with kcat (an
    independent consumer), values as text; [] when the topic is empty."""
    p = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f",
                        "%k\t%s\n"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = []
    for line in p.stdout.decode().splitlines():
        if line.strip():
            key, _, val = line.partition("\t")
            out.append((key, val))
    return out


def kcat_json_alerts(bootstrap, topic=TOPIC_ALERTS):
    """[(key, alert)] of a topic of JSON alerts (alerting.format: json)."""
    return [(k, json.loads(v)) for k, v in kcat_alerts(bootstrap, topic)]


def topic_size(bootstrap, topic):
    """Messages on a topic (sum of its partitions' high watermarks; 0 when
    the topic does not exist yet)."""
    return sum(high_watermarks(bootstrap, [topic]).values())


def outbox_len(r, ns):
    return r.hlen(f"sp:{{{ns}}}:alerts:outbox")


def alerts_evaluated_through(r, ns, rule):
    """Start of the newest window the rule was evaluated on (None: none)."""
    v = r.hget(f"sp:{{{ns}}}:alerts:state", rule)
    return None if v is None else int(v)


def rule_lifecycle(rule, values, window_ms):
    """The alert messages docs/ALERTS.md defines for one series of an
    above-rule: values = [(window_start, value)] of consecutive closed
    windows (value None: no decision; while firing it still sends the
    repeat when one is due). Returns [(state, window_start,
    alert_window)], alert_window being the window in the alert_id (the one
    that fired, for FIRING and its repeats; the resolving one for RESOLVED).
    Only `above`, `resolve_below`, `for` and `repeat_every` (event time:
    window ends) are modelled."""
    above = rule["above"]
    resolve = rule.get("resolve_below", above)
    need = rule.get("for", 1)
    every = parse_duration_ms(rule.get("repeat_every", "1h"))
    out, phase, count, fired, last_end = [], "inactive", 0, None, None
    for start, v in values:
        end = start + window_ms
        if v is None:
            if phase == "firing" and every > 0 and end - last_end >= every:
                last_end = end
                out.append(("FIRING", start, fired))
            continue
        bad, good = v > above, v <= resolve
        if phase != "firing":
            if not bad:
                phase, count = "inactive", 0
                continue
            count += 1
            if count < need:
                phase = "pending"
                continue
            phase, fired, last_end = "firing", start, end
            out.append(("FIRING", start, start))
        elif good:
            out.append(("RESOLVED", start, start))
            phase, count = "inactive", 0
        elif every > 0 and end - last_end >= every:
            last_end = end
            out.append(("FIRING", start, fired))
    return out


def parse_duration_ms(d):
    """"90s", "3m", "1h", "2d", "0s" -> milliseconds."""
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", str(d).strip())
    if not m:
        raise ValueError(f"bad duration {d!r}")
    return int(m.group(1)) * unit[m.group(2)]


def rfc3339_ms(ms):
    """Epoch ms as RFC 3339 UTC, whole seconds without a fraction."""
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    return t + ("Z" if ms % 1000 == 0 else f".{ms % 1000:03d}Z")


class HandmadeAlerts(SPTestCase):
    """Hand-made failed payments in consecutive 1-minute windows from T0 (an
    hour boundary two hours ago), for alert rules on funnel.payments_failed
    (a counter: its own sample, 0 when absent). PLAN[i] = {device: failed
    payments in window i}. Windows close on event time only
    (idle_timeout 1h): feed(lo, hi) produces windows [lo, hi) and then one
    event in every partition of the input topics 70 s after window hi-1
    ends, so windows < hi close and window hi stays open for the next feed.
    The expected alerts come from the per-window counts and
    rule_lifecycle()."""

    NS = None
    FORMAT = "json"
    EXTRA = None  # more config
    RULES = [
        {"name": "payment_failures", "metric": "funnel.payments_failed", "window": "1m",
         "above": 2, "resolve_below": 1, "repeat_every": "3m", "severity": "critical",
         "labels": {"team": "payments"}, "summary": "card payments failing"},
        {"name": "payment_failures_by_device", "metric": "funnel.payments_failed",
         "window": "1m", "above": 2, "for": 2, "by": ["device"], "repeat_every": "0s"},
    ]
    # overall 1 1 4 4 3 2 5 3 4 1 0 2 1: payment_failures fires at window 2,
    # is repeated at 5 (2: between the thresholds, 3 min after) and 8, and
    # resolves at 9; by device: mobile fires at 3 (the 2nd bad window) and
    # resolves at 4, desktop fires at 8 and resolves at 9
    PLAN = [{"desktop": 1}, {"mobile": 1}, {"mobile": 3, "desktop": 1}, {"mobile": 4},
            {"mobile": 2, "desktop": 1}, {"mobile": 1, "desktop": 1},
            {"mobile": 3, "desktop": 2}, {"desktop": 3}, {"mobile": 1, "desktop": 3},
            {"desktop": 1}, {}, {"mobile": 1, "desktop": 1}, {"desktop": 1}]

    M = 60_000

    @classmethod
    def setup_env(cls):
        cls.T0 = floor_to(now_ms() - 2 * 3_600_000, 3_600_000)
        cls.redis = cls.track(Redis(cls.tmp)).start()
        cls.broker = cls.track(ControlledBroker(cls.tmp)).start()
        extra = {"alerts": cls.RULES, "alerting": {"format": cls.FORMAT}}
        for k, v in (cls.EXTRA or {}).items():
            extra[k] = {**extra.get(k, {}), **v} if isinstance(v, dict) else v
        cls.cfg = write_config(f"{cls.tmp}/sp.yaml", cls.NS, cls.broker.bootstrap,
                               cls.redis.port, sizes=("1m",), idle_timeout="1h", extra=extra)
        cls.fed = 0

    @classmethod
    def wstart(cls, i):
        return cls.T0 + i * cls.M

    @classmethod
    def feed(cls, hi):
        """Windows [fed, hi) of PLAN, then the events that close them."""
        snd = Sender(cls.broker.bootstrap)
        for i in range(cls.fed, hi):
            n = 0
            for device, k in sorted(cls.PLAN[i].items()):
                for j in range(k):
                    n += 1
                    t, sid = cls.wstart(i) + n * 1000, f"hm-s{i}-{device}-{j}"
                    for typ in ("PAYMENT_SUBMITTED", "PAYMENT_FAILED"):
                        ev = checkout(f"hm-{typ}-{i}-{device}-{j}", t, typ, sid, "web", device,
                                      "US", amount_cents=1000,
                                      failure_reason="card_declined"
                                      if typ == "PAYMENT_FAILED" else None)
                        snd.send(TOPIC_CHECKOUT, encode("checkout", ev), key=sid.encode())
        snd.flush()
        produce_sentinels(cls.broker.bootstrap, cls.wstart(hi) + 70_000, prefix=f"hm-tick{hi}")
        cls.fed = hi

    @classmethod
    def wait_evaluated(cls, hi, pipe, timeout=60):
        """Every rule evaluated windows < hi (and the pipeline caught up)."""
        r = cls.redis.client

        def done():
            pipe.assert_alive()
            return all((alerts_evaluated_through(r, cls.NS, ru["name"]) or -1) >= cls.wstart(hi - 1)
                       for ru in cls.RULES)
        wait_until(done, timeout, 0.2, f"windows < {hi} evaluated")

    @classmethod
    def wait_outbox_empty(cls, pipe, timeout=60):
        def empty():
            pipe.assert_alive()
            return outbox_len(cls.redis.client, cls.NS) == 0
        wait_until(empty, timeout, 0.2, "the outbox drained")

    @classmethod
    def series(cls, rule, hi):
        """{dimension or None: [(window_start, value)]} of windows [0, hi)
        for a rule on funnel.payments_failed: overall, or per device from
        the first window the device had failures in (afterwards a window
        without any counts 0)."""
        if not rule.get("by"):
            return {None: [(cls.wstart(i), sum(cls.PLAN[i].values())) for i in range(hi)]}
        assert rule["by"] == ["device"]
        out = {}
        for i in range(hi):
            for d in cls.PLAN[i]:
                out.setdefault(f"device={d}", [])
            for d, vals in out.items():
                vals.append((cls.wstart(i), cls.PLAN[i].get(d.partition("=")[2], 0)))
        return out

    @classmethod
    def expected(cls, hi):
        """Sorted [(rule, dimension, state, window_start, alert window)] of
        windows [0, hi)."""
        out = []
        for ru in cls.RULES:
            for dim, vals in cls.series(ru, hi).items():
                out += [(ru["name"], dim) + x for x in rule_lifecycle(ru, vals, cls.M)]
        return sorted(out, key=str)


def alert_transitions(alerts):
    """Sorted [(rule, dimension, state, window_start, alert window)] of JSON
    alerts, the alert window read from the alert_id (checked against the
    fingerprint and state)."""
    out = []
    for a in alerts:
        fp, state, w = a["alert_id"].split(":")
        assert (fp, state) == (a["fingerprint"], a["state"]), a
        out.append((a["rule"], a["dimension"], a["state"], a["window_start"], int(w)))
    return sorted(out, key=str)


def rule_window_value(rule, h, dim, sample_field=None):
    """The value of a rule's metric in the window hash h for the dimension
    dim ("carrier=dhl"; "" overall), as docs/ALERTS.md defines it, or None
    when the window decides nothing: a ratio absent (denominator 0), a
    `<hist>_mean` without count, a sample below min_samples. The sample is
    the field sample_field (a ratio's denominator), the histogram's count,
    or the counter itself."""
    field = rule["metric"].split(".", 1)[1]
    sfx = f"|{dim}" if dim else ""
    if field.endswith("_mean"):
        base = field[:-len("_mean")]
        n = float(h.get(f"{base}_count{sfx}", 0))
        if n <= 0:
            return None
        unit = next((u for x, u in (("_seconds", 1000), ("_minutes", 60_000),
                                    ("_hours", 3_600_000)) if base.endswith(x)), 1)
        v = int(h.get(f"{base}_sum_ms{sfx}", 0)) / n / unit
    else:
        raw = h.get(field + sfx)
        if raw is None:
            return None
        v = float(raw)
        n = float(h.get(sample_field + sfx, 0)) if sample_field else v
    return v if n >= rule.get("min_samples", 0) else None


def expected_alerts_of_windows(rule, windows, window_ms, sample_field=None):
    """Sorted [(rule, dimension, state, window_start, alert window)] that an
    above-rule must emit for the closed windows {start: hash} (consecutive),
    per dimension value of its `by` (or overall), from rule_window_value and
    rule_lifecycle."""
    field = rule["metric"].split(".", 1)[1]
    scan = field[:-len("_mean")] + "_count" if field.endswith("_mean") else field
    by = rule.get("by") or []
    dims = {""} if not by else {
        k.split("|", 1)[1] for h in windows.values() for k in h
        if k.startswith(scan + "|") and k.split("|", 1)[1].split("=")[0] in by}
    out = []
    for dim in sorted(dims):
        vals = [(s, rule_window_value(rule, windows[s], dim, sample_field))
                for s in sorted(windows)]
        out += [(rule["name"], dim or None) + x for x in rule_lifecycle(rule, vals, window_ms)]
    return sorted(out, key=str)
