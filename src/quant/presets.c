/*
 * The quantization presets, one line each, and the row-length fallback.
 *
 * The named mixes follow llama.cpp's llama_tensor_get_type (llama-quant.cpp)
 * for dense models, simplified: a preset has a base type for every matrix and
 * its own types for four kinds of tensor whose errors the output feels most:
 *   token_embd   the token embedding (only read one row per token)
 *   output       the output projection (every logit goes through it); a model
 *                without output.weight uses token_embd for it, which then
 *                follows this column
 *   attn_v       the attention value projections (small under grouped-query
 *                attention, so extra bits are cheap)
 *   ffn_down     the feed-forward output projections
 *   attn_output  the attention output projections
 * A rule may give its type only to some layers (llama.cpp's choices):
 *   MORE_BITS    the first and last eighth of the layers and every third layer
 *                between (llama.cpp's use_more_bits)
 *   FIRST_2, FIRST_4       the first 2 or 4 layers
 *   FIRST_8TH, FIRST_16TH  the first eighth or sixteenth of the layers
 * and the base type to the others (or `otherwise` when set).
 *
 * Differences from llama.cpp: the Q2_K preset always gives attn_v Q4_K
 * (llama.cpp does when n_head / n_head_kv >= 4, Q3_K otherwise); the
 * Falcon, 70B and mixture-of-experts special cases are left out; Q4_0/Q5_0
 * with an imatrix keep ffn_down in the base type. Q3_K, Q4_K and Q5_K are
 * single types: every matrix in that type.
 */
#include "quant/presets.h"

#include "pocketlm.h"
#include "quant/quantize.h"
#include "tensor/types.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Short names for the table. */
enum {
    BASE = -1, /* the preset's base type */
    F32 = PLM_TYPE_F32,
    F16 = PLM_TYPE_F16,
    BF16 = PLM_TYPE_BF16,
    Q4_0 = PLM_TYPE_Q4_0,
    Q4_1 = PLM_TYPE_Q4_1,
    Q5_0 = PLM_TYPE_Q5_0,
    Q5_1 = PLM_TYPE_Q5_1,
    Q8_0 = PLM_TYPE_Q8_0,
    Q2_K = PLM_TYPE_Q2_K,
    Q3_K = PLM_TYPE_Q3_K,
    Q4_K = PLM_TYPE_Q4_K,
    Q5_K = PLM_TYPE_Q5_K,
    Q6_K = PLM_TYPE_Q6_K,
};

enum layer_set {
    ALL,
    MORE_BITS,
    FIRST_2,
    FIRST_4,
    FIRST_8TH,
    FIRST_16TH,
};

/* `type` in the layers of `layers`, `otherwise` (BASE: the base type) elsewhere. */
struct layer_rule {
    int type;
    enum layer_set layers;
    int otherwise;
};

#define SAME {BASE, ALL, BASE}

struct quant_preset {
    const char *name;
    int file_type; /* llama.cpp's LLAMA_FTYPE_* value */
    int base;
    int token_embd;
    int output;
    struct layer_rule attn_v;
    struct layer_rule ffn_down;
    int attn_output;
    const char *description;
};

static const struct quant_preset presets[] = {
    /* name    ftype base  embd  output attn_v                      ffn_down                      attn_out */
    {"Q2_K",   10,   Q2_K, BASE, Q6_K, {Q4_K, ALL, BASE},           {Q3_K, ALL, BASE},            Q3_K,
     "Q2_K (2.6 bpw); Q3_K ffn_down and attn_output, Q4_K attn_v, Q6_K output"},
    {"Q3_K_S", 11,   Q3_K, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q3_K (3.4 bpw); Q6_K output"},
    {"Q3_K_M", 12,   Q3_K, BASE, Q6_K, {Q5_K, FIRST_2, Q4_K},       {Q5_K, FIRST_16TH, Q4_K},     Q4_K,
     "Q3_K; Q4_K/Q5_K attn_v and ffn_down, Q4_K attn_output, Q6_K output"},
    {"Q3_K_L", 13,   Q3_K, BASE, Q6_K, {Q5_K, ALL, BASE},           {Q5_K, ALL, BASE},            Q5_K,
     "Q3_K; Q5_K attn_v, ffn_down and attn_output, Q6_K output"},
    {"Q4_K_S", 14,   Q4_K, BASE, Q6_K, {Q5_K, FIRST_4, BASE},       {Q5_K, FIRST_8TH, BASE},      BASE,
     "Q4_K (4.5 bpw); Q5_K attn_v and ffn_down of the first layers, Q6_K output"},
    {"Q4_K_M", 15,   Q4_K, BASE, Q6_K, {Q6_K, MORE_BITS, BASE},     {Q6_K, MORE_BITS, BASE},      BASE,
     "Q4_K; Q6_K attn_v and ffn_down in half the layers, Q6_K output (a good default)"},
    {"Q5_K_S", 16,   Q5_K, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q5_K (5.5 bpw); Q6_K output"},
    {"Q5_K_M", 17,   Q5_K, BASE, Q6_K, {Q6_K, MORE_BITS, BASE},     {Q6_K, MORE_BITS, BASE},      BASE,
     "Q5_K; Q6_K attn_v and ffn_down in half the layers, Q6_K output"},
    {"Q6_K",   18,   Q6_K, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q6_K (6.6 bpw) everywhere"},
    {"Q8_0",   7,    Q8_0, BASE, Q8_0, SAME,                        SAME,                         BASE,
     "Q8_0 (8.5 bpw) everywhere: nearly lossless"},
    {"Q4_0",   2,    Q4_0, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q4_0 (4.5 bpw, blocks of 32); Q6_K output"},
    {"Q4_1",   3,    Q4_1, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q4_1 (5.0 bpw, blocks of 32 with an offset); Q6_K output"},
    {"Q5_0",   8,    Q5_0, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q5_0 (5.5 bpw, blocks of 32); Q6_K output"},
    {"Q5_1",   9,    Q5_1, BASE, Q6_K, SAME,                        SAME,                         BASE,
     "Q5_1 (6.0 bpw, blocks of 32 with an offset); Q6_K output"},
    {"F16",    1,    F16,  BASE, BASE, SAME,                        SAME,                         BASE,
     "F16 (16 bpw) everywhere"},
    {"BF16",   32,   BF16, BASE, BASE, SAME,                        SAME,                         BASE,
     "BF16 (16 bpw: the range of F32, 8 bits of mantissa) everywhere"},
    {"F32",    0,    F32,  BASE, BASE, SAME,                        SAME,                         BASE,
     "F32 (32 bpw) everywhere: no rounding"},
    {"Q3_K",   11,   Q3_K, BASE, BASE, SAME,                        SAME,                         BASE,
     "Q3_K (3.4 bpw) everywhere, output included"},
    {"Q4_K",   14,   Q4_K, BASE, BASE, SAME,                        SAME,                         BASE,
     "Q4_K (4.5 bpw) everywhere, output included"},
    {"Q5_K",   16,   Q5_K, BASE, BASE, SAME,                        SAME,                         BASE,
     "Q5_K (5.5 bpw) everywhere, output included"},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

const char *plm_quantize_preset_name(int i, const char **description)
{
    if (i < 0 || i >= N_PRESETS)
        return NULL;
    if (description)
        *description = presets[i].description;
    return presets[i].name;
}

const struct quant_preset *quant_preset_find(const char *name)
{
    for (int i = 0; name && i < N_PRESETS; i++)
        if (strcasecmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

const char *quant_preset_name(const struct quant_preset *preset) { return preset->name; }

int quant_preset_file_type(const struct quant_preset *preset) { return preset->file_type; }

int quant_file_type_of(int type)
{
    /* The first preset with that base is its plainest mix (Q4_K_S before Q4_K_M). */
    for (int i = 0; i < N_PRESETS; i++)
        if (presets[i].base == type)
            return presets[i].file_type;
    return -1;
}

static bool in_layers(enum layer_set layers, int il, int n_layer)
{
    switch (layers) {
    case ALL: return true;
    case MORE_BITS:
        return il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
    case FIRST_2: return il < 2;
    case FIRST_4: return il < 4;
    case FIRST_8TH: return il < n_layer / 8;
    case FIRST_16TH: return il < n_layer / 16;
    }
    return false;
}

static int rule_type(const struct layer_rule *rule, const struct matrix_place *place)
{
    /* A matrix outside the layers (no "blk.N.") cannot be in a layer set. */
    bool inside = place->layer >= 0 && in_layers(rule->layers, place->layer, place->n_layer);
    return inside ? rule->type : rule->otherwise;
}

/* "blk.N.attn_v.weight" and the like: the part after the layer prefix is `kind`. */
static bool is_kind(const char *name, const char *kind)
{
    const char *dot = strncmp(name, "blk.", 4) == 0 ? strchr(name + 4, '.') : NULL;
    return dot && strcmp(dot + 1, kind) == 0;
}

int quant_preset_matrix_type(const struct quant_preset *p, const struct matrix_place *place)
{
    int type = BASE;
    if (strcmp(place->name, "output.weight") == 0 ||
        (place->tied_output && strcmp(place->name, "token_embd.weight") == 0))
        type = p->output;
    else if (strcmp(place->name, "token_embd.weight") == 0)
        type = p->token_embd;
    else if (is_kind(place->name, "attn_v.weight"))
        type = rule_type(&p->attn_v, place);
    else if (is_kind(place->name, "ffn_down.weight"))
        type = rule_type(&p->ffn_down, place);
    else if (is_kind(place->name, "attn_output.weight"))
        type = p->attn_output;
    return type == BASE ? p->base : type;
}

/* Row-length fallback, as llama.cpp's for the k-quants (where it picks IQ4_NL
 * for Q2_K and Q3_K, which pocketlm does not run, Q4_0 has the same 4.5 bits
 * per weight). */
int plm_quant_storage_type(int type, int64_t n_in)
{
    if (plm_row_bytes(type, n_in) != 0)
        return type;
    int fallback = F16;
    switch (type) {
    case Q2_K:
    case Q3_K: fallback = Q4_0; break;
    case Q4_K: fallback = Q5_0; break;
    case Q5_K: fallback = Q5_1; break;
    case Q6_K: fallback = Q8_0; break;
    default: break;
    }
    return plm_row_bytes(fallback, n_in) != 0 ? fallback : F16;
}
