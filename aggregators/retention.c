/* retention.c -- the retention family (SPEC §3 "retention", docs/METRICS.md):
 * ordering, returning and new customers and guest orders per window (per
 * channel, configurable), and the monthly cohort tables sp:{NS}:cohort:<YYYY-MM>.
 *
 * What it owns: the customer entity (sp:{NS}:state:customer:<customer_id>,
 * TTL state.customer_ttl, refreshed by every order), loaded in the batch
 * prefetch like every entity, so customers never all sit in memory. It holds
 *  - the history: the first order time ever seen and the NTIMES most recent
 *    distinct order times (the earlier ones are only needed through `first`);
 *  - the cohort marks: which active_m<k> (k = 1..12) and retained_<N>d fields
 *    of its cohort the customer is counted in; the cohort is the month of
 *    `first` in windows.timezone and `customers` counts every customer;
 *  - one slot per window (any size) it ordered in that is not final for the
 *    family: window index, the customer's earliest order time f there, the
 *    dimension values of its first order there (arrival order; an index into
 *    a small per-customer table of value tuples, as funnel does) and whether
 *    it is counted as returning. Slots of final windows are pruned.
 *
 * An ORDER_PLACED with a customer_id (order_id duplicates were already
 * dropped by the funnel, which runs first): the time joins the history and
 * the cohorts (history_add); in each size the window of the order gets a slot
 * if it has none (ordering_customers +1, new_customers +1), or its f moves
 * earlier; then EVERY open slot is re-decided: returning = a kept order time
 * in [f - horizon, f). A change moves one customer between new_customers and
 * returning_customers in that slot's window (sp_engine_block), so an earlier
 * order that arrives late corrects the open windows it concerns, and
 * new = ordering - returning holds per window and per value at every commit.
 * Without a customer_id the order counts in guest_orders only.
 *
 * Cohort marks are exact and do not depend on how many times are kept: they
 * are "first time" bits (an order sets a bit once; seeing it again changes
 * nothing). When an earlier order moves `first`, the old cohort's marks are
 * withdrawn and the new cohort's derived: every known order is at or after
 * the old first, so active bits shift by the month difference (plus the old
 * first's own month) and retained_<N>d holds iff old first - new first <= N
 * days. The customer state is thus a function of the SET of order times seen:
 * the arrival order does not matter and re-importing changes nothing.
 * sp_retention_import() (import-orders) runs the same history and cohort
 * logic, without window counters and without touching the slots.
 *
 * Not here: more than SLOT_MAX open windows per customer (an order past that
 * is counted in a throw-away slot: once, never corrected); more than NTUPLE
 * distinct value tuples among a customer's open windows (the extra window
 * counts under the first tuple); customers whose state expired (TTL) start
 * afresh as new customers of a new cohort; retained_<N>d uses N x 24 h. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/famkit.h"
#include "aggregators/import.h"

enum { F_ORDERING = 0, F_RETURNING, F_NEW, F_GUEST, F_N };

static const char *const fields[F_N] = {"ordering_customers", "returning_customers",
                                        "new_customers", "guest_orders"};

static const sp_fk_ratio_t ratios[] = {
    {"repeat_purchase_rate", 'r', F_RETURNING, F_ORDERING},
};

static const sp_fk_spec_t spec = {F_N, fields, 1, ratios, 0, NULL,
                                  offsetof(sp_config_t, retention_dims)};

#define NTIMES      32 /* most recent order times kept per customer */
#define NTUPLE      4  /* distinct dimension tuples among open windows */
#define SLOT_MAX    32 /* open windows of one customer, all sizes */
#define DAY_MS      86400000LL
#define ACTIVE_MASK 0x1ffeu /* active_m1 .. active_m12 */

static const int retained_days[3] = {30, 60, 90};

/* A window the customer ordered in that is not final yet. */
typedef struct rslot {
    int64_t widx; /* window index (sp_engine_window_index) */
    int64_t f;    /* the customer's earliest order time in the window */
    uint8_t size_idx;
    uint8_t returning; /* counted as returning (else as new) */
    uint8_t tuple;     /* index into customer_t.tuple */
} rslot_t;

typedef struct customer {
    int64_t first;  /* earliest order time ever seen; 0: none yet */
    int64_t *times; /* owned: the NTIMES most recent distinct order times, ascending */
    rslot_t *slot;  /* owned: windows not final for the family */
    uint32_t tuple[NTUPLE][SP_FK_DIMS];
    uint16_t active;  /* bit k: counted in active_m<k> of the cohort */
    uint8_t retained; /* bit r: counted in retained_<retained_days[r]>d */
    uint8_t ntimes, tcap, ntuple, nslot, scap;
} customer_t;

static int ndims(const sp_engine_t *e) {
    int n = sp_fk_dims(e, &spec)->cnt;
    return n > SP_FK_DIMS ? SP_FK_DIMS : n;
}

/* ---- history ------------------------------------------------------- */

static int times_contains(const customer_t *c, int64_t t) {
    for (int j = 0; j < c->ntimes; j++)
        if (c->times[j] == t) return 1;
    return 0;
}

/* Insert t into the kept times (ascending, distinct, the NTIMES largest).
 * Returns 1 if the kept list changed. */
static int times_insert(customer_t *c, int64_t t) {
    int j = 0;
    while (j < c->ntimes && c->times[j] < t) j++;
    if (j < c->ntimes && c->times[j] == t) return 0;
    if (c->ntimes == NTIMES) {
        if (j == 0) return 0; /* older than every kept time */
        memmove(c->times, c->times + 1, (size_t)(j - 1) * sizeof(*c->times));
        c->times[j - 1] = t;
        return 1;
    }
    if (c->ntimes == c->tcap) {
        int nc = c->tcap ? c->tcap * 2 : 4;
        if (nc > NTIMES) nc = NTIMES;
        int64_t *nt = realloc(c->times, (size_t)nc * sizeof(*nt));
        if (!nt) return 0; /* out of memory: the time is not kept */
        c->times = nt;
        c->tcap = (uint8_t)nc;
    }
    memmove(c->times + j + 1, c->times + j, (size_t)(c->ntimes - j) * sizeof(*c->times));
    c->times[j] = t;
    c->ntimes++;
    return 1;
}

/* Is there a known order time in [lo, hi)? */
static int has_order_in(const customer_t *c, int64_t lo, int64_t hi) {
    if (c->first >= lo && c->first < hi) return 1;
    for (int j = 0; j < c->ntimes; j++)
        if (c->times[j] >= lo && c->times[j] < hi) return 1;
    return 0;
}

/* ---- cohorts ------------------------------------------------------- */

/* Months since year 0 of t's local date (windows.timezone). */
static int64_t month_of(const sp_engine_t *e, int64_t t) {
    int y, m, d;
    sp_engine_local_date(e, t, &y, &m, &d);
    return (int64_t)y * 12 + (m - 1);
}

static void cohort_key(const sp_engine_t *e, int64_t t, char *key, size_t cap) {
    int y, m, d;
    sp_engine_local_date(e, t, &y, &m, &d);
    snprintf(key, cap, "%s:cohort:%04d-%02d", sp_engine_prefix(e), y, m);
}

/* Add sign to every cohort field the customer is counted in. */
static void cohort_apply(sp_engine_t *e, const customer_t *c, int64_t sign) {
    char key[128], f[32];
    cohort_key(e, c->first, key, sizeof(key));
    sp_engine_hincr(e, key, "customers", sign);
    for (int k = 1; k <= 12; k++)
        if (c->active & (1u << k)) {
            snprintf(f, sizeof(f), "active_m%d", k);
            sp_engine_hincr(e, key, f, sign);
        }
    for (int r = 0; r < 3; r++)
        if (c->retained & (1u << r)) {
            snprintf(f, sizeof(f), "retained_%dd", retained_days[r]);
            sp_engine_hincr(e, key, f, sign);
        }
}

/* Marks of an order at t > first. Returns 1 if a mark was added. */
static int cohort_mark(sp_engine_t *e, customer_t *c, int64_t t) {
    char key[128], f[32];
    int changed = 0;
    int64_t k = month_of(e, t) - month_of(e, c->first);
    cohort_key(e, c->first, key, sizeof(key));
    if (k >= 1 && k <= 12 && !(c->active & (1u << k))) {
        c->active |= (uint16_t)(1u << k);
        snprintf(f, sizeof(f), "active_m%d", (int)k);
        sp_engine_hincr(e, key, f, 1);
        changed = 1;
    }
    for (int r = 0; r < 3; r++)
        if (t - c->first <= retained_days[r] * DAY_MS && !(c->retained & (1u << r))) {
            c->retained |= (uint8_t)(1u << r);
            snprintf(f, sizeof(f), "retained_%dd", retained_days[r]);
            sp_engine_hincr(e, key, f, 1);
            changed = 1;
        }
    return changed;
}

/* Add order time t to the customer's history and cohort tables. */
static int history_add(sp_engine_t *e, customer_t *c, int64_t t) {
    if (c->first == 0) {
        c->first = t;
        times_insert(c, t);
        cohort_apply(e, c, 1);
        return SP_RET_IMPORT_NEW_CUSTOMER;
    }
    if (t == c->first || times_contains(c, t)) return SP_RET_IMPORT_KNOWN;
    if (t < c->first) {
        /* Every known order is at or after the old first (see the top). */
        int64_t old = c->first, d = month_of(e, old) - month_of(e, t);
        uint32_t a = d <= 12 ? (uint32_t)c->active << d : 0;
        if (d >= 1 && d <= 12) a |= 1u << d;
        cohort_apply(e, c, -1);
        c->active = (uint16_t)(a & ACTIVE_MASK);
        c->retained = 0;
        for (int r = 0; r < 3; r++)
            if (old - t <= retained_days[r] * DAY_MS) c->retained |= (uint8_t)(1u << r);
        c->first = t;
        times_insert(c, t);
        cohort_apply(e, c, 1);
        return SP_RET_IMPORT_ADDED;
    }
    int changed = times_insert(c, t);
    changed |= cohort_mark(e, c, t);
    return changed ? SP_RET_IMPORT_ADDED : SP_RET_IMPORT_KNOWN;
}

/* ---- entity -------------------------------------------------------- */

/* What the slots and tuples were encoded against: window sizes and the
 * family's dimensions. A customer written under another layout keeps its
 * history and cohort marks and drops its slots. */
static uint32_t layout_sig(const sp_engine_t *e) {
    const sp_config_t *cfg = sp_engine_cfg(e);
    const sp_dims_t *d = sp_fk_dims(e, &spec);
    int64_t buf[SP_MAX_WINDOWS + SP_FK_DIMS + 2];
    int n = 0;
    buf[n++] = cfg->window_cnt;
    for (int i = 0; i < cfg->window_cnt; i++) buf[n++] = cfg->window_ms[i];
    buf[n++] = ndims(e);
    for (int k = 0; k < ndims(e); k++) buf[n++] = d->f[k];
    return (uint32_t)sp_hash64(buf, (size_t)n * sizeof(buf[0]), 0x7e7e);
}

#define SLOT_BYTES 19 /* size u8, widx i64, f i64, returning u8, tuple u8 */

/* Customer value (little endian):
 *   "R1" | layout sig u32 | first i64 | active u16 | retained u8 |
 *   ntimes u8 | ntimes x i64 (ascending) |
 *   ntuple u8 | ntuple x dimension values (sp_fk_put_ids) |
 *   nslot u8 | nslot x (size u8, window index i64, f i64, returning u8, tuple u8)
 * At most 2+4+8+3+1+256+1+4*3*255+1+32*19 = 3944 bytes: fits the engine's
 * 4096-byte encode buffer even with every value at its longest. */
static size_t customer_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    const customer_t *c = data;
    int nd = ndims(e);
    uint32_t sig = layout_sig(e);
    size_t n = 0;
    if (cap < 20 + (size_t)c->ntimes * 8) return 0;
    buf[n++] = 'R';
    buf[n++] = '1';
    for (int b = 0; b < 4; b++) buf[n++] = (char)((sig >> (8 * b)) & 0xff);
    sp_put_i64(buf + n, c->first);
    n += 8;
    buf[n++] = (char)(c->active & 0xff);
    buf[n++] = (char)(c->active >> 8);
    buf[n++] = (char)c->retained;
    buf[n++] = (char)c->ntimes;
    for (int j = 0; j < c->ntimes; j++, n += 8) sp_put_i64(buf + n, c->times[j]);
    /* Open windows: written only when all of them fit (they always do,
     * see above; otherwise the customer keeps its history only). */
    size_t mark = n;
    int ok = n + 2 <= cap;
    if (ok) buf[n++] = (char)c->ntuple;
    for (int t = 0; ok && t < c->ntuple; t++) {
        size_t m = sp_fk_put_ids(e, c->tuple[t], nd, buf + n, cap - n);
        if (nd && !m) ok = 0;
        n += m;
    }
    if (ok && n + 1 + (size_t)c->nslot * SLOT_BYTES <= cap) {
        buf[n++] = (char)c->nslot;
        for (int j = 0; j < c->nslot; j++) {
            const rslot_t *sl = &c->slot[j];
            buf[n++] = (char)sl->size_idx;
            sp_put_i64(buf + n, sl->widx);
            sp_put_i64(buf + n + 8, sl->f);
            n += 16;
            buf[n++] = (char)sl->returning;
            buf[n++] = (char)sl->tuple;
        }
    } else {
        n = mark;
        if (n + 2 > cap) return 0;
        buf[n++] = 0;
        buf[n++] = 0;
    }
    return n;
}

static int slot_reserve(customer_t *c, int need) {
    if (need <= c->scap) return 0;
    int nc = c->scap ? c->scap * 2 : 4;
    if (nc < need) nc = need;
    if (nc > SLOT_MAX) nc = SLOT_MAX;
    if (nc < need) return -1;
    rslot_t *ns = realloc(c->slot, (size_t)nc * sizeof(*ns));
    if (!ns) return -1;
    c->slot = ns;
    c->scap = (uint8_t)nc;
    return 0;
}

static int customer_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    customer_t *c = data;
    const unsigned char *p = (const unsigned char *)val;
    int nd = ndims(e), nsz = sp_engine_size_count(e);
    size_t n = 2;
    if (len < 20 || p[0] != 'R' || p[1] != '1') return -1;
    uint32_t sig = 0;
    for (int b = 0; b < 4; b++) sig |= (uint32_t)p[n++] << (8 * b);
    c->first = sp_get_i64(val + n);
    n += 8;
    c->active = (uint16_t)(p[n] | (p[n + 1] << 8));
    c->retained = p[n + 2];
    int nt = p[n + 3];
    n += 4;
    if (c->first <= 0 || (c->active & ~ACTIVE_MASK) || c->retained > 7 || nt > NTIMES ||
        n + (size_t)nt * 8 > len)
        return -1;
    if (nt > 0) {
        c->times = malloc((size_t)nt * sizeof(*c->times));
        if (!c->times) return -1;
        c->tcap = (uint8_t)nt;
    }
    for (int j = 0; j < nt; j++, n += 8) {
        c->times[j] = sp_get_i64(val + n);
        if (c->times[j] < c->first || (j > 0 && c->times[j] <= c->times[j - 1])) return -1;
    }
    c->ntimes = (uint8_t)nt;
    if (sig != layout_sig(e)) return 0; /* other sizes or dimensions: no open windows */

    if (n + 1 > len) return -1;
    int ntu = p[n++];
    if (ntu > NTUPLE) return -1;
    for (int t = 0; t < ntu; t++) {
        if (nd == 0) continue;
        size_t m = sp_fk_get_ids(e, val + n, len - n, c->tuple[t], nd);
        if (!m) return -1;
        n += m;
        for (int k = 0; k < nd; k++) { /* "__other__" is the other row, id 0 */
            size_t vl;
            const char *v = sp_engine_interned(e, c->tuple[t][k], &vl);
            if (c->tuple[t][k] != SP_FK_NONE && vl == strlen(SP_OTHER) &&
                memcmp(v, SP_OTHER, vl) == 0)
                c->tuple[t][k] = 0;
        }
    }
    c->ntuple = (uint8_t)ntu;
    if (n + 1 > len) return -1;
    int ns = p[n++];
    if (ns > SLOT_MAX || n + (size_t)ns * SLOT_BYTES != len) return -1;
    if (ns > 0 && slot_reserve(c, ns) != 0) return -1;
    for (int j = 0; j < ns; j++) {
        rslot_t *sl = &c->slot[j];
        sl->size_idx = p[n];
        sl->widx = sp_get_i64(val + n + 1);
        sl->f = sp_get_i64(val + n + 9);
        sl->returning = p[n + 17];
        sl->tuple = p[n + 18];
        n += SLOT_BYTES;
        if (sl->size_idx >= nsz || sl->returning > 1 || sl->tuple >= ntu || sl->f < c->first ||
            sp_engine_window_index(e, sl->size_idx, sl->f) != sl->widx)
            return -1;
    }
    c->nslot = (uint8_t)ns;
    return 0;
}

static void customer_release(void *data) {
    customer_t *c = data;
    free(c->times);
    free(c->slot);
    c->times = NULL;
    c->slot = NULL;
    c->ntimes = c->tcap = c->nslot = c->scap = 0;
}

static int64_t customer_ttl(sp_engine_t *e, const void *data) {
    (void)data;
    return sp_engine_cfg(e)->customer_ttl_ms;
}

const sp_entity_kind_t sp_kind_customer = {"customer",       sizeof(customer_t), customer_encode,
                                           customer_decode,  customer_release,   NULL,
                                           NULL,             customer_ttl};

/* ---- windows ------------------------------------------------------- */

static int slot_final(sp_engine_t *e, const rslot_t *sl) {
    int64_t fin = sp_engine_family_final_start(e, SP_FAM_RETENTION, sl->size_idx);
    return fin >= 0 && sl->widx <= sp_engine_window_index(e, sl->size_idx, fin);
}

/* The tuple index for ids (added when new). When the table is full a tuple
 * no open window uses is replaced; failing that tuple 0 is used. */
static uint8_t customer_tuple(customer_t *c, const uint32_t *ids, int nd) {
    for (int t = 0; t < c->ntuple; t++)
        if (memcmp(c->tuple[t], ids, sizeof(uint32_t) * (size_t)nd) == 0) return (uint8_t)t;
    int t = c->ntuple;
    if (t == NTUPLE) {
        for (t = 0; t < NTUPLE; t++) {
            int used = 0;
            for (int j = 0; j < c->nslot && !used; j++) used = c->slot[j].tuple == t;
            if (!used) break;
        }
        if (t == NTUPLE) return 0;
    } else {
        c->ntuple++;
    }
    memcpy(c->tuple[t], ids, sizeof(uint32_t) * (size_t)nd);
    return (uint8_t)t;
}

/* Values that could not be written back (longer than sp_fk_put_ids takes)
 * count under __other__ from the start, so corrections find the same row. */
static void storable_ids(sp_engine_t *e, uint32_t *ids, int nd) {
    for (int k = 0; k < nd; k++) {
        size_t len = 0;
        if (ids[k] == SP_FK_NONE) continue;
        sp_engine_interned(e, ids[k], &len);
        if (len > 254) ids[k] = 0;
    }
}

/* Re-decide a slot: returning iff a known order is in [f - horizon, f). */
static void slot_decide(sp_engine_t *e, customer_t *c, rslot_t *sl) {
    int64_t h = sp_engine_cfg(e)->retention_horizon_ms;
    int r = has_order_in(c, sl->f - h, sl->f);
    if (r == sl->returning) return;
    sp_fk_win_t *w = sp_engine_block(e, SP_FAM_RETENTION, sl->size_idx, sl->f);
    if (!w) return; /* final: nothing can change there */
    const uint32_t *ids = c->tuple[sl->tuple];
    sp_fk_add(e, &spec, w, ids, F_RETURNING, r ? 1 : -1);
    sp_fk_add(e, &spec, w, ids, F_NEW, r ? -1 : 1);
    sl->returning = (uint8_t)r;
}

/* ---- the family ---------------------------------------------------- */

static int is_order(const sp_event_t *ev) {
    return ev->stream == SP_STREAM_CHECKOUT && ev->type == SP_T_ORDER_PLACED;
}

static int has_customer(const sp_event_t *ev) {
    return ev->s[SP_S_CUSTOMER_ID].p && ev->s[SP_S_CUSTOMER_ID].len > 0;
}

static void retention_want(sp_engine_t *e, const sp_event_t *ev) {
    if (is_order(ev) && has_customer(ev))
        sp_engine_want_entity(e, SP_KIND_CUSTOMER, ev->s[SP_S_CUSTOMER_ID]);
}

static int retention_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    int nd = ndims(e), nsz = sp_engine_size_count(e);
    int64_t t = ev->i[SP_I_EVENT_TIME];
    uint32_t ids[SP_FK_DIMS];

    if (!is_order(ev)) return SP_OK;
    sp_fk_ids(e, &spec, ev, ids);
    if (!has_customer(ev)) {
        for (int i = 0; i < nsz; i++) sp_fk_add(e, &spec, wins[i], ids, F_GUEST, 1);
        return SP_OK;
    }
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_CUSTOMER, ev->s[SP_S_CUSTOMER_ID]);
    if (!en) return SP_OK; /* could not be loaded (out of memory): not counted */
    customer_t *c = (customer_t *)en->data;
    storable_ids(e, ids, nd);

    history_add(e, c, t);
    for (int j = 0; j < c->nslot;) /* no order can reach a final window */
        if (slot_final(e, &c->slot[j])) c->slot[j] = c->slot[--c->nslot];
        else j++;
    for (int i = 0; i < nsz; i++) {
        int64_t widx = sp_engine_window_index(e, i, t);
        rslot_t *sl = NULL, tmp;
        for (int j = 0; j < c->nslot && !sl; j++)
            if (c->slot[j].size_idx == i && c->slot[j].widx == widx) sl = &c->slot[j];
        if (sl) {
            if (t < sl->f) sl->f = t;
            continue;
        }
        /* The customer's first order in this window: its values count. */
        uint8_t tu = customer_tuple(c, ids, nd);
        sl = slot_reserve(c, c->nslot + 1) == 0 ? &c->slot[c->nslot++] : &tmp;
        *sl = (rslot_t){widx, t, (uint8_t)i, 0, tu};
        sp_fk_add(e, &spec, wins[i], c->tuple[tu], F_ORDERING, 1);
        sp_fk_add(e, &spec, wins[i], c->tuple[tu], F_NEW, 1);
        if (sl == &tmp) slot_decide(e, c, &tmp); /* SLOT_MAX: see the top */
    }
    for (int j = 0; j < c->nslot; j++) slot_decide(e, c, &c->slot[j]);
    sp_engine_touch(e, en); /* also refreshes the TTL */
    return SP_OK;
}

static void retention_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    sp_fk_emit(e, &spec, win, closing, c);
}

/* The catalogue (family.h): fields[] and ratios[]. The cohort hashes are
 * not window hashes: no rule reads them. */
static const sp_metric_t metrics[] = {
    {"ordering_customers", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"returning_customers", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"new_customers", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"guest_orders", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"repeat_purchase_rate", SP_METRIC_RATIO, "ordering_customers", NULL, 0},
};

const sp_family_t sp_family_retention = {
    .name = "retention",
    .win_size = sizeof(sp_fk_win_t),
    .metrics = metrics,
    .nmetrics = (int)(sizeof(metrics) / sizeof(metrics[0])),
    .dims_off = offsetof(sp_config_t, retention_dims),
    .want = retention_want,
    .apply = retention_apply,
    .emit = retention_emit,
    .release = sp_fk_release,
};

/* ---- import-orders -------------------------------------------------- */

int sp_retention_import(sp_engine_t *e, sp_entity_t *customer, int64_t t) {
    if (!customer || customer->kind != SP_KIND_CUSTOMER) return SP_RET_IMPORT_KNOWN;
    int r = history_add(e, (customer_t *)customer->data, t);
    if (r != SP_RET_IMPORT_KNOWN) sp_engine_touch(e, customer);
    return r;
}
