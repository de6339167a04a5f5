/*
 * Importers (plm_convert): tiny Hugging Face checkpoints written here for llama,
 * qwen2 and qwen3, tiny llama2.c checkpoints, malformed inputs, and the real
 * stories260K and TinyStories-656K models when ../shared has them. Every
 * output is read back with the GGUF reader.
 */
#include "test_util.h"

#include "core/error.h"
#include "format/gguf.h"
#include "tensor/types.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ file helpers */

static void write_bytes(const char *path, const void *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot write %s", path);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    fclose(f);
}

static void write_text_in(const char *dir, const char *name, const char *text)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_bytes(path, text, strlen(text));
}

/* Directories made by the tests, removed (with their files) when all have run. */
static char *made_dirs[64];
static int n_made_dirs;

static const char *make_dir(const char *tag)
{
    const char *dir = temp_path(tag);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_true(n_made_dirs < 64);
    made_dirs[n_made_dirs++] = strdup(dir);
    return dir;
}

static void remove_made_dirs(void)
{
    for (int i = 0; i < n_made_dirs; i++) {
        DIR *d = opendir(made_dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", made_dirs[i], e->d_name);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlink(path);
        }
        if (d)
            closedir(d);
        rmdir(made_dirs[i]);
        free(made_dirs[i]);
    }
    n_made_dirs = 0;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* JSON string contents for text (backslashes and quotes escaped). */
static void json_escape(const char *text, char *out, size_t size)
{
    size_t n = 0;
    for (; *text && n + 3 < size; text++) {
        if (*text == '\\' || *text == '"')
            out[n++] = '\\';
        out[n++] = *text;
    }
    out[n] = '\0';
}

/* ------------------------------------------------------ source checkpoints */

/* A tensor of the checkpoint being written; values already rounded to its dtype. */
struct src_tensor {
    char name[96];
    const char *dtype; /* "F32", "F16", "BF16" */
    int n_dims;
    int64_t shape[2];
    float *values;
    int64_t n;
};

struct src_checkpoint {
    struct src_tensor tensors[96];
    int n;
};

static float round_to_dtype(const char *dtype, float v)
{
    if (strcmp(dtype, "F16") == 0)
        return plm_f16_to_f32(plm_f32_to_f16(v));
    if (strcmp(dtype, "BF16") == 0)
        return plm_bf16_to_f32(plm_f32_to_bf16(v));
    return v;
}

/* rows x cols random tensor (cols == 0: a vector of rows). */
static struct src_tensor *add_src(struct src_checkpoint *ckpt, struct test_rng *rng,
                                  const char *dtype, int64_t rows, int64_t cols, const char *fmt,
                                  ...)
{
    assert_true(ckpt->n < 96);
    struct src_tensor *t = &ckpt->tensors[ckpt->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dtype;
    t->n_dims = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->n = rows * (cols ? cols : 1);
    t->values = malloc((size_t)t->n * sizeof(float));
    assert_non_null(t->values);
    for (int64_t i = 0; i < t->n; i++)
        t->values[i] = round_to_dtype(dtype, rng_normal(rng));
    return t;
}

static const struct src_tensor *src_find(const struct src_checkpoint *ckpt, const char *name)
{
    for (int i = 0; i < ckpt->n; i++)
        if (strcmp(ckpt->tensors[i].name, name) == 0)
            return &ckpt->tensors[i];
    fail_msg("test bug: no source tensor %s", name);
    return NULL;
}

static void src_free(struct src_checkpoint *ckpt)
{
    for (int i = 0; i < ckpt->n; i++)
        free(ckpt->tensors[i].values);
    ckpt->n = 0;
}

/* F16 and BF16 take 2 bytes; F32 (and I32, used to test refusal) take 4. */
static size_t dtype_size(const char *dtype)
{
    return strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0 ? 2 : 4;
}

/* Writes tensors[first, first + count) as a safetensors file. */
static void write_safetensors(const char *path, const struct src_tensor *tensors, int count)
{
    size_t header_cap = 64 * 1024, header_len = 0, data_size = 0;
    char *header = malloc(header_cap);
    assert_non_null(header);
    header_len += (size_t)snprintf(header, header_cap, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int i = 0; i < count; i++) {
        const struct src_tensor *t = &tensors[i];
        size_t nbytes = (size_t)t->n * dtype_size(t->dtype);
        char shape[64];
        if (t->n_dims == 2)
            snprintf(shape, sizeof shape, "%lld, %lld", (long long)t->shape[0],
                     (long long)t->shape[1]);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
        header_len += (size_t)snprintf(header + header_len, header_cap - header_len,
                                       ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%s], "
                                       "\"data_offsets\": [%zu, %zu]}",
                                       t->name, t->dtype, shape, data_size, data_size + nbytes);
        data_size += nbytes;
        assert_true(header_len < header_cap - 256);
    }
    header_len += (size_t)snprintf(header + header_len, header_cap - header_len, "}");

    /* An odd header length leaves the data unaligned, as real files may. */
    size_t size = 8 + header_len + data_size;
    uint8_t *bytes = malloc(size);
    assert_non_null(bytes);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    memcpy(bytes + 8, header, header_len);
    uint8_t *data = bytes + 8 + header_len;
    for (int i = 0; i < count; i++) {
        const struct src_tensor *t = &tensors[i];
        for (int64_t j = 0; j < t->n; j++) {
            if (dtype_size(t->dtype) == 4) {
                memcpy(data, &t->values[j], 4);
            } else {
                uint16_t h = strcmp(t->dtype, "F16") == 0 ? plm_f32_to_f16(t->values[j])
                                                          : plm_f32_to_bf16(t->values[j]);
                memcpy(data, &h, 2);
            }
            data += dtype_size(t->dtype);
        }
    }
    write_bytes(path, bytes, size);
    free(bytes);
    free(header);
}

/* ------------------------------------------------------ tiny HF checkpoints */

struct tiny_spec {
    const char *architecture;
    int n_embd, n_ff, n_layer, n_head, n_head_kv;
    int head_dim; /* written to config.json when not 0 */
    int n_vocab;
    const char *dtype;
    bool tie;          /* tie_word_embeddings in config.json */
    bool store_embed;  /* model.embed_tokens.weight present */
    bool store_head;   /* lm_head.weight present */
    bool qkv_bias;
    bool qk_norm;
    const char *extra_config; /* extra members for config.json, starting with ", " */
};

/* Byte-fallback SentencePiece-style BPE: 10 tokens, 3 merges. */
static const char *spm_tokenizer_json =
    "{\"version\": \"1.0\","
    " \"added_tokens\": ["
    "  {\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    "  {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
    "  {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
    "  {\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},"
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},"
    " \"pre_tokenizer\": null,"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
    "  {\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "  {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}]},"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true,"
    "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0x0A>\": 3, \"\xE2\x96\x81\": 4,"
    "   \"a\": 5, \"b\": 6, \"\xE2\x96\x81" "a\": 7, \"ab\": 8, \"\xE2\x96\x81" "ab\": 9},"
    "  \"merges\": [\"\xE2\x96\x81 a\", \"a b\", \"\xE2\x96\x81" "a b\"]}}";

static const char *spm_tokenizer_config =
    "{\"add_bos_token\": true, \"add_eos_token\": false, \"bos_token\": \"<s>\","
    " \"eos_token\": {\"content\": \"</s>\"}, \"unk_token\": \"<unk>\","
    " \"chat_template\": \"{{ messages[0].content }}\"}";

/* The Split regexes of Qwen2/Qwen3 and Llama 3, as their tokenizer.json files hold them. */
static const char *qwen2_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *llama3_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* A pre_tokenizer that splits with regex, then maps bytes (Qwen2, Llama 3). */
static void split_pre_tokenizer(const char *regex, char *out, size_t size)
{
    char escaped[512];
    json_escape(regex, escaped, sizeof escaped);
    snprintf(out, size,
             "{\"type\": \"Sequence\", \"pretokenizers\": ["
             " {\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"Isolated\"},"
             " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
             escaped);
}

/* Byte-level BPE: 5 tokens, 3 added ones, merges as given ("a b" strings or pairs). */
static void byte_level_tokenizer_json(char *out, size_t size, const char *pre_tokenizer,
                                      const char *post_processor, const char *merges)
{
    snprintf(out, size,
             "{\"added_tokens\": ["
             "  {\"id\": 5, \"content\": \"<|endoftext|>\", \"special\": true},"
             "  {\"id\": 6, \"content\": \"<|im_end|>\", \"special\": true},"
             "  {\"id\": 7, \"content\": \"<think>\", \"special\": false}],"
             " \"normalizer\": null, \"pre_tokenizer\": %s, \"post_processor\": %s,"
             " \"decoder\": {\"type\": \"ByteLevel\"},"
             " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"\xC4\xA0\": 2,"
             "  \"ab\": 3, \"\xC4\xA0" "a\": 4}, \"merges\": %s}}",
             pre_tokenizer, post_processor, merges);
}

static void qwen_tokenizer_json(char *out, size_t size, const char *merges)
{
    char pre[1024];
    split_pre_tokenizer(qwen2_regex, pre, sizeof pre);
    byte_level_tokenizer_json(out, size, pre, "{\"type\": \"ByteLevel\"}", merges);
}

static void write_config(const char *dir, const struct tiny_spec *s)
{
    char head_dim[64] = "", config[4096];
    if (s->head_dim)
        snprintf(head_dim, sizeof head_dim, ", \"head_dim\": %d", s->head_dim);
    snprintf(config, sizeof config,
             "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d,"
             " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"
             " \"vocab_size\": %d, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-05,"
             " \"rope_theta\": 500000.0, \"tie_word_embeddings\": %s,"
             " \"bos_token_id\": 5, \"eos_token_id\": [6, 5]%s%s}",
             s->architecture, s->n_embd, s->n_ff, s->n_layer, s->n_head, s->n_head_kv, s->n_vocab,
             s->tie ? "true" : "false", head_dim, s->extra_config ? s->extra_config : "");
    write_text_in(dir, "config.json", config);
}

/* The tensors a checkpoint of spec s holds, with random values. */
static void make_tensors(const struct tiny_spec *s, struct src_checkpoint *ckpt)
{
    struct test_rng rng = {1234};
    int head_dim = s->head_dim ? s->head_dim : s->n_embd / s->n_head;
    int64_t q_dim = (int64_t)s->n_head * head_dim, kv_dim = (int64_t)s->n_head_kv * head_dim;
    const char *dt = s->dtype;
    ckpt->n = 0;
    if (s->store_embed)
        add_src(ckpt, &rng, dt, s->n_vocab, s->n_embd, "model.embed_tokens.weight");
    for (int l = 0; l < s->n_layer; l++) {
        const char *p = "model.layers";
        add_src(ckpt, &rng, dt, s->n_embd, 0, "%s.%d.input_layernorm.weight", p, l);
        add_src(ckpt, &rng, dt, q_dim, s->n_embd, "%s.%d.self_attn.q_proj.weight", p, l);
        add_src(ckpt, &rng, dt, kv_dim, s->n_embd, "%s.%d.self_attn.k_proj.weight", p, l);
        add_src(ckpt, &rng, dt, kv_dim, s->n_embd, "%s.%d.self_attn.v_proj.weight", p, l);
        add_src(ckpt, &rng, dt, s->n_embd, q_dim, "%s.%d.self_attn.o_proj.weight", p, l);
        if (s->qkv_bias) {
            add_src(ckpt, &rng, dt, q_dim, 0, "%s.%d.self_attn.q_proj.bias", p, l);
            add_src(ckpt, &rng, dt, kv_dim, 0, "%s.%d.self_attn.k_proj.bias", p, l);
            add_src(ckpt, &rng, dt, kv_dim, 0, "%s.%d.self_attn.v_proj.bias", p, l);
        }
        if (s->qk_norm) {
            add_src(ckpt, &rng, dt, head_dim, 0, "%s.%d.self_attn.q_norm.weight", p, l);
            add_src(ckpt, &rng, dt, head_dim, 0, "%s.%d.self_attn.k_norm.weight", p, l);
        }
        add_src(ckpt, &rng, dt, s->n_embd, 0, "%s.%d.post_attention_layernorm.weight", p, l);
        add_src(ckpt, &rng, dt, s->n_ff, s->n_embd, "%s.%d.mlp.gate_proj.weight", p, l);
        add_src(ckpt, &rng, dt, s->n_ff, s->n_embd, "%s.%d.mlp.up_proj.weight", p, l);
        add_src(ckpt, &rng, dt, s->n_embd, s->n_ff, "%s.%d.mlp.down_proj.weight", p, l);
    }
    add_src(ckpt, &rng, dt, s->n_embd, 0, "model.norm.weight");
    if (s->store_head)
        add_src(ckpt, &rng, dt, s->n_vocab, s->n_embd, "lm_head.weight");
}

/* config.json + model.safetensors; the tokenizer files are up to the caller. */
static const char *write_checkpoint(const char *tag, const struct tiny_spec *s,
                                    struct src_checkpoint *ckpt)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", make_dir(tag));
    write_config(dir, s);
    make_tensors(s, ckpt);
    char path[8192];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, ckpt->tensors, ckpt->n);
    return dir;
}

static const struct tiny_spec tiny_llama = {
    .architecture = "LlamaForCausalLM", .n_embd = 16, .n_ff = 24, .n_layer = 2, .n_head = 2,
    .n_head_kv = 1, .n_vocab = 12, .dtype = "F32", .tie = false, .store_embed = true,
    .store_head = true,
};

static const char *write_tiny_llama(const char *tag, const struct tiny_spec *s,
                                    struct src_checkpoint *ckpt)
{
    const char *dir = write_checkpoint(tag, s, ckpt);
    write_text_in(dir, "tokenizer.json", spm_tokenizer_json);
    write_text_in(dir, "tokenizer_config.json", spm_tokenizer_config);
    return dir;
}

/* --------------------------------------------------------- reading back */

static struct gguf_file *convert_and_open(const char *src, const char *vocab, const char *outtype)
{
    const char *out = temp_path("out.gguf");
    int rc = plm_convert(src, out, vocab, outtype);
    if (rc != PLM_OK)
        fail_msg("converting %s: %d %s", src, rc, plm_last_error());
    struct gguf_file *file;
    rc = gguf_open(out, &file);
    if (rc != PLM_OK)
        fail_msg("reading back %s: %s", out, plm_last_error());
    unlink(out); /* the mapping stays valid */
    return file;
}

static void expect_convert_error(const char *src, const char *vocab, const char *outtype,
                                 int status, const char *needle)
{
    const char *out = temp_path("bad.gguf");
    plm_fail(PLM_OK, "%s", ""); /* so a stale message cannot pass for this one */
    int rc = plm_convert(src, out, vocab, outtype);
    if (rc != status)
        fail_msg("converting %s: expected %d, got %d (%s)", src, status, rc, plm_last_error());
    if (!strstr(plm_last_error(), needle))
        fail_msg("converting %s: message '%s' does not mention '%s'", src, plm_last_error(),
                 needle);
    assert_false(file_exists(out));
}

static uint32_t get_u32(const struct gguf_file *f, const char *key)
{
    uint32_t v;
    if (!gguf_get_u32(f, key, &v))
        fail_msg("missing %s", key);
    return v;
}

static float get_f32(const struct gguf_file *f, const char *key)
{
    float v;
    if (!gguf_get_f32(f, key, &v))
        fail_msg("missing %s", key);
    return v;
}

static bool get_bool(const struct gguf_file *f, const char *key)
{
    bool v;
    if (!gguf_get_bool(f, key, &v))
        fail_msg("missing %s", key);
    return v;
}

static void expect_str(const struct gguf_file *f, const char *key, const char *expected)
{
    struct gguf_str s;
    if (!gguf_get_str(f, key, &s))
        fail_msg("missing %s", key);
    if (s.len != strlen(expected) || memcmp(s.ptr, expected, s.len) != 0)
        fail_msg("%s is '%.*s', expected '%s'", key, (int)s.len, s.ptr, expected);
}

static void expect_token(const struct gguf_file *f, int id, const char *text)
{
    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    assert_non_null(tokens);
    assert_true((uint64_t)id < tokens->count);
    struct gguf_str s = tokens->strings[id];
    if (s.len != strlen(text) || memcmp(s.ptr, text, s.len) != 0)
        fail_msg("token %d is '%.*s', expected '%s'", id, (int)s.len, s.ptr, text);
}

static int64_t token_type(const struct gguf_file *f, int id)
{
    int64_t type;
    assert_true(gguf_array_i64(gguf_find(f, "tokenizer.ggml.token_type"), (uint64_t)id, &type));
    return type;
}

static float token_score(const struct gguf_file *f, int id)
{
    float score;
    assert_true(gguf_array_f32(gguf_find(f, "tokenizer.ggml.scores"), (uint64_t)id, &score));
    return score;
}

/* The tensor, checked to have type and shape {ne0, ne1} (ne1 == 0: a vector). */
static const struct gguf_tensor *expect_tensor(const struct gguf_file *f, const char *name,
                                               int type, int64_t ne0, int64_t ne1)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        fail_msg("missing tensor %s", name);
    if (t->type != type)
        fail_msg("tensor %s has type %s, expected %s", name, plm_type_name(t->type),
                 plm_type_name(type));
    assert_int_equal(t->n_dims, ne1 ? 2 : 1);
    assert_int_equal(t->ne[0], ne0);
    if (ne1)
        assert_int_equal(t->ne[1], ne1);
    return t;
}

static float tensor_value(const struct gguf_tensor *t, int64_t i)
{
    const uint8_t *p = t->data;
    if (t->type == PLM_TYPE_F32) {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->type == PLM_TYPE_F16 ? plm_f16_to_f32(h) : plm_bf16_to_f32(h);
}

static float round_to_type(int type, float v)
{
    return type == PLM_TYPE_F16    ? plm_f16_to_f32(plm_f32_to_f16(v))
           : type == PLM_TYPE_BF16 ? plm_bf16_to_f32(plm_f32_to_bf16(v))
                                   : v;
}

/* Row r of the GGUF tensor equals row row_map[r] of the source (row_map NULL:
 * the identity), element for element, after rounding to the output type. */
static void expect_rows(const struct gguf_tensor *t, const struct src_tensor *src,
                        const int *row_map)
{
    int64_t cols = src->n_dims == 2 ? src->shape[1] : 1;
    int64_t rows = src->shape[0];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t from = row_map ? row_map[r] : r;
            float expected = round_to_type(t->type, src->values[from * cols + c]);
            float got = tensor_value(t, r * cols + c);
            if (memcmp(&expected, &got, sizeof got) != 0)
                fail_msg("%s: row %lld col %lld is %g, expected %g (source row %lld of %s)",
                         t->name, (long long)r, (long long)c, got, expected, (long long)from,
                         src->name);
        }
}

/* ------------------------------------------------------ HF llama: metadata */

static void test_llama_metadata_and_vocab(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-llama", &tiny_llama, &ckpt);
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);

    expect_str(f, "general.architecture", "llama");
    expect_str(f, "general.name", strrchr(dir, '/') + 1);
    assert_int_equal(get_u32(f, "general.file_type"), 0);
    assert_int_equal(get_u32(f, "llama.context_length"), 64);
    assert_int_equal(get_u32(f, "llama.embedding_length"), 16);
    assert_int_equal(get_u32(f, "llama.block_count"), 2);
    assert_int_equal(get_u32(f, "llama.feed_forward_length"), 24);
    assert_int_equal(get_u32(f, "llama.attention.head_count"), 2);
    assert_int_equal(get_u32(f, "llama.attention.head_count_kv"), 1);
    assert_int_equal(get_u32(f, "llama.rope.dimension_count"), 8);
    assert_float_equal(get_f32(f, "llama.attention.layer_norm_rms_epsilon"), 1e-5f, 1e-12);
    assert_float_equal(get_f32(f, "llama.rope.freq_base"), 500000.0f, 0);
    /* heads are n_embd / n_head wide: no explicit key/value length */
    assert_null(gguf_find(f, "llama.attention.key_length"));
    assert_null(gguf_find(f, "rope_freqs.weight"));

    /* SentencePiece-style vocabulary, padded to the 12 embedding rows */
    expect_str(f, "tokenizer.ggml.model", "llama");
    assert_int_equal(gguf_find(f, "tokenizer.ggml.tokens")->count, 12);
    expect_token(f, 1, "<s>");
    expect_token(f, 7, "\xE2\x96\x81" "a");
    expect_token(f, 10, "[PAD10]");
    assert_int_equal(token_type(f, 0), 2);  /* unknown */
    assert_int_equal(token_type(f, 1), 3);  /* control */
    assert_int_equal(token_type(f, 3), 6);  /* byte <0x0A> */
    assert_int_equal(token_type(f, 5), 1);  /* normal */
    assert_int_equal(token_type(f, 11), 5); /* unused padding */
    /* merge rank r scores -r; everything else is below every merge */
    assert_float_equal(token_score(f, 7), 0.0f, 0);
    assert_float_equal(token_score(f, 8), -1.0f, 0);
    assert_float_equal(token_score(f, 9), -2.0f, 0);
    for (int id = 0; id < 12; id++)
        if (id < 7 || id > 9)
            assert_true(token_score(f, id) < -2.0f);
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_u32(f, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(get_u32(f, "tokenizer.ggml.unknown_token_id"), 0);
    assert_true(get_bool(f, "tokenizer.ggml.add_bos_token"));
    assert_false(get_bool(f, "tokenizer.ggml.add_eos_token"));
    assert_true(get_bool(f, "tokenizer.ggml.add_space_prefix"));
    expect_str(f, "tokenizer.chat_template", "{{ messages[0].content }}");
    gguf_free(f);
    src_free(&ckpt);
}

/* ---------------------------------------------- HF llama: q/k permutation */

/* Within one head of 8 rows, GGUF row k holds Hugging Face row kInterleave[k]:
 * the rotate-half pairs (0,4) (1,5) (2,6) (3,7) become adjacent. */
static const int interleave8[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/* blk.<l>.<gguf_suffix> is an f32 tensor {ne0, ne1} holding model.layers.<l>.<hf_suffix>. */
static void expect_layer_tensor(const struct gguf_file *f, const struct src_checkpoint *ckpt, int l,
                                const char *gguf_suffix, const char *hf_suffix, int64_t ne0,
                                int64_t ne1, const int *row_map)
{
    char name[96], hf[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, gguf_suffix);
    snprintf(hf, sizeof hf, "model.layers.%d.%s", l, hf_suffix);
    expect_rows(expect_tensor(f, name, PLM_TYPE_F32, ne0, ne1), src_find(ckpt, hf), row_map);
}

static void test_llama_tensors_and_permutation(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-llama-perm", &tiny_llama, &ckpt);
    struct gguf_file *f = convert_and_open(dir, NULL, "f32");

    int q_map[16], k_map[8];
    for (int r = 0; r < 16; r++)
        q_map[r] = (r / 8) * 8 + interleave8[r % 8]; /* 2 query heads of 8 rows */
    for (int r = 0; r < 8; r++)
        k_map[r] = interleave8[r]; /* 1 key head */
    /* One explicit row: GGUF q row 3 of head 1 is HF row 8 + 5. */
    assert_int_equal(q_map[11], 13);

    for (int l = 0; l < 2; l++) {
        expect_layer_tensor(f, &ckpt, l, "attn_norm.weight", "input_layernorm.weight", 16, 0, NULL);
        expect_layer_tensor(f, &ckpt, l, "attn_q.weight", "self_attn.q_proj.weight", 16, 16, q_map);
        expect_layer_tensor(f, &ckpt, l, "attn_k.weight", "self_attn.k_proj.weight", 16, 8, k_map);
        expect_layer_tensor(f, &ckpt, l, "attn_v.weight", "self_attn.v_proj.weight", 16, 8, NULL);
        expect_layer_tensor(f, &ckpt, l, "attn_output.weight", "self_attn.o_proj.weight", 16, 16,
                            NULL);
        expect_layer_tensor(f, &ckpt, l, "ffn_norm.weight", "post_attention_layernorm.weight", 16,
                            0, NULL);
        expect_layer_tensor(f, &ckpt, l, "ffn_gate.weight", "mlp.gate_proj.weight", 16, 24, NULL);
        expect_layer_tensor(f, &ckpt, l, "ffn_up.weight", "mlp.up_proj.weight", 16, 24, NULL);
        expect_layer_tensor(f, &ckpt, l, "ffn_down.weight", "mlp.down_proj.weight", 24, 16, NULL);
    }
    expect_rows(expect_tensor(f, "token_embd.weight", PLM_TYPE_F32, 16, 12),
                src_find(&ckpt, "model.embed_tokens.weight"), NULL);
    expect_rows(expect_tensor(f, "output.weight", PLM_TYPE_F32, 16, 12),
                src_find(&ckpt, "lm_head.weight"), NULL);
    expect_rows(expect_tensor(f, "output_norm.weight", PLM_TYPE_F32, 16, 0),
                src_find(&ckpt, "model.norm.weight"), NULL);
    assert_int_equal(f->n_tensors, 2 + 2 * 9 + 1);
    gguf_free(f);
    src_free(&ckpt);
}

static void test_llama_f16_output(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-llama-f16", &tiny_llama, &ckpt);
    struct gguf_file *f = convert_and_open(dir, NULL, "f16");
    assert_int_equal(get_u32(f, "general.file_type"), 1);
    int q_map[16];
    for (int r = 0; r < 16; r++)
        q_map[r] = (r / 8) * 8 + interleave8[r % 8];
    /* matrices become f16 (permuted ones too), vectors stay f32 as llama.cpp does */
    expect_rows(expect_tensor(f, "blk.1.attn_q.weight", PLM_TYPE_F16, 16, 16),
                src_find(&ckpt, "model.layers.1.self_attn.q_proj.weight"), q_map);
    expect_rows(expect_tensor(f, "blk.0.ffn_down.weight", PLM_TYPE_F16, 24, 16),
                src_find(&ckpt, "model.layers.0.mlp.down_proj.weight"), NULL);
    expect_rows(expect_tensor(f, "blk.0.attn_norm.weight", PLM_TYPE_F32, 16, 0),
                src_find(&ckpt, "model.layers.0.input_layernorm.weight"), NULL);
    gguf_free(f);
    src_free(&ckpt);
}

static void test_bf16_checkpoint_keeps_bf16(void **state)
{
    (void)state;
    struct tiny_spec spec = tiny_llama;
    spec.dtype = "BF16";
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-llama-bf16", &spec, &ckpt);
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);
    assert_int_equal(get_u32(f, "general.file_type"), 32);
    expect_rows(expect_tensor(f, "blk.0.attn_v.weight", PLM_TYPE_BF16, 16, 8),
                src_find(&ckpt, "model.layers.0.self_attn.v_proj.weight"), NULL);
    expect_rows(expect_tensor(f, "output_norm.weight", PLM_TYPE_F32, 16, 0),
                src_find(&ckpt, "model.norm.weight"), NULL);
    gguf_free(f);

    /* asked for f32: everything widens exactly */
    f = convert_and_open(dir, NULL, "F32");
    assert_int_equal(get_u32(f, "general.file_type"), 0);
    expect_rows(expect_tensor(f, "blk.0.attn_v.weight", PLM_TYPE_F32, 16, 8),
                src_find(&ckpt, "model.layers.0.self_attn.v_proj.weight"), NULL);
    gguf_free(f);
    src_free(&ckpt);
}

/* ----------------------------------------------------- tied embeddings */

static void test_tied_embeddings(void **state)
{
    (void)state;
    /* Only lm_head.weight stored, as in TinyStories-656K: it becomes the embedding. */
    struct tiny_spec spec = tiny_llama;
    spec.tie = true;
    spec.store_embed = false;
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-tied-head", &spec, &ckpt);
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);
    expect_rows(expect_tensor(f, "token_embd.weight", PLM_TYPE_F32, 16, 12),
                src_find(&ckpt, "lm_head.weight"), NULL);
    assert_null(gguf_find_tensor(f, "output.weight"));
    gguf_free(f);
    src_free(&ckpt);

    /* Only the embedding stored (Qwen2.5-0.5B style). */
    spec.store_embed = true;
    spec.store_head = false;
    dir = write_tiny_llama("hf-tied-embed", &spec, &ckpt);
    f = convert_and_open(dir, NULL, NULL);
    expect_rows(expect_tensor(f, "token_embd.weight", PLM_TYPE_F32, 16, 12),
                src_find(&ckpt, "model.embed_tokens.weight"), NULL);
    assert_null(gguf_find_tensor(f, "output.weight"));
    gguf_free(f);
    src_free(&ckpt);

    /* Both stored and tied: the duplicate classifier is not written. */
    spec.store_head = true;
    dir = write_tiny_llama("hf-tied-both", &spec, &ckpt);
    f = convert_and_open(dir, NULL, NULL);
    assert_null(gguf_find_tensor(f, "output.weight"));
    gguf_free(f);
    src_free(&ckpt);

    /* Not tied and no lm_head: the checkpoint is incomplete. */
    spec.tie = false;
    spec.store_head = false;
    dir = write_tiny_llama("hf-untied-nohead", &spec, &ckpt);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "lm_head.weight");
    src_free(&ckpt);
}

/* ------------------------------------------------------------------ qwen2 */

static void test_qwen2(void **state)
{
    (void)state;
    struct tiny_spec spec = {
        .architecture = "Qwen2ForCausalLM", .n_embd = 16, .n_ff = 20, .n_layer = 1, .n_head = 4,
        .n_head_kv = 2, .n_vocab = 10, .dtype = "F32", .tie = false, .store_embed = true,
        .store_head = true, .qkv_bias = true,
    };
    struct src_checkpoint ckpt;
    const char *dir = write_checkpoint("hf-qwen2", &spec, &ckpt);
    char json[4096];
    qwen_tokenizer_json(json, sizeof json, "[[\"a\", \"b\"], [\"\xC4\xA0\", \"a\"]]");
    write_text_in(dir, "tokenizer.json", json);
    write_text_in(dir, "tokenizer_config.json",
                  "{\"bos_token\": null, \"eos_token\": \"<|im_end|>\", \"pad_token\": "
                  "\"<|endoftext|>\", \"chat_template\": [{\"name\": \"tool_use\", \"template\": "
                  "\"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}");
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);

    expect_str(f, "general.architecture", "qwen2");
    assert_int_equal(get_u32(f, "qwen2.attention.head_count"), 4);
    assert_int_equal(get_u32(f, "qwen2.attention.head_count_kv"), 2);
    assert_int_equal(get_u32(f, "qwen2.rope.dimension_count"), 4);
    /* NEOX RoPE in GGUF too: q/k rows and biases unchanged */
    expect_rows(expect_tensor(f, "blk.0.attn_q.weight", PLM_TYPE_F32, 16, 16),
                src_find(&ckpt, "model.layers.0.self_attn.q_proj.weight"), NULL);
    expect_rows(expect_tensor(f, "blk.0.attn_k.weight", PLM_TYPE_F32, 16, 8),
                src_find(&ckpt, "model.layers.0.self_attn.k_proj.weight"), NULL);
    expect_rows(expect_tensor(f, "blk.0.attn_q.bias", PLM_TYPE_F32, 16, 0),
                src_find(&ckpt, "model.layers.0.self_attn.q_proj.bias"), NULL);
    expect_rows(expect_tensor(f, "blk.0.attn_k.bias", PLM_TYPE_F32, 8, 0),
                src_find(&ckpt, "model.layers.0.self_attn.k_proj.bias"), NULL);
    expect_rows(expect_tensor(f, "blk.0.attn_v.bias", PLM_TYPE_F32, 8, 0),
                src_find(&ckpt, "model.layers.0.self_attn.v_proj.bias"), NULL);

    expect_str(f, "tokenizer.ggml.model", "gpt2");
    expect_str(f, "tokenizer.ggml.pre", "qwen2");
    const struct gguf_kv *merges = gguf_find(f, "tokenizer.ggml.merges");
    assert_non_null(merges);
    assert_int_equal(merges->count, 2);
    assert_int_equal(merges->strings[0].len, 3);
    assert_memory_equal(merges->strings[0].ptr, "a b", 3);
    assert_memory_equal(merges->strings[1].ptr, "\xC4\xA0 a", 4);
    assert_null(gguf_find(f, "tokenizer.ggml.scores"));
    expect_token(f, 4, "\xC4\xA0" "a");
    expect_token(f, 6, "<|im_end|>");
    expect_token(f, 9, "[PAD9]");
    assert_int_equal(token_type(f, 3), 1);
    assert_int_equal(token_type(f, 5), 3); /* special: control */
    assert_int_equal(token_type(f, 7), 4); /* added, not special: user-defined */
    assert_int_equal(token_type(f, 8), 5);
    /* bos: null in tokenizer_config.json, so config.json's id */
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 5);
    assert_int_equal(get_u32(f, "tokenizer.ggml.eos_token_id"), 6);
    assert_int_equal(get_u32(f, "tokenizer.ggml.padding_token_id"), 5);
    assert_null(gguf_find(f, "tokenizer.ggml.unknown_token_id"));
    assert_false(get_bool(f, "tokenizer.ggml.add_bos_token"));
    expect_str(f, "tokenizer.chat_template", "D");
    gguf_free(f);
    src_free(&ckpt);
}

/* ------------------------------------------------------------------ qwen3 */

static void test_qwen3(void **state)
{
    (void)state;
    /* head_dim 8 with 4 heads on n_embd 12: heads are wider than n_embd / n_head */
    struct tiny_spec spec = {
        .architecture = "Qwen3ForCausalLM", .n_embd = 12, .n_ff = 20, .n_layer = 2, .n_head = 4,
        .n_head_kv = 2, .head_dim = 8, .n_vocab = 8, .dtype = "F16", .tie = true,
        .store_embed = true, .store_head = false, .qk_norm = true,
    };
    struct src_checkpoint ckpt;
    const char *dir = write_checkpoint("hf-qwen3", &spec, &ckpt);
    char json[4096];
    qwen_tokenizer_json(json, sizeof json, "[\"a b\", \"\xC4\xA0 a\"]");
    write_text_in(dir, "tokenizer.json", json);
    write_text_in(dir, "chat_template.jinja", "{{ bos_token }}jinja file\n");
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);

    expect_str(f, "general.architecture", "qwen3");
    assert_int_equal(get_u32(f, "general.file_type"), 1); /* f16 checkpoint stays f16 */
    assert_int_equal(get_u32(f, "qwen3.attention.key_length"), 8);
    assert_int_equal(get_u32(f, "qwen3.attention.value_length"), 8);
    assert_int_equal(get_u32(f, "qwen3.rope.dimension_count"), 8);
    expect_rows(expect_tensor(f, "blk.1.attn_q.weight", PLM_TYPE_F16, 12, 32),
                src_find(&ckpt, "model.layers.1.self_attn.q_proj.weight"), NULL);
    expect_rows(expect_tensor(f, "blk.1.attn_output.weight", PLM_TYPE_F16, 32, 12),
                src_find(&ckpt, "model.layers.1.self_attn.o_proj.weight"), NULL);
    expect_rows(expect_tensor(f, "blk.1.attn_q_norm.weight", PLM_TYPE_F32, 8, 0),
                src_find(&ckpt, "model.layers.1.self_attn.q_norm.weight"), NULL);
    expect_rows(expect_tensor(f, "blk.0.attn_k_norm.weight", PLM_TYPE_F32, 8, 0),
                src_find(&ckpt, "model.layers.0.self_attn.k_norm.weight"), NULL);
    assert_null(gguf_find_tensor(f, "blk.0.attn_q.bias"));
    assert_null(gguf_find_tensor(f, "output.weight"));

    const struct gguf_kv *merges = gguf_find(f, "tokenizer.ggml.merges");
    assert_int_equal(merges->count, 2);
    assert_memory_equal(merges->strings[1].ptr, "\xC4\xA0 a", 4);
    /* no tokenizer_config.json: ids from config.json (first of the eos list) */
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 5);
    assert_int_equal(get_u32(f, "tokenizer.ggml.eos_token_id"), 6);
    expect_str(f, "tokenizer.chat_template", "{{ bos_token }}jinja file\n");
    gguf_free(f);
    src_free(&ckpt);
}

/* ------------------------------------------------- Llama 3 rope scaling */

static void test_llama3_rope_freqs(void **state)
{
    (void)state;
    /* Llama 3.2's scaling on 64-wide heads (head_dim given explicitly). */
    struct tiny_spec spec = tiny_llama;
    spec.head_dim = 64;
    spec.extra_config = ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 32.0,"
                        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                        " \"original_max_position_embeddings\": 8192}";
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-llama3", &spec, &ckpt);
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);
    assert_int_equal(get_u32(f, "llama.attention.key_length"), 64);
    const struct gguf_tensor *t = expect_tensor(f, "rope_freqs.weight", PLM_TYPE_F32, 32, 0);
    int n_one = 0, n_factor = 0, n_between = 0;
    for (int i = 0; i < 32; i++) {
        /* the rule, in double precision: wavelength against the original context */
        double freq = 1.0 / pow(500000.0, 2.0 * i / 64.0);
        double wavelen = 2 * M_PI / freq;
        double expected;
        if (wavelen < 8192.0 / 4.0) {
            expected = 1, n_one++;
        } else if (wavelen > 8192.0 / 1.0) {
            expected = 32, n_factor++;
        } else {
            double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            expected = 1 / ((1 - smooth) / 32 + smooth), n_between++;
        }
        assert_float_equal(tensor_value(t, i), expected, expected * 1e-5);
    }
    /* the table exercises all three regimes */
    assert_true(n_one > 0 && n_factor > 0 && n_between > 0);
    /* q rows are permuted within 64-row heads */
    int q_map[128];
    for (int r = 0; r < 128; r++)
        q_map[r] = (r / 64) * 64 + (r % 64) / 2 + (r % 2) * 32;
    expect_rows(expect_tensor(f, "blk.0.attn_q.weight", PLM_TYPE_F32, 16, 128),
                src_find(&ckpt, "model.layers.0.self_attn.q_proj.weight"), q_map);
    gguf_free(f);
    src_free(&ckpt);
}

/* ------------------------------------------------ pre-tokenizer families */

static void test_pre_tokenizer_detection(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    const char *dir = write_checkpoint("hf-pre", &tiny_llama, &ckpt);
    char pre[1024], json[4096];

    /* Llama 3: Split + ByteLevel, BOS added by a TemplateProcessing inside a Sequence */
    split_pre_tokenizer(llama3_regex, pre, sizeof pre);
    byte_level_tokenizer_json(json, sizeof json, pre,
                              "{\"type\": \"Sequence\", \"processors\": ["
                              " {\"type\": \"ByteLevel\"}, {\"type\": \"TemplateProcessing\","
                              " \"single\": [{\"SpecialToken\": {\"id\": \"<|endoftext|>\"}},"
                              " {\"Sequence\": {\"id\": \"A\"}}]}]}",
                              "[]");
    write_text_in(dir, "tokenizer.json", json);
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);
    expect_str(f, "tokenizer.ggml.model", "gpt2");
    expect_str(f, "tokenizer.ggml.pre", "llama-bpe");
    assert_true(get_bool(f, "tokenizer.ggml.add_bos_token"));
    assert_false(get_bool(f, "tokenizer.ggml.add_eos_token"));
    assert_int_equal(gguf_find(f, "tokenizer.ggml.merges")->count, 0);
    gguf_free(f);

    /* GPT-2: the ByteLevel pre-tokenizer's own regex */
    byte_level_tokenizer_json(json, sizeof json,
                              "{\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
                              " \"use_regex\": true}", "null", "[]");
    write_text_in(dir, "tokenizer.json", json);
    f = convert_and_open(dir, NULL, NULL);
    expect_str(f, "tokenizer.ggml.pre", "gpt-2");
    assert_false(get_bool(f, "tokenizer.ggml.add_bos_token"));
    gguf_free(f);

    /* SmolLM: digits split one by one before the byte-level regex */
    byte_level_tokenizer_json(json, sizeof json,
                              "{\"type\": \"Sequence\", \"pretokenizers\": ["
                              " {\"type\": \"Digits\", \"individual_digits\": true},"
                              " {\"type\": \"ByteLevel\", \"use_regex\": true}]}", "null", "[]");
    write_text_in(dir, "tokenizer.json", json);
    f = convert_and_open(dir, NULL, NULL);
    expect_str(f, "tokenizer.ggml.pre", "smollm");
    gguf_free(f);

    /* ByteLevel without its regex and no Split: the split rules are unknown */
    byte_level_tokenizer_json(json, sizeof json,
                              "{\"type\": \"ByteLevel\", \"use_regex\": false}", "null", "[]");
    write_text_in(dir, "tokenizer.json", json);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "pre-tokenizer");
    src_free(&ckpt);
}

/* --------------------------------------------------- sharded checkpoint */

static void test_sharded_checkpoint(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-sharded", &tiny_llama, &ckpt);
    char path[8192];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    int half = ckpt.n / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    write_safetensors(path, ckpt.tensors, half);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_safetensors(path, ckpt.tensors + half, ckpt.n - half);
    char index[16384];
    size_t n = (size_t)snprintf(index, sizeof index, "{\"weight_map\": {");
    for (int i = 0; i < ckpt.n; i++)
        n += (size_t)snprintf(index + n, sizeof index - n,
                              "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                              ckpt.tensors[i].name, i < half ? 1 : 2);
    snprintf(index + n, sizeof index - n, "}}");
    write_text_in(dir, "model.safetensors.index.json", index);

    struct gguf_file *f = convert_and_open(dir, NULL, NULL);
    expect_rows(expect_tensor(f, "token_embd.weight", PLM_TYPE_F32, 16, 12),
                src_find(&ckpt, "model.embed_tokens.weight"), NULL);
    expect_rows(expect_tensor(f, "output.weight", PLM_TYPE_F32, 16, 12),
                src_find(&ckpt, "lm_head.weight"), NULL);
    assert_int_equal(f->n_tensors, 21);
    gguf_free(f);
    src_free(&ckpt);
}

/* ---------------------------------------------------- HF error handling */

static void test_hf_errors(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    struct tiny_spec spec = tiny_llama;

    spec.architecture = "GPT2LMHeadModel";
    const char *dir = write_tiny_llama("hf-err-arch", &spec, &ckpt);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "Qwen3ForCausalLM");
    src_free(&ckpt);

    /* config.json and the tensors disagree */
    spec = tiny_llama;
    dir = write_tiny_llama("hf-err-shape", &spec, &ckpt);
    spec.n_ff = 25;
    write_config(dir, &spec);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "config.json implies [25, 16]");
    spec.n_ff = 24;
    spec.n_layer = 3;
    write_config(dir, &spec);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "model.layers.2.input_layernorm.weight");
    /* fewer layers in config.json than in the checkpoint: tensors left over */
    spec.n_layer = 1;
    write_config(dir, &spec);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "model.layers.1.");
    spec.n_layer = 2;
    spec.n_head_kv = 3;
    write_config(dir, &spec);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "key/value heads");
    spec.n_head_kv = 1;
    spec.extra_config = ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}";
    write_config(dir, &spec);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "yarn");
    write_text_in(dir, "config.json",
                  "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 12,"
                  " \"hidden_size\": 16}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "intermediate_size");
    write_text_in(dir, "config.json",
                  "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 12,"
                  " \"hidden_size\": -16}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "hidden_size");
    write_text_in(dir, "config.json", "{\"architectures\": ");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "not valid JSON");
    /* Numbers that are positive as doubles but 0 or infinite as the floats
     * the model stores (found by fuzzing: the written model did not load). */
    const char *out_of_float_range[] = {"\"rms_norm_eps\": 1e-50", "\"rope_theta\": 1e50"};
    for (int i = 0; i < 2; i++) {
        char config[512];
        snprintf(config, sizeof config,
                 "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 12, \"hidden_size\": 16,"
                 " \"intermediate_size\": 24, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, %s}",
                 out_of_float_range[i]);
        write_text_in(dir, "config.json", config);
        expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "positive number within float range");
    }
    src_free(&ckpt);

    /* a llama checkpoint with attention biases would be silently wrong: refused */
    spec = tiny_llama;
    spec.qkv_bias = true;
    dir = write_tiny_llama("hf-err-bias", &spec, &ckpt);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "q_proj.bias");
    src_free(&ckpt);

    /* integer tensors cannot be converted */
    spec = tiny_llama;
    dir = write_tiny_llama("hf-err-dtype", &spec, &ckpt);
    char path[8192];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ckpt.tensors[3].dtype = "I32"; /* same size as F32, so the file stays consistent */
    write_safetensors(path, ckpt.tensors, ckpt.n);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "dtype I32");
    src_free(&ckpt);

    /* tokenizer problems */
    dir = write_checkpoint("hf-err-tok", &tiny_llama, &ckpt);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_IO, "tokenizer.json");
    char json[4096];
    char pre[1024];
    split_pre_tokenizer("\\s+|\\w+", pre, sizeof pre);
    byte_level_tokenizer_json(json, sizeof json, pre, "null", "[]");
    write_text_in(dir, "tokenizer.json", json);
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "pre-tokenizer");
    write_text_in(dir, "tokenizer.json",
                  "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true,"
                  " \"vocab\": {\"a\": 12}}}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "outside the model's 12 tokens");
    write_text_in(dir, "tokenizer.json",
                  "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0,"
                  " \"b\": 1}, \"merges\": [\"a b\"]}}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "not in the vocabulary");
    write_text_in(dir, "tokenizer.json",
                  "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0,"
                  " \"b\": 1, \"ab\": 2}, \"merges\": [\"ab\"]}}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "merge 0");
    write_text_in(dir, "tokenizer.json",
                  "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0,"
                  " \"b\": 0}}}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_FORMAT, "share id 0");
    write_text_in(dir, "tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "Unigram");
    write_text_in(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
    expect_convert_error(dir, NULL, NULL, PLM_ERR_UNSUPPORTED, "neither byte-level");
    src_free(&ckpt);
}

static void test_convert_arguments(void **state)
{
    (void)state;
    struct src_checkpoint ckpt;
    const char *dir = write_tiny_llama("hf-args", &tiny_llama, &ckpt);
    expect_convert_error(dir, NULL, "q4_0", PLM_ERR_ARG, "q4_0");
    expect_convert_error(dir, "tokenizer.bin", NULL, PLM_ERR_ARG, "tokenizer.json");
    expect_convert_error("/nonexistent/model.bin", NULL, NULL, PLM_ERR_IO, "/nonexistent");
    assert_int_equal(plm_convert(NULL, "x.gguf", NULL, NULL), PLM_ERR_ARG);
    src_free(&ckpt);
}

/* ------------------------------------------------------------- llama2.c */

/* dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, 6 tokens, seq 4; every float
 * holds its own index so a tensor's first value names its offset. */
enum { L2C_DIM = 8, L2C_HIDDEN = 12, L2C_LAYERS = 2, L2C_VOCAB = 6, L2C_SEQ = 4 };
/* Offsets (in floats) of each tensor, laid out by hand from run.c's order. */
enum {
    OFF_EMBED = 0, OFF_RMS_ATT = 48, OFF_WQ = 64, OFF_WK = 192, OFF_WV = 256, OFF_WO = 320,
    OFF_RMS_FFN = 448, OFF_W1 = 464, OFF_W2 = 656, OFF_W3 = 848, OFF_RMS_FINAL = 1040,
    OFF_FREQ = 1048, OFF_WCLS = 1064, L2C_FLOATS_UNSHARED = 1112,
};

static void write_llama2c(const char *path, int32_t vocab_field, size_t n_floats, long delta_bytes)
{
    int32_t header[7] = {L2C_DIM, L2C_HIDDEN, L2C_LAYERS, 2, 1, vocab_field, L2C_SEQ};
    size_t size = sizeof header + n_floats * 4;
    size = (size_t)((long)size + delta_bytes);
    uint8_t *bytes = calloc(1, size + 8);
    assert_non_null(bytes);
    memcpy(bytes, header, sizeof header < size ? sizeof header : size);
    for (size_t i = 0; sizeof header + 4 * i + 4 <= size; i++) {
        float v = (float)i;
        memcpy(bytes + sizeof header + 4 * i, &v, 4);
    }
    write_bytes(path, bytes, size);
    free(bytes);
}

/* The length field a token is written with: its text's, or a hostile override. */
#define TEXT_LEN INT32_MIN

struct l2c_token {
    float score;
    const char *text;
    int32_t len; /* TEXT_LEN: strlen(text) */
};

static void write_llama2c_vocab(const char *path, int32_t max_len, const struct l2c_token *tokens,
                                int n, size_t trailing)
{
    uint8_t bytes[4096];
    size_t at = 0;
    memcpy(bytes, &max_len, 4), at += 4;
    for (int i = 0; i < n; i++) {
        int32_t len = tokens[i].len != TEXT_LEN ? tokens[i].len : (int32_t)strlen(tokens[i].text);
        memcpy(bytes + at, &tokens[i].score, 4), at += 4;
        memcpy(bytes + at, &len, 4), at += 4;
        size_t copy = strlen(tokens[i].text);
        memcpy(bytes + at, tokens[i].text, copy), at += copy;
    }
    memset(bytes + at, 0, trailing), at += trailing;
    write_bytes(path, bytes, at);
}

static const struct l2c_token l2c_tokens[L2C_VOCAB] = {
    {0, "<unk>", TEXT_LEN},  {0, "\n<s>\n", TEXT_LEN}, {0, "\n</s>\n", TEXT_LEN},
    {0, "<0x0A>", TEXT_LEN}, {-1, " a", TEXT_LEN},    {-2.5f, "b c", TEXT_LEN},
};

static void test_llama2c_tiny(void **state)
{
    (void)state;
    const char *dir = make_dir("l2c");
    char model[8192], vocab[8192];
    snprintf(model, sizeof model, "%s/tiny.bin", dir);
    snprintf(vocab, sizeof vocab, "%s/tokenizer.bin", dir);
    write_llama2c(model, -L2C_VOCAB, L2C_FLOATS_UNSHARED, 0); /* negative: own classifier */
    write_llama2c_vocab(vocab, 6, l2c_tokens, L2C_VOCAB, 0);
    /* vocab NULL: tokenizer.bin beside the checkpoint */
    struct gguf_file *f = convert_and_open(model, NULL, NULL);

    expect_str(f, "general.architecture", "llama");
    expect_str(f, "general.name", "tiny");
    assert_int_equal(get_u32(f, "llama.embedding_length"), 8);
    assert_int_equal(get_u32(f, "llama.feed_forward_length"), 12);
    assert_int_equal(get_u32(f, "llama.block_count"), 2);
    assert_int_equal(get_u32(f, "llama.attention.head_count"), 2);
    assert_int_equal(get_u32(f, "llama.attention.head_count_kv"), 1);
    assert_int_equal(get_u32(f, "llama.context_length"), 4);
    assert_int_equal(get_u32(f, "llama.rope.dimension_count"), 4);
    assert_float_equal(get_f32(f, "llama.rope.freq_base"), 10000.0f, 0);
    assert_float_equal(get_f32(f, "llama.attention.layer_norm_rms_epsilon"), 1e-5f, 0);

    /* Each tensor starts where run.c's layout puts it, rows unpermuted. */
    const struct {
        const char *name;
        int64_t ne0, ne1;
        float first;
    } expected[] = {
        {"token_embd.weight", 8, 6, OFF_EMBED},
        {"blk.0.attn_norm.weight", 8, 0, OFF_RMS_ATT},
        {"blk.1.attn_norm.weight", 8, 0, OFF_RMS_ATT + 8},
        {"blk.0.attn_q.weight", 8, 8, OFF_WQ},
        {"blk.1.attn_q.weight", 8, 8, OFF_WQ + 64},
        {"blk.0.attn_k.weight", 8, 4, OFF_WK},
        {"blk.1.attn_k.weight", 8, 4, OFF_WK + 32},
        {"blk.1.attn_v.weight", 8, 4, OFF_WV + 32},
        {"blk.1.attn_output.weight", 8, 8, OFF_WO + 64},
        {"blk.1.ffn_norm.weight", 8, 0, OFF_RMS_FFN + 8},
        {"blk.1.ffn_gate.weight", 8, 12, OFF_W1 + 96},
        {"blk.1.ffn_down.weight", 12, 8, OFF_W2 + 96},
        {"blk.1.ffn_up.weight", 8, 12, OFF_W3 + 96},
        {"output_norm.weight", 8, 0, OFF_RMS_FINAL},
        {"output.weight", 8, 6, OFF_WCLS},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const struct gguf_tensor *t = expect_tensor(f, expected[i].name, PLM_TYPE_F32,
                                                    expected[i].ne0, expected[i].ne1);
        int64_t n = expected[i].ne0 * (expected[i].ne1 ? expected[i].ne1 : 1);
        for (int64_t j = 0; j < n; j++)
            if (tensor_value(t, j) != expected[i].first + (float)j)
                fail_msg("%s[%lld] = %g, expected %g", expected[i].name, (long long)j,
                         tensor_value(t, j), expected[i].first + (float)j);
    }
    assert_int_equal(f->n_tensors, 2 + 2 * 9 + 1);

    expect_str(f, "tokenizer.ggml.model", "llama");
    expect_token(f, 0, "<unk>");
    expect_token(f, 1, "<s>");
    expect_token(f, 2, "</s>");
    expect_token(f, 4, "\xE2\x96\x81" "a");
    expect_token(f, 5, "b\xE2\x96\x81" "c");
    assert_int_equal(token_type(f, 0), 2);
    assert_int_equal(token_type(f, 1), 3);
    assert_int_equal(token_type(f, 2), 3);
    assert_int_equal(token_type(f, 3), 6);
    assert_int_equal(token_type(f, 4), 1);
    assert_float_equal(token_score(f, 5), -2.5f, 0);
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_u32(f, "tokenizer.ggml.eos_token_id"), 2);
    assert_true(get_bool(f, "tokenizer.ggml.add_bos_token"));
    assert_true(get_bool(f, "tokenizer.ggml.add_space_prefix"));
    gguf_free(f);

    /* f16 output: matrices halve, the norm stays f32 */
    f = convert_and_open(model, vocab, "f16");
    const struct gguf_tensor *t = expect_tensor(f, "blk.0.ffn_up.weight", PLM_TYPE_F16, 8, 12);
    assert_float_equal(tensor_value(t, 5), (float)(OFF_W3 + 5), 0);
    expect_tensor(f, "output_norm.weight", PLM_TYPE_F32, 8, 0);
    gguf_free(f);

    /* a shared classifier: no output.weight, and the file is 48 floats shorter */
    write_llama2c(model, L2C_VOCAB, OFF_WCLS, 0);
    f = convert_and_open(model, NULL, NULL);
    assert_null(gguf_find_tensor(f, "output.weight"));
    gguf_free(f);
}

static void expect_llama2c_error(const char *model, const char *vocab, int status,
                                 const char *needle)
{
    expect_convert_error(model, vocab, NULL, status, needle);
}

static void test_llama2c_malformed_checkpoints(void **state)
{
    (void)state;
    const char *dir = make_dir("l2c-bad");
    char model[8192], vocab[8192];
    snprintf(model, sizeof model, "%s/m.bin", dir);
    snprintf(vocab, sizeof vocab, "%s/tokenizer.bin", dir);
    write_llama2c_vocab(vocab, 6, l2c_tokens, L2C_VOCAB, 0);

    write_llama2c(model, -L2C_VOCAB, L2C_FLOATS_UNSHARED, -1); /* truncated by a byte */
    expect_llama2c_error(model, NULL, PLM_ERR_FORMAT, "implies");
    write_llama2c(model, -L2C_VOCAB, L2C_FLOATS_UNSHARED, 4); /* one float too many */
    expect_llama2c_error(model, NULL, PLM_ERR_FORMAT, "implies");
    write_llama2c(model, L2C_VOCAB, L2C_FLOATS_UNSHARED, 0); /* says shared, has wcls */
    expect_llama2c_error(model, NULL, PLM_ERR_FORMAT, "implies");
    write_llama2c(model, -L2C_VOCAB, 0, -20); /* shorter than the header */
    expect_llama2c_error(model, NULL, PLM_ERR_FORMAT, "header");

    const struct {
        int field;
        int32_t value;
        const char *needle;
    } bad_headers[] = {
        {0, -8, "dim = -8"},
        {1, 0, "hidden_dim = 0"},
        {2, 1 << 30, "n_layers"},
        {3, 3, "not a multiple of n_heads"},
        {4, 3, "key/value heads"},
        {5, INT32_MIN, "vocab_size"},
        {6, 0, "seq_len"},
        {3, 8, "head size 1 is odd"},
    };
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        write_llama2c(model, -L2C_VOCAB, L2C_FLOATS_UNSHARED, 0);
        FILE *f = fopen(model, "r+b");
        assert_non_null(f);
        fseek(f, 4 * bad_headers[i].field, SEEK_SET);
        fwrite(&bad_headers[i].value, 4, 1, f);
        if (bad_headers[i].field == 3) { /* keep n_kv_heads dividing n_heads */
            fwrite(&bad_headers[i].value, 4, 1, f);
        }
        fclose(f);
        expect_llama2c_error(model, NULL, PLM_ERR_FORMAT, bad_headers[i].needle);
    }

    /* newer llama2.c exports start with a magic number */
    int32_t magic[8] = {0x616b3432, 2, 0, 0, 0, 0, 0, 0};
    write_bytes(model, magic, sizeof magic);
    expect_llama2c_error(model, NULL, PLM_ERR_UNSUPPORTED, "version 2");
}

static void test_llama2c_malformed_vocab(void **state)
{
    (void)state;
    const char *dir = make_dir("l2c-badvocab");
    char model[8192], vocab[8192];
    snprintf(model, sizeof model, "%s/m.bin", dir);
    snprintf(vocab, sizeof vocab, "%s/v.bin", dir);
    write_llama2c(model, -L2C_VOCAB, L2C_FLOATS_UNSHARED, 0);

    /* no tokenizer.bin beside the model */
    expect_llama2c_error(model, NULL, PLM_ERR_IO, "tokenizer.bin");

    write_llama2c_vocab(vocab, 6, l2c_tokens, L2C_VOCAB - 1, 0);
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "ends at token 5");
    write_llama2c_vocab(vocab, 6, l2c_tokens, L2C_VOCAB, 3);
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "3 bytes left");
    write_llama2c_vocab(vocab, 0, l2c_tokens, L2C_VOCAB, 0);
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "max_token_length");
    write_llama2c_vocab(vocab, 5, l2c_tokens, L2C_VOCAB, 0); /* "\n</s>\n" is 6 bytes */
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "token 2 has length 6");

    struct l2c_token broken[L2C_VOCAB];
    memcpy(broken, l2c_tokens, sizeof broken);
    broken[4].len = -3;
    write_llama2c_vocab(vocab, 6, broken, L2C_VOCAB, 0);
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "token 4 has length -3");
    broken[4].len = 2;
    broken[5].len = 6; /* only 3 bytes follow */
    write_llama2c_vocab(vocab, 6, broken, L2C_VOCAB, 0);
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "past the end");
    broken[5].len = TEXT_LEN;
    broken[3].score = NAN;
    write_llama2c_vocab(vocab, 6, broken, L2C_VOCAB, 0);
    expect_llama2c_error(model, vocab, PLM_ERR_FORMAT, "non-finite");
}

/* ------------------------------------------------------------ real models */

static void test_real_stories260k(void **state)
{
    (void)state;
    const char *found = shared_path("models/stories260K/stories260K.bin");
    if (!found)
        skip();
    char model[8192], vocab[8192];
    snprintf(model, sizeof model, "%s", found);
    snprintf(vocab, sizeof vocab, "%s", shared_path("models/stories260K/tok512.bin"));
    struct gguf_file *f = convert_and_open(model, vocab, NULL);

    expect_str(f, "general.name", "stories260K");
    assert_int_equal(get_u32(f, "llama.embedding_length"), 64);
    assert_int_equal(get_u32(f, "llama.feed_forward_length"), 172);
    assert_int_equal(get_u32(f, "llama.block_count"), 5);
    assert_int_equal(get_u32(f, "llama.attention.head_count"), 8);
    assert_int_equal(get_u32(f, "llama.attention.head_count_kv"), 4);
    assert_int_equal(get_u32(f, "llama.context_length"), 512);
    expect_tensor(f, "token_embd.weight", PLM_TYPE_F32, 64, 512);
    expect_tensor(f, "blk.4.attn_k.weight", PLM_TYPE_F32, 64, 32);
    expect_tensor(f, "blk.4.ffn_down.weight", PLM_TYPE_F32, 172, 64);
    assert_null(gguf_find_tensor(f, "output.weight")); /* classifier shared */
    assert_int_equal(f->n_tensors, 2 + 5 * 9);

    /* q of layer 0 is copied as is: compare with the checkpoint's bytes */
    FILE *raw = fopen(model, "rb");
    assert_non_null(raw);
    float wq[64 * 64];
    fseek(raw, 28 + 4 * (512 * 64 + 5 * 64), SEEK_SET);
    assert_int_equal(fread(wq, sizeof wq, 1, raw), 1);
    fclose(raw);
    const struct gguf_tensor *q = gguf_find_tensor(f, "blk.0.attn_q.weight");
    assert_memory_equal(q->data, wq, sizeof wq);

    assert_int_equal(gguf_find(f, "tokenizer.ggml.tokens")->count, 512);
    expect_token(f, 1, "<s>");
    expect_token(f, 2, "</s>");
    expect_token(f, 3, "<0x00>");
    expect_token(f, 259, "\xE2\x96\x81t"); /* " t" in tok512.bin */
    expect_token(f, 260, "he");
    assert_int_equal(token_type(f, 0), 2);
    assert_int_equal(token_type(f, 2), 3);
    assert_int_equal(token_type(f, 258), 6); /* <0xFF> */
    assert_int_equal(token_type(f, 259), 1);
    assert_float_equal(token_score(f, 260), -1.0f, 0);
    gguf_free(f);
}

static void test_real_tinystories_656k(void **state)
{
    (void)state;
    const char *found = shared_path("models/tinystories-656k");
    if (!found)
        skip();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", found);
    struct gguf_file *f = convert_and_open(dir, NULL, NULL);

    expect_str(f, "general.architecture", "llama");
    expect_str(f, "general.name", "tinystories-656k");
    assert_int_equal(get_u32(f, "llama.embedding_length"), 128);
    assert_int_equal(get_u32(f, "llama.feed_forward_length"), 384);
    assert_int_equal(get_u32(f, "llama.block_count"), 2);
    assert_int_equal(get_u32(f, "llama.attention.head_count"), 8);
    assert_int_equal(get_u32(f, "llama.attention.head_count_kv"), 4);
    assert_int_equal(get_u32(f, "llama.rope.dimension_count"), 16);
    assert_int_equal(get_u32(f, "llama.context_length"), 512);
    assert_float_equal(get_f32(f, "llama.attention.layer_norm_rms_epsilon"), 1e-6f, 0);
    assert_float_equal(get_f32(f, "llama.rope.freq_base"), 10000.0f, 0);
    expect_tensor(f, "token_embd.weight", PLM_TYPE_F32, 128, 2048);
    expect_tensor(f, "blk.1.attn_k.weight", PLM_TYPE_F32, 128, 64);
    assert_null(gguf_find_tensor(f, "output.weight"));
    assert_int_equal(f->n_tensors, 2 + 2 * 9);

    /* token_embd is the stored lm_head; k rows are permuted within 16-row heads */
    char path[8192];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char *bytes;
    size_t size;
    assert_int_equal(read_whole_file(path, &bytes, &size), PLM_OK);
    uint64_t header_len;
    memcpy(&header_len, bytes, 8);
    const char *data = bytes + 8 + header_len;
    const struct gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    assert_memory_equal(embd->data, data, 2048 * 128 * 4); /* lm_head is at offset 0 */
    const struct gguf_tensor *k = gguf_find_tensor(f, "blk.1.attn_k.weight");
    const char *k_src = data + 2426880; /* model.layers.1.self_attn.k_proj.weight */
    /* GGUF row 1 of head 2 = HF row 8 of head 2 (the partner of row 0) */
    assert_memory_equal((const char *)k->data + (2 * 16 + 1) * 128 * 4,
                        k_src + (2 * 16 + 8) * 128 * 4, 128 * 4);
    assert_memory_equal((const char *)k->data + (2 * 16 + 2) * 128 * 4,
                        k_src + (2 * 16 + 1) * 128 * 4, 128 * 4);
    free(bytes);

    assert_int_equal(gguf_find(f, "tokenizer.ggml.tokens")->count, 2048);
    expect_token(f, 1, "<|start_story|>");
    expect_token(f, 2, "<|end_story|>");
    expect_token(f, 80, "\xE2\x96\x81");
    expect_token(f, 81, "e\xE2\x96\x81");
    assert_int_equal(token_type(f, 0), 2);
    assert_int_equal(token_type(f, 1), 3);
    assert_int_equal(token_type(f, 80), 1);
    assert_float_equal(token_score(f, 81), 0.0f, 0); /* merge 0: "e ▁" */
    assert_float_equal(token_score(f, 82), -1.0f, 0); /* merge 1: "d ▁" */
    assert_true(token_score(f, 80) < -1966.0f);       /* a base character */
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_u32(f, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(get_u32(f, "tokenizer.ggml.unknown_token_id"), 0);
    assert_true(get_bool(f, "tokenizer.ggml.add_bos_token"));
    assert_true(get_bool(f, "tokenizer.ggml.add_space_prefix"));
    gguf_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_metadata_and_vocab),
        cmocka_unit_test(test_llama_tensors_and_permutation),
        cmocka_unit_test(test_llama_f16_output),
        cmocka_unit_test(test_bf16_checkpoint_keeps_bf16),
        cmocka_unit_test(test_tied_embeddings),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_llama3_rope_freqs),
        cmocka_unit_test(test_pre_tokenizer_detection),
        cmocka_unit_test(test_sharded_checkpoint),
        cmocka_unit_test(test_hf_errors),
        cmocka_unit_test(test_convert_arguments),
        cmocka_unit_test(test_llama2c_tiny),
        cmocka_unit_test(test_llama2c_malformed_checkpoints),
        cmocka_unit_test(test_llama2c_malformed_vocab),
        cmocka_unit_test(test_real_stories260k),
        cmocka_unit_test(test_real_tinystories_656k),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    remove_made_dirs();
    return failed;
}
