/*
 * Numbers that identify a person or an account: payment cards, IBANs, US
 * social security numbers and phone numbers.
 *
 * All four start only where a number can start (not inside a word or after
 * '.', '-', '/' that would make it part of a larger token), read a bounded
 * number of bytes, and end where a word ends: every attempt costs O(1) and
 * the scans are linear. Cards and IBANs carry check digits, and only numbers
 * that pass them are redacted; SSNs and phones rely on their layout and, for
 * the ambiguous layouts, on a word before them ("tel", "SSN").
 */
#include "privacy/redact.h"

#include <string.h>

/* Whether a number may start at pos: not glued to a word or to a separator
 * that makes it part of a decimal, a version, a path, a range or a name. */
static bool number_may_start(const char *text, size_t pos, const char *not_after)
{
    if (pos == 0)
        return true;
    unsigned char before = (unsigned char)text[pos - 1];
    return !is_ascii_word_byte(before) && !strchr(not_after, before);
}

/* Whether a number may end at pos: not followed by a word byte, nor by
 * '.', ',', '-', '/' or ':' and a digit (a decimal, a longer code, a time). */
static bool number_may_end(const char *text, size_t len, size_t pos)
{
    if (pos >= len)
        return true;
    unsigned char after = (unsigned char)text[pos];
    if (is_ascii_word_byte(after))
        return false;
    bool glue = after == '.' || after == ',' || after == '-' || after == '/' || after == ':';
    return !(glue && pos + 1 < len && is_digit((unsigned char)text[pos + 1]));
}

/* ------------------------------------------------------ payment cards */

/* Issuer ranges (IIN): numbers whose first `digits` digits lie in [lo, hi]
 * and whose length is one of `lengths` (bit L set for L digits). */
struct iin_range {
    int digits;
    int lo, hi;
    uint32_t lengths;
};

#define LEN(n) (1u << (n))
#define LEN_RANGE(a, b) (((1u << ((b) + 1)) - 1) & ~((1u << (a)) - 1))

static const struct iin_range iin_ranges[] = {
    {1, 4, 4, LEN(13) | LEN(16) | LEN(19)},   /* Visa */
    {2, 51, 55, LEN(16)},                     /* Mastercard */
    {4, 2221, 2720, LEN(16)},                 /* Mastercard 2-series */
    {2, 34, 34, LEN(15)},                     /* American Express */
    {2, 37, 37, LEN(15)},
    {4, 6011, 6011, LEN_RANGE(16, 19)},       /* Discover */
    {3, 644, 649, LEN_RANGE(16, 19)},
    {2, 65, 65, LEN_RANGE(16, 19)},
    {3, 300, 305, LEN_RANGE(14, 19)},         /* Diners Club */
    {4, 3095, 3095, LEN_RANGE(14, 19)},
    {2, 36, 36, LEN_RANGE(14, 19)},
    {2, 38, 39, LEN_RANGE(14, 19)},
    {4, 3528, 3589, LEN_RANGE(16, 19)},       /* JCB */
    {2, 62, 62, LEN_RANGE(16, 19)},           /* UnionPay */
    {2, 50, 50, LEN_RANGE(13, 19)},           /* Maestro */
    {2, 56, 69, LEN_RANGE(13, 19)},
    {4, 2200, 2204, LEN_RANGE(16, 19)},       /* Mir */
    {2, 81, 82, LEN(16)},                     /* RuPay */
};

static bool card_issuer_known(const char *digits, int n)
{
    for (size_t r = 0; r < sizeof iin_ranges / sizeof iin_ranges[0]; r++) {
        const struct iin_range *range = &iin_ranges[r];
        int prefix = 0;
        for (int i = 0; i < range->digits; i++)
            prefix = prefix * 10 + (digits[i] - '0');
        if (prefix >= range->lo && prefix <= range->hi && (range->lengths & LEN(n)))
            return true;
    }
    return false;
}

static bool luhn_valid(const char *digits, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) {
        int d = digits[n - 1 - i] - '0';
        if (i % 2 == 1)
            d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return sum % 10 == 0;
}

#define MAX_GROUPS 8

/* Groups of digits separated by one separator byte (the same throughout). */
struct digit_groups {
    int n;
    size_t end[MAX_GROUPS];
    int length[MAX_GROUPS];
    char digits[32]; /* all digits, in order */
    int n_digits;
};

static void read_digit_groups(const char *text, size_t len, size_t pos, const char *separators, int max_digits,
                              struct digit_groups *g)
{
    g->n = 0;
    g->n_digits = 0;
    char separator = 0;
    size_t i = pos;
    while (g->n < MAX_GROUPS) {
        size_t start = i;
        while (i < len && is_digit((unsigned char)text[i]) && g->n_digits < max_digits + 1)
            g->digits[g->n_digits++] = text[i++];
        if (g->n_digits > max_digits) { /* too long to be one number: end before this group */
            g->n_digits -= (int)(i - start);
            break;
        }
        g->end[g->n] = i;
        g->length[g->n++] = (int)(i - start);
        if (i + 1 >= len || !strchr(separators, text[i]) || text[i] == '\0' || !is_digit((unsigned char)text[i + 1]))
            break;
        if (separator && text[i] != separator)
            break;
        separator = text[i++];
    }
}

/* The groupings cards are printed in: 4-4-4-4(-3), 4-4-4-1..4, or 4-6-4/5. */
static bool card_grouping(const int *length, int n)
{
    if (n == 1)
        return true;
    if (n == 3 && length[0] == 4 && length[1] == 6 && (length[2] == 4 || length[2] == 5))
        return true;
    for (int i = 0; i < n - 1; i++)
        if (length[i] != 4)
            return false;
    return length[n - 1] >= 1 && length[n - 1] <= 4;
}

/* Cards and IBANs carry check digits, so their bounds can be laxer than
 * other numbers': a card in a CSV row ("4111111111111111,12/27") must not
 * leak. Only a word byte, or a '.' that makes a decimal, may touch them. */
static bool checked_number_may_end(const char *text, size_t len, size_t pos)
{
    if (pos >= len)
        return true;
    unsigned char after = (unsigned char)text[pos];
    return !is_ascii_word_byte(after) && !(after == '.' && pos + 1 < len && is_digit((unsigned char)text[pos + 1]));
}

/* A card at pos: the longest run of whole groups that is laid out like a
 * card, 13-19 digits, a known issuer and a valid Luhn digit. */
static size_t card_at(const char *text, size_t len, size_t pos)
{
    struct digit_groups g;
    read_digit_groups(text, len, pos, " -", 19, &g);
    int n_digits = g.n_digits;
    for (int k = g.n; k >= 1; k--) {
        if (k < g.n)
            n_digits -= g.length[k];
        if (n_digits < 13 || !card_grouping(g.length, k) || !checked_number_may_end(text, len, g.end[k - 1]))
            continue;
        if (luhn_valid(g.digits, n_digits) && card_issuer_known(g.digits, n_digits))
            return g.end[k - 1];
    }
    return 0;
}

static bool card_may_start(const char *text, size_t len, size_t pos)
{
    (void)len;
    return is_digit((unsigned char)text[pos]) && number_may_start(text, pos, ".");
}

int detect_cards(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_CARD, card_may_start, card_at, out);
}

/* ------------------------------------------------------------- IBANs */

/* IBAN lengths per country (ISO 13616 registry). */
static const struct {
    char country[3];
    int length;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24},
    {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18},
    {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27},
    {"GT", 28}, {"HN", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26},
    {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20},
    {"LU", 20}, {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20},
    {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24},
    {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23}, {"ST", 25},
    {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
    {"YE", 30},
};

static int iban_length(unsigned char a, unsigned char b)
{
    char country[3] = {(char)(a & ~0x20), (char)(b & ~0x20), 0};
    for (size_t i = 0; i < sizeof iban_lengths / sizeof iban_lengths[0]; i++)
        if (strcmp(iban_lengths[i].country, country) == 0)
            return iban_lengths[i].length;
    return 0;
}

/* ISO 7064 mod 97-10 over the IBAN with its first four characters moved to
 * the end and letters read as 10..35: a valid IBAN leaves 1. */
static bool iban_checksum_valid(const char *chars, int n)
{
    int remainder = 0;
    for (int k = 0; k < n; k++) {
        unsigned char c = (unsigned char)chars[(k + 4) % n];
        if (is_digit(c))
            remainder = (remainder * 10 + (c - '0')) % 97;
        else
            remainder = (remainder * 100 + (to_lower(c) - 'a' + 10)) % 97;
    }
    return remainder == 1;
}

/* An IBAN at pos: country code, check digits, then the country's length of
 * letters and digits, compact or in groups of four separated by one space. */
static size_t iban_at(const char *text, size_t len, size_t pos)
{
    if (pos + 4 > len || !is_alpha((unsigned char)text[pos]) || !is_alpha((unsigned char)text[pos + 1]) ||
        !is_digit((unsigned char)text[pos + 2]) || !is_digit((unsigned char)text[pos + 3]))
        return 0;
    int length = iban_length((unsigned char)text[pos], (unsigned char)text[pos + 1]);
    if (!length)
        return 0;
    char chars[34];
    int n = 0;
    size_t i = pos;
    while (n < length && i < len) {
        unsigned char c = (unsigned char)text[i];
        if (is_alnum(c)) {
            chars[n++] = (char)c;
            i++;
        } else if (c == ' ' && n % 4 == 0 && i + 1 < len && is_alnum((unsigned char)text[i + 1])) {
            i++;
        } else {
            break;
        }
    }
    if (n != length || !checked_number_may_end(text, len, i) || !iban_checksum_valid(chars, n))
        return 0;
    return i;
}

static bool iban_may_start(const char *text, size_t len, size_t pos)
{
    (void)len;
    return is_alpha((unsigned char)text[pos]) && (pos == 0 || !is_ascii_word_byte((unsigned char)text[pos - 1]));
}

int detect_ibans(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_IBAN, iban_may_start, iban_at, out);
}

/* --------------------------------------------------------------- SSNs */

static const char *const ssn_words[] = {"ssn", "ss#", "social security", "sozialversicherungsnummer", NULL};

static int digits_value(const char *text, size_t pos, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (text[pos + (size_t)i] - '0');
    return v;
}

/* AAA-GG-SSSS, never issued with area 000, 666 or 900-999, group 00 or
 * serial 0000. Dashes anywhere; spaces or no separator only after "SSN". */
static size_t ssn_at(const char *text, size_t len, size_t pos)
{
    struct digit_groups g;
    read_digit_groups(text, len, pos, "- ", 9, &g);
    size_t end;
    if (g.n >= 3 && g.length[0] == 3 && g.length[1] == 2 && g.length[2] == 4)
        end = g.end[2];
    else if (g.n >= 1 && g.length[0] == 9)
        end = g.end[0];
    else
        return 0;
    if (!number_may_end(text, len, end) || (end < len && (text[end] == '-' || text[end] == ' ') &&
                                            end + 1 < len && is_digit((unsigned char)text[end + 1])))
        return 0;
    bool dashed = g.length[0] == 3 && text[pos + 3] == '-';
    if (!dashed && !preceded_by_word(text, pos, 32, ssn_words))
        return 0;
    int area = digits_value(g.digits, 0, 3), group = digits_value(g.digits, 3, 2),
        serial = digits_value(g.digits, 5, 4);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return 0;
    return end;
}

static bool ssn_may_start(const char *text, size_t len, size_t pos)
{
    (void)len;
    return is_digit((unsigned char)text[pos]) && number_may_start(text, pos, ".,-+/#");
}

int detect_ssns(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_SSN, ssn_may_start, ssn_at, out);
}

/* ------------------------------------------------------------- phones */

/* Words that announce a phone number (also allowing unseparated digits), and
 * words that announce some other number written like one. */
static const char *const phone_words[] = {"tel", "phone", "call", "mobile", "cell", "fax", "telefon", "handy",
                                          "mobil", "portable", "whatsapp", "sms", "text", "ring", "tél",
                                          "téléphone", "telephone", NULL};
static const char *const not_phone_words[] = {"order", "invoice", "ref", "reference", "ticket", "tracking",
                                              "account", "acct", "isbn", "serial", "id", "no", "nr", "case",
                                              "version", "build", "release", "po", "sku", "item", NULL};

/* A phone number as written: optional '+', digit groups (one may be in
 * parentheses, "(0)" after a country code is the trunk prefix) separated by
 * one of " -./" (a ')' may be followed by one space). */
struct phone_groups {
    bool plus;
    int n;
    size_t end[MAX_GROUPS];
    int length[MAX_GROUPS];
    char separator[MAX_GROUPS]; /* before each group; 0 for the first */
    bool trunk[MAX_GROUPS];     /* a "(0)" group */
    char digits[24];            /* the digits, trunk "(0)" left out */
    int n_digits;
};

static void read_phone_groups(const char *text, size_t len, size_t pos, struct phone_groups *g)
{
    memset(g, 0, sizeof *g);
    size_t i = pos;
    if (text[i] == '+')
        g->plus = true, i++;
    char separator = 0;
    while (g->n < MAX_GROUPS && i < len) {
        bool paren = text[i] == '(';
        size_t start = i + paren, k = start;
        while (k < len && is_digit((unsigned char)text[k]) && k - start < 12)
            k++;
        int length = (int)(k - start);
        if (length == 0 || (k < len && is_digit((unsigned char)text[k])) || g->n_digits + length > 17)
            break;
        if (paren) {
            if (k >= len || text[k] != ')')
                break;
            k++;
        }
        bool trunk = paren && g->plus && g->n == 1 && length == 1 && text[start] == '0';
        if (!trunk) {
            memcpy(g->digits + g->n_digits, text + start, (size_t)length);
            g->n_digits += length;
        }
        g->separator[g->n] = separator;
        g->trunk[g->n] = trunk;
        g->length[g->n] = length;
        g->end[g->n++] = k;
        i = k;
        /* One separator, then the next group must start. */
        if (i < len && strchr(" -./", text[i]) && text[i] != '\0')
            separator = text[i++];
        else if (paren)
            separator = ')';
        else
            break;
        if (i >= len || !(is_digit((unsigned char)text[i]) || text[i] == '('))
            break;
    }
}

/* 12.03.2024, 2024-03-12, 3/12/2024: a date, not a phone. */
static bool looks_like_date(const struct phone_groups *g, int k)
{
    if (k < 3 || g->separator[1] == ' ' || g->separator[1] != g->separator[2])
        return false;
    bool dmy = g->length[0] <= 2 && g->length[1] <= 2 && g->length[2] == 4;
    bool ymd = g->length[0] == 4 && g->length[1] <= 2 && g->length[2] <= 2;
    return dmy || ymd;
}

/* North American numbering: [1] NXX NXX XXXX, N = 2..9. */
static bool north_american(const struct phone_groups *g, int k, bool context)
{
    const char *d = g->digits;
    int first = 0, n = g->n_digits;
    if (k >= 1 && g->length[0] == 1 && d[0] == '1')
        first = 1;
    int groups = k - first;
    const int *length = g->length + first;
    bool layout = (groups == 3 && length[0] == 3 && length[1] == 3 && length[2] == 4) ||
                  (groups == 1 && context && (n == 10 || (n == 11 && d[0] == '1')));
    const char *national = n == 11 ? d + 1 : d;
    return layout && (n == 10 || (n == 11 && d[0] == '1')) && national[0] >= '2' && national[3] >= '2';
}

/* National numbers with a trunk 0 (UK, Germany, France and most of Europe):
 * 10-12 digits in groups of 2-8, or unseparated after a phone word. */
static bool trunk_zero_national(const struct phone_groups *g, int k, bool context)
{
    if (g->digits[0] != '0' || g->digits[1] == '0' || g->n_digits < 10 || g->n_digits > 12)
        return false;
    if (k == 1)
        return context;
    int pairs = 0;
    for (int i = 0; i < k; i++) {
        if (g->length[i] < 2 || g->length[i] > 8)
            return false;
        pairs += g->length[i] == 2;
    }
    return pairs < k || k == 5; /* only French numbers are all pairs: five of them */
}

static bool phone_valid(const struct phone_groups *g, int k, bool context)
{
    if (looks_like_date(g, k))
        return false;
    if (g->plus)
        return g->n_digits >= 8 && g->n_digits <= 15 && (k > 1 || g->n_digits >= 10);
    if (g->digits[0] == '0' && g->digits[1] == '0') /* 00 international prefix */
        return k > 1 && g->n_digits >= 10 && g->n_digits <= 17 && g->digits[2] != '0';
    return north_american(g, k, context) || trunk_zero_national(g, k, context);
}

/* What ends one space before pos: 2 for a digit, 1 for a word of 2+
 * capitals and digits ("ABNA", "DE89"), 0 for anything else. */
static int code_before(const char *text, size_t pos)
{
    if (pos < 2 || text[pos - 1] != ' ')
        return 0;
    if (is_digit((unsigned char)text[pos - 2]))
        return 2;
    size_t i = pos - 1;
    while (i > 0 && (is_upper((unsigned char)text[i - 1]) || is_digit((unsigned char)text[i - 1])))
        i--;
    return pos - 1 - i >= 2 && (i == 0 || !is_ascii_word_byte((unsigned char)text[i - 1]));
}

static size_t phone_at(const char *text, size_t len, size_t pos)
{
    struct phone_groups g;
    read_phone_groups(text, len, pos, &g);
    if (g.n == 0)
        return 0;
    bool context = preceded_by_word(text, pos, 24, phone_words);
    if (!g.plus && !context && preceded_by_word(text, pos, 24, not_phone_words))
        return 0;
    /* The tail of a longer code ("DE88 3704 0044 0532 ...", "ABNA 0417 ...")
     * is not a phone of its own. */
    int code = g.plus ? 0 : code_before(text, pos);
    if (code == 2 || (code == 1 && !context))
        return 0;
    /* The longest run of whole groups that reads as a phone number. */
    struct phone_groups prefix = g;
    for (int k = g.n; k >= 1; k--) {
        if (k < g.n && !g.trunk[k])
            prefix.n_digits -= g.length[k];
        prefix.n = k;
        /* Groups may be left out at the end only where the layout changes:
         * "555-123-4567 2 times", not "05 12 23 34 41 45" cut short. */
        if (!number_may_end(text, len, g.end[k - 1]) || (k < g.n && k >= 2 && g.separator[k] == g.separator[k - 1]))
            continue;
        if (phone_valid(&prefix, k, context))
            return g.end[k - 1];
    }
    return 0;
}

static bool phone_may_start(const char *text, size_t len, size_t pos)
{
    unsigned char c = (unsigned char)text[pos];
    bool opens = is_digit(c) || ((c == '+' || c == '(') && pos + 1 < len && is_digit((unsigned char)text[pos + 1]));
    return opens && number_may_start(text, pos, ".-/#+$@");
}

int detect_phones(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_PHONE, phone_may_start, phone_at, out);
}
