/* hist.c -- log-bucket histogram (see hist.h for the error bound).
 *
 * Why this shape: fixed relative error over many orders of magnitude (a first
 * response in 20 s and a delivery in 6 days both to 1 %), a bucket index that
 * is a pure function of the value (no state, nothing to configure per
 * metric), and exact merging by addition, which Redis does with HINCRBY.
 * Sparse: only buckets that were hit exist as hash fields. Not here: bounded
 * bucket counts per histogram beyond the clamp at SP_HIST_MIN/MAX_BUCKET
 * (about 3,000 buckets at most; a real metric uses a few dozen). */
#include "aggregators/hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double gamma_(void) { return (1.0 + SP_HIST_REL_ERR) / (1.0 - SP_HIST_REL_ERR); }

int32_t sp_hist_index(double v) {
    if (!(v > 0)) return SP_HIST_ZERO; /* also NaN */
    double i = ceil(log(v) / log(gamma_()));
    if (i < SP_HIST_MIN_BUCKET) return SP_HIST_MIN_BUCKET;
    if (i > SP_HIST_MAX_BUCKET) return SP_HIST_MAX_BUCKET;
    return (int32_t)i;
}

static int ends_with(const char *s, size_t len, const char *sfx) {
    size_t n = strlen(sfx);
    return len >= n && !memcmp(s + len - n, sfx, n);
}

int64_t sp_hist_unit_ms(const char *name, size_t len) {
    if (ends_with(name, len, "_seconds")) return 1000;
    if (ends_with(name, len, "_minutes")) return 60000;
    if (ends_with(name, len, "_hours")) return 3600000;
    return 1;
}

double sp_hist_value(int32_t idx) {
    if (idx == SP_HIST_ZERO) return 0;
    double g = gamma_();
    return 2.0 * pow(g, idx) / (g + 1.0);
}

static int by_idx(const void *a, const void *b) {
    int32_t x = ((const sp_hist_bucket_t *)a)->idx, y = ((const sp_hist_bucket_t *)b)->idx;
    return (x > y) - (x < y);
}

double sp_hist_quantile(sp_hist_bucket_t *b, size_t n, double q) {
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) total += b[i].count > 0 ? b[i].count : 0;
    if (total == 0) return 0;
    qsort(b, n, sizeof(*b), by_idx);
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    /* nearest rank: the smallest value with at least ceil(q * total) values
     * at or below it (rank 1 for q = 0) */
    int64_t rank = (int64_t)ceil(q * (double)total);
    if (rank < 1) rank = 1;
    int64_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].count <= 0) continue;
        seen += b[i].count;
        if (seen >= rank) return sp_hist_value(b[i].idx);
    }
    return sp_hist_value(b[n - 1].idx);
}

int sp_hist_field(int32_t idx, char *buf, size_t size) {
    if (idx == SP_HIST_ZERO) return snprintf(buf, size, "bz");
    return snprintf(buf, size, "b%d", (int)idx);
}

int sp_hist_parse_field(const char *s, size_t len, int32_t *idx) {
    char tmp[16], *end;
    if (len < 2 || len >= sizeof(tmp) || s[0] != 'b') return -1;
    if (len == 2 && s[1] == 'z') {
        *idx = SP_HIST_ZERO;
        return 0;
    }
    memcpy(tmp, s + 1, len - 1);
    tmp[len - 1] = '\0';
    long v = strtol(tmp, &end, 10);
    if (*end || end == tmp || v < SP_HIST_MIN_BUCKET || v > SP_HIST_MAX_BUCKET) return -1;
    *idx = (int32_t)v;
    return 0;
}
