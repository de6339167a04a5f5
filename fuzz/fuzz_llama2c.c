/*
 * The llama2.c readers. Input: one selector byte, then a file.
 *   selector even: the file is a checkpoint; a checkpoint that opens must have
 *                  every weight pointer inside the file.
 *   selector odd:  the file is a tokenizer.bin for a tiny valid checkpoint made at
 *                  start-up (vocab 8); it is converted to GGUF (reader, byte-token
 *                  detection, metadata) and a conversion that succeeds must load.
 */
#include "fuzz_common.h"

#include "convert/convert.h"
#include "format/llama2c.h"
#include "pocketlm.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The tiny checkpoint: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len. */
static const int32_t tiny_header[7] = {4, 8, 1, 2, 1, 8, 4};
static char tiny_path[512];

/* Floats after the header of a checkpoint with a shared classifier (see llama2c.h). */
static size_t tiny_n_floats(void)
{
    size_t dim = 4, hidden = 8, layers = 1, kv_dim = 2, vocab = 8, seq = 4, head_size = 2;
    return vocab * dim + layers * (dim + dim * dim + 2 * kv_dim * dim + dim * dim + dim +
                                   3 * hidden * dim) +
           dim + 2 * seq * (head_size / 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static float weights[1024];
    size_t n = tiny_n_floats();
    if (n > sizeof weights / sizeof weights[0])
        fuzz_fail("tiny checkpoint buffer too small");
    for (size_t i = 0; i < n; i++)
        weights[i] = 0.01f * (float)(i % 89) - 0.3f;
    static uint8_t file[sizeof tiny_header + sizeof weights];
    memcpy(file, tiny_header, sizeof tiny_header);
    memcpy(file + sizeof tiny_header, weights, n * sizeof(float));
    const char *dir = fuzz_temp_dir();
    fuzz_write_file(dir, "tiny.bin", file, sizeof tiny_header + n * sizeof(float));
    snprintf(tiny_path, sizeof tiny_path, "%s/tiny.bin", dir);
    return 0;
}

static bool inside(const struct mapped_file *map, const float *p)
{
    const uint8_t *bytes = (const uint8_t *)p;
    return bytes >= map->data && bytes + sizeof(float) <= map->data + map->size;
}

static void check_checkpoint(const uint8_t *data, size_t size)
{
    struct llama2c_checkpoint ckpt;
    if (llama2c_checkpoint_open(fuzz_memfd_path(data, size), &ckpt) != PLM_OK)
        return;
    const struct llama2c_weights *w = &ckpt.weights;
    const float *const pointers[] = {w->token_embedding, w->rms_att, w->wq, w->wk, w->wv, w->wo,
                                     w->rms_ffn, w->w1, w->w2, w->w3, w->rms_final, w->wcls};
    for (size_t i = 0; i < sizeof pointers / sizeof pointers[0]; i++)
        if (!inside(&ckpt.map, pointers[i]))
            fuzz_fail("a llama2.c weight pointer is outside the file");
    /* The last classifier row ends inside the file. */
    const float *last = w->wcls + (size_t)(ckpt.config.vocab_size - 1) * (size_t)ckpt.config.dim +
                        (size_t)(ckpt.config.dim - 1);
    if (!inside(&ckpt.map, last))
        fuzz_fail("the classifier runs past the end of the file");
    llama2c_checkpoint_close(&ckpt);
}

static void check_vocab(const uint8_t *data, size_t size)
{
    char out_path[512];
    snprintf(out_path, sizeof out_path, "%s/out.gguf", fuzz_temp_dir());
    if (convert_llama2c(tiny_path, fuzz_memfd_path(data, size), out_path, -1) != PLM_OK)
        return;
    plm_model *model;
    if (plm_model_load(out_path, &model) != PLM_OK)
        fuzz_fail("convert wrote a model that does not load");
    plm_model_free(model);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        check_checkpoint(data + 1, size - 1);
    else
        check_vocab(data + 1, size - 1);
    return 0;
}
