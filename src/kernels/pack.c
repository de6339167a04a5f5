/*
 * Repacking of weight rows into the interleaved layout of pack.h. Plain C:
 * it runs once per model (when its first session is made), at memory speed.
 */
#include "kernels/pack.h"

#include "tensor/types.h"

#include <string.h>

int plm_packed_offset(int type)
{
    switch (type) {
    case PLM_TYPE_Q4_0:
        return 8;
    case PLM_TYPE_Q5_0:
        return 16;
    case PLM_TYPE_Q8_0:
        return 128;
    default:
        return 0;
    }
}

/* Elements per block of the types with a packed layout, 0 for the others. */
static int64_t packed_block_size(int type)
{
    switch (type) {
    case PLM_TYPE_Q4_0:
    case PLM_TYPE_Q5_0:
    case PLM_TYPE_Q8_0:
        return PLM_QK;
    case PLM_TYPE_Q4_K:
        return PLM_QK_K;
    default:
        return 0;
    }
}

size_t plm_packed_group_bytes(const struct plm_matrix *w)
{
    if (w->type == PLM_TYPE_Q4_K)
        return (size_t)(w->n_in / PLM_QK_K) * sizeof(struct plm_packed_q4_K);
    return PLM_PACK_ROWS * plm_row_bytes(w->type, w->n_in);
}

size_t plm_packed_size(const struct plm_matrix *w)
{
    const int64_t block = packed_block_size(w->type);
    if (!block || w->n_in <= 0 || w->n_in % block || w->n_out <= 0)
        return 0;
    return (size_t)plm_packed_groups(w) * plm_packed_group_bytes(w);
}

/* Block b of row r into the group's quant block `quants` and scales. */
static void pack_q4_0(const struct plm_block_q4_0 *block, int r, struct plm_packed_q4_0 *quants,
                      struct plm_packed_scales *scales)
{
    for (int g = 0; g < 4; g++)
        memcpy(quants->qs[g][r], block->qs + 4 * g, 4);
    scales->d[r] = block->d;
}

static void pack_q5_0(const struct plm_block_q5_0 *block, int r, struct plm_packed_q5_0 *quants,
                      struct plm_packed_scales *scales)
{
    for (int g = 0; g < 4; g++)
        memcpy(quants->qs[g][r], block->qs + 4 * g, 4);
    for (int j = 0; j < 4; j++) {
        uint8_t byte = 0;
        for (int k = 0; k < 8; k++)
            byte |= (uint8_t)(plm_q5_fifth_bit(block->qh, 4 * k + j) << k);
        quants->qh[r][j] = byte;
    }
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

static void unpack_q5_0(const struct plm_packed_q5_0 *quants, const struct plm_packed_scales *scales,
                        int r, struct plm_block_q5_0 *block)
{
    for (int g = 0; g < 4; g++)
        memcpy(block->qs + 4 * g, quants->qs[g][r], 4);
    memset(block->qh, 0, sizeof block->qh);
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 8; k++) { /* element e = 4 k + j goes to bit e % 8 of qh[e / 8] */
            const int e = 4 * k + j;
            block->qh[e / 8] |= (uint8_t)(((quants->qh[r][j] >> k) & 1) << (e % 8));
        }
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

static void pack_q4_K(const struct plm_block_q4_K *block, int r, struct plm_packed_q4_K *packed)
{
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 8; k++)
            memcpy(packed->qs[c][k][r], block->qs + 32 * c + 4 * k, 4);
    for (int s = 0; s < 8; s++)
        plm_k_scale_min(block->scales, s, &packed->scales[s][r], &packed->mins[s][r]);
    packed->d[r] = block->d;
    packed->dmin[r] = block->dmin;
}

/* The 12 bytes plm_k_scale_min reads the 8 (scale, min) pairs from. */
static void encode_k_scales_mins(const uint8_t scales[8], const uint8_t mins[8], uint8_t packed[12])
{
    for (int s = 0; s < 4; s++) {
        packed[s] = (uint8_t)((scales[s] & 63) | (scales[s + 4] >> 4) << 6);
        packed[s + 4] = (uint8_t)((mins[s] & 63) | (mins[s + 4] >> 4) << 6);
        packed[s + 8] = (uint8_t)((scales[s + 4] & 0x0F) | (mins[s + 4] & 0x0F) << 4);
    }
}

static void unpack_q4_K(const struct plm_packed_q4_K *packed, int r, struct plm_block_q4_K *block)
{
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 8; k++)
            memcpy(block->qs + 32 * c + 4 * k, packed->qs[c][k][r], 4);
    uint8_t scales[8], mins[8];
    for (int s = 0; s < 8; s++) {
        scales[s] = packed->scales[s][r];
        mins[s] = packed->mins[s][r];
    }
    encode_k_scales_mins(scales, mins, block->scales);
    block->d = packed->d[r];
    block->dmin = packed->dmin[r];
}

/* Where a matrix's packed blocks are (see the top of pack.h). */
struct packed_geometry {
    size_t group_bytes;
    size_t block_bytes; /* of one packed (quant) block of the 16 rows */
    size_t row_block_bytes; /* of one block of a row as stored */
    int64_t n_blocks;   /* per row */
};

static struct packed_geometry geometry(const struct plm_matrix *w)
{
    const struct plm_type_traits *traits = plm_type_traits(w->type);
    const size_t block_bytes = w->type == PLM_TYPE_Q4_0 ? sizeof(struct plm_packed_q4_0)
                             : w->type == PLM_TYPE_Q5_0 ? sizeof(struct plm_packed_q5_0)
                             : w->type == PLM_TYPE_Q8_0 ? sizeof(struct plm_packed_q8_0)
                                                        : sizeof(struct plm_packed_q4_K);
    return (struct packed_geometry){
        .group_bytes = plm_packed_group_bytes(w),
        .block_bytes = block_bytes,
        .row_block_bytes = traits->block_bytes,
        .n_blocks = w->n_in / traits->block_size,
    };
}

int64_t plm_packed_groups(const struct plm_matrix *w)
{
    return (w->n_out + PLM_PACK_ROWS - 1) / PLM_PACK_ROWS;
}

/* Block b of row r (stored at `stored`) into its group. */
static void pack_block(int type, const void *stored, int r, uint8_t *group, const struct packed_geometry *geo,
                       int64_t b)
{
    void *packed = group + (size_t)b * geo->block_bytes;
    struct plm_packed_scales *scales = (struct plm_packed_scales *)(group + (size_t)geo->n_blocks * geo->block_bytes);
    if (type == PLM_TYPE_Q4_0)
        pack_q4_0(stored, r, packed, &scales[b]);
    else if (type == PLM_TYPE_Q5_0)
        pack_q5_0(stored, r, packed, &scales[b]);
    else if (type == PLM_TYPE_Q8_0)
        pack_q8_0(stored, r, packed, &scales[b]);
    else
        pack_q4_K(stored, r, packed);
}

/* The inverse: block b of row r as stored, into `stored`. */
static void unpack_block(int type, const uint8_t *group, int r, const struct packed_geometry *geo, int64_t b,
                         void *stored)
{
    const void *packed = group + (size_t)b * geo->block_bytes;
    const struct plm_packed_scales *scales =
        (const struct plm_packed_scales *)(group + (size_t)geo->n_blocks * geo->block_bytes);
    if (type == PLM_TYPE_Q4_0)
        unpack_q4_0(packed, &scales[b], r, stored);
    else if (type == PLM_TYPE_Q5_0)
        unpack_q5_0(packed, &scales[b], r, stored);
    else if (type == PLM_TYPE_Q8_0)
        unpack_q8_0(packed, &scales[b], r, stored);
    else
        unpack_q4_K(packed, r, stored);
}

void plm_pack_rows(const struct plm_matrix *w, void *out, int64_t group_begin, int64_t group_end)
{
    const struct packed_geometry geo = geometry(w);
    const size_t row_bytes = plm_row_bytes(w->type, w->n_in);
    for (int64_t g = group_begin; g < group_end; g++) {
        uint8_t *group = (uint8_t *)out + (size_t)g * geo.group_bytes;
        const int64_t first = g * PLM_PACK_ROWS;
        if (w->n_out - first < PLM_PACK_ROWS) /* padding rows: zero scales, so they add nothing */
            memset(group, 0, geo.group_bytes);
        for (int r = 0; r < PLM_PACK_ROWS && first + r < w->n_out; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)(first + r) * row_bytes;
            for (int64_t b = 0; b < geo.n_blocks; b++)
                pack_block(w->type, row + (size_t)b * geo.row_block_bytes, r, group, &geo, b);
        }
    }
}

void plm_packed_get_row(const struct plm_matrix *w, int64_t row, float *out)
{
    const struct packed_geometry geo = geometry(w);
    const uint8_t *group = (const uint8_t *)w->packed + (size_t)(row / PLM_PACK_ROWS) * geo.group_bytes;
    const int64_t block_size = w->n_in / geo.n_blocks;
    /* Large enough for one block of any packed type. */
    _Alignas(8) uint8_t stored[sizeof(struct plm_block_q4_K)];
    for (int64_t b = 0; b < geo.n_blocks; b++) {
        unpack_block(w->type, group, (int)(row % PLM_PACK_ROWS), &geo, b, stored);
        plm_dequantize_row(w->type, stored, out + b * block_size, block_size);
    }
}
