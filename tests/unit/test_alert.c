/* test_alert.c -- the alert record's wire formats (producers/alert.c).
 *
 * A full alert (contributors with and without value/baseline, rule labels, a
 * dimension) and a sparse one (no dimension, value, threshold, contributors
 * or labels) round trip through Avro, JSON and Alertmanager; the Confluent
 * header byte by byte and the Avro body read back with avro-c against
 * schemas/alert.avsc; the JSON object and the Alertmanager array field by
 * field; garbage, truncations of every length (placed right before an
 * unreadable page) and trailing bytes are refused without a crash; the
 * human line. Runs from the source directory (ctest sets it). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "producers/alert.h"

#define SCHEMA "schemas/alert.avsc"
#define T0     1795428000000LL /* 2026-11-23T10:00:00Z */

static void full_alert(sp_alert_t *a) {
    memset(a, 0, sizeof(*a));
    strcpy(a->fingerprint, "3f2a9c0d11e4b7a1");
    snprintf(a->alert_id, sizeof(a->alert_id), "3f2a9c0d11e4b7a1:FIRING:%lld", T0);
    strcpy(a->rule, "conversion_drop");
    a->state = SP_ALERT_FIRING;
    strcpy(a->severity, "critical");
    strcpy(a->metric, "funnel.conversion_rate");
    strcpy(a->dimension, "channel=web");
    a->has_value = 1;
    a->value = 0.011;
    a->has_threshold = 1;
    a->threshold = 0.015;
    a->sample_size = 1200;
    strcpy(a->window_size, "5m");
    a->window_start_ms = T0;
    a->window_end_ms = T0 + 300000;
    a->started_at_ms = T0 + 300000;
    a->emitted_at_ms = T0 + 301234;
    a->ncontrib = 2;
    strcpy(a->contrib[0].dimension, "device=mobile");
    a->contrib[0].has_value = 1;
    a->contrib[0].value = 0.004;
    a->contrib[0].has_baseline = 1;
    a->contrib[0].baseline = 0.021;
    a->contrib[0].share = 0.62;
    strcpy(a->contrib[1].dimension, "country=DE");
    a->contrib[1].share = 0.25; /* no value, no baseline */
    strcpy(a->summary, "Conversion on web fell to 1.1 % (threshold 1.5 %), mostly device=mobile");
    a->nlabels = 2;
    strcpy(a->labels[0].key, "team");
    strcpy(a->labels[0].value, "checkout");
    strcpy(a->labels[1].key, "runbook");
    strcpy(a->labels[1].value, "https://wiki/checkout");
}

static void sparse_alert(sp_alert_t *a) {
    memset(a, 0, sizeof(*a));
    strcpy(a->fingerprint, "00000000000000ff");
    strcpy(a->alert_id, "00000000000000ff:RESOLVED:1795428000000");
    strcpy(a->rule, "no_orders");
    a->state = SP_ALERT_RESOLVED;
    strcpy(a->severity, "warning");
    strcpy(a->metric, "funnel.orders");
    strcpy(a->window_size, "15m");
    a->window_start_ms = T0;
    a->window_end_ms = T0 + 900000;
    a->started_at_ms = T0 - 900000;
    a->emitted_at_ms = T0 + 900500;
}

static const char *find_label(const sp_alert_t *a, const char *key) {
    for (int i = 0; i < a->nlabels; i++)
        if (!strcmp(a->labels[i].key, key)) return a->labels[i].value;
    return NULL;
}

static void assert_same(const sp_alert_t *x, const sp_alert_t *y) {
    assert_string_equal(x->fingerprint, y->fingerprint);
    assert_string_equal(x->alert_id, y->alert_id);
    assert_string_equal(x->rule, y->rule);
    assert_int_equal(x->state, y->state);
    assert_string_equal(x->severity, y->severity);
    assert_string_equal(x->metric, y->metric);
    assert_string_equal(x->dimension, y->dimension);
    assert_int_equal(x->has_value, y->has_value);
    if (x->has_value) assert_true(x->value == y->value);
    assert_int_equal(x->has_threshold, y->has_threshold);
    if (x->has_threshold) assert_true(x->threshold == y->threshold);
    assert_int_equal(x->sample_size, y->sample_size);
    assert_string_equal(x->window_size, y->window_size);
    assert_int_equal(x->window_start_ms, y->window_start_ms);
    assert_int_equal(x->window_end_ms, y->window_end_ms);
    assert_int_equal(x->started_at_ms, y->started_at_ms);
    assert_int_equal(x->emitted_at_ms, y->emitted_at_ms);
    assert_int_equal(x->ncontrib, y->ncontrib);
    for (int i = 0; i < x->ncontrib; i++) {
        assert_string_equal(x->contrib[i].dimension, y->contrib[i].dimension);
        assert_int_equal(x->contrib[i].has_value, y->contrib[i].has_value);
        if (x->contrib[i].has_value) assert_true(x->contrib[i].value == y->contrib[i].value);
        assert_int_equal(x->contrib[i].has_baseline, y->contrib[i].has_baseline);
        if (x->contrib[i].has_baseline)
            assert_true(x->contrib[i].baseline == y->contrib[i].baseline);
        assert_true(x->contrib[i].share == y->contrib[i].share);
    }
    assert_string_equal(x->summary, y->summary);
    assert_int_equal(x->nlabels, y->nlabels);
    for (int i = 0; i < x->nlabels; i++) {
        const char *v = find_label(y, x->labels[i].key);
        assert_non_null(v);
        assert_string_equal(v, x->labels[i].value);
    }
}

static void round_trip(const sp_alert_t *a, sp_alert_format_t fmt) {
    char *buf = NULL, err[256];
    size_t len = 0;
    sp_alert_t b;
    sp_alert_format_t got = (sp_alert_format_t)-1;
    assert_int_equal(
        sp_alert_encode(a, fmt, 42, SCHEMA, "http://sp/rules", &buf, &len, err, sizeof(err)), 0);
    assert_non_null(buf);
    assert_true(len > 5);
    if (sp_alert_decode(buf, len, SCHEMA, &b, &got, err, sizeof(err)) != 0) fail_msg("%s", err);
    assert_int_equal(got, fmt);
    assert_same(a, &b);
    free(buf);
}

static void test_format_parse(void **state) {
    (void)state;
    assert_int_equal(sp_alert_format_parse("avro"), SP_ALERT_FMT_AVRO);
    assert_int_equal(sp_alert_format_parse("json"), SP_ALERT_FMT_JSON);
    assert_int_equal(sp_alert_format_parse("alertmanager"), SP_ALERT_FMT_ALERTMANAGER);
    assert_int_equal(sp_alert_format_parse("xml"), -1);
    assert_int_equal(sp_alert_format_parse(NULL), -1);
}

static void test_round_trips(void **state) {
    sp_alert_t a;
    (void)state;
    for (int f = SP_ALERT_FMT_AVRO; f <= SP_ALERT_FMT_ALERTMANAGER; f++) {
        full_alert(&a);
        round_trip(&a, (sp_alert_format_t)f);
        a.state = SP_ALERT_RESOLVED; /* Alertmanager: state from endsAt */
        round_trip(&a, (sp_alert_format_t)f);
        sparse_alert(&a);
        round_trip(&a, (sp_alert_format_t)f);
        /* a repeat from a window that decides nothing: FIRING, no value */
        a.state = SP_ALERT_FIRING;
        strcpy(a.alert_id, "00000000000000ff:FIRING:1795427100000");
        a.has_threshold = 1;
        a.threshold = 0.015;
        a.sample_size = 40;
        round_trip(&a, (sp_alert_format_t)f);
    }
}

/* The Confluent header, and the body as avro-c reads it with the schema. */
static void test_avro_bytes(void **state) {
    sp_alert_t a;
    char *buf = NULL, err[256], *json = NULL;
    size_t len = 0, used = 0;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t v, f, br;
    avro_reader_t r;
    const char *s;
    size_t sl;
    FILE *fp;
    long n;
    (void)state;

    full_alert(&a);
    assert_int_equal(sp_alert_encode(&a, SP_ALERT_FMT_AVRO, 0x01020304, SCHEMA, NULL, &buf, &len,
                                     err, sizeof(err)),
                     0);
    assert_int_equal((unsigned char)buf[0], 0);
    assert_int_equal((unsigned char)buf[1], 1);
    assert_int_equal((unsigned char)buf[2], 2);
    assert_int_equal((unsigned char)buf[3], 3);
    assert_int_equal((unsigned char)buf[4], 4);
    /* the Avro string "3f2a9c0d11e4b7a1": zigzag length 16 -> 0x20 */
    assert_int_equal((unsigned char)buf[5], 0x20);
    assert_memory_equal(buf + 6, "3f2a9c0d11e4b7a1", 16);

    fp = fopen(SCHEMA, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    json = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(json, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    assert_int_equal(avro_schema_from_json_length(json, (size_t)n, &schema), 0);
    iface = avro_generic_class_from_schema(schema);
    assert_int_equal(avro_generic_value_new(iface, &v), 0);
    r = avro_reader_memory(buf + 5, (int64_t)(len - 5));
    assert_int_equal(avro_value_read(r, &v), 0);
    assert_int_equal(avro_value_sizeof(&v, &used), 0);
    assert_int_equal(used, len - 5);
    assert_int_equal(avro_value_get_by_name(&v, "dimension", &f, NULL), 0);
    assert_int_equal(avro_value_get_current_branch(&f, &br), 0);
    assert_int_equal(avro_value_get_string(&br, &s, &sl), 0);
    assert_string_equal(s, "channel=web");
    assert_int_equal(avro_value_get_by_name(&v, "contributors", &f, NULL), 0);
    assert_int_equal(avro_value_get_size(&f, &sl), 0);
    assert_int_equal(sl, 2);
    avro_reader_free(r);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    free(json);
    free(buf);

    /* a missing schema file is an error, not a crash */
    assert_int_equal(sp_alert_encode(&a, SP_ALERT_FMT_AVRO, 1, "no/such.avsc", NULL, &buf, &len,
                                     err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "no/such.avsc"));
}

static void test_json_shape(void **state) {
    sp_alert_t a;
    char *buf = NULL, err[256];
    size_t len = 0;
    json_error_t je;
    json_t *o, *c;
    (void)state;

    full_alert(&a);
    assert_int_equal(
        sp_alert_encode(&a, SP_ALERT_FMT_JSON, 0, NULL, NULL, &buf, &len, err, sizeof(err)), 0);
    assert_int_equal(strlen(buf), len);
    assert_null(strchr(buf, '\n'));
    o = json_loadb(buf, len, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "FIRING");
    assert_string_equal(json_string_value(json_object_get(o, "dimension")), "channel=web");
    assert_true(json_real_value(json_object_get(o, "value")) == 0.011);
    assert_int_equal(json_integer_value(json_object_get(o, "sample_size")), 1200);
    assert_int_equal(json_integer_value(json_object_get(o, "window_start")), T0);
    assert_int_equal(json_integer_value(json_object_get(o, "window_end")), T0 + 300000);
    assert_int_equal(json_integer_value(json_object_get(o, "started_at")), T0 + 300000);
    assert_int_equal(json_integer_value(json_object_get(o, "emitted_at")), T0 + 301234);
    assert_string_equal(json_string_value(json_object_get(o, "window_size")), "5m");
    c = json_object_get(o, "contributors");
    assert_int_equal(json_array_size(c), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "dimension")),
                        "device=mobile");
    assert_true(json_is_null(json_object_get(json_array_get(c, 1), "value")));
    assert_true(json_is_null(json_object_get(json_array_get(c, 1), "baseline")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "labels"), "team")),
                        "checkout");
    json_decref(o);
    free(buf);

    sparse_alert(&a);
    assert_int_equal(
        sp_alert_encode(&a, SP_ALERT_FMT_JSON, 0, NULL, NULL, &buf, &len, err, sizeof(err)), 0);
    o = json_loadb(buf, len, 0, &je);
    assert_true(json_is_null(json_object_get(o, "dimension")));
    assert_true(json_is_null(json_object_get(o, "value")));
    assert_true(json_is_null(json_object_get(o, "threshold")));
    assert_int_equal(json_array_size(json_object_get(o, "contributors")), 0);
    assert_int_equal(json_object_size(json_object_get(o, "labels")), 0);
    json_decref(o);
    free(buf);
}

static void test_alertmanager_shape(void **state) {
    sp_alert_t a;
    char *buf = NULL, err[256];
    size_t len = 0;
    json_error_t je;
    json_t *arr, *o, *l, *an;
    const char *d;
    (void)state;

    full_alert(&a);
    a.repeat_every_ms = 3600000;
    assert_int_equal(sp_alert_encode(&a, SP_ALERT_FMT_ALERTMANAGER, 0, NULL, "http://sp/rules/x",
                                     &buf, &len, err, sizeof(err)),
                     0);
    arr = json_loadb(buf, len, 0, &je);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 1);
    o = json_array_get(arr, 0);
    l = json_object_get(o, "labels");
    assert_string_equal(json_string_value(json_object_get(l, "alertname")), "conversion_drop");
    assert_string_equal(json_string_value(json_object_get(l, "severity")), "critical");
    assert_string_equal(json_string_value(json_object_get(l, "metric")), "funnel.conversion_rate");
    assert_string_equal(json_string_value(json_object_get(l, "fingerprint")), "3f2a9c0d11e4b7a1");
    assert_string_equal(json_string_value(json_object_get(l, "channel")), "web");
    assert_string_equal(json_string_value(json_object_get(l, "team")), "checkout");
    assert_int_equal(json_object_size(l), 7);
    an = json_object_get(o, "annotations");
    assert_string_equal(json_string_value(json_object_get(an, "summary")), a.summary);
    assert_string_equal(json_string_value(json_object_get(an, "alert_id")), a.alert_id);
    d = json_string_value(json_object_get(an, "description"));
    assert_non_null(d);
    assert_non_null(strstr(d, "0.011"));
    assert_non_null(strstr(d, "threshold 0.015"));
    assert_non_null(strstr(d, "1200 samples"));
    assert_non_null(strstr(d, "5m window 2026-11-23T10:00:00Z/2026-11-23T10:05:00Z"));
    assert_non_null(strstr(json_string_value(json_object_get(an, "contributors")),
                           "device=mobile (value 0.004, baseline 0.021, share 0.62)"));
    assert_string_equal(json_string_value(json_object_get(o, "startsAt")), "2026-11-23T10:05:00Z");
    /* firing: emitted_at + 4 x max(repeat_every 1h, window 5m) */
    assert_string_equal(json_string_value(json_object_get(o, "endsAt")),
                        "2026-11-23T14:05:01.234Z");
    assert_string_equal(json_string_value(json_object_get(an, "state")), "FIRING");
    assert_string_equal(json_string_value(json_object_get(o, "generatorURL")), "http://sp/rules/x");
    json_decref(arr);
    free(buf);

    a.state = SP_ALERT_RESOLVED;
    a.window_end_ms = T0 + 3600000 + 250; /* resolved an hour later, ms kept */
    a.emitted_at_ms = T0 + 3600000 + 1500;
    assert_int_equal(
        sp_alert_encode(&a, SP_ALERT_FMT_ALERTMANAGER, 0, NULL, NULL, &buf, &len, err, sizeof(err)),
        0);
    arr = json_loadb(buf, len, 0, &je);
    o = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(o, "startsAt")), "2026-11-23T10:05:00Z");
    assert_string_equal(json_string_value(json_object_get(o, "endsAt")),
                        "2026-11-23T11:00:00.250Z");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "annotations"), "state")), "RESOLVED");
    json_decref(arr);
    free(buf);

    /* a foreign Alertmanager alert with an offset and fractions decodes */
    static const char am[] =
        "[{\"labels\":{\"alertname\":\"x\",\"severity\":\"page\",\"zone\":\"eu\"},"
        "\"annotations\":{\"summary\":\"s\"},\"startsAt\":\"2026-11-23T11:05:00.5+01:00\","
        "\"endsAt\":\"2026-11-23T10:10:00Z\"}]";
    assert_int_equal(sp_alert_decode(am, strlen(am), NULL, &a, NULL, err, sizeof(err)), 0);
    assert_string_equal(a.rule, "x");
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
    assert_int_equal(a.started_at_ms, T0 + 300500);
    assert_int_equal(a.window_end_ms, T0 + 600000);
    assert_string_equal(find_label(&a, "zone"), "eu");
    /* a foreign alert still firing: endsAt in the future (as Prometheus
     * sends them) */
    static const char am2[] = "[{\"labels\":{\"alertname\":\"y\"},\"startsAt\":"
                              "\"2026-11-23T11:05:00Z\",\"endsAt\":\"2999-01-01T00:00:00Z\"}]";
    assert_int_equal(sp_alert_decode(am2, strlen(am2), NULL, &a, NULL, err, sizeof(err)), 0);
    assert_int_equal(a.state, SP_ALERT_FIRING);
}

/* Alertmanager's endsAt, case by case (alert.h sp_alert_ends_at). */
static void test_ends_at(void **state) {
    sp_alert_t a;
    (void)state;
    full_alert(&a); /* 5m window ending T0+5m, emitted at T0+5m+1.234s */
    a.repeat_every_ms = 3600000;
    assert_int_equal(sp_alert_ends_at(&a), T0 + 301234 + 4 * 3600000LL);
    a.repeat_every_ms = 60000; /* repeats come once a window at most */
    assert_int_equal(sp_alert_ends_at(&a), T0 + 301234 + 4 * 300000LL);
    a.repeat_every_ms = 0; /* unknown (the rule is gone): the window */
    assert_int_equal(sp_alert_ends_at(&a), T0 + 301234 + 4 * 300000LL);
    /* a replay: the window is a month old, endsAt follows the wall clock */
    a.repeat_every_ms = 3600000;
    a.emitted_at_ms = T0 + 30 * 86400000LL;
    assert_int_equal(sp_alert_ends_at(&a), T0 + 30 * 86400000LL + 4 * 3600000LL);
    /* event times ahead of the clock: from the window's end */
    a.emitted_at_ms = T0;
    assert_int_equal(sp_alert_ends_at(&a), T0 + 300000 + 4 * 3600000LL);
    /* RESOLVED: the resolving window's end, never after the message */
    a.state = SP_ALERT_RESOLVED;
    a.emitted_at_ms = T0 + 310000;
    assert_int_equal(sp_alert_ends_at(&a), T0 + 300000);
    a.emitted_at_ms = T0 + 200000;
    assert_int_equal(sp_alert_ends_at(&a), T0 + 200000);
}

/* The input ends right before an unreadable page. */
static unsigned char *guard_region;
static size_t guard_size;

static const unsigned char *guarded(const void *src, size_t len) {
    if (!guard_region) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        guard_size = 64 * pg;
        guard_region =
            mmap(NULL, guard_size + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(guard_region != MAP_FAILED);
        assert_int_equal(mprotect(guard_region + guard_size, pg, PROT_NONE), 0);
    }
    assert_true(len <= guard_size);
    unsigned char *p = guard_region + guard_size - len;
    memcpy(p, src, len);
    return p;
}

static void test_decode_errors(void **state) {
    sp_alert_t a, b;
    char *buf = NULL, err[256];
    size_t len = 0;
    (void)state;

    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"", 0},
        {"\x00", 1},
        {"\x00\x00\x00\x00\x01", 5},
        {"\x00\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 15}, /* huge length */
        {"\x00\x00\x00\x00\x01\x01", 6},                                      /* negative length */
        {"hello", 5},
        {"{", 1},
        {"{}", 2},
        {"{\"fingerprint\": 3}", 18},
        {"[]", 2},
        {"[{}]", 4},
        {"[1,2]", 5},
        {"[{\"labels\":{\"alertname\":\"x\"},\"startsAt\":\"yesterday\"}]", 52},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sp_alert_decode(guarded(bad[i].bytes, bad[i].len), bad[i].len, SCHEMA, &b,
                                         NULL, err, sizeof(err)),
                         -1);
        assert_true(err[0] != '\0');
    }

    /* every truncation of every format fails cleanly */
    full_alert(&a);
    for (int f = SP_ALERT_FMT_AVRO; f <= SP_ALERT_FMT_ALERTMANAGER; f++) {
        assert_int_equal(sp_alert_encode(&a, (sp_alert_format_t)f, 7, SCHEMA, NULL, &buf, &len, err,
                                         sizeof(err)),
                         0);
        for (size_t n = 0; n < len; n++)
            assert_int_equal(
                sp_alert_decode(guarded(buf, n), n, SCHEMA, &b, NULL, err, sizeof(err)), -1);
        assert_int_equal(
            sp_alert_decode(guarded(buf, len), len, SCHEMA, &b, NULL, err, sizeof(err)), 0);
        if (f == SP_ALERT_FMT_AVRO) { /* one byte too many */
            char *more = malloc(len + 1);
            memcpy(more, buf, len);
            more[len] = 0;
            assert_int_equal(sp_alert_decode(guarded(more, len + 1), len + 1, SCHEMA, &b, NULL, err,
                                             sizeof(err)),
                             -1);
            assert_non_null(strstr(err, "trailing"));
            /* flipped bytes: refused or decoded, never a crash */
            for (size_t i = 5; i < len; i++) {
                memcpy(more, buf, len);
                more[i] ^= (char)0xa5;
                (void)sp_alert_decode(guarded(more, len), len, SCHEMA, &b, NULL, err, sizeof(err));
            }
            free(more);
        }
        free(buf);
    }
}

/* Bytes that are not UTF-8 (a dimension value as a store sent it) still
 * give valid JSON, with '?' in their place. */
static void test_not_utf8(void **state) {
    sp_alert_t a, b;
    char *buf = NULL, err[256];
    size_t len = 0;
    (void)state;
    for (int f = SP_ALERT_FMT_JSON; f <= SP_ALERT_FMT_ALERTMANAGER; f++) {
        full_alert(&a);
        strcpy(a.dimension, "channel=w\xff"
                            "b");
        strcpy(a.contrib[0].dimension, "device=\xc3");
        assert_int_equal(
            sp_alert_encode(&a, (sp_alert_format_t)f, 0, NULL, NULL, &buf, &len, err, sizeof(err)),
            0);
        assert_int_equal(sp_alert_decode(buf, len, NULL, &b, NULL, err, sizeof(err)), 0);
        assert_string_equal(b.dimension, "channel=w?b");
        assert_string_equal(b.contrib[0].dimension, "device=?");
        free(buf);
    }
}

static void test_line(void **state) {
    sp_alert_t a;
    char line[1024];
    (void)state;
    full_alert(&a);
    sp_alert_line(&a, line, sizeof(line));
    assert_string_equal(line, "2026-11-23T10:05:00Z FIRING critical conversion_drop channel=web "
                              "funnel.conversion_rate=0.011 (threshold 0.015, n=1200) -- "
                              "Conversion on web fell to 1.1 % (threshold 1.5 %), mostly "
                              "device=mobile");
    sparse_alert(&a);
    sp_alert_line(&a, line, sizeof(line));
    assert_string_equal(line, "2026-11-23T10:15:00Z RESOLVED warning no_orders "
                              "funnel.orders=none (n=0)");
    full_alert(&a);
    strcpy(a.summary, "two\nlines");
    sp_alert_line(&a, line, 40); /* truncated, terminated */
    assert_int_equal(strlen(line), 39);
    sp_alert_line(&a, line, sizeof(line));
    assert_null(strchr(line, '\n'));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_avro_bytes),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_alertmanager_shape),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_not_utf8),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_ends_at),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
