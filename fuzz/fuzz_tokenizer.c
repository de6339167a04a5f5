#include "fuzz_tokenizer.h"

#include "fuzz_common.h"

#include "format/gguf_writer.h"
#include "pocketlm.h"
#include "tokenizer/vocab_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------- the generated vocabularies */

/* GPT-2's byte-level alphabet: printable bytes stand for themselves, the others
 * for code points from U+0100 up, in byte order. Writes the UTF-8 of byte b. */
static void byte_level_char(int b, char out[3])
{
    static int map[256];
    static bool ready;
    if (!ready) {
        int next = 256;
        for (int i = 0; i < 256; i++) {
            bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
            map[i] = printable ? i : next++;
        }
        ready = true;
    }
    int cp = map[b];
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

#define SMALL_MAX_TOKENS 300

/* SentencePiece style: <unk>, <s>, </s>, 256 byte tokens, a few merged pieces. */
static int small_spm(const char **texts, float *scores, int32_t *types)
{
    static char bytes[256][8];
    static const char *const specials[] = {"<unk>", "<s>", "</s>"};
    static const char *const pieces[] = {"\xE2\x96\x81", "a", "b", ("\xE2\x96\x81" "a"), "ab",
                                         ("\xE2\x96\x81" "ab"), "\xC3\xA9"};
    int n = 0;
    for (int i = 0; i < 3; i++, n++) {
        texts[n] = specials[i];
        types[n] = i == 0 ? PLM_TOKEN_UNKNOWN : PLM_TOKEN_CONTROL;
        scores[n] = 0;
    }
    for (int b = 0; b < 256; b++, n++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        texts[n] = bytes[b];
        types[n] = PLM_TOKEN_BYTE;
        scores[n] = 0;
    }
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++, n++) {
        texts[n] = pieces[i];
        types[n] = PLM_TOKEN_NORMAL;
        scores[n] = -(float)i;
    }
    return n;
}

/* Byte-level BPE: the 256 byte characters, two merged pieces, <|endoftext|>. */
static int small_bpe(const char **texts, float *scores, int32_t *types)
{
    static char chars[256][3];
    static const char *const pieces[] = {"ab", ("\xC4\xA0" "a"), "<|endoftext|>"};
    int n = 0;
    for (int b = 0; b < 256; b++, n++) {
        byte_level_char(b, chars[b]);
        texts[n] = chars[b];
        types[n] = PLM_TOKEN_NORMAL;
        scores[n] = 0;
    }
    for (int i = 0; i < 3; i++, n++) {
        texts[n] = pieces[i];
        types[n] = i == 2 ? PLM_TOKEN_CONTROL : PLM_TOKEN_NORMAL;
        scores[n] = 0;
    }
    return n;
}

static const char *write_small_vocab(const char *model)
{
    const char *texts[SMALL_MAX_TOKENS];
    float scores[SMALL_MAX_TOKENS];
    int32_t types[SMALL_MAX_TOKENS];
    bool spm = strcmp(model, "llama") == 0;
    int n = spm ? small_spm(texts, scores, types) : small_bpe(texts, scores, types);
    static const char *const merges[] = {"a b", "\xC4\xA0 a"};

    struct gguf_writer *w = gguf_writer_new();
    int rc = w ? PLM_OK : PLM_ERR_NOMEM;
    if (!rc) rc = gguf_writer_set_str(w, "general.architecture", "llama");
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    if (!rc) rc = gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", texts, NULL, (uint64_t)n);
    if (!rc) rc = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n);
    if (!rc && spm) rc = gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n);
    if (!rc && spm) rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!rc && spm) rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (!rc && !spm) rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    if (!rc && !spm) rc = gguf_writer_set_str_array(w, "tokenizer.ggml.merges", merges, NULL, 2);
    if (!rc && !spm) rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 1));
    static char path[512];
    snprintf(path, sizeof path, "%s/small-%s.gguf", fuzz_temp_dir(), model);
    if (!rc) rc = gguf_writer_write(w, path);
    gguf_writer_free(w);
    if (rc)
        fuzz_fail(plm_last_error());
    return path;
}

const struct plm_vocab *fuzz_vocab_load(const char *shared_vocab, const char *model)
{
    const char *path = fuzz_shared_path(shared_vocab);
    if (!path) {
        fprintf(stderr, "%s not found (set POCKETLM_SHARED): using a small generated vocabulary\n",
                shared_vocab);
        path = write_small_vocab(model);
    }
    /* The file stays open for the life of the program: the vocabulary points into it. */
    static struct gguf_file *file;
    struct plm_vocab *vocab;
    if (gguf_open(path, &file) != PLM_OK || vocab_load(file, &vocab) != PLM_OK)
        fuzz_fail(plm_last_error());
    return vocab;
}

/* ------------------------------------------------------------ one input */

/* Appends the decoded bytes of token to *out (grown as needed), checking that a
 * short buffer gets a prefix of the piece and the full length back. */
static void decode_into(const struct plm_vocab *vocab, int32_t token, bool render_special,
                        char **out, size_t *len, size_t *capacity)
{
    char small[4];
    int needed = vocab_token_to_piece(vocab, token, small, sizeof small, render_special);
    if (needed < 0)
        fuzz_fail("a valid token does not decode");
    if (*len + (size_t)needed > *capacity) {
        *capacity = 2 * (*len + (size_t)needed) + 64;
        *out = realloc(*out, *capacity);
        if (!*out)
            fuzz_fail("out of memory");
    }
    if (needed == 0)
        return;
    if (vocab_token_to_piece(vocab, token, *out + *len, (size_t)needed, render_special) != needed)
        fuzz_fail("token_to_piece returns different lengths");
    if (memcmp(small, *out + *len, (size_t)needed < sizeof small ? (size_t)needed : sizeof small) != 0)
        fuzz_fail("a short buffer does not get a prefix of the piece");
    *len += (size_t)needed;
}

/* What decoding the tokens of text must give back when no special tokens are
 * involved: the text itself, except that SentencePiece puts a space in front and
 * "▁" in the text comes back as a space. */
static bool expected_round_trip(const struct plm_vocab *vocab, const char *text, size_t len,
                                const char *decoded, size_t decoded_len)
{
    if (vocab->model != VOCAB_SPM)
        return decoded_len == len && (len == 0 || memcmp(decoded, text, len) == 0);
    size_t pos = 0;
    if (vocab->add_space_prefix && len > 0) {
        if (decoded_len < 1 || decoded[0] != ' ')
            return false;
        pos = 1;
    }
    for (size_t i = 0; i < len; i++) {
        bool lower_bar = len - i >= 3 && memcmp(text + i, "\xE2\x96\x81", 3) == 0;
        char want = lower_bar ? ' ' : text[i];
        if (pos >= decoded_len || decoded[pos] != want)
            return false;
        pos++;
        if (lower_bar)
            i += 2;
    }
    return pos == decoded_len;
}

static bool has_user_defined_tokens(const struct plm_vocab *vocab)
{
    for (int32_t i = 0; i < vocab->n_tokens; i++)
        if (vocab->tokens[i].type == PLM_TOKEN_USER_DEFINED)
            return true;
    return false;
}

static void encode_decode(const struct plm_vocab *vocab, const char *text, size_t len,
                          bool add_special, bool parse_special, bool render_special)
{
    int32_t *tokens;
    size_t n_tokens;
    if (vocab_encode(vocab, text, len, add_special, parse_special, &tokens, &n_tokens) != PLM_OK)
        fuzz_fail("vocab_encode failed on some bytes");
    char *decoded = NULL;
    size_t decoded_len = 0, capacity = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= vocab_n_tokens(vocab))
            fuzz_fail("vocab_encode returned a token outside the vocabulary");
        decode_into(vocab, tokens[i], render_special, &decoded, &decoded_len, &capacity);
    }
    static int user_defined = -1;
    if (user_defined < 0)
        user_defined = has_user_defined_tokens(vocab);
    if (!add_special && !parse_special && !user_defined &&
        !expected_round_trip(vocab, text, len, decoded, decoded_len))
        fuzz_fail("decoding the tokens of a text does not give the text back");
    free(decoded);
    free(tokens);
}

static void decode_ids(const struct plm_vocab *vocab, const uint8_t *data, size_t size,
                       bool render_special)
{
    char piece[256];
    for (size_t i = 0; i + 4 <= size; i += 4) {
        int32_t id;
        memcpy(&id, data + i, 4);
        /* Small ids are the interesting ones: fold most values into the vocabulary. */
        if (id >= 0)
            id %= vocab_n_tokens(vocab) + 8;
        bool valid = id >= 0 && id < vocab_n_tokens(vocab);
        int len = vocab_token_to_piece(vocab, id, piece, sizeof piece, render_special);
        if (valid != (len >= 0))
            fuzz_fail("token_to_piece accepts an invalid id or refuses a valid one");
        if (vocab_token_to_piece(vocab, id, NULL, 0, render_special) != len)
            fuzz_fail("token_to_piece without a buffer gives another length");
        if (valid) {
            vocab_token_type(vocab, id);
            struct gguf_str text = vocab_token_text(vocab, id);
            fuzz_touch(text.ptr, text.len);
            vocab_is_eog(vocab, id);
        }
    }
}

void fuzz_tokenizer_run(const struct plm_vocab *vocab, const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    uint8_t flags = data[0];
    bool add_special = flags & 1, parse_special = flags & 2, render_special = flags & 4;
    if (flags & 8)
        decode_ids(vocab, data + 1, size - 1, render_special);
    else
        encode_decode(vocab, (const char *)data + 1, size - 1, add_special, parse_special,
                      render_special);
}
