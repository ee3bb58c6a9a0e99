"""20,000 generated events (three hours ago, as fast as possible) through the
pipeline; every funnel window of every size must equal reference.py field by
field once everything is consumed and closed by the idle rule."""

import time

import harness as H
import reference

NS = "reftest"
COUNT = 20000
SEED = 4242
RATE = 10  # events per second of event time: ~35 minutes of traffic
SIZES = ("1m", "5m", "1h")


class FunnelVsReference(H.SPTestCase):
    NS = NS
    EXTRA = None
    FORMAT = None  # gen --format; None: Avro

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.start_time = H.floor_to(now - 3 * 3_600_000, 60_000)
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        NS = cls.NS
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             sizes=SIZES, extra=cls.EXTRA)
        # only the two funnel topics: the reference here reads clickstream and
        # checkout, and the JSON variant configures only those two as JSON
        H.gen(cfg, cls.broker.bootstrap_file, COUNT, SEED, cls.start_time, rate=RATE,
              fmt=cls.FORMAT, extra_args=("--streams", "clickstream,checkout"),
              log_path=f"{cls.tmp}/gen.log")
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        t0 = time.monotonic()
        cls.highs = H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=120, pipeline=cls.pipe)
        print(f"caught up in {time.monotonic() - t0:.1f}s", flush=True)

        # late events (there should be none) are left out of the reference so
        # the counter comparison stays meaningful; test_no_deadletters flags them
        cls.dlq = H.consume_all(cls.broker.bootstrap, H.TOPIC_DEADLETTER, timeout=5)
        late = set()
        for m in cls.dlq:
            h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            if h.get("reason") == "late":
                late.add((h.get("source_topic"), int(h.get("source_partition", -1)),
                          int(h.get("source_offset", -1))))
        msgs = reference.read_messages(cls.broker.bootstrap)
        formats = ({H.TOPIC_CLICKSTREAM: "json", H.TOPIC_CHECKOUT: "json"}
                   if cls.FORMAT == "json" else None)
        cls.ref, cls.stats = reference.compute(msgs, sizes=SIZES, formats=formats, exclude=late)
        print(f"reference: {cls.stats['kept']} events kept, {cls.stats['duplicates']} duplicates, "
              f"rejected {cls.stats['rejected']}, {len(cls.ref)} windows", flush=True)
        H.wait_all_closed(r, NS, cls.stats["max_time"], SIZES, timeout=90, pipeline=cls.pipe)
        time.sleep(1.0)
        cls.finals = {s: H.final_pointer(r, NS, s) for s in SIZES}
        cls.actual = H.funnel_windows(r, NS)
        cls.health = H.health(r, NS)
        cls.offsets = H.offsets_of(r, NS)
        cls.watermark = r.hget(f"sp:{{{NS}}}:gauges", "watermark_ms")
        cls.dlq = H.consume_all(cls.broker.bootstrap, H.TOPIC_DEADLETTER, timeout=2)
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def test_windows_match_reference(self):
        lines, n = reference.compare_all(self.ref, self.actual, SIZES, self.finals)
        if n:
            self.fail(f"{n} problem(s) comparing Redis with the reference:\n" + "\n".join(lines))

    def test_reference_nontrivial(self):
        # guards against a vacuous comparison
        one = [f for (s, _), f in self.ref.items() if s == "1m"]
        self.assertGreater(len(one), 20)
        self.assertGreater(sum(int(f["orders"]) for f in one), 10)
        self.assertGreater(sum(int(f.get("orders|currency=EUR", 0)) for f in one)
                           + sum(int(f["sessions"]) for f in one), 100)

    def test_no_deadletters(self):
        reasons = {}
        for m in self.dlq:
            h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            reasons[h.get("reason")] = reasons.get(h.get("reason"), 0) + 1
        self.assertEqual(reasons, {}, "generated in-order traffic must not be dead-lettered "
                                      "(replay must not turn events late)")

    def test_offsets_equal_high_watermarks(self):
        for tp, hi in self.highs.items():
            if hi:
                self.assertEqual(self.offsets.get(tp), hi, f"{tp[0]}/{tp[1]}")

    def test_health(self):
        h = self.health
        consumed = sum(int(v) for f, v in h.items() if f.startswith("consumed|topic="))
        self.assertEqual(consumed, sum(self.highs.values()), h)
        self.assertEqual(int(h.get("decoded", -1)), self.stats["decoded"], h)
        self.assertEqual(int(h.get("duplicates", 0)), self.stats["duplicates"], h)
        self.assertEqual(int(h.get("late_events", 0)), 0, h)

    def test_watermark_near_wall_clock(self):
        self.assertIsNotNone(self.watermark)
        lag = H.now_ms() - int(self.watermark)
        self.assertGreaterEqual(lag, 4000)
        self.assertLess(lag, 30000, f"watermark {self.watermark} lags the wall clock by {lag} ms")

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


class FunnelVsReferenceSmallBatches(FunnelVsReference):
    """Same traffic, batches of 200 messages: a session's clickstream and
    checkout events (different topics and partitions) land in many different
    batches, far apart in processing order."""
    NS = "reftest-small"
    EXTRA = {"pipeline": {"batch_max": 200}}


class FunnelVsReferenceJson(FunnelVsReference):
    """Same traffic as JSON payloads on topics configured `format: json`."""
    NS = "reftest-json"
    FORMAT = "json"
    EXTRA = {"topics": {"clickstream": {"name": H.TOPIC_CLICKSTREAM, "format": "json"},
                        "checkout": {"name": H.TOPIC_CHECKOUT, "format": "json"}}}


if __name__ == "__main__":
    H.main()
