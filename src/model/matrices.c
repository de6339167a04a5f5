/*
 * Enumeration of a model's weight matrices, for code that visits each one
 * (calibration swaps them for quantized copies one at a time).
 */
#include "model/model.h"

int model_matrices(struct plm_model *m, struct plm_matrix **out, int max)
{
    int n = 0;
    struct plm_matrix *top[] = {&m->token_embd, &m->output};
    for (int i = 0; i < 2; i++, n++)
        if (n < max)
            out[n] = top[i];
    for (int il = 0; il < m->hp.n_layer; il++) {
        struct plm_layer *l = &m->layers[il];
        struct plm_matrix *layer[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (int i = 0; i < 7; i++, n++)
            if (n < max)
                out[n] = layer[i];
    }
    return n;
}
