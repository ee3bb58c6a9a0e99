"""A deliberately simple, independent reference for every metric family.

It implements docs/METRICS.md (and SPEC §1-§4), not the C code. Nothing here
is optimized: it is meant to be obviously correct. Two layers:

1. Reading and decoding (Kafka side): `read_messages` / `read_all_messages`
   return raw messages [(topic, partition, offset, key, value)];
   `decode_messages` turns them into *records*: dicts with the event's own
   fields plus `stream` (clickstream, checkout, shipment, support), `topic`,
   `partition` and `offset`. Confluent-framed Avro is decoded with the `avro`
   package (writer schema = the schema of the framing id), JSON topics with
   `json`; records are validated like the pipeline's dead-letter rules.
2. Computing (no Kafka, no Redis): `compute_all(records, ...)` returns a
   `Result` with every window hash of every family, the gauges at a final
   watermark, the cohort hashes and health expectations. `record()` builds
   a record by hand (tests, self-check).

API
---
compute_all(records, sizes=("1m", "5m", "1h"), tz="UTC", watermark=None,
            families=FAMILIES, imported_orders=(), **cfg) -> Result
    cfg (keyword, defaults in DEFAULTS): abandon_after_ms, dispatch_sla_ms,
    at_risk_horizon_ms, retention_horizon_ms, shipment_ttl_ms,
    max_dimension_values, store_currency, allowed_lateness_ms,
    dims={family: (dim, ...)}.
    watermark: the final watermark W (ms); None means "infinitely far": every
    abandonment deadline has passed and `Result.gauges` is None.
Result.windows    {family: {(size, start_ms): {field: str}}}
Result.quantiles  {family: {(size, start_ms): {"<name>_p50": exact float}}}
                  (exact nearest-rank quantiles of the raw values)
Result.cohorts    {"YYYY-MM": {field: str}}
Result.gauges     {gauge field: int} at `watermark` (None without one)
Result.gauges_at(W) the gauges at another watermark W
Result.stats      {"decoded", "decoded_by_stream", "kept", "duplicates",
                   "duplicates_by_kind", "rejected", "excluded", "min_time",
                   "max_time"} ("duplicates" is what health `duplicates`
                   must show: event_id repeats + entity-fact repeats)
Result.final_pointer(family, size, W) the newest window start that must be
                  closed at watermark W (None if none)
compute_from_messages(messages, formats=None, exclude=(), **kw) -> Result
gauges(records, W, **cfg) -> {gauge: int}
compare_family(family, expected, actual, sizes, final_pointers,
               quantiles=None, require_all_closed=True) -> (lines, n)
    expected = Result.windows[family], actual = harness.funnel_windows(r, ns,
    family), final_pointers = {size: start of sp:{NS}:final:<family>:<size>}.
compare_gauges(expected, actual) / compare_cohorts(expected, actual) ->
    (lines, n)
diff_window(expected, actual, family="funnel", quantiles=None) ->
    [(field, want, got)]
Legacy funnel API (unchanged behaviour): compute(messages, sizes, formats,
    exclude, store_currency) -> (funnel windows, stats), compare_all(...),
    classify(field), windows_from_bootstrap(...).

Semantics and the choices made where docs/METRICS.md leaves room
--------------------------------------------------------------------
Processing order. Records are processed in event-time order, ties by
(stream, partition, offset) (the stream order equals the default topic
order). The first copy of an event_id wins (one id set across all four
streams); later copies are duplicates. Entity duplicates (counted in health
`duplicates`, applied to no family at all): ORDER_PLACED of an order_id
already placed, DELIVERED / RETURNED of a shipment_id already delivered /
returned, TICKET_OPENED / SURVEY_RESPONSE of a ticket_id already opened /
surveyed, and TICKET_RESOLVED of a ticket that is resolved (not reopened
since; the resolved flag followed in this order). "First" is the first in
this order: this equals the pipeline's arrival order when entity duplicates
are re-sends (same time) or arrive in event-time order. A second DISPATCHED
is not a duplicate: it simply counts nothing.

Windows. Sizes below a day are aligned to the UTC epoch; "1d" starts at local
midnight of `tz` (zoneinfo; 23/25-hour days on DST changes; a midnight that
does not exist starts the day at the first existing instant). Multi-day sizes
are not supported. For every size, the windows that exist are every window
from the first to the last window holding a kept event of any stream, for
every family (a family's hash exists with its overall counters at 0 in a
window that only other streams touched). Windows after the last event
window up to the final pointer are zero-fill windows (compare_family).
Per-dimension fields are kept only when non-zero; overall counters always.

Dimension cap. At most max_dimension_values values per (family, window,
dimension), first come in the processing order above, the rest under
`__other__`. A value is admitted when a field is first counted with it (a
cart that later moves does not keep a value admitted in its old window).
Funnel currencies (`orders|currency=X`) are capped the same way (the cap
exists so that a hostile producer cannot explode Redis).

funnel: as before (see compute()): session-level counts take the dims of the
session's first event in the window, event-level counts the event's own.

abandonment: per session_id one cart = the ADD_TO_CART with the smallest
(event_time, stream, partition, offset), in the window of its time with its
channel/device; deadline = cart time + abandon_after. Converted iff a
(non-duplicate) ORDER_PLACED with the same session_id and event_time <
deadline exists; the definition has no lower bound, so an order placed
before the cart also converts it. Otherwise abandoned if deadline <= W,
else pending. Same for CHECKOUT_STARTED (checkouts without session_id are
not tracked). Orders without session_id join nothing. All corrections are
assumed to land (health `abandonment_corrections_dropped` = 0), which holds
for traffic within the watermark when abandon_after is a multiple of the
smallest size. Closing: window_end + abandon_after + allowed_lateness.
Gauges in_flight|kind=cart / kind=checkout = pending ones at W.

delivery: first DELIVERED (window and carrier/country of that event):
`delivered`, `delivered_late` if event_time > its promised_delivery_time,
`delay_minutes` = (t - promised) / 60000 for late ones,
`delivery_time_hours` = (t - order_placed_time) / 3600000 when set. First
DISPATCHED: `dispatched`, `dispatch_latency_hours` when order_placed_time is
set, `dispatch_sla_breaches` when (t - order_placed_time) > dispatch_sla (not
counted without order_placed_time). Every DELIVERY_FAILED: `delivery_failed`.
First RETURNED: `returned`. A DELIVERED after a RETURNED still counts.
Gauges at W over every shipment (all non-duplicate events, also those with
event_time > W): in flight = no DELIVERED and no RETURNED; promised = that
of its latest event (event-time order); given up (left out) when W >=
max(last event time, promised) + shipment_ttl; overdue_in_flight: promised
< W; at_risk: no OUT_FOR_DELIVERY event at all and W <= promised < W +
at_risk_horizon.

retention: per window, per customer_id with an ORDER_PLACED in it: f = the
customer's earliest order time in the window; channel of its first order
there in processing order, which is that same earliest order (docs: arrival
order; equal for traffic that arrives in event-time order per customer);
returning iff the customer has an order (any ORDER_PLACED of the run or an
imported order) with time in [f - horizon, f); new otherwise. guest_orders:
every ORDER_PLACED without customer_id (or with an empty one), with its own
channel. A customer's orders are identified by their times (two orders at the
same millisecond are one time: this is the import's idempotency rule).
Imported orders (`imported_orders` = [(customer_id, time_ms)]) are assumed
imported before the traffic. Cohorts: month (in tz) of the customer's earliest order time;
`customers`; `active_m<k>` (k = 1..12) customers with an order time in the
k-th calendar month after it; `retained_<N>d`: an order time in
(first, first + N days] (both ends as written: "another" order, "at most").
No `active_m0` field (m0 is `customers`).

support: per ticket_id. opened = the first TICKET_OPENED (time o, its
window and channel). Resolved/reopened state machine over the ticket's
events in processing order: TICKET_RESOLVED of a not-resolved ticket counts
(`tickets_resolved`, and `resolution_seconds` = (t - o) / 1000 when the
ticket has an opening with o <= t); TICKET_REOPENED of a resolved ticket
counts. A resolution needs no opening to be counted. frt_seconds: the first
human AGENT_REPLIED (is_bot false) with time >= o ("first human reply after
the opening", SPEC §3; a reply with the same time counts, replies earlier
than the opening are ignored), in the window and with the channel of that
reply. Survey: the first SURVEY_RESPONSE of the ticket; each of csat / nps /
ces counted only when present; the helper counter `nps_net` = promoters -
detractors (the stored numerator of nps). Bot: a ticket with a bot reply
(time b = its earliest bot reply) is decided once: handed off at the first
human reply with time > b (window/channel of that reply: bot_tickets +
bot_handoffs), or not handed off at a counted TICKET_RESOLVED that comes after a bot reply and
before any human reply (window/channel of the resolution: bot_tickets only).
Every per-event count takes the channel of the event that makes it. Gauge
in_flight|kind=ticket: tickets with an opening whose final state is not
resolved.

Histograms (aggregators/hist.h): bucket i = ceil(log(v) / log(g)), g = (1 +
0.01) / (1 - 0.01), clamped to [-1500, 1500], values <= 0 in "bz". Fields
`<name>:b<i>`, `<name>_count`, `<name>_sum_ms` (the exact sum in milliseconds,
an integer, compared exactly like a counter), percentiles `<name>_p50/_p90/_p99` by
nearest rank (rank = ceil(q * n), exact arithmetic) on the bucket counts, value
2 g^i / (g + 1) (0 for "bz"); the pipeline stores them as "%.6g" strings, so
they are compared with the bucket value formatted "%.6g" (or within a relative
5e-6 of it) and also checked within 1 % of the exact nearest-rank quantile of
the raw values.
Percentiles are absent when the count is 0 (like ratios with a zero
denominator). Per dimension value only `_count` and `_sum_ms`.

Ratios "%.6g" of scale * num / den (Python ints, one correctly rounded
division), absent for den = 0: csat = 100 * satisfied / responses, nps = 100 *
nps_net / responses (nps_net = promoters - detractors), ces = ces_sum /
responses.

Zero-fill windows (no contribution of the family) must exist once closed and
carry the family's plain overall counters (explicitly 0); histogram _count /
_sum_ms may be missing there (missing == 0 for every counter elsewhere).
A per-dimension counter (`<field>|<dim>=<value>`) at 0 is absent, never
"0" (docs/METRICS.md).
"""

import datetime as _dt
import io
import json
import math
import re
import time
import zoneinfo
from fractions import Fraction

import avro.io
from confluent_kafka import Consumer, TopicPartition

import harness as H

# ---------------------------------------------------------------------------
# family definitions

FAMILIES = ("funnel", "abandonment", "delivery", "retention", "support")
FAMILY_DIMS = {
    "funnel": ("channel", "device", "country"),
    "abandonment": ("channel", "device"),
    "delivery": ("carrier", "country"),
    "retention": ("channel",),
    "support": ("channel",),
}
DAY_MS = 86_400_000
DEFAULTS = {
    "abandon_after_ms": 3_600_000,
    "dispatch_sla_ms": DAY_MS,
    "at_risk_horizon_ms": DAY_MS,
    "retention_horizon_ms": 365 * DAY_MS,
    "shipment_ttl_ms": 60 * DAY_MS,
    "max_dimension_values": 64,
    "store_currency": "USD",
    "allowed_lateness_ms": 60_000,
}
OTHER = "__other__"

DIMS = FAMILY_DIMS["funnel"]  # legacy name
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


class Spec:
    """counters: plain overall counters (always written, zero-fill);
    hists: histogram names; ratios: name -> f(get) = (numerator, denominator,
    scale) over the window's integer counters; averages: name -> (num, den)
    rounded half away from zero."""

    def __init__(self, counters, hists=(), ratios=None, averages=None):
        self.counters = tuple(counters)
        self.hists = tuple(hists)
        self.ratios = ratios or {}
        self.averages = averages or {}


def _ratio(num, den):
    return lambda g: (g(num), g(den), 1)


SPECS = {
    "funnel": Spec(COUNTERS,
                   ratios={n: _ratio(a, b) for n, (a, b) in RATIOS.items()},
                   averages=AVERAGES),
    "abandonment": Spec(
        ("carts", "carts_converted", "carts_abandoned", "carts_pending",
         "checkouts", "checkouts_converted", "checkouts_abandoned", "checkouts_pending"),
        ratios={
            "cart_abandonment_rate": lambda g: (g("carts_abandoned"),
                                                g("carts_abandoned") + g("carts_converted"), 1),
            "checkout_abandonment_rate": lambda g: (
                g("checkouts_abandoned"), g("checkouts_abandoned") + g("checkouts_converted"), 1),
        }),
    "delivery": Spec(
        ("delivered", "delivered_late", "dispatched", "dispatch_sla_breaches", "delivery_failed",
         "returned"),
        hists=("delay_minutes", "delivery_time_hours", "dispatch_latency_hours"),
        ratios={"delivery_delay_rate": _ratio("delivered_late", "delivered")}),
    "retention": Spec(
        ("ordering_customers", "returning_customers", "new_customers", "guest_orders"),
        ratios={"repeat_purchase_rate": _ratio("returning_customers", "ordering_customers")}),
    "support": Spec(
        ("tickets_opened", "tickets_resolved", "tickets_reopened", "csat_responses",
         "csat_satisfied", "nps_responses", "nps_promoters", "nps_detractors", "nps_net",
         "ces_responses", "ces_sum", "bot_tickets", "bot_handoffs"),
        hists=("frt_seconds", "resolution_seconds"),
        ratios={
            "reopen_rate": _ratio("tickets_reopened", "tickets_resolved"),
            "bot_handoff_rate": _ratio("bot_handoffs", "bot_tickets"),
            "csat": lambda g: (g("csat_satisfied"), g("csat_responses"), 100),
            "nps": lambda g: (g("nps_net"), g("nps_responses"), 100),
            "ces": lambda g: (g("ces_sum"), g("ces_responses"), 1),
        }),
}
PERCENTILES = (("p50", Fraction(50, 100)), ("p90", Fraction(90, 100)), ("p99", Fraction(99, 100)))

GAUGE_FIELDS = ("overdue_in_flight", "at_risk", "in_flight|kind=shipment", "in_flight|kind=cart",
                "in_flight|kind=checkout", "in_flight|kind=ticket")
COHORT_FIELDS = (("customers",) + tuple(f"active_m{k}" for k in range(1, 13))
                 + ("retained_30d", "retained_60d", "retained_90d"))

TOPIC_STREAM = {
    H.TOPIC_CLICKSTREAM: "clickstream",
    H.TOPIC_CHECKOUT: "checkout",
    H.TOPIC_SHIPMENTS: "shipment",
    H.TOPIC_SUPPORT: "support",
}
STREAM_TOPIC = {v: k for k, v in TOPIC_STREAM.items()}

MIN_TIME = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_ID = 256
MAX_TEXT = 1024

# required (non-nullable, no default) fields per stream, from the schemas
_TEXT_FIELDS = {"failure_reason"}
_NON_STRING = {"event_time", "amount_cents", "item_count", "promised_delivery_time",
               "order_placed_time", "is_bot", "csat", "nps", "ces", "type"}


# ---------------------------------------------------------------------------
# histogram (reimplemented from the documentation in aggregators/hist.h)

HIST_REL_ERR = 0.01
HIST_G = (1 + HIST_REL_ERR) / (1 - HIST_REL_ERR)
HIST_MIN_BUCKET = -1500
HIST_MAX_BUCKET = 1500
HIST_ZERO = "z"


def hist_index(v):
    """Bucket of value v: HIST_ZERO for v <= 0, else ceil(log v / log g) clamped."""
    v = float(v)
    if v <= 0:
        return HIST_ZERO
    i = math.ceil(math.log(v) / math.log(HIST_G))
    return max(HIST_MIN_BUCKET, min(HIST_MAX_BUCKET, i))


def hist_value(idx):
    """Representative value of a bucket: 2 g^i / (g + 1), 0 for the zero bucket."""
    if idx == HIST_ZERO:
        return 0.0
    return 2 * HIST_G ** idx / (HIST_G + 1)


def hist_field(name, idx):
    return f"{name}:b{idx}"


def parse_hist_field(field):
    """(name, idx) of a '<name>:b<i>' / '<name>:bz' field, or None."""
    m = re.fullmatch(r"(.+):b(z|-?\d+)", field)
    if not m:
        return None
    return m.group(1), (HIST_ZERO if m.group(2) == "z" else int(m.group(2)))


def _rank(q, n):
    """Nearest rank (1-based) of quantile q (a Fraction) among n values."""
    return max(1, math.ceil(q * n))


def hist_quantile(buckets, q):
    """Nearest-rank quantile q over {idx: count}: the value of the bucket that
    holds rank ceil(q n) in value order. None if empty."""
    n = sum(buckets.values())
    if n == 0:
        return None
    rank = _rank(Fraction(q), n)
    order = sorted(buckets, key=lambda i: (-math.inf if i == HIST_ZERO else i))
    seen = 0
    for i in order:
        seen += buckets[i]
        if seen >= rank:
            return hist_value(i)
    raise AssertionError("unreachable")


def exact_quantile(values, q):
    """Nearest-rank quantile of raw values (None if none)."""
    if not values:
        return None
    s = sorted(values)
    return float(s[_rank(Fraction(q), len(s)) - 1])


# ---------------------------------------------------------------------------
# windows


_SIZE_RE = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}


def parse_size(size):
    m = _SIZE_RE.fullmatch(size)
    if not m:
        raise ValueError(f"bad window size {size!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


class Windows:
    """Window starts and ends for sizes: below a day aligned to the UTC epoch;
    "1d" from local midnight of tz to the next local midnight."""

    def __init__(self, tz="UTC"):
        self.tzname = tz
        self.tz = zoneinfo.ZoneInfo(tz)

    def _is_day(self, size):
        ms = parse_size(size)
        if ms >= DAY_MS:
            if ms != DAY_MS:
                raise ValueError(f"multi-day window size {size!r} is not supported")
            return True
        return False

    def local_date(self, t):
        return _dt.datetime.fromtimestamp(t / 1000, self.tz).date()

    def midnight(self, d):
        """First instant (ms) of local date d."""
        guess = _dt.datetime(d.year, d.month, d.day, tzinfo=self.tz)
        ms = int(guess.astimezone(_dt.timezone.utc).timestamp()) * 1000
        # fold=0 for a non-existent midnight gives the transition instant; make
        # sure the result is the first instant whose local date is d
        while self.local_date(ms) < d:
            ms += 60_000
        while self.local_date(ms - 1) >= d:
            ms -= 60_000
        return ms

    def start(self, size, t):
        if self._is_day(size):
            return self.midnight(self.local_date(t))
        ms = parse_size(size)
        return t - t % ms

    def end(self, size, start):
        if self._is_day(size):
            return self.midnight(self.local_date(start) + _dt.timedelta(days=1))
        return start + parse_size(size)

    def span(self, size, first, last):
        """Every window start from first to last (inclusive)."""
        out = []
        s = first
        while s <= last:
            out.append(s)
            s = self.end(size, s)
        return out

    def month(self, t):
        d = self.local_date(t)
        return d.year, d.month


# ---------------------------------------------------------------------------
# decoding


_SCHEMA_JSON = {}


def _schema_json(stream):
    if stream not in _SCHEMA_JSON:
        _SCHEMA_JSON[stream] = H.schema_json(stream)
    return _SCHEMA_JSON[stream]


def _schema_info(stream):
    js = _schema_json(stream)
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


def _fill_defaults(stream, rec):
    """Schema defaults for fields a JSON payload left out (nullable -> None)."""
    for f in _schema_json(stream)["fields"]:
        if f["name"] not in rec:
            if "default" in f:
                rec[f["name"]] = f["default"]
            elif isinstance(f["type"], list) and "null" in f["type"]:
                rec[f["name"]] = None
    return rec


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


def read_all_messages(bootstrap, timeout=120):
    """Every message of the four input topics."""
    return read_messages(bootstrap, topics=tuple(H.INPUT_TOPICS), timeout=timeout)


def decode_messages(messages, formats=None, exclude=(), topics=None):
    """Records of raw messages [(topic, partition, offset, key, value)].

    formats: {topic: "json"} (default Avro); exclude: {(topic, partition,
    offset)} to leave out after decoding (e.g. events the pipeline
    dead-lettered as late); topics: only these topics (default all four).
    Returns (records, stats) with stats "decoded", "decoded_by_stream",
    "rejected" {reason: n}, "excluded"."""
    formats = formats or {}
    exclude = set(exclude)
    stats = {"decoded": 0, "decoded_by_stream": {}, "rejected": {}, "excluded": 0}
    records = []
    for (topic, part, off, key, value) in messages:
        if topic not in TOPIC_STREAM or (topics is not None and topic not in topics):
            continue
        stream = TOPIC_STREAM[topic]
        try:
            rec = decode(topic, value, formats.get(topic, "avro"))
        except Rejected as e:
            stats["rejected"][e.reason] = stats["rejected"].get(e.reason, 0) + 1
            continue
        stats["decoded"] += 1
        stats["decoded_by_stream"][stream] = stats["decoded_by_stream"].get(stream, 0) + 1
        if (topic, part, off) in exclude:
            stats["excluded"] += 1
            continue
        records.append(record(stream, _fill_defaults(stream, dict(rec)), part, off, topic))
    return records, stats


def record(stream, fields, partition=0, offset=0, topic=None):
    """A record: the event's fields plus stream, topic, partition, offset."""
    r = dict(fields)
    r.update(stream=stream, topic=topic or STREAM_TOPIC[stream], partition=partition,
             offset=offset)
    if stream == "support" and r.get("is_bot") is None:
        r["is_bot"] = False
    return r


def records_of(stream_and_events):
    """Records of [(stream, event dict)] (partition 0, offsets in list order)."""
    return [record(s, e, 0, i) for i, (s, e) in enumerate(stream_and_events)]


# ---------------------------------------------------------------------------
# ordering and deduplication


def _key(r):
    return (r["event_time"], r["stream"], r.get("partition", 0), r.get("offset", 0))


def _entity_fact(r):
    """The entity key of a business fact counted once per entity, or None."""
    s, typ = r["stream"], r["type"]
    if s == "checkout" and typ == "ORDER_PLACED" and r.get("order_id") is not None:
        return ("order_placed", r["order_id"])
    if s == "shipment" and typ in ("DELIVERED", "RETURNED"):
        return (typ.lower(), r["shipment_id"])
    if s == "support" and typ in ("TICKET_OPENED", "SURVEY_RESPONSE"):
        return (typ.lower(), r["ticket_id"])
    return None


def prepare(records):
    """Kept records in processing order, and duplicate statistics.

    Besides the once-per-entity facts of _entity_fact, a TICKET_RESOLVED of
    a ticket that is resolved (and not reopened since) is a duplicate fact
    ("ticket_resolved"): the ticket's resolved flag is followed in
    processing order (TICKET_RESOLVED sets it, TICKET_REOPENED clears it)."""
    events = sorted(records, key=_key)
    seen_ids, facts = set(), set()
    resolved = set()  # ticket_ids resolved and not reopened since
    kept = []
    dups = {}
    for r in events:
        if r["event_id"] in seen_ids:
            dups["event_id"] = dups.get("event_id", 0) + 1
            continue
        seen_ids.add(r["event_id"])
        fact = _entity_fact(r)
        if fact is not None:
            if fact in facts:
                dups[fact[0]] = dups.get(fact[0], 0) + 1
                continue
            facts.add(fact)
        if r["stream"] == "support":
            if r["type"] == "TICKET_RESOLVED":
                if r["ticket_id"] in resolved:
                    dups["ticket_resolved"] = dups.get("ticket_resolved", 0) + 1
                    continue
                resolved.add(r["ticket_id"])
            elif r["type"] == "TICKET_REOPENED":
                resolved.discard(r["ticket_id"])
        kept.append(r)
    return kept, dups


# ---------------------------------------------------------------------------
# per-window accumulation


class Acc:
    """Counters, sums and raw histogram values of one family's window, with
    the per-dimension value tables (cap, first come)."""

    def __init__(self, dims, cap):
        self.dims = dims
        self.cap = cap
        self.tables = {}
        self.counts = {}
        self.sums = {}
        self.values = {}
        self.touched = False
        self.extra = {}

    def value(self, dim, v):
        t = self.tables.setdefault(dim, [])
        if v in t:
            return v
        if len(t) < self.cap:
            t.append(v)
            return v
        return OTHER

    def map(self, ev):
        """{dim: capped value} of an event's (or a dict's) dimension values."""
        return {d: self.value(d, ev[d]) for d in self.dims if ev.get(d) is not None}

    def add(self, field, n, mapped):
        self.touched = True
        self.counts[field] = self.counts.get(field, 0) + n
        for d, v in mapped.items():
            f = f"{field}|{d}={v}"
            self.counts[f] = self.counts.get(f, 0) + n

    def observe(self, name, value, mapped):
        self.values.setdefault(name, []).append(value)
        self.add(name + "_count", 1, mapped)
        ms = value * hist_unit_ms(name)
        assert ms.denominator == 1, (name, value)
        for f in [name + "_sum_ms"] + [f"{name}_sum_ms|{d}={v}" for d, v in mapped.items()]:
            self.sums[f] = self.sums.get(f, 0) + int(ms)


def hist_unit_ms(name):
    """Milliseconds per unit of a duration histogram, from its name."""
    for sfx, unit in (("_seconds", 1000), ("_minutes", 60_000), ("_hours", 3_600_000)):
        if name.endswith(sfx):
            return unit
    return 1


def _fmt_float(x):
    return repr(float(x))


def render(family, acc):
    """(fields, exact quantiles) of one window from its accumulator."""
    spec = SPECS[family]
    counts = acc.counts
    out = {c: str(counts.get(c, 0)) for c in spec.counters}
    for f, n in counts.items():
        if n != 0:
            out[f] = str(n)
    quant = {}
    for name in spec.hists:
        vals = acc.values.get(name, [])
        out[name + "_count"] = str(len(vals))
        out[name + "_sum_ms"] = str(acc.sums.get(name + "_sum_ms", 0))
        buckets = {}
        for v in vals:
            i = hist_index(v)
            buckets[i] = buckets.get(i, 0) + 1
        for i, n in buckets.items():
            out[hist_field(name, i)] = str(n)
        for p, q in PERCENTILES:
            if vals:
                out[f"{name}_{p}"] = _fmt_float(hist_quantile(buckets, q))
                quant[f"{name}_{p}"] = exact_quantile(vals, q)
    for f, s in acc.sums.items():
        if "|" in f and s != 0:
            out[f] = str(s)
    # ratios overall and per value of the family's dimensions
    dims = set(FAMILY_DIMS[family]) | set(acc.dims)
    suffixes = {""} | {"|" + f.split("|", 1)[1] for f in counts
                       if "|" in f and f.split("|", 1)[1].split("=", 1)[0] in dims}
    for sfx in suffixes:
        def get(field, sfx=sfx):
            return counts.get(field + sfx, 0)
        for name, fn in spec.ratios.items():
            num, den, scale = fn(get)
            if den:
                out[name + sfx] = "%.6g" % (scale * num / den)
        for name, (num, den) in spec.averages.items():
            d = get(den)
            if d:
                out[name + sfx] = str(H.round_half_away(get(num), d))
    return out, quant


# ---------------------------------------------------------------------------
# families


class Fact:
    """A contribution to a family's window: at event key `key` (cap order),
    in the window of time t, with the raw dimension values dims."""

    __slots__ = ("key", "t", "dims", "counts", "obs")

    def __init__(self, ev, t=None, counts=None, obs=None):
        self.key = _key(ev)
        self.t = ev["event_time"] if t is None else t
        self.dims = ev
        self.counts = counts or {}
        self.obs = obs or {}


def _funnel(events, size, win, cfg, accs):
    for ev in events:
        if ev["stream"] not in ("clickstream", "checkout"):
            continue
        w = accs(win.start(size, ev["event_time"]))
        sessions = w.extra.setdefault("sessions", {})
        steps = w.extra.setdefault("steps", {})
        sid = ev.get("session_id")
        if sid is not None:
            sd = sessions.get(sid)
            if sd is None:
                sd = sessions[sid] = w.map(ev)
                w.add("sessions", 1, sd)
            step = SESSION_STEPS.get(ev["type"])
            if step and sid not in steps.setdefault(step, set()):
                steps[step].add(sid)
                w.add(step, 1, sd)
        if ev["stream"] != "checkout":
            continue
        typ = ev["type"]
        if typ == "ORDER_PLACED":
            m = w.map(ev)
            w.add("orders", 1, m)
            if ev["currency"] == cfg["store_currency"]:
                w.add("orders_store_currency", 1, m)
                w.add("revenue_cents", ev["amount_cents"], m)
            cur = w.value("currency", ev["currency"])
            w.add(f"orders|currency={cur}", 1, {})
            w.add(f"revenue_cents|currency={cur}", ev["amount_cents"], {})
        elif typ in ("PAYMENT_SUBMITTED", "PAYMENT_FAILED"):
            f = "payments_submitted" if typ == "PAYMENT_SUBMITTED" else "payments_failed"
            w.add(f, 1, w.map(ev))


def _order_events(events):
    return [e for e in events if e["stream"] == "checkout" and e["type"] == "ORDER_PLACED"]


def _customer_id(e):
    """The order's customer_id, or None for a guest order (no customer_id, or
    an empty one)."""
    return e.get("customer_id") or None


def _customer_orders(events, imported_orders):
    times = {}
    for e in _order_events(events):
        if _customer_id(e) is not None:
            times.setdefault(e["customer_id"], set()).add(e["event_time"])
    for cid, t in imported_orders:
        times.setdefault(cid, set()).add(int(t))
    return times


def _retention(events, size, win, cfg, accs, order_times):
    horizon = cfg["retention_horizon_ms"]
    for ev in _order_events(events):
        w = accs(win.start(size, ev["event_time"]))
        cid = _customer_id(ev)
        if cid is None:
            w.add("guest_orders", 1, w.map(ev))
            continue
        # events are in processing (event-time) order: the customer's first
        # order in the window is its earliest there, f, and gives the channel
        seen = w.extra.setdefault("customers", set())
        if cid in seen:
            continue
        seen.add(cid)
        m = w.map(ev)
        f = ev["event_time"]
        returning = any(f - horizon <= t < f for t in order_times.get(cid, ()))
        w.add("ordering_customers", 1, m)
        w.add("returning_customers" if returning else "new_customers", 1, m)


def _cart_decisions(events, W, cfg):
    """[(kind, first event, status)] for every session's cart and checkout."""
    after = cfg["abandon_after_ms"]
    orders = {}
    for e in _order_events(events):
        if e.get("session_id") is not None:
            orders.setdefault(e["session_id"], []).append(e["event_time"])
    firsts = {}
    for e in events:
        sid = e.get("session_id")
        if sid is None:
            continue
        if e["stream"] == "clickstream" and e["type"] == "ADD_TO_CART":
            kind = "cart"
        elif e["stream"] == "checkout" and e["type"] == "CHECKOUT_STARTED":
            kind = "checkout"
        else:
            continue
        if (kind, sid) not in firsts:  # events are in processing order
            firsts[(kind, sid)] = e
    out = []
    for (kind, sid), e in firsts.items():
        deadline = e["event_time"] + after
        if any(t < deadline for t in orders.get(sid, ())):
            status = "converted"
        elif W is None or deadline <= W:
            status = "abandoned"
        else:
            status = "pending"
        out.append((kind, e, status))
    return out


def _abandonment_facts(events, W, cfg):
    facts = []
    for kind, e, status in _cart_decisions(events, W, cfg):
        base = "carts" if kind == "cart" else "checkouts"
        facts.append(Fact(e, counts={base: 1, f"{base}_{status}": 1}))
    return facts


def _by_entity(events, stream, key):
    out = {}
    for e in events:
        if e["stream"] == stream:
            out.setdefault(e[key], []).append(e)
    return out


def _delivery_facts(events, cfg):
    facts = []
    for sid, evs in _by_entity(events, "shipment", "shipment_id").items():
        seen = set()
        for e in evs:
            typ, t, opt = e["type"], e["event_time"], e.get("order_placed_time")
            if typ == "DELIVERED" and typ not in seen:
                seen.add(typ)
                counts, obs = {"delivered": 1}, {}
                if t > e["promised_delivery_time"]:
                    counts["delivered_late"] = 1
                    obs["delay_minutes"] = Fraction(t - e["promised_delivery_time"], 60_000)
                if opt is not None:
                    obs["delivery_time_hours"] = Fraction(t - opt, 3_600_000)
                facts.append(Fact(e, counts=counts, obs=obs))
            elif typ == "DISPATCHED" and typ not in seen:
                seen.add(typ)
                counts, obs = {"dispatched": 1}, {}
                if opt is not None:
                    obs["dispatch_latency_hours"] = Fraction(t - opt, 3_600_000)
                    if t - opt > cfg["dispatch_sla_ms"]:
                        counts["dispatch_sla_breaches"] = 1
                facts.append(Fact(e, counts=counts, obs=obs))
            elif typ == "DELIVERY_FAILED":
                facts.append(Fact(e, counts={"delivery_failed": 1}))
            elif typ == "RETURNED" and typ not in seen:
                seen.add(typ)
                facts.append(Fact(e, counts={"returned": 1}))
    return facts


def _support_facts(events):
    facts = []
    tickets = _by_entity(events, "support", "ticket_id")
    for tid, evs in tickets.items():
        opens = [e for e in evs if e["type"] == "TICKET_OPENED"]
        o = opens[0]["event_time"] if opens else None
        if opens:
            facts.append(Fact(opens[0], counts={"tickets_opened": 1}))
        # first response time: first human reply not earlier than the opening
        if o is not None:
            for e in evs:
                if e["type"] == "AGENT_REPLIED" and not e["is_bot"] and e["event_time"] >= o:
                    facts.append(Fact(e, obs={"frt_seconds": Fraction(e["event_time"] - o,
                                                                       1000)}))
                    break
        resolved = False
        first_bot = None
        human_seen = False
        decided = False
        surveyed = False
        for e in evs:
            typ, t = e["type"], e["event_time"]
            if typ == "AGENT_REPLIED":
                if e["is_bot"]:
                    if first_bot is None:
                        first_bot = t
                else:
                    if not decided and first_bot is not None and t > first_bot:
                        decided = True
                        facts.append(Fact(e, counts={"bot_tickets": 1, "bot_handoffs": 1}))
                    human_seen = True
            elif typ == "TICKET_RESOLVED":
                if resolved:
                    continue
                resolved = True
                counts, obs = {"tickets_resolved": 1}, {}
                if o is not None and o <= t:
                    obs["resolution_seconds"] = Fraction(t - o, 1000)
                if not decided and first_bot is not None and not human_seen:
                    decided = True
                    counts["bot_tickets"] = 1
                facts.append(Fact(e, counts=counts, obs=obs))
            elif typ == "TICKET_REOPENED":
                if resolved:
                    resolved = False
                    facts.append(Fact(e, counts={"tickets_reopened": 1}))
            elif typ == "SURVEY_RESPONSE" and not surveyed:
                surveyed = True
                counts = {}
                if e.get("csat") is not None:
                    counts["csat_responses"] = 1
                    counts["csat_satisfied"] = int(e["csat"] >= 4)
                if e.get("nps") is not None:
                    counts["nps_responses"] = 1
                    counts["nps_promoters"] = int(e["nps"] >= 9)
                    counts["nps_detractors"] = int(e["nps"] <= 6)
                    counts["nps_net"] = counts["nps_promoters"] - counts["nps_detractors"]
                if e.get("ces") is not None:
                    counts["ces_responses"] = 1
                    counts["ces_sum"] = e["ces"]
                facts.append(Fact(e, counts=counts))
    return facts


def _apply_facts(facts, size, win, accs):
    for f in sorted(facts, key=lambda f: f.key):
        w = accs(win.start(size, f.t))
        m = w.map(f.dims)
        for field, n in f.counts.items():
            w.add(field, n, m)
        for name, v in f.obs.items():
            w.observe(name, v, m)


# ---------------------------------------------------------------------------
# gauges and cohorts


def _gauges(events, W, cfg):
    g = {f: 0 for f in GAUGE_FIELDS}
    for sid, evs in _by_entity(events, "shipment", "shipment_id").items():
        types = {e["type"] for e in evs}
        if "DELIVERED" in types or "RETURNED" in types:
            continue
        last = evs[-1]  # processing (event-time) order
        promised = last["promised_delivery_time"]
        if W >= max(last["event_time"], promised) + cfg["shipment_ttl_ms"]:
            continue  # given up
        g["in_flight|kind=shipment"] += 1
        if promised < W:
            g["overdue_in_flight"] += 1
        if "OUT_FOR_DELIVERY" not in types and W <= promised < W + cfg["at_risk_horizon_ms"]:
            g["at_risk"] += 1
    for kind, e, status in _cart_decisions(events, W, cfg):
        if status == "pending":
            g[f"in_flight|kind={kind}"] += 1
    for tid, evs in _by_entity(events, "support", "ticket_id").items():
        if not any(e["type"] == "TICKET_OPENED" for e in evs):
            continue
        resolved = False
        for e in evs:
            if e["type"] == "TICKET_RESOLVED":
                resolved = True
            elif e["type"] == "TICKET_REOPENED":
                resolved = False
        if not resolved:
            g["in_flight|kind=ticket"] += 1
    return g


def _cohorts(order_times, win):
    out = {}
    for cid, times in order_times.items():
        first = min(times)
        y, m = win.month(first)
        c = out.setdefault(f"{y:04d}-{m:02d}", {f: 0 for f in COHORT_FIELDS})
        c["customers"] += 1
        ks = set()
        for t in times:
            ty, tm = win.month(t)
            ks.add((ty - y) * 12 + (tm - m))
        for k in range(1, 13):
            if k in ks:
                c[f"active_m{k}"] += 1
        for n in (30, 60, 90):
            if any(first < t <= first + n * DAY_MS for t in times):
                c[f"retained_{n}d"] += 1
    return {k: {f: str(v) for f, v in c.items()} for k, c in out.items()}


# ---------------------------------------------------------------------------
# everything


def _config(kw):
    cfg = dict(DEFAULTS)
    dims = dict(FAMILY_DIMS)
    for k, v in kw.items():
        if k == "dims":
            dims.update({f: tuple(d) for f, d in (v or {}).items()})
        elif k in DEFAULTS:
            cfg[k] = v
        else:
            raise TypeError(f"unknown reference option {k!r}")
    cfg["dims"] = dims
    return cfg


class Result:
    def __init__(self, windows, quantiles, cohorts, stats, events, cfg, win, watermark):
        self.windows = windows
        self.quantiles = quantiles
        self.cohorts = cohorts
        self.stats = stats
        self.cfg = cfg
        self.win = win
        self.watermark = watermark
        self._events = events
        self.gauges = None if watermark is None else _gauges(events, watermark, cfg)

    def gauges_at(self, W):
        return _gauges(self._events, W, self.cfg)

    def final_pointer(self, family, size, W):
        """Start of the newest window of size closed at watermark W (its end
        + allowed_lateness (+ abandon_after for abandonment) <= W)."""
        x = W - self.cfg["allowed_lateness_ms"]
        if family == "abandonment":
            x -= self.cfg["abandon_after_ms"]
        s = self.win.start(size, x)
        if self.win.end(size, s) > x:
            s = self.win.start(size, s - 1)
        return s


def compute_all(records, sizes=("1m", "5m", "1h"), tz="UTC", watermark=None,
                families=FAMILIES, imported_orders=(), **cfg_kw):
    """Every family's windows (and gauges, cohorts, health) from records.
    See the module docstring for the arguments and the result."""
    cfg = _config(cfg_kw)
    win = Windows(tz)
    events, dups = prepare(records)
    order_times = _customer_orders(events, imported_orders)
    fact_lists = {}
    if "abandonment" in families:
        fact_lists["abandonment"] = _abandonment_facts(events, watermark, cfg)
    if "delivery" in families:
        fact_lists["delivery"] = _delivery_facts(events, cfg)
    if "support" in families:
        fact_lists["support"] = _support_facts(events)

    windows = {f: {} for f in families}
    quantiles = {f: {} for f in families}
    for size in sizes:
        starts = {win.start(size, e["event_time"]) for e in events}
        if not starts:
            continue
        span = win.span(size, min(starts), max(starts))
        for fam in families:
            accs = {}

            def acc(start, fam=fam, accs=accs):
                a = accs.get(start)
                if a is None:
                    a = accs[start] = Acc(cfg["dims"][fam], cfg["max_dimension_values"])
                return a

            if fam == "funnel":
                _funnel(events, size, win, cfg, acc)
            elif fam == "retention":
                _retention(events, size, win, cfg, acc, order_times)
            else:
                _apply_facts(fact_lists[fam], size, win, acc)
            for s in span:
                fields, quant = render(fam, accs.get(s) or Acc((), 0))
                windows[fam][(size, s)] = fields
                if quant:
                    quantiles[fam][(size, s)] = quant
    stats = {
        "decoded": len(records),
        "decoded_by_stream": {},
        "kept": len(events),
        "duplicates": sum(dups.values()),
        "duplicates_by_kind": dups,
        "rejected": {},
        "excluded": 0,
        "min_time": min((e["event_time"] for e in events), default=None),
        "max_time": max((e["event_time"] for e in events), default=None),
    }
    for r in records:
        stats["decoded_by_stream"][r["stream"]] = stats["decoded_by_stream"].get(r["stream"],
                                                                                 0) + 1
    cohorts = _cohorts(order_times, win) if "retention" in families else {}
    return Result(windows, quantiles, cohorts, stats, events, cfg, win, watermark)


def compute_from_messages(messages, formats=None, exclude=(), topics=None, **kw):
    """compute_all over decoded raw messages; stats also hold the decoding
    figures ("decoded" counts excluded records too, as health does)."""
    records, dstats = decode_messages(messages, formats, exclude, topics)
    res = compute_all(records, **kw)
    res.stats.update(dstats)
    return res


def gauges(records, W, **cfg_kw):
    """The gauges at watermark W of records (see _gauges)."""
    cfg = _config(cfg_kw)
    events, _ = prepare(records)
    return _gauges(events, W, cfg)


def from_bootstrap(bootstrap, formats=None, exclude=(), **kw):
    return compute_from_messages(read_all_messages(bootstrap), formats, exclude, **kw)


# ---------------------------------------------------------------------------
# comparison


def classify(field, family="funnel"):
    """'counter', 'ratio', 'sum', 'percentile', 'closed' or 'unknown'."""
    if field == "closed":
        return "closed"
    spec = SPECS[family]
    base = field.split("|", 1)[0]
    if base in spec.counters:
        return "counter"
    if base in spec.ratios or base in spec.averages:
        return "ratio"
    for name in spec.hists:
        if base == name + "_count":
            return "counter"
        if base == name + "_sum_ms":
            return "counter"
        if base in (f"{name}_{p}" for p, _ in PERCENTILES):
            return "percentile"
    hf = parse_hist_field(base)
    if hf is not None and hf[0] in spec.hists and "|" not in field:
        return "counter"
    return "unknown"


def _num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def diff_window(expected, actual, family="funnel", quantiles=None):
    """Mismatches between an expected field dict (reference or literal) and a
    Redis hash. Counters (sums in milliseconds included): exact, missing ==
    0, except that a per-dimension counter stored as "0" is a mismatch (it
    must be absent). Ratios: exact strings, absent iff expected absent. Percentiles: absent iff
    expected absent, equal to the bucket value formatted "%.6g" as the
    pipeline stores it (or within a relative 5e-6 of it) and (with quantiles
    {field: exact}) within 1 % of the exact quantile. 'closed' is
    not compared here. Returns [(field, want, got)]."""
    out = []
    for f in sorted(set(expected) | set(actual)):
        kind = classify(f, family)
        if kind == "closed":
            continue
        want, got = expected.get(f), actual.get(f)
        if kind == "counter":
            try:
                g = int(got) if got is not None else 0
            except ValueError:
                out.append((f, want, got))
                continue
            if int(want or 0) != g or ("|" in f and got == "0"):
                out.append((f, want, got))
        elif kind == "ratio":
            if want != got:
                out.append((f, want, got))
        elif kind == "percentile":
            if (want is None) != (got is None):
                out.append((f, want, got))
                continue
            if want is None:
                continue
            w, g = float(want), _num(got)
            if g is None or not _same_6g(w, got, g):
                out.append((f, want, got))
                continue
            ex = (quantiles or {}).get(f)
            if ex is not None:
                lo, hi = hist_value(HIST_MIN_BUCKET), hist_value(HIST_MAX_BUCKET)
                if ex <= 0:
                    ok = g == 0
                elif ex < lo or ex > hi:
                    ok = True  # clamped bucket: no error bound
                else:
                    ok = abs(g - ex) <= (HIST_REL_ERR + 1e-9) * ex
                if not ok:
                    out.append((f, f"{want} (exact {ex!r}, 1 %)", got))
        else:
            out.append((f, want, got if got is not None else "<unknown field>"))
    return out


def _same_6g(want, got_str, got):
    """Whether a stored "%.6g" percentile got (string and value) is the
    bucket value want: the same "%.6g" string, or (a last-digit rounding
    difference of the pipeline's float arithmetic) within a relative 5e-6."""
    if got_str == "%.6g" % want:
        return True
    return abs(want - got) <= 5e-6 * abs(want) + 1e-300


class _Problems:
    def __init__(self):
        self.lines = []
        self.per_field = {}

    def note(self, msg, field=None):
        self.lines.append(msg)
        if field is not None:
            base = field.split("|", 1)[0] + ("|" + field.split("|", 1)[1].split("=")[0]
                                              if "|" in field else "")
            self.per_field[base] = self.per_field.get(base, 0) + 1

    def result(self, max_lines):
        lines = self.lines[:max_lines]
        if len(self.lines) > max_lines:
            lines.append(f"... and {len(self.lines) - max_lines} more")
        if self.per_field:
            lines.append("mismatches by field: " + ", ".join(
                f"{k}={v}" for k, v in sorted(self.per_field.items(), key=lambda kv: -kv[1])))
        return lines, len(self.lines)


def _is_zero(fields, family):
    return all(classify(f, family) != "counter" or int(v) == 0 for f, v in fields.items())


def compare_family(family, expected, actual, sizes, final_pointers, quantiles=None,
                   require_all_closed=True, tz="UTC", max_lines=40):
    """Compare a family's reference windows with its Redis windows.

    expected: Result.windows[family]; actual: {(size, start): hash} from
    harness.funnel_windows(r, ns, family); final_pointers: {size: start of
    the newest closed window of this family} (None if none); quantiles:
    Result.quantiles[family]. Rules, per size:
    - no Redis window before the first reference window;
    - windows from the first reference window to max(last, final pointer)
      compared field by field (windows after the last reference window are
      zero-fill: every counter 0);
    - windows at or before the final pointer must exist with closed = 1, and
      zero-fill ones (no count of the family) must carry the family's plain
      overall counters; later windows must not be closed and need to exist
      only if they hold counts;
    - with require_all_closed, the final pointer must reach the last
      reference window;
    - Redis windows after all that hold no counts.
    Returns (problem_lines, n_problems)."""
    P = _Problems()
    win = Windows(tz)
    spec = SPECS[family]
    for size in sizes:
        exp = {s: f for (sz, s), f in expected.items() if sz == size}
        act = {s: f for (sz, s), f in actual.items() if sz == size}
        if not exp:
            for s in sorted(act):
                for f, w, g in diff_window({}, act[s], family):
                    P.note(f"{family}:{size}:{s} (no reference window): {f}: want {w!r} "
                           f"got {g!r}", f)
            continue
        first, last = min(exp), max(exp)
        fp = final_pointers.get(size)
        if require_all_closed and (fp is None or fp < last):
            P.note(f"{family}:{size}: final pointer {fp} < last event window {last}")
        top = last if fp is None else max(last, fp)
        for s in sorted(act):
            if s < first:
                P.note(f"{family}:{size}:{s}: window before the first window {first}")
        for s in win.span(size, first, top):
            want = exp.get(s, {})
            a = act.get(s)
            closed = fp is not None and s <= fp
            zero = _is_zero(want, family)
            if a is None:
                if closed or not zero:
                    P.note(f"{family}:{size}:{s}: missing in Redis"
                           + (" (zero-fill window)" if zero else " (has counts)"))
                continue
            if closed and a.get("closed") != "1":
                P.note(f"{family}:{size}:{s}: closed={a.get('closed')!r}, want '1'", "closed")
            if not closed and a.get("closed") == "1":
                P.note(f"{family}:{size}:{s}: closed='1' after the final pointer {fp}",
                       "closed")
            if closed and zero:
                for c in spec.counters:
                    if c not in a:
                        P.note(f"{family}:{size}:{s}: zero-fill window lacks {c}", c)
            for f, w, g in diff_window(want, a, family, (quantiles or {}).get((size, s))):
                P.note(f"{family}:{size}:{s}: {f}: want {w!r} got {g!r}", f)
        for s in sorted(act):
            if s > top:
                for f, w, g in diff_window({}, act[s], family):
                    P.note(f"{family}:{size}:{s} (open): {f}: want {w!r} got {g!r}", f)
    return P.result(max_lines)


def compare_gauges(expected, actual, fields=GAUGE_FIELDS, max_lines=40):
    """Gauge fields (missing == 0) of sp:{NS}:gauges against the reference."""
    P = _Problems()
    for f in fields:
        w = int(expected.get(f, 0))
        g = actual.get(f)
        try:
            gv = int(g) if g is not None else 0
        except ValueError:
            gv = None
        if gv != w:
            P.note(f"gauge {f}: want {w} got {g!r}", f)
    return P.result(max_lines)


def compare_cohorts(expected, actual, max_lines=40):
    """Cohort hashes {"YYYY-MM": fields}: every counter (missing == 0), no
    unknown fields; cohorts absent from the reference must be all zeros."""
    P = _Problems()
    for k in sorted(set(expected) | set(actual)):
        want, got = expected.get(k, {}), actual.get(k, {})
        for f in sorted(set(want) | set(got)):
            if f not in COHORT_FIELDS:
                P.note(f"cohort {k}: unknown field {f}={got.get(f)!r}", f)
                continue
            try:
                g = int(got.get(f, 0))
            except ValueError:
                g = None
            if g != int(want.get(f, 0)):
                P.note(f"cohort {k}: {f}: want {want.get(f, '0')!r} got {got.get(f)!r}", f)
    return P.result(max_lines)


# ---------------------------------------------------------------------------
# legacy funnel API


def compute(messages, sizes=("1m", "5m", "1h"), formats=None, exclude=(), store_currency="USD",
            tz="UTC", max_dimension_values=64):
    """Funnel windows from raw messages.

    messages: [(topic, partition, offset, key, value)]
    formats:  {topic: "json"} for JSON topics (default Avro)
    exclude:  set of (topic, partition, offset) to skip (e.g. late events the
              pipeline dead-lettered)
    Returns (windows, stats): windows {(size, start_ms): {field: str}} (every
    window from the first to the last funnel event window), stats
    {"decoded", "duplicates", "rejected": {reason: n}, "excluded", "kept",
    "min_time", "max_time"}."""
    records, dstats = decode_messages(messages, formats, exclude,
                                      topics=(H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT))
    res = compute_all(records, sizes=sizes, tz=tz, families=("funnel",),
                      store_currency=store_currency, max_dimension_values=max_dimension_values)
    stats = dict(res.stats)
    stats.update(decoded=dstats["decoded"], rejected=dstats["rejected"],
                 excluded=dstats["excluded"])
    return res.windows["funnel"], stats


def windows_from_bootstrap(bootstrap, sizes=("1m", "5m", "1h"), formats=None, exclude=()):
    msgs = read_messages(bootstrap)
    return compute(msgs, sizes=sizes, formats=formats, exclude=exclude)


def compare_all(expected, actual, sizes, final_pointers, max_lines=40):
    """Compare reference funnel windows with Redis windows for every size.

    expected: {(size, start): fields} from compute(); actual: the same shape
    from harness.funnel_windows(); final_pointers: {size: start of the newest
    closed window}. Windows holding events must match field by field and be
    closed; windows between the first event window and the final pointer
    that hold no events must exist, closed, with zero counters and no ratios
    (zero-fill); newer (open) windows must hold no counts either.
    Returns (problem_lines, n_problems)."""
    P = _Problems()
    for size in sizes:
        size_ms = H.SIZE_MS[size]
        exp = {s: f for (sz, s), f in expected.items() if sz == size}
        act = {s: f for (sz, s), f in actual.items() if sz == size}
        if not exp:
            continue
        first, last = min(exp), max(exp)
        fp = final_pointers.get(size)
        if fp is None or fp < last:
            P.note(f"{size}: final pointer {fp} < last event window {last}")
            fp = last if fp is None else fp
        for s in sorted(act):
            if s < first:
                P.note(f"{size}:{s}: window before the first event window {first}")
        for s in range(first, fp + 1, size_ms):
            a = act.get(s)
            if a is None:
                P.note(f"{size}:{s}: missing in Redis"
                       + (" (zero-fill window)" if s not in exp else " (has events)"))
                continue
            if a.get("closed") != "1":
                P.note(f"{size}:{s}: closed={a.get('closed')!r}, want '1'", "closed")
            want = exp.get(s, {})
            for f, w, g in diff_window(want, a):
                P.note(f"{size}:{s}: {f}: want {w!r} got {g!r}", f)
        for s in sorted(act):
            if s > fp:
                for f, w, g in diff_window({}, act[s]):
                    P.note(f"{size}:{s} (open): {f}: want {w!r} got {g!r}", f)
    return P.result(max_lines)
