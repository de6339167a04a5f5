/*
 * The scheduler: --parallel N slots share the read-only model, each with its
 * own session, and one thread advances them in rounds. In a round each slot
 * still in its prompt decodes a batch of it, and each generating slot samples
 * and sends its next token; then one plm_decode_sessions call decodes all the
 * sampled tokens together, each at its own session's position, so every
 * weight matrix is read once per round however many streams are generating.
 * Only one forward pass runs at a time, its matrix work spread over a
 * session's threads: the cores are never asked to run N passes at once.
 * Requests beyond the slots wait in a bounded FIFO queue and take the first
 * slot that frees, preferring the free slot whose cache already holds the
 * longest start of their prompt.
 */
#ifndef PLM_SERVER_SCHEDULER_H
#define PLM_SERVER_SCHEDULER_H

#include "server/job.h"
#include "server/metrics.h"
#include "server/slot.h"

struct scheduler_params {
    plm_model *model;
    struct plm_session_params session; /* of each slot */
    int n_slots;
    int max_queue;                     /* requests that may wait for a slot */
    struct server_metrics *metrics;
};

enum submit_result {
    SUBMIT_OK = 0,
    SUBMIT_QUEUE_FULL, /* every slot busy and the queue full */
    SUBMIT_CLOSED,     /* the server is shutting down */
};

struct scheduler {
    struct scheduler_params params;
    struct slot *slots;
    pthread_t thread;

    pthread_mutex_t lock;
    pthread_cond_t wake;  /* work arrived, a job was cancelled, or the end was asked */
    pthread_cond_t idle;  /* nothing queued and no slot busy */
    /* Guarded by lock. */
    struct job **queue;   /* ring buffer of max_queue entries */
    int queue_head, queue_len;
    int n_busy;
    bool closed;          /* no new submissions */
    bool exiting;         /* the thread ends once idle */
    bool cancel_all;      /* the grace period is over: the thread cancels every job */
    int n_cancelled;      /* jobs cancelled that way */
};

/* Creates the slots (a session each) and starts the thread. */
int scheduler_start(const struct scheduler_params *params, struct scheduler **scheduler);

/* Queues the job (the scheduler keeps a reference until it ends). */
enum submit_result scheduler_submit(struct scheduler *s, struct job *job);

/* Cancels a job, queued or running; its slot frees at the next step. */
void scheduler_cancel(struct scheduler *s, struct job *job, enum job_cancel reason);

/* Refuses new jobs, waits up to grace seconds for the queued and running ones
 * to finish, then cancels the rest; returns how many had to be cancelled. */
int scheduler_drain(struct scheduler *s, double grace);

/* Stops the thread (after scheduler_drain) and frees everything. */
void scheduler_free(struct scheduler *s);

#endif
