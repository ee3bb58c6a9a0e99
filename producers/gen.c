/* gen.c -- synthetic store traffic (`storepulse gen` and the in-process API).
 *
 * What: shopping sessions arrive as a Poisson process in event time; each has
 * a fixed channel, device, country and (70 %) a logged-in customer from a
 * skewed pool, so some customers come back. A session walks a funnel --
 * browsing, product views, cart adds/removes, checkout, payment (with
 * failures and retries), order, rare cancellation -- with 2-90 s of event
 * time between its events. All sessions in flight sit in a min-heap by the
 * time of their next event, so the output is in event-time order
 * (out-of-orderness ~0) with sessions interleaved as on a real store.
 * Each event becomes one message: Confluent framing (magic 0, 4-byte
 * big-endian schema id) + Avro binary written by avro-c with one reused
 * value and writer per stream, or a JSON object from a small writer here.
 * With probability `duplicates`, a message is re-sent byte for byte a few
 * messages later (at-least-once producers do that).
 *
 * Why: demos, benchmarks and tests need realistic, reproducible input. One
 * PRNG (splitmix64) seeded by the caller drives everything, and ids are
 * derived from the seed and counters, so the same seed and options give
 * byte-identical messages; no wall clock is read inside the generator.
 *
 * Extending: an entity kind (gen_kinds[]) has a step function that picks its
 * next event and advances its state; a stream (gen_streams[]) has its key
 * function and its JSON field list. Shipments and tickets can be added as
 * new kinds spawned by orders, without touching the heap or the encoders:
 * the Avro encoder maps the writer schema's fields to sp_event_t slots by
 * name, for any stream.
 *
 * What it deliberately does not do: shipments and support tickets (not yet),
 * scripted incidents (--scenario), late or out-of-order events beyond the
 * duplicates, malformed messages. A cold start (the default) begins with no
 * session in flight, so the full rate and event mix are reached after about
 * one session length (~5 min of event time); a warm start simulates the
 * preceding 30 min without emitting (bounded to ~4 M sessions). In-flight
 * sessions are capped (GEN_MAX_SESSIONS, ~64 MiB): at --rate above ~20 k
 * events/s the cap slows session arrivals (the event-time rate falls short
 * of --rate) rather than growing memory; messages per second of wall time
 * are unaffected. */
#include "producers/gen.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avro.h>
#include <librdkafka/rdkafka.h>

#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"

#define GEN_MAX_SESSIONS      (1u << 20) /* in flight, ~64 B each */
#define GEN_MSG_MAX           4096       /* encoded message, framing included */
#define GEN_DUP_SLOTS         64         /* duplicates waiting to be re-sent */
#define GEN_DUP_MAX_DELAY     16         /* re-sent 1..16 messages later */
#define GEN_CUSTOMER_POOL     100000
#define GEN_PRODUCT_POOL      5000
#define GEN_GAP_MIN_MS        2000
#define GEN_GAP_MAX_MS        90000
#define GEN_ID_MAX            48
#define GEN_WARM_MS           (30 * 60 * 1000.0) /* longer than any session */
#define GEN_WARM_MAX_SESSIONS 4e6

/* ---- PRNG: splitmix64 ---------------------------------------------------- */

typedef struct gen_rng {
    uint64_t s;
} gen_rng_t;

static uint64_t rng_next(gen_rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static uint32_t rng_below(gen_rng_t *r, uint32_t n) {
    return (uint32_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [0, 1). */
static double rng_unit(gen_rng_t *r) {
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static int rng_chance(gen_rng_t *r, double p) {
    return rng_unit(r) < p;
}

/* Weighted choice; weights sum to 100. */
static uint8_t rng_pick(gen_rng_t *r, const uint8_t *w, int n) {
    uint32_t x = rng_below(r, 100), acc = 0;
    for (int i = 0; i < n; i++) {
        acc += w[i];
        if (x < acc) return (uint8_t)i;
    }
    return (uint8_t)(n - 1);
}

/* ---- the store's vocabulary --------------------------------------------- */

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *const channels[] = {"web", "mobile_app", "social", "marketplace"};
static const uint8_t channel_w[] = {55, 30, 10, 5};
static const char *const devices[] = {"desktop", "mobile", "tablet"};
static const uint8_t device_w[][3] = {{60, 30, 10}, {0, 85, 15}, {15, 80, 5}, {50, 45, 5}};
static const char *const countries[] = {"US", "GB", "DE", "FR", "PL", "NL", "ES", "IT", "CA", "SE"};
static const uint8_t country_w[] = {35, 12, 12, 10, 8, 6, 5, 5, 4, 3};
static const char *const currencies[] = {"USD", "EUR", "GBP"};
static const uint8_t currency_w[] = {85, 10, 5};
static const char *const payments[] = {"card", "paypal", "apple_pay", "google_pay", "klarna"};
static const uint8_t payment_w[] = {65, 20, 8, 5, 2};
static const char *const failures[] = {"card_declined", "insufficient_funds", "fraud_suspected",
                                       "gateway_timeout", "authentication_failed"};
static const uint8_t failure_w[] = {40, 25, 10, 15, 10};

/* ---- entities ------------------------------------------------------------ */

typedef enum gen_state {
    S_BROWSE = 0,
    S_VIEW,
    S_ADD,
    S_REMOVE,
    S_CHECKOUT,
    S_SUBMIT,
    S_FAILED,
    S_ORDER,
    S_CANCEL,
    S_DONE
} gen_state_t;

typedef enum gen_kind { K_SESSION = 0, K__COUNT } gen_kind_t;

/* One thing in flight that emits events: for now a shopping session. */
typedef struct gen_entity {
    int64_t next_ms;   /* event time of its next event (heap key) */
    uint64_t seq;      /* unique per generator: session number, heap tie-break */
    uint64_t order_no; /* 0 until ORDER_PLACED */
    int64_t amount_cents;
    uint32_t customer; /* 0: guest, else 1..GEN_CUSTOMER_POOL */
    uint32_t product;  /* product of the current cart/view event, 1.. */
    uint8_t kind, state;
    uint8_t channel, device, country, currency, payment, failure;
    uint8_t left; /* events left in the current phase */
    uint8_t items, fails;
} gen_entity_t;

/* ---- streams ------------------------------------------------------------- */

typedef enum gen_fkind { F_STR = 0, F_INT, F_BOOL, F_TYPE, F_NULL } gen_fkind_t;

typedef struct gen_field {
    uint8_t kind; /* gen_fkind_t */
    uint8_t slot; /* sp_str_field_t or sp_int_field_t */
} gen_field_t;

#define FS(x)                                                                                      \
    { F_STR, SP_S_##x }
#define FI(x)                                                                                      \
    { F_INT, SP_I_##x }
#define FB(x)                                                                                      \
    { F_BOOL, SP_I_##x }
#define FT                                                                                         \
    { F_TYPE, 0 }

/* JSON field order per stream (the Avro schemas' order). */
static const gen_field_t json_clickstream[] = {FS(EVENT_ID),   FI(EVENT_TIME),  FT,
                                               FS(SESSION_ID), FS(CUSTOMER_ID), FS(PRODUCT_ID),
                                               FS(CHANNEL),    FS(DEVICE),      FS(COUNTRY)};
static const gen_field_t json_checkout[] = {
    FS(EVENT_ID),       FI(EVENT_TIME),   FT,           FS(ORDER_ID),   FS(SESSION_ID),
    FS(CUSTOMER_ID),    FI(AMOUNT_CENTS), FS(CURRENCY), FI(ITEM_COUNT), FS(PAYMENT_METHOD),
    FS(FAILURE_REASON), FS(CHANNEL),      FS(DEVICE),   FS(COUNTRY)};
static const gen_field_t json_shipment[] = {
    FS(EVENT_ID),         FI(EVENT_TIME), FT,
    FS(SHIPMENT_ID),      FS(ORDER_ID),   FS(CUSTOMER_ID),
    FS(CARRIER),          FS(COUNTRY),    FI(PROMISED_DELIVERY_TIME),
    FI(ORDER_PLACED_TIME)};
static const gen_field_t json_support[] = {
    FS(EVENT_ID), FI(EVENT_TIME), FT,       FS(TICKET_ID), FS(CUSTOMER_ID), FS(ORDER_ID),
    FS(CHANNEL),  FB(IS_BOT),     FI(CSAT), FI(NPS),       FI(CES)};

static sp_str_t key_by_session(const sp_event_t *ev) {
    return ev->s[SP_S_SESSION_ID];
}
static sp_str_t key_by_customer(const sp_event_t *ev) {
    return ev->s[SP_S_CUSTOMER_ID].p ? ev->s[SP_S_CUSTOMER_ID] : ev->s[SP_S_SESSION_ID];
}
static sp_str_t key_by_order(const sp_event_t *ev) {
    return ev->s[SP_S_ORDER_ID];
}
static sp_str_t key_by_ticket(const sp_event_t *ev) {
    return ev->s[SP_S_TICKET_ID];
}

typedef struct gen_stream_def {
    const gen_field_t *json;
    int json_cnt;
    sp_str_t (*key)(const sp_event_t *ev);
    int generated; /* emitted by some entity kind (schema required) */
} gen_stream_def_t;

static const gen_stream_def_t gen_streams[SP_STREAM__COUNT] = {
    [SP_STREAM_CLICKSTREAM] = {json_clickstream, N_OF(json_clickstream), key_by_session, 1},
    [SP_STREAM_CHECKOUT] = {json_checkout, N_OF(json_checkout), key_by_customer, 1},
    [SP_STREAM_SHIPMENT] = {json_shipment, N_OF(json_shipment), key_by_order, 0},
    [SP_STREAM_SUPPORT] = {json_support, N_OF(json_support), key_by_ticket, 0},
};

/* Avro field of a writer schema, mapped to an event slot once. */
typedef struct gen_avro_field {
    uint8_t kind; /* gen_fkind_t; F_NULL: unknown nullable field */
    uint8_t slot;
    int8_t null_branch; /* -1: not a union */
    int8_t val_branch;
    avro_type_t base; /* AVRO_STRING, AVRO_INT64, AVRO_INT32, AVRO_BOOLEAN, AVRO_ENUM */
} gen_avro_field_t;

#define GEN_MAX_FIELDS 64

typedef struct gen_encoder {
    sp_format_t format;
    int32_t schema_id;
    avro_schema_t schema;      /* owned */
    avro_value_iface_t *iface; /* owned */
    avro_value_t value;        /* owned, reused for every event */
    int value_ok;
    avro_writer_t writer; /* owned, over sp_gen.out + 5 */
    gen_avro_field_t fields[GEN_MAX_FIELDS];
    int field_cnt;
    int sym_of_type[SP_T__COUNT]; /* enum symbol index, -1 if absent */
} gen_encoder_t;

typedef struct gen_dup {
    int used;
    sp_stream_t st;
    uint64_t due; /* message number at which to re-send */
    int64_t event_time;
    size_t keylen, vallen;
    char key[GEN_ID_MAX];
    char val[GEN_MSG_MAX];
} gen_dup_t;

struct sp_gen {
    gen_rng_t rng;
    uint64_t seed;
    double duplicates;
    double mean_gap_ms; /* between session arrivals */
    double arrival_ms;  /* event time of the next session arrival */
    int64_t last_ms;    /* event time of the last new event */

    gen_entity_t *heap; /* owned; min-heap by (next_ms, seq) */
    uint32_t heap_cnt;

    uint64_t session_seq, order_seq, event_seq, msg_no;
    sp_gen_stats_t stats;

    gen_encoder_t enc[SP_STREAM__COUNT];

    /* Scratch for the event being emitted; ev's views point here. */
    sp_event_t ev;
    char event_id[GEN_ID_MAX], session_id[GEN_ID_MAX], customer_id[GEN_ID_MAX];
    char order_id[GEN_ID_MAX], product_id[GEN_ID_MAX];
    char out[GEN_MSG_MAX]; /* the encoded value */
    char key[GEN_ID_MAX];

    gen_dup_t dups[GEN_DUP_SLOTS];
    int dup_pending;

    char errstr[256];
};

static void gen_err(sp_gen_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gen_err(sp_gen_t *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->errstr, sizeof(g->errstr), fmt, ap);
    va_end(ap);
}

/* ---- the session funnel -------------------------------------------------- */

static uint32_t pick_skewed(gen_rng_t *r, uint32_t pool) {
    double u = rng_unit(r);
    return 1 + (uint32_t)(u * u * pool); /* low ids are popular */
}

static int64_t product_price_cents(uint32_t product) {
    uint64_t h = (uint64_t)product * 0x9e3779b97f4a7c15ULL;
    return 299 + (int64_t)((h >> 40) % 19700); /* 2.99 .. 199.98 */
}

static void session_init(gen_rng_t *r, gen_entity_t *e) {
    e->kind = K_SESSION;
    e->state = S_BROWSE;
    e->channel = rng_pick(r, channel_w, N_OF(channel_w));
    e->device = rng_pick(r, device_w[e->channel], N_OF(devices));
    e->country = rng_pick(r, country_w, N_OF(country_w));
    e->customer = rng_chance(r, 0.70) ? pick_skewed(r, GEN_CUSTOMER_POOL) : 0;
    e->left = (uint8_t)(1 + rng_below(r, 6));
}

static uint8_t after_cart(gen_rng_t *r) {
    return rng_chance(r, 0.60) ? S_CHECKOUT : S_DONE;
}

/* Picks the event the session emits now and moves it to its next state.
 * Uses only the PRNG and the entity, so it also serves the rate estimate. */
static sp_event_type_t session_advance(gen_rng_t *r, gen_entity_t *e) {
    sp_event_type_t t = SP_T_PAGE_VIEW;

    switch ((gen_state_t)e->state) {
    case S_BROWSE:
        t = rng_chance(r, 0.70) ? SP_T_PAGE_VIEW : SP_T_SEARCH;
        if (--e->left > 0) break;
        if (rng_chance(r, 0.70)) {
            e->state = S_VIEW;
            e->left = (uint8_t)(1 + rng_below(r, 3));
        } else {
            e->state = S_DONE;
        }
        break;
    case S_VIEW:
        t = SP_T_PRODUCT_VIEW;
        e->product = pick_skewed(r, GEN_PRODUCT_POOL);
        if (--e->left > 0) break;
        if (rng_chance(r, 0.35)) {
            e->state = S_ADD;
            e->left = (uint8_t)(1 + rng_below(r, 3));
        } else {
            e->state = S_DONE;
        }
        break;
    case S_ADD:
        t = SP_T_ADD_TO_CART;
        if (e->items > 0) e->product = pick_skewed(r, GEN_PRODUCT_POOL); /* first: the viewed one */
        e->items++;
        e->amount_cents += product_price_cents(e->product);
        if (--e->left > 0) break;
        e->state = (e->items > 1 && rng_chance(r, 0.15)) ? S_REMOVE : after_cart(r);
        break;
    case S_REMOVE:
        t = SP_T_REMOVE_FROM_CART; /* the last product added */
        e->items--;
        e->amount_cents -= product_price_cents(e->product);
        e->state = after_cart(r);
        break;
    case S_CHECKOUT:
        t = SP_T_CHECKOUT_STARTED;
        e->currency = rng_pick(r, currency_w, N_OF(currency_w));
        e->payment = rng_pick(r, payment_w, N_OF(payment_w));
        e->state = rng_chance(r, 0.90) ? S_SUBMIT : S_DONE;
        break;
    case S_SUBMIT:
        t = SP_T_PAYMENT_SUBMITTED;
        if (rng_chance(r, 0.08)) {
            e->state = S_FAILED;
            e->failure = rng_pick(r, failure_w, N_OF(failure_w));
        } else {
            e->state = S_ORDER;
        }
        break;
    case S_FAILED:
        t = SP_T_PAYMENT_FAILED;
        e->fails++;
        if (e->fails < 3 && rng_chance(r, 0.50)) {
            e->state = S_SUBMIT;
            if (rng_chance(r, 0.30)) e->payment = rng_pick(r, payment_w, N_OF(payment_w));
        } else {
            e->state = S_DONE;
        }
        break;
    case S_ORDER:
        t = SP_T_ORDER_PLACED;
        e->state = rng_chance(r, 0.02) ? S_CANCEL : S_DONE;
        break;
    case S_CANCEL:
        t = SP_T_ORDER_CANCELLED;
        e->state = S_DONE;
        break;
    case S_DONE: assert(0); break;
    }
    return t;
}

/* Fill g->ev for event type t of session e at e->next_ms. */
static void session_fill(sp_gen_t *g, gen_entity_t *e, sp_event_type_t t) {
    sp_event_t *ev = &g->ev;
    int n;

#define SET_STR(f, buf, sz) (ev->s[f].p = (buf), ev->s[f].len = (uint32_t)(sz))
#define SET_LIT(f, lit)     SET_STR(f, lit, strlen(lit))

    memset(ev, 0, sizeof(*ev));
    ev->type = t;
    ev->stream = t < SP_T_CHECKOUT_STARTED ? SP_STREAM_CLICKSTREAM : SP_STREAM_CHECKOUT;
    sp_event_set_int(ev, SP_I_EVENT_TIME, e->next_ms);
    n = snprintf(g->session_id, sizeof(g->session_id), "s-%" PRIx64 "-%" PRIu64, g->seed, e->seq);
    SET_STR(SP_S_SESSION_ID, g->session_id, n);
    if (e->customer) {
        n = snprintf(g->customer_id, sizeof(g->customer_id), "c%07" PRIu32, e->customer);
        SET_STR(SP_S_CUSTOMER_ID, g->customer_id, n);
    }
    SET_LIT(SP_S_CHANNEL, channels[e->channel]);
    SET_LIT(SP_S_DEVICE, devices[e->device]);
    SET_LIT(SP_S_COUNTRY, countries[e->country]);

    if (ev->stream == SP_STREAM_CLICKSTREAM) {
        if (t == SP_T_PRODUCT_VIEW || t == SP_T_ADD_TO_CART || t == SP_T_REMOVE_FROM_CART) {
            n = snprintf(g->product_id, sizeof(g->product_id), "p%05" PRIu32, e->product);
            SET_STR(SP_S_PRODUCT_ID, g->product_id, n);
        }
        return;
    }
    if (t == SP_T_ORDER_PLACED && e->order_no == 0) {
        e->order_no = ++g->order_seq;
        g->stats.orders++;
    }
    if (t == SP_T_ORDER_PLACED || t == SP_T_ORDER_CANCELLED) {
        n = snprintf(g->order_id, sizeof(g->order_id), "o-%" PRIx64 "-%" PRIu64, g->seed,
                     e->order_no);
        SET_STR(SP_S_ORDER_ID, g->order_id, n);
    }
    sp_event_set_int(ev, SP_I_AMOUNT_CENTS, e->amount_cents);
    sp_event_set_int(ev, SP_I_ITEM_COUNT, e->items);
    SET_LIT(SP_S_CURRENCY, currencies[e->currency]);
    SET_LIT(SP_S_PAYMENT_METHOD, payments[e->payment]);
    if (t == SP_T_PAYMENT_FAILED) SET_LIT(SP_S_FAILURE_REASON, failures[e->failure]);
#undef SET_LIT
#undef SET_STR
}

/* Emit one event of e into g->ev; returns 1 if e has more events. */
static int session_step(sp_gen_t *g, gen_entity_t *e) {
    sp_event_type_t t = session_advance(&g->rng, e);
    session_fill(g, e, t);
    return e->state != S_DONE;
}

typedef struct gen_kind_def {
    void (*init)(gen_rng_t *r, gen_entity_t *e);
    int (*step)(sp_gen_t *g, gen_entity_t *e);
} gen_kind_def_t;

static const gen_kind_def_t gen_kinds[K__COUNT] = {
    [K_SESSION] = {session_init, session_step},
};

/* Mean events per session of the model above, by simulation with a fixed
 * private seed (so --rate means events/s whatever the funnel constants). */
static double session_mean_events(void) {
    gen_rng_t r = {0x5eed5eed5eedULL};
    uint64_t events = 0;
    const int sessions = 20000;

    for (int i = 0; i < sessions; i++) {
        gen_entity_t e;
        memset(&e, 0, sizeof(e));
        session_init(&r, &e);
        while (e.state != S_DONE) {
            session_advance(&r, &e);
            events++;
        }
    }
    return (double)events / sessions;
}

/* ---- heap ---------------------------------------------------------------- */

static int ent_before(const gen_entity_t *a, const gen_entity_t *b) {
    return a->next_ms < b->next_ms || (a->next_ms == b->next_ms && a->seq < b->seq);
}

static void heap_sift_up(sp_gen_t *g, uint32_t i) {
    gen_entity_t x = g->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!ent_before(&x, &g->heap[p])) break;
        g->heap[i] = g->heap[p];
        i = p;
    }
    g->heap[i] = x;
}

static void heap_sift_down(sp_gen_t *g, uint32_t i) {
    gen_entity_t x = g->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= g->heap_cnt) break;
        if (c + 1 < g->heap_cnt && ent_before(&g->heap[c + 1], &g->heap[c])) c++;
        if (!ent_before(&g->heap[c], &x)) break;
        g->heap[i] = g->heap[c];
        i = c;
    }
    g->heap[i] = x;
}

/* ---- encoders ------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long sz;
    int ok = 0;

    if (!f) return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || sz > (1 << 20) ||
        fseek(f, 0, SEEK_SET) != 0)
        goto out;
    buf = malloc((size_t)sz + 1);
    if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) goto out;
    buf[sz] = '\0';
    *out = buf;
    *len = (size_t)sz;
    buf = NULL;
    ok = 1;
out:
    free(buf);
    fclose(f);
    return ok ? 0 : -1;
}

static int slot_lookup(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

/* Map every field of the writer schema to an event slot. */
static int encoder_map_fields(sp_gen_t *g, gen_encoder_t *en, sp_stream_t st, const char *path) {
    size_t nf = avro_schema_record_size(en->schema);

    if (nf > GEN_MAX_FIELDS) {
        gen_err(g, "%s: %zu fields, at most %d supported", path, nf, GEN_MAX_FIELDS);
        return -1;
    }
    for (int t = 0; t < SP_T__COUNT; t++)
        en->sym_of_type[t] = -1;
    for (size_t i = 0; i < nf; i++) {
        gen_avro_field_t *f = &en->fields[i];
        const char *name = avro_schema_record_field_name(en->schema, (int)i);
        avro_schema_t fs = avro_schema_record_field_get_by_index(en->schema, (int)i);
        int slot;

        f->null_branch = f->val_branch = -1;
        if (avro_typeof(fs) == AVRO_UNION) {
            size_t nb = avro_schema_union_size(fs);
            avro_schema_t vs = NULL;
            for (size_t b = 0; b < nb && b < 127; b++) {
                avro_schema_t bs = avro_schema_union_branch(fs, (int)b);
                if (avro_typeof(bs) == AVRO_NULL)
                    f->null_branch = (int8_t)b;
                else if (!vs) {
                    vs = bs;
                    f->val_branch = (int8_t)b;
                }
            }
            if (f->null_branch < 0 || !vs || nb != 2) {
                gen_err(g, "%s: field '%s': only [null, T] unions are supported", path, name);
                return -1;
            }
            fs = vs;
        }
        f->base = avro_typeof(fs);
        if (strcmp(name, "type") == 0 && f->base == AVRO_ENUM) {
            f->kind = F_TYPE;
            for (int t = sp_stream_first_type(st); t < (int)sp_stream_end_type(st); t++)
                en->sym_of_type[t] = avro_schema_enum_get_by_name(fs, sp_event_type_names[t]);
        } else if ((slot = slot_lookup(sp_str_field_names, SP_S__COUNT, name)) >= 0 &&
                   f->base == AVRO_STRING) {
            f->kind = F_STR;
            f->slot = (uint8_t)slot;
        } else if ((slot = slot_lookup(sp_int_field_names, SP_I__COUNT, name)) >= 0 &&
                   (f->base == AVRO_INT64 || f->base == AVRO_INT32 || f->base == AVRO_BOOLEAN)) {
            f->kind = F_INT;
            f->slot = (uint8_t)slot;
        } else if (f->null_branch >= 0) {
            f->kind = F_NULL; /* a field we know nothing about: always null */
        } else {
            gen_err(g, "%s: required field '%s' (type %d) is unknown to the generator", path, name,
                    (int)f->base);
            return -1;
        }
    }
    en->field_cnt = (int)nf;
    return 0;
}

static int encoder_init(sp_gen_t *g, gen_encoder_t *en, const sp_config_t *cfg, sp_stream_t st,
                        sp_format_t format) {
    const sp_schema_conf_t *sc = NULL;
    char path[1100];
    char *json = NULL;
    size_t len = 0;
    int rc = -1;

    en->format = format;
    if (format == SP_FORMAT_JSON || !gen_streams[st].generated) return 0;
    for (int i = 0; i < cfg->schema_cnt && i < SP_MAX_SCHEMAS; i++)
        if (cfg->schemas[i].stream == st) {
            sc = &cfg->schemas[i];
            break;
        }
    if (!sc) {
        gen_err(g, "no schema configured for stream %s (schemas.ids)", sp_stream_names[st]);
        return -1;
    }
    en->schema_id = sc->id;
    /* The path as configured; if that does not open, relative to schemas.dir. */
    snprintf(path, sizeof(path), "%s", sc->path);
    if (read_file(path, &json, &len) != 0 && sc->path[0] != '/' && cfg->schemas_dir[0]) {
        snprintf(path, sizeof(path), "%s/%s", cfg->schemas_dir, sc->path);
        if (read_file(path, &json, &len) != 0) {
            gen_err(g, "schema %d: %s: %s", (int)sc->id, path, strerror(errno));
            goto out;
        }
    } else if (!json) {
        gen_err(g, "schema %d: %s: %s", (int)sc->id, path, strerror(errno));
        goto out;
    }
    if (avro_schema_from_json_length(json, len, &en->schema) != 0) {
        gen_err(g, "schema %d: %s: %s", (int)sc->id, path, avro_strerror());
        en->schema = NULL;
        goto out;
    }
    if (avro_typeof(en->schema) != AVRO_RECORD) {
        gen_err(g, "schema %d: %s: not a record", (int)sc->id, path);
        goto out;
    }
    if (encoder_map_fields(g, en, st, path) != 0) goto out;
    for (int t = sp_stream_first_type(st); t < (int)sp_stream_end_type(st); t++)
        if (en->sym_of_type[t] < 0) {
            gen_err(g, "schema %d: %s: no enum field 'type' with symbol %s", (int)sc->id, path,
                    sp_event_type_names[t]);
            goto out;
        }
    en->iface = avro_generic_class_from_schema(en->schema);
    if (!en->iface || avro_generic_value_new(en->iface, &en->value) != 0) {
        gen_err(g, "schema %d: %s: %s", (int)sc->id, path, avro_strerror());
        goto out;
    }
    en->value_ok = 1;
    en->writer = avro_writer_memory(g->out + 5, GEN_MSG_MAX - 5);
    if (!en->writer) {
        gen_err(g, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(json);
    return rc;
}

static void encoder_free(gen_encoder_t *en) {
    if (en->writer) avro_writer_free(en->writer);
    if (en->value_ok) avro_value_decref(&en->value);
    if (en->iface) avro_value_iface_decref(en->iface);
    if (en->schema) avro_schema_decref(en->schema);
    memset(en, 0, sizeof(*en));
}

/* Avro: Confluent framing + binary body into g->out. Returns length or -1. */
static long encode_avro(sp_gen_t *g, gen_encoder_t *en, const sp_event_t *ev) {
    uint32_t id = (uint32_t)en->schema_id;

    for (int i = 0; i < en->field_cnt; i++) {
        const gen_avro_field_t *f = &en->fields[i];
        avro_value_t fv, bv, *v = &fv;
        int is_null = 0, rc = 0;

        if (avro_value_get_by_index(&en->value, (size_t)i, &fv, NULL) != 0) goto fail;
        switch ((gen_fkind_t)f->kind) {
        case F_STR: is_null = ev->s[f->slot].p == NULL; break;
        case F_INT: is_null = !sp_event_has_int(ev, (sp_int_field_t)f->slot); break;
        case F_NULL: is_null = 1; break;
        default: break;
        }
        if (f->null_branch >= 0) {
            if (avro_value_set_branch(&fv, is_null ? f->null_branch : f->val_branch, &bv) != 0)
                goto fail;
            if (is_null) {
                if (avro_value_set_null(&bv) != 0) goto fail;
                continue;
            }
            v = &bv;
        } else if (is_null) {
            gen_err(g, "%s event without required field '%s'", sp_stream_names[ev->stream],
                    avro_schema_record_field_name(en->schema, i));
            return -1;
        }
        switch ((gen_fkind_t)f->kind) {
        case F_TYPE: rc = avro_value_set_enum(v, en->sym_of_type[ev->type]); break;
        case F_STR: /* sizes include the NUL; our strings are NUL-terminated */
            rc = avro_value_set_string_len(v, ev->s[f->slot].p, ev->s[f->slot].len + 1);
            break;
        case F_INT:
        case F_BOOL:
            if (f->base == AVRO_INT64)
                rc = avro_value_set_long(v, ev->i[f->slot]);
            else if (f->base == AVRO_INT32)
                rc = avro_value_set_int(v, (int32_t)ev->i[f->slot]);
            else
                rc = avro_value_set_boolean(v, ev->i[f->slot] != 0);
            break;
        case F_NULL: break;
        }
        if (rc != 0) goto fail;
    }
    g->out[0] = 0;
    g->out[1] = (char)(id >> 24);
    g->out[2] = (char)(id >> 16);
    g->out[3] = (char)(id >> 8);
    g->out[4] = (char)id;
    avro_writer_reset(en->writer);
    if (avro_value_write(en->writer, &en->value) != 0) goto fail;
    return 5 + (long)avro_writer_tell(en->writer);
fail:
    gen_err(g, "avro encode (%s): %s", sp_stream_names[ev->stream], avro_strerror());
    return -1;
}

/* JSON writer: bounded appends into g->out. */
typedef struct jbuf {
    char *p;
    size_t len, cap;
    int overflow;
} jbuf_t;

static void jb_put(jbuf_t *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jb_str(jbuf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    jb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t en = 2;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        jb_put(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            en = 6;
        }
        jb_put(b, esc, en);
    }
    jb_put(b, s + run, n - run);
    jb_put(b, "\"", 1);
}

static long encode_json(sp_gen_t *g, const sp_event_t *ev) {
    const gen_stream_def_t *sd = &gen_streams[ev->stream];
    jbuf_t b = {g->out, 0, GEN_MSG_MAX, 0};
    char num[32];

    jb_put(&b, "{", 1);
    for (int i = 0; i < sd->json_cnt; i++) {
        const gen_field_t *f = &sd->json[i];
        const char *name = f->kind == F_TYPE  ? "type"
                           : f->kind == F_STR ? sp_str_field_names[f->slot]
                                              : sp_int_field_names[f->slot];
        if (i) jb_put(&b, ",", 1);
        jb_str(&b, name, strlen(name));
        jb_put(&b, ":", 1);
        switch ((gen_fkind_t)f->kind) {
        case F_TYPE:
            jb_str(&b, sp_event_type_names[ev->type], strlen(sp_event_type_names[ev->type]));
            break;
        case F_STR:
            if (ev->s[f->slot].p)
                jb_str(&b, ev->s[f->slot].p, ev->s[f->slot].len);
            else
                jb_put(&b, "null", 4);
            break;
        case F_INT:
            if (sp_event_has_int(ev, (sp_int_field_t)f->slot)) {
                int n = snprintf(num, sizeof(num), "%" PRId64, ev->i[f->slot]);
                jb_put(&b, num, (size_t)n);
            } else {
                jb_put(&b, "null", 4);
            }
            break;
        case F_BOOL:
            if (sp_event_has_int(ev, (sp_int_field_t)f->slot))
                jb_put(&b, ev->i[f->slot] ? "true" : "false", ev->i[f->slot] ? 4 : 5);
            else
                jb_put(&b, "null", 4);
            break;
        case F_NULL: jb_put(&b, "null", 4); break;
        }
    }
    jb_put(&b, "}", 1);
    if (b.overflow) {
        gen_err(g, "JSON message larger than %d bytes", GEN_MSG_MAX);
        return -1;
    }
    return (long)b.len;
}

/* ---- the generator ------------------------------------------------------- */

static void gen_warm(sp_gen_t *g, int64_t start_ms);

sp_gen_t *sp_gen_new(const sp_config_t *cfg, const sp_gen_opts_t *o, char *errstr, size_t n) {
    sp_gen_t *g = NULL;
    double mean_events;
    int ok = 0;

    if (!(o->rate > 0) || o->rate > 1e9) {
        snprintf(errstr, n, "rate must be > 0 and <= 1e9 events/s");
        return NULL;
    }
    if (!(o->duplicates >= 0 && o->duplicates <= 1)) {
        snprintf(errstr, n, "duplicates must be a probability in 0..1");
        return NULL;
    }
    if ((int)o->format != -1 && o->format != SP_FORMAT_AVRO && o->format != SP_FORMAT_JSON) {
        snprintf(errstr, n, "unknown format %d", (int)o->format);
        return NULL;
    }
    g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(errstr, n, "out of memory");
        return NULL;
    }
    g->heap = malloc(sizeof(*g->heap) * GEN_MAX_SESSIONS);
    if (!g->heap) {
        snprintf(g->errstr, sizeof(g->errstr), "out of memory");
        goto out;
    }
    g->seed = o->seed;
    g->rng.s = o->seed ^ 0x73746f72652d7075ULL; /* "store-pu" */
    g->duplicates = o->duplicates;
    mean_events = session_mean_events();
    g->mean_gap_ms = 1000.0 * mean_events / o->rate;
    g->arrival_ms = (double)o->start_ms;
    g->last_ms = o->start_ms;
    if (o->warm_start) gen_warm(g, o->start_ms);

    for (int st = 0; st < SP_STREAM__COUNT; st++) {
        sp_format_t f = (int)o->format == -1 ? cfg->topics[st].format : o->format;
        if (encoder_init(g, &g->enc[st], cfg, (sp_stream_t)st, f) != 0) goto out;
    }
    ok = 1;
out:
    if (!ok) {
        snprintf(errstr, n, "%s", g->errstr);
        sp_gen_destroy(g);
        g = NULL;
    }
    return g;
}

void sp_gen_destroy(sp_gen_t *g) {
    if (!g) return;
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        encoder_free(&g->enc[st]);
    free(g->heap);
    free(g);
}

const char *sp_gen_errstr(const sp_gen_t *g) {
    return g->errstr;
}

void sp_gen_stats(const sp_gen_t *g, sp_gen_stats_t *out) {
    *out = g->stats;
    out->sessions_in_flight = g->heap_cnt;
}

static void gen_spawn(sp_gen_t *g);

/* Warm start: run the sessions of the last GEN_WARM_MS before start_ms
 * without emitting, so the first message already sees steady state. */
static void gen_warm(sp_gen_t *g, int64_t start_ms) {
    double warm_ms = GEN_WARM_MS;
    if (warm_ms / g->mean_gap_ms > GEN_WARM_MAX_SESSIONS)
        warm_ms = GEN_WARM_MAX_SESSIONS * g->mean_gap_ms;
    g->arrival_ms = (double)start_ms - warm_ms;
    g->last_ms = (int64_t)g->arrival_ms;
    for (;;) {
        gen_entity_t *e;
        gen_spawn(g);
        e = &g->heap[0];
        if (e->next_ms >= start_ms) break;
        g->last_ms = e->next_ms;
        if (session_advance(&g->rng, e) == SP_T_ORDER_PLACED) e->order_no = ++g->order_seq;
        if (e->state != S_DONE) {
            e->next_ms += GEN_GAP_MIN_MS + rng_below(&g->rng, GEN_GAP_MAX_MS - GEN_GAP_MIN_MS + 1);
            heap_sift_down(g, 0);
        } else {
            g->heap[0] = g->heap[--g->heap_cnt];
            if (g->heap_cnt) heap_sift_down(g, 0);
        }
    }
    g->last_ms = start_ms;
    g->stats.sessions = 0; /* count the sessions that start from start_ms on */
}

/* Start the sessions that arrive before the next event in flight. */
static void gen_spawn(sp_gen_t *g) {
    while (g->heap_cnt < GEN_MAX_SESSIONS &&
           (g->heap_cnt == 0 || (int64_t)g->arrival_ms <= g->heap[0].next_ms)) {
        gen_entity_t *e = &g->heap[g->heap_cnt];
        int64_t t = (int64_t)g->arrival_ms;

        memset(e, 0, sizeof(*e));
        e->seq = ++g->session_seq;
        /* never before what was emitted (the cap may have held it back) */
        e->next_ms = t > g->last_ms ? t : g->last_ms;
        gen_kinds[K_SESSION].init(&g->rng, e);
        g->heap_cnt++;
        heap_sift_up(g, g->heap_cnt - 1);
        g->stats.sessions++;
        g->arrival_ms += -log1p(-rng_unit(&g->rng)) * g->mean_gap_ms;
    }
}

static int gen_take_dup(sp_gen_t *g, sp_stream_t *st, const void **key, size_t *keylen,
                        const void **val, size_t *vallen, int64_t *event_time) {
    for (int i = 0; i < GEN_DUP_SLOTS; i++) {
        gen_dup_t *d = &g->dups[i];
        if (!d->used || d->due > g->msg_no) continue;
        d->used = 0; /* its bytes stay valid until the next call */
        g->dup_pending--;
        *st = d->st;
        *key = d->key;
        *keylen = d->keylen;
        *val = d->val;
        *vallen = d->vallen;
        *event_time = d->event_time;
        g->stats.duplicates++;
        g->stats.messages[d->st]++;
        g->msg_no++;
        return 1;
    }
    return 0;
}

static void gen_keep_dup(sp_gen_t *g, sp_stream_t st, const char *key, size_t keylen,
                         const char *val, size_t vallen, int64_t event_time) {
    for (int i = 0; i < GEN_DUP_SLOTS; i++) {
        gen_dup_t *d = &g->dups[i];
        if (d->used) continue;
        if (keylen > sizeof(d->key) || vallen > sizeof(d->val)) return;
        d->used = 1;
        d->st = st;
        d->due = g->msg_no + 1 + rng_below(&g->rng, GEN_DUP_MAX_DELAY);
        d->event_time = event_time;
        d->keylen = keylen;
        d->vallen = vallen;
        memcpy(d->key, key, keylen);
        memcpy(d->val, val, vallen);
        g->dup_pending++;
        return;
    }
    /* all slots busy: this one is simply not duplicated */
}

int sp_gen_next(sp_gen_t *g, sp_stream_t *st, const void **key, size_t *keylen, const void **val,
                size_t *vallen, int64_t *event_time) {
    gen_entity_t *e;
    gen_encoder_t *en;
    sp_str_t k;
    long len;
    int more;

    if (g->dup_pending && gen_take_dup(g, st, key, keylen, val, vallen, event_time)) return 0;

    gen_spawn(g);
    e = &g->heap[0];
    g->last_ms = e->next_ms;
    more = gen_kinds[e->kind].step(g, e);
    len = snprintf(g->event_id, sizeof(g->event_id), "e-%" PRIx64 "-%" PRIu64, g->seed,
                   ++g->event_seq);
    g->ev.s[SP_S_EVENT_ID].p = g->event_id;
    g->ev.s[SP_S_EVENT_ID].len = (uint32_t)len;

    en = &g->enc[g->ev.stream];
    len = en->format == SP_FORMAT_JSON ? encode_json(g, &g->ev) : encode_avro(g, en, &g->ev);
    if (len < 0) return -1;
    k = gen_streams[g->ev.stream].key(&g->ev);
    if (k.len > sizeof(g->key)) {
        gen_err(g, "key longer than %zu bytes", sizeof(g->key));
        return -1;
    }
    memcpy(g->key, k.p, k.len);

    *st = g->ev.stream;
    *key = g->key;
    *keylen = k.len;
    *val = g->out;
    *vallen = (size_t)len;
    *event_time = g->ev.i[SP_I_EVENT_TIME];
    g->stats.messages[g->ev.stream]++;
    g->msg_no++;

    if (more) {
        e->next_ms += GEN_GAP_MIN_MS + rng_below(&g->rng, GEN_GAP_MAX_MS - GEN_GAP_MIN_MS + 1);
        heap_sift_down(g, 0);
    } else {
        g->heap[0] = g->heap[--g->heap_cnt];
        if (g->heap_cnt) heap_sift_down(g, 0);
    }
    if (g->duplicates > 0 && rng_chance(&g->rng, g->duplicates))
        gen_keep_dup(g, *st, g->key, k.len, g->out, (size_t)len, *event_time);
    return 0;
}

/* ---- `storepulse gen`: the Kafka side ------------------------------------ */

static volatile sig_atomic_t gen_stop_flag;

static void gen_on_signal(int sig) {
    (void)sig;
    gen_stop_flag = 1;
}

typedef struct gen_run {
    uint64_t delivered, failed;
    int fatal;
} gen_run_t;

static void gen_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    gen_run_t *run = opaque;
    (void)rk;
    if (m->err) {
        if (run->failed++ < 5)
            sp_log(SP_LOG_ERROR, "gen: delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                   rd_kafka_err2str(m->err));
    } else {
        run->delivered++;
    }
}

static void gen_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    gen_run_t *run = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        sp_log(SP_LOG_ERROR, "gen: fatal producer error: %s", why);
        run->fatal = 1;
        gen_stop_flag = 1;
    } else {
        sp_log(SP_LOG_WARN, "gen: kafka: %s", reason);
    }
}

static void gen_usage(FILE *out) {
    fputs("usage: storepulse gen [options]\n"
          "\n"
          "Produces synthetic store traffic (clickstream and checkout sessions) to Kafka.\n"
          "\n"
          "  -c, --config FILE       config file (topics, schemas.ids, kafka.*)\n"
          "      --brokers ADDR      bootstrap servers (overrides kafka.bootstrap.servers)\n"
          "      --bootstrap-file F  read the bootstrap servers from F (waits up to 10 s\n"
          "                          for it to appear; see `storepulse broker`)\n"
          "      --rate N            events per second of event time (default 1000)\n"
          "      --speedup S         produce S times faster than event time (default 1 =\n"
          "                          real time; 0 = as fast as possible)\n"
          "      --count N           total messages, duplicates included (default 0 =\n"
          "                          until SIGINT/SIGTERM)\n"
          "      --seed N            PRNG seed (default 1); same seed and options give\n"
          "                          the same messages\n"
          "      --start-time MS|now event time of the first event (default now)\n"
          "      --format avro|json  value format of every topic (default: per topic)\n"
          "      --duplicates P      probability of re-sending a message (default 0.01)\n"
          "      --warm-start        begin in steady state: sessions already in flight at\n"
          "                          the start time (default: cold, every session whole;\n"
          "                          full rate after ~5 min of event time)\n"
          "      --quiet             no progress lines\n"
          "  -h, --help              this help\n"
          "\n"
          "Exit status: 0 when every message was delivered, 1 on delivery failures or\n"
          "errors, 2 on bad usage.\n",
          out);
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v;
    if (*s == '-') return -1;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* First line of path into buf; waits up to wait_ms for the file to exist. */
static int read_bootstrap_file(const char *path, char *buf, size_t size, int wait_ms) {
    int64_t deadline = sp_clock_mono_ms() + wait_ms;
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f) {
            int ok = fgets(buf, (int)size, f) != NULL;
            fclose(f);
            if (!ok) return -1;
            buf[strcspn(buf, "\r\n")] = '\0';
            return buf[0] ? 0 : -1;
        }
        if (errno != ENOENT || sp_clock_mono_ms() >= deadline || gen_stop_flag) return -1;
        usleep(100 * 1000);
    }
}

/* Consumer-only properties that a shared config carries; a producer would
 * warn about each. */
static int consumer_only(const char *key) {
    static const char *const keys[] = {"group.id",
                                       "group.instance.id",
                                       "auto.offset.reset",
                                       "enable.auto.commit",
                                       "enable.auto.offset.store",
                                       "auto.commit.interval.ms",
                                       "session.timeout.ms",
                                       "heartbeat.interval.ms",
                                       "max.poll.interval.ms",
                                       "partition.assignment.strategy",
                                       "isolation.level",
                                       "queued.min.messages",
                                       "queued.max.messages.kbytes",
                                       "fetch.wait.max.ms",
                                       "fetch.min.bytes",
                                       "fetch.max.bytes",
                                       "enable.partition.eof",
                                       "check.crcs"};
    for (int i = 0; i < N_OF(keys); i++)
        if (strcmp(keys[i], key) == 0) return 1;
    return 0;
}

static rd_kafka_t *gen_producer_new(const sp_config_t *cfg, const char *brokers, gen_run_t *run,
                                    char *errstr, size_t errstr_size) {
    static const char *const defaults[][2] = {{"enable.idempotence", "true"},
                                              {"linger.ms", "5"},
                                              {"batch.num.messages", "10000"},
                                              {"queue.buffering.max.messages", "1000000"},
                                              {"client.id", "storepulse-gen"}};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    char rkerr[512];

    for (int i = 0; i < N_OF(defaults); i++)
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], rkerr, sizeof(rkerr)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", defaults[i][0], rkerr);
            goto out;
        }
    for (int i = 0; i < cfg->kafka_cnt && i < SP_MAX_KAFKA_PROPS; i++) {
        if (consumer_only(cfg->kafka[i].key)) continue;
        if (rd_kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, rkerr, sizeof(rkerr)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.%s: %s", cfg->kafka[i].key, rkerr);
            goto out;
        }
    }
    if (brokers && rd_kafka_conf_set(conf, "bootstrap.servers", brokers, rkerr, sizeof(rkerr)) !=
                       RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "--brokers: %s", rkerr);
        goto out;
    }
    rd_kafka_conf_set_opaque(conf, run);
    rd_kafka_conf_set_dr_msg_cb(conf, gen_dr_cb);
    rd_kafka_conf_set_error_cb(conf, gen_error_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
    if (!rk) {
        snprintf(errstr, errstr_size, "producer: %s", rkerr);
        goto out;
    }
    conf = NULL; /* owned by rk */
out:
    if (conf) rd_kafka_conf_destroy(conf);
    return rk;
}

int sp_gen_main(int argc, char **argv) {
    enum {
        O_BROKERS = 256,
        O_BOOTFILE,
        O_RATE,
        O_SPEEDUP,
        O_COUNT,
        O_SEED,
        O_START,
        O_FORMAT,
        O_DUPS,
        O_QUIET,
        O_WARM
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"brokers", required_argument, NULL, O_BROKERS},
        {"bootstrap-file", required_argument, NULL, O_BOOTFILE},
        {"rate", required_argument, NULL, O_RATE},
        {"speedup", required_argument, NULL, O_SPEEDUP},
        {"count", required_argument, NULL, O_COUNT},
        {"seed", required_argument, NULL, O_SEED},
        {"start-time", required_argument, NULL, O_START},
        {"format", required_argument, NULL, O_FORMAT},
        {"duplicates", required_argument, NULL, O_DUPS},
        {"quiet", no_argument, NULL, O_QUIET},
        {"warm-start", no_argument, NULL, O_WARM},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *brokers = NULL, *bootstrap_file = NULL;
    char brokers_buf[1024];
    sp_gen_opts_t o = {
        .seed = 1, .start_ms = -1, .rate = 1000, .duplicates = 0.01, .format = (sp_format_t)-1};
    double speedup = 1;
    uint64_t count = 0, produced = 0;
    int quiet = 0, opt, ret = 1;
    sp_config_t *cfg = NULL;
    sp_gen_t *g = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt[SP_STREAM__COUNT] = {0};
    gen_run_t run = {0, 0, 0};
    sp_gen_stats_t stats;
    char errstr[1024];
    struct sigaction sa;
    int64_t t0, first_et = -1, next_progress;
    double secs;

    optind = 0; /* glibc: full re-initialisation (argv[0] is the subcommand) */
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        const char *bad = NULL;
        switch (opt) {
        case 'c': config_path = optarg; break;
        case O_BROKERS: brokers = optarg; break;
        case O_BOOTFILE: bootstrap_file = optarg; break;
        case O_RATE:
            if (parse_double(optarg, 1e-6, 1e9, &o.rate)) bad = "--rate: expected a number > 0";
            break;
        case O_SPEEDUP:
            if (parse_double(optarg, 0, 1e9, &speedup)) bad = "--speedup: expected a number >= 0";
            break;
        case O_COUNT:
            if (parse_u64(optarg, &count)) bad = "--count: expected an integer >= 0";
            break;
        case O_SEED:
            if (parse_u64(optarg, &o.seed)) bad = "--seed: expected an unsigned integer";
            break;
        case O_START: {
            uint64_t ms;
            if (strcmp(optarg, "now") == 0)
                o.start_ms = -1;
            else if (parse_u64(optarg, &ms) == 0 && ms < (uint64_t)INT64_MAX / 2)
                o.start_ms = (int64_t)ms;
            else
                bad = "--start-time: expected epoch milliseconds or 'now'";
            break;
        }
        case O_FORMAT:
            if (strcmp(optarg, "avro") == 0)
                o.format = SP_FORMAT_AVRO;
            else if (strcmp(optarg, "json") == 0)
                o.format = SP_FORMAT_JSON;
            else
                bad = "--format: expected avro or json";
            break;
        case O_DUPS:
            if (parse_double(optarg, 0, 1, &o.duplicates))
                bad = "--duplicates: expected a probability 0..1";
            break;
        case O_QUIET: quiet = 1; break;
        case O_WARM: o.warm_start = 1; break;
        case 'h': gen_usage(stdout); return 0;
        default: gen_usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "storepulse gen: %s, got '%s'\n", bad, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "storepulse gen: unexpected argument '%s'\n", argv[optind]);
        gen_usage(stderr);
        return 2;
    }
    if (brokers && bootstrap_file) {
        fprintf(stderr, "storepulse gen: --brokers and --bootstrap-file are exclusive\n");
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = gen_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "storepulse gen: out of memory\n");
        goto out;
    }
    sp_config_defaults(cfg);
    if (sp_config_load(cfg, config_path, errstr, sizeof(errstr)) != SP_OK) {
        fprintf(stderr, "storepulse gen: %s\n", errstr);
        ret = 2;
        goto out;
    }
    if (sp_log_level_parse(cfg->log_level) >= 0) sp_log_level = sp_log_level_parse(cfg->log_level);
    if (bootstrap_file) {
        if (read_bootstrap_file(bootstrap_file, brokers_buf, sizeof(brokers_buf), 10000) != 0) {
            fprintf(stderr, "storepulse gen: --bootstrap-file %s: no address in it\n",
                    bootstrap_file);
            goto out;
        }
        brokers = brokers_buf;
    }
    if (o.start_ms < 0) o.start_ms = sp_clock_now_ms();

    g = sp_gen_new(cfg, &o, errstr, sizeof(errstr));
    if (!g) {
        fprintf(stderr, "storepulse gen: %s\n", errstr);
        goto out;
    }
    rk = gen_producer_new(cfg, brokers, &run, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "storepulse gen: %s\n", errstr);
        goto out;
    }
    for (int st = 0; st < SP_STREAM__COUNT; st++) {
        if (!gen_streams[st].generated) continue;
        rkt[st] = rd_kafka_topic_new(rk, cfg->topics[st].name, NULL);
        if (!rkt[st]) {
            fprintf(stderr, "storepulse gen: topic %s: %s\n", cfg->topics[st].name,
                    rd_kafka_err2str(rd_kafka_last_error()));
            goto out;
        }
    }

    t0 = sp_clock_mono_ms();
    next_progress = t0 + 5000;
    while (!gen_stop_flag && (count == 0 || produced < count)) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen;
        int64_t et;
        rd_kafka_resp_err_t err;

        if (sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et) != 0) {
            fprintf(stderr, "storepulse gen: %s\n", sp_gen_errstr(g));
            goto drain;
        }
        if (speedup > 0) { /* pace by event time; the wait serves delivery reports */
            int64_t due, now;
            if (first_et < 0) first_et = et;
            due = t0 + (int64_t)((double)(et - first_et) / speedup);
            while (!gen_stop_flag && (now = sp_clock_mono_ms()) < due)
                rd_kafka_poll(rk, (int)(due - now < 100 ? due - now : 100));
            if (gen_stop_flag) break;
        }
        for (;;) {
            err = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt[st]), RD_KAFKA_V_KEY(key, keylen),
                                    RD_KAFKA_V_VALUE((void *)val, vallen),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_TIMESTAMP(et), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || gen_stop_flag) break;
            rd_kafka_poll(rk, 10); /* wait for deliveries to make room */
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) break; /* stopping */
        if (err) {
            fprintf(stderr, "storepulse gen: produce to %s: %s\n", cfg->topics[st].name,
                    rd_kafka_err2str(err));
            goto drain;
        }
        produced++;
        if ((produced & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            if (!quiet && sp_clock_mono_ms() >= next_progress) {
                next_progress += 5000;
                fprintf(stderr,
                        "gen: %" PRIu64 " produced, %" PRIu64 " delivered, %" PRIu64 " failed\n",
                        produced, run.delivered, run.failed);
            }
        }
    }
    ret = 0;

drain:
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int left = rd_kafka_outq_len(rk);
        fprintf(stderr, "storepulse gen: %d messages not delivered within 30 s\n", left);
        run.failed += (uint64_t)(left > 0 ? left : 0);
    }
    if (run.failed || run.fatal) ret = 1;
    secs = (double)(sp_clock_mono_ms() - t0) / 1000.0;
    sp_gen_stats(g, &stats);
    fprintf(stderr,
            "gen: %" PRIu64 " messages in %.2f s (%.0f msg/s): %s=%" PRIu64 " %s=%" PRIu64
            ", duplicates=%" PRIu64 ", sessions=%" PRIu64 ", orders=%" PRIu64 "; delivered=%" PRIu64
            " failed=%" PRIu64 "\n",
            produced, secs, secs > 0 ? (double)produced / secs : 0.0, cfg->topics[0].name,
            stats.messages[SP_STREAM_CLICKSTREAM], cfg->topics[1].name,
            stats.messages[SP_STREAM_CHECKOUT], stats.duplicates, stats.sessions, stats.orders,
            run.delivered, run.failed);

out:
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        if (rkt[st]) rd_kafka_topic_destroy(rkt[st]);
    if (rk) rd_kafka_destroy(rk);
    sp_gen_destroy(g);
    free(cfg);
    return ret;
}
