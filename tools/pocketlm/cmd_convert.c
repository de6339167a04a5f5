/* pocketlm convert: Hugging Face checkpoint directories and llama2.c checkpoints to GGUF. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

int cmd_convert(int argc, char **argv)
{
    const char *src = NULL, *out = NULL, *vocab = NULL, *outtype = NULL;
    struct option table[] = {
        {"-o", "--outfile", OPT_STRING, &out, "OUT.gguf", "where to write the GGUF file (required)"},
        {NULL, "--vocab", OPT_STRING, &vocab, "TOKENIZER",
         "llama2.c tokenizer.bin (default: tokenizer.bin beside the checkpoint)"},
        {NULL, "--outtype", OPT_STRING, &outtype, "TYPE", "f32, f16 or bf16 (default f32)"},
    };
    struct command_spec spec = {"convert", "SRC -o OUT.gguf [--vocab TOKENIZER] [--outtype f32|f16|bf16]",
                                "Converts a Hugging Face checkpoint directory (config.json, *.safetensors, "
                                "tokenizer.json)\nor a llama2.c checkpoint file to GGUF.",
                                table, 3, &src, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!src || !out) {
        fprintf(stderr, "pocketlm convert: need a source and -o OUT.gguf (see pocketlm convert --help)\n");
        return EXIT_USAGE;
    }
    if (outtype && strcmp(outtype, "f32") && strcmp(outtype, "f16") && strcmp(outtype, "bf16")) {
        fprintf(stderr, "pocketlm convert: --outtype must be f32, f16 or bf16, not '%s'\n", outtype);
        return EXIT_USAGE;
    }
    if (plm_convert(src, out, vocab, outtype))
        return report_error("convert", plm_last_error());
    fprintf(stderr, "pocketlm convert: wrote %s\n", out);
    return EXIT_OK;
}
