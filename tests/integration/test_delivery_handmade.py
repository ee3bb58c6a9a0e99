"""Delivery counters and shipment gauges of a small hand-written scenario,
checked against literal values computed by hand (not by the C code).

T0 = an hour boundary three to four hours ago; W1, W2, W3 = the 1-minute
windows [T0, T0+1m), [T0+1m, T0+2m), [T0+2m, T0+3m); W4 = [T0+3m, T0+4m) has
no event (zero-filled). Two carriers (dhl, ups), two countries (DE, US).
Shipments are keyed by order_id (every shipment's events in one partition, in
production order). Duration sums are whole milliseconds (`_sum_ms`), compared
as exact strings. metrics.delivery.dispatch_sla = 24h, at_risk_horizon = 24h.

W1 (dispatches):
  s1 dhl/DE  LABEL_CREATED, DISPATCHED without order_placed_time, DISPATCHED
             again (not counted), promised T0+90m
  s2 ups/US  DISPATCHED 20 h after the order, promised T0+5h
  s3 dhl/US  DISPATCHED 26.5 h after the order (SLA breach), promised T0+5h
  s4 ups/DE  DISPATCHED exactly 24 h after the order (no breach: > only),
             promised T0+2h
  s5 ups/US  DELIVERY_FAILED
W2 (deliveries):
  s5 ups/US  DELIVERED 90 min late, 50.25 h after the order
  s6 dhl/DE  DELIVERED 7.5 min late, 36 h
  s7 dhl/US  DELIVERED on time, 30 h
  s8 ups/DE  DELIVERED 45 min late, no order time; DELIVERED again with a new
             event_id: a duplicate (health duplicates +1), not counted
  s9 ups/US  DELIVERED exactly at the promised time (not late), 72 h
  s10 dhl/DE RETURNED
W3 (progress, arrival-order traps):
  s2 IN_TRANSIT, s3 OUT_FOR_DELIVERY, s4 IN_TRANSIT
  s1 dhl/DE  DELIVERED on time, no order time
  s11 ups/DE DELIVERED, then its (earlier) IN_TRANSIT: not in flight
  s12 dhl/US IN_TRANSIT promised T0+30h, then an older LABEL_CREATED promising
             T0+1h: the promise stays T0+30h (not overdue, not at risk)

Histograms by hand (hist.h: bucket i = ceil(ln v / ln g), g = 1.01/0.99,
value 2 g^i / (g + 1), nearest rank on the bucket counts):
  delay_minutes       7.5 -> b101 (7.46344), 45 -> b191 (45.1539),
                      90 -> b225 (89.1303)
  delivery_time_hours 30 -> b171 (30.2672), 36 -> b180 (36.2366),
                      50.25 -> b196 (49.903), 72 -> b214 (71.5282)
  dispatch_latency_hours 20 -> b150 (19.8867), 24 -> b159 (23.8088),
                      26.5 -> b164 (26.3129)
  3 values: p50 = rank 2, p90 = p99 = rank 3; 4 values: p50 = rank 2,
  p90 = p99 = rank 4.

Gauges at the watermark W (about wall time once idle, W > T0+3h):
  in flight s2 s3 s4 s12; overdue s4 (promised T0+2h < W); at risk s2
  (T0+5h within 24 h, not out for delivery); s3 is out for delivery, s12
  promised beyond W + 24h.
Then a live shipment s13 (LABEL_CREATED now, promised 40 s ahead of wall
time) is at risk, and becomes overdue by the watermark alone, with no event.
"""

import math
import unittest

import harness as H
import reference

NS = "dlvhand"
S = 1000
M = 60 * S
HR = 60 * M
SHIP = H.TOPIC_SHIPMENTS


def ev(eid, t, typ, sid, carrier, country, promised, opt=None):
    """A shipment record (order_id = "o-<shipment_id>")."""
    return H.shipment(eid, t, typ, sid, f"o-{sid}", carrier, country, promised,
                      order_placed_time=opt)


def scenario(T0):
    """[(tag, record)] of the historical part, in production order."""
    return [
        # ---- W1
        ("a1", ev("a1", T0 + 1 * S, "LABEL_CREATED", "s1", "dhl", "DE", T0 + 90 * M)),
        ("a2", ev("a2", T0 + 2 * S, "DISPATCHED", "s1", "dhl", "DE", T0 + 90 * M)),
        ("b1", ev("b1", T0 + 5 * S, "DISPATCHED", "s2", "ups", "US", T0 + 5 * HR,
                  opt=T0 + 5 * S - 20 * HR)),
        ("c1", ev("c1", T0 + 10 * S, "DISPATCHED", "s3", "dhl", "US", T0 + 5 * HR,
                  opt=T0 + 10 * S - 26 * HR - 30 * M)),
        ("d1", ev("d1", T0 + 20 * S, "DISPATCHED", "s4", "ups", "DE", T0 + 2 * HR,
                  opt=T0 + 20 * S - 24 * HR)),
        ("a3", ev("a3", T0 + 30 * S, "DISPATCHED", "s1", "dhl", "DE", T0 + 90 * M)),
        ("e1", ev("e1", T0 + 40 * S, "DELIVERY_FAILED", "s5", "ups", "US",
                  T0 + 65 * S - 90 * M)),
        # ---- W2
        ("e2", ev("e2", T0 + 65 * S, "DELIVERED", "s5", "ups", "US", T0 + 65 * S - 90 * M,
                  opt=T0 + 65 * S - 50 * HR - 15 * M)),
        ("f1", ev("f1", T0 + 70 * S, "DELIVERED", "s6", "dhl", "DE", T0 + 70 * S - 7 * M - 30 * S,
                  opt=T0 + 70 * S - 36 * HR)),
        ("g1", ev("g1", T0 + 75 * S, "DELIVERED", "s7", "dhl", "US", T0 + 75 * S + HR,
                  opt=T0 + 75 * S - 30 * HR)),
        ("h1", ev("h1", T0 + 80 * S, "DELIVERED", "s8", "ups", "DE", T0 + 80 * S - 45 * M)),
        ("h2", ev("h2", T0 + 85 * S, "DELIVERED", "s8", "ups", "DE", T0 + 80 * S - 45 * M)),
        ("i1", ev("i1", T0 + 90 * S, "DELIVERED", "s9", "ups", "US", T0 + 90 * S,
                  opt=T0 + 90 * S - 72 * HR)),
        ("j1", ev("j1", T0 + 100 * S, "RETURNED", "s10", "dhl", "DE", T0 - HR)),
        # ---- W3
        ("b2", ev("b2", T0 + 130 * S, "IN_TRANSIT", "s2", "ups", "US", T0 + 5 * HR)),
        ("c2", ev("c2", T0 + 135 * S, "OUT_FOR_DELIVERY", "s3", "dhl", "US", T0 + 5 * HR)),
        ("d2", ev("d2", T0 + 140 * S, "IN_TRANSIT", "s4", "ups", "DE", T0 + 2 * HR)),
        ("a4", ev("a4", T0 + 150 * S, "DELIVERED", "s1", "dhl", "DE", T0 + 90 * M)),
        ("k2", ev("k2", T0 + 160 * S, "DELIVERED", "s11", "ups", "DE", T0 + 4 * HR)),
        ("k1", ev("k1", T0 + 125 * S, "IN_TRANSIT", "s11", "ups", "DE", T0 + 4 * HR)),
        ("l2", ev("l2", T0 + 170 * S, "IN_TRANSIT", "s12", "dhl", "US", T0 + 30 * HR)),
        ("l1", ev("l1", T0 + 120 * S, "LABEL_CREATED", "s12", "dhl", "US", T0 + HR)),
    ]


def live_event(now):
    """s13: created two seconds ago, promised 40 s ahead."""
    return ev("m1", now - 2 * S, "LABEL_CREATED", "s13", "dhl", "DE", now + 40 * S)


LAST_EVENT = 170 * S  # offset of the latest historical event from T0

# ---- expected values, computed by hand (see the module docstring) ----------

ZERO_OVERALL = {
    "delivered": "0", "delivered_late": "0", "dispatched": "0", "dispatch_sla_breaches": "0",
    "delivery_failed": "0", "returned": "0",
    "delay_minutes_count": "0", "delay_minutes_sum_ms": "0",
    "delivery_time_hours_count": "0", "delivery_time_hours_sum_ms": "0",
    "dispatch_latency_hours_count": "0", "dispatch_latency_hours_sum_ms": "0",
    "closed": "1",
}

DISPATCH_HIST = {
    "dispatch_latency_hours_count": "3", "dispatch_latency_hours_sum_ms": "253800000",  # 20+26.5+24
    "dispatch_latency_hours:b150": "1", "dispatch_latency_hours:b159": "1",
    "dispatch_latency_hours:b164": "1",
    "dispatch_latency_hours_p50": "23.8088", "dispatch_latency_hours_p90": "26.3129",
    "dispatch_latency_hours_p99": "26.3129",
}

DELIVERY_HISTS = {
    "delay_minutes_count": "3", "delay_minutes_sum_ms": "8550000",  # 90 + 7.5 + 45
    "delay_minutes:b101": "1", "delay_minutes:b191": "1", "delay_minutes:b225": "1",
    "delay_minutes_p50": "45.1539", "delay_minutes_p90": "89.1303",
    "delay_minutes_p99": "89.1303",
    "delivery_time_hours_count": "4", "delivery_time_hours_sum_ms": "677700000",  # 50.25+36+30+72
    "delivery_time_hours:b171": "1", "delivery_time_hours:b180": "1",
    "delivery_time_hours:b196": "1", "delivery_time_hours:b214": "1",
    "delivery_time_hours_p50": "36.2366", "delivery_time_hours_p90": "71.5282",
    "delivery_time_hours_p99": "71.5282",
}

W1_EXPECTED = {**ZERO_OVERALL, **DISPATCH_HIST, **{
    "dispatched": "4",              # s1 s2 s3 s4 (s1's second DISPATCHED not counted)
    "dispatch_sla_breaches": "1",   # s3 (26.5 h); s4 is exactly 24 h
    "delivery_failed": "1",         # s5
    # delivered = 0: no delivery_delay_rate anywhere
    "dispatched|carrier=dhl": "2", "dispatched|carrier=ups": "2",
    "dispatched|country=DE": "2", "dispatched|country=US": "2",
    "dispatch_sla_breaches|carrier=dhl": "1", "dispatch_sla_breaches|country=US": "1",
    "dispatch_latency_hours_count|carrier=dhl": "1",
    "dispatch_latency_hours_sum_ms|carrier=dhl": "95400000",
    "dispatch_latency_hours_count|carrier=ups": "2",
    "dispatch_latency_hours_sum_ms|carrier=ups": "158400000",
    "dispatch_latency_hours_count|country=DE": "1",
    "dispatch_latency_hours_sum_ms|country=DE": "86400000",
    "dispatch_latency_hours_count|country=US": "2",
    "dispatch_latency_hours_sum_ms|country=US": "167400000",
    "delivery_failed|carrier=ups": "1", "delivery_failed|country=US": "1",
}}

W2_EXPECTED = {**ZERO_OVERALL, **DELIVERY_HISTS, **{
    "delivered": "5",               # s5 s6 s7 s8 s9 (s8's second DELIVERED: duplicate)
    "delivered_late": "3",          # s5 s6 s8 (s9 exactly on time)
    "delivery_delay_rate": "0.6",
    "returned": "1",                # s10
    # carrier ups: s5 s8 s9; dhl: s6 s7 (+ s10 returned)
    "delivered|carrier=ups": "3", "delivered_late|carrier=ups": "2",
    "delivery_delay_rate|carrier=ups": "0.666667",
    "delay_minutes_count|carrier=ups": "2", "delay_minutes_sum_ms|carrier=ups": "8100000",
    "delivery_time_hours_count|carrier=ups": "2",
    "delivery_time_hours_sum_ms|carrier=ups": "440100000",
    "delivered|carrier=dhl": "2", "delivered_late|carrier=dhl": "1",
    "delivery_delay_rate|carrier=dhl": "0.5",
    "delay_minutes_count|carrier=dhl": "1", "delay_minutes_sum_ms|carrier=dhl": "450000",
    "delivery_time_hours_count|carrier=dhl": "2", "delivery_time_hours_sum_ms|carrier=dhl": "237600000",
    "returned|carrier=dhl": "1",
    # country US: s5 s7 s9; DE: s6 s8 (+ s10 returned)
    "delivered|country=US": "3", "delivered_late|country=US": "1",
    "delivery_delay_rate|country=US": "0.333333",
    "delay_minutes_count|country=US": "1", "delay_minutes_sum_ms|country=US": "5400000",
    "delivery_time_hours_count|country=US": "3",
    "delivery_time_hours_sum_ms|country=US": "548100000",
    "delivered|country=DE": "2", "delivered_late|country=DE": "2",
    "delivery_delay_rate|country=DE": "1",
    "delay_minutes_count|country=DE": "2", "delay_minutes_sum_ms|country=DE": "3150000",
    "delivery_time_hours_count|country=DE": "1", "delivery_time_hours_sum_ms|country=DE": "129600000",
    "returned|country=DE": "1",
}}

W3_EXPECTED = {**ZERO_OVERALL, **{
    "delivered": "2",               # s1 (dhl/DE), s11 (ups/DE), both on time
    "delivery_delay_rate": "0",
    "delivered|carrier=dhl": "1", "delivered|carrier=ups": "1", "delivered|country=DE": "2",
    "delivery_delay_rate|carrier=dhl": "0", "delivery_delay_rate|carrier=ups": "0",
    "delivery_delay_rate|country=DE": "0",
}}

W4_EXPECTED = dict(ZERO_OVERALL)

# the 5m and the 1h window starting at T0 hold W1..W3: overall fields
TOTAL_OVERALL = {**ZERO_OVERALL, **DISPATCH_HIST, **DELIVERY_HISTS, **{
    "delivered": "7", "delivered_late": "3", "delivery_delay_rate": "0.428571",  # 3 / 7
    "dispatched": "4", "dispatch_sla_breaches": "1", "delivery_failed": "1", "returned": "1",
}}
H1_DIMS = {  # a few per-dimension fields of the 1h window: W2 + W3
    "delivered|carrier=dhl": "3", "delivered|carrier=ups": "4",
    "delivered|country=DE": "4", "delivered|country=US": "3",
    "delivery_delay_rate|country=DE": "0.5",  # late s6 s8 of s6 s8 s1 s11
}

GAUGES_HISTORY = {"in_flight|kind=shipment": "4", "overdue_in_flight": "1", "at_risk": "1"}
GAUGES_LIVE_BEFORE = {"in_flight|kind=shipment": "5", "overdue_in_flight": "1", "at_risk": "2"}
GAUGES_LIVE_AFTER = {"in_flight|kind=shipment": "5", "overdue_in_flight": "2", "at_risk": "1"}
GAUGE_FIELDS = tuple(GAUGES_HISTORY)


def overall(fields):
    return {f: v for f, v in fields.items() if "|" not in f}


def my_gauges(g):
    return {f: g.get(f) for f in GAUGE_FIELDS}


def check_exact(tc, expected, actual, what):
    """Every field of actual equals expected and nothing else is there."""
    missing = {f: v for f, v in expected.items() if actual.get(f) != v}
    extra = {f: v for f, v in actual.items() if f not in expected}
    if missing or extra:
        lines = [f"  {f}: want {v!r}, got {actual.get(f)!r}" for f, v in sorted(missing.items())]
        lines += [f"  {f}: unexpected {v!r}" for f, v in sorted(extra.items())]
        tc.fail(f"{what}: {len(lines)} field(s) differ:\n" + "\n".join(lines))


class HandArithmetic(unittest.TestCase):
    """The literals above against hist.h's formula and against the
    independent reference (no binary needed)."""

    def test_bucket_literals(self):
        g = 1.01 / 0.99
        for v, idx, val in [(7.5, 101, "7.46344"), (45, 191, "45.1539"), (90, 225, "89.1303"),
                            (30, 171, "30.2672"), (36, 180, "36.2366"), (50.25, 196, "49.903"),
                            (72, 214, "71.5282"), (20, 150, "19.8867"), (24, 159, "23.8088"),
                            (26.5, 164, "26.3129")]:
            self.assertEqual(math.ceil(math.log(v) / math.log(g)), idx, v)
            self.assertEqual("%.6g" % (2 * g ** idx / (g + 1)), val, v)

    def test_reference_agrees(self):
        T0 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000
        recs = [reference.record("shipment", rec, 0, i) for i, (_, rec) in enumerate(scenario(T0))]
        W = T0 + 3 * HR + 30 * M
        res = reference.compute_all(recs, sizes=("1m", "5m", "1h"), watermark=W,
                                    families=("delivery",))
        wins = res.windows["delivery"]
        for name, exp, start, size in [("W1", W1_EXPECTED, T0, "1m"),
                                       ("W2", W2_EXPECTED, T0 + M, "1m"),
                                       ("W3", W3_EXPECTED, T0 + 2 * M, "1m"),
                                       ("5m", overall(TOTAL_OVERALL), T0, "5m"),
                                       ("1h", dict(overall(TOTAL_OVERALL), **H1_DIMS), T0, "1h")]:
            got = wins.get((size, start), {})
            if name in ("5m", "1h"):
                got = {f: v for f, v in got.items() if f in exp or "|" not in f}
            bad = reference.diff_window(exp, got, family="delivery")
            self.assertEqual(bad, [], name)
        self.assertEqual(res.stats["duplicates"], 1)
        want = {f: int(v) for f, v in GAUGES_HISTORY.items()}
        self.assertEqual({f: res.gauges[f] for f in GAUGE_FIELDS}, want)
        now = W + 10 * S
        live = recs + [reference.record("shipment", live_event(now), 1, 0)]
        for at, exp in [(now - 5 * S, GAUGES_LIVE_BEFORE), (now + 40 * S, GAUGES_LIVE_BEFORE),
                        (now + 40 * S + 1, GAUGES_LIVE_AFTER)]:
            g = reference.gauges(live, at)
            self.assertEqual({f: str(g[f]) for f in GAUGE_FIELDS}, exp, at - now)


class HandmadeDelivery(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = now - now % HR - 3 * HR
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             extra={"metrics": {"delivery": {"dispatch_sla": "24h",
                                                             "at_risk_horizon": "24h"}},
                                    "state": {"shipment_ttl": "60d"}})
        snd = H.Sender(cls.broker.bootstrap)
        for tag, rec in scenario(T0):
            snd.send(SHIP, H.encode("shipment", rec), key=rec["order_id"].encode(), tag=tag)
        snd.flush()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        H.wait_all_closed(r, NS, T0 + LAST_EVENT + 2 * M, timeout=90, pipeline=cls.pipe,
                          family="delivery")
        key = f"sp:{{{NS}}}:delivery"
        cls.w = {name: r.hgetall(f"{key}:1m:{T0 + k * M}")
                 for k, name in enumerate(("W1", "W2", "W3", "W4"))}
        cls.m5 = r.hgetall(f"{key}:5m:{T0}")
        cls.h1 = r.hgetall(f"{key}:1h:{T0}")
        cls.gauges_history = my_gauges(H.wait_until(
            lambda: (lambda g: g if my_gauges(g) == GAUGES_HISTORY else None)(H.gauges(r, NS)),
            30, desc="gauges of the history"))
        cls.shipment_ttl = r.pttl(f"sp:{{{NS}}}:state:shipment:s4")
        cls.ttl_read_at = H.now_ms()
        cls.timers = dict(r.zrange(f"sp:{{{NS}}}:state:timers", 0, -1, withscores=True))

        # live: s13 is at risk, then overdue by the watermark alone
        cls.live_now = live_now = H.now_ms()
        rec = live_event(live_now)
        snd.send(SHIP, H.encode("shipment", rec), key=rec["order_id"].encode(), tag="m1")
        snd.flush()
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=30, pipeline=cls.pipe)
        cls.before = H.wait_until(
            lambda: (lambda g: g if my_gauges(g) == GAUGES_LIVE_BEFORE else None)(H.gauges(r, NS)),
            20, desc="s13 at risk")
        cls.after = H.wait_until(
            lambda: (lambda g: g if my_gauges(g) != GAUGES_LIVE_BEFORE else None)(H.gauges(r, NS)),
            90, desc="a gauge change after s13's promise")
        cls.health = H.health(r, NS)
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def test_w1_dispatches(self):
        check_exact(self, W1_EXPECTED, self.w["W1"], "W1")

    def test_w2_deliveries(self):
        check_exact(self, W2_EXPECTED, self.w["W2"], "W2")

    def test_w3_progress(self):
        check_exact(self, W3_EXPECTED, self.w["W3"], "W3")

    def test_w4_zero_filled(self):
        check_exact(self, W4_EXPECTED, self.w["W4"], "W4")

    def test_5m_overall(self):
        check_exact(self, TOTAL_OVERALL, overall(self.m5), "5m")

    def test_1h(self):
        check_exact(self, TOTAL_OVERALL, overall(self.h1), "1h overall")
        for f, v in H1_DIMS.items():
            self.assertEqual(self.h1.get(f), v, f)

    def test_gauges_history(self):
        self.assertEqual(self.gauges_history, GAUGES_HISTORY)

    def test_state_and_timers(self):
        # s4 (overdue) waits for its give-up: max(promised, last) + 60 d
        T0 = self.T0
        self.assertEqual(self.timers.get("shipment:s4"), T0 + 2 * HR + 60 * 24 * HR)
        self.assertEqual(self.timers.get("shipment:s2"), T0 + 5 * HR + 1)  # leaves at_risk
        self.assertEqual(self.timers.get("shipment:s3"), T0 + 5 * HR + 1)  # becomes overdue
        self.assertEqual(self.timers.get("shipment:s12"), T0 + 6 * HR + 1)  # enters at_risk
        # delivered ones keep their state (duplicate check) until give-up
        self.assertEqual(self.timers.get("shipment:s8"), T0 + 80 * S + 60 * 24 * HR)
        # Redis TTL: give-up - W + 1 day, set when W reached wall time - 5 s
        give_up_in = T0 + 2 * HR + 60 * 24 * HR - self.ttl_read_at
        self.assertGreater(self.shipment_ttl, give_up_in + 24 * HR - 120 * S)
        self.assertLessEqual(self.shipment_ttl, give_up_in + 24 * HR + 120 * S)

    def test_live_at_risk_then_overdue(self):
        self.assertEqual(my_gauges(self.before), GAUGES_LIVE_BEFORE)
        self.assertLessEqual(int(self.before["watermark_ms"]), self.live_now + 40 * S)
        self.assertEqual(my_gauges(self.after), GAUGES_LIVE_AFTER)
        self.assertGreater(int(self.after["watermark_ms"]), self.live_now + 40 * S)

    def test_health(self):
        h = self.health
        self.assertEqual(h.get("consumed|topic=store.shipments"), "23", h)
        self.assertEqual(h.get("decoded"), "23", h)
        self.assertEqual(h.get("duplicates"), "1", h)  # s8's second DELIVERED
        self.assertIn(h.get("late_events", "0"), ("0",), h)
        self.assertFalse([f for f in h if f.startswith("deadletter|")], h)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
