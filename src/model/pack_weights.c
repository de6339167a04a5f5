/*
 * Weight matrices repacked, once per model, for kernels that read an
 * interleaved layout (kernels/pack.h; AVX-512 VNNI and ARM64 NEON with the
 * dot-product extension, for Q4_0, Q5_0, Q8_0 and Q4_K).
 *
 * The packed copies replace the mapped rows, so the mapped pages they were
 * made from are dropped from memory once copied: the model stays at about
 * its file size in memory (plus each matrix's padding to a whole group of
 * rows). token_embd is only read a row at a time (embedding lookups); it is
 * not packed and its rows are read from the mapping, except when the output
 * is tied to it: then the lookups read the packed output, so the embedding
 * is not in memory twice.
 *
 * Packing happens when the first session is made, so commands that only
 * read the model (info, fit, quantize) never pay for it; its padding is known
 * from the load on, so info predicts the memory of a packed model.
 *
 * All packed matrices share one allocation on huge pages where the kernel
 * gives them (transparent huge pages in "madvise" mode): in 4 KiB pages, a
 * 1B model took 170,000 page faults to pack, most of its load time, and
 * decoding then missed the TLB at every page.
 *
 * POCKETLM_REPACK=0 turns packing off (for comparisons, and for a device
 * short of memory: mapped pages can be evicted under pressure, a packed copy
 * cannot).
 */
#include "model/model.h"

#include "core/mapped_file.h"
#include "kernels/pack.h"
#include "tensor/types.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_PAGE_BYTES (2u << 20)

static bool repack_enabled(void)
{
    const char *setting = getenv("POCKETLM_REPACK");
    return !setting || strcmp(setting, "0") != 0;
}

/* Bytes of w's packed copy in the shared allocation: its packed size rounded
 * to 64 bytes, so every copy starts aligned for the kernels' vector loads. */
static size_t arena_share(const struct plm_matrix *w)
{
    return (plm_matmul_packed_size(w) + 63) / 64 * 64;
}

/* Rows are packed by several threads, in pieces of about this many bytes:
 * most of the time goes to the kernel zeroing the new pages (on this
 * project's VM, 1.3 GB of Q8_0 took 1.5 s on one thread), which each thread
 * does for the pages it touches first. */
#define PIECE_BYTES (4u << 20)
#define MAX_PACK_THREADS 16

/* A matrix being packed. The mapped rows of each piece are dropped from
 * memory once packed, and the whole matrix's (the pages pieces share) by the
 * thread that packs its last piece: the copy and its source are in memory
 * together for a few pieces at a time, not for a whole matrix (a large
 * vocabulary's output is over 100 MB). */
struct packed_matrix {
    const struct plm_matrix *w;
    atomic_int pieces_left;
};

/* Groups group_begin .. group_end - 1 of a matrix. */
struct piece {
    struct packed_matrix *matrix;
    int64_t group_begin, group_end;
};

struct packing {
    struct plm_model *model;
    size_t bytes;          /* the shares of all matrices */
    struct packed_matrix *matrices; /* NULL while counting */
    int n_matrices;
    struct piece *pieces;
    int n_pieces;
    atomic_int next_piece; /* the first one no thread has taken */
};

/* Sets w->packed to its place in the arena (after the matrices before it)
 * and cuts it into pieces; with no arrays to fill, only counts them. */
static void plan_matrix(struct packing *p, struct plm_matrix *w)
{
    const size_t share = arena_share(w);
    if (!share)
        return;
    const int64_t n_groups = plm_packed_groups(w);
    const size_t group_bytes = plm_packed_group_bytes(w);
    const int64_t per_piece = group_bytes >= PIECE_BYTES ? 1 : (int64_t)(PIECE_BYTES / group_bytes);
    const int first_piece = p->n_pieces;
    struct packed_matrix *matrix = p->matrices ? &p->matrices[p->n_matrices] : NULL;
    for (int64_t first = 0; first < n_groups; first += per_piece, p->n_pieces++)
        if (matrix)
            p->pieces[p->n_pieces] = (struct piece){
                .matrix = matrix, .group_begin = first,
                .group_end = first + per_piece < n_groups ? first + per_piece : n_groups};
    if (matrix) {
        w->packed = (uint8_t *)p->model->packed_arena + p->bytes;
        matrix->w = w;
        atomic_init(&matrix->pieces_left, p->n_pieces - first_piece);
    }
    p->n_matrices++;
    p->bytes += share;
}

static void *pack_pieces(void *arg)
{
    struct packing *p = arg;
    const struct mapped_file *map = &p->model->gguf->map;
    for (int i; (i = atomic_fetch_add(&p->next_piece, 1)) < p->n_pieces;) {
        struct packed_matrix *matrix = p->pieces[i].matrix;
        const struct plm_matrix *w = matrix->w;
        const struct piece *piece = &p->pieces[i];
        plm_pack_rows(w, (void *)w->packed, piece->group_begin, piece->group_end);
        const size_t row_bytes = plm_row_bytes(w->type, w->n_in);
        const int64_t first_row = piece->group_begin * PLM_PACK_ROWS;
        const int64_t end_row = piece->group_end * PLM_PACK_ROWS < w->n_out ? piece->group_end * PLM_PACK_ROWS : w->n_out;
        mapped_file_release(map, (const uint8_t *)w->data + (size_t)first_row * row_bytes,
                            (size_t)(end_row - first_row) * row_bytes);
        if (atomic_fetch_sub(&matrix->pieces_left, 1) == 1)
            mapped_file_release(map, w->data, row_bytes * (size_t)w->n_out);
    }
    return NULL;
}

/* Adds what w's packed copy holds beyond its mapped rows to the padding. */
static void count_padding(struct packing *p, struct plm_matrix *w)
{
    const size_t share = arena_share(w);
    if (share)
        p->model->packed_padding += share - plm_row_bytes(w->type, w->n_in) * (size_t)w->n_out;
}

/* Calls fn on the matrices of the products: output and each layer's seven. */
static void for_each_product_matrix(struct packing *p, void (*fn)(struct packing *, struct plm_matrix *))
{
    struct plm_model *m = p->model;
    fn(p, &m->output);
    for (int il = 0; il < m->hp.n_layer; il++) {
        struct plm_layer *l = &m->layers[il];
        struct plm_matrix *layer[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (int i = 0; i < 7; i++)
            fn(p, layer[i]);
    }
}

/* Runs pack_pieces on this thread and up to one more per other core. */
static void run_packing(struct packing *p)
{
    long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = n_cpus < 1 ? 1 : n_cpus > MAX_PACK_THREADS ? MAX_PACK_THREADS : (int)n_cpus;
    pthread_t threads[MAX_PACK_THREADS];
    int started = 0;
    while (started < n_threads - 1 && pthread_create(&threads[started], NULL, pack_pieces, p) == 0)
        started++;
    pack_pieces(p); /* with no other thread started, this one packs all */
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

void model_plan_packing(struct plm_model *m)
{
    struct packing p = {.model = m};
    m->packing_done = !repack_enabled(); /* decided at load, whatever the environment later */
    if (!m->packing_done)
        for_each_product_matrix(&p, count_padding);
}

/* Packs every matrix that has a packed layout, or none (out of memory: the
 * stored layout is slower, not wrong). */
static void pack_all(struct plm_model *m)
{
    struct packing p = {.model = m};
    for_each_product_matrix(&p, plan_matrix); /* count */
    if (!p.bytes)
        return;
    const size_t rounded = (p.bytes + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    m->packed_arena = aligned_alloc(HUGE_PAGE_BYTES, rounded);
    p.matrices = calloc((size_t)p.n_matrices, sizeof *p.matrices);
    p.pieces = calloc((size_t)p.n_pieces, sizeof *p.pieces);
    if (m->packed_arena && p.matrices && p.pieces) {
        madvise(m->packed_arena, rounded, MADV_HUGEPAGE);
        p.bytes = 0;
        p.n_matrices = p.n_pieces = 0;
        for_each_product_matrix(&p, plan_matrix); /* place */
        atomic_init(&p.next_piece, 0);
        run_packing(&p);
        if (m->token_embd.data == m->output.data)
            m->token_embd.packed = m->output.packed;
    } else {
        free(m->packed_arena);
        m->packed_arena = NULL;
    }
    free(p.matrices);
    free(p.pieces);
}

void model_pack_weights(struct plm_model *m)
{
    pthread_mutex_lock(&m->packing_lock);
    if (!m->packing_done)
        pack_all(m);
    m->packing_done = true;
    pthread_mutex_unlock(&m->packing_lock);
}

void model_free_packed(struct plm_model *m)
{
    free(m->packed_arena);
    m->packed_arena = NULL;
}
