/* gen.h -- synthetic store traffic: sessions, funnels, payments, orders,
 * shipments, support tickets, and scripted incidents.
 *
 * Deterministic: the same config, seed and options give byte-identical
 * messages (keys, values, event ids) in the same order. Messages are framed
 * and encoded exactly as a store's producers would write them (Confluent
 * framing + Avro binary, or plain JSON), so the pipeline cannot tell them
 * from real traffic. Streams: clickstream, checkout, shipment, support, in
 * event-time order. The model and the incidents are described at the top of
 * gen.c and in `storepulse gen --help`. */
#ifndef SP_GEN_H
#define SP_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/event.h"

typedef struct sp_gen sp_gen_t;

/* Scripted incidents (--scenario). Each hits one value of one dimension
 * (sp_gen_opts_t.incident_value) and only events whose event time is in
 * [incident_start_ms, incident_start_ms + incident_duration_ms). */
typedef enum sp_gen_scenario {
    SP_GEN_SCENARIO_NONE = 0,
    SP_GEN_SCENARIO_CHECKOUT_OUTAGE, /* device (default mobile): payments fail, orders drop */
    SP_GEN_SCENARIO_CARRIER_DELAY, /* carrier (default dhl): parcels held or lost: late, overdue */
    SP_GEN_SCENARIO_SUPPORT_BACKLOG, /* channel (default email): human replies hours later, more
                                        tickets */
    SP_GEN_SCENARIO__COUNT
} sp_gen_scenario_t;

/* "checkout-outage" ... ; "none" for SP_GEN_SCENARIO_NONE. */
extern const char *const sp_gen_scenario_names[SP_GEN_SCENARIO__COUNT];
/* Scenario by name; -1 if unknown. */
int sp_gen_scenario_lookup(const char *name);

typedef struct sp_gen_opts {
    uint64_t seed;
    int64_t start_ms;   /* event time of the first session start */
    double rate;        /* events per second of event time, all streams (steady state) */
    double duplicates;  /* probability of re-sending an event later (0..1) */
    sp_format_t format; /* (sp_format_t)-1 = per topic config */
    /* 0 (cold): nothing is in flight at start_ms; every session is seen from
     * its first event, and the full rate and event mix build up over ~5 min
     * of event time for sessions, days for shipments and tickets (which
     * trail their orders). 1 (warm): start in steady state -- sessions,
     * shipments and tickets that began before start_ms are in flight, their
     * earlier events not emitted (so some checkouts, shipments and tickets
     * come without their beginnings). */
    int warm_start;

    int scenario;                 /* sp_gen_scenario_t; 0 = none */
    int64_t incident_start_ms;    /* event time; 0 = start_ms + 30 min */
    int64_t incident_duration_ms; /* 0 = 20 min */
    /* The value hit: a device, carrier or support channel, per scenario;
     * NULL = the scenario's default (mobile, dhl, email); "*" = every value.
     * Only read during sp_gen_new. */
    const char *incident_value;

    /* > 0: sp_gen_next ends (returns 1) once the next event's time reaches
     * start_ms + duration_ms. 0 = never ends. */
    int64_t duration_ms;

    /* Streams emitted: bits (1u << sp_stream_t); 0 = all four. The others
     * are still simulated (orders still ship, tickets still open) but not
     * emitted, and need no schema. Without duplicates, the messages are
     * exactly those of these streams in a run of all four. */
    unsigned streams;
} sp_gen_opts_t;

/* "clickstream,checkout" into a mask of (1u << sp_stream_t) for
 * sp_gen_opts_t.streams. Returns 0, or -1 for an unknown or empty name. */
int sp_gen_parse_streams(const char *s, unsigned *out);

/* New generator over cfg's topics and schemas (cfg->schemas[]: the first
 * entry per stream is the writer schema; its file is read and parsed once;
 * Avro needs one for each stream emitted). cfg is only read during the
 * call. NULL with a reason in errstr. */
sp_gen_t *sp_gen_new(const sp_config_t *cfg, const sp_gen_opts_t *o, char *errstr, size_t n);

/* Next message: stream, key, value (both valid until the next call or
 * sp_gen_destroy) and its event time. Returns 0; 1 when the generator has
 * ended (only with opts.duration_ms: every later call returns 1 too); -1 on
 * error (see sp_gen_errstr). */
int sp_gen_next(sp_gen_t *g, sp_stream_t *st, const void **key, size_t *keylen, const void **val,
                size_t *vallen, int64_t *event_time);

/* Last error text ("" if none). */
const char *sp_gen_errstr(const sp_gen_t *g);

/* Counters since sp_gen_new (what was emitted, unless said otherwise). */
typedef struct sp_gen_stats {
    uint64_t messages[SP_STREAM__COUNT]; /* including duplicates */
    uint64_t duplicates;
    uint64_t sessions;  /* sessions started (from start_ms on) */
    uint64_t orders;    /* ORDER_PLACED */
    uint64_t shipments; /* LABEL_CREATED: shipments whose first event was emitted */
    uint64_t tickets;   /* TICKET_OPENED */
    uint64_t sessions_in_flight;
    uint64_t shipments_in_flight;
    uint64_t tickets_in_flight;
    uint64_t shed;          /* shipments and tickets never started: in-flight cap reached */
    uint64_t incident_hits; /* events whose course the incident changed (a failed payment, a
                               held or lost parcel, a delayed reply, an extra ticket) */
} sp_gen_stats_t;
void sp_gen_stats(const sp_gen_t *g, sp_gen_stats_t *out);

void sp_gen_destroy(sp_gen_t *g); /* NULL: no-op */

/* `storepulse gen`: produce the traffic to Kafka. */
int sp_gen_main(int argc, char **argv);

#endif
