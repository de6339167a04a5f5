/*
 * The text of a generation as it grows (src/engine/text_stream.c): the tail
 * held back for stop strings split over tokens and for unfinished UTF-8
 * characters, and the SentencePiece leading space dropped at the start of a
 * document. plm_generate and the server both stream through it.
 */
#include "engine/text_stream.h"
#include "pocketlm.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tensor/types.h"

#include <string.h>

/* Appends, asks what may go, and marks it sent, as a streaming caller does. */
static size_t ready(struct text_stream *t, const char *append, const char *const *stops, int n_stop, bool *stopped)
{
    assert_int_equal(text_stream_append(t, append, strlen(append)), PLM_OK);
    size_t n = text_stream_ready(t, stops, n_stop, stopped);
    assert_true(n >= t->sent && n <= t->len);
    t->sent = n;
    return n;
}

static void test_stop_string_split_over_tokens(void **state)
{
    (void)state;
    const char *stops[] = {"", "END", "xyz"};
    struct text_stream t;
    text_stream_init(&t, false);
    bool stopped;
    assert_int_equal(ready(&t, "hello E", stops, 3, &stopped), 6); /* "E" might start END */
    assert_false(stopped);
    assert_int_equal(ready(&t, "N", stops, 3, &stopped), 6);       /* "EN" too */
    assert_int_equal(ready(&t, "X more", stops, 3, &stopped), 14); /* "ENX" does not: all of it */
    assert_false(stopped);
    assert_int_equal(ready(&t, " EN", stops, 3, &stopped), 15);
    assert_int_equal(ready(&t, "D and after", stops, 3, &stopped), 15); /* the text ends where END starts */
    assert_true(stopped);
    text_stream_free(&t);
}

static void test_earliest_stop_wins(void **state)
{
    (void)state;
    const char *stops[] = {"cd", "bcde", "b"};
    struct text_stream t;
    text_stream_init(&t, false);
    bool stopped;
    assert_int_equal(ready(&t, "abcdef", stops, 3, &stopped), 1);
    assert_true(stopped);
    text_stream_free(&t);
}

/* A stop string longer than all the text so far, and an empty stream. */
static void test_short_text(void **state)
{
    (void)state;
    const char *stops[] = {"a long stop string"};
    struct text_stream t;
    text_stream_init(&t, false);
    bool stopped = true;
    assert_int_equal(text_stream_ready(&t, stops, 1, &stopped), 0); /* nothing appended: bytes is NULL */
    assert_false(stopped);
    assert_int_equal(ready(&t, "", stops, 1, &stopped), 0);
    assert_int_equal(ready(&t, "a lo", stops, 1, &stopped), 0);    /* all of it may still be the stop */
    assert_int_equal(ready(&t, "ng time", stops, 1, &stopped), 11); /* not any more */
    assert_false(stopped);
    text_stream_free(&t);
}

static void test_unfinished_character_held(void **state)
{
    (void)state;
    struct text_stream t;
    text_stream_init(&t, false);
    bool stopped;
    assert_int_equal(ready(&t, "a\xE2", NULL, 0, &stopped), 1);
    assert_int_equal(ready(&t, "\x82", NULL, 0, &stopped), 1);
    assert_int_equal(ready(&t, "\xAC" "b\xF0\x9F", NULL, 0, &stopped), 5);
    assert_int_equal(ready(&t, "\x98\x80", NULL, 0, &stopped), 9);
    /* Invalid bytes are not held forever: only a lead byte still owed its continuations is. */
    assert_int_equal(ready(&t, "\x80\x80\x80\x80", NULL, 0, &stopped), 13);
    assert_int_equal(ready(&t, "\xC3", NULL, 0, &stopped), 13);
    assert_int_equal(ready(&t, "\xA9", NULL, 0, &stopped), 15);
    assert_false(stopped);
    text_stream_free(&t);
}

/* ----------------------------------------------- the document's leading space */

static plm_model *load_tiny_model(void)
{
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 32, .n_ff = 64, .n_layer = 1, .n_head = 2,
                                   .n_head_kv = 1, .head_dim = 16, .n_ctx_train = 64, .rope_freq_base = 10000.0f,
                                   .norm_eps = 1e-5f, .weight_type = PLM_TYPE_F32, .seed = 5};
    const char *path = temp_path("text_stream.gguf");
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    return model;
}

/* The token whose piece is exactly `text`. */
static int32_t token_of(const plm_model *model, const char *text)
{
    char piece[16];
    for (int32_t t = 0; t < TINY_N_VOCAB; t++) {
        int n = plm_token_to_piece(model, t, piece, sizeof piece, false);
        if (n == (int)strlen(text) && memcmp(piece, text, (size_t)n) == 0)
            return t;
    }
    fail_msg("no token '%s' in the tiny vocabulary", text);
    return -1;
}

static void test_starts_document(void **state)
{
    (void)state;
    plm_model *model = load_tiny_model();
    int32_t bos = plm_token_bos(model);
    int32_t word = token_of(model, " a");
    assert_true(text_stream_starts_document(model, NULL, 0));
    assert_true(text_stream_starts_document(model, &bos, 1));
    assert_false(text_stream_starts_document(model, (int32_t[]){bos, word}, 2));
    plm_model_free(model);
}

static void test_leading_space_dropped_once(void **state)
{
    (void)state;
    plm_model *model = load_tiny_model();
    int32_t eos = plm_token_eos(model), a = token_of(model, " a"), b = token_of(model, " b");
    struct text_stream t;
    text_stream_init(&t, true);
    assert_int_equal(text_stream_append_token(&t, model, eos), PLM_OK); /* an empty piece keeps the rule */
    assert_int_equal(t.len, 0);
    assert_int_equal(text_stream_append_token(&t, model, a), PLM_OK);
    assert_int_equal(text_stream_append_token(&t, model, b), PLM_OK);
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.bytes, "a b", 3);
    text_stream_free(&t);

    text_stream_init(&t, false); /* mid-document: the space is text */
    assert_int_equal(text_stream_append_token(&t, model, a), PLM_OK);
    assert_int_equal(t.len, 2);
    assert_memory_equal(t.bytes, " a", 2);
    text_stream_free(&t);
    plm_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_string_split_over_tokens),
        cmocka_unit_test(test_earliest_stop_wins),
        cmocka_unit_test(test_short_text),
        cmocka_unit_test(test_unfinished_character_held),
        cmocka_unit_test(test_starts_document),
        cmocka_unit_test(test_leading_space_dropped_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
