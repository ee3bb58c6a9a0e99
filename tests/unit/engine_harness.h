/* engine_harness.h -- drive the engine like the run loop does (admit, want,
 * prefetch, apply, advance, due timers, commit) against a real redis-server,
 * and read the results back. For the engine and family unit tests. */
#ifndef SP_TEST_ENGINE_HARNESS_H
#define SP_TEST_ENGINE_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/engine.h"
#include "aggregators/store.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "tests/unit/redis_harness.h"

#define SP_UNUSED __attribute__((unused))
#define T0 1793527200000LL /* 2026-11-01T10:00:00Z, a minute boundary */

static SP_UNUSED sp_test_redis_t srv;
static SP_UNUSED redisContext *rc;

static SP_UNUSED int group_setup(void **state) {
    (void)state;
    if (sp_test_redis_start(&srv) != 0) return -1;
    rc = redisConnect("127.0.0.1", srv.port);
    return rc && !rc->err ? 0 : -1;
}

static SP_UNUSED int group_teardown(void **state) {
    (void)state;
    if (rc) redisFree(rc);
    sp_test_redis_stop(&srv);
    return 0;
}

static SP_UNUSED void cfg_for(sp_config_t *cfg, const char *ns) {
    sp_config_defaults(cfg);
    snprintf(cfg->ns, sizeof(cfg->ns), "%s", ns);
    cfg->redis_port = srv.port;
}

/* An event with string fields given as "name=value" pairs. */
static SP_UNUSED sp_event_t mk(sp_stream_t st, sp_event_type_t type, int64_t t, const char *kv) {
    sp_event_t ev;
    static SP_UNUSED char store[64][64];
    static SP_UNUSED int next;
    memset(&ev, 0, sizeof(ev));
    ev.stream = st;
    ev.type = type;
    sp_event_set_int(&ev, SP_I_EVENT_TIME, t);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", kv);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        if (!strcmp(tok, "amount")) {
            sp_event_set_int(&ev, SP_I_AMOUNT_CENTS, atoll(eq + 1));
            continue;
        }
        for (int f = 0; f < SP_S__COUNT; f++)
            if (!strcmp(tok, sp_str_field_names[f])) {
                char *s = store[next++ % 64];
                snprintf(s, 64, "%s", eq + 1);
                ev.s[f].p = s;
                ev.s[f].len = (uint32_t)strlen(s);
            }
    }
    return ev;
}

static SP_UNUSED void fetched(void *op, int idx, const char *v, size_t len) { sp_engine_fetched(op, idx, v, len); }

/* One batch through engine and store, like the run loop does it. */
static SP_UNUSED void timer_fetched(void *op, const char *m, size_t ml, int64_t score,
                                    const char *v, size_t vl) {
    sp_engine_timer_fetched(op, m, ml, score, v, vl);
}

/* One batch through engine and store, like the run loop does it. */
static SP_UNUSED int batch(sp_engine_t *e, sp_store_t *st, sp_event_t *evs, int n, int64_t *expected) {
    char err[256];
    int dups = 0;
    sp_commit_t *c = sp_commit_new();
    for (int i = 0; i < n; i++) {
        assert_int_equal(sp_engine_admit(e, &evs[i]), SP_OK);
        sp_engine_want(e, &evs[i]);
    }
    const size_t *lens;
    const char *const *keys = sp_engine_want_keys(e, &lens);
    if (sp_engine_want_count(e) > 0) {
        assert_int_equal(sp_store_mget_send(st, keys, lens, sp_engine_want_count(e), err, sizeof(err)), SP_OK);
        assert_int_equal(sp_store_mget_recv(st, fetched, e, err, sizeof(err)), SP_OK);
    }
    for (int i = 0; i < n; i++)
        if (sp_engine_apply(e, &evs[i]) == SP_ERR_DUPLICATE) dups++;
    sp_engine_update_watermark(e, sp_clock_now_ms());
    if (sp_engine_timers_due(e) != INT64_MIN) {
        int64_t next;
        assert_int_equal(sp_store_timers_due(st, sp_engine_timers_key(e), sp_engine_state_prefix(e),
                                             sp_engine_timers_due(e), 5000, timer_fetched, e, &next,
                                             err, sizeof(err)),
                         SP_OK);
        sp_engine_timers_next(e, next);
    }
    sp_engine_fire(e);
    sp_engine_close(e);
    sp_engine_build_commit(e, c);
    sp_commit_offset(c, "store.clickstream/0", *expected, *expected + n,
                     sp_engine_partition_max_et(e, 0, 0));
    *expected += n;
    assert_int_equal(sp_store_commit_send(st, c, err, sizeof(err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(st, err, sizeof(err)), SP_OK);
    sp_commit_destroy(c);
    return dups;
}

static SP_UNUSED char *hget(const char *key, const char *field) {
    static SP_UNUSED char out[128];
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r) freeReplyObject(r);
        return NULL;
    }
    snprintf(out, sizeof(out), "%s", r->str);
    freeReplyObject(r);
    return out;
}

static SP_UNUSED void check_field(const char *key, const char *field, const char *want) {
    const char *got = hget(key, field);
    if (!want) {
        if (got) fail_msg("%s %s: expected absent, got %s", key, field, got);
        return;
    }
    if (!got) fail_msg("%s %s: expected %s, got nothing", key, field, want);
    else if (strcmp(got, want) != 0) fail_msg("%s %s: expected %s, got %s", key, field, want, got);
}
#define ASSERT_FIELD(key, field, want) check_field(key, field, want)

#endif
