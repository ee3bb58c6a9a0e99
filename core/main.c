/* main.c -- the storepulse binary: one command per subcommand. */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "sp_version.h" /* generated at build time (cmake/version.cmake) */

#include "aggregators/import.h"
#include "core/broker.h"
#include "core/offsets.h"
#include "core/run.h"
#include "producers/alert.h"
#include "producers/gen.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: storepulse <command> [options]\n"
            "\n"
            "commands:\n"
            "  run           the pipeline daemon (run -c FILE [--embedded-kafka])\n"
            "  broker        an embedded Kafka mock cluster as its own process\n"
            "  gen           synthetic store traffic to Kafka\n"
            "  alerts        print the alerts on the alert topic\n"
            "  check-config  validate a config file and print it resolved\n"
            "  import-orders seed customer history and cohorts from a CSV of past orders\n"
            "  offsets       stored, committed and log offsets; reset stored offsets\n"
            "  version       the version, git commit and library versions (also --version)\n"
            "\n"
            "'storepulse <command> --help' describes a command's options.\n");
}

/* librdkafka: the library loaded (and the one built against when they
 * differ); avro-c and hiredis: the versions built against (pkg-config). */
static void print_version(FILE *out) {
    const char *rk = rd_kafka_version_str();
    fprintf(out, "storepulse %s (commit %s)\n", SP_VERSION, SP_GIT_COMMIT);
    if (strcmp(rk, SP_RDKAFKA_BUILD_VERSION) != 0)
        fprintf(out, "librdkafka %s (built with %s)\n", rk, SP_RDKAFKA_BUILD_VERSION);
    else
        fprintf(out, "librdkafka %s\n", rk);
    fprintf(out, "avro-c %s\nhiredis %s\n", SP_AVRO_VERSION, SP_HIREDIS_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        print_version(stdout);
        return 0;
    }
    if (!strcmp(cmd, "run")) return sp_run_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "broker")) return sp_broker_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen")) return sp_gen_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "alerts")) return sp_alerts_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "check-config")) return sp_check_config_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "import-orders")) return sp_import_orders_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "offsets")) return sp_offsets_main(argc - 1, argv + 1);
    fprintf(stderr, "storepulse: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
