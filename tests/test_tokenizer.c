/*
 * Tokenizer tests: llama.cpp's conformance vectors for a real SentencePiece
 * and a real GPT-2 vocabulary, round trips on random (also invalid) text, the
 * pre-tokenizer regexes on hand-checked strings, small vocabularies written
 * with the GGUF writer (merge order, special tokens, hostile metadata), and the
 * speed of encoding a megabyte.
 */
#include "test_util.h"

#include "pocketlm.h"
#include "core/mapped_file.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPM_VOCAB "models/gguf-vocab/ggml-vocab-llama-spm.gguf"
#define GPT2_VOCAB "models/gguf-vocab/ggml-vocab-gpt-2.gguf"

/* ---------------------------------------------------------------- helpers */

/* Set when a test skipped for want of the shared files: the program then
 * exits with PLM_TEST_SKIP (unless something failed), after still running
 * the tests that need nothing from there. */
static bool shared_missing;

static const char *need_shared(const char *relative)
{
    const char *path = shared_path(relative);
    if (!path)
        shared_missing = true;
    return path;
}

struct bytes {
    char *data;
    size_t len;
};

static struct plm_vocab *load_shared_vocab(const char *relative)
{
    const char *path = need_shared(relative);
    if (!path)
        return NULL;
    struct gguf_file *file;
    assert_int_equal(gguf_open(path, &file), PLM_OK);
    struct plm_vocab *vocab;
    int status = vocab_load(file, &vocab);
    if (status)
        fprintf(stderr, "vocab_load: %s\n", plm_last_error());
    assert_int_equal(status, PLM_OK);
    gguf_free(file); /* the vocabulary keeps its own copy */
    return vocab;
}

/* Concatenated pieces of the tokens; the result is NUL-terminated too. */
static struct bytes decode_all(const struct plm_vocab *vocab, const int32_t *ids, size_t n,
                               bool render_special)
{
    size_t capacity = 64, len = 0;
    char *text = malloc(capacity);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++) {
        int need = vocab_token_to_piece(vocab, ids[i], NULL, 0, render_special);
        assert_true(need >= 0);
        while (len + (size_t)need + 1 > capacity) {
            capacity *= 2;
            text = realloc(text, capacity);
            assert_non_null(text);
        }
        int got = vocab_token_to_piece(vocab, ids[i], text + len, capacity - len, render_special);
        assert_int_equal(got, need);
        len += (size_t)got;
    }
    text[len] = '\0';
    return (struct bytes){text, len};
}

static void encode(const struct plm_vocab *vocab, const char *text, size_t len, bool add_special,
                   bool parse_special, int32_t **ids, size_t *n)
{
    int status = vocab_encode(vocab, text, len, add_special, parse_special, ids, n);
    if (status)
        fprintf(stderr, "vocab_encode: %s\n", plm_last_error());
    assert_int_equal(status, PLM_OK);
    assert_non_null(*ids);
}

/* Encodes and compares with the expected ids, printing both on a mismatch. */
static void assert_encodes(const struct plm_vocab *vocab, const char *text, bool add_special,
                           bool parse_special, const int32_t *expected, size_t n_expected)
{
    int32_t *ids;
    size_t n;
    encode(vocab, text, strlen(text), add_special, parse_special, &ids, &n);
    bool same = n == n_expected && (n == 0 || memcmp(ids, expected, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "encoding '%s'\n  expected:", text);
        for (size_t i = 0; i < n_expected; i++)
            fprintf(stderr, " %d", expected[i]);
        fprintf(stderr, "\n  got:     ");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    assert_true(same);
}

#define ASSERT_ENCODES(vocab, text, add_special, parse_special, ...)                              \
    do {                                                                                          \
        const int32_t expected_[] = {__VA_ARGS__};                                                \
        assert_encodes(vocab, text, add_special, parse_special, expected_,                        \
                       sizeof expected_ / sizeof expected_[0]);                                   \
    } while (0)

/* decode(encode(text)) must give text back; SentencePiece adds one leading space. */
static void assert_round_trip(const struct plm_vocab *vocab, const char *text, size_t len,
                              bool space_prefix)
{
    int32_t *ids;
    size_t n;
    encode(vocab, text, len, false, false, &ids, &n);
    struct bytes back = decode_all(vocab, ids, n, false);
    size_t skip = space_prefix && len > 0 ? 1 : 0;
    bool same = back.len == len + skip && memcmp(back.data + skip, text, len) == 0 &&
                (!skip || back.data[0] == ' ');
    if (!same) {
        fprintf(stderr, "round trip of %zu bytes gave %zu bytes:\n  in: ", len, back.len);
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, "%02x", (unsigned char)text[i]);
        fprintf(stderr, "\n  out:");
        for (size_t i = 0; i < back.len; i++)
            fprintf(stderr, "%02x", (unsigned char)back.data[i]);
        fprintf(stderr, "\n");
    }
    free(back.data);
    free(ids);
    assert_true(same);
}

/* ------------------------------------------------- conformance vectors */

struct vectors {
    char *inp, *out; /* file contents, modified in place */
    char **texts;
    size_t *text_lens;
    char **lines;
    size_t count;
};

/* The .inp file holds the test strings, each followed by
 * "\n__ggml_vocab_test__\n" (so the separator's newlines are not part of the
 * strings); the .out file one line of space-separated ids per string. This is
 * how llama.cpp's test-tokenizer-0 reads them, with add_special and
 * parse_special both false. */
static bool read_vectors(const char *vocab_relative, struct vectors *v)
{
    char relative[512];
    snprintf(relative, sizeof relative, "%s.inp", vocab_relative);
    const char *path = need_shared(relative);
    if (!path)
        return false;
    size_t inp_len, out_len;
    assert_int_equal(read_whole_file(path, &v->inp, &inp_len), PLM_OK);
    snprintf(relative, sizeof relative, "%s.out", vocab_relative);
    path = need_shared(relative);
    assert_non_null(path);
    assert_int_equal(read_whole_file(path, &v->out, &out_len), PLM_OK);

    static const char SEP[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof SEP - 1;
    v->texts = calloc(inp_len + 1, sizeof *v->texts);
    v->text_lens = calloc(inp_len + 1, sizeof *v->text_lens);
    v->lines = calloc(out_len + 1, sizeof *v->lines);
    assert_true(v->texts && v->text_lens && v->lines);
    v->count = 0;
    for (size_t pos = 0; pos < inp_len;) {
        char *next = memmem(v->inp + pos, inp_len - pos, SEP, sep_len);
        size_t end = next ? (size_t)(next - v->inp) : inp_len;
        v->texts[v->count] = v->inp + pos;
        v->text_lens[v->count++] = end - pos;
        pos = next ? end + sep_len : inp_len;
    }
    size_t n_lines = 0;
    for (char *line = v->out; line < v->out + out_len;) {
        char *nl = memchr(line, '\n', (size_t)(v->out + out_len - line));
        if (nl)
            *nl = '\0';
        v->lines[n_lines++] = line;
        line = nl ? nl + 1 : v->out + out_len;
    }
    assert_int_equal(n_lines, v->count);
    return true;
}

static void free_vectors(struct vectors *v)
{
    free(v->inp), free(v->out), free(v->texts), free(v->text_lens), free(v->lines);
}

static size_t parse_ids(const char *line, int32_t *ids, size_t max)
{
    size_t n = 0;
    char *end;
    for (long id = strtol(line, &end, 10); end != line; id = strtol(line, &end, 10)) {
        assert_true(n < max);
        ids[n++] = (int32_t)id;
        line = end;
    }
    return n;
}

static void check_conformance(const char *vocab_relative, bool space_prefix)
{
    struct plm_vocab *vocab = load_shared_vocab(vocab_relative);
    struct vectors v;
    if (!vocab || !read_vectors(vocab_relative, &v)) {
        vocab_free(vocab);
        skip();
    }
    assert_true(v.count >= 30);
    int failures = 0;
    for (size_t t = 0; t < v.count; t++) {
        int32_t expected[1024];
        size_t n_expected = parse_ids(v.lines[t], expected, 1024);
        int32_t *ids;
        size_t n;
        encode(vocab, v.texts[t], v.text_lens[t], false, false, &ids, &n);
        if (n != n_expected || (n && memcmp(ids, expected, n * sizeof *ids) != 0)) {
            failures++;
            fprintf(stderr, "vector %zu '%.*s'\n  expected: %s\n  got:     ", t,
                    (int)v.text_lens[t], v.texts[t], v.lines[t]);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        free(ids);
        assert_round_trip(vocab, v.texts[t], v.text_lens[t], space_prefix);
    }
    free_vectors(&v);
    vocab_free(vocab);
    assert_int_equal(failures, 0);
}

static void test_conformance_spm(void **state)
{
    (void)state;
    check_conformance(SPM_VOCAB, true);
}

static void test_conformance_gpt2(void **state)
{
    (void)state;
    check_conformance(GPT2_VOCAB, false);
}

/* ------------------------------------------------------ random round trips */

/* Code point ranges the random text draws from: ASCII, whitespace, Latin and
 * Cyrillic (2 bytes), combining marks, general punctuation and CJK (3 bytes),
 * emoji and CJK extension B (4 bytes). */
static const uint32_t CHAR_RANGES[][2] = {
    {0x20, 0x7E},       {0x09, 0x0D},       {0xC0, 0x24F},   {0x400, 0x4FF},
    {0x300, 0x36F},     {0x2000, 0x206F},   {0x3000, 0x3000}, {0x4E00, 0x9FFF},
    {0x1F300, 0x1F64F}, {0x1F900, 0x1F9FF}, {0x20000, 0x2A6DF}, {0x30, 0x39},
};

static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Valid UTF-8 of up to max_chars characters (4 bytes each at most), with
 * runs of spaces and newlines mixed in. */
static size_t random_utf8(struct test_rng *rng, char *out, size_t max_chars)
{
    const size_t n_ranges = sizeof CHAR_RANGES / sizeof CHAR_RANGES[0];
    size_t n_chars = rng_next(rng) % (max_chars + 1), len = 0;
    while (n_chars > 0) {
        if (rng_next(rng) % 8 == 0) {
            char space = rng_next(rng) % 2 ? ' ' : '\n';
            for (size_t run = 1 + rng_next(rng) % 4; run > 0 && n_chars > 0; run--, n_chars--)
                out[len++] = space;
            continue;
        }
        const uint32_t *range = CHAR_RANGES[rng_next(rng) % n_ranges];
        uint32_t cp = range[0] + (uint32_t)(rng_next(rng) % (range[1] - range[0] + 1));
        len += put_utf8(cp, out + len);
        n_chars--;
    }
    return len;
}

static void test_round_trip_random_utf8(void **state)
{
    (void)state;
    struct plm_vocab *spm = load_shared_vocab(SPM_VOCAB);
    struct plm_vocab *gpt2 = load_shared_vocab(GPT2_VOCAB);
    if (!spm || !gpt2) {
        vocab_free(spm), vocab_free(gpt2);
        skip();
    }
    struct test_rng rng = {42};
    char text[4 * 200];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = random_utf8(&rng, text, 200);
        assert_round_trip(spm, text, len, true);
        assert_round_trip(gpt2, text, len, false);
    }
    vocab_free(spm);
    vocab_free(gpt2);
}

static void test_round_trip_whitespace_runs(void **state)
{
    (void)state;
    struct plm_vocab *spm = load_shared_vocab(SPM_VOCAB);
    struct plm_vocab *gpt2 = load_shared_vocab(GPT2_VOCAB);
    if (!spm || !gpt2) {
        vocab_free(spm), vocab_free(gpt2);
        skip();
    }
    static const char *const TEXTS[] = {
        " ", "  ", "\t", "\n", "\r\n", "\n\n\n\n", "   x   ", " \t \n \r\n  \v\f ",
        "a\u00A0b", /* no-break space */
        "\xE3\x80\x80\xE3\x80\x80", /* ideographic spaces */
        "                                                                          x",
    };
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
        assert_round_trip(spm, TEXTS[i], strlen(TEXTS[i]), true);
        assert_round_trip(gpt2, TEXTS[i], strlen(TEXTS[i]), false);
    }
    vocab_free(spm);
    vocab_free(gpt2);
}

/* Any bytes at all: stray continuation bytes, truncated and overlong
 * sequences, surrogates, NULs. Every byte comes back through byte fallback
 * (SentencePiece) or the byte alphabet (GPT-2). */
static void test_round_trip_invalid_bytes(void **state)
{
    (void)state;
    struct plm_vocab *spm = load_shared_vocab(SPM_VOCAB);
    struct plm_vocab *gpt2 = load_shared_vocab(GPT2_VOCAB);
    if (!spm || !gpt2) {
        vocab_free(spm), vocab_free(gpt2);
        skip();
    }
    static const char *const EDGES[] = {
        "\x80", "\xC3", "\xE2\x96", "\xF0\x9F\x98", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
        "\xFF\xFE", "a\0b",
    };
    for (size_t i = 0; i < sizeof EDGES / sizeof EDGES[0]; i++) {
        size_t len = i + 1 < sizeof EDGES / sizeof EDGES[0] ? strlen(EDGES[i]) : 3;
        assert_round_trip(spm, EDGES[i], len, true);
        assert_round_trip(gpt2, EDGES[i], len, false);
    }
    /* SentencePiece writes spaces as U+2581, so that character decodes as a
     * space there; byte-level BPE keeps it. */
    assert_round_trip(gpt2, "a\u2581b", 5, false);

    struct test_rng rng = {7};
    char text[300];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = rng_next(&rng) % sizeof text;
        for (size_t i = 0; i < len; i++) {
            text[i] = (char)rng_next(&rng);
            /* keep SentencePiece's space mark (E2 96 81) out of its input */
            if (i >= 2 && (unsigned char)text[i - 2] == 0xE2 &&
                (unsigned char)text[i - 1] == 0x96 && (unsigned char)text[i] == 0x81)
                text[i] = 'x';
        }
        assert_round_trip(spm, text, len, true);
        assert_round_trip(gpt2, text, len, false);
    }
    vocab_free(spm);
    vocab_free(gpt2);
}

/* ------------------------------------------- real vocabularies: behaviour */

static void test_spm_specials_and_flags(void **state)
{
    (void)state;
    struct plm_vocab *vocab = load_shared_vocab(SPM_VOCAB);
    if (!vocab)
        skip();
    assert_int_equal(vocab_n_tokens(vocab), 32000);
    assert_int_equal(vocab_bos(vocab), 1);
    assert_int_equal(vocab_eos(vocab), 2);
    assert_int_equal(vocab_eot(vocab), -1);
    assert_true(vocab_add_bos(vocab));
    assert_false(vocab_add_eos(vocab));
    assert_true(vocab_is_eog(vocab, 2));
    assert_false(vocab_is_eog(vocab, 1));
    assert_false(vocab_is_eog(vocab, -1));
    assert_false(vocab_is_eog(vocab, 1 << 30));
    assert_int_equal(vocab_token_type(vocab, 0), PLM_TOKEN_UNKNOWN);
    assert_int_equal(vocab_token_type(vocab, 1), PLM_TOKEN_CONTROL);
    assert_int_equal(vocab_token_type(vocab, 13), PLM_TOKEN_BYTE);
    assert_int_equal(vocab_token_type(vocab, -1), PLM_TOKEN_UNUSED);
    assert_int_equal(vocab_token_text(vocab, 32000).len, 0);
    assert_memory_equal(vocab_token_text(vocab, 2).ptr, "</s>", 4);
    assert_int_equal(vocab_find(vocab, "\xE2\x96\x81Hello", 8), 15043);
    assert_int_equal(vocab_find(vocab, "Hello!", 6), -1);

    /* "▁Hello" after BOS; "<s>" is only BOS with parse_special, and text
     * after a special token gets its own "▁". */
    ASSERT_ENCODES(vocab, "Hello", true, false, 1, 15043);
    ASSERT_ENCODES(vocab, "", true, false, 1);
    ASSERT_ENCODES(vocab, "<s>Hello</s>", false, true, 1, 15043, 2);
    ASSERT_ENCODES(vocab, "Hello<s>", true, true, 1, 15043, 1);
    ASSERT_ENCODES(vocab, "<unk>", false, true, 0);
    int32_t *ids;
    size_t n;
    encode(vocab, "", 0, false, false, &ids, &n);
    assert_int_equal(n, 0);
    free(ids);
    encode(vocab, "<s>", 3, false, false, &ids, &n);
    assert_true(n > 1); /* plain text without parse_special */
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 1);
    free(ids);
    assert_int_equal(vocab_encode(vocab, NULL, 5, false, false, &ids, &n), PLM_ERR_ARG);
    vocab_free(vocab);
}

static void test_gpt2_specials_and_flags(void **state)
{
    (void)state;
    struct plm_vocab *vocab = load_shared_vocab(GPT2_VOCAB);
    if (!vocab)
        skip();
    assert_int_equal(vocab_n_tokens(vocab), 50257);
    assert_int_equal(vocab_bos(vocab), 50256);
    assert_false(vocab_add_bos(vocab)); /* no add_bos_token in the file */
    assert_true(vocab_is_eog(vocab, 50256));
    /* 50256 is <|endoftext|>; "Hello" 15496, " world" 995 */
    ASSERT_ENCODES(vocab, "Hello world", true, false, 15496, 995);
    ASSERT_ENCODES(vocab, "<|endoftext|>Hello", false, true, 50256, 15496);
    ASSERT_ENCODES(vocab, "a<|endoftext|><|endoftext|>", false, true, 64, 50256, 50256);
    int32_t *ids;
    size_t n;
    encode(vocab, "<|endoftext|>", 13, false, false, &ids, &n);
    assert_true(n > 1); /* plain text without parse_special */
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 50256);
    free(ids);
    vocab_free(vocab);
}

static void test_decode_pieces(void **state)
{
    (void)state;
    struct plm_vocab *spm = load_shared_vocab(SPM_VOCAB);
    struct plm_vocab *gpt2 = load_shared_vocab(GPT2_VOCAB);
    if (!spm || !gpt2) {
        vocab_free(spm), vocab_free(gpt2);
        skip();
    }
    char buf[64];
    assert_int_equal(vocab_token_to_piece(spm, 15043, buf, sizeof buf, false), 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_int_equal(vocab_token_to_piece(spm, 13, buf, sizeof buf, false), 1); /* <0x0A> */
    assert_int_equal(buf[0], '\n');
    assert_int_equal(vocab_token_to_piece(spm, 1, buf, sizeof buf, false), 0);
    assert_int_equal(vocab_token_to_piece(spm, 1, buf, sizeof buf, true), 3);
    assert_memory_equal(buf, "<s>", 3);
    assert_int_equal(vocab_token_to_piece(spm, 0, buf, sizeof buf, true), 5);
    assert_memory_equal(buf, "<unk>", 5);

    /* A short buffer gets what fits and the full length back. */
    memset(buf, '#', sizeof buf);
    assert_int_equal(vocab_token_to_piece(spm, 15043, buf, 3, false), 6);
    assert_memory_equal(buf, " He#", 4);
    assert_int_equal(vocab_token_to_piece(spm, 15043, NULL, 0, false), 6);

    assert_int_equal(vocab_token_to_piece(spm, -1, buf, sizeof buf, false), PLM_ERR_ARG);
    assert_int_equal(vocab_token_to_piece(spm, 32000, buf, sizeof buf, false), PLM_ERR_ARG);
    assert_int_equal(vocab_token_to_piece(gpt2, 50257, buf, sizeof buf, false), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "50257"));

    assert_int_equal(vocab_token_to_piece(gpt2, 995, buf, sizeof buf, false), 6); /* "Ġworld" */
    assert_memory_equal(buf, " world", 6);
    assert_int_equal(vocab_token_to_piece(gpt2, 198, buf, sizeof buf, false), 1); /* "Ċ" */
    assert_int_equal(buf[0], '\n');
    assert_int_equal(vocab_token_to_piece(gpt2, 50256, buf, sizeof buf, false), 0);
    assert_int_equal(vocab_token_to_piece(gpt2, 50256, buf, sizeof buf, true), 13);

    /* Every token of both vocabularies decodes without trouble. */
    for (int32_t id = 0; id < vocab_n_tokens(spm); id++)
        assert_true(vocab_token_to_piece(spm, id, buf, sizeof buf, true) >= 0);
    for (int32_t id = 0; id < vocab_n_tokens(gpt2); id++)
        assert_true(vocab_token_to_piece(gpt2, id, buf, sizeof buf, true) >= 0);
    /* Every byte of the GPT-2 alphabet decodes to its byte: 256 tokens, 256 bytes. */
    bool seen[256] = {false};
    for (int32_t id = 0; id < 256; id++) {
        assert_int_equal(vocab_token_to_piece(gpt2, id, buf, sizeof buf, false), 1);
        seen[(unsigned char)buf[0]] = true;
    }
    for (int b = 0; b < 256; b++)
        assert_true(seen[b]);
    vocab_free(spm);
    vocab_free(gpt2);
}

/* ------------------------------------------------------- pre-tokenizers */

struct split_case {
    enum pretokenizer rules;
    const char *text;
    const char *pieces[20]; /* NULL-terminated */
};

/* Checked by hand against the regexes (and Python's `regex` module). */
static const struct split_case SPLITS[] = {
    {PRETOK_GPT2, "Hello world123 4567\n\n  x",
     {"Hello", " world", "123", " 4567", "\n\n ", " x"}},
    {PRETOK_LLAMA3, "Hello world123 4567\n\n  x",
     {"Hello", " world", "123", " ", "456", "7", "\n\n", " ", " x"}},
    {PRETOK_QWEN2, "Hello world123 4567\n\n  x",
     {"Hello", " world", "1", "2", "3", " ", "4", "5", "6", "7", "\n\n", " ", " x"}},
    {PRETOK_SMOLLM, "Hello world123 4567\n\n  x",
     {"Hello", " world", "1", "2", "3", " ", "4", "5", "6", "7", "\n\n ", " x"}},
    {PRETOK_GPT2, "I'M can't 'Ll 're'VE",
     {"I", "'", "M", " can", "'t", " '", "Ll", " '", "re", "'", "VE"}},
    {PRETOK_LLAMA3, "I'M can't 'Ll 're'VE",
     {"I", "'M", " can", "'t", " '", "Ll", " '", "re", "'VE"}},
    {PRETOK_GPT2, "a!!\n\nb  ", {"a", "!!", "\n", "\n", "b", "  "}},
    {PRETOK_LLAMA3, "a!!\n\nb  ", {"a", "!!\n\n", "b", "  "}},
    {PRETOK_GPT2, "!Hello  world\t\tfoo", {"!", "Hello", " ", " world", "\t", "\t", "foo"}},
    {PRETOK_LLAMA3, "!Hello  world\t\tfoo", {"!Hello", " ", " world", "\t", "\tfoo"}},
    {PRETOK_GPT2, "x \r\n  y\n", {"x", " \r\n ", " y", "\n"}},
    {PRETOK_LLAMA3, "x \r\n  y\n", {"x", " \r\n", " ", " y", "\n"}},
    {PRETOK_LLAMA3, "3.14159 and 1,000,000",
     {"3", ".", "141", "59", " and", " ", "1", ",", "000", ",", "000"}},
    {PRETOK_SMOLLM, "3.14 and 1,0",
     {"3", ".", "1", "4", " and", " ", "1", ",", "0"}},
    /* no-break spaces are \s but not the optional ' ' of " ?\p{L}+" */
    {PRETOK_GPT2, "\xC2\xA0\xC2\xA0" "a", {"\xC2\xA0", "\xC2\xA0", "a"}},
    {PRETOK_LLAMA3, "\xC2\xA0\xC2\xA0" "a", {"\xC2\xA0", "\xC2\xA0" "a"}},
    /* letters and numbers beyond ASCII: Arabic-Indic digits, a Roman numeral (Nl) */
    {PRETOK_GPT2, "na\u00EFve caf\u00E9 \u65E5\u672C\u0661\u0662\u0663\u0664 \u216B",
     {"na\u00EFve", " caf\u00E9", " \u65E5\u672C", "\u0661\u0662\u0663\u0664", " \u216B"}},
    {PRETOK_QWEN2, "\u65E5\u0661\u0662 \u216B", {"\u65E5", "\u0661", "\u0662", " ", "\u216B"}},
    /* invalid bytes are single "other" characters */
    {PRETOK_GPT2, "ab\xFF\xFE" "cd \x80", {"ab", "\xFF\xFE", "cd", " \x80"}},
    {PRETOK_LLAMA3, "ab\xFF\xFE" "cd \x80", {"ab", "\xFF\xFE", "cd", " \x80"}},
    {PRETOK_LLAMA3, "", {NULL}},
};

static void test_pretokenizer_splits(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof SPLITS / sizeof SPLITS[0]; c++) {
        const struct split_case *sc = &SPLITS[c];
        size_t len = strlen(sc->text), *ends, n;
        assert_int_equal(pretokenize(sc->rules, sc->text, len, &ends, &n), PLM_OK);
        size_t expected = 0;
        while (sc->pieces[expected])
            expected++;
        bool same = n == expected;
        for (size_t i = 0, start = 0; same && i < n; start = ends[i++])
            same = ends[i] - start == strlen(sc->pieces[i]) &&
                   memcmp(sc->text + start, sc->pieces[i], ends[i] - start) == 0;
        if (!same) {
            fprintf(stderr, "case %zu (rules %d) split into %zu pieces:", c, sc->rules, n);
            for (size_t i = 0, start = 0; i < n; start = ends[i++])
                fprintf(stderr, " [%.*s]", (int)(ends[i] - start), sc->text + start);
            fprintf(stderr, "\n");
        }
        free(ends);
        assert_true(same);
    }
}

/* Pieces always tile the input, whatever the bytes. */
static void test_pretokenizer_covers_random_bytes(void **state)
{
    (void)state;
    struct test_rng rng = {99};
    char text[512];
    const enum pretokenizer all[] = {PRETOK_GPT2, PRETOK_LLAMA3, PRETOK_QWEN2, PRETOK_SMOLLM};
    for (int trial = 0; trial < 200; trial++) {
        size_t len = 1 + rng_next(&rng) % sizeof text;
        for (size_t i = 0; i < len; i++)
            text[i] = trial % 2 ? (char)rng_next(&rng) : " \n\t'aZ9.\xC3\xA9"[rng_next(&rng) % 11];
        for (size_t r = 0; r < 4; r++) {
            size_t *ends, n;
            assert_int_equal(pretokenize(all[r], text, len, &ends, &n), PLM_OK);
            assert_true(n >= 1);
            for (size_t i = 0; i < n; i++)
                assert_true(ends[i] > (i ? ends[i - 1] : 0));
            assert_int_equal(ends[n - 1], len);
            free(ends);
        }
    }
}

/* ------------------------------------------- small vocabularies in memory */

/* What goes into a test GGUF; NULL / 0 leave a key out. */
struct vocab_spec {
    const char *model;
    const char *pre;
    const char *const *tokens;
    size_t n_tokens;
    const int32_t *types;
    size_t n_types;
    const float *scores;
    size_t n_scores;
    const char *const *merges;
    size_t n_merges;
    int64_t bos, eos; /* < -1: absent */
    int add_bos;      /* -1: absent */
};

#define NO_ID (-2)

static int load_spec(const struct vocab_spec *spec, struct plm_vocab **vocab)
{
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    if (spec->model)
        assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", spec->model), PLM_OK);
    if (spec->pre)
        assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.pre", spec->pre), PLM_OK);
    assert_int_equal(gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", spec->tokens, NULL,
                                               spec->n_tokens),
                     PLM_OK);
    if (spec->types)
        assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32,
                                               spec->types, spec->n_types),
                         PLM_OK);
    if (spec->scores)
        assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                                               spec->scores, spec->n_scores),
                         PLM_OK);
    if (spec->merges)
        assert_int_equal(gguf_writer_set_str_array(w, "tokenizer.ggml.merges", spec->merges,
                                                   NULL, spec->n_merges),
                         PLM_OK);
    if (spec->bos >= -1)
        assert_int_equal(gguf_writer_set_i32(w, "tokenizer.ggml.bos_token_id", (int32_t)spec->bos),
                         PLM_OK);
    if (spec->eos >= -1)
        assert_int_equal(gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", (int32_t)spec->eos),
                         PLM_OK);
    if (spec->add_bos >= 0)
        assert_int_equal(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", spec->add_bos),
                         PLM_OK);
    const char *path = temp_path("vocab.gguf");
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);
    struct gguf_file *file;
    assert_int_equal(gguf_open(path, &file), PLM_OK);
    int status = vocab_load(file, vocab);
    if (status)
        fprintf(stderr, "(expected?) vocab_load: %s\n", plm_last_error());
    gguf_free(file);
    remove(path);
    return status;
}

/* GPT-2's byte alphabet, written independently of bpe.c: the printable
 * Latin-1 bytes stand for themselves, the rest take 256, 257, ... in order. */
static void byte_level_char(int byte, char out[3])
{
    bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
                     (byte >= 0xAE && byte <= 0xFF);
    int cp = byte;
    if (!printable) {
        cp = 256;
        for (int b = 0; b < byte; b++)
            cp += !((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF));
    }
    memset(out, 0, 3);
    if (cp < 0x80) {
        out[0] = (char)cp;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
    }
}

/* A byte-level vocabulary: the 256 byte characters, then EXTRA. */
static const char *const EXTRA[] = {
    "he", "ll", "hell", "hello", "\xC4\xA0w", "or", "\xC4\xA0wor", "ld", "\xC4\xA0world",
    "xyz", "el", "<|eot_id|>", "<tool>", "<tool>x",
};
enum { ID_HE = 256, ID_LL, ID_HELL, ID_HELLO, ID_SPACE_W, ID_OR, ID_SPACE_WOR, ID_LD,
       ID_SPACE_WORLD, ID_XYZ, ID_EL, ID_EOT, ID_TOOL, ID_TOOL_X, N_BYTE_LEVEL };
/* "e l" comes last: "hel" must merge "h e" first, and then "he l" does not exist. */
static const char *const MERGES[] = {
    "h e", "l l", "he ll", "hell o", "\xC4\xA0 w", "o r", "\xC4\xA0w or", "l d", "\xC4\xA0wor ld",
    "e l",
    "x", "", " ", "q q", "he zz", /* malformed or not tokens: ignored */
};

static char byte_chars[256][3];
static const char *byte_level_tokens[N_BYTE_LEVEL];
static int32_t byte_level_types[N_BYTE_LEVEL];

static int load_byte_level(const char *pre, struct plm_vocab **vocab)
{
    for (int b = 0; b < 256; b++) {
        byte_level_char(b, byte_chars[b]);
        byte_level_tokens[b] = byte_chars[b];
        byte_level_types[b] = PLM_TOKEN_NORMAL;
    }
    for (int i = 256; i < N_BYTE_LEVEL; i++) {
        byte_level_tokens[i] = EXTRA[i - 256];
        byte_level_types[i] = PLM_TOKEN_NORMAL;
    }
    byte_level_types[ID_EOT] = PLM_TOKEN_CONTROL;
    byte_level_types[ID_TOOL] = PLM_TOKEN_USER_DEFINED;
    byte_level_types[ID_TOOL_X] = PLM_TOKEN_USER_DEFINED;
    struct vocab_spec spec = {"gpt2", pre, byte_level_tokens, N_BYTE_LEVEL, byte_level_types,
                              N_BYTE_LEVEL, NULL, 0, MERGES, sizeof MERGES / sizeof MERGES[0],
                              NO_ID, ID_EOT, -1};
    return load_spec(&spec, vocab);
}

static void test_byte_level_merges(void **state)
{
    (void)state;
    struct plm_vocab *vocab;
    assert_int_equal(load_byte_level("llama-bpe", &vocab), PLM_OK);
    assert_true(vocab_add_bos(vocab) == false); /* Llama 3 default, but there is no BOS */
    ASSERT_ENCODES(vocab, "hello world", false, false, ID_HELLO, ID_SPACE_WORLD);
    /* rank order: "h e" (0) beats "e l" (9), and nothing merges "he" + "l" */
    ASSERT_ENCODES(vocab, "hel", false, false, ID_HE, 'l'); /* byte b is token b here */
    ASSERT_ENCODES(vocab, "el", false, false, ID_EL);
    /* ignore_merges: "xyz" has no merges but is a whole token */
    ASSERT_ENCODES(vocab, "xyz", false, false, ID_XYZ);
    /* user-defined tokens are always matched, control ones with parse_special;
     * longest first: "<tool>x" beats "<tool>" */
    ASSERT_ENCODES(vocab, "<tool>x<tool>", false, false, ID_TOOL_X, ID_TOOL);
    ASSERT_ENCODES(vocab, "hello<|eot_id|>", false, true, ID_HELLO, ID_EOT);
    assert_true(vocab_is_eog(vocab, ID_EOT));
    assert_false(vocab_is_eog(vocab, ID_HELLO));
    char buf[16];
    assert_int_equal(vocab_token_to_piece(vocab, ID_TOOL, buf, sizeof buf, false), 6);
    assert_int_equal(vocab_token_to_piece(vocab, ID_EOT, buf, sizeof buf, false), 0);
    assert_round_trip(vocab, "hello\xFF world\n\n<|eot_id|>", 25, false);
    vocab_free(vocab);

    /* The same regex without ignore_merges spells "xyz" byte by byte. */
    assert_int_equal(load_byte_level("dbrx", &vocab), PLM_OK);
    ASSERT_ENCODES(vocab, "xyz", false, false, 'x', 'y', 'z');
    vocab_free(vocab);
}

/* A SentencePiece vocabulary without byte tokens. */
static const char *const SPM_TOKENS[] = {
    "<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "ba", "\u2581a", "<s>b",
};
static const int32_t SPM_TYPES[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 3};
static const float SPM_SCORES[] = {0, 0, 0, -1, -2, -2, -3, -3, -1, 5};

static void test_spm_merges_and_unknown(void **state)
{
    (void)state;
    struct vocab_spec spec = {"llama", NULL, SPM_TOKENS, 10, SPM_TYPES, 10, SPM_SCORES, 10,
                              NULL, 0, NO_ID, NO_ID, -1};
    struct plm_vocab *vocab;
    assert_int_equal(load_spec(&spec, &vocab), PLM_OK);
    assert_int_equal(vocab_bos(vocab), 1); /* SentencePiece defaults */
    assert_int_equal(vocab_eos(vocab), 2);
    /* "▁aba": "▁a" (-1) merges first, then "ba" (-3) */
    ASSERT_ENCODES(vocab, "aba", false, false, 8, 7);
    /* "▁a b a b": "ba" and "ab" tie at -3, the leftmost pair wins */
    ASSERT_ENCODES(vocab, "abab", false, false, 8, 7, 5);
    /* no byte tokens: an unknown character is one <unk> */
    ASSERT_ENCODES(vocab, "a\xC3\xA9" "b", false, false, 8, 0, 5);
    /* control tokens never come out of merges ("<s>b" has the best score) */
    int32_t *ids;
    size_t n;
    encode(vocab, "<s>b", 4, false, false, &ids, &n);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 9);
    free(ids);
    vocab_free(vocab);
}

static void expect_load_error(const struct vocab_spec *spec, int status, const char *message)
{
    struct plm_vocab *vocab = (struct plm_vocab *)1;
    assert_int_equal(load_spec(spec, &vocab), status);
    assert_null(vocab);
    if (!strstr(plm_last_error(), message))
        fprintf(stderr, "message '%s' lacks '%s'\n", plm_last_error(), message);
    assert_non_null(strstr(plm_last_error(), message));
}

static void test_rejects_bad_metadata(void **state)
{
    (void)state;
    const struct vocab_spec good = {"llama", NULL, SPM_TOKENS, 10, SPM_TYPES, 10, SPM_SCORES, 10,
                                    NULL, 0, NO_ID, NO_ID, -1};
    struct vocab_spec spec = good;
    spec.n_tokens = 0, spec.n_types = 0, spec.n_scores = 0;
    expect_load_error(&spec, PLM_ERR_FORMAT, "0 tokens");
    spec = good, spec.n_scores = 9;
    expect_load_error(&spec, PLM_ERR_FORMAT, "tokenizer.ggml.scores has 9 entries");
    static const int32_t eleven_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    spec = good, spec.types = eleven_types, spec.n_types = 11;
    expect_load_error(&spec, PLM_ERR_FORMAT, "tokenizer.ggml.token_type has 11 entries");
    spec = good, spec.bos = 10;
    expect_load_error(&spec, PLM_ERR_FORMAT, "bos_token_id");
    spec = good, spec.eos = -1;
    expect_load_error(&spec, PLM_ERR_FORMAT, "eos_token_id");
    spec = good, spec.model = NULL;
    expect_load_error(&spec, PLM_ERR_FORMAT, "tokenizer.ggml.model is missing");
    spec = good, spec.model = "bert";
    expect_load_error(&spec, PLM_ERR_UNSUPPORTED, "'bert'");
    static const int32_t bad_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 9};
    spec = good, spec.types = bad_types;
    expect_load_error(&spec, PLM_ERR_FORMAT, "token 9 has type 9");

    /* byte-level: merges required, pre-tokenizer known, BOS present when added */
    spec = good, spec.model = "gpt2", spec.types = NULL, spec.scores = NULL;
    expect_load_error(&spec, PLM_ERR_FORMAT, "tokenizer.ggml.merges is missing");
    spec.merges = MERGES, spec.n_merges = 2;
    spec.pre = "no-such-regex";
    expect_load_error(&spec, PLM_ERR_UNSUPPORTED, "'no-such-regex'");
    spec.pre = "qwen2", spec.add_bos = 1;
    expect_load_error(&spec, PLM_ERR_FORMAT, "no BOS token");
    spec.bos = 1;
    struct plm_vocab *vocab;
    assert_int_equal(load_spec(&spec, &vocab), PLM_OK);
    ASSERT_ENCODES(vocab, "ab", true, false, 1, 4, 5); /* no merge rule for "a b" */
    /* bytes without a character token and no <unk> to stand in are dropped */
    ASSERT_ENCODES(vocab, "a\xFFz", false, false, 4);
    vocab_free(vocab);
}

/* A GGUF whose token list is not a string array. */
static void test_rejects_tokens_of_wrong_type(void **state)
{
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    const uint32_t numbers[] = {1, 2, 3};
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), PLM_OK);
    assert_int_equal(
        gguf_writer_set_array(w, "tokenizer.ggml.tokens", GGUF_TYPE_UINT32, numbers, 3), PLM_OK);
    const char *path = temp_path("bad-vocab.gguf");
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);
    struct gguf_file *file;
    assert_int_equal(gguf_open(path, &file), PLM_OK);
    struct plm_vocab *vocab;
    assert_int_equal(vocab_load(file, &vocab), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "not a string array"));
    gguf_free(file);
    remove(path);
}

/* ------------------------------------------------------------ performance */

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* About 1.3 MB of WikiText must take seconds at most (a quadratic merge loop
 * would take hours); prints the time, and checks the round trip. */
static void test_encode_megabyte(void **state)
{
    (void)state;
    const char *path = need_shared("data/wikitext-2-raw/wiki.test.raw");
    if (!path)
        skip();
    char *text;
    size_t len;
    assert_int_equal(read_whole_file(path, &text, &len), PLM_OK);
    struct plm_vocab *spm = load_shared_vocab(SPM_VOCAB);
    struct plm_vocab *gpt2 = load_shared_vocab(GPT2_VOCAB);
    if (!spm || !gpt2) {
        vocab_free(spm), vocab_free(gpt2), free(text);
        skip();
    }
    struct plm_vocab *vocabs[] = {spm, gpt2};
    const char *names[] = {"llama-spm", "gpt-2"};
    for (int v = 0; v < 2; v++) {
        int32_t *ids;
        size_t n;
        double start = seconds_now();
        encode(vocabs[v], text, len, false, false, &ids, &n);
        double elapsed = seconds_now() - start;
        printf("encoded %zu bytes with %s into %zu tokens in %.3f s\n", len, names[v], n, elapsed);
        assert_true(elapsed < 30.0);
        assert_true(n > len / 8 && n < len);
        struct bytes back = decode_all(vocabs[v], ids, n, false);
        size_t skip_space = v == 0;
        assert_int_equal(back.len, len + skip_space);
        assert_memory_equal(back.data + skip_space, text, len);
        free(back.data);
        free(ids);
    }
    /* Without newlines SentencePiece has no segment boundaries: the whole
     * text is one word for the merge queue. */
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\r' || text[i] == '\n')
            text[i] = ' ';
    int32_t *ids;
    size_t n;
    double start = seconds_now();
    encode(spm, text, len, false, false, &ids, &n);
    double elapsed = seconds_now() - start;
    printf("encoded %zu bytes without newlines with llama-spm into %zu tokens in %.3f s\n", len, n,
           elapsed);
    assert_true(elapsed < 30.0);
    free(ids);
    free(text);
    vocab_free(spm);
    vocab_free(gpt2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conformance_spm),
        cmocka_unit_test(test_conformance_gpt2),
        cmocka_unit_test(test_round_trip_random_utf8),
        cmocka_unit_test(test_round_trip_whitespace_runs),
        cmocka_unit_test(test_round_trip_invalid_bytes),
        cmocka_unit_test(test_spm_specials_and_flags),
        cmocka_unit_test(test_gpt2_specials_and_flags),
        cmocka_unit_test(test_decode_pieces),
        cmocka_unit_test(test_pretokenizer_splits),
        cmocka_unit_test(test_pretokenizer_covers_random_bytes),
        cmocka_unit_test(test_byte_level_merges),
        cmocka_unit_test(test_spm_merges_and_unknown),
        cmocka_unit_test(test_rejects_bad_metadata),
        cmocka_unit_test(test_rejects_tokens_of_wrong_type),
        cmocka_unit_test(test_encode_megabyte),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed == 0 && shared_missing ? PLM_TEST_SKIP : failed;
}
