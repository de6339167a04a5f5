/*
 * Command-line options, declared as a table per subcommand so that parsing,
 * validation and --help text come from one place.
 */
#ifndef PLM_TOOLS_OPTIONS_H
#define PLM_TOOLS_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

enum option_kind {
    OPT_FLAG,   /* bool, no value */
    OPT_STRING, /* const char * */
    OPT_INT,    /* int */
    OPT_FLOAT,  /* float */
    OPT_U64,    /* uint64_t */
    OPT_LIST,   /* struct string_list: repeatable string */
};

struct string_list {
    const char *items[32];
    int count;
};

struct option {
    const char *short_name; /* "-m" or NULL */
    const char *long_name;  /* "--model" */
    enum option_kind kind;
    void *target;
    const char *value_name; /* "FILE" in the help text */
    const char *help;
};

struct command_spec {
    const char *name;       /* "run" */
    const char *usage;      /* "-m FILE [options]" */
    const char *summary;    /* one line */
    const struct option *options;
    int n_options;
    const char **positional; /* receives the one positional argument, or NULL if none allowed */
    struct string_list *positionals; /* instead: receives every positional argument */
};

/* Exit codes of the program. */
enum exit_code {
    EXIT_OK = 0,
    EXIT_FAILURE_RUNTIME = 1, /* a model or input could not be used */
    EXIT_USAGE = 2,           /* bad command line */
};

/* Parses argv (after the subcommand). Returns -1 when --help was printed (exit 0),
 * EXIT_USAGE after printing an error, or 0. */
int parse_options(const struct command_spec *spec, int argc, char **argv);
void print_help(const struct command_spec *spec);

#endif
