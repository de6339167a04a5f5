/*
 * Device profiles: the built-in list, hostile profile files, lookup by id, and
 * the fit verdict against a direct computation.
 */
#include "pocketlm.h"
#include "tensor/types.h"
#include "test_util.h"
#include "tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The devices the issue asks for; the built-in list must keep them. */
static const char *const required_ids[] = {
    "iphone-15-pro", "iphone-16", "pixel-8", "galaxy-s24", "raspberry-pi-5", "laptop-16gb",
};

/* One valid entry, spliced into the hostile files below. */
#define GOOD_ENTRY                                                                                                \
    "{\"id\": \"board-a\", \"name\": \"Board A\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 3000000000, " \
    "\"bandwidth_bytes_per_s\": 1.7e10, \"source\": \"datasheet\"}"

static const char *write_text(const char *tag, const char *text)
{
    const char *path = temp_path(tag);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_builtin_profiles(void **state)
{
    (void)state;
    plm_device_list *devices;
    assert_int_equal(plm_devices_load(NULL, &devices), PLM_OK);
    int n = plm_devices_count(devices);
    assert_true(n >= (int)(sizeof required_ids / sizeof required_ids[0]));
    for (size_t i = 0; i < sizeof required_ids / sizeof required_ids[0]; i++) {
        const struct plm_device *d = plm_devices_find(devices, required_ids[i]);
        assert_non_null(d);
        assert_string_equal(d->id, required_ids[i]);
    }
    for (int i = 0; i < n; i++) {
        const struct plm_device *d = plm_devices_get(devices, i);
        assert_non_null(d);
        /* Every device here has between 1 and 64 GiB, lets an app use at least
         * a third of it, and reads memory at 5 to 500 GB/s. */
        assert_true(d->ram_bytes >= (1ull << 30) && d->ram_bytes <= (64ull << 30));
        assert_true(d->app_memory_bytes <= d->ram_bytes);
        assert_true(d->app_memory_bytes * 3 >= d->ram_bytes);
        assert_true(d->bandwidth >= 5e9 && d->bandwidth <= 5e11);
        assert_true(strlen(d->name) > 0);
        /* The source accounts for each of the three figures. */
        assert_true(strlen(d->source) > 40);
        assert_non_null(strstr(d->source, "RAM"));
        assert_non_null(strstr(d->source, "Bandwidth"));
        assert_non_null(strstr(d->source, "App memory"));
        assert_true(strlen(d->soc) > 0 && strlen(d->memory_type) > 0);
    }
    assert_null(plm_devices_get(devices, n));
    assert_null(plm_devices_get(devices, -1));
    plm_devices_free(devices);
}

/* A profile file of our own, with every field read back exactly. */
static void test_custom_file(void **state)
{
    (void)state;
    const char *path = write_text("devices_ok.json",
                                  "[" GOOD_ENTRY ",\n {\"id\": \"Board.B_2\", \"name\": \"Board B\", "
                                  "\"ram_bytes\": 1073741824, \"app_memory_bytes\": 1073741824, "
                                  "\"bandwidth_bytes_per_s\": 100000000, \"source\": \"measured\", "
                                  "\"soc\": \"X1\", \"memory_type\": \"LPDDR4\", \"notes\": \"n\"}]");
    plm_device_list *devices;
    assert_int_equal(plm_devices_load(path, &devices), PLM_OK);
    assert_int_equal(plm_devices_count(devices), 2);
    const struct plm_device *a = plm_devices_get(devices, 0);
    assert_string_equal(a->id, "board-a");
    assert_string_equal(a->name, "Board A");
    assert_true(a->ram_bytes == 4294967296ull);
    assert_true(a->app_memory_bytes == 3000000000ull);
    assert_true(a->bandwidth == 1.7e10);
    assert_string_equal(a->source, "datasheet");
    assert_string_equal(a->soc, ""); /* optional fields absent: empty */
    assert_string_equal(a->notes, "");
    const struct plm_device *b = plm_devices_get(devices, 1);
    assert_true(b->app_memory_bytes == b->ram_bytes); /* equal is allowed */
    assert_true(b->bandwidth == 1e8);                 /* the lower bound is allowed */
    assert_string_equal(b->soc, "X1");
    assert_string_equal(b->memory_type, "LPDDR4");
    plm_devices_free(devices);
}

struct bad_profile {
    const char *what;
    const char *json;
    const char *message; /* a part of the error message */
};

static const struct bad_profile bad_profiles[] = {
    {"empty file", "", "not valid JSON"},
    {"truncated", "[" GOOD_ENTRY, "not valid JSON"},
    {"not an array", "{\"id\": \"x\"}", "expected a JSON array"},
    {"empty array", "[]", "holds no devices"},
    {"entry not an object", "[" GOOD_ENTRY ", 7]", "entry 2 is not an object"},
    {"missing id", "[{\"name\": \"n\"}]", "entry 1: field 'id' is missing"},
    {"missing bandwidth",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, \"source\": \"s\"}]",
     "entry 1 (\"x\"): field 'bandwidth_bytes_per_s' is missing"},
    {"missing source",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 1e10}]",
     "field 'source' is missing"},
    {"id not a string", "[{\"id\": 8}]", "field 'id' must be a string"},
    {"ram as text",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": \"8GB\", \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "field 'ram_bytes' must be a number"},
    {"negative app memory",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": -1, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "field 'app_memory_bytes' must be positive"},
    {"zero bandwidth",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 0, \"source\": \"s\"}]",
     "field 'bandwidth_bytes_per_s' must be positive"},
    {"bandwidth in GB/s by mistake",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 60, \"source\": \"s\"}]",
     "field 'bandwidth_bytes_per_s' is 60, outside the plausible range"},
    {"bandwidth too high",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 2e13, \"source\": \"s\"}]",
     "outside the plausible range"},
    {"ram in GB by mistake",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 8, \"app_memory_bytes\": 4, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "field 'ram_bytes' is 8, outside the plausible range"},
    {"fractional bytes",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296.5, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "whole number of bytes"},
    {"app memory over RAM",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 4294967297, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "field 'app_memory_bytes' (4294967297) exceeds ram_bytes (4294967296)"},
    {"duplicate id, other case",
     "[" GOOD_ENTRY ", {\"id\": \"BOARD-A\", \"name\": \"n\", \"ram_bytes\": 4294967296, "
     "\"app_memory_bytes\": 1e9, \"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "entry 2 (\"BOARD-A\"): field 'id' repeats the id of an earlier entry"},
    {"empty name",
     "[{\"id\": \"x\", \"name\": \"\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\"}]",
     "field 'name' is empty"},
    {"id with a space", "[{\"id\": \"pixel 8\"}]", "field 'id' may hold only letters"},
    {"misspelt field",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\", \"note\": \"typo\"}]",
     "field 'note' is not a profile field"},
    {"optional field of the wrong type",
     "[{\"id\": \"x\", \"name\": \"n\", \"ram_bytes\": 4294967296, \"app_memory_bytes\": 1e9, "
     "\"bandwidth_bytes_per_s\": 1e10, \"source\": \"s\", \"soc\": 3}]",
     "field 'soc' must be a string"},
};

static void test_bad_profiles(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_profiles / sizeof bad_profiles[0]; i++) {
        const struct bad_profile *b = &bad_profiles[i];
        const char *path = write_text("devices_bad.json", b->json);
        plm_device_list *devices = (plm_device_list *)&devices; /* must be reset to NULL */
        int rc = plm_devices_load(path, &devices);
        if (rc != PLM_ERR_FORMAT || !strstr(plm_last_error(), b->message) || !strstr(plm_last_error(), path))
            fail_msg("%s: status %d, message '%s', expected '%s'", b->what, rc, plm_last_error(), b->message);
        assert_null(devices);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    plm_device_list *devices;
    assert_int_equal(plm_devices_load("/nonexistent/devices.json", &devices), PLM_ERR_IO);
    assert_non_null(strstr(plm_last_error(), "/nonexistent/devices.json"));
    assert_null(devices);
}

/* Every prefix of a valid file is refused cleanly (ASan checks for stray reads). */
static void test_every_truncation(void **state)
{
    (void)state;
    const char *full = "[" GOOD_ENTRY "]";
    char prefix[512];
    size_t n = strlen(full);
    assert_true(n < sizeof prefix);
    for (size_t len = 0; len < n; len++) {
        memcpy(prefix, full, len);
        prefix[len] = '\0';
        plm_device_list *devices;
        assert_int_equal(plm_devices_load(write_text("devices_cut.json", prefix), &devices), PLM_ERR_FORMAT);
        assert_null(devices);
    }
    plm_device_list *devices;
    assert_int_equal(plm_devices_load(write_text("devices_cut.json", full), &devices), PLM_OK);
    plm_devices_free(devices);
}

static void test_find(void **state)
{
    (void)state;
    plm_device_list *devices;
    assert_int_equal(plm_devices_load(NULL, &devices), PLM_OK);
    const struct plm_device *pixel = plm_devices_find(devices, "pixel-8");
    assert_non_null(pixel);
    assert_ptr_equal(plm_devices_find(devices, "PIXEL-8"), pixel);
    assert_ptr_equal(plm_devices_find(devices, "Pixel-8"), pixel);
    assert_null(plm_devices_find(devices, "pixel-8x"));
    assert_null(plm_devices_find(devices, "pixel"));
    assert_null(plm_devices_find(devices, ""));
    /* The message names the id asked for and lists every known one. */
    const char *message = plm_last_error();
    assert_non_null(strstr(message, "unknown device ''"));
    for (int i = 0; i < plm_devices_count(devices); i++)
        assert_non_null(strstr(message, plm_devices_get(devices, i)->id));
    plm_devices_free(devices);
}

static plm_model *load_tiny_model(void)
{
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 128, .n_ff = 256, .n_layer = 2, .n_head = 4,
                                   .n_head_kv = 2, .head_dim = 64, .n_ctx_train = 512,
                                   .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
                                   .weight_type = PLM_TYPE_Q8_0, .seed = 9};
    const char *path = temp_path("devices_model.gguf");
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    return model;
}

/* What plm_device_fit should say, from the functions it is built on: the KV
 * bytes of plm_model_token_cost are F32 and are scaled to the cache's type. */
static void expected_fit(const struct plm_device *device, const plm_model *model,
                         const struct plm_session_params *params, int kv_type, struct plm_device_fit *fit)
{
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    fit->memory_needed = info.weight_bytes + info.host_bytes + plm_session_memory_needed(model, params);
    fit->fits = fit->memory_needed <= device->app_memory_bytes;
    struct plm_token_cost cost;
    plm_model_token_cost(model, params->n_ctx / 2, &cost);
    int64_t kv_dim = (int64_t)info.n_head_kv * info.head_dim;
    double kv_scale = (double)plm_row_bytes(kv_type, kv_dim) / (double)(kv_dim * sizeof(float));
    fit->max_tokens_per_s = device->bandwidth / ((double)cost.weight_bytes + (double)cost.kv_bytes * kv_scale);
}

static void test_fit_matches_direct_computation(void **state)
{
    (void)state;
    plm_model *model = load_tiny_model();
    struct plm_device device = {.id = "test", .name = "Test", .ram_bytes = 1ull << 34,
                                .app_memory_bytes = 1ull << 33, .bandwidth = 5e10, .source = "test"};
    const struct {
        enum plm_kv_type kv_type;
        int type;
    } kv_types[] = {{PLM_KV_F32, PLM_TYPE_F32}, {PLM_KV_F16, PLM_TYPE_F16}, {PLM_KV_Q8_0, PLM_TYPE_Q8_0}};
    const int contexts[] = {1, 2, 64, 511, 512};
    double previous_speed = 0;
    for (size_t k = 0; k < sizeof kv_types / sizeof kv_types[0]; k++) {
        for (size_t c = 0; c < sizeof contexts / sizeof contexts[0]; c++) {
            struct plm_session_params params = {.n_ctx = contexts[c], .n_threads = 2, .kv_type = kv_types[k].kv_type};
            struct plm_device_fit got, want;
            plm_device_fit(&device, model, &params, &got);
            expected_fit(&device, model, &params, kv_types[k].type, &want);
            assert_true(got.memory_needed == want.memory_needed);
            assert_true(got.fits == want.fits);
            assert_true(got.fits);
            assert_true(fabs(got.max_tokens_per_s - want.max_tokens_per_s) <= 1e-12 * want.max_tokens_per_s);
        }
        /* A smaller cache reads fewer bytes per token: faster at the same context. */
        struct plm_session_params params = {.n_ctx = 512, .n_threads = 2, .kv_type = kv_types[k].kv_type};
        struct plm_device_fit fit;
        plm_device_fit(&device, model, &params, &fit);
        assert_true(fit.max_tokens_per_s > previous_speed);
        previous_speed = fit.max_tokens_per_s;
    }
    /* n_ctx 0 is the model's training context, as for a session. */
    struct plm_session_params zero = {.n_ctx = 0, .n_threads = 2}, train = {.n_ctx = 512, .n_threads = 2};
    struct plm_device_fit a, b;
    plm_device_fit(&device, model, &zero, &a);
    plm_device_fit(&device, model, &train, &b);
    assert_true(a.memory_needed == b.memory_needed);
    assert_true(a.max_tokens_per_s == b.max_tokens_per_s);
    plm_model_free(model);
}

/* The verdict flips exactly at the memory needed. */
static void test_fit_threshold(void **state)
{
    (void)state;
    plm_model *model = load_tiny_model();
    struct plm_session_params params = {.n_ctx = 256, .n_threads = 2, .kv_type = PLM_KV_F16};
    struct plm_device device = {.id = "edge", .name = "Edge", .ram_bytes = 1ull << 34, .bandwidth = 1e10,
                                .source = "test"};
    struct plm_device_fit fit;
    device.app_memory_bytes = 1ull << 33;
    plm_device_fit(&device, model, &params, &fit);
    uint64_t need = fit.memory_needed;
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    assert_true(need > info.weight_bytes); /* weights and session both count */

    device.app_memory_bytes = need;
    plm_device_fit(&device, model, &params, &fit);
    assert_true(fit.fits);
    assert_true(plm_session_max_ctx(model, &params, device.app_memory_bytes) >= params.n_ctx);

    device.app_memory_bytes = need - 1;
    plm_device_fit(&device, model, &params, &fit);
    assert_false(fit.fits);
    assert_true(fit.memory_needed == need);
    assert_true(plm_session_max_ctx(model, &params, device.app_memory_bytes) < params.n_ctx);

    device.app_memory_bytes = need + 1;
    plm_device_fit(&device, model, &params, &fit);
    assert_true(fit.fits);
    plm_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_profiles),
        cmocka_unit_test(test_custom_file),
        cmocka_unit_test(test_bad_profiles),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_fit_matches_direct_computation),
        cmocka_unit_test(test_fit_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
