/* dedup.h -- bounded set of recently seen event ids (64-bit hashes).
 *
 * Holds at most max_ids hashes; when full, the oldest inserted hash is
 * forgotten first (FIFO). Memory is allocated once at creation and never
 * grows; every operation is O(1) expected. The caller hashes event_id with
 * sp_hash64(). Not thread-safe: one set per consuming thread. */
#ifndef SP_DEDUP_H
#define SP_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_dedup sp_dedup_t;

/* max_ids 0 gives a disabled set (nothing is ever "seen"). NULL on OOM or an
 * absurd size. */
sp_dedup_t *sp_dedup_new(size_t max_ids);
void sp_dedup_destroy(sp_dedup_t *dd); /* NULL is a no-op */

/* 1 if hash is in the set (the set is left unchanged); otherwise inserts it,
 * evicting the oldest hash if the set is full, and returns 0. */
int sp_dedup_seen(sp_dedup_t *dd, uint64_t hash);

/* Start fetching the table line sp_dedup_seen(hash) will read first: call
 * it for a batch's hashes, then sp_dedup_seen for each (the set is large
 * and accessed at random, so each first read is a cache miss). */
void sp_dedup_prefetch(const sp_dedup_t *dd, uint64_t hash);

size_t sp_dedup_count(const sp_dedup_t *dd);  /* hashes held now */
size_t sp_dedup_memory(const sp_dedup_t *dd); /* bytes allocated, fixed at creation */

#endif
