"""Alert rules name only what exists (docs/ALERTS.md "Rules", "Metrics"):
`storepulse check-config -c FILE` refuses a rule whose metric is unknown,
belongs to another family, or whose `by` is not one of the metric's
dimensions, exits non-zero and names FILE:LINE, the rule, the key and the
closest valid name. The shipped config passes. `check-config --metrics`
prints the catalogue with the dimensions of the given config.

Runs the binary only: no Redis, no broker.
"""

import os
import subprocess
import tempfile
import unittest

import harness as H

# (rule body, line of the culprit, key, what the message must say after
# "FILE:LINE: rule 'r': key 'KEY': ")
CASES = [
    ("metric: funnel.conversion_rte\n    below: 0.015", 4, "metric",
     "funnel.conversion_rte: no such metric in family funnel; "
     "did you mean funnel.conversion_rate?"),
    ("metric: gauges.overdue_in_fligth\n    above: 100", 4, "metric",
     "gauges.overdue_in_fligth: no such metric in family gauges; "
     "did you mean gauges.overdue_in_flight?"),
    ("metric: delivery.conversion_rate\n    below: 0.015", 4, "metric",
     "delivery.conversion_rate: no such metric in family delivery; "
     "did you mean funnel.conversion_rate?"),
    ("metric: funnel.conversion_rate\n    below: 0.015\n    by: [carrier]", 6, "by",
     "unknown dimension 'carrier' for funnel.conversion_rate: its dimensions are "
     "channel, device, country (metrics.funnel.dimensions); carrier is a dimension of "
     "delivery"),
    ("metric: abandonment.cart_abandonment_rate\n    above: 0.9\n    by: [devcie]", 6, "by",
     "unknown dimension 'devcie' for abandonment.cart_abandonment_rate: its dimensions "
     "are channel, device (metrics.abandonment.dimensions); did you mean device?"),
]


class CheckConfigRules(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sp-ccr-")

    def write(self, text):
        path = os.path.join(self.tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def check_config(self, *args):
        return subprocess.run([H.SP_BIN, "check-config", *args], capture_output=True, text=True,
                              timeout=60)

    def test_refused_with_file_line_rule_key(self):
        for body, line, key, why in CASES:
            with self.subTest(body=body):
                # line 1 windows, 2 alerts:, 3 "- name: r", 4 the body's first line
                path = self.write("windows: {sizes: [1m, 5m]}\nalerts:\n  - name: r\n    "
                                  + body + "\n")
                p = self.check_config("-c", path)
                self.assertNotEqual(p.returncode, 0, p.stdout)
                want = f"{path}:{line}: rule 'r': key '{key}': {why}"
                self.assertIn(want, p.stderr)
                self.assertEqual(p.stdout, "")

    def test_shipped_config_passes(self):
        p = self.check_config("-c", os.path.join(H.SP_SRC, "deploy", "storepulse.yaml"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("# alerts: 10 rules", p.stdout)

    def test_metrics_follow_the_config(self):
        path = self.write("metrics:\n  abandonment: {dimensions: [channel, country]}\n")
        p = self.check_config("-c", path, "--metrics")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("| abandonment | `abandonment.carts` | counter | itself | channel, country |",
                      p.stdout)
        self.assertIn("| gauges | `gauges.overdue_in_flight` | gauge | itself | (overall only) |",
                      p.stdout)
        # and the rule that dimension allows now loads
        path = self.write("metrics:\n  abandonment: {dimensions: [channel, country]}\n"
                          "alerts:\n  - {name: r, metric: abandonment.carts, above: 5, "
                          "by: [country]}\n")
        p = self.check_config("-c", path)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    H.main()
