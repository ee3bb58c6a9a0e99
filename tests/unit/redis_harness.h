/* redis_harness.h -- start a throwaway redis-server for a test, stop it.
 *
 * Header-only (static functions) so any test can include it. The server
 * runs in the foreground as a child process, on a free port of 127.0.0.1,
 * with its working directory and log in a fresh mkdtemp directory, no
 * persistence. Readiness is a raw "PING" over a socket, so tests that do not
 * link hiredis can use it too.
 *
 *     sp_test_redis_t r;
 *     assert_int_equal(sp_test_redis_start(&r), 0);
 *     ... connect to 127.0.0.1:r.port ...
 *     sp_test_redis_stop(&r);
 *
 * Extra server arguments (e.g. "--appendonly", "yes") may be given in
 * r.extra_args (NULL-terminated) before start; stop + start again on the same
 * struct restarts on the same port and directory (restart tests). */
#ifndef SP_TEST_REDIS_HARNESS_H
#define SP_TEST_REDIS_HARNESS_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct sp_test_redis {
    pid_t pid;
    int port;                      /* 0 before the first start: a free one is picked */
    char dir[256];                 /* "" before the first start */
    const char *const *extra_args; /* optional, NULL-terminated */
} sp_test_redis_t;

static int sp_test_redis_free_port(void) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int port = -1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* 1 if the server at 127.0.0.1:port answers PING with +PONG. */
static int sp_test_redis_ping(int port) {
    struct sockaddr_in sa;
    struct timeval tv = {1, 0};
    char buf[64];
    int ok = 0, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(fd, "PING\r\n", 6) == 6) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n >= 5 && memcmp(buf, "+PONG", 5) == 0) ok = 1;
    }
    close(fd);
    return ok;
}

/* Start the server and wait (up to 10 s) until it answers. 0 on success. */
static int sp_test_redis_start(sp_test_redis_t *r) {
    char portbuf[16], logbuf[300];
    const char *argv[64];
    int argc = 0;

    if (!r->dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(r->dir, sizeof(r->dir), "%s/sp-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(r->dir)) {
            r->dir[0] = '\0';
            return -1;
        }
    }
    if (r->port <= 0 && (r->port = sp_test_redis_free_port()) <= 0) return -1;
    snprintf(portbuf, sizeof(portbuf), "%d", r->port);
    snprintf(logbuf, sizeof(logbuf), "%s/redis.log", r->dir);
    argv[argc++] = "redis-server";
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = portbuf;
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--dir";
    argv[argc++] = r->dir;
    argv[argc++] = "--logfile";
    argv[argc++] = logbuf;
    for (int i = 0; r->extra_args && r->extra_args[i] && argc < 63; i++)
        argv[argc++] = r->extra_args[i];
    argv[argc] = NULL;

    r->pid = fork();
    if (r->pid < 0) return -1;
    if (r->pid == 0) {
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) { /* 10 s */
        int status;
        if (sp_test_redis_ping(r->port)) return 0;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return -1;
}

/* SIGTERM the server and wait for it; keeps the directory (restart). */
static void sp_test_redis_kill(sp_test_redis_t *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

/* Stop the server and remove its directory. */
static void sp_test_redis_stop(sp_test_redis_t *r) {
    sp_test_redis_kill(r);
    if (r->dir[0]) {
        DIR *d = opendir(r->dir);
        if (d) {
            struct dirent *e;
            char path[600];
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                snprintf(path, sizeof(path), "%s/%s", r->dir, e->d_name);
                /* appendonlydir holds files: one level more */
                if (unlink(path) != 0 && (errno == EISDIR || errno == EPERM)) {
                    DIR *sd = opendir(path);
                    struct dirent *se;
                    char sp[900];
                    while (sd && (se = readdir(sd)) != NULL) {
                        snprintf(sp, sizeof(sp), "%s/%s", path, se->d_name);
                        unlink(sp);
                    }
                    if (sd) closedir(sd);
                    rmdir(path);
                }
            }
            closedir(d);
        }
        rmdir(r->dir);
        r->dir[0] = '\0';
    }
}

#endif
