/* gen.h -- synthetic store traffic: sessions, funnels, payments, orders.
 *
 * Deterministic: the same config, seed and options give byte-identical
 * messages (keys, values, event ids) in the same order. Messages are framed
 * and encoded exactly as a store's producers would write them (Confluent
 * framing + Avro binary, or plain JSON), so the pipeline cannot tell them
 * from real traffic. Streams: clickstream and checkout. */
#ifndef SP_GEN_H
#define SP_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/event.h"

typedef struct sp_gen sp_gen_t;

typedef struct sp_gen_opts {
    uint64_t seed;
    int64_t start_ms;   /* event time of the first session start */
    double rate;        /* events per second of event time (steady state) */
    double duplicates;  /* probability of re-sending an event later (0..1) */
    sp_format_t format; /* (sp_format_t)-1 = per topic config */
    /* 0 (cold): no session is in flight at start_ms; every session is seen
     * from its first event, and the full rate and event mix build up over
     * ~5 min of event time. 1 (warm): start in steady state -- sessions that
     * began before start_ms are in flight, their earlier events not emitted
     * (so some checkouts/orders come without their session's start). */
    int warm_start;
} sp_gen_opts_t;

/* New generator over cfg's topics and schemas (cfg->schemas[]: the first
 * entry per stream is the writer schema; its file is read and parsed once).
 * cfg is only read during the call. NULL with a reason in errstr. */
sp_gen_t *sp_gen_new(const sp_config_t *cfg, const sp_gen_opts_t *o, char *errstr, size_t n);

/* Next message: stream, key, value (both valid until the next call or
 * sp_gen_destroy) and its event time. Returns 0, or -1 on error (see
 * sp_gen_errstr). Never ends. */
int sp_gen_next(sp_gen_t *g, sp_stream_t *st, const void **key, size_t *keylen, const void **val,
                size_t *vallen, int64_t *event_time);

/* Last error text ("" if none). */
const char *sp_gen_errstr(const sp_gen_t *g);

/* Counters since sp_gen_new. */
typedef struct sp_gen_stats {
    uint64_t messages[SP_STREAM__COUNT]; /* including duplicates */
    uint64_t duplicates;
    uint64_t sessions;
    uint64_t orders;
    uint64_t sessions_in_flight;
} sp_gen_stats_t;
void sp_gen_stats(const sp_gen_t *g, sp_gen_stats_t *out);

void sp_gen_destroy(sp_gen_t *g); /* NULL: no-op */

/* `storepulse gen`: produce the traffic to Kafka. */
int sp_gen_main(int argc, char **argv);

#endif
