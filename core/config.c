/* config.c -- the option table, the YAML loader, environment overrides, the
 * resolved-config printer and the reference generator (see config.h).
 *
 * Design. Every option is one row of `opts[]`: dotted name, type, default
 * (spelled as it would be in the YAML file), where it lives in sp_config_t,
 * limits, a flag for secrets and a one-line description. Everything else is
 * driven by that table:
 *   - sp_config_defaults() applies each row's default through the same
 *     parsers the file goes through (complex defaults are YAML flow text);
 *   - the loader reads the file with libyaml's document API (so every node
 *     keeps its line) and walks the mappings building dotted paths: a path
 *     that names a row is applied, a path that is a prefix of rows is a
 *     section and is descended into, anything else is an unknown key;
 *   - environment overrides STOREPULSE_<NAME> exist for every scalar row;
 *     any other STOREPULSE_* variable (but STOREPULSE_KAFKA_*) is an error
 *     with the closest row's variable suggested (edit distance);
 *   - the line (or the environment) each value came from is kept in
 *     cfg->origin, so checks made after loading (startup.c) name it too;
 *   - sp_config_print() writes the rows back as nested YAML that the loader
 *     reads back to the same struct; sp_config_print_reference() writes them
 *     as a markdown table (docs/CONFIG.md).
 * Everything under `kafka:` is a librdkafka property: nested maps are joined
 * with dots, lists with commas, and each property is checked against
 * librdkafka's own table at load time so a typo fails with file and line.
 *
 * Window TTLs depend on the window sizes, which may come later in the file,
 * so `windows.ttl` entries are kept aside and resolved once the file is
 * read; a size without an entry keeps its default TTL (or that of the
 * largest default size below it). Schema files are joined with schemas.dir
 * after the environment is applied (STOREPULSE_SCHEMAS_DIR moves them too).
 *
 * Deliberately not here: the alert rules (`alerts:`, SPEC §5) are accepted
 * as a section but left to the alert module, which reads cfg->source; and
 * no side effects (log level, time zone) -- callers apply what they need. */
#include "core/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <librdkafka/rdkafka.h>
#include <yaml.h>

#include "core/err.h"
#include "core/log.h"

extern char **environ;

#define ENV_PREFIX       "STOREPULSE_"
#define ENV_KAFKA_PREFIX "STOREPULSE_KAFKA_"
#define REDACTED         "<redacted>"
#define PATH_MAX_LEN     256

typedef enum opt_type {
    T_STR = 0,
    T_INT,           /* int */
    T_INT64,         /* int64_t */
    T_BOOL,          /* bool */
    T_DURATION,      /* int64_t milliseconds */
    T_ENUM,          /* int index into enums, or a string when size > 0 */
    T_DURATION_LIST, /* windows.sizes */
    T_TTL_MAP,       /* windows.ttl */
    T_DIM_LIST,      /* metrics.funnel.dimensions */
    T_SCHEMA_MAP,    /* schemas.ids */
    T_KAFKA_MAP,     /* kafka: any librdkafka property */
    T_KAFKA_PROP,    /* a kafka property with a default of ours (docs, defaults) */
    T_EXTERNAL,      /* a section owned by another module (alerts) */
} opt_type_t;

#define OPT_SECRET 1u

typedef int (*opt_check_fn)(const char *v, char *why, size_t why_size);

typedef struct opt {
    const char *name;
    opt_type_t type;
    const char *def;
    size_t off;  /* offset in sp_config_t */
    size_t size; /* T_STR (and string T_ENUM): buffer size */
    int64_t min, max;
    const char *const *enums; /* T_ENUM: NULL-terminated */
    opt_check_fn check;       /* extra validation of strings */
    unsigned flags;
    const char *desc;
} opt_t;

static const char *const format_names[] = {"avro", "json", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const sp_str_field_t dim_fields[] = {SP_S_CHANNEL, SP_S_DEVICE, SP_S_COUNTRY, SP_S_CARRIER};
#define DIM_FIELD_CNT (sizeof(dim_fields) / sizeof(dim_fields[0]))

static int check_namespace(const char *v, char *why, size_t why_size);
static int check_topic(const char *v, char *why, size_t why_size);
static int check_alert_format(const char *v, char *why, size_t why_size);
static int check_nonempty(const char *v, char *why, size_t why_size);
static int check_currency(const char *v, char *why, size_t why_size);
static int check_timezone(const char *v, char *why, size_t why_size);

/* Dimension lists: allowed fields as a bit mask in opt.min. */
#define DM_CHANNEL (1 << 0)
#define DM_DEVICE  (1 << 1)
#define DM_COUNTRY (1 << 2)
#define DM_CARRIER (1 << 3)
#define DM_CDC     (DM_CHANNEL | DM_DEVICE | DM_COUNTRY)
#define DIMS(n, f, d, mask, desc)                                                                  \
    { n, T_DIM_LIST, d, OFF(f), 0, mask, 0, NULL, NULL, 0, desc }

#define OFF(f) offsetof(sp_config_t, f)
#define SZ(f)  sizeof(((sp_config_t *)0)->f)
#define STR(n, f, d, chk, fl, desc)                                                                \
    { n, T_STR, d, OFF(f), SZ(f), 0, 0, NULL, chk, fl, desc }
#define INT(n, f, d, lo, hi, desc)                                                                 \
    { n, T_INT, d, OFF(f), 0, lo, hi, NULL, NULL, 0, desc }
#define INT64(n, f, d, lo, hi, desc)                                                               \
    { n, T_INT64, d, OFF(f), 0, lo, hi, NULL, NULL, 0, desc }
#define DUR(n, f, d, lo, desc)                                                                     \
    { n, T_DURATION, d, OFF(f), 0, lo, INT64_MAX, NULL, NULL, 0, desc }
#define TOPIC(st, ST, d)                                                                           \
    STR("topics." st ".name", topics[SP_STREAM_##ST].name, d, check_topic, 0,                      \
        "Kafka topic of the " st " stream"),                                                       \
    {                                                                                              \
        "topics." st ".format", T_ENUM, "avro", OFF(topics[SP_STREAM_##ST].format), 0, 0, 0,       \
            format_names, NULL, 0,                                                                 \
            "payload format of the " st " topic (Confluent-framed Avro or JSON)"                   \
    }

static const opt_t opts[] = {
    STR("namespace", ns, "store", check_namespace, 0,
        "Redis key namespace: every key is `sp:{NAMESPACE}:...` (one Redis Cluster slot)"),

    {"kafka", T_KAFKA_MAP, "", 0, 0, 0, 0, NULL, NULL, 0,
     "any librdkafka property as `kafka.<property>` (nested maps join with dots, lists with "
     "commas); keys containing `password` or `secret` are printed redacted"},
    {"kafka.bootstrap.servers", T_KAFKA_PROP, "127.0.0.1:9092", 0, 0, 0, 0, NULL, NULL, 0,
     "Kafka brokers (host:port, comma separated)"},
    {"kafka.group.id", T_KAFKA_PROP, "storepulse", 0, 0, 0, 0, NULL, NULL, 0,
     "consumer group; every instance of one deployment uses the same"},

    STR("redis.host", redis_host, "127.0.0.1", check_nonempty, 0, "Redis host"),
    INT("redis.port", redis_port, "6379", 1, 65535, "Redis TCP port"),
    STR("redis.unix_socket", redis_unix_socket, "", NULL, 0,
        "Redis unix socket path; when set, host and port are not used"),
    STR("redis.user", redis_user, "", NULL, 0, "Redis ACL user (empty: default user)"),
    STR("redis.password", redis_password, "", NULL, OPT_SECRET,
        "Redis password (secret: prefer the environment)"),
    INT("redis.db", redis_db, "0", 0, INT_MAX, "Redis database number"),
    DUR("redis.timeout", redis_timeout_ms, "5s", 1, "Redis connect and command timeout"),

    TOPIC("clickstream", CLICKSTREAM, "store.clickstream"),
    TOPIC("checkout", CHECKOUT, "store.checkout"),
    TOPIC("shipment", SHIPMENT, "store.shipments"),
    TOPIC("support", SUPPORT, "store.support"),
    STR("topics.deadletter", topic_deadletter, "storepulse.deadletter", check_topic, 0,
        "dead-letter topic (undecodable, invalid and late events, with a reason header)"),
    STR("topics.alerts", topic_alerts, "storepulse.alerts", check_topic, 0,
        "topic the alerts are produced to"),
    {"topics.create", T_BOOL, "false", OFF(topics_create), 0, 0, 0, NULL, NULL, 0,
     "at start, create the input, dead-letter and alert topics that do not exist (Kafka Admin "
     "API; needs the CREATE permission); off: a missing topic is reported and waited for"},
    INT("topics.partitions", topics_partitions, "12", 1, 100000,
        "partitions of a topic created by topics.create"),
    INT("topics.replication_factor", topics_replication, "3", 1, 1000,
        "replication factor of a topic created by topics.create (at most the number of brokers)"),
    DUR("topics.deadletter_retention", topics_deadletter_retention_ms, "7d", 1,
        "retention.ms of the dead-letter topic when topics.create creates it"),
    DUR("topics.alerts_retention", topics_alerts_retention_ms, "30d", 1,
        "retention.ms of the alert topic when topics.create creates it (input topics get the "
        "broker's default retention)"),
    DUR("topics.create_timeout", topics_create_timeout_ms, "30s", 1,
        "how long topics.create waits for the cluster to create the topics"),
    STR("alerting.format", alert_format, "avro", check_alert_format, 0,
        "alert messages: avro (schemas/alert.avsc, Confluent framing), json, or alertmanager "
        "(Prometheus Alertmanager v2 alerts)"),
    INT("alerting.schema_id", alert_schema_id, "100", 0, INT_MAX,
        "Confluent schema id written in front of Avro alerts"),
    STR("alerting.generator_url", alert_generator_url, "", NULL, 0,
        "Alertmanager generatorURL of the alerts (e.g. a dashboard link)"),

    STR("schemas.dir", schemas_dir, "schemas", NULL, 0,
        "directory of the .avsc files (relative to the working directory)"),
    {"schemas.ids", T_SCHEMA_MAP,
     "{1: {stream: clickstream, file: clickstream.avsc}, 2: {stream: checkout, file: "
     "checkout.avsc}, 3: {stream: shipment, file: shipment.avsc}, 4: {stream: support, file: "
     "support.avsc}}",
     0, 0, 0, 0, NULL, NULL, 0,
     "Confluent schema id -> {stream, file} (writer schemas; file relative to schemas.dir, "
     "default `<stream>.avsc`); the file's map replaces the default one"},

    {"windows.sizes", T_DURATION_LIST, "[1m, 5m, 1h, 1d]", 0, 0, 0, 0, NULL, NULL, 0,
     "tumbling window sizes, ascending, each a multiple of the previous one"},
    {"windows.ttl", T_TTL_MAP, "{1m: 2d, 5m: 7d, 1h: 35d, 1d: 400d}", 0, 0, 0, 0, NULL, NULL, 0,
     "Redis TTL of a window's keys, per size; a size left out keeps its default (or that of "
     "the largest default size below it)"},
    STR("windows.timezone", timezone, "UTC", check_timezone, 0,
        "IANA time zone of the daily windows (e.g. Europe/Warsaw)"),
    DUR("windows.max_out_of_orderness", max_out_of_orderness_ms, "5s", 0,
        "watermark = max event time seen minus this"),
    DUR("windows.allowed_lateness", allowed_lateness_ms, "60s", 0,
        "a window is final when the watermark passes its end plus this"),
    DUR("windows.idle_timeout", idle_timeout_ms, "30s", 1,
        "a caught-up partition silent this long stops holding the watermark"),

    INT("metrics.max_dimension_values", max_dimension_values, "64", 1, 1000000,
        "distinct values per dimension and window; the rest count as `__other__`"),
    DIMS("metrics.funnel.dimensions", funnel_dims, "[channel, device, country]", DM_CDC,
         "dimensions of the funnel family (subset of channel, device, country)"),
    DIMS("metrics.abandonment.dimensions", abandonment_dims, "[channel, device]", DM_CDC,
         "dimensions of the abandonment family (subset of channel, device, country)"),
    DUR("metrics.abandonment.abandon_after", abandon_after_ms, "60m", 1,
        "a cart (checkout) without an order of its session this long after it is abandoned"),
    DIMS("metrics.delivery.dimensions", delivery_dims, "[carrier, country]", DM_CARRIER | DM_COUNTRY,
         "dimensions of the delivery family (subset of carrier, country)"),
    DUR("metrics.delivery.dispatch_sla", dispatch_sla_ms, "24h", 1,
        "dispatch later than this after the order is a dispatch SLA breach"),
    DUR("metrics.delivery.at_risk_horizon", at_risk_horizon_ms, "24h", 1,
        "gauge at_risk: in-flight shipments promised within this, not out for delivery"),
    DIMS("metrics.retention.dimensions", retention_dims, "[channel]", DM_CDC,
         "dimensions of the retention family (subset of channel, device, country)"),
    DUR("metrics.retention.horizon", retention_horizon_ms, "365d", 1,
        "a customer is returning with an earlier order at most this long before"),
    DIMS("metrics.support.dimensions", support_dims, "[channel]", DM_CHANNEL,
         "dimensions of the support family (channel or none)"),
    STR("store.currency", currency, "USD", check_currency, 0,
        "ISO 4217 currency of revenue and AOV (no conversion)"),

    INT64("dedup.max_ids", dedup_max_ids, "1000000", 1, INT64_MAX,
          "event ids remembered for dedup per instance (oldest out first)"),
    DUR("state.ttl", state_ttl_ms, "2d", 1,
        "TTL of session, order and cart state in Redis (longer than abandon_after)"),
    DUR("state.shipment_ttl", shipment_ttl_ms, "60d", 1,
        "a shipment without news this long (event time, from its last event or promised "
        "time) is given up: it leaves the gauges and its state is deleted"),
    DUR("state.ticket_ttl", ticket_ttl_ms, "30d", 1, "TTL of support ticket state in Redis"),
    DUR("state.customer_ttl", customer_ttl_ms, "400d", 1,
        "TTL of customer history in Redis (longer than metrics.retention.horizon)"),
    INT64("state.cache_max", state_cache_max, "1000000", 1, INT64_MAX,
          "entities kept in process memory (cold entries are evicted beyond this)"),
    DUR("state.cache_idle", state_cache_idle_ms, "1h", 1,
        "an entity not used for this long (event time: the watermark) leaves process memory; "
        "its state stays in Redis"),
    INT("pipeline.batch_max", batch_max, "10000", 1, 10000000, "messages per batch"),
    DUR("pipeline.batch_timeout", batch_timeout_ms, "100ms", 1, "poll budget per batch"),
    DUR("pipeline.shutdown_timeout", shutdown_timeout_ms, "10s", 1,
        "on SIGTERM/SIGINT: finish, commit and exit within this"),
    INT("embedded.partitions", partitions, "8", 1, 1024,
        "partitions per topic of the embedded broker (--embedded-kafka, broker)"),

    {"log.level", T_ENUM, "info", OFF(log_level), SZ(log_level), 0, 0, level_names, NULL, 0,
     "log level (also librdkafka's: its lines go through the same logger, component `rdkafka`; "
     "`kafka.debug` lines are logged at debug)"},
    {"log.format", T_ENUM, "text", OFF(log_format), SZ(log_format), 0, 0, log_format_names, NULL, 0,
     "log lines (stderr, or log.file): text (`TIME LEVEL COMPONENT: MESSAGE key=value`) or json (one object "
     "per line: time, level, component, msg and fields such as topic, partition)"},
    STR("log.file", log_file, "", NULL, 0,
        "storepulse run: append the log to this file instead of stderr; SIGHUP opens it "
        "again (after logrotate renamed it)"),

    {"alerts", T_EXTERNAL, "[]", 0, 0, 0, 0, NULL, NULL, 0,
     "alert rules (SPEC section 5); read and validated by the alert module"},
};
#define OPT_CNT ((int)(sizeof(opts) / sizeof(opts[0])))
_Static_assert(sizeof(opts) / sizeof(opts[0]) <= SP_CONFIG_MAX_OPTS,
               "raise SP_CONFIG_MAX_OPTS (config.h)");

/* ---- small helpers ------------------------------------------------------ */

static bool opt_is_scalar(const opt_t *o) {
    return o->type == T_STR || o->type == T_INT || o->type == T_INT64 || o->type == T_BOOL ||
           o->type == T_DURATION || o->type == T_ENUM;
}

static const opt_t *opt_find(const char *name) {
    for (int i = 0; i < OPT_CNT; i++)
        if (strcmp(opts[i].name, name) == 0) return &opts[i];
    return NULL;
}

/* True when `path` is a section: some option is named "<path>.<...>". */
static bool opt_is_section(const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < OPT_CNT; i++)
        if (strncmp(opts[i].name, path, n) == 0 && opts[i].name[n] == '.') return true;
    return false;
}

/* Copy into a fixed buffer, zero-filling the rest (so two configs that hold
 * the same values compare equal byte for byte). */
static int set_buf(char *dst, size_t size, const char *v) {
    size_t n = strlen(v);
    if (n >= size) return -1;
    memset(dst, 0, size);
    memcpy(dst, v, n);
    return 0;
}

static void env_name(const char *opt_name, char *buf, size_t size) {
    size_t j = (size_t)snprintf(buf, size, "%s", ENV_PREFIX);
    for (const char *p = opt_name; *p && j + 1 < size; p++)
        buf[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[j < size ? j : size - 1] = '\0';
}

static int parse_int64(const char *s, int64_t *out) {
    char *end;
    long long v;
    if (!*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out) {
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, f[i]) == 0) return *out = false, 0;
    }
    return -1;
}

int sp_duration_parse(const char *s, int64_t *out_ms) {
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    int64_t v = 0;
    const char *p = s;

    if (!s || !isdigit((unsigned char)*p)) return SP_ERR_INVALID;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (INT64_MAX - (*p - '0')) / 10) return SP_ERR_INVALID;
        v = v * 10 + (*p - '0');
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) != 0) continue;
        if (v > INT64_MAX / units[i].ms) return SP_ERR_INVALID;
        *out_ms = v * units[i].ms;
        return SP_OK;
    }
    return SP_ERR_INVALID;
}

void sp_duration_format(int64_t ms, char *buf, size_t size) {
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    const char *sign = ms < 0 ? "-" : "";
    uint64_t v = ms < 0 ? -(uint64_t)ms : (uint64_t)ms;

    if (!buf || size == 0) return;
    if (v != 0)
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (v % (uint64_t)units[i].ms == 0) {
                snprintf(buf, size, "%s%" PRIu64 "%s", sign, v / (uint64_t)units[i].ms,
                         units[i].unit);
                return;
            }
    snprintf(buf, size, "%s%" PRIu64 "ms", sign, v);
}

/* ---- string checks ------------------------------------------------------ */

static int check_nonempty(const char *v, char *why, size_t why_size) {
    if (*v) return 0;
    snprintf(why, why_size, "must not be empty");
    return -1;
}

static int check_namespace(const char *v, char *why, size_t why_size) {
    if (check_nonempty(v, why, why_size)) return -1;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.", *p)) {
            snprintf(why, why_size, "'%s': only letters, digits, '_', '-' and '.' are allowed", v);
            return -1;
        }
    return 0;
}

static int check_alert_format(const char *v, char *why, size_t why_size) {
    if (!strcmp(v, "avro") || !strcmp(v, "json") || !strcmp(v, "alertmanager")) return 0;
    snprintf(why, why_size, "expected avro, json or alertmanager, got '%s'", v);
    return -1;
}

static int check_topic(const char *v, char *why, size_t why_size) {
    if (check_nonempty(v, why, why_size)) return -1;
    if (strlen(v) > 249 || strcmp(v, ".") == 0 || strcmp(v, "..") == 0) goto bad;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) goto bad;
    return 0;
bad:
    snprintf(why, why_size, "'%s' is not a valid Kafka topic name", v);
    return -1;
}

static int check_currency(const char *v, char *why, size_t why_size) {
    if (strlen(v) == 3 && isupper((unsigned char)v[0]) && isupper((unsigned char)v[1]) &&
        isupper((unsigned char)v[2]))
        return 0;
    snprintf(why, why_size, "'%s' is not an ISO 4217 code (three upper-case letters)", v);
    return -1;
}

/* Syntax only: whether the zone exists is known where it is loaded. */
static int check_timezone(const char *v, char *why, size_t why_size) {
    if (check_nonempty(v, why, why_size)) return -1;
    if (v[0] == '/' || strstr(v, "..")) goto bad;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p)) goto bad;
    return 0;
bad:
    snprintf(why, why_size, "'%s' is not an IANA time zone name", v);
    return -1;
}

/* ---- kafka properties --------------------------------------------------- */

static bool kafka_is_secret(const char *key) {
    return strstr(key, "password") || strstr(key, "secret") || strcmp(key, "ssl.key.pem") == 0 ||
           strcmp(key, "sasl.oauthbearer.config") == 0;
}

const char *sp_config_redacted(const char *key, const char *value) {
    const opt_t *o;
    if (!value || !*value || !key) return value;
    if (strncmp(key, "kafka.", 6) == 0) return kafka_is_secret(key + 6) ? REDACTED : value;
    o = opt_find(key);
    return o && (o->flags & OPT_SECRET) ? REDACTED : value;
}

void sp_config_where(const sp_config_t *cfg, const char *key, char *buf, size_t size) {
    const char *src = cfg->source[0] ? cfg->source : "(defaults)";
    char env[PATH_MAX_LEN];
    const opt_t *o;
    int line = 0;

    if (strncmp(key, "kafka.", 6) == 0) {
        for (int i = 0; i < cfg->kafka_cnt; i++)
            if (strcmp(cfg->kafka[i].key, key + 6) == 0) line = cfg->origin.kafka[i];
    } else if (strncmp(key, "schemas.ids.", 12) == 0) {
        long id = strtol(key + 12, NULL, 10);
        for (int i = 0; i < cfg->schema_cnt; i++)
            if (cfg->schemas[i].id == id) line = cfg->origin.schema[i];
        if (line == 0 && (o = opt_find("schemas.ids"))) line = cfg->origin.opt[o - opts];
    } else if ((o = opt_find(key))) {
        line = cfg->origin.opt[o - opts];
    }
    env_name(key, env, sizeof(env));
    if (line > 0)
        snprintf(buf, size, "%s:%d: key '%s'", src, line, key);
    else if (line < 0)
        snprintf(buf, size, "environment %s: key '%s'", env, key);
    else
        snprintf(buf, size, "%s: key '%s' (default)", src, key);
}

const char *sp_config_kafka_get(const sp_config_t *cfg, const char *key) {
    for (int i = 0; i < cfg->kafka_cnt; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0) return cfg->kafka[i].value;
    return NULL;
}

int sp_config_kafka_set(sp_config_t *cfg, const char *key, const char *value) {
    int i;
    if (!key || !*key || !value || strlen(key) >= sizeof(cfg->kafka[0].key) ||
        strlen(value) >= sizeof(cfg->kafka[0].value))
        return SP_ERR_INVALID;
    for (i = 0; i < cfg->kafka_cnt; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0) break;
    if (i == cfg->kafka_cnt) {
        if (cfg->kafka_cnt == SP_MAX_KAFKA_PROPS) return SP_ERR_CONFIG;
        cfg->kafka_cnt++;
        set_buf(cfg->kafka[i].key, sizeof(cfg->kafka[i].key), key);
    }
    set_buf(cfg->kafka[i].value, sizeof(cfg->kafka[i].value), value);
    return SP_OK;
}

/* Index of a property known to be set. */
static int kafka_index(const sp_config_t *cfg, const char *key) {
    for (int i = 0; i < cfg->kafka_cnt; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0) return i;
    assert(!"kafka property not set");
    return 0;
}

/* Validate against librdkafka's property table, then store. */
static int kafka_put(sp_config_t *cfg, const char *key, const char *value, char *why,
                     size_t why_size) {
    char kerr[256];
    rd_kafka_conf_t *conf = NULL;
    int rc = -1;

    if (!*key) {
        snprintf(why, why_size, "empty property name");
        goto out;
    }
    if (strlen(key) >= sizeof(cfg->kafka[0].key) || strlen(value) >= sizeof(cfg->kafka[0].value)) {
        snprintf(why, why_size, "property name or value too long (max %zu / %zu bytes)",
                 sizeof(cfg->kafka[0].key) - 1, sizeof(cfg->kafka[0].value) - 1);
        goto out;
    }
    conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    if (rd_kafka_conf_set(conf, key, value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        snprintf(why, why_size, "librdkafka: %s", kerr);
        goto out;
    }
    if (sp_config_kafka_set(cfg, key, value) != SP_OK) {
        snprintf(why, why_size, "too many kafka properties (max %d)", SP_MAX_KAFKA_PROPS);
        goto out;
    }
    rc = 0;
out:
    if (conf) rd_kafka_conf_destroy(conf);
    return rc;
}

/* ---- applying values ---------------------------------------------------- */

static void enum_list(const char *const *names, char *buf, size_t size) {
    size_t j = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && j < size; i++)
        j += (size_t)snprintf(buf + j, size - j, "%s%s", i ? ", " : "", names[i]);
}

/* Set a scalar option from text (file scalar, environment or default). */
static int set_scalar(sp_config_t *cfg, const opt_t *o, const char *v, char *why, size_t why_size) {
    char *field = (char *)cfg + o->off;
    char list[128];
    int64_t n;
    bool b;

    switch (o->type) {
    case T_STR:
        if (strlen(v) >= o->size) {
            snprintf(why, why_size, "value too long (max %zu bytes)", o->size - 1);
            return -1;
        }
        if (o->check && o->check(v, why, why_size)) return -1;
        set_buf(field, o->size, v);
        return 0;
    case T_INT:
    case T_INT64:
        if (parse_int64(v, &n) || n < o->min || n > o->max) {
            if (o->max == INT64_MAX || (o->type == T_INT && o->max == INT_MAX))
                snprintf(why, why_size, "expected an integer >= %" PRId64 ", got '%s'", o->min, v);
            else
                snprintf(why, why_size,
                         "expected an integer in [%" PRId64 ", %" PRId64 "], got '%s'", o->min,
                         o->max, v);
            return -1;
        }
        if (o->type == T_INT)
            *(int *)field = (int)n;
        else
            *(int64_t *)field = n;
        return 0;
    case T_BOOL:
        if (parse_bool(v, &b)) {
            snprintf(why, why_size, "expected true or false, got '%s'", v);
            return -1;
        }
        *(bool *)field = b;
        return 0;
    case T_DURATION:
        if (sp_duration_parse(v, &n) != SP_OK) {
            snprintf(why, why_size,
                     "expected a duration (250ms, 5s, 10m, 1h, 2d or milliseconds), got '%s'", v);
            return -1;
        }
        if (n < o->min) {
            snprintf(why, why_size, "duration must be at least %" PRId64 "ms, got '%s'", o->min, v);
            return -1;
        }
        *(int64_t *)field = n;
        return 0;
    case T_ENUM:
        for (int i = 0; o->enums[i]; i++) {
            if (strcmp(v, o->enums[i]) != 0) continue;
            if (o->size)
                set_buf(field, o->size, v);
            else
                *(int *)field = i;
            return 0;
        }
        enum_list(o->enums, list, sizeof(list));
        snprintf(why, why_size, "expected one of %s, got '%s'", list, v);
        return -1;
    case T_KAFKA_PROP: return kafka_put(cfg, o->name + 6, v, why, why_size);
    default: snprintf(why, why_size, "not a scalar option"); return -1;
    }
}

/* ---- the loader --------------------------------------------------------- */

typedef struct ttl_entry {
    int64_t size_ms, ttl_ms;
    int line;
} ttl_entry_t;

typedef struct loader {
    sp_config_t *cfg;
    const char *file; /* for messages */
    char *errstr;
    size_t errstr_size;
    yaml_document_t *doc;
    bool record; /* a real file: remember each value's line in cfg->origin */
    bool seen[OPT_CNT];
    /* windows.ttl entries, resolved after the whole file is read */
    ttl_entry_t ttl[SP_MAX_WINDOWS];
    int ttl_cnt;
    /* the window sizes and TTLs in force before the file (fallback TTLs) */
    int64_t def_size_ms[SP_MAX_WINDOWS], def_ttl_ms[SP_MAX_WINDOWS];
    int def_cnt;
} loader_t;

__attribute__((format(printf, 4, 5))) static int fail(loader_t *ld, int line, const char *key,
                                                      const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (ld->errstr && ld->errstr_size)
        snprintf(ld->errstr, ld->errstr_size, "%s:%d: key '%s': %s", ld->file, line, key, why);
    return SP_ERR_CONFIG;
}

static int node_line(const yaml_node_t *n) {
    return (int)n->start_mark.line + 1;
}

static const char *node_kind(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SCALAR_NODE: return "scalar";
    case YAML_SEQUENCE_NODE: return "list";
    case YAML_MAPPING_NODE: return "mapping";
    default: return "empty node";
    }
}

static const char *scalar(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

/* A plain empty, ~ or null scalar. */
static bool node_is_null(const yaml_node_t *n) {
    const char *v;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = scalar(n);
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static int expect(loader_t *ld, const yaml_node_t *n, yaml_node_type_t type, const char *key) {
    static const char *const want[] = {"", "a scalar", "a list", "a mapping"};
    if (n->type == type && (type != YAML_SCALAR_NODE || strlen(scalar(n)) == n->data.scalar.length))
        return SP_OK;
    if (n->type == YAML_SCALAR_NODE && n->type == type)
        return fail(ld, node_line(n), key, "value contains a NUL byte");
    return fail(ld, node_line(n), key, "expected %s, got a %s", want[type], node_kind(n));
}

static yaml_node_t *node_at(loader_t *ld, int index) {
    return yaml_document_get_node(ld->doc, index);
}

static int apply_scalar_node(loader_t *ld, const opt_t *o, yaml_node_t *n) {
    char why[384];
    int rc = expect(ld, n, YAML_SCALAR_NODE, o->name);
    if (rc) return rc;
    if (set_scalar(ld->cfg, o, o->type == T_STR && node_is_null(n) ? "" : scalar(n), why,
                   sizeof(why)))
        return fail(ld, node_line(n), o->name, "%s", why);
    return SP_OK;
}

static int parse_duration_node(loader_t *ld, const opt_t *o, yaml_node_t *n, int64_t *ms) {
    int rc = expect(ld, n, YAML_SCALAR_NODE, o->name);
    if (rc) return rc;
    if (sp_duration_parse(scalar(n), ms) != SP_OK)
        return fail(ld, node_line(n), o->name,
                    "expected a duration (250ms, 5s, 10m, 1h, 2d or milliseconds), got '%s'",
                    scalar(n));
    return SP_OK;
}

static int apply_sizes(loader_t *ld, const opt_t *o, yaml_node_t *n) {
    sp_config_t *cfg = ld->cfg;
    int64_t ms[SP_MAX_WINDOWS];
    char a[32], b[32];
    int cnt = 0, rc;

    if ((rc = expect(ld, n, YAML_SEQUENCE_NODE, o->name))) return rc;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = node_at(ld, *it);
        if (cnt == SP_MAX_WINDOWS)
            return fail(ld, node_line(e), o->name, "too many window sizes (max %d)",
                        SP_MAX_WINDOWS);
        if ((rc = parse_duration_node(ld, o, e, &ms[cnt]))) return rc;
        if (ms[cnt] <= 0) return fail(ld, node_line(e), o->name, "window size must be positive");
        if (cnt > 0) {
            sp_duration_format(ms[cnt], a, sizeof(a));
            sp_duration_format(ms[cnt - 1], b, sizeof(b));
            if (ms[cnt] <= ms[cnt - 1])
                return fail(ld, node_line(e), o->name, "sizes must be ascending: %s after %s", a,
                            b);
            if (ms[cnt] % ms[cnt - 1] != 0)
                return fail(ld, node_line(e), o->name,
                            "each size must be a multiple of the previous one: %s after %s", a, b);
        }
        cnt++;
    }
    if (cnt == 0) return fail(ld, node_line(n), o->name, "at least one window size is needed");
    memset(cfg->window_ms, 0, sizeof(cfg->window_ms));
    memset(cfg->window_ttl_ms, 0, sizeof(cfg->window_ttl_ms));
    memcpy(cfg->window_ms, ms, (size_t)cnt * sizeof(ms[0]));
    cfg->window_cnt = cnt;
    return SP_OK;
}

static int apply_ttl(loader_t *ld, const opt_t *o, yaml_node_t *n) {
    char a[32];
    int rc;

    if ((rc = expect(ld, n, YAML_MAPPING_NODE, o->name))) return rc;
    ld->ttl_cnt = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        ttl_entry_t t = {0, 0, node_line(k)};
        if ((rc = parse_duration_node(ld, o, k, &t.size_ms))) return rc;
        if ((rc = parse_duration_node(ld, o, v, &t.ttl_ms))) return rc;
        sp_duration_format(t.size_ms, a, sizeof(a));
        if (t.ttl_ms < t.size_ms)
            return fail(ld, node_line(v), o->name, "ttl of %s is shorter than the window", a);
        for (int i = 0; i < ld->ttl_cnt; i++)
            if (ld->ttl[i].size_ms == t.size_ms)
                return fail(ld, t.line, o->name, "ttl of %s given twice", a);
        if (ld->ttl_cnt == SP_MAX_WINDOWS)
            return fail(ld, t.line, o->name, "too many entries (max %d)", SP_MAX_WINDOWS);
        ld->ttl[ld->ttl_cnt++] = t;
    }
    return SP_OK;
}

/* After the file: every ttl entry must name a size; sizes without an entry
 * keep the TTL they had before the file, else that of the largest earlier
 * size not above them, else the smallest one's. */
static int resolve_windows(loader_t *ld) {
    sp_config_t *cfg = ld->cfg;
    char a[32];

    for (int t = 0; t < ld->ttl_cnt; t++) {
        int i;
        for (i = 0; i < cfg->window_cnt; i++)
            if (cfg->window_ms[i] == ld->ttl[t].size_ms) break;
        if (i == cfg->window_cnt) {
            sp_duration_format(ld->ttl[t].size_ms, a, sizeof(a));
            return fail(ld, ld->ttl[t].line, "windows.ttl", "no window of size %s in windows.sizes",
                        a);
        }
    }
    for (int i = 0; i < cfg->window_cnt; i++) {
        int64_t size = cfg->window_ms[i], ttl = -1;
        for (int t = 0; t < ld->ttl_cnt && ttl < 0; t++)
            if (ld->ttl[t].size_ms == size) ttl = ld->ttl[t].ttl_ms;
        for (int d = 0; d < ld->def_cnt && ttl < 0; d++)
            if (ld->def_size_ms[d] == size) ttl = ld->def_ttl_ms[d];
        for (int d = ld->def_cnt - 1; d >= 0 && ttl < 0; d--)
            if (ld->def_size_ms[d] <= size) ttl = ld->def_ttl_ms[d];
        if (ttl < 0) ttl = ld->def_cnt ? ld->def_ttl_ms[0] : 2 * 86400000LL;
        if (ttl < size) ttl = size;
        cfg->window_ttl_ms[i] = ttl;
    }
    return SP_OK;
}

static int apply_dims(loader_t *ld, const opt_t *o, yaml_node_t *n) {
    sp_dims_t *out = (sp_dims_t *)((char *)ld->cfg + o->off), dims;
    char allowed[96] = "";
    int rc;

    for (size_t d = 0; d < DIM_FIELD_CNT; d++)
        if (o->min & (1 << d))
            snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s%s",
                     allowed[0] ? ", " : "", sp_str_field_names[dim_fields[d]]);
    memset(&dims, 0, sizeof(dims));
    if (node_is_null(n)) goto done;
    if ((rc = expect(ld, n, YAML_SEQUENCE_NODE, o->name))) return rc;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = node_at(ld, *it);
        size_t d;
        if ((rc = expect(ld, e, YAML_SCALAR_NODE, o->name))) return rc;
        for (d = 0; d < DIM_FIELD_CNT; d++)
            if ((o->min & (1 << d)) && strcmp(scalar(e), sp_str_field_names[dim_fields[d]]) == 0)
                break;
        if (d == DIM_FIELD_CNT)
            return fail(ld, node_line(e), o->name, "unknown dimension '%s' (expected %s)",
                        scalar(e), allowed);
        for (int i = 0; i < dims.cnt; i++)
            if (dims.f[i] == dim_fields[d])
                return fail(ld, node_line(e), o->name, "dimension '%s' given twice", scalar(e));
        dims.f[dims.cnt++] = dim_fields[d];
    }
done:
    *out = dims;
    return SP_OK;
}

static int apply_schemas(loader_t *ld, const opt_t *o, yaml_node_t *n) {
    sp_config_t *cfg = ld->cfg;
    sp_schema_conf_t sc[SP_MAX_SCHEMAS];
    int line[SP_MAX_SCHEMAS];
    char key[PATH_MAX_LEN];
    int cnt = 0, rc;

    if (node_is_null(n)) goto done;
    if ((rc = expect(ld, n, YAML_MAPPING_NODE, o->name))) return rc;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        sp_schema_conf_t *s = &sc[cnt];
        const char *file = NULL;
        int64_t id;
        int stream = -1;

        if ((rc = expect(ld, k, YAML_SCALAR_NODE, o->name))) return rc;
        if (parse_int64(scalar(k), &id) || id < 0 || id > INT32_MAX)
            return fail(ld, node_line(k), o->name, "schema id must be an integer >= 0, got '%s'",
                        scalar(k));
        for (int i = 0; i < cnt; i++)
            if (sc[i].id == id)
                return fail(ld, node_line(k), o->name, "schema id %" PRId64 " given twice", id);
        if (cnt == SP_MAX_SCHEMAS)
            return fail(ld, node_line(k), o->name, "too many schemas (max %d)", SP_MAX_SCHEMAS);
        snprintf(key, sizeof(key), "%s.%" PRId64, o->name, id);
        if ((rc = expect(ld, v, YAML_MAPPING_NODE, key))) return rc;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *fk = node_at(ld, q->key), *fv = node_at(ld, q->value);
            if ((rc = expect(ld, fk, YAML_SCALAR_NODE, key))) return rc;
            snprintf(key, sizeof(key), "%s.%" PRId64 ".%s", o->name, id, scalar(fk));
            if ((rc = expect(ld, fv, YAML_SCALAR_NODE, key))) return rc;
            if (strcmp(scalar(fk), "stream") == 0) {
                stream = sp_stream_lookup(scalar(fv));
                if (stream < 0)
                    return fail(ld, node_line(fv), key,
                                "unknown stream '%s' (expected clickstream, checkout, shipment "
                                "or support)",
                                scalar(fv));
            } else if (strcmp(scalar(fk), "file") == 0) {
                file = scalar(fv);
                if (!*file) return fail(ld, node_line(fv), key, "must not be empty");
            } else {
                return fail(ld, node_line(fk), key, "unknown key (expected stream, file)");
            }
        }
        snprintf(key, sizeof(key), "%s.%" PRId64, o->name, id);
        if (stream < 0) return fail(ld, node_line(v), key, "'stream' is required");
        memset(s, 0, sizeof(*s));
        line[cnt] = node_line(k);
        s->id = (int32_t)id;
        s->stream = (sp_stream_t)stream;
        if (file ? (set_buf(s->path, sizeof(s->path), file) != 0)
                 : (snprintf(s->path, sizeof(s->path), "%s.avsc", sp_stream_names[stream]) < 0))
            return fail(ld, node_line(v), key, "file name too long");
        cnt++;
    }
done:
    memset(cfg->schemas, 0, sizeof(cfg->schemas));
    memcpy(cfg->schemas, sc, (size_t)cnt * sizeof(sc[0]));
    cfg->schema_cnt = cnt;
    memset(cfg->origin.schema, 0, sizeof(cfg->origin.schema));
    if (ld->record) memcpy(cfg->origin.schema, line, (size_t)cnt * sizeof(line[0]));
    return SP_OK;
}

/* A kafka.<prop> value: scalars as they are, lists joined with commas,
 * mappings flattened with dots. */
static int apply_kafka(loader_t *ld, const char *prop, yaml_node_t *n) {
    char key[PATH_MAX_LEN], full[PATH_MAX_LEN + 8], why[384], value[512];
    int rc;

    snprintf(full, sizeof(full), "kafka%s%s", *prop ? "." : "", prop);
    if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = node_at(ld, p->key);
            if ((rc = expect(ld, k, YAML_SCALAR_NODE, full))) return rc;
            if ((size_t)snprintf(key, sizeof(key), "%s%s%s", prop, *prop ? "." : "", scalar(k)) >=
                sizeof(key))
                return fail(ld, node_line(k), full, "key too long");
            if ((rc = apply_kafka(ld, key, node_at(ld, p->value)))) return rc;
        }
        return SP_OK;
    }
    if (!*prop) {
        if (node_is_null(n)) return SP_OK; /* `kafka:` with nothing under it */
        return fail(ld, node_line(n), full, "expected a mapping, got a %s", node_kind(n));
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        size_t j = 0;
        value[0] = '\0';
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            yaml_node_t *e = node_at(ld, *it);
            if ((rc = expect(ld, e, YAML_SCALAR_NODE, full))) return rc;
            int w = snprintf(value + j, sizeof(value) - j, "%s%s", j ? "," : "", scalar(e));
            if (w < 0 || (size_t)w >= sizeof(value) - j)
                return fail(ld, node_line(e), full, "value too long");
            j += (size_t)w;
        }
    } else {
        if ((rc = expect(ld, n, YAML_SCALAR_NODE, full))) return rc;
        if (set_buf(value, sizeof(value), node_is_null(n) ? "" : scalar(n)))
            return fail(ld, node_line(n), full, "value too long");
    }
    if (kafka_put(ld->cfg, prop, value, why, sizeof(why)))
        return fail(ld, node_line(n), full, "%s", why);
    if (ld->record) ld->cfg->origin.kafka[kafka_index(ld->cfg, prop)] = node_line(n);
    return SP_OK;
}

static int apply_node(loader_t *ld, const opt_t *o, yaml_node_t *n) {
    switch (o->type) {
    case T_DURATION_LIST: return apply_sizes(ld, o, n);
    case T_TTL_MAP: return apply_ttl(ld, o, n);
    case T_DIM_LIST: return apply_dims(ld, o, n);
    case T_SCHEMA_MAP: return apply_schemas(ld, o, n);
    case T_KAFKA_MAP: return apply_kafka(ld, "", n);
    case T_KAFKA_PROP: return apply_kafka(ld, o->name + 6, n);
    case T_EXTERNAL: return SP_OK;
    default: return apply_scalar_node(ld, o, n);
    }
}

static int walk_map(loader_t *ld, yaml_node_t *map, const char *prefix) {
    char path[PATH_MAX_LEN];
    int rc;

    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        const opt_t *o;

        if ((rc = expect(ld, k, YAML_SCALAR_NODE, *prefix ? prefix : "(top level)"))) return rc;
        if ((size_t)snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", scalar(k)) >=
            sizeof(path))
            return fail(ld, node_line(k), prefix, "key too long");
        if (strncmp(path, "kafka.", 6) == 0) {
            if ((rc = apply_kafka(ld, path + 6, v))) return rc;
            continue;
        }
        if ((o = opt_find(path))) {
            int idx = (int)(o - opts);
            if (ld->seen[idx]) return fail(ld, node_line(k), path, "given twice");
            ld->seen[idx] = true;
            if (ld->record) ld->cfg->origin.opt[idx] = node_line(k);
            if ((rc = apply_node(ld, o, v))) return rc;
        } else if (opt_is_section(path)) {
            if (node_is_null(v)) continue;
            if ((rc = expect(ld, v, YAML_MAPPING_NODE, path))) return rc;
            if ((rc = walk_map(ld, v, path))) return rc;
        } else {
            return fail(ld, node_line(k), path, "unknown key");
        }
    }
    return SP_OK;
}

/* Parse YAML text or a file into doc; on a syntax error fill errstr with
 * "file:line: reason". */
static int load_doc(yaml_document_t *doc, FILE *fp, const char *text, const char *file,
                    char *errstr, size_t errstr_size) {
    yaml_parser_t parser;
    int rc = SP_OK;

    if (!yaml_parser_initialize(&parser)) return SP_ERR_NOMEM;
    if (fp)
        yaml_parser_set_input_file(&parser, fp);
    else
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, doc)) {
        if (parser.error == YAML_MEMORY_ERROR) {
            rc = SP_ERR_NOMEM;
            snprintf(errstr, errstr_size, "%s: out of memory", file);
            goto out;
        }
        rc = SP_ERR_CONFIG;
        snprintf(errstr, errstr_size, "%s:%zu: YAML syntax error: %s%s%s", file,
                 parser.problem_mark.line + 1, parser.problem ? parser.problem : "unknown",
                 parser.context ? " " : "", parser.context ? parser.context : "");
        goto out;
    }
out:
    yaml_parser_delete(&parser);
    return rc;
}

/* Apply a row's default (scalars directly, the rest as YAML flow text). */
static void apply_default(loader_t *ld, const opt_t *o) {
    yaml_document_t doc;
    yaml_node_t *root;
    char why[384];
    int rc;

    if (o->type == T_KAFKA_MAP || o->type == T_EXTERNAL) return;
    if (opt_is_scalar(o) || o->type == T_KAFKA_PROP) {
        rc = set_scalar(ld->cfg, o, o->def, why, sizeof(why));
    } else {
        rc = load_doc(&doc, NULL, o->def, o->name, why, sizeof(why));
        if (rc == SP_OK) {
            ld->doc = &doc;
            root = yaml_document_get_root_node(&doc);
            rc = root ? apply_node(ld, o, root) : SP_ERR_CONFIG;
            ld->doc = NULL;
            yaml_document_delete(&doc);
        }
    }
    if (rc) {
        /* the table is constant: a default that does not parse is a bug */
        fprintf(stderr, "storepulse: bad default of option %s\n", o->name);
        abort();
    }
}

static void defaults_unresolved(sp_config_t *cfg) {
    loader_t ld;

    memset(cfg, 0, sizeof(*cfg));
    memset(&ld, 0, sizeof(ld));
    ld.cfg = cfg;
    ld.file = "(defaults)";
    for (int i = 0; i < OPT_CNT; i++)
        apply_default(&ld, &opts[i]);
    if (resolve_windows(&ld)) abort();
}

/* Join the schema file names with schemas.dir. */
static int resolve_schemas(sp_config_t *cfg, char *errstr, size_t errstr_size) {
    const char *dir = cfg->schemas_dir;
    size_t dl = strlen(dir);
    char buf[sizeof(cfg->schemas[0].path)];

    for (int i = 0; i < cfg->schema_cnt; i++) {
        sp_schema_conf_t *s = &cfg->schemas[i];
        if (s->path[0] == '/' || dl == 0) continue;
        if ((size_t)snprintf(buf, sizeof(buf), "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/",
                             s->path) >= sizeof(buf)) {
            snprintf(errstr, errstr_size, "key 'schemas.ids': path of schema %d too long", s->id);
            return SP_ERR_CONFIG;
        }
        set_buf(s->path, sizeof(s->path), buf);
    }
    return SP_OK;
}

/* State must outlive the decisions that read it. */
static int check_lifetimes(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    const char *src = cfg->source[0] ? cfg->source : "(defaults)";
    if (cfg->state_ttl_ms <= cfg->abandon_after_ms + cfg->allowed_lateness_ms) {
        snprintf(errstr, errstr_size,
                 "%s: key 'state.ttl': must be longer than metrics.abandonment.abandon_after + "
                 "windows.allowed_lateness (cart state is read when the cart is decided)",
                 src);
        return SP_ERR_CONFIG;
    }
    if (cfg->customer_ttl_ms < cfg->retention_horizon_ms) {
        snprintf(errstr, errstr_size,
                 "%s: key 'state.customer_ttl': must be at least metrics.retention.horizon", src);
        return SP_ERR_CONFIG;
    }
    return SP_OK;
}

void sp_config_defaults(sp_config_t *cfg) {
    char why[64];
    defaults_unresolved(cfg);
    resolve_schemas(cfg, why, sizeof(why));
}

/* Levenshtein distance of two short strings (longer ones: a large value). */
static int edit_distance(const char *a, const char *b) {
    int prev[PATH_MAX_LEN + 1], cur[PATH_MAX_LEN + 1];
    size_t la = strlen(a), lb = strlen(b);
    if (la > PATH_MAX_LEN || lb > PATH_MAX_LEN) return INT_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(int));
    }
    return prev[lb];
}

/* A STOREPULSE_* variable that sets nothing is a mistake (a misspelled
 * STOREPULSE_REDIS_PASWORD would leave the password empty): refuse it, with
 * the closest variable that exists. STOREPULSE_KAFKA_* are properties,
 * checked by librdkafka's table. */
static int check_env_names(char *errstr, size_t errstr_size) {
    char name[PATH_MAX_LEN], env[PATH_MAX_LEN], best[PATH_MAX_LEN] = "";
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        const opt_t *settable = NULL, *only_file = NULL;
        int best_d = INT_MAX;
        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || !eq) continue;
        if (strncmp(*e, ENV_KAFKA_PREFIX, strlen(ENV_KAFKA_PREFIX)) == 0) continue;
        snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
        for (int i = 0; i < OPT_CNT && !settable; i++) {
            const opt_t *o = &opts[i];
            int d;
            if (o->type == T_KAFKA_MAP || o->type == T_KAFKA_PROP) continue;
            env_name(o->name, env, sizeof(env));
            if (strcmp(env, name) == 0) {
                if (opt_is_scalar(o))
                    settable = o;
                else
                    only_file = o;
                continue;
            }
            if (!opt_is_scalar(o)) continue;
            if ((d = edit_distance(name, env)) < best_d) {
                best_d = d;
                snprintf(best, sizeof(best), "%s", env);
            }
        }
        if (settable) continue;
        if (only_file)
            snprintf(errstr, errstr_size,
                     "environment %s: key '%s' can only be set in the config file", name,
                     only_file->name);
        else
            snprintf(errstr, errstr_size,
                     "environment %s: no such option (did you mean %s? kafka properties are "
                     "STOREPULSE_KAFKA_<PROPERTY>)",
                     name, best);
        return SP_ERR_CONFIG;
    }
    return SP_OK;
}

static int apply_env(sp_config_t *cfg, char *errstr, size_t errstr_size) {
    char name[PATH_MAX_LEN], why[384], key[PATH_MAX_LEN];
    const char *v;

    if (check_env_names(errstr, errstr_size)) return SP_ERR_CONFIG;

    for (int i = 0; i < OPT_CNT; i++) {
        const opt_t *o = &opts[i];
        if (!opt_is_scalar(o)) continue;
        env_name(o->name, name, sizeof(name));
        if (!(v = getenv(name))) continue;
        if (set_scalar(cfg, o, v, why, sizeof(why))) {
            snprintf(errstr, errstr_size, "environment %s: key '%s': %s", name, o->name, why);
            return SP_ERR_CONFIG;
        }
        cfg->origin.opt[i] = -1;
    }
    for (char **e = environ; e && *e; e++) {
        const char *p = *e + strlen(ENV_KAFKA_PREFIX), *eq = strchr(*e, '=');
        size_t n;
        if (strncmp(*e, ENV_KAFKA_PREFIX, strlen(ENV_KAFKA_PREFIX)) != 0 || !eq) continue;
        n = (size_t)(eq - p);
        snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
        if (n >= sizeof(key)) {
            snprintf(errstr, errstr_size, "environment %s: property name too long", name);
            return SP_ERR_CONFIG;
        }
        for (size_t j = 0; j < n; j++)
            key[j] = p[j] == '_' ? '.' : (char)tolower((unsigned char)p[j]);
        key[n] = '\0';
        if (kafka_put(cfg, key, eq + 1, why, sizeof(why))) {
            snprintf(errstr, errstr_size, "environment %s: key 'kafka.%s': %s", name, key, why);
            return SP_ERR_CONFIG;
        }
        cfg->origin.kafka[kafka_index(cfg, key)] = -1;
    }
    return SP_OK;
}

int sp_config_load(sp_config_t *cfg, const char *path, char *errstr, size_t errstr_size) {
    yaml_document_t doc;
    bool have_doc = false;
    yaml_node_t *root;
    FILE *fp = NULL;
    loader_t *ld = NULL;
    char dummy[8];
    int rc;

    if (!errstr || !errstr_size) {
        errstr = dummy;
        errstr_size = sizeof(dummy);
    }
    errstr[0] = '\0';
    defaults_unresolved(cfg);
    if (!path) goto env;

    if (set_buf(cfg->source, sizeof(cfg->source), path)) {
        snprintf(errstr, errstr_size, "%s: path too long", path);
        rc = SP_ERR_CONFIG;
        goto out;
    }
    if (!(fp = fopen(path, "rb"))) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        rc = SP_ERR_CONFIG;
        goto out;
    }
    if ((rc = load_doc(&doc, fp, NULL, path, errstr, errstr_size))) goto out;
    have_doc = true;
    if (!(ld = calloc(1, sizeof(*ld)))) {
        rc = SP_ERR_NOMEM;
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    ld->cfg = cfg;
    ld->file = path;
    ld->errstr = errstr;
    ld->errstr_size = errstr_size;
    ld->doc = &doc;
    ld->record = true;
    ld->def_cnt = cfg->window_cnt;
    memcpy(ld->def_size_ms, cfg->window_ms, sizeof(ld->def_size_ms));
    memcpy(ld->def_ttl_ms, cfg->window_ttl_ms, sizeof(ld->def_ttl_ms));

    root = yaml_document_get_root_node(&doc);
    if (root && !node_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            snprintf(errstr, errstr_size, "%s:%d: the top level must be a mapping, got a %s", path,
                     node_line(root), node_kind(root));
            rc = SP_ERR_CONFIG;
            goto out;
        }
        if ((rc = walk_map(ld, root, ""))) goto out;
    }
    if ((rc = resolve_windows(ld))) goto out;

env:
    if ((rc = apply_env(cfg, errstr, errstr_size))) goto out;
    if ((rc = check_lifetimes(cfg, errstr, errstr_size))) goto out;
    rc = resolve_schemas(cfg, errstr, errstr_size);
out:
    free(ld);
    if (have_doc) yaml_document_delete(&doc);
    if (fp) fclose(fp);
    return rc;
}

/* ---- printing ----------------------------------------------------------- */


/* A double-quoted YAML string that reads back to the same bytes: besides
 * ASCII controls, the characters YAML folds as line breaks inside a quoted
 * scalar (U+0085, U+2028, U+2029) or does not allow raw (C1 controls,
 * U+FEFF, U+FFFE, U+FFFF) are escaped; a value holding one (a "\N" in the
 * file) used to print as a space (found by fuzz_config). Bytes that are not
 * UTF-8 (only possible from the environment) are written as they are. */
static void print_quoted(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        uint32_t cp;
        int n;
        if (*p >= 0x80 && (n = sp_utf8_seq(p, &cp)) > 0) {
            if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
                cp == 0xfffe || cp == 0xffff)
                fprintf(out, "\\u%04x", (unsigned)cp);
            else
                fwrite(p, 1, (size_t)n, out);
            p += n - 1;
        } else if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void print_value(const sp_config_t *cfg, const opt_t *o, FILE *out, int indent) {
    const char *field = (const char *)cfg + o->off;
    char a[32], b[32];

    /* inline values follow "key: "; non-empty block maps start on the next line */
    if (!((o->type == T_SCHEMA_MAP && cfg->schema_cnt) ||
          (o->type == T_KAFKA_MAP && cfg->kafka_cnt)))
        fputc(' ', out);
    switch (o->type) {
    case T_STR: print_quoted(out, (o->flags & OPT_SECRET) && *field ? REDACTED : field); break;
    case T_INT: fprintf(out, "%d", *(const int *)field); break;
    case T_INT64: fprintf(out, "%" PRId64, *(const int64_t *)field); break;
    case T_BOOL: fputs(*(const bool *)field ? "true" : "false", out); break;
    case T_DURATION:
        sp_duration_format(*(const int64_t *)field, a, sizeof(a));
        fputs(a, out);
        break;
    case T_ENUM: fputs(o->size ? field : o->enums[*(const int *)field], out); break;
    case T_DURATION_LIST:
        fputc('[', out);
        for (int i = 0; i < cfg->window_cnt; i++) {
            sp_duration_format(cfg->window_ms[i], a, sizeof(a));
            fprintf(out, "%s%s", i ? ", " : "", a);
        }
        fputc(']', out);
        break;
    case T_TTL_MAP:
        fputc('{', out);
        for (int i = 0; i < cfg->window_cnt; i++) {
            sp_duration_format(cfg->window_ms[i], a, sizeof(a));
            sp_duration_format(cfg->window_ttl_ms[i], b, sizeof(b));
            fprintf(out, "%s%s: %s", i ? ", " : "", a, b);
        }
        fputc('}', out);
        break;
    case T_DIM_LIST: {
        const sp_dims_t *d = (const sp_dims_t *)field;
        fputc('[', out);
        for (int i = 0; i < d->cnt; i++)
            fprintf(out, "%s%s", i ? ", " : "", sp_str_field_names[d->f[i]]);
        fputc(']', out);
        break;
    }
    case T_SCHEMA_MAP: {
        size_t dl = strlen(cfg->schemas_dir);
        bool slash = dl && cfg->schemas_dir[dl - 1] == '/';
        if (cfg->schema_cnt == 0) fputs("{}", out);
        for (int i = 0; i < cfg->schema_cnt; i++) {
            const sp_schema_conf_t *s = &cfg->schemas[i];
            const char *file = s->path;
            if (dl && strncmp(file, cfg->schemas_dir, dl) == 0 && (slash || file[dl] == '/'))
                file += dl + (slash ? 0 : 1);
            fprintf(out, "\n%*s%d: {stream: %s, file: ", indent + 2, "", (int)s->id,
                    sp_stream_names[s->stream]);
            print_quoted(out, file);
            fputc('}', out);
        }
        break;
    }
    case T_KAFKA_MAP:
        if (cfg->kafka_cnt == 0) fputs("{}", out);
        for (int i = 0; i < cfg->kafka_cnt; i++) {
            fprintf(out, "\n%*s", indent + 2, "");
            print_quoted(out, cfg->kafka[i].key);
            fputs(": ", out);
            print_quoted(out, kafka_is_secret(cfg->kafka[i].key) && cfg->kafka[i].value[0]
                                  ? REDACTED
                                  : cfg->kafka[i].value);
        }
        break;
    default: break;
    }
}

/* Split a dotted name into at most 8 segments (pointers into buf). */
static int split_name(const char *name, char *buf, size_t size, char **seg) {
    int n = 0;
    snprintf(buf, size, "%s", name);
    for (char *p = buf; n < 8;) {
        seg[n++] = p;
        if (!(p = strchr(p, '.'))) break;
        *p++ = '\0';
    }
    return n;
}

void sp_config_print(const sp_config_t *cfg, FILE *out) {
    char pbuf[PATH_MAX_LEN], cbuf[PATH_MAX_LEN], *pseg[8], *cseg[8];
    int pn = 0;

    fputs("# StorePulse configuration, resolved (defaults, file, environment).\n", out);
    if (cfg->source[0]) fprintf(out, "# source: %s\n", cfg->source);
    for (int i = 0; i < OPT_CNT; i++) {
        const opt_t *o = &opts[i];
        int cn, common = 0;
        if (o->type == T_KAFKA_PROP || o->type == T_EXTERNAL) continue;
        cn = split_name(o->name, cbuf, sizeof(cbuf), cseg);
        while (common < pn - 1 && common < cn - 1 && strcmp(pseg[common], cseg[common]) == 0)
            common++;
        for (int d = common; d < cn - 1; d++)
            fprintf(out, "%*s%s:\n", 2 * d, "", cseg[d]);
        fprintf(out, "%*s%s:", 2 * (cn - 1), "", cseg[cn - 1]);
        print_value(cfg, o, out, 2 * (cn - 1));
        fputc('\n', out);
        memcpy(pbuf, cbuf, sizeof(pbuf));
        for (int d = 0; d < cn; d++)
            pseg[d] = pbuf + (cseg[d] - cbuf);
        pn = cn;
    }
}

int sp_config_diff(const sp_config_t *a, const sp_config_t *b, char *out, size_t size) {
    int n = 0;
    size_t o = 0;
    if (size) out[0] = '\0';
    for (int i = 0; i < OPT_CNT; i++) {
        const opt_t *op = &opts[i];
        int differ;
        if (op->type == T_KAFKA_PROP || op->type == T_EXTERNAL) continue;
        if (op->type == T_STR) { /* secrets too: compared, never shown */
            differ = strcmp((const char *)a + op->off, (const char *)b + op->off) != 0;
        } else {
            char *ta = NULL, *tb = NULL;
            size_t la = 0, lb = 0;
            FILE *fa = open_memstream(&ta, &la), *fb = open_memstream(&tb, &lb);
            if (fa) print_value(a, op, fa, 0);
            if (fb) print_value(b, op, fb, 0);
            if (fa) fclose(fa);
            if (fb) fclose(fb);
            differ = !ta || !tb || la != lb || memcmp(ta, tb, la) != 0;
            free(ta);
            free(tb);
        }
        if (!differ) continue;
        n++;
        if (o < size) o += (size_t)snprintf(out + o, size - o, "%s%s", o ? ", " : "", op->name);
    }
    return n;
}

static const char *type_name(const opt_t *o) {
    switch (o->type) {
    case T_STR: return "string";
    case T_INT:
    case T_INT64: return "integer";
    case T_BOOL: return "bool";
    case T_DURATION: return "duration";
    case T_ENUM: return "enum";
    case T_DURATION_LIST: return "list of durations";
    case T_TTL_MAP: return "map duration: duration";
    case T_DIM_LIST: return "list of dimensions";
    case T_SCHEMA_MAP: return "map id: {stream, file}";
    case T_KAFKA_MAP: return "map of properties";
    case T_KAFKA_PROP: return "string (librdkafka)";
    case T_EXTERNAL: return "list of rules";
    }
    return "?";
}

/* Markdown-safe: escape '|'. */
static void print_cell(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', out);
        fputc(*s, out);
    }
}

void sp_config_print_reference(FILE *out) {
    char env[PATH_MAX_LEN], list[128];

    fputs("# StorePulse configuration reference\n\n"
          "Generated from the option table in `core/config.c` "
          "(`sp_config_print_reference()`); do not edit by hand.\n\n"
          "The configuration is one YAML file (`storepulse run -c FILE`, "
          "`storepulse check-config -c FILE`); `deploy/storepulse.yaml` is a commented example "
          "with every option at its default. Nested maps and dotted keys are equivalent: "
          "`redis: {port: 6380}` is `redis.port: 6380`. Unknown keys, wrong types and bad "
          "values are errors naming the file, line and key, e.g.\n\n"
          "```\nstorepulse.yaml:12: key 'windows.sizes': sizes must be ascending: 5m after 1h\n"
          "```\n\n"
          "Durations are written `250ms`, `5s`, `10m`, `1h`, `2d`, or as plain milliseconds.\n\n"
          "Environment variables override the file: `STOREPULSE_<OPTION>` with dots as "
          "underscores, upper case (`STOREPULSE_REDIS_PASSWORD`, `STOREPULSE_NAMESPACE`), for "
          "every option with a single value. Any librdkafka property can be set as "
          "`kafka.<property>` in the file or as `STOREPULSE_KAFKA_<PROPERTY>` (upper case, dots "
          "as underscores: `STOREPULSE_KAFKA_SASL_PASSWORD` sets `sasl.password`); properties "
          "are checked against librdkafka's own list when the config is loaded. Any other "
          "`STOREPULSE_*` variable is an error naming it and the closest option's variable "
          "(`environment STOREPULSE_REDIS_PASWORD: no such option (did you mean "
          "STOREPULSE_REDIS_PASSWORD? ...)`).\n\n"
          "`storepulse check-config -c FILE` makes every check `storepulse run` makes before it "
          "connects to anything, and refuses with the same message: the time zone exists, the "
          "schema directory and every schema file of `schemas.ids` parse (and "
          "`schemas.dir/alert.avsc` for Avro alerts), the alert rules, every `kafka.*` property "
          "as librdkafka takes it for the consumer and the producers (combinations such as "
          "`acks` with the idempotent producer, TLS certificates and keys), and the TLS/SASL "
          "files named are readable. A message names the file, line and key the value came "
          "from, or the environment variable:\n\n"
          "```\nstorepulse: sp.yaml:7: key 'windows.timezone': unknown time zone 'Mars/Olympus' "
          "(no such zone in /usr/share/zoneinfo)\n```\n\n"
          "Secrets (`redis.password`, kafka properties whose name contains `password` or "
          "`secret`, `ssl.key.pem`, `sasl.oauthbearer.config`) are printed as `<redacted>` by "
          "`check-config` and never logged. Prefer the environment for them.\n\n"
          "| Option | Type | Default | Environment | Description |\n"
          "|---|---|---|---|---|\n",
          out);
    for (int i = 0; i < OPT_CNT; i++) {
        const opt_t *o = &opts[i];
        fprintf(out, "| `%s` | %s", o->name, type_name(o));
        if (o->type == T_ENUM) {
            enum_list(o->enums, list, sizeof(list));
            fputs(" (", out);
            print_cell(out, list);
            fputc(')', out);
        } else if ((o->type == T_INT || o->type == T_INT64) && o->max != INT64_MAX &&
                   !(o->type == T_INT && o->max == INT_MAX)) {
            fprintf(out, " (%" PRId64 "-%" PRId64 ")", o->min, o->max);
        }
        fputs(" | ", out);
        if (o->type == T_KAFKA_MAP)
            fputs("see below", out);
        else if (*o->def) {
            fputc('`', out);
            print_cell(out, o->def);
            fputc('`', out);
        } else {
            fputs("(empty)", out);
        }
        fputs(" | ", out);
        if (opt_is_scalar(o) || o->type == T_KAFKA_PROP) {
            env_name(o->name, env, sizeof(env));
            fprintf(out, "`%s`", env);
        } else if (o->type == T_KAFKA_MAP) {
            fputs("`STOREPULSE_KAFKA_<PROPERTY>`", out);
        } else {
            fputs("-", out);
        }
        fputs(" | ", out);
        print_cell(out, o->desc);
        fputs(" |\n", out);
    }
}
