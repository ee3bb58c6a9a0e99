/* log.h -- one logging macro that checks the level before formatting.
 * Logs go to stderr (or the file of log.file), one line each: time, level,
 * message. Secrets never reach a log line: callers log config through
 * sp_config_redacted(). */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stddef.h>

typedef enum { SP_LOG_ERROR = 0, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG } sp_log_level_t;

extern int sp_log_level;

void sp_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sp_log_level_parse(const char *name); /* -1 if unknown */

/* Append to path from now on (NULL or "": stderr). Returns 0, or -1 with a
 * reason (the old destination stays). */
int sp_log_open(const char *path, char *errstr, size_t errstr_size);
/* Open the same path again (after a rotation renamed it); no-op on stderr.
 * Returns 0, or -1 with a reason (lines go on to the old file). */
int sp_log_reopen(char *errstr, size_t errstr_size);

#define sp_log(level, ...)                                                        \
    do {                                                                          \
        if ((level) <= sp_log_level) sp_log_write((level), __VA_ARGS__);          \
    } while (0)

#endif
