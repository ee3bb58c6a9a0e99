/* fuzz_avro.c -- libFuzzer target: Confluent-framed Avro values through
 * sp_decoder_decode(), differentially.
 *
 * Input: byte 0 picks the stream (bits 0-1); the rest is the Kafka message
 * value (magic byte 0, 4-byte schema id, Avro body). Every value is decoded
 * by the fast bounds-checked reader and by the avro-c reference reader; both
 * must give the same result (OK, or the same dead-letter reason) and, when OK,
 * the same event. Schema ids 1-4 are the default writers (= the readers);
 * 100 and 101 are evolved writers (tests/fuzz/schemas: every Avro type as a
 * writer-only field, reordered fields and symbols, a missing required field). Any other outcome
 * than OK or POISON, a crash, a leak or undefined behaviour is a finding. Seeds:
 * tests/fuzz/corpus/avro/ (messages of `storepulse gen`, see mkcorpus.c, and of the evolved
 * writers, see mkcorpus_evolved.py). */
#include <stdint.h>

#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_decoder_setup();
    /* writer schemas that differ from the readers (see tests/fuzz/schemas) */
    fuzz_add_schema(fuzz_dec, 100, SP_STREAM_CLICKSTREAM, "clickstream_every_type.avsc");
    fuzz_add_schema(fuzz_dec, 101, SP_STREAM_CHECKOUT, "checkout_no_amount.avsc");
    return 0;
}

static int same_event(const sp_event_t *a, const sp_event_t *b) {
    if (a->stream != b->stream || a->type != b->type || a->int_present != b->int_present) return 0;
    for (int f = 0; f < SP_I__COUNT; f++)
        if (sp_event_has_int(a, (sp_int_field_t)f) && a->i[f] != b->i[f]) return 0;
    for (int f = 0; f < SP_S__COUNT; f++) {
        if ((a->s[f].p == NULL) != (b->s[f].p == NULL)) return 0;
        if (a->s[f].p && !sp_str_eq(a->s[f], b->s[f])) return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_event_t ev, ref;
    sp_dlq_reason_t reason, ref_reason;
    char why[256], ref_why[256];
    int rc, ref_rc;

    if (size < 1) return 0;
    sp_stream_t st = (sp_stream_t)(data[0] & 3);
    data++, size--;

    sp_decoder_use_avro_c(fuzz_dec, 0);
    rc = sp_decoder_decode(fuzz_dec, st, SP_FORMAT_AVRO, data, size, FUZZ_NOW_MS, fuzz_arena, &ev,
                           &reason, why, sizeof(why));
    sp_decoder_use_avro_c(fuzz_dec, 1);
    ref_rc = sp_decoder_decode(fuzz_dec, st, SP_FORMAT_AVRO, data, size, FUZZ_NOW_MS, fuzz_arena,
                               &ref, &ref_reason, ref_why, sizeof(ref_why));
    if (rc != SP_OK && rc != SP_ERR_POISON) {
        fprintf(stderr, "decode returned %d\n", rc);
        abort();
    }
    if (rc != ref_rc || (rc == SP_ERR_POISON && reason != ref_reason) ||
        (rc == SP_OK && !same_event(&ev, &ref))) {
        fprintf(stderr, "fast path: rc %d reason %d (%s); avro-c path: rc %d reason %d (%s)\n", rc,
                (int)reason, rc ? why : "", ref_rc, (int)ref_reason, ref_rc ? ref_why : "");
        abort();
    }
    sp_arena_reset(fuzz_arena);
    return 0;
}
