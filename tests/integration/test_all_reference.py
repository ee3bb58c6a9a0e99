"""Two days of generated traffic of all four streams (clickstream, checkout,
shipments, support), four days in the past, through the pipeline with hour
and day windows; once everything is consumed and every window of every
family is closed (the day windows of the last day and the abandonment
windows close on the wall-clock watermark of the idle pipeline), EVERY family
(funnel, abandonment, delivery, retention, support) must equal reference.py
window by window and field by field, and so must the gauges at the
pipeline's final watermark, the cohort tables and health `duplicates`.

After the generated traffic a few hand-made events follow (in event time,
keyed to the partitions of the entities they concern): entity duplicates of
every kind (ORDER_PLACED, DELIVERED, RETURNED, TICKET_OPENED, SURVEY_RESPONSE
and TICKET_RESOLVED of a resolved ticket), a reopening and a new resolution,
a human reply that arrives before its ticket's opening, a bot-only ticket, a
guest order with an empty customer_id and a returning customer's order.

Variants: UTC, cold start, the four topics on different partition counts
(5, 2, 3 and 1: every cross-stream join -- a session's cart and its order, an
order and its customer, shipments and tickets keyed by their own ids --
crosses partition layouts); Europe/Warsaw day windows with a warm start and a
carrier-delay incident (lost and late parcels), 8 partitions each."""

import time

import harness as H
import reference

HOUR = 3_600_000
DAY = 86_400_000
SIZES = ("1h", "1d")
ABANDON_AFTER = "30m"
ABANDON_AFTER_MS = 30 * 60_000


class AllFamiliesVsReference(H.SPTestCase):
    NS = "allref"
    TZ = "UTC"
    SEED = 20261
    RATE = 0.3  # events per second of event time: ~52,000 messages in 2 days
    GEN_ARGS = ()
    PARTITIONS = {H.TOPIC_CLICKSTREAM: 5, H.TOPIC_CHECKOUT: 2, H.TOPIC_SHIPMENTS: 3,
                  H.TOPIC_SUPPORT: 1}

    @classmethod
    def scenario(cls):
        t_start = time.monotonic()
        NS = cls.NS
        now = H.now_ms()
        # 4 days ago, 2 days long: the last day window (any zone) ends more
        # than a day before now, so the idle watermark closes everything
        cls.start_time = H.floor_to(now - 4 * DAY, HOUR)
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp, topic_partitions=cls.PARTITIONS)).start()
        extra = {
            "windows": {"timezone": cls.TZ, "ttl": {"1h": "35d", "1d": "400d"}},
            "metrics": {"abandonment": {"abandon_after": ABANDON_AFTER}},
        }
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             sizes=SIZES, extra=extra)
        H.gen(cfg, cls.broker.bootstrap_file, 0, cls.SEED, cls.start_time, rate=cls.RATE,
              extra_args=("--duration", "2d") + tuple(cls.GEN_ARGS),
              log_path=f"{cls.tmp}/gen.log")
        msgs = reference.read_all_messages(cls.broker.bootstrap)
        records, _ = reference.decode_messages(msgs)
        msgs += cls.inject(records, msgs)
        records, dstats = reference.decode_messages(msgs)
        max_time = max(rec["event_time"] for rec in records)
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        cls.highs = H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=120,
                                     pipeline=cls.pipe)
        print(f"caught up {sum(cls.highs.values())} messages after "
              f"{time.monotonic() - t_start:.1f}s", flush=True)

        win = reference.Windows(cls.TZ)
        want = {(fam, s): win.start(s, max_time) for fam in reference.FAMILIES for s in SIZES}
        H.wait_final_pointers(r, NS, want, timeout=90, pipeline=cls.pipe)
        # stop first: everything read below is one committed state
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

        cls.gauges = H.gauges(r, NS)
        cls.W = int(cls.gauges["watermark_ms"])
        cls.finals = H.final_pointers(r, NS, reference.FAMILIES, SIZES)
        cls.actual = {fam: H.funnel_windows(r, NS, fam) for fam in reference.FAMILIES}
        cls.cohorts = H.cohort_hashes(r, NS)
        cls.health = H.health(r, NS)
        cls.offsets = H.offsets_of(r, NS)

        # late events (there should be none: test_no_deadletters) are left
        # out of the reference so that the comparison stays meaningful
        cls.dlq = H.consume_all(cls.broker.bootstrap, H.TOPIC_DEADLETTER, timeout=2)
        cls.late = set()
        for m in cls.dlq:
            h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            if h.get("reason") == "late":
                cls.late.add((h.get("source_topic"), int(h.get("source_partition", -1)),
                              int(h.get("source_offset", -1))))
        t0 = time.monotonic()
        kept = [x for x in records if (x["topic"], x["partition"], x["offset"]) not in cls.late]
        cls.ref = reference.compute_all(kept, sizes=SIZES, tz=cls.TZ, watermark=cls.W,
                                        abandon_after_ms=ABANDON_AFTER_MS)
        st = cls.ref.stats
        st.update(dstats)  # "decoded" counts the excluded late events too, as health does
        st["excluded"] = len(records) - len(kept)
        print(f"reference ({time.monotonic() - t0:.1f}s): {st['kept']} events kept, "
              f"{st['duplicates']} duplicates {st['duplicates_by_kind']}, rejected "
              f"{st['rejected']}, W = now - {H.now_ms() - cls.W} ms, gauges "
              f"{cls.ref.gauges}; scenario {time.monotonic() - t_start:.1f}s", flush=True)

    @classmethod
    def inject(cls, records, msgs):
        """Produce the hand-made tail (see the module docstring) after the
        generated traffic of records (decoded from the raw msgs); returns its
        raw messages for the reference. Events about a generated entity go
        to the partition (and with the key) of the entity's messages, so
        that they arrive after them."""
        msg_key = {(t, p, o): k for (t, p, o, k, _) in msgs}
        recs = sorted(records, key=lambda x: (x["event_time"], x["stream"], x["partition"],
                                              x["offset"]))
        # B: 5 min into the hour after the last event; every injected event is
        # in [B, B + 15 min], one hour window, after everything generated
        B = H.floor_to(recs[-1]["event_time"], HOUR) + HOUR + 5 * 60_000
        MIN = 60_000

        def by(stream, key):
            out = {}
            for x in recs:
                if x["stream"] == stream and x.get(key) is not None:
                    out.setdefault(x[key], []).append(x)
            return out

        def first(xs, typ):
            return next((x for x in xs if x["type"] == typ), None)

        sends = []  # (stream, fields, partition, key)

        def again(x, eid, t, typ=None, **kw):
            f = {k: v for k, v in x.items() if k not in ("stream", "topic", "partition",
                                                          "offset")}
            f.update(event_id=eid, event_time=t, **kw)
            if typ:
                f["type"] = typ
            sends.append((x["stream"], f, x["partition"],
                          msg_key[(x["topic"], x["partition"], x["offset"])]))

        # shipments: a second DELIVERED and a second RETURNED (duplicates)
        ships = by("shipment", "shipment_id")
        for typ, dt in (("DELIVERED", 0), ("RETURNED", MIN)):
            x = next((first(evs, typ) for _, evs in sorted(ships.items())
                      if first(evs, typ) is not None), None)
            if x is not None:
                again(x, f"inj-{typ.lower()}", B + dt)
        # a ticket opened, surveyed and resolved at the end: a second
        # TICKET_RESOLVED, SURVEY_RESPONSE and TICKET_OPENED (duplicates),
        # then a reopening and a resolution that count
        for tid, evs in sorted(by("support", "ticket_id").items()):
            state = [x["type"] for x in evs if x["type"] in ("TICKET_RESOLVED",
                                                               "TICKET_REOPENED")]
            if (first(evs, "TICKET_OPENED") and first(evs, "SURVEY_RESPONSE") and state
                    and state[-1] == "TICKET_RESOLVED"):
                again(first(evs, "TICKET_RESOLVED"), "inj-resolved-again", B + 2 * MIN)
                again(first(evs, "SURVEY_RESPONSE"), "inj-survey-again", B + 3 * MIN)
                again(first(evs, "TICKET_OPENED"), "inj-opened-again", B + 4 * MIN)
                again(first(evs, "TICKET_RESOLVED"), "inj-reopened", B + 5 * MIN,
                      "TICKET_REOPENED")
                again(first(evs, "TICKET_RESOLVED"), "inj-resolved", B + 6 * MIN)
                break
        # a new ticket whose human reply arrives before its opening; a
        # bot-only ticket resolved (bot ticket, not handed off)
        sends += [
            ("support", H.support("inj-t1-reply", B + 8 * MIN, "AGENT_REPLIED", "inj-t1",
                                  "email"), 0, b"inj-t1"),
            ("support", H.support("inj-t1-open", B + 7 * MIN, "TICKET_OPENED", "inj-t1",
                                  "email"), 0, b"inj-t1"),
            ("support", H.support("inj-t2-open", B + 7 * MIN, "TICKET_OPENED", "inj-t2",
                                  "chat"), 1, b"inj-t2"),
            ("support", H.support("inj-t2-bot", B + 8 * MIN, "AGENT_REPLIED", "inj-t2",
                                  "chat", is_bot=True), 1, b"inj-t2"),
            ("support", H.support("inj-t2-res", B + 9 * MIN, "TICKET_RESOLVED", "inj-t2",
                                  "chat"), 1, b"inj-t2"),
        ]
        # orders: a second ORDER_PLACED of an order (duplicate); a guest order
        # with an empty customer_id; an order of a customer who ordered before
        orders = [x for x in recs if x["stream"] == "checkout" and x["type"] == "ORDER_PLACED"
                  and x.get("order_id") and x.get("customer_id")]
        again(orders[0], "inj-order-again", B + 10 * MIN)
        # the returning customer's order goes where its other orders are (a
        # window's channel is that of the customer's first order there in
        # ARRIVAL order), with another channel than the earlier one
        prev = orders[-1]
        sends += [
            ("checkout", H.checkout("inj-o1", B + 11 * MIN, "ORDER_PLACED", "inj-s1", "web",
                                    "desktop", "PL", order_id="inj-o1", customer_id="",
                                    amount_cents=1234, currency="USD"), 2, b"inj-s1"),
            ("checkout", H.checkout("inj-o2", B + 12 * MIN, "ORDER_PLACED", "inj-s2", "app",
                                    "mobile", "DE", order_id="inj-o2",
                                    customer_id=prev["customer_id"],
                                    amount_cents=999, currency="EUR"), prev["partition"],
             msg_key[(prev["topic"], prev["partition"], prev["offset"])]),
        ]
        snd = H.Sender(cls.broker.bootstrap)
        for i, (stream, f, part, key) in enumerate(sends):
            topic = reference.STREAM_TOPIC[stream]
            # new entities' partitions 0, 1, 2 wrap on topics with fewer
            part %= cls.PARTITIONS.get(topic, 8)
            snd.send(topic, H.encode(stream, f), key=key, tag=i, partition=part)
        snd.flush()
        print(f"injected {len(sends)} hand-made events from B = {B}", flush=True)
        return [(t, p, o, k, v) for (_, t, p, o, k, v) in snd.delivered]

    # -- the comparison

    def check_family(self, fam):
        lines, n = reference.compare_family(
            fam, self.ref.windows[fam], self.actual[fam], SIZES, self.finals[fam],
            quantiles=self.ref.quantiles[fam], tz=self.TZ)
        if n:
            self.fail(f"{fam}: {n} problem(s) comparing Redis with the reference:\n"
                      + "\n".join(lines))

    def test_funnel(self):
        self.check_family("funnel")

    def test_abandonment(self):
        self.check_family("abandonment")

    def test_delivery(self):
        self.check_family("delivery")

    def test_retention(self):
        self.check_family("retention")

    def test_support(self):
        self.check_family("support")

    def test_gauges(self):
        lines, n = reference.compare_gauges(self.ref.gauges, self.gauges)
        if n:
            self.fail(f"gauges at W={self.W}: {n} problem(s):\n" + "\n".join(lines))

    def test_cohorts(self):
        lines, n = reference.compare_cohorts(self.ref.cohorts, self.cohorts)
        if n:
            self.fail(f"cohorts: {n} problem(s):\n" + "\n".join(lines))

    def test_final_pointers_at_watermark(self):
        # closing rule: end + allowed_lateness (+ abandon_after) <= W
        want = {fam: {s: self.ref.final_pointer(fam, s, self.W) for s in SIZES}
                for fam in reference.FAMILIES}
        self.assertEqual(self.finals, want, f"W={self.W}")

    def test_health(self):
        h = self.health
        consumed = sum(int(v) for f, v in h.items() if f.startswith("consumed|topic="))
        self.assertEqual(consumed, sum(self.highs.values()), h)
        self.assertEqual(int(h.get("decoded", -1)), self.ref.stats["decoded"], h)
        self.assertEqual(int(h.get("duplicates", 0)), self.ref.stats["duplicates"],
                         f"reference duplicates {self.ref.stats['duplicates_by_kind']}; "
                         f"health {h}")
        self.assertEqual(int(h.get("late_events", 0)), 0, h)
        self.assertEqual(int(h.get("abandonment_corrections_dropped", 0)), 0, h)

    def test_no_deadletters(self):
        reasons = {}
        for m in self.dlq:
            h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            reasons[h.get("reason")] = reasons.get(h.get("reason"), 0) + 1
        self.assertEqual(reasons, {}, "generated in-order traffic must not be dead-lettered")

    def test_offsets_equal_high_watermarks(self):
        for tp, hi in self.highs.items():
            if hi:
                self.assertEqual(self.offsets.get(tp), hi, f"{tp[0]}/{tp[1]}")

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)

    def test_reference_nontrivial(self):
        # guards against a vacuous comparison: every family counts something
        def total(fam, field):
            return sum(int(f.get(field, 0)) for (s, _), f in self.ref.windows[fam].items()
                       if s == "1d")
        for fam, field, at_least in (
                ("funnel", "orders", 500), ("funnel", "sessions", 2000),
                ("abandonment", "carts_abandoned", 50), ("abandonment", "carts_converted", 50),
                ("abandonment", "checkouts_abandoned", 10),
                ("delivery", "dispatched", 100), ("delivery", "delivered", 50),
                ("retention", "ordering_customers", 300), ("retention", "guest_orders", 10),
                ("support", "tickets_opened", 20), ("support", "tickets_resolved", 10)):
            self.assertGreaterEqual(total(fam, field), at_least, f"{fam} {field}")
        self.assertGreaterEqual(total("retention", "returning_customers"), 1)
        # every kind of entity duplicate is exercised by the injected tail
        self.assertLessEqual({"event_id", "order_placed", "delivered", "ticket_opened",
                              "survey_response", "ticket_resolved"},
                             set(self.ref.stats["duplicates_by_kind"]))
        self.assertGreater(len(self.ref.windows["funnel"]), 48)
        self.assertTrue(self.ref.cohorts)
        self.assertGreater(self.ref.stats["duplicates"], 0)


class AllFamiliesVsReferenceWarsawCarrierDelay(AllFamiliesVsReference):
    """Day windows at Warsaw midnight; parcels, tickets and sessions already
    in flight at the start; a six-hour carrier-delay incident on dhl."""
    NS = "allref-waw"
    TZ = "Europe/Warsaw"
    SEED = 77
    GEN_ARGS = ("--warm-start", "--scenario", "carrier-delay", "--incident-start", "+8h",
                "--incident-duration", "6h")
    PARTITIONS = {}  # the default: 8 each


if __name__ == "__main__":
    H.main()
