/* broker.h -- the embedded Kafka broker: librdkafka's mock cluster.
 *
 * A mock cluster of 3 brokers speaks the real Kafka protocol on 127.0.0.1
 * (random ports, new at every start, data in memory only). It lives inside
 * the process that owns it, which must keep serving its handle
 * (sp_broker_poll). Other processes (the pipeline, the generator, kcat) reach
 * it through sp_broker_bootstraps(). See ../shared/DEPENDENCIES.md for what
 * the mock cluster does not do (real transactions, > ~5 MiB per partition). */
#ifndef SP_BROKER_H
#define SP_BROKER_H

#include <signal.h>
#include <stddef.h>

#include "core/config.h"

typedef struct sp_broker sp_broker_t;

#define SP_BROKER_COUNT 3

/* Starts a mock cluster of SP_BROKER_COUNT brokers in-process (owning an
 * rd_kafka_t producer handle) and creates the four input topics, the
 * dead-letter and the alerts topic with cfg->partitions partitions each
 * (replication 1). Returns NULL with a reason in errstr on failure. */
sp_broker_t *sp_broker_start(const sp_config_t *cfg, char *errstr, size_t errstr_size);

/* A topic's own partition count, overriding cfg->partitions. */
typedef struct sp_topic_partitions {
    const char *topic;
    int partitions; /* 1..SP_BROKER_MAX_PARTITIONS */
} sp_topic_partitions_t;

/* sp_broker_start, with nover topics given partition counts of their own
 * (each must be one of the configured topics). */
sp_broker_t *sp_broker_start_with(const sp_config_t *cfg, const sp_topic_partitions_t *over,
                                  int nover, char *errstr, size_t errstr_size);

/* Tests of missing topics: the topic (created at start) answers "unknown
 * topic or partition" to every metadata request until
 * sp_broker_create_topic() (at most 8 hidden at once). */
int sp_broker_hide_topic(sp_broker_t *b, const char *name, char *errstr, size_t errstr_size);

/* A hidden topic appears (with the partitions it was created with); any
 * other is created with `partitions` (<= 0: the cluster's default). */
int sp_broker_create_topic(sp_broker_t *b, const char *name, int partitions, char *errstr,
                           size_t errstr_size);

/* "127.0.0.1:port,..." -- valid until sp_broker_stop(). */
const char *sp_broker_bootstraps(const sp_broker_t *b);

/* The rd_kafka_mock_cluster_t *, for fault injection in tests
 * (rd_kafka_mock_broker_set_down, rd_kafka_mock_push_request_errors).
 * Note: with librdkafka 2.0.2, back-to-back mock calls can stall ~1 s each
 * (a lost wake-up of the mock thread); a few ms between calls avoids it. */
void *sp_broker_mock(sp_broker_t *b);

/* Serve the owning handle; waits at most timeout_ms. */
void sp_broker_poll(sp_broker_t *b, int timeout_ms);

/* Tears the cluster down. NULL is a no-op. */
void sp_broker_stop(sp_broker_t *b);

/* The address a --bootstrap-file holds (its first line) into buf, waiting
 * up to wait_ms for the file to appear (a broker starting beside us), or
 * less once *stop is set (stop may be NULL). Returns 0, or -1. */
int sp_broker_read_bootstrap_file(const char *path, char *buf, size_t size, int wait_ms,
                                  const volatile sig_atomic_t *stop);

/* `storepulse broker [-c FILE] [--bootstrap-file F] [--partitions N|TOPIC=N]...
 *  [--no-topic TOPIC]... [--control FIFO]`:
 * starts, prints "bootstrap: <addr>" to stdout, writes the address (one
 * line) to F atomically, serves until SIGTERM/SIGINT, exits 0. */
int sp_broker_main(int argc, char **argv);

#endif
