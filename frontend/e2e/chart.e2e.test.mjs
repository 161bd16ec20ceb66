// End-to-end test of the candle chart across a restart of ttpulse: the real stack (ttpulse with
// its simulator at 200 events/s, `next start`, nginx from deploy/nginx.conf) and Chromium through
// playwright-core, as in dashboard.e2e.test.mjs. The page stays open while ttpulse is stopped
// and started again (same port, same data dir, so its state is restored), with nginx down
// meanwhile so that the page gets back on the feed only seconds after ttpulse trades again; then
// every 1 s bucket that GET /api/candles has for the charted symbol in the chart's window must be
// on the chart, with the same OHLC and volume. Run by scripts/frontend-e2e.sh
// (node --test ... e2e/).
//
// The page is opened with `?debug`, which makes the chart publish `window.__ttpulseChart`
// (components/CandleChart.tsx): the bars the chart holds, and how many /api/candles requests it
// made. Artifacts (logs, screenshots) go to frontend/test-results/ (chart-*.log and chart-*.png).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  ARTIFACTS,
  getJson,
  launchBrowser,
  newStack,
  sleep,
  startNext,
  startNginx,
  startTtpulse,
  stopProcess,
  tearDown,
  waitFor,
} from "./stack.mjs";

const LOGS = { ttpulse: "chart-ttpulse.log", next: "chart-next.log", nginx: "chart-nginx.log" };

let stack; // this run's folders, ports and URLs (newStack)
let work;
let api;
let site;
let ttpulse;
let browser;
let page;
let nginx;
const pageErrors = [];

/** ttpulse with its simulator at 200 events/s; started again, it restores its state. */
const ttpulseUp = () => startTtpulse(stack, { logFile: path.join(ARTIFACTS, LOGS.ttpulse) });
/** nginx (deploy/nginx.conf on the test's ports); started again with the same config and port. */
const nginxUp = () => startNginx(stack, { logFile: path.join(ARTIFACTS, LOGS.nginx) });

const connState = () => page.evaluate(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state"));
const chartStatus = () => page.evaluate(() => document.querySelector(".chart-status")?.textContent ?? null);
/** Waits (polling from node) until the connection badge says `state`. */
const waitConn = (state, timeoutMs) => waitFor(`the page to be ${state}`, async () => (await connState()) === state, { timeoutMs, everyMs: 100 });
const chartInfo = () =>
  page.evaluate(() => {
    const c = window.__ttpulseChart;
    return c ? { symbol: c.symbol, interval: c.interval, series: c.series, fetches: c.fetches(), pending: c.pending(), bars: c.bars() } : null;
  });

/** The stored 1 s candles of `symbol` from `sinceSec` on, as the chart would hold them. */
async function apiBars(symbol, sinceSec) {
  const rows = await getJson(`${api}/api/candles?symbol=${encodeURIComponent(symbol)}&interval=1s&since=${sinceSec * 1_000_000}&limit=5000`);
  assert.ok(rows.length < 5000, "one page holds the window");
  return rows.map((r) => ({
    time: Math.floor(r.start / 1_000_000),
    open: parseFloat(r.open),
    high: parseFloat(r.high),
    low: parseFloat(r.low),
    close: parseFloat(r.close),
    volume: r.volume,
  }));
}

/**
 * Compares the chart with /api/candles once. The chart is read first, then the API; buckets at
 * or after the chart's newest bar are left out (that bucket may still be changing, and the
 * database may not hold it yet). Returns the list of differences (empty when they agree).
 */
async function compareOnce(symbol) {
  const chart = await chartInfo();
  assert.ok(chart && chart.bars.length > 0, "the chart holds bars");
  const bars = chart.bars;
  const first = bars[0].time;
  const newest = bars[bars.length - 1].time;
  const stored = (await apiBars(symbol, first)).filter((b) => b.time < newest);
  const onChart = new Map(bars.map((b) => [b.time, b]));
  const inApi = new Set(stored.map((b) => b.time));
  const diffs = [];
  for (const want of stored) {
    const got = onChart.get(want.time);
    if (!got) diffs.push(`bucket ${want.time}: missing from the chart (API ${JSON.stringify(want)})`);
    else if (JSON.stringify(got) !== JSON.stringify(want)) diffs.push(`bucket ${want.time}: chart ${JSON.stringify(got)} ≠ API ${JSON.stringify(want)}`);
  }
  for (const b of bars) {
    if (b.time < newest && !inApi.has(b.time)) diffs.push(`bucket ${b.time}: on the chart but not in the API`);
  }
  return { diffs, chart, stored };
}

/** Polls until the chart agrees with the API (a refetch may be on its way), else fails listing the differences. */
async function assertChartMatchesApi(symbol, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await compareOnce(symbol);
    if (last.diffs.length === 0) return last;
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  assert.fail(`${what}: the chart differs from /api/candles in ${last.diffs.length} bucket(s):\n${last.diffs.slice(0, 20).join("\n")}`);
}

before(async () => {
  for (const f of Object.values(LOGS)) fs.rmSync(path.join(ARTIFACTS, f), { force: true });
  stack = await newStack("ttpulse-chart-e2e-");
  ({ work, api, site } = stack);
  ttpulse = await ttpulseUp();
  await startNext(stack, { logFile: path.join(ARTIFACTS, LOGS.next) });
  nginx = await nginxUp();
  browser = await launchBrowser(stack, chromium);
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));
}, { timeout: 150000 });

after(async () => {
  // What the page showed at the end (kept for a failing run).
  if (page) {
    await page.screenshot({ path: path.join(ARTIFACTS, "chart-end.png") }).catch(() => {});
    const html = await page.content().catch(() => "");
    fs.writeFileSync(path.join(ARTIFACTS, "chart-end.html"), html);
  }
  await tearDown(browser, work);
}, { timeout: 60000 });

describe("candle chart across a ttpulse restart (ttpulse + next start + nginx + chromium)", () => {
  let symbol;

  test("the chart shows the stored history and the live candles", async () => {
    await page.goto(`${site}/?debug`, { waitUntil: "domcontentloaded" });
    await waitConn("live", 10000);
    await waitFor("5 bars on the chart", async () => ((await chartInfo())?.bars.length ?? 0) >= 5, { timeoutMs: 20000 });
    const info = await chartInfo();
    symbol = info.symbol;
    assert.equal(info.interval, "1s", "the chart starts on 1 s candles");
    assert.equal(symbol, await page.evaluate(() => document.querySelector("[data-testid=chart-symbol]")?.textContent));
    await sleep(3000); // live updates on top of the history
    const { stored } = await assertChartMatchesApi(symbol, "before the restart");
    assert.ok(stored.length >= 5, `the API has buckets to compare (${stored.length})`);
  });

  test("after ttpulse is stopped and started again, no bucket is missing or stale on the chart", async () => {
    assert.ok(symbol, "the first test found the charted symbol");
    const before = await chartInfo();
    await stopProcess(ttpulse, { graceMs: 10000 });
    const stoppedAt = Math.floor(Date.now() / 1000);
    await waitConn("disconnected", 10000);
    // The chart keeps its bars while the feed is down (nothing is cleared, no "Loading").
    assert.ok((await chartInfo()).bars.length >= before.bars.length, "the bars stay on the chart while disconnected");
    assert.equal(await chartStatus(), null, "no chart status (Loading, error) while disconnected");

    // nginx goes down too, and ttpulse comes back while it is down: the page cannot reconnect,
    // and the simulator's trades of those seconds reach the page only if it reads
    // /api/candles again once it is back on the feed.
    await stopProcess(nginx);
    ttpulse = await ttpulseUp(); // same port, same data dir: the state is restored
    const restartedAt = Math.floor(Date.now() / 1000);
    await waitFor(
      `trades of ${symbol} after the restart`,
      async () => (await apiBars(symbol, restartedAt + 1)).length >= 2,
      { timeoutMs: 20000, everyMs: 250 },
    );
    const missedFrom = restartedAt + 1;
    const missedTo = Math.floor(Date.now() / 1000) - 1; // buckets closed before the page could connect
    assert.equal(await connState(), "disconnected", "the page is off the feed while nginx is down");
    nginx = await nginxUp(); // same port, same config
    await waitConn("live", 20000);
    const missed = (await apiBars(symbol, missedFrom)).filter((b) => b.time <= missedTo);
    assert.ok(missed.length >= 1, `buckets of ${symbol} were stored while the page was off the feed (${missedFrom}..${missedTo})`);

    // The resync made the chart read /api/candles again, and it now agrees with it everywhere:
    // before the stop, the outage (no trades, no buckets), and while the page was off the feed.
    const { chart } = await assertChartMatchesApi(symbol, "after the restart");
    // ...by itself: the same series (not a new one from a remount or a symbol flip, which would
    // start from a fresh history read), which read /api/candles again after the reconnect.
    assert.equal(chart.series, before.series, "the chart kept its series across the restart (no reset)");
    assert.ok(chart.fetches > before.fetches, `the chart refetched after the reconnect (${before.fetches} → ${chart.fetches})`);
    const times = new Set(chart.bars.map((b) => b.time));
    for (const b of missed) assert.ok(times.has(b.time), `bucket ${b.time} (written while the page was off the feed) is on the chart`);
    assert.ok(chart.bars[0].time <= before.bars[0].time, "the bars from before the stop are still on the chart");
    assert.ok(chart.bars.some((b) => b.time < stoppedAt) && chart.bars.some((b) => b.time > restartedAt), "bars on both sides of the outage");
    assert.equal(await chartStatus(), null, "no chart status (Loading, error) after the reconnect");
    assert.equal(await connState(), "live");

    // Live updates go on after the refetch, and the chart stays in agreement.
    const newest = chart.bars[chart.bars.length - 1].time;
    await waitFor("a newer bar", async () => (await chartInfo()).bars.at(-1).time > newest, { timeoutMs: 10000 });
    await assertChartMatchesApi(symbol, "after more live updates");
    await page.screenshot({ path: path.join(ARTIFACTS, "chart-after-restart.png") });
  });

  test("no uncaught errors in the page", () => {
    assert.deepEqual(pageErrors, []);
  });
});
