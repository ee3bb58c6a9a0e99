/* support.c -- the support family (SPEC §3 "support", docs/METRICS.md):
 * tickets opened, resolved and reopened, first response and resolution
 * times, surveys (CSAT, NPS, CES) and the bot handoff rate, per channel
 * (configurable), and the gauge in_flight|kind=ticket.
 *
 * What it owns: the ticket entity (sp:{NS}:state:ticket:<ticket_id>, TTL
 * state.ticket_ttl, refreshed by every event of the ticket). Every support
 * event loads its ticket in the batch prefetch; the ticket says which facts
 * are already counted, so they count once however the events are keyed,
 * partitioned or replayed:
 *  - opened: the time of the first TICKET_OPENED (0: not seen; the decoder
 *    rejects times before 2000). A second one is a duplicate fact
 *    (SP_ERR_DUPLICATE: health `duplicates`, no family counts it);
 *  - resolved: TICKET_RESOLVED of a ticket that is not resolved counts
 *    (tickets_resolved, and resolution_seconds when the opening is known and
 *    not later); of a resolved ticket it is a duplicate fact.
 *    TICKET_REOPENED of a resolved ticket counts and clears the flag; of an
 *    unresolved one it counts nothing (not a duplicate: a reopen carries no
 *    fact of its own);
 *  - first response: the first human reply (AGENT_REPLIED, is_bot false)
 *    not earlier than the opening gives frt_seconds in the reply's window.
 *    A human reply earlier than the opening is no response (a later one
 *    may be). A human reply that ARRIVES before its TICKET_OPENED (out of
 *    order) is kept (the earliest one, with its dimension values) and
 *    counted when the opening arrives if it is not earlier, in the reply's
 *    window (sp_engine_block), or dropped if that window is final for the
 *    family -- which cannot happen to an admitted opening: the reply is not
 *    earlier, and windows close in time order. A resolution that arrives
 *    before the opening waits the same way for its resolution_seconds;
 *  - bot handoff: the earliest bot reply time, whether a human reply was
 *    seen, and whether the ticket is decided. A ticket with a bot reply is
 *    decided once: handed off (bot_tickets, bot_handoffs) at its first human
 *    reply later than the first bot reply, or not (bot_tickets) at a counted
 *    resolution while it has only bot replies;
 *  - surveyed: one SURVEY_RESPONSE per ticket (a second is a duplicate);
 *    csat, nps and ces each count only when present. nps_net (promoters -
 *    detractors) is a helper counter so that nps is one stored ratio.
 * Every count takes the dimension values of the event that makes it; an
 * effect counted later (a pending reply or resolution) takes the values
 * kept with it. The gauge in_flight|kind=ticket moves by +1 when a ticket
 * becomes open (opened and not resolved), -1 when an open ticket is
 * resolved, +1 when an opened ticket is reopened.
 *
 * Give-up: an open ticket without news is given up when the watermark
 * reaches its latest event time + state.ticket_ttl (a timer in
 * sp:{NS}:state:timers, like shipments): it leaves the gauge and its state
 * is deleted, so the gauge cannot keep tickets whose state is gone. Its
 * Redis TTL is the time left to the give-up + 1 day (at least
 * state.ticket_ttl), so the state outlives its timer. Other tickets
 * (resolved, or not opened yet) expire by their Redis TTL, state.ticket_ttl
 * from their last write.
 *
 * Not here: decisions are taken in arrival order. A reply that arrives after
 * a later-timed human reply was counted does not move the first response
 * (histograms only add); a bot reply that arrives after a later-timed human
 * reply does not decide a handoff by itself (the next human reply does).
 * Before the opening arrives only the earliest human reply and the first
 * counted resolution are kept. A ticket whose state expired (TTL) starts
 * afresh, as a given-up one does. */
#include <stddef.h>
#include <string.h>

#include "aggregators/famkit.h"

enum {
    F_OPENED = 0,
    F_RESOLVED,
    F_REOPENED,
    F_CSAT_RESP,
    F_CSAT_SAT,
    F_NPS_RESP,
    F_NPS_PRO,
    F_NPS_DET,
    F_NPS_NET,
    F_CES_RESP,
    F_CES_SUM,
    F_BOT_TICKETS,
    F_BOT_HANDOFFS,
    F_N
};

static const char *const fields[F_N] = {
    "tickets_opened", "tickets_resolved", "tickets_reopened", "csat_responses", "csat_satisfied",
    "nps_responses",  "nps_promoters",    "nps_detractors",   "nps_net",        "ces_responses",
    "ces_sum",        "bot_tickets",      "bot_handoffs"};

static const sp_fk_ratio_t ratios[] = {
    {"reopen_rate", 'r', F_REOPENED, F_RESOLVED},
    {"csat", 'p', F_CSAT_SAT, F_CSAT_RESP},
    {"nps", 'p', F_NPS_NET, F_NPS_RESP},
    {"ces", 'r', F_CES_SUM, F_CES_RESP},
    {"bot_handoff_rate", 'r', F_BOT_HANDOFFS, F_BOT_TICKETS},
};

enum { H_FRT = 0, H_RESOLUTION, H_N };

static const char *const hists[H_N] = {"frt_seconds", "resolution_seconds"};

static const sp_fk_spec_t spec = {F_N, fields, (int)(sizeof(ratios) / sizeof(ratios[0])), ratios,
                                  H_N, hists,  offsetof(sp_config_t, support_dims)};

#define GAUGE "in_flight|kind=ticket"

/* Ticket flags. */
enum {
    TK_RESOLVED = 1,    /* resolved (and not reopened since) */
    TK_FRT_DONE = 2,    /* the first response time is counted */
    TK_HUMAN = 4,       /* a human reply was seen */
    TK_BOT_DECIDED = 8, /* the bot handoff is decided */
    TK_SURVEYED = 16,   /* the survey is counted */
    TK_MASK = 31
};

typedef struct ticket {
    int64_t opened;       /* TICKET_OPENED time; 0: not seen yet */
    int64_t reply_wait;   /* earliest human reply seen before the opening; 0: none */
    int64_t resolve_wait; /* counted resolution seen before the opening; 0: none */
    int64_t first_bot;    /* earliest bot reply; 0: none */
    int64_t last;         /* latest event time of the ticket */
    uint8_t flags;
    uint32_t reply_ids[SP_FK_DIMS];   /* dimension values of reply_wait */
    uint32_t resolve_ids[SP_FK_DIMS]; /* dimension values of resolve_wait */
} ticket_t;

static int ndims(const sp_engine_t *e) {
    int n = sp_fk_dims(e, &spec)->cnt;
    return n > SP_FK_DIMS ? SP_FK_DIMS : n;
}

/* ---- entity -------------------------------------------------------- */

#define MIN_TIME 946684800000LL /* 2000-01-01: the decoder rejects earlier times */

/* Ticket value (little endian):
 *   "T2" | flags u8 | opened i64 | reply_wait i64 | resolve_wait i64 |
 *   first_bot i64 | last i64 | ndims u8 | reply ids | resolve ids
 *   (sp_fk_put_ids)
 * At most 44 + 2 x 3 x 255 = 1574 bytes: fits the engine's encode buffer.
 * "T1" (no `last`) is still read: its latest known time stands in. */
#define HDR 44
#define HDR_T1 36

static const uint32_t none[SP_FK_DIMS] = {SP_FK_NONE, SP_FK_NONE, SP_FK_NONE};

static size_t ticket_encode(sp_engine_t *e, const void *data, char *buf, size_t cap) {
    const ticket_t *tk = data;
    int nd = ndims(e);
    size_t n = 0, m;
    if (cap < HDR) return 0;
    buf[n++] = 'T';
    buf[n++] = '2';
    buf[n++] = (char)tk->flags;
    sp_put_i64(buf + n, tk->opened);
    sp_put_i64(buf + n + 8, tk->reply_wait);
    sp_put_i64(buf + n + 16, tk->resolve_wait);
    sp_put_i64(buf + n + 24, tk->first_bot);
    sp_put_i64(buf + n + 32, tk->last);
    n += 40;
    buf[n++] = (char)nd;
    for (int j = 0; j < 2; j++) {
        /* values only with a waiting effect */
        const uint32_t *ids = j ? (tk->resolve_wait ? tk->resolve_ids : none)
                                : (tk->reply_wait ? tk->reply_ids : none);
        m = sp_fk_put_ids(e, ids, nd, buf + n, cap - n);
        if (nd && !m) return 0;
        n += m;
    }
    return n;
}

static int time_ok(int64_t t) {
    return t == 0 || t >= MIN_TIME;
}

static int64_t max_time(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* Decode nd stored values into ids; "__other__" is the other row (id 0),
 * values of another dimension layout are dropped. Returns bytes read, 0 on
 * corruption. */
static size_t get_ids(sp_engine_t *e, const char *val, size_t len, int nd, uint32_t *ids) {
    uint32_t got[SP_FK_DIMS] = {SP_FK_NONE, SP_FK_NONE, SP_FK_NONE};
    size_t m = nd ? sp_fk_get_ids(e, val, len, got, nd) : 0;
    if (nd && !m) return 0;
    for (int k = 0; k < SP_FK_DIMS; k++) {
        ids[k] = nd == ndims(e) && k < nd ? got[k] : SP_FK_NONE;
        size_t vl;
        if (ids[k] == SP_FK_NONE) continue;
        const char *v = sp_engine_interned(e, ids[k], &vl);
        if (vl == strlen(SP_OTHER) && memcmp(v, SP_OTHER, vl) == 0) ids[k] = 0;
    }
    return m;
}

static int ticket_decode(sp_engine_t *e, const char *val, size_t len, void *data) {
    ticket_t *tk = data;
    size_t n = 3, m;
    if (len < HDR_T1 || val[0] != 'T' || (val[1] != '1' && val[1] != '2')) return -1;
    int v1 = val[1] == '1';
    if (!v1 && len < HDR) return -1;
    tk->flags = (uint8_t)val[2];
    tk->opened = sp_get_i64(val + n);
    tk->reply_wait = sp_get_i64(val + n + 8);
    tk->resolve_wait = sp_get_i64(val + n + 16);
    tk->first_bot = sp_get_i64(val + n + 24);
    tk->last = v1 ? 0 : sp_get_i64(val + n + 32);
    n += v1 ? 32 : 40;
    int nd = (unsigned char)val[n++];
    if ((tk->flags & ~TK_MASK) || nd > SP_FK_DIMS || !time_ok(tk->opened) ||
        !time_ok(tk->reply_wait) || !time_ok(tk->resolve_wait) || !time_ok(tk->first_bot) ||
        !time_ok(tk->last))
        return -1;
    if (v1) /* the latest time it kept */
        tk->last = max_time(max_time(tk->opened, tk->reply_wait),
                            max_time(tk->resolve_wait, tk->first_bot));
    /* waiting effects exist only while the opening is unknown */
    if (tk->opened && (tk->reply_wait || tk->resolve_wait)) return -1;
    if (tk->reply_wait && (tk->flags & TK_FRT_DONE)) return -1;
    for (int j = 0; j < 2; j++) {
        m = get_ids(e, val + n, len - n, nd, j ? tk->resolve_ids : tk->reply_ids);
        if (nd && !m) return -1;
        n += m;
    }
    return n == len ? 0 : -1;
}

static int is_open(const ticket_t *tk) {
    return tk->opened && !(tk->flags & TK_RESOLVED);
}

/* The watermark at which an open ticket is given up. */
static int64_t give_up_at(const sp_engine_t *e, const ticket_t *tk) {
    return sp_sat_add(tk->last, sp_engine_cfg(e)->ticket_ttl_ms);
}

static int64_t ticket_timer(sp_engine_t *e, const void *data) {
    const ticket_t *tk = data;
    if (!is_open(tk)) return -1;
    int64_t due = give_up_at(e, tk);
    return due == INT64_MAX ? -1 : due;
}

static void ticket_on_timer(sp_engine_t *e, sp_entity_t *en) {
    ticket_t *tk = (ticket_t *)en->data;
    int64_t w = sp_engine_watermark(e);
    if (!is_open(tk) || w == INT64_MIN || w < give_up_at(e, tk)) return;
    sp_engine_gauge_add(e, GAUGE, -1);
    sp_engine_delete(e, en);
}

#define DAY_MS 86400000LL

static int64_t ticket_ttl(sp_engine_t *e, const void *data) {
    const ticket_t *tk = data;
    int64_t ttl = sp_engine_cfg(e)->ticket_ttl_ms;
    if (!is_open(tk)) return ttl;
    int64_t w = sp_engine_watermark(e);
    int64_t left = sp_sat_add(give_up_at(e, tk), -(w != INT64_MIN ? w : tk->last));
    left = sp_sat_add(left, DAY_MS);
    return left > ttl ? left : ttl;
}

const sp_entity_kind_t sp_kind_ticket = {"ticket",        sizeof(ticket_t), ticket_encode,
                                         ticket_decode,   NULL,             ticket_timer,
                                         ticket_on_timer, ticket_ttl};

/* ---- the family ---------------------------------------------------- */

static int is_support(const sp_event_t *ev) {
    return ev->stream == SP_STREAM_SUPPORT;
}

static void support_want(sp_engine_t *e, const sp_event_t *ev) {
    if (is_support(ev)) sp_engine_want_entity(e, SP_KIND_TICKET, ev->s[SP_S_TICKET_ID]);
}

/* Values that could not be written back into the ticket (longer than
 * sp_fk_put_ids takes) are kept as __other__, where they count. */
static void storable_ids(sp_engine_t *e, const uint32_t *ids, uint32_t *out) {
    for (int k = 0; k < SP_FK_DIMS; k++) {
        size_t len = 0;
        out[k] = ids[k];
        if (ids[k] == SP_FK_NONE || ids[k] == 0) continue;
        sp_engine_interned(e, ids[k], &len);
        if (len > 254) out[k] = 0;
    }
}

static void add_all(sp_engine_t *e, void **wins, const uint32_t *ids, int f, int64_t delta) {
    for (int i = 0; i < sp_engine_size_count(e); i++)
        sp_fk_add(e, &spec, wins[i], ids, f, delta);
}

static void hist_all(sp_engine_t *e, void **wins, const uint32_t *ids, int h, int64_t ms) {
    for (int i = 0; i < sp_engine_size_count(e); i++)
        sp_fk_hist(e, &spec, wins[i], ids, h, ms);
}

/* Record a duration of ms milliseconds in histogram h in the windows of
 * time t (not the event's own):
 * each size whose window is final for the family drops it. */
static void hist_at(sp_engine_t *e, int64_t t, const uint32_t *ids, int h, int64_t ms) {
    for (int i = 0; i < sp_engine_size_count(e); i++)
        sp_fk_hist(e, &spec, sp_engine_block(e, SP_FAM_SUPPORT, i, t), ids, h, ms);
}

/* TICKET_OPENED: the opening, then the effects that waited for it. */
static int on_opened(sp_engine_t *e, ticket_t *tk, int64_t t, void **wins, const uint32_t *ids) {
    if (tk->opened) return SP_ERR_DUPLICATE;
    tk->opened = t;
    add_all(e, wins, ids, F_OPENED, 1);
    if (!(tk->flags & TK_RESOLVED)) sp_engine_gauge_add(e, GAUGE, 1);
    if (tk->reply_wait) {
        if (tk->reply_wait >= t) {
            hist_at(e, tk->reply_wait, tk->reply_ids, H_FRT, tk->reply_wait - t);
            tk->flags |= TK_FRT_DONE;
        }
        tk->reply_wait = 0;
    }
    if (tk->resolve_wait) {
        if (tk->resolve_wait >= t)
            hist_at(e, tk->resolve_wait, tk->resolve_ids, H_RESOLUTION, tk->resolve_wait - t);
        tk->resolve_wait = 0;
    }
    for (int k = 0; k < SP_FK_DIMS; k++)
        tk->reply_ids[k] = tk->resolve_ids[k] = SP_FK_NONE;
    return SP_OK;
}

static void on_human_reply(sp_engine_t *e, ticket_t *tk, int64_t t, void **wins,
                           const uint32_t *ids) {
    if (tk->first_bot && !(tk->flags & TK_BOT_DECIDED) && t > tk->first_bot) {
        add_all(e, wins, ids, F_BOT_TICKETS, 1);
        add_all(e, wins, ids, F_BOT_HANDOFFS, 1);
        tk->flags |= TK_BOT_DECIDED;
    }
    tk->flags |= TK_HUMAN;
    if (tk->flags & TK_FRT_DONE) return;
    if (tk->opened) {
        if (t < tk->opened) return; /* earlier than the opening: not a response */
        hist_all(e, wins, ids, H_FRT, t - tk->opened);
        tk->flags |= TK_FRT_DONE;
    } else if (!tk->reply_wait || t < tk->reply_wait) {
        tk->reply_wait = t;
        storable_ids(e, ids, tk->reply_ids);
    }
}

static int on_resolved(sp_engine_t *e, ticket_t *tk, int64_t t, void **wins, const uint32_t *ids) {
    if (tk->flags & TK_RESOLVED) return SP_ERR_DUPLICATE;
    tk->flags |= TK_RESOLVED;
    add_all(e, wins, ids, F_RESOLVED, 1);
    if (tk->opened) {
        if (t >= tk->opened) hist_all(e, wins, ids, H_RESOLUTION, t - tk->opened);
        sp_engine_gauge_add(e, GAUGE, -1);
    } else if (!tk->resolve_wait) {
        tk->resolve_wait = t;
        storable_ids(e, ids, tk->resolve_ids);
    }
    if (tk->first_bot && !(tk->flags & (TK_BOT_DECIDED | TK_HUMAN))) {
        add_all(e, wins, ids, F_BOT_TICKETS, 1); /* settled by the bot alone */
        tk->flags |= TK_BOT_DECIDED;
    }
    return SP_OK;
}

static int on_survey(sp_engine_t *e, ticket_t *tk, const sp_event_t *ev, void **wins,
                     const uint32_t *ids) {
    if (tk->flags & TK_SURVEYED) return SP_ERR_DUPLICATE;
    tk->flags |= TK_SURVEYED;
    /* ranges are validated by the decoder (bad_value); checked again here */
    if (sp_event_has_int(ev, SP_I_CSAT)) {
        int64_t v = ev->i[SP_I_CSAT];
        if (v >= 1 && v <= 5) {
            add_all(e, wins, ids, F_CSAT_RESP, 1);
            if (v >= 4) add_all(e, wins, ids, F_CSAT_SAT, 1);
        }
    }
    if (sp_event_has_int(ev, SP_I_NPS)) {
        int64_t v = ev->i[SP_I_NPS];
        if (v >= 0 && v <= 10) {
            add_all(e, wins, ids, F_NPS_RESP, 1);
            if (v >= 9) {
                add_all(e, wins, ids, F_NPS_PRO, 1);
                add_all(e, wins, ids, F_NPS_NET, 1);
            } else if (v <= 6) {
                add_all(e, wins, ids, F_NPS_DET, 1);
                add_all(e, wins, ids, F_NPS_NET, -1);
            }
        }
    }
    if (sp_event_has_int(ev, SP_I_CES)) {
        int64_t v = ev->i[SP_I_CES];
        if (v >= 1 && v <= 7) {
            add_all(e, wins, ids, F_CES_RESP, 1);
            add_all(e, wins, ids, F_CES_SUM, v);
        }
    }
    return SP_OK;
}

static int support_apply(sp_engine_t *e, const sp_event_t *ev, void **wins) {
    int64_t t = ev->i[SP_I_EVENT_TIME];
    uint32_t ids[SP_FK_DIMS] = {SP_FK_NONE, SP_FK_NONE, SP_FK_NONE};
    int rc = SP_OK, changed = 1;

    if (!is_support(ev)) return SP_OK;
    sp_entity_t *en = sp_engine_entity(e, SP_KIND_TICKET, ev->s[SP_S_TICKET_ID]);
    if (!en) return SP_OK; /* could not be loaded (out of memory): not counted */
    ticket_t *tk = (ticket_t *)en->data;
    sp_fk_ids(e, &spec, ev, ids);
    int64_t last = tk->last;

    switch (ev->type) {
    case SP_T_TICKET_OPENED: rc = on_opened(e, tk, t, wins, ids); break;
    case SP_T_AGENT_REPLIED:
        if (sp_event_has_int(ev, SP_I_IS_BOT) && ev->i[SP_I_IS_BOT]) {
            if (!tk->first_bot || t < tk->first_bot) tk->first_bot = t;
        } else {
            on_human_reply(e, tk, t, wins, ids);
        }
        break;
    case SP_T_TICKET_RESOLVED: rc = on_resolved(e, tk, t, wins, ids); break;
    case SP_T_TICKET_REOPENED:
        if (tk->flags & TK_RESOLVED) {
            tk->flags &= (uint8_t)~TK_RESOLVED;
            add_all(e, wins, ids, F_REOPENED, 1);
            if (tk->opened) sp_engine_gauge_add(e, GAUGE, 1);
        } else {
            changed = 0;
        }
        break;
    case SP_T_SURVEY_RESPONSE: rc = on_survey(e, tk, ev, wins, ids); break;
    default: changed = 0; break; /* CUSTOMER_REPLIED */
    }
    if (rc != SP_OK) return rc; /* a duplicate fact: nothing was changed */
    tk->last = max_time(last, t); /* news of the ticket puts its give-up off */
    /* a ticket known in Redis is rewritten to refresh its TTL */
    if (changed || !en->absent) sp_engine_touch(e, en);
    return SP_OK;
}

static void support_emit(sp_engine_t *e, void *win, int closing, sp_commit_t *c) {
    sp_fk_emit(e, &spec, win, closing, c);
}

/* The catalogue (family.h): fields[], ratios[], hists[] and GAUGE. */
static const sp_metric_t metrics[] = {
    {"tickets_opened", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"tickets_resolved", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"tickets_reopened", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"csat_responses", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"csat_satisfied", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"nps_responses", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"nps_promoters", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"nps_detractors", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"nps_net", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"ces_responses", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"ces_sum", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"bot_tickets", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"bot_handoffs", SP_METRIC_COUNTER, NULL, NULL, 0},
    {"reopen_rate", SP_METRIC_RATIO, "tickets_resolved", NULL, 0},
    {"csat", SP_METRIC_RATIO, "csat_responses", NULL, 0},
    {"nps", SP_METRIC_RATIO, "nps_responses", NULL, 0},
    {"ces", SP_METRIC_RATIO, "ces_responses", NULL, 0},
    {"bot_handoff_rate", SP_METRIC_RATIO, "bot_tickets", NULL, 0},
    {"frt_seconds", SP_METRIC_DURATION, NULL, NULL, 0},
    {"resolution_seconds", SP_METRIC_DURATION, NULL, NULL, 0},
};

static const sp_metric_t gauges[] = {
    {"in_flight", SP_METRIC_GAUGE, NULL, "kind", SP_METRIC_SPLIT_ONLY}, /* ticket */
};

const sp_family_t sp_family_support = {
    .name = "support",
    .win_size = sizeof(sp_fk_win_t),
    .metrics = metrics,
    .nmetrics = (int)(sizeof(metrics) / sizeof(metrics[0])),
    .gauges = gauges,
    .ngauges = 1,
    .dims_off = offsetof(sp_config_t, support_dims),
    .want = support_want,
    .apply = support_apply,
    .emit = support_emit,
    .release = sp_fk_release,
};
