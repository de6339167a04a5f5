/*
 * Secrets: API keys with known prefixes, private key blocks, JSON Web Tokens,
 * values assigned to names that say "password", "token", "secret", "key",
 * and, failing all that, tokens random enough to be a key.
 *
 * A token here is a run of base64 characters (letters, digits, _ + / -) with
 * at most two '=' of padding; '.', ':', '=' (before more text) and quotes end
 * it, so "API_KEY=sk-..." is two tokens.
 */
#include "privacy/redact.h"

#include <math.h>
#include <string.h>

static bool is_token_byte(unsigned char c) { return is_alnum(c) || c == '_' || c == '+' || c == '/' || c == '-'; }

/* The end of the token starting at pos (with its padding). */
static size_t token_end(const char *text, size_t len, size_t pos)
{
    size_t i = pos;
    while (i < len && is_token_byte((unsigned char)text[i]))
        i++;
    size_t padded = i;
    while (padded < len && padded - i < 2 && text[padded] == '=')
        padded++;
    if (padded > i && (padded == len || !is_token_byte((unsigned char)text[padded])))
        return padded;
    return i;
}

/* ------------------------------------------------------ known prefixes */

enum key_charset {
    ALNUM,         /* letters and digits */
    ALNUM_DASH,    /* ... and _ - */
    UPPER_DIGITS,  /* A-Z 0-9 */
    HEX_LOWER,     /* 0-9 a-f */
};

static const struct key_prefix {
    const char *prefix;
    enum key_charset charset;
    int min_len, max_len; /* of what follows the prefix */
} key_prefixes[] = {
    {"sk-ant-", ALNUM_DASH, 32, 200},  /* Anthropic */
    {"sk-", ALNUM_DASH, 20, 200},      /* OpenAI (sk-proj-..., sk-svcacct-...) */
    {"sk_live_", ALNUM, 16, 120},      /* Stripe */
    {"sk_test_", ALNUM, 16, 120},
    {"rk_live_", ALNUM, 16, 120},
    {"rk_test_", ALNUM, 16, 120},
    {"AKIA", UPPER_DIGITS, 16, 16},    /* AWS access key ids */
    {"ASIA", UPPER_DIGITS, 16, 16},
    {"ghp_", ALNUM, 30, 80},           /* GitHub */
    {"gho_", ALNUM, 30, 80},
    {"ghu_", ALNUM, 30, 80},
    {"ghs_", ALNUM, 30, 80},
    {"ghr_", ALNUM, 30, 80},
    {"github_pat_", ALNUM_DASH, 22, 255},
    {"xoxb-", ALNUM_DASH, 10, 255},    /* Slack */
    {"xoxp-", ALNUM_DASH, 10, 255},
    {"xoxa-", ALNUM_DASH, 10, 255},
    {"xoxs-", ALNUM_DASH, 10, 255},
    {"xoxe-", ALNUM_DASH, 10, 255},
    {"AIza", ALNUM_DASH, 35, 35},      /* Google API keys */
    {"glpat-", ALNUM_DASH, 20, 60},    /* GitLab */
    {"npm_", ALNUM, 36, 36},           /* npm */
    {"hf_", ALNUM, 30, 40},            /* Hugging Face */
    {"pypi-", ALNUM_DASH, 50, 255},    /* PyPI upload tokens */
    {"dop_v1_", HEX_LOWER, 64, 64},    /* DigitalOcean */
    {"shpat_", HEX_LOWER, 32, 32},     /* Shopify */
};

static bool in_charset(unsigned char c, enum key_charset charset)
{
    switch (charset) {
    case ALNUM: return is_alnum(c);
    case ALNUM_DASH: return is_alnum(c) || c == '_' || c == '-';
    case UPPER_DIGITS: return is_upper(c) || is_digit(c);
    case HEX_LOWER: return is_digit(c) || (c >= 'a' && c <= 'f');
    }
    return false;
}

static bool known_key(const char *token, size_t len)
{
    for (size_t k = 0; k < sizeof key_prefixes / sizeof key_prefixes[0]; k++) {
        const struct key_prefix *p = &key_prefixes[k];
        size_t n = strlen(p->prefix);
        if (len < n || memcmp(token, p->prefix, n) != 0)
            continue;
        size_t body = len - n;
        if (body < (size_t)p->min_len || body > (size_t)p->max_len)
            continue;
        size_t i = n;
        while (i < len && in_charset((unsigned char)token[i], p->charset))
            i++;
        if (i == len)
            return true;
    }
    return false;
}

/* ------------------------------------------------------ JSON Web Tokens */

static size_t base64url_run(const char *text, size_t len, size_t pos)
{
    while (pos < len && (is_alnum((unsigned char)text[pos]) || text[pos] == '_' || text[pos] == '-'))
        pos++;
    return pos;
}

/* header.payload.signature, base64url; the header and payload are JSON
 * objects, so they start with "eyJ" / "ey". The signature may be empty. */
static size_t jwt_at(const char *text, size_t len, size_t pos)
{
    if (len - pos < 10 || memcmp(text + pos, "eyJ", 3) != 0)
        return 0;
    size_t header_end = base64url_run(text, len, pos);
    if (header_end - pos < 10 || header_end + 3 > len || text[header_end] != '.' ||
        memcmp(text + header_end + 1, "ey", 2) != 0)
        return 0;
    size_t payload_end = base64url_run(text, len, header_end + 1);
    if (payload_end - header_end < 4 || payload_end >= len || text[payload_end] != '.')
        return 0;
    return base64url_run(text, len, payload_end + 1);
}

/* ---------------------------------------------------- high entropy */

/* Shannon entropy of the token's bytes, in bits per byte. */
static double shannon_entropy(const char *token, size_t len)
{
    int counts[256] = {0};
    for (size_t i = 0; i < len; i++)
        counts[(unsigned char)token[i]]++;
    double bits = 0;
    for (int c = 0; c < 256; c++)
        if (counts[c]) {
            double p = (double)counts[c] / (double)len;
            bits -= p * log2(p);
        }
    return bits;
}

/* Share of the token inside words: a capital and 3+ lower-case letters,
 * 3+ lower-case letters, or an acronym of 3+ capitals ("SHA", "HTTP" in
 * "HTTP2ConnectionManager"). Most identifiers score 0.55 and more; random
 * base62 of 20 characters scores less in 91 cases of 100, of 64 in 99. */
static double word_share(const char *token, size_t len)
{
    size_t in_words = 0, i = 0;
    while (i < len) {
        size_t upper = 0, lower = 0;
        while (i + upper < len && is_upper((unsigned char)token[i + upper]))
            upper++;
        while (i + upper + lower < len && is_lower((unsigned char)token[i + upper + lower]))
            lower++;
        if (upper + lower == 0) {
            i++;
            continue;
        }
        /* "RSAEncryption": the last capital starts the word after the acronym. */
        size_t acronym = lower > 0 && upper > 0 ? upper - 1 : upper;
        if (acronym >= 3)
            in_words += acronym;
        if (lower >= 3)
            in_words += lower + (upper > 0);
        i += upper + lower;
    }
    return (double)in_words / (double)len;
}

/* Names joined by '_' or '-' whose parts are plain words or numbers
 * ("IMG_20240312_Beach_Sunset", "x86_64-linux-gnu"): file and build names. */
static bool compound_name(const char *token, size_t len)
{
    int parts = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && token[end] != '_' && token[end] != '-')
            end++;
        if (end == i)
            return false;
        bool digits = true, lower = true, upper = true;
        for (size_t k = i; k < end; k++) {
            unsigned char c = (unsigned char)token[k];
            digits &= is_digit(c);
            lower &= is_lower(c) || is_digit(c);
            upper &= is_upper(c) || is_digit(c);
        }
        bool capitalized = is_upper((unsigned char)token[i]);
        for (size_t k = i + 1; k < end && capitalized; k++)
            capitalized = is_lower((unsigned char)token[k]);
        if (!(digits || lower || upper || capitalized))
            return false;
        parts++;
        i = end + 1;
    }
    return parts >= 2;
}

/* Random enough to be a key: 20+ characters, upper and lower case letters
 * and digits, entropy at least 0.8 of the most its length allows
 * (log2 of the length, up to 64), not made of words, not a compound
 * name. Pure hex (hashes,
 * commit ids, UUIDs) never passes: it has one case. A path ("/usr/...") is
 * not a key. */
static bool random_token(const char *token, size_t len)
{
    if (len < 20 || token[0] == '/')
        return false;
    bool upper = false, lower = false, digit = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)token[i];
        upper |= is_upper(c);
        lower |= is_lower(c);
        digit |= is_digit(c);
    }
    if (!(upper && lower && digit))
        return false;
    double most = log2((double)(len < 64 ? len : 64));
    return shannon_entropy(token, len) >= 0.8 * most && word_share(token, len) < 0.55 && !compound_name(token, len);
}

/* ------------------------------------------------------ token scan */

/* data:image/png;base64,... is content, not a credential. */
static bool after_data_uri(const char *text, size_t pos)
{
    return pos >= 7 && memcmp(text + pos - 7, "base64,", 7) == 0;
}

static int scan_tokens(const char *text, size_t len, struct span_list *out)
{
    size_t i = 0;
    while (i < len) {
        if (!is_token_byte((unsigned char)text[i]) || (i > 0 && is_token_byte((unsigned char)text[i - 1]))) {
            i++;
            continue;
        }
        size_t end = jwt_at(text, len, i);
        bool secret = end > 0;
        if (!secret) {
            end = token_end(text, len, i);
            secret = known_key(text + i, end - i) ||
                     (!after_data_uri(text, i) && random_token(text + i, end - i));
        }
        if (secret) {
            int rc = span_push(out, PLM_REDACT_SECRET, i, end);
            if (rc != PLM_OK)
                return rc;
        }
        i = end;
    }
    return PLM_OK;
}

/* --------------------------------------------------- private key blocks */

/* The end of the base64 lines that start at pos (PEM body without its END line). */
static size_t base64_lines_end(const char *text, size_t len, size_t pos)
{
    size_t end = pos;
    while (end < len) {
        size_t line = end;
        if (text[line] == '\r')
            line++;
        if (line >= len || text[line] != '\n')
            break;
        line++;
        size_t k = line;
        while (k < len && (is_alnum((unsigned char)text[k]) || text[k] == '+' || text[k] == '/' || text[k] == '='))
            k++;
        if (k == line)
            break;
        end = k;
    }
    return end;
}

/* "-----BEGIN <label> PRIVATE KEY-----" (RSA, EC, OPENSSH, ENCRYPTED, PGP
 * "... PRIVATE KEY BLOCK") through the matching END line; without one,
 * through the base64 lines that follow. */
static int scan_private_keys(const char *text, size_t len, struct span_list *out)
{
    static const char begin[] = "-----BEGIN ";
    size_t i = 0, no_end_from = len + 1; /* no "-----END " at or after this */
    while (i < len) {
        const char *found = memmem(text + i, len - i, begin, sizeof begin - 1);
        if (!found)
            break;
        size_t start = (size_t)(found - text), label = start + sizeof begin - 1;
        size_t window = len - label < 64 ? len - label : 64;
        const char *dashes = memmem(text + label, window, "-----", 5);
        size_t label_len = dashes ? (size_t)(dashes - (text + label)) : 0;
        if (!dashes || !memmem(text + label, label_len, "PRIVATE KEY", 11) || memchr(text + label, '\n', label_len)) {
            i = label;
            continue;
        }
        size_t body = label + label_len + 5, end = body;
        const char *end_line = body < no_end_from ? memmem(text + body, len - body, "-----END ", 9) : NULL;
        if (!end_line && body < no_end_from)
            no_end_from = body;
        size_t after_end = end_line ? (size_t)(end_line - text) + 9 + label_len + 5 : 0;
        if (end_line && after_end <= len && memcmp(end_line + 9, text + label, label_len) == 0 &&
            memcmp(end_line + 9 + label_len, "-----", 5) == 0)
            end = after_end;
        else
            end = base64_lines_end(text, len, body);
        int rc = span_push(out, PLM_REDACT_SECRET, start, end);
        if (rc != PLM_OK)
            return rc;
        i = end;
    }
    return PLM_OK;
}

/* ------------------------------------------------------- assignments */

/* Names whose value is a secret, by their ending (compared without case):
 * DB_PASSWORD, client_secret, "apiKey", aws_secret_access_key, ... */
static const char *const secret_name_endings[] = {"password", "passwd", "pwd", "passphrase", "secret",
                                                  "token", "apikey", "api_key", "api-key", "access_key",
                                                  "accesskey", "secret_key", "secretkey", "private_key",
                                                  "credential", "credentials", NULL};
/* Values that stand for a secret without being one. */
static const char *const placeholder_values[] = {"null", "none", "true", "false", "string", "required",
                                                 "optional", "undefined", "changeme", "password", "secret",
                                                 "redacted", "example", "your", "here", "xxxx", "****",
                                                 "environ", "getenv", "env.", "env[", "(", "...", NULL};

static bool contains_nocase(const char *text, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++) {
        size_t k = 0;
        while (k < n && to_lower((unsigned char)text[i + k]) == (unsigned char)word[k])
            k++;
        if (k == n)
            return true;
    }
    return false;
}

/* Whether the identifier ending just before pos (skipping spaces and one
 * quote) names a secret. */
static bool secret_name_before(const char *text, size_t pos)
{
    size_t i = pos;
    while (i > 0 && pos - i < 4 && text[i - 1] == ' ')
        i--;
    if (i > 0 && (text[i - 1] == '"' || text[i - 1] == '\''))
        i--;
    size_t end = i;
    while (i > 0 && end - i < 48 && (is_alnum((unsigned char)text[i - 1]) || strchr("_-.", text[i - 1])))
        i--;
    if (i == end)
        return false;
    char name[48];
    size_t n = end - i;
    for (size_t k = 0; k < n; k++)
        name[k] = (char)to_lower((unsigned char)text[i + k]);
    for (const char *const *w = secret_name_endings; *w; w++) {
        size_t wl = strlen(*w);
        if (n >= wl && memcmp(name + n - wl, *w, wl) == 0)
            return true;
    }
    return false;
}

/* The value after an assignment at op ('=' or ':'): [start, end), quoted or
 * up to a space or a delimiter; an auth scheme ("Bearer ") is skipped. */
static bool assigned_value(const char *text, size_t len, size_t op, size_t *start, size_t *end)
{
    size_t i = op + 1;
    if (i < len && text[i] == '>') /* PHP and Ruby "=>" */
        i++;
    while (i < len && i - op < 6 && text[i] == ' ')
        i++;
    char quote = i < len && strchr("\"'`", text[i]) && text[i] != '\0' ? text[i] : 0;
    if (quote)
        i++;
    static const char *const schemes[] = {"bearer ", "basic ", "token ", NULL};
    for (const char *const *s = schemes; *s; s++) {
        size_t n = strlen(*s);
        if (i + n <= len && contains_nocase(text + i, n, *s))
            i += n;
    }
    size_t k = i;
    while (k < len && k - i < 256 && (unsigned char)text[k] > ' ' &&
           (quote ? text[k] != quote : !strchr(",;)}]\"'", text[k])))
        k++;
    if (quote && (k >= len || text[k] != quote))
        return false;
    *start = i;
    *end = k;
    return true;
}

static bool plausible_secret_value(const char *value, size_t len)
{
    if (len < 6 || strchr("<${%*#", value[0]))
        return false;
    for (const char *const *p = placeholder_values; *p; p++)
        if (contains_nocase(value, len, *p))
            return false;
    size_t same = 1;
    while (same < len && value[same] == value[0])
        same++;
    return same < len;
}

static int scan_assignments(const char *text, size_t len, struct span_list *out)
{
    size_t covered = 0; /* spans stay disjoint */
    for (size_t op = 1; op < len; op++) {
        if (text[op] != '=' && text[op] != ':')
            continue;
        if (text[op] == '=' && (strchr("!<>=:", text[op - 1]) || (op + 1 < len && text[op + 1] == '=')))
            continue;
        if (text[op] == ':' && op + 1 < len && (text[op + 1] == '/' || text[op + 1] == ':' || text[op + 1] == '='))
            continue;
        size_t start, end;
        if (op < covered || !secret_name_before(text, op) || !assigned_value(text, len, op, &start, &end) ||
            !plausible_secret_value(text + start, end - start))
            continue;
        int rc = span_push(out, PLM_REDACT_SECRET, start, end);
        if (rc != PLM_OK)
            return rc;
        covered = end;
    }
    return PLM_OK;
}

int detect_secrets(const char *text, size_t len, struct span_list *out)
{
    int rc = scan_private_keys(text, len, out);
    if (rc == PLM_OK)
        rc = scan_tokens(text, len, out);
    if (rc == PLM_OK)
        rc = scan_assignments(text, len, out);
    return rc;
}
