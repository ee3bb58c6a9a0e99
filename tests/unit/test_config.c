/* test_config.c -- the option table: defaults, the YAML loader and its
 * file:line errors, environment overrides, kafka passthrough, the printer
 * (round trip, redaction), durations, and that deploy/storepulse.yaml and
 * docs/CONFIG.md agree with the table. Runs from the source directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/err.h"

extern char **environ;

/* Temp files made by a test, removed by the teardown. */
static char tmp_paths[8][64];
static int tmp_cnt;

static const char *write_tmp(const char *text) {
    char *path;
    int fd;
    assert_true(tmp_cnt < 8);
    path = tmp_paths[tmp_cnt++];
    snprintf(path, 64, "/tmp/sp_test_config_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Read a whole file (or stream) into a NUL-terminated heap string. */
static char *slurp(FILE *fp) {
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((n = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    return buf;
}

static char *print_to_string(const sp_config_t *cfg) {
    FILE *fp = tmpfile();
    char *s;
    assert_non_null(fp);
    sp_config_print(cfg, fp);
    rewind(fp);
    s = slurp(fp);
    fclose(fp);
    return s;
}

static void clear_env(void) {
    char name[256];
    bool again = true;
    while (again) {
        again = false;
        for (char **e = environ; e && *e; e++) {
            const char *eq = strchr(*e, '=');
            if (strncmp(*e, "STOREPULSE_", 11) != 0 || !eq) continue;
            snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
            unsetenv(name);
            again = true;
            break;
        }
    }
}

static int setup(void **state) {
    (void)state;
    clear_env();
    tmp_cnt = 0;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < tmp_cnt; i++)
        unlink(tmp_paths[i]);
    tmp_cnt = 0;
    clear_env();
    return 0;
}

/* Two configs hold the same values (the source file aside). */
static void assert_same_config(const sp_config_t *a, const sp_config_t *b) {
    sp_config_t x, y;
    memcpy(&x, a, sizeof(x)); /* memcpy: struct assignment need not copy padding */
    memcpy(&y, b, sizeof(y));
    memset(x.source, 0, sizeof(x.source));
    memset(y.source, 0, sizeof(y.source));
    memset(&x.origin, 0, sizeof(x.origin));
    memset(&y.origin, 0, sizeof(y.origin));
    assert_memory_equal(&x, &y, sizeof(x));
}

static void test_duration(void **state) {
    int64_t ms = -1;
    char buf[32];
    (void)state;

    assert_int_equal(sp_duration_parse("250ms", &ms), SP_OK);
    assert_int_equal(ms, 250);
    assert_int_equal(sp_duration_parse("5s", &ms), SP_OK);
    assert_int_equal(ms, 5000);
    assert_int_equal(sp_duration_parse("10m", &ms), SP_OK);
    assert_int_equal(ms, 600000);
    assert_int_equal(sp_duration_parse("1h", &ms), SP_OK);
    assert_int_equal(ms, 3600000);
    assert_int_equal(sp_duration_parse("2d", &ms), SP_OK);
    assert_int_equal(ms, 172800000);
    assert_int_equal(sp_duration_parse("1500", &ms), SP_OK);
    assert_int_equal(ms, 1500);
    assert_int_equal(sp_duration_parse("0", &ms), SP_OK);
    assert_int_equal(ms, 0);
    assert_int_not_equal(sp_duration_parse("", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("s", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("-5s", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("5 s", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("1.5s", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("5w", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("99999999999999999999", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse("9999999999999999d", &ms), SP_OK);
    assert_int_not_equal(sp_duration_parse(NULL, &ms), SP_OK);

    sp_duration_format(60000, buf, sizeof(buf));
    assert_string_equal(buf, "1m");
    sp_duration_format(3600000, buf, sizeof(buf));
    assert_string_equal(buf, "1h");
    sp_duration_format(86400000, buf, sizeof(buf));
    assert_string_equal(buf, "1d");
    sp_duration_format(30000, buf, sizeof(buf));
    assert_string_equal(buf, "30s");
    sp_duration_format(250, buf, sizeof(buf));
    assert_string_equal(buf, "250ms");
    sp_duration_format(90000, buf, sizeof(buf));
    assert_string_equal(buf, "90s");
    sp_duration_format(400LL * 86400000, buf, sizeof(buf));
    assert_string_equal(buf, "400d");
    sp_duration_format(0, buf, sizeof(buf));
    assert_string_equal(buf, "0ms");
    /* every formatted value parses back to itself */
    for (int64_t v = 1; v < 10LL * 86400000; v = v * 7 + 3) {
        sp_duration_format(v, buf, sizeof(buf));
        assert_int_equal(sp_duration_parse(buf, &ms), SP_OK);
        assert_int_equal(ms, v);
    }
}

static void check_defaults(const sp_config_t *c) {
    static const int64_t sizes[] = {60000, 300000, 3600000, 86400000};
    static const int64_t ttls[] = {2 * 86400000LL, 7 * 86400000LL, 35 * 86400000LL,
                                   400 * 86400000LL};
    assert_string_equal(c->ns, "store");
    assert_string_equal(sp_config_kafka_get(c, "bootstrap.servers"), "127.0.0.1:9092");
    assert_string_equal(sp_config_kafka_get(c, "group.id"), "storepulse");
    assert_int_equal(c->kafka_cnt, 2);
    assert_null(sp_config_kafka_get(c, "acks"));
    assert_string_equal(c->redis_host, "127.0.0.1");
    assert_int_equal(c->redis_port, 6379);
    assert_int_equal(c->redis_db, 0);
    assert_int_equal(c->redis_timeout_ms, 5000);
    assert_string_equal(c->redis_user, "");
    assert_string_equal(c->redis_password, "");
    assert_string_equal(c->redis_unix_socket, "");
    assert_string_equal(c->topics[SP_STREAM_CLICKSTREAM].name, "store.clickstream");
    assert_string_equal(c->topics[SP_STREAM_CHECKOUT].name, "store.checkout");
    assert_string_equal(c->topics[SP_STREAM_SHIPMENT].name, "store.shipments");
    assert_string_equal(c->topics[SP_STREAM_SUPPORT].name, "store.support");
    for (int i = 0; i < SP_STREAM__COUNT; i++)
        assert_int_equal(c->topics[i].format, SP_FORMAT_AVRO);
    assert_string_equal(c->topic_deadletter, "storepulse.deadletter");
    assert_string_equal(c->topic_alerts, "storepulse.alerts");
    assert_string_equal(c->schemas_dir, "schemas");
    assert_int_equal(c->schema_cnt, 4);
    assert_int_equal(c->schemas[0].id, 1);
    assert_int_equal(c->schemas[0].stream, SP_STREAM_CLICKSTREAM);
    assert_string_equal(c->schemas[0].path, "schemas/clickstream.avsc");
    assert_int_equal(c->schemas[1].id, 2);
    assert_int_equal(c->schemas[1].stream, SP_STREAM_CHECKOUT);
    assert_string_equal(c->schemas[1].path, "schemas/checkout.avsc");
    assert_int_equal(c->schemas[2].id, 3);
    assert_int_equal(c->schemas[2].stream, SP_STREAM_SHIPMENT);
    assert_string_equal(c->schemas[2].path, "schemas/shipment.avsc");
    assert_int_equal(c->schemas[3].id, 4);
    assert_int_equal(c->schemas[3].stream, SP_STREAM_SUPPORT);
    assert_string_equal(c->schemas[3].path, "schemas/support.avsc");
    assert_int_equal(c->window_cnt, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c->window_ms[i], sizes[i]);
        assert_int_equal(c->window_ttl_ms[i], ttls[i]);
    }
    assert_string_equal(c->timezone, "UTC");
    assert_int_equal(c->max_out_of_orderness_ms, 5000);
    assert_int_equal(c->allowed_lateness_ms, 60000);
    assert_int_equal(c->idle_timeout_ms, 30000);
    assert_int_equal(c->max_dimension_values, 64);
    assert_string_equal(c->currency, "USD");
    assert_int_equal(c->funnel_dims.cnt, 3);
    assert_int_equal(c->funnel_dims.f[0], SP_S_CHANNEL);
    assert_int_equal(c->funnel_dims.f[1], SP_S_DEVICE);
    assert_int_equal(c->funnel_dims.f[2], SP_S_COUNTRY);
    assert_int_equal(c->dedup_max_ids, 1000000);
    assert_int_equal(c->state_ttl_ms, 2 * 86400000LL);
    assert_int_equal(c->state_cache_max, 1000000);
    assert_int_equal(c->batch_max, 10000);
    assert_int_equal(c->batch_timeout_ms, 100);
    assert_int_equal(c->shutdown_timeout_ms, 10000);
    assert_int_equal(c->partitions, 8);
    assert_string_equal(c->log_level, "info");
}

static void test_defaults(void **state) {
    sp_config_t c, l;
    char err[512] = "x";
    (void)state;

    sp_config_defaults(&c);
    check_defaults(&c);
    assert_string_equal(c.source, "");
    /* load(NULL) is defaults + environment */
    assert_int_equal(sp_config_load(&l, NULL, err, sizeof(err)), SP_OK);
    assert_string_equal(err, "");
    assert_same_config(&c, &l);
    /* an empty file and a comment-only file are the defaults too */
    assert_int_equal(sp_config_load(&l, write_tmp(""), err, sizeof(err)), SP_OK);
    assert_same_config(&c, &l);
    assert_int_equal(sp_config_load(&l, write_tmp("# nothing\n---\n"), err, sizeof(err)), SP_OK);
    assert_same_config(&c, &l);
}

static const char full_yaml[] = "namespace: eu-shop\n"
                                "kafka:\n"
                                "  bootstrap.servers: kafka1:9092,kafka2:9092\n"
                                "  group:\n"
                                "    id: cx\n"
                                "  security.protocol: sasl_ssl\n"
                                "  sasl:\n"
                                "    mechanisms: PLAIN\n"
                                "  \"queued.min.messages\": 1000000\n"
                                "  enable.auto.commit: false\n"
                                "redis:\n"
                                "  host: redis.internal\n"
                                "  port: 6380\n"
                                "  unix_socket: /run/redis.sock\n"
                                "  user: storepulse\n"
                                "  db: 3\n"
                                "  timeout: 2500ms\n"
                                "topics:\n"
                                "  clickstream: {name: eu.clicks, format: json}\n"
                                "  checkout:\n"
                                "    name: eu.checkout\n"
                                "  shipment.name: eu.shipments\n"
                                "  support:\n"
                                "    format: json\n"
                                "  deadletter: eu.dlq\n"
                                "  alerts: eu.alerts\n"
                                "schemas:\n"
                                "  dir: /etc/storepulse/schemas\n"
                                "  ids:\n"
                                "    7: {stream: checkout, file: checkout-v2.avsc}\n"
                                "    11: {stream: clickstream}\n"
                                "    12: {stream: support, file: /opt/support.avsc}\n"
                                "windows:\n"
                                "  ttl: {30s: 1d, 15m: 14d}\n"
                                "  sizes: [30s, 5m, 15m, 1h, 1d]\n"
                                "  timezone: Europe/Warsaw\n"
                                "  max_out_of_orderness: 10s\n"
                                "  allowed_lateness: 2m\n"
                                "  idle_timeout: 45000\n"
                                "metrics:\n"
                                "  max_dimension_values: 32\n"
                                "  funnel: {dimensions: [country, device]}\n"
                                "store:\n"
                                "  currency: PLN\n"
                                "dedup.max_ids: 500000\n"
                                "state:\n"
                                "  ttl: 3d\n"
                                "  cache_max: 250000\n"
                                "pipeline:\n"
                                "  batch_max: 5000\n"
                                "  batch_timeout: 50ms\n"
                                "  shutdown_timeout: 20s\n"
                                "embedded:\n"
                                "  partitions: 32\n"
                                "log:\n"
                                "  level: debug\n"
                                "alerts:\n"
                                "  - name: conversion_drop\n"
                                "    metric: funnel.conversion_rate\n"
                                "    window: 5m\n"
                                "    below: 0.015\n";

static void check_full(const sp_config_t *c) {
    assert_string_equal(c->ns, "eu-shop");
    assert_string_equal(sp_config_kafka_get(c, "bootstrap.servers"), "kafka1:9092,kafka2:9092");
    assert_string_equal(sp_config_kafka_get(c, "group.id"), "cx");
    assert_string_equal(sp_config_kafka_get(c, "security.protocol"), "sasl_ssl");
    assert_string_equal(sp_config_kafka_get(c, "sasl.mechanisms"), "PLAIN");
    assert_string_equal(sp_config_kafka_get(c, "queued.min.messages"), "1000000");
    assert_string_equal(sp_config_kafka_get(c, "enable.auto.commit"), "false");
    assert_int_equal(c->kafka_cnt, 6);
    assert_string_equal(c->redis_host, "redis.internal");
    assert_int_equal(c->redis_port, 6380);
    assert_string_equal(c->redis_unix_socket, "/run/redis.sock");
    assert_string_equal(c->redis_user, "storepulse");
    assert_int_equal(c->redis_db, 3);
    assert_int_equal(c->redis_timeout_ms, 2500);
    assert_string_equal(c->topics[SP_STREAM_CLICKSTREAM].name, "eu.clicks");
    assert_int_equal(c->topics[SP_STREAM_CLICKSTREAM].format, SP_FORMAT_JSON);
    assert_string_equal(c->topics[SP_STREAM_CHECKOUT].name, "eu.checkout");
    assert_int_equal(c->topics[SP_STREAM_CHECKOUT].format, SP_FORMAT_AVRO);
    assert_string_equal(c->topics[SP_STREAM_SHIPMENT].name, "eu.shipments");
    assert_string_equal(c->topics[SP_STREAM_SUPPORT].name, "store.support");
    assert_int_equal(c->topics[SP_STREAM_SUPPORT].format, SP_FORMAT_JSON);
    assert_string_equal(c->topic_deadletter, "eu.dlq");
    assert_string_equal(c->topic_alerts, "eu.alerts");
    assert_string_equal(c->schemas_dir, "/etc/storepulse/schemas");
    assert_int_equal(c->schema_cnt, 3);
    assert_int_equal(c->schemas[0].id, 7);
    assert_int_equal(c->schemas[0].stream, SP_STREAM_CHECKOUT);
    assert_string_equal(c->schemas[0].path, "/etc/storepulse/schemas/checkout-v2.avsc");
    assert_int_equal(c->schemas[1].id, 11);
    assert_int_equal(c->schemas[1].stream, SP_STREAM_CLICKSTREAM);
    assert_string_equal(c->schemas[1].path, "/etc/storepulse/schemas/clickstream.avsc");
    assert_int_equal(c->schemas[2].id, 12);
    assert_string_equal(c->schemas[2].path, "/opt/support.avsc");
    /* ttl given before sizes; 5m, 1h, 1d keep their defaults */
    assert_int_equal(c->window_cnt, 5);
    assert_int_equal(c->window_ms[0], 30000);
    assert_int_equal(c->window_ttl_ms[0], 86400000);
    assert_int_equal(c->window_ms[1], 300000);
    assert_int_equal(c->window_ttl_ms[1], 7 * 86400000LL);
    assert_int_equal(c->window_ms[2], 900000);
    assert_int_equal(c->window_ttl_ms[2], 14 * 86400000LL);
    assert_int_equal(c->window_ms[3], 3600000);
    assert_int_equal(c->window_ttl_ms[3], 35 * 86400000LL);
    assert_int_equal(c->window_ms[4], 86400000);
    assert_int_equal(c->window_ttl_ms[4], 400 * 86400000LL);
    assert_string_equal(c->timezone, "Europe/Warsaw");
    assert_int_equal(c->max_out_of_orderness_ms, 10000);
    assert_int_equal(c->allowed_lateness_ms, 120000);
    assert_int_equal(c->idle_timeout_ms, 45000);
    assert_int_equal(c->max_dimension_values, 32);
    assert_int_equal(c->funnel_dims.cnt, 2);
    assert_int_equal(c->funnel_dims.f[0], SP_S_COUNTRY);
    assert_int_equal(c->funnel_dims.f[1], SP_S_DEVICE);
    assert_string_equal(c->currency, "PLN");
    assert_int_equal(c->dedup_max_ids, 500000);
    assert_int_equal(c->state_ttl_ms, 3 * 86400000LL);
    assert_int_equal(c->state_cache_max, 250000);
    assert_int_equal(c->batch_max, 5000);
    assert_int_equal(c->batch_timeout_ms, 50);
    assert_int_equal(c->shutdown_timeout_ms, 20000);
    assert_int_equal(c->partitions, 32);
    assert_string_equal(c->log_level, "debug");
}

static void test_full_file(void **state) {
    sp_config_t c;
    char err[512] = "";
    const char *path = write_tmp(full_yaml);
    (void)state;

    assert_int_equal(sp_config_load(&c, path, err, sizeof(err)), SP_OK);
    assert_string_equal(err, "");
    assert_string_equal(c.source, path);
    check_full(&c);
}

static void test_window_ttl_fallback(void **state) {
    sp_config_t c;
    char err[512] = "";
    (void)state;

    /* sizes not in the defaults take the TTL of the largest default size
     * below them (or the smallest one's); an empty schema map is allowed */
    assert_int_equal(sp_config_load(&c,
                                    write_tmp("windows: {sizes: [10s, 1m, 10m, 2h, 2d]}\n"
                                              "schemas: {ids: {}}\n"
                                              "metrics: {funnel: {dimensions: []}}\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_int_equal(c.window_cnt, 5);
    assert_int_equal(c.window_ttl_ms[0], 2 * 86400000LL);
    assert_int_equal(c.window_ttl_ms[1], 2 * 86400000LL);
    assert_int_equal(c.window_ttl_ms[2], 7 * 86400000LL);
    assert_int_equal(c.window_ttl_ms[3], 35 * 86400000LL);
    assert_int_equal(c.window_ttl_ms[4], 400 * 86400000LL);
    assert_int_equal(c.schema_cnt, 0);
    assert_int_equal(c.funnel_dims.cnt, 0);
}

typedef struct err_case {
    const char *yaml;
    const char *expect; /* after "FILE:" */
    bool prefix;        /* expect is only the start of the message */
} err_case_t;

static const err_case_t err_cases[] = {
    /* unknown keys */
    {"nmespace: x\n", "1: key 'nmespace': unknown key", false},
    {"redis:\n  host: a\n  hots: b\n", "3: key 'redis.hots': unknown key", false},
    {"topics:\n  clickstream:\n    nam: x\n", "3: key 'topics.clickstream.nam': unknown key",
     false},
    {"windows.size: [1m]\n", "1: key 'windows.size': unknown key", false},
    {"redis:\n  port: 1\n  port: 2\n", "3: key 'redis.port': given twice", false},
    /* wrong types */
    {"redis: 5\n", "1: key 'redis': expected a mapping, got a scalar", false},
    {"redis:\n  port:\n    - 1\n", "3: key 'redis.port': expected a scalar, got a list", false},
    {"redis:\n  port: abc\n", "2: key 'redis.port': expected an integer in [1, 65535], got 'abc'",
     false},
    {"redis:\n  port: 70000\n",
     "2: key 'redis.port': expected an integer in [1, 65535], got '70000'", false},
    {"pipeline:\n  batch_max: 0\n",
     "2: key 'pipeline.batch_max': expected an integer in [1, 10000000], got '0'", false},
    {"dedup:\n  max_ids: -1\n", "2: key 'dedup.max_ids': expected an integer >= 1, got '-1'",
     false},
    {"namespace: [a]\n", "1: key 'namespace': expected a scalar, got a list", false},
    {"namespace: \"a{b}\"\n",
     "1: key 'namespace': 'a{b}': only letters, digits, '_', '-' and '.' are allowed", false},
    {"store:\n  currency: usd\n",
     "2: key 'store.currency': 'usd' is not an ISO 4217 code (three upper-case letters)", false},
    {"topics:\n  deadletter: \"\"\n", "2: key 'topics.deadletter': must not be empty", false},
    {"topics:\n  alerts: a/b\n", "2: key 'topics.alerts': 'a/b' is not a valid Kafka topic name",
     false},
    {"windows:\n  timezone: ../etc/passwd\n",
     "2: key 'windows.timezone': '../etc/passwd' is not an IANA time zone name", false},
    /* durations */
    {"redis:\n  timeout: 5x\n",
     "2: key 'redis.timeout': expected a duration (250ms, 5s, 10m, 1h, 2d or milliseconds), got "
     "'5x'",
     false},
    {"redis:\n  timeout: 0\n", "2: key 'redis.timeout': duration must be at least 1ms, got '0'",
     false},
    /* windows */
    {"windows:\n  sizes: [1m, 1h, 5m]\n",
     "2: key 'windows.sizes': sizes must be ascending: 5m after 1h", false},
    {"windows:\n  sizes:\n    - 2m\n    - 5m\n",
     "4: key 'windows.sizes': each size must be a multiple of the previous one: 5m after 2m",
     false},
    {"windows:\n  sizes: []\n", "2: key 'windows.sizes': at least one window size is needed",
     false},
    {"windows:\n  sizes: [1m, 0]\n", "2: key 'windows.sizes': window size must be positive", false},
    {"windows:\n  sizes: [1s, 2s, 4s, 8s, 16s, 32s, 64s, 128s, 256s]\n",
     "2: key 'windows.sizes': too many window sizes (max 8)", false},
    {"windows:\n  sizes: {a: 1}\n", "2: key 'windows.sizes': expected a list, got a mapping",
     false},
    {"windows:\n  ttl:\n    1m: 2d\n    15m: 7d\n",
     "4: key 'windows.ttl': no window of size 15m in windows.sizes", false},
    {"windows:\n  ttl: {1h: 30m}\n", "2: key 'windows.ttl': ttl of 1h is shorter than the window",
     false},
    {"windows:\n  ttl: {1h: forever}\n",
     "2: key 'windows.ttl': expected a duration (250ms, 5s, 10m, 1h, 2d or milliseconds), got "
     "'forever'",
     false},
    /* enums */
    {"topics:\n  checkout:\n    format: xml\n",
     "3: key 'topics.checkout.format': expected one of avro, json, got 'xml'", false},
    {"log:\n  level: verbose\n",
     "2: key 'log.level': expected one of error, warn, info, debug, got 'verbose'", false},
    /* dimensions */
    {"metrics:\n  funnel:\n    dimensions: [channel, os]\n",
     "3: key 'metrics.funnel.dimensions': unknown dimension 'os' (expected channel, device, "
     "country)",
     false},
    {"metrics:\n  funnel:\n    dimensions: [device, device]\n",
     "3: key 'metrics.funnel.dimensions': dimension 'device' given twice", false},
    /* schemas */
    {"schemas:\n  ids:\n    1: {stream: clicks}\n",
     "3: key 'schemas.ids.1.stream': unknown stream 'clicks' (expected clickstream, checkout, "
     "shipment or support)",
     false},
    {"schemas:\n  ids:\n    1: {file: a.avsc}\n", "3: key 'schemas.ids.1': 'stream' is required",
     false},
    {"schemas:\n  ids:\n    x: {stream: support}\n",
     "3: key 'schemas.ids': schema id must be an integer >= 0, got 'x'", false},
    {"schemas:\n  ids:\n    1: {stream: support}\n    1: {stream: checkout}\n",
     "4: key 'schemas.ids': schema id 1 given twice", false},
    {"schemas:\n  ids:\n    1: {stream: support, path: x}\n",
     "3: key 'schemas.ids.1.path': unknown key (expected stream, file)", false},
    {"schemas:\n  ids:\n    1: support.avsc\n",
     "3: key 'schemas.ids.1': expected a mapping, got a scalar", false},
    /* kafka */
    {"kafka:\n  bootstrap.servres: x\n",
     "2: key 'kafka.bootstrap.servres': librdkafka: No such configuration property", true},
    {"kafka:\n  acks: sometimes\n", "2: key 'kafka.acks': librdkafka: Invalid value", true},
    {"kafka: [a]\n", "1: key 'kafka': expected a mapping, got a list", false},
    {"\"kafka.socket\":\n  timeout.mss: 5\n",
     "2: key 'kafka.socket.timeout.mss': librdkafka: ", true},
    /* YAML syntax and shape */
    {"redis:\n  host: a\n port: 1\n", "3: YAML syntax error: ", true},
    {"namespace: \"open\n", "2: YAML syntax error: ", true},
    {"- a\n- b\n", "1: the top level must be a mapping, got a list", false},
};

static void test_errors(void **state) {
    sp_config_t c;
    char err[512], expect[1024];
    (void)state;

    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
        const char *path = write_tmp(err_cases[i].yaml);
        snprintf(expect, sizeof(expect), "%s:%s", path, err_cases[i].expect);
        err[0] = '\0';
        if (sp_config_load(&c, path, err, sizeof(err)) != SP_ERR_CONFIG ||
            (err_cases[i].prefix ? strncmp(err, expect, strlen(expect)) != 0
                                 : strcmp(err, expect) != 0))
            fail_msg("case %zu (%s): got '%s', expected '%s'", i, err_cases[i].yaml, err, expect);
        unlink(path);
        tmp_cnt--;
    }
    /* a file that does not exist */
    assert_int_equal(sp_config_load(&c, "/nonexistent/sp.yaml", err, sizeof(err)), SP_ERR_CONFIG);
    assert_string_equal(err, "/nonexistent/sp.yaml: No such file or directory");
    /* a NULL errstr is allowed */
    assert_int_equal(sp_config_load(&c, "/nonexistent/sp.yaml", NULL, 0), SP_ERR_CONFIG);
}

static void test_env(void **state) {
    sp_config_t c;
    char err[512] = "";
    const char *path = write_tmp("namespace: fromfile\nredis:\n  port: 6390\n  password: filepw\n"
                                 "kafka:\n  sasl.password: filesecret\n");
    (void)state;

    setenv("STOREPULSE_NAMESPACE", "fromenv", 1);
    setenv("STOREPULSE_REDIS_PASSWORD", "s3cret", 1);
    setenv("STOREPULSE_REDIS_PORT", "6391", 1);
    setenv("STOREPULSE_REDIS_TIMEOUT", "1s", 1);
    setenv("STOREPULSE_TOPICS_CHECKOUT_FORMAT", "json", 1);
    setenv("STOREPULSE_WINDOWS_ALLOWED_LATENESS", "90000", 1);
    setenv("STOREPULSE_LOG_LEVEL", "warn", 1);
    setenv("STOREPULSE_KAFKA_SASL_PASSWORD", "kpw", 1);
    setenv("STOREPULSE_KAFKA_BOOTSTRAP_SERVERS", "b1:9092", 1);
    setenv("STOREPULSE_KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
    assert_int_equal(sp_config_load(&c, path, err, sizeof(err)), SP_OK);
    assert_string_equal(c.ns, "fromenv");
    assert_string_equal(c.redis_password, "s3cret");
    assert_int_equal(c.redis_port, 6391);
    assert_int_equal(c.redis_timeout_ms, 1000);
    assert_int_equal(c.topics[SP_STREAM_CHECKOUT].format, SP_FORMAT_JSON);
    assert_int_equal(c.allowed_lateness_ms, 90000);
    assert_string_equal(c.log_level, "warn");
    assert_string_equal(sp_config_kafka_get(&c, "sasl.password"), "kpw");
    assert_string_equal(sp_config_kafka_get(&c, "bootstrap.servers"), "b1:9092");
    assert_string_equal(sp_config_kafka_get(&c, "session.timeout.ms"), "6000");

    /* without a file: defaults + environment */
    setenv("STOREPULSE_SCHEMAS_DIR", "/srv/avsc", 1);
    assert_int_equal(sp_config_load(&c, NULL, err, sizeof(err)), SP_OK);
    assert_string_equal(c.ns, "fromenv");
    assert_string_equal(c.schemas[0].path, "/srv/avsc/clickstream.avsc");
    unsetenv("STOREPULSE_SCHEMAS_DIR");

    /* bad values name the variable */
    setenv("STOREPULSE_REDIS_PORT", "abc", 1);
    assert_int_equal(sp_config_load(&c, path, err, sizeof(err)), SP_ERR_CONFIG);
    assert_string_equal(err, "environment STOREPULSE_REDIS_PORT: key 'redis.port': expected an "
                             "integer in [1, 65535], got 'abc'");
    unsetenv("STOREPULSE_REDIS_PORT");
    setenv("STOREPULSE_STATE_TTL", "2 days", 1);
    assert_int_equal(sp_config_load(&c, NULL, err, sizeof(err)), SP_ERR_CONFIG);
    assert_string_equal(err, "environment STOREPULSE_STATE_TTL: key 'state.ttl': expected a "
                             "duration (250ms, 5s, 10m, 1h, 2d or milliseconds), got '2 days'");
    unsetenv("STOREPULSE_STATE_TTL");
    /* a variable that sets nothing is an error, with the closest one */
    setenv("STOREPULSE_REDIS_PASWORD", "x", 1);
    assert_int_equal(sp_config_load(&c, path, err, sizeof(err)), SP_ERR_CONFIG);
    assert_string_equal(err, "environment STOREPULSE_REDIS_PASWORD: no such option (did you mean "
                             "STOREPULSE_REDIS_PASSWORD? kafka properties are "
                             "STOREPULSE_KAFKA_<PROPERTY>)");
    unsetenv("STOREPULSE_REDIS_PASWORD");
    setenv("STOREPULSE_SOMETHING_ELSE", "x", 1);
    assert_int_equal(sp_config_load(&c, NULL, err, sizeof(err)), SP_ERR_CONFIG);
    assert_non_null(strstr(err, "environment STOREPULSE_SOMETHING_ELSE: no such option"));
    unsetenv("STOREPULSE_SOMETHING_ELSE");
    setenv("STOREPULSE_WINDOWS_SIZES", "[1m]", 1);
    assert_int_equal(sp_config_load(&c, NULL, err, sizeof(err)), SP_ERR_CONFIG);
    assert_string_equal(err, "environment STOREPULSE_WINDOWS_SIZES: key 'windows.sizes' can only "
                             "be set in the config file");
    unsetenv("STOREPULSE_WINDOWS_SIZES");

    /* where each value came from */
    setenv("STOREPULSE_REDIS_TIMEOUT", "2s", 1);
    assert_int_equal(sp_config_load(&c, path, err, sizeof(err)), SP_OK);
    sp_config_where(&c, "redis.port", err, sizeof(err));
    assert_true(strstr(err, ":3: key 'redis.port'") != NULL);
    sp_config_where(&c, "kafka.sasl.password", err, sizeof(err));
    assert_string_equal(err,
                        "environment STOREPULSE_KAFKA_SASL_PASSWORD: key 'kafka.sasl.password'");
    sp_config_where(&c, "redis.timeout", err, sizeof(err));
    assert_string_equal(err, "environment STOREPULSE_REDIS_TIMEOUT: key 'redis.timeout'");
    sp_config_where(&c, "windows.timezone", err, sizeof(err));
    assert_true(strstr(err, ": key 'windows.timezone' (default)") != NULL);
    unsetenv("STOREPULSE_KAFKA_SASL_PASSWORD");
    assert_int_equal(sp_config_load(&c, path, err, sizeof(err)), SP_OK);
    sp_config_where(&c, "kafka.sasl.password", err, sizeof(err));
    assert_true(strstr(err, ":6: key 'kafka.sasl.password'") != NULL);
    unsetenv("STOREPULSE_REDIS_TIMEOUT");

    setenv("STOREPULSE_KAFKA_NO_SUCH_PROP", "1", 1);
    assert_int_equal(sp_config_load(&c, NULL, err, sizeof(err)), SP_ERR_CONFIG);
    assert_true(strncmp(err,
                        "environment STOREPULSE_KAFKA_NO_SUCH_PROP: key 'kafka.no.such.prop': "
                        "librdkafka: ",
                        strlen("environment STOREPULSE_KAFKA_NO_SUCH_PROP: key "
                               "'kafka.no.such.prop': librdkafka: ")) == 0);
}

static void test_kafka(void **state) {
    sp_config_t c;
    char err[512] = "", key[32];
    (void)state;

    assert_int_equal(sp_config_load(&c,
                                    write_tmp("kafka:\n"
                                              "  bootstrap:\n"
                                              "    servers: [k1:9092, k2:9092]\n"
                                              "  \"fetch.wait.max.ms\": 50\n"
                                              "  sasl.username: user\n"
                                              "\"kafka.client.id\": sp-1\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_string_equal(sp_config_kafka_get(&c, "bootstrap.servers"), "k1:9092,k2:9092");
    assert_string_equal(sp_config_kafka_get(&c, "fetch.wait.max.ms"), "50");
    assert_string_equal(sp_config_kafka_get(&c, "sasl.username"), "user");
    assert_string_equal(sp_config_kafka_get(&c, "client.id"), "sp-1");
    assert_string_equal(sp_config_kafka_get(&c, "group.id"), "storepulse");
    assert_int_equal(c.kafka_cnt, 5);

    /* set replaces, then appends up to the maximum */
    assert_int_equal(sp_config_kafka_set(&c, "bootstrap.servers", "127.0.0.1:1234"), SP_OK);
    assert_string_equal(sp_config_kafka_get(&c, "bootstrap.servers"), "127.0.0.1:1234");
    assert_int_equal(c.kafka_cnt, 5);
    assert_int_equal(sp_config_kafka_set(&c, "", "x"), SP_ERR_INVALID);
    while (c.kafka_cnt < SP_MAX_KAFKA_PROPS) {
        snprintf(key, sizeof(key), "x.%d", c.kafka_cnt);
        assert_int_equal(sp_config_kafka_set(&c, key, "1"), SP_OK);
    }
    assert_int_not_equal(sp_config_kafka_set(&c, "one.more", "1"), SP_OK);
}

static void test_round_trip(void **state) {
    sp_config_t a, b, d;
    char err[512] = "";
    char *text, *text2;
    (void)state;

    /* the full file, printed and read back, gives the same config */
    assert_int_equal(sp_config_load(&a, write_tmp(full_yaml), err, sizeof(err)), SP_OK);
    text = print_to_string(&a);
    assert_int_equal(sp_config_load(&b, write_tmp(text), err, sizeof(err)), SP_OK);
    assert_same_config(&a, &b);
    check_full(&b);
    text2 = print_to_string(&b);
    /* the two texts differ only in their "# source:" line */
    assert_string_equal(strchr(strstr(text, "# source:"), '\n'),
                        strchr(strstr(text2, "# source:"), '\n'));
    free(text);
    free(text2);

    /* so do the defaults, and strings that need quoting */
    sp_config_defaults(&d);
    text = print_to_string(&d);
    assert_int_equal(sp_config_load(&b, write_tmp(text), err, sizeof(err)), SP_OK);
    assert_same_config(&d, &b);
    free(text);
    assert_int_equal(sp_config_load(&a,
                                    write_tmp("redis:\n  user: \"we: \\\"ird\\\" # \\\\ \\t\"\n"
                                              "kafka:\n  client.id: \"a: b #c\"\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_string_equal(a.redis_user, "we: \"ird\" # \\ \t");
    text = print_to_string(&a);
    assert_int_equal(sp_config_load(&b, write_tmp(text), err, sizeof(err)), SP_OK);
    assert_same_config(&a, &b);
    free(text);

    /* found by fuzz_config: characters YAML folds as line breaks (\N \L \P),
     * C1 controls and U+FEFF/U+FFFF must print escaped, or they read back
     * as spaces or do not load at all */
    assert_int_equal(sp_config_load(&a,
                                    write_tmp("redis:\n  user: \"a\\Nb\\Lc\\Pd\\x80e\\x9ff"
                                              "\\uFEFFg\\uFFFFh\\u00e9\\u20ac\"\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_string_equal(a.redis_user, "a\xc2\x85"
                                      "b\xe2\x80\xa8"
                                      "c\xe2\x80\xa9"
                                      "d\xc2\x80"
                                      "e\xc2\x9f"
                                      "f\xef\xbb\xbf"
                                      "g\xef\xbf\xbf"
                                      "h\xc3\xa9\xe2\x82\xac");
    text = print_to_string(&a);
    assert_int_equal(sp_config_load(&b, write_tmp(text), err, sizeof(err)), SP_OK);
    assert_same_config(&a, &b);
    assert_non_null(strstr(
        text, "a\\u0085b\\u2028c\\u2029d\\u0080e\\u009ff\\ufeffg\\uffffh\xc3\xa9\xe2\x82\xac\""));
    free(text);
}

/* What a SIGHUP reload names as needing a restart: the options whose
 * values differ (secrets compared, not shown; the alert rules aside). */
static void test_diff(void **state) {
    static sp_config_t a, b;
    char err[512] = "", names[256];
    (void)state;
    sp_config_defaults(&a);
    sp_config_defaults(&b);
    assert_int_equal(sp_config_load(&a,
                                    write_tmp("pipeline: {batch_max: 500}\n"
                                              "alerts: [{name: x, metric: funnel.orders, "
                                              "above: 1}]\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_int_equal(
        sp_config_load(&b, write_tmp("pipeline: {batch_max: 500}\n"), err, sizeof(err)), SP_OK);
    assert_int_equal(sp_config_diff(&a, &b, names, sizeof(names)), 0);
    assert_string_equal(names, "");
    sp_config_defaults(&b);
    assert_int_equal(sp_config_load(&b,
                                    write_tmp("pipeline: {batch_max: 600}\n"
                                              "redis: {password: s3cret}\n"
                                              "kafka: {linger.ms: 7}\n"
                                              "log: {file: /tmp/x.log}\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_int_equal(sp_config_diff(&a, &b, names, sizeof(names)), 4);
    assert_non_null(strstr(names, "pipeline.batch_max"));
    assert_non_null(strstr(names, "redis.password"));
    assert_non_null(strstr(names, "kafka"));
    assert_non_null(strstr(names, "log.file"));
    assert_null(strstr(names, "s3cret"));
}

static void test_redaction(void **state) {
    sp_config_t c;
    char err[512] = "";
    char *text;
    (void)state;

    setenv("STOREPULSE_REDIS_PASSWORD", "hunter2-redis", 1);
    setenv("STOREPULSE_KAFKA_SASL_PASSWORD", "hunter2-sasl", 1);
    assert_int_equal(sp_config_load(&c,
                                    write_tmp("kafka:\n"
                                              "  sasl.username: alice\n"
                                              "  ssl.key.password: hunter2-key\n"
                                              "  ssl.keystore.password: hunter2-ks\n"
                                              "  ssl.key.location: /etc/ssl/sp.key\n"),
                                    err, sizeof(err)),
                     SP_OK);
    assert_string_equal(c.redis_password, "hunter2-redis");
    text = print_to_string(&c);
    assert_null(strstr(text, "hunter2"));
    assert_non_null(strstr(text, "  password: \"<redacted>\"\n"));
    assert_non_null(strstr(text, "  \"sasl.password\": \"<redacted>\"\n"));
    assert_non_null(strstr(text, "  \"ssl.key.password\": \"<redacted>\"\n"));
    assert_non_null(strstr(text, "  \"ssl.keystore.password\": \"<redacted>\"\n"));
    assert_non_null(strstr(text, "  \"sasl.username\": \"alice\"\n"));
    assert_non_null(strstr(text, "  \"ssl.key.location\": \"/etc/ssl/sp.key\"\n"));
    free(text);

    assert_string_equal(sp_config_redacted("redis.password", "x"), "<redacted>");
    assert_string_equal(sp_config_redacted("redis.password", ""), "");
    assert_string_equal(sp_config_redacted("kafka.sasl.password", "x"), "<redacted>");
    assert_string_equal(sp_config_redacted("kafka.ssl.key.pem", "x"), "<redacted>");
    assert_string_equal(sp_config_redacted("kafka.sasl.oauthbearer.client.secret", "x"),
                        "<redacted>");
    assert_string_equal(sp_config_redacted("kafka.sasl.username", "x"), "x");
    assert_string_equal(sp_config_redacted("redis.host", "x"), "x");
    assert_string_equal(sp_config_redacted("namespace", "x"), "x");

    /* an empty secret is shown as empty */
    sp_config_defaults(&c);
    text = print_to_string(&c);
    assert_non_null(strstr(text, "  password: \"\"\n"));
    free(text);
}

/* deploy/storepulse.yaml documents the defaults: it must load to them. */
static void test_example_file(void **state) {
    sp_config_t c, d;
    char err[512] = "";
    (void)state;

    if (access("deploy/storepulse.yaml", R_OK) != 0) skip();
    if (sp_config_load(&c, "deploy/storepulse.yaml", err, sizeof(err)) != SP_OK)
        fail_msg("%s", err);
    sp_config_defaults(&d);
    assert_same_config(&c, &d);
}

/* docs/CONFIG.md is the generated reference, kept up to date. */
static void test_reference(void **state) {
    FILE *fp = tmpfile(), *doc;
    char *gen, *text;
    (void)state;

    assert_non_null(fp);
    sp_config_print_reference(fp);
    rewind(fp);
    gen = slurp(fp);
    fclose(fp);
    assert_non_null(strstr(gen, "| `windows.sizes` | list of durations | `[1m, 5m, 1h, 1d]` |"));
    assert_non_null(strstr(gen, "`STOREPULSE_REDIS_PASSWORD`"));
    if (!(doc = fopen("docs/CONFIG.md", "r"))) {
        free(gen);
        skip();
    }
    text = slurp(doc);
    fclose(doc);
    if (strcmp(text, gen) != 0)
        fail_msg("docs/CONFIG.md differs from sp_config_print_reference(): regenerate it");
    free(text);
    free(gen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_duration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_ttl_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_example_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
