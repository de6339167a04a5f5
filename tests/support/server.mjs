// Starting and watching a real `pocketlm serve` process, shared by the node
// tests (tests/web/chat.test.mjs, tests/openai_client/client.test.mjs).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

// Starts `PLM serve --port 0 ARGS`; resolves with {url, process} once it listens.
export function startServer(plm, args) {
  const server = spawn(plm, ["serve", "--port", "0", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: server.stdout });
    lines.on("line", (line) => {
      const match = /^listening on (http:\/\/\S+)$/.exec(line);
      if (match) resolve({ url: match[1], process: server });
    });
    server.on("exit", (code) => reject(new Error(`pocketlm serve exited with ${code} before listening`)));
  });
}

// Sends SIGTERM; resolves with the exit code.
export function stopServer(server) {
  return new Promise((resolve) => {
    server.process.removeAllListeners("exit");
    server.process.on("exit", (code) => resolve(code));
    server.process.kill("SIGTERM");
  });
}

// A metric's value from /metrics (Prometheus text), or NaN.
export async function metric(server, name) {
  const text = await (await fetch(server.url + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}

// Polls until the metric has the value (up to 30 s); true if it did.
export async function waitForMetric(server, name, value) {
  for (let i = 0; i < 300; i++) {
    if ((await metric(server, name)) === value) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
