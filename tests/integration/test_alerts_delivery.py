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
Two cases: the producer's own retries outlast the outage (default
message.timeout.ms), and an outage longer than message.timeout.ms (2 s), so
deliveries fail and the alerter itself produces the outbox again (every
RETRY_MS, 5 s)."""

import time

import harness as H

ERR_NOT_ENOUGH_REPLICAS = 19  # retriable; the mock appends nothing


class Outage(H.HandmadeAlerts):
    NS = None
    HOLD_S = 3  # how long the outage lasts once every window is evaluated

    @classmethod
    def scenario(cls):
        if cls.NS is None:
            return
        cls.setup_env()
        n = len(cls.PLAN)
        cls.feed(n)
        cls.broker.control(f"errors {H.API_PRODUCE} 100000 {ERR_NOT_ENOUGH_REPLICAS}")
        pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        r = cls.redis.client
        bs = cls.broker.bootstrap
        H.wait_caught_up(r, cls.NS, bs, timeout=60, pipeline=pipe)
        cls.wait_evaluated(n, pipe)
        cls.down = [(H.outbox_len(r, cls.NS), H.topic_size(bs, H.TOPIC_ALERTS))]
        time.sleep(cls.HOLD_S)
        cls.down.append((H.outbox_len(r, cls.NS), H.topic_size(bs, H.TOPIC_ALERTS)))
        cls.broker.control(f"clear {H.API_PRODUCE}")
        t0 = time.monotonic()
        cls.wait_outbox_empty(pipe, timeout=60)
        cls.drain_s = time.monotonic() - t0
        cls.msgs = H.kcat_json_alerts(bs)
        cls.term_rc = pipe.terminate(20)
        with open(pipe.log_path, errors="replace") as f:
            cls.log = f.read()
        print(f"while down (outbox, topic): {cls.down}; drained {cls.drain_s:.1f}s after the "
              f"outage; {len(cls.msgs)} messages", flush=True)

    def test_held_in_the_outbox_while_down(self):
        want = len(self.expected(len(self.PLAN)))
        self.assertEqual(want, 8)
        self.assertEqual(self.down, [(want, 0)] * 2)

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
    """Deliveries fail (message timed out) and the alerter produces them again."""
    NS = "al-outage-long"
    EXTRA = {"kafka": {"message.timeout.ms": 2000}}
    HOLD_S = 6  # more than RETRY_MS: produced again while still down

    def test_alerter_retried(self):
        self.assertIn("not delivered", self.log)


del Outage  # the base class has no scenario of its own

if __name__ == "__main__":
    H.main()
