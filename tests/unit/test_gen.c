/* test_gen.c -- the traffic generator and the embedded broker.
 *
 * Generator: determinism (same seed => same bytes, all four streams, with an
 * incident), Confluent framing and schema ids; every message of a five-day
 * run decoded back with avro-c against its schema (exact length) and checked
 * against SPEC §1 (required fields, enum symbols, timestamps, nullability);
 * funnel invariants per session; shipments in a plausible order, linked to
 * an order generated before them (customer, country, order time); tickets
 * linked, in a plausible order, surveys only after resolution; JSON bodies
 * parsed back; warm start; --duration (the end) and its bounds; customers
 * ordering again over two months; each incident scenario changing what it
 * should and leaving the other values alone.
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
#define MIN_MS   60000LL
#define HOUR_MS  3600000LL
#define DAY_MS   86400000LL
#define MAX_NO   (1 << 20) /* entity numbers tracked per kind */

#define SHARE(a, b) ((double)(a) / (double)((b) ? (b) : 1))

static const int32_t schema_ids[SP_STREAM__COUNT] = {7, 300, 41, 42};

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
    cfg->schema_cnt = 4;
    cfg->schemas[0] = (sp_schema_conf_t){.id = 7, .stream = SP_STREAM_CLICKSTREAM};
    snprintf(cfg->schemas[0].path, sizeof(cfg->schemas[0].path), "%s", "clickstream.avsc");
    cfg->schemas[1] = (sp_schema_conf_t){.id = 300, .stream = SP_STREAM_CHECKOUT};
    snprintf(cfg->schemas[1].path, sizeof(cfg->schemas[1].path), "%s", "schemas/checkout.avsc");
    cfg->schemas[2] = (sp_schema_conf_t){.id = 41, .stream = SP_STREAM_SHIPMENT};
    snprintf(cfg->schemas[2].path, sizeof(cfg->schemas[2].path), "%s", "shipment.avsc");
    cfg->schemas[3] = (sp_schema_conf_t){.id = 42, .stream = SP_STREAM_SUPPORT};
    snprintf(cfg->schemas[3].path, sizeof(cfg->schemas[3].path), "%s", "support.avsc");
    cfg->partitions = 4;
    return cfg;
}

static sp_gen_opts_t gen_opts(uint64_t seed, double rate) {
    sp_gen_opts_t o = {.seed = seed,
                       .start_ms = START_MS,
                       .rate = rate,
                       .duplicates = 0,
                       .format = (sp_format_t)-1};
    return o;
}

static sp_gen_t *gen_new(const sp_config_t *cfg, const sp_gen_opts_t *o) {
    char errstr[256] = "";
    sp_gen_t *g = sp_gen_new(cfg, o, errstr, sizeof(errstr));
    if (!g) fprintf(stderr, "sp_gen_new: %s\n", errstr);
    assert_non_null(g);
    return g;
}

/* A low rate makes a cold start reach the whole funnel within few messages
 * (sessions last minutes of event time, whatever the rate). */
static sp_gen_t *new_gen_opts(const sp_config_t *cfg, uint64_t seed, double rate, double dups,
                              int format, int warm) {
    sp_gen_opts_t o = gen_opts(seed, rate);
    o.duplicates = dups;
    o.format = (sp_format_t)format;
    o.warm_start = warm;
    return gen_new(cfg, &o);
}

static sp_gen_t *new_gen(const sp_config_t *cfg, uint64_t seed, double dups, int format) {
    return new_gen_opts(cfg, seed, 20, dups, format, 0);
}

typedef struct msg {
    sp_stream_t st;
    const void *key, *val;
    size_t keylen, vallen;
    int64_t et;
} msg_t;

/* Next message; 0, or 1 at the end (--duration). */
static int next(sp_gen_t *g, msg_t *m) {
    int rc = sp_gen_next(g, &m->st, &m->key, &m->keylen, &m->val, &m->vallen, &m->et);
    assert_true(rc == 0 || rc == 1);
    return rc;
}

static void check_determinism(sp_gen_t *a, sp_gen_t *b, sp_gen_t *c, int n) {
    uint64_t per_stream[SP_STREAM__COUNT] = {0};
    int differ = 0;

    for (int i = 0; i < n; i++) {
        msg_t ma, mb, mc;
        assert_int_equal(next(a, &ma), 0);
        assert_int_equal(next(b, &mb), 0);
        assert_int_equal(next(c, &mc), 0);
        assert_int_equal(ma.st, mb.st);
        assert_int_equal(ma.et, mb.et);
        assert_int_equal(ma.keylen, mb.keylen);
        assert_int_equal(ma.vallen, mb.vallen);
        assert_memory_equal(ma.key, mb.key, ma.keylen);
        assert_memory_equal(ma.val, mb.val, ma.vallen);
        if (ma.vallen != mc.vallen || memcmp(ma.val, mc.val, ma.vallen) != 0) differ++;
        per_stream[ma.st]++;
    }
    assert_true(differ > n * 8 / 10); /* another seed, other traffic */
    fprintf(stderr,
            "  %d messages: %" PRIu64 " clickstream, %" PRIu64 " checkout, %" PRIu64
            " shipment, %" PRIu64 " support\n",
            n, per_stream[0], per_stream[1], per_stream[2], per_stream[3]);
}

static void test_determinism(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *a = new_gen(cfg, 42, 0.05, -1), *b = new_gen(cfg, 42, 0.05, -1);
    sp_gen_t *c = new_gen(cfg, 43, 0.05, -1);
    sp_gen_opts_t o = gen_opts(42, 5);

    check_determinism(a, b, c, 5000);
    sp_gen_destroy(a);
    sp_gen_destroy(b);
    sp_gen_destroy(c);
    sp_gen_destroy(NULL);

    /* All four streams (warm: shipments and tickets in flight) through an
     * incident (support-backlog from the start on) */
    o.duplicates = 0.02;
    o.warm_start = 1;
    o.scenario = SP_GEN_SCENARIO_SUPPORT_BACKLOG;
    o.incident_start_ms = START_MS;
    o.incident_duration_ms = HOUR_MS;
    a = gen_new(cfg, &o);
    b = gen_new(cfg, &o);
    o.seed = 43;
    c = gen_new(cfg, &o);
    {
        msg_t m;
        uint64_t per_stream[SP_STREAM__COUNT] = {0};
        sp_gen_t *d;
        o.seed = 42;
        d = gen_new(cfg, &o);
        for (int i = 0; i < 20000; i++) {
            assert_int_equal(next(d, &m), 0);
            per_stream[m.st]++;
        }
        for (int st = 0; st < SP_STREAM__COUNT; st++)
            assert_true(per_stream[st] > 100);
        sp_gen_destroy(d);
    }
    check_determinism(a, b, c, 20000);
    sp_gen_destroy(a);
    sp_gen_destroy(b);
    sp_gen_destroy(c);
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

typedef struct decoders {
    decoder_t d[SP_STREAM__COUNT];
} decoders_t;

static void decoders_init(decoders_t *ds) {
    static const char *const paths[SP_STREAM__COUNT] = {
        "schemas/clickstream.avsc", "schemas/checkout.avsc", "schemas/shipment.avsc",
        "schemas/support.avsc"};
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        decoder_init(&ds->d[st], paths[st]);
}

static void decoders_free(decoders_t *ds) {
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        decoder_free(&ds->d[st]);
}

/* Framing (magic, the stream's schema id) and the Avro body, read back
 * whole (no trailing bytes). */
static avro_value_t *decode(decoders_t *ds, const msg_t *m) {
    const unsigned char *v = m->val;
    decoder_t *d = &ds->d[m->st];
    uint32_t id;
    size_t sz;

    assert_true(m->vallen > 5);
    assert_int_equal(v[0], 0);
    id = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
    assert_int_equal(id, schema_ids[m->st]);
    avro_reader_memory_set_source(d->reader, (const char *)v + 5, (int64_t)m->vallen - 5);
    assert_int_equal(avro_value_read(d->reader, &d->value), 0);
    assert_int_equal(avro_value_sizeof(&d->value, &sz), 0);
    assert_int_equal(sz, m->vallen - 5);
    return &d->value;
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

/* A required id or dimension: present, not empty, at most 256 bytes. */
static const char *req_str(avro_value_t *rec, const char *name, char *out, size_t size) {
    const char *s = get_str(rec, name, out, size);
    if (!s) fprintf(stderr, "required field %s is null\n", name);
    assert_non_null(s);
    assert_true(strlen(s) > 0 && strlen(s) <= 256);
    return s;
}

/* Integer (long, int or boolean), through a [null, T] union; 0 with
 * *is_null set if null. */
static int64_t get_int(avro_value_t *rec, const char *name, int *is_null) {
    avro_value_t f, b;
    int64_t l;
    int32_t i;
    int bo;
    *is_null = 0;
    assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
    if (avro_value_get_type(&f) == AVRO_UNION) {
        assert_int_equal(avro_value_get_current_branch(&f, &b), 0);
        if (avro_value_get_type(&b) == AVRO_NULL) {
            *is_null = 1;
            return 0;
        }
        f = b;
    }
    switch (avro_value_get_type(&f)) {
    case AVRO_INT32: assert_int_equal(avro_value_get_int(&f, &i), 0); return i;
    case AVRO_BOOLEAN: assert_int_equal(avro_value_get_boolean(&f, &bo), 0); return bo;
    default: assert_int_equal(avro_value_get_long(&f, &l), 0); return l;
    }
}

static int64_t get_long(avro_value_t *rec, const char *name) {
    int is_null;
    int64_t v = get_int(rec, name, &is_null);
    assert_false(is_null);
    return v;
}

/* The event type: the enum symbol, checked against the schema's symbol
 * list and mapped to sp_event_type_t. */
static sp_event_type_t get_type(avro_value_t *rec, sp_stream_t st) {
    avro_value_t f;
    avro_schema_t es;
    int v;
    assert_int_equal(avro_value_get_by_name(rec, "type", &f, NULL), 0);
    assert_int_equal(avro_value_get_enum(&f, &v), 0);
    es = avro_value_get_schema(&f);
    assert_true(v >= 0 && v < (int)avro_schema_enum_number_of_symbols(es));
    assert_true(sp_stream_first_type(st) + v < sp_stream_end_type(st));
    assert_string_equal(avro_schema_enum_get(es, v),
                        sp_event_type_names[sp_stream_first_type(st) + v]);
    return (sp_event_type_t)(sp_stream_first_type(st) + v);
}

/* The number after the last '-' of an id "x-<seed>-<n>", checked < MAX_NO. */
static unsigned long id_no(const char *id, const char *prefix) {
    char want[32];
    unsigned long n;
    snprintf(want, sizeof(want), "%s-", prefix);
    assert_int_equal(strncmp(id, want, strlen(want)), 0);
    n = strtoul(strrchr(id, '-') + 1, NULL, 10);
    assert_true(n > 0 && n < MAX_NO);
    return n;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int one_of(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static const char *const dev_names[] = {"desktop", "mobile", "tablet", NULL};
static const char *const carrier_names[] = {"dhl", "ups", "fedex", "dpd", "inpost", NULL};
static const char *const support_channel_names[] = {"chat", "email", "phone", "social", NULL};

/* Per-session facts, by the session number in "s-<seed>-<n>". */
typedef struct sess {
    int64_t last_time;
    int checkout_started, ordered, carted;
    char channel[32];
} sess_t;

/* Orders seen (ORDER_PLACED), by number. */
typedef struct order {
    int64_t time;
    char customer[64]; /* "" for guests */
    char country[8];
} order_t;

typedef struct shipment {
    int64_t last_time, promised, order_time; /* order_time -1: null */
    sp_event_type_t last;
    int events, fails;
    char carrier[32];
} shipment_t;

typedef struct ticket {
    int64_t last_time;
    int opened, resolved, surveyed, human;
    char channel[32];
} ticket_t;

/* Five days from a cold start: every message decoded and checked; sessions,
 * shipments and tickets followed through. */
static void test_avro_all_streams(void **state) {
    (void)state;
    const int64_t end = START_MS + 5 * DAY_MS;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(7, 1);
    char sp[32], op[32], shp[32], tp[32]; /* id prefixes: "s-<seed in hex>" ... */
    sp_gen_t *g;
    decoders_t ds;
    sess_t *sessions = calloc(MAX_NO, sizeof(sess_t));
    order_t *orders = calloc(MAX_NO, sizeof(order_t));
    shipment_t *ships = calloc(MAX_NO, sizeof(shipment_t));
    ticket_t *tickets = calloc(MAX_NO, sizeof(ticket_t));
    size_t ids_cap = 1 << 20, n = 0;
    char **ids = calloc(ids_cap, sizeof(char *));
    int64_t prev_time = 0;
    uint64_t per_type[SP_T__COUNT] = {0}, n_sessions = 0, web = 0;
    uint64_t guest_orders = 0, n_orders = 0, n_ships = 0, late = 0, breaches = 0, dispatched = 0;
    uint64_t no_order_time = 0, lost = 0, bot_replies = 0, partial_surveys = 0, linked_tickets = 0;
    uint64_t n_tickets = 0, bot_only = 0;
    sp_gen_stats_t stats;
    msg_t m;

    assert_non_null(sessions);
    assert_non_null(orders);
    assert_non_null(ships);
    assert_non_null(tickets);
    assert_non_null(ids);
    o.duration_ms = end - START_MS;
    g = gen_new(cfg, &o);
    decoders_init(&ds);
    snprintf(sp, sizeof(sp), "s-%" PRIx64, o.seed);
    snprintf(op, sizeof(op), "o-%" PRIx64, o.seed);
    snprintf(shp, sizeof(shp), "sh-%" PRIx64, o.seed);
    snprintf(tp, sizeof(tp), "t-%" PRIx64, o.seed);

    while (next(g, &m) == 0) {
        avro_value_t *v = decode(&ds, &m);
        char eid[64], sid[64], cid[64], oid[64], ch[32], dev[32], ctry[8], keybuf[64], buf[64];
        const char *has_cid, *has_oid;
        sp_event_type_t type;
        unsigned long sn;
        int64_t t;

        /* common: event_id unique, event_time in order and in range */
        req_str(v, "event_id", eid, sizeof(eid));
        assert_true(n < ids_cap);
        ids[n++] = strdup(eid);
        t = get_long(v, "event_time");
        assert_int_equal(t, m.et);
        assert_true(t >= prev_time); /* no duplicates: event-time order */
        prev_time = t;
        assert_true(t >= START_MS && t < end);
        type = get_type(v, m.st);
        per_type[type]++;
        has_cid = get_str(v, "customer_id", cid, sizeof(cid));
        if (has_cid) assert_int_equal(cid[0], 'c');
        assert_true(m.keylen < sizeof(keybuf));
        memcpy(keybuf, m.key, m.keylen);
        keybuf[m.keylen] = '\0';

        if (m.st == SP_STREAM_SHIPMENT) {
            shipment_t *s;
            order_t *od;
            int null_ot;
            int64_t ot, promised;
            req_str(v, "shipment_id", sid, sizeof(sid));
            req_str(v, "order_id", oid, sizeof(oid));
            assert_string_equal(keybuf, oid); /* keyed by order_id */
            req_str(v, "carrier", ch, sizeof(ch));
            assert_true(one_of(ch, carrier_names));
            req_str(v, "country", ctry, sizeof(ctry));
            promised = get_long(v, "promised_delivery_time");
            ot = get_int(v, "order_placed_time", &null_ot);
            od = &orders[id_no(oid, op)];
            assert_true(od->time > 0); /* an order generated before */
            assert_string_equal(od->customer, has_cid ? cid : "");
            assert_string_equal(od->country, ctry);
            assert_true(promised >= od->time + 2 * DAY_MS &&
                        promised <= od->time + 5 * DAY_MS + HOUR_MS);
            assert_int_equal(promised % HOUR_MS, 0); /* on the hour */
            if (!null_ot) assert_int_equal(ot, od->time);
            s = &ships[id_no(sid, shp)];
            if (s->events == 0) {
                assert_int_equal(type, SP_T_LABEL_CREATED);
                n_ships++;
                s->promised = promised;
                s->order_time = null_ot ? -1 : ot;
                snprintf(s->carrier, sizeof(s->carrier), "%s", ch);
                if (null_ot) no_order_time++;
            } else {
                assert_true(t > s->last_time);
                if (s->last == SP_T_DISPATCHED || s->last == SP_T_IN_TRANSIT)
                    assert_true(t - s->last_time <= 26 * HOUR_MS); /* news every day */
                assert_int_equal(s->promised, promised);           /* fixed per shipment */
                assert_true(s->order_time == (null_ot ? -1 : ot));
                assert_string_equal(s->carrier, ch);
                switch (type) {
                case SP_T_DISPATCHED: assert_int_equal(s->last, SP_T_LABEL_CREATED); break;
                case SP_T_IN_TRANSIT:
                    assert_true(s->last == SP_T_DISPATCHED || s->last == SP_T_IN_TRANSIT);
                    break;
                case SP_T_OUT_FOR_DELIVERY:
                    assert_true(s->last == SP_T_IN_TRANSIT || s->last == SP_T_DELIVERY_FAILED);
                    break;
                case SP_T_DELIVERED:
                case SP_T_DELIVERY_FAILED: assert_int_equal(s->last, SP_T_OUT_FOR_DELIVERY); break;
                case SP_T_RETURNED:
                    assert_true(s->last == SP_T_DELIVERED ||
                                (s->last == SP_T_DELIVERY_FAILED && s->fails == 3));
                    break;
                default: fail_msg("%s after the first event", sp_event_type_names[type]);
                }
            }
            if (type == SP_T_DELIVERED && t > promised) late++;
            if (type == SP_T_DELIVERY_FAILED) s->fails++;
            if (type == SP_T_DISPATCHED) {
                dispatched++;
                if (t - od->time > DAY_MS) breaches++;
            }
            s->last = type;
            s->last_time = t;
            s->events++;
            continue;
        }

        if (m.st == SP_STREAM_SUPPORT) {
            ticket_t *tk;
            int is_null, is_bot, surveyed = 0;
            int64_t csat, nps, ces;
            req_str(v, "ticket_id", sid, sizeof(sid));
            assert_string_equal(keybuf, sid); /* keyed by ticket_id */
            req_str(v, "channel", ch, sizeof(ch));
            assert_true(one_of(ch, support_channel_names));
            has_oid = get_str(v, "order_id", oid, sizeof(oid));
            if (has_oid) {
                order_t *od = &orders[id_no(oid, op)];
                assert_true(od->time > 0 && od->time <= t);
                assert_string_equal(od->customer, has_cid ? cid : "");
            }
            is_bot = (int)get_int(v, "is_bot", &is_null);
            assert_false(is_null);
            if (is_bot) assert_int_equal(type, SP_T_AGENT_REPLIED);
            csat = get_int(v, "csat", &is_null);
            if (!is_null) {
                assert_true(csat >= 1 && csat <= 5);
                surveyed++;
            }
            nps = get_int(v, "nps", &is_null);
            if (!is_null) {
                assert_true(nps >= 0 && nps <= 10);
                surveyed++;
            }
            ces = get_int(v, "ces", &is_null);
            if (!is_null) {
                assert_true(ces >= 1 && ces <= 7);
                surveyed++;
            }
            if (type == SP_T_SURVEY_RESPONSE) {
                assert_true(surveyed >= 1);
                if (surveyed < 3) partial_surveys++;
            } else {
                assert_int_equal(surveyed, 0);
            }
            tk = &tickets[id_no(sid, tp)];
            if (!tk->opened) {
                assert_int_equal(type, SP_T_TICKET_OPENED);
                tk->opened = 1;
                n_tickets++;
                if (has_oid) linked_tickets++;
                snprintf(tk->channel, sizeof(tk->channel), "%s", ch);
            } else {
                assert_true(t > tk->last_time);
                assert_string_equal(tk->channel, ch);
                assert_false(tk->surveyed); /* the survey is the last event */
                switch (type) {
                case SP_T_AGENT_REPLIED:
                case SP_T_CUSTOMER_REPLIED: assert_false(tk->resolved); break;
                case SP_T_TICKET_RESOLVED:
                    assert_false(tk->resolved);
                    if (!tk->human) bot_only++;
                    tk->resolved = 1;
                    break;
                case SP_T_TICKET_REOPENED:
                    assert_true(tk->resolved);
                    tk->resolved = 0;
                    break;
                case SP_T_SURVEY_RESPONSE:
                    assert_true(tk->resolved);
                    tk->surveyed = 1;
                    break;
                default: fail_msg("%s twice", sp_event_type_names[type]);
                }
            }
            if (type == SP_T_AGENT_REPLIED) {
                if (is_bot) {
                    assert_false(tk->human); /* bots answer first */
                    bot_replies++;
                } else {
                    tk->human = 1;
                }
            }
            tk->last_time = t;
            continue;
        }

        /* sessions: clickstream and checkout */
        req_str(v, "session_id", sid, sizeof(sid));
        req_str(v, "channel", ch, sizeof(ch));
        req_str(v, "device", dev, sizeof(dev));
        req_str(v, "country", ctry, sizeof(ctry));
        assert_int_equal(strlen(ctry), 2);
        assert_true(one_of(dev, dev_names));

        /* keys: clickstream by session, checkout by customer (session for guests) */
        if (m.st == SP_STREAM_CLICKSTREAM || !has_cid)
            assert_string_equal(keybuf, sid);
        else
            assert_string_equal(keybuf, cid);

        sn = id_no(sid, sp);
        sess_t *s = &sessions[sn];
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
            assert_non_null(get_str(v, "product_id", buf, sizeof(buf)));
            assert_int_equal(buf[0], 'p');
        }
        if (type == SP_T_ADD_TO_CART) s->carted = 1;
        if (m.st == SP_STREAM_CHECKOUT) {
            const char *order = get_str(v, "order_id", oid, sizeof(oid));
            char cur[8], reason[64];
            assert_true(get_long(v, "amount_cents") > 0);
            assert_true(get_long(v, "item_count") >= 1);
            req_str(v, "payment_method", buf, sizeof(buf));
            req_str(v, "currency", cur, sizeof(cur));
            assert_true(strcmp(cur, "USD") == 0 || strcmp(cur, "EUR") == 0 ||
                        strcmp(cur, "GBP") == 0);
            assert_true((get_str(v, "failure_reason", reason, sizeof(reason)) != NULL) ==
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
                order_t *od = &orders[id_no(oid, op)];
                assert_false(s->ordered);
                assert_int_equal(od->time, 0); /* placed once */
                s->ordered = 1;
                od->time = t;
                snprintf(od->customer, sizeof(od->customer), "%s", has_cid ? cid : "");
                snprintf(od->country, sizeof(od->country), "%s", ctry);
                n_orders++;
                if (!has_cid) guest_orders++;
            }
            if (type == SP_T_ORDER_CANCELLED) assert_true(s->ordered);
        }
    }
    assert_int_equal(next(g, &m), 1); /* ended for good */
    assert_true(prev_time > end - HOUR_MS);

    /* event ids unique (no duplicates asked for) */
    qsort(ids, n, sizeof(ids[0]), cmp_str);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) != 0);

    /* every type shows up; the mix is plausible */
    for (int t = 0; t < SP_T__COUNT; t++) {
        if (per_type[t] == 0) fprintf(stderr, "no %s\n", sp_event_type_names[t]);
        assert_true(per_type[t] > 0);
    }
    assert_true(per_type[SP_T_ORDER_PLACED] < per_type[SP_T_CHECKOUT_STARTED]);
    assert_true(per_type[SP_T_ORDER_PLACED] * 100 > per_type[SP_T_CHECKOUT_STARTED] * 70);
    assert_true(web * 100 > n_sessions * 45 && web * 100 < n_sessions * 65);
    assert_true(guest_orders > 0 && guest_orders < n_orders);
    /* most orders ship; some deliveries late; some dispatches past 24 h;
     * some shipments lost (in transit, no news for more than 30 h) */
    assert_true(n_ships > n_orders * 80 / 100 && n_ships < n_orders);
    assert_true(late * 100 > per_type[SP_T_DELIVERED] * 3 &&
                late * 100 < per_type[SP_T_DELIVERED] * 25);
    assert_true(breaches * 100 > dispatched * 4 && breaches * 100 < dispatched * 25);
    assert_true(no_order_time > 0 && no_order_time * 100 < n_ships * 10);
    for (int i = 1; i < MAX_NO; i++) {
        shipment_t *s = &ships[i];
        if ((s->last == SP_T_DISPATCHED || s->last == SP_T_IN_TRANSIT) &&
            s->last_time < end - 30 * HOUR_MS)
            lost++;
    }
    assert_true(lost > 0 && lost * 100 < n_ships * 5);
    /* tickets: some linked to orders, bots first on some, some settled by a
     * bot alone, some surveys with only some answers */
    assert_true(linked_tickets > 0 && linked_tickets < n_tickets);
    assert_true(bot_replies > 0 && bot_only > 0);
    assert_true(partial_surveys > 0 && partial_surveys < per_type[SP_T_SURVEY_RESPONSE]);
    sp_gen_stats(g, &stats);
    assert_int_equal(stats.orders, n_orders);
    assert_int_equal(stats.shipments, n_ships);
    assert_int_equal(stats.tickets, n_tickets);
    assert_int_equal(stats.shed, 0);
    assert_int_equal(stats.incident_hits, 0);
    fprintf(stderr,
            "  %zu messages, %" PRIu64 " sessions, %" PRIu64 " orders (%" PRIu64 " guest), %" PRIu64
            " shipments (%" PRIu64 " late of %" PRIu64 " delivered, %" PRIu64 " lost), %" PRIu64
            " tickets (%" PRIu64 " surveys)\n",
            n, n_sessions, n_orders, guest_orders, n_ships, late, per_type[SP_T_DELIVERED], lost,
            n_tickets, per_type[SP_T_SURVEY_RESPONSE]);

    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(sessions);
    free(orders);
    free(ships);
    free(tickets);
    decoders_free(&ds);
    sp_gen_destroy(g);
    free(cfg);
}

static void test_duplicates(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen_opts(cfg, 3, 5, 0.10, -1, 1);
    enum { N = 20000, W = 64 };
    /* the last W messages: a duplicate repeats one of them byte for byte */
    char win[W][512];
    size_t winlen[W];
    int repeats = 0;
    uint64_t sum = 0;
    sp_gen_stats_t stats;

    for (int i = 0; i < N; i++) {
        msg_t m;
        assert_int_equal(next(g, &m), 0);
        assert_true(m.vallen < sizeof(win[0]));
        for (int j = 0; j < W && j < i; j++)
            if (winlen[j] == m.vallen && memcmp(win[j], m.val, m.vallen) == 0) {
                repeats++;
                break;
            }
        memcpy(win[i % W], m.val, m.vallen);
        winlen[i % W] = m.vallen;
    }
    sp_gen_stats(g, &stats);
    assert_int_equal((uint64_t)repeats, stats.duplicates);
    assert_true(repeats > N / 20 && repeats < N / 5); /* ~10 % of N */
    for (int st = 0; st < SP_STREAM__COUNT; st++) {
        assert_true(stats.messages[st] > 0);
        sum += stats.messages[st];
    }
    assert_int_equal(sum, N);
    sp_gen_destroy(g);
    free(cfg);
}

static void test_json(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen_opts(cfg, 11, 5, 0.0, SP_FORMAT_JSON, 1);
    int per_stream[SP_STREAM__COUNT] = {0};

    for (int i = 0; i < 10000; i++) {
        msg_t m;
        json_error_t jerr;
        json_t *o, *f;
        assert_int_equal(next(g, &m), 0);
        o = json_loadb(m.val, m.vallen, 0, &jerr);
        if (!o) fprintf(stderr, "%.*s: %s\n", (int)m.vallen, (const char *)m.val, jerr.text);
        assert_non_null(o);
        per_stream[m.st]++;
        assert_true(json_is_string(json_object_get(o, "event_id")));
        assert_true(json_is_string(json_object_get(o, "type")));
        assert_true(sp_event_type_lookup(m.st, json_string_value(json_object_get(o, "type")),
                                         strlen(json_string_value(json_object_get(o, "type")))) >=
                    0);
        f = json_object_get(o, "event_time");
        assert_true(json_is_integer(f));
        assert_int_equal(json_integer_value(f), m.et);
        f = json_object_get(o, "customer_id");
        assert_true(json_is_string(f) || json_is_null(f));
        switch (m.st) {
        case SP_STREAM_CLICKSTREAM:
            assert_true(json_is_string(json_object_get(o, "session_id")));
            assert_int_equal(json_object_size(o), 9);
            break;
        case SP_STREAM_CHECKOUT:
            assert_true(json_is_string(json_object_get(o, "session_id")));
            assert_true(json_is_integer(json_object_get(o, "amount_cents")));
            assert_true(json_is_integer(json_object_get(o, "item_count")));
            f = json_object_get(o, "order_id");
            assert_true(json_is_string(f) || json_is_null(f));
            assert_int_equal(json_object_size(o), 14);
            break;
        case SP_STREAM_SHIPMENT:
            assert_true(json_is_string(json_object_get(o, "shipment_id")));
            assert_true(json_is_string(json_object_get(o, "order_id")));
            assert_true(json_is_string(json_object_get(o, "carrier")));
            assert_true(json_is_integer(json_object_get(o, "promised_delivery_time")));
            f = json_object_get(o, "order_placed_time");
            assert_true(json_is_integer(f) || json_is_null(f));
            assert_int_equal(json_object_size(o), 10);
            break;
        default:
            assert_true(json_is_string(json_object_get(o, "ticket_id")));
            assert_true(json_is_boolean(json_object_get(o, "is_bot")));
            f = json_object_get(o, "csat");
            assert_true(json_is_integer(f) || json_is_null(f));
            assert_int_equal(json_object_size(o), 11);
            break;
        }
        json_decref(o);
    }
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        assert_true(per_stream[st] > 0);
    sp_gen_destroy(g);
    free(cfg);
}

/* Warm start: steady state from the first message -- the asked rate and
 * the whole event mix at once, shipments and tickets included. */
static void test_warm_start(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_t *g = new_gen_opts(cfg, 5, 1000, 0.0, -1, 1);
    uint64_t per_stream[SP_STREAM__COUNT] = {0};
    int64_t first = -1, last = 0;
    sp_gen_stats_t stats;

    for (int i = 0; i < 30000; i++) {
        msg_t m;
        assert_int_equal(next(g, &m), 0);
        assert_true(m.et >= START_MS);
        if (first < 0) first = m.et;
        assert_true(m.et >= last);
        last = m.et;
        per_stream[m.st]++;
    }
    /* 30000 events at 1000/s: ~30 s of event time */
    fprintf(stderr,
            "  warm: 30000 events over %.1f s of event time, %" PRIu64 " checkout, %" PRIu64
            " shipment, %" PRIu64 " support\n",
            (double)(last - START_MS) / 1000.0, per_stream[SP_STREAM_CHECKOUT],
            per_stream[SP_STREAM_SHIPMENT], per_stream[SP_STREAM_SUPPORT]);
    assert_true(last - START_MS > 25000 && last - START_MS < 36000);
    assert_true(per_stream[SP_STREAM_CHECKOUT] > 30000 / 20);
    assert_true(per_stream[SP_STREAM_SHIPMENT] > 30000 / 100);
    assert_true(per_stream[SP_STREAM_SUPPORT] > 30000 / 1000);
    sp_gen_stats(g, &stats);
    assert_true(stats.sessions_in_flight > 10000);
    assert_true(stats.shipments_in_flight > 100000);
    assert_true(stats.tickets_in_flight > 1000);
    sp_gen_destroy(g);
    free(cfg);
}

static void test_bad_config(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(1, 1000);
    char errstr[256];

    snprintf(cfg->schemas[1].path, sizeof(cfg->schemas[1].path), "%s", "nope.avsc");
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "nope.avsc"));
    cfg->schema_cnt = 1; /* no checkout schema at all */
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "checkout"));
    o.format = SP_FORMAT_JSON; /* JSON needs no schema */
    sp_gen_destroy(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    o.scenario = SP_GEN_SCENARIO_CARRIER_DELAY;
    o.incident_value = "pigeon";
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "pigeon"));
    assert_non_null(strstr(errstr, "dhl"));
    o.incident_value = "*";
    sp_gen_destroy(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    o.scenario = SP_GEN_SCENARIO_CHECKOUT_OUTAGE;
    o.incident_value = "dhl"; /* a carrier, not a device */
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    o.incident_value = NULL;
    o.scenario = 99;
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    o.scenario = 0;
    o.duration_ms = -1;
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    o.duration_ms = 0;
    o.rate = 0;
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_int_equal(sp_gen_scenario_lookup("carrier-delay"), SP_GEN_SCENARIO_CARRIER_DELAY);
    assert_int_equal(sp_gen_scenario_lookup("support-backlog"), SP_GEN_SCENARIO_SUPPORT_BACKLOG);
    assert_int_equal(sp_gen_scenario_lookup("checkout-outage"), SP_GEN_SCENARIO_CHECKOUT_OUTAGE);
    assert_int_equal(sp_gen_scenario_lookup("nope"), -1);
    free(cfg);
}

/* --duration: the end comes at start + D of event time, with duplicates
 * still pending re-sent first; event time spans days in little wall time. */
static void test_duration(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(17, 2);
    sp_gen_t *g;
    sp_gen_stats_t stats;
    uint64_t n = 0, sum = 0;
    int64_t last = 0, t0 = sp_clock_mono_ms();
    msg_t m;

    o.duration_ms = 3 * DAY_MS;
    o.duplicates = 0.05;
    g = gen_new(cfg, &o);
    while (next(g, &m) == 0) {
        assert_true(m.et >= START_MS && m.et < START_MS + 3 * DAY_MS);
        if (m.et > last) last = m.et;
        n++;
    }
    assert_true(last > START_MS + 3 * DAY_MS - MIN_MS);
    assert_int_equal(next(g, &m), 1);
    assert_int_equal(next(g, &m), 1);
    sp_gen_stats(g, &stats);
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        sum += stats.messages[st];
    assert_int_equal(sum, n);
    /* ~2 events/s over 3 days (shipments and tickets build up from a cold start) */
    assert_true(n > 2 * 3 * 86400 * 8 / 10 && n < 2 * 3 * 86400 * 12 / 10);
    fprintf(stderr, "  3 days of event time: %" PRIu64 " messages in %.1f s\n", n,
            (double)(sp_clock_mono_ms() - t0) / 1000.0);
    sp_gen_destroy(g);

    /* a short one: an hour at 20/s */
    o.duration_ms = HOUR_MS;
    o.rate = 20;
    g = gen_new(cfg, &o);
    n = 0;
    while (next(g, &m) == 0)
        n++;
    assert_true(n > 20 * 3600 * 8 / 10 && n < 20 * 3600 * 12 / 10);
    sp_gen_destroy(g);
    free(cfg);
}

/* opts.streams: only the streams asked for -- exactly the messages of those
 * streams in a run of all four -- and no schema needed for the others. */
static void test_streams(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(29, 5);
    sp_gen_t *all, *some;
    sp_gen_stats_t stats;
    char errstr[256];
    int n = 0;
    msg_t ma, ms;

    o.warm_start = 1;
    all = gen_new(cfg, &o);
    o.streams = 1u << SP_STREAM_SHIPMENT | 1u << SP_STREAM_SUPPORT;
    some = gen_new(cfg, &o);
    for (int i = 0; i < 50000; i++) {
        assert_int_equal(next(all, &ma), 0);
        if (ma.st != SP_STREAM_SHIPMENT && ma.st != SP_STREAM_SUPPORT) continue;
        assert_int_equal(next(some, &ms), 0);
        assert_int_equal(ms.st, ma.st);
        assert_int_equal(ms.et, ma.et);
        assert_int_equal(ms.keylen, ma.keylen);
        assert_memory_equal(ms.key, ma.key, ma.keylen);
        assert_int_equal(ms.vallen, ma.vallen);
        assert_memory_equal(ms.val, ma.val, ma.vallen);
        n++;
    }
    assert_true(n > 1000);
    sp_gen_stats(some, &stats);
    assert_int_equal(stats.messages[SP_STREAM_CLICKSTREAM] + stats.messages[SP_STREAM_CHECKOUT], 0);
    sp_gen_destroy(all);
    sp_gen_destroy(some);

    /* the funnel alone, with the schemas of the funnel alone */
    cfg->schema_cnt = 2;
    o = gen_opts(29, 20);
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "shipment"));
    o.streams = 1u << SP_STREAM_CLICKSTREAM | 1u << SP_STREAM_CHECKOUT;
    some = gen_new(cfg, &o);
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(next(some, &ms), 0);
        assert_true(ms.st == SP_STREAM_CLICKSTREAM || ms.st == SP_STREAM_CHECKOUT);
    }
    sp_gen_destroy(some);
    o.streams = 1u << SP_STREAM__COUNT;
    assert_null(sp_gen_new(cfg, &o, errstr, sizeof(errstr)));
    free(cfg);
}

/* ---- customers over months ---------------------------------------------- */

typedef struct cust {
    int64_t first, last;
    int orders, again_30d;
} cust_t;

/* Two months at a low rate: customers order again within 30 days and after
 * more than 30 days; a month's new customers order in the next month. */
static void test_returning_customers(void **state) {
    (void)state;
    enum { MAX_CUST = 1 << 24 };
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(23, 0.1);
    cust_t *cust = calloc(MAX_CUST, sizeof(cust_t));
    decoders_t ds;
    sp_gen_t *g;
    uint64_t ordering = 0, returning = 0, cohort = 0, again_30d = 0, after_30d = 0, m1 = 0;
    msg_t m;

    assert_non_null(cust);
    o.duration_ms = 60 * DAY_MS;
    g = gen_new(cfg, &o);
    decoders_init(&ds);
    while (next(g, &m) == 0) {
        avro_value_t *v;
        char cid[32];
        unsigned long c;
        cust_t *cu;
        if (m.st != SP_STREAM_CHECKOUT) continue;
        v = decode(&ds, &m);
        if (get_type(v, m.st) != SP_T_ORDER_PLACED || !get_str(v, "customer_id", cid, sizeof(cid)))
            continue;
        c = strtoul(cid + 1, NULL, 10);
        assert_true(c > 0 && c < MAX_CUST);
        cu = &cust[c];
        if (cu->orders == 0) {
            cu->first = m.et;
        } else if (m.et - cu->first <= 30 * DAY_MS) {
            cu->again_30d = 1;
        }
        cu->last = m.et;
        cu->orders++;
    }
    for (int c = 1; c < MAX_CUST; c++) {
        cust_t *cu = &cust[c];
        if (!cu->orders) continue;
        ordering++;
        if (cu->orders > 1) returning++;
        if (cu->first >= START_MS + 30 * DAY_MS) continue;
        /* the first 30 days' customers (the 30 days after their first order
         * are all in the run) */
        cohort++;
        again_30d += (uint64_t)cu->again_30d;
        if (cu->last - cu->first > 30 * DAY_MS) after_30d++;
        if (cu->last >= START_MS + 30 * DAY_MS && cu->again_30d) m1++;
    }
    fprintf(stderr,
            "  60 days: %" PRIu64 " ordering customers, %" PRIu64 " ordered again; of %" PRIu64
            " first ordering in the first 30 days, %.1f %% again within 30 days, %.1f %% more "
            "than 30 days later\n",
            ordering, returning, cohort, 100.0 * (double)again_30d / (double)cohort,
            100.0 * (double)after_30d / (double)cohort);
    assert_true(cohort > 1000);
    assert_true(again_30d * 100 > cohort * 10 && again_30d * 100 < cohort * 50);
    assert_true(after_30d * 100 > cohort * 5);
    assert_true(returning * 100 > ordering * 15);
    assert_true(m1 > 0);
    decoders_free(&ds);
    sp_gen_destroy(g);
    free(cust);
    free(cfg);
}

/* ---- incidents ------------------------------------------------------------ */

/* checkout-outage on mobile: payment failures among mobile sessions in the
 * incident, few orders; desktop and the time outside unchanged. */
static void test_checkout_outage(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(31, 30);
    const int64_t inc_start = START_MS + 30 * MIN_MS, inc_end = inc_start + 20 * MIN_MS;
    /* [device 0 desktop, 1 mobile][0 outside, 1 inside]: submitted, failed, checkouts, orders */
    uint64_t sub[2][2] = {{0}}, failed[2][2] = {{0}}, chk[2][2] = {{0}}, ord[2][2] = {{0}};
    uint64_t gateway = 0;
    decoders_t ds;
    sp_gen_t *g;
    sp_gen_stats_t stats;
    msg_t m;

    o.scenario = SP_GEN_SCENARIO_CHECKOUT_OUTAGE; /* defaults: +30 min, 20 min, mobile */
    o.duration_ms = 80 * MIN_MS;
    g = gen_new(cfg, &o);
    decoders_init(&ds);
    while (next(g, &m) == 0) {
        avro_value_t *v;
        char dev[16], reason[64];
        int d, in = m.et >= inc_start && m.et < inc_end;
        sp_event_type_t t;
        if (m.st != SP_STREAM_CHECKOUT) continue;
        v = decode(&ds, &m);
        t = get_type(v, m.st);
        req_str(v, "device", dev, sizeof(dev));
        if (strcmp(dev, "tablet") == 0) continue;
        d = strcmp(dev, "mobile") == 0;
        if (m.et < START_MS + 10 * MIN_MS) continue; /* the cold start's first minutes */
        switch (t) {
        case SP_T_PAYMENT_SUBMITTED: sub[d][in]++; break;
        case SP_T_PAYMENT_FAILED:
            failed[d][in]++;
            if (d && in &&
                strcmp(req_str(v, "failure_reason", reason, sizeof(reason)), "gateway_timeout") ==
                    0)
                gateway++;
            break;
        case SP_T_CHECKOUT_STARTED: chk[d][in]++; break;
        case SP_T_ORDER_PLACED: ord[d][in]++; break;
        default: break;
        }
    }
    fprintf(stderr,
            "  payment failure share: mobile %.2f in / %.2f out, desktop %.2f in / %.2f out; "
            "orders per checkout: mobile %.2f in / %.2f out, desktop %.2f in / %.2f out\n",
            SHARE(failed[1][1], sub[1][1]), SHARE(failed[1][0], sub[1][0]),
            SHARE(failed[0][1], sub[0][1]), SHARE(failed[0][0], sub[0][0]),
            SHARE(ord[1][1], chk[1][1]), SHARE(ord[1][0], chk[1][0]), SHARE(ord[0][1], chk[0][1]),
            SHARE(ord[0][0], chk[0][0]));
    assert_true(sub[1][1] > 100 && sub[0][1] > 100);
    assert_true(SHARE(failed[1][1], sub[1][1]) > 0.6);
    assert_true(SHARE(failed[1][0], sub[1][0]) < 0.15);
    assert_true(SHARE(failed[0][1], sub[0][1]) < 0.15); /* desktop unchanged */
    assert_true(SHARE(failed[0][0], sub[0][0]) < 0.15);
    assert_true(gateway * 2 > failed[1][1]);
    assert_true(SHARE(ord[1][1], chk[1][1]) < 0.5 * SHARE(ord[1][0], chk[1][0]));
    assert_true(SHARE(ord[0][1], chk[0][1]) > 0.7 * SHARE(ord[0][0], chk[0][0]));
    sp_gen_stats(g, &stats);
    assert_true(stats.incident_hits >= sub[1][1]);
    decoders_free(&ds);
    sp_gen_destroy(g);
    free(cfg);
}

/* Per carrier over a run: deliveries, late ones, shipments stalled --
 * neither delivered nor returned, promised more than a day before the end
 * and no news for the last 30 h (a parcel on its way is dispatched 60 h
 * after the order at the latest, then has news at least every 28 h, except
 * while it goes back to the sender after a third failed attempt). */
typedef struct carrier_stats {
    uint64_t delivered[5], late[5], stalled[5], shipments[5];
} carrier_stats_t;

static int carrier_index(const char *c) {
    for (int i = 0; carrier_names[i]; i++)
        if (strcmp(carrier_names[i], c) == 0) return i;
    fail_msg("carrier %s", c);
    return -1;
}

static void carrier_run(const sp_config_t *cfg, const sp_gen_opts_t *o, carrier_stats_t *cs,
                        sp_gen_stats_t *stats) {
    typedef struct {
        int64_t last, promised;
        int8_t carrier, waiting;
    } ship_t;
    ship_t *ships = calloc(MAX_NO, sizeof(ship_t));
    const int64_t end = o->start_ms + o->duration_ms;
    decoders_t ds;
    sp_gen_t *g = gen_new(cfg, o);
    msg_t m;

    assert_non_null(ships);
    memset(cs, 0, sizeof(*cs));
    decoders_init(&ds);
    while (next(g, &m) == 0) {
        avro_value_t *v;
        char sid[64], carrier[16];
        sp_event_type_t t;
        ship_t *s;
        int c;
        if (m.st != SP_STREAM_SHIPMENT) continue;
        v = decode(&ds, &m);
        t = get_type(v, m.st);
        s = &ships[id_no(req_str(v, "shipment_id", sid, sizeof(sid)), "sh")];
        c = carrier_index(req_str(v, "carrier", carrier, sizeof(carrier)));
        s->carrier = (int8_t)c;
        s->last = m.et;
        s->promised = get_long(v, "promised_delivery_time");
        if (t == SP_T_LABEL_CREATED) cs->shipments[c]++;
        if (t == SP_T_DELIVERED) {
            cs->delivered[c]++;
            if (m.et > s->promised) cs->late[c]++;
        }
        s->waiting = t != SP_T_DELIVERED && t != SP_T_RETURNED && t != SP_T_DELIVERY_FAILED;
    }
    for (int i = 1; i < MAX_NO; i++)
        if (ships[i].waiting && ships[i].last < end - 30 * HOUR_MS &&
            ships[i].promised < end - DAY_MS)
            cs->stalled[ships[i].carrier]++;
    sp_gen_stats(g, stats);
    decoders_free(&ds);
    sp_gen_destroy(g);
    free(ships);
}

/* carrier-delay on dhl, 12 h from day 1: dhl's late share and stalled
 * parcels rise; the other carriers as without the incident. */
static void test_carrier_delay(void **state) {
    (void)state;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(37, 0.5);
    carrier_stats_t base, inc;
    sp_gen_stats_t bstats, istats;
    uint64_t od = 0, ol = 0, bd = 0, bl = 0;

    o.duration_ms = 6 * DAY_MS;
    carrier_run(cfg, &o, &base, &bstats);
    o.scenario = SP_GEN_SCENARIO_CARRIER_DELAY;
    o.incident_start_ms = START_MS + DAY_MS;
    o.incident_duration_ms = 12 * HOUR_MS;
    carrier_run(cfg, &o, &inc, &istats);
    for (int c = 1; c < 5; c++) {
        od += inc.delivered[c], ol += inc.late[c];
        bd += base.delivered[c], bl += base.late[c];
    }
    fprintf(stderr,
            "  late share: dhl %.3f (%" PRIu64 " delivered) vs %.3f without the incident; "
            "others %.3f vs %.3f; dhl stalled %" PRIu64 " vs %" PRIu64 "; incident hits %" PRIu64
            "\n",
            SHARE(inc.late[0], inc.delivered[0]), inc.delivered[0],
            SHARE(base.late[0], base.delivered[0]), SHARE(ol, od), SHARE(bl, bd), inc.stalled[0],
            base.stalled[0], istats.incident_hits);
    assert_true(inc.delivered[0] > 300);
    assert_true(SHARE(inc.late[0], inc.delivered[0]) > 2 * SHARE(base.late[0], base.delivered[0]));
    assert_true(SHARE(inc.late[0], inc.delivered[0]) > 2 * SHARE(ol, od));
    assert_true(SHARE(ol, od) < 0.16 && SHARE(bl, bd) < 0.16); /* the others: as usual */
    assert_true(SHARE(ol, od) > 0.5 * SHARE(bl, bd) && SHARE(ol, od) < 1.5 * SHARE(bl, bd));
    assert_true(inc.stalled[0] > 2 * base.stalled[0] + 15);
    for (int c = 1; c < 5; c++) /* no more stalls elsewhere than by chance */
        assert_true(inc.stalled[c] <= base.stalled[c] * 2 + 10);
    assert_true(istats.incident_hits > 100);
    assert_int_equal(bstats.incident_hits, 0);
    free(cfg);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* support-backlog on email, 4 h from hour 4: email tickets opened in it
 * wait hours longer for a human; more email tickets open; chat as usual.
 * Compared: the 4 h before (openings) and the 4 h after (waits: tickets
 * opened before the incident may have had a reply due in it). */
static void test_support_backlog(void **state) {
    (void)state;
    enum { CH = 4, MAX_FRT = 4096 };
    typedef struct {
        int64_t opened;
        int8_t channel, replied;
    } tk_t;
    sp_config_t *cfg = test_config();
    sp_gen_opts_t o = gen_opts(41, 4);
    const int64_t inc_start = START_MS + 4 * HOUR_MS, inc_end = inc_start + 4 * HOUR_MS;
    tk_t *tks = calloc(MAX_NO, sizeof(tk_t));
    /* [channel][0 before, 1 in, 2 after the incident]: tickets opened; first
     * human reply waits (hours) of the tickets opened then */
    uint64_t opened[CH][3] = {{0}};
    double(*frt)[3][MAX_FRT] = calloc(CH, sizeof(*frt));
    int frt_n[CH][3] = {{0}};
    double med[CH][3];
    decoders_t ds;
    sp_gen_t *g;
    msg_t m;

    assert_non_null(tks);
    assert_non_null(frt);
    o.warm_start = 1; /* tickets of all causes in flight */
    o.scenario = SP_GEN_SCENARIO_SUPPORT_BACKLOG;
    o.incident_start_ms = inc_start;
    o.incident_duration_ms = inc_end - inc_start;
    o.duration_ms = 30 * HOUR_MS;
    g = gen_new(cfg, &o);
    decoders_init(&ds);
    while (next(g, &m) == 0) {
        avro_value_t *v;
        char tid[64], ch[16];
        sp_event_type_t t;
        int is_null, p;
        tk_t *tk;
        if (m.st != SP_STREAM_SUPPORT) continue;
        v = decode(&ds, &m);
        t = get_type(v, m.st);
        tk = &tks[id_no(req_str(v, "ticket_id", tid, sizeof(tid)), "t")];
        req_str(v, "channel", ch, sizeof(ch));
        if (t == SP_T_TICKET_OPENED) {
            tk->opened = m.et;
            for (int c = 0; c < CH; c++)
                if (strcmp(ch, support_channel_names[c]) == 0) tk->channel = (int8_t)c;
            p = m.et < inc_start ? 0 : m.et < inc_end ? 1 : m.et < inc_end + 4 * HOUR_MS ? 2 : -1;
            if (p >= 0) opened[tk->channel][p]++;
        } else if (t == SP_T_AGENT_REPLIED && !get_int(v, "is_bot", &is_null) && tk->opened &&
                   !tk->replied) {
            tk->replied = 1;
            p = tk->opened < inc_start               ? 0
                : tk->opened < inc_end               ? 1
                : tk->opened < inc_end + 4 * HOUR_MS ? 2
                                                     : -1;
            if (p >= 0 && frt_n[tk->channel][p] < MAX_FRT)
                frt[tk->channel][p][frt_n[tk->channel][p]++] =
                    (double)(m.et - tk->opened) / HOUR_MS;
        }
    }
    for (int c = 0; c < CH; c++)
        for (int p = 0; p < 3; p++)
            med[c][p] = median(frt[c][p], frt_n[c][p]);
    fprintf(stderr,
            "  email: %" PRIu64 " opened in the 4 h before, %" PRIu64 " in, %" PRIu64
            " after; median first human reply %.2f h before, %.2f h in, %.2f h after; chat: "
            "%" PRIu64 " / %" PRIu64 " / %" PRIu64 " opened, %.2f / %.2f / %.2f h\n",
            opened[1][0], opened[1][1], opened[1][2], med[1][0], med[1][1], med[1][2], opened[0][0],
            opened[0][1], opened[0][2], med[0][0], med[0][1], med[0][2]);
    assert_true(frt_n[1][1] > 30 && frt_n[1][2] > 15 && frt_n[0][1] > 15 && frt_n[0][2] > 15);
    assert_true(med[1][1] > med[1][2] + 2);       /* email: hours longer */
    assert_true(opened[1][1] > 2 * opened[1][0]); /* more email tickets */
    /* chat: as many opened, answered as fast */
    assert_true(opened[0][1] < 2 * opened[0][0] && 2 * opened[0][1] > opened[0][0]);
    assert_true(med[0][1] < med[0][2] + 0.25);
    decoders_free(&ds);
    sp_gen_destroy(g);
    free(frt);
    free(tks);
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
        /* days of event time in a few seconds, ended by --duration, with an incident */
        char *days[] = {"gen",
                        "--brokers",
                        (char *)sp_broker_bootstraps(b),
                        "--rate",
                        "0.2",
                        "--duration",
                        "2d",
                        "--speedup",
                        "0",
                        "--start-time",
                        "1760000000000",
                        "--scenario",
                        "carrier-delay",
                        "--incident-start",
                        "+1d",
                        "--incident-duration",
                        "6h",
                        "--incident-value",
                        "ups",
                        "--quiet",
                        NULL};
        int64_t t0 = sp_clock_mono_ms();
        assert_int_equal(sp_gen_main(20, days), 0);
        fprintf(stderr, "  2 days of event time produced in %.1f s\n",
                (double)(sp_clock_mono_ms() - t0) / 1000.0);
        char *bad[] = {"gen", "--rate", "-3", NULL};
        assert_int_equal(sp_gen_main(3, bad), 2);
        char *bad_scenario[] = {"gen", "--scenario", "meteor", NULL};
        assert_int_equal(sp_gen_main(3, bad_scenario), 2);
        char *bad_value[] = {"gen", "--scenario", "checkout-outage", "--incident-value",
                             "fax", NULL};
        assert_int_equal(sp_gen_main(5, bad_value), 2);
        char *orphan[] = {"gen", "--incident-duration", "1h", NULL};
        assert_int_equal(sp_gen_main(3, orphan), 2);
        char *bad_dur[] = {"gen", "--duration", "3 days", NULL};
        assert_int_equal(sp_gen_main(3, bad_dur), 2);
        char *bad_streams[] = {"gen", "--streams", "clickstream,orders", NULL};
        assert_int_equal(sp_gen_main(3, bad_streams), 2);
        char *funnel[] = {
            "gen", "--brokers", (char *)sp_broker_bootstraps(b), "--count", "2000", "--speedup",
            "0",   "--streams", "clickstream,checkout",          "--quiet", NULL};
        assert_int_equal(sp_gen_main(10, funnel), 0);
    }

    sp_broker_stop(b);
    sp_broker_stop(NULL);
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_avro_all_streams),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_warm_start),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_returning_customers),
        cmocka_unit_test(test_checkout_outage),
        cmocka_unit_test(test_carrier_delay),
        cmocka_unit_test(test_support_backlog),
        cmocka_unit_test(test_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
