/*
 * Weights repacked once per model for the AVX-512 VNNI kernels (and ARM64's,
 * which read 4 rows per 16-byte vector): 16 rows interleaved, so that one
 * 64-byte vector holds four consecutive quants of each of 16 rows, one row
 * per 32-bit lane.
 *
 * Why: in the file's layout a row's block is dotted with a token in vector
 * lanes that must then be summed across (and its scale spread over them), so
 * every 32 weights cost a dozen instructions of bookkeeping; decoding is then
 * bound by instructions, not by memory. Interleaved, vpdpbusd multiplies a
 * vector of 16 rows' quants by four of a token's 8-bit activations broadcast
 * to every lane and adds into 16 rows' sums at once: 32 weights of 16 rows
 * take 8 vpdpbusd, no horizontal sum, and one 32-byte load brings the 16
 * rows' scales.
 *
 * vpdpbusd multiplies unsigned bytes by signed ones. The broadcast operand is
 * the signed one, so the activations stay signed and the quants are stored
 * unsigned, with an offset: weight = d * (quant - offset). The kernel
 * subtracts offset * d * (sum of the token's block) once per block. (ARM's
 * SDOT is signed by signed: its kernels take Q4_0's and Q5_0's quants as
 * they are and flip Q8_0's top bits back.)
 *
 * A matrix of n_out rows becomes ceil(n_out / 16) groups of 16 rows, the last
 * padded with rows of zero scale. For Q4_0, Q5_0 and Q8_0, a group of rows
 * with n_blocks blocks of 32 is n_blocks quant blocks (struct plm_packed_q4_0,
 * plm_packed_q5_0 or plm_packed_q8_0), then n_blocks scale blocks (struct
 * plm_packed_scales):
 * the quants stay 64-byte aligned when the row has an even number of blocks,
 * and a group holds exactly the bytes of its 16 rows in the file. For Q4_K,
 * a group is one struct plm_packed_q4_K per super-block of 256: 2.8% more
 * than the file's rows, as its 6-bit scales and mins take a byte each.
 */
#ifndef PLM_KERNELS_PACK_H
#define PLM_KERNELS_PACK_H

#include "kernels/matmul.h"
#include "tensor/quant_blocks.h"

#include <stddef.h>
#include <stdint.h>

#define PLM_PACK_ROWS 16

/* Block b of 16 Q4_0 rows. qs[g][r][k] is byte 4 g + k of row r's qs: its
 * low nibble is element 4 g + k, its high nibble element 4 g + k + 16, both
 * unsigned (offset 8). */
struct plm_packed_q4_0 {
    uint8_t qs[4][PLM_PACK_ROWS][4];
};

/* Block b of 16 Q5_0 rows: element e of row r is d * (q - 16), q in
 * [0, 31] being its low 4 bits, nibble (e % 16 of) qs as in Q4_0, plus 16
 * times its fifth bit. The fifth bits are arranged for the kernels, which
 * build vector k (elements 4 k .. 4 k + 3 of each row, as Q4_0's nibbles)
 * from bit k of qh: bit k of qh[r][j] is the fifth bit of element 4 k + j of
 * row r. */
struct plm_packed_q5_0 {
    uint8_t qs[4][PLM_PACK_ROWS][4];
    uint8_t qh[PLM_PACK_ROWS][4];
};
_Static_assert(sizeof(struct plm_packed_q5_0) % 64 == 0, "packed Q5_0 blocks keep 64-byte alignment");

/* Block b of 16 Q8_0 rows. qs[g][r][k] is quant 4 g + k of row r plus 128
 * (offset 128). */
struct plm_packed_q8_0 {
    uint8_t qs[8][PLM_PACK_ROWS][4];
};

/* The f16 scales of block b of the 16 rows, d[r] for row r. */
struct plm_packed_scales {
    uint16_t d[PLM_PACK_ROWS];
};

/* Super-block b of 16 Q4_K rows: element x = d * scale[s] * q - dmin *
 * min[s] of sub-block s (32 elements), q in [0, 15] as stored. qs[c][k][r][i]
 * is byte 32 c + 4 k + i of row r's qs: its low nibble is element 64 c + 4 k
 * + i (sub-block 2 c), its high nibble element 64 c + 32 + 4 k + i (sub-block
 * 2 c + 1). */
struct plm_packed_q4_K {
    uint8_t qs[4][8][PLM_PACK_ROWS][4];
    uint8_t scales[8][PLM_PACK_ROWS]; /* scale[s] of row r */
    uint8_t mins[8][PLM_PACK_ROWS];   /* min[s] of row r */
    uint16_t d[PLM_PACK_ROWS];        /* f16 */
    uint16_t dmin[PLM_PACK_ROWS];     /* f16 */
};
_Static_assert(sizeof(struct plm_packed_q4_K) % 64 == 0, "packed Q4_K blocks keep 64-byte alignment");

/* The offset of the unsigned quants of packed Q4_0 (8), Q5_0 (16) and Q8_0
 * (128). */
int plm_packed_offset(int type);

/* Bytes of one group of 16 rows of w packed. */
size_t plm_packed_group_bytes(const struct plm_matrix *w);

/* Bytes of w packed: ceil(n_out / 16) groups of 16 rows; 0 when its type has
 * no packed layout or its rows are not whole blocks. */
size_t plm_packed_size(const struct plm_matrix *w);

/* Groups of 16 rows of w packed. */
int64_t plm_packed_groups(const struct plm_matrix *w);

/* Writes groups group_begin .. group_end - 1 of w's rows, packed, into out
 * (which is plm_packed_size(w) bytes; the other groups are not touched).
 * Parts can be packed by different threads at once. */
void plm_pack_rows(const struct plm_matrix *w, void *out, int64_t group_begin, int64_t group_end);

/* Row `row` of w as floats, read from w->packed: the same values as from
 * the rows as stored. */
void plm_packed_get_row(const struct plm_matrix *w, int64_t row, float *out);

#endif
