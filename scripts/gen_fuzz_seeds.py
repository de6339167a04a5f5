#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: fuzz/seeds/<target>/.

Small valid (and a few nearly valid) inputs of every format, made here from
their layouts, plus the first bytes of the real vocabulary files in ../shared
(GGUF headers and metadata; truncated, never whole files). Deterministic:
running it again rewrites the same files.

    scripts/gen_fuzz_seeds.py [--shared DIR]   (default $POCKETLM_SHARED or ../shared)
"""
import argparse
import json
import os
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
HEADER_BYTES = 4096  # how much of a real vocab file a seed keeps

# ------------------------------------------------------------------ GGUF

U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
F32_TYPE, F16_TYPE, Q8_0_TYPE = 0, 1, 8


def gguf_string(s):
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(data)) + data


def gguf_value(kind, value):
    if isinstance(value, tuple):  # an array: (element kind, items)
        elem_kind, items = value
        return struct.pack("<IQ", elem_kind, len(items)) + b"".join(gguf_value(elem_kind, v) for v in items)
    if kind == U32:
        return struct.pack("<I", value)
    if kind == I32:
        return struct.pack("<i", value)
    if kind == F32:
        return struct.pack("<f", value)
    if kind == BOOL:
        return struct.pack("<B", value)
    return gguf_string(value)


def tensor_bytes(ggml_type, ne):
    n = 1
    for d in ne:
        n *= d
    if ggml_type == F32_TYPE:
        return struct.pack(f"<{n}f", *[((i % 13) - 6) * 0.05 for i in range(n)])
    if ggml_type == F16_TYPE:
        return struct.pack(f"<{n}e", *[((i % 13) - 6) * 0.05 for i in range(n)])
    # Q8_0: blocks of 32: f16 scale + 32 int8
    blocks = b""
    for b in range(n // 32):
        blocks += struct.pack("<e", 0.01) + bytes((i * 7 + b) % 256 for i in range(32))
    return blocks


def gguf_file(kvs, tensors=(), version=3, alignment=32):
    """kvs: [(key, kind, value)]; tensors: [(name, ggml_type, ne)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, kind, value in kvs:
        out += gguf_string(key) + struct.pack("<I", ARRAY if isinstance(value, tuple) else kind)
        out += gguf_value(kind, value)
    datas, offset = [], 0
    for name, ggml_type, ne in tensors:
        data = tensor_bytes(ggml_type, ne)
        out += gguf_string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", ggml_type, offset)
        datas.append(data)
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for data in datas:
        out += data + b"\0" * (-len(data) % alignment)
    return out


def spm_vocab_kvs():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "a", "b", "\u2581a", "ab"]
    types = [2, 3, 3] + [6] * 256 + [1] * 5
    scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0]
    return [
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", STRING, (STRING, tokens)),
        ("tokenizer.ggml.scores", F32, (F32, scores)),
        ("tokenizer.ggml.token_type", I32, (I32, types)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, 1),
    ], len(tokens)


def tiny_model(arch, ggml_type, n_embd=32, n_ff=64, n_head=2, n_head_kv=1):
    vocab_kvs, n_vocab = spm_vocab_kvs()
    head_dim = n_embd // n_head
    kvs = [
        ("general.architecture", STRING, arch),
        ("general.name", STRING, "fuzz-seed"),
        (f"{arch}.context_length", U32, 64),
        (f"{arch}.embedding_length", U32, n_embd),
        (f"{arch}.block_count", U32, 1),
        (f"{arch}.feed_forward_length", U32, n_ff),
        (f"{arch}.attention.head_count", U32, n_head),
        (f"{arch}.attention.head_count_kv", U32, n_head_kv),
        (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5),
        (f"{arch}.rope.freq_base", F32, 10000.0),
        ("tokenizer.chat_template", STRING, "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"),
    ] + vocab_kvs
    kv_dim = n_head_kv * head_dim
    tensors = [("token_embd.weight", ggml_type, [n_embd, n_vocab]),
               ("output_norm.weight", F32_TYPE, [n_embd]),
               ("blk.0.attn_norm.weight", F32_TYPE, [n_embd]),
               ("blk.0.attn_q.weight", ggml_type, [n_embd, n_embd]),
               ("blk.0.attn_k.weight", ggml_type, [n_embd, kv_dim]),
               ("blk.0.attn_v.weight", ggml_type, [n_embd, kv_dim]),
               ("blk.0.attn_output.weight", ggml_type, [n_embd, n_embd]),
               ("blk.0.ffn_norm.weight", F32_TYPE, [n_embd]),
               ("blk.0.ffn_gate.weight", ggml_type, [n_embd, n_ff]),
               ("blk.0.ffn_up.weight", ggml_type, [n_embd, n_ff]),
               ("blk.0.ffn_down.weight", ggml_type, [n_ff, n_embd])]
    if arch == "qwen2":
        tensors += [("blk.0.attn_q.bias", F32_TYPE, [n_embd]), ("blk.0.attn_k.bias", F32_TYPE, [kv_dim]),
                    ("blk.0.attn_v.bias", F32_TYPE, [kv_dim])]
    if arch == "qwen3":
        tensors += [("blk.0.attn_q_norm.weight", F32_TYPE, [head_dim]),
                    ("blk.0.attn_k_norm.weight", F32_TYPE, [head_dim])]
    return gguf_file(kvs, tensors)


def gguf_seeds(shared):
    seeds = {
        "empty-v3": gguf_file([]),
        "empty-v2": gguf_file([], version=2),
        "spm-vocab": gguf_file(spm_vocab_kvs()[0] + [("general.architecture", STRING, "llama")]),
        "llama-f32": tiny_model("llama", F32_TYPE, n_embd=8, n_ff=16),
        "llama-q8_0": tiny_model("llama", Q8_0_TYPE, n_embd=32, n_ff=32),
        "qwen2-f16": tiny_model("qwen2", F16_TYPE, n_embd=8, n_ff=16),
        "qwen3-f32": tiny_model("qwen3", F32_TYPE, n_embd=8, n_ff=16),
        # absurd metadata: must be refused before anything is allocated
        "huge-context": gguf_file([("general.architecture", STRING, "llama"),
                                        ("llama.context_length", U32, 0xFFFFFFFF),
                                        ("llama.embedding_length", U32, 0x7FFFFFFF),
                                        ("llama.block_count", U32, 1 << 30)]),
        "huge-counts": b"GGUF" + struct.pack("<IQQ", 3, 1 << 62, 1 << 62),
    }
    for name in ("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"):
        path = shared / "models" / "gguf-vocab" / name
        if path.exists():
            seeds[f"real-header-{Path(name).stem}"] = path.read_bytes()[:HEADER_BYTES]
    return seeds

# ----------------------------------------------------------- safetensors


def safetensors_file(tensors, metadata=None, pad=0):
    """tensors: [(name, dtype, shape, data bytes)]"""
    header, offset, data = {}, 0, b""
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        data += blob
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    return {
        "one-f32.safetensors": safetensors_file([("w", "F32", [2, 3], f32)]),
        "mixed.safetensors": safetensors_file([("a", "F16", [2], b"\0<\0<"), ("b", "BF16", [1, 1], b"\x80?"),
                                               ("c", "I64", [], struct.pack("<q", 7)), ("d", "BOOL", [0], b"")],
                                              metadata={"format": "pt"}, pad=5),
        "empty.safetensors": safetensors_file([]),
        "all-dtypes.safetensors": safetensors_file(
            [(f"t{i}", d, [1], b"\0" * s) for i, (d, s) in enumerate(
                [("U8", 1), ("I8", 1), ("F8_E4M3", 1), ("F8_E5M2", 1), ("U16", 2), ("I16", 2),
                 ("U32", 4), ("I32", 4), ("U64", 8), ("F64", 8)])]),
    }

# ---------------------------------------------------- Hugging Face files

LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 4,
                "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 64, "rope_theta": 10000.0,
                "rms_norm_eps": 1e-05, "tie_word_embeddings": True}

SPM_TOKENIZER = {
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                     {"id": 2, "content": "</s>", "special": True}],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": None,
    "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True,
              "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "\u2581": 4, "a": 5, "b": 6,
                        "\u2581a": 7, "ab": 8, "\u2581ab": 9},
              "merges": ["\u2581 a", "a b", "\u2581a b"]}}

QWEN_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

BYTE_LEVEL_TOKENIZER = {
    "added_tokens": [{"id": 5, "content": "<|endoftext|>", "special": True},
                     {"id": 6, "content": "<|im_end|>", "special": True},
                     {"id": 7, "content": "<think>", "special": False}],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN_REGEX}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
    "post_processor": {"type": "ByteLevel"},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "\u0120": 2, "ab": 3, "\u0120a": 4},
              "merges": [["a", "b"], ["\u0120", "a"]]}}

TOKENIZER_CONFIG = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                    "eos_token": {"content": "</s>"}, "unk_token": "<unk>",
                    "chat_template": "{{ messages[0].content }}"}


def hf_config_seeds():
    def seed(selector, obj):
        return bytes([selector]) + json.dumps(obj, ensure_ascii=False).encode()
    llama3 = dict(LLAMA_CONFIG, rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    return {
        "config-llama.json": seed(0, LLAMA_CONFIG),
        "config-llama-f16.json": seed(4, LLAMA_CONFIG),
        "config-llama3-rope.json": seed(0, llama3),
        "config-qwen2.json": seed(0, dict(LLAMA_CONFIG, architectures=["Qwen2ForCausalLM"])),
        "config-untied.json": seed(0, dict(LLAMA_CONFIG, tie_word_embeddings=False)),
        "tokenizer-spm.json": seed(1, SPM_TOKENIZER),
        "tokenizer-byte-level.json": seed(1, BYTE_LEVEL_TOKENIZER),
        "tokenizer-config.json": seed(2, TOKENIZER_CONFIG),
        "tokenizer-config-list-template.json": seed(2, dict(TOKENIZER_CONFIG, chat_template=[
            {"name": "default", "template": "{{ bos_token }}<|im_start|>"}])),
    }

# --------------------------------------------------------------- llama2.c


def llama2c_seeds(shared):
    dim, hidden, layers, heads, kv_heads, vocab, seq = 4, 8, 1, 2, 1, 8, 4
    head_size, kv_dim = dim // heads, kv_heads * dim // heads
    n = (vocab * dim + layers * (dim + dim * dim + 2 * kv_dim * dim + dim * dim + dim + 3 * hidden * dim)
         + dim + 2 * seq * (head_size // 2))
    weights = struct.pack(f"<{n}f", *[((i % 11) - 5) * 0.1 for i in range(n)])
    checkpoint = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq) + weights
    unshared = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, -vocab, seq) + weights + weights[:vocab * dim * 4]
    texts = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b"<0x0A>", b" ", b"a", b" a", b"ab"]
    tokenizer = struct.pack("<i", 6) + b"".join(struct.pack("<fi", -float(i), len(t)) + t for i, t in enumerate(texts))
    seeds = {
        "checkpoint-shared.bin": b"\0" + checkpoint,
        "checkpoint-unshared.bin": b"\0" + unshared,
        "tokenizer.bin": b"\1" + tokenizer,
    }
    real = shared / "models" / "stories260K" / "tok512.bin"
    if real.exists():
        seeds["real-header-tok512.bin"] = b"\1" + real.read_bytes()[:HEADER_BYTES]
    return seeds

# ------------------------------------------------------------- tokenizers


TEXTS = {
    "ascii": "Hello world! This is a test.",
    "spaces": "   leading and  double  spaces\t\ttabs\n\nnewlines \r\n",
    "digits": "3333 1234567 3.14159 -42 1e10",
    "unicode": "\u00e9t\u00e9 na\u00efve \u4f60\u597d\u4e16\u754c \u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
    "emoji": "\U0001f600\U0001f44d\U0001f3fd \u2764\ufe0f family: \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "contractions": "I'm you're he'll we've they'd IT'S Don't",
    "specials": "<s>hi</s> <unk> <|endoftext|> <|im_start|>user",
    "lower-bar": "\u2581a\u2581\u2581b \u2581",
    "code": "def f(x):\n    return x**2  # square\n\tprint(\"ok\")",
}


def tokenizer_seeds():
    seeds = {}
    for name, text in TEXTS.items():
        seeds[f"encode-{name}"] = b"\0" + text.encode()
        seeds[f"encode-special-{name}"] = b"\x07" + text.encode()
    seeds["encode-invalid-utf8"] = b"\0" + b"ok \xff\xfe \xc3 \xe2\x96 \xf0\x9f\x98 \xed\xa0\x80 end"
    seeds["encode-nul"] = b"\0a\0b\0\0"
    seeds["encode-empty"] = b"\0"
    seeds["decode-ids"] = b"\x0c" + struct.pack("<12i", 0, 1, 2, 3, 4, 259, 260, 1000, 29871, -1, 50256, 1 << 30)
    return seeds

# ---------------------------------------------------------- chat template


TEMPLATES = {
    "chatml": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
    "qwen2": "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}<|im_start|>",
    "qwen3": "<|im_start|>{% if '</think>' in content %}{% endif %}",
    "smollm3": "<|im_start|>Reasoning Mode: /no_think",
    "smollm2": "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\\u00e9\\n\\t\\x41<|im_end|>\\n' }}<|im_start|>",
    "llama3": "<|start_header_id|>{{ role }}<|end_header_id|>\n\n{{ content }}<|eot_id|>",
    "llama2": "[INST] <<SYS>>\n{{ system }}\n<</SYS>>\n\n{{ user }} [/INST]",
    "gemma": "<start_of_turn>{{ role }}\n{{ content }}<end_of_turn>",
    "unknown": "{{ messages }}",
}

CONVERSATIONS = {
    "user": [("user", "Hello!")],
    "system-user": [("system", "Be brief."), ("user", "Hi")],
    "multi": [("system", "S"), ("user", "u1"), ("assistant", "a1"), ("user", "u2")],
    "think": [("user", "q"), ("assistant", "<think>\nhmm\n</think>\n\nanswer"), ("user", "again")],
    "bad-role": [("tool", "x"), ("user", "")],
}


def chat_template_seeds():
    seeds = {}
    for tname, template in TEMPLATES.items():
        for cname, messages in CONVERSATIONS.items():
            body = template.encode() + b"".join(b"\0" + r.encode() + b"\0" + c.encode() for r, c in messages)
            seeds[f"{tname}-{cname}"] = bytes([0, 1]) + body
    for fmt in range(1, 8):
        body = b"" + b"".join(b"\0" + r.encode() + b"\0" + c.encode() for r, c in CONVERSATIONS["multi"])
        seeds[f"format{fmt}-multi"] = bytes([fmt, fmt % 2]) + body
    return seeds

# --------------------------------------------------------- server request


def server_request_seeds():
    chat = {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Hello"}],
            "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
            "repeat_penalty": 1.1, "seed": 42, "stop": ["\n", "END"], "stream": True,
            "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 3}
    parts = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                     {"type": "text", "text": "b"}]}]}
    completion = {"prompt": "Once upon a time", "max_tokens": 8, "stop": "x", "logprobs": 2, "echo": False}
    return {
        "chat.json": b"\0" + json.dumps(chat).encode(),
        "chat-minimal.json": b"\0" + b'{"messages":[{"role":"user","content":"hi"}]}',
        "chat-parts.json": b"\0" + json.dumps(parts).encode(),
        "chat-bad-types.json": b"\0" + b'{"messages":"x","max_tokens":-5,"temperature":"hot","stop":[1,2]}',
        "completion.json": b"\1" + json.dumps(completion).encode(),
        "completion-list.json": b"\1" + b'{"prompt":["a","b"],"n":1,"max_tokens":null}',
        "trailing.json": b"\1" + b'{"prompt":"a"} {}',
        "deep.json": b"\0" + b"[" * 200 + b"]" * 200,
    }


# --------------------------------------------------------------- redaction


REDACT_TEXTS = {
    "email": "Write to jane.doe+news@example.co.uk or JANE.DOE+news@Example.co.uk today.",
    "phone": "Call +1 (415) 555-0132, tel. 020 7946 0958 or \u7535\u8bdd+86 10 1234 5678.",
    "card": "Card 4111 1111 1111 1111 exp 12/29; not a card: 4111 1111 1111 1112.",
    "iban": "IBAN GB82 WEST 1234 5698 7654 32 and DE89370400440532013000.",
    "ssn": "SSN: 123-45-6789, version 1.2.3-4",
    "network": "Hosts 192.0.2.1, \u00ab10.0.0.255\u00bb, 2001:db8::8a2e:370:7334, fe80::1%eth0, "
               "MAC 00:1A:2B:3C:4D:5E and 00-1a-2b-3c-4d-5e.",
    "url": "See https://user:hunter2@example.com/path?token=abcdef123456&x=1 now.",
    "secrets": "key AKIAIOSFODNN7EXAMPLE jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln "
               "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY----- ghp_0123456789abcdefABCDEF0123456789ab",
    "terms": "Alice Martin lives at 12 rue de la paix; alice martin said hi.",
    "placeholders": "Already [EMAIL_1] and [PHONE_2 and [CARD_999999999999] here.",
    "mixed-invalid-utf8": "a\xffb jane@example.org \xc3( 192.168.1.1\x00end",
}


def redact_seeds():
    seeds = {}
    for name, text in REDACT_TEXTS.items():
        body = text.encode("latin-1") if "invalid" in name else text.encode()
        seeds[name] = bytes([1, 0, 0, 3]) + body
    seeds["email-only-chunk1"] = bytes([0, 1, 0, 0]) + REDACT_TEXTS["email"].encode()
    return seeds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("POCKETLM_SHARED") or str(ROOT.parent / "shared"))
    args = parser.parse_args()
    shared = Path(args.shared)
    corpora = {
        "gguf": gguf_seeds(shared),
        "safetensors": safetensors_seeds(),
        "hf_config": hf_config_seeds(),
        "llama2c": llama2c_seeds(shared),
        "tokenizer_spm": tokenizer_seeds(),
        "tokenizer_bpe": tokenizer_seeds(),
        "chat_template": chat_template_seeds(),
        "server_request": server_request_seeds(),
        "redact": redact_seeds(),
    }
    for target, seeds in corpora.items():
        directory = SEEDS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
