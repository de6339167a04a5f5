/* What decoding one token reads and computes: the denominators of the
 * benchmark's "fraction of the hardware limit" figures. */
#include "model/model.h"

#include "tensor/types.h"

#include <string.h>

static bool is_block_quantized(int type)
{
    return type != PLM_TYPE_F32 && type != PLM_TYPE_F16 && type != PLM_TYPE_BF16;
}

void plm_model_token_cost(const plm_model *m, int position, struct plm_token_cost *cost)
{
    const struct plm_hparams *hp = &m->hp;
    memset(cost, 0, sizeof *cost);
    uint64_t quantized_bytes = 0, matrix_weights = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const struct gguf_tensor *t = &m->gguf->tensors[i];
        uint64_t n = (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        bool embedding = strcmp(t->name, "token_embd.weight") == 0;
        /* The embedding is a lookup of one row, unless it doubles as the output. */
        bool read_whole = !embedding || m->output.data == t->data;
        cost->weight_bytes += read_whole ? t->nbytes : t->nbytes / (uint64_t)t->ne[1];
        if (m->output.data == t->data)
            cost->output_flops = 2 * n;
        if (read_whole && t->n_dims >= 2) {
            matrix_weights += n;
            if (is_block_quantized(t->type))
                quantized_bytes += t->nbytes;
        }
    }
    uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t positions = (uint64_t)position + 1;
    cost->kv_bytes = 2 * (uint64_t)hp->n_layer * positions * kv_dim * sizeof(float);
    /* Matrix products, plus attention: q.k and the weighted sum of v per head. */
    uint64_t attention = 2 * 2 * (uint64_t)hp->n_layer * hp->n_head * hp->head_dim * positions;
    cost->flops = 2 * matrix_weights + attention;
    cost->quantized = 2 * quantized_bytes > cost->weight_bytes;
}
