"""A deliberately simple, independent reference for the funnel family.

Reads every message of the input topics from the beginning (confluent_kafka,
explicit assignment, no group state), decodes Confluent-framed Avro with the
`avro` package (writer schema = the schema of the framing id) or JSON,
validates, deduplicates and computes every funnel field of every window of
every size. Nothing here is optimized: it is meant to be obviously correct.

Semantics (SPEC §1-§3, funnel):
- messages are processed in event-time order (ties: topic, partition, offset);
  the first copy of an event_id wins, later copies are duplicates;
- an ORDER_PLACED whose order_id was already placed is a duplicate (ignored
  entirely, also for sessions);
- sessions = distinct session_id over clickstream events and checkout events
  that carry one; step sessions by event type; a session's dimension values
  in a window are those of its first event in that window;
- orders / revenue / payments use the event's own dimension values;
- revenue_cents and aov_cents cover store-currency (USD) orders only;
  orders|currency=X and revenue_cents|currency=X for every currency;
- ratios "%.6g", absent for a zero denominator; aov rounds half away from 0.
"""

import io
import json
import time

import avro.io
from confluent_kafka import Consumer, TopicPartition

import harness as H

DIMS = ("channel", "device", "country")
SESSION_STEPS = {
    "PRODUCT_VIEW": "product_view_sessions",
    "ADD_TO_CART": "cart_sessions",
    "CHECKOUT_STARTED": "checkout_sessions",
    "ORDER_PLACED": "order_sessions",
}
SESSION_COUNTERS = ("sessions", "product_view_sessions", "cart_sessions", "checkout_sessions",
                    "order_sessions")
EVENT_COUNTERS = ("orders", "orders_store_currency", "revenue_cents", "payments_submitted",
                  "payments_failed")
COUNTERS = SESSION_COUNTERS + EVENT_COUNTERS
RATIOS = {
    "conversion_rate": ("order_sessions", "sessions"),
    "view_to_cart_rate": ("cart_sessions", "product_view_sessions"),
    "cart_to_checkout_rate": ("checkout_sessions", "cart_sessions"),
    "checkout_to_order_rate": ("order_sessions", "checkout_sessions"),
    "payment_failure_rate": ("payments_failed", "payments_submitted"),
}
AVERAGES = {"aov_cents": ("revenue_cents", "orders_store_currency")}
PER_CURRENCY = ("orders", "revenue_cents")

TOPIC_STREAM = {
    H.TOPIC_CLICKSTREAM: "clickstream",
    H.TOPIC_CHECKOUT: "checkout",
    H.TOPIC_SHIPMENTS: "shipment",
    H.TOPIC_SUPPORT: "support",
}

MIN_TIME = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_ID = 256
MAX_TEXT = 1024

# required (non-nullable, no default) fields per stream, from the schemas
_TEXT_FIELDS = {"failure_reason"}
_NON_STRING = {"event_time", "amount_cents", "item_count", "promised_delivery_time",
               "order_placed_time", "is_bot", "csat", "nps", "ces", "type"}


def _schema_info(stream):
    js = H.schema_json(stream)
    required, enum_syms, strings = [], None, []
    for f in js["fields"]:
        t = f["type"]
        nullable = isinstance(t, list) and "null" in t
        if not nullable and "default" not in f:
            required.append(f["name"])
        if isinstance(t, dict) and t.get("type") == "enum":
            enum_syms = t["symbols"]
        base = [x for x in t if x != "null"][0] if isinstance(t, list) else t
        if base == "string":
            strings.append(f["name"])
    return required, enum_syms, strings


class Rejected(Exception):
    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode(topic, value, fmt="avro"):
    """Decoded record (dict) of one message of topic, or raises Rejected."""
    stream = TOPIC_STREAM[topic]
    if value is None:
        raise Rejected("undecodable", "null value")
    if fmt == "json":
        try:
            rec = json.loads(value.decode("utf-8"))
        except Exception as e:
            raise Rejected("undecodable", str(e))
        if not isinstance(rec, dict):
            raise Rejected("undecodable", "not an object")
    else:
        if len(value) < 5 or value[0] != 0:
            raise Rejected("undecodable", "no Confluent framing")
        sid = int.from_bytes(value[1:5], "big")
        if sid not in H.SCHEMA_IDS:
            raise Rejected("unknown_schema", str(sid))
        if H.SCHEMA_IDS[sid] != stream:
            raise Rejected("unknown_schema", f"schema {sid} on {topic}")
        sc = H.schema_for(stream)
        buf = io.BytesIO(value[5:])
        try:
            rec = avro.io.DatumReader(sc, sc).read(avro.io.BinaryDecoder(buf))
        except Exception as e:
            # an enum index out of range is a decode error for the avro package
            raise Rejected("undecodable", repr(e))
        if buf.tell() != len(value) - 5:
            raise Rejected("undecodable", "trailing bytes")
    validate(stream, rec)
    return rec


def validate(stream, rec):
    required, syms, strings = _schema_info(stream)
    for f in required:
        if rec.get(f) is None:
            raise Rejected("missing_field", f)
    if rec["type"] not in syms:
        raise Rejected("bad_enum", str(rec["type"]))
    for f in strings:
        v = rec.get(f)
        if v is None:
            continue
        if not isinstance(v, str):
            raise Rejected("bad_value", f)
        if len(v.encode("utf-8")) > (MAX_TEXT if f in _TEXT_FIELDS else MAX_ID):
            raise Rejected("string_too_long", f)
    t = rec["event_time"]
    if not isinstance(t, int) or isinstance(t, bool):
        raise Rejected("bad_value", "event_time")
    if t < MIN_TIME or t > H.now_ms() + 86_400_000:
        raise Rejected("bad_timestamp", str(t))
    if stream == "checkout":
        if rec["amount_cents"] < 0:
            raise Rejected("negative_amount", str(rec["amount_cents"]))
    if stream == "support":
        for f, lo, hi in (("csat", 1, 5), ("nps", 0, 10), ("ces", 1, 7)):
            v = rec.get(f)
            if v is not None and not (lo <= v <= hi):
                raise Rejected("bad_value", f)


def read_messages(bootstrap, topics=(H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT), timeout=120):
    """[(topic, partition, offset, key, value)] of every message in topics."""
    highs = {tp: hi for tp, hi in H.high_watermarks(bootstrap, list(topics)).items() if hi > 0}
    out = []
    if not highs:
        return out
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sp-reference",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "queued.min.messages": 100000})
    try:
        c.assign([TopicPartition(t, p, 0) for (t, p) in highs])
        pos = {tp: 0 for tp in highs}
        deadline = time.monotonic() + timeout
        while any(pos[tp] < highs[tp] for tp in highs):
            if time.monotonic() > deadline:
                raise AssertionError(f"reference: reading stuck at {pos} of {highs}")
            for m in c.consume(10000, 1.0):
                if m.error():
                    continue
                tp = (m.topic(), m.partition())
                if m.offset() < pos[tp]:
                    continue
                pos[tp] = m.offset() + 1
                out.append((m.topic(), m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


class Window:
    def __init__(self):
        self.session_dims = {}  # session_id -> {dim: value} (first event in window)
        self.steps = {s: set() for s in SESSION_STEPS.values()}
        self.events = {}  # field -> count (event-level, overall and per dim / currency)

    def add(self, field, n):
        self.events[field] = self.events.get(field, 0) + n


def compute(messages, sizes=("1m", "5m", "1h"), formats=None, exclude=(), store_currency="USD"):
    """Funnel windows from raw messages.

    messages: [(topic, partition, offset, key, value)]
    formats:  {topic: "json"} for JSON topics (default Avro)
    exclude:  set of (topic, partition, offset) to skip (e.g. late events the
              pipeline dead-lettered)
    Returns (windows, stats): windows {(size, start_ms): {field: str}},
    stats {"decoded", "duplicates", "rejected": {reason: n}, "events": [...]}.
    """
    formats = formats or {}
    exclude = set(exclude)
    stats = {"decoded": 0, "duplicates": 0, "rejected": {}, "excluded": 0,
             "min_time": None, "max_time": None}
    events = []
    for (topic, part, off, key, value) in messages:
        if topic not in (H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT):
            continue
        try:
            rec = decode(topic, value, formats.get(topic, "avro"))
        except Rejected as e:
            stats["rejected"][e.reason] = stats["rejected"].get(e.reason, 0) + 1
            continue
        stats["decoded"] += 1
        if (topic, part, off) in exclude:
            stats["excluded"] += 1
            continue
        events.append((rec["event_time"], topic, part, off, TOPIC_STREAM[topic], rec))
    events.sort(key=lambda e: e[:4])

    seen_ids = set()
    placed_orders = set()
    kept = []
    for (t, topic, part, off, stream, rec) in events:
        if rec["event_id"] in seen_ids:
            stats["duplicates"] += 1
            continue
        seen_ids.add(rec["event_id"])
        if stream == "checkout" and rec["type"] == "ORDER_PLACED" and rec.get("order_id") is not None:
            if rec["order_id"] in placed_orders:
                stats["duplicates"] += 1
                continue
            placed_orders.add(rec["order_id"])
        kept.append((t, stream, rec))
    if kept:
        stats["min_time"] = kept[0][0]
        stats["max_time"] = max(k[0] for k in kept)
    stats["kept"] = len(kept)

    result = {}
    for size in sizes:
        size_ms = H.SIZE_MS[size]
        wins = {}
        for (t, stream, rec) in kept:
            start = t - t % size_ms
            w = wins.setdefault(start, Window())
            sid = rec.get("session_id")
            if sid is not None:
                if sid not in w.session_dims:
                    w.session_dims[sid] = {d: rec[d] for d in DIMS}
                step = SESSION_STEPS.get(rec["type"])
                if step:
                    w.steps[step].add(sid)
            if stream != "checkout":
                continue
            dims = [("", None)] + [(d, rec[d]) for d in DIMS]
            typ = rec["type"]
            if typ == "ORDER_PLACED":
                usd = rec["currency"] == store_currency
                for d, v in dims:
                    sfx = f"|{d}={v}" if d else ""
                    w.add("orders" + sfx, 1)
                    if usd:
                        w.add("orders_store_currency" + sfx, 1)
                        w.add("revenue_cents" + sfx, rec["amount_cents"])
                w.add(f"orders|currency={rec['currency']}", 1)
                w.add(f"revenue_cents|currency={rec['currency']}", rec["amount_cents"])
            elif typ in ("PAYMENT_SUBMITTED", "PAYMENT_FAILED"):
                f = "payments_submitted" if typ == "PAYMENT_SUBMITTED" else "payments_failed"
                for d, v in dims:
                    w.add(f + (f"|{d}={v}" if d else ""), 1)
        for start, w in wins.items():
            result[(size, start)] = window_fields(w)
    return result, stats


def window_fields(w):
    counts = {}

    def add(f, n):
        counts[f] = counts.get(f, 0) + n

    for sid, dims in w.session_dims.items():
        add("sessions", 1)
        for d in DIMS:
            add(f"sessions|{d}={dims[d]}", 1)
    for step, sids in w.steps.items():
        for sid in sids:
            add(step, 1)
            for d in DIMS:
                add(f"{step}|{d}={w.session_dims[sid][d]}", 1)
    for f, n in w.events.items():
        add(f, n)

    out = {}
    for c in COUNTERS:
        out[c] = str(counts.get(c, 0))
    for f, n in counts.items():
        if "|" in f and n != 0:
            out[f] = str(n)
    # ratios, overall and per dimension value seen in either operand
    suffixes = {""} | {"|" + f.split("|", 1)[1] for f in counts if "|" in f
                       and not f.split("|", 1)[1].startswith("currency=")}
    for sfx in suffixes:
        for name, (num, den) in RATIOS.items():
            r = H.fmt_ratio(counts.get(num + sfx, 0), counts.get(den + sfx, 0))
            if r is not None:
                out[name + sfx] = r
        for name, (num, den) in AVERAGES.items():
            d = counts.get(den + sfx, 0)
            if d:
                out[name + sfx] = str(H.round_half_away(counts.get(num + sfx, 0), d))
    return out


def classify(field):
    """'counter', 'ratio' or 'unknown' by the part before '|'."""
    base = field.split("|", 1)[0]
    if base in COUNTERS:
        return "counter"
    if base in RATIOS or base in AVERAGES:
        return "ratio"
    return "unknown"


def diff_window(expected, actual):
    """Mismatches between an expected field dict (reference or literal) and a
    Redis hash. Counters: missing == 0. Ratios: must match exactly, absent iff
    expected absent. 'closed' is not compared here. Returns [(field, want, got)]."""
    out = []
    for f in sorted(set(expected) | set(actual)):
        if f == "closed":
            continue
        kind = classify(f)
        want, got = expected.get(f), actual.get(f)
        if kind == "counter":
            try:
                g = int(got) if got is not None else 0
            except ValueError:
                out.append((f, want, got))
                continue
            if int(want or 0) != g:
                out.append((f, want, got))
        elif kind == "ratio":
            if want != got:
                out.append((f, want, got))
        else:
            out.append((f, want, got if got is not None else "<unknown field>"))
    return out


def windows_from_bootstrap(bootstrap, sizes=("1m", "5m", "1h"), formats=None, exclude=()):
    msgs = read_messages(bootstrap)
    return compute(msgs, sizes=sizes, formats=formats, exclude=exclude)


def compare_all(expected, actual, sizes, final_pointers, max_lines=40):
    """Compare reference windows with Redis windows for every size.

    expected: {(size, start): fields} from compute(); actual: the same shape
    from harness.funnel_windows(); final_pointers: {size: start of the newest
    closed window}. Windows holding events must match field by field and be
    closed; windows between the first event window and the final pointer
    that hold no events must exist, closed, with zero counters and no ratios
    (zero-fill); newer (open) windows must hold no counts either.
    Returns (problem_lines, n_problems)."""
    problems = []
    per_field = {}

    def note(msg, field=None):
        problems.append(msg)
        if field is not None:
            base = field.split("|", 1)[0] + ("|" + field.split("|", 1)[1].split("=")[0]
                                              if "|" in field else "")
            per_field[base] = per_field.get(base, 0) + 1

    for size in sizes:
        size_ms = H.SIZE_MS[size]
        exp = {s: f for (sz, s), f in expected.items() if sz == size}
        act = {s: f for (sz, s), f in actual.items() if sz == size}
        if not exp:
            continue
        first, last = min(exp), max(exp)
        fp = final_pointers.get(size)
        if fp is None or fp < last:
            note(f"{size}: final pointer {fp} < last event window {last}")
            fp = last if fp is None else fp
        for s in sorted(act):
            if s < first:
                note(f"{size}:{s}: window before the first event window {first}")
        for s in range(first, fp + 1, size_ms):
            a = act.get(s)
            if a is None:
                note(f"{size}:{s}: missing in Redis"
                     + (" (zero-fill window)" if s not in exp else " (has events)"))
                continue
            if a.get("closed") != "1":
                note(f"{size}:{s}: closed={a.get('closed')!r}, want '1'", "closed")
            want = exp.get(s, {})
            for f, w, g in diff_window(want, a):
                note(f"{size}:{s}: {f}: want {w!r} got {g!r}", f)
        for s in sorted(act):
            if s > fp:
                for f, w, g in diff_window({}, act[s]):
                    note(f"{size}:{s} (open): {f}: want {w!r} got {g!r}", f)
    lines = problems[:max_lines]
    if len(problems) > max_lines:
        lines.append(f"... and {len(problems) - max_lines} more")
    if per_field:
        lines.append("mismatches by field: " + ", ".join(f"{k}={v}" for k, v in
                                                        sorted(per_field.items(),
                                                               key=lambda kv: -kv[1])))
    return lines, len(problems)
