#include "server/job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct job *job_new(struct api_request *request)
{
    struct job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->request = *request;
    memset(request, 0, sizeof *request);
    job->arrival = monotonic_seconds();
    job->status = 200;
    job->refs = 1;
    pthread_mutex_init(&job->lock, NULL);
    monotonic_cond_init(&job->changed);
    return job;
}

void job_retain(struct job *job) { atomic_fetch_add(&job->refs, 1); }

void job_release(struct job *job)
{
    if (!job || atomic_fetch_sub(&job->refs, 1) != 1)
        return;
    request_free(&job->request);
    free(job->prompt);
    free(job->out);
    free(job->meta.route.reason);
    free(job->meta.route.error);
    free(job->meta.route.sent);
    pthread_cond_destroy(&job->changed);
    pthread_mutex_destroy(&job->lock);
    free(job);
}

bool job_push_owned(struct job *job, char *text)
{
    if (!text)
        return false;
    size_t n = strlen(text);
    pthread_mutex_lock(&job->lock);
    bool stored = true;
    if (job->out_len + n > job->out_cap) {
        size_t cap = 2 * (job->out_len + n);
        char *grown = realloc(job->out, cap);
        if (grown) {
            job->out = grown;
            job->out_cap = cap;
        }
        stored = grown != NULL;
    }
    if (stored) {
        memcpy(job->out + job->out_len, text, n);
        job->out_len += n;
        pthread_cond_broadcast(&job->changed);
    }
    pthread_mutex_unlock(&job->lock);
    free(text);
    return stored;
}

void job_finish(struct job *job, int status)
{
    pthread_mutex_lock(&job->lock);
    job->status = status;
    job->finished = true;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->lock);
}

int job_push_error(struct job *job, int status, const char *type, const char *message)
{
    if (job_cancelled(job) != JOB_CLIENT_GONE) {
        struct api_error err;
        api_fail(&err, status, type, "", "", "%s", message);
        if (job->request.stream) {
            job_push_owned(job, response_error_event(&err));
            job_push_owned(job, strdup(RESPONSE_STREAM_END));
        } else {
            job_push_owned(job, response_error(&err));
        }
    }
    return status;
}

enum job_cancel job_cancelled(struct job *job) { return (enum job_cancel)atomic_load(&job->cancelled); }

int job_push_cancelled(struct job *job)
{
    if (job_cancelled(job) == JOB_SHUTDOWN)
        return job_push_error(job, 503, "server_error", "the server is shutting down");
    return job_push_error(job, 499, "invalid_request_error", "the client closed the connection");
}

void job_cancel(struct job *job, enum job_cancel reason)
{
    int not_yet = JOB_NOT_CANCELLED;
    atomic_compare_exchange_strong(&job->cancelled, &not_yet, (int)reason);
}

void monotonic_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

struct timespec monotonic_deadline(double seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double whole = floor(seconds);
    until.tv_sec += (time_t)whole;
    until.tv_nsec += (long)((seconds - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

/* Waits on the job's condition for at most `timeout` seconds; the lock is held. */
static void wait_locked(struct job *job, double timeout)
{
    struct timespec until = monotonic_deadline(timeout);
    pthread_cond_timedwait(&job->changed, &job->lock, &until);
}

ssize_t job_read(struct job *job, char *buf, size_t max, double timeout)
{
    pthread_mutex_lock(&job->lock);
    if (job->out_len == 0 && !job->finished)
        wait_locked(job, timeout);
    ssize_t n = 0;
    if (job->out_len > 0) {
        size_t take = job->out_len < max ? job->out_len : max;
        memcpy(buf, job->out, take);
        memmove(job->out, job->out + take, job->out_len - take);
        job->out_len -= take;
        n = (ssize_t)take;
    } else if (job->finished) {
        n = -1;
    }
    pthread_mutex_unlock(&job->lock);
    return n;
}

bool job_wait_output(struct job *job, double timeout)
{
    pthread_mutex_lock(&job->lock);
    if (!job->finished && job->out_len == 0)
        wait_locked(job, timeout);
    bool ready = job->finished || job->out_len > 0;
    pthread_mutex_unlock(&job->lock);
    return ready;
}

bool job_wait_finished(struct job *job, double timeout)
{
    pthread_mutex_lock(&job->lock);
    /* Bytes pushed wake the condition too: wait on until the end or the deadline. */
    struct timespec until = monotonic_deadline(timeout);
    while (!job->finished && pthread_cond_timedwait(&job->changed, &job->lock, &until) == 0)
        ;
    bool finished = job->finished;
    pthread_mutex_unlock(&job->lock);
    return finished;
}
