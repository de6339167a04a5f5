/*
 * The shared machinery of both BPE flavours: a word is a doubly linked list of
 * symbols (byte ranges of the text), and a priority queue holds candidate
 * merges of adjacent symbols. Merging never rescans: popping the best
 * candidate, merging, and pushing the two new neighbour pairs keeps a word of
 * n characters at O(n log n).
 *
 * A merge turns symbols (left, right) into left, so an entry in the queue goes
 * stale once either side has changed; merge_is_current() detects that from the
 * lengths instead of deleting entries from the heap.
 */
#ifndef PLM_TOKENIZER_MERGE_QUEUE_H
#define PLM_TOKENIZER_MERGE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct symbol {
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    uint32_t start;     /* byte offset of the symbol's text */
    uint32_t len;       /* bytes; 0 once merged into its left neighbour */
    int32_t id;         /* token id (byte-level BPE); -1 when it is no token */
};

struct merge_candidate {
    int32_t left, right; /* symbol indices, right == symbols[left].next when pushed */
    uint32_t len;        /* bytes of the merged text */
    float priority;      /* higher merges first; ties go to the leftmost pair */
    int32_t result;      /* token id of the merged symbol (byte-level BPE) */
};

/* A binary max-heap. */
struct merge_queue {
    struct merge_candidate *items;
    size_t count, capacity;
};

/* Returns PLM_OK or PLM_ERR_NOMEM. */
int merge_queue_push(struct merge_queue *queue, struct merge_candidate candidate);
/* Removes the best candidate into *best; false when the queue is empty. */
bool merge_queue_pop(struct merge_queue *queue, struct merge_candidate *best);
void merge_queue_free(struct merge_queue *queue);

/* Whether both symbols of the candidate are still as they were when it was pushed. */
bool merge_is_current(const struct symbol *symbols, const struct merge_candidate *candidate);

/* Merges the candidate's right symbol into its left one and unlinks it. */
void merge_apply(struct symbol *symbols, const struct merge_candidate *candidate);

#endif
