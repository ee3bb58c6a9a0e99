/* import.h -- `storepulse import-orders`: seed customer history and the
 * cohort tables from a CSV of past orders (SPEC §3 "retention",
 * docs/METRICS.md). The customer logic itself lives in retention.c. */
#ifndef SP_IMPORT_H
#define SP_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "aggregators/engine.h"

struct sp_entity;

/* What an order did to a customer (sp_retention_import). */
enum {
    SP_RET_IMPORT_KNOWN = 0,       /* nothing: the order time was known */
    SP_RET_IMPORT_ADDED = 1,       /* history and/or cohort marks changed */
    SP_RET_IMPORT_NEW_CUSTOMER = 2 /* the customer's first order seen */
};

/* Add an order at t (ms) of a customer entity (kind SP_KIND_CUSTOMER,
 * wanted and fetched) to its history and the cohort tables, as a live
 * ORDER_PLACED does but without window counters. Marks the entity changed
 * unless nothing changed. Defined in retention.c. */
int sp_retention_import(sp_engine_t *e, struct sp_entity *customer, int64_t t);

/* Parse an order time: epoch milliseconds (digits only) or ISO 8601 with a
 * zone: YYYY-MM-DD(T| )HH:MM[:SS[.fraction]](Z|+HH:MM|-HH:MM|+HHMM|+HH).
 * 0 ok (*out_ms set); -1 with *why (static text) otherwise. */
int sp_import_parse_time(const char *s, size_t len, int64_t *out_ms, const char **why);

/* One good order line. */
typedef struct sp_import_order {
    sp_str_t customer; /* customer_id, pointing into the line */
    int64_t t;         /* order time, ms */
} sp_import_order_t;

/* The CSV parsers of the import, pure (no I/O, no Redis): the fuzzing entry
 * points. Both split `line` (NUL-terminated, line break removed) in place.
 * sp_import_parse_header: 2 or 3 (the columns of a valid header
 * customer_id,order_time[,channel]), 0 if it is not one.
 * sp_import_parse_line: a data line of a file with ncols columns; 0 with
 * *out set; -1 with the reason in why and, when the order_time is at fault,
 * that value in *val (else val->p is NULL). */
int sp_import_parse_header(char *line);
int sp_import_parse_line(char *line, int ncols, int64_t now_ms, sp_import_order_t *out, char *why,
                         size_t why_size, sp_str_t *val);

/* The subcommand: storepulse import-orders [-c FILE] ORDERS.csv.
 * Exit status: 0 all lines imported, 2 some lines were bad (reported and
 * skipped), 1 fatal error. */
int sp_import_orders_main(int argc, char **argv);

#endif
