/* pocketlm audit: read and check the record of what left the device (docs/audit.md). */
#include "commands.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the library's message without its "audit: " (the command names it). */
static int report_audit_error(const char *command)
{
    const char *message = plm_last_error();
    if (strncmp(message, "audit: ", 7) == 0)
        message += 7;
    return report_error(command, message);
}

/* Opens the log named by --audit, or the default one; prints why not. */
static int open_audit(const char *command, const char *path, plm_audit **audit)
{
    char default_path[4096];
    if (!path) {
        if (plm_audit_default_path(default_path, sizeof default_path))
            return report_audit_error(command);
        path = default_path;
    }
    if (plm_audit_open_existing(path, audit))
        return report_audit_error(command);
    return EXIT_OK;
}

/* The option every subcommand has. */
static struct option audit_file_option(const char **path)
{
    return (struct option){NULL, "--audit", OPT_STRING, path, "FILE",
                           "the audit log (default: $POCKETLM_HOME/audit.db)"};
}

/* Parses a subcommand's options and opens the log. Returns -1 after --help, an
 * exit code after printing an error, or 0 with *audit open. */
static int parse_and_open(const struct command_spec *spec, int argc, char **argv, const char **path,
                          plm_audit **audit)
{
    int rc = parse_options(spec, argc, argv);
    return rc ? rc : open_audit(spec->name, *path, audit);
}

/* {"email":2,"phone":1} -> "email=2,phone=1"; "-" when there are none. */
static void format_redactions(const char *json, char *out, size_t capacity)
{
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    size_t used = 0;
    out[0] = '\0';
    for (cJSON *item = root ? root->child : NULL; item && used < capacity; item = item->next) {
        int n = snprintf(out + used, capacity - used, "%s%s=%d", used ? "," : "", item->string, item->valueint);
        used += n > 0 ? (size_t)n : 0;
    }
    if (!out[0])
        snprintf(out, capacity, "-");
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------- list */

struct list_output {
    bool json;
    cJSON *array; /* with --json */
    int n;
};

static cJSON *request_json(const struct plm_audit_entry *r, const struct plm_audit_entry *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)r->seq);
    cJSON_AddStringToObject(o, "time", r->time);
    cJSON_AddStringToObject(o, "upstream", r->upstream);
    cJSON_AddStringToObject(o, "host", r->host);
    cJSON_AddStringToObject(o, "rule", r->rule);
    cJSON_AddStringToObject(o, "reason", r->reason);
    cJSON *redactions = r->redactions ? cJSON_Parse(r->redactions) : NULL;
    cJSON_AddItemToObject(o, "redactions", redactions ? redactions : cJSON_CreateObject());
    cJSON_AddBoolToObject(o, "finished", c != NULL);
    if (c) {
        cJSON_AddNumberToObject(o, "http_status", (double)c->http_status);
        cJSON_AddStringToObject(o, "error", c->error);
        cJSON_AddNumberToObject(o, "bytes_sent", (double)c->bytes_sent);
        cJSON_AddNumberToObject(o, "bytes_received", (double)c->bytes_received);
        cJSON_AddNumberToObject(o, "duration_ms", (double)c->duration_ms);
        cJSON_AddStringToObject(o, "outcome", c->outcome);
    }
    return o;
}

static bool list_request(void *user, const struct plm_audit_entry *r, const struct plm_audit_entry *c)
{
    struct list_output *out = user;
    out->n++;
    if (out->json) {
        cJSON_AddItemToArray(out->array, request_json(r, c));
        return true;
    }
    char redactions[256], sent[24] = "-", received[24] = "-", status[8] = "-";
    format_redactions(r->redactions, redactions, sizeof redactions);
    if (c) {
        snprintf(sent, sizeof sent, "%" PRId64, c->bytes_sent);
        snprintf(received, sizeof received, "%" PRId64, c->bytes_received);
        if (c->http_status)
            snprintf(status, sizeof status, "%" PRId64, c->http_status);
    }
    printf("%-6" PRId64 " %-24s %-12s %-16s %9s %9s %-6s %-18s %s\n", r->seq, r->time, r->upstream, r->rule, sent,
           received, status, c ? c->outcome : "unfinished", redactions);
    return true;
}

static int audit_list(int argc, char **argv)
{
    const char *path = NULL;
    struct plm_audit_filter filter = {0};
    struct list_output out = {0};
    struct option table[] = {
        audit_file_option(&path),
        {NULL, "--since", OPT_STRING, &filter.since, "TIME", "only requests at or after this UTC time (2025-01-31, 2025-01-31T12:00)"},
        {NULL, "--upstream", OPT_STRING, &filter.upstream, "NAME", "only requests to this upstream"},
        {NULL, "--json", OPT_FLAG, &out.json, NULL, "print a JSON array instead of a table"},
    };
    struct command_spec spec = {"audit list", "[--since TIME] [--upstream NAME] [--json] [--audit FILE]",
                                "One line per request sent off the device, oldest first: id, time, upstream, rule,\n"
                                "bytes sent and received, HTTP status, outcome and the redactions made.",
                                table, 4, NULL, NULL};
    plm_audit *audit;
    int rc = parse_and_open(&spec, argc, argv, &path, &audit);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (out.json)
        out.array = cJSON_CreateArray();
    else
        printf("%-6s %-24s %-12s %-16s %9s %9s %-6s %-18s %s\n", "ID", "TIME", "UPSTREAM", "RULE", "SENT", "RECEIVED",
               "STATUS", "OUTCOME", "REDACTIONS");
    int status = plm_audit_requests(audit, &filter, list_request, &out);
    plm_audit_close(audit);
    if (status) {
        cJSON_Delete(out.array);
        report_audit_error("audit list");
        return status == PLM_ERR_ARG ? EXIT_USAGE : EXIT_FAILURE_RUNTIME; /* a malformed --since */
    }
    if (out.json) {
        char *text = cJSON_Print(out.array);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(out.array);
    }
    return EXIT_OK;
}

/* ------------------------------------------------------------------- show */

/* Text that a terminal shows as it is: UTF-8 without control characters
 * other than tab and line ends. */
static bool is_plain_text(const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint8_t b = bytes[i];
        size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || i + n > len || (b < 0x20 && !strchr("\t\r\n", b)) || b == 0x7F || (n == 2 && b < 0xC2))
            return false;
        for (size_t k = 1; k < n; k++)
            if ((bytes[i + k] & 0xC0) != 0x80)
                return false;
        i += n;
    }
    return true;
}

/* The bytes as text when they are, else as a hex dump (offset, 16 bytes, ASCII). */
static void print_bytes(const char *what, const uint8_t *bytes, size_t len)
{
    bool text = is_plain_text(bytes, len);
    printf("--- %s: %zu bytes%s ---\n", what, len, text ? "" : ", not text: hex");
    if (len == 0)
        return; /* (an empty blob reads as NULL) */
    if (text) {
        fwrite(bytes, 1, len, stdout);
        if (bytes[len - 1] != '\n')
            printf("\n");
        return;
    }
    for (size_t row = 0; row < len; row += 16) {
        printf("%08zx ", row);
        for (size_t i = row; i < row + 16; i++) {
            if (i < len)
                printf(" %02x", bytes[i]);
            else
                printf("   ");
        }
        printf("  |");
        for (size_t i = row; i < row + 16 && i < len; i++)
            putchar(bytes[i] >= 0x20 && bytes[i] < 0x7F ? bytes[i] : '.');
        printf("|\n");
    }
}

static bool show_request(void *user, const struct plm_audit_entry *r, const struct plm_audit_entry *c)
{
    char redactions[256];
    format_redactions(r->redactions, redactions, sizeof redactions);
    printf("request %" PRId64 "\n", r->seq);
    printf("  time:        %s\n", r->time);
    printf("  upstream:    %s (%s)\n", r->upstream, r->host);
    printf("  rule:        %s\n", r->rule);
    printf("  reason:      %s\n", r->reason && *r->reason ? r->reason : "-");
    printf("  redactions:  %s\n", redactions);
    printf("  prev_hash:   %s\n  hash:        %s\n", r->prev_hash, r->hash);
    if (c) {
        printf("completion (entry %" PRId64 ")\n", c->seq);
        printf("  time:        %s\n", c->time);
        if (c->http_status)
            printf("  status:      HTTP %" PRId64 "\n", c->http_status);
        else
            printf("  status:      no HTTP response\n");
        if (c->error && *c->error)
            printf("  error:       %s\n", c->error);
        printf("  outcome:     %s\n", c->outcome);
        printf("  sent:        %" PRId64 " bytes\n  received:    %" PRId64 " bytes\n", c->bytes_sent,
               c->bytes_received);
        printf("  duration:    %" PRId64 " ms\n", c->duration_ms);
        printf("  prev_hash:   %s\n  hash:        %s\n", c->prev_hash, c->hash);
    } else {
        printf("completion:    none (still under way, or the process ended before it finished)\n");
    }
    print_bytes("request line and headers as sent (secrets as [KEY])", r->head, r->head_len);
    print_bytes("body as sent", r->body, r->body_len);
    *(bool *)user = true;
    return false;
}

static int audit_show(int argc, char **argv)
{
    const char *path = NULL, *id_text = NULL;
    struct option table[] = {
        audit_file_option(&path),
    };
    struct command_spec spec = {"audit show", "ID [--audit FILE]",
                                "Everything recorded about request ID (as `audit list` numbers it; the id of its\n"
                                "completion works too): the request line, headers and body exactly as sent (as text\n"
                                "when they are UTF-8, else in hex), the redactions, the outcome and the hashes.",
                                table, 1, &id_text, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    char *end = NULL;
    long long id = id_text ? strtoll(id_text, &end, 10) : 0;
    if (!id_text || *end || id < 1) {
        fprintf(stderr, "pocketlm audit show: need the id of a request (a positive integer), not '%s'\n",
                id_text ? id_text : "");
        return EXIT_USAGE;
    }
    plm_audit *audit;
    if ((rc = open_audit("audit show", path, &audit)))
        return rc;
    struct plm_audit_filter filter = {.id = id};
    bool found = false;
    int status = plm_audit_requests(audit, &filter, show_request, &found);
    plm_audit_close(audit);
    if (status)
        return report_audit_error("audit show");
    if (!found) {
        fprintf(stderr, "pocketlm audit show: no request %lld in the log\n", id);
        return EXIT_FAILURE_RUNTIME;
    }
    return EXIT_OK;
}

/* ----------------------------------------------------------------- verify */

static int audit_verify(int argc, char **argv)
{
    const char *path = NULL;
    struct option table[] = {
        audit_file_option(&path),
    };
    struct command_spec spec = {"audit verify", "[--audit FILE]",
                                "Checks the hash chain: every entry's hash, its link to the one before, the numbering,\n"
                                "and the head. Exit 0 when intact, 1 with the first broken entry. A keyed log needs\n"
                                "POCKETLM_AUDIT_KEY.",
                                table, 1, NULL, NULL};
    plm_audit *audit;
    int rc = parse_and_open(&spec, argc, argv, &path, &audit);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct plm_audit_verdict v;
    int status = plm_audit_verify(audit, &v);
    plm_audit_close(audit);
    if (status)
        return report_audit_error("audit verify");
    if (!v.intact) {
        fprintf(stderr, "pocketlm audit verify: chain broken at entry %" PRId64 ": %s\n", v.first_bad_seq, v.problem);
        return EXIT_FAILURE_RUNTIME;
    }
    printf("%" PRId64 " entries (%" PRId64 " requests, %" PRId64 " completions), chain intact, head %s\n", v.n_entries,
           v.n_requests, v.n_completions, v.head_hash);
    return EXIT_OK;
}

/* ----------------------------------------------------------------- export */

struct export_output {
    FILE *out;
    bool csv;
    int64_t last_seq; /* the head's count when the export began: later entries wait for the next one */
};

static char *hex_of(const uint8_t *bytes, size_t len)
{
    char *hex = malloc(2 * len + 1);
    if (!hex)
        return NULL;
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
    hex[2 * len] = '\0';
    return hex;
}

/* One entry as a JSON object holding exactly the fields its hash covers. */
static cJSON *entry_json(const struct plm_audit_entry *e, char *head_hex, char *body_hex)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)e->seq);
    cJSON_AddStringToObject(o, "kind", e->kind);
    cJSON_AddStringToObject(o, "time", e->time);
    if (strcmp(e->kind, "request") == 0) {
        cJSON_AddStringToObject(o, "upstream", e->upstream);
        cJSON_AddStringToObject(o, "host", e->host);
        cJSON_AddStringToObject(o, "rule", e->rule);
        cJSON_AddStringToObject(o, "reason", e->reason);
        cJSON_AddStringToObject(o, "head_hex", head_hex);
        cJSON_AddStringToObject(o, "body_hex", body_hex);
        cJSON_AddStringToObject(o, "redactions", e->redactions);
    } else {
        cJSON_AddNumberToObject(o, "request_seq", (double)e->request_seq);
        cJSON_AddNumberToObject(o, "http_status", (double)e->http_status);
        cJSON_AddStringToObject(o, "error", e->error);
        cJSON_AddNumberToObject(o, "bytes_sent", (double)e->bytes_sent);
        cJSON_AddNumberToObject(o, "bytes_received", (double)e->bytes_received);
        cJSON_AddNumberToObject(o, "duration_ms", (double)e->duration_ms);
        cJSON_AddStringToObject(o, "outcome", e->outcome);
    }
    cJSON_AddStringToObject(o, "prev_hash", e->prev_hash);
    cJSON_AddStringToObject(o, "hash", e->hash);
    return o;
}

/* A CSV field: quoted, with quotes doubled; NULL is an empty field. */
static void put_csv_text(FILE *out, const char *text, bool last)
{
    if (text) {
        fputc('"', out);
        for (const char *p = text; *p; p++) {
            if (*p == '"')
                fputc('"', out);
            fputc(*p, out);
        }
        fputc('"', out);
    }
    fputc(last ? '\n' : ',', out);
}

static void put_csv_entry(FILE *out, const struct plm_audit_entry *e, const char *head_hex, const char *body_hex)
{
    bool request = strcmp(e->kind, "request") == 0;
    fprintf(out, "%" PRId64 ",", e->seq);
    const char *texts[] = {e->kind, e->time, e->upstream, e->host, e->rule, e->reason};
    for (int i = 0; i < 6; i++)
        put_csv_text(out, texts[i], false);
    fprintf(out, "%s,%s,", request ? head_hex : "", request ? body_hex : "");
    put_csv_text(out, e->redactions, false);
    if (request)
        fprintf(out, ",,");
    else
        fprintf(out, "%" PRId64 ",%" PRId64 ",", e->request_seq, e->http_status);
    put_csv_text(out, e->error, false);
    if (request)
        fprintf(out, ",,,");
    else
        fprintf(out, "%" PRId64 ",%" PRId64 ",%" PRId64 ",", e->bytes_sent, e->bytes_received, e->duration_ms);
    put_csv_text(out, e->outcome, false);
    fprintf(out, "%s,%s\n", e->prev_hash, e->hash);
}

static bool export_entry(void *user, const struct plm_audit_entry *e)
{
    struct export_output *x = user;
    if (e->seq > x->last_seq)
        return false;
    char *head_hex = hex_of(e->head, e->head_len), *body_hex = hex_of(e->body, e->body_len);
    if (x->csv) {
        put_csv_entry(x->out, e, head_hex ? head_hex : "", body_hex ? body_hex : "");
    } else {
        cJSON *o = entry_json(e, head_hex, body_hex);
        char *line = cJSON_PrintUnformatted(o);
        fprintf(x->out, "%s\n", line ? line : "{}");
        free(line);
        cJSON_Delete(o);
    }
    free(head_hex);
    free(body_hex);
    return true;
}

/* The first JSONL line: what a checker needs besides the entries. */
static void put_jsonl_header(FILE *out, const struct plm_audit_head *head)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "pocketlm-audit");
    cJSON_AddNumberToObject(o, "schema_version", head->schema_version);
    cJSON_AddStringToObject(o, "hash", head->hash_kind);
    cJSON_AddStringToObject(o, "genesis", "0000000000000000000000000000000000000000000000000000000000000000");
    cJSON_AddNumberToObject(o, "n_entries", (double)head->n_entries);
    cJSON_AddStringToObject(o, "head_hash", head->hash);
    char *line = cJSON_PrintUnformatted(o);
    fprintf(out, "%s\n", line);
    free(line);
    cJSON_Delete(o);
}

static int audit_export(int argc, char **argv)
{
    const char *path = NULL, *format = "jsonl", *out_path = NULL;
    struct option table[] = {
        audit_file_option(&path),
        {NULL, "--format", OPT_STRING, &format, "jsonl|csv", "output format (default jsonl)"},
        {"-o", "--output", OPT_STRING, &out_path, "FILE", "write there instead of stdout"},
    };
    struct command_spec spec = {"audit export", "[--format jsonl|csv] [-o FILE] [--audit FILE]",
                                "Every entry in chain order with all the fields its hash covers (bodies in hex) and\n"
                                "the hashes, so that another program can check the chain (docs/audit.md). JSONL\n"
                                "starts with one line describing the log and its head.",
                                table, 3, NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct export_output x = {.csv = strcmp(format, "csv") == 0};
    if (!x.csv && strcmp(format, "jsonl") != 0) {
        fprintf(stderr, "pocketlm audit export: --format must be jsonl or csv, not '%s'\n", format);
        return EXIT_USAGE;
    }
    plm_audit *audit;
    if ((rc = open_audit("audit export", path, &audit)))
        return rc;
    struct plm_audit_head head;
    if (plm_audit_get_head(audit, &head)) {
        plm_audit_close(audit);
        return report_audit_error("audit export");
    }
    x.last_seq = head.n_entries;
    x.out = out_path ? fopen(out_path, "wb") : stdout;
    if (!x.out) {
        plm_audit_close(audit);
        fprintf(stderr, "pocketlm audit export: cannot write '%s'\n", out_path);
        return EXIT_FAILURE_RUNTIME;
    }
    if (x.csv)
        fprintf(x.out, "seq,kind,time,upstream,host,rule,reason,head_hex,body_hex,redactions,request_seq,http_status,"
                       "error,bytes_sent,bytes_received,duration_ms,outcome,prev_hash,hash\n");
    else
        put_jsonl_header(x.out, &head);
    int status = plm_audit_entries(audit, 1, export_entry, &x);
    plm_audit_close(audit);
    bool written = !ferror(x.out) && (out_path ? fclose(x.out) == 0 : fflush(x.out) == 0);
    if (status)
        return report_audit_error("audit export");
    if (!written) {
        fprintf(stderr, "pocketlm audit export: writing '%s' failed\n", out_path ? out_path : "stdout");
        return EXIT_FAILURE_RUNTIME;
    }
    return EXIT_OK;
}

/* ------------------------------------------------------------- dispatching */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} audit_commands[] = {
    {"list", audit_list, "one line per request sent off the device"},
    {"show", audit_show, "everything recorded about one request, the bytes sent included"},
    {"verify", audit_verify, "check the hash chain (exit 1 at the first broken entry)"},
    {"export", audit_export, "every entry with its hashes, as JSONL or CSV"},
};

static void audit_usage(FILE *out)
{
    fprintf(out, "usage: pocketlm audit list|show ID|verify|export [options] [--audit FILE]\n\n"
                 "The record of every request sent off the device (docs/audit.md).\n\n");
    for (size_t i = 0; i < sizeof audit_commands / sizeof audit_commands[0]; i++)
        fprintf(out, "  %-8s %s\n", audit_commands[i].name, audit_commands[i].summary);
    fprintf(out, "\n'pocketlm audit COMMAND --help' describes a command's options.\n");
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "pocketlm audit: need a command: list, show, verify or export (see pocketlm audit --help)\n");
        return EXIT_USAGE;
    }
    if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        audit_usage(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof audit_commands / sizeof audit_commands[0]; i++)
        if (strcmp(argv[0], audit_commands[i].name) == 0)
            return audit_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pocketlm audit: unknown command '%s' (list, show, verify or export)\n", argv[0]);
    return EXIT_USAGE;
}
