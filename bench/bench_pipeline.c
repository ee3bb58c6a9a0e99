/* bench_pipeline.c -- in-process "decode + aggregate" throughput on one core.
 *
 * What it measures (SPEC §8, first target: >= 1 M events/s on one core):
 *   (a) baseline: sp_decoder_decode() alone over the generator's messages --
 *       the avro-c-equivalent cost every consumer pays;
 *   (b) full: what core/run.c's process_batch() does per batch, minus Kafka
 *       and Redis I/O: decode, admit, event-id dedup, want (prefetch keys),
 *       the prefetch reply answered "absent" for every wanted key (what Redis
 *       says for new entities), apply, advance the watermark, and build the
 *       batch's commit (counters, closes, entity state, offsets, health) into
 *       an sp_commit_t. Batches of --batch messages (default 10,000 =
 *       pipeline.batch_max).
 * Reported: events/s of each (median over --runs), the ratio full/baseline,
 * and the Redis commands the built commits would run per event
 * (sp_commit_command_estimate), an in-process proxy of the "<= 1 command per
 * event" target.
 *
 * How: N messages are pre-generated with sp_gen (Confluent framing + Avro,
 * deterministic seed, --rate events/s of event time, 1 % duplicates) into one
 * flat buffer, so the timed loops read memory only. Each message gets a
 * partition from a hash of its key (like Kafka's key partitioner) over
 * --partitions partitions per topic; those partitions are registered with the
 * engine. Event time starts at a fixed epoch far enough in the past that the
 * decoder's "future timestamp" check never triggers. Each timed run starts
 * from fresh state (decoder, dedup set, engine, arena, commit) built outside
 * the timed region; one untimed warm-up pass runs first.
 *
 * Not measured: Kafka fetch, Redis round trips (see bench_e2e.sh). The
 * process is expected to be pinned to one core by the caller (taskset -c 0);
 * it is single-threaded anyway.
 *
 * Usage: bench_pipeline [--events N] [--runs R] [--rate EV_PER_S]
 *                       [--batch B] [--partitions P] [--schemas DIR]
 * Run from the repository root (schemas/ there) or pass --schemas. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggregators/engine.h"
#include "aggregators/store.h"
#include "consumers/decode.h"
#include "consumers/dedup.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/log.h"
#include "producers/gen.h"

#define START_MS 1700000000000LL /* 2023-11-14T22:13:20Z */

typedef struct msgs {
    size_t n;
    unsigned char *blob; /* all values back to back */
    size_t *off;
    uint32_t *len;
    uint8_t *stream;
    uint16_t *part;
    size_t bytes;
    int64_t last_et;
} msgs_t;

typedef struct opts {
    size_t events;
    int runs;
    double rate;
    int batch;
    int partitions;
    unsigned streams; /* bits (1u << sp_stream_t) */
} opts_t;

typedef struct result {
    double secs;
    uint64_t decoded, applied, dups, late, poison, commits, commands;
} result_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int generate(const sp_config_t *cfg, const opts_t *o, msgs_t *m) {
    char err[512];
    sp_gen_opts_t go = {.seed = 42, .start_ms = START_MS, .rate = o->rate, .duplicates = 0.01,
                        .format = (sp_format_t)-1, .warm_start = 0,
                        .streams = o->streams};
    sp_gen_t *g = sp_gen_new(cfg, &go, err, sizeof(err));
    if (!g) {
        fprintf(stderr, "bench_pipeline: generator: %s\n", err);
        return -1;
    }
    size_t cap = o->events * 128;
    m->n = o->events;
    m->blob = malloc(cap);
    m->off = malloc(o->events * sizeof(*m->off));
    m->len = malloc(o->events * sizeof(*m->len));
    m->stream = malloc(o->events);
    m->part = malloc(o->events * sizeof(*m->part));
    if (!m->blob || !m->off || !m->len || !m->stream || !m->part) {
        fprintf(stderr, "bench_pipeline: out of memory for %zu messages\n", o->events);
        sp_gen_destroy(g);
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < o->events; i++) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen;
        int64_t et;
        if (sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &et) != 0) {
            fprintf(stderr, "bench_pipeline: generator: %s\n", sp_gen_errstr(g));
            sp_gen_destroy(g);
            return -1;
        }
        if (used + vallen > cap) {
            size_t ncap = cap * 2 + vallen;
            unsigned char *nb = realloc(m->blob, ncap);
            if (!nb) {
                fprintf(stderr, "bench_pipeline: out of memory\n");
                sp_gen_destroy(g);
                return -1;
            }
            m->blob = nb;
            cap = ncap;
        }
        memcpy(m->blob + used, val, vallen);
        m->off[i] = used;
        m->len[i] = (uint32_t)vallen;
        m->stream[i] = (uint8_t)st;
        m->part[i] = (uint16_t)(sp_hash64(key, keylen, 7) % (uint64_t)o->partitions);
        used += vallen;
        m->last_et = et;
    }
    m->bytes = used;
    sp_gen_destroy(g);
    return 0;
}

/* (a) decode only, batch by batch (arena reset per batch as in the run loop). */
__attribute__((noinline)) static int run_decode(const sp_config_t *cfg, const opts_t *o, const msgs_t *m, int64_t now,
                      result_t *r) {
    char err[512], why[256];
    sp_decoder_t *dec = sp_decoder_new(cfg, err, sizeof(err));
    sp_arena_t *arena = sp_arena_new(1 << 20);
    sp_event_t *evs = calloc((size_t)o->batch, sizeof(*evs));
    if (!dec || !arena || !evs) {
        fprintf(stderr, "bench_pipeline: set-up: %s\n", dec ? "out of memory" : err);
        sp_decoder_destroy(dec);
        sp_arena_destroy(arena);
        free(evs);
        return -1;
    }
    memset(r, 0, sizeof(*r));
    double t0 = now_s();
    for (size_t b = 0; b < m->n; b += (size_t)o->batch) {
        size_t e = b + (size_t)o->batch < m->n ? b + (size_t)o->batch : m->n;
        sp_arena_reset(arena);
        for (size_t i = b; i < e; i++) {
            sp_dlq_reason_t reason = SP_DLQ_NONE;
            int rc = sp_decoder_decode(dec, (sp_stream_t)m->stream[i], SP_FORMAT_AVRO,
                                       m->blob + m->off[i], m->len[i], now, arena, &evs[i - b],
                                       &reason, why, sizeof(why));
            if (rc == SP_OK) r->decoded++;
            else r->poison++;
        }
    }
    r->secs = now_s() - t0;
    sp_decoder_destroy(dec);
    sp_arena_destroy(arena);
    free(evs);
    return 0;
}

/* (b) the run loop's per-batch work without I/O. */
__attribute__((noinline)) static int run_full(const sp_config_t *cfg, const opts_t *o, const msgs_t *m, int64_t now,
                    result_t *r) {
    char err[512], why[256], field[300];
    sp_decoder_t *dec = sp_decoder_new(cfg, err, sizeof(err));
    sp_engine_t *eng = dec ? sp_engine_new(cfg, err, sizeof(err)) : NULL;
    sp_dedup_t *dd = sp_dedup_new((size_t)cfg->dedup_max_ids);
    sp_commit_t *c = sp_commit_new();
    sp_arena_t *arena = sp_arena_new(1 << 20);
    sp_event_t *evs = calloc((size_t)o->batch, sizeof(*evs));
    uint64_t *evhash = malloc((size_t)o->batch * sizeof(*evhash));
    int np = SP_STREAM__COUNT * o->partitions; /* every stream has o->partitions */
    int64_t *committed = malloc((size_t)np * sizeof(*committed));
    int64_t *next = malloc((size_t)np * sizeof(*next));
    int rc = -1;
    if (!dec || !eng || !dd || !c || !arena || !evs || !evhash || !committed || !next) {
        fprintf(stderr, "bench_pipeline: set-up: %s\n", dec && eng ? "out of memory" : err);
        goto out;
    }
    for (int t = 0; t < SP_STREAM__COUNT; t++)
        if (o->streams & (1u << t))
            for (int p = 0; p < o->partitions; p++) sp_engine_partition_add(eng, t, p, -1, now);
    for (int k = 0; k < np; k++) committed[k] = next[k] = -1;
    /* Per-partition offsets: message i's offset is its ordinal in its partition. */
    int64_t *poff = calloc((size_t)np, sizeof(*poff));
    if (!poff) goto out;

    memset(r, 0, sizeof(*r));
    double t0 = now_s();
    for (size_t b = 0; b < m->n; b += (size_t)o->batch) {
        size_t e = b + (size_t)o->batch < m->n ? b + (size_t)o->batch : m->n;
        int nev = 0;
        uint64_t h_decoded = 0, h_late = 0, h_dup = 0;
        sp_arena_reset(arena);
        for (size_t i = b; i < e; i++) {
            int ti = m->stream[i], pk = ti * o->partitions + m->part[i];
            int64_t offset = poff[pk]++;
            next[pk] = offset + 1;
            sp_event_t *ev = &evs[nev];
            sp_dlq_reason_t reason = SP_DLQ_NONE;
            int drc = sp_decoder_decode(dec, (sp_stream_t)ti, SP_FORMAT_AVRO, m->blob + m->off[i],
                                        m->len[i], now, arena, ev, &reason, why, sizeof(why));
            if (drc != SP_OK) {
                r->poison++;
                continue;
            }
            ev->topic_idx = ti;
            ev->partition = m->part[i];
            ev->offset = offset;
            h_decoded++;
            if (sp_engine_admit(eng, ev) == SP_ERR_LATE) {
                h_late++;
                continue;
            }
            sp_str_t id = ev->s[SP_S_EVENT_ID];
            evhash[nev] = sp_hash64(id.p, id.len, 0x1d);
            sp_dedup_prefetch(dd, evhash[nev]);
            nev++;
        }
        int kept = 0; /* as the run loop: repeated ids once the batch is decoded */
        for (int k = 0; k < nev; k++) {
            if (sp_dedup_seen(dd, evhash[k])) {
                h_dup++;
                continue;
            }
            if (kept != k) evs[kept] = evs[k];
            sp_engine_want(eng, &evs[kept++]);
        }
        nev = kept;
        /* Prefetch reply: every wanted entity is new (absent in Redis). */
        int nwant = sp_engine_want_count(eng);
        for (int k = 0; k < nwant; k++) sp_engine_fetched(eng, k, NULL, 0);
        for (int k = 0; k < nev; k++)
            if (sp_engine_apply(eng, &evs[k]) == SP_ERR_DUPLICATE) h_dup++;
        sp_engine_advance(eng, now);

        sp_commit_reset(c);
        sp_engine_build_commit(eng, c);
        for (int k = 0; k < np; k++) {
            if (next[k] == committed[k]) continue;
            int ti = k / o->partitions, p = k % o->partitions;
            snprintf(field, sizeof(field), "%s/%d", cfg->topics[ti].name, p);
            sp_commit_offset(c, field, committed[k], next[k], sp_engine_partition_max_et(eng, ti, p));
            committed[k] = next[k];
        }
        sp_commit_health(c, "decoded", (int64_t)h_decoded);
        if (h_late) sp_commit_health(c, "late_events", (int64_t)h_late);
        if (h_dup) sp_commit_health(c, "duplicates", (int64_t)h_dup);
        sp_commit_health(c, "commits", 1);
        sp_commit_publish(c, "{\"ns\":\"store\"}");
        r->commands += (uint64_t)sp_commit_command_estimate(c);
        r->commits++;
        r->decoded += h_decoded;
        r->late += h_late;
        r->dups += h_dup;
        r->applied += (uint64_t)nev;
    }
    r->secs = now_s() - t0;
    free(poff);
    rc = 0;
out:
    sp_decoder_destroy(dec);
    sp_engine_destroy(eng);
    sp_dedup_destroy(dd);
    sp_commit_destroy(c);
    sp_arena_destroy(arena);
    free(evs);
    free(evhash);
    free(committed);
    free(next);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_pipeline [--events N] [--runs R] [--rate EV_PER_S] [--batch B]\n"
               "                      [--partitions P] [--schemas DIR] [--streams S,S]\n"
               "defaults: 2000000 events, 5 runs, rate 50, batch 10000, 8 partitions, "
               "schemas ./schemas, all four streams\n"
               "env: SP_BENCH_CACHE_IDLE_OFF=1 keeps every entity in memory (no state.cache_idle)\n");
}

int main(int argc, char **argv) {
    static const struct option lo[] = {{"events", required_argument, 0, 'n'},
                                       {"runs", required_argument, 0, 'r'},
                                       {"rate", required_argument, 0, 'R'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"partitions", required_argument, 0, 'p'},
                                       {"schemas", required_argument, 0, 's'},
                                       {"streams", required_argument, 0, 'S'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    opts_t o = {.events = 2000000, .runs = 5, .rate = 50, .batch = 10000, .partitions = 8,
                .streams = (1u << SP_STREAM__COUNT) - 1};
    static sp_config_t cfg;
    char err[1024];
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'n': o.events = strtoull(optarg, NULL, 10); break;
        case 'r': o.runs = atoi(optarg); break;
        case 'R': o.rate = strtod(optarg, NULL); break;
        case 'b': o.batch = atoi(optarg); break;
        case 'p': o.partitions = atoi(optarg); break;
        case 's': setenv("STOREPULSE_SCHEMAS_DIR", optarg, 1); break;
        case 'S':
            if (sp_gen_parse_streams(optarg, &o.streams) != 0) {
                fprintf(stderr, "bench_pipeline: --streams: unknown stream in '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (o.events == 0 || o.runs < 1 || o.runs > 99 || !(o.rate > 0) || o.batch < 1 ||
        o.partitions < 1 || o.partitions > 1024) {
        usage(stderr);
        return 2;
    }
    sp_log_level = SP_LOG_WARN;
    sp_config_defaults(&cfg);
    if (sp_config_load(&cfg, NULL, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "bench_pipeline: %s\n", err);
        return 2;
    }
    if (getenv("SP_BENCH_CACHE_IDLE_OFF")) cfg.state_cache_idle_ms = INT64_MAX / 4;

    msgs_t m;
    memset(&m, 0, sizeof(m));
    double tg = now_s();
    if (generate(&cfg, &o, &m) != 0) return 1;
    int64_t now = m.last_et + 3600000; /* "now": an hour after the last event */
    printf("generated %zu messages (%.1f MiB, mean %.1f B) in %.2f s; event time span %.1f h "
           "at %.0f ev/s\n",
           m.n, (double)m.bytes / (1 << 20), (double)m.bytes / (double)m.n, now_s() - tg,
           (double)(m.last_et - START_MS) / 3.6e6, o.rate);

    double *ta = calloc((size_t)o.runs, sizeof(double)), *tb = calloc((size_t)o.runs, sizeof(double));
    if (!ta || !tb) return 1;
    result_t ra, rb;
    /* Warm-up (page faults, caches), not counted. */
    if (run_decode(&cfg, &o, &m, now, &ra) || run_full(&cfg, &o, &m, now, &rb)) return 1;
    for (int k = 0; k < o.runs; k++) {
        if (run_decode(&cfg, &o, &m, now, &ra)) return 1;
        if (run_full(&cfg, &o, &m, now, &rb)) return 1;
        ta[k] = (double)m.n / ra.secs;
        tb[k] = (double)m.n / rb.secs;
        printf("run %d: decode-only %.0f ev/s (%.3f s), decode+aggregate %.0f ev/s (%.3f s)\n",
               k + 1, ta[k], ra.secs, tb[k], rb.secs);
        fflush(stdout);
    }
    double ma = median(ta, o.runs), mb = median(tb, o.runs);
    printf("messages: %zu decoded=%" PRIu64 " poison=%" PRIu64 " applied=%" PRIu64
           " duplicates=%" PRIu64 " late=%" PRIu64 " commits=%" PRIu64 "\n",
           m.n, rb.decoded, rb.poison, rb.applied, rb.dups, rb.late, rb.commits);
    printf("commit commands (estimate): %" PRIu64 " total, %.1f per commit, %.3f per event\n",
           rb.commands, rb.commits ? (double)rb.commands / (double)rb.commits : 0.0,
           (double)rb.commands / (double)m.n);
    printf("MEDIAN decode-only (baseline): %.0f events/s\n", ma);
    printf("MEDIAN decode+aggregate:       %.0f events/s\n", mb);
    printf("RATIO  decode+aggregate / decode-only: %.3f\n", mb / ma);
    printf("TARGET >= 1000000 events/s decode+aggregate on one core: %s\n",
           mb >= 1e6 ? "MET" : "NOT MET");
    free(ta);
    free(tb);
    free(m.blob);
    free(m.off);
    free(m.len);
    free(m.stream);
    free(m.part);
    return 0;
}
