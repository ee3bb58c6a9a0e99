"""Fault matrix: Kafka broker down and request errors injected with the mock
cluster (SPEC section 6: broker unreachable -> librdkafka retries;
processing resumes).

`storepulse broker --control FIFO` runs rd_kafka_mock_broker_set_down/_up
and rd_kafka_mock_push_request_errors for the test. Traffic comes in three
parts; while the disturbed pipeline consumes:
 1. a seeded random broker (of 3) is down for 2-5 s, then up;
 2. request errors are pushed: Fetch NOT_LEADER_FOR_PARTITION, ListOffsets
    REQUEST_TIMED_OUT, OffsetCommit REQUEST_TIMED_OUT, Heartbeat
    REBALANCE_IN_PROGRESS (forces a rebalance of the group) and a Fetch that
    the broker answers by disconnecting (counts seeded);
 3. another broker down for 1-3 s while the last part is produced.
The pipeline must never exit and must end equal to the undisturbed run,
which starts only after the faults (errors left unused are cleared).

Seed: SP_FAULT_SEED (default 9301)."""

import time

import harness as H


class FaultBroker(H.FaultCase):
    NS = "fbroker"
    DEFAULT_SEED = 9301
    COUNT = 15000
    PHASES = 3
    BATCH_MAX = 200
    REF_AFTER = True  # the broker is shared: the reference reads it afterwards

    @classmethod
    def disturb(cls):
        rng = cls.rng
        ctl = cls.broker.control
        p = cls.new_pipeline().start()
        cls.pipe = p
        cls.injected = []

        cls.wait_committed(int(cls.produced() * rng.uniform(0.2, 0.7)), 60, [p])
        b = rng.randint(1, 3)
        down = rng.uniform(2.0, 5.0)
        ctl(f"down {b}")
        time.sleep(down)
        ctl(f"up {b}")
        cls.injected.append(f"broker {b} down {down:.1f}s")

        cls.produce_next()
        cls.wait_committed(cls.committed() + 1, 60, [p])
        errs = [(H.API_FETCH, rng.randint(5, 30), H.ERR_NOT_LEADER),
                (H.API_LIST_OFFSETS, rng.randint(1, 5), H.ERR_REQUEST_TIMED_OUT),
                (H.API_OFFSET_COMMIT, rng.randint(2, 10), H.ERR_REQUEST_TIMED_OUT),
                (H.API_HEARTBEAT, rng.randint(1, 3), H.ERR_REBALANCE_IN_PROGRESS),
                (H.API_FETCH, rng.randint(1, 5), H.ERR_TRANSPORT)]
        rng.shuffle(errs)
        for api, n, code in errs:
            ctl(f"errors {api} {n} {code}")
            cls.injected.append(f"errors api={api} x{n} code={code}")
            time.sleep(rng.uniform(0.0, 0.5))
        time.sleep(rng.uniform(1.0, 3.0))

        b2 = rng.choice([x for x in (1, 2, 3) if x != b])
        down2 = rng.uniform(1.0, 3.0)
        ctl(f"down {b2}")
        t0 = time.monotonic()
        time.sleep(down2)
        ctl(f"up {b2}")
        cls.injected.append(f"broker {b2} down {down2:.1f}s")
        cls.produce_next()  # after the broker is back: the generator is no subject here
        cls.wait_committed(cls.committed() + 1, 60, [p])
        for api in sorted({api for api, _, _ in errs}):  # leave none for the reference
            ctl(f"clear {api}")
        p.assert_alive()
        print(f"injected: {cls.injected}", flush=True)

    def test_pipeline_never_exited(self):
        self.assertEqual(self.pipe.starts, 1)
        self.assertEqual(self.final_rcs.get(self.pipe.name), 0, self.final_rcs)


if __name__ == "__main__":
    H.main()
