#include "engine/threadpool.h"

#include "core/error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* How long a worker spins for the next step before it sleeps. */
#define SPIN_ROUNDS 20000

struct plm_threadpool {
    int n_threads;
    pthread_t *workers;

    threadpool_task task;  /* the current step, published by `generation` */
    void *arg;
    atomic_uint generation; /* incremented once per step */
    atomic_int pending;     /* workers still running the current step */
    atomic_bool stopping;

    pthread_mutex_t lock;  /* guards sleeping workers' wake-up */
    pthread_cond_t wake;
    int n_sleeping;
};

struct worker_start {
    struct plm_threadpool *pool;
    int index;
};

/* Waits until the generation differs from seen; returns the new one. */
static unsigned wait_for_step(struct plm_threadpool *pool, unsigned seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (now != seen)
            return now;
        if (i % 64 == 63)
            sched_yield();
    }
    pthread_mutex_lock(&pool->lock);
    pool->n_sleeping++;
    unsigned now;
    while ((now = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen)
        pthread_cond_wait(&pool->wake, &pool->lock);
    pool->n_sleeping--;
    pthread_mutex_unlock(&pool->lock);
    return now;
}

static void *worker_main(void *p)
{
    struct worker_start start = *(struct worker_start *)p;
    free(p);
    struct plm_threadpool *pool = start.pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_step(pool, seen);
        if (atomic_load(&pool->stopping))
            return NULL;
        pool->task(pool->arg, start.index, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
}

/* Publishes a new step (or the stop signal) and wakes sleeping workers. */
static void publish_step(struct plm_threadpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    if (pool->n_sleeping > 0)
        pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
}

int threadpool_new(int n_threads, struct plm_threadpool **out)
{
    *out = NULL;
    if (n_threads < 1)
        n_threads = 1;
    struct plm_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->workers = calloc((size_t)n_threads, sizeof *pool->workers);
    if (!pool->workers) {
        threadpool_free(pool);
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_start *start = malloc(sizeof *start);
        if (start)
            *start = (struct worker_start){pool, i};
        if (!start || pthread_create(&pool->workers[i], NULL, worker_main, start) != 0) {
            free(start);
            pool->n_threads = i; /* the workers started so far are stopped by free */
            threadpool_free(pool);
            return plm_fail(PLM_ERR_NOMEM, "cannot start worker thread %d of %d", i, n_threads);
        }
    }
    *out = pool;
    return PLM_OK;
}

void threadpool_free(struct plm_threadpool *pool)
{
    if (!pool)
        return;
    if (pool->workers && pool->n_threads > 1) {
        atomic_store(&pool->stopping, true);
        publish_step(pool);
        for (int i = 1; i < pool->n_threads; i++)
            pthread_join(pool->workers[i], NULL);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool->workers);
    free(pool);
}

int threadpool_size(const struct plm_threadpool *pool) { return pool->n_threads; }

void threadpool_run(struct plm_threadpool *pool, threadpool_task task, void *arg)
{
    if (pool->n_threads == 1) {
        task(arg, 0, 1);
        return;
    }
    pool->task = task;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_release);
    publish_step(pool);
    task(arg, 0, pool->n_threads);
    /* The workers finish their share of the same step; yield now and then in
     * case the machine has fewer free cores than threads. */
    for (int i = 1; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; i++)
        if (i % 64 == 0)
            sched_yield();
}
