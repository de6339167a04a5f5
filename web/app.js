// The chat page: keeps the conversation, streams each answer from
// /v1/chat/completions (server-sent events read through fetch), and shows
// per-answer details: where the answer ran and, when the server's policy sent
// the conversation to an upstream model, the redacted text that left the
// device. Before anything leaves with consent "ask", the server answers 403
// consent_required and the page shows that text in a dialog; only "Send"
// repeats the request with the consent token. Model and message text only
// ever reaches the page as textContent, never as HTML.
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

// A new element; text, if given, as its textContent.
function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

// A message bubble; returns its text element.
function addMessage(role) {
  $("empty").hidden = true;
  const article = element("article", "message " + role);
  const text = element("div", "text");
  article.append(element("h2", "visually-hidden", role === "user" ? "You" : "Assistant"), text);
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

// ------------------------------------------------------ where answers run

// The served model's id: a request naming it (or naming nothing the policy
// knows) is answered on the device.
function deviceModel() {
  return $("model").textContent || "default";
}

// The request's "model": the device's, or the upstream named in "Answer on".
function targetModel() {
  const named = $("target").value.trim();
  return named && named !== "device" ? named : deviceModel();
}

// Upstream names seen in answers and consent requests join the "Answer on"
// suggestions (/v1/models lists only the device model), kept across visits.
function upstreamNames() {
  try {
    const names = JSON.parse(localStorage.getItem("pocketlm-upstreams"));
    return Array.isArray(names) ? names : [];
  } catch (error) {
    return [];
  }
}

function rememberUpstream(name) {
  const names = upstreamNames();
  if (!name || name === "device" || names.includes(name)) return;
  localStorage.setItem("pocketlm-upstreams", JSON.stringify([...names, name]));
  showUpstreams();
}

function showUpstreams() {
  $("targets").replaceChildren(...["device", ...upstreamNames()].map((name) => {
    const option = element("option");
    option.value = name;
    return option;
  }));
}

// "EMAIL 1, TERM 1" from the server's {"EMAIL": 1, "TERM": 1}.
function redactionText(redactions) {
  const counts = Object.entries(redactions || {}).map(([type, n]) => type + " " + n);
  return counts.length ? counts.join(", ") : "nothing";
}

// The messages that leave (or would leave) the device, one item each.
function messageItems(messages) {
  return (messages || []).map((m) => {
    const item = element("li");
    item.append(element("span", "role", m.role), element("div", "text", m.content));
    return item;
  });
}

// ---------------------------------------------------------------- consent

// Shows what would be sent; resolves true for "Send", false for "Don't send"
// (or Escape).
function askConsent(consent) {
  const dialog = $("consent");
  $("consent-upstream").textContent = consent.upstream;
  $("consent-name").textContent = consent.upstream;
  $("consent-kind").textContent = consent.kind;
  $("consent-model").textContent = consent.model;
  $("consent-url").textContent = consent.base_url || "(the provider's public API)";
  $("consent-reason").textContent = consent.reason;
  $("consent-redactions").textContent = redactionText(consent.redactions);
  $("consent-messages").replaceChildren(...messageItems(consent.messages));
  dialog.returnValue = "";
  // Focus goes to "Don't send", then back to the message box, by hand:
  // Chromium's own return of the focus to the box left it deaf to typing.
  document.activeElement.blur();
  dialog.showModal();
  $("consent-decline").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      input.focus();
      resolve(dialog.returnValue === "send");
    }, { once: true });
  });
}

$("consent-send").addEventListener("click", () => $("consent").close("send"));
$("consent-decline").addEventListener("click", () => $("consent").close("decline"));

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
  return { start: performance.now(), firstToken: null, lastToken: null, model: "", routing: null, usage: null,
           finishReason: null, error: "" };
}

function onChunk(answer, chunk, text) {
  if (chunk.error) {
    answer.error = chunk.error.message;
    return;
  }
  if (chunk.model) answer.model = chunk.model;
  if (chunk.pocketlm && chunk.pocketlm.route) answer.routing = chunk.pocketlm; // route, reason, sent, ...
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

// The badges saying where an answer ran ("device" or an upstream's name, and
// "fallback" when the upstream failed and the device answered); why on hover.
function routeBadges(details, routing) {
  details.append(element("span", "visually-hidden", "Answered on "));
  const badge = element("span", "badge route", routing.route);
  badge.title = routing.reason || "";
  details.append(badge, " ");
  details.dataset.route = routing.route;
  if (routing.fallback) {
    const fallback = element("span", "badge fallback", "fallback");
    fallback.title = routing.upstream_error || "";
    details.append(fallback, " ");
    details.dataset.fallback = "true";
  }
}

// What left the device for this answer, exactly as sent (redacted), and why.
function showSent(article, routing) {
  const box = element("details", "sent");
  const where = routing.fallback ? "Sent off this device, but the upstream failed" : "Sent to " + routing.route;
  const list = element("ol", "sent-messages");
  list.append(...messageItems(routing.sent));
  box.append(element("summary", "", where + " · redacted: " + redactionText(routing.redactions)));
  if (routing.reason) box.append(element("p", "", "Why: " + routing.reason));
  if (routing.upstream_error) box.append(element("p", "error", routing.upstream_error));
  box.append(list);
  if (routing.audit_id)
    box.append(element("p", "", `Audit log entry ${routing.audit_id} (pocketlm audit show ${routing.audit_id})`));
  article.append(box);
}

// The details line under an answer: where it ran, tokens, speed, latency.
function showDetails(article, answer, stopped) {
  const details = element("p", "details");
  if (answer.routing) routeBadges(details, answer.routing);
  const parts = [];
  if (answer.model && !(answer.routing && answer.model === answer.routing.route)) parts.push(answer.model);
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
  details.append(parts.join(" · "));
  article.append(details);
  if (answer.routing && answer.routing.sent) showSent(article, answer.routing);
}

// An error response's message and, for consent_required, what to ask.
async function errorBody(response) {
  try {
    const body = await response.json();
    return { message: body.error.message, consent: body.error.code === "consent_required" ? body.consent : null };
  } catch (error) {
    return { message: "HTTP " + response.status, consent: null };
  }
}

// A turn the user chose not to send: says so, and offers the device instead.
function showNotSent(article, text, userMessage) {
  const notice = element("p", "notice", "Not sent: nothing left this device. ");
  const retry = element("button", "retry", "Ask this device instead");
  retry.type = "button";
  retry.addEventListener("click", () => {
    if (running) return;
    notice.remove();
    conversation.push(userMessage);
    answerWith(text, deviceModel());
  });
  notice.append(retry);
  article.append(notice);
}

async function send(userText) {
  // A declined turn can be asked of the device only while it is the last one.
  log.querySelectorAll(".notice").forEach((notice) => notice.remove());
  conversation.push({ role: "user", content: userText });
  addMessage("user").textContent = userText;
  await answerWith(addMessage("assistant"), targetModel());
}

// Streams the answer to the conversation into text, from the model named (the
// device's or an upstream's), asking for consent when the server does.
async function answerWith(text, model) {
  const article = text.parentElement;
  article.setAttribute("aria-busy", "true"); // screen readers wait for the whole answer
  scrollToEnd();

  const chat = chatNumber;
  const controller = new AbortController();
  setRunning(controller);
  const system = $("system").value.trim();
  const request = {
    model,
    messages: system ? [{ role: "system", content: system }, ...conversation] : conversation,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value) || 256,
    temperature: Number($("temperature").value),
  };
  const answer = newAnswer();
  let stopped = false, declined = false;
  try {
    for (;;) {
      answer.start = performance.now(); // the time the user took to agree does not count
      const response = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal,
      });
      if (response.ok) {
        await readEvents(response.body, (chunk) => onChunk(answer, chunk, text));
        break;
      }
      if (response.status === 401) askForKey("The server asks for a key.");
      const error = await errorBody(response);
      if (!error.consent) {
        answer.error = error.message;
        break;
      }
      rememberUpstream(error.consent.upstream);
      if (!(await askConsent(error.consent))) {
        declined = true;
        break;
      }
      // The same request with the token: the server redacts it to the same
      // text, which is what the token agrees to (another text is asked again).
      request.pocketlm = { consent: error.consent.token };
    }
  } catch (error) {
    if (error.name === "AbortError") stopped = true; // the server sees the connection close and frees the slot
    else answer.error = "The connection failed: " + error.message;
  }
  setRunning(null);
  article.removeAttribute("aria-busy");
  if (chat !== chatNumber) return; // "New chat" cleared the page meanwhile
  if (answer.routing) rememberUpstream(answer.routing.route);
  if (declined) {
    const userMessage = conversation.pop(); // unanswered: not in the conversation sent next time
    showNotSent(article, text, userMessage);
    $("status").textContent = "Not sent.";
    return;
  }
  if (answer.error) article.append(element("p", "error", answer.error));
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
  // In the consent dialog, Escape is "Don't send" (the dialog's own cancel).
  if (event.key === "Escape" && running && !$("consent").open) running.abort();
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

showUpstreams();
loadModel();
input.focus();
