/* log.c -- the logger (see log.h).
 *
 * Design. sp_log() checks the level before anything is formatted; a line
 * that passes is formatted on the stack (no allocation, no shared state, so
 * librdkafka's threads may call in through its log callback) and written
 * with one write(2). JSON lines are valid JSON whatever the message holds:
 * quotes, backslashes and control characters are escaped, valid UTF-8 is
 * kept, any other byte becomes U+FFFD; a line too long for the buffer is cut
 * inside its strings and still closed. Text lines keep the message on one
 * line (CR/LF become spaces).
 *
 * Lines go to stderr, or appended to the file of log.file (O_APPEND, one
 * write(2) per line, so other writers of the same file never split a line).
 * sp_log_reopen() opens the path again after logrotate renamed the file; the
 * new file is dup2()'d onto the descriptor in use, so a line being written by
 * another thread meanwhile goes to the old file or the new one, never to a
 * closed descriptor. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 4096
#define MSG_MAX_LEN  2048

int sp_log_level = SP_LOG_INFO;
int sp_log_format = SP_LOG_TEXT;
static int log_fd = 2;

static const char *names[] = {"error", "warn", "info", "debug"};
static const char *formats[] = {"text", "json"};

typedef struct lbuf {
    char *p;
    size_t n, cap; /* cap: usable bytes (the caller keeps room for the end) */
} lbuf_t;

static bool fits(const lbuf_t *b, size_t len) {
    return b->n + len <= b->cap;
}

static void put(lbuf_t *b, const char *s, size_t len) {
    if (!fits(b, len)) len = b->cap - b->n;
    memcpy(b->p + b->n, s, len);
    b->n += len;
}

static void puts_(lbuf_t *b, const char *s) {
    put(b, s, strlen(s));
}

int sp_utf8_seq(const unsigned char *p, uint32_t *cp) {
    int n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
    uint32_t c;
    if (!n || *p > 0xf4) return 0;
    c = *p & (0x3f >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    if (cp) *cp = c;
    return n;
}

/* A JSON string, quotes included; cut (still closed) when it does not fit. */
static void put_json_str(lbuf_t *b, const char *s) {
    char esc[8];
    if (!fits(b, 2)) return;
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        const char *piece = esc;
        size_t len;
        int u;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p, len = 2;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            esc[0] = '\\', esc[1] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't', len = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            len = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
        } else if (*p < 0x80) {
            piece = (const char *)p, len = 1;
        } else if ((u = sp_utf8_seq(p, NULL)) > 0) {
            piece = (const char *)p, len = (size_t)u;
        } else {
            piece = "\\ufffd", len = 6;
        }
        if (!fits(b, len + 1)) break; /* keep room for the closing quote */
        put(b, piece, len);
        p += piece == (const char *)p ? len : 1;
    }
    put(b, "\"", 1);
}

/* Text: the string on one line. */
static void put_text(lbuf_t *b, const char *s) {
    for (const char *p = s; *p && fits(b, 1); p++)
        put(b, *p == '\n' || *p == '\r' ? " " : p, 1);
}

/* A text field value: bare when it is one word, else a JSON string. */
static void put_text_value(lbuf_t *b, const char *s) {
    bool bare = *s != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && bare; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f) bare = false;
    if (bare)
        puts_(b, s);
    else
        put_json_str(b, s);
}

/* "run" from ".../core/run.c"; any other name as it is. */
static void component_name(const char *component, char *buf, size_t size) {
    const char *base, *slash;
    size_t len;
    if (!component || !*component) component = "storepulse";
    len = strlen(component);
    if (len < 2 || strcmp(component + len - 2, ".c") != 0) {
        snprintf(buf, size, "%s", component);
        return;
    }
    slash = strrchr(component, '/');
    base = slash ? slash + 1 : component;
    snprintf(buf, size, "%.*s", (int)(component + len - 2 - base), base);
}

size_t sp_log_format_line(char *out, size_t size, int level, const char *component,
                          const sp_log_kv_t *kv, int nkv, const char *msg) {
    char ts[40], comp[64], num[32];
    struct timespec now;
    struct tm tm;
    lbuf_t b;
    size_t n;
    const char *lname = names[level < 0 ? 0 : level > 3 ? 3 : level];

    if (!out || size < SP_LOG_LINE_MIN) {
        if (out && size) out[0] = '\0';
        return 0;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000L);
    component_name(component, comp, sizeof(comp));

    b.p = out;
    b.n = 0;
    b.cap = size - 2; /* room for the closing brace and the NUL */
    if (sp_log_format == SP_LOG_JSON) {
        puts_(&b, "{\"time\":\"");
        puts_(&b, ts);
        puts_(&b, "\",\"level\":\"");
        puts_(&b, lname);
        puts_(&b, "\",\"component\":");
        put_json_str(&b, comp);
        puts_(&b, ",\"msg\":");
        put_json_str(&b, msg);
        for (int i = 0; i < nkv; i++) {
            if (!kv[i].key) continue;
            snprintf(num, sizeof(num), "%" PRId64, kv[i].i);
            if (!fits(&b, strlen(kv[i].key) + 6 + (kv[i].s ? 2 : strlen(num)))) break;
            puts_(&b, ",");
            put_json_str(&b, kv[i].key);
            puts_(&b, ":");
            if (kv[i].s)
                put_json_str(&b, kv[i].s);
            else
                puts_(&b, num);
        }
        b.cap = size - 1;
        puts_(&b, "}");
    } else {
        n = (size_t)snprintf(out, size - 1, "%s %-5s %s: ", ts, lname, comp);
        b.n = n < b.cap ? n : b.cap;
        put_text(&b, msg);
        for (int i = 0; i < nkv; i++) {
            if (!kv[i].key) continue;
            puts_(&b, " ");
            puts_(&b, kv[i].key);
            puts_(&b, "=");
            if (kv[i].s) {
                put_text_value(&b, kv[i].s);
            } else {
                snprintf(num, sizeof(num), "%" PRId64, kv[i].i);
                puts_(&b, num);
            }
        }
    }
    out[b.n] = '\0';
    return b.n;
}

void sp_log_emit(int level, const char *component, const sp_log_kv_t *kv, int nkv, const char *fmt,
                 ...) {
    char msg[MSG_MAX_LEN], line[LINE_MAX_LEN];
    va_list ap;
    size_t n, off = 0;
    int saved = errno;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = sp_log_format_line(line, sizeof(line) - 1, level, component, kv, nkv, msg);
    line[n++] = '\n';
    while (off < n) {
        ssize_t w = write(log_fd, line + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    errno = saved;
}

int sp_log_level_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

int sp_log_format_parse(const char *name) {
    for (int i = 0; i < 2; i++)
        if (name && strcmp(name, formats[i]) == 0) return i;
    return -1;
}

int sp_log_setup(const char *level, const char *format) {
    int l = sp_log_level_parse(level), f = sp_log_format_parse(format);
    if (l < 0 || f < 0) return -1;
    sp_log_level = l;
    sp_log_format = f;
    return 0;
}

void sp_log_set_fd(int fd) {
    log_fd = fd;
}

static char log_path[1024]; /* "" = stderr */

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
    if (log_fd == 2) {
        log_fd = fd;
    } else { /* atomically for writers on other threads */
        if (dup2(fd, log_fd) < 0) {
            snprintf(errstr, errstr_size, "log.file %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        close(fd);
    }
    if (path != log_path) snprintf(log_path, sizeof(log_path), "%s", path);
    return 0;
}

int sp_log_reopen(char *errstr, size_t errstr_size) {
    if (!log_path[0]) return 0;
    return sp_log_open(log_path, errstr, errstr_size); /* on failure the old file stays */
}
