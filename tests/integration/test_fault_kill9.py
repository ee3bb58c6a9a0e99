"""Fault matrix: kill -9 of the pipeline at random points (SPEC section 6).

The disturbed pipeline is killed with SIGKILL KILLS times and restarted: each
kill lands at a seeded random point -- after a random fraction of the input
is committed in Redis plus a random delay, or (with some probability) a
random short time after the start, before or during the first commits. The
final Redis state (every window hash of every family, cohorts, final and
latest pointers, offsets, per-partition event times, exact health counters,
gauges at the common final watermark) must equal the undisturbed run's.

Seed: SP_FAULT_SEED (default 9001). Several seeds: docs/RELIABILITY.md."""

import time

import harness as H

KILLS = 3


class FaultKill9(H.FaultCase):
    NS = "fkill9"
    DEFAULT_SEED = 9001
    COUNT = 16000
    BATCH_MAX = 200

    @classmethod
    def disturb(cls):
        rng = cls.rng
        p = cls.new_pipeline()
        cls.kills = []
        for i in range(KILLS):
            p.start()
            t0 = time.monotonic()
            before = cls.committed()
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 3.5))  # during start-up or the first batches
            else:
                target = before + rng.uniform(0.05, 0.4) * max(0, cls.total - before)
                cls.wait_committed(min(int(target), cls.total), 60, [p])
                time.sleep(rng.uniform(0.0, 0.3))
            if not p.alive():
                raise AssertionError(f"pipeline died on its own before kill {i + 1}:\n"
                                     f"{p.log_tail()}")
            p.kill9()
            cls.kills.append((round(time.monotonic() - t0, 2), cls.committed(), cls.total))
            time.sleep(rng.uniform(0.0, 0.5))
        print(f"kills (s after start, committed, total): {cls.kills}", flush=True)
        p.start()

    def test_some_kill_mid_stream(self):
        mid = [k for k in self.kills if 0 < k[1] < k[2]]
        self.assertTrue(mid, f"no kill landed mid-stream: {self.kills}")

    def test_final_exit_0(self):
        self.assertEqual(set(self.final_rcs.values()), {0}, self.final_rcs)


if __name__ == "__main__":
    H.main()
