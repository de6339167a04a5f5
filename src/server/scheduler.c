#include "server/scheduler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *scheduler_main(void *arg);

/* Frees what scheduler_start allocated (the slots that were initialised: a
 * zeroed slot frees as nothing). */
static void destroy(struct scheduler *s)
{
    for (int i = 0; s->slots && i < s->params.n_slots; i++)
        slot_free(&s->slots[i]);
    free(s->slots);
    free(s->queue);
    free(s);
}

int scheduler_start(const struct scheduler_params *params, struct scheduler **scheduler)
{
    *scheduler = NULL;
    struct scheduler *s = calloc(1, sizeof *s);
    if (!s)
        return PLM_ERR_NOMEM;
    s->params = *params;
    s->slots = calloc((size_t)params->n_slots, sizeof *s->slots);
    /* Jobs enter the ring before the thread hands them to slots, so it holds
     * the free slots' share as well as the waiting ones. */
    s->queue = calloc((size_t)(params->max_queue + params->n_slots), sizeof *s->queue);
    if (!s->slots || !s->queue) {
        destroy(s);
        return PLM_ERR_NOMEM;
    }
    for (int i = 0; i < params->n_slots; i++) {
        int rc = slot_init(&s->slots[i], params->model, &params->session);
        if (rc) {
            destroy(s);
            return rc;
        }
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    monotonic_cond_init(&s->idle); /* scheduler_drain waits on it with a deadline */
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        pthread_cond_destroy(&s->idle);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        destroy(s);
        return PLM_ERR_NOMEM;
    }
    *scheduler = s;
    return PLM_OK;
}

static int ring_capacity(const struct scheduler *s) { return s->params.max_queue + s->params.n_slots; }

static struct job **ring_at(struct scheduler *s, int i)
{
    return &s->queue[(s->queue_head + i) % ring_capacity(s)];
}

enum submit_result scheduler_submit(struct scheduler *s, struct job *job)
{
    pthread_mutex_lock(&s->lock);
    enum submit_result result = SUBMIT_OK;
    int free_slots = s->params.n_slots - s->n_busy;
    if (s->closed)
        result = SUBMIT_CLOSED;
    else if (s->queue_len >= s->params.max_queue + free_slots)
        result = SUBMIT_QUEUE_FULL;
    else {
        job_retain(job);
        *ring_at(s, s->queue_len++) = job;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return result;
}

void scheduler_cancel(struct scheduler *s, struct job *job, enum job_cancel reason)
{
    pthread_mutex_lock(&s->lock);
    job_cancel(job, reason);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

/* Ends the queued jobs that were cancelled, keeping the others in order. */
static void drop_cancelled(struct scheduler *s)
{
    int kept = 0;
    for (int i = 0; i < s->queue_len; i++) {
        struct job *job = *ring_at(s, i);
        if (job_cancelled(job)) {
            job_finish(job, job_push_cancelled(job));
            job_release(job);
        } else {
            *ring_at(s, kept++) = job;
        }
    }
    s->queue_len = kept;
}

/* The free slot whose cache holds the longest start of the job's prompt, or NULL. */
static struct slot *best_free_slot(struct scheduler *s, const struct job *job)
{
    struct slot *best = NULL;
    int best_reuse = -1;
    for (int i = 0; i < s->params.n_slots; i++) {
        struct slot *slot = &s->slots[i];
        int reuse = slot->job ? -1 : slot_reusable(slot, job);
        if (reuse > best_reuse) {
            best = slot;
            best_reuse = reuse;
        }
    }
    return best;
}

static void assign_waiting(struct scheduler *s)
{
    struct slot *slot;
    while (s->queue_len > 0 && (slot = best_free_slot(s, *ring_at(s, 0)))) {
        struct job *job = *ring_at(s, 0);
        s->queue_head = (s->queue_head + 1) % ring_capacity(s);
        s->queue_len--;
        slot_assign(slot, job); /* with the queue's reference */
        s->n_busy++;
    }
}

/* The job of a slot that has just ended. The slot counts as free again before
 * the job is marked finished, so a client that sends its next request the
 * moment it has its answer finds the slot free. */
static void release_ended(struct scheduler *s, struct job *ended, int status)
{
    pthread_mutex_lock(&s->lock);
    s->n_busy--;
    pthread_mutex_unlock(&s->lock);
    if (status) /* 0: the job went on to an upstream, which finishes it */
        job_finish(ended, status);
    job_release(ended);
}

/* One forward pass for the tokens the slots have just sampled. */
static void decode_together(struct scheduler *s, struct slot *const *slots, int n)
{
    plm_session *sessions[PLM_DECODE_SESSIONS_MAX];
    int32_t tokens[PLM_DECODE_SESSIONS_MAX];
    for (int i = 0; i < n; i++) {
        sessions[i] = slots[i]->session;
        tokens[i] = slots[i]->next_token;
    }
    int rc = plm_decode_sessions(sessions, tokens, n);
    for (int i = 0; i < n; i++) {
        int status;
        struct job *ended = slot_token_decoded(slots[i], rc, &status);
        if (ended)
            release_ended(s, ended, status);
    }
}

/* One round, without the lock: the slots are this thread's. Every busy slot
 * takes a step (a batch of its prompt, or its next token sampled and sent);
 * then the sampled tokens are decoded together, so that each weight matrix
 * is read once per round rather than once per generating slot. */
static void run_round(struct scheduler *s)
{
    for (int i = 0; i < s->params.n_slots; i++) {
        int status;
        struct job *ended = s->slots[i].job ? slot_step(&s->slots[i], s->params.metrics, &status) : NULL;
        if (ended)
            release_ended(s, ended, status);
    }
    struct slot *pending[PLM_DECODE_SESSIONS_MAX];
    int n_pending = 0;
    for (int i = 0; i < s->params.n_slots; i++) {
        if (s->slots[i].job && s->slots[i].decode_pending)
            pending[n_pending++] = &s->slots[i];
        if (n_pending == PLM_DECODE_SESSIONS_MAX) {
            decode_together(s, pending, n_pending);
            n_pending = 0;
        }
    }
    if (n_pending > 0)
        decode_together(s, pending, n_pending);
}

/* The end of the shutdown grace period: every job is cancelled. */
static void cancel_everything(struct scheduler *s)
{
    for (int i = 0; i < s->queue_len; i++, s->n_cancelled++)
        job_cancel(*ring_at(s, i), JOB_SHUTDOWN);
    for (int i = 0; i < s->params.n_slots; i++)
        if (s->slots[i].job && !job_cancelled(s->slots[i].job)) {
            job_cancel(s->slots[i].job, JOB_SHUTDOWN);
            s->n_cancelled++;
        }
    s->cancel_all = false;
}

static void *scheduler_main(void *arg)
{
    struct scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->cancel_all)
            cancel_everything(s);
        drop_cancelled(s);
        assign_waiting(s);
        metrics_set_load(s->params.metrics, s->queue_len, s->n_busy);
        if (s->n_busy == 0) {
            pthread_cond_broadcast(&s->idle);
            if (s->exiting)
                break;
            pthread_cond_wait(&s->wake, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        run_round(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Waits on `idle` until the scheduler is idle or the monotonic clock reaches deadline. */
static bool wait_idle(struct scheduler *s, const struct timespec *deadline)
{
    while (s->queue_len > 0 || s->n_busy > 0)
        if (pthread_cond_timedwait(&s->idle, &s->lock, deadline) != 0)
            return s->queue_len == 0 && s->n_busy == 0;
    return true;
}

int scheduler_drain(struct scheduler *s, double grace)
{
    struct timespec deadline = monotonic_deadline(grace);
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    if (!wait_idle(s, &deadline)) {
        /* The thread cancels what remains; cancelled jobs end at their slot's
         * next step, so this wait is short. */
        s->cancel_all = true;
        pthread_cond_signal(&s->wake);
        while (s->queue_len > 0 || s->n_busy > 0)
            pthread_cond_wait(&s->idle, &s->lock);
    }
    int n_cancelled = s->n_cancelled;
    pthread_mutex_unlock(&s->lock);
    return n_cancelled;
}

void scheduler_free(struct scheduler *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    s->exiting = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    /* Anything still queued was never started (scheduler_drain ends them all). */
    for (int i = 0; i < s->queue_len; i++)
        job_release(*ring_at(s, i));
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    destroy(s);
}
