/* safetensors reader: valid files, every kind of malformed header, sharded checkpoints. */
#include "test_util.h"

#include "core/error.h"
#include "format/safetensors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

/* A file image: u64 header length, the header, then data_size bytes 0, 1, 2, ... */
static uint8_t *build_file(const char *header, size_t data_size, size_t *size)
{
    size_t header_len = strlen(header);
    *size = 8 + header_len + data_size;
    uint8_t *bytes = malloc(*size);
    assert_non_null(bytes);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    memcpy(bytes + 8, header, header_len);
    for (size_t i = 0; i < data_size; i++)
        bytes[8 + header_len + i] = (uint8_t)i;
    return bytes;
}

static void write_bytes(const char *path, const uint8_t *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    fclose(f);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, (const uint8_t *)text, strlen(text));
}

/* Parses header + data and expects PLM_ERR_FORMAT with a message containing `needle`. */
static void expect_format_error(const char *header, size_t data_size, const char *needle)
{
    size_t size;
    uint8_t *bytes = build_file(header, data_size, &size);
    struct safetensors_file *file = (struct safetensors_file *)1;
    int rc = safetensors_parse(bytes, size, &file);
    if (rc != PLM_ERR_FORMAT)
        fail_msg("header %s: expected PLM_ERR_FORMAT, got %d (%s)", header, rc, plm_last_error());
    assert_null(file);
    if (!strstr(plm_last_error(), needle))
        fail_msg("header %s: message '%s' does not mention '%s'", header, plm_last_error(), needle);
    free(bytes);
}

/* ------------------------------------------------------------- valid files */

static void test_valid_file(void **state)
{
    (void)state;
    /* Header order differs from data order; header padded with spaces as writers do. */
    const char *header =
        "{\"b\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [24, 32]},"
        " \"__metadata__\": {\"format\": \"pt\"},"
        " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
        " \"s\": {\"dtype\": \"F16\", \"shape\": [], \"data_offsets\": [32, 34]},"
        " \"z\": {\"dtype\": \"I64\", \"shape\": [0, 5], \"data_offsets\": [34, 34]}}     ";
    size_t size;
    uint8_t *bytes = build_file(header, 34, &size);
    struct safetensors_file *file;
    assert_int_equal(safetensors_parse(bytes, size, &file), PLM_OK);
    assert_int_equal(file->n_tensors, 4);

    const struct safetensors_tensor *a = safetensors_find(file, "a");
    assert_non_null(a);
    assert_int_equal(a->dtype, SAFETENSORS_F32);
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->nbytes, 24);
    assert_ptr_equal(a->data, bytes + 8 + strlen(header));

    const struct safetensors_tensor *b = safetensors_find(file, "b");
    assert_non_null(b);
    assert_int_equal(b->dtype, SAFETENSORS_BF16);
    assert_int_equal(b->nbytes, 8);
    assert_int_equal(b->data[0], 24); /* data bytes count up from 0 */

    const struct safetensors_tensor *s = safetensors_find(file, "s");
    assert_non_null(s);
    assert_int_equal(s->n_dims, 0); /* a scalar: one element */
    assert_int_equal(s->nbytes, 2);

    const struct safetensors_tensor *z = safetensors_find(file, "z");
    assert_non_null(z);
    assert_int_equal(z->nbytes, 0);

    assert_null(safetensors_find(file, "__metadata__"));
    assert_null(safetensors_find(file, "missing"));
    assert_string_equal(safetensors_dtype_name(SAFETENSORS_BF16), "BF16");
    assert_int_equal(safetensors_dtype_size(SAFETENSORS_F64), 8);
    safetensors_free(file);
    free(bytes);
}

static void test_empty_header_object(void **state)
{
    (void)state;
    size_t size;
    uint8_t *bytes = build_file("{}", 0, &size);
    struct safetensors_file *file;
    assert_int_equal(safetensors_parse(bytes, size, &file), PLM_OK);
    assert_int_equal(file->n_tensors, 0);
    safetensors_free(file);
    free(bytes);
}

/* ----------------------------------------------------------- broken files */

static void test_bad_header_length(void **state)
{
    (void)state;
    struct safetensors_file *file;
    uint8_t short_file[5] = {1, 0, 0, 0, 0};
    assert_int_equal(safetensors_parse(short_file, sizeof short_file, &file), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "too short"));

    /* The length claims more bytes than the file holds. */
    size_t size;
    uint8_t *bytes = build_file("{}", 0, &size);
    bytes[0] = 3;
    assert_int_equal(safetensors_parse(bytes, size, &file), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "header length"));
    /* ... or an absurd amount (all bits set) */
    memset(bytes, 0xff, 8);
    assert_int_equal(safetensors_parse(bytes, size, &file), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "header length"));
    free(bytes);
}

static void test_bad_json(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"dtype\": \"F32\",", 0, "not valid JSON");
    expect_format_error("", 0, "not valid JSON");
    expect_format_error("[1, 2]", 0, "not a JSON object");
    expect_format_error("{} garbage", 0, "after the JSON");
    expect_format_error("{\"a\": 5}", 0, "not an object");
}

static void test_missing_fields(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "dtype");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "shape");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "data_offsets");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
                        "data_offsets");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}}",
                        4, "data_offsets");
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"dtype\": \"F31\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                        "unknown dtype 'F31'");
    expect_format_error("{\"a\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                        "unknown dtype");
    expect_format_error("{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                        "dtype");
}

static void test_bad_shapes(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
                        "shape entry");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
                        "shape entry");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1, 2, 3, 4, 5, 6, 7, 8, 9], "
                        "\"data_offsets\": [0, 4]}}", 4, "dimensions");
    /* The element count overflows 64 bits (each entry is a legal JSON integer). */
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
                        "\"data_offsets\": [0, 4]}}", 4, "overflows");
    expect_format_error("{\"a\": {\"dtype\": \"F64\", \"shape\": [4294967296, 1073741824], "
                        "\"data_offsets\": [0, 4]}}", 4, "overflows");
}

static void test_shape_offset_mismatch(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}",
                        20, "need 24");
    expect_format_error("{\"a\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [0, 12]}}", 12,
                        "need 6");
}

static void test_offsets_out_of_range(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 8,
                        "outside the data");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
                        "outside the data");
    expect_format_error("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": "
                        "[18446744073709551615, 18446744073709551616]}}", 8, "data_offsets");
}

static void test_overlap_and_gaps(void **state)
{
    (void)state;
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                        " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                        12, "overlaps");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                        " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                        4, "overlaps");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
                        "unused bytes");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 9,
                        "after the last tensor");
    expect_format_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                        " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                        8, "appears twice");
}

/* Every truncation and many single-byte corruptions of a valid file either
 * parse or fail cleanly (run under ASan to catch out-of-bounds reads). */
static void test_hostile_bytes(void **state)
{
    (void)state;
    const char *header =
        "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]},"
        " \"b\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [16, 20]}}";
    size_t size;
    uint8_t *bytes = build_file(header, 20, &size);
    struct safetensors_file *file;
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size so ASan sees overreads */
        memcpy(copy, bytes, n);
        assert_int_equal(safetensors_parse(copy, n, &file), PLM_ERR_FORMAT);
        free(copy);
    }
    struct test_rng rng = {42};
    for (int trial = 0; trial < 2000; trial++) {
        uint8_t *copy = malloc(size);
        memcpy(copy, bytes, size);
        copy[rng_next(&rng) % size] = (uint8_t)rng_next(&rng);
        int rc = safetensors_parse(copy, size, &file);
        assert_true(rc == PLM_OK || rc == PLM_ERR_FORMAT);
        if (rc == PLM_OK) {
            for (size_t i = 0; i < file->n_tensors; i++)
                assert_true(file->tensors[i].data + file->tensors[i].nbytes <= copy + size);
            safetensors_free(file);
        }
        free(copy);
    }
    free(bytes);
}

/* -------------------------------------------------------------- checkpoints */

/* Directories made by the tests, removed (with their files) when all have run. */
static char *made_dirs[64];
static int n_made_dirs;

static const char *make_dir(const char *tag)
{
    const char *dir = temp_path(tag);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_true(n_made_dirs < 64);
    made_dirs[n_made_dirs++] = strdup(dir);
    return dir;
}

static void remove_made_dirs(void)
{
    for (int i = 0; i < n_made_dirs; i++) {
        DIR *d = opendir(made_dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", made_dirs[i], e->d_name);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlink(path);
        }
        if (d)
            closedir(d);
        rmdir(made_dirs[i]);
        free(made_dirs[i]);
    }
    n_made_dirs = 0;
}

static void write_file_in(const char *dir, const char *name, const char *header, size_t data)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t size;
    uint8_t *bytes = build_file(header, data, &size);
    write_bytes(path, bytes, size);
    free(bytes);
}

static void write_text_in(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_text(path, text);
}

static void test_single_file_checkpoint(void **state)
{
    (void)state;
    const char *dir = make_dir("st-single");
    write_file_in(dir, "model.safetensors",
                  "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
    struct safetensors_checkpoint *ckpt;
    assert_int_equal(safetensors_checkpoint_open(dir, &ckpt), PLM_OK);
    assert_int_equal(ckpt->n_files, 1);
    assert_non_null(safetensors_checkpoint_find(ckpt, "x"));
    assert_null(safetensors_checkpoint_find(ckpt, "y"));
    safetensors_checkpoint_free(ckpt);

    const char *empty = make_dir("st-empty");
    assert_int_equal(safetensors_checkpoint_open(empty, &ckpt), PLM_ERR_IO);
    assert_null(ckpt);
    assert_non_null(strstr(plm_last_error(), "model.safetensors"));
}

static const char *shard_a =
    "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
    " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [4, 8]}}";
static const char *shard_b =
    "{\"c\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 6]}}";

static void test_sharded_checkpoint(void **state)
{
    (void)state;
    const char *dir = make_dir("st-sharded");
    write_file_in(dir, "model-00001-of-00002.safetensors", shard_a, 8);
    write_file_in(dir, "model-00002-of-00002.safetensors", shard_b, 6);
    write_text_in(dir, "model.safetensors.index.json",
                  "{\"metadata\": {\"total_size\": 14}, \"weight_map\": {"
                  "\"a\": \"model-00001-of-00002.safetensors\","
                  "\"c\": \"model-00002-of-00002.safetensors\","
                  "\"b\": \"model-00001-of-00002.safetensors\"}}");
    struct safetensors_checkpoint *ckpt;
    assert_int_equal(safetensors_checkpoint_open(dir, &ckpt), PLM_OK);
    assert_int_equal(ckpt->n_files, 2); /* each shard opened once */
    const struct safetensors_tensor *c = safetensors_checkpoint_find(ckpt, "c");
    assert_non_null(c);
    assert_int_equal(c->dtype, SAFETENSORS_BF16);
    assert_int_equal(c->shape[0], 3);
    assert_non_null(safetensors_checkpoint_find(ckpt, "a"));
    assert_non_null(safetensors_checkpoint_find(ckpt, "b"));
    safetensors_checkpoint_free(ckpt);
}

static void expect_bad_index(const char *tag, const char *index, int status, const char *needle)
{
    const char *dir = make_dir(tag);
    write_file_in(dir, "one.safetensors", shard_a, 8);
    write_file_in(dir, "two.safetensors", shard_b, 6);
    write_text_in(dir, "model.safetensors.index.json", index);
    struct safetensors_checkpoint *ckpt = (struct safetensors_checkpoint *)1;
    int rc = safetensors_checkpoint_open(dir, &ckpt);
    if (rc != status)
        fail_msg("%s: expected %d, got %d (%s)", tag, status, rc, plm_last_error());
    assert_null(ckpt);
    if (!strstr(plm_last_error(), needle))
        fail_msg("%s: message '%s' does not mention '%s'", tag, plm_last_error(), needle);
}

static void test_bad_index(void **state)
{
    (void)state;
    expect_bad_index("st-idx-json", "{\"weight_map\": ", PLM_ERR_FORMAT, "not valid JSON");
    expect_bad_index("st-idx-nomap", "{\"metadata\": {}}", PLM_ERR_FORMAT, "weight_map");
    expect_bad_index("st-idx-wrong", "{\"weight_map\": {\"c\": \"one.safetensors\"}}",
                     PLM_ERR_FORMAT, "'c' is not in 'one.safetensors'");
    expect_bad_index("st-idx-missing", "{\"weight_map\": {\"a\": \"three.safetensors\"}}",
                     PLM_ERR_IO, "three.safetensors");
    expect_bad_index("st-idx-escape", "{\"weight_map\": {\"a\": \"../one.safetensors\"}}",
                     PLM_ERR_FORMAT, "same directory");
    expect_bad_index("st-idx-type", "{\"weight_map\": {\"a\": 1}}", PLM_ERR_FORMAT,
                     "same directory");

    /* The same tensor name in two shards. */
    const char *dir = make_dir("st-idx-dup");
    write_file_in(dir, "one.safetensors", shard_a, 8);
    write_file_in(dir, "two.safetensors",
                  "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
    write_text_in(dir, "model.safetensors.index.json",
                  "{\"weight_map\": {\"a\": \"one.safetensors\", \"b\": \"two.safetensors\"}}");
    struct safetensors_checkpoint *ckpt;
    assert_int_equal(safetensors_checkpoint_open(dir, &ckpt), PLM_ERR_FORMAT);
    /* "b" is not in two.safetensors, which is reported first */
    assert_non_null(strstr(plm_last_error(), "'b'"));
    write_text_in(dir, "model.safetensors.index.json",
                  "{\"weight_map\": {\"a\": \"one.safetensors\", \"b\": \"one.safetensors\","
                  " \"x\": \"two.safetensors\"}}");
    assert_int_equal(safetensors_checkpoint_open(dir, &ckpt), PLM_ERR_FORMAT);
    write_text_in(dir, "model.safetensors.index.json",
                  "{\"weight_map\": {\"b\": \"one.safetensors\", \"a\": \"two.safetensors\"}}");
    assert_int_equal(safetensors_checkpoint_open(dir, &ckpt), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "appears twice"));
}

static void test_open_reports_path(void **state)
{
    (void)state;
    const char *path = temp_path("st-bad.safetensors");
    static const char bytes[] = "\x04\0\0\0\0\0\0\0{oops"; /* header "{oop" */
    write_bytes(path, (const uint8_t *)bytes, sizeof bytes - 1);
    struct safetensors_file *file;
    assert_int_equal(safetensors_open(path, &file), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), path));
    unlink(path);
}

/* ------------------------------------------------------------- real model */

static void test_real_tinystories(void **state)
{
    (void)state;
    const char *path = shared_path("models/tinystories-656k/model.safetensors");
    if (!path)
        skip();
    struct safetensors_file *file;
    assert_int_equal(safetensors_open(path, &file), PLM_OK);
    assert_int_equal(file->n_tensors, 20);
    const struct safetensors_tensor *head = safetensors_find(file, "lm_head.weight");
    assert_non_null(head);
    assert_int_equal(head->dtype, SAFETENSORS_F32);
    assert_int_equal(head->shape[0], 2048);
    assert_int_equal(head->shape[1], 128);
    const struct safetensors_tensor *k = safetensors_find(file, "model.layers.1.self_attn.k_proj.weight");
    assert_non_null(k);
    assert_int_equal(k->shape[0], 64);
    assert_int_equal(k->shape[1], 128);
    assert_null(safetensors_find(file, "model.embed_tokens.weight"));
    safetensors_free(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_empty_header_object),
        cmocka_unit_test(test_bad_header_length),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_shape_offset_mismatch),
        cmocka_unit_test(test_offsets_out_of_range),
        cmocka_unit_test(test_overlap_and_gaps),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_single_file_checkpoint),
        cmocka_unit_test(test_sharded_checkpoint),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_open_reports_path),
        cmocka_unit_test(test_real_tinystories),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    remove_made_dirs();
    return failed;
}
