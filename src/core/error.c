#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *plm_last_error(void) { return last_error; }

int plm_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

/* Appends src to dst (capacity cap, NUL-terminated), truncating to fit. */
static void append(char *dst, size_t cap, const char *src)
{
    size_t used = strlen(dst), n = strlen(src);
    if (used + 1 >= cap)
        return;
    if (n > cap - used - 1)
        n = cap - used - 1;
    memcpy(dst + used, src, n);
    dst[used + n] = '\0';
}

int plm_fail_context(int status, const char *fmt, ...)
{
    char old[sizeof last_error];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    append(last_error, sizeof last_error, ": ");
    append(last_error, sizeof last_error, old);
    return status;
}
