// Prints what the reference GGUF parser (@huggingface/gguf) reads from a local
// file, as JSON, for tests/test_gguf_reference.c to compare with pocketlm's reader.
//
//   node gguf_dump.mjs FILE.gguf
//
// 64-bit integers (JavaScript BigInt) are printed as decimal strings.
import { gguf } from "@huggingface/gguf";

const path = process.argv[2];
if (!path) {
    console.error("usage: node gguf_dump.mjs FILE.gguf");
    process.exit(2);
}

const parsed = await gguf(path, { allowLocalFile: true, typedMetadata: true });

// The header fields are reported beside the key/values, not among them.
const header = ["version", "tensor_count", "kv_count"];
const metadata = {};
for (const [key, entry] of Object.entries(parsed.typedMetadata)) {
    if (!header.includes(key)) {
        metadata[key] = entry;
    }
}

const dump = {
    version: parsed.metadata.version,
    tensor_count: parsed.metadata.tensor_count,
    kv_count: parsed.metadata.kv_count,
    tensor_data_offset: parsed.tensorDataOffset,
    metadata,
    tensors: parsed.tensorInfos.map((t) => ({
        name: t.name,
        n_dims: t.n_dims,
        shape: t.shape,
        dtype: t.dtype,
        offset: t.offset,
    })),
};
process.stdout.write(JSON.stringify(dump, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
process.stdout.write("\n");
