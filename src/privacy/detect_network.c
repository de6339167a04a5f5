/*
 * Network identifiers: IPv4 and IPv6 addresses, MAC addresses, and URLs that
 * carry credentials or tokens.
 *
 * Addresses that identify no one are left alone: IPv4 loopback (127/8),
 * 0.0.0.0 and 255.255.255.255, IPv6 :: and ::1. A dotted quad right after
 * "version", "build", "section", ... is a number of that, not an address.
 */
#include "privacy/redact.h"

#include <string.h>

static const char *const version_words[] = {"version", "ver", "release", "build", "firmware", "revision",
                                            "rev", "v", "section", "chapter", "clause", "step", "figure",
                                            "table", "item", NULL};

/* ---------------------------------------------------------------- IPv4 */

/* Four decimal octets 0-255 (no leading zeros, which would read as octal to
 * some parsers and mostly mean a version or a date) separated by '.'.
 * Returns the end, or 0. */
static size_t dotted_quad(const char *text, size_t len, size_t pos, int octets[4])
{
    size_t i = pos;
    for (int k = 0; k < 4; k++) {
        if (k > 0) {
            if (i >= len || text[i] != '.')
                return 0;
            i++;
        }
        size_t start = i;
        int value = 0;
        while (i < len && is_digit((unsigned char)text[i]) && i - start < 3)
            value = value * 10 + (text[i++] - '0');
        if (i == start || value > 255 || (i - start > 1 && text[start] == '0') ||
            (i < len && is_digit((unsigned char)text[i])))
            return 0;
        octets[k] = value;
    }
    return i;
}

/* "/N" with N <= max after an address, or 0 digits. Returns the bytes taken. */
static size_t prefix_length(const char *text, size_t len, size_t pos, int max)
{
    if (pos + 1 >= len || text[pos] != '/' || !is_digit((unsigned char)text[pos + 1]))
        return 0;
    size_t i = pos + 1;
    int value = 0;
    while (i < len && is_digit((unsigned char)text[i]) && i - pos <= 3)
        value = value * 10 + (text[i++] - '0');
    if (value > max || (i < len && is_ascii_word_byte((unsigned char)text[i])))
        return 0;
    return i - pos;
}

/* Nothing glued after an address: no word byte, no '.' leading on to more
 * of a dotted token (a trailing '.' ends a sentence). */
static bool address_may_end(const char *text, size_t len, size_t pos)
{
    if (pos >= len)
        return true;
    unsigned char after = (unsigned char)text[pos];
    if (is_ascii_word_byte(after))
        return false;
    return !(after == '.' && pos + 1 < len && is_alnum((unsigned char)text[pos + 1]));
}

static bool address_may_start(const char *text, size_t pos)
{
    if (pos == 0)
        return true;
    unsigned char before = (unsigned char)text[pos - 1];
    return !is_ascii_word_byte(before) && before != '.' && before != ':' && before != '-';
}

/* A dotted quad, with its prefix length, that is not a version number and
 * identifies someone. */
static size_t ipv4_at(const char *text, size_t len, size_t pos)
{
    int o[4];
    size_t end = dotted_quad(text, len, pos, o);
    if (!end)
        return 0;
    end += prefix_length(text, len, end, 32);
    bool anonymous = o[0] == 127 || (o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] == 0) ||
                     (o[0] == 255 && o[1] == 255 && o[2] == 255 && o[3] == 255);
    if (!address_may_end(text, len, end) || anonymous || preceded_by_word(text, pos, 10, version_words))
        return 0;
    return end;
}

static bool ipv4_may_start(const char *text, size_t len, size_t pos)
{
    (void)len;
    return is_digit((unsigned char)text[pos]) && address_may_start(text, pos);
}

int detect_ipv4(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_IP, ipv4_may_start, ipv4_at, out);
}

/* ---------------------------------------------------------------- IPv6 */

/* Up to eight groups of 1-4 hex digits separated by ':', at most one "::"
 * standing for the missing groups, optionally ending in a dotted quad (two
 * groups), then an optional zone ("%eth0") and prefix ("/64"). To keep
 * "dead::beef" in code and "12:30:45" times out, an address needs a decimal
 * digit, and exactly eight groups unless it has "::". Returns the end or 0. */
static size_t ipv6_at(const char *text, size_t len, size_t pos)
{
    size_t i = pos;
    int groups = 0;
    bool compressed = false, has_digit = false, all_zero = true;
    int last_group = 0;
    if (i + 1 < len && text[i] == ':' && text[i + 1] == ':') {
        compressed = true;
        i += 2;
    }
    while (i < len && groups < 8) {
        size_t start = i;
        int value = 0;
        while (i < len && is_hex((unsigned char)text[i]) && i - start < 5) {
            has_digit |= is_digit((unsigned char)text[i]);
            value = value * 16 + hex_value((unsigned char)text[i++]);
        }
        if (i == start)
            break;
        if (i - start > 4)
            return 0;
        int octets[4];
        size_t v4_end = i < len && text[i] == '.' && groups <= 6 ? dotted_quad(text, len, start, octets) : 0;
        if (v4_end) { /* an embedded IPv4 address ends it */
            size_t end = v4_end;
            groups += 2;
            all_zero = false;
            has_digit = true;
            i = end;
            break;
        }
        groups++;
        all_zero &= value == 0;
        last_group = value;
        if (i + 1 < len && text[i] == ':' && text[i + 1] == ':') {
            if (compressed)
                return 0;
            compressed = true;
            i += 2;
        } else if (i + 1 < len && text[i] == ':' && is_hex((unsigned char)text[i + 1])) {
            i++;
        } else {
            break;
        }
    }
    if (!has_digit || (compressed ? groups > 7 : groups != 8))
        return 0;
    /* :: and ::1 (also written out) identify no one. */
    if (all_zero || (last_group == 1 && groups >= 1 && text[i - 1] == '1' && i - pos <= 3))
        return 0;
    if (i < len && text[i] == '%') { /* zone index */
        size_t zone = i + 1;
        while (zone < len && zone - i <= 32 && (is_alnum((unsigned char)text[zone]) || text[zone] == '_' ||
                                                text[zone] == '.' || text[zone] == '-'))
            zone++;
        if (zone > i + 1)
            i = zone;
    }
    i += prefix_length(text, len, i, 128);
    if (!address_may_end(text, len, i) || (i < len && text[i] == ':' && i + 1 < len && is_hex((unsigned char)text[i + 1])))
        return 0;
    return i;
}

static bool ipv6_may_start(const char *text, size_t len, size_t pos)
{
    (void)len;
    unsigned char c = (unsigned char)text[pos];
    return (is_hex(c) || c == ':') && address_may_start(text, pos);
}

int detect_ipv6(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_IP, ipv6_may_start, ipv6_at, out);
}

/* ----------------------------------------------------------------- MAC */

/* Six pairs of hex digits separated by ':' or '-' (the same throughout), or
 * three quads separated by '.' (Cisco; needs a decimal digit, so that
 * "dead.beef.cafe" stays a word). Returns the end or 0. */
static size_t mac_at(const char *text, size_t len, size_t pos)
{
    size_t i = pos;
    bool has_digit = false;
    int group_len = 2, n_groups = 6;
    char separator = pos + 2 < len ? text[pos + 2] : 0;
    if (separator != ':' && separator != '-') {
        group_len = 4;
        n_groups = 3;
        separator = '.';
    }
    for (int g = 0; g < n_groups; g++) {
        if (g > 0) {
            if (i >= len || text[i] != separator)
                return 0;
            i++;
        }
        for (int k = 0; k < group_len; k++, i++) {
            if (i >= len || !is_hex((unsigned char)text[i]))
                return 0;
            has_digit |= is_digit((unsigned char)text[i]);
        }
    }
    if (group_len == 4 && !has_digit)
        return 0;
    if (i < len && (is_ascii_word_byte((unsigned char)text[i]) ||
                    (text[i] == separator && i + 1 < len && is_hex((unsigned char)text[i + 1]))))
        return 0;
    return i;
}

static bool mac_may_start(const char *text, size_t len, size_t pos)
{
    (void)len;
    return is_hex((unsigned char)text[pos]) && address_may_start(text, pos);
}

int detect_macs(const char *text, size_t len, struct span_list *out)
{
    return scan_matches(text, len, PLM_REDACT_MAC, mac_may_start, mac_at, out);
}

/* ---------------------------------------------------------------- URLs */

/* Query or fragment parameters whose value is a credential (compared
 * without case), and endings that make a name one ("github_token"). */
static const char *const secret_parameters[] = {
    "token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "authorization",
    "api_key", "apikey", "api-key", "key", "secret", "client_secret", "password", "passwd", "pwd", "pass",
    "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential", "sessionid", "session_id", "sid", "jwt", "private_token", "code_verifier", NULL};
static const char *const secret_parameter_endings[] = {"_token", "-token", "_key", "_secret", "_password",
                                                       "signature", NULL};

static bool name_is(const char *name, size_t len, const char *word)
{
    if (strlen(word) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (to_lower((unsigned char)name[i]) != (unsigned char)word[i])
            return false;
    return true;
}

static bool secret_parameter(const char *name, size_t len)
{
    for (const char *const *w = secret_parameters; *w; w++)
        if (name_is(name, len, *w))
            return true;
    for (const char *const *w = secret_parameter_endings; *w; w++) {
        size_t n = strlen(*w);
        if (len > n && name_is(name + len - n, n, *w))
            return true;
    }
    return false;
}

static bool is_url_byte(unsigned char c)
{
    return c > ' ' && c != 0x7f && !strchr("\"<>\\^`{|}", c);
}

/* The end of a URL whose "://" is at sep: up to a space or a byte URLs do
 * not hold, less trailing punctuation and unbalanced closing brackets. */
static size_t url_end(const char *text, size_t len, size_t sep)
{
    size_t end = sep + 3;
    int parens = 0, brackets = 0;
    while (end < len && is_url_byte((unsigned char)text[end])) {
        parens += (text[end] == '(') - (text[end] == ')');
        brackets += (text[end] == '[') - (text[end] == ']');
        end++;
    }
    while (end > sep + 3) {
        char last = text[end - 1];
        if (strchr(".,;:!?'*", last) || (last == ')' && parens < 0) || (last == ']' && brackets < 0)) {
            parens += last == ')';
            brackets += last == ']';
            end--;
        } else {
            break;
        }
    }
    return end;
}

/* Whether the URL [host, end) (after "://") carries a password in its user
 * part or a credential parameter anywhere after the host. */
static bool url_carries_secret(const char *text, size_t host, size_t end)
{
    size_t authority_end = host;
    while (authority_end < end && !strchr("/?#", text[authority_end]))
        authority_end++;
    const char *at = NULL;
    for (size_t i = host; i < authority_end; i++)
        if (text[i] == '@')
            at = text + i;
    if (at) {
        const char *colon = memchr(text + host, ':', (size_t)(at - (text + host)));
        if (colon && colon + 1 < at)
            return true;
    }
    /* name=value pairs after the host, separated by ? & ; # (a URL inside a
     * parameter, "redirect=https://...?token=x", is searched too). */
    size_t i = authority_end;
    while (i < end) {
        while (i < end && !strchr("?&;#", text[i]))
            i++;
        size_t name = ++i;
        while (i < end && !strchr("=?&;#", text[i]))
            i++;
        if (i < end && text[i] == '=' && i + 1 < end && !strchr("&;#", text[i + 1]) &&
            secret_parameter(text + name, i - name))
            return true;
    }
    return false;
}

int detect_urls(const char *text, size_t len, struct span_list *out)
{
    size_t i = 0;
    while (i + 3 <= len) {
        const char *found = memmem(text + i, len - i, "://", 3);
        if (!found)
            break;
        size_t sep = (size_t)(found - text);
        size_t scheme = sep;
        while (scheme > 0 && sep - scheme < 32 &&
               (is_alnum((unsigned char)text[scheme - 1]) || strchr("+-.", text[scheme - 1])))
            scheme--;
        while (scheme < sep && !is_alpha((unsigned char)text[scheme])) /* a scheme starts with a letter */
            scheme++;
        size_t end = url_end(text, len, sep);
        if (scheme < sep && end > sep + 3 && url_carries_secret(text, sep + 3, end)) {
            int rc = span_push(out, PLM_REDACT_URL, scheme, end);
            if (rc != PLM_OK)
                return rc;
        }
        i = end > sep + 3 ? end : sep + 3;
    }
    return PLM_OK;
}
