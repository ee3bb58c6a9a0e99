/* test_rules.c -- alert rules: loading from the config file (every error
 * names file:line, the rule and the key), and evaluation on scripted closed
 * windows (manual clock: window starts and ends are given): thresholds with
 * hysteresis and `for`, min_samples, drop_vs_baseline, absent_for, per
 * dimension value (`by`), repeat_every, a restart in the middle of a firing
 * alert (state round trip: nothing re-fires), and the contributors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregators/rules.h"
#include "core/err.h"

#define MIN 60000LL
#define T0  1793527200000LL

static char path[64];

static int load(const char *yaml, sp_rules_t *rules, char *err, size_t errsz) {
    static sp_config_t cfg;
    snprintf(path, sizeof(path), "/tmp/sp-rules-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(yaml, f);
    fclose(f);
    sp_config_defaults(&cfg);
    int rc = sp_config_load(&cfg, path, err, errsz);
    if (rc == SP_OK) rc = sp_rules_load(&cfg, rules, err, errsz);
    unlink(path);
    return rc;
}

static const char *GOOD = "windows:\n"
                          "  sizes: [1m, 5m, 1h]\n"
                          "alerts:\n"
                          "  - name: conversion_drop\n"
                          "    metric: funnel.conversion_rate\n"
                          "    window: 5m\n"
                          "    below: 0.015\n"
                          "    resolve_above: 0.02\n"
                          "    min_samples: 200\n"
                          "    for: 2\n"
                          "    by: [channel]\n"
                          "    severity: critical\n"
                          "    labels: {team: growth}\n"
                          "  - name: checkout_collapse\n"
                          "    metric: funnel.checkout_to_order_rate\n"
                          "    window: 1m\n"
                          "    drop_vs_baseline: 0.5\n"
                          "    baseline: 3\n"
                          "    min_samples: 0\n" /* windows of 10 checkouts below */
                          "  - name: no_orders\n"
                          "    metric: funnel.orders\n"
                          "    absent_for: 15m\n"
                          "    window: 5m\n"
                          "  - name: late_parcels\n"
                          "    metric: delivery.delay_minutes_p90\n"
                          "    window: 1h\n"
                          "    above: 120\n"
                          "    repeat_every: 2h\n";

static void test_load(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512];
    assert_int_equal(load(GOOD, &rules, err, sizeof(err)), SP_OK);
    assert_int_equal(rules.n, 4);
    const sp_rule_t *r = &rules.r[0];
    assert_string_equal(r->name, "conversion_drop");
    assert_string_equal(r->family, "funnel");
    assert_string_equal(r->field, "conversion_rate");
    assert_int_equal(r->window_ms, 5 * MIN);
    assert_string_equal(r->window, "5m");
    assert_int_equal(r->kind, SP_RULE_BELOW);
    assert_true(r->threshold == 0.015 && r->resolve == 0.02);
    assert_int_equal(r->min_samples, 200);
    assert_int_equal(r->for_windows, 2);
    assert_int_equal(r->nby, 1);
    assert_string_equal(r->by[0], "channel");
    assert_string_equal(r->severity, "critical");
    assert_int_equal(r->nlabels, 1);
    assert_string_equal(r->labels[0].key, "team");
    assert_int_equal(r->line, 4);
    assert_int_equal(rules.r[1].kind, SP_RULE_DROP);
    assert_int_equal(rules.r[1].baseline, 3);
    assert_int_equal(rules.r[2].kind, SP_RULE_ABSENT);
    assert_int_equal(rules.r[2].absent_for_ms, 15 * MIN);
    assert_int_equal(rules.r[3].repeat_every_ms, 120 * MIN);
    assert_int_equal(rules.r[0].repeat_every_ms, 60 * MIN); /* the default */
    assert_true(rules.r[3].resolve == 120);                 /* defaults to the threshold */

    /* no alerts section: no rules */
    assert_int_equal(load("windows:\n  sizes: [1m]\n", &rules, err, sizeof(err)), SP_OK);
    assert_int_equal(rules.n, 0);
}

static void expect_error(const char *rules_yaml, const char *want) {
    static sp_rules_t rules;
    char yaml[2048], err[512];
    snprintf(yaml, sizeof(yaml), "windows:\n  sizes: [1m, 5m]\nalerts:\n%s", rules_yaml);
    assert_int_equal(load(yaml, &rules, err, sizeof(err)), SP_ERR_CONFIG);
    assert_int_equal(rules.n, 0);
    /* "<file>:<line>: rule '...': key '...': reason" */
    const char *tail = strstr(err, ": ");
    if (!tail || strncmp(err, path, strlen(path)) != 0 || !strstr(err, want))
        fail_msg("error '%s' does not carry '%s' after the file name", err, want);
}

static void test_load_errors(void **state) {
    (void)state;
    expect_error("  - name: a\n    metric: funnel.conversion_rate\n    below: x\n",
                 ":6: rule 'a': key 'below': expected a number, got 'x'");
    expect_error("  - name: a\n    metric: shop.sales\n    above: 1\n",
                 ":5: rule 'a': key 'metric': unknown family 'shop'");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n    window: 1h\n",
                 ":7: rule 'a': key 'window': '1h' is not one of windows.sizes");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n    below: 0\n",
                 ":4: rule 'a': exactly one of above, below, drop_vs_baseline, absent_for");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n    colour: red\n",
                 ":7: rule 'a': key 'colour': unknown key");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n    by: [planet]\n",
                 ":7: rule 'a': key 'by': unknown dimension 'planet'");
    expect_error("  - metric: funnel.orders\n    above: 1\n", "key 'name': missing");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n"
                 "  - name: a\n    metric: funnel.orders\n    above: 2\n",
                 ":7: rule 'a': key 'name': a second rule of that name (first at line 4)");
    expect_error("  - name: a\n    metric: funnel.conversion_rate\n    below: 0.1\n"
                 "    resolve_above: 0.05\n",
                 "rule 'a': key 'resolve_above': must not be below 'below'");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n    for: 0\n",
                 ":7: rule 'a': key 'for': expected an integer 1..1000, got '0'");
    expect_error("  - name: a\n    metric: funnel.conversion_rate\n    drop_vs_baseline: 2\n",
                 "key 'drop_vs_baseline': expected a fraction");
    expect_error("  - name: a\n    metric: funnel.orders\n    above: 1\n    baseline: 3\n",
                 "key 'baseline': only with drop_vs_baseline");
    expect_error("  name: a\n", "key 'alerts': expected a list of rules");
}

/* repeat_every: 0 is refused with the Alertmanager format (the alert would
 * expire there at its endsAt while it still fires), accepted otherwise. */
static void test_alertmanager_needs_repeats(void **state) {
    static sp_rules_t rules;
    char err[512];
    (void)state;
    static const char *rule = "alerts:\n  - name: a\n    metric: funnel.orders\n    above: 1\n"
                              "    repeat_every: 0s\n";
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), "alerting:\n  format: alertmanager\n%s", rule);
    assert_int_equal(load(yaml, &rules, err, sizeof(err)), SP_ERR_CONFIG);
    if (!strstr(err, "rule 'a': key 'repeat_every': 0 (never repeat) with alerting.format "
                     "alertmanager"))
        fail_msg("error '%s'", err);
    snprintf(yaml, sizeof(yaml), "alerting:\n  format: json\n%s", rule);
    assert_int_equal(load(yaml, &rules, err, sizeof(err)), SP_OK);
    assert_int_equal(rules.r[0].repeat_every_ms, 0);
}

/* ---- evaluation helpers ---------------------------------------------------- */

typedef struct win {
    sp_window_view_t v;
    const char *f[32], *val[32];
    char buf[32][64];
} win_t;

/* A window of size `size` starting at T0 + k x size with "field=value" pairs. */
static sp_window_view_t *mkwin(win_t *w, int64_t size, int k, const char *pairs) {
    char tmp[1024];
    memset(w, 0, sizeof(*w));
    w->v.start_ms = T0 + k * size;
    w->v.end_ms = w->v.start_ms + size;
    snprintf(tmp, sizeof(tmp), "%s", pairs);
    int n = 0;
    for (char *tok = strtok(tmp, " "); tok && n < 16; tok = strtok(NULL, " ")) {
        char *eq = strrchr(tok, '=');
        *eq = '\0';
        snprintf(w->buf[2 * n], 64, "%s", tok);
        snprintf(w->buf[2 * n + 1], 64, "%s", eq + 1);
        w->f[n] = w->buf[2 * n];
        w->val[n] = w->buf[2 * n + 1];
        n++;
    }
    w->v.n = n;
    w->v.fields = w->f;
    w->v.values = w->val;
    return &w->v;
}

/* Names are checked against the families' catalogue (family.h): an unknown
 * metric used to read as an always-0 counter, so a `below` rule fired on
 * every window. */
static void test_catalogue_errors(void **state) {
    (void)state;
    expect_error("  - name: a\n    metric: funnel.conversion_rte\n    below: 0.01\n",
                 ":5: rule 'a': key 'metric': funnel.conversion_rte: no such metric in family "
                 "funnel; did you mean funnel.conversion_rate?");
    expect_error("  - name: a\n    metric: gauges.overdue_in_fligth\n    above: 10\n",
                 ":5: rule 'a': key 'metric': gauges.overdue_in_fligth: no such metric in family "
                 "gauges; did you mean gauges.overdue_in_flight?");
    /* another family's metric */
    expect_error("  - name: a\n    metric: delivery.conversion_rate\n    below: 0.01\n",
                 ":5: rule 'a': key 'metric': delivery.conversion_rate: no such metric in family "
                 "delivery; did you mean funnel.conversion_rate?");
    /* misspelt and in another family */
    expect_error("  - name: a\n    metric: support.delivery_dealy_rate\n    above: 0.1\n",
                 "no such metric in family support; did you mean delivery.delivery_delay_rate?");
    expect_error("  - name: a\n    metric: funel.orders\n    above: 1\n",
                 ":5: rule 'a': key 'metric': unknown family 'funel' (funnel, abandonment, "
                 "delivery, retention, support, gauges); did you mean funnel.orders?");
    expect_error("  - name: a\n    metric: suport.conversion_rate\n    below: 1\n",
                 ":5: rule 'a': key 'metric': unknown family 'suport' (funnel, abandonment, "
                 "delivery, retention, support, gauges); did you mean support?");
    expect_error("  - name: a\n    metric: funnel.xyzzy_total\n    above: 1\n",
                 "funnel.xyzzy_total: no such metric in family funnel (storepulse check-config "
                 "--metrics lists them)");
    /* a histogram's fields: _p50/_p90/_p99/_mean/_count/_sum, nothing else */
    expect_error("  - name: a\n    metric: delivery.delay_minutes_p95\n    above: 1\n",
                 "no such metric in family delivery; did you mean delivery.delay_minutes_p90?");
    expect_error("  - name: a\n    metric: delivery.delay_minutes\n    above: 1\n",
                 "no such metric in family delivery");
    /* the store's own field is no metric */
    expect_error("  - name: a\n    metric: funnel.closed\n    above: 0\n",
                 "no such metric in family funnel");
    /* a field per value is chosen with `by` */
    expect_error("  - name: a\n    metric: gauges.in_flight|kind=cart\n    above: 1\n",
                 ":5: rule 'a': key 'metric': 'gauges.in_flight|kind=cart': a field per dimension "
                 "value is not a metric; use metric: gauges.in_flight with by: [kind]");
    expect_error("  - name: a\n    metric: gauges.in_flight\n    above: 1\n",
                 ":5: rule 'a': key 'metric': gauges.in_flight is kept per kind only (no overall "
                 "field): add by: [kind]");
    /* `by`: one of the metric's dimensions */
    expect_error("  - name: a\n    metric: funnel.conversion_rate\n    below: 0.01\n"
                 "    by: [carrier]\n",
                 ":7: rule 'a': key 'by': unknown dimension 'carrier' for funnel.conversion_rate: "
                 "its dimensions are channel, device, country (metrics.funnel.dimensions); "
                 "carrier is a dimension of delivery");
    expect_error(
        "  - name: a\n    metric: funnel.orders\n    above: 1\n    by: [channel, curency]\n",
        ":7: rule 'a': key 'by': unknown dimension 'curency' for funnel.orders: its "
        "dimensions are channel, device, country (metrics.funnel.dimensions) and "
        "currency; did you mean currency?");
    expect_error("  - name: a\n    metric: funnel.sessions\n    above: 1\n    by: [currency]\n",
                 "unknown dimension 'currency' for funnel.sessions");
    expect_error("  - name: a\n    metric: abandonment.carts\n    above: 1\n    by: [country]\n",
                 ":7: rule 'a': key 'by': unknown dimension 'country' for abandonment.carts: its "
                 "dimensions are channel, device (metrics.abandonment.dimensions)");
    expect_error(
        "  - name: a\n    metric: gauges.overdue_in_flight\n    above: 1\n    by: [carrier]\n",
        ":7: rule 'a': key 'by': unknown dimension 'carrier': gauges.overdue_in_flight is "
        "kept overall only");
    expect_error("  - name: a\n    metric: gauges.in_flight\n    above: 1\n    by: [knd]\n",
                 ":7: rule 'a': key 'by': unknown dimension 'knd' for gauges.in_flight: its "
                 "dimensions are kind; did you mean kind?");
    expect_error(
        "  - name: a\n    metric: support.frt_seconds_p90\n    above: 1\n    by: [channel]\n",
        ":7: rule 'a': key 'by': percentiles are kept overall only; per value use "
        "<histogram>_mean");
}

/* What the catalogue allows loads; `by` follows the configured dimensions. */
static void test_catalogue_valid(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512];
    const char *ok =
        "metrics:\n"
        "  abandonment: {dimensions: [channel, country]}\n"
        "alerts:\n"
        "  - {name: a, metric: abandonment.carts, above: 1, by: [country]}\n"
        "  - {name: b, metric: gauges.in_flight, above: 100, by: [kind]}\n"
        "  - {name: c, metric: funnel.orders, above: 1, by: [currency, channel]}\n"
        "  - {name: d, metric: delivery.delay_minutes_mean, above: 60, by: [carrier]}\n"
        "  - {name: e, metric: gauges.in_flight_entities, above: 1000000}\n"
        "  - {name: f, metric: support.resolution_seconds_count, above: 1}\n"
        "  - {name: g, metric: gauges.watermark_ms, absent_for: 5m}\n";
    if (load(ok, &rules, err, sizeof(err)) != SP_OK) fail_msg("%s", err);
    assert_int_equal(rules.n, 7);
    assert_int_equal(rules.r[3].mkind, SP_RULE_M_MEAN);
    assert_string_equal(rules.r[3].sample, "delay_minutes_count");
    assert_int_equal(rules.r[5].mkind, SP_RULE_M_COUNTER);
    /* the family's dimensions come from the config: device is not one now */
    const char *bad =
        "metrics:\n"
        "  abandonment: {dimensions: [channel, country]}\n"
        "alerts:\n"
        "  - {name: a, metric: abandonment.cart_abandonment_rate, above: 1, by: [device]}\n";
    assert_int_equal(load(bad, &rules, err, sizeof(err)), SP_ERR_CONFIG);
    if (!strstr(err, ":4: rule 'a': key 'by': unknown dimension 'device' for "
                     "abandonment.cart_abandonment_rate: its dimensions are channel, country "
                     "(metrics.abandonment.dimensions); device is a dimension of funnel"))
        fail_msg("%s", err);
}

/* A ratio rule without min_samples decides nothing below 100 samples;
 * explicit values and other kinds keep theirs. */
static void test_default_min_samples(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512];
    const char *yaml = "alerts:\n"
                       "  - {name: conv, metric: funnel.conversion_rate, below: 0.015}\n"
                       "  - {name: conv5, metric: funnel.conversion_rate, below: 0.015, "
                       "min_samples: 5}\n"
                       "  - {name: conv0, metric: funnel.conversion_rate, below: 0.015, "
                       "min_samples: 0}\n"
                       "  - {name: aband, metric: abandonment.cart_abandonment_rate, above: 0.9}\n"
                       "  - {name: drop, metric: funnel.checkout_to_order_rate, "
                       "drop_vs_baseline: 0.5}\n"
                       "  - {name: fails, metric: funnel.payments_failed, above: 3}\n"
                       "  - {name: p90, metric: delivery.delay_minutes_p90, above: 3}\n"
                       "  - {name: over, metric: gauges.overdue_in_flight, above: 3}\n";
    if (load(yaml, &rules, err, sizeof(err)) != SP_OK) fail_msg("%s", err);
    assert_int_equal(rules.n, 8);
    assert_int_equal(rules.r[0].min_samples, SP_RULE_RATIO_MIN_SAMPLES);
    assert_int_equal(SP_RULE_RATIO_MIN_SAMPLES, 100); /* docs/ALERTS.md says 100 */
    assert_int_equal(rules.r[1].min_samples, 5);
    assert_int_equal(rules.r[2].min_samples, 0);
    assert_int_equal(rules.r[3].min_samples, 100);
    assert_string_equal(rules.r[3].sample, "carts_abandoned+carts_converted");
    assert_int_equal(rules.r[4].min_samples, 100);
    assert_int_equal(rules.r[5].min_samples, 0);
    assert_int_equal(rules.r[6].min_samples, 0);
    assert_int_equal(rules.r[7].min_samples, 0);

    /* 3 sessions, none converted: no decision; 99 neither; 100 fires */
    const sp_rule_t *r = &rules.r[0];
    sp_rule_state_t st;
    sp_alert_t a;
    win_t w;
    sp_rule_state_init(&st);
    assert_int_equal(
        sp_rule_eval(r, "", mkwin(&w, MIN, 0, "sessions=3 conversion_rate=0"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_INACTIVE);
    assert_int_equal(
        sp_rule_eval(r, "", mkwin(&w, MIN, 1, "sessions=99 conversion_rate=0"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_INACTIVE);
    assert_int_equal(
        sp_rule_eval(r, "", mkwin(&w, MIN, 2, "sessions=100 conversion_rate=0.01"), &st, 1, &a), 1);
    assert_int_equal(a.sample_size, 100);
    /* the abandonment rate's sample is abandoned + converted */
    r = &rules.r[3];
    sp_rule_state_init(&st);
    assert_int_equal(sp_rule_eval(r, "",
                                  mkwin(&w, MIN, 0,
                                        "carts_abandoned=60 carts_converted=39 "
                                        "cart_abandonment_rate=0.95"),
                                  &st, 1, &a),
                     0);
    assert_int_equal(sp_rule_eval(r, "",
                                  mkwin(&w, MIN, 1,
                                        "carts_abandoned=95 carts_converted=5 "
                                        "cart_abandonment_rate=0.95"),
                                  &st, 1, &a),
                     1);
}

static char *slurp(FILE *fp) {
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((k = fread(buf + n, 1, cap - n - 1, fp)) > 0) {
        n += k;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[n] = '\0';
    return buf;
}

/* docs/ALERTS.md lists the catalogue as `check-config --metrics` prints it
 * with the default config. */
static void test_metrics_doc(void **state) {
    (void)state;
    static sp_config_t cfg;
    const char *begin = "<!-- metrics: generated by `storepulse check-config --metrics`; do not "
                        "edit by hand -->\n",
               *end = "<!-- end of metrics -->\n";
    FILE *fp = tmpfile(), *doc;
    assert_non_null(fp);
    sp_config_defaults(&cfg);
    sp_rules_print_metrics(&cfg, fp);
    rewind(fp);
    char *gen = slurp(fp);
    fclose(fp);
    assert_non_null(strstr(gen, "| funnel | `funnel.conversion_rate` | ratio | `sessions` | "
                                "channel, device, country |\n"));
    assert_non_null(strstr(gen, "| abandonment | `abandonment.cart_abandonment_rate` | ratio | "
                                "`carts_abandoned` + `carts_converted` | channel, device |\n"));
    assert_non_null(strstr(gen, "| delivery | `delivery.delay_minutes_p90` | percentile | "
                                "`delay_minutes_count` | (overall only) |\n"));
    assert_non_null(strstr(gen, "| gauges | `gauges.overdue_in_flight` | gauge | itself | "
                                "(overall only) |\n"));
    assert_non_null(strstr(gen, "| gauges | `gauges.in_flight` | gauge | itself | kind (per value "
                                "only) |\n"));
    if (!(doc = fopen("docs/ALERTS.md", "r"))) {
        free(gen);
        skip();
    }
    char *text = slurp(doc);
    fclose(doc);
    char *a = strstr(text, begin), *b = a ? strstr(a, end) : NULL;
    if (!a || !b) fail_msg("docs/ALERTS.md: no generated metrics section");
    a += strlen(begin);
    *b = '\0';
    if (strcmp(a, gen) != 0)
        fail_msg("docs/ALERTS.md's metrics differ from `storepulse check-config --metrics`: "
                 "regenerate the section");
    free(text);
    free(gen);
}

/* ---- evaluation ------------------------------------------------------------ */

static void test_threshold_for_hysteresis(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512];
    assert_int_equal(load(GOOD, &rules, err, sizeof(err)), SP_OK);
    sp_rule_t r = rules.r[0];
    r.nby = 0; /* overall */
    sp_rule_state_t st;
    sp_rule_state_init(&st);
    sp_alert_t a;
    win_t w;
    const int64_t S5 = 5 * MIN;
    /* 0: fine; 1: bad but 100 sessions (< min_samples): no decision; 2: bad
     * (pending 1); 3: no data; 4: bad -> FIRING; 5: 0.017 (between the
     * thresholds): holds; 6: 0.02 -> RESOLVED; 7: bad -> pending again */
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 0, "sessions=1000 conversion_rate=0.03"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 1, "sessions=100 conversion_rate=0.001"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_INACTIVE);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 2, "sessions=900 conversion_rate=0.01"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_PENDING);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 3, "sessions=0"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_PENDING);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 4, "sessions=800 conversion_rate=0.011"), &st, 77, &a), 1);
    assert_int_equal(a.state, SP_ALERT_FIRING);
    assert_string_equal(a.rule, "conversion_drop");
    assert_string_equal(a.metric, "funnel.conversion_rate");
    assert_string_equal(a.dimension, "");
    assert_true(a.has_value && a.value == 0.011 && a.has_threshold && a.threshold == 0.015);
    assert_int_equal(a.sample_size, 800);
    assert_int_equal(a.window_start_ms, T0 + 4 * S5);
    assert_int_equal(a.window_end_ms, T0 + 5 * S5);
    assert_int_equal(a.started_at_ms, T0 + 5 * S5);
    assert_int_equal(a.emitted_at_ms, 77);
    assert_string_equal(a.severity, "critical");
    char fp[32], id[96];
    sp_rule_fingerprint(&r, "", fp);
    assert_string_equal(a.fingerprint, fp);
    snprintf(id, sizeof(id), "%s:FIRING:%lld", fp, (long long)(T0 + 4 * S5));
    assert_string_equal(a.alert_id, id);
    assert_string_equal(a.summary, "funnel.conversion_rate 0.011 below 0.015");
    /* the same window again (a replay): nothing */
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 4, "sessions=800 conversion_rate=0.011"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 5, "sessions=800 conversion_rate=0.017"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_FIRING);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 6, "sessions=800 conversion_rate=0.02"), &st, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
    snprintf(id, sizeof(id), "%s:RESOLVED:%lld", fp, (long long)(T0 + 6 * S5));
    assert_string_equal(a.alert_id, id);
    assert_int_equal(a.started_at_ms, T0 + 5 * S5);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 7, "sessions=800 conversion_rate=0.001"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_PENDING);
}

static void test_repeat_and_restart(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512], enc[2048];
    assert_int_equal(load(GOOD, &rules, err, sizeof(err)), SP_OK);
    const sp_rule_t *r = &rules.r[3]; /* delay p90 above 120 in 1h, repeat 2h */
    const int64_t H = 60 * MIN;
    sp_rule_state_t st, st2;
    sp_rule_state_init(&st);
    sp_alert_t a;
    win_t w;
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, H, 0, "delay_minutes_count=50 delay_minutes_p90=150"), &st, 1, &a), 1);
    assert_int_equal(a.sample_size, 50);
    char first_id[96];
    snprintf(first_id, sizeof(first_id), "%s", a.alert_id);
    /* restart: the state goes through its text form */
    size_t n = sp_rules_state_encode(&st, enc, sizeof(enc));
    assert_true(n > 0);
    assert_int_equal(sp_rules_state_decode(enc, n, &st2), 0);
    assert_memory_equal(&st, &st2, sizeof(st));
    assert_int_equal(sp_rules_state_decode("A1 9 0", 6, &st2), -1);
    assert_int_equal(sp_rules_state_decode("garbage", 7, &st2), -1);
    /* still firing one hour later: no repeat before 2 h; at 2 h the same alert */
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, H, 1, "delay_minutes_count=50 delay_minutes_p90=150"), &st2, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, H, 2, "delay_minutes_count=50 delay_minutes_p90=150"), &st2, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_FIRING);
    assert_string_equal(a.alert_id, first_id);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, H, 3, "delay_minutes_count=50 delay_minutes_p90=150"), &st2, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, H, 4, "delay_minutes_count=50 delay_minutes_p90=100"), &st2, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
}

/* A firing alert through a quiet night: windows below min_samples or
 * without data decide nothing, yet the repeat is sent when repeat_every is
 * due (else Alertmanager lets the alert go at its endsAt and the next
 * repeat pages again); nothing else moves, and a good window resolves. */
static void test_repeat_without_decision(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512], fp[32], id[96];
    assert_int_equal(load(GOOD, &rules, err, sizeof(err)), SP_OK);
    sp_rule_t r = rules.r[0]; /* conversion below 0.015, min_samples 200, 5m */
    r.nby = 0;
    r.for_windows = 1;
    assert_int_equal(r.repeat_every_ms, 60 * MIN); /* the default */
    const int64_t S5 = 5 * MIN;
    sp_rule_state_t st;
    sp_rule_state_init(&st);
    sp_alert_t a;
    win_t w;
    assert_int_equal(
        sp_rule_eval(&r, "", mkwin(&w, S5, 0, "sessions=800 conversion_rate=0.01"), &st, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_FIRING);
    sp_rule_fingerprint(&r, "", fp);
    snprintf(id, sizeof(id), "%s:FIRING:%lld", fp, (long long)T0);
    assert_string_equal(a.alert_id, id);
    /* windows 1..11 end less than 1 h after the FIRING: nothing; a good
     * value in a small sample resolves nothing either */
    for (int k = 1; k < 12; k++) {
        const char *quiet = k % 3 == 0   ? "sessions=0"
                            : k % 3 == 1 ? "sessions=40 conversion_rate=0.001"
                                         : "sessions=40 conversion_rate=0.05";
        assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, k, quiet), &st, 1, &a), 0);
        assert_int_equal(st.phase, SP_PHASE_FIRING);
    }
    /* window 12 ends 1 h after the FIRING: the repeat, same alert_id */
    assert_int_equal(
        sp_rule_eval(&r, "", mkwin(&w, S5, 12, "sessions=40 conversion_rate=0.001"), &st, 99, &a),
        1);
    assert_int_equal(a.state, SP_ALERT_FIRING);
    assert_string_equal(a.alert_id, id);
    assert_false(a.has_value);
    assert_true(a.has_threshold && a.threshold == 0.015);
    assert_int_equal(a.sample_size, 40);
    assert_int_equal(a.window_start_ms, T0 + 12 * S5);
    assert_int_equal(a.started_at_ms, T0 + S5);
    assert_int_equal(a.emitted_at_ms, 99);
    assert_int_equal(a.ncontrib, 0);
    assert_string_equal(a.summary, "funnel.conversion_rate still firing: no decision in the 5m "
                                   "window (sample 40 below min_samples 200)");
    assert_int_equal(st.phase, SP_PHASE_FIRING);
    assert_int_equal(st.started_at_ms, T0 + S5);
    assert_int_equal(st.fired_window, T0);
    assert_int_equal(st.last_emit_ms, T0 + 13 * S5);
    /* the next one an hour later, from windows without any data */
    for (int k = 13; k < 24; k++)
        assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, k, "sessions=0"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, 24, "sessions=0"), &st, 1, &a), 1);
    assert_string_equal(a.alert_id, id);
    assert_false(a.has_value);
    assert_int_equal(a.sample_size, 0);
    assert_string_equal(
        a.summary, "funnel.conversion_rate still firing: no decision in the 5m window (no data)");
    /* the state round trip keeps it; a good window resolves as before */
    char enc[2048];
    sp_rule_state_t st2;
    size_t n = sp_rules_state_encode(&st, enc, sizeof(enc));
    assert_true(n > 0);
    assert_int_equal(sp_rules_state_decode(enc, n, &st2), 0);
    assert_memory_equal(&st, &st2, sizeof(st));
    assert_int_equal(
        sp_rule_eval(&r, "", mkwin(&w, S5, 25, "sessions=800 conversion_rate=0.03"), &st2, 1, &a),
        1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
    assert_true(a.has_value && a.value == 0.03);
    assert_int_equal(st2.phase, SP_PHASE_INACTIVE);
    /* repeat_every 0 (never): no repeat from a quiet window either */
    r.repeat_every_ms = 0;
    sp_rule_state_init(&st);
    assert_int_equal(
        sp_rule_eval(&r, "", mkwin(&w, S5, 0, "sessions=800 conversion_rate=0.01"), &st, 1, &a), 1);
    for (int k = 1; k < 30; k++)
        assert_int_equal(sp_rule_eval(&r, "", mkwin(&w, S5, k, "sessions=0"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_FIRING);
}

/* <duration>_mean across the upgrade that renamed <name>_sum (float, the
 * unit of the name) to <name>_sum_ms: a window open at the upgrade has a
 * _count of old and new events and a _sum_ms of the new ones only. Such a
 * window (it has the old _sum) decides nothing, nor does an overall _count
 * without _sum_ms; per dimension value an absent _sum_ms is a sum of 0. */
static void test_mean_across_upgrade(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512], keys[8][160];
    const char *yaml = "windows:\n"
                       "  sizes: [5m]\n"
                       "alerts:\n"
                       "  - name: slow_first_response\n"
                       "    metric: support.frt_seconds_mean\n"
                       "    window: 5m\n"
                       "    above: 600\n"
                       "    min_samples: 1\n"
                       "  - name: slow_first_response_by_channel\n"
                       "    metric: support.frt_seconds_mean\n"
                       "    window: 5m\n"
                       "    above: 600\n"
                       "    min_samples: 1\n"
                       "    by: [channel]\n";
    assert_int_equal(load(yaml, &rules, err, sizeof(err)), SP_OK);
    const sp_rule_t *r = &rules.r[0];
    const int64_t S5 = 5 * MIN;
    sp_rule_state_t st;
    sp_rule_state_init(&st);
    sp_alert_t a;
    win_t w;
    /* 10 events of 1200 s: FIRING */
    assert_int_equal(
        sp_rule_eval(r, "", mkwin(&w, S5, 0, "frt_seconds_count=10 frt_seconds_sum_ms=12000000"),
                     &st, 1, &a),
        1);
    assert_int_equal(a.state, SP_ALERT_FIRING);
    assert_true(a.has_value && a.value == 1200);
    /* open at the upgrade: 9 events before (10800 s in the old float sum),
     * 1 after (1200 s); _sum_ms / _count would be 120 s and resolve */
    assert_int_equal(
        sp_rule_eval(r, "",
                     mkwin(&w, S5, 1,
                           "frt_seconds_count=10 frt_seconds_sum=10800 frt_seconds_sum_ms=1200000"),
                     &st, 1, &a),
        0);
    assert_int_equal(st.phase, SP_PHASE_FIRING);
    /* every event before the upgrade, nothing since: no _sum_ms at all */
    assert_int_equal(sp_rule_eval(r, "",
                                  mkwin(&w, S5, 2, "frt_seconds_count=10 frt_seconds_sum=12000"),
                                  &st, 1, &a),
                     0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 3, "frt_seconds_count=10"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_FIRING);
    /* written by this version only: decides again */
    assert_int_equal(
        sp_rule_eval(r, "", mkwin(&w, S5, 4, "frt_seconds_count=10 frt_seconds_sum_ms=1200000"),
                     &st, 1, &a),
        1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
    assert_true(a.has_value && a.value == 120);

    /* per channel: an absent _sum_ms|channel=… is 0 ms (a per-dimension
     * counter at 0 is not stored), unless the window has the old _sum */
    r = &rules.r[1];
    const char *mixed = "frt_seconds_count=6 frt_seconds_sum=7200 frt_seconds_sum_ms=1200000 "
                        "frt_seconds_count|channel=web=5 frt_seconds_sum|channel=web=6000 "
                        "frt_seconds_sum_ms|channel=web=1200000 "
                        "frt_seconds_count|channel=chat=1 frt_seconds_sum|channel=chat=1200";
    assert_int_equal(sp_rule_keys(r, mkwin(&w, S5, 0, mixed), keys, 8), 2);
    for (int k = 0; k < 2; k++) {
        sp_rule_state_init(&st);
        assert_int_equal(sp_rule_eval(r, keys[k], mkwin(&w, S5, 0, mixed), &st, 1, &a), 0);
        assert_int_equal(st.phase, SP_PHASE_INACTIVE);
    }
    /* the old overall _sum alone marks the window: the chat value has no
     * _sum|channel=chat of its own (an old sum at 0) */
    const char *old_all =
        "frt_seconds_count=3 frt_seconds_sum=3600 frt_seconds_sum_ms=2400000 "
        "frt_seconds_count|channel=chat=3 frt_seconds_sum_ms|channel=chat=2400000";
    sp_rule_state_init(&st);
    assert_int_equal(sp_rule_eval(r, "channel=chat", mkwin(&w, S5, 0, old_all), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_INACTIVE);
    /* this version only: web at 1000 s fires; chat with 0 ms is decided (0) */
    const char *now = "frt_seconds_count=4 frt_seconds_sum_ms=3000000 "
                      "frt_seconds_count|channel=web=3 frt_seconds_sum_ms|channel=web=3000000 "
                      "frt_seconds_count|channel=chat=1";
    sp_rule_state_init(&st);
    assert_int_equal(sp_rule_eval(r, "channel=web", mkwin(&w, S5, 0, now), &st, 1, &a), 1);
    assert_true(a.has_value && a.value == 1000);
    sp_rule_state_init(&st);
    st.phase = SP_PHASE_FIRING;
    st.last_emit_ms = T0;
    assert_int_equal(sp_rule_eval(r, "channel=chat", mkwin(&w, S5, 0, now), &st, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
    assert_true(a.has_value && a.value == 0);
}

static void test_baseline_and_absent(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512];
    assert_int_equal(load(GOOD, &rules, err, sizeof(err)), SP_OK);
    const sp_rule_t *r = &rules.r[1]; /* checkout_to_order_rate drop 50 % vs 3 windows */
    sp_rule_state_t st;
    sp_rule_state_init(&st);
    sp_alert_t a;
    win_t w;
    const char *good[] = {"checkout_sessions=10 checkout_to_order_rate=0.6",
                          "checkout_sessions=10 checkout_to_order_rate=0.5",
                          "checkout_sessions=10 checkout_to_order_rate=0.7"};
    for (int k = 0; k < 3; k++) /* filling the baseline: no decision */
        assert_int_equal(sp_rule_eval(r, "", mkwin(&w, MIN, k, good[k]), &st, 1, &a), 0);
    /* mean 0.6: bad below 0.3; 0.31 is not */
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, MIN, 3, "checkout_sessions=10 checkout_to_order_rate=0.31"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, MIN, 4, "checkout_sessions=10 checkout_to_order_rate=0.1"), &st, 1, &a), 1);
    /* 0.31 was not bad: it replaced the oldest (0.6); 0.5 x mean(0.31, 0.5, 0.7) */
    assert_true(a.threshold > 0.25166 && a.threshold < 0.25167);
    /* the outage does not enter the baseline: still bad at 0.1 */
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, MIN, 5, "checkout_sessions=10 checkout_to_order_rate=0.1"), &st, 1, &a), 0);
    assert_int_equal(st.phase, SP_PHASE_FIRING);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, MIN, 6, "checkout_sessions=10 checkout_to_order_rate=0.6"), &st, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);

    /* no orders for 15 minutes, 5m windows */
    r = &rules.r[2];
    sp_rule_state_init(&st);
    const int64_t S5 = 5 * MIN;
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 0, "orders=3"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 1, "orders=0"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 2, "sessions=0"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 3, "orders=0"), &st, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_FIRING);
    assert_false(a.has_threshold);
    assert_string_equal(a.summary, "no orders for 15m");
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 4, "orders=0"), &st, 1, &a), 0);
    assert_int_equal(sp_rule_eval(r, "", mkwin(&w, S5, 5, "orders=1"), &st, 1, &a), 1);
    assert_int_equal(a.state, SP_ALERT_RESOLVED);
}

static void test_by_and_contributors(void **state) {
    (void)state;
    static sp_rules_t rules;
    char err[512], keys[8][160];
    assert_int_equal(load(GOOD, &rules, err, sizeof(err)), SP_OK);
    sp_rule_t r = rules.r[0];
    r.for_windows = 1;
    r.min_samples = 0;
    win_t w;
    const char *pairs = "sessions=1000 conversion_rate=0.011 "
                        "sessions|channel=web=500 conversion_rate|channel=web=0.02 "
                        "sessions|channel=app=480 conversion_rate|channel=app=0.002 "
                        "sessions|channel=__other__=20 conversion_rate|channel=__other__=0.01 "
                        "sessions|device=mobile=10 conversion_rate|device=mobile=0 "
                        "sessions|country=DE=1000 conversion_rate|country=DE=0.011";
    sp_window_view_t *v = mkwin(&w, 5 * MIN, 0, pairs);
    int n = sp_rule_keys(&r, v, keys, 8);
    assert_int_equal(n, 3);
    assert_string_equal(keys[0], "channel=web");
    assert_string_equal(keys[1], "channel=app");
    assert_string_equal(keys[2], "channel=__other__");
    char f0[32], f1[32];
    sp_rule_fingerprint(&r, keys[0], f0);
    sp_rule_fingerprint(&r, keys[1], f1);
    assert_string_not_equal(f0, f1);

    sp_rule_state_t st;
    sp_alert_t a;
    sp_rule_state_init(&st);
    assert_int_equal(sp_rule_eval(&r, "channel=web", v, &st, 1, &a), 0);
    sp_rule_state_init(&st);
    assert_int_equal(sp_rule_eval(&r, "channel=app", v, &st, 1, &a), 1);
    assert_string_equal(a.dimension, "channel=app");
    assert_int_equal(a.sample_size, 480);
    assert_int_equal(a.ncontrib, 0); /* per-value alerts name no contributors */

    /* overall: app explains most (48 % x 0.0173, its distance from the rest
     * of the window), then device=mobile, __other__; country=DE holds every
     * session, so it explains nothing and is not named */
    r.nby = 0;
    sp_rule_state_init(&st);
    assert_int_equal(sp_rule_eval(&r, "", v, &st, 1, &a), 1);
    assert_int_equal(a.ncontrib, 3);
    assert_string_equal(a.contrib[0].dimension, "channel=app");
    assert_true(a.contrib[0].share > 0.4799 && a.contrib[0].share < 0.4801);
    assert_true(a.contrib[0].value == 0.002);
    assert_string_equal(a.contrib[1].dimension, "device=mobile");
    assert_string_equal(a.contrib[2].dimension, "channel=__other__");
    assert_string_equal(a.summary,
                        "funnel.conversion_rate 0.011 below 0.015: mostly channel=app (0.002, 48 % "
                        "of sessions), device=mobile (0, 1 % of sessions)");
}

/* The rules shipped in deploy/storepulse.yaml all load (run and
 * check-config refuse a config whose rules do not). */
/* A reload compares rules whole (the line aside), and a FIRING alert of a
 * rule that goes ends with a RESOLVED message for its last window. */
static void test_same_and_retire(void **state) {
    (void)state;
    static sp_rules_t a, b, c;
    char err[512];
    const char *one = "windows:\n  sizes: [1m]\nalerts:\n"
                      "  - {name: r, metric: funnel.payments_failed, above: 2, labels: {t: x}}\n";
    const char *moved = "windows:\n  sizes: [1m]\n\n\nalerts:\n"
                        "  - {name: r, metric: funnel.payments_failed, above: 2, labels: {t: x}}\n";
    const char *label = "windows:\n  sizes: [1m]\nalerts:\n"
                        "  - {name: r, metric: funnel.payments_failed, above: 2, labels: {t: y}}\n";
    assert_int_equal(load(one, &a, err, sizeof(err)), SP_OK);
    assert_int_equal(load(moved, &b, err, sizeof(err)), SP_OK);
    assert_int_equal(load(label, &c, err, sizeof(err)), SP_OK);
    assert_int_not_equal(a.r[0].line, b.r[0].line);
    assert_true(sp_rule_same(&a.r[0], &b.r[0]));  /* only the line moved */
    assert_false(sp_rule_same(&a.r[0], &c.r[0])); /* a label is a setting */
    b.r[0].threshold = 3;
    assert_false(sp_rule_same(&a.r[0], &b.r[0]));

    sp_rule_state_t st;
    sp_alert_t out;
    sp_rule_state_init(&st);
    st.last_window = T0 + 4 * MIN;
    assert_int_equal(sp_rule_retire(&a.r[0], "", &st, T0 + 5 * MIN, 7, &out), 0); /* inactive */
    st.phase = SP_PHASE_FIRING;
    st.fired_window = T0 + 2 * MIN;
    st.started_at_ms = T0 + 3 * MIN;
    assert_int_equal(sp_rule_retire(&a.r[0], "device=mobile", &st, T0 + 5 * MIN, 7, &out), 1);
    assert_int_equal(out.state, SP_ALERT_RESOLVED);
    assert_int_equal(out.window_start_ms, T0 + 4 * MIN);
    assert_int_equal(out.window_end_ms, T0 + 5 * MIN);
    assert_int_equal(out.started_at_ms, T0 + 3 * MIN);
    assert_string_equal(out.dimension, "device=mobile");
    assert_false(out.has_value);
    assert_non_null(strstr(out.summary, "removed or changed"));
    char want[96];
    snprintf(want, sizeof(want), "%s:RESOLVED:%lld", out.fingerprint, T0 + 4 * MIN);
    assert_string_equal(out.alert_id, want);
}

static void test_shipped_rules(void **state) {
    (void)state;
    static sp_config_t cfg;
    static sp_rules_t rules;
    char err[512] = "";
    if (access("deploy/storepulse.yaml", R_OK) != 0) skip();
    sp_config_defaults(&cfg);
    if (sp_config_load(&cfg, "deploy/storepulse.yaml", err, sizeof(err)) != SP_OK ||
        sp_rules_load(&cfg, &rules, err, sizeof(err)) != SP_OK)
        fail_msg("%s", err);
    assert_int_equal(rules.n, 10);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_catalogue_errors),
        cmocka_unit_test(test_catalogue_valid),
        cmocka_unit_test(test_default_min_samples),
        cmocka_unit_test(test_metrics_doc),
        cmocka_unit_test(test_alertmanager_needs_repeats),
        cmocka_unit_test(test_threshold_for_hysteresis),
        cmocka_unit_test(test_repeat_and_restart),
        cmocka_unit_test(test_repeat_without_decision),
        cmocka_unit_test(test_mean_across_upgrade),
        cmocka_unit_test(test_baseline_and_absent),
        cmocka_unit_test(test_by_and_contributors),
        cmocka_unit_test(test_shipped_rules),
        cmocka_unit_test(test_same_and_retire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
