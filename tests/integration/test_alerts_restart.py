"""Restarts in the middle of a firing alert (SPEC section 5: alert state
lives in Redis, so a restart neither re-fires nor forgets).
test_alerts_e2e restarts only once everything has resolved; here the
pipeline stops while alerts are firing, and later windows keep them firing
and then resolve them.

Hand-made failed payments (harness.HandmadeAlerts; payment_failures fires at
window 2, repeat_every 3m repeats it at 5 and 8, resolves at 9; per device
mobile fires at 3 and resolves at 4, desktop fires at 8 and resolves at 9)
are fed in three parts, one pipeline each:
  1. windows 0-4, evaluated and delivered (the FIRING of window 2 is on the
     topic); SIGTERM while payment_failures fires;
  2. windows 5-8 (the first repeat is due at once: its time since the last
     message must survive the restart); kill -9 while both payment_failures
     and desktop fire, after the outbox drained;
  3. windows 9-12: both resolve.
Checked with kcat: the topic holds exactly the expected messages (rule,
dimension, state, window, alert_id; from the per-window counts and
docs/ALERTS.md), each once: no FIRING again after a restart, repeats only
when due, one RESOLVED."""

import harness as H

PARTS = (5, 9, 13)  # windows [0, 5), [5, 9), [9, 13)


class RestartWhileFiring(H.HandmadeAlerts):
    NS = "al-restart"

    @classmethod
    def scenario(cls):
        cls.setup_env()
        r = cls.redis.client
        cls.seen = []  # messages on the topic after each part
        cls.stops = []
        for n, hi in enumerate(PARTS):
            pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg, name=f"pipeline{n + 1}")).start()
            cls.feed(hi)
            H.wait_caught_up(r, cls.NS, cls.broker.bootstrap, timeout=60, pipeline=pipe)
            cls.wait_evaluated(hi, pipe)
            cls.wait_outbox_empty(pipe)
            cls.seen.append(H.kcat_json_alerts(cls.broker.bootstrap))
            if n == 0:
                cls.stops.append(pipe.terminate(20))
            elif n == 1:
                pipe.kill9()
                cls.stops.append("kill9")
            else:
                cls.stops.append(pipe.terminate(20))
        for n, msgs in enumerate(cls.seen):
            print(f"after part {n + 1}:", [(a["rule"], a["dimension"], a["state"],
                                            (a["window_start"] - cls.T0) // cls.M)
                                           for _, a in msgs], flush=True)

    @staticmethod
    def still_firing(msgs):
        """(rule, dimension) of the series whose last message is a FIRING."""
        last = {}
        for _, a in sorted(msgs, key=lambda m: m[1]["window_start"]):
            last[(a["rule"], a["dimension"])] = a["state"]
        return {k for k, state in last.items() if state == "FIRING"}

    def test_firing_when_stopped(self):
        # the premise: at each stop an alert was firing and had been sent
        self.assertEqual(self.still_firing(self.seen[0]), {("payment_failures", None)})
        self.assertEqual(self.still_firing(self.seen[1]),
                         {("payment_failures", None),
                          ("payment_failures_by_device", "device=desktop")})
        self.assertEqual(self.still_firing(self.seen[2]), set())

    def test_each_part_exactly_the_expected_messages(self):
        for n, hi in enumerate(PARTS):
            with self.subTest(part=n + 1):
                got = H.alert_transitions([a for _, a in self.seen[n]])
                self.assertEqual(got, self.expected(hi))

    def test_one_firing_repeats_and_one_resolved(self):
        ms = [a for _, a in self.seen[-1] if a["rule"] == "payment_failures"]
        ids = sorted((a["alert_id"], a["window_start"]) for a in ms)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len({a["alert_id"] for a in ms if a["state"] == "FIRING"}), 1, ms)
        self.assertEqual([a["state"] for a in ms].count("RESOLVED"), 1, ms)
        fire = min(ms, key=lambda a: a["window_start"])
        for a in ms:  # one alert: it started when it first fired
            self.assertEqual(a["started_at"], fire["window_end"])
            self.assertEqual(a["fingerprint"], fire["fingerprint"])

    def test_stopped_as_planned(self):
        self.assertEqual(self.stops, [0, "kill9", 0])

if __name__ == "__main__":
    H.main()
