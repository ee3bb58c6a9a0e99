/* test_decode.c -- the event decoder fed bytes: Avro (Confluent framing) in both
 * schema-evolution directions, JSON, every dead-letter reason, truncated and
 * trailing input, reads past the end (input placed right before a PROT_NONE
 * page), a mutation loop, and a rough throughput figure (printed, not asserted).
 *
 * Test messages are encoded here with avro-c from our schemas/<stream>.avsc and from
 * inline OLD/NEW writer schemas. Runs from the repository root (schemas/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "consumers/decode.h"
#include "core/config.h"

#define NOW 1760000000000LL /* 2025-10-09 */
#define DAY 86400000LL

/* ---- encoding helpers ---- */

typedef struct fv {
    const char *name;
    char kind; /* 's' string, 'l' long/int, 'b' boolean, 'e' enum symbol, 'x' enum index,
                  'd' double, 'n' null, 'm' empty map */
    const char *s;
    int64_t i;
} fv_t;

#define S(n, v) {n, 's', v, 0}
#define L(n, v) {n, 'l', NULL, v}
#define B(n, v) {n, 'b', NULL, v}
#define E(n, v) {n, 'e', v, 0}
#define N(n) {n, 'n', NULL, 0}
#define END {NULL, 0, NULL, 0}

static const fv_t click_base[] = {
    S("event_id", "e-1"), L("event_time", NOW - 1000), E("type", "ADD_TO_CART"),
    S("session_id", "s-1"), N("customer_id"), S("product_id", "p-9"),
    S("channel", "web"), S("device", "desktop"), S("country", "PL"), END};
static const fv_t checkout_base[] = {
    S("event_id", "e-2"), L("event_time", NOW - 2000), E("type", "ORDER_PLACED"),
    S("order_id", "o-1"), S("session_id", "s-1"), S("customer_id", "c-1"),
    L("amount_cents", 12345), S("currency", "USD"), L("item_count", 2),
    S("payment_method", "card"), N("failure_reason"), S("channel", "web"),
    S("device", "mobile"), S("country", "DE"), END};
static const fv_t shipment_base[] = {
    S("event_id", "e-3"), L("event_time", NOW - 3000), E("type", "DELIVERED"),
    S("shipment_id", "sh-1"), S("order_id", "o-1"), N("customer_id"), S("carrier", "dhl"),
    S("country", "PL"), L("promised_delivery_time", NOW), L("order_placed_time", NOW - 2 * DAY),
    END};
static const fv_t support_base[] = {
    S("event_id", "e-4"), L("event_time", NOW - 4000), E("type", "SURVEY_RESPONSE"),
    S("ticket_id", "t-1"), N("customer_id"), N("order_id"), S("channel", "chat"),
    B("is_bot", 1), L("csat", 5), L("nps", 9), L("ces", 2), END};

static const fv_t *find_fv(const fv_t *list, const char *name) {
    for (; list && list->name; list++)
        if (strcmp(list->name, name) == 0) return list;
    return NULL;
}

static void set_field(avro_value_t *f, const fv_t *v) {
    avro_value_t br;
    if (avro_value_get_type(f) == AVRO_UNION) {
        avro_schema_t us = avro_value_get_schema(f);
        int want = -1;
        for (size_t b = 0; b < avro_schema_union_size(us) && want < 0; b++)
            if ((v->kind == 'n') == is_avro_null(avro_schema_union_branch(us, (int)b)))
                want = (int)b;
        assert_true(want >= 0);
        assert_int_equal(avro_value_set_branch(f, want, &br), 0);
        f = &br;
    }
    switch (v->kind) {
    case 'n': assert_int_equal(avro_value_set_null(f), 0); break;
    case 's': assert_int_equal(avro_value_set_string_len(f, v->s, strlen(v->s) + 1), 0); break;
    case 'l':
        if (avro_value_get_type(f) == AVRO_INT32)
            assert_int_equal(avro_value_set_int(f, (int32_t)v->i), 0);
        else
            assert_int_equal(avro_value_set_long(f, v->i), 0);
        break;
    case 'b': assert_int_equal(avro_value_set_boolean(f, (int)v->i), 0); break;
    case 'e': {
        int idx = avro_schema_enum_get_by_name(avro_value_get_schema(f), v->s);
        assert_true(idx >= 0);
        assert_int_equal(avro_value_set_enum(f, idx), 0);
        break;
    }
    case 'x': assert_int_equal(avro_value_set_enum(f, (int)v->i), 0); break;
    case 'd': assert_int_equal(avro_value_set_double(f, (double)v->i), 0); break;
    case 'm': break; /* map or array: left empty */
    default: fail();
    }
}

/* Confluent-framed Avro of `schema_json`: each writer field takes its value
 * from `over`, else `base`, else null (unions) -- a test bug otherwise. */
static size_t enc(const char *schema_json, int32_t id, const fv_t *base, const fv_t *over,
                  unsigned char *out, size_t cap) {
    avro_schema_t sc;
    avro_value_iface_t *iface;
    avro_value_t rec;
    assert_int_equal(avro_schema_from_json_length(schema_json, strlen(schema_json), &sc), 0);
    iface = avro_generic_class_from_schema(sc);
    assert_non_null(iface);
    assert_int_equal(avro_generic_value_new(iface, &rec), 0);
    for (size_t i = 0; i < avro_schema_record_size(sc); i++) {
        const char *name = avro_schema_record_field_name(sc, (int)i);
        const fv_t *v = find_fv(over, name);
        if (!v) v = find_fv(base, name);
        avro_value_t f;
        assert_int_equal(avro_value_get_by_index(&rec, i, &f, NULL), 0);
        fv_t null_v = N(NULL), empty_v = {NULL, 'm', NULL, 0}, zero_v = {NULL, 'd', NULL, 0};
        if (!v && avro_value_get_type(&f) == AVRO_MAP) v = &empty_v;
        if (!v && avro_value_get_type(&f) == AVRO_DOUBLE) v = &zero_v;
        if (!v) v = &null_v;
        set_field(&f, v);
    }
    out[0] = 0;
    out[1] = (unsigned char)(id >> 24);
    out[2] = (unsigned char)(id >> 16);
    out[3] = (unsigned char)(id >> 8);
    out[4] = (unsigned char)id;
    avro_writer_t w = avro_writer_memory((char *)out + 5, (int64_t)(cap - 5));
    assert_int_equal(avro_value_write(w, &rec), 0);
    size_t len = 5 + (size_t)avro_writer_tell(w);
    avro_writer_free(w);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(sc);
    return len;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char bufs[SP_STREAM__COUNT][8192];
    static int next;
    char *b = bufs[next++ % SP_STREAM__COUNT];
    size_t n = fread(b, 1, 8191, f);
    fclose(f);
    b[n] = '\0';
    return b;
}

/* ---- evolved writer schemas ---- */

/* OLD checkout: no failure_reason (reader default null), amount_cents as int
 * (promoted to long), customer_id plain string (reader: [null, string]). */
static const char *old_checkout =
    "{\"type\":\"record\",\"name\":\"CheckoutEvent\",\"namespace\":\"io.storepulse\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"event_time\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"CheckoutType\",\"symbols\":"
    "[\"CHECKOUT_STARTED\",\"PAYMENT_SUBMITTED\",\"PAYMENT_FAILED\",\"ORDER_PLACED\"]}},"
    "{\"name\":\"order_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"session_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"customer_id\",\"type\":\"string\"},"
    "{\"name\":\"amount_cents\",\"type\":\"int\"},"
    "{\"name\":\"currency\",\"type\":\"string\"},"
    "{\"name\":\"item_count\",\"type\":\"int\"},"
    "{\"name\":\"payment_method\",\"type\":\"string\"},"
    "{\"name\":\"channel\",\"type\":\"string\"},"
    "{\"name\":\"device\",\"type\":\"string\"},"
    "{\"name\":\"country\",\"type\":\"string\"}]}";

/* OLD support: no is_bot (reader default false), no ces (default null). */
static const char *old_support =
    "{\"type\":\"record\",\"name\":\"SupportEvent\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"event_time\",\"type\":\"long\"},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"SupportType\",\"symbols\":"
    "[\"TICKET_OPENED\",\"AGENT_REPLIED\",\"SURVEY_RESPONSE\"]}},"
    "{\"name\":\"ticket_id\",\"type\":\"string\"},"
    "{\"name\":\"channel\",\"type\":\"string\"},"
    "{\"name\":\"csat\",\"type\":[\"null\",\"int\"],\"default\":null},"
    "{\"name\":\"nps\",\"type\":[\"null\",\"int\"],\"default\":null}]}";

/* NEWER checkout: extra fields (a string, a double, a map), enum symbols in
 * another order plus an appended one, currency as [null, string] (reader:
 * plain string). */
static const char *new_checkout =
    "{\"type\":\"record\",\"name\":\"CheckoutEvent\",\"namespace\":\"io.storepulse\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"coupon_code\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"event_time\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"CheckoutType\",\"symbols\":"
    "[\"ORDER_PLACED\",\"CHECKOUT_STARTED\",\"PAYMENT_SUBMITTED\",\"PAYMENT_FAILED\","
    "\"ORDER_CANCELLED\",\"PAYMENT_AUTHORIZED\"]}},"
    "{\"name\":\"order_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"session_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"customer_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"amount_cents\",\"type\":\"long\"},"
    "{\"name\":\"risk_score\",\"type\":\"double\",\"default\":0.0},"
    "{\"name\":\"currency\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"item_count\",\"type\":\"int\"},"
    "{\"name\":\"payment_method\",\"type\":\"string\"},"
    "{\"name\":\"failure_reason\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"labels\",\"type\":{\"type\":\"map\",\"values\":\"string\"},\"default\":{}},"
    "{\"name\":\"channel\",\"type\":\"string\"},"
    "{\"name\":\"device\",\"type\":\"string\"},"
    "{\"name\":\"country\",\"type\":\"string\"}]}";

/* A writer that lacks a reader field with no default (device). */
static const char *click_no_device =
    "{\"type\":\"record\",\"name\":\"ClickstreamEvent\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"event_time\",\"type\":\"long\"},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"ClickstreamType\",\"symbols\":"
    "[\"PAGE_VIEW\"]}},"
    "{\"name\":\"session_id\",\"type\":\"string\"},"
    "{\"name\":\"channel\",\"type\":\"string\"},"
    "{\"name\":\"country\",\"type\":\"string\"}]}";

enum { ID_OLD_CHECKOUT = 101, ID_OLD_SUPPORT = 102, ID_NEW_CHECKOUT = 201, ID_NO_DEVICE = 301 };

/* ---- fixture ---- */

typedef struct fx {
    sp_decoder_t *d;
    int avro_c; /* this group reads through avro-c's generic value */
    sp_arena_t *arena;
    sp_event_t ev;
    sp_dlq_reason_t reason;
    char why[256];
    unsigned char buf[8192];
} fx_t;

static int setup(void **state) {
    fx_t *fx = calloc(1, sizeof(*fx));
    sp_config_t *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";
    if (!fx || !cfg) return -1;
    sp_config_defaults(cfg); /* schemas/ and ids 1..4 = our four schemas */
    fx->d = sp_decoder_new(cfg, err, sizeof(err));
    free(cfg);
    if (!fx->d) {
        fprintf(stderr, "sp_decoder_new: %s\n", err);
        return -1;
    }
    if (sp_decoder_add_schema(fx->d, ID_OLD_CHECKOUT, SP_STREAM_CHECKOUT, old_checkout,
                              strlen(old_checkout), err, sizeof(err)) ||
        sp_decoder_add_schema(fx->d, ID_OLD_SUPPORT, SP_STREAM_SUPPORT, old_support,
                              strlen(old_support), err, sizeof(err)) ||
        sp_decoder_add_schema(fx->d, ID_NEW_CHECKOUT, SP_STREAM_CHECKOUT, new_checkout,
                              strlen(new_checkout), err, sizeof(err)) ||
        sp_decoder_add_schema(fx->d, ID_NO_DEVICE, SP_STREAM_CLICKSTREAM, click_no_device,
                              strlen(click_no_device), err, sizeof(err))) {
        fprintf(stderr, "add_schema: %s\n", err);
        return -1;
    }
    fx->arena = sp_arena_new(0);
    *state = fx;
    return 0;
}

static int setup_avro_c(void **state) {
    if (setup(state)) return -1;
    fx_t *fx = *state;
    fx->avro_c = 1;
    sp_decoder_use_avro_c(fx->d, 1);
    return 0;
}

static int teardown(void **state) {
    fx_t *fx = *state;
    sp_decoder_destroy(fx->d);
    sp_arena_destroy(fx->arena);
    free(fx);
    return 0;
}

static const char *schema_file(sp_stream_t st) {
    static const char *files[] = {"schemas/clickstream.avsc", "schemas/checkout.avsc",
                                  "schemas/shipment.avsc", "schemas/support.avsc"};
    return slurp(files[st]);
}

static const fv_t *base_of(sp_stream_t st) {
    static const fv_t *b[] = {click_base, checkout_base, shipment_base, support_base};
    return b[st];
}

static int dec(fx_t *fx, sp_stream_t st, sp_format_t f, const void *buf, size_t len) {
    fx->why[0] = '\0';
    int rc = sp_decoder_decode(fx->d, st, f, buf, len, NOW, fx->arena, &fx->ev, &fx->reason,
                               fx->why, sizeof(fx->why));
    if (rc == SP_OK) assert_int_equal(fx->reason, SP_DLQ_NONE);
    return rc;
}

/* Encode with our own schema for stream st (ids 1..4) and decode. */
static int roundtrip(fx_t *fx, sp_stream_t st, const fv_t *over) {
    size_t n = enc(schema_file(st), (int32_t)st + 1, base_of(st), over, fx->buf, sizeof(fx->buf));
    return dec(fx, st, SP_FORMAT_AVRO, fx->buf, n);
}

static void expect_poison(fx_t *fx, int rc, sp_dlq_reason_t r) {
    if (rc != SP_ERR_POISON || fx->reason != r)
        fprintf(stderr, "expected %s, got rc %d reason %s (%s)\n", sp_dlq_reason_str(r), rc,
                sp_dlq_reason_str(fx->reason), fx->why);
    assert_int_equal(rc, SP_ERR_POISON);
    assert_int_equal(fx->reason, r);
    assert_true(fx->why[0] != '\0');
}

static void assert_str(sp_str_t s, const char *want) {
    if (!want) {
        assert_null(s.p);
        return;
    }
    assert_non_null(s.p);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

/* ---- Avro, current schemas ---- */

static void test_avro_clickstream(void **state) {
    fx_t *fx = *state;
    assert_int_equal(roundtrip(fx, SP_STREAM_CLICKSTREAM, NULL), SP_OK);
    sp_event_t *ev = &fx->ev;
    assert_int_equal(ev->stream, SP_STREAM_CLICKSTREAM);
    assert_int_equal(ev->type, SP_T_ADD_TO_CART);
    assert_str(ev->s[SP_S_EVENT_ID], "e-1");
    assert_str(ev->s[SP_S_SESSION_ID], "s-1");
    assert_str(ev->s[SP_S_CUSTOMER_ID], NULL);
    assert_str(ev->s[SP_S_PRODUCT_ID], "p-9");
    assert_str(ev->s[SP_S_CHANNEL], "web");
    assert_str(ev->s[SP_S_DEVICE], "desktop");
    assert_str(ev->s[SP_S_COUNTRY], "PL");
    assert_str(ev->s[SP_S_ORDER_ID], NULL);
    assert_true(sp_event_has_int(ev, SP_I_EVENT_TIME));
    assert_int_equal(ev->i[SP_I_EVENT_TIME], NOW - 1000);
    assert_false(sp_event_has_int(ev, SP_I_AMOUNT_CENTS));
}

static void test_avro_checkout(void **state) {
    fx_t *fx = *state;
    assert_int_equal(roundtrip(fx, SP_STREAM_CHECKOUT, NULL), SP_OK);
    sp_event_t *ev = &fx->ev;
    assert_int_equal(ev->type, SP_T_ORDER_PLACED);
    assert_str(ev->s[SP_S_ORDER_ID], "o-1");
    assert_str(ev->s[SP_S_CUSTOMER_ID], "c-1");
    assert_str(ev->s[SP_S_CURRENCY], "USD");
    assert_str(ev->s[SP_S_PAYMENT_METHOD], "card");
    assert_str(ev->s[SP_S_FAILURE_REASON], NULL);
    assert_int_equal(ev->i[SP_I_AMOUNT_CENTS], 12345);
    assert_int_equal(ev->i[SP_I_ITEM_COUNT], 2);
    /* strings are NUL-terminated copies in the arena, not views into buf */
    assert_true((const unsigned char *)ev->s[SP_S_CURRENCY].p < fx->buf ||
                (const unsigned char *)ev->s[SP_S_CURRENCY].p >= fx->buf + sizeof(fx->buf));
    assert_int_equal(ev->s[SP_S_CURRENCY].p[3], '\0');

    fv_t failed[] = {E("type", "PAYMENT_FAILED"), N("order_id"), S("failure_reason", "declined"),
                     END};
    assert_int_equal(roundtrip(fx, SP_STREAM_CHECKOUT, failed), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_PAYMENT_FAILED);
    assert_str(fx->ev.s[SP_S_ORDER_ID], NULL);
    assert_str(fx->ev.s[SP_S_FAILURE_REASON], "declined");
}

static void test_avro_shipment_support(void **state) {
    fx_t *fx = *state;
    assert_int_equal(roundtrip(fx, SP_STREAM_SHIPMENT, NULL), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_DELIVERED);
    assert_str(fx->ev.s[SP_S_SHIPMENT_ID], "sh-1");
    assert_str(fx->ev.s[SP_S_CARRIER], "dhl");
    assert_int_equal(fx->ev.i[SP_I_PROMISED_DELIVERY_TIME], NOW);
    assert_int_equal(fx->ev.i[SP_I_ORDER_PLACED_TIME], NOW - 2 * DAY);
    fv_t no_placed[] = {N("order_placed_time"), END};
    assert_int_equal(roundtrip(fx, SP_STREAM_SHIPMENT, no_placed), SP_OK);
    assert_false(sp_event_has_int(&fx->ev, SP_I_ORDER_PLACED_TIME));

    assert_int_equal(roundtrip(fx, SP_STREAM_SUPPORT, NULL), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_SURVEY_RESPONSE);
    assert_str(fx->ev.s[SP_S_TICKET_ID], "t-1");
    assert_true(sp_event_has_int(&fx->ev, SP_I_IS_BOT));
    assert_int_equal(fx->ev.i[SP_I_IS_BOT], 1);
    assert_int_equal(fx->ev.i[SP_I_CSAT], 5);
    assert_int_equal(fx->ev.i[SP_I_NPS], 9);
    assert_int_equal(fx->ev.i[SP_I_CES], 2);
    fv_t no_survey[] = {E("type", "AGENT_REPLIED"), N("csat"), N("nps"), N("ces"), END};
    assert_int_equal(roundtrip(fx, SP_STREAM_SUPPORT, no_survey), SP_OK);
    assert_false(sp_event_has_int(&fx->ev, SP_I_CSAT));
    assert_false(sp_event_has_int(&fx->ev, SP_I_NPS));
    assert_false(sp_event_has_int(&fx->ev, SP_I_CES));
}

/* ---- Avro, schema evolution ---- */

/* Old writer, new reader: defaults fill what the writer lacks. */
static void test_evolution_old_writer(void **state) {
    fx_t *fx = *state;
    size_t n = enc(old_checkout, ID_OLD_CHECKOUT, checkout_base, NULL, fx->buf, sizeof(fx->buf));
    assert_int_equal(dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, n), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_ORDER_PLACED); /* same symbol, other index space */
    assert_str(fx->ev.s[SP_S_FAILURE_REASON], NULL);  /* default null */
    assert_str(fx->ev.s[SP_S_CUSTOMER_ID], "c-1");    /* plain string -> [null, string] */
    assert_int_equal(fx->ev.i[SP_I_AMOUNT_CENTS], 12345); /* int -> long */

    fv_t sup[] = {E("type", "TICKET_OPENED"), N("csat"), N("nps"), END};
    n = enc(old_support, ID_OLD_SUPPORT, support_base, sup, fx->buf, sizeof(fx->buf));
    assert_int_equal(dec(fx, SP_STREAM_SUPPORT, SP_FORMAT_AVRO, fx->buf, n), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_TICKET_OPENED);
    assert_true(sp_event_has_int(&fx->ev, SP_I_IS_BOT)); /* default false */
    assert_int_equal(fx->ev.i[SP_I_IS_BOT], 0);
    assert_false(sp_event_has_int(&fx->ev, SP_I_CES)); /* default null */

    /* A writer without a required reader field: every message is missing_field. */
    n = enc(click_no_device, ID_NO_DEVICE, click_base, (fv_t[]){E("type", "PAGE_VIEW"), END},
            fx->buf, sizeof(fx->buf));
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, fx->buf, n),
                  SP_DLQ_MISSING_FIELD);
    assert_non_null(strstr(fx->why, "device"));
}

/* New writer, old reader: extra fields ignored, enum matched by name. */
static void test_evolution_new_writer(void **state) {
    fx_t *fx = *state;
    fv_t extra[] = {S("coupon_code", "SPRING"), {"risk_score", 'd', NULL, 7}, END};

    size_t n = enc(new_checkout, ID_NEW_CHECKOUT, checkout_base, extra, fx->buf, sizeof(fx->buf));
    assert_int_equal(dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, n), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_ORDER_PLACED);
    assert_str(fx->ev.s[SP_S_CURRENCY], "USD"); /* [null, string] -> string */
    assert_str(fx->ev.s[SP_S_COUNTRY], "DE");
    assert_int_equal(fx->ev.i[SP_I_AMOUNT_CENTS], 12345);

    /* Every symbol we know maps by name, whatever its writer index. */
    static const char *syms[] = {"CHECKOUT_STARTED", "PAYMENT_SUBMITTED", "PAYMENT_FAILED",
                                 "ORDER_PLACED", "ORDER_CANCELLED"};
    for (int i = 0; i < 5; i++) {
        fv_t t[] = {E("type", syms[i]), END};
        n = enc(new_checkout, ID_NEW_CHECKOUT, checkout_base, t, fx->buf, sizeof(fx->buf));
        assert_int_equal(dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, n), SP_OK);
        assert_int_equal(fx->ev.type, SP_T_CHECKOUT_STARTED + i);
    }

    /* The appended symbol is unknown to us. */
    fv_t auth[] = {E("type", "PAYMENT_AUTHORIZED"), END};
    n = enc(new_checkout, ID_NEW_CHECKOUT, checkout_base, auth, fx->buf, sizeof(fx->buf));
    expect_poison(fx, dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, n), SP_DLQ_BAD_ENUM);
    assert_non_null(strstr(fx->why, "PAYMENT_AUTHORIZED"));

    /* A null in a writer union for a non-nullable reader field is missing. */
    fv_t nocur[] = {N("currency"), END};
    n = enc(new_checkout, ID_NEW_CHECKOUT, checkout_base, nocur, fx->buf, sizeof(fx->buf));
    expect_poison(fx, dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, n),
                  SP_DLQ_MISSING_FIELD);
    assert_non_null(strstr(fx->why, "'currency' is null"));
}

static void test_bad_writer_schemas(void **state) {
    fx_t *fx = *state;
    char err[256];
    static const char *bad[] = {
        "\"string\"",
        "{not json",
        "{\"type\":\"record\",\"name\":\"Other\",\"fields\":[{\"name\":\"event_id\",\"type\":\"string\"}]}",
        "{\"type\":\"record\",\"name\":\"ClickstreamEvent\",\"fields\":["
        "{\"name\":\"event_time\",\"type\":\"string\"}]}",
        "{\"type\":\"record\",\"name\":\"ClickstreamEvent\",\"fields\":["
        "{\"name\":\"type\",\"type\":\"string\"}]}",
        "{\"type\":\"record\",\"name\":\"ClickstreamEvent\",\"fields\":["
        "{\"name\":\"session_id\",\"type\":[\"null\",\"long\"]}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sp_decoder_add_schema(fx->d, 900, SP_STREAM_CLICKSTREAM, bad[i],
                                               strlen(bad[i]), err, sizeof(err)),
                         SP_ERR_CONFIG);
        assert_true(err[0] != '\0');
    }
    /* the failed registrations left nothing behind */
    unsigned char b[] = {0, 0, 0, 3, 132, 2};
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, b, sizeof(b)),
                  SP_DLQ_UNKNOWN_SCHEMA);
}

static void test_decoder_new_errors(void **state) {
    (void)state;
    sp_config_t *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";
    sp_config_defaults(cfg);
    snprintf(cfg->schemas_dir, sizeof(cfg->schemas_dir), "/nonexistent-dir");
    assert_null(sp_decoder_new(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-dir"));

    /* Hand-made config: paths relative to schemas_dir, and an absolute one. */
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->schemas_dir, sizeof(cfg->schemas_dir), "schemas");
    cfg->schemas[0] = (sp_schema_conf_t){.id = 7, .stream = SP_STREAM_SUPPORT};
    snprintf(cfg->schemas[0].path, sizeof(cfg->schemas[0].path), "support.avsc");
    char cwd[400];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    cfg->schemas[1] = (sp_schema_conf_t){.id = 8, .stream = SP_STREAM_CLICKSTREAM};
    snprintf(cfg->schemas[1].path, sizeof(cfg->schemas[1].path), "%s/schemas/clickstream.avsc",
             cwd);
    cfg->schema_cnt = 2;
    sp_decoder_t *d = sp_decoder_new(cfg, err, sizeof(err));
    if (!d) fprintf(stderr, "%s\n", err);
    assert_non_null(d);
    sp_decoder_destroy(d);

    /* A configured file that does not parse. */
    snprintf(cfg->schemas[1].path, sizeof(cfg->schemas[1].path), "../CMakeLists.txt");
    assert_null(sp_decoder_new(cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "CMakeLists.txt"));
    sp_decoder_destroy(NULL);
    free(cfg);
}

/* ---- framing and malformed bodies ---- */

static void test_framing(void **state) {
    fx_t *fx = *state;
    unsigned char b[16] = {0};
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, NULL, 0), SP_DLQ_UNDECODABLE);
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, b, 4), SP_DLQ_UNDECODABLE);
    b[0] = 1;
    b[4] = 1;
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, b, 5), SP_DLQ_UNDECODABLE);
    assert_non_null(strstr(fx->why, "magic"));
    b[0] = 0;
    b[4] = 99; /* unknown id */
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, b, 10), SP_DLQ_UNKNOWN_SCHEMA);
    b[1] = 0x80; /* negative id */
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, b, 10), SP_DLQ_UNKNOWN_SCHEMA);

    /* A known id of another stream is unknown for this topic. */
    size_t n = enc(schema_file(SP_STREAM_CHECKOUT), 2, checkout_base, NULL, fx->buf,
                   sizeof(fx->buf));
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, fx->buf, n),
                  SP_DLQ_UNKNOWN_SCHEMA);
    assert_int_equal(dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, n), SP_OK);

    /* Header only: the body is empty. */
    expect_poison(fx, dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, fx->buf, 5), SP_DLQ_UNDECODABLE);
}

static void test_trailing_bytes(void **state) {
    fx_t *fx = *state;
    size_t n = enc(schema_file(SP_STREAM_CLICKSTREAM), 1, click_base, NULL, fx->buf,
                   sizeof(fx->buf));
    fx->buf[n] = 0;
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, fx->buf, n + 1),
                  SP_DLQ_UNDECODABLE);
    assert_non_null(strstr(fx->why, "trailing"));
    assert_int_equal(dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, fx->buf, n), SP_OK);
}

/* Input copied to the end of a readable region whose next page is PROT_NONE:
 * a read past the end faults. */
static unsigned char *guard_region;
static size_t guard_size;

static const unsigned char *guarded(const void *src, size_t len) {
    if (!guard_region) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        guard_size = 16 * pg;
        guard_region = mmap(NULL, guard_size + pg, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(guard_region != MAP_FAILED);
        assert_int_equal(mprotect(guard_region + guard_size, pg, PROT_NONE), 0);
    }
    assert_true(len <= guard_size);
    unsigned char *p = guard_region + guard_size - len;
    if (len) memcpy(p, src, len);
    return p;
}

/* Found by fuzz_avro: a varint may be padded with continuation bytes (0x9b
 * 0x00 is 27, as 0x1b is). Both paths must read it; the avro-c path used to
 * take the padding for a trailing byte (avro_value_sizeof counts shortest
 * varints), so the two paths disagreed. */
static void test_padded_varint(void **state) {
    fx_t *fx = *state;
    /* the fuzzer's input: event_time 0x9b 0x00 (-14), session_id "" */
    static const unsigned char found[] = {
        0x00, 0x00, 0x00, 0x00, 0x01, 0x0c, 'e', '-', '6', '-', 0xb1, 0xa2, 0x9b, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x0e, 'd',  'e', 's', 'k', 't', 'o',  'p',  0x04, 'U',  'S'};
    expect_poison(fx,
                  dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(found, sizeof(found)),
                      sizeof(found)),
                  SP_DLQ_MISSING_FIELD);
    assert_non_null(strstr(fx->why, "session_id"));

    /* a valid event whose event_time (NOW - 1 s) is padded by one byte */
    unsigned char m[64];
    size_t n = 0;
    uint64_t z = (uint64_t)(NOW - 1000) << 1; /* zigzag of a positive long */
    static const unsigned char head[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 'e'};
    memcpy(m, head, sizeof(head));
    n = sizeof(head);
    for (; z >= 0x80; z >>= 7)
        m[n++] = (unsigned char)(0x80 | (z & 0x7f));
    m[n++] = (unsigned char)(0x80 | z); /* padded: one more byte ... */
    m[n++] = 0x00;                      /* ... that adds nothing */
    static const unsigned char tail[] = {0x00, 0x02, 's', 0x00, 0x00, 0x06, 'w',  'e', 'b', 0x0c,
                                         'm',  'o',  'b', 'i',  'l',  'e',  0x04, 'P', 'L'};
    memcpy(m + n, tail, sizeof(tail));
    n += sizeof(tail);
    assert_int_equal(dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(m, n), n), SP_OK);
    assert_int_equal(fx->ev.i[SP_I_EVENT_TIME], NOW - 1000);
    assert_true(fx->ev.s[SP_S_SESSION_ID].len == 1 && fx->ev.s[SP_S_SESSION_ID].p[0] == 's');
    assert_int_equal(fx->ev.s[SP_S_DEVICE].len, 6);
}

/* Found by fuzz_avro: an enum index beyond 32 bits. avro-c reads it into an
 * int (2^55 wraps to 0, a PAGE_VIEW), so the avro-c path accepted what the
 * direct path rejects; the shared walk now checks every enum index. */
static void test_enum_index_range(void **state) {
    fx_t *fx = *state;
    static const unsigned char found[] = {
        0x00, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x00, 0x00, 0xfa, 0x00, 0x00, 0x00, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    expect_poison(fx,
                  dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(found, sizeof(found)),
                      sizeof(found)),
                  SP_DLQ_UNDECODABLE);
    assert_non_null(strstr(fx->why, "enum index"));
}

static void test_truncated_guarded(void **state) {
    fx_t *fx = *state;
    for (int st = 0; st < SP_STREAM__COUNT; st++) {
        unsigned char msg[1024];
        size_t n = enc(schema_file((sp_stream_t)st), st + 1, base_of((sp_stream_t)st), NULL, msg,
                       sizeof(msg));
        assert_int_equal(dec(fx, (sp_stream_t)st, SP_FORMAT_AVRO, guarded(msg, n), n), SP_OK);
        for (size_t cut = 0; cut < n; cut++) {
            int rc = dec(fx, (sp_stream_t)st, SP_FORMAT_AVRO, guarded(msg, cut), cut);
            expect_poison(fx, rc, SP_DLQ_UNDECODABLE);
        }
    }
    static const char *js = "{\"event_id\":\"e\",\"event_time\":1759999999000,\"type\":\"PAGE_VIEW\","
                            "\"session_id\":\"s\",\"channel\":\"web\",\"device\":\"d\",\"country\":\"PL\"}";
    size_t n = strlen(js);
    assert_int_equal(dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_JSON, guarded(js, n), n), SP_OK);
    for (size_t cut = 0; cut < n; cut++)
        expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_JSON, guarded(js, cut), cut),
                      SP_DLQ_UNDECODABLE);
}

/* Hostile lengths: a string claiming to be huge, a negative length, a varint
 * that never ends, an enum index out of range, a bad union branch. */
static void test_hostile_avro(void **state) {
    fx_t *fx = *state;
    /* clickstream id 1: event_id string first */
    unsigned char huge[] = {0, 0, 0, 0, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 'a', 'b'};
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(huge, sizeof(huge)),
                          sizeof(huge)),
                  SP_DLQ_UNDECODABLE);
    unsigned char neg[] = {0, 0, 0, 0, 1, 0x03, 'a', 'b'};
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(neg, sizeof(neg)),
                          sizeof(neg)),
                  SP_DLQ_UNDECODABLE);
    unsigned char endless[16] = {0, 0, 0, 0, 1};
    memset(endless + 5, 0xff, sizeof(endless) - 5);
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO,
                          guarded(endless, sizeof(endless)), sizeof(endless)),
                  SP_DLQ_UNDECODABLE);

    /* Valid message, then poke the enum index (right after event_id, event_time). */
    size_t n = enc(schema_file(SP_STREAM_CLICKSTREAM), 1, click_base, NULL, fx->buf,
                   sizeof(fx->buf));
    size_t type_at = 5 + 1 + 3 + 6; /* len(1) "e-1"(3) long(6 bytes for ~1.76e12) */
    assert_int_equal(fx->buf[type_at], 3 * 2); /* ADD_TO_CART = 3, zigzag */
    fx->buf[type_at] = 40;                     /* index 20: out of range */
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(fx->buf, n), n),
                  SP_DLQ_UNDECODABLE);
    fx->buf[type_at] = 1; /* index -1 */
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(fx->buf, n), n),
                  SP_DLQ_UNDECODABLE);
    fx->buf[type_at] = 6;
    fx->buf[type_at + 1 + 1 + 3] = 8; /* customer_id union branch 4 (after session_id "s-1") */
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, guarded(fx->buf, n), n),
                  SP_DLQ_UNDECODABLE);
}

/* avro-c's allocations are counted (allocator installed in main()): decoding
 * truncated and hostile bodies must not leave blocks behind. avro-c 1.11.1
 * leaks the buffer of a string that runs past the end of the input unless the
 * decoder rejects such bodies before avro-c reads them. */
static long avro_live_blocks;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr) avro_live_blocks--;
        free(ptr);
        return NULL;
    }
    void *q = realloc(ptr, nsize);
    if (q && !ptr) avro_live_blocks++;
    return q;
}

static void test_no_leak_on_bad_bodies(void **state) {
    fx_t *fx = *state;
    unsigned char msg[1024];
    size_t n = enc(schema_file(SP_STREAM_CHECKOUT), 2, checkout_base, NULL, msg, sizeof(msg));
    assert_int_equal(dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, msg, n), SP_OK);
    long before = avro_live_blocks;
    for (int round = 0; round < 20; round++)
        for (size_t cut = 6; cut < n; cut++)
            expect_poison(fx, dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, msg, cut),
                          SP_DLQ_UNDECODABLE);
    unsigned char huge[] = {0, 0, 0, 0, 2, 6, 'e', '-', '1', 0x80, 0x80, 0x80, 0x80, 0x7f};
    expect_poison(fx, dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, huge, sizeof(huge)),
                  SP_DLQ_UNDECODABLE);
    assert_int_equal(dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, msg, n), SP_OK);
    assert_int_equal(avro_live_blocks, before);
}

static void assert_events_equal(const sp_event_t *a, const sp_event_t *b) {
    assert_int_equal(a->stream, b->stream);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->int_present, b->int_present);
    for (int f = 0; f < SP_I__COUNT; f++)
        if (sp_event_has_int(a, (sp_int_field_t)f)) assert_int_equal(a->i[f], b->i[f]);
    for (int f = 0; f < SP_S__COUNT; f++) {
        assert_int_equal(a->s[f].p == NULL, b->s[f].p == NULL);
        if (a->s[f].p) assert_true(sp_str_eq(a->s[f], b->s[f]));
    }
}

/* Mutations of valid messages: every outcome is OK or a poison reason. */
static void test_mutations(void **state) {
    fx_t *fx = *state;
    uint64_t x = 88172645463325252ULL;
    int outcomes[SP_DLQ__COUNT] = {0};
    for (int st = 0; st < SP_STREAM__COUNT; st++) {
        unsigned char msg[1024], m[1024];
        size_t n = enc(schema_file((sp_stream_t)st), st + 1, base_of((sp_stream_t)st), NULL, msg,
                       sizeof(msg));
        for (int it = 0; it < 5000; it++) {
            memcpy(m, msg, n);
            int flips = 1 + it % 4;
            for (int k = 0; k < flips; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t at = 5 + (size_t)(x % (n - 5));
                m[at] = (unsigned char)(x >> 32);
            }
            size_t len = n - (size_t)((x >> 40) % 3); /* sometimes shorter */
            /* the fast path and the avro-c reference path agree */
            sp_decoder_use_avro_c(fx->d, 1);
            int ref_rc = dec(fx, (sp_stream_t)st, SP_FORMAT_AVRO, guarded(m, len), len);
            sp_dlq_reason_t ref_reason = fx->reason;
            sp_event_t ref = fx->ev;
            sp_decoder_use_avro_c(fx->d, fx->avro_c);
            int rc = dec(fx, (sp_stream_t)st, SP_FORMAT_AVRO, guarded(m, len), len);
            assert_true(rc == SP_OK || rc == SP_ERR_POISON);
            assert_int_equal(rc, ref_rc);
            assert_int_equal(fx->reason, ref_reason);
            if (rc == SP_OK) assert_events_equal(&fx->ev, &ref);
            outcomes[fx->reason]++;
            if ((it & 1023) == 0) sp_arena_reset(fx->arena);
        }
    }
    assert_true(outcomes[SP_DLQ_NONE] > 0);
    assert_true(outcomes[SP_DLQ_UNDECODABLE] > 0);
    sp_arena_reset(fx->arena);
}

/* ---- validation (both formats) ---- */

static char long_str[2000];

static const char *rep(char c, size_t n) {
    assert_true(n < sizeof(long_str));
    memset(long_str, c, n);
    long_str[n] = '\0';
    return long_str;
}

static void test_validation_avro(void **state) {
    fx_t *fx = *state;
    struct {
        sp_stream_t st;
        fv_t over[3];
        sp_dlq_reason_t want;
    } cases[] = {
        {SP_STREAM_CLICKSTREAM, {S("event_id", ""), END}, SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CLICKSTREAM, {S("session_id", ""), END}, SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CHECKOUT, {N("order_id"), END}, SP_DLQ_MISSING_FIELD}, /* ORDER_PLACED */
        {SP_STREAM_CHECKOUT, {E("type", "ORDER_CANCELLED"), N("order_id"), END},
         SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CHECKOUT, {E("type", "CHECKOUT_STARTED"), N("order_id"), END}, SP_DLQ_NONE},
        {SP_STREAM_CLICKSTREAM, {L("event_time", SP_DECODE_MIN_TIME_MS - 1), END},
         SP_DLQ_BAD_TIMESTAMP},
        {SP_STREAM_CLICKSTREAM, {L("event_time", SP_DECODE_MIN_TIME_MS), END}, SP_DLQ_NONE},
        {SP_STREAM_CLICKSTREAM, {L("event_time", NOW + DAY), END}, SP_DLQ_NONE},
        {SP_STREAM_CLICKSTREAM, {L("event_time", NOW + DAY + 1), END}, SP_DLQ_BAD_TIMESTAMP},
        {SP_STREAM_CLICKSTREAM, {L("event_time", -5), END}, SP_DLQ_BAD_TIMESTAMP},
        {SP_STREAM_SHIPMENT, {L("promised_delivery_time", 0), END}, SP_DLQ_BAD_TIMESTAMP},
        {SP_STREAM_CHECKOUT, {L("amount_cents", -1), END}, SP_DLQ_NEGATIVE_AMOUNT},
        {SP_STREAM_CHECKOUT, {L("amount_cents", 0), END}, SP_DLQ_NONE},
        {SP_STREAM_CHECKOUT, {L("item_count", -1), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("csat", 0), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("csat", 6), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("csat", 1), L("nps", 0), END}, SP_DLQ_NONE},
        {SP_STREAM_SUPPORT, {L("nps", 11), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("nps", -1), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("ces", 0), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("ces", 8), END}, SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT, {L("ces", 7), L("nps", 10), END}, SP_DLQ_NONE},
        /* SPEC order: missing beats bad timestamp, timestamp beats amount... */
        {SP_STREAM_CHECKOUT, {S("event_id", ""), L("event_time", 1), END}, SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CHECKOUT, {L("amount_cents", -1), L("event_time", 1), END},
         SP_DLQ_BAD_TIMESTAMP},
        {SP_STREAM_SUPPORT, {L("csat", 9), L("event_time", 1), END}, SP_DLQ_BAD_TIMESTAMP},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = roundtrip(fx, cases[i].st, cases[i].over);
        if (cases[i].want == SP_DLQ_NONE) {
            if (rc != SP_OK) fprintf(stderr, "case %zu: %s\n", i, fx->why);
            assert_int_equal(rc, SP_OK);
        } else {
            if (rc != SP_ERR_POISON || fx->reason != cases[i].want) fprintf(stderr, "case %zu\n", i);
            expect_poison(fx, rc, cases[i].want);
        }
    }

    /* String lengths: ids/dimensions max 256 bytes, failure_reason max 1024. */
    static const char *id_fields[] = {"event_id", "session_id", "customer_id", "product_id",
                                      "channel",  "device",     "country"};
    for (size_t i = 0; i < sizeof(id_fields) / sizeof(id_fields[0]); i++) {
        fv_t ok[] = {S(id_fields[i], rep('a', SP_MAX_ID_LEN)), END};
        assert_int_equal(roundtrip(fx, SP_STREAM_CLICKSTREAM, ok), SP_OK);
        fv_t bad[] = {S(id_fields[i], rep('a', SP_MAX_ID_LEN + 1)), END};
        expect_poison(fx, roundtrip(fx, SP_STREAM_CLICKSTREAM, bad), SP_DLQ_STRING_TOO_LONG);
        assert_non_null(strstr(fx->why, id_fields[i]));
    }
    fv_t fr_ok[] = {S("failure_reason", rep('x', SP_MAX_TEXT_LEN)), END};
    assert_int_equal(roundtrip(fx, SP_STREAM_CHECKOUT, fr_ok), SP_OK);
    assert_int_equal(fx->ev.s[SP_S_FAILURE_REASON].len, SP_MAX_TEXT_LEN);
    fv_t fr_bad[] = {S("failure_reason", rep('x', SP_MAX_TEXT_LEN + 1)), END};
    expect_poison(fx, roundtrip(fx, SP_STREAM_CHECKOUT, fr_bad), SP_DLQ_STRING_TOO_LONG);
    fv_t cur_bad[] = {S("currency", rep('x', SP_MAX_ID_LEN + 1)), END};
    expect_poison(fx, roundtrip(fx, SP_STREAM_CHECKOUT, cur_bad), SP_DLQ_STRING_TOO_LONG);
    fv_t carrier_bad[] = {S("carrier", rep('x', 300)), END};
    expect_poison(fx, roundtrip(fx, SP_STREAM_SHIPMENT, carrier_bad), SP_DLQ_STRING_TOO_LONG);
    /* too long but also missing: missing first */
    fv_t both[] = {S("carrier", rep('x', 300)), S("shipment_id", ""), END};
    expect_poison(fx, roundtrip(fx, SP_STREAM_SHIPMENT, both), SP_DLQ_MISSING_FIELD);
}

/* ---- JSON ---- */

static int js(fx_t *fx, sp_stream_t st, const char *text) {
    return dec(fx, st, SP_FORMAT_JSON, text, strlen(text));
}

#define CLICK_J(extra)                                                                            \
    "{\"event_id\":\"j-1\",\"event_time\":1759999990000,\"type\":\"PRODUCT_VIEW\","              \
    "\"session_id\":\"s-9\",\"channel\":\"mobile_app\",\"device\":\"mobile\",\"country\":\"US\"" \
    extra "}"

static void test_json_ok(void **state) {
    fx_t *fx = *state;
    assert_int_equal(js(fx, SP_STREAM_CLICKSTREAM, CLICK_J("")), SP_OK);
    assert_int_equal(fx->ev.type, SP_T_PRODUCT_VIEW);
    assert_str(fx->ev.s[SP_S_EVENT_ID], "j-1");
    assert_str(fx->ev.s[SP_S_CHANNEL], "mobile_app");
    assert_str(fx->ev.s[SP_S_CUSTOMER_ID], NULL);
    assert_int_equal(fx->ev.i[SP_I_EVENT_TIME], 1759999990000LL);

    assert_int_equal(js(fx, SP_STREAM_CLICKSTREAM,
                        CLICK_J(",\"customer_id\":null,\"product_id\":\"p\",\"extra\":[1,{}]")),
                     SP_OK);
    assert_str(fx->ev.s[SP_S_PRODUCT_ID], "p");
    assert_str(fx->ev.s[SP_S_CUSTOMER_ID], NULL);

    assert_int_equal(js(fx, SP_STREAM_SUPPORT,
                        "{\"event_id\":\"j-2\",\"event_time\":1759999990000,\"type\":"
                        "\"AGENT_REPLIED\",\"ticket_id\":\"t\",\"channel\":\"chat\"}"),
                     SP_OK);
    assert_int_equal(fx->ev.type, SP_T_AGENT_REPLIED);
    assert_true(sp_event_has_int(&fx->ev, SP_I_IS_BOT)); /* default false */
    assert_int_equal(fx->ev.i[SP_I_IS_BOT], 0);
    assert_int_equal(js(fx, SP_STREAM_SUPPORT,
                        "{\"event_id\":\"j-2\",\"event_time\":1759999990000,\"type\":"
                        "\"SURVEY_RESPONSE\",\"ticket_id\":\"t\",\"channel\":\"chat\","
                        "\"is_bot\":true,\"csat\":4,\"nps\":null,\"ces\":7}"),
                     SP_OK);
    assert_int_equal(fx->ev.i[SP_I_IS_BOT], 1);
    assert_int_equal(fx->ev.i[SP_I_CSAT], 4);
    assert_false(sp_event_has_int(&fx->ev, SP_I_NPS));

    assert_int_equal(js(fx, SP_STREAM_CHECKOUT,
                        "{\"event_id\":\"j-3\",\"event_time\":1759999990000,\"type\":"
                        "\"ORDER_PLACED\",\"order_id\":\"o\",\"amount_cents\":999,\"currency\":"
                        "\"EUR\",\"item_count\":1,\"payment_method\":\"card\",\"channel\":\"web\","
                        "\"device\":\"desktop\",\"country\":\"FR\"}  \n"),
                     SP_OK);
    assert_int_equal(fx->ev.i[SP_I_AMOUNT_CENTS], 999);
    assert_str(fx->ev.s[SP_S_SESSION_ID], NULL);

    assert_int_equal(js(fx, SP_STREAM_SHIPMENT,
                        "{\"event_id\":\"j-4\",\"event_time\":1759999990000,\"type\":\"RETURNED\","
                        "\"shipment_id\":\"sh\",\"order_id\":\"o\",\"carrier\":\"ups\","
                        "\"country\":\"US\",\"promised_delivery_time\":1759999990000}"),
                     SP_OK);
    assert_int_equal(fx->ev.type, SP_T_RETURNED);
    assert_false(sp_event_has_int(&fx->ev, SP_I_ORDER_PLACED_TIME));
}

static void test_json_bad(void **state) {
    fx_t *fx = *state;
    struct {
        sp_stream_t st;
        const char *text;
        sp_dlq_reason_t want;
    } cases[] = {
        {SP_STREAM_CLICKSTREAM, "", SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, "[1,2]", SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, "\"str\"", SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, "{\"event_id\":", SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, CLICK_J("") "x", SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, CLICK_J("") CLICK_J(""), SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, CLICK_J(",\"event_id\":\"dup\""), SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, CLICK_J(",\"product_id\":5"), SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":\"2025-10-01\",\"type\":\"PAGE_VIEW\"}",
         SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":1759999990000.5,\"type\":\"PAGE_VIEW\"}",
         SP_DLQ_UNDECODABLE},
        {SP_STREAM_CLICKSTREAM, "{}", SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"PAGE_VIEW\","
         "\"session_id\":null,\"channel\":\"w\",\"device\":\"d\",\"country\":\"PL\"}",
         SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":null,"
         "\"session_id\":\"s\",\"channel\":\"w\",\"device\":\"d\",\"country\":\"PL\"}",
         SP_DLQ_MISSING_FIELD},
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"ORDER_PLACED\","
         "\"session_id\":\"s\",\"channel\":\"w\",\"device\":\"d\",\"country\":\"PL\"}",
         SP_DLQ_BAD_ENUM}, /* a symbol of another stream */
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"page_view\","
         "\"session_id\":\"s\",\"channel\":\"w\",\"device\":\"d\",\"country\":\"PL\"}",
         SP_DLQ_BAD_ENUM},
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"NOPE\","
         "\"channel\":\"w\",\"device\":\"d\",\"country\":\"PL\"}",
         SP_DLQ_MISSING_FIELD}, /* missing session_id beats the bad enum */
        {SP_STREAM_CLICKSTREAM,
         "{\"event_id\":\"j\",\"event_time\":946684799999,\"type\":\"PAGE_VIEW\","
         "\"session_id\":\"s\",\"channel\":\"w\",\"device\":\"d\",\"country\":\"PL\"}",
         SP_DLQ_BAD_TIMESTAMP},
        {SP_STREAM_CHECKOUT,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"ORDER_PLACED\","
         "\"order_id\":\"o\",\"amount_cents\":-100,\"currency\":\"EUR\",\"item_count\":1,"
         "\"payment_method\":\"card\",\"channel\":\"web\",\"device\":\"d\",\"country\":\"FR\"}",
         SP_DLQ_NEGATIVE_AMOUNT},
        {SP_STREAM_CHECKOUT,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"ORDER_PLACED\","
         "\"amount_cents\":100,\"currency\":\"EUR\",\"item_count\":1,"
         "\"payment_method\":\"card\",\"channel\":\"web\",\"device\":\"d\",\"country\":\"FR\"}",
         SP_DLQ_MISSING_FIELD}, /* ORDER_PLACED without order_id */
        {SP_STREAM_CHECKOUT,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"CHECKOUT_STARTED\","
         "\"amount_cents\":100,\"currency\":\"EUR\",\"payment_method\":\"card\","
         "\"channel\":\"web\",\"device\":\"d\",\"country\":\"FR\"}",
         SP_DLQ_MISSING_FIELD}, /* item_count has no default in the schema */
        {SP_STREAM_SUPPORT,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"SURVEY_RESPONSE\","
         "\"ticket_id\":\"t\",\"channel\":\"chat\",\"nps\":12}",
         SP_DLQ_BAD_VALUE},
        {SP_STREAM_SUPPORT,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"SURVEY_RESPONSE\","
         "\"ticket_id\":\"t\",\"channel\":\"chat\",\"csat\":4294967297}",
         SP_DLQ_BAD_VALUE}, /* out of int range, would wrap to 1 */
        {SP_STREAM_SUPPORT,
         "{\"event_id\":\"j\",\"event_time\":1759999990000,\"type\":\"SURVEY_RESPONSE\","
         "\"ticket_id\":\"t\",\"channel\":\"chat\",\"is_bot\":1}",
         SP_DLQ_UNDECODABLE},
        {SP_STREAM_SUPPORT,
         "{\"event_id\":\"j\",\"event_time\":99999999999999999999999,\"type\":\"TICKET_OPENED\","
         "\"ticket_id\":\"t\",\"channel\":\"chat\"}",
         SP_DLQ_UNDECODABLE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = js(fx, cases[i].st, cases[i].text);
        if (rc != SP_ERR_POISON || fx->reason != cases[i].want)
            fprintf(stderr, "json case %zu: %s\n", i, cases[i].text);
        expect_poison(fx, rc, cases[i].want);
    }
    /* over-long string */
    char big[sizeof(long_str) + 256];
    snprintf(big, sizeof(big), CLICK_J(",\"product_id\":\"%s\""), rep('p', 257));
    expect_poison(fx, js(fx, SP_STREAM_CLICKSTREAM, big), SP_DLQ_STRING_TOO_LONG);
    /* embedded NUL in the buffer is not JSON */
    const char nul[] = "{\"a\":1}\0{}";
    expect_poison(fx, dec(fx, SP_STREAM_CLICKSTREAM, SP_FORMAT_JSON, nul, sizeof(nul) - 1),
                  SP_DLQ_UNDECODABLE);
}

static void test_bad_args(void **state) {
    fx_t *fx = *state;
    sp_dlq_reason_t r;
    char why[64];
    assert_int_equal(sp_decoder_decode(NULL, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, "", 0, NOW,
                                       fx->arena, &fx->ev, &r, why, sizeof(why)),
                     SP_ERR_INVALID);
    assert_int_equal(sp_decoder_decode(fx->d, SP_STREAM__COUNT, SP_FORMAT_AVRO, "", 0, NOW,
                                       fx->arena, &fx->ev, &r, why, sizeof(why)),
                     SP_ERR_INVALID);
    assert_int_equal(sp_decoder_decode(fx->d, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, NULL, 3, NOW,
                                       fx->arena, &fx->ev, &r, why, sizeof(why)),
                     SP_ERR_INVALID);
    /* why may be NULL */
    assert_int_equal(sp_decoder_decode(fx->d, SP_STREAM_CLICKSTREAM, SP_FORMAT_AVRO, "x", 1, NOW,
                                       fx->arena, &fx->ev, &r, NULL, 0),
                     SP_ERR_POISON);
    assert_int_equal(r, SP_DLQ_UNDECODABLE);
}

/* ---- throughput (printed, not asserted) ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_throughput(void **state) {
    fx_t *fx = *state;
    const int iters = getenv("SP_DECODE_BENCH_N") ? atoi(getenv("SP_DECODE_BENCH_N")) : 200000;
    unsigned char msg[1024];
    size_t n = enc(schema_file(SP_STREAM_CHECKOUT), 2, checkout_base, NULL, msg, sizeof(msg));
    double t0 = now_s();
    for (int i = 0; i < iters; i++) {
        if (dec(fx, SP_STREAM_CHECKOUT, SP_FORMAT_AVRO, msg, n) != SP_OK) fail();
        if ((i & 4095) == 4095) sp_arena_reset(fx->arena);
    }
    double t1 = now_s();
    const char *j = "{\"event_id\":\"j-3\",\"event_time\":1759999990000,\"type\":\"ORDER_PLACED\","
                    "\"order_id\":\"o-1\",\"session_id\":\"s-1\",\"customer_id\":\"c-1\","
                    "\"amount_cents\":12345,\"currency\":\"USD\",\"item_count\":2,"
                    "\"payment_method\":\"card\",\"failure_reason\":null,\"channel\":\"web\","
                    "\"device\":\"mobile\",\"country\":\"DE\"}";
    for (int i = 0; i < iters; i++) {
        if (js(fx, SP_STREAM_CHECKOUT, j) != SP_OK) fail();
        if ((i & 4095) == 4095) sp_arena_reset(fx->arena);
    }
    double t2 = now_s();
    printf("decode throughput (checkout, %zu B Avro / %zu B JSON): avro %.0f rec/s, json %.0f "
           "rec/s\n",
           n, strlen(j), iters / (t1 - t0), iters / (t2 - t1));
    sp_arena_reset(fx->arena);
}

int main(void) {
    avro_set_allocator(counting_alloc, NULL); /* before avro-c allocates anything */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avro_clickstream),
        cmocka_unit_test(test_avro_checkout),
        cmocka_unit_test(test_avro_shipment_support),
        cmocka_unit_test(test_evolution_old_writer),
        cmocka_unit_test(test_evolution_new_writer),
        cmocka_unit_test(test_bad_writer_schemas),
        cmocka_unit_test(test_decoder_new_errors),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_padded_varint),
        cmocka_unit_test(test_enum_index_range),
        cmocka_unit_test(test_truncated_guarded),
        cmocka_unit_test(test_hostile_avro),
        cmocka_unit_test(test_no_leak_on_bad_bodies),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_validation_avro),
        cmocka_unit_test(test_json_ok),
        cmocka_unit_test(test_json_bad),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_throughput),
    };
    /* Every test twice: the decoder's own Avro reader, then avro-c's. */
    int rc = cmocka_run_group_tests_name("direct Avro reader", tests, setup, teardown);
    rc += cmocka_run_group_tests_name("avro-c generic value reader", tests, setup_avro_c, teardown);
    if (guard_region) munmap(guard_region, guard_size + (size_t)sysconf(_SC_PAGESIZE));
    return rc;
}
