/* The one clock that speeds and durations are measured with. */
#include "pocketlm.h"

#include <time.h>

double plm_seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
