"""Abandonment counters and in-flight gauges of a small hand-written scenario,
checked against literal values computed by hand from docs/METRICS.md (not by
the C code).

Config: metrics.abandonment.abandon_after = 10m, sizes 1m 5m 1h,
idle_timeout 10s, allowed_lateness 3m (so that the live cart of part B, two
minutes old, is not late). Dimensions channel and device.

Part A: history. T0 = an hour boundary two hours ago; W1 = [T0, T0+1m),
W2 = [T0+1m, T0+2m), ... W12 = [T0+11m, T0+12m). Times are seconds after T0.
Carts (ADD_TO_CART) go to store.clickstream (3 partitions) keyed by
session_id, checkouts and orders to store.checkout (2 partitions) keyed by
customer_id: the join crosses topics with different partition counts and
keys (test_join_crosses_partition_layouts checks where they landed). Produced in five phases, each one as soon as the previous one
is committed (well within idle_timeout, so the pipeline never goes idle in
between), and nothing is late: no event's 1m window ends more than
allowed_lateness before the newest event produced before it.

  P1 checkout   sB: ORDER_PLACED oB at 40, then its CHECKOUT_STARTED at 35
                (web/desktop): the checkout is converted at once. A guest
                ORDER_PLACED at 30 without session_id: joins nothing.
  P2 clickstream
                sA cart 5 web/desktop; sA ADD_TO_CART again at 22
                mobile_app/mobile (not the first: ignored);
                sC cart 10 mobile_app/mobile; sD cart 20 mobile_app/desktop;
                sB cart 30 web/desktop: its order (P1) came first, converted
                at once; sM cart 100 mobile_app/mobile (W2);
                sN cart 110 web/mobile (W2).
  P3 checkout   sA CHECKOUT_STARTED 50 web/mobile, ORDER_PLACED oA at 70:
                converts sA's cart (deadline 605) and checkout (650);
                sC CHECKOUT_STARTED 25 mobile_app/mobile (no order);
                sN ORDER_PLACED oN at 115: converts sN's cart in W2.
  P4 clickstream
                sM ADD_TO_CART at 50 web/desktop: earlier than its cart at
                100, the cart moves from W2 (pending there) to W1 with the
                new event's dims and deadline 650;
                sN ADD_TO_CART at 45 mobile_app/desktop: sN's converted cart
                moves from W2 to W1 (still converted: oN 115 < 645).
  P5 checkout   sD ORDER_PLACED oD at 620 = sD's deadline (20 + 600): not
                before it, so sD is abandoned; sM ORDER_PLACED oM at 660:
                after the moved cart's deadline 650 (before the old one, 700),
                so sM is abandoned; oD again at 600 with a new event_id: a
                duplicate ORDER_PLACED (health duplicates 1), which would have
                converted sD had it counted.
  Then the pipeline goes idle, the watermark follows the wall clock and
  every deadline passes: sC's cart and checkout are abandoned too.

  Final W1:  carts sA conv (web/desktop), sC ab (mobile_app/mobile),
             sD ab (mobile_app/desktop), sB conv (web/desktop),
             sN conv (mobile_app/desktop), sM ab (web/desktop)
             -> 6 = 3 converted + 3 abandoned, rate 0.5;
             checkouts sB conv (web/desktop), sA conv (web/mobile),
             sC ab (mobile_app/mobile) -> 3 = 2 + 1, rate 0.333333.
  W2 .. W12: every counter 0 (W2 lost its two carts), closed.
  5m [T0, T0+5m) and 1h [T0, T0+1h): the same as W1.

Part B: live. L = wall time. Cart of sL at Tl (10 s into the minute that is
at least two minutes old, web/mobile) and its CHECKOUT_STARTED at Tl+20 s
(mobile_app/tablet): both pending (gauges 1 and 1, window open). Then
ORDER_PLACED of sL at L-1 s (within the deadline Tl+10m): both converted,
gauges 0, window still open.
"""

import time
import unittest

import harness as H
import reference

NS = "abhand"
S = 1000
M = 60 * S
HR = 60 * M
ABANDON_AFTER = 10 * M
CK, CO = H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT
GAUGE_FIELDS = ("in_flight|kind=cart", "in_flight|kind=checkout")
PARTITIONS = {CK: 3, CO: 2}


def cart(eid, T0, sec, sid, channel, device):
    return (eid, CK, sid, H.click(eid, T0 + sec * S, "ADD_TO_CART", sid, channel, device, "US",
                                  product_id="p1"))


def co(eid, T0, sec, typ, sid, channel, device, cust, order_id=None):
    return (eid, CO, cust, H.checkout(eid, T0 + sec * S, typ, sid, channel, device, "US",
                                      customer_id=cust, order_id=order_id, amount_cents=1500))


def phases(T0):
    """[[(tag, topic, key, record)]] of part A, phase by phase, production order."""
    return [
        [  # P1: checkout first
            co("b1", T0, 40, "ORDER_PLACED", "sB", "web", "desktop", "cB", "oB"),
            co("b2", T0, 35, "CHECKOUT_STARTED", "sB", "web", "desktop", "cB"),
            ("g1", CO, "guest-oG", H.checkout("g1", T0 + 30 * S, "ORDER_PLACED", None, "web",
                                              "desktop", "US", order_id="oG", amount_cents=900)),
        ],
        [  # P2: carts
            cart("a1", T0, 5, "sA", "web", "desktop"),
            cart("c1", T0, 10, "sC", "mobile_app", "mobile"),
            cart("d1", T0, 20, "sD", "mobile_app", "desktop"),
            cart("a2", T0, 22, "sA", "mobile_app", "mobile"),
            cart("b3", T0, 30, "sB", "web", "desktop"),
            cart("m1", T0, 100, "sM", "mobile_app", "mobile"),
            cart("n1", T0, 110, "sN", "web", "mobile"),
        ],
        [  # P3: checkouts and orders
            co("a3", T0, 50, "CHECKOUT_STARTED", "sA", "web", "mobile", "cA"),
            co("a4", T0, 70, "ORDER_PLACED", "sA", "web", "mobile", "cA", "oA"),
            co("c2", T0, 25, "CHECKOUT_STARTED", "sC", "mobile_app", "mobile", "cC"),
            co("n2", T0, 115, "ORDER_PLACED", "sN", "web", "mobile", "cN", "oN"),
        ],
        [  # P4: earlier carts move sM and sN to W1
            cart("m2", T0, 50, "sM", "web", "desktop"),
            cart("n3", T0, 45, "sN", "mobile_app", "desktop"),
        ],
        [  # P5: orders at / after the deadlines, and a duplicate
            co("d2", T0, 620, "ORDER_PLACED", "sD", "mobile_app", "desktop", "cD", "oD"),
            co("m3", T0, 660, "ORDER_PLACED", "sM", "web", "desktop", "cM", "oM"),
            co("d3", T0, 600, "ORDER_PLACED", "sD", "mobile_app", "desktop", "cD", "oD"),
        ],
    ]


LAST_A = 660  # the latest event of part A (seconds after T0): window W12


def live_phases(L):
    """Part B: (Tl, [phase 1], [phase 2])."""
    Tl = H.floor_to(L - 2 * M, M) + 10 * S
    p1 = [
        ("l1", CK, "sL", H.click("l1", Tl, "ADD_TO_CART", "sL", "web", "mobile", "US")),
        ("l2", CO, "cL", H.checkout("l2", Tl + 20 * S, "CHECKOUT_STARTED", "sL", "mobile_app",
                                    "tablet", "US", customer_id="cL", amount_cents=700)),
    ]
    p2 = [
        ("l3", CO, "cL", H.checkout("l3", L - 1 * S, "ORDER_PLACED", "sL", "mobile_app",
                                    "tablet", "US", customer_id="cL", order_id="oL",
                                    amount_cents=700)),
    ]
    return Tl, p1, p2


# ---- expected values, computed by hand (see the module docstring) ----------
# Counters absent from a hash count as 0; ratios must match exactly (absent
# when abandoned + converted = 0).

AFTER_P1_W1 = {
    "carts": "0", "carts_converted": "0", "carts_abandoned": "0", "carts_pending": "0",
    "checkouts": "1", "checkouts_converted": "1", "checkouts_abandoned": "0",
    "checkouts_pending": "0",
    "checkout_abandonment_rate": "0",
    "checkouts|channel=web": "1", "checkouts_converted|channel=web": "1",
    "checkout_abandonment_rate|channel=web": "0",
    "checkouts|device=desktop": "1", "checkouts_converted|device=desktop": "1",
    "checkout_abandonment_rate|device=desktop": "0",
}
CHECKOUTS_P1_P2 = {k: v for k, v in AFTER_P1_W1.items() if k.startswith("checkout")}

AFTER_P2_W1 = {
    # sA pending, sC pending, sD pending, sB converted (its order came first)
    "carts": "4", "carts_converted": "1", "carts_abandoned": "0", "carts_pending": "3",
    "cart_abandonment_rate": "0",
    "carts|channel=web": "2", "carts_converted|channel=web": "1",
    "carts_pending|channel=web": "1", "cart_abandonment_rate|channel=web": "0",
    "carts|channel=mobile_app": "2", "carts_pending|channel=mobile_app": "2",
    "carts|device=desktop": "3", "carts_converted|device=desktop": "1",
    "carts_pending|device=desktop": "2", "cart_abandonment_rate|device=desktop": "0",
    "carts|device=mobile": "1", "carts_pending|device=mobile": "1",
    **CHECKOUTS_P1_P2,
}
AFTER_P2_W2 = {
    # sM mobile_app/mobile, sN web/mobile, both pending
    "carts": "2", "carts_converted": "0", "carts_abandoned": "0", "carts_pending": "2",
    "checkouts": "0", "checkouts_converted": "0", "checkouts_abandoned": "0",
    "checkouts_pending": "0",
    "carts|channel=mobile_app": "1", "carts_pending|channel=mobile_app": "1",
    "carts|channel=web": "1", "carts_pending|channel=web": "1",
    "carts|device=mobile": "2", "carts_pending|device=mobile": "2",
}
AFTER_P2_GAUGES = {"in_flight|kind=cart": "5", "in_flight|kind=checkout": "0"}

CHECKOUTS_P3_P4 = {
    # sB converted (web/desktop), sA converted (web/mobile), sC pending
    # (mobile_app/mobile)
    "checkouts": "3", "checkouts_converted": "2", "checkouts_abandoned": "0",
    "checkouts_pending": "1", "checkout_abandonment_rate": "0",
    "checkouts|channel=web": "2", "checkouts_converted|channel=web": "2",
    "checkout_abandonment_rate|channel=web": "0",
    "checkouts|channel=mobile_app": "1", "checkouts_pending|channel=mobile_app": "1",
    "checkouts|device=desktop": "1", "checkouts_converted|device=desktop": "1",
    "checkout_abandonment_rate|device=desktop": "0",
    "checkouts|device=mobile": "2", "checkouts_converted|device=mobile": "1",
    "checkouts_pending|device=mobile": "1", "checkout_abandonment_rate|device=mobile": "0",
}
AFTER_P3_W1 = {
    # sA converted, sC pending, sD pending, sB converted
    "carts": "4", "carts_converted": "2", "carts_abandoned": "0", "carts_pending": "2",
    "cart_abandonment_rate": "0",
    "carts|channel=web": "2", "carts_converted|channel=web": "2",
    "cart_abandonment_rate|channel=web": "0",
    "carts|channel=mobile_app": "2", "carts_pending|channel=mobile_app": "2",
    "carts|device=desktop": "3", "carts_converted|device=desktop": "2",
    "carts_pending|device=desktop": "1", "cart_abandonment_rate|device=desktop": "0",
    "carts|device=mobile": "1", "carts_pending|device=mobile": "1",
    **CHECKOUTS_P3_P4,
}
AFTER_P3_W2 = {
    # sM pending (mobile_app/mobile), sN converted (web/mobile)
    "carts": "2", "carts_converted": "1", "carts_abandoned": "0", "carts_pending": "1",
    "cart_abandonment_rate": "0",
    "checkouts": "0", "checkouts_converted": "0", "checkouts_abandoned": "0",
    "checkouts_pending": "0",
    "carts|channel=mobile_app": "1", "carts_pending|channel=mobile_app": "1",
    "carts|channel=web": "1", "carts_converted|channel=web": "1",
    "cart_abandonment_rate|channel=web": "0",
    "carts|device=mobile": "2", "carts_converted|device=mobile": "1",
    "carts_pending|device=mobile": "1", "cart_abandonment_rate|device=mobile": "0",
}
AFTER_P3_M5 = {
    # W1 + W2: sA conv, sC pend, sD pend, sB conv, sM pend, sN conv
    "carts": "6", "carts_converted": "3", "carts_abandoned": "0", "carts_pending": "3",
    "cart_abandonment_rate": "0",
    # web: sA sB sN converted; mobile_app: sC sD sM pending
    "carts|channel=web": "3", "carts_converted|channel=web": "3",
    "cart_abandonment_rate|channel=web": "0",
    "carts|channel=mobile_app": "3", "carts_pending|channel=mobile_app": "3",
    # desktop: sA conv, sD pend, sB conv; mobile: sC pend, sM pend, sN conv
    "carts|device=desktop": "3", "carts_converted|device=desktop": "2",
    "carts_pending|device=desktop": "1", "cart_abandonment_rate|device=desktop": "0",
    "carts|device=mobile": "3", "carts_converted|device=mobile": "1",
    "carts_pending|device=mobile": "2", "cart_abandonment_rate|device=mobile": "0",
    **CHECKOUTS_P3_P4,
}
AFTER_P3_GAUGES = {"in_flight|kind=cart": "3", "in_flight|kind=checkout": "1"}

AFTER_P4_W1 = {
    # sA conv (web/desktop), sC pend (mobile_app/mobile), sD pend
    # (mobile_app/desktop), sB conv (web/desktop), sN conv (mobile_app/desktop),
    # sM pend (web/desktop)
    "carts": "6", "carts_converted": "3", "carts_abandoned": "0", "carts_pending": "3",
    "cart_abandonment_rate": "0",
    "carts|channel=web": "3", "carts_converted|channel=web": "2",
    "carts_pending|channel=web": "1", "cart_abandonment_rate|channel=web": "0",
    "carts|channel=mobile_app": "3", "carts_converted|channel=mobile_app": "1",
    "carts_pending|channel=mobile_app": "2", "cart_abandonment_rate|channel=mobile_app": "0",
    "carts|device=desktop": "5", "carts_converted|device=desktop": "3",
    "carts_pending|device=desktop": "2", "cart_abandonment_rate|device=desktop": "0",
    "carts|device=mobile": "1", "carts_pending|device=mobile": "1",
    **CHECKOUTS_P3_P4,
}
ZERO = {
    "carts": "0", "carts_converted": "0", "carts_abandoned": "0", "carts_pending": "0",
    "checkouts": "0", "checkouts_converted": "0", "checkouts_abandoned": "0",
    "checkouts_pending": "0",
}
AFTER_P4_W2 = dict(ZERO)  # both carts left: no ratio either (0 / 0)
AFTER_P4_M5 = dict(AFTER_P4_W1)  # W2 is empty now
AFTER_P4_GAUGES = {"in_flight|kind=cart": "3", "in_flight|kind=checkout": "1"}

FINAL_W1 = {
    "carts": "6", "carts_converted": "3", "carts_abandoned": "3", "carts_pending": "0",
    "cart_abandonment_rate": "0.5",
    # web: sA conv, sB conv, sM ab
    "carts|channel=web": "3", "carts_converted|channel=web": "2",
    "carts_abandoned|channel=web": "1", "cart_abandonment_rate|channel=web": "0.333333",
    # mobile_app: sC ab, sD ab, sN conv
    "carts|channel=mobile_app": "3", "carts_converted|channel=mobile_app": "1",
    "carts_abandoned|channel=mobile_app": "2",
    "cart_abandonment_rate|channel=mobile_app": "0.666667",
    # desktop: sA conv, sD ab, sB conv, sN conv, sM ab
    "carts|device=desktop": "5", "carts_converted|device=desktop": "3",
    "carts_abandoned|device=desktop": "2", "cart_abandonment_rate|device=desktop": "0.4",
    # mobile: sC ab
    "carts|device=mobile": "1", "carts_abandoned|device=mobile": "1",
    "cart_abandonment_rate|device=mobile": "1",
    "checkouts": "3", "checkouts_converted": "2", "checkouts_abandoned": "1",
    "checkouts_pending": "0", "checkout_abandonment_rate": "0.333333",
    # web: sB conv, sA conv
    "checkouts|channel=web": "2", "checkouts_converted|channel=web": "2",
    "checkout_abandonment_rate|channel=web": "0",
    # mobile_app: sC ab
    "checkouts|channel=mobile_app": "1", "checkouts_abandoned|channel=mobile_app": "1",
    "checkout_abandonment_rate|channel=mobile_app": "1",
    # desktop: sB conv
    "checkouts|device=desktop": "1", "checkouts_converted|device=desktop": "1",
    "checkout_abandonment_rate|device=desktop": "0",
    # mobile: sA conv, sC ab
    "checkouts|device=mobile": "2", "checkouts_converted|device=mobile": "1",
    "checkouts_abandoned|device=mobile": "1", "checkout_abandonment_rate|device=mobile": "0.5",
}
FINAL_M5 = dict(FINAL_W1)
FINAL_H1 = dict(FINAL_W1)
FINAL_GAUGES = {"in_flight|kind=cart": "0", "in_flight|kind=checkout": "0"}

LIVE_PENDING = {
    "carts": "1", "carts_converted": "0", "carts_abandoned": "0", "carts_pending": "1",
    "checkouts": "1", "checkouts_converted": "0", "checkouts_abandoned": "0",
    "checkouts_pending": "1",
    "carts|channel=web": "1", "carts_pending|channel=web": "1",
    "carts|device=mobile": "1", "carts_pending|device=mobile": "1",
    "checkouts|channel=mobile_app": "1", "checkouts_pending|channel=mobile_app": "1",
    "checkouts|device=tablet": "1", "checkouts_pending|device=tablet": "1",
}
LIVE_PENDING_GAUGES = {"in_flight|kind=cart": "1", "in_flight|kind=checkout": "1"}
LIVE_CONVERTED = {
    "carts": "1", "carts_converted": "1", "carts_abandoned": "0", "carts_pending": "0",
    "cart_abandonment_rate": "0",
    "checkouts": "1", "checkouts_converted": "1", "checkouts_abandoned": "0",
    "checkouts_pending": "0", "checkout_abandonment_rate": "0",
    "carts|channel=web": "1", "carts_converted|channel=web": "1",
    "cart_abandonment_rate|channel=web": "0",
    "carts|device=mobile": "1", "carts_converted|device=mobile": "1",
    "cart_abandonment_rate|device=mobile": "0",
    "checkouts|channel=mobile_app": "1", "checkouts_converted|channel=mobile_app": "1",
    "checkout_abandonment_rate|channel=mobile_app": "0",
    "checkouts|device=tablet": "1", "checkouts_converted|device=tablet": "1",
    "checkout_abandonment_rate|device=tablet": "0",
}
LIVE_CONVERTED_GAUGES = {"in_flight|kind=cart": "0", "in_flight|kind=checkout": "0"}


def diff(expected, actual):
    """[(field, want, got)]: counters absent == 0, ratios exact (absent iff
    expected absent), any other field (but `closed`) unexpected."""
    bad = []
    for f in sorted(set(expected) | set(actual)):
        if f == "closed":
            continue
        want, got = expected.get(f), actual.get(f)
        kind = reference.classify(f, "abandonment")
        if kind == "counter":
            if int(want or 0) != int(got or 0):
                bad.append((f, want, got))
        elif want != got:
            bad.append((f, want, got))
    return bad


def check(tc, expected, actual, what):
    tc.assertTrue(actual, f"{what}: window hash missing in Redis")
    bad = diff(expected, actual)
    if bad:
        lines = [f"  {f}: want {w!r}, got {g!r}" for f, w, g in bad]
        tc.fail(f"{what}: {len(bad)} field(s) differ:\n" + "\n".join(lines))


def my_gauges(g):
    return {f: g.get(f, "0") for f in GAUGE_FIELDS}


class HandArithmetic(unittest.TestCase):
    """The literals above against the independent reference (no binary).

    The reference resolves entity duplicates in event-time order; d3 (oD
    again, earlier in event time but produced after d2) is a duplicate by
    arrival, so it is left out here: the pipeline test checks that it
    counts nowhere."""

    T0 = 1_790_000_000_000 - 1_790_000_000_000 % HR

    def records(self, upto):
        out, offs = [], {}
        for ph in phases(self.T0)[:upto]:
            for tag, topic, key, rec in ph:
                if tag == "d3":
                    continue
                stream = "clickstream" if topic == CK else "checkout"
                offs[stream] = offs.get(stream, -1) + 1
                out.append(reference.record(stream, rec, 0, offs[stream]))
        return out

    def compute(self, upto, W):
        return reference.compute_all(self.records(upto), sizes=("1m", "5m", "1h"), watermark=W,
                                     families=("abandonment",),
                                     abandon_after_ms=ABANDON_AFTER,
                                     allowed_lateness_ms=3 * M)

    def test_snapshots(self):
        T0 = self.T0
        W = T0 + 110 * S  # before any deadline (the earliest is 605)
        cases = [
            (1, [("1m", T0, AFTER_P1_W1)], None),
            (2, [("1m", T0, AFTER_P2_W1), ("1m", T0 + M, AFTER_P2_W2)], AFTER_P2_GAUGES),
            (3, [("1m", T0, AFTER_P3_W1), ("1m", T0 + M, AFTER_P3_W2), ("5m", T0, AFTER_P3_M5)],
             AFTER_P3_GAUGES),
            (4, [("1m", T0, AFTER_P4_W1), ("1m", T0 + M, AFTER_P4_W2), ("5m", T0, AFTER_P4_M5)],
             AFTER_P4_GAUGES),
        ]
        for upto, wins, gauges in cases:
            res = self.compute(upto, W)
            for size, start, exp in wins:
                got = res.windows["abandonment"].get((size, start), {})
                self.assertEqual(diff(exp, got), [], (upto, size, start - T0))
            if gauges:
                g = {f: str(res.gauges[f]) for f in GAUGE_FIELDS}
                self.assertEqual(g, gauges, upto)

    def test_final(self):
        T0 = self.T0
        res = self.compute(5, T0 + 2 * HR)
        wins = res.windows["abandonment"]
        self.assertEqual(diff(FINAL_W1, wins[("1m", T0)]), [])
        for k in range(1, LAST_A // 60 + 1):
            self.assertEqual(diff(ZERO, wins[("1m", T0 + k * M)]), [], k)
        self.assertEqual(diff(FINAL_M5, wins[("5m", T0)]), [])
        self.assertEqual(diff(ZERO, wins[("5m", T0 + 10 * M)]), [])
        self.assertEqual(diff(FINAL_H1, wins[("1h", T0)]), [])
        self.assertEqual({f: str(res.gauges[f]) for f in GAUGE_FIELDS}, FINAL_GAUGES)
        # with d3 counted (had it not been a duplicate) sD would convert
        withdup = self.records(5) + [reference.record(
            "checkout", phases(T0)[4][2][3], 0, 99)]
        res2 = reference.compute_all(withdup, sizes=("1m",), watermark=T0 + 2 * HR,
                                     families=("abandonment",), abandon_after_ms=ABANDON_AFTER)
        self.assertEqual(res2.windows["abandonment"][("1m", T0)]["carts_converted"], "4")

    def test_live(self):
        L = self.T0 + 2 * HR + 17 * M + 3 * S
        Tl, p1, p2 = live_phases(L)
        self.assertEqual(Tl, self.T0 + 2 * HR + 15 * M + 10 * S)
        recs = [reference.record("clickstream" if t == CK else "checkout", rec, 0, i)
                for i, (_, t, _, rec) in enumerate(p1)]
        res = reference.compute_all(recs, sizes=("1m",), watermark=L - 5 * S,
                                    families=("abandonment",), abandon_after_ms=ABANDON_AFTER)
        self.assertEqual(diff(LIVE_PENDING, res.windows["abandonment"][("1m", Tl - 10 * S)]), [])
        self.assertEqual({f: str(res.gauges[f]) for f in GAUGE_FIELDS}, LIVE_PENDING_GAUGES)
        recs.append(reference.record("checkout", p2[0][3], 0, 5))
        res = reference.compute_all(recs, sizes=("1m",), watermark=L,
                                    families=("abandonment",), abandon_after_ms=ABANDON_AFTER)
        self.assertEqual(diff(LIVE_CONVERTED, res.windows["abandonment"][("1m", Tl - 10 * S)]),
                         [])
        self.assertEqual({f: str(res.gauges[f]) for f in GAUGE_FIELDS}, LIVE_CONVERTED_GAUGES)


class HandmadeAbandonment(H.SPTestCase):

    @classmethod
    def read(cls, r, size, start):
        return r.hgetall(f"sp:{{{NS}}}:abandonment:{size}:{start}")

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = now - now % HR - 2 * HR
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp, topic_partitions=PARTITIONS)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             idle_timeout="10s", allowed_lateness="3m",
                             extra={"metrics": {"abandonment": {"abandon_after": "10m"}}})
        r = cls.redis.client
        cls.sender = snd = H.Sender(cls.broker.bootstrap)

        def produce(msgs):
            for tag, topic, key, rec in msgs:
                stream = "clickstream" if topic == CK else "checkout"
                snd.send(topic, H.encode(stream, rec), key=key.encode(), tag=tag)
            snd.flush()

        def settle():
            H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)

        ph = phases(T0)
        cls.snap = {}
        produce(ph[0])
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        settle()
        cls.snap["P1"] = {"W1": cls.read(r, "1m", T0), "gauges": H.gauges(r, NS)}
        for name, msgs in (("P2", ph[1]), ("P3", ph[2]), ("P4", ph[3])):
            produce(msgs)
            settle()
            cls.snap[name] = {"W1": cls.read(r, "1m", T0), "W2": cls.read(r, "1m", T0 + M),
                              "M5": cls.read(r, "5m", T0), "gauges": H.gauges(r, NS)}
        produce(ph[4])
        settle()

        # idle: the watermark follows the wall clock and decides everything
        H.wait_all_closed(r, NS, T0 + LAST_A * S, timeout=90, pipeline=cls.pipe,
                          family="abandonment")
        cls.final = {("1m", T0 + k * M): cls.read(r, "1m", T0 + k * M)
                     for k in range(0, LAST_A // 60 + 1)}
        cls.final[("5m", T0)] = cls.read(r, "5m", T0)
        cls.final[("5m", T0 + 10 * M)] = cls.read(r, "5m", T0 + 10 * M)
        cls.final[("1h", T0)] = cls.read(r, "1h", T0)
        cls.final_gauges = H.gauges(r, NS)
        cls.timers_a = r.zrange(f"sp:{{{NS}}}:state:timers", 0, -1, withscores=True)

        # part B: live
        cls.L = L = H.now_ms()
        cls.Tl, p1, p2 = live_phases(L)
        cls.live_start = H.floor_to(cls.Tl, M)
        produce(p1)
        settle()
        cls.live_pending = cls.read(r, "1m", cls.live_start)
        cls.live_pending_gauges = H.gauges(r, NS)
        cls.live_timers = dict(r.zrange(f"sp:{{{NS}}}:state:timers", 0, -1, withscores=True))
        produce(p2)
        settle()
        cls.live_converted = cls.read(r, "1m", cls.live_start)
        cls.live_converted_gauges = H.gauges(r, NS)
        cls.live_timers_after = dict(r.zrange(f"sp:{{{NS}}}:state:timers", 0, -1,
                                              withscores=True))
        # Part A's windows still closed, the live one still open
        cls.final_again = {k: r.hget(f"sp:{{{NS}}}:abandonment:{k[0]}:{k[1]}", "closed")
                           for k in cls.final}
        cls.final_ptr = H.final_pointer(r, NS, "1m", "abandonment")
        cls.end_wall = H.now_ms()
        cls.health = H.health(r, NS)
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def test_join_crosses_partition_layouts(self):
        """The carts and the orders that convert them travelled on topics with
        different partition counts, and not on the same partition number."""
        md = H.Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "sp-md"})
        try:
            topics = md.list_topics(timeout=10).topics
            self.assertEqual({t: len(topics[t].partitions) for t in PARTITIONS}, PARTITIONS)
        finally:
            md.close()
        pairs = [("a1", "a4"), ("b3", "b1"), ("n1", "n2"), ("n3", "n2"), ("d1", "d2"),
                 ("m2", "m3")]
        where = {tag: self.sender.where(tag)[1:3] for pair in pairs for tag in pair}
        for cart_tag, order_tag in pairs:
            self.assertEqual((where[cart_tag][0], where[order_tag][0]), (CK, CO))
        crossed = [p for p in pairs if where[p[0]][1] != where[p[1]][1]]
        self.assertTrue(crossed, f"every join on the same partition number: {where}")

    # ---- part A, phase by phase

    def test_p1_order_before_cart(self):
        check(self, AFTER_P1_W1, self.snap["P1"]["W1"], "after P1, W1")
        self.assertEqual(my_gauges(self.snap["P1"]["gauges"]), FINAL_GAUGES)

    def test_p2_carts(self):
        check(self, AFTER_P2_W1, self.snap["P2"]["W1"], "after P2, W1")
        check(self, AFTER_P2_W2, self.snap["P2"]["W2"], "after P2, W2")
        self.assertEqual(my_gauges(self.snap["P2"]["gauges"]), AFTER_P2_GAUGES)

    def test_p3_orders_across_topics(self):
        check(self, AFTER_P3_W1, self.snap["P3"]["W1"], "after P3, W1")
        check(self, AFTER_P3_W2, self.snap["P3"]["W2"], "after P3, W2")
        check(self, AFTER_P3_M5, self.snap["P3"]["M5"], "after P3, 5m")
        self.assertEqual(my_gauges(self.snap["P3"]["gauges"]), AFTER_P3_GAUGES)

    def test_p4_moved_carts(self):
        check(self, AFTER_P4_W1, self.snap["P4"]["W1"], "after P4, W1")
        check(self, AFTER_P4_W2, self.snap["P4"]["W2"], "after P4, W2")
        check(self, AFTER_P4_M5, self.snap["P4"]["M5"], "after P4, 5m")
        self.assertEqual(my_gauges(self.snap["P4"]["gauges"]), AFTER_P4_GAUGES)

    def test_no_snapshot_closed(self):
        for name, snap in self.snap.items():
            for w, fields in snap.items():
                if w != "gauges":
                    self.assertIn(fields.get("closed", "0"), ("0",), (name, w))

    # ---- part A, decided and closed

    def test_final_w1(self):
        check(self, FINAL_W1, self.final[("1m", self.T0)], "final W1")

    def test_final_empty_windows(self):
        for k in range(1, LAST_A // 60 + 1):
            check(self, ZERO, self.final[("1m", self.T0 + k * M)], f"final W{k + 1}")
        check(self, ZERO, self.final[("5m", self.T0 + 10 * M)], "final 5m at T0+10m")

    def test_final_5m_1h(self):
        check(self, FINAL_M5, self.final[("5m", self.T0)], "final 5m")
        check(self, FINAL_H1, self.final[("1h", self.T0)], "final 1h")

    def test_final_closed(self):
        for k, fields in self.final.items():
            self.assertEqual(fields.get("closed"), "1", (k[0], k[1] - self.T0))
            self.assertEqual(self.final_again[k], "1", (k[0], k[1] - self.T0))

    def test_final_gauges_and_timers(self):
        self.assertEqual(my_gauges(self.final_gauges), FINAL_GAUGES)
        self.assertEqual([m for m, _ in self.timers_a if m.startswith("cart:")], [])

    def test_final_pointer(self):
        self.assertIsNotNone(self.final_ptr)
        self.assertGreaterEqual(self.final_ptr, self.T0 + LAST_A * S)
        # ... and the live window is not final
        self.assertLess(self.final_ptr, self.live_start)

    # ---- part B

    def test_live_pending(self):
        self.assertGreaterEqual(self.L - self.Tl, 110 * S)
        check(self, LIVE_PENDING, self.live_pending, "live window, pending")
        self.assertIn(self.live_pending.get("closed", "0"), ("0",))
        self.assertEqual(my_gauges(self.live_pending_gauges), LIVE_PENDING_GAUGES)
        # the timer fires at the earliest pending deadline: the cart's
        self.assertEqual(self.live_timers.get("cart:sL"), self.Tl + ABANDON_AFTER)

    def test_live_converted(self):
        check(self, LIVE_CONVERTED, self.live_converted, "live window, converted")
        self.assertIn(self.live_converted.get("closed", "0"), ("0",))
        self.assertEqual(my_gauges(self.live_converted_gauges), LIVE_CONVERTED_GAUGES)
        self.assertNotIn("cart:sL", self.live_timers_after)
        # the order was placed before the deadline (and the watermark did not
        # reach it during the test)
        self.assertLess(self.end_wall, self.Tl + ABANDON_AFTER)

    def test_health(self):
        h = self.health
        self.assertEqual(h.get("consumed|topic=store.clickstream"), "10", h)
        self.assertEqual(h.get("consumed|topic=store.checkout"), "12", h)
        self.assertEqual(h.get("decoded"), "22", h)
        self.assertEqual(h.get("duplicates"), "1", h)  # d3 (oD again)
        self.assertEqual(h.get("late_events", "0"), "0", h)
        self.assertEqual(h.get("abandonment_corrections_dropped", "0"), "0", h)
        self.assertFalse([f for f in h if f.startswith("deadletter|")], h)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
