"""Fault matrix: redis-server killed (SIGKILL) and restarted with AOF,
mid-run (SPEC section 6).

The disturbed run's Redis has appendonly yes (appendfsync everysec: Redis
writes the AOF before it replies, so a SIGKILL of the process loses no
acknowledged commit, only the replies in flight; the pipeline must then
drop what it holds and replay from the offsets stored with the data). It is killed
RESTARTS times at seeded random points of the input, stays down a random
0.2-3 s and is restarted on the same port and directory. The pipeline must
never exit, must count the outages (health redis_reconnects) and must end
equal to the undisturbed run.

Seed: SP_FAULT_SEED (default 9101)."""

import time

import harness as H

RESTARTS = 2


class FaultRedisRestart(H.FaultCase):
    NS = "fredis"
    DEFAULT_SEED = 9101
    COUNT = 16000
    BATCH_MAX = 200
    APPENDONLY = True

    @classmethod
    def disturb(cls):
        rng = cls.rng
        p = cls.new_pipeline().start()
        cls.events = []
        for i in range(RESTARTS):
            before = cls.committed()
            target = before + rng.uniform(0.1, 0.45) * (cls.total - before)
            cls.wait_committed(int(target), 60, [p])
            time.sleep(rng.uniform(0.0, 0.2))
            at = cls.committed()
            cls.redis.kill9()
            down = rng.uniform(0.2, 3.0)
            time.sleep(down)
            p.assert_alive()
            cls.redis.start()  # same port and directory: replays the AOF
            cls.events.append((at, cls.committed(), round(down, 2)))
        print(f"redis kills (committed before, after the AOF reload, down s): {cls.events}",
              flush=True)
        cls.pipe = p

    def test_some_kill_mid_stream(self):
        self.assertTrue([e for e in self.events if 0 < e[0] < self.total], self.events)

    def test_outages_counted(self):
        n = int(self.snap["health_all"].get("redis_reconnects", 0))
        self.assertGreaterEqual(n, 1, "health redis_reconnects")

    def test_pipeline_never_exited(self):
        self.assertEqual(self.pipe.starts, 1)
        self.assertEqual(self.final_rcs.get(self.pipe.name), 0, self.final_rcs)


if __name__ == "__main__":
    H.main()
