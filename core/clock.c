/* clock.c -- wall, monotonic and manual clock (see clock.h). */
#include "core/clock.h"

#include <time.h>

static int64_t manual_ms = -1;

int64_t sp_clock_now_ms(void) {
    struct timespec ts;
    if (manual_ms >= 0) return manual_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sp_clock_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sp_clock_set_manual(int64_t ms) { manual_ms = ms; }
void sp_clock_advance(int64_t delta_ms) {
    if (manual_ms >= 0) manual_ms += delta_ms;
}
