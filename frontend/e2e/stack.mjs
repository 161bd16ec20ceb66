// Test harness for the end-to-end test: starts the real stack on free loopback ports (ttpulse,
// `next start`, nginx with deploy/nginx.conf), bounds every wait, and stops every process it
// started, even when a test fails or the runner is interrupted.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const FRONTEND = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(FRONTEND, "..");
/** What the tests run: the ttpulse binary (debug unless TTPULSE_BIN says), Chromium, Next. */
export const TTPULSE_BIN = path.resolve(ROOT, process.env.TTPULSE_BIN || "target/debug/ttpulse");
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const NEXT_BIN = path.join(FRONTEND, "node_modules/next/dist/bin/next");
/** Logs and screenshots of the end-to-end tests. */
export const ARTIFACTS = path.join(FRONTEND, "test-results");

const started = new Set();

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns a truthy value; throws with `what` after `timeoutMs`, or at once
 * when `failIf` returns a message (e.g. the process being waited for has exited).
 */
export async function waitFor(what, fn, { timeoutMs = 10000, everyMs = 100, failIf } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    const fatal = failIf?.();
    if (fatal) throw new Error(`while waiting for ${what}: ${fatal}`);
    try {
      const value = await fn();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ""}`);
}

/** fetch with a timeout. */
export async function get(url, { timeoutMs = 5000, ...init } = {}) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
}

export async function getJson(url, opts) {
  const res = await get(url, opts);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/**
 * Starts a process in its own process group, its output appended to `logFile`. Returns
 * { child, pid, name, exited (promise of the exit code), output() }.
 */
export function startProcess(name, command, args, { cwd, env, logFile }) {
  const log = fs.openSync(logFile, "a");
  fs.writeSync(log, `\n=== ${new Date().toISOString()} ${command} ${args.join(" ")}\n`);
  const child = spawn(command, args, { cwd, env, detached: true, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  const proc = {
    name,
    child,
    pid: child.pid,
    exitCode: undefined,
    exited: new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        proc.exitCode = code ?? signal;
        started.delete(proc);
        resolve(code ?? signal);
      });
      child.on("error", (e) => {
        proc.exitCode = `spawn error: ${e.message}`;
        started.delete(proc);
        resolve(proc.exitCode);
      });
    }),
    output: () => fs.readFileSync(logFile, "utf8"),
  };
  started.add(proc);
  return proc;
}

function signalGroup(proc, signal) {
  try {
    process.kill(-proc.pid, signal);
  } catch {
    try {
      process.kill(proc.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopProcess(proc, { graceMs = 5000, signal = "SIGTERM" } = {}) {
  if (!proc || proc.exitCode !== undefined) return proc?.exitCode;
  signalGroup(proc, signal);
  const timer = sleep(graceMs).then(() => "timeout");
  if ((await Promise.race([proc.exited, timer])) === "timeout") {
    signalGroup(proc, "SIGKILL");
    await Promise.race([proc.exited, sleep(5000)]);
  }
  return proc.exitCode;
}

/**
 * A test file's teardown: closes the browser (bounded), stops every process, and removes the
 * run's temp dir unless E2E_KEEP_TMP is set.
 */
export async function tearDown(browser, work) {
  try {
    if (browser) await Promise.race([browser.close(), sleep(10000)]);
  } finally {
    await stopAll();
    if (work && !process.env.E2E_KEEP_TMP) fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Stops everything still running (in reverse start order). */
export async function stopAll() {
  for (const proc of [...started].reverse()) await stopProcess(proc);
}

// Last resort: a runner that exits or is interrupted still kills what it started.
function killAllNow() {
  for (const proc of started) signalGroup(proc, "SIGKILL");
}
process.on("exit", killAllNow);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    killAllNow();
    process.exit(130);
  });
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * The nginx config of the test: deploy/nginx.conf itself (its upstream ports, listen address and
 * access log file substituted; the log keeps its format) inside a main context that keeps everything in `prefix` and runs in the
 * foreground.
 */
export function nginxConfig({ prefix, listenPort, nextPort, apiPort, adminPort }) {
  const site = fs.readFileSync(path.join(ROOT, "deploy/nginx.conf"), "utf8");
  const substitutions = [
    [/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${listenPort};`],
    [/^(\s*)server 127\.0\.0\.1:3000;$/m, `$1server 127.0.0.1:${nextPort};`],
    [/^(\s*)server 127\.0\.0\.1:8080;$/m, `$1server 127.0.0.1:${apiPort};`],
    [/^(\s*)server 127\.0\.0\.1:9464;$/m, `$1server 127.0.0.1:${adminPort};`],
    [/^(\s*)access_log \S+ ttpulse_edge;$/m, `$1access_log ${path.join(prefix, "logs/access.log")} ttpulse_edge;`],
  ];
  let body = site;
  for (const [re, to] of substitutions) {
    const global = new RegExp(re.source, "gm");
    const count = (site.match(global) ?? []).length;
    if (count !== 1) throw new Error(`deploy/nginx.conf: expected exactly one line matching ${re}, found ${count}`);
    body = body.replace(re, to);
  }
  const p = (name) => path.join(prefix, name);
  for (const d of ["logs", "tmp"]) fs.mkdirSync(p(d), { recursive: true });
  return `# generated by frontend/e2e/stack.mjs from deploy/nginx.conf
daemon off;
master_process on;
worker_processes 1;
pid ${p("nginx.pid")};
error_log ${p("logs/error.log")} info;
events { worker_connections 512; }
http {
    access_log ${p("logs/access.log")};
    client_body_temp_path ${p("tmp/client_body")};
    proxy_temp_path ${p("tmp/proxy")};
    fastcgi_temp_path ${p("tmp/fastcgi")};
    uwsgi_temp_path ${p("tmp/uwsgi")};
    scgi_temp_path ${p("tmp/scgi")};
${body}
}
`;
}

/** Which nginx binary to run. */
export function nginxBinary() {
  for (const candidate of [process.env.NGINX_BIN, "/usr/sbin/nginx", "/usr/bin/nginx"]) {
    if (candidate && fs.existsSync(candidate)) return candidate;
  }
  const which = spawnSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" });
  if (which.status === 0) return which.stdout.trim();
  throw new Error("nginx is not installed (scripts/frontend-e2e.sh installs it)");
}

/**
 * Flags for Debian's Chromium here: headless as root, and nothing that reaches the network
 * (this machine's closed network refuses background connections).
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The environment without variables that would change how ttpulse runs. */
export function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("TTPULSE_") || k.startsWith("RUST_LOG")) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

// ---- the stack of the dashboard's end-to-end tests and benchmark ----------------------------

export const tail = (text, n = 30) => text.split("\n").slice(-n).join("\n");

/** For `waitFor`'s `failIf`: a message once `proc` has exited, with the end of its output. */
export const exitedMessage = (proc) => () =>
  proc.exitCode !== undefined ? `${proc.name} exited (${proc.exitCode}):\n${tail(proc.output())}` : null;

/**
 * A fresh stack's temp folder, ttpulse data folder, free ports and URLs: `api` (ttpulse),
 * `admin` (its admin listener), `next` and `site` (nginx). Checks first that what the tests
 * run is there.
 */
export async function newStack(prefix) {
  for (const [what, file, fix] of [
    ["ttpulse binary", TTPULSE_BIN, "cargo build --bin ttpulse, or set TTPULSE_BIN"],
    ["Chromium", CHROMIUM, "apt-get install chromium"],
    ["built dashboard", path.join(FRONTEND, ".next/BUILD_ID"), "scripts/frontend-build.sh"],
  ]) {
    if (!fs.existsSync(file)) throw new Error(`no ${what} at ${file} (${fix})`);
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const work = tempDir(prefix);
  const dataDir = path.join(work, "data");
  fs.mkdirSync(dataDir);
  const ports = {};
  for (const name of ["api", "admin", "next", "nginx"]) ports[name] = await freePort();
  const url = (port) => `http://127.0.0.1:${port}`;
  return { work, dataDir, ports, api: url(ports.api), admin: url(ports.admin), next: url(ports.next), site: url(ports.nginx) };
}

/**
 * ttpulse (`run`, embedded) on the stack's ports and data folder, the simulator at `rate`
 * events/s; waits for its health and, with `quotes`, for that many instruments with quotes.
 * Started again on the same stack, it restores its state.
 */
export async function startTtpulse(stack, { logFile, rate = 200, quotes = 0, bin = TTPULSE_BIN, rustLog = "info" }) {
  const proc = startProcess("ttpulse", bin, ["run"], {
    cwd: stack.work, // no stray .env is picked up from here
    env: cleanEnv({
      TTPULSE_HTTP_ADDR: `127.0.0.1:${stack.ports.api}`,
      TTPULSE_ADMIN_ADDR: `127.0.0.1:${stack.ports.admin}`,
      TTPULSE_DATA_DIR: stack.dataDir,
      TTPULSE_SIM_RATE: String(rate),
      RUST_LOG: rustLog,
    }),
    logFile,
  });
  await waitFor("ttpulse to answer /admin/health", async () => (await get(`${stack.admin}/admin/health`, { timeoutMs: 1000 })).ok, {
    timeoutMs: 30000,
    failIf: exitedMessage(proc),
  });
  if (quotes > 0) {
    await waitFor(
      `${quotes} instruments with quotes`,
      async () => (await getJson(`${stack.api}/api/snapshot`)).instruments.filter((s) => s.bid != null).length >= quotes,
      { timeoutMs: 15000, failIf: exitedMessage(proc) },
    );
  }
  return proc;
}

/** The built dashboard (`next start`) reading the stack's ttpulse. */
export async function startNext(stack, { logFile }) {
  const proc = startProcess("next", process.execPath, [NEXT_BIN, "start", "-H", "127.0.0.1", "-p", String(stack.ports.next)], {
    cwd: FRONTEND,
    env: cleanEnv({ NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production", TTPULSE_API_URL: stack.api, TTPULSE_ADMIN_URL: stack.admin }),
    logFile,
  });
  await waitFor("next start", async () => (await get(`${stack.next}/ops`, { timeoutMs: 2000 })).ok, {
    timeoutMs: 30000,
    failIf: exitedMessage(proc),
  });
  return proc;
}

/**
 * nginx with deploy/nginx.conf on the stack's ports (the config is written once, so a restart
 * reuses it); `copyConfigTo` keeps a copy of the generated config.
 */
export async function startNginx(stack, { logFile, copyConfigTo }) {
  const prefix = path.join(stack.work, "nginx");
  const conf = path.join(prefix, "nginx.conf");
  if (!fs.existsSync(conf)) {
    fs.mkdirSync(prefix, { recursive: true });
    const { ports } = stack;
    fs.writeFileSync(conf, nginxConfig({ prefix, listenPort: ports.nginx, nextPort: ports.next, apiPort: ports.api, adminPort: ports.admin }));
  }
  if (copyConfigTo) fs.copyFileSync(conf, copyConfigTo);
  const errorLog = path.join(prefix, "logs/error.log");
  const proc = startProcess("nginx", nginxBinary(), ["-p", prefix, "-c", conf, "-e", errorLog], { cwd: prefix, env: process.env, logFile });
  await waitFor("nginx", async () => (await get(`${stack.site}/api/instruments`, { timeoutMs: 2000 })).ok, {
    timeoutMs: 15000,
    failIf: () => {
      const m = exitedMessage(proc)();
      return m && `${m}\n${fs.existsSync(errorLog) ? tail(fs.readFileSync(errorLog, "utf8")) : ""}`;
    },
  });
  return proc;
}

/** Headless Chromium (a persistent profile in the stack's folder) at 1440×900. */
export async function launchBrowser(stack, chromium) {
  const browser = await chromium.launchPersistentContext(path.join(stack.work, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    timeout: 30000,
    args: CHROMIUM_ARGS,
  });
  browser.setDefaultTimeout(10000);
  return browser;
}
