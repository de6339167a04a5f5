#include "engine/threadpool.h"

#include "core/error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* How long a worker spins for the next step before it sleeps. */
#define SPIN_ROUNDS 20000
/* Spinning threads give up the core once in this many rounds, in case a
 * thread they wait for is waiting for one. Not every round: a system call
 * costs microseconds in a virtual machine, and a step of a small matrix
 * takes only a few. */
#define SPINS_PER_YIELD 1024

/* One round of a spin loop: tells the core this thread is only waiting, so
 * it runs the other hyperthread (or saves power), then yields now and then. */
static void spin_pause(int round)
{
    if (round % SPINS_PER_YIELD == SPINS_PER_YIELD - 1) {
        sched_yield();
        return;
    }
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/*
 * The claim word packs the step's generation (bits 32-63), its number of
 * chunks (16-31) and the next unclaimed chunk (0-15), so that claiming a chunk
 * of a given step is one compare-and-swap that fails once the step is used up
 * or a newer one was published. task and arg are only read after a successful
 * claim: the caller publishes a new step only when no thread is inside
 * work_on_step (in_flight == 0), and a thread joins in_flight before claiming.
 */
struct plm_threadpool {
    int n_threads;
    pthread_t *workers;

    threadpool_task task;
    void *arg;
    _Atomic uint64_t claims;
    atomic_uint generation; /* incremented once per step; workers wait on it */
    atomic_int in_flight;   /* threads inside work_on_step */
    atomic_bool stopping;

    pthread_mutex_t lock; /* guards sleeping workers' wake-up */
    pthread_cond_t wake;
    int n_sleeping;
};

struct worker_start {
    struct plm_threadpool *pool;
    int index;
};

static bool claim_chunk(struct plm_threadpool *pool, unsigned generation, int *chunk, int *n_chunks)
{
    uint64_t word = atomic_load(&pool->claims);
    for (;;) {
        int next = (int)(word & 0xFFFF), count = (int)((word >> 16) & 0xFFFF);
        if ((unsigned)(word >> 32) != generation || next >= count)
            return false;
        if (atomic_compare_exchange_weak(&pool->claims, &word, word + 1)) {
            *chunk = next;
            *n_chunks = count;
            return true;
        }
    }
}

static void work_on_step(struct plm_threadpool *pool, unsigned generation, int thread)
{
    int chunk, n_chunks;
    while (claim_chunk(pool, generation, &chunk, &n_chunks))
        pool->task(pool->arg, chunk, n_chunks, thread);
}

/* Waits until the generation differs from seen; returns the new one. */
static unsigned wait_for_step(struct plm_threadpool *pool, unsigned seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (now != seen)
            return now;
        spin_pause(i);
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
        atomic_fetch_add(&pool->in_flight, 1);
        work_on_step(pool, seen, start.index);
        atomic_fetch_sub(&pool->in_flight, 1);
    }
}

/* Publishes a new generation (a step, or the stop signal) and wakes sleepers. */
static void publish(struct plm_threadpool *pool, unsigned generation)
{
    pthread_mutex_lock(&pool->lock);
    atomic_store_explicit(&pool->generation, generation, memory_order_release);
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
        publish(pool, atomic_load(&pool->generation) + 1);
        for (int i = 1; i < pool->n_threads; i++)
            pthread_join(pool->workers[i], NULL);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool->workers);
    free(pool);
}

int threadpool_size(const struct plm_threadpool *pool) { return pool->n_threads; }

void threadpool_run(struct plm_threadpool *pool, threadpool_task task, void *arg, int n_chunks)
{
    if (n_chunks > THREADPOOL_MAX_CHUNKS)
        n_chunks = THREADPOOL_MAX_CHUNKS;
    if (pool->n_threads == 1 || n_chunks == 1) {
        for (int chunk = 0; chunk < n_chunks; chunk++)
            task(arg, chunk, n_chunks, 0);
        return;
    }
    unsigned generation = atomic_load(&pool->generation) + 1;
    pool->task = task;
    pool->arg = arg;
    atomic_store(&pool->claims, (uint64_t)generation << 32 | (uint64_t)n_chunks << 16);
    publish(pool, generation);
    atomic_fetch_add(&pool->in_flight, 1);
    work_on_step(pool, generation, 0);
    atomic_fetch_sub(&pool->in_flight, 1);
    /* Every chunk is claimed; wait for the ones still running elsewhere,
     * yielding now and then in case their thread is waiting for a core. */
    for (int i = 0; atomic_load(&pool->in_flight) > 0; i++)
        spin_pause(i);
}
