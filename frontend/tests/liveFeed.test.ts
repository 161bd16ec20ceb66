import { describe, expect, it, vi } from "vitest";
import { BATCH_PROTOCOL, LiveFeed } from "@/lib/liveFeed";
import { BACKOFF_CAP_MS } from "@/lib/backoff";
import { FakeSocket, fakeSocketsAndTimersPerTest, fillUpdate, goLive, inst, instUpdate, makeFeed, makeOpenFeed, snapshot } from "./helpers";

fakeSocketsAndTimersPerTest();

describe("LiveFeed", () => {
  it("subscribes on open and goes live on the snapshot", () => {
    const { feed, frames } = makeFeed();
    expect(feed.getView().conn).toBe("connecting");
    feed.start();
    const ws = FakeSocket.last();
    expect(ws.url).toBe("ws://test/ws");
    ws.open();
    expect(JSON.parse(ws.sent[0])).toEqual({ op: "subscribe", instruments: ["*"], positions: ["*"] });
    ws.receive({ type: "snapshot", v: 1, ...snapshot() });
    frames.frame();
    expect(feed.getView().conn).toBe("live");
    feed.stop();
  });

  it("asks the server for the rate the screen repaints at, on every subscribe", () => {
    const { feed, ws } = makeOpenFeed({ maxRate: 1000 / 200 });
    expect(JSON.parse(ws.sent[0])).toEqual({ op: "subscribe", instruments: ["*"], positions: ["*"], max_rate: 5 });
    feed.setInstruments(["ESZ6"]);
    expect(JSON.parse(ws.sent[ws.sent.length - 1])).toMatchObject({ instruments: ["ESZ6"], max_rate: 5 });
    feed.stop();
  });

  it("an account-lane seq gap requests a fresh snapshot by subscribing again", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    expect(ws.subscribes()).toBe(1);
    ws.receive(fillUpdate("ACC1", 5)); // 4 → 5: fine
    expect(ws.subscribes()).toBe(1);
    ws.receive(fillUpdate("ACC1", 7)); // 6 is missing
    expect(ws.subscribes()).toBe(2);
    frames.frame();
    const view = feed.getView();
    expect(view.resnapshots).toBe(1);
    expect(view.conn).toBe("stale");
    expect(view.data.accounts.ACC1).toBe(5);
    // fills past the gap are not applied; the snapshot brings the state
    ws.receive(fillUpdate("ACC1", 8));
    expect(feed.store.fillSeq("fills:ACC1:ESZ6")).toBe(5);
    ws.receive({ type: "snapshot", v: 1, ...snapshot({ accounts: [{ account: "ACC1", symbol: "ESZ6", fill_seq: 8 }] }) });
    frames.frame();
    expect(feed.getView().conn).toBe("live");
    expect(feed.getView().data.accounts.ACC1).toBe(8);
    ws.receive(fillUpdate("ACC1", 9));
    expect(feed.store.fillSeq("fills:ACC1:ESZ6")).toBe(9);
    expect(ws.subscribes()).toBe(2);
    feed.stop();
  });

  it("reconnects if the snapshot asked for after a gap never comes", () => {
    const { feed, frames } = makeFeed({ snapshotTimeoutMs: 3000 });
    const ws = goLive(feed, frames);
    ws.receive(fillUpdate("ACC1", 9));
    vi.advanceTimersByTime(3001);
    frames.frame();
    expect(ws.closedWith).toBe(4000);
    expect(feed.getView().conn).toBe("disconnected");
    vi.advanceTimersByTime(BACKOFF_CAP_MS);
    expect(FakeSocket.instances.length).toBe(2);
    feed.stop();
  });

  it("offers wire version 2 and applies a batch frame as its updates one by one, in order", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    expect(ws.protocols).toEqual([BATCH_PROTOCOL]);
    ws.receive({
      type: "batch",
      v: 2,
      updates: [instUpdate(inst("ESZ6", 6, { bid: "99.00" })), fillUpdate("ACC1", 5), instUpdate(inst("ESZ6", 7, { bid: "101.00" }))],
    });
    frames.frame();
    const es = feed.getView().data.instruments.find((s) => s.symbol === "ESZ6");
    expect(es?.seq).toBe(7);
    expect(es?.bid).toBe("101.00");
    expect(feed.getView().data.accounts.ACC1).toBe(5);
    expect(ws.subscribes()).toBe(1);
    // A gap inside a batch asks for a snapshot, as it does between frames.
    ws.receive({ type: "batch", v: 2, updates: [fillUpdate("ACC1", 7)] });
    expect(ws.subscribes()).toBe(2);
    expect(feed.store.fillSeq("fills:ACC1:ESZ6")).toBe(5);
    feed.stop();
  });

  it("a malformed batch frame is ignored, and the next update still applies", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    expect(() => ws.receive({ type: "batch", v: 2, updates: "not a list" })).not.toThrow();
    expect(() => ws.receive({ type: "batch", v: 2 })).not.toThrow();
    // An element that is not an update is skipped; the ones after it still apply.
    expect(() => ws.receive({ type: "batch", v: 2, updates: [null, 7, instUpdate(inst("NQZ6", 4, { bid: "55.00" }))] })).not.toThrow();
    ws.receive(instUpdate(inst("ESZ6", 6, { bid: "102.00" })));
    frames.frame();
    expect(feed.getView().data.instruments.find((s) => s.symbol === "ESZ6")?.bid).toBe("102.00");
    expect(feed.getView().data.instruments.find((s) => s.symbol === "NQZ6")?.bid).toBe("55.00");
    feed.stop();
  });

  it("an out-of-date market seq is ignored", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    ws.receive(instUpdate(inst("ESZ6", 9, { bid: "101.00" })));
    ws.receive(instUpdate(inst("ESZ6", 8, { bid: "90.00" })));
    frames.frame();
    const es = feed.getView().data.instruments.find((s) => s.symbol === "ESZ6");
    expect(es?.seq).toBe(9);
    expect(es?.bid).toBe("101.00");
    expect(ws.subscribes()).toBe(1); // no resnapshot for the market lane
    feed.stop();
  });

  it("reconnects with growing, capped backoff and resnapshots", () => {
    const random = vi.fn(() => 0.5);
    const { feed, frames } = makeFeed({ random });
    const ws1 = goLive(feed, frames);
    ws1.serverClose(1006);
    frames.frame();
    expect(feed.getView().conn).toBe("disconnected");
    const delays: number[] = [];
    let last = FakeSocket.instances.length;
    for (let i = 0; i < 8; i++) {
      const retryAt = feed.getView().retryAt!;
      delays.push(retryAt - Date.now());
      vi.advanceTimersByTime(retryAt - Date.now() - 1);
      expect(FakeSocket.instances.length).toBe(last); // not before its time
      vi.advanceTimersByTime(1);
      expect(FakeSocket.instances.length).toBe(last + 1);
      last += 1;
      FakeSocket.last().serverClose(1006); // the server is still down
      frames.frame();
    }
    // 250·2^n at random 0.5 → 3/4 of the ceiling: 188, 375, 750, 1500, 3000, then the 5 s cap
    expect(delays.slice(0, 5)).toEqual([188, 375, 750, 1500, 3000]);
    expect(delays.slice(5)).toEqual([3750, 3750, 3750]);
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]);
    expect(Math.max(...delays)).toBeLessThanOrEqual(BACKOFF_CAP_MS);
    expect(random).toHaveBeenCalled();
    // the server comes back: subscribe again, the snapshot replaces the state; the backoff
    // resets once the connection has stayed up (a snapshot alone does not)
    const ws = FakeSocket.last();
    vi.advanceTimersByTime(BACKOFF_CAP_MS);
    const fresh = FakeSocket.last();
    expect(fresh).not.toBe(ws);
    fresh.open();
    expect(fresh.subscribes()).toBe(1);
    fresh.receive({ type: "snapshot", v: 1, ...snapshot({ instruments: [inst("ESZ6", 77)] }) });
    frames.frame();
    expect(feed.getView().conn).toBe("live");
    expect(feed.getView().attempt).toBe(9);
    expect(feed.getView().data.instruments.map((s) => s.seq)).toEqual([77]);
    vi.advanceTimersByTime(11000); // the tick after 10 s live
    frames.frame();
    expect(feed.getView().attempt).toBe(0);
    feed.stop();
  });

  it("4008/4009 after a stable connection reconnect at once; repeated ones back off (no storm)", () => {
    const { feed, frames } = makeFeed({ random: () => 0 });
    const ws = goLive(feed, frames);
    vi.advanceTimersByTime(11000); // a connection that stayed up
    ws.serverClose(4009, "too slow");
    frames.frame();
    expect(feed.getView().retryAt! - Date.now()).toBe(125);
    expect(feed.getView().lastError).toContain("4009");
    // Each new session gets its snapshot and is closed again at once: the snapshot does not
    // reset the backoff, so the reconnects slow down instead of looping every 125 ms.
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(feed.getView().retryAt! - Date.now());
      const next = FakeSocket.last();
      next.open();
      next.receive({ type: "snapshot", v: 1, ...snapshot() });
      vi.advanceTimersByTime(500);
      next.serverClose(i % 2 ? 4008 : 4009, "too slow");
      frames.frame();
      delays.push(feed.getView().retryAt! - Date.now());
    }
    expect(delays).toEqual([250, 500, 1000, 2000, 2500]);
    feed.stop();
  });

  it("a refused subscribe says so instead of connecting forever, and can be retried", () => {
    const { feed, frames, ws } = makeOpenFeed();
    ws.receive({ type: "error", code: "forbidden", message: "account `ACC9` is not granted" });
    frames.frame();
    expect(feed.getView().conn).toBe("refused");
    expect(feed.getView().lastError).toBe("forbidden: account `ACC9` is not granted");
    vi.advanceTimersByTime(5000);
    expect(ws.subscribes()).toBe(1); // no retry loop on its own
    feed.retry();
    expect(ws.subscribes()).toBe(2);
    ws.receive({ type: "snapshot", v: 1, ...snapshot() });
    frames.frame();
    expect(feed.getView().conn).toBe("live");
    feed.stop();
  });

  it("measures staleness and delay on the server's clock (from the pong)", () => {
    const { feed, frames } = makeFeed({ pingEveryMs: 1000 });
    const ws = goLive(feed, frames);
    vi.advanceTimersByTime(1000);
    expect(ws.sent).toContain('{"op":"ping"}');
    // The server's clock is 60 s ahead of this browser's.
    ws.receive({ type: "pong", server_ts: (Date.now() + 60_000) * 1000 });
    frames.frame();
    expect(feed.getView().clockOffsetMs).toBe(60_000);
    expect(feed.getView().nowMs).toBe(Date.now() + 60_000);
    // An update ingested 5 ms ago on the server's clock is 5 ms old, not -59.995 s.
    ws.receive(instUpdate(inst("ESZ6", 99), (Date.now() + 60_000 - 5) * 1000));
    frames.frame();
    expect(feed.getView().delayMs).toBe(5);
    feed.stop();
  });

  it("follows what is on screen: setInstruments unsubscribes the dropped and resubscribes the set", () => {
    const { feed, frames } = makeFeed({ instruments: ["ESZ6", "NQZ6"] });
    const ws = goLive(feed, frames);
    expect(JSON.parse(ws.sent[0]).instruments).toEqual(["ESZ6", "NQZ6"]);
    feed.setInstruments(["NQZ6", "CLF7"]);
    const [unsub, sub] = ws.sent.slice(-2).map((m) => JSON.parse(m));
    expect(unsub).toEqual({ op: "unsubscribe", instruments: ["ESZ6"], positions: [] });
    expect(sub).toMatchObject({ op: "subscribe", instruments: ["CLF7", "NQZ6"], positions: ["*"] });
    // Its snapshot holds exactly the new set: ESZ6 leaves the store.
    ws.receive({ type: "snapshot", v: 1, ...snapshot({ instruments: [inst("NQZ6", 9), inst("CLF7", 1)] }) });
    frames.frame();
    expect(feed.getView().data.instruments.map((s) => s.symbol)).toEqual(["CLF7", "NQZ6"]);
    expect(feed.getView().resnapshots).toBe(0); // not a gap
    // The same set again sends nothing.
    const sent = ws.sent.length;
    feed.setInstruments(["CLF7", "NQZ6", "CLF7"]);
    expect(ws.sent.length).toBe(sent);
    // A reconnect subscribes to the set of now.
    ws.serverClose(1006);
    vi.advanceTimersByTime(1000);
    FakeSocket.last().open();
    expect(JSON.parse(FakeSocket.last().sent[0]).instruments).toEqual(["CLF7", "NQZ6"]);
    feed.stop();
  });

  it("passes prints and P&L samples to their listeners; setTrades follows an instrument's prints", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    const prints: number[] = [];
    const pnl: string[] = [];
    feed.onTrade((t) => prints.push(t.seq ?? -1));
    feed.onPnl((p) => pnl.push(`${p.account}:${p.interval}:${p.total}`));
    feed.setTrades(["ESZ6"]);
    expect(JSON.parse(ws.sent[ws.sent.length - 1])).toMatchObject({ op: "subscribe", trades: ["ESZ6"] });
    const print = { symbol: "ESZ6", seq: 3, event_id: "e", price: "100.25", qty: 1, aggressor: "buy", ts: 1 };
    ws.receive({ type: "update", v: 1, kind: "trade", key: "trades:ESZ6", seq: 3, ingest_ts: 1, data: print });
    const point = { account: "ACC1", interval: "1s", start: 0, realized: "0", unrealized: "12.5", total: "12.5", seq: 1 };
    ws.receive({ type: "update", v: 1, kind: "pnl", key: "pnl:ACC1:1s", seq: 1, ingest_ts: 0, data: point });
    expect(prints).toEqual([3]);
    expect(pnl).toEqual(["ACC1:1s:12.5"]);
    feed.setTrades([]);
    expect(JSON.parse(ws.sent[ws.sent.length - 2])).toEqual({ op: "unsubscribe", instruments: [], positions: [], trades: ["ESZ6"] });
    feed.stop();
  });

  it("splits the newest update's delay by hop (ingest → processed → cached → here)", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    const now = Date.now() * 1000; // µs
    const update = instUpdate(inst("ESZ6", 50), now - 9_000);
    ws.receive({ ...update, hops: { processed: now - 8_000, cached: now - 3_000 } });
    frames.frame();
    expect(feed.getView().delayMs).toBe(9);
    expect(feed.getView().hopsMs).toEqual({ processed: 1, cached: 5, delivered: 3 });
    // An update without hop times (an older server, restored state) shows none.
    ws.receive(instUpdate(inst("ESZ6", 51), now - 2_000));
    frames.frame();
    expect(feed.getView().hopsMs).toBeNull();
    feed.stop();
  });

  it("goes stale when the socket is quiet, drops it when silent too long, and pings", () => {
    const { feed, frames } = makeFeed({ staleAfterMs: 3000, deadAfterMs: 8000, pingEveryMs: 2000 });
    const ws = goLive(feed, frames);
    vi.advanceTimersByTime(2000);
    expect(ws.sent).toContain('{"op":"ping"}');
    vi.advanceTimersByTime(2000);
    frames.frame();
    expect(feed.getView().conn).toBe("stale");
    ws.receive({ type: "pong" });
    frames.frame();
    expect(feed.getView().conn).toBe("live");
    vi.advanceTimersByTime(9000);
    frames.frame();
    expect(ws.closedWith).toBe(4000);
    expect(feed.getView().conn).toBe("disconnected");
    feed.stop();
  });

  it("drops a connection attempt that neither opens nor fails, and retries", () => {
    const { feed, frames } = makeFeed({ connectTimeoutMs: 3000 });
    feed.start();
    const ws = FakeSocket.last();
    vi.advanceTimersByTime(2000);
    expect(ws.closedWith).toBeUndefined();
    vi.advanceTimersByTime(2000);
    frames.frame();
    expect(ws.closedWith).toBe(4000);
    expect(feed.getView().conn).toBe("disconnected");
    vi.advanceTimersByTime(500); // first backoff: 188 ms at random 0.5
    expect(FakeSocket.instances.length).toBe(2);
    FakeSocket.last().open();
    expect(FakeSocket.last().subscribes()).toBe(1);
    feed.stop();
  });

  it("measures the end-to-end delay from ingest_ts and ignores restored state (0)", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    const nowUs = Date.now() * 1000;
    ws.receive(instUpdate(inst("ESZ6", 10), nowUs - 12_000));
    frames.frame();
    expect(feed.getView().delayMs).toBe(12);
    ws.receive(instUpdate(inst("ESZ6", 11), 0));
    frames.frame();
    expect(feed.getView().delayMs).toBe(12);
    feed.stop();
  });

  it("retries the subscribe when the server is not ready, ignores unknown types", () => {
    const { feed, frames, ws } = makeOpenFeed();
    ws.receive({ type: "error", code: "not_ready", message: "retry" });
    ws.receive({ type: "resync" });
    vi.advanceTimersByTime(300);
    expect(ws.subscribes()).toBe(2);
    frames.frame();
    expect(feed.getView().conn).toBe("connecting");
    feed.stop();
  });

  it("many updates in one frame publish once", () => {
    const { feed, frames } = makeFeed();
    const ws = goLive(feed, frames);
    let notified = 0;
    feed.subscribe(() => notified++);
    for (let i = 0; i < 500; i++) ws.receive(instUpdate(inst("ESZ6", 10 + i, { bid: String(100 + i) })));
    expect(notified).toBe(0);
    frames.frame();
    expect(notified).toBe(1);
    expect(feed.getView().data.instruments.find((s) => s.symbol === "ESZ6")?.seq).toBe(509);
    feed.stop();
  });
});

describe("LiveFeed publish rate", () => {
  it("publishEveryMs spaces the views however fast updates come, and the newest state is shown", () => {
    const { feed, frames } = makeFeed({ publishEveryMs: 200 });
    const ws = goLive(feed, frames);
    const before = feed.publishes;
    // 1,000 updates a second for one second.
    for (let i = 0; i < 1000; i++) {
      ws.receive(instUpdate(inst("ESZ6", 100 + i, { bid: `${100 + i}.00` })));
      vi.advanceTimersByTime(1);
      frames.frame();
    }
    vi.advanceTimersByTime(200);
    frames.frame();
    const published = feed.publishes - before;
    expect(published).toBeGreaterThanOrEqual(4);
    expect(published).toBeLessThanOrEqual(7); // about 5 a second, not 1,000 (nor 60)
    expect(feed.getView().data.instruments.find((s) => s.symbol === "ESZ6")?.seq).toBe(1099);
    feed.stop();
  });
});
