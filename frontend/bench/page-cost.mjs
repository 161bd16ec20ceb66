// What the dashboard costs the browser to keep open: for each simulator rate, ttpulse (embedded)
// and the built dashboard (`next start`, which also proxies /ws) run on free loopback ports, a
// headless Chromium opens the page, and after a warm-up DevTools' Performance.getMetrics is
// read at the start and the end of a window: main-thread busy = Δ TaskDuration / wall time,
// plus layouts, style recalculations and script time per second. The goal (issue "The
// dashboard a trader works in"): busy under 25% at 200 events/s and under 50% at 2,000. Rate 0
// is the quiet baseline: ttpulse restarted without the simulator, its state restored from the
// data folder the earlier rates filled (so the page shows the same instruments, unchanging).
//
//   node frontend/bench/page-cost.mjs [--rates 200,2000,0] [--seconds 10] [--warmup 5]
//                                     [--out bench/results/page-cost.json]
// Environment: TTPULSE_BIN (default target/release/ttpulse), CHROMIUM_BIN (/usr/bin/chromium).
// A benchmark, not a test: it reports; `make bench-page` runs it. Shared machines are noisy:
// compare rows of one run.

import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import {
  CHROMIUM,
  CHROMIUM_ARGS,
  FRONTEND,
  NEXT_BIN,
  ROOT,
  cleanEnv,
  freePort,
  get,
  getJson,
  sleep,
  startProcess,
  stopAll,
  stopProcess,
  tempDir,
  waitFor,
} from "../e2e/stack.mjs";

const { values: args } = parseArgs({
  options: {
    rates: { type: "string", default: "200,2000,0" },
    // Also measure each rate with the page repainting on every frame (`?repaint=frame`, what
    // the dashboard did before it capped its repaints at 5 a second), side by side.
    compare: { type: "boolean", default: true },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "5" },
    out: { type: "string", default: "bench/results/page-cost.json" },
  },
});
const RATES = args.rates.split(",").map(Number);
const WINDOW_S = Number(args.seconds);
const WARMUP_S = Number(args.warmup);
const TTPULSE_BIN = path.resolve(ROOT, process.env.TTPULSE_BIN || "target/release/ttpulse");

for (const [what, file, fix] of [
  ["ttpulse", TTPULSE_BIN, "make bench-page builds it"],
  ["Chromium", CHROMIUM, "apt-get install chromium; make test installs it too"],
  ["the built dashboard", path.join(FRONTEND, ".next/BUILD_ID"), "make bench-page builds it"],
]) {
  if (!fs.existsSync(file)) {
    console.error(`page-cost: ${what} is missing at ${file} (${fix})`);
    process.exit(2);
  }
}

const work = tempDir("ttpulse-page-cost-");
const ports = { api: await freePort(), admin: await freePort(), next: await freePort() };
const api = `http://127.0.0.1:${ports.api}`;

async function startTtpulse(rate) {
  const dataDir = path.join(work, "data");
  fs.mkdirSync(dataDir, { recursive: true });
  const proc = startProcess("ttpulse", TTPULSE_BIN, ["run"], {
    cwd: work,
    env: cleanEnv({
      TTPULSE_HTTP_ADDR: `127.0.0.1:${ports.api}`,
      TTPULSE_ADMIN_ADDR: `127.0.0.1:${ports.admin}`,
      TTPULSE_DATA_DIR: dataDir,
      TTPULSE_SIM_RATE: String(rate),
      RUST_LOG: "warn",
    }),
    logFile: path.join(work, `ttpulse-${rate}.log`),
  });
  await waitFor("ttpulse", async () => (await get(`http://127.0.0.1:${ports.admin}/admin/health`, { timeoutMs: 1000 })).ok, {
    timeoutMs: 30000,
  });
  await waitFor("instruments with quotes", async () => (await getJson(`${api}/api/snapshot`)).instruments.length >= 3, {
    timeoutMs: 15000,
  });
  return proc;
}

function metric(list, name) {
  return list.metrics.find((m) => m.name === name)?.value ?? 0;
}

const next = startProcess("next", process.execPath, [NEXT_BIN, "start", "-H", "127.0.0.1", "-p", String(ports.next)], {
  cwd: FRONTEND,
  env: cleanEnv({
    NEXT_TELEMETRY_DISABLED: "1",
    NODE_ENV: "production",
    TTPULSE_API_URL: api,
    TTPULSE_ADMIN_URL: `http://127.0.0.1:${ports.admin}`,
  }),
  logFile: path.join(work, "next.log"),
});
const rows = [];
let browser;
try {
  await waitFor("next start", async () => (await get(`http://127.0.0.1:${ports.next}/ops`, { timeoutMs: 2000 })).status < 500, {
    timeoutMs: 30000,
  });
  browser = await chromium.launchPersistentContext(path.join(work, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: CHROMIUM_ARGS,
  });
  for (const rate of RATES) {
    const ttpulse = await startTtpulse(rate);
    for (const repaint of args.compare ? ["capped", "frame"] : ["capped"]) {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${ports.next}/${repaint === "frame" ? "?repaint=frame" : ""}`);
      await page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, {
        timeout: 20000,
      });
      await sleep(WARMUP_S * 1000);
      const cdp = await page.context().newCDPSession(page);
      await cdp.send("Performance.enable", { timeDomain: "timeTicks" });
      const t0 = Date.now();
      const before = await cdp.send("Performance.getMetrics");
      await sleep(WINDOW_S * 1000);
      const after = await cdp.send("Performance.getMetrics");
      const wall = (Date.now() - t0) / 1000;
      const delta = (name) => metric(after, name) - metric(before, name);
      const row = {
        rate,
        repaint,
        seconds: Number(wall.toFixed(1)),
        busy_pct: Number(((delta("TaskDuration") / wall) * 100).toFixed(1)),
        script_pct: Number(((delta("ScriptDuration") / wall) * 100).toFixed(1)),
        layouts_per_s: Number((delta("LayoutCount") / wall).toFixed(1)),
        style_recalcs_per_s: Number((delta("RecalcStyleCount") / wall).toFixed(1)),
        heap_mib: Number((metric(after, "JSHeapUsedSize") / 1048576).toFixed(1)),
        dom_nodes: metric(after, "Nodes"),
      };
      rows.push(row);
      console.log(JSON.stringify(row));
      await page.close();
    }
    await stopProcess(ttpulse, { graceMs: 10000 });
  }
} finally {
  await browser?.close().catch(() => {});
  await stopProcess(next).catch(() => {});
  await stopAll();
}

const header = "| simulator events/s | repaints | main thread busy | script | layouts/s | style recalcs/s | JS heap MiB | DOM nodes |";
const lines = [header, "|---:|---|---:|---:|---:|---:|---:|---:|"];
for (const r of rows) {
  const repaints = r.repaint === "frame" ? "every frame (before)" : "at most 5/s";
  lines.push(
    `| ${r.rate} | ${repaints} | ${r.busy_pct}% | ${r.script_pct}% | ${r.layouts_per_s} | ${r.style_recalcs_per_s} | ${r.heap_mib} | ${r.dom_nodes} |`,
  );
}
console.log(`\n${lines.join("\n")}\n(window ${WINDOW_S} s after ${WARMUP_S} s of warm-up, headless Chromium, 1440×900)`);
const out = path.resolve(ROOT, args.out);
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({ window_s: WINDOW_S, warmup_s: WARMUP_S, rows }, null, 2));
console.log(`written to ${path.relative(ROOT, out)}`);
fs.rmSync(work, { recursive: true, force: true });
