"""Funnel counters of a small hand-written scenario, checked against literal
values computed by hand (not by reference.py).

Four sessions and a guest order in two 1-minute windows two hours ago:
W1 = [T0, T0+60 s), W2 = [T0+60 s, T0+120 s), T0 = an hour boundary.

Phase 1 (clickstream, keyed by session_id) is produced and consumed first;
phase 2 (checkout) follows at once, so every session's first event in a
window is the same whether the pipeline orders by event time or by arrival.
After phase 2 the pipeline goes idle and the windows close by the idle rule.

Covers: a duplicate event_id, a duplicate ORDER_PLACED (same order_id, new
event_id) in the same and in a later window, a EUR order (not in revenue /
aov), a guest order without session_id (orders but no session), a session
seen only in checkout, session-level dims (the session's first event in the
window) against event-level dims (the event's own), aov rounding half away
from zero (3601 / 2 = 1800.5 -> 1801), ratios above 1, zero ratios and
absent ratios (zero denominators).
"""

import time
import unittest

import harness as H
import reference

NS = "handmade"
S = 1000


def scenario_messages(T0):
    """[(tag, topic, key, record)] in production order, phase 1 then phase 2."""
    c, k = H.click, H.checkout
    ck, co = H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT
    phase1 = [
        ("k1", ck, "s1", c("k1", T0 + 1 * S, "PAGE_VIEW", "s1", "web", "desktop", "US")),
        ("k2", ck, "s1", c("k2", T0 + 2 * S, "PRODUCT_VIEW", "s1", "web", "desktop", "US",
                           product_id="p1")),
        ("k3", ck, "s1", c("k3", T0 + 3 * S, "ADD_TO_CART", "s1", "web", "desktop", "US",
                           product_id="p1")),
        ("k3dup", ck, "s1", c("k3", T0 + 3 * S, "ADD_TO_CART", "s1", "web", "desktop", "US",
                              product_id="p1")),
        ("k4", ck, "s2", c("k4", T0 + 5 * S, "PRODUCT_VIEW", "s2", "mobile_app", "mobile", "DE")),
        ("k5", ck, "s2", c("k5", T0 + 6 * S, "ADD_TO_CART", "s2", "mobile_app", "mobile", "DE")),
        # later event of s2 with another device: s2 stays device=mobile in W1
        ("k6", ck, "s2", c("k6", T0 + 7 * S, "PRODUCT_VIEW", "s2", "mobile_app", "tablet", "DE")),
        ("k7", ck, "s3", c("k7", T0 + 8 * S, "PAGE_VIEW", "s3", "social", "tablet", "US")),
        # W2: s1 comes back on a phone: its W2 dims are web/mobile/US
        ("k9", ck, "s1", c("k9", T0 + 65 * S, "PAGE_VIEW", "s1", "web", "mobile", "US")),
        ("k8", ck, "s3", c("k8", T0 + 70 * S, "PRODUCT_VIEW", "s3", "social", "tablet", "US")),
    ]
    phase2 = [
        ("c1", co, "cu1", k("c1", T0 + 10 * S, "CHECKOUT_STARTED", "s1", "web", "desktop", "US",
                            customer_id="cu1", amount_cents=2599)),
        ("c2", co, "cu1", k("c2", T0 + 11 * S, "PAYMENT_SUBMITTED", "s1", "web", "desktop", "US",
                            customer_id="cu1", amount_cents=2599)),
        ("c3", co, "cu1", k("c3", T0 + 12 * S, "ORDER_PLACED", "s1", "web", "desktop", "US",
                            customer_id="cu1", order_id="o1", amount_cents=2599)),
        # same order again with a new event_id: ignored entirely
        ("c4", co, "cu1", k("c4", T0 + 13 * S, "ORDER_PLACED", "s1", "web", "desktop", "US",
                            customer_id="cu1", order_id="o1", amount_cents=2599)),
        # s2 checks out on the web/desktop: event-level dims web/desktop/DE,
        # session-level dims stay mobile_app/mobile/DE
        ("c5", co, "cu2", k("c5", T0 + 20 * S, "CHECKOUT_STARTED", "s2", "web", "desktop", "DE",
                            customer_id="cu2", amount_cents=1000, currency="EUR")),
        ("c6", co, "cu2", k("c6", T0 + 21 * S, "PAYMENT_SUBMITTED", "s2", "web", "desktop", "DE",
                            customer_id="cu2", amount_cents=1000, currency="EUR")),
        ("c7", co, "cu2", k("c7", T0 + 22 * S, "PAYMENT_FAILED", "s2", "web", "desktop", "DE",
                            customer_id="cu2", amount_cents=1000, currency="EUR",
                            failure_reason="card_declined")),
        ("c8", co, "cu2", k("c8", T0 + 23 * S, "PAYMENT_SUBMITTED", "s2", "web", "desktop", "DE",
                            customer_id="cu2", amount_cents=1000, currency="EUR")),
        ("c9", co, "cu2", k("c9", T0 + 24 * S, "ORDER_PLACED", "s2", "web", "desktop", "DE",
                            customer_id="cu2", order_id="o2", amount_cents=1000, currency="EUR")),
        # guest order, no session
        ("c10", co, "guest-o3", k("c10", T0 + 30 * S, "ORDER_PLACED", None, "marketplace",
                                  "desktop", "US", order_id="o3", amount_cents=1002)),
        # a session seen only in checkout
        ("c11", co, "s4", k("c11", T0 + 31 * S, "CHECKOUT_STARTED", "s4", "mobile_app", "mobile",
                            "FR", amount_cents=500)),
        # W2
        ("c12", co, "cu3", k("c12", T0 + 75 * S, "ORDER_PLACED", "s3", "social", "tablet", "US",
                             customer_id="cu3", order_id="o4", amount_cents=700)),
        # o1 again a minute later: still a duplicate
        ("c13", co, "cu1", k("c13", T0 + 80 * S, "ORDER_PLACED", "s1", "web", "desktop", "US",
                             customer_id="cu1", order_id="o1", amount_cents=2599)),
    ]
    return phase1, phase2


# ---- expected values, computed by hand (see the module docstring) ----------

W1_EXPECTED = {
    # overall
    "sessions": "4", "product_view_sessions": "2", "cart_sessions": "2",
    "checkout_sessions": "3", "order_sessions": "2",
    "orders": "3", "orders_store_currency": "2", "revenue_cents": "3601",
    "payments_submitted": "3", "payments_failed": "1",
    "conversion_rate": "0.5", "view_to_cart_rate": "1", "cart_to_checkout_rate": "1.5",
    "checkout_to_order_rate": "0.666667", "payment_failure_rate": "0.333333",
    "aov_cents": "1801",
    "orders|currency=USD": "2", "revenue_cents|currency=USD": "3601",
    "orders|currency=EUR": "1", "revenue_cents|currency=EUR": "1000",
    # channel: sessions s1 web, s2 mobile_app, s3 social, s4 mobile_app
    "sessions|channel=web": "1", "sessions|channel=mobile_app": "2", "sessions|channel=social": "1",
    "product_view_sessions|channel=web": "1", "product_view_sessions|channel=mobile_app": "1",
    "cart_sessions|channel=web": "1", "cart_sessions|channel=mobile_app": "1",
    "checkout_sessions|channel=web": "1", "checkout_sessions|channel=mobile_app": "2",
    "order_sessions|channel=web": "1", "order_sessions|channel=mobile_app": "1",
    "orders|channel=web": "2", "orders|channel=marketplace": "1",
    "orders_store_currency|channel=web": "1", "orders_store_currency|channel=marketplace": "1",
    "revenue_cents|channel=web": "2599", "revenue_cents|channel=marketplace": "1002",
    "payments_submitted|channel=web": "3", "payments_failed|channel=web": "1",
    "conversion_rate|channel=web": "1", "view_to_cart_rate|channel=web": "1",
    "cart_to_checkout_rate|channel=web": "1", "checkout_to_order_rate|channel=web": "1",
    "payment_failure_rate|channel=web": "0.333333", "aov_cents|channel=web": "2599",
    "conversion_rate|channel=mobile_app": "0.5", "view_to_cart_rate|channel=mobile_app": "1",
    "cart_to_checkout_rate|channel=mobile_app": "2",
    "checkout_to_order_rate|channel=mobile_app": "0.5",
    "conversion_rate|channel=social": "0",
    "aov_cents|channel=marketplace": "1002",
    # device: sessions s1 desktop, s2 mobile, s3 tablet, s4 mobile; all orders desktop
    "sessions|device=desktop": "1", "sessions|device=mobile": "2", "sessions|device=tablet": "1",
    "product_view_sessions|device=desktop": "1", "product_view_sessions|device=mobile": "1",
    "cart_sessions|device=desktop": "1", "cart_sessions|device=mobile": "1",
    "checkout_sessions|device=desktop": "1", "checkout_sessions|device=mobile": "2",
    "order_sessions|device=desktop": "1", "order_sessions|device=mobile": "1",
    "orders|device=desktop": "3", "orders_store_currency|device=desktop": "2",
    "revenue_cents|device=desktop": "3601",
    "payments_submitted|device=desktop": "3", "payments_failed|device=desktop": "1",
    "conversion_rate|device=desktop": "1", "view_to_cart_rate|device=desktop": "1",
    "cart_to_checkout_rate|device=desktop": "1", "checkout_to_order_rate|device=desktop": "1",
    "payment_failure_rate|device=desktop": "0.333333", "aov_cents|device=desktop": "1801",
    "conversion_rate|device=mobile": "0.5", "view_to_cart_rate|device=mobile": "1",
    "cart_to_checkout_rate|device=mobile": "2", "checkout_to_order_rate|device=mobile": "0.5",
    "conversion_rate|device=tablet": "0",
    # country: sessions s1 US, s2 DE, s3 US, s4 FR
    "sessions|country=US": "2", "sessions|country=DE": "1", "sessions|country=FR": "1",
    "product_view_sessions|country=US": "1", "product_view_sessions|country=DE": "1",
    "cart_sessions|country=US": "1", "cart_sessions|country=DE": "1",
    "checkout_sessions|country=US": "1", "checkout_sessions|country=DE": "1",
    "checkout_sessions|country=FR": "1",
    "order_sessions|country=US": "1", "order_sessions|country=DE": "1",
    "orders|country=US": "2", "orders|country=DE": "1",
    "orders_store_currency|country=US": "2", "revenue_cents|country=US": "3601",
    "payments_submitted|country=US": "1", "payments_submitted|country=DE": "2",
    "payments_failed|country=DE": "1",
    "conversion_rate|country=US": "0.5", "view_to_cart_rate|country=US": "1",
    "cart_to_checkout_rate|country=US": "1", "checkout_to_order_rate|country=US": "1",
    "payment_failure_rate|country=US": "0", "aov_cents|country=US": "1801",
    "conversion_rate|country=DE": "1", "view_to_cart_rate|country=DE": "1",
    "cart_to_checkout_rate|country=DE": "1", "checkout_to_order_rate|country=DE": "1",
    "payment_failure_rate|country=DE": "0.5",
    "conversion_rate|country=FR": "0", "checkout_to_order_rate|country=FR": "0",
}

W2_EXPECTED = {
    # s1 (k9: web/mobile/US) and s3 (k8: social/tablet/US); order o4 of s3
    "sessions": "2", "product_view_sessions": "1", "cart_sessions": "0",
    "checkout_sessions": "0", "order_sessions": "1",
    "orders": "1", "orders_store_currency": "1", "revenue_cents": "700",
    "payments_submitted": "0", "payments_failed": "0",
    "conversion_rate": "0.5", "view_to_cart_rate": "0", "aov_cents": "700",
    "orders|currency=USD": "1", "revenue_cents|currency=USD": "700",
    "sessions|channel=web": "1", "sessions|channel=social": "1",
    "product_view_sessions|channel=social": "1", "order_sessions|channel=social": "1",
    "orders|channel=social": "1", "orders_store_currency|channel=social": "1",
    "revenue_cents|channel=social": "700",
    "conversion_rate|channel=web": "0",
    "conversion_rate|channel=social": "1", "view_to_cart_rate|channel=social": "0",
    "aov_cents|channel=social": "700",
    "sessions|device=mobile": "1", "sessions|device=tablet": "1",
    "product_view_sessions|device=tablet": "1", "order_sessions|device=tablet": "1",
    "orders|device=tablet": "1", "orders_store_currency|device=tablet": "1",
    "revenue_cents|device=tablet": "700",
    "conversion_rate|device=mobile": "0",
    "conversion_rate|device=tablet": "1", "view_to_cart_rate|device=tablet": "0",
    "aov_cents|device=tablet": "700",
    "sessions|country=US": "2", "product_view_sessions|country=US": "1",
    "order_sessions|country=US": "1", "orders|country=US": "1",
    "orders_store_currency|country=US": "1", "revenue_cents|country=US": "700",
    "conversion_rate|country=US": "0.5", "view_to_cart_rate|country=US": "0",
    "aov_cents|country=US": "700",
}

# the 5m window [T0, T0+5m) holds W1 and W2: overall figures only
M5_EXPECTED_OVERALL = {
    "sessions": "4",                 # s1 s2 s3 s4
    "product_view_sessions": "3",    # s1 s2 s3
    "cart_sessions": "2", "checkout_sessions": "3",
    "order_sessions": "3",           # s1 s2 s3
    "orders": "4", "orders_store_currency": "3", "revenue_cents": "4301",
    "payments_submitted": "3", "payments_failed": "1",
    "conversion_rate": "0.75", "view_to_cart_rate": "0.666667", "cart_to_checkout_rate": "1.5",
    "checkout_to_order_rate": "1", "payment_failure_rate": "0.333333",
    "aov_cents": "1434",             # 4301 / 3 = 1433.67
    "orders|currency=USD": "3", "revenue_cents|currency=USD": "4301",
    "orders|currency=EUR": "1", "revenue_cents|currency=EUR": "1000",
}


def check_fields(tc, expected, actual, overall_only=False):
    if overall_only:
        actual = {f: v for f, v in actual.items() if "|" not in f or "|currency=" in f}
    bad = reference.diff_window(expected, actual)
    if bad:
        lines = [f"  {f}: want {w!r}, got {g!r}" for f, w, g in bad]
        tc.fail(f"{len(bad)} field(s) differ:\n" + "\n".join(lines))


class ReferenceAgrees(unittest.TestCase):
    """The reference implementation computes the same hand values (checks the
    reference and the hand arithmetic against each other; no binary needed)."""

    def test_reference_matches_hand_values(self):
        T0 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000
        p1, p2 = scenario_messages(T0)
        msgs = [(topic, 0, i, key.encode(), H.encode("clickstream" if topic == H.TOPIC_CLICKSTREAM
                                                      else "checkout", rec))
                for i, (tag, topic, key, rec) in enumerate(p1 + p2)]
        wins, stats = reference.compute(msgs, sizes=("1m", "5m"))
        check_fields(self, W1_EXPECTED, wins[("1m", T0)])
        check_fields(self, W2_EXPECTED, wins[("1m", T0 + 60 * S)])
        check_fields(self, M5_EXPECTED_OVERALL, wins[("5m", T0)], overall_only=True)
        self.assertEqual(stats["duplicates"], 3)


class HandmadeFunnel(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = now - now % 3_600_000 - 2 * 3_600_000
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             idle_timeout="10s")
        p1, p2 = scenario_messages(T0)
        snd = H.Sender(cls.broker.bootstrap)
        for tag, topic, key, rec in p1:
            snd.send(topic, H.encode("clickstream", rec), key=key.encode(), tag=tag)
        snd.flush()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        # phase 2 right away (well within idle_timeout, so nothing is late)
        for tag, topic, key, rec in p2:
            snd.send(topic, H.encode("checkout", rec), key=key.encode(), tag=tag)
        snd.flush()
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        H.wait_all_closed(r, NS, T0 + 80 * S, timeout=60, pipeline=cls.pipe)
        time.sleep(1)
        cls.w1 = r.hgetall(f"sp:{{{NS}}}:funnel:1m:{T0}")
        cls.w2 = r.hgetall(f"sp:{{{NS}}}:funnel:1m:{T0 + 60 * S}")
        cls.m5 = r.hgetall(f"sp:{{{NS}}}:funnel:5m:{T0}")
        cls.health = H.health(r, NS)
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def test_w1_every_field(self):
        self.assertTrue(self.w1, "1m window W1 missing in Redis")
        check_fields(self, W1_EXPECTED, self.w1)

    def test_w2_every_field(self):
        self.assertTrue(self.w2, "1m window W2 missing in Redis")
        check_fields(self, W2_EXPECTED, self.w2)

    def test_5m_overall(self):
        self.assertTrue(self.m5, "5m window missing in Redis")
        check_fields(self, M5_EXPECTED_OVERALL, self.m5, overall_only=True)

    def test_closed_flags(self):
        self.assertEqual(self.w1.get("closed"), "1")
        self.assertEqual(self.w2.get("closed"), "1")
        self.assertEqual(self.m5.get("closed"), "1")

    def test_health(self):
        h = self.health
        self.assertEqual(h.get("consumed|topic=store.clickstream"), "10", h)
        self.assertEqual(h.get("consumed|topic=store.checkout"), "13", h)
        self.assertEqual(h.get("decoded"), "23", h)
        # k3 again (event_id) + o1 twice more (order_id)
        self.assertEqual(h.get("duplicates"), "3", h)
        self.assertIn(h.get("late_events", "0"), ("0",), h)
        self.assertFalse([f for f in h if f.startswith("deadletter|")], h)
        self.assertGreaterEqual(int(h.get("commits", "0")), 1, h)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
