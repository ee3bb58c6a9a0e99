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

/* The subcommand: storepulse import-orders [-c FILE] ORDERS.csv.
 * Exit status: 0 all lines imported, 2 some lines were bad (reported and
 * skipped), 1 fatal error. */
int sp_import_orders_main(int argc, char **argv);

#endif
