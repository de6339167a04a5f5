/*
 * Device profiles: what a phone, a board or a laptop offers an on-device model
 * (the memory one app may use and the memory bandwidth that bounds decoding),
 * read from a JSON array. The profiles in data/devices.json are built into the
 * library; docs/devices.md gives their sources and the file format.
 *
 * A profile file is small and written by hand, so every field is checked and a
 * mistake is reported by entry and field rather than producing a silly verdict.
 */
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "tensor/types.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* data/devices.json, embedded by cmake/embed.cmake (NUL-terminated). */
extern const char plm_builtin_devices_json[];
extern const unsigned long plm_builtin_devices_json_size;

/* Sanity bounds: a figure outside them is a typo (a missing zero, GB for GiB
 * in the wrong field), not a device. */
#define MIN_MEMORY_BYTES (64ull << 20)     /* 64 MiB */
#define MAX_MEMORY_BYTES (64ull << 40)     /* 64 TiB */
#define MIN_BANDWIDTH 1e8                  /* 100 MB/s */
#define MAX_BANDWIDTH 1e13                 /* 10 TB/s */
#define MAX_STRING_BYTES 4096

struct plm_device_list {
    int count;
    struct plm_device *devices; /* strings are the list's own copies */
};

/* Where a profile comes from and which entry is being read, for messages. */
struct entry_context {
    const char *origin; /* the file's path or "built-in profiles" */
    int index;          /* 0-based */
    const char *id;     /* NULL until the id has been read */
};

static int entry_fail(const struct entry_context *at, const char *field, const char *problem)
{
    if (at->id)
        return plm_fail(PLM_ERR_FORMAT, "devices: %s: entry %d (\"%s\"): field '%s' %s", at->origin,
                        at->index + 1, at->id, field, problem);
    return plm_fail(PLM_ERR_FORMAT, "devices: %s: entry %d: field '%s' %s", at->origin, at->index + 1, field,
                    problem);
}

/* A required (or, with optional, possibly absent) non-empty string field,
 * copied into *out ("" for an absent optional field). */
static int read_string(const cJSON *entry, const char *field, bool optional, const struct entry_context *at,
                       const char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, field);
    if (!item && optional) {
        *out = strdup("");
        return *out ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "devices: out of memory");
    }
    if (!item)
        return entry_fail(at, field, "is missing");
    if (!cJSON_IsString(item))
        return entry_fail(at, field, "must be a string");
    size_t len = strlen(item->valuestring);
    if (len == 0)
        return entry_fail(at, field, "is empty");
    if (len > MAX_STRING_BYTES)
        return entry_fail(at, field, "is longer than 4096 bytes");
    *out = strdup(item->valuestring);
    return *out ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "devices: out of memory");
}

/* A required number within [min, max]; whole numbers only when integral. */
static int read_number(const cJSON *entry, const char *field, double min, double max, bool integral,
                       const struct entry_context *at, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, field);
    if (!item)
        return entry_fail(at, field, "is missing");
    if (!cJSON_IsNumber(item))
        return entry_fail(at, field, "must be a number");
    double v = item->valuedouble;
    char problem[160];
    if (!(v > 0)) {
        snprintf(problem, sizeof problem, "must be positive, not %g", v);
        return entry_fail(at, field, problem);
    }
    if (integral && v != floor(v)) {
        snprintf(problem, sizeof problem, "must be a whole number of bytes, not %g", v);
        return entry_fail(at, field, problem);
    }
    if (v < min || v > max) {
        snprintf(problem, sizeof problem, "is %g, outside the plausible range %g .. %g", v, min, max);
        return entry_fail(at, field, problem);
    }
    *out = v;
    return PLM_OK;
}

/* An identifier is typed on command lines: letters, digits, '-', '_' and '.'. */
static bool valid_id(const char *id)
{
    for (const char *c = id; *c; c++)
        if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') || *c == '-' ||
              *c == '_' || *c == '.'))
            return false;
    return true;
}

static const char *const known_fields[] = {
    "id", "name", "ram_bytes", "app_memory_bytes", "bandwidth_bytes_per_s", "source", "soc", "memory_type", "notes",
};

/* Unknown fields are refused so that a misspelt optional field is noticed. */
static int check_fields(const cJSON *entry, const struct entry_context *at)
{
    for (const cJSON *item = entry->child; item; item = item->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof known_fields / sizeof known_fields[0]; i++)
            known = known || strcmp(item->string, known_fields[i]) == 0;
        if (!known)
            return entry_fail(at, item->string, "is not a profile field (known: id, name, ram_bytes, "
                                                "app_memory_bytes, bandwidth_bytes_per_s, source, soc, "
                                                "memory_type, notes)");
    }
    return PLM_OK;
}

static void free_device_strings(struct plm_device *d)
{
    free((char *)d->id);
    free((char *)d->name);
    free((char *)d->source);
    free((char *)d->soc);
    free((char *)d->memory_type);
    free((char *)d->notes);
}

/* Reads and checks one entry into *d (whose strings are owned by the caller
 * afterwards, also on failure: they are NULL or copies). */
static int read_device(const cJSON *entry, struct entry_context *at, struct plm_device *d)
{
    if (!cJSON_IsObject(entry))
        return plm_fail(PLM_ERR_FORMAT, "devices: %s: entry %d is not an object", at->origin, at->index + 1);
    int rc = read_string(entry, "id", false, at, &d->id);
    if (rc)
        return rc;
    at->id = d->id;
    if (!valid_id(d->id))
        return entry_fail(at, "id", "may hold only letters, digits, '-', '_' and '.'");
    double ram, app_memory;
    if ((rc = check_fields(entry, at)) || (rc = read_string(entry, "name", false, at, &d->name)) ||
        (rc = read_string(entry, "source", false, at, &d->source)) ||
        (rc = read_string(entry, "soc", true, at, &d->soc)) ||
        (rc = read_string(entry, "memory_type", true, at, &d->memory_type)) ||
        (rc = read_string(entry, "notes", true, at, &d->notes)) ||
        (rc = read_number(entry, "ram_bytes", MIN_MEMORY_BYTES, MAX_MEMORY_BYTES, true, at, &ram)) ||
        (rc = read_number(entry, "app_memory_bytes", MIN_MEMORY_BYTES, MAX_MEMORY_BYTES, true, at, &app_memory)) ||
        (rc = read_number(entry, "bandwidth_bytes_per_s", MIN_BANDWIDTH, MAX_BANDWIDTH, false, at, &d->bandwidth)))
        return rc;
    if (app_memory > ram) {
        char problem[160];
        snprintf(problem, sizeof problem, "(%.0f) exceeds ram_bytes (%.0f)", app_memory, ram);
        return entry_fail(at, "app_memory_bytes", problem);
    }
    d->ram_bytes = (uint64_t)ram;
    d->app_memory_bytes = (uint64_t)app_memory;
    return PLM_OK;
}

static int read_devices(const cJSON *root, const char *origin, struct plm_device_list *list)
{
    if (!cJSON_IsArray(root))
        return plm_fail(PLM_ERR_FORMAT, "devices: %s: expected a JSON array of device objects", origin);
    int n = cJSON_GetArraySize(root);
    if (n == 0)
        return plm_fail(PLM_ERR_FORMAT, "devices: %s: the array holds no devices", origin);
    list->devices = calloc((size_t)n, sizeof *list->devices);
    if (!list->devices)
        return plm_fail(PLM_ERR_NOMEM, "devices: out of memory");
    const cJSON *entry = root->child;
    for (int i = 0; i < n; i++, entry = entry->next) {
        struct entry_context at = {origin, i, NULL};
        list->count = i + 1; /* so that plm_devices_free releases this entry's strings */
        int rc = read_device(entry, &at, &list->devices[i]);
        if (rc)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcasecmp(list->devices[j].id, list->devices[i].id) == 0)
                return entry_fail(&at, "id", "repeats the id of an earlier entry (ids are case-insensitive)");
    }
    return PLM_OK;
}

static int parse_devices(const char *text, size_t size, const char *origin, plm_device_list **devices)
{
    cJSON *root = cJSON_ParseWithLength(text, size);
    if (!root) {
        const char *where = cJSON_GetErrorPtr();
        long offset = where && where >= text && where <= text + size ? (long)(where - text) : 0;
        return plm_fail(PLM_ERR_FORMAT, "devices: %s: not valid JSON (near byte %ld)", origin, offset);
    }
    struct plm_device_list *list = calloc(1, sizeof *list);
    int rc = list ? read_devices(root, origin, list) : plm_fail(PLM_ERR_NOMEM, "devices: out of memory");
    cJSON_Delete(root);
    if (rc) {
        plm_devices_free(list);
        return rc;
    }
    *devices = list;
    return PLM_OK;
}

int plm_devices_load(const char *path, plm_device_list **devices)
{
    *devices = NULL;
    if (!path)
        return parse_devices(plm_builtin_devices_json, plm_builtin_devices_json_size, "built-in profiles", devices);
    char *text;
    size_t size;
    int rc = read_whole_file(path, &text, &size);
    if (rc)
        return rc;
    rc = parse_devices(text, size, path, devices);
    free(text);
    return rc;
}

void plm_devices_free(plm_device_list *devices)
{
    if (!devices)
        return;
    for (int i = 0; i < devices->count; i++)
        free_device_strings(&devices->devices[i]);
    free(devices->devices);
    free(devices);
}

int plm_devices_count(const plm_device_list *devices) { return devices->count; }

const struct plm_device *plm_devices_get(const plm_device_list *devices, int i)
{
    return i >= 0 && i < devices->count ? &devices->devices[i] : NULL;
}

const struct plm_device *plm_devices_find(const plm_device_list *devices, const char *id)
{
    if (!id)
        id = "";
    for (int i = 0; i < devices->count; i++)
        if (strcasecmp(devices->devices[i].id, id) == 0)
            return &devices->devices[i];
    char known[768] = "";
    size_t used = 0;
    for (int i = 0; i < devices->count && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", devices->devices[i].id);
    plm_fail(PLM_ERR_ARG, "unknown device '%s' (known: %s)", id, known);
    return NULL;
}

/* Bytes per cached value in the session's KV type, relative to F32: what
 * plm_model_token_cost assumes. */
static double kv_bytes_scale(const plm_model *model, enum plm_kv_type kv_type)
{
    int type = kv_type == PLM_KV_F16 ? PLM_TYPE_F16 : kv_type == PLM_KV_Q8_0 ? PLM_TYPE_Q8_0 : PLM_TYPE_F32;
    int64_t kv_dim = (int64_t)model->hp.n_head_kv * model->hp.head_dim;
    return (double)plm_row_bytes(type, kv_dim) / (double)plm_row_bytes(PLM_TYPE_F32, kv_dim);
}

void plm_device_fit(const struct plm_device *device, const plm_model *model,
                    const struct plm_session_params *params, struct plm_device_fit *fit)
{
    struct plm_session_params p = params ? *params : (struct plm_session_params){0};
    if (p.n_ctx <= 0)
        p.n_ctx = model->hp.n_ctx_train;
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    /* The weights are mapped, not allocated, but decoding touches all of them for
     * every token, so they must stay resident: they count against the app's memory
     * just as in plm_session_max_ctx and --mem-budget, with the vocabulary and tables. */
    fit->memory_needed = info.weight_bytes + info.host_bytes + plm_session_memory_needed(model, &p);
    fit->fits = fit->memory_needed <= device->app_memory_bytes;
    struct plm_token_cost cost;
    plm_model_token_cost(model, p.n_ctx / 2, &cost);
    double bytes_per_token = (double)cost.weight_bytes + (double)cost.kv_bytes * kv_bytes_scale(model, p.kv_type);
    fit->max_tokens_per_s = device->bandwidth / bytes_per_token;
}
