/* fuzz_json.c -- libFuzzer target: JSON event values through
 * sp_decoder_decode().
 *
 * Input: byte 0 picks the stream (bits 0-1); the rest is the Kafka message
 * value. The outcome must be OK or POISON with a reason; a crash, a leak or
 * undefined behaviour is a finding. A decoded event must carry its stream and
 * a type of that stream. Seeds: tests/fuzz/corpus/json/. */
#include <stdint.h>

#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_decoder_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_event_t ev;
    sp_dlq_reason_t reason;
    char why[256];
    int rc;

    if (size < 1) return 0;
    sp_stream_t st = (sp_stream_t)(data[0] & 3);
    data++, size--;
    rc = sp_decoder_decode(fuzz_dec, st, SP_FORMAT_JSON, data, size, FUZZ_NOW_MS, fuzz_arena, &ev,
                           &reason, why, sizeof(why));
    if (rc != SP_OK && rc != SP_ERR_POISON) {
        fprintf(stderr, "decode returned %d\n", rc);
        abort();
    }
    if (rc == SP_OK && (ev.stream != st || ev.type < sp_stream_first_type(st) ||
                        ev.type >= sp_stream_end_type(st))) {
        fprintf(stderr, "decoded an event of another stream or type\n");
        abort();
    }
    sp_arena_reset(fuzz_arena);
    return 0;
}
