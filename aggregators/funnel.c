/* funnel.c -- the funnel family (SPEC §3): sessions and their steps, orders,
 * revenue, AOV, payments, conversion and step rates, per channel, device and
 * country (configurable), and orders/revenue per currency.
 *
 * Session-level distinct counts (sessions, *_sessions) need to know whether a
 * session was already counted in a window: that is the session entity
 * (sp:{NS}:state:session:<id>), holding every window the session was seen
 * in that is not final yet (a slot each: size, window index, a bit per step,
 * its dimension tuple). Slots of final windows are dropped (no event can
 * reach them), so the counts do not depend on how partitions interleave,
 * even in a replay where one topic runs minutes ahead of another. At most
 * SLOT_MAX open windows per session are tracked; past that an event opens a
 * throw-away slot and the session could be counted twice in that window.
 * Orders are counted once per order_id through the order entity.
 *
 * Dimension values of session-level counts: those of the session's first
 * event in that window (every clickstream and checkout event carries channel,
 * device and country). A session keeps up to NTUPLE distinct value tuples and
 * each window slot points at one. Per value the step sessions are therefore
 * always a subset of `sessions` with the same value.
 *
 * Each window keeps, per dimension, a table of at most max_dimension_values
 * interned values (first come); the rest go to __other__. Deltas accumulate
 * in memory and are written per batch; emit() clears them. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/family.h"

#define DIM_MAX 256 /* hard cap of metrics.max_dimension_values */
#define NDIM 3      /* funnel dimensions at most: channel, device, country */

enum {
    F_SESSIONS = 0,
    F_PV_SESSIONS,
    F_CART_SESSIONS,
    F_CHECKOUT_SESSIONS,
    F_ORDER_SESSIONS,
    F_ORDERS,
    F_ORDERS_SC,
    F_REVENUE,
    F_PAY_SUBMITTED,
    F_PAY_FAILED,
    F_N
};

static const char *const fnames[F_N] = {
    "sessions",          "product_view_sessions", "cart_sessions",    "checkout_sessions",
    "order_sessions",    "orders",                "orders_store_currency", "revenue_cents",
    "payments_submitted", "payments_failed"};

/* Ratios: field, kind, numerator, denominator. */
static const struct {
    const char *name;
    char kind;
    int num, den;
} ratios[] = {
    {"conversion_rate", 'r', F_ORDER_SESSIONS, F_SESSIONS},
    {"view_to_cart_rate", 'r', F_CART_SESSIONS, F_PV_SESSIONS},
    {"cart_to_checkout_rate", 'r', F_CHECKOUT_SESSIONS, F_CART_SESSIONS},
    {"checkout_to_order_rate", 'r', F_ORDER_SESSIONS, F_CHECKOUT_SESSIONS},
    {"payment_failure_rate", 'r', F_PAY_FAILED, F_PAY_SUBMITTED},
    {"aov_cents", 'a', F_REVENUE, F_ORDERS_SC},
};
#define NRATIO ((int)(sizeof(ratios) / sizeof(ratios[0])))

/* Session step bits. */
enum { B_SEEN = 1, B_PV = 2, B_CART = 4, B_CHECKOUT = 8, B_ORDER = 16 };
static const int bit_counter[5] = {F_SESSIONS, F_PV_SESSIONS, F_CART_SESSIONS,
                                   F_CHECKOUT_SESSIONS, F_ORDER_SESSIONS};

typedef struct cnt {
    int64_t d[F_N];
    uint8_t dirty;
} cnt_t;

/* The values of one dimension seen in a window, first come, capped. */
typedef struct idtab {
    uint16_t n;
    uint32_t id[DIM_MAX];
} idtab_t;

typedef struct dimtab {
    idtab_t ids;
    cnt_t c[DIM_MAX + 1]; /* [DIM_MAX] is __other__ */
} dimtab_t;

typedef struct curtab {
    idtab_t ids;
    int64_t orders[DIM_MAX + 1], revenue[DIM_MAX + 1];
    uint8_t dirty[DIM_MAX + 1];
} curtab_t;

typedef struct fwin {
    cnt_t all;
    dimtab_t dim[NDIM];
    curtab_t cur;
} fwin_t;

/* ---- entities ------------------------------------------------------ */

/* A window the session was seen in: size index, window index (start /
 * size), step bits and which of the session's dimension tuples it counts
 * under. */
typedef struct slot {
    int32_t widx;
    uint8_t size_idx;
    uint8_t flags;
    uint8_t tuple;
} slot_t;

#define NTUPLE 4     /* distinct (channel, device, country) of one session */
#define SLOT_MAX 255 /* windows of one session still open, all sizes */

typedef struct session {
    uint8_t ntuple;
    uint8_t nslot, cap;
    uint32_t tuple[NTUPLE][NDIM]; /* interned ids, by funnel dim index */
    slot_t *slot;                 /* owned; windows that are not final yet */
} session_t;

typedef struct order {
    uint8_t placed;
} order_t;

/* Session value: "S4" | nsizes u8 | ndims u8 | ntuple u8 |
 * ntuple x ndims x (u16 len + bytes) | nslot u8 |
 * nslot x (u8 size, i32 window index, u8 flags, u8 tuple); little endian. */
static size_t session_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    const session_t *s = data;
    int nd = sp_engine_cfg(e)->funnel_dims.cnt;
    size_t n = 0;
    if (cap < 6) return 0;
    buf[n++] = 'S';
    buf[n++] = '4';
    buf[n++] = (char)sp_engine_size_count(e);
    buf[n++] = (char)nd;
    buf[n++] = (char)s->ntuple;
    for (int t = 0; t < s->ntuple; t++)
        for (int k = 0; k < nd; k++) {
            size_t len;
            const char *p = sp_engine_interned(e, s->tuple[t][k], &len);
            if (n + 2 + len > cap) return 0;
            buf[n++] = (char)(len & 0xff);
            buf[n++] = (char)(len >> 8);
            memcpy(buf + n, p, len);
            n += len;
        }
    if (n + 1 + (size_t)s->nslot * 7 > cap) return 0;
    buf[n++] = (char)s->nslot;
    for (int j = 0; j < s->nslot; j++) {
        const slot_t *sl = &s->slot[j];
        uint32_t v = (uint32_t)sl->widx;
        buf[n++] = (char)sl->size_idx;
        for (int b = 0; b < 4; b++) buf[n++] = (char)((v >> (8 * b)) & 0xff);
        buf[n++] = (char)sl->flags;
        buf[n++] = (char)sl->tuple;
    }
    return n;
}

static int slot_reserve(session_t *s, int need) {
    if (need <= s->cap) return 0;
    int nc = s->cap ? s->cap * 2 : 4;
    if (nc < need) nc = need;
    if (nc > SLOT_MAX) nc = SLOT_MAX;
    if (nc < need) return -1;
    slot_t *ns = realloc(s->slot, (size_t)nc * sizeof(*ns));
    if (!ns) return -1;
    s->slot = ns;
    s->cap = (uint8_t)nc;
    return 0;
}

static int session_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    session_t *s = data;
    const unsigned char *p = (const unsigned char *)val;
    size_t n = 5;
    if (len < 5 || p[0] != 'S' || p[1] != '4') return -1;
    int nd = p[3], nt = p[4];
    if (nd != sp_engine_cfg(e)->funnel_dims.cnt || nd > NDIM || nt > NTUPLE) return -1;
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < nd; k++) {
            if (n + 2 > len) return -1;
            size_t l = (size_t)p[n] | ((size_t)p[n + 1] << 8);
            n += 2;
            if (n + l > len) return -1;
            s->tuple[t][k] = sp_engine_intern(e, val + n, l);
            n += l;
        }
    s->ntuple = (uint8_t)nt;
    if (n + 1 > len) return -1;
    int ns = p[n++];
    if (p[2] != sp_engine_size_count(e)) return 0; /* window sizes changed: slots afresh */
    if (slot_reserve(s, ns) != 0) return -1;
    for (int j = 0; j < ns; j++) {
        if (n + 7 > len) return -1;
        slot_t *sl = &s->slot[j];
        uint32_t v = 0;
        sl->size_idx = p[n];
        for (int b = 0; b < 4; b++) v |= (uint32_t)p[n + 1 + b] << (8 * b);
        sl->widx = (int32_t)v;
        sl->flags = p[n + 5];
        sl->tuple = p[n + 6] < nt ? p[n + 6] : 0;
        if (sl->size_idx >= p[2]) return -1;
        n += 7;
    }
    s->nslot = (uint8_t)ns;
    return 0;
}

static void session_release(void *data) {
    session_t *s = data;
    free(s->slot);
    s->slot = NULL;
    s->nslot = s->cap = 0;
}

static int slot_final(sp_engine_t *e, const slot_t *sl) {
    int64_t fin = sp_engine_final_start(e, sl->size_idx);
    return fin >= 0 && sl->widx <= sp_engine_window_index(e, sl->size_idx, fin);
}

/* The tuple index for dims ids (added when new). When the table is full, a
 * tuple no open window uses is replaced; failing that tuple 0 is used. */
static uint8_t session_tuple(sp_engine_t *e, session_t *s, const uint32_t *ids, int nd) {
    for (int t = 0; t < s->ntuple; t++)
        if (memcmp(s->tuple[t], ids, sizeof(uint32_t) * (size_t)nd) == 0) return (uint8_t)t;
    int t = s->ntuple;
    if (t == NTUPLE) {
        for (t = 0; t < NTUPLE; t++) {
            int used = 0;
            for (int j = 0; j < s->nslot && !used; j++)
                used = s->slot[j].tuple == t && !slot_final(e, &s->slot[j]);
            if (!used) break;
        }
        if (t == NTUPLE) return 0;
    } else {
        s->ntuple++;
    }
    memcpy(s->tuple[t], ids, sizeof(uint32_t) * (size_t)nd);
    return (uint8_t)t;
}

static size_t order_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    (void)e;
    (void)data;
    if (cap < 2) return 0;
    buf[0] = 'O';
    buf[1] = '1';
    return 2;
}

static int order_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    (void)e;
    order_t *o = data;
    if (len < 2 || val[0] != 'O') return -1;
    o->placed = val[1] == '1';
    return 0;
}

const sp_entity_kind_t sp_kind_session = {"session",       sizeof(session_t), session_encode,
                                          session_decode,  session_release,   NULL,
                                          NULL,            NULL};
const sp_entity_kind_t sp_kind_order = {"order", sizeof(order_t), order_encode, order_decode,
                                        NULL,    NULL,            NULL,         NULL};

/* ---- the family ---------------------------------------------------- */

static int is_funnel_event(const sp_event_t *ev) {
    return ev->stream == SP_STREAM_CLICKSTREAM || ev->stream == SP_STREAM_CHECKOUT;
}

static void funnel_want(sp_engine_t *e, const sp_event_t *ev) {
    if (!is_funnel_event(ev)) return;
    sp_engine_want_entity(e, SP_KIND_SESSION, ev->s[SP_S_SESSION_ID]);
    if (ev->type == SP_T_ORDER_PLACED) sp_engine_want_entity(e, SP_KIND_ORDER, ev->s[SP_S_ORDER_ID]);
}

static int dim_cap(sp_engine_t *e) {
    int cap = sp_engine_cfg(e)->max_dimension_values;
    return cap < 0 ? 0 : cap > DIM_MAX ? DIM_MAX : cap;
}

/* Slot index of an interned id in a window's value table (DIM_MAX: other). */
static int id_slot(sp_engine_t *e, idtab_t *t, uint32_t id) {
    if (id == 0) return DIM_MAX;
    for (int j = 0; j < t->n; j++)
        if (t->id[j] == id) return j;
    if (t->n >= dim_cap(e)) return DIM_MAX;
    t->id[t->n] = id;
    return t->n++;
}

/* Add v to counter f overall and per dimension (ids per dim index). */
static void add(sp_engine_t *e, fwin_t *w, int f, int64_t v, const uint32_t *ids, int nd) {
    w->all.d[f] += v;
    w->all.dirty = 1;
    for (int k = 0; k < nd; k++) {
        cnt_t *c = &w->dim[k].c[id_slot(e, &w->dim[k].ids, ids[k])];
        c->d[f] += v;
        c->dirty = 1;
    }
}

static void event_dims(sp_engine_t *e, const sp_event_t *ev, uint32_t *ids) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    for (int k = 0; k < cfg->funnel_dims.cnt; k++) {
        sp_str_t v = ev->s[cfg->funnel_dims.f[k]];
        ids[k] = v.p ? sp_engine_intern(e, v.p, v.len) : 0;
    }
}

static int funnel_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    int nd = cfg->funnel_dims.cnt > NDIM ? NDIM : cfg->funnel_dims.cnt;
    int nsz = sp_engine_size_count(e);
    int64_t t = ev->i[SP_I_EVENT_TIME];
    uint32_t ev_ids[NDIM] = {0};
    uint8_t bits = B_SEEN;

    if (!is_funnel_event(ev)) return SP_OK;

    /* An order is a fact counted once per order_id. */
    if (ev->type == SP_T_ORDER_PLACED) {
        sp_entity_t *oe = sp_engine_entity(e, SP_KIND_ORDER, ev->s[SP_S_ORDER_ID]);
        if (oe) {
            order_t *o = (order_t *)oe->data;
            if (o->placed) return SP_ERR_DUPLICATE;
            o->placed = 1;
            sp_engine_touch(e, oe);
        }
    }
    event_dims(e, ev, ev_ids);

    switch (ev->type) {
    case SP_T_PRODUCT_VIEW: bits |= B_PV; break;
    case SP_T_ADD_TO_CART: bits |= B_CART; break;
    case SP_T_CHECKOUT_STARTED: bits |= B_CHECKOUT; break;
    case SP_T_ORDER_PLACED: bits |= B_ORDER; break;
    default: break;
    }

    /* Session-level distinct counts. */
    sp_entity_t *se = sp_engine_entity(e, SP_KIND_SESSION, ev->s[SP_S_SESSION_ID]);
    if (se) {
        session_t *s = (session_t *)se->data;
        /* Forget windows that are final: no event can reach them. */
        for (int j = 0; j < s->nslot;)
            if (slot_final(e, &s->slot[j])) s->slot[j] = s->slot[--s->nslot];
            else j++;
        for (int i = 0; i < nsz; i++) {
            int32_t widx = (int32_t)sp_engine_window_index(e, i, t);
            slot_t tmp = {widx, (uint8_t)i, 0, 0}, *sl = NULL;
            for (int j = 0; j < s->nslot && !sl; j++)
                if (s->slot[j].size_idx == i && s->slot[j].widx == widx) sl = &s->slot[j];
            if (!sl) {
                if (slot_reserve(s, s->nslot + 1) == 0) {
                    sl = &s->slot[s->nslot++];
                } else {
                    sl = &tmp; /* SLOT_MAX open windows: see the design note */
                }
                *sl = tmp;
                /* A session's values in a window: its first event there. */
                sl->tuple = session_tuple(e, s, ev_ids, nd);
            }
            uint8_t nb = (uint8_t)(bits & ~sl->flags);
            if (!nb) continue;
            sl->flags |= nb;
            sp_engine_touch(e, se);
            fwin_t *w = wins[i];
            for (int b = 0; b < 5; b++)
                if (nb & (1u << b)) add(e, w, bit_counter[b], 1, s->tuple[sl->tuple], nd);
        }
    }

    /* Event-level counts, with the event's own dimension values. */
    for (int i = 0; i < nsz; i++) {
        fwin_t *w = wins[i];
        switch (ev->type) {
        case SP_T_ORDER_PLACED: {
            sp_str_t cur = ev->s[SP_S_CURRENCY];
            int64_t amt = ev->i[SP_I_AMOUNT_CENTS];
            add(e, w, F_ORDERS, 1, ev_ids, nd);
            if (cur.p && cur.len == strlen(cfg->currency) && memcmp(cur.p, cfg->currency, cur.len) == 0) {
                add(e, w, F_ORDERS_SC, 1, ev_ids, nd);
                add(e, w, F_REVENUE, amt, ev_ids, nd);
            }
            if (cur.p) {
                int j = id_slot(e, &w->cur.ids, sp_engine_intern(e, cur.p, cur.len));
                w->cur.orders[j]++;
                w->cur.revenue[j] += amt;
                w->cur.dirty[j] = 1;
            }
            break;
        }
        case SP_T_PAYMENT_SUBMITTED: add(e, w, F_PAY_SUBMITTED, 1, ev_ids, nd); break;
        case SP_T_PAYMENT_FAILED: add(e, w, F_PAY_FAILED, 1, ev_ids, nd); break;
        default: break;
        }
    }
    return SP_OK;
}

/* Emit one slot's counters and ratios with a field suffix ("" or "|k=v"). */
static void emit_cnt(sp_commit_t *c, cnt_t *cn, const char *sfx, size_t sfxlen, int all_fields) {
    char f[600], num[600], den[600];
    for (int k = 0; k < F_N; k++) {
        if (!all_fields && cn->d[k] == 0) continue;
        int n = snprintf(f, sizeof(f), "%s%.*s", fnames[k], (int)sfxlen, sfx);
        sp_commit_incr(c, f, (size_t)n, cn->d[k]);
    }
    for (int r = 0; r < NRATIO; r++) {
        snprintf(f, sizeof(f), "%s%.*s", ratios[r].name, (int)sfxlen, sfx);
        snprintf(num, sizeof(num), "%s%.*s", fnames[ratios[r].num], (int)sfxlen, sfx);
        snprintf(den, sizeof(den), "%s%.*s", fnames[ratios[r].den], (int)sfxlen, sfx);
        sp_commit_ratio(c, f, ratios[r].kind, num, den);
    }
    memset(cn->d, 0, sizeof(cn->d));
    cn->dirty = 0;
}

static size_t suffix(char *buf, size_t cap, const char *dim, const char *v, size_t vlen) {
    int n = snprintf(buf, cap, "|%s=%.*s", dim, (int)vlen, v);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static void funnel_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    int nd = cfg->funnel_dims.cnt > NDIM ? NDIM : cfg->funnel_dims.cnt;
    fwin_t *w = win;
    char sfx[300], f[600];

    if (!w) {
        cnt_t zero;
        memset(&zero, 0, sizeof(zero));
        emit_cnt(c, &zero, "", 0, 1);
        return;
    }
    if (w->all.dirty || closing) emit_cnt(c, &w->all, "", 0, closing);
    for (int k = 0; k < nd; k++) {
        dimtab_t *t = &w->dim[k];
        const char *dname = sp_str_field_names[cfg->funnel_dims.f[k]];
        for (int j = 0; j <= DIM_MAX; j++) {
            if (j == t->ids.n) j = DIM_MAX;
            if (!t->c[j].dirty) continue;
            size_t vlen;
            const char *v = j == DIM_MAX ? SP_OTHER : sp_engine_interned(e, t->ids.id[j], &vlen);
            if (j == DIM_MAX) vlen = strlen(SP_OTHER);
            size_t sl = suffix(sfx, sizeof(sfx), dname, v, vlen);
            emit_cnt(c, &t->c[j], sfx, sl, 0);
        }
    }
    for (int j = 0; j <= DIM_MAX; j++) {
        if (j == w->cur.ids.n) j = DIM_MAX;
        if (!w->cur.dirty[j]) continue;
        size_t vlen;
        const char *v = j == DIM_MAX ? SP_OTHER : sp_engine_interned(e, w->cur.ids.id[j], &vlen);
        if (j == DIM_MAX) vlen = strlen(SP_OTHER);
        int n = snprintf(f, sizeof(f), "orders|currency=%.*s", (int)vlen, v);
        sp_commit_incr(c, f, (size_t)n, w->cur.orders[j]);
        n = snprintf(f, sizeof(f), "revenue_cents|currency=%.*s", (int)vlen, v);
        sp_commit_incr(c, f, (size_t)n, w->cur.revenue[j]);
        w->cur.orders[j] = w->cur.revenue[j] = 0;
        w->cur.dirty[j] = 0;
    }
}

/* The catalogue (family.h): fnames[], ratios[] and the currency split. */
static const sp_metric_t metrics[] = {
    {"sessions", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"product_view_sessions", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"cart_sessions", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"checkout_sessions", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"order_sessions", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"orders", SP_METRIC_COUNTER, NULL, "currency", 0},
    {"orders_store_currency", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"revenue_cents", SP_METRIC_COUNTER, NULL, "currency", 0},
    {"payments_submitted", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"payments_failed", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"conversion_rate", SP_METRIC_RATIO, "sessions", NULL, 0},
    {"view_to_cart_rate", SP_METRIC_RATIO, "product_view_sessions", NULL, 0},
    {"cart_to_checkout_rate", SP_METRIC_RATIO, "cart_sessions", NULL, 0},
    {"checkout_to_order_rate", SP_METRIC_RATIO, "checkout_sessions", NULL, 0},
    {"payment_failure_rate", SP_METRIC_RATIO, "payments_submitted", NULL, 0},
    {"aov_cents", SP_METRIC_RATIO, "orders_store_currency", NULL, 0},
};

const sp_family_t sp_family_funnel = {
    .name = "funnel",
    .win_size = sizeof(fwin_t),
    .metrics = metrics,
    .nmetrics = (int)(sizeof(metrics) / sizeof(metrics[0])),
    .dims_off = offsetof(sp_config_t, funnel_dims),
    .want = funnel_want,
    .apply = funnel_apply,
    .emit = funnel_emit,
};
