#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void print_help(const struct command_spec *spec)
{
    printf("usage: pocketlm %s %s\n\n%s\n\noptions:\n", spec->name, spec->usage, spec->summary);
    for (int i = 0; i < spec->n_options; i++) {
        const struct option *o = &spec->options[i];
        char names[64];
        snprintf(names, sizeof names, "%s%s%s %s", o->short_name ? o->short_name : "",
                 o->short_name ? ", " : "    ", o->long_name, o->value_name ? o->value_name : "");
        printf("  %-30s %s\n", names, o->help);
    }
    printf("  %-30s %s\n", "-h, --help", "show this help");
}

static const struct option *find_option(const struct command_spec *spec, const char *arg)
{
    for (int i = 0; i < spec->n_options; i++) {
        const struct option *o = &spec->options[i];
        if ((o->short_name && strcmp(arg, o->short_name) == 0) || strcmp(arg, o->long_name) == 0)
            return o;
    }
    return NULL;
}

static int usage_error(const struct command_spec *spec, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "pocketlm %s: ", spec->name);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see pocketlm %s --help)\n", spec->name);
    return EXIT_USAGE;
}

static int set_value(const struct command_spec *spec, const struct option *o, const char *value)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_STRING:
        *(const char **)o->target = value;
        return 0;
    case OPT_LIST: {
        struct string_list *list = o->target;
        if (list->count == (int)(sizeof list->items / sizeof list->items[0]))
            return usage_error(spec, "too many %s options%s", o->long_name, "");
        list->items[list->count++] = value;
        return 0;
    }
    case OPT_INT: {
        long v = strtol(value, &end, 10);
        if (errno || *end || end == value || v < -2147483647L || v > 2147483647L)
            return usage_error(spec, "%s expects an integer, got '%s'", o->long_name, value);
        *(int *)o->target = (int)v;
        return 0;
    }
    case OPT_U64: {
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || *end || end == value || value[0] == '-')
            return usage_error(spec, "%s expects a non-negative integer, got '%s'", o->long_name, value);
        *(uint64_t *)o->target = v;
        return 0;
    }
    case OPT_FLOAT: {
        float v = strtof(value, &end);
        if (errno || *end || end == value || !isfinite(v))
            return usage_error(spec, "%s expects a number, got '%s'", o->long_name, value);
        *(float *)o->target = v;
        return 0;
    }
    case OPT_FLAG:
        break;
    }
    return 0;
}

static int set_positional(const struct command_spec *spec, const char *arg)
{
    struct string_list *list = spec->positionals;
    if (list) {
        if (list->count == (int)(sizeof list->items / sizeof list->items[0]))
            return usage_error(spec, "too many arguments%s%s", "", "");
        list->items[list->count++] = arg;
        return 0;
    }
    if (!spec->positional || *spec->positional)
        return usage_error(spec, "unexpected argument '%s'%s", arg, "");
    *spec->positional = arg;
    return 0;
}

int parse_options(const struct command_spec *spec, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            print_help(spec);
            return -1;
        }
        const struct option *o = arg[0] == '-' && arg[1] ? find_option(spec, arg) : NULL;
        if (!o) {
            if (arg[0] == '-' && arg[1])
                return usage_error(spec, "unknown option '%s'%s", arg, "");
            int rc = set_positional(spec, arg);
            if (rc)
                return rc;
            continue;
        }
        if (o->kind == OPT_FLAG) {
            *(bool *)o->target = true;
            continue;
        }
        if (i + 1 >= argc)
            return usage_error(spec, "%s needs a value%s", arg, "");
        int rc = set_value(spec, o, argv[++i]);
        if (rc)
            return rc;
    }
    return 0;
}
