/* funnel.c -- the funnel family (SPEC §3): sessions and their steps, orders,
 * revenue, AOV, payments, conversion and step rates, per channel, device and
 * country (configurable), and orders/revenue per currency.
 *
 * Session-level distinct counts (sessions, *_sessions) need to know whether a
 * session was already counted in a window: that is the session entity
 * (sp:{NS}:state:session:<id>), holding per window size up to NSLOT windows
 * the session was seen in, with a bit per step, and the session's dimension
 * values. A slot is reused only once its window is final (no event can reach
 * it any more), so the counts do not depend on the order in which partitions
 * interleave, as long as at most NSLOT windows of one size are open at once
 * (with the defaults, 1m windows stay open ~2 minutes). Past that, the
 * oldest open window's slot is given up and the session could be counted
 * twice there.
 * Orders are counted once per order_id through the order entity.
 *
 * Dimension values of session-level counts: the session's first event that
 * carries them (every clickstream and checkout event carries channel, device
 * and country, so that is the session's first event). Per value the step
 * sessions are therefore always a subset of `sessions` with the same value.
 *
 * Each window keeps, per dimension, a table of at most max_dimension_values
 * interned values (first come); the rest go to __other__. Deltas accumulate
 * in memory and are written per batch; emit() clears them. */
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

typedef struct dimtab {
    uint16_t n;
    uint32_t id[DIM_MAX];
    cnt_t c[DIM_MAX + 1]; /* [DIM_MAX] is __other__ */
} dimtab_t;

typedef struct curtab {
    uint16_t n;
    uint32_t id[DIM_MAX];
    int64_t orders[DIM_MAX + 1], revenue[DIM_MAX + 1];
    uint8_t dirty[DIM_MAX + 1];
} curtab_t;

typedef struct fwin {
    cnt_t all;
    dimtab_t dim[NDIM];
    curtab_t cur;
} fwin_t;

/* ---- entities ------------------------------------------------------ */

/* A window the session was seen in: its index (start / size) and step bits.
 * flags 0 = free slot. */
typedef struct slot {
    int32_t widx;
    uint8_t flags;
} slot_t;

#define NSLOT 6 /* per window size: enough for every window still open */

typedef struct session {
    uint8_t has_dims;
    uint32_t dim[NDIM];                /* interned ids, by funnel dim index */
    slot_t slot[SP_MAX_WINDOWS][NSLOT];
} session_t;

typedef struct order {
    uint8_t placed;
} order_t;

/* Session value: "S2" | nsizes u8 | ndims u8 | per dim: u16 len + bytes |
 * per size: u8 n, n x (i32 window index, u8 flags), little endian. */
static size_t session_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    const session_t *s = data;
    int nsz = sp_engine_size_count(e);
    int nd = sp_engine_cfg(e)->funnel_dim_cnt;
    size_t n = 0;
    if (cap < 4) return 0;
    buf[n++] = 'S';
    buf[n++] = '2';
    buf[n++] = (char)nsz;
    buf[n++] = (char)(s->has_dims ? nd : 0);
    for (int k = 0; s->has_dims && k < nd; k++) {
        size_t len;
        const char *p = sp_engine_interned(e, s->dim[k], &len);
        if (n + 2 + len > cap) return 0;
        buf[n++] = (char)(len & 0xff);
        buf[n++] = (char)(len >> 8);
        memcpy(buf + n, p, len);
        n += len;
    }
    for (int i = 0; i < nsz; i++) {
        int used = 0;
        for (int j = 0; j < NSLOT; j++) used += s->slot[i][j].flags != 0;
        if (n + 1 + (size_t)used * 5 > cap) return 0;
        buf[n++] = (char)used;
        for (int j = 0; j < NSLOT; j++) {
            if (!s->slot[i][j].flags) continue;
            uint32_t v = (uint32_t)s->slot[i][j].widx;
            for (int b = 0; b < 4; b++) buf[n++] = (char)((v >> (8 * b)) & 0xff);
            buf[n++] = (char)s->slot[i][j].flags;
        }
    }
    return n;
}

static int session_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    session_t *s = data;
    const unsigned char *p = (const unsigned char *)val;
    size_t n = 4;
    int nd;
    if (len < 4 || p[0] != 'S' || p[1] != '2') return -1;
    nd = p[3];
    if (nd > NDIM) return -1;
    for (int k = 0; k < nd; k++) {
        if (n + 2 > len) return -1;
        size_t l = (size_t)p[n] | ((size_t)p[n + 1] << 8);
        n += 2;
        if (n + l > len) return -1;
        s->dim[k] = sp_engine_intern(e, val + n, l);
        n += l;
    }
    s->has_dims = nd > 0 && nd == sp_engine_cfg(e)->funnel_dim_cnt;
    if (p[2] != sp_engine_size_count(e)) return 0; /* window sizes changed: slots afresh */
    for (int i = 0; i < p[2]; i++) {
        if (n + 1 > len) return -1;
        int used = p[n++];
        if (used > NSLOT) return -1;
        for (int j = 0; j < used; j++) {
            if (n + 5 > len) return -1;
            uint32_t v = 0;
            for (int b = 0; b < 4; b++) v |= (uint32_t)p[n + b] << (8 * b);
            s->slot[i][j].widx = (int32_t)v;
            s->slot[i][j].flags = p[n + 4];
            n += 5;
        }
    }
    return 0;
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

const sp_entity_kind_t sp_kind_session = {"session", sizeof(session_t), session_encode,
                                          session_decode};
const sp_entity_kind_t sp_kind_order = {"order", sizeof(order_t), order_encode, order_decode};

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

/* Slot index in a dimension table for an interned id (DIM_MAX: other). */
static int dim_slot(sp_engine_t *e, dimtab_t *t, uint32_t id) {
    if (id == 0) return DIM_MAX;
    for (int j = 0; j < t->n; j++)
        if (t->id[j] == id) return j;
    if (t->n >= dim_cap(e)) return DIM_MAX;
    t->id[t->n] = id;
    return t->n++;
}

static int cur_slot(sp_engine_t *e, curtab_t *t, uint32_t id) {
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
        cnt_t *c = &w->dim[k].c[dim_slot(e, &w->dim[k], ids[k])];
        c->d[f] += v;
        c->dirty = 1;
    }
}

static void event_dims(sp_engine_t *e, const sp_event_t *ev, uint32_t *ids) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    for (int k = 0; k < cfg->funnel_dim_cnt; k++) {
        sp_str_t v = ev->s[cfg->funnel_dims[k]];
        ids[k] = v.p ? sp_engine_intern(e, v.p, v.len) : 0;
    }
}

static int funnel_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    int nd = cfg->funnel_dim_cnt > NDIM ? NDIM : cfg->funnel_dim_cnt;
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
        if (!s->has_dims) {
            memcpy(s->dim, ev_ids, sizeof(s->dim));
            s->has_dims = 1;
            sp_engine_touch(e, se);
        }
        for (int i = 0; i < nsz; i++) {
            int64_t size = cfg->window_ms[i];
            int32_t widx = (int32_t)(sp_engine_window_start(e, i, t) / size);
            int64_t final = sp_engine_final_start(e, i);
            slot_t tmp = {widx, 0}, *sl = NULL, *reuse = NULL, *oldest = NULL;
            for (int j = 0; j < NSLOT && !sl; j++) {
                slot_t *c = &s->slot[i][j];
                if (c->flags && c->widx == widx) sl = c;
                else if (!c->flags || (final >= 0 && (int64_t)c->widx * size <= final)) {
                    if (!reuse) reuse = c; /* free, or final: no event reaches it */
                } else if (!oldest || c->widx < oldest->widx) {
                    oldest = c;
                }
            }
            if (!sl) {
                /* All slots hold open windows: give up the oldest (see the
                 * design note); an event older than all of them is counted
                 * in a throw-away slot. */
                if (!reuse && oldest && oldest->widx < widx) reuse = oldest;
                sl = reuse ? reuse : &tmp;
                *sl = tmp;
            }
            uint8_t nb = (uint8_t)(bits & ~sl->flags);
            if (!nb) continue;
            sl->flags |= nb;
            sp_engine_touch(e, se);
            fwin_t *w = wins[i];
            for (int b = 0; b < 5; b++)
                if (nb & (1u << b)) add(e, w, bit_counter[b], 1, s->dim, nd);
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
                int j = cur_slot(e, &w->cur, sp_engine_intern(e, cur.p, cur.len));
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
    int nd = cfg->funnel_dim_cnt > NDIM ? NDIM : cfg->funnel_dim_cnt;
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
        const char *dname = sp_str_field_names[cfg->funnel_dims[k]];
        for (int j = 0; j <= DIM_MAX; j++) {
            if (j == t->n) j = DIM_MAX;
            if (!t->c[j].dirty) continue;
            size_t vlen;
            const char *v = j == DIM_MAX ? SP_OTHER : sp_engine_interned(e, t->id[j], &vlen);
            if (j == DIM_MAX) vlen = strlen(SP_OTHER);
            size_t sl = suffix(sfx, sizeof(sfx), dname, v, vlen);
            emit_cnt(c, &t->c[j], sfx, sl, 0);
        }
    }
    for (int j = 0; j <= DIM_MAX; j++) {
        if (j == w->cur.n) j = DIM_MAX;
        if (!w->cur.dirty[j]) continue;
        size_t vlen;
        const char *v = j == DIM_MAX ? SP_OTHER : sp_engine_interned(e, w->cur.id[j], &vlen);
        if (j == DIM_MAX) vlen = strlen(SP_OTHER);
        int n = snprintf(f, sizeof(f), "orders|currency=%.*s", (int)vlen, v);
        sp_commit_incr(c, f, (size_t)n, w->cur.orders[j]);
        n = snprintf(f, sizeof(f), "revenue_cents|currency=%.*s", (int)vlen, v);
        sp_commit_incr(c, f, (size_t)n, w->cur.revenue[j]);
        w->cur.orders[j] = w->cur.revenue[j] = 0;
        w->cur.dirty[j] = 0;
    }
}

const sp_family_t sp_family_funnel = {"funnel", sizeof(fwin_t), funnel_want, funnel_apply,
                                      funnel_emit};
