/*
 * Importance matrices and per-tensor sensitivities: what `pocketlm calibrate`
 * measures and `pocketlm quantize` uses.
 *
 * File layout (GGUF v3, as llama.cpp's imatrix files, so either tool reads the
 * other's importance data):
 *   general.type = "imatrix"
 *   imatrix.datasets        string array: the calibration text's file names
 *   imatrix.chunk_count     u32: chunks of text evaluated
 *   imatrix.chunk_size      u32: tokens per chunk
 *   for each weight matrix NAME (the tensor's name in the model, e.g.
 *   "blk.0.attn_q.weight"; a tied output projection is "token_embd.weight"):
 *     NAME.in_sum2  F32 [n_in]  sum over tokens of each input channel's square
 *     NAME.counts   F32 [1]     number of tokens summed
 * pocketlm's sensitivities, present only when measured:
 *   pocketlm.sensitivity.types  string array of the candidate type names
 *   NAME.kld      F32 [n_types] mean KL divergence when only NAME is quantized
 *                               to each candidate type (the rest as calibrated)
 * An untied token embedding multiplies no activations (it is a lookup), so it
 * has no in_sum2/counts; with sensitivities it has token_embd.weight.kld alone.
 */
#ifndef PLM_QUANT_IMATRIX_H
#define PLM_QUANT_IMATRIX_H

#include <stdint.h>

struct imatrix;

/* Reads an importance matrix file; PLM_ERR_FORMAT with the reason when malformed. */
int imatrix_load(const char *path, struct imatrix **imatrix);
void imatrix_free(struct imatrix *imatrix);

/* Importance of each of the n_in input channels of the named matrix (in_sum2 /
 * counts), or NULL when the file has none for it or its length differs. */
const float *imatrix_importance(const struct imatrix *imatrix, const char *tensor_name, int64_t n_in);

/* Candidate types whose sensitivity was measured (enum plm_type), and their
 * count; 0 when the file has no sensitivities. */
int imatrix_sensitivity_types(const struct imatrix *imatrix, const int **types);
/* The named matrix's mean KL divergence for each candidate type, or NULL. */
const float *imatrix_sensitivity(const struct imatrix *imatrix, const char *tensor_name);

/* What imatrix_write stores for one weight matrix. */
struct imatrix_entry {
    const char *tensor_name;
    int64_t n_in;
    const double *in_sum2; /* [n_in] sums of squared activations, or NULL for a
                              lookup-only matrix (then only kld is written) */
    double count;          /* tokens summed, > 0 */
    const double *kld;     /* [n_sensitivity_types] or NULL when not measured */
};

struct imatrix_contents {
    const char *dataset;   /* the calibration text's file name, or NULL */
    int chunk_count;
    int chunk_size;
    int n_entries;
    const struct imatrix_entry *entries;
    int n_sensitivity_types;      /* 0: no sensitivities */
    const int *sensitivity_types; /* enum plm_type of each candidate */
};

/* Writes an importance matrix file in the layout above (NAME.kld for every
 * entry when n_sensitivity_types > 0). The same contents give the same bytes. */
int imatrix_write(const char *path, const struct imatrix_contents *contents);

#endif
