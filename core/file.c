/* file.c -- see file.h. The buffer is max + 1 bytes, read in one fread: a
 * file that fills it is too large (no stat, so a FIFO or /proc file reads
 * the same way). */
#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int sp_file_read(const char *path, size_t max, char **out, size_t *len, char *errstr,
                 size_t errstr_size) {
    int rc = SP_ERR_CONFIG;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return SP_ERR_CONFIG;
    }
    if (!(buf = malloc(max + 1))) {
        snprintf(errstr, errstr_size, "%s: out of memory", path);
        rc = SP_ERR_NOMEM;
        goto out;
    }
    size_t n = fread(buf, 1, max + 1, f);
    if (ferror(f)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        goto out;
    }
    if (n > max) {
        snprintf(errstr, errstr_size, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = SP_OK;
out:
    free(buf);
    fclose(f);
    return rc;
}
