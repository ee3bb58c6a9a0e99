/* support.c -- the support family (SPEC §3, docs/METRICS.md). Not written yet: the
 * family registers and emits nothing. */
#include "aggregators/family.h"

typedef struct stub {
    int unused;
} stub_t;

static size_t ticket_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    (void)e;
    (void)data;
    (void)buf;
    (void)cap;
    return 0;
}

static int ticket_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    (void)e;
    (void)val;
    (void)len;
    (void)data;
    return 0;
}

const sp_entity_kind_t sp_kind_ticket = {"ticket", sizeof(stub_t), ticket_encode, ticket_decode, NULL,
                                        NULL, NULL, NULL};

static void support_want(sp_engine_t *e, const sp_event_t *ev) {
    (void)e;
    (void)ev;
}

static int support_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    (void)e;
    (void)ev;
    (void)wins;
    return SP_OK;
}

static void support_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    (void)e;
    (void)win;
    (void)closing;
    (void)c;
}

const sp_family_t sp_family_support = {"support", sizeof(stub_t), support_want, support_apply, support_emit,
                                     NULL};
