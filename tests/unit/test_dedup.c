/* test_dedup.c -- the bounded recent-id set: seen/insert, FIFO eviction, a
 * randomized comparison against a naive FIFO model (exercises the backward
 * shift deletion under heavy churn), fixed memory, hash 0, disabled set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "consumers/dedup.h"
#include "core/event.h"

static void test_basic(void **state) {
    (void)state;
    sp_dedup_t *dd = sp_dedup_new(8);
    assert_non_null(dd);
    uint64_t h = sp_hash64("evt-1", 5, 0);
    assert_int_equal(sp_dedup_seen(dd, h), 0);
    assert_int_equal(sp_dedup_seen(dd, h), 1);
    assert_int_equal(sp_dedup_seen(dd, h), 1); /* a hit does not insert again */
    assert_int_equal(sp_dedup_count(dd), 1);
    assert_int_equal(sp_dedup_seen(dd, sp_hash64("evt-2", 5, 0)), 0);
    assert_int_equal(sp_dedup_count(dd), 2);
    /* hash 0 is a valid hash */
    assert_int_equal(sp_dedup_seen(dd, 0), 0);
    assert_int_equal(sp_dedup_seen(dd, 0), 1);
    sp_dedup_destroy(dd);
    sp_dedup_destroy(NULL);
}

static void test_fifo_eviction(void **state) {
    (void)state;
    sp_dedup_t *dd = sp_dedup_new(4);
    for (uint64_t h = 1; h <= 4; h++) assert_int_equal(sp_dedup_seen(dd, h), 0);
    assert_int_equal(sp_dedup_count(dd), 4);
    assert_int_equal(sp_dedup_seen(dd, 5), 0); /* evicts 1 */
    assert_int_equal(sp_dedup_count(dd), 4);
    for (uint64_t h = 2; h <= 5; h++) assert_int_equal(sp_dedup_seen(dd, h), 1);
    /* hits do not refresh: 2 is still the oldest */
    assert_int_equal(sp_dedup_seen(dd, 6), 0); /* evicts 2 */
    assert_int_equal(sp_dedup_seen(dd, 3), 1);
    assert_int_equal(sp_dedup_seen(dd, 2), 0); /* forgotten; re-inserted, evicts 3 */
    assert_int_equal(sp_dedup_seen(dd, 3), 0); /* evicts 4 */
    assert_int_equal(sp_dedup_seen(dd, 5), 1);
    assert_int_equal(sp_dedup_seen(dd, 6), 1);
    assert_int_equal(sp_dedup_seen(dd, 1), 0); /* evicts 5 */
    assert_int_equal(sp_dedup_seen(dd, 5), 0);
    sp_dedup_destroy(dd);
}

/* Naive model: the last `max` distinct inserted values, oldest first. */
typedef struct model {
    uint64_t *v;
    size_t n, max;
} model_t;

static int model_seen(model_t *m, uint64_t h) {
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i] == h) return 1;
    if (m->n == m->max) {
        memmove(m->v, m->v + 1, (m->n - 1) * sizeof(*m->v));
        m->n--;
    }
    m->v[m->n++] = h;
    return 0;
}

static void test_against_model(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 2, 3, 7, 64, 100, 1000};
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t max = sizes[si];
        sp_dedup_t *dd = sp_dedup_new(max);
        model_t m = {calloc(max, sizeof(uint64_t)), 0, max};
        assert_non_null(m.v);
        for (int it = 0; it < 200000; it++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* a universe ~3x the set: many hits, many evictions; small
             * values collide in the table's home slots on purpose */
            uint64_t h = 1 + x % (3 * max); /* not 0: stored as 1, see dedup.c */
            if (it & 1) h *= 0x100000000ULL; /* same low bits, different high bits */
            assert_int_equal(sp_dedup_seen(dd, h), model_seen(&m, h));
            assert_int_equal(sp_dedup_count(dd), m.n);
        }
        free(m.v);
        sp_dedup_destroy(dd);
    }
}

static void test_bounded_memory(void **state) {
    (void)state;
    sp_dedup_t *dd = sp_dedup_new(1000);
    size_t mem = sp_dedup_memory(dd);
    assert_true(mem >= 1000 * 8 * 3 && mem < 1000 * 8 * 5 + 256); /* ring + table(2048) */
    for (uint64_t i = 0; i < 1000000; i++) assert_int_equal(sp_dedup_seen(dd, sp_hash64(&i, 8, 1)), 0);
    assert_int_equal(sp_dedup_count(dd), 1000);
    assert_int_equal(sp_dedup_memory(dd), mem);
    /* the last 1000 are remembered, the one before is not */
    for (uint64_t i = 1000000 - 1000; i < 1000000; i++)
        assert_int_equal(sp_dedup_seen(dd, sp_hash64(&i, 8, 1)), 1);
    uint64_t old = 1000000 - 1001;
    assert_int_equal(sp_dedup_seen(dd, sp_hash64(&old, 8, 1)), 0);
    sp_dedup_destroy(dd);

    /* default size: 1 M ids in about 24 MiB */
    dd = sp_dedup_new(1000000);
    assert_non_null(dd);
    assert_true(sp_dedup_memory(dd) <= 25u * 1024 * 1024);
    sp_dedup_destroy(dd);
}

static void test_disabled_and_limits(void **state) {
    (void)state;
    sp_dedup_t *dd = sp_dedup_new(0);
    assert_non_null(dd);
    assert_int_equal(sp_dedup_seen(dd, 42), 0);
    assert_int_equal(sp_dedup_seen(dd, 42), 0);
    assert_int_equal(sp_dedup_count(dd), 0);
    sp_dedup_destroy(dd);
    assert_null(sp_dedup_new(SIZE_MAX / 2));
    assert_int_equal(sp_dedup_seen(NULL, 1), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),          cmocka_unit_test(test_fifo_eviction),
        cmocka_unit_test(test_against_model),  cmocka_unit_test(test_bounded_memory),
        cmocka_unit_test(test_disabled_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
