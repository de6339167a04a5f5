/*
 * Repacking of weight rows into the interleaved layout of pack.h. Plain C:
 * it runs once per matrix at load time, at memory speed.
 */
#include "kernels/pack.h"

#include "tensor/types.h"

#include <string.h>

int plm_packed_offset(int type)
{
    switch (type) {
    case PLM_TYPE_Q4_0:
        return 8;
    case PLM_TYPE_Q8_0:
        return 128;
    default:
        return 0;
    }
}

size_t plm_packed_size(const struct plm_matrix *w)
{
    if (!plm_packed_offset(w->type) || w->n_in <= 0 || w->n_in % PLM_QK || w->n_out <= 0)
        return 0;
    const size_t n_groups = (size_t)((w->n_out + PLM_PACK_ROWS - 1) / PLM_PACK_ROWS);
    return n_groups * PLM_PACK_ROWS * plm_row_bytes(w->type, w->n_in);
}

/* Block b of row r into the group's quant block `quants` and scales. */
static void pack_q4_0(const struct plm_block_q4_0 *block, int r, struct plm_packed_q4_0 *quants,
                      struct plm_packed_scales *scales)
{
    for (int g = 0; g < 4; g++)
        memcpy(quants->qs[g][r], block->qs + 4 * g, 4);
    scales->d[r] = block->d;
}

static void pack_q8_0(const struct plm_block_q8_0 *block, int r, struct plm_packed_q8_0 *quants,
                      struct plm_packed_scales *scales)
{
    /* q + 128 as a byte is q with its top bit flipped: four at a time. */
    for (int g = 0; g < 8; g++) {
        uint32_t four;
        memcpy(&four, block->qs + 4 * g, 4);
        four ^= 0x80808080u;
        memcpy(quants->qs[g][r], &four, 4);
    }
    scales->d[r] = block->d;
}

/* The inverses: block b of row r as stored. */
static void unpack_q4_0(const struct plm_packed_q4_0 *quants, const struct plm_packed_scales *scales,
                        int r, struct plm_block_q4_0 *block)
{
    for (int g = 0; g < 4; g++)
        memcpy(block->qs + 4 * g, quants->qs[g][r], 4);
    block->d = scales->d[r];
}

static void unpack_q8_0(const struct plm_packed_q8_0 *quants, const struct plm_packed_scales *scales,
                        int r, struct plm_block_q8_0 *block)
{
    for (int g = 0; g < 8; g++)
        for (int k = 0; k < 4; k++)
            block->qs[4 * g + k] = (int8_t)(quants->qs[g][r][k] - 128);
    block->d = scales->d[r];
}

/* Where a matrix's packed blocks are (see the top of pack.h). */
struct packed_geometry {
    size_t group_bytes;
    size_t quant_bytes; /* of one packed quant block */
    int64_t n_blocks;   /* per row */
};

static struct packed_geometry geometry(const struct plm_matrix *w)
{
    return (struct packed_geometry){
        .group_bytes = PLM_PACK_ROWS * plm_row_bytes(w->type, w->n_in),
        .quant_bytes = w->type == PLM_TYPE_Q4_0 ? sizeof(struct plm_packed_q4_0) : sizeof(struct plm_packed_q8_0),
        .n_blocks = w->n_in / PLM_QK,
    };
}

int64_t plm_packed_groups(const struct plm_matrix *w)
{
    return (w->n_out + PLM_PACK_ROWS - 1) / PLM_PACK_ROWS;
}

void plm_pack_rows(const struct plm_matrix *w, void *out, int64_t group_begin, int64_t group_end)
{
    const struct packed_geometry geo = geometry(w);
    const size_t row_bytes = plm_row_bytes(w->type, w->n_in);
    for (int64_t g = group_begin; g < group_end; g++) {
        uint8_t *group = (uint8_t *)out + (size_t)g * geo.group_bytes;
        struct plm_packed_scales *scales = (struct plm_packed_scales *)(group + (size_t)geo.n_blocks * geo.quant_bytes);
        const int64_t first = g * PLM_PACK_ROWS;
        if (w->n_out - first < PLM_PACK_ROWS) /* padding rows: zero scales, so they add nothing */
            memset(group, 0, geo.group_bytes);
        for (int r = 0; r < PLM_PACK_ROWS && first + r < w->n_out; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)(first + r) * row_bytes;
            for (int64_t b = 0; b < geo.n_blocks; b++) {
                void *quants = group + (size_t)b * geo.quant_bytes;
                if (w->type == PLM_TYPE_Q4_0)
                    pack_q4_0((const struct plm_block_q4_0 *)row + b, r, quants, &scales[b]);
                else
                    pack_q8_0((const struct plm_block_q8_0 *)row + b, r, quants, &scales[b]);
            }
        }
    }
}

void plm_packed_get_row(const struct plm_matrix *w, int64_t row, float *out)
{
    const struct packed_geometry geo = geometry(w);
    const uint8_t *group = (const uint8_t *)w->packed + (size_t)(row / PLM_PACK_ROWS) * geo.group_bytes;
    const struct plm_packed_scales *scales =
        (const struct plm_packed_scales *)(group + (size_t)geo.n_blocks * geo.quant_bytes);
    const int r = (int)(row % PLM_PACK_ROWS);
    for (int64_t b = 0; b < geo.n_blocks; b++) {
        const void *quants = group + (size_t)b * geo.quant_bytes;
        if (w->type == PLM_TYPE_Q4_0) {
            struct plm_block_q4_0 block;
            unpack_q4_0(quants, &scales[b], r, &block);
            plm_dequantize_row(w->type, &block, out + b * PLM_QK, PLM_QK);
        } else {
            struct plm_block_q8_0 block;
            unpack_q8_0(quants, &scales[b], r, &block);
            plm_dequantize_row(w->type, &block, out + b * PLM_QK, PLM_QK);
        }
    }
}
