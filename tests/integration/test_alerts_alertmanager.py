"""`alerting.format: alertmanager` end to end (SPEC section 5, docs/ALERTS.md
"Formats"): the pipeline writes each alert transition as a Prometheus
Alertmanager v2 alert (what POST /api/v2/alerts takes: an array of
postableAlert), read here with kcat.

Hand-made failed payments (harness.HandmadeAlerts: 13 one-minute windows;
payment_failures fires at window 2, repeats at 5 and 8, resolves at 9; per
device mobile fires at 3 and resolves at 4, desktop at 8 and 9). Checked on
every message:
  - a JSON array of one object with only labels, annotations, startsAt,
    endsAt, generatorURL; labels and annotations maps of strings, label
    names as Prometheus allows;
  - labels: alertname = the rule, severity, metric, fingerprint (= the Kafka
    key), device for the per-device rule, the rule's own labels (team);
    the same label set on every message of a series (Alertmanager
    identifies an alert by its labels: a RESOLVED with other labels would
    never end the FIRING one);
  - annotations: summary (with the rule's summary sentence), alert_id;
  - startsAt: the end of the window that fired, RFC 3339 UTC; endsAt on
    every message, exactly as docs/ALERTS.md "endsAt" says: FIRING
    max(emitted_at, window end) + 4 x max(repeat_every, window size),
    RESOLVED the end of the resolving window;
  - generatorURL: alerting.generator_url;
and the messages are exactly the expected transitions (state from
annotations.state, window from annotations.window_start), each once.
`storepulse alerts --json` decodes them back to the same transitions.

With a real Alertmanager (the Debian package prometheus-alertmanager, with
resolve_timeout 2s): our FIRING message stays active past resolve_timeout
where the same alert without endsAt is resolved by Alertmanager itself, and
our RESOLVED message resolves it."""

import calendar
import json
import os
import re
import shutil
import subprocess
import time
import unittest
import urllib.request

import harness as H

GENERATOR_URL = "http://dash.example/storepulse?ns=al-am"
AM_FIELDS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
KEEP = 4  # producers/alert.h SP_ALERT_AM_KEEP


def parse_rfc3339_ms(s):
    """"2026-11-23T10:05:01.234Z" -> epoch ms (UTC only, as we write it)."""
    whole, _, frac = s.rstrip("Z").partition(".")
    t = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return t * 1000 + (int((frac + "000")[:3]) if frac else 0)


class AlertmanagerFormat(H.HandmadeAlerts):
    NS = "al-am"
    FORMAT = "alertmanager"
    EXTRA = {"alerting": {"generator_url": GENERATOR_URL}}
    # repeat_every 0s is refused with this format (an alert would expire in
    # Alertmanager while it fires): 1h, longer than the scenario, gives the
    # same transitions as the base class's 0s
    RULES = [dict(r, repeat_every="1h") if r.get("repeat_every") == "0s" else r
             for r in H.HandmadeAlerts.RULES]

    @classmethod
    def scenario(cls):
        cls.setup_env()
        n = len(cls.PLAN)
        cls.feed(n)
        pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        H.wait_caught_up(cls.redis.client, cls.NS, cls.broker.bootstrap, timeout=60,
                         pipeline=pipe)
        cls.wait_evaluated(n, pipe)
        cls.wait_outbox_empty(pipe)
        cls.raw = H.kcat_alerts(cls.broker.bootstrap)
        p = subprocess.run([H.SP_BIN, "alerts", "-b", cls.broker.bootstrap, "--from-beginning",
                            "--json", "--timeout", "3s"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        cls.cli_rc, cls.cli_err = p.returncode, p.stderr.decode()
        cls.decoded = [json.loads(x) for x in p.stdout.decode().splitlines() if x.strip()]
        cls.term_rc = pipe.terminate(20)
        print("\n".join(v for _, v in cls.raw[:2]), flush=True)

    @classmethod
    def rule(cls, name):
        return next(r for r in cls.RULES if r["name"] == name)

    def alerts(self):
        """[(key, the one Alertmanager alert of the message)]"""
        out = []
        for key, v in self.raw:
            arr = json.loads(v)
            self.assertIsInstance(arr, list, v)
            self.assertEqual(len(arr), 1, v)
            out.append((key, arr[0]))
        return out

    def test_shape(self):
        self.assertTrue(self.raw)
        for key, a in self.alerts():
            self.assertLessEqual(set(a), AM_FIELDS, a)
            self.assertEqual(set(a), AM_FIELDS, a)
            for m in ("labels", "annotations"):
                self.assertIsInstance(a[m], dict)
                for k, v in a[m].items():
                    self.assertIsInstance(v, str, (m, k))
            for k in a["labels"]:
                self.assertRegex(k, LABEL_NAME)
            self.assertEqual(a["generatorURL"], GENERATOR_URL)

    def test_labels_and_annotations(self):
        for key, a in self.alerts():
            lb, an = a["labels"], a["annotations"]
            rule = self.rule(lb["alertname"])
            self.assertEqual(lb["fingerprint"], key)
            self.assertEqual(lb["metric"], rule["metric"])
            self.assertEqual(lb["severity"], rule.get("severity", "warning"))
            for k, v in rule.get("labels", {}).items():
                self.assertEqual(lb[k], v)
            if rule.get("by"):
                self.assertIn(lb.get("device"), ("mobile", "desktop"), lb)
            else:
                self.assertNotIn("device", lb)
            self.assertTrue(an["summary"])
            if "summary" in rule:
                self.assertIn(rule["summary"], an["summary"])
            fp, state, _ = an["alert_id"].split(":")
            self.assertEqual(fp, key)
            self.assertEqual(state, an["state"])

    def test_one_label_set_per_series(self):
        sets = {}
        for key, a in self.alerts():
            sets.setdefault(key, set()).add(json.dumps(a["labels"], sort_keys=True))
        self.assertEqual(len(sets), 3)  # overall, mobile, desktop
        for key, s in sets.items():
            self.assertEqual(len(s), 1, (key, s))

    def test_expected_transitions_and_times(self):
        got = []
        for key, a in self.alerts():
            an = a["annotations"]
            state = an["state"]
            ws = next(self.wstart(i) for i in range(len(self.PLAN))
                      if H.rfc3339_ms(self.wstart(i)) == an["window_start"])
            alert_w = int(an["alert_id"].split(":")[2])
            dim = f"device={a['labels']['device']}" if "device" in a["labels"] else None
            got.append((a["labels"]["alertname"], dim, state, ws, alert_w))
            if state == "RESOLVED":  # the resolution: the window's end
                self.assertEqual(a["endsAt"], H.rfc3339_ms(ws + self.M))
            else:  # wall time of the message + 4 repeat intervals
                every = H.parse_duration_ms(self.rule(a["labels"]["alertname"])["repeat_every"])
                emitted = parse_rfc3339_ms(an["emitted_at"])
                self.assertGreater(emitted, ws + self.M)  # history: the clock is later
                self.assertEqual(a["endsAt"], H.rfc3339_ms(emitted + KEEP * max(every, self.M)))
            # started when it fired: the end of its first FIRING window
            fired = ws if state == "FIRING" and alert_w == ws else None
            if fired is not None:
                self.assertEqual(a["startsAt"], H.rfc3339_ms(fired + self.M))
        self.assertEqual(sorted(got, key=str), self.expected(len(self.PLAN)))
        # repeats and the RESOLVED keep the startsAt of their FIRING
        starts = {}
        for key, a in self.alerts():
            starts.setdefault(key, set()).add(a["startsAt"])
        self.assertTrue(all(len(s) == 1 for s in starts.values()), starts)

    @unittest.skipUnless(AM_BIN, "prometheus-alertmanager not installed (deploy/install-deps.sh)")
    def test_real_alertmanager_keeps_firing(self):
        firing = next(v for _, v in self.raw if json.loads(v)[0]["annotations"]["state"] == "FIRING")
        fa = json.loads(firing)[0]
        resolved = next(v for k, v in self.raw if json.loads(v)[0]["labels"] == fa["labels"]
                        and json.loads(v)[0]["annotations"]["state"] == "RESOLVED")
        bare = dict(fa, labels=dict(fa["labels"], alertname="without_ends_at"))
        del bare["endsAt"]
        d = f"{self.tmp}/am"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/am.yml", "w") as f:
            f.write("global:\n  resolve_timeout: 2s\nroute:\n  receiver: sink\n"
                    "receivers:\n  - name: sink\n")
        port = H.free_port()
        log = open(f"{d}/am.log", "w")
        am = subprocess.Popen([AM_BIN, f"--config.file={d}/am.yml", f"--storage.path={d}",
                               f"--web.listen-address=127.0.0.1:{port}",
                               "--cluster.listen-address="], stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}/api/v2"

        def call(path, body=None):
            req = urllib.request.Request(base + path, data=body, method="POST" if body else "GET",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read() or b"null")

        def active():
            return {a["labels"]["alertname"]: a["status"]["state"] for a in call("/alerts")
                    if not a["endsAt"] or parse_rfc3339_ms(a["endsAt"]) > H.now_ms()}

        try:
            H.wait_until(lambda: call("/status") is not None, 20, 0.2, "alertmanager up")
            call("/alerts", firing.encode())            # ours, as the topic carries it
            call("/alerts", json.dumps([bare]).encode())  # the same without endsAt
            self.assertEqual(set(active()), {fa["labels"]["alertname"], "without_ends_at"})
            time.sleep(4)  # past resolve_timeout
            self.assertEqual(active(), {fa["labels"]["alertname"]: "active"})
            call("/alerts", resolved.encode())
            H.wait_until(lambda: not active(), 10, 0.2, "resolved by our RESOLVED")
        finally:
            am.terminate()
            am.wait(10)
            log.close()

    def test_read_back(self):
        self.assertEqual(self.cli_rc, 0, self.cli_err)
        self.assertEqual(H.alert_transitions(self.decoded), self.expected(len(self.PLAN)))
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
