/* decode.c -- Kafka message value -> sp_event_t (Avro with Confluent framing,
 * or JSON), with schema evolution and the input validation of SPEC section 1.
 *
 * Avro. avro-c's resolving reader does not apply reader defaults, so we never
 * resolve inside avro-c: each message is decoded with its WRITER schema (found
 * by the Confluent schema id), and the decoded record is mapped onto the event
 * by a per-writer-schema table computed once at load time:
 *   - writer field index -> event slot (string slot, integer slot, or the
 *     `type` enum), found by field name through our READER schema
 *     schemas/<stream>.avsc; writer-only fields map to nothing and are skipped;
 *   - writer enum symbol index -> sp_event_type_t, by symbol NAME, so a writer
 *     enum in another order or with extra symbols works (an unknown symbol in
 *     a message is a bad_enum dead letter);
 *   - reader fields the writer lacks: the reader default (null, false, ...)
 *     is applied per message; a reader field with no default that the writer
 *     lacks makes every message of that writer a missing_field dead letter
 *     (the schema still loads, so the pipeline runs and the dead letters say
 *     what is wrong);
 *   - types: int -> long promotion, [null, T] <-> T both ways (a null for a
 *     non-nullable reader field is "missing"). Anything else incompatible is
 *     rejected when the schema is loaded (a configuration error).
 * Reading the body. avro-c 1.11.1 mallocs whatever length a string claims
 * and, when that length runs past the end, returns an error without freeing
 * it (a leak per truncated message); it also mallocs twice per string read.
 * So by default the body is read by our own bounds-checked pass driven by the
 * writer schema avro-c parsed (read_direct): one pass, the wanted fields are
 * copied into the event as they go by, the others skipped; varints of at most
 * 10 bytes, lengths within the remaining bytes, union branches, enum indexes
 * and nesting checked; the record must end exactly at the end of the body
 * (avro-c ignores trailing bytes). Nothing is allocated but the event's
 * strings in the caller's arena.
 * The reference path (sp_decoder_use_avro_c) is the classic avro-c loop: per
 * writer schema ONE reusable avro_value_t and ONE memory avro_reader_t
 * re-pointed at each message (avro_reader_memory_set_source), the body first
 * checked by the same bounds-checked walk, which also rejects trailing bytes,
 * so avro-c never sees input it would leak on. (Not avro_value_sizeof() ==
 * body length for trailing bytes: it counts shortest varints, and a varint
 * may be padded, e.g. 0x81 0x00 is 1 as 0x02 is.)
 * The tests run every case through both paths and compare them on mutated
 * input.
 *
 * JSON (topics configured `format: json`): one object, same field names, the
 * type as its symbol string, timestamps as integer milliseconds; absent or null
 * nullable fields are fine; fields we do not know are ignored. It goes through
 * the same reader field table and the same validation. jansson allocates per
 * message: JSON is the convenience format, Avro the fast one.
 *
 * Validation, in the order of SPEC section 1 (first failure wins):
 * missing_field, bad_enum, bad_timestamp, negative_amount, string_too_long,
 * bad_value. Undecodable bytes and unknown schema ids are found before that.
 * Beyond the per-stream required lists: an EMPTY event_id, session_id,
 * order_id, shipment_id or ticket_id (where required) counts as missing (they
 * are join keys); promised_delivery_time / order_placed_time before 2000 (and
 * order_placed_time in the future) are bad_timestamp; item_count < 0 and a JSON
 * integer outside the Avro int range of an int field are bad_value; a JSON
 * value of the wrong JSON type is undecodable. Over-long strings are never
 * copied into the arena.
 *
 * What it deliberately does not do: fetch schemas from a registry (the caller
 * does that and hands them over with sp_decoder_add_schema), check UTF-8 in
 * Avro strings, or interpret dimension values (country codes etc.). */
#include "consumers/decode.h"

#include <avro.h>
#include <jansson.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

#define MAX_READER_FIELDS 32
#define MAX_WRITER_SCHEMAS 4096   /* ids registered at runtime included */
#define MAX_SCHEMA_FILE (1 << 20) /* an .avsc bigger than 1 MiB is a mistake */

/* What a reader field is, and so what a writer field may be. */
enum kind {
    K_IGNORE = 0, /* not in sp_event_t */
    K_STR,        /* string -> s[slot] */
    K_LONG,       /* long (or promoted int) -> i[slot] */
    K_INT,        /* int -> i[slot] */
    K_BOOL,       /* boolean -> i[slot] as 0/1 */
    K_TYPE        /* the `type` enum -> ev->type */
};

typedef struct rfield {
    char name[64];
    uint8_t kind;
    uint8_t slot;     /* sp_str_field_t or sp_int_field_t */
    bool nullable;    /* union with null */
    bool has_default;
    bool def_null;    /* default is null */
    int64_t def_int;  /* K_LONG/K_INT/K_BOOL default; K_TYPE: the event type */
    char *def_str;    /* K_STR default (owned) */
    size_t def_len;
} rfield_t;

/* The reader schema of one stream: what the event wants. */
typedef struct rschema {
    char name[128]; /* unqualified record name */
    rfield_t f[MAX_READER_FIELDS];
    int n;
} rschema_t;

/* One writer field and what to do with it. */
typedef struct wfield {
    uint8_t kind; /* K_IGNORE: writer-only, skipped */
    uint8_t slot;
    int8_t rf;                /* index into the reader's fields */
    int16_t *enum_map;        /* K_TYPE: writer symbol index -> type or -1 (owned) */
    int enum_cnt;
    avro_schema_t enum_schema; /* borrowed from the writer schema (for messages) */
    avro_schema_t schema;      /* the field's type, links resolved (borrowed) */
} wfield_t;

typedef struct wschema {
    int32_t id;
    sp_stream_t stream;
    const rschema_t *rs; /* the stream's reader (in the decoder) */
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value; /* reused for every message */
    bool value_ok;
    avro_reader_t reader; /* memory reader, re-pointed per message */
    wfield_t *f;
    size_t nf;
    int8_t dflt[MAX_READER_FIELDS]; /* reader fields the writer lacks, with a default */
    int ndflt;
    char missing[64]; /* first reader field without default the writer lacks */
} wschema_t;

struct sp_decoder {
    rschema_t rs[SP_STREAM__COUNT];
    wschema_t **ws; /* owned */
    int nws;
    int last; /* index of the last hit */
    bool use_avro_c; /* reference path: read through avro-c's generic value */
};

/* Per-message scratch: what was seen, and the first problem of each class. */
typedef struct dstate {
    sp_event_t *ev;
    sp_arena_t *arena;
    uint32_t str_present; /* bit per sp_str_field_t: a non-null value was given */
    bool type_present;
    bool type_bad;
    char bad_sym[64];
    const char *missing;     /* first required field that is absent */
    bool missing_null;       /* ... because it was null */
    const char *too_long;    /* first over-long string field */
    size_t too_long_len;
    const char *out_of_range; /* JSON integer outside the Avro int range */
    bool nomem;
} dstate_t;

static const char empty_src[1] = {0};

__attribute__((format(printf, 3, 4))) static void fmt(char *buf, size_t size, const char *f,
                                                      ...) {
    if (!buf || !size) return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, size, f, ap);
    va_end(ap);
}

static const char *unqualified(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

static int read_whole_file(const char *path, char **out, size_t *out_len, char *errstr,
                           size_t errstr_size) {
    return sp_file_read(path, MAX_SCHEMA_FILE, out, out_len, errstr, errstr_size);
}

static void join_path(char *dst, size_t size, const char *dir, const char *file) {
    if (file[0] == '/' || !dir[0])
        fmt(dst, size, "%s", file);
    else
        fmt(dst, size, "%s/%s", dir, file);
}

/* ---- reader schemas (parsed with jansson: avro-c does not expose defaults) ---- */

/* Classify a reader type node: sets *kind_base to K_STR/K_LONG/K_INT/K_BOOL
 * or K_TYPE (enum), *nullable for [null, T]; *enum_node for enums. */
static int reader_type(json_t *t, int *base, bool *nullable, json_t **enum_node) {
    *nullable = false;
    if (json_is_array(t)) {
        size_t n = json_array_size(t);
        json_t *other = NULL;
        int nulls = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *b = json_array_get(t, i);
            if (json_is_string(b) && strcmp(json_string_value(b), "null") == 0)
                nulls++;
            else if (other)
                return -1; /* only [null, T] unions in reader schemas */
            else
                other = b;
        }
        if (nulls != 1 || !other) return -1;
        *nullable = true;
        t = other;
    }
    if (json_is_object(t)) {
        json_t *tt = json_object_get(t, "type");
        if (json_is_string(tt) && strcmp(json_string_value(tt), "enum") == 0) {
            *base = K_TYPE;
            *enum_node = t;
            return 0;
        }
        t = tt;
    }
    if (!json_is_string(t)) return -1;
    const char *s = json_string_value(t);
    if (strcmp(s, "string") == 0) *base = K_STR;
    else if (strcmp(s, "long") == 0) *base = K_LONG;
    else if (strcmp(s, "int") == 0) *base = K_INT;
    else if (strcmp(s, "boolean") == 0) *base = K_BOOL;
    else *base = K_IGNORE; /* another type: only fine for fields not in sp_event_t */
    return 0;
}

static int reader_load(rschema_t *rs, sp_stream_t st, const char *dir, char *errstr,
                       size_t errstr_size) {
    int ret = SP_ERR_CONFIG;
    char path[1024];
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL;
    avro_schema_t check = NULL;
    char fname[64];

    fmt(fname, sizeof(fname), "%s.avsc", sp_stream_names[st]);
    join_path(path, sizeof(path), dir, fname);
    if ((ret = read_whole_file(path, &text, &len, errstr, errstr_size)) != SP_OK) goto out;
    ret = SP_ERR_CONFIG;
    if (avro_schema_from_json_length(text, len, &check) != 0) {
        fmt(errstr, errstr_size, "%s: invalid Avro schema: %s", path, avro_strerror());
        goto out;
    }
    json_error_t jerr;
    root = json_loadb(text, len, 0, &jerr);
    json_t *fields = root ? json_object_get(root, "fields") : NULL;
    json_t *name = root ? json_object_get(root, "name") : NULL;
    if (!json_is_array(fields) || !json_is_string(name)) {
        fmt(errstr, errstr_size, "%s: not an Avro record schema", path);
        goto out;
    }
    fmt(rs->name, sizeof(rs->name), "%s", unqualified(json_string_value(name)));
    if (json_array_size(fields) > MAX_READER_FIELDS) {
        fmt(errstr, errstr_size, "%s: more than %d fields", path, MAX_READER_FIELDS);
        goto out;
    }
    rs->n = 0;
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *jf = json_array_get(fields, i);
        json_t *jn = json_object_get(jf, "name");
        rfield_t *rf = &rs->f[rs->n];
        int base = K_IGNORE;
        json_t *enum_node = NULL;
        if (!json_is_string(jn) ||
            reader_type(json_object_get(jf, "type"), &base, &rf->nullable, &enum_node) != 0) {
            fmt(errstr, errstr_size, "%s: field %zu: unsupported name or type", path, i);
            goto out;
        }
        fmt(rf->name, sizeof(rf->name), "%s", json_string_value(jn));
        rs->n++;

        /* Which slot of sp_event_t, and is the type the one the slot holds? */
        rf->kind = K_IGNORE;
        for (int s = 0; s < SP_S__COUNT; s++)
            if (strcmp(rf->name, sp_str_field_names[s]) == 0) {
                rf->kind = K_STR;
                rf->slot = (uint8_t)s;
            }
        for (int s = 0; s < SP_I__COUNT; s++)
            if (strcmp(rf->name, sp_int_field_names[s]) == 0) {
                rf->kind = K_LONG;
                rf->slot = (uint8_t)s;
            }
        if (strcmp(rf->name, "type") == 0) rf->kind = K_TYPE;
        if (rf->kind == K_IGNORE) continue;
        bool ok = (rf->kind == K_STR && base == K_STR) || (rf->kind == K_TYPE && base == K_TYPE) ||
                  (rf->kind == K_LONG && (base == K_LONG || base == K_INT || base == K_BOOL));
        if (!ok) {
            fmt(errstr, errstr_size, "%s: field '%s' has a type the event cannot hold", path,
                rf->name);
            goto out;
        }
        if (rf->kind == K_LONG) rf->kind = (uint8_t)base;

        json_t *def = json_object_get(jf, "default");
        if (!def) continue;
        rf->has_default = true;
        if (json_is_null(def)) {
            rf->def_null = true;
        } else if (rf->kind == K_STR && json_is_string(def)) {
            rf->def_len = json_string_length(def);
            rf->def_str = malloc(rf->def_len + 1);
            if (!rf->def_str) {
                ret = SP_ERR_NOMEM;
                fmt(errstr, errstr_size, "out of memory");
                goto out;
            }
            memcpy(rf->def_str, json_string_value(def), rf->def_len + 1);
        } else if (rf->kind == K_BOOL && json_is_boolean(def)) {
            rf->def_int = json_is_true(def);
        } else if ((rf->kind == K_LONG || rf->kind == K_INT) && json_is_integer(def)) {
            rf->def_int = json_integer_value(def);
        } else if (rf->kind == K_TYPE && json_is_string(def) &&
                   sp_event_type_lookup(st, json_string_value(def), json_string_length(def)) >= 0) {
            rf->def_int = sp_event_type_lookup(st, json_string_value(def), json_string_length(def));
        } else {
            fmt(errstr, errstr_size, "%s: field '%s': unsupported default", path, rf->name);
            goto out;
        }
    }
    ret = SP_OK;
out:
    if (check) avro_schema_decref(check);
    json_decref(root);
    free(text);
    return ret;
}

static const rfield_t *reader_field(const rschema_t *rs, const char *name, int *idx) {
    for (int i = 0; i < rs->n; i++)
        if (strcmp(rs->f[i].name, name) == 0) {
            *idx = i;
            return &rs->f[i];
        }
    return NULL;
}

/* ---- writer schemas ---- */

static avro_schema_t unlink_schema(avro_schema_t s) {
    while (s && is_avro_link(s)) s = avro_schema_link_target(s);
    return s;
}

static bool compatible(int kind, avro_schema_t w) {
    switch (kind) {
    case K_STR: return is_avro_string(w);
    case K_LONG: return is_avro_int64(w) || is_avro_int32(w);
    case K_INT: return is_avro_int32(w);
    case K_BOOL: return is_avro_boolean(w);
    case K_TYPE: return is_avro_enum(w);
    default: return false;
    }
}

static void wschema_destroy(wschema_t *ws) {
    if (!ws) return;
    for (size_t i = 0; ws->f && i < ws->nf; i++) free(ws->f[i].enum_map);
    free(ws->f);
    if (ws->value_ok) avro_value_decref(&ws->value);
    if (ws->iface) avro_value_iface_decref(ws->iface);
    if (ws->reader) avro_reader_free(ws->reader);
    if (ws->schema) avro_schema_decref(ws->schema);
    free(ws);
}

static int enum_map_build(wfield_t *wf, avro_schema_t es, sp_stream_t st) {
    int n = avro_schema_enum_number_of_symbols(es);
    wf->enum_schema = es;
    wf->enum_cnt = n;
    wf->enum_map = malloc(sizeof(int16_t) * (size_t)(n > 0 ? n : 1));
    if (!wf->enum_map) return SP_ERR_NOMEM;
    for (int j = 0; j < n; j++) {
        const char *sym = avro_schema_enum_get(es, j);
        wf->enum_map[j] = (int16_t)(sym ? sp_event_type_lookup(st, sym, strlen(sym)) : -1);
    }
    return SP_OK;
}

static int wschema_build(const sp_decoder_t *d, wschema_t **out, int32_t id, sp_stream_t st,
                         const char *json, size_t json_len, char *errstr, size_t errstr_size) {
    int ret = SP_ERR_CONFIG;
    const rschema_t *rs = &d->rs[st];
    bool seen[MAX_READER_FIELDS] = {0};
    wschema_t *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        ret = SP_ERR_NOMEM;
        fmt(errstr, errstr_size, "out of memory");
        goto out;
    }
    ws->id = id;
    ws->stream = st;
    ws->rs = rs;
    if (avro_schema_from_json_length(json, json_len, &ws->schema) != 0) {
        fmt(errstr, errstr_size, "schema id %d: invalid Avro schema: %s", (int)id,
            avro_strerror());
        goto out;
    }
    if (!is_avro_record(ws->schema)) {
        fmt(errstr, errstr_size, "schema id %d: not a record", (int)id);
        goto out;
    }
    if (strcmp(unqualified(avro_schema_name(ws->schema)), rs->name) != 0) {
        fmt(errstr, errstr_size, "schema id %d: record '%s' is not the %s record '%s'", (int)id,
            avro_schema_name(ws->schema), sp_stream_names[st], rs->name);
        goto out;
    }
    ws->nf = avro_schema_record_size(ws->schema);
    ws->f = calloc(ws->nf ? ws->nf : 1, sizeof(*ws->f));
    if (!ws->f) {
        ret = SP_ERR_NOMEM;
        fmt(errstr, errstr_size, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ws->nf; i++) {
        wfield_t *wf = &ws->f[i];
        const char *name = avro_schema_record_field_name(ws->schema, (int)i);
        avro_schema_t fs = unlink_schema(avro_schema_record_field_get_by_index(ws->schema, (int)i));
        wf->schema = fs;
        int ri = -1;
        const rfield_t *rf = name ? reader_field(rs, name, &ri) : NULL;
        if (!rf || rf->kind == K_IGNORE || !fs) continue; /* writer-only: skipped */
        seen[ri] = true;
        wf->kind = rf->kind;
        wf->slot = rf->slot;
        wf->rf = (int8_t)ri;
        /* Every non-null branch must resolve to the reader's type. */
        size_t nb = is_avro_union(fs) ? avro_schema_union_size(fs) : 1;
        int usable = 0;
        for (size_t b = 0; b < nb; b++) {
            avro_schema_t bs = is_avro_union(fs) ? unlink_schema(avro_schema_union_branch(fs, (int)b))
                                                 : fs;
            if (bs && is_avro_null(bs)) continue;
            if (!bs || !compatible(rf->kind, bs) || (is_avro_enum(bs) && wf->enum_map)) {
                fmt(errstr, errstr_size,
                    "schema id %d: field '%s' has a type incompatible with the reader schema",
                    (int)id, name);
                goto out;
            }
            if (is_avro_enum(bs) && enum_map_build(wf, bs, st) != SP_OK) {
                ret = SP_ERR_NOMEM;
                fmt(errstr, errstr_size, "out of memory");
                goto out;
            }
            usable++;
        }
        if (!usable) {
            fmt(errstr, errstr_size, "schema id %d: field '%s' can only be null", (int)id, name);
            goto out;
        }
    }
    for (int j = 0; j < rs->n; j++) {
        const rfield_t *rf = &rs->f[j];
        if (seen[j] || rf->kind == K_IGNORE) continue;
        if (rf->has_default)
            ws->dflt[ws->ndflt++] = (int8_t)j;
        else if (!rf->nullable && !ws->missing[0])
            fmt(ws->missing, sizeof(ws->missing), "%s", rf->name);
    }
    ws->iface = avro_generic_class_from_schema(ws->schema);
    if (!ws->iface || avro_generic_value_new(ws->iface, &ws->value) != 0) {
        fmt(errstr, errstr_size, "schema id %d: %s", (int)id, avro_strerror());
        goto out;
    }
    ws->value_ok = true;
    ws->reader = avro_reader_memory(empty_src, 0);
    if (!ws->reader) {
        ret = SP_ERR_NOMEM;
        fmt(errstr, errstr_size, "out of memory");
        goto out;
    }
    *out = ws;
    ws = NULL;
    ret = SP_OK;
out:
    wschema_destroy(ws);
    return ret;
}

int sp_decoder_add_schema(sp_decoder_t *d, int32_t id, sp_stream_t st, const char *json,
                          size_t json_len, char *errstr, size_t errstr_size) {
    if (!d || !json || (int)st < 0 || st >= SP_STREAM__COUNT) {
        fmt(errstr, errstr_size, "invalid argument");
        return SP_ERR_INVALID;
    }
    wschema_t *ws = NULL;
    int ret = wschema_build(d, &ws, id, st, json, json_len, errstr, errstr_size);
    if (ret != SP_OK) return ret;
    for (int i = 0; i < d->nws; i++)
        if (d->ws[i]->id == id) {
            wschema_destroy(d->ws[i]);
            d->ws[i] = ws;
            return SP_OK;
        }
    if (d->nws >= MAX_WRITER_SCHEMAS) {
        wschema_destroy(ws);
        fmt(errstr, errstr_size, "more than %d schema ids", MAX_WRITER_SCHEMAS);
        return SP_ERR_CONFIG;
    }
    wschema_t **grown = realloc(d->ws, sizeof(*grown) * (size_t)(d->nws + 1));
    if (!grown) {
        wschema_destroy(ws);
        fmt(errstr, errstr_size, "out of memory");
        return SP_ERR_NOMEM;
    }
    d->ws = grown;
    d->ws[d->nws++] = ws;
    return SP_OK;
}

sp_decoder_t *sp_decoder_new(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    sp_decoder_t *d = calloc(1, sizeof(*d));
    char *text = NULL;
    if (!d) {
        fmt(errstr, errstr_size, "out of memory");
        goto fail;
    }
    const char *dir = cfg->schemas_dir[0] ? cfg->schemas_dir : ".";
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        if (reader_load(&d->rs[st], (sp_stream_t)st, dir, errstr, errstr_size) != SP_OK) goto fail;
    for (int i = 0; i < cfg->schema_cnt && i < SP_MAX_SCHEMAS; i++) {
        const sp_schema_conf_t *sc = &cfg->schemas[i];
        char path[1100];
        size_t len = 0;
        char sub[512];
        /* sp_config_load() already joins schemas.dir, a hand-made config may
         * not have: schemas_dir/path when that exists, else path as given. */
        join_path(path, sizeof(path), dir, sc->path);
        FILE *probe = fopen(path, "rb");
        if (probe)
            fclose(probe);
        else
            fmt(path, sizeof(path), "%s", sc->path);
        if (read_whole_file(path, &text, &len, errstr, errstr_size) != SP_OK) goto fail;
        if (sp_decoder_add_schema(d, sc->id, sc->stream, text, len, sub, sizeof(sub)) != SP_OK) {
            fmt(errstr, errstr_size, "%s: %s", path, sub);
            goto fail;
        }
        free(text);
        text = NULL;
    }
    return d;
fail:
    free(text);
    sp_decoder_destroy(d);
    return NULL;
}

void sp_decoder_destroy(sp_decoder_t *d) {
    if (!d) return;
    for (int i = 0; i < d->nws; i++) wschema_destroy(d->ws[i]);
    free(d->ws);
    for (int st = 0; st < SP_STREAM__COUNT; st++)
        for (int j = 0; j < d->rs[st].n; j++) free(d->rs[st].f[j].def_str);
    free(d);
}

void sp_decoder_use_avro_c(sp_decoder_t *d, int on) {
    if (d) d->use_avro_c = on != 0;
}

/* ---- filling the event ---- */

static void put_str(dstate_t *ds, const rfield_t *rf, const char *p, size_t len) {
    ds->str_present |= 1u << rf->slot;
    size_t max = rf->slot == SP_S_FAILURE_REASON ? SP_MAX_TEXT_LEN : SP_MAX_ID_LEN;
    if (len > max) {
        if (!ds->too_long) {
            ds->too_long = rf->name;
            ds->too_long_len = len;
        }
        return;
    }
    sp_str_t s = sp_arena_strdup(ds->arena, p, len);
    if (!s.p) ds->nomem = true;
    ds->ev->s[rf->slot] = s;
}

static void put_type(dstate_t *ds, int type, const char *sym, size_t sym_len) {
    ds->type_present = true;
    if (type >= 0) {
        ds->ev->type = (sp_event_type_t)type;
    } else if (!ds->type_bad) {
        ds->type_bad = true;
        fmt(ds->bad_sym, sizeof(ds->bad_sym), "%.*s", (int)(sym_len > 48 ? 48 : sym_len), sym);
    }
}

static void put_default(dstate_t *ds, const rfield_t *rf) {
    if (rf->def_null) return;
    switch (rf->kind) {
    case K_STR:
        ds->str_present |= 1u << rf->slot;
        ds->ev->s[rf->slot].p = rf->def_str;
        ds->ev->s[rf->slot].len = (uint32_t)rf->def_len;
        break;
    case K_TYPE:
        ds->type_present = true;
        ds->ev->type = (sp_event_type_t)rf->def_int;
        break;
    case K_LONG:
    case K_INT:
    case K_BOOL: sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, rf->def_int); break;
    default: break;
    }
}

/* A field whose value is null (is_null) or that is not there at all. */
static void put_absent(dstate_t *ds, const rfield_t *rf, bool is_null) {
    if (rf->kind == K_IGNORE) return;
    if (rf->nullable && (is_null || !rf->has_default)) return; /* null is a value */
    if (rf->has_default) {
        put_default(ds, rf);
        return;
    }
    if (!ds->missing) {
        ds->missing = rf->name;
        ds->missing_null = is_null;
    }
}

/* ---- validation (SPEC section 1 order) ---- */

static const sp_str_field_t req_str[SP_STREAM__COUNT][6] = {
    [SP_STREAM_CLICKSTREAM] = {SP_S_SESSION_ID, SP_S_CHANNEL, SP_S_DEVICE, SP_S_COUNTRY,
                               SP_S__COUNT},
    [SP_STREAM_CHECKOUT] = {SP_S_CURRENCY, SP_S_CHANNEL, SP_S_DEVICE, SP_S_COUNTRY, SP_S__COUNT},
    [SP_STREAM_SHIPMENT] = {SP_S_SHIPMENT_ID, SP_S_ORDER_ID, SP_S_CARRIER, SP_S_COUNTRY,
                            SP_S__COUNT},
    [SP_STREAM_SUPPORT] = {SP_S_TICKET_ID, SP_S_CHANNEL, SP_S__COUNT},
};

/* Keys that identify an entity or a session: an empty one is as good as none. */
static bool is_key(sp_str_field_t f) {
    return f == SP_S_EVENT_ID || f == SP_S_SESSION_ID || f == SP_S_ORDER_ID ||
           f == SP_S_SHIPMENT_ID || f == SP_S_TICKET_ID;
}

static int poison(sp_dlq_reason_t *reason, sp_dlq_reason_t r, char *why, size_t why_size,
                  const char *text) {
    *reason = r;
    fmt(why, why_size, "%s", text);
    return SP_ERR_POISON;
}

static bool need_str(const dstate_t *ds, sp_str_field_t f, char *msg, size_t msg_size) {
    if (!(ds->str_present >> f & 1u)) {
        fmt(msg, msg_size, "field '%s' is missing or null", sp_str_field_names[f]);
        return false;
    }
    if (is_key(f) && ds->ev->s[f].p && ds->ev->s[f].len == 0) {
        fmt(msg, msg_size, "field '%s' is empty", sp_str_field_names[f]);
        return false;
    }
    return true;
}

static int validate(sp_stream_t st, const dstate_t *ds, int64_t now_ms, sp_dlq_reason_t *reason,
                    char *why, size_t why_size) {
    const sp_event_t *ev = ds->ev;
    char msg[160];

    /* missing_field */
    if (ds->missing) {
        fmt(msg, sizeof(msg), "field '%s' is %s", ds->missing, ds->missing_null ? "null" : "missing");
        return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size, msg);
    }
    if (!need_str(ds, SP_S_EVENT_ID, msg, sizeof(msg)))
        return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size, msg);
    if (!sp_event_has_int(ev, SP_I_EVENT_TIME))
        return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size,
                      "field 'event_time' is missing or null");
    if (!ds->type_present)
        return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size,
                      "field 'type' is missing or null");
    for (int i = 0; req_str[st][i] != SP_S__COUNT && i < 6; i++)
        if (!need_str(ds, req_str[st][i], msg, sizeof(msg)))
            return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size, msg);
    if (st == SP_STREAM_CHECKOUT) {
        if (!sp_event_has_int(ev, SP_I_AMOUNT_CENTS))
            return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size,
                          "field 'amount_cents' is missing or null");
        if (!ds->type_bad && (ev->type == SP_T_ORDER_PLACED || ev->type == SP_T_ORDER_CANCELLED) &&
            !need_str(ds, SP_S_ORDER_ID, msg, sizeof(msg))) {
            fmt(msg + strlen(msg), sizeof(msg) - strlen(msg), " (required for %s)",
                sp_event_type_names[ev->type]);
            return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size, msg);
        }
    }
    if (st == SP_STREAM_SHIPMENT && !sp_event_has_int(ev, SP_I_PROMISED_DELIVERY_TIME))
        return poison(reason, SP_DLQ_MISSING_FIELD, why, why_size,
                      "field 'promised_delivery_time' is missing or null");

    /* bad_enum */
    if (ds->type_bad) {
        fmt(msg, sizeof(msg), "unknown %s type '%s'", sp_stream_names[st], ds->bad_sym);
        return poison(reason, SP_DLQ_BAD_ENUM, why, why_size, msg);
    }

    /* bad_timestamp */
    int64_t t = ev->i[SP_I_EVENT_TIME];
    if (t < SP_DECODE_MIN_TIME_MS || t > now_ms + SP_DECODE_MAX_FUTURE_MS) {
        fmt(msg, sizeof(msg), "event_time %lld is %s", (long long)t,
            t < SP_DECODE_MIN_TIME_MS ? "before 2000-01-01" : "more than 1 day in the future");
        return poison(reason, SP_DLQ_BAD_TIMESTAMP, why, why_size, msg);
    }
    static const sp_int_field_t other_ts[] = {SP_I_PROMISED_DELIVERY_TIME, SP_I_ORDER_PLACED_TIME};
    for (size_t k = 0; k < sizeof(other_ts) / sizeof(other_ts[0]); k++) {
        sp_int_field_t f = other_ts[k];
        if (sp_event_has_int(ev, f) && ev->i[f] < SP_DECODE_MIN_TIME_MS) {
            fmt(msg, sizeof(msg), "%s %lld is before 2000-01-01", sp_int_field_names[f],
                (long long)ev->i[f]);
            return poison(reason, SP_DLQ_BAD_TIMESTAMP, why, why_size, msg);
        }
    }
    if (sp_event_has_int(ev, SP_I_ORDER_PLACED_TIME) &&
        ev->i[SP_I_ORDER_PLACED_TIME] > now_ms + SP_DECODE_MAX_FUTURE_MS)
        return poison(reason, SP_DLQ_BAD_TIMESTAMP, why, why_size,
                      "order_placed_time is more than 1 day in the future");

    /* negative_amount */
    if (sp_event_has_int(ev, SP_I_AMOUNT_CENTS) && ev->i[SP_I_AMOUNT_CENTS] < 0) {
        fmt(msg, sizeof(msg), "amount_cents %lld is negative", (long long)ev->i[SP_I_AMOUNT_CENTS]);
        return poison(reason, SP_DLQ_NEGATIVE_AMOUNT, why, why_size, msg);
    }

    /* string_too_long */
    if (ds->too_long) {
        fmt(msg, sizeof(msg), "field '%s' is %zu bytes (max %d)", ds->too_long, ds->too_long_len,
            strcmp(ds->too_long, "failure_reason") == 0 ? SP_MAX_TEXT_LEN : SP_MAX_ID_LEN);
        return poison(reason, SP_DLQ_STRING_TOO_LONG, why, why_size, msg);
    }

    /* bad_value */
    if (ds->out_of_range) {
        fmt(msg, sizeof(msg), "field '%s' is out of range", ds->out_of_range);
        return poison(reason, SP_DLQ_BAD_VALUE, why, why_size, msg);
    }
    static const struct {
        sp_int_field_t f;
        int64_t lo, hi;
    } ranges[] = {{SP_I_CSAT, 1, 5}, {SP_I_NPS, 0, 10}, {SP_I_CES, 1, 7},
                  {SP_I_ITEM_COUNT, 0, INT32_MAX}};
    for (size_t k = 0; k < sizeof(ranges) / sizeof(ranges[0]); k++) {
        sp_int_field_t f = ranges[k].f;
        if (sp_event_has_int(ev, f) && (ev->i[f] < ranges[k].lo || ev->i[f] > ranges[k].hi)) {
            fmt(msg, sizeof(msg), "%s %lld is outside %lld..%lld", sp_int_field_names[f],
                (long long)ev->i[f], (long long)ranges[k].lo, (long long)ranges[k].hi);
            return poison(reason, SP_DLQ_BAD_VALUE, why, why_size, msg);
        }
    }
    return SP_OK;
}

/* ---- Avro: bounds-checked walk ----
 *
 * Skips one value of schema s, checking its framing: varints of at most 10
 * bytes, lengths within the remaining bytes, union branches and nesting in
 * range, array/map items within a budget proportional to the body (so items
 * of zero bytes cannot make it loop for long). Used for writer-only fields by
 * the direct reader and for the whole body before avro-c reads it (a body
 * that passes cannot make avro-c fail half-way, where 1.11.1 leaks). */

#define WALK_MAX_DEPTH 32

typedef struct walk {
    const unsigned char *p, *end;
    size_t budget; /* items and fields we are still willing to visit */
    const char *err;
} walk_t;

static bool walk_varint(walk_t *w, int64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (w->p >= w->end) {
            w->err = "truncated varint";
            return false;
        }
        unsigned char b = *w->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
            return true;
        }
    }
    w->err = "varint longer than 10 bytes";
    return false;
}

static bool walk_skip(walk_t *w, int64_t n) {
    if (n < 0 || n > w->end - w->p) {
        w->err = n < 0 ? "negative length" : "length runs past the end of the message";
        return false;
    }
    w->p += n;
    return true;
}

static bool walk_value(walk_t *w, avro_schema_t s, int depth) {
    int64_t n = 0;
    s = unlink_schema(s);
    if (!s || depth > WALK_MAX_DEPTH) {
        w->err = "nested too deep";
        return false;
    }
    if (w->budget == 0) {
        w->err = "too many items for the message size";
        return false;
    }
    w->budget--;
    switch (avro_typeof(s)) {
    case AVRO_NULL: return true;
    case AVRO_BOOLEAN: return walk_skip(w, 1);
    case AVRO_INT32:
        if (!walk_varint(w, &n)) return false;
        if (n < INT32_MIN || n > INT32_MAX) {
            w->err = "int out of range";
            return false;
        }
        return true;
    case AVRO_INT64: return walk_varint(w, &n);
    case AVRO_ENUM:
        /* in range here, not only where a field is mapped: avro-c reads the
         * index into an int, so 2^55 would pass as 0 (found by fuzz_avro) */
        if (!walk_varint(w, &n)) return false;
        if (n < 0 || n >= avro_schema_enum_number_of_symbols(s)) {
            w->err = "enum index out of range";
            return false;
        }
        return true;
    case AVRO_FLOAT: return walk_skip(w, 4);
    case AVRO_DOUBLE: return walk_skip(w, 8);
    case AVRO_STRING:
    case AVRO_BYTES: return walk_varint(w, &n) && walk_skip(w, n);
    case AVRO_FIXED: return walk_skip(w, avro_schema_fixed_size(s));
    case AVRO_UNION:
        if (!walk_varint(w, &n)) return false;
        if (n < 0 || (uint64_t)n >= avro_schema_union_size(s)) {
            w->err = "union branch out of range";
            return false;
        }
        return walk_value(w, avro_schema_union_branch(s, (int)n), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            if (!walk_value(w, avro_schema_record_field_get_by_index(s, (int)i), depth + 1))
                return false;
        return true;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        avro_schema_t item = is_avro_array(s) ? avro_schema_array_items(s) : avro_schema_map_values(s);
        for (;;) {
            if (!walk_varint(w, &n)) return false;
            if (n == 0) return true;
            if (n < 0) {
                int64_t block_bytes;
                if (n == INT64_MIN || !walk_varint(w, &block_bytes)) {
                    if (!w->err) w->err = "bad block count";
                    return false;
                }
                n = -n;
            }
            if ((uint64_t)n > w->budget) {
                w->err = "too many items for the message size";
                return false;
            }
            for (int64_t k = 0; k < n; k++) {
                int64_t key_len = 0;
                if (is_avro_map(s) && !(walk_varint(w, &key_len) && walk_skip(w, key_len)))
                    return false;
                if (!walk_value(w, item, depth + 1)) return false;
            }
        }
    }
    default: w->err = "unsupported type"; return false;
    }
}

/* ---- Avro ---- */

static wschema_t *find_schema(sp_decoder_t *d, int32_t id) {
    if (d->last < d->nws && d->ws[d->last]->id == id) return d->ws[d->last];
    for (int i = 0; i < d->nws; i++)
        if (d->ws[i]->id == id) {
            d->last = i;
            return d->ws[i];
        }
    return NULL;
}

static int undecodable_avro(sp_dlq_reason_t *reason, char *why, size_t why_size, int rc,
                            const char *what) {
    *reason = SP_DLQ_UNDECODABLE;
    fmt(why, why_size, "%s (rc %d): %s", what, rc, avro_strerror());
    return SP_ERR_POISON;
}

/* Reference path: check the framing, then read through avro-c's generic value
 * and map its fields. */
static int read_avro_c(wschema_t *ws, sp_stream_t st, const unsigned char *body_p, size_t body,
                       dstate_t *ds, sp_dlq_reason_t *reason, char *why, size_t why_size) {
    char msg[160];
    walk_t w = {body_p, body_p + body, 64 + 4 * body, NULL};
    if (!walk_value(&w, ws->schema, 0) || w.p != w.end) {
        if (!w.err)
            fmt(msg, sizeof(msg), "%zu trailing bytes after the Avro record", (size_t)(w.end - w.p));
        else
            fmt(msg, sizeof(msg), "not an Avro %s record: %s", sp_stream_names[st], w.err);
        return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
    }
    /* The walk above proved the record ends exactly at the end of the body.
     * avro_value_sizeof() cannot: it counts the canonical (shortest) varint
     * encodings, so a valid body with a padded varint (0x9b 0x00 for 27)
     * looked like one with trailing bytes (found by fuzz_avro). */
    avro_reader_memory_set_source(ws->reader, (const char *)body_p, (int64_t)body);
    int rc = avro_value_read(ws->reader, &ws->value);
    if (rc != 0) return undecodable_avro(reason, why, why_size, rc, "cannot decode Avro body");

    const rschema_t *rs = ws->rs;
    for (size_t i = 0; i < ws->nf; i++) {
        const wfield_t *wf = &ws->f[i];
        if (wf->kind == K_IGNORE) continue;
        const rfield_t *rf = &rs->f[wf->rf];
        avro_value_t fv, bv;
        if ((rc = avro_value_get_by_index(&ws->value, i, &fv, NULL)) != 0)
            return undecodable_avro(reason, why, why_size, rc, "cannot read field");
        if (avro_value_get_type(&fv) == AVRO_UNION) {
            if ((rc = avro_value_get_current_branch(&fv, &bv)) != 0)
                return undecodable_avro(reason, why, why_size, rc, "cannot read union");
            fv = bv;
        }
        switch (avro_value_get_type(&fv)) {
        case AVRO_NULL: put_absent(ds, rf, true); break;
        case AVRO_STRING: {
            const char *p = NULL;
            size_t sz = 0;
            if ((rc = avro_value_get_string(&fv, &p, &sz)) != 0)
                return undecodable_avro(reason, why, why_size, rc, "cannot read string");
            put_str(ds, rf, p ? p : "", sz ? sz - 1 : 0); /* sz counts the NUL */
            break;
        }
        case AVRO_INT32: {
            int32_t v = 0;
            avro_value_get_int(&fv, &v);
            sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, v);
            break;
        }
        case AVRO_INT64: {
            int64_t v = 0;
            avro_value_get_long(&fv, &v);
            sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, v);
            break;
        }
        case AVRO_BOOLEAN: {
            int v = 0;
            avro_value_get_boolean(&fv, &v);
            sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, v != 0);
            break;
        }
        case AVRO_ENUM: {
            int v = -1;
            avro_value_get_enum(&fv, &v);
            if (v < 0 || v >= wf->enum_cnt) {
                fmt(msg, sizeof(msg), "enum index %d out of range for field '%s'", v, rf->name);
                return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
            }
            const char *sym = avro_schema_enum_get(wf->enum_schema, v);
            put_type(ds, wf->enum_map[v], sym ? sym : "?", sym ? strlen(sym) : 1);
            break;
        }
        default:
            fmt(msg, sizeof(msg), "field '%s' has an unexpected type", rf->name);
            return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
        }
    }
    return SP_OK;
}

/* Direct path: one bounds-checked pass over the body that maps the fields we
 * want as it goes and skips the others (walk_value). Same results as the
 * reference path -- the tests compare them on mutated input -- without
 * avro-c's two mallocs per string. */
static int read_direct(wschema_t *ws, sp_stream_t st, const unsigned char *body_p, size_t body,
                       dstate_t *ds, sp_dlq_reason_t *reason, char *why, size_t why_size) {
    char msg[160];
    const rschema_t *rs = ws->rs;
    walk_t w = {body_p, body_p + body, 64 + 4 * body, NULL};
    for (size_t i = 0; i < ws->nf; i++) {
        const wfield_t *wf = &ws->f[i];
        if (wf->kind == K_IGNORE) {
            if (!walk_value(&w, avro_schema_record_field_get_by_index(ws->schema, (int)i), 1))
                goto bad;
            continue;
        }
        const rfield_t *rf = &rs->f[wf->rf];
        avro_schema_t t = wf->schema;
        int64_t v = 0;
        if (is_avro_union(t)) {
            if (!walk_varint(&w, &v)) goto bad;
            if (v < 0 || (uint64_t)v >= avro_schema_union_size(t)) {
                w.err = "union branch out of range";
                goto bad;
            }
            t = unlink_schema(avro_schema_union_branch(t, (int)v));
        }
        switch (t ? avro_typeof(t) : AVRO_LINK) {
        case AVRO_NULL: put_absent(ds, rf, true); break;
        case AVRO_STRING: {
            if (!walk_varint(&w, &v)) goto bad;
            const unsigned char *p = w.p;
            if (!walk_skip(&w, v)) goto bad;
            put_str(ds, rf, (const char *)p, (size_t)v);
            break;
        }
        case AVRO_INT32:
        case AVRO_INT64:
            if (!walk_varint(&w, &v)) goto bad;
            if (avro_typeof(t) == AVRO_INT32 && (v < INT32_MIN || v > INT32_MAX)) {
                w.err = "int out of range";
                goto bad;
            }
            sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, v);
            break;
        case AVRO_BOOLEAN:
            if (w.p >= w.end) {
                w.err = "truncated boolean";
                goto bad;
            }
            sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, *w.p++ != 0);
            break;
        case AVRO_ENUM: {
            if (!walk_varint(&w, &v)) goto bad;
            if (v < 0 || v >= wf->enum_cnt) {
                fmt(msg, sizeof(msg), "enum index %lld out of range for field '%s'", (long long)v,
                    rf->name);
                return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
            }
            const char *sym = avro_schema_enum_get(wf->enum_schema, (int)v);
            put_type(ds, wf->enum_map[v], sym ? sym : "?", sym ? strlen(sym) : 1);
            break;
        }
        default: w.err = "unexpected type"; goto bad;
        }
    }
    if (w.p != w.end) {
        fmt(msg, sizeof(msg), "%zu trailing bytes after the Avro record", (size_t)(w.end - w.p));
        return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
    }
    return SP_OK;
bad:
    fmt(msg, sizeof(msg), "not an Avro %s record: %s", sp_stream_names[st], w.err);
    return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
}

static int decode_avro(sp_decoder_t *d, sp_stream_t st, const unsigned char *buf, size_t len,
                       dstate_t *ds, sp_dlq_reason_t *reason, char *why, size_t why_size) {
    char msg[160];
    if (len < 5) {
        fmt(msg, sizeof(msg), "%zu bytes: shorter than the 5-byte Confluent header", len);
        return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
    }
    if (buf[0] != 0) {
        fmt(msg, sizeof(msg), "magic byte is 0x%02x, not 0", buf[0]);
        return poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
    }
    int32_t id = (int32_t)((uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 |
                           (uint32_t)buf[3] << 8 | (uint32_t)buf[4]);
    wschema_t *ws = find_schema(d, id);
    if (!ws || ws->stream != st) {
        if (ws)
            fmt(msg, sizeof(msg), "schema id %d is a %s schema, not %s", (int)id,
                sp_stream_names[ws->stream], sp_stream_names[st]);
        else
            fmt(msg, sizeof(msg), "schema id %d is not configured", (int)id);
        return poison(reason, SP_DLQ_UNKNOWN_SCHEMA, why, why_size, msg);
    }

    int ret = d->use_avro_c ? read_avro_c(ws, st, buf + 5, len - 5, ds, reason, why, why_size)
                            : read_direct(ws, st, buf + 5, len - 5, ds, reason, why, why_size);
    if (ret != SP_OK) return ret;
    const rschema_t *rs = &d->rs[st];
    for (int k = 0; k < ws->ndflt; k++) put_default(ds, &rs->f[ws->dflt[k]]);
    if (ws->missing[0] && !ds->missing) {
        ds->missing = ws->missing;
        ds->missing_null = false;
    }
    return SP_OK;
}

/* ---- JSON ---- */

static int decode_json(const sp_decoder_t *d, sp_stream_t st, const char *buf, size_t len,
                       dstate_t *ds, sp_dlq_reason_t *reason, char *why, size_t why_size) {
    int ret = SP_ERR_POISON;
    char msg[200];
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        fmt(msg, sizeof(msg), "invalid JSON at byte %d: %s", jerr.position, jerr.text);
        poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
        goto out;
    }
    if (!json_is_object(root)) {
        poison(reason, SP_DLQ_UNDECODABLE, why, why_size, "JSON value is not an object");
        goto out;
    }
    const rschema_t *rs = &d->rs[st];
    for (int i = 0; i < rs->n; i++) {
        const rfield_t *rf = &rs->f[i];
        if (rf->kind == K_IGNORE) continue;
        json_t *v = json_object_get(root, rf->name);
        if (!v || json_is_null(v)) {
            put_absent(ds, rf, v != NULL);
            continue;
        }
        const char *want = NULL;
        switch (rf->kind) {
        case K_STR:
            if (!json_is_string(v)) want = "a string";
            else put_str(ds, rf, json_string_value(v), json_string_length(v));
            break;
        case K_TYPE:
            if (!json_is_string(v))
                want = "a type symbol string";
            else
                put_type(ds, sp_event_type_lookup(st, json_string_value(v), json_string_length(v)),
                         json_string_value(v), json_string_length(v));
            break;
        case K_BOOL:
            if (!json_is_boolean(v)) want = "true or false";
            else sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, json_is_true(v));
            break;
        case K_INT:
        case K_LONG: {
            if (!json_is_integer(v)) {
                want = "an integer";
                break;
            }
            json_int_t x = json_integer_value(v);
            if (rf->kind == K_INT && (x < INT32_MIN || x > INT32_MAX) && !ds->out_of_range)
                ds->out_of_range = rf->name;
            sp_event_set_int(ds->ev, (sp_int_field_t)rf->slot, (int64_t)x);
            break;
        }
        default: break;
        }
        if (want) {
            fmt(msg, sizeof(msg), "field '%s' must be %s", rf->name, want);
            poison(reason, SP_DLQ_UNDECODABLE, why, why_size, msg);
            goto out;
        }
    }
    ret = SP_OK;
out:
    json_decref(root);
    return ret;
}

int sp_decoder_decode(sp_decoder_t *d, sp_stream_t st, sp_format_t fmt_, const void *buf,
                      size_t len, int64_t now_ms, sp_arena_t *arena, sp_event_t *ev,
                      sp_dlq_reason_t *reason, char *why, size_t why_size) {
    sp_dlq_reason_t unused_reason;
    if (!reason) reason = &unused_reason;
    *reason = SP_DLQ_NONE;
    if (why && why_size) why[0] = '\0';
    if (!d || !arena || !ev || (int)st < 0 || st >= SP_STREAM__COUNT || (!buf && len)) {
        fmt(why, why_size, "invalid argument");
        return SP_ERR_INVALID;
    }
    if (!buf) buf = empty_src;

    memset(ev, 0, sizeof(*ev));
    ev->stream = st;
    ev->type = sp_stream_first_type(st);
    dstate_t ds;
    memset(&ds, 0, sizeof(ds));
    ds.ev = ev;
    ds.arena = arena;

    int ret;
    if (fmt_ == SP_FORMAT_JSON)
        ret = decode_json(d, st, buf, len, &ds, reason, why, why_size);
    else
        ret = decode_avro(d, st, buf, len, &ds, reason, why, why_size);
    if (ret != SP_OK) return ret;
    if (ds.nomem) {
        fmt(why, why_size, "arena out of memory");
        return SP_ERR_NOMEM;
    }
    return validate(st, &ds, now_ms, reason, why, why_size);
}
