/* The subcommands of the pocketlm program and what they share. */
#ifndef PLM_TOOLS_COMMANDS_H
#define PLM_TOOLS_COMMANDS_H

#include "options.h"
#include "pocketlm.h"

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_gap(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_redact(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_route_eval(int argc, char **argv);

/* Options of every command that runs a model. */
struct model_options {
    const char *model_path;
    int n_ctx;     /* 0 = min(model's training context, 4096) */
    int n_threads;
    const char *kv_type;    /* "f32", "f16", "q8_0" */
    const char *mem_budget; /* bytes, with an optional K/M/G suffix */
};

/* "1500000000", "512M", "2G" -> bytes (K/M/G are powers of 1024); false when malformed. */
bool parse_bytes(const char *text, uint64_t *bytes);

/* Parses --kv-type; false (after printing why) for an unknown name. */
bool parse_kv_type(const char *command, const char *name, enum plm_kv_type *kv_type);

/* Options of the commands that generate text. */
struct generation_options {
    struct plm_sampler_params sampling;
    int n_predict;
    struct string_list stop;
    bool ignore_eos;
    const char *chat_template;
};

void generation_options_default(struct generation_options *g);

/* Append the shared option entries to a command's table; return how many. */
int model_option_entries(struct option *table, struct model_options *m);
int generation_option_entries(struct option *table, struct generation_options *g);

/* Checks the sampler parameters; prints the problem and returns EXIT_USAGE. */
int check_sampling(const char *command, const struct generation_options *g, plm_sampler **sampler,
                   int n_vocab);

/* Loads the model and opens a session; prints the error and returns
 * EXIT_FAILURE_RUNTIME on failure. */
int open_model(const char *command, const struct model_options *opts, plm_model **model,
               plm_session **session);

/* Prints "pocketlm <command>: <message>" on stderr, returns EXIT_FAILURE_RUNTIME. */
int report_error(const char *command, const char *what);

/* Tokenizes text into *tokens (malloc'd) in one pass; returns the count, or
 * -1 after printing the error. */
int tokenize_text(const char *command, plm_model *model, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t **tokens);

/* Reads a whole file (or a pipe such as /dev/stdin), NUL-terminated; NULL on failure. */
char *read_text_file(const char *path, size_t *len);

/* --policy FILE and --audit FILE: escalation (docs/escalation.md). */
struct escalation_options {
    const char *policy_path; /* NULL: everything stays on the device */
    const char *audit_path;  /* NULL: plm_audit_default_path */
};
int escalation_option_entries(struct option *table, struct escalation_options *e);
/* Loads the policy and opens (creating) the audit log when --policy was
 * given; *policy and *audit stay NULL otherwise. Prints the error and returns
 * EXIT_FAILURE_RUNTIME on failure. */
int open_escalation(const char *command, const struct escalation_options *e, plm_policy **policy,
                    plm_audit **audit);

/* run and chat with --policy (policy_answer.c). A plm_consent_callback whose
 * user is the command's name: shows the redacted conversation on stderr and
 * reads y/N from the controlling terminal; without one, nothing is sent. */
bool consent_on_terminal(void *command, const struct plm_upstream *upstream, const char *reason,
                         const struct plm_chat_message *redacted, int n_messages);
/* One line on stderr: who answered (the device or an upstream) and why, what
 * was sent and redacted, the audit entry. */
void print_route_note(const char *command, const struct plm_answer_result *result);

/* Streams generated text to stdout as it arrives. */
bool print_text(void *user, const char *text, size_t len);

#endif
