/* Type table: names and block geometry of every tensor type. */
#include "tensor/types.h"

#include "tensor/quant_blocks.h"

#include <stdint.h>
#include <strings.h>

/* Indexed by type value. Known types without a block size (Q8_1, Q8_K) have
 * a name, so messages can say what a file contains, but no traits: they are
 * activation formats that no weight matrix is stored in. */
static const struct plm_type_traits type_table[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F32] = {"F32", 1, sizeof(float)},
    [PLM_TYPE_F16] = {"F16", 1, sizeof(uint16_t)},
    [PLM_TYPE_BF16] = {"BF16", 1, sizeof(uint16_t)},
    [PLM_TYPE_Q4_0] = {"Q4_0", PLM_QK, sizeof(struct plm_block_q4_0)},
    [PLM_TYPE_Q4_1] = {"Q4_1", PLM_QK, sizeof(struct plm_block_q4_1)},
    [PLM_TYPE_Q5_0] = {"Q5_0", PLM_QK, sizeof(struct plm_block_q5_0)},
    [PLM_TYPE_Q5_1] = {"Q5_1", PLM_QK, sizeof(struct plm_block_q5_1)},
    [PLM_TYPE_Q8_0] = {"Q8_0", PLM_QK, sizeof(struct plm_block_q8_0)},
    [PLM_TYPE_Q8_1] = {"Q8_1", 0, 0},
    [PLM_TYPE_Q2_K] = {"Q2_K", PLM_QK_K, sizeof(struct plm_block_q2_K)},
    [PLM_TYPE_Q3_K] = {"Q3_K", PLM_QK_K, sizeof(struct plm_block_q3_K)},
    [PLM_TYPE_Q4_K] = {"Q4_K", PLM_QK_K, sizeof(struct plm_block_q4_K)},
    [PLM_TYPE_Q5_K] = {"Q5_K", PLM_QK_K, sizeof(struct plm_block_q5_K)},
    [PLM_TYPE_Q6_K] = {"Q6_K", PLM_QK_K, sizeof(struct plm_block_q6_K)},
    [PLM_TYPE_Q8_K] = {"Q8_K", 0, 0},
};

static bool is_named(int type)
{
    return type >= 0 && type < PLM_TYPE_COUNT && type_table[type].name != NULL;
}

const struct plm_type_traits *plm_type_traits(int type)
{
    if (!is_named(type) || type_table[type].block_size == 0)
        return NULL;
    return &type_table[type];
}

const char *plm_type_name(int type)
{
    return is_named(type) ? type_table[type].name : "unknown";
}

int plm_type_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int type = 0; type < PLM_TYPE_COUNT; type++)
        if (is_named(type) && strcasecmp(name, type_table[type].name) == 0)
            return type;
    return -1;
}

size_t plm_row_bytes(int type, int64_t n)
{
    const struct plm_type_traits *traits = plm_type_traits(type);
    if (!traits || n < 0 || n % traits->block_size != 0)
        return 0;
    uint64_t blocks = (uint64_t)(n / traits->block_size);
    /* A hostile shape must not wrap around to a small size. */
    if (blocks > SIZE_MAX / traits->block_bytes)
        return 0;
    return (size_t)blocks * traits->block_bytes;
}
