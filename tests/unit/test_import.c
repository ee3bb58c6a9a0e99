/* test_import.c -- the pure CSV parsers of `storepulse import-orders`
 * (sp_import_parse_header, sp_import_parse_line; also the fuzz_csv entry
 * points): headers, good lines in place, and the reason and offending value
 * of each kind of bad line. The import itself (Redis, batches, exit codes)
 * is tests/integration/test_import_orders.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "aggregators/import.h"

#define NOW 1767225600000LL /* 2026-01-01T00:00:00Z */

static int header(const char *text) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", text);
    return sp_import_parse_header(buf);
}

static void test_header(void **state) {
    (void)state;
    assert_int_equal(header("customer_id,order_time"), 2);
    assert_int_equal(header("customer_id,order_time,channel"), 3);
    assert_int_equal(header(" Customer_ID , \"order_time\",CHANNEL"), 3);
    assert_int_equal(header("order_time,customer_id"), 0);
    assert_int_equal(header("customer_id"), 0);
    assert_int_equal(header("customer_id,order_time,channel,x"), 0);
    assert_int_equal(header("customer_id,order_time,\"unterminated"), 0);
    assert_int_equal(header(""), 0);
}

/* Parse a copy of text in an exact-size buffer (ASan sees any overrun). */
typedef struct res {
    int rc;
    char why[128];
    char customer[300];
    char val[300];
    int64_t t;
} res_t;

static res_t line(const char *text, int ncols) {
    res_t r;
    sp_import_order_t o;
    sp_str_t val;
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    memcpy(buf, text, n + 1);
    memset(&r, 0, sizeof(r));
    r.rc = sp_import_parse_line(buf, ncols, NOW, &o, r.why, sizeof(r.why), &val);
    if (r.rc == 0) {
        assert_true(o.customer.p >= buf && o.customer.p + o.customer.len <= buf + n);
        snprintf(r.customer, sizeof(r.customer), "%.*s", (int)o.customer.len, o.customer.p);
        r.t = o.t;
    } else if (val.p) {
        assert_true(val.p >= buf && val.p + val.len <= buf + n);
        snprintf(r.val, sizeof(r.val), "%.*s", (int)val.len, val.p);
    }
    free(buf);
    return r;
}

static void test_good_lines(void **state) {
    (void)state;
    res_t r = line("u1,2025-01-10T10:00:00Z,web", 3);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.customer, "u1");
    assert_int_equal(r.t, 1736503200000LL);
    r = line("\"u \"\"5\"\"\" , 2025-01-10T11:00:00.5+01:00 ,\"we,b\"", 3);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.customer, "u \"5\"");
    assert_int_equal(r.t, 1736503200500LL);
    r = line("u2,1736503200000", 2);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.t, 1736503200000LL);
}

static void test_bad_lines(void **state) {
    (void)state;
    static const struct {
        const char *line;
        int ncols;
        const char *why, *val; /* val NULL: no value shown */
    } cases[] = {
        {"u1,2025-01-10T10:00:00Z", 3, "expected 3 fields (customer_id,order_time,channel), got 2",
         NULL},
        {"u1,2025-01-10T10:00:00Z,web", 2, "expected 2 fields (customer_id,order_time), got 3",
         NULL},
        {"u1,\"2025", 2, "unterminated quoted field", NULL},
        {"u1,\"x\"y", 2, "text after a closing quote", NULL},
        {"u\"1,x", 2, "quote inside an unquoted field", NULL},
        {",2025-01-10T10:00:00Z", 2, "missing customer_id", NULL},
        {"u1,", 2, "missing order_time", NULL},
        {"u1,yesterday", 2,
         "order_time: neither epoch milliseconds nor ISO 8601 (2026-10-14T09:30:00Z)", "yesterday"},
        {"u1,2025-02-29T00:00:00Z", 2, "order_time: no such date", "2025-02-29T00:00:00Z"},
        {"u1,1999-12-31T23:59:59Z", 2, "order_time before 2000", "1999-12-31T23:59:59Z"},
        {"u1,2026-01-02T00:00:01Z", 2, "order_time more than 1 day in the future",
         "2026-01-02T00:00:01Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        res_t r = line(cases[i].line, cases[i].ncols);
        assert_int_equal(r.rc, -1);
        assert_string_equal(r.why, cases[i].why);
        assert_string_equal(r.val, cases[i].val ? cases[i].val : "");
    }
    char longid[300];
    memset(longid, 'x', 257);
    snprintf(longid + 257, sizeof(longid) - 257, ",1736503200000");
    assert_string_equal(line(longid, 2).why, "customer_id longer than 256 bytes");
    assert_int_equal(line(longid + 1, 2).rc, 0); /* 256 bytes: fine */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_good_lines),
        cmocka_unit_test(test_bad_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
