/* test_delivery.c -- the delivery family's shipment entity and gauges,
 * driven batch by batch like the run loop (prefetch, apply, advance, due
 * timers, fire, commit) into a real redis-server, with the watermark moved
 * by hand (one partition, idle and caught up: W = now - 5 s).
 *
 * Checked against values computed by hand: the window counters of a few
 * shipments, the three gauges after every step (at_risk entered at exactly
 * promised - 24 h + 1, overdue at promised + 1, left by OUT_FOR_DELIVERY),
 * duplicates (DELIVERED again: SP_ERR_DUPLICATE; DISPATCHED again: not
 * counted), an older event not moving the promise back, a DELIVERED before
 * its IN_TRANSIT, the timer scores and the Redis TTL, give-up after
 * state.shipment_ttl (state and timer deleted, gauges left), and the state
 * encoding: round trip, every truncation and corrupted fields rejected. */
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

#define T0   1793527200000LL /* 2026-11-01T10:00:00Z, an hour boundary */
#define SEC  1000LL
#define MIN  60000LL
#define HOUR 3600000LL
#define DAY  86400000LL
#define TTL  (10 * DAY) /* state.shipment_ttl of the test */

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

static void cfg_for(sp_config_t *cfg, const char *ns) {
    sp_config_defaults(cfg);
    snprintf(cfg->ns, sizeof(cfg->ns), "%s", ns);
    cfg->redis_port = srv.port;
    cfg->window_cnt = 1; /* 1h windows only */
    cfg->window_ms[0] = HOUR;
    cfg->window_ttl_ms[0] = 35 * DAY;
    cfg->shipment_ttl_ms = TTL;
}

static sp_str_t str(const char *s) {
    return (sp_str_t){s, (uint32_t)strlen(s)};
}

/* A shipment event; opt < 0: no order_placed_time. */
static sp_event_t ship(const char *id, sp_event_type_t type, int64_t t, const char *shipment,
                       const char *carrier, const char *country, int64_t promised, int64_t opt) {
    sp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.stream = SP_STREAM_SHIPMENT;
    ev.type = type;
    sp_event_set_int(&ev, SP_I_EVENT_TIME, t);
    sp_event_set_int(&ev, SP_I_PROMISED_DELIVERY_TIME, promised);
    if (opt >= 0) sp_event_set_int(&ev, SP_I_ORDER_PLACED_TIME, opt);
    ev.s[SP_S_EVENT_ID] = str(id);
    ev.s[SP_S_SHIPMENT_ID] = str(shipment);
    ev.s[SP_S_ORDER_ID] = str("o");
    ev.s[SP_S_CARRIER] = str(carrier);
    ev.s[SP_S_COUNTRY] = str(country);
    return ev;
}

static void fetched(void *op, int idx, const char *v, size_t len) {
    sp_engine_fetched(op, idx, v, len);
}

static void timer_cb(void *op, const char *member, size_t mlen, int64_t score, const char *val,
                     size_t vlen) {
    sp_engine_timer_fetched(op, member, mlen, score, val, vlen);
}

typedef struct rig {
    sp_engine_t *e;
    sp_store_t *st;
    int64_t off;
} rig_t;

/* One batch as the run loop does it, at wall time now; rcs[i]: apply's
 * result per event. The partition is caught up, so with no event for
 * idle_timeout the watermark is now - max_out_of_orderness. */
static void step(rig_t *g, sp_event_t *evs, int n, int64_t now, int *rcs) {
    char err[256];
    for (int i = 0; i < n; i++) {
        assert_int_equal(sp_engine_admit(g->e, &evs[i]), SP_OK);
        sp_engine_want(g->e, &evs[i]);
    }
    const size_t *lens;
    const char *const *keys = sp_engine_want_keys(g->e, &lens);
    if (sp_engine_want_count(g->e) > 0) {
        assert_int_equal(
            sp_store_mget_send(g->st, keys, lens, sp_engine_want_count(g->e), err, sizeof(err)),
            SP_OK);
        assert_int_equal(sp_store_mget_recv(g->st, fetched, g->e, err, sizeof(err)), SP_OK);
    }
    sp_engine_set_now(g->e, now);
    for (int i = 0; i < n; i++)
        rcs[i] = sp_engine_apply(g->e, &evs[i]);
    sp_engine_partition_lag(g->e, 0, 0, 0);
    sp_engine_advance(g->e, now);
    int64_t upto = sp_engine_timers_due(g->e);
    if (upto != INT64_MIN) {
        int64_t next;
        assert_int_equal(sp_store_timers_due(g->st, sp_engine_timers_key(g->e),
                                             sp_engine_state_prefix(g->e), upto, 5000, timer_cb,
                                             g->e, &next, err, sizeof(err)),
                         SP_OK);
        sp_engine_timers_next(g->e, next);
    }
    sp_engine_fire(g->e);
    sp_commit_t *c = sp_commit_new();
    sp_engine_build_commit(g->e, c);
    if (n > 0) {
        sp_commit_offset(c, "store.shipments/0", g->off, g->off + n,
                         sp_engine_partition_max_et(g->e, 0, 0));
        g->off += n;
    }
    assert_int_equal(sp_store_commit_send(g->st, c, err, sizeof(err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(g->st, err, sizeof(err)), SP_OK);
    sp_commit_destroy(c);
}

/* Move the watermark to exactly w with no events. */
static void move_to(rig_t *g, int64_t w) {
    step(g, NULL, 0, w + 5 * SEC, NULL);
    assert_int_equal(sp_engine_watermark(g->e), w);
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

static void check_gauges(const char *ns, const char *in_flight, const char *overdue,
                         const char *at_risk) {
    char key[64];
    snprintf(key, sizeof(key), "sp:{%s}:gauges", ns);
    check_field(key, "in_flight|kind=shipment", in_flight);
    check_field(key, "overdue_in_flight", overdue);
    check_field(key, "at_risk", at_risk);
}

/* Timer score of a shipment (-1: none). */
static int64_t timer_of(const char *ns, const char *shipment) {
    redisReply *r = redisCommand(rc, "ZSCORE sp:{%s}:state:timers shipment:%s", ns, shipment);
    int64_t v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    if (r) freeReplyObject(r);
    return v;
}

static int state_exists(const char *ns, const char *shipment) {
    redisReply *r = redisCommand(rc, "EXISTS sp:{%s}:state:shipment:%s", ns, shipment);
    int v = r && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    if (r) freeReplyObject(r);
    return v;
}

#define WIN(start) "sp:{dlv}:delivery:1h:" #start

static void test_gauges_by_hand(void **state) {
    (void)state;
    static sp_config_t cfg;
    char err[256], key[128];
    int rcs[16];
    cfg_for(&cfg, "dlv");
    sp_clock_set_manual(T0);
    rig_t g = {0};
    g.st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(g.st);
    g.e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(g.e);
    sp_engine_partition_add(g.e, 0, 0, -1, T0);

    /* Batch 1 (W unknown while applying): W after it = T0 - 10m - 5s. */
    sp_event_t b1[] = {
        /* s1: promised T0+2h; its older IN_TRANSIT must not move that */
        ship("a", SP_T_LABEL_CREATED, T0 - 60 * MIN, "s1", "dhl", "DE", T0 + 2 * HOUR, -1),
        ship("a2", SP_T_IN_TRANSIT, T0 - 70 * MIN, "s1", "dhl", "DE", T0 + 5 * HOUR, -1),
        /* s2: promised in the past: overdue */
        ship("b", SP_T_IN_TRANSIT, T0 - 2 * HOUR, "s2", "ups", "US", T0 - HOUR, -1),
        /* s3: out for delivery, promised T0+1h: neither */
        ship("c", SP_T_OUT_FOR_DELIVERY, T0 - 30 * MIN, "s3", "ups", "US", T0 + HOUR, -1),
        /* s4: delivered 10 min late, 48 h after the order; then again */
        ship("d", SP_T_DELIVERED, T0 - 10 * MIN, "s4", "ups", "US", T0 - 20 * MIN,
             T0 - 10 * MIN - 48 * HOUR),
        ship("e", SP_T_DELIVERED, T0 - 11 * MIN, "s4", "ups", "US", T0 - 20 * MIN, -1),
        /* s5: dispatched 25 h after the order (breach); again: not counted */
        ship("f", SP_T_DISPATCHED, T0 - 3 * HOUR, "s5", "dhl", "US", T0 + 30 * HOUR,
             T0 - 28 * HOUR),
        ship("g", SP_T_DISPATCHED, T0 - 170 * MIN, "s5", "dhl", "US", T0 + 30 * HOUR,
             T0 - 28 * HOUR),
        /* s6: DELIVERED (on time) before its IN_TRANSIT */
        ship("h", SP_T_DELIVERED, T0 - 15 * MIN, "s6", "dhl", "DE", T0, -1),
        ship("i", SP_T_IN_TRANSIT, T0 - 40 * MIN, "s6", "dhl", "DE", T0, -1),
    };
    step(&g, b1, 10, T0, rcs);
    for (int i = 0; i < 10; i++)
        assert_int_equal(rcs[i], i == 5 ? SP_ERR_DUPLICATE : SP_OK);
    int64_t w1 = T0 - 10 * MIN - 5 * SEC;
    assert_int_equal(sp_engine_watermark(g.e), w1);

    /* [T0-1h, T0): s1 a, s3 c, s4 d, s6 h and i */
    check_field(WIN(1793523600000), "delivered", "2");
    check_field(WIN(1793523600000), "delivered_late", "1");
    check_field(WIN(1793523600000), "delivery_delay_rate", "0.5");
    check_field(WIN(1793523600000), "delay_minutes_count", "1");
    check_field(WIN(1793523600000), "delay_minutes_sum_ms", "600000");
    check_field(WIN(1793523600000), "delay_minutes_p50", "10.0747"); /* b116: 2 g^116 / (g + 1) */
    check_field(WIN(1793523600000), "delay_minutes:b116", "1");
    check_field(WIN(1793523600000), "delivery_time_hours_count", "1");
    check_field(WIN(1793523600000), "delivery_time_hours_sum_ms", "172800000");
    check_field(WIN(1793523600000), "delivered|carrier=ups", "1");
    check_field(WIN(1793523600000), "delivered|carrier=dhl", "1");
    check_field(WIN(1793523600000), "delivered_late|country=US", "1");
    check_field(WIN(1793523600000), "delivery_delay_rate|country=DE", "0");
    check_field(WIN(1793523600000), "dispatched", NULL);
    /* [T0-3h, T0-2h): s5 f and g */
    check_field(WIN(1793516400000), "dispatched", "1");
    check_field(WIN(1793516400000), "dispatch_sla_breaches", "1");
    check_field(WIN(1793516400000), "dispatch_latency_hours_count", "1");
    check_field(WIN(1793516400000), "dispatch_latency_hours_sum_ms", "90000000");
    check_field(WIN(1793516400000), "dispatched|carrier=dhl", "1");
    check_field(WIN(1793516400000), "delivered", "0"); /* closed: zero-filled */
    check_field(WIN(1793516400000), "closed", "1");

    /* in flight s1 s2 s3 s5; overdue s2; at risk s1 */
    check_gauges("dlv", "4", "1", "1");
    assert_int_equal(timer_of("dlv", "s1"), T0 + 2 * HOUR + 1);   /* leaves at_risk */
    assert_int_equal(timer_of("dlv", "s2"), T0 - HOUR + TTL);     /* give-up */
    assert_int_equal(timer_of("dlv", "s3"), T0 + HOUR + 1);       /* becomes overdue */
    assert_int_equal(timer_of("dlv", "s4"), T0 - 10 * MIN + TTL); /* give-up */
    assert_int_equal(timer_of("dlv", "s5"), T0 + 6 * HOUR + 1);   /* enters at_risk */
    assert_int_equal(timer_of("dlv", "s6"), T0 + TTL);            /* max(promised, last) */
    /* TTL: give-up - W + 1 day */
    redisReply *r = redisCommand(rc, "PTTL sp:{dlv}:state:shipment:s1");
    long long want = T0 + 2 * HOUR + TTL - w1 + DAY;
    assert_true(r->integer <= want && r->integer > want - 10 * SEC);
    freeReplyObject(r);

    move_to(&g, T0 + 2 * HOUR + 1); /* s1 and s3 overdue */
    check_gauges("dlv", "4", "3", "0");
    assert_int_equal(timer_of("dlv", "s1"), T0 + 2 * HOUR + TTL);
    assert_int_equal(timer_of("dlv", "s3"), T0 + HOUR + TTL);
    move_to(&g, T0 + 6 * HOUR); /* s5: promised T0+30h = W + 24h: not yet */
    check_gauges("dlv", "4", "3", "0");
    move_to(&g, T0 + 6 * HOUR + 1);
    check_gauges("dlv", "4", "3", "1");
    assert_int_equal(timer_of("dlv", "s5"), T0 + 30 * HOUR + 1);

    /* s5 out for delivery: leaves at_risk, overdue after its promise */
    sp_event_t b4[] = {
        ship("j", SP_T_OUT_FOR_DELIVERY, T0 + 6 * HOUR + 2, "s5", "dhl", "US", T0 + 30 * HOUR, -1),
    };
    step(&g, b4, 1, T0 + 6 * HOUR + 10 * SEC, rcs);
    assert_int_equal(rcs[0], SP_OK);
    check_gauges("dlv", "4", "3", "0");
    assert_int_equal(timer_of("dlv", "s5"), T0 + 30 * HOUR + 1);
    move_to(&g, T0 + 30 * HOUR + 1);
    check_gauges("dlv", "4", "4", "0");

    /* s2 given up: out of the gauges, state and timer deleted */
    assert_int_equal(state_exists("dlv", "s2"), 1);
    move_to(&g, T0 - HOUR + TTL);
    check_gauges("dlv", "3", "3", "0");
    assert_int_equal(state_exists("dlv", "s2"), 0);
    assert_int_equal(timer_of("dlv", "s2"), -1);
    /* s4 (delivered) still remembers its delivery */
    sp_event_t b6[] = {
        ship("k", SP_T_DELIVERED, T0 - HOUR + TTL + SEC, "s4", "ups", "US", T0, -1),
    };
    step(&g, b6, 1, T0 - HOUR + TTL + 5 * SEC + 10 * SEC, rcs);
    assert_int_equal(rcs[0], SP_ERR_DUPLICATE);
    move_to(&g, T0 - 10 * MIN + TTL);
    assert_int_equal(state_exists("dlv", "s4"), 0);
    assert_int_equal(state_exists("dlv", "s6"), 1);
    move_to(&g, T0 + TTL);
    assert_int_equal(state_exists("dlv", "s6"), 0);
    check_gauges("dlv", "3", "3", "0");
    move_to(&g, T0 + 30 * HOUR + TTL);
    check_gauges("dlv", "0", "0", "0");
    r = redisCommand(rc, "ZCARD sp:{dlv}:state:timers");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    snprintf(key, sizeof(key), "sp:{dlv}:state:shipment:s1");
    r = redisCommand(rc, "EXISTS %s", key);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    sp_engine_destroy(g.e);
    sp_store_destroy(g.st);
    sp_clock_set_manual(-1);
}

/* ---- the entity value ------------------------------------------------ */

static int decode_into(sp_engine_t *e, const char *val, size_t len, char *out, size_t *outlen) {
    void *data = calloc(1, sp_kind_shipment.size);
    assert_non_null(data);
    int rc_ = sp_kind_shipment.decode(e, val, len, data);
    if (rc_ == 0 && out) *outlen = sp_kind_shipment.encode(e, data, out, 4096);
    free(data);
    return rc_;
}

static void expect_corrupt(sp_engine_t *e, const char *good, size_t n, size_t at, char byte,
                           const char *what) {
    char buf[4096];
    memcpy(buf, good, n);
    buf[at] = byte;
    if (decode_into(e, buf, n, NULL, NULL) != -1) fail_msg("%s: accepted", what);
}

static void test_encoding(void **state) {
    (void)state;
    static sp_config_t cfg;
    char err[256], enc[4096], again[4096];
    size_t n, n2 = 0;
    cfg_for(&cfg, "enc");
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    sp_event_t ev = ship("x", SP_T_IN_TRANSIT, T0, "s1", "dhl", "DE", T0 + HOUR, T0 - DAY);
    sp_engine_want(e, &ev);
    assert_int_equal(sp_engine_apply(e, &ev), SP_OK);
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_SHIPMENT, str("s1"));
    assert_non_null(en);
    n = sp_kind_shipment.encode(e, en->data, enc, sizeof(enc));
    /* 29 header bytes, then "dhl" and "DE" */
    assert_int_equal(n, 29 + 4 + 3);
    assert_memory_equal(enc, "H1", 2);
    assert_int_equal((unsigned char)enc[2], 1 | 32 | 64); /* seen, promised, order time */
    assert_int_equal((unsigned char)enc[3], 1);           /* in flight (W unknown) */
    assert_int_equal(sp_kind_shipment.timer(e, en->data), T0 + HOUR - DAY + 1);

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
    expect_corrupt(e, enc, n, 2, (char)(1 | 32 | 64 | 128), "unknown flag");
    expect_corrupt(e, enc, n, 2, 32 | 64, "not seen");
    expect_corrupt(e, enc, n, 3, 0, "in flight without its gauge bit");
    expect_corrupt(e, enc, n, 3, 8, "unknown gauge bit");
    expect_corrupt(e, enc, n, 3, 1 | 2 | 4, "overdue and at risk");
    expect_corrupt(e, enc, n, 2, 1 | 2 | 32, "delivered but in flight");
    expect_corrupt(e, enc, n, 4 + 7, (char)0x80, "negative promised");
    expect_corrupt(e, enc, n, 28, 4, "four dimensions");
    expect_corrupt(e, enc, n, 29, 9, "dimension value length");
    /* at risk after out for delivery, then fix the contribution: accepted */
    memcpy(again, enc, n);
    again[3] = 1 | 4;
    assert_int_equal(decode_into(e, again, n, NULL, NULL), 0);
    again[2] = 1 | 16 | 32 | 64;
    assert_int_equal(decode_into(e, again, n, NULL, NULL), -1);
    sp_engine_destroy(e);
}

/* HGETALL of key as "field=value" lines, sorted (malloc'ed; the caller frees). */
static int by_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *hash_text(const char *key) {
    redisReply *r = redisCommand(rc, "HGETALL %s", key);
    assert_non_null(r);
    size_t n = r->elements / 2, cap = 1;
    char **lines = calloc(n + 1, sizeof(*lines));
    assert_non_null(lines);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(r->element[2 * i]->str) + strlen(r->element[2 * i + 1]->str) + 2;
        lines[i] = malloc(len);
        assert_non_null(lines[i]);
        snprintf(lines[i], len, "%s=%s", r->element[2 * i]->str, r->element[2 * i + 1]->str);
        cap += len;
    }
    qsort(lines, n, sizeof(*lines), by_str);
    char *out = calloc(1, cap);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
        free(lines[i]);
    }
    free(lines);
    freeReplyObject(r);
    return out;
}

/* The same deliveries committed in one batch and one per batch give the same
 * bytes in every field: the duration sums are integers (milliseconds). With
 * sums of hours as floats, each commit rounded the running sum, so the two
 * differed in the last digits. */
static void test_batches_same_bytes(void **state) {
    (void)state;
    enum { N = 40 };
    static sp_config_t cfg[2];
    static char ids[N][2][16];
    static sp_event_t evs[N];
    const char *ns[2] = {"one", "many"};
    char err[256], key[2][96];
    int rcs[N];

    sp_clock_set_manual(T0);
    for (int k = 0; k < N; k++) {
        int64_t t = T0 - 50 * MIN + k * SEC;
        int64_t opt = t - (20 * HOUR + (int64_t)k * k * 1234567 + k * 7919);
        int64_t promised = k % 2 ? t + HOUR : t - (int64_t)k * 37003 - 1;
        snprintf(ids[k][0], sizeof(ids[k][0]), "e%d", k);
        snprintf(ids[k][1], sizeof(ids[k][1]), "s%d", k);
        evs[k] = ship(ids[k][0], SP_T_DELIVERED, t, ids[k][1], k % 3 ? "dhl" : "ups", "DE",
                      promised, opt);
    }
    for (int i = 0; i < 2; i++) {
        rig_t g = {0};
        cfg_for(&cfg[i], ns[i]);
        g.st = sp_store_new(&cfg[i], err, sizeof(err));
        assert_non_null(g.st);
        g.e = sp_engine_new(&cfg[i], err, sizeof(err));
        assert_non_null(g.e);
        sp_engine_partition_add(g.e, 0, 0, -1, T0);
        if (i == 0)
            step(&g, evs, N, T0, rcs);
        else
            for (int k = 0; k < N; k++)
                step(&g, &evs[k], 1, T0, rcs);
        move_to(&g, T0 + 2 * HOUR); /* the window is final */
        snprintf(key[i], sizeof(key[i]), "sp:{%s}:delivery:1h:%lld", ns[i], (long long)(T0 - HOUR));
        check_field(key[i], "closed", "1");
        check_field(key[i], "delivered", "40");
        sp_engine_destroy(g.e);
        sp_store_destroy(g.st);
    }
    char *a = hash_text(key[0]), *b = hash_text(key[1]);
    if (strcmp(a, b)) {
        size_t d = 0;
        while (a[d] == b[d])
            d++;
        while (d > 0 && a[d - 1] != '\n')
            d--;
        fail_msg("one batch: %.80s... one per batch: %.80s...", a + d, b + d);
    }
    /* and the sum is the exact one */
    int64_t sum = 0;
    for (int k = 0; k < N; k++)
        sum += 20 * HOUR + (int64_t)k * k * 1234567 + k * 7919;
    char want[32];
    snprintf(want, sizeof(want), "%lld", (long long)sum);
    check_field(key[1], "delivery_time_hours_sum_ms", want);
    free(a);
    free(b);
    sp_clock_set_manual(-1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gauges_by_hand),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_batches_same_bytes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
