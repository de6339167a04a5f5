// llama.cpp as a reference runtime: this does with llama.cpp (through
// node-llama-cpp's prebuilt CPU binary) what pocketlm does with a GGUF file, and
// prints the result in the same shape, so that tests/cli/llama_cpp_reference.sh
// can compare the two programs on the same file.
//
//   node llama_cpp_check.mjs info MODEL
//       one JSON line: the special tokens and sizes llama.cpp read from MODEL
//   node llama_cpp_check.mjs tokenize MODEL [--parse-special] TEXT...
//       one line per TEXT: its token ids, space-separated, without BOS
//       (like `pocketlm tokenize --no-bos [--parse-special]`), or a line starting
//       with "!" for a text that llama.cpp cannot tokenize (see below)
//   node llama_cpp_check.mjs generate MODEL PROMPT N
//       the text of N tokens generated greedily after BOS + PROMPT, stopping early
//       at an end-of-generation token (like `pocketlm run --temp 0 -n N`)
//   node llama_cpp_check.mjs perplexity MODEL FILE CTX
//       `PPL = <value>` computed as llama.cpp's perplexity tool does
//       (like `pocketlm perplexity -c CTX`)
//
// Results go to stdout; llama.cpp's own warnings and diagnostics go to stderr,
// each llama.cpp log line prefixed by "llama.cpp LEVEL:" (e.g. "llama.cpp warn:").
// Exit codes: 0 success, 1 llama.cpp failed (a one-line error), 2 bad usage.
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const usage = `usage: node llama_cpp_check.mjs info MODEL
       node llama_cpp_check.mjs tokenize MODEL [--parse-special] TEXT...
       node llama_cpp_check.mjs generate MODEL PROMPT N
       node llama_cpp_check.mjs perplexity MODEL FILE CTX`;

function usageError(message) {
    console.error(`llama_cpp_check: ${message}\n${usage}`);
    process.exit(2);
}

function parseCount(text, what) {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) {
        usageError(`${what} must be a positive integer, got '${text}'`);
    }
    return value;
}

// Only the prebuilt CPU binary shipped in @node-llama-cpp/linux-x64: never a GPU
// backend, never a download or a build from source (there is no network).
async function loadModel(modelPath) {
    const llama = await getLlama({
        gpu: false,
        build: "never",
        skipDownload: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.warn,
        maxThreads: 1,
        logger(level, message) {
            const text = message.trimEnd();
            if (text !== "") {
                process.stderr.write(`llama.cpp ${level}: ${text}\n`);
            }
        },
    });
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    return { llama, model };
}

// pocketlm keeps its KV cache in F32 and computes attention plainly, so the
// context does too (llama.cpp's defaults, an F16 cache and flash attention when
// available, shift the logits by ~1e-4). One thread: these models are tiny, and
// with two, ggml's spinning thread barrier stalled generation for minutes on a
// machine busy running other tests.
function createContext(model, size) {
    return model.createContext({
        contextSize: size,
        batchSize: size,
        threads: 1,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
    });
}

// GGUF token type of the byte tokens <0x00> .. <0xFF>.
const BYTE_TOKEN = 6;

function vocabulary(model) {
    return model.fileInfo.metadata.tokenizer.ggml;
}

// llama.cpp's SentencePiece tokenizer spells a character that is not in the
// vocabulary with the byte tokens <0xXX> of its UTF-8 bytes, and when one is
// missing it aborts the whole process (an uncaught std::out_of_range in
// llama_vocab::byte_to_token). A vocabulary converted from a BPE tokenizer.json
// without byte tokens, like TinyStories-656K's, has none; such characters are
// found here first so that they can be reported instead.
function unspellableCharacters(model, text) {
    if (model.vocabularyType !== "spm") return [];
    const known = new Set(vocabulary(model).tokens);
    const missing = new Set();
    for (const character of text.replaceAll(" ", "\u2581")) {
        const bytes = [...Buffer.from(character, "utf8")];
        const byteToken = (byte) => `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;
        if (!known.has(character) && !bytes.every((byte) => known.has(byteToken(byte)))) {
            missing.add(character);
        }
    }
    return [...missing];
}

function describeCharacters(characters) {
    return characters.map((c) => `U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`).join(" ");
}

// BOS + the prompt's tokens, as llama.cpp's tools tokenize a prompt
// (add_special: BOS when the model asks for it; no special-token parsing).
function promptTokens(model, prompt) {
    const missing = unspellableCharacters(model, prompt);
    if (missing.length > 0) {
        throw new Error(`llama.cpp would abort on this text: no token or byte tokens for ${describeCharacters(missing)}`);
    }
    const bos = model.tokens.shouldPrependBosToken ? [model.tokens.bos] : [];
    return [...bos, ...model.tokenize(prompt)];
}

function info(model) {
    const tokens = model.tokens;
    console.log(JSON.stringify({
        architecture: model.architecture,
        vocabulary: model.vocabularyType,
        n_vocab: vocabulary(model).tokens.length,
        n_byte_tokens: vocabulary(model).token_type.filter((type) => type === BYTE_TOKEN).length,
        n_ctx_train: model.trainContextSize,
        bos: tokens.bos,
        eos: tokens.eos,
        add_bos: tokens.shouldPrependBosToken,
        eos_is_eog: model.isEogToken(tokens.eos),
    }));
}

// A line per text: its ids, or, for a text llama.cpp would abort on, a line
// starting with "!" that names the characters it cannot spell.
function tokenize(model, texts, parseSpecial) {
    for (const text of texts) {
        const missing = unspellableCharacters(model, text);
        if (missing.length > 0) {
            console.log(`! llama.cpp aborts on this text: no token or byte tokens for ${describeCharacters(missing)}`);
        } else {
            console.log(model.tokenize(text, parseSpecial).join(" "));
        }
    }
}

// The difference between the two largest logits: when it is tiny, a different
// but equally right implementation may pick the other token.
function topTwoMargin(logits) {
    const [first, second] = [...logits.values()];
    return second === undefined ? Infinity : first - second;
}

// Greedy decoding, one token at a time, with llama.cpp's own greedy sampler.
// The generated ids and the narrowest top-2 margin go to stderr: pocketlm prints
// only text, so on a mismatch these say where and how close the choice was.
async function generate(model, prompt, count) {
    const context = await createContext(model, model.trainContextSize);
    const sequence = context.getSequence();
    const input = promptTokens(model, prompt);
    const nextOptions = {
        token: true,
        options: { temperature: 0 },
        logits: { filter: { tokens: [], includeTop: 2 } },
    };
    const generated = [];
    let narrowest = { margin: Infinity, step: -1 };
    let pending = input;
    let stop = "n-predict";
    while (generated.length < count) {
        if (sequence.nextTokenIndex + pending.length > context.contextSize) {
            stop = "context full";
            break;
        }
        const items = pending.map((token, i) =>
            i === pending.length - 1 ? [token, { generateNext: nextOptions }] : token);
        const results = await sequence.controlledEvaluate(items);
        const next = results[pending.length - 1].next;
        const margin = topTwoMargin(next.logits);
        if (margin < narrowest.margin) {
            narrowest = { margin, step: generated.length };
        }
        if (model.isEogToken(next.token)) {
            stop = "end of generation";
            break;
        }
        generated.push(next.token);
        pending = [next.token];
    }
    process.stdout.write(model.detokenize(generated, false, input));
    console.error(`llama.cpp: prompt ${input.length} tokens, generated ${generated.length} tokens, stop: ${stop}`);
    console.error(`llama.cpp: generated ids: ${generated.join(" ")}`);
    console.error(`llama.cpp: narrowest top-2 logit margin ${narrowest.margin.toFixed(6)} at step ${narrowest.step}`);
    await context.dispose();
}

// log p(token) from a Map of every token's logit.
function logProbability(logits, token) {
    let max = -Infinity;
    for (const value of logits.values()) max = Math.max(max, value);
    let sum = 0;
    for (const value of logits.values()) sum += Math.exp(value - max);
    return logits.get(token) - max - Math.log(sum);
}

// llama.cpp's perplexity tool: the whole text as one token stream (with BOS), cut
// into chunks of ctx tokens (a partial last chunk dropped), each chunk's first
// token replaced by BOS and evaluated from an empty cache; the tokens of the
// second half are scored by the log-probability given at the position before.
async function perplexity(model, file, ctx) {
    const tokens = promptTokens(model, readFileSync(file, "utf8"));
    const chunks = Math.floor(tokens.length / ctx);
    if (chunks < 1) {
        throw new Error(`${file} is ${tokens.length} tokens, fewer than one chunk of ${ctx}`);
    }
    const context = await createContext(model, ctx);
    const sequence = context.getSequence();
    const first = ctx / 2 | 0;
    let nll = 0;
    let scored = 0;
    for (let c = 0; c < chunks; c++) {
        const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
        chunk[0] = model.tokens.bos;
        await sequence.clearHistory();
        const items = chunk.map((token, j) =>
            j >= first && j < ctx - 1 ? [token, { generateNext: { logits: true } }] : token);
        const results = await sequence.controlledEvaluate(items);
        for (let j = first; j < ctx - 1; j++) {
            nll -= logProbability(results[j].next.logits, chunk[j + 1]);
            scored++;
        }
        console.error(`[${c + 1}]${Math.exp(nll / scored).toFixed(4)}`);
    }
    console.error(`llama.cpp: ${tokens.length} tokens, ${chunks} chunks, ${scored} scored tokens`);
    console.log(`PPL = ${Math.exp(nll / scored).toFixed(8)}`);
    await context.dispose();
}

async function main(argv) {
    const [command, modelPath, ...rest] = argv;
    if (!command || !modelPath) usageError("missing a command or a model");
    let run;
    if (command === "info") {
        run = (model) => info(model);
    } else if (command === "tokenize") {
        const parseSpecial = rest[0] === "--parse-special";
        const texts = parseSpecial ? rest.slice(1) : rest;
        run = (model) => tokenize(model, texts, parseSpecial);
    } else if (command === "generate") {
        if (rest.length !== 2) usageError("generate takes MODEL PROMPT N");
        const count = parseCount(rest[1], "N");
        run = (model) => generate(model, rest[0], count);
    } else if (command === "perplexity") {
        if (rest.length !== 2) usageError("perplexity takes MODEL FILE CTX");
        const ctx = parseCount(rest[1], "CTX");
        run = (model) => perplexity(model, rest[0], ctx);
    } else {
        usageError(`unknown command '${command}'`);
    }
    const { llama, model } = await loadModel(modelPath);
    await run(model);
    await model.dispose();
    await llama.dispose();
}

try {
    await main(process.argv.slice(2));
} catch (error) {
    console.error(`llama_cpp_check: ${error.message ?? error}`.split("\n")[0]);
    process.exit(1);
}
