"""Fault matrix: consumer-group rebalances with two instances (SPEC section
6: after a rebalance the final counters equal those of an uninterrupted
run).

Two disturbed instances, A and B, with one config (one consumer group, one
Redis namespace). Entities (a cart, a customer) are touched from partitions
of several topics and timers are due for the whole namespace, so one
instance works a namespace at a time: the namespace lease sp:{NS}:owner
(docs/RELIABILITY.md); the other waits as a standby outside the group.
Traffic comes in four parts:
 1. A alone consumes the first part;
 2. B starts: a standby while A holds the lease; part 2 arrives;
 3. A leaves with SIGTERM (exit 0, lease released): B takes the lease,
    joins the group and gets every partition (a rebalance) from the offsets
    in Redis, while part 3 arrives;
 4. A starts again (standby now) while part 4 arrives; both finish, and a
    SIGTERM to the standby exits 0 too.
Points are seeded. Final state equal to the undisturbed run.

Seed: SP_FAULT_SEED (default 9401)."""

import time

import harness as H


class FaultRebalance(H.FaultCase):
    NS = "frebal"
    DEFAULT_SEED = 9401
    COUNT = 16000
    PHASES = 4
    BATCH_MAX = 200

    @classmethod
    def disturb(cls):
        rng = cls.rng
        a = cls.new_pipeline("pipeline-a").start()
        b = cls.new_pipeline("pipeline-b")
        cls.steps = []

        def progress(frac):
            cls.wait_committed(int(cls.produced() * frac), 60, [x for x in (a, b) if x.alive()])

        progress(rng.uniform(0.2, 0.8))
        b.start()
        cls.steps.append(("b joins", cls.committed()))
        cls.produce_next()
        time.sleep(rng.uniform(3.0, 5.0))  # a group's rebalance takes ~3 s
        progress(rng.uniform(0.5, 0.9))
        cls.rc_a_leave = a.terminate(20)
        cls.steps.append(("a leaves", cls.committed(), cls.rc_a_leave))
        cls.produce_next()
        progress(rng.uniform(0.3, 0.9))
        a.start()
        cls.steps.append(("a joins again", cls.committed()))
        cls.produce_next()
        time.sleep(rng.uniform(3.0, 5.0))
        print(f"steps: {cls.steps}", flush=True)
        cls.a, cls.b = a, b

    def test_leaving_instance_exit_0(self):
        self.assertEqual(self.rc_a_leave, 0)

    def test_standby_took_over(self):
        log_b = open(self.b.log_path, errors="replace").read()
        self.assertIn("standby: namespace", log_b)
        self.assertIn("taken: active", log_b)
        self.assertIn("assigned store.clickstream/0", log_b)
        log_a = open(self.a.log_path, errors="replace").read()
        self.assertIn("standby: namespace", log_a.rsplit("===== start", 1)[-1])

    def test_both_finish_exit_0(self):
        self.assertEqual(self.final_rcs, {"pipeline-a": 0, "pipeline-b": 0})


if __name__ == "__main__":
    H.main()
