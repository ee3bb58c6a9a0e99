/* mkcorpus.c -- writes the Avro and JSON seed corpora of the decoder fuzz
 * targets from the synthetic traffic of `storepulse gen` (same generator,
 * same framing: Confluent magic byte + schema id + Avro body, or JSON).
 *
 * usage: fuzz_mkcorpus OUTDIR   (OUTDIR/avro and OUTDIR/json must exist)
 * Each file is one input of the targets: a byte choosing the stream, then
 * the message value. Per format it keeps the first PER_TYPE messages of
 * every event type, so every type of every stream is a seed. Deterministic
 * (fixed seed and start time): rerunning it rewrites the same files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producers/gen.h"
#include "tests/fuzz/fuzz_common.h"

#define PER_TYPE 2
#define MAX_MSGS 200000
#define START_MS 1767139200000LL /* 2025-12-31T00:00:00Z, a day before FUZZ_NOW_MS */

static int write_seed(const char *dir, sp_stream_t st, const char *type, int n, const void *val,
                      size_t len) {
    char path[1024];
    unsigned char b = (unsigned char)st;
    FILE *fp;
    snprintf(path, sizeof(path), "%s/%s-%s-%d", dir, sp_stream_names[st], type, n);
    if (!(fp = fopen(path, "wb"))) return -1;
    fwrite(&b, 1, 1, fp);
    fwrite(val, 1, len, fp);
    return fclose(fp);
}

static int one_format(const char *outdir, sp_format_t fmt, sp_decoder_t *dec) {
    static sp_config_t cfg;
    int seen[SP_T__COUNT] = {0};
    char err[512], dir[768];
    sp_gen_opts_t o = {
        .seed = 6, .start_ms = START_MS, .rate = 500, .format = fmt, .warm_start = 1};
    sp_arena_t *arena = sp_arena_new(1 << 16);
    sp_gen_t *g;
    int ret = 0;

    snprintf(dir, sizeof(dir), "%s/%s", outdir, fmt == SP_FORMAT_AVRO ? "avro" : "json");
    if (sp_config_load(&cfg, NULL, err, sizeof(err)) != 0 ||
        !(g = sp_gen_new(&cfg, &o, err, sizeof(err)))) {
        fprintf(stderr, "mkcorpus: %s\n", err);
        return -1;
    }
    for (int i = 0; i < MAX_MSGS; i++) {
        sp_stream_t st;
        const void *key, *val;
        size_t keylen, vallen;
        int64_t t;
        sp_event_t ev;
        sp_dlq_reason_t reason;
        char why[256];
        if (sp_gen_next(g, &st, &key, &keylen, &val, &vallen, &t) != 0) break;
        if (sp_decoder_decode(dec, st, fmt, val, vallen, FUZZ_NOW_MS, arena, &ev, &reason, why,
                              sizeof(why)) != 0) {
            fprintf(stderr, "mkcorpus: a generated message does not decode: %s\n", why);
            ret = -1;
            break;
        }
        if (seen[ev.type] < PER_TYPE &&
            write_seed(dir, st, sp_event_type_names[ev.type], seen[ev.type], val, vallen)) {
            fprintf(stderr, "mkcorpus: cannot write into %s\n", dir);
            ret = -1;
            break;
        }
        seen[ev.type]++;
        sp_arena_reset(arena);
    }
    for (int ty = 0; ty < SP_T__COUNT; ty++)
        if (!seen[ty])
            fprintf(stderr, "mkcorpus: no %s event generated\n", sp_event_type_names[ty]);
    sp_gen_destroy(g);
    sp_arena_destroy(arena);
    return ret;
}

int main(int argc, char **argv) {
    sp_decoder_t *dec;
    int rc;
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_mkcorpus OUTDIR\n");
        return 2;
    }
    dec = fuzz_decoder();
    rc = one_format(argv[1], SP_FORMAT_AVRO, dec) || one_format(argv[1], SP_FORMAT_JSON, dec);
    sp_decoder_destroy(dec);
    return rc ? 1 : 0;
}
