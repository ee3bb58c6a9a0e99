"""State expiry end to end (docs/METRICS.md "Entity state", SPEC §3 bounded
state): open tickets and shipments without news are given up when the
watermark reaches their deadline (they leave the gauges, their state and
timer are deleted), a ticket's later news starts afresh, and every entity
key in Redis carries a TTL no longer than its kind allows. Every figure is
computed by hand below.

One partition per topic and idle_timeout 10m, so the watermark is exactly
min over the four topics of (newest event time) - 5 s and moves only when
every topic gets an event. state.ticket_ttl 1h, state.shipment_ttl 2h,
state.ttl 10m. Times are minutes after T0 (an hour boundary 5 h ago).

Phase 1 (newest event of every topic at 65, W1 = 65 - 5 s):
  support   t1 OPENED 0, human reply 10      -> open, give-up 10 + 60 = 70
            t2 OPENED 5, RESOLVED 6          -> not open, no timer
            t3 OPENED 65                     -> open, give-up 125
  shipments s1 DISPATCHED 0 (promised 30), IN_TRANSIT 65 -> in flight, overdue,
                                                give-up max(65, 30) + 120 = 185
            s2 DISPATCHED 0 (promised 30), DELIVERED 40 -> not in flight,
                                                give-up 40 + 120 = 160
  gauges: in_flight|kind=ticket 2, in_flight|kind=shipment 1,
          overdue_in_flight 1, at_risk 0
  timers: ticket:t1 70, ticket:t3 125, shipment:s1 185, shipment:s2 160
Phase 2 (every topic at 75, W2 = 75 - 5 s >= 70):
  t1 is given up: ticket gauge 1, its state and timer gone.
  s5 DELIVERED 75 (promised 80): not in flight, give-up 200.
Phase 3 (every topic at 190, W3 = 190 - 5 s):
  t3 (125), s2 (160) and s1 (185) are given up: every gauge 0.
  s6 DELIVERED 190 (promised 190): give-up 310. t1 human reply at 190:
  t1 starts afresh (a reply waiting for an opening): state again, no gauge.
  timers: shipment:s5 200, shipment:s6 310.
"""

import harness as H

NS = "expiry"
S = 1000
M = 60 * S
HR = 60 * M
OOO = 5 * S
TICKET_TTL, SHIPMENT_TTL, STATE_TTL = HR, 2 * HR, 10 * M
DAY = 24 * HR
CK, CO, SH, SU = H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT, H.TOPIC_SHIPMENTS, H.TOPIC_SUPPORT
STREAM = {CK: "clickstream", CO: "checkout", SH: "shipment", SU: "support"}


def phases(T0):
    def t(minutes):
        return T0 + minutes * M

    def sup(tag, m, typ, ticket, **kw):
        return (tag, SU, ticket, H.support(tag, t(m), typ, ticket, "chat", **kw))

    def ship(tag, m, typ, sid, promised):
        return (tag, SH, sid, H.shipment(tag, t(m), typ, sid, f"o-{sid}", "dhl", "DE",
                                         t(promised)))

    def view(tag, m):
        return (tag, CK, "sess1", H.click(tag, t(m), "PAGE_VIEW", "sess1", "web", "mobile", "DE"))

    def pay(tag, m):
        return (tag, CO, "c1", H.checkout(tag, t(m), "PAYMENT_SUBMITTED", "sess1", "web", "mobile",
                                          "DE", customer_id="c1", order_id="o1",
                                          amount_cents=2500))

    return [
        [
            view("v1", 1), view("v2", 65),
            (("o1", CO, "c1", H.checkout("o1", t(2), "ORDER_PLACED", "sess1", "web", "mobile",
                                         "DE", customer_id="c1", order_id="o1",
                                         amount_cents=2500))),
            pay("p1", 65),
            ship("s1a", 0, "DISPATCHED", "s1", 30), ship("s1b", 65, "IN_TRANSIT", "s1", 30),
            ship("s2a", 0, "DISPATCHED", "s2", 30), ship("s2b", 40, "DELIVERED", "s2", 30),
            sup("t1a", 0, "TICKET_OPENED", "t1"), sup("t1b", 10, "AGENT_REPLIED", "t1"),
            sup("t2a", 5, "TICKET_OPENED", "t2"), sup("t2b", 6, "TICKET_RESOLVED", "t2"),
            sup("t3a", 65, "TICKET_OPENED", "t3"),
        ],
        [
            view("v3", 75), pay("p2", 75), ship("s5", 75, "DELIVERED", "s5", 80),
            sup("x1", 75, "CUSTOMER_REPLIED", "tx"),
        ],
        [
            view("v4", 190), pay("p3", 190), ship("s6", 190, "DELIVERED", "s6", 190),
            sup("x2", 189, "CUSTOMER_REPLIED", "tx"), sup("t1c", 190, "AGENT_REPLIED", "t1"),
        ],
    ]


GAUGES = ("in_flight|kind=ticket", "in_flight|kind=shipment", "overdue_in_flight", "at_risk")


class StateExpiry(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = now - now % HR - 5 * HR
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp, partitions=1)).start()
        extra = {
            "state": {"ttl": "10m", "ticket_ttl": "1h", "shipment_ttl": "2h",
                      "cache_idle": "400d"},  # what is in memory is checked below
            "metrics": {"abandonment": {"abandon_after": "2m"}},
        }
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             idle_timeout="10m", max_out_of_orderness="5s", extra=extra)
        r = cls.redis.client
        snd = H.Sender(cls.broker.bootstrap)
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        cls.snap = []
        for msgs in phases(T0):
            for tag, topic, key, rec in msgs:
                snd.send(topic, H.encode(STREAM[topic], rec), key=key.encode(), tag=tag)
            snd.flush()
            H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
            state = {k: r.pttl(k) for k in r.scan_iter(match=f"sp:{{{NS}}}:state:*")}
            timers = dict(r.zrange(f"sp:{{{NS}}}:state:timers", 0, -1, withscores=True))
            cls.snap.append({"gauges": H.gauges(r, NS), "state": state, "timers": timers})
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def key(self, kind, ident):
        return f"sp:{{{NS}}}:state:{kind}:{ident}"

    def gauges(self, phase):
        g = self.snap[phase]["gauges"]
        return {f: g.get(f, "0") for f in GAUGES}

    def timers(self, phase):
        """Ticket and shipment timers as {member: minutes after T0}."""
        return {m: (int(s) - self.T0) / M for m, s in self.snap[phase]["timers"].items()
                if m.startswith(("ticket:", "shipment:"))}

    def test_watermarks(self):
        for phase, newest in enumerate((65, 75, 190)):
            self.assertEqual(int(self.snap[phase]["gauges"]["watermark_ms"]),
                             self.T0 + newest * M - OOO, f"phase {phase + 1}")

    def test_phase1_open_entities(self):
        self.assertEqual(self.gauges(0), {"in_flight|kind=ticket": "2",
                                          "in_flight|kind=shipment": "1",
                                          "overdue_in_flight": "1", "at_risk": "0"})
        self.assertEqual(self.timers(0), {"ticket:t1": 70, "ticket:t3": 125,
                                          "shipment:s1": 185, "shipment:s2": 160})
        st = self.snap[0]["state"]
        for kind, ident in (("ticket", "t1"), ("ticket", "t2"), ("ticket", "t3"),
                            ("shipment", "s1"), ("shipment", "s2")):
            self.assertIn(self.key(kind, ident), st)
        self.assertNotIn(self.key("ticket", "tx"), st)  # a reply of nothing keeps nothing

    def test_phase2_ticket_given_up(self):
        self.assertEqual(self.gauges(1), {"in_flight|kind=ticket": "1",
                                          "in_flight|kind=shipment": "1",
                                          "overdue_in_flight": "1", "at_risk": "0"})
        self.assertEqual(self.timers(1), {"ticket:t3": 125, "shipment:s1": 185,
                                          "shipment:s2": 160, "shipment:s5": 200})
        st = self.snap[1]["state"]
        self.assertNotIn(self.key("ticket", "t1"), st)
        self.assertIn(self.key("ticket", "t3"), st)

    def test_phase3_everything_given_up(self):
        self.assertEqual(self.gauges(2), {"in_flight|kind=ticket": "0",
                                          "in_flight|kind=shipment": "0",
                                          "overdue_in_flight": "0", "at_risk": "0"})
        self.assertEqual(self.timers(2), {"shipment:s5": 200, "shipment:s6": 310})
        st = self.snap[2]["state"]
        for kind, ident in (("ticket", "t3"), ("shipment", "s1"), ("shipment", "s2")):
            self.assertNotIn(self.key(kind, ident), st)
        for kind, ident in (("ticket", "t2"), ("shipment", "s5"), ("shipment", "s6")):
            self.assertIn(self.key(kind, ident), st)
        # t1 again, afresh: a reply waiting for its opening, not in the gauge
        self.assertIn(self.key("ticket", "t1"), st)

    def test_every_entity_key_has_a_bounded_ttl(self):
        """No state key lives forever: each has a TTL within what its kind
        allows (Redis TTLs run in wall time from the last write)."""
        for phase in range(3):
            for k, pttl in self.snap[phase]["state"].items():
                kind = k.split(":")[3]
                if kind in ("timers", "recent_ids"):
                    continue  # bounded by size: a member per timed entity; dedup.max_ids
                limit = {"session": STATE_TTL, "order": STATE_TTL, "cart": STATE_TTL,
                         # open: time to the give-up (from W = newest - 5 s)
                         # + 1 day; else ticket_ttl
                         "ticket": TICKET_TTL + OOO + DAY,
                         # time to the give-up + 1 day
                         "shipment": SHIPMENT_TTL + DAY + 2 * HR,
                         "customer": 400 * DAY}[kind]
                self.assertGreater(pttl, 0, f"phase {phase + 1}: {k} has no TTL")
                self.assertLessEqual(pttl, limit, f"phase {phase + 1}: {k}")
        kinds = {k.split(":")[3] for k in self.snap[2]["state"]}
        self.assertTrue({"session", "order", "ticket", "shipment", "customer"} <= kinds, kinds)

    def test_health_per_kind(self):
        g = self.snap[2]["gauges"]
        per_kind = {f.split("=", 1)[1]: int(v) for f, v in g.items()
                    if f.startswith("in_flight_entities|kind=")}
        self.assertEqual(set(per_kind), {"session", "order", "cart", "shipment", "ticket",
                                         "customer"})
        self.assertEqual(sum(per_kind.values()), int(g["in_flight_entities"]))
        # given-up entities left the cache: t1 (afresh) and t2 of the tickets
        # (tx never had state but was looked up: 3 at most), s5 and s6
        self.assertLessEqual(per_kind["ticket"], 3)
        self.assertGreaterEqual(per_kind["ticket"], 2)
        self.assertEqual(per_kind["shipment"], 2)

    def test_clean_exit(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
