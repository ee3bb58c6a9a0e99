/* test_support.c -- the support family: the ticket value round-trips and
 * rejects garbage (no Redis); then three batches, each through a NEW engine
 * (so every ticket comes back from Redis), committed into a real
 * redis-server and checked against figures computed by hand: a human reply
 * and a resolution that wait for their opening across a restart, a bot
 * handoff, a bot-only resolution of a ticket never opened, resolve ->
 * reopen -> resolve, duplicate openings, resolutions and surveys, and the
 * in_flight|kind=ticket gauge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/engine.h"
#include "aggregators/family.h"
#include "aggregators/store.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "tests/unit/redis_harness.h"

#define T0 1793527200000LL /* 2026-11-01T10:00:00Z */
#define S  1000LL

static sp_test_redis_t srv;
static redisContext *rc;

static int group_setup(void **state) {
    (void)state;
    if (sp_test_redis_start(&srv) != 0) return -1;
    rc = redisConnect("127.0.0.1", srv.port);
    return rc && !rc->err ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    if (rc) redisFree(rc);
    sp_test_redis_stop(&srv);
    return 0;
}

static sp_str_t str(const char *s) {
    return (sp_str_t){s, (uint32_t)strlen(s)};
}

/* A support event; bot: 1 for a bot reply; csat/nps/ces: -1 absent. */
static sp_event_t sup(const char *id, int64_t t, sp_event_type_t type, const char *ticket,
                      const char *channel, int bot, int csat, int nps, int ces) {
    sp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.stream = SP_STREAM_SUPPORT;
    ev.type = type;
    sp_event_set_int(&ev, SP_I_EVENT_TIME, t);
    sp_event_set_int(&ev, SP_I_IS_BOT, bot);
    if (csat >= 0) sp_event_set_int(&ev, SP_I_CSAT, csat);
    if (nps >= 0) sp_event_set_int(&ev, SP_I_NPS, nps);
    if (ces >= 0) sp_event_set_int(&ev, SP_I_CES, ces);
    ev.s[SP_S_EVENT_ID] = str(id);
    ev.s[SP_S_TICKET_ID] = str(ticket);
    ev.s[SP_S_CHANNEL] = str(channel);
    return ev;
}

#define EV(id, dt, type, tk, ch) sup(id, T0 + (dt), SP_T_##type, tk, ch, 0, -1, -1, -1)

/* ---- the ticket value --------------------------------------------------- */

static int decode_into(sp_engine_t *e, const char *val, size_t len, char *out, size_t *outlen) {
    void *data = calloc(1, sp_kind_ticket.size);
    assert_non_null(data);
    int rc2 = sp_kind_ticket.decode(e, val, len, data);
    if (rc2 == 0 && out) *outlen = sp_kind_ticket.encode(e, data, out, 4096);
    free(data);
    return rc2;
}

static void expect_corrupt(sp_engine_t *e, const char *good, size_t n, size_t at, char byte,
                           const char *what) {
    char buf[4096];
    memcpy(buf, good, n);
    buf[at] = byte;
    if (decode_into(e, buf, n, NULL, NULL) != -1) fail_msg("%s: accepted", what);
}

static void test_ticket_encoding(void **state) {
    (void)state;
    static sp_config_t cfg, cfg2;
    char err[256], enc[4096], again[4096];
    size_t n, n2 = 0;

    sp_config_defaults(&cfg); /* dimension: channel */
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    /* a human reply and a resolution before the opening, a bot reply */
    sp_event_t evs[] = {
        sup("x1", T0 + 5 * S, SP_T_AGENT_REPLIED, "t", "chat", 1, -1, -1, -1),
        sup("x2", T0 + 9 * S, SP_T_AGENT_REPLIED, "t", "email", 0, -1, -1, -1),
        sup("x3", T0 + 20 * S, SP_T_TICKET_RESOLVED, "t", "phone", 0, -1, -1, -1),
    };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        sp_engine_want(e, &evs[i]);
        assert_int_equal(sp_engine_apply(e, &evs[i]), SP_OK);
    }
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_TICKET, str("t"));
    assert_non_null(en);
    n = sp_kind_ticket.encode(e, en->data, enc, sizeof(enc));
    /* 36 header bytes, then "email" and "phone" (u8 length + bytes) */
    assert_int_equal(n, 36 + 6 + 6);
    assert_memory_equal(enc, "T1", 2);
    /* resolved, human reply seen, handed off (x2 is later than the bot) */
    assert_int_equal(enc[2], 1 | 4 | 8);
    assert_int_equal(enc[35], 1); /* one dimension */
    assert_memory_equal(enc + 36, "\005email\005phone", 12);

    assert_int_equal(decode_into(e, enc, n, again, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(again, enc, n);

    for (size_t len = 0; len < n; len++)
        if (decode_into(e, enc, len, NULL, NULL) != -1) fail_msg("truncated to %zu: accepted", len);
    memcpy(again, enc, n);
    again[n] = 0;
    assert_int_equal(decode_into(e, again, n + 1, NULL, NULL), -1);

    expect_corrupt(e, enc, n, 0, 'X', "magic");
    expect_corrupt(e, enc, n, 1, '2', "version");
    expect_corrupt(e, enc, n, 2, 32, "unknown flag");
    expect_corrupt(e, enc, n, 2, 1 | 2 | 4, "first response counted with a waiting reply");
    expect_corrupt(e, enc, n, 3 + 5, 1, "opened with waiting effects");
    expect_corrupt(e, enc, n, 11 + 5, 0, "reply time before 2000");
    expect_corrupt(e, enc, n, 27 + 7, (char)0x80, "negative bot time");
    expect_corrupt(e, enc, n, 35, 4, "four dimensions");
    expect_corrupt(e, enc, n, 36, 9, "value length past the end");

    /* no dimensions configured: the values are dropped, the rest kept */
    sp_config_defaults(&cfg2);
    cfg2.support_dims.cnt = 0;
    sp_engine_t *e2 = sp_engine_new(&cfg2, err, sizeof(err));
    assert_non_null(e2);
    assert_int_equal(decode_into(e2, enc, n, again, &n2), 0);
    assert_int_equal(n2, 36);
    assert_memory_equal(again, enc, 35);
    assert_int_equal(again[35], 0);

    sp_engine_destroy(e2);
    sp_engine_destroy(e);
}

/* ---- batches through Redis ---------------------------------------------- */

static void fetched(void *op, int idx, const char *v, size_t len) {
    sp_engine_fetched(op, idx, v, len);
}

/* One batch through a NEW engine and the store, like the run loop after a
 * restart. Returns the duplicates. */
static int batch(const sp_config_t *cfg, sp_store_t *st, sp_event_t *evs, int n, int64_t *off) {
    char err[256];
    int dups = 0;
    sp_engine_t *e = sp_engine_new(cfg, err, sizeof(err));
    assert_non_null(e);
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
    sp_commit_t *c = sp_commit_new();
    for (int i = 0; i < n; i++) {
        assert_int_equal(sp_engine_admit(e, &evs[i]), SP_OK);
        sp_engine_want(e, &evs[i]);
    }
    const size_t *lens;
    const char *const *keys = sp_engine_want_keys(e, &lens);
    if (sp_engine_want_count(e) > 0) {
        assert_int_equal(
            sp_store_mget_send(st, keys, lens, sp_engine_want_count(e), err, sizeof(err)), SP_OK);
        assert_int_equal(sp_store_mget_recv(st, fetched, e, err, sizeof(err)), SP_OK);
    }
    for (int i = 0; i < n; i++)
        if (sp_engine_apply(e, &evs[i]) == SP_ERR_DUPLICATE) dups++;
    sp_engine_advance(e, sp_clock_now_ms());
    sp_engine_build_commit(e, c);
    sp_commit_offset(c, "store.support/0", *off, *off + n, sp_engine_partition_max_et(e, 0, 0));
    *off += n;
    assert_int_equal(sp_store_commit_send(st, c, err, sizeof(err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(st, err, sizeof(err)), SP_OK);
    sp_commit_destroy(c);
    sp_engine_destroy(e);
    return dups;
}

static char *hget(const char *key, const char *field) {
    static char out[128];
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r) freeReplyObject(r);
        return NULL;
    }
    snprintf(out, sizeof(out), "%s", r->str);
    freeReplyObject(r);
    return out;
}

static void check_field(const char *key, const char *field, const char *want) {
    const char *got = hget(key, field);
    if (!want) {
        if (got) fail_msg("%s %s: expected absent, got %s", key, field, got);
        return;
    }
    if (!got)
        fail_msg("%s %s: expected %s, got nothing", key, field, want);
    else if (strcmp(got, want) != 0)
        fail_msg("%s %s: expected %s, got %s", key, field, want, got);
}

static void test_tickets_by_hand(void **state) {
    (void)state;
    static sp_config_t cfg;
    char err[256];
    sp_config_defaults(&cfg);
    snprintf(cfg.ns, sizeof(cfg.ns), "%s", "sup");
    cfg.redis_port = srv.port;
    /* event times up to T0 + 110 s: nothing closes */
    sp_clock_set_manual(T0 + 120 * S);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    int64_t off = 0;

    sp_event_t b1[] = {
        EV("a1", 0, TICKET_OPENED, "t1", "chat"),
        sup("a2", T0 + 5 * S, SP_T_AGENT_REPLIED, "t1", "chat", 1, -1, -1, -1),
        EV("b1", 30 * S, AGENT_REPLIED, "t2", "email"), /* before its opening */
        EV("c1", 10 * S, TICKET_OPENED, "t3", "chat"),
        EV("c2", 40 * S, TICKET_RESOLVED, "t3", "chat"),
    };
    assert_int_equal(batch(&cfg, st, b1, 5, &off), 0);

    sp_event_t b2[] = {
        EV("a3", 65 * S, AGENT_REPLIED, "t1", "chat"),   /* frt 65 s, handoff */
        EV("b2", 20 * S, TICKET_OPENED, "t2", "email"),  /* b1 counts: frt 10 s */
        EV("b3", 21 * S, TICKET_OPENED, "t2", "email"),  /* duplicate */
        EV("c3", 41 * S, TICKET_RESOLVED, "t3", "chat"), /* duplicate */
        EV("c4", 70 * S, TICKET_REOPENED, "t3", "chat"),
        EV("c5", 90 * S, TICKET_RESOLVED, "t3", "chat"),  /* resolution 80 s */
        EV("d1", 50 * S, TICKET_RESOLVED, "t4", "phone"), /* before its opening */
        sup("e1", T0 + 15 * S, SP_T_AGENT_REPLIED, "t5", "chat", 1, -1, -1, -1),
        EV("e2", 45 * S, TICKET_RESOLVED, "t5", "chat"), /* bot only: not handed off */
        EV("e3", 46 * S, TICKET_REOPENED, "t6", "chat"), /* unknown ticket: nothing */
    };
    assert_int_equal(batch(&cfg, st, b2, 10, &off), 2);

    sp_event_t b3[] = {
        EV("d2", 20 * S, TICKET_OPENED, "t4", "phone"), /* d1 counts: 30 s */
        sup("c6", T0 + 100 * S, SP_T_SURVEY_RESPONSE, "t3", "chat", 0, 4, 10, 3),
        sup("c7", T0 + 101 * S, SP_T_SURVEY_RESPONSE, "t3", "chat", 0, 1, -1, -1),
        sup("a4", T0 + 110 * S, SP_T_SURVEY_RESPONSE, "t1", "chat", 0, 2, 5, -1),
        EV("a5", 111 * S, TICKET_REOPENED, "t1", "chat"), /* not resolved: nothing */
    };
    assert_int_equal(batch(&cfg, st, b3, 5, &off), 1);

    const char *w1 = "sp:{sup}:support:1m:1793527200000";
    check_field(w1, "tickets_opened", "4");
    check_field(w1, "tickets_opened|channel=chat", "2");
    check_field(w1, "tickets_opened|channel=email", "1");
    check_field(w1, "tickets_opened|channel=phone", "1");
    check_field(w1, "tickets_resolved", "3");
    check_field(w1, "tickets_resolved|channel=chat", "2");
    check_field(w1, "tickets_resolved|channel=phone", "1");
    check_field(w1, "tickets_reopened", NULL); /* open: zeros are not written */
    check_field(w1, "reopen_rate", "0");
    check_field(w1, "frt_seconds_count", "1");
    check_field(w1, "frt_seconds_sum", "10");
    check_field(w1, "frt_seconds_count|channel=email", "1");
    check_field(w1, "frt_seconds:b116", "1");
    check_field(w1, "resolution_seconds_count", "2");
    check_field(w1, "resolution_seconds_sum", "60");
    check_field(w1, "resolution_seconds_sum|channel=chat", "30");
    check_field(w1, "resolution_seconds_sum|channel=phone", "30");
    check_field(w1, "resolution_seconds:b171", "2");
    check_field(w1, "bot_tickets", "1");
    check_field(w1, "bot_tickets|channel=chat", "1");
    check_field(w1, "bot_handoffs", NULL);
    check_field(w1, "bot_handoff_rate", "0");
    check_field(w1, "csat", NULL);
    check_field(w1, "nps", NULL);

    const char *w2 = "sp:{sup}:support:1m:1793527260000";
    check_field(w2, "tickets_opened", NULL);
    check_field(w2, "tickets_reopened", "1");
    check_field(w2, "tickets_resolved", "1");
    check_field(w2, "reopen_rate", "1");
    check_field(w2, "frt_seconds_count", "1");
    check_field(w2, "frt_seconds_sum", "65");
    check_field(w2, "frt_seconds:b209", "1");
    check_field(w2, "resolution_seconds_count", "1");
    check_field(w2, "resolution_seconds_sum", "80");
    check_field(w2, "resolution_seconds:b220", "1");
    check_field(w2, "bot_tickets", "1");
    check_field(w2, "bot_handoffs|channel=chat", "1");
    check_field(w2, "bot_handoff_rate", "1");
    check_field(w2, "csat_responses", "2");
    check_field(w2, "csat_satisfied", "1");
    check_field(w2, "csat", "50");
    check_field(w2, "nps_responses", "2");
    check_field(w2, "nps_promoters", "1");
    check_field(w2, "nps_detractors", "1");
    check_field(w2, "nps_net", NULL); /* +1 - 1 in one batch: no delta */
    check_field(w2, "nps", "0");
    check_field(w2, "ces_responses", "1");
    check_field(w2, "ces_sum", "3");
    check_field(w2, "ces", "3");
    check_field(w2, "csat|channel=chat", "50");

    /* the hour adds up both minutes */
    const char *h = "sp:{sup}:support:1h:1793527200000";
    check_field(h, "tickets_resolved", "4");
    check_field(h, "tickets_reopened", "1");
    check_field(h, "reopen_rate", "0.25");
    check_field(h, "frt_seconds_count", "2");
    check_field(h, "resolution_seconds_sum", "140");
    check_field(h, "bot_handoff_rate", "0.5");

    /* t1 and t2 open; t3 resolved twice; t4 resolved before its opening; t5
     * never opened */
    check_field("sp:{sup}:gauges", "in_flight|kind=ticket", "2");
    redisReply *r = redisCommand(rc, "EXISTS sp:{sup}:state:ticket:t6");
    assert_int_equal(r->integer, 0); /* a reopen of nothing writes no state */
    freeReplyObject(r);
    r = redisCommand(rc, "PTTL sp:{sup}:state:ticket:t1");
    assert_true(r->integer > cfg.ticket_ttl_ms - 60 * S && r->integer <= cfg.ticket_ttl_ms);
    freeReplyObject(r);

    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticket_encoding),
        cmocka_unit_test(test_tickets_by_hand),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
