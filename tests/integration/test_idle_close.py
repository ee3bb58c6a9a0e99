"""Windows close when traffic stops (SPEC §2): a few events two hours ago,
then nothing. The idle rule must move the watermark with the wall clock
(minus max_out_of_orderness), close every window, and zero-fill the windows
without events: events at 10:00 and 10:03 leave 10:01 and 10:02 as closed
1m windows with sessions=0."""

import time

import harness as H

NS = "idle"
S = 1000
M = 60 * S
SIZES = ("1m", "5m", "1h")


class IdleClose(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = H.floor_to(now - 2 * 3_600_000, 3_600_000)  # "10:00"
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             sizes=SIZES, idle_timeout="2s")
        snd = H.Sender(cls.broker.bootstrap)
        evs = [
            H.click("i1", T0 + 5 * S, "PAGE_VIEW", "a", "web", "desktop", "US"),
            H.click("i2", T0 + 20 * S, "PRODUCT_VIEW", "a", "web", "desktop", "US"),
            H.click("i3", T0 + 3 * M + 10 * S, "PAGE_VIEW", "b", "social", "mobile", "PL"),
        ]
        for e in evs:
            snd.send(H.TOPIC_CLICKSTREAM, H.encode("clickstream", e),
                     key=e["session_id"].encode())
        snd.flush()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        H.wait_all_closed(r, NS, T0 + 3 * M + 10 * S, SIZES, timeout=60, pipeline=cls.pipe)
        time.sleep(1.0)
        g = f"sp:{{{NS}}}:gauges"
        cls.wm1 = r.hget(g, "watermark_ms")
        cls.wall1 = H.now_ms()
        time.sleep(3.0)
        cls.wm2 = r.hget(g, "watermark_ms")
        cls.wall2 = H.now_ms()
        cls.windows = H.funnel_windows(r, NS)
        cls.finals = {s: H.final_pointer(r, NS, s) for s in SIZES}
        cls.latest = {s: r.get(f"sp:{{{NS}}}:latest:funnel:{s}") for s in SIZES}
        cls.pipe.assert_alive()
        cls.term_rc = cls.pipe.terminate(20)

    def w(self, size, start):
        return self.windows.get((size, start))

    def test_event_windows_closed(self):
        T0 = self.T0
        a = self.w("1m", T0)
        b = self.w("1m", T0 + 3 * M)
        self.assertIsNotNone(a, "1m window 10:00 missing")
        self.assertIsNotNone(b, "1m window 10:03 missing")
        self.assertEqual((a.get("sessions"), a.get("product_view_sessions"), a.get("closed")),
                         ("1", "1", "1"), a)
        self.assertEqual((b.get("sessions"), b.get("sessions|country=PL"), b.get("closed")),
                         ("1", "1", "1"), b)
        m5 = self.w("5m", T0)
        self.assertEqual((m5 or {}).get("sessions"), "2", m5)
        self.assertEqual((m5 or {}).get("closed"), "1", m5)
        h1 = self.w("1h", T0)
        self.assertEqual((h1 or {}).get("sessions"), "2", h1)
        self.assertEqual((h1 or {}).get("closed"), "1", h1)

    def test_zero_fill_between(self):
        for k in (1, 2):
            start = self.T0 + k * M
            w = self.w("1m", start)
            self.assertIsNotNone(w, f"zero-fill 1m window 10:0{k} ({start}) missing")
            self.assertEqual(w.get("closed"), "1", w)
            self.assertEqual(int(w.get("sessions", -1)), 0, f"10:0{k}: {w}")
            for f, v in w.items():
                if f != "closed" and "rate" not in f and "aov" not in f:
                    self.assertEqual(int(v), 0, f"10:0{k}: {f}={v}")
            self.assertFalse([f for f in w if f.endswith("_rate") or f.startswith("aov")
                              or "_rate|" in f], f"ratios in an empty window: {w}")

    def test_zero_fill_after_last_event_up_to_final(self):
        # every 1m window from 10:04 to the final pointer exists, closed, empty
        fp = self.finals["1m"]
        self.assertIsNotNone(fp)
        missing, bad = [], []
        for s in range(self.T0 + 4 * M, fp + 1, M):
            w = self.w("1m", s)
            if w is None:
                missing.append(s)
            elif w.get("closed") != "1" or int(w.get("sessions", 0)) != 0:
                bad.append((s, w))
        self.assertFalse(missing, f"{len(missing)} zero-fill 1m windows missing, first "
                                  f"{missing[:5]}")
        self.assertFalse(bad, f"bad zero-fill windows: {bad[:3]}")
        # nothing before the first window
        before = [k for k in self.windows if k[1] < H.floor_to(self.T0, H.SIZE_MS[k[0]])]
        self.assertFalse(before, f"windows before the first event: {before[:5]}")

    def test_final_pointer_near_wall_clock(self):
        # watermark ~ now - 5 s: the newest closed 1m window ends at least
        # allowed_lateness (60 s) before it
        fp = self.finals["1m"]
        expect = H.floor_to(self.wall2 - 5 * S - 60 * S, M) - M
        self.assertGreaterEqual(fp, expect - 2 * M, f"final 1m pointer {fp}, expected ~{expect}")
        self.assertLessEqual(fp, self.wall2 - 60 * S - M)

    def test_latest_pointer_not_behind_final(self):
        # latest = the newest window, final = the newest closed one (zero-fill
        # windows included): latest >= final for every size
        for s in SIZES:
            self.assertIsNotNone(self.latest[s], f"no latest pointer for {s}")
            self.assertGreaterEqual(int(self.latest[s]), self.finals[s],
                                    f"{s}: latest {self.latest[s]} < final {self.finals[s]}")

    def test_watermark_follows_wall_clock(self):
        self.assertIsNotNone(self.wm1, "no watermark_ms gauge")
        wm1, wm2 = int(self.wm1), int(self.wm2)
        lag = self.wall2 - wm2
        self.assertGreaterEqual(lag, 4 * S, f"watermark {wm2} ahead of wall clock - 5 s")
        self.assertLess(lag, 15 * S, f"watermark lags wall clock by {lag} ms")
        self.assertGreater(wm2 - wm1, 1500, f"watermark did not advance over 3 s: {wm1} -> {wm2}")

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
