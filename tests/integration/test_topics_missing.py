"""Missing topics are said so, and found when they appear (README, "Kafka
topics").

The embedded broker starts with one configured topic missing
(`storepulse broker --no-topic`: its metadata answers "unknown topic or
partition", as a real broker with automatic topic creation off does), and
the test creates it mid-run through the broker's control FIFO
(`create-topic`).

MissingInputTopic: store.support is missing. The pipeline says so (an
ERROR line naming the topic and its role, once; health topics_missing and
not_ready), consumes the other input topics meanwhile, and once the topic is
created consumes its events within TOPIC_FOUND_S seconds -- left to
librdkafka, the consumer would see it only at its next metadata refresh, 5
minutes later -- and is ready again.

MissingAlertTopic: storepulse.alerts does not exist and an alert waits in
the outbox: it is not produced (which would make the mock cluster create
the topic) until the topic is created, then delivered.

MissingDeadletterTopic: storepulse.deadletter and storepulse.alerts are
missing, with
`topics.create: true`. The mock cluster does not implement the Admin API's
CreateTopics (librdkafka 2.0.2: the request times out), so what is checked
is the request as logged (partitions, replication factor, the dead-letter
and alert retentions), the timeout reported as an error, and the pipeline carrying on
not ready. A batch with an undecodable message is not committed while the
topic is missing (its partition's stored offset stays before it) and is not
replayed in a tight loop; once the topic is created, the dead letter is
written exactly once and everything is committed."""

import json
import re
import time

import harness as H

S = 1000
TOPIC_FOUND_S = 15  # bound on "picked up within seconds" (the default refresh: 300 s)


def log_text(proc):
    with open(proc.log_path, errors="replace") as f:
        return f.read()


def wait_log(proc, pattern, timeout=30):
    rx = re.compile(pattern)

    def found():
        proc.assert_alive()
        return rx.search(log_text(proc))
    return H.wait_until(found, timeout, 0.1, f"log line /{pattern}/")


def support_event(event_id, t, ticket):
    return H.encode("support", H.support(event_id, t, "TICKET_OPENED", ticket, "email"))


def click_event(event_id, t, session):
    return H.encode("clickstream", H.click(event_id, t, "PAGE_VIEW", session, "web", "desktop",
                                           "US"))


class MissingInputTopic(H.SPTestCase):
    NS = "tmin"
    CLICKS = 20
    TICKETS = 5

    @classmethod
    def scenario(cls):
        r = None
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.ControlledBroker(cls.tmp, absent=[H.TOPIC_SUPPORT])).start()
        cls.cfg = H.write_config(f"{cls.tmp}/sp.yaml", cls.NS, cls.broker.bootstrap,
                                 cls.redis.port, idle_timeout="2s")
        r = cls.redis.client
        cls.t_start = time.monotonic()
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        cls.missing_line = wait_log(cls.pipe, r"error .*topic store\.support \(input topic of the "
                                              r"support stream\) does not exist.*").group(0)

        def not_ready():
            h = H.health(r, cls.NS)
            return h if h.get("ready") == "0" and h.get("topics_missing") == H.TOPIC_SUPPORT \
                else None
        cls.health_missing = H.wait_until(not_ready, 30, 0.2, "health: support topic missing")

        # the other input topics are consumed meanwhile
        now = H.now_ms()
        snd = H.Sender(cls.broker.bootstrap)
        for i in range(cls.CLICKS):
            snd.send(H.TOPIC_CLICKSTREAM, click_event(f"c{i}", now - 20 * S + i, f"s{i}"),
                     key=f"s{i}".encode())
        snd.flush()

        def clicks_consumed():
            cls.pipe.assert_alive()
            return int(H.health(r, cls.NS).get(f"consumed|topic={H.TOPIC_CLICKSTREAM}", 0)) \
                == cls.CLICKS
        H.wait_until(clicks_consumed, 60, 0.2, "clickstream consumed while support is missing")
        cls.health_during = H.health(r, cls.NS)

        # the topic is created; its events are consumed within seconds
        cls.broker.control(f"create-topic {H.TOPIC_SUPPORT}")
        t_created = time.monotonic()
        snd = H.Sender(cls.broker.bootstrap)
        now = H.now_ms()
        for i in range(cls.TICKETS):
            snd.send(H.TOPIC_SUPPORT, support_event(f"t{i}", now - 10 * S + i, f"tk{i}"),
                     key=f"tk{i}".encode())
        snd.flush()

        def tickets_consumed():
            cls.pipe.assert_alive()
            return int(H.health(r, cls.NS).get(f"consumed|topic={H.TOPIC_SUPPORT}", 0)) \
                == cls.TICKETS
        cls.found_error = None
        try:
            H.wait_until(tickets_consumed, TOPIC_FOUND_S, 0.1, "support events consumed")
        except AssertionError as e:
            cls.found_error = str(e)
        cls.found_after = time.monotonic() - t_created

        def ready():
            h = H.health(r, cls.NS)
            return h if h.get("ready") == "1" else None
        cls.health_after = H.wait_until(ready, 30, 0.2, "health: ready again")
        cls.elapsed = time.monotonic() - cls.t_start
        cls.log = log_text(cls.pipe)
        cls.term_rc = cls.pipe.terminate()
        print(f"support topic found {cls.found_after:.1f} s after its creation", flush=True)

    def test_error_line_names_topic_and_role(self):
        self.assertIn("its events are not consumed until it exists", self.missing_line)
        self.assertIn("topics.create: true", self.missing_line)

    def test_error_line_at_most_once_a_minute(self):
        n = len(re.findall(r"topic store\.support \(input topic of the support stream\) does "
                           r"not exist", self.log))
        if self.elapsed < 60:
            self.assertEqual(n, 1, f"{n} error lines in {self.elapsed:.0f} s")
        else:
            self.assertLessEqual(n, 1 + int(self.elapsed // 60))

    def test_health_while_missing(self):
        h = self.health_missing
        self.assertEqual(h.get("ready"), "0")
        self.assertIn("topic_missing", h.get("not_ready", "").split(","))
        self.assertEqual(h.get("topics_missing"), H.TOPIC_SUPPORT)

    def test_other_topics_processed_while_missing(self):
        self.assertEqual(int(self.health_during[f"consumed|topic={H.TOPIC_CLICKSTREAM}"]),
                         self.CLICKS)
        self.assertEqual(self.health_during.get("topics_missing"), H.TOPIC_SUPPORT)

    def test_created_topic_picked_up_within_seconds(self):
        self.assertIsNone(self.found_error,
                          f"support events not consumed within {TOPIC_FOUND_S} s of the "
                          f"topic's creation: {self.found_error}")
        self.assertIn("topic store.support (input topic of the support stream) exists now",
                      self.log)

    def test_ready_again(self):
        h = self.health_after
        self.assertEqual(h.get("ready"), "1")
        self.assertEqual(h.get("not_ready"), "")
        self.assertEqual(h.get("topics_missing"), "")

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


MISSING = f"{H.TOPIC_DEADLETTER},{H.TOPIC_ALERTS}"


class MissingDeadletterTopic(H.SPTestCase):
    """The dead-letter and the alert topic are missing."""
    NS = "tmdl"

    @classmethod
    def scenario(cls):
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.ControlledBroker(
            cls.tmp, absent=[H.TOPIC_DEADLETTER, H.TOPIC_ALERTS])).start()
        cls.cfg = H.write_config(
            f"{cls.tmp}/sp.yaml", cls.NS, cls.broker.bootstrap, cls.redis.port,
            extra={"topics": {"create": True, "partitions": 3, "replication_factor": 1,
                              "create_timeout": "2s"}})
        r = cls.redis.client
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        cls.create_line = wait_log(cls.pipe, r"creating topic storepulse\.deadletter .*").group(0)
        cls.create_alerts_line = wait_log(cls.pipe,
                                          r"creating topic storepulse\.alerts .*").group(0)
        cls.create_error = wait_log(cls.pipe, r"error .*creating topics storepulse\.deadletter, "
                                              r"storepulse\.alerts: .*").group(0)
        cls.alerts_line = wait_log(cls.pipe, r"error .*topic storepulse\.alerts \(alert topic\) "
                                             r"does not exist.*").group(0)
        cls.missing_line = wait_log(cls.pipe, r"error .*topic storepulse\.deadletter \(dead-letter "
                                              r"topic\) does not exist.*").group(0)

        def not_ready():
            h = H.health(r, cls.NS)
            return h if h.get("ready") == "0" and h.get("topics_missing") == MISSING else None
        cls.health_missing = H.wait_until(not_ready, 30, 0.2, "health: dead-letter topic missing")

        # partition 0: good, bad, good; partition 1: good
        now = H.now_ms()
        snd = H.Sender(cls.broker.bootstrap)
        snd.send(H.TOPIC_CLICKSTREAM, click_event("g1", now - 20 * S, "sa"), key=b"sa", tag="g1",
                 partition=0)
        snd.send(H.TOPIC_CLICKSTREAM, b"\xde\xad\xbe\xef not avro", key=b"bad", tag="bad",
                 partition=0)
        snd.send(H.TOPIC_CLICKSTREAM, click_event("g2", now - 19 * S, "sb"), key=b"sb", tag="g2",
                 partition=0)
        snd.send(H.TOPIC_CLICKSTREAM, click_event("g3", now - 18 * S, "sc"), key=b"sc", tag="g3",
                 partition=1)
        snd.flush()
        cls.bad_offset = snd.where("bad")[3]
        cls.p0_end = snd.where("g2")[3] + 1
        cls.p1_end = snd.where("g3")[3] + 1

        # held: sample partition 0's stored offset for a while
        lines_before = log_text(cls.pipe).count("\n")
        cls.p0_seen = []
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:
            cls.pipe.assert_alive()
            cls.p0_seen.append(H.offsets_of(r, cls.NS).get((H.TOPIC_CLICKSTREAM, 0), 0))
            time.sleep(0.2)
        held_lines = log_text(cls.pipe).splitlines()[lines_before:]
        cls.replays_held = sum(1 for ln in held_lines if "replay" in ln)
        cls.health_held = H.health(r, cls.NS)

        cls.broker.control(f"create-topic {H.TOPIC_DEADLETTER}")
        cls.broker.control(f"create-topic {H.TOPIC_ALERTS}")

        def committed():
            cls.pipe.assert_alive()
            offs = H.offsets_of(r, cls.NS)
            return offs.get((H.TOPIC_CLICKSTREAM, 0)) == cls.p0_end and \
                offs.get((H.TOPIC_CLICKSTREAM, 1)) == cls.p1_end
        H.wait_until(committed, 30, 0.1, "partition 0 committed past the bad message")

        def ready():
            h = H.health(r, cls.NS)
            return h if h.get("ready") == "1" else None
        cls.health_after = H.wait_until(ready, 30, 0.2, "health: ready again")
        cls.dead = H.consume_all(cls.broker.bootstrap, H.TOPIC_DEADLETTER, min_count=1)
        cls.log = log_text(cls.pipe)
        cls.term_rc = cls.pipe.terminate()

    def test_create_request_as_configured(self):
        self.assertIn("creating topic storepulse.deadletter (dead-letter topic): 3 partition(s), "
                      "replication factor 1, retention.ms 604800000", self.create_line)

    def test_create_request_of_alert_topic(self):
        self.assertIn("creating topic storepulse.alerts (alert topic): 3 partition(s), "
                      "replication factor 1, retention.ms 2592000000", self.create_alerts_line)

    def test_alert_topic_reported(self):
        self.assertIn("alerts wait in the outbox", self.alerts_line)

    def test_create_failure_reported(self):
        # the mock cluster does not answer CreateTopics: reported, not hidden
        self.assertRegex(self.create_error, r"[Tt]imed out")
        self.assertIn("topics.create_timeout", self.create_error)

    def test_error_line_says_what_it_means(self):
        self.assertIn("a batch with a bad or late event is not committed", self.missing_line)

    def test_health_while_missing(self):
        h = self.health_missing
        self.assertEqual(h.get("ready"), "0")
        self.assertIn("topic_missing", h.get("not_ready", "").split(","))
        self.assertEqual(h.get("topics_missing"), MISSING)
        self.assertEqual(self.health_held.get("topics_missing"), MISSING)

    def test_nothing_committed_past_the_bad_message(self):
        self.assertTrue(self.p0_seen)
        self.assertLessEqual(max(self.p0_seen), self.bad_offset,
                             f"partition 0 committed past offset {self.bad_offset} while its "
                             f"dead letter could not be written: {sorted(set(self.p0_seen))}")
        self.assertNotIn("deadletter|reason=undecodable", self.health_held)

    def test_no_tight_replay_loop(self):
        # one replay per listing (every 2 s) over ~8 s, not one per poll
        self.assertLess(self.replays_held, 30, f"{self.replays_held} replay lines in 8 s")

    def test_dead_letter_written_once_after_creation(self):
        self.assertEqual(len(self.dead), 1, [m.value() for m in self.dead])
        hdrs = {k: v.decode() for k, v in (self.dead[0].headers() or [])}
        self.assertEqual(hdrs.get("source_offset"), str(self.bad_offset))
        self.assertEqual(hdrs.get("reason"), "undecodable")
        h = self.health_after
        self.assertEqual(int(h.get("deadletter|reason=undecodable", 0)), 1)
        self.assertEqual(int(h.get(f"consumed|topic={H.TOPIC_CLICKSTREAM}", 0)), 4)

    def test_ready_again(self):
        h = self.health_after
        self.assertEqual(h.get("not_ready"), "")
        self.assertEqual(h.get("topics_missing"), "")
        self.assertIn("topic storepulse.deadletter (dead-letter topic) exists now", self.log)
        self.assertIn("topic storepulse.alerts (alert topic) exists now", self.log)

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


class MissingAlertTopic(H.SPTestCase):
    """storepulse.alerts does not exist at all (the broker is given another
    name for it), and the outbox holds an alert from an earlier run: it is
    held, so no producer makes the mock cluster create the topic with its
    defaults (4 partitions); once the topic is created (3 partitions), the
    alert is delivered."""
    NS = "tmal"
    ALERT_ID = "0123456789abcdef:FIRING:1796680000000"

    @classmethod
    def scenario(cls):
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        bcfg = H.write_config(f"{cls.tmp}/broker.yaml", cls.NS, "127.0.0.1:1", cls.redis.port,
                              extra={"topics": {"alerts": "unused.alerts"}})
        cls.broker = cls.track(H.ControlledBroker(cls.tmp, cfg=bcfg)).start()
        cls.cfg = H.write_config(f"{cls.tmp}/sp.yaml", cls.NS, cls.broker.bootstrap,
                                 cls.redis.port, extra={"alerting": {"format": "json"}})
        r = cls.redis.client
        t = 1796680000000
        alert = {"fingerprint": "0123456789abcdef", "alert_id": cls.ALERT_ID,
                 "rule": "payment_failures", "state": "FIRING", "severity": "critical",
                 "metric": "funnel.payments_failed", "dimension": None, "value": 5,
                 "threshold": 2, "sample_size": 5, "window_size": "1m", "window_start": t,
                 "window_end": t + 60 * S, "started_at": t, "emitted_at": t + 61 * S,
                 "summary": "payments failing", "contributors": [], "labels": {}}
        r.hset(f"sp:{{{cls.NS}}}:alerts:outbox", f"{cls.ALERT_ID}@{t}", json.dumps(alert))
        cls.pipe = cls.track(H.Pipeline(cls.tmp, cls.cfg)).start()
        cls.missing_line = wait_log(cls.pipe, r"error .*topic storepulse\.alerts \(alert topic\) "
                                              r"does not exist.*").group(0)

        def not_ready():
            h = H.health(r, cls.NS)
            return h if h.get("topics_missing") == H.TOPIC_ALERTS else None
        cls.health_missing = H.wait_until(not_ready, 30, 0.2, "health: alert topic missing")
        time.sleep(4)
        cls.pipe.assert_alive()
        cls.exists_while_held = topic_partitions(cls.broker.bootstrap, H.TOPIC_ALERTS)
        cls.outbox_held = H.outbox_len(r, cls.NS)

        cls.broker.control(f"create-topic {H.TOPIC_ALERTS} 3")

        def drained():
            cls.pipe.assert_alive()
            return H.outbox_len(r, cls.NS) == 0
        H.wait_until(drained, TOPIC_FOUND_S, 0.1, "the outbox drained")
        cls.partitions_after = topic_partitions(cls.broker.bootstrap, H.TOPIC_ALERTS)
        cls.alerts = H.consume_all(cls.broker.bootstrap, H.TOPIC_ALERTS, min_count=1)
        cls.health_after = H.wait_until(lambda: (lambda h: h if h.get("ready") == "1" else None)(
            H.health(r, cls.NS)), 30, 0.2, "health: ready again")
        cls.term_rc = cls.pipe.terminate()

    def test_error_line(self):
        self.assertIn("alerts wait in the outbox", self.missing_line)
        self.assertEqual(self.health_missing.get("ready"), "0")

    def test_held_not_produced(self):
        # a producer naming the topic would have made the mock cluster create it
        self.assertIsNone(self.exists_while_held, "the alert topic was created while missing")
        self.assertEqual(self.outbox_held, 1)

    def test_delivered_once_created(self):
        self.assertEqual(self.partitions_after, 3)
        self.assertEqual([json.loads(m.value())["alert_id"] for m in self.alerts],
                         [self.ALERT_ID])
        self.assertEqual(self.health_after.get("topics_missing"), "")

    def test_sigterm_exit_0(self):
        self.assertEqual(self.term_rc, 0)


def topic_partitions(bootstrap, topic):
    """Partitions of topic (None: it does not exist), from an all-topics
    listing (which creates nothing)."""
    c = H.Consumer({"bootstrap.servers": bootstrap, "group.id": "sp-topics-probe"})
    try:
        tm = c.list_topics(timeout=10).topics.get(topic)
        return None if tm is None or tm.error is not None else len(tm.partitions)
    finally:
        c.close()


if __name__ == "__main__":
    H.main()
