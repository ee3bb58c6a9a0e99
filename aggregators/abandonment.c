/* abandonment.c -- carts and checkouts and their timeout join to the order
 * (SPEC §3 "abandonment", docs/METRICS.md).
 *
 * What it owns: the cart entity (sp:{NS}:state:cart:<session_id>), one per
 * session, holding the session's cart (first ADD_TO_CART by event time) and
 * checkout (first CHECKOUT_STARTED), each with its time, dimension values and
 * state (pending, converted, abandoned), plus the earliest ORDER_PLACED time
 * seen for the session. The join crosses topics only through this entity, so
 * it does not matter how the store keys or partitions them.
 *
 * How a track (cart or checkout) moves:
 *  - created pending (carts +1, carts_pending +1), or converted at once when
 *    an order of the session with time < deadline was already seen;
 *  - pending -> converted when such an order arrives (counted at once);
 *  - pending -> abandoned when the watermark reaches the deadline: the
 *    entity's timer (sp:{NS}:state:timers) is its earliest pending deadline;
 *  - abandoned -> converted when an order with time < deadline is admitted
 *    after the decision (within the allowed lateness): a correction;
 *  - an ADD_TO_CART earlier than the cart moves it: every count of the old
 *    cart is withdrawn from its window and it starts again at the new time.
 * Every change lands in the window of the track's time (sp_engine_block), so
 * carts = converted + abandoned + pending holds per window at every commit.
 * The family's windows close abandon_after later than the others, when no
 * decision can reach them any more; a correction that would land in a final
 * window is dropped and counted in health (abandonment_corrections_dropped).
 *
 * Not here: orders without a session_id (they join nothing), and more than
 * one cart per session (the SPEC's cart is the session's first). */
#include <stddef.h>
#include <string.h>

#include "aggregators/famkit.h"

enum {
    F_CARTS = 0,
    F_CARTS_CONVERTED,
    F_CARTS_ABANDONED,
    F_CARTS_PENDING,
    F_CHECKOUTS,
    F_CHECKOUTS_CONVERTED,
    F_CHECKOUTS_ABANDONED,
    F_CHECKOUTS_PENDING,
    F_N
};

static const char *const fields[F_N] = {
    "carts",     "carts_converted",     "carts_abandoned",     "carts_pending",
    "checkouts", "checkouts_converted", "checkouts_abandoned", "checkouts_pending"};

static const sp_fk_ratio_t ratios[] = {
    {"cart_abandonment_rate", 'f', F_CARTS_ABANDONED, F_CARTS_CONVERTED},
    {"checkout_abandonment_rate", 'f', F_CHECKOUTS_ABANDONED, F_CHECKOUTS_CONVERTED},
};

static const sp_fk_spec_t spec = {F_N, fields, 2, ratios, 0, NULL,
                                  offsetof(sp_config_t, abandonment_dims)};

enum { ST_NONE = 0, ST_PENDING, ST_CONVERTED, ST_ABANDONED };
enum { TR_CART = 0, TR_CHECKOUT, TR_N };

/* Counter of a track kind and state; the track kind's total with state 0. */
static int field_of(int tr, int state) {
    int base = tr == TR_CART ? F_CARTS : F_CHECKOUTS;
    switch (state) {
    case ST_PENDING: return base + 3;
    case ST_CONVERTED: return base + 1;
    case ST_ABANDONED: return base + 2;
    default: return base;
    }
}

static const char *const gauge_of[TR_N] = {"in_flight|kind=cart", "in_flight|kind=checkout"};

typedef struct track {
    int64_t t; /* event time of the cart / checkout */
    uint8_t state;
    uint32_t ids[SP_FK_DIMS];
} track_t;

typedef struct cart {
    track_t tr[TR_N];
    int64_t first_order; /* earliest ORDER_PLACED of the session (0: none; event
                          * times before 2000 are rejected by the decoder) */
} cart_t;

static int64_t deadline(const sp_engine_t *e, const track_t *t) {
    return t->t + sp_engine_cfg(e)->abandon_after_ms;
}

static int ndims(const sp_engine_t *e) {
    int n = sp_fk_dims(e, &spec)->cnt;
    return n > SP_FK_DIMS ? SP_FK_DIMS : n;
}

/* ---- entity -------------------------------------------------------- */

/* "A1" | first_order i64 | ndims u8 | TR_N x (state u8, t i64, ids). */
static size_t cart_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    const cart_t *c = data;
    int nd = ndims(e);
    size_t n = 0;
    if (cap < 11) return 0;
    buf[n++] = 'A';
    buf[n++] = '1';
    sp_put_i64(buf + n, c->first_order);
    n += 8;
    buf[n++] = (char)nd;
    for (int k = 0; k < TR_N; k++) {
        if (n + 9 > cap) return 0;
        buf[n++] = (char)c->tr[k].state;
        sp_put_i64(buf + n, c->tr[k].t);
        n += 8;
        size_t m = sp_fk_put_ids(e, c->tr[k].ids, nd, buf + n, cap - n);
        if (nd && !m) return 0;
        n += m;
    }
    return n;
}

static int cart_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    cart_t *c = data;
    size_t n = 2;
    if (len < 11 || val[0] != 'A' || val[1] != '1') return -1;
    c->first_order = sp_get_i64(val + n);
    n += 8;
    int nd = (unsigned char)val[n++];
    if (nd > SP_FK_DIMS) return -1;
    for (int k = 0; k < TR_N; k++) {
        if (n + 9 > len) return -1;
        c->tr[k].state = (uint8_t)val[n++];
        if (c->tr[k].state > ST_ABANDONED) return -1;
        c->tr[k].t = sp_get_i64(val + n);
        n += 8;
        uint32_t ids[SP_FK_DIMS];
        size_t m = sp_fk_get_ids(e, val + n, len - n, ids, nd);
        if (nd && !m) return -1;
        n += m;
        /* dimensions reconfigured since: the values no longer match */
        for (int d = 0; d < SP_FK_DIMS; d++)
            c->tr[k].ids[d] = nd == ndims(e) && d < nd ? ids[d] : SP_FK_NONE;
    }
    return n == len ? 0 : -1;
}

static int64_t cart_timer(sp_engine_t *e, const void *data) {
    const cart_t *c = data;
    int64_t due = -1;
    for (int k = 0; k < TR_N; k++)
        if (c->tr[k].state == ST_PENDING && (due < 0 || deadline(e, &c->tr[k]) < due))
            due = deadline(e, &c->tr[k]);
    return due;
}

/* Add delta to counter field of the track's window, every size, or to none
 * (returns 0) when one of them is final for the family already: the sizes
 * must keep adding up. */
static int count(sp_engine_t *e, const track_t *t, int field, int64_t delta) {
    sp_fk_win_t *w[SP_MAX_WINDOWS];
    int n = sp_engine_size_count(e);
    for (int i = 0; i < n; i++)
        if (!(w[i] = sp_engine_block(e, SP_FAM_ABANDONMENT, i, t->t))) return 0;
    for (int i = 0; i < n; i++) sp_fk_add(e, &spec, w[i], t->ids, field, delta);
    return 1;
}

/* Move a track from its state to another: counts and the in-flight gauge. */
static void move(sp_engine_t *e, int k, track_t *t, int to) {
    if (!count(e, t, field_of(k, to), 1)) {
        sp_engine_health_add(e, "abandonment_corrections_dropped", 1);
        return; /* the window is final: keep the state it shows */
    }
    count(e, t, field_of(k, t->state), -1);
    if (t->state == ST_PENDING) sp_engine_gauge_add(e, gauge_of[k], -1);
    if (to == ST_PENDING) sp_engine_gauge_add(e, gauge_of[k], 1);
    t->state = (uint8_t)to;
}

static void cart_on_timer(sp_engine_t *e, sp_entity_t *en) {
    cart_t *c = (cart_t *)en->data;
    int64_t wm = sp_engine_watermark(e);
    for (int k = 0; k < TR_N; k++) {
        track_t *t = &c->tr[k];
        if (t->state == ST_PENDING && deadline(e, t) <= wm) move(e, k, t, ST_ABANDONED);
    }
    /* A decision that cannot land (final window) leaves it pending: never
     * fire again for it. */
    for (int k = 0; k < TR_N; k++)
        if (c->tr[k].state == ST_PENDING && deadline(e, &c->tr[k]) <= wm) {
            sp_engine_gauge_add(e, gauge_of[k], -1);
            c->tr[k].state = ST_ABANDONED;
        }
    sp_engine_touch(e, en);
}

const sp_entity_kind_t sp_kind_cart = {"cart",      sizeof(cart_t), cart_encode, cart_decode, NULL,
                                       cart_timer, cart_on_timer,  NULL};

/* ---- the family ---------------------------------------------------- */

static int track_of(const sp_event_t *ev) {
    if (ev->type == SP_T_ADD_TO_CART) return TR_CART;
    if (ev->type == SP_T_CHECKOUT_STARTED) return TR_CHECKOUT;
    return -1;
}

static void abandonment_want(sp_engine_t *e, const sp_event_t *ev) {
    if (track_of(ev) >= 0 || ev->type == SP_T_ORDER_PLACED)
        sp_engine_want_entity(e, SP_KIND_CART, ev->s[SP_S_SESSION_ID]);
}

/* A new track at time t (or a moved one): pending, or converted at once. */
static void track_start(sp_engine_t *e, const cart_t *c, int k, track_t *t, int64_t time,
                        const uint32_t *ids) {
    t->t = time;
    memcpy(t->ids, ids, sizeof(t->ids));
    int st = c->first_order > 0 && c->first_order < deadline(e, t) ? ST_CONVERTED : ST_PENDING;
    count(e, t, field_of(k, ST_NONE), 1);
    count(e, t, field_of(k, st), 1);
    if (st == ST_PENDING) sp_engine_gauge_add(e, gauge_of[k], 1);
    t->state = (uint8_t)st;
}

static int abandonment_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    int k = track_of(ev);
    int64_t t = ev->i[SP_I_EVENT_TIME];
    (void)wins; /* effects go through sp_engine_block: they may land elsewhere */
    if (k < 0 && ev->type != SP_T_ORDER_PLACED) return SP_OK;
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_CART, ev->s[SP_S_SESSION_ID]);
    if (!en) return SP_OK; /* no session_id */
    cart_t *c = (cart_t *)en->data;

    if (k >= 0) {
        track_t *tr = &c->tr[k];
        uint32_t ids[SP_FK_DIMS];
        for (int d = 0; d < SP_FK_DIMS; d++) ids[d] = SP_FK_NONE;
        sp_fk_ids(e, &spec, ev, ids);
        if (tr->state == ST_NONE) {
            track_start(e, c, k, tr, t, ids);
        } else if (t < tr->t) {
            /* an earlier cart: withdraw the old one from its window */
            track_t old = *tr;
            if (count(e, &old, field_of(k, ST_NONE), -1)) {
                count(e, &old, field_of(k, old.state), -1);
                if (old.state == ST_PENDING) sp_engine_gauge_add(e, gauge_of[k], -1);
                track_start(e, c, k, tr, t, ids);
            } else {
                sp_engine_health_add(e, "abandonment_corrections_dropped", 1);
            }
        } else {
            return SP_OK;
        }
        sp_engine_touch(e, en);
        return SP_OK;
    }

    /* ORDER_PLACED of the session */
    if (c->first_order == 0 || t < c->first_order) c->first_order = t;
    for (int j = 0; j < TR_N; j++) {
        track_t *tr = &c->tr[j];
        if ((tr->state == ST_PENDING || tr->state == ST_ABANDONED) && t < deadline(e, tr))
            move(e, j, tr, ST_CONVERTED);
    }
    sp_engine_touch(e, en);
    return SP_OK;
}

static void abandonment_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    sp_fk_emit(e, &spec, win, closing, c);
}

static int64_t abandonment_delay(const sp_config_t *cfg) { return cfg->abandon_after_ms; }

/* The catalogue (family.h): fields[], ratios[] (sample: the decided ones)
 * and gauge_of[]. */
static const sp_metric_t metrics[] = {
    {"carts", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"carts_converted", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"carts_abandoned", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"carts_pending", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"checkouts", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"checkouts_converted", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"checkouts_abandoned", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"checkouts_pending", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"cart_abandonment_rate", SP_METRIC_RATIO, "carts_abandoned+carts_converted", NULL, 0},
    {"checkout_abandonment_rate", SP_METRIC_RATIO, "checkouts_abandoned+checkouts_converted", NULL,
     0},
};

static const sp_metric_t gauges[] = {
    {"in_flight", SP_METRIC_GAUGE, NULL, "kind", SP_METRIC_SPLIT_ONLY}, /* cart, checkout */
};

const sp_family_t sp_family_abandonment = {
    .name = "abandonment",
    .win_size = sizeof(sp_fk_win_t),
    .metrics = metrics,
    .nmetrics = (int)(sizeof(metrics) / sizeof(metrics[0])),
    .gauges = gauges,
    .ngauges = 1,
    .dims_off = offsetof(sp_config_t, abandonment_dims),
    .want = abandonment_want,
    .apply = abandonment_apply,
    .emit = abandonment_emit,
    .close_delay = abandonment_delay,
    .release = sp_fk_release,
};
