/*
 * Choosing one option per item (a type per weight matrix) to minimise the
 * summed loss (predicted KL divergence) within a byte budget: the
 * multiple-choice knapsack problem behind `quantize --target-size`.
 */
#ifndef PLM_QUANT_FIT_BUDGET_H
#define PLM_QUANT_FIT_BUDGET_H

#include <stdint.h>

/* Items 0..n_items-1 each have n_choices options; option j of item i costs
 * bytes[i * n_choices + j] and adds loss[i * n_choices + j] (finite, >= 0).
 * Writes the chosen option of each item to chosen[i] such that the bytes sum
 * to at most budget and the summed loss is minimal (see fit_budget.c for how
 * exact). Fails with PLM_ERR_LIMIT, saying by how much, when even the
 * smallest options exceed the budget. Deterministic. */
int fit_budget(int n_items, int n_choices, const uint64_t *bytes, const double *loss,
               uint64_t budget, int *chosen);

#endif
