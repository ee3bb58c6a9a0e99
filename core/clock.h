/* clock.h -- the injectable clock. "Now" in milliseconds since the epoch
 * comes from here and nowhere else, so tests drive windows by hand. */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H
#include <stdint.h>

/* Wall clock (CLOCK_REALTIME) unless a manual time is set. */
int64_t sp_clock_now_ms(void);
/* Monotonic milliseconds, for timeouts and latencies (not manual). */
int64_t sp_clock_mono_ms(void);
/* Tests: freeze "now" at ms (>= 0), or back to the wall clock (-1). */
void sp_clock_set_manual(int64_t ms);
void sp_clock_advance(int64_t delta_ms);

#endif
