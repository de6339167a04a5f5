/*
 * A job: one completion request on its way through the server, shared by the
 * HTTP connection thread that reads its output and the scheduler thread that
 * generates it.
 *
 * The scheduler appends bytes ready for the client (whole server-sent events
 * for a stream, the whole JSON body otherwise) and finally marks the job
 * finished; the connection thread takes the bytes as they come. Either side
 * may cancel. The job is freed when both sides have released it.
 */
#ifndef PLM_SERVER_JOB_H
#define PLM_SERVER_JOB_H

#include "server/request.h"
#include "server/response.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

struct escalator;

enum job_cancel {
    JOB_NOT_CANCELLED = 0,
    JOB_CLIENT_GONE,        /* the client disconnected: nobody reads the output */
    JOB_SHUTDOWN,           /* the server stops: the client is told so */
};

struct job {
    /* Set before the job is submitted, read-only afterwards. */
    struct api_request request;
    int32_t *prompt;
    int n_prompt;
    struct response_meta meta;
    double arrival; /* seconds on the monotonic clock */
    int hold_tokens; /* > 0: an "uncertain" rule decides after the device's first
                        hold_tokens tokens, whose text is held back until then */
    struct escalator *escalator; /* that asks the router again (server/escalate.h) */

    /* Atomic: read and set without the lock, so that cancelling never waits
     * for a thread that is writing output. */
    atomic_int cancelled; /* enum job_cancel */
    atomic_int refs;

    pthread_mutex_t lock;
    pthread_cond_t changed;
    /* Guarded by lock. */
    char *out;           /* bytes for the client, not yet taken */
    size_t out_len, out_cap;
    int status;          /* HTTP status of a whole (not streamed) body */
    bool whole_body;     /* a streamed request answered by one JSON body instead
                            (consent_required), set before its bytes */
    bool finished;       /* no more bytes will come */
};

/* A job with one reference; NULL when out of memory. Takes over request. */
struct job *job_new(struct api_request *request);
void job_retain(struct job *job);
void job_release(struct job *job);

/* Scheduler side. job_push_owned takes a malloc'd string (NULL: out of memory,
 * ignored) and frees it; false if the bytes could not be stored. */
bool job_push_owned(struct job *job, char *text);
void job_finish(struct job *job, int status);
/* Writes an error: an error body, or an error event closing a stream already
 * under way; nothing for a client that has gone. Returns status. */
int job_push_error(struct job *job, int status, const char *type, const char *message);
enum job_cancel job_cancelled(struct job *job);
/* Writes why a cancelled job ends; returns its status: 503 for a shutdown,
 * 499 (nginx's "client closed request", seen by no one) for a client that left. */
int job_push_cancelled(struct job *job);

/* Connection side. Copies up to max pending bytes into buf, waiting at most
 * timeout seconds for some: returns the count, 0 on timeout, -1 when the job is
 * finished and everything was taken. */
ssize_t job_read(struct job *job, char *buf, size_t max, double timeout);
/* Waits at most timeout seconds for the first bytes or the end; true when there. */
bool job_wait_output(struct job *job, double timeout);
/* Waits at most timeout seconds for the job to finish; true when it has. */
bool job_wait_finished(struct job *job, double timeout);
/* Sets the reason unless the job is already cancelled. */
void job_cancel(struct job *job, enum job_cancel reason);

/* Seconds on the monotonic clock. */
double monotonic_seconds(void);
/* Initialises a condition whose timed waits use the monotonic clock, which a
 * change of the wall clock does not move. */
void monotonic_cond_init(pthread_cond_t *cond);
/* The monotonic-clock time `seconds` from now, for pthread_cond_timedwait on a
 * condition created with CLOCK_MONOTONIC. */
struct timespec monotonic_deadline(double seconds);

#endif
