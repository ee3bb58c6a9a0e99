/* test_gen.c -- the traffic generator and the embedded broker.
 *
 * Generator: determinism (same seed => same bytes), Confluent framing and
 * schema ids, Avro bodies decoded back with avro-c (exact length, funnel
 * invariants per session, event-time order), JSON bodies parsed back.
 * Broker: a mock cluster started in-process takes 100 messages from a plain
 * producer and gives them back to a group consumer; kcat (if installed)
 * lists the topics; `storepulse gen` runs against it and exits 0.
 * Runs from the source directory (ctest sets it) to find schemas/. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <avro.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/broker.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/event.h"
#include "producers/gen.h"

#define START_MS 1760000000000LL /* 2025-10-09 */

static sp_config_t *test_config(void) {
    sp_config_t *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    sp_config_defaults(cfg);
    /* Pin what the tests rely on, whatever the defaults become. */
    snprintf(cfg->topics[SP_STREAM_CLICKSTREAM].name, sizeof(cfg->topics[0].name), "%s",
             "store.clickstream");
    snprintf(cfg->topics[SP_STREAM_CHECKOUT].name, sizeof(cfg->topics[0].name), "%s",
             "store.checkout");
    for (int i = 0; i < SP_STREAM__COUNT; i++)
        cfg->topics[i].format = SP_FORMAT_AVRO;
    snprintf(cfg->schemas_dir, sizeof(cfg->schemas_dir), "%s", "schemas");
    cfg->schema_cnt = 2;
    cfg->schemas[0] = (sp_schema_conf_t){.id = 7, .stream = SP_STREAM_CLICKSTREAM};
    snprintf(cfg->schemas[0].path, sizeof(cfg->schemas[0].path), "%s", "clickstream.avsc");
    cfg->schemas[1] = (sp_schema_conf_t){.id = 300, .stream = SP_STREAM_CHECKOUT};
    snprintf(cfg->schemas[1].path, sizeof(cfg->schemas[1].path), "%s", "schemas/checkout.avsc");
    cfg->partitions = 4;
    return cfg;
}

/* A low rate makes a cold start reach the whole funnel within few messages
 * (sessions last minutes of event time, whatever the rate). */
static sp_gen_t *new_gen_opts(const sp_config_t *cfg, uint64_t seed, double rate, double dups,
                              int format, int warm) {
    sp_gen_opts_t o = {.seed = seed,
                       .start_ms = START_MS,
                       .rate = rate,
                       .duplicates = dups,
                       .format = (sp_format_t)format,
                       .warm_start = warm};
    char errstr[256] = "";
    sp_gen_t *g = sp_gen_new(cfg, &o, errstr, sizeof(errstr));
    if (!g) fprintf(stderr, "sp_gen_new: %s\n", errstr);
    assert_non_null(g);
    return g;
}

static sp_gen_t *new_gen(const sp_config_t *cfg, uint64_t seed, double dups, int format) {
    return new_gen_opts(cfg, seed, 20, dups, format, 0);
}

static void test_determinism(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *a = new_gen(cfg, 42, 0.05, -1), *b = new_gen(cfg, 42, 0.05, -1);
    sp_gen_t *c = new_gen(cfg, 43, 0.05, -1);
    int differ = 0;

    for (int i = 0; i < 5000; i++) {
        sp_stream_t sa, sb, sc;
        const void *ka, *kb, *kc, *va, *vb, *vc;
        size_t kla, klb, klc, vla, vlb, vlc;
        int64_t ta, tb, tc;
        assert_int_equal(sp_gen_next(a, &sa, &ka, &kla, &va, &vla, &ta), 0);
        assert_int_equal(sp_gen_next(b, &sb, &kb, &klb, &vb, &vlb, &tb), 0);
        assert_int_equal(sp_gen_next(c, &sc, &kc, &klc, &vc, &vlc, &tc), 0);
        assert_int_equal(sa, sb);
        assert_int_equal(ta, tb);
        assert_int_equal(kla, klb);
        assert_int_equal(vla, vlb);
        assert_memory_equal(ka, kb, kla);
        assert_memory_equal(va, vb, vla);
        if (vla != vlc || memcmp(va, vc, vla) != 0) differ++;
    }
    assert_true(differ > 4000); /* another seed, other traffic */
    sp_gen_destroy(a);
    sp_gen_destroy(b);
    sp_gen_destroy(c);
    sp_gen_destroy(NULL);
    free(cfg);
}

/* ---- decoding back ------------------------------------------------------ */

typedef struct decoder {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    avro_reader_t reader;
} decoder_t;

static void decoder_init(decoder_t *d, const char *path) {
    FILE *f = fopen(path, "rb");
    char buf[8192];
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(avro_schema_from_json_length(buf, n, &d->schema), 0);
    d->iface = avro_generic_class_from_schema(d->schema);
    assert_int_equal(avro_generic_value_new(d->iface, &d->value), 0);
    d->reader = avro_reader_memory(buf, 0);
}

static void decoder_free(decoder_t *d) {
    avro_reader_free(d->reader);
    avro_value_decref(&d->value);
    avro_value_iface_decref(d->iface);
    avro_schema_decref(d->schema);
}

/* String field (NULL if a null union branch) into out. */
static const char *get_str(avro_value_t *rec, const char *name, char *out, size_t size) {
    avro_value_t f, b;
    const char *s;
    size_t n;
    assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
    if (avro_value_get_type(&f) == AVRO_UNION) {
        assert_int_equal(avro_value_get_current_branch(&f, &b), 0);
        if (avro_value_get_type(&b) == AVRO_NULL) return NULL;
        f = b;
    }
    assert_int_equal(avro_value_get_string(&f, &s, &n), 0);
    assert_true(n >= 1 && n <= size);
    memcpy(out, s, n); /* n includes the NUL */
    return out;
}

static int64_t get_long(avro_value_t *rec, const char *name) {
    avro_value_t f;
    int64_t l;
    int32_t i;
    assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
    if (avro_value_get_type(&f) == AVRO_INT32) {
        assert_int_equal(avro_value_get_int(&f, &i), 0);
        return i;
    }
    assert_int_equal(avro_value_get_long(&f, &l), 0);
    return l;
}

static int get_enum(avro_value_t *rec) {
    avro_value_t f;
    int v;
    assert_int_equal(avro_value_get_by_name(rec, "type", &f, NULL), 0);
    assert_int_equal(avro_value_get_enum(&f, &v), 0);
    return v;
}

/* Per-session facts, by the session number in "s-<seed>-<n>". */
typedef struct sess {
    int64_t last_time;
    int checkout_started, ordered, carted;
    char channel[32];
} sess_t;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_avro_funnel(void **state) {
    (void)state;
    enum { N = 60000 };
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen(cfg, 7, 0.0, -1);
    decoder_t dc, dk;
    sess_t *sessions = calloc(1 << 20, sizeof(sess_t));
    char **ids = calloc(N, sizeof(char *));
    int64_t prev_time = 0;
    uint64_t per_type[SP_T__COUNT] = {0}, n_sessions = 0, web = 0;
    uint64_t guest_orders = 0, orders = 0;

    assert_non_null(sessions);
    assert_non_null(ids);
    decoder_init(&dc, "schemas/clickstream.avsc");
    decoder_init(&dk, "schemas/checkout.avsc");

    for (int i = 0; i < N; i++) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen, sz;
        int64_t et, t;
        const unsigned char *v;
        decoder_t *d;
        char eid[64], sid[64], cid[64], oid[64], ch[32], dev[32], ctry[8], keybuf[64];
        const char *has_cid;
        unsigned long sn;
        int type;
        sess_t *s;

        assert_int_equal(sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et), 0);
        v = val;
        assert_true(vallen > 5);
        assert_int_equal(v[0], 0);
        uint32_t id = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
        assert_true(st == SP_STREAM_CLICKSTREAM || st == SP_STREAM_CHECKOUT);
        assert_int_equal(id, st == SP_STREAM_CLICKSTREAM ? 7 : 300);
        d = st == SP_STREAM_CLICKSTREAM ? &dc : &dk;
        avro_reader_memory_set_source(d->reader, (const char *)v + 5, (int64_t)vallen - 5);
        assert_int_equal(avro_value_read(d->reader, &d->value), 0);
        assert_int_equal(avro_value_sizeof(&d->value, &sz), 0);
        assert_int_equal(sz, vallen - 5); /* no trailing bytes */

        assert_non_null(get_str(&d->value, "event_id", eid, sizeof(eid)));
        ids[i] = strdup(eid);
        t = get_long(&d->value, "event_time");
        assert_int_equal(t, et);
        assert_true(t >= prev_time); /* no duplicates: event-time order */
        prev_time = t;
        assert_true(t >= START_MS);
        type = get_enum(&d->value) + (st == SP_STREAM_CHECKOUT ? SP_T_CHECKOUT_STARTED : 0);
        per_type[type]++;
        assert_non_null(get_str(&d->value, "session_id", sid, sizeof(sid)));
        has_cid = get_str(&d->value, "customer_id", cid, sizeof(cid));
        get_str(&d->value, "channel", ch, sizeof(ch));
        get_str(&d->value, "device", dev, sizeof(dev));
        get_str(&d->value, "country", ctry, sizeof(ctry));
        assert_int_equal(strlen(ctry), 2);
        assert_true(strcmp(dev, "desktop") == 0 || strcmp(dev, "mobile") == 0 ||
                    strcmp(dev, "tablet") == 0);

        /* keys: clickstream by session, checkout by customer (session for guests) */
        assert_true(keylen < sizeof(keybuf));
        memcpy(keybuf, key, keylen);
        keybuf[keylen] = '\0';
        if (st == SP_STREAM_CLICKSTREAM || !has_cid)
            assert_string_equal(keybuf, sid);
        else
            assert_string_equal(keybuf, cid);

        assert_int_equal(sscanf(sid, "s-7-%lu", &sn), 1);
        assert_true(sn > 0 && sn < (1 << 20));
        s = &sessions[sn];
        if (s->last_time == 0) {
            n_sessions++;
            snprintf(s->channel, sizeof(s->channel), "%s", ch);
            if (strcmp(ch, "web") == 0) web++;
        } else {
            assert_true(t >= s->last_time + 2000); /* gaps 2-90 s */
            assert_true(t <= s->last_time + 90000);
            assert_string_equal(s->channel, ch); /* fixed per session */
        }
        s->last_time = t;

        if (type == SP_T_PRODUCT_VIEW || type == SP_T_ADD_TO_CART) {
            assert_non_null(get_str(&d->value, "product_id", oid, sizeof(oid)));
            assert_int_equal(oid[0], 'p');
        }
        if (type == SP_T_ADD_TO_CART) s->carted = 1;
        if (st == SP_STREAM_CHECKOUT) {
            const char *order = get_str(&d->value, "order_id", oid, sizeof(oid));
            char cur[8], reason[64];
            assert_true(get_long(&d->value, "amount_cents") > 0);
            assert_true(get_long(&d->value, "item_count") >= 1);
            get_str(&d->value, "currency", cur, sizeof(cur));
            assert_true(strcmp(cur, "USD") == 0 || strcmp(cur, "EUR") == 0 ||
                        strcmp(cur, "GBP") == 0);
            assert_true((get_str(&d->value, "failure_reason", reason, sizeof(reason)) != NULL) ==
                        (type == SP_T_PAYMENT_FAILED));
            assert_true((order != NULL) ==
                        (type == SP_T_ORDER_PLACED || type == SP_T_ORDER_CANCELLED));
            if (type == SP_T_CHECKOUT_STARTED) {
                assert_true(s->carted);
                s->checkout_started = 1;
            } else {
                assert_true(s->checkout_started);
            }
            if (type == SP_T_ORDER_PLACED) {
                assert_false(s->ordered);
                s->ordered = 1;
                orders++;
                if (!has_cid) guest_orders++;
            }
            if (type == SP_T_ORDER_CANCELLED) assert_true(s->ordered);
        }
    }

    /* event ids unique (no duplicates asked for) */
    qsort(ids, N, sizeof(ids[0]), cmp_str);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) != 0);

    /* every type shows up; the mix is plausible */
    for (int t = SP_T_PAGE_VIEW; t <= SP_T_ORDER_CANCELLED; t++) {
        if (per_type[t] == 0) fprintf(stderr, "no %s\n", sp_event_type_names[t]);
        assert_true(per_type[t] > 0);
    }
    assert_true(per_type[SP_T_ORDER_PLACED] < per_type[SP_T_CHECKOUT_STARTED]);
    assert_true(per_type[SP_T_ORDER_PLACED] * 100 > per_type[SP_T_CHECKOUT_STARTED] * 70);
    assert_true(web * 100 > n_sessions * 45 && web * 100 < n_sessions * 65);
    assert_true(guest_orders > 0 && guest_orders < orders);
    fprintf(stderr, "  %" PRIu64 " sessions, %" PRIu64 " orders (%" PRIu64 " guest)\n", n_sessions,
            orders, guest_orders);

    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(ids);
    free(sessions);
    decoder_free(&dc);
    decoder_free(&dk);
    sp_gen_destroy(g);
    free(cfg);
}

static void test_duplicates(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen(cfg, 3, 0.10, -1);
    enum { N = 20000, W = 64 };
    /* the last W messages: a duplicate repeats one of them byte for byte */
    char win[W][512];
    size_t winlen[W];
    int repeats = 0;
    sp_gen_stats_t stats;

    for (int i = 0; i < N; i++) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen;
        int64_t et;
        assert_int_equal(sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et), 0);
        assert_true(vallen < sizeof(win[0]));
        for (int j = 0; j < W && j < i; j++)
            if (winlen[j] == vallen && memcmp(win[j], val, vallen) == 0) {
                repeats++;
                break;
            }
        memcpy(win[i % W], val, vallen);
        winlen[i % W] = vallen;
    }
    sp_gen_stats(g, &stats);
    assert_int_equal((uint64_t)repeats, stats.duplicates);
    assert_true(repeats > N / 20 && repeats < N / 5); /* ~10 % of N */
    assert_int_equal(stats.messages[0] + stats.messages[1], N);
    sp_gen_destroy(g);
    free(cfg);
}

static void test_json(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen(cfg, 11, 0.0, SP_FORMAT_JSON);
    int checkout = 0;

    for (int i = 0; i < 5000; i++) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen;
        int64_t et;
        json_error_t jerr;
        json_t *o, *f;
        assert_int_equal(sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et), 0);
        o = json_loadb(val, vallen, 0, &jerr);
        if (!o) fprintf(stderr, "%.*s: %s\n", (int)vallen, (const char *)val, jerr.text);
        assert_non_null(o);
        assert_true(json_is_string(json_object_get(o, "event_id")));
        assert_true(json_is_string(json_object_get(o, "type")));
        f = json_object_get(o, "event_time");
        assert_true(json_is_integer(f));
        assert_int_equal(json_integer_value(f), et);
        assert_true(json_is_string(json_object_get(o, "session_id")));
        f = json_object_get(o, "customer_id");
        assert_true(json_is_string(f) || json_is_null(f));
        if (st == SP_STREAM_CHECKOUT) {
            checkout++;
            assert_true(json_is_integer(json_object_get(o, "amount_cents")));
            assert_true(json_is_integer(json_object_get(o, "item_count")));
            f = json_object_get(o, "order_id");
            assert_true(json_is_string(f) || json_is_null(f));
            assert_int_equal(json_object_size(o), 14);
        } else {
            assert_int_equal(json_object_size(o), 9);
        }
        json_decref(o);
    }
    assert_true(checkout > 0);
    sp_gen_destroy(g);
    free(cfg);
}

/* Warm start: steady state from the first message -- the asked rate and
 * the whole event mix at once. */
static void test_warm_start(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen_opts(cfg, 5, 1000, 0.0, -1, 1);
    uint64_t per_stream[SP_STREAM__COUNT] = {0};
    int64_t first = -1, last = 0;
    sp_gen_stats_t stats;

    for (int i = 0; i < 30000; i++) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen;
        int64_t et;
        assert_int_equal(sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et), 0);
        assert_true(et >= START_MS);
        if (first < 0) first = et;
        assert_true(et >= last);
        last = et;
        per_stream[st]++;
    }
    /* 30000 events at 1000/s: ~30 s of event time */
    fprintf(stderr, "  warm: 30000 events over %.1f s of event time, %" PRIu64 " checkout\n",
            (double)(last - START_MS) / 1000.0, per_stream[SP_STREAM_CHECKOUT]);
    assert_true(last - START_MS > 25000 && last - START_MS < 36000);
    assert_true(per_stream[SP_STREAM_CHECKOUT] > 30000 / 20);
    sp_gen_stats(g, &stats);
    assert_true(stats.sessions_in_flight > 10000);
    sp_gen_destroy(g);
    free(cfg);
}

static void test_bad_config(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = {
        .seed = 1, .start_ms = START_MS, .rate = 1000, .duplicates = 0, .format = (sp_format_t)-1};
    char errstr[256];

    snprintf(cfg->schemas[1].path, sizeof(cfg->schemas[1].path), "%s", "nope.avsc");
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "nope.avsc"));
    cfg->schema_cnt = 1; /* no checkout schema at all */
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "checkout"));
    o.format = SP_FORMAT_JSON; /* JSON needs no schema */
    sp_gen_destroy(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    o.rate = 0;
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    free(cfg);
}

/* ---- the broker ----------------------------------------------------------- */

static rd_kafka_conf_t *kconf(const char *bootstraps) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, e, sizeof(e)),
                     RD_KAFKA_CONF_OK);
    return conf;
}

static void kset(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char e[256];
    assert_int_equal(rd_kafka_conf_set(conf, k, v, e, sizeof(e)), RD_KAFKA_CONF_OK);
}

static void test_broker(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    char errstr[512], e[256], cmd[1024], line[1024];
    sp_broker_t *b = sp_broker_start(cfg, errstr, sizeof(errstr));
    rd_kafka_t *p, *c;
    rd_kafka_conf_t *conf;
    rd_kafka_topic_partition_list_t *sub;
    int got = 0, seen[100] = {0};
    int64_t deadline;

    if (!b) fprintf(stderr, "sp_broker_start: %s\n", errstr);
    assert_non_null(b);
    assert_non_null(sp_broker_mock(b));
    assert_non_null(strstr(sp_broker_bootstraps(b), "127.0.0.1:"));
    fprintf(stderr, "  bootstrap: %s\n", sp_broker_bootstraps(b));

    /* produce 100 */
    p = rd_kafka_new(RD_KAFKA_PRODUCER, kconf(sp_broker_bootstraps(b)), e, sizeof(e));
    assert_non_null(p);
    for (int i = 0; i < 100; i++) {
        char k[16], v[32];
        int vl = snprintf(v, sizeof(v), "msg-%d", i);
        snprintf(k, sizeof(k), "k%d", i % 7);
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("store.clickstream"),
                                           RD_KAFKA_V_KEY(k, strlen(k)), RD_KAFKA_V_VALUE(v, vl),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);

    /* topics exist with the configured partition count */
    {
        const struct rd_kafka_metadata *md;
        rd_kafka_t *m =
            rd_kafka_new(RD_KAFKA_PRODUCER, kconf(sp_broker_bootstraps(b)), e, sizeof(e));
        int found = 0;
        assert_non_null(m);
        assert_int_equal(rd_kafka_metadata(m, 1, NULL, &md, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(md->broker_cnt, SP_BROKER_COUNT);
        for (int i = 0; i < md->topic_cnt; i++) {
            const char *n = md->topics[i].topic;
            if (!strcmp(n, "store.clickstream") || !strcmp(n, "store.checkout") ||
                !strcmp(n, cfg->topics[SP_STREAM_SHIPMENT].name) ||
                !strcmp(n, cfg->topics[SP_STREAM_SUPPORT].name) ||
                !strcmp(n, cfg->topic_deadletter) || !strcmp(n, cfg->topic_alerts)) {
                assert_int_equal(md->topics[i].partition_cnt, 4);
                found++;
            }
        }
        assert_int_equal(found, 6);
        rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(m);
    }

    /* consume them back through a group */
    conf = kconf(sp_broker_bootstraps(b));
    kset(conf, "group.id", "test-gen");
    kset(conf, "session.timeout.ms", "6000");
    kset(conf, "heartbeat.interval.ms", "500");
    kset(conf, "auto.offset.reset", "earliest");
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    assert_non_null(c);
    rd_kafka_poll_set_consumer(c);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, "store.clickstream", RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);
    deadline = sp_clock_mono_ms() + 30000;
    while (got < 100 && sp_clock_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        sp_broker_poll(b, 0);
        if (!m) continue;
        if (!m->err) {
            int i;
            assert_int_equal(sscanf((const char *)m->payload, "msg-%d", &i), 1);
            assert_true(i >= 0 && i < 100);
            assert_int_equal(seen[i], 0);
            seen[i] = 1;
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(got, 100);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);

    /* kcat from another process */
    if (system("command -v kcat >/dev/null 2>&1") == 0) {
        FILE *f;
        int topics = 0;
        snprintf(cmd, sizeof(cmd), "kcat -L -b '%s' 2>&1", sp_broker_bootstraps(b));
        f = popen(cmd, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
            if (strstr(line, "topic \"store.clickstream\"") ||
                strstr(line, "topic \"store.checkout\"") ||
                strstr(line, "topic \"storepulse.deadletter\""))
                topics++;
        assert_int_equal(pclose(f), 0);
        assert_int_equal(topics, 3);
    } else {
        fprintf(stderr, "  kcat not installed: skipped the kcat listing\n");
    }

    /* `storepulse gen` against it */
    {
        char *argv[] = {"gen",
                        "--brokers",
                        (char *)sp_broker_bootstraps(b),
                        "--count",
                        "5000",
                        "--speedup",
                        "0",
                        "--start-time",
                        "1760000000000",
                        "--quiet",
                        NULL};
        assert_int_equal(sp_gen_main(10, argv), 0);
        char *bad[] = {"gen", "--rate", "-3", NULL};
        assert_int_equal(sp_gen_main(3, bad), 2);
    }

    sp_broker_stop(b);
    sp_broker_stop(NULL);
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism), cmocka_unit_test(test_avro_funnel),
        cmocka_unit_test(test_duplicates),  cmocka_unit_test(test_json),
        cmocka_unit_test(test_warm_start),  cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
