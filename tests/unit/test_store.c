/* test_store.c -- the Redis commit against a real redis-server.
 *
 * The group setup starts a throwaway redis-server (redis_harness.h); each
 * test starts from FLUSHALL with a fresh sp_store_t, and checks what the
 * commit script left in Redis through a second, plain hiredis connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggregators/store.h"
#include "core/err.h"
#include "tests/unit/redis_harness.h"

typedef struct tstate {
    sp_test_redis_t srv;
    redisContext *rc; /* the checking connection */
    sp_store_t *st;
    sp_commit_t *c;
    sp_config_t cfg;
    char err[512];
} tstate_t;

static tstate_t G;

static void cfg_fill(sp_config_t *cfg, int port, const char *ns) {
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->ns, sizeof(cfg->ns), "%s", ns);
    snprintf(cfg->redis_host, sizeof(cfg->redis_host), "127.0.0.1");
    cfg->redis_port = port;
    cfg->redis_timeout_ms = 10000;
}

static int group_setup(void **state) {
    (void)state;
    memset(&G, 0, sizeof(G));
    if (sp_test_redis_start(&G.srv) != 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return -1;
    }
    G.rc = redisConnect("127.0.0.1", G.srv.port);
    if (!G.rc || G.rc->err) return -1;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    if (G.rc) redisFree(G.rc);
    sp_test_redis_stop(&G.srv);
    return 0;
}

static int setup(void **state) {
    (void)state;
    redisReply *r = redisCommand(G.rc, "FLUSHALL");
    if (!r) return -1;
    freeReplyObject(r);
    cfg_fill(&G.cfg, G.srv.port, "store");
    G.st = sp_store_new(&G.cfg, G.err, sizeof(G.err));
    if (!G.st) {
        fprintf(stderr, "sp_store_new: %s\n", G.err);
        return -1;
    }
    G.c = sp_commit_new();
    return G.c ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    sp_commit_destroy(G.c);
    sp_store_destroy(G.st);
    G.c = NULL;
    G.st = NULL;
    return 0;
}

/* ---- helpers ---- */

static int commit(void) {
    int rc = sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err));
    if (rc != SP_OK) return rc;
    return sp_store_commit_recv(G.st, G.err, sizeof(G.err));
}

/* Value of a command's string reply, copied into a static buffer; NULL for nil. */
static const char *sval(redisReply *r) {
    static char buf[4096];
    assert_non_null(r);
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return NULL;
    }
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(buf, sizeof(buf), "%.*s", (int)r->len, r->str);
    freeReplyObject(r);
    return buf;
}

static const char *hget(const char *key, const char *field) {
    return sval(redisCommand(G.rc, "HGET %s %s", key, field));
}

static const char *get(const char *key) {
    return sval(redisCommand(G.rc, "GET %s", key));
}

static long long integer(redisReply *r) {
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static long long exists(const char *key) {
    return integer(redisCommand(G.rc, "EXISTS %s", key));
}

static void assert_field(const char *key, const char *field, const char *want) {
    const char *got = hget(key, field);
    if (!want) {
        if (got) fail_msg("%s %s: want absent, got '%s'", key, field, got);
        return;
    }
    if (!got) fail_msg("%s %s: want '%s', absent", key, field, want);
    if (strcmp(got, want) != 0) fail_msg("%s %s: want '%s', got '%s'", key, field, want, got);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#define H1  "sp:{store}:funnel:1m:60000"
#define ENT "sp:{store}:state:session:s1"

/* ---- tests ---- */

static void test_ns(void **state) {
    (void)state;
    assert_string_equal(sp_store_ns(G.st), "sp:{store}");
    assert_int_equal(sp_store_pending(G.st), 0);
    assert_int_equal(sp_store_last_commit_commands(G.st), -1);
    assert_true(sp_commit_is_empty(G.c));
    sp_commit_health(G.c, "x", 1);
    assert_false(sp_commit_is_empty(G.c));
    sp_commit_reset(G.c);
    assert_true(sp_commit_is_empty(G.c));
}

static void test_fence_accept(void **state) {
    (void)state;
    sp_commit_offset(G.c, "clicks/0", 0, 10, 1000);
    sp_commit_offset(G.c, "clicks/1", 0, 5, 2000);
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 3);
    sp_commit_incr(G.c, "sessions|device=mobile", 22, 2);
    sp_commit_incr(G.c, "sessions", 8, 4); /* same field twice: summed */
    assert_int_equal(commit(), SP_OK);
    assert_field("sp:{store}:offsets", "clicks/0", "10");
    assert_field("sp:{store}:offsets", "clicks/1", "5");
    assert_field("sp:{store}:wm", "clicks/0", "1000");
    assert_field(H1, "sessions", "7");
    assert_field(H1, "sessions|device=mobile", "2");
    assert_true(sp_store_last_commit_commands(G.st) > 0);
    assert_true(sp_store_last_commit_commands(G.st) <= sp_commit_command_estimate(G.c));

    /* next batch: expected == stored; watermark only rises */
    sp_commit_reset(G.c);
    sp_commit_offset(G.c, "clicks/0", 10, 20, 500);
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, -2);
    assert_int_equal(commit(), SP_OK);
    assert_field("sp:{store}:offsets", "clicks/0", "20");
    assert_field("sp:{store}:wm", "clicks/0", "1000");
    assert_field(H1, "sessions", "5");

    const char *fields[] = {"clicks/0", "clicks/1", "clicks/7"};
    int64_t next[3], wm[3];
    assert_int_equal(sp_store_load_offsets(G.st, fields, 3, next, wm, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(next[0], 20);
    assert_int_equal(next[1], 5);
    assert_int_equal(next[2], -1);
    assert_int_equal(wm[0], 1000);
    assert_int_equal(wm[1], 2000);
    assert_int_equal(wm[2], -1);
}

static void test_fence_reject(void **state) {
    (void)state;
    freeReplyObject(redisCommand(G.rc, "HSET sp:{store}:offsets clicks/3 10"));
    freeReplyObject(redisCommand(G.rc, "SET %s old", ENT));
    freeReplyObject(redisCommand(G.rc, "HSET %s sessions 1", H1));

    sp_commit_offset(G.c, "clicks/2", 0, 4, 100);  /* fine alone */
    sp_commit_offset(G.c, "clicks/3", 5, 12, 100); /* zombie: stored is 10 */
    sp_commit_kv(G.c, ENT, "new", 3, 60000);
    sp_commit_kv(G.c, "sp:{store}:state:cart:c1", "x", 1, 60000);
    sp_commit_hash(G.c, H1, 60000);
    sp_commit_incr(G.c, "sessions", 8, 100);
    sp_commit_hash(G.c, "sp:{store}:funnel:1m:120000", 60000);
    sp_commit_incr(G.c, "sessions", 8, 100);
    sp_commit_max(G.c, "sp:{store}:latest:funnel:1m", 120000);
    sp_commit_health(G.c, "events", 5);
    sp_commit_gauge(G.c, "watermark_ms", 5);
    sp_commit_publish(G.c, "{}");
    assert_int_equal(commit(), SP_ERR_FENCED);
    assert_non_null(strstr(G.err, "clicks/3"));
    assert_non_null(strstr(G.err, "10"));

    /* nothing at all was written */
    assert_field("sp:{store}:offsets", "clicks/3", "10");
    assert_field("sp:{store}:offsets", "clicks/2", NULL);
    assert_int_equal(exists("sp:{store}:wm"), 0);
    assert_string_equal(get(ENT), "old");
    assert_int_equal(integer(redisCommand(G.rc, "PTTL %s", ENT)), -1);
    assert_int_equal(exists("sp:{store}:state:cart:c1"), 0);
    assert_field(H1, "sessions", "1");
    assert_int_equal(integer(redisCommand(G.rc, "PTTL %s", H1)), -1);
    assert_int_equal(exists("sp:{store}:funnel:1m:120000"), 0);
    assert_int_equal(exists("sp:{store}:latest:funnel:1m"), 0);
    /* but the rejection is counted */
    assert_field("sp:{store}:health", "fenced_commits", "1");
    assert_field("sp:{store}:health", "events", NULL);
    assert_int_equal(exists("sp:{store}:gauges"), 0);

    /* the connection is still fine after a fence */
    sp_commit_reset(G.c);
    sp_commit_offset(G.c, "clicks/3", 10, 12, 100);
    assert_int_equal(commit(), SP_OK);
    assert_field("sp:{store}:offsets", "clicks/3", "12");
}

static void test_kv(void **state) {
    (void)state;
    freeReplyObject(redisCommand(G.rc, "SET sp:{store}:state:gone x"));
    static const char bin[] = {'a', 0, 'b', (char)0xff};
    sp_commit_kv(G.c, ENT, bin, sizeof(bin), 60000);
    sp_commit_kv(G.c, "sp:{store}:state:forever", "v", 1, 0);
    sp_commit_kv(G.c, "sp:{store}:state:gone", NULL, 0, 0);
    assert_int_equal(commit(), SP_OK);
    redisReply *r = redisCommand(G.rc, "GET %s", ENT);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, sizeof(bin));
    assert_memory_equal(r->str, bin, sizeof(bin));
    freeReplyObject(r);
    long long pttl = integer(redisCommand(G.rc, "PTTL %s", ENT));
    assert_true(pttl > 50000 && pttl <= 60000);
    assert_int_equal(integer(redisCommand(G.rc, "PTTL sp:{store}:state:forever")), -1);
    assert_int_equal(exists("sp:{store}:state:gone"), 0);
}

static void test_ratios(void **state) {
    (void)state;
    /* inputs that exist only in the hash, and a stale ratio to be removed */
    freeReplyObject(redisCommand(G.rc, "HSET %s orders 312 visits 10000 stale 5", H1));
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 3);
    sp_commit_incr(G.c, "conversions", 11, 1);
    sp_commit_ratio(G.c, "conversion_rate", 'r', "conversions", "sessions");
    sp_commit_ratio(G.c, "order_rate", 'r', "orders", "visits");
    sp_commit_ratio(G.c, "stale", 'r', "orders", "nothing");
    sp_commit_ratio(G.c, "never", 'r', "sessions", "nothing");
    sp_commit_ratio(G.c, "big", 'r', "visits", "sessions");
    sp_commit_ratio(G.c, "tiny", 'r', "conversions", "huge");
    sp_commit_incr(G.c, "huge", 4, 30000000);
    sp_commit_hset(G.c, "closed", "1");
    assert_int_equal(commit(), SP_OK);
    assert_field(H1, "conversion_rate", "0.333333");
    assert_field(H1, "order_rate", "0.0312");
    assert_field(H1, "stale", NULL);
    assert_field(H1, "never", NULL);
    assert_field(H1, "big", "3333.33");
    assert_field(H1, "tiny", "3.33333e-08");
    assert_field(H1, "closed", "1");
    assert_field(H1, "huge", "30000000");

    /* den back to 0 => ratio removed */
    sp_commit_reset(G.c);
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, -3);
    sp_commit_ratio(G.c, "conversion_rate", 'r', "conversions", "sessions");
    assert_int_equal(commit(), SP_OK);
    assert_field(H1, "sessions", "0");
    assert_field(H1, "conversion_rate", NULL);
}

static void test_avg_rounding(void **state) {
    (void)state;
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "two", 3, 2);
    sp_commit_incr(G.c, "three", 5, 3);
    sp_commit_incr(G.c, "m2", 2, -2);
    sp_commit_incr(G.c, "five", 4, 5);
    sp_commit_incr(G.c, "seven", 5, 7);
    sp_commit_incr(G.c, "m5", 2, -5);
    sp_commit_incr(G.c, "zero", 4, 0);
    sp_commit_ratio(G.c, "a1", 'a', "five", "two");    /* 2.5 -> 3 */
    sp_commit_ratio(G.c, "a2", 'a', "seven", "two");   /* 3.5 -> 4 */
    sp_commit_ratio(G.c, "a3", 'a', "m5", "two");      /* -2.5 -> -3 */
    sp_commit_ratio(G.c, "a4", 'a', "seven", "three"); /* 2.33 -> 2 */
    sp_commit_ratio(G.c, "a5", 'a', "five", "m2");     /* -2.5 -> -3 */
    sp_commit_ratio(G.c, "a6", 'a', "m5", "three");    /* -1.67 -> -2 */
    sp_commit_ratio(G.c, "a7", 'a', "five", "zero");   /* removed */
    assert_int_equal(commit(), SP_OK);
    assert_field(H1, "a1", "3");
    assert_field(H1, "a2", "4");
    assert_field(H1, "a3", "-3");
    assert_field(H1, "a4", "2");
    assert_field(H1, "a5", "-3");
    assert_field(H1, "a6", "-2");
    assert_field(H1, "a7", NULL);
}

static void test_pexpire(void **state) {
    (void)state;
    sp_commit_hash(G.c, H1, 172800000);
    sp_commit_incr(G.c, "sessions", 8, 1);
    sp_commit_hash(G.c, "sp:{store}:nottl", 0);
    sp_commit_incr(G.c, "sessions", 8, 1);
    assert_int_equal(commit(), SP_OK);
    long long pttl = integer(redisCommand(G.rc, "PTTL %s", H1));
    assert_true(pttl > 172000000 && pttl <= 172800000);
    assert_int_equal(integer(redisCommand(G.rc, "PTTL sp:{store}:nottl")), -1);
}

static void test_max_pointer(void **state) {
    (void)state;
    const char *k = "sp:{store}:latest:funnel:1m";
    sp_commit_max(G.c, k, 120000);
    assert_int_equal(commit(), SP_OK);
    assert_string_equal(get(k), "120000");
    sp_commit_reset(G.c);
    sp_commit_max(G.c, k, 60000);
    assert_int_equal(commit(), SP_OK);
    assert_string_equal(get(k), "120000");
    sp_commit_reset(G.c);
    sp_commit_max(G.c, k, 180000);
    sp_commit_max(G.c, k, 170000);
    assert_int_equal(commit(), SP_OK);
    assert_string_equal(get(k), "180000");

    const char *keys[] = {k, "sp:{store}:final:funnel:1m"};
    int64_t v[2];
    assert_int_equal(sp_store_get_ints(G.st, keys, 2, v, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(v[0], 180000);
    assert_int_equal(v[1], -1);
}

static void test_health_gauges_publish(void **state) {
    (void)state;
    redisContext *sub = redisConnect("127.0.0.1", G.srv.port);
    assert_non_null(sub);
    assert_int_equal(sub->err, 0);
    redisReply *r = redisCommand(sub, "SUBSCRIBE sp:{store}:updates");
    assert_non_null(r);
    freeReplyObject(r);

    freeReplyObject(redisCommand(G.rc, "HSET sp:{store}:health events 10"));
    sp_commit_health(G.c, "events", 2);
    sp_commit_health(G.c, "events", 3);
    sp_commit_health(G.c, "dlq_late", 1);
    sp_commit_gauge(G.c, "watermark_ms", 123456);
    sp_commit_gauge(G.c, "overdue_in_flight", -1);
    sp_commit_publish(G.c, "{\"windows\":[\"funnel:1m:60000\"]}");
    assert_int_equal(commit(), SP_OK);
    assert_field("sp:{store}:health", "events", "15");
    assert_field("sp:{store}:health", "dlq_late", "1");
    assert_field("sp:{store}:gauges", "watermark_ms", "123456");
    assert_field("sp:{store}:gauges", "overdue_in_flight", "-1");

    r = NULL;
    assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "message");
    assert_string_equal(r->element[1]->str, "sp:{store}:updates");
    assert_string_equal(r->element[2]->str, "{\"windows\":[\"funnel:1m:60000\"]}");
    freeReplyObject(r);
    redisFree(sub);
}

typedef struct mget_out {
    int calls;
    char val[8][32];
    size_t len[8];
    int present[8];
} mget_out_t;

static void mget_cb(void *opaque, int idx, const char *val, size_t len) {
    mget_out_t *o = opaque;
    assert_true(idx >= 0 && idx < 8);
    o->calls++;
    o->present[idx] = val != NULL;
    if (val) {
        assert_true(len < sizeof(o->val[idx]));
        memcpy(o->val[idx], val, len);
        o->len[idx] = len;
    }
}

static void test_mget_absent(void **state) {
    (void)state;
    freeReplyObject(redisCommand(G.rc, "SET k1 v1"));
    freeReplyObject(redisCommand(G.rc, "SET %b %b", "k\0b", (size_t)3, "x\0y", (size_t)3));
    freeReplyObject(redisCommand(G.rc, "HSET wrongtype f 1"));
    const char *keys[] = {"k1", "missing", "k\0b", "wrongtype"};
    const size_t lens[] = {2, 7, 3, 9};
    mget_out_t o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp_store_mget_send(G.st, keys, lens, 4, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_pending(G.st), 1);
    assert_int_equal(sp_store_mget_recv(G.st, mget_cb, &o, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(o.calls, 4);
    assert_true(o.present[0]);
    assert_memory_equal(o.val[0], "v1", 2);
    assert_false(o.present[1]);
    assert_true(o.present[2]);
    assert_int_equal(o.len[2], 3);
    assert_memory_equal(o.val[2], "x\0y", 3);
    assert_false(o.present[3]); /* MGET gives nil for a non-string */

    /* no keys: nothing sent, recv still pairs up */
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp_store_mget_send(G.st, keys, NULL, 0, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_pending(G.st), 1);
    assert_int_equal(sp_store_mget_recv(G.st, mget_cb, &o, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(o.calls, 0);
    assert_int_equal(sp_store_pending(G.st), 0);
}

static void test_pipelined(void **state) {
    (void)state;
    sp_commit_t *c2 = sp_commit_new();
    sp_commit_offset(G.c, "clicks/0", 0, 100, 1);
    sp_commit_kv(G.c, ENT, "state-a", 7, 60000);
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 1);
    sp_commit_offset(c2, "clicks/0", 100, 200, 2);
    sp_commit_hash(c2, H1, 0);
    sp_commit_incr(c2, "sessions", 8, 10);

    const char *keys[] = {ENT, "sp:{store}:state:session:none"};
    mget_out_t o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err)), SP_OK);
    sp_commit_reset(G.c); /* the builder may be reused at once */
    assert_int_equal(sp_store_mget_send(G.st, keys, NULL, 2, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_commit_send(G.st, c2, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_pending(G.st), 3);
    assert_int_equal(sp_store_commit_recv(G.st, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_mget_recv(G.st, mget_cb, &o, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(G.st, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_pending(G.st), 0);
    /* the prefetch ran after the first commit */
    assert_true(o.present[0]);
    assert_memory_equal(o.val[0], "state-a", 7);
    assert_false(o.present[1]);
    assert_field(H1, "sessions", "11");
    assert_field("sp:{store}:offsets", "clicks/0", "200");

    /* a pipelined zombie: the second commit expects the old offset */
    sp_commit_reset(G.c);
    sp_commit_offset(G.c, "clicks/0", 200, 300, 3);
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 1);
    assert_int_equal(sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(G.st, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(G.st, G.err, sizeof(G.err)), SP_ERR_FENCED);
    assert_field(H1, "sessions", "12");
    sp_commit_destroy(c2);
}

/* > 8000 fields in one hash (Lua unpack limit) and the 10k x 10 timing. */
static void test_big_hash(void **state) {
    (void)state;
    char f[64];
    for (int round = 1; round <= 2; round++) {
        sp_commit_reset(G.c);
        sp_commit_offset(G.c, "clicks/0", round == 1 ? 0 : 1, round == 1 ? 1 : 2, 1);
        sp_commit_hash(G.c, H1, 60000);
        for (int i = 0; i < 9500; i++) {
            int n = snprintf(f, sizeof(f), "views|page=%d", i);
            sp_commit_incr(G.c, f, (size_t)n, i);
        }
        for (int i = 0; i < 3000; i++) { /* ratio inputs beyond the chunk too */
            char num[32], r[32];
            snprintf(num, sizeof(num), "views|page=%d", i);
            snprintf(r, sizeof(r), "share|page=%d", i);
            sp_commit_ratio(G.c, r, 'r', num, "views|page=9499");
        }
        assert_int_equal(commit(), SP_OK);
    }
    /* views|page=0 stays 0: a per-dimension counter at 0 is absent */
    assert_int_equal(integer(redisCommand(G.rc, "HLEN %s", H1)), 9499 + 3000);
    assert_field(H1, "views|page=0", NULL);
    assert_field(H1, "views|page=1", "2");
    assert_field(H1, "views|page=8999", "17998");
    assert_field(H1, "views|page=9499", "18998");
    assert_field(H1, "share|page=2999", "0.315717");
    long long exp_cmds = sp_store_last_commit_commands(G.st);
    assert_true(exp_cmds >= 4 + 10 + 13 + 1);
    assert_true(exp_cmds <= sp_commit_command_estimate(G.c));

    /* timing: 10k incremented fields across 10 hashes, 8 partitions */
    double best = 1e9, build_best = 1e9;
    for (int round = 0; round < 5; round++) {
        double t0 = now_ms();
        sp_commit_reset(G.c);
        for (int p = 0; p < 8; p++) {
            snprintf(f, sizeof(f), "perf/%d", p);
            sp_commit_offset(G.c, f, round, round + 1, 1000 + round);
        }
        for (int h = 0; h < 10; h++) {
            char key[64];
            snprintf(key, sizeof(key), "sp:{store}:perf:1m:%d", h);
            sp_commit_hash(G.c, key, 60000);
            for (int i = 0; i < 1000; i++) {
                int n = snprintf(f, sizeof(f), "sessions|page=%d", i);
                sp_commit_incr(G.c, f, (size_t)n, 1);
            }
            sp_commit_ratio(G.c, "rate", 'r', "sessions|page=1", "sessions|page=2");
        }
        double t1 = now_ms();
        assert_int_equal(commit(), SP_OK);
        double t2 = now_ms();
        if (t2 - t0 < best) best = t2 - t0;
        if (t1 - t0 < build_best) build_best = t1 - t0;
    }
    assert_field("sp:{store}:perf:1m:9", "sessions|page=999", "5");
    print_message("commit of 10k incremented fields across 10 hashes: best %.2f ms "
                  "(build %.2f ms), %lld commands in the script\n",
                  best, build_best, (long long)sp_store_last_commit_commands(G.st));
}

static void test_noscript_then_reconnect(void **state) {
    (void)state;
    freeReplyObject(redisCommand(G.rc, "SCRIPT FLUSH"));
    sp_commit_offset(G.c, "clicks/0", 0, 1, 1);
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 1);
    assert_int_equal(commit(), SP_ERR_IO);
    assert_non_null(strstr(G.err, "NOSCRIPT"));
    assert_int_equal(exists(H1), 0);
    /* sticky until reconnect */
    assert_int_equal(sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err)), SP_ERR_IO);
    assert_int_equal(sp_store_reconnect(G.st, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(commit(), SP_OK);
    assert_field(H1, "sessions", "1");
}

static void test_connection_lost(void **state) {
    (void)state;
    freeReplyObject(redisCommand(G.rc, "CLIENT KILL TYPE normal SKIPME yes"));
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 1);
    int rc = sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err));
    if (rc == SP_OK) rc = sp_store_commit_recv(G.st, G.err, sizeof(G.err));
    assert_int_equal(rc, SP_ERR_IO);
    assert_int_equal(sp_store_reconnect(G.st, G.err, sizeof(G.err)), SP_OK);
    assert_int_equal(sp_store_pending(G.st), 0);
    assert_int_equal(commit(), SP_OK);
    assert_field(H1, "sessions", "1");
}

static void test_auth_db(void **state) {
    (void)state;
    freeReplyObject(redisCommand(G.rc, "ACL SETUSER spuser on >s3cret-pw ~* &* +@all"));
    sp_config_t cfg;
    char err[256];
    cfg_fill(&cfg, G.srv.port, "other");
    snprintf(cfg.redis_user, sizeof(cfg.redis_user), "spuser");
    snprintf(cfg.redis_password, sizeof(cfg.redis_password), "wrong-pw");
    err[0] = '\0';
    assert_null(sp_store_new(&cfg, err, sizeof(err)));
    assert_true(err[0] != '\0');
    assert_null(strstr(err, "wrong-pw"));
    assert_non_null(strstr(err, "AUTH as user 'spuser' failed: WRONGPASS"));

    /* a user without a password still logs in as that user (a nopass user),
     * never silently as the default user */
    snprintf(cfg.redis_user, sizeof(cfg.redis_user), "ghost");
    cfg.redis_password[0] = '\0';
    assert_null(sp_store_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "AUTH as user 'ghost' failed"));
    freeReplyObject(redisCommand(G.rc, "ACL SETUSER ghost on nopass ~* &* +@all"));
    sp_store_t *nopass = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(nopass);
    sp_store_destroy(nopass);
    snprintf(cfg.redis_user, sizeof(cfg.redis_user), "spuser");

    snprintf(cfg.redis_password, sizeof(cfg.redis_password), "s3cret-pw");
    cfg.redis_db = 3;
    sp_store_t *st = sp_store_new(&cfg, err, sizeof(err));
    assert_non_null(st);
    assert_string_equal(sp_store_ns(st), "sp:{other}");
    sp_commit_hash(G.c, "sp:{other}:x", 0);
    sp_commit_incr(G.c, "n", 1, 9);
    sp_commit_offset(G.c, "t/0", 0, 1, 1);
    assert_int_equal(sp_store_commit_send(st, G.c, err, sizeof(err)), SP_OK);
    assert_int_equal(sp_store_commit_recv(st, err, sizeof(err)), SP_OK);
    sp_store_destroy(st);

    assert_int_equal(exists("sp:{other}:x"), 0);
    freeReplyObject(redisCommand(G.rc, "SELECT 3"));
    assert_field("sp:{other}:x", "n", "9");
    assert_field("sp:{other}:offsets", "t/0", "1");
    freeReplyObject(redisCommand(G.rc, "SELECT 0"));

    cfg_fill(&cfg, 1, "x"); /* nothing listens on port 1 */
    cfg.redis_timeout_ms = 500;
    assert_null(sp_store_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "127.0.0.1:1"));
}

static void test_too_large(void **state) {
    (void)state;
    size_t n = (size_t)1 << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'f', n);
    sp_commit_offset(G.c, "clicks/0", 0, 1, 1);
    sp_commit_hash(G.c, H1, 0);
    for (int i = 0; i < 70; i++) { /* 70 MiB of field names: over the bound */
        big[0] = (char)('A' + i % 26);
        sp_commit_incr(G.c, big, n, 1);
    }
    free(big);
    assert_int_equal(sp_store_commit_send(G.st, G.c, G.err, sizeof(G.err)), SP_ERR_INVALID);
    assert_non_null(strstr(G.err, "too large"));
    assert_int_equal(sp_store_pending(G.st), 0);
    assert_int_equal(exists(H1), 0);
    /* reset clears it; the store is still usable */
    sp_commit_reset(G.c);
    sp_commit_offset(G.c, "clicks/0", 0, 1, 1);
    assert_int_equal(commit(), SP_OK);
    assert_field("sp:{store}:offsets", "clicks/0", "1");
}

/* ---- sp_commit_hash_after: the commit's effect on a hash, without I/O ---- */

typedef struct kvset {
    int n;
    char **kv; /* "<field>\1<value>", sorted */
} kvset_t;

static int kv_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void kv_fill(kvset_t *s, const char *const *f, const char *const *v, int n) {
    s->n = n;
    s->kv = calloc((size_t)n + 1, sizeof(char *));
    assert_non_null(s->kv);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(f[i]) + strlen(v[i]) + 2;
        s->kv[i] = malloc(len);
        assert_non_null(s->kv[i]);
        snprintf(s->kv[i], len, "%s\x01%s", f[i], v[i]);
    }
    qsort(s->kv, (size_t)n, sizeof(char *), kv_cmp);
}

static void kv_free(kvset_t *s) {
    for (int i = 0; i < s->n; i++)
        free(s->kv[i]);
    free(s->kv);
}

static void after_cb(void *opaque, const char *const *f, const char *const *v, int n) {
    kv_fill(opaque, f, v, n);
}

/* HGETALL key through the checking connection. */
static void hgetall(const char *key, kvset_t *out) {
    redisReply *r = redisCommand(G.rc, "HGETALL %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int n = (int)r->elements / 2;
    const char **f = calloc((size_t)n + 1, sizeof(char *)),
               **v = calloc((size_t)n + 1, sizeof(char *));
    assert_true(f && v);
    for (int i = 0; i < n; i++) {
        f[i] = r->element[2 * i]->str;
        v[i] = r->element[2 * i + 1]->str;
    }
    kv_fill(out, f, v, n);
    free(f);
    free(v);
    freeReplyObject(r);
}

/* Predict every key of keys from its contents now and G.c, commit, and
 * compare with what Redis holds. */
static void commit_and_compare(const char *const *keys, int nkeys) {
    kvset_t want[4];
    assert_true(nkeys <= 4);
    for (int k = 0; k < nkeys; k++) {
        kvset_t before;
        hgetall(keys[k], &before);
        const char **f = calloc((size_t)before.n + 1, sizeof(char *));
        const char **v = calloc((size_t)before.n + 1, sizeof(char *));
        assert_true(f && v);
        for (int i = 0; i < before.n; i++) { /* split "<f>\1<v>" */
            char *eq = strchr(before.kv[i], '\x01');
            *eq = '\0';
            f[i] = before.kv[i];
            v[i] = eq + 1;
        }
        memset(&want[k], 0, sizeof(want[k]));
        assert_int_equal(sp_commit_hash_after(G.c, keys[k], strstr(keys[k], ":gauges") != NULL, f,
                                              v, before.n, after_cb, &want[k]),
                         0);
        free(f);
        free(v);
        kv_free(&before);
    }
    assert_int_equal(commit(), SP_OK);
    for (int k = 0; k < nkeys; k++) {
        kvset_t got;
        hgetall(keys[k], &got);
        if (getenv("SP_DEBUG_AFTER")) {
            for (int i = 0; i < got.n; i++)
                fprintf(stderr, "got  %s\n", got.kv[i]);
            for (int i = 0; i < want[k].n; i++)
                fprintf(stderr, "want %s\n", want[k].kv[i]);
        }
        for (int i = 0, j = 0; i < got.n || j < want[k].n;) {
            int c = i == got.n ? 1 : j == want[k].n ? -1 : strcmp(got.kv[i], want[k].kv[j]);
            if (c < 0) fail_msg("%s: Redis has '%s', not predicted", keys[k], got.kv[i]);
            if (c > 0) fail_msg("%s: predicted '%s', not in Redis", keys[k], want[k].kv[j]);
            i++, j++;
        }
        kv_free(&got);
        kv_free(&want[k]);
    }
}

static void test_hash_after(void **state) {
    (void)state;
    const char *keys[] = {H1, "sp:{store}:gauges", "sp:{store}:alerts:outbox"};
    freeReplyObject(redisCommand(G.rc,
                                 "HSET %s orders 312 visits 10000 stale 5 rt:b3 2 rt:bz 1 "
                                 "text hello f 1.5",
                                 H1));
    freeReplyObject(redisCommand(G.rc, "HSET sp:{store}:gauges in_flight 7 open_windows 3"));
    sp_commit_hash(G.c, H1, 0);
    sp_commit_incr(G.c, "sessions", 8, 3);
    sp_commit_incr(G.c, "sessions", 8, 4);
    sp_commit_incr(G.c, "conversions", 11, 1);
    sp_commit_incr(G.c, "f", 1, 1);
    sp_commit_incr(G.c, "g|x=1", 5, 2);
    sp_commit_incr(G.c, "g|x=1", 5, -2); /* per dimension, 0: absent */
    sp_commit_incr(G.c, "z", 1, 0);      /* overall, 0: written */
    sp_commit_incr(G.c, "rt:b5", 5, 3);
    sp_commit_incr(G.c, "rt:b-2", 6, 1);
    sp_commit_hset(G.c, "text", "bye");
    sp_commit_ratio(G.c, "conversion_rate", 'r', "conversions", "sessions");
    sp_commit_ratio(G.c, "conversion_pct", 'p', "conversions", "sessions");
    sp_commit_ratio(G.c, "failed_share", 'f', "conversions", "sessions");
    sp_commit_ratio(G.c, "avg", 'a', "visits", "sessions");
    sp_commit_ratio(G.c, "stale", 'r', "orders", "nothing");
    sp_commit_ratio(G.c, "text_ratio", 'r', "text", "orders");
    sp_commit_quantile(G.c, "rt_p50", "rt", 0.5);
    sp_commit_quantile(G.c, "rt_p90", "rt", 0.9);
    sp_commit_quantile(G.c, "none_p90", "none", 0.9);
    sp_commit_hash(G.c, "sp:{store}:funnel:1m:120000", 0); /* another key: not applied */
    sp_commit_incr(G.c, "sessions", 8, 99);
    sp_commit_hash(G.c, H1, 0); /* a second section of the same key, after */
    sp_commit_incr(G.c, "sessions", 8, -7);
    sp_commit_ratio(G.c, "conversion_rate", 'r', "conversions", "sessions");
    sp_commit_gauge(G.c, "open_windows", 5);
    sp_commit_gauge(G.c, "watermark_ms", 120000);
    sp_commit_hincr(G.c, "sp:{store}:gauges", "in_flight", -2);
    sp_commit_hincr(G.c, "sp:{store}:gauges", "new_one", 4);
    sp_commit_hincr(G.c, "sp:{store}:other", "in_flight", 100);
    sp_commit_hput(G.c, "sp:{store}:alerts:outbox", "a@1", "{\"x\":1}");
    sp_commit_hput(G.c, "sp:{store}:alerts:outbox", "a@1", "{\"x\":2}");
    commit_and_compare(keys, 3);
    /* by hand, a few: sessions 3 + 4 - 7 = 0, so conversion_rate is gone */
    assert_field(H1, "sessions", "0");
    assert_field(H1, "conversion_rate", NULL);
    assert_field(H1, "f", "2.5");
    assert_field(H1, "g|x=1", NULL);
    assert_field(H1, "z", "0");
    assert_field(H1, "text", "bye");
    assert_field("sp:{store}:gauges", "in_flight", "5");
    assert_field("sp:{store}:alerts:outbox", "a@1", "{\"x\":2}");
}

/* Random commits on one hash: the prediction is what Redis holds, every time. */
static void test_hash_after_random(void **state) {
    (void)state;
    static const char *const fields[] = {"a", "b", "c", "d|x=1", "h:b1", "h:b7", "h:b-4", "h:bz"};
    static const char kinds[] = {'r', 'p', 'f', 'a', 'q'};
    const char *keys[] = {H1, "sp:{store}:gauges"};
    unsigned seed = 12345;
    for (int round = 0; round < 500; round++) {
        sp_commit_reset(G.c);
        int nsec = 1 + (int)(rand_r(&seed) % 2);
        for (int s = 0; s < nsec; s++) {
            sp_commit_hash(G.c, H1, 0);
            int nops = 1 + (int)(rand_r(&seed) % 12);
            for (int o = 0; o < nops; o++) {
                const char *f = fields[rand_r(&seed) % 8];
                char fn[32];
                int what = (int)(rand_r(&seed) % 10);
                if (getenv("SP_DEBUG_AFTER")) fprintf(stderr, "op s%d %s %d\n", s, f, what);
                if (what < 4) {
                    sp_commit_incr(G.c, f, strlen(f), (int64_t)(rand_r(&seed) % 21) - 6);
                } else if (what < 5) {
                    /* small steps: per-dimension counters often back at 0 */
                    sp_commit_incr(G.c, f, strlen(f), (int64_t)(rand_r(&seed) % 3) - 1);
                } else if (what < 6) {
                    char v[32];
                    snprintf(v, sizeof(v), "%d", (int)(rand_r(&seed) % 50) - 10);
                    sp_commit_hset(G.c, f, v);
                } else {
                    char kind = kinds[rand_r(&seed) % 5];
                    snprintf(fn, sizeof(fn), "ratio_%c%d", kind, (int)(rand_r(&seed) % 4));
                    if (rand_r(&seed) % 6 == 0) /* over a counter or a histogram bucket */
                        snprintf(fn, sizeof(fn), "%s", fields[rand_r(&seed) % 8]);
                    if (getenv("SP_DEBUG_AFTER")) fprintf(stderr, "  ratio %s %c\n", fn, kind);
                    if (kind == 'q')
                        sp_commit_quantile(G.c, fn, "h", (double)(rand_r(&seed) % 101) / 100);
                    else
                        sp_commit_ratio(G.c, fn, kind, f, fields[rand_r(&seed) % 8]);
                }
            }
        }
        if (rand_r(&seed) % 3 == 0) {
            sp_commit_gauge(G.c, "g1", (int64_t)(rand_r(&seed) % 100));
            sp_commit_hincr(G.c, keys[1], "g2", (int64_t)(rand_r(&seed) % 9) - 4);
        }
        commit_and_compare(keys, 2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_reject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratios, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avg_rounding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pexpire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_pointer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_gauges_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mget_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noscript_then_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_after_random, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
