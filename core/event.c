/* event.c -- names of streams, types and fields; hash; arena (see event.h). */
#include "core/event.h"

#include <stdlib.h>
#include <string.h>

const char *const sp_stream_names[SP_STREAM__COUNT] = {"clickstream", "checkout", "shipment",
                                                       "support"};

const char *const sp_event_type_names[SP_T__COUNT] = {
    "PAGE_VIEW",        "PRODUCT_VIEW",      "SEARCH",         "ADD_TO_CART",
    "REMOVE_FROM_CART", "CHECKOUT_STARTED",  "PAYMENT_SUBMITTED", "PAYMENT_FAILED",
    "ORDER_PLACED",     "ORDER_CANCELLED",   "LABEL_CREATED",  "DISPATCHED",
    "IN_TRANSIT",       "OUT_FOR_DELIVERY",  "DELIVERED",      "DELIVERY_FAILED",
    "RETURNED",         "TICKET_OPENED",     "AGENT_REPLIED",  "CUSTOMER_REPLIED",
    "TICKET_RESOLVED",  "TICKET_REOPENED",   "SURVEY_RESPONSE"};

const char *const sp_str_field_names[SP_S__COUNT] = {
    "event_id", "session_id", "customer_id", "order_id",       "product_id",     "shipment_id",
    "ticket_id", "channel",   "device",      "country",        "currency",       "payment_method",
    "failure_reason", "carrier"};

const char *const sp_int_field_names[SP_I__COUNT] = {
    "event_time", "amount_cents", "item_count", "promised_delivery_time", "order_placed_time",
    "is_bot",     "csat",         "nps",        "ces"};

static const sp_event_type_t stream_first[SP_STREAM__COUNT + 1] = {
    SP_T_PAGE_VIEW, SP_T_CHECKOUT_STARTED, SP_T_LABEL_CREATED, SP_T_TICKET_OPENED, SP_T__COUNT};

sp_event_type_t sp_stream_first_type(sp_stream_t st) { return stream_first[st]; }
sp_event_type_t sp_stream_end_type(sp_stream_t st) { return stream_first[st + 1]; }

int sp_event_type_lookup(sp_stream_t st, const char *sym, size_t len) {
    for (int t = stream_first[st]; t < (int)stream_first[st + 1]; t++)
        if (strlen(sp_event_type_names[t]) == len && memcmp(sp_event_type_names[t], sym, len) == 0)
            return t;
    return -1;
}

int sp_stream_lookup(const char *name) {
    for (int i = 0; i < SP_STREAM__COUNT; i++)
        if (strcmp(sp_stream_names[i], name) == 0) return i;
    return -1;
}

uint64_t sp_hash64(const void *p, size_t len, uint64_t seed) {
    /* Eight bytes at a time: multiply-rotate per word, then the splitmix64
     * finalizer for avalanche. Fast on the short ids we hash (~10-40 B). */
    const unsigned char *b = p;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (len + 1));
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h ^= w * 0xff51afd7ed558ccdULL;
        h = ((h << 27) | (h >> 37)) * 0xc4ceb9fe1a85ec53ULL;
        b += 8;
        len -= 8;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < len; i++) t |= (uint64_t)b[i] << (8 * i);
    h ^= t * 0xff51afd7ed558ccdULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    char data[];
} chunk_t;

struct sp_arena {
    chunk_t *head;    /* first chunk */
    chunk_t *cur;     /* chunk being filled */
    size_t chunk_size;
};

sp_arena_t *sp_arena_new(size_t chunk_size) {
    sp_arena_t *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
    return a;
}

void *sp_arena_alloc(sp_arena_t *a, size_t n) {
    n = (n + 7) & ~(size_t)7;
    while (a->cur && a->cur->used + n > a->cur->size) a->cur = a->cur->next;
    if (!a->cur) {
        size_t sz = n > a->chunk_size ? n : a->chunk_size;
        chunk_t *c = malloc(sizeof(*c) + sz);
        if (!c) return NULL;
        c->size = sz;
        c->used = 0;
        c->next = a->head; /* reused chunks are those after cur: put new one first */
        a->head = c;
        a->cur = c;
    }
    void *p = a->cur->data + a->cur->used;
    a->cur->used += n;
    return p;
}

void sp_arena_reset(sp_arena_t *a) {
    for (chunk_t *c = a->head; c; c = c->next) c->used = 0;
    a->cur = a->head;
}

void sp_arena_destroy(sp_arena_t *a) {
    if (!a) return;
    chunk_t *c = a->head;
    while (c) {
        chunk_t *n = c->next;
        free(c);
        c = n;
    }
    free(a);
}

sp_str_t sp_arena_strdup(sp_arena_t *a, const char *p, size_t len) {
    sp_str_t s = {NULL, 0};
    char *d = sp_arena_alloc(a, len + 1);
    if (!d) return s;
    if (len) memcpy(d, p, len);
    d[len] = '\0';
    s.p = d;
    s.len = (uint32_t)len;
    return s;
}
