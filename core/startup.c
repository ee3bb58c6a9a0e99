/* startup.c -- the start-up checks shared by `run` and `check-config` (see
 * startup.h).
 *
 * Design. A check that only `run` made used to pass `check-config` and fail
 * at start (a time zone that does not exist, a schema directory that is not
 * there). Here each check builds what `run` builds, offline, and throws it
 * away: the decoder (every schema file parsed, through the decoder itself),
 * the alert rules (the rules module), and librdkafka's configuration of
 * each client, finalised by rd_kafka_new() on a copy that has no
 * bootstrap.servers, so nothing connects (librdkafka checks property
 * combinations such as enable.idempotence with acks, and loads the TLS
 * certificates and keys, only there). Errors name where the value came
 * from (sp_config_where): the file and line, or the environment variable.
 *
 * The order is the order of the fixes a user makes: the file's own values
 * first, then the files they point at, then Kafka.
 *
 * Not here: anything that needs the network (Redis reachable, topics
 * present: the run loop reports those as not-ready causes). */
#include "core/startup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "aggregators/rules.h"
#include "consumers/decode.h"
#include "core/err.h"
#include "core/file.h"
#include "core/kafka.h"
#include "producers/alert.h"

#define ZONEINFO      "/usr/share/zoneinfo"
#define MAX_AVSC_SIZE (1 << 20)

__attribute__((format(printf, 5, 6))) static int fail(const sp_config_t *cfg, const char *key,
                                                      char *errstr, size_t errstr_size,
                                                      const char *fmt, ...) {
    char where[700], why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    sp_config_where(cfg, key, where, sizeof(where));
    snprintf(errstr, errstr_size, "%s: %s", where, why);
    return SP_ERR_CONFIG;
}

/* The zone must be a compiled zone file: a directory (windows.timezone:
 * Europe) or a missing file would make the C library fall back to UTC
 * without a word. */
static int check_timezone(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    const char *tz = cfg->timezone;
    char path[256], magic[4];
    struct stat st;
    int fd;
    ssize_t n;

    if (!tz[0] || !strcmp(tz, "UTC") || !strcmp(tz, "Etc/UTC")) return SP_OK;
    snprintf(path, sizeof(path), "%s/%s", ZONEINFO, tz);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return fail(cfg, "windows.timezone", errstr, errstr_size,
                    "unknown time zone '%s' (no such zone in " ZONEINFO ")", tz);
    if ((fd = open(path, O_RDONLY)) < 0)
        return fail(cfg, "windows.timezone", errstr, errstr_size, "time zone '%s': %s: %s", tz,
                    path, strerror(errno));
    n = read(fd, magic, sizeof(magic));
    close(fd);
    if (n != 4 || memcmp(magic, "TZif", 4) != 0)
        return fail(cfg, "windows.timezone", errstr, errstr_size,
                    "time zone '%s': %s is not a zone file", tz, path);
    return SP_OK;
}

static int read_file(const char *path, char **out, size_t *len, char *why, size_t why_size) {
    return sp_file_read(path, MAX_AVSC_SIZE, out, len, why, why_size) == SP_OK ? 0 : -1;
}

/* The decoder as run builds it: reader schemas from schemas.dir, then each
 * writer schema of schemas.ids (errors at that entry's line). */
static int check_schemas(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    const char *dir = cfg->schemas_dir[0] ? cfg->schemas_dir : ".";
    sp_config_t *readers = NULL;
    sp_decoder_t *d = NULL;
    char why[1024], key[64], *text = NULL;
    struct stat st;
    size_t len;
    int rc = SP_ERR_CONFIG;

    if (stat(dir, &st) != 0) {
        fail(cfg, "schemas.dir", errstr, errstr_size, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        fail(cfg, "schemas.dir", errstr, errstr_size, "%s: not a directory", dir);
        goto out;
    }
    /* the reader schemas alone: a config without writer schemas */
    if (!(readers = malloc(sizeof(*readers)))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    memcpy(readers, cfg, sizeof(*readers));
    readers->schema_cnt = 0;
    if (!(d = sp_decoder_new(readers, why, sizeof(why)))) {
        fail(cfg, "schemas.dir", errstr, errstr_size, "reader schema %s", why);
        goto out;
    }
    for (int i = 0; i < cfg->schema_cnt; i++) {
        const sp_schema_conf_t *sc = &cfg->schemas[i];
        snprintf(key, sizeof(key), "schemas.ids.%d", (int)sc->id);
        if (read_file(sc->path, &text, &len, why, sizeof(why)) != 0) {
            fail(cfg, key, errstr, errstr_size, "%s", why);
            goto out;
        }
        if (sp_decoder_add_schema(d, sc->id, sc->stream, text, len, why, sizeof(why)) != SP_OK) {
            fail(cfg, key, errstr, errstr_size, "%s: %s", sc->path, why);
            goto out;
        }
        free(text);
        text = NULL;
    }
    sp_decoder_destroy(d);
    /* and the decoder exactly as run makes it */
    if (!(d = sp_decoder_new(cfg, why, sizeof(why)))) {
        fail(cfg, "schemas.ids", errstr, errstr_size, "%s", why);
        goto out;
    }
    rc = SP_OK;
out:
    free(text);
    sp_decoder_destroy(d);
    free(readers);
    return rc;
}

/* Avro alerts are written with schemas.dir/alert.avsc: encode one. */
static int check_alert_schema(const sp_config_t *cfg, const sp_rules_t *rules, char *errstr,
                              size_t errstr_size) {
    char path[1100], why[1024], *out = NULL;
    sp_alert_t *a;
    size_t len = 0;
    int rc;

    if (strcmp(cfg->alert_format, "avro") != 0 || rules->n == 0) return SP_OK;
    if (!(a = calloc(1, sizeof(*a)))) {
        snprintf(errstr, errstr_size, "out of memory");
        return SP_ERR_NOMEM;
    }
    snprintf(path, sizeof(path), "%s/alert.avsc", cfg->schemas_dir);
    snprintf(a->rule, sizeof(a->rule), "%s", rules->r[0].name);
    rc = sp_alert_encode(a, SP_ALERT_FMT_AVRO, cfg->alert_schema_id, path, NULL, &out, &len, why,
                         sizeof(why));
    free(out);
    free(a);
    if (rc != 0) return fail(cfg, "alerting.format", errstr, errstr_size, "alert schema: %s", why);
    return SP_OK;
}

static int check_rules(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    sp_rules_t *rules = calloc(1, sizeof(*rules));
    int rc;
    if (!rules) {
        snprintf(errstr, errstr_size, "out of memory");
        return SP_ERR_NOMEM;
    }
    rc = sp_rules_load(cfg, rules, errstr, errstr_size);
    if (rc == SP_OK) rc = check_alert_schema(cfg, rules, errstr, errstr_size);
    free(rules);
    return rc;
}

/* Files librdkafka reads when it starts (TLS, SASL): readable, named by key.
 * Paths are not secrets; the values of the *password properties never show. */
static int check_kafka_files(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    static const char *const file_props[] = {"ssl.ca.location",      "ssl.certificate.location",
                                             "ssl.key.location",     "ssl.keystore.location",
                                             "ssl.crl.location",     "ssl.engine.location",
                                             "sasl.kerberos.keytab", NULL};
    char key[160];

    for (int i = 0; i < cfg->kafka_cnt; i++) {
        const char *k = cfg->kafka[i].key, *v = cfg->kafka[i].value;
        int listed = 0;
        for (int j = 0; file_props[j]; j++)
            listed |= strcmp(k, file_props[j]) == 0;
        if (!listed || !*v) continue;
        if (!strcmp(k, "ssl.ca.location") && !strcmp(v, "probe")) continue;
        snprintf(key, sizeof(key), "kafka.%s", k);
        if (access(v, R_OK) != 0)
            return fail(cfg, key, errstr, errstr_size, "cannot read '%s': %s", v, strerror(errno));
        if (strcmp(k, "ssl.ca.location") != 0) { /* only the CA may be a directory */
            struct stat st;
            if (stat(v, &st) == 0 && S_ISDIR(st.st_mode))
                return fail(cfg, key, errstr, errstr_size, "'%s' is a directory, not a file", v);
        }
    }
    return SP_OK;
}

static void quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* librdkafka's checks of one client's configuration, offline. */
static int probe_client(const sp_config_t *cfg, sp_kafka_role_t role, const char *what,
                        char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *conf = sp_kafka_conf_new(cfg, role, errstr, errstr_size);
    char kerr[512], where[700];
    const char *oidc;
    rd_kafka_t *rk;

    if (!conf) return SP_ERR_CONFIG;
    rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
    /* as run sets them (dead-letter and alert producers: idempotent) */
    if ((role == SP_KAFKA_PRODUCER &&
         (rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) ||
          rd_kafka_conf_set(conf, "linger.ms", "5", kerr, sizeof(kerr)))) ||
        (role == SP_KAFKA_CONSUMER &&
         rd_kafka_conf_set(conf, "enable.auto.commit", "false", kerr, sizeof(kerr))) ||
        /* no brokers: nothing connects */
        rd_kafka_conf_set(conf, "bootstrap.servers", "", kerr, sizeof(kerr))) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka %s: librdkafka: %s", what, kerr);
        return SP_ERR_CONFIG;
    }
    /* nothing that reaches out by itself: no Kerberos ticket refresh (kinit
     * talks to the KDC; the property is missing from builds without
     * GSSAPI, hence no error check), and an OIDC token is fetched over
     * HTTP at once, so with OIDC the property checks above are all */
    rd_kafka_conf_set(conf, "sasl.kerberos.min.time.before.relogin", "0", kerr, sizeof(kerr));
    oidc = sp_config_kafka_get(cfg, "sasl.oauthbearer.method");
    if (oidc && !strcmp(oidc, "oidc")) {
        rd_kafka_conf_destroy(conf);
        return SP_OK;
    }
    rk = rd_kafka_new(role == SP_KAFKA_PRODUCER ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, kerr,
                      sizeof(kerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        sp_config_where(cfg, "kafka", where, sizeof(where));
        /* librdkafka names the property (in backquotes, or first): blame it if it is ours */
        for (int i = 0; i < cfg->kafka_cnt; i++) {
            char quoted[140], key[140];
            snprintf(quoted, sizeof(quoted), "`%s`", cfg->kafka[i].key);
            size_t kl = strlen(cfg->kafka[i].key);
            if (!strstr(kerr, quoted) &&
                !(strncmp(kerr, cfg->kafka[i].key, kl) == 0 && kerr[kl] == ' '))
                continue;
            snprintf(key, sizeof(key), "kafka.%s", cfg->kafka[i].key);
            sp_config_where(cfg, key, where, sizeof(where));
            break;
        }
        snprintf(errstr, errstr_size, "%s: the %s's configuration: librdkafka: %s", where, what,
                 kerr);
        return SP_ERR_CONFIG;
    }
    rd_kafka_destroy(rk);
    return SP_OK;
}

int sp_startup_check(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    char dummy[8];
    int rc;

    if (!errstr || !errstr_size) {
        errstr = dummy;
        errstr_size = sizeof(dummy);
    }
    errstr[0] = '\0';
    if ((rc = check_timezone(cfg, errstr, errstr_size))) return rc;
    if ((rc = check_schemas(cfg, errstr, errstr_size))) return rc;
    if ((rc = check_rules(cfg, errstr, errstr_size))) return rc;
    if ((rc = check_kafka_files(cfg, errstr, errstr_size))) return rc;
    if ((rc = probe_client(cfg, SP_KAFKA_CONSUMER, "consumer", errstr, errstr_size))) return rc;
    if ((rc = probe_client(cfg, SP_KAFKA_PRODUCER, "producer", errstr, errstr_size))) return rc;
    return SP_OK;
}
