/* test_hist.c -- the log-bucket histogram: bucket bounds, the documented
 * relative error of quantiles against exact ones, merging by addition, and
 * field names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/hist.h"

/* Every value is within the relative error of its bucket's value. */
static void test_bucket_error(void **state) {
    (void)state;
    double worst = 0;
    for (double v = 1e-4; v < 1e9; v *= 1.0007) {
        double r = sp_hist_value(sp_hist_index(v));
        double err = fabs(r - v) / v;
        if (err > worst) worst = err;
    }
    assert_true(worst <= SP_HIST_REL_ERR + 1e-9);
    assert_true(worst > SP_HIST_REL_ERR * 0.9); /* the bound is tight, not loose */
    assert_int_equal(sp_hist_index(0), SP_HIST_ZERO);
    assert_int_equal(sp_hist_index(-5), SP_HIST_ZERO);
    assert_true(sp_hist_value(SP_HIST_ZERO) == 0);
    assert_int_equal(sp_hist_index(1e300), SP_HIST_MAX_BUCKET);
    assert_int_equal(sp_hist_index(1e-300), SP_HIST_MIN_BUCKET);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Add v to a sparse bucket list. */
static size_t add(sp_hist_bucket_t *b, size_t n, double v, int64_t c) {
    int32_t i = sp_hist_index(v);
    for (size_t k = 0; k < n; k++)
        if (b[k].idx == i) {
            b[k].count += c;
            return n;
        }
    b[n].idx = i;
    b[n].count = c;
    return n + 1;
}

/* Quantiles from buckets are within the relative error of the exact
 * nearest-rank quantile, on skewed data (log-normal-like durations). */
static void test_quantiles_vs_exact(void **state) {
    (void)state;
    enum { N = 20000 };
    static double v[N];
    static sp_hist_bucket_t b[4096];
    size_t nb = 0;
    srand(7);
    for (int i = 0; i < N; i++) {
        double u = (rand() + 1.0) / (RAND_MAX + 2.0);
        v[i] = exp(3.0 + 2.0 * log(u / (1 - u))); /* wide, skewed */
        nb = add(b, nb, v[i], 1);
    }
    qsort(v, N, sizeof(v[0]), cmp_d);
    const double qs[] = {0, 0.01, 0.5, 0.9, 0.99, 1};
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        long rank = (long)ceil(qs[k] * N);
        if (rank < 1) rank = 1;
        double exact = v[rank - 1];
        double got = sp_hist_quantile(b, nb, qs[k]);
        assert_true(fabs(got - exact) / exact <= SP_HIST_REL_ERR + 1e-9);
    }
}

/* Two histograms merged by adding counts give the quantiles of the union. */
static void test_merge(void **state) {
    (void)state;
    sp_hist_bucket_t a[64], b[64], m[128];
    size_t na = 0, nb = 0, nm = 0;
    for (int i = 1; i <= 10; i++) na = add(a, na, i * 10.0, 1);   /* 10..100 */
    for (int i = 1; i <= 10; i++) nb = add(b, nb, i * 1000.0, 1); /* 1000..10000 */
    for (size_t k = 0; k < na; k++) nm = add(m, nm, sp_hist_value(a[k].idx), a[k].count);
    for (size_t k = 0; k < nb; k++) nm = add(m, nm, sp_hist_value(b[k].idx), b[k].count);
    double p50 = sp_hist_quantile(m, nm, 0.5); /* rank 10: 100 */
    double p55 = sp_hist_quantile(m, nm, 0.55); /* rank 11: 1000 */
    assert_true(fabs(p50 - 100) / 100 <= SP_HIST_REL_ERR);
    assert_true(fabs(p55 - 1000) / 1000 <= SP_HIST_REL_ERR);
    assert_true(sp_hist_quantile(m, 0, 0.5) == 0);
}

static void test_fields(void **state) {
    (void)state;
    char buf[16];
    int32_t idx;
    const int32_t cases[] = {0, 7, -3, SP_HIST_MAX_BUCKET, SP_HIST_MIN_BUCKET, SP_HIST_ZERO};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int n = sp_hist_field(cases[k], buf, sizeof(buf));
        assert_int_equal(sp_hist_parse_field(buf, (size_t)n, &idx), 0);
        assert_int_equal(idx, cases[k]);
    }
    assert_string_equal((sp_hist_field(12, buf, sizeof(buf)), buf), "b12");
    assert_int_equal(sp_hist_parse_field("b", 1, &idx), -1);
    assert_int_equal(sp_hist_parse_field("bx1", 3, &idx), -1);
    assert_int_equal(sp_hist_parse_field("b99999", 6, &idx), -1);
    assert_int_equal(sp_hist_parse_field("sessions", 8, &idx), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_error),
        cmocka_unit_test(test_quantiles_vs_exact),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
