/*
 * The part of fuzz_tokenizer_spm.c and fuzz_tokenizer_bpe.c that is the same:
 * loading the vocabulary once, and encoding/decoding one input with it.
 */
#ifndef PLM_FUZZ_TOKENIZER_H
#define PLM_FUZZ_TOKENIZER_H

#include "tokenizer/vocab.h"

#include <stddef.h>
#include <stdint.h>

/* Loads $POCKETLM_SHARED/<shared_vocab> or, when that is absent, a small generated
 * vocabulary of the same kind ("llama" or "gpt2"). Never returns NULL. */
const struct plm_vocab *fuzz_vocab_load(const char *shared_vocab, const char *model);

/* Input: one flags byte (bit 0 add_special, bit 1 parse_special, bit 2 render_special,
 * bit 3 decode mode), then the text to encode, or in decode mode little-endian int32
 * token ids (any value, valid or not) to decode. */
void fuzz_tokenizer_run(const struct plm_vocab *vocab, const uint8_t *data, size_t size);

#endif
