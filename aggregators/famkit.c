/* famkit.c -- see famkit.h. One block layout and one emitter for the
 * event-count families, so every family writes counters, per-dimension
 * fields, ratios and histograms the same way. */
#include "aggregators/famkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/hist.h"

static const double quantiles[] = {0.5, 0.9, 0.99};
static const char *const qnames[] = {"p50", "p90", "p99"};

const sp_dims_t *sp_fk_dims(const sp_engine_t *e, const sp_fk_spec_t *s) {
    return (const sp_dims_t *)((const char *)sp_engine_cfg(e) + s->dims_off);
}

static int ndims(const sp_engine_t *e, const sp_fk_spec_t *s) {
    int n = sp_fk_dims(e, s)->cnt;
    return n > SP_FK_DIMS ? SP_FK_DIMS : n;
}

void sp_fk_ids(sp_engine_t *e, const sp_fk_spec_t *s, const sp_event_t *ev, uint32_t *ids) {
    const sp_dims_t *d = sp_fk_dims(e, s);
    for (int k = 0; k < ndims(e, s); k++) {
        sp_str_t v = ev->s[d->f[k]];
        ids[k] = v.p ? sp_engine_intern(e, v.p, v.len) : SP_FK_NONE;
    }
}

static int dim_cap(const sp_engine_t *e) {
    int cap = sp_engine_cfg(e)->max_dimension_values;
    return cap < 0 ? 0 : cap > SP_FK_VALUES ? SP_FK_VALUES : cap;
}

/* Row of an interned value in a window's table (NULL: value missing). */
static sp_fk_row_t *row_of(const sp_engine_t *e, sp_fk_dim_t *t, uint32_t id) {
    if (id == SP_FK_NONE) return NULL;
    if (id == 0) return &t->other;
    for (int j = 0; j < t->n; j++)
        if (t->id[j] == id) return &t->row[j];
    if (t->n >= dim_cap(e)) return &t->other;
    if (t->n == t->cap) {
        int nc = t->cap ? 2 * t->cap : 4;
        if (nc > SP_FK_VALUES) nc = SP_FK_VALUES;
        uint32_t *ni = realloc(t->id, (size_t)nc * sizeof(*ni));
        if (!ni) return &t->other;
        t->id = ni;
        sp_fk_row_t *nr = realloc(t->row, (size_t)nc * sizeof(*nr));
        if (!nr) return &t->other;
        t->row = nr;
        t->cap = (uint16_t)nc;
    }
    memset(&t->row[t->n], 0, sizeof(t->row[0]));
    t->id[t->n] = id;
    return &t->row[t->n++];
}

void sp_fk_release(void *win) {
    sp_fk_win_t *w = win;
    for (int h = 0; h < SP_FK_MAXH; h++) free(w->hist[h]);
    for (int k = 0; k < SP_FK_DIMS; k++) {
        free(w->dim[k].id);
        free(w->dim[k].row);
    }
}

void sp_fk_add(sp_engine_t *e, const sp_fk_spec_t *s, sp_fk_win_t *w, const uint32_t *ids, int f,
               int64_t delta) {
    if (!w) return;
    w->all.d[f] += delta;
    w->all.dirty = 1;
    for (int k = 0; k < ndims(e, s); k++) {
        sp_fk_row_t *r = row_of(e, &w->dim[k], ids[k]);
        if (!r) continue;
        r->d[f] += delta;
        r->dirty = 1;
    }
}

static void hist_put(sp_fk_hist_t *h, int32_t idx) {
    uint32_t j = ((uint32_t)idx * 2654435761u) & (SP_FK_HSLOTS - 1);
    for (int n = 0; n < SP_FK_HSLOTS; n++, j = (j + 1) & (SP_FK_HSLOTS - 1)) {
        if (h->cnt[j] == 0) {
            h->idx[j] = idx;
            h->cnt[j] = 1;
            return;
        }
        if (h->idx[j] == idx) {
            h->cnt[j]++;
            return;
        }
    }
    /* More distinct buckets in one batch than slots: clamp into the
     * nearest one kept (cannot happen with the bucket range of real
     * durations; documented bound). */
    h->cnt[((uint32_t)idx * 2654435761u) & (SP_FK_HSLOTS - 1)]++;
}

void sp_fk_hist(sp_engine_t *e, const sp_fk_spec_t *s, sp_fk_win_t *w, const uint32_t *ids, int h,
                int64_t ms) {
    if (!w) return;
    if (!w->hist[h]) w->hist[h] = calloc(1, sizeof(*w->hist[h]));
    /* out of memory: the value counts, without its bucket */
    if (w->hist[h]) {
        const char *name = s->hists[h];
        double unit = (double)sp_hist_unit_ms(name, strlen(name));
        hist_put(w->hist[h], sp_hist_index((double)ms / unit));
    }
    w->all.hc[h]++;
    w->all.hs[h] += ms;
    w->all.dirty = 1;
    for (int k = 0; k < ndims(e, s); k++) {
        sp_fk_row_t *r = row_of(e, &w->dim[k], ids[k]);
        if (!r) continue;
        r->hc[h]++;
        r->hs[h] += ms;
        r->dirty = 1;
    }
}

static void emit_row(const sp_fk_spec_t *s, sp_fk_row_t *r, const char *sfx, int all_fields,
                     sp_commit_t *c) {
    char f[600], num[600], den[600];
    int n;
    for (int k = 0; k < s->nfields; k++) {
        if (!all_fields && r->d[k] == 0) continue;
        n = snprintf(f, sizeof(f), "%s%s", s->fields[k], sfx);
        sp_commit_incr(c, f, (size_t)n, r->d[k]);
    }
    for (int h = 0; h < s->nhists; h++) {
        if (!all_fields && r->hc[h] == 0) continue;
        n = snprintf(f, sizeof(f), "%s_count%s", s->hists[h], sfx);
        sp_commit_incr(c, f, (size_t)n, r->hc[h]);
        n = snprintf(f, sizeof(f), "%s_sum_ms%s", s->hists[h], sfx);
        sp_commit_incr(c, f, (size_t)n, r->hs[h]);
    }
    for (int k = 0; k < s->nratios; k++) {
        snprintf(f, sizeof(f), "%s%s", s->ratios[k].name, sfx);
        snprintf(num, sizeof(num), "%s%s", s->fields[s->ratios[k].num], sfx);
        snprintf(den, sizeof(den), "%s%s", s->fields[s->ratios[k].den], sfx);
        sp_commit_ratio(c, f, s->ratios[k].kind, num, den);
    }
    memset(r, 0, sizeof(*r));
}

void sp_fk_emit(sp_engine_t *e, const sp_fk_spec_t *s, sp_fk_win_t *w, int closing,
                sp_commit_t *c) {
    const sp_dims_t *d = sp_fk_dims(e, s);
    char sfx[300], f[300];
    int hist_news = 0;

    if (!w) { /* zero-fill */
        sp_fk_row_t zero;
        memset(&zero, 0, sizeof(zero));
        emit_row(s, &zero, "", 1, c);
        return;
    }
    for (int h = 0; h < s->nhists; h++) {
        sp_fk_hist_t *hs = w->hist[h];
        if (!w->all.hc[h] || !hs) continue;
        hist_news = 1;
        for (int j = 0; j < SP_FK_HSLOTS; j++) {
            if (!hs->cnt[j]) continue;
            char b[24];
            sp_hist_field(hs->idx[j], b, sizeof(b));
            int n = snprintf(f, sizeof(f), "%s:%s", s->hists[h], b);
            sp_commit_incr(c, f, (size_t)n, hs->cnt[j]);
            hs->cnt[j] = 0;
        }
    }
    if (hist_news || closing)
        for (int h = 0; h < s->nhists; h++)
            for (int q = 0; q < 3; q++) {
                snprintf(f, sizeof(f), "%s_%s", s->hists[h], qnames[q]);
                sp_commit_quantile(c, f, s->hists[h], quantiles[q]);
            }
    if (w->all.dirty || closing) emit_row(s, &w->all, "", closing, c);
    for (int k = 0; k < ndims(e, s); k++) {
        sp_fk_dim_t *t = &w->dim[k];
        const char *dname = sp_str_field_names[d->f[k]];
        for (int j = 0; j <= t->n; j++) {
            sp_fk_row_t *r = j < t->n ? &t->row[j] : &t->other;
            if (!r->dirty) continue;
            size_t vlen = strlen(SP_OTHER);
            const char *v = j < t->n ? sp_engine_interned(e, t->id[j], &vlen) : SP_OTHER;
            snprintf(sfx, sizeof(sfx), "|%s=%.*s", dname, (int)vlen, v);
            emit_row(s, r, sfx, 0, c);
        }
    }
}

size_t sp_fk_put_ids(sp_engine_t *e, const uint32_t *ids, int n, char *buf, size_t cap) {
    size_t o = 0;
    for (int k = 0; k < n; k++) {
        size_t len = 0;
        const char *p = "";
        if (ids[k] != SP_FK_NONE) p = sp_engine_interned(e, ids[k], &len);
        if (len > 254 || o + 1 + len > cap) return 0;
        /* 255: no value; otherwise the length */
        buf[o++] = (char)(ids[k] == SP_FK_NONE ? 255 : len);
        memcpy(buf + o, p, len);
        o += len;
    }
    return o;
}

size_t sp_fk_get_ids(sp_engine_t *e, const char *buf, size_t len, uint32_t *ids, int n) {
    size_t o = 0;
    for (int k = 0; k < n; k++) {
        if (o >= len) return 0;
        unsigned l = (unsigned char)buf[o++];
        if (l == 255) {
            ids[k] = SP_FK_NONE;
            continue;
        }
        if (o + l > len) return 0;
        ids[k] = sp_engine_intern(e, buf + o, l);
        o += l;
    }
    return o;
}
