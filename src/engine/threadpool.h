/*
 * A persistent pool of worker threads. Decoding a token runs a few hundred
 * parallel steps (one per matrix product), so workers are created once per
 * session and wait between steps by spinning briefly, then sleeping: waking
 * a sleeping thread costs tens of microseconds, spinning a few.
 *
 * A step is cut into chunks that threads claim one at a time, the caller
 * included. When the machine has fewer free cores than threads, a worker that
 * has not been scheduled yet does not hold the step up: the others take its
 * chunk.
 */
#ifndef PLM_ENGINE_THREADPOOL_H
#define PLM_ENGINE_THREADPOOL_H

struct plm_threadpool;

/* Runs chunk `chunk` of n_chunks on thread `thread` (0 is the caller), so the
 * task can use per-thread scratch. */
typedef void (*threadpool_task)(void *arg, int chunk, int n_chunks, int thread);

#define THREADPOOL_MAX_CHUNKS 65535

/* n_threads includes the calling thread; 1 creates no workers. */
int threadpool_new(int n_threads, struct plm_threadpool **pool);
void threadpool_free(struct plm_threadpool *pool);
int threadpool_size(const struct plm_threadpool *pool);

/* Runs task on every chunk 0..n_chunks-1 (1..THREADPOOL_MAX_CHUNKS), each
 * exactly once, and returns when all have finished. */
void threadpool_run(struct plm_threadpool *pool, threadpool_task task, void *arg, int n_chunks);

#endif
