/*
 * The server's scheduler and slots without HTTP: jobs submitted directly,
 * their output read as the connection threads read it. Generation must match
 * plm_generate token for token, however the slots interleave; the queue must
 * refuse what it cannot hold; cancellation and shutdown must free slots.
 */
#include "server/scheduler.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tensor/types.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CTX 256

static plm_model *model;

static int setup(void **state)
{
    (void)state;
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 64, .n_ff = 128, .n_layer = 2, .n_head = 4,
                                   .n_head_kv = 2, .head_dim = 16, .n_ctx_train = N_CTX, .rope_freq_base = 10000.0f,
                                   .norm_eps = 1e-5f, .weight_type = PLM_TYPE_F32, .seed = 11};
    const char *path = temp_path("scheduler.gguf");
    int rc = tiny_model_write(path, &spec) == PLM_OK && plm_model_load(path, &model) == PLM_OK ? 0 : -1;
    remove(path); /* the mapping stays valid */
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    plm_model_free(model);
    return 0;
}

static struct scheduler *start(int n_slots, int max_queue, struct server_metrics *metrics)
{
    metrics_init(metrics, n_slots);
    struct scheduler_params params = {model, {.n_ctx = N_CTX, .n_threads = 1}, n_slots, max_queue, metrics};
    struct scheduler *s;
    assert_int_equal(scheduler_start(&params, &s), PLM_OK);
    return s;
}

/* A legacy completion job for prompt, greedy unless seeded. */
static struct job *new_job(const char *prompt, int max_tokens, bool stream, const char *stop)
{
    struct api_request req = {.kind = API_COMPLETION, .max_tokens = max_tokens, .stream = stream};
    plm_sampler_params_default(&req.sampling);
    req.sampling.temperature = 0;
    req.prompt = strdup(prompt);
    if (stop)
        req.stop[req.n_stop++] = strdup(stop);
    struct job *job = job_new(&req);
    assert_non_null(job);
    job->meta = (struct response_meta){.kind = API_COMPLETION, .id = "cmpl-t", .created = 1, .model_name = "m"};
    int max = (int)strlen(prompt) + 8;
    job->prompt = malloc((size_t)max * sizeof *job->prompt);
    job->n_prompt = plm_tokenize(model, prompt, strlen(prompt), true, false, job->prompt, max);
    assert_true(job->n_prompt > 0 && job->n_prompt <= max);
    return job;
}

/* Reads everything the job produces, as a connection thread would. */
static char *read_all(struct job *job)
{
    size_t len = 0, cap = 4096;
    char *out = malloc(cap + 1);
    for (;;) {
        if (len == cap)
            out = realloc(out, (cap *= 2) + 1);
        ssize_t n = job_read(job, out + len, cap - len, 1.0);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return out;
}

/* The choice's text and finish reason of a whole body. */
static char *body_text(const char *body, char *finish_reason, size_t size)
{
    cJSON *root = cJSON_Parse(body);
    assert_non_null(root);
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    snprintf(finish_reason, size, "%s", cJSON_IsString(reason) ? reason->valuestring : "null");
    char *text = strdup(cJSON_GetObjectItemCaseSensitive(choice, "text")->valuestring);
    cJSON_Delete(root);
    return text;
}

/* The text of a stream: its chunks' texts joined; checks the framing. */
static char *stream_text(const char *events)
{
    size_t n = strlen(events);
    assert_true(n > 14 && strcmp(events + n - 14, "data: [DONE]\n\n") == 0);
    char *text = calloc(1, n);
    const char *at = events;
    while (strncmp(at, "data: [DONE]", 12) != 0) {
        assert_memory_equal(at, "data: ", 6);
        const char *end = strstr(at, "\n\n");
        assert_non_null(end);
        cJSON *chunk = cJSON_ParseWithLength(at + 6, (size_t)(end - at - 6));
        assert_non_null(chunk);
        const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(chunk, "choices"), 0);
        strcat(text, cJSON_GetObjectItemCaseSensitive(choice, "text")->valuestring);
        cJSON_Delete(chunk);
        at = end + 2;
    }
    return text;
}

struct collected {
    char text[8192];
    size_t len;
};

static bool collect(void *user, const char *text, size_t len)
{
    struct collected *c = user;
    memcpy(c->text + c->len, text, len);
    c->len += len;
    return true;
}

/* What plm_generate writes for the prompt, greedy, made valid UTF-8 as the
 * server sends it; *n_generated (may be NULL) receives its token count. */
static char *reference_text(const char *prompt, int n_predict, int *n_generated)
{
    struct plm_session_params params = {.n_ctx = N_CTX, .n_threads = 1};
    plm_session *session;
    assert_int_equal(plm_session_new(model, &params, &session), PLM_OK);
    struct plm_sampler_params sp;
    plm_sampler_params_default(&sp);
    sp.temperature = 0;
    plm_sampler *sampler;
    assert_int_equal(plm_sampler_new(&sp, TINY_N_VOCAB, &sampler), PLM_OK);
    int32_t tokens[256];
    int n = plm_tokenize(model, prompt, strlen(prompt), true, false, tokens, 256);
    struct plm_generate_params gp = {.n_predict = n_predict};
    struct plm_generate_result result;
    struct collected *c = calloc(1, sizeof *c);
    assert_int_equal(plm_generate(session, sampler, tokens, n, &gp, collect, c, &result), PLM_OK);
    char *text = utf8_sanitize(c->text, c->len);
    if (n_generated)
        *n_generated = result.n_generated;
    free(c);
    plm_sampler_free(sampler);
    plm_session_free(session);
    return text;
}

static const char *prompts[] = {"the cat", "a dog ran", "on the mat", "in a box"};

/* Four jobs over two slots, streamed and whole: each equals plm_generate's text. */
static void test_interleaved_jobs_match_generate(void **state)
{
    (void)state;
    struct server_metrics metrics;
    struct scheduler *s = start(2, 4, &metrics);
    struct job *jobs[4];
    int n_generated = 0;
    for (int i = 0; i < 4; i++) {
        jobs[i] = new_job(prompts[i], 40, i % 2 == 1, NULL);
        assert_int_equal(scheduler_submit(s, jobs[i]), SUBMIT_OK);
    }
    for (int i = 0; i < 4; i++) {
        char *out = read_all(jobs[i]);
        assert_int_equal(jobs[i]->status, 200);
        char reason[16];
        char *text = i % 2 == 1 ? stream_text(out) : body_text(out, reason, sizeof reason);
        int n;
        char *want = reference_text(prompts[i], 40, &n);
        n_generated += n;
        assert_string_equal(text, want);
        free(want);
        free(text);
        free(out);
        job_release(jobs[i]);
    }
    assert_int_equal(scheduler_drain(s, 10), 0);
    assert_int_equal(metrics.generated_tokens, n_generated);
    assert_int_equal(metrics.latency.count, 4);
    assert_int_equal(metrics.ttft.count, 4);
    scheduler_free(s);
    metrics_destroy(&metrics);
}

/* The same prompt twice in one slot: the second reuses the cache and must still give the same text. */
static void test_cached_prompt_gives_same_text(void **state)
{
    (void)state;
    struct server_metrics metrics;
    struct scheduler *s = start(1, 1, &metrics);
    char *first = NULL, first_reason[16];
    for (int round = 0; round < 3; round++) {
        struct job *job = new_job(round == 1 ? "the cat sat" : "the cat", 20, false, NULL);
        assert_int_equal(scheduler_submit(s, job), SUBMIT_OK);
        char *out = read_all(job);
        char reason[16];
        char *text = body_text(out, reason, sizeof reason);
        if (round == 0) {
            first = strdup(text);
            strcpy(first_reason, reason);
        }
        if (round == 2) {
            assert_string_equal(text, first);
            assert_string_equal(reason, first_reason);
        }
        free(text);
        free(out);
        job_release(job);
    }
    free(first);
    scheduler_drain(s, 10);
    scheduler_free(s);
    metrics_destroy(&metrics);
}

static void test_stop_string(void **state)
{
    (void)state;
    char *whole = reference_text("the cat", 40, NULL);
    size_t cut = strlen(whole) / 2;
    while (cut > 0 && ((unsigned char)whole[cut] & 0xC0) == 0x80)
        cut--; /* start the stop string on a character */
    char stop[8] = {0};
    memcpy(stop, whole + cut, strlen(whole + cut) < 3 ? strlen(whole + cut) : 3);
    size_t first = (size_t)(strstr(whole, stop) - whole);

    struct server_metrics metrics;
    struct scheduler *s = start(1, 0, &metrics);
    for (int stream = 0; stream < 2; stream++) {
        struct job *job = new_job("the cat", 40, stream, stop);
        assert_int_equal(scheduler_submit(s, job), SUBMIT_OK);
        char *out = read_all(job);
        char reason[16] = "stop";
        char *text = stream ? stream_text(out) : body_text(out, reason, sizeof reason);
        assert_int_equal(strlen(text), first);
        assert_memory_equal(text, whole, first);
        assert_string_equal(reason, "stop");
        if (stream)
            assert_non_null(strstr(out, "\"finish_reason\":\"stop\""));
        free(text);
        free(out);
        job_release(job);
    }
    free(whole);
    scheduler_drain(s, 10);
    scheduler_free(s);
    metrics_destroy(&metrics);
}

/* Admission alone, on a scheduler whose thread never runs: free slots plus the queue. */
static void test_queue_bound(void **state)
{
    (void)state;
    struct job *queue[4] = {0};
    struct scheduler s = {.params = {.n_slots = 2, .max_queue = 2}, .queue = queue};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.wake, NULL);
    struct job *jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = new_job("x", 1, false, NULL);
        assert_int_equal(scheduler_submit(&s, jobs[i]), i < 4 ? SUBMIT_OK : SUBMIT_QUEUE_FULL);
    }
    s.n_busy = 2; /* both slots taken: only max_queue may wait */
    assert_int_equal(scheduler_submit(&s, jobs[4]), SUBMIT_QUEUE_FULL);
    s.closed = true;
    assert_int_equal(scheduler_submit(&s, jobs[4]), SUBMIT_CLOSED);
    for (int i = 0; i < 5; i++) {
        if (i < 4)
            job_release(jobs[i]); /* the queue's reference */
        job_release(jobs[i]);
    }
    pthread_cond_destroy(&s.wake);
    pthread_mutex_destroy(&s.lock);
}

/* Holding a job's lock freezes the scheduler at the job's first output, so
 * the job cannot finish however the threads are scheduled. (Cancelling needs
 * no job lock, and the scheduler takes none while it holds its own.) Returns
 * once the scheduler runs the job. */
static void submit_frozen(struct scheduler *s, struct job *job)
{
    pthread_mutex_lock(&job->lock);
    assert_int_equal(scheduler_submit(s, job), SUBMIT_OK);
    for (bool running = false; !running;) {
        pthread_mutex_lock(&s->lock);
        running = s->n_busy == 1;
        pthread_mutex_unlock(&s->lock);
    }
}

/* A cancelled job (the client left) ends at once and frees its slot for the next. */
static void test_cancel_frees_slot(void **state)
{
    (void)state;
    struct server_metrics metrics;
    struct scheduler *s = start(1, 1, &metrics);
    struct job *running = new_job("the cat", 100000, true, NULL); /* until the context is full */
    struct job *waiting = new_job("a dog", 100000, true, NULL);
    submit_frozen(s, running);
    assert_int_equal(scheduler_submit(s, waiting), SUBMIT_OK);
    scheduler_cancel(s, waiting, JOB_CLIENT_GONE);
    scheduler_cancel(s, running, JOB_CLIENT_GONE);
    pthread_mutex_unlock(&running->lock);
    assert_true(job_wait_finished(running, 30) && job_wait_finished(waiting, 30));
    assert_int_equal(running->status, 499);
    assert_int_equal(waiting->status, 499);
    assert_null(strstr(waiting->out ? waiting->out : "", "error")); /* nothing for a client that left */
    job_release(running);
    job_release(waiting);

    struct job *next = new_job("the cat", 5, false, NULL);
    assert_int_equal(scheduler_submit(s, next), SUBMIT_OK);
    char *out = read_all(next);
    assert_int_equal(next->status, 200);
    free(out);
    job_release(next);
    assert_int_equal(scheduler_drain(s, 10), 0);
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->n_busy, 0);
    assert_int_equal(s->queue_len, 0);
    pthread_mutex_unlock(&s->lock);
    scheduler_free(s);
    metrics_destroy(&metrics);
}

struct drain_call {
    struct scheduler *s;
    int n_cancelled;
};

static void *call_drain(void *arg)
{
    struct drain_call *call = arg;
    call->n_cancelled = scheduler_drain(call->s, 0);
    return NULL;
}

/* Shutdown with no grace: the running and the queued job are told, the stream ends with [DONE]. */
static void test_drain_cancels_after_grace(void **state)
{
    (void)state;
    struct server_metrics metrics;
    struct scheduler *s = start(1, 2, &metrics);
    struct job *running = new_job("the cat", 100000, true, NULL);
    struct job *queued = new_job("a dog", 100000, false, NULL);
    submit_frozen(s, running);
    assert_int_equal(scheduler_submit(s, queued), SUBMIT_OK);
    struct drain_call call = {s, -1};
    pthread_t drainer;
    assert_int_equal(pthread_create(&drainer, NULL, call_drain, &call), 0);
    for (bool asked = false; !asked;) { /* the frozen scheduler cannot act on it yet */
        pthread_mutex_lock(&s->lock);
        asked = s->cancel_all;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&running->lock);
    pthread_join(drainer, NULL);
    assert_int_equal(call.n_cancelled, 2);
    assert_int_equal(scheduler_submit(s, queued), SUBMIT_CLOSED);
    char *out = read_all(running);
    assert_int_equal(running->status, 503);
    assert_non_null(strstr(out, "shutting down"));
    assert_int_equal(strcmp(out + strlen(out) - 14, "data: [DONE]\n\n"), 0);
    free(out);
    out = read_all(queued);
    assert_int_equal(queued->status, 503);
    assert_non_null(strstr(out, "\"error\""));
    free(out);
    job_release(running);
    job_release(queued);
    scheduler_free(s);
    metrics_destroy(&metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interleaved_jobs_match_generate),
        cmocka_unit_test(test_cached_prompt_gives_same_text),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_cancel_frees_slot),
        cmocka_unit_test(test_drain_cancels_after_grace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
