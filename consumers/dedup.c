/* dedup.c -- the bounded recent-id set (see dedup.h).
 *
 * Two fixed arrays, both allocated in sp_dedup_new():
 *   - ring[max_ids]: the hashes in insertion order; `head` is the oldest.
 *     When the set is full, the oldest hash is removed from the table and its
 *     ring slot takes the new hash, so the set forgets in FIFO order.
 *   - table[2^k >= 2 * max_ids]: open addressing with linear probing, load
 *     factor <= 1/2, slot value 0 meaning empty. Deletion shifts the following
 *     entries of the probe run back (no tombstones), so lookups never slow down
 *     however long the set has been churning.
 * A hash of 0 is stored as 1 (0 marks empty slots); the two then collide,
 * which for 64-bit hashes of event ids is as likely as any other collision.
 * A collision makes a new event look like a duplicate: with 1 M ids and 64-bit
 * hashes that is about 1 in 2^44 per event.
 *
 * It deliberately does not age entries by time or persist anything: it only
 * catches redelivery and producer retries within the last max_ids events. */
#include "consumers/dedup.h"

#include <stdbool.h>
#include <stdlib.h>

struct sp_dedup {
    uint64_t *ring;  /* max_ids entries, FIFO */
    uint64_t *table; /* mask + 1 slots */
    size_t max_ids;
    size_t head;  /* oldest entry in ring */
    size_t count; /* entries in ring and table */
    size_t mask;
    unsigned shift; /* 64 - log2(table size) */
};

static inline size_t home(const sp_dedup_t *dd, uint64_t key) {
    /* Fibonacci hashing: spreads keys even if the caller's hash is weak. */
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> dd->shift);
}

sp_dedup_t *sp_dedup_new(size_t max_ids) {
    sp_dedup_t *dd = calloc(1, sizeof(*dd));
    if (!dd) return NULL;
    dd->max_ids = max_ids;
    if (max_ids == 0) return dd; /* disabled */
    if (max_ids > ((size_t)1 << 40)) goto fail;
    size_t cap = 2;
    unsigned bits = 1;
    while (cap < 2 * max_ids) {
        cap <<= 1;
        bits++;
    }
    dd->mask = cap - 1;
    dd->shift = 64 - bits;
    dd->ring = malloc(max_ids * sizeof(*dd->ring));
    dd->table = calloc(cap, sizeof(*dd->table));
    if (!dd->ring || !dd->table) goto fail;
    return dd;
fail:
    sp_dedup_destroy(dd);
    return NULL;
}

void sp_dedup_destroy(sp_dedup_t *dd) {
    if (!dd) return;
    free(dd->ring);
    free(dd->table);
    free(dd);
}

/* Slot of key, or of the empty slot ending its probe run. */
static size_t probe(const sp_dedup_t *dd, uint64_t key) {
    size_t i = home(dd, key);
    while (dd->table[i] != 0 && dd->table[i] != key) i = (i + 1) & dd->mask;
    return i;
}

static void table_remove(sp_dedup_t *dd, uint64_t key) {
    size_t i = probe(dd, key);
    if (dd->table[i] != key) return; /* cannot happen: ring and table agree */
    size_t j = i;
    for (;;) {
        j = (j + 1) & dd->mask;
        uint64_t k = dd->table[j];
        if (k == 0) break;
        size_t h = home(dd, k);
        /* k may move back to the hole at i unless its home lies cyclically
         * in (i, j]. */
        bool stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            dd->table[i] = k;
            i = j;
        }
    }
    dd->table[i] = 0;
}

int sp_dedup_seen(sp_dedup_t *dd, uint64_t hash) {
    if (!dd || dd->max_ids == 0) return 0;
    uint64_t key = hash ? hash : 1;
    size_t i = probe(dd, key);
    if (dd->table[i] == key) return 1;
    if (dd->count == dd->max_ids) {
        table_remove(dd, dd->ring[dd->head]);
        dd->ring[dd->head] = key;
        dd->head = (dd->head + 1) % dd->max_ids;
        i = probe(dd, key); /* the removal may have moved the run */
    } else {
        dd->ring[(dd->head + dd->count) % dd->max_ids] = key;
        dd->count++;
    }
    dd->table[i] = key;
    /* The next insertion into a full set removes the oldest hash: its slot
     * is known now, a random line of a large table, so it is fetched
     * while the caller decodes the next event. */
    if (dd->count == dd->max_ids) __builtin_prefetch(&dd->table[home(dd, dd->ring[dd->head])], 1);
    return 0;
}

void sp_dedup_prefetch(const sp_dedup_t *dd, uint64_t hash) {
    if (dd && dd->max_ids) __builtin_prefetch(&dd->table[home(dd, hash ? hash : 1)]);
}

size_t sp_dedup_count(const sp_dedup_t *dd) { return dd ? dd->count : 0; }

size_t sp_dedup_memory(const sp_dedup_t *dd) {
    if (!dd) return 0;
    size_t n = sizeof(*dd);
    if (dd->max_ids) n += dd->max_ids * sizeof(*dd->ring) + (dd->mask + 1) * sizeof(*dd->table);
    return n;
}
