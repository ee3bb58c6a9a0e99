/* test_abandonment.c -- carts and checkouts joined to orders, decided by
 * timers in Redis, with a restart between arming and firing, an order seen
 * before its cart, a cart moved to an earlier window, and a correction by an
 * order admitted after the decision. Values computed by hand
 * (docs/METRICS.md "abandonment"). */
#include "tests/unit/engine_harness.h"

#define T0 1793527200000LL /* 2026-11-01T10:00:00Z */
#define MIN 60000LL

static const char *K1 = "sp:{ab}:abandonment:1m:1793527200000";  /* 10:00 */
static const char *K1b = "sp:{ab}:abandonment:1m:1793527260000"; /* 10:01 */
static const char *K5 = "sp:{ab}:abandonment:5m:1793527200000";

static int64_t field_int(const char *key, const char *field) {
    const char *v = hget(key, field);
    return v ? atoll(v) : 0;
}

static int64_t gauge(const char *field) { return field_int("sp:{ab}:gauges", field); }

/* A new engine that knows only Redis, as after a restart. */
static sp_engine_t *restart(const sp_config_t *cfg, sp_engine_t *old, int64_t max_et) {
    char err[256];
    sp_engine_destroy(old);
    sp_engine_t *e = sp_engine_new(cfg, err, sizeof(err));
    assert_non_null(e);
    const char *keys[SP_ENGINE_POINTER_KEYS_MAX];
    int64_t vals[SP_ENGINE_POINTER_KEYS_MAX];
    int n = sp_engine_pointer_keys(e, keys);
    for (int i = 0; i < n; i++) {
        redisReply *r = redisCommand(rc, "GET %s", keys[i]);
        vals[i] = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
        freeReplyObject(r);
    }
    redisReply *r = redisCommand(rc, "GET sp:{ab}:watermark");
    int64_t wm = r->type == REDIS_REPLY_STRING ? atoll(r->str) : INT64_MIN;
    freeReplyObject(r);
    sp_engine_restore(e, wm, vals);
    r = redisCommand(rc, "ZRANGE sp:{ab}:state:timers 0 0 WITHSCORES");
    sp_engine_restore_timers(e, r->elements == 2 ? atoll(r->element[1]->str) : INT64_MAX);
    freeReplyObject(r);
    sp_engine_partition_add(e, 0, 0, max_et, sp_clock_now_ms());
    return e;
}

static void test_carts_and_checkouts(void **state) {
    (void)state;
    sp_config_t cfg;
    char err[256];
    cfg_for(&cfg, "ab");
    cfg.abandon_after_ms = 10 * MIN;
    cfg.allowed_lateness_ms = 5 * MIN;
    sp_clock_set_manual(T0 + MIN);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
    int64_t off = 0;

    const char *web = "channel=web device=desktop country=US";
    (void)web;
    sp_event_t b1[] = {
        /* s1: cart, checkout, order: both converted */
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 1000, "event_id=a1 session_id=s1 channel=web device=desktop"),
        mk(SP_STREAM_CHECKOUT, SP_T_CHECKOUT_STARTED, T0 + 10000, "event_id=a2 session_id=s1 channel=web device=desktop"),
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 20000, "event_id=a3 session_id=s1 order_id=o1 currency=USD amount=100 channel=web device=desktop"),
        /* s2: a cart that will be abandoned (then corrected) */
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 2000, "event_id=b1 session_id=s2 channel=mobile_app device=mobile"),
        /* s3: the order arrives before its cart: converted at once */
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 3000, "event_id=c1 session_id=s3 order_id=o3 currency=USD amount=100 channel=web device=desktop"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 4000, "event_id=c2 session_id=s3 channel=web device=desktop"),
        /* s4: a cart at 10:01:10, then an earlier one at 10:00:05 arrives:
         * the cart moves to 10:00 with the earlier event's values */
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 70000, "event_id=d1 session_id=s4 channel=web device=desktop"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 5000, "event_id=d2 session_id=s4 channel=web device=mobile"),
        /* s5: a second cart add does not make a second cart */
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 6000, "event_id=e1 session_id=s5 channel=web device=desktop"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 7000, "event_id=e2 session_id=s5 channel=web device=desktop"),
        /* s5's order comes after the deadline (10:10:06): not a conversion */
        mk(SP_STREAM_CHECKOUT, SP_T_CHECKOUT_STARTED, T0 + 8000, "event_id=e3 session_id=s5 channel=web device=tablet"),
    };
    assert_int_equal(batch(e, st, b1, 11, &off), 0);
    assert_int_equal(field_int(K1, "carts"), 5);
    assert_int_equal(field_int(K1, "carts_converted"), 2);  /* s1 s3 */
    assert_int_equal(field_int(K1, "carts_pending"), 3);    /* s2 s4 s5 */
    assert_int_equal(field_int(K1, "carts_abandoned"), 0);
    assert_string_equal(hget(K1, "cart_abandonment_rate"), "0"); /* 0 / (0 + 2) */
    assert_int_equal(field_int(K1, "checkouts"), 2);
    assert_int_equal(field_int(K1, "checkouts_converted"), 1);
    assert_int_equal(field_int(K1, "checkouts_pending"), 1);
    assert_int_equal(field_int(K1b, "carts"), 0);           /* s4 moved away */
    assert_int_equal(field_int(K1b, "carts_pending"), 0);
    assert_int_equal(field_int(K1, "carts|device=mobile"), 2); /* s2, s4 (moved) */
    assert_int_equal(field_int(K1, "carts_pending|channel=web"), 2); /* s4 s5 */
    assert_int_equal(field_int(K5, "carts"), 5);
    assert_int_equal(gauge("in_flight|kind=cart"), 3);
    assert_int_equal(gauge("in_flight|kind=checkout"), 1);

    /* Restart: the timers are in Redis. Then the watermark passes 10:10:06. */
    e = restart(&cfg, e, T0 + 70000);
    sp_event_t b2[] = {
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 11 * MIN + 10000, "event_id=f1 session_id=s9 channel=web device=desktop"),
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 11 * MIN, "event_id=e4 session_id=s5 order_id=o5 currency=USD amount=100 channel=web device=desktop"),
    };
    assert_int_equal(batch(e, st, b2, 2, &off), 0);
    assert_int_equal(field_int(K1, "carts"), 5);
    assert_int_equal(field_int(K1, "carts_converted"), 2);
    assert_int_equal(field_int(K1, "carts_abandoned"), 3); /* s2 s4 s5 */
    assert_int_equal(field_int(K1, "carts_pending"), 0);
    assert_string_equal(hget(K1, "cart_abandonment_rate"), "0.6");
    assert_int_equal(field_int(K1, "checkouts_abandoned"), 1); /* s5 */
    assert_string_equal(hget(K1, "checkout_abandonment_rate"), "0.5");
    assert_int_equal(field_int(K1, "carts_abandoned|device=mobile"), 2);
    assert_string_equal(hget(K1, "cart_abandonment_rate|channel=mobile_app"), "1");
    assert_int_equal(gauge("in_flight|kind=cart"), 0);
    assert_int_equal(gauge("in_flight|kind=checkout"), 0);
    assert_null(hget(K1, "closed")); /* final at 10:01 + 10 min + 5 min */
    {
        redisReply *r = redisCommand(rc, "ZCARD sp:{ab}:state:timers");
        assert_int_equal(r->integer, 0);
        freeReplyObject(r);
    }

    /* An order of s2 at 10:09 (before its deadline 10:10:02), admitted
     * within the allowed lateness after the decision: corrected. */
    sp_event_t b3[] = {
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 9 * MIN, "event_id=b2 session_id=s2 order_id=o2 currency=USD amount=100 channel=mobile_app device=mobile"),
    };
    assert_int_equal(batch(e, st, b3, 1, &off), 0);
    assert_int_equal(field_int(K1, "carts_converted"), 3);
    assert_int_equal(field_int(K1, "carts_abandoned"), 2);
    assert_string_equal(hget(K1, "cart_abandonment_rate"), "0.4");
    assert_int_equal(field_int(K1, "carts_converted|channel=mobile_app"), 1);
    assert_int_equal(field_int(K1, "carts_abandoned|channel=mobile_app"), 0);

    /* Far later: the family's window closes, with the same counts. */
    sp_event_t b4[] = {
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 30 * MIN, "event_id=g1 session_id=s9 channel=web device=desktop"),
    };
    assert_int_equal(batch(e, st, b4, 1, &off), 0);
    assert_string_equal(hget(K1, "closed"), "1");
    assert_int_equal(field_int(K1, "carts"), 5);
    assert_int_equal(field_int(K1, "carts_converted"), 3);
    assert_string_equal(hget(K1, "closed"), "1");
    assert_string_equal(hget(K1b, "closed"), "1"); /* zero-filled */
    assert_string_equal(hget(K1b, "carts"), "0");
    assert_null(hget("sp:{ab}:health", "abandonment_corrections_dropped"));
    {
        redisReply *r = redisCommand(rc, "GET sp:{ab}:final:abandonment:1m");
        assert_true(atoll(r->str) >= T0 + 10 * MIN);
        freeReplyObject(r);
    }
    sp_engine_destroy(e);
    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

/* A cart and its order in one batch, or in two: the same fields. The
 * per-dimension carts_pending goes 1 then 0 across batches, and 0 within
 * one; a per-dimension counter at 0 is absent either way. (The overall
 * one, in this open window, appears with its first change; a closed window
 * has every overall counter.) */
static void test_pending_zero_absent(void **state) {
    (void)state;
    const char *ns[2] = {"pone", "ptwo"};
    char err[256], key[96], f[64];
    sp_clock_set_manual(T0 + MIN);
    for (int i = 0; i < 2; i++) {
        sp_config_t cfg;
        cfg_for(&cfg, ns[i]);
        cfg.abandon_after_ms = 10 * MIN;
        sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
        assert_non_null(st);
        sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
        assert_non_null(e);
        sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
        int64_t off = 0;
        sp_event_t b[] = {
            mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 10000,
               "event_id=c1 session_id=s1 channel=web device=desktop"),
            mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 20000,
               "event_id=o1 session_id=s1 order_id=o1 currency=USD amount=100 channel=web "
               "device=desktop"),
        };
        if (i == 0) {
            assert_int_equal(batch(e, st, b, 2, &off), 0);
        } else {
            assert_int_equal(batch(e, st, b, 1, &off), 0);
            assert_int_equal(batch(e, st, b + 1, 1, &off), 0);
        }
        snprintf(key, sizeof(key), "sp:{%s}:abandonment:1m:%lld", ns[i], (long long)T0);
        ASSERT_FIELD(key, "carts", "1");
        ASSERT_FIELD(key, "carts_pending", i == 0 ? NULL : "0"); /* overall, open window */
        ASSERT_FIELD(key, "carts_converted|channel=web", "1");
        ASSERT_FIELD(key, "carts_pending|channel=web", NULL);
        ASSERT_FIELD(key, "carts_pending|device=desktop", NULL);
        snprintf(f, sizeof(f), "%s", "cart_abandonment_rate|channel=web");
        ASSERT_FIELD(key, f, "0");
        sp_engine_destroy(e);
        sp_store_destroy(st);
    }
    sp_clock_set_manual(-1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_carts_and_checkouts),
        cmocka_unit_test(test_pending_zero_absent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
