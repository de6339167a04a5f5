/*
 * The readers of `convert` for Hugging Face directories: config.json,
 * tokenizer.json and tokenizer_config.json.
 *
 * Input: one selector byte, then the text of one file. selector % 3 picks the file
 * the text replaces (config.json, tokenizer.json, tokenizer_config.json); the
 * other two keep the valid contents below, so that the fuzzed file is read in a
 * directory that would otherwise convert. Bit 2 of the selector asks for f16
 * output. The directory holds a tiny llama checkpoint (1 layer, hidden size 4,
 * F32) made at start-up. A conversion that succeeds is loaded back as a model,
 * which also checks that everything convert accepts gives a loadable file.
 */
#include "fuzz_common.h"

#include "convert/convert.h"
#include "pocketlm.h"
#include "tensor/types.h"

#include <stdio.h>
#include <string.h>

static const char valid_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 10, \"hidden_size\": 4,"
    " \"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
    " \"num_key_value_heads\": 1, \"max_position_embeddings\": 64, \"rope_theta\": 10000.0,"
    " \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": true}";

/* Byte-fallback SentencePiece-style BPE, 10 tokens. */
static const char valid_tokenizer[] =
    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    " {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
    " {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
    "  {\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},"
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},"
    " \"pre_tokenizer\": null,"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}]},"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true,"
    "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0x0A>\": 3, \"\xE2\x96\x81\": 4,"
    "   \"a\": 5, \"b\": 6, \"\xE2\x96\x81" "a\": 7, \"ab\": 8, \"\xE2\x96\x81" "ab\": 9},"
    "  \"merges\": [\"\xE2\x96\x81 a\", \"a b\", \"\xE2\x96\x81" "a b\"]}}";

static const char valid_tokenizer_config[] =
    "{\"add_bos_token\": true, \"add_eos_token\": false, \"bos_token\": \"<s>\","
    " \"eos_token\": {\"content\": \"</s>\"}, \"unk_token\": \"<unk>\","
    " \"chat_template\": \"{{ messages[0].content }}\"}";

static const char *const file_names[3] = {"config.json", "tokenizer.json",
                                          "tokenizer_config.json"};
static const char *const valid_texts[3] = {valid_config, valid_tokenizer, valid_tokenizer_config};

/* The checkpoint's tensors as config.json above implies them: [rows, cols], cols 0 for vectors. */
static const struct {
    const char *name;
    int rows, cols;
} checkpoint_tensors[] = {
    {"model.embed_tokens.weight", 10, 4},
    {"model.layers.0.input_layernorm.weight", 4, 0},
    {"model.layers.0.self_attn.q_proj.weight", 4, 4},
    {"model.layers.0.self_attn.k_proj.weight", 2, 4},
    {"model.layers.0.self_attn.v_proj.weight", 2, 4},
    {"model.layers.0.self_attn.o_proj.weight", 4, 4},
    {"model.layers.0.post_attention_layernorm.weight", 4, 0},
    {"model.layers.0.mlp.gate_proj.weight", 8, 4},
    {"model.layers.0.mlp.up_proj.weight", 8, 4},
    {"model.layers.0.mlp.down_proj.weight", 4, 8},
    {"model.norm.weight", 4, 0},
};
#define N_CHECKPOINT_TENSORS (sizeof checkpoint_tensors / sizeof checkpoint_tensors[0])

/* model.safetensors: u64 header length, JSON header, F32 data (small distinct values). */
static void write_checkpoint(const char *dir)
{
    char header[4096];
    size_t header_len = 0, offset = 0;
    header_len += (size_t)snprintf(header, sizeof header, "{");
    for (size_t i = 0; i < N_CHECKPOINT_TENSORS; i++) {
        int rows = checkpoint_tensors[i].rows, cols = checkpoint_tensors[i].cols;
        size_t bytes = (size_t)rows * (size_t)(cols ? cols : 1) * sizeof(float);
        char shape[32];
        if (cols)
            snprintf(shape, sizeof shape, "%d, %d", rows, cols);
        else
            snprintf(shape, sizeof shape, "%d", rows);
        header_len += (size_t)snprintf(header + header_len, sizeof header - header_len,
                                       "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%s], "
                                       "\"data_offsets\": [%zu, %zu]}",
                                       i ? ", " : "", checkpoint_tensors[i].name, shape, offset,
                                       offset + bytes);
        offset += bytes;
    }
    header_len += (size_t)snprintf(header + header_len, sizeof header - header_len, "}");

    static uint8_t file[8 + sizeof header + 4096];
    uint64_t len = header_len;
    if (8 + header_len + offset > sizeof file)
        fuzz_fail("checkpoint buffer too small");
    memcpy(file, &len, 8);
    memcpy(file + 8, header, header_len);
    for (size_t i = 0; i < offset / sizeof(float); i++) {
        float value = 0.01f * (float)(i % 97) - 0.4f;
        memcpy(file + 8 + header_len + i * sizeof value, &value, sizeof value);
    }
    fuzz_write_file(dir, "model.safetensors", file, 8 + header_len + offset);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    write_checkpoint(fuzz_temp_dir());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *dir = fuzz_temp_dir();
    int fuzzed = data[0] % 3;
    for (int i = 0; i < 3; i++)
        if (i == fuzzed)
            fuzz_write_file(dir, file_names[i], data + 1, size - 1);
        else
            fuzz_write_file(dir, file_names[i], valid_texts[i], strlen(valid_texts[i]));

    char out_path[512];
    snprintf(out_path, sizeof out_path, "%s/out.gguf", dir);
    int out_type = data[0] & 4 ? PLM_TYPE_F16 : -1;
    if (convert_hf(dir, out_path, out_type) != PLM_OK)
        return 0;
    plm_model *model;
    if (plm_model_load(out_path, &model) != PLM_OK)
        fuzz_fail("convert wrote a model that does not load");
    plm_model_free(model);
    return 0;
}
