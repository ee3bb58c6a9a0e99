"""`storepulse alerts` reads the alert topic in all three formats (SPEC §5).

Alerts are encoded here, independently of the C code: Avro with python-avro
and schemas/alert.avsc behind Confluent framing, the JSON object, and the
Alertmanager v2 array. They go to storepulse.alerts of a `storepulse broker`
with a garbage message among them; `storepulse alerts --from-beginning`
prints one line per alert (and with --json one object per line), reports
the garbage on stderr with topic/partition/offset and goes on; kcat reads
the same messages."""

import json
import os
import shutil
import subprocess

import harness as H

T0 = 1795428000000  # 2026-11-23T10:00:00Z
SCHEMA_ID = 9


def alert_schema():
    with open(os.path.join(H.SCHEMA_DIR, "alert.avsc")) as f:
        return H.parse_schema(H._strip_logical(json.load(f)))


def record(fp, rule, state, dimension, value, threshold, n, start, contrib, labels, summary):
    return {
        "fingerprint": fp, "alert_id": f"{fp}:{state}:{start}", "rule": rule, "state": state,
        "severity": "critical", "metric": "funnel.conversion_rate", "dimension": dimension,
        "value": value, "threshold": threshold, "sample_size": n, "window_size": "5m",
        "window_start": start, "window_end": start + 300_000, "started_at": start + 300_000,
        "emitted_at": start + 301_000, "contributors": contrib, "summary": summary,
        "labels": labels,
    }


AVRO_REC = record("aaaaaaaaaaaaaaaa", "conversion_drop", "FIRING", "channel=web", 0.011, 0.015,
                  1200, T0, [{"dimension": "device=mobile", "value": 0.004, "share": 0.62,
                              "baseline": 0.021}], {"team": "checkout"},
                  "Conversion on web fell to 1.1 %")
JSON_REC = record("bbbbbbbbbbbbbbbb", "conversion_drop", "RESOLVED", None, 0.025, 0.02, 900,
                  T0 + 600_000, [], {}, "Conversion recovered")
AM_ALERT = [{
    "labels": {"alertname": "checkout_collapse", "severity": "page",
               "metric": "funnel.checkout_to_order_rate", "fingerprint": "cccccccccccccccc",
               "device": "mobile", "team": "payments"},
    "annotations": {"summary": "Checkouts stopped on mobile", "alert_id":
                    "cccccccccccccccc:FIRING:1795428000000", "dimension": "device=mobile",
                    "value": "0.1", "threshold": "0.4", "sample_size": "300",
                    "window_size": "1m", "window_start": "2026-11-23T10:00:00Z",
                    "window_end": "2026-11-23T10:01:00Z"},
    "startsAt": "2026-11-23T10:01:00Z",
    "generatorURL": "http://storepulse/rules/checkout_collapse",
}]

EXPECTED = [
    "2026-11-23T10:05:00Z FIRING critical conversion_drop channel=web "
    "funnel.conversion_rate=0.011 (threshold 0.015, n=1200) -- Conversion on web fell to 1.1 %",
    "2026-11-23T10:15:00Z RESOLVED critical conversion_drop "
    "funnel.conversion_rate=0.025 (threshold 0.02, n=900) -- Conversion recovered",
    "2026-11-23T10:01:00Z FIRING page checkout_collapse device=mobile "
    "funnel.checkout_to_order_rate=0.1 (threshold 0.4, n=300) -- Checkouts stopped on mobile",
]


class AlertsCli(H.SPTestCase):

    @classmethod
    def scenario(cls):
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cls.cfg = H.write_config(f"{cls.tmp}/sp.yaml", "alertscli", cls.broker.bootstrap, 1)
        s = H.Sender(cls.broker.bootstrap)
        topic = H.TOPIC_ALERTS
        # one partition keeps the order; key = fingerprint as the evaluator does
        s.send(topic, H.frame(SCHEMA_ID, H.avro_body(alert_schema(), AVRO_REC)),
               key=b"aaaaaaaaaaaaaaaa", tag="avro", partition=0)
        s.send(topic, b"\xde\xad\xbe\xef not an alert", key=b"x", tag="garbage", partition=0)
        s.send(topic, json.dumps(JSON_REC).encode(), key=b"bbbbbbbbbbbbbbbb", tag="json",
               partition=0)
        s.send(topic, json.dumps(AM_ALERT).encode(), key=b"cccccccccccccccc", tag="am",
               partition=0)
        s.flush()
        cls.sender = s

    def run_alerts(self, *extra):
        argv = [H.SP_BIN, "alerts", "-c", self.cfg, "--bootstrap-file",
                self.broker.bootstrap_file, "--from-beginning", "--count", "3",
                "--timeout", "20s", *extra]
        p = H.sp_run(argv, cwd=H.SP_SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout.decode().splitlines(), p.stderr.decode()

    def test_lines(self):
        out, err = self.run_alerts()
        self.assertEqual(out, EXPECTED)
        where = self.sender.where("garbage")
        bad = [ln for ln in err.splitlines() if "not an alert" in ln]
        self.assertEqual(len(bad), 1, err)
        self.assertIn(f"{H.TOPIC_ALERTS} [{where[2]}] @ {where[3]}", bad[0])

    def test_json(self):
        out, _ = self.run_alerts("--json")
        self.assertEqual(len(out), 3)
        objs = [json.loads(ln) for ln in out]
        a, j, m = objs
        for k, v in AVRO_REC.items():
            self.assertEqual(a[k], v, k)
        for k, v in JSON_REC.items():
            self.assertEqual(j[k], v, k)
        self.assertEqual(m["rule"], "checkout_collapse")
        self.assertEqual(m["alert_id"], "cccccccccccccccc:FIRING:1795428000000")
        self.assertEqual(m["dimension"], "device=mobile")
        self.assertEqual(m["labels"], {"team": "payments"})
        self.assertEqual(m["started_at"], T0 + 60_000)
        self.assertEqual(m["window_start"], T0)
        self.assertEqual(m["state"], "FIRING")

    def test_timeout_without_count(self):
        argv = [H.SP_BIN, "alerts", "-c", self.cfg, "-b", self.broker.bootstrap,
                "--timeout", "2s"]
        p = H.sp_run(argv, cwd=H.SP_SRC, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout, b"")  # from the end: nothing new

    def test_kcat(self):
        kcat = shutil.which("kcat") or shutil.which("kafkacat")
        if not kcat:
            self.skipTest("kcat not installed")
        p = subprocess.run([kcat, "-C", "-b", self.broker.bootstrap, "-t", H.TOPIC_ALERTS,
                            "-o", "beginning", "-e", "-q", "-f", "%k\n"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout.decode().split(),
                         ["aaaaaaaaaaaaaaaa", "x", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"])


if __name__ == "__main__":
    H.main()
