/* store.h -- the Redis side: commit builder, fenced atomic commit, prefetch.
 *
 * Only store.c includes <hiredis.h>. One connection, pipelined: the run loop
 * sends batch N's commit without waiting, decodes batch N+1, sends its
 * prefetch, then reads both replies in order. So a batch costs at most two
 * round trips (prefetch, commit) and consumption goes on while a commit is
 * in flight.
 *
 * A commit is ONE EVALSHA of a Lua script that, atomically:
 *  1. checks the fence: for every partition in the batch, the stored next
 *     offset in sp:{NS}:offsets (field "topic/partition") must be absent or
 *     equal to the batch's expected offset; otherwise nothing is applied
 *     but health fenced_commits += 1, and the reply is the error
 *     "FENCED <field> <stored>";
 *  2. sets each partition's next offset and max event time
 *     (sp:{NS}:wm field "topic/partition");
 *  3. applies entity state: SET key value PX ttl, DEL key;
 *  4. for each window hash: reads the current values of the changed fields
 *     and of the ratio inputs (HMGET), adds deltas, writes counters, sets and
 *     ratios in one HSET, deletes ratios whose denominator is 0 and
 *     per-dimension counters (a '|' in the field name) that are 0 (HDEL),
 *     and PEXPIREs the hash;
 *  5. raises "max pointers" (SET key v if v > current: latest/final);
 *  6. HINCRBY health counters, HSET gauges;
 *  7. PUBLISHes the update message.
 *  8. APPENDs (the recent event ids), rotated past a size;
 *  9. HINCRBY on any key (gauges, cohort tables); ZADD / ZREM (timers);
 * 10. HSET on any key (the alerts' state and outbox, sp_commit_hput).
 * Ratios: kind 'r' = num/den as "%.6g"; 'p' = 100 num/den; 'f' = num/(num +
 * den); 'a' = integer average, rounded half away from zero; 'q' = a
 * quantile of the histogram fields "<num>:b<i>" (hist.h), den = q as a
 * decimal, computed after the counters are written. Absent when the
 * denominator (or the histogram) is empty. Deltas are integers, so that
 * counters add up to the same bytes however events fall into batches (a
 * counter that already holds a fraction is written "%.15g"). Counters are
 * exact up to 2^53 (Lua numbers). */
#ifndef SP_STORE_H
#define SP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/event.h"

typedef struct sp_commit sp_commit_t;
typedef struct sp_store sp_store_t;

/* ---- commit builder (no I/O; all bytes are copied in) ---- */
sp_commit_t *sp_commit_new(void);
void sp_commit_reset(sp_commit_t *c);
void sp_commit_destroy(sp_commit_t *c);
int sp_commit_is_empty(const sp_commit_t *c);

/* Fence + new position of one partition; field is "topic/partition". */
void sp_commit_offset(sp_commit_t *c, const char *field, int64_t expected, int64_t next,
                      int64_t max_event_time);
/* Entity state: value NULL => DEL key. */
void sp_commit_kv(sp_commit_t *c, const char *key, const void *value, size_t len, int64_t ttl_ms);
/* Start a window hash section; the following incr/set/ratio calls go to it. */
void sp_commit_hash(sp_commit_t *c, const char *key, int64_t ttl_ms);
void sp_commit_incr(sp_commit_t *c, const char *field, size_t field_len, int64_t delta);
void sp_commit_hset(sp_commit_t *c, const char *field, const char *value);
void sp_commit_ratio(sp_commit_t *c, const char *field, char kind, const char *num_field,
                     const char *den_field);
/* Field = the q-quantile (0..1) of histogram hist_name in this hash. */
void sp_commit_quantile(sp_commit_t *c, const char *field, const char *hist_name, double q);
/* HINCRBY key field delta (any key of the namespace). */
void sp_commit_hincr(sp_commit_t *c, const char *key, const char *field, int64_t delta);
/* HSET key field value (any key of the namespace; alert state, outbox). */
void sp_commit_hput(sp_commit_t *c, const char *key, const char *field, const char *value);
/* Timers: ZADD key score member / ZREM key member. */
void sp_commit_zadd(sp_commit_t *c, const char *key, const char *member, size_t len,
                    int64_t score);
void sp_commit_zrem(sp_commit_t *c, const char *key, const char *member, size_t len);
/* SET key value if value > current (or key absent). */
void sp_commit_max(sp_commit_t *c, const char *key, int64_t value);
/* SET key value if value < current (or key absent). */
void sp_commit_min(sp_commit_t *c, const char *key, int64_t value);
void sp_commit_health(sp_commit_t *c, const char *field, int64_t delta); /* sp:{NS}:health */
void sp_commit_gauge(sp_commit_t *c, const char *field, int64_t value);  /* sp:{NS}:gauges */
void sp_commit_publish(sp_commit_t *c, const char *message);             /* sp:{NS}:updates */
/* APPEND bytes to key; once it is longer than rotate_at bytes it is renamed
 * to "<key>:old" (replacing the older one): a bounded, two-generation log. */
void sp_commit_append(sp_commit_t *c, const char *key, const void *bytes, size_t len,
                      int64_t rotate_at);
/* What hash `key` holds once this commit is applied, given what it holds
 * before (n fields and values, as HGETALL gives them): the script's
 * arithmetic and formats exactly (steps 4, 6, 9 and 10; the fields' order
 * may differ from Redis'), no I/O. For window hashes and sp:{NS}:gauges
 * (gauges 1: step 6 writes it), not for keys of the other steps. cb gets
 * the result (count 0: empty). 0, or -1 out of memory or a commit too
 * large to send (cb not called). */
int sp_commit_hash_after(const sp_commit_t *c, const char *key, int gauges,
                         const char *const *fields, const char *const *values, int n,
                         void (*cb)(void *opaque, const char *const *fields,
                                    const char *const *values, int count),
                         void *opaque);
/* Redis commands this commit will run inside the script (for stats). */
int64_t sp_commit_command_estimate(const sp_commit_t *c);

/* ---- the connection ---- */
sp_store_t *sp_store_new(const sp_config_t *cfg, char *errstr, size_t errstr_size);
void sp_store_destroy(sp_store_t *st);
/* Drop and re-open the connection (after SP_ERR_IO); reloads the script. */
int sp_store_reconnect(sp_store_t *st, char *errstr, size_t errstr_size);
const char *sp_store_ns(const sp_store_t *st); /* "sp:{store}" prefix */

/* Blocking: stored next offset and max event time per "topic/partition"
 * field; -1 where absent. */
int sp_store_load_offsets(sp_store_t *st, const char *const *fields, int n, int64_t *next_out,
                          int64_t *max_et_out, char *errstr, size_t errstr_size);
/* Blocking GET of a binary value (absent: *len = 0). *out is malloc'd;
 * the caller frees it. */
int sp_store_get_bytes(sp_store_t *st, const char *key, char **out, size_t *len, char *errstr,
                       size_t errstr_size);
/* Blocking GET of integer keys (pointers); -1 where absent. */
int sp_store_get_ints(sp_store_t *st, const char *const *keys, int n, int64_t *out, char *errstr,
                      size_t errstr_size);

/* Pipelined: queue the commit (EVALSHA) and flush; do not wait. */
int sp_store_commit_send(sp_store_t *st, const sp_commit_t *c, char *errstr, size_t errstr_size);
/* Read the oldest outstanding commit reply. SP_OK, SP_ERR_FENCED (errstr
 * names the partition) or SP_ERR_IO. */
int sp_store_commit_recv(sp_store_t *st, char *errstr, size_t errstr_size);

/* Pipelined prefetch: MGET of keys (one command). */
int sp_store_mget_send(sp_store_t *st, const char *const *keys, const size_t *lens, int n,
                       char *errstr, size_t errstr_size);
/* Read its reply; cb(opaque, index, value or NULL, len) per key. */
int sp_store_mget_recv(sp_store_t *st,
                       void (*cb)(void *opaque, int idx, const char *val, size_t len),
                       void *opaque, char *errstr, size_t errstr_size);

/* Blocking (no reply outstanding): members of the sorted set key with score
 * <= upto, lowest first, at most limit; for each, cb(opaque, member, score,
 * value of the key <value_prefix><member> or NULL). *next_out: the score of
 * the first member not returned (INT64_MAX: none). */
int sp_store_timers_due(sp_store_t *st, const char *key, const char *value_prefix, int64_t upto,
                        int limit,
                        void (*cb)(void *opaque, const char *member, size_t mlen, int64_t score,
                                   const char *val, size_t vlen),
                        void *opaque, int64_t *next_out, char *errstr, size_t errstr_size);
/* Blocking: lowest score of the sorted set (INT64_MAX: empty). */
int sp_store_zmin(sp_store_t *st, const char *key, int64_t *out, char *errstr, size_t errstr_size);

/* Blocking, pipelined: HGETALL of n keys; cb(opaque, i, fields, values,
 * count) once per key (count 0: absent or empty). */
int sp_store_hgetall(sp_store_t *st, const char *const *keys, int n,
                     void (*cb)(void *opaque, int idx, const char *const *fields,
                                const char *const *values, int count),
                     void *opaque, char *errstr, size_t errstr_size);

/* One hash write of sp_store_hwrite: HSET key f v ... (n pairs), or with
 * del, HDEL key f ... (values unused). */
typedef struct sp_hwrite {
    const char *key;
    int del;
    int n;
    const char *const *fields;
    const char *const *values;
} sp_hwrite_t;

/* Blocking: the writes in one MULTI/EXEC (all or nothing). */
int sp_store_hwrite(sp_store_t *st, const sp_hwrite_t *w, int nw, char *errstr,
                    size_t errstr_size);

/* Number of replies outstanding (commits + prefetches). */
int sp_store_pending(const sp_store_t *st);

/* ---- the namespace lease (one active instance per namespace) ----
 * With an owner id set, every commit first checks that sp:{NS}:owner holds
 * that id (else the reply is "FENCED owner <holder>", health fenced_commits
 * += 1, nothing else is written) and extends its TTL to lease_ms. owner ""
 * (the default) disables the check. */
void sp_store_set_owner(sp_store_t *st, const char *owner, int64_t lease_ms);

/* Renew the lease if it is ours; with acquire, also take it if free.
 * *held: ours afterwards; holder (may be NULL): the current holder's id.
 * Blocking: no pipelined replies may be outstanding. */
int sp_store_lease(sp_store_t *st, int acquire, int *held, char *holder, size_t holder_size,
                   char *errstr, size_t errstr_size);

/* Delete the lease if it is ours (clean shutdown: a standby takes over at once). */
int sp_store_lease_release(sp_store_t *st, char *errstr, size_t errstr_size);

/* Redis commands the last successful commit ran inside the script; -1
 * before the first. */
int64_t sp_store_last_commit_commands(const sp_store_t *st);

#endif
