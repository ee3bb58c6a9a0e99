/* alerter.h -- evaluates the alert rules on closed windows and delivers
 * the alerts through a transactional outbox (SPEC §5, docs/ALERTS.md).
 *
 * What it owns (Redis, namespace hash tag):
 *  - sp:{NS}:alerts:state  -- hash: `<rule>` -> start of the newest window
 *    evaluated; `<rule>|<key>` -> the alert's state (rules.h);
 *  - sp:{NS}:alerts:outbox -- hash: "<alert_id>@<window_start>" -> the
 *    alert message (JSON), from the moment it is decided until the broker
 *    acknowledged it (a repeat of a firing alert has the alert's id and a
 *    later window).
 * Transitions and their outbox entries are written in the same atomic
 * commit (the script of store.h) as the window that caused them: before a
 * commit is sent, every window it makes final is evaluated from what Redis
 * holds and what the commit adds (sp_commit_hash_after), and the alert
 * state, the `<rule>` marker and the outbox entries go into that commit.
 * So a window is final in Redis exactly when its alerts are in the outbox:
 * no crash can come between them. The outbox is produced with an
 * idempotent producer keyed by fingerprint; an entry leaves the outbox only
 * on a delivery report without error, so a broker outage delays alerts and
 * loses none (at least once, deduplicated by alert_id).
 *
 * Not here: the rules' semantics (aggregators/rules.c), the wire formats
 * (producers/alert.c). All its Redis calls are blocking: call them only
 * when no pipelined reply is outstanding. */
#ifndef SP_ALERTER_H
#define SP_ALERTER_H

#include <librdkafka/rdkafka.h>

#include "aggregators/engine.h"
#include "aggregators/rules.h"
#include "aggregators/store.h"
#include "core/config.h"

typedef struct sp_alerter sp_alerter_t;

/* conf: a producer configuration with the deployment's Kafka settings
 * (taken over, also on failure). rules are copied. */
sp_alerter_t *sp_alerter_new(const sp_config_t *cfg, const sp_rules_t *rules,
                             rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);

/* Loads the alert state and re-produces what the outbox holds. eng: with
 * its pointers restored (a deployment that closed no window yet evaluates
 * every window from its first). */
int sp_alerter_start(sp_alerter_t *al, sp_store_t *st, sp_engine_t *eng, char *errstr,
                     size_t errstr_size);

/* Clears acknowledged alerts from the outbox (HDEL), produces what is due
 * (retries, the successors of acknowledged messages). */
int sp_alerter_step(sp_alerter_t *al, sp_store_t *st, char *errstr, size_t errstr_size);

/* Windows final in eng that the rules have not evaluated yet: the next
 * commit should be sent even if nothing else changed. */
int sp_alerter_due(const sp_alerter_t *al, sp_engine_t *eng);

/* Before commit c is sent (eng's final pointers as c leaves them):
 * evaluates every window not evaluated yet, with the contents Redis will
 * hold after c, and adds the alert state, markers and outbox entries to
 * c. Blocking reads (HGETALL of those windows, 256 per round
 * trip): no pipelined reply may be outstanding. On error nothing was
 * added to c: do not send it. */
int sp_alerter_prepare(sp_alerter_t *al, sp_store_t *st, sp_engine_t *eng, sp_commit_t *c,
                       char *errstr, size_t errstr_size);

/* The reply of the prepared commit: ok, its outbox entries are produced;
 * not ok (or not sent), they are dropped and the state is read again from
 * Redis before the next evaluation (a commit whose reply was lost may have
 * been applied). No-op when nothing was prepared. */
void sp_alerter_committed(sp_alerter_t *al, int ok);

/* Another instance may have written alert state and outbox meanwhile (this
 * one was a standby): read both again before the next evaluation. */
void sp_alerter_reload(sp_alerter_t *al);

/* Replace the rules (the config file read again; rules copied). A rule
 * of the new set with the name and every setting of a current one keeps
 * its alert state and its newest-window marker. A rule that is removed or
 * changed has its state deleted from Redis, and each of its FIRING alerts
 * ends with a RESOLVED message (its last window evaluated) put in the
 * outbox in the same transaction. A changed rule starts afresh with the
 * first window that closes after the reload (its marker set to the newest
 * final window, in that transaction: no window is decided twice, so no
 * alert_id names two alerts); a new rule starts as a rule added to a
 * running deployment (its last windows evaluated at the next commit).
 * Blocking; call it with no commit prepared or in flight. On error nothing
 * changed (the current rules stay). summary: one line saying what was
 * kept, changed, added, removed. */
int sp_alerter_set_rules(sp_alerter_t *al, sp_store_t *st, sp_engine_t *eng,
                         const sp_rules_t *rules, char *summary, size_t summary_size, char *errstr,
                         size_t errstr_size);

/* hold: produce nothing (the alert topic is missing: a producer would
 * create it with the broker's defaults, or fail); the alerts wait in the
 * outbox. Released, they are produced by the next step. */
void sp_alerter_hold(sp_alerter_t *al, int hold);

/* Serves delivery reports (non-blocking). */
void sp_alerter_poll(sp_alerter_t *al);

typedef struct sp_alerter_stats {
    int64_t emitted;   /* produced and acknowledged */
    int64_t pending;   /* in the outbox */
    int64_t failed;    /* delivery failures (retried) */
} sp_alerter_stats_t;

void sp_alerter_stats(const sp_alerter_t *al, sp_alerter_stats_t *out);

/* Waits up to timeout_ms for outstanding deliveries, then frees. What was
 * not acknowledged stays in the outbox for the next start. */
void sp_alerter_destroy(sp_alerter_t *al, sp_store_t *st, int timeout_ms);

#endif
