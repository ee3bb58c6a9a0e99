/* bench_redis_wait.c -- end-to-end stopwatch for `storepulse run`: polls
 * Redis until the pipeline has committed --count messages.
 *
 * Progress is the sum over every "topic/partition" field of sp:{NS}:offsets
 * (the next offset the pipeline will read; offsets of the embedded broker
 * start at 0, so the sum is the number of messages committed). It polls every
 * --interval-ms (default 2 ms) through the project's own store API
 * (sp_store_load_offsets: two HMGETs per poll), started by bench_e2e.sh just
 * before `storepulse run`, so its clock starts with the pipeline's process.
 *
 * Prints one line:
 *   RESULT count=N total_s=T first_s=F first_n=K steady_evps=R polls=P
 *          own_commands=C
 * total_s: start to the sum reaching N; first_s/first_n: the first poll that
 * saw a commit and its sum; steady_evps = (N - first_n) / (total_s - first_s)
 * (the rate after the group join and the first batch); own_commands: Redis
 * commands this program sent (2 per poll + the SCRIPT LOAD at connect), for
 * the caller to subtract from INFO commandstats.
 *
 * Usage: bench_redis_wait --port P --count N [--partitions P] [--ns NS]
 *                         [--timeout S] [--interval-ms MS] */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aggregators/store.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    static const struct option lo[] = {{"port", required_argument, 0, 'p'},
                                       {"count", required_argument, 0, 'n'},
                                       {"partitions", required_argument, 0, 'P'},
                                       {"ns", required_argument, 0, 's'},
                                       {"timeout", required_argument, 0, 't'},
                                       {"interval-ms", required_argument, 0, 'i'},
                                       {0, 0, 0, 0}};
    static sp_config_t cfg;
    char err[1024];
    int port = 0, parts = 16, interval_ms = 2, c;
    const char *ns = NULL;
    double timeout = 300;
    int64_t count = 0;
    double t0 = now_s();

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p': port = atoi(optarg); break;
        case 'n': count = strtoll(optarg, NULL, 10); break;
        case 'P': parts = atoi(optarg); break;
        case 's': ns = optarg; break;
        case 't': timeout = strtod(optarg, NULL); break;
        case 'i': interval_ms = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: bench_redis_wait --port P --count N [--partitions P] [--ns NS] "
                            "[--timeout S] [--interval-ms MS]\n");
            return 2;
        }
    }
    if (port <= 0 || count <= 0 || parts < 1 || parts > 1024 || interval_ms < 0) {
        fprintf(stderr, "bench_redis_wait: need --port and --count\n");
        return 2;
    }
    sp_log_level = SP_LOG_ERROR;
    sp_config_defaults(&cfg);
    if (sp_config_load(&cfg, NULL, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "bench_redis_wait: %s\n", err);
        return 2;
    }
    cfg.redis_port = port;
    if (ns) snprintf(cfg.ns, sizeof(cfg.ns), "%s", ns);

    int nf = SP_STREAM__COUNT * parts;
    char **fields = calloc((size_t)nf, sizeof(*fields));
    int64_t *next = calloc((size_t)nf, sizeof(*next)), *maxet = calloc((size_t)nf, sizeof(*maxet));
    if (!fields || !next || !maxet) return 1;
    for (int s = 0; s < SP_STREAM__COUNT; s++)
        for (int p = 0; p < parts; p++) {
            char f[300];
            snprintf(f, sizeof(f), "%s/%d", cfg.topics[s].name, p);
            fields[s * parts + p] = strdup(f);
            if (!fields[s * parts + p]) return 1;
        }

    sp_store_t *st = NULL;
    while (!(st = sp_store_new(&cfg, err, sizeof(err)))) {
        if (now_s() - t0 > 10) {
            fprintf(stderr, "bench_redis_wait: %s\n", err);
            return 1;
        }
        usleep(10000);
    }
    int64_t polls = 0, sum = 0, first_n = -1;
    double t_first = -1;
    int rc = 1;
    for (;;) {
        if (sp_store_load_offsets(st, (const char *const *)fields, nf, next, maxet, err,
                                  sizeof(err)) != SP_OK) {
            fprintf(stderr, "bench_redis_wait: %s\n", err);
            break;
        }
        polls++;
        sum = 0;
        for (int k = 0; k < nf; k++)
            if (next[k] > 0) sum += next[k];
        double t = now_s() - t0;
        if (sum > 0 && t_first < 0) {
            t_first = t;
            first_n = sum;
        }
        if (sum >= count) {
            double steady = t > t_first && count > first_n ? (double)(count - first_n) / (t - t_first)
                                                           : 0;
            printf("RESULT count=%" PRId64 " total_s=%.3f first_s=%.3f first_n=%" PRId64
                   " steady_evps=%.0f polls=%" PRId64 " own_commands=%" PRId64 "\n",
                   sum, t, t_first, first_n, steady, polls, 2 * polls + 1);
            fflush(stdout);
            rc = 0;
            break;
        }
        if (t > timeout) {
            fprintf(stderr, "bench_redis_wait: timeout: %" PRId64 " of %" PRId64 " committed\n", sum,
                    count);
            printf("RESULT count=%" PRId64 " total_s=-1 polls=%" PRId64 " own_commands=%" PRId64 "\n",
                   sum, polls, 2 * polls + 1);
            break;
        }
        if (interval_ms > 0) usleep((useconds_t)interval_ms * 1000);
    }
    sp_store_destroy(st);
    for (int k = 0; k < nf; k++) free(fields[k]);
    free(fields);
    free(next);
    free(maxet);
    return rc;
}
