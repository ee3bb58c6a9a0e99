"""Exactly-once effect under kill -9 (SPEC §6).

One broker, 30,000 generated events. Pipeline A (Redis 1) runs undisturbed;
pipeline B (Redis 2, its own consumer group, same small batches) is killed
with SIGKILL three times and restarted: twice mid-stream (a seeded random
delay after a commit), once after it consumed everything but before its
windows close. At the end every funnel window hash holding events and
the offsets must be identical in both Redis instances."""

import random
import time

import harness as H
import reference

NS = "kill9"
COUNT = 30000
SEED = 777
RATE = 20
SIZES = ("1m", "5m", "1h")
KILLS = 3
# small batches: many commits, so the kills land between commits mid-stream
EXTRA = {"pipeline": {"batch_max": 500}}


def progress(r, ns):
    return sum(H.offsets_of(r, ns).values())


class Kill9SameResult(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        start_time = H.floor_to(now - 3 * 3_600_000, 60_000)
        cls.r1 = cls.track(H.Redis(cls.tmp, name="redis1")).start()
        cls.r2 = cls.track(H.Redis(cls.tmp, name="redis2")).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        bs = cls.broker.bootstrap
        cfg_a = H.write_config(f"{cls.tmp}/a.yaml", NS, bs, cls.r1.port, group_id="sp-kill9-a",
                               sizes=SIZES, extra=EXTRA)
        cfg_b = H.write_config(f"{cls.tmp}/b.yaml", NS, bs, cls.r2.port, group_id="sp-kill9-b",
                               sizes=SIZES, extra=EXTRA)
        H.gen(cfg_a, cls.broker.bootstrap_file, COUNT, SEED, start_time, rate=RATE,
              log_path=f"{cls.tmp}/gen.log")
        highs = H.high_watermarks(bs)
        total = sum(highs.values())

        cls.a = cls.track(H.Pipeline(cls.tmp, cfg_a, name="pipeline-a")).start()
        cls.b = cls.track(H.Pipeline(cls.tmp, cfg_b, name="pipeline-b"))
        rng = random.Random(SEED)
        cls.kills = []
        for i in range(KILLS):
            # kills 1..KILLS-1: shortly after B's first commit following this
            # start (mid-stream), at a seeded random delay; the last kill: after
            # B has consumed everything but (idle_timeout 2 s) most likely
            # before its windows closed, so the restarted B must close them
            cls.b.start()
            t_start = time.monotonic()
            base = progress(cls.r2.client, NS)
            extra = rng.uniform(0.0, 0.3)
            after_delay = rng.uniform(0.2, 1.5)
            last = i == KILLS - 1
            deadline = t_start + 60
            while time.monotonic() < deadline:
                p = progress(cls.r2.client, NS)
                if last and p >= total:
                    time.sleep(after_delay)
                    break
                if not last and (p > base or base >= total):
                    time.sleep(extra)
                    break
                if not cls.b.alive():
                    raise AssertionError(f"pipeline B died on its own before kill {i + 1}")
                time.sleep(0.005)
            cls.b.kill9()
            done_after = progress(cls.r2.client, NS)
            cls.kills.append((round(time.monotonic() - t_start, 2), done_after, total))
            time.sleep(rng.uniform(0.0, 1.0))
        print(f"kills (seconds after start, messages committed, total): {cls.kills}", flush=True)
        cls.b.start()

        H.wait_caught_up(cls.r1.client, NS, bs, timeout=120, pipeline=cls.a)
        H.wait_caught_up(cls.r2.client, NS, bs, timeout=120, pipeline=cls.b)
        _, stats = reference.compute(reference.read_messages(bs), sizes=())
        cls.last_event = stats["max_time"]
        H.wait_all_closed(cls.r1.client, NS, cls.last_event, SIZES, timeout=90, pipeline=cls.a)
        cls.b_close_error = None
        try:
            H.wait_all_closed(cls.r2.client, NS, cls.last_event, SIZES, timeout=30,
                              pipeline=cls.b)
        except AssertionError as e:  # reported by test_killed_run_closes_windows
            cls.b_close_error = str(e)
        time.sleep(1.0)
        cls.win_a = H.funnel_windows(cls.r1.client, NS)
        cls.win_b = H.funnel_windows(cls.r2.client, NS)
        cls.off_a = H.offsets_of(cls.r1.client, NS)
        cls.off_b = H.offsets_of(cls.r2.client, NS)
        cls.health_a = H.health(cls.r1.client, NS)
        cls.health_b = H.health(cls.r2.client, NS)
        cls.rc_a = cls.a.terminate(20)
        cls.rc_b = cls.b.terminate(20)

    def test_some_kill_landed_mid_stream(self):
        # informative guard: at least one kill before B had committed everything
        mid = [k for k in self.kills if 0 < k[1] < k[2]]
        self.assertTrue(mid, f"no kill landed before the end of the input: {self.kills}")

    def test_killed_run_closes_windows(self):
        self.assertIsNone(self.b_close_error, "pipeline B (killed and restarted) did not close "
                                              "its windows")

    def test_funnel_windows_identical(self):
        problems = []
        for size in SIZES:
            size_ms = H.SIZE_MS[size]
            last = H.floor_to(self.last_event, size_ms)
            starts = sorted({s for (sz, s) in list(self.win_a) + list(self.win_b)
                             if sz == size and s <= last})
            self.assertTrue(starts, f"no {size} windows")
            for s in starts:
                a = self.win_a.get((size, s))
                b = self.win_b.get((size, s))
                if a is None or b is None:
                    problems.append(f"{size}:{s}: only in {'B' if a is None else 'A'}")
                    continue
                # counters: missing == 0; ratios and closed: exact
                for f, va, vb in reference.diff_window(a, b):
                    problems.append((f"{size}:{s}: {f}: A={va!r} B={vb!r}", f))
                if a.get("closed") != b.get("closed"):
                    problems.append((f"{size}:{s}: closed: A={a.get('closed')!r} "
                                     f"B={b.get('closed')!r}", "closed"))
        if problems:
            by_field = {}
            for _, f in problems:
                base = f.split("=", 1)[0]
                by_field[base] = by_field.get(base, 0) + 1
            summary = ", ".join(f"{k}={v}" for k, v in sorted(by_field.items(),
                                                               key=lambda kv: -kv[1]))
            self.fail(f"{len(problems)} difference(s) between the undisturbed run (A) and the "
                      f"killed run (B), kills={self.kills}:\n"
                      + "\n".join(p for p, _ in problems[:40])
                      + f"\ndifferences by field: {summary}")

    def test_nonvacuous(self):
        n = sum(int(f.get("sessions", 0)) for (sz, _), f in self.win_a.items() if sz == "1m")
        self.assertGreater(n, 1000)

    def test_offsets_identical(self):
        self.assertEqual(self.off_a, self.off_b)

    def test_health_counts_identical(self):
        keys = [k for k in set(self.health_a) | set(self.health_b)
                if k.startswith(("consumed|", "decoded", "duplicates", "deadletter|",
                                 "late_events"))]
        diff = {k: (self.health_a.get(k), self.health_b.get(k)) for k in keys
                if self.health_a.get(k) != self.health_b.get(k)}
        self.assertEqual(diff, {}, "health counters differ (A, B)")

    def test_sigterm_exit_0(self):
        self.assertEqual((self.rc_a, self.rc_b), (0, 0))


if __name__ == "__main__":
    H.main()
