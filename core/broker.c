/* broker.c -- the embedded Kafka broker (librdkafka mock cluster).
 *
 * What: an in-process cluster of SP_BROKER_COUNT mock brokers created on an
 * owning rd_kafka_t producer handle, with StorePulse's topics pre-created
 * (four input streams, dead-letter, alerts; cfg->partitions each,
 * replication 1), plus the `storepulse broker` command that runs it as a
 * standalone process for laptops, the demo and kill/restart tests.
 *
 * Why: there is no Kafka broker package on the target machines, and the mock
 * cluster talks the real protocol over real TCP, so every other component
 * (and kcat) uses it exactly as it would use a real cluster. Topics are
 * created here because the mock cluster's Admin CreateTopics times out and
 * auto-created topics always get 4 partitions.
 *
 * What it deliberately does not do: persist anything (data and offsets live
 * in memory; a restart is a new, empty cluster on new ports), real
 * transactions, retention beyond ~5 MiB per partition, TLS/SASL. It does not
 * hide the mock handle: tests take it through sp_broker_mock() for fault
 * injection. Only this file includes <librdkafka/rdkafka_mock.h>. */
#include "core/broker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "core/err.h"
#include "core/kafka.h"
#include "core/log.h"

#define SP_BROKER_DEFAULT_PARTITIONS 8
#define SP_BROKER_MAX_PARTITIONS     10000
#define SP_BROKER_OP_PAUSE_US        5000
#define SP_BROKER_MAX_HIDDEN         8

struct sp_broker {
    rd_kafka_t *rk;              /* owning handle; owns nothing else of ours */
    rd_kafka_mock_cluster_t *mc; /* owned: destroyed before rk */
    char bootstraps[512];
    int default_partitions;
    char hidden[SP_BROKER_MAX_HIDDEN][256]; /* topics sp_broker_hide_topic() hides ("": free) */
};

/* librdkafka logs of the owning handle: it has no bootstrap.servers of its
 * own and says so; only real errors are worth the user's attention. */
static void broker_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    sp_kafka_log_cb(rk, level <= 3 ? level : 7, fac, buf);
}

static int broker_create_topic(sp_broker_t *b, const char *name, int partitions, char *errstr,
                               size_t errstr_size) {
    rd_kafka_resp_err_t err;

    if (!name || !*name) return SP_OK; /* not configured: nothing to create */
    /* librdkafka 2.0.2's mock thread serves its op queue before draining its
     * wake-up pipe, so an op enqueued right after the previous one was
     * answered can lose its wake-up and wait for the thread's 1 s poll
     * timeout (startup took 1-3 s, measured). A short pause lets the thread
     * get back to poll() first. */
    usleep(SP_BROKER_OP_PAUSE_US);
    err = rd_kafka_mock_topic_create(b->mc, name, partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        snprintf(errstr, errstr_size, "creating topic '%s': %s", name, rd_kafka_err2str(err));
        return SP_ERR_IO;
    }
    return SP_OK;
}

sp_broker_t *sp_broker_start(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    return sp_broker_start_with(cfg, NULL, 0, errstr, errstr_size);
}

/* The partitions of topic `name`: its override, or the default. */
static int topic_partitions(const char *name, int dflt, const sp_topic_partitions_t *over,
                            int nover) {
    for (int i = 0; i < nover; i++)
        if (strcmp(over[i].topic, name) == 0) return over[i].partitions;
    return dflt;
}

sp_broker_t *sp_broker_start_with(const sp_config_t *cfg, const sp_topic_partitions_t *over,
                                  int nover, char *errstr, size_t errstr_size) {
    sp_broker_t *b = NULL;
    rd_kafka_conf_t *conf = NULL;
    const char *bs;
    int partitions;
    char rkerr[512];
    int ok = 0;

    partitions = cfg->partitions > 0 ? cfg->partitions : SP_BROKER_DEFAULT_PARTITIONS;
    if (partitions > SP_BROKER_MAX_PARTITIONS) {
        snprintf(errstr, errstr_size, "partitions %d out of range 1..%d", partitions,
                 SP_BROKER_MAX_PARTITIONS);
        goto out;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, broker_log_cb);
    if (rd_kafka_conf_set(conf, "client.id", "storepulse-broker", rkerr, sizeof(rkerr)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "broker handle config: %s", rkerr);
        goto out;
    }
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
    if (!b->rk) {
        snprintf(errstr, errstr_size, "broker handle: %s", rkerr);
        goto out;
    }
    conf = NULL; /* now owned by rk */

    b->mc = rd_kafka_mock_cluster_new(b->rk, SP_BROKER_COUNT);
    if (!b->mc) {
        snprintf(errstr, errstr_size, "could not create the mock cluster");
        goto out;
    }
    bs = rd_kafka_mock_cluster_bootstraps(b->mc);
    if (!bs || strlen(bs) >= sizeof(b->bootstraps)) {
        snprintf(errstr, errstr_size, "mock cluster has no usable bootstrap address");
        goto out;
    }
    memcpy(b->bootstraps, bs, strlen(bs) + 1);
    b->default_partitions = partitions;

    for (int i = 0; i < nover; i++) {
        int known = strcmp(over[i].topic, cfg->topic_deadletter) == 0 ||
                    strcmp(over[i].topic, cfg->topic_alerts) == 0;
        for (int k = 0; k < SP_STREAM__COUNT; k++)
            known |= strcmp(over[i].topic, cfg->topics[k].name) == 0;
        if (!known) {
            snprintf(errstr, errstr_size, "partitions of '%s': not a configured topic",
                     over[i].topic);
            goto out;
        }
    }
    for (int i = 0; i < SP_STREAM__COUNT + 2; i++) {
        const char *name = i < SP_STREAM__COUNT       ? cfg->topics[i].name
                           : i == SP_STREAM__COUNT ? cfg->topic_deadletter
                                                   : cfg->topic_alerts;
        if (broker_create_topic(b, name, topic_partitions(name, partitions, over, nover), errstr,
                                errstr_size) != SP_OK)
            goto out;
    }
    ok = 1;

out:
    if (conf) rd_kafka_conf_destroy(conf);
    if (!ok) {
        sp_broker_stop(b);
        b = NULL;
    }
    return b;
}

/* ---- missing topics ---------------------------------------------------
 *
 * librdkafka 2.0.2's mock cluster answers Metadata at version 2 only, which
 * has no AllowAutoTopicCreation flag: any client asking about a topic by
 * name (a consumer subscribing, a producer producing) creates it with 4
 * partitions. So a topic cannot simply be left out to play a missing one.
 * It is created and then hidden: rd_kafka_mock_topic_set_error() makes its
 * metadata answer UNKNOWN_TOPIC_OR_PART with no partitions, as a real
 * broker with auto.create.topics.enable=false answers for a topic that
 * does not exist (a real broker leaves it out of an all-topics listing; the
 * mock lists it with that error). Showing it again is the topic's creation,
 * with the partitions it was given at start. */

static int broker_hidden_slot(const sp_broker_t *b, const char *name) {
    for (int i = 0; i < SP_BROKER_MAX_HIDDEN; i++)
        if (b->hidden[i][0] && strcmp(b->hidden[i], name) == 0) return i;
    return -1;
}

int sp_broker_hide_topic(sp_broker_t *b, const char *name, char *errstr, size_t errstr_size) {
    int slot = broker_hidden_slot(b, name);
    for (int i = 0; slot < 0 && i < SP_BROKER_MAX_HIDDEN; i++)
        if (!b->hidden[i][0]) slot = i;
    if (slot < 0 || strlen(name) >= sizeof(b->hidden[0]) || !*name) {
        snprintf(errstr, errstr_size, "cannot hide topic '%s' (at most %d, names < 256 bytes)",
                 name, SP_BROKER_MAX_HIDDEN);
        return SP_ERR_INVALID;
    }
    usleep(SP_BROKER_OP_PAUSE_US); /* see broker_create_topic */
    rd_kafka_mock_topic_set_error(b->mc, name, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    snprintf(b->hidden[slot], sizeof(b->hidden[slot]), "%s", name);
    return SP_OK;
}

int sp_broker_create_topic(sp_broker_t *b, const char *name, int partitions, char *errstr,
                           size_t errstr_size) {
    int slot = broker_hidden_slot(b, name);
    if (slot >= 0) {
        usleep(SP_BROKER_OP_PAUSE_US);
        rd_kafka_mock_topic_set_error(b->mc, name, RD_KAFKA_RESP_ERR_NO_ERROR);
        b->hidden[slot][0] = '\0';
        return SP_OK;
    }
    usleep(SP_BROKER_OP_PAUSE_US);
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
        b->mc, name, partitions > 0 ? partitions : b->default_partitions, 1);
    if (err) {
        snprintf(errstr, errstr_size, "creating topic '%s': %s", name, rd_kafka_err2str(err));
        return SP_ERR_IO;
    }
    return SP_OK;
}

const char *sp_broker_bootstraps(const sp_broker_t *b) {
    return b->bootstraps;
}

void *sp_broker_mock(sp_broker_t *b) {
    return b->mc;
}

void sp_broker_poll(sp_broker_t *b, int timeout_ms) {
    rd_kafka_poll(b->rk, timeout_ms);
}

void sp_broker_stop(sp_broker_t *b) {
    if (!b) return;
    if (b->mc) rd_kafka_mock_cluster_destroy(b->mc);
    if (b->rk) rd_kafka_destroy(b->rk);
    free(b);
}

/* ---- `storepulse broker` ------------------------------------------------ */

static volatile sig_atomic_t broker_stop_flag;

static void broker_on_signal(int sig) {
    (void)sig;
    broker_stop_flag = 1;
}

/* errstr from a format, through vsnprintf: paths may be long, and the text
 * is cut at errstr_size by design. */
static void broker_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void broker_err(char *errstr, size_t errstr_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* Write "addr\n" to path through a temporary file in the same directory and
 * rename(2), so a reader never sees a partial line. */
static int broker_write_file(const char *path, const char *addr, char *errstr, size_t errstr_size) {
    char tmp[4096];
    FILE *f = NULL;
    int rc = SP_ERR_IO;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        broker_err(errstr, errstr_size, "%s: path too long", path);
        return SP_ERR_INVALID;
    }
    f = fopen(tmp, "w");
    if (!f) {
        broker_err(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fprintf(f, "%s\n", addr) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        broker_err(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        broker_err(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        broker_err(errstr, errstr_size, "rename %s -> %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    rc = SP_OK;
out:
    if (f) fclose(f);
    if (rc != SP_OK) unlink(tmp);
    return rc;
}

int sp_broker_read_bootstrap_file(const char *path, char *buf, size_t size, int wait_ms,
                                  const volatile sig_atomic_t *stop) {
    int64_t deadline = sp_clock_mono_ms() + wait_ms;
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f) {
            int ok = fgets(buf, (int)size, f) != NULL;
            fclose(f);
            if (!ok) return -1;
            buf[strcspn(buf, "\r\n")] = '\0';
            return buf[0] ? 0 : -1;
        }
        if (errno != ENOENT || sp_clock_mono_ms() >= deadline || (stop && *stop)) return -1;
        usleep(100 * 1000);
    }
}

/* ---- fault injection: `--control FIFO` -----------------------------------
 *
 * Tests drive faults into the running cluster (only the owning process can)
 * by writing lines to a FIFO the broker creates:
 *   down <broker_id>                      rd_kafka_mock_broker_set_down
 *   up <broker_id>                        rd_kafka_mock_broker_set_up
 *   rtt <broker_id> <ms>                  rd_kafka_mock_broker_set_rtt
 *   errors <ApiKey> <count> <errcode>     rd_kafka_mock_push_request_errors
 *                                         (the next <count> requests of that
 *                                         ApiKey fail with <errcode>)
 *   clear <ApiKey>                        rd_kafka_mock_clear_request_errors
 *   topic-error <topic> <errcode>         rd_kafka_mock_topic_set_error (the
 *                                         topic's metadata carries that error,
 *                                         so producers to it fail; 0 clears)
 *   create-topic <name> [<partitions>]    a topic hidden by --no-topic appears
 *                                         (with its partitions from the start),
 *                                         or a new one is created
 * Each command is answered by one log line "broker: control #<n>: <line>:
 * ok|error ..." (n counts the commands from 1), so a test can wait for it.
 * The FIFO is opened read-write so that writers coming and going never make
 * it read end-of-file. */

typedef struct broker_ctl {
    int fd;
    int n;
    size_t len;
    char buf[1024];
} broker_ctl_t;

static int broker_ctl_open(broker_ctl_t *c, const char *path, char *errstr, size_t errstr_size) {
    struct stat st;
    c->fd = -1;
    c->n = 0;
    c->len = 0;
    if (mkfifo(path, 0600) != 0 && errno != EEXIST) {
        broker_err(errstr, errstr_size, "mkfifo %s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    if (stat(path, &st) != 0 || !S_ISFIFO(st.st_mode)) {
        broker_err(errstr, errstr_size, "%s: not a FIFO", path);
        return SP_ERR_INVALID;
    }
    c->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (c->fd < 0) {
        broker_err(errstr, errstr_size, "open %s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    return SP_OK;
}

static int broker_ctl_num(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Run one command line; returns NULL on success or the reason. */
static const char *broker_ctl_exec(sp_broker_t *b, char *line) {
    char *argv[5];
    int argc = 0;
    long a = 0, n = 0, e = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t && argc < 5;
         t = strtok_r(NULL, " \t\r", &save))
        argv[argc++] = t;
    if (argc == 0) return "empty command";
    if ((!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) && argc == 2) {
        if (broker_ctl_num(argv[1], 1, SP_BROKER_COUNT, &a)) return "bad broker id";
        rd_kafka_resp_err_t err = !strcmp(argv[0], "down")
                                      ? rd_kafka_mock_broker_set_down(b->mc, (int32_t)a)
                                      : rd_kafka_mock_broker_set_up(b->mc, (int32_t)a);
        return err ? rd_kafka_err2str(err) : NULL;
    }
    if (!strcmp(argv[0], "rtt") && argc == 3) {
        if (broker_ctl_num(argv[1], 1, SP_BROKER_COUNT, &a)) return "bad broker id";
        if (broker_ctl_num(argv[2], 0, 600000, &n)) return "bad rtt";
        rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(b->mc, (int32_t)a, (int)n);
        return err ? rd_kafka_err2str(err) : NULL;
    }
    if (!strcmp(argv[0], "errors") && argc == 4) {
        if (broker_ctl_num(argv[1], 0, 1000, &a)) return "bad ApiKey";
        if (broker_ctl_num(argv[2], 1, 100000, &n)) return "bad count";
        if (broker_ctl_num(argv[3], -200, 1000, &e)) return "bad error code";
        rd_kafka_resp_err_t *errs = malloc((size_t)n * sizeof(*errs));
        if (!errs) return "out of memory";
        for (long i = 0; i < n; i++) errs[i] = (rd_kafka_resp_err_t)e;
        rd_kafka_mock_push_request_errors_array(b->mc, (int16_t)a, (size_t)n, errs);
        free(errs);
        return NULL;
    }
    if (!strcmp(argv[0], "topic-error") && argc == 3) {
        if (broker_ctl_num(argv[2], -200, 1000, &e)) return "bad error code";
        rd_kafka_mock_topic_set_error(b->mc, argv[1], (rd_kafka_resp_err_t)e);
        return NULL;
    }
    if (!strcmp(argv[0], "clear") && argc == 2) {
        if (broker_ctl_num(argv[1], 0, 1000, &a)) return "bad ApiKey";
        rd_kafka_mock_clear_request_errors(b->mc, (int16_t)a);
        return NULL;
    }
    if (!strcmp(argv[0], "create-topic") && (argc == 2 || argc == 3)) {
        static char why[320];
        if (argc == 3 && broker_ctl_num(argv[2], 1, SP_BROKER_MAX_PARTITIONS, &n))
            return "bad partition count";
        return sp_broker_create_topic(b, argv[1], argc == 3 ? (int)n : -1, why, sizeof(why)) ==
                       SP_OK
                   ? NULL
                   : why;
    }
    return "unknown command (down ID | up ID | rtt ID MS | errors APIKEY COUNT ERR | clear APIKEY "
           "| topic-error TOPIC ERR | create-topic NAME [PARTITIONS])";
}

/* Read whatever is in the FIFO and run every complete line. */
static void broker_ctl_poll(sp_broker_t *b, broker_ctl_t *c) {
    if (c->fd < 0) return;
    for (;;) {
        ssize_t k = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        if (k <= 0) break;
        c->len += (size_t)k;
        char *nl;
        while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
            char line[sizeof(c->buf)], shown[sizeof(c->buf)];
            size_t ll = (size_t)(nl - c->buf);
            memcpy(line, c->buf, ll);
            line[ll] = '\0';
            memcpy(shown, line, ll + 1);
            memmove(c->buf, nl + 1, c->len - ll - 1);
            c->len -= ll + 1;
            const char *why = broker_ctl_exec(b, line);
            c->n++;
            if (why)
                sp_log(SP_LOG_WARN, "broker: control #%d: %s: error %s", c->n, shown, why);
            else
                sp_log(SP_LOG_INFO, "broker: control #%d: %s: ok", c->n, shown);
        }
        if (c->len == sizeof(c->buf) - 1) c->len = 0; /* a line too long: dropped */
    }
}

static void broker_usage(FILE *out) {
    fputs("usage: storepulse broker [-c FILE] [--bootstrap-file F] [--partitions N|TOPIC=N]...\n"
          "                         [--no-topic TOPIC]... [--control FIFO]\n"
          "\n"
          "Runs librdkafka's mock Kafka cluster (3 brokers on 127.0.0.1, in memory)\n"
          "with the configured topics created, until SIGTERM or SIGINT.\n"
          "\n"
          "  -c, --config FILE       config file (topics.*, embedded.partitions)\n"
          "      --bootstrap-file F  also write the bootstrap address to F (atomically;\n"
          "                          removed again on a clean exit)\n"
          "      --partitions N      partitions per topic (overrides the config)\n"
          "      --partitions TOPIC=N  partitions of one topic (repeatable), e.g. to\n"
          "                          give two input streams different partition counts\n"
          "      --no-topic TOPIC    start with this configured topic missing (repeatable):\n"
          "                          its metadata answers \"unknown topic\" until the\n"
          "                          control command create-topic TOPIC\n"
          "      --control FIFO      fault injection: create FIFO and run the commands\n"
          "                          written to it, one a line: down ID, up ID,\n"
          "                          rtt ID MS, errors APIKEY COUNT ERRCODE, clear APIKEY,\n"
          "                          topic-error TOPIC ERRCODE (0 clears),\n"
          "                          create-topic TOPIC [PARTITIONS]\n"
          "  -h, --help              this help\n"
          "\n"
          "Prints \"bootstrap: <host:port,...>\" on stdout once the cluster is up.\n",
          out);
}

int sp_broker_main(int argc, char **argv) {
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"bootstrap-file", required_argument, NULL, 'b'},
                                             {"partitions", required_argument, NULL, 'p'},
                                             {"control", required_argument, NULL, 'C'},
                                             {"no-topic", required_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *bootstrap_file = NULL, *control_path = NULL;
    broker_ctl_t ctl = {.fd = -1};
    long partitions = -1;
    sp_topic_partitions_t over[8];
    int nover = 0;
    const char *absent[SP_BROKER_MAX_HIDDEN];
    int nabsent = 0;
    sp_config_t *cfg = NULL;
    sp_broker_t *b = NULL;
    char errstr[1024];
    struct sigaction sa;
    int opt, ret = 1, file_written = 0;

    optind = 0; /* glibc: full re-initialisation (argv[0] is the subcommand) */
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'b': bootstrap_file = optarg; break;
        case 'C': control_path = optarg; break;
        case 'n':
            if (nabsent == SP_BROKER_MAX_HIDDEN) {
                fprintf(stderr, "storepulse broker: --no-topic: at most %d topics\n", nabsent);
                return 2;
            }
            absent[nabsent++] = optarg;
            break;
        case 'p': {
            char *end, *eq = strchr(optarg, '=');
            const char *num = eq ? eq + 1 : optarg;
            errno = 0;
            long n = strtol(num, &end, 10);
            if (errno || *end || end == num || n < 1 || n > SP_BROKER_MAX_PARTITIONS ||
                eq == optarg) {
                fprintf(stderr,
                        "storepulse broker: --partitions: expected 1..%d or TOPIC=1..%d, got "
                        "'%s'\n",
                        SP_BROKER_MAX_PARTITIONS, SP_BROKER_MAX_PARTITIONS, optarg);
                return 2;
            }
            if (!eq) {
                partitions = n;
            } else if (nover == (int)(sizeof(over) / sizeof(over[0]))) {
                fprintf(stderr, "storepulse broker: --partitions: at most %d topics\n", nover);
                return 2;
            } else {
                *eq = '\0'; /* optarg is argv's own storage */
                over[nover].topic = optarg;
                over[nover++].partitions = (int)n;
            }
            break;
        }
        case 'h': broker_usage(stdout); return 0;
        default: broker_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "storepulse broker: unexpected argument '%s'\n", argv[optind]);
        broker_usage(stderr);
        return 2;
    }

    cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "storepulse broker: out of memory\n");
        goto out;
    }
    sp_config_defaults(cfg);
    if (sp_config_load(cfg, config_path, errstr, sizeof(errstr)) != SP_OK) {
        fprintf(stderr, "storepulse broker: %s\n", errstr);
        ret = 2;
        goto out;
    }
    sp_log_setup(cfg->log_level, cfg->log_format);
    if (partitions > 0) cfg->partitions = (int)partitions;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = broker_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    b = sp_broker_start_with(cfg, over, nover, errstr, sizeof(errstr));
    if (!b) {
        fprintf(stderr, "storepulse broker: %s\n", errstr);
        goto out;
    }
    for (int i = 0; i < nabsent; i++) {
        int known =
            !strcmp(absent[i], cfg->topic_deadletter) || !strcmp(absent[i], cfg->topic_alerts);
        for (int k = 0; k < SP_STREAM__COUNT; k++)
            known |= !strcmp(absent[i], cfg->topics[k].name);
        if (!known) {
            fprintf(stderr, "storepulse broker: --no-topic: '%s' is not a configured topic\n",
                    absent[i]);
            ret = 2;
            goto out;
        }
        if (sp_broker_hide_topic(b, absent[i], errstr, sizeof(errstr)) != SP_OK) {
            fprintf(stderr, "storepulse broker: --no-topic: %s\n", errstr);
            goto out;
        }
        sp_log(SP_LOG_INFO, "broker: topic %s is missing until created (control: create-topic)",
               absent[i]);
    }
    if (control_path && broker_ctl_open(&ctl, control_path, errstr, sizeof(errstr)) != SP_OK) {
        fprintf(stderr, "storepulse broker: --control: %s\n", errstr);
        goto out;
    }
    if (bootstrap_file) {
        if (broker_write_file(bootstrap_file, sp_broker_bootstraps(b), errstr, sizeof(errstr)) !=
            SP_OK) {
            fprintf(stderr, "storepulse broker: --bootstrap-file: %s\n", errstr);
            goto out;
        }
        file_written = 1;
    }
    printf("bootstrap: %s\n", sp_broker_bootstraps(b));
    fflush(stdout);
    sp_log(SP_LOG_INFO, "broker: %d brokers, %d partitions per topic (%d set per topic), "
           "serving until SIGTERM",
           SP_BROKER_COUNT, cfg->partitions > 0 ? cfg->partitions : SP_BROKER_DEFAULT_PARTITIONS,
           nover);

    while (!broker_stop_flag) {
        sp_broker_poll(b, ctl.fd >= 0 ? 50 : 200);
        broker_ctl_poll(b, &ctl);
    }
    sp_log(SP_LOG_INFO, "broker: shutting down");
    ret = 0;

out:
    if (file_written) unlink(bootstrap_file); /* a stale address would mislead scripts */
    if (ctl.fd >= 0) close(ctl.fd);
    sp_broker_stop(b);
    free(cfg);
    return ret;
}
