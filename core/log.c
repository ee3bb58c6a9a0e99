/* log.c -- the logger (see log.h). Lines go to stderr, or appended to the
 * file of log.file (opened with O_APPEND, one write(2) per line, so lines
 * of other writers of the same file never interleave within a line).
 * sp_log_reopen() opens the path again: after logrotate renamed the file,
 * new lines go to a new file of the configured name. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int sp_log_level = SP_LOG_INFO;

static const char *names[] = {"error", "warn", "info", "debug"};

static int log_fd = 2;      /* stderr until sp_log_open */
static char log_path[1024]; /* "" = stderr */

/* One line out, newline included; the end is cut rather than split. */
static void log_emit(char *line, size_t n, size_t size) {
    if (n >= size - 1) n = size - 2;
    line[n++] = '\n';
    while (n > 0) {
        ssize_t k = write(log_fd, line, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return;
        line += k;
        n -= (size_t)k;
    }
}

void sp_log_write(int level, const char *fmt, ...) {
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000L,
                          names[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_start(ap, fmt);
    if (n < sizeof(line)) n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    log_emit(line, n, sizeof(line));
}

int sp_log_level_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

int sp_log_open(const char *path, char *errstr, size_t errstr_size) {
    if (!path || !*path) { /* back to stderr */
        if (log_fd != 2) close(log_fd);
        log_fd = 2;
        log_path[0] = '\0';
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "log.file %s: %s", path, strerror(errno));
        return -1;
    }
    if (log_fd != 2) close(log_fd);
    log_fd = fd;
    snprintf(log_path, sizeof(log_path), "%s", path);
    return 0;
}

int sp_log_reopen(char *errstr, size_t errstr_size) {
    char path[sizeof(log_path)];
    if (!log_path[0]) return 0;
    memcpy(path, log_path, sizeof(path));
    return sp_log_open(path, errstr, errstr_size); /* on failure the old file stays */
}
