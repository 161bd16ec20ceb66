// @vitest-environment happy-dom
import { act, createElement, Profiler } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import InstrumentDetail from "@/components/InstrumentDetail";
import { LiveFeed } from "@/lib/liveFeed";
import type { Instrument, InstrumentState, TradePrint, UpdateMessage } from "@/lib/types";
import { FakeSocket, fakeRaf, inst, snapshot } from "./helpers";
import { feedFixture, removeFeedFixture } from "./componentHelpers";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const T0 = 1_795_617_000_000_000;
const ES: Instrument = { symbol: "ESZ6", description: "E-mini S&P 500 Dec 26", tick_size: "0.25", multiplier: "50", price_format: "decimal" };
const ZN: Instrument = { symbol: "ZNH7", description: "10-Year T-Note Mar 27", tick_size: "0.015625", multiplier: "1000", price_format: "thirty_seconds" };

function print(symbol: string, n: number, live: boolean, over: Partial<TradePrint> = {}): TradePrint {
  return {
    symbol,
    ...(live ? { seq: n } : {}),
    event_id: `feed:${n}`,
    price: `${6850 + n}.25`,
    qty: 1000 + n,
    aggressor: n % 2 ? "buy" : "sell",
    ts: T0 + n * 1000,
    ...over,
  };
}

function page(symbol: string, from: number, to: number): TradePrint[] {
  const rows: TradePrint[] = [];
  for (let n = to; n >= from; n--) rows.push(print(symbol, n, false));
  return rows;
}

function tradeUpdate(p: TradePrint): UpdateMessage {
  return { type: "update", v: 1, kind: "trade", key: `trades:${p.symbol}`, seq: p.seq ?? 0, ingest_ts: 1, data: p };
}

interface FetchCall {
  url: string;
  init: RequestInit | undefined;
  answer: (rows: TradePrint[] | null) => void;
}

let calls: FetchCall[] = [];
let root: Root;
let container: HTMLElement;
let frames: ReturnType<typeof fakeRaf>;
let feed: LiveFeed;
let commits = 0;

function render(symbol: string | null, state: InstrumentState | undefined, info: Instrument | undefined) {
  act(() => {
    root.render(
      createElement(
        Profiler,
        { id: "detail", onRender: () => commits++ },
        createElement(InstrumentDetail, { feed, symbol, state, info }),
      ),
    );
  });
}

/** Lets the fetch chains (response, json, merge) run. */
async function settle() {
  await act(async () => {
    for (let i = 0; i < 20; i++) await Promise.resolve();
  });
}

async function answer(call: FetchCall, rows: TradePrint[] | null) {
  call.answer(rows);
  await settle();
}

/** The next frame the prints may be shown in: they are shown at most every 200 ms. */
function frame() {
  act(() => {
    vi.advanceTimersByTime(200);
    frames.frame();
  });
}

const q = (sel: string) => container.querySelector(sel);
const field = (name: string) => q(`[data-testid=instrument-detail] .detail-quote [data-field=${name}]`)?.textContent;
const printIds = () => [...container.querySelectorAll("[data-testid=time-and-sales] tbody tr[data-print]")].map((tr) => tr.getAttribute("data-print"));
const sent = (ws: FakeSocket) => ws.sent.map((s) => JSON.parse(s) as Record<string, unknown>);

beforeEach(() => {
  calls = [];
  commits = 0;
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
  vi.stubGlobal("fetch", (url: string, init?: RequestInit) =>
    new Promise((resolve) => {
      calls.push({
        url,
        init,
        answer: (rows) =>
          resolve(
            rows === null
              ? { ok: false, status: 503, json: async () => ({ error: "unavailable" }) }
              : { ok: true, status: 200, json: async () => rows },
          ),
      });
    }),
  );
  ({ container, root, frames, feed } = feedFixture({ initial: snapshot() }));
});

afterEach(() => {
  removeFeedFixture({ container, root, feed });
  vi.useRealTimers();
});

describe("InstrumentDetail", () => {
  it("shows the quote with sizes and the session, formatted for the instrument", () => {
    const state = inst("ESZ6", 5, { bid: "6850.00", bid_qty: 5, ask: "6850.25", ask_qty: 1234, last: "6850.25", open: "6849.5", high: "6851", low: "6849.00", change: "0.75", change_pct: "0.0109", vwap: "6850.166666", volume: 12345, trades: 7 });
    render("ESZ6", state, ES);
    const root = q("[data-testid=instrument-detail]")!;
    expect(root.querySelector("h2")?.textContent).toBe("Detail ESZ6");
    expect(root.textContent).toContain("E-mini S&P 500 Dec 26");
    expect(field("bid_qty")).toBe("5");
    expect(field("bid")).toBe("6850.00");
    expect(field("ask")).toBe("6850.25");
    expect(field("ask_qty")).toBe("1,234");
    expect(field("last")).toBe("6850.25");
    expect(field("open")).toBe("6849.50");
    expect(field("high")).toBe("6851.00");
    expect(field("low")).toBe("6849.00");
    expect(field("change_pct")).toBe(" +0.01%");
    expect(q("[data-field=change]")?.firstChild?.textContent).toBe("+0.75");
    expect(q("[data-field=change]")?.className).toContain("up");
    expect(field("vwap")).toBe("6850.1667");
    expect(field("volume")).toBe("12,345");
    expect(field("trades")).toBe("7");
    for (const label of ["ESZ6 bid and ask with sizes", "ESZ6 session", "Time and sales, ESZ6"]) {
      expect(q(`table[aria-label="${label}"]`)).not.toBeNull();
    }
  });

  it("prints in the instrument's notation; no sizes from an older server or without a side", () => {
    const older = inst("ZNH7", 2, { bid: "112.5", ask: "112.515625", last: "112.515625", open: "112.5", change: "0.015625", vwap: "112.5078125" });
    render("ZNH7", older, ZN);
    expect(field("bid")).toBe("112-16");
    expect(field("ask")).toBe("112-16+");
    expect(field("bid_qty")).toBe("—"); // an older server sends no sizes
    expect(field("ask_qty")).toBe("—");
    expect(q("[data-field=change]")?.firstChild?.textContent).toBe("+0-00+");
    expect(field("vwap")).toBe("112.5078");
    render("ZNH7", { ...older, bid: null, bid_qty: 0, ask_qty: 3 }, ZN);
    expect(field("bid")).toBe("—");
    expect(field("bid_qty")).toBe("—");
    expect(field("ask_qty")).toBe("3");
    // A state of another instrument (a frame behind the selection) is not shown as this one's.
    render("ZNH7", inst("ESZ6", 9, { bid_qty: 77 }), ZN);
    expect(field("bid_qty")).toBe("—");
  });

  it("follows the prints: history, then live ones batched per frame, newest first with stable rows", async () => {
    render("ESZ6", inst("ESZ6", 5), ES);
    const ws = FakeSocket.last();
    // The history is read at once, from the page's own origin.
    expect(calls.map((c) => c.url)).toEqual(["/api/trades?symbol=ESZ6&limit=100"]);
    expect(calls[0].init).toEqual({ cache: "no-store" });
    expect(q("[data-testid=time-and-sales] .empty")?.textContent).toBe("Loading prints…");
    // The feed subscribes to the instrument's prints.
    act(() => ws.open());
    expect(sent(ws).filter((m) => m.op === "subscribe").at(-1)).toMatchObject({ trades: ["ESZ6"] });
    // Its snapshot (a resync) asks for the history again, behind the read in flight.
    act(() => ws.receive({ type: "snapshot", v: 1, ...snapshot() }));
    expect(calls.length).toBe(1);

    await answer(calls[0], page("ESZ6", 1, 3));
    expect(calls.length).toBe(2); // the queued one
    frame();
    expect(printIds()).toEqual(["feed:3", "feed:2", "feed:1"]);
    const row3 = q('[data-print="feed:3"]')!;
    expect(row3.querySelector("[data-field=price]")?.textContent).toBe("6853.25");
    expect(row3.querySelector("[data-field=qty]")?.textContent).toBe("1,003");
    expect(row3.querySelector("[data-field=ts]")?.textContent).toBe("14:30:00.003");
    expect(row3.querySelector(".side.side-buy")?.textContent).toBe("BUY");
    expect(q('[data-print="feed:2"] .side.side-sell')?.textContent).toBe("SELL");

    // The stream: 3 was in the page (the two meet), then 4 and 5 within one frame.
    await answer(calls[1], page("ESZ6", 1, 3));
    frame();
    const commitsBefore = commits;
    act(() => {
      ws.receive(tradeUpdate(print("ESZ6", 3, true)));
      ws.receive(tradeUpdate(print("ESZ6", 4, true)));
      ws.receive(tradeUpdate(print("ESZ6", 5, true)));
      // Prints of another instrument are not ours.
      ws.receive(tradeUpdate(print("NQZ6", 6, true)));
    });
    expect(printIds()).toEqual(["feed:3", "feed:2", "feed:1"]); // nothing until the frame
    expect(commits).toBe(commitsBefore);
    frame();
    expect(commits).toBe(commitsBefore + 1);
    expect(printIds()).toEqual(["feed:5", "feed:4", "feed:3", "feed:2", "feed:1"]);
    expect(q('[data-print="feed:3"]')).toBe(row3); // the same row, not rebuilt
    expect(calls.length).toBe(2); // no hole: nothing to read again
    expect(q("[data-testid=time-and-sales]")?.getAttribute("data-rows")).toBe("5");
  });

  it("reads the history again when the live seq jumps, and after a reconnect", async () => {
    render("ESZ6", inst("ESZ6", 5), ES);
    const ws = FakeSocket.last();
    act(() => ws.open());
    await answer(calls[0], page("ESZ6", 1, 2));
    act(() => ws.receive(tradeUpdate(print("ESZ6", 2, true))));
    act(() => ws.receive(tradeUpdate(print("ESZ6", 3, true))));
    expect(calls.length).toBe(1);
    // 4 to 6 were skipped by the server for this slow client.
    act(() => ws.receive(tradeUpdate(print("ESZ6", 7, true))));
    expect(calls.length).toBe(2);
    await answer(calls[1], page("ESZ6", 1, 7));
    frame();
    expect(printIds()).toEqual(["feed:7", "feed:6", "feed:5", "feed:4", "feed:3", "feed:2", "feed:1"]);

    // Disconnected; prints 8 and 9 went by. The snapshot of the new connection asks again.
    act(() => ws.serverClose(1006));
    act(() => {
      vi.advanceTimersByTime(300); // the first reconnect waits 125–250 ms
    });
    const ws2 = FakeSocket.last();
    expect(ws2).not.toBe(ws);
    act(() => ws2.open());
    expect(sent(ws2).find((m) => m.op === "subscribe")).toMatchObject({ trades: ["ESZ6"] });
    act(() => ws2.receive({ type: "snapshot", v: 1, ...snapshot() }));
    expect(calls.length).toBe(3);
    await answer(calls[2], page("ESZ6", 1, 9));
    frame();
    expect(printIds()?.slice(0, 3)).toEqual(["feed:9", "feed:8", "feed:7"]);
  });

  it("says when the prints cannot be read", async () => {
    render("ESZ6", inst("ESZ6", 5), ES);
    await answer(calls[0], null);
    frame();
    expect(q("[data-testid=tas-status]")?.textContent).toBe("Could not read the prints (HTTP 503) — retrying");
  });

  it("switches instruments in one subscription change, and follows none once unmounted", async () => {
    render("ESZ6", inst("ESZ6", 5), ES);
    const ws = FakeSocket.last();
    act(() => ws.open());
    await answer(calls[0], page("ESZ6", 1, 2));
    frame();
    expect(printIds()).toEqual(["feed:2", "feed:1"]);
    const before = ws.sent.length;
    render("NQZ6", inst("NQZ6", 3), { ...ES, symbol: "NQZ6", description: "E-mini Nasdaq-100 Dec 26" });
    // Unsubscribe ESZ6's prints, subscribe NQZ6's: one change.
    expect(sent(ws).slice(before)).toEqual([
      { op: "unsubscribe", instruments: [], positions: [], trades: ["ESZ6"] },
      expect.objectContaining({ op: "subscribe", trades: ["NQZ6"] }),
    ]);
    // The other instrument's prints are gone at once; its history is read.
    expect(printIds()).toEqual([]);
    expect(calls.at(-1)?.url).toBe("/api/trades?symbol=NQZ6&limit=100");
    // A print of the instrument before is not shown.
    act(() => ws.receive(tradeUpdate(print("ESZ6", 3, true))));
    await answer(calls.at(-1)!, page("NQZ6", 10, 11));
    frame();
    expect(printIds()).toEqual(["feed:11", "feed:10"]);

    const beforeUnmount = ws.sent.length;
    act(() => root.unmount());
    expect(sent(ws).slice(beforeUnmount)[0]).toEqual({ op: "unsubscribe", instruments: [], positions: [], trades: ["NQZ6"] });
    root = createRoot(container); // for afterEach
  });

  it("without a selection shows a hint and follows no prints", () => {
    render(null, undefined, undefined);
    expect(q("[data-testid=instrument-detail]")?.textContent).toContain("Select an instrument");
    expect(q("[data-testid=time-and-sales]")).toBeNull();
    expect(calls.length).toBe(0);
  });
});
