/* offsets.c -- `storepulse offsets`: where every input partition stands,
 * and the operator's way to move the checkpoint.
 *
 * What it does
 *  - For every partition of the input topics (the cluster's metadata, plus
 *    partitions Redis holds an offset for that the cluster no longer has):
 *    the offset stored in Redis (sp:{NS}:offsets, the checkpoint the
 *    pipeline resumes from), the consumer group's committed offset in Kafka
 *    (a copy for lag tools), the log start and end, the lag and a status:
 *    ok, new (no stored offset), behind checkpoint (the log ends below the
 *    stored offset: the pipeline stops that partition), before log start
 *    (messages deleted unread), no such partition.
 *  - `--reset TOPIC[/PARTITION] --to earliest|latest|TIME` sets the stored
 *    offset of those partitions to the log start, the log end, or the first
 *    offset at or after TIME (rd_kafka_offsets_for_times; a time after the
 *    last message gives the log end), deletes their stored max event time
 *    (sp:{NS}:wm: the partition holds the pipeline's watermark until its
 *    first event, as a new one does), all in one MULTI/EXEC, and commits
 *    the same offsets to the consumer group (best effort: Redis is the
 *    checkpoint). It prints old -> new per partition.
 *  - A reset is refused while anyone holds the namespace lease
 *    (sp:{NS}:owner): the tool takes the lease itself for the write, so an
 *    instance starting meanwhile waits as a standby and then loads the new
 *    offsets.
 *
 * What it deliberately does not do: touch the pipeline's watermark, window
 * counters or entity state. What a reset means for the counters (events
 * read again are dropped as duplicates within dedup.max_ids or late when
 * their window is closed; skipped ones are never counted) is the
 * operator's call; README.md, "Operations", says it. */
#include "core/offsets.h"

#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregators/import.h"
#include "aggregators/store.h"
#include "core/broker.h"
#include "core/config.h"
#include "core/err.h"

#define MAX_RESETS 64
#define MAX_PARTS  65536
#define TIMEOUT_MS 10000

typedef struct opart {
    int topic_idx; /* index into cfg->topics */
    int32_t partition;
    char field[300];                   /* "topic/partition" */
    int in_cluster;                    /* the cluster's metadata has it */
    int64_t stored, committed, lo, hi; /* -1: none / unknown */
    int log_ok;
    int selected;    /* named by a --reset */
    int64_t new_off; /* the reset's target */
    const char *how;
} opart_t;

typedef struct oparts {
    opart_t *p;
    int n, cap;
} oparts_t;

static opart_t *oparts_add(oparts_t *ps, int ti, int32_t partition, const char *topic) {
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].topic_idx == ti && ps->p[i].partition == partition) return &ps->p[i];
    if (ps->n >= MAX_PARTS) return NULL;
    if (ps->n == ps->cap) {
        int nc = ps->cap ? ps->cap * 2 : 64;
        opart_t *np = realloc(ps->p, (size_t)nc * sizeof(*np));
        if (!np) return NULL;
        ps->p = np;
        ps->cap = nc;
    }
    opart_t *o = &ps->p[ps->n++];
    memset(o, 0, sizeof(*o));
    o->topic_idx = ti;
    o->partition = partition;
    snprintf(o->field, sizeof(o->field), "%s/%d", topic, (int)partition);
    o->stored = o->committed = o->lo = o->hi = o->new_off = -1;
    return o;
}

static int opart_cmp(const void *a, const void *b) {
    const opart_t *x = a, *y = b;
    if (x->topic_idx != y->topic_idx) return x->topic_idx < y->topic_idx ? -1 : 1;
    return x->partition < y->partition ? -1 : x->partition > y->partition;
}

static int input_topic(const sp_config_t *cfg, const char *name, size_t len) {
    for (int s = 0; s < SP_STREAM__COUNT; s++)
        if (strlen(cfg->topics[s].name) == len && !strncmp(cfg->topics[s].name, name, len))
            return s;
    return -1;
}

/* A consumer with the config's kafka.* properties; it joins no group, but
 * group.id lets it read and write the group's committed offsets. */
static rd_kafka_t *offsets_consumer(const sp_config_t *cfg, char *err, size_t errsz) {
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char e[512];
    for (int i = 0; i < cfg->kafka_cnt; i++)
        if (rd_kafka_conf_set(kc, cfg->kafka[i].key, cfg->kafka[i].value, e, sizeof(e)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(err, errsz, "kafka.%s: %s", cfg->kafka[i].key, e);
            rd_kafka_conf_destroy(kc);
            return NULL;
        }
    if (rd_kafka_conf_set(kc, "enable.auto.commit", "false", e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errsz, "%s", e);
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e));
    if (!rk) snprintf(err, errsz, "%s", e);
    return rk;
}

/* The partitions of the input topics from the cluster. */
static int load_metadata(const sp_config_t *cfg, rd_kafka_t *rk, oparts_t *ps, char *err,
                         size_t errsz) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, TIMEOUT_MS);
    if (e) {
        snprintf(err, errsz, "reading the cluster's metadata: %s", rd_kafka_err2str(e));
        return SP_ERR_IO;
    }
    int rc = SP_OK;
    for (int t = 0; t < md->topic_cnt && rc == SP_OK; t++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[t];
        int ti = input_topic(cfg, mt->topic, strlen(mt->topic));
        if (ti < 0 || mt->err) continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            opart_t *o = oparts_add(ps, ti, mt->partitions[p].id, mt->topic);
            if (!o) {
                snprintf(err, errsz, "out of memory (or over %d partitions)", MAX_PARTS);
                rc = SP_ERR_NOMEM;
                break;
            }
            o->in_cluster = 1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Stored offsets of input partitions the cluster does not have. */
typedef struct {
    const sp_config_t *cfg;
    oparts_t *ps;
    int oom;
} stored_ctx_t;

static void stored_cb(void *opaque, int idx, const char *const *fields, const char *const *values,
                      int count) {
    stored_ctx_t *c = opaque;
    (void)idx, (void)values;
    for (int i = 0; i < count; i++) {
        const char *slash = strrchr(fields[i], '/');
        if (!slash || !slash[1]) continue;
        char *end;
        long p = strtol(slash + 1, &end, 10);
        int ti = input_topic(c->cfg, fields[i], (size_t)(slash - fields[i]));
        if (*end || p < 0 || p > INT32_MAX || ti < 0) continue;
        if (!oparts_add(c->ps, ti, (int32_t)p, c->cfg->topics[ti].name)) c->oom = 1;
    }
}

static const char *status_of(const opart_t *o) {
    if (!o->in_cluster) return "no such partition in the cluster";
    if (!o->log_ok) return "log offsets unknown";
    if (o->stored < 0) return "new (starts at kafka.auto.offset.reset)";
    if (o->hi < o->stored) return "BEHIND CHECKPOINT: the log ends below the stored offset";
    if (o->stored < o->lo) return "before log start: messages deleted unread";
    return "ok";
}

static void print_off(int64_t v, int width) {
    if (v < 0)
        printf(" %*s", width, "-");
    else
        printf(" %*lld", width, (long long)v);
}

static void print_table(const sp_config_t *cfg, const oparts_t *ps, const char *holder) {
    printf("namespace %s, consumer group %s, lease %s%s\n", cfg->ns,
           sp_config_kafka_get(cfg, "group.id") ? sp_config_kafka_get(cfg, "group.id") : "-",
           holder[0] ? "held by " : "free", holder);
    printf("%-32s %12s %12s %12s %12s %10s  %s\n", "PARTITION", "STORED", "COMMITTED", "LOG-START",
           "LOG-END", "LAG", "STATUS");
    for (int i = 0; i < ps->n; i++) {
        const opart_t *o = &ps->p[i];
        printf("%-32s", o->field);
        print_off(o->stored, 12);
        print_off(o->committed, 12);
        print_off(o->log_ok ? o->lo : -1, 12);
        print_off(o->log_ok ? o->hi : -1, 12);
        print_off(o->log_ok && o->stored >= 0 && o->hi >= o->stored ? o->hi - o->stored : -1, 10);
        printf("  %s\n", status_of(o));
    }
}

/* TOPIC or TOPIC/PARTITION: mark the partitions it names. */
static int select_target(const sp_config_t *cfg, oparts_t *ps, const char *arg, char *err,
                         size_t errsz) {
    const char *slash = strrchr(arg, '/');
    size_t tlen = strlen(arg);
    long part = -1;
    int ti = input_topic(cfg, arg, tlen);
    if (ti < 0 && slash) { /* a topic name may hold '/' only if it is an input topic as is */
        char *end;
        part = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || part < 0 || part > INT32_MAX) {
            snprintf(err, errsz, "--reset %s: expected TOPIC or TOPIC/PARTITION", arg);
            return SP_ERR_INVALID;
        }
        tlen = (size_t)(slash - arg);
        ti = input_topic(cfg, arg, tlen);
    }
    if (ti < 0) {
        size_t o =
            (size_t)snprintf(err, errsz, "--reset %s: not an input topic of this config (", arg);
        for (int s = 0; s < SP_STREAM__COUNT && o < errsz; s++)
            o += (size_t)snprintf(err + o, errsz - o, "%s%s", s ? ", " : "", cfg->topics[s].name);
        if (o < errsz) snprintf(err + o, errsz - o, ")");
        return SP_ERR_INVALID;
    }
    int found = 0;
    for (int i = 0; i < ps->n; i++) {
        opart_t *o = &ps->p[i];
        if (o->topic_idx != ti || (part >= 0 && o->partition != part) || !o->in_cluster) continue;
        o->selected = 1;
        found++;
    }
    if (!found) {
        snprintf(err, errsz, "--reset %s: no such partition in the cluster", arg);
        return SP_ERR_INVALID;
    }
    return SP_OK;
}

/* The new offset of every selected partition. */
static int compute_targets(rd_kafka_t *rk, const sp_config_t *cfg, oparts_t *ps, const char *to,
                           char *err, size_t errsz) {
    int64_t ts = -1;
    const char *why = NULL;
    int by_time = strcmp(to, "earliest") && strcmp(to, "latest");
    if (by_time && sp_import_parse_time(to, strlen(to), &ts, &why) != 0) {
        snprintf(err, errsz,
                 "--to %s: expected earliest, latest or an ISO 8601 time with a zone "
                 "(2026-12-07T09:30:00Z)",
                 to);
        return SP_ERR_INVALID;
    }
    for (int i = 0; i < ps->n; i++) {
        opart_t *o = &ps->p[i];
        if (!o->selected) continue;
        if (!o->log_ok) {
            snprintf(err, errsz, "%s: its log offsets could not be read", o->field);
            return SP_ERR_IO;
        }
        o->new_off = !strcmp(to, "latest") ? o->hi : o->lo;
        o->how = !strcmp(to, "latest") ? "log end" : "log start";
    }
    if (!by_time) return SP_OK;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].selected)
            rd_kafka_topic_partition_list_add(l, cfg->topics[ps->p[i].topic_idx].name,
                                              ps->p[i].partition)
                ->offset = ts;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, l, TIMEOUT_MS);
    int rc = SP_OK;
    if (e) {
        snprintf(err, errsz, "offsets for time %s: %s", to, rd_kafka_err2str(e));
        rc = SP_ERR_IO;
    }
    for (int i = 0; rc == SP_OK && i < ps->n; i++) {
        opart_t *o = &ps->p[i];
        if (!o->selected) continue;
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(l, cfg->topics[o->topic_idx].name, o->partition);
        if (!tp || tp->err) {
            snprintf(err, errsz, "%s: offset for time %s: %s", o->field, to,
                     tp ? rd_kafka_err2str(tp->err) : "not in the reply");
            rc = SP_ERR_IO;
        } else if (tp->offset < 0) { /* no message at or after it */
            o->new_off = o->hi;
            o->how = "log end: no message at or after that time";
        } else {
            o->new_off = tp->offset < o->lo ? o->lo : tp->offset;
            o->how = "first message at or after that time";
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* Write the new offsets (and forget the max event times) under our own
 * lease, then commit them to the consumer group. */
static int apply_reset(sp_store_t *st, rd_kafka_t *rk, const sp_config_t *cfg, oparts_t *ps,
                       char *err, size_t errsz) {
    char owner[128], host[64] = "host", holder[128], okey[128], wkey[128];
    int held = 0, n = 0, rc = SP_OK;
    const char **fields = calloc((size_t)ps->n + 1, sizeof(*fields));
    char **values = calloc((size_t)ps->n + 1, sizeof(*values));
    if (!fields || !values) {
        snprintf(err, errsz, "out of memory");
        rc = SP_ERR_NOMEM;
        goto out;
    }
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(owner, sizeof(owner), "storepulse-offsets:%s:%ld", host, (long)getpid());
    sp_store_set_owner(st, owner, 30000);
    if ((rc = sp_store_lease(st, 1, &held, holder, sizeof(holder), err, errsz)) != SP_OK) goto out;
    if (!held) {
        snprintf(err, errsz,
                 "refused: namespace %s is worked by %s (lease sp:{%s}:owner); stop every "
                 "instance of it first, then reset",
                 cfg->ns, holder, cfg->ns);
        rc = SP_ERR_INVALID;
        goto out;
    }
    for (int i = 0; i < ps->n; i++) {
        if (!ps->p[i].selected) continue;
        fields[n] = ps->p[i].field;
        if (!(values[n] = malloc(24))) {
            snprintf(err, errsz, "out of memory");
            rc = SP_ERR_NOMEM;
            goto release;
        }
        snprintf(values[n], 24, "%lld", (long long)ps->p[i].new_off);
        n++;
    }
    snprintf(okey, sizeof(okey), "%s:offsets", sp_store_ns(st));
    snprintf(wkey, sizeof(wkey), "%s:wm", sp_store_ns(st));
    sp_hwrite_t w[2] = {{okey, 0, n, fields, (const char *const *)values},
                        {wkey, 1, n, fields, NULL}};
    rc = sp_store_hwrite(st, w, 2, err, errsz);
release:
    if (sp_store_lease_release(st, holder, sizeof(holder)) != SP_OK)
        fprintf(stderr, "storepulse offsets: releasing the lease: %s (it expires in 30 s)\n",
                holder);
    if (rc != SP_OK) goto out;

    /* Kafka's copy, for lag tools: only a group without members takes it. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n ? n : 1);
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].selected)
            rd_kafka_topic_partition_list_add(l, cfg->topics[ps->p[i].topic_idx].name,
                                              ps->p[i].partition)
                ->offset = ps->p[i].new_off;
    rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
    for (int i = 0; !e && i < l->cnt; i++)
        if (l->elems[i].err) e = l->elems[i].err;
    if (e)
        fprintf(stderr,
                "storepulse offsets: warning: committing to consumer group %s: %s (Redis holds "
                "the checkpoint; the pipeline commits to the group after its next batch)\n",
                sp_config_kafka_get(cfg, "group.id"), rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
out:
    if (values)
        for (int i = 0; i < n; i++)
            free(values[i]);
    free(values);
    free(fields);
    return rc;
}

static void offsets_usage(FILE *out) {
    fputs("usage: storepulse offsets -c FILE [-b BROKERS | --bootstrap-file F]\n"
          "       storepulse offsets -c FILE [...] --reset TOPIC[/PARTITION] [--reset ...]\n"
          "                          --to earliest|latest|TIME [--dry-run]\n"
          "\n"
          "Without --reset: for every partition of the input topics, the offset stored in\n"
          "Redis (the checkpoint `run` resumes from), the consumer group's committed\n"
          "offset, the log start and end, the lag and a status:\n"
          "  ok; new (no stored offset yet); BEHIND CHECKPOINT (the log ends below the\n"
          "  stored offset: topic re-created or cluster replaced; `run` stops the\n"
          "  partition until it is reset); before log start (messages deleted unread);\n"
          "  no such partition in the cluster.\n"
          "\n"
          "  -c, --config FILE        config file (namespace, redis.*, kafka.*, topics.*)\n"
          "  -b, --brokers ADDR       bootstrap servers (overrides kafka.bootstrap.servers)\n"
          "      --bootstrap-file F   read the bootstrap servers from F (see `storepulse broker`)\n"
          "      --reset T[/P]        the partitions to reset: an input topic, or one partition\n"
          "                           of it; repeat for more\n"
          "      --to WHERE           earliest (log start), latest (log end), or an ISO 8601\n"
          "                           time with a zone (2026-12-07T09:30:00Z): the first offset\n"
          "                           at or after it (the log end if none)\n"
          "      --dry-run            print what would change, change nothing\n"
          "  -h, --help               this help\n"
          "\n"
          "A reset writes the new offsets into Redis (and forgets those partitions' max\n"
          "event time), then commits them to the consumer group. It is refused while an\n"
          "instance holds the namespace lease: stop every instance first. Exit status: 0,\n"
          "1 on errors or a refused reset, 2 on bad usage.\n",
          out);
}

int sp_offsets_main(int argc, char **argv) {
    enum { O_BOOTFILE = 256, O_RESET, O_TO, O_DRY };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"brokers", required_argument, NULL, 'b'},
        {"bootstrap-file", required_argument, NULL, O_BOOTFILE},
        {"reset", required_argument, NULL, O_RESET},
        {"to", required_argument, NULL, O_TO},
        {"dry-run", no_argument, NULL, O_DRY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *brokers = NULL, *bootstrap_file = NULL, *to = NULL;
    const char *resets[MAX_RESETS];
    int nresets = 0, dry = 0, opt, ret = 1;
    char err[1024], brokers_buf[1024], holder[128] = "";
    static sp_config_t cfg; /* large */
    rd_kafka_t *rk = NULL;
    sp_store_t *st = NULL;
    oparts_t ps = {0};
    int64_t *stored = NULL, *maxet = NULL;
    const char **fields = NULL;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "c:b:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'b': brokers = optarg; break;
        case O_BOOTFILE: bootstrap_file = optarg; break;
        case O_RESET:
            if (nresets == MAX_RESETS) {
                fprintf(stderr, "storepulse offsets: at most %d --reset\n", MAX_RESETS);
                return 2;
            }
            resets[nresets++] = optarg;
            break;
        case O_TO: to = optarg; break;
        case O_DRY: dry = 1; break;
        case 'h': offsets_usage(stdout); return 0;
        default: offsets_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "storepulse offsets: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (brokers && bootstrap_file) {
        fprintf(stderr, "storepulse offsets: --brokers and --bootstrap-file exclude each other\n");
        return 2;
    }
    if ((nresets > 0) != (to != NULL) || (dry && !nresets)) {
        fprintf(stderr, "storepulse offsets: --reset and --to go together (--dry-run with them)\n");
        return 2;
    }
    if (to && strcmp(to, "earliest") && strcmp(to, "latest")) {
        int64_t ts;
        const char *why;
        if (sp_import_parse_time(to, strlen(to), &ts, &why) != 0) {
            fprintf(stderr,
                    "storepulse offsets: --to %s: expected earliest, latest or an ISO 8601 time "
                    "with a zone (2026-12-07T09:30:00Z)\n",
                    to);
            return 2;
        }
    }
    sp_config_defaults(&cfg);
    if (sp_config_load(&cfg, config_path, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "storepulse offsets: %s\n", err);
        return 2;
    }
    if (bootstrap_file) {
        if (sp_broker_read_bootstrap_file(bootstrap_file, brokers_buf, sizeof(brokers_buf), 10000,
                                          NULL) != 0) {
            fprintf(stderr, "storepulse offsets: cannot read the bootstrap servers from %s\n",
                    bootstrap_file);
            return 1;
        }
        brokers = brokers_buf;
    }
    if (brokers) sp_config_kafka_set(&cfg, "bootstrap.servers", brokers);
    signal(SIGPIPE, SIG_IGN);

    if (!(rk = offsets_consumer(&cfg, err, sizeof(err)))) goto fail;
    if (!(st = sp_store_new(&cfg, err, sizeof(err)))) goto fail;
    if (load_metadata(&cfg, rk, &ps, err, sizeof(err)) != SP_OK) goto fail;
    {
        char key[128];
        const char *keys[1] = {key};
        stored_ctx_t sc = {&cfg, &ps, 0};
        snprintf(key, sizeof(key), "%s:offsets", sp_store_ns(st));
        if (sp_store_hgetall(st, keys, 1, stored_cb, &sc, err, sizeof(err)) != SP_OK) goto fail;
        if (sc.oom) {
            snprintf(err, sizeof(err), "out of memory (or over %d partitions)", MAX_PARTS);
            goto fail;
        }
    }
    qsort(ps.p, (size_t)ps.n, sizeof(*ps.p), opart_cmp);
    stored = calloc((size_t)ps.n + 1, sizeof(*stored));
    maxet = calloc((size_t)ps.n + 1, sizeof(*maxet));
    fields = calloc((size_t)ps.n + 1, sizeof(*fields));
    if (!stored || !maxet || !fields) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    for (int i = 0; i < ps.n; i++)
        fields[i] = ps.p[i].field;
    if (ps.n && sp_store_load_offsets(st, fields, ps.n, stored, maxet, err, sizeof(err)) != SP_OK)
        goto fail;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ps.n ? ps.n : 1);
    for (int i = 0; i < ps.n; i++) {
        opart_t *o = &ps.p[i];
        o->stored = stored[i];
        if (!o->in_cluster) continue;
        rd_kafka_topic_partition_list_add(l, cfg.topics[o->topic_idx].name, o->partition);
        if (rd_kafka_query_watermark_offsets(rk, cfg.topics[o->topic_idx].name, o->partition,
                                             &o->lo, &o->hi, TIMEOUT_MS) == 0)
            o->log_ok = 1;
    }
    if (l->cnt && rd_kafka_committed(rk, l, TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < ps.n; i++) {
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(
                l, cfg.topics[ps.p[i].topic_idx].name, ps.p[i].partition);
            if (tp && !tp->err && tp->offset >= 0) ps.p[i].committed = tp->offset;
        }
    rd_kafka_topic_partition_list_destroy(l);
    {
        int held = 0;
        sp_store_set_owner(st, "storepulse-offsets:reading", 1);
        if (sp_store_lease(st, 0, &held, holder, sizeof(holder), err, sizeof(err)) != SP_OK)
            goto fail;
    }

    if (!nresets) {
        print_table(&cfg, &ps, holder);
        ret = 0;
        goto out;
    }
    for (int i = 0; i < nresets; i++)
        if (select_target(&cfg, &ps, resets[i], err, sizeof(err)) != SP_OK) {
            fprintf(stderr, "storepulse offsets: %s\n", err);
            ret = 2;
            goto out;
        }
    if (compute_targets(rk, &cfg, &ps, to, err, sizeof(err)) != SP_OK) goto fail;
    if (!dry && apply_reset(st, rk, &cfg, &ps, err, sizeof(err)) != SP_OK) goto fail;
    for (int i = 0; i < ps.n; i++) {
        const opart_t *o = &ps.p[i];
        if (!o->selected) continue;
        char old[24] = "-";
        if (o->stored >= 0) snprintf(old, sizeof(old), "%lld", (long long)o->stored);
        printf("%s%s: %s -> %lld (%s; log %lld..%lld)\n", dry ? "would reset " : "", o->field, old,
               (long long)o->new_off, o->how, (long long)o->lo, (long long)o->hi);
    }
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "storepulse offsets: %s\n", err);
    ret = 1;
out:
    free(stored);
    free(maxet);
    free(fields);
    free(ps.p);
    sp_store_destroy(st);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return ret;
}
