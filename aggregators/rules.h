/* rules.h -- alert rules (SPEC §5, docs/ALERTS.md): their configuration and
 * their evaluation on closed windows.
 *
 * What it owns: the `alerts:` section of the config file (read here, with
 * file:line, rule and key in every error), the lifecycle of each alert
 * (inactive -> pending -> FIRING -> RESOLVED, per rule and dimension value),
 * the baseline history of drop_vs_baseline rules, no-data (absent_for)
 * rules, and "where it hurts" (the dimension values that explain a change).
 *
 * What it does not own: the names of the metrics (the families declare
 * them, family.h; rules only check against them), reading windows from
 * Redis, storing the alert state, the outbox and the producer
 * (producers/alerter.c does those; the state of one alert is a short
 * string, sp_rules_state_encode/decode), nor
 * the wire formats (producers/alert.h). The transitions and the alert_id
 * are a pure function of the rule, the alert's state and the closed window
 * (the wall clock only stamps the message's emitted time): replaying a
 * window gives the same transitions and the same alert_id. */
#ifndef SP_RULES_H
#define SP_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"
#include "producers/alert.h"

#define SP_RULES_MAX     64
#define SP_RULE_BY_MAX   3
#define SP_RULE_BASE_MAX 64 /* baseline windows at most */

typedef enum { SP_RULE_ABOVE = 0, SP_RULE_BELOW, SP_RULE_DROP, SP_RULE_ABSENT } sp_rule_kind_t;

/* What the rule's field is, from the families' catalogue (family.h). */
typedef enum {
    SP_RULE_M_COUNTER = 0, /* a counter, a gauge, a histogram's _count or _sum_ms: absent = 0 */
    SP_RULE_M_RATIO,       /* absent = no data */
    SP_RULE_M_PERCENTILE,  /* <histogram>_p50/_p90/_p99, overall only */
    SP_RULE_M_MEAN         /* <histogram>_mean = _sum_ms / _count / unit */
} sp_rule_metric_t;

/* min_samples of a ratio rule that sets none (docs/ALERTS.md): a rate of
 * fewer samples decides nothing. */
#define SP_RULE_RATIO_MIN_SAMPLES 100

typedef struct sp_rule {
    char name[64];
    int line;         /* in the config file */
    char family[24];  /* "funnel" */
    char field[64];   /* "conversion_rate" */
    char metric[96];  /* "funnel.conversion_rate" */
    sp_rule_metric_t mkind;
    char sample[128]; /* the sample size field(s) ("a+b": a sum); "" = the value */
    char window[16];  /* "5m" */
    int64_t window_ms;
    sp_rule_kind_t kind;
    double threshold;     /* above / below; drop_vs_baseline fraction */
    double resolve;       /* the value that resolves (hysteresis) */
    int64_t min_samples;  /* sample size below this: no decision */
    int for_windows;      /* consecutive bad windows before FIRING (>= 1) */
    int baseline;         /* drop_vs_baseline: previous windows averaged */
    int64_t absent_for_ms;
    int64_t repeat_every_ms; /* 0: never repeat */
    int nby;
    char by[SP_RULE_BY_MAX][32]; /* dimension names */
    char severity[16];
    char summary[256]; /* template; "" = the default sentence */
    int nlabels;
    sp_alert_label_t labels[SP_ALERT_LABEL_MAX];
} sp_rule_t;

typedef struct sp_rules {
    int n;
    sp_rule_t r[SP_RULES_MAX];
} sp_rules_t;

/* Read the `alerts:` sequence of cfg->source (no file: no rules). Window
 * sizes must be among windows.sizes; the metric must be one the families
 * write (their catalogue) and `by` one of its dimensions. Errors:
 * "FILE:LINE: rule 'NAME': key 'KEY': reason", with the closest valid name
 * when there is one. */
int sp_rules_load(const sp_config_t *cfg, sp_rules_t *out, char *errstr, size_t errstr_size);

/* The metric catalogue (every name a rule may use, its kind, its sample
 * and its dimensions under cfg) as a markdown table: `check-config
 * --metrics`, and docs/ALERTS.md with the default config. */
void sp_rules_print_metrics(const sp_config_t *cfg, FILE *out);

/* The state of one alert (a rule and, with `by`, one dimension value). */
typedef enum { SP_PHASE_INACTIVE = 0, SP_PHASE_PENDING, SP_PHASE_FIRING } sp_phase_t;

typedef struct sp_rule_state {
    sp_phase_t phase;
    int count;              /* consecutive bad windows (pending) */
    int64_t last_window;    /* start of the last window evaluated; -1 none */
    int64_t started_at_ms;  /* FIRING since (window end) */
    int64_t fired_window;   /* start of the window that fired */
    int64_t last_emit_ms;   /* window end of the last message */
    int64_t absent_ms;      /* no-data time so far */
    int nbase;              /* baseline ring: values of previous windows */
    int base_next;
    double base[SP_RULE_BASE_MAX];
} sp_rule_state_t;

void sp_rule_state_init(sp_rule_state_t *s);
/* Compact text form, for a Redis hash field. Returns the length written
 * (< size), or 0 if it does not fit. */
size_t sp_rules_state_encode(const sp_rule_state_t *s, char *buf, size_t size);
int sp_rules_state_decode(const char *buf, size_t len, sp_rule_state_t *s);

/* A closed window as read from Redis: its hash fields. */
typedef struct sp_window_view {
    int64_t start_ms, end_ms;
    int n;
    const char *const *fields; /* "sessions", "conversion_rate|channel=web" ... */
    const char *const *values;
} sp_window_view_t;

/* The keys one rule evaluates in a window: "" (overall) or one per
 * dimension value of `by` found in the window ("channel=web"). Writes at
 * most max keys into keys[][160]; returns the count. */
int sp_rule_keys(const sp_rule_t *r, const sp_window_view_t *w, char (*keys)[160], int max);

/* Evaluate one rule for one key on a closed window; st is updated. Windows
 * at or before st->last_window are ignored (replays). Returns 1 and fills
 * *out when a message is due (FIRING, a repeat, or RESOLVED), else 0.
 * now_ms: the message's emitted_at. */
int sp_rule_eval(const sp_rule_t *r, const char *key, const sp_window_view_t *w,
                 sp_rule_state_t *st, int64_t now_ms, sp_alert_t *out);

/* 1 if a and b are the same rule (every setting; the line in the file
 * aside). */
int sp_rule_same(const sp_rule_t *a, const sp_rule_t *b);

/* The rule was removed from the configuration or changed: 1 and *out the
 * RESOLVED message that ends its alert st (key), if FIRING; else 0. The
 * message's window is the last one evaluated (ending at window_end_ms). */
int sp_rule_retire(const sp_rule_t *r, const char *key, const sp_rule_state_t *st,
                   int64_t window_end_ms, int64_t now_ms, sp_alert_t *out);

/* The fingerprint of a rule and key: 16 hex digits. */
void sp_rule_fingerprint(const sp_rule_t *r, const char *key, char out[32]);

#endif
