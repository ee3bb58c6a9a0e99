"""The incidents of `storepulse gen` raise their alert end to end, read back
with kcat. gen has three scenarios: checkout-outage (test_alerts_e2e) and
the two here:

  - support-backlog (channel email): human replies due in the incident come
    2-8 h late (a first response counts in its reply's window). Rule
    first_response_breach: support.frt_seconds_mean (the mean first
    response, kept per channel) above 7200 per channel in 1h windows,
    min_samples 10. It must fire for channel=email, first for a window in
    [incident start, incident end + 8 h), and for no other channel.
  - carrier-delay (carrier dhl, warm start so parcels are in flight): a dhl
    parcel whose next event falls in the incident is lost or held and
    delivered after its promised time (gen.c, shipment_hold): dhl
    deliveries stop during the incident (checked) and the late ones land
    hours to days after it (seed 99: from 5 h after its end), so
    delivery_delay_rate|carrier=dhl rises. delivery.delivered is no signal:
    it drops to 0 in the incident, and a counter is its own sample, so with
    min_samples a drop rule on it decides nothing while it is 0. Rule: the
    shipped default late_deliveries_by_carrier, read from
    deploy/storepulse.yaml (delay rate above 0.2, resolves at 0.1, at least
    20 deliveries, for 2 one-hour windows, per carrier). It must fire for
    carrier=dhl only, first for a window in [incident end, incident end +
    12 h).

For both, the messages on the topic are exactly the transitions the rule
defines (docs/ALERTS.md) for the window counters in Redis (every value of
the rule's dimension, every closed window evaluated), computed here, each
once (a repeat every hour while firing: same alert_id, a later window;
also from a window that decides nothing, without a value).
Each runs its own broker, Redis and pipeline, JSON alerts."""

import json
import os

import yaml

import harness as H

M = 60_000
HR = 60 * M


def shipped_rule(name):
    """A rule of the shipped config, deploy/storepulse.yaml."""
    with open(os.path.join(H.SP_SRC, "deploy", "storepulse.yaml")) as f:
        return next(r for r in yaml.safe_load(f)["alerts"] if r["name"] == name)


class Scenario(H.SPTestCase):
    NS = None
    SCENARIO = None
    STREAMS = None
    GEN_ARGS = ()
    DURATION_H = None
    INCIDENT = None  # (start h, duration h)
    RATE = None
    RULE = None
    SAMPLE = None  # the sample field of the rule's ratio (None: mean or counter)
    FIRST = None   # (earliest, latest) start of the first FIRING window, hours after
                   # the incident's end

    @classmethod
    def scenario(cls):
        if cls.NS is None:
            return
        now = H.now_ms()
        cls.start = start = H.floor_to(now - (cls.DURATION_H + 3) * HR, HR)
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        extra = {"alerts": [cls.RULE], "alerting": {"format": "json"}}
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", cls.NS, cls.broker.bootstrap, cls.redis.port,
                             sizes=("1h",), extra=extra)
        H.gen(cfg, cls.broker.bootstrap_file, 0, 99, start, rate=cls.RATE,
              extra_args=("--duration", f"{cls.DURATION_H}h", "--streams", cls.STREAMS,
                          "--scenario", cls.SCENARIO,
                          "--incident-start", f"+{cls.INCIDENT[0]}h",
                          "--incident-duration", f"{cls.INCIDENT[1]}h") + tuple(cls.GEN_ARGS),
              log_path=f"{cls.tmp}/gen.log")
        pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, cls.NS, cls.broker.bootstrap, timeout=120, pipeline=pipe)
        fam = cls.RULE["metric"].split(".")[0]
        last = start + cls.DURATION_H * HR - 1
        H.wait_all_closed(r, cls.NS, last, sizes=("1h",), timeout=120, pipeline=pipe, family=fam)

        def settled():
            pipe.assert_alive()
            mark = H.alerts_evaluated_through(r, cls.NS, cls.RULE["name"])
            return (mark is not None and mark >= H.floor_to(last, HR)
                    and H.outbox_len(r, cls.NS) == 0 and mark)
        # every message of the windows up to `through` is on the topic now
        cls.through = H.wait_until(settled, 60, 0.25, "every window evaluated, outbox drained")
        cls.alerts = [a for _, a in H.kcat_json_alerts(cls.broker.bootstrap)]
        cls.windows = {s: h for (size, s), h in H.funnel_windows(r, cls.NS, fam).items()
                       if size == "1h" and s <= cls.through}
        cls.term_rc = pipe.terminate(20)
        print("alerts:", json.dumps([(a["state"], a["dimension"],
                                      (a["window_start"] - start) / HR, a["value"],
                                      a["sample_size"]) for a in cls.alerts]), flush=True)

    def check_fires_for(self, dimension):
        firing = [a for a in self.alerts if a["state"] == "FIRING"]
        self.assertTrue(firing, self.alerts)
        self.assertEqual({a["dimension"] for a in firing}, {dimension}, firing)
        inc_end = self.start + sum(self.INCIDENT) * HR
        first = min(a["window_start"] for a in firing)
        self.assertGreaterEqual(first, inc_end + self.FIRST[0] * HR)
        self.assertLess(first, inc_end + self.FIRST[1] * HR)
        for a in firing:
            if int(a["alert_id"].split(":")[2]) == a["window_start"]:  # the transition
                self.assertGreater(a["value"], self.RULE["above"])
                self.assertGreaterEqual(a["sample_size"], self.RULE["min_samples"])
            elif a["value"] is None:  # a repeat from a window that decides nothing
                self.assertLess(a["sample_size"], self.RULE["min_samples"])
            else:  # a repeat: still not resolved
                self.assertGreater(a["value"], self.RULE.get("resolve_below", 0))
        self.assertEqual(self.term_rc, 0)

    def check_transitions_of_the_windows(self):
        # the windows evaluated: consecutive, every one closed
        starts = sorted(self.windows)
        self.assertEqual(starts, list(range(starts[0], starts[-1] + HR, HR)))
        self.assertTrue(all(self.windows[s].get("closed") == "1" for s in starts))
        want = H.expected_alerts_of_windows(self.RULE, self.windows, HR, self.SAMPLE)
        got = H.alert_transitions([a for a in self.alerts if a["window_start"] <= self.through])
        self.assertEqual(got, want)


class SupportBacklog(Scenario):
    NS = "al-support"
    SCENARIO = "support-backlog"
    STREAMS = "support"
    DURATION_H = 12
    INCIDENT = (3, 2)
    RATE = 20
    RULE = {"name": "first_response_breach", "metric": "support.frt_seconds_mean",
            "window": "1h", "above": 7200, "min_samples": 10, "by": ["channel"]}
    FIRST = (-INCIDENT[1], 8)  # replies 2-8 h late, from the incident's start

    def test_fires_for_email(self):
        self.check_fires_for("channel=email")

    def test_transitions_of_the_windows(self):
        self.check_transitions_of_the_windows()


class CarrierDelay(Scenario):
    NS = "al-carrier"
    SCENARIO = "carrier-delay"
    STREAMS = "shipment"
    GEN_ARGS = ("--warm-start",)
    DURATION_H = 30
    INCIDENT = (6, 6)
    RATE = 5
    RULE = shipped_rule("late_deliveries_by_carrier")
    SAMPLE = "delivered"
    FIRST = (0, 12)

    def test_default_rule_as_documented(self):
        self.assertEqual((self.RULE["metric"], self.RULE["by"]),
                         ("delivery.delivery_delay_rate", ["carrier"]))

    def test_fires_for_dhl(self):
        self.check_fires_for("carrier=dhl")

    def test_dhl_deliveries_stop_in_the_incident(self):
        lo = self.start + self.INCIDENT[0] * HR
        hi = lo + self.INCIDENT[1] * HR
        inside = [h for s, h in self.windows.items() if lo <= s < hi]
        self.assertEqual(len(inside), self.INCIDENT[1])
        self.assertEqual([h.get("delivered|carrier=dhl", "0") for h in inside],
                         ["0"] * len(inside))
        self.assertTrue(all(int(h.get("delivered|carrier=ups", 0)) > 0 for h in inside))

    def test_transitions_of_the_windows(self):
        self.check_transitions_of_the_windows()


del Scenario  # the base class has no scenario of its own

if __name__ == "__main__":
    H.main()
