/* fuzz_common.h -- what the libFuzzer targets share: a decoder over the
 * repository's schemas (SP_SOURCE_DIR/schemas, set by CMake) and a stream
 * picked by the first input byte. Not a library: each target includes it. */
#ifndef SP_FUZZ_COMMON_H
#define SP_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers/decode.h"
#include "core/config.h"
#include "core/event.h"

#ifndef SP_SOURCE_DIR
#error "SP_SOURCE_DIR must name the repository root"
#endif

/* A fixed "now" (2026-01-01T00:00:00Z) so a run is reproducible: the
 * future-timestamp check does not depend on the day the input is replayed. */
#define FUZZ_NOW_MS 1767225600000LL

/* The decoder of the four default writer schemas (ids 1..4), built once per
 * process; exits on failure (the target cannot run without it). */
static inline sp_decoder_t *fuzz_decoder(void) {
    static sp_config_t cfg;
    char err[512];
    sp_decoder_t *d;

    setenv("STOREPULSE_SCHEMAS_DIR", SP_SOURCE_DIR "/schemas", 1);
    if (sp_config_load(&cfg, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz: config: %s\n", err);
        exit(1);
    }
    if (!(d = sp_decoder_new(&cfg, err, sizeof(err)))) {
        fprintf(stderr, "fuzz: decoder: %s\n", err);
        exit(1);
    }
    return d;
}

/* Register a fuzzing-only writer schema, tests/fuzz/schemas/<file>. */
/* The decoder and fuzz_arena of a decoder target (fuzz_decoder_setup). */
__attribute__((unused)) static sp_decoder_t *fuzz_dec;
__attribute__((unused)) static sp_arena_t *fuzz_arena;

/* At exit, before LeakSanitizer's check: a live decoder holds avro-c
 * values whose strings LSan cannot see a pointer to (reported as leaks at
 * exit although sp_decoder_destroy frees them all). */
static inline void fuzz_cleanup(void) {
    sp_decoder_destroy(fuzz_dec);
    sp_arena_destroy(fuzz_arena);
    fuzz_dec = NULL, fuzz_arena = NULL;
}

/* For LLVMFuzzerInitialize of a decoder target: fuzz_dec, fuzz_arena, cleanup. */
static inline void fuzz_decoder_setup(void) {
    atexit(fuzz_cleanup);
    fuzz_dec = fuzz_decoder();
    fuzz_arena = sp_arena_new(1 << 16);
    if (!fuzz_arena) abort();
}

static inline void fuzz_add_schema(sp_decoder_t *d, int32_t id, sp_stream_t st, const char *file) {
    char path[1024], text[16384], err[512];
    size_t n;
    FILE *fp;
    snprintf(path, sizeof(path), "%s/tests/fuzz/schemas/%s", SP_SOURCE_DIR, file);
    if (!(fp = fopen(path, "rb"))) {
        fprintf(stderr, "fuzz: cannot open %s\n", path);
        exit(1);
    }
    n = fread(text, 1, sizeof(text), fp);
    fclose(fp);
    if (n == sizeof(text) || sp_decoder_add_schema(d, id, st, text, n, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz: schema %s: %s\n", file, n == sizeof(text) ? "too long" : err);
        exit(1);
    }
}

#endif
