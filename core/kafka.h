/* kafka.h -- librdkafka configurations built from the config, one place.
 *
 * Every rd_kafka_conf_t of the project comes from sp_kafka_conf_new(): the
 * kafka.* passthrough properties a role uses (a producer is not given
 * group.id, a consumer is not given linger.ms, so librdkafka has nothing to
 * warn about), and librdkafka's own log lines routed through our logger
 * (component "rdkafka", fields facility and client, syslog levels mapped to
 * ours, librdkafka's log_level following log.level). Callers add their
 * role's fixed properties and callbacks, then rd_kafka_new(). */
#ifndef SP_KAFKA_H
#define SP_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "core/config.h"

typedef enum {
    SP_KAFKA_CONSUMER = 0, /* group member (run) */
    SP_KAFKA_READER,       /* consumer that assigns partitions, no group (alerts) */
    SP_KAFKA_PRODUCER,     /* dead letters, alerts, gen */
    SP_KAFKA_ADMIN,        /* metadata and admin requests */
} sp_kafka_role_t;

/* A new conf for `role`, or NULL with "FILE:LINE: key 'kafka.x': librdkafka:
 * reason" in errstr. The caller owns it (rd_kafka_new takes it). */
rd_kafka_conf_t *sp_kafka_conf_new(const sp_config_t *cfg, sp_kafka_role_t role, char *errstr,
                                   size_t errstr_size);

/* Whether a kafka.* property is given to a client of `role`. */
int sp_kafka_role_uses(sp_kafka_role_t role, const char *key);

/* The log callback every conf gets (for confs not built from the config). */
void sp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
/* Our level of a syslog level (0-3 error, 4 warn, 5-6 info, 7 debug). */
int sp_kafka_log_level(int syslog_level);

#endif
