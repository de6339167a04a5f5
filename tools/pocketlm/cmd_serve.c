/* pocketlm serve: an OpenAI-compatible HTTP server (see docs/server.md). */
#include "commands.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_options {
    const char *model_path;
    int n_ctx;
    int n_threads;
    const char *kv_type;
    const char *host;
    int port;
    const char *api_key;
    const char *alias;
    const char *chat_template;
    int n_parallel;
    int max_queue;
    uint64_t max_body;
    float shutdown_timeout;
    struct escalation_options escalation;
};

/* The model's id in responses: --alias, or the file name without its directory. */
static const char *model_id(const struct serve_options *o)
{
    if (o->alias)
        return o->alias;
    const char *slash = strrchr(o->model_path, '/');
    return slash ? slash + 1 : o->model_path;
}

static int check_options(const struct serve_options *o)
{
    const char *problem = NULL;
    if (!o->model_path)
        problem = "no model given (-m FILE)";
    else if (o->port < 0 || o->port > 65535)
        problem = "--port must be in 0..65535";
    else if (o->n_parallel < 1 || o->n_parallel > 256)
        problem = "--parallel must be in 1..256";
    else if (o->max_queue < 0 || o->max_queue > 100000)
        problem = "--queue must be in 0..100000";
    else if (o->max_body < 1)
        problem = "--max-body must be at least 1 byte";
    else if (o->shutdown_timeout < 0)
        problem = "--shutdown-timeout must be >= 0";
    else if (o->n_ctx < 0)
        problem = "-c must be >= 0";
    if (problem)
        fprintf(stderr, "pocketlm serve: %s\n", problem);
    return problem ? EXIT_USAGE : EXIT_OK;
}

/* Serves until SIGTERM or SIGINT, then stops gracefully. The signals are
 * blocked before the server's threads start (they inherit the mask) and taken
 * here with sigwait, so no handler runs inside the server's code. */
static int serve(const struct serve_options *o, plm_model *model, const struct plm_server_params *params)
{
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up is a failed write, not the end of the server */

    plm_server *server;
    if (plm_server_start(model, params, &server))
        return report_error("serve", plm_last_error());
    const char *host = params->host;
    bool ipv6 = strchr(host, ':') != NULL;
    printf("listening on http://%s%s%s:%d\n", ipv6 ? "[" : "", host, ipv6 ? "]" : "", plm_server_port(server));
    fflush(stdout);
    fprintf(stderr, "pocketlm serve: %s, %d slot%s of %d tokens, queue %d\n", model_id(o), params->n_parallel,
            params->n_parallel == 1 ? "" : "s", params->session.n_ctx, params->max_queue);

    int signal_number;
    sigwait(&stop_signals, &signal_number);
    fprintf(stderr, "pocketlm serve: %s, finishing requests (up to %g s)\n", strsignal(signal_number),
            (double)o->shutdown_timeout);
    int n_cancelled = plm_server_stop(server, o->shutdown_timeout);
    fprintf(stderr, "pocketlm serve: stopped (%d request%s cancelled)\n", n_cancelled, n_cancelled == 1 ? "" : "s");
    return EXIT_OK;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_options o = {.host = "127.0.0.1", .port = 8080, .n_parallel = 1, .max_queue = 16,
                              .max_body = 1u << 20, .shutdown_timeout = 10};
    struct option table[16] = {
        {"-m", "--model", OPT_STRING, &o.model_path, "FILE", "GGUF model file"},
        {"-c", "--ctx-size", OPT_INT, &o.n_ctx, "N", "context of each slot in tokens (default: the model's, at most 4096)"},
        {"-t", "--threads", OPT_INT, &o.n_threads, "N", "threads of each slot (default: all cores)"},
        {NULL, "--kv-type", OPT_STRING, &o.kv_type, "TYPE", "KV cache type: f32, f16 or q8_0 (default f32)"},
        {NULL, "--host", OPT_STRING, &o.host, "ADDR", "address to listen on (default 127.0.0.1: this machine only)"},
        {NULL, "--port", OPT_INT, &o.port, "N", "port (default 8080; 0 picks a free one)"},
        {NULL, "--api-key", OPT_STRING, &o.api_key, "KEY", "require 'Authorization: Bearer KEY' on /v1/ routes"},
        {NULL, "--alias", OPT_STRING, &o.alias, "NAME", "the model's id in the API (default: the file name)"},
        {NULL, "--chat-template", OPT_STRING, &o.chat_template, "NAME",
         "chatml, qwen2, qwen3, smollm3, llama3, llama2 or gemma (default: the model's)"},
        {NULL, "--parallel", OPT_INT, &o.n_parallel, "N", "requests generated at once, each with its own KV cache (default 1)"},
        {NULL, "--queue", OPT_INT, &o.max_queue, "N", "requests that may wait for a slot; beyond, 503 (default 16)"},
        {NULL, "--max-body", OPT_U64, &o.max_body, "BYTES", "largest request body; beyond, 413 (default 1048576)"},
        {NULL, "--shutdown-timeout", OPT_FLOAT, &o.shutdown_timeout, "SECONDS",
         "on SIGTERM/SIGINT, time given to requests under way before they are cancelled (default 10)"},
    };
    int n_options = 13;
    n_options += escalation_option_entries(table + n_options, &o.escalation);
    struct command_spec spec = {"serve", "-m FILE [--host ADDR] [--port N] [--parallel N] [options]",
                                "Serves the model over HTTP with OpenAI's API: /v1/chat/completions, /v1/completions,\n"
                                "/v1/models, /health and /metrics. Prints 'listening on http://HOST:PORT' when ready.",
                                table, n_options, NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if ((rc = check_options(&o)))
        return rc;
    struct plm_server_params params = {.host = o.host, .port = o.port, .api_key = o.api_key,
                                       .model_name = model_id(&o), .chat_template = o.chat_template,
                                       .n_parallel = o.n_parallel, .max_queue = o.max_queue,
                                       .max_body = (size_t)o.max_body,
                                       .session = {.n_ctx = o.n_ctx, .n_threads = o.n_threads}};
    if (!parse_kv_type("serve", o.kv_type, &params.session.kv_type))
        return EXIT_USAGE;
    plm_policy *policy;
    plm_audit *audit;
    if ((rc = open_escalation("serve", &o.escalation, &policy, &audit)))
        return rc;
    params.policy = policy;
    params.audit = audit;
    plm_model *model;
    if (plm_model_load(o.model_path, &model)) {
        plm_audit_close(audit);
        plm_policy_free(policy);
        return report_error("serve", plm_last_error());
    }
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    if (params.session.n_ctx == 0)
        params.session.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    rc = serve(&o, model, &params);
    plm_model_free(model);
    plm_audit_close(audit);
    plm_policy_free(policy);
    return rc;
}
