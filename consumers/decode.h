/* decode.h -- Kafka message value (Confluent-framed Avro or JSON) -> sp_event_t.
 *
 * One decoder per consuming thread (not thread-safe: it reuses its Avro
 * values and readers). Schemas are parsed once at creation; decoding then
 * allocates nothing but the event's strings, which go into the caller's arena.
 *
 * Every byte sequence is valid input: sp_decoder_decode() never crashes and
 * never reads outside [buf, buf + len); bad input returns SP_ERR_POISON with
 * a dead-letter reason. That function is the fuzzing entry point. */
#ifndef SP_DECODE_H
#define SP_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "core/event.h"

typedef struct sp_decoder sp_decoder_t;

/* Parse the reader schemas schemas_dir/<stream>.avsc of all four streams and
 * every configured writer schema (cfg->schemas[]: schemas_dir/path if that
 * exists, else path as given, e.g. already joined by sp_config_load()). A writer schema that cannot be resolved
 * against its stream's reader (not a record, other record name, a field of an
 * incompatible type) is a configuration error. A writer schema that lacks a
 * reader field with no default is loaded, and each of its messages is
 * dead-lettered as missing_field.
 * Returns NULL with a message in errstr on failure. */
sp_decoder_t *sp_decoder_new(const sp_config_t *cfg, char *errstr, size_t errstr_size);

void sp_decoder_destroy(sp_decoder_t *d); /* NULL is a no-op */

/* Register one more writer schema (Avro JSON text) under a Confluent id, e.g.
 * one fetched from a Schema Registry. Same rules as at creation. An id that is
 * already registered is replaced. Returns SP_OK or SP_ERR_CONFIG (errstr). */
int sp_decoder_add_schema(sp_decoder_t *d, int32_t id, sp_stream_t st, const char *json,
                          size_t json_len, char *errstr, size_t errstr_size);

/* Avro bodies are read by the decoder's own bounds-checked reader, driven by
 * the writer schema avro-c parsed. on != 0 reads them through avro-c's generic
 * value instead (avro_value_read; slower, two mallocs per string): the
 * reference the tests compare the fast path with. */
void sp_decoder_use_avro_c(sp_decoder_t *d, int on);

/* Decode one Kafka message value of topic stream `st` in format `fmt`.
 * Strings are copied into `arena` (or point at decoder-owned reader-schema
 * defaults, valid until sp_decoder_destroy). now_ms is "now" for the future
 * timestamp check. ev->partition/offset/topic_idx are zeroed: the caller fills
 * them.
 * Returns SP_OK; SP_ERR_POISON with *reason set and a human detail in `why`
 * (e.g. "field 'session_id' is null"); or SP_ERR_NOMEM if the arena is out
 * of memory. */
int sp_decoder_decode(sp_decoder_t *d, sp_stream_t st, sp_format_t fmt, const void *buf,
                      size_t len, int64_t now_ms, sp_arena_t *arena, sp_event_t *ev,
                      sp_dlq_reason_t *reason, char *why, size_t why_size);

/* Bounds of a valid event_time (SPEC section 1). */
#define SP_DECODE_MIN_TIME_MS 946684800000LL /* 2000-01-01T00:00:00Z */
#define SP_DECODE_MAX_FUTURE_MS 86400000LL   /* 1 day ahead of now */

#endif
