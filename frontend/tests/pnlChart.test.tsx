// @vitest-environment happy-dom
//
// PnlChart rendered in happy-dom with a real LiveFeed (over a FakeSocket), a scripted fetch and
// manual animation frames. lightweight-charts itself cannot draw in happy-dom (it parses colours
// through a canvas that happy-dom does not have), so it is replaced by a recorder that keeps the
// data it is given and, like the real one, refuses an `update` older than its newest point.
import { act, createElement } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LiveFeed } from "@/lib/liveFeed";
import type { PnlPoint } from "@/lib/types";
import { FakeSocket, fakeRaf, openLastSocket, snapshot } from "./helpers";
import { feedFixture, removeFeedFixture } from "./componentHelpers";

const lw = vi.hoisted(() => {
  type Datum = { time: number; value?: number };
  const state = {
    calls: [] as Array<{ op: "setData" | "update"; data: Datum[] }>,
    data: [] as Datum[],
    charts: 0,
    removed: 0,
  };
  const series = {
    setData(data: Datum[]) {
      state.calls.push({ op: "setData", data: [...data] });
      state.data = [...data];
    },
    update(d: Datum) {
      const last = state.data[state.data.length - 1];
      if (last && d.time < last.time) throw new Error("Cannot update oldest data");
      state.calls.push({ op: "update", data: [d] });
      if (last && last.time === d.time) state.data[state.data.length - 1] = d;
      else state.data.push(d);
    },
  };
  return {
    state,
    module: {
      createChart: () => {
        state.charts++;
        return {
          addSeries: () => series,
          applyOptions: () => {},
          timeScale: () => ({ fitContent: () => {}, scrollToRealTime: () => {} }),
          remove: () => {
            state.removed++;
          },
        };
      },
      BaselineSeries: {},
      ColorType: { Solid: "solid" },
      CrosshairMode: { Normal: 0 },
    },
  };
});
vi.mock("lightweight-charts", () => lw.module);

import PnlChart from "@/components/PnlChart";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const T0 = 1_795_617_000_000_000;
const S = 1_000_000;

function pt(account: string, interval: "1s" | "1m", i: number, total: string, seqOffset = 0): PnlPoint {
  const step = interval === "1s" ? S : 60 * S;
  return {
    account,
    interval,
    start: T0 + i * step,
    realized: "100",
    unrealized: total,
    total,
    seq: T0 / S + (i * step) / S + seqOffset,
  };
}

interface Pending {
  url: string;
  init: RequestInit | undefined;
  resolve: (res: Response) => void;
  reject: (e: unknown) => void;
}

let root: Root;
let container: HTMLElement;
let frames: ReturnType<typeof fakeRaf>;
let requests: Pending[];
let feed: LiveFeed;
let ws: FakeSocket;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

async function settle() {
  // The dynamic import, fetch answers and their .then chains.
  for (let i = 0; i < 5; i++) await act(async () => {});
}

async function answer(i: number, res: Response) {
  await act(async () => requests[i].resolve(res));
  await settle();
}

function frame() {
  act(() => {
    frames.frame();
  });
}

function sendPnl(p: PnlPoint) {
  act(() => ws.receive({ type: "update", v: 1, kind: "pnl", key: `pnl:${p.account}:${p.interval}`, seq: p.seq, ingest_ts: 0, data: p }));
}

const rootEl = () => container.querySelector("[data-testid=pnl-chart]")!;
const attr = (name: string) => rootEl().getAttribute(name);
const text = (id: string) => container.querySelector(`[data-testid=${id}]`)?.textContent ?? null;

async function mount(accounts: string[]) {
  await act(async () => root.render(createElement(PnlChart, { feed, accounts })));
  await settle();
}

beforeEach(() => {
  lw.state.calls = [];
  lw.state.data = [];
  lw.state.charts = 0;
  lw.state.removed = 0;
  requests = [];
  vi.stubGlobal(
    "fetch",
    vi.fn((url: string, init?: RequestInit) => new Promise<Response>((resolve, reject) => requests.push({ url, init, resolve, reject }))),
  );
  ({ container, root, frames, feed } = feedFixture());
  ws = openLastSocket();
});

afterEach(() => {
  removeFeedFixture({ container, root, feed });
});

describe("PnlChart", () => {
  it("loads the first account's 1 s history, shows loading, then the empty state", async () => {
    await mount(["ACC1", "ACC2"]);
    expect(lw.state.charts).toBe(1);
    expect(requests.map((r) => r.url)).toEqual(["/api/pnl?account=ACC1&interval=1s&limit=900"]);
    expect(requests[0].init).toEqual({ cache: "no-store" });
    expect(attr("data-account")).toBe("ACC1");
    expect(attr("data-interval")).toBe("1s");
    expect(attr("data-points")).toBe("0");
    expect(text("pnl-status")).toBe("Loading P&L…");
    const pressed = [...container.querySelectorAll("[role=group] button")].map((b) => [b.textContent, b.getAttribute("aria-pressed")]);
    expect(pressed).toEqual([["1 s", "true"], ["1 min", "false"]]);
    expect(container.querySelector("select")?.getAttribute("aria-label")).toBe("P&L account");
    await answer(0, json([]));
    frame();
    expect(text("pnl-status")).toBe("No P&L samples yet");
    expect(text("pnl-total")).toBe("—");
    expect(lw.state.data).toEqual([]);
  });

  it("draws the history, then live samples with `update`, once per frame, and formats the legend exactly", async () => {
    await mount(["ACC1"]);
    await answer(0, json([pt("ACC1", "1s", 0, "10"), pt("ACC1", "1s", 1, "-5.5"), pt("ACC1", "1s", 2, "1234.565")]));
    expect(lw.state.calls.length).toBe(0); // nothing is drawn before the frame
    frame();
    expect(lw.state.calls.map((c) => c.op)).toEqual(["setData"]);
    expect(lw.state.data).toEqual([
      { time: T0 / S, value: 10 },
      { time: T0 / S + 1, value: -5.5 },
      { time: T0 / S + 2, value: 1234.565 },
    ]);
    expect(attr("data-points")).toBe("3");
    expect(text("pnl-status")).toBeNull();
    expect(text("pnl-total")).toBe("1,234.57"); // exact half-up, not the float 1234.56
    expect(text("pnl-realized")).toBe("100.00");
    expect(container.querySelector("[data-testid=pnl-total]")?.className).toBe("up");

    // Several samples within one frame: nothing drawn until the frame, then updates only.
    const before = lw.state.calls.length;
    sendPnl(pt("ACC1", "1s", 3, "20"));
    sendPnl(pt("ACC1", "1s", 4, "-30.005"));
    sendPnl(pt("ACC2", "1s", 5, "999")); // another account
    sendPnl(pt("ACC1", "1m", 0, "999")); // the 1 min key
    sendPnl(pt("ACC1", "1s", 2, "777", -1)); // an older state of a held bucket
    expect(lw.state.calls.length).toBe(before);
    expect(attr("data-points")).toBe("3");
    frame();
    expect(lw.state.calls.slice(before)).toEqual([
      { op: "update", data: [{ time: T0 / S + 3, value: 20 }] },
      { op: "update", data: [{ time: T0 / S + 4, value: -30.005 }] },
    ]);
    expect(attr("data-points")).toBe("5");
    expect(text("pnl-total")).toBe("-30.01");
    expect(container.querySelector("[data-testid=pnl-total]")?.className).toBe("down");
    expect(lw.state.data.map((d) => d.value)).toEqual([10, -5.5, 1234.565, 20, -30.005]);
  });

  it("live samples before the history answer: merged, and an older bucket redraws everything", async () => {
    await mount(["ACC1"]);
    sendPnl(pt("ACC1", "1s", 10, "5"));
    frame();
    expect(attr("data-points")).toBe("1");
    expect(text("pnl-total")).toBe("5.00");
    expect(text("pnl-status")).toBeNull(); // a point is shown even before the page answered
    // The page was read before the live sample: its row of second 10 is older and loses.
    await answer(0, json([pt("ACC1", "1s", 8, "1"), pt("ACC1", "1s", 9, "2"), pt("ACC1", "1s", 10, "3", -1)]));
    const before = lw.state.calls.length;
    frame();
    expect(lw.state.calls.slice(before).map((c) => c.op)).toEqual(["setData"]);
    expect(lw.state.data.map((d) => d.value)).toEqual([1, 2, 5]);
    expect(attr("data-points")).toBe("3");
    expect(text("pnl-total")).toBe("5.00");
  });

  it("switching account or interval refetches, and drops an answer that arrives too late", async () => {
    await mount(["ACC1", "ACC2"]);
    const select = container.querySelector("select") as HTMLSelectElement;
    await act(async () => {
      select.value = "ACC2";
      select.dispatchEvent(new Event("change", { bubbles: true }));
    });
    await settle();
    expect(attr("data-account")).toBe("ACC2");
    expect(requests.map((r) => r.url)).toEqual([
      "/api/pnl?account=ACC1&interval=1s&limit=900",
      "/api/pnl?account=ACC2&interval=1s&limit=900",
    ]);
    // The ACC1 page answers now: dropped.
    await answer(0, json([pt("ACC1", "1s", 0, "111")]));
    frame();
    expect(attr("data-points")).toBe("0");
    expect(text("pnl-total")).toBe("—");
    await answer(1, json([pt("ACC2", "1s", 0, "222")]));
    frame();
    expect(attr("data-points")).toBe("1");
    expect(text("pnl-total")).toBe("222.00");
    // A live sample of ACC1 no longer counts.
    sendPnl(pt("ACC1", "1s", 1, "333"));
    frame();
    expect(text("pnl-total")).toBe("222.00");

    const minute = [...container.querySelectorAll("[role=group] button")].find((b) => b.textContent === "1 min") as HTMLButtonElement;
    await act(async () => minute.click());
    await settle();
    expect(attr("data-interval")).toBe("1m");
    expect(minute.getAttribute("aria-pressed")).toBe("true");
    expect(requests[2].url).toBe("/api/pnl?account=ACC2&interval=1m&limit=600");
    frame();
    expect(attr("data-points")).toBe("0");
    expect(lw.state.data).toEqual([]); // the 1 s line was cleared
    await answer(2, json([pt("ACC2", "1m", 0, "1"), pt("ACC2", "1m", 1, "2")]));
    frame();
    expect(attr("data-points")).toBe("2");
    // Live samples of the 1 s key are not the 1 min chart's.
    sendPnl(pt("ACC2", "1s", 200, "9"));
    sendPnl(pt("ACC2", "1m", 1, "2.5", 30));
    frame();
    expect(text("pnl-total")).toBe("2.50");
    expect(lw.state.data.map((d) => d.value)).toEqual([1, 2.5]);
  });

  it("after a snapshot refetches from the newest bucket, with at most one request in flight", async () => {
    await mount(["ACC1"]);
    await answer(0, json([pt("ACC1", "1s", 0, "1"), pt("ACC1", "1s", 1, "2")]));
    frame();
    // A reconnect: the snapshot asks for what was missed, from the newest bucket held.
    act(() => ws.receive({ type: "snapshot", v: 1, ...snapshot() }));
    expect(requests.length).toBe(2);
    expect(requests[1].url).toBe(`/api/pnl?account=ACC1&interval=1s&limit=900&from=${T0 + S}`);
    // Two more snapshots while it is in flight: one more request, later.
    act(() => ws.receive({ type: "snapshot", v: 1, ...snapshot() }));
    act(() => ws.receive({ type: "snapshot", v: 1, ...snapshot() }));
    expect(requests.length).toBe(2);
    // Live samples arrive meanwhile; the queued request still starts from before them.
    sendPnl(pt("ACC1", "1s", 6, "6"));
    await answer(1, json([1, 2, 3, 4, 5].map((i) => pt("ACC1", "1s", i, `${i}`))));
    expect(requests.length).toBe(3);
    expect(requests[2].url).toBe(`/api/pnl?account=ACC1&interval=1s&limit=900&from=${T0 + S}`);
    frame();
    expect(attr("data-points")).toBe("7");
    // Second 1's row has the same seq as the one held (not replaced); 2..5 fill the gap.
    expect(lw.state.data.map((d) => d.value)).toEqual([1, 2, 2, 3, 4, 5, 6]);
    await answer(2, json([]));
    expect(requests.length).toBe(3);
  });

  it("shows the HTTP status and message of a failed request, and retries", async () => {
    await mount(["ACC1"]);
    await answer(0, json({ error: "forbidden", message: "the token does not grant ACC1" }, 403));
    frame();
    expect(text("pnl-error")).toContain("HTTP 403 forbidden: the token does not grant ACC1");
    expect(text("pnl-status")).toBeNull();
    expect(container.querySelector("[role=alert]")).not.toBeNull();
    const retry = container.querySelector("[data-testid=pnl-error] button") as HTMLButtonElement;
    await act(async () => retry.click());
    expect(requests.length).toBe(2);
    await answer(1, json([pt("ACC1", "1s", 0, "7")]));
    frame();
    expect(text("pnl-error")).toBeNull();
    expect(text("pnl-total")).toBe("7.00");
    // A network failure says why too.
    act(() => ws.receive({ type: "snapshot", v: 1, ...snapshot() }));
    await act(async () => requests[requests.length - 1].reject(new TypeError("Failed to fetch")));
    await settle();
    expect(text("pnl-error")).toContain("Could not refresh the P&L history: Failed to fetch");
    expect(text("pnl-total")).toBe("7.00"); // what was held stays
  });

  it("a sample with malformed decimals shows as given and leaves a gap in the line", async () => {
    await mount(["ACC1"]);
    await answer(0, json([pt("ACC1", "1s", 0, "1"), { nonsense: true }, "row"]));
    frame();
    expect(attr("data-points")).toBe("1");
    sendPnl({ ...pt("ACC1", "1s", 1, "abc"), realized: "1e400" });
    frame();
    expect(text("pnl-total")).toBe("abc");
    expect(text("pnl-realized")).toBe("1e400");
    expect(lw.state.data[lw.state.data.length - 1]).toEqual({ time: T0 / S + 1 });
    sendPnl(pt("ACC1", "1s", 2, "3"));
    frame();
    expect(text("pnl-total")).toBe("3.00");
  });

  it("without accounts says so and fetches nothing; unmount removes the chart", async () => {
    await mount([]);
    expect(requests.length).toBe(0);
    expect(text("pnl-status")).toBe("No accounts to chart");
    expect(attr("data-account")).toBe("");
    act(() => root.unmount());
    expect(lw.state.removed).toBe(1);
    root = createRoot(container); // for afterEach
  });
});
