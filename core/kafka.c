/* kafka.c -- one builder of librdkafka configurations (see kafka.h).
 *
 * Design. The kafka.* table of the config holds properties for every
 * client; which ones a client gets depends on its role only, decided here
 * by name (librdkafka has no API to ask a property's scope). Consumer-group
 * properties go to the group consumer only; producer properties to
 * producers only; admin clients get neither. Everything else (brokers,
 * security, timeouts, client.id, debug) goes to every client.
 *
 * librdkafka's log lines reach our logger through rd_kafka_conf_set_log_cb
 * (called from librdkafka's threads: sp_log_emit is thread-safe). Its
 * `log_level` is set from log.level so that it does not format lines we
 * would drop, unless kafka.log_level is given. `kafka.debug` makes
 * librdkafka log at LOG_DEBUG: those lines appear with log.level: debug.
 *
 * Not here: the clients themselves (their callbacks and fixed properties
 * stay with their owners) and the Admin API calls. */
#include "core/kafka.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

/* Properties of a consumer group member (not for producers, admin, readers). */
static const char *const group_keys[] = {"group.id",
                                         "group.instance.id",
                                         "group.protocol.type",
                                         "session.timeout.ms",
                                         "heartbeat.interval.ms",
                                         "partition.assignment.strategy",
                                         "max.poll.interval.ms",
                                         "enable.auto.commit",
                                         "auto.commit.interval.ms",
                                         "enable.auto.offset.store",
                                         "coordinator.query.interval.ms",
                                         NULL};
/* Other consumer properties (for the group consumer and readers). */
static const char *const consumer_keys[] = {"auto.offset.reset",
                                            "isolation.level",
                                            "enable.partition.eof",
                                            "check.crcs",
                                            "queued.min.messages",
                                            "queued.max.messages.kbytes",
                                            "fetch.wait.max.ms",
                                            "fetch.min.bytes",
                                            "fetch.max.bytes",
                                            "fetch.message.max.bytes",
                                            "fetch.error.backoff.ms",
                                            "fetch.queue.backoff.ms",
                                            "consume.callback.max.messages",
                                            "allow.auto.create.topics",
                                            NULL};
/* Producer properties (for producers only). */
static const char *const producer_keys[] = {"acks",
                                            "request.required.acks",
                                            "linger.ms",
                                            "queue.buffering.max.ms",
                                            "queue.buffering.max.messages",
                                            "queue.buffering.max.kbytes",
                                            "queue.buffering.backpressure.threshold",
                                            "batch.num.messages",
                                            "batch.size",
                                            "enable.idempotence",
                                            "enable.gapless.guarantee",
                                            "transactional.id",
                                            "transaction.timeout.ms",
                                            "message.timeout.ms",
                                            "delivery.timeout.ms",
                                            "message.send.max.retries",
                                            "retries",
                                            "compression.codec",
                                            "compression.type",
                                            "compression.level",
                                            "partitioner",
                                            "sticky.partitioning.linger.ms",
                                            "request.timeout.ms",
                                            NULL};

static int in(const char *const *keys, const char *key) {
    for (int i = 0; keys[i]; i++)
        if (strcmp(keys[i], key) == 0) return 1;
    return 0;
}

int sp_kafka_role_uses(sp_kafka_role_t role, const char *key) {
    if (in(group_keys, key)) return role == SP_KAFKA_CONSUMER;
    if (in(consumer_keys, key)) return role == SP_KAFKA_CONSUMER || role == SP_KAFKA_READER;
    if (in(producer_keys, key)) return role == SP_KAFKA_PRODUCER;
    return 1;
}

int sp_kafka_log_level(int syslog_level) {
    if (syslog_level <= 3) return SP_LOG_ERROR;
    if (syslog_level == 4) return SP_LOG_WARN;
    if (syslog_level <= 6) return SP_LOG_INFO;
    return SP_LOG_DEBUG;
}

void sp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    int lvl = sp_kafka_log_level(level);
    sp_log_kv_t kv[2] = {{"facility", fac ? fac : "", 0},
                         {"client", rk ? rd_kafka_name(rk) : "", 0}};
    sp_logkv(lvl, "rdkafka", kv, 2, "%s", buf ? buf : "");
}

rd_kafka_conf_t *sp_kafka_conf_new(const sp_config_t *cfg, sp_kafka_role_t role, char *errstr,
                                   size_t errstr_size) {
    static const char *const syslog_of[] = {"3", "4", "6", "7"};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[512], where[600], key[160];
    int lvl = sp_log_level < 0 ? 0 : sp_log_level > 3 ? 3 : sp_log_level;

    if (!conf) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, sp_kafka_log_cb);
    if (rd_kafka_conf_set(conf, "log_level", syslog_of[lvl], kerr, sizeof(kerr)) !=
        RD_KAFKA_CONF_OK)
        goto fail_fixed;
    for (int i = 0; i < cfg->kafka_cnt && i < SP_MAX_KAFKA_PROPS; i++) {
        const char *k = cfg->kafka[i].key;
        if (!sp_kafka_role_uses(role, k)) continue;
        if (rd_kafka_conf_set(conf, k, cfg->kafka[i].value, kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(key, sizeof(key), "kafka.%s", k);
            sp_config_where(cfg, key, where, sizeof(where));
            snprintf(errstr, errstr_size, "%s: librdkafka: %s", where, kerr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
fail_fixed:
    snprintf(errstr, errstr_size, "librdkafka: %s", kerr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}
