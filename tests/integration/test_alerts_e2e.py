"""Alerts end to end (SPEC §5): generated traffic of all four streams with a
checkout outage on mobile (payment submissions fail), through the pipeline
with alert rules; the alert topic is read with kcat, an independent
consumer.

Traffic: 100 minutes from an hour boundary 2 h ago, 4 events/s of event
time; the outage runs from +40m for 20m. Rules (5m windows):
  - payment_failure_spike: funnel.payment_failure_rate above 0.3, resolves
    at or below 0.15, at least 20 submissions, for 1 window;
  - orders_by_device: funnel.payment_failure_rate above 0.5 per device,
    for 2 windows (mobile only, and only once it held for 2 windows);
  - no_orders: funnel.orders absent for 10m (must never fire: orders flow),
    repeat_every 6h.
Expected, from the definitions (docs/ALERTS.md):
  - one FIRING of payment_failure_spike for a window starting in
    [outage start, outage start + 10m], its first contributor device=mobile,
    named in the summary; one RESOLVED for a window starting in
    [outage end, outage end + 10m]; nothing else of it;
  - orders_by_device: one FIRING and one RESOLVED, dimension device=mobile,
    the FIRING window at least one window after the rule's first bad one;
  - no_orders: nothing while orders flow (the outage hits mobile only);
    once the traffic ends (at +100m) the idle pipeline closes empty windows
    and it fires for the window [+105m, +110m) -- "no orders for 10m" --
    and does not resolve;
  - every alert_id once; a message's key is its fingerprint;
  - the outbox is empty at the end (all acknowledged), and a restart of the
    pipeline on the same Redis emits nothing new (state in Redis);
  - the outbox is written in the same atomic commit as the window that
    caused it: a second client samples Redis in a loop while the pipeline
    runs (MULTI/EXEC: the funnel's 5m final pointer and every rule's
    "newest window evaluated" marker), and in every sample each marker
    equals the final pointer -- a window is never final without its
    alerts decided and in the outbox."""

import json
import threading
import time

import redis as redis_py

import harness as H

NS = "alerte2e"
M = 60_000
HR = 60 * M
OUTAGE_AT, OUTAGE_FOR = 40 * M, 20 * M
RULES = [
    {"name": "payment_failure_spike", "metric": "funnel.payment_failure_rate", "window": "5m",
     "above": 0.3, "resolve_below": 0.15, "min_samples": 20, "severity": "critical",
     "labels": {"team": "payments"}},
    {"name": "failures_by_device", "metric": "funnel.payment_failure_rate", "window": "5m",
     "above": 0.5, "min_samples": 10, "for": 2, "by": ["device"]},
    # repeat_every longer than the test's span: the idle pipeline closes
    # empty windows up to now, 2-3 h after the start depending on the minute
    # the test starts at, and a repeat (same alert_id) after 1 h would come
    # only on some runs. Repeats: test_alerts_restart.
    {"name": "no_orders", "metric": "funnel.orders", "window": "5m", "absent_for": "10m",
     "repeat_every": "6h"},
]


class AlertsEndToEnd(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.start = start = H.floor_to(now - 2 * HR, HR)
        cls.outage = (start + OUTAGE_AT, start + OUTAGE_AT + OUTAGE_FOR)
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        # small batches: the catch-up closes windows over many commits, so the
        # sampler below sees many final pointers (with the default 10,000 the
        # whole history can fit in two or three commits)
        extra = {"alerts": RULES, "alerting": {"format": "json"},
                 "pipeline": {"batch_max": 500}}
        cls.cfg = cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap,
                                       cls.redis.port, sizes=("1m", "5m"), extra=extra)
        H.gen(cfg, cls.broker.bootstrap_file, 0, 4242, start, rate=4,
              extra_args=("--duration", "100m", "--scenario", "checkout-outage",
                          "--incident-start", f"+{OUTAGE_AT // M}m",
                          "--incident-duration", f"{OUTAGE_FOR // M}m"),
              log_path=f"{cls.tmp}/gen.log")
        cls.samples, stop = [], threading.Event()
        sampler = threading.Thread(target=cls.sample, args=(stop,), daemon=True)
        sampler.start()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=120, pipeline=cls.pipe)
        H.wait_all_closed(r, NS, start + 100 * M - 1, sizes=("1m", "5m"), timeout=120,
                          pipeline=cls.pipe)

        def settled():
            cls.pipe.assert_alive()
            mark = r.hget(f"sp:{{{NS}}}:alerts:state", "no_orders")
            return r.hlen(f"sp:{{{NS}}}:alerts:outbox") == 0 and mark is not None and \
                int(mark) >= start + 105 * M
        H.wait_until(settled, 60, 0.25, "windows after the traffic evaluated, outbox drained")
        stop.set()
        sampler.join(10)
        cls.msgs = H.kcat_json_alerts(cls.broker.bootstrap)
        cls.term_rc = cls.pipe.terminate(20)
        # a restart on the same Redis: nothing new
        cls.pipe2 = cls.track(H.Pipeline(cls.tmp, cfg, name="pipeline2")).start()
        time.sleep(8)
        cls.pipe2.assert_alive()
        cls.msgs_after = H.kcat_json_alerts(cls.broker.bootstrap)
        cls.term_rc2 = cls.pipe2.terminate(20)
        print("alerts:", json.dumps([(m["rule"], m["state"], m["dimension"],
                                      (m["window_start"] - start) // M, m["summary"])
                                     for _, m in cls.msgs], indent=1), flush=True)

    @classmethod
    def sample(cls, stop):
        """(final pointer, markers) read atomically, as often as Redis answers."""
        r = redis_py.Redis(host="127.0.0.1", port=cls.redis.port, decode_responses=True)
        names = [ru["name"] for ru in RULES]
        while not stop.is_set():
            p = r.pipeline(transaction=True)
            p.get(f"sp:{{{NS}}}:final:funnel:5m")
            p.hmget(f"sp:{{{NS}}}:alerts:state", names)
            final, marks = p.execute()
            cls.samples.append((final, marks))
        r.close()

    def test_outbox_in_the_commit_that_closes_the_window(self):
        finals = {f for f, _ in self.samples if f is not None}
        # the sampler saw windows close (in catch-up, many per commit)
        self.assertGreaterEqual(len(finals), 3, f"{len(self.samples)} samples")
        bad = [(f, m) for f, m in self.samples if f is not None and m != [f] * len(RULES)]
        self.assertEqual(bad[:5], [], f"{len(bad)} of {len(self.samples)} samples")

    def of(self, rule):
        return [m for _, m in self.msgs if m["rule"] == rule]

    def test_spike_fires_once_names_mobile_and_resolves(self):
        ms = self.of("payment_failure_spike")
        self.assertEqual([m["state"] for m in ms], ["FIRING", "RESOLVED"], ms)
        fire, res = ms
        lo, hi = self.outage
        self.assertTrue(lo <= fire["window_start"] <= lo + 10 * M, fire)
        self.assertTrue(hi <= res["window_start"] <= hi + 10 * M, res)
        self.assertGreater(fire["value"], 0.3)
        self.assertEqual(fire["threshold"], 0.3)
        self.assertGreaterEqual(fire["sample_size"], 20)
        self.assertEqual(fire["contributors"][0]["dimension"], "device=mobile", fire)
        self.assertIn("mostly device=mobile", fire["summary"])
        self.assertEqual(fire["severity"], "critical")
        self.assertEqual(fire["labels"], {"team": "payments"})
        self.assertEqual(fire["dimension"], None)
        self.assertEqual(fire["started_at"], fire["window_end"])
        self.assertEqual(res["started_at"], fire["started_at"])
        self.assertLessEqual(res["value"], 0.15)

    def test_by_device_with_for(self):
        ms = self.of("failures_by_device")
        self.assertEqual([(m["state"], m["dimension"]) for m in ms],
                         [("FIRING", "device=mobile"), ("RESOLVED", "device=mobile")], ms)
        lo, _ = self.outage
        self.assertGreaterEqual(ms[0]["window_start"], lo + 5 * M)  # the second bad window

    def test_absent_only_when_traffic_stops(self):
        ms = self.of("no_orders")
        self.assertEqual([(m["state"], m["window_start"] - self.start) for m in ms],
                         [("FIRING", 105 * M)], ms)
        self.assertEqual(ms[0]["summary"], "no orders for 10m")
        self.assertEqual(ms[0]["sample_size"], 0)

    def test_ids_keys_and_restart(self):
        ids = [m["alert_id"] for _, m in self.msgs]
        self.assertEqual(len(ids), len(set(ids)), ids)
        for key, m in self.msgs:
            self.assertEqual(key, m["fingerprint"])
            self.assertEqual(m["alert_id"], f"{m['fingerprint']}:{m['state']}:{m['window_start']}")
        self.assertEqual(len(self.msgs_after), len(self.msgs))
        self.assertEqual(self.term_rc, 0)
        self.assertEqual(self.term_rc2, 0)


if __name__ == "__main__":
    H.main()
