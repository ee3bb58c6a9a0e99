/* hist.h -- the one log-bucket histogram of StorePulse (durations).
 *
 * A value v > 0 falls in bucket i = ceil(log(v) / log(g)) with
 * g = (1 + a) / (1 - a) and a = SP_HIST_REL_ERR. Every value of bucket i lies
 * in (g^(i-1), g^i]; the bucket's representative value 2 g^i / (g + 1) is
 * within a relative error a of every value in it. So a quantile read from
 * bucket counts is within a of the exact quantile's value (same rank).
 * Values <= 0 go to a bucket of their own (index SP_HIST_ZERO, value 0).
 *
 * Histograms merge by adding counts bucket by bucket: in Redis a histogram
 * is the hash fields "<name>:b<i>" (HINCRBY-able), so windows, instances and
 * sizes add up exactly. The unit of the buckets is the one the metric's name
 * ends with (_seconds, _minutes, _hours); durations themselves are whole
 * milliseconds (differences of event times), and their sums are kept in
 * milliseconds, as integers, so that they add up exactly whatever the
 * batches (see sp_hist_unit_ms). */
#ifndef SP_HIST_H
#define SP_HIST_H

#include <stddef.h>
#include <stdint.h>

#define SP_HIST_REL_ERR 0.01
#define SP_HIST_ZERO INT32_MIN /* bucket of values <= 0 */
#define SP_HIST_MIN_BUCKET (-1500) /* ~3e-7: smaller positive values clamp here */
#define SP_HIST_MAX_BUCKET 1500    /* ~1e13: larger values clamp here */

typedef struct sp_hist_bucket {
    int32_t idx;
    int64_t count;
} sp_hist_bucket_t;

int32_t sp_hist_index(double v);
/* Milliseconds per unit of the histogram `name` (its suffix: _seconds 1000,
 * _minutes 60000, _hours 3600000; anything else 1, i.e. milliseconds). */
int64_t sp_hist_unit_ms(const char *name, size_t len);
double sp_hist_value(int32_t idx);

/* Quantile q in [0, 1] of buckets (any order; sorted in place), by the
 * nearest-rank rule on the bucket counts. Returns 0 if there are none. */
double sp_hist_quantile(sp_hist_bucket_t *b, size_t n, double q);

/* Field suffix for bucket idx: "b12", "b-3", "bz" (zero bucket). */
int sp_hist_field(int32_t idx, char *buf, size_t size);
/* Parse a suffix written by sp_hist_field; 0 ok, -1 not a bucket field. */
int sp_hist_parse_field(const char *s, size_t len, int32_t *idx);

#endif
