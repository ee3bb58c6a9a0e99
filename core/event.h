/* event.h -- the decoded event, shared by every stage.
 *
 * One flat struct serves all four streams: string fields live in s[], integer
 * (and boolean, timestamp) fields in i[] with a presence bit each. Strings are
 * views (pointer + length, not NUL-terminated) into memory the decoder owns
 * (an sp_arena_t reset once per batch), so decoding allocates nothing per
 * event in steady state. A NULL pointer means the field is null or absent.
 *
 * The field tables below (sp_str_field_names, sp_int_field_names) map Avro
 * and JSON field names to slots; the decoder resolves a writer schema against
 * them once per schema id. */
#ifndef SP_EVENT_H
#define SP_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sp_stream {
    SP_STREAM_CLICKSTREAM = 0,
    SP_STREAM_CHECKOUT,
    SP_STREAM_SHIPMENT,
    SP_STREAM_SUPPORT,
    SP_STREAM__COUNT
} sp_stream_t;

/* All event types of all streams, in schema symbol order per stream. */
typedef enum sp_event_type {
    /* clickstream */
    SP_T_PAGE_VIEW = 0,
    SP_T_PRODUCT_VIEW,
    SP_T_SEARCH,
    SP_T_ADD_TO_CART,
    SP_T_REMOVE_FROM_CART,
    /* checkout */
    SP_T_CHECKOUT_STARTED,
    SP_T_PAYMENT_SUBMITTED,
    SP_T_PAYMENT_FAILED,
    SP_T_ORDER_PLACED,
    SP_T_ORDER_CANCELLED,
    /* shipment */
    SP_T_LABEL_CREATED,
    SP_T_DISPATCHED,
    SP_T_IN_TRANSIT,
    SP_T_OUT_FOR_DELIVERY,
    SP_T_DELIVERED,
    SP_T_DELIVERY_FAILED,
    SP_T_RETURNED,
    /* support */
    SP_T_TICKET_OPENED,
    SP_T_AGENT_REPLIED,
    SP_T_CUSTOMER_REPLIED,
    SP_T_TICKET_RESOLVED,
    SP_T_TICKET_REOPENED,
    SP_T_SURVEY_RESPONSE,
    SP_T__COUNT
} sp_event_type_t;

typedef enum sp_str_field {
    SP_S_EVENT_ID = 0,
    SP_S_SESSION_ID,
    SP_S_CUSTOMER_ID,
    SP_S_ORDER_ID,
    SP_S_PRODUCT_ID,
    SP_S_SHIPMENT_ID,
    SP_S_TICKET_ID,
    SP_S_CHANNEL,
    SP_S_DEVICE,
    SP_S_COUNTRY,
    SP_S_CURRENCY,
    SP_S_PAYMENT_METHOD,
    SP_S_FAILURE_REASON,
    SP_S_CARRIER,
    SP_S__COUNT
} sp_str_field_t;

typedef enum sp_int_field {
    SP_I_EVENT_TIME = 0, /* ms since epoch, UTC */
    SP_I_AMOUNT_CENTS,
    SP_I_ITEM_COUNT,
    SP_I_PROMISED_DELIVERY_TIME,
    SP_I_ORDER_PLACED_TIME,
    SP_I_IS_BOT, /* boolean as 0/1 */
    SP_I_CSAT,
    SP_I_NPS,
    SP_I_CES,
    SP_I__COUNT
} sp_int_field_t;

#define SP_MAX_ID_LEN 256 /* ids and dimension values */
#define SP_MAX_TEXT_LEN 1024 /* other strings (failure_reason) */

typedef struct sp_str {
    const char *p; /* NULL: null or absent */
    uint32_t len;
} sp_str_t;

typedef struct sp_event {
    sp_stream_t stream;
    sp_event_type_t type;
    uint32_t int_present; /* bit (1u << sp_int_field_t) */
    int64_t i[SP_I__COUNT];
    sp_str_t s[SP_S__COUNT];
    /* Where it came from (for dead letters, offsets and watermarks). */
    int32_t partition;
    int64_t offset;
    int topic_idx; /* index into the run loop's topic table */
} sp_event_t;

extern const char *const sp_stream_names[SP_STREAM__COUNT];  /* "clickstream" ... */
extern const char *const sp_event_type_names[SP_T__COUNT];   /* "PAGE_VIEW" ... */
extern const char *const sp_str_field_names[SP_S__COUNT];    /* "event_id" ... */
extern const char *const sp_int_field_names[SP_I__COUNT];    /* "event_time" ... */

/* First and one-past-last type of a stream. */
sp_event_type_t sp_stream_first_type(sp_stream_t st);
sp_event_type_t sp_stream_end_type(sp_stream_t st);
/* Type by symbol within a stream; -1 if the stream has no such symbol. */
int sp_event_type_lookup(sp_stream_t st, const char *sym, size_t len);
int sp_stream_lookup(const char *name); /* -1 if unknown */

static inline bool sp_event_has_int(const sp_event_t *ev, sp_int_field_t f) {
    return (ev->int_present >> f) & 1u;
}
static inline void sp_event_set_int(sp_event_t *ev, sp_int_field_t f, int64_t v) {
    ev->i[f] = v;
    ev->int_present |= 1u << f;
}
static inline bool sp_str_eq(sp_str_t a, sp_str_t b) {
    return a.len == b.len && (a.len == 0 || __builtin_memcmp(a.p, b.p, a.len) == 0);
}

/* 64-bit hash of bytes (word-wise multiply-rotate, splitmix64 finish); dedup and
 * hash tables. Not cryptographic. */
uint64_t sp_hash64(const void *p, size_t len, uint64_t seed);

/* Chunked bump allocator: memory handed out stays put until reset, chunks are
 * kept and reused across batches (no allocation in steady state). */
typedef struct sp_arena sp_arena_t;
sp_arena_t *sp_arena_new(size_t chunk_size);
void *sp_arena_alloc(sp_arena_t *a, size_t n); /* NULL on OOM */
void sp_arena_reset(sp_arena_t *a);
void sp_arena_destroy(sp_arena_t *a);
/* Copy len bytes into the arena (plus a NUL for convenience). */
sp_str_t sp_arena_strdup(sp_arena_t *a, const char *p, size_t len);

#endif
