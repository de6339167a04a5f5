/*
 * Quantization presets: which type each weight matrix gets under a named mix
 * ("Q4_K_M") or a single type ("Q4_K"), in the style of llama.cpp's
 * llama_tensor_get_type. The table and its rules are in presets.c and
 * docs/quantize.md.
 */
#ifndef PLM_QUANT_PRESETS_H
#define PLM_QUANT_PRESETS_H

#include <stdbool.h>
#include <stdint.h>

struct quant_preset;

/* The preset called name (case-insensitive), or NULL. */
const struct quant_preset *quant_preset_find(const char *name);

const char *quant_preset_name(const struct quant_preset *preset);

/* llama.cpp's general.file_type (enum llama_ftype) for files of this preset. */
int quant_preset_file_type(const struct quant_preset *preset);

/* Where a matrix sits in the model, as far as the rules care. */
struct matrix_place {
    const char *name; /* GGUF tensor name, "blk.3.attn_v.weight" */
    int layer;        /* from "blk.N.", -1 outside the layers */
    int n_layer;
    bool tied_output; /* the model has no output.weight: token_embd is also the output */
};

/* The type the preset gives a matrix (before any row-length fallback). */
int quant_preset_matrix_type(const struct quant_preset *preset, const struct matrix_place *place);

/* llama.cpp's general.file_type of the single-type preset for `type`
 * (Q4_K -> Q4_K_S's 14), or -1 when no preset has that base type. */
int quant_file_type_of(int type);

#endif
