// End-to-end test of signing in: ttpulse with user tokens on (HS256), the built Next.js server,
// and Debian's Chromium. A user's token reaches the page in the `ttpulse_token` cookie (as a
// sign-in proxy would set it): the first HTML and the live stream hold that user's accounts
// and nobody else's, and a visitor without a token gets a sign-in page with no data at all.
// When the token expires (the server closes the session with 4001) the page reloads instead of
// reconnecting: signed in again with the token the proxy renewed, or signed out.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  ARTIFACTS,
  CHROMIUM,
  CHROMIUM_ARGS,
  FRONTEND,
  NEXT_BIN,
  ROOT,
  TTPULSE_BIN,
  cleanEnv,
  freePort,
  get,
  sleep,
  startProcess,
  tearDown,
  tempDir,
  waitFor,
} from "./stack.mjs";

const SECRET = "an-e2e-secret-of-at-least-32-bytes-long";

let work;
let api;
let site;
let browser;

/** An HS256 JWT granting `accounts`, valid for `ttlSeconds` (5 minutes). */
function token(accounts, sub = "trader", ttlSeconds = 300) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds, accounts })}`;
  return `${body}.${crypto.createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

async function ingest(events) {
  const res = await get(`${api}/api/ingest`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  assert.equal(res.status, 200, await res.text());
}

/** The `ttpulse_token` cookie holding `value`, for the site, as a sign-in proxy sets it. */
const tokenCookie = (value) => ({ name: "ttpulse_token", value, url: site, httpOnly: true, sameSite: "Strict" });

/** Waits (up to 15 s) until the page's connection badge says live. */
const waitLive = (page) =>
  page.waitForFunction(() => document.querySelector("[data-testid=conn-state]")?.getAttribute("data-state") === "live", null, {
    timeout: 15000,
  });

const fill = (account, fillId, qty) => ({
  type: "fill",
  account,
  order_id: `o-${fillId}`,
  fill_id: fillId,
  instrument: "ESZ6",
  side: "buy",
  price: "6850.25",
  qty,
});

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  work = tempDir("ttpulse-signin-");
  const ports = { api: await freePort(), admin: await freePort(), next: await freePort() };
  api = `http://127.0.0.1:${ports.api}`;
  site = `http://127.0.0.1:${ports.next}`;
  startProcess("ttpulse", TTPULSE_BIN, ["run"], {
    cwd: work,
    env: cleanEnv({
      TTPULSE_HTTP_ADDR: `127.0.0.1:${ports.api}`,
      TTPULSE_ADMIN_ADDR: `127.0.0.1:${ports.admin}`,
      TTPULSE_DATA_DIR: path.join(work, "data"),
      TTPULSE_SOURCE: "none",
      TTPULSE_AUTH_HS256_SECRET: SECRET,
    }),
    logFile: path.join(ARTIFACTS, "signin-ttpulse.log"),
  });
  await waitFor("ttpulse", async () => (await get(`http://127.0.0.1:${ports.admin}/admin/health`, { timeoutMs: 1000 })).ok, {
    timeoutMs: 30000,
  });
  await ingest([
    { type: "quote", instrument: "ESZ6", bid: "6850.00", bid_qty: 5, ask: "6850.25", ask_qty: 5 },
    fill("ALPHA-1", "A-1", 3),
    fill("BRAVO-2", "B-1", 7),
  ]);
  startProcess("next", process.execPath, [NEXT_BIN, "start", "-H", "127.0.0.1", "-p", String(ports.next)], {
    cwd: FRONTEND,
    env: cleanEnv({ NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production", TTPULSE_API_URL: api }),
    logFile: path.join(ARTIFACTS, "signin-next.log"),
  });
  await waitFor("next start", async () => (await get(`${site}/ops`, { timeoutMs: 2000 })).ok, { timeoutMs: 30000 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: CHROMIUM_ARGS,
  });
}, { timeout: 120000 });

after(() => tearDown(browser, work), { timeout: 60000 });

describe("signing in (ttpulse with tokens + next start + chromium)", () => {
  test("without a token the first HTML is a sign-in page, with no account's data", async () => {
    const html = await (await get(`${site}/`)).text();
    assert.match(html, /data-testid="sign-in"/);
    assert.doesNotMatch(html, /ALPHA-1|BRAVO-2/);
    const forged = token(["BRAVO-2"]).replace(/\.[^.]+$/, ".AAAA");
    const refused = await (await get(`${site}/`, { headers: { cookie: `ttpulse_token=${forged}` } })).text();
    assert.match(refused, /data-testid="sign-in"/, "a token with a bad signature signs nobody in");
    assert.doesNotMatch(refused, /ALPHA-1|BRAVO-2/);
  });

  test("user A sees only A's accounts, in the first HTML and in the stream", async () => {
    const mine = token(["ALPHA-1"], "alice");
    const html = await (await get(`${site}/`, { headers: { cookie: `ttpulse_token=${mine}` } })).text();
    assert.match(html, /ALPHA-1/, "the first HTML holds the user's account");
    assert.doesNotMatch(html, /BRAVO-2/, "and no other account");
    // The same for an auth proxy that sets the header instead of a cookie.
    const viaHeader = await (await get(`${site}/`, { headers: { authorization: `Bearer ${mine}` } })).text();
    assert.match(viaHeader, /ALPHA-1/);
    assert.doesNotMatch(viaHeader, /BRAVO-2/);

    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    try {
      await context.addCookies([tokenCookie(mine)]);
      const page = await context.newPage();
      const sockets = [];
      page.on("websocket", (ws) => sockets.push(ws.url()));
      await page.goto(`${site}/`, { waitUntil: "domcontentloaded" });
      await waitLive(page);
      assert.ok(sockets.every((url) => !url.includes("access_token")), `no token in a WebSocket URL: ${sockets}`);
      // Live: a new fill of A shows up; one of B never does.
      await ingest([fill("BRAVO-2", "B-2", 11), fill("ALPHA-1", "A-2", 5)]);
      await page.waitForSelector('[data-fill="ALPHA-1:ESZ6:2"]', { timeout: 10000 });
      await sleep(500);
      const text = await page.textContent("body");
      assert.match(text, /ALPHA-1/);
      assert.doesNotMatch(text, /BRAVO-2/, "nothing of another account reaches the page");
      assert.equal(await page.$('[data-fill^="BRAVO-2"]'), null);
      await page.screenshot({ path: path.join(ARTIFACTS, "signed-in.png") });
    } finally {
      await context.close();
    }
  });

  /** A browser context whose `ttpulse_token` cookie holds `value` (as a sign-in proxy sets it). */
  async function signedInContext(value) {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    await context.addCookies([tokenCookie(value)]);
    return context;
  }

  /** A page of `context` that counts its loads and WebSockets, opened on the site and live. */
  async function watchedLivePage(context) {
    const page = await context.newPage();
    const seen = { loads: 0, sockets: 0 };
    page.on("load", () => (seen.loads += 1));
    page.on("websocket", () => (seen.sockets += 1));
    await page.goto(`${site}/`, { waitUntil: "domcontentloaded" });
    await waitLive(page);
    return { page, seen };
  }

  const connState = (page) => page.getAttribute("[data-testid=conn-state]", "data-state").catch(() => null);

  test("token expiry (4001): the page reloads once and goes live with the token the proxy renewed", async () => {
    const context = await signedInContext(token(["ALPHA-1"], "alice", 6));
    try {
      const { page, seen } = await watchedLivePage(context);
      assert.equal(seen.loads, 1);
      // The sign-in proxy renews the cookie; the open session still runs on the old token.
      await context.addCookies([tokenCookie(token(["ALPHA-1"], "alice", 300))]);
      await waitFor("the reload after the token expired", () => seen.loads >= 2, { timeoutMs: 20000 });
      await waitLive(page);
      await sleep(2000);
      assert.equal(seen.loads, 2, "one reload, no loop");
      assert.equal(seen.sockets, 2, "one WebSocket before the reload, one after: no reconnect with the expired token");
      assert.equal(await connState(page), "live");
      assert.match(await page.textContent("body"), /ALPHA-1/);
    } finally {
      await context.close();
    }
  });

  test("token expiry without a renewal: the page signs out and stops reconnecting", async () => {
    const context = await signedInContext(token(["ALPHA-1"], "alice", 5));
    try {
      const { page, seen } = await watchedLivePage(context);
      // After the expiry (and the server's 5 s leeway) the page is signed out: the server render
      // is the sign-in page, or a reload within the leeway found the feed closed again at once and
      // the page says the sign-in ended (it reloads only once in 30 s).
      const signedOut = async () => (await page.$("[data-testid=sign-in]")) !== null || (await connState(page)) === "signed-out";
      await waitFor("the signed-out page", signedOut, { timeoutMs: 25000, everyMs: 250 });
      const sockets = seen.sockets;
      await sleep(5000);
      assert.ok(await signedOut(), "still signed out");
      assert.equal(seen.sockets, sockets, "no reconnect with the expired token");
      assert.ok(seen.loads <= 2, `at most one reload (${seen.loads} loads)`);
      await page.screenshot({ path: path.join(ARTIFACTS, "signed-out.png") });
    } finally {
      await context.close();
    }
  });
});
