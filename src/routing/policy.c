/*
 * Reading the escalation policy file.
 *
 * The file is validated strictly, because a typo in a privacy policy must not
 * silently change what leaves the device: every field has a type and a range,
 * unknown or repeated fields are refused, and rules must name upstreams that
 * exist. Each message gives the field's path, what was expected and what the
 * file holds ("policy.json: upstreams[1].kind: expected one of ..., got ...").
 * Keys never appear in the file: an upstream names the environment variable
 * that holds its key, and that variable is only read when the upstream is used.
 */
#include "routing/policy.h"

#include "core/error.h"
#include "core/mapped_file.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The policy keeps the parsed JSON tree: its strings are the policy's strings. */
struct policy_storage {
    cJSON *root;
    char *terms_text; /* the terms file, split in place into lines */
};

struct policy_with_storage {
    struct plm_policy policy; /* first, so the public pointer is this struct's */
    struct policy_storage storage;
};

static const char *const kind_names[] = {"openai", "anthropic", "gemini"};
static const char *const default_base_urls[] = {
    "https://api.openai.com/v1",
    "https://api.anthropic.com",
    "https://generativelanguage.googleapis.com/v1beta",
};
static const char *const consent_names[] = {"never", "ask", "always"};
static const char *const trigger_names[] = {"context_overflow", "explicit", "uncertain", "always"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Defaults of an upstream's optional fields. */
#define DEFAULT_TIMEOUT_S 120.0
#define DEFAULT_CONNECT_TIMEOUT_S 10.0
#define DEFAULT_STALL_TIMEOUT_S 30.0
#define DEFAULT_MAX_RETRIES 2
#define DEFAULT_FIRST_TOKENS 16

/* ------------------------------------------------------------- messages */

/* What a JSON value is, for "got ..." in messages. */
static void describe(const cJSON *item, char *out, size_t size)
{
    if (cJSON_IsString(item)) {
        size_t len = strlen(item->valuestring);
        snprintf(out, size, "\"%.40s%s\"", item->valuestring, len > 40 ? "..." : "");
    } else if (cJSON_IsNumber(item)) {
        snprintf(out, size, "%g", item->valuedouble);
    } else if (cJSON_IsBool(item)) {
        snprintf(out, size, "%s", cJSON_IsTrue(item) ? "true" : "false");
    } else if (cJSON_IsNull(item)) {
        snprintf(out, size, "null");
    } else {
        snprintf(out, size, "%s", cJSON_IsArray(item) ? "an array" : "an object");
    }
}

struct reader {
    const char *source; /* the file's name in messages */
    const char *base_dir;
};

static int fail_at(const struct reader *r, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(const struct reader *r, const char *path, const char *fmt, ...)
{
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    return plm_fail(PLM_ERR_FORMAT, "%s: %s: %s", r->source, path, message);
}

static int fail_expected(const struct reader *r, const char *path, const char *expected, const cJSON *got)
{
    char description[64];
    describe(got, description, sizeof description);
    return fail_at(r, path, "expected %s, got %s", expected, description);
}

/* ----------------------------------------------------------- field access */

/* Refuses fields not in allowed (and fields given twice, which cJSON keeps). */
static int check_fields(const struct reader *r, const cJSON *object, const char *path, const char *const *allowed,
                        int n_allowed)
{
    if (!cJSON_IsObject(object))
        return fail_expected(r, path, "an object", object);
    for (const cJSON *field = object->child; field; field = field->next) {
        int known = 0;
        while (known < n_allowed && strcmp(field->string, allowed[known]) != 0)
            known++;
        if (strcmp(field->string, "api_key") == 0)
            return fail_at(r, path, "keys do not belong in the policy file: put the key in an environment "
                                    "variable and name the variable in \"api_key_env\"");
        if (known == n_allowed)
            return fail_at(r, path, "unknown field \"%.60s\"", field->string);
        for (const cJSON *other = object->child; other != field; other = other->next)
            if (strcmp(other->string, field->string) == 0)
                return fail_at(r, path, "field \"%s\" given twice", field->string);
    }
    return PLM_OK;
}

static void field_path(char *out, size_t size, const char *path, const char *key)
{
    snprintf(out, size, "%s%s%s", path, *path ? "." : "", key);
}

/* A string field; *value stays as it is when the field is absent and optional. */
static int get_string(const struct reader *r, const cJSON *object, const char *path, const char *key,
                      bool required, char **value)
{
    char here[160];
    field_path(here, sizeof here, path, key);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!item) {
        if (required)
            return fail_at(r, here, "missing (a string is required)");
        return PLM_OK;
    }
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0')
        return fail_expected(r, here, "a non-empty string", item);
    *value = item->valuestring;
    return PLM_OK;
}

static int get_number(const struct reader *r, const cJSON *object, const char *path, const char *key,
                      double min, double max, bool integer, double *value)
{
    char here[160], expected[96];
    field_path(here, sizeof here, path, key);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!item)
        return PLM_OK;
    snprintf(expected, sizeof expected, "%s from %g to %g", integer ? "an integer" : "a number", min, max);
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < min ||
        item->valuedouble > max || (integer && item->valuedouble != floor(item->valuedouble)))
        return fail_expected(r, here, expected, item);
    *value = item->valuedouble;
    return PLM_OK;
}

static int get_int(const struct reader *r, const cJSON *object, const char *path, const char *key, int min,
                   int max, int *value)
{
    double number = *value;
    int rc = get_number(r, object, path, key, min, max, true, &number);
    *value = (int)number;
    return rc;
}

/* A string that must be one of names; *value is its index. */
static int get_choice(const struct reader *r, const cJSON *object, const char *path, const char *key,
                      const char *const *names, int n_names, bool required, int *value)
{
    char *text = NULL;
    int rc = get_string(r, object, path, key, required, &text);
    if (rc || !text)
        return rc;
    for (int i = 0; i < n_names; i++)
        if (strcmp(text, names[i]) == 0) {
            *value = i;
            return PLM_OK;
        }
    char here[160], expected[160] = "one of";
    field_path(here, sizeof here, path, key);
    for (int i = 0; i < n_names; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s \"%s\"", i ? "," : "",
                 names[i]);
    return fail_expected(r, here, expected, cJSON_GetObjectItemCaseSensitive(object, key));
}

/* -------------------------------------------------------------- upstreams */

/* Upstream names appear in requests ("model") and in the audit: keep them plain. */
static bool is_plain_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64)
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return false;
    return true;
}

static bool is_env_name(const char *name)
{
    if (!isalpha((unsigned char)name[0]) && name[0] != '_')
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_')
            return false;
    return strlen(name) <= 128;
}

/* Gemini puts the model in the URL path; so may a careless base_url. */
static bool is_url_safe(const char *text)
{
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == '?' || *c == '#' || *c == '/' || *c == '%' || *c == 0x7f)
            return false;
    return true;
}

static int read_base_url(const struct reader *r, const cJSON *object, const char *path, struct plm_upstream *up)
{
    char *url = NULL;
    int rc = get_string(r, object, path, "base_url", false, &url);
    if (rc)
        return rc;
    if (!url) {
        up->base_url = default_base_urls[up->kind];
        return PLM_OK;
    }
    char here[160];
    field_path(here, sizeof here, path, "base_url");
    bool http = strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
    bool clean = true;
    for (const char *c = url; *c; c++)
        clean = clean && (unsigned char)*c > ' ' && *c != 0x7f && *c != '?' && *c != '#';
    if (!http || !clean)
        return fail_expected(r, here, "an http:// or https:// URL without spaces, query or fragment", 
                             cJSON_GetObjectItemCaseSensitive(object, "base_url"));
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        url[--len] = '\0';
    up->base_url = url;
    return PLM_OK;
}

static int read_upstream(const struct reader *r, const cJSON *object, const char *path, struct plm_upstream *up)
{
    static const char *const fields[] = {"name",    "kind",      "base_url",          "model",
                                         "api_key_env", "consent", "timeout_s",   "connect_timeout_s",
                                         "stall_timeout_s", "max_retries", "max_tokens"};
    int rc = check_fields(r, object, path, fields, COUNT(fields));
    int kind = 0, consent = PLM_CONSENT_ASK;
    char *name = NULL, *model = NULL, *key_env = NULL;
    if (rc || (rc = get_string(r, object, path, "name", true, &name)) ||
        (rc = get_choice(r, object, path, "kind", kind_names, COUNT(kind_names), true, &kind)) ||
        (rc = get_string(r, object, path, "model", true, &model)) ||
        (rc = get_string(r, object, path, "api_key_env", false, &key_env)) ||
        (rc = get_choice(r, object, path, "consent", consent_names, COUNT(consent_names), false, &consent)))
        return rc;
    char here[160];
    if (!is_plain_name(name)) {
        field_path(here, sizeof here, path, "name");
        return fail_expected(r, here, "1 to 64 letters, digits, '-', '_' or '.'",
                             cJSON_GetObjectItemCaseSensitive(object, "name"));
    }
    if (key_env && !is_env_name(key_env)) {
        /* The value is not shown: it may be the key itself, put in the wrong field. */
        field_path(here, sizeof here, path, "api_key_env");
        return fail_at(r, here, "expected the NAME of an environment variable (letters, digits and '_', "
                                "not starting with a digit), not a key; the value is not shown");
    }
    if (kind == PLM_UPSTREAM_GEMINI && !is_url_safe(model)) {
        field_path(here, sizeof here, path, "model");
        return fail_expected(r, here, "a Gemini model name without '/', '?', '#', '%' or spaces",
                             cJSON_GetObjectItemCaseSensitive(object, "model"));
    }
    *up = (struct plm_upstream){
        .name = name,
        .kind = (enum plm_upstream_kind)kind,
        .model = model,
        .api_key_env = key_env,
        .consent = (enum plm_consent)consent,
        .timeout_s = DEFAULT_TIMEOUT_S,
        .connect_timeout_s = DEFAULT_CONNECT_TIMEOUT_S,
        .stall_timeout_s = DEFAULT_STALL_TIMEOUT_S,
        .max_retries = DEFAULT_MAX_RETRIES,
    };
    if ((rc = read_base_url(r, object, path, up)) ||
        (rc = get_number(r, object, path, "timeout_s", 0.1, 3600, false, &up->timeout_s)) ||
        (rc = get_number(r, object, path, "connect_timeout_s", 0.1, 600, false, &up->connect_timeout_s)) ||
        (rc = get_number(r, object, path, "stall_timeout_s", 1, 3600, false, &up->stall_timeout_s)) ||
        (rc = get_int(r, object, path, "max_retries", 0, 10, &up->max_retries)) ||
        (rc = get_int(r, object, path, "max_tokens", 1, 1000000, &up->max_tokens)))
        return rc;
    return PLM_OK;
}

static int read_upstreams(const struct reader *r, const cJSON *list, struct plm_policy *policy)
{
    if (!list)
        return PLM_OK;
    if (!cJSON_IsArray(list))
        return fail_expected(r, "upstreams", "an array", list);
    int n = cJSON_GetArraySize(list);
    policy->upstreams = calloc(n ? (size_t)n : 1, sizeof *policy->upstreams);
    if (!policy->upstreams)
        return plm_fail(PLM_ERR_NOMEM, "policy: out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char path[64];
        int i = policy->n_upstreams;
        snprintf(path, sizeof path, "upstreams[%d]", i);
        int rc = read_upstream(r, item, path, &policy->upstreams[i]);
        if (rc)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(policy->upstreams[j].name, policy->upstreams[i].name) == 0)
                return fail_at(r, path, "name \"%s\" is already the name of upstreams[%d]",
                               policy->upstreams[i].name, j);
        policy->n_upstreams++;
    }
    return PLM_OK;
}

/* ------------------------------------------------------------------ rules */

static int find_upstream_index(const struct plm_policy *policy, const char *name)
{
    for (int i = 0; i < policy->n_upstreams; i++)
        if (strcmp(policy->upstreams[i].name, name) == 0)
            return i;
    return -1;
}

static int unknown_upstream(const struct reader *r, const struct plm_policy *policy, const char *path,
                            const cJSON *got)
{
    char expected[256] = "the name of an upstream";
    if (policy->n_upstreams == 0)
        snprintf(expected, sizeof expected, "the name of an upstream, but \"upstreams\" is empty");
    for (int i = 0; i < policy->n_upstreams && strlen(expected) < sizeof expected - 80; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s\"%s\"", i ? ", " : " (",
                 policy->upstreams[i].name);
    if (policy->n_upstreams > 0)
        strcat(expected, ")");
    return fail_expected(r, path, expected, got);
}

/* {"q": Q, "below"|"above": LIMIT} */
static int read_quantile_test(const struct reader *r, const cJSON *rule, const char *path, const char *key,
                              const char *limit_key, double limit_max, struct policy_quantile_test *test)
{
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(rule, key);
    if (!object)
        return PLM_OK;
    char here[160];
    field_path(here, sizeof here, path, key);
    const char *fields[] = {"q", limit_key};
    int rc = check_fields(r, object, here, fields, 2);
    if (rc)
        return rc;
    if (!cJSON_GetObjectItemCaseSensitive(object, "q") || !cJSON_GetObjectItemCaseSensitive(object, limit_key))
        return fail_at(r, here, "expected {\"q\": QUANTILE, \"%s\": LIMIT}", limit_key);
    test->enabled = true;
    if ((rc = get_number(r, object, here, "q", 0, 1, false, &test->q)) ||
        (rc = get_number(r, object, here, limit_key, 0, limit_max, false, &test->limit)))
        return rc;
    return PLM_OK;
}

static int read_rule(const struct reader *r, const cJSON *object, const char *path, const struct plm_policy *policy,
                     struct policy_rule *rule)
{
    static const char *const fields[] = {"when", "upstream", "first_tokens", "min_token_prob_quantile",
                                         "entropy_quantile"};
    int when = 0;
    int rc = check_fields(r, object, path, fields, COUNT(fields));
    if (rc || (rc = get_choice(r, object, path, "when", trigger_names, COUNT(trigger_names), true, &when)))
        return rc;
    *rule = (struct policy_rule){.when = (enum policy_trigger)when, .upstream = -1};
    char *name = NULL;
    if ((rc = get_string(r, object, path, "upstream", when != POLICY_EXPLICIT, &name)))
        return rc;
    char here[160];
    if (name) {
        rule->upstream = find_upstream_index(policy, name);
        field_path(here, sizeof here, path, "upstream");
        if (rule->upstream < 0)
            return unknown_upstream(r, policy, here, cJSON_GetObjectItemCaseSensitive(object, "upstream"));
    }
    if (when != POLICY_UNCERTAIN) {
        for (int i = 2; i < COUNT(fields); i++)
            if (cJSON_GetObjectItemCaseSensitive(object, fields[i])) {
                field_path(here, sizeof here, path, fields[i]);
                return fail_at(r, here, "only a rule with \"when\": \"uncertain\" takes this field");
            }
        return PLM_OK;
    }
    rule->first_tokens = DEFAULT_FIRST_TOKENS;
    if ((rc = get_int(r, object, path, "first_tokens", 1, 4096, &rule->first_tokens)) ||
        (rc = read_quantile_test(r, object, path, "min_token_prob_quantile", "below", 1, &rule->min_token_prob)) ||
        (rc = read_quantile_test(r, object, path, "entropy_quantile", "above", 1000, &rule->entropy)))
        return rc;
    if (!rule->min_token_prob.enabled && !rule->entropy.enabled)
        return fail_at(r, path, "an \"uncertain\" rule needs \"min_token_prob_quantile\" or \"entropy_quantile\"");
    return PLM_OK;
}

static int read_rules(const struct reader *r, const cJSON *list, struct plm_policy *policy)
{
    if (!list)
        return PLM_OK;
    if (!cJSON_IsArray(list))
        return fail_expected(r, "rules", "an array", list);
    int n = cJSON_GetArraySize(list);
    policy->rules = calloc(n ? (size_t)n : 1, sizeof *policy->rules);
    if (!policy->rules)
        return plm_fail(PLM_ERR_NOMEM, "policy: out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char path[64];
        snprintf(path, sizeof path, "rules[%d]", policy->n_rules);
        int rc = read_rule(r, item, path, policy, &policy->rules[policy->n_rules]);
        if (rc)
            return rc;
        policy->n_rules++;
    }
    return PLM_OK;
}

/* -------------------------------------------------------------- redaction */

/* A list of non-empty strings, into a malloc'd array of pointers into the tree. */
static int read_string_list(const struct reader *r, const cJSON *list, const char *path, const char ***items, int *n)
{
    if (!cJSON_IsArray(list))
        return fail_expected(r, path, "an array of strings", list);
    *items = calloc((size_t)cJSON_GetArraySize(list) + 1, sizeof **items);
    if (!*items)
        return plm_fail(PLM_ERR_NOMEM, "policy: out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char here[160];
        snprintf(here, sizeof here, "%s[%d]", path, *n);
        if (!cJSON_IsString(item) || item->valuestring[0] == '\0')
            return fail_expected(r, here, "a non-empty string", item);
        (*items)[(*n)++] = item->valuestring;
    }
    return PLM_OK;
}

/* One term a line; blank lines and lines starting with '#' are skipped. The
 * lines are cut in place in text, which the policy keeps. */
static int add_terms_from_text(struct policy_redaction *redaction, char *text)
{
    int n_lines = 1;
    for (const char *c = text; *c; c++)
        n_lines += *c == '\n';
    const char **terms = realloc(redaction->terms, ((size_t)redaction->n_terms + (size_t)n_lines + 1) * sizeof *terms);
    if (!terms)
        return plm_fail(PLM_ERR_NOMEM, "policy: out of memory");
    redaction->terms = terms;
    for (char *line = text; line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen(line);
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        while (isspace((unsigned char)*line))
            line++;
        if (*line && *line != '#')
            terms[redaction->n_terms++] = line;
        line = next;
    }
    return PLM_OK;
}

static int read_terms_file(const struct reader *r, const char *file, struct policy_with_storage *p)
{
    char path[4096];
    if (file[0] == '/' || !r->base_dir)
        snprintf(path, sizeof path, "%s", file);
    else
        snprintf(path, sizeof path, "%s/%s", r->base_dir, file);
    size_t size;
    if (read_whole_file(path, &p->storage.terms_text, &size))
        return fail_at(r, "redaction.terms_file", "%s", plm_last_error());
    if (memchr(p->storage.terms_text, '\0', size))
        return fail_at(r, "redaction.terms_file", "'%s' is not a text file (it holds a NUL byte)", path);
    return add_terms_from_text(&p->policy.redaction, p->storage.terms_text);
}

/* The detectors a policy may list: plm_redact's types in lower case ("email"),
 * all but the user's terms, which "terms" and "terms_file" give. */
static uint32_t every_detector(void)
{
    return ((1u << PLM_REDACT_N_TYPES) - 1) & ~(1u << PLM_REDACT_TERM);
}

/* The names a policy uses for the detectors: plm_redact's, in lower case. */
static void detector_name(int type, char *out, size_t size)
{
    snprintf(out, size, "%s", plm_redact_type_name(type));
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
}

static int read_redaction_types(const struct reader *r, const cJSON *list, uint32_t *types)
{
    if (!cJSON_IsArray(list))
        return fail_expected(r, "redaction.types", "an array of detector names", list);
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char name[32], expected[256] = "one of";
        int type = 0;
        for (; type < PLM_REDACT_N_TYPES; type++) {
            detector_name(type, name, sizeof name);
            if (type != PLM_REDACT_TERM && cJSON_IsString(item) && strcmp(item->valuestring, name) == 0)
                break;
        }
        if (type == PLM_REDACT_N_TYPES) {
            char path[64];
            snprintf(path, sizeof path, "redaction.types[%d]", i);
            for (type = 0; type < PLM_REDACT_N_TYPES; type++) {
                detector_name(type, name, sizeof name);
                size_t n = strlen(expected);
                if (type != PLM_REDACT_TERM)
                    snprintf(expected + n, sizeof expected - n, "%s \"%s\"", type ? "," : "", name);
            }
            return fail_expected(r, path, expected, item);
        }
        *types |= 1u << type;
        i++;
    }
    return PLM_OK;
}

static int read_redaction(const struct reader *r, const cJSON *object, struct policy_with_storage *p)
{
    struct policy_redaction *redaction = &p->policy.redaction;
    redaction->enabled = true;
    static const char *const fields[] = {"enabled", "types", "terms", "terms_file"};
    redaction->types = 1u << PLM_REDACT_TERM;
    if (!object) {
        redaction->types |= every_detector();
        return PLM_OK;
    }
    int rc = check_fields(r, object, "redaction", fields, COUNT(fields));
    if (rc)
        return rc;
    const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(object, "enabled");
    if (enabled && !cJSON_IsBool(enabled))
        return fail_expected(r, "redaction.enabled", "true or false", enabled);
    redaction->enabled = !enabled || cJSON_IsTrue(enabled);
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(object, "types");
    if (!types)
        redaction->types |= every_detector();
    else if ((rc = read_redaction_types(r, types, &redaction->types)))
        return rc;
    const cJSON *terms = cJSON_GetObjectItemCaseSensitive(object, "terms");
    if (terms && (rc = read_string_list(r, terms, "redaction.terms", &redaction->terms, &redaction->n_terms)))
        return rc;
    char *terms_file = NULL;
    if ((rc = get_string(r, object, "redaction", "terms_file", false, &terms_file)))
        return rc;
    return terms_file ? read_terms_file(r, terms_file, p) : PLM_OK;
}

/* ------------------------------------------------------------ the policy */

static int read_policy(const struct reader *r, const cJSON *root, struct policy_with_storage *p)
{
    static const char *const fields[] = {"escalation", "upstreams", "rules", "redaction"};
    static const char *const escalation_names[] = {"auto", "never"};
    int escalation = 0;
    int rc = check_fields(r, root, "(top level)", fields, COUNT(fields));
    if (rc ||
        (rc = get_choice(r, root, "", "escalation", escalation_names, COUNT(escalation_names), false, &escalation)) ||
        (rc = read_upstreams(r, cJSON_GetObjectItemCaseSensitive(root, "upstreams"), &p->policy)) ||
        (rc = read_rules(r, cJSON_GetObjectItemCaseSensitive(root, "rules"), &p->policy)) ||
        (rc = read_redaction(r, cJSON_GetObjectItemCaseSensitive(root, "redaction"), p)))
        return rc;
    p->policy.never = escalation == 1;
    return PLM_OK;
}

int policy_parse(const char *json, size_t len, const char *source, const char *base_dir, plm_policy **policy)
{
    *policy = NULL;
    struct reader r = {source, base_dir};
    struct policy_with_storage *p = calloc(1, sizeof *p);
    if (!p)
        return plm_fail(PLM_ERR_NOMEM, "policy: out of memory");
    const char *end = NULL;
    p->storage.root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!p->storage.root) {
        size_t offset = end && end >= json ? (size_t)(end - json) : 0;
        plm_policy_free(&p->policy);
        return plm_fail(PLM_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", source, offset);
    }
    int rc = read_policy(&r, p->storage.root, p);
    if (rc) {
        plm_policy_free(&p->policy);
        return rc;
    }
    *policy = &p->policy;
    return PLM_OK;
}

int plm_policy_load(const char *path, plm_policy **policy)
{
    *policy = NULL;
    char *text;
    size_t size;
    int rc = read_whole_file(path, &text, &size);
    if (rc)
        return rc;
    char base_dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(base_dir, sizeof base_dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path)
        snprintf(base_dir, sizeof base_dir, "/");
    rc = policy_parse(text, size, path, base_dir, policy);
    free(text);
    return rc;
}

void plm_policy_free(plm_policy *policy)
{
    if (!policy)
        return;
    struct policy_with_storage *p = (struct policy_with_storage *)policy;
    free(policy->upstreams);
    free(policy->rules);
    free(policy->redaction.terms);
    cJSON_Delete(p->storage.root);
    free(p->storage.terms_text);
    free(p);
}

int plm_policy_upstream_count(const plm_policy *policy)
{
    return policy->n_upstreams;
}

const struct plm_upstream *plm_policy_upstream(const plm_policy *policy, int i)
{
    return i >= 0 && i < policy->n_upstreams ? &policy->upstreams[i] : NULL;
}

const struct plm_upstream *plm_policy_find_upstream(const plm_policy *policy, const char *name)
{
    int i = find_upstream_index(policy, name);
    if (i >= 0)
        return &policy->upstreams[i];
    char names[512] = "";
    for (int j = 0; j < policy->n_upstreams && strlen(names) < sizeof names - 80; j++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", j ? ", " : "", policy->upstreams[j].name);
    plm_fail(PLM_ERR_ARG, "no upstream named '%.64s' in the policy (it has: %s)", name,
             policy->n_upstreams ? names : "none");
    return NULL;
}

bool plm_policy_never(const plm_policy *policy)
{
    return policy->never;
}

const char *plm_policy_refusal(const plm_policy *policy, const struct plm_upstream *upstream)
{
    if (policy->never)
        return "the policy says \"escalation\": \"never\"";
    if (upstream->consent == PLM_CONSENT_NEVER)
        return "the upstream's consent is \"never\"";
    return NULL;
}

const char *policy_trigger_name(enum policy_trigger when)
{
    return (int)when >= 0 && (int)when < COUNT(trigger_names) ? trigger_names[when] : "?";
}

const char *plm_upstream_kind_name(enum plm_upstream_kind kind)
{
    return (int)kind >= 0 && (int)kind < COUNT(kind_names) ? kind_names[kind] : "?";
}
