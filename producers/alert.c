/* alert.c -- the alert record on the wire, and `storepulse alerts`.
 *
 * What: one alert transition (alert.h) in three encodings on the alert
 * topic, told apart by their first byte:
 *  - Avro (0x00): Confluent framing -- magic 0, the 4-byte big-endian schema
 *    id -- then the Avro binary of schemas/alert.avsc. The schema file is
 *    parsed once per process (per path) and kept with its generic value
 *    class; every call builds and frees its own value, so calls from several
 *    threads only share the cache (under a mutex).
 *  - JSON ('{'): one object with the Avro record's field names; timestamps
 *    as epoch milliseconds, nullable fields as null.
 *  - Alertmanager v2 ('['): an array of one alert -- labels (alertname,
 *    severity, metric, fingerprint, the dimension values, the rule's
 *    labels), annotations (summary, description, contributors, alert_id and
 *    the numbers that let a decoder rebuild the record), startsAt, endsAt
 *    (sp_alert_ends_at: FIRING ahead of the wall clock by four repeat
 *    intervals, so that Alertmanager keeps it between repeats and expires
 *    it when they stop; RESOLVED the resolution), generatorURL.
 * Decoding validates at the edge: Avro bytes are walked against the schema
 * before avro-c reads them (no allocation sized by input, no trailing
 * bytes), JSON through jansson with every field type-checked.
 *
 * `storepulse alerts` tails the alert topic with a plain consumer assigned
 * to every partition (no group, nothing committed) and prints one line per
 * alert; an undecodable message is reported on stderr and skipped.
 *
 * Deliberately not here: rule evaluation (aggregators/rules.c), the outbox
 * and producing (the evaluator's side), schema registry look-ups (the one
 * writer schema is a file; the schema id in the frame is not checked). */
#define _GNU_SOURCE /* strptime, timegm */
#include "producers/alert.h"

#include <avro.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/broker.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "core/file.h"
#include "core/kafka.h"
#include "core/log.h"

#define ALERT_MSG_MAX (1 << 20) /* a bigger payload is not an alert */

static const char *const state_names[] = {"FIRING", "RESOLVED"};

static void errf(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errstr, size_t size, const char *fmt, ...) {
    va_list ap;
    if (!errstr || !size) return;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* Copy s (n bytes, not necessarily NUL-terminated) into dst, truncated. */
static void copy_n(char *dst, size_t size, const char *s, size_t n) {
    if (n >= size) n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}
#define COPY(dst, s) copy_n((dst), sizeof(dst), (s), strlen(s))

int sp_alert_format_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "avro")) return SP_ALERT_FMT_AVRO;
    if (!strcmp(s, "json")) return SP_ALERT_FMT_JSON;
    if (!strcmp(s, "alertmanager")) return SP_ALERT_FMT_ALERTMANAGER;
    return -1;
}

/* ---- times --------------------------------------------------------------- */

/* RFC 3339 UTC: "2026-11-23T10:05:00Z", with ".mmm" when ms are not 0. */
static void rfc3339(int64_t ms, char *buf, size_t size) {
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int frac = (int)(ms - secs * 1000);
    time_t t = (time_t)secs;
    struct tm tm;
    char base[32];
    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(buf, size, "%s.%03dZ", base, frac);
    else
        snprintf(buf, size, "%sZ", base);
}

/* Parse RFC 3339 ("...Z" or "+hh:mm"/"-hh:mm", optional fraction). */
static int rfc3339_parse(const char *s, int64_t *out) {
    struct tm tm;
    int64_t ms = 0;
    const char *p;
    memset(&tm, 0, sizeof(tm));
    p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p) return -1;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3) ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (!digits) return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2) return -1;
        off = (hh * 60 + mm) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p) return -1;
    *out = ((int64_t)timegm(&tm) - off) * 1000 + ms;
    return 0;
}

/* ---- Avro ---------------------------------------------------------------- */

typedef struct alert_schema {
    char path[512];
    avro_schema_t schema;      /* owned */
    avro_value_iface_t *iface; /* owned */
} alert_schema_t;

static pthread_mutex_t schema_lock = PTHREAD_MUTEX_INITIALIZER;
static alert_schema_t schema_cache; /* one path; another path replaces it */

static int read_whole(const char *path, char **out, size_t *len) {
    char why[8];
    return sp_file_read(path, 1 << 20, out, len, why, sizeof(why)) == SP_OK ? 0 : -1;
}

/* The cached schema of path (loaded on first use); the caller holds
 * schema_lock. */
static alert_schema_t *schema_get(const char *path, char *errstr, size_t errstr_size) {
    alert_schema_t *c = &schema_cache;
    char *json = NULL;
    size_t len = 0;
    avro_schema_t schema = NULL;
    avro_value_iface_t *iface = NULL;

    if (!path || !*path) path = "schemas/alert.avsc";
    if (c->schema && strcmp(c->path, path) == 0) return c;
    if (read_whole(path, &json, &len) != 0) {
        errf(errstr, errstr_size, "%s: %s", path, strerror(errno ? errno : EIO));
        return NULL;
    }
    if (avro_schema_from_json_length(json, len, &schema) != 0) {
        errf(errstr, errstr_size, "%s: %s", path, avro_strerror());
        free(json);
        return NULL;
    }
    free(json);
    if (avro_typeof(schema) != AVRO_RECORD || !(iface = avro_generic_class_from_schema(schema))) {
        errf(errstr, errstr_size, "%s: not an Avro record schema", path);
        avro_schema_decref(schema);
        return NULL;
    }
    if (c->iface) avro_value_iface_decref(c->iface);
    if (c->schema) avro_schema_decref(c->schema);
    c->schema = schema;
    c->iface = iface;
    COPY(c->path, path);
    return c;
}

/* Set a field by name; a union field with a null branch gets null when
 * is_null, else its non-null branch. *branch is the value to fill. */
static int field(avro_value_t *rec, const char *name, int is_null, avro_value_t *branch) {
    avro_value_t fv;
    if (avro_value_get_by_name(rec, name, &fv, NULL) != 0) return -1;
    if (avro_value_get_type(&fv) != AVRO_UNION) {
        *branch = fv;
        return 0;
    }
    avro_schema_t us = avro_value_get_schema(&fv);
    for (size_t b = 0; b < avro_schema_union_size(us); b++) {
        int bnull = avro_typeof(avro_schema_union_branch(us, (int)b)) == AVRO_NULL;
        if (bnull != !!is_null) continue;
        if (avro_value_set_branch(&fv, (int)b, branch) != 0) return -1;
        return is_null ? avro_value_set_null(branch) : 0;
    }
    return -1;
}

static int set_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t v;
    return field(rec, name, 0, &v) || avro_value_set_string(&v, s);
}
static int set_long(avro_value_t *rec, const char *name, int64_t x) {
    avro_value_t v;
    return field(rec, name, 0, &v) || avro_value_set_long(&v, x);
}
static int set_opt_double(avro_value_t *rec, const char *name, int has, double x) {
    avro_value_t v;
    if (field(rec, name, !has, &v)) return -1;
    return has ? avro_value_set_double(&v, x) : 0;
}

static int avro_fill(avro_value_t *rec, const sp_alert_t *a) {
    avro_value_t v, arr, item, map, entry;
    if (set_str(rec, "fingerprint", a->fingerprint) || set_str(rec, "alert_id", a->alert_id) ||
        set_str(rec, "rule", a->rule) || set_str(rec, "severity", a->severity) ||
        set_str(rec, "metric", a->metric))
        return -1;
    if (field(rec, "state", 0, &v) || avro_value_set_enum(&v, a->state == SP_ALERT_RESOLVED))
        return -1;
    if (field(rec, "dimension", a->dimension[0] == '\0', &v) ||
        (a->dimension[0] && avro_value_set_string(&v, a->dimension)))
        return -1;
    if (set_opt_double(rec, "value", a->has_value, a->value) ||
        set_opt_double(rec, "threshold", a->has_threshold, a->threshold) ||
        set_long(rec, "sample_size", a->sample_size) ||
        set_str(rec, "window_size", a->window_size) ||
        set_long(rec, "window_start", a->window_start_ms) ||
        set_long(rec, "window_end", a->window_end_ms) ||
        set_long(rec, "started_at", a->started_at_ms) ||
        set_long(rec, "emitted_at", a->emitted_at_ms) || set_str(rec, "summary", a->summary))
        return -1;
    if (field(rec, "contributors", 0, &arr)) return -1;
    for (int i = 0; i < a->ncontrib && i < SP_ALERT_CONTRIB_MAX; i++) {
        const sp_alert_contrib_t *c = &a->contrib[i];
        if (avro_value_append(&arr, &item, NULL) != 0 ||
            set_str(&item, "dimension", c->dimension) ||
            set_opt_double(&item, "value", c->has_value, c->value) ||
            set_opt_double(&item, "baseline", c->has_baseline, c->baseline) ||
            field(&item, "share", 0, &v) || avro_value_set_double(&v, c->share))
            return -1;
    }
    if (field(rec, "labels", 0, &map)) return -1;
    for (int i = 0; i < a->nlabels && i < SP_ALERT_LABEL_MAX; i++)
        if (avro_value_add(&map, a->labels[i].key, &entry, NULL, NULL) != 0 ||
            avro_value_set_string(&entry, a->labels[i].value) != 0)
            return -1;
    return 0;
}

static int encode_avro(const sp_alert_t *a, int32_t schema_id, const char *schema_path, char **out,
                       size_t *len, char *errstr, size_t errstr_size) {
    avro_value_t rec;
    avro_writer_t w = NULL;
    alert_schema_t *sc;
    size_t size = 0;
    char *buf = NULL;
    int ret = -1, have_rec = 0;

    pthread_mutex_lock(&schema_lock);
    if (!(sc = schema_get(schema_path, errstr, errstr_size))) goto out;
    if (avro_generic_value_new(sc->iface, &rec) != 0) {
        errf(errstr, errstr_size, "avro: %s", avro_strerror());
        goto out;
    }
    have_rec = 1;
    if (avro_fill(&rec, a) != 0 || avro_value_sizeof(&rec, &size) != 0) {
        errf(errstr, errstr_size, "avro encode: %s", avro_strerror());
        goto out;
    }
    if (!(buf = malloc(size + 5))) {
        errf(errstr, errstr_size, "out of memory");
        goto out;
    }
    buf[0] = 0;
    buf[1] = (char)((uint32_t)schema_id >> 24);
    buf[2] = (char)((uint32_t)schema_id >> 16);
    buf[3] = (char)((uint32_t)schema_id >> 8);
    buf[4] = (char)(uint32_t)schema_id;
    w = avro_writer_memory(buf + 5, (int64_t)size);
    if (!w || avro_value_write(w, &rec) != 0 || (size_t)avro_writer_tell(w) != size) {
        errf(errstr, errstr_size, "avro encode: %s", avro_strerror());
        goto out;
    }
    *out = buf;
    *len = size + 5;
    buf = NULL;
    ret = 0;
out:
    if (w) avro_writer_free(w);
    if (have_rec) avro_value_decref(&rec);
    pthread_mutex_unlock(&schema_lock);
    free(buf);
    return ret;
}

/* Walk Avro binary of schema s over [*p, end) without allocating: lengths
 * and counts must fit what is left. 0 ok, -1 malformed. */
typedef struct walk {
    const uint8_t *p, *end;
} walk_t;

static int walk_long(walk_t *w, int64_t *out) {
    uint64_t u = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end) return -1;
        uint8_t b = *w->p++;
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
            return 0;
        }
    }
    return -1;
}

static int walk_skip(walk_t *w, int64_t n) {
    if (n < 0 || n > w->end - w->p) return -1;
    w->p += n;
    return 0;
}

static int walk_value(walk_t *w, avro_schema_t s, int depth) {
    int64_t n;
    if (depth > 16) return -1;
    switch (avro_typeof(s)) {
    case AVRO_NULL: return 0;
    case AVRO_BOOLEAN: return walk_skip(w, 1);
    case AVRO_INT32:
    case AVRO_INT64: return walk_long(w, &n);
    case AVRO_FLOAT: return walk_skip(w, 4);
    case AVRO_DOUBLE: return walk_skip(w, 8);
    case AVRO_STRING:
    case AVRO_BYTES: return walk_long(w, &n) || walk_skip(w, n);
    case AVRO_ENUM:
        if (walk_long(w, &n) || n < 0 || n >= (int64_t)avro_schema_enum_number_of_symbols(s))
            return -1;
        return 0;
    case AVRO_UNION:
        if (walk_long(w, &n) || n < 0 || n >= (int64_t)avro_schema_union_size(s)) return -1;
        return walk_value(w, avro_schema_union_branch(s, (int)n), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            if (walk_value(w, avro_schema_record_field_get_by_index(s, (int)i), depth + 1))
                return -1;
        return 0;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        int is_map = avro_typeof(s) == AVRO_MAP;
        avro_schema_t items = is_map ? avro_schema_map_values(s) : avro_schema_array_items(s);
        int64_t total = 0;
        for (;;) {
            if (walk_long(w, &n)) return -1;
            if (n == 0) return 0;
            if (n < 0) { /* block with its byte size */
                int64_t bytes;
                if (n == INT64_MIN || walk_long(w, &bytes)) return -1;
                n = -n;
            }
            /* every item takes at least one byte, unless it is null */
            if (n > w->end - w->p + 1) return -1;
            total += n;
            if (total > 4096) return -1;
            for (int64_t i = 0; i < n; i++) {
                if (is_map) {
                    int64_t kl;
                    if (walk_long(w, &kl) || walk_skip(w, kl)) return -1;
                }
                if (walk_value(w, items, depth + 1)) return -1;
            }
        }
    }
    default: return -1;
    }
}

static int get_field(avro_value_t *rec, const char *name, avro_value_t *out, int *is_null) {
    avro_value_t fv;
    *is_null = 0;
    if (avro_value_get_by_name(rec, name, &fv, NULL) != 0) return -1;
    if (avro_value_get_type(&fv) == AVRO_UNION) {
        if (avro_value_get_current_branch(&fv, out) != 0) return -1;
        *is_null = avro_value_get_type(out) == AVRO_NULL;
        return 0;
    }
    *out = fv;
    return 0;
}

static int get_str(avro_value_t *rec, const char *name, char *dst, size_t size, int optional) {
    avro_value_t v;
    const char *s;
    size_t n;
    int is_null;
    dst[0] = '\0';
    if (get_field(rec, name, &v, &is_null) != 0) return optional ? 0 : -1;
    if (is_null) return 0;
    if (avro_value_get_string(&v, &s, &n) != 0) return -1;
    copy_n(dst, size, s, n ? n - 1 : 0);
    return 0;
}

static int get_long(avro_value_t *rec, const char *name, int64_t *out) {
    avro_value_t v;
    int is_null;
    if (get_field(rec, name, &v, &is_null) != 0 || is_null) return -1;
    return avro_value_get_long(&v, out);
}

static int get_opt_double(avro_value_t *rec, const char *name, int *has, double *out) {
    avro_value_t v;
    int is_null;
    *has = 0;
    *out = 0;
    if (get_field(rec, name, &v, &is_null) != 0) return 0; /* an older writer: absent */
    if (is_null) return 0;
    if (avro_value_get_double(&v, out) != 0) return -1;
    *has = 1;
    return 0;
}

static int avro_extract(avro_value_t *rec, sp_alert_t *a) {
    avro_value_t v, arr, map;
    int is_null, sym;
    size_t n;
    if (get_str(rec, "fingerprint", a->fingerprint, sizeof(a->fingerprint), 0) ||
        get_str(rec, "alert_id", a->alert_id, sizeof(a->alert_id), 0) ||
        get_str(rec, "rule", a->rule, sizeof(a->rule), 0) ||
        get_str(rec, "severity", a->severity, sizeof(a->severity), 0) ||
        get_str(rec, "metric", a->metric, sizeof(a->metric), 0) ||
        get_str(rec, "dimension", a->dimension, sizeof(a->dimension), 1) ||
        get_str(rec, "window_size", a->window_size, sizeof(a->window_size), 0) ||
        get_str(rec, "summary", a->summary, sizeof(a->summary), 0))
        return -1;
    if (get_field(rec, "state", &v, &is_null) || avro_value_get_enum(&v, &sym) || sym < 0 ||
        sym > 1)
        return -1;
    a->state = (sp_alert_state_t)sym;
    if (get_opt_double(rec, "value", &a->has_value, &a->value) ||
        get_opt_double(rec, "threshold", &a->has_threshold, &a->threshold) ||
        get_long(rec, "sample_size", &a->sample_size) ||
        get_long(rec, "window_start", &a->window_start_ms) ||
        get_long(rec, "window_end", &a->window_end_ms) ||
        get_long(rec, "started_at", &a->started_at_ms) ||
        get_long(rec, "emitted_at", &a->emitted_at_ms))
        return -1;
    if (get_field(rec, "contributors", &arr, &is_null) == 0 && !is_null) {
        if (avro_value_get_size(&arr, &n) != 0) return -1;
        for (size_t i = 0; i < n && a->ncontrib < SP_ALERT_CONTRIB_MAX; i++) {
            avro_value_t item;
            sp_alert_contrib_t *c = &a->contrib[a->ncontrib];
            if (avro_value_get_by_index(&arr, i, &item, NULL) != 0 ||
                get_str(&item, "dimension", c->dimension, sizeof(c->dimension), 0) ||
                get_opt_double(&item, "value", &c->has_value, &c->value) ||
                get_opt_double(&item, "baseline", &c->has_baseline, &c->baseline) ||
                get_field(&item, "share", &v, &is_null) || is_null ||
                avro_value_get_double(&v, &c->share))
                return -1;
            a->ncontrib++;
        }
    }
    if (get_field(rec, "labels", &map, &is_null) == 0 && !is_null) {
        if (avro_value_get_size(&map, &n) != 0) return -1;
        for (size_t i = 0; i < n && a->nlabels < SP_ALERT_LABEL_MAX; i++) {
            avro_value_t e;
            const char *key, *s;
            size_t sl;
            if (avro_value_get_by_index(&map, i, &e, &key) != 0 ||
                avro_value_get_string(&e, &s, &sl) != 0)
                return -1;
            COPY(a->labels[a->nlabels].key, key);
            copy_n(a->labels[a->nlabels].value, sizeof(a->labels[0].value), s, sl ? sl - 1 : 0);
            a->nlabels++;
        }
    }
    return 0;
}

static int decode_avro(const uint8_t *buf, size_t len, const char *schema_path, sp_alert_t *a,
                       char *errstr, size_t errstr_size) {
    alert_schema_t *sc;
    avro_reader_t r = NULL;
    avro_value_t rec;
    int ret = -1, have_rec = 0;
    walk_t w;

    if (len < 5) {
        errf(errstr, errstr_size, "truncated Confluent header (%zu bytes)", len);
        return -1;
    }
    pthread_mutex_lock(&schema_lock);
    if (!(sc = schema_get(schema_path, errstr, errstr_size))) goto out;
    w.p = buf + 5;
    w.end = buf + len;
    if (walk_value(&w, sc->schema, 0) != 0) {
        errf(errstr, errstr_size, "not an Avro alert record (schema id %" PRIu32 ")",
             (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4]);
        goto out;
    }
    if (w.p != w.end) {
        errf(errstr, errstr_size, "%zu trailing bytes after the Avro record",
             (size_t)(w.end - w.p));
        goto out;
    }
    if (avro_generic_value_new(sc->iface, &rec) != 0) {
        errf(errstr, errstr_size, "avro: %s", avro_strerror());
        goto out;
    }
    have_rec = 1;
    r = avro_reader_memory((const char *)buf + 5, (int64_t)(len - 5));
    if (!r || avro_value_read(r, &rec) != 0) {
        errf(errstr, errstr_size, "avro decode: %s", avro_strerror());
        goto out;
    }
    if (avro_extract(&rec, a) != 0) {
        errf(errstr, errstr_size, "avro alert: a field has the wrong type");
        goto out;
    }
    ret = 0;
out:
    if (r) avro_reader_free(r);
    if (have_rec) avro_value_decref(&rec);
    pthread_mutex_unlock(&schema_lock);
    return ret;
}

/* ---- JSON ---------------------------------------------------------------- */

/* A JSON string of s; bytes that are not UTF-8 become '?' (a dimension
 * value is whatever the store sent). Never NULL unless out of memory. */
static json_t *jstring(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i <= n; i++)
        t[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    j = json_string(t);
    free(t);
    return j;
}

static json_t *opt_real(int has, double x) {
    return has && isfinite(x) ? json_real(x) : json_null();
}

static json_t *json_of(const sp_alert_t *a) {
    json_t *o = json_object(), *contrib = json_array(), *labels = json_object();
    json_object_set_new(o, "fingerprint", jstring(a->fingerprint));
    json_object_set_new(o, "alert_id", jstring(a->alert_id));
    json_object_set_new(o, "rule", jstring(a->rule));
    json_object_set_new(o, "state", jstring(state_names[a->state == SP_ALERT_RESOLVED]));
    json_object_set_new(o, "severity", jstring(a->severity));
    json_object_set_new(o, "metric", jstring(a->metric));
    json_object_set_new(o, "dimension", a->dimension[0] ? jstring(a->dimension) : json_null());
    json_object_set_new(o, "value", opt_real(a->has_value, a->value));
    json_object_set_new(o, "threshold", opt_real(a->has_threshold, a->threshold));
    json_object_set_new(o, "sample_size", json_integer(a->sample_size));
    json_object_set_new(o, "window_size", jstring(a->window_size));
    json_object_set_new(o, "window_start", json_integer(a->window_start_ms));
    json_object_set_new(o, "window_end", json_integer(a->window_end_ms));
    json_object_set_new(o, "started_at", json_integer(a->started_at_ms));
    json_object_set_new(o, "emitted_at", json_integer(a->emitted_at_ms));
    for (int i = 0; i < a->ncontrib && i < SP_ALERT_CONTRIB_MAX; i++) {
        const sp_alert_contrib_t *c = &a->contrib[i];
        json_array_append_new(contrib,
                              json_pack("{s:o, s:o, s:o, s:f}", "dimension", jstring(c->dimension),
                                        "value", opt_real(c->has_value, c->value), "baseline",
                                        opt_real(c->has_baseline, c->baseline), "share", c->share));
    }
    json_object_set_new(o, "contributors", contrib);
    json_object_set_new(o, "summary", jstring(a->summary));
    for (int i = 0; i < a->nlabels && i < SP_ALERT_LABEL_MAX; i++)
        json_object_set_new(labels, a->labels[i].key, jstring(a->labels[i].value));
    json_object_set_new(o, "labels", labels);
    return o;
}

/* json_t number (integer or real) as double. */
static int num_of(const json_t *v, double *out) {
    if (json_is_integer(v))
        *out = (double)json_integer_value(v);
    else if (json_is_real(v))
        *out = json_real_value(v);
    else
        return -1;
    return 0;
}

static int jstr(const json_t *o, const char *name, char *dst, size_t size, int optional) {
    const json_t *v = json_object_get(o, name);
    dst[0] = '\0';
    if (!v || json_is_null(v)) return optional ? 0 : -1;
    if (!json_is_string(v)) return -1;
    copy_n(dst, size, json_string_value(v), json_string_length(v));
    return 0;
}

static int jlong(const json_t *o, const char *name, int64_t *out) {
    const json_t *v = json_object_get(o, name);
    if (!json_is_integer(v)) return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int jdouble(const json_t *o, const char *name, int *has, double *out) {
    const json_t *v = json_object_get(o, name);
    *has = 0;
    *out = 0;
    if (!v || json_is_null(v)) return 0;
    if (num_of(v, out) != 0) return -1;
    *has = 1;
    return 0;
}

static int json_extract(const json_t *o, sp_alert_t *a, const char **bad) {
    char state[16];
    const json_t *arr, *labels, *item, *v;
    const char *key;
    size_t i;
#define NEED(expr, name)                                                                           \
    do {                                                                                           \
        if (expr) {                                                                                \
            *bad = (name);                                                                         \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)
    NEED(!json_is_object(o), "(not an object)");
    NEED(jstr(o, "fingerprint", a->fingerprint, sizeof(a->fingerprint), 0), "fingerprint");
    NEED(jstr(o, "alert_id", a->alert_id, sizeof(a->alert_id), 0), "alert_id");
    NEED(jstr(o, "rule", a->rule, sizeof(a->rule), 0), "rule");
    NEED(jstr(o, "state", state, sizeof(state), 0), "state");
    if (!strcmp(state, "FIRING"))
        a->state = SP_ALERT_FIRING;
    else if (!strcmp(state, "RESOLVED"))
        a->state = SP_ALERT_RESOLVED;
    else
        NEED(1, "state");
    NEED(jstr(o, "severity", a->severity, sizeof(a->severity), 0), "severity");
    NEED(jstr(o, "metric", a->metric, sizeof(a->metric), 0), "metric");
    NEED(jstr(o, "dimension", a->dimension, sizeof(a->dimension), 1), "dimension");
    NEED(jdouble(o, "value", &a->has_value, &a->value), "value");
    NEED(jdouble(o, "threshold", &a->has_threshold, &a->threshold), "threshold");
    NEED(jlong(o, "sample_size", &a->sample_size), "sample_size");
    NEED(jstr(o, "window_size", a->window_size, sizeof(a->window_size), 0), "window_size");
    NEED(jlong(o, "window_start", &a->window_start_ms), "window_start");
    NEED(jlong(o, "window_end", &a->window_end_ms), "window_end");
    NEED(jlong(o, "started_at", &a->started_at_ms), "started_at");
    NEED(jlong(o, "emitted_at", &a->emitted_at_ms), "emitted_at");
    NEED(jstr(o, "summary", a->summary, sizeof(a->summary), 1), "summary");
    arr = json_object_get(o, "contributors");
    NEED(arr && !json_is_array(arr) && !json_is_null(arr), "contributors");
    json_array_foreach(arr, i, item) {
        sp_alert_contrib_t *c = &a->contrib[a->ncontrib];
        int has;
        if (a->ncontrib >= SP_ALERT_CONTRIB_MAX) break;
        NEED(!json_is_object(item) ||
                 jstr(item, "dimension", c->dimension, sizeof(c->dimension), 0),
             "contributors[].dimension");
        NEED(jdouble(item, "value", &c->has_value, &c->value), "contributors[].value");
        NEED(jdouble(item, "baseline", &c->has_baseline, &c->baseline), "contributors[].baseline");
        NEED(jdouble(item, "share", &has, &c->share) || !has, "contributors[].share");
        a->ncontrib++;
    }
    labels = json_object_get(o, "labels");
    NEED(labels && !json_is_object(labels) && !json_is_null(labels), "labels");
    json_object_foreach((json_t *)labels, key, v) {
        if (a->nlabels >= SP_ALERT_LABEL_MAX) break;
        NEED(!json_is_string(v), "labels");
        COPY(a->labels[a->nlabels].key, key);
        COPY(a->labels[a->nlabels].value, json_string_value(v));
        a->nlabels++;
    }
    return 0;
#undef NEED
}

/* ---- Alertmanager -------------------------------------------------------- */

/* "%.15g" of x: short for the usual numbers, exact enough to read back. */
static void num(double x, char *buf, size_t size) {
    snprintf(buf, size, "%.15g", x);
}

static int fixed_label(const char *k) {
    return !strcmp(k, "alertname") || !strcmp(k, "severity") || !strcmp(k, "metric") ||
           !strcmp(k, "fingerprint");
}

/* The dimension "channel=web,device=mobile" as labels channel: web, device:
 * mobile (a part without '=' becomes dimension: part). */
static void dimension_labels(json_t *labels, const char *dim) {
    const char *p = dim;
    while (*p) {
        size_t n = strcspn(p, ","), eq = strcspn(p, "=");
        char key[128], val[256];
        if (eq < n) {
            copy_n(key, sizeof(key), p, eq);
            copy_n(val, sizeof(val), p + eq + 1, n - eq - 1);
        } else {
            COPY(key, "dimension");
            copy_n(val, sizeof(val), p, n);
        }
        if (key[0] && !fixed_label(key)) json_object_set_new(labels, key, jstring(val));
        p += n + (p[n] == ',');
    }
}

int64_t sp_alert_ends_at(const sp_alert_t *a) {
    int64_t win = a->window_end_ms - a->window_start_ms, every = a->repeat_every_ms;
    if (a->state == SP_ALERT_RESOLVED)
        return a->window_end_ms < a->emitted_at_ms ? a->window_end_ms : a->emitted_at_ms;
    if (every < win) every = win;
    if (every < 0) every = 0;
    int64_t base = a->emitted_at_ms > a->window_end_ms ? a->emitted_at_ms : a->window_end_ms;
    return base + SP_ALERT_AM_KEEP * every;
}

static json_t *alertmanager_of(const sp_alert_t *a, const char *generator_url) {
    json_t *o = json_object(), *labels = json_object(), *ann = json_object();
    char t[40], v[40], th[40], desc[1024], contrib[1024];
    size_t off;

    json_object_set_new(labels, "alertname", jstring(a->rule));
    json_object_set_new(labels, "severity", jstring(a->severity));
    json_object_set_new(labels, "metric", jstring(a->metric));
    json_object_set_new(labels, "fingerprint", jstring(a->fingerprint));
    dimension_labels(labels, a->dimension);
    for (int i = 0; i < a->nlabels && i < SP_ALERT_LABEL_MAX; i++)
        if (!json_object_get(labels, a->labels[i].key))
            json_object_set_new(labels, a->labels[i].key, jstring(a->labels[i].value));

    if (a->has_value)
        num(a->value, v, sizeof(v));
    else
        COPY(v, "none");
    if (a->has_threshold)
        num(a->threshold, th, sizeof(th));
    else
        COPY(th, "none");
    {
        char ws[40], we[40];
        rfc3339(a->window_start_ms, ws, sizeof(ws));
        rfc3339(a->window_end_ms, we, sizeof(we));
        snprintf(desc, sizeof(desc),
                 "%s%s%s = %s (threshold %s), %" PRId64 " samples, %s window %s/%s", a->metric,
                 a->dimension[0] ? " " : "", a->dimension, v, th, a->sample_size, a->window_size,
                 ws, we);
    }

    contrib[0] = '\0';
    off = 0;
    for (int i = 0; i < a->ncontrib && i < SP_ALERT_CONTRIB_MAX && off < sizeof(contrib); i++) {
        const sp_alert_contrib_t *c = &a->contrib[i];
        char cv[40] = "none", cb[40] = "none", cs[40];
        if (c->has_value) num(c->value, cv, sizeof(cv));
        if (c->has_baseline) num(c->baseline, cb, sizeof(cb));
        num(c->share, cs, sizeof(cs));
        int n =
            snprintf(contrib + off, sizeof(contrib) - off, "%s%s (value %s, baseline %s, share %s)",
                     i ? "; " : "", c->dimension, cv, cb, cs);
        if (n < 0) break;
        off += (size_t)n;
    }

    json_object_set_new(ann, "summary", jstring(a->summary));
    json_object_set_new(ann, "description", jstring(desc));
    json_object_set_new(ann, "contributors", jstring(contrib));
    json_object_set_new(ann, "alert_id", jstring(a->alert_id));
    json_object_set_new(ann, "state", jstring(a->state == SP_ALERT_FIRING ? "FIRING" : "RESOLVED"));
    json_object_set_new(ann, "dimension", jstring(a->dimension));
    json_object_set_new(ann, "value", jstring(a->has_value ? v : ""));
    json_object_set_new(ann, "threshold", jstring(a->has_threshold ? th : ""));
    snprintf(t, sizeof(t), "%" PRId64, a->sample_size);
    json_object_set_new(ann, "sample_size", jstring(t));
    json_object_set_new(ann, "window_size", jstring(a->window_size));
    rfc3339(a->window_start_ms, t, sizeof(t));
    json_object_set_new(ann, "window_start", jstring(t));
    rfc3339(a->window_end_ms, t, sizeof(t));
    json_object_set_new(ann, "window_end", jstring(t));
    rfc3339(a->emitted_at_ms, t, sizeof(t));
    json_object_set_new(ann, "emitted_at", jstring(t));

    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "annotations", ann);
    rfc3339(a->started_at_ms, t, sizeof(t));
    json_object_set_new(o, "startsAt", jstring(t));
    rfc3339(sp_alert_ends_at(a), t, sizeof(t));
    json_object_set_new(o, "endsAt", jstring(t));
    json_object_set_new(o, "generatorURL", jstring(generator_url ? generator_url : ""));
    json_t *arr = json_array();
    json_array_append_new(arr, o);
    return arr;
}

static const char *ann_str(const json_t *ann, const char *k) {
    const json_t *v = json_object_get(ann, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_num(const char *s, double *out) {
    char *end;
    if (!s || !*s || !strcmp(s, "none")) return -1;
    errno = 0;
    *out = strtod(s, &end);
    return errno || *end ? -1 : 0;
}

/* "d (value v, baseline b, share s); ..." back into contributors. */
static void contributors_parse(const char *s, sp_alert_t *a) {
    while (s && *s && a->ncontrib < SP_ALERT_CONTRIB_MAX) {
        const char *end = strstr(s, "; "), *open;
        size_t n = end ? (size_t)(end - s) : strlen(s);
        char part[512], cv[64], cb[64], cs[64];
        sp_alert_contrib_t *c = &a->contrib[a->ncontrib];
        copy_n(part, sizeof(part), s, n);
        open = strstr(part, " (value ");
        memset(c, 0, sizeof(*c));
        if (open &&
            sscanf(open, " (value %63[^,], baseline %63[^,], share %63[^)])", cv, cb, cs) == 3) {
            copy_n(c->dimension, sizeof(c->dimension), part, (size_t)(open - part));
            c->has_value = parse_num(cv, &c->value) == 0;
            c->has_baseline = parse_num(cb, &c->baseline) == 0;
            if (parse_num(cs, &c->share) != 0) c->share = 0;
            a->ncontrib++;
        }
        s = end ? end + 2 : NULL;
    }
}

static int alertmanager_extract(const json_t *root, sp_alert_t *a, const char **bad) {
    const json_t *o, *labels, *ann, *v;
    const char *s, *key;
    char dimkeys[SP_ALERT_LABEL_MAX + 8][128];
    int ndim = 0;

    if (!json_is_array(root) || json_array_size(root) < 1)
        return *bad = "(not an array of alerts)", -1;
    o = json_array_get(root, 0);
    labels = json_object_get(o, "labels");
    ann = json_object_get(o, "annotations");
    if (!json_is_object(labels)) return *bad = "labels", -1;
    if (!json_is_object(ann)) ann = NULL;
    if (jstr(labels, "alertname", a->rule, sizeof(a->rule), 0))
        return *bad = "labels.alertname", -1;
    jstr(labels, "severity", a->severity, sizeof(a->severity), 1);
    jstr(labels, "metric", a->metric, sizeof(a->metric), 1);
    jstr(labels, "fingerprint", a->fingerprint, sizeof(a->fingerprint), 1);
    if (!(s = json_string_value(json_object_get(o, "startsAt"))) ||
        rfc3339_parse(s, &a->started_at_ms))
        return *bad = "startsAt", -1;
    v = json_object_get(o, "endsAt");
    a->state = SP_ALERT_FIRING;
    if (v && !json_is_null(v)) {
        int64_t ends;
        if (!json_is_string(v) || rfc3339_parse(json_string_value(v), &ends))
            return *bad = "endsAt", -1;
        /* another sender's alert: resolved once its endsAt has passed, as
         * Alertmanager reads it (ours: annotations.state, below) */
        if (ends <= sp_clock_now_ms()) a->state = SP_ALERT_RESOLVED;
        a->window_end_ms = ends;
    }
    if (ann) {
        const char *st = ann_str(ann, "state"), *id = ann_str(ann, "alert_id");
        if (st && !strcmp(st, "FIRING"))
            a->state = SP_ALERT_FIRING;
        else if (st && !strcmp(st, "RESOLVED"))
            a->state = SP_ALERT_RESOLVED;
        else if (id && strstr(id, ":FIRING:")) /* written before annotations.state */
            a->state = SP_ALERT_FIRING;
        else if (id && strstr(id, ":RESOLVED:"))
            a->state = SP_ALERT_RESOLVED;
        double x;
        jstr(ann, "summary", a->summary, sizeof(a->summary), 1);
        jstr(ann, "alert_id", a->alert_id, sizeof(a->alert_id), 1);
        jstr(ann, "dimension", a->dimension, sizeof(a->dimension), 1);
        jstr(ann, "window_size", a->window_size, sizeof(a->window_size), 1);
        a->has_value = parse_num(ann_str(ann, "value"), &a->value) == 0;
        a->has_threshold = parse_num(ann_str(ann, "threshold"), &a->threshold) == 0;
        if (parse_num(ann_str(ann, "sample_size"), &x) == 0) a->sample_size = (int64_t)x;
        if ((s = ann_str(ann, "window_start"))) rfc3339_parse(s, &a->window_start_ms);
        if ((s = ann_str(ann, "window_end"))) rfc3339_parse(s, &a->window_end_ms);
        if ((s = ann_str(ann, "emitted_at"))) rfc3339_parse(s, &a->emitted_at_ms);
        contributors_parse(ann_str(ann, "contributors"), a);
    }
    /* the dimension's own labels are not rule labels */
    for (const char *p = a->dimension; *p && ndim < (int)(sizeof(dimkeys) / sizeof(dimkeys[0]));) {
        size_t n = strcspn(p, ","), eq = strcspn(p, "=");
        if (eq < n)
            copy_n(dimkeys[ndim++], sizeof(dimkeys[0]), p, eq);
        else
            COPY(dimkeys[ndim++], "dimension");
        p += n + (p[n] == ',');
    }
    json_object_foreach((json_t *)labels, key, v) {
        int skip = fixed_label(key) || !json_is_string(v);
        for (int i = 0; i < ndim && !skip; i++)
            skip = !strcmp(dimkeys[i], key);
        if (skip || a->nlabels >= SP_ALERT_LABEL_MAX) continue;
        COPY(a->labels[a->nlabels].key, key);
        COPY(a->labels[a->nlabels].value, json_string_value(v));
        a->nlabels++;
    }
    return 0;
}

/* ---- the API ------------------------------------------------------------- */

static int dump(json_t *j, char **out, size_t *len, char *errstr, size_t errstr_size) {
    char *s =
        j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    if (!s) {
        errf(errstr, errstr_size, "json encode failed");
        return -1;
    }
    *out = s; /* jansson allocates with malloc by default: free() releases it */
    *len = strlen(s);
    return 0;
}

int sp_alert_encode(const sp_alert_t *a, sp_alert_format_t fmt, int32_t schema_id,
                    const char *schema_path, const char *generator_url, char **out, size_t *len,
                    char *errstr, size_t errstr_size) {
    if (!a || !out || !len) {
        errf(errstr, errstr_size, "invalid argument");
        return -1;
    }
    switch (fmt) {
    case SP_ALERT_FMT_AVRO:
        return encode_avro(a, schema_id, schema_path, out, len, errstr, errstr_size);
    case SP_ALERT_FMT_JSON: return dump(json_of(a), out, len, errstr, errstr_size);
    case SP_ALERT_FMT_ALERTMANAGER:
        return dump(alertmanager_of(a, generator_url), out, len, errstr, errstr_size);
    }
    errf(errstr, errstr_size, "unknown alert format %d", (int)fmt);
    return -1;
}

int sp_alert_decode(const void *buf, size_t len, const char *schema_path, sp_alert_t *a,
                    sp_alert_format_t *fmt, char *errstr, size_t errstr_size) {
    const uint8_t *p = buf;
    json_t *root;
    json_error_t jerr;
    const char *bad = NULL;
    int rc, am;

    if (!a || (!buf && len)) {
        errf(errstr, errstr_size, "invalid argument");
        return -1;
    }
    memset(a, 0, sizeof(*a));
    if (len == 0) {
        errf(errstr, errstr_size, "empty message");
        return -1;
    }
    if (len > ALERT_MSG_MAX) {
        errf(errstr, errstr_size, "message of %zu bytes is too big for an alert", len);
        return -1;
    }
    if (p[0] == 0) {
        if (fmt) *fmt = SP_ALERT_FMT_AVRO;
        return decode_avro(p, len, schema_path, a, errstr, errstr_size);
    }
    if (p[0] != '{' && p[0] != '[') {
        errf(errstr, errstr_size, "unknown format (first byte 0x%02x)", p[0]);
        return -1;
    }
    am = p[0] == '[';
    if (fmt) *fmt = am ? SP_ALERT_FMT_ALERTMANAGER : SP_ALERT_FMT_JSON;
    root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        errf(errstr, errstr_size, "invalid JSON at %d: %s", jerr.position, jerr.text);
        return -1;
    }
    rc = am ? alertmanager_extract(root, a, &bad) : json_extract(root, a, &bad);
    json_decref(root);
    if (rc != 0) {
        errf(errstr, errstr_size, "%s alert: missing or bad field %s", am ? "Alertmanager" : "JSON",
             bad ? bad : "?");
        memset(a, 0, sizeof(*a));
    }
    return rc;
}

void sp_alert_line(const sp_alert_t *a, char *buf, size_t size) {
    char t[40], v[40] = "none", th[64] = "";
    if (!buf || !size) return;
    rfc3339(a->window_end_ms, t, sizeof(t));
    if (a->has_value) snprintf(v, sizeof(v), "%.6g", a->value);
    if (a->has_threshold) snprintf(th, sizeof(th), "threshold %.6g, ", a->threshold);
    snprintf(buf, size, "%s %s %s %s%s%s %s=%s (%sn=%" PRId64 ")%s%s", t,
             state_names[a->state == SP_ALERT_RESOLVED], a->severity[0] ? a->severity : "-",
             a->rule, a->dimension[0] ? " " : "", a->dimension, a->metric, v, th, a->sample_size,
             a->summary[0] ? " -- " : "", a->summary);
    for (char *p = buf; *p; p++) /* one line, whatever the summary holds */
        if (*p == '\n' || *p == '\r') *p = ' ';
}

/* ---- `storepulse alerts` -------------------------------------------------- */

static volatile sig_atomic_t alerts_stop_flag;

static void alerts_on_signal(int sig) {
    (void)sig;
    alerts_stop_flag = 1;
}

static void alerts_usage(FILE *out) {
    fputs("usage: storepulse alerts [options]\n"
          "\n"
          "Prints the alerts on the alert topic (topics.alerts), one line each:\n"
          "  <window end> <FIRING|RESOLVED> <severity> <rule> [<dimension>]\n"
          "  <metric>=<value> (threshold <t>, n=<sample size>) -- <summary>\n"
          "Any of the three formats (Avro, JSON, Alertmanager) is read. A message\n"
          "that is not an alert is reported on stderr and skipped.\n"
          "\n"
          "  -c, --config FILE        config file (topics.alerts, schemas.dir, kafka.*)\n"
          "  -b, --brokers ADDR       bootstrap servers (overrides kafka.bootstrap.servers)\n"
          "      --bootstrap-file F   read the bootstrap servers from F (waits up to 10 s\n"
          "                           for it to appear; see `storepulse broker`)\n"
          "      --from-beginning     every alert on the topic (default: new ones only)\n"
          "      --json               one JSON object per alert (the json format) per line\n"
          "      --count N            exit after N alerts\n"
          "      --timeout D          exit after D without a new message (10s, 1m)\n"
          "  -h, --help               this help\n"
          "\n"
          "Nothing is committed: no consumer group is joined. Without --count or\n"
          "--timeout it runs until SIGINT/SIGTERM. Exit status: 0, 1 on errors, 2 on\n"
          "bad usage.\n",
          out);
}

/* A consumer with cfg's kafka.* properties, without a group: partitions are
 * assigned, not subscribed, and nothing is committed. */
static rd_kafka_t *alerts_consumer_new(const sp_config_t *cfg, const char *brokers, char *errstr,
                                       size_t errstr_size) {
    /* a reader: no group membership or producer properties */
    rd_kafka_conf_t *conf = sp_kafka_conf_new(cfg, SP_KAFKA_READER, errstr, errstr_size);
    rd_kafka_t *rk = NULL;
    char rkerr[512];

    if (!conf) goto out;
    if (brokers && rd_kafka_conf_set(conf, "bootstrap.servers", brokers, rkerr, sizeof(rkerr)) !=
                       RD_KAFKA_CONF_OK) {
        errf(errstr, errstr_size, "--brokers: %s", rkerr);
        goto out;
    }
    /* librdkafka wants a group id even for assign(); this one is never
     * joined (no subscribe) and nothing is committed to it. */
    char group[64];
    snprintf(group, sizeof(group), "storepulse-alerts-%ld", (long)getpid());
    const char *const fixed[][2] = {{"group.id", group},
                                    {"enable.auto.commit", "false"},
                                    {"enable.auto.offset.store", "false"},
                                    {"enable.partition.eof", "false"},
                                    {"client.id", "storepulse-alerts"}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], rkerr, sizeof(rkerr)) !=
            RD_KAFKA_CONF_OK) {
            errf(errstr, errstr_size, "%s: %s", fixed[i][0], rkerr);
            goto out;
        }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr));
    if (!rk) {
        errf(errstr, errstr_size, "consumer: %s", rkerr);
        goto out;
    }
    conf = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(rk);
out:
    if (conf) rd_kafka_conf_destroy(conf);
    return rk;
}

/* Assign every partition of topic at offset; waits for the topic to exist
 * until deadline_ms (monotonic) or a signal. */
static int alerts_assign(rd_kafka_t *rk, const char *topic, int64_t offset, int64_t deadline_ms,
                         char *errstr, size_t errstr_size) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int ret = -1;
    if (!rkt) {
        errf(errstr, errstr_size, "%s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        if (!err && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0)
            break;
        if (!err)
            errf(errstr, errstr_size, "topic %s: %s", topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
        else
            errf(errstr, errstr_size, "metadata of %s: %s", topic, rd_kafka_err2str(err));
        if (md) rd_kafka_metadata_destroy(md);
        md = NULL;
        if (alerts_stop_flag || sp_clock_mono_ms() >= deadline_ms) goto out;
        usleep(250 * 1000);
    }
    {
        rd_kafka_topic_partition_list_t *parts =
            rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)
                ->offset = offset;
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (err) {
            errf(errstr, errstr_size, "assign %s: %s", topic, rd_kafka_err2str(err));
            goto out;
        }
    }
    ret = 0;
out:
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return ret;
}

int sp_alerts_main(int argc, char **argv) {
    enum { O_BOOTFILE = 256, O_BEGIN, O_JSON, O_COUNT, O_TIMEOUT };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"brokers", required_argument, NULL, 'b'},
        {"bootstrap-file", required_argument, NULL, O_BOOTFILE},
        {"from-beginning", no_argument, NULL, O_BEGIN},
        {"json", no_argument, NULL, O_JSON},
        {"count", required_argument, NULL, O_COUNT},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *brokers = NULL, *bootstrap_file = NULL;
    char brokers_buf[1024], schema_path[1100], errstr[1024], line[2048];
    int from_beginning = 0, as_json = 0, opt, ret = 1;
    long long count = 0, seen = 0;
    int64_t timeout_ms = 0, last_ms;
    static sp_config_t cfg; /* large */
    rd_kafka_t *rk = NULL;
    struct sigaction sa;

    optind = 0; /* glibc: full re-initialisation (argv[0] is the subcommand) */
    while ((opt = getopt_long(argc, argv, "c:b:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'b': brokers = optarg; break;
        case O_BOOTFILE: bootstrap_file = optarg; break;
        case O_BEGIN: from_beginning = 1; break;
        case O_JSON: as_json = 1; break;
        case O_COUNT: {
            char *end;
            errno = 0;
            count = strtoll(optarg, &end, 10);
            if (errno || end == optarg || *end || count < 0) {
                fprintf(stderr, "storepulse alerts: --count: expected an integer >= 0\n");
                return 2;
            }
            break;
        }
        case O_TIMEOUT:
            if (sp_duration_parse(optarg, &timeout_ms) != 0 || timeout_ms <= 0) {
                fprintf(stderr,
                        "storepulse alerts: --timeout: expected a duration > 0 (10s, 1m)\n");
                return 2;
            }
            break;
        case 'h': alerts_usage(stdout); return 0;
        default: alerts_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "storepulse alerts: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (brokers && bootstrap_file) {
        fprintf(stderr, "storepulse alerts: --brokers and --bootstrap-file exclude each other\n");
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = alerts_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (sp_config_load(&cfg, config_path, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "storepulse alerts: %s\n", errstr);
        return 1;
    }
    sp_log_setup(cfg.log_level, cfg.log_format);
    if (bootstrap_file) {
        if (sp_broker_read_bootstrap_file(bootstrap_file, brokers_buf, sizeof(brokers_buf), 10000,
                                          &alerts_stop_flag) != 0) {
            fprintf(stderr, "storepulse alerts: cannot read the bootstrap servers from %s\n",
                    bootstrap_file);
            return 1;
        }
        brokers = brokers_buf;
    }
    snprintf(schema_path, sizeof(schema_path), "%s/alert.avsc", cfg.schemas_dir);

    if (!(rk = alerts_consumer_new(&cfg, brokers, errstr, sizeof(errstr)))) {
        fprintf(stderr, "storepulse alerts: %s\n", errstr);
        return 1;
    }
    last_ms = sp_clock_mono_ms();
    if (alerts_assign(rk, cfg.topic_alerts,
                      from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END,
                      last_ms + (timeout_ms ? timeout_ms : 30000), errstr, sizeof(errstr)) != 0) {
        if (!alerts_stop_flag) {
            fprintf(stderr, "storepulse alerts: %s\n", errstr);
            goto out;
        }
    }

    while (!alerts_stop_flag && (count == 0 || seen < count)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) {
            if (timeout_ms && sp_clock_mono_ms() - last_ms >= timeout_ms) break;
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "storepulse alerts: %s: %s\n",
                        m->rkt ? rd_kafka_topic_name(m->rkt) : cfg.topic_alerts,
                        rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        last_ms = sp_clock_mono_ms();
        sp_alert_t a;
        if (sp_alert_decode(m->payload, m->len, schema_path, &a, NULL, errstr, sizeof(errstr)) !=
            0) {
            fprintf(stderr, "storepulse alerts: %s [%" PRId32 "] @ %" PRId64 ": not an alert: %s\n",
                    rd_kafka_topic_name(m->rkt), m->partition, m->offset, errstr);
        } else if (as_json) {
            char *out = NULL;
            size_t len = 0;
            if (sp_alert_encode(&a, SP_ALERT_FMT_JSON, 0, NULL, NULL, &out, &len, errstr,
                                sizeof(errstr)) == 0)
                printf("%s\n", out);
            else
                fprintf(stderr, "storepulse alerts: %s\n", errstr);
            free(out);
            seen++;
        } else {
            sp_alert_line(&a, line, sizeof(line));
            printf("%s\n", line);
            seen++;
        }
        fflush(stdout);
        rd_kafka_message_destroy(m);
    }
    ret = 0;
out:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return ret;
}
