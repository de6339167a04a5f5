/*
 * Cross-check against an independent GGUF parser: files written by pocketlm's
 * writer, and real files written by ggml, are read both by pocketlm's reader
 * and by @huggingface/gguf (tests/reference/gguf_dump.mjs, run with node), and
 * every key, value type, value, tensor info and the data offset must agree.
 *
 * Needs node and the package: `npm ci --prefix tests/reference`. Skips (77)
 * without them.
 */
#include "test_util.h"

#include "core/error.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "tensor/types.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tests/reference beside this source file (CMake compiles it by absolute path). */
static char reference_dir[4096];

static void find_reference_dir(void)
{
    char source[4096];
    snprintf(source, sizeof source, "%s", __FILE__);
    snprintf(reference_dir, sizeof reference_dir, "%s/reference", dirname(source));
}

static bool reference_available(void)
{
    char package[4200];
    snprintf(package, sizeof package, "%s/node_modules/@huggingface/gguf/package.json",
             reference_dir);
    if (system("node --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipping: node is not installed\n");
        return false;
    }
    if (access(package, R_OK) != 0) {
        fprintf(stderr, "skipping: %s not found (run `npm ci --prefix tests/reference`)\n", package);
        return false;
    }
    return true;
}

/* The reference parser's view of a file, as JSON. */
static cJSON *reference_dump(const char *path)
{
    assert_null(strchr(path, '\''));
    assert_null(strchr(reference_dir, '\''));
    char command[8400];
    snprintf(command, sizeof command, "node '%s/gguf_dump.mjs' '%s'", reference_dir, path);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    size_t size = 0, capacity = 1 << 20;
    char *text = malloc(capacity + 1);
    size_t n;
    while ((n = fread(text + size, 1, capacity - size, pipe)) > 0) {
        size += n;
        if (size == capacity) {
            capacity *= 2;
            text = realloc(text, capacity + 1);
        }
    }
    text[size] = '\0';
    int status = pclose(pipe);
    if (status != 0)
        fail_msg("`%s` failed (status %d)", command, status);
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (!json)
        fail_msg("the reference dump of %s is not JSON", path);
    return json;
}

static const cJSON *member(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (!item)
        fail_msg("reference output has no '%s'", name);
    return item;
}

/* 64-bit integers arrive as decimal strings (JavaScript BigInt). */
static void assert_json_u64(const cJSON *item, uint64_t expected, const char *what)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, expected);
    if (!cJSON_IsString(item) || strcmp(item->valuestring, text) != 0)
        fail_msg("%s: reference says %s, pocketlm %s", what,
                 cJSON_IsString(item) ? item->valuestring : "(not a string)", text);
}

static void assert_json_number(const cJSON *item, double expected, const char *what)
{
    if (!cJSON_IsNumber(item) || item->valuedouble != expected)
        fail_msg("%s: reference says %.17g, pocketlm %.17g", what,
                 cJSON_IsNumber(item) ? item->valuedouble : NAN, expected);
}

/* The reference decodes strings with JavaScript's TextDecoder, which drops a
 * leading byte order mark (U+FEFF, a real token of the Llama vocabulary). */
static bool same_string(struct gguf_str ours, const char *reference)
{
    static const char bom[] = "\xef\xbb\xbf";
    if (ours.len >= 3 && memcmp(ours.ptr, bom, 3) == 0) {
        ours.ptr += 3;
        ours.len -= 3;
    }
    return strlen(reference) == ours.len && memcmp(reference, ours.ptr, ours.len) == 0;
}

/* Compares element i of kv (the file is little-endian, like the host). */
static void assert_element_matches(const struct gguf_kv *kv, uint64_t i, const cJSON *value)
{
    char what[256];
    snprintf(what, sizeof what, "key '%s' element %" PRIu64, kv->key, i);
    int64_t i64;
    float f32;
    double f64;
    uint64_t u64;
    switch (kv->elem_type) {
    case GGUF_TYPE_UINT64:
        memcpy(&u64, kv->data + 8 * i, 8);
        assert_json_u64(value, u64, what);
        break;
    case GGUF_TYPE_INT64: {
        char text[32];
        memcpy(&i64, kv->data + 8 * i, 8);
        snprintf(text, sizeof text, "%" PRId64, i64);
        if (!cJSON_IsString(value) || strcmp(value->valuestring, text) != 0)
            fail_msg("%s: reference disagrees with %s", what, text);
        break;
    }
    case GGUF_TYPE_FLOAT32:
        assert_true(gguf_array_f32(kv, i, &f32));
        assert_json_number(value, f32, what);
        break;
    case GGUF_TYPE_FLOAT64:
        memcpy(&f64, kv->data + 8 * i, 8);
        assert_json_number(value, f64, what);
        break;
    case GGUF_TYPE_BOOL:
        if (!cJSON_IsBool(value) || cJSON_IsTrue(value) != (kv->data[i] != 0))
            fail_msg("%s: reference disagrees on a bool", what);
        break;
    case GGUF_TYPE_STRING:
        if (!cJSON_IsString(value) || !same_string(kv->strings[i], value->valuestring))
            fail_msg("%s: reference says '%s', pocketlm '%.*s'", what,
                     cJSON_IsString(value) ? value->valuestring : "(not a string)",
                     (int)kv->strings[i].len, kv->strings[i].ptr);
        break;
    default: /* integers of 32 bits or less */
        assert_true(gguf_array_i64(kv, i, &i64));
        assert_json_number(value, (double)i64, what);
        break;
    }
}

static void assert_kv_matches(const struct gguf_kv *kv, const cJSON *entry)
{
    assert_json_number(member(entry, "type"), kv->type, kv->key);
    const cJSON *value = member(entry, "value");
    if (kv->type != GGUF_TYPE_ARRAY) {
        assert_element_matches(kv, 0, value);
        return;
    }
    assert_json_number(member(entry, "subType"), kv->elem_type, kv->key);
    assert_true(cJSON_IsArray(value));
    assert_int_equal(cJSON_GetArraySize(value), kv->count);
    uint64_t i = 0;
    const cJSON *element;
    cJSON_ArrayForEach(element, value)
        assert_element_matches(kv, i++, element);
}

static void assert_tensor_matches(const struct gguf_tensor *t, const cJSON *info)
{
    const cJSON *name = member(info, "name");
    assert_true(cJSON_IsString(name));
    assert_string_equal(name->valuestring, t->name);
    assert_json_number(member(info, "n_dims"), t->n_dims, t->name);
    assert_json_number(member(info, "dtype"), t->type, t->name);
    assert_json_u64(member(info, "offset"), t->offset, t->name);
    const cJSON *shape = member(info, "shape");
    assert_int_equal(cJSON_GetArraySize(shape), t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++)
        assert_json_u64(cJSON_GetArrayItem(shape, (int)d), (uint64_t)t->ne[d], t->name);
}

/* Reads path with both parsers and requires them to agree on everything. */
static void assert_readers_agree(const char *path)
{
    struct gguf_file *file;
    if (gguf_open(path, &file) != PLM_OK)
        fail_msg("%s", plm_last_error());
    cJSON *dump = reference_dump(path);

    assert_json_number(member(dump, "version"), file->version, "version");
    assert_json_u64(member(dump, "tensor_count"), file->n_tensors, "tensor_count");
    assert_json_u64(member(dump, "kv_count"), file->n_kv, "kv_count");
    assert_json_u64(member(dump, "tensor_data_offset"), file->data_offset, "tensor_data_offset");

    const cJSON *metadata = member(dump, "metadata");
    assert_int_equal(cJSON_GetArraySize(metadata), file->n_kv);
    for (uint64_t i = 0; i < file->n_kv; i++)
        assert_kv_matches(&file->kv[i], member(metadata, file->kv[i].key));

    const cJSON *tensors = member(dump, "tensors");
    assert_int_equal(cJSON_GetArraySize(tensors), file->n_tensors);
    for (uint64_t i = 0; i < file->n_tensors; i++)
        assert_tensor_matches(&file->tensors[i], cJSON_GetArrayItem(tensors, (int)i));

    cJSON_Delete(dump);
    gguf_free(file);
}

/* ------------------------------------------------------------------- tests */

static void test_writer_output_reads_the_same_in_both(void **state)
{
    (void)state;
    const uint8_t u8s[] = {0, 200, 255};
    const int8_t i8s[] = {-128, 5, 127};
    const uint16_t u16s[] = {65535, 1};
    const int16_t i16s[] = {-32768, 32767};
    const uint32_t u32s[] = {0xFFFFFFFFu, 0};
    const int32_t i32s[] = {INT32_MIN, INT32_MAX, -1};
    const float f32s[] = {0.1f, -2.5e-8f, 3.4e38f};
    const bool bools[] = {false, true};
    const uint64_t u64s[] = {UINT64_MAX, 9007199254740993ull}; /* 2^53 + 1: not a double */
    const int64_t i64s[] = {INT64_MIN, -9007199254740993ll};
    const double f64s[] = {0.1, -1e-300};
    const char *strings[] = {"plain", "", "ünïcödé ▁ 你好", "tab\tnewline\nquote\""};
    static uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13);
    const int64_t ne_matrix[2] = {64, 3}, ne_vector[1] = {5}, ne_4d[4] = {256, 2, 1, 3};

    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "general.alignment", 64);
    gguf_writer_set_u32(w, "s.u32", 4000000000u);
    gguf_writer_set_i32(w, "s.i32", -7);
    gguf_writer_set_u64(w, "s.u64", 1ull << 60);
    gguf_writer_set_f32(w, "s.f32", 1e-5f);
    gguf_writer_set_bool(w, "s.bool", true);
    gguf_writer_set_str(w, "s.empty", "");
    gguf_writer_set_array(w, "a.u8", GGUF_TYPE_UINT8, u8s, 3);
    gguf_writer_set_array(w, "a.i8", GGUF_TYPE_INT8, i8s, 3);
    gguf_writer_set_array(w, "a.u16", GGUF_TYPE_UINT16, u16s, 2);
    gguf_writer_set_array(w, "a.i16", GGUF_TYPE_INT16, i16s, 2);
    gguf_writer_set_array(w, "a.u32", GGUF_TYPE_UINT32, u32s, 2);
    gguf_writer_set_array(w, "a.i32", GGUF_TYPE_INT32, i32s, 3);
    gguf_writer_set_array(w, "a.f32", GGUF_TYPE_FLOAT32, f32s, 3);
    gguf_writer_set_array(w, "a.bool", GGUF_TYPE_BOOL, bools, 2);
    gguf_writer_set_array(w, "a.u64", GGUF_TYPE_UINT64, u64s, 2);
    gguf_writer_set_array(w, "a.i64", GGUF_TYPE_INT64, i64s, 2);
    gguf_writer_set_array(w, "a.f64", GGUF_TYPE_FLOAT64, f64s, 2);
    gguf_writer_set_array(w, "a.empty", GGUF_TYPE_FLOAT32, NULL, 0);
    gguf_writer_set_str_array(w, "a.strings", strings, NULL, 4);
    gguf_writer_set_str_array(w, "a.no_strings", NULL, NULL, 0);
    assert_int_equal(gguf_writer_add_tensor(w, "q8", PLM_TYPE_Q8_0, ne_matrix, 2, data), PLM_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "f32", PLM_TYPE_F32, ne_vector, 1, data), PLM_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "q4k", PLM_TYPE_Q4_K, ne_4d, 4, data), PLM_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "bf16", PLM_TYPE_BF16, ne_matrix, 2, data), PLM_OK);
    const char *path = temp_path("reference.gguf");
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);

    assert_readers_agree(path);
    unlink(path);
}

static void test_real_files_read_the_same_in_both(void **state)
{
    (void)state;
    const char *files[] = {"models/gguf-vocab/ggml-vocab-llama-spm.gguf",
                           "models/gguf-vocab/ggml-vocab-gpt-2.gguf"};
    int n_found = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *path = shared_path(files[i]);
        if (path) {
            assert_readers_agree(path);
            n_found++;
        }
    }
    if (n_found == 0)
        skip();
}

int main(void)
{
    find_reference_dir();
    if (!reference_available())
        return PLM_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_output_reads_the_same_in_both),
        cmocka_unit_test(test_real_files_read_the_same_in_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
