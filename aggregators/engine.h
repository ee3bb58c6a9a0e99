/* engine.h -- event-time windows, watermarks and entity state.
 *
 * The engine owns: the per-partition watermark tracker, the open windows of
 * every configured size, the interned dimension values, the entity cache
 * (write-through over Redis, see SPEC §6 "State and time") and the metric
 * families plugged in through sp_family_t. It does no I/O: the run loop asks
 * it which entity keys a batch needs (prefetch), feeds the fetched values
 * back, applies events, and has it write the batch's effects into an
 * sp_commit_t. After a failed or fenced commit the run loop calls
 * sp_engine_reset() and replays from Redis's offsets.
 *
 * Lateness: an event is late when the window of the SMALLEST configured size
 * containing it is already closed (final pointer). Every larger window is
 * closed only after the smaller windows in it, so an event is applied to all
 * sizes or to none, and the sizes always add up. */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "aggregators/store.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"

typedef struct sp_engine sp_engine_t;

sp_engine_t *sp_engine_new(const sp_config_t *cfg, char *errstr, size_t errstr_size);
void sp_engine_destroy(sp_engine_t *e);

/* Drop everything not committed: open windows' deltas, entity cache,
 * partitions. Pointers and watermark must be reloaded by the caller. */
void sp_engine_reset(sp_engine_t *e);

/* ---- time ---- */
/* Partition (topic_idx, partition) assigned; max_et from Redis or -1. */
void sp_engine_partition_add(sp_engine_t *e, int topic_idx, int32_t partition, int64_t max_et,
                             int64_t now_ms);
void sp_engine_partition_remove(sp_engine_t *e, int topic_idx, int32_t partition);
/* Lag of a partition (high watermark - next offset); -1 when unknown. */
void sp_engine_partition_lag(sp_engine_t *e, int topic_idx, int32_t partition, int64_t lag);
int64_t sp_engine_partition_max_et(const sp_engine_t *e, int topic_idx, int32_t partition);
/* Keys of the pointers to load on start/reset: the final pointer of every
 * family and size, then the first pointer of every size (earliest window
 * ever opened, so windows opened by an earlier process still close). keys
 * must hold (families + 1) x SP_MAX_WINDOWS. Returns the count. */
int sp_engine_pointer_keys(const sp_engine_t *e, const char **keys);
/* Restore the pipeline watermark and the pointers (values of those keys in
 * order, -1 where absent). */
void sp_engine_restore(sp_engine_t *e, int64_t watermark, const int64_t *vals);
#define SP_ENGINE_POINTER_KEYS_MAX (8 * SP_MAX_WINDOWS)
int64_t sp_engine_watermark(const sp_engine_t *e);
/* Wall time of the batch being applied (a partition's last-event time). */
void sp_engine_set_now(sp_engine_t *e, int64_t now_ms);
/* Drop the entity cache (all committed): on revoke another owner may change
 * those entities in Redis. */
void sp_engine_forget_entities(sp_engine_t *e);
/* Start of the newest final window of a size (-1: none). */
int64_t sp_engine_final_start(const sp_engine_t *e, int size_idx);
/* Recompute the watermark (idle partitions, wall clock) and close windows
 * whose end + allowed_lateness (+ the family's delay) it passed. Returns
 * windows closed. = update_watermark + close; the run loop runs the due
 * timers between the two so a decision lands before its window closes. */
int sp_engine_advance(sp_engine_t *e, int64_t now_ms);
void sp_engine_update_watermark(sp_engine_t *e, int64_t now_ms);
int sp_engine_close(sp_engine_t *e);
int sp_engine_open_windows(const sp_engine_t *e);

/* Start of the newest window of a size final for a family (-1: none). */
int64_t sp_engine_family_final_start(const sp_engine_t *e, int fam, int size_idx);
/* Start of the earliest window of size size_idx ever opened (-1: none). */
int64_t sp_engine_first_start(const sp_engine_t *e, int size_idx);

/* ---- timers (entity kinds with a timer, see family.h) ----
 * After advance: if sp_engine_timers_due() is not INT64_MIN, read the due
 * members of sp_engine_timers_key() up to it (sp_store_timers_due with the
 * value prefix sp_engine_state_prefix()), hand each to timer_fetched, set
 * the returned next score with timers_next; then sp_engine_fire() runs the
 * timers due (also those armed in this batch). Returns how many ran. */
const char *sp_engine_timers_key(const sp_engine_t *e);
const char *sp_engine_state_prefix(const sp_engine_t *e);
int64_t sp_engine_timers_due(const sp_engine_t *e);
void sp_engine_timer_fetched(sp_engine_t *e, const char *member, size_t mlen, int64_t score,
                             const char *val, size_t vlen);
void sp_engine_timers_next(sp_engine_t *e, int64_t next_due);
/* On start/reset: the lowest score in the timer set (INT64_MAX: none). */
void sp_engine_restore_timers(sp_engine_t *e, int64_t next_due);
int sp_engine_fire(sp_engine_t *e);

/* ---- a batch ---- */
/* Classify before anything else: SP_OK or SP_ERR_LATE (its window of the
 * smallest size is closed). Event-id dedup is the consumer's (dedup.h). */
int sp_engine_admit(sp_engine_t *e, const sp_event_t *ev);
/* Collect the entity keys this event needs that are not in memory. */
void sp_engine_want(sp_engine_t *e, const sp_event_t *ev);
int sp_engine_want_count(const sp_engine_t *e);
const char *const *sp_engine_want_keys(const sp_engine_t *e, const size_t **lens);
/* Prefetch reply for want key idx (val NULL: absent in Redis). */
void sp_engine_fetched(sp_engine_t *e, int idx, const char *val, size_t len);
/* Apply an admitted event. SP_OK or SP_ERR_DUPLICATE (a business fact
 * already counted: an order placed twice). Updates the partition's max
 * event time. */
int sp_engine_apply(sp_engine_t *e, const sp_event_t *ev);
/* Write counters, closes, entity changes, pointers and gauges into c, and
 * forget the deltas. Evicts cold entities over the cache budget. */
int sp_engine_build_commit(sp_engine_t *e, sp_commit_t *c);

typedef struct sp_engine_stats {
    int64_t entities;      /* in the cache */
    int64_t open_windows;
    int64_t dim_values;    /* interned */
} sp_engine_stats_t;
void sp_engine_stats(const sp_engine_t *e, sp_engine_stats_t *out);

/* Window of time t for size index: its start, its end (= the next window's
 * start) and its index. Sizes that are whole days follow local midnights of
 * windows.timezone (DST days are 23 or 25 hours); other sizes are aligned to
 * the UTC epoch. */
int64_t sp_engine_window_start(sp_engine_t *e, int size_idx, int64_t t);
int64_t sp_engine_window_end(sp_engine_t *e, int size_idx, int64_t start);
int64_t sp_engine_window_index(sp_engine_t *e, int size_idx, int64_t t);

#endif
