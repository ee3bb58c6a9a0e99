"""Fault matrix: SIGTERM during load (SPEC section 6: finish the batch,
commit, exit 0 within shutdown_timeout).

The disturbed pipeline (pipeline.shutdown_timeout 5s) gets SIGTERM
STOPS times at seeded random points while it works through a backlog, and
is started again each time. Each stop must exit 0 within shutdown_timeout;
the batch in hand must be committed: Redis's offsets after the exit are at
least those seen at the signal, and the consumer group's offsets in Kafka
(committed after Redis confirmed each batch) equal Redis's. Final state
equal to the undisturbed run.

Seed: SP_FAULT_SEED (default 9601)."""

import time


import harness as H

STOPS = 3
SHUTDOWN_TIMEOUT_S = 5.0


class FaultSigterm(H.FaultCase):
    NS = "fsigterm"
    DEFAULT_SEED = 9601
    COUNT = 16000
    BATCH_MAX = 200
    EXTRA = {"pipeline": {"shutdown_timeout": "5s"}}

    @classmethod
    def disturb(cls):
        rng = cls.rng
        p = cls.new_pipeline()
        cls.stops = []
        for i in range(STOPS):
            p.start()
            before = cls.committed()
            target = before + rng.uniform(0.1, 0.4) * (cls.total - before)
            cls.wait_committed(int(target), 60, [p])
            time.sleep(rng.uniform(0.0, 0.2))
            at_signal = H.offsets_of(cls.redis.client, cls.NS)
            t0 = time.monotonic()
            rc = p.terminate(30)
            took = time.monotonic() - t0
            after = H.offsets_of(cls.redis.client, cls.NS)
            kafka = H.kafka_committed(cls.broker.bootstrap, "sp-fault", sorted(after))
            cls.stops.append({"rc": rc, "seconds": round(took, 2),
                              "committed_at_signal": sum(at_signal.values()),
                              "committed_after": sum(after.values()),
                              "went_back": [tp for tp, v in at_signal.items()
                                            if after.get(tp, 0) < v],
                              "kafka_differs": {f"{t}/{q}": (v, kafka.get((t, q)))
                                                for (t, q), v in after.items()
                                                if kafka.get((t, q)) != v}})
            time.sleep(rng.uniform(0.0, 0.5))
        print(f"stops: {cls.stops}", flush=True)
        p.start()

    def test_exit_0_within_shutdown_timeout(self):
        for s in self.stops:
            self.assertEqual(s["rc"], 0, s)
            self.assertLess(s["seconds"], SHUTDOWN_TIMEOUT_S, s)

    def test_batch_in_hand_committed(self):
        for s in self.stops:
            self.assertEqual(s["went_back"], [], s)
            self.assertGreaterEqual(s["committed_after"], s["committed_at_signal"], s)
            self.assertEqual(s["kafka_differs"], {}, s)

    def test_some_stop_mid_stream(self):
        self.assertTrue([s for s in self.stops if 0 < s["committed_after"] < self.total],
                        self.stops)

    def test_final_exit_0(self):
        self.assertEqual(set(self.final_rcs.values()), {0}, self.final_rcs)


if __name__ == "__main__":
    H.main()
