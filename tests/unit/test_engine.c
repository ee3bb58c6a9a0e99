/* test_engine.c -- windows, watermark and the funnel family, driven by a
 * manual clock, committed through the real store into a real redis-server,
 * and checked against figures computed by hand. */
#include "tests/unit/engine_harness.h"

#include "aggregators/family.h"
#include "consumers/decode.h"
#include "producers/gen.h"

static void test_funnel_by_hand(void **state) {
    (void)state;
    sp_config_t cfg;
    char err[256];
    cfg_for(&cfg, "hand");
    sp_clock_set_manual(T0 + 60000);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());

    const char *web = "channel=web device=desktop country=US";
    const char *app = "channel=mobile_app device=mobile country=DE";
    sp_event_t evs[] = {
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 1000, "event_id=a1 session_id=s1 channel=web device=desktop country=US"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_PRODUCT_VIEW, T0 + 2000, "event_id=a2 session_id=s1 channel=web device=desktop country=US"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_ADD_TO_CART, T0 + 3000, "event_id=a3 session_id=s1 channel=web device=desktop country=US"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 5000, "event_id=b1 session_id=s2 channel=mobile_app device=mobile country=DE"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_PRODUCT_VIEW, T0 + 6000, "event_id=b2 session_id=s2 channel=mobile_app device=mobile country=DE"),
        mk(SP_STREAM_CHECKOUT, SP_T_CHECKOUT_STARTED, T0 + 10000, "event_id=a4 session_id=s1 currency=USD amount=1000 channel=web device=desktop country=US"),
        mk(SP_STREAM_CHECKOUT, SP_T_PAYMENT_SUBMITTED, T0 + 11000, "event_id=a5 session_id=s1 currency=USD amount=1000 channel=web device=desktop country=US"),
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 12000, "event_id=a6 session_id=s1 order_id=o1 currency=USD amount=1000 channel=web device=desktop country=US"),
    };
    (void)web;
    (void)app;
    int64_t off = 0;
    assert_int_equal(batch(e, st, evs, 8, &off), 0);

    /* Second batch: the same order again (a duplicate fact), session 2 goes
     * through checkout and pays in EUR, session 3 orders directly. */
    sp_event_t evs2[] = {
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 13000, "event_id=a7 session_id=s1 order_id=o1 currency=USD amount=1000 channel=web device=desktop country=US"),
        mk(SP_STREAM_CHECKOUT, SP_T_CHECKOUT_STARTED, T0 + 20000, "event_id=b3 session_id=s2 currency=EUR amount=2000 channel=mobile_app device=mobile country=DE"),
        mk(SP_STREAM_CHECKOUT, SP_T_PAYMENT_FAILED, T0 + 21000, "event_id=b4 session_id=s2 currency=EUR amount=2000 channel=mobile_app device=mobile country=DE"),
        mk(SP_STREAM_CHECKOUT, SP_T_PAYMENT_SUBMITTED, T0 + 22000, "event_id=b5 session_id=s2 currency=EUR amount=2000 channel=mobile_app device=mobile country=DE"),
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 23000, "event_id=b6 session_id=s2 order_id=o2 currency=EUR amount=2000 channel=mobile_app device=mobile country=DE"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 30000, "event_id=c1 session_id=s3 channel=web device=mobile country=US"),
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 40000, "event_id=c2 session_id=s3 order_id=o3 currency=USD amount=1501 channel=web device=mobile country=US"),
    };
    assert_int_equal(batch(e, st, evs2, 7, &off), 1);

    const char *k = "sp:{hand}:funnel:1m:1793527200000";
    ASSERT_FIELD(k, "sessions", "3");
    ASSERT_FIELD(k, "product_view_sessions", "2");
    ASSERT_FIELD(k, "cart_sessions", "1");
    ASSERT_FIELD(k, "checkout_sessions", "2");
    ASSERT_FIELD(k, "order_sessions", "3");
    ASSERT_FIELD(k, "orders", "3");
    ASSERT_FIELD(k, "orders_store_currency", "2");
    ASSERT_FIELD(k, "revenue_cents", "2501");
    ASSERT_FIELD(k, "aov_cents", "1251"); /* 1250.5 rounds half away from zero */
    ASSERT_FIELD(k, "payments_submitted", "2");
    ASSERT_FIELD(k, "payments_failed", "1");
    ASSERT_FIELD(k, "payment_failure_rate", "0.5");
    ASSERT_FIELD(k, "conversion_rate", "1");
    ASSERT_FIELD(k, "view_to_cart_rate", "0.5");
    ASSERT_FIELD(k, "cart_to_checkout_rate", "2");
    ASSERT_FIELD(k, "checkout_to_order_rate", "1.5");
    ASSERT_FIELD(k, "sessions|channel=web", "2");
    ASSERT_FIELD(k, "sessions|channel=mobile_app", "1");
    ASSERT_FIELD(k, "sessions|device=mobile", "2");
    ASSERT_FIELD(k, "sessions|country=US", "2");
    ASSERT_FIELD(k, "order_sessions|device=desktop", "1");
    ASSERT_FIELD(k, "conversion_rate|channel=web", "1");
    ASSERT_FIELD(k, "view_to_cart_rate|channel=mobile_app", "0");
    ASSERT_FIELD(k, "cart_to_checkout_rate|channel=mobile_app", NULL); /* 0 carts */
    ASSERT_FIELD(k, "revenue_cents|channel=web", "2501");
    ASSERT_FIELD(k, "aov_cents|channel=web", "1251");
    ASSERT_FIELD(k, "orders|country=DE", "1");
    ASSERT_FIELD(k, "aov_cents|country=DE", NULL); /* no USD orders from DE */
    ASSERT_FIELD(k, "orders|currency=EUR", "1");
    ASSERT_FIELD(k, "revenue_cents|currency=EUR", "2000");
    ASSERT_FIELD(k, "orders|currency=USD", "2");
    ASSERT_FIELD(k, "revenue_cents|currency=USD", "2501");
    ASSERT_FIELD(k, "closed", NULL);
    /* Larger windows add up the same. */
    ASSERT_FIELD("sp:{hand}:funnel:5m:1793527200000", "sessions", "3");
    ASSERT_FIELD("sp:{hand}:funnel:1h:1793527200000", "orders", "3");
    ASSERT_FIELD("sp:{hand}:funnel:1d:1793491200000", "revenue_cents", "2501");

    /* Traffic stops: 10 minutes later, caught up, the partition is idle and
     * the watermark follows the wall clock minus 5 s. */
    sp_clock_set_manual(T0 + 600000);
    sp_engine_partition_lag(e, 0, 0, 0);
    int closed = sp_engine_advance(e, sp_clock_now_ms());
    assert_true(closed > 0);
    assert_int_equal(sp_engine_watermark(e), T0 + 595000);
    sp_commit_t *c = sp_commit_new();
    sp_engine_build_commit(e, c);
    assert_int_equal(sp_store_commit_send(st, c, err, sizeof(err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(st, err, sizeof(err)), SP_OK);
    sp_commit_destroy(c);

    ASSERT_FIELD(k, "closed", "1");
    ASSERT_FIELD(k, "sessions", "3");
    /* 1m windows close when watermark >= end + 60 s: up to 10:07. */
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793527260000", "closed", "1"); /* 10:01, zero-filled */
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793527260000", "sessions", "0");
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793527260000", "orders", "0");
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793527260000", "conversion_rate", NULL);
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793527620000", "closed", "1"); /* 10:07 */
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793527680000", "closed", NULL); /* 10:08 */
    ASSERT_FIELD("sp:{hand}:funnel:5m:1793527200000", "closed", "1");
    ASSERT_FIELD("sp:{hand}:funnel:1h:1793527200000", "closed", NULL);
    redisReply *r = redisCommand(rc, "GET sp:{hand}:final:funnel:1m");
    assert_string_equal(r->str, "1793527620000");
    freeReplyObject(r);

    /* An event for a closed window is late; one for an open one is not. */
    sp_event_t late = mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 30000, "event_id=z1 session_id=s9 channel=web device=desktop country=US");
    assert_int_equal(sp_engine_admit(e, &late), SP_ERR_LATE);
    sp_event_t ok = mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 500000, "event_id=z2 session_id=s9 channel=web device=desktop country=US");
    assert_int_equal(sp_engine_admit(e, &ok), SP_OK);

    /* A restart: a new engine that knows only Redis counts a session that
     * reappears in the same window once, and an order seen before as a
     * duplicate. */
    sp_engine_destroy(e);
    e = sp_engine_new(&cfg, err, sizeof(err));
    const char *pkeys[SP_ENGINE_POINTER_KEYS_MAX];
    int64_t pvals[SP_ENGINE_POINTER_KEYS_MAX];
    int npk = sp_engine_pointer_keys(e, pkeys);
    for (int i = 0; i < npk; i++) {
        r = redisCommand(rc, "GET %s", pkeys[i]);
        pvals[i] = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
        freeReplyObject(r);
    }
    sp_engine_restore(e, T0 + 595000, pvals);
    sp_engine_partition_add(e, 0, 0, T0 + 40000, sp_clock_now_ms());
    sp_event_t evs3[] = {
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 3500000, "event_id=d1 session_id=s1 channel=web device=desktop country=US"),
        mk(SP_STREAM_CHECKOUT, SP_T_ORDER_PLACED, T0 + 3500001, "event_id=d2 session_id=s1 order_id=o2 currency=EUR amount=2000 channel=web device=desktop country=US"),
    };
    assert_int_equal(batch(e, st, evs3, 2, &off), 1);
    ASSERT_FIELD("sp:{hand}:funnel:1h:1793527200000", "sessions", "3"); /* s1 again: counted once */
    ASSERT_FIELD("sp:{hand}:funnel:1h:1793527200000", "orders", "3");
    ASSERT_FIELD("sp:{hand}:funnel:1m:1793530680000", "sessions", "1");

    sp_engine_destroy(e);
    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

/* A partition that delivered nothing and is not idle holds the watermark;
 * lag keeps the watermark on event time. */
static void test_watermark_rules(void **state) {
    (void)state;
    sp_config_t cfg;
    char err[256];
    cfg_for(&cfg, "wm");
    sp_clock_set_manual(T0);
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    sp_engine_partition_add(e, 0, 0, -1, T0);
    sp_engine_partition_add(e, 0, 1, -1, T0);
    sp_event_t ev = mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 - 1000, "event_id=x session_id=s channel=web device=d country=US");
    ev.partition = 0;
    sp_engine_apply(e, &ev);
    sp_engine_advance(e, T0);
    assert_true(sp_engine_watermark(e) == INT64_MIN); /* partition 1 holds it */

    /* Partition 1: empty and caught up, idle after idle_timeout. */
    sp_engine_partition_lag(e, 0, 1, 0);
    sp_engine_partition_lag(e, 0, 0, 5); /* partition 0 still has lag */
    sp_engine_advance(e, T0 + cfg.idle_timeout_ms + 1);
    assert_int_equal(sp_engine_watermark(e), T0 - 1000 - cfg.max_out_of_orderness_ms);

    /* Lag on partition 0: still event time even after a long silence. */
    sp_engine_advance(e, T0 + 10 * cfg.idle_timeout_ms);
    assert_int_equal(sp_engine_watermark(e), T0 - 1000 - cfg.max_out_of_orderness_ms);

    /* Caught up: wall clock. */
    sp_engine_partition_lag(e, 0, 0, 0);
    sp_engine_advance(e, T0 + 10 * cfg.idle_timeout_ms);
    assert_int_equal(sp_engine_watermark(e), T0 + 10 * cfg.idle_timeout_ms - cfg.max_out_of_orderness_ms);

    /* Never backwards. */
    sp_engine_partition_lag(e, 0, 0, 3);
    sp_engine_advance(e, T0 + 11 * cfg.idle_timeout_ms);
    assert_int_equal(sp_engine_watermark(e), T0 + 10 * cfg.idle_timeout_ms - cfg.max_out_of_orderness_ms);
    sp_engine_destroy(e);
    sp_clock_set_manual(-1);
}

/* Dimension values beyond the cap are counted under __other__. */
static void test_dimension_cap(void **state) {
    (void)state;
    sp_config_t cfg;
    char err[256], kv[200];
    cfg_for(&cfg, "cap");
    cfg.max_dimension_values = 2;
    sp_clock_set_manual(T0 + 60000);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
    sp_event_t evs[5];
    const char *countries[5] = {"US", "DE", "PL", "FR", "US"};
    for (int i = 0; i < 5; i++) {
        snprintf(kv, sizeof(kv), "event_id=e%d session_id=s%d channel=web device=desktop country=%s", i, i,
                 countries[i]);
        evs[i] = mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + i, kv);
    }
    int64_t off = 0;
    batch(e, st, evs, 5, &off);
    const char *k = "sp:{cap}:funnel:1m:1793527200000";
    ASSERT_FIELD(k, "sessions", "5");
    ASSERT_FIELD(k, "sessions|country=US", "2");
    ASSERT_FIELD(k, "sessions|country=DE", "1");
    ASSERT_FIELD(k, "sessions|country=__other__", "2");
    ASSERT_FIELD(k, "sessions|country=PL", NULL);
    sp_engine_destroy(e);
    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

/* state.cache_idle: entities unused for that long (event time) leave
 * process memory; their state stays in Redis and comes back with their next
 * event, so nothing is counted twice. */
static void test_cache_idle(void **state) {
    (void)state;
    sp_config_t cfg;
    char err[256];
    cfg_for(&cfg, "idle");
    cfg.state_cache_idle_ms = 10 * 60000;
    sp_clock_set_manual(T0 + 3600000);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
    const char *g = "sp:{idle}:gauges", *f = "in_flight_entities|kind=session";
    int64_t off = 0;

    sp_event_t evs[2] = {
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0, "event_id=a1 session_id=s1 channel=web device=desktop country=US"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0, "event_id=a2 session_id=s2 channel=web device=desktop country=US")};
    batch(e, st, evs, 2, &off);
    ASSERT_FIELD(g, f, "2");

    /* 20 minutes later (watermark T0 + 20m - 5s): s1 and s2 are idle */
    evs[0] = mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 20 * 60000,
                "event_id=a3 session_id=s3 channel=web device=desktop country=US");
    batch(e, st, evs, 1, &off);
    ASSERT_FIELD(g, f, "1");

    /* s1 again, within its session timeout: its state comes back from
     * Redis, so it is not a new session */
    evs[0] = mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, T0 + 21 * 60000,
                "event_id=a4 session_id=s1 channel=web device=desktop country=US");
    batch(e, st, evs, 1, &off);
    ASSERT_FIELD(g, f, "2");
    ASSERT_FIELD("sp:{idle}:funnel:1h:1793527200000", "sessions", "3");
    sp_engine_destroy(e);
    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

/* Day windows follow the store's zone: Europe/Warsaw has a 23-hour day on
 * 2026-03-29 and a 25-hour day on 2026-10-25. */
static void test_timezone_days(void **state) {
    (void)state;
    sp_config_t cfg;
    char err[256];
    cfg_for(&cfg, "tz");
    snprintf(cfg.timezone, sizeof(cfg.timezone), "Europe/Warsaw");
    cfg.window_cnt = 1;
    cfg.window_ms[0] = 86400000;
    cfg.window_ttl_ms[0] = 400LL * 86400000;
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);

    const int64_t mar29 = 1774738800000LL, mar30 = 1774821600000LL; /* local midnights */
    const int64_t oct25 = 1792879200000LL, oct26 = 1792969200000LL;
    assert_int_equal(sp_engine_window_start(e, 0, 1774785600000LL), mar29); /* noon UTC */
    assert_int_equal(sp_engine_window_end(e, 0, mar29), mar30);
    assert_int_equal(mar30 - mar29, 23 * 3600000LL);
    assert_int_equal(sp_engine_window_start(e, 0, 1792929600000LL), oct25);
    assert_int_equal(sp_engine_window_end(e, 0, oct25), oct26);
    assert_int_equal(oct26 - oct25, 25 * 3600000LL);
    /* 22:30 UTC on the 25th is 23:30 local (CET again): still the 25th. */
    assert_int_equal(sp_engine_window_start(e, 0, 1792967400000LL), oct25);
    assert_int_equal(sp_engine_window_start(e, 0, oct26 - 1), oct25);
    assert_int_equal(sp_engine_window_start(e, 0, oct26), oct26);
    assert_int_equal(sp_engine_window_index(e, 0, oct25) + 1, sp_engine_window_index(e, 0, oct26));

    /* Through the store: the keys are the local midnights, closes walk the
     * 23- and 25-hour days, and the empty days in between are zero-filled. */
    sp_clock_set_manual(1792967400000LL + 60000);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    sp_engine_partition_add(e, 0, 0, -1, sp_clock_now_ms());
    sp_event_t evs[] = {
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, 1774785600000LL, "event_id=t1 session_id=s1 channel=web device=desktop country=PL"),
        mk(SP_STREAM_CLICKSTREAM, SP_T_PAGE_VIEW, 1792967400000LL, "event_id=t2 session_id=s2 channel=web device=desktop country=PL"),
    };
    int64_t off = 0;
    batch(e, st, evs, 2, &off);
    sp_clock_set_manual(oct26 + 3 * 3600000LL);
    sp_engine_partition_lag(e, 0, 0, 0);
    assert_true(sp_engine_advance(e, sp_clock_now_ms()) > 0);
    sp_commit_t *c = sp_commit_new();
    sp_engine_build_commit(e, c);
    assert_int_equal(sp_store_commit_send(st, c, err, sizeof(err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(st, err, sizeof(err)), SP_OK);
    sp_commit_destroy(c);
    ASSERT_FIELD("sp:{tz}:funnel:1d:1774738800000", "sessions", "1");
    ASSERT_FIELD("sp:{tz}:funnel:1d:1774738800000", "closed", "1");
    ASSERT_FIELD("sp:{tz}:funnel:1d:1774821600000", "sessions", "0"); /* Mar 30, empty */
    ASSERT_FIELD("sp:{tz}:funnel:1d:1774821600000", "closed", "1");
    ASSERT_FIELD("sp:{tz}:funnel:1d:1792792800000", "closed", "1"); /* Oct 24 */
    ASSERT_FIELD("sp:{tz}:funnel:1d:1792879200000", "sessions", "1"); /* Oct 25, 25 h */
    ASSERT_FIELD("sp:{tz}:funnel:1d:1792879200000", "closed", "1");
    ASSERT_FIELD("sp:{tz}:funnel:1d:1792969200000", "closed", NULL); /* Oct 26: open */
    /* A UTC-midnight key would mean the zone was ignored. */
    ASSERT_FIELD("sp:{tz}:funnel:1d:1792886400000", "sessions", NULL);
    redisReply *r = redisCommand(rc, "GET sp:{tz}:final:funnel:1d");
    assert_string_equal(r->str, "1792879200000");
    freeReplyObject(r);
    sp_engine_destroy(e);
    sp_store_destroy(st);
    sp_clock_set_manual(-1);
}

/* ---- the metric catalogue against what the families write --------------- */

/* A name of the catalogue (family.h): a counter, ratio or gauge is its
 * field; a duration is six (_mean is computed by the rules, never written).
 * fam < 0: a gauge. */
#define CAT_MAX 160
typedef struct catname {
    char name[64];
    int fam;
    int written;    /* a hash field of that name exists (not _mean) */
    int overall;    /* expected overall */
    char dims[128]; /* expected dimensions, comma-separated */
    int seen_overall;
    unsigned seen_dims; /* bit k: the k-th of dims seen */
} catname_t;

static int ncat;
static catname_t cat[CAT_MAX];
static const sp_metric_t *decl[CAT_MAX]; /* the declaration of cat[k] */

static void cat_add(int fam, const sp_metric_t *m, const sp_config_t *cfg) {
    static const char *const sfx[] = {"_p50", "_p90", "_p99", "_mean", "_count", "_sum_ms"};
    int n = m->kind == SP_METRIC_DURATION ? 6 : 1;
    for (int k = 0; k < ncat; k++) /* in_flight: declared by three families, alike */
        if (fam < 0 && cat[k].fam < 0 && !strcmp(cat[k].name, m->name)) {
            const sp_metric_t *o = decl[k];
            if (o->kind != m->kind || o->flags != m->flags || !o->dims != !m->dims ||
                (o->dims && strcmp(o->dims, m->dims)))
                fail_msg("gauge %s: declared differently by two writers", m->name);
            return;
        }
    for (int j = 0; j < n; j++) {
        assert_true(ncat < CAT_MAX);
        decl[ncat] = m;
        catname_t *c = &cat[ncat++];
        memset(c, 0, sizeof(*c));
        snprintf(c->name, sizeof(c->name), "%s%s", m->name, n > 1 ? sfx[j] : "");
        c->fam = fam;
        c->written = !(n > 1 && j == 3);
        c->overall = !(m->flags & SP_METRIC_SPLIT_ONLY);
        size_t o = 0;
        if (fam >= 0 && !(n > 1 && j < 3)) { /* percentiles: overall only */
            int nf;
            const sp_dims_t *d = sp_family_dims(sp_engine_families(&nf)[fam], cfg);
            for (int k = 0; k < d->cnt; k++)
                o += (size_t)snprintf(c->dims + o, sizeof(c->dims) - o, "%s%s", o ? "," : "",
                                      sp_str_field_names[d->f[k]]);
        }
        if (m->dims) snprintf(c->dims + o, sizeof(c->dims) - o, "%s%s", o ? "," : "", m->dims);
    }
}

/* Index of dim in a comma-separated list; -1 if absent. */
static int dim_index(const char *list, const char *dim, size_t len) {
    int k = 0;
    for (const char *p = list; *p; k++) {
        const char *q = strchr(p, ',');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == len && !memcmp(p, dim, len)) return k;
        if (!q) break;
        p = q + 1;
    }
    return -1;
}

/* One field of a hash of family fam (-1: gauges): it must be catalogued. */
static void cat_check_field(int fam, const char *key, const char *field) {
    char base[128];
    const char *bar = strchr(field, '|');
    size_t bl = bar ? (size_t)(bar - field) : strlen(field);
    snprintf(base, sizeof(base), "%.*s", (int)bl, field);
    if (fam >= 0 && !strcmp(base, "closed")) return; /* the store's: a final window */
    char *colon = strchr(base, ':');
    if (fam >= 0 && colon && !bar) { /* a histogram bucket <duration>:b<i> */
        *colon = '\0';
        strcat(base, "_count");
    }
    for (int k = 0; k < ncat; k++) {
        catname_t *c = &cat[k];
        if (c->fam != fam || strcmp(c->name, base)) continue;
        if (colon) return;
        if (!bar) {
            if (!c->overall) fail_msg("%s: %s: catalogued per value only", key, field);
            c->seen_overall = 1;
            return;
        }
        const char *eq = strchr(bar + 1, '=');
        int d = eq ? dim_index(c->dims, bar + 1, (size_t)(eq - bar - 1)) : -1;
        if (d < 0) fail_msg("%s: %s: dimension not catalogued (%s)", key, field, c->dims);
        c->seen_dims |= 1u << d;
        return;
    }
    fail_msg("%s: field %s is not in the catalogue of %s", key, field,
             fam >= 0 ? sp_engine_families(&(int){0})[fam]->name : "gauges");
}

static void cat_check_hash(int fam, const char *key) {
    redisReply *r = redisCommand(rc, "HGETALL %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        cat_check_field(fam, key, r->element[i]->str);
    freeReplyObject(r);
}

/* Check every window hash of every family and the gauges against the
 * catalogue, marking what is seen. Done halfway through the traffic too: a
 * per-value counter that is 0 is absent (carts_pending|channel=web once
 * every cart of the window is decided), so some fields exist only while a
 * window is open. */
static int cat_scan(const sp_family_t *const *fams, int nf) {
    int nwin = 0;
    for (int f = 0; f < nf; f++) {
        char pat[128];
        snprintf(pat, sizeof(pat), "sp:{catalogue}:%s:*", fams[f]->name);
        redisReply *r = redisCommand(rc, "KEYS %s", pat);
        assert_non_null(r);
        for (size_t i = 0; i < r->elements; i++, nwin++)
            cat_check_hash(f, r->element[i]->str);
        freeReplyObject(r);
    }
    cat_check_hash(-1, "sp:{catalogue}:gauges");
    return nwin;
}

/* Six hours of generated traffic of every stream (warm start: shipments and
 * tickets already in flight), decoded and run through the engine into a
 * real redis-server, then every window closed: each field of every window
 * hash and of the gauges is in the writer's catalogue, and each catalogued
 * name appears, overall and per dimension as catalogued. */
static void test_catalogue_matches_writes(void **state) {
    (void)state;
    static sp_config_t cfg;
    char err[512], why[256];
    cfg_for(&cfg, "catalogue");
    cfg.window_cnt = 2;
    cfg.window_ms[0] = 300000;
    cfg.window_ms[1] = 3600000;
    for (int t = 0; t < SP_STREAM__COUNT; t++)
        cfg.topics[t].format = SP_FORMAT_JSON;
    const int64_t start = T0 - 6 * 3600000LL, span = 6 * 3600000LL;
    sp_gen_opts_t go = {.seed = 18,
                        .start_ms = start,
                        .rate = 10,
                        .format = SP_FORMAT_JSON,
                        .warm_start = 1,
                        .duration_ms = span};
    sp_gen_t *g = sp_gen_new(&cfg, &go, err, sizeof(err));
    if (!g) fail_msg("generator: %s", err);
    sp_decoder_t *dec = sp_decoder_new(&cfg, err, sizeof(err));
    if (!dec) fail_msg("decoder: %s", err);
    sp_clock_set_manual(start);
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    sp_engine_t *e = sp_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    for (int t = 0; t < SP_STREAM__COUNT; t++)
        sp_engine_partition_add(e, t, 0, -1, start);
    sp_arena_t *arena = sp_arena_new(1 << 20);
    /* the catalogue, read as the rules read it */
    int nf, ng;
    const sp_family_t *const *fams = sp_engine_families(&nf);
    const sp_metric_t *eg = sp_engine_gauges(&ng);
    assert_int_equal(nf, SP_FAM__COUNT);
    ncat = 0;
    for (int f = 0; f < nf; f++) {
        for (int i = 0; i < fams[f]->nmetrics; i++)
            cat_add(f, &fams[f]->metrics[i], &cfg);
        for (int i = 0; i < fams[f]->ngauges; i++)
            cat_add(-1, &fams[f]->gauges[i], &cfg);
    }
    for (int i = 0; i < ng; i++)
        cat_add(-1, &eg[i], &cfg);

    enum { BATCH = 4000 };
    int scanned_halfway = 0;
    static sp_event_t evs[BATCH];
    int64_t off = 0;
    long total = 0;
    for (int end = 0; !end;) {
        int n = 0;
        sp_arena_reset(arena);
        while (n < BATCH) {
            sp_stream_t s;
            const void *key, *val;
            size_t kl, vl;
            int64_t et;
            int grc = sp_gen_next(g, &s, &key, &kl, &val, &vl, &et);
            assert_true(grc == 0 || grc == 1);
            if (grc == 1) {
                end = 1;
                break;
            }
            sp_clock_set_manual(et + 1000);
            sp_dlq_reason_t reason;
            if (sp_decoder_decode(dec, s, SP_FORMAT_JSON, val, vl, et + 1000, arena, &evs[n],
                                  &reason, why, sizeof(why)) != SP_OK)
                fail_msg("decode: %s", why);
            evs[n].topic_idx = (int)s;
            if (sp_engine_admit(e, &evs[n]) == SP_OK) n++;
        }
        total += n;
        for (int i = 0; i < n; i++)
            sp_engine_want(e, &evs[i]);
        const size_t *lens;
        const char *const *keys = sp_engine_want_keys(e, &lens);
        if (sp_engine_want_count(e) > 0) {
            assert_int_equal(
                sp_store_mget_send(st, keys, lens, sp_engine_want_count(e), err, sizeof(err)),
                SP_OK);
            assert_int_equal(sp_store_mget_recv(st, fetched, e, err, sizeof(err)), SP_OK);
        }
        for (int i = 0; i < n; i++)
            sp_engine_apply(e, &evs[i]);
        if (end) { /* traffic stops: a day later every window closes */
            sp_clock_set_manual(sp_clock_now_ms() + 86400000LL);
            for (int t = 0; t < SP_STREAM__COUNT; t++)
                sp_engine_partition_lag(e, t, 0, 0);
        }
        for (int round = 0; round < (end ? 50 : 1); round++) {
            sp_engine_update_watermark(e, sp_clock_now_ms());
            if (sp_engine_timers_due(e) != INT64_MIN) {
                int64_t next;
                assert_int_equal(sp_store_timers_due(st, sp_engine_timers_key(e),
                                                     sp_engine_state_prefix(e),
                                                     sp_engine_timers_due(e), 5000, timer_fetched,
                                                     e, &next, err, sizeof(err)),
                                 SP_OK);
                sp_engine_timers_next(e, next);
            }
            sp_engine_fire(e);
            sp_engine_close(e);
            sp_commit_t *c = sp_commit_new();
            sp_engine_build_commit(e, c);
            sp_commit_offset(c, "store.clickstream/0", off, off + n,
                             sp_engine_partition_max_et(e, 0, 0));
            off += n;
            n = 0;
            assert_int_equal(sp_store_commit_send(st, c, err, sizeof(err)), SP_OK);
            assert_int_equal(sp_store_commit_recv(st, err, sizeof(err)), SP_OK);
            sp_commit_destroy(c);
        }
        if (!scanned_halfway && total > 50000) { /* windows still open */
            cat_scan(fams, nf);
            scanned_halfway = 1;
        }
    }
    assert_true(total > 100000);
    assert_true(scanned_halfway);

    assert_true(cat_scan(fams, nf) > 5 * 72);
    for (int k = 0; k < ncat; k++) {
        const catname_t *c = &cat[k];
        const char *fn = c->fam >= 0 ? fams[c->fam]->name : "gauges";
        if (!c->written) continue;
        if (c->overall && !c->seen_overall)
            fail_msg("%s.%s: catalogued, never written", fn, c->name);
        int d = 0;
        for (const char *p = c->dims; *p; d++) {
            size_t l = strcspn(p, ",");
            if (!(c->seen_dims & (1u << d)))
                fail_msg("%s.%s: catalogued per %.*s, never written so", fn, c->name, (int)l, p);
            p += l + (p[l] == ',');
        }
    }
    sp_arena_destroy(arena);
    sp_engine_destroy(e);
    sp_store_destroy(st);
    sp_decoder_destroy(dec);
    sp_gen_destroy(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_funnel_by_hand), cmocka_unit_test(test_watermark_rules),
        cmocka_unit_test(test_dimension_cap),  cmocka_unit_test(test_cache_idle),
        cmocka_unit_test(test_timezone_days),  cmocka_unit_test(test_catalogue_matches_writes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
