/*
 * Multiple-choice knapsack by dynamic programming over Pareto frontiers.
 *
 * After deciding items 0..i, the only partial solutions worth keeping are
 * those no other beats on both bytes and loss: the Pareto frontier, sorted by
 * bytes with strictly falling loss. Extending every frontier state by every
 * option of the next item, dropping states that cannot fit even with the
 * smallest options of the remaining items, and filtering to the frontier
 * again gives the next frontier; the last frontier's lowest loss is the
 * optimum, and back-pointers recover the choices.
 *
 * Why this rather than a Lagrangian relaxation with a greedy fill: the
 * relaxation only reaches the points on each item's convex hull and leaves a
 * gap where the budget falls between them, and a DP over byte buckets rounds
 * every item's bytes. The frontier DP is exact as long as each frontier holds
 * at most MAX_FRONTIER states, which covers the small models this runtime
 * targets (a few hundred matrices whose sizes repeat per layer keep the
 * frontiers short). Beyond that, a frontier is thinned to one state per byte
 * bucket (the one of least loss; MAX_FRONTIER buckets between its smallest
 * and largest bytes), which costs at most one bucket's width of budget per
 * item: a small fraction of the budget, and every kept state still fits.
 */
#include "quant/fit_budget.h"

#include "core/error.h"
#include "pocketlm.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRONTIER 4096

/* A partial solution: its totals and how it was reached. */
struct dp_state {
    uint64_t bytes;
    double loss;
    int32_t parent; /* index in the previous frontier, -1 for the start */
    int32_t choice; /* option taken for this item */
};

/* Bytes first, then loss; then parent and choice so that equal states sort
 * the same way on every platform (qsort is not stable). */
static int compare_states(const void *pa, const void *pb)
{
    const struct dp_state *a = pa, *b = pb;
    if (a->bytes != b->bytes)
        return a->bytes < b->bytes ? -1 : 1;
    if (a->loss != b->loss)
        return a->loss < b->loss ? -1 : 1;
    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    return (a->choice > b->choice) - (a->choice < b->choice);
}

/* Keeps the sorted states whose loss is below every state with fewer bytes. */
static int pareto_filter(struct dp_state *states, int n)
{
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (kept == 0 || states[i].loss < states[kept - 1].loss)
            states[kept++] = states[i];
    return kept;
}

/* Thins a frontier to at most MAX_FRONTIER states: one per byte bucket, the
 * last (least loss) of each. */
static int thin_frontier(struct dp_state *states, int n)
{
    uint64_t lo = states[0].bytes, span = states[n - 1].bytes - lo;
    uint64_t width = span / MAX_FRONTIER + 1;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        bool last_of_bucket = i + 1 == n || (states[i + 1].bytes - lo) / width != (states[i].bytes - lo) / width;
        if (last_of_bucket)
            states[kept++] = states[i];
    }
    return kept;
}

/* The frontier after item `item`, built from the previous one. */
static int next_frontier(const struct dp_state *prev, int n_prev, int item, int n_choices,
                         const uint64_t *bytes, const double *loss, uint64_t room,
                         struct dp_state *next)
{
    int n = 0;
    for (int s = 0; s < n_prev; s++) {
        for (int j = 0; j < n_choices; j++) {
            uint64_t b = bytes[(size_t)item * n_choices + j];
            if (b > room || prev[s].bytes > room - b)
                continue;
            next[n++] = (struct dp_state){prev[s].bytes + b, prev[s].loss + loss[(size_t)item * n_choices + j],
                                          s, j};
        }
    }
    qsort(next, (size_t)n, sizeof *next, compare_states);
    n = pareto_filter(next, n);
    return n > MAX_FRONTIER ? thin_frontier(next, n) : n;
}

/* rest[i] = the bytes of the smallest options of items i..n_items-1. */
static void smallest_rest(int n_items, int n_choices, const uint64_t *bytes, uint64_t *rest)
{
    rest[n_items] = 0;
    for (int i = n_items - 1; i >= 0; i--) {
        uint64_t smallest = UINT64_MAX;
        for (int j = 0; j < n_choices; j++)
            if (bytes[(size_t)i * n_choices + j] < smallest)
                smallest = bytes[(size_t)i * n_choices + j];
        rest[i] = smallest > UINT64_MAX - rest[i + 1] ? UINT64_MAX : smallest + rest[i + 1];
    }
}

int fit_budget(int n_items, int n_choices, const uint64_t *bytes, const double *loss,
               uint64_t budget, int *chosen)
{
    if (n_items < 0 || n_choices < 1 || n_choices > MAX_FRONTIER)
        return plm_fail(PLM_ERR_ARG, "fit_budget: %d items of %d options", n_items, n_choices);
    uint64_t *rest = malloc(((size_t)n_items + 1) * sizeof *rest);
    /* frontiers[i] holds the states after item i - 1; frontiers[0] the start. */
    struct dp_state **frontiers = calloc((size_t)n_items + 1, sizeof *frontiers);
    int *sizes = calloc((size_t)n_items + 1, sizeof *sizes);
    struct dp_state *scratch = malloc((size_t)MAX_FRONTIER * n_choices * sizeof *scratch);
    int rc = PLM_OK;
    if (!rest || !frontiers || !sizes || !scratch) {
        rc = plm_fail(PLM_ERR_NOMEM, "fit_budget: out of memory");
        goto done;
    }
    smallest_rest(n_items, n_choices, bytes, rest);
    if (rest[0] > budget) {
        rc = plm_fail(PLM_ERR_LIMIT,
                      "even the smallest types take %" PRIu64 " bytes, %" PRIu64 " over the budget of %" PRIu64,
                      rest[0], rest[0] - budget, budget);
        goto done;
    }
    frontiers[0] = malloc(sizeof **frontiers);
    if (!frontiers[0]) {
        rc = plm_fail(PLM_ERR_NOMEM, "fit_budget: out of memory");
        goto done;
    }
    frontiers[0][0] = (struct dp_state){0, 0.0, -1, -1};
    sizes[0] = 1;
    for (int i = 0; i < n_items; i++) {
        /* Room for this item and the ones before, leaving the smallest for the rest. */
        uint64_t room = budget - rest[i + 1];
        int n = next_frontier(frontiers[i], sizes[i], i, n_choices, bytes, loss, room, scratch);
        frontiers[i + 1] = malloc((size_t)n * sizeof **frontiers);
        if (!frontiers[i + 1]) {
            rc = plm_fail(PLM_ERR_NOMEM, "fit_budget: out of memory");
            goto done;
        }
        memcpy(frontiers[i + 1], scratch, (size_t)n * sizeof *scratch);
        sizes[i + 1] = n;
    }
    /* The last frontier is sorted by bytes with falling loss: its last state is
     * the least loss. It is never empty: the smallest options fit. */
    for (int i = n_items, s = sizes[n_items] - 1; i > 0; i--) {
        chosen[i - 1] = frontiers[i][s].choice;
        s = frontiers[i][s].parent;
    }
done:
    for (int i = 0; frontiers && i <= n_items; i++)
        free(frontiers[i]);
    free(frontiers);
    free(sizes);
    free(rest);
    free(scratch);
    return rc;
}
