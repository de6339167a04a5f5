// The chat page: keeps the conversation, streams each answer from
// /v1/chat/completions (server-sent events read through fetch), and shows
// per-answer details. Model text only ever reaches the page as textContent,
// never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const log = $("log"), input = $("input"), sendButton = $("send"), stopButton = $("stop");

const conversation = []; // {role, content} of the messages so far
let apiKey = sessionStorage.getItem("pocketlm-key") || "";
let running = null;      // the AbortController of the answer being generated
let chatNumber = 0;      // counts "New chat"s, so that an answer cut by one is not added to the next chat

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey) h.Authorization = "Bearer " + apiKey;
  return h;
}

// A message bubble; returns its text element.
function addMessage(role) {
  $("empty").hidden = true;
  const article = document.createElement("article");
  article.className = "message " + role;
  const who = document.createElement("h2");
  who.className = "visually-hidden";
  who.textContent = role === "user" ? "You" : "Assistant";
  const text = document.createElement("div");
  text.className = "text";
  article.append(who, text);
  log.append(article);
  return text;
}

function scrollToEnd() {
  window.scrollTo(0, document.body.scrollHeight);
}

function setRunning(controller) {
  running = controller;
  sendButton.disabled = controller !== null;
  stopButton.disabled = controller === null;
}

// ------------------------------------------------------------ the API key

function askForKey(message) {
  $("key-form").hidden = false;
  $("key-error").textContent = message || "";
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("key").value;
  sessionStorage.setItem("pocketlm-key", apiKey);
  $("key-form").hidden = true;
  loadModel();
  input.focus();
});

// The model's name in the header; also finds out whether a key is needed.
async function loadModel() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (response.status === 401) return askForKey(apiKey ? "That key was refused." : "");
    const body = await response.json();
    $("model").textContent = body.data[0].id;
  } catch (error) {
    $("model").textContent = "(server unreachable)";
  }
}

// ------------------------------------------------------------- streaming

// Calls onEvent with each parsed "data:" event of a server-sent event stream;
// returns when the stream ends.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data === "[DONE]") return;
      if (data) onEvent(JSON.parse(data));
    }
  }
}

// What is known about one answer, filled in as its events arrive.
function newAnswer() {
  return { start: performance.now(), firstToken: null, lastToken: null, model: "", route: "", usage: null,
           finishReason: null, error: "" };
}

function onChunk(answer, chunk, text) {
  if (chunk.error) {
    answer.error = chunk.error.message;
    return;
  }
  if (chunk.model) answer.model = chunk.model;
  if (chunk.pocketlm && chunk.pocketlm.route) answer.route = chunk.pocketlm.route;
  if (chunk.usage) answer.usage = chunk.usage;
  const choice = chunk.choices && chunk.choices[0];
  if (!choice) return;
  if (choice.finish_reason) answer.finishReason = choice.finish_reason;
  const piece = choice.delta && choice.delta.content;
  if (piece) {
    const now = performance.now();
    if (answer.firstToken === null) answer.firstToken = now;
    answer.lastToken = now;
    text.append(piece); // a text node: the model's text is never parsed as HTML
    scrollToEnd();
  }
}

const routeNames = { device: "on this device" };

// The details line under an answer: where it ran, tokens, speed, latency.
function showDetails(article, answer, stopped) {
  const details = document.createElement("p");
  details.className = "details";
  const parts = [];
  if (answer.model) parts.push(answer.model);
  if (answer.route) parts.push(routeNames[answer.route] || "ran on " + answer.route);
  const usage = answer.usage;
  if (usage) {
    parts.push(usage.prompt_tokens + " prompt tokens", usage.completion_tokens + " tokens");
    details.dataset.promptTokens = usage.prompt_tokens;
    details.dataset.completionTokens = usage.completion_tokens;
    // The decoding speed: the tokens after the first over the time they took
    // to arrive, so that the prompt's processing does not count.
    const seconds = (answer.lastToken - answer.firstToken) / 1000;
    if (usage.completion_tokens > 1 && seconds > 0) {
      const speed = (usage.completion_tokens - 1) / seconds;
      parts.push(speed.toFixed(1) + " tokens/s");
      details.dataset.tokensPerSecond = speed.toFixed(1);
    }
  }
  if (answer.firstToken !== null)
    parts.push("first token " + Math.round(answer.firstToken - answer.start) + " ms");
  if (stopped) parts.push("stopped");
  else if (answer.finishReason === "length") parts.push("cut at max tokens");
  details.textContent = parts.join(" · ");
  article.append(details);
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch (error) {
    return "HTTP " + response.status;
  }
}

async function send(userText) {
  conversation.push({ role: "user", content: userText });
  addMessage("user").textContent = userText;
  const text = addMessage("assistant");
  const article = text.parentElement;
  article.setAttribute("aria-busy", "true"); // screen readers wait for the whole answer
  scrollToEnd();

  const chat = chatNumber;
  const controller = new AbortController();
  setRunning(controller);
  const system = $("system").value.trim();
  const request = {
    model: $("model").textContent || "default",
    messages: system ? [{ role: "system", content: system }, ...conversation] : conversation,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value) || 256,
    temperature: Number($("temperature").value),
  };
  const answer = newAnswer();
  let stopped = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal,
    });
    if (response.status === 401) askForKey("The server asks for a key.");
    if (!response.ok) answer.error = await errorMessage(response);
    else await readEvents(response.body, (chunk) => onChunk(answer, chunk, text));
  } catch (error) {
    if (error.name === "AbortError") stopped = true; // the server sees the connection close and frees the slot
    else answer.error = "The connection failed: " + error.message;
  }
  setRunning(null);
  article.removeAttribute("aria-busy");
  if (chat !== chatNumber) return; // "New chat" cleared the page meanwhile
  if (answer.error) {
    const line = document.createElement("p");
    line.className = "error";
    line.textContent = answer.error;
    article.append(line);
  }
  if (text.textContent) {
    conversation.push({ role: "assistant", content: text.textContent });
  } else {
    conversation.pop(); // unanswered: the message leaves the conversation sent next time
    if (!answer.error && !stopped) text.textContent = "(no text)";
  }
  showDetails(article, answer, stopped);
  $("status").textContent = answer.error ? "The answer failed." : stopped ? "Answer stopped." : "Answer complete.";
  scrollToEnd();
}

// ----------------------------------------------------------------- input

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const userText = input.value.trim();
  if (!userText || running) return;
  input.value = "";
  send(userText);
});

input.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter is a new line; not while an input method composes.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && running) running.abort();
});

stopButton.addEventListener("click", () => running && running.abort());

$("new-chat").addEventListener("click", () => {
  if (running) running.abort();
  chatNumber++;
  conversation.length = 0;
  log.replaceChildren();
  $("empty").hidden = false;
  input.focus();
});

loadModel();
input.focus();
