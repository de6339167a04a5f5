/*
 * Vocabulary and tokenizers, built from a GGUF file's tokenizer.* metadata:
 *   tokenizer.ggml.model        "llama" (SentencePiece-style, scores + byte fallback)
 *                               or "gpt2" (byte-level BPE with merges)
 *   tokenizer.ggml.pre          pre-tokenizer split rules for gpt2: "default"/"gpt-2",
 *                               "llama-bpe" (Llama 3), "qwen2", "smollm", ...
 *   tokenizer.ggml.tokens       token texts
 *   tokenizer.ggml.scores       (llama) merge priority of each token
 *   tokenizer.ggml.token_type   1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
 *   tokenizer.ggml.merges       (gpt2) "a b" merge rules, highest priority first
 *   tokenizer.ggml.{bos,eos,eot,unknown,padding}_token_id
 *   tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix
 */
#ifndef PLM_TOKENIZER_VOCAB_H
#define PLM_TOKENIZER_VOCAB_H

#include "format/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum plm_token_type {
    PLM_TOKEN_NORMAL = 1,
    PLM_TOKEN_UNKNOWN = 2,
    PLM_TOKEN_CONTROL = 3,
    PLM_TOKEN_USER_DEFINED = 4,
    PLM_TOKEN_UNUSED = 5,
    PLM_TOKEN_BYTE = 6,
};

struct plm_vocab;

/* Builds the vocabulary; PLM_ERR_FORMAT / PLM_ERR_UNSUPPORTED with a message
 * when the metadata is missing, inconsistent or of an unknown tokenizer model. */
int vocab_load(const struct gguf_file *file, struct plm_vocab **vocab);
void vocab_free(struct plm_vocab *vocab);

int vocab_n_tokens(const struct plm_vocab *vocab);
/* Bytes the vocabulary keeps allocated: token texts, hash and merge tables. */
size_t vocab_heap_bytes(const struct plm_vocab *vocab);
int32_t vocab_bos(const struct plm_vocab *vocab); /* -1 when absent */
int32_t vocab_eos(const struct plm_vocab *vocab);
int32_t vocab_eot(const struct plm_vocab *vocab);
bool vocab_add_bos(const struct plm_vocab *vocab);
bool vocab_add_eos(const struct plm_vocab *vocab);
/* End of generation: EOS, EOT, and tokens such as <|im_end|>, <|eot_id|>, <end_of_turn>. */
bool vocab_is_eog(const struct plm_vocab *vocab, int32_t token);
enum plm_token_type vocab_token_type(const struct plm_vocab *vocab, int32_t token);
/* The token's text as stored in the vocabulary (with ▁ or byte-level characters). */
struct gguf_str vocab_token_text(const struct plm_vocab *vocab, int32_t token);
/* Looks up a token by its exact stored text; -1 when absent. */
int32_t vocab_find(const struct plm_vocab *vocab, const char *text, size_t len);

/* Encodes text into *tokens (malloc'd, *n_tokens entries). add_special adds BOS
 * (and EOS) per the add_*_token flags; parse_special matches the text of control
 * and user-defined tokens in the input as those tokens. Never fails on any bytes
 * (invalid UTF-8 goes through byte fallback / byte-level encoding). */
int vocab_encode(const struct plm_vocab *vocab, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t **tokens, size_t *n_tokens);

/* The decoded bytes of one token (see plm_token_to_piece). Returns the length
 * needed (may exceed size; at most size bytes written) or PLM_ERR_ARG. */
int vocab_token_to_piece(const struct plm_vocab *vocab, int32_t token, char *buf, size_t size,
                         bool render_special);

#endif
