#include "convert/convert.h"

#include "core/error.h"
#include "core/mapped_file.h"
#include "tensor/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* general.file_type values (llama.cpp's llama_ftype) of the types we write. */
#define FTYPE_ALL_F32 0
#define FTYPE_MOSTLY_F16 1
#define FTYPE_MOSTLY_BF16 32

static bool is_upper_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

bool convert_is_byte_token(const char *text, size_t len)
{
    return len == 6 && memcmp(text, "<0x", 3) == 0 && is_upper_hex(text[3]) &&
           is_upper_hex(text[4]) && text[5] == '>';
}

int convert_out_init(struct convert_out *out, int matrix_type)
{
    memset(out, 0, sizeof *out);
    out->matrix_type = matrix_type;
    out->writer = gguf_writer_new();
    if (!out->writer)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    return PLM_OK;
}

void convert_out_free(struct convert_out *out)
{
    gguf_writer_free(out->writer);
    for (size_t i = 0; i < out->n_buffers; i++)
        free(out->buffers[i]);
    free(out->buffers);
    memset(out, 0, sizeof *out);
}

void *convert_alloc(struct convert_out *out, size_t size)
{
    void **grown = realloc(out->buffers, (out->n_buffers + 1) * sizeof *grown);
    if (!grown) {
        plm_fail(PLM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    out->buffers = grown;
    void *buffer = calloc(1, size ? size : 1);
    if (!buffer) {
        plm_fail(PLM_ERR_NOMEM, "out of memory for a %zu byte tensor", size);
        return NULL;
    }
    out->buffers[out->n_buffers++] = buffer;
    return buffer;
}

int convert_set_file_type(struct convert_out *out)
{
    uint32_t ftype = out->matrix_type == PLM_TYPE_F16    ? FTYPE_MOSTLY_F16
                     : out->matrix_type == PLM_TYPE_BF16 ? FTYPE_MOSTLY_BF16
                                                         : FTYPE_ALL_F32;
    return gguf_writer_set_u32(out->writer, "general.file_type", ftype);
}

/* Hugging Face rotates the pairs (i, i + d/2) of each head ("rotate half");
 * GGUF's llama rotates (2i, 2i + 1). Row 2i + j of a head in the output is
 * therefore row j * d/2 + i of the same head in the source. (This is the
 * permutation llama.cpp's convert_hf_to_gguf.py applies to q and k.) */
static int64_t rotate_half_source_row(int64_t row, int64_t n_rows, int n_heads)
{
    int64_t head_dim = n_rows / n_heads;
    int64_t head = row / head_dim, within = row % head_dim;
    int64_t pair = within / 2, second = within % 2;
    return head * head_dim + second * (head_dim / 2) + pair;
}

/* Source rows may be unaligned (safetensors data follows a header of any length),
 * so elements are read with memcpy. */
static void source_row_to_f32(int src_type, const uint8_t *src, float *dst, int64_t n)
{
    if (src_type == PLM_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        dst[i] = src_type == PLM_TYPE_F16 ? plm_f16_to_f32(h) : plm_bf16_to_f32(h);
    }
}

static void f32_to_output_row(int dst_type, const float *src, uint8_t *dst, int64_t n)
{
    if (dst_type == PLM_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *half = (uint16_t *)dst;
    for (int64_t i = 0; i < n; i++)
        half[i] = dst_type == PLM_TYPE_F16 ? plm_f32_to_f16(src[i]) : plm_f32_to_bf16(src[i]);
}

int convert_add_tensor(struct convert_out *out, const char *name, int src_type, const void *src,
                       const int64_t *ne, int n_dims, int rope_heads)
{
    for (int d = 0; d < n_dims; d++)
        if (ne[d] < 1)
            return plm_fail(PLM_ERR_ARG, "tensor '%s' has an empty dimension", name);
    int dst_type = n_dims == 1 ? PLM_TYPE_F32 : out->matrix_type;
    if (dst_type == src_type && rope_heads == 0)
        return gguf_writer_add_tensor(out->writer, name, dst_type, ne, n_dims, src);

    /* Reordering works on rows; a 1-D bias reorders its elements. */
    int64_t row_len = n_dims == 1 && rope_heads ? 1 : ne[0];
    int64_t n_rows = 1;
    for (int d = 0; d < n_dims; d++)
        n_rows *= ne[d];
    n_rows /= row_len;
    if (rope_heads > 0 && (n_rows % rope_heads != 0 || (n_rows / rope_heads) % 2 != 0))
        return plm_fail(PLM_ERR_FORMAT, "tensor '%s': %lld rows do not split into %d heads of "
                        "even size", name, (long long)n_rows, rope_heads);

    size_t src_row_bytes = plm_row_bytes(src_type, row_len);
    size_t dst_row_bytes = plm_row_bytes(dst_type, row_len);
    uint8_t *dst = convert_alloc(out, dst_row_bytes * (size_t)n_rows);
    float *row = malloc((size_t)row_len * sizeof *row);
    if (!dst || !row) {
        free(row);
        return plm_fail(PLM_ERR_NOMEM, "out of memory converting '%s'", name);
    }
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t from = rope_heads ? rotate_half_source_row(r, n_rows, rope_heads) : r;
        const uint8_t *src_row = (const uint8_t *)src + (size_t)from * src_row_bytes;
        uint8_t *dst_row = dst + (size_t)r * dst_row_bytes;
        if (src_type == dst_type) {
            memcpy(dst_row, src_row, dst_row_bytes);
        } else {
            source_row_to_f32(src_type, src_row, row, row_len);
            f32_to_output_row(dst_type, row, dst_row, row_len);
        }
    }
    free(row);
    return gguf_writer_add_tensor(out->writer, name, dst_type, ne, n_dims, dst);
}

int convert_read_json(const char *dir, const char *file, bool required, cJSON **json)
{
    char path[4096];
    *json = NULL;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return plm_fail(PLM_ERR_ARG, "path '%s/%s' is too long", dir, file);
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return required ? plm_fail(PLM_ERR_IO, "no %s in '%s'", file, dir) : PLM_OK;
    fclose(probe);
    char *text;
    size_t size;
    int rc = read_whole_file(path, &text, &size);
    if (rc)
        return rc;
    *json = cJSON_ParseWithLength(text, size);
    free(text);
    if (!*json)
        return plm_fail(PLM_ERR_FORMAT, "%s: not valid JSON", path);
    return PLM_OK;
}

/* "f32", "f16", "bf16" -> enum plm_type; NULL -> -1 (the checkpoint's own). */
static int parse_outtype(const char *outtype, int *type)
{
    static const struct {
        const char *name;
        int type;
    } types[] = {{"f32", PLM_TYPE_F32}, {"f16", PLM_TYPE_F16}, {"bf16", PLM_TYPE_BF16}};
    *type = -1;
    if (!outtype)
        return PLM_OK;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(outtype, types[i].name) == 0) {
            *type = types[i].type;
            return PLM_OK;
        }
    return plm_fail(PLM_ERR_ARG, "unknown output type '%s' (expected f32, f16 or bf16)", outtype);
}

int plm_convert(const char *src, const char *out_path, const char *vocab, const char *outtype)
{
    if (!src || !out_path)
        return plm_fail(PLM_ERR_ARG, "convert: a source and an output path are needed");
    int out_type;
    int rc = parse_outtype(outtype, &out_type);
    if (rc)
        return rc;
    struct stat st;
    if (stat(src, &st) != 0)
        return plm_fail(PLM_ERR_IO, "convert: cannot find '%s'", src);
    if (S_ISDIR(st.st_mode)) {
        if (vocab)
            return plm_fail(PLM_ERR_ARG,
                            "convert: a vocab file applies to llama2.c checkpoints; '%s' is a "
                            "Hugging Face directory with its own tokenizer.json", src);
        return convert_hf(src, out_path, out_type);
    }
    return convert_llama2c(src, vocab, out_path, out_type);
}
