/*
 * Error reporting shared by the whole library.
 *
 * Every fallible function returns a negative plm_status and records a one-line,
 * human-readable message in a thread-local buffer; plm_last_error() (public API)
 * returns it. The message names the problem ("gguf: tensor 'x' data [a, b) lies
 * outside the file (size c)"), never just a code, because the CLI prints it as is.
 */
#ifndef PLM_CORE_ERROR_H
#define PLM_CORE_ERROR_H

#include "pocketlm.h"

/* Records the message and returns status, so callers can write
 *     return plm_fail(PLM_ERR_FORMAT, "gguf: bad magic");            */
int plm_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with context: "loading x.gguf: <old message>". */
int plm_fail_context(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
