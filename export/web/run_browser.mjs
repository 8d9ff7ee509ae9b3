// Drives index.html in headless Chromium and prints what the page classified.
//
//   node run_browser.mjs --model-dir DIR --cases CASES.json [--out RESULT.json]
//                        [--chromium PATH] [--timeout-ms 120000]
//
// DIR holds model.onnx (and labels.txt, when there is one): an export's `onnx/` folder. The
// page, onnxruntime-web (from ./node_modules: `npm ci` here first), the model and the cases are
// served by a local HTTP server; nothing outside this machine is fetched. RESULT.json (or
// stdout) gets {"ok", "errors", "console", "status", "rows_rendered", "result"}; ok is false and
// the exit status 1 when the page logged a console error, threw, or a request failed.
import fs from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const WEB_DIR = path.dirname(fileURLToPath(import.meta.url));
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".json": "application/json", ".txt": "text/plain",
  ".onnx": "application/octet-stream", ".map": "application/json",
};

function parseArgs(argv) {
  const args = { timeoutMs: 120000, chromium: process.env.CHROMIUM || "" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag}: missing value`);
    const key = { "--model-dir": "modelDir", "--cases": "cases", "--out": "out",
                  "--chromium": "chromium", "--timeout-ms": "timeoutMs" }[flag];
    if (!key) throw new Error(`unknown flag ${flag}`);
    args[key] = key === "timeoutMs" ? Number(value) : value;
  }
  if (!args.modelDir || !args.cases) throw new Error("--model-dir and --cases are required");
  return args;
}

// URL path -> file: /model/<name> from the model folder, /cases.json, the rest from WEB_DIR.
function fileFor(urlPath, args) {
  const clean = path.posix.normalize(decodeURIComponent(urlPath));
  if (clean === "/cases.json") return path.resolve(args.cases);
  if (clean.startsWith("/model/")) return path.join(path.resolve(args.modelDir), path.basename(clean));
  const file = path.join(WEB_DIR, clean === "/" ? "index.html" : clean);
  return file.startsWith(WEB_DIR + path.sep) ? file : null;
}

function serve(args) {
  const server = http.createServer(async (request, response) => {
    const file = fileFor(new URL(request.url, "http://localhost").pathname, args);
    try {
      if (!file) throw new Error("outside the page's folder");
      const body = await fs.readFile(file);
      response.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404, { "Content-Type": "text/plain" });
      response.end("not found");
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const server = await serve(args);
  const { port } = server.address();
  const errors = [];
  const messages = [];
  const browser = await chromium.launch({
    executablePath: args.chromium || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  let report;
  try {
    const page = await browser.newPage();
    page.on("console", (message) => {
      const where = message.location()?.url ? ` (${message.location().url})` : "";
      messages.push(`${message.type()}: ${message.text()}${where}`);
      if (message.type() === "error") errors.push(`console error: ${message.text()}${where}`);
    });
    page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
    page.on("requestfailed", (request) => errors.push(`request failed: ${request.url()} (${request.failure()?.errorText})`));
    page.on("response", (response) => {
      if (response.status() >= 400) errors.push(`HTTP ${response.status()}: ${response.url()}`);
    });
    const labels = await fs.access(path.join(args.modelDir, "labels.txt")).then(() => "&labels=/model/labels.txt", () => "");
    const url = `http://127.0.0.1:${port}/index.html?model=/model/model.onnx&cases=/cases.json${labels}`;
    await page.goto(url, { waitUntil: "load", timeout: args.timeoutMs });
    await page.waitForFunction(() => window.classifierResult !== undefined, null, { timeout: args.timeoutMs });
    let result = null;
    try {
      result = await page.evaluate(() => window.classifierResult);
    } catch (error) {
      errors.push(`classification failed: ${error.message.split("\n")[0]}`);
    }
    report = {
      ok: false, errors, console: messages,
      status: await page.textContent("#status"),
      rows_rendered: await page.locator("#results tbody tr").count(),
      result,
    };
    report.ok = errors.length === 0 && result !== null;
  } finally {
    await browser.close();
    server.close();
  }
  const text = JSON.stringify(report);
  if (args.out) await fs.writeFile(args.out, text);
  else process.stdout.write(text + "\n");
  process.exitCode = report.ok ? 0 : 1;
}

main().catch((error) => {
  process.stderr.write(`run_browser.mjs: ${error.stack || error}\n`);
  process.exitCode = 2;
});
