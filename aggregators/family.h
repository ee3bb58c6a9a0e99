/* family.h -- how a metric family plugs into the engine (internal to
 * aggregators/). A family is a table of functions registered in engine.c;
 * adding a family adds a file and one line there.
 *
 * Per window the engine keeps one block of `win_size` bytes per family
 * (zeroed when the window opens, freed when the family closes it). Each
 * family writes its own hash sp:{NS}:<family>:<size>:<start> and pointers
 * latest/final:<family>:<size>. A family with a close delay (abandonment)
 * closes its windows that much later than the others.
 *
 * Entity state goes through the engine's cache: the family names the keys
 * it needs in want(), and finds them loaded in apply(). An entity kind may
 * have a timer: a pure function of its state giving the watermark at which
 * on_timer() must run. The engine keeps every armed timer in the sorted set
 * sp:{NS}:state:timers (written in the same commit as the state), fetches
 * due ones when the watermark passes them, and runs on_timer on the loaded
 * entity; on_timer changes the state so that the timer moves past the
 * watermark (or is disarmed, -1). */
#ifndef SP_FAMILY_H
#define SP_FAMILY_H

#include "aggregators/engine.h"

#define SP_OTHER "__other__"

/* A cached entity. data[] holds the family's fixed-size state. */
typedef struct sp_entity {
    struct sp_entity *hnext;         /* hash chain */
    struct sp_entity *lprev, *lnext; /* LRU, most recent first */
    uint64_t hash;
    uint16_t keylen;
    uint8_t kind;
    uint8_t dirty;   /* changed since the last commit */
    uint8_t absent;  /* new, not in Redis yet */
    uint8_t deleted; /* to be removed from Redis */
    char *key;       /* full Redis key, NUL-terminated (points after data) */
    int64_t timer_at; /* timer score committed to Redis (-1: none) */
    int64_t used_wm;  /* the watermark when last used (cache_idle) */
    _Alignas(8) unsigned char data[];
} sp_entity_t;

/* An entity kind: its key prefix and its (de)serialisation. */
typedef struct sp_entity_kind {
    const char *name; /* key: sp:{NS}:state:<name>:<id> */
    size_t size;      /* bytes of data[] */
    /* Encode data into buf (cap bytes); returns length. */
    size_t (*encode)(sp_engine_t *e, const void *data, char *buf, size_t cap);
    /* Decode a Redis value into data (already zeroed); 0 ok, -1 corrupt. */
    int (*decode)(sp_engine_t *e, const char *val, size_t len, void *data);
    /* Free what data[] owns (NULL: nothing). */
    void (*release)(void *data);
    /* Optional: the watermark at which on_timer must run (-1: none). */
    int64_t (*timer)(sp_engine_t *e, const void *data);
    void (*on_timer)(sp_engine_t *e, sp_entity_t *en);
    /* Optional: Redis TTL of this entity in ms (NULL or 0: state.ttl). */
    int64_t (*ttl)(sp_engine_t *e, const void *data);
} sp_entity_kind_t;

enum {
    SP_KIND_SESSION = 0,
    SP_KIND_ORDER,
    SP_KIND_CART,
    SP_KIND_SHIPMENT,
    SP_KIND_TICKET,
    SP_KIND_CUSTOMER,
    SP_KIND__COUNT
};

/* Families, in the order the engine applies them (funnel first: it decides
 * whether an ORDER_PLACED is a duplicate). */
enum {
    SP_FAM_FUNNEL = 0,
    SP_FAM_ABANDONMENT,
    SP_FAM_DELIVERY,
    SP_FAM_RETENTION,
    SP_FAM_SUPPORT,
    SP_FAM__COUNT
};

/* The metric catalogue: what a family writes into its window hash (and
 * into sp:{NS}:gauges), declared in the family's own file. Alert rules
 * accept only these names (aggregators/rules.c), `check-config --metrics`
 * prints them and docs/ALERTS.md lists them; a unit test (test_engine.c)
 * runs traffic through every family and checks that each field written is
 * catalogued and each catalogued field is written. */
typedef enum sp_metric_kind {
    SP_METRIC_COUNTER = 0, /* an integer count: absent = 0; its own sample */
    SP_METRIC_RATIO,       /* recomputed from counters; absent when its sample is 0 */
    SP_METRIC_DURATION,    /* histogram <name>: _count, _sum, _mean (computed by the
                            * rules), per dimension value too; _p50 _p90 _p99 overall */
    SP_METRIC_GAUGE        /* a field of sp:{NS}:gauges, exact at every commit */
} sp_metric_kind_t;

#define SP_METRIC_SPLIT_ONLY 1 /* only per value of `dims`, no overall field */

typedef struct sp_metric {
    const char *name; /* hash field; a duration: the histogram's name */
    sp_metric_kind_t kind;
    const char *sample; /* ratio: the counter of its sample size; "a+b": a sum */
    /* Dimensions of its own, comma-separated ("currency"; gauges "kind"), NULL
     * none. A window field is also split by the family's configured dimensions
     * (dims_off; a percentile is not); a gauge only by its own. */
    const char *dims;
    unsigned flags; /* SP_METRIC_* */
} sp_metric_t;

typedef struct sp_family {
    const char *name; /* "funnel": keys sp:{NS}:funnel:<size>:<start> */
    size_t win_size;
    /* The window hash fields it writes, and the gauges it adds to. */
    const sp_metric_t *metrics;
    int nmetrics;
    const sp_metric_t *gauges;
    int ngauges;
    size_t dims_off; /* offsetof(sp_config_t, <family>_dims) */
    void (*want)(sp_engine_t *e, const sp_event_t *ev);
    /* wins[i]: this family's block in the window of size i holding ev. */
    int (*apply)(sp_engine_t *e, const sp_event_t *ev, void **wins);
    /* Write the window's deltas (and, when closing, its overall fields with
     * zero deltas so an empty window exists) into the current hash section of
     * c; then clear the deltas. win NULL: window not in memory (zero-fill or
     * close of a window opened before a restart). */
    void (*emit)(sp_engine_t *e, void *win, int closing, sp_commit_t *c);
    /* Optional: extra delay of this family's window close (ms). */
    int64_t (*close_delay)(const sp_config_t *cfg);
    /* Optional: free what a window block holds (not the block itself). */
    void (*release)(void *win);
} sp_family_t;

extern const sp_entity_kind_t sp_kind_session, sp_kind_order, sp_kind_cart, sp_kind_shipment,
    sp_kind_ticket, sp_kind_customer;
extern const sp_family_t sp_family_funnel, sp_family_abandonment, sp_family_delivery,
    sp_family_retention, sp_family_support;

/* The families in engine order (SP_FAM__COUNT of them), and the gauges the
 * engine itself writes (watermark_ms, open_windows, in_flight_entities). */
const sp_family_t *const *sp_engine_families(int *n);
const sp_metric_t *sp_engine_gauges(int *n);
/* The configured dimensions of a family. */
const sp_dims_t *sp_family_dims(const sp_family_t *f, const sp_config_t *cfg);

/* Engine services for families. */
const sp_config_t *sp_engine_cfg(const sp_engine_t *e);
int sp_engine_size_count(const sp_engine_t *e);
/* Intern a dimension value: a small id, stable for the life of the engine. */
uint32_t sp_engine_intern(sp_engine_t *e, const char *p, size_t len);
const char *sp_engine_interned(const sp_engine_t *e, uint32_t id, size_t *len);
/* Ask for an entity (want phase). */
void sp_engine_want_entity(sp_engine_t *e, int kind, sp_str_t id);
/* Find an entity (apply phase); NULL only if it was never wanted. */
sp_entity_t *sp_engine_entity(sp_engine_t *e, int kind, sp_str_t id);
/* Mark an entity changed: it is written in the next commit. */
void sp_engine_touch(sp_engine_t *e, sp_entity_t *en);
/* Delete an entity from Redis in the next commit (and its timer). */
void sp_engine_delete(sp_engine_t *e, sp_entity_t *en);
/* The family's block in the window of size_idx holding t, opened if
 * needed; NULL when that window is final for the family (or no memory).
 * For effects that land in another window than the event's own (a cart's
 * decision, a correction). */
void *sp_engine_block(sp_engine_t *e, int fam, int size_idx, int64_t t);
/* Add delta to a gauge (sp:{NS}:gauges field), in the next commit. */
void sp_engine_gauge_add(sp_engine_t *e, const char *field, int64_t delta);
/* Add delta to a health counter (sp:{NS}:health field). */
void sp_engine_health_add(sp_engine_t *e, const char *field, int64_t delta);
/* HINCRBY key field delta in the next commit (key: full Redis key). */
void sp_engine_hincr(sp_engine_t *e, const char *key, const char *field, int64_t delta);
/* "sp:{NS}" */
const char *sp_engine_prefix(const sp_engine_t *e);
/* Local civil date of t (ms) in windows.timezone (UTC by default). */
void sp_engine_local_date(const sp_engine_t *e, int64_t t, int *year, int *month, int *day);

#endif
