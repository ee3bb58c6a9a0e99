/* log.h -- one logging macro that checks the level before formatting.
 *
 * Logs go to stderr (or the file of log.file), one line each, in one of two
 * formats (log.format):
 *   text  2026-12-07T23:27:22.123Z info  run: storepulse running ... topic=a partition=3
 *   json  {"time":"2026-12-07T23:27:22.123Z","level":"info","component":"run",
 *          "msg":"storepulse running ...","topic":"a","partition":3}
 * The component is the source file's name without ".c" (sp_log) or given
 * (sp_logc: "rdkafka" for librdkafka's own lines); fields (sp_logkv) are
 * key/value pairs a log shipper can index. A line is written with one
 * write(2), so lines of librdkafka's threads never interleave with ours.
 * Secrets never reach a log line: callers log config through
 * sp_config_redacted(). */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum { SP_LOG_ERROR = 0, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG } sp_log_level_t;
typedef enum { SP_LOG_TEXT = 0, SP_LOG_JSON } sp_log_format_t;

/* A field of a log line: a string (s != NULL) or an integer. */
typedef struct sp_log_kv {
    const char *key;
    const char *s;
    int64_t i;
} sp_log_kv_t;

extern int sp_log_level;
extern int sp_log_format;

/* Format and write one line. `component` is a name, or a path ending in
 * ".c" (then its base name without ".c"); kv/nkv: fields (may be NULL/0). */
void sp_log_emit(int level, const char *component, const sp_log_kv_t *kv, int nkv, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
/* Length (2-4) of the valid UTF-8 sequence at p, its code point in *cp
 * (cp may be NULL); 0 when p starts no valid sequence (overlong forms,
 * surrogates and code points past U+10FFFF are invalid). */
int sp_utf8_seq(const unsigned char *p, uint32_t *cp);
int sp_log_level_parse(const char *name);  /* -1 if unknown */
int sp_log_format_parse(const char *name); /* -1 if unknown */
/* Apply log.level and log.format (names as in the config); -1 if unknown. */
int sp_log_setup(const char *level, const char *format);
/* Append to path from now on (NULL or "": stderr). Returns 0, or -1 with a
 * reason (the old destination stays). */
int sp_log_open(const char *path, char *errstr, size_t errstr_size);
/* Open the same path again (after a rotation renamed it); no-op on stderr.
 * Returns 0, or -1 with a reason (lines go on to the old file). */
int sp_log_reopen(char *errstr, size_t errstr_size);
/* Where lines go (default: stderr's descriptor); for tests. */
void sp_log_set_fd(int fd);
/* The line sp_log_emit would write, without the newline, into buf; returns
 * its length (for tests and for callers that write elsewhere). A line that
 * does not fit is cut inside its strings, still one valid JSON object;
 * size must be at least SP_LOG_LINE_MIN (else "" and 0). */
#define SP_LOG_LINE_MIN 256
size_t sp_log_format_line(char *buf, size_t size, int level, const char *component,
                          const sp_log_kv_t *kv, int nkv, const char *msg);

#define sp_logkv(level, component, kv, nkv, ...)                                                   \
    do {                                                                                           \
        if ((level) <= sp_log_level) sp_log_emit((level), (component), (kv), (nkv), __VA_ARGS__);  \
    } while (0)
#define sp_logc(level, component, ...) sp_logkv(level, component, NULL, 0, __VA_ARGS__)
#define sp_log(level, ...)             sp_logkv(level, __FILE__, NULL, 0, __VA_ARGS__)

#endif
