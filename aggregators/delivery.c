/* delivery.c -- the delivery family (SPEC §3 "delivery", docs/METRICS.md):
 * deliveries, late deliveries and their delay, delivery time, dispatches,
 * dispatch latency and SLA breaches, failed deliveries and returns per
 * window (per carrier and country, configurable), and the shipment gauges
 * overdue_in_flight, at_risk and in_flight|kind=shipment.
 *
 * What it owns: the shipment entity (sp:{NS}:state:shipment:<shipment_id>),
 * one per shipment_id, holding
 *  - the promised time, dimension values and order_placed_time of the
 *    shipment's latest event by event time (an older event arriving later
 *    moves none of them back), and that latest event time;
 *  - what happened to it: DELIVERED, RETURNED, DISPATCHED, OUT_FOR_DELIVERY
 *    seen (in any arrival order: a DELIVERED before its IN_TRANSIT still
 *    ends the flight);
 *  - its current contribution to the three gauges (3 bits).
 * The entity is the dedup of the facts counted once per shipment: a second
 * DELIVERED or RETURNED is a duplicate (health `duplicates`, counted by no
 * family), a second DISPATCHED is just not counted again (it still moves
 * the shipment's latest time and promise). DELIVERY_FAILED counts every time.
 * Window counters use the event's own window and dimension values.
 *
 * Why the gauges are kept this way: overdue and at-risk depend on the
 * watermark W, not only on events, and must be exact at every commit.
 * Rescanning shipments per commit would not scale, so each shipment keeps
 * the contribution it has added to the gauges, and after every change (an
 * event, or W moving) the contribution is recomputed for the current W and
 * only the difference is added (HINCRBY in the batch's commit). The entity's
 * timer (sp:{NS}:state:timers) is the next W at which the contribution can
 * change -- promised - at_risk_horizon + 1 (enters at_risk), promised + 1
 * (leaves at_risk, becomes overdue) -- or the give-up time max(promised,
 * last event time) + state.shipment_ttl, when the shipment leaves the gauges
 * and its state is deleted. Delivered and returned shipments keep their state
 * until give-up too, for the duplicate check. The timer is a pure function of
 * the state (the contribution bits say which threshold is next), and every
 * threshold it names lies past the W the bits were computed for, so a fire
 * always moves it on. Redis TTL: the give-up time - W + 1 day (at least 1
 * day; W unknown: from the last event time), capped at TTL_MAX.
 *
 * Not here: histograms and percentiles per dimension value (only _count and
 * _sum_ms per value, as famkit does for every family); gauges per carrier or
 * country (overall only; the dimension values are kept in the state so they
 * could be added); durations from an order time that only an earlier event
 * carried (each event's own order_placed_time is used, as docs/METRICS.md
 * says; the state keeps the latest one seen); the first DELIVERED /
 * DISPATCHED is the first to ARRIVE, not the earliest by event time; a
 * shipment whose state expired or was given up starts afresh if it sends
 * again. A corrupt state starts afresh and its old gauge contribution is
 * lost. */
#include <stddef.h>
#include <string.h>

#include "aggregators/famkit.h"

enum {
    F_DELIVERED = 0,
    F_DELIVERED_LATE,
    F_DISPATCHED,
    F_SLA_BREACHES,
    F_DELIVERY_FAILED,
    F_RETURNED,
    F_N
};

static const char *const fields[F_N] = {"delivered",       "delivered_late",
                                        "dispatched",      "dispatch_sla_breaches",
                                        "delivery_failed", "returned"};

static const sp_fk_ratio_t ratios[] = {
    {"delivery_delay_rate", 'r', F_DELIVERED_LATE, F_DELIVERED},
};

enum { H_DELAY = 0, H_DELIVERY_TIME, H_DISPATCH_LATENCY, H_N };

static const char *const hists[H_N] = {"delay_minutes", "delivery_time_hours",
                                       "dispatch_latency_hours"};

static const sp_fk_spec_t spec = {
    F_N, fields, 1, ratios, H_N, hists, offsetof(sp_config_t, delivery_dims)};

#define DAY_MS  86400000LL
#define TTL_MAX (3650 * DAY_MS) /* Redis TTL cap: a promise decades ahead */

/* What the shipment has seen (flags). */
enum {
    SF_SEEN = 1,       /* any event: every stored shipment has it */
    SF_DELIVERED = 2,  /* a DELIVERED counted */
    SF_RETURNED = 4,   /* a RETURNED counted */
    SF_DISPATCHED = 8, /* a DISPATCHED counted */
    SF_OFD = 16,       /* an OUT_FOR_DELIVERY seen */
    SF_PROMISED = 32,  /* promised is set */
    SF_OPT = 64,       /* order_placed is set */
    SF_ALL = 127
};

/* Its contribution to the gauges (bit b: +1 in gauge_names[b]). */
enum { G_IN_FLIGHT = 1, G_OVERDUE = 2, G_AT_RISK = 4, G_N = 3 };
static const char *const gauge_names[G_N] = {"in_flight|kind=shipment", "overdue_in_flight",
                                             "at_risk"};

typedef struct shipment {
    int64_t promised;         /* of the latest event by event time */
    int64_t last;             /* latest event time */
    int64_t order_placed;     /* of the latest event carrying one (SF_OPT) */
    uint32_t ids[SP_FK_DIMS]; /* dimension values of the latest event */
    uint8_t flags;
    uint8_t contrib; /* G_* bits currently added to the gauges */
} shipment_t;

static int ndims(const sp_engine_t *e) {
    int n = sp_fk_dims(e, &spec)->cnt;
    return n > SP_FK_DIMS ? SP_FK_DIMS : n;
}

/* ---- gauges ---------------------------------------------------------- */

static int in_flight(const shipment_t *s) {
    return (s->flags & SF_SEEN) && !(s->flags & (SF_DELIVERED | SF_RETURNED));
}

/* The watermark at which the shipment is given up (INT64_MAX: never). */
static int64_t give_up_at(const sp_engine_t *e, const shipment_t *s) {
    int64_t from = s->last;
    if ((s->flags & SF_PROMISED) && s->promised > from) from = s->promised;
    return sp_sat_add(from, sp_engine_cfg(e)->shipment_ttl_ms);
}

static int given_up(const sp_engine_t *e, const shipment_t *s) {
    int64_t w = sp_engine_watermark(e);
    return w != INT64_MIN && w >= give_up_at(e, s);
}

/* The gauge bits of s at the current watermark. */
static uint8_t contribution(const sp_engine_t *e, const shipment_t *s) {
    if (!in_flight(s)) return 0;
    uint8_t c = G_IN_FLIGHT;
    int64_t w = sp_engine_watermark(e);
    if (w == INT64_MIN || !(s->flags & SF_PROMISED)) return c; /* not known: neither */
    if (s->promised < w)
        c |= G_OVERDUE;
    else if (!(s->flags & SF_OFD) && s->promised < sp_sat_add(w, sp_engine_cfg(e)->at_risk_horizon_ms))
        c |= G_AT_RISK;
    return c;
}

/* Move the shipment's gauge contribution to `to`: add the difference. */
static void settle(sp_engine_t *e, shipment_t *s, uint8_t to) {
    uint8_t ch = (uint8_t)(s->contrib ^ to);
    for (int b = 0; b < G_N; b++)
        if (ch & (1u << b)) sp_engine_gauge_add(e, gauge_names[b], (to >> b) & 1u ? 1 : -1);
    s->contrib = to;
}

/* ---- entity ---------------------------------------------------------- */

#define HDR_LEN 29 /* "H1" flags contrib promised last order_placed ndims */

/* "H1" | flags u8 | contrib u8 | promised i64 | last i64 | order_placed i64 |
 * ndims u8 | dimension values (sp_fk_put_ids); little endian. */
static size_t shipment_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    const shipment_t *s = data;
    int nd = ndims(e);
    size_t n = 0;
    if (cap < HDR_LEN) return 0;
    buf[n++] = 'H';
    buf[n++] = '1';
    buf[n++] = (char)s->flags;
    buf[n++] = (char)s->contrib;
    sp_put_i64(buf + n, s->promised);
    n += 8;
    sp_put_i64(buf + n, s->last);
    n += 8;
    sp_put_i64(buf + n, s->order_placed);
    n += 8;
    buf[n++] = (char)nd;
    size_t m = sp_fk_put_ids(e, s->ids, nd, buf + n, cap - n);
    if (nd && !m) return 0;
    return n + m;
}

static int shipment_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    shipment_t s;
    const unsigned char *p = (const unsigned char *)val;
    size_t n = 2;
    memset(&s, 0, sizeof(s));
    if (len < HDR_LEN || p[0] != 'H' || p[1] != '1') return -1;
    s.flags = p[n++];
    s.contrib = p[n++];
    s.promised = sp_get_i64(val + n);
    n += 8;
    s.last = sp_get_i64(val + n);
    n += 8;
    s.order_placed = sp_get_i64(val + n);
    n += 8;
    int nd = p[n++];
    if ((s.flags & ~SF_ALL) || !(s.flags & SF_SEEN) || (s.contrib & ~7u) || nd > SP_FK_DIMS)
        return -1;
    if (s.last < 0 || s.promised < 0) return -1;
    /* the contribution is settled before every write: it matches the flags */
    if (!(s.contrib & G_IN_FLIGHT) != !in_flight(&s)) return -1;
    if ((s.contrib & G_OVERDUE) && (s.contrib & G_AT_RISK)) return -1;
    if ((s.contrib & (G_OVERDUE | G_AT_RISK)) && !(s.flags & SF_PROMISED)) return -1;
    if ((s.contrib & G_AT_RISK) && (s.flags & SF_OFD)) return -1;
    uint32_t ids[SP_FK_DIMS];
    size_t m = sp_fk_get_ids(e, val + n, len - n, ids, nd);
    if (nd && !m) return -1;
    if (n + m != len) return -1;
    /* dimensions reconfigured since: the values no longer match */
    for (int d = 0; d < SP_FK_DIMS; d++)
        s.ids[d] = nd == ndims(e) && d < nd ? ids[d] : SP_FK_NONE;
    memcpy(data, &s, sizeof(s));
    return 0;
}

static int64_t shipment_timer(sp_engine_t *e, const void *data) {
    const shipment_t *s = data;
    if (!(s->flags & SF_SEEN)) return -1;
    int64_t due = give_up_at(e, s);
    if ((s->contrib & G_IN_FLIGHT) && (s->flags & SF_PROMISED) && !(s->contrib & G_OVERDUE)) {
        /* at_risk, or out for delivery: overdue next; otherwise at_risk next
         * (W unknown when settled: whichever comes first once it is) */
        int64_t at = (s->contrib & G_AT_RISK) || (s->flags & SF_OFD)
                         ? sp_sat_add(s->promised, 1)
                         : sp_sat_add(s->promised - sp_engine_cfg(e)->at_risk_horizon_ms, 1);
        if (at < due) due = at;
    }
    return due == INT64_MAX ? -1 : due;
}

static void shipment_on_timer(sp_engine_t *e, sp_entity_t *en) {
    shipment_t *s = (shipment_t *)en->data;
    if (given_up(e, s)) {
        settle(e, s, 0);
        sp_engine_delete(e, en);
        return;
    }
    settle(e, s, contribution(e, s));
    sp_engine_touch(e, en);
}

static int64_t shipment_ttl(sp_engine_t *e, const void *data) {
    const shipment_t *s = data;
    int64_t w = sp_engine_watermark(e), g = give_up_at(e, s);
    int64_t from = w != INT64_MIN ? w : s->last;
    int64_t ttl = g == INT64_MAX ? TTL_MAX : sp_sat_add(sp_sat_add(g, -from), DAY_MS);
    return ttl < DAY_MS ? DAY_MS : ttl > TTL_MAX ? TTL_MAX : ttl;
}

const sp_entity_kind_t sp_kind_shipment = {
    "shipment", sizeof(shipment_t), shipment_encode,   shipment_decode,
    NULL,       shipment_timer,     shipment_on_timer, shipment_ttl};

/* ---- the family -------------------------------------------------------- */

static int is_shipment(const sp_event_t *ev) {
    return ev->stream == SP_STREAM_SHIPMENT;
}

static void delivery_want(sp_engine_t *e, const sp_event_t *ev) {
    if (is_shipment(ev)) sp_engine_want_entity(e, SP_KIND_SHIPMENT, ev->s[SP_S_SHIPMENT_ID]);
}

/* The flag an event type sets (0: none). */
static uint8_t flag_of(sp_event_type_t type) {
    switch (type) {
    case SP_T_DELIVERED: return SF_DELIVERED;
    case SP_T_RETURNED: return SF_RETURNED;
    case SP_T_DISPATCHED: return SF_DISPATCHED;
    case SP_T_OUT_FOR_DELIVERY: return SF_OFD;
    default: return 0;
    }
}

/* Count the event in its windows with its dimension values ids (first: its
 * fact was not counted yet). */
static void count(sp_engine_t *e, const sp_event_t *ev, void **wins, int first,
                  const uint32_t *ids) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    int64_t t = ev->i[SP_I_EVENT_TIME], p = ev->i[SP_I_PROMISED_DELIVERY_TIME];
    int64_t opt = ev->i[SP_I_ORDER_PLACED_TIME];
    int has_p = sp_event_has_int(ev, SP_I_PROMISED_DELIVERY_TIME);
    int has_opt = sp_event_has_int(ev, SP_I_ORDER_PLACED_TIME);

    for (int i = 0; i < sp_engine_size_count(e); i++) {
        sp_fk_win_t *w = wins[i];
        switch (ev->type) {
        case SP_T_DELIVERED:
            sp_fk_add(e, &spec, w, ids, F_DELIVERED, 1);
            if (has_p && t > p) {
                sp_fk_add(e, &spec, w, ids, F_DELIVERED_LATE, 1);
                sp_fk_hist(e, &spec, w, ids, H_DELAY, t - p);
            }
            if (has_opt) sp_fk_hist(e, &spec, w, ids, H_DELIVERY_TIME, t - opt);
            break;
        case SP_T_DISPATCHED:
            if (!first) break;
            sp_fk_add(e, &spec, w, ids, F_DISPATCHED, 1);
            if (!has_opt) break;
            sp_fk_hist(e, &spec, w, ids, H_DISPATCH_LATENCY, t - opt);
            if (t - opt > cfg->dispatch_sla_ms) sp_fk_add(e, &spec, w, ids, F_SLA_BREACHES, 1);
            break;
        case SP_T_DELIVERY_FAILED: sp_fk_add(e, &spec, w, ids, F_DELIVERY_FAILED, 1); break;
        case SP_T_RETURNED: sp_fk_add(e, &spec, w, ids, F_RETURNED, 1); break;
        default: break;
        }
    }
}

/* The event's values into the state; values that could not be written back
 * (longer than sp_fk_put_ids takes) are not kept. */
static void keep_ids(sp_engine_t *e, uint32_t *dst, const uint32_t *ids) {
    for (int d = 0; d < SP_FK_DIMS; d++) {
        size_t len = 0;
        dst[d] = ids[d];
        if (ids[d] == SP_FK_NONE) continue;
        sp_engine_interned(e, ids[d], &len);
        if (len > 254) dst[d] = SP_FK_NONE;
    }
}

static int delivery_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    int64_t t = ev->i[SP_I_EVENT_TIME];
    uint8_t flag = flag_of(ev->type);
    uint32_t ids[SP_FK_DIMS];

    if (!is_shipment(ev)) return SP_OK;
    for (int d = 0; d < SP_FK_DIMS; d++)
        ids[d] = SP_FK_NONE;
    sp_fk_ids(e, &spec, ev, ids);
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_SHIPMENT, ev->s[SP_S_SHIPMENT_ID]);
    if (!en) { /* could not be loaded (out of memory): counted, no dedup */
        count(e, ev, wins, 1, ids);
        return SP_OK;
    }
    shipment_t *s = (shipment_t *)en->data;
    int first = !(s->flags & flag);
    if (flag && !first && (flag == SF_DELIVERED || flag == SF_RETURNED))
        return SP_ERR_DUPLICATE; /* a fact already counted: changes nothing */
    count(e, ev, wins, first, ids);

    if (!(s->flags & SF_SEEN) || t >= s->last) { /* the latest event */
        s->last = t;
        if (sp_event_has_int(ev, SP_I_PROMISED_DELIVERY_TIME)) {
            s->promised = ev->i[SP_I_PROMISED_DELIVERY_TIME];
            s->flags |= SF_PROMISED;
        }
        if (sp_event_has_int(ev, SP_I_ORDER_PLACED_TIME)) {
            s->order_placed = ev->i[SP_I_ORDER_PLACED_TIME];
            s->flags |= SF_OPT;
        }
        keep_ids(e, s->ids, ids);
    } else if (!(s->flags & SF_OPT) && sp_event_has_int(ev, SP_I_ORDER_PLACED_TIME)) {
        s->order_placed = ev->i[SP_I_ORDER_PLACED_TIME];
        s->flags |= SF_OPT;
    }
    s->flags |= (uint8_t)(SF_SEEN | flag);
    /* At the current W; a give-up this batch's W reached is the timer's
     * (it runs before the commit). */
    settle(e, s, contribution(e, s));
    sp_engine_touch(e, en); /* also refreshes the TTL */
    return SP_OK;
}

static void delivery_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    sp_fk_emit(e, &spec, win, closing, c);
}

/* The catalogue (family.h): fields[], ratios[], hists[] and gauge_names[]. */
static const sp_metric_t metrics[] = {
    {"delivered", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"delivered_late", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"dispatched", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"dispatch_sla_breaches", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"delivery_failed", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"returned", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"delivery_delay_rate", SP_METRIC_RATIO, "delivered", NULL, 0},
    {"delay_minutes", SP_METRIC_DURATION, NULL, NULL, 0},
    {"delivery_time_hours", SP_METRIC_DURATION, NULL, NULL, 0},
    {"dispatch_latency_hours", SP_METRIC_DURATION, NULL, NULL, 0},
};

static const sp_metric_t gauges[] = {
    {"overdue_in_flight", SP_METRIC_GAUGE, NULL, NULL, 0},
    {"at_risk", SP_METRIC_GAUGE, NULL, NULL, 0},
    {"in_flight", SP_METRIC_GAUGE, NULL, "kind", SP_METRIC_SPLIT_ONLY}, /* shipment */
};

const sp_family_t sp_family_delivery = {
    .name = "delivery",
    .win_size = sizeof(sp_fk_win_t),
    .metrics = metrics,
    .nmetrics = (int)(sizeof(metrics) / sizeof(metrics[0])),
    .gauges = gauges,
    .ngauges = (int)(sizeof(gauges) / sizeof(gauges[0])),
    .dims_off = offsetof(sp_config_t, delivery_dims),
    .want = delivery_want,
    .apply = delivery_apply,
    .emit = delivery_emit,
    .release = sp_fk_release,
};
