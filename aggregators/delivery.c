/* delivery.c -- the delivery family (SPEC §3, docs/METRICS.md). Not written yet: the
 * family registers and emits nothing. */
#include "aggregators/family.h"

typedef struct stub {
    int unused;
} stub_t;

static size_t shipment_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    (void)e;
    (void)data;
    (void)buf;
    (void)cap;
    return 0;
}

static int shipment_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    (void)e;
    (void)val;
    (void)len;
    (void)data;
    return 0;
}

const sp_entity_kind_t sp_kind_shipment = {"shipment", sizeof(stub_t), shipment_encode, shipment_decode, NULL,
                                        NULL, NULL, NULL};

static void delivery_want(sp_engine_t *e, const sp_event_t *ev) {
    (void)e;
    (void)ev;
}

static int delivery_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    (void)e;
    (void)ev;
    (void)wins;
    return SP_OK;
}

static void delivery_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    (void)e;
    (void)win;
    (void)closing;
    (void)c;
}

const sp_family_t sp_family_delivery = {"delivery", sizeof(stub_t), delivery_want, delivery_apply, delivery_emit,
                                     NULL};
