/*
 * Measuring the detectors on a labelled corpus (tests/data/redaction/).
 *
 * One JSON object per line: {"text": "...", "spans": [{"type": "CARD",
 * "start": 12, "end": 31}], "terms": ["Jane Roe"], "near_miss": "CARD"}.
 * Offsets are bytes of the UTF-8 text. A labelled span is found when a match
 * of its type has exactly its bounds; a match is correct when it is exactly a
 * labelled span; a labelled span leaks when no match of any type covers it.
 */
#include "privacy/redact.h"

#include "core/error.h"
#include "core/mapped_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int type_from_name(const char *name)
{
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++)
        if (name && strcmp(plm_redact_type_name(t), name) == 0)
            return t;
    return -1;
}

/* The item's labelled spans, checked against the text. */
static int read_gold(const cJSON *item, size_t text_len, int line, struct span_list *gold)
{
    const cJSON *spans = cJSON_GetObjectItemCaseSensitive(item, "spans");
    if (!cJSON_IsArray(spans))
        return plm_fail(PLM_ERR_FORMAT, "redaction corpus line %d: no \"spans\" array", line);
    const cJSON *s;
    cJSON_ArrayForEach(s, spans) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(s, "start");
        const cJSON *end = cJSON_GetObjectItemCaseSensitive(s, "end");
        int t = type_from_name(cJSON_GetStringValue(type));
        if (t < 0 || !cJSON_IsNumber(start) || !cJSON_IsNumber(end) || start->valuedouble < 0 ||
            end->valuedouble <= start->valuedouble || end->valuedouble > (double)text_len)
            return plm_fail(PLM_ERR_FORMAT, "redaction corpus line %d: a span needs a known type and 0 <= start < end <= %zu",
                            line, text_len);
        int rc = span_push(gold, t, (size_t)start->valuedouble, (size_t)end->valuedouble);
        if (rc != PLM_OK)
            return rc;
    }
    return PLM_OK;
}

/* A redactor with the item's terms (or the shared one without terms). */
static int item_redactor(const cJSON *item, int line, plm_redactor *shared, plm_redactor **redactor)
{
    const cJSON *terms = cJSON_GetObjectItemCaseSensitive(item, "terms");
    *redactor = shared;
    if (!terms)
        return PLM_OK;
    int n = cJSON_GetArraySize(terms);
    const char **list = calloc((size_t)n + 1, sizeof *list);
    if (!list)
        return plm_fail(PLM_ERR_NOMEM, "redaction corpus: out of memory");
    for (int i = 0; i < n; i++)
        list[i] = cJSON_GetStringValue(cJSON_GetArrayItem(terms, i));
    struct plm_redact_config config = {.terms = list, .n_terms = n};
    int rc = !cJSON_IsArray(terms) ? plm_fail(PLM_ERR_FORMAT, "redaction corpus line %d: \"terms\" is not an array", line)
                                   : plm_redactor_new(&config, redactor);
    free(list);
    return rc;
}

static void score_item(struct plm_redact_eval *eval, const char *text, int line, const struct span_list *gold,
                       const struct plm_redact_span *found, size_t n_found,
                       void (*on_miss)(void *, int, const char *, int, const char *, size_t, size_t), void *user)
{
    for (size_t g = 0; g < gold->count; g++) {
        const struct plm_redact_span *want = &gold->items[g];
        struct plm_redact_type_eval *te = &eval->types[want->type];
        bool exact = false, covered = false;
        for (size_t f = 0; f < n_found; f++) {
            exact |= found[f].type == want->type && found[f].start == want->start && found[f].end == want->end;
            covered |= found[f].start <= want->start && found[f].end >= want->end;
        }
        te->n_gold++;
        te->n_found += exact;
        te->n_leaked += !covered;
        if (!exact && on_miss)
            on_miss(user, line, "missed", want->type, text, want->start, want->end);
    }
    for (size_t f = 0; f < n_found; f++) {
        bool labelled = false;
        for (size_t g = 0; g < gold->count; g++)
            labelled |= found[f].type == gold->items[g].type && found[f].start == gold->items[g].start &&
                        found[f].end == gold->items[g].end;
        eval->types[found[f].type].n_predicted++;
        if (!labelled && on_miss)
            on_miss(user, line, "spurious", found[f].type, text, found[f].start, found[f].end);
    }
}

static int evaluate_line(struct plm_redact_eval *eval, const char *json, size_t json_len, int line,
                         plm_redactor *shared,
                         void (*on_miss)(void *, int, const char *, int, const char *, size_t, size_t), void *user)
{
    cJSON *item = cJSON_ParseWithLength(json, json_len);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(item, "text");
    if (!cJSON_IsString(text)) {
        cJSON_Delete(item);
        return plm_fail(PLM_ERR_FORMAT, "redaction corpus line %d: not a JSON object with a \"text\" string", line);
    }
    size_t text_len = strlen(text->valuestring);
    struct span_list gold = {0};
    plm_redactor *redactor = NULL;
    struct plm_redact_span *found = NULL;
    size_t n_found = 0;
    int rc = read_gold(item, text_len, line, &gold);
    if (rc == PLM_OK)
        rc = item_redactor(item, line, shared, &redactor);
    double start = plm_seconds_now();
    if (rc == PLM_OK)
        rc = plm_redact_find(redactor, text->valuestring, text_len, &found, &n_found);
    eval->seconds += plm_seconds_now() - start;
    if (rc == PLM_OK) {
        eval->n_items++;
        score_item(eval, text->valuestring, line, &gold, found, n_found, on_miss, user);
        int near = type_from_name(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "near_miss")));
        if (near >= 0) {
            bool redacted = false;
            for (size_t f = 0; f < n_found; f++)
                redacted |= found[f].type == near;
            eval->types[near].n_near_miss++;
            eval->types[near].n_near_miss_redacted += redacted;
        }
    }
    if (redactor != shared)
        plm_redactor_free(redactor);
    free(found);
    free(gold.items);
    cJSON_Delete(item);
    return rc;
}

int plm_redact_evaluate(const char *corpus_path, struct plm_redact_eval *eval,
                        void (*on_miss)(void *user, int line, const char *what, int type, const char *text,
                                        size_t start, size_t end),
                        void *user)
{
    memset(eval, 0, sizeof *eval);
    char *corpus;
    size_t size;
    int rc = read_whole_file(corpus_path, &corpus, &size);
    if (rc != PLM_OK)
        return rc;
    plm_redactor *shared;
    rc = plm_redactor_new(NULL, &shared);
    int line = 0;
    for (size_t at = 0; rc == PLM_OK && at < size;) {
        const char *newline = memchr(corpus + at, '\n', size - at);
        size_t end = newline ? (size_t)(newline - corpus) : size;
        line++;
        if (end > at)
            rc = evaluate_line(eval, corpus + at, end - at, line, shared, on_miss, user);
        at = end + 1;
    }
    plm_redactor_free(shared);
    free(corpus);
    if (rc == PLM_OK && eval->n_items == 0)
        rc = plm_fail(PLM_ERR_FORMAT, "redaction corpus %s has no items", corpus_path);
    return rc;
}

static void ratio(char *out, size_t size, int numerator, int denominator)
{
    if (denominator == 0)
        snprintf(out, size, "-");
    else
        snprintf(out, size, "%.3f", (double)numerator / denominator);
}

char *plm_redact_eval_table(const struct plm_redact_eval *eval)
{
    struct out_buffer table = {0};
    char row[256], recall[16], precision[16];
    static const char header[] = "| type | labelled | found | matches | recall | precision | leaked | near misses redacted |\n"
                                 "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    bool ok = out_append(&table, header, sizeof header - 1) == PLM_OK;
    struct plm_redact_type_eval total = {0};
    for (int t = 0; t <= PLM_REDACT_N_TYPES && ok; t++) {
        const struct plm_redact_type_eval *te = t < PLM_REDACT_N_TYPES ? &eval->types[t] : &total;
        if (t < PLM_REDACT_N_TYPES) {
            total.n_gold += te->n_gold;
            total.n_found += te->n_found;
            total.n_predicted += te->n_predicted;
            total.n_leaked += te->n_leaked;
            total.n_near_miss += te->n_near_miss;
            total.n_near_miss_redacted += te->n_near_miss_redacted;
        }
        ratio(recall, sizeof recall, te->n_found, te->n_gold);
        ratio(precision, sizeof precision, te->n_found, te->n_predicted);
        int n = snprintf(row, sizeof row, "| %s | %d | %d | %d | %s | %s | %d | %d of %d |\n",
                         t < PLM_REDACT_N_TYPES ? plm_redact_type_name(t) : "all", te->n_gold, te->n_found,
                         te->n_predicted, recall, precision, te->n_leaked, te->n_near_miss_redacted, te->n_near_miss);
        ok = out_append(&table, row, (size_t)n) == PLM_OK;
    }
    if (!ok) {
        free(table.data);
        return NULL;
    }
    return table.data;
}
