/*
 * The worker pool, and that splitting the forward pass across threads changes
 * nothing: every output row is computed once, by some thread, with the same
 * arithmetic, so logits must be bit-identical for any thread count.
 */
#include "engine/threadpool.h"
#include "pocketlm.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tensor/types.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TEST_THREADS 8
#define MAX_TEST_CHUNKS 64

struct count_job {
    atomic_int calls[MAX_TEST_CHUNKS];
    atomic_int bad_arguments;
    int n_threads, n_chunks;
};

static void count_calls(void *arg, int chunk, int n_chunks, int thread)
{
    struct count_job *job = arg;
    if (n_chunks != job->n_chunks || chunk < 0 || chunk >= n_chunks || thread < 0 || thread >= job->n_threads)
        atomic_fetch_add(&job->bad_arguments, 1);
    else
        atomic_fetch_add(&job->calls[chunk], 1);
}

/* Every step runs every chunk exactly once, on some thread of the pool, and
 * run() returns only after all of them finished (the counts are complete
 * right away): with fewer, as many and more chunks than threads. */
static void test_each_chunk_runs_once_per_step(void **state)
{
    (void)state;
    for (int n_threads = 1; n_threads <= 4; n_threads++) {
        struct plm_threadpool *pool;
        assert_int_equal(threadpool_new(n_threads, &pool), PLM_OK);
        assert_int_equal(threadpool_size(pool), n_threads);
        const int chunk_counts[] = {1, 2, n_threads, 3 * n_threads + 1, MAX_TEST_CHUNKS};
        for (size_t k = 0; k < sizeof chunk_counts / sizeof chunk_counts[0]; k++) {
            struct count_job job = {.n_threads = n_threads, .n_chunks = chunk_counts[k]};
            for (int step = 1; step <= 500; step++) {
                threadpool_run(pool, count_calls, &job, job.n_chunks);
                for (int c = 0; c < job.n_chunks; c++)
                    assert_int_equal(atomic_load(&job.calls[c]), step);
            }
            assert_int_equal(atomic_load(&job.bad_arguments), 0);
        }
        threadpool_free(pool);
    }
}

static void sleep_on_one_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    (void)arg;
    (void)n_chunks;
    (void)thread;
    if (chunk == 1) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

/* Workers that fell asleep between steps (long pauses) still wake up, and a
 * slow chunk does not let run() return early. */
static void test_workers_wake_after_long_pauses(void **state)
{
    (void)state;
    struct plm_threadpool *pool;
    assert_int_equal(threadpool_new(3, &pool), PLM_OK);
    struct count_job job = {.n_threads = 3, .n_chunks = 7};
    for (int step = 1; step <= 5; step++) {
        struct timespec pause = {0, 50000000}; /* long enough for the workers to sleep */
        nanosleep(&pause, NULL);
        threadpool_run(pool, sleep_on_one_chunk, NULL, 3);
        threadpool_run(pool, count_calls, &job, job.n_chunks);
        for (int c = 0; c < job.n_chunks; c++)
            assert_int_equal(atomic_load(&job.calls[c]), step);
    }
    threadpool_free(pool);
}

static void test_free_unused_pool(void **state)
{
    (void)state;
    struct plm_threadpool *pool;
    assert_int_equal(threadpool_new(4, &pool), PLM_OK);
    threadpool_free(pool);
    assert_int_equal(threadpool_new(0, &pool), PLM_OK); /* clamps to the caller alone */
    assert_int_equal(threadpool_size(pool), 1);
    threadpool_free(pool);
    threadpool_free(NULL);
}

static float *decode_logits(const char *path, int n_threads, const int32_t *tokens, int n_tokens)
{
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    plm_session *session;
    struct plm_session_params params = {.n_ctx = 128, .n_threads = n_threads};
    assert_int_equal(plm_session_new(model, &params, &session), PLM_OK);
    float *logits = malloc((size_t)n_tokens * TINY_N_VOCAB * sizeof *logits);
    assert_non_null(logits);
    /* A batch, then single tokens: both the batched and the one-token paths. */
    assert_int_equal(plm_decode(session, tokens, n_tokens - 3, logits), PLM_OK);
    for (int i = n_tokens - 3; i < n_tokens; i++)
        assert_int_equal(plm_decode(session, tokens + i, 1, logits + (size_t)i * TINY_N_VOCAB), PLM_OK);
    plm_session_free(session);
    plm_model_free(model);
    return logits;
}

static void test_logits_identical_for_any_thread_count(void **state)
{
    (void)state;
    const int types[] = {PLM_TYPE_F32, PLM_TYPE_Q4_K};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        /* n_ff and the vocabulary are not multiples of the row grain times the
         * thread count, so the last thread's share is short. */
        struct tiny_model_spec spec = {.arch = "qwen2", .n_embd = 256, .n_ff = 768, .n_layer = 2,
                                       .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_ctx_train = 128,
                                       .rope_freq_base = 10000.0f, .norm_eps = 1e-6f,
                                       .weight_type = types[k], .seed = 11 + k};
        const char *path = temp_path("threads.gguf");
        assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
        int32_t tokens[70];
        for (int i = 0; i < 70; i++)
            tokens[i] = (i * 37 + 5) % TINY_N_VOCAB;
        float *one = decode_logits(path, 1, tokens, 70);
        for (int n_threads = 2; n_threads <= 3; n_threads++) {
            float *many = decode_logits(path, n_threads, tokens, 70);
            assert_memory_equal(one, many, 70 * TINY_N_VOCAB * sizeof(float));
            free(many);
        }
        free(one);
        remove(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_chunk_runs_once_per_step),
        cmocka_unit_test(test_workers_wake_after_long_pauses),
        cmocka_unit_test(test_free_unused_pool),
        cmocka_unit_test(test_logits_identical_for_any_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
