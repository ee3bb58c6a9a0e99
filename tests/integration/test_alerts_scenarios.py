"""Incidents of `storepulse gen` beyond the checkout outage (that one is
test_alerts_e2e) raise their alert end to end, read back with kcat:

  - support-backlog (channel email): human replies due in the incident come
    2-8 h late (a first response counts in its reply's window). Rule first_response_breach: support.frt_seconds_mean (the
    mean first response, kept per channel) above 3600 per channel in 1h
    windows, min_samples 5. It must fire for channel=email (a window at or
    after the incident start), and for no other channel.

Each runs its own broker, Redis and pipeline, JSON alerts."""

import json

import harness as H

M = 60_000
HR = 60 * M


class Scenario(H.SPTestCase):
    NS = None
    SCENARIO = None
    STREAMS = None
    DURATION_H = None
    INCIDENT = None  # (start h, duration h)
    RATE = None
    RULE = None

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
                          "--incident-duration", f"{cls.INCIDENT[1]}h"),
              log_path=f"{cls.tmp}/gen.log")
        pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, cls.NS, cls.broker.bootstrap, timeout=120, pipeline=pipe)
        fam = cls.RULE["metric"].split(".")[0]
        last = start + cls.DURATION_H * HR - 1
        H.wait_all_closed(r, cls.NS, last, sizes=("1h",), timeout=120, pipeline=pipe, family=fam)

        def settled():
            pipe.assert_alive()
            mark = r.hget(f"sp:{{{cls.NS}}}:alerts:state", cls.RULE["name"])
            return (mark is not None and int(mark) >= H.floor_to(last, HR)
                    and r.hlen(f"sp:{{{cls.NS}}}:alerts:outbox") == 0)
        H.wait_until(settled, 60, 0.25, "every window evaluated, outbox drained")
        cls.alerts = [a for _, a in H.kcat_json_alerts(cls.broker.bootstrap)]
        cls.term_rc = pipe.terminate(20)
        print("alerts:", json.dumps([(a["state"], a["dimension"],
                                      (a["window_start"] - start) / HR, a["summary"])
                                     for a in cls.alerts], indent=1), flush=True)

    LAST_WINDOW_H = None

    def check_fires_for(self, dimension):
        firing = [a for a in self.alerts if a["state"] == "FIRING"]
        if self.LAST_WINDOW_H is not None:
            firing = [a for a in firing
                      if a["window_start"] < self.start + self.LAST_WINDOW_H * HR]
        self.assertTrue(firing, self.alerts)
        self.assertEqual({a["dimension"] for a in firing}, {dimension}, firing)
        inc = self.start + self.INCIDENT[0] * HR
        self.assertGreaterEqual(min(a["window_start"] for a in firing), inc)
        # first responses count in the reply's window: 2-8 h late
        self.assertLess(min(a["window_start"] for a in firing),
                        inc + (self.INCIDENT[1] + 8) * HR)
        for a in firing:
            if "above" in self.RULE:
                self.assertGreater(a["value"], self.RULE["above"])
                self.assertGreaterEqual(a["sample_size"], self.RULE["min_samples"])
            else:
                self.assertLess(a["value"], a["threshold"])
        # a repeat while firing is the same alert again: same alert_id,
        # a later window
        ids = [(a["alert_id"], a["window_start"]) for a in self.alerts]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(self.term_rc, 0)


class SupportBacklog(Scenario):
    NS = "al-support"
    SCENARIO = "support-backlog"
    STREAMS = "support"
    DURATION_H = 12
    INCIDENT = (3, 2)
    RATE = 20
    RULE = {"name": "first_response_breach", "metric": "support.frt_seconds_mean",
            "window": "1h", "above": 7200, "min_samples": 10, "by": ["channel"]}

    def test_fires_for_email(self):
        self.check_fires_for("channel=email")


del Scenario  # the base class has no scenario of its own

if __name__ == "__main__":
    H.main()
