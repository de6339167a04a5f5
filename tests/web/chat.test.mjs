// The chat page of `pocketlm serve`, end to end in headless Chromium (driven by
// playwright-core): the page loads under its Content-Security-Policy, asks for
// the API key, streams an answer from a real model progressively, shows its
// details, keeps the conversation, renders text as text, and its Stop button
// frees the server's slot. Run by tests/cli/web_chat.sh, which prepares the
// models; plain node, no test framework.
//
// Environment: PLM (the pocketlm program), MODEL (a real chat-able model),
// SLOW_MODEL (a slow random-weight model, for an answer long enough to stop),
// ARTIFACTS (where chat.png goes), CHROMIUM (default /usr/bin/chromium).
import { mkdirSync } from "node:fs";
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

// ------------------------------------------------------------------ the test

async function testChat(browser, server, artifacts) {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  const requests = [];
  page.on("request", (r) => r.url().endsWith("/v1/chat/completions") && requests.push(JSON.parse(r.postData())));

  const response = await page.goto(server.url + "/");
  const headers = response.headers();
  check(response.status() === 200, "GET / is 200", String(response.status()));
  check(headers["content-type"] === "text/html; charset=utf-8", "the page is HTML", headers["content-type"]);
  check(/default-src 'none'/.test(headers["content-security-policy"] || ""), "the page has a CSP forbidding other origins");

  // --api-key is set: the page asks for it, then shows the model's name.
  await page.locator("#key-form").waitFor({ state: "visible" });
  await page.locator("#key").fill("sekret");
  await page.locator("#key").press("Enter");
  await page.locator("#model").filter({ hasText: "ts.gguf" }).waitFor();
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
  check(/ts\.gguf/.test(line) && /on this device/.test(line), "details say where it ran", line);
  check(/\d+ prompt tokens/.test(line) && /\d+ tokens/.test(line) && Number(data.completionTokens) > 0,
        "details show the token counts", line);
  check(/[\d.]+ tokens\/s/.test(line) && Number(data.tokensPerSecond) > 0, "details show tokens/s", line);
  check(/first token \d+ ms/.test(line), "details show the time to the first token", line);

  mkdirSync(artifacts, { recursive: true });
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

const artifacts = env("ARTIFACTS", "build/artifacts");
const real = await startServer(env("PLM"), ["-m", env("MODEL"), "--chat-template", "chatml", "-t", "1", "--api-key", "sekret"]);
const slow = await startServer(env("PLM"), ["-m", env("SLOW_MODEL"), "--chat-template", "chatml", "-t", "1", "-c", "2048"]);
// The sandbox needs privileges a container lacks; this browser only ever loads our loopback page.
const browser = await chromium.launch({ executablePath: env("CHROMIUM", "/usr/bin/chromium"), args: ["--no-sandbox"] });
try {
  await testChat(browser, real, artifacts);
  await testStop(browser, slow);
} catch (error) {
  check(false, "the browser test ran to its end", error.stack);
} finally {
  await browser.close();
  await stopServer(real, "real-model server");
  await stopServer(slow, "slow-model server");
}
console.log(`${checks} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
