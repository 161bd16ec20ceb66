// End-to-end test of the dashboard on the real stack: ttpulse (embedded, simulator at 200
// events/s), the built Next.js server and nginx configured from deploy/nginx.conf, driven by
// Debian's Chromium through playwright-core. Run by scripts/frontend-e2e.sh:
//   node --test --test-concurrency=1 e2e/
// Artifacts (logs, screenshots) go to frontend/test-results/.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  ARTIFACTS,
  FRONTEND,
  NEXT_BIN,
  cleanEnv,
  freePort,
  get,
  getJson,
  launchBrowser,
  newStack,
  sleep,
  startNext,
  startNginx,
  startProcess,
  startTtpulse,
  stopProcess,
  tearDown,
  waitFor,
} from "./stack.mjs";


let stack; // this run's folders, ports and URLs (newStack)
let ports; // its free ports
let work; // temp dir of this run
let api; // ttpulse, direct
let admin; // ttpulse's admin listener
let site; // nginx
let ttpulse;
let browser;
let page;
const pageErrors = [];
/** What the page's WebSockets sent (subscribes...) and the keys of the updates they received. */
const wsSent = [];
const wsUpdates = [];
let wsBatchFrames = 0;
const consoleErrors = [];
/** Content-Security-Policy violations reported by any page of the browser: { url, directive, blocked }. */
const cspViolations = [];
/** The page that provokes a violation on purpose (to show the reporting works). */
let cspProbeUrl = null;
let expectingOutage = false; // the browser logs failed WebSocket attempts while ttpulse is down

/** ttpulse with its simulator at 200 events/s; started again, it restores its state. */
const ttpulseUp = () => startTtpulse(stack, { logFile: path.join(ARTIFACTS, "ttpulse.log"), quotes: 3 });

/** The HTML of the market-watch row of `symbol`, or null. */
function rowHtml(html, symbol) {
  const m = new RegExp(`<tr[^>]*data-symbol="${symbol}"[^>]*>[\\s\\S]*?</tr>`).exec(html);
  return m ? m[0] : null;
}

/** The text of a cell, its HTML entities decoded (React writes `'` as `&#x27;`). */
function cellText(row, field) {
  const m = new RegExp(`data-field="${field}"[^>]*>([^<]*)<`).exec(row);
  if (!m) return null;
  const named = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
  return m[1].replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (all, e) =>
    e[0] === "#" ? String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : Number(e.slice(1))) : named[e] ?? all,
  );
}

/**
 * The page shows a price as traders read it: padded with zeros to the tick's decimals
 * ("6850.5" → "6850.50"), in 32nds for bond futures ("112.515625" → "112-16+") and in eighths
 * for grains ("445.25" → "445'2"). Worked out here independently of the page's code.
 */
function samePrice(shown, given, info) {
  if (given == null) return shown === "—";
  const [int, frac = ""] = given.split(".");
  const fraction = Number(`0.${frac || "0"}`);
  if (info?.price_format === "thirty_seconds" && !given.startsWith("-")) {
    const n = fraction * 32;
    const whole = Math.floor(n);
    const half = n - whole === 0.5;
    if (n === whole || half) return shown === `${int}-${String(whole).padStart(2, "0")}${half ? "+" : ""}`;
  }
  if (info?.price_format === "eighths" && !given.startsWith("-")) {
    const n = fraction * 8;
    if (Number.isInteger(n)) return shown === `${int}'${n}`;
  }
  if (shown === given) return true;
  if (!shown.startsWith(given)) return false;
  const rest = shown.slice(given.length);
  return given.includes(".") ? /^0+$/.test(rest) : /^\.0+$/.test(rest);
}

/** seq per symbol as the page shows it. */
function pageSeqs() {
  return page.$$eval("tr[data-symbol]", (rows) =>
    Object.fromEntries(rows.map((r) => [r.getAttribute("data-symbol"), Number(r.getAttribute("data-seq"))])),
  );
}

const connState = () => page.getAttribute("[data-testid=conn-state]", "data-state");

before(async () => {
  for (const f of ["ttpulse.log", "next.log", "nginx.log"]) fs.rmSync(path.join(ARTIFACTS, f), { force: true });
  stack = await newStack("ttpulse-e2e-");
  ({ work, api, admin, site, ports } = stack);
  ttpulse = await ttpulseUp();
  await startNext(stack, { logFile: path.join(ARTIFACTS, "next.log") });
  await startNginx(stack, { logFile: path.join(ARTIFACTS, "nginx.log"), copyConfigTo: path.join(ARTIFACTS, "nginx.generated.conf") });
  browser = await launchBrowser(stack, chromium);
  // Every page reports what its CSP blocked (the event fires in the page before any script).
  await browser.exposeBinding("__cspViolation", ({ page: from }, v) => cspViolations.push({ url: from?.url(), ...v }));
  await browser.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__cspViolation({ directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample }),
    );
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => wsSent.push(String(f.payload)));
    ws.on("framereceived", (f) => {
      const text = String(f.payload);
      if (!/^\{"type":"(update|batch)"/.test(text)) return;
      // The dashboard speaks wire version 2: a batch frame carries the updates of a server wake.
      const msg = JSON.parse(text);
      if (msg.type === "batch") wsBatchFrames += 1;
      for (const u of msg.type === "batch" ? msg.updates : [msg]) wsUpdates.push({ t: Date.now(), key: u.key });
    });
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !expectingOutage) consoleErrors.push(m.text());
  });
}, { timeout: 150000 });

after(() => tearDown(browser, work), { timeout: 60000 });

describe("dashboard end to end (ttpulse + next start + nginx + chromium)", () => {
  test("(a) the HTML nginx serves for / already holds the snapshot's prices (no JS)", async () => {
    const catalog = Object.fromEntries((await getJson(`${api}/api/instruments`)).map((i) => [i.symbol, i]));
    assert.equal(catalog.ZNH7?.price_format, "thirty_seconds", "the catalog says how ZNH7 is quoted");
    let fractional = 0;
    for (let attempt = 1; attempt <= 10; attempt++) {
      const before = await getJson(`${api}/api/snapshot`);
      const res = await get(`${site}/`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/html/);
      const html = await res.text();
      // Every script of the page carries this response's nonce (the only scripts the CSP runs).
      const nonce = /script-src 'self' 'nonce-([^']+)' 'strict-dynamic'/.exec(res.headers.get("content-security-policy") ?? "")?.[1];
      assert.ok(nonce, `a script nonce in the CSP: ${res.headers.get("content-security-policy")}`);
      const scripts = html.match(/<script\b[^>]*>/g) ?? [];
      assert.ok(scripts.length > 0);
      for (const tag of scripts) assert.ok(tag.includes(`nonce="${nonce}"`), `script without the nonce: ${tag}`);
      const afterSnap = await getJson(`${api}/api/snapshot`);
      assert.ok(before.instruments.length >= 3, "the simulator publishes instruments");
      let exact = 0;
      for (const s of before.instruments) {
        const row = rowHtml(html, s.symbol);
        assert.ok(row, `the first HTML has a market-watch row for ${s.symbol}`);
        const seq = Number(/data-seq="(\d+)"/.exec(row)[1]);
        const later = afterSnap.instruments.find((x) => x.symbol === s.symbol);
        assert.ok(seq >= s.seq && seq <= later.seq, `${s.symbol}: HTML seq ${seq} within [${s.seq}, ${later.seq}]`);
        if (s.seq === later.seq) {
          // Unchanged while the page was rendered: the row must show exactly these values.
          assert.equal(seq, s.seq);
          assert.ok(samePrice(cellText(row, "bid"), s.bid, catalog[s.symbol]), `${s.symbol} bid: page ${cellText(row, "bid")} vs API ${s.bid}`);
          assert.ok(samePrice(cellText(row, "ask"), s.ask, catalog[s.symbol]), `${s.symbol} ask: page ${cellText(row, "ask")} vs API ${s.ask}`);
          assert.ok(samePrice(cellText(row, "last"), s.last, catalog[s.symbol]), `${s.symbol} last: page ${cellText(row, "last")} vs API ${s.last}`);
          exact += 1;
        }
        // Whatever the value, bond futures and grains are quoted in their notation.
        const shape = { thirty_seconds: /^\d+-\d{2}\+?$/, eighths: /^\d+'[0-7]$/ }[catalog[s.symbol]?.price_format];
        if (shape && s.bid != null) {
          assert.match(cellText(row, "bid"), shape, `${s.symbol} bid in its notation`);
          fractional += 1;
        }
      }
      if (exact > 0) {
        assert.ok(fractional > 0, "a 32nds or eighths instrument was on the page");
        // Positions are server-rendered too.
        for (const p of before.positions.slice(0, 3)) {
          assert.ok(html.includes(`data-position="${p.account}:${p.symbol}"`), `position row ${p.account}:${p.symbol}`);
        }
        return;
      }
    }
    assert.fail("no instrument stayed unchanged during any of 10 page renders");
  });

  test("(b) in the browser, live updates change the page within 1 s", async () => {
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    await page.goto(`${site}/`, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, {
      timeout: 10000,
    });
    assert.deepEqual(sockets, [`ws://127.0.0.1:${ports.nginx}/ws`], "the page opens /ws on its own origin (nginx)");
    const seqs = await pageSeqs();
    const cells = await page.$$eval("tr[data-symbol] td[data-field=bid], tr[data-symbol] td[data-field=last]", (tds) =>
      tds.map((td) => td.textContent).join("|"),
    );
    const t0 = Date.now();
    await page.waitForFunction(
      ([seqs, cells]) => {
        const rows = [...document.querySelectorAll("tr[data-symbol]")];
        const seqMoved = rows.some((r) => Number(r.getAttribute("data-seq")) !== seqs[r.getAttribute("data-symbol")]);
        const now = [...document.querySelectorAll("tr[data-symbol] td[data-field=bid], tr[data-symbol] td[data-field=last]")]
          .map((td) => td.textContent)
          .join("|");
        return seqMoved && now !== cells;
      },
      [seqs, cells],
      { timeout: 1000, polling: 20 },
    );
    const took = Date.now() - t0;
    assert.ok(took <= 1000, `the page changed after ${took} ms`);
    const delay = await page.textContent("[data-testid=e2e-delay]");
    assert.match(delay ?? "", /\d+(\.\d+)? (ms|s)$/, `the header shows the end-to-end delay (${delay})`);
    // Hovering it tells where the time went, hop by hop.
    await page.waitForFunction(() => /→ processed .* → cached .* → this page /.test(document.querySelector("[data-testid=e2e-metric]")?.getAttribute("title") ?? ""), null, {
      timeout: 3000,
    });
  });

  test("fills arrive on the account lane without gaps (no resnapshot needed)", async () => {
    await page.waitForSelector("tr[data-fill]", { timeout: 10000 });
    const resnapshots = Number(await page.getAttribute(".app", "data-resnapshots"));
    assert.equal(resnapshots, 0, "a healthy local stack never makes the page resnapshot after a fill-lane gap");
    assert.equal(await page.getAttribute(".app", "data-connections"), "1", "one WebSocket connection so far");
  });

  test("the P&L on screen is /api/positions' own: same seq, same exact values, exact totals", async () => {
    /** Exact sum of decimal strings (scaled BigInt), as the server would print it. */
    const exactSum = (...texts) => {
      const scale = Math.max(...texts.map((t) => (t.split(".")[1] ?? "").length));
      const total = texts.reduce((n, t) => {
        const [i, f = ""] = t.replace("-", "").split(".");
        const v = BigInt(i + f.padEnd(scale, "0"));
        return n + (t.startsWith("-") ? -v : v);
      }, 0n);
      const neg = total < 0n;
      const digits = (neg ? -total : total).toString().padStart(scale + 1, "0");
      const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
      return `${neg ? "-" : ""}${text}`;
    };
    /** The same number, whatever the trailing zeros ("20.50" and "20.5"). */
    const norm = (t) => {
      const text = exactSum(t);
      const trimmed = text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
      return trimmed === "-0" ? "0" : trimmed;
    };
    const same = (a, b) => norm(a) === norm(b);
    let compared = 0;
    for (let attempt = 0; attempt < 20 && compared < 3; attempt += 1) {
      const rows = await page.$$eval("tr[data-position]", (trs) =>
        trs.map((tr) => ({
          key: tr.getAttribute("data-position"),
          seq: Number(tr.getAttribute("data-seq")),
          net: tr.querySelectorAll("td")[0]?.textContent,
          money: [...tr.querySelectorAll("td[title]")].slice(-3).map((td) => td.getAttribute("title")),
        })),
      );
      const api = await getJson(`${site}/api/positions`);
      for (const p of api) {
        const row = rows.find((r) => r.key === `${p.account}:${p.symbol}` && r.seq === p.seq);
        if (!row) continue;
        const [realized, unrealized, total] = row.money;
        assert.equal(row.net.replace("+", "").replace(/,/g, ""), String(p.net_qty), `${row.key} net qty`);
        assert.equal(realized, p.realized_pnl, `${row.key} realized`);
        assert.equal(unrealized, p.unrealized_pnl, `${row.key} unrealized`);
        assert.ok(same(total, exactSum(p.realized_pnl, p.unrealized_pnl)), `${row.key} total ${total} = realized + unrealized`);
        compared += 1;
      }
      await sleep(200);
    }
    assert.ok(compared >= 3, `positions compared at the same seq: ${compared}`);
  });

  test("keyboard: arrow keys move the row cursor, Enter charts it", async () => {
    const first = await page.textContent("[data-testid=chart-symbol]");
    await page.focus("[data-testid=market-watch]");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    await page.waitForFunction((first) => document.querySelector("[data-testid=chart-symbol]")?.textContent !== first, first, {
      timeout: 2000,
    });
    const selected = await page.getAttribute("tr[aria-selected=true]", "data-symbol");
    assert.equal(await page.textContent("[data-testid=chart-symbol]"), selected);
    await page.keyboard.press("ArrowUp");
    await page.keyboard.press("Enter");
    await page.waitForFunction((first) => document.querySelector("[data-testid=chart-symbol]")?.textContent === first, first, {
      timeout: 2000,
    });
  });

  test("(d) a screenshot of the live dashboard", async () => {
    // Let the sparklines and the candle chart fill in.
    await page.waitForFunction(() => document.querySelectorAll(".spark polyline").length >= 3, null, { timeout: 10000 });
    await page.waitForFunction(() => !document.querySelector(".chart-status"), null, { timeout: 10000 });
    await sleep(Number(process.env.E2E_SETTLE_MS || 3000));
    const file = path.join(ARTIFACTS, "dashboard.png");
    await page.screenshot({ path: file });
    assert.ok(fs.statSync(file).size > 20000, "the screenshot has content");
  });

  test("the ops page shows the actors and the metrics through nginx", async () => {
    const ops = await browser.newPage();
    try {
      await ops.goto(`${site}/ops`, { waitUntil: "domcontentloaded" });
      await ops.waitForSelector("tr[data-actor=processor]", { timeout: 10000 });
      await ops.waitForFunction(
        () => /\d/.test(document.querySelector("[data-testid=stat-ws] .stat-value")?.textContent ?? ""),
        null,
        { timeout: 10000 },
      );
      const ws = Number((await ops.textContent("[data-testid=stat-ws] .stat-value")).replace(/,/g, ""));
      assert.ok(ws >= 1, `the dashboard's WebSocket is counted (${ws})`);
      // p50/p99 appear once the window has observations (refresh every 2 s).
      await ops.waitForFunction(() => /ms|s/.test(document.querySelector("[data-testid=stat-e2e] .stat-value")?.textContent ?? ""), null, {
        timeout: 10000,
      });
      // The page keeps the last minutes of each figure: after a few scrapes the trends have
      // points (events/s and sessions at least; the lag is absent in the embedded mode).
      await ops.waitForFunction(
        () => Number(document.querySelector("[data-trend=events]")?.getAttribute("data-points")) >= 2,
        null,
        { timeout: 10000 },
      );
      assert.ok(Number(await ops.getAttribute("[data-trend=sessions]", "data-points")) >= 2, "sessions trend");
      // Where the time goes: a p99 for each of the three hops.
      assert.match(await ops.textContent("[data-testid=stat-hops] .stat-value"), /^[\d.]+ (ms|s) \+ [\d.]+ (ms|s) \+ [\d.]+ (ms|s)$/);
      assert.ok(await ops.$("[data-trend=events] polyline"), "the events/s trend is drawn");
      assert.match(await ops.textContent("[data-trend=events]"), /last \d+ (s|min): [\d,]+\/s – [\d,]+\/s/);
      await ops.screenshot({ path: path.join(ARTIFACTS, "ops.png") });
    } finally {
      await ops.close();
    }
  });

  test("the public edge (nginx, and the Next server) never takes ingest or admin writes", async () => {
    const body = JSON.stringify([{ type: "fill", account: "EVIL", order_id: "o", fill_id: "f", instrument: "ESZ6", side: "buy", price: "6850.25", qty: 1 }]);
    const post = (url) => get(url, { method: "POST", headers: { "content-type": "application/json" }, body });
    for (const origin of [site, `http://127.0.0.1:${ports.next}`]) {
      // However the path is spelled: ttpulse decodes `/api/%69ngest` to `/api/ingest`.
      for (const pathname of ["/api/ingest", "/api/%69ngest", "/%61pi/ingest"]) {
        const ingest = await post(`${origin}${pathname}`);
        assert.equal(ingest.status, 404, `${origin}${pathname} answered ${ingest.status}`);
      }
    }
    const restart = await post(`http://127.0.0.1:${ports.next}/admin/actors/processor/restart`);
    assert.equal(restart.status, 404, "the Next server forwards no admin writes");
    // Nothing was written: ttpulse itself knows no account EVIL.
    const snapshot = await getJson(`${api}/api/snapshot?positions=EVIL`);
    assert.deepEqual(snapshot.positions, []);
    const actors = await getJson(`${admin}/admin/actors`);
    // ttpulse's public listener serves no admin or metrics at all.
    for (const path of ["/admin/actors", "/admin/health", "/metrics"]) {
      assert.equal((await get(`${api}${path}`)).status, 404, `${path} on the public listener`);
    }
    assert.equal(actors.find((a) => a.name === "processor").restarts, 0);
  });

  test("through nginx, a client from another address reads the dashboard and the read API only", async () => {
    // A request from 127.0.0.5: to nginx a client that is not on its host.
    const fromElsewhere = (pathname, method = "GET") =>
      new Promise((resolve, reject) => {
        const req = http.request(
          { host: "127.0.0.1", port: ports.nginx, path: pathname, method, localAddress: "127.0.0.5", headers: { "content-type": "application/json" } },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode));
          },
        );
        req.on("error", reject);
        req.setTimeout(5000, () => req.destroy(new Error(`${pathname}: timeout`)));
        req.end(method === "POST" ? "[]" : undefined);
      });
    assert.equal(await fromElsewhere("/"), 200, "the dashboard");
    assert.equal(await fromElsewhere("/api/snapshot"), 200, "the read API");
    assert.equal(await fromElsewhere("/api/ingest", "POST"), 404, "no ingest");
    for (const pathname of ["/admin/health", "/admin/actors", "/metrics"]) {
      assert.equal(await fromElsewhere(pathname), 403, `${pathname} is not reachable from elsewhere`);
    }
    assert.equal(await fromElsewhere("/admin/actors/processor/restart", "POST"), 403);
    // The dashboard's own pages carry the hardening headers, a script policy with a fresh nonce
    // per response included.
    const nonces = new Set();
    for (const pathname of ["/", "/ops", "/no-such-page"]) {
      const page = await get(`${site}${pathname}`);
      assert.equal(page.headers.get("x-frame-options"), "DENY", pathname);
      assert.equal(page.headers.get("x-content-type-options"), "nosniff", pathname);
      assert.equal(page.headers.get("referrer-policy"), "no-referrer", pathname);
      const csp = page.headers.get("content-security-policy") ?? "";
      for (const directive of ["default-src 'self'", "connect-src 'self'", "object-src 'none'", "base-uri 'self'", "frame-ancestors 'none'"]) {
        assert.ok(csp.split("; ").includes(directive), `${pathname}: ${directive} in ${csp}`);
      }
      const nonce = /(?:^|; )script-src 'self' 'nonce-([A-Za-z0-9+/=]{16,})' 'strict-dynamic'(?:;|$)/.exec(csp)?.[1];
      assert.ok(nonce, `${pathname}: a script-src with a nonce in ${csp}`);
      nonces.add(nonce);
    }
    assert.equal(nonces.size, 3, "a new nonce for every response");
  });

  test("nginx's access log holds no query string (no `?access_token=` in a log)", async () => {
    const secret = `e2e-not-a-real-token-${Date.now()}`;
    await get(`${site}/api/instruments?access_token=${secret}&x=1`);
    const log = path.join(work, "nginx/logs/access.log");
    const lines = await waitFor("the request in nginx's access log", () => {
      const found = fs.readFileSync(log, "utf8").split("\n").filter((l) => l.includes("GET /api/instruments "));
      return found.length > 0 && found;
    });
    assert.ok(lines.some((l) => / 200 /.test(l)), lines.join("\n"));
    const all = fs.readFileSync(log, "utf8");
    assert.ok(!all.includes(secret) && !all.includes("access_token"), "no token, no query string in the log");
    assert.ok(!all.includes("?"), "no query string at all in the log");
  });

  test("without nginx, the Next server proxies /api and /ws to ttpulse, and no admin or metrics", async () => {
    const direct = `http://127.0.0.1:${ports.next}`;
    const instruments = await getJson(`${direct}/api/instruments`);
    assert.ok(instruments.length >= 3);
    // Admin and metrics are not proxied unless TTPULSE_DASHBOARD_ADMIN_PROXY=1 (make run).
    for (const pathname of ["/admin/health", "/admin/actors", "/metrics"]) {
      const res = await get(`${direct}${pathname}`);
      const body = await res.text();
      assert.equal(res.status, 404, `${pathname}: ${res.status}`);
      assert.doesNotMatch(body, /ttpulse_|"actors?"|"status":"ok"/, `${pathname}: nothing of ttpulse's answer`);
    }
    const other = await browser.newPage();
    try {
      await other.goto(`${direct}/`, { waitUntil: "domcontentloaded" });
      await other.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, {
        timeout: 10000,
      });
      await other.waitForFunction(() => !document.querySelector(".chart-status"), null, { timeout: 10000 });
    } finally {
      await other.close();
    }
  });

  test("with TTPULSE_DASHBOARD_ADMIN_PROXY=1 (make run on loopback), the ops page works through Next alone", async () => {
    const port = await freePort();
    const adminNext = `http://127.0.0.1:${port}`;
    const next = startProcess("next-admin", process.execPath, [NEXT_BIN, "start", "-H", "127.0.0.1", "-p", String(port)], {
      cwd: FRONTEND,
      env: cleanEnv({
        NEXT_TELEMETRY_DISABLED: "1",
        NODE_ENV: "production",
        TTPULSE_API_URL: api,
        TTPULSE_ADMIN_URL: admin,
        TTPULSE_DASHBOARD_ADMIN_PROXY: "1",
      }),
      logFile: path.join(ARTIFACTS, "next-admin.log"),
    });
    const ops = await browser.newPage();
    try {
      await waitFor("next start (admin proxy)", async () => (await get(`${adminNext}/ops`, { timeoutMs: 2000 })).ok, { timeoutMs: 30000 });
      assert.equal((await getJson(`${adminNext}/admin/health`)).status, "ok");
      assert.match(await (await get(`${adminNext}/metrics`)).text(), /ttpulse_ws_connections/);
      // Reads only: an actor restart is still refused.
      const restart = await get(`${adminNext}/admin/actors/processor/restart`, { method: "POST" });
      assert.equal(restart.status, 404);
      await ops.goto(`${adminNext}/ops`, { waitUntil: "domcontentloaded" });
      await ops.waitForSelector("tr[data-actor=processor]", { timeout: 10000 });
    } finally {
      await ops.close();
      await stopProcess(next);
    }
  });

  test("the CSP is enforced and its violations are seen (an injected inline handler is blocked)", async () => {
    const probe = await browser.newPage();
    try {
      await probe.goto(`${site}/ops`, { waitUntil: "domcontentloaded" });
      cspProbeUrl = probe.url();
      await probe.evaluate(() => {
        window.__injected = false;
        document.body.insertAdjacentHTML("beforeend", '<img src="data:," onerror="window.__injected = true"><img src="/x.png" onload="window.__injected = true" onerror="window.__injected = true">');
      });
      await waitFor("the violation report", () => cspViolations.some((v) => v.url === cspProbeUrl && v.directive === "script-src-attr"));
      assert.equal(await probe.evaluate(() => window.__injected), false, "the injected handler did not run");
    } finally {
      await probe.close();
    }
  });

  test("(c) ttpulse stopped → disconnected; started again → live with current values", async () => {
    // Record the connection states the page goes through (printed if an assertion fails).
    await page.evaluate(() => {
      const log = (window.__connLog = []);
      const badge = () => document.querySelector("[data-testid=conn-state]");
      const banner = () => document.querySelector("[data-testid=conn-banner]")?.textContent ?? "";
      log.push(`${Date.now()} ${badge()?.getAttribute("data-state")} ${banner()}`);
      new MutationObserver(() => {
        const line = `${badge()?.getAttribute("data-state")} ${banner()}`;
        if (!log.length || !log[log.length - 1].endsWith(line)) log.push(`${Date.now()} ${line}`);
      }).observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
    });
    expectingOutage = true;
    try {
      await stopProcess(ttpulse, { graceMs: 10000 });
      await page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "disconnected", null, {
        timeout: 10000,
      });
      assert.ok(await page.isVisible("[data-testid=conn-banner]"), "a banner says the feed is down");
      assert.ok(await page.$(".app.conn-disconnected"), "the board is marked disconnected (values dimmed)");
      const frozen = await pageSeqs();
      await sleep(1500);
      assert.deepEqual(await pageSeqs(), frozen, "nothing moves while disconnected");
      await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-disconnected.png") });

      ttpulse = await ttpulseUp(); // same port, same data dir
      await page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, {
        timeout: 20000,
      });
      // No stale values: every row catches up with a snapshot taken after the reconnect...
      const fresh = await getJson(`${api}/api/snapshot`);
      const want = Object.fromEntries(fresh.instruments.map((s) => [s.symbol, s.seq]));
      await page.waitForFunction(
        (want) =>
          Object.entries(want).every(([symbol, seq]) => {
            const row = document.querySelector(`tr[data-symbol="${symbol}"]`);
            return row && Number(row.getAttribute("data-seq")) >= seq;
          }),
        want,
        { timeout: 3000 },
      );
      // ...the banner is gone, no instrument is marked stale, and values keep updating.
      const banner = await page.$("[data-testid=conn-banner]");
      assert.equal(banner && (await banner.textContent()), null, "no banner once live again");
      await page.waitForFunction(() => document.querySelectorAll("tr[data-stale=true]").length === 0, null, { timeout: 6000 });
      const seqs = await pageSeqs();
      await page.waitForFunction(
        (seqs) => [...document.querySelectorAll("tr[data-symbol]")].some((r) => Number(r.getAttribute("data-seq")) !== seqs[r.getAttribute("data-symbol")]),
        seqs,
        { timeout: 1000, polling: 20 },
      );
      assert.equal(await connState(), "live");
      // One resnapshot is allowed here: a page that reconnects while ttpulse is still restoring
      // its state may get a snapshot without the fill lanes, and then a gap. More means a loop.
      const resnapshots = Number(await page.getAttribute(".app", "data-resnapshots"));
      assert.ok(resnapshots <= 1, `resnapshots after the restart: ${resnapshots}`);
      await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-recovered.png") });
    } catch (e) {
      const log = await page.evaluate(() => window.__connLog).catch(() => null);
      e.message += `\nconnection states seen by the page (ms, state, banner):\n${(log ?? []).join("\n")}`;
      throw e;
    }
  });

  test("the blotter holds every fill across the restart, and a reload finds them all again", async () => {
    const shownFills = () =>
      page.$$eval("tr[data-fill]", (rows) => rows.map((r) => [r.getAttribute("data-fill"), Number(r.getAttribute("data-ts"))]));
    /** Every stored fill dated within what the page shows (after its oldest row) is on the page, once. */
    async function assertComplete(when) {
      await page.waitForFunction(() => !document.querySelector("[data-testid=fills-status]")?.textContent, null, { timeout: 10000 });
      const shown = await shownFills();
      assert.ok(shown.length > 0, `${when}: the blotter shows fills`);
      const keys = shown.map(([k]) => k);
      assert.equal(new Set(keys).size, keys.length, `${when}: no fill twice`);
      const newest = Math.max(...shown.map(([, ts]) => ts));
      const oldest = Math.min(...shown.map(([, ts]) => ts));
      const accounts = [...new Set(keys.map((k) => k.split(":")[0]))];
      const stored = [];
      for (const account of accounts) {
        // Strictly after the oldest row shown: the simulator gives fills of one tick the same
        // time, and those sharing the oldest row's time may sit just below the 50 rows shown.
        const { fills } = await getJson(`${api}/api/fills?account=${account}&from=${oldest + 1}&to=${newest}&limit=5000`);
        stored.push(...fills);
      }
      // Read the page again: a fill stored a moment before the API was read may still be on its
      // way to the page (the stream runs behind the database by design).
      await sleep(500);
      const later = new Set([...keys, ...(await shownFills()).map(([k]) => k)]);
      const missing = stored.map((f) => `${f.account}:${f.symbol}:${f.seq}`).filter((k) => !later.has(k));
      assert.deepEqual(missing, [], `${when}: stored fills between the oldest and newest row shown are all on the page`);
      return keys;
    }
    // After the restart in (c), the fills that happened while the page was disconnected were
    // recovered: the blotter has no hole.
    const before = await assertComplete("after the restart");

    await page.reload();
    await page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, {
      timeout: 20000,
    });
    // Every fill seen before the reload is there again (reading older pages as needed).
    for (let i = 0; i < 20; i += 1) {
      const now = new Set((await shownFills()).map(([k]) => k));
      if (before.every((k) => now.has(k))) break;
      const more = await page.$("[data-testid=fills-more]:not([disabled])");
      if (more) await more.click();
      await sleep(300);
    }
    const after = new Set((await shownFills()).map(([k]) => k));
    assert.deepEqual(before.filter((k) => !after.has(k)), [], "every fill seen before the reload is shown after it");
    await assertComplete("after the reload");
  });

  test("a watchlist: search and add, remove, sort, the socket follows it, and it is there after a reload", async () => {
    const rowSymbols = () => page.$$eval("[data-testid=market-watch] tr[data-symbol]", (rows) => rows.map((r) => r.getAttribute("data-symbol")));
    const lastSubscribe = () => JSON.parse(wsSent.filter((m) => m.includes('"op":"subscribe"')).at(-1));
    assert.ok((await rowSymbols()).length >= 10, "the first visit watches the whole catalog");
    await page.click("[data-testid=watchlist-new]");
    await page.fill("[data-testid=watchlist-name]", "Rates & energy");
    await page.press("[data-testid=watchlist-name]", "Enter");
    await page.waitForFunction(() => document.querySelectorAll("[data-testid=market-watch] tr[data-symbol]").length === 0);
    // Search by description, pick with Enter; by symbol, pick with a click.
    await page.fill("[data-testid=watchlist-search]", "crude");
    await page.press("[data-testid=watchlist-search]", "Enter");
    await page.fill("[data-testid=watchlist-search]", "zn");
    await page.click("[data-match=ZNH7]");
    await page.fill("[data-testid=watchlist-search]", "ES");
    await page.press("[data-testid=watchlist-search]", "Enter");
    await page.waitForFunction(() => document.querySelectorAll("[data-testid=market-watch] tr[data-symbol]").length === 3);
    assert.deepEqual(await rowSymbols(), ["CLF7", "ZNH7", "ESZ6"], "in the order added");
    // Remove one (the button shows on hover).
    await page.hover("tr[data-symbol=ZNH7]");
    await page.click("[data-remove=ZNH7]");
    await page.waitForFunction(() => !document.querySelector("[data-testid=market-watch] tr[data-symbol=ZNH7]"));
    // Sort by symbol, then back to the list's order.
    await page.click("[data-sort=symbol]");
    assert.deepEqual(await rowSymbols(), ["CLF7", "ESZ6"]);
    await page.click("[data-sort=symbol]");
    assert.deepEqual(await rowSymbols(), ["ESZ6", "CLF7"]);
    await page.click("[data-sort=symbol]");
    assert.deepEqual(await rowSymbols(), ["CLF7", "ESZ6"]);

    // The socket follows what is on screen (the list, and the charted instrument): no more `*`.
    const charted = await page.textContent("[data-testid=chart-symbol]");
    const want = [...new Set(["CLF7", "ESZ6", charted])].sort();
    assert.deepEqual(lastSubscribe().instruments, want, "the last subscribe names what is on screen");
    await sleep(1500); // updates queued before the unsubscribe drain
    const since = Date.now();
    await sleep(2000);
    const keys = new Set(wsUpdates.filter((u) => u.t >= since && /^(inst|candle):/.test(u.key)).map((u) => u.key.split(":")[1]));
    assert.ok(keys.size > 0, "market updates still arrive");
    assert.ok(wsBatchFrames > 0, "the dashboard gets batch frames (it offers ttpulse.v2, through nginx)");
    assert.deepEqual([...keys].filter((k) => !want.includes(k)), [], "no market updates for instruments off screen");

    // Saved in the browser: a reload shows the same list, and subscribes to it from the start.
    const sentBefore = wsSent.length;
    await page.reload();
    await page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, { timeout: 20000 });
    await page.waitForFunction(() => document.querySelectorAll("[data-testid=market-watch] tr[data-symbol]").length === 2);
    assert.deepEqual(await rowSymbols(), ["CLF7", "ESZ6"]);
    assert.equal(await page.$eval("[data-testid=watchlist-select]", (el) => el.value), "Rates & energy");
    const firstSubscribe = JSON.parse(wsSent.slice(sentBefore).find((m) => m.includes('"op":"subscribe"')));
    assert.ok(!firstSubscribe.instruments.includes("*"), `the page subscribes to its list, not to everything: ${JSON.stringify(firstSubscribe)}`);
  });

  test("no uncaught errors in the page, no console errors (hydration included) while the stack was up", () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });

  test("no page (dashboard, ops, through nginx or Next alone) broke its Content-Security-Policy", () => {
    assert.deepEqual(
      cspViolations.filter((v) => v.url !== cspProbeUrl),
      [],
    );
  });
});
