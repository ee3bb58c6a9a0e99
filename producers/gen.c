/* gen.c -- synthetic store traffic (`storepulse gen` and the in-process API).
 *
 * What: the four streams of one store, linked as a real store's are.
 *  - Sessions arrive as a Poisson process in event time; each has a fixed
 *    channel, device, country and (70 %) a logged-in customer. A session
 *    walks a funnel -- browsing, product views, cart adds/removes, checkout,
 *    payment (with failures and retries), order, rare cancellation -- with
 *    2-90 s of event time between its events (clickstream, checkout).
 *  - 93 % of the orders not cancelled ship (shipment stream, keyed by
 *    order_id): label 5 min-6 h after the order, dispatch 2-22 h after it
 *    (12 %: 24-60 h, dispatch SLA breaches), a transit scan within hours
 *    and then every 6-20 h (never a day without news), out for delivery,
 *    delivered -- ~9 % after the promised time (order + 2-5 days, on the
 *    hour). 5 % of attempts fail and are retried the next day (the third
 *    failure returns the parcel to the sender); 6 % of deliveries come back
 *    (RETURNED 2-14 days later); ~2 % are lost in transit (no further
 *    event: overdue once the promise passes). The
 *    carrier (dhl, ups, fedex, dpd, inpost; skewed, per country) and the
 *    country stay; 5 % carry no order_placed_time.
 *  - Support tickets (keyed by ticket_id) come from orders (3 %), from
 *    shipment trouble (failed attempts, late or lost parcels, returns), from
 *    failed payments, and as a background stream of questions (one per ~150
 *    sessions, 40 % without a customer). Channel chat, email, phone or
 *    social. A bot answers first on chat, social and (auto-reply) email for
 *    some tickets and settles some alone; a human's first reply comes after
 *    seconds (phone) to hours (email); a few rounds with the customer;
 *    resolution; 8 % reopened and resolved again; 40 % answer a survey with
 *    csat, nps and ces each present or not, lower after slow replies,
 *    reopenings and delivery trouble. is_bot is set on every event.
 *  - Customers are numbered in order of acquisition (a year's worth exist
 *    at the start). 6 % of logged-in sessions bring a new one; the others
 *    pick a known customer by age since acquisition (days, a couple of
 *    months, anything up to a year) and by a propensity fixed per
 *    customer, so customers order again days, weeks and months later
 *    (returning customers, cohorts, retained_30d/60d/90d: about a quarter
 *    of a month's customers order again within 30 days). The same shape
 *    at any --rate.
 * Every entity in flight (session, shipment, ticket) sits in one min-heap by
 * the time of its next event, so the output is in event-time order
 * (out-of-orderness ~0) however far an order's delivery is from it, with
 * entities interleaved as on a real store. --rate counts events of all four
 * streams in steady state (shipments and tickets are ~13 % of them).
 * Each event becomes one message: Confluent framing (magic 0, 4-byte
 * big-endian schema id) + Avro binary written by avro-c with one reused
 * value and writer per stream, or a JSON object from a small writer here.
 * With probability `duplicates`, a message is re-sent byte for byte a few
 * messages later (at-least-once producers do that).
 *
 * Incidents (--scenario) change only events whose event time falls in
 * [incident start, start + duration), for one value of one dimension:
 *  - checkout-outage (a device, default mobile): payment submissions fail
 *    85 % of the time (70 % of them gateway_timeout), retries too, so orders
 *    mostly do not happen: payment failures, checkout abandonment and the
 *    conversion drop concentrate on that device.
 *  - carrier-delay (a carrier, default dhl): a parcel of that carrier whose
 *    next event falls in the incident stalls for good (25 %: no further
 *    event, overdue once its promise passes) or is held until after the
 *    incident and delivered 1-24 h after its promised time (late). The late
 *    deliveries land when the held parcels arrive, hours to days after the
 *    incident: delivery_delay_rate|carrier and overdue_in_flight rise.
 *  - support-backlog (a support channel, default email): human replies due
 *    in the incident, and the first human reply of tickets opened in it,
 *    come 2-8 h later; the background stream opens 4x as many tickets, 3 in
 *    4 of them on that channel.
 * Everything else goes on as without the incident (statistically: the PRNG
 * stream diverges from the first changed event, so bytes differ).
 *
 * Why: demos, benchmarks and tests need realistic, reproducible input. One
 * PRNG (splitmix64) seeded by the caller drives everything, and ids are
 * derived from the seed and counters, so the same seed and options give
 * byte-identical messages; no wall clock is read inside the generator.
 *
 * Extending: an entity kind (gen_kinds[]) has an advance function (picks
 * the type of the event due, moves the state, schedules the next event and
 * spawns child entities through the model) and a fill function (the event's
 * fields); a stream (gen_streams[]) has its key function and its JSON field
 * list. The Avro encoder maps the writer schema's fields to sp_event_t slots
 * by name, for any stream.
 *
 * What it deliberately does not do: late or out-of-order events beyond the
 * duplicates, malformed messages, daily or weekly seasonality. A cold start
 * (the default) begins with nothing in flight: sessions reach the full rate
 * and mix after ~5 min of event time, shipments and tickets after days
 * (they trail their orders). A warm start simulates what came before
 * without emitting: 30 min of sessions (at most ~4 M), 21 days of orders'
 * shipments and tickets (at most 1 M orders: a shorter past at high rates)
 * and 7 days of background tickets. In-flight entities are capped: sessions
 * at GEN_MAX_SESSIONS (the cap slows session arrivals, as at --rate above
 * ~20 k events/s: the event-time rate falls short of --rate; messages per
 * second of wall time are unaffected), all entities at GEN_MAX_ENTITIES
 * (64 B each, the heap grows on demand up to 256 MiB; shipments and
 * tickets beyond it are not started, counted in stats.shed -- reached only
 * at rates of thousands of events/s sustained over days of event time). */
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

#include "core/broker.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/file.h"
#include "core/kafka.h"
#include "core/log.h"

#define MIN_MS  60000LL
#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

#define GEN_MAX_SESSIONS        (1u << 20) /* sessions in flight */
#define GEN_MAX_ENTITIES        (1u << 22) /* everything in flight, 64 B each */
#define GEN_SPAWN_MAX           4          /* children one step or arrival can start */
#define GEN_MSG_MAX             4096       /* encoded message, framing included */
#define GEN_DUP_SLOTS           64         /* duplicates waiting to be re-sent */
#define GEN_DUP_MAX_DELAY       16         /* re-sent 1..16 messages later */
#define GEN_PRODUCT_POOL        5000
#define GEN_GAP_MIN_MS          2000
#define GEN_GAP_MAX_MS          90000
#define GEN_ID_MAX              48
#define GEN_WARM_MS             (30 * 60 * 1000.0) /* longer than any session */
#define GEN_WARM_MAX_SESSIONS   4e6
#define GEN_WARM_ORDERS_MS      (21 * DAY_MS * 1.0) /* longer than nearly any shipment */
#define GEN_WARM_MAX_ORDERS     1e6
#define GEN_WARM_TICKETS_MS     (7 * DAY_MS * 1.0)
#define GEN_SESSIONS_PER_TICKET 150.0          /* background tickets */
#define GEN_SCAN_MAX_MS         (26 * HOUR_MS) /* longest wait between transit events */
#define GEN_INCIDENT_START_MS   (30 * MIN_MS)  /* after start_ms, by default */
#define GEN_INCIDENT_DUR_MS     (20 * MIN_MS)

/* customers */
#define GEN_P_LOGGED_IN    0.70
#define GEN_P_NEW_CUSTOMER 0.06
#define GEN_HISTORY_MS     (365 * DAY_MS)
#define GEN_MIN_CUSTOMERS  1000
#define GEN_MAX_CUSTOMERS  50000000u

#define ST_DONE 255 /* every kind's final state */

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

/* Exponential with the given mean. */
static double rng_exp(gen_rng_t *r, double mean) {
    return -log1p(-rng_unit(r)) * mean;
}

/* Uniform duration in [lo, hi] ms. */
static int64_t rng_span(gen_rng_t *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_unit(r) * (double)(hi - lo));
}

/* Log-uniform duration in [lo, hi] ms (lo > 0): as many 1-2 min waits as
 * 1-2 h ones -- the shape of response and transit times. */
static int64_t rng_logspan(gen_rng_t *r, int64_t lo, int64_t hi) {
    return (int64_t)((double)lo * exp(rng_unit(r) * log((double)hi / (double)lo)));
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
#define FAIL_GATEWAY_TIMEOUT 3
static const char *const carriers[] = {"dhl", "ups", "fedex", "dpd", "inpost"};
static const uint8_t carrier_w[][5] = {{34, 26, 18, 22, 0},  /* most countries */
                                       {30, 28, 14, 16, 12}, /* GB */
                                       {22, 8, 4, 18, 48}};  /* PL */
static const char *const support_channels[] = {"chat", "email", "phone", "social"};
static const uint8_t support_channel_w[] = {40, 35, 15, 10};
enum { SUP_CHAT = 0, SUP_EMAIL, SUP_PHONE, SUP_SOCIAL };

const char *const sp_gen_scenario_names[SP_GEN_SCENARIO__COUNT] = {
    [SP_GEN_SCENARIO_NONE] = "none",
    [SP_GEN_SCENARIO_CHECKOUT_OUTAGE] = "checkout-outage",
    [SP_GEN_SCENARIO_CARRIER_DELAY] = "carrier-delay",
    [SP_GEN_SCENARIO_SUPPORT_BACKLOG] = "support-backlog",
};

int sp_gen_scenario_lookup(const char *name) {
    for (int i = 0; i < SP_GEN_SCENARIO__COUNT; i++)
        if (strcmp(sp_gen_scenario_names[i], name) == 0) return i;
    return -1;
}

/* What each scenario hits: the value list and its default. */
static const struct {
    const char *const *values;
    int cnt;
    const char *dflt, *what;
} scenario_dims[SP_GEN_SCENARIO__COUNT] = {
    [SP_GEN_SCENARIO_CHECKOUT_OUTAGE] = {devices, N_OF(devices), "mobile", "device"},
    [SP_GEN_SCENARIO_CARRIER_DELAY] = {carriers, N_OF(carriers), "dhl", "carrier"},
    [SP_GEN_SCENARIO_SUPPORT_BACKLOG] = {support_channels, N_OF(support_channels), "email",
                                         "support channel"},
};

/* ---- entities ------------------------------------------------------------ */

typedef enum gen_kind { K_SESSION = 0, K_SHIPMENT, K_TICKET, K__COUNT } gen_kind_t;

typedef enum gen_session_state {
    S_BROWSE = 0,
    S_VIEW,
    S_ADD,
    S_REMOVE,
    S_CHECKOUT,
    S_SUBMIT,
    S_FAILED,
    S_ORDER,
    S_CANCEL,
    S_DONE = ST_DONE
} gen_session_state_t;

/* A shipment's next event. */
typedef enum gen_shipment_state {
    SH_LABEL = 0,
    SH_DISPATCH,
    SH_TRANSIT,
    SH_OFD,
    SH_ATTEMPT, /* DELIVERED or DELIVERY_FAILED */
    SH_RETURN,
    SH_DONE = ST_DONE
} gen_shipment_state_t;

#define SHF_NO_ORDER_TIME 0x01 /* order_placed_time is null */
#define SHF_HELD          0x02 /* carrier-delay: held or lost */

/* A ticket's next event. */
typedef enum gen_ticket_state {
    TK_OPEN = 0,
    TK_BOT,      /* a bot's reply */
    TK_CUSTOMER, /* the customer writes */
    TK_AGENT,    /* a human agent's reply */
    TK_RESOLVE,
    TK_REOPEN,
    TK_SURVEY,
    TK_DONE = ST_DONE
} gen_ticket_state_t;

#define TKF_BOT         0x01 /* a bot replied */
#define TKF_BOT_SETTLES 0x02 /* ... and settles it without a human */
#define TKF_HUMAN       0x04 /* a human replied */
#define TKF_REOPENED    0x08
#define TKF_BOT_NOW     0x10 /* the event being emitted is a bot's reply */
#define TKF_SLOW        0x20 /* support-backlog: opened in the incident */

/* Why a ticket was opened (its mood at the start). */
enum { CAUSE_QUESTION = 0, CAUSE_ORDER, CAUSE_PAYMENT, CAUSE_DELIVERY };

/* One thing in flight that emits events: a session, a shipment or a ticket. */
typedef struct gen_entity {
    int64_t next_ms;   /* event time of its next event (heap key) */
    uint64_t seq;      /* unique per generator: heap tie-break */
    uint64_t no;       /* session, shipment or ticket number (in its id) */
    uint64_t order_no; /* session: 0 until ORDER_PLACED; shipment, ticket: its order (0: none) */
    uint32_t customer; /* 0: guest (or none), else 1.. */
    uint8_t kind, state, country, flags;
    union {
        struct {
            int64_t amount_cents;
            uint32_t product; /* product of the current cart/view event, 1.. */
            uint8_t channel, device, currency, payment, failure;
            uint8_t left; /* events left in the current phase */
            uint8_t items, fails;
        } s;
        struct {
            int64_t order_ms;
            uint32_t promised_h;   /* hours since the epoch: on the hour */
            uint32_t due_s, ofd_s; /* seconds after order_ms */
            uint8_t carrier, attempts;
        } sh;
        struct {
            int64_t opened_ms;
            uint8_t channel, rounds, mood; /* mood: 0-100, the survey's answers */
            int8_t csat, nps, ces;         /* survey answers, -1: none */
        } tk;
    } u;
} gen_entity_t;

_Static_assert(sizeof(gen_entity_t) <= 64, "in-flight entities: 64 B each at most");

/* Everything the entity models read and write besides the entity: the
 * PRNG, the counters that number new entities, the customer pool, the
 * incident, and the children the current step starts. The generator embeds
 * one; the rate calibration runs a private one. */
typedef struct gen_model {
    gen_rng_t rng;
    uint64_t seed;
    uint64_t session_seq, order_seq, shipment_seq, ticket_seq;
    double acq_per_ms;  /* new customers per ms of event time */
    uint32_t cust_base; /* customers acquired before the first event */
    uint32_t cust_new;  /* acquired since */
    int scenario;       /* sp_gen_scenario_t */
    int target;         /* index of the value hit; -1: every value */
    int64_t inc_start, inc_end;
    uint64_t incident_hits;
    gen_entity_t spawn[GEN_SPAWN_MAX];
    int spawn_cnt;
} gen_model_t;

static int in_incident(const gen_model_t *m, int scenario, int64_t t, int value) {
    return m->scenario == scenario && t >= m->inc_start && t < m->inc_end &&
           (m->target < 0 || m->target == value);
}

/* A new child entity due at `at`; NULL if the step already started too many
 * (the models never do). */
static gen_entity_t *spawn_new(gen_model_t *m, uint8_t kind, int64_t at) {
    gen_entity_t *e;
    assert(m->spawn_cnt < GEN_SPAWN_MAX);
    if (m->spawn_cnt >= GEN_SPAWN_MAX) return NULL;
    e = &m->spawn[m->spawn_cnt++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->next_ms = at;
    return e;
}

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
} gen_stream_def_t;

static const gen_stream_def_t gen_streams[SP_STREAM__COUNT] = {
    [SP_STREAM_CLICKSTREAM] = {json_clickstream, N_OF(json_clickstream), key_by_session},
    [SP_STREAM_CHECKOUT] = {json_checkout, N_OF(json_checkout), key_by_customer},
    [SP_STREAM_SHIPMENT] = {json_shipment, N_OF(json_shipment), key_by_order},
    [SP_STREAM_SUPPORT] = {json_support, N_OF(json_support), key_by_ticket},
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
    gen_model_t m;
    uint64_t seed;
    double duplicates;
    double session_gap_ms, ticket_gap_ms, order_gap_ms; /* mean gaps between arrivals */
    /* Event time of the next arrival: a session, a background ticket, and
     * (warm start only, else INFINITY) an order whose session is not
     * simulated, up to order_until. */
    double session_at, ticket_at, order_at, order_until;
    int64_t last_ms; /* event time of the last new event */
    int64_t end_ms;  /* 0: none; else sp_gen_next ends at this event time */
    int ended;
    unsigned streams; /* emitted: bits (1u << sp_stream_t) */

    gen_entity_t *heap; /* owned; min-heap by (next_ms, seq); grows up to GEN_MAX_ENTITIES */
    uint32_t heap_cnt, heap_cap;
    uint32_t in_flight[K__COUNT];

    uint64_t entity_seq, event_seq, msg_no;
    sp_gen_stats_t stats;

    gen_encoder_t enc[SP_STREAM__COUNT];

    /* Scratch for the event being emitted; ev's views point here. */
    sp_event_t ev;
    char event_id[GEN_ID_MAX], session_id[GEN_ID_MAX], customer_id[GEN_ID_MAX];
    char order_id[GEN_ID_MAX], product_id[GEN_ID_MAX], shipment_id[GEN_ID_MAX];
    char ticket_id[GEN_ID_MAX];
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

#define SET_STR(ev, f, buf, sz) ((ev)->s[f].p = (buf), (ev)->s[f].len = (uint32_t)(sz))
#define SET_LIT(ev, f, lit)     SET_STR(ev, f, lit, strlen(lit))

static sp_stream_t stream_of(sp_event_type_t t) {
    return t < SP_T_CHECKOUT_STARTED ? SP_STREAM_CLICKSTREAM
           : t < SP_T_LABEL_CREATED  ? SP_STREAM_CHECKOUT
           : t < SP_T_TICKET_OPENED  ? SP_STREAM_SHIPMENT
                                     : SP_STREAM_SUPPORT;
}

/* Common fields of every event: type, stream, event time, customer, order. */
static void fill_common(sp_gen_t *g, const gen_entity_t *e, sp_event_type_t t, int64_t at) {
    sp_event_t *ev = &g->ev;
    int n;

    memset(ev, 0, sizeof(*ev));
    ev->type = t;
    ev->stream = stream_of(t);
    sp_event_set_int(ev, SP_I_EVENT_TIME, at);
    if (e->customer) {
        n = snprintf(g->customer_id, sizeof(g->customer_id), "c%07" PRIu32, e->customer);
        SET_STR(ev, SP_S_CUSTOMER_ID, g->customer_id, n);
    }
    if (e->order_no) {
        n = snprintf(g->order_id, sizeof(g->order_id), "o-%" PRIx64 "-%" PRIu64, g->seed,
                     e->order_no);
        SET_STR(ev, SP_S_ORDER_ID, g->order_id, n);
    }
}

/* ---- customers ----------------------------------------------------------- */

/* Fixed per customer (and seed): how readily they come back. */
static double customer_propensity(const gen_model_t *m, uint32_t c) {
    uint64_t h = ((uint64_t)c ^ m->seed) * 0xbf58476d1ce4e5b9ULL;
    uint32_t x = (uint32_t)(((h ^ (h >> 31)) * 0x94d049bb133111ebULL) >> 32) % 100;
    return x < 25 ? 1.0 : x < 60 ? 0.35 : 0.1;
}

/* A logged-in visitor: a new customer, or a known one by age since
 * acquisition (ids are in acquisition order, acq_per_ms of them per ms) and
 * propensity. */
static uint32_t customer_pick(gen_model_t *m) {
    gen_rng_t *r = &m->rng;
    uint32_t n = m->cust_base + m->cust_new, c = n;

    if (rng_chance(r, GEN_P_NEW_CUSTOMER) && n < UINT32_MAX - 1) {
        m->cust_new++;
        return n + 1;
    }
    for (int i = 0; i < 8; i++) {
        double u = rng_unit(r), age, back;
        if (u < 0.10)
            age = rng_exp(r, 2.0 * DAY_MS);
        else if (u < 0.50)
            age = rng_exp(r, 60.0 * DAY_MS);
        else
            age = rng_unit(r) * (double)GEN_HISTORY_MS;
        back = age * m->acq_per_ms;
        c = back < (double)(n - 1) ? n - (uint32_t)back : 1 + rng_below(r, n);
        if (rng_unit(r) < customer_propensity(m, c)) break;
    }
    return c;
}

/* ---- tickets ------------------------------------------------------------- */

/* A ticket opened at open_ms; channel < 0: the usual mix. */
static void ticket_spawn(gen_model_t *m, int64_t open_ms, uint32_t customer, uint64_t order_no,
                         int cause, int channel) {
    gen_rng_t *r = &m->rng;
    gen_entity_t *e = spawn_new(m, K_TICKET, open_ms);

    if (!e) return;
    e->no = ++m->ticket_seq;
    e->customer = customer;
    e->order_no = order_no;
    e->state = TK_OPEN;
    e->u.tk.channel =
        (uint8_t)(channel >= 0 ? channel : rng_pick(r, support_channel_w, N_OF(support_channel_w)));
    e->u.tk.mood = (uint8_t)(70 + rng_below(r, 25) - (cause == CAUSE_DELIVERY ? 15 : 0) -
                             (cause == CAUSE_PAYMENT ? 10 : 0));
    e->u.tk.csat = e->u.tk.nps = e->u.tk.ces = -1;
}

static void mood_down(gen_entity_t *e, int by) {
    e->u.tk.mood = (uint8_t)(e->u.tk.mood > by ? e->u.tk.mood - by : 0);
}

/* support-backlog: a human reply due at t on the channel hit comes hours
 * later if t is in the incident, or if it is the first one of a ticket
 * opened in it. */
static int64_t ticket_backlog(gen_model_t *m, gen_entity_t *e, int64_t t) {
    if (in_incident(m, SP_GEN_SCENARIO_SUPPORT_BACKLOG, t, e->u.tk.channel) ||
        ((e->flags & TKF_SLOW) && !(e->flags & TKF_HUMAN))) {
        m->incident_hits++;
        e->flags &= (uint8_t)~TKF_SLOW;
        t += rng_logspan(&m->rng, 2 * HOUR_MS, 8 * HOUR_MS);
    }
    return t;
}

/* Time of the first human reply, counted from `from`. */
static const int64_t frt_lo[] = {30000, 20 * MIN_MS, 10000, 5 * MIN_MS};
static const int64_t frt_hi[] = {10 * MIN_MS, 10 * HOUR_MS, 3 * MIN_MS, 4 * HOUR_MS};

static int64_t ticket_first_reply(gen_model_t *m, gen_entity_t *e, int64_t from) {
    int ch = e->u.tk.channel;
    return ticket_backlog(m, e, from + rng_logspan(&m->rng, frt_lo[ch], frt_hi[ch]));
}

static int score(double x, int lo, int hi) {
    int v = (int)floor(x + 0.5);
    return v < lo ? lo : v > hi ? hi : v;
}

/* Survey answers from the ticket's mood; each question answered or not. */
static void ticket_survey(gen_model_t *m, gen_entity_t *e) {
    gen_rng_t *r = &m->rng;
    double s = e->u.tk.mood / 100.0;
    if (rng_chance(r, 0.9))
        e->u.tk.csat = (int8_t)score(1 + 4 * (s + 0.4 * (rng_unit(r) - 0.5)), 1, 5);
    if (rng_chance(r, 0.6))
        e->u.tk.nps = (int8_t)score(10 * (s + 0.4 * (rng_unit(r) - 0.5)), 0, 10);
    if (rng_chance(r, 0.5))
        e->u.tk.ces = (int8_t)score(1 + 6 * (1 - s + 0.4 * (rng_unit(r) - 0.5)), 1, 7);
    if (e->u.tk.csat < 0 && e->u.tk.nps < 0 && e->u.tk.ces < 0)
        e->u.tk.csat = (int8_t)score(1 + 4 * s, 1, 5);
}

static sp_event_type_t ticket_advance(gen_model_t *m, gen_entity_t *e) {
    static const double p_bot[] = {0.70, 0.30, 0.0, 0.50};    /* a bot answers first */
    static const double p_settle[] = {0.35, 0.15, 0.0, 0.30}; /* ... and settles it */
    gen_rng_t *r = &m->rng;
    int64_t at = e->next_ms, next = at;
    int ch = e->u.tk.channel;
    sp_event_type_t t = SP_T_TICKET_OPENED;

    e->flags &= (uint8_t)~TKF_BOT_NOW;
    switch ((gen_ticket_state_t)e->state) {
    case TK_OPEN:
        e->u.tk.opened_ms = at;
        if (in_incident(m, SP_GEN_SCENARIO_SUPPORT_BACKLOG, at, ch)) e->flags |= TKF_SLOW;
        if (rng_chance(r, p_bot[ch])) {
            e->state = TK_BOT;
            next = at + (ch == SUP_EMAIL ? rng_logspan(r, 20000, 5 * MIN_MS)
                                         : rng_logspan(r, 3000, MIN_MS));
        } else {
            e->state = TK_AGENT;
            next = ticket_first_reply(m, e, at);
        }
        break;
    case TK_BOT:
        t = SP_T_AGENT_REPLIED;
        e->flags |= TKF_BOT | TKF_BOT_NOW;
        if (rng_chance(r, p_settle[ch])) e->flags |= TKF_BOT_SETTLES;
        e->state = TK_CUSTOMER;
        next = at + rng_logspan(r, 20000, 10 * MIN_MS);
        break;
    case TK_CUSTOMER:
        t = SP_T_CUSTOMER_REPLIED;
        if ((e->flags & TKF_BOT_SETTLES) && !(e->flags & TKF_HUMAN)) {
            e->state = TK_RESOLVE;
            next = at + rng_logspan(r, 30000, 20 * MIN_MS);
        } else {
            e->state = TK_AGENT;
            next = (e->flags & TKF_HUMAN)
                       ? ticket_backlog(m, e, at + rng_logspan(r, MIN_MS, 4 * HOUR_MS))
                       : ticket_first_reply(m, e, at);
        }
        break;
    case TK_AGENT:
        t = SP_T_AGENT_REPLIED;
        if (!(e->flags & TKF_HUMAN)) {
            e->flags |= TKF_HUMAN;
            if (at - e->u.tk.opened_ms > frt_hi[ch]) mood_down(e, 25);
            e->u.tk.rounds = (uint8_t)rng_below(r, 3);
        }
        if (e->u.tk.rounds > 0) {
            e->u.tk.rounds--;
            e->state = TK_CUSTOMER;
            next = at + rng_logspan(r, 2 * MIN_MS, DAY_MS);
        } else {
            e->state = TK_RESOLVE;
            next = at + rng_logspan(r, 5 * MIN_MS, DAY_MS);
        }
        break;
    case TK_RESOLVE:
        t = SP_T_TICKET_RESOLVED;
        if (!(e->flags & TKF_REOPENED) && rng_chance(r, 0.08)) {
            e->flags |= TKF_REOPENED;
            mood_down(e, 25);
            e->state = TK_REOPEN;
            next = at + rng_logspan(r, HOUR_MS, 3 * DAY_MS);
        } else if (rng_chance(r, 0.40)) {
            if (!(e->flags & TKF_HUMAN)) e->u.tk.mood = (uint8_t)(e->u.tk.mood + 5);
            ticket_survey(m, e);
            e->state = TK_SURVEY;
            next = at + rng_logspan(r, 10 * MIN_MS, 2 * DAY_MS);
        } else {
            e->state = TK_DONE;
        }
        break;
    case TK_REOPEN:
        t = SP_T_TICKET_REOPENED;
        e->flags &= (uint8_t)~TKF_BOT_SETTLES;
        e->u.tk.rounds = 0;
        e->state = TK_AGENT;
        next = (e->flags & TKF_HUMAN)
                   ? ticket_backlog(m, e, at + rng_logspan(r, 10 * MIN_MS, 8 * HOUR_MS))
                   : ticket_first_reply(m, e, at);
        break;
    case TK_SURVEY:
        t = SP_T_SURVEY_RESPONSE;
        e->state = TK_DONE;
        break;
    case TK_DONE: assert(0); break;
    }
    e->next_ms = next;
    return t;
}

static void ticket_fill(sp_gen_t *g, const gen_entity_t *e, sp_event_type_t t, int64_t at) {
    sp_event_t *ev = &g->ev;
    int n;

    fill_common(g, e, t, at);
    n = snprintf(g->ticket_id, sizeof(g->ticket_id), "t-%" PRIx64 "-%" PRIu64, g->seed, e->no);
    SET_STR(ev, SP_S_TICKET_ID, g->ticket_id, n);
    SET_LIT(ev, SP_S_CHANNEL, support_channels[e->u.tk.channel]);
    sp_event_set_int(ev, SP_I_IS_BOT, (e->flags & TKF_BOT_NOW) ? 1 : 0);
    if (t == SP_T_TICKET_OPENED) g->stats.tickets++;
    if (t != SP_T_SURVEY_RESPONSE) return;
    if (e->u.tk.csat >= 0) sp_event_set_int(ev, SP_I_CSAT, e->u.tk.csat);
    if (e->u.tk.nps >= 0) sp_event_set_int(ev, SP_I_NPS, e->u.tk.nps);
    if (e->u.tk.ces >= 0) sp_event_set_int(ev, SP_I_CES, e->u.tk.ces);
}

/* ---- shipments ----------------------------------------------------------- */

static const uint8_t *carrier_weights(uint8_t country) {
    const char *c = countries[country];
    return carrier_w[strcmp(c, "GB") == 0 ? 1 : strcmp(c, "PL") == 0 ? 2 : 0];
}

static void shipment_spawn(gen_model_t *m, int64_t order_ms, uint32_t customer, uint8_t country,
                           uint64_t order_no) {
    gen_rng_t *r = &m->rng;
    gen_entity_t *e = spawn_new(m, K_SHIPMENT, order_ms + rng_logspan(r, 5 * MIN_MS, 6 * HOUR_MS));
    int64_t promised;

    if (!e) return;
    e->no = ++m->shipment_seq;
    e->order_no = order_no;
    e->customer = customer;
    e->country = country;
    e->state = SH_LABEL;
    e->u.sh.order_ms = order_ms;
    e->u.sh.carrier = rng_pick(r, carrier_weights(country), N_OF(carriers));
    promised = order_ms + (2 + rng_below(r, 4)) * DAY_MS;
    promised = (promised + HOUR_MS - 1) / HOUR_MS * HOUR_MS;
    e->u.sh.promised_h = (uint32_t)(promised / HOUR_MS);
    if (rng_chance(r, 0.05)) e->flags |= SHF_NO_ORDER_TIME;
}

static int64_t sh_time(const gen_entity_t *e, uint32_t s) {
    return e->u.sh.order_ms + (int64_t)s * 1000;
}

static void sh_set_plan(gen_entity_t *e, int64_t due, int64_t ofd) {
    e->u.sh.due_s = (uint32_t)((due - e->u.sh.order_ms) / 1000);
    e->u.sh.ofd_s = (uint32_t)((ofd - e->u.sh.order_ms) / 1000);
}

/* At dispatch: when it will be out for delivery and delivered. */
static void shipment_plan(gen_model_t *m, gen_entity_t *e, int64_t at, int64_t promised) {
    gen_rng_t *r = &m->rng;
    int64_t lo = at + 12 * HOUR_MS, hi = promised - 30 * MIN_MS, due;

    if (hi <= lo || rng_chance(r, 0.05))
        due = (promised > lo ? promised : lo) + rng_logspan(r, HOUR_MS, 48 * HOUR_MS);
    else
        due = rng_span(r, lo, hi);
    sh_set_plan(e, due, due - rng_logspan(r, HOUR_MS, 6 * HOUR_MS));
}

/* No further event; the customer may ask where the parcel is. */
static void shipment_lose(gen_model_t *m, gen_entity_t *e, int64_t at, int64_t promised) {
    e->state = SH_DONE;
    if (rng_chance(&m->rng, 0.5))
        ticket_spawn(
            m, (promised > at ? promised : at) + rng_logspan(&m->rng, 6 * HOUR_MS, 3 * DAY_MS),
            e->customer, e->order_no, CAUSE_DELIVERY, -1);
}

/* carrier-delay: the next event would fall in the incident. Lost, or held
 * until after it and delivered after the promised time. */
static int64_t shipment_hold(gen_model_t *m, gen_entity_t *e, int64_t at, int64_t promised) {
    gen_rng_t *r = &m->rng;
    int64_t due, ofd;

    m->incident_hits++;
    e->flags |= SHF_HELD;
    if (rng_chance(r, 0.25)) {
        shipment_lose(m, e, at, promised);
        return at;
    }
    due = promised + rng_logspan(r, HOUR_MS, 24 * HOUR_MS);
    if (due < m->inc_end + 6 * HOUR_MS) due = m->inc_end + 6 * HOUR_MS;
    ofd = due - rng_logspan(r, HOUR_MS, 5 * HOUR_MS);
    sh_set_plan(e, due, ofd);
    switch ((gen_shipment_state_t)e->state) {
    case SH_ATTEMPT: return due;
    case SH_OFD: return ofd;
    default: return m->inc_end + (int64_t)((double)(ofd - m->inc_end) * 0.5 * rng_unit(r));
    }
}

static sp_event_type_t shipment_advance(gen_model_t *m, gen_entity_t *e) {
    gen_rng_t *r = &m->rng;
    int64_t at = e->next_ms, order = e->u.sh.order_ms, next = at;
    int64_t promised = (int64_t)e->u.sh.promised_h * HOUR_MS, ofd, due;
    sp_event_type_t t = SP_T_LABEL_CREATED;

    switch ((gen_shipment_state_t)e->state) {
    case SH_LABEL:
        next = rng_chance(r, 0.12) ? order + rng_span(r, 24 * HOUR_MS + MIN_MS, 60 * HOUR_MS)
                                   : order + rng_logspan(r, 2 * HOUR_MS, 22 * HOUR_MS);
        if (next < at + 10 * MIN_MS) next = at + 10 * MIN_MS;
        e->state = SH_DISPATCH;
        break;
    case SH_DISPATCH: /* then a first scan within hours */
        t = SP_T_DISPATCHED;
        if (!(e->flags & SHF_HELD)) shipment_plan(m, e, at, promised);
        e->state = SH_TRANSIT;
        ofd = sh_time(e, e->u.sh.ofd_s);
        next = at + rng_logspan(r, 2 * HOUR_MS, 12 * HOUR_MS);
        if (next > at + (ofd - at) / 2) next = at + (ofd - at) / 2;
        if (rng_chance(r, 0.005)) shipment_lose(m, e, at, promised);
        break;
    case SH_TRANSIT: /* a scan at each hub, 6-20 h apart, until out for delivery */
        t = SP_T_IN_TRANSIT;
        ofd = sh_time(e, e->u.sh.ofd_s);
        if (ofd - at > GEN_SCAN_MAX_MS) {
            next = at + rng_logspan(r, 6 * HOUR_MS, 20 * HOUR_MS);
        } else {
            next = ofd;
            e->state = SH_OFD;
        }
        if (rng_chance(r, 0.003)) shipment_lose(m, e, at, promised);
        break;
    case SH_OFD:
        t = SP_T_OUT_FOR_DELIVERY;
        next = sh_time(e, e->u.sh.due_s);
        e->state = SH_ATTEMPT;
        break;
    case SH_ATTEMPT:
        if (rng_chance(r, 0.05)) {
            t = SP_T_DELIVERY_FAILED;
            e->u.sh.attempts++;
            if (rng_chance(r, 0.25))
                ticket_spawn(m, at + rng_logspan(r, 10 * MIN_MS, 6 * HOUR_MS), e->customer,
                             e->order_no, CAUSE_DELIVERY, -1);
            if (e->u.sh.attempts >= 3) { /* back to the sender */
                next = at + rng_logspan(r, DAY_MS, 5 * DAY_MS);
                e->state = SH_RETURN;
            } else { /* next working day */
                due = at + rng_span(r, 20 * HOUR_MS, 28 * HOUR_MS);
                sh_set_plan(e, due, due - rng_logspan(r, HOUR_MS, 6 * HOUR_MS));
                next = sh_time(e, e->u.sh.ofd_s);
                e->state = SH_OFD;
            }
        } else {
            t = SP_T_DELIVERED;
            if (at > promised && rng_chance(r, 0.15))
                ticket_spawn(m, at + rng_logspan(r, 5 * MIN_MS, DAY_MS), e->customer, e->order_no,
                             CAUSE_DELIVERY, -1);
            if (rng_chance(r, 0.06)) {
                next = at + rng_logspan(r, 2 * DAY_MS, 14 * DAY_MS);
                e->state = SH_RETURN;
            } else {
                e->state = SH_DONE;
            }
        }
        break;
    case SH_RETURN:
        t = SP_T_RETURNED;
        if (rng_chance(r, 0.10))
            ticket_spawn(m, at + rng_logspan(r, 10 * MIN_MS, 2 * DAY_MS), e->customer, e->order_no,
                         CAUSE_DELIVERY, -1);
        e->state = SH_DONE;
        break;
    case SH_DONE: assert(0); break;
    }
    if (e->state != SH_DONE && e->state != SH_RETURN && !(e->flags & SHF_HELD) &&
        in_incident(m, SP_GEN_SCENARIO_CARRIER_DELAY, next, e->u.sh.carrier))
        next = shipment_hold(m, e, at, promised);
    e->next_ms = next > at ? next : at + 1000;
    return t;
}

static void shipment_fill(sp_gen_t *g, const gen_entity_t *e, sp_event_type_t t, int64_t at) {
    sp_event_t *ev = &g->ev;
    int n;

    fill_common(g, e, t, at);
    n = snprintf(g->shipment_id, sizeof(g->shipment_id), "sh-%" PRIx64 "-%" PRIu64, g->seed, e->no);
    SET_STR(ev, SP_S_SHIPMENT_ID, g->shipment_id, n);
    SET_LIT(ev, SP_S_CARRIER, carriers[e->u.sh.carrier]);
    SET_LIT(ev, SP_S_COUNTRY, countries[e->country]);
    sp_event_set_int(ev, SP_I_PROMISED_DELIVERY_TIME, (int64_t)e->u.sh.promised_h * HOUR_MS);
    if (!(e->flags & SHF_NO_ORDER_TIME))
        sp_event_set_int(ev, SP_I_ORDER_PLACED_TIME, e->u.sh.order_ms);
    if (t == SP_T_LABEL_CREATED) g->stats.shipments++;
}

/* What follows an order that stands: its shipment (most), a question. */
static void order_children(gen_model_t *m, int64_t at, uint32_t customer, uint8_t country,
                           uint64_t order_no) {
    gen_rng_t *r = &m->rng;
    if (rng_chance(r, 0.93)) shipment_spawn(m, at, customer, country, order_no);
    if (rng_chance(r, 0.03))
        ticket_spawn(m, at + rng_logspan(r, HOUR_MS, 5 * DAY_MS), customer, order_no, CAUSE_ORDER,
                     -1);
}

/* Warm start: an order placed before the sessions simulated. */
static void order_virtual(gen_model_t *m, int64_t at) {
    gen_rng_t *r = &m->rng;
    uint32_t customer = rng_chance(r, GEN_P_LOGGED_IN) ? customer_pick(m) : 0;
    uint8_t country = rng_pick(r, country_w, N_OF(country_w));
    order_children(m, at, customer, country, ++m->order_seq);
}

/* A background question (support-backlog: more of them, on its channel). */
static void ticket_background(gen_model_t *m, int64_t at) {
    gen_rng_t *r = &m->rng;
    int channel = -1;
    uint32_t customer;

    if (m->scenario == SP_GEN_SCENARIO_SUPPORT_BACKLOG && at >= m->inc_start && at < m->inc_end &&
        rng_chance(r, 0.75)) {
        m->incident_hits++;
        channel =
            m->target >= 0 ? m->target : rng_pick(r, support_channel_w, N_OF(support_channel_w));
    }
    customer = rng_chance(r, 0.60) ? customer_pick(m) : 0;
    ticket_spawn(m, at, customer, 0, CAUSE_QUESTION, channel);
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

static void session_spawn(gen_model_t *m, int64_t at) {
    gen_rng_t *r = &m->rng;
    gen_entity_t *e = spawn_new(m, K_SESSION, at);

    if (!e) return;
    e->no = ++m->session_seq;
    e->state = S_BROWSE;
    e->u.s.channel = rng_pick(r, channel_w, N_OF(channel_w));
    e->u.s.device = rng_pick(r, device_w[e->u.s.channel], N_OF(devices));
    e->country = rng_pick(r, country_w, N_OF(country_w));
    e->customer = rng_chance(r, GEN_P_LOGGED_IN) ? customer_pick(m) : 0;
    e->u.s.left = (uint8_t)(1 + rng_below(r, 6));
}

static uint8_t after_cart(gen_rng_t *r) {
    return rng_chance(r, 0.60) ? S_CHECKOUT : S_DONE;
}

/* Picks the event the session emits now, moves it to its next state and
 * schedules that; an order starts its shipment (and maybe a ticket). */
static sp_event_type_t session_advance(gen_model_t *m, gen_entity_t *e) {
    gen_rng_t *r = &m->rng;
    int64_t at = e->next_ms;
    sp_event_type_t t = SP_T_PAGE_VIEW;

    switch ((gen_session_state_t)e->state) {
    case S_BROWSE:
        t = rng_chance(r, 0.70) ? SP_T_PAGE_VIEW : SP_T_SEARCH;
        if (--e->u.s.left > 0) break;
        if (rng_chance(r, 0.70)) {
            e->state = S_VIEW;
            e->u.s.left = (uint8_t)(1 + rng_below(r, 3));
        } else {
            e->state = S_DONE;
        }
        break;
    case S_VIEW:
        t = SP_T_PRODUCT_VIEW;
        e->u.s.product = pick_skewed(r, GEN_PRODUCT_POOL);
        if (--e->u.s.left > 0) break;
        if (rng_chance(r, 0.35)) {
            e->state = S_ADD;
            e->u.s.left = (uint8_t)(1 + rng_below(r, 3));
        } else {
            e->state = S_DONE;
        }
        break;
    case S_ADD:
        t = SP_T_ADD_TO_CART;
        if (e->u.s.items > 0) /* the first: the viewed one */
            e->u.s.product = pick_skewed(r, GEN_PRODUCT_POOL);
        e->u.s.items++;
        e->u.s.amount_cents += product_price_cents(e->u.s.product);
        if (--e->u.s.left > 0) break;
        e->state = (e->u.s.items > 1 && rng_chance(r, 0.15)) ? S_REMOVE : after_cart(r);
        break;
    case S_REMOVE:
        t = SP_T_REMOVE_FROM_CART; /* the last product added */
        e->u.s.items--;
        e->u.s.amount_cents -= product_price_cents(e->u.s.product);
        e->state = after_cart(r);
        break;
    case S_CHECKOUT:
        t = SP_T_CHECKOUT_STARTED;
        e->u.s.currency = rng_pick(r, currency_w, N_OF(currency_w));
        e->u.s.payment = rng_pick(r, payment_w, N_OF(payment_w));
        e->state = rng_chance(r, 0.90) ? S_SUBMIT : S_DONE;
        break;
    case S_SUBMIT:
        t = SP_T_PAYMENT_SUBMITTED;
        if (in_incident(m, SP_GEN_SCENARIO_CHECKOUT_OUTAGE, at, e->u.s.device)) {
            m->incident_hits++;
            if (rng_chance(r, 0.85)) {
                e->state = S_FAILED;
                e->u.s.failure = rng_chance(r, 0.70) ? FAIL_GATEWAY_TIMEOUT
                                                     : rng_pick(r, failure_w, N_OF(failure_w));
            } else {
                e->state = S_ORDER;
            }
        } else if (rng_chance(r, 0.08)) {
            e->state = S_FAILED;
            e->u.s.failure = rng_pick(r, failure_w, N_OF(failure_w));
        } else {
            e->state = S_ORDER;
        }
        break;
    case S_FAILED:
        t = SP_T_PAYMENT_FAILED;
        e->u.s.fails++;
        if (e->u.s.fails < 3 && rng_chance(r, 0.50)) {
            e->state = S_SUBMIT;
            if (rng_chance(r, 0.30)) e->u.s.payment = rng_pick(r, payment_w, N_OF(payment_w));
        } else {
            e->state = S_DONE;
            if (rng_chance(r, 0.05)) /* "why was my card declined?" */
                ticket_spawn(m, at + rng_logspan(r, 2 * MIN_MS, 2 * HOUR_MS), e->customer, 0,
                             CAUSE_PAYMENT, -1);
        }
        break;
    case S_ORDER:
        t = SP_T_ORDER_PLACED;
        e->order_no = ++m->order_seq;
        e->state = rng_chance(r, 0.02) ? S_CANCEL : S_DONE;
        if (e->state == S_DONE) order_children(m, at, e->customer, e->country, e->order_no);
        break;
    case S_CANCEL:
        t = SP_T_ORDER_CANCELLED;
        e->state = S_DONE;
        break;
    case S_DONE: assert(0); break;
    }
    if (e->state != S_DONE)
        e->next_ms = at + GEN_GAP_MIN_MS + rng_below(r, GEN_GAP_MAX_MS - GEN_GAP_MIN_MS + 1);
    return t;
}

static void session_fill(sp_gen_t *g, const gen_entity_t *e, sp_event_type_t t, int64_t at) {
    sp_event_t *ev = &g->ev;
    int n;

    fill_common(g, e, t, at); /* order_id: from ORDER_PLACED on */
    n = snprintf(g->session_id, sizeof(g->session_id), "s-%" PRIx64 "-%" PRIu64, g->seed, e->no);
    SET_STR(ev, SP_S_SESSION_ID, g->session_id, n);
    SET_LIT(ev, SP_S_CHANNEL, channels[e->u.s.channel]);
    SET_LIT(ev, SP_S_DEVICE, devices[e->u.s.device]);
    SET_LIT(ev, SP_S_COUNTRY, countries[e->country]);

    if (ev->stream == SP_STREAM_CLICKSTREAM) {
        if (t == SP_T_PRODUCT_VIEW || t == SP_T_ADD_TO_CART || t == SP_T_REMOVE_FROM_CART) {
            n = snprintf(g->product_id, sizeof(g->product_id), "p%05" PRIu32, e->u.s.product);
            SET_STR(ev, SP_S_PRODUCT_ID, g->product_id, n);
        }
        return;
    }
    if (t == SP_T_ORDER_PLACED) g->stats.orders++;
    sp_event_set_int(ev, SP_I_AMOUNT_CENTS, e->u.s.amount_cents);
    sp_event_set_int(ev, SP_I_ITEM_COUNT, e->u.s.items);
    SET_LIT(ev, SP_S_CURRENCY, currencies[e->u.s.currency]);
    SET_LIT(ev, SP_S_PAYMENT_METHOD, payments[e->u.s.payment]);
    if (t == SP_T_PAYMENT_FAILED) SET_LIT(ev, SP_S_FAILURE_REASON, failures[e->u.s.failure]);
}

#undef SET_LIT
#undef SET_STR

typedef struct gen_kind_def {
    /* The event due at e->next_ms: its type; moves e to its next state and
     * time (state ST_DONE: no more events); children into m->spawn. */
    sp_event_type_t (*advance)(gen_model_t *m, gen_entity_t *e);
    /* That event's fields into g->ev (at: its event time). */
    void (*fill)(sp_gen_t *g, const gen_entity_t *e, sp_event_type_t t, int64_t at);
} gen_kind_def_t;

static const gen_kind_def_t gen_kinds[K__COUNT] = {
    [K_SESSION] = {session_advance, session_fill},
    [K_SHIPMENT] = {shipment_advance, shipment_fill},
    [K_TICKET] = {ticket_advance, ticket_fill},
};

/* Means of the model above, by simulation with a fixed private seed, so
 * --rate means events/s (all streams) whatever the model's constants. */
typedef struct gen_calib {
    double events_per_session; /* its own, its order's shipment and tickets, its share of the
                                  background tickets */
    double orders_per_session;
} gen_calib_t;

static uint64_t calib_run(gen_model_t *m, gen_entity_t *first) {
    gen_entity_t stack[64];
    int depth = 0;
    uint64_t events = 0;

    stack[depth++] = *first;
    while (depth > 0) {
        gen_entity_t e = stack[--depth];
        while (e.state != ST_DONE) {
            m->spawn_cnt = 0;
            gen_kinds[e.kind].advance(m, &e);
            events++;
            for (int i = 0; i < m->spawn_cnt && depth < N_OF(stack); i++)
                stack[depth++] = m->spawn[i];
        }
    }
    return events;
}

static void gen_calibrate(gen_calib_t *c) {
    gen_model_t m;
    uint64_t events = 0, ticket_events = 0, orders;
    const int sessions = 20000, tickets = 4000;

    memset(&m, 0, sizeof(m));
    m.rng.s = 0x5eed5eed5eedULL;
    m.acq_per_ms = 1e-3;
    m.cust_base = GEN_MIN_CUSTOMERS;
    for (int i = 0; i < sessions; i++) {
        m.spawn_cnt = 0;
        session_spawn(&m, 0);
        events += calib_run(&m, &m.spawn[0]);
    }
    orders = m.order_seq;
    for (int i = 0; i < tickets; i++) {
        m.spawn_cnt = 0;
        ticket_spawn(&m, 0, 0, 0, CAUSE_QUESTION, -1);
        ticket_events += calib_run(&m, &m.spawn[0]);
    }
    c->events_per_session =
        ((double)events + (double)ticket_events / tickets * sessions / GEN_SESSIONS_PER_TICKET) /
        sessions;
    c->orders_per_session = (double)orders / sessions;
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

/* Room for n more entities (growing the heap); -1 at the cap or out of memory. */
static int heap_reserve(sp_gen_t *g, uint32_t n) {
    uint32_t cap = g->heap_cap;
    gen_entity_t *p;

    if (g->heap_cnt + n <= cap) return 0;
    if (g->heap_cnt + n > GEN_MAX_ENTITIES) return -1;
    while (cap < g->heap_cnt + n)
        cap = cap ? (cap > GEN_MAX_ENTITIES / 2 ? GEN_MAX_ENTITIES : cap * 2) : 4096;
    p = realloc(g->heap, sizeof(*p) * cap);
    if (!p) return -1;
    g->heap = p;
    g->heap_cap = cap;
    return 0;
}

/* Into the heap (a copy); -1 if there is no room. */
static int heap_push(sp_gen_t *g, const gen_entity_t *x) {
    if (heap_reserve(g, 1) != 0) return -1;
    g->heap[g->heap_cnt] = *x;
    g->heap[g->heap_cnt].seq = ++g->entity_seq;
    g->heap_cnt++;
    heap_sift_up(g, g->heap_cnt - 1);
    g->in_flight[x->kind]++;
    return 0;
}

/* The top entity moved on (next_ms changed) or is done. */
static void heap_settle_top(sp_gen_t *g) {
    if (g->heap[0].state != ST_DONE) {
        heap_sift_down(g, 0);
        return;
    }
    g->in_flight[g->heap[0].kind]--;
    g->heap[0] = g->heap[--g->heap_cnt];
    if (g->heap_cnt) heap_sift_down(g, 0);
}

/* The children of the last step or arrival into the heap. */
static void heap_push_spawned(sp_gen_t *g) {
    for (int i = 0; i < g->m.spawn_cnt; i++)
        if (heap_push(g, &g->m.spawn[i]) != 0) g->stats.shed++;
    g->m.spawn_cnt = 0;
}

/* ---- encoders ------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *len) {
    char why[8];
    return sp_file_read(path, 1 << 20, out, len, why, sizeof(why)) == SP_OK ? 0 : -1;
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
    if (format == SP_FORMAT_JSON || !(g->streams >> st & 1)) return 0;
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

/* The incident's value: index into the scenario's value list, -1 for "*". */
static int gen_target(const sp_gen_opts_t *o, char *errstr, size_t n) {
    const char *v = o->incident_value ? o->incident_value : scenario_dims[o->scenario].dflt;
    int cnt = scenario_dims[o->scenario].cnt;
    char list[128] = "";

    if (strcmp(v, "*") == 0) return -1;
    for (int i = 0; i < cnt; i++)
        if (strcmp(scenario_dims[o->scenario].values[i], v) == 0) return i;
    for (int i = 0; i < cnt; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "",
                 scenario_dims[o->scenario].values[i]);
    }
    snprintf(errstr, n, "%s: incident value '%s' is not a %s (%s, or * for all)",
             sp_gen_scenario_names[o->scenario], v, scenario_dims[o->scenario].what, list);
    return -2;
}

sp_gen_t *sp_gen_new(const sp_config_t *cfg, const sp_gen_opts_t *o, char *errstr, size_t n) {
    sp_gen_t *g = NULL;
    gen_calib_t calib;
    double base;
    int ok = 0, target = -1;

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
    if (o->scenario < 0 || o->scenario >= SP_GEN_SCENARIO__COUNT) {
        snprintf(errstr, n, "unknown scenario %d", o->scenario);
        return NULL;
    }
    if (o->incident_duration_ms < 0 || o->duration_ms < 0 || o->incident_start_ms < 0) {
        snprintf(errstr, n, "incident start, incident duration and duration must be >= 0");
        return NULL;
    }
    if (o->scenario != SP_GEN_SCENARIO_NONE && (target = gen_target(o, errstr, n)) < -1)
        return NULL;
    if (o->streams >> SP_STREAM__COUNT) {
        snprintf(errstr, n, "unknown stream in mask 0x%x", o->streams);
        return NULL;
    }
    g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(errstr, n, "out of memory");
        return NULL;
    }
    if (heap_reserve(g, 1) != 0) {
        snprintf(g->errstr, sizeof(g->errstr), "out of memory");
        goto out;
    }
    g->seed = o->seed;
    g->duplicates = o->duplicates;
    g->streams = o->streams ? o->streams : (1u << SP_STREAM__COUNT) - 1;
    g->m.seed = o->seed;
    g->m.rng.s = o->seed ^ 0x73746f72652d7075ULL; /* "store-pu" */

    gen_calibrate(&calib);
    g->session_gap_ms = 1000.0 * calib.events_per_session / o->rate;
    g->ticket_gap_ms = g->session_gap_ms * GEN_SESSIONS_PER_TICKET;
    g->order_gap_ms =
        calib.orders_per_session > 0 ? g->session_gap_ms / calib.orders_per_session : INFINITY;
    g->m.acq_per_ms = GEN_P_LOGGED_IN * GEN_P_NEW_CUSTOMER / g->session_gap_ms;
    base = g->m.acq_per_ms * (double)GEN_HISTORY_MS;
    g->m.cust_base = base < GEN_MIN_CUSTOMERS   ? GEN_MIN_CUSTOMERS
                     : base > GEN_MAX_CUSTOMERS ? GEN_MAX_CUSTOMERS
                                                : (uint32_t)base;

    g->m.scenario = o->scenario;
    g->m.target = target;
    g->m.inc_start =
        o->incident_start_ms ? o->incident_start_ms : o->start_ms + GEN_INCIDENT_START_MS;
    g->m.inc_end =
        g->m.inc_start + (o->incident_duration_ms ? o->incident_duration_ms : GEN_INCIDENT_DUR_MS);
    g->end_ms = o->duration_ms ? o->start_ms + o->duration_ms : 0;

    g->session_at = (double)o->start_ms;
    g->ticket_at = (double)o->start_ms + rng_exp(&g->m.rng, g->ticket_gap_ms);
    g->order_at = g->order_until = INFINITY;
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
    out->sessions_in_flight = g->in_flight[K_SESSION];
    out->shipments_in_flight = g->in_flight[K_SHIPMENT];
    out->tickets_in_flight = g->in_flight[K_TICKET];
    out->incident_hits = g->m.incident_hits;
}

/* Start what arrives before the next event in flight: sessions, background
 * tickets and (warm start) orders without a session. Arrivals wait while
 * their cap is reached. */
static void gen_spawn(sp_gen_t *g) {
    gen_model_t *m = &g->m;

    for (;;) {
        double at = INFINITY;
        int which = -1;
        int64_t t;

        if (g->in_flight[K_SESSION] < GEN_MAX_SESSIONS) at = g->session_at, which = K_SESSION;
        if (g->ticket_at < at) at = g->ticket_at, which = K_TICKET;
        if (g->order_at < at) at = g->order_at, which = K_SHIPMENT;
        if (which < 0 || (g->heap_cnt > 0 && (int64_t)at > g->heap[0].next_ms)) break;
        if (heap_reserve(g, GEN_SPAWN_MAX) != 0) break; /* full: let the heap drain */
        /* never before what was emitted (a cap may have held it back) */
        t = (int64_t)at > g->last_ms ? (int64_t)at : g->last_ms;
        m->spawn_cnt = 0;
        switch (which) {
        case K_SESSION:
            session_spawn(m, t);
            g->stats.sessions++;
            g->session_at += rng_exp(&m->rng, g->session_gap_ms);
            break;
        case K_TICKET: {
            double gap = g->ticket_gap_ms;
            if (m->scenario == SP_GEN_SCENARIO_SUPPORT_BACKLOG && t >= m->inc_start &&
                t < m->inc_end)
                gap /= 4;
            ticket_background(m, t);
            g->ticket_at += rng_exp(&m->rng, gap);
            break;
        }
        default:
            order_virtual(m, t);
            g->order_at += rng_exp(&m->rng, g->order_gap_ms);
            if (g->order_at >= g->order_until) g->order_at = INFINITY;
            break;
        }
        heap_push_spawned(g);
    }
}

/* Warm start: run what came before start_ms without emitting -- sessions of
 * the last GEN_WARM_MS, orders (their shipments and tickets) before those,
 * background tickets -- so the first message already sees steady state. */
static void gen_warm(sp_gen_t *g, int64_t start_ms) {
    gen_model_t *m = &g->m;
    double warm_ms = GEN_WARM_MS, orders_ms = GEN_WARM_ORDERS_MS, tickets_ms = GEN_WARM_TICKETS_MS;

    if (warm_ms / g->session_gap_ms > GEN_WARM_MAX_SESSIONS)
        warm_ms = GEN_WARM_MAX_SESSIONS * g->session_gap_ms;
    if (orders_ms / g->order_gap_ms > GEN_WARM_MAX_ORDERS)
        orders_ms = GEN_WARM_MAX_ORDERS * g->order_gap_ms;
    if (tickets_ms / g->ticket_gap_ms > GEN_WARM_MAX_ORDERS)
        tickets_ms = GEN_WARM_MAX_ORDERS * g->ticket_gap_ms;
    g->session_at = (double)start_ms - warm_ms;
    g->order_until = g->session_at;
    g->order_at = (double)start_ms - orders_ms;
    if (g->order_at >= g->order_until) g->order_at = INFINITY;
    g->ticket_at = (double)start_ms - tickets_ms;
    g->last_ms = (int64_t)fmin(g->session_at, fmin(g->order_at, g->ticket_at));
    for (;;) {
        gen_entity_t *e;
        gen_spawn(g);
        if (g->heap_cnt == 0) break; /* out of memory: sp_gen_next says so */
        e = &g->heap[0];
        if (e->next_ms >= start_ms) break;
        g->last_ms = e->next_ms;
        m->spawn_cnt = 0;
        gen_kinds[e->kind].advance(m, e);
        heap_settle_top(g);
        heap_push_spawned(g);
    }
    g->order_at = INFINITY;
    g->last_ms = start_ms;
    /* count what happens from start_ms on */
    memset(&g->stats, 0, sizeof(g->stats));
    m->incident_hits = 0;
}

static int gen_take_dup(sp_gen_t *g, int any, sp_stream_t *st, const void **key, size_t *keylen,
                        const void **val, size_t *vallen, int64_t *event_time) {
    for (int i = 0; i < GEN_DUP_SLOTS; i++) {
        gen_dup_t *d = &g->dups[i];
        if (!d->used || (!any && d->due > g->msg_no)) continue;
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
        d->due = g->msg_no + 1 + rng_below(&g->m.rng, GEN_DUP_MAX_DELAY);
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
    sp_event_type_t t;
    sp_str_t k;
    int64_t at;
    long len;

    if (g->ended) return 1;
    if (g->dup_pending && gen_take_dup(g, 0, st, key, keylen, val, vallen, event_time)) return 0;

    for (;;) { /* until an event of a stream emitted */
        gen_spawn(g);
        if (g->heap_cnt == 0) {
            gen_err(g, "out of memory");
            return -1;
        }
        e = &g->heap[0];
        at = e->next_ms;
        if (g->end_ms && at >= g->end_ms) { /* the end: re-send what is pending, then stop */
            if (g->dup_pending && gen_take_dup(g, 1, st, key, keylen, val, vallen, event_time))
                return 0;
            g->ended = 1;
            return 1;
        }
        g->last_ms = at;
        g->m.spawn_cnt = 0;
        t = gen_kinds[e->kind].advance(&g->m, e);
        g->event_seq++; /* numbered even if not emitted: the same ids as with all streams */
        if (g->streams >> stream_of(t) & 1) {
            gen_kinds[e->kind].fill(g, e, t, at);
            heap_settle_top(g); /* e is stale from here on */
            heap_push_spawned(g);
            break;
        }
        heap_settle_top(g);
        heap_push_spawned(g);
    }

    len =
        snprintf(g->event_id, sizeof(g->event_id), "e-%" PRIx64 "-%" PRIu64, g->seed, g->event_seq);
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
    *event_time = at;
    g->stats.messages[g->ev.stream]++;
    g->msg_no++;

    if (g->duplicates > 0 && rng_chance(&g->m.rng, g->duplicates))
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
          "Produces synthetic store traffic to Kafka: shopping sessions (clickstream,\n"
          "checkout), the shipments of their orders (label, dispatch, transit, delivery,\n"
          "failed attempts, returns, lost parcels) and support tickets (bot and human\n"
          "replies, reopenings, surveys), in event-time order, with customers who come\n"
          "back over weeks and months.\n"
          "\n"
          "  -c, --config FILE       config file (topics, schemas.ids, kafka.*)\n"
          "      --brokers ADDR      bootstrap servers (overrides kafka.bootstrap.servers)\n"
          "      --bootstrap-file F  read the bootstrap servers from F (waits up to 10 s\n"
          "                          for it to appear; see `storepulse broker`)\n"
          "      --rate N            events per second of event time, all four topics\n"
          "                          (default 1000)\n"
          "      --speedup S         produce S times faster than event time (default 1 =\n"
          "                          real time; 0 = as fast as possible: days of event\n"
          "                          time in seconds)\n"
          "      --count N           stop after N messages, duplicates included\n"
          "                          (default 0 = no limit)\n"
          "      --duration D        stop before the first event at or after start time\n"
          "                          + D of event time (30m, 6h, 3d; default: no limit)\n"
          "      --seed N            PRNG seed (default 1); same seed and options give\n"
          "                          the same messages\n"
          "      --start-time MS|now event time of the first event (default now)\n"
          "      --format avro|json  value format of every topic (default: per topic)\n"
          "      --streams LIST      only these topics, e.g. clickstream,checkout (of\n"
          "                          clickstream, checkout, shipment, support; default\n"
          "                          all); the others' events are simulated, not sent\n"
          "      --duplicates P      probability of re-sending a message (default 0.01)\n"
          "      --warm-start        begin in steady state: sessions, shipments and tickets\n"
          "                          already in flight at the start time (default: cold,\n"
          "                          every session whole; full session rate after ~5 min,\n"
          "                          shipments and tickets after days of event time)\n"
          "      --scenario NAME     script an incident (see below)\n"
          "      --incident-start T  its start in event time: epoch ms, or +D after the\n"
          "                          start time (default +30m)\n"
          "      --incident-duration D  its length in event time (default 20m)\n"
          "      --incident-value V  the device, carrier or support channel hit (default\n"
          "                          per scenario; * = all)\n"
          "      --quiet             no progress lines\n"
          "  -h, --help              this help\n"
          "\n"
          "Without --count or --duration it runs until SIGINT/SIGTERM.\n"
          "\n"
          "Scenarios change only events whose event time is within the incident:\n"
          "  checkout-outage  sessions on one device (default mobile): 85 % of payment\n"
          "                   submissions fail (mostly gateway_timeout), retries too, so\n"
          "                   orders mostly do not happen: payment failures, checkout\n"
          "                   abandonment and a conversion drop on that device.\n"
          "  carrier-delay    one carrier (default dhl): a parcel whose next event falls\n"
          "                   in the incident is lost (25 %, no further event: overdue\n"
          "                   once its promise passes) or held until after it and\n"
          "                   delivered 1-24 h after the promised time. Late deliveries\n"
          "                   land hours to days after the incident (--warm-start puts\n"
          "                   parcels in flight from the start; hours-long incidents\n"
          "                   and --speedup 0 show the late ones soon).\n"
          "  support-backlog  one channel (default email): human replies due in the\n"
          "                   incident, and first human replies of tickets opened in\n"
          "                   it, come 2-8 h later; 4x as many background tickets open,\n"
          "                   most of the extra on that channel.\n"
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

int sp_gen_parse_streams(const char *s, unsigned *out) {
    unsigned mask = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        char name[32];
        int st;
        if (n == 0 || n >= sizeof(name)) return -1;
        memcpy(name, s, n);
        name[n] = '\0';
        if ((st = sp_stream_lookup(name)) < 0) return -1;
        mask |= 1u << st;
        s += n + (s[n] == ',');
    }
    if (!mask) return -1;
    *out = mask;
    return 0;
}

static rd_kafka_t *gen_producer_new(const sp_config_t *cfg, const char *brokers, gen_run_t *run,
                                    char *errstr, size_t errstr_size) {
    static const char *const defaults[][2] = {{"enable.idempotence", "true"},
                                              {"linger.ms", "5"},
                                              {"batch.num.messages", "10000"},
                                              {"queue.buffering.max.messages", "1000000"},
                                              {"client.id", "storepulse-gen"}};
    rd_kafka_conf_t *conf = sp_kafka_conf_new(cfg, SP_KAFKA_PRODUCER, errstr, errstr_size);
    rd_kafka_t *rk = NULL;
    char rkerr[512];

    if (!conf) goto out;
    for (int i = 0; i < N_OF(defaults); i++) /* ours, unless the config sets them */
        if (!sp_config_kafka_get(cfg, defaults[i][0]) &&
            rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], rkerr, sizeof(rkerr)) !=
                RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", defaults[i][0], rkerr);
            goto out;
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
        O_WARM,
        O_DURATION,
        O_SCENARIO,
        O_INC_START,
        O_INC_DUR,
        O_INC_VALUE,
        O_STREAMS
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
        {"duration", required_argument, NULL, O_DURATION},
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"incident-start", required_argument, NULL, O_INC_START},
        {"incident-duration", required_argument, NULL, O_INC_DUR},
        {"incident-value", required_argument, NULL, O_INC_VALUE},
        {"streams", required_argument, NULL, O_STREAMS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *brokers = NULL, *bootstrap_file = NULL;
    char brokers_buf[1024];
    sp_gen_opts_t o = {
        .seed = 1, .start_ms = -1, .rate = 1000, .duplicates = 0.01, .format = (sp_format_t)-1};
    double speedup = 1;
    uint64_t count = 0, produced = 0;
    const char *inc_start = NULL; /* epoch ms, or +duration after the start time */
    int quiet = 0, opt, ret = 1, ended = 0;
    sp_config_t *cfg = NULL;
    sp_gen_t *g = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt[SP_STREAM__COUNT] = {0};
    gen_run_t run = {0, 0, 0};
    sp_gen_stats_t stats;
    char errstr[1024];
    struct sigaction sa;
    int64_t t0, first_et = -1, last_et = 0, next_progress;
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
        case O_DURATION:
            if (sp_duration_parse(optarg, &o.duration_ms) != SP_OK || o.duration_ms <= 0)
                bad = "--duration: expected a duration > 0 (30m, 6h, 3d)";
            break;
        case O_SCENARIO:
            o.scenario = sp_gen_scenario_lookup(optarg);
            if (o.scenario <= SP_GEN_SCENARIO_NONE) {
                o.scenario = SP_GEN_SCENARIO_NONE;
                bad = "--scenario: expected checkout-outage, carrier-delay or support-backlog";
            }
            break;
        case O_INC_START: {
            int64_t ms;
            uint64_t abs_ms;
            inc_start = optarg;
            if (optarg[0] == '+' ? sp_duration_parse(optarg + 1, &ms) != SP_OK
                                 : parse_u64(optarg, &abs_ms) != 0 || abs_ms == 0 ||
                                       abs_ms >= (uint64_t)INT64_MAX / 2)
                bad = "--incident-start: expected epoch milliseconds or +duration (+2h)";
            break;
        }
        case O_INC_DUR:
            if (sp_duration_parse(optarg, &o.incident_duration_ms) != SP_OK ||
                o.incident_duration_ms <= 0)
                bad = "--incident-duration: expected a duration > 0 (20m, 6h)";
            break;
        case O_INC_VALUE: o.incident_value = optarg; break;
        case O_STREAMS:
            if (sp_gen_parse_streams(optarg, &o.streams) != 0)
                bad = "--streams: expected a comma-separated list of clickstream, checkout, "
                      "shipment, support";
            break;
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
    if (!o.scenario && (inc_start || o.incident_duration_ms || o.incident_value)) {
        fprintf(stderr, "storepulse gen: --incident-* options need --scenario\n");
        return 2;
    }
    if (o.scenario && gen_target(&o, errstr, sizeof(errstr)) < -1) {
        fprintf(stderr, "storepulse gen: --incident-value: %s\n", errstr);
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
    sp_log_setup(cfg->log_level, cfg->log_format);
    if (bootstrap_file) {
        if (sp_broker_read_bootstrap_file(bootstrap_file, brokers_buf, sizeof(brokers_buf), 10000,
                                          &gen_stop_flag) != 0) {
            fprintf(stderr, "storepulse gen: --bootstrap-file %s: no address in it\n",
                    bootstrap_file);
            goto out;
        }
        brokers = brokers_buf;
    }
    if (o.start_ms < 0) o.start_ms = sp_clock_now_ms();
    if (inc_start && inc_start[0] == '+') {
        int64_t ms = 0;
        sp_duration_parse(inc_start + 1, &ms); /* checked above */
        o.incident_start_ms = o.start_ms + ms;
    } else if (inc_start) {
        uint64_t ms = 0;
        parse_u64(inc_start, &ms);
        o.incident_start_ms = (int64_t)ms;
    }

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
        if (o.streams && !(o.streams >> st & 1)) continue;
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

        int rc = sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et);
        if (rc == 1) { /* --duration reached */
            ended = 1;
            break;
        }
        if (rc != 0) {
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
        if (et > last_et) last_et = et;
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
            "gen: %" PRIu64 " messages in %.2f s (%.0f msg/s), %.2f h of event time%s: %s=%" PRIu64
            " %s=%" PRIu64 " %s=%" PRIu64 " %s=%" PRIu64 ", duplicates=%" PRIu64
            ", sessions=%" PRIu64 ", orders=%" PRIu64 ", shipments=%" PRIu64 ", tickets=%" PRIu64
            ", incident hits=%" PRIu64 "; delivered=%" PRIu64 " failed=%" PRIu64 "\n",
            produced, secs, secs > 0 ? (double)produced / secs : 0.0,
            produced ? (double)(last_et - o.start_ms) / 3.6e6 : 0.0,
            ended ? " (--duration reached)" : "", cfg->topics[SP_STREAM_CLICKSTREAM].name,
            stats.messages[SP_STREAM_CLICKSTREAM], cfg->topics[SP_STREAM_CHECKOUT].name,
            stats.messages[SP_STREAM_CHECKOUT], cfg->topics[SP_STREAM_SHIPMENT].name,
            stats.messages[SP_STREAM_SHIPMENT], cfg->topics[SP_STREAM_SUPPORT].name,
            stats.messages[SP_STREAM_SUPPORT], stats.duplicates, stats.sessions, stats.orders,
            stats.shipments, stats.tickets, stats.incident_hits, run.delivered, run.failed);

out:
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        if (rkt[st]) rd_kafka_topic_destroy(rkt[st]);
    if (rk) rd_kafka_destroy(rk);
    sp_gen_destroy(g);
    free(cfg);
    return ret;
}
