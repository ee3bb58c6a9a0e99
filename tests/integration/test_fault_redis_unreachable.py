"""Fault matrix: Redis unreachable for a while (SPEC section 6: consumption
pauses, retries with backoff, nothing is lost, health shows it).

Traffic comes in three parts; the second and third are produced while Redis
is unreachable:
 1. Redis frozen (SIGSTOP) for 6.5-9 s, longer than redis.timeout (5 s):
    commands and reconnects time out;
 2. Redis shut down (SIGTERM, AOF) for 2-5 s: connections are refused;
    then started again on the same port.
During each outage the pipeline must stay alive and its consumer group's
committed offsets in Kafka (committed only after Redis confirmed a batch)
must not move; afterwards health counts the reconnects (redis_reconnects,
redis_reconnect_ms), and the final state equals the undisturbed run's.

Seed: SP_FAULT_SEED (default 9201)."""

import time

import harness as H


class FaultRedisUnreachable(H.FaultCase):
    NS = "funreach"
    DEFAULT_SEED = 9201
    COUNT = 15000
    PHASES = 3
    BATCH_MAX = 200
    APPENDONLY = True

    @classmethod
    def disturb(cls):
        rng = cls.rng
        bs = cls.broker.bootstrap
        tps = sorted(H.high_watermarks(bs))
        p = cls.new_pipeline().start()
        cls.pipe = p
        cls.outages = []
        for kind in ("frozen", "down"):
            produced = cls.produced()
            cls.wait_committed(int(produced * rng.uniform(0.3, 0.9)), 60, [p])
            if kind == "frozen":
                H.pause(cls.redis)
                length = rng.uniform(6.5, 9.0)
            else:
                cls.redis.terminate(15)
                length = rng.uniform(2.0, 5.0)
            t0 = time.monotonic()
            time.sleep(1.0)  # a Kafka commit already under way may still land
            k_before = H.kafka_committed(bs, "sp-fault", tps)
            cls.produce_next()  # traffic keeps coming while Redis is away
            time.sleep(max(0.0, length - (time.monotonic() - t0)))
            k_after = H.kafka_committed(bs, "sp-fault", tps)
            p.assert_alive()
            if kind == "frozen":
                H.resume(cls.redis)
            else:
                cls.redis.start()
            before = sum(v for v in k_before.values() if v >= 0)
            cls.outages.append({"kind": kind, "seconds": round(length, 2),
                                "kafka_committed_before": before,
                                "moved": {f"{t}/{q}": (k_before[(t, q)], k_after[(t, q)])
                                          for (t, q) in tps
                                          if k_before[(t, q)] != k_after[(t, q)]}})
            # consumption resumes
            cls.wait_committed(cls.committed() + 1, 60, [p])
        print(f"outages: {cls.outages}", flush=True)

    def test_consumption_paused_during_outages(self):
        for o in self.outages:
            self.assertEqual(o["moved"], {}, f"committed offsets moved while Redis was "
                                             f"{o['kind']}: {o}")

    def test_outages_in_health(self):
        h = self.snap["health_all"]
        self.assertGreaterEqual(int(h.get("redis_reconnects", 0)), 2, h)
        self.assertGreater(int(h.get("redis_reconnect_ms", 0)), 2000, h)

    def test_pipeline_never_exited(self):
        self.assertEqual(self.pipe.starts, 1)
        self.assertEqual(self.final_rcs.get(self.pipe.name), 0, self.final_rcs)


if __name__ == "__main__":
    H.main()
