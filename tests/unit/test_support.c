/* test_support.c -- the support family: the ticket value round-trips and
 * rejects garbage (no Redis); then three batches, each through a NEW engine
 * (so every ticket comes back from Redis), committed into a real
 * redis-server and checked against figures computed by hand: a human reply
 * and a resolution that wait for their opening across a restart, a bot
 * handoff, a bot-only resolution of a ticket never opened, resolve ->
 * reopen -> resolve, duplicate openings, resolutions and surveys, and the
 * in_flight|kind=ticket gauge. */
#include "aggregators/famkit.h"
#include "tests/unit/engine_harness.h"

#define S 1000LL

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
    /* 44 header bytes, then "email" and "phone" (u8 length + bytes) */
    assert_int_equal(n, 44 + 6 + 6);
    assert_memory_equal(enc, "T2", 2);
    /* resolved, human reply seen, handed off (x2 is later than the bot) */
    assert_int_equal(enc[2], 1 | 4 | 8);
    assert_int_equal(sp_get_i64(enc + 35), T0 + 20 * S); /* the latest event */
    assert_int_equal(enc[43], 1);                         /* one dimension */
    assert_memory_equal(enc + 44, "\005email\005phone", 12);

    assert_int_equal(decode_into(e, enc, n, again, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(again, enc, n);

    for (size_t len = 0; len < n; len++)
        if (decode_into(e, enc, len, NULL, NULL) != -1) fail_msg("truncated to %zu: accepted", len);
    memcpy(again, enc, n);
    again[n] = 0;
    assert_int_equal(decode_into(e, again, n + 1, NULL, NULL), -1);

    expect_corrupt(e, enc, n, 0, 'X', "magic");
    expect_corrupt(e, enc, n, 1, '3', "version");
    expect_corrupt(e, enc, n, 2, 32, "unknown flag");
    expect_corrupt(e, enc, n, 2, 1 | 2 | 4, "first response counted with a waiting reply");
    expect_corrupt(e, enc, n, 3 + 5, 1, "opened with waiting effects");
    expect_corrupt(e, enc, n, 11 + 5, 0, "reply time before 2000");
    expect_corrupt(e, enc, n, 27 + 7, (char)0x80, "negative bot time");
    expect_corrupt(e, enc, n, 35 + 7, (char)0x80, "negative latest time");
    expect_corrupt(e, enc, n, 43, 4, "four dimensions");
    expect_corrupt(e, enc, n, 44, 9, "value length past the end");

    /* the former layout "T1" (no latest time) is read: the latest time it
     * kept (the resolution) stands in, and it is written back as T2 */
    char v1[4096];
    memcpy(v1, enc, 35);
    memcpy(v1 + 35, enc + 43, n - 43);
    v1[1] = '1';
    assert_int_equal(decode_into(e, v1, n - 8, again, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(again, enc, n);

    /* no dimensions configured: the values are dropped, the rest kept */
    sp_config_defaults(&cfg2);
    cfg2.support_dims.cnt = 0;
    sp_engine_t *e2 = sp_engine_new(&cfg2, err, sizeof(err));
    assert_non_null(e2);
    assert_int_equal(decode_into(e2, enc, n, again, &n2), 0);
    assert_int_equal(n2, 44);
    assert_memory_equal(again, enc, 43);
    assert_int_equal(again[43], 0);

    sp_engine_destroy(e2);
    sp_engine_destroy(e);
}

/* ---- batches through Redis ---------------------------------------------- */

/* One batch through a NEW engine and the store, like the run loop after a
 * restart. Returns the duplicates. */
static int batch_new(const sp_config_t *cfg, sp_store_t *st, sp_event_t *evs, int n, int64_t *off) {
    char err[256];
    sp_engine_t *e = sp_engine_new(cfg, err, sizeof(err));
    assert_non_null(e);
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
    redisReply *r = redisCommand(rc, "ZRANGE %s 0 0 WITHSCORES", sp_engine_timers_key(e));
    assert_non_null(r); /* the earliest timer, as the run loop restores it */
    sp_engine_restore_timers(e, r->elements == 2 ? atoll(r->element[1]->str) : INT64_MAX);
    freeReplyObject(r);
    int dups = batch(e, st, evs, n, off);
    sp_engine_destroy(e);
    return dups;
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
    assert_int_equal(batch_new(&cfg, st, b1, 5, &off), 0);

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
    assert_int_equal(batch_new(&cfg, st, b2, 10, &off), 2);

    sp_event_t b3[] = {
        EV("d2", 20 * S, TICKET_OPENED, "t4", "phone"), /* d1 counts: 30 s */
        sup("c6", T0 + 100 * S, SP_T_SURVEY_RESPONSE, "t3", "chat", 0, 4, 10, 3),
        sup("c7", T0 + 101 * S, SP_T_SURVEY_RESPONSE, "t3", "chat", 0, 1, -1, -1),
        sup("a4", T0 + 110 * S, SP_T_SURVEY_RESPONSE, "t1", "chat", 0, 2, 5, -1),
        EV("a5", 111 * S, TICKET_REOPENED, "t1", "chat"), /* not resolved: nothing */
    };
    assert_int_equal(batch_new(&cfg, st, b3, 5, &off), 1);

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
    check_field(w1, "frt_seconds_sum_ms", "10000");
    check_field(w1, "frt_seconds_count|channel=email", "1");
    check_field(w1, "frt_seconds:b116", "1");
    check_field(w1, "resolution_seconds_count", "2");
    check_field(w1, "resolution_seconds_sum_ms", "60000");
    check_field(w1, "resolution_seconds_sum_ms|channel=chat", "30000");
    check_field(w1, "resolution_seconds_sum_ms|channel=phone", "30000");
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
    check_field(w2, "frt_seconds_sum_ms", "65000");
    check_field(w2, "frt_seconds:b209", "1");
    check_field(w2, "resolution_seconds_count", "1");
    check_field(w2, "resolution_seconds_sum_ms", "80000");
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
    check_field(h, "resolution_seconds_sum_ms", "140000");
    check_field(h, "bot_handoff_rate", "0.5");

    /* t1 and t2 open; t3 resolved twice; t4 resolved before its opening; t5
     * never opened */
    check_field("sp:{sup}:gauges", "in_flight|kind=ticket", "2");
    redisReply *r = redisCommand(rc, "EXISTS sp:{sup}:state:ticket:t6");
    assert_int_equal(r->integer, 0); /* a reopen of nothing writes no state */
    freeReplyObject(r);
    /* open: the time left to its give-up (latest event T0 + 111 s +
     * ticket_ttl - W) + 1 day; resolved: state.ticket_ttl */
    r = redisCommand(rc, "PTTL sp:{sup}:state:ticket:t1");
    int64_t w = T0 + 111 * S - cfg.max_out_of_orderness_ms;
    int64_t left = T0 + 111 * S + cfg.ticket_ttl_ms - w + 86400 * S;
    assert_true(r->integer > left - 60 * S && r->integer <= left);
    freeReplyObject(r);
    r = redisCommand(rc, "PTTL sp:{sup}:state:ticket:t3");
    assert_true(r->integer > cfg.ticket_ttl_ms - 60 * S && r->integer <= cfg.ticket_ttl_ms);
    freeReplyObject(r);
    r = redisCommand(rc, "ZRANGE sp:{sup}:state:timers 0 -1 WITHSCORES");
    assert_int_equal(r->elements, 4); /* the open ones: t1 and t2 */
    assert_string_equal(r->element[0]->str, "ticket:t2");
    assert_int_equal(atoll(r->element[1]->str), T0 + 30 * S + cfg.ticket_ttl_ms);
    assert_string_equal(r->element[2]->str, "ticket:t1");
    assert_int_equal(atoll(r->element[3]->str), T0 + 111 * S + cfg.ticket_ttl_ms);
    freeReplyObject(r);

    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

/* An open ticket without news is given up at latest event + ticket_ttl:
 * out of the gauge, state and timer deleted, exactly when the watermark
 * reaches it (each batch through a new engine: the timer comes back from
 * Redis). A resolved ticket has no timer. Later news starts afresh. */
static void test_give_up(void **state) {
    (void)state;
    static sp_config_t cfg;
    char err[256];
    cfg_for(&cfg, "gvp");
    cfg.ticket_ttl_ms = 3600 * S;
    const int64_t ooo = cfg.max_out_of_orderness_ms, give_up = T0 + 600 * S + 3600 * S;
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    int64_t off = 0;

    sp_clock_set_manual(T0 + 700 * S);
    sp_event_t b1[] = {
        EV("g1", 0, TICKET_OPENED, "g1", "chat"),
        EV("g2", 600 * S, AGENT_REPLIED, "g1", "chat"), /* latest news of g1 */
        EV("h1", 300 * S, TICKET_OPENED, "h1", "email"),
        EV("h2", 360 * S, TICKET_RESOLVED, "h1", "email"),
    };
    assert_int_equal(batch_new(&cfg, st, b1, 4, &off), 0);
    check_field("sp:{gvp}:gauges", "in_flight|kind=ticket", "1");
    redisReply *r = redisCommand(rc, "ZRANGE sp:{gvp}:state:timers 0 -1 WITHSCORES");
    assert_int_equal(r->elements, 2); /* g1 only */
    assert_string_equal(r->element[0]->str, "ticket:g1");
    assert_int_equal(atoll(r->element[1]->str), give_up);
    freeReplyObject(r);

    /* the watermark one millisecond short of the give-up: nothing */
    sp_clock_set_manual(give_up + ooo);
    sp_event_t b2[] = {EV("x1", 600 * S + 3600 * S + ooo - 1, CUSTOMER_REPLIED, "x", "chat")};
    assert_int_equal(batch_new(&cfg, st, b2, 1, &off), 0);
    char wm[32];
    snprintf(wm, sizeof(wm), "%lld", (long long)(give_up - 1));
    check_field("sp:{gvp}:gauges", "watermark_ms", wm);
    check_field("sp:{gvp}:gauges", "in_flight|kind=ticket", "1");
    r = redisCommand(rc, "EXISTS sp:{gvp}:state:ticket:g1 sp:{gvp}:state:ticket:x");
    assert_int_equal(r->integer, 1); /* a customer reply of nothing writes nothing */
    freeReplyObject(r);

    /* at the give-up */
    sp_event_t b3[] = {EV("x2", 600 * S + 3600 * S + ooo, CUSTOMER_REPLIED, "x", "chat")};
    assert_int_equal(batch_new(&cfg, st, b3, 1, &off), 0);
    check_field("sp:{gvp}:gauges", "in_flight|kind=ticket", "0");
    r = redisCommand(rc, "EXISTS sp:{gvp}:state:ticket:g1");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = redisCommand(rc, "ZCARD sp:{gvp}:state:timers");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    /* news of g1 after its give-up: afresh (the reopen of an unknown ticket
     * counts nothing, a new opening counts and enters the gauge again) */
    sp_event_t b4[] = {
        EV("g3", 600 * S + 3600 * S + ooo + S, TICKET_REOPENED, "g1", "chat"),
        EV("g4", 600 * S + 3600 * S + ooo + 2 * S, TICKET_OPENED, "g1", "chat"),
    };
    assert_int_equal(batch_new(&cfg, st, b4, 2, &off), 0);
    check_field("sp:{gvp}:gauges", "in_flight|kind=ticket", "1");
    check_field("sp:{gvp}:support:1h:1793530800000", "tickets_opened", "1");
    check_field("sp:{gvp}:support:1h:1793530800000", "tickets_reopened", NULL);

    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticket_encoding),
        cmocka_unit_test(test_tickets_by_hand),
        cmocka_unit_test(test_give_up),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
