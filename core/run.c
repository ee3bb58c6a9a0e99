/* run.c -- `storepulse run`: the run loop that wires the stages together.
 *
 * One thread. Each turn of the loop is one batch:
 *   1. poll up to pipeline.batch_max messages (rd_kafka_consume_batch_queue,
 *      at most pipeline.batch_timeout); rebalance callbacks run inside it;
 *   2. decode each message; bad ones go to the dead-letter topic with their
 *      reason; late ones (their window is final) too; repeated event ids are
 *      dropped; the rest are kept and their entity keys gathered;
 *   3. send the prefetch (one MGET) of entity keys not in memory, then read
 *      the reply of the PREVIOUS batch's commit (it ran in Redis while we
 *      decoded) and the prefetch reply;
 *   4. apply the events, advance the watermark, close windows;
 *   5. wait for the broker's acknowledgement of this batch's dead letters
 *      (a batch is committed only once its dead letters are safe);
 *   6. build and send this batch's commit (one EVALSHA: counters, entity
 *      state, pointers and the next offset of every partition involved,
 *      fenced on the stored offsets) without waiting for its reply. The
 *      alert rules evaluate the windows it makes final first (one HGETALL
 *      round trip in a batch that closes windows a rule watches, per 256
 *      windows) and their state and outbox entries go into the same commit.
 * So a batch costs two Redis round trips (plus the timer reads and the
 * alerts' reads when windows close) and consumption goes on while a commit
 * is in flight.
 *
 * Recovery is one path: when a commit fails (Redis unreachable, fenced, a
 * dead letter not acknowledged) everything in memory is dropped, the
 * connection is re-opened with backoff, and every assigned partition seeks
 * back to the offset stored in Redis. Redis is the checkpoint; Kafka's
 * committed offsets are also committed after each Redis commit, for lag
 * tools only. A rebalance (callbacks run inside the poll) drops the messages
 * that poll returned and points every partition back at our position: the
 * batch consume of librdkafka 2.0 can return messages fetched before it.
 * Offsets that jump ahead of a partition's position are counted
 * (offset_gaps), and a partition whose log ends below its stored offset is
 * stopped until an operator resets it ("behind the checkpoint"): new data is
 * never silently taken for replays.
 *
 * The recent event-id set (dedup) is checkpointed too: each commit appends
 * the batch's admitted event-id hashes (8 bytes each) to
 * sp:{NS}:state:recent_ids, rotated to a second generation at half of
 * dedup.max_ids, and a start or reset rebuilds the set from both. One extra
 * command per batch buys exact duplicate handling across crashes.
 *
 * Not here: scale-out re-keying (pipeline.instances: many), the alert
 * rules and their delivery (producers/alerter.c), HTTP. */
#include "core/run.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregators/engine.h"
#include "aggregators/rules.h"
#include "aggregators/store.h"
#include "consumers/decode.h"
#include "consumers/dedup.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "core/kafka.h"
#include "core/log.h"
#include "core/startup.h"
#include "producers/alerter.h"

#define MAX_TOPICS SP_STREAM__COUNT

#define DLQ_FLUSH_MS       30000 /* dead letters of a batch: acknowledged within this */
#define DLQ_BACKOFF_MIN_MS 500   /* then the batch is replayed after 0.5 s, 1 s, ... */
#define DLQ_BACKOFF_MAX_MS 30000

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t hup_requested; /* SIGHUP: reopen the log, read the rules again */

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void on_hup(int sig) {
    (void)sig;
    hup_requested = 1;
}

/* A log line at most once a minute, saying how many it stands for. */
typedef struct ratelog {
    int64_t last_mono;
    int64_t pending;
} ratelog_t;

/* Count one occurrence; 1 if it should be logged now (then *n is how many
 * since the last line, this one included). */
static int ratelog_due(ratelog_t *rl, int64_t *n) {
    int64_t now = sp_clock_mono_ms();
    rl->pending++;
    if (rl->last_mono && now - rl->last_mono < 60000) return 0;
    *n = rl->pending;
    rl->last_mono = now;
    rl->pending = 0;
    return 1;
}

/* The topics the pipeline needs, watched (see "topics" below). */
#define TOPICS_MAX (MAX_TOPICS + 2)

typedef enum { TW_INPUT, TW_DEADLETTER, TW_ALERTS } tw_role_t;
typedef enum { TW_UNKNOWN = 0, TW_PRESENT, TW_MISSING } tw_state_t;

typedef struct topic_watch {
    const char *name; /* the config's */
    tw_role_t role;
    int stream;       /* TW_INPUT: its stream */
    tw_state_t state; /* as the last listing found it */
    tw_state_t shown; /* as last logged */
    int partitions;
    rd_kafka_resp_err_t err; /* why it is missing: its metadata error, or unknown topic */
    int64_t logged_mono;     /* last ERROR line while missing (0: none yet) */
} topic_watch_t;

typedef struct topics {
    topic_watch_t w[TOPICS_MAX];
    int n;
    int64_t next_mono;    /* next listing */
    int dlq_refused;      /* dead letters refused (topic not there) since the last listing */
    char missing[1600];   /* names of the missing topics, comma-separated */
    char published[1600]; /* as written to health topics_missing */
    int published_ok;     /* published holds what Redis has */
    int fails;            /* listings failed in a row */
    ratelog_t fail_log;   /* listings that failed */
} topics_t;

typedef struct pos {
    int topic_idx;
    int32_t partition;
    int64_t committed; /* next offset as stored in Redis (-1: none) */
    int64_t next;      /* next offset to process (-1: unknown yet) */
    int touched;       /* in the batch being built */
    /* The partition's log ends below the stored offset (see "behind the
     * checkpoint" below): paused, nothing of it processed. */
    int behind;
    int paused;                 /* paused by us (rd_kafka_pause_partitions) */
    int64_t log_lo, log_hi;     /* its log start and end when last queried */
    int log_ok;                 /* they were read by the last query */
    int64_t below_checked_mono; /* last log query for a message below `next` */
    int check_pending;          /* loaded: its log end still to be compared */
    ratelog_t behind_log;
} pos_t;

typedef struct run {
    sp_config_t *cfg;
    const char *cfgpath; /* read again on SIGHUP */
    int rules_reload;    /* SIGHUP seen: read the alert rules again when the loop can */
    rd_kafka_t *rk;      /* consumer */
    rd_kafka_t *dlq;     /* dead-letter producer */
    sp_alerter_t *al;    /* alert rules, outbox and alert producer */
    sp_rules_t *rules;
    rd_kafka_queue_t *q;
    sp_broker_t *broker;
    sp_decoder_t *dec;
    sp_dedup_t *dedup;
    sp_engine_t *eng;
    sp_store_t *st;
    sp_commit_t *commit;
    sp_arena_t *arena;
    sp_event_t *evs;
    rd_kafka_message_t **msgs;
    char prefix[96];
    char wm_key[128];
    char dedup_key[128];
    unsigned char *idlog; /* event-id hashes admitted in this batch, 8 bytes each */
    uint64_t *evhash;     /* event-id hash of each decoded event of the batch */
    size_t nidlog;

    char topic_names[MAX_TOPICS][256];
    sp_stream_t topic_stream[MAX_TOPICS];
    sp_format_t topic_format[MAX_TOPICS];
    int ntopics;

    pos_t *pos;
    int npos, pos_cap;

    int commit_in_flight;
    rd_kafka_topic_partition_list_t *koff_in_flight; /* Kafka offsets of that commit */
    int64_t reset_offset; /* where a partition with no offset in Redis starts */
    int64_t wm_committed; /* watermark in the last commit */
    int64_t commit_sent_mono;
    int need_reset;
    int cooperative;
    int dlq_failed; /* delivery failures since the last check */
    /* dead letters refused or unacknowledged: the batch is replayed, with
     * backoff, until they are acknowledged (nothing commits meanwhile) */
    rd_kafka_resp_err_t dlq_err; /* the last delivery error (0: none, a timeout) */
    int64_t dlq_failing_since;   /* wall-clock ms of the first failed attempt; 0: not failing */
    int64_t dlq_attempts;        /* failed attempts since then */
    int64_t dlq_backoff_ms;
    int64_t dlq_retry_mono; /* the replay waits until then */
    int dlq_hold;           /* every partition paused meanwhile */
    int64_t h_dlq_failures; /* failed attempts, carried to health by the next commit */
    char dlq_reason[256];
    int dlq_health_dirty; /* deadletter_error / _failing_since_ms to be written */
    ratelog_t dlq_log;

    /* health deltas of the batch being built */
    int64_t h_consumed[MAX_TOPICS];
    int64_t h_decoded, h_late, h_dup, h_dlq[SP_DLQ__COUNT];
    /* Redis outages survived (reconnects after a failure, time spent
     * reconnecting): kept until a commit carries them to health */
    int64_t h_redis_reconnects, h_redis_down_ms;
    int64_t h_redis_inflight[2]; /* in the commit in flight; back to the above if it fails */

    /* the namespace lease: one active instance per namespace */
    char owner[96];
    int64_t lease_ms;
    int64_t lease_mono; /* last time the lease was known to be ours */
    int standby;        /* waiting for the lease */
    int total_parts;    /* partitions of the input topics (-1: unknown) */
    int dlq_in_batch;
    int rebalanced;     /* a rebalance callback ran since the last batch */
    int64_t h_gaps;     /* offset gaps seen (health offset_gaps) */
    int64_t h_replayed; /* messages below a partition's position, dropped (health) */
    int nbehind;        /* partitions behind the checkpoint */
    unsigned behind_gen, behind_published; /* changes of that set; as last written */
    int64_t behind_check_mono;             /* last re-check of those partitions */
    ratelog_t gap_log, late_log;

    unsigned not_ready;           /* SP_NR_* bits: why this instance is not doing its job */
    unsigned not_ready_published; /* as last written to sp:{NS}:health (~0u: never) */
    unsigned not_ready_logged;    /* as last logged (~0u: never) */

    topics_t tp; /* the topics the pipeline needs: there or not */
} run_t;

/* ---- readiness ----------------------------------------------------- *
 *
 * An instance is ready when it consumes and commits. Each cause that stops
 * it is one bit; whoever detects a cause sets it and whoever sees it gone
 * clears it. The set is published to sp:{NS}:health as `ready` (1/0) and
 * `not_ready` (the causes' names, comma-separated; "" when ready) when it
 * changes, outside the commit (a cause such as an unwritable dead-letter
 * topic is exactly what keeps commits from happening), and logged. */
enum {
    SP_NR_STANDBY = 1u << 0,    /* waiting for the namespace lease */
    SP_NR_REDIS = 1u << 1,      /* Redis unreachable or the commit failing */
    SP_NR_DEADLETTER = 1u << 2, /* dead letters not acknowledged by the broker */
    SP_NR_TOPIC = 1u << 3,      /* an input, dead-letter or alert topic missing */
    SP_NR_OFFSETS = 1u << 4,    /* a partition's log is behind the stored offset */
    SP_NR__COUNT_BITS = 5
};

static const char *const not_ready_names[SP_NR__COUNT_BITS] = {
    "standby", "redis", "deadletter_unwritable", "topic_missing", "offsets_behind_checkpoint"};

static void topics_publish(run_t *r);
static int topics_hold_deadletters(run_t *r);
static void dlq_acked(run_t *r);

static void ready_set(run_t *r, unsigned bit, int on) {
    if (on)
        r->not_ready |= bit;
    else
        r->not_ready &= ~bit;
}

static void not_ready_text(unsigned bits, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < SP_NR__COUNT_BITS; i++)
        if ((bits & (1u << i)) && o < size)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? "," : "", not_ready_names[i]);
}

/* Log a change of readiness at once; write it to Redis when it differs
 * from what Redis holds (only when nothing is in flight on the connection;
 * tried again at the next turn if the write fails). */
static void ready_publish(run_t *r) {
    char why[256], err[256], key[128];
    if (r->not_ready != r->not_ready_logged) {
        not_ready_text(r->not_ready, why, sizeof(why));
        if (r->not_ready)
            sp_log(SP_LOG_WARN, "not ready: %s", why);
        else if (r->not_ready_logged != ~0u)
            sp_log(SP_LOG_INFO, "ready");
        r->not_ready_logged = r->not_ready;
    }
    topics_publish(r);
    /* the health hash is the namespace's: a standby leaves it to the active one */
    if (r->standby || !r->st || sp_store_pending(r->st) > 0) return;
    snprintf(key, sizeof(key), "%s:health", r->prefix);
    if (r->dlq_health_dirty) { /* written here: no commit happens while it fails */
        char since[24];
        snprintf(since, sizeof(since), "%lld", (long long)r->dlq_failing_since);
        const char *f[] = {"deadletter_failing_since_ms", "deadletter_error"};
        const char *v[] = {since, r->dlq_failing_since ? r->dlq_reason : ""};
        sp_hwrite_t w = {key, 0, 2, f, v};
        if (sp_store_hwrite(r->st, &w, 1, err, sizeof(err)) == SP_OK) r->dlq_health_dirty = 0;
    }
    if (r->not_ready == r->not_ready_published && r->behind_gen == r->behind_published) return;
    not_ready_text(r->not_ready, why, sizeof(why));
    /* partitions behind the checkpoint: how many, and which (the first
     * ones that fit) */
    char nb[16], list[512];
    size_t o = 0;
    snprintf(nb, sizeof(nb), "%d", r->nbehind);
    list[0] = '\0';
    for (int i = 0; i < r->npos && o < sizeof(list) - 1; i++)
        if (r->pos[i].behind)
            o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s/%d", o ? "," : "",
                                  r->topic_names[r->pos[i].topic_idx], (int)r->pos[i].partition);
    const char *fields[] = {"ready", "not_ready", "partitions_behind_checkpoint",
                            "behind_checkpoint"};
    const char *values[] = {r->not_ready ? "0" : "1", why, nb, list};
    sp_hwrite_t w = {key, 0, 4, fields, values};
    unsigned gen = r->behind_gen;
    if (sp_store_hwrite(r->st, &w, 1, err, sizeof(err)) == SP_OK) {
        r->not_ready_published = r->not_ready;
        r->behind_published = gen;
    }
}

/* ---- partitions ---------------------------------------------------- */

static int topic_index(run_t *r, const char *name) {
    for (int i = 0; i < r->ntopics; i++)
        if (strcmp(r->topic_names[i], name) == 0) return i;
    return -1;
}

static pos_t *pos_find(run_t *r, int ti, int32_t p) {
    for (int i = 0; i < r->npos; i++)
        if (r->pos[i].topic_idx == ti && r->pos[i].partition == p) return &r->pos[i];
    return NULL;
}

static pos_t *pos_add(run_t *r, int ti, int32_t p) {
    pos_t *ps = pos_find(r, ti, p);
    if (ps) return ps;
    if (r->npos == r->pos_cap) {
        int nc = r->pos_cap ? r->pos_cap * 2 : 64;
        pos_t *n = realloc(r->pos, (size_t)nc * sizeof(*n));
        if (!n) return NULL;
        r->pos = n;
        r->pos_cap = nc;
    }
    ps = &r->pos[r->npos++];
    memset(ps, 0, sizeof(*ps));
    ps->topic_idx = ti;
    ps->partition = p;
    ps->committed = ps->next = -1;
    return ps;
}

static void pos_field(run_t *r, const pos_t *ps, char *buf, size_t size) {
    snprintf(buf, size, "%s/%d", r->topic_names[ps->topic_idx], (int)ps->partition);
}

/* Wait for the reply of the commit in flight, if any. */
static void drain_commit(run_t *r) {
    char err[512];
    if (!r->commit_in_flight) return;
    r->commit_in_flight = 0;
    int rc = sp_store_commit_recv(r->st, err, sizeof(err));
    rd_kafka_topic_partition_list_t *koff = r->koff_in_flight;
    r->koff_in_flight = NULL;
    if (rc != SP_OK) { /* not counted yet: carried by a later commit */
        r->h_redis_reconnects += r->h_redis_inflight[0];
        r->h_redis_down_ms += r->h_redis_inflight[1];
    }
    r->h_redis_inflight[0] = r->h_redis_inflight[1] = 0;
    sp_alerter_committed(r->al, rc == SP_OK);
    ready_set(r, SP_NR_REDIS, rc != SP_OK && rc != SP_ERR_FENCED);
    /* A commit goes through only once the dead letters of its batches are
     * acknowledged: a refused batch is either in it now, or no longer ours
     * (its partition moved). Either way the dead-letter trouble is over. */
    if (rc == SP_OK && (r->dlq_failing_since || (r->not_ready & SP_NR_DEADLETTER))) dlq_acked(r);
    if (rc == SP_OK) {
        r->lease_mono = sp_clock_mono_ms(); /* the commit extended the lease */
        /* Redis holds the checkpoint; Kafka's copy is for lag tools only,
         * and only ever what Redis already has. */
        if (koff && koff->cnt > 0) rd_kafka_commit(r->rk, koff, 1);
        if (koff) rd_kafka_topic_partition_list_destroy(koff);
        return;
    }
    if (koff) rd_kafka_topic_partition_list_destroy(koff);
    sp_log(SP_LOG_WARN, "commit failed (%s): %s; replaying from Redis offsets", sp_err_str(rc),
           err);
    r->need_reset = rc == SP_ERR_IO ? 2 : 1;
}

/* ---- behind the checkpoint ---------------------------------------- *
 *
 * A partition whose log ends below the offset stored in Redis (the topic
 * was re-created, the cluster replaced, the log truncated) holds new data
 * under offsets we have already passed: read from there, every message
 * would look like a replay. So such a partition is "behind the checkpoint":
 * it is paused and nothing of it is processed, the instance is not ready
 * (offsets_behind_checkpoint), health holds partitions_behind_checkpoint
 * and behind_checkpoint (which ones), and an ERROR line a minute per
 * partition names both offsets and the command to run. Only an operator can
 * tell whether the new data is to be read from its start, from a time, or
 * skipped (`storepulse offsets --reset`, refused while an instance holds
 * the namespace lease); a log end that grows past the stored offset later
 * does not make the partition right again, it only hides the gap.
 *
 * It is found two ways: after an assignment (once the rebalance callback
 * has returned) and after a reset, the log end of every partition with a
 * stored offset is queried (two requests per broker, 5 s at most);
 * and a message below a partition's position, or a log end below it in
 * the fetcher's figures, makes the same query: after a fetch out of range
 * (the log moved under a running instance, or the query above failed)
 * librdkafka's auto.offset.reset starts the partition again at its log
 * start, and those messages used to be dropped as replays without a word.
 * Below the position with the log end at or past it is a
 * message fetched again (a rebalance, a seek): dropped, counted in health
 * replayed_dropped. Out of range with the log start past our position
 * (retention deleted messages before we read them) jumps ahead, counted in
 * offset_gaps as any other gap.
 *
 * While a partition is stopped it keeps its last watermark (the stored max
 * event time): it is never idle, since its data is not read, so windows the
 * new data belongs to do not close without it. Every 10 s the stored
 * offsets of stopped partitions are read again: a changed one reloads the
 * positions (the same path as after a failed commit), which checks again. */

/* The log start and end of n partitions: two ListOffsets requests per
 * leader however many they are (one query per partition would wait behind
 * each broker's long-polling fetch, ~fetch.wait.max.ms apiece). A
 * partition whose figures could not be read gets log_ok 0. */
static int query_logs(run_t *r, pos_t *const *ps, int n, int timeout_ms, char *err, size_t errsz) {
    int rc = SP_OK;
    for (int i = 0; i < n; i++)
        ps[i]->log_ok = 1;
    for (int end = 0; end < 2 && rc == SP_OK; end++) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, r->topic_names[ps[i]->topic_idx], ps[i]->partition)
                ->offset = end ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(r->rk, l, timeout_ms);
        if (e) {
            snprintf(err, errsz, "%s", rd_kafka_err2str(e));
            rc = SP_ERR_IO;
        }
        for (int i = 0; rc == SP_OK && i < n; i++) {
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
                l, r->topic_names[ps[i]->topic_idx], ps[i]->partition);
            if (!tp || tp->err || tp->offset < 0) {
                ps[i]->log_ok = 0;
                snprintf(err, errsz, "%s/%d: %s", r->topic_names[ps[i]->topic_idx],
                         (int)ps[i]->partition, tp ? rd_kafka_err2str(tp->err) : "no reply");
            } else if (end) {
                ps[i]->log_hi = tp->offset;
            } else {
                ps[i]->log_lo = tp->offset;
            }
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (rc != SP_OK)
        for (int i = 0; i < n; i++)
            ps[i]->log_ok = 0;
    return rc;
}

/* The loud line, at most once a minute per partition. */
static void behind_report(run_t *r, pos_t *ps) {
    char field[300];
    int64_t n;
    if (!ratelog_due(&ps->behind_log, &n)) return;
    pos_field(r, ps, field, sizeof(field));
    sp_log(SP_LOG_ERROR,
           "offsets: %s is behind the checkpoint: its log ends at offset %lld (starts at %lld) "
           "but the offset stored in Redis is %lld, so its new messages would be taken for "
           "replays (topic re-created, cluster replaced or log truncated?). Nothing of this "
           "partition is processed until an operator decides: stop every instance of namespace "
           "%s, then see `storepulse offsets -c CONFIG` and run `storepulse offsets -c CONFIG "
           "--reset %s --to earliest|latest|TIME`",
           field, (long long)ps->log_hi, (long long)ps->log_lo,
           (long long)(ps->next > ps->committed ? ps->next : ps->committed), r->cfg->ns, field);
}

static void behind_set(run_t *r, pos_t *ps, int on) {
    if (ps->behind == on) return;
    ps->behind = on;
    r->nbehind += on ? 1 : -1;
    r->behind_gen++;
    ready_set(r, SP_NR_OFFSETS, r->nbehind > 0);
    if (on) {
        behind_report(r, ps);
    } else {
        char field[300];
        pos_field(r, ps, field, sizeof(field));
        sp_log(SP_LOG_INFO,
               "offsets: %s is no longer behind the checkpoint (stored %lld, log %lld..%lld)",
               field, (long long)ps->committed, (long long)ps->log_lo, (long long)ps->log_hi);
    }
}

/* Recount after the table changed (revocations, reloads). */
static void behind_recount(run_t *r) {
    int n = 0;
    for (int i = 0; i < r->npos; i++)
        n += r->pos[i].behind;
    if (n != r->nbehind) r->behind_gen++;
    r->nbehind = n;
    ready_set(r, SP_NR_OFFSETS, n > 0);
}

/* Pause the partitions behind the checkpoint (all of them while a batch
 * whose dead letters were refused waits for its replay: nothing is fetched
 * only to be dropped) and resume the others that we paused (all the others with resume_all: after
 * an assignment, whatever state librdkafka kept from an earlier one). */
static void sync_pauses(run_t *r, int resume_all) {
    rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_t *rl = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < r->npos; i++) {
        pos_t *ps = &r->pos[i];
        int hold = ps->behind || r->dlq_hold;
        if (hold && !ps->paused)
            rd_kafka_topic_partition_list_add(pl, r->topic_names[ps->topic_idx], ps->partition);
        else if (!hold && (ps->paused || resume_all))
            rd_kafka_topic_partition_list_add(rl, r->topic_names[ps->topic_idx], ps->partition);
        ps->paused = hold;
    }
    if (pl->cnt) rd_kafka_pause_partitions(r->rk, pl);
    if (rl->cnt) rd_kafka_resume_partitions(r->rk, rl);
    rd_kafka_topic_partition_list_destroy(pl);
    rd_kafka_topic_partition_list_destroy(rl);
}

/* After positions are loaded (load_positions marks them): which have a log
 * ending below their stored offset. Run from the loop, never inside the
 * rebalance callback (a broker that does not answer would hold the group's
 * rebalance for the query's timeout); bounded by a 5 s budget, partitions
 * not checked in time are caught by their fetch (check_below). */
static void check_logs(run_t *r) {
    char err[256] = "";
    int n = 0;
    pos_t **ps = malloc(((size_t)r->npos + 1) * sizeof(*ps));
    if (!ps) return;
    for (int i = 0; i < r->npos; i++) {
        pos_t *p = &r->pos[i];
        if (!p->check_pending) continue;
        p->check_pending = 0;
        if (p->committed < 0)
            behind_set(r, p, 0);
        else
            ps[n++] = p;
    }
    if (n > 0 && query_logs(r, ps, n, 5000, err, sizeof(err)) != SP_OK)
        sp_log(SP_LOG_WARN, "offsets: reading the log offsets of %d partition(s): %s", n, err);
    for (int i = 0; i < n; i++)
        if (ps[i]->log_ok) behind_set(r, ps[i], ps[i]->log_hi < ps[i]->committed);
    free(ps);
}

/* Does the log of ps end below our position? Asked when a message comes
 * below the position (fetched again before a rebalance or a seek, or the
 * log moved under us: after a fetch out of range librdkafka's
 * auto.offset.reset started the partition again at its log start) and when
 * the fetcher's last log end is below it (an empty re-created partition
 * sends nothing). The broker answers, not the fetcher's cache (at most one
 * query a second per partition). */
static void check_below(run_t *r, pos_t *ps) {
    char err[256];
    int64_t now = sp_clock_mono_ms();
    if (ps->behind || ps->next < 0 || now - ps->below_checked_mono < 1000) return;
    ps->below_checked_mono = now;
    if (query_logs(r, &ps, 1, 5000, err, sizeof(err)) != SP_OK || !ps->log_ok) {
        char field[300];
        pos_field(r, ps, field, sizeof(field));
        sp_log(SP_LOG_WARN, "offsets: %s: reading its log offsets: %s", field, err);
        return;
    }
    if (ps->log_hi >= ps->next) return;
    behind_set(r, ps, 1);
    sync_pauses(r, 0);
}

/* Every 10 s while partitions are stopped: their stored offsets again (an
 * operator may have changed them), and the loud line. */
static void check_behind(run_t *r) {
    char err[512], (*fields)[300] = NULL;
    const char **fp = NULL;
    pos_t **bps = NULL;
    int64_t *next = NULL, *maxet = NULL, *lo = NULL, *hi = NULL;
    int n = 0;
    if (!r->nbehind || r->need_reset || r->standby) return;
    if (sp_clock_mono_ms() - r->behind_check_mono < 10000) return;
    drain_commit(r); /* the next batch would read its reply first anyway */
    if (r->need_reset || sp_store_pending(r->st) > 0) return;
    r->behind_check_mono = sp_clock_mono_ms();
    size_t nb = (size_t)r->nbehind;
    fields = malloc(nb * sizeof(*fields));
    fp = malloc(nb * sizeof(*fp));
    bps = malloc(nb * sizeof(*bps));
    next = malloc(nb * sizeof(*next));
    maxet = malloc(nb * sizeof(*maxet));
    lo = malloc(nb * sizeof(*lo));
    hi = malloc(nb * sizeof(*hi));
    if (!fields || !fp || !bps || !next || !maxet || !lo || !hi) goto out;
    for (int i = 0; i < r->npos && n < r->nbehind; i++)
        if (r->pos[i].behind) {
            pos_field(r, &r->pos[i], fields[n], sizeof(fields[n]));
            fp[n] = fields[n];
            bps[n] = &r->pos[i];
            lo[n] = r->pos[i].log_lo;
            hi[n] = r->pos[i].log_hi;
            n++;
        }
    if (sp_store_load_offsets(r->st, fp, n, next, maxet, err, sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_WARN, "offsets: re-reading stored offsets: %s", err);
        goto out;
    }
    for (int k = 0; k < n; k++)
        if (next[k] != bps[k]->committed) {
            sp_log(SP_LOG_WARN,
                   "offsets: the stored offset of %s changed (%lld -> %lld): reloading positions",
                   fields[k], (long long)bps[k]->committed, (long long)next[k]);
            r->need_reset = 1;
        }
    if (r->need_reset) goto out;
    query_logs(r, bps, n, 2000, err, sizeof(err));
    for (int k = 0; k < n; k++) {
        if (!bps[k]->log_ok) bps[k]->log_lo = lo[k], bps[k]->log_hi = hi[k]; /* the last ones */
        behind_report(r, bps[k]);
    }
out:
    free(fields);
    free(fp);
    free(bps);
    free(next);
    free(maxet);
    free(lo);
    free(hi);
}

/* Load stored offsets and watermarks of parts from Redis into our table and
 * into the partition list (offset to start from). */
static int load_positions(run_t *r, rd_kafka_topic_partition_list_t *parts) {
    char err[512];
    int n = parts->cnt, rc = SP_OK;
    char **fields = calloc((size_t)n + 1, sizeof(char *));
    int64_t *next = calloc((size_t)n + 1, sizeof(int64_t));
    int64_t *maxet = calloc((size_t)n + 1, sizeof(int64_t));
    if (!fields || !next || !maxet) {
        rc = SP_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        fields[i] = malloc(300);
        if (!fields[i]) {
            rc = SP_ERR_NOMEM;
            goto out;
        }
        snprintf(fields[i], 300, "%s/%d", parts->elems[i].topic, (int)parts->elems[i].partition);
    }
    for (int attempt = 0;; attempt++) {
        rc = sp_store_load_offsets(r->st, (const char *const *)fields, n, next, maxet, err,
                                   sizeof(err));
        if (rc == SP_OK || stop_requested) break;
        sp_log(SP_LOG_WARN, "loading offsets from Redis failed: %s (retrying)", err);
        usleep((useconds_t)(attempt < 10 ? 100000 * (attempt + 1) : 1000000));
        sp_store_reconnect(r->st, err, sizeof(err));
    }
    if (rc != SP_OK) goto out;
    int64_t now = sp_clock_now_ms();
    for (int i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int ti = topic_index(r, tp->topic);
        if (ti < 0) continue;
        pos_t *ps = pos_add(r, ti, tp->partition);
        if (!ps) {
            rc = SP_ERR_NOMEM;
            goto out;
        }
        ps->committed = next[i];
        ps->next = next[i];
        ps->touched = 0;
        ps->check_pending = 1; /* check_logs */
        tp->offset = next[i] >= 0 ? next[i] : r->reset_offset;
        sp_engine_partition_add(r->eng, ti, tp->partition, maxet[i], now);
        sp_log(SP_LOG_INFO, "assigned %s from offset %lld", fields[i], (long long)next[i]);
    }
out:
    if (fields)
        for (int i = 0; i < n; i++)
            free(fields[i]);
    free(fields);
    free(next);
    free(maxet);
    return rc;
}

/* Rebuild the recent event-id set from its log in Redis (the older
 * generation first), so a restart drops the same duplicates an
 * uninterrupted run would. */
static int load_dedup(run_t *r) {
    char err[512], key[160];
    const char *gens[2] = {key, r->dedup_key};
    snprintf(key, sizeof(key), "%s:old", r->dedup_key);
    sp_dedup_destroy(r->dedup);
    r->dedup = sp_dedup_new((size_t)r->cfg->dedup_max_ids);
    if (!r->dedup) return SP_ERR_NOMEM;
    for (int g = 0; g < 2; g++) {
        char *buf;
        size_t len;
        int rc = sp_store_get_bytes(r->st, gens[g], &buf, &len, err, sizeof(err));
        if (rc != SP_OK) {
            sp_log(SP_LOG_WARN, "loading the event-id log: %s", err);
            return rc;
        }
        for (size_t i = 0; i + 8 <= len; i += 8) {
            uint64_t h = 0;
            for (int b = 0; b < 8; b++)
                h |= (uint64_t)(unsigned char)buf[i + b] << (8 * b);
            sp_dedup_seen(r->dedup, h);
        }
        free(buf);
    }
    return SP_OK;
}

static void timer_cb(void *opaque, const char *member, size_t mlen, int64_t score, const char *val,
                     size_t vlen) {
    sp_engine_timer_fetched(opaque, member, mlen, score, val, vlen);
}

/* Run the entity timers the watermark passed: those in Redis (read in one
 * round trip, at most a bounded number per batch) and those armed in this
 * batch. */
static int fire_timers(run_t *r, int *fired) {
    char err[512];
    int64_t upto = sp_engine_timers_due(r->eng);
    if (upto != INT64_MIN) {
        int64_t next;
        int rc =
            sp_store_timers_due(r->st, sp_engine_timers_key(r->eng), sp_engine_state_prefix(r->eng),
                                upto, 5000, timer_cb, r->eng, &next, err, sizeof(err));
        if (rc != SP_OK) {
            sp_log(SP_LOG_WARN, "reading due timers failed: %s", err);
            return rc;
        }
        sp_engine_timers_next(r->eng, next);
    }
    *fired = sp_engine_fire(r->eng);
    return SP_OK;
}

/* Restore the watermark and final pointers from Redis. */
static int load_pointers(run_t *r) {
    char err[512];
    const char *keys[SP_ENGINE_POINTER_KEYS_MAX + 1];
    int64_t vals[SP_ENGINE_POINTER_KEYS_MAX + 1], next_due = INT64_MAX;
    int n = sp_engine_pointer_keys(r->eng, keys);
    keys[n] = r->wm_key;
    for (int attempt = 0;; attempt++) {
        int rc = sp_store_get_ints(r->st, keys, n + 1, vals, err, sizeof(err));
        if (rc == SP_OK)
            rc = sp_store_zmin(r->st, sp_engine_timers_key(r->eng), &next_due, err, sizeof(err));
        if (rc == SP_OK) break;
        if (stop_requested) return rc;
        sp_log(SP_LOG_WARN, "reading pointers from Redis failed: %s (retrying)", err);
        usleep((useconds_t)(attempt < 10 ? 100000 * (attempt + 1) : 1000000));
        sp_store_reconnect(r->st, err, sizeof(err));
    }
    sp_engine_restore(r->eng, vals[n] >= 0 ? vals[n] : INT64_MIN, vals);
    sp_engine_restore_timers(r->eng, next_due);
    return load_dedup(r);
}

/* Partitions of the input topics, from the cluster's metadata (-1 if it
 * cannot be read). */
static int count_partitions(run_t *r) {
    const struct rd_kafka_metadata *md = NULL;
    int n = 0;
    if (rd_kafka_metadata(r->rk, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR || !md)
        return -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (topic_index(r, md->topics[i].topic) >= 0 && !md->topics[i].err)
            n += md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    run_t *r = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    drain_commit(r);
    r->rebalanced = 1;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        r->total_parts = count_partitions(r);
        load_positions(r, parts);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                sp_log(SP_LOG_ERROR, "incremental assign: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        sync_pauses(r, 1);
    } else {
        sp_engine_forget_entities(r->eng); /* the next owner may change them */
        for (int i = 0; i < parts->cnt; i++) {
            int ti = topic_index(r, parts->elems[i].topic);
            pos_t *ps = ti >= 0 ? pos_find(r, ti, parts->elems[i].partition) : NULL;
            if (ps) *ps = r->pos[--r->npos];
            if (ti >= 0) sp_engine_partition_remove(r->eng, ti, parts->elems[i].partition);
            sp_log(SP_LOG_INFO, "revoked %s/%d", parts->elems[i].topic,
                   (int)parts->elems[i].partition);
        }
        behind_recount(r);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
    }
}

/* ---- dead letters -------------------------------------------------- */

static void dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    run_t *r = opaque;
    /* purged ones are those of a batch given up already (dlq_unacked) */
    if (m->err && m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
        m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        r->dlq_failed++;
        /* logged with the batch, at most once a minute: the broker's own
         * error when there is one (a refused Produce can also fail the
         * messages still queued with a local error, e.g. when the topic's
         * partitions vanish from the metadata meanwhile) */
        if (!r->dlq_err || (r->dlq_err < 0 && m->err > 0)) r->dlq_err = m->err;
        sp_log(SP_LOG_DEBUG, "dead letter not delivered: %s", rd_kafka_err2str(m->err));
    }
}

static void dead_letter(run_t *r, const rd_kafka_message_t *m, sp_dlq_reason_t reason,
                        const char *detail) {
    char part[16], off[24];
    const char *rsn = sp_dlq_reason_str(reason);
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (topics_hold_deadletters(r)) return; /* the batch is not committed */
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    rd_kafka_header_add(h, "source_topic", -1, topic, -1);
    rd_kafka_header_add(h, "source_partition", -1, part, -1);
    rd_kafka_header_add(h, "source_offset", -1, off, -1);
    rd_kafka_header_add(h, "reason", -1, rsn, -1);
    rd_kafka_header_add(h, "detail", -1, detail, -1);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            r->dlq, RD_KAFKA_V_TOPIC(r->cfg->topic_deadletter),
            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(r->dlq, 50);
            continue;
        }
        sp_log(SP_LOG_DEBUG, "cannot produce dead letter: %s", rd_kafka_err2str(e));
        rd_kafka_headers_destroy(h);
        r->dlq_failed++;
        r->dlq_err = e;
        return;
    }
    r->h_dlq[reason]++;
    r->dlq_in_batch++;
    sp_log(SP_LOG_DEBUG, "dead letter %s/%s@%s: %s (%s)", topic, part, off, rsn, detail);
}

/* ---- the namespace lease ------------------------------------------ *
 *
 * Entities (a cart, a customer) are touched from partitions of several
 * topics, and timers are due for the whole namespace, so two instances
 * working one namespace at once would overwrite each other's entity state
 * (the write-through cache assumes one writer). One instance holds the lease
 * sp:{NS}:owner (TTL lease_ms, extended by every commit and, when idle, at
 * a third of it) and consumes; others wait as standbys before joining the
 * consumer group. The commit script rejects a commit whose instance does
 * not hold the lease (health fenced_commits): an instance frozen past the
 * TTL is a zombie whose commits change nothing; it then steps down. */

/* SIGHUP: the log is opened again at once; the alert rules are read again
 * by the loop (reload_rules) at the next point where no commit is in
 * flight -- a standby, once it is active. */
static void sighup_serve(run_t *r) {
    char err[512];
    if (!hup_requested) return;
    hup_requested = 0;
    if (sp_log_reopen(err, sizeof(err)) != 0)
        sp_log(SP_LOG_ERROR, "SIGHUP: %s (logging on to the old file)", err);
    sp_log(SP_LOG_INFO, "SIGHUP: log reopened; reading the alert rules from %s again%s",
           r->cfgpath ? r->cfgpath : "(no file)",
           (r->not_ready & SP_NR_STANDBY) ? " once active" : "");
    r->rules_reload = 1;
}

/* Read the configuration file again and apply its alert rules: validated
 * first (the whole file, and the rules against the running configuration),
 * an error leaves the current rules in force; other options that changed
 * are named (they take effect at a restart). Between batches, with no
 * commit in flight (drained first). */
static void reload_rules(run_t *r) {
    char err[1024], changed[1024], summary[256];
    sp_config_t *fresh = NULL;
    sp_rules_t *nr = NULL;
    drain_commit(r);
    if (r->need_reset || r->standby) return; /* again after the reset */
    r->rules_reload = 0;
    if (!r->cfgpath) {
        sp_log(SP_LOG_WARN, "reload: no configuration file (-c): no rules to read");
        return;
    }
    fresh = malloc(sizeof(*fresh));
    nr = malloc(sizeof(*nr));
    if (!fresh || !nr) {
        sp_log(SP_LOG_ERROR, "reload: out of memory; the current alert rules stay");
        goto out;
    }
    sp_config_defaults(fresh);
    if (sp_config_load(fresh, r->cfgpath, err, sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_ERROR, "reload: %s; the current alert rules stay", err);
        goto out;
    }
    if (r->broker) /* the embedded cluster's address is set at start */
        sp_config_kafka_set(fresh, "bootstrap.servers",
                            sp_config_kafka_get(r->cfg, "bootstrap.servers"));
    int nchanged = sp_config_diff(r->cfg, fresh, changed, sizeof(changed));
    if (nchanged)
        sp_log(SP_LOG_WARN,
               "reload: %d option(s) changed in %s take effect only at a restart (not applied): %s",
               nchanged, r->cfgpath, changed);
    if (sp_rules_load(r->cfg, nr, err, sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_ERROR, "reload: %s; the current alert rules stay", err);
        goto out;
    }
    if (sp_alerter_set_rules(r->al, r->st, r->eng, nr, summary, sizeof(summary), err,
                             sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_ERROR, "reload: alert state: %s; the current alert rules stay", err);
        goto out;
    }
    *r->rules = *nr;
    sp_log(SP_LOG_INFO, "reload: alert rules from %s: %s", r->cfgpath, summary);
out:
    free(fresh);
    free(nr);
}

/* Wait until the lease is ours (or stop is requested: returns -1). */
static int wait_for_lease(run_t *r) {
    char err[512], holder[96];
    int64_t logged = -1;
    ready_set(r, SP_NR_STANDBY, 1);
    for (int attempt = 0; !stop_requested; attempt++) {
        int held = 0;
        if (sp_store_lease(r->st, 1, &held, holder, sizeof(holder), err, sizeof(err)) != SP_OK) {
            sp_log(SP_LOG_WARN, "lease: %s (retrying)", err);
            usleep(500000);
            sp_store_reconnect(r->st, err, sizeof(err));
            continue;
        }
        if (held) {
            r->lease_mono = sp_clock_mono_ms();
            r->standby = 0;
            ready_set(r, SP_NR_STANDBY, 0);
            if (attempt > 0) sp_log(SP_LOG_INFO, "lease of namespace %s taken: active", r->cfg->ns);
            return 0;
        }
        sighup_serve(r);
        if (logged < 0 || sp_clock_mono_ms() - logged >= 30000) {
            sp_log(SP_LOG_INFO, "standby: namespace %s is worked by %s; waiting for its lease",
                   r->cfg->ns, holder);
            logged = sp_clock_mono_ms();
        }
        if (r->rk) { /* serve the consumer's callbacks while waiting */
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 500);
            if (m) rd_kafka_message_destroy(m);
        } else {
            usleep(500000);
        }
    }
    return -1;
}

/* We lost the lease: leave the consumer group, wait for the lease, join
 * again (the caller reloads its state). Returns -1 if stopped meanwhile. */
static int step_down(run_t *r) {
    sp_log(SP_LOG_WARN, "lost the lease of namespace %s: stepping down to standby", r->cfg->ns);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(r->ntopics);
    rd_kafka_unsubscribe(r->rk);
    for (int i = 0; i < 20 && !stop_requested; i++) { /* let the revocation run */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
        if (m) rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *a = NULL;
        int n = rd_kafka_assignment(r->rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a ? a->cnt : 0;
        if (a) rd_kafka_topic_partition_list_destroy(a);
        if (n == 0) break;
    }
    r->npos = 0;
    behind_recount(r);
    r->standby = 1;
    if (wait_for_lease(r) != 0) {
        rd_kafka_topic_partition_list_destroy(subs);
        return -1;
    }
    for (int i = 0; i < r->ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, r->topic_names[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(r->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) sp_log(SP_LOG_ERROR, "subscribe: %s", rd_kafka_err2str(e));
    return 0;
}

/* When idle: renew the lease at a third of its TTL; a lost lease resets
 * (and so steps down). */
static void renew_lease(run_t *r) {
    char err[512], holder[96];
    int held = 0;
    if (!r->owner[0] || r->need_reset || r->commit_in_flight || sp_store_pending(r->st) > 0) return;
    if (sp_clock_mono_ms() - r->lease_mono < r->lease_ms / 3) return;
    if (sp_store_lease(r->st, 1, &held, holder, sizeof(holder), err, sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_WARN, "renewing the lease: %s", err);
        r->need_reset = 2;
    } else if (!held) {
        sp_log(SP_LOG_WARN, "the lease of namespace %s is held by %s", r->cfg->ns, holder);
        r->need_reset = 1;
    } else {
        r->lease_mono = sp_clock_mono_ms();
    }
}

/* ---- reset --------------------------------------------------------- */

/* Point the fetcher of every partition we hold at our position: the next
 * offset to process, or where a partition with no checkpoint starts. A seek
 * also outdates whatever the fetcher had queued before it. */
static int seek_positions(run_t *r) {
    if (r->npos == 0) return SP_OK;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->npos);
    for (int i = 0; i < r->npos; i++)
        if (!r->pos[i].behind) /* paused where it is */
            rd_kafka_topic_partition_list_add(l, r->topic_names[r->pos[i].topic_idx],
                                              r->pos[i].partition)
                ->offset = r->pos[i].next >= 0 ? r->pos[i].next : r->reset_offset;
    int rc = SP_OK;
    if (l->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return SP_OK;
    }
    rd_kafka_error_t *e = rd_kafka_seek_partitions(r->rk, l, 10000);
    if (e) {
        sp_log(SP_LOG_WARN, "seek: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rc = SP_ERR_IO;
    }
    for (int i = 0; rc == SP_OK && i < l->cnt; i++)
        if (l->elems[i].err) {
            sp_log(SP_LOG_WARN, "seek %s/%d: %s", l->elems[i].topic, (int)l->elems[i].partition,
                   rd_kafka_err2str(l->elems[i].err));
            rc = SP_ERR_IO;
        }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* A rebalance ran inside the poll that returned msgs. librdkafka 2.0's
 * batch consume can hand over messages fetched before it (for a partition
 * assigned again, from beyond the position just loaded from Redis), and its
 * fetcher may go on from where those left off. So the whole batch is
 * dropped -- nothing of it was processed -- and every partition is pointed
 * back at our position. */
static void after_rebalance(run_t *r, rd_kafka_message_t **msgs, int n) {
    int skips = 0; /* partitions whose messages here would have skipped offsets */
    int64_t *at = n > 0 ? malloc(((size_t)r->npos + 1) * sizeof(*at)) : NULL;
    for (int i = 0; at && i < r->npos; i++)
        at[i] = r->pos[i].next;
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        int ti = m->err ? -1 : topic_index(r, rd_kafka_topic_name(m->rkt));
        pos_t *ps = ti >= 0 ? pos_find(r, ti, m->partition) : NULL;
        if (at && ps) {
            int64_t *a = &at[ps - r->pos];
            if (*a == INT64_MIN) { /* counted already */
            } else if (*a >= 0 && m->offset > *a) {
                skips++;
                *a = INT64_MIN;
            } else if (m->offset >= *a) {
                *a = m->offset + 1;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(at);
    r->rebalanced = 0;
    if (n > 0)
        sp_log(SP_LOG_INFO,
               "rebalanced during a poll: %d message(s) dropped (%d partition(s) would have "
               "skipped offsets), fetching again from our positions",
               n, skips);
    check_logs(r);
    if (seek_positions(r) != SP_OK) r->need_reset = 1;
    sync_pauses(r, 1);
}

static void do_reset(run_t *r) {
    char err[512];
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t backoff = 100;
    int ok = 0;

    r->h_redis_reconnects += r->h_redis_inflight[0]; /* that commit is given up */
    r->h_redis_down_ms += r->h_redis_inflight[1];
    r->h_redis_inflight[0] = r->h_redis_inflight[1] = 0;
    if (r->commit_in_flight) sp_alerter_committed(r->al, 0); /* outcome unknown */
    r->commit_in_flight = 0;
    if (r->koff_in_flight) {
        rd_kafka_topic_partition_list_destroy(r->koff_in_flight);
        r->koff_in_flight = NULL;
    }
    sp_engine_reset(r->eng);
    if (r->need_reset == 2 || sp_store_pending(r->st) > 0) {
        int64_t t0 = sp_clock_mono_ms();
        int rc = SP_ERR_IO;
        while (!stop_requested && (rc = sp_store_reconnect(r->st, err, sizeof(err))) != SP_OK) {
            ready_set(r, SP_NR_REDIS, 1);
            ready_publish(r); /* logged; Redis itself cannot hear it */
            sp_log(SP_LOG_WARN, "Redis unreachable: %s (retrying in %lld ms)", err,
                   (long long)backoff);
            usleep((useconds_t)backoff * 1000);
            if (backoff < 5000) backoff *= 2;
        }
        if (rc == SP_OK) {
            r->h_redis_reconnects++;
            r->h_redis_down_ms += sp_clock_mono_ms() - t0;
            sp_log(SP_LOG_INFO, "Redis reconnected after %lld ms",
                   (long long)(sp_clock_mono_ms() - t0));
        }
    }
    if (r->owner[0] && !stop_requested) { /* still ours? else wait as a standby */
        int held = 0;
        if (sp_store_lease(r->st, 1, &held, NULL, 0, err, sizeof(err)) != SP_OK) {
            sp_log(SP_LOG_WARN, "lease: %s", err);
            r->need_reset = 2;
            goto out;
        }
        if (held) {
            r->lease_mono = sp_clock_mono_ms();
        } else {
            if (step_down(r) != 0) goto out;
            sp_alerter_reload(r->al); /* the active one wrote alert state meanwhile */
        }
    }
    if (stop_requested || load_pointers(r) != SP_OK) goto out;
    if (rd_kafka_assignment(r->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) goto out;
    /* Entries of partitions still assigned are kept (load_positions sets
     * them again; only their once-a-minute log state survives). */
    for (int i = 0; i < r->npos;) {
        pos_t *ps = &r->pos[i];
        if (rd_kafka_topic_partition_list_find(parts, r->topic_names[ps->topic_idx], ps->partition))
            i++;
        else
            *ps = r->pos[--r->npos];
    }
    behind_recount(r);
    if (parts->cnt > 0) {
        if (load_positions(r, parts) != SP_OK) goto out;
        check_logs(r);
        /* Every partition goes back to its Redis offset. */
        if (seek_positions(r) != SP_OK) goto out;
        sync_pauses(r, 1);
    }
    r->rebalanced = 0;
    ok = 1;
out:
    if (parts) rd_kafka_topic_partition_list_destroy(parts);
    if (ok) {
        r->need_reset = 0;
        sp_log(SP_LOG_INFO, "state reloaded from Redis; replaying");
    } else if (!stop_requested) {
        if (!r->need_reset) r->need_reset = 1;
        sp_log(SP_LOG_WARN, "reset incomplete; retrying");
        usleep(500000);
    }
}

/* ---- one batch ----------------------------------------------------- */

static void fetched_cb(void *opaque, int idx, const char *val, size_t len) {
    sp_engine_fetched(opaque, idx, val, len);
}

static void discard_cb(void *opaque, int idx, const char *val, size_t len) {
    (void)opaque, (void)idx, (void)val, (void)len;
}

static void update_lags(run_t *r) {
    for (int i = 0; i < r->npos; i++) {
        pos_t *ps = &r->pos[i];
        int64_t lo = -1, hi = -1, lag = -1;
        if (ps->behind) { /* its data is not read: never idle, it holds its watermark */
            sp_engine_partition_lag(r->eng, ps->topic_idx, ps->partition, -1);
            continue;
        }
        rd_kafka_get_watermark_offsets(r->rk, r->topic_names[ps->topic_idx], ps->partition, &lo,
                                       &hi);
        if (hi >= 0 && ps->next >= 0 && hi < ps->next) {
            check_below(r, ps);
            if (ps->behind) {
                sp_engine_partition_lag(r->eng, ps->topic_idx, ps->partition, -1);
                continue;
            }
        }
        if (hi >= 0) {
            int64_t at = ps->next;
            if (at < 0) { /* nothing consumed yet: where the fetcher is */
                rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(l, r->topic_names[ps->topic_idx], ps->partition);
                if (rd_kafka_position(r->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    l->elems[0].offset >= 0)
                    at = l->elems[0].offset;
                rd_kafka_topic_partition_list_destroy(l);
            }
            if (at >= 0)
                lag = hi - at;
            else if (hi == lo)
                lag = 0; /* empty partition */
        }
        if (lag < 0 && lag != -1) lag = 0;
        sp_engine_partition_lag(r->eng, ps->topic_idx, ps->partition, lag);
    }
}

static void add_health(run_t *r, sp_commit_t *c) {
    char f[320];
    for (int i = 0; i < r->ntopics; i++)
        if (r->h_consumed[i]) {
            snprintf(f, sizeof(f), "consumed|topic=%s", r->topic_names[i]);
            sp_commit_health(c, f, r->h_consumed[i]);
            r->h_consumed[i] = 0;
        }
    for (int k = 1; k < SP_DLQ__COUNT; k++)
        if (r->h_dlq[k]) {
            snprintf(f, sizeof(f), "deadletter|reason=%s", sp_dlq_reason_str(k));
            sp_commit_health(c, f, r->h_dlq[k]);
            r->h_dlq[k] = 0;
        }
    if (r->h_decoded) sp_commit_health(c, "decoded", r->h_decoded);
    if (r->h_late) sp_commit_health(c, "late_events", r->h_late);
    if (r->h_dup) sp_commit_health(c, "duplicates", r->h_dup);
    if (r->h_gaps) sp_commit_health(c, "offset_gaps", r->h_gaps);
    if (r->h_dlq_failures) sp_commit_health(c, "deadletter_failures", r->h_dlq_failures);
    if (r->h_replayed) sp_commit_health(c, "replayed_dropped", r->h_replayed);
    r->h_decoded = r->h_late = r->h_dup = r->h_gaps = r->h_dlq_failures = r->h_replayed = 0;
    if (r->h_redis_reconnects) sp_commit_health(c, "redis_reconnects", r->h_redis_reconnects);
    if (r->h_redis_down_ms) sp_commit_health(c, "redis_reconnect_ms", r->h_redis_down_ms);
    r->h_redis_inflight[0] += r->h_redis_reconnects;
    r->h_redis_inflight[1] += r->h_redis_down_ms;
    r->h_redis_reconnects = r->h_redis_down_ms = 0;
}

static void clear_batch_health(run_t *r) {
    memset(r->h_consumed, 0, sizeof(r->h_consumed));
    memset(r->h_dlq, 0, sizeof(r->h_dlq));
    r->h_decoded = r->h_late = r->h_dup = r->h_gaps = r->h_replayed = 0;
    r->dlq_in_batch = 0;
}

/* The broker skipped offsets: normal where transaction markers or
 * compaction leave holes, a sign of trouble anywhere else. Counted in health
 * offset_gaps, logged at most once a minute. */
static void offset_gap(run_t *r, const pos_t *ps, int64_t offset) {
    int64_t n;
    r->h_gaps++;
    if (!ratelog_due(&r->gap_log, &n)) return;
    char field[300];
    pos_field(r, ps, field, sizeof(field));
    sp_log_kv_t kv[3] = {{"topic", r->topic_names[ps->topic_idx], 0},
                         {"partition", NULL, ps->partition},
                         {"offset", NULL, offset}};
    sp_logkv(SP_LOG_WARN, __FILE__, kv, 3,
             "offset gap: %s went from %lld to %lld (%lld gap(s) since the last report)", field,
             (long long)ps->next, (long long)offset, (long long)n);
}

/* A late event (its window is final): the figures that say why, at most
 * once a minute. */
static void late_event(run_t *r, const pos_t *ps, const rd_kafka_message_t *m, int64_t et) {
    int64_t n;
    if (!ratelog_due(&r->late_log, &n)) return;
    char field[300];
    pos_field(r, ps, field, sizeof(field));
    sp_log_kv_t kv[3] = {{"topic", r->topic_names[ps->topic_idx], 0},
                         {"partition", NULL, ps->partition},
                         {"offset", NULL, m->offset}};
    sp_logkv(SP_LOG_INFO, __FILE__, kv, 3,
             "late event: %s@%lld, event time %lld, watermark %lld, the partition's max event time "
             "%lld (%lld late event(s) since the last report)",
             field, (long long)m->offset, (long long)et, (long long)sp_engine_watermark(r->eng),
             (long long)sp_engine_partition_max_et(r->eng, ps->topic_idx, ps->partition),
             (long long)n);
}

/* The batch's dead letters were refused or not acknowledged within
 * DLQ_FLUSH_MS: it is replayed (nothing of it commits) after a backoff.
 * What is still queued is purged -- the replay produces it again -- so the
 * queue stays bounded and a late acknowledgement cannot add a second copy
 * of a queued one. Loud: the reason at most once a minute, health
 * deadletter_error / deadletter_failing_since_ms (written outside the
 * commit), not ready. */
/* The dead-letter topic's error in a fresh metadata reply (0: none, or no
 * reply within 1 s). */
static rd_kafka_resp_err_t dlq_topic_error(run_t *r) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->dlq, r->cfg->topic_deadletter, NULL);
    rd_kafka_resp_err_t te = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (rkt && rd_kafka_metadata(r->dlq, 0, rkt, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR && md &&
        md->topic_cnt == 1)
        te = md->topics[0].err;
    if (md) rd_kafka_metadata_destroy(md);
    if (rkt) rd_kafka_topic_destroy(rkt);
    return te;
}

static void dlq_unacked(run_t *r) {
    rd_kafka_resp_err_t te = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t n, now = sp_clock_now_ms();
    int queued = rd_kafka_outq_len(r->dlq);
    if (r->dlq_failed && r->tp.dlq_refused) { /* not produced: the topic is not usable */
        snprintf(r->dlq_reason, sizeof(r->dlq_reason),
                 "%s (topic metadata): %d dead letter(s) held until the topic is usable",
                 rd_kafka_err2str(r->dlq_err), r->dlq_failed);
    } else if (r->dlq_failed && r->dlq_err < 0 && (te = dlq_topic_error(r))) {
        /* only local errors: the topic's metadata usually says why */
        snprintf(r->dlq_reason, sizeof(r->dlq_reason),
                 "%s (topic metadata; %d dead letter(s) refused)", rd_kafka_err2str(te),
                 r->dlq_failed);
    } else if (r->dlq_failed) {
        snprintf(r->dlq_reason, sizeof(r->dlq_reason), "%s (%d dead letter(s) refused)",
                 rd_kafka_err2str(r->dlq_err), r->dlq_failed);
    } else { /* waiting: the topic's metadata usually says why */
        te = dlq_topic_error(r);
        snprintf(r->dlq_reason, sizeof(r->dlq_reason),
                 "%s%s%d dead letter(s) not acknowledged within %d s",
                 te ? rd_kafka_err2str(te) : "", te ? " (topic metadata): " : "", queued,
                 DLQ_FLUSH_MS / 1000);
    }
    rd_kafka_purge(r->dlq, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(r->dlq, 0); /* their reports (purged: not counted) */
    r->dlq_failed = 0;
    r->dlq_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!r->dlq_failing_since) r->dlq_failing_since = now;
    r->dlq_attempts++;
    r->h_dlq_failures++;
    r->dlq_backoff_ms = r->dlq_backoff_ms ? r->dlq_backoff_ms * 2 : DLQ_BACKOFF_MIN_MS;
    if (r->dlq_backoff_ms > DLQ_BACKOFF_MAX_MS) r->dlq_backoff_ms = DLQ_BACKOFF_MAX_MS;
    r->dlq_retry_mono = sp_clock_mono_ms() + r->dlq_backoff_ms;
    r->dlq_hold = 1;
    sync_pauses(r, 0);
    r->dlq_health_dirty = 1;
    ready_set(r, SP_NR_DEADLETTER, 1);
    if (ratelog_due(&r->dlq_log, &n))
        sp_log(SP_LOG_ERROR,
               "dead letters not acknowledged by topic %s: %s; nothing is committed until they "
               "are (failing for %lld s, %lld attempt(s); %lld since the last report); batch "
               "replayed in %lld ms",
               r->cfg->topic_deadletter, r->dlq_reason,
               (long long)((now - r->dlq_failing_since) / 1000), (long long)r->dlq_attempts,
               (long long)n, (long long)r->dlq_backoff_ms);
    ready_publish(r);
}

/* A batch's dead letters were all acknowledged. */
static void dlq_acked(run_t *r) {
    if (r->dlq_failing_since) {
        sp_log(SP_LOG_INFO, "dead letters acknowledged again after %lld s (%lld failed attempt(s))",
               (long long)((sp_clock_now_ms() - r->dlq_failing_since) / 1000),
               (long long)r->dlq_attempts);
        r->dlq_failing_since = 0;
        r->dlq_attempts = 0;
        r->dlq_health_dirty = 1;
        r->dlq_log.last_mono = 0; /* the next episode is reported at once */
        r->dlq_log.pending = 0;
    }
    r->dlq_backoff_ms = 0;
    r->dlq_retry_mono = 0;
    if (r->dlq_hold) {
        r->dlq_hold = 0;
        sync_pauses(r, 0);
    }
    ready_set(r, SP_NR_DEADLETTER, 0);
}

static void process_batch(run_t *r, rd_kafka_message_t **msgs, int n) {
    char err[512], why[256];
    int nev = 0;
    int64_t now = sp_clock_now_ms();

    sp_arena_reset(r->arena);
    r->nidlog = 0;
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sp_log(SP_LOG_WARN, "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int ti = topic_index(r, rd_kafka_topic_name(m->rkt));
        pos_t *ps = ti >= 0 ? pos_find(r, ti, m->partition) : NULL;
        if (!ps || ps->behind) { /* not ours, or stopped */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (ps->next >= 0 && m->offset < ps->next) { /* fetched again, or the log moved */
            r->h_replayed++;
            check_below(r, ps);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (ps->next >= 0 && m->offset > ps->next) offset_gap(r, ps, m->offset);
        ps->next = m->offset + 1;
        ps->touched = 1;
        r->h_consumed[ti]++;

        sp_event_t *ev = &r->evs[nev];
        sp_dlq_reason_t reason = SP_DLQ_NONE;
        why[0] = '\0';
        int rc = sp_decoder_decode(r->dec, r->topic_stream[ti], r->topic_format[ti], m->payload,
                                   m->len, now, r->arena, ev, &reason, why, sizeof(why));
        if (rc == SP_OK) {
            ev->topic_idx = ti;
            ev->partition = m->partition;
            ev->offset = m->offset;
            r->h_decoded++;
            if (sp_engine_admit(r->eng, ev) == SP_ERR_LATE) {
                r->h_late++;
                late_event(r, ps, m, ev->i[SP_I_EVENT_TIME]);
                dead_letter(r, m, SP_DLQ_LATE, "window already closed");
            } else {
                sp_str_t id = ev->s[SP_S_EVENT_ID];
                r->evhash[nev] = sp_hash64(id.p, id.len, 0x1d);
                sp_dedup_prefetch(r->dedup, r->evhash[nev]);
                nev++;
            }
        } else if (rc == SP_ERR_POISON) {
            dead_letter(r, m, reason, why);
        } else {
            sp_log(SP_LOG_ERROR, "decoder: %s", sp_err_str(rc));
            r->need_reset = 1;
        }
        rd_kafka_message_destroy(m);
    }
    /* Repeated event ids are dropped once the whole batch is decoded: the
     * recent-id table's lines were requested meanwhile (a random read of a
     * large table per event, the costliest line of the batch otherwise). */
    int kept = 0;
    for (int k = 0; k < nev; k++) {
        uint64_t h = r->evhash[k];
        if (sp_dedup_seen(r->dedup, h)) {
            r->h_dup++;
            continue;
        }
        if (kept != k) r->evs[kept] = r->evs[k];
        for (int b = 0; b < 8; b++)
            r->idlog[r->nidlog * 8 + (size_t)b] = (unsigned char)(h >> (8 * b));
        r->nidlog++;
        sp_engine_want(r->eng, &r->evs[kept++]);
    }
    nev = kept;

    /* Prefetch entity state, then collect the previous commit's reply. */
    int nwant = sp_engine_want_count(r->eng);
    int prefetch_sent = 0;
    if (nwant > 0 && !r->need_reset) {
        const size_t *lens;
        const char *const *keys = sp_engine_want_keys(r->eng, &lens);
        if (sp_store_mget_send(r->st, keys, lens, nwant, err, sizeof(err)) == SP_OK)
            prefetch_sent = 1;
        else
            r->need_reset = 2;
    }
    drain_commit(r);
    if (prefetch_sent) { /* always read, so replies stay in step */
        if (sp_store_mget_recv(r->st, r->need_reset ? discard_cb : fetched_cb, r->eng, err,
                               sizeof(err)) != SP_OK) {
            sp_log(SP_LOG_WARN, "prefetch failed: %s", err);
            r->need_reset = 2;
        }
    }
    if (r->need_reset) {
        clear_batch_health(r);
        return; /* everything since the last good commit is replayed */
    }
    /* Nothing is in flight on the connection now: acknowledged alerts
     * leave the outbox, and a change of readiness is written. */
    ready_publish(r);
    if (sp_alerter_step(r->al, r->st, err, sizeof(err)) != SP_OK)
        sp_log(SP_LOG_WARN, "alerts: %s (tried again next batch)", err);

    sp_engine_set_now(r->eng, now);
    for (int i = 0; i < nev; i++) {
        int rc = sp_engine_apply(r->eng, &r->evs[i]);
        if (rc == SP_ERR_DUPLICATE) {
            r->h_dup++;
        } else if (rc != SP_OK) { /* out of memory: nothing of this batch commits */
            sp_log(SP_LOG_ERROR, "applying an event: %s; replaying", sp_err_str(rc));
            r->need_reset = 1;
            clear_batch_health(r);
            return;
        }
    }

    update_lags(r);
    /* The watermark is the minimum over EVERY partition: while this
     * instance holds only some of them (a rebalance in progress, a zombie
     * still in the group) the others' events are not behind it, so it
     * stays where it is -- no window closes and no timer fires early. */
    if (r->total_parts < 0 || r->npos >= r->total_parts)
        sp_engine_update_watermark(r->eng, now);
    else
        sp_log(SP_LOG_DEBUG, "holding the watermark: %d of %d partitions assigned", r->npos,
               r->total_parts);
    int wm_moved = sp_engine_watermark(r->eng) != r->wm_committed;
    int fired = 0;
    if (fire_timers(r, &fired) != SP_OK) { /* decisions before the closes they precede */
        r->need_reset = 2;
        clear_batch_health(r);
        return;
    }
    int closed = sp_engine_close(r->eng);

    /* Dead letters must be acknowledged before the batch commits. */
    if (r->dlq_in_batch || r->dlq_failed) {
        /* in slices: a refusal ends the wait; after SIGTERM it lasts at
         * most half of pipeline.shutdown_timeout */
        int64_t until = sp_clock_mono_ms() + DLQ_FLUSH_MS;
        int capped = 0;
        while (rd_kafka_outq_len(r->dlq) > 0 && !r->dlq_failed && sp_clock_mono_ms() < until) {
            if (stop_requested && !capped) {
                int64_t u = sp_clock_mono_ms() + r->cfg->shutdown_timeout_ms / 2;
                if (u < until) until = u;
                capped = 1;
            }
            rd_kafka_flush(r->dlq, 200);
            if (r->broker) sp_broker_poll(r->broker, 0);
        }
        if (rd_kafka_outq_len(r->dlq) > 0 || r->dlq_failed) {
            dlq_unacked(r);
            r->need_reset = 1;
            clear_batch_health(r);
            return;
        }
        r->dlq_in_batch = 0;
        dlq_acked(r);
    }

    /* Nothing consumed: commit only to close windows, or (at most once a
     * second) to publish an advanced watermark. */
    int any = nev > 0 || closed > 0 || fired > 0 || sp_alerter_due(r->al, r->eng);
    for (int i = 0; !any && i < r->npos; i++)
        any = r->pos[i].touched;
    if (!any && !(wm_moved && sp_clock_mono_ms() - r->commit_sent_mono >= 1000)) return;

    sp_commit_reset(r->commit);
    sp_engine_build_commit(r->eng, r->commit);
    int noff = 0;
    rd_kafka_topic_partition_list_t *koff = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < r->npos; i++) {
        pos_t *ps = &r->pos[i];
        if (!ps->touched) continue;
        char field[300];
        pos_field(r, ps, field, sizeof(field));
        sp_commit_offset(r->commit, field, ps->committed, ps->next,
                         sp_engine_partition_max_et(r->eng, ps->topic_idx, ps->partition));
        rd_kafka_topic_partition_list_add(koff, r->topic_names[ps->topic_idx], ps->partition)
            ->offset = ps->next;
        ps->committed = ps->next;
        ps->touched = 0;
        noff++;
    }
    if (sp_engine_watermark(r->eng) != INT64_MIN)
        sp_commit_max(r->commit, r->wm_key, sp_engine_watermark(r->eng));
    if (r->nidlog)
        sp_commit_append(r->commit, r->dedup_key, r->idlog, r->nidlog * 8,
                         (r->cfg->dedup_max_ids / 2) * 8);
    add_health(r, r->commit);
    if (noff) sp_commit_health(r->commit, "commits", 1);
    {
        char msg[160];
        snprintf(msg, sizeof(msg), "{\"ns\":\"%s\",\"watermark_ms\":%lld,\"events\":%d}",
                 r->cfg->ns, (long long)sp_engine_watermark(r->eng), nev);
        sp_commit_publish(r->commit, msg);
        /* The windows this commit makes final are evaluated now, and their
         * alerts (state and outbox) ride in the same atomic commit. */
        if (sp_alerter_prepare(r->al, r->st, r->eng, r->commit, err, sizeof(err)) != SP_OK)
            sp_log(SP_LOG_WARN, "alerts: %s (those windows are evaluated by the next commit)", err);
        if (sp_store_commit_send(r->st, r->commit, err, sizeof(err)) == SP_OK) {
            r->commit_in_flight = 1;
            r->commit_sent_mono = sp_clock_mono_ms();
            r->wm_committed = sp_engine_watermark(r->eng);
            r->koff_in_flight = koff; /* committed to Kafka once Redis confirms */
            koff = NULL;
        } else {
            sp_log(SP_LOG_WARN, "commit not sent: %s", err);
            sp_alerter_committed(r->al, 0);
            r->need_reset = 2;
        }
    }
    if (koff) rd_kafka_topic_partition_list_destroy(koff);
}

/* ---- set-up -------------------------------------------------------- */

static int setc(rd_kafka_conf_t *kc, const char *k, const char *v, char *err, size_t errsz) {
    return rd_kafka_conf_set(kc, k, v, err, errsz) == RD_KAFKA_CONF_OK ? 0 : -1;
}

/* ---- topics -------------------------------------------------------- *
 *
 * Every topic the pipeline reads or writes must exist: the four input
 * topics, the dead-letter topic and the alert topic. Left to librdkafka, a
 * missing one is nearly silent: a consumer subscribed to it logs "Subscribed
 * topic not available" once and notices the topic's creation only at its
 * next metadata refresh (topic.metadata.refresh.interval.ms, 5 min by
 * default); a producer fails its messages after a while, or, where the
 * broker creates topics automatically, creates it with the broker's
 * defaults. So the run loop watches them itself:
 *  - at start, before anything is produced, one listing of the cluster's
 *    topics (a metadata request for all topics, which creates none); with
 *    topics.create, the missing ones are then created through the Admin API;
 *  - then every TOPICS_CHECK_MISSING_MS while one is missing or not known
 *    yet, every TOPICS_CHECK_OK_MS otherwise, on the consumer's handle: an
 *    all-topics answer there also updates its consumer group's view of the
 *    subscription, so a topic that appears is joined at once (a rebalance)
 *    instead of minutes later. Measured with librdkafka 2.0.2 on the mock
 *    cluster: assigned ~5 s after its creation (the group's rebalance);
 *    neither subscribing again (a rebalance each time, the new topic still
 *    unseen) nor a metadata request for that one topic does it.
 * A listing is one blocking request of at most TOPICS_LIST_TIMEOUT_MS (a
 * few ms on a healthy cluster); one that fails changes nothing.
 *
 * A missing topic: an ERROR line naming it and its role, at most once a
 * minute; health `topics_missing` (their names, comma-separated; written
 * outside the commit, like the readiness); not-ready cause topic_missing.
 * Its role decides the rest:
 *  - input: the other input topics are consumed as usual (a missing support
 *    topic must not stop the checkout alerts). The watermark is the minimum
 *    over the partitions that exist, so when the topic appears, its events
 *    older than the watermark minus the allowed lateness are late (and
 *    dead-lettered as such);
 *  - dead-letter: no dead letter is produced (that would create the topic
 *    with the broker's defaults, or fail). A batch that has one is not
 *    committed, and the loop waits for the next listing before replaying
 *    it: nothing is lost, nothing is committed past it;
 *  - alerts: the alerter holds its outbox; the alerts wait in Redis.
 * A topic not confirmed yet (the first listing failed) is held the same way
 * but not reported missing. */

#define TOPICS_CHECK_MISSING_MS 2000
#define TOPICS_CHECK_OK_MS      60000
#define TOPICS_LIST_TIMEOUT_MS  500
#define TOPICS_START_TIMEOUT_MS 10000
#define TOPICS_LOG_EVERY_MS     60000
#define TOPICS_CREATED_WAIT_MS  5000

static const char *topic_role_text(const topic_watch_t *w) {
    static const char *const input[SP_STREAM__COUNT] = {
        "input topic of the clickstream stream", "input topic of the checkout stream",
        "input topic of the shipment stream", "input topic of the support stream"};
    if (w->role == TW_INPUT)
        return w->stream >= 0 && w->stream < SP_STREAM__COUNT ? input[w->stream] : "input topic";
    return w->role == TW_DEADLETTER ? "dead-letter topic" : "alert topic";
}

static const char *topic_consequence(const topic_watch_t *w) {
    switch (w->role) {
    case TW_INPUT: return "its events are not consumed until it exists; the other input topics are";
    case TW_DEADLETTER:
        return "dead letters cannot be written, so a batch with a bad or late event is not "
               "committed and is replayed until the topic exists (nothing is lost)";
    default: return "alerts wait in the outbox (Redis) until the topic exists";
    }
}

static void topics_init(run_t *r) {
    topics_t *tp = &r->tp;
    memset(tp, 0, sizeof(*tp));
    for (int s = 0; s < SP_STREAM__COUNT; s++)
        tp->w[tp->n++] =
            (topic_watch_t){.name = r->cfg->topics[s].name, .role = TW_INPUT, .stream = s};
    tp->w[tp->n++] =
        (topic_watch_t){.name = r->cfg->topic_deadletter, .role = TW_DEADLETTER, .stream = -1};
    tp->w[tp->n++] = (topic_watch_t){.name = r->cfg->topic_alerts, .role = TW_ALERTS, .stream = -1};
}

static const topic_watch_t *topics_role(const run_t *r, tw_role_t role) {
    for (int i = 0; i < r->tp.n; i++)
        if (r->tp.w[i].role == role) return &r->tp.w[i];
    return NULL;
}

/* One listing of the cluster's topics through rk (all topics: a request
 * that names a missing topic may create it). A topic is there when it is
 * listed without error and with partitions. */
static int topics_list(run_t *r, rd_kafka_t *rk, int timeout_ms) {
    topics_t *tp = &r->tp;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || !md) {
        int64_t n;
        /* one may time out behind the group's join on the same connection */
        if (++tp->fails >= 3 && ratelog_due(&tp->fail_log, &n))
            sp_log(SP_LOG_WARN,
                   "cannot list the cluster's topics: %s (%d attempt(s) in a row; tried again "
                   "in %d s)",
                   rd_kafka_err2str(e), tp->fails, TOPICS_CHECK_MISSING_MS / 1000);
        return SP_ERR_IO;
    }
    for (int k = 0; k < tp->n; k++) {
        topic_watch_t *w = &tp->w[k];
        w->state = TW_MISSING;
        w->partitions = 0;
        w->err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        for (int i = 0; i < md->topic_cnt; i++) {
            if (strcmp(md->topics[i].topic, w->name)) continue;
            if (md->topics[i].err) {
                w->err = md->topics[i].err; /* e.g. not authorized */
            } else if (md->topics[i].partition_cnt > 0) {
                w->state = TW_PRESENT;
                w->partitions = md->topics[i].partition_cnt;
                w->err = RD_KAFKA_RESP_ERR_NO_ERROR;
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    tp->fails = 0;
    return SP_OK;
}

/* After a listing: log what changed (a missing topic again once a minute),
 * the readiness, the health text, the alerter's hold. */
static void topics_apply(run_t *r) {
    topics_t *tp = &r->tp;
    int64_t now = sp_clock_mono_ms();
    int missing = 0;
    size_t o = 0;
    tp->missing[0] = '\0';
    for (int k = 0; k < tp->n; k++) {
        topic_watch_t *w = &tp->w[k];
        if (w->state == TW_MISSING) {
            missing++;
            if (o < sizeof(tp->missing))
                o += (size_t)snprintf(tp->missing + o, sizeof(tp->missing) - o, "%s%s",
                                      o ? "," : "", w->name);
            if (!w->logged_mono || now - w->logged_mono >= TOPICS_LOG_EVERY_MS) {
                sp_log(SP_LOG_ERROR,
                       "topic %s (%s) does not exist, or this client may not see it (%s): %s%s",
                       w->name, topic_role_text(w), rd_kafka_err2str(w->err), topic_consequence(w),
                       r->cfg->topics_create ? ""
                                             : " (create it, or set topics.create: true to "
                                               "create missing topics at start)");
                w->logged_mono = now;
            }
        } else if (w->state == TW_PRESENT && w->shown == TW_MISSING) {
            sp_log(SP_LOG_INFO, "topic %s (%s) exists now, %d partition(s)%s", w->name,
                   topic_role_text(w), w->partitions,
                   w->role == TW_INPUT ? ": the consumer group joins it" : "");
            w->logged_mono = 0;
        }
        if (w->state != TW_UNKNOWN) w->shown = w->state;
    }
    ready_set(r, SP_NR_TOPIC, missing > 0);
    const topic_watch_t *al = topics_role(r, TW_ALERTS);
    if (r->al) sp_alerter_hold(r->al, al && al->state == TW_MISSING);
}

/* Health field topics_missing, when it changed and nothing is in flight on
 * the connection (called by ready_publish). */
static void topics_publish(run_t *r) {
    topics_t *tp = &r->tp;
    char err[256], key[128];
    if (tp->published_ok && !strcmp(tp->missing, tp->published)) return;
    if (r->standby || !r->st || sp_store_pending(r->st) > 0) return;
    snprintf(key, sizeof(key), "%s:health", r->prefix);
    const char *fields[] = {"topics_missing"};
    const char *values[] = {tp->missing};
    sp_hwrite_t w = {key, 0, 1, fields, values};
    if (sp_store_hwrite(r->st, &w, 1, err, sizeof(err)) != SP_OK) return;
    memcpy(tp->published, tp->missing, sizeof(tp->published));
    tp->published_ok = 1;
}

/* dead_letter(): 1 if the dead-letter topic is not known to exist, so the
 * dead letter must not be produced (counted as not delivered: the batch is
 * replayed). */
static int topics_hold_deadletters(run_t *r) {
    const topic_watch_t *w = topics_role(r, TW_DEADLETTER);
    /* unknown (no listing answered yet): produced; a real broker refuses a
     * missing topic, and that refusal is the loud dead-letter path */
    if (!w || w->state != TW_MISSING) return 0;
    r->dlq_failed++;
    r->dlq_err = w->err ? w->err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    r->tp.dlq_refused++;
    return 1;
}

/* Create the missing topics through the Admin API of rk (topics.create),
 * waiting up to topics.create_timeout; each topic's outcome is logged.
 * Returns how many were created (or found created meanwhile). */
static int topics_create(run_t *r, rd_kafka_t *rk) {
    const sp_config_t *cfg = r->cfg;
    topics_t *tp = &r->tp;
    rd_kafka_NewTopic_t *nt[TOPICS_MAX];
    const char *ntname[TOPICS_MAX];
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    char kerr[512], names[1600] = "";
    int64_t tmo = cfg->topics_create_timeout_ms;
    int nn = 0, created = 0, timeout = (int)(tmo < INT32_MAX - 2000 ? tmo : INT32_MAX - 2000);
    size_t o = 0;

    for (int k = 0; k < tp->n; k++) {
        const topic_watch_t *w = &tp->w[k];
        int dup = 0;
        if (w->state != TW_MISSING) continue;
        for (int i = 0; i < nn; i++)
            dup |= !strcmp(ntname[i], w->name);
        if (dup) continue; /* one topic in two roles */
        rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(w->name, cfg->topics_partitions,
                                                       cfg->topics_replication, kerr, sizeof(kerr));
        if (!t) {
            sp_log(SP_LOG_ERROR, "cannot create topic %s: %s", w->name, kerr);
            continue;
        }
        char retention[32] = "";
        int64_t ret_ms = w->role == TW_DEADLETTER ? cfg->topics_deadletter_retention_ms
                         : w->role == TW_ALERTS   ? cfg->topics_alerts_retention_ms
                                                  : -1;
        if (ret_ms > 0) {
            snprintf(retention, sizeof(retention), "%lld", (long long)ret_ms);
            if (rd_kafka_NewTopic_set_config(t, "retention.ms", retention)) {
                sp_log(SP_LOG_ERROR, "cannot create topic %s: retention.ms", w->name);
                rd_kafka_NewTopic_destroy(t);
                continue;
            }
        }
        sp_log(SP_LOG_INFO,
               "creating topic %s (%s): %d partition(s), replication factor %d, retention.ms %s",
               w->name, topic_role_text(w), cfg->topics_partitions, cfg->topics_replication,
               retention[0] ? retention : "the broker's default");
        if (o < sizeof(names))
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", o ? ", " : "", w->name);
        ntname[nn] = w->name;
        nt[nn++] = t;
    }
    if (nn == 0) return 0;
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (!opts || rd_kafka_AdminOptions_set_request_timeout(opts, timeout, kerr, sizeof(kerr)) ||
        rd_kafka_AdminOptions_set_operation_timeout(opts, timeout, kerr, sizeof(kerr))) {
        sp_log(SP_LOG_ERROR, "creating topics %s: %s", names, opts ? kerr : "out of memory");
        goto out;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, (size_t)nn, opts, q);
    /* the request times out by itself; polled in steps so SIGTERM is heard */
    for (int64_t end = sp_clock_mono_ms() + timeout + 2000;
         !ev && !stop_requested && sp_clock_mono_ms() < end;)
        ev = rd_kafka_queue_poll(q, 200);
    if (!ev) {
        sp_log(SP_LOG_ERROR, "creating topics %s: no answer from the cluster", names);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        sp_log(SP_LOG_ERROR,
               "creating topics %s: %s (the cluster did not create them within "
               "topics.create_timeout %lld ms; they stay missing until created)",
               names, rd_kafka_event_error_string(ev), (long long)timeout);
        goto out;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr =
        res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[i]);
        const char *tn = rd_kafka_topic_result_name(tr[i]);
        const char *why = rd_kafka_topic_result_error_string(tr[i]);
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR || te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            sp_log(SP_LOG_INFO, te ? "topic %s exists already" : "created topic %s", tn);
            created++;
        } else
            sp_log(SP_LOG_ERROR, "creating topic %s: %s (%s)", tn, rd_kafka_err2str(te),
                   why ? why : "no detail");
    }
out:
    if (ev) rd_kafka_event_destroy(ev);
    if (q) rd_kafka_queue_destroy(q);
    if (opts) rd_kafka_AdminOptions_destroy(opts);
    for (int i = 0; i < nn; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    return created;
}

/* At start, before anything is produced: list the topics through a
 * short-lived handle of our own (the consumer does not exist yet), create
 * the missing ones with topics.create, report. Fails only when the handle
 * cannot be made (a Kafka property is wrong). */
static int topics_open(run_t *r, char *err, size_t errsz) {
    topics_init(r);
    rd_kafka_conf_t *kc = sp_kafka_conf_new(r->cfg, SP_KAFKA_ADMIN, err, errsz);
    if (!kc) return -1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, errsz);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    int missing = 0;
    if (topics_list(r, rk, TOPICS_START_TIMEOUT_MS) == SP_OK)
        for (int k = 0; k < r->tp.n; k++)
            missing += r->tp.w[k].state == TW_MISSING;
    if (missing && r->cfg->topics_create && topics_create(r, rk) > 0) {
        /* a new topic reaches every broker's metadata a moment later */
        for (int64_t end = sp_clock_mono_ms() + TOPICS_CREATED_WAIT_MS;
             !stop_requested && sp_clock_mono_ms() < end; usleep(250000)) {
            if (topics_list(r, rk, TOPICS_START_TIMEOUT_MS) != SP_OK) continue;
            missing = 0;
            for (int k = 0; k < r->tp.n; k++)
                missing += r->tp.w[k].state == TW_MISSING;
            if (!missing) break;
        }
    }
    rd_kafka_destroy(rk);
    topics_apply(r);
    r->tp.next_mono = sp_clock_mono_ms() + TOPICS_CHECK_MISSING_MS;
    return 0;
}

/* Once per loop turn: the next listing when it is due, through the
 * consumer (so its group sees a new topic at once). A batch that was
 * replayed because its dead letters were held waits for that listing
 * instead of replaying again at once: it cannot commit before. */
static void topics_tick(run_t *r) {
    topics_t *tp = &r->tp;
    int64_t now = sp_clock_mono_ms();
    if (tp->dlq_refused) {
        const topic_watch_t *w = topics_role(r, TW_DEADLETTER);
        while (w && w->state == TW_MISSING && !stop_requested && now < tp->next_mono) {
            int64_t left = tp->next_mono - now;
            usleep((useconds_t)(left < 100 ? left : 100) * 1000);
            if (r->broker) sp_broker_poll(r->broker, 0);
            now = sp_clock_mono_ms();
        }
        tp->dlq_refused = 0;
    }
    if (now < tp->next_mono || !r->rk) return;
    /* a failed listing changes nothing: the states are the last ones seen */
    if (topics_list(r, r->rk, TOPICS_LIST_TIMEOUT_MS) == SP_OK) topics_apply(r);
    int all = 1;
    for (int k = 0; all && k < tp->n; k++)
        all = tp->w[k].state == TW_PRESENT;
    tp->next_mono = sp_clock_mono_ms() + (all ? TOPICS_CHECK_OK_MS : TOPICS_CHECK_MISSING_MS);
}

static int run_open(run_t *r, char *err, size_t errsz) {
    sp_config_t *cfg = r->cfg;
    snprintf(r->prefix, sizeof(r->prefix), "sp:{%s}", cfg->ns);
    snprintf(r->wm_key, sizeof(r->wm_key), "%s:watermark", r->prefix);
    snprintf(r->dedup_key, sizeof(r->dedup_key), "%s:state:recent_ids", r->prefix);
    for (int s = 0; s < SP_STREAM__COUNT; s++) {
        snprintf(r->topic_names[s], sizeof(r->topic_names[s]), "%s", cfg->topics[s].name);
        r->topic_stream[s] = (sp_stream_t)s;
        r->topic_format[s] = cfg->topics[s].format;
    }
    r->ntopics = SP_STREAM__COUNT;
    r->wm_committed = INT64_MIN;
    {
        const char *aor = sp_config_kafka_get(cfg, "auto.offset.reset");
        r->reset_offset =
            aor && (!strcmp(aor, "latest") || !strcmp(aor, "largest") || !strcmp(aor, "end"))
                ? RD_KAFKA_OFFSET_END
                : RD_KAFKA_OFFSET_BEGINNING;
    }

    if (!(r->dec = sp_decoder_new(cfg, err, errsz))) return -1;
    if (!(r->dedup = sp_dedup_new((size_t)cfg->dedup_max_ids))) goto oom;
    if (!(r->eng = sp_engine_new(cfg, err, errsz))) return -1;
    if (!(r->commit = sp_commit_new())) goto oom;
    if (!(r->arena = sp_arena_new(1 << 20))) goto oom;
    r->evs = calloc((size_t)cfg->batch_max, sizeof(*r->evs));
    r->msgs = calloc((size_t)cfg->batch_max, sizeof(*r->msgs));
    r->idlog = malloc((size_t)cfg->batch_max * 8);
    r->evhash = malloc((size_t)cfg->batch_max * sizeof(*r->evhash));
    if (!r->evs || !r->msgs || !r->idlog || !r->evhash) goto oom;

    for (int attempt = 0; !(r->st = sp_store_new(cfg, err, errsz)); attempt++) {
        if (stop_requested || attempt >= 50) return -1;
        sp_log(SP_LOG_WARN, "Redis: %s (retrying)", err);
        usleep(200000);
    }
    {
        /* the lease lasts a consumer-group session: a standby takes over
         * about when the group would move the partitions anyway */
        const char *sto = sp_config_kafka_get(cfg, "session.timeout.ms");
        char host[64] = "host";
        long ms = sto ? strtol(sto, NULL, 10) : 0;
        r->lease_ms = ms > 0 ? ms : 45000;
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        for (char *c = host; *c; c++)
            if (*c == ' ') *c = '_';
        snprintf(r->owner, sizeof(r->owner), "%s:%ld:%llx", host, (long)getpid(),
                 (unsigned long long)(sp_clock_now_ms() ^ ((uint64_t)(uintptr_t)r << 16)));
        sp_store_set_owner(r->st, r->owner, r->lease_ms);
    }
    /* the rules are checked before waiting as a standby: one that takes
     * over later does so with these (or those of a SIGHUP meanwhile) */
    if (!(r->rules = calloc(1, sizeof(*r->rules)))) goto oom;
    if (sp_rules_load(cfg, r->rules, err, errsz) != SP_OK) return -1;
    if (wait_for_lease(r) != 0) {
        snprintf(err, errsz, "stopped while waiting as a standby");
        return 1;
    }
    if (load_pointers(r) != SP_OK) return -1;

    /* Alerts: their state and the outbox (produced again at start). */
    rd_kafka_conf_t *ac = sp_kafka_conf_new(cfg, SP_KAFKA_PRODUCER, err, errsz);
    if (ac && setc(ac, "allow.auto.create.topics", "false", err, errsz)) return -1;
    if (!ac || !(r->al = sp_alerter_new(cfg, r->rules, ac, err, errsz))) return -1;
    if (topics_open(r, err, errsz) != 0) return -1; /* before anything is produced */
    renew_lease(r); /* the check (with topics.create) may have taken a while */
    if (sp_alerter_start(r->al, r->st, r->eng, err, errsz) != SP_OK) return -1;

    /* Dead-letter producer: idempotent, acks=all. */
    rd_kafka_conf_t *pc = sp_kafka_conf_new(cfg, SP_KAFKA_PRODUCER, err, errsz);
    if (!pc || setc(pc, "enable.idempotence", "true", err, errsz) ||
        setc(pc, "linger.ms", "5", err, errsz) ||
        setc(pc, "allow.auto.create.topics", "false", err, errsz)) /* topics.create does */
        return -1;
    rd_kafka_conf_set_dr_msg_cb(pc, dlq_dr_cb);
    rd_kafka_conf_set_opaque(pc, r);
    if (!(r->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, errsz))) return -1;

    /* Consumer. */
    rd_kafka_conf_t *kc = sp_kafka_conf_new(cfg, SP_KAFKA_CONSUMER, err, errsz);
    if (!kc) return -1;
    if (!sp_config_kafka_get(cfg, "queued.min.messages") &&
        setc(kc, "queued.min.messages", "200000", err, errsz))
        return -1;
    if (setc(kc, "enable.auto.commit", "false", err, errsz) ||
        setc(kc, "enable.auto.offset.store", "false", err, errsz) ||
        (!sp_config_kafka_get(cfg, "auto.offset.reset") &&
         setc(kc, "auto.offset.reset", "earliest", err, errsz)))
        return -1;
    rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
    rd_kafka_conf_set_opaque(kc, r);
    if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, errsz))) return -1;
    rd_kafka_poll_set_consumer(r->rk);
    r->q = rd_kafka_queue_get_consumer(r->rk);

    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(r->ntopics);
    for (int i = 0; i < r->ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, r->topic_names[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(r->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        snprintf(err, errsz, "subscribe: %s", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
oom:
    snprintf(err, errsz, "out of memory");
    return -1;
}

static void run_close(run_t *r) {
    if (r->rk) {
        drain_commit(r);
        rd_kafka_consumer_close(r->rk);
        if (r->q) rd_kafka_queue_destroy(r->q);
        rd_kafka_destroy(r->rk);
    }
    if (r->dlq) {
        rd_kafka_flush(r->dlq, (int)r->cfg->shutdown_timeout_ms);
        rd_kafka_destroy(r->dlq);
    }
    sp_alerter_destroy(r->al, r->st, (int)(r->cfg->shutdown_timeout_ms / 2));
    free(r->rules);
    if (r->st && sp_store_pending(r->st) == 0) {
        char err[256];
        sp_store_lease_release(r->st, err, sizeof(err)); /* a standby takes over at once */
    }
    sp_store_destroy(r->st);
    sp_commit_destroy(r->commit);
    sp_engine_destroy(r->eng);
    sp_dedup_destroy(r->dedup);
    sp_decoder_destroy(r->dec);
    sp_arena_destroy(r->arena);
    free(r->evs);
    free(r->evhash);
    free(r->msgs);
    free(r->idlog);
    free(r->pos);
    if (r->broker) sp_broker_stop(r->broker);
}

static void write_file_atomic(const char *path, const char *text) {
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%s\n", text);
    fclose(f);
    rename(tmp, path);
}

static void run_usage(FILE *out) {
    fprintf(out, "usage: storepulse run -c FILE [--embedded-kafka] [--bootstrap-file F]\n"
                 "  -c, --config FILE     configuration (YAML); see deploy/storepulse.yaml\n"
                 "  --embedded-kafka      start a librdkafka mock cluster in this process\n"
                 "  --bootstrap-file F    with --embedded-kafka: write its address to F\n"
                 "SIGTERM/SIGINT: finish the batch, commit, exit 0.\n"
                 "SIGHUP: reopen log.file, read the alert rules from FILE again (an error\n"
                 "  leaves the current ones in force); never stops the process.\n");
}

int sp_run_main(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"embedded-kafka", no_argument, 0, 'e'},
                                         {"bootstrap-file", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cfgpath = NULL, *bsfile = NULL;
    int embedded = 0, c, ret = 1;
    char err[1024];
    static sp_config_t cfg;
    run_t r;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'e': embedded = 1; break;
        case 'b': bsfile = optarg; break;
        case 'h': run_usage(stdout); return 0;
        default: run_usage(stderr); return 2;
        }
    }
    sp_config_defaults(&cfg);
    /* every check that needs no network, the same as check-config's */
    if (sp_config_load(&cfg, cfgpath, err, sizeof(err)) != SP_OK ||
        sp_startup_check(&cfg, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "storepulse: %s\n", err);
        return 2;
    }
    sp_log_setup(cfg.log_level, cfg.log_format);
    if (cfg.log_file[0] && sp_log_open(cfg.log_file, err, sizeof(err)) != 0) {
        fprintf(stderr, "storepulse: %s\n", err);
        return 2;
    }
    if (sp_config_kafka_get(&cfg, "debug") && sp_log_level < SP_LOG_DEBUG)
        sp_log(SP_LOG_WARN,
               "kafka.debug is set but log.level is %s: librdkafka's debug lines "
               "are logged at debug and not shown",
               cfg.log_level);

    memset(&r, 0, sizeof(r));
    r.cfg = &cfg;
    r.cfgpath = cfgpath;
    r.not_ready_published = r.not_ready_logged = ~0u;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    /* a write to a Redis that just died must be an error (reconnect and
     * replay), not SIGPIPE killing the process */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    if (embedded) {
        r.broker = sp_broker_start(&cfg, err, sizeof(err));
        if (!r.broker) {
            fprintf(stderr, "storepulse: embedded kafka: %s\n", err);
            return 1;
        }
        const char *bs = sp_broker_bootstraps(r.broker);
        sp_config_kafka_set(&cfg, "bootstrap.servers", bs);
        printf("bootstrap: %s\n", bs);
        fflush(stdout);
        if (bsfile) write_file_atomic(bsfile, bs);
    }
    int orc = run_open(&r, err, sizeof(err));
    if (orc == 1 && stop_requested) { /* SIGTERM to a standby */
        sp_log(SP_LOG_INFO, "shutting down (standby)");
        ret = 0;
        goto out;
    }
    if (orc != 0) {
        sp_log(SP_LOG_ERROR, "cannot start: %s", err);
        goto out;
    }
    sp_log(SP_LOG_INFO, "storepulse running: namespace %s, kafka %s", cfg.ns,
           sp_config_kafka_get(&cfg, "bootstrap.servers"));

    while (!stop_requested) {
        int n = (int)rd_kafka_consume_batch_queue(r.q, (int)cfg.batch_timeout_ms, r.msgs,
                                                  (size_t)cfg.batch_max);
        if (r.broker) sp_broker_poll(r.broker, 0);
        rd_kafka_poll(r.dlq, 0);
        sp_alerter_poll(r.al);
        topics_tick(&r);
        ready_publish(&r);
        sighup_serve(&r);
        if (r.need_reset) {
            for (int i = 0; i < n; i++)
                rd_kafka_message_destroy(r.msgs[i]);
            /* dead letters refused: the replay backs off (consumer served) */
            if (r.dlq_retry_mono && sp_clock_mono_ms() < r.dlq_retry_mono) continue;
            if (r.dlq_hold) { /* fetch again: the replay starts from our positions */
                r.dlq_hold = 0;
                sync_pauses(&r, 0);
            }
            do_reset(&r);
            continue;
        }
        if (r.rebalanced) {
            after_rebalance(&r, r.msgs, n < 0 ? 0 : n);
            continue;
        }
        process_batch(&r, r.msgs, n < 0 ? 0 : n);
        renew_lease(&r);
        if (r.rules_reload && !r.need_reset) reload_rules(&r);
        check_behind(&r);
    }
    sp_log(SP_LOG_INFO, "shutting down");
    drain_commit(&r);
    ret = r.need_reset && !r.standby ? 1 : 0; /* a standby has nothing to lose */
out:
    run_close(&r);
    return ret;
}

int sp_check_config_main(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"reference", no_argument, 0, 'r'},
                                         {"metrics", no_argument, 0, 'm'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    int c, metrics = 0;
    char err[1024];
    static sp_config_t cfg;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'r': sp_config_print_reference(stdout); return 0;
        case 'm': metrics = 1; break;
        case 'h':
            printf("usage: storepulse check-config -c FILE   validate, print resolved (secrets "
                   "redacted)\n"
                   "       storepulse check-config --reference  print the option reference\n"
                   "       storepulse check-config [-c FILE] --metrics  print the metrics alert "
                   "rules can name\n");
            return 0;
        default: return 2;
        }
    }
    sp_config_defaults(&cfg);
    /* refuses whatever run refuses at start, with the same message */
    if (sp_config_load(&cfg, path, err, sizeof(err)) != SP_OK ||
        sp_startup_check(&cfg, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "storepulse: %s\n", err);
        return 2;
    }
    if (metrics) return sp_rules_print_metrics(&cfg, stdout), 0;
    static sp_rules_t rules;
    if (sp_rules_load(&cfg, &rules, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "storepulse: %s\n", err);
        return 2;
    }
    sp_config_print(&cfg, stdout);
    printf("# alerts: %d rule%s", rules.n, rules.n == 1 ? "" : "s");
    for (int i = 0; i < rules.n; i++)
        printf("%s %s (%s, %s)", i ? "," : ":", rules.r[i].name, rules.r[i].metric,
               rules.r[i].window);
    printf("\n");
    return 0;
}
