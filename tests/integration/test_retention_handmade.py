"""Retention counters and cohort tables of small hand-written scenarios,
checked against literal values computed by hand (docs/METRICS.md, retention).

Every order goes to partition 0 of the checkout topic, so the pipeline sees
them in production order. Phase 1 is produced before the pipeline starts;
phase 2 right after phase 1 is committed, while the partitions that have
delivered nothing still hold the watermark (idle_timeout 20 s), so no order
is late however old it is. Then the pipeline goes idle and the windows close.

HandmadeRetention: windows 1h and 1d, windows.timezone Europe/Warsaw,
metrics.retention.horizon 1d. D = a local midnight a few days ago (chosen so
that D - 2 days is in the same month). H1 = [D+1h, D+2h), H3 = [D+3h, D+4h).

  phase 1                                  phase 2
  A  D+1h10 web, D+1h20 app, D+3h05 app    B  D-4h web (earlier than its D+1h30)
  B  D+1h30 app                            E  D+3h20 app (earlier, same hour)
  G  D-26h web, D+1h50 web
  C  D+3h10 web, D+3h15 (same order_id: duplicate)
  E  D+3h50 web
  guests  D+1h40 web, D+1h45 app

Covers: a customer with two orders in one window (counted once, with the
channel of the first), returning within the horizon (A in H3) and not
beyond it (G: its earlier order is 27h50 before), an out-of-order earlier
order turning an already committed open window's customer into returning
(B in H1 and day D), an earlier order in the same window (E: new stays new,
channel stays that of the first arrival), a duplicate ORDER_PLACED, guest
orders per channel, the ratio, per-channel fields and cohort marks.

LiveCohorts: one window size 1d, orders one to four months ago (cohort
hashes do not depend on windows): active_m1/m2/m3, retained_30d/60d/90d, and
a customer whose earlier order arrives later and moves it to the earlier
cohort (withdrawn from the later one after it was committed there).
"""

import datetime
import time
from zoneinfo import ZoneInfo

import harness as H
import reference

TZ = "Europe/Warsaw"
ZI = ZoneInfo(TZ)
MIN = 60_000
HOUR = 3_600_000


def local_ms(y, m, d, hh=0, mm=0):
    return int(datetime.datetime(y, m, d, hh, mm, tzinfo=ZI).timestamp() * 1000)


def local_date(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, ZI).date()


def day_start(ms):
    """Start of the 1d window holding ms: the local midnight."""
    d = local_date(ms)
    return local_ms(d.year, d.month, d.day)


def month_key(ms):
    d = local_date(ms)
    return f"{d.year:04d}-{d.month:02d}"


def pick_day():
    """A local midnight two (or five) days ago such that the day two days
    before it is in the same month."""
    d = datetime.datetime.now(ZI).date() - datetime.timedelta(days=2)
    if d.day <= 2:
        d -= datetime.timedelta(days=3)
    return local_ms(d.year, d.month, d.day)


def add_months(y, m, k):
    t = y * 12 + (m - 1) + k
    return t // 12, t % 12 + 1


def order(eid, t, customer, channel, oid):
    return H.checkout(eid, t, "ORDER_PLACED", None, channel, "desktop", "PL",
                      customer_id=customer, order_id=oid, amount_cents=1000)


def send_all(snd, recs):
    for rec in recs:
        snd.send(H.TOPIC_CHECKOUT, H.encode("checkout", rec), key=b"orders", partition=0,
                 tag=rec["event_id"])
    snd.flush()


def wait_final(r, ns, want, timeout, pipe):
    """Wait until the retention final pointer of every size is at or past
    the window start given for it."""
    def pred():
        pipe.assert_alive()
        for size, start in want.items():
            fp = H.final_pointer(r, ns, size, "retention")
            if fp is None or fp < start:
                return False
        return True
    H.wait_until(pred, timeout, 0.25, f"retention windows final up to {want}")


def check_fields(tc, expected, actual, what):
    tc.assertTrue(actual, f"{what}: window missing in Redis")
    bad = reference.diff_window(expected, actual, family="retention")
    if bad:
        lines = [f"  {f}: want {w!r}, got {g!r}" for f, w, g in bad]
        tc.fail(f"{what}: {len(bad)} field(s) differ:\n" + "\n".join(lines))


def cohort(r, ns, month):
    return r.hgetall(f"sp:{{{ns}}}:cohort:{month}")


def counters(h):
    """A cohort hash with counters as ints, zero counters left out."""
    return {f: int(v) for f, v in h.items() if int(v) != 0}


# ---------------------------------------------------------------------------

NS = "rethand"


def scenario_messages(D):
    p1 = [
        order("a1", D + HOUR + 10 * MIN, "A", "web", "oa1"),
        order("a2", D + HOUR + 20 * MIN, "A", "app", "oa2"),
        order("b1", D + HOUR + 30 * MIN, "B", "app", "ob1"),
        order("g1", D + HOUR + 40 * MIN, None, "web", "og1"),
        order("g2", D + HOUR + 45 * MIN, None, "app", "og2"),
        order("gg1", D - 26 * HOUR, "G", "web", "ogg1"),
        order("gg2", D + HOUR + 50 * MIN, "G", "web", "ogg2"),
        order("a3", D + 3 * HOUR + 5 * MIN, "A", "app", "oa3"),
        order("c1", D + 3 * HOUR + 10 * MIN, "C", "web", "oc1"),
        # the same order again with a new event_id: a duplicate, counted nowhere
        order("c1bis", D + 3 * HOUR + 15 * MIN, "C", "app", "oc1"),
        order("e1", D + 3 * HOUR + 50 * MIN, "E", "web", "oe1"),
    ]
    p2 = [
        order("b0", D - 4 * HOUR, "B", "web", "ob0"),
        order("e0", D + 3 * HOUR + 20 * MIN, "E", "app", "oe0"),
    ]
    return p1, p2


# ---- expected values, by hand (see the module docstring) -------------------

# H1 = [D+1h, D+2h): A (web, first arrival a1; no earlier order: new),
# B (app; after phase 2 its D-4h order is within 1d before D+1h30: returning),
# G (web; its D-26h order is 27h50 before D+1h50, beyond 1d: new), 2 guests.
H1_AFTER_P1 = {
    "ordering_customers": "3", "new_customers": "3", "returning_customers": "0",
    "guest_orders": "2", "repeat_purchase_rate": "0",
    "ordering_customers|channel=web": "2", "new_customers|channel=web": "2",
    "guest_orders|channel=web": "1", "repeat_purchase_rate|channel=web": "0",
    "ordering_customers|channel=app": "1", "new_customers|channel=app": "1",
    "guest_orders|channel=app": "1", "repeat_purchase_rate|channel=app": "0",
}
H1 = {
    "ordering_customers": "3", "returning_customers": "1", "new_customers": "2",
    "guest_orders": "2", "repeat_purchase_rate": "0.333333",
    "ordering_customers|channel=web": "2", "returning_customers|channel=web": "0",
    "new_customers|channel=web": "2", "guest_orders|channel=web": "1",
    "repeat_purchase_rate|channel=web": "0",
    "ordering_customers|channel=app": "1", "returning_customers|channel=app": "1",
    "new_customers|channel=app": "0", "guest_orders|channel=app": "1",
    "repeat_purchase_rate|channel=app": "1",
}
# H3 = [D+3h, D+4h): A (app; orders at D+1h10 and D+1h20 within 1d:
# returning), C (web; its duplicate counts nowhere: new), E (web, first
# arrival e1; e0 moves its earliest time to D+3h20, still no earlier order:
# new, and still web).
H3 = {
    "ordering_customers": "3", "returning_customers": "1", "new_customers": "2",
    "guest_orders": "0", "repeat_purchase_rate": "0.333333",
    "ordering_customers|channel=web": "2", "new_customers|channel=web": "2",
    "returning_customers|channel=web": "0", "repeat_purchase_rate|channel=web": "0",
    "ordering_customers|channel=app": "1", "returning_customers|channel=app": "1",
    "new_customers|channel=app": "0", "repeat_purchase_rate|channel=app": "1",
}
# [D-4h, D-3h) and [D-26h, D-25h): B's and G's earliest orders: new.
ONE_NEW_WEB = {
    "ordering_customers": "1", "returning_customers": "0", "new_customers": "1",
    "guest_orders": "0", "repeat_purchase_rate": "0",
    "ordering_customers|channel=web": "1", "new_customers|channel=web": "1",
    "repeat_purchase_rate|channel=web": "0",
}
# Day D: A (web, f = D+1h10: new), B (app, f = D+1h30, D-4h within 1d:
# returning), G (web: new), C (web: new), E (web, f = D+3h20: new), 2 guests.
DAY_D = {
    "ordering_customers": "5", "returning_customers": "1", "new_customers": "4",
    "guest_orders": "2", "repeat_purchase_rate": "0.2",
    "ordering_customers|channel=web": "4", "new_customers|channel=web": "4",
    "returning_customers|channel=web": "0", "guest_orders|channel=web": "1",
    "repeat_purchase_rate|channel=web": "0",
    "ordering_customers|channel=app": "1", "returning_customers|channel=app": "1",
    "new_customers|channel=app": "0", "guest_orders|channel=app": "1",
    "repeat_purchase_rate|channel=app": "1",
}
# Everything happens in one month (pick_day). After phase 1: customers A B G
# C E; retained (another order within 30 days of the first): A, G.
COHORT_AFTER_P1 = {"customers": 5, "retained_30d": 2, "retained_60d": 2, "retained_90d": 2}
# After phase 2: B's first is D-4h (D+1h30 is another order within 30 days),
# E's first is D+3h20 (D+3h50 is another one): A, B, G, E retained.
COHORT = {"customers": 5, "retained_30d": 4, "retained_60d": 4, "retained_90d": 4}


class HandmadeRetention(H.SPTestCase):

    @classmethod
    def scenario(cls):
        cls.D = D = pick_day()
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             sizes=("1h", "1d"), idle_timeout="20s",
                             extra={"windows": {"timezone": TZ},
                                    "metrics": {"retention": {"horizon": "1d"}}})
        p1, p2 = scenario_messages(D)
        snd = H.Sender(cls.broker.bootstrap)
        send_all(snd, p1)
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        cls.h1_p1 = r.hgetall(f"sp:{{{NS}}}:retention:1h:{D + HOUR}")
        cls.cohort_p1 = cohort(r, NS, month_key(D))
        # phase 2 at once (the idle partitions still hold the watermark)
        send_all(snd, p2)
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        wait_final(r, NS, {"1h": D + 3 * HOUR, "1d": day_start(D + 3 * HOUR)}, 90, cls.pipe)
        time.sleep(1)
        key = f"sp:{{{NS}}}:retention:"
        cls.h1 = r.hgetall(f"{key}1h:{D + HOUR}")
        cls.h3 = r.hgetall(f"{key}1h:{D + 3 * HOUR}")
        cls.hb = r.hgetall(f"{key}1h:{D - 4 * HOUR}")
        cls.hg = r.hgetall(f"{key}1h:{D - 26 * HOUR}")
        cls.dd = r.hgetall(f"{key}1d:{day_start(D)}")
        cls.db = r.hgetall(f"{key}1d:{day_start(D - 4 * HOUR)}")
        cls.dg = r.hgetall(f"{key}1d:{day_start(D - 26 * HOUR)}")
        cls.cohorts = {k.rsplit(":", 1)[1]: r.hgetall(k)
                       for k in r.scan_iter(match=f"sp:{{{NS}}}:cohort:*")}
        cls.customers = sorted(k.rsplit(":", 1)[1]
                               for k in r.scan_iter(match=f"sp:{{{NS}}}:state:customer:*"))
        cls.ttl_a = r.pttl(f"sp:{{{NS}}}:state:customer:A")
        cls.health = H.health(r, NS)
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def test_h1_after_phase1(self):
        check_fields(self, H1_AFTER_P1, self.h1_p1, "H1 after phase 1")

    def test_h1_corrected_by_earlier_order(self):
        check_fields(self, H1, self.h1, "H1")

    def test_h3_two_orders_one_window(self):
        check_fields(self, H3, self.h3, "H3")

    def test_earliest_orders_new(self):
        check_fields(self, ONE_NEW_WEB, self.hb, "1h window of B's D-4h")
        check_fields(self, ONE_NEW_WEB, self.hg, "1h window of G's D-26h")
        check_fields(self, ONE_NEW_WEB, self.db, "day of B's D-4h")
        check_fields(self, ONE_NEW_WEB, self.dg, "day of G's D-26h")

    def test_day_window(self):
        check_fields(self, DAY_D, self.dd, "day D")

    def test_closed(self):
        for name in ("h1", "h3", "hb", "hg", "dd", "db", "dg"):
            self.assertEqual(getattr(self, name).get("closed"), "1", name)

    def test_cohort_after_phase1(self):
        self.assertEqual(counters(self.cohort_p1), COHORT_AFTER_P1)

    def test_cohort(self):
        month = month_key(self.D)
        self.assertEqual(set(self.cohorts), {month}, self.cohorts)
        self.assertEqual(counters(self.cohorts[month]), COHORT)

    def test_customer_state(self):
        self.assertEqual(self.customers, ["A", "B", "C", "E", "G"])
        # state.customer_ttl: 400 days by default
        self.assertGreater(self.ttl_a, 399 * 86_400_000)

    def test_health(self):
        h = self.health
        self.assertEqual(h.get("consumed|topic=store.checkout"), "13", h)
        self.assertEqual(h.get("duplicates"), "1", h)
        self.assertEqual(h.get("late_events", "0"), "0", h)
        self.assertFalse([f for f in h if f.startswith("deadletter|")], h)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


# ---------------------------------------------------------------------------

NS2 = "retcohort"


def cohort_dates():
    """(M0, M1, M2, M3): the months four to one before the current one."""
    now = datetime.datetime.now(ZI)
    return [add_months(now.year, now.month, k) for k in (-4, -3, -2, -1)]


def cohort_messages():
    m0, m1, m2, m3 = cohort_dates()

    def noon(ym, d):
        return local_ms(ym[0], ym[1], d, 12)

    p1 = [
        # P: M0-10, M1-05 (23..26 days later), M3-20
        order("p1", noon(m0, 10), "P", "web", "op1"),
        order("p2", noon(m1, 5), "P", "web", "op2"),
        order("p3", noon(m3, 20), "P", "web", "op3"),
        # Q: M0-28, M2-25 (53..59 days later)
        order("q1", noon(m0, 28), "Q", "app", "oq1"),
        order("q2", noon(m2, 25), "Q", "app", "oq2"),
        # R: M1-15 first seen ...
        order("r2", noon(m1, 15), "R", "web", "or2"),
        # S: M2-10 only
        order("s1", noon(m2, 10), "S", "web", "os1"),
    ]
    # ... then R's earlier order M0-20 (23..26 days before M1-15)
    p2 = [order("r1", noon(m0, 20), "R", "web", "or1")]
    return p1, p2


def ym_key(ym):
    return f"{ym[0]:04d}-{ym[1]:02d}"


class LiveCohorts(H.SPTestCase):

    @classmethod
    def scenario(cls):
        cls.months = m0, m1, m2, m3 = cohort_dates()
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS2, cls.broker.bootstrap, cls.redis.port,
                             sizes=("1d",), idle_timeout="20s",
                             extra={"windows": {"timezone": TZ}})
        p1, p2 = cohort_messages()
        snd = H.Sender(cls.broker.bootstrap)
        send_all(snd, p1)
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS2, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        cls.c1_p1 = cohort(r, NS2, ym_key(m1))
        cls.r_day = day_start(local_ms(m1[0], m1[1], 15, 12))
        cls.r_day_p1 = r.hgetall(f"sp:{{{NS2}}}:retention:1d:{cls.r_day}")
        send_all(snd, p2)
        H.wait_caught_up(r, NS2, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        wait_final(r, NS2, {"1d": day_start(local_ms(m3[0], m3[1], 20, 12))}, 120, cls.pipe)
        time.sleep(1)
        cls.cohorts = {k.rsplit(":", 1)[1]: r.hgetall(k)
                       for k in r.scan_iter(match=f"sp:{{{NS2}}}:cohort:*")}
        key = f"sp:{{{NS2}}}:retention:1d:"
        cls.r_day_end = r.hgetall(f"{key}{cls.r_day}")
        cls.p_day3 = r.hgetall(f"{key}{day_start(local_ms(m3[0], m3[1], 20, 12))}")
        cls.q_day2 = r.hgetall(f"{key}{day_start(local_ms(m2[0], m2[1], 25, 12))}")
        cls.s_day = r.hgetall(f"{key}{day_start(local_ms(m2[0], m2[1], 10, 12))}")
        cls.health = H.health(r, NS2)
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def test_cohort_m0(self):
        # P (M1, M3; 23..26 days), Q (M2; 53..59 days), R (M1; 23..26 days)
        self.assertEqual(counters(self.cohorts.get(ym_key(self.months[0]), {})),
                         {"customers": 3, "active_m1": 2, "active_m2": 1, "active_m3": 1,
                          "retained_30d": 2, "retained_60d": 3, "retained_90d": 3})

    def test_cohort_moved_out(self):
        # R was counted in M1 by phase 1, and withdrawn by its earlier order
        self.assertEqual(counters(self.c1_p1), {"customers": 1})
        self.assertEqual(counters(self.cohorts.get(ym_key(self.months[1]), {})), {})

    def test_cohort_m2_and_no_other(self):
        self.assertEqual(counters(self.cohorts.get(ym_key(self.months[2]), {})),
                         {"customers": 1})
        have = {m for m, h in self.cohorts.items() if counters(h)}
        self.assertEqual(have, {ym_key(self.months[0]), ym_key(self.months[2])})

    def test_windows(self):
        new1 = {"ordering_customers": "1", "new_customers": "1", "returning_customers": "0",
                "repeat_purchase_rate": "0"}
        ret1 = {"ordering_customers": "1", "new_customers": "0", "returning_customers": "1",
                "repeat_purchase_rate": "1"}
        check_fields(self, {**new1, "ordering_customers|channel=web": "1",
                            "new_customers|channel=web": "1",
                            "repeat_purchase_rate|channel=web": "0"},
                     self.r_day_p1, "R's M1-15 after phase 1")
        check_fields(self, {**ret1, "ordering_customers|channel=web": "1",
                            "new_customers|channel=web": "0",
                            "returning_customers|channel=web": "1",
                            "repeat_purchase_rate|channel=web": "1"},
                     self.r_day_end, "R's M1-15")
        check_fields(self, {**ret1, "ordering_customers|channel=web": "1",
                            "returning_customers|channel=web": "1",
                            "repeat_purchase_rate|channel=web": "1"}, self.p_day3, "P's M3-20")
        check_fields(self, {**ret1, "ordering_customers|channel=app": "1",
                            "returning_customers|channel=app": "1",
                            "repeat_purchase_rate|channel=app": "1"}, self.q_day2, "Q's M2-25")
        check_fields(self, {**new1, "ordering_customers|channel=web": "1",
                            "new_customers|channel=web": "1",
                            "repeat_purchase_rate|channel=web": "0"}, self.s_day, "S's M2-10")
        for name in ("r_day_end", "p_day3", "q_day2", "s_day"):
            self.assertEqual(getattr(self, name).get("closed"), "1", name)

    def test_health(self):
        h = self.health
        self.assertEqual(h.get("late_events", "0"), "0", h)
        self.assertFalse([f for f in h if f.startswith("deadletter|")], h)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
