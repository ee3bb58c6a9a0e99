/* file.h -- reading a small file whole (schemas, config snippets).
 *
 * What it owns: one bounded read of a file into a NUL-terminated buffer of
 * its own, with the reason in a caller buffer when it fails. Not here:
 * streaming reads (the CSV import reads line by line), writes. */
#ifndef SP_FILE_H
#define SP_FILE_H

#include <stddef.h>

/* Read path whole into *out (malloc'd, NUL-terminated, the caller frees it)
 * and its length into *len. A file larger than max bytes is refused.
 * Returns SP_OK, SP_ERR_NOMEM, or SP_ERR_CONFIG (cannot open or read, or
 * too large) with "PATH: reason" in errstr. */
int sp_file_read(const char *path, size_t max, char **out, size_t *len, char *errstr,
                 size_t errstr_size);

#endif
