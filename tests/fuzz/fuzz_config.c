/* fuzz_config.c -- libFuzzer target: the YAML config loader (libyaml +
 * the option table) and the resolved-config printer.
 *
 * Input: the config file's bytes. sp_config_load() reads a path, so the input
 * goes into a memfd read back as /proc/self/fd/N. A config that loads is
 * printed (sp_config_print, as `check-config` does) and the printout must load
 * again and print the same (config.c promises the printer writes YAML that
 * the loader reads back to the same config; comment lines are skipped since
 * they name the source file). Seeds: tests/fuzz/corpus/config/ (the deploy
 * example and test configs); dictionary config.dict. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* schema files are only joined with schemas.dir here, never opened */
    unsetenv("STOREPULSE_SCHEMAS_DIR");
    return 0;
}

/* Write bytes to a fresh memfd; returns the fd with its path in `path`. */
static int to_memfd(const void *p, size_t n, char *path, size_t path_size) {
    int fd = memfd_create("fuzz-config", 0);
    if (fd < 0) abort();
    if (n && write(fd, p, n) != (ssize_t)n) abort();
    snprintf(path, path_size, "/proc/self/fd/%d", fd);
    return fd;
}

/* sp_config_print into a heap string without its '#' comment lines. */
static char *print_config(const sp_config_t *cfg, size_t *len) {
    char *buf = NULL, *out;
    size_t n = 0, j = 0;
    FILE *fp = open_memstream(&buf, &n);
    if (!fp) abort();
    sp_config_print(cfg, fp);
    fclose(fp);
    out = malloc(n + 1);
    if (!out) abort();
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - buf) + 1 : n;
        if (buf[i] != '#') {
            memcpy(out + j, buf + i, end - i);
            j += end - i;
        }
        i = end;
    }
    out[j] = '\0';
    free(buf);
    *len = j;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static sp_config_t cfg, again;
    char path[64], err[1024];
    char *text, *text2;
    size_t len, len2;
    int fd, fd2;

    fd = to_memfd(data, size, path, sizeof(path));
    if (sp_config_load(&cfg, path, err, sizeof(err)) != 0) {
        close(fd);
        return 0;
    }
    close(fd);
    text = print_config(&cfg, &len);
    fd2 = to_memfd(text, len, path, sizeof(path));
    if (sp_config_load(&again, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "the printed config does not load: %s\n---\n%s---\n", err, text);
        abort();
    }
    close(fd2);
    text2 = print_config(&again, &len2);
    if (len != len2 || memcmp(text, text2, len) != 0) {
        fprintf(stderr, "printing is not stable:\n--- first\n%s--- second\n%s---\n", text, text2);
        abort();
    }
    free(text);
    free(text2);
    return 0;
}
