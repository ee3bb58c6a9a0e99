/* retention.c -- the retention family (SPEC §3, docs/METRICS.md). Not written yet: the
 * family registers and emits nothing. */
#include "aggregators/family.h"

typedef struct stub {
    int unused;
} stub_t;

static size_t customer_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    (void)e;
    (void)data;
    (void)buf;
    (void)cap;
    return 0;
}

static int customer_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    (void)e;
    (void)val;
    (void)len;
    (void)data;
    return 0;
}

const sp_entity_kind_t sp_kind_customer = {"customer", sizeof(stub_t), customer_encode, customer_decode, NULL,
                                        NULL, NULL, NULL};

static void retention_want(sp_engine_t *e, const sp_event_t *ev) {
    (void)e;
    (void)ev;
}

static int retention_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    (void)e;
    (void)ev;
    (void)wins;
    return SP_OK;
}

static void retention_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    (void)e;
    (void)win;
    (void)closing;
    (void)c;
}

const sp_family_t sp_family_retention = {"retention", sizeof(stub_t), retention_want, retention_apply, retention_emit,
                                     NULL};
