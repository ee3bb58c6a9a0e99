/* famkit.h -- the window block shared by the event-count families
 * (abandonment, delivery, retention, support): counters overall and per
 * dimension value, ratios, and duration histograms, emitted into the
 * family's window hash in the layout of docs/METRICS.md.
 *
 * A family describes its fields once (sp_fk_spec_t) and uses sp_fk_win_t
 * as its window block (family win_size = sizeof(sp_fk_win_t)). Deltas
 * accumulate in the block and are written by sp_fk_emit, which clears them.
 *
 * Per dimension at most max_dimension_values values per window (first come);
 * the rest count under __other__. A value missing from the event (SP_FK_NONE)
 * counts only overall. Histograms are kept overall (bucket fields, _count,
 * _sum_ms, _p50/_p90/_p99); per dimension value only _count and _sum_ms.
 * Durations come in whole milliseconds and their sums stay integers (the
 * _sum_ms fields): float sums would depend on how events fall into
 * batches, integer ones add up to the same bytes whatever the batches. */
#ifndef SP_FAMKIT_H
#define SP_FAMKIT_H

#include "aggregators/family.h"

#define SP_FK_MAXF   24  /* counters per family */
#define SP_FK_MAXH   3   /* histograms per family */
#define SP_FK_DIMS   3   /* dimensions per family */
#define SP_FK_VALUES 256 /* hard cap of metrics.max_dimension_values */
#define SP_FK_HSLOTS 512 /* distinct buckets per histogram and batch */
#define SP_FK_NONE   UINT32_MAX

/* Entity values are little endian: 8-byte integers. */
static inline void sp_put_i64(char *b, int64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (char)(((uint64_t)v >> (8 * i)) & 0xff);
}

static inline int64_t sp_get_i64(const char *b) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)(unsigned char)b[i] << (8 * i);
    return (int64_t)v;
}

/* a + b, saturated at the int64 limits (times far in the future). */
static inline int64_t sp_sat_add(int64_t a, int64_t b) {
    if (b > 0 && a > INT64_MAX - b) return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b) return INT64_MIN;
    return a + b;
}

typedef struct sp_fk_ratio {
    const char *name;
    char kind; /* store.h ratio kinds: 'r', 'p', 'f', 'a' */
    int num, den; /* counter indexes */
} sp_fk_ratio_t;

typedef struct sp_fk_spec {
    int nfields;
    const char *const *fields;
    int nratios;
    const sp_fk_ratio_t *ratios;
    int nhists;
    const char *const *hists; /* "delay_minutes" ... */
    size_t dims_off;          /* offsetof(sp_config_t, <family>_dims) */
} sp_fk_spec_t;

typedef struct sp_fk_row {
    int64_t d[SP_FK_MAXF];
    int64_t hc[SP_FK_MAXH]; /* histogram counts */
    int64_t hs[SP_FK_MAXH]; /* histogram sums, milliseconds */
    uint8_t dirty;
} sp_fk_row_t;

typedef struct sp_fk_hist {
    int32_t idx[SP_FK_HSLOTS];
    int64_t cnt[SP_FK_HSLOTS]; /* 0: free slot */
} sp_fk_hist_t;

/* The values of one dimension seen in a window, first come, capped. Rows
 * grow on demand (a window of a few values stays small: a block is
 * allocated per window and family, and most see a handful of values). */
typedef struct sp_fk_dim {
    uint16_t n, cap;
    uint32_t *id;      /* n interned values */
    sp_fk_row_t *row;  /* cap rows, n used */
    sp_fk_row_t other; /* __other__: past the cap (or out of memory) */
} sp_fk_dim_t;

typedef struct sp_fk_win {
    sp_fk_row_t all;
    sp_fk_hist_t *hist[SP_FK_MAXH]; /* allocated at the first value */
    sp_fk_dim_t dim[SP_FK_DIMS];
} sp_fk_win_t;

/* The family's configured dimensions. */
const sp_dims_t *sp_fk_dims(const sp_engine_t *e, const sp_fk_spec_t *s);
/* Interned ids of the event's values of the family's dimensions
 * (SP_FK_NONE where the event has none). */
void sp_fk_ids(sp_engine_t *e, const sp_fk_spec_t *s, const sp_event_t *ev, uint32_t *ids);
/* Add delta to counter f overall and per dimension value. w NULL: no-op. */
void sp_fk_add(sp_engine_t *e, const sp_fk_spec_t *s, sp_fk_win_t *w, const uint32_t *ids, int f,
               int64_t delta);
/* Record a duration of ms milliseconds in histogram h (its bucket in the
 * unit of the histogram's name, sp_hist_unit_ms). */
void sp_fk_hist(sp_engine_t *e, const sp_fk_spec_t *s, sp_fk_win_t *w, const uint32_t *ids, int h,
                int64_t ms);
/* Family release(): free what a block holds (not the block). */
void sp_fk_release(void *win);
/* Family emit(): write and clear the deltas (see family.h). */
void sp_fk_emit(sp_engine_t *e, const sp_fk_spec_t *s, sp_fk_win_t *w, int closing,
                sp_commit_t *c);

/* Entity helpers: dimension values kept in entity state as strings. Encode
 * up to SP_FK_DIMS interned ids as (u8 len + bytes) each; decode back to
 * ids. Return bytes written / read, 0 on overflow or corruption. */
size_t sp_fk_put_ids(sp_engine_t *e, const uint32_t *ids, int n, char *buf, size_t cap);
size_t sp_fk_get_ids(sp_engine_t *e, const char *buf, size_t len, uint32_t *ids, int n);

#endif
