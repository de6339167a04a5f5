/*
 * pocketlm: one program, one subcommand per job.
 *   run         generate text from a prompt
 *   chat        interactive multi-turn chat
 *   serve       an OpenAI-compatible HTTP server
 *   info        what a model file holds and needs
 *   convert     Hugging Face / llama2.c checkpoints to GGUF
 *   quantize    re-encode a model's weights in fewer bits
 *   calibrate   which input channels of each matrix matter, from sample text
 *   gap         how far compressed models are from the one they came from
 *   fit         which models fit which devices, and how fast they can decode
 *   perplexity  how well a model predicts a text
 *   tokenize    the token ids of a text
 *   bench       speed against this machine's limits
 *   synth       random-weight models with the shapes of real ones
 *   redact      personal data replaced by placeholders before text leaves the device
 *   ask         send a prompt to an upstream model named in a policy file
 *   audit       the record of every request sent off the device
 *   route-eval  calibrate when to escalate: uncertainty threshold against answer quality
 */
#include "commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "chat with a model, interactively or from a pipe"},
    {"serve", cmd_serve, "serve the model over HTTP with OpenAI's API"},
    {"info", cmd_info, "show a model's architecture, tensors and memory needs"},
    {"convert", cmd_convert, "convert a Hugging Face or llama2.c checkpoint to GGUF"},
    {"quantize", cmd_quantize, "re-encode a model's weight matrices in fewer bits (Q4_K_M, Q8_0, ...)"},
    {"calibrate", cmd_calibrate, "measure activation statistics (an importance matrix) for quantize --imatrix"},
    {"gap", cmd_gap, "compare compressed models with their reference: perplexity, KL divergence, speed"},
    {"fit", cmd_fit, "check which models fit a device's memory and how fast it can decode them"},
    {"perplexity", cmd_perplexity, "measure a model's perplexity on a text file"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"bench", cmd_bench, "measure prompt and generation speed against the machine's limits"},
    {"synth", cmd_synth, "write a random-weight model with the shape of a real one"},
    {"redact", cmd_redact, "replace personal data (emails, cards, keys, ...) by placeholders"},
    {"ask", cmd_ask, "send a prompt to an upstream model named in a policy file and stream its answer"},
    {"audit", cmd_audit, "list, show, verify or export the log of requests sent off the device"},
    {"route-eval", cmd_route_eval, "calibrate when to escalate: uncertainty threshold against answer quality"},
};

static void usage(FILE *out)
{
    fprintf(out, "pocketlm %s: on-device language models\n\nusage: pocketlm COMMAND [options]\n\ncommands:\n",
            PLM_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'pocketlm COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("pocketlm %s\n", PLM_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "pocketlm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
