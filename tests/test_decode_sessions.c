/*
 * plm_decode_sessions: one token of each of several sessions in one forward
 * pass must leave every session as plm_decode would, one token at a time.
 * Each session of a batch has a twin, fed the same prompt and the same tokens
 * through plm_decode; after every round their logits must agree, on tiny
 * random models of several architectures and weight types, with sessions at
 * different positions, with different KV cache types and thread counts, in
 * changing order and subsets. Every refused call must leave the sessions as
 * they were. The comparisons run again in copies of this program with
 * POCKETLM_ISA set to each other instruction set the CPU has.
 */
#include "engine/session.h"
#include "kernels/matmul_impl.h"
#include "pocketlm.h"
#include "tensor/types.h"
#include "test_util.h"
#include "tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_SESSIONS 4
#define N_ROUNDS 10
#define N_CTX 128
/* Largest logit difference allowed, relative to the largest logit: the rows
 * of a batch only share matrix products, whose kernels may round a row of a
 * multi-token tile differently from a lone token. */
#define TOLERANCE 1e-5

struct model_case {
    const char *name;
    const char *arch;
    int weight_type;
    int n_embd, n_ff, n_head, n_head_kv, head_dim;
    bool tied;
};

/* K-quants need rows that are multiples of 256, so their models are wider. */
static const struct model_case cases[] = {
    {"llama F32", "llama", PLM_TYPE_F32, 64, 96, 4, 2, 16, false},
    {"qwen2 F32 (biases)", "qwen2", PLM_TYPE_F32, 64, 96, 4, 1, 16, true},
    {"qwen3 F32 (q/k norms, head_dim 24)", "qwen3", PLM_TYPE_F32, 64, 96, 4, 2, 24, false},
    {"llama Q8_0", "llama", PLM_TYPE_Q8_0, 64, 96, 4, 2, 16, true},
    {"qwen2 Q8_0", "qwen2", PLM_TYPE_Q8_0, 64, 96, 4, 2, 32, false},
    {"llama Q4_0", "llama", PLM_TYPE_Q4_0, 64, 96, 4, 2, 16, false},
    {"llama Q4_K", "llama", PLM_TYPE_Q4_K, 256, 512, 4, 2, 64, false},
    {"qwen3 Q4_K", "qwen3", PLM_TYPE_Q4_K, 256, 512, 4, 1, 64, true},
};

/* Prompt lengths: one token, a few, and more than a batch of PLM_BATCH. */
static const int prompt_lengths[N_SESSIONS] = {1, 7, 30, 70};

static plm_model *load_case(const struct model_case *c)
{
    struct tiny_model_spec spec = {.arch = c->arch, .n_embd = c->n_embd, .n_ff = c->n_ff, .n_layer = 2,
                                   .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = c->head_dim,
                                   .n_ctx_train = N_CTX, .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
                                   .tied_output = c->tied, .weight_type = c->weight_type, .seed = 77};
    const char *path = temp_path("decode_sessions.gguf");
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    remove(path); /* the mapping stays valid */
    return model;
}

/* Session i's parameters: session 0 (which lends its scratch and threads to
 * the pass) has two threads; the others one thread, other contexts and, where
 * the head size allows, other KV cache types. */
static struct plm_session_params session_params(int i, int head_dim)
{
    static const enum plm_kv_type kv_types[N_SESSIONS] = {PLM_KV_F32, PLM_KV_F16, PLM_KV_Q8_0, PLM_KV_F32};
    enum plm_kv_type kv_type = kv_types[i];
    if (kv_type == PLM_KV_Q8_0 && head_dim % 32 != 0)
        kv_type = PLM_KV_F16;
    return (struct plm_session_params){.n_ctx = N_CTX - 8 * i, .n_threads = i == 0 ? 2 : 1, .kv_type = kv_type};
}

static plm_session *new_session(plm_model *model, int i, int head_dim)
{
    struct plm_session_params params = session_params(i, head_dim);
    plm_session *s;
    assert_int_equal(plm_session_new(model, &params, &s), PLM_OK);
    return s;
}

/* BOS, then random tokens from the whole vocabulary. */
static void decode_prompt(plm_session *s, int length, uint64_t seed)
{
    int32_t tokens[N_CTX];
    struct test_rng rng = {seed};
    tokens[0] = 1;
    for (int i = 1; i < length; i++)
        tokens[i] = 3 + (int32_t)(rng_next(&rng) % (TINY_N_VOCAB - 3));
    assert_int_equal(plm_decode(s, tokens, length, NULL), PLM_OK);
}

static int32_t argmax(const float *logits)
{
    int32_t best = 0;
    for (int32_t i = 1; i < TINY_N_VOCAB; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* Largest difference between the sessions' logits, relative to the largest of b's. */
static double logit_error(const plm_session *a, const plm_session *b)
{
    const float *x = plm_session_logits(a), *y = plm_session_logits(b);
    double diff = 0, scale = 0;
    for (int i = 0; i < TINY_N_VOCAB; i++) {
        diff = fmax(diff, fabs((double)x[i] - y[i]));
        scale = fmax(scale, fabs((double)y[i]));
    }
    return diff / scale;
}

/* The sessions of round r: all of them in an order rotated by r, and on odd
 * rounds one fewer, so that sessions drift apart in position; then the one
 * with the largest context (the lowest index) moves to the front, as
 * plm_decode_sessions requires, so the session lending its scratch changes
 * too. Returns how many. */
static int round_members(int r, int *members)
{
    int n = 0, front = 0;
    for (int k = 0; k < N_SESSIONS; k++) {
        if (r % 2 == 1 && k == N_SESSIONS - 1)
            continue;
        members[n] = (k + r) % N_SESSIONS;
        if (members[n] < members[front])
            front = n;
        n++;
    }
    int largest = members[front];
    members[front] = members[0];
    members[0] = largest;
    return n;
}

/* Rounds of plm_decode_sessions against twins decoded one token at a time;
 * returns the largest relative logit error seen. */
static double run_case(const struct model_case *c)
{
    plm_model *model = load_case(c);
    plm_session *batched[N_SESSIONS], *twins[N_SESSIONS];
    for (int i = 0; i < N_SESSIONS; i++) {
        batched[i] = new_session(model, i, c->head_dim);
        twins[i] = new_session(model, i, c->head_dim);
        decode_prompt(batched[i], prompt_lengths[i], 100 + i);
        decode_prompt(twins[i], prompt_lengths[i], 100 + i);
    }
    double worst = 0;
    for (int r = 0; r < N_ROUNDS; r++) {
        int members[N_SESSIONS];
        int n = round_members(r, members);
        plm_session *sessions[N_SESSIONS];
        int32_t tokens[N_SESSIONS];
        for (int k = 0; k < n; k++) {
            int i = members[k];
            tokens[k] = argmax(plm_session_logits(twins[i]));
            assert_int_equal(argmax(plm_session_logits(batched[i])), tokens[k]); /* the same greedy token */
            sessions[k] = batched[i];
            assert_int_equal(plm_decode(twins[i], &tokens[k], 1, NULL), PLM_OK);
        }
        if (plm_decode_sessions(sessions, tokens, n) != PLM_OK)
            fail_msg("%s, round %d: %s", c->name, r, plm_last_error());
        for (int i = 0; i < N_SESSIONS; i++) {
            assert_int_equal(plm_session_n_past(batched[i]), plm_session_n_past(twins[i]));
            worst = fmax(worst, logit_error(batched[i], twins[i]));
        }
    }
    for (int i = 0; i < N_SESSIONS; i++) {
        plm_session_free(batched[i]);
        plm_session_free(twins[i]);
    }
    plm_model_free(model);
    return worst;
}

static void test_matches_one_session_at_a_time(void **state)
{
    (void)state;
    print_message("kernels: %s\n", plm_isa_name(plm_matmul_isa()));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double error = run_case(&cases[i]);
        print_message("%-36s largest relative logit error %.2e\n", cases[i].name, error);
        assert_true(error <= TOLERANCE);
    }
}

/* The pass runs on session 0's threads and calls its calibration hook, with
 * every row of the pass. */
struct observed {
    int n_calls;
    int n_rows_seen_wrong;
};

static void observe(void *user, const struct plm_matrix *w, const float *x, int n_tokens)
{
    (void)w;
    (void)x;
    struct observed *o = user;
    o->n_calls++;
    o->n_rows_seen_wrong += n_tokens != 3;
}

static void test_first_session_observer_sees_all_rows(void **state)
{
    (void)state;
    plm_model *model = load_case(&cases[0]);
    plm_session *sessions[3];
    int32_t tokens[3] = {5, 6, 7};
    for (int i = 0; i < 3; i++) {
        sessions[i] = new_session(model, i, cases[0].head_dim);
        decode_prompt(sessions[i], 2 + i, 7);
    }
    struct observed first = {0}, other = {0};
    sessions[0]->observe_matmul = observe;
    sessions[0]->observe_user = &first;
    sessions[1]->observe_matmul = observe;
    sessions[1]->observe_user = &other;
    assert_int_equal(plm_decode_sessions(sessions, tokens, 3), PLM_OK);
    assert_int_equal(first.n_calls, 2 * 7 + 1); /* q k v o gate up down per layer, then the output */
    assert_int_equal(first.n_rows_seen_wrong, 0);
    assert_int_equal(other.n_calls, 0);
    for (int i = 0; i < 3; i++)
        plm_session_free(sessions[i]);
    plm_model_free(model);
}

/* A refused call must change nothing: positions, logits, and what the next
 * decode computes (compared with a twin that never saw the call). */
struct error_fixture {
    plm_model *model;
    plm_session *sessions[N_SESSIONS], *twins[N_SESSIONS];
};

static void expect_refused(struct error_fixture *f, plm_session *const *sessions, const int32_t *tokens, int n,
                           int want_status)
{
    float before[N_SESSIONS][TINY_N_VOCAB];
    int n_past[N_SESSIONS];
    for (int i = 0; i < N_SESSIONS; i++) {
        memcpy(before[i], plm_session_logits(f->sessions[i]), sizeof before[i]);
        n_past[i] = plm_session_n_past(f->sessions[i]);
    }
    assert_int_equal(plm_decode_sessions(sessions, tokens, n), want_status);
    print_message("refused (%d): %s\n", want_status, plm_last_error());
    assert_true(strlen(plm_last_error()) > 0);
    for (int i = 0; i < N_SESSIONS; i++) {
        assert_int_equal(plm_session_n_past(f->sessions[i]), n_past[i]);
        assert_memory_equal(plm_session_logits(f->sessions[i]), before[i], sizeof before[i]);
    }
}

static void test_refused_calls_change_nothing(void **state)
{
    (void)state;
    struct error_fixture f;
    f.model = load_case(&cases[0]);
    for (int i = 0; i < N_SESSIONS; i++) {
        f.sessions[i] = new_session(f.model, i, cases[0].head_dim);
        f.twins[i] = new_session(f.model, i, cases[0].head_dim);
        decode_prompt(f.sessions[i], 3 + i, 200 + i);
        decode_prompt(f.twins[i], 3 + i, 200 + i);
    }
    int32_t tokens[N_SESSIONS] = {10, 11, 12, 13};

    expect_refused(&f, f.sessions, tokens, 0, PLM_ERR_ARG);
    expect_refused(&f, f.sessions, tokens, PLM_DECODE_SESSIONS_MAX + 1, PLM_ERR_ARG);

    plm_session *twice[3] = {f.sessions[0], f.sessions[1], f.sessions[0]};
    expect_refused(&f, twice, tokens, 3, PLM_ERR_ARG);

    int32_t bad_low[N_SESSIONS] = {10, -1, 12, 13}, bad_high[N_SESSIONS] = {10, 11, 12, TINY_N_VOCAB};
    expect_refused(&f, f.sessions, bad_low, N_SESSIONS, PLM_ERR_ARG);
    expect_refused(&f, f.sessions, bad_high, N_SESSIONS, PLM_ERR_ARG);

    /* The same file loaded again is another model. */
    plm_model *other_model = load_case(&cases[0]);
    plm_session *stranger = new_session(other_model, 1, cases[0].head_dim);
    plm_session *mixed[2] = {f.sessions[0], stranger};
    expect_refused(&f, mixed, tokens, 2, PLM_ERR_ARG);
    plm_session_free(stranger);
    plm_model_free(other_model);

    struct plm_session_params tiny_ctx = {.n_ctx = 4, .n_threads = 1};
    plm_session *full;
    assert_int_equal(plm_session_new(f.model, &tiny_ctx, &full), PLM_OK);
    decode_prompt(full, 4, 9);
    plm_session *with_full[3] = {f.sessions[0], full, f.sessions[2]};
    expect_refused(&f, with_full, tokens, 3, PLM_ERR_CONTEXT_FULL);
    assert_int_equal(plm_session_n_past(full), 4);
    plm_session_free(full);

    /* After all that, a real call still matches the twins. */
    assert_int_equal(plm_decode_sessions(f.sessions, tokens, N_SESSIONS), PLM_OK);
    for (int i = 0; i < N_SESSIONS; i++) {
        assert_int_equal(plm_decode(f.twins[i], &tokens[i], 1, NULL), PLM_OK);
        assert_int_equal(plm_session_n_past(f.sessions[i]), plm_session_n_past(f.twins[i]));
        assert_true(logit_error(f.sessions[i], f.twins[i]) <= TOLERANCE);
    }
    for (int i = 0; i < N_SESSIONS; i++) {
        plm_session_free(f.sessions[i]);
        plm_session_free(f.twins[i]);
    }
    plm_model_free(f.model);
}

/* The kernels are chosen once per process, so each other instruction set
 * this CPU has (scalar at least) is tried by a fresh copy of this program,
 * which runs the comparisons only. */
static void test_other_kernels_too(void **state)
{
    (void)state;
    static const enum plm_isa isas[] = {PLM_ISA_SCALAR, PLM_ISA_AVX2, PLM_ISA_AVX512, PLM_ISA_NEON};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (isas[i] == plm_matmul_isa() || !plm_isa_available(isas[i]))
            continue;
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            setenv("POCKETLM_ISA", plm_isa_name(isas[i]), 1);
            execl("/proc/self/exe", "test_decode_sessions", (char *)NULL);
            _exit(127);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

int main(void)
{
    const struct CMUnitTest comparisons[] = {
        cmocka_unit_test(test_matches_one_session_at_a_time),
    };
    if (getenv("POCKETLM_ISA"))
        return cmocka_run_group_tests_name("decode_sessions_with_POCKETLM_ISA", comparisons, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_one_session_at_a_time),
        cmocka_unit_test(test_first_session_observer_sees_all_rows),
        cmocka_unit_test(test_refused_calls_change_nothing),
        cmocka_unit_test(test_other_kernels_too),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
