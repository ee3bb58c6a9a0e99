/* bench_bare_consumer.c -- the end-to-end baseline of SPEC §8: a bare
 * librdkafka consumer that consumes the input topics and avro-c-decodes each
 * message, and does nothing else.
 *
 * It is configured like `storepulse run`'s consumer (same group protocol,
 * queued.min.messages=200000, auto.offset.reset=earliest, batches of
 * pipeline.batch_max via rd_kafka_consume_batch_queue with the
 * pipeline.batch_timeout budget), and decodes with sp_decoder_decode (avro-c,
 * reader and value reused, strings into an arena reset per batch), so the
 * difference to the pipeline is exactly the pipeline's own work: dedup,
 * windows, entity state and the Redis commits.
 *
 * It stops once --count messages were consumed and prints one line:
 *   RESULT count=N decoded=D total_s=T first_s=F steady_evps=R
 * total_s: from process start (before the group join) to the N-th message;
 * first_s: when the first batch arrived; steady_evps: (N - first batch) /
 * (total_s - first_s), i.e. the rate once the group was joined (the ~3 s
 * group join of the mock cluster would otherwise dominate small runs).
 *
 * Usage: bench_bare_consumer --bootstrap-file F --count N [--group G]
 *                            [--schemas DIR] [--timeout S] */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumers/decode.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/log.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_line(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    if (!fgets(buf, (int)size, f)) {
        fclose(f);
        return -1;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? 0 : -1;
}

static int setc(rd_kafka_conf_t *kc, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(kc, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench_bare_consumer: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static const struct option lo[] = {{"bootstrap-file", required_argument, 0, 'b'},
                                       {"count", required_argument, 0, 'n'},
                                       {"group", required_argument, 0, 'g'},
                                       {"schemas", required_argument, 0, 's'},
                                       {"timeout", required_argument, 0, 't'},
                                       {0, 0, 0, 0}};
    const char *bsfile = NULL, *group = "bench-bare";
    uint64_t count = 0;
    double timeout = 120;
    char bs[1024], err[1024], why[256];
    static sp_config_t cfg;
    int c;
    double t0 = now_s();

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'b': bsfile = optarg; break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 'g': group = optarg; break;
        case 's': setenv("STOREPULSE_SCHEMAS_DIR", optarg, 1); break;
        case 't': timeout = strtod(optarg, NULL); break;
        default:
            fprintf(stderr, "usage: bench_bare_consumer --bootstrap-file F --count N [--group G] "
                            "[--schemas DIR] [--timeout S]\n");
            return 2;
        }
    }
    if (!bsfile || count == 0 || read_line(bsfile, bs, sizeof(bs)) != 0) {
        fprintf(stderr, "bench_bare_consumer: need --bootstrap-file (with an address) and --count\n");
        return 2;
    }
    sp_log_level = SP_LOG_WARN;
    sp_config_defaults(&cfg);
    if (sp_config_load(&cfg, NULL, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "bench_bare_consumer: %s\n", err);
        return 2;
    }
    sp_decoder_t *dec = sp_decoder_new(&cfg, err, sizeof(err));
    if (!dec) {
        fprintf(stderr, "bench_bare_consumer: %s\n", err);
        return 1;
    }
    sp_arena_t *arena = sp_arena_new(1 << 20);
    size_t bmax = (size_t)cfg.batch_max;
    rd_kafka_message_t **msgs = calloc(bmax, sizeof(*msgs));
    if (!arena || !msgs) return 1;

    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (setc(kc, "bootstrap.servers", bs) || setc(kc, "group.id", group) ||
        setc(kc, "session.timeout.ms", "6000") || setc(kc, "heartbeat.interval.ms", "500") ||
        setc(kc, "queued.min.messages", "200000") || setc(kc, "enable.auto.commit", "false") ||
        setc(kc, "auto.offset.reset", "earliest"))
        return 2;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "bench_bare_consumer: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(SP_STREAM__COUNT);
    for (int s = 0; s < SP_STREAM__COUNT; s++)
        rd_kafka_topic_partition_list_add(subs, cfg.topics[s].name, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        fprintf(stderr, "bench_bare_consumer: subscribe: %s\n", rd_kafka_err2str(e));
        return 1;
    }

    uint64_t got = 0, decoded = 0, first_n = 0;
    double t_first = -1;
    int64_t now = (int64_t)time(NULL) * 1000;
    while (got < count) {
        if (now_s() - t0 > timeout) {
            fprintf(stderr, "bench_bare_consumer: timeout after %" PRIu64 " of %" PRIu64 "\n", got,
                    count);
            break;
        }
        ssize_t n = rd_kafka_consume_batch_queue(q, (int)cfg.batch_timeout_ms, msgs, bmax);
        if (n <= 0) continue;
        sp_arena_reset(arena);
        uint64_t before = got;
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (!m->err) {
                int ti = -1;
                const char *tn = rd_kafka_topic_name(m->rkt);
                for (int s = 0; s < SP_STREAM__COUNT; s++)
                    if (strcmp(tn, cfg.topics[s].name) == 0) ti = s;
                if (ti >= 0) {
                    sp_event_t ev;
                    sp_dlq_reason_t reason = SP_DLQ_NONE;
                    got++;
                    if (sp_decoder_decode(dec, (sp_stream_t)ti, cfg.topics[ti].format, m->payload,
                                          m->len, now, arena, &ev, &reason, why,
                                          sizeof(why)) == SP_OK)
                        decoded++;
                }
            }
            rd_kafka_message_destroy(m);
        }
        if (t_first < 0 && got > 0) {
            t_first = now_s() - t0;
            first_n = got - before;
        }
    }
    double total = now_s() - t0;
    double steady = total > t_first && got > first_n ? (double)(got - first_n) / (total - t_first) : 0;
    printf("RESULT count=%" PRIu64 " decoded=%" PRIu64 " total_s=%.3f first_s=%.3f steady_evps=%.0f\n",
           got, decoded, total, t_first, steady);
    fflush(stdout);
    rd_kafka_consumer_close(rk);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    sp_decoder_destroy(dec);
    sp_arena_destroy(arena);
    free(msgs);
    return got >= count ? 0 : 1;
}
