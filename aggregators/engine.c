/* engine.c -- windows, watermark, entity cache and interned dimensions.
 *
 * What it does
 *  - Watermark: per assigned partition, max event time seen and the wall time
 *    of its last event. The pipeline watermark is the minimum, over partitions
 *    that are not idle, of max_event_time - max_out_of_orderness. A partition
 *    is idle when it delivered nothing for idle_timeout AND has no lag; a
 *    partition that has delivered nothing yet and is not idle holds the
 *    watermark where it is. When every partition is idle the watermark follows
 *    the wall clock (minus the out-of-orderness bound), so windows close when
 *    traffic stops, but never while there is lag (a replay is never turned
 *    late). The watermark never moves backwards.
 *  - Windows: per size a short list of open windows (a handful at any time:
 *    events are at most max_out_of_orderness + allowed_lateness behind).
 *    Closing walks window starts from the final pointer up to the watermark:
 *    a window in memory is emitted with closed=1, a window not in memory is
 *    zero-filled (overall counters 0, closed=1). Windows older than the size's
 *    TTL are skipped (they would expire at once), and at most
 *    CLOSE_MAX_PER_TICK windows close per call so one tick stays bounded.
 *  - Entity cache: a chained hash table + LRU list over Redis entity state.
 *    want() creates a placeholder for keys not in memory; the run loop fetches
 *    them in one MGET and hands the values to fetched(). Entities changed in a
 *    batch are written in its commit; cold clean ones are evicted past
 *    state.cache_max, and any unused for state.cache_idle of event time.
 *  - Interned dimension values: small integer ids so a window's per-dimension
 *    tables compare ids, not strings. At most INTERN_MAX values; past that a
 *    value is counted as __other__ (id 0).
 *
 * What it deliberately does not do: any I/O, any event-id dedup (consumer's
 * job). Day windows in the store's zone: see "window arithmetic" below. */
#include "aggregators/engine.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aggregators/family.h"
#include "core/log.h"

#define INTERN_MAX 65536
#define CLOSE_MAX_PER_TICK 2000

static const sp_family_t *const families[SP_FAM__COUNT] = {
    &sp_family_funnel, &sp_family_abandonment, &sp_family_delivery, &sp_family_retention,
    &sp_family_support};
#define NFAM SP_FAM__COUNT

/* The gauges the engine writes in build_commit (the families declare
 * theirs). */
static const sp_metric_t engine_gauges[] = {
    {"watermark_ms", SP_METRIC_GAUGE, NULL, NULL, 0},
    {"open_windows", SP_METRIC_GAUGE, NULL, NULL, 0},
    {"in_flight_entities", SP_METRIC_GAUGE, NULL, "kind", 0},
};

const sp_family_t *const *sp_engine_families(int *n) {
    *n = NFAM;
    return families;
}

const sp_metric_t *sp_engine_gauges(int *n) {
    *n = (int)(sizeof(engine_gauges) / sizeof(engine_gauges[0]));
    return engine_gauges;
}

const sp_dims_t *sp_family_dims(const sp_family_t *f, const sp_config_t *cfg) {
    return (const sp_dims_t *)((const char *)cfg + f->dims_off);
}
#define ALL_FAMS ((1u << NFAM) - 1)

static const sp_entity_kind_t *const kinds[SP_KIND__COUNT] = {
    &sp_kind_session, &sp_kind_order,    &sp_kind_cart,
    &sp_kind_shipment, &sp_kind_ticket, &sp_kind_customer};

#define TIMER_FETCH_MAX 5000 /* due timers read per round trip */
#define TIMER_REFIRE_MAX 8   /* on_timer calls per entity per batch */

typedef struct part {
    int topic_idx;
    int32_t partition;
    int64_t max_et;     /* -1: nothing seen */
    int64_t last_wall;  /* wall ms of its last event (or assignment) */
    int64_t lag;        /* -1 unknown */
} part_t;

typedef struct win {
    int64_t start;
    int dirty;
    unsigned closed;  /* families that closed this window (their block freed) */
    unsigned closing; /* families queued to close it in the next commit */
    void *fam[NFAM];  /* NULL until used, and once closed */
} win_t;

typedef struct wcache { /* the last window computed, per size */
    int64_t lo, hi, idx;
    int valid;
} wcache_t;

typedef struct closing {
    int fam;
    int size_idx;
    int64_t start;
    win_t *w; /* NULL: not in memory */
} closing_t;

struct sp_engine {
    const sp_config_t *cfg;
    char prefix[96]; /* sp:{NS} */
    char final_key[NFAM][SP_MAX_WINDOWS][128];
    char latest_key[NFAM][SP_MAX_WINDOWS][128];
    char first_key[SP_MAX_WINDOWS][128];
    int64_t close_delay[NFAM];
    char size_name[SP_MAX_WINDOWS][16];

    /* watermark */
    part_t *parts;
    int npart, part_cap;
    int last_part;
    int64_t watermark; /* INT64_MIN until known */
    int64_t use_et;    /* event time of the event being applied (INT64_MIN: none) */
    int64_t now_ms;    /* wall time of the last advance() */

    /* windows */
    win_t **open[SP_MAX_WINDOWS]; /* grows: bounded by event time limits */
    int nopen[SP_MAX_WINDOWS], capopen[SP_MAX_WINDOWS];
    int open_hint[SP_MAX_WINDOWS][2]; /* indexes of the last windows found */
    int64_t final_start[NFAM][SP_MAX_WINDOWS]; /* -1 none */
    int64_t latest_start[SP_MAX_WINDOWS];
    int64_t latest_committed[SP_MAX_WINDOWS];
    int finals_moved;
    int64_t first_start[SP_MAX_WINDOWS]; /* earliest window ever opened (-1 none) */
    closing_t *closing;
    int nclosing, closing_cap;

    /* interned dimension values */
    uint64_t *ihash;   /* open addressing: hash per slot, 0 = empty */
    uint32_t *iid;     /* id per slot */
    sp_str_t *istr;    /* id -> string */
    uint32_t icount;   /* ids 1..icount used */
    uint32_t icap;     /* slots (power of two) */
    sp_arena_t *iarena;

    /* entity cache */
    sp_entity_t **buckets;
    size_t nbuckets, nentities;
    size_t nkind[SP_KIND__COUNT]; /* cached entities per kind */
    sp_entity_t *lru_head, *lru_tail;
    sp_entity_t **dirty;
    size_t ndirty, dirty_cap;

    /* want list (prefetch) */
    sp_entity_t **want;
    const char **want_keys;
    size_t *want_lens;
    int nwant, want_cap;

    int local_tz; /* day windows follow windows.timezone */
    wcache_t wc[SP_MAX_WINDOWS];

    /* timers, gauges, health and other increments of the next commit */
    char timers_key[128];
    char state_prefix[112]; /* sp:{NS}:state: */
    int64_t next_due;       /* lowest armed timer known (INT64_MAX: none) */
    struct incr { char key[128]; char field[160]; int64_t delta; } *incrs;
    int nincr, incr_cap;

    char keybuf[512];
    char kind_prefix[SP_KIND__COUNT][128];
    size_t kind_prefix_len[SP_KIND__COUNT];
    char *encbuf;
    size_t enccap;
};

/* ------------------------------------------------------------------ */

const sp_config_t *sp_engine_cfg(const sp_engine_t *e) { return e->cfg; }
int sp_engine_size_count(const sp_engine_t *e) { return e->cfg->window_cnt; }

/* ---- window arithmetic ---------------------------------------------
 * Sizes that are whole days are aligned to local midnights of
 * windows.timezone (so a day window is 23, 24 or 25 hours long); every other
 * size is aligned to the UTC epoch. A window's index is start / size for
 * epoch windows and local days since 1970-01-01 / days for day windows. The
 * zone is applied process-wide (TZ + tzset) once, in sp_engine_new. */

#define DAY_MS 86400000LL

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_local_days(const sp_engine_t *e, int i) {
    return e->local_tz && e->cfg->window_ms[i] % DAY_MS == 0;
}

/* Local day number of t (ms). */
static int64_t local_day(int64_t t) {
    time_t sec = (time_t)(t >= 0 ? t / 1000 : (t - 999) / 1000);
    struct tm tm;
    localtime_r(&sec, &tm);
    return days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday);
}

/* First instant (ms) of local day number dn. */
static int64_t local_midnight(int64_t dn) {
    int64_t y;
    unsigned m, d;
    struct tm tm;
    civil_from_days(dn, &y, &m, &d);
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (int)(y - 1900);
    tm.tm_mon = (int)m - 1;
    tm.tm_mday = (int)d;
    tm.tm_isdst = -1; /* a midnight skipped by DST normalises to the first instant */
    return (int64_t)mktime(&tm) * 1000;
}

/* Fill the size's cache with the window holding t. */
static void window_of(sp_engine_t *e, int i, int64_t t) {
    wcache_t *c = &e->wc[i];
    if (c->valid && t >= c->lo && t < c->hi) return;
    int64_t sz = e->cfg->window_ms[i];
    if (is_local_days(e, i)) {
        int64_t nd = sz / DAY_MS, dn = local_day(t);
        int64_t q = dn >= 0 ? dn / nd : -((-dn + nd - 1) / nd);
        c->idx = q;
        c->lo = local_midnight(q * nd);
        c->hi = local_midnight((q + 1) * nd);
        if (t < c->lo) { /* guard against a zone database oddity */
            c->hi = c->lo;
            c->lo = local_midnight((q - 1) * nd);
            c->idx = q - 1;
        }
    } else {
        int64_t q = t / sz;
        if (t < 0 && q * sz != t) q--;
        c->idx = q;
        c->lo = q * sz;
        c->hi = c->lo + sz;
    }
    c->valid = 1;
}

int64_t sp_engine_window_start(sp_engine_t *e, int size_idx, int64_t t) {
    window_of(e, size_idx, t);
    return e->wc[size_idx].lo;
}

int64_t sp_engine_window_end(sp_engine_t *e, int size_idx, int64_t start) {
    window_of(e, size_idx, start);
    return e->wc[size_idx].hi;
}

int64_t sp_engine_window_index(sp_engine_t *e, int size_idx, int64_t t) {
    window_of(e, size_idx, t);
    return e->wc[size_idx].idx;
}

sp_engine_t *sp_engine_new(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    sp_engine_t *e = calloc(1, sizeof(*e));
    if (!e) goto oom;
    e->cfg = cfg;
    snprintf(e->prefix, sizeof(e->prefix), "sp:{%s}", cfg->ns);
    if (cfg->timezone[0] && strcmp(cfg->timezone, "UTC") != 0 && strcmp(cfg->timezone, "Etc/UTC") != 0) {
        char zpath[256];
        snprintf(zpath, sizeof(zpath), "/usr/share/zoneinfo/%s", cfg->timezone);
        if (cfg->timezone[0] != '/' && access(zpath, R_OK) != 0) {
            snprintf(errstr, errstr_size, "windows.timezone '%s': no such zone in /usr/share/zoneinfo",
                     cfg->timezone);
            free(e);
            return NULL;
        }
        setenv("TZ", cfg->timezone, 1);
        tzset();
        e->local_tz = 1;
    }
    for (int i = 0; i < cfg->window_cnt; i++) {
        sp_duration_format(cfg->window_ms[i], e->size_name[i], sizeof(e->size_name[i]));
        for (int f = 0; f < NFAM; f++) {
            snprintf(e->final_key[f][i], sizeof(e->final_key[f][i]), "%s:final:%s:%s", e->prefix,
                     families[f]->name, e->size_name[i]);
            snprintf(e->latest_key[f][i], sizeof(e->latest_key[f][i]), "%s:latest:%s:%s",
                     e->prefix, families[f]->name, e->size_name[i]);
            e->final_start[f][i] = -1;
        }
        snprintf(e->first_key[i], sizeof(e->first_key[i]), "%s:first:funnel:%s", e->prefix,
                 e->size_name[i]);
        e->first_start[i] = -1;
        e->latest_start[i] = e->latest_committed[i] = -1;
    }
    for (int f = 0; f < NFAM; f++)
        e->close_delay[f] = families[f]->close_delay ? families[f]->close_delay(cfg) : 0;
    snprintf(e->timers_key, sizeof(e->timers_key), "%s:state:timers", e->prefix);
    snprintf(e->state_prefix, sizeof(e->state_prefix), "%s:state:", e->prefix);
    e->next_due = INT64_MAX;
    for (int k = 0; k < SP_KIND__COUNT; k++) {
        int n = snprintf(e->kind_prefix[k], sizeof(e->kind_prefix[k]), "%s:state:%s:", e->prefix,
                         kinds[k]->name);
        e->kind_prefix_len[k] = n > 0 ? (size_t)n : 0;
    }
    e->watermark = INT64_MIN;
    e->use_et = INT64_MIN;
    e->icap = 1024;
    e->ihash = calloc(e->icap, sizeof(*e->ihash));
    e->iid = calloc(e->icap, sizeof(*e->iid));
    e->istr = calloc(INTERN_MAX + 1, sizeof(*e->istr));
    e->iarena = sp_arena_new(64 * 1024);
    e->nbuckets = 1024;
    e->buckets = calloc(e->nbuckets, sizeof(*e->buckets));
    e->enccap = 4096;
    e->encbuf = malloc(e->enccap);
    if (!e->ihash || !e->iid || !e->istr || !e->iarena || !e->buckets || !e->encbuf) goto oom;
    e->istr[0].p = SP_OTHER;
    e->istr[0].len = (uint32_t)strlen(SP_OTHER);
    return e;
oom:
    snprintf(errstr, errstr_size, "out of memory creating the engine");
    sp_engine_destroy(e);
    return NULL;
}

static void block_free(int f, void *block) {
    if (block && families[f]->release) families[f]->release(block);
    free(block);
}

static void win_free(win_t *w) {
    if (!w) return;
    for (int f = 0; f < NFAM; f++) block_free(f, w->fam[f]);
    free(w);
}

static void cache_clear(sp_engine_t *e) {
    for (size_t b = 0; b < e->nbuckets; b++) {
        sp_entity_t *en = e->buckets[b];
        while (en) {
            sp_entity_t *n = en->hnext;
            if (kinds[en->kind]->release) kinds[en->kind]->release(en->data);
            free(en);
            en = n;
        }
        e->buckets[b] = NULL;
    }
    e->nentities = 0;
    memset(e->nkind, 0, sizeof(e->nkind));
    e->lru_head = e->lru_tail = NULL;
    e->ndirty = 0;
    e->nwant = 0;
}

static void windows_clear(sp_engine_t *e) {
    for (int i = 0; i < SP_MAX_WINDOWS; i++) {
        for (int j = 0; j < e->nopen[i]; j++) win_free(e->open[i][j]);
        e->nopen[i] = 0;
    }
    /* Windows queued for closing are still on the open lists. */
    e->nclosing = 0;
}

void sp_engine_destroy(sp_engine_t *e) {
    if (!e) return;
    cache_clear(e);
    windows_clear(e);
    for (int i = 0; i < SP_MAX_WINDOWS; i++) free(e->open[i]);
    free(e->buckets);
    free(e->ihash);
    free(e->iid);
    free(e->istr);
    sp_arena_destroy(e->iarena);
    free(e->parts);
    free(e->closing);
    free(e->dirty);
    free(e->want);
    free(e->want_keys);
    free(e->want_lens);
    free(e->encbuf);
    free(e->incrs);
    free(e);
}

void sp_engine_reset(sp_engine_t *e) {
    cache_clear(e);
    windows_clear(e);
    e->npart = 0;
    e->last_part = 0;
    e->watermark = e->use_et = INT64_MIN;
    for (int i = 0; i < SP_MAX_WINDOWS; i++) {
        for (int f = 0; f < NFAM; f++) e->final_start[f][i] = -1;
        e->latest_start[i] = e->latest_committed[i] = e->first_start[i] = -1;
    }
    e->finals_moved = 0;
    e->nincr = 0;
    e->next_due = INT64_MAX;
}

/* ---- interning ----------------------------------------------------- */

static int intern_grow(sp_engine_t *e) {
    uint32_t ncap = e->icap * 2;
    uint64_t *nh = calloc(ncap, sizeof(*nh));
    uint32_t *ni = calloc(ncap, sizeof(*ni));
    if (!nh || !ni) {
        free(nh);
        free(ni);
        return -1;
    }
    for (uint32_t s = 0; s < e->icap; s++) {
        if (!e->ihash[s]) continue;
        uint32_t j = (uint32_t)e->ihash[s] & (ncap - 1);
        while (nh[j]) j = (j + 1) & (ncap - 1);
        nh[j] = e->ihash[s];
        ni[j] = e->iid[s];
    }
    free(e->ihash);
    free(e->iid);
    e->ihash = nh;
    e->iid = ni;
    e->icap = ncap;
    return 0;
}

uint32_t sp_engine_intern(sp_engine_t *e, const char *p, size_t len) {
    uint64_t h = sp_hash64(p, len, 0x5eed) | 1; /* never 0 */
    uint32_t j = (uint32_t)h & (e->icap - 1);
    while (e->ihash[j]) {
        if (e->ihash[j] == h) {
            sp_str_t *s = &e->istr[e->iid[j]];
            if (s->len == len && memcmp(s->p, p, len) == 0) return e->iid[j];
        }
        j = (j + 1) & (e->icap - 1);
    }
    if (e->icount >= INTERN_MAX) return 0;
    if ((e->icount + 1) * 2 > e->icap) {
        if (intern_grow(e) != 0) return 0;
        return sp_engine_intern(e, p, len);
    }
    sp_str_t s = sp_arena_strdup(e->iarena, p, len);
    if (!s.p) return 0;
    e->icount++;
    e->istr[e->icount] = s;
    e->ihash[j] = h;
    e->iid[j] = e->icount;
    return e->icount;
}

const char *sp_engine_interned(const sp_engine_t *e, uint32_t id, size_t *len) {
    if (id > e->icount) id = 0;
    *len = e->istr[id].len;
    return e->istr[id].p;
}

/* ---- entity cache -------------------------------------------------- */

static void lru_unlink(sp_engine_t *e, sp_entity_t *en) {
    if (en->lprev) en->lprev->lnext = en->lnext;
    else e->lru_head = en->lnext;
    if (en->lnext) en->lnext->lprev = en->lprev;
    else e->lru_tail = en->lprev;
    en->lprev = en->lnext = NULL;
}

/* An entity is used now: at the event time of the event being applied, or
 * at the watermark (a timer), whichever is later. */
static void entity_used(sp_engine_t *e, sp_entity_t *en) {
    en->used_wm = e->use_et > e->watermark ? e->use_et : e->watermark;
}

static void lru_push_front(sp_engine_t *e, sp_entity_t *en) {
    entity_used(e, en);
    en->lprev = NULL;
    en->lnext = e->lru_head;
    if (e->lru_head) e->lru_head->lprev = en;
    e->lru_head = en;
    if (!e->lru_tail) e->lru_tail = en;
}

/* "sp:{NS}:state:<kind>:<id>" into keybuf; the prefix per kind is built once. */
static int build_key(sp_engine_t *e, int kind, sp_str_t id) {
    size_t n = e->kind_prefix_len[kind];
    if (n + id.len >= sizeof(e->keybuf)) return -1;
    memcpy(e->keybuf, e->kind_prefix[kind], n);
    memcpy(e->keybuf + n, id.p, id.len);
    e->keybuf[n + id.len] = '\0';
    return (int)(n + id.len);
}

static sp_entity_t *cache_find(sp_engine_t *e, uint64_t h, const char *key, size_t len) {
    for (sp_entity_t *en = e->buckets[h & (e->nbuckets - 1)]; en; en = en->hnext)
        if (en->hash == h && en->keylen == len && memcmp(en->key, key, len) == 0) return en;
    return NULL;
}

static void cache_grow(sp_engine_t *e) {
    size_t nb = e->nbuckets * 2;
    sp_entity_t **b = calloc(nb, sizeof(*b));
    if (!b) return; /* keep the longer chains */
    for (size_t i = 0; i < e->nbuckets; i++) {
        sp_entity_t *en = e->buckets[i];
        while (en) {
            sp_entity_t *n = en->hnext;
            size_t j = en->hash & (nb - 1);
            en->hnext = b[j];
            b[j] = en;
            en = n;
        }
    }
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = nb;
}

static void cache_remove(sp_engine_t *e, sp_entity_t *en) {
    sp_entity_t **pp = &e->buckets[en->hash & (e->nbuckets - 1)];
    while (*pp && *pp != en) pp = &(*pp)->hnext;
    if (*pp) *pp = en->hnext;
    lru_unlink(e, en);
    e->nentities--;
    e->nkind[en->kind]--;
    if (kinds[en->kind]->release) kinds[en->kind]->release(en->data);
    free(en);
}

static int grow_ptrs(void ***arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 256;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

void sp_engine_want_entity(sp_engine_t *e, int kind, sp_str_t id) {
    if (!id.p) return;
    int len = build_key(e, kind, id);
    if (len < 0) return;
    uint64_t h = sp_hash64(e->keybuf, (size_t)len, 0);
    sp_entity_t *en = cache_find(e, h, e->keybuf, (size_t)len);
    if (en) return;
    size_t sz = sizeof(*en) + kinds[kind]->size + (size_t)len + 1;
    en = calloc(1, sz);
    if (!en) return; /* apply() will see it missing and skip the entity */
    en->hash = h;
    en->kind = (uint8_t)kind;
    en->keylen = (uint16_t)len;
    en->absent = 1;
    en->timer_at = -1;
    en->key = (char *)en->data + kinds[kind]->size;
    memcpy(en->key, e->keybuf, (size_t)len + 1);
    size_t b = h & (e->nbuckets - 1);
    en->hnext = e->buckets[b];
    e->buckets[b] = en;
    lru_push_front(e, en);
    e->nkind[kind]++;
    if (++e->nentities > e->nbuckets) cache_grow(e);

    size_t cap = (size_t)e->want_cap;
    size_t c1 = cap, c2 = cap, c3 = cap;
    if (grow_ptrs((void ***)&e->want, &c1, (size_t)e->nwant + 1, sizeof(*e->want)) ||
        grow_ptrs((void ***)&e->want_keys, &c2, (size_t)e->nwant + 1, sizeof(*e->want_keys)) ||
        grow_ptrs((void ***)&e->want_lens, &c3, (size_t)e->nwant + 1, sizeof(*e->want_lens))) {
        cache_remove(e, en);
        return;
    }
    e->want_cap = (int)c1;
    e->want[e->nwant] = en;
    e->want_keys[e->nwant] = en->key;
    e->want_lens[e->nwant] = en->keylen;
    e->nwant++;
}

sp_entity_t *sp_engine_entity(sp_engine_t *e, int kind, sp_str_t id) {
    if (!id.p) return NULL;
    int len = build_key(e, kind, id);
    if (len < 0) return NULL;
    uint64_t h = sp_hash64(e->keybuf, (size_t)len, 0);
    sp_entity_t *en = cache_find(e, h, e->keybuf, (size_t)len);
    if (en && en != e->lru_head) {
        lru_unlink(e, en);
        lru_push_front(e, en);
    } else if (en) {
        entity_used(e, en);
    }
    return en;
}

void sp_engine_touch(sp_engine_t *e, sp_entity_t *en) {
    if (en->dirty) return;
    size_t cap = e->dirty_cap;
    if (grow_ptrs((void ***)&e->dirty, &cap, e->ndirty + 1, sizeof(*e->dirty)) != 0) return;
    e->dirty_cap = cap;
    en->dirty = 1;
    e->dirty[e->ndirty++] = en;
}

void sp_engine_want(sp_engine_t *e, const sp_event_t *ev) {
    for (int f = 0; f < NFAM; f++) families[f]->want(e, ev);
}

int sp_engine_want_count(const sp_engine_t *e) { return e->nwant; }

const char *const *sp_engine_want_keys(const sp_engine_t *e, const size_t **lens) {
    *lens = e->want_lens;
    return e->want_keys;
}

void sp_engine_fetched(sp_engine_t *e, int idx, const char *val, size_t len) {
    if (idx < 0 || idx >= e->nwant) return;
    sp_entity_t *en = e->want[idx];
    if (!val) return; /* absent: stays new */
    if (kinds[en->kind]->decode(e, val, len, en->data) == 0) {
        en->absent = 0;
        /* the committed timer is a function of the committed state */
        if (kinds[en->kind]->timer) en->timer_at = kinds[en->kind]->timer(e, en->data);
    } else {
        if (kinds[en->kind]->release) kinds[en->kind]->release(en->data);
        memset(en->data, 0, kinds[en->kind]->size);
        sp_log(SP_LOG_WARN, "corrupt entity state at %s: starting it afresh", en->key);
    }
}

/* ---- watermark ----------------------------------------------------- */

static part_t *part_find(sp_engine_t *e, int topic_idx, int32_t partition) {
    if (e->last_part < e->npart && e->parts[e->last_part].topic_idx == topic_idx &&
        e->parts[e->last_part].partition == partition)
        return &e->parts[e->last_part];
    for (int i = 0; i < e->npart; i++)
        if (e->parts[i].topic_idx == topic_idx && e->parts[i].partition == partition) {
            e->last_part = i;
            return &e->parts[i];
        }
    return NULL;
}

void sp_engine_partition_add(sp_engine_t *e, int topic_idx, int32_t partition, int64_t max_et,
                             int64_t now_ms) {
    part_t *p = part_find(e, topic_idx, partition);
    if (!p) {
        if (e->npart == e->part_cap) {
            int nc = e->part_cap ? e->part_cap * 2 : 64;
            part_t *np = realloc(e->parts, (size_t)nc * sizeof(*np));
            if (!np) return;
            e->parts = np;
            e->part_cap = nc;
        }
        p = &e->parts[e->npart++];
    }
    p->topic_idx = topic_idx;
    p->partition = partition;
    p->max_et = max_et;
    p->last_wall = now_ms;
    p->lag = -1;
    if (now_ms > e->now_ms) e->now_ms = now_ms;
}

void sp_engine_partition_remove(sp_engine_t *e, int topic_idx, int32_t partition) {
    part_t *p = part_find(e, topic_idx, partition);
    if (!p) return;
    *p = e->parts[--e->npart];
    e->last_part = 0;
}

void sp_engine_partition_lag(sp_engine_t *e, int topic_idx, int32_t partition, int64_t lag) {
    part_t *p = part_find(e, topic_idx, partition);
    if (p) p->lag = lag;
}

int64_t sp_engine_partition_max_et(const sp_engine_t *e, int topic_idx, int32_t partition) {
    for (int i = 0; i < e->npart; i++)
        if (e->parts[i].topic_idx == topic_idx && e->parts[i].partition == partition)
            return e->parts[i].max_et;
    return -1;
}

int sp_engine_pointer_keys(const sp_engine_t *e, const char **keys) {
    int n = 0;
    for (int f = 0; f < NFAM; f++)
        for (int i = 0; i < e->cfg->window_cnt; i++) keys[n++] = e->final_key[f][i];
    for (int i = 0; i < e->cfg->window_cnt; i++) keys[n++] = e->first_key[i];
    return n;
}

void sp_engine_restore(sp_engine_t *e, int64_t watermark, const int64_t *vals) {
    int n = 0, nsz = e->cfg->window_cnt;
    if (watermark > e->watermark) e->watermark = watermark;
    for (int f = 0; f < NFAM; f++)
        for (int i = 0; i < nsz; i++) {
            int64_t v = vals[n++];
            /* A family without a pointer yet (new in this version) starts
             * where the funnel is, less its own delay's worth of windows. */
            if (v < 0 && f > 0 && e->close_delay[f] == 0) v = e->final_start[0][i];
            e->final_start[f][i] = v;
            if (v > e->latest_start[i]) e->latest_start[i] = v;
        }
    for (int i = 0; i < nsz; i++) {
        int64_t v = vals[n++];
        if (v >= 0 && (e->first_start[i] < 0 || v < e->first_start[i])) e->first_start[i] = v;
    }
}

void sp_engine_restore_timers(sp_engine_t *e, int64_t next_due) { e->next_due = next_due; }

int64_t sp_engine_watermark(const sp_engine_t *e) { return e->watermark; }

void sp_engine_set_now(sp_engine_t *e, int64_t now_ms) {
    if (now_ms > e->now_ms) e->now_ms = now_ms;
}

void sp_engine_forget_entities(sp_engine_t *e) {
    /* Dirty entities here belong to a batch that failed and is replayed. */
    cache_clear(e);
}
int64_t sp_engine_final_start(const sp_engine_t *e, int size_idx) {
    return e->final_start[SP_FAM_FUNNEL][size_idx];
}

int64_t sp_engine_first_start(const sp_engine_t *e, int size_idx) {
    return e->first_start[size_idx];
}

int64_t sp_engine_family_final_start(const sp_engine_t *e, int fam, int size_idx) {
    return e->final_start[fam][size_idx];
}

/* ---- windows ------------------------------------------------------- */

static win_t *win_get(sp_engine_t *e, int size_idx, int64_t start) {
    /* Events come nearly in time order: the window of the one before, or
     * the one before that (partitions a little apart), most of the time.
     * Many windows are open while late families wait (delivery, retention),
     * so a scan of all of them per event is what this spares. */
    int *hint = e->open_hint[size_idx], n = e->nopen[size_idx];
    win_t **open = e->open[size_idx];
    for (int k = 0; k < 2; k++)
        if (hint[k] < n && open[hint[k]]->start == start) return open[hint[k]];
    for (int j = n - 1; j >= 0; j--)
        if (open[j]->start == start) {
            hint[1] = hint[0];
            hint[0] = j;
            return open[j];
        }
    if (e->nopen[size_idx] == e->capopen[size_idx]) {
        int nc = e->capopen[size_idx] ? e->capopen[size_idx] * 2 : 16;
        win_t **no = realloc(e->open[size_idx], (size_t)nc * sizeof(*no));
        if (!no) return NULL;
        e->open[size_idx] = no;
        e->capopen[size_idx] = nc;
    }
    win_t *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->start = start;
    /* Re-opened behind a family's final pointer (after a restart, for a late
     * decision): that family is closed there already. */
    for (int f = 0; f < NFAM; f++)
        if (e->final_start[f][size_idx] >= 0 && start <= e->final_start[f][size_idx])
            w->closed |= 1u << f;
    e->open_hint[size_idx][1] = e->open_hint[size_idx][0];
    e->open_hint[size_idx][0] = e->nopen[size_idx];
    e->open[size_idx][e->nopen[size_idx]++] = w;
    if (e->first_start[size_idx] < 0 || start < e->first_start[size_idx])
        e->first_start[size_idx] = start;
    return w;
}

int sp_engine_open_windows(const sp_engine_t *e) {
    int n = 0;
    for (int i = 0; i < e->cfg->window_cnt; i++) n += e->nopen[i];
    return n;
}

/* A family's block of a window, allocated on first use; NULL when closed. */
static void *fam_block(win_t *w, int f) {
    if (w->closed & (1u << f)) return NULL;
    if (!w->fam[f]) w->fam[f] = calloc(1, families[f]->win_size);
    return w->fam[f];
}

void *sp_engine_block(sp_engine_t *e, int fam, int size_idx, int64_t t) {
    int64_t ws = sp_engine_window_start(e, size_idx, t);
    int64_t fin = e->final_start[fam][size_idx];
    if (fin >= 0 && ws <= fin) return NULL;
    win_t *w = win_get(e, size_idx, ws);
    if (!w) return NULL;
    void *b = fam_block(w, fam);
    if (b) {
        w->dirty = 1;
        if (ws > e->latest_start[size_idx]) e->latest_start[size_idx] = ws;
    }
    return b;
}

int sp_engine_admit(sp_engine_t *e, const sp_event_t *ev) {
    int64_t ws = sp_engine_window_start(e, 0, ev->i[SP_I_EVENT_TIME]);
    int64_t fin = e->final_start[SP_FAM_FUNNEL][0];
    if (fin >= 0 && ws <= fin) return SP_ERR_LATE;
    return SP_OK;
}

int sp_engine_apply(sp_engine_t *e, const sp_event_t *ev) {
    win_t *ws[SP_MAX_WINDOWS];
    int64_t t = ev->i[SP_I_EVENT_TIME];
    int rc = SP_OK;

    for (int i = 0; i < e->cfg->window_cnt; i++) {
        ws[i] = win_get(e, i, sp_engine_window_start(e, i, t));
        if (!ws[i]) return SP_ERR_NOMEM;
    }
    e->use_et = t;
    for (int f = 0; f < NFAM; f++) {
        void *fw[SP_MAX_WINDOWS];
        for (int i = 0; i < e->cfg->window_cnt; i++) {
            /* an admitted event's windows are open for every family */
            fw[i] = fam_block(ws[i], f);
            if (!fw[i]) return SP_ERR_NOMEM;
        }
        int r = families[f]->apply(e, ev, fw);
        if (r == SP_ERR_DUPLICATE) { /* a duplicate fact: no family counts it */
            e->use_et = INT64_MIN;
            return r;
        }
        if (r != SP_OK) rc = r;
    }
    for (int i = 0; i < e->cfg->window_cnt; i++) {
        ws[i]->dirty = 1;
        if (ws[i]->start > e->latest_start[i]) e->latest_start[i] = ws[i]->start;
    }
    e->use_et = INT64_MIN;
    part_t *p = part_find(e, ev->topic_idx, ev->partition);
    if (p) {
        if (t > p->max_et) p->max_et = t;
        p->last_wall = e->now_ms;
    }
    return rc;
}

static int close_family(sp_engine_t *e, int f, int i, int budget);

/* Watermark from partitions; then queue closes. */
void sp_engine_update_watermark(sp_engine_t *e, int64_t now_ms) {
    const sp_config_t *cfg = e->cfg;
    int64_t cand = INT64_MAX;
    int all_idle = 1;

    e->now_ms = now_ms;
    for (int i = 0; i < e->npart; i++) {
        part_t *p = &e->parts[i];
        int idle = p->lag == 0 && now_ms - p->last_wall >= cfg->idle_timeout_ms;
        if (idle) continue;
        all_idle = 0;
        if (p->max_et < 0) {
            cand = e->watermark; /* holds the watermark where it is */
            break;
        }
        int64_t w = p->max_et - cfg->max_out_of_orderness_ms;
        if (w < cand) cand = w;
    }
    if (e->npart > 0 && all_idle) cand = now_ms - cfg->max_out_of_orderness_ms;
    if (e->npart > 0 && cand != INT64_MAX && cand > e->watermark) {
        if (e->watermark == INT64_MIN) /* the first one: entities used before it count from it */
            for (sp_entity_t *en = e->lru_tail; en && en->used_wm == INT64_MIN; en = en->lprev)
                en->used_wm = cand;
        e->watermark = cand;
    }
}

int sp_engine_close(sp_engine_t *e) {
    int closed = 0;
    if (e->watermark == INT64_MIN) return 0;
    for (int f = 0; f < NFAM; f++)
        for (int i = 0; i < e->cfg->window_cnt && closed < CLOSE_MAX_PER_TICK; i++) {
            int r = close_family(e, f, i, CLOSE_MAX_PER_TICK - closed);
            if (r < 0) return closed;
            closed += r;
        }
    return closed;
}

int sp_engine_advance(sp_engine_t *e, int64_t now_ms) {
    sp_engine_update_watermark(e, now_ms);
    return sp_engine_close(e);
}

/* Queue the closes of family f's windows of size i that the watermark
 * passed (end + allowed_lateness + the family's delay); at most budget. */
static int close_family(sp_engine_t *e, int f, int i, int budget) {
    const sp_config_t *cfg = e->cfg;
    int64_t next, lag = cfg->allowed_lateness_ms + e->close_delay[f];
    int64_t wm = e->watermark;
    int closed = 0;

    /* A family whose windows receive timer decisions (close delay) closes
     * no window a timer still due could reach: a timer due at d decides for
     * a window ending after d - delay. */
    if (e->close_delay[f] > 0 && e->next_due < wm) wm = e->next_due;

    if (e->final_start[f][i] >= 0) {
        next = sp_engine_window_end(e, i, e->final_start[f][i]);
    } else {
        /* Nothing final yet: from the earliest window ever opened (also by an
         * earlier process: the first pointer in Redis). */
        next = e->first_start[i] >= 0 ? e->first_start[i] : INT64_MAX;
        for (int j = 0; j < e->nopen[i]; j++)
            if (e->open[i][j]->start < next) next = e->open[i][j]->start;
        if (next == INT64_MAX) return 0;
    }
    /* Skip windows that would expire at once. */
    int64_t oldest = sp_engine_window_start(e, i, wm - lag - cfg->window_ttl_ms[i]);
    if (next < oldest) {
        int has_open_before = 0;
        for (int j = 0; j < e->nopen[i]; j++)
            if (e->open[i][j]->start < oldest && !(e->open[i][j]->closed & (1u << f)))
                has_open_before = 1;
        if (!has_open_before) next = oldest;
    }
    while (sp_engine_window_end(e, i, next) + lag <= wm && closed < budget) {
        win_t *w = NULL;
        for (int j = 0; j < e->nopen[i]; j++)
            if (e->open[i][j]->start == next) {
                w = e->open[i][j];
                break;
            }
        if (e->nclosing == e->closing_cap) {
            int nc = e->closing_cap ? e->closing_cap * 2 : 256;
            closing_t *np = realloc(e->closing, (size_t)nc * sizeof(*np));
            if (!np) return -1; /* try again next tick */
            e->closing = np;
            e->closing_cap = nc;
        }
        if (w) w->closing |= 1u << f;
        e->closing[e->nclosing++] = (closing_t){f, i, next, w};
        e->final_start[f][i] = next;
        e->finals_moved = 1;
        if (next > e->latest_start[i]) e->latest_start[i] = next; /* zero-filled */
        next = sp_engine_window_end(e, i, next);
        closed++;
    }
    return closed;
}

/* ---- commit -------------------------------------------------------- */

static void emit_window(sp_engine_t *e, sp_commit_t *c, int f, int i, int64_t start, void *blk,
                        int closing) {
    char key[192];
    snprintf(key, sizeof(key), "%s:%s:%s:%lld", e->prefix, families[f]->name, e->size_name[i],
             (long long)start);
    sp_commit_hash(c, key, e->cfg->window_ttl_ms[i]);
    families[f]->emit(e, blk, closing, c);
    if (closing) sp_commit_hset(c, "closed", "1");
}

static void win_unlink(sp_engine_t *e, int i, win_t *w) {
    for (int j = 0; j < e->nopen[i]; j++)
        if (e->open[i][j] == w) {
            e->open[i][j] = e->open[i][--e->nopen[i]];
            return;
        }
}

int sp_engine_build_commit(sp_engine_t *e, sp_commit_t *c) {
    const sp_config_t *cfg = e->cfg;

    /* Deltas of open windows (those closing now are emitted below). */
    for (int i = 0; i < cfg->window_cnt; i++)
        for (int j = 0; j < e->nopen[i]; j++) {
            win_t *w = e->open[i][j];
            if (!w->dirty) continue;
            for (int f = 0; f < NFAM; f++)
                if (w->fam[f] && !((w->closed | w->closing) & (1u << f)))
                    emit_window(e, c, f, i, w->start, w->fam[f], 0);
            w->dirty = 0;
        }
    /* Closes (with their last deltas) and zero-fills. */
    for (int k = 0; k < e->nclosing; k++) {
        closing_t *cl = &e->closing[k];
        win_t *w = cl->w;
        emit_window(e, c, cl->fam, cl->size_idx, cl->start, w ? w->fam[cl->fam] : NULL, 1);
        if (!w) continue;
        block_free(cl->fam, w->fam[cl->fam]);
        w->fam[cl->fam] = NULL;
        w->closed |= 1u << cl->fam;
        w->closing &= ~(1u << cl->fam);
        if ((w->closed & ALL_FAMS) == ALL_FAMS) {
            win_unlink(e, cl->size_idx, w);
            win_free(w);
        }
    }
    if (e->finals_moved) {
        for (int f = 0; f < NFAM; f++)
            for (int i = 0; i < cfg->window_cnt; i++)
                if (e->final_start[f][i] >= 0)
                    sp_commit_max(c, e->final_key[f][i], e->final_start[f][i]);
        e->finals_moved = 0;
    }
    e->nclosing = 0;
    for (int i = 0; i < cfg->window_cnt; i++) {
        if (e->latest_start[i] >= 0 && e->latest_start[i] != e->latest_committed[i]) {
            for (int f = 0; f < NFAM; f++) sp_commit_max(c, e->latest_key[f][i], e->latest_start[i]);
            e->latest_committed[i] = e->latest_start[i];
        }
        if (e->first_start[i] >= 0 && e->final_start[SP_FAM_FUNNEL][i] < 0)
            sp_commit_min(c, e->first_key[i], e->first_start[i]);
    }

    /* Entities changed in this batch. */
    size_t plen = strlen(e->state_prefix);
    e->nwant = 0;
    for (size_t k = 0; k < e->ndirty; k++) {
        sp_entity_t *en = e->dirty[k];
        const sp_entity_kind_t *kd = kinds[en->kind];
        int64_t due = -1;
        if (en->deleted) {
            sp_commit_kv(c, en->key, NULL, 0, 0);
        } else {
            size_t n = kd->encode(e, en->data, e->encbuf, e->enccap);
            int64_t ttl = kd->ttl ? kd->ttl(e, en->data) : 0;
            sp_commit_kv(c, en->key, e->encbuf, n, ttl > 0 ? ttl : cfg->state_ttl_ms);
            if (kd->timer) due = kd->timer(e, en->data);
        }
        if (due != en->timer_at) {
            const char *member = en->key + plen;
            size_t mlen = en->keylen - plen;
            if (due >= 0) {
                sp_commit_zadd(c, e->timers_key, member, mlen, due);
                if (due < e->next_due) e->next_due = due;
            } else {
                sp_commit_zrem(c, e->timers_key, member, mlen);
            }
            en->timer_at = due;
        }
        en->dirty = 0;
        en->absent = 0;
        if (en->deleted) cache_remove(e, en);
    }
    e->ndirty = 0;

    for (int k = 0; k < e->nincr; k++) {
        struct incr *in = &e->incrs[k];
        if (in->delta) sp_commit_hincr(c, in->key, in->field, in->delta);
    }
    e->nincr = 0;

    /* Evict cold entities past the budget, and those unused for
     * state.cache_idle of event time (all are clean now). The LRU list is
     * in order of use, and the watermark never goes back, so the idle ones
     * are at its tail. Their state stays in Redis: the next event or timer
     * of one fetches it again. */
    while ((int64_t)e->nentities > cfg->state_cache_max && e->lru_tail)
        cache_remove(e, e->lru_tail);
    if (e->watermark != INT64_MIN)
        while (e->lru_tail && e->lru_tail->used_wm < e->watermark - cfg->state_cache_idle_ms)
            cache_remove(e, e->lru_tail);

    if (e->watermark != INT64_MIN) sp_commit_gauge(c, "watermark_ms", e->watermark);
    sp_commit_gauge(c, "open_windows", sp_engine_open_windows(e));
    sp_commit_gauge(c, "in_flight_entities", (int64_t)e->nentities);
    for (int k = 0; k < SP_KIND__COUNT; k++) {
        char name[64];
        snprintf(name, sizeof(name), "in_flight_entities|kind=%s", kinds[k]->name);
        sp_commit_gauge(c, name, (int64_t)e->nkind[k]);
    }
    return SP_OK;
}

void sp_engine_stats(const sp_engine_t *e, sp_engine_stats_t *out) {
    out->entities = (int64_t)e->nentities;
    out->open_windows = sp_engine_open_windows(e);
    out->dim_values = e->icount;
}

/* ---- services for families ------------------------------------------ */

const char *sp_engine_prefix(const sp_engine_t *e) { return e->prefix; }

void sp_engine_delete(sp_engine_t *e, sp_entity_t *en) {
    sp_engine_touch(e, en);
    en->deleted = 1;
}

void sp_engine_hincr(sp_engine_t *e, const char *key, const char *field, int64_t delta) {
    for (int k = 0; k < e->nincr; k++)
        if (strcmp(e->incrs[k].field, field) == 0 && strcmp(e->incrs[k].key, key) == 0) {
            e->incrs[k].delta += delta;
            return;
        }
    if (e->nincr == e->incr_cap) {
        int nc = e->incr_cap ? e->incr_cap * 2 : 32;
        struct incr *ni = realloc(e->incrs, (size_t)nc * sizeof(*ni));
        if (!ni) {
            sp_log(SP_LOG_ERROR, "out of memory: increment of %s %s lost", key, field);
            return;
        }
        e->incrs = ni;
        e->incr_cap = nc;
    }
    struct incr *in = &e->incrs[e->nincr++];
    snprintf(in->key, sizeof(in->key), "%s", key);
    snprintf(in->field, sizeof(in->field), "%s", field);
    in->delta = delta;
}

void sp_engine_gauge_add(sp_engine_t *e, const char *field, int64_t delta) {
    char key[128];
    snprintf(key, sizeof(key), "%s:gauges", e->prefix);
    sp_engine_hincr(e, key, field, delta);
}

void sp_engine_health_add(sp_engine_t *e, const char *field, int64_t delta) {
    char key[128];
    snprintf(key, sizeof(key), "%s:health", e->prefix);
    sp_engine_hincr(e, key, field, delta);
}

void sp_engine_local_date(const sp_engine_t *e, int64_t t, int *year, int *month, int *day) {
    time_t sec = (time_t)(t >= 0 ? t / 1000 : (t - 999) / 1000);
    struct tm tm;
    if (e->local_tz) localtime_r(&sec, &tm);
    else gmtime_r(&sec, &tm);
    *year = tm.tm_year + 1900;
    *month = tm.tm_mon + 1;
    *day = tm.tm_mday;
}

/* ---- timers --------------------------------------------------------- */

const char *sp_engine_timers_key(const sp_engine_t *e) { return e->timers_key; }
const char *sp_engine_state_prefix(const sp_engine_t *e) { return e->state_prefix; }

int64_t sp_engine_timers_due(const sp_engine_t *e) {
    if (e->watermark == INT64_MIN || e->next_due > e->watermark) return INT64_MIN;
    return e->watermark;
}

void sp_engine_timers_next(sp_engine_t *e, int64_t next_due) { e->next_due = next_due; }

void sp_engine_timer_fetched(sp_engine_t *e, const char *member, size_t mlen, int64_t score,
                             const char *val, size_t vlen) {
    int kind = -1;
    for (int k = 0; k < SP_KIND__COUNT; k++) {
        size_t n = strlen(kinds[k]->name);
        if (mlen > n && memcmp(member, kinds[k]->name, n) == 0 && member[n] == ':') {
            kind = k;
            break;
        }
    }
    if (kind < 0 || !kinds[kind]->on_timer) {
        sp_log(SP_LOG_WARN, "timer of an unknown entity kind: %.*s (dropped)", (int)mlen, member);
        return;
    }
    size_t n = strlen(kinds[kind]->name) + 1;
    sp_str_t id = {member + n, (uint32_t)(mlen - n)};
    sp_entity_t *en = sp_engine_entity(e, kind, id);
    if (!en) {
        sp_engine_want_entity(e, kind, id); /* creates it, absent */
        en = sp_engine_entity(e, kind, id);
        e->nwant = 0; /* not a prefetch: the value is here */
        if (!en) return;
        if (val && kinds[kind]->decode(e, val, vlen, en->data) == 0) en->absent = 0;
        en->timer_at = score;
        if (!val) { /* state expired under its timer: just drop the timer */
            sp_engine_delete(e, en);
            return;
        }
    }
    sp_engine_touch(e, en); /* the fire pass looks at touched entities */
}

int sp_engine_fire(sp_engine_t *e) {
    int fired = 0;
    if (e->watermark == INT64_MIN) return 0;
    for (size_t k = 0; k < e->ndirty; k++) { /* on_timer may touch more */
        sp_entity_t *en = e->dirty[k];
        const sp_entity_kind_t *kd = kinds[en->kind];
        if (!kd->timer || en->deleted) continue;
        for (int n = 0; n < TIMER_REFIRE_MAX; n++) {
            int64_t due = kd->timer(e, en->data);
            if (due < 0 || due > e->watermark) break;
            kd->on_timer(e, en);
            fired++;
            if (en->deleted) break;
        }
    }
    return fired;
}
