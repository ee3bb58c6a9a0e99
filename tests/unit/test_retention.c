/* test_retention.c -- the retention family's customer entity and the
 * import's time parser, without Redis: order times parsed by hand, the
 * customer value round-trips byte for byte, every truncation and every
 * corrupted field of it is rejected, a changed window layout keeps the
 * history and drops the open windows, and an order time already known
 * changes nothing (also one no longer kept among the 32 most recent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/engine.h"
#include "aggregators/family.h"
#include "aggregators/import.h"
#include "core/config.h"
#include "core/err.h"

#define T0   1793527200000LL /* 2026-11-01T10:00:00Z */
#define MIN  60000LL
#define HOUR 3600000LL

static void parse_ok(const char *s, int64_t want) {
    int64_t got = -1;
    const char *why = NULL;
    if (sp_import_parse_time(s, strlen(s), &got, &why) != 0) fail_msg("'%s': %s", s, why);
    if (got != want) fail_msg("'%s': got %lld, want %lld", s, (long long)got, (long long)want);
}

static void parse_bad(const char *s) {
    int64_t got = -1;
    const char *why = NULL;
    if (sp_import_parse_time(s, strlen(s), &got, &why) == 0)
        fail_msg("'%s': accepted as %lld", s, (long long)got);
    assert_non_null(why);
}

static void test_parse_time(void **state) {
    (void)state;
    parse_ok("2026-11-01T10:00:00Z", T0);
    parse_ok("2026-11-01t10:00:00z", T0);
    parse_ok("2026-11-01 10:00:00Z", T0);
    parse_ok("2026-11-01T10:00Z", T0);
    parse_ok("2026-11-01T11:00:00+01:00", T0);
    parse_ok("2026-11-01T11:00:00+0100", T0);
    parse_ok("2026-11-01T11:00:00+01", T0);
    parse_ok("2026-11-01T05:30:00-04:30", T0);
    parse_ok("2026-11-01T10:00:00.5Z", T0 + 500);
    parse_ok("2026-11-01T10:00:00.123456Z", T0 + 123);
    parse_ok("2026-11-01T10:00:00,25Z", T0 + 250);
    parse_ok("1793527200000", T0);
    parse_ok("2024-02-29T00:00:00Z", 1709164800000LL);
    parse_ok("2000-01-01T00:00:00Z", 946684800000LL);
    parse_bad("");
    parse_bad("2026-11-01T10:00:00");      /* no zone */
    parse_bad("2026-11-01");               /* no time */
    parse_bad("2026-11-01T10:00:00+1:00"); /* one-digit hour */
    parse_bad("2026-11-01T10:00:00+24:00");
    parse_bad("2026-11-01T10:00:00+01:60");
    parse_bad("2026-11-01T10:00:00+01:0030");
    parse_bad("2026-11-01T10:00:00Zjunk");
    parse_bad("2026-11-01T10:00:00.Z");
    parse_bad("2026-02-29T00:00:00Z"); /* not a leap year */
    parse_bad("2026-13-01T00:00:00Z");
    parse_bad("2026-11-31T00:00:00Z");
    parse_bad("2026-11-01T24:00:00Z");
    parse_bad("2026-11-01T10:60:00Z");
    parse_bad("2026-11-01T10:00:60Z");
    parse_bad("-1793527200000");
    parse_bad("1793527200000.5");
    parse_bad("12345678901234567"); /* too many digits */
    parse_bad("yesterday");
    parse_bad("26-11-01T10:00:00Z");
}

/* ---- the customer entity ------------------------------------------------ */

static sp_event_t order(int64_t t, const char *customer, const char *order_id,
                        const char *channel) {
    sp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.stream = SP_STREAM_CHECKOUT;
    ev.type = SP_T_ORDER_PLACED;
    sp_event_set_int(&ev, SP_I_EVENT_TIME, t);
    sp_event_set_int(&ev, SP_I_AMOUNT_CENTS, 100);
    ev.s[SP_S_CUSTOMER_ID] = (sp_str_t){customer, (uint32_t)strlen(customer)};
    ev.s[SP_S_ORDER_ID] = (sp_str_t){order_id, (uint32_t)strlen(order_id)};
    ev.s[SP_S_CHANNEL] = (sp_str_t){channel, (uint32_t)strlen(channel)};
    return ev;
}

static sp_str_t str(const char *s) {
    return (sp_str_t){s, (uint32_t)strlen(s)};
}

/* Decode into a fresh data block; returns the decode result, re-encoding
 * into out (if given) on success. */
static int decode_into(sp_engine_t *e, const char *val, size_t len, char *out, size_t *outlen) {
    void *data = calloc(1, sp_kind_customer.size);
    assert_non_null(data);
    int rc = sp_kind_customer.decode(e, val, len, data);
    if (rc == 0 && out) *outlen = sp_kind_customer.encode(e, data, out, 4096);
    sp_kind_customer.release(data);
    free(data);
    return rc;
}

static void expect_corrupt(sp_engine_t *e, const char *good, size_t n, size_t at, char byte,
                           const char *what) {
    char buf[4096];
    memcpy(buf, good, n);
    buf[at] = byte;
    if (decode_into(e, buf, n, NULL, NULL) != -1) fail_msg("%s: accepted", what);
}

static void test_customer_encoding(void **state) {
    (void)state;
    static sp_config_t cfg, cfg2;
    char err[256], enc[4096], again[4096];
    size_t n, n2 = 0;

    sp_config_defaults(&cfg); /* sizes 1m 5m 1h 1d, dimension channel */
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    sp_event_t evs[] = {
        order(T0, "c1", "o1", "web"),
        order(T0 + 30000, "c1", "o2", "app"),      /* same 1m window */
        order(T0 + 2 * MIN, "c1", "o3", "app"),    /* another 1m window */
        order(T0 - 3 * HOUR, "c1", "o4", "social"), /* earlier: first moves */
    };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        sp_engine_want(e, &evs[i]);
        assert_int_equal(sp_engine_apply(e, &evs[i]), SP_OK);
    }
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_CUSTOMER, str("c1"));
    assert_non_null(en);
    n = sp_kind_customer.encode(e, en->data, enc, sizeof(enc));
    /* 18 header bytes, 4 times, 3 channel tuples (web, app, social), and
     * 8 open windows: 1m x 3, 5m x 2 (T0-3h, T0), 1h x 2, 1d x 1 */
    assert_int_equal(n, 18 + 4 * 8 + 1 + (4 + 4 + 7) + 1 + 8 * 19);
    assert_memory_equal(enc, "R1", 2);
    assert_int_equal((unsigned char)enc[17], 4); /* four order times */

    /* round trip, byte for byte */
    assert_int_equal(decode_into(e, enc, n, again, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(again, enc, n);

    /* every truncation and a trailing byte are rejected */
    for (size_t len = 0; len < n; len++)
        if (decode_into(e, enc, len, NULL, NULL) != -1) fail_msg("truncated to %zu: accepted", len);
    memcpy(again, enc, n);
    again[n] = 0;
    assert_int_equal(decode_into(e, again, n + 1, NULL, NULL), -1);

    /* corrupted fields */
    expect_corrupt(e, enc, n, 0, 'X', "magic");
    expect_corrupt(e, enc, n, 1, '9', "version");
    expect_corrupt(e, enc, n, 15, (char)0x80, "active bit 15");
    expect_corrupt(e, enc, n, 14, 1, "active bit 0 (m0)");
    expect_corrupt(e, enc, n, 16, 8, "retained bit 3");
    expect_corrupt(e, enc, n, 17, 33, "33 order times");
    expect_corrupt(e, enc, n, 18 + 7, (char)0x7f, "first order time after the kept ones");
    expect_corrupt(e, enc, n, 6 + 7, (char)0x80, "negative first");
    /* the last slot: size u8, widx i64, f i64, returning u8, tuple u8 */
    size_t ls = n - 19;
    expect_corrupt(e, enc, n, ls, 9, "slot size index");
    expect_corrupt(e, enc, n, ls + 1, (char)(enc[ls + 1] ^ 1), "slot window index");
    expect_corrupt(e, enc, n, ls + 17, 2, "slot returning flag");
    expect_corrupt(e, enc, n, ls + 18, 9, "slot tuple index");

    /* other window sizes: history and marks kept, open windows dropped */
    sp_config_defaults(&cfg2);
    cfg2.window_cnt = 1;
    cfg2.window_ms[0] = HOUR;
    sp_engine_t *e2 = sp_engine_new(&cfg2, err, sizeof(err));
    assert_non_null(e2);
    assert_int_equal(decode_into(e2, enc, n, again, &n2), 0);
    assert_int_equal(n2, 18 + 4 * 8 + 2);
    assert_memory_equal(again + 6, enc + 6, 18 + 4 * 8 - 6);
    assert_int_equal(again[n2 - 2], 0); /* no tuples */
    assert_int_equal(again[n2 - 1], 0); /* no slots */

    sp_engine_destroy(e2);
    sp_engine_destroy(e);
}

static void test_import_known_times(void **state) {
    (void)state;
    static sp_config_t cfg;
    char err[256];
    sp_config_defaults(&cfg);
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    sp_engine_want_entity(e, SP_KIND_CUSTOMER, str("u"));
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_CUSTOMER, str("u"));
    assert_non_null(en);

    assert_int_equal(sp_retention_import(e, en, T0), SP_RET_IMPORT_NEW_CUSTOMER);
    assert_int_equal(sp_retention_import(e, en, T0), SP_RET_IMPORT_KNOWN);
    /* 40 later orders within 30 days: more than the 32 kept */
    for (int k = 1; k <= 40; k++)
        assert_int_equal(sp_retention_import(e, en, T0 + k * HOUR), SP_RET_IMPORT_ADDED);
    for (int k = 1; k <= 40; k++) /* kept or not, all known */
        assert_int_equal(sp_retention_import(e, en, T0 + k * HOUR), SP_RET_IMPORT_KNOWN);
    /* an earlier one moves the first order; then it is known too */
    assert_int_equal(sp_retention_import(e, en, T0 - HOUR), SP_RET_IMPORT_ADDED);
    assert_int_equal(sp_retention_import(e, en, T0 - HOUR), SP_RET_IMPORT_KNOWN);
    assert_int_equal(sp_retention_import(e, en, T0), SP_RET_IMPORT_KNOWN);

    char enc[4096];
    size_t n = sp_kind_customer.encode(e, en->data, enc, sizeof(enc));
    assert_int_equal((unsigned char)enc[17], 32);
    assert_int_equal(n, 18 + 32 * 8 + 2);
    sp_engine_destroy(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_customer_encoding),
        cmocka_unit_test(test_import_known_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
