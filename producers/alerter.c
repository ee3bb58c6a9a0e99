/* alerter.c -- see alerter.h. */
#include "producers/alerter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/family.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "producers/alert.h"

#define WINDOWS_PER_TRIP 256 /* windows read per HGETALL round trip */
#define KEYS_MAX         256 /* keys (dimension values) per rule and window */
#define RETRY_MS         5000

/* Pending writes of one commit: fields and values (the newest wins). */
typedef struct wbuf {
    int n, cap;
    char **f, **v;
} wbuf_t;

typedef struct astate {
    char field[64 + 1 + 160]; /* "<rule>|<key>" */
    int rule;
    sp_rule_state_t s;
} astate_t;

typedef struct outbox {
    char alert_id[128]; /* the outbox field: "<alert_id>@<window_start>" (a
                         * repeat has its alert's id, in a later window) */
    char fingerprint[32];
    int64_t window_start; /* of the message (after '@'): the outbox's order */
    char *json; /* the alert as stored */
    int inflight;
    int acked;
    int64_t retry_at; /* monotonic ms */
} outbox_t;

struct sp_alerter {
    const sp_config_t *cfg;
    sp_rules_t rules;
    int fam[SP_RULES_MAX], size_idx[SP_RULES_MAX];
    int64_t through[SP_RULES_MAX]; /* newest window evaluated; -1 none */
    int fresh[SP_RULES_MAX]; /* no window of the rule's size was closed at start */
    rd_kafka_t *rk;
    char state_key[128], outbox_key[128], prefix[96], schema_path[600];
    sp_alert_format_t fmt;

    astate_t *st;
    int nst, capst;
    outbox_t *ob; /* in window order (see ob_pump) */
    int nob, capob;
    const char **heads; /* ob_pump's fingerprints seen, capob of them */
    sp_alerter_stats_t stats;
    int reload; /* a write failed: the in-memory state is ahead of Redis */
    int hold;   /* sp_alerter_hold: nothing is produced */
    /* what the commit in preparation writes (sp_alerter_prepare) */
    int prepared;
    wbuf_t pstate, poutbox, pfps; /* fps: outbox field -> fingerprint */
};

/* ---- delivery ------------------------------------------------------------ */

static outbox_t *ob_find(sp_alerter_t *al, const char *id) {
    for (int i = 0; i < al->nob; i++)
        if (!strcmp(al->ob[i].alert_id, id)) return &al->ob[i];
    return NULL;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    sp_alerter_t *al = opaque;
    (void)rk;
    const char *id = m->_private;
    outbox_t *o = id ? ob_find(al, id) : NULL;
    free(m->_private);
    if (!o) return;
    o->inflight = 0;
    if (m->err) {
        al->stats.failed++;
        o->retry_at = sp_clock_mono_ms() + RETRY_MS;
        sp_log(SP_LOG_WARN, "alert %s not delivered: %s (kept in the outbox, retried)",
               o->alert_id, rd_kafka_err2str(m->err));
        return;
    }
    o->acked = 1;
}

/* The repeat_every of the rule named `name` (0: no such rule any more). */
static int64_t repeat_of(const sp_alerter_t *al, const char *name) {
    for (int i = 0; i < al->rules.n; i++)
        if (!strcmp(al->rules.r[i].name, name)) return al->rules.r[i].repeat_every_ms;
    return 0;
}

static void produce(sp_alerter_t *al, outbox_t *o) {
    sp_alert_t a;
    char err[256], *buf = NULL;
    size_t len = 0;
    sp_alert_format_t f;
    int bad = sp_alert_decode(o->json, strlen(o->json), al->schema_path, &a, &f, err, sizeof(err));
    if (!bad) a.repeat_every_ms = repeat_of(al, a.rule); /* Alertmanager's endsAt */
    if (bad || sp_alert_encode(&a, al->fmt, al->cfg->alert_schema_id, al->schema_path,
                               al->cfg->alert_generator_url, &buf, &len, err, sizeof(err))) {
        sp_log(SP_LOG_ERROR, "alert %s cannot be encoded: %s (dropped from the outbox)",
               o->alert_id, err);
        o->acked = 1; /* cannot ever be sent: do not retry forever */
        free(buf);
        return;
    }
    char *id = strdup(o->alert_id);
    rd_kafka_resp_err_t e = id ? rd_kafka_producev(
                                     al->rk, RD_KAFKA_V_TOPIC(al->cfg->topic_alerts),
                                     RD_KAFKA_V_KEY(o->fingerprint, strlen(o->fingerprint)),
                                     RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                     RD_KAFKA_V_OPAQUE(id), RD_KAFKA_V_END)
                               : RD_KAFKA_RESP_ERR__FAIL;
    if (e) {
        free(buf);
        free(id);
        o->retry_at = sp_clock_mono_ms() + RETRY_MS;
        sp_log(SP_LOG_WARN, "alert %s not produced: %s (retried)", o->alert_id,
               rd_kafka_err2str(e));
        return;
    }
    o->inflight = 1;
}

static int ob_add(sp_alerter_t *al, const char *id, const char *fp, const char *json) {
    if (ob_find(al, id)) return 0; /* already waiting: the same alert */
    if (al->nob == al->capob) {
        int nc = al->capob ? 2 * al->capob : 16;
        outbox_t *n = realloc(al->ob, (size_t)nc * sizeof(*n));
        if (!n) return -1;
        al->ob = n;
        const char **h = realloc(al->heads, (size_t)nc * sizeof(*h));
        if (!h) return -1;
        al->heads = h;
        al->capob = nc;
    }
    outbox_t *o = &al->ob[al->nob];
    memset(o, 0, sizeof(*o));
    snprintf(o->alert_id, sizeof(o->alert_id), "%s", id);
    snprintf(o->fingerprint, sizeof(o->fingerprint), "%s", fp);
    const char *at = strrchr(id, '@');
    o->window_start = at ? strtoll(at + 1, NULL, 10) : 0;
    if (!(o->json = strdup(json))) return -1;
    al->nob++;
    return 0;
}

static int ob_cmp(const void *a, const void *b) {
    const outbox_t *x = a, *y = b;
    if (x->window_start != y->window_start) return x->window_start < y->window_start ? -1 : 1;
    return strcmp(x->alert_id, y->alert_id);
}

/* The outbox as read from Redis (hash order) into window order. */
static void ob_sort(sp_alerter_t *al) {
    if (al->nob > 1) qsort(al->ob, (size_t)al->nob, sizeof(*al->ob), ob_cmp);
}

/* Produce what is due, oldest first, one message per alert series
 * (fingerprint) at a time: a series' next message waits until the broker
 * acknowledged the one before it. So the messages of a series reach its
 * partition in the order of their windows, whatever failed and was retried,
 * or was produced again at a start (the outbox is kept in window order:
 * sorted when read, appended as evaluated, removals keep the order). */
static void ob_pump(sp_alerter_t *al) {
    int64_t now = sp_clock_mono_ms();
    int nh = 0;
    if (al->hold) return;
    for (int i = 0; i < al->nob; i++) {
        outbox_t *o = &al->ob[i];
        if (o->acked) continue;
        int later = 0; /* an older message of its series is not acknowledged */
        for (int k = 0; k < nh && !later; k++)
            later = !strcmp(al->heads[k], o->fingerprint);
        if (later) continue;
        al->heads[nh++] = o->fingerprint;
        if (o->inflight || (o->retry_at && now < o->retry_at)) continue;
        o->retry_at = 0;
        produce(al, o);
    }
}

static int ob_inflight(const sp_alerter_t *al) {
    int n = 0;
    for (int i = 0; i < al->nob; i++)
        n += al->ob[i].inflight;
    return n;
}

/* ---- state --------------------------------------------------------------- */

static astate_t *st_get(sp_alerter_t *al, int rule, const char *key, int create) {
    char field[sizeof(((astate_t *)0)->field)];
    snprintf(field, sizeof(field), "%s|%s", al->rules.r[rule].name, key);
    for (int i = 0; i < al->nst; i++)
        if (!strcmp(al->st[i].field, field)) return &al->st[i];
    if (!create) return NULL;
    if (al->nst == al->capst) {
        int nc = al->capst ? 2 * al->capst : 16;
        astate_t *n = realloc(al->st, (size_t)nc * sizeof(*n));
        if (!n) return NULL;
        al->st = n;
        al->capst = nc;
    }
    astate_t *a = &al->st[al->nst++];
    memset(a, 0, sizeof(*a));
    snprintf(a->field, sizeof(a->field), "%s", field);
    a->rule = rule;
    sp_rule_state_init(&a->s);
    return a;
}

static int rule_index(const sp_alerter_t *al, const char *name, size_t len) {
    for (int i = 0; i < al->rules.n; i++)
        if (strlen(al->rules.r[i].name) == len && !memcmp(al->rules.r[i].name, name, len)) return i;
    return -1;
}

static void load_state_cb(void *opaque, int idx, const char *const *f, const char *const *v,
                          int n) {
    sp_alerter_t *al = opaque;
    for (int i = 0; i < n; i++) {
        if (idx == 1) { /* the outbox */
            char fp[32] = "";
            const char *c = strchr(f[i], ':');
            if (c && (size_t)(c - f[i]) < sizeof(fp)) snprintf(fp, sizeof(fp), "%.*s", (int)(c - f[i]), f[i]);
            if (ob_add(al, f[i], fp, v[i])) sp_log(SP_LOG_ERROR, "alerts: out of memory");
            continue;
        }
        const char *bar = strchr(f[i], '|');
        int r = rule_index(al, f[i], bar ? (size_t)(bar - f[i]) : strlen(f[i]));
        if (r < 0) continue; /* a rule since removed from the config */
        if (!bar) {
            al->through[r] = strtoll(v[i], NULL, 10);
            continue;
        }
        astate_t *a = st_get(al, r, bar + 1, 1);
        if (a && sp_rules_state_decode(v[i], strlen(v[i]), &a->s) != 0) {
            sp_log(SP_LOG_WARN, "alerts: state of %s unreadable: starting it afresh", f[i]);
            sp_rule_state_init(&a->s);
        }
    }
}

/* ---- life cycle ------------------------------------------------------------ */

/* The family and window size a rule is evaluated on (-1: none). */
static void place(const sp_config_t *cfg, const sp_rule_t *ru, int *fam, int *size_idx) {
    static const char *const fam_names[SP_FAM__COUNT] = {"funnel", "abandonment", "delivery",
                                                         "retention", "support"};
    *fam = *size_idx = -1;
    for (int f = 0; f < SP_FAM__COUNT; f++)
        if (!strcmp(fam_names[f], ru->family)) *fam = f;
    /* gauges: evaluated as the funnel's windows of that size close */
    if (!strcmp(ru->family, "gauges")) *fam = SP_FAM_FUNNEL;
    for (int k = 0; k < cfg->window_cnt; k++)
        if (cfg->window_ms[k] == ru->window_ms) *size_idx = k;
}

static void rule_place(sp_alerter_t *al, int i) {
    place(al->cfg, &al->rules.r[i], &al->fam[i], &al->size_idx[i]);
}

sp_alerter_t *sp_alerter_new(const sp_config_t *cfg, const sp_rules_t *rules,
                             rd_kafka_conf_t *conf, char *errstr, size_t errstr_size) {
    char kerr[512];
    sp_alerter_t *al = calloc(1, sizeof(*al));
    if (!al) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    al->cfg = cfg;
    al->rules = *rules;
    al->fmt = (sp_alert_format_t)sp_alert_format_parse(cfg->alert_format);
    snprintf(al->prefix, sizeof(al->prefix), "sp:{%s}", cfg->ns);
    snprintf(al->state_key, sizeof(al->state_key), "%s:alerts:state", al->prefix);
    snprintf(al->outbox_key, sizeof(al->outbox_key), "%s:alerts:outbox", al->prefix);
    snprintf(al->schema_path, sizeof(al->schema_path), "%s/alert.avsc", cfg->schemas_dir);
    for (int i = 0; i < rules->n; i++) {
        al->through[i] = -1;
        rule_place(al, i);
    }
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", kerr, sizeof(kerr))) {
        snprintf(errstr, errstr_size, "alert producer: %s", kerr);
        rd_kafka_conf_destroy(conf);
        free(al);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, al);
    if (!(al->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr)))) {
        snprintf(errstr, errstr_size, "alert producer: %s", kerr);
        rd_kafka_conf_destroy(conf);
        free(al);
        return NULL;
    }
    return al;
}

int sp_alerter_start(sp_alerter_t *al, sp_store_t *st, sp_engine_t *eng, char *errstr,
                     size_t errstr_size) {
    const char *keys[2] = {al->state_key, al->outbox_key};
    for (int r = 0; r < al->rules.n; r++)
        al->fresh[r] = al->fam[r] >= 0 && al->size_idx[r] >= 0 &&
                       sp_engine_family_final_start(eng, al->fam[r], al->size_idx[r]) < 0;
    int rc = sp_store_hgetall(st, keys, 2, load_state_cb, al, errstr, errstr_size);
    if (rc != SP_OK) return rc;
    if (al->nob) sp_log(SP_LOG_INFO, "alerts: %d in the outbox, producing them again", al->nob);
    ob_sort(al);
    ob_pump(al);
    return SP_OK;
}

void sp_alerter_reload(sp_alerter_t *al) {
    if (al) al->reload = 2;
}

void sp_alerter_hold(sp_alerter_t *al, int hold) {
    if (al) al->hold = hold;
}

void sp_alerter_poll(sp_alerter_t *al) {
    if (al) rd_kafka_poll(al->rk, 0);
}

/* Windows of one rule to evaluate: from *first to the family's final
 * window (through, final]; 0 if none. */
static int windows_due(const sp_alerter_t *al, int r, sp_engine_t *eng, int64_t *first,
                       int64_t *final) {
    int f = al->fam[r], k = al->size_idx[r];
    if (f < 0 || k < 0) return 0;
    int64_t fin = sp_engine_family_final_start(eng, f, k);
    if (fin < 0) return 0;
    *final = fin;
    if (al->through[r] >= 0) {
        *first = sp_engine_window_end(eng, k, al->through[r]);
        return *first <= fin;
    }
    /* First evaluation of the rule. A deployment that had closed no window
     * at start (new, catching up): every window from the first. Otherwise
     * (a rule added later): the closed windows that can matter to it now
     * (its baseline and `for`, at least 12), not the history before them. */
    const sp_rule_t *ru = &al->rules.r[r];
    int back = ru->baseline + ru->for_windows + 1;
    if (back < 12) back = 12;
    int64_t start = sp_engine_first_start(eng, k), s = fin;
    if (al->fresh[r] && start >= 0 && start <= fin) {
        s = start;
    } else {
        for (int i = 1; start >= 0 && i < back && s > start; i++)
            s = sp_engine_window_start(eng, k, s - 1);
    }
    *first = s;
    return 1;
}

int sp_alerter_due(const sp_alerter_t *al, sp_engine_t *eng) {
    int64_t first, final;
    for (int r = 0; al && r < al->rules.n; r++)
        if (windows_due(al, r, eng, &first, &final)) return 1;
    return 0;
}


static int wb_put(wbuf_t *b, const char *f, const char *v) {
    for (int i = 0; i < b->n; i++) /* the newest value of a field wins */
        if (!strcmp(b->f[i], f)) {
            char *nv = strdup(v);
            if (!nv) return -1;
            free(b->v[i]);
            b->v[i] = nv;
            return 0;
        }
    if (b->n == b->cap) {
        int nc = b->cap ? 2 * b->cap : 16;
        char **nf = realloc(b->f, (size_t)nc * sizeof(*nf));
        if (!nf) return -1;
        b->f = nf;
        char **nv = realloc(b->v, (size_t)nc * sizeof(*nv));
        if (!nv) return -1;
        b->v = nv;
        b->cap = nc;
    }
    b->f[b->n] = strdup(f);
    b->v[b->n] = strdup(v);
    if (!b->f[b->n] || !b->v[b->n]) {
        free(b->f[b->n]);
        free(b->v[b->n]);
        return -1;
    }
    b->n++;
    return 0;
}

static void wb_free(wbuf_t *b) {
    for (int i = 0; i < b->n; i++) {
        free(b->f[i]);
        free(b->v[i]);
    }
    free(b->f);
    free(b->v);
}

/* Evaluate rule r on one window; transitions into the write buffers. */
static int eval_window(sp_alerter_t *al, int r, const sp_window_view_t *w, wbuf_t *state,
                       wbuf_t *outbox, wbuf_t *fps) {
    const sp_rule_t *rule = &al->rules.r[r];
    static char keys[KEYS_MAX][160];
    char enc[2048], err[256];
    int nk = sp_rule_keys(rule, w, keys, KEYS_MAX);
    /* values seen before but not in this window: a counter of theirs is 0
     * now (a carrier whose deliveries stopped), a ratio has no data */
    size_t rl = strlen(rule->name);
    for (int i = 0; rule->nby && i < al->nst && nk < KEYS_MAX; i++) {
        const char *k = al->st[i].field + rl + 1;
        if (al->st[i].rule != r || !*k) continue;
        int seen = 0;
        for (int j = 0; j < nk && !seen; j++) seen = !strcmp(keys[j], k);
        if (!seen) snprintf(keys[nk++], sizeof(keys[0]), "%s", k);
    }
    for (int i = 0; i < nk; i++) {
        astate_t *a = st_get(al, r, keys[i], 1);
        if (!a) return SP_ERR_NOMEM;
        sp_alert_t alert;
        sp_rule_state_t before = a->s;
        int msg = sp_rule_eval(rule, keys[i], w, &a->s, sp_clock_now_ms(), &alert);
        if (!memcmp(&before, &a->s, sizeof(before)) && !msg) continue;
        if (!sp_rules_state_encode(&a->s, enc, sizeof(enc)) || wb_put(state, a->field, enc))
            return SP_ERR_NOMEM;
        if (!msg) continue;
        char *json = NULL;
        size_t len = 0;
        if (sp_alert_encode(&alert, SP_ALERT_FMT_JSON, 0, al->schema_path, NULL, &json, &len, err,
                            sizeof(err))) {
            sp_log(SP_LOG_ERROR, "alert %s: %s", alert.alert_id, err);
            continue;
        }
        sp_log(SP_LOG_INFO, "alert %s %s: %s", alert.state == SP_ALERT_FIRING ? "FIRING" : "RESOLVED",
               alert.rule, alert.summary);
        char msg_id[128];
        snprintf(msg_id, sizeof(msg_id), "%s@%lld", alert.alert_id, (long long)alert.window_start_ms);
        int bad = wb_put(outbox, msg_id, json) || wb_put(fps, msg_id, alert.fingerprint);
        free(json);
        if (bad) return SP_ERR_NOMEM;
    }
    return SP_OK;
}

/* Back to what Redis holds (reload 2: the outbox too). */
static int reload_state(sp_alerter_t *al, sp_store_t *st, char *errstr, size_t errstr_size) {
    const char *keys[2] = {al->state_key, al->outbox_key};
    int full = al->reload == 2;
    al->nst = 0;
    for (int r = 0; r < al->rules.n; r++) al->through[r] = -1;
    if (full) {
        for (int i = 0; i < al->nob; i++) free(al->ob[i].json);
        al->nob = 0; /* reports of what was in flight find nothing */
    }
    int rc = sp_store_hgetall(st, keys, full ? 2 : 1, load_state_cb, al, errstr, errstr_size);
    if (rc != SP_OK) return rc;
    al->reload = 0;
    if (full) ob_sort(al); /* produced again by the next pump */
    return SP_OK;
}

int sp_alerter_step(sp_alerter_t *al, sp_store_t *st, char *errstr, size_t errstr_size) {
    int rc = SP_OK;
    if (!al) return SP_OK;
    rd_kafka_poll(al->rk, 0);
    if (al->reload && (rc = reload_state(al, st, errstr, errstr_size)) != SP_OK) return rc;

    /* acknowledged alerts leave the outbox */
    const char *acked[64];
    int na = 0;
    for (int i = 0; i < al->nob && na < 64; i++)
        if (al->ob[i].acked) acked[na++] = al->ob[i].alert_id;
    if (na) {
        sp_hwrite_t w = {al->outbox_key, 1, na, acked, NULL};
        if ((rc = sp_store_hwrite(st, &w, 1, errstr, errstr_size)) != SP_OK) return rc;
        int kept = 0, seen = 0; /* the first na acknowledged ones are gone; order kept */
        for (int i = 0; i < al->nob; i++) {
            if (al->ob[i].acked && seen++ < na) {
                al->stats.emitted++;
                free(al->ob[i].json);
                continue;
            }
            al->ob[kept++] = al->ob[i];
        }
        al->nob = kept;
    }

    /* what is due: retries, successors of acknowledged ones */
    ob_pump(al);
    al->stats.pending = al->nob;
    return SP_OK;
}

/* The windows of one HGETALL round trip, evaluated in its callback. */
typedef struct eval_ctx {
    sp_alerter_t *al;
    sp_engine_t *eng;
    const sp_commit_t *c;
    const int *rule;
    const int64_t *starts;
    const char *const *keys;
    int idx, rc;
} eval_ctx_t;

static void eval_after_cb(void *opaque, const char *const *f, const char *const *v, int n) {
    eval_ctx_t *x = opaque;
    sp_alerter_t *al = x->al;
    int r = x->rule[x->idx];
    int64_t s = x->starts[x->idx];
    sp_window_view_t w = {s, sp_engine_window_end(x->eng, al->size_idx[r], s), n, f, v};
    x->rc = eval_window(al, r, &w, &al->pstate, &al->poutbox, &al->pfps);
}

static void eval_before_cb(void *opaque, int idx, const char *const *f, const char *const *v,
                           int n) {
    eval_ctx_t *x = opaque;
    if (x->rc != SP_OK) return;
    x->idx = idx;
    x->rc = SP_ERR_NOMEM; /* unless the callback ran */
    int gauges = !strcmp(x->al->rules.r[x->rule[idx]].family, "gauges");
    if (sp_commit_hash_after(x->c, x->keys[idx], gauges, f, v, n, eval_after_cb, x) != 0)
        x->rc = SP_ERR_NOMEM;
}

static void pending_clear(sp_alerter_t *al) {
    wb_free(&al->pstate);
    wb_free(&al->poutbox);
    wb_free(&al->pfps);
    memset(&al->pstate, 0, sizeof(al->pstate));
    memset(&al->poutbox, 0, sizeof(al->poutbox));
    memset(&al->pfps, 0, sizeof(al->pfps));
    al->prepared = 0;
}

int sp_alerter_prepare(sp_alerter_t *al, sp_store_t *st, sp_engine_t *eng, sp_commit_t *c,
                       char *errstr, size_t errstr_size) {
    int rc = SP_OK;
    if (!al) return SP_OK;
    if (al->prepared) al->reload = 2; /* an outcome never reported: trust Redis only */
    pending_clear(al);
    if (al->reload && (rc = reload_state(al, st, errstr, errstr_size)) != SP_OK) return rc;
    int64_t first[SP_RULES_MAX] = {0}, final[SP_RULES_MAX] = {0};
    int due[SP_RULES_MAX], cr = 0;
    for (int r = 0; r < al->rules.n; r++) due[r] = windows_due(al, r, eng, &first[r], &final[r]);
    int64_t cs = al->rules.n ? first[0] : 0;
    /* every rule's due windows, rule by rule in window order, read
     * WINDOWS_PER_TRIP per round trip */
    while (rc == SP_OK) {
        static char keys[WINDOWS_PER_TRIP][160];
        const char *kp[WINDOWS_PER_TRIP];
        int rule[WINDOWS_PER_TRIP], nw = 0;
        int64_t starts[WINDOWS_PER_TRIP];
        while (nw < WINDOWS_PER_TRIP && cr < al->rules.n) {
            if (!due[cr] || cs > final[cr]) {
                if (++cr < al->rules.n) cs = first[cr];
                continue;
            }
            const sp_rule_t *ru = &al->rules.r[cr];
            if (!strcmp(ru->family, "gauges"))
                snprintf(keys[nw], sizeof(keys[nw]), "%s:gauges", al->prefix);
            else
                snprintf(keys[nw], sizeof(keys[nw]), "%s:%s:%s:%lld", al->prefix, ru->family,
                         ru->window, (long long)cs);
            kp[nw] = keys[nw];
            rule[nw] = cr;
            starts[nw++] = cs;
            cs = sp_engine_window_end(eng, al->size_idx[cr], cs);
        }
        if (!nw) break;
        eval_ctx_t x = {al, eng, c, rule, starts, kp, 0, SP_OK};
        rc = sp_store_hgetall(st, kp, nw, eval_before_cb, &x, errstr, errstr_size);
        if (rc == SP_OK) rc = x.rc;
    }
    for (int r = 0; r < al->rules.n && rc == SP_OK; r++) {
        if (!due[r]) continue;
        char mark[32];
        snprintf(mark, sizeof(mark), "%lld", (long long)final[r]);
        if (wb_put(&al->pstate, al->rules.r[r].name, mark)) rc = SP_ERR_NOMEM;
        else al->through[r] = final[r];
    }
    if (rc != SP_OK) { /* nothing goes into c; the state may be ahead: read it again */
        pending_clear(al);
        al->reload = 1;
        return rc;
    }
    for (int i = 0; i < al->pstate.n; i++)
        sp_commit_hput(c, al->state_key, al->pstate.f[i], al->pstate.v[i]);
    for (int i = 0; i < al->poutbox.n; i++)
        sp_commit_hput(c, al->outbox_key, al->poutbox.f[i], al->poutbox.v[i]);
    al->prepared = al->pstate.n > 0; /* else nothing to hear back about */
    return SP_OK;
}

void sp_alerter_committed(sp_alerter_t *al, int ok) {
    if (!al || !al->prepared) return;
    if (!ok) { /* Redis may or may not hold it (a lost reply): read it back */
        pending_clear(al);
        al->reload = 2;
        return;
    }
    for (int i = 0; i < al->poutbox.n; i++) {
        if (ob_add(al, al->poutbox.f[i], al->pfps.v[i], al->poutbox.v[i])) {
            sp_log(SP_LOG_ERROR, "alerts: out of memory; reading the outbox again");
            al->reload = 2;
            break;
        }
    }
    pending_clear(al);
    ob_pump(al);
    al->stats.pending = al->nob;
}

/* ---- a new rule set (SIGHUP) ---------------------------------------------- */

typedef struct retire_ctx {
    const sp_alerter_t *al;
    const int *gone; /* per current rule: 1 if it goes */
    wbuf_t *del;     /* its fields in Redis */
    int rc;
} retire_ctx_t;

static void retire_fields_cb(void *opaque, int idx, const char *const *f, const char *const *v,
                             int n) {
    retire_ctx_t *x = opaque;
    (void)idx, (void)v;
    for (int i = 0; i < n; i++) {
        const char *bar = strchr(f[i], '|');
        int r = rule_index(x->al, f[i], bar ? (size_t)(bar - f[i]) : strlen(f[i]));
        if (r >= 0 && x->gone[r] && wb_put(x->del, f[i], "")) x->rc = SP_ERR_NOMEM;
    }
}

int sp_alerter_set_rules(sp_alerter_t *al, sp_store_t *st, sp_engine_t *eng,
                         const sp_rules_t *rules, char *summary, size_t summary_size, char *errstr,
                         size_t errstr_size) {
    int rc = SP_OK, ngone = 0, nkept = 0, nnew = 0, nresolved = 0;
    int gone[SP_RULES_MAX], to[SP_RULES_MAX], from[SP_RULES_MAX], prev[SP_RULES_MAX];
    int64_t through[SP_RULES_MAX];
    int fresh[SP_RULES_MAX];
    wbuf_t del = {0}, ob = {0}, fps = {0}, marks = {0};
    char err[256];

    if (al->prepared) {
        snprintf(errstr, errstr_size, "a commit is being prepared");
        return SP_ERR_INVALID;
    }
    if (al->reload && (rc = reload_state(al, st, errstr, errstr_size)) != SP_OK) return rc;
    /* a rule is kept when one of the new set has its name and every setting */
    for (int j = 0; j < rules->n; j++) {
        from[j] = prev[j] = -1;
        for (int i = 0; i < al->rules.n && prev[j] < 0; i++) {
            if (strcmp(al->rules.r[i].name, rules->r[j].name)) continue;
            prev[j] = i;
            if (sp_rule_same(&al->rules.r[i], &rules->r[j])) from[j] = i;
        }
        nnew += prev[j] < 0;
    }
    for (int i = 0; i < al->rules.n; i++) {
        to[i] = -1;
        for (int j = 0; j < rules->n && to[i] < 0; j++)
            if (from[j] == i) to[i] = j;
        gone[i] = to[i] < 0;
        ngone += gone[i];
        nkept += !gone[i];
    }
    /* the firing alerts of a rule that goes end with a RESOLVED message */
    for (int k = 0; k < al->nst && rc == SP_OK; k++) {
        const astate_t *a = &al->st[k];
        const sp_rule_t *ru = &al->rules.r[a->rule];
        if (!gone[a->rule]) continue;
        int64_t end = al->size_idx[a->rule] >= 0
                          ? sp_engine_window_end(eng, al->size_idx[a->rule], a->s.last_window)
                          : a->s.last_window + ru->window_ms;
        sp_alert_t alert;
        if (!sp_rule_retire(ru, a->field + strlen(ru->name) + 1, &a->s, end, sp_clock_now_ms(),
                            &alert))
            continue;
        char *json = NULL, msg_id[128];
        size_t len = 0;
        if (sp_alert_encode(&alert, SP_ALERT_FMT_JSON, 0, al->schema_path, NULL, &json, &len, err,
                            sizeof(err))) {
            sp_log(SP_LOG_ERROR, "alert %s: %s", alert.alert_id, err);
            continue;
        }
        snprintf(msg_id, sizeof(msg_id), "%s@%lld", alert.alert_id,
                 (long long)alert.window_start_ms);
        if (wb_put(&ob, msg_id, json) || wb_put(&fps, msg_id, alert.fingerprint)) rc = SP_ERR_NOMEM;
        free(json);
        nresolved++;
        sp_log(SP_LOG_INFO, "alert RESOLVED %s: %s", alert.rule, alert.summary);
    }
    /* Where the rules of the new set start. Kept: where they are. Changed:
     * with the window after the newest one closed now -- a window the old
     * settings decided is not decided again (its alert_id would name two
     * different alerts). New: as a rule added to a running deployment. */
    for (int j = 0; j < rules->n && rc == SP_OK; j++) {
        through[j] = from[j] >= 0 ? al->through[from[j]] : -1;
        fresh[j] = from[j] >= 0 ? al->fresh[from[j]] : 0;
        if (from[j] >= 0 || prev[j] < 0) continue;
        int f, k;
        place(al->cfg, &rules->r[j], &f, &k);
        through[j] = f >= 0 && k >= 0 ? sp_engine_family_final_start(eng, f, k) : -1;
        if (through[j] < 0) continue;
        char mark[32];
        snprintf(mark, sizeof(mark), "%lld", (long long)through[j]);
        if (wb_put(&marks, rules->r[j].name, mark)) rc = SP_ERR_NOMEM;
    }
    /* every field of theirs in Redis (markers, and keys not in memory):
     * deleted in the same transaction as those messages enter the outbox
     * and the changed rules' markers are set */
    if (rc == SP_OK && ngone) {
        const char *keys[1] = {al->state_key};
        retire_ctx_t x = {al, gone, &del, SP_OK};
        rc = sp_store_hgetall(st, keys, 1, retire_fields_cb, &x, errstr, errstr_size);
        if (rc == SP_OK) rc = x.rc;
    }
    if (rc == SP_OK && (del.n || ob.n || marks.n)) {
        sp_hwrite_t w[3];
        int nw = 0;
        if (del.n)
            w[nw++] = (sp_hwrite_t){al->state_key, 1, del.n, (const char *const *)del.f, NULL};
        if (marks.n)
            w[nw++] = (sp_hwrite_t){al->state_key, 0, marks.n, (const char *const *)marks.f,
                                    (const char *const *)marks.v};
        if (ob.n)
            w[nw++] = (sp_hwrite_t){al->outbox_key, 0, ob.n, (const char *const *)ob.f,
                                    (const char *const *)ob.v};
        rc = sp_store_hwrite(st, w, nw, errstr, errstr_size);
    }
    if (rc == SP_ERR_NOMEM) snprintf(errstr, errstr_size, "out of memory");
    if (rc != SP_OK) goto out; /* nothing changed */

    for (int i = 0; i < ob.n; i++)
        if (ob_add(al, ob.f[i], fps.v[i], ob.v[i])) al->reload = 2; /* read it back */
    /* kept rules keep their state and markers; changed and new ones start
     * as a rule added to a running deployment does */
    int kept = 0;
    for (int k = 0; k < al->nst; k++) {
        if (gone[al->st[k].rule]) continue;
        al->st[kept] = al->st[k];
        al->st[kept++].rule = to[al->st[k].rule];
    }
    al->nst = kept;
    al->rules = *rules;
    for (int j = 0; j < rules->n; j++) {
        al->through[j] = through[j];
        al->fresh[j] = fresh[j];
        rule_place(al, j);
    }
    ob_pump(al);
    al->stats.pending = al->nob;
    /* changed: a rule of the new set with a current name, other settings */
    snprintf(summary, summary_size,
             "%d rule(s): %d unchanged (state kept), %d changed, %d new, %d removed; %d firing "
             "alert(s) of changed or removed rules resolved",
             rules->n, nkept, rules->n - nkept - nnew, nnew, ngone - (rules->n - nkept - nnew),
             nresolved);
out:
    wb_free(&del);
    wb_free(&ob);
    wb_free(&fps);
    wb_free(&marks);
    return rc;
}

void sp_alerter_stats(const sp_alerter_t *al, sp_alerter_stats_t *out) {
    memset(out, 0, sizeof(*out));
    if (al) *out = al->stats;
}

void sp_alerter_destroy(sp_alerter_t *al, sp_store_t *st, int timeout_ms) {
    char err[256];
    if (!al) return;
    /* until nothing is in flight: the acknowledged ones' successors too */
    int64_t deadline = sp_clock_mono_ms() + timeout_ms;
    while (ob_inflight(al) && sp_clock_mono_ms() < deadline) {
        rd_kafka_poll(al->rk, 20);
        ob_pump(al);
    }
    /* what is still out stays in the outbox: purged, so that its delivery
     * reports come (and free their ids) before the producer goes */
    rd_kafka_purge(al->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(al->rk, 1000);
    if (st) { /* what was acknowledged leaves the outbox now */
        const char *acked[256];
        int na = 0;
        for (int i = 0; i < al->nob && na < 256; i++)
            if (al->ob[i].acked) acked[na++] = al->ob[i].alert_id;
        sp_hwrite_t w = {al->outbox_key, 1, na, acked, NULL};
        if (na && sp_store_hwrite(st, &w, 1, err, sizeof(err)) != SP_OK)
            sp_log(SP_LOG_WARN, "alerts: outbox not cleared (%s): sent again at the next start",
                   err);
    }
    rd_kafka_destroy(al->rk);
    for (int i = 0; i < al->nob; i++) free(al->ob[i].json);
    free(al->ob);
    free(al->heads);
    free(al->st);
    pending_clear(al);
    free(al);
}
