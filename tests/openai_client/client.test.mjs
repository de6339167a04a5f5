// `pocketlm serve` driven by OpenAI's official Node client (the `openai`
// package): if the SDK parses every answer, stream and error into the shapes
// its typings and the API reference describe, any OpenAI client can talk to
// the server. Run by tests/cli/openai_client.sh, which converts the model;
// plain node, no test framework. One line per check, exit 1 on any failure.
//
// Environment: PLM (the pocketlm program), MODEL (the TinyStories-656K GGUF;
// its context holds 512 tokens).
import { basename } from "node:path";
import OpenAI from "openai";
import { metric, startServer, stopServer as stopServerProcess, waitForMetric } from "../support/server.mjs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

let checks = 0, failures = 0;
function check(ok, what, detail = "") {
  if (ok) {
    checks++;
    console.log(`ok: ${what}`);
  } else {
    failures++;
    console.log(`FAIL: ${what}${detail ? ": " + detail : ""}`);
  }
}
const show = (value) => JSON.stringify(value)?.slice(0, 300);

// SIGTERM; the server must exit 0.
async function stopServer(server) {
  const code = await stopServerProcess(server);
  check(code === 0, "the server exits 0 after SIGTERM", `exit ${code}`);
}

// The error a call throws, or null if it succeeds.
async function thrownBy(call) {
  try {
    await call();
    return null;
  } catch (error) {
    return error;
  }
}

const isInt = (x) => Number.isInteger(x);
const isUsage = (u) =>
  u != null && isInt(u.prompt_tokens) && isInt(u.completion_tokens) &&
  u.total_tokens === u.prompt_tokens + u.completion_tokens;

// The chat's first words: TinyStories has no chat training, so the chatml
// turns only need to be well-formed, not answered sensibly.
const messages = [
  { role: "system", content: "You tell stories." },
  { role: "user", content: "Tell me one." },
];
const greedy = { model: "ts.gguf", messages, max_tokens: 30, temperature: 0 };

async function testModels(client, modelId) {
  const models = [];
  for await (const model of client.models.list()) models.push(model);
  check(models.length === 1 && models[0].id === modelId && models[0].object === "model",
    "models.list() returns the served model", show(models));
  check(isInt(models[0]?.created) && typeof models[0]?.owned_by === "string",
    "the model has an integer `created` and an `owned_by`", show(models[0]));
  const one = await client.models.retrieve(modelId);
  check(one.id === modelId && one.object === "model", "models.retrieve() returns the served model", show(one));
  try {
    await client.models.retrieve("gpt-4o");
    check(false, "models.retrieve() of a model not served throws", "no error");
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.status === 404,
      "models.retrieve() of a model not served: NotFoundError (404)", show(e.error ?? e.message));
  }
}

// Returns the greedy answer, the reference the other chat checks compare with.
async function testChat(client, modelId) {
  const c = await client.chat.completions.create(greedy);
  check(typeof c.id === "string" && c.id.startsWith("chatcmpl-") && c.object === "chat.completion",
    "chat: id chatcmpl-… and object chat.completion", show(c));
  check(isInt(c.created) && c.model === modelId, "chat: integer `created`, the model's id", show(c));
  const choice = c.choices[0];
  check(c.choices.length === 1 && choice.index === 0 && choice.message.role === "assistant" &&
    typeof choice.message.content === "string" && choice.message.content.length > 0,
    "chat: one choice, an assistant message with text", show(c.choices));
  check(["stop", "length"].includes(choice.finish_reason) && choice.logprobs === null,
    "chat: finish_reason stop|length, logprobs null when not asked", show(choice));
  check(isUsage(c.usage) && c.usage.completion_tokens <= 30 && c.usage.prompt_tokens > 0,
    "chat: usage adds up", show(c.usage));

  const again = await client.chat.completions.create({ ...greedy, seed: 7 });
  check(again.choices[0].message.content === choice.message.content,
    "chat: temperature 0 gives the same text, with or without a seed", show(again.choices[0].message.content));
  const sampled = { ...greedy, temperature: 1, seed: 42 };
  const first = (await client.chat.completions.create(sampled)).choices[0].message.content;
  const second = (await client.chat.completions.create(sampled)).choices[0].message.content;
  check(first === second, "chat: temperature 1 with the same seed gives the same text", show([first, second]));

  const short = await client.chat.completions.create({ ...greedy, max_tokens: 5 });
  check(short.choices[0].finish_reason === "length" && short.usage.completion_tokens === 5,
    "chat: max_tokens 5 stops at 5 tokens with finish_reason length", show(short));

  // Stop on the answer's fourth word: the text ends just before it.
  const word = choice.message.content.split(/\s+/).filter(Boolean)[3];
  const stopped = await client.chat.completions.create({ ...greedy, stop: ["zzz", word] });
  const want = choice.message.content.slice(0, choice.message.content.indexOf(word));
  check(stopped.choices[0].message.content === want && stopped.choices[0].finish_reason === "stop",
    `chat: stop ${show(word)} ends the text before it, finish_reason stop`, show(stopped.choices[0]));
  return c;
}

async function testChatLogprobs(client, whole) {
  const c = await client.chat.completions.create({ ...greedy, max_tokens: 8, logprobs: true, top_logprobs: 3 });
  const content = c.choices[0].logprobs?.content;
  check(Array.isArray(content) && content.length === c.usage.completion_tokens,
    "chat logprobs: one entry per generated token", show(c.choices[0].logprobs));
  if (!Array.isArray(content)) return;
  check(content.map((e) => e.token).join("") === c.choices[0].message.content &&
    whole.choices[0].message.content.startsWith(c.choices[0].message.content),
    "chat logprobs: the tokens spell the answer, the greedy answer's start", show(content.map((e) => e.token)));
  check(content.every((e) => typeof e.token === "string" && typeof e.logprob === "number" && e.logprob <= 0 &&
    Array.isArray(e.bytes) && Buffer.from(e.bytes).toString("utf8") === e.token),
    "chat logprobs: token, logprob <= 0, bytes that spell the token", show(content[0]));
  check(content.every((e) => {
    const tops = e.top_logprobs.map((t) => t.logprob);
    return tops.length === 3 && e.top_logprobs.every((t) => typeof t.token === "string") &&
      tops.every((p, i) => i === 0 || tops[i - 1] >= p) && Math.abs(tops[0] - e.logprob) < 1e-5;
  }), "chat logprobs: 3 top_logprobs, most likely first, the greedy pick on top", show(content[0]?.top_logprobs));
}

async function testChatStream(client, whole) {
  const stream = await client.chat.completions.create({
    ...greedy, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks.at(-1);
  const body = chunks.slice(0, -1);
  check(chunks.length > 2 && chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id),
    "chat stream: chat.completion.chunk objects with one id", show(chunks[0]));
  check(body[0]?.choices[0].delta.role === "assistant", "chat stream: the first delta has role assistant", show(body[0]));
  const text = body.map((c) => c.choices[0].delta.content ?? "").join("");
  check(text === whole.choices[0].message.content,
    "chat stream: the deltas add up to the non-streamed greedy answer", show([text, whole.choices[0].message.content]));
  check(body.at(-1)?.choices[0].finish_reason === whole.choices[0].finish_reason &&
    body.slice(0, -1).every((c) => c.choices[0].finish_reason === null),
    "chat stream: finish_reason only on the last content chunk", show(body.at(-1)));
  check(last.choices.length === 0 && isUsage(last.usage) &&
    JSON.stringify(last.usage) === JSON.stringify(whole.usage) && body.every((c) => c.usage == null),
    "chat stream: only the last chunk carries usage, the same as without streaming", show(last));

  // The SDK's own accumulator rebuilds the whole completion from the chunks.
  const runner = client.chat.completions.stream({ ...greedy });
  const final = await runner.finalChatCompletion();
  check(final.choices[0].message.content === whole.choices[0].message.content &&
    final.choices[0].finish_reason === whole.choices[0].finish_reason,
    "chat stream: the SDK's chat.completions.stream() rebuilds the same answer", show(final.choices[0]));
}

async function testCompletions(client) {
  const request = { model: "ts.gguf", prompt: "Once upon a time", max_tokens: 20, temperature: 0 };
  const c = await client.completions.create({ ...request, logprobs: 2 });
  const choice = c.choices[0];
  check(typeof c.id === "string" && c.id.startsWith("cmpl-") && c.object === "text_completion" && isInt(c.created),
    "completions: id cmpl-…, object text_completion, integer created", show(c));
  check(typeof choice.text === "string" && choice.text.length > 0 && choice.index === 0 &&
    choice.finish_reason === "length" && isUsage(c.usage) && c.usage.completion_tokens === 20,
    "completions: text, finish_reason length at max_tokens, usage", show(c));
  const lp = choice.logprobs;
  check(lp && lp.tokens.length === 20 && lp.token_logprobs.length === 20 && lp.top_logprobs.length === 20 &&
    lp.text_offset.length === 20 && lp.tokens.join("") === choice.text &&
    lp.tokens.every((t, i) => choice.text.startsWith(t, lp.text_offset[i])) &&
    lp.top_logprobs.every((top, i) => Object.keys(top).length === 2 &&
      Math.abs(Math.max(...Object.values(top)) - lp.token_logprobs[i]) < 1e-5),
    "completions: legacy logprobs (tokens, token_logprobs, top_logprobs, text_offset)", show(lp));

  const stream = await client.completions.create({ ...request, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  check(chunks.every((k) => k.object === "text_completion" && k.id === chunks[0].id) &&
    chunks.map((k) => k.choices[0].text).join("") === choice.text &&
    chunks.at(-1).choices[0].finish_reason === "length",
    "completions stream: the chunks add up to the same text, finish_reason length", show(chunks.at(-1)));
}

// A client that stops reading mid-stream frees its slot; the next request is served.
async function testAbort(client, server) {
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: "ts.gguf", prompt: "Once upon a time", max_tokens: 400, temperature: 0, stream: true },
    { signal: controller.signal });
  let received = 0, finished = false;
  const error = await thrownBy(async () => {
    for await (const chunk of stream) {
      received++;
      finished ||= chunk.choices[0]?.finish_reason != null;
      if (received === 3) controller.abort();
    }
  });
  // The SDK ends an aborted stream quietly (chunks it had already read may
  // still come out); a stream that ran to its end would carry a finish_reason.
  check((error === null || error instanceof OpenAI.APIUserAbortError) && received >= 3 && !finished,
    "abort: the stream ends early, without a finish_reason", `${received} chunks, finished ${finished}, ${error}`);
  check(await waitForMetric(server, "pocketlm_slots_busy", 0), "abort: the server frees the slot");
  const next = await client.completions.create({ model: "ts.gguf", prompt: "Once", max_tokens: 5 });
  check(next.choices[0].finish_reason === "length", "abort: the next request is served", show(next));
}

async function testErrors(server, client) {
  const wrongKey = new OpenAI({ baseURL: server.url + "/v1", apiKey: "wrong", maxRetries: 0 });
  let error = await thrownBy(() => wrongKey.chat.completions.create(greedy));
  check(error instanceof OpenAI.AuthenticationError && error.status === 401 && typeof error.error?.message === "string",
    "errors: a wrong key is an AuthenticationError (401) with a message", `${error}`);

  error = await thrownBy(() => client.chat.completions.create({ model: "ts.gguf", messages: "x" }));
  check(error instanceof OpenAI.BadRequestError && error.status === 400 && error.param === "messages" &&
    typeof error.error?.message === "string" && error.error.message.length > 0,
    "errors: messages \"x\" is a BadRequestError (400) naming param messages", `${error} param=${error?.param}`);

  const long = "once upon a time ".repeat(300);
  error = await thrownBy(() => client.completions.create({ model: "ts.gguf", prompt: long }));
  check(error instanceof OpenAI.BadRequestError && error.status === 400 && error.code === "context_length_exceeded" &&
    /512/.test(error.error?.message),
    "errors: a prompt over the context is a BadRequestError (400), context_length_exceeded", `${error} code=${error?.code}`);

  error = await thrownBy(() => client.chat.completions.create({ ...greedy, messages: [{ role: "user", content: long }] }));
  check(error instanceof OpenAI.BadRequestError && error.code === "context_length_exceeded",
    "errors: a chat over the context is a BadRequestError (400) too", `${error} code=${error?.code}`);

  const after = await client.completions.create({ model: "ts.gguf", prompt: "Once", max_tokens: 3 });
  check(after.choices.length === 1, "errors: the server still serves afterwards", show(after));
}

const model = env("MODEL");
const server = await startServer(env("PLM"), ["-m", model, "--chat-template", "chatml", "-t", "1", "--parallel", "1",
  "--api-key", "sekret"]);
// No retries: a retried request would hide a failure the test should see.
const client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "sekret", maxRetries: 0, timeout: 60000 });
try {
  await testModels(client, basename(model));
  const whole = await testChat(client, basename(model));
  await testChatLogprobs(client, whole);
  await testChatStream(client, whole);
  await testCompletions(client);
  await testAbort(client, server);
  await testErrors(server, client);
} catch (error) {
  check(false, "the client test ran to its end", error.stack);
} finally {
  await stopServer(server);
}
console.log(`${checks} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
