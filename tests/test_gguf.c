/* GGUF reader and writer: round trips, real files, typed getters. */
#include "test_util.h"

#include "core/error.h"
#include "core/mapped_file.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "tensor/types.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static struct gguf_file *write_and_open(struct gguf_writer *w, const char *tag)
{
    const char *path = temp_path(tag);
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    struct gguf_file *file = NULL;
    int status = gguf_open(path, &file);
    if (status != PLM_OK)
        fail_msg("reading back %s: %s", path, plm_last_error());
    unlink(path); /* the mapping stays valid */
    return file;
}

static char *write_and_read_bytes(struct gguf_writer *w, const char *tag, size_t *size)
{
    const char *path = temp_path(tag);
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    char *bytes;
    assert_int_equal(read_whole_file(path, &bytes, size), PLM_OK);
    unlink(path);
    return bytes;
}

static void assert_str_equal(struct gguf_str str, const char *expected, size_t len)
{
    assert_int_equal(str.len, len);
    assert_memory_equal(str.ptr, expected, len);
}

static const struct gguf_kv *find_checked(const struct gguf_file *file, const char *key,
                                          enum gguf_value_type type, enum gguf_value_type elem_type,
                                          uint64_t count)
{
    const struct gguf_kv *kv = gguf_find(file, key);
    if (!kv)
        fail_msg("key %s missing", key);
    assert_int_equal(kv->type, type);
    assert_int_equal(kv->elem_type, elem_type);
    assert_int_equal(kv->count, count);
    return kv;
}

/* A GGUF file built byte by byte, for value types the writer cannot set directly. */
struct raw_file {
    uint8_t bytes[4096];
    size_t size;
};

static void raw_put(struct raw_file *raw, const void *bytes, size_t n)
{
    assert_true(raw->size + n <= sizeof raw->bytes);
    memcpy(raw->bytes + raw->size, bytes, n);
    raw->size += n;
}

static void raw_le(struct raw_file *raw, uint64_t value, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        uint8_t byte = (uint8_t)(value >> (8 * i));
        raw_put(raw, &byte, 1);
    }
}

static void raw_str(struct raw_file *raw, const char *str)
{
    raw_le(raw, strlen(str), 8);
    raw_put(raw, str, strlen(str));
}

static void raw_key(struct raw_file *raw, const char *key, enum gguf_value_type type)
{
    raw_str(raw, key);
    raw_le(raw, type, 4);
}

static void raw_header(struct raw_file *raw, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    raw_put(raw, "GGUF", 4);
    raw_le(raw, version, 4);
    raw_le(raw, n_tensors, 8);
    raw_le(raw, n_kv, 8);
}

static uint64_t f64_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

/* ------------------------------------------------------- writer round trips */

static void test_scalars_round_trip(void **state)
{
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_u32(w, "s.u32", 0xDEADBEEFu), PLM_OK);
    assert_int_equal(gguf_writer_set_i32(w, "s.i32", -123456), PLM_OK);
    assert_int_equal(gguf_writer_set_u64(w, "s.u64", 0x123456789ABCDEF0ull), PLM_OK);
    assert_int_equal(gguf_writer_set_f32(w, "s.f32", -3.25f), PLM_OK);
    assert_int_equal(gguf_writer_set_bool(w, "s.true", true), PLM_OK);
    assert_int_equal(gguf_writer_set_bool(w, "s.false", false), PLM_OK);
    assert_int_equal(gguf_writer_set_str(w, "s.str", "héllo wörld"), PLM_OK);
    assert_int_equal(gguf_writer_set_str(w, "s.empty", ""), PLM_OK);
    struct gguf_file *file = write_and_open(w, "scalars.gguf");
    gguf_writer_free(w);

    assert_int_equal(file->version, 3);
    assert_int_equal(file->n_kv, 8);
    assert_int_equal(file->n_tensors, 0);
    assert_int_equal(file->alignment, GGUF_DEFAULT_ALIGNMENT);
    /* Insertion order is file order. */
    assert_string_equal(file->kv[0].key, "s.u32");
    assert_string_equal(file->kv[7].key, "s.empty");

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool flag;
    struct gguf_str str;
    find_checked(file, "s.u32", GGUF_TYPE_UINT32, GGUF_TYPE_UINT32, 1);
    assert_true(gguf_get_u32(file, "s.u32", &u32));
    assert_int_equal(u32, 0xDEADBEEFu);
    find_checked(file, "s.i32", GGUF_TYPE_INT32, GGUF_TYPE_INT32, 1);
    assert_true(gguf_get_i32(file, "s.i32", &i32));
    assert_int_equal(i32, -123456);
    find_checked(file, "s.u64", GGUF_TYPE_UINT64, GGUF_TYPE_UINT64, 1);
    assert_true(gguf_get_u64(file, "s.u64", &u64));
    assert_true(u64 == 0x123456789ABCDEF0ull);
    find_checked(file, "s.f32", GGUF_TYPE_FLOAT32, GGUF_TYPE_FLOAT32, 1);
    assert_true(gguf_get_f32(file, "s.f32", &f32));
    assert_true(f32 == -3.25f);
    find_checked(file, "s.true", GGUF_TYPE_BOOL, GGUF_TYPE_BOOL, 1);
    assert_true(gguf_get_bool(file, "s.true", &flag));
    assert_true(flag);
    assert_true(gguf_get_bool(file, "s.false", &flag));
    assert_false(flag);
    const struct gguf_kv *kv = find_checked(file, "s.str", GGUF_TYPE_STRING, GGUF_TYPE_STRING, 1);
    assert_true(gguf_get_str(file, "s.str", &str));
    assert_str_equal(str, "héllo wörld", strlen("héllo wörld"));
    assert_true(kv->strings[0].ptr == str.ptr);
    assert_true(gguf_get_str(file, "s.empty", &str));
    assert_int_equal(str.len, 0);
    gguf_free(file);
}

static void test_arrays_round_trip(void **state)
{
    (void)state;
    const uint8_t u8s[] = {0, 1, 255};
    const int8_t i8s[] = {-128, 0, 127};
    const uint16_t u16s[] = {0, 0xBEEF, 65535};
    const int16_t i16s[] = {-32768, -1, 32767};
    const uint32_t u32s[] = {0, 1, 0xFFFFFFFFu, 42};
    const int32_t i32s[] = {INT32_MIN, -1, 0, INT32_MAX};
    const float f32s[] = {0.0f, -1.5f, FLT_MAX, 1e-30f, INFINITY};
    const bool bools[] = {true, false, true};
    const uint64_t u64s[] = {0, UINT64_MAX, 0x0102030405060708ull};
    const int64_t i64s[] = {INT64_MIN, -7, INT64_MAX};
    const double f64s[] = {3.141592653589793, -0.0, 1e300};
    const struct {
        const char *key;
        enum gguf_value_type type;
        const void *values;
        uint64_t count;
        size_t elem_size;
    } arrays[] = {
        {"a.u8", GGUF_TYPE_UINT8, u8s, 3, 1},      {"a.i8", GGUF_TYPE_INT8, i8s, 3, 1},
        {"a.u16", GGUF_TYPE_UINT16, u16s, 3, 2},   {"a.i16", GGUF_TYPE_INT16, i16s, 3, 2},
        {"a.u32", GGUF_TYPE_UINT32, u32s, 4, 4},   {"a.i32", GGUF_TYPE_INT32, i32s, 4, 4},
        {"a.f32", GGUF_TYPE_FLOAT32, f32s, 5, 4},  {"a.bool", GGUF_TYPE_BOOL, bools, 3, 1},
        {"a.u64", GGUF_TYPE_UINT64, u64s, 3, 8},   {"a.i64", GGUF_TYPE_INT64, i64s, 3, 8},
        {"a.f64", GGUF_TYPE_FLOAT64, f64s, 3, 8},  {"a.empty", GGUF_TYPE_INT32, NULL, 0, 4},
    };
    const char *strings[] = {"first", "", "with\0nul", "last ünïcode"};
    const size_t lens[] = {5, 0, 8, strlen("last ünïcode")};

    struct gguf_writer *w = gguf_writer_new();
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        assert_int_equal(gguf_writer_set_array(w, arrays[i].key, arrays[i].type, arrays[i].values,
                                               arrays[i].count),
                         PLM_OK);
    assert_int_equal(gguf_writer_set_str_array(w, "a.strings", strings, lens, 4), PLM_OK);
    assert_int_equal(gguf_writer_set_str_array(w, "a.cstrings", strings, NULL, 2), PLM_OK);
    assert_int_equal(gguf_writer_set_str_array(w, "a.no_strings", NULL, NULL, 0), PLM_OK);
    struct gguf_file *file = write_and_open(w, "arrays.gguf");
    gguf_writer_free(w);

    /* The host is little-endian, so the file bytes equal the C arrays. */
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        const struct gguf_kv *kv =
            find_checked(file, arrays[i].key, GGUF_TYPE_ARRAY, arrays[i].type, arrays[i].count);
        if (arrays[i].count)
            assert_memory_equal(kv->data, arrays[i].values, arrays[i].count * arrays[i].elem_size);
    }
    const struct gguf_kv *kv = gguf_find(file, "a.i64");
    int64_t i64;
    float f32;
    assert_true(gguf_array_i64(kv, 0, &i64));
    assert_true(i64 == INT64_MIN);
    assert_true(gguf_array_i64(kv, 2, &i64));
    assert_true(i64 == INT64_MAX);
    assert_false(gguf_array_i64(kv, 3, &i64));
    kv = gguf_find(file, "a.f32");
    assert_true(gguf_array_f32(kv, 4, &f32));
    assert_true(isinf(f32));
    assert_false(gguf_array_f32(kv, 5, &f32));
    kv = gguf_find(file, "a.i16");
    assert_true(gguf_array_i64(kv, 0, &i64));
    assert_int_equal(i64, -32768);
    assert_true(gguf_array_f32(kv, 1, &f32));
    assert_true(f32 == -1.0f);
    assert_false(gguf_array_f32(gguf_find(file, "a.empty"), 0, &f32));
    /* Bools are not numbers. */
    assert_false(gguf_array_i64(gguf_find(file, "a.bool"), 0, &i64));

    kv = find_checked(file, "a.strings", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, 4);
    for (int i = 0; i < 4; i++)
        assert_str_equal(kv->strings[i], strings[i], lens[i]);
    assert_false(gguf_array_f32(kv, 0, &f32));
    kv = find_checked(file, "a.cstrings", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, 2);
    assert_str_equal(kv->strings[0], "first", 5);
    assert_str_equal(kv->strings[1], "", 0);
    find_checked(file, "a.no_strings", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, 0);
    gguf_free(file);
}

/* Every scalar type, and arrays of arrays, read from a hand-made version 2
 * file, then copied through the writer unchanged. */
static void test_every_value_type_and_copy(void **state)
{
    (void)state;
    struct raw_file raw = {0};
    raw_header(&raw, 2, 0, 15);
    raw_key(&raw, "v.u8", GGUF_TYPE_UINT8); raw_le(&raw, 200, 1);
    raw_key(&raw, "v.i8", GGUF_TYPE_INT8); raw_le(&raw, (uint8_t)-100, 1);
    raw_key(&raw, "v.u16", GGUF_TYPE_UINT16); raw_le(&raw, 60000, 2);
    raw_key(&raw, "v.i16", GGUF_TYPE_INT16); raw_le(&raw, (uint16_t)-30000, 2);
    raw_key(&raw, "v.u32", GGUF_TYPE_UINT32); raw_le(&raw, 4000000000u, 4);
    raw_key(&raw, "v.i32", GGUF_TYPE_INT32); raw_le(&raw, (uint32_t)-2000000000, 4);
    raw_key(&raw, "v.f32", GGUF_TYPE_FLOAT32); raw_le(&raw, 0x3FC00000, 4); /* 1.5 */
    raw_key(&raw, "v.bool", GGUF_TYPE_BOOL); raw_le(&raw, 1, 1);
    raw_key(&raw, "v.str", GGUF_TYPE_STRING); raw_str(&raw, "text");
    raw_key(&raw, "v.u64", GGUF_TYPE_UINT64); raw_le(&raw, 5000000000ull, 8);
    raw_key(&raw, "v.i64", GGUF_TYPE_INT64); raw_le(&raw, (uint64_t)-5000000000ll, 8);
    raw_key(&raw, "v.f64", GGUF_TYPE_FLOAT64); raw_le(&raw, f64_bits(-2.5e10), 8);
    /* [[1, 2], ["x"], [[]]]: an array of three arrays. */
    raw_key(&raw, "v.nested", GGUF_TYPE_ARRAY);
    raw_le(&raw, GGUF_TYPE_ARRAY, 4); raw_le(&raw, 3, 8);
    raw_le(&raw, GGUF_TYPE_UINT16, 4); raw_le(&raw, 2, 8); raw_le(&raw, 1, 2); raw_le(&raw, 2, 2);
    raw_le(&raw, GGUF_TYPE_STRING, 4); raw_le(&raw, 1, 8); raw_str(&raw, "x");
    raw_le(&raw, GGUF_TYPE_ARRAY, 4); raw_le(&raw, 1, 8);
    raw_le(&raw, GGUF_TYPE_INT8, 4); raw_le(&raw, 0, 8);
    size_t nested_bytes = (12 + 4) + (12 + 9) + (12 + 12);
    raw_key(&raw, "v.after_nested", GGUF_TYPE_UINT8); raw_le(&raw, 7, 1);
    raw_key(&raw, "general.alignment", GGUF_TYPE_UINT32); raw_le(&raw, 8, 4);

    struct gguf_file *file;
    if (gguf_parse(raw.bytes, raw.size, &file) != PLM_OK)
        fail_msg("%s", plm_last_error());
    assert_int_equal(file->version, 2);
    assert_int_equal(file->alignment, 8);
    assert_int_equal(file->data_offset, (raw.size + 7) / 8 * 8);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool flag;
    struct gguf_str str;
    assert_true(gguf_get_u32(file, "v.u8", &u32) && u32 == 200);
    assert_true(gguf_get_i32(file, "v.i8", &i32) && i32 == -100);
    assert_true(gguf_get_u32(file, "v.u16", &u32) && u32 == 60000);
    assert_true(gguf_get_i32(file, "v.i16", &i32) && i32 == -30000);
    assert_true(gguf_get_u32(file, "v.u32", &u32) && u32 == 4000000000u);
    assert_true(gguf_get_i32(file, "v.i32", &i32) && i32 == -2000000000);
    assert_true(gguf_get_f32(file, "v.f32", &f32) && f32 == 1.5f);
    assert_true(gguf_get_bool(file, "v.bool", &flag) && flag);
    assert_true(gguf_get_str(file, "v.str", &str));
    assert_str_equal(str, "text", 4);
    assert_true(gguf_get_u64(file, "v.u64", &u64) && u64 == 5000000000ull);
    assert_true(gguf_get_f32(file, "v.i64", &f32) && f32 == -5e9f);
    assert_true(gguf_get_f32(file, "v.f64", &f32) && f32 == -2.5e10f);
    const struct gguf_kv *nested =
        find_checked(file, "v.nested", GGUF_TYPE_ARRAY, GGUF_TYPE_ARRAY, 3);
    assert_null(nested->strings);
    assert_false(gguf_array_f32(nested, 0, &f32));
    assert_true(gguf_get_u32(file, "v.after_nested", &u32) && u32 == 7);

    /* Copy every key/value into a new file: the values must come back byte for byte. */
    struct gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < file->n_kv; i++)
        assert_int_equal(gguf_writer_copy_kv(w, &file->kv[i]), PLM_OK);
    struct gguf_file *copy = write_and_open(w, "copy.gguf");
    gguf_writer_free(w);
    assert_int_equal(copy->version, 3);
    assert_int_equal(copy->n_kv, file->n_kv);
    assert_int_equal(copy->alignment, 8);
    for (uint64_t i = 0; i < file->n_kv; i++) {
        const struct gguf_kv *a = &file->kv[i], *b = &copy->kv[i];
        assert_string_equal(a->key, b->key);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->elem_type, b->elem_type);
        assert_int_equal(a->count, b->count);
    }
    assert_memory_equal(gguf_find(copy, "v.nested")->data, nested->data, nested_bytes);
    assert_true(gguf_get_str(copy, "v.str", &str));
    assert_str_equal(str, "text", 4);
    assert_true(gguf_get_f32(copy, "v.f64", &f32) && f32 == -2.5e10f);
    assert_true(gguf_get_i32(copy, "v.i8", &i32) && i32 == -100);
    assert_true(gguf_get_u32(copy, "v.after_nested", &u32) && u32 == 7);
    gguf_free(copy);
    gguf_free(file);
}

/* ------------------------------------------------------------------ tensors */

struct test_tensor {
    const char *name;
    int type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
};

static const struct test_tensor test_tensors[] = {
    {"token_embd.weight", PLM_TYPE_F32, 2, {5, 3}, 5 * 3 * 4},
    {"output_norm.weight", PLM_TYPE_F16, 1, {7}, 7 * 2},
    {"blk.0.attn_q.weight", PLM_TYPE_Q8_0, 2, {64, 3}, 2 * 34 * 3},
    {"blk.0.ffn_down.weight", PLM_TYPE_Q4_K, 3, {256, 1, 2}, 144 * 2},
    {"blk.0.ffn_up.weight", PLM_TYPE_Q6_K, 2, {512, 1}, 2 * 210},
    {"bf16.4d", PLM_TYPE_BF16, 4, {3, 2, 2, 2}, 24 * 2},
    {"q4_0", PLM_TYPE_Q4_0, 1, {32}, 18},
};
#define N_TEST_TENSORS (sizeof test_tensors / sizeof test_tensors[0])

/* Writes the test tensors with random contents and checks them read back. */
static void round_trip_tensors(uint32_t alignment)
{
    struct test_rng rng = {alignment};
    uint8_t *data[N_TEST_TENSORS];
    struct gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "test"), PLM_OK);
    if (alignment != GGUF_DEFAULT_ALIGNMENT)
        assert_int_equal(gguf_writer_set_u32(w, "general.alignment", alignment), PLM_OK);
    for (size_t i = 0; i < N_TEST_TENSORS; i++) {
        const struct test_tensor *t = &test_tensors[i];
        data[i] = malloc(t->nbytes);
        for (size_t b = 0; b < t->nbytes; b++)
            data[i][b] = (uint8_t)rng_next(&rng);
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, t->ne, t->n_dims, data[i]),
                         PLM_OK);
    }
    size_t size;
    char *bytes = write_and_read_bytes(w, "tensors.gguf", &size);
    gguf_writer_free(w);
    struct gguf_file *file;
    if (gguf_parse((const uint8_t *)bytes, size, &file) != PLM_OK)
        fail_msg("%s", plm_last_error());

    assert_int_equal(file->alignment, alignment);
    assert_int_equal(file->data_offset % alignment, 0);
    assert_int_equal(size % alignment, 0); /* the last tensor is padded too */
    assert_int_equal(file->n_tensors, N_TEST_TENSORS);
    uint64_t expected_offset = 0;
    for (size_t i = 0; i < N_TEST_TENSORS; i++) {
        const struct test_tensor *t = &test_tensors[i];
        const struct gguf_tensor *read = gguf_find_tensor(file, t->name);
        assert_non_null(read);
        assert_ptr_equal(read, &file->tensors[i]);
        assert_int_equal(read->type, t->type);
        assert_int_equal(read->n_dims, t->n_dims);
        for (int d = 0; d < 4; d++)
            assert_int_equal(read->ne[d], d < t->n_dims ? t->ne[d] : 1);
        assert_int_equal(read->nbytes, t->nbytes);
        assert_int_equal(read->offset, expected_offset);
        assert_ptr_equal(read->data, bytes + file->data_offset + read->offset);
        assert_memory_equal(read->data, data[i], t->nbytes);
        /* Padding between tensors is zeros. */
        uint64_t padded = (t->nbytes + alignment - 1) / alignment * alignment;
        for (uint64_t b = t->nbytes; b < padded; b++)
            assert_int_equal(((const uint8_t *)read->data)[b], 0);
        expected_offset += padded;
        free(data[i]);
    }
    assert_int_equal(file->data_offset + expected_offset, size);
    assert_null(gguf_find_tensor(file, "missing"));
    gguf_free(file);
    free(bytes);
}

static void test_tensors_round_trip(void **state)
{
    (void)state;
    round_trip_tensors(GGUF_DEFAULT_ALIGNMENT);
}

static void test_custom_alignment(void **state)
{
    (void)state;
    round_trip_tensors(1);
    round_trip_tensors(8);
    round_trip_tensors(64);
    round_trip_tensors(4096);
}

static struct gguf_writer *small_writer(const uint8_t *data)
{
    struct gguf_writer *w = gguf_writer_new();
    const int64_t ne[2] = {4, 2};
    const float scores[] = {0.5f, -1.0f};
    const char *tokens[] = {"a", "bc"};
    gguf_writer_set_str(w, "general.name", "small");
    gguf_writer_set_array(w, "scores", GGUF_TYPE_FLOAT32, scores, 2);
    gguf_writer_set_str_array(w, "tokens", tokens, NULL, 2);
    gguf_writer_add_tensor(w, "t", PLM_TYPE_F16, ne, 2, data);
    gguf_writer_add_tensor(w, "u", PLM_TYPE_F32, ne, 1, data);
    return w;
}

static void test_output_is_deterministic(void **state)
{
    (void)state;
    uint8_t data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (uint8_t)(i * 37);
    struct gguf_writer *w1 = small_writer(data), *w2 = small_writer(data);
    size_t size1, size2, size3;
    char *bytes1 = write_and_read_bytes(w1, "det1.gguf", &size1);
    char *bytes2 = write_and_read_bytes(w2, "det2.gguf", &size2);
    /* Writing the same writer again gives the same file too. */
    char *bytes3 = write_and_read_bytes(w1, "det3.gguf", &size3);
    assert_int_equal(size1, size2);
    assert_memory_equal(bytes1, bytes2, size1);
    assert_int_equal(size1, size3);
    assert_memory_equal(bytes1, bytes3, size1);
    free(bytes1);
    free(bytes2);
    free(bytes3);
    gguf_writer_free(w1);
    gguf_writer_free(w2);
}

static void test_setting_a_key_twice_replaces_it_in_place(void **state)
{
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "first", 1);
    gguf_writer_set_str(w, "second", "two");
    gguf_writer_set_str(w, "first", "replaced");
    gguf_writer_set_u32(w, "third", 3);
    struct gguf_file *file = write_and_open(w, "replace.gguf");
    gguf_writer_free(w);
    assert_int_equal(file->n_kv, 3);
    assert_string_equal(file->kv[0].key, "first");
    assert_string_equal(file->kv[1].key, "second");
    assert_string_equal(file->kv[2].key, "third");
    struct gguf_str str;
    assert_true(gguf_get_str(file, "first", &str));
    assert_str_equal(str, "replaced", 8);
    gguf_free(file);
}

static void test_writer_rejects_bad_input(void **state)
{
    (void)state;
    uint8_t data[1024] = {0};
    struct gguf_writer *w = gguf_writer_new();
    const int64_t ok[2] = {32, 2};
    assert_int_equal(gguf_writer_add_tensor(w, "a", PLM_TYPE_Q8_0, ok, 2, data), PLM_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "a", PLM_TYPE_F32, ok, 2, data), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "'a'"));
    assert_int_equal(gguf_writer_add_tensor(w, "b", 99, ok, 2, data), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_Q8_1, ok, 2, data), PLM_ERR_ARG);
    const int64_t bad_row[1] = {33};
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_Q8_0, bad_row, 1, data), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "block size 32"));
    const int64_t zero[2] = {32, 0}, negative[2] = {-32, 1}, huge[4] = {1ll << 40, 1ll << 40, 1, 1};
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_F32, zero, 2, data), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_F32, negative, 2, data), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_F32, huge, 4, data), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_F32, ok, 0, data), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_F32, huge, 5, data), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_add_tensor(w, "b", PLM_TYPE_F32, ok, 2, NULL), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_set_array(w, "s", GGUF_TYPE_STRING, data, 1), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_set_array(w, "s", GGUF_TYPE_ARRAY, data, 1), PLM_ERR_ARG);
    const char *with_null[] = {"x", NULL};
    assert_int_equal(gguf_writer_set_str_array(w, "s", with_null, NULL, 2), PLM_ERR_ARG);

    /* A bad general.alignment is caught when writing, and nothing is written. */
    const char *path = temp_path("rejected.gguf");
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 24), PLM_OK);
    assert_int_equal(gguf_writer_write(w, path), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "power of two"));
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 0), PLM_OK);
    assert_int_equal(gguf_writer_write(w, path), PLM_ERR_ARG);
    assert_int_equal(gguf_writer_set_i32(w, "general.alignment", 32), PLM_OK);
    assert_int_equal(gguf_writer_write(w, path), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "uint32"));
    assert_int_not_equal(access(path, F_OK), 0);

    /* A failed rename (the target is a directory) leaves no temporary file. */
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 32), PLM_OK);
    char dir[4096], tmp[4200];
    snprintf(dir, sizeof dir, "%s", temp_path("dir.gguf"));
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(gguf_writer_write(w, dir), PLM_ERR_IO);
    assert_true(strlen(plm_last_error()) > 0);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    rmdir(dir);
    /* A missing directory is an I/O error. */
    assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf"), PLM_ERR_IO);
    gguf_writer_free(w);
}

/* -------------------------------------------------------------- real files */

/* Rewrites every key/value of a real file (written by the reference writer)
 * with ours: the result must be the same bytes, plus our padding. */
static void assert_rewrite_is_identical(const struct gguf_file *file, const char *tag)
{
    struct gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < file->n_kv; i++)
        assert_int_equal(gguf_writer_copy_kv(w, &file->kv[i]), PLM_OK);
    size_t size;
    char *bytes = write_and_read_bytes(w, tag, &size);
    gguf_writer_free(w);
    assert_int_equal(size, (file->size + 31) / 32 * 32);
    assert_memory_equal(bytes, file->bytes, file->size);
    for (size_t i = file->size; i < size; i++)
        assert_int_equal(bytes[i], 0);
    free(bytes);
}

static void test_llama_spm_vocab(void **state)
{
    (void)state;
    const char *path = shared_path("models/gguf-vocab/ggml-vocab-llama-spm.gguf");
    if (!path)
        skip();
    struct gguf_file *file;
    if (gguf_open(path, &file) != PLM_OK)
        fail_msg("%s", plm_last_error());
    assert_int_equal(file->version, 3);
    assert_int_equal(file->n_kv, 22);
    assert_int_equal(file->n_tensors, 0);
    struct gguf_str str;
    uint32_t u32;
    float f32;
    bool flag;
    assert_true(gguf_get_str(file, "general.architecture", &str));
    assert_str_equal(str, "llama", 5);
    assert_true(gguf_get_str(file, "tokenizer.ggml.model", &str));
    assert_str_equal(str, "llama", 5);
    assert_true(gguf_get_str(file, "tokenizer.ggml.pre", &str));
    assert_str_equal(str, "default", 7);
    assert_true(gguf_get_u32(file, "llama.context_length", &u32) && u32 == 4096);
    assert_true(gguf_get_u32(file, "llama.block_count", &u32) && u32 == 32);
    assert_true(gguf_get_u32(file, "llama.vocab_size", &u32) && u32 == 32000);
    assert_true(gguf_get_f32(file, "llama.attention.layer_norm_rms_epsilon", &f32));
    assert_float_equal(f32, 1e-5f, 1e-9f);
    assert_true(gguf_get_u32(file, "tokenizer.ggml.bos_token_id", &u32) && u32 == 1);
    assert_true(gguf_get_u32(file, "tokenizer.ggml.eos_token_id", &u32) && u32 == 2);
    assert_true(gguf_get_u32(file, "tokenizer.ggml.unknown_token_id", &u32) && u32 == 0);
    assert_true(gguf_get_bool(file, "tokenizer.ggml.add_bos_token", &flag) && flag);
    assert_true(gguf_get_bool(file, "tokenizer.ggml.add_eos_token", &flag) && !flag);

    const struct gguf_kv *tokens =
        find_checked(file, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, 32000);
    assert_str_equal(tokens->strings[0], "<unk>", 5);
    assert_str_equal(tokens->strings[1], "<s>", 3);
    assert_str_equal(tokens->strings[2], "</s>", 4);
    assert_str_equal(tokens->strings[3], "<0x00>", 6);
    assert_str_equal(tokens->strings[500], "\xe2\x96\x81}", 4);      /* "▁}" */
    assert_str_equal(tokens->strings[31999], "\xe7\xbb\x99", 3); /* "给", the last token */
    const struct gguf_kv *scores =
        find_checked(file, "tokenizer.ggml.scores", GGUF_TYPE_ARRAY, GGUF_TYPE_FLOAT32, 32000);
    assert_true(gguf_array_f32(scores, 0, &f32) && f32 == 0.0f);
    assert_true(gguf_array_f32(scores, 500, &f32) && f32 == -241.0f);
    assert_true(gguf_array_f32(scores, 31999, &f32) && f32 == -31740.0f);
    const struct gguf_kv *types =
        find_checked(file, "tokenizer.ggml.token_type", GGUF_TYPE_ARRAY, GGUF_TYPE_INT32, 32000);
    int64_t type;
    assert_true(gguf_array_i64(types, 0, &type) && type == 2);  /* unknown */
    assert_true(gguf_array_i64(types, 1, &type) && type == 3);  /* control */
    assert_true(gguf_array_i64(types, 3, &type) && type == 6);  /* byte */
    assert_true(gguf_array_i64(types, 500, &type) && type == 1); /* normal */
    assert_rewrite_is_identical(file, "llama-spm.gguf");
    gguf_free(file);
}

static void test_gpt2_vocab(void **state)
{
    (void)state;
    const char *path = shared_path("models/gguf-vocab/ggml-vocab-gpt-2.gguf");
    if (!path)
        skip();
    struct gguf_file *file;
    if (gguf_open(path, &file) != PLM_OK)
        fail_msg("%s", plm_last_error());
    assert_int_equal(file->version, 3);
    assert_int_equal(file->n_kv, 16);
    assert_int_equal(file->n_tensors, 0);
    struct gguf_str str;
    uint32_t u32;
    assert_true(gguf_get_str(file, "general.architecture", &str));
    assert_str_equal(str, "gpt2", 4);
    assert_true(gguf_get_str(file, "tokenizer.ggml.model", &str));
    assert_str_equal(str, "gpt2", 4);
    assert_true(gguf_get_str(file, "tokenizer.ggml.pre", &str));
    assert_str_equal(str, "gpt-2", 5);
    assert_true(gguf_get_u32(file, "gpt2.context_length", &u32) && u32 == 1024);
    assert_true(gguf_get_u32(file, "gpt2.embedding_length", &u32) && u32 == 768);
    assert_true(gguf_get_u32(file, "tokenizer.ggml.bos_token_id", &u32) && u32 == 50256);
    assert_true(gguf_get_u32(file, "tokenizer.ggml.eos_token_id", &u32) && u32 == 50256);
    const struct gguf_kv *tokens =
        find_checked(file, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, 50257);
    assert_str_equal(tokens->strings[0], "!", 1);
    assert_str_equal(tokens->strings[50256], "<|endoftext|>", 13);
    const struct gguf_kv *merges =
        find_checked(file, "tokenizer.ggml.merges", GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, 50000);
    assert_str_equal(merges->strings[0], "\xc4\xa0 t", 4); /* "Ġ t" */
    assert_null(gguf_find(file, "tokenizer.ggml.scores"));
    assert_rewrite_is_identical(file, "gpt-2.gguf");
    gguf_free(file);
}

/* ------------------------------------------------------------ typed getters */

static void test_typed_getter_conversions(void **state)
{
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "u32.big", 0x80000000u);
    gguf_writer_set_u32(w, "u32.small", 7);
    gguf_writer_set_i32(w, "i32.negative", -5);
    gguf_writer_set_i32(w, "i32.positive", 123);
    gguf_writer_set_u64(w, "u64.big", 1ull << 40);
    gguf_writer_set_u64(w, "u64.small", 99);
    gguf_writer_set_f32(w, "f32", 2.5f);
    gguf_writer_set_bool(w, "bool", true);
    gguf_writer_set_str(w, "str", "42");
    const uint32_t values[] = {1, 2};
    gguf_writer_set_array(w, "array", GGUF_TYPE_UINT32, values, 2);
    struct gguf_file *file = write_and_open(w, "getters.gguf");
    gguf_writer_free(w);

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool flag;
    struct gguf_str str;
    /* Integers convert between widths when the value fits. */
    assert_true(gguf_get_u32(file, "u32.big", &u32) && u32 == 0x80000000u);
    assert_false(gguf_get_i32(file, "u32.big", &i32));
    assert_true(gguf_get_i32(file, "u32.small", &i32) && i32 == 7);
    assert_true(gguf_get_u64(file, "u32.big", &u64) && u64 == 0x80000000u);
    assert_false(gguf_get_u32(file, "i32.negative", &u32));
    assert_false(gguf_get_u64(file, "i32.negative", &u64));
    assert_true(gguf_get_i32(file, "i32.negative", &i32) && i32 == -5);
    assert_true(gguf_get_u32(file, "i32.positive", &u32) && u32 == 123);
    assert_false(gguf_get_u32(file, "u64.big", &u32));
    assert_false(gguf_get_i32(file, "u64.big", &i32));
    assert_true(gguf_get_u32(file, "u64.small", &u32) && u32 == 99);
    assert_true(gguf_get_i32(file, "u64.small", &i32) && i32 == 99);
    /* Floats accept any number; integers do not accept floats. */
    assert_true(gguf_get_f32(file, "f32", &f32) && f32 == 2.5f);
    assert_true(gguf_get_f32(file, "i32.negative", &f32) && f32 == -5.0f);
    assert_true(gguf_get_f32(file, "u64.big", &f32) && f32 == 1099511627776.0f);
    assert_false(gguf_get_u32(file, "f32", &u32));
    assert_false(gguf_get_i32(file, "f32", &i32));
    /* Bools, strings and arrays only convert to themselves. */
    assert_true(gguf_get_bool(file, "bool", &flag) && flag);
    assert_false(gguf_get_u32(file, "bool", &u32));
    assert_false(gguf_get_f32(file, "bool", &f32));
    assert_false(gguf_get_bool(file, "u32.small", &flag));
    assert_false(gguf_get_u32(file, "str", &u32));
    assert_false(gguf_get_str(file, "u32.small", &str));
    assert_false(gguf_get_u32(file, "array", &u32));
    assert_false(gguf_get_str(file, "array", &str));
    /* Absent keys; the outputs are untouched on failure. */
    u32 = 1234;
    assert_false(gguf_get_u32(file, "absent", &u32));
    assert_int_equal(u32, 1234);
    assert_false(gguf_get_str(file, "absent", &str));
    assert_null(gguf_find(file, "absent"));

    /* Array elements: floats convert to integers only when whole and in range. */
    const double doubles[] = {3.0, 3.5, -1e19, 1e18, NAN};
    struct raw_file raw = {0};
    raw_header(&raw, 3, 0, 1);
    raw_key(&raw, "doubles", GGUF_TYPE_ARRAY);
    raw_le(&raw, GGUF_TYPE_FLOAT64, 4); raw_le(&raw, 5, 8);
    for (int i = 0; i < 5; i++)
        raw_le(&raw, f64_bits(doubles[i]), 8);
    struct gguf_file *raw_file;
    assert_int_equal(gguf_parse(raw.bytes, raw.size, &raw_file), PLM_OK);
    const struct gguf_kv *kv = gguf_find(raw_file, "doubles");
    int64_t i64;
    assert_true(gguf_array_i64(kv, 0, &i64) && i64 == 3);
    assert_false(gguf_array_i64(kv, 1, &i64));
    assert_false(gguf_array_i64(kv, 2, &i64));
    assert_true(gguf_array_i64(kv, 3, &i64) && i64 == 1000000000000000000ll);
    assert_false(gguf_array_i64(kv, 4, &i64));
    assert_true(gguf_array_f32(kv, 1, &f32) && f32 == 3.5f);
    gguf_free(raw_file);
    kv = gguf_find(file, "array");
    assert_true(gguf_array_i64(kv, 1, &i64) && i64 == 2);
    gguf_free(file);

    assert_string_equal(gguf_value_type_name(GGUF_TYPE_FLOAT64), "float64");
    assert_string_equal(gguf_value_type_name(GGUF_TYPE_ARRAY), "array");
    assert_string_equal(gguf_value_type_name((enum gguf_value_type)13), "invalid");
}

/* ------------------------------------------------------- buffers and paths */

static void test_parse_unaligned_buffer(void **state)
{
    (void)state;
    uint8_t data[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct gguf_writer *w = small_writer(data);
    size_t size;
    char *bytes = write_and_read_bytes(w, "unaligned.gguf", &size);
    gguf_writer_free(w);
    /* Odd start and exact size, so any read past the end is caught under ASan. */
    for (size_t shift = 1; shift < 8; shift += 2) {
        uint8_t *buffer = malloc(size + shift);
        memcpy(buffer + shift, bytes, size);
        struct gguf_file *file;
        if (gguf_parse(buffer + shift, size, &file) != PLM_OK)
            fail_msg("shift %zu: %s", shift, plm_last_error());
        float f32;
        assert_true(gguf_array_f32(gguf_find(file, "scores"), 1, &f32) && f32 == -1.0f);
        assert_memory_equal(gguf_find_tensor(file, "t")->data, data, 16);
        assert_memory_equal(gguf_find_tensor(file, "u")->data, data, 16);
        gguf_free(file);
        free(buffer);
    }
    free(bytes);
}

static void test_open_errors_name_the_path(void **state)
{
    (void)state;
    struct gguf_file *file = (struct gguf_file *)1;
    assert_int_equal(gguf_open("/nonexistent/model.gguf", &file), PLM_ERR_IO);
    assert_null(file);
    assert_non_null(strstr(plm_last_error(), "/nonexistent/model.gguf"));

    const char *path = temp_path("notgguf.gguf");
    FILE *f = fopen(path, "wb");
    fputs("GGML this is not a gguf file at all", f);
    fclose(f);
    assert_int_equal(gguf_open(path, &file), PLM_ERR_FORMAT);
    assert_null(file);
    const char *message = plm_last_error();
    assert_true(strncmp(message, path, strlen(path)) == 0);
    assert_non_null(strstr(message, "not a GGUF file"));
    unlink(path);
    gguf_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars_round_trip),
        cmocka_unit_test(test_arrays_round_trip),
        cmocka_unit_test(test_every_value_type_and_copy),
        cmocka_unit_test(test_tensors_round_trip),
        cmocka_unit_test(test_custom_alignment),
        cmocka_unit_test(test_output_is_deterministic),
        cmocka_unit_test(test_setting_a_key_twice_replaces_it_in_place),
        cmocka_unit_test(test_writer_rejects_bad_input),
        cmocka_unit_test(test_llama_spm_vocab),
        cmocka_unit_test(test_gpt2_vocab),
        cmocka_unit_test(test_typed_getter_conversions),
        cmocka_unit_test(test_parse_unaligned_buffer),
        cmocka_unit_test(test_open_errors_name_the_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
