/*
 * The byte-level BPE tokenizer (tokenizer.ggml.model "gpt2"): encode and decode of
 * arbitrary bytes with the real vocabulary of ../shared (or a small generated
 * one when it is absent). See fuzz_tokenizer.h for the input layout.
 */
#include "fuzz_common.h"
#include "fuzz_tokenizer.h"

static const struct plm_vocab *vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vocab = fuzz_vocab_load("models/gguf-vocab/ggml-vocab-gpt-2.gguf", "gpt2");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokenizer_run(vocab, data, size);
    return 0;
}
