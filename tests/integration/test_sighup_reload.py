"""SIGHUP (README "Operations", docs/ALERTS.md "Changing the rules"):
reopens log.file and reads the alert rules again; never stops the
process (before, SIGHUP killed it: exit 129, no final commit, the lease
held until it expired).

Hand-made failed payments in 1-minute windows (harness.HandmadeAlerts);
overall per window 1 4 4 4 4 1 5 1. Two rules: `steady` (above 2,
resolve_below 1, never repeated), the same in every file, and `tunable`
(above 10 at start: it never fires on this plan). log.file is
<tmp>/sp.log. A second instance of the namespace waits as a standby.
  1. windows 0-3: `steady` FIRING at window 1;
  2. sp.log renamed to sp.log.1 (logrotate's way), `tunable` changed to
     above 3 and pipeline.batch_max changed in the file, SIGHUP: the new
     lines are in a new sp.log; the reload names pipeline.batch_max as
     needing a restart; `steady` keeps its state: it does not fire again.
     The standby gets a SIGHUP too and keeps waiting;
  3. windows 4-5: `tunable`, a changed rule, starts afresh with the first
     window closed after the reload (windows already decided are not
     decided again): FIRING at window 4 with the new threshold; both
     resolve at window 5;
  4. a file with an error (a third rule on a window size that is not
     configured) and `tunable` at above 100, SIGHUP: the error is logged
     with FILE:LINE and the rule, the process runs on, and the current
     rules stay: window 6 (5 failures) fires both (above 100 would not);
  5. `steady` removed from the file while it fires, SIGHUP: it is resolved
     (a RESOLVED message for its last window, docs/ALERTS.md) and its state
     and marker leave sp:{NS}:alerts:state; window 7 resolves `tunable`.
Every alert message is then on the alert topic exactly once; both
processes are alive and exit 0 on SIGTERM."""

import os
import signal
import time

import harness as H

NS = "sighup"


def rules(tunable_above=10, steady=True, broken=False):
    out = []
    if steady:
        out.append({"name": "steady", "metric": "funnel.payments_failed", "window": "1m",
                    "above": 2, "resolve_below": 1, "repeat_every": "0s"})
    out.append({"name": "tunable", "metric": "funnel.payments_failed", "window": "1m",
                "above": tunable_above, "repeat_every": "0s"})
    if broken:
        out.append({"name": "broken", "metric": "funnel.payments_failed", "window": "7m",
                    "above": 1})
    return out


class SighupReload(H.HandmadeAlerts):
    NS = NS
    RULES = rules()
    PLAN = [{"mobile": 1}, {"mobile": 4}, {"mobile": 4}, {"mobile": 4}, {"mobile": 4},
            {"desktop": 1}, {"mobile": 5}, {"desktop": 1}]

    @classmethod
    def write(cls, rules_, batch_max=10000):
        H.write_config(cls.cfg, cls.NS, cls.broker.bootstrap, cls.redis.port, sizes=("1m",),
                       idle_timeout="1h",
                       extra={"alerts": rules_, "alerting": {"format": cls.FORMAT},
                              "pipeline": {"batch_max": batch_max},
                              "log": {"level": "info", "file": cls.logfile}})

    @classmethod
    def log(cls, path=None):
        p = path or cls.logfile
        return open(p, errors="replace").read() if os.path.exists(p) else ""

    @classmethod
    def wait_log(cls, text, count=1, timeout=30):
        def seen():
            for p in cls.pipes:
                p.assert_alive()
            return cls.log().count(text) >= count
        H.wait_until(seen, timeout, 0.1, f"{text!r} x{count} in {cls.logfile}")

    @classmethod
    def wait_through(cls, rule, i, timeout=60):
        r = cls.redis.client

        def done():
            for p in cls.pipes:
                p.assert_alive()
            return (H.alerts_evaluated_through(r, NS, rule) or -1) >= cls.wstart(i)
        H.wait_until(done, timeout, 0.2, f"{rule} evaluated through window {i}")

    @classmethod
    def scenario(cls):
        cls.setup_env()
        cls.logfile = os.path.join(cls.tmp, "sp.log")
        cls.write(rules())
        r = cls.redis.client
        pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        cls.pipes = [pipe]
        cls.feed(4)
        cls.wait_through("steady", 3)
        cls.wait_through("tunable", 3)
        standby = cls.track(H.Pipeline(cls.tmp, cls.cfg, name="standby")).start()
        cls.pipes.append(standby)
        cls.wait_log("waiting for its lease")
        cls.pid = pipe.proc.pid

        # 2: rotate the log, change one rule and one other option, SIGHUP
        os.rename(cls.logfile, cls.logfile + ".1")
        cls.write(rules(tunable_above=3), batch_max=5000)
        pipe.signal(signal.SIGHUP)
        cls.wait_log("reload: alert rules from")
        standby.signal(signal.SIGHUP)
        cls.wait_log("once active")
        cls.state_after_change = r.hgetall(f"sp:{{{NS}}}:alerts:state")
        cls.reload1_log = cls.log()

        # 3: both resolve at window 5
        cls.feed(6)
        cls.wait_through("steady", 5)
        cls.wait_through("tunable", 5)

        # 4: an error in the file: the current rules stay
        cls.write(rules(tunable_above=100, broken=True))
        pipe.signal(signal.SIGHUP)
        cls.wait_log("the current alert rules stay")
        cls.broken_log = cls.log()
        cls.feed(7)
        cls.wait_through("steady", 6)
        cls.wait_through("tunable", 6)

        # 5: steady removed while it fires
        cls.write(rules(tunable_above=3, steady=False))
        pipe.signal(signal.SIGHUP)
        cls.wait_log("reload: alert rules from", count=2)
        cls.state_after_removal = r.hgetall(f"sp:{{{NS}}}:alerts:state")
        cls.feed(8)
        cls.wait_through("tunable", 7)
        cls.wait_outbox_empty(pipe)
        time.sleep(1)
        cls.msgs = H.kcat_json_alerts(cls.broker.bootstrap)
        cls.alive = [p.alive() for p in cls.pipes]
        cls.same_pid = pipe.proc.pid == cls.pid
        cls.rcs = [p.terminate(30) for p in (standby, pipe)]
        print(f"{len(cls.msgs)} alert messages", flush=True)

    def transitions(self):
        return sorted((a["rule"], a["state"], a["window_start"])
                      for _, a in self.msgs)

    def test_alive_through_every_sighup(self):
        self.assertEqual(self.alive, [True, True])
        self.assertTrue(self.same_pid)
        self.assertEqual(self.rcs, [0, 0])

    def test_log_reopened(self):
        old = self.log(self.logfile + ".1")
        self.assertIn("storepulse running", old)
        self.assertNotIn("SIGHUP", old)
        self.assertIn("SIGHUP: log reopened", self.reload1_log)
        self.assertNotIn("storepulse running", self.reload1_log)

    def test_other_options_named(self):
        lines = [ln for ln in self.reload1_log.splitlines() if "take effect only at a restart" in ln]
        self.assertEqual(len(lines), 1, self.reload1_log)
        self.assertIn("pipeline.batch_max", lines[0])
        self.assertNotIn("kafka", lines[0])

    def test_broken_config_logged(self):
        lines = [ln for ln in self.broken_log.splitlines() if "the current alert rules stay" in ln]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(f"{self.cfg}:", lines[0])
        self.assertIn("broken", lines[0])
        self.assertIn("ERROR", lines[0].upper())

    def test_changed_rule_starts_after_the_decided_windows(self):
        st = self.state_after_change
        self.assertEqual(st.get("tunable"), str(self.wstart(3)), st)  # its marker, reset
        self.assertFalse([f for f in st if f.startswith("tunable|")], st)
        # the unchanged rule's state, FIRING (phase 2, rules.h), since window 1
        self.assertTrue(st.get("steady|", "").startswith("A1 2 "), st)
        self.assertEqual(st.get("steady"), str(self.wstart(3)), st)

    def test_removed_rule_state_gone(self):
        st = self.state_after_removal
        self.assertFalse([f for f in st if f == "steady" or f.startswith("steady|")], st)
        self.assertIn("tunable", st)

    def test_every_message_once(self):
        w = self.wstart
        want = sorted([("steady", "FIRING", w(1)), ("steady", "RESOLVED", w(5)),
                       ("steady", "FIRING", w(6)), ("steady", "RESOLVED", w(6)),
                       ("tunable", "FIRING", w(4)), ("tunable", "RESOLVED", w(5)),
                       ("tunable", "FIRING", w(6)), ("tunable", "RESOLVED", w(7))])
        self.assertEqual(self.transitions(), want)

    def test_removed_rule_resolution_says_why(self):
        res = [a for _, a in self.msgs if a["rule"] == "steady" and a["state"] == "RESOLVED"
               and a["window_start"] == self.wstart(6)]
        self.assertEqual(len(res), 1)
        self.assertIn("removed or changed in the configuration", res[0]["summary"])


if __name__ == "__main__":
    H.main()
