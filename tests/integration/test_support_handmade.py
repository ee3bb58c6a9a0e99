"""Support counters of a small hand-written scenario, checked against literal
values computed by hand (not by the C code, not by reference.py).

Six tickets on two channels (chat, email) in three 1-minute windows two
hours ago: W1 = [T0, T0+60 s), W2 = [T0+60 s, T0+120 s), W3 = [T0+120 s,
T0+180 s), T0 = an hour boundary; the 5m and 1h windows at T0 hold them all.
Times below are seconds after T0.

  tA chat   opened 5, bot reply 8, customer reply 12, human reply 70 (frt 65 s
            and bot handoff, in W2), resolved 130 (125 s, W3), survey 150
            csat 5 / nps 10 / ces 2
  tB chat   opened 10, bot reply 14, resolved 50 with only bot replies (bot
            ticket not handed off, resolution 40 s, W1), survey 55 csat 4 only,
            resolved again at 58 with a new event_id (already resolved: a
            duplicate fact)
  tC email  human reply 32 produced BEFORE its opening at 20 (same window):
            frt 12 s counted when the opening arrives, in the reply's window;
            resolved 100 (80 s, W2); survey 110 csat 2 / nps 6; a second
            survey 115 (duplicate)
  tD email  opened 25, human reply 45 (frt 20 s), resolved 65 (40 s, W2),
            reopened 80, human reply 90 (not the first: nothing), resolved
            again 140 (115 s, W3: a ticket resolved twice counts twice),
            survey 160 nps 9 / ces 7
  tE chat   opened 40, opened again 41 with a new event_id (duplicate), human
            reply 100 (frt 60 s, W2); stays open
  tF email  opened 125, the same message sent twice (same event_id); stays open

Histograms use the formula of aggregators/hist.h: bucket i = ceil(ln v /
ln g), g = 1.01 / 0.99, value 2 g^i / (g + 1); percentiles by nearest rank
(rank ceil(q n)) on the bucket counts, stored as "%.6g". The bucket indices
and values below were worked out from that formula; BucketArithmetic
re-derives them without the binary.
"""

import math
import time
import unittest

import harness as H
import reference

NS = "suphand"
S = 1000
G = (1 + 0.01) / (1 - 0.01)


def bucket(v):
    return math.ceil(math.log(v) / math.log(G))


def bucket_value(i):
    return 2 * G ** i / (G + 1)


# bucket indices of the durations of the scenario (seconds)
B = {12: 125, 20: 150, 40: 185, 60: 205, 65: 209, 80: 220, 115: 238, 125: 242}
# the percentile a bucket gives, as stored ("%.6g" of its value)
P = {125: "12.0617", 150: "19.8867", 185: "40.0478", 205: "59.745", 209: "64.7212",
     220: "80.6482", 238: "115.597", 242: "125.225"}


def sup(tag, t, typ, ticket, channel, event_id=None, **kw):
    """(tag, key, record) of a support event at T0-relative second t."""
    return (tag, ticket, H.support(event_id or tag, t, typ, ticket, channel, **kw))


def scenario_messages(T0):
    """[(tag, key, record)] in production order (near event-time order: the
    only deviations are the ones the scenario wants)."""
    def at(sec):
        return T0 + sec * S
    return [
        sup("a1", at(5), "TICKET_OPENED", "tA", "chat"),
        sup("a2", at(8), "AGENT_REPLIED", "tA", "chat", is_bot=True),
        sup("b1", at(10), "TICKET_OPENED", "tB", "chat"),
        sup("a3", at(12), "CUSTOMER_REPLIED", "tA", "chat"),
        sup("b2", at(14), "AGENT_REPLIED", "tB", "chat", is_bot=True),
        # tC's first human reply before its opening (out of order)
        sup("c2", at(32), "AGENT_REPLIED", "tC", "email"),
        sup("c1", at(20), "TICKET_OPENED", "tC", "email"),
        sup("d1", at(25), "TICKET_OPENED", "tD", "email"),
        sup("e1", at(40), "TICKET_OPENED", "tE", "chat"),
        sup("e2", at(41), "TICKET_OPENED", "tE", "chat"),  # duplicate opening
        sup("d2", at(45), "AGENT_REPLIED", "tD", "email"),
        sup("b3", at(50), "TICKET_RESOLVED", "tB", "chat"),
        sup("b4", at(55), "SURVEY_RESPONSE", "tB", "chat", csat=4),
        sup("b5", at(58), "TICKET_RESOLVED", "tB", "chat"),  # already resolved
        sup("d3", at(65), "TICKET_RESOLVED", "tD", "email"),
        sup("a4", at(70), "AGENT_REPLIED", "tA", "chat"),
        sup("d4", at(80), "TICKET_REOPENED", "tD", "email"),
        sup("d5", at(90), "AGENT_REPLIED", "tD", "email"),
        sup("c3", at(100), "TICKET_RESOLVED", "tC", "email"),
        sup("e3", at(100), "AGENT_REPLIED", "tE", "chat"),
        sup("c4", at(110), "SURVEY_RESPONSE", "tC", "email", csat=2, nps=6),
        sup("c5", at(115), "SURVEY_RESPONSE", "tC", "email", csat=5, nps=10, ces=1),  # 2nd
        sup("f1", at(125), "TICKET_OPENED", "tF", "email"),
        sup("f1again", at(125), "TICKET_OPENED", "tF", "email", event_id="f1"),  # re-sent
        sup("a5", at(130), "TICKET_RESOLVED", "tA", "chat"),
        sup("d6", at(140), "TICKET_RESOLVED", "tD", "email"),
        sup("a6", at(150), "SURVEY_RESPONSE", "tA", "chat", csat=5, nps=10, ces=2),
        sup("d7", at(160), "SURVEY_RESPONSE", "tD", "email", nps=9, ces=7),
    ]


LAST_SECOND = 160


def hist(name, values, per_channel):
    """Expected histogram fields of raw values (whole seconds): count, sum in
    milliseconds, bucket fields, nearest-rank percentiles; per channel count
    and sum."""
    out = {f"{name}_count": str(len(values)), f"{name}_sum_ms": str(1000 * sum(values))}
    for v in values:
        f = f"{name}:b{B[v]}"
        out[f] = str(int(out.get(f, "0")) + 1)
    s = sorted(values)
    for p, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        out[f"{name}_{p}"] = P[B[s[max(1, math.ceil(q * len(s))) - 1]]]
    for ch, vals in per_channel.items():
        out[f"{name}_count|channel={ch}"] = str(len(vals))
        out[f"{name}_sum_ms|channel={ch}"] = str(1000 * sum(vals))
    return out


# ---- expected values, computed by hand (see the module docstring) ----------

W1_EXPECTED = {
    "tickets_opened": "5",  # tA tB tC tD tE
    "tickets_opened|channel=chat": "3", "tickets_opened|channel=email": "2",
    "tickets_resolved": "1", "tickets_resolved|channel=chat": "1",  # tB
    "reopen_rate": "0", "reopen_rate|channel=chat": "0",
    "bot_tickets": "1", "bot_tickets|channel=chat": "1",  # tB, bot only
    "bot_handoff_rate": "0", "bot_handoff_rate|channel=chat": "0",
    "csat_responses": "1", "csat_satisfied": "1", "csat": "100",  # tB csat 4
    "csat_responses|channel=chat": "1", "csat_satisfied|channel=chat": "1",
    "csat|channel=chat": "100",
    # frt: tC 32 - 20 = 12 s (the reply before the opening), tD 45 - 25 = 20 s
    **hist("frt_seconds", [12, 20], {"email": [12, 20]}),
    # resolution: tB 50 - 10 = 40 s
    **hist("resolution_seconds", [40], {"chat": [40]}),
}

W2_EXPECTED = {
    "tickets_resolved": "2", "tickets_resolved|channel=email": "2",  # tD, tC
    "tickets_reopened": "1", "tickets_reopened|channel=email": "1",  # tD
    "reopen_rate": "0.5", "reopen_rate|channel=email": "0.5",
    "bot_tickets": "1", "bot_handoffs": "1", "bot_handoff_rate": "1",  # tA at 70
    "bot_tickets|channel=chat": "1", "bot_handoffs|channel=chat": "1",
    "bot_handoff_rate|channel=chat": "1",
    # tC: csat 2, nps 6 (the second survey is a duplicate)
    "csat_responses": "1", "csat": "0", "nps_responses": "1", "nps_detractors": "1",
    "nps_net": "-1", "nps": "-100",
    "csat_responses|channel=email": "1", "csat|channel=email": "0",
    "nps_responses|channel=email": "1", "nps_detractors|channel=email": "1",
    "nps_net|channel=email": "-1", "nps|channel=email": "-100",
    # frt: tA 70 - 5 = 65 s, tE 100 - 40 = 60 s
    **hist("frt_seconds", [65, 60], {"chat": [65, 60]}),
    # resolution: tD 65 - 25 = 40 s, tC 100 - 20 = 80 s
    **hist("resolution_seconds", [40, 80], {"email": [40, 80]}),
}

W3_EXPECTED = {
    "tickets_opened": "1", "tickets_opened|channel=email": "1",  # tF
    "tickets_resolved": "2", "tickets_resolved|channel=chat": "1",  # tA
    "tickets_resolved|channel=email": "1",  # tD again
    "reopen_rate": "0", "reopen_rate|channel=chat": "0", "reopen_rate|channel=email": "0",
    # tA csat 5 nps 10 ces 2 (chat); tD nps 9 ces 7 (email)
    "csat_responses": "1", "csat_satisfied": "1", "csat": "100",
    "nps_responses": "2", "nps_promoters": "2", "nps_net": "2", "nps": "100",
    "ces_responses": "2", "ces_sum": "9", "ces": "4.5",
    "csat_responses|channel=chat": "1", "csat_satisfied|channel=chat": "1",
    "csat|channel=chat": "100",
    "nps_responses|channel=chat": "1", "nps_promoters|channel=chat": "1",
    "nps_net|channel=chat": "1", "nps|channel=chat": "100",
    "ces_responses|channel=chat": "1", "ces_sum|channel=chat": "2", "ces|channel=chat": "2",
    "nps_responses|channel=email": "1", "nps_promoters|channel=email": "1",
    "nps_net|channel=email": "1", "nps|channel=email": "100",
    "ces_responses|channel=email": "1", "ces_sum|channel=email": "7", "ces|channel=email": "7",
    # resolution: tA 130 - 5 = 125 s, tD 140 - 25 = 115 s
    **hist("resolution_seconds", [125, 115], {"chat": [125], "email": [115]}),
}

# the 5m and the 1h window at T0 hold everything
ALL_EXPECTED = {
    "tickets_opened": "6", "tickets_opened|channel=chat": "3",
    "tickets_opened|channel=email": "3",
    "tickets_resolved": "5", "tickets_resolved|channel=chat": "2",
    "tickets_resolved|channel=email": "3",
    "tickets_reopened": "1", "tickets_reopened|channel=email": "1",
    "reopen_rate": "0.2", "reopen_rate|channel=chat": "0",
    "reopen_rate|channel=email": "0.333333",
    "bot_tickets": "2", "bot_handoffs": "1", "bot_handoff_rate": "0.5",
    "bot_tickets|channel=chat": "2", "bot_handoffs|channel=chat": "1",
    "bot_handoff_rate|channel=chat": "0.5",
    # csat: tB 4, tC 2, tA 5 -> 2 of 3
    "csat_responses": "3", "csat_satisfied": "2", "csat": "66.6667",
    "csat_responses|channel=chat": "2", "csat_satisfied|channel=chat": "2",
    "csat|channel=chat": "100",
    "csat_responses|channel=email": "1", "csat|channel=email": "0",
    # nps: tC 6, tA 10, tD 9 -> (2 - 1) / 3
    "nps_responses": "3", "nps_promoters": "2", "nps_detractors": "1", "nps_net": "1",
    "nps": "33.3333",
    "nps_responses|channel=chat": "1", "nps_promoters|channel=chat": "1",
    "nps_net|channel=chat": "1", "nps|channel=chat": "100",
    "nps_responses|channel=email": "2", "nps_promoters|channel=email": "1",
    "nps_detractors|channel=email": "1", "nps|channel=email": "0",
    # ces: tA 2, tD 7
    "ces_responses": "2", "ces_sum": "9", "ces": "4.5",
    "ces_responses|channel=chat": "1", "ces_sum|channel=chat": "2", "ces|channel=chat": "2",
    "ces_responses|channel=email": "1", "ces_sum|channel=email": "7", "ces|channel=email": "7",
    **hist("frt_seconds", [12, 20, 65, 60], {"chat": [65, 60], "email": [12, 20]}),
    **hist("resolution_seconds", [40, 40, 80, 125, 115],
           {"chat": [40, 125], "email": [40, 80, 115]}),
}

# literal spot checks of the percentiles above (nearest rank on buckets)
PERCENTILE_LITERALS = [
    (ALL_EXPECTED, "frt_seconds_p50", 150),         # rank 2 of 12 20 60 65: 20 s
    (ALL_EXPECTED, "frt_seconds_p90", 209),         # rank 4: 65 s
    (ALL_EXPECTED, "resolution_seconds_p50", 220),  # rank 3 of 40 40 80 115 125: 80 s
    (ALL_EXPECTED, "resolution_seconds_p90", 242),  # rank 5: 125 s
    (W2_EXPECTED, "frt_seconds_p50", 205),          # rank 1 of 60 65: 60 s
    (W3_EXPECTED, "resolution_seconds_p99", 242),
]

def diff(expected, actual):
    """Mismatches [(field, want, got)]. Ratios, percentiles and counters:
    exact strings; sums: numbers.
    A field in Redis that is not expected must be a zero counter (written
    when the window closes) or `closed`."""
    bad = []
    for f, want in expected.items():
        got = actual.get(f)
        base = f.split("|", 1)[0]
        if base.endswith("_sum"):
            ok = got is not None and float(got) == float(want)
        else:
            ok = got == want
        if not ok:
            bad.append((f, want, got))
    for f, got in actual.items():
        if f in expected or f == "closed":
            continue
        try:
            zero = float(got) == 0
        except ValueError:
            zero = False
        if not zero:
            bad.append((f, None, got))
    return bad


class BucketArithmetic(unittest.TestCase):
    """The literal bucket indices agree with hist.h's formula (no binary)."""

    def test_buckets(self):
        for v, i in B.items():
            self.assertEqual(bucket(v), i, v)
            self.assertLessEqual(abs(bucket_value(i) - v), 0.01 * v)
            self.assertEqual(P[i], "%.6g" % bucket_value(i), i)

    def test_percentile_literals(self):
        for exp, f, i in PERCENTILE_LITERALS:
            self.assertEqual(exp[f], P[i], f)


class ReferenceAgrees(unittest.TestCase):
    """reference.py computes the same hand values (checks the reference and
    the hand arithmetic against each other; no binary needed). reference.py
    writes percentiles as repr() of the bucket value rather than "%.6g":
    that is allowed for."""

    def test_reference_matches_hand_values(self):
        T0 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000
        recs = reference.records_of([("support", rec) for _, _, rec in scenario_messages(T0)])
        res = reference.compute_all(recs, sizes=("1m", "5m", "1h"), families=("support",),
                                    watermark=T0 + 2 * 3_600_000)
        wins = res.windows["support"]
        for exp, key in ((W1_EXPECTED, ("1m", T0)), (W2_EXPECTED, ("1m", T0 + 60 * S)),
                         (W3_EXPECTED, ("1m", T0 + 120 * S)), (ALL_EXPECTED, ("5m", T0)),
                         (ALL_EXPECTED, ("1h", T0))):
            act = dict(wins[key])
            for f in [f for f in act if f.split("|")[0].endswith(("_p50", "_p90", "_p99"))]:
                act[f] = "%.6g" % float(act[f])
            want = dict(exp)
            self.assertEqual(diff(want, act), [], key)
        self.assertEqual(res.gauges_at(T0 + 2 * 3_600_000)["in_flight|kind=ticket"], 2)


class HandmadeSupport(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = now - now % 3_600_000 - 2 * 3_600_000
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             idle_timeout="10s")
        cls.msgs = scenario_messages(T0)
        snd = H.Sender(cls.broker.bootstrap)
        for tag, key, rec in cls.msgs:
            snd.send(H.TOPIC_SUPPORT, H.encode("support", rec), key=key.encode(), tag=tag)
        snd.flush()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        H.wait_all_closed(r, NS, T0 + LAST_SECOND * S, timeout=90, pipeline=cls.pipe,
                          family="support")
        time.sleep(1)
        key = f"sp:{{{NS}}}:support"
        cls.w = [r.hgetall(f"{key}:1m:{T0 + k * 60 * S}") for k in range(4)]
        cls.m5 = r.hgetall(f"{key}:5m:{T0}")
        cls.h1 = r.hgetall(f"{key}:1h:{T0}")
        cls.gauges = H.gauges(r, NS)
        cls.health = H.health(r, NS)
        cls.state_keys = sorted(r.scan_iter(match=f"sp:{{{NS}}}:state:ticket:*"))
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def check(self, expected, actual, what):
        self.assertTrue(actual, f"{what} missing in Redis")
        bad = diff(expected, actual)
        if bad:
            self.fail(f"{what}: {len(bad)} field(s) differ:\n"
                      + "\n".join(f"  {f}: want {w!r}, got {g!r}" for f, w, g in bad))

    def test_w1_every_field(self):
        self.check(W1_EXPECTED, self.w[0], "1m W1")

    def test_w2_every_field(self):
        self.check(W2_EXPECTED, self.w[1], "1m W2")

    def test_w3_every_field(self):
        self.check(W3_EXPECTED, self.w[2], "1m W3")

    def test_5m_and_1h_every_field(self):
        self.check(ALL_EXPECTED, self.m5, "5m")
        self.check(ALL_EXPECTED, self.h1, "1h")

    def test_zero_fill_after_the_last_event(self):
        # [T0+180 s, T0+240 s) had no event: closed, overall counters at 0
        w4 = self.w[3]
        self.assertEqual(w4.get("closed"), "1", w4)
        for f in ("tickets_opened", "tickets_resolved", "tickets_reopened", "csat_responses",
                  "nps_responses", "nps_net", "ces_responses", "bot_tickets", "bot_handoffs"):
            self.assertEqual(w4.get(f), "0", f)
        for f in ("reopen_rate", "csat", "nps", "ces", "bot_handoff_rate", "frt_seconds_p50"):
            self.assertNotIn(f, w4)

    def test_zero_counters_written_at_close(self):
        # W2 had no opening and W3 no bot ticket: explicit zeros once closed
        self.assertEqual(self.w[1].get("tickets_opened"), "0")
        self.assertEqual(self.w[2].get("bot_tickets"), "0")
        self.assertNotIn("bot_handoff_rate", self.w[2])
        self.assertNotIn("frt_seconds_p50", self.w[2])

    def test_closed_flags(self):
        for k in range(3):
            self.assertEqual(self.w[k].get("closed"), "1", k)
        self.assertEqual(self.m5.get("closed"), "1")
        self.assertEqual(self.h1.get("closed"), "1")

    def test_in_flight_gauge(self):
        # tE and tF are open; tA tB tC resolved; tD resolved, reopened, resolved
        self.assertEqual(self.gauges.get("in_flight|kind=ticket"), "2", self.gauges)

    def test_ticket_state(self):
        want = sorted(f"sp:{{{NS}}}:state:ticket:{t}" for t in ("tA", "tB", "tC", "tD", "tE",
                                                                   "tF"))
        self.assertEqual(self.state_keys, want)

    def test_health(self):
        h = self.health
        n = str(len(self.msgs))
        self.assertEqual(h.get("consumed|topic=store.support"), n, h)
        self.assertEqual(h.get("decoded"), n, h)
        # f1 again (event_id); tE opened twice, tB resolved twice, tC surveyed
        # twice (entity state)
        self.assertEqual(h.get("duplicates"), "4", h)
        self.assertEqual(h.get("late_events", "0"), "0", h)
        self.assertFalse([f for f in h if f.startswith("deadletter|")], h)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
