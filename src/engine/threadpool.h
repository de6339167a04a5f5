/*
 * A persistent pool of worker threads. Decoding a token runs a few hundred
 * parallel steps (one per matrix product), so workers are created once per
 * session and wait between steps by spinning briefly, then sleeping: waking
 * a sleeping thread costs tens of microseconds, spinning a few.
 */
#ifndef PLM_ENGINE_THREADPOOL_H
#define PLM_ENGINE_THREADPOOL_H

struct plm_threadpool;

/* A step: called once on each of n_threads threads (thread 0 is the caller). */
typedef void (*threadpool_task)(void *arg, int thread, int n_threads);

/* n_threads includes the calling thread; 1 creates no workers. */
int threadpool_new(int n_threads, struct plm_threadpool **pool);
void threadpool_free(struct plm_threadpool *pool);
int threadpool_size(const struct plm_threadpool *pool);

/* Runs task on every thread and returns when all have finished. */
void threadpool_run(struct plm_threadpool *pool, threadpool_task task, void *arg);

#endif
