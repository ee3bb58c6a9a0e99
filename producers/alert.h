/* alert.h -- one alert transition (SPEC §5) and its wire formats.
 *
 * What it owns: the alert record that the rule evaluator
 * (aggregators/rules.c) produces and the outbox carries, its encodings on
 * the alert topic -- Avro with Confluent framing (schemas/alert.avsc), JSON,
 * and the Prometheus Alertmanager v2 alert shape -- their decoding for
 * `storepulse alerts`, and the one-line human rendering.
 *
 * Every string is NUL-terminated and truncated to its buffer. */
#ifndef SP_ALERT_H
#define SP_ALERT_H

#include <stddef.h>
#include <stdint.h>

#define SP_ALERT_CONTRIB_MAX 5
#define SP_ALERT_LABEL_MAX   8

typedef enum { SP_ALERT_FIRING = 0, SP_ALERT_RESOLVED = 1 } sp_alert_state_t;

typedef enum {
    SP_ALERT_FMT_AVRO = 0,     /* Confluent framing + schemas/alert.avsc */
    SP_ALERT_FMT_JSON,         /* one JSON object, the Avro record's fields */
    SP_ALERT_FMT_ALERTMANAGER, /* a JSON array of one Alertmanager v2 alert */
} sp_alert_format_t;

/* A dimension value that explains the change, e.g. device=mobile. */
typedef struct sp_alert_contrib {
    char dimension[160]; /* "device=mobile" */
    int has_value;
    double value;        /* the value's own metric value in the window */
    int has_baseline;
    double baseline;     /* its own baseline (or threshold), if known */
    double share;        /* its share of the denominator, 0..1 */
} sp_alert_contrib_t;

typedef struct sp_alert_label {
    char key[64];
    char value[256];
} sp_alert_label_t;

typedef struct sp_alert {
    char fingerprint[32]; /* 16 hex digits of a hash of rule + dimension */
    char alert_id[96];    /* "<fingerprint>:<FIRING|RESOLVED>:<window_start_ms>" */
    char rule[64];
    sp_alert_state_t state;
    char severity[16];
    char metric[96];     /* "funnel.conversion_rate" */
    char dimension[160]; /* "channel=web"; "" for an overall rule */
    int has_value;
    double value;
    int has_threshold;
    double threshold;
    int64_t sample_size;
    char window_size[16]; /* "5m" */
    int64_t window_start_ms, window_end_ms;
    int64_t started_at_ms; /* when it (first) became FIRING: window end */
    int64_t emitted_at_ms; /* wall time of the message */
    /* The rule's repeat_every (0: unknown). Not on the wire of any format:
     * the sender sets it from its rules before encoding, for Alertmanager's
     * endsAt (sp_alert_ends_at). */
    int64_t repeat_every_ms;
    int ncontrib;
    sp_alert_contrib_t contrib[SP_ALERT_CONTRIB_MAX];
    char summary[512];
    int nlabels;
    sp_alert_label_t labels[SP_ALERT_LABEL_MAX];
} sp_alert_t;

/* A FIRING message stays valid in Alertmanager this many repeat intervals. */
#define SP_ALERT_AM_KEEP 4

/* Alertmanager's endsAt of a (docs/ALERTS.md "endsAt"):
 *  - FIRING: max(emitted_at, window_end) + SP_ALERT_AM_KEEP x max(repeat
 *    interval, window size). Wall time, not event time: Alertmanager
 *    compares endsAt with its own clock, so a replay of old traffic must not
 *    send alerts that are over on arrival. Each repeat (repeat_every of event
 *    time later, one window at least) pushes it on; if the repeats stop (the
 *    pipeline is dead or stuck), Alertmanager resolves the alert by itself
 *    at endsAt: the alert expires, it does not stay firing for ever.
 *  - RESOLVED: the resolution, min(window_end of the resolving window,
 *    emitted_at): event time as startsAt is, never in the future.
 * repeat_every_ms 0 (not known): the window size alone. */
int64_t sp_alert_ends_at(const sp_alert_t *a);

/* Parse "avro" | "json" | "alertmanager"; -1 if unknown. */
int sp_alert_format_parse(const char *s);

/* Encode a into a malloc'ed buffer (*out, *len; the caller frees). Avro:
 * Confluent framing with schema_id, the writer schema schemas/alert.avsc
 * read from schema_path once per process. generator_url: Alertmanager's
 * generatorURL (may be NULL or ""). Returns 0, or -1 with a reason. */
int sp_alert_encode(const sp_alert_t *a, sp_alert_format_t fmt, int32_t schema_id,
                    const char *schema_path, const char *generator_url, char **out, size_t *len,
                    char *errstr, size_t errstr_size);

/* Decode any of the three formats (told apart by the first byte: 0 =
 * Confluent framing, '{' JSON, '[' Alertmanager). Avro: the body is
 * checked against the schema before it is read, trailing bytes refused; the
 * frame's schema id is not checked. Alertmanager: best effort, the record
 * rebuilt from labels and annotations (the state from annotations.state,
 * else from the alert_id, else RESOLVED iff endsAt is set and not in the
 * future).
 * Returns 0, or -1 with a reason (*a zeroed). */
int sp_alert_decode(const void *buf, size_t len, const char *schema_path, sp_alert_t *a,
                    sp_alert_format_t *fmt, char *errstr, size_t errstr_size);

/* One human line: "2026-11-23T10:05:00Z FIRING critical conversion_drop
 * channel=web funnel.conversion_rate=0.011 (threshold 0.015, n=1200) --
 * <summary>". The time is window_end_ms (the event time of the transition,
 * the same for a re-sent message), UTC; "none" for a null value; the
 * threshold part only when there is one. Truncated to size, always
 * NUL-terminated, never a newline. */
void sp_alert_line(const sp_alert_t *a, char *buf, size_t size);

/* `storepulse alerts [-c FILE] [--bootstrap-file F] [--from-beginning]
 * [--json] [--count N] [--timeout D]`: tails the alert topic, one line per
 * alert (or one JSON object per line with --json). */
int sp_alerts_main(int argc, char **argv);

#endif
