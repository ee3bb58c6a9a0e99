/* rules.c -- see rules.h. Alert rules read from the config file and
 * evaluated on closed windows.
 *
 * Names (docs/ALERTS.md "Metrics"): a rule's metric and its `by` are
 * checked at load against the families' catalogue (family.h: each family
 * declares its fields and gauges in its own file; the engine its gauges),
 * read through sp_engine_families(), never a list of its own here. The
 * catalogue also gives the metric's kind and its sample size field. An
 * unknown name is an error naming the closest valid one (edit distance
 * with transpositions, within a third of the name's length), or the
 * family that has it. A ratio rule without min_samples gets
 * SP_RULE_RATIO_MIN_SAMPLES.
 *
 * Semantics (docs/ALERTS.md):
 *  - value: the window hash field `<field>` (overall) or `<field>|<dim>=<v>`
 *    (per value with `by`). A ratio absent from the hash (denominator 0) is
 *    no data: no decision, the state does not move.
 *  - sample size: the ratio's denominator (abandonment rates: decided
 *    carts/checkouts; percentiles: the histogram's _count; a counter: the
 *    counter itself). Below min_samples: no decision.
 *  - above / below: bad when value > above / value < below; resolves when
 *    value <= resolve_below (default above) / value >= resolve_above
 *    (default below): between the two the state holds (hysteresis).
 *  - drop_vs_baseline d: bad when value < (1 - d) x the mean of the last
 *    `baseline` decided windows (kept in the alert state; no decision until
 *    the baseline is full); resolves when value >= (1 - d) x baseline, or
 *    resolve_above. Bad windows do not enter the baseline, so an outage
 *    does not lower the bar it is measured against.
 *  - absent_for D: the counter is 0 (or absent) in consecutive closed
 *    windows covering D: FIRING; any window with data resolves.
 *  - `for` N: FIRING at the N-th consecutive bad window; pending before.
 *    A good window resets; a no-decision window neither counts nor resets.
 *  - messages: on FIRING, on RESOLVED, and again while firing once
 *    repeat_every has passed since the last one (event time: window ends),
 *    also from a window that decides nothing (no data, a small sample):
 *    that repeat carries no value and moves nothing else, so the alert
 *    stays alive downstream (Alertmanager's endsAt) through a quiet night.
 *    alert_id = fingerprint:STATE:start of the window that fired (a repeat
 *    is the same alert again: same alert_id).
 *  - <duration>_mean: no decision in a window that a version before
 *    _sum_ms wrote to (it has <duration>_sum: its _count covers events its
 *    _sum_ms does not), docs/METRICS.md "Upgrading".
 *  - contributors (overall rules): every dimension value in the window's
 *    hash, scored by how much of the overall change it explains: share of
 *    the sample x distance, in the bad direction, of its own value from the
 *    rest of the window (ratios, means) or from the reference (counters,
 *    percentiles); the top ones are named. */
#include "aggregators/rules.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "aggregators/family.h"
#include "aggregators/hist.h"
#include "core/err.h"
#include "core/event.h"

/* ---- metric catalogue ---------------------------------------------------- */

/* The catalogue is the families' own (family.h, each family's file): here
 * it is only read. A family as the rules see it: the five window families
 * through the engine's registry, then `gauges` (sp:{NS}:gauges, read when a
 * window of the rule's size closes), whose fields are declared by whoever
 * writes them -- the engine and the families. */
#define CAT_GAUGES_MAX 32

typedef struct cat {
    int nfam; /* window families; index nfam is `gauges` */
    const sp_family_t *const *fam;
    const sp_metric_t *gauge[CAT_GAUGES_MAX];
    int ngauge;
} cat_t;

static void cat_add_gauges(cat_t *c, const sp_metric_t *m, int n) {
    for (int i = 0; i < n; i++) {
        int dup = 0;
        for (int j = 0; j < c->ngauge; j++)
            dup |= !strcmp(c->gauge[j]->name, m[i].name);
        if (!dup && c->ngauge < CAT_GAUGES_MAX) c->gauge[c->ngauge++] = &m[i];
    }
}

static void cat_init(cat_t *c) {
    int n;
    memset(c, 0, sizeof(*c));
    c->fam = sp_engine_families(&c->nfam);
    const sp_metric_t *g = sp_engine_gauges(&n);
    cat_add_gauges(c, g, n);
    for (int f = 0; f < c->nfam; f++)
        cat_add_gauges(c, c->fam[f]->gauges, c->fam[f]->ngauges);
}

static const char *cat_fam_name(const cat_t *c, int f) {
    return f < c->nfam ? c->fam[f]->name : "gauges";
}

static int cat_count(const cat_t *c, int f) {
    return f < c->nfam ? c->fam[f]->nmetrics : c->ngauge;
}

static const sp_metric_t *cat_metric(const cat_t *c, int f, int i) {
    return f < c->nfam ? &c->fam[f]->metrics[i] : c->gauge[i];
}

/* The names a rule may use for a catalogue entry: the field itself, or
 * for a duration its six fields. */
static const char *const dur_sfx[] = {"_p50", "_p90", "_p99", "_mean", "_count", "_sum_ms"};
#define NDUR ((int)(sizeof(dur_sfx) / sizeof(dur_sfx[0])))

typedef struct mname {
    char name[64];
    sp_rule_metric_t kind;
    char sample[128];
    int per_dim; /* split by the family's configured dimensions */
    int overall; /* an overall field exists */
    const sp_metric_t *m;
} mname_t;

static int name_count(const sp_metric_t *m) {
    return m->kind == SP_METRIC_DURATION ? NDUR : 1;
}

static void name_of(const cat_t *c, int f, const sp_metric_t *m, int j, mname_t *out) {
    memset(out, 0, sizeof(*out));
    out->m = m;
    out->kind = SP_RULE_M_COUNTER;
    out->per_dim = f < c->nfam; /* gauges: only their own */
    out->overall = !(m->flags & SP_METRIC_SPLIT_ONLY);
    if (m->kind != SP_METRIC_DURATION) {
        snprintf(out->name, sizeof(out->name), "%s", m->name);
        if (m->kind == SP_METRIC_RATIO) {
            out->kind = SP_RULE_M_RATIO;
            snprintf(out->sample, sizeof(out->sample), "%s", m->sample ? m->sample : "");
        }
        return;
    }
    snprintf(out->name, sizeof(out->name), "%s%s", m->name, dur_sfx[j]);
    if (j < 3) {
        out->kind = SP_RULE_M_PERCENTILE;
        out->per_dim = 0; /* histograms are kept overall */
    } else if (j == 3) {
        out->kind = SP_RULE_M_MEAN;
    }
    if (j <= 3) snprintf(out->sample, sizeof(out->sample), "%s_count", m->name);
}

/* Look a field up in family f; 1 found (*out filled). */
static int cat_find(const cat_t *c, int f, const char *field, mname_t *out) {
    for (int i = 0; i < cat_count(c, f); i++) {
        const sp_metric_t *m = cat_metric(c, f, i);
        for (int j = 0; j < name_count(m); j++) {
            name_of(c, f, m, j, out);
            if (!strcmp(out->name, field)) return 1;
        }
    }
    return 0;
}

static int cat_family(const cat_t *c, const char *name, size_t len) {
    for (int f = 0; f <= c->nfam; f++)
        if (strlen(cat_fam_name(c, f)) == len && !memcmp(cat_fam_name(c, f), name, len)) return f;
    return -1;
}

/* Optimal string alignment distance (Levenshtein + adjacent transpositions),
 * of the first 63 characters. */
static int edit_distance(const char *a, const char *b) {
    int la = (int)strnlen(a, 63), lb = (int)strnlen(b, 63);
    int d[64][64];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* Close enough to suggest: a third of the name's length (at least 1). */
static int close_enough(const char *typed, int dist) {
    int lim = ((int)strlen(typed) + 2) / 3;
    return dist <= (lim < 1 ? 1 : lim);
}

/* The closest field to `field` in family f (or any family when f < 0):
 * distance, and family and name in *bf / bname. */
static int cat_closest(const cat_t *c, int f, const char *field, int *bf, char *bname,
                       size_t bsize) {
    int best = 1 << 20;
    for (int g = f < 0 ? 0 : f; g <= (f < 0 ? c->nfam : f); g++)
        for (int i = 0; i < cat_count(c, g); i++) {
            const sp_metric_t *m = cat_metric(c, g, i);
            for (int j = 0; j < name_count(m); j++) {
                mname_t mn;
                name_of(c, g, m, j, &mn);
                int dist = edit_distance(field, mn.name);
                if (dist < best) {
                    best = dist;
                    *bf = g;
                    snprintf(bname, bsize, "%s", mn.name);
                }
            }
        }
    return best;
}

/* The dimensions of a name under cfg, comma-separated, into buf. */
static void dims_of(const cat_t *c, int f, const mname_t *mn, const sp_config_t *cfg, char *buf,
                    size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    if (mn->per_dim) {
        const sp_dims_t *d = sp_family_dims(c->fam[f], cfg);
        for (int k = 0; k < d->cnt && o < size; k++)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? ", " : "",
                                  sp_str_field_names[d->f[k]]);
    }
    if (mn->m->dims && o < size) snprintf(buf + o, size - o, "%s%s", o ? ", " : "", mn->m->dims);
}

/* The configured dimensions of window family f, comma-separated. */
static const char *fam_dims(const cat_t *c, int f, const sp_config_t *cfg, char *buf, size_t size) {
    static const sp_metric_t plain = {0};
    mname_t any = {.per_dim = 1, .m = &plain};
    dims_of(c, f, &any, cfg, buf, size);
    return buf;
}

/* Is dim one of the comma-separated list? */
static int in_list(const char *list, const char *dim) {
    size_t n = strlen(dim);
    for (const char *p = list; *p;) {
        const char *q = strchr(p, ',');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == n && !memcmp(p, dim, n)) return 1;
        if (!q) break;
        p = q + 1;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* The closest entry of a comma-separated list. */
static int list_closest(const char *list, const char *dim, char *out, size_t size) {
    int best = 1 << 20;
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", list);
    for (char *save, *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        int dist = edit_distance(dim, t);
        if (dist < best) {
            best = dist;
            snprintf(out, size, "%s", t);
        }
    }
    return best;
}

static const char *kind_word(const mname_t *mn) {
    if (mn->m->kind == SP_METRIC_GAUGE) return "gauge";
    switch (mn->kind) {
    case SP_RULE_M_RATIO: return "ratio";
    case SP_RULE_M_PERCENTILE: return "percentile";
    case SP_RULE_M_MEAN: return "mean";
    default: break;
    }
    if (mn->m->kind == SP_METRIC_DURATION)
        return strstr(mn->name + strlen(mn->m->name), "_sum") ? "sum" : "count";
    return "counter";
}

void sp_rules_print_metrics(const sp_config_t *cfg, FILE *out) {
    cat_t c;
    cat_init(&c);
    fputs("| family | metric | kind | sample | dimensions (`by`) |\n"
          "|---|---|---|---|---|\n",
          out);
    for (int f = 0; f <= c.nfam; f++)
        for (int i = 0; i < cat_count(&c, f); i++) {
            const sp_metric_t *m = cat_metric(&c, f, i);
            for (int j = 0; j < name_count(m); j++) {
                mname_t mn;
                char dims[256], sample[160];
                name_of(&c, f, m, j, &mn);
                dims_of(&c, f, &mn, cfg, dims, sizeof(dims));
                if (!mn.sample[0]) {
                    snprintf(sample, sizeof(sample), "itself");
                } else {
                    char *plus = strchr(mn.sample, '+');
                    if (plus)
                        snprintf(sample, sizeof(sample), "`%.*s` + `%s`", (int)(plus - mn.sample),
                                 mn.sample, plus + 1);
                    else
                        snprintf(sample, sizeof(sample), "`%s`", mn.sample);
                }
                fprintf(out, "| %s | `%s.%s` | %s | %s | %s%s |\n", cat_fam_name(&c, f),
                        cat_fam_name(&c, f), mn.name, kind_word(&mn), sample,
                        dims[0] ? dims : "(overall only)", mn.overall ? "" : " (per value only)");
            }
        }
}

static int is_percentile(const sp_rule_t *r) {
    return r->mkind == SP_RULE_M_PERCENTILE;
}

static int is_mean(const sp_rule_t *r) {
    return r->mkind == SP_RULE_M_MEAN;
}

/* The sample field(s) of a metric: "" when the metric is its own sample. */
static void sample_of(const sp_rule_t *r, char *out, size_t size) {
    snprintf(out, size, "%s", r->sample);
}

/* A counter: its own sample, 0 when absent from the hash. */
static int is_counter(const sp_rule_t *r) {
    return !r->sample[0];
}

/* ---- loading --------------------------------------------------------------- */

typedef struct ld {
    const char *file;
    yaml_document_t *doc;
    char *err;
    size_t errsz;
} ld_t;

static int line_of(const yaml_node_t *n) {
    return n ? (int)n->start_mark.line + 1 : 0;
}

__attribute__((format(printf, 5, 6))) static int fail(ld_t *ld, const yaml_node_t *n,
                                                       const char *rule, const char *key,
                                                       const char *fmt, ...) {
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    int k = snprintf(ld->err, ld->errsz, "%s:%d: ", ld->file, line_of(n));
    if (k < 0 || (size_t)k >= ld->errsz) return SP_ERR_CONFIG;
    size_t o = (size_t)k;
    if (rule) o += (size_t)snprintf(ld->err + o, ld->errsz - o, "rule '%s': ", rule);
    if (o < ld->errsz && key) o += (size_t)snprintf(ld->err + o, ld->errsz - o, "key '%s': ", key);
    if (o < ld->errsz) snprintf(ld->err + o, ld->errsz - o, "%s", why);
    return SP_ERR_CONFIG;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_double(ld_t *ld, const yaml_node_t *n, const char *rule, const char *key,
                      double *out) {
    const char *s = scalar(n);
    char *end;
    if (!s || !*s) return fail(ld, n, rule, key, "expected a number");
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return fail(ld, n, rule, key, "expected a number, got '%s'", s);
    *out = v;
    return SP_OK;
}

static int get_int(ld_t *ld, const yaml_node_t *n, const char *rule, const char *key, long lo,
                   long hi, int64_t *out) {
    const char *s = scalar(n);
    char *end;
    if (!s || !*s) return fail(ld, n, rule, key, "expected an integer");
    long long v = strtoll(s, &end, 10);
    if (*end || v < lo || v > hi)
        return fail(ld, n, rule, key, "expected an integer %ld..%ld, got '%s'", lo, hi, s);
    *out = v;
    return SP_OK;
}

static int get_dur(ld_t *ld, const yaml_node_t *n, const char *rule, const char *key,
                   int64_t *out) {
    const char *s = scalar(n);
    if (!s || sp_duration_parse(s, out) != 0 || *out < 0)
        return fail(ld, n, rule, key, "expected a duration like 15m, got '%s'", s ? s : "?");
    return SP_OK;
}

static int get_str(ld_t *ld, const yaml_node_t *n, const char *rule, const char *key, char *out,
                   size_t size) {
    const char *s = scalar(n);
    if (!s) return fail(ld, n, rule, key, "expected a string");
    if (strlen(s) >= size) return fail(ld, n, rule, key, "longer than %zu characters", size - 1);
    memcpy(out, s, strlen(s) + 1);
    return SP_OK;
}

static int name_ok(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

/* <family>.<field>: the syntax only; resolve_metric checks the names. */
static int parse_metric(ld_t *ld, const yaml_node_t *n, sp_rule_t *r) {
    const char *s = scalar(n), *dot;
    if (!s || !(dot = strchr(s, '.')))
        return fail(ld, n, r->name, "metric", "expected <family>.<field>, e.g. funnel.conversion_rate");
    size_t fl = (size_t)(dot - s);
    if (fl >= sizeof(r->family) || strlen(dot + 1) >= sizeof(r->field))
        return fail(ld, n, r->name, "metric", "'%s': name too long", s);
    snprintf(r->family, sizeof(r->family), "%.*s", (int)fl, s);
    snprintf(r->field, sizeof(r->field), "%s", dot + 1);
    snprintf(r->metric, sizeof(r->metric), "%s", s);
    return SP_OK;
}

/* The metric against the families' catalogue, and `by` against its
 * dimensions under cfg. mnode: the metric's node; bynode[i]: by[i]'s. */
static int resolve_metric(ld_t *ld, const sp_config_t *cfg, const yaml_node_t *mnode,
                          yaml_node_t *const *bynode, sp_rule_t *r) {
    cat_t c;
    mname_t mn;
    char best[64], dims[256], dims_g[256], hint[160] = "";
    int bf = -1, f, dist;
    cat_init(&c);

    if ((f = cat_family(&c, r->family, strlen(r->family))) < 0) {
        int bd = 1 << 20;
        for (int g = 0; g <= c.nfam; g++)
            if ((dist = edit_distance(r->family, cat_fam_name(&c, g))) < bd) {
                bd = dist;
                bf = g;
            }
        if (close_enough(r->family, bd) && cat_find(&c, bf, r->field, &mn))
            snprintf(hint, sizeof(hint), "; did you mean %s.%s?", cat_fam_name(&c, bf), r->field);
        else if (close_enough(r->family, bd))
            snprintf(hint, sizeof(hint), "; did you mean %s?", cat_fam_name(&c, bf));
        char names[160];
        size_t o = 0;
        for (int g = 0; g <= c.nfam && o < sizeof(names); g++)
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", g ? ", " : "",
                                  cat_fam_name(&c, g));
        return fail(ld, mnode, r->name, "metric", "unknown family '%s' (%s)%s", r->family, names,
                    hint);
    }
    if (!name_ok(r->field) || strchr(r->field, '.')) {
        const char *bar = strchr(r->field, '|'), *eq = bar ? strchr(bar, '=') : NULL;
        if (bar && eq)
            return fail(ld, mnode, r->name, "metric",
                        "'%s': a field per dimension value is not a metric; use metric: "
                        "%s.%.*s with by: [%.*s]",
                        r->metric, r->family, (int)(bar - r->field), r->field, (int)(eq - bar - 1),
                        bar + 1);
        return fail(ld, mnode, r->name, "metric", "bad field name '%s'", r->field);
    }
    if (!cat_find(&c, f, r->field, &mn)) {
        /* another family's metric, a misspelling, or neither */
        for (int g = 0; g <= c.nfam && !hint[0]; g++)
            if (g != f && cat_find(&c, g, r->field, &mn))
                snprintf(hint, sizeof(hint), "; did you mean %s.%s?", cat_fam_name(&c, g),
                         r->field);
        if (!hint[0] &&
            close_enough(r->field, cat_closest(&c, f, r->field, &bf, best, sizeof(best))))
            snprintf(hint, sizeof(hint), "; did you mean %s.%s?", cat_fam_name(&c, bf), best);
        if (!hint[0] &&
            close_enough(r->field, cat_closest(&c, -1, r->field, &bf, best, sizeof(best))))
            snprintf(hint, sizeof(hint), "; did you mean %s.%s?", cat_fam_name(&c, bf), best);
        if (!hint[0])
            snprintf(hint, sizeof(hint), " (storepulse check-config --metrics lists them)");
        return fail(ld, mnode, r->name, "metric", "%s: no such metric in family %s%s", r->metric,
                    r->family, hint);
    }
    r->mkind = mn.kind;
    snprintf(r->sample, sizeof(r->sample), "%s", mn.sample);

    if (r->nby && mn.kind == SP_RULE_M_PERCENTILE)
        return fail(ld, bynode[0], r->name, "by",
                    "percentiles are kept overall only; per value use <histogram>_mean");
    dims_of(&c, f, &mn, cfg, dims, sizeof(dims));
    for (int i = 0; i < r->nby; i++) {
        if (in_list(dims, r->by[i])) continue;
        if (!dims[0])
            return fail(ld, bynode[i], r->name, "by",
                        "unknown dimension '%s': %s is kept overall only", r->by[i], r->metric);
        if (close_enough(r->by[i], list_closest(dims, r->by[i], best, sizeof(best))))
            snprintf(hint, sizeof(hint), "; did you mean %s?", best);
        for (int g = 0; g < c.nfam && !hint[0]; g++)
            if (g != f && in_list(fam_dims(&c, g, cfg, dims_g, sizeof(dims_g)), r->by[i]))
                snprintf(hint, sizeof(hint), "; %s is a dimension of %s", r->by[i],
                         cat_fam_name(&c, g));
        if (!mn.per_dim)
            return fail(ld, bynode[i], r->name, "by",
                        "unknown dimension '%s' for %s: its dimensions are %s%s", r->by[i],
                        r->metric, dims, hint);
        /* the family's (configured), then the metric's own */
        const char *fd = fam_dims(&c, f, cfg, dims_g, sizeof(dims_g));
        return fail(ld, bynode[i], r->name, "by",
                    "unknown dimension '%s' for %s: its dimensions are %s (metrics.%s.dimensions)"
                    "%s%s%s",
                    r->by[i], r->metric, fd[0] ? fd : "none", r->family, mn.m->dims ? " and " : "",
                    mn.m->dims ? mn.m->dims : "", hint);
    }
    if (!mn.overall && !r->nby)
        return fail(ld, mnode, r->name, "metric",
                    "%s is kept per %s only (no overall field): add by: [%s]", r->metric, dims,
                    dims);
    return SP_OK;
}

static int parse_rule(ld_t *ld, const sp_config_t *cfg, yaml_node_t *map, sp_rule_t *r, int idx) {
    int has_above = 0, has_below = 0, has_drop = 0, has_absent = 0, has_ra = 0, has_rb = 0;
    int has_metric = 0, has_window = 0, has_baseline = 0, has_min = 0;
    double ra = 0, rb = 0;
    yaml_node_t *win_node = map, *metric_node = map, *by_node[SP_RULE_BY_MAX] = {0};
    int rc;

    memset(r, 0, sizeof(*r));
    r->line = line_of(map);
    r->for_windows = 1;
    r->repeat_every_ms = 3600000;
    snprintf(r->severity, sizeof(r->severity), "warning");
    snprintf(r->name, sizeof(r->name), "#%d", idx + 1);
    if (map->type != YAML_MAPPING_NODE)
        return fail(ld, map, NULL, NULL, "alerts[%d]: expected a mapping (name, metric, ...)", idx);
    /* the name first, so every other error can name the rule */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        if (scalar(k) && !strcmp(scalar(k), "name")) {
            if ((rc = get_str(ld, v, r->name, "name", r->name, sizeof(r->name)))) return rc;
            if (!name_ok(r->name))
                return fail(ld, v, NULL, "name", "'%s': letters, digits, _ - . only", r->name);
        }
    }
    if (r->name[0] == '#') return fail(ld, map, r->name, "name", "missing");

    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        const char *k = scalar(kn);
        int64_t i64;
        if (!k) return fail(ld, kn, r->name, NULL, "keys must be strings");
        if (!strcmp(k, "name")) {
            continue;
        } else if (!strcmp(k, "metric")) {
            if ((rc = parse_metric(ld, v, r))) return rc;
            has_metric = 1;
            metric_node = v;
        } else if (!strcmp(k, "window")) {
            if ((rc = get_dur(ld, v, r->name, k, &r->window_ms))) return rc;
            int ok = 0;
            for (int i = 0; i < cfg->window_cnt; i++) ok |= cfg->window_ms[i] == r->window_ms;
            if (!ok) return fail(ld, v, r->name, k, "'%s' is not one of windows.sizes", scalar(v));
            has_window = 1;
            win_node = v;
        } else if (!strcmp(k, "above")) {
            if ((rc = get_double(ld, v, r->name, k, &r->threshold))) return rc;
            has_above = 1;
        } else if (!strcmp(k, "below")) {
            if ((rc = get_double(ld, v, r->name, k, &r->threshold))) return rc;
            has_below = 1;
        } else if (!strcmp(k, "drop_vs_baseline")) {
            if ((rc = get_double(ld, v, r->name, k, &r->threshold))) return rc;
            if (!(r->threshold > 0 && r->threshold < 1))
                return fail(ld, v, r->name, k, "expected a fraction between 0 and 1 (0.5 = 50 %% below)");
            has_drop = 1;
        } else if (!strcmp(k, "absent_for")) {
            if ((rc = get_dur(ld, v, r->name, k, &r->absent_for_ms))) return rc;
            if (r->absent_for_ms <= 0) return fail(ld, v, r->name, k, "must be positive");
            has_absent = 1;
        } else if (!strcmp(k, "resolve_above")) {
            if ((rc = get_double(ld, v, r->name, k, &ra))) return rc;
            has_ra = 1;
        } else if (!strcmp(k, "resolve_below")) {
            if ((rc = get_double(ld, v, r->name, k, &rb))) return rc;
            has_rb = 1;
        } else if (!strcmp(k, "min_samples")) {
            if ((rc = get_int(ld, v, r->name, k, 0, 2000000000L, &r->min_samples))) return rc;
            has_min = 1;
        } else if (!strcmp(k, "for")) {
            if ((rc = get_int(ld, v, r->name, k, 1, 1000, &i64))) return rc;
            r->for_windows = (int)i64;
        } else if (!strcmp(k, "baseline")) {
            if ((rc = get_int(ld, v, r->name, k, 1, SP_RULE_BASE_MAX, &i64))) return rc;
            r->baseline = (int)i64;
            has_baseline = 1;
        } else if (!strcmp(k, "repeat_every")) {
            if ((rc = get_dur(ld, v, r->name, k, &r->repeat_every_ms))) return rc;
        } else if (!strcmp(k, "severity")) {
            if ((rc = get_str(ld, v, r->name, k, r->severity, sizeof(r->severity)))) return rc;
            if (!name_ok(r->severity)) return fail(ld, v, r->name, k, "letters and digits only");
        } else if (!strcmp(k, "summary")) {
            if ((rc = get_str(ld, v, r->name, k, r->summary, sizeof(r->summary)))) return rc;
        } else if (!strcmp(k, "by")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return fail(ld, v, r->name, k, "expected a list of dimensions, e.g. [channel]");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *d = yaml_document_get_node(ld->doc, *it);
                const char *s = scalar(d);
                /* checked against the metric's dimensions in resolve_metric */
                if (!s || !name_ok(s) || strlen(s) >= sizeof(r->by[0]))
                    return fail(ld, d, r->name, k, "unknown dimension '%s'", s ? s : "?");
                if (r->nby == SP_RULE_BY_MAX)
                    return fail(ld, d, r->name, k, "at most %d dimensions", SP_RULE_BY_MAX);
                by_node[r->nby] = d;
                snprintf(r->by[r->nby++], sizeof(r->by[0]), "%s", s);
            }
        } else if (!strcmp(k, "labels")) {
            if (v->type != YAML_MAPPING_NODE)
                return fail(ld, v, r->name, k, "expected a mapping of strings");
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
                 q++) {
                yaml_node_t *lk = yaml_document_get_node(ld->doc, q->key);
                yaml_node_t *lv = yaml_document_get_node(ld->doc, q->value);
                if (r->nlabels == SP_ALERT_LABEL_MAX)
                    return fail(ld, lk, r->name, k, "at most %d labels", SP_ALERT_LABEL_MAX);
                sp_alert_label_t *l = &r->labels[r->nlabels++];
                if ((rc = get_str(ld, lk, r->name, k, l->key, sizeof(l->key))) ||
                    (rc = get_str(ld, lv, r->name, k, l->value, sizeof(l->value))))
                    return rc;
                if (!name_ok(l->key)) return fail(ld, lk, r->name, k, "bad label name '%s'", l->key);
            }
        } else {
            return fail(ld, kn, r->name, k,
                        "unknown key (name, metric, window, above, below, resolve_above, "
                        "resolve_below, min_samples, for, by, severity, drop_vs_baseline, "
                        "baseline, absent_for, repeat_every, labels, summary)");
        }
    }
    if (!has_metric) return fail(ld, map, r->name, "metric", "missing");
    if ((rc = resolve_metric(ld, cfg, metric_node, by_node, r))) return rc;
    if (has_above + has_below + has_drop + has_absent != 1)
        return fail(ld, map, r->name, NULL,
                    "exactly one of above, below, drop_vs_baseline, absent_for");
    if (!has_window) {
        if (cfg->window_cnt < 1) return fail(ld, map, r->name, "window", "no window sizes");
        r->window_ms = cfg->window_ms[0];
    }
    sp_duration_format(r->window_ms, r->window, sizeof(r->window));
    if (has_absent && r->absent_for_ms < r->window_ms)
        return fail(ld, win_node, r->name, "absent_for", "shorter than the window");
    r->kind = has_above   ? SP_RULE_ABOVE
              : has_below ? SP_RULE_BELOW
              : has_drop  ? SP_RULE_DROP
                          : SP_RULE_ABSENT;
    if (has_absent && r->nby)
        return fail(ld, map, r->name, "by", "absent_for is evaluated overall, not per value");
    if (has_ra && !(has_below || has_drop))
        return fail(ld, map, r->name, "resolve_above", "only with below or drop_vs_baseline");
    if (has_rb && !has_above)
        return fail(ld, map, r->name, "resolve_below", "only with above");
    if (has_baseline && !has_drop)
        return fail(ld, map, r->name, "baseline", "only with drop_vs_baseline");
    if (has_drop && !has_baseline) r->baseline = 12;
    /* a rate of a handful of samples is noise: 1 in 3 is 33 % */
    if (!has_min && !has_absent && r->mkind == SP_RULE_M_RATIO)
        r->min_samples = SP_RULE_RATIO_MIN_SAMPLES;
    r->resolve = has_above ? (has_rb ? rb : r->threshold)
                 : has_below ? (has_ra ? ra : r->threshold)
                             : (has_ra ? ra : NAN);
    /* Alertmanager expires a FIRING alert at its endsAt unless a repeat
     * pushes it on (producers/alert.h sp_alert_ends_at) */
    if (r->repeat_every_ms == 0 && !strcmp(cfg->alert_format, "alertmanager"))
        return fail(ld, map, r->name, "repeat_every",
                    "0 (never repeat) with alerting.format alertmanager: Alertmanager would "
                    "resolve the alert by itself while it still fires; set a repeat (default 1h)");
    if (has_above && r->resolve > r->threshold)
        return fail(ld, map, r->name, "resolve_below", "must not be above 'above'");
    if (has_below && r->resolve < r->threshold)
        return fail(ld, map, r->name, "resolve_above", "must not be below 'below'");
    return SP_OK;
}

int sp_rules_load(const sp_config_t *cfg, sp_rules_t *out, char *errstr, size_t errstr_size) {
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = SP_OK, have_doc = 0;
    FILE *fp = NULL;
    ld_t ld = {cfg->source, &doc, errstr, errstr_size};

    out->n = 0;
    if (!cfg->source[0]) return SP_OK;
    if (!(fp = fopen(cfg->source, "r"))) {
        snprintf(errstr, errstr_size, "%s: cannot open", cfg->source);
        return SP_ERR_CONFIG;
    }
    if (!yaml_parser_initialize(&parser)) {
        fclose(fp);
        return SP_ERR_NOMEM;
    }
    yaml_parser_set_input_file(&parser, fp);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(errstr, errstr_size, "%s:%zu: YAML syntax error: %s", cfg->source,
                 parser.problem_mark.line + 1, parser.problem ? parser.problem : "unknown");
        rc = SP_ERR_CONFIG;
        goto out;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) goto out; /* config.c reports it */
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        if (!scalar(k) || strcmp(scalar(k), "alerts")) continue;
        if (v->type == YAML_SCALAR_NODE && !*scalar(v)) continue; /* alerts: (empty) */
        if (v->type != YAML_SEQUENCE_NODE) {
            rc = fail(&ld, v, NULL, "alerts", "expected a list of rules");
            goto out;
        }
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            if (out->n == SP_RULES_MAX) {
                rc = fail(&ld, v, NULL, "alerts", "at most %d rules", SP_RULES_MAX);
                goto out;
            }
            sp_rule_t *r = &out->r[out->n];
            if ((rc = parse_rule(&ld, cfg, yaml_document_get_node(&doc, *it), r, out->n)))
                goto out;
            for (int j = 0; j < out->n; j++)
                if (!strcmp(out->r[j].name, r->name)) {
                    rc = fail(&ld, yaml_document_get_node(&doc, *it), r->name, "name",
                              "a second rule of that name (first at line %d)", out->r[j].line);
                    goto out;
                }
            out->n++;
        }
    }
out:
    if (rc != SP_OK) out->n = 0;
    if (have_doc) yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(fp);
    return rc;
}

/* ---- state ----------------------------------------------------------------- */

void sp_rule_state_init(sp_rule_state_t *s) {
    memset(s, 0, sizeof(*s));
    s->last_window = -1;
}

/* "A1 phase count last started fired emitted absent nbase next b0 b1 ..." */
size_t sp_rules_state_encode(const sp_rule_state_t *s, char *buf, size_t size) {
    int n = snprintf(buf, size, "A1 %d %d %lld %lld %lld %lld %lld %d %d", (int)s->phase, s->count,
                     (long long)s->last_window, (long long)s->started_at_ms,
                     (long long)s->fired_window, (long long)s->last_emit_ms,
                     (long long)s->absent_ms, s->nbase, s->base_next);
    if (n < 0 || (size_t)n >= size) return 0;
    size_t o = (size_t)n;
    for (int i = 0; i < s->nbase; i++) {
        n = snprintf(buf + o, size - o, " %.17g", s->base[i]);
        if (n < 0 || (size_t)n >= size - o) return 0;
        o += (size_t)n;
    }
    return o;
}

int sp_rules_state_decode(const char *buf, size_t len, sp_rule_state_t *s) {
    char tmp[2048], *p, *end;
    long long v[9];
    if (len >= sizeof(tmp) || len < 3 || memcmp(buf, "A1 ", 3)) return -1;
    memcpy(tmp, buf, len);
    tmp[len] = '\0';
    p = tmp + 3;
    for (int i = 0; i < 9; i++) {
        v[i] = strtoll(p, &end, 10);
        if (end == p) return -1;
        p = end;
    }
    sp_rule_state_init(s);
    if (v[0] < 0 || v[0] > SP_PHASE_FIRING || v[1] < 0 || v[1] > 1000000 || v[7] < 0 ||
        v[7] > SP_RULE_BASE_MAX || v[8] < 0 || v[8] >= SP_RULE_BASE_MAX)
        return -1;
    s->phase = (sp_phase_t)v[0];
    s->count = (int)v[1];
    s->last_window = v[2];
    s->started_at_ms = v[3];
    s->fired_window = v[4];
    s->last_emit_ms = v[5];
    s->absent_ms = v[6];
    s->nbase = (int)v[7];
    s->base_next = (int)v[8];
    for (int i = 0; i < s->nbase; i++) {
        s->base[i] = strtod(p, &end);
        if (end == p || !isfinite(s->base[i])) return -1;
        p = end;
    }
    return *p ? -1 : 0;
}

/* ---- evaluation ------------------------------------------------------------ */

static const char *field_value(const sp_window_view_t *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->fields[i], name)) return w->values[i];
    return NULL;
}

/* The value of field (+ "|key" when key is not ""); 0 = absent. */
static int get_num(const sp_window_view_t *w, const char *field, const char *key, double *out) {
    char name[320];
    snprintf(name, sizeof(name), "%s%s%s", field, *key ? "|" : "", key);
    const char *v = field_value(w, name);
    if (!v) return 0;
    char *end;
    *out = strtod(v, &end);
    return end != v && isfinite(*out);
}

/* The mean of histogram `hist` for key, in the unit of its name: _sum_ms /
 * _count / the unit's milliseconds; 0 = no data. _count and _sum_ms are
 * written together (famkit.c emit_row), so:
 *  - the window has `<hist>_sum` (overall or for key): a version before
 *    _sum_ms wrote part of it; its _count counts events the _sum_ms lacks,
 *    so no mean (docs/METRICS.md "Upgrading");
 *  - overall, _sum_ms absent with a _count: not written by this version
 *    either, no mean; per dimension value it is a sum of 0 ms (a
 *    per-dimension counter at 0 is absent). */
static int get_mean(const sp_window_view_t *w, const char *hist, size_t hlen, const char *key,
                    double *out) {
    char f[128];
    double sum = 0, cnt;
    snprintf(f, sizeof(f), "%.*s_sum", (int)hlen, hist);
    if (field_value(w, f) || (*key && get_num(w, f, key, &sum))) return 0;
    snprintf(f, sizeof(f), "%.*s_count", (int)hlen, hist);
    if (!get_num(w, f, key, &cnt) || !(cnt > 0)) return 0;
    snprintf(f, sizeof(f), "%.*s_sum_ms", (int)hlen, hist);
    if (!get_num(w, f, key, &sum)) {
        if (!*key) return 0;
        sum = 0;
    }
    *out = sum / cnt / (double)sp_hist_unit_ms(hist, hlen);
    return 1;
}

/* The metric's value for key: the field; <hist>_mean computed; a counter
 * absent from the hash is 0. Returns 0 for no data. */
static int metric_value(const sp_rule_t *r, const sp_window_view_t *w, const char *key,
                        double *out) {
    if (is_mean(r)) return get_mean(w, r->field, strlen(r->field) - 5, key, out);
    if (get_num(w, r->field, key, out)) return 1;
    if (!is_counter(r)) return 0;
    *out = 0;
    return 1;
}

/* Sample size of the metric for key (a counter absent from the hash is 0). */
static double sample_size(const sp_rule_t *r, const sp_window_view_t *w, const char *key,
                          double value) {
    char sample[128], *plus;
    double a = 0, b = 0;
    sample_of(r, sample, sizeof(sample));
    if (!sample[0]) return value;
    if ((plus = strchr(sample, '+'))) {
        *plus = '\0';
        get_num(w, plus + 1, key, &b);
    }
    get_num(w, sample, key, &a);
    return a + b;
}

int sp_rule_keys(const sp_rule_t *r, const sp_window_view_t *w, char (*keys)[160], int max) {
    int n = 0;
    if (!r->nby) {
        if (max > 0) keys[n++][0] = '\0';
        return n;
    }
    char scan[128];
    if (is_mean(r))
        snprintf(scan, sizeof(scan), "%.*s_count", (int)(strlen(r->field) - 5), r->field);
    else
        snprintf(scan, sizeof(scan), "%s", r->field);
    size_t fl = strlen(scan);
    for (int i = 0; i < w->n && n < max; i++) {
        const char *f = w->fields[i];
        if (strncmp(f, scan, fl) || f[fl] != '|') continue;
        const char *kv = f + fl + 1, *eq = strchr(kv, '=');
        if (!eq) continue;
        int ok = 0;
        for (int d = 0; d < r->nby; d++)
            ok |= strlen(r->by[d]) == (size_t)(eq - kv) && !memcmp(r->by[d], kv, (size_t)(eq - kv));
        if (ok && strlen(kv) < 160) snprintf(keys[n++], 160, "%s", kv);
    }
    return n;
}

void sp_rule_fingerprint(const sp_rule_t *r, const char *key, char out[32]) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    for (const char *p = r->name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    snprintf(out, 32, "%016llx", (unsigned long long)h);
}

static double base_mean(const sp_rule_state_t *st) {
    double s = 0;
    for (int i = 0; i < st->nbase; i++) s += st->base[i];
    return st->nbase ? s / st->nbase : NAN;
}

static void base_push(const sp_rule_t *r, sp_rule_state_t *st, double v) {
    int cap = r->baseline > 0 && r->baseline <= SP_RULE_BASE_MAX ? r->baseline : 1;
    st->base[st->base_next] = v;
    st->base_next = (st->base_next + 1) % cap;
    if (st->nbase < cap) st->nbase++;
}

/* How badly v misses ref in the rule's bad direction (>= 0). */
static double badness(const sp_rule_t *r, double v, double ref) {
    double d = r->kind == SP_RULE_ABOVE ? v - ref : ref - v;
    return d > 0 ? d : 0;
}

static void fmt_num(double v, char *buf, size_t size) {
    snprintf(buf, size, "%.4g", v);
}

/* Contributors of an overall rule: dimension values of the window scored
 * by share x badness. For a ratio or a mean (an average over its sample)
 * the badness is the value's distance from the rest of the window (the
 * overall without this value's sample): how far the overall would move if
 * this value behaved like the others. So a value that holds the whole
 * sample (every event is channel=web) explains nothing, and the device an
 * incident hit stands out. For counters and percentiles, against ref. */
static void contributors(const sp_rule_t *r, const sp_window_view_t *w, double ref,
                         double overall, double total, sp_alert_t *a) {
    /* per value: the field itself; for a percentile or a mean, the value's
     * own mean (percentiles are kept overall only) */
    char scan[128];
    size_t hl = is_percentile(r) ? strlen(r->field) - 4 : is_mean(r) ? strlen(r->field) - 5 : 0;
    if (hl)
        snprintf(scan, sizeof(scan), "%.*s_count", (int)hl, r->field);
    else
        snprintf(scan, sizeof(scan), "%s", r->field);
    size_t fl = strlen(scan);
    a->ncontrib = 0;
    if (r->kind == SP_RULE_ABSENT || !(total > 0)) return;
    char sample[128];
    sample_of(r, sample, sizeof(sample));
    int average = sample[0] && !is_percentile(r);
    double score[SP_ALERT_CONTRIB_MAX] = {0};
    for (int i = 0; i < w->n; i++) {
        const char *f = w->fields[i];
        if (strncmp(f, scan, fl) || f[fl] != '|') continue;
        const char *key = f + fl + 1;
        if (!strchr(key, '=') || strlen(key) >= sizeof(a->contrib[0].dimension)) continue;
        double v;
        if (hl ? !get_mean(w, r->field, hl, key, &v) : !get_num(w, r->field, key, &v)) continue;
        double n = sample_size(r, w, key, v), share = n / total, sc;
        if (average) {
            if (!(total - n > 0.5)) continue; /* the whole sample: no contrast */
            sc = share * badness(r, v, (overall * total - v * n) / (total - n));
        } else {
            sc = share * badness(r, v, ref);
        }
        if (!(sc > 0)) continue;
        int at = a->ncontrib;
        while (at > 0 && score[at - 1] < sc) at--;
        if (at >= SP_ALERT_CONTRIB_MAX) continue;
        int last = a->ncontrib < SP_ALERT_CONTRIB_MAX ? a->ncontrib : SP_ALERT_CONTRIB_MAX - 1;
        for (int j = last; j > at; j--) {
            a->contrib[j] = a->contrib[j - 1];
            score[j] = score[j - 1];
        }
        if (a->ncontrib < SP_ALERT_CONTRIB_MAX) a->ncontrib++;
        sp_alert_contrib_t *c = &a->contrib[at];
        memset(c, 0, sizeof(*c));
        snprintf(c->dimension, sizeof(c->dimension), "%s", key);
        c->has_value = 1;
        c->value = v;
        c->has_baseline = 1;
        c->baseline = ref;
        c->share = share > 1 ? 1 : share;
        score[at] = sc;
    }
}

static void summary(const sp_rule_t *r, const char *key, sp_alert_t *a, double ref,
                    int64_t absent_ms) {
    char v[32] = "no data", t[32], d[32];
    sp_duration_format(absent_ms, d, sizeof(d));
    size_t o = 0, cap = sizeof(a->summary);
    if (a->has_value) fmt_num(a->value, v, sizeof(v));
    fmt_num(ref, t, sizeof(t));
    const char *dir = r->kind == SP_RULE_ABOVE ? "above" : "below";
    if (a->state == SP_ALERT_RESOLVED)
        o = (size_t)snprintf(a->summary, cap, "resolved: %s%s%s %s in the %s window", r->metric,
                             *key ? " " : "", key, v, r->window);
    else if (r->kind == SP_RULE_ABSENT)
        o = (size_t)snprintf(a->summary, cap, "no %s%s%s for %s", r->field, *key ? " " : "", key,
                             d);
    else if (r->kind == SP_RULE_DROP)
        o = (size_t)snprintf(a->summary, cap, "%s%s%s %s (baseline %s)", r->metric,
                             *key ? " " : "", key, v, t);
    else
        o = (size_t)snprintf(a->summary, cap, "%s%s%s %s %s %s", r->metric, *key ? " " : "", key,
                             v, dir, t);
    if (r->summary[0] && o < cap) o += (size_t)snprintf(a->summary + o, cap - o, ": %s", r->summary);
    /* the two that explain most; the field has up to five */
    char of[128];
    sample_of(r, of, sizeof(of));
    if (!of[0] || strchr(of, '+')) snprintf(of, sizeof(of), "the sample");
    for (int i = 0; i < a->ncontrib && i < 2 && o < cap; i++) {
        char cv[32];
        fmt_num(a->contrib[i].value, cv, sizeof(cv));
        o += (size_t)snprintf(a->summary + o, cap - o, "%s%s (%s, %.0f %% of %s)",
                              i ? ", " : ": mostly ", a->contrib[i].dimension, cv,
                              100.0 * a->contrib[i].share, of);
    }
}

/* The alert message of a transition. */
static void message(const sp_rule_t *r, const char *key, const sp_window_view_t *w,
                    const sp_rule_state_t *st, int resolved, int has_value, double value,
                    double ref, double n, int64_t now_ms, sp_alert_t *a) {
    memset(a, 0, sizeof(*a));
    sp_rule_fingerprint(r, key, a->fingerprint);
    a->state = resolved ? SP_ALERT_RESOLVED : SP_ALERT_FIRING;
    snprintf(a->alert_id, sizeof(a->alert_id), "%s:%s:%lld", a->fingerprint,
             resolved ? "RESOLVED" : "FIRING",
             (long long)(resolved ? w->start_ms : st->fired_window));
    snprintf(a->rule, sizeof(a->rule), "%s", r->name);
    snprintf(a->severity, sizeof(a->severity), "%s", r->severity);
    snprintf(a->metric, sizeof(a->metric), "%s", r->metric);
    snprintf(a->dimension, sizeof(a->dimension), "%s", key);
    a->has_value = has_value;
    a->value = value;
    a->has_threshold = isfinite(ref);
    a->threshold = isfinite(ref) ? ref : 0;
    a->sample_size = (int64_t)llround(n);
    snprintf(a->window_size, sizeof(a->window_size), "%s", r->window);
    a->window_start_ms = w->start_ms;
    a->window_end_ms = w->end_ms;
    a->started_at_ms = st->started_at_ms;
    a->emitted_at_ms = now_ms;
    a->nlabels = r->nlabels;
    memcpy(a->labels, r->labels, sizeof(a->labels));
    if (!resolved && !*key && has_value) contributors(r, w, ref, value, n, a);
    summary(r, key, a, ref, st->absent_ms);
}

/* A window that decides nothing (no data, a sample below min_samples)
 * while the alert fires: the repeat is still sent when due, so that a
 * firing alert stays alive through quiet windows (its endsAt, docs/ALERTS.md).
 * It carries no value (the window has none that decides), the window's
 * sample size and the threshold (drop_vs_baseline: that of the current
 * baseline); nothing else moves. has: the window has a value; n: its
 * sample size. */
static int repeat_undecided(const sp_rule_t *r, const char *key, const sp_window_view_t *w,
                            sp_rule_state_t *st, int has, double n, int64_t now_ms,
                            sp_alert_t *out) {
    double ref = r->threshold;
    char why[96];
    if (st->phase != SP_PHASE_FIRING || r->repeat_every_ms <= 0 ||
        w->end_ms - st->last_emit_ms < r->repeat_every_ms)
        return 0;
    if (r->kind == SP_RULE_DROP) ref = st->nbase ? (1 - r->threshold) * base_mean(st) : NAN;
    if (!has) n = 0;
    st->last_emit_ms = w->end_ms;
    message(r, key, w, st, 0, 0, 0, ref, n, now_ms, out);
    if (has)
        snprintf(why, sizeof(why), "sample %.0f below min_samples %lld", n,
                 (long long)r->min_samples);
    else
        snprintf(why, sizeof(why), "no data");
    size_t cap = sizeof(out->summary);
    size_t o = (size_t)snprintf(out->summary, cap,
                                "%s%s%s still firing: no decision in the %s window (%s)", r->metric,
                                *key ? " " : "", key, r->window, why);
    if (r->summary[0] && o < cap) snprintf(out->summary + o, cap - o, ": %s", r->summary);
    return 1;
}

int sp_rule_eval(const sp_rule_t *r, const char *key, const sp_window_view_t *w,
                 sp_rule_state_t *st, int64_t now_ms, sp_alert_t *out) {
    double v = 0, n = 0, ref = r->threshold;
    int has = 0, bad = 0, good = 0;

    if (w->start_ms <= st->last_window) return 0; /* evaluated already */
    st->last_window = w->start_ms;
    if (r->kind == SP_RULE_ABSENT) {
        has = metric_value(r, w, key, &v);
        n = has ? v : 0;
        if (has && v > 0) {
            st->absent_ms = 0;
            good = 1;
        } else {
            st->absent_ms += w->end_ms - w->start_ms;
            bad = st->absent_ms >= r->absent_for_ms;
        }
        ref = NAN;
    } else {
        has = metric_value(r, w, key, &v);
        if (!has) /* no data: no decision (a firing alert's repeat aside) */
            return repeat_undecided(r, key, w, st, 0, 0, now_ms, out);
        n = sample_size(r, w, key, v);
        if (n < (double)r->min_samples) return repeat_undecided(r, key, w, st, 1, n, now_ms, out);
        if (r->kind == SP_RULE_ABOVE) {
            bad = v > r->threshold;
            good = v <= r->resolve;
        } else if (r->kind == SP_RULE_BELOW) {
            bad = v < r->threshold;
            good = v >= r->resolve;
        } else {
            if (st->nbase < r->baseline) { /* no decision until the baseline is full */
                base_push(r, st, v);
                return 0;
            }
            double mean = base_mean(st);
            ref = (1 - r->threshold) * mean;
            bad = v < ref;
            good = isfinite(r->resolve) ? v >= r->resolve : v >= ref;
            if (!bad) base_push(r, st, v);
        }
    }

    switch (st->phase) {
    case SP_PHASE_INACTIVE:
    case SP_PHASE_PENDING:
        if (!bad) {
            st->phase = SP_PHASE_INACTIVE;
            st->count = 0;
            return 0;
        }
        if (++st->count < r->for_windows && r->kind != SP_RULE_ABSENT) {
            st->phase = SP_PHASE_PENDING;
            return 0;
        }
        st->phase = SP_PHASE_FIRING;
        st->started_at_ms = w->end_ms;
        st->fired_window = w->start_ms;
        st->last_emit_ms = w->end_ms;
        message(r, key, w, st, 0, has, v, ref, n, now_ms, out);
        return 1;
    case SP_PHASE_FIRING:
        if (good) {
            message(r, key, w, st, 1, has, v, ref, n, now_ms, out);
            st->phase = SP_PHASE_INACTIVE;
            st->count = 0;
            return 1;
        }
        if (r->repeat_every_ms > 0 && w->end_ms - st->last_emit_ms >= r->repeat_every_ms) {
            st->last_emit_ms = w->end_ms;
            message(r, key, w, st, 0, has, v, ref, n, now_ms, out);
            return 1;
        }
        return 0;
    }
    return 0;
}

int sp_rule_same(const sp_rule_t *a, const sp_rule_t *b) {
    /* every field but the line; parse_rule zeroes a rule before filling it,
     * so the bytes past strings' ends and the padding are zeros in both */
    sp_rule_t x = *a, y = *b;
    x.line = y.line = 0;
    return memcmp(&x, &y, sizeof(x)) == 0;
}

int sp_rule_retire(const sp_rule_t *r, const char *key, const sp_rule_state_t *st,
                   int64_t window_end_ms, int64_t now_ms, sp_alert_t *out) {
    if (st->phase != SP_PHASE_FIRING || st->last_window < 0) return 0;
    sp_window_view_t w = {st->last_window, window_end_ms, 0, NULL, NULL};
    message(r, key, &w, st, 1, 0, 0, NAN, 0, now_ms, out);
    snprintf(out->summary, sizeof(out->summary),
             "resolved: rule %s removed or changed in the configuration (%s%s%s)", r->name,
             r->metric, *key ? " " : "", key);
    return 1;
}
