"""Self-check of reference.py: small hand-written event lists, values computed
by hand (in the comments) and asserted literally. No Kafka, no Redis, no
binary: this checks the reference itself, the yardstick of the other tests."""

import calendar
import random
import unittest

import harness as H
import reference as R

S = 1000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
# an hour boundary (2026-09-21T13:00:00Z)
T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR
G = (1 + 0.01) / (1 - 0.01)


def utc(y, mo, d, h=0, mi=0):
    return calendar.timegm((y, mo, d, h, mi, 0)) * 1000


def bucket_value(i):
    return 2 * G ** i / (G + 1)


def recs(*items):
    """Records of (stream, event) pairs: partition 0, offsets in list order."""
    return R.records_of(items)


def click(eid, t, typ, sid, ch="web", dev="desktop", co="US", **kw):
    return ("clickstream", H.click(eid, t, typ, sid, ch, dev, co, **kw))


def chk(eid, t, typ, sid, ch="web", dev="desktop", co="US", **kw):
    return ("checkout", H.checkout(eid, t, typ, sid, ch, dev, co, **kw))


def ship(eid, t, typ, shid, carrier, country, promised, **kw):
    return ("shipment", H.shipment(eid, t, typ, shid, "o-" + shid, carrier, country, promised,
                                   **kw))


def sup(eid, t, typ, tid, ch, **kw):
    return ("support", H.support(eid, t, typ, tid, ch, **kw))


class Base(unittest.TestCase):
    def assertFields(self, family, expected, actual):
        bad = R.diff_window(expected, actual, family)
        if bad:
            self.fail("\n".join(f"  {f}: want {w!r}, got {g!r}" for f, w, g in bad))

    def assertHas(self, actual, expected):
        """Every expected field equals (missing ones must be expected None)."""
        for f, v in expected.items():
            self.assertEqual(actual.get(f), v, f)


class HistogramRules(Base):
    def test_bucket_index(self):
        self.assertEqual(R.hist_index(1.0), 0)          # log 1 = 0
        self.assertEqual(R.hist_index(2.0), 35)         # ln 2 / ln g = 34.66
        self.assertEqual(R.hist_index(26.0), 163)       # 162.90
        self.assertEqual(R.hist_index(0), "z")
        self.assertEqual(R.hist_index(-3), "z")
        self.assertEqual(R.hist_index(1e-300), -1500)   # clamped
        self.assertEqual(R.hist_index(1e300), 1500)
        self.assertAlmostEqual(R.hist_value(0), 0.99, places=12)  # 2 / (g + 1)
        self.assertEqual(R.hist_value("z"), 0.0)

    def test_quantiles_nearest_rank_within_one_percent(self):
        rng = random.Random(7)
        vals = [rng.lognormvariate(3, 2) for _ in range(1001)] + [0.0, -1.0]
        buckets = {}
        for v in vals:
            i = R.hist_index(v)
            buckets[i] = buckets.get(i, 0) + 1
        for q in (0.5, 0.9, 0.99):
            exact = R.exact_quantile(vals, q)
            got = R.hist_quantile(buckets, q)
            self.assertLessEqual(abs(got - exact), 0.01 * exact + 1e-12, q)
        # nearest rank: ceil(q n); 0.99 * 100 = 99 exactly, not 100
        self.assertEqual(R.exact_quantile(list(range(1, 101)), 0.99), 99.0)
        self.assertEqual(R.exact_quantile([5, 1, 3, 2], 0.5), 2.0)
        self.assertEqual(R.hist_quantile({"z": 2, 10: 1}, 0.5), 0.0)


class WindowRules(Base):
    def test_day_windows_in_zone(self):
        w = R.Windows("Europe/Warsaw")
        # 2026-02-01 00:30 local (CET, UTC+1) is 2026-01-31 23:30Z
        self.assertEqual(w.start("1d", utc(2026, 1, 31, 23, 30)), utc(2026, 1, 31, 23))
        # DST start: 2026-03-29 is 23 hours long
        s = w.start("1d", utc(2026, 3, 29, 12))
        self.assertEqual(s, utc(2026, 3, 28, 23))
        self.assertEqual(w.end("1d", s) - s, 23 * HOUR)
        # DST end: 2026-10-25 is 25 hours long
        s = w.start("1d", utc(2026, 10, 25, 12))
        self.assertEqual(w.end("1d", s) - s, 25 * HOUR)
        self.assertEqual(w.start("1h", utc(2026, 3, 29, 12, 7)), utc(2026, 3, 29, 12))
        self.assertEqual(R.Windows().start("1d", utc(2026, 3, 29, 12)), utc(2026, 3, 29))

    def test_windows_shared_across_families_zero_fill(self):
        # a clickstream event at T0 and a shipment event at T0 + 3 min: every
        # family has the windows T0 .. T0+3m, with overall counters 0
        res = R.compute_all(recs(click("k1", T0 + 5 * S, "PAGE_VIEW", "s1"),
                                 ship("x1", T0 + 3 * MIN, "DELIVERED", "sh1", "dhl", "PL",
                                      T0 + 10 * MIN)), sizes=("1m",))
        for fam in R.FAMILIES:
            self.assertEqual(sorted(s for (_, s) in res.windows[fam]),
                             [T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN], fam)
        self.assertEqual(res.windows["delivery"][("1m", T0)]["delivered"], "0")
        self.assertEqual(res.windows["delivery"][("1m", T0 + 3 * MIN)]["delivered"], "1")
        self.assertEqual(res.windows["support"][("1m", T0 + MIN)]["tickets_opened"], "0")
        self.assertEqual(res.windows["funnel"][("1m", T0 + 3 * MIN)]["sessions"], "0")
        self.assertEqual(res.windows["funnel"][("1m", T0)]["sessions"], "1")

    def test_final_pointer(self):
        res = R.compute_all([], sizes=("1m",))
        W = T0 + 10 * MIN + 30 * S
        # end + 60 s <= W: the window [T0+8m, T0+9m) is the newest closed
        self.assertEqual(res.final_pointer("funnel", "1m", W), T0 + 8 * MIN)
        self.assertEqual(res.final_pointer("funnel", "1m", T0 + 10 * MIN), T0 + 8 * MIN)
        # abandonment closes an hour later
        self.assertEqual(res.final_pointer("abandonment", "1m", W + HOUR), T0 + 8 * MIN)


def abandonment_events():
    return recs(
        # s1: cart at 10 s, checkout at 20 min, order at 30 min: both converted
        click("a1", T0 + 10 * S, "ADD_TO_CART", "s1", "web", "desktop"),
        chk("a2", T0 + 20 * MIN, "CHECKOUT_STARTED", "s1", "web", "desktop"),
        chk("a3", T0 + 30 * MIN, "ORDER_PLACED", "s1", "web", "desktop", order_id="o1"),
        # s2: cart at 20 s, no order of its own: abandoned. The order o5 is
        # placed by s5 at 1 min; its re-send under s2 (same order_id) is a
        # duplicate and converts nothing
        click("b1", T0 + 20 * S, "ADD_TO_CART", "s2", "mobile_app", "mobile"),
        chk("b2", T0 + 1 * MIN, "ORDER_PLACED", "s5", "web", "desktop", order_id="o5"),
        chk("b3", T0 + 2 * MIN, "ORDER_PLACED", "s2", "web", "desktop", order_id="o5"),
        # s3: cart at 30 s (web/mobile), second ADD_TO_CART at 40 s on a
        # tablet (the cart stays the first), order 61 min after: abandoned
        click("c1", T0 + 30 * S, "ADD_TO_CART", "s3", "web", "mobile"),
        click("c2", T0 + 40 * S, "ADD_TO_CART", "s3", "web", "tablet"),
        chk("c3", T0 + 30 * S + 61 * MIN, "ORDER_PLACED", "s3", "web", "mobile", order_id="o3"),
        # s4: cart at 50 min: deadline T0+110m, pending at W = T0+100m
        click("d1", T0 + 50 * MIN, "ADD_TO_CART", "s4", "web", "desktop"),
        # a checkout without session: not tracked
        chk("e1", T0 + 20 * MIN + 5 * S, "CHECKOUT_STARTED", None, "web", "desktop"),
    )


class Abandonment(Base):
    W = T0 + 100 * MIN

    def setUp(self):
        self.res = R.compute_all(abandonment_events(), sizes=("1m", "1h"), watermark=self.W)
        self.win = self.res.windows["abandonment"]

    def test_cart_window(self):
        self.assertFields("abandonment", {
            "carts": "3", "carts_converted": "1", "carts_abandoned": "2", "carts_pending": "0",
            "checkouts": "0", "checkouts_converted": "0", "checkouts_abandoned": "0",
            "checkouts_pending": "0",
            "cart_abandonment_rate": "0.666667",
            "carts|channel=web": "2", "carts_converted|channel=web": "1",
            "carts_abandoned|channel=web": "1", "cart_abandonment_rate|channel=web": "0.5",
            "carts|channel=mobile_app": "1", "carts_abandoned|channel=mobile_app": "1",
            "cart_abandonment_rate|channel=mobile_app": "1",
            "carts|device=desktop": "1", "carts_converted|device=desktop": "1",
            "cart_abandonment_rate|device=desktop": "0",
            "carts|device=mobile": "2", "carts_abandoned|device=mobile": "2",
            "cart_abandonment_rate|device=mobile": "1",
        }, self.win[("1m", T0)])

    def test_checkout_and_pending_windows(self):
        self.assertFields("abandonment", {
            "checkouts": "1", "checkouts_converted": "1", "checkout_abandonment_rate": "0",
            "checkouts|channel=web": "1", "checkouts_converted|channel=web": "1",
            "checkout_abandonment_rate|channel=web": "0",
            "checkouts|device=desktop": "1", "checkouts_converted|device=desktop": "1",
            "checkout_abandonment_rate|device=desktop": "0",
        }, self.win[("1m", T0 + 20 * MIN)])
        # pending only: no rate (zero denominator)
        self.assertFields("abandonment", {
            "carts": "1", "carts_pending": "1",
            "carts|channel=web": "1", "carts_pending|channel=web": "1",
            "carts|device=desktop": "1", "carts_pending|device=desktop": "1",
        }, self.win[("1m", T0 + 50 * MIN)])
        w = self.win[("1h", T0)]
        self.assertHas(w, {"carts": "4", "carts_converted": "1", "carts_abandoned": "2",
                           "carts_pending": "1", "cart_abandonment_rate": "0.666667",
                           "checkouts": "1", "checkout_abandonment_rate": "0"})

    def test_gauges_and_later_watermark(self):
        self.assertEqual(self.res.gauges["in_flight|kind=cart"], 1)
        self.assertEqual(self.res.gauges["in_flight|kind=checkout"], 0)
        later = R.compute_all(abandonment_events(), sizes=("1h",), watermark=T0 + 110 * MIN)
        self.assertHas(later.windows["abandonment"][("1h", T0)],
                       {"carts_abandoned": "3", "carts_pending": "0",
                        "cart_abandonment_rate": "0.75"})
        self.assertEqual(later.gauges["in_flight|kind=cart"], 0)

    def test_duplicate_order_in_health(self):
        self.assertEqual(self.res.stats["duplicates"], 1)
        self.assertEqual(self.res.stats["duplicates_by_kind"], {"order_placed": 1})

    def test_dimension_cap(self):
        res = R.compute_all(recs(
            click("a", T0 + 1 * S, "ADD_TO_CART", "s1", "web", "desktop"),
            click("b", T0 + 2 * S, "ADD_TO_CART", "s2", "social", "desktop"),
            click("c", T0 + 3 * S, "ADD_TO_CART", "s3", "mobile_app", "desktop"),
            click("d", T0 + 4 * S, "ADD_TO_CART", "s4", "marketplace", "desktop")),
            sizes=("1m",), max_dimension_values=2)
        w = res.windows["abandonment"][("1m", T0)]
        self.assertHas(w, {"carts|channel=web": "1", "carts|channel=social": "1",
                           "carts|channel=__other__": "2", "carts|device=desktop": "4",
                           "carts_abandoned|channel=__other__": "2",
                           "cart_abandonment_rate|channel=__other__": "1",
                           "carts|channel=mobile_app": None})


def delivery_events():
    return recs(
        # sh1 (dhl, PL): dispatched 26 h after the order (SLA breach),
        # delivered 2.5 min after the promise (late), delivered again (duplicate)
        ship("s1a", T0, "LABEL_CREATED", "sh1", "dhl", "PL", T0 + 10 * MIN),
        ship("s1b", T0 + 1 * MIN, "DISPATCHED", "sh1", "dhl", "PL", T0 + 10 * MIN,
             order_placed_time=T0 + 1 * MIN - 26 * HOUR),
        ship("s1c", T0 + 12 * MIN + 30 * S, "DELIVERED", "sh1", "dhl", "PL", T0 + 10 * MIN,
             order_placed_time=T0 + 1 * MIN - 26 * HOUR),
        ship("s1d", T0 + 13 * MIN, "DELIVERED", "sh1", "dhl", "PL", T0 + 10 * MIN),
        # sh2 (ups, DE): dispatched 2 h after the order, delivered on time
        ship("s2a", T0 + 70 * S, "DISPATCHED", "sh2", "ups", "DE", T0 + 20 * MIN,
             order_placed_time=T0 + 70 * S - 2 * HOUR),
        ship("s2b", T0 + 760 * S, "DELIVERED", "sh2", "ups", "DE", T0 + 20 * MIN,
             order_placed_time=T0 + 70 * S - 2 * HOUR),
        # sh3 (dhl, PL): failed, returned, returned again (duplicate)
        ship("s3a", T0 + 770 * S, "DELIVERY_FAILED", "sh3", "dhl", "PL", T0 + 30 * MIN),
        ship("s3b", T0 + 40 * MIN, "RETURNED", "sh3", "dhl", "PL", T0 + 30 * MIN),
        ship("s3c", T0 + 41 * MIN, "RETURNED", "sh3", "dhl", "PL", T0 + 30 * MIN),
        # sh4 (dhl, DE): dispatched without order_placed_time, promised 90 min
        ship("s4a", T0 + 80 * S, "DISPATCHED", "sh4", "dhl", "DE", T0 + 90 * MIN),
        # sh5: promised 110 min, never out for delivery: at risk at W = 100 min
        ship("s5a", T0 + 2 * MIN, "LABEL_CREATED", "sh5", "ups", "PL", T0 + 110 * MIN),
        # sh6: out for delivery, promise moved to 120 min by its latest event
        ship("s6a", T0 + 2 * MIN, "LABEL_CREATED", "sh6", "ups", "PL", T0 + 105 * MIN),
        ship("s6b", T0 + 50 * MIN, "OUT_FOR_DELIVERY", "sh6", "ups", "PL", T0 + 120 * MIN),
    )


class Delivery(Base):
    W = T0 + 100 * MIN

    def setUp(self):
        self.res = R.compute_all(delivery_events(), sizes=("1m", "1h"), watermark=self.W)
        self.win = self.res.windows["delivery"]

    def test_dispatch_window(self):
        w = self.win[("1m", T0 + MIN)]
        # latencies 26 h (bucket ceil(ln 26 / ln g) = 163) and 2 h (bucket 35)
        self.assertFields("delivery", {
            "dispatched": "3", "dispatch_sla_breaches": "1",
            "dispatched|carrier=dhl": "2", "dispatched|carrier=ups": "1",
            "dispatched|country=PL": "1", "dispatched|country=DE": "2",
            "dispatch_sla_breaches|carrier=dhl": "1", "dispatch_sla_breaches|country=PL": "1",
            "dispatch_latency_hours_count": "2", "dispatch_latency_hours_sum_ms": "100800000",
            "dispatch_latency_hours_count|carrier=dhl": "1",
            "dispatch_latency_hours_count|carrier=ups": "1",
            "dispatch_latency_hours_count|country=PL": "1",
            "dispatch_latency_hours_count|country=DE": "1",
            "dispatch_latency_hours_sum_ms|carrier=dhl": "93600000",
            "dispatch_latency_hours_sum_ms|carrier=ups": "7200000",
            "dispatch_latency_hours_sum_ms|country=PL": "93600000",
            "dispatch_latency_hours_sum_ms|country=DE": "7200000",
            "dispatch_latency_hours:b35": "1", "dispatch_latency_hours:b163": "1",
            "dispatch_latency_hours_p50": repr(bucket_value(35)),
            "dispatch_latency_hours_p90": repr(bucket_value(163)),
            "dispatch_latency_hours_p99": repr(bucket_value(163)),
            "delay_minutes_count": "0", "delivery_time_hours_count": "0",
        }, w)
        self.assertAlmostEqual(float(w["dispatch_latency_hours_p50"]), 1.99366, places=4)
        q = self.res.quantiles["delivery"][("1m", T0 + MIN)]
        self.assertEqual(q["dispatch_latency_hours_p50"], 2.0)
        self.assertEqual(q["dispatch_latency_hours_p90"], 26.0)

    def test_delivery_window(self):
        w = self.win[("1m", T0 + 12 * MIN)]
        # sh1 late by 2.5 min (bucket 46), 26 h 11.5 min after its order
        # (26.1917 h, bucket 164); sh2 on time, 2 h 11.5 min (2.19167 h, bucket 40)
        self.assertFields("delivery", {
            "delivered": "2", "delivered_late": "1", "delivery_delay_rate": "0.5",
            "delivery_failed": "1",
            "delivered|carrier=dhl": "1", "delivered|carrier=ups": "1",
            "delivered|country=PL": "1", "delivered|country=DE": "1",
            "delivered_late|carrier=dhl": "1", "delivered_late|country=PL": "1",
            "delivery_delay_rate|carrier=dhl": "1", "delivery_delay_rate|carrier=ups": "0",
            "delivery_delay_rate|country=PL": "1", "delivery_delay_rate|country=DE": "0",
            "delivery_failed|carrier=dhl": "1", "delivery_failed|country=PL": "1",
            "delay_minutes_count": "1", "delay_minutes_sum_ms": "150000", "delay_minutes:b46": "1",
            "delay_minutes_count|carrier=dhl": "1", "delay_minutes_sum_ms|carrier=dhl": "150000",
            "delay_minutes_count|country=PL": "1", "delay_minutes_sum_ms|country=PL": "150000",
            "delay_minutes_p50": repr(bucket_value(46)),
            "delay_minutes_p90": repr(bucket_value(46)),
            "delay_minutes_p99": repr(bucket_value(46)),
            "delivery_time_hours_count": "2", "delivery_time_hours_sum_ms": "102180000",
            "delivery_time_hours:b164": "1", "delivery_time_hours:b40": "1",
            "delivery_time_hours_count|carrier=dhl": "1",
            "delivery_time_hours_count|carrier=ups": "1",
            "delivery_time_hours_count|country=PL": "1",
            "delivery_time_hours_count|country=DE": "1",
            "delivery_time_hours_sum_ms|carrier=dhl": "94290000",
            "delivery_time_hours_sum_ms|carrier=ups": "7890000",
            "delivery_time_hours_sum_ms|country=PL": "94290000",
            "delivery_time_hours_sum_ms|country=DE": "7890000",
            "delivery_time_hours_p50": repr(bucket_value(40)),
            "delivery_time_hours_p90": repr(bucket_value(164)),
            "delivery_time_hours_p99": repr(bucket_value(164)),
            "dispatch_latency_hours_count": "0",
        }, w)

    def test_hour_window_and_duplicates(self):
        self.assertHas(self.win[("1h", T0)], {
            "delivered": "2", "delivered_late": "1", "dispatched": "3",
            "dispatch_sla_breaches": "1", "delivery_failed": "1", "returned": "1",
            "delivery_delay_rate": "0.5"})
        self.assertEqual(self.win[("1m", T0 + 40 * MIN)]["returned"], "1")
        self.assertEqual(self.win[("1m", T0 + 13 * MIN)]["delivered"], "0")
        self.assertEqual(self.res.stats["duplicates_by_kind"], {"delivered": 1, "returned": 1})

    def test_gauges(self):
        # in flight: sh4, sh5, sh6; overdue: sh4 (90 < 100); at risk: sh5
        g = self.res.gauges
        self.assertEqual(g["in_flight|kind=shipment"], 3)
        self.assertEqual(g["overdue_in_flight"], 1)
        self.assertEqual(g["at_risk"], 1)
        # 59 days on: all three overdue, none at risk; 61 days on: given up
        g = self.res.gauges_at(T0 + 59 * DAY)
        self.assertEqual((g["in_flight|kind=shipment"], g["overdue_in_flight"], g["at_risk"]),
                         (3, 3, 0))
        g = self.res.gauges_at(T0 + 61 * DAY)
        self.assertEqual((g["in_flight|kind=shipment"], g["overdue_in_flight"]), (0, 0))
        # W = 0 min: sh5 (110) and sh4 (90) within 24 h, sh6 out for delivery
        g = self.res.gauges_at(T0)
        self.assertEqual((g["overdue_in_flight"], g["at_risk"]), (0, 2))


def retention_events():
    c = lambda eid, t, cust, ch="web", **kw: chk(eid, t, "ORDER_PLACED", None, ch, "desktop",
                                                 "PL", order_id="o-" + eid, customer_id=cust,
                                                 **kw)
    return recs(
        # c1: first order 2026-02-01 00:30 Warsaw (Jan 31 23:30Z): cohort
        # 2026-02; back 40.4 days later in March
        c("r1", utc(2026, 1, 31, 23, 30), "c1"),
        c("r2", utc(2026, 3, 13, 10), "c1"),
        # c2: Feb 10, Feb 20 (10 days), May 5 (3rd month after February)
        c("r3", utc(2026, 2, 10, 10), "c2"),
        c("r4", utc(2026, 2, 20, 10), "c2"),
        c("r5", utc(2026, 5, 5, 10), "c2"),
        # c3: Feb 15, an imported order on 2025-12-01
        c("r6", utc(2026, 2, 15, 10), "c3"),
        # c4: Feb 10 11:00, an imported order more than a year before
        c("r7", utc(2026, 2, 10, 11), "c4", "mobile_app"),
        # c5: two orders in one window; the first (web) gives the channel
        c("r8", utc(2026, 2, 10, 10, 10), "c5", "web"),
        c("r9", utc(2026, 2, 10, 10, 20), "c5", "mobile_app"),
        # a guest order
        c("r10", utc(2026, 2, 10, 10, 30), None, "web"),
    )


IMPORTED = [("c3", utc(2025, 12, 1, 12)), ("c4", utc(2024, 1, 10, 12))]


class Retention(Base):
    def setUp(self):
        self.res = R.compute_all(retention_events(), sizes=("1h", "1d"), tz="Europe/Warsaw",
                                 families=("retention",), imported_orders=IMPORTED)
        self.win = self.res.windows["retention"]

    def test_day_window_feb_10(self):
        # c2, c4 (previous order 761 days ago > 365), c5: all new; one guest
        self.assertFields("retention", {
            "ordering_customers": "3", "returning_customers": "0", "new_customers": "3",
            "guest_orders": "1", "repeat_purchase_rate": "0",
            "ordering_customers|channel=web": "2", "new_customers|channel=web": "2",
            "ordering_customers|channel=mobile_app": "1",
            "new_customers|channel=mobile_app": "1",
            "repeat_purchase_rate|channel=web": "0",
            "repeat_purchase_rate|channel=mobile_app": "0",
            "guest_orders|channel=web": "1",
        }, self.win[("1d", utc(2026, 2, 9, 23))])
        self.assertHas(self.win[("1h", utc(2026, 2, 10, 10))],
                       {"ordering_customers": "2", "new_customers": "2", "guest_orders": "1"})

    def test_returning(self):
        for day, cust in ((utc(2026, 2, 19, 23), "c2"), (utc(2026, 2, 14, 23), "c3 (imported)"),
                          (utc(2026, 3, 12, 23), "c1"), (utc(2026, 5, 4, 22), "c2")):
            self.assertHas(self.win[("1d", day)], {
                "ordering_customers": "1", "returning_customers": "1", "new_customers": "0",
                "repeat_purchase_rate": "1", "returning_customers|channel=web": "1"})
        # c1's first order: Warsaw's Feb 1 starts at Jan 31 23:00Z
        self.assertHas(self.win[("1d", utc(2026, 1, 31, 23))],
                       {"ordering_customers": "1", "new_customers": "1"})
        # a window without orders (zero-fill)
        self.assertHas(self.win[("1d", utc(2026, 2, 1, 23))],
                       {"ordering_customers": "0", "repeat_purchase_rate": None})

    def test_cohorts(self):
        zero = {f: "0" for f in R.COHORT_FIELDS}
        want = {
            # c1 (active in March: m1; retained within 60 and 90 days, not 30),
            # c2 (May: m3; retained within 30, 60, 90 days), c5 (a second
            # order 10 minutes after the first: retained within 30, 60, 90)
            "2026-02": dict(zero, customers="3", active_m1="1", active_m3="1", retained_30d="2",
                            retained_60d="3", retained_90d="3"),
            # c4: first order 2024-01 (imported), Feb 2026 is month 25
            "2024-01": dict(zero, customers="1"),
            # c3: imported Dec 1, order Feb 15 (m2, 76 days)
            "2025-12": dict(zero, customers="1", active_m2="1", retained_90d="1"),
        }
        self.assertEqual(self.res.cohorts, want)
        lines, n = R.compare_cohorts(want, {"2026-02": want["2026-02"],
                                            "2024-01": {"customers": "1"},
                                            "2025-12": want["2025-12"]})
        self.assertEqual(n, 0, lines)
        lines, n = R.compare_cohorts(want, {"2026-02": want["2026-02"]})
        # two missing cohorts: 2024-01 customers; 2025-12 customers, m2, 90d
        self.assertEqual(n, 4, lines)


def support_events():
    return recs(
        # t1 (chat): bot reply, human reply at 2 min (frt 120 s, handoff),
        # resolved at 5 min (300 s), reopened, resolved again at 8 min (480 s),
        # survey; a second survey is a duplicate
        sup("t1a", T0, "TICKET_OPENED", "t1", "chat"),
        sup("t1b", T0 + 10 * S, "AGENT_REPLIED", "t1", "chat", is_bot=True),
        sup("t1c", T0 + 20 * S, "CUSTOMER_REPLIED", "t1", "chat"),
        sup("t1d", T0 + 2 * MIN, "AGENT_REPLIED", "t1", "chat"),
        sup("t1e", T0 + 5 * MIN, "TICKET_RESOLVED", "t1", "chat"),
        sup("t1f", T0 + 6 * MIN, "TICKET_REOPENED", "t1", "chat"),
        sup("t1g", T0 + 8 * MIN, "TICKET_RESOLVED", "t1", "chat"),
        sup("t1h", T0 + 9 * MIN, "SURVEY_RESPONSE", "t1", "chat", csat=5, nps=9, ces=2),
        sup("t1i", T0 + 9 * MIN + 30 * S, "SURVEY_RESPONSE", "t1", "chat", csat=1, nps=0),
        # t2 (email): only a bot reply, resolved at 5:10 (280 s): bot ticket
        # not handed off; survey without ces
        sup("t2a", T0 + 30 * S, "TICKET_OPENED", "t2", "email"),
        sup("t2b", T0 + 40 * S, "AGENT_REPLIED", "t2", "email", is_bot=True),
        sup("t2c", T0 + 310 * S, "TICKET_RESOLVED", "t2", "email"),
        sup("t2d", T0 + 9 * MIN + 10 * S, "SURVEY_RESPONSE", "t2", "email", csat=3, nps=4),
        # t3 (chat): a human reply before the opening (ignored), the opening
        # at 55 s and again (duplicate), a human reply at 2:30 (frt 95 s)
        sup("t3a", T0 + 50 * S, "AGENT_REPLIED", "t3", "chat"),
        sup("t3b", T0 + 55 * S, "TICKET_OPENED", "t3", "chat"),
        sup("t3c", T0 + 56 * S, "TICKET_OPENED", "t3", "chat"),
        sup("t3d", T0 + 150 * S, "AGENT_REPLIED", "t3", "chat"),
        # t4 (phone): resolved, never opened (no resolution time)
        sup("t4a", T0 + 320 * S, "TICKET_RESOLVED", "t4", "phone"),
        # t5 (chat): opened; a reopen of an unresolved ticket counts nothing
        sup("t5a", T0 + 1 * MIN, "TICKET_OPENED", "t5", "chat"),
        sup("t5b", T0 + 370 * S, "TICKET_REOPENED", "t5", "chat"),
    )


class Support(Base):
    def setUp(self):
        self.res = R.compute_all(support_events(), sizes=("1m", "1h"), watermark=T0 + HOUR)
        self.win = self.res.windows["support"]

    def test_opened(self):
        self.assertFields("support", {
            "tickets_opened": "3", "tickets_opened|channel=chat": "2",
            "tickets_opened|channel=email": "1",
            "frt_seconds_count": "0", "resolution_seconds_count": "0"}, self.win[("1m", T0)])
        self.assertEqual(self.win[("1m", T0 + MIN)]["tickets_opened"], "1")

    def test_first_response_and_handoff(self):
        # frt 120 s (bucket 240) and 95 s (bucket 228), both chat
        w = self.win[("1m", T0 + 2 * MIN)]
        self.assertFields("support", {
            "frt_seconds_count": "2", "frt_seconds_sum_ms": "215000",
            "frt_seconds:b228": "1", "frt_seconds:b240": "1",
            "frt_seconds_count|channel=chat": "2", "frt_seconds_sum_ms|channel=chat": "215000",
            "frt_seconds_p50": repr(bucket_value(228)),
            "frt_seconds_p90": repr(bucket_value(240)),
            "frt_seconds_p99": repr(bucket_value(240)),
            "bot_tickets": "1", "bot_handoffs": "1", "bot_handoff_rate": "1",
            "bot_tickets|channel=chat": "1", "bot_handoffs|channel=chat": "1",
            "bot_handoff_rate|channel=chat": "1",
            "resolution_seconds_count": "0",
        }, w)
        self.assertAlmostEqual(float(w["frt_seconds_p50"]), 94.642, places=3)

    def test_resolutions(self):
        # t1 300 s (bucket 286), t2 280 s (bucket 282, bot-only: not handed
        # off), t4 without opening
        self.assertFields("support", {
            "tickets_resolved": "3", "reopen_rate": "0",
            "tickets_resolved|channel=chat": "1", "tickets_resolved|channel=email": "1",
            "tickets_resolved|channel=phone": "1",
            "reopen_rate|channel=chat": "0", "reopen_rate|channel=email": "0",
            "reopen_rate|channel=phone": "0",
            "resolution_seconds_count": "2", "resolution_seconds_sum_ms": "580000",
            "resolution_seconds:b282": "1", "resolution_seconds:b286": "1",
            "resolution_seconds_count|channel=chat": "1",
            "resolution_seconds_count|channel=email": "1",
            "resolution_seconds_sum_ms|channel=chat": "300000",
            "resolution_seconds_sum_ms|channel=email": "280000",
            "resolution_seconds_p50": repr(bucket_value(282)),
            "resolution_seconds_p90": repr(bucket_value(286)),
            "resolution_seconds_p99": repr(bucket_value(286)),
            "bot_tickets": "1", "bot_handoffs": "0", "bot_handoff_rate": "0",
            "bot_tickets|channel=email": "1", "bot_handoff_rate|channel=email": "0",
            "frt_seconds_count": "0",
        }, self.win[("1m", T0 + 5 * MIN)])
        # reopened with no resolution in the window: no reopen_rate
        self.assertFields("support", {
            "tickets_reopened": "1", "tickets_reopened|channel=chat": "1",
            "frt_seconds_count": "0", "resolution_seconds_count": "0",
        }, self.win[("1m", T0 + 6 * MIN)])
        self.assertHas(self.win[("1m", T0 + 8 * MIN)], {
            "tickets_resolved": "1", "reopen_rate": "0", "resolution_seconds_count": "1",
            "resolution_seconds_sum_ms": "480000", "resolution_seconds:b309": "1"})

    def test_surveys(self):
        self.assertFields("support", {
            "csat_responses": "2", "csat_satisfied": "1", "csat": "50",
            "nps_responses": "2", "nps_promoters": "1", "nps_detractors": "1", "nps": "0",
            "ces_responses": "1", "ces_sum": "2", "ces": "2",
            "csat_responses|channel=chat": "1", "csat_satisfied|channel=chat": "1",
            "csat|channel=chat": "100", "nps_responses|channel=chat": "1",
            "nps_promoters|channel=chat": "1", "nps|channel=chat": "100",
            "ces_responses|channel=chat": "1", "ces_sum|channel=chat": "2",
            "ces|channel=chat": "2",
            "csat_responses|channel=email": "1", "csat|channel=email": "0",
            "nps_responses|channel=email": "1", "nps_detractors|channel=email": "1",
            "nps|channel=email": "-100",
            "nps_net|channel=chat": "1", "nps_net|channel=email": "-1",
            "frt_seconds_count": "0", "resolution_seconds_count": "0",
        }, self.win[("1m", T0 + 9 * MIN)])

    def test_hour_window_gauge_duplicates(self):
        self.assertHas(self.win[("1h", T0)], {
            "tickets_opened": "4", "tickets_resolved": "4", "tickets_reopened": "1",
            "reopen_rate": "0.25", "frt_seconds_count": "2", "resolution_seconds_count": "3",
            "resolution_seconds_sum_ms": "1060000", "bot_tickets": "2", "bot_handoffs": "1",
            "bot_handoff_rate": "0.5", "csat": "50", "nps": "0", "ces": "2"})
        self.assertEqual(self.res.gauges["in_flight|kind=ticket"], 2)  # t3, t5
        self.assertEqual(self.res.stats["duplicates_by_kind"],
                         {"survey_response": 1, "ticket_opened": 1})


class Comparison(Base):
    """compare_family flags what it must."""

    def setUp(self):
        self.res = R.compute_all(delivery_events(), sizes=("1m",), watermark=T0 + HOUR)
        self.exp = self.res.windows["delivery"]
        self.q = self.res.quantiles["delivery"]
        # a faithful copy of the reference as Redis would hold it, all closed
        self.act = {k: dict(v, closed="1") for k, v in self.exp.items()}
        self.fp = {"1m": max(s for (_, s) in self.exp)}

    def run_cmp(self, **kw):
        return R.compare_family("delivery", self.exp, self.act, ("1m",), self.fp,
                                quantiles=self.q, **kw)

    def test_identical(self):
        lines, n = self.run_cmp()
        self.assertEqual(n, 0, lines)

    def test_detects(self):
        k = ("1m", T0 + 12 * MIN)
        self.act[k]["delivered"] = "3"
        self.act[k]["delivery_delay_rate"] = "0.50"
        self.act[k]["delay_minutes_sum_ms"] = "150001"  # one millisecond off
        self.act[k]["returned|carrier=dhl"] = "0"        # a per-dimension 0: absent

        # within 1e-6 of the bucket value, but not of the pipeline's formula
        self.act[k]["delay_minutes_p50"] = "2.5"
        self.act[k]["bogus"] = "1"
        del self.act[("1m", T0 + 5 * MIN)]                 # a zero-fill window
        del self.act[("1m", T0 + 6 * MIN)]["delivered"]    # zero-fill without counters
        self.act[("1m", T0 + 7 * MIN)]["closed"] = "0"
        lines, n = self.run_cmp()
        text = "\n".join(lines)
        for needle in ("delivered: want '2' got '3'", "delivery_delay_rate", "delay_minutes_sum_ms",
                       "returned|carrier=dhl",
                       "delay_minutes_p50", "bogus", f"{T0 + 5 * MIN}: missing in Redis",
                       "zero-fill window lacks delivered", "closed='0'"):
            self.assertIn(needle, text)
        self.assertEqual(n, 9, text)

    def test_percentile_far_from_exact(self):
        # a bucket value must also be within 1 % of the exact quantile
        self.assertEqual(R.diff_window({"delay_minutes_p50": "98.5"},
                                       {"delay_minutes_p50": "98.5"}, "delivery",
                                       {"delay_minutes_p50": 100.0})[0][0], "delay_minutes_p50")
        self.assertEqual(R.diff_window({"delay_minutes_p50": "99.5"},
                                       {"delay_minutes_p50": "99.5"}, "delivery",
                                       {"delay_minutes_p50": 100.0}), [])

    def test_open_and_late_windows(self):
        self.fp = {"1m": T0 + 10 * MIN}
        for s in range(T0 + 11 * MIN, T0 + 51 * MIN, MIN):
            self.act[("1m", s)].pop("closed")
        lines, n = self.run_cmp(require_all_closed=False)
        self.assertEqual(n, 0, lines)
        lines, n = self.run_cmp()
        self.assertEqual(n, 1, lines)  # final pointer short of the last window
        # a count in a window after everything
        self.act[("1m", T0 + 55 * MIN)] = {"returned": "1"}
        self.fp = {"1m": T0 + 50 * MIN}
        for s in range(T0 + 11 * MIN, T0 + 51 * MIN, MIN):
            self.act[("1m", s)]["closed"] = "1"
        lines, n = self.run_cmp()
        self.assertEqual(n, 1, lines)

    def test_gauges(self):
        lines, n = R.compare_gauges(self.res.gauges, {"in_flight|kind=shipment": "3",
                                                      "overdue_in_flight": "0",
                                                      "at_risk": "1"})
        # at W = 60 min: nothing overdue (sh4 is promised at 90 min); at
        # risk: sh4 and sh5 (sh6 is out for delivery), so at_risk 1 is wrong
        self.assertEqual(self.res.gauges["overdue_in_flight"], 0)
        self.assertEqual(n, 1, lines)
        self.assertIn("at_risk", lines[0])

    def test_legacy_funnel_api(self):
        msgs = [(H.TOPIC_CLICKSTREAM, 0, 0, b"s1",
                 H.encode("clickstream", H.click("k1", T0 + S, "PAGE_VIEW", "s1", "web",
                                                 "desktop", "US"))),
                (H.TOPIC_SHIPMENTS, 0, 0, b"o",
                 H.encode("shipment", H.shipment("x", T0, "DELIVERED", "sh", "o", "dhl", "PL",
                                                 T0)))]
        wins, stats = R.compute(msgs, sizes=("1m",))
        self.assertEqual(list(wins), [("1m", T0)])
        self.assertEqual(wins[("1m", T0)]["sessions"], "1")
        self.assertEqual(stats["decoded"], 1)
        res = R.compute_from_messages(msgs, sizes=("1m",))
        self.assertEqual(res.stats["decoded"], 2)
        self.assertEqual(res.windows["delivery"][("1m", T0)]["delivered"], "1")


if __name__ == "__main__":
    H.main()
