/*
 * Hostile GGUF input: a valid file made by the writer is truncated, patched
 * field by field and bit-flipped. Every broken variant must fail with
 * PLM_ERR_FORMAT and a message naming the problem; nothing may crash or read
 * out of bounds (each variant is parsed from a buffer of exactly its size, so
 * ASan catches any overread).
 */
#include "test_util.h"

#include "core/error.h"
#include "core/mapped_file.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "tensor/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The valid file every test starts from, and where its fields are. */
static uint8_t *base;
static size_t base_size;

/* Tensor data: tensor_a F32 [8, 2] (64 bytes), tensor_b Q8_0 [32, 2] (68 bytes),
 * tensor_c F16 [3] (6 bytes, then padding to the end of the file). Keys and
 * names of equal length can be renamed into each other to make duplicates. */
static int make_base_file(void **state)
{
    (void)state;
    static uint8_t data[256];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 1);
    const float scores[] = {0.0f, -1.0f, -2.0f, -3.0f};
    const char *tokens[] = {"<s>", "", "hello"};
    const int64_t ne_a[2] = {8, 2}, ne_b[2] = {32, 2}, ne_c[1] = {3};

    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "test");
    gguf_writer_set_u32(w, "general.alignment", 32);
    gguf_writer_set_u32(w, "test.one", 1);
    gguf_writer_set_bool(w, "test.two", true);
    gguf_writer_set_array(w, "test.scores", GGUF_TYPE_FLOAT32, scores, 4);
    gguf_writer_set_str_array(w, "test.tokens", tokens, NULL, 3);
    gguf_writer_add_tensor(w, "tensor_a", PLM_TYPE_F32, ne_a, 2, data);
    gguf_writer_add_tensor(w, "tensor_b", PLM_TYPE_Q8_0, ne_b, 2, data);
    gguf_writer_add_tensor(w, "tensor_c", PLM_TYPE_F16, ne_c, 1, data);
    const char *path = temp_path("malformed-base.gguf");
    int status = gguf_writer_write(w, path);
    gguf_writer_free(w);
    if (status != PLM_OK) {
        fprintf(stderr, "writing the base file: %s\n", plm_last_error());
        return -1;
    }
    status = read_whole_file(path, (char **)&base, &base_size);
    unlink(path);
    return status == PLM_OK ? 0 : -1;
}

static int free_base_file(void **state)
{
    (void)state;
    free(base);
    return 0;
}

/* Offset of the byte just after the first occurrence of text in the base file. */
static size_t after(const char *text)
{
    const uint8_t *found = memmem(base, base_size, text, strlen(text));
    if (!found)
        fail_msg("'%s' not in the base file", text);
    return (size_t)(found - base) + strlen(text);
}

/* Offset of the first byte of text's length prefix (a GGUF string starts there). */
static size_t string_start(const char *text) { return after(text) - strlen(text) - 8; }

/* Where tensor `name`'s info fields are: n_dims, ne[], type, offset. */
static size_t n_dims_at(const char *name) { return after(name); }
static size_t ne_at(const char *name, int d) { return after(name) + 4 + 8 * (size_t)d; }
static size_t type_at(const char *name, int n_dims) { return ne_at(name, n_dims); }
static size_t offset_at(const char *name, int n_dims) { return ne_at(name, n_dims) + 4; }

static uint8_t *copy_of(const uint8_t *bytes, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, size);
    return copy;
}

static void put_le(uint8_t *p, uint64_t value, size_t size)
{
    for (size_t i = 0; i < size; i++)
        p[i] = (uint8_t)(value >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, size_t size)
{
    uint64_t value = 0;
    for (size_t i = 0; i < size; i++)
        value |= (uint64_t)p[i] << (8 * i);
    return value;
}

/* Parses bytes (copied to an exactly sized buffer) and expects a failure with
 * this status whose message contains `expected` (any message if NULL). */
static void expect_failure_status(const uint8_t *bytes, size_t size, int expected_status,
                                  const char *expected)
{
    uint8_t *copy = copy_of(bytes, size);
    struct gguf_file *file = (struct gguf_file *)1;
    int status = gguf_parse(copy, size, &file);
    const char *message = plm_last_error();
    if (status != expected_status)
        fail_msg("expected status %d, got %d (%s)", expected_status, status, message);
    assert_null(file);
    assert_true(strlen(message) > 0);
    assert_null(strchr(message, '\n'));
    if (expected && !strstr(message, expected))
        fail_msg("message '%s' does not mention '%s'", message, expected);
    free(copy);
}

static void expect_failure(const uint8_t *bytes, size_t size, const char *expected)
{
    expect_failure_status(bytes, size, PLM_ERR_FORMAT, expected);
}

/* The base file with `size` bytes at `offset` replaced by value; must fail. */
static void expect_patch_fails(size_t offset, uint64_t value, size_t size, const char *expected)
{
    uint8_t *patched = copy_of(base, base_size);
    put_le(patched + offset, value, size);
    expect_failure(patched, base_size, expected);
    free(patched);
}

/* -------------------------------------------------------------------- tests */

static void test_base_file_is_valid(void **state)
{
    (void)state;
    struct gguf_file *file;
    if (gguf_parse(base, base_size, &file) != PLM_OK)
        fail_msg("%s", plm_last_error());
    assert_int_equal(file->n_kv, 6);
    assert_int_equal(file->n_tensors, 3);
    assert_int_equal(gguf_find_tensor(file, "tensor_b")->nbytes, 68);
    /* The field locators agree with the parser. */
    assert_int_equal(get_le(base + type_at("tensor_b", 2), 4), PLM_TYPE_Q8_0);
    assert_int_equal(get_le(base + offset_at("tensor_c", 1), 8), gguf_find_tensor(file, "tensor_c")->offset);
    gguf_free(file);
}

static void test_truncation_at_every_offset(void **state)
{
    (void)state;
    struct gguf_file *file;
    assert_int_equal(gguf_parse(base, base_size, &file), PLM_OK);
    /* The file may end anywhere after the last tensor's data: its padding is optional. */
    const struct gguf_tensor *last = gguf_find_tensor(file, "tensor_c");
    size_t required = (size_t)(file->data_offset + last->offset + last->nbytes);
    gguf_free(file);
    assert_true(required < base_size);

    for (size_t size = 0; size < base_size; size++) {
        if (size < required) {
            expect_failure(base, size, NULL);
        } else {
            uint8_t *copy = copy_of(base, size);
            if (gguf_parse(copy, size, &file) != PLM_OK)
                fail_msg("truncated to %zu: %s", size, plm_last_error());
            gguf_free(file);
            free(copy);
        }
    }
    expect_failure(base, 3, "needs 4 bytes at offset 0");
    expect_failure(base, required - 1, "extends past the end of the file");
}

static void test_bad_magic_and_version(void **state)
{
    (void)state;
    for (size_t i = 0; i < 4; i++)
        expect_patch_fails(i, 'X', 1, "not a GGUF file");
    expect_patch_fails(4, 1, 4, "version 1 is not supported");
    expect_patch_fails(4, 0, 4, "version 0");
    expect_patch_fails(4, 4, 4, "version 4");
    expect_patch_fails(4, 0xFFFFFFFFu, 4, "version 4294967295");
    expect_patch_fails(4, 0x03000000u, 4, "big-endian");
}

static void test_huge_counts(void **state)
{
    (void)state;
    const uint64_t huge[] = {UINT64_MAX, 1ull << 63, 1ull << 32, 1ull << 59, base_size};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        expect_patch_fails(8, huge[i], 8, "tensors, more than");
        expect_patch_fails(16, huge[i], 8, "key/values, more than");
    }
    /* Counts that fit the file size but not the contents: read past the end. */
    expect_patch_fails(8, 4, 8, NULL);
    expect_patch_fails(16, 7, 8, NULL);
}

static void test_huge_string_lengths(void **state)
{
    (void)state;
    const uint64_t lengths[] = {UINT64_MAX, UINT64_MAX - 7, 1ull << 63, base_size};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        expect_patch_fails(string_start("test.one"), lengths[i], 8, "runs past the end");
        expect_patch_fails(string_start("test"), lengths[i], 8, "runs past the end");
        expect_patch_fails(string_start("hello"), lengths[i], 8, "runs past the end");
        expect_patch_fails(string_start("tensor_b"), lengths[i], 8, "runs past the end");
    }
}

static void test_huge_array_counts(void **state)
{
    (void)state;
    size_t scores_count = after("test.scores") + 4 + 4;
    size_t tokens_count = after("test.tokens") + 4 + 4;
    /* 2^62 + 1 floats: count * 4 wraps around to 4 bytes in 64-bit arithmetic. */
    const uint64_t counts[] = {UINT64_MAX, (1ull << 62) + 1, 1ull << 61, base_size};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        expect_patch_fails(scores_count, counts[i], 8, "float32");
        expect_patch_fails(tokens_count, counts[i], 8, NULL);
    }
    expect_patch_fails(tokens_count, UINT64_MAX, 8, "strings cannot fit");
}

static void test_bad_value_types(void **state)
{
    (void)state;
    size_t one_type = after("test.one");
    expect_patch_fails(one_type, 13, 4, "invalid value type 13");
    expect_patch_fails(one_type, 0xFFFFFFFFu, 4, "invalid value type 4294967295");
    /* An array whose elements are of an invalid type. */
    expect_patch_fails(after("test.scores") + 4, 13, 4, "invalid value type 13");
    /* u32 read as an array: element type 1 (int8) and a count from the next bytes. */
    expect_patch_fails(one_type, GGUF_TYPE_ARRAY, 4, NULL);
    /* A bool that is neither 0 nor 1. */
    expect_patch_fails(after("test.two") + 4, 2, 1, "bool value 2");
}

static void test_bad_tensor_types(void **state)
{
    (void)state;
    expect_patch_fails(type_at("tensor_a", 2), 99, 4, "tensor 'tensor_a' has unknown type 99");
    expect_patch_fails(type_at("tensor_a", 2), 0xFFFFFFFFu, 4, "unknown type");
    expect_patch_fails(type_at("tensor_c", 1), 5, 4, "unknown type 5"); /* removed Q4_2 */
    /* A type ggml knows but pocketlm does not run. */
    uint8_t *patched = copy_of(base, base_size);
    put_le(patched + type_at("tensor_b", 2), PLM_TYPE_Q8_1, 4);
    expect_failure_status(patched, base_size, PLM_ERR_UNSUPPORTED, "Q8_1");
    free(patched);
}

static void test_bad_dimensions(void **state)
{
    (void)state;
    expect_patch_fails(n_dims_at("tensor_a"), 0, 4, "has 0 dimensions");
    expect_patch_fails(n_dims_at("tensor_a"), 5, 4, "has 5 dimensions");
    expect_patch_fails(n_dims_at("tensor_c"), 0xFFFFFFFFu, 4, "dimensions");
    expect_patch_fails(ne_at("tensor_a", 0), 0, 8, "dimension 0 is 0");
    expect_patch_fails(ne_at("tensor_a", 1), 0, 8, "dimension 1 is 0");
    expect_patch_fails(ne_at("tensor_a", 1), (uint64_t)-1, 8, "dimension 1 is -1");
    expect_patch_fails(ne_at("tensor_a", 0), 1ull << 63, 8, "must be at least 1");
    /* Overflowing element counts: 2^32 * 2^32, and a row too large on its own. */
    uint8_t *patched = copy_of(base, base_size);
    put_le(patched + ne_at("tensor_a", 0), 1ull << 32, 8);
    put_le(patched + ne_at("tensor_a", 1), 1ull << 32, 8);
    expect_failure(patched, base_size, "too large");
    free(patched);
    expect_patch_fails(ne_at("tensor_a", 0), INT64_MAX, 8, "too large");
    /* Q8_0 rows come in blocks of 32. */
    expect_patch_fails(ne_at("tensor_b", 0), 31, 8, "row length 31 is not a multiple");
    /* A larger but valid shape makes the data run past the end of the file. */
    expect_patch_fails(ne_at("tensor_c", 0), 1000, 8, "extends past the end of the file");
}

static void test_bad_offsets(void **state)
{
    (void)state;
    struct gguf_file *file;
    assert_int_equal(gguf_parse(base, base_size, &file), PLM_OK);
    uint64_t offset_a = gguf_find_tensor(file, "tensor_a")->offset;
    uint64_t offset_b = gguf_find_tensor(file, "tensor_b")->offset;
    uint64_t data_size = base_size - file->data_offset;
    gguf_free(file);

    size_t at_b = offset_at("tensor_b", 2), at_c = offset_at("tensor_c", 1);
    expect_patch_fails(at_c, UINT64_MAX - 31, 8, "starts past the end");
    expect_patch_fails(at_c, 1ull << 40, 8, "starts past the end");
    expect_patch_fails(at_c, data_size, 8, "extends past the end");
    expect_patch_fails(at_b, data_size - 32, 8, "extends past the end");
    expect_patch_fails(at_b, offset_b + 1, 8, "not a multiple of the alignment 32");
    expect_patch_fails(at_b, offset_b + 16, 8, "not a multiple of the alignment");
    expect_patch_fails(at_b, offset_a, 8, "overlap");
    /* tensor_a is 64 bytes: tensor_b may start at 64 but not at 32. */
    expect_patch_fails(at_b, offset_a + 32, 8, "overlap");
    /* Moving tensor_c on top of tensor_b, found after sorting by offset. */
    expect_patch_fails(at_c, offset_b + 64, 8, "overlap");
}

static void test_duplicates(void **state)
{
    (void)state;
    uint8_t *patched = copy_of(base, base_size);
    memcpy(patched + after("test.two") - 3, "one", 3);
    expect_failure(patched, base_size, "duplicate key 'test.one'");
    free(patched);

    patched = copy_of(base, base_size);
    memcpy(patched + after("tensor_c") - 1, "a", 1);
    expect_failure(patched, base_size, "duplicate tensor name 'tensor_a'");
    free(patched);
}

static void test_bad_alignment(void **state)
{
    (void)state;
    size_t value = after("general.alignment") + 4;
    expect_patch_fails(value, 24, 4, "24 is not a power of two");
    expect_patch_fails(value, 0, 4, "0 is not a power of two");
    expect_patch_fails(value, 0x80000001u, 4, "not a power of two");
    expect_patch_fails(after("general.alignment"), GGUF_TYPE_INT32, 4, "must be uint32");
    /* A larger valid alignment moves the data section, so the offsets no longer fit. */
    expect_patch_fails(value, 1u << 20, 4, NULL);
}

static void test_nul_in_names(void **state)
{
    (void)state;
    expect_patch_fails(after("test.one") - 2, 0, 1, "NUL");
    expect_patch_fails(after("tensor_b") - 1, 0, 1, "NUL");
}

/* Arrays of arrays nested deeper than the reader's limit; built by hand, as
 * the writer cannot make them. */
static void test_deeply_nested_arrays(void **state)
{
    (void)state;
    for (int depth = 1; depth <= 40; depth++) {
        size_t size = 24 + 8 + 5 + 4 + 12 * (size_t)depth;
        uint8_t *bytes = calloc(1, size);
        memcpy(bytes, "GGUF", 4);
        put_le(bytes + 4, 3, 4);
        put_le(bytes + 16, 1, 8); /* one key/value, no tensors */
        put_le(bytes + 24, 5, 8);
        memcpy(bytes + 32, "deep!", 5);
        put_le(bytes + 37, GGUF_TYPE_ARRAY, 4);
        uint8_t *p = bytes + 41;
        for (int level = 0; level < depth; level++, p += 12) {
            bool innermost = level == depth - 1;
            put_le(p, innermost ? GGUF_TYPE_UINT8 : GGUF_TYPE_ARRAY, 4);
            put_le(p + 4, innermost ? 0 : 1, 8);
        }
        struct gguf_file *file;
        int status = gguf_parse(bytes, size, &file);
        if (depth <= 8) {
            if (status != PLM_OK)
                fail_msg("depth %d: %s", depth, plm_last_error());
            gguf_free(file);
        } else {
            expect_failure(bytes, size, "nested more than 8 deep");
        }
        /* Any truncation of it fails too. */
        expect_failure(bytes, size - 1, NULL);
        free(bytes);
    }
}

/* Reads everything a parsed file exposes, so that ASan sees any pointer that
 * escaped the buffer. */
static unsigned touch_everything(const struct gguf_file *file)
{
    unsigned sum = 0;
    for (uint64_t i = 0; i < file->n_kv; i++) {
        const struct gguf_kv *kv = &file->kv[i];
        sum += (unsigned)strlen(kv->key);
        for (uint64_t j = 0; kv->strings && j < kv->count; j++)
            for (uint64_t c = 0; c < kv->strings[j].len; c++)
                sum += (uint8_t)kv->strings[j].ptr[c];
        float f32;
        int64_t i64;
        for (uint64_t j = 0; j < kv->count; j++)
            sum += gguf_array_f32(kv, j, &f32) + gguf_array_i64(kv, j, &i64);
        uint32_t u32;
        sum += gguf_get_u32(file, kv->key, &u32);
    }
    for (uint64_t i = 0; i < file->n_tensors; i++) {
        const struct gguf_tensor *t = &file->tensors[i];
        const uint8_t *data = t->data;
        sum += data[0] + data[t->nbytes - 1] + (unsigned)strlen(t->name);
    }
    return sum;
}

static void test_random_bit_flips(void **state)
{
    (void)state;
    struct test_rng rng = {20240607};
    struct gguf_file *file;
    assert_int_equal(gguf_parse(base, base_size, &file), PLM_OK);
    size_t head_size = (size_t)file->data_offset;
    gguf_free(file);

    int n_failed = 0, n_trials = 4000;
    uint8_t *mutated = malloc(base_size);
    for (int trial = 0; trial < n_trials; trial++) {
        memcpy(mutated, base, base_size);
        /* Mostly in the header and infos, where the structure is. */
        int n_flips = 1 + (int)(rng_next(&rng) % 4);
        for (int f = 0; f < n_flips; f++) {
            size_t span = rng_next(&rng) % 4 ? head_size : base_size;
            size_t at = rng_next(&rng) % span;
            mutated[at] ^= (uint8_t)(1u << (rng_next(&rng) % 8));
        }
        int status = gguf_parse(mutated, base_size, &file);
        if (status == PLM_OK) {
            touch_everything(file);
            gguf_free(file);
        } else {
            assert_true(status == PLM_ERR_FORMAT || status == PLM_ERR_UNSUPPORTED);
            assert_true(strlen(plm_last_error()) > 0);
            n_failed++;
        }
    }
    free(mutated);
    /* Flips in tensor data or string bytes are harmless, but most header flips are not. */
    assert_true(n_failed > n_trials / 4);
    assert_true(n_failed < n_trials);
}

/* Random bytes with a valid magic and version: the rest is noise. */
static void test_random_garbage_after_header(void **state)
{
    (void)state;
    struct test_rng rng = {77};
    for (int trial = 0; trial < 2000; trial++) {
        size_t size = 24 + rng_next(&rng) % 200;
        uint8_t *bytes = malloc(size);
        for (size_t i = 0; i < size; i++)
            bytes[i] = (uint8_t)rng_next(&rng);
        memcpy(bytes, "GGUF", 4);
        put_le(bytes + 4, 3, 4);
        /* Small counts, so the parser gets past the header. */
        put_le(bytes + 8, rng_next(&rng) % 3, 8);
        put_le(bytes + 16, rng_next(&rng) % 4, 8);
        struct gguf_file *file;
        if (gguf_parse(bytes, size, &file) == PLM_OK) {
            touch_everything(file);
            gguf_free(file);
        } else {
            assert_true(strlen(plm_last_error()) > 0);
        }
        free(bytes);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_file_is_valid),
        cmocka_unit_test(test_truncation_at_every_offset),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_huge_string_lengths),
        cmocka_unit_test(test_huge_array_counts),
        cmocka_unit_test(test_bad_value_types),
        cmocka_unit_test(test_bad_tensor_types),
        cmocka_unit_test(test_bad_dimensions),
        cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_nul_in_names),
        cmocka_unit_test(test_deeply_nested_arrays),
        cmocka_unit_test(test_random_bit_flips),
        cmocka_unit_test(test_random_garbage_after_header),
    };
    return cmocka_run_group_tests(tests, make_base_file, free_base_file);
}
