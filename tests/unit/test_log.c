/* test_log.c -- the logger: JSON lines are valid JSON whatever the message
 * holds (quotes, backslashes, control characters, UTF-8 kept, bytes that
 * are not UTF-8 replaced), carry time, level, component, msg and the
 * fields; a line too long is cut and still valid; text lines stay on one
 * line; the component is the source file's name; the level check comes
 * before any formatting; librdkafka's syslog levels map to ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/kafka.h"
#include "core/log.h"

static json_t *parse(const char *line) {
    json_error_t e;
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &e);
    if (!j) fail_msg("not JSON (%s at %d): %s", e.text, e.position, line);
    assert_true(json_is_object(j));
    return j;
}

static const char *str(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v)) fail_msg("no string '%s'", key);
    return json_string_value(v);
}

static void test_json_escaping(void **state) {
    char line[4096];
    json_t *j;
    (void)state;

    sp_log_format = SP_LOG_JSON;
    sp_log_format_line(line, sizeof(line), SP_LOG_WARN, "/src/core/run.c", NULL, 0,
                       "say \"hi\" \\ back\nnew\ttab\r\x01\x1f\x7f end");
    assert_null(strchr(line, '\n'));
    j = parse(line);
    assert_string_equal(str(j, "level"), "warn");
    assert_string_equal(str(j, "component"), "run");
    assert_string_equal(str(j, "msg"), "say \"hi\" \\ back\nnew\ttab\r\x01\x1f\x7f end");
    assert_non_null(strstr(line, "\\u0001"));
    /* time: UTC, milliseconds */
    const char *t = str(j, "time");
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[23], 'Z');
    json_decref(j);

    /* valid UTF-8 is kept as it is; other bytes become U+FFFD */
    sp_log_format_line(line, sizeof(line), SP_LOG_INFO, "rdkafka", NULL, 0,
                       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad:\xff|\xc0\xaf|\xed\xa0\x80|"
                       "\xe2\x82");
    assert_non_null(strstr(line, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    j = parse(line);
    assert_string_equal(str(j, "component"), "rdkafka");
    assert_string_equal(str(j, "msg"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad:"
                                       "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                       "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
}

static void test_json_fields(void **state) {
    char line[4096];
    sp_log_kv_t kv[3] = {
        {"topic", "store.\"clicks\"", 0}, {"partition", NULL, 3}, {"offset", NULL, -9000000000LL}};
    json_t *j;
    (void)state;

    sp_log_format = SP_LOG_JSON;
    sp_log_format_line(line, sizeof(line), SP_LOG_ERROR, "/x/aggregators/store.c", kv, 3, "gap");
    j = parse(line);
    assert_string_equal(str(j, "level"), "error");
    assert_string_equal(str(j, "component"), "store");
    assert_string_equal(str(j, "msg"), "gap");
    assert_string_equal(str(j, "topic"), "store.\"clicks\"");
    assert_int_equal(json_integer_value(json_object_get(j, "partition")), 3);
    assert_true(json_integer_value(json_object_get(j, "offset")) == -9000000000LL);
    /* keys in order: time, level, component, msg, then the fields */
    assert_true(strncmp(line, "{\"time\":", 8) == 0);
    assert_true(strstr(line, "\"level\"") < strstr(line, "\"component\""));
    assert_true(strstr(line, "\"component\"") < strstr(line, "\"msg\""));
    assert_true(strstr(line, "\"msg\"") < strstr(line, "\"topic\""));
    json_decref(j);
}

/* A line longer than the buffer is cut inside its strings and still valid,
 * even when the cut falls inside an escape or a UTF-8 sequence. */
static void test_json_truncation(void **state) {
    char msg[3000], line[1024];
    sp_log_kv_t kv[1] = {{"topic", "t", 0}};
    (void)state;

    sp_log_format = SP_LOG_JSON;
    for (int pat = 0; pat < 3; pat++) {
        for (size_t i = 0; i + 1 < sizeof(msg); i++)
            msg[i] = pat == 0 ? 'a' : pat == 1 ? '"' : (i % 2 ? '\xa9' : '\xc3');
        msg[sizeof(msg) - 1] = '\0';
        for (size_t size = SP_LOG_LINE_MIN; size <= sizeof(line); size += 7) {
            size_t n = sp_log_format_line(line, size, SP_LOG_INFO, "run", kv, 1, msg);
            assert_true(n < size);
            assert_int_equal(strlen(line), n);
            json_decref(parse(line));
        }
    }
    assert_int_equal(
        sp_log_format_line(line, SP_LOG_LINE_MIN - 1, SP_LOG_INFO, "run", NULL, 0, "x"), 0);
    assert_string_equal(line, "");
}

static void test_text(void **state) {
    char line[4096];
    sp_log_kv_t kv[3] = {{"facility", "FAIL", 0}, {"client", "a b", 0}, {"partition", NULL, 7}};
    (void)state;

    sp_log_format = SP_LOG_TEXT;
    sp_log_format_line(line, sizeof(line), SP_LOG_INFO, "/src/core/run.c", kv, 3, "two\nlines");
    assert_null(strchr(line, '\n'));
    assert_non_null(
        strstr(line, "Z info  run: two lines facility=FAIL client=\"a b\" partition=7"));
    assert_int_equal(line[23], 'Z');
}

static int evaluated;
static int side_effect(void) {
    return ++evaluated;
}

/* The level is checked before the arguments are evaluated; a line that
 * passes is one write of one line. */
static void test_level_and_output(void **state) {
    int fds[2];
    char buf[8192];
    ssize_t n;
    (void)state;

    assert_int_equal(pipe(fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    sp_log_set_fd(fds[1]);
    assert_int_equal(sp_log_setup("info", "json"), 0);
    assert_int_equal(sp_log_setup("verbose", "json"), -1);
    assert_int_equal(sp_log_setup("info", "xml"), -1);
    evaluated = 0;
    sp_log(SP_LOG_DEBUG, "not %d", side_effect());
    assert_int_equal(evaluated, 0);
    assert_true(read(fds[0], buf, sizeof(buf)) < 0);
    sp_log(SP_LOG_INFO, "yes %d", side_effect());
    sp_logc(SP_LOG_WARN, "rdkafka", "second");
    assert_int_equal(evaluated, 1);
    n = read(fds[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_t *j = parse(buf);
    assert_string_equal(str(j, "msg"), "yes 1");
    assert_string_equal(str(j, "component"), "test_log");
    json_decref(j);
    char *second = nl + 1, *nl2 = strchr(second, '\n');
    assert_non_null(nl2);
    *nl2 = '\0';
    assert_string_equal(nl2 + 1, ""); /* nothing else was written */
    j = parse(second);
    assert_string_equal(str(j, "component"), "rdkafka");
    json_decref(j);
    sp_log_set_fd(2);
    sp_log_setup("info", "text");
    close(fds[0]);
    close(fds[1]);
}

static void test_kafka_levels(void **state) {
    (void)state;
    assert_int_equal(sp_kafka_log_level(0), SP_LOG_ERROR);
    assert_int_equal(sp_kafka_log_level(3), SP_LOG_ERROR);
    assert_int_equal(sp_kafka_log_level(4), SP_LOG_WARN);
    assert_int_equal(sp_kafka_log_level(5), SP_LOG_INFO);
    assert_int_equal(sp_kafka_log_level(6), SP_LOG_INFO);
    assert_int_equal(sp_kafka_log_level(7), SP_LOG_DEBUG);
    /* which clients get which kafka.* properties */
    assert_true(sp_kafka_role_uses(SP_KAFKA_CONSUMER, "group.id"));
    assert_false(sp_kafka_role_uses(SP_KAFKA_PRODUCER, "group.id"));
    assert_false(sp_kafka_role_uses(SP_KAFKA_READER, "session.timeout.ms"));
    assert_true(sp_kafka_role_uses(SP_KAFKA_READER, "fetch.wait.max.ms"));
    assert_false(sp_kafka_role_uses(SP_KAFKA_CONSUMER, "linger.ms"));
    assert_true(sp_kafka_role_uses(SP_KAFKA_PRODUCER, "linger.ms"));
    assert_false(sp_kafka_role_uses(SP_KAFKA_ADMIN, "linger.ms"));
    assert_true(sp_kafka_role_uses(SP_KAFKA_ADMIN, "security.protocol"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escaping),    cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_truncation),  cmocka_unit_test(test_text),
        cmocka_unit_test(test_level_and_output), cmocka_unit_test(test_kafka_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
