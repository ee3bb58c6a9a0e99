/* config.h -- the resolved configuration and its declarative table.
 *
 * The YAML file (libyaml) is matched against one table of options (name,
 * type, default, one-line description) in config.c; that table validates at
 * start-up (unknown keys are errors naming file, line and key), fills
 * sp_config_t, prints the resolved config for `check-config` (secrets
 * redacted) and generates the config reference in docs/CONFIG.md.
 *
 * Environment overrides: STOREPULSE_<KEY> with dots as underscores, upper
 * case (STOREPULSE_REDIS_PASSWORD, STOREPULSE_NAMESPACE). Any librdkafka
 * property: `kafka.<property>` in the file, or STOREPULSE_KAFKA_<PROPERTY>
 * (underscores become dots: STOREPULSE_KAFKA_SASL_PASSWORD). Environment wins
 * over the file. Any other STOREPULSE_* variable is an error, as an unknown
 * key in the file is (the closest option's variable is suggested).
 *
 * The config remembers where each value came from (sp_config_origin_t) so
 * that checks made after loading (sp_startup_check: does the time zone
 * exist, do the schema files parse) name the file, line and key, or the
 * variable, as the loader's own errors do (sp_config_where). */
#ifndef SP_CONFIG_H
#define SP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "core/event.h"

#define SP_MAX_WINDOWS 8
#define SP_MAX_SCHEMAS 64
#define SP_MAX_KAFKA_PROPS 64
#define SP_CONFIG_MAX_OPTS 96 /* rows of the option table (checked in config.c) */

typedef enum { SP_FORMAT_AVRO = 0, SP_FORMAT_JSON } sp_format_t;

typedef struct sp_topic_conf {
    char name[256];
    sp_format_t format;
} sp_topic_conf_t;

typedef struct sp_schema_conf {
    int32_t id;          /* Confluent schema id */
    char path[512];      /* resolved path of the .avsc (relative to schemas.dir) */
    sp_stream_t stream;  /* which input stream this writer schema is for */
} sp_schema_conf_t;

/* Dimensions of a family: string fields of the event, in order. */
typedef struct sp_dims {
    sp_str_field_t f[4];
    int cnt;
} sp_dims_t;

typedef struct sp_kv {
    char key[128];
    char value[512];
} sp_kv_t;

/* Where each value came from: > 0 the line in sp_config_t.source, 0 the
 * default (or set by code, e.g. --embedded-kafka's bootstrap), -1 the
 * environment. Not a value: two configs holding the same values may differ
 * here (tests comparing configs clear it, as they clear `source`). */
typedef struct sp_config_origin {
    int opt[SP_CONFIG_MAX_OPTS];   /* per row of the option table */
    int kafka[SP_MAX_KAFKA_PROPS]; /* per sp_config_t.kafka[] entry */
    int schema[SP_MAX_SCHEMAS];    /* per sp_config_t.schemas[] entry */
} sp_config_origin_t;

typedef struct sp_config {
    char source[512];  /* the file it came from ("" for defaults only) */
    char ns[64];       /* namespace: keys are sp:{NS}:... */

    /* kafka.*: bootstrap.servers and group.id are ordinary passthrough keys
     * with defaults; every kafka.<x> goes to librdkafka as <x>. */
    sp_kv_t kafka[SP_MAX_KAFKA_PROPS];
    int kafka_cnt;

    /* redis.* */
    char redis_host[256];
    int redis_port;
    char redis_unix_socket[512];
    char redis_user[128];
    char redis_password[256]; /* secret */
    int redis_db;
    int64_t redis_timeout_ms;

    /* topics.* */
    sp_topic_conf_t topics[SP_STREAM__COUNT]; /* topics.clickstream.name / .format ... */
    char topic_deadletter[256];
    char topic_alerts[256];
    bool topics_create;                     /* topics.create: create missing topics at start */
    int topics_partitions;                  /* topics.partitions */
    int topics_replication;                 /* topics.replication_factor */
    int64_t topics_deadletter_retention_ms; /* topics.deadletter_retention */
    int64_t topics_alerts_retention_ms;     /* topics.alerts_retention */
    int64_t topics_create_timeout_ms;       /* topics.create_timeout */
    char alert_format[16];          /* alerting.format: avro | json | alertmanager */
    int alert_schema_id;            /* alerting.schema_id */
    char alert_generator_url[512];  /* alerting.generator_url */

    /* schemas.* */
    char schemas_dir[512];
    sp_schema_conf_t schemas[SP_MAX_SCHEMAS]; /* schemas.ids: {1: {stream: clickstream, file: clickstream.avsc}} */
    int schema_cnt;

    /* windows.* */
    int64_t window_ms[SP_MAX_WINDOWS]; /* windows.sizes: [1m, 5m, 1h, 1d], ascending */
    int64_t window_ttl_ms[SP_MAX_WINDOWS]; /* windows.ttl: {1m: 2d, ...} */
    int window_cnt;
    char timezone[64];
    int64_t max_out_of_orderness_ms;
    int64_t allowed_lateness_ms;
    int64_t idle_timeout_ms;

    /* metrics.* */
    int max_dimension_values;
    char currency[8];           /* store.currency */
    /* metrics.<family>.dimensions */
    sp_dims_t funnel_dims;      /* subset of channel, device, country */
    sp_dims_t abandonment_dims; /* subset of channel, device, country */
    sp_dims_t delivery_dims;    /* subset of carrier, country */
    sp_dims_t retention_dims;   /* subset of channel, device, country */
    sp_dims_t support_dims;     /* channel */
    int64_t abandon_after_ms;   /* metrics.abandonment.abandon_after */
    int64_t dispatch_sla_ms;    /* metrics.delivery.dispatch_sla */
    int64_t at_risk_horizon_ms; /* metrics.delivery.at_risk_horizon */
    int64_t retention_horizon_ms; /* metrics.retention.horizon */

    /* dedup.*, state.*, pipeline.* */
    int64_t dedup_max_ids;
    int64_t state_ttl_ms;        /* entity state TTL in Redis (default 2d) */
    int64_t state_cache_max;     /* entities kept in process memory */
    int64_t state_cache_idle_ms; /* evicted when unused this long (event time) */
    int64_t shipment_ttl_ms;     /* state.shipment_ttl (event time without news) */
    int64_t ticket_ttl_ms;       /* state.ticket_ttl */
    int64_t customer_ttl_ms;     /* state.customer_ttl */
    int batch_max;               /* messages per batch (default 10000) */
    int64_t batch_timeout_ms;    /* poll budget per batch (default 100ms) */
    int64_t shutdown_timeout_ms; /* default 10s */
    int partitions;              /* embedded broker: partitions per topic (default 8) */

    char log_level[16];
    char log_format[8]; /* log.format: text | json */
    char log_file[512]; /* "" = stderr */

    sp_config_origin_t origin;
} sp_config_t;

/* Defaults for everything. */
void sp_config_defaults(sp_config_t *cfg);

/* Load a YAML file over the defaults, then apply environment overrides.
 * On error returns SP_ERR_CONFIG with "FILE:LINE: key 'a.b': reason" in
 * errstr. path NULL: defaults + environment only. */
int sp_config_load(sp_config_t *cfg, const char *path, char *errstr, size_t errstr_size);

/* Where the value of `key` came from, as the loader's errors say it:
 * "FILE:LINE: key 'K'" (the file), "environment STOREPULSE_X: key 'K'" (the
 * environment) or "FILE: key 'K' (default)". `key` is an option name
 * ("windows.timezone"), "kafka.<property>" or "schemas.ids.<id>". */
void sp_config_where(const sp_config_t *cfg, const char *key, char *buf, size_t size);

/* Write the resolved config as YAML, every option, secrets as "<redacted>". */
void sp_config_print(const sp_config_t *cfg, FILE *out);

/* The options whose values differ between a and b (the alert rules aside):
 * their names, comma-separated, into out; returns how many. */
int sp_config_diff(const sp_config_t *a, const sp_config_t *b, char *out, size_t size);

/* `value` as it may be logged or printed: "<redacted>" when `key` (dotted,
 * e.g. "redis.password", "kafka.sasl.password") names a secret and value is
 * not empty, else value itself. */
const char *sp_config_redacted(const char *key, const char *value);

/* Markdown reference of every option (name, type, default, description). */
void sp_config_print_reference(FILE *out);

/* Value of a kafka.* property, or NULL. */
const char *sp_config_kafka_get(const sp_config_t *cfg, const char *key);
/* Set/replace a kafka.* property (used by --embedded-kafka for bootstrap). */
int sp_config_kafka_set(sp_config_t *cfg, const char *key, const char *value);

/* Parse "250ms", "5s", "10m", "1h", "2d" (and plain ms integers). */
int sp_duration_parse(const char *s, int64_t *out_ms);
/* Format a duration the way windows are named in Redis keys: "1m", "5m",
 * "1h", "1d", "30s", "250ms" (largest exact unit). */
void sp_duration_format(int64_t ms, char *buf, size_t size);

#endif
