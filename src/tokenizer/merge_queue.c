#include "tokenizer/merge_queue.h"

#include "core/error.h"

#include <stdlib.h>

/* Whether a should be popped before b. */
static bool ranks_before(const struct merge_candidate *a, const struct merge_candidate *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->left < b->left;
}

static void swap_items(struct merge_candidate *items, size_t i, size_t j)
{
    struct merge_candidate tmp = items[i];
    items[i] = items[j];
    items[j] = tmp;
}

int merge_queue_push(struct merge_queue *queue, struct merge_candidate candidate)
{
    if (queue->count == queue->capacity) {
        size_t capacity = queue->capacity ? 2 * queue->capacity : 64;
        struct merge_candidate *items = realloc(queue->items, capacity * sizeof *items);
        if (!items)
            return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for the merge queue");
        queue->items = items;
        queue->capacity = capacity;
    }
    size_t i = queue->count++;
    queue->items[i] = candidate;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ranks_before(&queue->items[i], &queue->items[parent]))
            break;
        swap_items(queue->items, i, parent);
        i = parent;
    }
    return PLM_OK;
}

bool merge_queue_pop(struct merge_queue *queue, struct merge_candidate *best)
{
    if (queue->count == 0)
        return false;
    struct merge_candidate *items = queue->items;
    *best = items[0];
    items[0] = items[--queue->count];
    size_t i = 0;
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, top = i;
        if (left < queue->count && ranks_before(&items[left], &items[top]))
            top = left;
        if (right < queue->count && ranks_before(&items[right], &items[top]))
            top = right;
        if (top == i)
            break;
        swap_items(items, i, top);
        i = top;
    }
    return true;
}

void merge_queue_free(struct merge_queue *queue)
{
    free(queue->items);
    queue->items = NULL;
    queue->count = queue->capacity = 0;
}

/* A left symbol can only grow by absorbing its current right neighbour, and a
 * right symbol only by absorbing its own; either way the lengths no longer
 * add up (or one side is empty), so the sum identifies an unchanged pair. */
bool merge_is_current(const struct symbol *symbols, const struct merge_candidate *candidate)
{
    const struct symbol *left = &symbols[candidate->left];
    const struct symbol *right = &symbols[candidate->right];
    return left->len > 0 && right->len > 0 && left->next == candidate->right &&
           left->len + right->len == candidate->len;
}

void merge_apply(struct symbol *symbols, const struct merge_candidate *candidate)
{
    struct symbol *left = &symbols[candidate->left];
    struct symbol *right = &symbols[candidate->right];
    left->len += right->len;
    left->id = candidate->result;
    left->next = right->next;
    if (right->next >= 0)
        symbols[right->next].prev = candidate->left;
    right->len = 0;
}
