/*
 * The redactor: runs the detectors, settles overlaps, hands out placeholders.
 *
 * A redactor lives for one conversation. It remembers every value it replaced
 * as an entry (type, number, the value as first seen, and a key under which
 * other spellings of the same value meet: "4111 1111 1111 1111" and
 * "4111-1111-1111-1111" are one card), in two open-addressing tables: by
 * (type, key) to give a value its placeholder again, and by (type, number) to
 * restore a placeholder. Values are wiped before their memory is released.
 */
#include "privacy/redact.h"

#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[PLM_REDACT_N_TYPES] = {
    "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "MAC", "URL", "SECRET", "TERM",
};

const char *plm_redact_type_name(int type)
{
    return type >= 0 && type < PLM_REDACT_N_TYPES ? type_names[type] : NULL;
}

/* ------------------------------------------------------------ span lists */

int span_push(struct span_list *list, int type, size_t start, size_t end)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        struct plm_redact_span *grown = realloc(list->items, capacity * sizeof *grown);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "redact: out of memory for %zu matches", capacity);
        list->items = grown;
        list->capacity = capacity;
    }
    list->items[list->count++] = (struct plm_redact_span){type, start, end};
    return PLM_OK;
}

int scan_matches(const char *text, size_t len, int type, may_start_fn may_start, match_at_fn match_at,
                 struct span_list *out)
{
    for (size_t i = 0; i < len; i++) {
        if (!may_start(text, len, i))
            continue;
        size_t end = match_at(text, len, i);
        if (end) {
            int rc = span_push(out, type, i, end);
            if (rc != PLM_OK)
                return rc;
            i = end - 1;
        }
    }
    return PLM_OK;
}

bool preceded_by_word(const char *text, size_t pos, size_t window, const char *const *words)
{
    size_t from = pos > window ? pos - window : 0;
    for (const char *const *w = words; *w; w++) {
        size_t wlen = strlen(*w);
        for (size_t at = from; at + wlen <= pos; at++) {
            if (at > 0 && is_alnum((unsigned char)text[at - 1]))
                continue;
            if (at + wlen < pos && is_alnum((unsigned char)text[at + wlen]))
                continue;
            size_t k = 0;
            while (k < wlen && to_lower((unsigned char)text[at + k]) == (unsigned char)(*w)[k])
                k++;
            if (k == wlen)
                return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------- the store */

struct entry {
    int type;
    uint64_t number;
    char *value; /* as first seen; wiped on free */
    size_t value_len;
    char *key;   /* normalized value; wiped on free */
    size_t key_len;
};

struct plm_redactor {
    uint32_t types;
    struct term_set *terms;
    struct entry *entries;
    size_t n_entries, capacity;
    /* Open addressing, power-of-two sizes, at most half full; each slot holds
     * an entry index + 1, 0 when empty. */
    uint32_t *by_key, *by_number;
    size_t n_slots;
    uint64_t next_number[PLM_REDACT_N_TYPES];
};

static uint64_t hash_bytes(uint64_t h, const char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)bytes[i]) * 0x100000001b3ull; /* FNV-1a */
    return h;
}

static uint64_t key_hash(int type, const char *key, size_t key_len)
{
    return hash_bytes(0xcbf29ce484222325ull ^ (uint64_t)type, key, key_len);
}

static uint64_t number_hash(int type, uint64_t number)
{
    uint64_t h = number * 0x9e3779b97f4a7c15ull + (uint64_t)type;
    return h ^ (h >> 29);
}

static void table_insert(uint32_t *slots, size_t n_slots, uint64_t hash, uint32_t index)
{
    size_t mask = n_slots - 1, at = hash & mask;
    while (slots[at])
        at = (at + 1) & mask;
    slots[at] = index + 1;
}

static int grow_tables(plm_redactor *r)
{
    size_t n_slots = r->n_slots ? 2 * r->n_slots : 64;
    uint32_t *by_key = calloc(n_slots, sizeof *by_key);
    uint32_t *by_number = calloc(n_slots, sizeof *by_number);
    if (!by_key || !by_number) {
        free(by_key);
        free(by_number);
        return plm_fail(PLM_ERR_NOMEM, "redact: out of memory for %zu remembered values", n_slots / 2);
    }
    for (size_t i = 0; i < r->n_entries; i++) {
        const struct entry *e = &r->entries[i];
        table_insert(by_key, n_slots, key_hash(e->type, e->key, e->key_len), (uint32_t)i);
        table_insert(by_number, n_slots, number_hash(e->type, e->number), (uint32_t)i);
    }
    free(r->by_key);
    free(r->by_number);
    r->by_key = by_key;
    r->by_number = by_number;
    r->n_slots = n_slots;
    return PLM_OK;
}

static struct entry *find_by_key(const plm_redactor *r, int type, const char *key, size_t key_len)
{
    size_t mask = r->n_slots - 1;
    for (size_t at = key_hash(type, key, key_len) & mask; r->by_key[at]; at = (at + 1) & mask) {
        struct entry *e = &r->entries[r->by_key[at] - 1];
        if (e->type == type && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
            return e;
    }
    return NULL;
}

const char *redactor_value(const plm_redactor *r, int type, uint64_t number, size_t *len)
{
    size_t mask = r->n_slots - 1;
    for (size_t at = number_hash(type, number) & mask; r->by_number[at]; at = (at + 1) & mask) {
        const struct entry *e = &r->entries[r->by_number[at] - 1];
        if (e->type == type && e->number == number) {
            *len = e->value_len;
            return e->value;
        }
    }
    return NULL;
}

/* The key two spellings of one value share. key has room for len bytes. */
static size_t normalize(int type, const char *value, size_t len, char *key)
{
    size_t n = 0;
    switch (type) {
    case PLM_REDACT_PHONE:
    case PLM_REDACT_CARD:
    case PLM_REDACT_SSN:
        for (size_t i = 0; i < len; i++)
            if (is_digit((unsigned char)value[i]) || (value[i] == '+' && n == 0))
                key[n++] = value[i];
        return n;
    case PLM_REDACT_IBAN:
        for (size_t i = 0; i < len; i++)
            if (is_alnum((unsigned char)value[i]))
                key[n++] = (char)(is_lower((unsigned char)value[i]) ? value[i] - 32 : value[i]);
        return n;
    case PLM_REDACT_MAC:
        for (size_t i = 0; i < len; i++)
            if (is_hex((unsigned char)value[i]))
                key[n++] = (char)to_lower((unsigned char)value[i]);
        return n;
    case PLM_REDACT_EMAIL:
    case PLM_REDACT_IP:
        for (size_t i = 0; i < len; i++)
            key[i] = (char)to_lower((unsigned char)value[i]);
        return len;
    case PLM_REDACT_TERM:
        return term_fold_key(value, len, key);
    default:
        memcpy(key, value, len);
        return len;
    }
}

/* The entry of a value, created with the next number of its type if new. */
static int entry_for(plm_redactor *r, int type, const char *value, size_t len, const struct entry **out)
{
    char *key = malloc(len ? len : 1);
    if (!key)
        return plm_fail(PLM_ERR_NOMEM, "redact: out of memory");
    size_t key_len = normalize(type, value, len, key);
    struct entry *found = find_by_key(r, type, key, key_len);
    if (found) {
        explicit_bzero(key, len);
        free(key);
        *out = found;
        return PLM_OK;
    }
    if (r->next_number[type] >= PLACEHOLDER_NUMBER_LIMIT) {
        explicit_bzero(key, len);
        free(key);
        return plm_fail(PLM_ERR_LIMIT, "redact: more than %llu %s values in one conversation",
                        PLACEHOLDER_NUMBER_LIMIT - 1, type_names[type]);
    }
    if ((r->n_entries + 1) * 2 > r->n_slots && grow_tables(r) != PLM_OK)
        goto fail;
    if (r->n_entries == r->capacity) {
        size_t capacity = r->capacity ? 2 * r->capacity : 32;
        struct entry *grown = realloc(r->entries, capacity * sizeof *grown);
        if (!grown)
            goto fail;
        r->entries = grown;
        r->capacity = capacity;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        goto fail;
    memcpy(copy, value, len);
    copy[len] = '\0';
    struct entry *e = &r->entries[r->n_entries];
    *e = (struct entry){type, r->next_number[type]++, copy, len, key, key_len};
    table_insert(r->by_key, r->n_slots, key_hash(type, key, key_len), (uint32_t)r->n_entries);
    table_insert(r->by_number, r->n_slots, number_hash(type, e->number), (uint32_t)r->n_entries);
    r->n_entries++;
    *out = e;
    return PLM_OK;
fail:
    explicit_bzero(key, len);
    free(key);
    return plm_fail(PLM_ERR_NOMEM, "redact: out of memory for a new placeholder");
}

/* ---------------------------------------------------------- the redactor */

int plm_redactor_new(const struct plm_redact_config *config, plm_redactor **redactor)
{
    *redactor = NULL;
    struct plm_redact_config none = {0};
    if (!config)
        config = &none;
    if (config->n_terms < 0 || (config->n_terms > 0 && !config->terms))
        return plm_fail(PLM_ERR_ARG, "redact: %d terms but no term list", config->n_terms);
    if (config->types >> PLM_REDACT_N_TYPES)
        return plm_fail(PLM_ERR_ARG, "redact: type mask 0x%x names unknown types", (unsigned)config->types);
    plm_redactor *r = calloc(1, sizeof *r);
    if (!r)
        return plm_fail(PLM_ERR_NOMEM, "redact: out of memory");
    r->types = config->types ? config->types : (1u << PLM_REDACT_N_TYPES) - 1;
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++)
        r->next_number[t] = 1;
    int rc = grow_tables(r);
    if (rc == PLM_OK && config->n_terms > 0)
        rc = term_set_new(config->terms, config->n_terms, &r->terms);
    if (rc != PLM_OK) {
        plm_redactor_free(r);
        return rc;
    }
    *redactor = r;
    return PLM_OK;
}

void plm_redactor_free(plm_redactor *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_entries; i++) {
        struct entry *e = &r->entries[i];
        explicit_bzero(e->value, e->value_len);
        explicit_bzero(e->key, e->key_len);
        free(e->value);
        free(e->key);
    }
    free(r->entries);
    free(r->by_key);
    free(r->by_number);
    term_set_free(r->terms);
    free(r);
}

/* When two spans of the same length overlap, the type earlier here wins. */
static const int type_rank[PLM_REDACT_N_TYPES] = {
    [PLM_REDACT_SECRET] = 0, [PLM_REDACT_URL] = 1, [PLM_REDACT_EMAIL] = 2, [PLM_REDACT_IBAN] = 3,
    [PLM_REDACT_CARD] = 4,   [PLM_REDACT_SSN] = 5, [PLM_REDACT_IP] = 6,    [PLM_REDACT_MAC] = 7,
    [PLM_REDACT_PHONE] = 8,  [PLM_REDACT_TERM] = 9,
};

static int by_length_then_rank(const void *a, const void *b)
{
    const struct plm_redact_span *x = a, *y = b;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    if (x->type != y->type)
        return type_rank[x->type] - type_rank[y->type];
    return x->start < y->start ? -1 : x->start > y->start;
}

static int by_start(const void *a, const void *b)
{
    const struct plm_redact_span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Keeps the longest spans that do not overlap a longer one, in text order.
 * taken has one byte per text byte. Every family's spans are disjoint, so
 * the marking costs at most (number of families) x len in all. */
static int settle_overlaps(struct span_list *found, unsigned char *taken, struct span_list *kept)
{
    qsort(found->items, found->count, sizeof *found->items, by_length_then_rank);
    for (size_t i = 0; i < found->count; i++) {
        const struct plm_redact_span *s = &found->items[i];
        bool free_bytes = true;
        for (size_t b = s->start; b < s->end && free_bytes; b++)
            free_bytes = !taken[b];
        if (!free_bytes)
            continue;
        memset(taken + s->start, 1, s->end - s->start);
        int rc = span_push(kept, s->type, s->start, s->end);
        if (rc != PLM_OK)
            return rc;
    }
    qsort(kept->items, kept->count, sizeof *kept->items, by_start);
    return PLM_OK;
}

typedef int (*detector)(const char *text, size_t len, struct span_list *out);

static const struct {
    int type;
    detector detect;
} detectors[] = {
    {PLM_REDACT_SECRET, detect_secrets}, {PLM_REDACT_URL, detect_urls},   {PLM_REDACT_EMAIL, detect_emails},
    {PLM_REDACT_IBAN, detect_ibans},     {PLM_REDACT_CARD, detect_cards}, {PLM_REDACT_SSN, detect_ssns},
    {PLM_REDACT_IP, detect_ipv4},        {PLM_REDACT_IP, detect_ipv6},    {PLM_REDACT_MAC, detect_macs},
    {PLM_REDACT_PHONE, detect_phones},
};

/* The enabled detectors' spans, overlaps settled, in text order. */
static int find_spans(const plm_redactor *r, const char *text, size_t len, struct span_list *kept)
{
    struct span_list found = {0};
    int rc = PLM_OK;
    for (size_t d = 0; d < sizeof detectors / sizeof detectors[0] && rc == PLM_OK; d++)
        if (r->types & (1u << detectors[d].type))
            rc = detectors[d].detect(text, len, &found);
    if (rc == PLM_OK && r->terms && (r->types & (1u << PLM_REDACT_TERM)))
        rc = detect_terms(r->terms, text, len, &found);
    unsigned char *taken = NULL;
    if (rc == PLM_OK && found.count > 0) {
        taken = calloc(len, 1);
        if (!taken)
            rc = plm_fail(PLM_ERR_NOMEM, "redact: out of memory for a %zu-byte text", len);
        else
            rc = settle_overlaps(&found, taken, kept);
    }
    free(taken);
    free(found.items);
    return rc;
}

int plm_redact_find(const plm_redactor *r, const char *text, size_t len, struct plm_redact_span **spans,
                    size_t *n_spans)
{
    *spans = NULL;
    *n_spans = 0;
    if (!r || (!text && len))
        return plm_fail(PLM_ERR_ARG, "redact: no redactor or no text");
    if (len == 0)
        return PLM_OK;
    struct span_list kept = {0};
    int rc = find_spans(r, text, len, &kept);
    if (rc != PLM_OK) {
        free(kept.items);
        return rc;
    }
    *spans = kept.items;
    *n_spans = kept.count;
    return PLM_OK;
}

/* Text that already reads like a placeholder ("[EMAIL_3]" typed by the user)
 * must never be restored into a value: numbers up to the largest such one
 * are not handed out. */
static void reserve_literal_placeholders(plm_redactor *r, const char *text, size_t len)
{
    for (const char *p = memchr(text, '[', len); p; p = memchr(p + 1, '[', len - (size_t)(p + 1 - text))) {
        int type;
        uint64_t number;
        if (placeholder_parse(p, len - (size_t)(p - text), &type, &number) > 0 && number >= r->next_number[type] &&
            number < PLACEHOLDER_NUMBER_LIMIT)
            r->next_number[type] = number + 1;
    }
}

int out_append(struct out_buffer *out, const char *bytes, size_t n)
{
    if (out->len + n + 1 > out->capacity) {
        size_t capacity = out->capacity ? out->capacity : 256;
        while (capacity < out->len + n + 1)
            capacity *= 2;
        char *grown = realloc(out->data, capacity);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "redact: out of memory for %zu bytes of output", capacity);
        out->data = grown;
        out->capacity = capacity;
    }
    memcpy(out->data + out->len, bytes, n);
    out->len += n;
    out->data[out->len] = '\0';
    return PLM_OK;
}

int plm_redact(plm_redactor *r, const char *text, size_t len, char **out, size_t *out_len,
               struct plm_redact_stats *stats)
{
    *out = NULL;
    *out_len = 0;
    if (stats)
        memset(stats, 0, sizeof *stats);
    struct plm_redact_span *spans;
    size_t n_spans;
    int rc = plm_redact_find(r, text, len, &spans, &n_spans);
    if (rc != PLM_OK)
        return rc;
    if (!text)
        text = "";
    reserve_literal_placeholders(r, text, len);
    struct out_buffer buffer = {0};
    rc = out_append(&buffer, "", 0);
    size_t copied = 0;
    for (size_t i = 0; i < n_spans && rc == PLM_OK; i++) {
        const struct plm_redact_span *s = &spans[i];
        const struct entry *e = NULL;
        rc = out_append(&buffer, text + copied, s->start - copied);
        if (rc == PLM_OK)
            rc = entry_for(r, s->type, text + s->start, s->end - s->start, &e);
        if (rc == PLM_OK) {
            char placeholder[PLACEHOLDER_MAX + 1];
            int n = snprintf(placeholder, sizeof placeholder, "[%s_%llu]", type_names[s->type],
                             (unsigned long long)e->number);
            rc = out_append(&buffer, placeholder, (size_t)n);
        }
        if (rc == PLM_OK && stats)
            stats->counts[s->type]++;
        copied = s->end;
    }
    if (rc == PLM_OK)
        rc = out_append(&buffer, text + copied, len - copied);
    free(spans);
    if (rc != PLM_OK) {
        free(buffer.data);
        return rc;
    }
    *out = buffer.data;
    *out_len = buffer.len;
    return PLM_OK;
}
