"""Bad input never crashes or stalls the pipeline (SPEC §1): one message per
bad-input class goes to storepulse.deadletter with the original key/value
and headers source_topic / source_partition / source_offset / reason /
detail, counted in health; valid events around them are counted; an event
for an already closed window is dead-lettered as `late`.

Clickstream and support are Avro (Confluent framing); the checkout topic is
configured `format: json` so that a missing required field and an unknown
enum symbol can be written directly."""

import json
import time

import harness as H

NS = "dlq"
S = 1000


def long_id(n=300):
    return ("x" * n)


class DeadLetters(H.SPTestCase):

    @classmethod
    def scenario(cls):
        now = H.now_ms()
        cls.T0 = T0 = H.floor_to(now - 2 * 3_600_000, 3_600_000) + 10 * 60 * S
        cls.redis = cls.track(H.Redis(cls.tmp)).start()
        cls.broker = cls.track(H.Broker(cls.tmp)).start()
        cfg = H.write_config(f"{cls.tmp}/sp.yaml", NS, cls.broker.bootstrap, cls.redis.port,
                             extra={"topics": {"checkout": {"name": H.TOPIC_CHECKOUT,
                                                            "format": "json"}}})
        ck, co, su = H.TOPIC_CLICKSTREAM, H.TOPIC_CHECKOUT, H.TOPIC_SUPPORT
        good_click = H.click("v1", T0 + 1 * S, "PRODUCT_VIEW", "sv", "web", "desktop", "US")
        good_order = H.checkout("v2", T0 + 2 * S, "ORDER_PLACED", "sv", "web", "desktop", "US",
                                order_id="ov", amount_cents=1234, customer_id="cv")

        def js(rec):
            return json.dumps(rec).encode()

        good_body = H.avro_body(H.schema_for("clickstream"), good_click)
        # clickstream writer schema with an extra enum symbol (index 5)
        sj = H.schema_json("clickstream")
        for f in sj["fields"]:
            if f["name"] == "type":
                f["type"]["symbols"] = f["type"]["symbols"] + ["TELEPORT"]
        extra_enum = H.parse_schema(sj)

        bad_order = dict(good_order)
        missing = {k: v for k, v in bad_order.items() if k != "currency"}
        missing["event_id"] = "b-missing"
        badenum = dict(bad_order, event_id="b-enum", type="ORDER_TELEPORTED")
        negative = dict(bad_order, event_id="b-neg", type="CHECKOUT_STARTED", amount_cents=-5,
                        order_id=None)

        # (tag, topic, key, value, acceptable reasons)
        cls.bad = [
            ("garbage", ck, b"g", b"\xde\xad\xbe\xef garbage", {"undecodable"}),
            ("unknown_id", ck, b"u", H.frame(99, good_body), {"unknown_schema"}),
            ("truncated", ck, b"t", H.frame(1, good_body[:-3]), {"undecodable"}),
            ("trailing", ck, b"tr", H.frame(1, good_body + b"\x00\x02junk"), {"undecodable"}),
            ("enum_index", ck, b"e",
             H.frame(1, H.avro_body(extra_enum, dict(good_click, event_id="b-enumidx",
                                                     type="TELEPORT"))),
             {"bad_enum", "undecodable"}),
            ("ts_1990", ck, b"ts", H.encode("clickstream", dict(good_click, event_id="b-1990",
                                                                event_time=631152000000)),
             {"bad_timestamp"}),
            ("ts_future", ck, b"tf",
             H.encode("clickstream", dict(good_click, event_id="b-future",
                                          event_time=now + 3 * 86_400_000)),
             {"bad_timestamp"}),
            ("long_session", ck, b"ls",
             H.encode("clickstream", dict(good_click, event_id="b-long", session_id=long_id())),
             {"string_too_long"}),
            ("long_country", ck, b"lc",
             H.encode("clickstream", dict(good_click, event_id="b-longc", country=long_id(257))),
             {"string_too_long"}),
            ("json_missing", co, b"jm", js(missing), {"missing_field"}),
            ("json_enum", co, b"je", js(badenum), {"bad_enum"}),
            ("json_negative", co, b"jn", js(negative), {"negative_amount"}),
            ("json_garbage", co, b"jg", b"{not json", {"undecodable"}),
            ("csat_9", su, b"cs",
             H.encode("support", dict(H.SUPPORT_DEFAULTS, event_id="b-csat", event_time=T0 + 3 * S,
                                      type="SURVEY_RESPONSE", ticket_id="tk1", channel="chat",
                                      csat=9)),
             {"bad_value"}),
        ]
        snd = H.Sender(cls.broker.bootstrap)
        for tag, topic, key, value, _ in cls.bad:
            snd.send(topic, value, key=key, tag=tag)
        snd.send(ck, H.encode("clickstream", good_click), key=b"sv", tag="good_click")
        snd.send(co, js(good_order), key=b"cv", tag="good_order")
        snd.send(su, H.encode("support", dict(H.SUPPORT_DEFAULTS, event_id="v3",
                                              event_time=T0 + 4 * S, type="SURVEY_RESPONSE",
                                              ticket_id="tk2", channel="chat", csat=5)),
                 key=b"tk2", tag="good_support")
        snd.flush()
        cls.sender = snd

        cls.pipe = cls.track(H.Pipeline(cls.tmp, cfg)).start()
        r = cls.redis.client
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        H.wait_all_closed(r, NS, T0 + 4 * S, timeout=60, pipeline=cls.pipe)
        # now a late one: the window of T0 is closed
        late = H.encode("clickstream", H.click("late1", T0 + 30 * S, "PAGE_VIEW", "slate", "web",
                                                "mobile", "FR"))
        cls.late_value = late
        snd.send(ck, late, key=b"slate", tag="late")
        snd.flush()
        H.wait_caught_up(r, NS, cls.broker.bootstrap, timeout=60, pipeline=cls.pipe)
        n_expected = len(cls.bad) + 1
        cls.dlq = H.consume_all(cls.broker.bootstrap, H.TOPIC_DEADLETTER, timeout=20,
                                min_count=n_expected)
        time.sleep(0.5)
        cls.health = H.health(r, NS)
        cls.window = r.hgetall(f"sp:{{{NS}}}:funnel:1m:{H.floor_to(T0, 60_000)}")
        cls.alive = cls.pipe.alive()
        cls.term_rc = cls.pipe.terminate(20)

    def _dlq_by_source(self):
        out = {}
        for m in self.dlq:
            h = {k: (v.decode("utf-8", "replace") if v is not None else None)
                 for k, v in (m.headers() or [])}
            key = (h.get("source_topic"), h.get("source_partition"), h.get("source_offset"))
            out.setdefault(key, []).append((h, m.key(), m.value()))
        return out

    def _check_one(self, tag, reasons, value=None):
        by_src = self._dlq_by_source()
        _, topic, part, off, key, val = self.sender.where(tag)
        got = by_src.get((topic, str(part), str(off)))
        self.assertTrue(got, f"{tag}: no dead letter with source {topic}/{part}/{off}; "
                             f"dead letters: {[k for k in by_src]}")
        h, k, v = got[0]
        self.assertIn(h.get("reason"), reasons, f"{tag}: headers {h}")
        self.assertEqual(v, val, f"{tag}: dead-letter value is not the original bytes")
        self.assertEqual(k, key, f"{tag}: dead-letter key is not the original key")
        self.assertIn("detail", h, f"{tag}: no detail header: {h}")

    def test_each_bad_message_dead_lettered(self):
        for tag, topic, key, value, reasons in self.bad:
            with self.subTest(tag):
                self._check_one(tag, reasons)

    def test_late_event_dead_lettered(self):
        self._check_one("late", {"late"})

    def test_no_valid_event_dead_lettered(self):
        by_src = self._dlq_by_source()
        for tag in ("good_click", "good_order", "good_support"):
            _, topic, part, off, _, _ = self.sender.where(tag)
            self.assertNotIn((topic, str(part), str(off)), by_src, tag)
        self.assertEqual(len(self.dlq), len(self.bad) + 1,
                         f"dead letters: {[dict((k, v) for k, v in (m.headers() or [])) for m in self.dlq]}")

    def test_health_counts(self):
        h = self.health
        want = {}
        for tag, _, _, _, reasons in self.bad:
            # with alternatives, take the one the pipeline used (checked above)
            want.setdefault(tuple(sorted(reasons)), 0)
            want[tuple(sorted(reasons))] += 1
        got = {f.split("=", 1)[1]: int(v) for f, v in h.items() if f.startswith("deadletter|reason=")}
        exact = {rs[0]: n for rs, n in want.items() if len(rs) == 1}
        exact["late"] = exact.get("late", 0) + 1
        flexible = sum(n for rs, n in want.items() if len(rs) > 1)
        for reason, n in exact.items():
            self.assertGreaterEqual(got.get(reason, 0), n, f"deadletter|reason={reason}: {h}")
        self.assertEqual(sum(got.values()), len(self.bad) + 1, h)
        self.assertEqual(sum(got.values()) - sum(exact.values()), flexible, h)
        self.assertEqual(int(h.get("late_events", 0)), 1, h)
        self.assertEqual(int(h.get("consumed|topic=store.clickstream", 0)), 11, h)
        self.assertEqual(int(h.get("consumed|topic=store.checkout", 0)), 5, h)
        self.assertEqual(int(h.get("consumed|topic=store.support", 0)), 2, h)

    def test_valid_events_counted(self):
        w = self.window
        self.assertEqual(w.get("sessions"), "1", w)
        self.assertEqual(w.get("product_view_sessions"), "1", w)
        self.assertEqual(w.get("order_sessions"), "1", w)
        self.assertEqual(w.get("orders"), "1", w)
        self.assertEqual(w.get("revenue_cents"), "1234", w)
        self.assertEqual(w.get("closed"), "1", w)

    def test_pipeline_alive_and_clean_exit(self):
        self.assertTrue(self.alive, "pipeline died")
        self.assertEqual(self.term_rc, 0)


if __name__ == "__main__":
    H.main()
