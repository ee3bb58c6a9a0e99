"""`storepulse import-orders`: a CSV of past orders seeds customer history and
the cohort tables (docs/METRICS.md, retention), checked against values
computed by hand.

ImportOrders (Redis only, windows.timezone Europe/Warsaw): a CSV with good
lines in several time formats (Z, +01:00, +0100, fractions, epoch ms, a
quoted channel with a comma, a CRLF line, a blank line, a UTF-8 BOM) and bad
lines (impossible date, missing customer, wrong field counts, no zone, not a
time, before 2000, far future, unterminated quote): exit status 2, every bad
line named FILE:LINE on stderr and nothing else, the good lines imported.
Importing the same file again changes nothing (every cohort hash and every
customer value compared). A file without a header or an empty file is a
fatal error (exit 1) that imports nothing; --help documents the exit codes.

ImportThenLive: an import, then live orders through the pipeline: a
customer imported with an order two hours before counts as returning, one
imported with an order 400 days before (beyond the 365-day horizon) as new.
Re-importing after the live orders still changes nothing.
"""

import datetime
import subprocess
import time
from zoneinfo import ZoneInfo

import harness as H
import reference

TZ = "Europe/Warsaw"
ZI = ZoneInfo(TZ)
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

# line number -> text (line 1 is the header, with a UTF-8 byte order mark)
LINES = [
    "\ufeffcustomer_id,order_time,channel",
    "u1,2025-01-10T10:00:00Z,web",               # 2  u1 first: cohort 2025-01
    "u1,2025-02-05T10:00:00+01:00,web",          # 3  Feb, 25 d 23 h later
    "u1,1744963200000,app",                      # 4  2025-04-18T08:00Z: Apr
    "u2,2025-01-31T23:30:00Z,web",               # 5  Feb 1 00:30 in Warsaw: 2025-02
    "u2,2025-03-15T12:00:00.5+01:00,app",        # 6  Mar, 42 d later
    "u3,2025-03-10T12:00:00Z,web",               # 7  u3 first seen: 2025-03 ...
    "u3,2025-02-20T12:00:00Z,web",               # 8  ... moved to 2025-02, Mar 10 18 d later
    "u4,2025-05-01T00:00:00+02:00,web",          # 9  2025-05
    "u4,1746050400000,web",                      # 10 the same instant: known
    "u4,2025-04-30T22:00:00.000Z,web",           # 11 the same instant: known
    "",                                          # 12 blank: ignored
    '"u5","2025-06-01T12:00:00Z","we,b"',        # 13 quoted, a comma in the channel
    "u6,2025-06-02T12:00:00Z,web\r",             # 14 CRLF
    "u7,2025-13-01T00:00:00Z,web",               # 15 bad: no such date
    ",2025-06-01T12:00:00Z,web",                 # 16 bad: no customer
    "u8,2025-06-01T12:00:00Z",                   # 17 bad: 2 fields
    "u9,2025-06-01 12:00:00,web",                # 18 bad: no zone
    "u10,yesterday,web",                         # 19 bad: not a time
    "u11,1999-12-31T23:59:59Z,web",              # 20 bad: before 2000
    'u12,"unterminated,web',                     # 21 bad: unterminated quote
    "u1,2025-01-10T10:00:00Z,web,extra",         # 22 bad: 4 fields
    "u13,2099-01-01T00:00:00Z,web",              # 23 bad: far future
    "u2,2025-03-15T12:00:00.500+0100,web",       # 24 line 6 again (+HHMM): known
]
BAD = {15: "no such date", 16: "missing customer_id", 17: "expected 3 fields",
       18: "no time zone", 19: "neither epoch milliseconds nor ISO 8601",
       20: "before 2000", 21: "unterminated quoted field", 22: "got 4",
       23: "more than 1 day in the future"}

# 22 data lines (not the header, not the blank one); 9 bad; 13 imported, of
# which lines 10, 11 and 24 were known; customers u1..u6.
SUMMARY = ("22 lines read: 13 imported (10 new, 3 already known), 9 skipped; "
           "6 new customers")
SUMMARY_AGAIN = ("22 lines read: 13 imported (0 new, 13 already known), 9 skipped; "
                 "0 new customers")

COHORTS = {
    # u1: Feb (m1) and Apr (m3); Feb 5 is within 30 days
    "2025-01": {"customers": 1, "active_m1": 1, "active_m3": 1, "retained_30d": 1,
                "retained_60d": 1, "retained_90d": 1},
    # u2: Mar (m1), 42 days; u3 (moved in from 2025-03): Mar (m1), 18 days
    "2025-02": {"customers": 2, "active_m1": 2, "retained_30d": 1, "retained_60d": 2,
                "retained_90d": 2},
    "2025-05": {"customers": 1},
    "2025-06": {"customers": 2},
}


def run_import(cfg, path, timeout=120):
    p = H.sp_run([H.SP_BIN, "import-orders", "-c", cfg, path], cwd=H.SP_SRC,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write_csv(path, lines):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    return path


def counters(h):
    return {f: int(v) for f, v in h.items() if int(v) != 0}


def cohorts(r, ns):
    return {k.rsplit(":", 1)[1]: r.hgetall(k) for k in r.scan_iter(match=f"sp:{{{ns}}}:cohort:*")}


def customer_values(r, ns):
    rb = r.connection_pool.connection_kwargs
    raw = H.redis_py.Redis(host=rb["host"], port=rb["port"])
    return {k: raw.get(k) for k in raw.scan_iter(match=f"sp:{{{ns}}}:state:customer:*".encode())}


class ImportOrders(H.SPTestCase):
    NS = "imp"

    @classmethod
    def scenario(cls):
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        r = cls.redis.client
        cls.cfg = H.write_config(f"{cls.tmp}/sp.yaml", cls.NS, "127.0.0.1:1", cls.redis.port,
                                 extra={"windows": {"timezone": TZ}})
        cls.csv = write_csv(f"{cls.tmp}/orders.csv", LINES)
        cls.rc1, cls.out1, cls.err1 = run_import(cls.cfg, cls.csv)
        cls.cohorts1 = cohorts(r, cls.NS)
        cls.values1 = customer_values(r, cls.NS)
        cls.ttl1 = r.pttl(f"sp:{{{cls.NS}}}:state:customer:u1")
        cls.keys1 = sorted(r.keys("*"))
        cls.rc2, cls.out2, cls.err2 = run_import(cls.cfg, cls.csv)
        cls.cohorts2 = cohorts(r, cls.NS)
        cls.values2 = customer_values(r, cls.NS)
        cls.ttl2 = r.pttl(f"sp:{{{cls.NS}}}:state:customer:u1")
        # fatal: no header, empty file, no such file
        cls.nohdr = write_csv(f"{cls.tmp}/noheader.csv",
                              ["u20,2025-01-10T10:00:00Z", "u21,2025-01-11T10:00:00Z"])
        cls.rc3, cls.out3, cls.err3 = run_import(cls.cfg, cls.nohdr)
        cls.empty = f"{cls.tmp}/empty.csv"
        open(cls.empty, "w").close()
        cls.rc4, _, cls.err4 = run_import(cls.cfg, cls.empty)
        cls.rc5, _, cls.err5 = run_import(cls.cfg, f"{cls.tmp}/missing.csv")
        cls.keys3 = sorted(r.keys("*"))
        cls.cohorts3 = cohorts(r, cls.NS)
        # all good: exit 0 (two columns, no channel)
        cls.good = write_csv(f"{cls.tmp}/good.csv", ["customer_id,order_time",
                                                     "u30,2025-07-01T08:00:00+02:00"])
        cls.rc6, cls.out6, cls.err6 = run_import(cls.cfg, cls.good)
        cls.cohorts6 = cohorts(r, cls.NS)
        p = H.sp_run([H.SP_BIN, "import-orders", "--help"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, timeout=30)
        cls.help_rc, cls.help = p.returncode, p.stdout.decode()

    def test_exit_status_bad_lines(self):
        self.assertEqual(self.rc1, 2, self.err1)

    def test_stderr_names_every_bad_line(self):
        got = [ln for ln in self.err1.splitlines() if ln.strip()]
        self.assertEqual(len(got), len(BAD), self.err1)
        for line, (n, why) in zip(got, sorted(BAD.items())):
            self.assertTrue(line.startswith(f"{self.csv}:{n}: "), line)
            self.assertIn(why, line)

    def test_summary(self):
        self.assertIn(SUMMARY, self.out1)

    def test_cohorts(self):
        got = {m: counters(h) for m, h in self.cohorts1.items()}
        got = {m: c for m, c in got.items() if c}  # 2025-03: u3 came and went
        self.assertEqual(got, COHORTS)

    def test_customer_state(self):
        names = sorted(k.decode().rsplit(":", 1)[1] for k in self.values1)
        self.assertEqual(names, ["u1", "u2", "u3", "u4", "u5", "u6"])
        # state.customer_ttl: 400 days by default
        self.assertGreater(self.ttl1, 399 * DAY)
        # no window counters
        self.assertFalse([k for k in self.keys1 if ":retention:" in k or ":funnel:" in k],
                         self.keys1)

    def test_import_twice_changes_nothing(self):
        self.assertEqual(self.rc2, 2)
        self.assertEqual(self.err2.replace(self.csv, ""), self.err1.replace(self.csv, ""))
        self.assertIn(SUMMARY_AGAIN, self.out2)
        self.assertEqual(self.cohorts2, self.cohorts1)
        self.assertEqual(self.values2, self.values1)
        self.assertLessEqual(self.ttl2, self.ttl1)  # not even rewritten

    def test_missing_header_is_fatal(self):
        self.assertEqual(self.rc3, 1)
        self.assertIn(f"{self.nohdr}:1: missing header", self.err3)
        self.assertNotIn("lines read", self.out3)

    def test_empty_and_missing_files_are_fatal(self):
        self.assertEqual(self.rc4, 1)
        self.assertIn("empty file", self.err4)
        self.assertEqual(self.rc5, 1)
        self.assertIn("missing.csv", self.err5)

    def test_fatal_imports_nothing(self):
        self.assertEqual(self.keys3, self.keys1)
        self.assertEqual(self.cohorts3, self.cohorts1)

    def test_all_good_exit_0(self):
        self.assertEqual(self.rc6, 0, self.err6)
        self.assertEqual(self.err6, "")
        self.assertIn("1 lines read: 1 imported (1 new, 0 already known), 0 skipped; "
                      "1 new customers", self.out6)
        self.assertEqual(counters(self.cohorts6["2025-07"]), {"customers": 1})

    def test_help(self):
        self.assertEqual(self.help_rc, 0)
        self.assertIn("importing a file", self.help)
        self.assertIn("twice changes nothing", self.help)
        self.assertIn("Exit status", self.help)
        self.assertIn("2  some lines were bad", self.help)


# ---------------------------------------------------------------------------


def local_ms(y, m, d, hh=0, mm=0):
    return int(datetime.datetime(y, m, d, hh, mm, tzinfo=ZI).timestamp() * 1000)


def local_date(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, ZI).date()


def month_key(ms):
    d = local_date(ms)
    return f"{d.year:04d}-{d.month:02d}"


def pick_day():
    """A local midnight two (or five) days ago, not the 1st or 2nd of a month."""
    d = datetime.datetime.now(ZI).date() - datetime.timedelta(days=2)
    if d.day <= 2:
        d -= datetime.timedelta(days=3)
    return local_ms(d.year, d.month, d.day)


def order(eid, t, customer, channel, oid):
    return H.checkout(eid, t, "ORDER_PLACED", None, channel, "desktop", "PL",
                      customer_id=customer, order_id=oid, amount_cents=1000)


class ImportThenLive(H.SPTestCase):
    NS = "implive"

    @classmethod
    def scenario(cls):
        cls.D = D = pick_day()
        d = local_date(D) - datetime.timedelta(days=400)
        cls.old = old = datetime.datetime(d.year, d.month, d.day, 12, tzinfo=ZI)
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        r = cls.redis.client
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", cls.NS, cls.broker.bootstrap, cls.redis.port,
                             sizes=("1h", "1d"), idle_timeout="5s",
                             extra={"windows": {"timezone": TZ}})
        csv = write_csv(f"{cls.tmp}/hist.csv", [
            "customer_id,order_time",
            f"v1,{D - 2 * HOUR}",                # epoch ms, two hours before D
            f"v2,{old.isoformat()}",             # 400 days before, with its offset
        ])
        cls.rc, cls.out, cls.err = run_import(cfg, csv)
        snd = H.Sender(cls.broker.bootstrap)
        for rec in [order("l1", D + HOUR + 10 * MIN, "v1", "web", "ol1"),
                    order("l2", D + HOUR + 20 * MIN, "v2", "web", "ol2"),
                    order("l3", D + HOUR + 30 * MIN, "v3", "app", "ol3"),
                    order("l4", D + HOUR + 40 * MIN, None, "web", "ol4")]:
            snd.send(H.TOPIC_CHECKOUT, H.encode("checkout", rec), key=b"o", partition=0)
        snd.flush()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        H.wait_caught_up(r, cls.NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        dstart = local_ms(*local_date(D).timetuple()[:3])

        def final():
            cls.pipe.assert_alive()
            f1 = H.final_pointer(r, cls.NS, "1h", "retention")
            fd = H.final_pointer(r, cls.NS, "1d", "retention")
            return f1 is not None and f1 >= D + HOUR and fd is not None and fd >= dstart
        H.wait_until(final, 90, 0.25, "retention windows final")
        time.sleep(1)
        cls.h1 = r.hgetall(f"sp:{{{cls.NS}}}:retention:1h:{D + HOUR}")
        cls.dd = r.hgetall(f"sp:{{{cls.NS}}}:retention:1d:{dstart}")
        cls.cohorts = cohorts(r, cls.NS)
        cls.term_rc = cls.pipe.terminate(20)
        cls.values = customer_values(r, cls.NS)
        # the pipeline is stopped: import the same file again
        cls.rc2, cls.out2, cls.err2 = run_import(cfg, csv)
        cls.cohorts2 = cohorts(r, cls.NS)
        cls.values2 = customer_values(r, cls.NS)

    def test_import_ok(self):
        self.assertEqual(self.rc, 0, self.err)
        self.assertIn("2 lines read: 2 imported (2 new, 0 already known), 0 skipped; "
                      "2 new customers", self.out)

    def test_imported_customer_returning(self):
        # v1 (web): imported order 3h10 before: returning; v2 (web): its
        # imported order is 400 days old, beyond the horizon: new; v3 (app):
        # unknown: new; one guest order (web)
        want = {"ordering_customers": "3", "returning_customers": "1", "new_customers": "2",
                "guest_orders": "1", "repeat_purchase_rate": "0.333333",
                "ordering_customers|channel=web": "2", "returning_customers|channel=web": "1",
                "new_customers|channel=web": "1", "guest_orders|channel=web": "1",
                "repeat_purchase_rate|channel=web": "0.5",
                "ordering_customers|channel=app": "1", "new_customers|channel=app": "1",
                "repeat_purchase_rate|channel=app": "0"}
        for name, got in (("1h", self.h1), ("1d", self.dd)):
            self.assertEqual(got.get("closed"), "1", name)
            bad = reference.diff_window(want, got, family="retention")
            self.assertFalse(bad, f"{name}: {bad}")

    def test_cohorts(self):
        got = {m: counters(h) for m, h in self.cohorts.items()}
        self.assertEqual(got, {
            # v1 (imported, D-2h) and v3 (live); v1's live order 3h10 later
            month_key(self.D): {"customers": 2, "retained_30d": 1, "retained_60d": 1,
                                "retained_90d": 1},
            # v2: its next order 400 days later marks nothing
            month_key(int(self.old.timestamp() * 1000)): {"customers": 1},
        })

    def test_reimport_after_live_changes_nothing(self):
        self.assertEqual(self.rc2, 0, self.err2)
        self.assertIn("(0 new, 2 already known)", self.out2)
        self.assertEqual(self.cohorts2, self.cohorts)
        self.assertEqual(self.values2, self.values)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
