// The chat page of `pocketlm serve`, end to end in headless Chromium (driven by
// playwright-core): the page loads under its Content-Security-Policy, asks for
// the API key, streams an answer from a real model progressively, shows its
// details and where it ran, keeps the conversation, renders text as text, and
// its Stop button frees the server's slot. The consent flow runs against two
// real servers: the page's, with a policy whose upstream "home" (a second
// `pocketlm serve`) has consent "ask", shows the redacted text in a dialog;
// Send streams the upstream's answer, Don't send sends nothing (the audit log
// and the upstream's request counter say so), and an upstream that is down
// leaves the answer to the device, flagged fallback. Run by
// tests/cli/web_chat.sh, which prepares the models; plain node, no test
// framework.
//
// Environment: PLM (the pocketlm program), MODEL (a real chat-able model),
// SLOW_MODEL (a slow random-weight model, for an answer long enough to stop),
// WORK (a directory for the policy and the audit log), ARTIFACTS (where
// chat.png and consent.png go), CHROMIUM (default /usr/bin/chromium).
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { metric, startServer, stopServer as stopServerProcess, waitForMetric } from "../support/server.mjs";

const env = (name, fallback) => {
  const value = process.env[name] || fallback;
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

let checks = 0, failures = 0;
function check(ok, what, detail = "") {
  if (ok) checks++;
  else {
    failures++;
    console.log(`FAIL: ${what}${detail ? ": " + detail : ""}`);
  }
}

// SIGTERM; the server must exit 0.
async function stopServer(server, what) {
  const code = await stopServerProcess(server);
  check(code === 0, `${what}: exit 0 after SIGTERM`, `exit ${code}`);
}

// Counts the DOM updates of the newest answer: each MutationObserver callback
// (one per task that changed it) records the answer's length then.
function watchAnswers(page) {
  return page.evaluate(() => {
    window.answerLengths = [];
    new MutationObserver(() => {
      const texts = document.querySelectorAll(".message.assistant .text");
      if (texts.length) window.answerLengths.push(texts[texts.length - 1].textContent.length);
    }).observe(document.getElementById("log"), { childList: true, subtree: true, characterData: true });
  });
}

async function setSettings(page, maxTokens, temperature) {
  await page.locator(".settings summary").click();
  await page.locator("#max-tokens").fill(String(maxTokens));
  await page.locator("#temperature").fill(String(temperature));
}

// The tiny model writes a whole answer in a fraction of a second, which could
// reach the page in one piece; a slow link (DevTools' network throttling)
// spreads its arrival, so that streaming is seen whatever the machine's speed.
async function throttle(page, bytesPerSecond) {
  const devtools = await page.context().newCDPSession(page);
  await devtools.send("Network.enable");
  await devtools.send("Network.emulateNetworkConditions",
                      { offline: false, latency: 0, downloadThroughput: bytesPerSecond, uploadThroughput: -1 });
}

async function sendMessage(page, text) {
  await page.locator("#input").pressSequentially(text);
  await page.locator("#input").press("Enter");
}

// The server has --api-key: the page asks for it, then shows the model's name.
async function enterKey(page) {
  await page.locator("#key-form").waitFor({ state: "visible" });
  await page.locator("#key").fill("sekret");
  await page.locator("#key").press("Enter");
  await page.locator("#model").filter({ hasText: "ts.gguf" }).waitFor();
}

// The chat requests the page makes, as sent.
function recordRequests(page) {
  const requests = [];
  page.on("request", (r) => r.url().endsWith("/v1/chat/completions") && requests.push(JSON.parse(r.postData())));
  return requests;
}

// The chat completions a server has answered, whatever their status.
async function chatRequestsAnswered(server) {
  const text = await (await fetch(server.url + "/metrics")).text();
  return text.split("\n").filter((l) => l.startsWith('pocketlm_requests_total{route="/v1/chat/completions"'))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

// The requests the audit log recorded as sent off the device, with their bodies.
function auditedRequests(plm, auditFile) {
  const run = spawnSync(plm, ["audit", "export", "--audit", auditFile], { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`pocketlm audit export: ${run.stderr}`);
  return run.stdout.trim().split("\n").slice(1).map((line) => JSON.parse(line)).filter((e) => e.kind === "request")
    .map((e) => ({ ...e, body: Buffer.from(e.body_hex, "hex").toString("utf8") }));
}

// ------------------------------------------------------------------ the test

async function testChat(browser, server, artifacts) {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  const requests = recordRequests(page);

  const response = await page.goto(server.url + "/");
  const headers = response.headers();
  check(response.status() === 200, "GET / is 200", String(response.status()));
  check(headers["content-type"] === "text/html; charset=utf-8", "the page is HTML", headers["content-type"]);
  check(/default-src 'none'/.test(headers["content-security-policy"] || ""), "the page has a CSP forbidding other origins");

  await enterKey(page);
  check(await page.locator("#key-form").isHidden(), "the key form goes away once the key works");

  // Shift+Enter is a new line, not a send.
  await page.locator("#input").pressSequentially("line one");
  await page.locator("#input").press("Shift+Enter");
  check((await page.locator("#input").inputValue()) === "line one\n", "Shift+Enter adds a new line");
  check((await page.locator(".message").count()) === 0, "Shift+Enter sends nothing");
  await page.locator("#input").fill("");

  await setSettings(page, 200, 0); // greedy: the same answer every run
  await throttle(page, 16000);
  await watchAnswers(page);
  await sendMessage(page, "Tell me a story about a <b>cat</b>.");
  const details = page.locator(".message.assistant .details").first();
  await details.waitFor({ timeout: 60000 });

  const user = page.locator(".message.user .text").first();
  check((await user.textContent()) === "Tell me a story about a <b>cat</b>.", "the message is shown as typed");
  check((await page.locator(".message.user b").count()) === 0, "markup in a message is text, not HTML");

  const answer = (await page.locator(".message.assistant .text").first().textContent()) || "";
  check(answer.length > 0, "an answer appears");
  const lengths = await page.evaluate(() => window.answerLengths);
  const partial = new Set(lengths.filter((n) => n > 0 && n < answer.length));
  console.log(`answer of ${answer.length} characters in ${lengths.length} DOM updates`);
  check(partial.size >= 2, "the answer streams: at least two DOM updates before the end",
        `lengths seen ${JSON.stringify(lengths)}`);

  const line = (await details.textContent()) || "";
  const data = await details.evaluate((el) => ({ ...el.dataset }));
  check(/ts\.gguf/.test(line), "details name the model", line);
  const badge = details.locator(".badge.route");
  check((await badge.textContent()) === "device" && data.route === "device", "the badge says it ran on the device",
        line);
  check((await badge.getAttribute("title")) === "no rule fired", "the badge's title gives the reason",
        await badge.getAttribute("title"));
  check((await page.locator(".message.assistant .sent").count()) === 0, "nothing was sent off the device");
  check(/\d+ prompt tokens/.test(line) && /\d+ tokens/.test(line) && Number(data.completionTokens) > 0,
        "details show the token counts", line);
  check(/[\d.]+ tokens\/s/.test(line) && Number(data.tokensPerSecond) > 0, "details show tokens/s", line);
  check(/first token \d+ ms/.test(line), "details show the time to the first token", line);

  await page.screenshot({ path: `${artifacts}/chat.png`, fullPage: true });
  console.log(`screenshot: ${artifacts}/chat.png`);

  // A second message carries the conversation so far.
  await sendMessage(page, "And then?");
  await page.locator(".message.assistant .details").nth(1).waitFor({ timeout: 60000 });
  const second = requests[1];
  check(requests.length === 2 && second.messages.length === 3 && second.messages[1].role === "assistant" &&
        second.messages[1].content === answer && second.stream === true && second.stream_options.include_usage,
        "the second request carries the history and asks for a stream with usage", JSON.stringify(second));

  await page.locator("#new-chat").click();
  check((await page.locator(".message").count()) === 0, "New chat empties the conversation");
  check(await page.locator("#input").evaluate((el) => el === document.activeElement), "New chat puts the focus in the input");
  // The one expected error: the 401 by which the page learns that a key is needed.
  const unexpected = consoleErrors.filter((e) => !/status of 401/.test(e));
  check(unexpected.length === 0 && consoleErrors.length === 1, "no other errors in the console", consoleErrors.join(" | "));
  await page.close();
}

async function testStop(browser, server) {
  const page = await browser.newPage();
  await page.goto(server.url + "/");
  await setSettings(page, 1900, 0.8);
  await sendMessage(page, "hello");
  await page.locator(".message.assistant .text").filter({ hasText: /./ }).waitFor({ timeout: 60000 });
  check((await metric(server, "pocketlm_slots_busy")) === 1, "the long answer holds the slot");
  await page.locator("#stop").click();
  await page.locator(".message.assistant .details").waitFor();
  check(/stopped/.test(await page.locator(".message.assistant .details").textContent()), "the answer says it was stopped");
  check(await waitForMetric(server, "pocketlm_slots_busy", 0), "Stop frees the server's slot");
  // A request that ran to its end would have added its tokens.
  check((await metric(server, "pocketlm_generated_tokens_total")) === 0, "the stopped answer did not run to its end");
  check(await page.locator("#send").isEnabled(), "Send works again after Stop");
  await page.close();
}

// ----------------------------------------------------------- consent flow

const secrets = [/Alice Example/i, /alice@example\.com/i];
const hasSecret = (text) => secrets.some((s) => s.test(text));

// Sends a message naming the upstream; returns the consent_required body the
// server answered, once the dialog shows it.
async function sendToUpstream(page, text) {
  const refused = page.waitForResponse((r) => r.url().endsWith("/v1/chat/completions") && r.status() === 403);
  await sendMessage(page, text);
  const body = await (await refused).json();
  await page.locator("#consent").waitFor({ state: "visible", timeout: 30000 });
  return body;
}

// The dialog shows the messages exactly as they would be sent, where to, and
// why, and none of the redacted values.
async function checkDialog(page, body, upstream) {
  const consent = body.consent;
  const shown = await page.locator("#consent-messages li .text").allTextContents();
  check(JSON.stringify(shown) === JSON.stringify(consent.messages.map((m) => m.content)),
        "the dialog lists the messages exactly as they would be sent", JSON.stringify(shown));
  const last = shown[shown.length - 1] || "";
  check(/\[TERM_1\]/.test(last) && /\[EMAIL_1\]/.test(last), "the dialog shows placeholders", last);
  const dialogText = await page.locator("#consent").textContent();
  check(!hasSecret(dialogText), "the dialog shows neither the term nor the email", dialogText);
  const field = (id) => page.locator(id).textContent();
  check((await field("#consent-name")) === "home" && (await field("#consent-kind")) === "openai" &&
        (await field("#consent-model")) === "big" && (await field("#consent-url")) === upstream.url + "/v1",
        "the dialog names the upstream, its kind, model and address");
  check(/names an upstream/.test(await field("#consent-reason")), "the dialog says why",
        await field("#consent-reason"));
  check(/EMAIL 1/.test(await field("#consent-redactions")) && /TERM 1/.test(await field("#consent-redactions")),
        "the dialog counts the redactions", await field("#consent-redactions"));
}

async function testConsent(browser, server, upstream, auditFile, artifacts) {
  const plm = env("PLM");
  const page = await browser.newPage({ viewport: { width: 900, height: 800 } });
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  const requests = recordRequests(page);
  await page.goto(server.url + "/");
  await enterKey(page);
  await setSettings(page, 120, 0);
  await page.locator("#target").fill("home");
  await throttle(page, 16000);
  await watchAnswers(page);
  const answeredBefore = await chatRequestsAnswered(upstream);

  // Send: the dialog, then the upstream's answer streamed through the page's server.
  const body = await sendToUpstream(page, "Alice Example wrote to alice@example.com about a cat.");
  await checkDialog(page, body, upstream);
  check(auditedRequests(plm, auditFile).length === 0 && (await chatRequestsAnswered(upstream)) === answeredBefore,
        "nothing left the device while the dialog is open");
  await page.screenshot({ path: `${artifacts}/consent.png` });
  console.log(`screenshot: ${artifacts}/consent.png`);
  await page.locator("#consent-send").click();
  const details = page.locator(".message.assistant .details").first();
  await details.waitFor({ timeout: 60000 });
  check(await page.locator("#consent").isHidden(), "Send closes the dialog");
  check(requests.length === 2 && requests[1].pocketlm && requests[1].pocketlm.consent === body.consent.token &&
        JSON.stringify(requests[1].messages) === JSON.stringify(requests[0].messages) && requests[1].model === "home",
        "Send repeats the request with the consent token", JSON.stringify(requests[1]));
  const answer = (await page.locator(".message.assistant .text").first().textContent()) || "";
  const lengths = await page.evaluate(() => window.answerLengths);
  check(answer.length > 0 && new Set(lengths.filter((n) => n > 0 && n < answer.length)).size >= 2,
        "the upstream's answer streams into the page", `${answer.length} characters, lengths ${JSON.stringify(lengths)}`);
  check((await details.locator(".badge.route").textContent()) === "home" &&
        (await details.locator(".badge.fallback").count()) === 0, "the badge names the upstream",
        await details.textContent());
  const sent = page.locator(".message.assistant .sent").first();
  const sentText = (await sent.textContent()) || "";
  const sentItems = await sent.locator("li .text").allTextContents();
  check(/Sent to home/.test(sentText) && /EMAIL 1/.test(sentText) &&
        JSON.stringify(sentItems) === JSON.stringify(body.consent.messages.map((m) => m.content)) && !hasSecret(sentText),
        "the answer shows the redacted text that was sent", sentText);
  let audited = auditedRequests(plm, auditFile);
  check(audited.length === 1 && audited[0].upstream === "home" && !hasSecret(audited[0].body) &&
        JSON.stringify(JSON.parse(audited[0].body).messages) === JSON.stringify(body.consent.messages),
        "the audit log recorded one request, with the messages the dialog showed",
        JSON.stringify(audited.map((e) => e.body)));
  check((await chatRequestsAnswered(upstream)) === answeredBefore + 1, "the upstream answered one request");

  // Don't send: the turn is marked, nothing leaves.
  await sendToUpstream(page, "Alice Example asks again.");
  await page.locator("#consent-decline").click();
  const notice = page.locator(".message.assistant .notice");
  await notice.waitFor({ timeout: 10000 });
  check(/Not sent/.test(await notice.textContent()), "Don't send marks the turn not sent", await notice.textContent());
  check(requests.length === 3, "Don't send repeats nothing", `${requests.length} requests`);
  await new Promise((r) => setTimeout(r, 500)); // anything sent would have reached the upstream by now
  audited = auditedRequests(plm, auditFile);
  check(audited.length === 1 && (await chatRequestsAnswered(upstream)) === answeredBefore + 1,
        "after Don't send, nothing more reached the upstream or the audit log", `${audited.length} audited`);

  // The declined turn, asked of the device instead.
  await notice.locator("button").click();
  const deviceDetails = page.locator(".message.assistant .details").nth(1);
  await deviceDetails.waitFor({ timeout: 60000 });
  check(requests.length === 4 && /ts\.gguf/.test(requests[3].model) && requests[3].messages.length === 3,
        "'Ask this device instead' asks the served model with the declined message", JSON.stringify(requests[3]));
  check((await deviceDetails.locator(".badge.route").textContent()) === "device", "that answer ran on the device");

  // The upstream down: the device answers, flagged fallback.
  await stopServer(upstream, "upstream server");
  await sendToUpstream(page, "Is anyone there?");
  await page.locator("#consent-send").click();
  const fallback = page.locator(".message.assistant .details").nth(2);
  await fallback.waitFor({ timeout: 60000 });
  check((await fallback.locator(".badge.route").textContent()) === "device" &&
        (await fallback.locator(".badge.fallback").count()) === 1, "a failed upstream gives a device answer flagged fallback",
        await fallback.textContent());
  check(/home/.test(await fallback.locator(".badge.fallback").getAttribute("title")),
        "the fallback badge's title says how the upstream failed");
  const tried = (await page.locator(".message.assistant").nth(2).locator(".sent summary").textContent()) || "";
  check(/upstream failed/.test(tried), "the fallback answer shows what was sent before the upstream failed", tried);

  // The expected errors: the 401 by which the page learns that a key is needed, the 403s asking consent.
  const unexpected = consoleErrors.filter((e) => !/status of 40[13]/.test(e));
  check(unexpected.length === 0, "no other errors in the console", unexpected.join(" | "));
  await page.close();
}

// The page's server escalates to "home", a second server on the same model.
async function startServers(work) {
  const plm = env("PLM"), model = env("MODEL");
  const upstream = await startServer(plm, ["-m", model, "--chat-template", "chatml", "-t", "1", "--alias", "big"]);
  const policy = {
    upstreams: [{ name: "home", kind: "openai", base_url: upstream.url + "/v1", model: "big", consent: "ask",
                  max_retries: 0 }],
    rules: [{ when: "explicit" }],
    redaction: { terms: ["Alice Example"] },
  };
  writeFileSync(`${work}/policy.json`, JSON.stringify(policy));
  const real = await startServer(plm, ["-m", model, "--chat-template", "chatml", "-t", "1", "--api-key", "sekret",
                                       "--policy", `${work}/policy.json`, "--audit", `${work}/audit.db`]);
  const slow = await startServer(plm, ["-m", env("SLOW_MODEL"), "--chat-template", "chatml", "-t", "1", "-c", "2048"]);
  return { upstream, real, slow };
}

const artifacts = env("ARTIFACTS", "build/artifacts");
mkdirSync(artifacts, { recursive: true });
const work = env("WORK");
const { upstream, real, slow } = await startServers(work);
// The sandbox needs privileges a container lacks; this browser only ever loads our loopback page.
const browser = await chromium.launch({ executablePath: env("CHROMIUM", "/usr/bin/chromium"), args: ["--no-sandbox"] });
try {
  await testChat(browser, real, artifacts);
  await testConsent(browser, real, upstream, `${work}/audit.db`, artifacts);
  await testStop(browser, slow);
} catch (error) {
  check(false, "the browser test ran to its end", error.stack);
} finally {
  await browser.close();
  if (upstream.process.exitCode === null) await stopServer(upstream, "upstream server");
  await stopServer(real, "real-model server");
  await stopServer(slow, "slow-model server");
}
console.log(`${checks} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
