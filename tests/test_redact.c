/*
 * Redaction and restoration (src/privacy/): the labelled corpus
 * (tests/data/redaction/corpus.jsonl, written by scripts/gen_redaction_corpus.py)
 * with recall and precision per type, placeholders that stay consistent over a
 * conversation, restoration of streamed answers cut at every possible point,
 * and hostile input: invalid UTF-8, NUL bytes, 1 MB texts built to make a
 * careless scanner quadratic.
 */
#include "test_util.h"

#include "pocketlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static plm_redactor *new_redactor(const char *const *terms, int n_terms)
{
    struct plm_redact_config config = {.terms = terms, .n_terms = n_terms};
    plm_redactor *r = NULL;
    assert_int_equal(plm_redactor_new(&config, &r), PLM_OK);
    return r;
}

/* Redacts a NUL-terminated text; the caller frees the result. */
static char *redact(plm_redactor *r, const char *text, struct plm_redact_stats *stats)
{
    char *out = NULL;
    size_t out_len = 0;
    assert_int_equal(plm_redact(r, text, strlen(text), &out, &out_len, stats), PLM_OK);
    assert_int_equal(strlen(out), out_len);
    return out;
}

static void expect_redacted(const char *text, const char *want)
{
    plm_redactor *r = new_redactor(NULL, 0);
    char *got = redact(r, text, NULL);
    if (strcmp(got, want) != 0)
        fail_msg("redacting '%s'\n  got  '%s'\n  want '%s'", text, got, want);
    free(got);
    plm_redactor_free(r);
}

/* ------------------------------------------------------------ corpus */

static const char *corpus_path(void)
{
    static char path[4096];
    const char *source = __FILE__;
    const char *slash = strrchr(source, '/');
    int dir = slash ? (int)(slash - source) : 1;
    snprintf(path, sizeof path, "%.*s/data/redaction/corpus.jsonl", dir, slash ? source : ".");
    return path;
}

static void print_miss(void *user, int line, const char *what, int type, const char *text, size_t start, size_t end)
{
    (void)user;
    fprintf(stderr, "  corpus line %d: %s %s '%.*s'\n", line, what, plm_redact_type_name(type), (int)(end - start),
            text + start);
}

static void test_corpus(void **state)
{
    (void)state;
    struct plm_redact_eval eval;
    int rc = plm_redact_evaluate(corpus_path(), &eval, print_miss, NULL);
    if (rc != PLM_OK)
        fail_msg("%s", plm_last_error());
    char *table = plm_redact_eval_table(&eval);
    assert_non_null(table);
    printf("%d items\n%s", eval.n_items, table);
    free(table);
    assert_true(eval.n_items >= 500);

    /* Checksum-validated types: nothing leaks, no near miss is taken. */
    static const int checked[] = {PLM_REDACT_CARD, PLM_REDACT_IBAN};
    for (size_t i = 0; i < 2; i++) {
        const struct plm_redact_type_eval *te = &eval.types[checked[i]];
        assert_true(te->n_gold >= 30);
        assert_int_equal(te->n_found, te->n_gold);
        assert_int_equal(te->n_leaked, 0);
        assert_int_equal(te->n_predicted, te->n_found);
        assert_true(te->n_near_miss >= 25);
        assert_int_equal(te->n_near_miss_redacted, 0);
    }
    /* The other types: at least what docs/privacy.md promises. */
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++) {
        const struct plm_redact_type_eval *te = &eval.types[t];
        assert_true(te->n_gold >= 15);
        double recall = (double)te->n_found / te->n_gold;
        double precision = te->n_predicted ? (double)te->n_found / te->n_predicted : 1.0;
        if (recall < 0.95 || precision < 0.95 || te->n_near_miss_redacted > te->n_near_miss / 20)
            fail_msg("%s: recall %.3f, precision %.3f, %d of %d near misses redacted", plm_redact_type_name(t),
                     recall, precision, te->n_near_miss_redacted, te->n_near_miss);
    }
}

/* ---------------------------------------------------------- detectors */

static void test_checksums(void **state)
{
    (void)state;
    expect_redacted("card 4111 1111 1111 1111 ok", "card [CARD_1] ok");
    expect_redacted("card 4111 1111 1111 1112 ok", "card 4111 1111 1111 1112 ok"); /* Luhn fails */
    expect_redacted("4111111111111111,12/27", "[CARD_1],12/27");
    expect_redacted("amex 3782-822463-10005.", "amex [CARD_1].");
    expect_redacted("id 1234567812345670", "id 1234567812345670"); /* Luhn-valid, no issuer starts with 1 */
    expect_redacted("pi 3.4111111111111111", "pi 3.4111111111111111"); /* digits of a decimal */
    expect_redacted("IBAN DE89 3704 0044 0532 0130 00.", "IBAN [IBAN_1].");
    expect_redacted("IBAN DE89370400440532013000", "IBAN [IBAN_1]");
    expect_redacted("IBAN DE88 3704 0044 0532 0130 00", "IBAN DE88 3704 0044 0532 0130 00"); /* mod 97 fails */
    expect_redacted("IBAN DE89 3704 0044 0532 0130 0", "IBAN DE89 3704 0044 0532 0130 0");   /* too short */
    expect_redacted("SSN 078-05-1120", "SSN [SSN_1]");
    expect_redacted("SSN 666-05-1120 900-05-1120 078-00-1120 078-05-0000",
                    "SSN 666-05-1120 900-05-1120 078-00-1120 078-05-0000");
}

static void test_network_and_secrets(void **state)
{
    (void)state;
    expect_redacted("from 192.0.2.1:22", "from [IP_1]:22");
    expect_redacted("local 127.0.0.1 and ::1", "local 127.0.0.1 and ::1");
    expect_redacted("version 1.2.3.4", "version 1.2.3.4");
    expect_redacted("[fe80::1%eth0]:80", "[[IP_1]]:80");
    expect_redacted("std::vector and 12:30:45", "std::vector and 12:30:45");
    expect_redacted("mac 00:1A:2B:3C:4D:5E.", "mac [MAC_1].");
    expect_redacted("go https://a.example/x?token=abc now", "go [URL_1] now");
    expect_redacted("go https://a.example/x?page=2 now", "go https://a.example/x?page=2 now");
    expect_redacted("key AKIAIOSFODNN7EXAMPLE.", "key [SECRET_1].");
    expect_redacted("commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39", "commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39");
    expect_redacted("DB_PASSWORD=hunter2!x\n", "DB_PASSWORD=[SECRET_1]\n");
}

/* A URL holding an email is one URL; matches may touch each other. */
static void test_overlap_and_adjacency(void **state)
{
    (void)state;
    expect_redacted("see https://bob:pw@example.com/x?email=bob@example.com end", "see [URL_1] end");
    expect_redacted("a@example.com,b@example.com;c@example.com", "[EMAIL_1],[EMAIL_2];[EMAIL_3]");
    expect_redacted("192.0.2.1/192.0.2.2", "[IP_1]/[IP_2]");
    expect_redacted("x@example.com 4111111111111111 +44 20 7946 0958",
                    "[EMAIL_1] [CARD_1] [PHONE_1]");
}

static void test_utf8_and_invalid_bytes(void **state)
{
    (void)state;
    expect_redacted("→jane@example.com← «+33 6 12 34 56 78»", "→[EMAIL_1]← «[PHONE_1]»");
    expect_redacted("邮件jane@example.com谢谢", "邮件[EMAIL_1]谢谢");
    expect_redacted("kontakt@bücher.example.", "[EMAIL_1].");

    /* Invalid UTF-8 is copied byte for byte, matches next to it still work. */
    static const char text[] = "\xff\xfe a@example.com \xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80 \xe2\x82";
    static const char want[] = "\xff\xfe [EMAIL_1] \xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80 \xe2\x82";
    expect_redacted(text, want);

    /* NUL bytes are text like any other. */
    static const char with_nul[] = "a\0b 192.0.2.7\0";
    plm_redactor *r = new_redactor(NULL, 0);
    char *out;
    size_t out_len;
    assert_int_equal(plm_redact(r, with_nul, sizeof with_nul - 1, &out, &out_len, NULL), PLM_OK);
    assert_int_equal(out_len, 11);
    assert_memory_equal(out, "a\0b [IP_1]\0", 11);
    free(out);
    plm_redactor_free(r);
}

static void test_empty_input(void **state)
{
    (void)state;
    plm_redactor *r = new_redactor(NULL, 0);
    char *out;
    size_t out_len = 99;
    struct plm_redact_stats stats;
    assert_int_equal(plm_redact(r, "", 0, &out, &out_len, &stats), PLM_OK);
    assert_int_equal(out_len, 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(plm_redact(r, NULL, 0, &out, &out_len, NULL), PLM_OK);
    assert_int_equal(out_len, 0);
    free(out);
    assert_int_equal(plm_restore(r, NULL, 0, &out, &out_len), PLM_OK);
    assert_int_equal(out_len, 0);
    free(out);
    assert_int_equal(plm_redact(r, NULL, 5, &out, &out_len, NULL), PLM_ERR_ARG);
    plm_redactor_free(r);
}

static void test_terms(void **state)
{
    (void)state;
    const char *terms[] = {"Jane Roe", "Łukasz", "王小明"};
    plm_redactor *r = new_redactor(terms, 3);
    char *out = redact(r, "JANE  ROE, jane roe, Jane Roebuck, ŁUKASZ, łukasze, 我叫王小明。", NULL);
    assert_string_equal(out, "[TERM_1], [TERM_1], Jane Roebuck, [TERM_2], łukasze, 我叫[TERM_3]。");
    free(out);
    plm_redactor_free(r);

    const char *bad[] = {"ok", "  "};
    plm_redactor *none = NULL;
    assert_int_equal(plm_redactor_new(&(struct plm_redact_config){.terms = bad, .n_terms = 2}, &none), PLM_ERR_ARG);
    assert_null(none);
    const char *invalid[] = {"a\xff"};
    assert_int_equal(plm_redactor_new(&(struct plm_redact_config){.terms = invalid, .n_terms = 1}, &none),
                     PLM_ERR_ARG);
    assert_int_equal(plm_redactor_new(&(struct plm_redact_config){.n_terms = 1}, &none), PLM_ERR_ARG);
    assert_int_equal(plm_redactor_new(&(struct plm_redact_config){.types = 1u << 31}, &none), PLM_ERR_ARG);
}

static void test_type_mask(void **state)
{
    (void)state;
    struct plm_redact_config config = {.types = 1u << PLM_REDACT_EMAIL};
    plm_redactor *r;
    assert_int_equal(plm_redactor_new(&config, &r), PLM_OK);
    char *out = redact(r, "x@example.com 192.0.2.1", NULL);
    assert_string_equal(out, "[EMAIL_1] 192.0.2.1");
    free(out);
    plm_redactor_free(r);
}

/* ------------------------------------------------------- placeholders */

static void test_consistent_placeholders(void **state)
{
    (void)state;
    plm_redactor *r = new_redactor(NULL, 0);
    struct plm_redact_stats stats;
    char *first = redact(r, "Mail Jane@Example.com or bob@example.com, card 4111 1111 1111 1111.", &stats);
    assert_string_equal(first, "Mail [EMAIL_1] or [EMAIL_2], card [CARD_1].");
    assert_int_equal(stats.counts[PLM_REDACT_EMAIL], 2);
    assert_int_equal(stats.counts[PLM_REDACT_CARD], 1);
    assert_int_equal(stats.counts[PLM_REDACT_IP], 0);
    /* A later message: the same values (other spellings) keep their numbers. */
    char *second = redact(r, "jane@example.com again; 4111-1111-1111-1111; new carl@example.com", &stats);
    assert_string_equal(second, "[EMAIL_1] again; [CARD_1]; new [EMAIL_3]");
    assert_int_equal(stats.counts[PLM_REDACT_EMAIL], 2);

    char *restored;
    size_t restored_len;
    assert_int_equal(plm_restore(r, first, strlen(first), &restored, &restored_len), PLM_OK);
    /* The value as first seen comes back. */
    assert_string_equal(restored, "Mail Jane@Example.com or bob@example.com, card 4111 1111 1111 1111.");
    free(restored);
    free(first);
    free(second);
    plm_redactor_free(r);
}

/* "[EMAIL_1]" typed by the user is not a placeholder of ours: numbers up to
 * it are skipped, and restoring it leaves it as it was. */
static void test_literal_placeholders(void **state)
{
    (void)state;
    plm_redactor *r = new_redactor(NULL, 0);
    char *out = redact(r, "[EMAIL_1] [EMAIL_7] [IP_0] x@example.com", NULL);
    assert_string_equal(out, "[EMAIL_1] [EMAIL_7] [IP_0] [EMAIL_8]");
    char *restored;
    size_t n;
    assert_int_equal(plm_restore(r, out, strlen(out), &restored, &n), PLM_OK);
    assert_string_equal(restored, "[EMAIL_1] [EMAIL_7] [IP_0] x@example.com");
    free(restored);
    free(out);
    /* A huge literal number does not push ours past ten digits. */
    out = redact(r, "[EMAIL_9999999999] y@example.com", NULL);
    assert_string_equal(out, "[EMAIL_9999999999] [EMAIL_9]");
    free(out);
    plm_redactor_free(r);
}

/* ------------------------------------------------------- restoration */

static const char *const conversation =
    "Contact jane@example.com, +44 20 7946 0958 or card 4111 1111 1111 1111; key AKIAIOSFODNN7EXAMPLE.";
static const char *const answer =
    "[EMAIL_1] is [EMAIL_1]; call [PHONE_1]. [CARD_1][SECRET_1] [EMAIL_2] [EMAIL_ [EMAIL_01] [email_1] "
    "[[IP_1]] [SECRET_12345678901] [[[CARD_1]]] ends with [EMA";

static void collect(char **buffer, size_t *len, const char *bytes, size_t n)
{
    *buffer = realloc(*buffer, *len + n + 1);
    assert_non_null(*buffer);
    memcpy(*buffer + *len, bytes, n);
    *len += n;
    (*buffer)[*len] = '\0';
}

/* Feeds the answer cut at the given points, returns what came out. */
static char *restore_in_chunks(plm_restorer *restorer, const size_t *cuts, int n_cuts)
{
    size_t len = strlen(answer), from = 0, got_len = 0;
    char *got = NULL;
    collect(&got, &got_len, "", 0);
    const char *out;
    size_t out_len;
    for (int c = 0; c <= n_cuts; c++) {
        size_t to = c < n_cuts ? cuts[c] : len;
        assert_int_equal(plm_restorer_feed(restorer, answer + from, to - from, &out, &out_len), PLM_OK);
        collect(&got, &got_len, out, out_len);
        from = to;
    }
    assert_int_equal(plm_restorer_finish(restorer, &out, &out_len), PLM_OK);
    collect(&got, &got_len, out, out_len);
    return got;
}

static void test_streaming_restore(void **state)
{
    (void)state;
    plm_redactor *r = new_redactor(NULL, 0);
    char *redacted = redact(r, conversation, NULL);
    assert_string_equal(redacted, "Contact [EMAIL_1], [PHONE_1] or card [CARD_1]; key [SECRET_1].");
    free(redacted);

    char *whole;
    size_t whole_len;
    assert_int_equal(plm_restore(r, answer, strlen(answer), &whole, &whole_len), PLM_OK);
    assert_string_equal(whole,
                        "jane@example.com is jane@example.com; call +44 20 7946 0958. 4111 1111 1111 1111"
                        "AKIAIOSFODNN7EXAMPLE [EMAIL_2] [EMAIL_ [EMAIL_01] [email_1] [[IP_1]] [SECRET_12345678901] "
                        "[[4111 1111 1111 1111]] ends with [EMA");

    plm_restorer *restorer;
    assert_int_equal(plm_restorer_new(r, &restorer), PLM_OK);
    size_t len = strlen(answer);
    /* Every single cut, and every pair of cuts, the restorer reused. */
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b += 7) {
            size_t cuts[2] = {a, b};
            char *got = restore_in_chunks(restorer, cuts, 2);
            if (strcmp(got, whole) != 0)
                fail_msg("cuts at %zu and %zu: got '%s'", a, b, got);
            free(got);
        }
    }
    /* Byte by byte, and random cuts. */
    size_t every[512];
    for (size_t i = 0; i < len; i++)
        every[i] = i;
    char *got = restore_in_chunks(restorer, every, (int)len);
    assert_string_equal(got, whole);
    free(got);
    struct test_rng rng = {20240312};
    for (int round = 0; round < 500; round++) {
        size_t cuts[16];
        int n = (int)(rng_next(&rng) % 16);
        for (int i = 0; i < n; i++)
            cuts[i] = rng_next(&rng) % (len + 1);
        for (int i = 1; i < n; i++) /* sort */
            for (int k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
                size_t t = cuts[k];
                cuts[k] = cuts[k - 1];
                cuts[k - 1] = t;
            }
        got = restore_in_chunks(restorer, cuts, n);
        assert_string_equal(got, whole);
        free(got);
    }
    plm_restorer_free(restorer);
    free(whole);
    plm_redactor_free(r);
}

/* A placeholder handed out after the restorer was made is restored too. */
static void test_restorer_sees_new_values(void **state)
{
    (void)state;
    plm_redactor *r = new_redactor(NULL, 0);
    plm_restorer *restorer;
    assert_int_equal(plm_restorer_new(r, &restorer), PLM_OK);
    const char *out;
    size_t out_len;
    assert_int_equal(plm_restorer_feed(restorer, "to [EMAIL_", 10, &out, &out_len), PLM_OK);
    assert_int_equal(out_len, 3);
    char *redacted = redact(r, "z@example.com", NULL);
    free(redacted);
    assert_int_equal(plm_restorer_feed(restorer, "1]!", 3, &out, &out_len), PLM_OK);
    assert_int_equal(out_len, 14);
    assert_memory_equal(out, "z@example.com!", 14);
    assert_int_equal(plm_restorer_finish(restorer, &out, &out_len), PLM_OK);
    assert_int_equal(out_len, 0);
    plm_restorer_free(restorer);
    plm_redactor_free(r);
    plm_restorer_free(NULL);
    plm_redactor_free(NULL);
}

/* ---------------------------------------------------------- long input */

/* Texts that would make a scanner that restarts at every byte quadratic. */
static const char *const hostile_units[] = {
    "a@", "1 ", "1-", "::", "a:", "[", "[EMAIL_", "-----BEGIN RSA PRIVATE KEY-----\n", "4", "DE89 ",
    "https://", "password=", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "\xe2\x82", "(",
    "Jane Roe jane@example.com +44 20 7946 0958 192.0.2.1 ",
};

static double time_redaction(plm_redactor *r, const char *unit, size_t size)
{
    size_t n = strlen(unit);
    char *text = malloc(size + 1);
    assert_non_null(text);
    for (size_t i = 0; i < size; i++)
        text[i] = unit[i % n];
    text[size] = '\0';
    char *out;
    size_t out_len;
    double start = plm_seconds_now();
    assert_int_equal(plm_redact(r, text, size, &out, &out_len, NULL), PLM_OK);
    char *restored;
    size_t restored_len;
    assert_int_equal(plm_restore(r, out, out_len, &restored, &restored_len), PLM_OK);
    double seconds = plm_seconds_now() - start;
    assert_int_equal(restored_len, size); /* every value comes back */
    assert_memory_equal(restored, text, size);
    free(restored);
    free(out);
    free(text);
    return seconds;
}

static void test_long_input_is_linear(void **state)
{
    (void)state;
    const char *terms[] = {"Jane Roe", "aaaa"};
    plm_redactor *r = new_redactor(terms, 2);
    for (size_t u = 0; u < sizeof hostile_units / sizeof hostile_units[0]; u++) {
        double small = time_redaction(r, hostile_units[u], 64 << 10);
        double large = time_redaction(r, hostile_units[u], 1 << 20);
        /* 16 times the text; linear work takes about 16 times as long,
         * quadratic 256 times. The margin absorbs a busy machine. */
        if (large > 64 * small + 1.0)
            fail_msg("unit '%s': 64 KiB in %.4f s but 1 MiB in %.4f s", hostile_units[u], small, large);
    }
    plm_redactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_checksums),
        cmocka_unit_test(test_network_and_secrets),
        cmocka_unit_test(test_overlap_and_adjacency),
        cmocka_unit_test(test_utf8_and_invalid_bytes),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_terms),
        cmocka_unit_test(test_type_mask),
        cmocka_unit_test(test_consistent_placeholders),
        cmocka_unit_test(test_literal_placeholders),
        cmocka_unit_test(test_streaming_restore),
        cmocka_unit_test(test_restorer_sees_new_values),
        cmocka_unit_test(test_long_input_is_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
