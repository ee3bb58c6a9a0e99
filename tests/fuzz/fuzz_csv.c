/* fuzz_csv.c -- libFuzzer target: the CSV parsers of `storepulse
 * import-orders` (sp_import_parse_header, sp_import_parse_line).
 *
 * Input: a CSV file's bytes. It is cut into lines as the import reads them
 * (a line break ends a line, a trailing CR is dropped, NUL bytes end a line's
 * text as they do for fgets); the first non-blank line decides the columns
 * (an invalid header stands for 3 columns, so data lines are still parsed),
 * every later line goes through the line parser. A good line must name a
 * non-empty customer of at most 256 bytes inside the line, and a time in
 * [2000-01-01, now + 1 day]. Seeds: tests/fuzz/corpus/csv/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregators/import.h"
#include "core/event.h"

#define NOW_MS 1767225600000LL /* 2026-01-01T00:00:00Z: reproducible runs */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int ncols = 0;
    size_t i = 0;

    while (i < size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t end = nl ? (size_t)(nl - data) : size, n = end - i;
        char *line = malloc(n + 1); /* exact size: ASan sees any overrun */
        if (!line) abort();
        memcpy(line, data + i, n);
        line[n] = '\0';
        n = strlen(line);
        if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
        i = end + 1;
        if (blank(line)) {
            free(line);
            continue;
        }
        if (!ncols) {
            char *h = line;
            if (!strncmp(h, "\xEF\xBB\xBF", 3)) h += 3;
            ncols = sp_import_parse_header(h);
            if (ncols != 0 && ncols != 2 && ncols != 3) abort();
            if (!ncols) ncols = 3;
            free(line);
            continue;
        }
        sp_import_order_t o;
        sp_str_t val;
        char why[128];
        if (sp_import_parse_line(line, ncols, NOW_MS, &o, why, sizeof(why), &val) == 0) {
            if (o.customer.len == 0 || o.customer.len > SP_MAX_ID_LEN || o.customer.p < line ||
                o.customer.p + o.customer.len > line + n || o.t < 946684800000LL ||
                o.t > NOW_MS + 86400000LL)
                abort();
        } else {
            if (!why[0]) abort();
            if (val.p && (val.p < line || val.p + val.len > line + n)) abort();
        }
        free(line);
    }
    return 0;
}
