"""Alert delivery through a broker outage (SPEC section 5, docs/ALERTS.md
"Lifecycle and delivery"): an alert leaves the outbox only when the broker
acknowledged it, so an outage delays alerts and loses none; a message is
never sent twice while the pipeline runs.

Hand-made failed payments (harness.HandmadeAlerts: 13 one-minute windows,
two rules, 8 alert messages expected from the per-window counts) are all
produced first; then every Produce request to the mock cluster fails with
NOT_ENOUGH_REPLICAS (retriable; `errors 0 N 19` on the broker's control
FIFO), and the pipeline starts. While the brokers refuse:
  - the pipeline consumes everything and evaluates every window (alerts do
    not hold up processing);
  - the outbox sp:{NS}:alerts:outbox holds every expected message and the
    alert topic is empty, also some seconds later;
then the errors are cleared and:
  - the outbox drains to 0;
  - kcat reads every expected message (rule, dimension, state, window,
    alert_id) exactly once, keyed by its fingerprint.
Each series' messages (one key, one partition) must also arrive in the
order of their windows. Three cases: the producer's own retries outlast the
outage (default message.timeout.ms); an outage longer than
message.timeout.ms (2 s), so deliveries fail and the alerter itself
produces them again (after RETRY_MS, 5 s), while new alerts of the same
series come; and a SIGTERM during the outage, the outbox produced again by
the next pipeline at start."""

import time

import harness as H

ERR_NOT_ENOUGH_REPLICAS = 19  # retriable; the mock appends nothing


class Outage(H.HandmadeAlerts):
    NS = None
    RESTART = False
    SPLIT = None  # windows [0, SPLIT) before the outage ends, the rest after
    HOLD_S = 3    # how long the outage lasts once those windows are evaluated

    @classmethod
    def scenario(cls):
        if cls.NS is None:
            return
        cls.setup_env()
        n = len(cls.PLAN)
        cls.first = first = cls.SPLIT or n
        cls.feed(first)
        cls.broker.control(f"errors {H.API_PRODUCE} 100000 {ERR_NOT_ENOUGH_REPLICAS}")
        pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        r = cls.redis.client
        bs = cls.broker.bootstrap
        H.wait_caught_up(r, cls.NS, bs, timeout=60, pipeline=pipe)
        cls.wait_evaluated(first, pipe)
        cls.down = [(H.outbox_len(r, cls.NS), H.topic_size(bs, H.TOPIC_ALERTS))]
        cls.hold(pipe)
        cls.down.append((H.outbox_len(r, cls.NS), H.topic_size(bs, H.TOPIC_ALERTS)))
        cls.stop_rc = None
        if cls.RESTART:  # stopped while the alerts wait, started after the outage
            cls.stop_rc = pipe.terminate(30)
            cls.broker.control(f"clear {H.API_PRODUCE}")
            pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg, name="pipeline2")).start()
        else:
            cls.broker.control(f"clear {H.API_PRODUCE}")
        t0 = time.monotonic()
        if first < n:  # new alerts while the old ones wait for their retry
            cls.feed(n)
            cls.wait_evaluated(n, pipe)
        cls.wait_outbox_empty(pipe, timeout=60)
        cls.drain_s = time.monotonic() - t0
        cls.msgs = H.kcat_json_alerts(bs)
        cls.term_rc = pipe.terminate(20)
        cls.log = cls.read_log(pipe)
        print(f"while down (outbox, topic): {cls.down}; drained {cls.drain_s:.1f}s after the "
              f"outage; {len(cls.msgs)} messages", flush=True)

    @classmethod
    def hold(cls, pipe):
        time.sleep(cls.HOLD_S)

    @staticmethod
    def read_log(pipe):
        with open(pipe.log_path, errors="replace") as f:
            return f.read()

    def test_held_in_the_outbox_while_down(self):
        want = len(self.expected(self.first))
        self.assertGreaterEqual(want, 3)
        self.assertEqual(self.down, [(want, 0)] * 2)

    def test_in_order_per_series(self):
        # one series = one key = one partition, read in offset order: its
        # messages come in the order of their windows
        by_key = {}
        for key, a in self.msgs:
            by_key.setdefault(key, []).append(a["window_start"])
        for key, starts in by_key.items():
            self.assertEqual(starts, sorted(starts), key)

    def test_every_alert_once_after_the_outage(self):
        got = H.alert_transitions([a for _, a in self.msgs])
        self.assertEqual(got, self.expected(len(self.PLAN)))
        for key, a in self.msgs:
            self.assertEqual(key, a["fingerprint"])
        self.assertEqual(self.term_rc, 0)


class OutageWithinMessageTimeout(Outage):
    """librdkafka retries the refused requests until the brokers accept."""
    NS = "al-outage"


class OutageLongerThanMessageTimeout(Outage):
    """Deliveries fail (message timed out after 2 s) and wait RETRY_MS (5 s)
    to be produced again by the alerter; the outage ends and new alerts
    (windows 5-12, of the same series too) come while they wait: a series'
    messages must still arrive in window order."""
    NS = "al-outage-long"
    EXTRA = {"kafka": {"message.timeout.ms": 2000}}
    SPLIT = 5

    @classmethod
    def hold(cls, pipe):
        def failed():
            pipe.assert_alive()
            return cls.read_log(pipe).count("not delivered") >= len(cls.expected(cls.first))
        H.wait_until(failed, 30, 0.1, "the deliveries failed")

    def test_alerter_retried(self):
        self.assertIn("not delivered", self.log)


class OutageAcrossRestart(Outage):
    """SIGTERM while the alerts wait in the outbox (exit 0: nothing is lost),
    the outage ends, a new pipeline produces the outbox again at start."""
    NS = "al-outage-restart"
    RESTART = True

    def test_stopped_cleanly(self):
        self.assertEqual(self.stop_rc, 0)


del Outage  # the base class has no scenario of its own

if __name__ == "__main__":
    H.main()
