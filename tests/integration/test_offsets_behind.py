"""New data is never taken for a replay (issue 18, point 3).

A pipeline works broker 1 and commits; then the cluster is "migrated": a
fresh broker process (empty topics, offsets from 0 again) with the same
Redis, and fewer new messages than before on every partition, so each
partition's log ends below the offset stored in Redis. Before the fix every
new message was dropped as a replay, silently. Now:
  - each such partition is stopped: an ERROR line naming it, the stored
    offset and the log end, health partitions_behind_checkpoint /
    behind_checkpoint, ready 0 with not_ready offsets_behind_checkpoint,
    and nothing of it counted (no window of the new traffic, offsets
    unchanged);
  - `storepulse offsets` shows every partition as BEHIND CHECKPOINT with
    the stored, log start and log end offsets;
  - `storepulse offsets --reset ... --to earliest` is refused while the
    pipeline holds the namespace lease;
  - once the pipeline is stopped the reset writes offset 0 (the log start)
    for every partition and forgets their max event time, and a new run
    counts the new traffic exactly (every funnel window of it equal to
    reference.py);
  - `--to TIME`: the mock cluster answers every ListOffsets by time with
    "no offset" (its FIXME), so only that path is tested: the reset goes to
    the log end and says why. Bad targets and times are usage errors.
FetchOutOfRange: the same migration, but the log-end query at assignment
fails (ListOffsets errors injected), so the partitions are fetched from
their stored offsets; out of range, librdkafka starts them again at their
log start, and those messages (below the stored offsets) are what finds
them behind: they used to be dropped as replays without a word. Then the
stored offsets are changed in Redis directly while the pipeline runs: it
sees it within ~10 s, resumes, and counts the new traffic exactly."""

import re
import subprocess
import time

import harness as H
import reference

NS = "offbehind"
SIZES = ("1m", "5m", "1h")
STREAMS = ("--streams", "clickstream,checkout")
FUNNEL_TOPICS = (H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT)


def offsets_cmd(cfg, *args, timeout=60):
    p = H.sp_run([H.SP_BIN, "offsets", "-c", cfg] + list(args), timeout=timeout,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def parse_table(out):
    """{(topic, partition): (stored, committed, lo, hi, status)} of `offsets`."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)/(\d+)\s+(-|\d+)\s+(-|\d+)\s+(-|\d+)\s+(-|\d+)\s+(-|\d+)\s+(.*)$", line)
        if not m:
            continue
        num = [None if x == "-" else int(x) for x in m.group(3, 4, 5, 6)]
        rows[(m.group(1), int(m.group(2)))] = (*num, m.group(8).strip())
    return rows


def migrate(cls, broker2):
    """Phase 1 on broker 1 (committed, then gone); phase 2: broker2 started
    with newer and fewer messages, the same Redis."""
    cls.redis = cls.track(H.Redis(cls.tmp)).start()
    r = cls.redis.client
    # phase 1: two hours ago, on broker 1, committed
    b1 = cls.track(H.Broker(cls.tmp, name="broker1")).start()
    cfg1 = H.write_config(f"{cls.tmp}/sp1.yaml", NS, b1.bootstrap, cls.redis.port, sizes=SIZES)
    t1 = H.floor_to(H.now_ms(), 3_600_000) - 2 * 3_600_000
    H.gen(cfg1, b1.bootstrap_file, 4000, 11, t1, rate=20, extra_args=STREAMS,
          log_path=f"{cls.tmp}/gen.log")
    p1 = cls.track(H.Pipeline(cls.tmp, cfg1, name="pipeline1")).start()
    H.wait_caught_up(r, NS, b1.bootstrap, timeout=120, pipeline=p1)
    p1.terminate_ok()
    b1.stop()
    cls.stored1 = H.offsets_of(r, NS)
    cls.wm1 = r.hgetall(f"sp:{{{NS}}}:wm")
    cls.health1 = H.health(r, NS)

    # phase 2: a new cluster, the same Redis; newer traffic, fewer messages
    cls.b2 = cls.track(broker2).start()
    bs = cls.b2.bootstrap
    cls.cfg = H.write_config(f"{cls.tmp}/sp2.yaml", NS, bs, cls.redis.port, sizes=SIZES)
    cls.t2 = H.now_ms() + 1000  # after the watermark phase 1 left
    H.gen(cls.cfg, cls.b2.bootstrap_file, 800, 22, cls.t2, rate=50, extra_args=STREAMS,
          log_path=f"{cls.tmp}/gen.log")
    cls.highs2 = H.high_watermarks(bs)
    cls.behind_expected = {tp for tp, hi in cls.highs2.items()
                           if tp in cls.stored1 and hi < cls.stored1[tp]}


def wait_stopped(cls, pipe):
    n = len(cls.behind_expected)

    def stopped():
        pipe.assert_alive()
        h = H.health(cls.redis.client, NS)
        return h if h.get("partitions_behind_checkpoint") == str(n) else None

    return H.wait_until(stopped, 60, 0.25, f"{n} partitions behind checkpoint")


def wait_counted(cls, pipe):
    """Wait until pipe has read broker 2 and counted it; (reference, stats)."""
    r = cls.redis.client
    H.wait_caught_up(r, NS, cls.b2.bootstrap, timeout=120, pipeline=pipe)
    ref, stats = reference.compute(reference.read_messages(cls.b2.bootstrap), sizes=SIZES)

    def counted():
        pipe.assert_alive()
        act = H.funnel_windows(r, NS)
        return all(not reference.diff_window(f, act.get(k, {})) for k, f in ref.items())

    try:
        H.wait_until(counted, 30, 0.5, "the new traffic counted")
    except AssertionError:
        pass  # the test comparing them says what differs
    return ref, stats


def window_problems(ref, windows):
    problems = []
    for k, fields in sorted(ref.items()):
        d = reference.diff_window(fields, windows.get(k, {}))
        if d:
            problems.append((k, d[:4]))
    return problems


class OffsetsBehindCheckpoint(H.SPTestCase):

    @classmethod
    def scenario(cls):
        migrate(cls, H.Broker(cls.tmp, name="broker2"))
        r = cls.redis.client
        bs = cls.b2.bootstrap
        p2 = cls.track(H.Pipeline(cls.tmp, cls.cfg, name="pipeline2")).start()
        cls.health_behind = wait_stopped(cls, p2)
        time.sleep(4)  # it would have read everything by now
        cls.health_behind = H.health(r, NS)
        cls.offsets_behind = H.offsets_of(r, NS)
        cls.windows_behind = H.funnel_windows(r, NS)
        cls.rc_show, cls.out_show, cls.err_show = offsets_cmd(cls.cfg)
        print(f"offsets:\n{cls.out_show}{cls.err_show}", flush=True)
        cls.refused = offsets_cmd(cls.cfg, "--reset", H.TOPIC_CLICKSTREAM, "--to", "earliest")
        cls.offsets_after_refusal = H.offsets_of(r, NS)
        cls.log_behind = open(p2.log_path).read()
        p2.terminate_ok()

        # the operator resets every input topic, then starts the pipeline
        args = []
        for t in H.INPUT_TOPICS:
            args += ["--reset", t]
        cls.dry = offsets_cmd(cls.cfg, *args, "--to", "earliest", "--dry-run")
        cls.offsets_after_dry = H.offsets_of(r, NS)
        cls.reset = offsets_cmd(cls.cfg, *args, "--to", "earliest")
        print(f"offsets --reset ... --to earliest:\n{cls.reset[1]}{cls.reset[2]}", flush=True)
        cls.offsets_reset = H.offsets_of(r, NS)
        cls.wm_reset = r.hgetall(f"sp:{{{NS}}}:wm")
        cls.show_reset = offsets_cmd(cls.cfg)

        p3 = cls.track(H.Pipeline(cls.tmp, cls.cfg, name="pipeline3")).start()
        cls.ref, cls.stats = wait_counted(cls, p3)
        cls.windows = H.funnel_windows(r, NS)
        cls.health_after = H.health(r, NS)
        p3.terminate_ok()

        # --to TIME (the mock answers "no offset" for any time: log end)
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cls.t2 / 1000))
        cls.by_time = offsets_cmd(cls.cfg, "--reset", f"{H.TOPIC_CHECKOUT}/0", "--to", iso)
        cls.offsets_by_time = H.offsets_of(r, NS)
        cls.bad_time = offsets_cmd(cls.cfg, "--reset", H.TOPIC_CHECKOUT, "--to", "yesterday")
        cls.bad_topic = offsets_cmd(cls.cfg, "--reset", "no.such.topic", "--to", "latest")
        cls.bad_part = offsets_cmd(cls.cfg, "--reset", f"{H.TOPIC_CHECKOUT}/999", "--to", "latest")

    def test_precondition_every_partition_behind(self):
        self.assertTrue(self.behind_expected, "no partition ended below its stored offset")
        with_data = {tp for tp, hi in self.highs2.items() if hi > 0}
        self.assertTrue(with_data)
        self.assertLessEqual(with_data, self.behind_expected,
                             f"every partition with new data must be behind: {self.highs2} vs "
                             f"{self.stored1}")
        self.assertEqual(self.behind_expected, set(self.stored1))

    def test_stopped_partitions_in_health_and_not_ready(self):
        h = self.health_behind
        self.assertEqual(h.get("ready"), "0", h)
        self.assertIn("offsets_behind_checkpoint", h.get("not_ready", ""), h)
        self.assertEqual(h.get("partitions_behind_checkpoint"), str(len(self.behind_expected)))
        listed = set(h.get("behind_checkpoint", "").split(","))
        self.assertEqual(listed, {f"{t}/{p}" for t, p in self.behind_expected})

    def test_logged_loudly_with_both_offsets(self):
        for (t, p) in self.behind_expected:
            want = (rf"offsets: {re.escape(t)}/{p} is behind the checkpoint: its log ends at "
                    rf"offset {self.highs2[(t, p)]} \(starts at 0\) but the offset stored in "
                    rf"Redis is {self.stored1[(t, p)]}")
            self.assertRegex(self.log_behind, want)
        self.assertIn("storepulse offsets -c CONFIG --reset", self.log_behind)

    def test_nothing_counted_while_stopped(self):
        self.assertEqual(self.offsets_behind, self.stored1)
        new = {k: v for k, v in self.windows_behind.items()
               if k[1] >= H.floor_to(self.t2, H.SIZE_MS[k[0]])
               and any(reference.classify(f) == "counter" and v[f] != "0" for f in v)}
        self.assertEqual(new, {}, "windows of the new traffic counted while stopped")
        consumed = {f: v for f, v in self.health_behind.items() if f.startswith("consumed|")}
        self.assertEqual(consumed, {f: v for f, v in self.health1.items()
                                    if f.startswith("consumed|")})

    def test_offsets_shows_the_state(self):
        self.assertEqual(self.rc_show, 0, self.err_show)
        rows = parse_table(self.out_show)
        for tp in self.behind_expected:
            self.assertIn(tp, rows, self.out_show)
            stored, _committed, lo, hi, status = rows[tp]
            self.assertEqual((stored, lo, hi), (self.stored1[tp], 0, self.highs2[tp]))
            self.assertTrue(status.startswith("BEHIND CHECKPOINT"), status)
        self.assertRegex(self.out_show, r"lease held by \S+")

    def test_reset_refused_while_running(self):
        rc, out, err = self.refused
        self.assertEqual(rc, 1, out + err)
        self.assertIn("refused: namespace offbehind is worked by", err)
        self.assertEqual(self.offsets_after_refusal, self.stored1)

    def test_dry_run_changes_nothing(self):
        rc, out, err = self.dry
        self.assertEqual(rc, 0, err)
        self.assertIn("would reset store.clickstream/0:", out)
        self.assertEqual(self.offsets_after_dry, self.stored1)

    def test_reset_to_earliest(self):
        rc, out, err = self.reset
        self.assertEqual(rc, 0, err)
        for (t, p), old in self.stored1.items():
            self.assertIn(f"{t}/{p}: {old} -> 0 (log start", out)
        for (t, p) in self.highs2:
            self.assertEqual(self.offsets_reset.get((t, p)), 0, self.offsets_reset)
        self.assertTrue(self.wm1, "phase 1 stored no max event time")
        self.assertEqual({f for f in self.wm_reset if f in {f"{t}/{p}" for t, p in self.highs2}},
                         set(), f"max event times of reset partitions kept: {self.wm_reset}")
        rows = parse_table(self.show_reset[1])
        self.assertTrue(all(v[4] == "ok" for v in rows.values()), self.show_reset[1])

    def test_new_traffic_counted_exactly(self):
        self.assertGreater(self.stats["kept"], 500)
        problems = window_problems(self.ref, self.windows)
        self.assertEqual(problems[:10], [], f"{len(problems)} windows differ")
        h = self.health_after
        self.assertEqual(h.get("ready"), "1", h)
        self.assertEqual(h.get("partitions_behind_checkpoint"), "0", h)
        self.assertEqual(h.get("offset_gaps", "0"), "0", h)

    def test_reset_by_time_on_the_mock(self):
        rc, out, err = self.by_time
        self.assertEqual(rc, 0, err)
        hi = self.highs2[(H.TOPIC_CHECKOUT, 0)]
        self.assertIn(f"{H.TOPIC_CHECKOUT}/0: {hi} -> {hi} (log end: no message at or after "
                      f"that time", out)
        self.assertEqual(self.offsets_by_time[(H.TOPIC_CHECKOUT, 0)], hi)

    def test_bad_targets_are_usage_errors(self):
        for what, (rc, out, err) in (("time", self.bad_time), ("topic", self.bad_topic),
                                     ("partition", self.bad_part)):
            self.assertEqual(rc, 2, f"{what}: {out}{err}")
        self.assertIn("--to yesterday: expected earliest, latest or an ISO 8601 time",
                      self.bad_time[2])
        self.assertIn("not an input topic of this config", self.bad_topic[2])
        self.assertIn("no such partition in the cluster", self.bad_part[2])


class FetchOutOfRange(H.SPTestCase):

    @classmethod
    def scenario(cls):
        migrate(cls, H.ControlledBroker(cls.tmp, name="broker2"))
        r = cls.redis.client
        # every partition has a stored offset (0 for those phase 1 left
        # empty), so the consumer itself sends no ListOffsets; the next six
        # (two per broker at most) fail with TOPIC_AUTHORIZATION_FAILED: the
        # check after the assignment cannot read the log ends
        r.hset(f"sp:{{{NS}}}:offsets",
               mapping={f"{t}/{q}": 0 for (t, q) in cls.highs2 if (t, q) not in cls.stored1})
        cls.b2.control("errors 2 6 29")
        p = cls.track(H.Pipeline(cls.tmp, cls.cfg, name="pipeline2")).start()
        cls.health_behind = wait_stopped(cls, p)
        time.sleep(2)
        cls.offsets_behind = H.offsets_of(r, NS)
        cls.log_behind = open(p.log_path).read()
        # an operator's change of the stored offsets, made while it runs
        r.hset(f"sp:{{{NS}}}:offsets", mapping={f"{t}/{q}": 0 for (t, q) in cls.stored1})
        r.hdel(f"sp:{{{NS}}}:wm", *[f"{t}/{q}" for (t, q) in cls.stored1])
        cls.ref, cls.stats = wait_counted(cls, p)
        cls.windows = H.funnel_windows(r, NS)
        cls.health_after = H.health(r, NS)
        cls.log_after = open(p.log_path).read()
        p.terminate_ok()

    def test_the_check_at_assignment_failed(self):
        self.assertIn("offsets: reading the log offsets of", self.log_behind)

    def test_fetch_out_of_range_finds_them_behind(self):
        self.assertTrue(self.behind_expected)
        h = self.health_behind
        self.assertEqual(h.get("ready"), "0", h)
        listed = set(h.get("behind_checkpoint", "").split(","))
        self.assertEqual(listed, {f"{t}/{p}" for t, p in self.behind_expected})
        self.assertEqual({tp: v for tp, v in self.offsets_behind.items() if tp in self.stored1},
                         self.stored1)
        for (t, p) in self.behind_expected:
            self.assertIn(f"offsets: {t}/{p} is behind the checkpoint", self.log_behind)
        # librdkafka did restart them at their log start: those messages were
        # what the pipeline saw
        self.assertRegex(self.log_behind, r"offset reset \(at offset \d+, broker \d+\) to "
                                          r"(cached )?BEGINNING")

    def test_changed_stored_offsets_resume(self):
        self.assertRegex(self.log_after, r"offsets: the stored offset of \S+ changed \(\d+ -> 0\)")
        self.assertGreater(self.stats["kept"], 500)
        problems = window_problems(self.ref, self.windows)
        self.assertEqual(problems[:10], [], f"{len(problems)} windows differ")
        h = self.health_after
        self.assertEqual(h.get("ready"), "1", h)
        self.assertEqual(h.get("partitions_behind_checkpoint"), "0", h)


if __name__ == "__main__":
    H.main()
