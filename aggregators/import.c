/* import.c -- `storepulse import-orders`: seed customer history and the
 * cohort tables from a CSV of past orders (SPEC §3 "retention",
 * docs/METRICS.md), so that live orders of customers the store already knew
 * count as returning and the cohort tables start with the store's past.
 *
 * What it does: reads the CSV (header customer_id,order_time[,channel]; RFC
 * 4180 quoting; order_time as epoch ms or ISO 8601 with a zone), reports each
 * bad line on stderr as FILE:LINE: reason and skips it, and feeds the good
 * ones through the SAME customer logic as the pipeline (sp_retention_import
 * in retention.c: history and cohort marks, no window counters). Customers
 * go through the engine's entity cache exactly as in `run`: per batch of
 * IMPORT_BATCH lines, one MGET of the customers not in memory, then one
 * atomic commit (sp_engine_build_commit, no offsets). Batch N's commit runs
 * in Redis while batch N+1 is parsed (its MGET is queued behind the commit,
 * so it reads what the commit wrote). Memory is bounded by the batch and
 * state.cache_max, never by the file.
 *
 * Why it is idempotent: a customer's state is a function of the set of
 * order times seen (see retention.c); an order time already known changes
 * nothing, writes nothing and adds nothing to the cohort tables. So
 * importing a file twice, or re-running an import that stopped half-way,
 * changes nothing the first run did.
 *
 * What it deliberately does not do: window counters (historic windows are
 * closed or expired; `channel` is read and not used); open-window
 * corrections of live orders already counted (the pipeline re-decides a
 * customer's open windows at its next order); any locking against a running
 * pipeline, which caches customers and would write its copy back over the
 * import (run the import while `storepulse run` is stopped). The commit also
 * carries the engine's gauges (open_windows, in_flight_entities) of this
 * process; the pipeline's next commit overwrites them. */
#include "aggregators/import.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aggregators/family.h"
#include "aggregators/store.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"

#define IMPORT_BATCH   2000 /* good lines per Redis round trip */
#define LINE_MAX_BYTES 4096
#define MAX_FIELDS     3
#define MIN_TIME_MS    946684800000LL /* 2000-01-01T00:00:00Z, as the decoder */
#define DAY_MS         86400000LL

/* ---- order_time ---------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

/* n decimal digits at s[*pos]. */
static int digits(const char *s, size_t len, size_t *pos, int n, int *out) {
    int v = 0;
    if (*pos + (size_t)n > len) return -1;
    for (int i = 0; i < n; i++) {
        char ch = s[*pos + (size_t)i];
        if (!is_digit(ch)) return -1;
        v = v * 10 + (ch - '0');
    }
    *pos += (size_t)n;
    *out = v;
    return 0;
}

static int expect(const char *s, size_t len, size_t *pos, char ch) {
    if (*pos >= len || s[*pos] != ch) return -1;
    (*pos)++;
    return 0;
}

int sp_import_parse_time(const char *s, size_t len, int64_t *out_ms, const char **why) {
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 0;
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0, off = 0;

    if (len == 0) {
        *why = "empty order_time";
        return -1;
    }
    while (i < len && is_digit(s[i])) i++;
    if (i == len) { /* epoch milliseconds */
        int64_t v = 0;
        if (len > 15) {
            *why = "order_time: epoch milliseconds out of range";
            return -1;
        }
        for (i = 0; i < len; i++) v = v * 10 + (s[i] - '0');
        *out_ms = v;
        return 0;
    }
    i = 0;
    if (digits(s, len, &i, 4, &y) || expect(s, len, &i, '-') || digits(s, len, &i, 2, &mo) ||
        expect(s, len, &i, '-') || digits(s, len, &i, 2, &d)) {
        *why = "order_time: neither epoch milliseconds nor ISO 8601 (2026-10-14T09:30:00Z)";
        return -1;
    }
    if (i == len) {
        *why = "order_time: a date without a time of day and zone";
        return -1;
    }
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') {
        *why = "order_time: expected 'T' between date and time";
        return -1;
    }
    i++;
    if (digits(s, len, &i, 2, &h) || expect(s, len, &i, ':') || digits(s, len, &i, 2, &mi)) {
        *why = "order_time: bad time of day (HH:MM[:SS[.fff]])";
        return -1;
    }
    if (i < len && s[i] == ':') {
        i++;
        if (digits(s, len, &i, 2, &sec)) {
            *why = "order_time: bad seconds";
            return -1;
        }
        if (i < len && (s[i] == '.' || s[i] == ',')) {
            int nf = 0;
            for (i++; i < len && is_digit(s[i]); i++, nf++)
                if (nf < 3) ms = ms * 10 + (s[i] - '0');
            if (nf == 0) {
                *why = "order_time: no digits after the decimal point";
                return -1;
            }
            for (; nf < 3; nf++) ms *= 10;
        }
    }
    if (i == len) {
        *why = "order_time: no time zone (add Z or an offset such as +02:00)";
        return -1;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
        i++;
        int bad = digits(s, len, &i, 2, &oh);
        if (!bad && i < len && s[i] == ':') {
            i++;
            bad = digits(s, len, &i, 2, &om);
        } else if (!bad && i < len && is_digit(s[i])) {
            bad = digits(s, len, &i, 2, &om);
        }
        if (bad) {
            *why = "order_time: bad zone offset (+HH:MM)";
            return -1;
        }
        if (oh > 23 || om > 59) {
            *why = "order_time: zone offset out of range";
            return -1;
        }
        off = sign * (oh * 60 + om);
    } else {
        *why = "order_time: no time zone (add Z or an offset such as +02:00)";
        return -1;
    }
    if (i != len) {
        *why = "order_time: unexpected text after the time zone";
        return -1;
    }
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap)) {
        *why = "order_time: no such date";
        return -1;
    }
    if (h > 23 || mi > 59 || sec > 59) {
        *why = "order_time: time of day out of range";
        return -1;
    }
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out_ms = ((days * 24 + h) * 60 + mi) * 60000LL + sec * 1000LL + ms - off * 60000LL;
    return 0;
}

/* ---- CSV ----------------------------------------------------------- */

/* Split a line (NUL-terminated, line break removed) into fields, in place:
 * RFC 4180 quotes ("" inside quotes is one "), spaces and tabs around
 * unquoted fields trimmed. Returns the number of fields (those past max are
 * counted, not stored) or -1 with *why. */
static int csv_split(char *line, sp_str_t *f, int max, const char **why) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *start, *end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '"') {
            char *w = ++p;
            start = w;
            for (;;) {
                if (*p == '\0') {
                    *why = "unterminated quoted field";
                    return -1;
                }
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            end = w;
            while (*p == ' ' || *p == '\t') p++;
            if (*p != ',' && *p != '\0') {
                *why = "text after a closing quote";
                return -1;
            }
        } else {
            start = p;
            while (*p != ',' && *p != '\0') {
                if (*p == '"') {
                    *why = "quote inside an unquoted field";
                    return -1;
                }
                p++;
            }
            end = p;
            while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        }
        if (n < max) {
            f[n].p = start;
            f[n].len = (uint32_t)(end - start);
        }
        n++;
        if (*p == '\0') return n;
        p++; /* the comma */
    }
}

static int field_is(sp_str_t f, const char *name) {
    return f.len == strlen(name) && strncasecmp(f.p, name, f.len) == 0;
}

/* ---- the import ----------------------------------------------------- */

typedef struct item {
    uint32_t off, len; /* customer id in imp_t.ids */
    int64_t t;
    long line;
} item_t;

typedef struct imp {
    const char *fname;
    sp_engine_t *eng;
    sp_store_t *st;
    sp_commit_t *commit;
    char *ids; /* customer ids of the batch, back to back */
    size_t ids_len;
    item_t items[IMPORT_BATCH];
    int n;
    int commit_in_flight;
    long inflight_line; /* last line of the batch whose commit is in flight */
    long done_line;     /* every good line up to this one is committed */
    int64_t read, imported, added, known, skipped, new_customers;
} imp_t;

static void fetched_cb(void *opaque, int idx, const char *val, size_t len) {
    sp_engine_fetched(opaque, idx, val, len);
}

static int drain_commit(imp_t *m, char *err, size_t errsz) {
    if (!m->commit_in_flight) return SP_OK;
    m->commit_in_flight = 0;
    int rc = sp_store_commit_recv(m->st, err, errsz);
    if (rc == SP_OK) m->done_line = m->inflight_line;
    return rc;
}

/* Load the batch's customers, apply its orders, send its commit. */
static int flush_batch(imp_t *m, char *err, size_t errsz) {
    int rc, sent = 0;
    if (m->n == 0) return SP_OK;
    for (int k = 0; k < m->n; k++) {
        sp_str_t id = {m->ids + m->items[k].off, m->items[k].len};
        sp_engine_want_entity(m->eng, SP_KIND_CUSTOMER, id);
    }
    int nwant = sp_engine_want_count(m->eng);
    if (nwant > 0) {
        const size_t *lens;
        const char *const *keys = sp_engine_want_keys(m->eng, &lens);
        if ((rc = sp_store_mget_send(m->st, keys, lens, nwant, err, errsz)) != SP_OK) return rc;
        sent = 1;
    }
    /* The previous batch's commit ran before this MGET. */
    if ((rc = drain_commit(m, err, errsz)) != SP_OK) return rc;
    if (sent && (rc = sp_store_mget_recv(m->st, fetched_cb, m->eng, err, errsz)) != SP_OK)
        return rc;
    for (int k = 0; k < m->n; k++) {
        sp_str_t id = {m->ids + m->items[k].off, m->items[k].len};
        sp_entity_t *en = sp_engine_entity(m->eng, SP_KIND_CUSTOMER, id);
        if (!en) {
            snprintf(err, errsz, "out of memory loading customer %.*s", (int)id.len, id.p);
            return SP_ERR_NOMEM;
        }
        switch (sp_retention_import(m->eng, en, m->items[k].t)) {
        case SP_RET_IMPORT_NEW_CUSTOMER: m->new_customers++; /* fall through */
        case SP_RET_IMPORT_ADDED: m->added++; break;
        default: m->known++; break;
        }
        m->imported++;
    }
    sp_commit_reset(m->commit);
    sp_engine_build_commit(m->eng, m->commit);
    if ((rc = sp_store_commit_send(m->st, m->commit, err, errsz)) != SP_OK) return rc;
    m->commit_in_flight = 1;
    m->inflight_line = m->items[m->n - 1].line;
    m->n = 0;
    m->ids_len = 0;
    return SP_OK;
}

static void bad_line(imp_t *m, long line, const char *why, sp_str_t val) {
    m->skipped++;
    if (val.p)
        fprintf(stderr, "%s:%ld: %s: '%.*s%s'\n", m->fname, line, why,
                (int)(val.len > 64 ? 64 : val.len), val.p, val.len > 64 ? "..." : "");
    else
        fprintf(stderr, "%s:%ld: %s\n", m->fname, line, why);
}

int sp_import_parse_header(char *line) {
    sp_str_t f[MAX_FIELDS];
    const char *why;
    int nf = csv_split(line, f, MAX_FIELDS, &why);
    if ((nf == 2 || nf == 3) && field_is(f[0], "customer_id") && field_is(f[1], "order_time") &&
        (nf == 2 || field_is(f[2], "channel")))
        return nf;
    return 0;
}

int sp_import_parse_line(char *line, int ncols, int64_t now_ms, sp_import_order_t *out, char *why,
                         size_t why_size, sp_str_t *val) {
    sp_str_t f[MAX_FIELDS], none = {NULL, 0};
    const char *reason = NULL;
    int64_t t;

    *val = none;
    int nf = csv_split(line, f, MAX_FIELDS, &reason);
    if (nf < 0) goto bad;
    if (nf != ncols) {
        snprintf(why, why_size, "expected %d fields (customer_id,order_time%s), got %d", ncols,
                 ncols == 3 ? ",channel" : "", nf);
        return -1;
    }
    if (f[0].len == 0) {
        reason = "missing customer_id";
        goto bad;
    }
    if (f[0].len > SP_MAX_ID_LEN) {
        reason = "customer_id longer than 256 bytes";
        goto bad;
    }
    if (ncols == 3 && f[2].len > SP_MAX_ID_LEN) {
        reason = "channel longer than 256 bytes";
        goto bad;
    }
    if (f[1].len == 0) {
        reason = "missing order_time";
        goto bad;
    }
    if (sp_import_parse_time(f[1].p, f[1].len, &t, &reason) != 0) goto bad_time;
    if (t < MIN_TIME_MS) {
        reason = "order_time before 2000";
        goto bad_time;
    }
    if (t > now_ms + DAY_MS) {
        reason = "order_time more than 1 day in the future";
        goto bad_time;
    }
    out->customer = f[0];
    out->t = t;
    return 0;
bad_time:
    *val = f[1];
bad:
    snprintf(why, why_size, "%s", reason);
    return -1;
}

/* One data line. Returns SP_OK, or a fatal error from flushing. */
static int import_line(imp_t *m, char *line, long lineno, int ncols, int64_t now, char *err,
                       size_t errsz) {
    sp_import_order_t o;
    sp_str_t val;
    char why[128];

    m->read++;
    if (sp_import_parse_line(line, ncols, now, &o, why, sizeof(why), &val) != 0) {
        bad_line(m, lineno, why, val);
        return SP_OK;
    }
    item_t *it = &m->items[m->n++];
    it->off = (uint32_t)m->ids_len;
    it->len = o.customer.len;
    it->t = o.t;
    it->line = lineno;
    memcpy(m->ids + m->ids_len, o.customer.p, o.customer.len);
    m->ids_len += o.customer.len;
    if (m->n == IMPORT_BATCH) return flush_batch(m, err, errsz);
    return SP_OK;
}

/* Read a line into buf (at most cap - 2 bytes of text). Returns its length
 * without the line break, -1 at end of file, -2 if it was longer (the rest
 * of it is consumed). */
static long read_line(FILE *in, char *buf, size_t cap) {
    if (!fgets(buf, (int)cap, in)) return -1;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
    } else if (n == cap - 1 && !feof(in)) {
        int ch;
        while ((ch = fgetc(in)) != EOF && ch != '\n') {
        }
        return -2;
    }
    if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
    return (long)n;
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') return 0;
    return 1;
}

static void import_usage(FILE *out) {
    fprintf(
        out,
        "usage: storepulse import-orders [-c FILE] ORDERS.csv\n"
        "Seed customer history and the cohort tables from past orders.\n"
        "\n"
        "  -c, --config FILE  configuration (YAML): Redis, namespace, windows.timezone,\n"
        "                     state.customer_ttl (defaults and environment without it)\n"
        "  -h, --help         this text\n"
        "\n"
        "ORDERS.csv ('-': standard input) starts with the header line\n"
        "    customer_id,order_time          or   customer_id,order_time,channel\n"
        "then one order per line. order_time is ISO 8601 with a zone\n"
        "(2026-10-14T09:30:00Z, 2026-10-14T11:30:00.250+02:00) or epoch milliseconds\n"
        "(1791970200000), not before 2000 nor more than a day ahead. Fields may be\n"
        "quoted as in RFC 4180; blank lines are ignored; channel is read but not used.\n"
        "\n"
        "What an import does (docs/METRICS.md, retention): each order goes through the\n"
        "customer logic of a live ORDER_PLACED, without window counters. It \"adds the\n"
        "orders to customer history and the cohort tables only (no window counters). An\n"
        "order time already known for the customer changes nothing, so importing a file\n"
        "twice changes nothing.\" History: sp:{NS}:state:customer:<customer_id>.\n"
        "Cohorts: sp:{NS}:cohort:<YYYY-MM> (month of the first order, windows.timezone):\n"
        "customers, active_m1..active_m12, retained_30d/60d/90d. An order earlier than a\n"
        "customer's first moves the customer to the earlier cohort. Live orders within\n"
        "metrics.retention.horizon after an imported one count as returning.\n"
        "Run it while `storepulse run` is stopped: a running pipeline keeps the\n"
        "customers it has seen in memory and would write them back over the import.\n"
        "\n"
        "Exit status:\n"
        "  0  every line was imported\n"
        "  2  some lines were bad: each is reported on stderr as FILE:LINE: reason and\n"
        "     skipped; every good line was imported\n"
        "  1  fatal error (usage, config, unreadable file, missing header, Redis): lines\n"
        "     before it may be imported; running the import again is safe\n");
}

int sp_import_orders_main(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    static sp_config_t cfg;
    const char *cfgpath = NULL, *path;
    char err[1024], *line = NULL;
    imp_t *m = NULL;
    FILE *in = NULL;
    int c, ret = 1, rc;
    long lineno = 0, n;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'h': import_usage(stdout); return 0;
        default: import_usage(stderr); return 1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "storepulse import-orders: expected one CSV file\n");
        import_usage(stderr);
        return 1;
    }
    path = argv[optind];
    sp_config_defaults(&cfg);
    if (sp_config_load(&cfg, cfgpath, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "storepulse: %s\n", err);
        return 1;
    }
    sp_log_setup(cfg.log_level, cfg.log_format);

    if (!strcmp(path, "-")) {
        in = stdin;
        path = "<stdin>";
    } else if (!(in = fopen(path, "r"))) {
        fprintf(stderr, "storepulse import-orders: %s: %s\n", path, strerror(errno));
        return 1;
    }
    m = calloc(1, sizeof(*m));
    line = malloc(LINE_MAX_BYTES + 2);
    if (!m || !line || !(m->ids = malloc((size_t)IMPORT_BATCH * SP_MAX_ID_LEN)) ||
        !(m->commit = sp_commit_new())) {
        fprintf(stderr, "storepulse import-orders: out of memory\n");
        goto out;
    }
    m->fname = path;
    if (!(m->eng = sp_engine_new(&cfg, err, sizeof(err))) ||
        !(m->st = sp_store_new(&cfg, err, sizeof(err)))) {
        fprintf(stderr, "storepulse import-orders: %s\n", err);
        goto out;
    }

    /* The header. */
    int ncols = 0;
    while ((n = read_line(in, line, LINE_MAX_BYTES + 2)) != -1) {
        lineno++;
        char *h = line;
        if (n == -2) break;
        if (lineno == 1 && !strncmp(h, "\xEF\xBB\xBF", 3)) h += 3; /* UTF-8 BOM */
        if (is_blank(h)) continue;
        ncols = sp_import_parse_header(h);
        break;
    }
    if (!ncols) {
        if (lineno == 0 || n == -1)
            fprintf(stderr,
                    "%s: empty file: expected the header customer_id,order_time[,channel]\n",
                    path);
        else
            fprintf(stderr,
                    "%s:%ld: missing header: expected customer_id,order_time[,channel] "
                    "(nothing imported)\n",
                    path, lineno);
        goto out;
    }

    int64_t now = sp_clock_now_ms();
    while ((n = read_line(in, line, LINE_MAX_BYTES + 2)) != -1) {
        lineno++;
        if (n == -2) {
            sp_str_t none = {NULL, 0};
            m->read++;
            bad_line(m, lineno, "line longer than 4096 bytes", none);
            continue;
        }
        if (is_blank(line)) continue;
        if ((rc = import_line(m, line, lineno, ncols, now, err, sizeof(err))) != SP_OK) goto fail;
    }
    if (ferror(in)) {
        snprintf(err, sizeof(err), "reading %s: %s", path, strerror(errno));
        rc = SP_ERR_IO;
        goto fail;
    }
    if ((rc = flush_batch(m, err, sizeof(err))) != SP_OK ||
        (rc = drain_commit(m, err, sizeof(err))) != SP_OK)
        goto fail;

    printf("import-orders: %s: %lld lines read: %lld imported (%lld new, "
           "%lld already known), %lld skipped; %lld new customers\n",
           path, (long long)m->read, (long long)m->imported, (long long)m->added,
           (long long)m->known, (long long)m->skipped, (long long)m->new_customers);
    ret = m->skipped ? 2 : 0;
    goto out;
fail:
    (void)drain_commit(m, line, LINE_MAX_BYTES); /* what was committed before */
    fprintf(stderr,
            "storepulse import-orders: %s: %s; orders up to line %ld are imported, "
            "running the import again is safe\n",
            sp_err_str(rc), err, m->done_line);
out:
    if (in && in != stdin) fclose(in);
    if (m) {
        sp_store_destroy(m->st);
        sp_engine_destroy(m->eng);
        sp_commit_destroy(m->commit);
        free(m->ids);
        free(m);
    }
    free(line);
    return ret;
}
